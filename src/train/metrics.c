/* metrics.c - self.log(): result collections, the three metric dicts and the
 * records sent to loggers, with Lightning 1.9.5's semantics:
 *  - defaults per hook: on_step in training_step and the train batch /
 *    optimization hooks, on_epoch everywhere else;
 *  - with both on_step and on_epoch a metric forks into name_step/name_epoch;
 *  - epoch values are batch-size-weighted means (or sum/max/min), in float32;
 *  - callback_metrics of an evaluation loop only carry epoch values; the
 *    training loop's carry step values during the epoch;
 *  - step records reach loggers only at (batches_that_stepped+1) %
 *    log_every_n_steps == 0 (or should_stop), epoch records carry "epoch". */
#include "train/train_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- ordered dicts ----------------------------------------------------------- */
void bx__mdict_clear(bx__mdict *d) {
    for (int i = 0; i < d->n; i++) bx__free(d->names[i]);
    d->n = 0;
}

void bx__mdict_free(bx__mdict *d) {
    bx__mdict_clear(d);
    bx__free(d->names);
    bx__free(d->vals);
    memset(d, 0, sizeof *d);
}

static int mdict_find(const bx__mdict *d, const char *name) {
    for (int i = 0; i < d->n; i++)
        if (strcmp(d->names[i], name) == 0) return i;
    return -1;
}

bx_status bx__mdict_set(bx__mdict *d, const char *name, double v) {
    int i = mdict_find(d, name);
    if (i >= 0) {
        d->vals[i] = v;
        return BX_OK;
    }
    if (d->n == d->cap) {
        int cap = d->cap ? d->cap * 2 : 8;
        char **nn = bx__realloc(d->names, (size_t)cap * sizeof *nn);
        if (!nn) return BX_ERR_NOMEM;
        d->names = nn;
        double *nv = bx__realloc(d->vals, (size_t)cap * sizeof *nv);
        if (!nv) return BX_ERR_NOMEM;
        d->vals = nv;
        d->cap = cap;
    }
    char *s = bx__strdup(name);
    if (!s) return BX_ERR_NOMEM;
    d->names[d->n] = s;
    d->vals[d->n] = v;
    d->n++;
    return BX_OK;
}

/* ---- results -------------------------------------------------------------------- */
void bx__results_free(bx__results *r) {
    for (int i = 0; i < r->n; i++) {
        bx__free(r->m[i].fx);
        bx__free(r->m[i].name);
    }
    bx__free(r->m);
    r->m = NULL;
    r->n = r->cap = 0;
}

void bx__results_reset(bx__results *r) {
    for (int i = 0; i < r->n; i++) {
        bx__metric *m = &r->m[i];
        m->valid = false;
        m->has_cache = false;
        m->has_value = false;
        m->value = 0.0f;
        m->cum_bs = 0.0f;
    }
}

bx__results *bx__active_results(const bx_trainer *tr) {
    bx_trainer *t = (bx_trainer *)tr;
    switch (tr->active) {
    case BX__LOOP_TRAIN: return &t->train_res;
    case BX__LOOP_VAL:
    case BX__LOOP_TEST: return &t->val_res;
    default: return NULL;
    }
}

/* The value metrics(on_step) gives for m, false when none. */
static bool metric_value(const bx__metric *m, bool on_step, double *out) {
    if (!m->valid) return false;
    if (on_step && m->on_step) {
        if (!m->has_cache) return false;
        *out = (double)m->cache;
        return true;
    }
    if (!on_step && m->on_epoch) {
        if (!m->has_value) return false;
        if (m->reduce == 0)
            *out = (double)(m->value / m->cum_bs);
        else
            *out = (double)m->value;
        return true;
    }
    return false;
}

static void forked_name(const bx__metric *m, bool on_step, char *buf, size_t n) {
    if (m->on_step && m->on_epoch)
        snprintf(buf, n, "%s%s", m->name, on_step ? "_step" : "_epoch");
    else
        snprintf(buf, n, "%s", m->name);
}

/* The record being sent to loggers, built without allocating once its keys
 * have been seen: names point into tr->row_keys (kept for the trainer's life). */
