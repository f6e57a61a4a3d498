/* layer_norm.c - normalisation over the trailing dims (rule O7 of the golden
 * README): y = (x - mean) / sqrt(var + eps) * w + b with the biased variance. */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

#include <math.h>
#include <string.h>

typedef struct ln_ctx {
    int64_t M, D;     /* rows, normalised elements per row */
    float *mean, *rstd;
    bool has_w, has_b; /* inputs are (x, [w], [b]) */
} ln_ctx;

// backward: xh = (x-mean) rstd, gh = gy w;
//   gx += rstd (gh - mean(gh) - xh mean(gh xh));  gw += sum_rows gy xh;  gb += sum_rows gy
static void layer_norm_backward(bx_step *st, bx_node *n) {
    const ln_ctx *c = n->ctx;
    bx_tensor *x = n->in[0], *w = c->has_w ? n->in[1] : NULL, *b = c->has_b ? n->in[c->has_w ? 2 : 1] : NULL;
    bx_tensor *gxt = bx__grad(st, x);
    bx_tensor *gwt = w ? bx__grad(st, w) : NULL, *gbt = b ? bx__grad(st, b) : NULL;
    const float *xd = x->data, *gy = n->out->grad->data, *wd = w ? w->data : NULL;
    const int64_t M = c->M, D = c->D;
    if (gxt) {
        float *gx = gxt->data;
#pragma omp parallel for if (M * D > 32768) schedule(static)
        for (int64_t i = 0; i < M; i++) {
            const float *xr = xd + i * D, *gr = gy + i * D;
            float *gxr = gx + i * D;
            const float mu = c->mean[i], rs = c->rstd[i];
            double s1 = 0.0, s2 = 0.0;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t j = 0; j < D; j++) {
                const float gh = gr[j] * (wd ? wd[j] : 1.0f);
                s1 += gh;
                s2 += gh * (xr[j] - mu) * rs;
            }
            const float m1 = (float)(s1 / (double)D), m2 = (float)(s2 / (double)D);
#pragma omp simd
            for (int64_t j = 0; j < D; j++) {
                const float gh = gr[j] * (wd ? wd[j] : 1.0f);
                gxr[j] += rs * (gh - m1 - (xr[j] - mu) * rs * m2);
            }
        }
    }
    if (gwt || gbt) {
        float *gw = gwt ? gwt->data : NULL, *gb = gbt ? gbt->data : NULL;
        for (int64_t i = 0; i < M; i++) {
            const float *xr = xd + i * D, *gr = gy + i * D;
            const float mu = c->mean[i], rs = c->rstd[i];
            if (gw) {
#pragma omp simd
                for (int64_t j = 0; j < D; j++) gw[j] += gr[j] * (xr[j] - mu) * rs;
            }
            if (gb) {
#pragma omp simd
                for (int64_t j = 0; j < D; j++) gb[j] += gr[j];
            }
        }
    }
}

static bool trailing_match(const bx_tensor *t, const bx_tensor *x, int nnorm) {
    if (t->ndim != nnorm || t->dtype != BX_F32) return false;
    for (int d = 0; d < nnorm; d++)
        if (t->shape[d] != x->shape[x->ndim - nnorm + d]) return false;
    return true;
}

// x (..., *norm), w (*norm) or NULL, b (*norm) or NULL -> y (x's shape)
bx_tensor *bx_layer_norm(bx_step *st, bx_tensor *x, int nnorm, bx_tensor *weight, bx_tensor *bias, double eps) {
    if (!bx__ok1(st, "layer_norm", x)) return bx__poison(st);
    if ((weight && !bx__ok1(st, "layer_norm", weight)) || (bias && !bx__ok1(st, "layer_norm", bias)))
        return bx__poison(st);
    char sx[96], sw[96];
    if (x->dtype != BX_F32) return bx_step_fail(st, BX_ERR_SHAPE, "layer_norm: x must be f32, got %s", bx_dtype_name(x->dtype));
    if (nnorm < 1 || nnorm > x->ndim)
        return bx_step_fail(st, BX_ERR_SHAPE, "layer_norm: x %s: cannot normalise over the last %d dims",
                            bx_shape_str(x, sx, sizeof sx), nnorm);
    if (weight && !trailing_match(weight, x, nnorm))
        return bx_step_fail(st, BX_ERR_SHAPE, "layer_norm: x %s and weight %s: weight must be f32 of the last %d dims",
                            bx_shape_str(x, sx, sizeof sx), bx_shape_str(weight, sw, sizeof sw), nnorm);
    if (bias && !trailing_match(bias, x, nnorm))
        return bx_step_fail(st, BX_ERR_SHAPE, "layer_norm: x %s and bias %s: bias must be f32 of the last %d dims",
                            bx_shape_str(x, sx, sizeof sx), bx_shape_str(bias, sw, sizeof sw), nnorm);
    if (!(eps >= 0.0)) return bx_step_fail(st, BX_ERR_INVALID, "layer_norm: eps must be >= 0, got %g", eps);
    x = bx_contiguous(st, x);
    if (weight) weight = bx_contiguous(st, weight);
    if (bias) bias = bx_contiguous(st, bias);
    if (bx_is_poison(x) || (weight && bx_is_poison(weight)) || (bias && bx_is_poison(bias))) return bx__poison(st);
    int64_t D = 1;
    for (int d = x->ndim - nnorm; d < x->ndim; d++) D *= x->shape[d];
    const int64_t M = D ? bx_numel(x) / D : 0;
    bx_tensor *y = bx__empty_like(st, x);
    float *mean = bx_step_alloc(st, sizeof(float) * (size_t)BX_MAX(M, 1));
    float *rstd = bx_step_alloc(st, sizeof(float) * (size_t)BX_MAX(M, 1));
    if (bx_is_poison(y) || !mean || !rstd) return bx__poison(st);
    const float *xd = x->data, *wd = weight ? weight->data : NULL, *bd = bias ? bias->data : NULL;
    float *yd = y->data;
#pragma omp parallel for if (M * D > 32768) schedule(static)
    for (int64_t i = 0; i < M; i++) {
        const float *xr = xd + i * D;
        float *yr = yd + i * D;
        double s = 0.0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < D; j++) s += xr[j];
        const double mu = s / (double)D;
        double v = 0.0;
#pragma omp simd reduction(+ : v)
        for (int64_t j = 0; j < D; j++) v += ((double)xr[j] - mu) * ((double)xr[j] - mu);
        const float m = (float)mu, rs = (float)(1.0 / sqrt(v / (double)D + eps));
        mean[i] = m;
        rstd[i] = rs;
#pragma omp simd
        for (int64_t j = 0; j < D; j++) {
            float h = (xr[j] - m) * rs;
            if (wd) h *= wd[j];
            if (bd) h += bd[j];
            yr[j] = h;
        }
    }
    bx_tensor *ins[3] = {x, NULL, NULL};
    int nin = 1;
    if (weight) ins[nin++] = weight;
    if (bias) ins[nin++] = bias;
    ln_ctx *c;
    bx__record(st, "layer_norm", layer_norm_backward, y, nin, ins, sizeof *c, (void **)&c);
    if (c) *c = (ln_ctx){.M = M, .D = D, .mean = mean, .rstd = rstd, .has_w = weight != NULL, .has_b = bias != NULL};
    return y;
}
