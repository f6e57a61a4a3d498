/* ew_engine.c - broadcasting rules and the strided elementwise loop engine
 * (bx__ew_apply) that every elementwise op, activation and view backward
 * runs on.
 *
 * The engine walks out's shape once: it drops size-1 dims, orders the dims by
 * out's strides (so writes go in memory order, e.g. into a permuted
 * gradient), merges dims that are contiguous for every operand, and then
 * picks one of three schedules:
 *  - rows (the default): the op's kernel runs over the innermost dim. When
 *    every operand has inner stride 1 (same-shape contiguous, or a row vector
 *    broadcast over a matrix) the kernel reads the tensors in place;
 *    broadcast (stride 0) and strided inputs go through stack buffers of
 *    EW_BLK elements;
 *  - short rows (inner dim < EW_SHORT): several rows per kernel call;
 *  - tiles (one input read across its memory order, e.g. a transpose):
 *    EW_TILE x EW_TILE tiles through a buffer.
 * The work is split into tasks, shared out as contiguous ranges over the
 * OpenMP threads above BX_PAR_MIN elements, so results do not depend on the
 * thread count. */
#include "ops/ops_int.h"

#include <omp.h>

#define EW_MAXOP 5       /* out + 4 inputs */
#define EW_BLK 256       /* buffer length for broadcast / strided operands */
#define EW_CHUNK 16384   /* inner-dim split, so one long row can go parallel */

int bx__broadcast_shape(const bx_tensor *a, const bx_tensor *b, int64_t *out_shape) {
    int nd = BX_MAX(a->ndim, b->ndim);
    for (int i = 0; i < nd; i++) {
        int da = a->ndim - 1 - i, db = b->ndim - 1 - i;
        int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
        int64_t s;
        if (sa == sb || sb == 1) s = sa;
        else if (sa == 1) s = sb;
        else return -1;
        out_shape[nd - 1 - i] = s;
    }
    return nd;
}

bool bx__bcast_strides(const bx_tensor *t, int ndim, const int64_t *shape, int64_t *strides) {
    if (t->ndim > ndim) return false;
    int lead = ndim - t->ndim;
    for (int d = 0; d < ndim; d++) {
        int td = d - lead;
        if (td < 0) strides[d] = 0;
        else if (t->shape[td] == shape[d]) strides[d] = shape[d] == 1 ? 0 : t->stride[td];
        else if (t->shape[td] == 1) strides[d] = 0;
        else return false;
    }
    return true;
}

bool bx__need_f32(bx_step *st, const char *op, const char *name, const bx_tensor *x) {
    if (x->dtype == BX_F32) return true;
    char b[64];
    bx_step_fail(st, BX_ERR_SHAPE, "%s: %s %s must be f32, got %s", op, name, bx_shape_str(x, b, sizeof b),
                 bx_dtype_name(x->dtype));
    return false;
}

typedef struct ew_loop {
    int nd, nop;
    int64_t shape[BX_MAX_DIMS];
    int64_t st[EW_MAXOP][BX_MAX_DIMS];
} ew_loop;

/* Drops size-1 dims, orders dims by operand 0's stride (descending), merges
 * dims that are contiguous for every operand. Leaves at least one dim. */
static void loop_simplify(ew_loop *L, bool sort) {
    int k = 0;
    for (int d = 0; d < L->nd; d++) {
        if (L->shape[d] == 1) continue;
        L->shape[k] = L->shape[d];
        for (int o = 0; o < L->nop; o++) L->st[o][k] = L->st[o][d];
        k++;
    }
    L->nd = k;
    if (sort) { /* insertion sort, stable: keeps the natural order on ties */
        for (int i = 1; i < L->nd; i++) {
            for (int j = i; j > 0 && L->st[0][j - 1] < L->st[0][j]; j--) {
                int64_t t = L->shape[j];
                L->shape[j] = L->shape[j - 1];
                L->shape[j - 1] = t;
                for (int o = 0; o < L->nop; o++) {
                    t = L->st[o][j];
                    L->st[o][j] = L->st[o][j - 1];
                    L->st[o][j - 1] = t;
                }
            }
        }
    }
    if (L->nd == 0) {
        L->nd = 1;
        L->shape[0] = 1;
        for (int o = 0; o < L->nop; o++) L->st[o][0] = 0;
        return;
    }
    int w = 0;
    for (int d = 1; d < L->nd; d++) {
        bool merge = true;
        for (int o = 0; o < L->nop; o++)
            if (L->st[o][w] != L->st[o][d] * L->shape[d]) merge = false;
        if (merge) {
            L->shape[w] *= L->shape[d];
            for (int o = 0; o < L->nop; o++) L->st[o][w] = L->st[o][d];
        } else {
            w++;
            L->shape[w] = L->shape[d];
            for (int o = 0; o < L->nop; o++) L->st[o][w] = L->st[o][d];
        }
    }
    L->nd = w + 1;
}

