/* softmax.c - softmax and log_softmax over any dim, numerically stable
 * (the row maximum is subtracted before exp).
 *
 * x is made contiguous and seen as (outer, D, inner) with D the softmax dim.
 * inner == 1 (the last dim, the common case) runs row by row; otherwise the
 * inner columns are processed in blocks of SM_BLK with per-column statistics.
 * Formulas follow PyTorch's CPU kernels:
 * Sums are accumulated in double.
 *   softmax      y = exp(x - max) * (1 / sum exp(x - max))
 *                gx = y * (gy - sum(gy * y))
 *   log_softmax  y = x - max - log(sum exp(x - max))
 *                gx = gy - exp(y) * sum(gy) */
#include "ops/ops_int.h"
#include "blixt/ops.h"

#include <math.h>

#define SM_BLK 256

typedef struct sm_dims {
    int64_t outer, d, inner;
} sm_dims;

/* One row (inner == 1): x, y contiguous of length n. */
static void row_forward(const float *restrict x, float *restrict y, int64_t n, bool log_sm) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t j = 0; j < n; j++) m = x[j] > m ? x[j] : m;
    double s = 0.0;
    if (log_sm) {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < n; j++) s += expf(x[j] - m);
        float ls = logf((float)s);
#pragma omp simd
        for (int64_t j = 0; j < n; j++) y[j] = x[j] - m - ls;
    } else {
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < n; j++) {
            y[j] = expf(x[j] - m);
            s += y[j];
        }
        float inv = 1.0f / (float)s;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) y[j] *= inv;
    }
}

/* One (D, w) column block at stride `inner` between the D entries. */
static void cols_forward(const float *restrict x, float *restrict y, int64_t d, int64_t inner, int64_t w,
                         bool log_sm) {
    float m[SM_BLK], ls[SM_BLK];
    double s[SM_BLK];
    for (int64_t j = 0; j < w; j++) {
        m[j] = -INFINITY;
        s[j] = 0.0;
    }
    for (int64_t k = 0; k < d; k++) {
        const float *xr = x + k * inner;
#pragma omp simd
        for (int64_t j = 0; j < w; j++) m[j] = xr[j] > m[j] ? xr[j] : m[j];
    }
    for (int64_t k = 0; k < d; k++) {
        const float *xr = x + k * inner;
        float *yr = y + k * inner;
        if (log_sm) {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) s[j] += expf(xr[j] - m[j]);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) {
                yr[j] = expf(xr[j] - m[j]);
                s[j] += yr[j];
            }
        }
    }
    for (int64_t j = 0; j < w; j++) ls[j] = log_sm ? logf((float)s[j]) : 1.0f / (float)s[j];
    for (int64_t k = 0; k < d; k++) {
        const float *xr = x + k * inner;
        float *yr = y + k * inner;
        if (log_sm) {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) yr[j] = xr[j] - m[j] - ls[j];
        } else {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) yr[j] *= ls[j];
        }
    }
}

/* gx += softmax / log_softmax backward for one row (inner == 1). */
static void row_backward(const float *restrict y, const float *restrict gy, float *restrict gx, int64_t n,
                         bool log_sm) {
    double sd = 0.0;
    if (log_sm) {
#pragma omp simd reduction(+ : sd)
        for (int64_t j = 0; j < n; j++) sd += gy[j];
        float s = (float)sd;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) gx[j] += gy[j] - expf(y[j]) * s;
    } else {
#pragma omp simd reduction(+ : sd)
        for (int64_t j = 0; j < n; j++) sd += gy[j] * y[j];
        float s = (float)sd;
#pragma omp simd
        for (int64_t j = 0; j < n; j++) gx[j] += y[j] * (gy[j] - s);
    }
}

