/* sched.c - the common part of every LR scheduler (torch 1.13's
 * _LRScheduler: initial_lr/base_lrs, the initial step, step/last_lr, the
 * state-dict frame) and the simple multiplicative kinds: StepLR,
 * MultiStepLR, ExponentialLR, LinearLR and LambdaLR, in torch's chainable
 * forms (they read the group's current lr, so they compose with other code
 * that edits lrs). */
#include "optim/sched_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- common ------------------------------------------------------------------- */

bx_status bx__sched_reserve(bx_scheduler *s, int n) {
    if (n <= s->cap) return BX_OK;
    int cap = n < 4 ? 4 : n;
    double *ll = bx__realloc(s->last_lr, (size_t)cap * sizeof *ll);
    if (!ll) return BX_ERR_NOMEM;
    s->last_lr = ll;
    double *v = bx__realloc(s->values, (size_t)cap * sizeof *v);
    if (!v) return BX_ERR_NOMEM;
    s->values = v;
    s->cap = cap;
    return BX_OK;
}

void bx__sched_record_last_lr(bx_scheduler *s) {
    int ng = bx_optimizer_num_groups(s->opt);
    for (int g = 0; g < ng && g < s->cap; g++) s->last_lr[g] = bx_optimizer_get_lr(s->opt, g);
    s->nlast = ng < s->cap ? ng : s->cap;
    s->has_last_lr = true;
}

bx_status bx__sched_group_key(const bx_scheduler *s, int g, const char *key, double *out) {
    if (!bx_optimizer_group_has(s->opt, g, key))
        return bx__error(BX_ERR_STATE, "%s: param group %d has no '%s' (was it added after the scheduler?)",
                         s->vt->type, g, key);
    return bx_optimizer_group_get(s->opt, g, key, out);
}

bx_status bx__sched_per_group(const char *what, const char *name, double single, const double *list, int n,
                              int ngroups, double *out) {
    if (list) {
        if (n != ngroups)
            return bx__error(BX_ERR_INVALID, "%s: expected %d values for %s, got %d", what, ngroups, name, n);
        for (int g = 0; g < ngroups; g++) out[g] = list[g];
        return BX_OK;
    }
    for (int g = 0; g < ngroups; g++) out[g] = single;
    return BX_OK;
}

static void sched_release(bx_scheduler *s) {
    if (s->vt->release) s->vt->release(s);
    bx__free(s->base_lrs);
    bx__free(s->last_lr);
    bx__free(s->values);
    bx__free(s);
}

void bx_scheduler_free(bx_scheduler *s) {
    if (s) sched_release(s);
}

bx_scheduler *bx__sched_alloc(size_t size, const bx__sched_vt *vt, bx_optimizer *o, int64_t last_epoch) {
    if (!o) {
        bx__error(BX_ERR_INVALID, "%s: NULL optimizer", vt->type);
        return NULL;
    }
    int ng = bx_optimizer_num_groups(o);
    if (ng < 1) {
        bx__error(BX_ERR_INVALID, "%s: the optimizer has no param groups", vt->type);
        return NULL;
    }
    if (last_epoch < -1) {
        bx__error(BX_ERR_INVALID, "%s: invalid last_epoch %lld (>= -1)", vt->type, (long long)last_epoch);
        return NULL;
    }
    if (vt->lr_common && last_epoch != -1)
        for (int g = 0; g < ng; g++)
            if (!bx_optimizer_group_has(o, g, "initial_lr")) {
                bx__error(BX_ERR_INVALID,
                          "%s: param 'initial_lr' is not specified in param_groups[%d] when resuming an "
                          "optimizer (last_epoch %lld)",
                          vt->type, g, (long long)last_epoch);
                return NULL;
            }
    bx_scheduler *s = bx__calloc(size);
    if (!s) return NULL;
    s->vt = vt;
    s->opt = o;
    if (bx__sched_reserve(s, ng) != BX_OK) {
        sched_release(s);
        return NULL;
    }
    return s;
}

