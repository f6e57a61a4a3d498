/* linear.c - the GEMM-based ops: linear (x @ w^T + b) and matmul (torch.matmul).
 *
 * Every product is one bx__sgemm call (or one per batch matrix); transposed
 * operands are handled by the GEMM flags and leading dimensions, never copied.
 * Backward accumulates straight into the gradient buffers with beta = 1, or
 * writes a fresh buffer with beta = 0 (no zero fill), and skips dX when the
 * input does not require grad (the first layer of an MLP). */
#include "autograd/autograd_int.h"
#include "backend/cpu/cpu_int.h"
#include "blixt/ops.h"

#include <string.h>

/* Row-major matrix description of a (rows, cols) view with strides (s0, s1):
 * stored as-is (trans false, row stride ld) or as the transpose of a row-major
 * (cols, rows) matrix (trans true). False when neither fits (e.g. stride 0). */
static bool mat_layout(int64_t rows, int64_t cols, int64_t s0, int64_t s1, bool *trans, int64_t *ld) {
    if ((cols == 1 || s1 == 1) && (rows == 1 || s0 >= cols)) {
        *trans = false;
        *ld = rows == 1 ? BX_MAX(cols, 1) : s0;
        return true;
    }
    if ((rows == 1 || s0 == 1) && (cols == 1 || s1 >= rows)) {
        *trans = true;
        *ld = cols == 1 ? BX_MAX(rows, 1) : s1;
        return true;
    }
    return false;
}

/* Gradient buffer of t for a GEMM that covers all of it exactly once:
 * beta 0 on a fresh buffer (the GEMM overwrites it), 1 to accumulate. */
static bx_tensor *grad_for_gemm(bx_step *st, bx_tensor *t, float *beta) {
    bool fresh;
    bx_tensor *g = bx__grad_overwrite(st, t, &fresh);
    *beta = fresh ? 0.0f : 1.0f;
    return g;
}

static bool check_f32(bx_step *st, const char *op, const char *name, const bx_tensor *t) {
    if (t->dtype == BX_F32) return true;
    bx_step_fail(st, BX_ERR_SHAPE, "%s: %s must be f32, got %s", op, name, bx_dtype_name(t->dtype));
    return false;
}

/* ---- linear ------------------------------------------------------------------ */

/* x (...,in) viewed as X (M,in); W (out,in). Saved: the layouts. */
typedef struct linear_ctx {
    int64_t M, in, out;
    bool xt, wt;      /* stored transposed */
    int64_t ldx, ldw;
} linear_ctx;

// backward: gy (M,out) -> dX (M,in) = gy @ W, dW (out,in) += gy^T @ X, db (out) += sum_rows gy
static void linear_backward(bx_step *st, bx_node *n) {
    const linear_ctx *c = n->ctx;
    bx_tensor *x = n->in[0], *w = n->in[1], *b = n->nin > 2 ? n->in[2] : NULL;
    const float *gy = n->out->grad->data;
    float beta;
    bx_tensor *gw = grad_for_gemm(st, w, &beta);
    if (gw) /* op(A) = gy^T (out,M), op(B) = X (M,in) */
        bx__sgemm(true, c->xt, c->out, c->in, c->M, 1.0f, gy, c->out, x->data, c->ldx, beta,
                  gw->data, c->in);
    if (b) {
        bx_tensor *gbt = bx__grad(st, b);
        if (gbt) {
            float *gb = gbt->data;
            const int64_t O = c->out;
            for (int64_t i = 0; i < c->M; i++) {
                const float *r = gy + i * O;
#pragma omp simd
                for (int64_t j = 0; j < O; j++) gb[j] += r[j];
            }
        }
    }
    bx_tensor *gx = grad_for_gemm(st, x, &beta);
    if (gx) /* op(A) = gy (M,out), op(B) = W (out,in) */
        bx__sgemm(false, c->wt, c->M, c->in, c->out, 1.0f, gy, c->out, w->data, c->ldw, beta,
                  gx->data, c->in);
}

