/* reduce.c - sum and mean over a list of dims (keepdim, all-reduce), and
 * bx__reduce_to, the "sum a gradient over its broadcast dims" helper that
 * every broadcasting backward (and linear/conv bias gradients) uses.
 *
 * bx__reduce_to sees dst with g's rank, stride 0 along the reduced dims,
 * drops size-1 dims and merges contiguous ones; the dims then alternate
 * between kept and reduced. Two shapes of work remain:
 *  - last dim kept (bias of a linear layer: g (N,O) -> (O)): each task owns a
 *    block of up to RD_BLK output columns and adds every reduced row into a
 *    double accumulator, then into dst;
 *  - last dim reduced (row sums, conv bias g (N,C,HW) -> (C)): each task owns
 *    one output element and sums its rows in double.
 * Tasks run in parallel above BX_PAR_MIN; a full reduction to one element
 * splits its rows over the threads with per-thread partial sums combined in
 * thread order, so results are deterministic for a given thread count. */
#include "ops/ops_int.h"
#include "blixt/ops.h"

#include <math.h>
#include <omp.h>
#include <string.h>

#define RD_BLK 256
#define SUM_BLK 1024 /* parallel split granularity */
#define MAX_THREADS 256

/* Serial sum of n contiguous floats in SUM_LANES double lanes (explicit
 * lanes: the same rounding whether or not the compiler vectorises; several
 * independent vector chains keep the adds pipelined). */
#define SUM_LANES 32
static double sum_serial(const float *p, int64_t n) {
    double acc[SUM_LANES] = {0.0};
    int64_t j = 0;
    for (; j + SUM_LANES <= n; j += SUM_LANES) {
#pragma omp simd
        for (int l = 0; l < SUM_LANES; l++) acc[l] += (double)p[j + l];
    }
    double t = 0.0;
    for (; j < n; j++) t += p[j];
    for (int l = 0; l < SUM_LANES; l++) t += acc[l];
    return t;
}

/* Sum of n floats at stride s. */
static double sum_row(const float *p, int64_t n, int64_t s) {
    if (s == 1 && n >= 2 * SUM_LANES) return sum_serial(p, n);
    double acc = 0.0;
    for (int64_t j = 0; j < n; j++) acc += p[j * s];
    return acc;
}

static int threads_for(int64_t work, int64_t ntasks) {
    if (work < BX_PAR_MIN || ntasks < 2) return 1;
    int nth = omp_get_max_threads();
    if (nth > MAX_THREADS) nth = MAX_THREADS;
    if (nth > ntasks) nth = (int)ntasks;
    return nth;
}

double bx__sum_f32(const float *p, int64_t n) {
    int nth = threads_for(n, n / SUM_BLK);
    if (nth <= 1) return sum_serial(p, n);
    double part[MAX_THREADS];
#pragma omp parallel num_threads(nth)
    {
        int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
        int64_t lo = n * tid / nt, hi = n * (tid + 1) / nt;
        part[tid] = sum_serial(p + lo, hi - lo);
        if (tid == 0)
            for (int64_t t = nt; t < nth; t++) part[t] = 0.0;
    }
    double s = 0.0;
    for (int t = 0; t < nth; t++) s += part[t];
    return s;
}

/* The simplified loop of a reduction: dims of g with dst strides (0 = reduced). */
typedef struct rd_loop {
    int nd;
    int64_t shape[BX_MAX_DIMS], sd[BX_MAX_DIMS], sg[BX_MAX_DIMS];
} rd_loop;

/* Odometer over a list of dims (row-major), tracking the dst and g offsets. */
typedef struct rd_odo {
    const rd_loop *L;
    const int *dl;
    int n;
    int64_t idx[BX_MAX_DIMS];
    int64_t od, og;
} rd_odo;

/* Positions the odometer at flat index i of its dims. */
static void odo_seek(rd_odo *o, const rd_loop *L, const int *dl, int n, int64_t i) {
    o->L = L;
    o->dl = dl;
    o->n = n;
    o->od = 0;
    o->og = 0;
    for (int k = n - 1; k >= 0; k--) {
        int d = dl[k];
        o->idx[k] = i % L->shape[d];
        i /= L->shape[d];
        o->od += o->idx[k] * L->sd[d];
        o->og += o->idx[k] * L->sg[d];
    }
}

static inline void odo_next(rd_odo *o) {
    for (int k = o->n - 1; k >= 0; k--) {
        int d = o->dl[k];
        if (++o->idx[k] < o->L->shape[d]) {
            o->od += o->L->sd[d];
            o->og += o->L->sg[d];
            return;
        }
        o->od -= o->L->sd[d] * (o->L->shape[d] - 1);
        o->og -= o->L->sg[d] * (o->L->shape[d] - 1);
        o->idx[k] = 0;
    }
}