bx_scheduler *bx__sched_start(bx_scheduler *s, int64_t last_epoch) {
    bx_optimizer *o = s->opt;
    int ng = bx_optimizer_num_groups(o);
    bx_status st = BX_OK;
    s->base_lrs = bx__malloc((size_t)ng * sizeof *s->base_lrs);
    if (!s->base_lrs) goto fail;
    if (last_epoch == -1)
        for (int g = 0; g < ng && st == BX_OK; g++)
            if (!bx_optimizer_group_has(o, g, "initial_lr"))
                st = bx_optimizer_group_set(o, g, "initial_lr", bx_optimizer_get_lr(o, g));
    if (st) goto fail;
    for (int g = 0; g < ng; g++) bx_optimizer_group_get(o, g, "initial_lr", &s->base_lrs[g]);
    s->nbase = ng;
    s->last_epoch = last_epoch;
    s->step_count = 0;
    if (bx_scheduler_step(s) != BX_OK) goto fail;
    return s;
fail:
    sched_release(s);
    return NULL;
}

/* torch's _LRScheduler.step() without an epoch argument. */
static bx_status lr_step(bx_scheduler *s) {
    int ng = bx_optimizer_num_groups(s->opt);
    bx_status st = bx__sched_reserve(s, ng);
    if (st) return st;
    int64_t e0 = s->last_epoch, c0 = s->step_count;
    s->step_count++;
    s->last_epoch++;
    int n = 0;
    st = s->vt->get_lr(s, &n);
    if (st) {
        s->last_epoch = e0;
        s->step_count = c0;
        return st;
    }
    for (int g = 0; g < n && g < ng; g++) bx_optimizer_set_lr(s->opt, g, s->values[g]);
    bx__sched_record_last_lr(s);
    return BX_OK;
}

const char *bx_scheduler_type(const bx_scheduler *s) { return s ? s->vt->type : ""; }
bx_optimizer *bx_scheduler_optimizer(const bx_scheduler *s) { return s ? s->opt : NULL; }
bool bx_scheduler_needs_metric(const bx_scheduler *s) { return s && s->vt->metric; }
int64_t bx_scheduler_last_epoch(const bx_scheduler *s) { return s ? s->last_epoch : 0; }

bx_status bx_scheduler_step(bx_scheduler *s) {
    if (!s) return bx__error(BX_ERR_INVALID, "scheduler step: NULL scheduler");
    if (s->vt->metric)
        return bx__error(BX_ERR_INVALID, "%s: step needs the monitored metric: use bx_scheduler_step_metric",
                         s->vt->type);
    if (s->vt->step) return s->vt->step(s, NAN);
    return lr_step(s);
}

bx_status bx_scheduler_step_metric(bx_scheduler *s, double metric) {
    if (!s) return bx__error(BX_ERR_INVALID, "scheduler step: NULL scheduler");
    if (!s->vt->metric)
        return bx__error(BX_ERR_INVALID, "%s: step takes no metric (only ReduceLROnPlateau does): use bx_scheduler_step",
                         s->vt->type);
    return s->vt->step(s, metric);
}

double bx_scheduler_last_lr(const bx_scheduler *s, int g) {
    if (!s || g < 0) return NAN;
    if (!s->has_last_lr) return bx_optimizer_get_lr(s->opt, g);
    return g < s->nlast ? s->last_lr[g] : NAN;
}

int bx_scheduler_num_last_lr(const bx_scheduler *s) {
    if (!s) return 0;
    return s->has_last_lr ? s->nlast : bx_optimizer_num_groups(s->opt);
}

/* ---- state dicts -------------------------------------------------------------------- */

bx_status bx__state_set_num0(bx_state *d, const char *key, double v) {
    return v == 0.0 ? bx_state_set_int(d, key, 0) : bx_state_set_float(d, key, v);
}

bx_status bx__state_set_doubles(bx_state *d, const char *key, const double *v, int n, bool int_zero) {
    bx_state *l = bx_state_list();
    if (!l) return BX_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        bx_state *x = (int_zero && v[i] == 0.0) ? bx_state_int(0) : bx_state_float(v[i]);
        bx_status st = bx_state_append(l, x);
        if (st) {
            bx_state_free(l);
            return st;
        }
    }
    return bx_state_set(d, key, l);
}

