/* shape.c - reshape, flatten, transpose, permute (views), concat,
 * contiguous, detach, item.
 *
 * Views share x's memory; their gradient is a separate contiguous buffer of
 * the view's shape, which the backward adds into x's (contiguous) gradient
 * through the view's strides (a permuted view of gx). Any dtype can be
 * reshaped, permuted, concatenated or copied; only f32 tensors record
 * gradients. */
#include "ops/ops_int.h"
#include "blixt/ops.h"

#include <math.h>
#include <string.h>

BX_EW_KERNEL(k_copy, a[i])

static void fail_engine(bx_step *st, const char *op, bx_status s) {
    if (s != BX_OK) bx_step_fail(st, s, "%s: %s", op, bx_errmsg());
}

/* ---- reshape / flatten ----------------------------------------------------------- */

// x (any shape, contiguous) -> y (same elements, new shape); gx += gy (flat)
static void reshape_backward(bx_step *st, bx_node *n) {
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    float *g = gx->data;
    const float *gy = n->out->grad->data;
    int64_t len = bx_numel(gx);
#pragma omp parallel for simd schedule(static) if (len >= BX_PAR_MIN)
    for (int64_t i = 0; i < len; i++) g[i] += gy[i];
}

/* Reshapes x to (ndim, shape), one -1 entry inferred. A view of x when x is
 * contiguous, else of a contiguous copy. Errors: BX_ERR_SHAPE when the
 * element counts differ or -1 cannot be inferred, BX_ERR_INVALID for a bad
 * shape list. */
bx_tensor *bx_reshape(bx_step *st, bx_tensor *x, int ndim, const int64_t *shape) {
    if (!bx__ok1(st, "reshape", x)) return bx__poison(st);
    char xb[64], sb[128];
    if (ndim < 0 || ndim > BX_MAX_DIMS || (ndim > 0 && !shape))
        return bx_step_fail(st, BX_ERR_INVALID, "reshape: x %s: bad target rank %d", bx_shape_str(x, xb, sizeof xb),
                            ndim);
    int64_t shp[BX_MAX_DIMS], known = 1;
    int infer = -1;
    for (int i = 0; i < ndim; i++) {
        shp[i] = shape[i];
        if (shape[i] == -1 && infer < 0) infer = i;
        else if (shape[i] < 0)
            return bx_step_fail(st, BX_ERR_INVALID, "reshape: x %s: bad target shape %s (one -1 at most)",
                                bx_shape_str(x, xb, sizeof xb), bx__shape_fmt(ndim, shape, sb, sizeof sb));
        else known *= shape[i];
    }
    int64_t numel = bx_numel(x);
    if (infer >= 0) {
        if (known == 0 || numel % known != 0)
            return bx_step_fail(st, BX_ERR_SHAPE, "reshape: x %s cannot be reshaped to %s",
                                bx_shape_str(x, xb, sizeof xb), bx__shape_fmt(ndim, shape, sb, sizeof sb));
        shp[infer] = numel / known;
    } else if (known != numel) {
        return bx_step_fail(st, BX_ERR_SHAPE, "reshape: x %s cannot be reshaped to %s",
                            bx_shape_str(x, xb, sizeof xb), bx__shape_fmt(ndim, shape, sb, sizeof sb));
    }
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    int64_t strides[BX_MAX_DIMS], s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        strides[i] = s;
        s *= shp[i] ? shp[i] : 1;
    }
    bx_tensor *y = bx__view(st, x, x->data, ndim, shp, strides);
    if (bx_is_poison(y)) return y;
    if (x->dtype == BX_F32) bx__record(st, "reshape", reshape_backward, y, 1, &x, 0, NULL);
    return y;
}

/* Merges dims start_dim..end_dim (negative allowed) into one; a reshape.
 * A 0-d x gives shape (1). Errors: dims out of range or start after end. */
bx_tensor *bx_flatten(bx_step *st, bx_tensor *x, int start_dim, int end_dim) {
    if (!bx__ok1(st, "flatten", x)) return bx__poison(st);
    char xb[64];
    int s = bx__norm_dim(start_dim, x->ndim), e = bx__norm_dim(end_dim, x->ndim);
    if (s < 0 || e < 0 || s > e)
        return bx_step_fail(st, BX_ERR_SHAPE, "flatten: dims %d..%d do not fit x %s", start_dim, end_dim,
                            bx_shape_str(x, xb, sizeof xb));
    if (x->ndim == 0) {
        int64_t one = 1;
        return bx_reshape(st, x, 1, &one);
    }
    int64_t shp[BX_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < s; i++) shp[nd++] = x->shape[i];
    int64_t m = 1;
    for (int i = s; i <= e; i++) m *= x->shape[i];
    shp[nd++] = m;
    for (int i = e + 1; i < x->ndim; i++) shp[nd++] = x->shape[i];
    return bx_reshape(st, x, nd, shp);
}

/* ---- permute / transpose ------------------------------------------------------------ */