// x (..., in), w (out, in), b (out) or NULL -> y (..., out)
bx_tensor *bx_linear(bx_step *st, bx_tensor *x, bx_tensor *w, bx_tensor *b) {
    if (!bx__ok2(st, "linear", x, w)) return bx__poison(st);
    if (b && !bx__ok1(st, "linear", b)) return bx__poison(st);
    if (!check_f32(st, "linear", "x", x) || !check_f32(st, "linear", "w", w) ||
        (b && !check_f32(st, "linear", "b", b)))
        return bx__poison(st);
    char sx[96], sw[96], sb[96];
    if (x->ndim < 1 || w->ndim != 2 || x->shape[x->ndim - 1] != w->shape[1])
        return bx_step_fail(st, BX_ERR_SHAPE, "linear: x %s and w %s: in_features %lld and %lld differ",
                            bx_shape_str(x, sx, sizeof sx), bx_shape_str(w, sw, sizeof sw),
                            (long long)(x->ndim ? x->shape[x->ndim - 1] : 0),
                            (long long)(w->ndim == 2 ? w->shape[1] : -1));
    const int64_t in = w->shape[1], out = w->shape[0];
    if (b && (b->ndim != 1 || b->shape[0] != out))
        return bx_step_fail(st, BX_ERR_SHAPE, "linear: w %s and b %s: bias must be (%lld)",
                            bx_shape_str(w, sw, sizeof sw), bx_shape_str(b, sb, sizeof sb),
                            (long long)out);

    linear_ctx lc = {.in = in, .out = out};
    lc.M = 1;
    for (int d = 0; d < x->ndim - 1; d++) lc.M *= x->shape[d];
    /* x as a matrix: contiguous, or any 2-D view GEMM flags can express. */
    if (!(x->ndim == 2 && mat_layout(x->shape[0], in, x->stride[0], x->stride[1], &lc.xt, &lc.ldx))) {
        x = bx_contiguous(st, x);
        if (bx_is_poison(x)) return x;
        lc.xt = false;
        lc.ldx = BX_MAX(in, 1);
    }
    if (!mat_layout(out, in, w->stride[0], w->stride[1], &lc.wt, &lc.ldw)) {
        w = bx_contiguous(st, w);
        if (bx_is_poison(w)) return w;
        lc.wt = false;
        lc.ldw = BX_MAX(in, 1);
    }

    int64_t yshape[BX_MAX_DIMS];
    memcpy(yshape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    yshape[x->ndim - 1] = out;
    bx_tensor *y = bx_step_tensor(st, BX_F32, x->ndim, yshape);
    if (bx_is_poison(y)) return y;
    float *yd = y->data;
    float beta = 0.0f;
    if (b && lc.M > 0 && out > 0) { /* bias fused: rows pre-filled, GEMM adds with beta = 1 */
        const float *bd = b->data;
        const int64_t bs = b->stride[0];
        if (bs == 1) {
            for (int64_t i = 0; i < lc.M; i++) memcpy(yd + i * out, bd, sizeof(float) * (size_t)out);
        } else {
            for (int64_t j = 0; j < out; j++) yd[j] = bd[j * bs];
            for (int64_t i = 1; i < lc.M; i++) memcpy(yd + i * out, yd, sizeof(float) * (size_t)out);
        }
        beta = 1.0f;
    }
    /* Y (M,out) = X (M,in) @ W^T: op(B) = W^T, i.e. W stored (out,in) -> 'T' */
    bx__sgemm(lc.xt, !lc.wt, lc.M, out, in, 1.0f, x->data, lc.ldx, w->data, lc.ldw, beta, yd, out);

    bx_tensor *ins[3] = {x, w, b};
    void *ctx;
    bx__record(st, "linear", linear_backward, y, b ? 3 : 2, ins, sizeof lc, &ctx);
    if (ctx) memcpy(ctx, &lc, sizeof lc);
    return y;
}

/* ---- matmul ------------------------------------------------------------------ */

/* How a (possibly batched, broadcast) matmul maps to GEMMs. Matrices:
 * op(A) (n,k) per batch, op(B) (k,m), Y (n,m). 1-D a is a (1,k) row, 1-D b a
 * (k,1) column. fold: a's batch dims merged into its rows (one GEMM). */
typedef struct mm_plan {
    int nb;                         /* broadcast batch dims */
    int64_t bshape[BX_MAX_DIMS];
    int64_t sa[BX_MAX_DIMS], sb[BX_MAX_DIMS], sy[BX_MAX_DIMS];   /* data batch strides */
    int64_t sga[BX_MAX_DIMS], sgb[BX_MAX_DIMS];                   /* grad-buffer batch strides */
    int64_t count;                  /* batch matrices */
    int64_t n, k, m;
    bool at, bt;
    int64_t lda, ldb;
    int64_t ldga, ldgb;             /* leading dims of the contiguous grad buffers */
    bool fold;
    bool a_bcast, b_bcast;          /* a / b reused by several output batches */
} mm_plan;

/* Fills the plan; false (with the step error set) when shapes do not fit. */
static bool mm_make_plan(bx_step *st, const bx_tensor *a, const bx_tensor *b, mm_plan *p) {
    char sa[96], sb[96];
    memset(p, 0, sizeof *p);
    const int na = a->ndim, nbd = b->ndim;
    const bool a1 = na == 1, b1 = nbd == 1;
    p->n = a1 ? 1 : a->shape[na - 2];
    p->k = a->shape[na - 1];
    int64_t bk = b1 ? b->shape[0] : b->shape[nbd - 2];
    p->m = b1 ? 1 : b->shape[nbd - 1];
    if (p->k != bk) {
        bx_step_fail(st, BX_ERR_SHAPE, "matmul: a %s and b %s: inner dimensions %lld and %lld differ",
                     bx_shape_str(a, sa, sizeof sa), bx_shape_str(b, sb, sizeof sb), (long long)p->k,
                     (long long)bk);
        return false;
    }
    const int abd = a1 ? 0 : na - 2, bbd = b1 ? 0 : nbd - 2;
    p->nb = BX_MAX(abd, bbd);
    /* contiguous strides of a's and b's own shapes (for their grad buffers) */
    int64_t ca[BX_MAX_DIMS], cb[BX_MAX_DIMS], s = 1;
    for (int d = na - 1; d >= 0; d--) { ca[d] = s; s *= a->shape[d]; }
    s = 1;
    for (int d = nbd - 1; d >= 0; d--) { cb[d] = s; s *= b->shape[d]; }
    p->count = 1;
    for (int i = 0; i < p->nb; i++) {
        int ia = i - (p->nb - abd), ib = i - (p->nb - bbd);
        int64_t da = ia >= 0 ? a->shape[ia] : 1, db = ib >= 0 ? b->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            bx_step_fail(st, BX_ERR_SHAPE,
                         "matmul: a %s and b %s: batch dimensions %lld and %lld do not broadcast",
                         bx_shape_str(a, sa, sizeof sa), bx_shape_str(b, sb, sizeof sb), (long long)da,
                         (long long)db);
            return false;
        }
        int64_t d = da == 1 ? db : da;
        p->bshape[i] = d;
        p->count *= d;
        p->sa[i] = (ia >= 0 && da == d) ? a->stride[ia] : 0;
        p->sb[i] = (ib >= 0 && db == d) ? b->stride[ib] : 0;
        p->sga[i] = (ia >= 0 && da == d) ? ca[ia] : 0;
        p->sgb[i] = (ib >= 0 && db == d) ? cb[ib] : 0;
        if (d > 1 && p->sga[i] == 0) p->a_bcast = true;
        if (d > 1 && p->sgb[i] == 0) p->b_bcast = true;
    }
    s = p->n * p->m;
    for (int i = p->nb - 1; i >= 0; i--) { p->sy[i] = s; s *= p->bshape[i]; }
    p->ldga = BX_MAX(p->k, 1);
    p->ldgb = b1 ? 1 : BX_MAX(p->m, 1);
    return true;
}