bx_status bx__state_get_doubles(const bx_state *d, const char *key, double **out, int *n) {
    *out = NULL;
    *n = 0;
    const bx_state *l = bx_state_get(d, key);
    if (!l) return bx__error(BX_ERR_FORMAT, "key '%s' missing", key);
    if (bx_state_typeof(l) != BX_STATE_LIST)
        return bx__error(BX_ERR_FORMAT, "'%s' is %s, expected a list of numbers", key,
                         bx__state_type_desc(bx_state_typeof(l)));
    size_t len = bx_state_len(l);
    double *v = bx__malloc((len ? len : 1) * sizeof *v);
    if (!v) return BX_ERR_NOMEM;
    for (size_t i = 0; i < len; i++) {
        const bx_state *x = bx_state_at(l, i);
        if (bx_state_typeof(x) != BX_STATE_FLOAT && bx_state_typeof(x) != BX_STATE_INT) {
            bx__free(v);
            return bx__error(BX_ERR_FORMAT, "'%s'[%zu] is %s, expected a number", key, i,
                             bx__state_type_desc(bx_state_typeof(x)));
        }
        v[i] = bx_state_get_float(x);
    }
    *out = v;
    *n = (int)len;
    return BX_OK;
}

#define TRY(x)                            \
    do {                                  \
        if ((st = (x)) != BX_OK) goto fail; \
    } while (0)

bx_state *bx_scheduler_state_dict(const bx_scheduler *s) {
    if (!s) {
        bx__error(BX_ERR_INVALID, "scheduler state_dict: NULL scheduler");
        return NULL;
    }
    bx_status st = BX_OK;
    bx_state *d = bx_state_dict();
    if (!d) return NULL;
    if (s->vt->save_pre) TRY(s->vt->save_pre(s, d));
    if (s->vt->lr_common) {
        TRY(bx__state_set_doubles(d, "base_lrs", s->base_lrs, s->nbase, false));
        TRY(bx_state_set_int(d, "last_epoch", s->last_epoch));
        TRY(bx_state_set_bool(d, "verbose", false));
        TRY(bx_state_set_int(d, "_step_count", s->step_count));
        TRY(bx_state_set_bool(d, "_get_lr_called_within_step", false));
        if (s->has_last_lr) TRY(bx__state_set_doubles(d, "_last_lr", s->last_lr, s->nlast, false));
    }
    if (s->vt->save_post) TRY(s->vt->save_post(s, d));
    return d;
fail:
    bx_state_free(d);
    if (st == BX_ERR_NOMEM) bx__error(BX_ERR_NOMEM, "%s state_dict: out of memory", s->vt->type);
    return NULL;
}

bx_status bx_scheduler_load_state_dict(bx_scheduler *s, const bx_state *sd) {
    if (!s) return bx__error(BX_ERR_INVALID, "scheduler load_state_dict: NULL scheduler");
    const char *T = s->vt->type;
    if (bx_state_typeof(sd) != BX_STATE_DICT || !sd)
        return bx__error(BX_ERR_FORMAT, "%s load_state_dict: the state is %s, expected a dict", T,
                         sd ? bx__state_type_desc(bx_state_typeof(sd)) : "missing");
    bx_status st = s->vt->load(s, sd, false);
    if (st) {
        bx__error_prefix("%s load_state_dict", T);
        return st == BX_ERR_NOT_FOUND ? BX_ERR_FORMAT : st; /* a missing key: malformed state */
    }
    double *base = NULL, *last = NULL;
    int nbase = 0, nlast = 0;
    int64_t last_epoch = 0, step_count = 0;
    bool has_last = false;
    if (s->vt->lr_common) {
        if ((st = bx__state_get_doubles(sd, "base_lrs", &base, &nbase)) ||
            (st = bx_state_need_int(sd, "last_epoch", &last_epoch)) ||
            (st = bx_state_need_int(sd, "_step_count", &step_count)))
            goto fail;
        if (bx_state_get(sd, "_last_lr")) {
            if ((st = bx__state_get_doubles(sd, "_last_lr", &last, &nlast))) goto fail;
            has_last = true;
        }
        if (nlast > s->cap && (st = bx__sched_reserve(s, nlast))) goto fail;
    }
    if ((st = s->vt->load(s, sd, true))) goto fail;
    if (s->vt->lr_common) {
        bx__free(s->base_lrs);
        s->base_lrs = base;
        s->nbase = nbase;
        base = NULL;
        s->last_epoch = last_epoch;
        s->step_count = step_count;
        if (has_last) {
            memcpy(s->last_lr, last, (size_t)nlast * sizeof *last);
            s->nlast = nlast;
            s->has_last_lr = true;
        }
    }
    bx__free(last);
    return BX_OK;
fail:
    bx__free(base);
    bx__free(last);
    bx__error_prefix("%s load_state_dict", T);
    return st == BX_ERR_NOT_FOUND ? BX_ERR_FORMAT : st;
}

