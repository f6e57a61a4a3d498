/* adam.c - Adam (L2 weight decay) and AdamW (decoupled weight decay), with
 * amsgrad and maximize: torch 1.13 _single_tensor_adam/_adamw (golden rules
 * Q2, Q3). Float32 moments, bias corrections in double:
 *   AdamW: p *= 1 - lr*wd                      (then no L2 term)
 *   g = (maximize ? -grad : grad) [+ wd*p for Adam]
 *   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  t += 1
 *   bc1 = 1 - b1^t;  bc2 = 1 - b2^t
 *   denom = sqrt(amsgrad ? vmax = max(vmax, v) : v) / sqrt(bc2) + eps
 *   p -= (lr/bc1) * m / denom */
#include "optim/optim_int.h"

#include <math.h>

/* torch 1.13's Adam and AdamW list their keys in different orders, and
 * AdamW has neither `differentiable` nor `fused`. */
static const bx__hpkey adam_keys[] = {HK_LR,      HK_BETAS,   HK_EPS,     HK_WEIGHT_DECAY, HK_AMSGRAD,
                                      HK_MAXIMIZE, HK_FOREACH, HK_CAPTURABLE, HK_DIFFERENTIABLE, HK_FUSED};
static const bx__hpkey adamw_keys[] = {HK_LR,      HK_BETAS,   HK_EPS,      HK_WEIGHT_DECAY,
                                       HK_AMSGRAD, HK_FOREACH, HK_MAXIMIZE, HK_CAPTURABLE};
static const char *const adam_state[] = {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};

static bx_status adam_check(const bx__hp *hp, const char *what) {
    bx_status st;
    if ((st = bx__check_nonneg(what, "lr", hp->lr))) return st;
    if ((st = bx__check_nonneg(what, "eps", hp->eps))) return st;
    for (int i = 0; i < 2; i++)
        if (!(hp->betas[i] >= 0.0 && hp->betas[i] < 1.0))
            return bx__error(BX_ERR_INVALID, "%s: invalid beta parameter at index %d: %g (must be in [0, 1))", what,
                             i, hp->betas[i]);
    return bx__check_nonneg(what, "weight_decay", hp->weight_decay);
}

static bool adam_needs(const bx__hp *hp, int k) { return k < 2 || (k == 2 && hp->amsgrad); }

typedef struct adam_args {
    float *p, *m, *v, *vmax;
    const float *g;
    float nstep, bc2s, fb1, fb2, c1, c2, eps, sign, wd, decay;
    bool l2, decoupled, amsgrad;
} adam_args;

/* One loop per flag combination (constant flags let the compiler drop the
 * branches and vectorise). */
static inline __attribute__((always_inline)) void adam_loop(const adam_args *a, int64_t lo, int64_t hi,
                                                            const bool decoupled, const bool l2, const bool amsgrad) {
    float *restrict p = a->p, *restrict m = a->m, *restrict v = a->v, *restrict vmax = a->vmax;
    const float *restrict g = a->g;
    const float nstep = a->nstep, bc2s = a->bc2s, fb1 = a->fb1, fb2 = a->fb2, c1 = a->c1, c2 = a->c2;
    const float eps = a->eps, sign = a->sign, wd = a->wd, decay = a->decay;
#pragma omp simd
    for (int64_t i = lo; i < hi; i++) {
        float pi = p[i];
        if (decoupled) pi = pi * decay;
        float gi = sign * g[i];
        if (l2) gi = gi + wd * pi;
        float mi = m[i] * fb1;
        mi = mi + c1 * gi;
        float vi = v[i] * fb2;
        vi = vi + (c2 * gi) * gi;
        m[i] = mi;
        v[i] = vi;
        float den;
        if (amsgrad) {
            float mx = vmax[i];
            mx = (mx != mx || mx > vi) ? mx : vi; /* torch.maximum: NaN propagates */
            vmax[i] = mx;
            den = sqrtf(mx) / bc2s + eps;
        } else {
            den = sqrtf(vi) / bc2s + eps;
        }
        p[i] = pi + (nstep * mi) / den;
    }
}