/* Matrix layouts of a and b's last two dims; false if one needs a copy. */
static bool mm_layouts(const bx_tensor *a, const bx_tensor *b, mm_plan *p) {
    const int na = a->ndim, nbd = b->ndim;
    bool ok_a = na == 1 ? mat_layout(1, p->k, 0, a->stride[0], &p->at, &p->lda)
                        : mat_layout(p->n, p->k, a->stride[na - 2], a->stride[na - 1], &p->at, &p->lda);
    bool ok_b = nbd == 1 ? mat_layout(p->k, 1, b->stride[0], 0, &p->bt, &p->ldb)
                         : mat_layout(p->k, p->m, b->stride[nbd - 2], b->stride[nbd - 1], &p->bt, &p->ldb);
    if (!ok_a || !ok_b) return false;
    /* one GEMM when b has no batch dims and a's batch dims merge into its rows */
    p->fold = false;
    if (p->count > 1 && (nbd <= 2) && !p->at && bx_is_contiguous(a)) {
        p->fold = true;
        p->lda = BX_MAX(p->k, 1);
    }
    return true;
}

// backward: gy (batch, n, m) -> dA (n,k) += gy @ op(B)^T, dB (k,m) += op(A)^T @ gy per batch
static void matmul_backward(bx_step *st, bx_node *n) {
    const mm_plan *p = n->ctx;
    bx_tensor *a = n->in[0], *b = n->in[1];
    const float *gy = n->out->grad->data, *ad = a->data, *bd = b->data;
    const int64_t N = p->n, K = p->k, M = p->m, ldy = BX_MAX(M, 1);
    float beta_a = 1.0f, beta_b = 1.0f;
    /* a fresh buffer (beta 0) only when each of its slices gets exactly one GEMM */
    const bool once = p->count > 0;
    bx_tensor *ga = p->a_bcast || !once ? bx__grad(st, a) : grad_for_gemm(st, a, &beta_a);
    bx_tensor *gb = p->b_bcast || p->fold || !once ? bx__grad(st, b) : grad_for_gemm(st, b, &beta_b);
    if (p->count == 0) return;
    if (p->fold) {
        const int64_t R = p->count * N;
        if (ga) bx__sgemm(false, !p->bt, R, K, M, 1.0f, gy, ldy, bd, p->ldb, beta_a, ga->data, p->ldga);
        if (gb) bx__sgemm(true, false, K, M, R, 1.0f, ad, p->lda, gy, ldy, 1.0f, gb->data, p->ldgb);
        return;
    }
    if (!ga && !gb) return;
    const int64_t *strides[3] = {p->sa, p->sb, p->sy};
    const int64_t *gstrides[3] = {p->sga, p->sgb, p->sy};
    bx__iter it, git;
    bx__iter_init(&it, p->nb, p->bshape, 3, strides);
    bx__iter_init(&git, p->nb, p->bshape, 3, gstrides);
    float *gad = ga ? ga->data : NULL, *gbd = gb ? gb->data : NULL;
    do {
        const float *gys = gy + it.off[2];
        if (ga)
            bx__sgemm(false, !p->bt, N, K, M, 1.0f, gys, ldy, bd + it.off[1], p->ldb, beta_a,
                      gad + git.off[0], p->ldga);
        if (gb)
            bx__sgemm(!p->at, false, K, M, N, 1.0f, ad + it.off[0], p->lda, gys, ldy, beta_b,
                      gbd + git.off[1], p->ldgb);
        bx__iter_next(&git, 3);
    } while (bx__iter_next(&it, 3));
}

