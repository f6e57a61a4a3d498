/* loss.c - cross entropy (fused log-softmax + NLL), NLL, MSE and BCE with logits.
 *
 * Reductions are summed in double, in a fixed order (per-position values
 * first, then one sequential sum), so results do not depend on the thread
 * count. Rule O2 of the golden README defines cross entropy with class
 * weights, ignore_index and label smoothing. */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

#include <math.h>
#include <string.h>

#define LOSS_PAR_MIN 32768 /* elements before a loop goes parallel */

static bool check_reduction(bx_step *st, const char *op, bx_reduction r) {
    if (r == BX_REDUCTION_MEAN || r == BX_REDUCTION_SUM || r == BX_REDUCTION_NONE) return true;
    bx_step_fail(st, BX_ERR_INVALID, "%s: unknown reduction %d", op, (int)r);
    return false;
}

/* Sum of v[0..n) in double, in fixed blocks (deterministic for any thread count). */
static double det_sum(const float *v, int64_t n) {
    enum { BLK = 4096 };
    double total = 0.0;
    for (int64_t b0 = 0; b0 < n; b0 += BLK) {
        int64_t e = BX_MIN(n, b0 + BLK);
        double s = 0.0;
        for (int64_t i = b0; i < e; i++) s += v[i];
        total += s;
    }
    return total;
}

/* Scale of position i's gradient: the upstream gradient, divided by the mean's divisor. */
static inline float up_grad(const float *g, bx_reduction r, double div, int64_t i) {
    if (r == BX_REDUCTION_NONE) return g[i];
    if (r == BX_REDUCTION_MEAN) return (float)(g[0] / div);
    return g[0];
}

/* ---- cross entropy / nll ------------------------------------------------------- */

/* x viewed as (N, C, S): position p = n*S + s, class c at n*C*S + c*S + s. */
typedef struct ce_ctx {
    int64_t N, C, S;
    const int64_t *t;     /* targets (contiguous, N*S) */
    const float *w;       /* class weights (C) or NULL */
    float *logz;          /* per position log-sum-exp (cross entropy only) */
    double W;             /* mean divisor: sum of w[t] over kept positions */
    double wall;          /* sum of all class weights (C without weights) */
    int64_t ignore;
    float eps;
    bx_reduction red;
    bool logits;          /* cross entropy (x = logits) vs nll (x = log-probs) */
} ce_ctx;

// backward: gx[p,c] += up * ((1-eps) w_t (p_c - [c==t]) + eps/C (wall p_c - w_c))  (cross entropy)
//           gx[p,t] -= up * w_t                                                  (nll)
static void ce_backward(bx_step *st, bx_node *n) {
    const ce_ctx *c = n->ctx;
    bx_tensor *gxt = bx__grad(st, n->in[0]);
    if (!gxt) return;
    const float *x = n->in[0]->data, *g = n->out->grad->data;
    float *gx = gxt->data;
    const int64_t N = c->N, C = c->C, S = c->S, P = N * S;
    const float a = 1.0f - c->eps, e = c->eps / (float)C, wall = (float)c->wall;
#pragma omp parallel for if (P * C > LOSS_PAR_MIN) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        const int64_t t = c->t[p];
        if (t == c->ignore) continue;
        const float up = up_grad(g, c->red, c->W, p);
        const int64_t base = (p / S) * C * S + p % S;
        const float wt = c->w ? c->w[t] : 1.0f;
        if (!c->logits) {
            gx[base + t * S] -= up * wt;
            continue;
        }
        const float lz = c->logz[p];
        for (int64_t k = 0; k < C; k++) {
            const int64_t o = base + k * S;
            const float pk = expf(x[o] - lz);
            const float wk = c->w ? c->w[k] : 1.0f;
            float d = a * wt * (pk - (k == t ? 1.0f : 0.0f));
            if (e != 0.0f) d += e * (wall * pk - wk);
            gx[o] += up * d;
        }
    }
}