static bx_status row_add(bx_trainer *tr, const char *name, double v) {
    int i = mdict_find(&tr->row_keys, name);
    if (i < 0) {
        BX__TRY(bx__mdict_set(&tr->row_keys, name, 0.0));
        i = tr->row_keys.n - 1;
    }
    if (tr->row_cap < tr->row_keys.n) {
        int cap = tr->row_keys.cap;
        const char **nn = bx__realloc(tr->row_names, (size_t)cap * sizeof *nn);
        if (!nn) return BX_ERR_NOMEM;
        tr->row_names = nn;
        double *nv = bx__realloc(tr->row_vals, (size_t)cap * sizeof *nv);
        if (!nv) return BX_ERR_NOMEM;
        tr->row_vals = nv;
        tr->row_cap = cap;
    }
    const char *key = tr->row_keys.names[i];
    for (int j = 0; j < tr->row_n; j++)
        if (tr->row_names[j] == key) {
            tr->row_vals[j] = v;
            return BX_OK;
        }
    tr->row_names[tr->row_n] = key;
    tr->row_vals[tr->row_n++] = v;
    return BX_OK;
}

/* Lightning's _ResultCollection.metrics(on_step), merged straight into the
 * given dicts (any may be NULL); with `row`, the "log" part also goes to the
 * logger record. No allocation once every key exists. */
static bx_status results_metrics(bx_trainer *tr, const bx__results *r, bool on_step, bx__mdict *log, bx__mdict *cb,
                                 bx__mdict *pbar, bool row) {
    char fk[256];
    for (int i = 0; i < r->n; i++) {
        const bx__metric *m = &r->m[i];
        double v;
        if (!metric_value(m, on_step, &v)) continue;
        forked_name(m, on_step, fk, sizeof fk);
        if (m->logger) {
            if (log) BX__TRY(bx__mdict_set(log, fk, v));
            if (row) BX__TRY(row_add(tr, fk, v));
        }
        if (cb && (r->training || (m->on_epoch && !on_step))) {
            BX__TRY(bx__mdict_set(cb, m->name, v));
            BX__TRY(bx__mdict_set(cb, fk, v));
        }
        if (pbar && m->prog_bar) BX__TRY(bx__mdict_set(pbar, fk, v));
    }
    return BX_OK;
}

bx_status bx__metrics_update_dicts(bx_trainer *tr) {
    bx__results *r = bx__active_results(tr);
    if (!r) return BX_OK;
    return results_metrics(tr, r, !tr->epoch_end_reached, &tr->logged_metrics, &tr->cb_metrics, &tr->pbar_metrics,
                           false);
}

void bx__metrics_refresh_callback(const bx_trainer *tr) {
    bx_trainer *t = (bx_trainer *)tr;
    bx__results *r = bx__active_results(tr);
    if (!r) return;
    (void)results_metrics(t, r, !tr->epoch_end_reached, NULL, &t->cb_metrics, &t->pbar_metrics, false);
}

bx_status bx__metrics_log_to_loggers(bx_trainer *tr, int64_t step) {
    bx__results *r = bx__active_results(tr);
    if (!r || tr->nlog == 0) return BX_OK;
    tr->row_n = 0;
    BX__TRY(results_metrics(tr, r, !tr->epoch_end_reached, &tr->logged_metrics, NULL, NULL, true));
    if (tr->row_n == 0) return BX_OK;
    for (int j = 0; j < tr->row_n; j++)
        if (strcmp(tr->row_names[j], "step") == 0) {
            if (step < 0) step = (int64_t)tr->row_vals[j];
            memmove(tr->row_names + j, tr->row_names + j + 1, (size_t)(tr->row_n - j - 1) * sizeof *tr->row_names);
            memmove(tr->row_vals + j, tr->row_vals + j + 1, (size_t)(tr->row_n - j - 1) * sizeof *tr->row_vals);
            tr->row_n--;
            break;
        }
    if (step < 0) {
        bool has_epoch = false;
        for (int j = 0; j < tr->row_n; j++) has_epoch |= strcmp(tr->row_names[j], "epoch") == 0;
        if (!has_epoch) BX__TRY(row_add(tr, "epoch", (double)tr->epochs_completed));
        step = tr->batches_that_stepped;
    }
    for (int i = 0; i < tr->nlog; i++) {
        BX__TRY(bx_logger_log_metrics(tr->loggers[i], tr->row_names, tr->row_vals, tr->row_n, step));
        BX__TRY(bx_logger_save(tr->loggers[i]));
    }
    return BX_OK;
}

