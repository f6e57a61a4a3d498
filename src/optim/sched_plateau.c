/* sched_plateau.c - ReduceLROnPlateau (torch 1.13, golden rule S6): cuts
 * every group's lr by `factor` once the monitored metric has stopped
 * improving for more than `patience` steps. Not an _LRScheduler in torch:
 * its state dict is its own __dict__ (no base_lrs, _last_lr only after the
 * first step). */
#include "optim/sched_int.h"

#include <math.h>
#include <string.h>

typedef struct plateau {
    bx_scheduler base;
    double factor;
    double *min_lrs;
    int nmin;
    int64_t patience, cooldown, cooldown_counter, num_bad_epochs;
    bx_plateau_mode mode;
    double threshold;
    bx_threshold_mode threshold_mode;
    double best, mode_worse, eps;
} plateau;

static bool is_better(const plateau *k, double a, double best) {
    if (k->mode == BX_PLATEAU_MIN && k->threshold_mode == BX_THRESHOLD_REL) return a < best * (1.0 - k->threshold);
    if (k->mode == BX_PLATEAU_MIN) return a < best - k->threshold;
    if (k->threshold_mode == BX_THRESHOLD_REL) return a > best * (k->threshold + 1.0);
    return a > best + k->threshold;
}

static bx_status plateau_step(bx_scheduler *s, double current) {
    plateau *k = (plateau *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    bx_status st = bx__sched_reserve(s, ng);
    if (st) return st;
    int64_t epoch = s->last_epoch + 1;
    bool reduce_fails = false;
    /* check up front so that a failing step changes nothing */
    int64_t bad = is_better(k, current, k->best) ? 0 : k->num_bad_epochs + 1;
    if (k->cooldown_counter > 0) bad = 0;
    if (bad > k->patience && ng > k->nmin) reduce_fails = true;
    if (reduce_fails)
        return bx__error(BX_ERR_STATE,
                         "ReduceLROnPlateau: param group %d has no min_lr (the optimizer had %d groups when the "
                         "scheduler was made)",
                         k->nmin, k->nmin);
    s->last_epoch = epoch;
    if (is_better(k, current, k->best)) {
        k->best = current;
        k->num_bad_epochs = 0;
    } else {
        k->num_bad_epochs += 1;
    }
    if (k->cooldown_counter > 0) {
        k->cooldown_counter -= 1;
        k->num_bad_epochs = 0;
    }
    if (k->num_bad_epochs > k->patience) {
        for (int g = 0; g < ng; g++) {
            double old_lr = bx_optimizer_get_lr(s->opt, g);
            double a = old_lr * k->factor;
            double new_lr = k->min_lrs[g] > a ? k->min_lrs[g] : a; /* Python's max(a, min_lr) */
            if (old_lr - new_lr > k->eps) bx_optimizer_set_lr(s->opt, g, new_lr);
        }
        k->cooldown_counter = k->cooldown;
        k->num_bad_epochs = 0;
    }
    bx__sched_record_last_lr(s);
    return BX_OK;
}

static bx_status plateau_save(const bx_scheduler *s, bx_state *d) {
    const plateau *k = (const plateau *)s;
    bx_status st;
    if ((st = bx_state_set_float(d, "factor", k->factor)) ||
        (st = bx__state_set_doubles(d, "min_lrs", k->min_lrs, k->nmin, true)) ||
        (st = bx_state_set_int(d, "patience", k->patience)) || (st = bx_state_set_bool(d, "verbose", false)) ||
        (st = bx_state_set_int(d, "cooldown", k->cooldown)) ||
        (st = bx_state_set_int(d, "cooldown_counter", k->cooldown_counter)) ||
        (st = bx_state_set_string(d, "mode", k->mode == BX_PLATEAU_MIN ? "min" : "max")) ||
        (st = bx_state_set_float(d, "threshold", k->threshold)) ||
        (st = bx_state_set_string(d, "threshold_mode", k->threshold_mode == BX_THRESHOLD_REL ? "rel" : "abs")) ||
        (st = bx_state_set_float(d, "best", k->best)) || (st = bx_state_set_int(d, "num_bad_epochs", k->num_bad_epochs)) ||
        (st = bx_state_set_float(d, "mode_worse", k->mode_worse)) || (st = bx_state_set_float(d, "eps", k->eps)) ||
        (st = bx_state_set_int(d, "last_epoch", s->last_epoch)))
        return st;
    if (s->has_last_lr) st = bx__state_set_doubles(d, "_last_lr", s->last_lr, s->nlast, false);
    return st;
}

static bx_status need_enum(const bx_state *d, const char *key, const char *a, const char *b, int *out) {
    const bx_state *v = bx_state_get(d, key);
    if (!v) return bx__error(BX_ERR_FORMAT, "key '%s' missing", key);
    const char *s = bx_state_get_string(v);
    if (!s) return bx__error(BX_ERR_FORMAT, "'%s' is %s, expected a string", key, bx__state_type_desc(bx_state_typeof(v)));
    if (strcmp(s, a) == 0) *out = 0;
    else if (strcmp(s, b) == 0) *out = 1;
    else return bx__error(BX_ERR_INVALID, "%s '%s' is unknown (%s or %s)", key, s, a, b);
    return BX_OK;
}

static bx_status plateau_load(bx_scheduler *s, const bx_state *d, bool apply) {
    plateau *k = (plateau *)s;
    plateau n = *k;
    int mode = 0, tmode = 0;
    int64_t last_epoch;
    double *min_lrs = NULL, *last = NULL;
    int nmin = 0, nlast = 0;
    bx_status st;
    if ((st = bx_state_need_float(d, "factor", &n.factor)) || (st = bx_state_need_int(d, "patience", &n.patience)) ||
        (st = bx_state_need_int(d, "cooldown", &n.cooldown)) ||
        (st = bx_state_need_int(d, "cooldown_counter", &n.cooldown_counter)) ||
        (st = need_enum(d, "mode", "min", "max", &mode)) || (st = bx_state_need_float(d, "threshold", &n.threshold)) ||
        (st = need_enum(d, "threshold_mode", "rel", "abs", &tmode)) || (st = bx_state_need_float(d, "best", &n.best)) ||
        (st = bx_state_need_int(d, "num_bad_epochs", &n.num_bad_epochs)) ||
        (st = bx_state_need_float(d, "eps", &n.eps)) || (st = bx_state_need_int(d, "last_epoch", &last_epoch)))
        return st;
    if (!(n.factor < 1.0)) return bx__error(BX_ERR_INVALID, "factor %g should be < 1.0", n.factor);
    if ((st = bx__state_get_doubles(d, "min_lrs", &min_lrs, &nmin))) return st;
    if (bx_state_get(d, "_last_lr") && (st = bx__state_get_doubles(d, "_last_lr", &last, &nlast))) {
        bx__free(min_lrs);
        return st;
    }
    if (apply && nlast > s->cap && (st = bx__sched_reserve(s, nlast))) {
        bx__free(min_lrs);
        bx__free(last);
        return st;
    }
    if (apply) {
        n.mode = (bx_plateau_mode)mode;
        n.threshold_mode = (bx_threshold_mode)tmode;
        /* torch's load re-derives mode_worse from the mode */
        n.mode_worse = n.mode == BX_PLATEAU_MIN ? INFINITY : -INFINITY;
        bx__free(k->min_lrs);
        n.min_lrs = min_lrs;
        n.nmin = nmin;
        n.base = k->base;
        n.base.last_epoch = last_epoch;
        if (last) {
            memcpy(n.base.last_lr, last, (size_t)nlast * sizeof *last);
            n.base.nlast = nlast;
            n.base.has_last_lr = true;
        }
        *k = n;
        min_lrs = NULL;
    }
    bx__free(min_lrs);
    bx__free(last);
    return BX_OK;
}

static void plateau_release(bx_scheduler *s) { bx__free(((plateau *)s)->min_lrs); }

static const bx__sched_vt plateau_vt = {
    .type = "ReduceLROnPlateau", .step = plateau_step, .save_pre = plateau_save, .load = plateau_load,
    .release = plateau_release, .metric = true, .lr_common = false,
};

bx_scheduler *bx_plateau_new(bx_optimizer *o, const bx_plateau_opts *opts) {
    const char *T = "ReduceLROnPlateau";
    bx_plateau_opts dflt = BX_PLATEAU_OPTS_INIT;
    if (!opts) opts = &dflt;
    if (!(opts->factor < 1.0)) {
        bx__error(BX_ERR_INVALID, "%s: factor should be < 1.0 (got %g)", T, opts->factor);
        return NULL;
    }
    if (opts->mode != BX_PLATEAU_MIN && opts->mode != BX_PLATEAU_MAX) {
        bx__error(BX_ERR_INVALID, "%s: mode %d is unknown (min or max)", T, (int)opts->mode);
        return NULL;
    }
    if (opts->threshold_mode != BX_THRESHOLD_REL && opts->threshold_mode != BX_THRESHOLD_ABS) {
        bx__error(BX_ERR_INVALID, "%s: threshold mode %d is unknown (rel or abs)", T, (int)opts->threshold_mode);
        return NULL;
    }
    plateau *k = (plateau *)bx__sched_alloc(sizeof *k, &plateau_vt, o, -1);
    if (!k) return NULL;
    int ng = bx_optimizer_num_groups(o);
    k->min_lrs = bx__malloc((size_t)ng * sizeof *k->min_lrs);
    if (!k->min_lrs || bx__sched_per_group(T, "min_lrs", opts->min_lr, opts->min_lrs, opts->n_min_lrs, ng, k->min_lrs)) {
        bx_scheduler_free(&k->base);
        return NULL;
    }
    k->nmin = ng;
    k->factor = opts->factor;
    k->patience = opts->patience;
    k->cooldown = opts->cooldown;
    k->cooldown_counter = 0;
    k->mode = opts->mode;
    k->threshold = opts->threshold;
    k->threshold_mode = opts->threshold_mode;
    k->mode_worse = opts->mode == BX_PLATEAU_MIN ? INFINITY : -INFINITY;
    k->best = k->mode_worse;
    k->num_bad_epochs = 0;
    k->eps = opts->eps;
    k->base.last_epoch = 0;
    return &k->base;
}