static bx_tensor *ce_common(bx_step *st, const char *op, bool logits, bx_tensor *x, bx_tensor *target,
                            const bx_cross_entropy_opts *opts) {
    static const bx_cross_entropy_opts dflt = BX_CROSS_ENTROPY_OPTS_INIT;
    if (!opts) opts = &dflt;
    if (!bx__ok2(st, op, x, target)) return bx__poison(st);
    if (opts->weight && !bx__ok1(st, op, (bx_tensor *)opts->weight)) return bx__poison(st);
    if (!check_reduction(st, op, opts->reduction)) return bx__poison(st);
    char sx[96], stg[96], sw[96];
    if (x->dtype != BX_F32)
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: x must be f32, got %s", op, bx_dtype_name(x->dtype));
    if (target->dtype != BX_I64)
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: target must be i64 class indices, got %s", op,
                            bx_dtype_name(target->dtype));
    const float eps = opts->label_smoothing;
    if (!logits && eps != 0.0f)
        return bx_step_fail(st, BX_ERR_INVALID, "%s: label_smoothing must be 0, got %g", op, (double)eps);
    if (!(eps >= 0.0f && eps <= 1.0f))
        return bx_step_fail(st, BX_ERR_INVALID, "%s: label_smoothing must be in [0, 1], got %g", op, (double)eps);
    /* shapes: x (N,C,d...) with target (N,d...), or x (C) with target () */
    bool shape_ok = x->ndim >= 1 && target->ndim == x->ndim - 1;
    if (shape_ok && x->ndim >= 2) {
        if (target->shape[0] != x->shape[0]) shape_ok = false;
        for (int d = 2; d < x->ndim; d++)
            if (target->shape[d - 1] != x->shape[d]) shape_ok = false;
    }
    if (!shape_ok)
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: x %s and target %s: expected x (N,C,d1,...) and target (N,d1,...)",
                            op, bx_shape_str(x, sx, sizeof sx), bx_shape_str(target, stg, sizeof stg));
    const int64_t C = x->ndim == 1 ? x->shape[0] : x->shape[1];
    const int64_t N = x->ndim == 1 ? 1 : x->shape[0];
    int64_t S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    const bx_tensor *wt = opts->weight;
    if (wt && (wt->dtype != BX_F32 || wt->ndim != 1 || wt->shape[0] != C))
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: x %s and weight %s: class weights must be f32 (%lld)", op,
                            bx_shape_str(x, sx, sizeof sx), bx_shape_str(wt, sw, sizeof sw), (long long)C);

    x = bx_contiguous(st, x);
    target = bx_contiguous(st, target);
    if (bx_is_poison(x) || bx_is_poison(target)) return bx__poison(st);
    const int64_t P = N * S;
    const int64_t *t = target->data;
    const int64_t ign = opts->ignore_index;
    for (int64_t p = 0; p < P; p++)
        if (t[p] != ign && (t[p] < 0 || t[p] >= C))
            return bx_step_fail(st, BX_ERR_INVALID, "%s: target value %lld at position %lld is out of range for %lld classes",
                                op, (long long)t[p], (long long)p, (long long)C);

    float *w = NULL;
    double wall = (double)C;
    if (wt) {
        w = bx_step_alloc(st, sizeof(float) * (size_t)BX_MAX(C, 1));
        if (!w) return bx__poison(st);
        wall = 0.0;
        for (int64_t k = 0; k < C; k++) {
            w[k] = ((const float *)wt->data)[k * wt->stride[0]];
            wall += w[k];
        }
    }
    const bx_reduction red = opts->reduction;
    bx_tensor *y = red == BX_REDUCTION_NONE ? bx_step_tensor(st, BX_F32, target->ndim, target->shape)
                                            : bx_step_tensor(st, BX_F32, 0, NULL);
    float *lv = red == BX_REDUCTION_NONE ? (bx_is_poison(y) ? NULL : y->data)
                                         : bx_step_alloc(st, sizeof(float) * (size_t)BX_MAX(P, 1));
    float *logz = logits ? bx_step_alloc(st, sizeof(float) * (size_t)BX_MAX(P, 1)) : NULL;
    if (bx_is_poison(y) || !lv || (logits && !logz)) return bx__poison(st);

    const float *xd = x->data;
    const float a = 1.0f - eps, e = eps / (float)C;