/* Splits [0, n) over the threads: this thread's [*lo, *hi). */
#define THREAD_RANGE(n, lo, hi)                                        \
    int64_t tid_ = omp_get_thread_num(), nt_ = omp_get_num_threads(); \
    int64_t lo = (n) * tid_ / nt_, hi = (n) * (tid_ + 1) / nt_

/* Column sums of a contiguous (rows, cols) block with cols < SHORT_COLS:
 * lanes = a multiple of cols, so lane l always holds column l % cols. */
#define SHORT_COLS 64
static void col_sums_short(const float *g, int64_t rows, int64_t cols, double *out) {
    double acc[SHORT_COLS] = {0.0};
    int64_t lanes = cols * (SHORT_COLS / cols), total = rows * cols, i = 0;
    for (; i + lanes <= total; i += lanes) {
#pragma omp simd
        for (int64_t l = 0; l < lanes; l++) acc[l] += (double)g[i + l];
    }
    for (int64_t l = 0; i + l < total; l++) acc[l] += (double)g[i + l];
    for (int64_t j = 0; j < cols; j++) out[j] = 0.0;
    for (int64_t l = 0; l < lanes; l++) out[l % cols] += acc[l];
}

/* Last dim kept: task = (kept-outer index, column block). */
static void reduce_cols(const rd_loop *L, float *dst, const float *g, float alpha, const int *kd, int nk,
                        const int *rdl, int nr) {
    int last = L->nd - 1;
    int64_t cols = L->shape[last], nblk = (cols + RD_BLK - 1) / RD_BLK;
    int64_t nkept = 1, nred = 1;
    for (int k = 0; k < nk; k++) nkept *= L->shape[kd[k]];
    for (int k = 0; k < nr; k++) nred *= L->shape[rdl[k]];
    int64_t ntasks = nkept * nblk, sgl = L->sg[last], sdl = L->sd[last];
    /* one reduced dim right above contiguous short columns: (rows, cols) block */
    bool block = nr == 1 && sgl == 1 && cols < SHORT_COLS && L->sg[rdl[0]] == cols;
    int nth = threads_for(nkept * nred * cols, ntasks);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        THREAD_RANGE(ntasks, t0, t1);
        double acc[RD_BLK];
        for (int64_t t = t0; t < t1; t++) {
            int64_t b = t % nblk, c0 = b * RD_BLK, w = BX_MIN((int64_t)RD_BLK, cols - c0);
            rd_odo ko, ro;
            odo_seek(&ko, L, kd, nk, t / nblk);
            if (block) {
                col_sums_short(g + ko.og, nred, cols, acc);
            } else {
                for (int64_t j = 0; j < w; j++) acc[j] = 0.0;
                odo_seek(&ro, L, rdl, nr, 0);
                for (int64_t r = 0; r < nred; r++, odo_next(&ro)) {
                    const float *gp = g + ko.og + ro.og + c0 * sgl;
                    if (sgl == 1) {
#pragma omp simd
                        for (int64_t j = 0; j < w; j++) acc[j] += gp[j];
                    } else {
                        for (int64_t j = 0; j < w; j++) acc[j] += gp[j * sgl];
                    }
                }
            }
            float *dp = dst + ko.od + c0 * sdl;
            for (int64_t j = 0; j < w; j++) dp[j * sdl] += alpha * (float)acc[j];
        }
    }
}