/* ---- self.log ------------------------------------------------------------------- */
static bool in_list(const char *fx, const char *const *list) {
    for (; *list; list++)
        if (strcmp(fx, *list) == 0) return true;
    return false;
}

static const char *const STEP_HOOKS[] = {
    "training_step", "on_train_batch_start", "on_train_batch_end", "on_before_backward",
    "on_after_backward", "on_before_optimizer_step", "on_before_zero_grad", "optimizer_step",
    "optimizer_zero_grad", "backward", "configure_gradient_clipping", "lr_scheduler_step", NULL};
static const char *const FORBIDDEN_HOOKS[] = {
    "setup", "teardown", "on_fit_start", "on_fit_end", "on_sanity_check_start", "on_sanity_check_end",
    "on_train_end", "on_validation_end", "on_test_end", "on_predict_start", "on_predict_end",
    "on_predict_epoch_start", "on_predict_epoch_end", "on_predict_batch_start", "on_predict_batch_end",
    "predict_step", "on_save_checkpoint", "on_load_checkpoint", "state_dict", "load_state_dict",
    "on_exception", "configure_optimizers", "prepare_data", "configure_callbacks", NULL};
static const char *const EPOCH_ONLY_HOOKS[] = {
    "on_train_start", "on_train_epoch_start", "on_train_epoch_end", "on_validation_start",
    "on_validation_epoch_start", "on_validation_epoch_end", "on_test_start", "on_test_epoch_start",
    "on_test_epoch_end", NULL};

bx_status bx_trainer_log_ex(bx_trainer *tr, const char *name, double value, const bx_log_opts *o) {
    if (!tr || !name || !*name) return bx__error(BX_ERR_INVALID, "log: no trainer or empty name");
    const char *fx = tr->cur_fx ? tr->cur_fx : "";
    unsigned f = o ? o->flags : 0;
    if (in_list(fx, FORBIDDEN_HOOKS) || tr->active == BX__LOOP_NONE)
        return bx__error(BX_ERR_STATE, "log('%s'): logging is not allowed in %s", name, *fx ? fx : "this context");
    bool step_hook = in_list(fx, STEP_HOOKS);
    bool on_step = step_hook, on_epoch = !step_hook;
    if (f & BX_LOG_ON_STEP) on_step = true;
    if (f & BX_LOG_NO_STEP) on_step = false;
    if (f & BX_LOG_ON_EPOCH) on_epoch = true;
    if (f & BX_LOG_NO_EPOCH) on_epoch = false;
    if (on_step && in_list(fx, EPOCH_ONLY_HOOKS))
        return bx__error(BX_ERR_INVALID, "log('%s', on_step=True) is not allowed in %s", name, fx);
    if (on_step && tr->active != BX__LOOP_TRAIN && strstr(fx, "epoch_end"))
        return bx__error(BX_ERR_INVALID, "log('%s', on_step=True) is not allowed in %s", name, fx);
    if (!on_step && !on_epoch) return BX_OK; /* Lightning: nothing to log */
    unsigned reduce = f & (BX_LOG_REDUCE_SUM | BX_LOG_REDUCE_MAX | BX_LOG_REDUCE_MIN);
    bool prog_bar = (f & BX_LOG_PROG_BAR) != 0, logger = (f & BX_LOG_NO_LOGGER) == 0;
    double bs = o && o->batch_size > 0 ? o->batch_size : (tr->cur_batch_size > 0 ? tr->cur_batch_size : 1.0);

    bx__results *r = bx__active_results(tr);
    bx__metric *m = NULL;
    for (int i = 0; i < r->n; i++)
        if (strcmp(r->m[i].fx, fx) == 0 && strcmp(r->m[i].name, name) == 0) m = &r->m[i];
    if (m) {
        if (m->on_step != on_step || m->on_epoch != on_epoch || m->reduce != reduce ||
            m->prog_bar != prog_bar || m->logger != logger)
            return bx__error(BX_ERR_INVALID,
                             "log('%s') in %s: called again with different options (on_step, on_epoch, "
                             "reduce, prog_bar or logger)", name, fx);
    } else {
        if (r->n == r->cap) {
            int cap = r->cap ? r->cap * 2 : 8;
            bx__metric *nm = bx__realloc(r->m, (size_t)cap * sizeof *nm);
            if (!nm) return BX_ERR_NOMEM;
            r->m = nm;
            r->cap = cap;
        }
        m = &r->m[r->n];
        memset(m, 0, sizeof *m);
        m->fx = bx__strdup(fx);
        m->name = bx__strdup(name);
        if (!m->fx || !m->name) {
            bx__free(m->fx);
            bx__free(m->name);
            return BX_ERR_NOMEM;
        }
        m->on_step = on_step;
        m->on_epoch = on_epoch;
        m->reduce = reduce;
        m->prog_bar = prog_bar;
        m->logger = logger;
        r->n++;
    }
    float v = (float)value;
    m->valid = true;
    m->cache = v;
    m->has_cache = true;
    if (on_epoch) {
        if (reduce == 0) {
            m->value = m->has_value ? m->value + v * (float)bs : v * (float)bs;
            m->cum_bs = m->has_value ? m->cum_bs + (float)bs : (float)bs;
        } else if (reduce == BX_LOG_REDUCE_SUM) {
            m->value = m->has_value ? m->value + v : v;
        } else if (reduce == BX_LOG_REDUCE_MAX) {
            m->value = m->has_value ? fmaxf(m->value, v) : v;
        } else {
            m->value = m->has_value ? fminf(m->value, v) : v;
        }
        m->has_value = true;
    }
    return BX_OK;
}

