/* sgd.c - SGD with momentum, dampening, Nesterov, L2 weight decay and
 * maximize: torch 1.13 _single_tensor_sgd (golden rule Q1), float32 math with
 * each hyper-parameter rounded to float as torch's scalar ops do:
 *   d = (maximize ? -grad : grad) + wd*p
 *   buf = d (first momentum step)  |  buf = momentum*buf + (1-dampening)*d
 *   d = nesterov ? d + momentum*buf : buf
 *   p -= lr*d */
#include "optim/optim_int.h"

#include <math.h>

static const bx__hpkey sgd_keys[] = {HK_LR,       HK_MOMENTUM, HK_DAMPENING, HK_WEIGHT_DECAY,
                                     HK_NESTEROV, HK_MAXIMIZE, HK_FOREACH,   HK_DIFFERENTIABLE};
static const char *const sgd_state[] = {"momentum_buffer"};

static bx_status sgd_check(const bx__hp *hp, const char *what) {
    bx_status st;
    if ((st = bx__check_nonneg(what, "lr", hp->lr))) return st;
    if ((st = bx__check_nonneg(what, "momentum", hp->momentum))) return st;
    if ((st = bx__check_nonneg(what, "weight_decay", hp->weight_decay))) return st;
    if (isnan(hp->dampening)) return bx__error(BX_ERR_INVALID, "%s: invalid dampening value: nan", what);
    if (hp->nesterov && (hp->momentum <= 0 || hp->dampening != 0))
        return bx__error(BX_ERR_INVALID,
                         "%s: Nesterov momentum requires a momentum and zero dampening (momentum %g, dampening %g)",
                         what, hp->momentum, hp->dampening);
    return BX_OK;
}

static bool sgd_needs(const bx__hp *hp, int k) { return k == 0 && hp->momentum != 0; }

typedef struct sgd_args {
    float *p, *buf;
    const float *g;
    float wd, nlr, sign, mom, damp1;
    bool use_wd, use_mom, first, nesterov;
} sgd_args;

static inline __attribute__((always_inline)) void sgd_loop(const sgd_args *a, int64_t lo, int64_t hi,
                                                           const bool use_wd, const bool use_mom, const bool first,
                                                           const bool nesterov) {
    float *restrict p = a->p, *restrict buf = a->buf;
    const float *restrict g = a->g;
    const float wd = a->wd, nlr = a->nlr, sign = a->sign, mom = a->mom, damp1 = a->damp1;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float d = sign * g[i];
        if (use_wd) d = d + wd * p[i];
        if (use_mom) {
            float b;
            if (first) {
                b = d;
            } else {
                b = buf[i] * mom;
                b = b + damp1 * d;
            }
            buf[i] = b;
            d = nesterov ? d + mom * b : b;
        }
        p[i] = p[i] + nlr * d;
    }
}

// p (n), grad (n)[, momentum buffer (n)] -> p, buf updated in place over [lo, hi)
static void sgd_range(const void *args, int64_t lo, int64_t hi) {
    const sgd_args *a = args;
    if (!a->use_mom) {
        if (a->use_wd) sgd_loop(a, lo, hi, true, false, false, false);
        else sgd_loop(a, lo, hi, false, false, false, false);
        return;
    }
    switch ((a->use_wd ? 4 : 0) | (a->first ? 2 : 0) | (a->nesterov ? 1 : 0)) {
    case 0: sgd_loop(a, lo, hi, false, true, false, false); break;
    case 1: sgd_loop(a, lo, hi, false, true, false, true); break;
    case 2: sgd_loop(a, lo, hi, false, true, true, false); break;
    case 3: sgd_loop(a, lo, hi, false, true, true, true); break;
    case 4: sgd_loop(a, lo, hi, true, true, false, false); break;
    case 5: sgd_loop(a, lo, hi, true, true, false, true); break;
    case 6: sgd_loop(a, lo, hi, true, true, true, false); break;
    default: sgd_loop(a, lo, hi, true, true, true, true); break;
    }
}

static void sgd_update(const bx__hp *hp, bx__pslot *s) {
    sgd_args a = {
        .p = s->p->data,
        .buf = hp->momentum != 0 ? s->buf[0]->data : NULL,
        .g = s->p->grad->data,
        .wd = (float)hp->weight_decay,
        .nlr = (float)(-hp->lr),
        .sign = hp->maximize ? -1.0f : 1.0f,
        .mom = (float)hp->momentum,
        .damp1 = (float)(1.0 - hp->dampening),
        .use_wd = hp->weight_decay != 0,
        .use_mom = hp->momentum != 0,
        .first = !s->has[0],
        .nesterov = hp->nesterov,
    };
    bx__optim_parallel(sgd_range, &a, bx_numel(s->p));
    if (a.use_mom) s->has[0] = true;
}

static const bx__optim_vt sgd_vt = {
    .type = "SGD",
    .keys = sgd_keys,
    .nkeys = (int)(sizeof sgd_keys / sizeof sgd_keys[0]),
    .state_keys = sgd_state,
    .nstate = 1,
    .step_kind = BX__STEP_NONE,
    .zero_init = false,
    .null_state = true,
    .check = sgd_check,
    .needs = sgd_needs,
    .update = sgd_update,
};

bx_optimizer *bx_sgd_new(const bx_sgd_opts *defaults) {
    if (!defaults) {
        bx__error(BX_ERR_INVALID, "SGD: lr is required (no default): pass options with lr > 0");
        return NULL;
    }
    if (!(defaults->lr > 0)) {
        bx__error(BX_ERR_INVALID, "SGD: lr is required and must be > 0 (got %g)", defaults->lr);
        return NULL;
    }
    bx__hp hp = {0};
    hp.lr = defaults->lr;
    hp.momentum = defaults->momentum;
    hp.dampening = defaults->dampening;
    hp.weight_decay = defaults->weight_decay;
    hp.nesterov = defaults->nesterov;
    hp.maximize = defaults->maximize;
    return bx__optimizer_new(&sgd_vt, &hp);
}
