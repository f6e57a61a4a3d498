/* embedding.c - table lookup y[i,:] = w[idx[i],:] (rule O8 of the golden README). */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

#include <string.h>

typedef struct emb_ctx {
    const int64_t *idx;
    int64_t n;     /* number of indices */
    int64_t dim;
    int64_t pad;   /* normalised padding row, or -1 */
} emb_ctx;

// backward: gw[idx[i],:] += gy[i,:] for every i with idx[i] != padding_idx (repeats accumulate)
static void embedding_backward(bx_step *st, bx_node *n) {
    const emb_ctx *c = n->ctx;
    bx_tensor *gwt = bx__grad(st, n->in[1]);
    if (!gwt) return;
    float *gw = gwt->data;
    const float *gy = n->out->grad->data;
    const int64_t D = c->dim;
    for (int64_t i = 0; i < c->n; i++) {
        const int64_t r = c->idx[i];
        if (r == c->pad) continue;
        float *dst = gw + r * D;
        const float *src = gy + i * D;
#pragma omp simd
        for (int64_t j = 0; j < D; j++) dst[j] += src[j];
    }
}

// idx i64 (any shape), w (num, dim) -> y (idx..., dim)
bx_tensor *bx_embedding(bx_step *st, bx_tensor *idx, bx_tensor *w, int64_t padding_idx) {
    if (!bx__ok2(st, "embedding", idx, w)) return bx__poison(st);
    char si[96], sw[96];
    if (idx->dtype != BX_I64 || w->dtype != BX_F32 || w->ndim != 2 || idx->ndim + 1 > BX_MAX_DIMS)
        return bx_step_fail(st, BX_ERR_SHAPE, "embedding: idx %s %s and w %s %s: need i64 indices and an f32 (num, dim) table",
                            bx_shape_str(idx, si, sizeof si), bx_dtype_name(idx->dtype),
                            bx_shape_str(w, sw, sizeof sw), bx_dtype_name(w->dtype));
    const int64_t num = w->shape[0], D = w->shape[1];
    int64_t pad = -1;
    if (padding_idx != BX_NO_PADDING_IDX) {
        if (padding_idx < -num || padding_idx >= num)
            return bx_step_fail(st, BX_ERR_INVALID, "embedding: padding_idx %lld is out of range for %lld rows",
                                (long long)padding_idx, (long long)num);
        pad = padding_idx < 0 ? padding_idx + num : padding_idx;
    }
    idx = bx_contiguous(st, idx);
    if (w->stride[1] != 1 && D > 1) w = bx_contiguous(st, w);
    if (bx_is_poison(idx) || bx_is_poison(w)) return bx__poison(st);
    const int64_t n = bx_numel(idx);
    const int64_t *ix = idx->data;
    for (int64_t i = 0; i < n; i++)
        if (ix[i] < 0 || ix[i] >= num)
            return bx_step_fail(st, BX_ERR_INVALID, "embedding: index %lld at position %lld is out of range for %lld rows",
                                (long long)ix[i], (long long)i, (long long)num);
    int64_t yshape[BX_MAX_DIMS];
    memcpy(yshape, idx->shape, sizeof(int64_t) * (size_t)idx->ndim);
    yshape[idx->ndim] = D;
    bx_tensor *y = bx_step_tensor(st, BX_F32, idx->ndim + 1, yshape);
    if (bx_is_poison(y)) return y;
    float *yd = y->data;
    const float *wd = w->data;
    const int64_t ws = w->stride[0];
#pragma omp parallel for if (n * D > 32768) schedule(static)
    for (int64_t i = 0; i < n; i++) memcpy(yd + i * D, wd + ix[i] * ws, sizeof(float) * (size_t)D);
    bx_tensor *ins[2] = {idx, w};
    emb_ctx *c;
    bx__record(st, "embedding", embedding_backward, y, 2, ins, sizeof *c, (void **)&c);
    if (c) *c = (emb_ctx){.idx = ix, .n = n, .dim = D, .pad = pad};
    return y;
}
