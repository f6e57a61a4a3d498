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

// p (any shape), grad (same) -> p updated in place; buf (same) when momentum != 0
static void sgd_update(const bx__hp *hp, bx__pslot *s) {
    float *restrict p = s->p->data;
    const float *restrict g = s->p->grad->data;
    const int64_t n = bx_numel(s->p);
    const float wd = (float)hp->weight_decay, nlr = (float)(-hp->lr);
    const float sign = hp->maximize ? -1.0f : 1.0f;
    const bool use_wd = hp->weight_decay != 0;
    if (hp->momentum == 0) {
#pragma omp parallel for simd if (n > BX__OPTIM_PAR_MIN) schedule(static)
        for (int64_t i = 0; i < n; i++) {
            float d = sign * g[i];
            if (use_wd) d = d + wd * p[i];
            p[i] = p[i] + nlr * d;
        }
        return;
    }
    float *restrict buf = s->buf[0]->data;
    const float mom = (float)hp->momentum, damp1 = (float)(1.0 - hp->dampening);
    const bool first = !s->has[0], nesterov = hp->nesterov;
#pragma omp parallel for simd if (n > BX__OPTIM_PAR_MIN) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float d = sign * g[i];
        if (use_wd) d = d + wd * p[i];
        float b;
        if (first) {
            b = d;
        } else {
            b = buf[i] * mom;
            b = b + damp1 * d;
        }
        buf[i] = b;
        d = nesterov ? d + mom * b : b;
        p[i] = p[i] + nlr * d;
    }
    s->has[0] = true;
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