bx_status bx_trainer_log(bx_trainer *tr, const char *name, double value, unsigned flags) {
    bx_log_opts o = {flags, 0.0};
    return bx_trainer_log_ex(tr, name, value, &o);
}

bx_status bx_log_metric(bx_step *st, const char *name, const bx_tensor *value, unsigned flags) {
    bx_trainer *tr = bx_step_trainer(st);
    if (!tr) return bx__error(BX_ERR_STATE, "log('%s'): the step is not run by a Trainer", name ? name : "");
    if (!value || bx_is_poison(value)) return bx__error(BX_ERR_INVALID, "log('%s'): no value", name ? name : "");
    if (bx_numel(value) != 1)
        return bx__error(BX_ERR_SHAPE, "log('%s'): value has %lld elements, expected one", name ? name : "",
                         (long long)bx_numel(value));
    return bx_trainer_log(tr, name, bx_get(value, 0), flags);
}

/* ---- metric dict accessors -------------------------------------------------------- */
static const bx__mdict *pick(const bx_trainer *tr, bx_metric_dict which) {
    if (which == BX_CALLBACK_METRICS || which == BX_PROGRESS_BAR_METRICS) {
        /* Lightning's properties: refreshed from the running loop's results */
        bx__metrics_refresh_callback(tr);
        return which == BX_CALLBACK_METRICS ? &tr->cb_metrics : &tr->pbar_metrics;
    }
    return which == BX_LOGGED_METRICS ? &tr->logged_metrics : &tr->pbar_metrics;
}

int bx_trainer_metrics_count(const bx_trainer *tr, bx_metric_dict which) { return pick(tr, which)->n; }

const char *bx_trainer_metric_name(const bx_trainer *tr, bx_metric_dict which, int i) {
    const bx__mdict *d = pick(tr, which);
    return i >= 0 && i < d->n ? d->names[i] : NULL;
}

double bx_trainer_metric_value(const bx_trainer *tr, bx_metric_dict which, int i) {
    const bx__mdict *d = pick(tr, which);
    return i >= 0 && i < d->n ? d->vals[i] : NAN;
}

bx_status bx_trainer_metric(const bx_trainer *tr, const char *name, double *out) {
    const bx__mdict *d = pick(tr, BX_CALLBACK_METRICS);
    int i = mdict_find(d, name);
    if (i >= 0) {
        *out = d->vals[i];
        return BX_OK;
    }
    char buf[512];
    size_t k = 0;
    buf[0] = '\0';
    for (int j = 0; j < d->n && k + 4 < sizeof buf; j++)
        k += (size_t)snprintf(buf + k, sizeof buf - k, "%s'%s'", j ? ", " : "", d->names[j]);
    return bx__error(BX_ERR_NOT_FOUND, "metric '%s' not in callback_metrics (available: %s)", name,
                     d->n ? buf : "none");
}