/* One inner run of n elements starting at the operand pointers ptr[] with
 * inner strides s[]. */
static void ew_inner(bx__ew_kernel k, const float *p, bool acc, int nop, float *const *ptr,
                     const int64_t *s, int64_t n) {
    const float *x[EW_MAXOP - 1] = {NULL, NULL, NULL, NULL};
    bool direct = true;
    for (int o = 0; o < nop; o++)
        if (s[o] != 1) direct = false;
    if (direct) {
        for (int o = 1; o < nop; o++) x[o - 1] = ptr[o];
        k(n, ptr[0], x, p, acc);
        return;
    }
    float buf[EW_MAXOP][EW_BLK];
    int64_t first = BX_MIN(n, (int64_t)EW_BLK);
    for (int o = 1; o < nop; o++)
        if (s[o] == 0) {
            float v = ptr[o][0];
            for (int64_t j = 0; j < first; j++) buf[o][j] = v;
        }
    for (int64_t b = 0; b < n; b += EW_BLK) {
        int64_t m = BX_MIN((int64_t)EW_BLK, n - b);
        for (int o = 1; o < nop; o++) {
            if (s[o] == 1) x[o - 1] = ptr[o] + b;
            else if (s[o] == 0) x[o - 1] = buf[o];
            else {
                const float *src = ptr[o] + b * s[o];
                for (int64_t j = 0; j < m; j++) buf[o][j] = src[j * s[o]];
                x[o - 1] = buf[o];
            }
        }
        if (s[0] == 1) {
            k(m, ptr[0] + b, x, p, acc);
        } else {
            float *dst = ptr[0] + b * s[0];
            if (acc)
                for (int64_t j = 0; j < m; j++) buf[0][j] = dst[j * s[0]];
            k(m, buf[0], x, p, acc);
            for (int64_t j = 0; j < m; j++) dst[j * s[0]] = buf[0][j];
        }
    }
}

/* Runs tasks [t0, t1): task t is outer row t / nch, inner chunk t % nch. */
static void ew_range(const ew_loop *L, bx__ew_kernel k, const float *p, bool acc, float *const *base,
                     int64_t nch, int64_t t0, int64_t t1) {
    int last = L->nd - 1, nop = L->nop;
    int64_t inner = L->shape[last];
    int64_t idx[BX_MAX_DIMS], off[EW_MAXOP], s[EW_MAXOP];
    for (int o = 0; o < nop; o++) {
        off[o] = 0;
        s[o] = L->st[o][last];
    }
    int64_t row = t0 / nch, rem = row;
    for (int d = last - 1; d >= 0; d--) {
        idx[d] = rem % L->shape[d];
        rem /= L->shape[d];
        for (int o = 0; o < nop; o++) off[o] += idx[d] * L->st[o][d];
    }
    for (int64_t t = t0; t < t1; t++) {
        int64_t r = t / nch, c = t % nch;
        for (; row < r; row++) { /* odometer step over the outer dims */
            for (int d = last - 1; d >= 0; d--) {
                if (++idx[d] < L->shape[d]) {
                    for (int o = 0; o < nop; o++) off[o] += L->st[o][d];
                    break;
                }
                for (int o = 0; o < nop; o++) off[o] -= L->st[o][d] * (L->shape[d] - 1);
                idx[d] = 0;
            }
        }
        int64_t lo = c * EW_CHUNK, n = BX_MIN(inner - lo, (int64_t)EW_CHUNK);
        float *ptr[EW_MAXOP];
        for (int o = 0; o < nop; o++) ptr[o] = base[o] + off[o] + lo * s[o];
        ew_inner(k, p, acc, nop, ptr, s, n);
    }
}

/* ---- transposing copies ------------------------------------------------------
 * One input whose inner stride is not 1 while another dim kd has stride 1
 * (a transposed or permuted view): element-by-element gathers would touch a
 * new cache line (often a new page) per element. Instead (kd, last) are
 * processed in EW_TILE x EW_TILE tiles, read along kd into a buffer and
 * handed to the kernel row by row. */
#define EW_TILE 32