// a (...,n,k) or (k), b (...,k,m) or (k) -> y (broadcast batch..., n, m) without the 1-D dims
bx_tensor *bx_matmul(bx_step *st, bx_tensor *a, bx_tensor *b) {
    if (!bx__ok2(st, "matmul", a, b)) return bx__poison(st);
    if (!check_f32(st, "matmul", "a", a) || !check_f32(st, "matmul", "b", b)) return bx__poison(st);
    if (a->ndim < 1 || b->ndim < 1) {
        char sa[96], sb[96];
        return bx_step_fail(st, BX_ERR_SHAPE, "matmul: a %s and b %s: both arguments need at least 1 dimension",
                            bx_shape_str(a, sa, sizeof sa), bx_shape_str(b, sb, sizeof sb));
    }
    mm_plan p;
    if (!mm_make_plan(st, a, b, &p)) return bx__poison(st);
    if (!mm_layouts(a, b, &p)) {
        /* a batch view GEMM cannot express: copy to contiguous and re-plan */
        a = bx_contiguous(st, a);
        b = bx_contiguous(st, b);
        if (bx_is_poison(a) || bx_is_poison(b)) return bx__poison(st);
        mm_make_plan(st, a, b, &p);
        mm_layouts(a, b, &p);
    }
    int64_t yshape[BX_MAX_DIMS];
    int yn = 0;
    for (int i = 0; i < p.nb; i++) yshape[yn++] = p.bshape[i];
    if (a->ndim > 1) yshape[yn++] = p.n;
    if (b->ndim > 1) yshape[yn++] = p.m;
    bx_tensor *y = bx_step_tensor(st, BX_F32, yn, yshape);
    if (bx_is_poison(y)) return y;
    const float *ad = a->data, *bd = b->data;
    float *yd = y->data;
    const int64_t ldy = BX_MAX(p.m, 1);
    if (p.fold) {
        bx__sgemm(false, p.bt, p.count * p.n, p.m, p.k, 1.0f, ad, p.lda, bd, p.ldb, 0.0f, yd, ldy);
    } else if (p.count > 0) {
        const int64_t *strides[3] = {p.sa, p.sb, p.sy};
        bx__iter it;
        bx__iter_init(&it, p.nb, p.bshape, 3, strides);
        do bx__sgemm(p.at, p.bt, p.n, p.m, p.k, 1.0f, ad + it.off[0], p.lda, bd + it.off[1], p.ldb, 0.0f,
                     yd + it.off[2], ldy);
        while (bx__iter_next(&it, 3));
    }
    bx_tensor *ins[2] = {a, b};
    void *ctx;
    bx__record(st, "matmul", matmul_backward, y, 2, ins, sizeof p, &ctx);
    if (ctx) memcpy(ctx, &p, sizeof p);
    return y;
}