static void cols_backward(const float *restrict y, const float *restrict gy, float *restrict gx, int64_t d,
                          int64_t inner, int64_t w, bool log_sm) {
    double sd[SM_BLK];
    float s[SM_BLK];
    for (int64_t j = 0; j < w; j++) sd[j] = 0.0;
    for (int64_t k = 0; k < d; k++) {
        const float *yr = y + k * inner, *gr = gy + k * inner;
        if (log_sm) {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) sd[j] += gr[j];
        } else {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) sd[j] += gr[j] * yr[j];
        }
    }
    for (int64_t j = 0; j < w; j++) s[j] = (float)sd[j];
    for (int64_t k = 0; k < d; k++) {
        const float *yr = y + k * inner, *gr = gy + k * inner;
        float *xr = gx + k * inner;
        if (log_sm) {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) xr[j] += gr[j] - expf(yr[j]) * s[j];
        } else {
#pragma omp simd
            for (int64_t j = 0; j < w; j++) xr[j] += yr[j] * (gr[j] - s[j]);
        }
    }
}

/* Runs the forward (gy == NULL) or backward over all (outer, column block)
 * tasks, in parallel above BX_PAR_MIN elements. */
static void sm_run(sm_dims dm, const float *x, float *y, const float *gy, float *gx, bool log_sm) {
    int64_t nblk = dm.inner == 1 ? 1 : (dm.inner + SM_BLK - 1) / SM_BLK;
    int64_t ntasks = dm.outer * nblk;
    int64_t total = dm.outer * dm.d * dm.inner;
#pragma omp parallel for schedule(static) if (total >= BX_PAR_MIN && ntasks > 1)
    for (int64_t t = 0; t < ntasks; t++) {
        int64_t o = t / nblk, b = t % nblk;
        int64_t off = o * dm.d * dm.inner + b * SM_BLK;
        if (dm.inner == 1) {
            if (gx) row_backward(y + off, gy + off, gx + off, dm.d, log_sm);
            else row_forward(x + off, y + off, dm.d, log_sm);
        } else {
            int64_t w = BX_MIN((int64_t)SM_BLK, dm.inner - b * SM_BLK);
            if (gx) cols_backward(y + off, gy + off, gx + off, dm.d, dm.inner, w, log_sm);
            else cols_forward(x + off, y + off, dm.d, dm.inner, w, log_sm);
        }
    }
}

static sm_dims dims_of(const bx_tensor *x, int d) {
    sm_dims dm = {1, 1, 1};
    if (x->ndim == 0) return dm;
    for (int i = 0; i < d; i++) dm.outer *= x->shape[i];
    dm.d = x->shape[d];
    for (int i = d + 1; i < x->ndim; i++) dm.inner *= x->shape[i];
    return dm;
}

typedef struct sm_ctx {
    int dim;
    bool log_sm;
} sm_ctx;

// x (..., D, ...) -> y (same); gx += as in the header comment
static void softmax_backward(bx_step *st, bx_node *n) {
    sm_ctx *ctx = n->ctx;
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx || bx_numel(gx) == 0) return;
    sm_run(dims_of(n->out, ctx->dim), NULL, n->out->data, n->out->grad->data, gx->data, ctx->log_sm);
}

static bx_tensor *softmax_impl(bx_step *st, const char *op, bx_tensor *x, int dim, bool log_sm) {
    if (!bx__ok1(st, op, x)) return bx__poison(st);
    if (!bx__need_f32(st, op, "x", x)) return bx__poison(st);
    int d = bx__norm_dim(dim, x->ndim);
    if (d < 0) {
        char b[64];
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: dim %d out of range for x %s", op, dim,
                            bx_shape_str(x, b, sizeof b));
    }
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    if (bx_numel(x) > 0) sm_run(dims_of(x, d), x->data, y->data, NULL, NULL, log_sm);
    void *ctxp = NULL;
    if (bx__record(st, op, softmax_backward, y, 1, &x, sizeof(sm_ctx), &ctxp)) {
        sm_ctx *ctx = ctxp;
        ctx->dim = d;
        ctx->log_sm = log_sm;
    }
    return y;
}

/* softmax over dim (negative allowed) of f32 x: new contiguous step tensor
 * of x's shape. Errors: dtype, dim out of range (poison + step error). */
bx_tensor *bx_softmax(bx_step *st, bx_tensor *x, int dim) { return softmax_impl(st, "softmax", x, dim, false); }

/* log_softmax over dim; as bx_softmax. */
bx_tensor *bx_log_softmax(bx_step *st, bx_tensor *x, int dim) {
    return softmax_impl(st, "log_softmax", x, dim, true);
}