typedef struct tile_plan {
    int kd, last, no;            /* tiled dims; number of other (outer) dims */
    int od[BX_MAX_DIMS];         /* the outer dims */
    int64_t nti, ntj;            /* tiles along kd and along last */
} tile_plan;

static void ew_tile_range(const ew_loop *L, const tile_plan *tp, bx__ew_kernel k, const float *p, bool acc,
                          float *const *base, int64_t t0, int64_t t1) {
    float buf[EW_TILE][EW_TILE];
    int64_t ntile = tp->nti * tp->ntj;
    int64_t nk = L->shape[tp->kd], nl = L->shape[tp->last];
    int64_t sl = L->st[1][tp->last], sok = L->st[0][tp->kd];
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / ntile, tile = t % ntile;
        int64_t i0 = (tile / tp->ntj) * EW_TILE, j0 = (tile % tp->ntj) * EW_TILE;
        int64_t off0 = 0, off1 = 0, rem = o;
        for (int q = tp->no - 1; q >= 0; q--) {
            int d = tp->od[q];
            int64_t ix = rem % L->shape[d];
            rem /= L->shape[d];
            off0 += ix * L->st[0][d];
            off1 += ix * L->st[1][d];
        }
        int64_t mi = BX_MIN((int64_t)EW_TILE, nk - i0), mj = BX_MIN((int64_t)EW_TILE, nl - j0);
        const float *src = base[1] + off1 + i0 + j0 * sl;
        for (int64_t jj = 0; jj < mj; jj++)
            for (int64_t ii = 0; ii < mi; ii++) buf[ii][jj] = src[jj * sl + ii];
        for (int64_t ii = 0; ii < mi; ii++) {
            const float *x[EW_MAXOP - 1] = {buf[ii], NULL, NULL, NULL};
            k(mj, base[0] + off0 + (i0 + ii) * sok + j0, x, p, acc);
        }
    }
}

/* A tiling plan when it applies (see above); false otherwise. */
static bool tile_plan_of(const ew_loop *L, tile_plan *tp) {
    int last = L->nd - 1;
    if (L->nop != 2 || L->nd < 2 || L->st[0][last] != 1 || L->st[1][last] == 1 || L->st[1][last] == 0)
        return false;
    if (L->shape[last] < 8) return false;
    tp->kd = -1;
    for (int d = 0; d < last; d++)
        if (L->st[1][d] == 1 && L->shape[d] >= 8) tp->kd = d;
    if (tp->kd < 0) return false;
    tp->last = last;
    tp->no = 0;
    for (int d = 0; d < last; d++)
        if (d != tp->kd) tp->od[tp->no++] = d;
    tp->nti = (L->shape[tp->kd] + EW_TILE - 1) / EW_TILE;
    tp->ntj = (L->shape[last] + EW_TILE - 1) / EW_TILE;
    return true;
}

/* ---- short rows ----------------------------------------------------------------
 * When the inner dim is short (a bias of 10 over 128 rows, a (N,1) column
 * over (N,4)) one kernel call per row costs more than the row. If out is
 * contiguous across the last two dims, rows are grouped into blocks of
 * EW_BLK elements: inputs contiguous across rows are read in place, inputs
 * broadcast over rows (row stride 0) are laid out once per task as a
 * repeating pattern, others are gathered. */
#define EW_SHORT 64

static void ew_rows_range(const ew_loop *L, bx__ew_kernel k, const float *p, bool acc, float *const *base,
                          int64_t rows_per_task, int64_t t0, int64_t t1) {
    float buf[EW_MAXOP][EW_BLK];
    int last = L->nd - 1, rd = L->nd - 2, nop = L->nop;
    int64_t ncols = L->shape[last], nrows = L->shape[rd];
    int64_t rpb = EW_BLK / ncols, nrt = (nrows + rows_per_task - 1) / rows_per_task;
    bool filled[EW_MAXOP] = {false};
    for (int64_t t = t0; t < t1; t++) {
        int64_t o = t / nrt, r0 = (t % nrt) * rows_per_task, r1 = BX_MIN(nrows, r0 + rows_per_task);
        int64_t off[EW_MAXOP] = {0, 0, 0, 0, 0}, rem = o;
        for (int d = rd - 1; d >= 0; d--) {
            int64_t ix = rem % L->shape[d];
            rem /= L->shape[d];
            for (int q = 0; q < nop; q++) off[q] += ix * L->st[q][d];
        }
        for (int64_t r = r0; r < r1; r += rpb) {
            int64_t nr = BX_MIN(rpb, r1 - r);
            const float *x[EW_MAXOP - 1] = {NULL, NULL, NULL, NULL};
            for (int q = 1; q < nop; q++) {
                int64_t sr = L->st[q][rd], sc = L->st[q][last];
                const float *src = base[q] + off[q] + r * sr;
                if (sc == 1 && sr == ncols) {
                    x[q - 1] = src;
                    continue;
                }
                if (sr == 0 && filled[q]) {
                    x[q - 1] = buf[q];
                    continue;
                }
                int64_t fill = sr == 0 ? rpb : nr; /* a pattern serves every block */
                for (int64_t i = 0; i < fill; i++)
                    for (int64_t c = 0; c < ncols; c++) buf[q][i * ncols + c] = src[i * sr + c * sc];
                filled[q] = sr == 0;
                x[q - 1] = buf[q];
            }
            k(nr * ncols, base[0] + off[0] + r * ncols, x, p, acc);
        }
        for (int q = 1; q < nop; q++)
            if (L->st[q][rd] == 0 && rd > 0) filled[q] = false; /* outer dims may move it */
    }
}