typedef struct perm_ctx {
    int perm[BX_MAX_DIMS];
} perm_ctx;

// x (d0..dn) -> y (d_perm[0]..d_perm[n]) view; gx (seen through perm) += gy
static void permute_backward(bx_step *st, bx_node *n) {
    perm_ctx *ctx = n->ctx;
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    bx_tensor *gy = n->out->grad;
    bx_tensor v = *gx; /* gx viewed with y's dim order */
    v.ndim = gy->ndim;
    for (int i = 0; i < gy->ndim; i++) {
        v.shape[i] = gy->shape[i];
        v.stride[i] = gx->stride[ctx->perm[i]];
    }
    const bx_tensor *ins[1] = {gy};
    fail_engine(st, n->op, bx__ew_apply(k_copy, NULL, true, &v, 1, ins));
}

static bx_tensor *permute_impl(bx_step *st, const char *op, bx_tensor *x, const int *perm) {
    int64_t shp[BX_MAX_DIMS], str[BX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) {
        shp[i] = x->shape[perm[i]];
        str[i] = x->stride[perm[i]];
    }
    bx_tensor *y = bx__view(st, x, x->data, x->ndim, shp, str);
    if (bx_is_poison(y)) return y;
    void *ctxp = NULL;
    if (x->dtype == BX_F32 && bx__record(st, op, permute_backward, y, 1, &x, sizeof(perm_ctx), &ctxp)) {
        perm_ctx *ctx = ctxp;
        for (int i = 0; i < x->ndim; i++) ctx->perm[i] = perm[i];
    }
    return y;
}

/* Strided view with dims reordered: y.shape[i] = x.shape[perm[i]]; perm has
 * x->ndim entries, a permutation of 0..ndim-1 (negative allowed). Errors:
 * BX_ERR_SHAPE when perm is not a permutation (message names x's shape). */
bx_tensor *bx_permute(bx_step *st, bx_tensor *x, const int *perm) {
    if (!bx__ok1(st, "permute", x)) return bx__poison(st);
    char xb[64];
    if (x->ndim > 0 && !perm) return bx_step_fail(st, BX_ERR_INVALID, "permute: perm is NULL");
    int p[BX_MAX_DIMS];
    bool seen[BX_MAX_DIMS] = {false};
    for (int i = 0; i < x->ndim; i++) {
        int d = bx__norm_dim(perm[i], x->ndim);
        if (d < 0 || seen[d])
            return bx_step_fail(st, BX_ERR_SHAPE, "permute: x %s: entry %d (%d) makes no permutation of %d dims",
                                bx_shape_str(x, xb, sizeof xb), i, perm[i], x->ndim);
        seen[d] = true;
        p[i] = d;
    }
    return permute_impl(st, "permute", x, p);
}

/* Strided view with dims d0 and d1 swapped (negative allowed). Errors:
 * BX_ERR_SHAPE when a dim is out of range. */
bx_tensor *bx_transpose(bx_step *st, bx_tensor *x, int d0, int d1) {
    if (!bx__ok1(st, "transpose", x)) return bx__poison(st);
    char xb[64];
    int a = bx__norm_dim(d0, x->ndim), b = bx__norm_dim(d1, x->ndim);
    if (a < 0 || b < 0)
        return bx_step_fail(st, BX_ERR_SHAPE, "transpose: dims %d, %d out of range for x %s", d0, d1,
                            bx_shape_str(x, xb, sizeof xb));
    int p[BX_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) p[i] = i;
    if (x->ndim > 0) {
        p[a] = b;
        p[b] = a;
    }
    return permute_impl(st, "transpose", x, p);
}

/* ---- concat ---------------------------------------------------------------------------- */

typedef struct cat_ctx {
    int dim;
} cat_ctx;

/* The part of y (any dtype, contiguous) that input x fills, starting at
 * offset `at` along dim d: a strided header over y's memory. */
static bx_tensor slab_of(const bx_tensor *y, const bx_tensor *x, int d, int64_t at) {
    bx_tensor v = *y;
    for (int i = 0; i < BX_MAX_DIMS; i++) v.shape[i] = x->shape[i];
    v.data = (char *)y->data + (size_t)(at * y->stride[d]) * bx_dtype_size(y->dtype);
    v.grad = NULL;
    v.node = NULL;
    return v;
}

// xs[k] (..., n_k, ...) -> y (..., sum n_k, ...); gx_k += slab_k(gy)
static void concat_backward(bx_step *st, bx_node *n) {
    cat_ctx *ctx = n->ctx;
    bx_tensor *gy = n->out->grad;
    int64_t at = 0;
    for (int k = 0; k < n->nin; k++) {
        bx_tensor *x = n->in[k];
        bx_tensor *gx = bx__grad(st, x);
        if (gx && bx_numel(gx) > 0) {
            bx_tensor v = slab_of(gy, x, ctx->dim, at);
            const bx_tensor *ins[1] = {&v};
            fail_engine(st, n->op, bx__ew_apply(k_copy, NULL, true, gx, 1, ins));
        }
        at += x->shape[ctx->dim];
    }
}