/* Last dim reduced: task = one output element. */
static void reduce_rows(const rd_loop *L, float *dst, const float *g, float alpha, const int *kd, int nk,
                        const int *rdl, int nr) {
    int last = L->nd - 1;
    int64_t len = L->shape[last], sgl = L->sg[last];
    int64_t nkept = 1, nred = 1;
    for (int k = 0; k < nk; k++) nkept *= L->shape[kd[k]];
    for (int k = 0; k < nr; k++) nred *= L->shape[rdl[k]];
    int64_t work = nkept * nred * len;
    if (nkept == 1 && nred == 1 && sgl == 1) {
        dst[0] += alpha * (float)bx__sum_f32(g, len);
        return;
    }
    if (nkept == 1 && threads_for(work, nred) > 1) {
        /* one output: split the rows over the threads, partial sums in thread order */
        int nth = threads_for(work, nred);
        double part[MAX_THREADS];
#pragma omp parallel num_threads(nth)
        {
            THREAD_RANGE(nred, r0, r1);
            rd_odo ro;
            odo_seek(&ro, L, rdl, nr, r0);
            double s = 0.0;
            for (int64_t r = r0; r < r1; r++, odo_next(&ro)) s += sum_row(g + ro.og, len, sgl);
            part[tid_] = s;
            if (tid_ == 0)
                for (int64_t t = nt_; t < nth; t++) part[t] = 0.0;
        }
        double s = 0.0;
        for (int t = 0; t < nth; t++) s += part[t];
        dst[0] += alpha * (float)s;
        return;
    }
    int nth = threads_for(work, nkept);
#pragma omp parallel num_threads(nth) if (nth > 1)
    {
        THREAD_RANGE(nkept, t0, t1);
        rd_odo ko, ro;
        odo_seek(&ko, L, kd, nk, t0);
        for (int64_t t = t0; t < t1; t++, odo_next(&ko)) {
            double s = 0.0;
            odo_seek(&ro, L, rdl, nr, 0);
            for (int64_t r = 0; r < nred; r++, odo_next(&ro)) s += sum_row(g + ko.og + ro.og, len, sgl);
            dst[ko.od] += alpha * (float)s;
        }
    }
}

bx_status bx__reduce_to_scaled(bx_tensor *dst, const bx_tensor *g, float alpha) {
    char a[64], b[64];
    if (dst->dtype != BX_F32 || g->dtype != BX_F32)
        return bx__error(BX_ERR_SHAPE, "reduce_to: dst %s and gradient %s must be f32",
                         bx_dtype_name(dst->dtype), bx_dtype_name(g->dtype));
    rd_loop L;
    L.nd = g->ndim;
    if (dst->ndim > g->ndim || !bx__bcast_strides(dst, g->ndim, g->shape, L.sd))
        return bx__error(BX_ERR_SHAPE, "reduce_to: %s does not broadcast to gradient %s",
                         bx_shape_str(dst, a, sizeof a), bx_shape_str(g, b, sizeof b));
    int64_t n = bx_numel(g);
    if (n == 0) return BX_OK;
    float *d = dst->data;
    const float *gs = g->data;
    if (bx_numel(dst) == n && bx_is_contiguous(dst) && bx_is_contiguous(g)) {
#pragma omp parallel for simd schedule(static) if (n >= BX_PAR_MIN)
        for (int64_t i = 0; i < n; i++) d[i] += alpha * gs[i];
        return BX_OK;
    }
    /* drop size-1 dims, merge contiguous ones */
    int k = 0;
    for (int i = 0; i < g->ndim; i++) {
        if (g->shape[i] == 1) continue;
        L.shape[k] = g->shape[i];
        L.sd[k] = L.sd[i];
        L.sg[k] = g->stride[i];
        k++;
    }
    if (k == 0) {
        d[0] += alpha * gs[0];
        return BX_OK;
    }
    int w = 0;
    for (int i = 1; i < k; i++) {
        if (L.sd[w] == L.sd[i] * L.shape[i] && L.sg[w] == L.sg[i] * L.shape[i]) {
            L.shape[w] *= L.shape[i];
            L.sd[w] = L.sd[i];
            L.sg[w] = L.sg[i];
        } else {
            w++;
            L.shape[w] = L.shape[i];
            L.sd[w] = L.sd[i];
            L.sg[w] = L.sg[i];
        }
    }
    L.nd = w + 1;
    int kd[BX_MAX_DIMS], rdl[BX_MAX_DIMS], nk = 0, nr = 0;
    for (int i = 0; i < L.nd - 1; i++) {
        if (L.sd[i] != 0) kd[nk++] = i;
        else rdl[nr++] = i;
    }
    if (L.sd[L.nd - 1] != 0) reduce_cols(&L, d, gs, alpha, kd, nk, rdl, nr);
    else reduce_rows(&L, d, gs, alpha, kd, nk, rdl, nr);
    return BX_OK;
}

bx_status bx__reduce_to(bx_tensor *dst, const bx_tensor *g) { return bx__reduce_to_scaled(dst, g, 1.0f); }

/* ---- sum / mean ---------------------------------------------------------------- */

typedef struct rd_ctx {
    int ndim;                  /* of x */
    int64_t kshape[BX_MAX_DIMS]; /* keepdim shape of y */
    float count;               /* elements per output (mean) */
    bool mean;
} rd_ctx;

BX_EW_KERNEL(k_copy, a[i])
BX_EW_KERNEL(k_divs, a[i] / p[0])

