/* timer.c - Timer (spec/callbacks.md §13, Lightning 1.9.5 callbacks/timer.py).
 *
 * Measures wall time (monotonic clock) per stage between the stage's start and
 * end hooks, and with a duration stops training once the training time
 * reaches it: checked at fit start (a resumed run may already be out of
 * time), then at every train batch end ("step") or train epoch end
 * ("epoch"). Stopping sets trainer.should_stop (OR, never clears it). The
 * state {"time_elapsed": {stage: seconds}} goes into checkpoints; a resumed
 * run continues from the saved training time (the other stages restart). */
#include "blixt/callbacks.h"
#include "blixt/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Lightning's RunningStage values, in its order. */
enum { ST_TRAIN, ST_SANITY, ST_VALIDATE, ST_TEST, ST_PREDICT, ST_TUNE, ST_N };
static const char *const STAGE_KEY[ST_N] = {"train", "sanity_check", "validate", "test", "predict", "tune"};

typedef struct timer {
    double duration;  /* seconds; NAN = None */
    bool per_epoch;   /* interval "epoch" (else "step") */
    bool verbose;
    double start[ST_N], end[ST_N]; /* NAN = not yet */
    double offset;    /* training seconds restored from a checkpoint */
} timer;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double elapsed(const timer *t, int st) {
    double off = st == ST_TRAIN ? t->offset : 0.0;
    if (isnan(t->start[st])) return off;
    if (isnan(t->end[st])) return now_s() - t->start[st] + off;
    return t->end[st] - t->start[st] + off;
}

/* Python's str(timedelta(seconds=int(s))): "1:02:03", "2 days, 0:00:05". */
static void fmt_timedelta(double s, char *out, size_t n) {
    long long v = (long long)s, d = v / 86400, r = v % 86400;
    if (d)
        snprintf(out, n, "%lld day%s, %lld:%02lld:%02lld", d, d == 1 ? "" : "s", r / 3600, r / 60 % 60, r % 60);
    else
        snprintf(out, n, "%lld:%02lld:%02lld", r / 3600, r / 60 % 60, r % 60);
}

static void check_time(timer *t, bx_trainer *tr) {
    if (isnan(t->duration)) return;
    bool stop = elapsed(t, ST_TRAIN) >= t->duration;
    if (!stop) return;
    bx_trainer_set_should_stop(tr, true);
    if (t->verbose) {
        char buf[64];
        fmt_timedelta(elapsed(t, ST_TRAIN), buf, sizeof buf);
        bx_logf(BX_LOG_INFO, "Time limit reached. Elapsed time is %s. Signaling Trainer to stop.", buf);
    }
}

static bx_status tm_mark(timer *t, int st, bool start) {
    (start ? t->start : t->end)[st] = now_s();
    if (start) t->end[st] = NAN;
    return BX_OK;
}
static bx_status tm_train_start(void *s, bx_trainer *tr) { (void)tr; return tm_mark(s, ST_TRAIN, true); }
static bx_status tm_train_end(void *s, bx_trainer *tr) { (void)tr; return tm_mark(s, ST_TRAIN, false); }
static bx_status tm_val_start(void *s, bx_trainer *tr) { (void)tr; return tm_mark(s, ST_VALIDATE, true); }
static bx_status tm_val_end(void *s, bx_trainer *tr) { (void)tr; return tm_mark(s, ST_VALIDATE, false); }
static bx_status tm_test_start(void *s, bx_trainer *tr) { (void)tr; return tm_mark(s, ST_TEST, true); }
static bx_status tm_test_end(void *s, bx_trainer *tr) { (void)tr; return tm_mark(s, ST_TEST, false); }

static bx_status tm_fit_start(void *self, bx_trainer *tr) {
    check_time(self, tr); /* a restored state may already be out of time */
    return BX_OK;
}

static bx_status tm_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)o, (void)b, (void)i;
    timer *t = self;
    if (!t->per_epoch) check_time(t, tr);
    return BX_OK;
}

static bx_status tm_epoch_end(void *self, bx_trainer *tr) {
    timer *t = self;
    if (t->per_epoch) check_time(t, tr);
    return BX_OK;
}

static bx_status tm_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    timer *t = self;
    bx_state *d = bx_state_dict();
    if (!d) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    for (int i = 0; s == BX_OK && i < ST_N; i++) s = bx_state_set_float(d, STAGE_KEY[i], elapsed(t, i));
    if (s != BX_OK) {
        bx_state_free(d);
        return s;
    }
    return bx_state_set(out, "time_elapsed", d);
}