#pragma omp parallel for if (P * C > LOSS_PAR_MIN) schedule(static)
    for (int64_t p = 0; p < P; p++) {
        const int64_t base = (p / S) * C * S + p % S;
        const int64_t tp = t[p];
        if (!logits) {
            lv[p] = tp == ign ? 0.0f : -(w ? w[tp] : 1.0f) * xd[base + tp * S];
            continue;
        }
        float mx = -INFINITY;
        for (int64_t k = 0; k < C; k++) mx = fmaxf(mx, xd[base + k * S]);
        float se = 0.0f;
        for (int64_t k = 0; k < C; k++) se += expf(xd[base + k * S] - mx);
        const float lz = mx + logf(se);
        logz[p] = lz;
        if (tp == ign) {
            lv[p] = 0.0f;
            continue;
        }
        float l = -a * (w ? w[tp] : 1.0f) * (xd[base + tp * S] - lz);
        if (e != 0.0f) {
            float sm = 0.0f;
            for (int64_t k = 0; k < C; k++) sm -= (w ? w[k] : 1.0f) * (xd[base + k * S] - lz);
            l += e * sm;
        }
        lv[p] = l;
    }
    double W = 0.0;
    for (int64_t p = 0; p < P; p++)
        if (t[p] != ign) W += w ? w[t[p]] : 1.0;
    if (red != BX_REDUCTION_NONE) {
        double s = det_sum(lv, P);
        *(float *)y->data = (float)(red == BX_REDUCTION_MEAN ? s / W : s);
    }
    ce_ctx *c;
    bx__record(st, op, ce_backward, y, 1, &x, sizeof *c, (void **)&c);
    if (c) {
        *c = (ce_ctx){.N = N, .C = C, .S = S, .t = t, .w = w, .logz = logz, .W = W, .wall = wall,
                      .ignore = ign, .eps = eps, .red = red, .logits = logits};
    }
    return y;
}

// x (N,C,d...) logits, target (N,d...) i64 -> loss () or (N,d...) for reduction none
bx_tensor *bx_cross_entropy(bx_step *st, bx_tensor *x, bx_tensor *target, const bx_cross_entropy_opts *opts) {
    return ce_common(st, "cross_entropy", true, x, target, opts);
}

// x (N,C,d...) log-probabilities, target (N,d...) i64 -> loss () or (N,d...)
bx_tensor *bx_nll_loss(bx_step *st, bx_tensor *x, bx_tensor *target, const bx_cross_entropy_opts *opts) {
    return ce_common(st, "nll_loss", false, x, target, opts);
}

/* ---- mse ---------------------------------------------------------------------- */

typedef struct mse_ctx {
    bx_reduction red;
} mse_ctx;

// backward: gx += 2 (x - t) up, gt -= 2 (x - t) up
static void mse_backward(bx_step *st, bx_node *n) {
    const mse_ctx *c = n->ctx;
    bx_tensor *x = n->in[0], *tg = n->in[1];
    bx_tensor *gxt = bx__grad(st, x), *gtt = bx__grad(st, tg);
    const float *xd = x->data, *td = tg->data, *g = n->out->grad->data;
    float *gx = gxt ? gxt->data : NULL, *gt = gtt ? gtt->data : NULL;
    const int64_t len = bx_numel(x);
    const double div = (double)len;
#pragma omp parallel for if (len > LOSS_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < len; i++) {
        float d = 2.0f * (xd[i] - td[i]) * up_grad(g, c->red, div, i);
        if (gx) gx[i] += d;
        if (gt) gt[i] -= d;
    }
}

