/* sched_onecycle.c - OneCycleLR (torch 1.13, golden rule S5): lr and
 * momentum annealed through two (or three) phases. The phase end points and
 * the group keys they read ("initial_lr", "max_lr", "min_lr",
 * "max_momentum", "base_momentum") are torch's _schedule_phases, kept in the
 * state dict. */
#include "optim/sched_int.h"

#include <math.h>
#include <string.h>

static const double PI = 3.141592653589793;

static const char *const lr_keys[] = {"initial_lr", "max_lr", "min_lr"};
static const char *const mom_keys[] = {"max_momentum", "base_momentum"};

typedef struct phase {
    double end_step;
    bool end_int; /* torch stores the last phase's end as an int */
    const char *start_lr, *end_lr, *start_mom, *end_mom;
} phase;

typedef struct one_cycle {
    bx_scheduler base;
    int64_t total_steps;
    phase ph[3];
    int nph;
    bx_anneal_strategy anneal;
    bool cycle_momentum;
    bool use_beta1;
} one_cycle;

static double anneal(bx_anneal_strategy a, double start, double end, double pct) {
    if (a == BX_ANNEAL_LINEAR) return (end - start) * pct + start;
    double cos_out = cos(PI * pct) + 1;
    return end + (start - end) / 2.0 * cos_out;
}

