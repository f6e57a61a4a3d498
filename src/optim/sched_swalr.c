/* sched_swalr.c - SWALR (torch.optim.swa_utils, golden rule S7): anneals
 * each group's lr towards its "swa_lr" over anneal_epochs steps, counted by
 * _step_count (so Lightning's last_epoch = max_epochs changes nothing). */
#include "optim/sched_int.h"

#include <math.h>
#include <string.h>

static const double PI = 3.141592653589793;

typedef struct swalr {
    bx_scheduler base;
    int64_t anneal_epochs;
    bx_anneal_strategy anneal;
} swalr;

static double anneal_f(bx_anneal_strategy a, double t) {
    return a == BX_ANNEAL_LINEAR ? t : (1 - cos(PI * t)) / 2;
}

static double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }

static bx_status swalr_get(bx_scheduler *s, int *n) {
    const swalr *k = (const swalr *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    int64_t step = s->step_count - 1;
    if (k->anneal_epochs == 0 && step < 1) step = 1;
    double A = (double)(k->anneal_epochs > 1 ? k->anneal_epochs : 1);
    double prev_alpha = anneal_f(k->anneal, clamp01((double)(step - 1) / A));
    double alpha = anneal_f(k->anneal, clamp01((double)step / A));
    for (int g = 0; g < ng; g++) {
        double swa;
        bx_status st = bx__sched_group_key(s, g, "swa_lr", &swa);
        if (st) return st;
        double lr = bx_optimizer_get_lr(s->opt, g);
        double prev = prev_alpha == 1 ? swa : (lr - prev_alpha * swa) / (1 - prev_alpha);
        s->values[g] = swa * alpha + prev * (1 - alpha);
    }
    *n = ng;
    return BX_OK;
}

static bx_status swalr_save(const bx_scheduler *s, bx_state *d) {
    const swalr *k = (const swalr *)s;
    bx_status st = bx_state_set_string(d, "anneal_func", k->anneal == BX_ANNEAL_LINEAR
                                                             ? "<callable SWALR._linear_anneal>"
                                                             : "<callable SWALR._cosine_anneal>");
    return st ? st : bx_state_set_int(d, "anneal_epochs", k->anneal_epochs);
}

static bx_status swalr_load(bx_scheduler *s, const bx_state *d, bool apply) {
    swalr *k = (swalr *)s;
    int64_t A;
    bx_status st = bx_state_need_int(d, "anneal_epochs", &A);
    if (st) return st;
    if (A < 0) return bx__error(BX_ERR_INVALID, "anneal_epochs %lld must be >= 0", (long long)A);
    bx_anneal_strategy an = k->anneal;
    const char *af = bx_state_get_string(bx_state_get(d, "anneal_func"));
    if (af && strstr(af, "linear")) an = BX_ANNEAL_LINEAR;
    else if (af && strstr(af, "cos")) an = BX_ANNEAL_COS;
    if (apply) {
        k->anneal_epochs = A;
        k->anneal = an;
    }
    return BX_OK;
}

static const bx__sched_vt swalr_vt = {
    .type = "SWALR", .get_lr = swalr_get, .save_pre = swalr_save, .load = swalr_load, .lr_common = true,
};

bx_scheduler *bx_swalr_new(bx_optimizer *o, const bx_swalr_opts *opts) {
    const char *T = "SWALR";
    if (!opts || (!opts->swa_lrs && isnan(opts->swa_lr))) {
        bx__error(BX_ERR_INVALID, "%s: swa_lr is required", T);
        return NULL;
    }
    if (opts->anneal_strategy != BX_ANNEAL_COS && opts->anneal_strategy != BX_ANNEAL_LINEAR) {
        bx__error(BX_ERR_INVALID, "%s: anneal_strategy must be cos or linear", T);
        return NULL;
    }
    if (opts->anneal_epochs < 0) {
        bx__error(BX_ERR_INVALID, "%s: anneal_epochs must be equal or greater than 0, got %lld", T,
                  (long long)opts->anneal_epochs);
        return NULL;
    }
    swalr *k = (swalr *)bx__sched_alloc(sizeof *k, &swalr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    int ng = bx_optimizer_num_groups(o);
    double *v = bx__malloc((size_t)ng * sizeof *v);
    if (!v || bx__sched_per_group(T, "swa_lr", opts->swa_lr, opts->swa_lrs, opts->n_swa_lrs, ng, v)) goto fail;
    for (int g = 0; g < ng; g++)
        if (bx_optimizer_group_set(o, g, "swa_lr", v[g])) goto fail;
    bx__free(v);
    k->anneal_epochs = opts->anneal_epochs;
    k->anneal = opts->anneal_strategy;
    return bx__sched_start(&k->base, opts->last_epoch);
fail:
    bx__free(v);
    bx_scheduler_free(&k->base);
    return NULL;
}
