/* early_stopping.c - EarlyStopping (spec/callbacks.md §1, Lightning 1.9.5).
 *
 * Written only against the public callback and Trainer API. At each check
 * (validation end, or train-epoch end when check_on_train_epoch_end) the
 * monitored callback metric goes through, first match wins:
 *   non-finite (check_finite) -> stop; better than stopping_threshold ->
 *   stop; worse than divergence_threshold -> stop; current - min_delta
 *   better than best -> best = current, wait = 0; else wait += 1 and stop
 *   once wait >= patience.
 * Comparisons are strict and done in float32 like Lightning's tensors
 * (metrics are float32 values). Stopping sets trainer.should_stop (OR) and
 * stopped_epoch = current_epoch; the Trainer decides when the run really
 * ends (min_epochs / min_steps). */
#include "blixt/callbacks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct es {
    char *monitor, *mode;
    float min_delta;   /* signed: +|d| for max, -d for min (Lightning: min_delta *= 1 or -1) */
    double min_delta_abs;
    int64_t patience;
    bool verbose, strict, check_finite, max_mode;
    double stopping_threshold, divergence_threshold; /* NAN = None */
    int check_on_train_epoch_end;                      /* -1 until setup */
    int64_t wait_count, stopped_epoch;
    float best_score;
} es;

static bool better(const es *e, float a, float b) { return e->max_mode ? a > b : a < b; }

static void es_key(void *self, char *buf, size_t n) {
    es *e = self;
    snprintf(buf, n, "EarlyStopping{'monitor': '%s', 'mode': '%s'}", e->monitor, e->mode);
}

static bx_status es_setup(void *self, bx_trainer *tr, bx_stage stage) {
    (void)stage;
    es *e = self;
    if (e->check_on_train_epoch_end < 0) {
        bx_limit v = bx_trainer_val_check_interval(tr);
        e->check_on_train_epoch_end = v.value == 1.0 && bx_trainer_check_val_every_n_epoch(tr) == 1;
    }
    return BX_OK;
}

static bool skip_check(const bx_trainer *tr) {
    return bx_trainer_stage(tr) != BX_STAGE_FIT || bx_trainer_sanity_checking(tr);
}

/* "`a`, `b`" list of callback_metrics keys into buf. */
static void metric_keys(const bx_trainer *tr, char *buf, size_t n) {
    size_t k = 0;
    buf[0] = '\0';
    int cnt = bx_trainer_metrics_count(tr, BX_CALLBACK_METRICS);
    for (int i = 0; i < cnt && k < n; i++) {
        int w = snprintf(buf + k, n - k, "%s%s", i ? "`, `" : "", bx_trainer_metric_name(tr, BX_CALLBACK_METRICS, i));
        if (w < 0) break;
        k += (size_t)w;
    }
}

static bx_status run_check(es *e, bx_trainer *tr) {
    if (bx_trainer_fast_dev_run(tr)) return BX_OK;
    double v;
    if (bx_trainer_metric(tr, e->monitor, &v) != BX_OK) {
        char keys[1024];
        metric_keys(tr, keys, sizeof keys);
        bx_clear_error();
        if (e->strict)
            return bx_set_error(BX_ERR_NOT_FOUND,
                             "Early stopping conditioned on metric `%s` which is not available. Pass in or modify "
                             "your `EarlyStopping` callback to use any of the following: `%s`",
                             e->monitor, keys);
        if (e->verbose)
            bx_logf(BX_LOG_WARNING,
                    "Early stopping conditioned on metric `%s` which is not available. Pass in or modify your "
                    "`EarlyStopping` callback to use any of the following: `%s`",
                    e->monitor, keys);
        return BX_OK;
    }
    float cur = (float)v;
    const char *ord = e->max_mode ? ">" : "<";
    bool stop = false;
    char reason[512];
    reason[0] = '\0';
    if (e->check_finite && !isfinite(cur)) {
        stop = true;
        snprintf(reason, sizeof reason,
                 "Monitored metric %s = %g is not finite. Previous best value was %.3f. Signaling Trainer to stop.",
                 e->monitor, (double)cur, (double)e->best_score);
    } else if (!isnan(e->stopping_threshold) && better(e, cur, (float)e->stopping_threshold)) {
        stop = true;
        snprintf(reason, sizeof reason, "Stopping threshold reached: %s = %g %s %g. Signaling Trainer to stop.",
                 e->monitor, (double)cur, ord, e->stopping_threshold);
    } else if (!isnan(e->divergence_threshold) && better(e, -cur, -(float)e->divergence_threshold)) {
        stop = true;
        snprintf(reason, sizeof reason, "Divergence threshold reached: %s = %g %s %g. Signaling Trainer to stop.",
                 e->monitor, (double)cur, ord, e->divergence_threshold);
    } else if (better(e, (float)(cur - e->min_delta), e->best_score)) {
        if (isfinite(e->best_score))
            snprintf(reason, sizeof reason, "Metric %s improved by %.3f >= min_delta = %g. New best score: %.3f",
                     e->monitor, fabs((double)(e->best_score - cur)), e->min_delta_abs, (double)cur);
        else
            snprintf(reason, sizeof reason, "Metric %s improved. New best score: %.3f", e->monitor, (double)cur);
        e->best_score = cur;
        e->wait_count = 0;
    } else {
        e->wait_count += 1;
        if (e->wait_count >= e->patience) {
            stop = true;
            snprintf(reason, sizeof reason,
                     "Monitored metric %s did not improve in the last %lld records. Best score: %.3f. Signaling "
                     "Trainer to stop.",
                     e->monitor, (long long)e->wait_count, (double)e->best_score);
        }
    }
    if (stop) {
        bx_trainer_set_should_stop(tr, true);
        e->stopped_epoch = bx_trainer_current_epoch(tr);
    }
    if (reason[0] && e->verbose) bx_logf(BX_LOG_INFO, "%s", reason);
    return BX_OK;
}

