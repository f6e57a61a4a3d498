/* sched_cosine.c - CosineAnnealingLR (torch 1.13's recursive form, not
 * clamped at T_max: golden rule S2) and CosineAnnealingWarmRestarts (S3). */
#include "optim/sched_int.h"

#include <math.h>

static const double PI = 3.141592653589793;

/* ---- CosineAnnealingLR ------------------------------------------------------------ */

typedef struct cosine_lr {
    bx_scheduler base;
    int64_t T_max;
    double eta_min;
} cosine_lr;

static bx_status cosine_get(bx_scheduler *s, int *n) {
    const cosine_lr *k = (const cosine_lr *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    int nb = s->nbase < ng ? s->nbase : ng;
    const int64_t e = s->last_epoch, T = k->T_max;
    const double eta = k->eta_min;
    if (e == 0) {
        for (int g = 0; g < ng; g++) s->values[g] = bx_optimizer_get_lr(s->opt, g);
        *n = ng;
    } else if (s->step_count == 1 && e > 0) {
        for (int g = 0; g < nb; g++)
            s->values[g] = eta + (s->base_lrs[g] - eta) * (1 + cos((double)e * PI / (double)T)) / 2;
        *n = nb;
    } else if (bx__pymod(e - 1 - T, 2 * T) == 0) {
        for (int g = 0; g < nb; g++)
            s->values[g] = bx_optimizer_get_lr(s->opt, g) + (s->base_lrs[g] - eta) * (1 - cos(PI / (double)T)) / 2;
        *n = nb;
    } else {
        for (int g = 0; g < ng; g++)
            s->values[g] = (1 + cos(PI * (double)e / (double)T)) / (1 + cos(PI * (double)(e - 1) / (double)T)) *
                               (bx_optimizer_get_lr(s->opt, g) - eta) +
                           eta;
        *n = ng;
    }
    return BX_OK;
}

static bx_status cosine_save(const bx_scheduler *s, bx_state *d) {
    const cosine_lr *k = (const cosine_lr *)s;
    bx_status st = bx_state_set_int(d, "T_max", k->T_max);
    return st ? st : bx__state_set_num0(d, "eta_min", k->eta_min);
}

static bx_status cosine_load(bx_scheduler *s, const bx_state *d, bool apply) {
    cosine_lr *k = (cosine_lr *)s;
    int64_t T;
    double eta;
    bx_status st;
    if ((st = bx_state_need_int(d, "T_max", &T)) || (st = bx_state_need_float(d, "eta_min", &eta))) return st;
    if (T < 1) return bx__error(BX_ERR_INVALID, "T_max %lld must be > 0", (long long)T);
    if (apply) {
        k->T_max = T;
        k->eta_min = eta;
    }
    return BX_OK;
}

static const bx__sched_vt cosine_lr_vt = {
    .type = "CosineAnnealingLR", .get_lr = cosine_get, .save_pre = cosine_save, .load = cosine_load,
    .lr_common = true,
};

bx_scheduler *bx_cosine_lr_new(bx_optimizer *o, const bx_cosine_lr_opts *opts) {
    if (!opts || opts->T_max < 1) {
        bx__error(BX_ERR_INVALID, "CosineAnnealingLR: T_max is required and must be > 0 (got %lld)",
                  opts ? (long long)opts->T_max : 0LL);
        return NULL;
    }
    cosine_lr *k = (cosine_lr *)bx__sched_alloc(sizeof *k, &cosine_lr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    k->T_max = opts->T_max;
    k->eta_min = opts->eta_min;
    return bx__sched_start(&k->base, opts->last_epoch);
}

/* ---- CosineAnnealingWarmRestarts ------------------------------------------------------- */

typedef struct warm_restarts {
    bx_scheduler base;
    int64_t T_0, T_i, T_mult;
    double eta_min;
    double T_cur; /* an integer unless restored from a fractional-epoch state */
} warm_restarts;

/* torch's own step(): it does not count _step_count. */
static bx_status warm_step(bx_scheduler *s, double metric) {
    (void)metric;
    warm_restarts *k = (warm_restarts *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    bx_status st = bx__sched_reserve(s, ng);
    if (st) return st;
    int64_t epoch;
    if (s->last_epoch < 0) {
        epoch = 0;
        k->T_i = k->T_0;
        k->T_cur = 0;
    } else {
        epoch = s->last_epoch + 1;
        k->T_cur = k->T_cur + 1;
        if (k->T_cur >= (double)k->T_i) {
            k->T_cur = k->T_cur - (double)k->T_i;
            k->T_i = k->T_i * k->T_mult;
        }
    }
    s->last_epoch = epoch;
    int nb = s->nbase < ng ? s->nbase : ng;
    for (int g = 0; g < nb; g++)
        bx_optimizer_set_lr(s->opt, g,
                            k->eta_min + (s->base_lrs[g] - k->eta_min) * (1 + cos(PI * k->T_cur / (double)k->T_i)) / 2);
    bx__sched_record_last_lr(s);
    return BX_OK;
}

static bx_status set_num(bx_state *d, const char *key, double v) {
    if (v == floor(v) && fabs(v) < 9e15) return bx_state_set_int(d, key, (int64_t)v);
    return bx_state_set_float(d, key, v);
}

static bx_status warm_save(const bx_scheduler *s, bx_state *d) {
    const warm_restarts *k = (const warm_restarts *)s;
    bx_status st = bx_state_set_int(d, "T_0", k->T_0);
    if (!st) st = bx_state_set_int(d, "T_i", k->T_i);
    if (!st) st = bx_state_set_int(d, "T_mult", k->T_mult);
    if (!st) st = bx__state_set_num0(d, "eta_min", k->eta_min);
    if (!st) st = set_num(d, "T_cur", k->T_cur);
    return st;
}

static bx_status warm_load(bx_scheduler *s, const bx_state *d, bool apply) {
    warm_restarts *k = (warm_restarts *)s;
    int64_t T_0, T_i, T_mult;
    double eta, T_cur;
    bx_status st;
    if ((st = bx_state_need_int(d, "T_0", &T_0)) || (st = bx_state_need_int(d, "T_i", &T_i)) ||
        (st = bx_state_need_int(d, "T_mult", &T_mult)) || (st = bx_state_need_float(d, "eta_min", &eta)) ||
        (st = bx_state_need_float(d, "T_cur", &T_cur)))
        return st;
    if (T_0 < 1 || T_i < 1 || T_mult < 1)
        return bx__error(BX_ERR_INVALID, "T_0 %lld, T_i %lld and T_mult %lld must be >= 1", (long long)T_0,
                         (long long)T_i, (long long)T_mult);
    if (apply) {
        k->T_0 = T_0;
        k->T_i = T_i;
        k->T_mult = T_mult;
        k->eta_min = eta;
        k->T_cur = T_cur;
    }
    return BX_OK;
}

static const bx__sched_vt cosine_warm_restarts_vt = {
    .type = "CosineAnnealingWarmRestarts", .step = warm_step, .save_pre = warm_save, .load = warm_load,
    .lr_common = true,
};

bx_scheduler *bx_cosine_warm_restarts_new(bx_optimizer *o, const bx_cosine_warm_restarts_opts *opts) {
    if (!opts || opts->T_0 < 1) {
        bx__error(BX_ERR_INVALID, "CosineAnnealingWarmRestarts: expected positive integer T_0, but got %lld",
                  opts ? (long long)opts->T_0 : 0LL);
        return NULL;
    }
    if (opts->T_mult < 1) {
        bx__error(BX_ERR_INVALID, "CosineAnnealingWarmRestarts: expected integer T_mult >= 1, but got %lld",
                  (long long)opts->T_mult);
        return NULL;
    }
    warm_restarts *k = (warm_restarts *)bx__sched_alloc(sizeof *k, &cosine_warm_restarts_vt, o, opts->last_epoch);
    if (!k) return NULL;
    k->T_0 = k->T_i = opts->T_0;
    k->T_mult = opts->T_mult;
    k->eta_min = opts->eta_min;
    k->T_cur = (double)opts->last_epoch;
    return bx__sched_start(&k->base, opts->last_epoch);
}