bx_status bx__ew_apply(bx__ew_kernel k, const float *p, bool acc, bx_tensor *out, int nin,
                       const bx_tensor *const *in) {
    if (nin < 0 || nin > EW_MAXOP - 1) return bx__error(BX_ERR_INVALID, "elementwise: %d inputs (at most 4)", nin);
    int64_t total = bx_numel(out);
    ew_loop L;
    L.nd = out->ndim;
    L.nop = nin + 1;
    for (int d = 0; d < out->ndim; d++) {
        L.shape[d] = out->shape[d];
        L.st[0][d] = out->stride[d];
    }
    float *base[EW_MAXOP];
    base[0] = out->data;
    for (int i = 0; i < nin; i++) {
        if (!bx__bcast_strides(in[i], out->ndim, out->shape, L.st[i + 1])) {
            char a[64], b[64];
            return bx__error(BX_ERR_SHAPE, "elementwise: input %s does not broadcast to %s",
                             bx_shape_str(in[i], a, sizeof a), bx_shape_str(out, b, sizeof b));
        }
        base[i + 1] = in[i]->data;
    }
    if (total == 0) return BX_OK;
    loop_simplify(&L, true);
    int nmax = total >= BX_PAR_MIN ? omp_get_max_threads() : 1;
    tile_plan tp;
    if (tile_plan_of(&L, &tp)) {
        int64_t ntasks = total / (L.shape[tp.kd] * L.shape[tp.last]) * tp.nti * tp.ntj;
        int nth = nmax > ntasks ? (int)ntasks : nmax;
#pragma omp parallel num_threads(nth) if (nth > 1)
        {
            int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
            ew_tile_range(&L, &tp, k, p, acc, base, ntasks * tid / nt, ntasks * (tid + 1) / nt);
        }
        return BX_OK;
    }
    int last = L.nd - 1;
    if (L.nd >= 2 && L.shape[last] < EW_SHORT && L.st[0][last] == 1 && L.st[0][last - 1] == L.shape[last]) {
        int64_t rpb = EW_BLK / L.shape[last];
        int64_t rows_per_task = BX_MAX(rpb, EW_CHUNK / L.shape[last] / rpb * rpb);
        int64_t nrows = L.shape[last - 1];
        int64_t ntasks = total / (nrows * L.shape[last]) * ((nrows + rows_per_task - 1) / rows_per_task);
        int nth = nmax > ntasks ? (int)ntasks : nmax;
#pragma omp parallel num_threads(nth) if (nth > 1)
        {
            int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
            ew_rows_range(&L, k, p, acc, base, rows_per_task, ntasks * tid / nt, ntasks * (tid + 1) / nt);
        }
        return BX_OK;
    }
    int64_t inner = L.shape[last];
    int64_t nch = (inner + EW_CHUNK - 1) / EW_CHUNK;
    int64_t ntasks = total / inner * nch;
    int nth = nmax;
    if (nth > ntasks) nth = (int)ntasks;
    if (nth <= 1) {
        ew_range(&L, k, p, acc, base, nch, 0, ntasks);
        return BX_OK;
    }
#pragma omp parallel num_threads(nth)
    {
        int64_t tid = omp_get_thread_num(), nt = omp_get_num_threads();
        ew_range(&L, k, p, acc, base, nch, ntasks * tid / nt, ntasks * (tid + 1) / nt);
    }
    return BX_OK;
}