static bx_status es_train_epoch_end(void *self, bx_trainer *tr) {
    es *e = self;
    if (e->check_on_train_epoch_end != 1 || skip_check(tr)) return BX_OK;
    return run_check(e, tr);
}

static bx_status es_val_end(void *self, bx_trainer *tr) {
    es *e = self;
    if (e->check_on_train_epoch_end == 1 || skip_check(tr)) return BX_OK;
    return run_check(e, tr);
}

static bx_status es_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    es *e = self;
    bx_status s = bx_state_set_int(out, "wait_count", e->wait_count);
    if (!s) s = bx_state_set_int(out, "stopped_epoch", e->stopped_epoch);
    if (!s) s = bx_state_set_float(out, "best_score", (double)e->best_score);
    if (!s) s = bx_state_set_int(out, "patience", e->patience);
    return s;
}

/* Restores all four (the checkpoint's patience overrides the new one, as in Lightning). */
static bx_status es_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    es *e = self;
    int64_t w, se, p;
    double b;
    bx_status s = bx_state_need_int(st, "wait_count", &w);
    if (!s) s = bx_state_need_int(st, "stopped_epoch", &se);
    if (!s) s = bx_state_need_float(st, "best_score", &b);
    if (!s) s = bx_state_need_int(st, "patience", &p);
    if (s) {
        bx_error_context("EarlyStopping(monitor='%s'): load_state_dict", e->monitor);
        return s;
    }
    e->wait_count = w;
    e->stopped_epoch = se;
    e->best_score = (float)b;
    e->patience = p;
    return BX_OK;
}

static void es_destroy(void *self) {
    es *e = self;
    if (!e) return;
    bx_free(e->monitor);
    bx_free(e->mode);
    bx_free(e);
}

static const bx_callback_ops ES_OPS = {
    .name = "EarlyStopping",
    .state_key = es_key,
    .setup = es_setup,
    .on_train_epoch_end = es_train_epoch_end,
    .on_validation_end = es_val_end,
    .state_dict = es_state_dict,
    .load_state_dict = es_load_state_dict,
    .destroy = es_destroy,
};

bx_callback *bx_early_stopping_new(const bx_early_stopping_opts *o) {
    bx_early_stopping_opts def = BX_EARLY_STOPPING_OPTS_INIT;
    if (!o) o = &def;
    const char *mode = o->mode ? o->mode : "min";
    if (!o->monitor || !*o->monitor) {
        bx_set_error(BX_ERR_INVALID, "EarlyStopping: `monitor` is required (the callback_metrics key to watch)");
        return NULL;
    }
    if (strcmp(mode, "min") != 0 && strcmp(mode, "max") != 0) {
        bx_set_error(BX_ERR_INVALID, "EarlyStopping(monitor='%s'): `mode` can be min, max, got %s", o->monitor, mode);
        return NULL;
    }
    es *e = bx_calloc(sizeof *e);
    if (!e) return NULL;
    e->monitor = bx_strdup(o->monitor);
    e->mode = bx_strdup(mode);
    if (!e->monitor || !e->mode) {
        es_destroy(e);
        return NULL;
    }
    e->max_mode = strcmp(mode, "max") == 0;
    e->min_delta = (float)(e->max_mode ? o->min_delta : -o->min_delta);
    e->min_delta_abs = fabs(o->min_delta);
    e->patience = o->patience;
    e->verbose = o->verbose;
    e->strict = o->strict;
    e->check_finite = o->check_finite;
    e->stopping_threshold = o->stopping_threshold;
    e->divergence_threshold = o->divergence_threshold;
    e->check_on_train_epoch_end = o->check_on_train_epoch_end < 0 ? -1 : o->check_on_train_epoch_end != 0;
    e->best_score = e->max_mode ? -INFINITY : INFINITY;
    return bx_callback_new(&ES_OPS, e);
}

static es *get(const bx_callback *cb) {
    return cb && bx_callback_get_ops(cb) == &ES_OPS ? bx_callback_self(cb) : NULL;
}

int64_t bx_early_stopping_wait_count(const bx_callback *cb) { return get(cb) ? get(cb)->wait_count : 0; }
int64_t bx_early_stopping_stopped_epoch(const bx_callback *cb) { return get(cb) ? get(cb)->stopped_epoch : 0; }
double bx_early_stopping_best_score(const bx_callback *cb) { return get(cb) ? (double)get(cb)->best_score : NAN; }
int64_t bx_early_stopping_patience(const bx_callback *cb) { return get(cb) ? get(cb)->patience : 0; }
int bx_early_stopping_check_on_train_epoch_end(const bx_callback *cb) {
    return get(cb) ? get(cb)->check_on_train_epoch_end : -1;
}
const char *bx_early_stopping_monitor(const bx_callback *cb) { return get(cb) ? get(cb)->monitor : ""; }