static bx_status one_cycle_get(bx_scheduler *s, int *n) {
    const one_cycle *k = (const one_cycle *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    int64_t step_num = s->last_epoch;
    if (step_num > k->total_steps)
        return bx__error(BX_ERR_STATE, "OneCycleLR: tried to step %lld times; the specified number of total steps is %lld",
                         (long long)(step_num + 1), (long long)k->total_steps);
    for (int g = 0; g < ng; g++) {
        double start_step = 0, lr = 0, mom = 0;
        for (int i = 0; i < k->nph; i++) {
            const phase *p = &k->ph[i];
            double end_step = p->end_step;
            if ((double)step_num <= end_step || i == k->nph - 1) {
                double pct = ((double)step_num - start_step) / (end_step - start_step);
                double a, b;
                bx_status st;
                if ((st = bx__sched_group_key(s, g, p->start_lr, &a)) || (st = bx__sched_group_key(s, g, p->end_lr, &b)))
                    return st;
                lr = anneal(k->anneal, a, b, pct);
                if (k->cycle_momentum) {
                    if ((st = bx__sched_group_key(s, g, p->start_mom, &a)) ||
                        (st = bx__sched_group_key(s, g, p->end_mom, &b)))
                        return st;
                    mom = anneal(k->anneal, a, b, pct);
                }
                break;
            }
            start_step = p->end_step;
        }
        s->values[g] = lr;
        if (k->cycle_momentum) bx_optimizer_set_momentum(s->opt, g, mom);
    }
    *n = ng;
    return BX_OK;
}

static const char *anneal_name(bx_anneal_strategy a) {
    return a == BX_ANNEAL_LINEAR ? "<callable OneCycleLR._annealing_linear>" : "<callable OneCycleLR._annealing_cos>";
}

static bx_status one_cycle_save(const bx_scheduler *s, bx_state *d) {
    const one_cycle *k = (const one_cycle *)s;
    bx_status st = bx_state_set_int(d, "total_steps", k->total_steps);
    if (st) return st;
    bx_state *l = bx_state_list();
    if ((st = bx_state_set(d, "_schedule_phases", l))) return st;
    for (int i = 0; i < k->nph; i++) {
        const phase *p = &k->ph[i];
        bx_state *pd = bx_state_dict();
        if ((st = bx_state_append(l, pd))) return st;
        st = p->end_int ? bx_state_set_int(pd, "end_step", (int64_t)p->end_step)
                        : bx_state_set_float(pd, "end_step", p->end_step);
        if (!st) st = bx_state_set_string(pd, "start_lr", p->start_lr);
        if (!st) st = bx_state_set_string(pd, "end_lr", p->end_lr);
        if (!st) st = bx_state_set_string(pd, "start_momentum", p->start_mom);
        if (!st) st = bx_state_set_string(pd, "end_momentum", p->end_mom);
        if (st) return st;
    }
    if ((st = bx_state_set_string(d, "anneal_func", anneal_name(k->anneal)))) return st;
    if ((st = bx_state_set_bool(d, "cycle_momentum", k->cycle_momentum))) return st;
    if (k->cycle_momentum) st = bx_state_set_bool(d, "use_beta1", k->use_beta1);
    return st;
}

/* Maps a stored key name onto one of ours (so phases never point into the
 * state tree). */
static const char *known_key(const char *const *keys, int n, const char *name) {
    for (int i = 0; name && i < n; i++)
        if (strcmp(keys[i], name) == 0) return keys[i];
    return NULL;
}

static bx_status one_cycle_load(bx_scheduler *s, const bx_state *d, bool apply) {
    one_cycle *k = (one_cycle *)s;
    int64_t total;
    bool cycle, beta1 = k->use_beta1;
    bx_status st;
    if ((st = bx_state_need_int(d, "total_steps", &total)) || (st = bx_state_need_bool(d, "cycle_momentum", &cycle)))
        return st;
    if (total < 1) return bx__error(BX_ERR_INVALID, "total_steps %lld must be > 0", (long long)total);
    if (bx_state_get(d, "use_beta1") && (st = bx_state_need_bool(d, "use_beta1", &beta1))) return st;
    bx_anneal_strategy an = k->anneal;
    const char *af = bx_state_get_string(bx_state_get(d, "anneal_func"));
    if (af && strstr(af, "linear")) an = BX_ANNEAL_LINEAR;
    else if (af && strstr(af, "cos")) an = BX_ANNEAL_COS;
    const bx_state *l = bx_state_get(d, "_schedule_phases");
    if (!l) return bx__error(BX_ERR_FORMAT, "key '_schedule_phases' missing");
    if (bx_state_typeof(l) != BX_STATE_LIST || bx_state_len(l) < 2 || bx_state_len(l) > 3)
        return bx__error(BX_ERR_FORMAT, "'_schedule_phases' must be a list of 2 or 3 phases");
    phase ph[3];
    int nph = (int)bx_state_len(l);
    for (int i = 0; i < nph; i++) {
        const bx_state *pd = bx_state_at(l, (size_t)i);
        phase *p = &ph[i];
        if ((st = bx_state_need_float(pd, "end_step", &p->end_step))) return st;
        p->end_int = bx_state_typeof(bx_state_get(pd, "end_step")) == BX_STATE_INT;
        p->start_lr = known_key(lr_keys, 3, bx_state_get_string(bx_state_get(pd, "start_lr")));
        p->end_lr = known_key(lr_keys, 3, bx_state_get_string(bx_state_get(pd, "end_lr")));
        p->start_mom = known_key(mom_keys, 2, bx_state_get_string(bx_state_get(pd, "start_momentum")));
        p->end_mom = known_key(mom_keys, 2, bx_state_get_string(bx_state_get(pd, "end_momentum")));
        if (!p->start_lr || !p->end_lr || !p->start_mom || !p->end_mom)
            return bx__error(BX_ERR_FORMAT, "_schedule_phases[%d]: start_lr/end_lr/start_momentum/end_momentum must "
                                            "name initial_lr/max_lr/min_lr and max_momentum/base_momentum", i);
    }
    if (apply) {
        k->total_steps = total;
        k->cycle_momentum = cycle;
        k->use_beta1 = beta1;
        k->anneal = an;
        memcpy(k->ph, ph, sizeof ph);
        k->nph = nph;
    }
    return BX_OK;
}

static const bx__sched_vt one_cycle_lr_vt = {
    .type = "OneCycleLR", .get_lr = one_cycle_get, .save_pre = one_cycle_save, .load = one_cycle_load,
    .lr_common = true,
};

bx_scheduler *bx_one_cycle_lr_new(bx_optimizer *o, const bx_one_cycle_lr_opts *opts) {
    const char *T = "OneCycleLR";
    if (!opts) {
        bx__error(BX_ERR_INVALID, "%s: max_lr and total_steps are required", T);
        return NULL;
    }
    int64_t total = opts->total_steps;
    if (total == 0 && opts->epochs == 0 && opts->steps_per_epoch == 0) {
        bx__error(BX_ERR_INVALID, "%s: you must define either total_steps OR (epochs AND steps_per_epoch)", T);
        return NULL;
    }
    if (total != 0) {
        if (total < 0) {
            bx__error(BX_ERR_INVALID, "%s: expected positive integer total_steps, but got %lld", T, (long long)total);
            return NULL;
        }
    } else {
        if (opts->epochs <= 0 || opts->steps_per_epoch <= 0) {
            bx__error(BX_ERR_INVALID, "%s: expected positive integer epochs and steps_per_epoch, but got %lld and %lld",
                      T, (long long)opts->epochs, (long long)opts->steps_per_epoch);
            return NULL;
        }
        total = opts->epochs * opts->steps_per_epoch;
    }
    if (!(opts->pct_start >= 0 && opts->pct_start <= 1)) {
        bx__error(BX_ERR_INVALID, "%s: expected float between 0 and 1 pct_start, but got %g", T, opts->pct_start);
        return NULL;
    }
    if (opts->anneal_strategy != BX_ANNEAL_COS && opts->anneal_strategy != BX_ANNEAL_LINEAR) {
        bx__error(BX_ERR_INVALID, "%s: anneal_strategy must be cos or linear", T);
        return NULL;
    }
    if (!opts->max_lrs && isnan(opts->max_lr)) {
        bx__error(BX_ERR_INVALID, "%s: max_lr is required", T);
        return NULL;
    }
    int ng = bx_optimizer_num_groups(o);
    one_cycle *k = (one_cycle *)bx__sched_alloc(sizeof *k, &one_cycle_lr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    bx_scheduler *s = &k->base;
    double *max_lrs = bx__malloc((size_t)ng * 3 * sizeof(double));
    if (!max_lrs) goto fail;
    double *max_m = max_lrs + ng, *base_m = max_lrs + 2 * ng;
    if (bx__sched_per_group(T, "max_lr", opts->max_lr, opts->max_lrs, opts->n_max_lrs, ng, max_lrs) ||
        bx__sched_per_group(T, "max_momentum", opts->max_momentum, opts->max_momentums, opts->n_max_momentums, ng,
                            max_m) ||
        bx__sched_per_group(T, "base_momentum", opts->base_momentum, opts->base_momentums, opts->n_base_momentums,
                            ng, base_m))
        goto fail;
    k->total_steps = total;
    double pt = opts->pct_start * (double)total;
    if (opts->three_phase) {
        k->nph = 3;
        k->ph[0] = (phase){pt - 1, false, "initial_lr", "max_lr", "max_momentum", "base_momentum"};
        k->ph[1] = (phase){2 * opts->pct_start * (double)total - 2, false, "max_lr", "initial_lr", "base_momentum",
                           "max_momentum"};
        k->ph[2] = (phase){(double)(total - 1), true, "initial_lr", "min_lr", "max_momentum", "max_momentum"};
    } else {
        k->nph = 2;
        k->ph[0] = (phase){pt - 1, false, "initial_lr", "max_lr", "max_momentum", "base_momentum"};
        k->ph[1] = (phase){(double)(total - 1), true, "max_lr", "min_lr", "base_momentum", "max_momentum"};
    }
    k->anneal = opts->anneal_strategy;
    if (opts->last_epoch == -1)
        for (int g = 0; g < ng; g++) {
            double initial = max_lrs[g] / opts->div_factor;
            if (bx_optimizer_group_set(o, g, "initial_lr", initial) || bx_optimizer_group_set(o, g, "max_lr", max_lrs[g]) ||
                bx_optimizer_group_set(o, g, "min_lr", initial / opts->final_div_factor))
                goto fail;
        }
    k->cycle_momentum = opts->cycle_momentum;
    if (k->cycle_momentum) {
        if (!bx_optimizer_has_default(o, "momentum") && !bx_optimizer_has_default(o, "betas")) {
            bx__error(BX_ERR_INVALID, "%s: optimizer must support momentum with `cycle_momentum` option enabled", T);
            goto fail;
        }
        k->use_beta1 = bx_optimizer_has_default(o, "betas");
        if (opts->last_epoch == -1)
            for (int g = 0; g < ng; g++)
                if (bx_optimizer_set_momentum(o, g, max_m[g]) || bx_optimizer_group_set(o, g, "max_momentum", max_m[g]) ||
                    bx_optimizer_group_set(o, g, "base_momentum", base_m[g]))
                    goto fail;
    }
    bx__free(max_lrs);
    return bx__sched_start(s, opts->last_epoch);
fail:
    bx__free(max_lrs);
    bx_scheduler_free(s);
    return NULL;
}
