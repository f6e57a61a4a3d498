/* rmsprop.c - RMSprop with momentum, centering, L2 weight decay and
 * maximize: torch 1.13 _single_tensor_rmsprop (golden rule Q4):
 *   g = (maximize ? -grad : grad) + wd*p
 *   sq = alpha*sq + (1-alpha)*g*g
 *   centered: ga = alpha*ga + (1-alpha)*g;  avg = sqrt(sq - ga*ga) + eps
 *   else:     avg = sqrt(sq) + eps
 *   momentum > 0: buf = momentum*buf + g/avg;  p -= lr*buf
 *   else:         p -= lr*g/avg
 * State starts at zero; step is an integer count. */
#include "optim/optim_int.h"

#include <math.h>

static const bx__hpkey rmsprop_keys[] = {HK_LR,           HK_MOMENTUM, HK_ALPHA,    HK_EPS,           HK_CENTERED,
                                         HK_WEIGHT_DECAY, HK_FOREACH,  HK_MAXIMIZE, HK_DIFFERENTIABLE};
static const char *const rmsprop_state[] = {"square_avg", "momentum_buffer", "grad_avg"};

static bx_status rmsprop_check(const bx__hp *hp, const char *what) {
    bx_status st;
    if ((st = bx__check_nonneg(what, "lr", hp->lr))) return st;
    if ((st = bx__check_nonneg(what, "eps", hp->eps))) return st;
    if ((st = bx__check_nonneg(what, "momentum", hp->momentum))) return st;
    if ((st = bx__check_nonneg(what, "weight_decay", hp->weight_decay))) return st;
    return bx__check_nonneg(what, "alpha", hp->alpha);
}

static bool rmsprop_needs(const bx__hp *hp, int k) {
    return k == 0 || (k == 1 && hp->momentum > 0) || (k == 2 && hp->centered);
}

typedef struct rmsprop_args {
    float *p, *sq, *buf, *ga;
    const float *g;
    float alpha, c, eps, wd, nlr, mom, sign;
    bool use_wd, centered, use_mom;
} rmsprop_args;

static inline __attribute__((always_inline)) void rmsprop_loop(const rmsprop_args *a, int64_t lo, int64_t hi,
                                                               const bool use_wd, const bool centered,
                                                               const bool use_mom) {
    float *restrict p = a->p, *restrict sq = a->sq, *restrict buf = a->buf, *restrict ga = a->ga;
    const float *restrict g = a->g;
    const float alpha = a->alpha, c = a->c, eps = a->eps, wd = a->wd, nlr = a->nlr, mom = a->mom, sign = a->sign;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float gi = sign * g[i];
        if (use_wd) gi = gi + wd * p[i];
        float si = sq[i] * alpha;
        si = si + (c * gi) * gi;
        sq[i] = si;
        float avg;
        if (centered) {
            float m = ga[i] * alpha;
            m = m + c * gi;
            ga[i] = m;
            avg = sqrtf(si + (-1.0f * m) * m);
        } else {
            avg = sqrtf(si);
        }
        avg = avg + eps;
        if (use_mom) {
            float b = buf[i] * mom;
            b = b + gi / avg;
            buf[i] = b;
            p[i] = p[i] + nlr * b;
        } else {
            p[i] = p[i] + (nlr * gi) / avg;
        }
    }
}

// p (n), grad (n), square_avg (n)[, momentum_buffer (n)][, grad_avg (n)] -> updated in place over [lo, hi)
static void rmsprop_range(const void *args, int64_t lo, int64_t hi) {
    const rmsprop_args *a = args;
    switch ((a->use_wd ? 4 : 0) | (a->centered ? 2 : 0) | (a->use_mom ? 1 : 0)) {
    case 0: rmsprop_loop(a, lo, hi, false, false, false); break;
    case 1: rmsprop_loop(a, lo, hi, false, false, true); break;
    case 2: rmsprop_loop(a, lo, hi, false, true, false); break;
    case 3: rmsprop_loop(a, lo, hi, false, true, true); break;
    case 4: rmsprop_loop(a, lo, hi, true, false, false); break;
    case 5: rmsprop_loop(a, lo, hi, true, false, true); break;
    case 6: rmsprop_loop(a, lo, hi, true, true, false); break;
    default: rmsprop_loop(a, lo, hi, true, true, true); break;
    }
}

static void rmsprop_update(const bx__hp *hp, bx__pslot *s) {
    s->step += 1;
    rmsprop_args a = {
        .p = s->p->data,
        .sq = s->buf[0]->data,
        .buf = hp->momentum > 0 ? s->buf[1]->data : NULL,
        .ga = hp->centered ? s->buf[2]->data : NULL,
        .g = s->p->grad->data,
        .alpha = (float)hp->alpha,
        .c = (float)(1.0 - hp->alpha),
        .eps = (float)hp->eps,
        .wd = (float)hp->weight_decay,
        .nlr = (float)(-hp->lr),
        .mom = (float)hp->momentum,
        .sign = hp->maximize ? -1.0f : 1.0f,
        .use_wd = hp->weight_decay != 0,
        .centered = hp->centered,
        .use_mom = hp->momentum > 0,
    };
    bx__optim_parallel(rmsprop_range, &a, bx_numel(s->p));
}

static const bx__optim_vt rmsprop_vt = {
    .type = "RMSprop",
    .keys = rmsprop_keys,
    .nkeys = (int)(sizeof rmsprop_keys / sizeof rmsprop_keys[0]),
    .state_keys = rmsprop_state,
    .nstate = 3,
    .step_kind = BX__STEP_INT,
    .zero_init = true,
    .null_state = false,
    .check = rmsprop_check,
    .needs = rmsprop_needs,
    .update = rmsprop_update,
};

bx_optimizer *bx_rmsprop_new(const bx_rmsprop_opts *defaults) {
    const bx_rmsprop_opts dflt = BX_RMSPROP_OPTS_INIT;
    const bx_rmsprop_opts *o = defaults ? defaults : &dflt;
    bx__hp hp = {0};
    hp.lr = o->lr;
    hp.alpha = o->alpha;
    hp.eps = o->eps;
    hp.weight_decay = o->weight_decay;
    hp.momentum = o->momentum;
    hp.centered = o->centered;
    hp.maximize = o->maximize;
    return bx__optimizer_new(&rmsprop_vt, &hp);
}