// x (...) -> y (x's shape with the dims reduced, kept as 1 or dropped);
// gx += broadcast(gy) (sum) or broadcast(gy) / count (mean)
static void reduce_backward(bx_step *st, bx_node *n) {
    rd_ctx *ctx = n->ctx;
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    bx_tensor gv = *n->out->grad; /* gy seen with the keepdim shape (same layout) */
    gv.ndim = ctx->ndim;
    int64_t s = 1;
    for (int d = ctx->ndim - 1; d >= 0; d--) {
        gv.shape[d] = ctx->kshape[d];
        gv.stride[d] = s;
        s *= ctx->kshape[d];
    }
    const bx_tensor *ins[1] = {&gv};
    bx_status rs = bx__ew_apply(ctx->mean ? k_divs : k_copy, &ctx->count, true, gx, 1, ins);
    if (rs != BX_OK) bx_step_fail(st, rs, "%s: %s", n->op, bx_errmsg());
}

static bx_tensor *reduce_impl(bx_step *st, const char *op, bx_tensor *x, const int *dims, int ndims,
                              bool keepdim, bool mean) {
    if (!bx__ok1(st, op, x)) return bx__poison(st);
    if (!bx__need_f32(st, op, "x", x)) return bx__poison(st);
    char b[64];
    if (ndims < 0 || (ndims > 0 && !dims))
        return bx_step_fail(st, BX_ERR_INVALID, "%s: bad dim list (%d dims)", op, ndims);
    bool red[BX_MAX_DIMS] = {false};
    for (int i = 0; i < ndims; i++) {
        int d = bx__norm_dim(dims[i], x->ndim);
        if (d < 0)
            return bx_step_fail(st, BX_ERR_SHAPE, "%s: dim %d out of range for x %s", op, dims[i],
                                bx_shape_str(x, b, sizeof b));
        if (x->ndim == 0) continue; /* dim 0 / -1 of a 0-d tensor: itself */
        if (red[d])
            return bx_step_fail(st, BX_ERR_INVALID, "%s: dim %d appears more than once for x %s", op, d,
                                bx_shape_str(x, b, sizeof b));
        red[d] = true;
    }
    if (ndims == 0)
        for (int d = 0; d < x->ndim; d++) red[d] = true;
    int64_t kshape[BX_MAX_DIMS], yshape[BX_MAX_DIMS];
    int yn = 0;
    for (int d = 0; d < x->ndim; d++) {
        kshape[d] = red[d] ? 1 : x->shape[d];
        if (!red[d] || keepdim) yshape[yn++] = kshape[d];
    }
    bx_tensor *y = bx_step_zeros(st, BX_F32, yn, yshape);
    if (bx_is_poison(y)) return y;
    int64_t ny = bx_numel(y), cnt = 1; /* elements per output */
    for (int d = 0; d < x->ndim; d++)
        if (red[d]) cnt *= x->shape[d];
    bx_tensor yk = *y; /* y seen with the keepdim shape */
    yk.ndim = x->ndim;
    int64_t s = 1;
    for (int d = x->ndim - 1; d >= 0; d--) {
        yk.shape[d] = kshape[d];
        yk.stride[d] = s;
        s *= kshape[d];
    }
    bx_status rs = bx__reduce_to(&yk, x);
    if (rs != BX_OK) return bx_step_fail(st, rs, "%s: %s", op, bx_errmsg());
    if (mean) {
        float *yd = y->data, c = (float)cnt;
        for (int64_t i = 0; i < ny; i++) yd[i] = yd[i] / c; /* 0/0 = NaN for an empty mean, as torch */
    }
    void *ctxp = NULL;
    if (bx__record(st, op, reduce_backward, y, 1, &x, sizeof(rd_ctx), &ctxp)) {
        rd_ctx *ctx = ctxp;
        ctx->ndim = x->ndim;
        memcpy(ctx->kshape, kshape, sizeof kshape);
        ctx->count = (float)cnt;
        ctx->mean = mean;
    }
    return y;
}

/* Sum of f32 x over `ndims` dims (negative allowed; ndims == 0: all dims),
 * keeping them as size 1 when keepdim. New step tensor (0-d for a full
 * reduction without keepdim). Errors: dtype, dim out of range or repeated. */
bx_tensor *bx_sum(bx_step *st, bx_tensor *x, const int *dims, int ndims, bool keepdim) {
    return reduce_impl(st, "sum", x, dims, ndims, keepdim, false);
}

/* Mean over dims; as bx_sum (sum / number of reduced elements). */
bx_tensor *bx_mean(bx_step *st, bx_tensor *x, const int *dims, int ndims, bool keepdim) {
    return reduce_impl(st, "mean", x, dims, ndims, keepdim, true);
}