/* Lenient like Lightning's state_dict.get("time_elapsed", {}).get("train", 0). */
static bx_status tm_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    timer *t = self;
    const bx_state *te = bx_state_get(st, "time_elapsed");
    const bx_state *v = te && bx_state_typeof(te) == BX_STATE_DICT ? bx_state_get(te, "train") : NULL;
    if (v && bx_state_typeof(v) != BX_STATE_INT && bx_state_typeof(v) != BX_STATE_FLOAT)
        return bx_set_error(BX_ERR_FORMAT, "Timer: checkpoint state time_elapsed.train is not a number");
    t->offset = v ? bx_state_get_float(v) : 0.0;
    return BX_OK;
}

static const bx_callback_ops TIMER_OPS = {
    .name = "Timer",
    .on_fit_start = tm_fit_start,
    .on_train_start = tm_train_start,
    .on_train_end = tm_train_end,
    .on_validation_start = tm_val_start,
    .on_validation_end = tm_val_end,
    .on_test_start = tm_test_start,
    .on_test_end = tm_test_end,
    .on_train_batch_end = tm_batch_end,
    .on_train_epoch_end = tm_epoch_end,
    .state_dict = tm_state_dict,
    .load_state_dict = tm_load_state_dict,
    .destroy = bx_free,
};

bx_status bx_parse_duration(const char *text, double *seconds) {
    long long f[4];
    int used = 0;
    if (!text || sscanf(text, " %lld:%lld:%lld:%lld %n", &f[0], &f[1], &f[2], &f[3], &used) != 4 ||
        text[used] != '\0')
        return bx_set_error(BX_ERR_INVALID, "duration '%s': expected \"DD:HH:MM:SS\" (e.g. \"00:12:00:00\")",
                            text ? text : "(null)");
    *seconds = (double)f[0] * 86400.0 + (double)f[1] * 3600.0 + (double)f[2] * 60.0 + (double)f[3];
    return BX_OK;
}

bx_callback *bx_timer_new(const bx_timer_opts *o) {
    bx_timer_opts def = BX_TIMER_OPTS_INIT;
    if (!o) o = &def;
    const char *interval = o->interval ? o->interval : "step";
    if (strcmp(interval, "step") != 0 && strcmp(interval, "epoch") != 0) {
        bx_set_error(BX_ERR_INVALID, "Timer: unsupported interval '%s'; possible choices are: step, epoch", interval);
        return NULL;
    }
    double dur = NAN;
    if (o->duration && bx_parse_duration(o->duration, &dur) != BX_OK) {
        bx_error_context("Timer");
        return NULL;
    }
    if (!o->duration && o->duration_s > 0) dur = o->duration_s;
    if (!o->duration && o->duration_s < 0) {
        bx_set_error(BX_ERR_INVALID, "Timer: duration_s must be >= 0 (0 = no limit), got %g", o->duration_s);
        return NULL;
    }
    timer *t = bx_calloc(sizeof *t);
    if (!t) return NULL;
    t->duration = dur;
    t->per_epoch = strcmp(interval, "epoch") == 0;
    t->verbose = o->verbose;
    for (int i = 0; i < ST_N; i++) t->start[i] = t->end[i] = NAN;
    return bx_callback_new(&TIMER_OPS, t);
}

static timer *get(const bx_callback *cb) {
    return cb && bx_callback_get_ops(cb) == &TIMER_OPS ? bx_callback_self(cb) : NULL;
}

static int stage_index(bx_stage s) {
    switch (s) {
    case BX_STAGE_FIT: return ST_TRAIN;
    case BX_STAGE_VALIDATE: return ST_VALIDATE;
    case BX_STAGE_TEST: return ST_TEST;
    default: return ST_PREDICT;
    }
}

double bx_timer_time_elapsed(const bx_callback *cb, bx_stage stage) {
    timer *t = get(cb);
    return t ? elapsed(t, stage_index(stage)) : NAN;
}

double bx_timer_time_remaining(const bx_callback *cb, bx_stage stage) {
    timer *t = get(cb);
    return t && !isnan(t->duration) ? t->duration - elapsed(t, stage_index(stage)) : NAN;
}

double bx_timer_duration(const bx_callback *cb) {
    timer *t = get(cb);
    return t ? t->duration : NAN;
}