/* ---- StepLR ------------------------------------------------------------------------ */

typedef struct step_lr {
    bx_scheduler base;
    int64_t step_size;
    double gamma;
} step_lr;

static bx_status step_lr_get(bx_scheduler *s, int *n) {
    const step_lr *k = (const step_lr *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    bool keep = s->last_epoch == 0 || bx__pymod(s->last_epoch, k->step_size) != 0;
    for (int g = 0; g < ng; g++) {
        double lr = bx_optimizer_get_lr(s->opt, g);
        s->values[g] = keep ? lr : lr * k->gamma;
    }
    *n = ng;
    return BX_OK;
}

static bx_status step_lr_save(const bx_scheduler *s, bx_state *d) {
    const step_lr *k = (const step_lr *)s;
    bx_status st = bx_state_set_int(d, "step_size", k->step_size);
    return st ? st : bx_state_set_float(d, "gamma", k->gamma);
}

static bx_status step_lr_load(bx_scheduler *s, const bx_state *d, bool apply) {
    step_lr *k = (step_lr *)s;
    int64_t step_size;
    double gamma;
    bx_status st;
    if ((st = bx_state_need_int(d, "step_size", &step_size)) || (st = bx_state_need_float(d, "gamma", &gamma)))
        return st;
    if (step_size < 1) return bx__error(BX_ERR_INVALID, "step_size %lld must be > 0", (long long)step_size);
    if (apply) {
        k->step_size = step_size;
        k->gamma = gamma;
    }
    return BX_OK;
}

static const bx__sched_vt step_lr_vt = {
    .type = "StepLR", .get_lr = step_lr_get, .save_pre = step_lr_save, .load = step_lr_load, .lr_common = true,
};

bx_scheduler *bx_step_lr_new(bx_optimizer *o, const bx_step_lr_opts *opts) {
    bx_step_lr_opts dflt = BX_STEP_LR_OPTS_INIT;
    if (!opts) opts = &dflt;
    if (opts->step_size < 1) {
        bx__error(BX_ERR_INVALID, "StepLR: step_size is required and must be > 0 (got %lld)",
                  (long long)opts->step_size);
        return NULL;
    }
    step_lr *k = (step_lr *)bx__sched_alloc(sizeof *k, &step_lr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    k->step_size = opts->step_size;
    k->gamma = opts->gamma;
    return bx__sched_start(&k->base, opts->last_epoch);
}

/* ---- MultiStepLR -------------------------------------------------------------------- */

/* milestones is torch's Counter: distinct epochs in first-seen order with
 * their multiplicity. */
typedef struct multistep_lr {
    bx_scheduler base;
    int64_t *ms;
    int64_t *count;
    int n;
    double gamma;
} multistep_lr;

static bx_status multistep_get(bx_scheduler *s, int *n) {
    const multistep_lr *k = (const multistep_lr *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    int64_t c = 0;
    for (int i = 0; i < k->n; i++)
        if (k->ms[i] == s->last_epoch) c = k->count[i];
    double f = c ? pow(k->gamma, (double)c) : 1.0;
    for (int g = 0; g < ng; g++) {
        double lr = bx_optimizer_get_lr(s->opt, g);
        s->values[g] = c ? lr * f : lr;
    }
    *n = ng;
    return BX_OK;
}

static bx_status multistep_save(const bx_scheduler *s, bx_state *d) {
    const multistep_lr *k = (const multistep_lr *)s;
    bx_state *m = bx_state_dict();
    if (!m) return BX_ERR_NOMEM;
    for (int i = 0; i < k->n; i++) {
        char key[24];
        snprintf(key, sizeof key, "%lld", (long long)k->ms[i]);
        bx_status st = bx_state_set_int(m, key, k->count[i]);
        if (st) {
            bx_state_free(m);
            return st;
        }
    }
    bx_status st = bx_state_set(d, "milestones", m);
    return st ? st : bx_state_set_float(d, "gamma", k->gamma);
}

static bx_status multistep_load(bx_scheduler *s, const bx_state *d, bool apply) {
    multistep_lr *k = (multistep_lr *)s;
    const bx_state *m = bx_state_get(d, "milestones");
    double gamma;
    bx_status st;
    if (!m) return bx__error(BX_ERR_FORMAT, "key 'milestones' missing");
    if (bx_state_typeof(m) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "'milestones' is %s, expected a dict {epoch: count}",
                         bx__state_type_desc(bx_state_typeof(m)));
    if ((st = bx_state_need_float(d, "gamma", &gamma))) return st;
    size_t n = bx_state_len(m);
    for (size_t i = 0; i < n; i++) {
        const char *key = bx_state_key_at(m, i);
        char *end = NULL;
        strtoll(key, &end, 10);
        if (!end || end == key || *end) return bx__error(BX_ERR_FORMAT, "milestone '%s' is not an integer", key);
        int64_t c;
        if ((st = bx_state_need_int(m, key, &c))) return st;
        if (c < 1) return bx__error(BX_ERR_INVALID, "milestone '%s' has count %lld (>= 1)", key, (long long)c);
    }
    if (!apply) return BX_OK;
    int64_t *ms = bx__malloc((n ? n : 1) * sizeof *ms), *count = bx__malloc((n ? n : 1) * sizeof *count);
    if (!ms || !count) {
        bx__free(ms);
        bx__free(count);
        return BX_ERR_NOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        ms[i] = strtoll(bx_state_key_at(m, i), NULL, 10);
        count[i] = bx_state_get_int(bx_state_value_at(m, i));
    }
    bx__free(k->ms);
    bx__free(k->count);
    k->ms = ms;
    k->count = count;
    k->n = (int)n;
    k->gamma = gamma;
    return BX_OK;
}

static void multistep_release(bx_scheduler *s) {
    multistep_lr *k = (multistep_lr *)s;
    bx__free(k->ms);
    bx__free(k->count);
}

static const bx__sched_vt multistep_lr_vt = {
    .type = "MultiStepLR", .get_lr = multistep_get, .save_pre = multistep_save, .load = multistep_load,
    .release = multistep_release, .lr_common = true,
};

bx_scheduler *bx_multistep_lr_new(bx_optimizer *o, const bx_multistep_lr_opts *opts) {
    if (!opts || !opts->milestones || opts->n_milestones < 1) {
        bx__error(BX_ERR_INVALID, "MultiStepLR: milestones are required");
        return NULL;
    }
    multistep_lr *k = (multistep_lr *)bx__sched_alloc(sizeof *k, &multistep_lr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    k->ms = bx__malloc((size_t)opts->n_milestones * sizeof *k->ms);
    k->count = bx__malloc((size_t)opts->n_milestones * sizeof *k->count);
    if (!k->ms || !k->count) {
        bx_scheduler_free(&k->base);
        return NULL;
    }
    for (int i = 0; i < opts->n_milestones; i++) {
        int64_t m = opts->milestones[i];
        int j = 0;
        while (j < k->n && k->ms[j] != m) j++;
        if (j == k->n) {
            k->ms[k->n] = m;
            k->count[k->n++] = 0;
        }
        k->count[j]++;
    }
    k->gamma = opts->gamma;
    return bx__sched_start(&k->base, opts->last_epoch);
}

/* ---- ExponentialLR -------------------------------------------------------------------- */

typedef struct exponential_lr {
    bx_scheduler base;
    double gamma;
} exponential_lr;

static bx_status exponential_get(bx_scheduler *s, int *n) {
    const exponential_lr *k = (const exponential_lr *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    for (int g = 0; g < ng; g++) {
        double lr = bx_optimizer_get_lr(s->opt, g);
        s->values[g] = s->last_epoch == 0 ? lr : lr * k->gamma;
    }
    *n = ng;
    return BX_OK;
}

static bx_status exponential_save(const bx_scheduler *s, bx_state *d) {
    return bx_state_set_float(d, "gamma", ((const exponential_lr *)s)->gamma);
}

static bx_status exponential_load(bx_scheduler *s, const bx_state *d, bool apply) {
    double gamma;
    bx_status st = bx_state_need_float(d, "gamma", &gamma);
    if (st == BX_OK && apply) ((exponential_lr *)s)->gamma = gamma;
    return st;
}

static const bx__sched_vt exponential_lr_vt = {
    .type = "ExponentialLR", .get_lr = exponential_get, .save_pre = exponential_save, .load = exponential_load,
    .lr_common = true,
};

bx_scheduler *bx_exponential_lr_new(bx_optimizer *o, const bx_exponential_lr_opts *opts) {
    if (!opts || isnan(opts->gamma)) {
        bx__error(BX_ERR_INVALID, "ExponentialLR: gamma is required");
        return NULL;
    }
    exponential_lr *k = (exponential_lr *)bx__sched_alloc(sizeof *k, &exponential_lr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    k->gamma = opts->gamma;
    return bx__sched_start(&k->base, opts->last_epoch);
}

/* ---- LinearLR ------------------------------------------------------------------------ */

typedef struct linear_lr {
    bx_scheduler base;
    double start, end;
    int64_t total_iters;
} linear_lr;

static bx_status linear_get(bx_scheduler *s, int *n) {
    const linear_lr *k = (const linear_lr *)s;
    int ng = bx_optimizer_num_groups(s->opt);
    int64_t e = s->last_epoch;
    for (int g = 0; g < ng; g++) {
        double lr = bx_optimizer_get_lr(s->opt, g);
        if (e == 0) s->values[g] = lr * k->start;
        else if (e > k->total_iters) s->values[g] = lr;
        else
            s->values[g] = lr * (1.0 + (k->end - k->start) /
                                           ((double)k->total_iters * k->start + (double)(e - 1) * (k->end - k->start)));
    }
    *n = ng;
    return BX_OK;
}

static bx_status linear_save(const bx_scheduler *s, bx_state *d) {
    const linear_lr *k = (const linear_lr *)s;
    bx_status st = bx_state_set_float(d, "start_factor", k->start);
    if (!st) st = bx_state_set_float(d, "end_factor", k->end);
    if (!st) st = bx_state_set_int(d, "total_iters", k->total_iters);
    return st;
}

static bx_status linear_check(const char *what, double start, double end, int64_t total) {
    if (!(start > 0.0 && start <= 1.0))
        return bx__error(BX_ERR_INVALID, "%s: start_factor %g must be in (0, 1]", what, start);
    if (!(end >= 0.0 && end <= 1.0))
        return bx__error(BX_ERR_INVALID, "%s: end_factor %g must be in [0, 1]", what, end);
    if (total < 0) return bx__error(BX_ERR_INVALID, "%s: total_iters %lld must be >= 0", what, (long long)total);
    return BX_OK;
}

static bx_status linear_load(bx_scheduler *s, const bx_state *d, bool apply) {
    linear_lr *k = (linear_lr *)s;
    double start, end;
    int64_t total;
    bx_status st;
    if ((st = bx_state_need_float(d, "start_factor", &start)) || (st = bx_state_need_float(d, "end_factor", &end)) ||
        (st = bx_state_need_int(d, "total_iters", &total)) || (st = linear_check("LinearLR", start, end, total)))
        return st;
    if (apply) {
        k->start = start;
        k->end = end;
        k->total_iters = total;
    }
    return BX_OK;
}

static const bx__sched_vt linear_lr_vt = {
    .type = "LinearLR", .get_lr = linear_get, .save_pre = linear_save, .load = linear_load, .lr_common = true,
};

bx_scheduler *bx_linear_lr_new(bx_optimizer *o, const bx_linear_lr_opts *opts) {
    bx_linear_lr_opts dflt = BX_LINEAR_LR_OPTS_INIT;
    if (!opts) opts = &dflt;
    if (linear_check("LinearLR", opts->start_factor, opts->end_factor, opts->total_iters)) return NULL;
    linear_lr *k = (linear_lr *)bx__sched_alloc(sizeof *k, &linear_lr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    k->start = opts->start_factor;
    k->end = opts->end_factor;
    k->total_iters = opts->total_iters;
    return bx__sched_start(&k->base, opts->last_epoch);
}

/* ---- LambdaLR ------------------------------------------------------------------------ */

typedef struct lambda_lr {
    bx_scheduler base;
    bx_lr_lambda *fns;
    int n;
} lambda_lr;

static bx_status lambda_get(bx_scheduler *s, int *n) {
    const lambda_lr *k = (const lambda_lr *)s;
    int m = k->n < s->nbase ? k->n : s->nbase;
    for (int g = 0; g < m; g++) s->values[g] = s->base_lrs[g] * k->fns[g].fn(k->fns[g].ud, s->last_epoch);
    *n = m;
    return BX_OK;
}

static bx_status lambda_save(const bx_scheduler *s, bx_state *d) {
    const lambda_lr *k = (const lambda_lr *)s;
    bx_state *l = bx_state_list();
    if (!l) return BX_ERR_NOMEM;
    for (int i = 0; i < k->n; i++) {
        bx_status st = bx_state_append(l, bx_state_null());
        if (st) {
            bx_state_free(l);
            return st;
        }
    }
    return bx_state_set(d, "lr_lambdas", l);
}

static bx_status lambda_load(bx_scheduler *s, const bx_state *d, bool apply) {
    (void)s;
    (void)d;
    (void)apply;
    return BX_OK; /* the functions are code: nothing to restore */
}

static void lambda_release(bx_scheduler *s) { bx__free(((lambda_lr *)s)->fns); }

static const bx__sched_vt lambda_lr_vt = {
    .type = "LambdaLR", .get_lr = lambda_get, .save_post = lambda_save, .load = lambda_load,
    .release = lambda_release, .lr_common = true,
};

bx_scheduler *bx_lambda_lr_new(bx_optimizer *o, const bx_lambda_lr_opts *opts) {
    if (!opts || (!opts->per_group && !opts->lambda.fn)) {
        bx__error(BX_ERR_INVALID, "LambdaLR: lr_lambda is required");
        return NULL;
    }
    int ng = bx_optimizer_num_groups(o);
    if (opts->per_group) {
        if (opts->n_per_group != ng) {
            bx__error(BX_ERR_INVALID, "LambdaLR: expected %d lr_lambdas, but got %d", ng, opts->n_per_group);
            return NULL;
        }
        for (int i = 0; i < ng; i++)
            if (!opts->per_group[i].fn) {
                bx__error(BX_ERR_INVALID, "LambdaLR: lr_lambda %d is NULL", i);
                return NULL;
            }
    }
    lambda_lr *k = (lambda_lr *)bx__sched_alloc(sizeof *k, &lambda_lr_vt, o, opts->last_epoch);
    if (!k) return NULL;
    k->fns = bx__malloc((size_t)ng * sizeof *k->fns);
    if (!k->fns) {
        bx_scheduler_free(&k->base);
        return NULL;
    }
    for (int i = 0; i < ng; i++) k->fns[i] = opts->per_group ? opts->per_group[i] : opts->lambda;
    k->n = ng;
    return bx__sched_start(&k->base, opts->last_epoch);
}
