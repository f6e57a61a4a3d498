/* pool.c - max, average and adaptive average pooling over (N,C,H,W) or
 * (C,H,W), with PyTorch's exact window, divisor and tie rules (golden README
 * rules O4 and O5).
 *
 * Own OpenMP kernels, one (n,c) plane per task: pooling is memory bound and
 * the rules below (first maximum wins, ceil_mode's last window, the avg-pool
 * divisor) are easiest to guarantee in plain loops. The max pool stores the
 * argmax (index within the plane) of every output in the step arena for the
 * backward. */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define POOL_PAR_MIN 32768 /* elements below which a kernel stays on one thread */
#define MAXPOOL_LANES 16

typedef struct pool_geom {
    int64_t planes, h, w, oh, ow;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw;
} pool_geom;

static int64_t div_floor(int64_t a, int64_t b) {
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* PyTorch's pooling_output_shape: with ceil_mode the last window is kept
 * only if it starts inside the input or the left padding. */
static int64_t pool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
    int64_t out = div_floor(in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

static bx_tensor *pool_fail(bx_step *st, const char *op, const bx_tensor *x, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static bx_tensor *pool_fail(bx_step *st, const char *op, const bx_tensor *x, const char *fmt, ...) {
    char xs[96], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return bx_step_fail(st, BX_ERR_SHAPE, "%s: x %s: %s", op, bx_shape_str(x, xs, sizeof xs), why);
}

/* Common checks of x (f32, 3-D or 4-D, non-empty planes). */
static bool pool_check_x(bx_step *st, const char *op, bx_tensor *x) {
    if (!bx__ok1(st, op, x)) return false;
    if (x->dtype != BX_F32) {
        pool_fail(st, op, x, "x must be f32, got %s", bx_dtype_name(x->dtype));
        return false;
    }
    if (x->ndim != 3 && x->ndim != 4) {
        pool_fail(st, op, x, "x must be (N,C,H,W) or (C,H,W)");
        return false;
    }
    for (int d = x->ndim - 3; d < x->ndim; d++)
        if (x->shape[d] == 0) {
            pool_fail(st, op, x, "channel and spatial dims must be non-empty");
            return false;
        }
    return true;
}

/* Fills g from x and the options; false + step error when invalid. */
static bool pool_geometry(bx_step *st, const char *op, const bx_tensor *x, const bx_pool2d_opts *o, bool is_max,
                          pool_geom *g) {
    memset(g, 0, sizeof *g);
    g->h = x->shape[x->ndim - 2], g->w = x->shape[x->ndim - 1];
    g->planes = bx_numel(x) / (g->h * g->w);
    g->kh = o->kernel[0], g->kw = o->kernel[1];
    g->sh = o->stride[0] ? o->stride[0] : o->kernel[0];
    g->sw = o->stride[1] ? o->stride[1] : o->kernel[1];
    g->ph = o->padding[0], g->pw = o->padding[1];
    g->dh = is_max ? o->dilation[0] : 1, g->dw = is_max ? o->dilation[1] : 1;
    if (g->kh < 1 || g->kw < 1 || g->sh < 1 || g->sw < 1 || g->dh < 1 || g->dw < 1 || g->ph < 0 || g->pw < 0) {
        pool_fail(st, op, x, "kernel (%lld,%lld), stride (%lld,%lld) and dilation (%lld,%lld) must be positive, "
                  "padding (%lld,%lld) >= 0",
                  (long long)g->kh, (long long)g->kw, (long long)g->sh, (long long)g->sw, (long long)g->dh,
                  (long long)g->dw, (long long)g->ph, (long long)g->pw);
        return false;
    }
    if (g->ph > g->kh / 2 || g->pw > g->kw / 2) {
        pool_fail(st, op, x, "padding (%lld,%lld) must be at most half of the kernel (%lld,%lld)", (long long)g->ph,
                  (long long)g->pw, (long long)g->kh, (long long)g->kw);
        return false;
    }
    g->oh = pool_out(g->h, g->kh, g->sh, g->ph, g->dh, o->ceil_mode);
    g->ow = pool_out(g->w, g->kw, g->sw, g->pw, g->dw, o->ceil_mode);
    if (g->oh < 1 || g->ow < 1) {
        pool_fail(st, op, x, "kernel (%lld,%lld) with dilation (%lld,%lld) does not fit the padded input: output would be %lldx%lld",
                  (long long)g->kh, (long long)g->kw, (long long)g->dh, (long long)g->dw, (long long)g->oh,
                  (long long)g->ow);
        return false;
    }
    if (g->h * g->w > INT32_MAX) {
        pool_fail(st, op, x, "planes larger than 2^31 elements are not supported");
        return false;
    }
    return true;
}

static bx_tensor *pool_output(bx_step *st, const bx_tensor *x, int64_t oh, int64_t ow) {
    int64_t shape[4];
    for (int d = 0; d < x->ndim - 2; d++) shape[d] = x->shape[d];
    shape[x->ndim - 2] = oh;
    shape[x->ndim - 1] = ow;
    return bx_step_tensor(st, BX_F32, x->ndim, shape);
}

/* ---- max pool ------------------------------------------------------------------ */

typedef struct maxpool_ctx {
    pool_geom g;
    int32_t *argmax; /* per output: index in its plane, -1 for an empty window */
} maxpool_ctx;

/* Output columns [lo, hi) whose windows lie entirely inside the input
 * columns: there the kernels need no bounds checks and vectorise across
 * outputs. */
static void interior_cols(const pool_geom *g, int64_t *lo, int64_t *hi) {
    int64_t ext = (g->kw - 1) * g->dw; /* last column offset of a window */
    *lo = BX_MIN((g->pw + g->sw - 1) / g->sw, g->ow);
    int64_t last = g->w - 1 - ext + g->pw; /* j*sw <= last */
    *hi = last < 0 ? 0 : BX_MIN(last / g->sw + 1, g->ow);
    if (*hi < *lo) *hi = *lo;
}

/* A value replaces the running maximum only when strictly greater, or NaN
 * (PyTorch's rule): the first maximum of the scan wins. */
static inline bool max_takes(float v, float best) { return (v > best) | (v != v); }

/* One output of a plane, any window position (bounds-checked). */
static void maxpool_one(const pool_geom *g, const float *x, int64_t h0, int64_t h1, int64_t j, float *y,
                        int32_t *am) {
    int64_t w0 = j * g->sw - g->pw, w1 = BX_MIN(w0 + (g->kw - 1) * g->dw + 1, g->w);
    while (w0 < 0) w0 += g->dw;
    float best = -INFINITY;
    int64_t bi = -1;
    for (int64_t h = h0; h < h1; h += g->dh)
        for (int64_t w = w0; w < w1; w += g->dw) {
            float v = x[h * g->w + w];
            if (bi < 0 || max_takes(v, best)) { /* the first element starts the scan */
                best = v;
                bi = h * g->w + w;
            }
        }
    *y = best;
    *am = (int32_t)bi;
}

/* One plane: x (h,w) -> y (oh,ow), am = argmax (index in the plane, -1 for a
 * window without input elements). Windows are scanned rows then columns; in
 * the interior all outputs of a row advance through their windows together
 * (same scan order per output, vectorised across outputs). Padding is never
 * selected. */
static void maxpool_plane(const pool_geom *g, const float *x, float *y, int32_t *am) {
    int64_t lo, hi;
    interior_cols(g, &lo, &hi);
    const int64_t W = g->w, sw = g->sw;
    for (int64_t i = 0; i < g->oh; i++) {
        int64_t h0 = i * g->sh - g->ph, h1 = BX_MIN(h0 + (g->kh - 1) * g->dh + 1, g->h);
        while (h0 < 0) h0 += g->dh;
        float *yr = y + i * g->ow;
        int32_t *ar = am + i * g->ow;
        for (int64_t j = 0; j < lo; j++) maxpool_one(g, x, h0, h1, j, yr + j, ar + j);
        for (int64_t j = hi; j < g->ow; j++) maxpool_one(g, x, h0, h1, j, yr + j, ar + j);
        if (lo == hi) continue;
        if (h0 >= h1) { /* no input row in the window */
            for (int64_t j = lo; j < hi; j++) yr[j] = -INFINITY, ar[j] = -1;
            continue;
        }
        /* Chunks of MAXPOOL_LANES outputs with a fixed trip count (lanes past
         * the end repeat the last output), so the compare-select loop is
         * fully vectorised with no scalar remainder, whose NaN-aware
         * compares would branch. */
        for (int64_t j0 = lo; j0 < hi; j0 += MAXPOOL_LANES) {
            const int64_t last = BX_MIN(j0 + MAXPOOL_LANES, hi) - 1;
            float bv[MAXPOOL_LANES];
            int32_t bi[MAXPOOL_LANES];
            bool first = true;
            for (int64_t h = h0; h < h1; h += g->dh)
                for (int64_t b = 0; b < g->kw; b++) {
                    const int64_t base = h * W + b * g->dw - g->pw; /* + j*sw >= 0 for j >= lo */
                    if (first) {
#pragma omp simd
                        for (int l = 0; l < MAXPOOL_LANES; l++) {
                            int64_t idx = base + BX_MIN(j0 + l, last) * sw;
                            bv[l] = x[idx];
                            bi[l] = (int32_t)idx;
                        }
                        first = false;
                        continue;
                    }
#pragma omp simd
                    for (int l = 0; l < MAXPOOL_LANES; l++) {
                        int64_t idx = base + BX_MIN(j0 + l, last) * sw;
                        float v = x[idx];
                        bool t = max_takes(v, bv[l]);
                        bv[l] = t ? v : bv[l];
                        bi[l] = t ? (int32_t)idx : bi[l];
                    }
                }
            for (int64_t j = j0; j <= last; j++) yr[j] = bv[j - j0], ar[j] = bi[j - j0];
        }
    }
}

/* The common 2x2 window, stride 2, no padding or dilation: each output reads
 * two pairs of adjacent inputs, scanned (r0,c0), (r0,c1), (r1,c0), (r1,c1) with
 * the same rule as the general kernel. am may be NULL (no backward: values
 * only). Outputs whose window is cut by the edge (ceil_mode) go through
 * maxpool_one. */
/* maxpool_one for the edge outputs of the 2x2 kernel (compiled for another
 * ISA, so it is called, not inlined). */
__attribute__((noinline)) static void maxpool_one_ext(const pool_geom *g, const float *x, int64_t h0, int64_t h1,
                                                      int64_t j, float *y, int32_t *am) {
    maxpool_one(g, x, h0, h1, j, y, am);
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
/* Measured here (AMD EPYC, no-grad 256x32x28x28): the 8-wide AVX2 code of
 * these loops takes 3.5 ms, the AVX-512 code GCC makes for 14- and 7-wide
 * rows 8-10 ms (an AVX-512 intrinsics version with masked loads: 7 ms). The
 * region has its own copy of the max rule so that it inlines, and the kernel
 * is noinline so that it is not re-compiled into an AVX-512 caller. */
#pragma GCC push_options
#pragma GCC target("no-avx512f")
#define BX_POOL_AVX2_REGION 1
#endif
static inline bool max_takes_2x2(float v, float best) { return (v > best) | (v != v); }

__attribute__((noinline)) static void maxpool_plane_2x2(const pool_geom *g, const float *x, float *y, int32_t *am) {
    const int64_t W = g->w, fr = BX_MIN(g->oh, g->h / 2), fc = BX_MIN(g->ow, W / 2);
    int32_t scratch;
    for (int64_t i = 0; i < g->oh; i++) {
        float *yr = y + i * g->ow;
        int32_t *ar = am ? am + i * g->ow : NULL;
        const int64_t h0 = 2 * i, h1 = BX_MIN(h0 + 2, g->h);
        if (i >= fr) {
            for (int64_t j = 0; j < g->ow; j++) maxpool_one_ext(g, x, h0, h1, j, yr + j, ar ? ar + j : &scratch);
            continue;
        }
        const float *x0 = x + h0 * W, *x1 = x0 + W;
        if (ar) {
#pragma omp simd
            for (int64_t j = 0; j < fc; j++) {
                float b = x0[2 * j];
                int32_t k = (int32_t)(h0 * W + 2 * j);
                if (max_takes_2x2(x0[2 * j + 1], b)) b = x0[2 * j + 1], k = (int32_t)(h0 * W + 2 * j + 1);
                if (max_takes_2x2(x1[2 * j], b)) b = x1[2 * j], k = (int32_t)((h0 + 1) * W + 2 * j);
                if (max_takes_2x2(x1[2 * j + 1], b)) b = x1[2 * j + 1], k = (int32_t)((h0 + 1) * W + 2 * j + 1);
                yr[j] = b;
                ar[j] = k;
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < fc; j++) {
                float b = x0[2 * j];
                b = max_takes_2x2(x0[2 * j + 1], b) ? x0[2 * j + 1] : b;
                b = max_takes_2x2(x1[2 * j], b) ? x1[2 * j] : b;
                b = max_takes_2x2(x1[2 * j + 1], b) ? x1[2 * j + 1] : b;
                yr[j] = b;
            }
        }
        for (int64_t j = fc; j < g->ow; j++) maxpool_one_ext(g, x, h0, h1, j, yr + j, ar ? ar + j : &scratch);
    }
}

#ifdef BX_POOL_AVX2_REGION
#pragma GCC pop_options
#endif

static bool is_2x2_s2(const pool_geom *g) {
    return g->kh == 2 && g->kw == 2 && g->sh == 2 && g->sw == 2 && g->ph == 0 && g->pw == 0 && g->dh == 1 &&
           g->dw == 1;
}

/* gy (planes,oh,ow) -> gx (planes,h,w): each output's gradient goes to its
 * argmax; overlapping windows accumulate. */
static void max_pool2d_backward(bx_step *st, bx_node *n) {
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    const maxpool_ctx *c = n->ctx;
    const pool_geom *g = &c->g;
    const float *gy = n->out->grad->data;
    float *gxd = gx->data;
    int64_t on = g->oh * g->ow, in = g->h * g->w;
#pragma omp parallel for if (g->planes * on >= POOL_PAR_MIN)
    for (int64_t p = 0; p < g->planes; p++) {
        const int32_t *am = c->argmax + p * on;
        const float *gyp = gy + p * on;
        float *gxp = gxd + p * in;
        for (int64_t k = 0; k < on; k++)
            if (am[k] >= 0) gxp[am[k]] += gyp[k];
    }
}

bx_tensor *bx_max_pool2d(bx_step *st, bx_tensor *x, const bx_pool2d_opts *o) {
    static const bx_pool2d_opts dflt = BX_POOL2D_OPTS_INIT;
    if (!o) o = &dflt;
    if (!pool_check_x(st, "max_pool2d", x)) return bx__poison(st);
    pool_geom g;
    if (!pool_geometry(st, "max_pool2d", x, o, true, &g)) return bx__poison(st);
    x = bx_contiguous(st, x);
    bx_tensor *y = pool_output(st, x, g.oh, g.ow);
    if (bx_is_poison(x) || bx_is_poison(y)) return bx__poison(st);
    /* argmax for the backward (the general kernel needs it anyway; the 2x2
     * kernel skips it when no backward will run) */
    const bool fast = is_2x2_s2(&g), grad = bx__needs_grad(st, 1, &x);
    int32_t *am = NULL;
    if (grad || !fast) {
        am = bx_step_alloc(st, sizeof(int32_t) * (size_t)bx_numel(y));
        if (!am) return bx__poison(st);
    }
    const float *xd = x->data;
    float *yd = y->data;
    int64_t on = g.oh * g.ow, in = g.h * g.w;
#pragma omp parallel for if (g.planes * in >= POOL_PAR_MIN)
    for (int64_t p = 0; p < g.planes; p++) {
        if (fast)
            maxpool_plane_2x2(&g, xd + p * in, yd + p * on, am ? am + p * on : NULL);
        else
            maxpool_plane(&g, xd + p * in, yd + p * on, am + p * on);
    }
    maxpool_ctx *c;
    bx__record(st, "max_pool2d", max_pool2d_backward, y, 1, &x, sizeof *c, (void **)&c);
    if (c) {
        c->g = g;
        c->argmax = am;
    }
    return y;
}

/* ---- average pool ------------------------------------------------------------------ */

typedef struct avgpool_ctx {
    pool_geom g;
    bool count_include_pad;
    int divisor_override;
} avgpool_ctx;

/* Window of output (i,j) clipped to the input, and its divisor (rule O5):
 * count_include_pad counts the padded window (itself clipped to the padded
 * input, as PyTorch does for ceil_mode windows), otherwise only in-bounds
 * elements. Returns false for a window with no input element. */
static bool avg_window(const avgpool_ctx *c, int64_t i, int64_t j, int64_t *h0, int64_t *h1, int64_t *w0,
                       int64_t *w1, float *div) {
    const pool_geom *g = &c->g;
    int64_t hs = i * g->sh - g->ph, ws = j * g->sw - g->pw;
    int64_t he = BX_MIN(hs + g->kh, g->h + g->ph), we = BX_MIN(ws + g->kw, g->w + g->pw);
    int64_t pool_size = (he - hs) * (we - ws);
    hs = BX_MAX(hs, 0), ws = BX_MAX(ws, 0);
    he = BX_MIN(he, g->h), we = BX_MIN(we, g->w);
    *h0 = hs, *h1 = he, *w0 = ws, *w1 = we;
    if (hs >= he || ws >= we) return false;
    if (c->divisor_override) *div = (float)c->divisor_override;
    else if (c->count_include_pad) *div = (float)pool_size;
    else *div = (float)((he - hs) * (we - ws));
    return true;
}

/* Rows of output row i clipped to the input, and the divisor of its
 * interior windows (full kw columns inside the input). false: no input row. */
static bool avg_rows(const avgpool_ctx *c, int64_t i, int64_t *h0, int64_t *h1, float *div) {
    const pool_geom *g = &c->g;
    int64_t hs = i * g->sh - g->ph, he = BX_MIN(hs + g->kh, g->h + g->ph);
    int64_t pool_h = he - hs;
    *h0 = BX_MAX(hs, 0), *h1 = BX_MIN(he, g->h);
    if (c->divisor_override) *div = (float)c->divisor_override;
    else *div = (float)((c->count_include_pad ? pool_h : *h1 - *h0) * g->kw);
    return *h0 < *h1;
}

/* One output (i,j), bounds-checked: the window's sum (rows then columns,
 * PyTorch's order) over its divisor, 0 for a window without input. */
static float avg_one(const avgpool_ctx *c, const float *x, int64_t i, int64_t j) {
    int64_t h0, h1, w0, w1;
    float div;
    if (!avg_window(c, i, j, &h0, &h1, &w0, &w1, &div)) return 0.0f;
    float s = 0.0f;
    for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) s += x[h * c->g.w + w];
    return s / div;
}

/* The gradient of output (i,j), bounds-checked: gy/divisor to its window. */
static void avg_one_backward(const avgpool_ctx *c, float gy, int64_t i, int64_t j, float *gx) {
    int64_t h0, h1, w0, w1;
    float div;
    if (!avg_window(c, i, j, &h0, &h1, &w0, &w1, &div)) return;
    float v = gy / div;
    for (int64_t h = h0; h < h1; h++)
        for (int64_t w = w0; w < w1; w++) gx[h * c->g.w + w] += v;
}

/* One plane: x (h,w) -> y (oh,ow); interior columns are vectorised across
 * outputs with the same per-window summation order. */
static void avgpool_plane(const avgpool_ctx *c, const float *x, float *y) {
    const pool_geom *g = &c->g;
    int64_t lo, hi;
    interior_cols(g, &lo, &hi);
    const int64_t W = g->w, sw = g->sw;
    for (int64_t i = 0; i < g->oh; i++) {
        float *yr = y + i * g->ow;
        for (int64_t j = 0; j < lo; j++) yr[j] = avg_one(c, x, i, j);
        for (int64_t j = hi; j < g->ow; j++) yr[j] = avg_one(c, x, i, j);
        if (lo == hi) continue;
        int64_t h0, h1;
        float div;
        bool any = avg_rows(c, i, &h0, &h1, &div);
#pragma omp simd
        for (int64_t j = lo; j < hi; j++) yr[j] = 0.0f;
        if (!any) continue;
        for (int64_t h = h0; h < h1; h++)
            for (int64_t b = 0; b < g->kw; b++) {
                const int64_t base = h * W + b - g->pw; /* + j*sw >= 0 for j >= lo */
#pragma omp simd
                for (int64_t j = lo; j < hi; j++) yr[j] += x[base + j * sw];
            }
#pragma omp simd
        for (int64_t j = lo; j < hi; j++) yr[j] /= div;
    }
}

/* gy (planes,oh,ow) -> gx: each output spreads gy/divisor over its window
 * (within one (h, b) pass the interior outputs touch distinct columns). */
static void avg_pool2d_backward(bx_step *st, bx_node *n) {
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    const avgpool_ctx *c = n->ctx;
    const pool_geom *g = &c->g;
    const float *gy = n->out->grad->data;
    float *gxd = gx->data;
    int64_t on = g->oh * g->ow, in = g->h * g->w, lo, hi;
    interior_cols(g, &lo, &hi);
    const int64_t W = g->w, sw = g->sw;
#pragma omp parallel for if (g->planes * in >= POOL_PAR_MIN)
    for (int64_t p = 0; p < g->planes; p++) {
        const float *gyp = gy + p * on;
        float *gxp = gxd + p * in;
        for (int64_t i = 0; i < g->oh; i++) {
            const float *gyr = gyp + i * g->ow;
            for (int64_t j = 0; j < lo; j++) avg_one_backward(c, gyr[j], i, j, gxp);
            for (int64_t j = hi; j < g->ow; j++) avg_one_backward(c, gyr[j], i, j, gxp);
            int64_t h0, h1;
            float div;
            if (lo == hi || !avg_rows(c, i, &h0, &h1, &div)) continue;
            for (int64_t h = h0; h < h1; h++)
                for (int64_t b = 0; b < g->kw; b++) {
                    const int64_t base = h * W + b - g->pw;
#pragma omp simd
                    for (int64_t j = lo; j < hi; j++) gxp[base + j * sw] += gyr[j] / div;
                }
        }
    }
}

bx_tensor *bx_avg_pool2d(bx_step *st, bx_tensor *x, const bx_pool2d_opts *o) {
    static const bx_pool2d_opts dflt = BX_POOL2D_OPTS_INIT;
    if (!o) o = &dflt;
    if (!pool_check_x(st, "avg_pool2d", x)) return bx__poison(st);
    avgpool_ctx c = {.count_include_pad = o->count_include_pad, .divisor_override = o->divisor_override};
    if (!pool_geometry(st, "avg_pool2d", x, o, false, &c.g)) return bx__poison(st);
    x = bx_contiguous(st, x);
    bx_tensor *y = pool_output(st, x, c.g.oh, c.g.ow);
    if (bx_is_poison(x) || bx_is_poison(y)) return bx__poison(st);
    const float *xd = x->data;
    float *yd = y->data;
    int64_t on = c.g.oh * c.g.ow, in = c.g.h * c.g.w;
#pragma omp parallel for if (c.g.planes * in >= POOL_PAR_MIN)
    for (int64_t p = 0; p < c.g.planes; p++) avgpool_plane(&c, xd + p * in, yd + p * on);
    avgpool_ctx *cc;
    bx__record(st, "avg_pool2d", avg_pool2d_backward, y, 1, &x, sizeof *cc, (void **)&cc);
    if (cc) *cc = c;
    return y;
}

/* ---- adaptive average pool ---------------------------------------------------------- */

/* PyTorch's adaptive windows: [floor(i*in/out), ceil((i+1)*in/out)). */
static int64_t ada_start(int64_t i, int64_t in, int64_t out) { return i * in / out; }
static int64_t ada_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }

static void adaptive_backward(bx_step *st, bx_node *n) {
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    const pool_geom *g = n->ctx;
    const float *gy = n->out->grad->data;
    float *gxd = gx->data;
    int64_t on = g->oh * g->ow, in = g->h * g->w;
#pragma omp parallel for if (g->planes * in >= POOL_PAR_MIN)
    for (int64_t p = 0; p < g->planes; p++) {
        const float *gyp = gy + p * on;
        float *gxp = gxd + p * in;
        for (int64_t i = 0; i < g->oh; i++) {
            int64_t h0 = ada_start(i, g->h, g->oh), h1 = ada_end(i, g->h, g->oh);
            for (int64_t j = 0; j < g->ow; j++) {
                int64_t w0 = ada_start(j, g->w, g->ow), w1 = ada_end(j, g->w, g->ow);
                float v = gyp[i * g->ow + j] / (float)((h1 - h0) * (w1 - w0));
                for (int64_t h = h0; h < h1; h++)
                    for (int64_t w = w0; w < w1; w++) gxp[h * g->w + w] += v;
            }
        }
    }
}

/* x (..., H, W) -> y (..., out_h, out_w); window (i,j) averages
 * [floor(i*H/out_h), ceil((i+1)*H/out_h)) x (likewise for W). */
bx_tensor *bx_adaptive_avg_pool2d(bx_step *st, bx_tensor *x, int64_t out_h, int64_t out_w) {
    if (!pool_check_x(st, "adaptive_avg_pool2d", x)) return bx__poison(st);
    if (out_h < 1 || out_w < 1)
        return pool_fail(st, "adaptive_avg_pool2d", x, "output size (%lld,%lld) must be positive", (long long)out_h,
                         (long long)out_w);
    pool_geom g = {0};
    g.h = x->shape[x->ndim - 2], g.w = x->shape[x->ndim - 1];
    g.planes = bx_numel(x) / (g.h * g.w);
    g.oh = out_h, g.ow = out_w;
    x = bx_contiguous(st, x);
    bx_tensor *y = pool_output(st, x, g.oh, g.ow);
    if (bx_is_poison(x) || bx_is_poison(y)) return bx__poison(st);
    const float *xd = x->data;
    float *yd = y->data;
    int64_t on = g.oh * g.ow, in = g.h * g.w;
#pragma omp parallel for if (g.planes * in >= POOL_PAR_MIN)
    for (int64_t p = 0; p < g.planes; p++) {
        const float *xp = xd + p * in;
        float *yp = yd + p * on;
        for (int64_t i = 0; i < g.oh; i++) {
            int64_t h0 = ada_start(i, g.h, g.oh), h1 = ada_end(i, g.h, g.oh);
            for (int64_t j = 0; j < g.ow; j++) {
                int64_t w0 = ada_start(j, g.w, g.ow), w1 = ada_end(j, g.w, g.ow);
                float s = 0.0f;
                for (int64_t h = h0; h < h1; h++) {
                    const float *row = xp + h * g.w;
#pragma omp simd reduction(+ : s)
                    for (int64_t w = w0; w < w1; w++) s += row[w];
                }
                yp[i * g.ow + j] = s / (float)((h1 - h0) * (w1 - w0));
            }
        }
    }
    pool_geom *c;
    bx__record(st, "adaptive_avg_pool2d", adaptive_backward, y, 1, &x, sizeof *c, (void **)&c);
    if (c) *c = g;
    return y;
}