/* Concatenates n tensors of one dtype along dim (negative allowed); all
 * other sizes must agree. New contiguous step tensor. Errors: BX_ERR_SHAPE
 * (rank, sizes, dtype or 0-d inputs; names the op and both shapes),
 * BX_ERR_INVALID (n < 1). */
bx_tensor *bx_concat(bx_step *st, bx_tensor *const *xs, int n, int dim) {
    if (n < 1 || !xs) return bx_step_fail(st, BX_ERR_INVALID, "concat: needs at least one tensor (got %d)", n);
    if (!bx__ok(st, "concat", n, xs)) return bx__poison(st);
    const bx_tensor *x0 = xs[0];
    char ab[64], bb[64];
    if (x0->ndim == 0)
        return bx_step_fail(st, BX_ERR_SHAPE, "concat: tensor 0 is 0-d and cannot be concatenated");
    int d = bx__norm_dim(dim, x0->ndim);
    if (d < 0)
        return bx_step_fail(st, BX_ERR_SHAPE, "concat: dim %d out of range for tensor 0 %s", dim,
                            bx_shape_str(x0, ab, sizeof ab));
    int64_t shp[BX_MAX_DIMS];
    for (int i = 0; i < x0->ndim; i++) shp[i] = x0->shape[i];
    shp[d] = 0;
    for (int k = 0; k < n; k++) {
        const bx_tensor *x = xs[k];
        bool ok = x->ndim == x0->ndim && x->dtype == x0->dtype;
        for (int i = 0; ok && i < x0->ndim; i++)
            if (i != d && x->shape[i] != x0->shape[i]) ok = false;
        if (!ok)
            return bx_step_fail(st, BX_ERR_SHAPE,
                                "concat: tensor 0 %s %s and tensor %d %s %s do not fit along dim %d",
                                bx_shape_str(x0, ab, sizeof ab), bx_dtype_name(x0->dtype), k,
                                bx_shape_str(x, bb, sizeof bb), bx_dtype_name(x->dtype), d);
        shp[d] += x->shape[d];
    }
    bx_tensor *y = bx_step_tensor(st, x0->dtype, x0->ndim, shp);
    if (bx_is_poison(y)) return y;
    int64_t at = 0;
    for (int k = 0; k < n; k++) {
        bx_tensor v = slab_of(y, xs[k], d, at);
        at += xs[k]->shape[d];
        if (bx_numel(&v) == 0) continue;
        bx_status s;
        if (y->dtype == BX_F32) {
            const bx_tensor *ins[1] = {xs[k]};
            s = bx__ew_apply(k_copy, NULL, false, &v, 1, ins);
        } else {
            s = bx_copy(&v, xs[k]);
        }
        if (s != BX_OK) return bx_step_fail(st, s, "concat: %s", bx_errmsg());
    }
    void *ctxp = NULL;
    if (y->dtype == BX_F32 && bx__record(st, "concat", concat_backward, y, n, xs, sizeof(cat_ctx), &ctxp)) {
        cat_ctx *ctx = ctxp;
        ctx->dim = d;
    }
    return y;
}

/* ---- contiguous / detach / item ---------------------------------------------------------- */

// x (strided) -> y contiguous copy; gx += gy
static void contiguous_backward(bx_step *st, bx_node *n) {
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (gx) fail_engine(st, n->op, bx__reduce_to(gx, n->out->grad));
}

/* Contiguous copy of x (any dtype), or x itself when already contiguous.
 * Differentiable for f32. */
bx_tensor *bx_contiguous(bx_step *st, bx_tensor *x) {
    if (!bx__ok1(st, "contiguous", x)) return bx__poison(st);
    if (bx_is_contiguous(x)) return x;
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    bx_status s;
    if (x->dtype == BX_F32) {
        const bx_tensor *ins[1] = {x};
        s = bx__ew_apply(k_copy, NULL, false, y, 1, ins);
    } else {
        s = bx_copy(y, x);
    }
    if (s != BX_OK) return bx_step_fail(st, s, "contiguous: %s", bx_errmsg());
    if (x->dtype == BX_F32) bx__record(st, "contiguous", contiguous_backward, y, 1, &x, 0, NULL);
    return y;
}

/* A view of x's data that records nothing: no gradient flows back. */
bx_tensor *bx_detach(bx_step *st, bx_tensor *x) {
    if (!bx__ok1(st, "detach", x)) return bx__poison(st);
    return bx__view(st, x, x->data, x->ndim, x->shape, x->stride);
}

/* First element of t as float (the value of a one-element tensor); NaN for
 * poison, NULL or an empty tensor. */
float bx_item(const bx_tensor *t) {
    if (bx_is_poison(t) || bx_numel(t) < 1) return NAN;
    return (float)bx_get(t, 0);
}
