/* batch_norm.c - F.batch_norm over (N,C), (N,C,L), (N,C,H,W) (any (N,C,...)),
 * golden README rule O6.
 *
 * Own OpenMP kernels, one channel per task: per channel the statistics are
 * two passes in double (mean, then the biased variance) like PyTorch's CPU
 * kernel, and the output is x*alpha + beta with alpha = weight*invstd and
 * beta = bias - mean*alpha, PyTorch's exact formula. */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

#include <math.h>
#include <stdio.h>

#define BN_PAR_MIN 32768 /* elements below which the kernels stay on one thread */

typedef struct bn_ctx {
    int64_t n, c, s; /* x viewed as (n, c, s) */
    bool training;   /* batch statistics (their gradient flows) or fixed ones */
    float *mean;     /* (c) the mean used to normalise */
    float *invstd;   /* (c) 1/sqrt(var + eps) used to normalise */
    bool has_weight, has_bias;
} bn_ctx;

/* x (N,C,...) -> y = (x - mean) * invstd * w + b per channel.
 * Train: d bias = sum gy; d weight = sum gy*xhat;
 *        dx = w*invstd * (gy - sum(gy)/n - xhat * sum(gy*xhat)/n).
 * Eval (fixed statistics): dx = w*invstd*gy. */
static void batch_norm_backward(bx_step *st, bx_node *n) {
    const bn_ctx *c = n->ctx;
    bx_tensor *x = n->in[0];
    bx_tensor *w = c->has_weight ? n->in[1] : NULL;
    bx_tensor *gx = bx__grad(st, x);
    bx_tensor *gw = w ? bx__grad(st, w) : NULL;
    bx_tensor *gb = c->has_bias ? bx__grad(st, n->in[c->has_weight ? 2 : 1]) : NULL;
    if (!gx && !gw && !gb) return;
    const float *xd = x->data, *gy = n->out->grad->data, *wd = w ? w->data : NULL;
    float *gxd = gx ? gx->data : NULL, *gwd = gw ? gw->data : NULL, *gbd = gb ? gb->data : NULL;
    int64_t N = c->n, C = c->c, S = c->s;
    double cnt = (double)(N * S);
#pragma omp parallel for if (N * C * S >= BN_PAR_MIN)
    for (int64_t ch = 0; ch < C; ch++) {
        float mean = c->mean[ch], invstd = c->invstd[ch];
        double sum_dy = 0, dotp = 0; /* sum gy, sum gy*(x-mean) */
        for (int64_t i = 0; i < N; i++) {
            const float *xp = xd + (i * C + ch) * S, *gp = gy + (i * C + ch) * S;
            double s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t k = 0; k < S; k++) {
                s1 += gp[k];
                s2 += (double)gp[k] * (xp[k] - mean);
            }
            sum_dy += s1;
            dotp += s2;
        }
        if (gbd) gbd[ch] += (float)sum_dy;
        if (gwd) gwd[ch] += (float)(dotp * invstd);
        if (!gxd) continue;
        float wv = wd ? wd[ch] : 1.0f;
        if (c->training) {
            float k = (float)(dotp * invstd * invstd / cnt), gmean = (float)(sum_dy / cnt), sc = invstd * wv;
            for (int64_t i = 0; i < N; i++) {
                const float *xp = xd + (i * C + ch) * S, *gp = gy + (i * C + ch) * S;
                float *op = gxd + (i * C + ch) * S;
#pragma omp simd
                for (int64_t q = 0; q < S; q++) op[q] += (gp[q] - gmean - (xp[q] - mean) * k) * sc;
            }
        } else {
            float sc = invstd * wv;
            for (int64_t i = 0; i < N; i++) {
                const float *gp = gy + (i * C + ch) * S;
                float *op = gxd + (i * C + ch) * S;
#pragma omp simd
                for (int64_t q = 0; q < S; q++) op[q] += gp[q] * sc;
            }
        }
    }
}

static bx_tensor *bn_fail(bx_step *st, const bx_tensor *x, const char *what, const bx_tensor *t) {
    char xs[96], ts[96];
    return bx_step_fail(st, BX_ERR_SHAPE, "batch_norm: x %s and %s %s: expected f32 of shape (%lld)",
                        bx_shape_str(x, xs, sizeof xs), what, bx_shape_str(t, ts, sizeof ts),
                        (long long)(x->ndim >= 2 ? x->shape[1] : 0));
}

/* A per-channel vector argument: f32, shape (C), contiguous. */
static bool bn_vec_ok(const bx_tensor *t, int64_t C) {
    return t->dtype == BX_F32 && t->ndim == 1 && t->shape[0] == C && (C <= 1 || t->stride[0] == 1);
}