// x, target (same shape, f32) -> () or x's shape for reduction none
bx_tensor *bx_mse_loss(bx_step *st, bx_tensor *x, bx_tensor *target, bx_reduction red) {
    if (!bx__ok2(st, "mse_loss", x, target) || !check_reduction(st, "mse_loss", red)) return bx__poison(st);
    char sx[96], stg[96];
    if (x->dtype != BX_F32 || target->dtype != BX_F32 || !bx_same_shape(x, target))
        return bx_step_fail(st, BX_ERR_SHAPE, "mse_loss: x %s %s and target %s %s: need the same shape, f32",
                            bx_shape_str(x, sx, sizeof sx), bx_dtype_name(x->dtype),
                            bx_shape_str(target, stg, sizeof stg), bx_dtype_name(target->dtype));
    x = bx_contiguous(st, x);
    target = bx_contiguous(st, target);
    if (bx_is_poison(x) || bx_is_poison(target)) return bx__poison(st);
    const int64_t len = bx_numel(x);
    bx_tensor *y = red == BX_REDUCTION_NONE ? bx__empty_like(st, x) : bx_step_tensor(st, BX_F32, 0, NULL);
    float *lv = red == BX_REDUCTION_NONE ? (bx_is_poison(y) ? NULL : y->data)
                                         : bx_step_alloc(st, sizeof(float) * (size_t)BX_MAX(len, 1));
    if (bx_is_poison(y) || !lv) return bx__poison(st);
    const float *xd = x->data, *td = target->data;
#pragma omp parallel for simd if (len > LOSS_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < len; i++) {
        float d = xd[i] - td[i];
        lv[i] = d * d;
    }
    if (red != BX_REDUCTION_NONE) {
        double s = det_sum(lv, len);
        *(float *)y->data = (float)(red == BX_REDUCTION_MEAN ? s / (double)len : s);
    }
    bx_tensor *ins[2] = {x, target};
    mse_ctx *c;
    bx__record(st, "mse_loss", mse_backward, y, 2, ins, sizeof *c, (void **)&c);
    if (c) c->red = red;
    return y;
}

/* ---- binary cross entropy with logits --------------------------------------------- */

typedef struct bce_ctx {
    const float *w, *pw;   /* weight / pos_weight data or NULL */
    int64_t sw[BX_MAX_DIMS], spw[BX_MAX_DIMS]; /* their strides broadcast to x's shape */
    bx_reduction red;
} bce_ctx;

/* Strides of t broadcast (right-aligned) to x's shape; false if it does not broadcast. */
static bool bcast_strides(const bx_tensor *t, const bx_tensor *x, int64_t *s) {
    if (t->ndim > x->ndim) return false;
    for (int i = 0; i < x->ndim; i++) {
        int j = i - (x->ndim - t->ndim);
        if (j < 0) { s[i] = 0; continue; }
        if (t->shape[j] == x->shape[i]) s[i] = x->shape[i] == 1 ? 0 : t->stride[j];
        else if (t->shape[j] == 1) s[i] = 0;
        else return false;
    }
    return true;
}

/* softplus(-x) = log(1 + exp(-x)) written as torch does: log(exp(-m) + exp(-x-m)) + m, m = max(-x, 0) */
static inline float softplus_neg(float x) {
    const float m = fmaxf(-x, 0.0f);
    return logf(expf(-m) + expf(-x - m)) + m;
}

/* Walks x's elements in row-major order with the weight / pos_weight offsets. */
#define BCE_LOOP(c, x, ...)                                                                  \
    do {                                                                                      \
        const int64_t *strides_[2] = {(c)->sw, (c)->spw};                                     \
        bx__iter it_;                                                                         \
        bx__iter_init(&it_, (x)->ndim, (x)->shape, 2, strides_);                              \
        int64_t i = 0;                                                                        \
        if (bx_numel(x) > 0) do {                                                             \
                const float wv = (c)->w ? (c)->w[it_.off[0]] : 1.0f;                          \
                const float pwv = (c)->pw ? (c)->pw[it_.off[1]] : 1.0f;                       \
                __VA_ARGS__;                                                                  \
                i++;                                                                          \
            } while (bx__iter_next(&it_, 2));                                                 \
    } while (0)