// p (n), grad (n), exp_avg (n), exp_avg_sq (n)[, max_exp_avg_sq (n)] -> updated in place over [lo, hi)
static void adam_range(const void *args, int64_t lo, int64_t hi) {
    const adam_args *a = args;
    switch ((a->decoupled ? 4 : 0) | (a->l2 ? 2 : 0) | (a->amsgrad ? 1 : 0)) {
    case 0: adam_loop(a, lo, hi, false, false, false); break;
    case 1: adam_loop(a, lo, hi, false, false, true); break;
    case 2: adam_loop(a, lo, hi, false, true, false); break;
    case 3: adam_loop(a, lo, hi, false, true, true); break;
    case 4: adam_loop(a, lo, hi, true, false, false); break;
    default: adam_loop(a, lo, hi, true, false, true); break;
    }
}

static void adam_core(const bx__hp *hp, bx__pslot *s, bool decoupled) {
    /* torch keeps the count in a float32 tensor */
    s->step = (double)(float)(s->step + 1);
    const double b1 = hp->betas[0], b2 = hp->betas[1];
    const double bc1 = 1.0 - pow(b1, s->step), bc2 = 1.0 - pow(b2, s->step);
    adam_args a = {
        .p = s->p->data,
        .m = s->buf[0]->data,
        .v = s->buf[1]->data,
        .vmax = hp->amsgrad ? s->buf[2]->data : NULL,
        .g = s->p->grad->data,
        .nstep = (float)(-(hp->lr / bc1)),
        .bc2s = (float)sqrt(bc2),
        .fb1 = (float)b1,
        .fb2 = (float)b2,
        .c1 = (float)(1.0 - b1),
        .c2 = (float)(1.0 - b2),
        .eps = (float)hp->eps,
        .sign = hp->maximize ? -1.0f : 1.0f,
        .wd = (float)hp->weight_decay,
        .decay = (float)(1.0 - hp->lr * hp->weight_decay),
        .l2 = !decoupled && hp->weight_decay != 0,
        .decoupled = decoupled,
        .amsgrad = hp->amsgrad,
    };
    bx__optim_parallel(adam_range, &a, bx_numel(s->p));
}

static void adam_update(const bx__hp *hp, bx__pslot *s) { adam_core(hp, s, false); }
static void adamw_update(const bx__hp *hp, bx__pslot *s) { adam_core(hp, s, true); }

static const bx__optim_vt adam_vt = {
    .type = "Adam",
    .keys = adam_keys,
    .nkeys = (int)(sizeof adam_keys / sizeof adam_keys[0]),
    .state_keys = adam_state,
    .nstate = 3,
    .step_kind = BX__STEP_FLOAT,
    .zero_init = true,
    .null_state = false,
    .check = adam_check,
    .needs = adam_needs,
    .update = adam_update,
};

static const bx__optim_vt adamw_vt = {
    .type = "AdamW",
    .keys = adamw_keys,
    .nkeys = (int)(sizeof adamw_keys / sizeof adamw_keys[0]),
    .state_keys = adam_state,
    .nstate = 3,
    .step_kind = BX__STEP_FLOAT,
    .zero_init = true,
    .null_state = false,
    .check = adam_check,
    .needs = adam_needs,
    .update = adamw_update,
};

static bx__hp adam_hp(const bx_adam_opts *o) {
    bx__hp hp = {0};
    hp.lr = o->lr;
    hp.betas[0] = o->betas[0];
    hp.betas[1] = o->betas[1];
    hp.eps = o->eps;
    hp.weight_decay = o->weight_decay;
    hp.amsgrad = o->amsgrad;
    hp.maximize = o->maximize;
    return hp;
}

bx_optimizer *bx_adam_new(const bx_adam_opts *defaults) {
    const bx_adam_opts dflt = BX_ADAM_OPTS_INIT;
    bx__hp hp = adam_hp(defaults ? defaults : &dflt);
    return bx__optimizer_new(&adam_vt, &hp);
}

bx_optimizer *bx_adamw_new(const bx_adam_opts *defaults) {
    const bx_adam_opts dflt = BX_ADAMW_OPTS_INIT;
    bx__hp hp = adam_hp(defaults ? defaults : &dflt);
    return bx__optimizer_new(&adamw_vt, &hp);
}