bx_tensor *bx_batch_norm(bx_step *st, bx_tensor *x, bx_tensor *running_mean, bx_tensor *running_var,
                         bx_tensor *weight, bx_tensor *bias, bool training, double momentum, double eps) {
    if (!bx__ok1(st, "batch_norm", x)) return bx__poison(st);
    bx_tensor *opt[4] = {running_mean, running_var, weight, bias};
    static const char *const names[4] = {"running_mean", "running_var", "weight", "bias"};
    for (int i = 0; i < 4; i++)
        if (opt[i] && !bx__ok1(st, "batch_norm", opt[i])) return bx__poison(st);
    char xs[96];
    if (x->dtype != BX_F32 || x->ndim < 2)
        return bx_step_fail(st, BX_ERR_SHAPE, "batch_norm: x %s: expected f32 (N,C), (N,C,L) or (N,C,H,W)",
                            bx_shape_str(x, xs, sizeof xs));
    int64_t N = x->shape[0], C = x->shape[1], S = 1;
    for (int d = 2; d < x->ndim; d++) S *= x->shape[d];
    for (int i = 0; i < 4; i++)
        if (opt[i] && !bn_vec_ok(opt[i], C)) return bn_fail(st, x, names[i], opt[i]);
    if (!running_mean != !running_var)
        return bx_step_fail(st, BX_ERR_INVALID, "batch_norm: x %s: give both running_mean and running_var or neither",
                            bx_shape_str(x, xs, sizeof xs));
    if (!training && !running_mean)
        return bx_step_fail(st, BX_ERR_INVALID,
                            "batch_norm: x %s: eval mode needs running_mean and running_var",
                            bx_shape_str(x, xs, sizeof xs));
    if (training && N * S <= 1)
        return bx_step_fail(st, BX_ERR_SHAPE,
                            "batch_norm: x %s: expected more than 1 value per channel when training",
                            bx_shape_str(x, xs, sizeof xs));
    if (!(eps >= 0) || !(momentum == momentum))
        return bx_step_fail(st, BX_ERR_INVALID, "batch_norm: x %s: bad eps %g or momentum %g",
                            bx_shape_str(x, xs, sizeof xs), eps, momentum);

    x = bx_contiguous(st, x);
    bx_tensor *y = bx__empty_like(st, x);
    float *mean = bx_step_alloc(st, sizeof(float) * (size_t)(C ? C : 1));
    float *invstd = bx_step_alloc(st, sizeof(float) * (size_t)(C ? C : 1));
    if (bx_is_poison(x) || bx_is_poison(y) || !mean || !invstd) return bx__poison(st);
    const float *xd = x->data, *wd = weight ? weight->data : NULL, *bd = bias ? bias->data : NULL;
    float *yd = y->data;
    float *rm = running_mean ? running_mean->data : NULL, *rv = running_var ? running_var->data : NULL;
    double cnt = (double)(N * S);
#pragma omp parallel for if (N * C * S >= BN_PAR_MIN)
    for (int64_t ch = 0; ch < C; ch++) {
        float m, is;
        if (training) {
            double sum = 0;
            for (int64_t i = 0; i < N; i++) {
                const float *xp = xd + (i * C + ch) * S;
                double s1 = 0;
#pragma omp simd reduction(+ : s1)
                for (int64_t k = 0; k < S; k++) s1 += xp[k];
                sum += s1;
            }
            double mu = sum / cnt, var = 0;
            for (int64_t i = 0; i < N; i++) {
                const float *xp = xd + (i * C + ch) * S;
                double s2 = 0;
#pragma omp simd reduction(+ : s2)
                for (int64_t k = 0; k < S; k++) {
                    double d = xp[k] - mu;
                    s2 += d * d;
                }
                var += s2;
            }
            m = (float)mu;
            is = (float)(1.0 / sqrt(var / cnt + eps));
            if (rm) {
                rm[ch] = (float)(momentum * mu + (1.0 - momentum) * rm[ch]);
                rv[ch] = (float)(momentum * (var / (cnt - 1.0)) + (1.0 - momentum) * rv[ch]);
            }
        } else {
            m = rm[ch];
            is = (float)(1.0 / sqrt((double)rv[ch] + eps));
        }
        mean[ch] = m;
        invstd[ch] = is;
        float alpha = is * (wd ? wd[ch] : 1.0f), beta = (bd ? bd[ch] : 0.0f) - m * alpha;
        for (int64_t i = 0; i < N; i++) {
            const float *xp = xd + (i * C + ch) * S;
            float *yp = yd + (i * C + ch) * S;
#pragma omp simd
            for (int64_t k = 0; k < S; k++) yp[k] = xp[k] * alpha + beta;
        }
    }

    bx_tensor *in[3];
    int nin = 0;
    in[nin++] = x;
    if (weight) in[nin++] = weight;
    if (bias) in[nin++] = bias;
    bn_ctx *c;
    bx__record(st, "batch_norm", batch_norm_backward, y, nin, in, sizeof *c, (void **)&c);
    if (c) {
        c->n = N, c->c = C, c->s = S;
        c->training = training;
        c->mean = mean;
        c->invstd = invstd;
        c->has_weight = weight != NULL;
        c->has_bias = bias != NULL;
    }
    return y;
}