// backward: gx += up w ((pw t + 1 - t) sigmoid(x) - pw t);  gt += up w (-x + (pw - 1) softplus(-x))
static void bce_backward(bx_step *st, bx_node *n) {
    const bce_ctx *c = n->ctx;
    bx_tensor *x = n->in[0], *tg = n->in[1];
    bx_tensor *gxt = bx__grad(st, x), *gtt = bx__grad(st, tg);
    const float *xd = x->data, *td = tg->data, *g = n->out->grad->data;
    float *gx = gxt ? gxt->data : NULL, *gt = gtt ? gtt->data : NULL;
    const double div = (double)bx_numel(x);
    BCE_LOOP(c, x, {
        const float up = up_grad(g, c->red, div, i) * wv;
        const float xv = xd[i], tv = td[i];
        if (gx) {
            const float sg = 1.0f / (1.0f + expf(-xv));
            const float pt = pwv * tv;
            gx[i] += (c->pw ? (pt + 1.0f - tv) * sg - pt : sg - tv) * up;
        }
        if (gt) gt[i] += (c->pw ? -xv + (pwv - 1.0f) * softplus_neg(xv) : -xv) * up;
    });
}

// x, target (same shape, f32), weight (bcast to x), pos_weight (bcast, last dim) -> () or x's shape
bx_tensor *bx_bce_with_logits(bx_step *st, bx_tensor *x, bx_tensor *target, const bx_bce_opts *opts) {
    static const bx_bce_opts dflt = BX_BCE_OPTS_INIT;
    if (!opts) opts = &dflt;
    const char *op = "bce_with_logits";
    if (!bx__ok2(st, op, x, target) || !check_reduction(st, op, opts->reduction)) return bx__poison(st);
    char sx[96], stg[96];
    if (x->dtype != BX_F32 || target->dtype != BX_F32 || !bx_same_shape(x, target))
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: x %s %s and target %s %s: need the same shape, f32", op,
                            bx_shape_str(x, sx, sizeof sx), bx_dtype_name(x->dtype),
                            bx_shape_str(target, stg, sizeof stg), bx_dtype_name(target->dtype));
    bce_ctx cc;
    memset(&cc, 0, sizeof cc);
    cc.red = opts->reduction;
    const bx_tensor *ws[2] = {opts->weight, opts->pos_weight};
    const char *wn[2] = {"weight", "pos_weight"};
    for (int k = 0; k < 2; k++) {
        const bx_tensor *t = ws[k];
        if (!t) continue;
        if (!bx__ok1(st, op, (bx_tensor *)t)) return bx__poison(st);
        if (t->dtype != BX_F32 || !bcast_strides(t, x, k ? cc.spw : cc.sw))
            return bx_step_fail(st, BX_ERR_SHAPE, "%s: x %s and %s %s: %s must be f32 and broadcast to x", op,
                                bx_shape_str(x, sx, sizeof sx), wn[k], bx_shape_str(t, stg, sizeof stg), wn[k]);
        if (k) cc.pw = t->data;
        else cc.w = t->data;
    }
    x = bx_contiguous(st, x);
    target = bx_contiguous(st, target);
    if (bx_is_poison(x) || bx_is_poison(target)) return bx__poison(st);
    const int64_t len = bx_numel(x);
    const bx_reduction red = opts->reduction;
    bx_tensor *y = red == BX_REDUCTION_NONE ? bx__empty_like(st, x) : bx_step_tensor(st, BX_F32, 0, NULL);
    float *lv = red == BX_REDUCTION_NONE ? (bx_is_poison(y) ? NULL : y->data)
                                         : bx_step_alloc(st, sizeof(float) * (size_t)BX_MAX(len, 1));
    if (bx_is_poison(y) || !lv) return bx__poison(st);
    const float *xd = x->data, *td = target->data;
    /* loss = (1-t) x + lw softplus(-x), lw = 1 + (pw-1) t; times weight */
    BCE_LOOP(&cc, x, {
        const float xv = xd[i], tv = td[i];
        const float lw = cc.pw ? (pwv - 1.0f) * tv + 1.0f : 1.0f;
        lv[i] = ((1.0f - tv) * xv + lw * softplus_neg(xv)) * wv;
    });
    if (red != BX_REDUCTION_NONE) {
        double s = det_sum(lv, len);
        *(float *)y->data = (float)(red == BX_REDUCTION_MEAN ? s / (double)len : s);
    }
    bx_tensor *ins[2] = {x, target};
    bce_ctx *c;
    bx__record(st, op, bce_backward, y, 2, ins, sizeof *c, (void **)&c);
    if (c) *c = cc;
    return y;
}
