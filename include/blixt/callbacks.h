/* blixt/callbacks.h - built-in callbacks (DESIGN.md layer 9).
 *
 * Every built-in is written against the public callback interface
 * (callback.h) and the Trainer's read/set API (trainer.h) only, so a user
 * can write the same thing outside the library. Behaviour follows
 * spec/callbacks.md with the Lightning 1.9.5 details the conformance traces
 * record; docs/callbacks/<name>.md lists what differs from latest. */
#ifndef BLIXT_CALLBACKS_H
#define BLIXT_CALLBACKS_H

#include <math.h>

#include "callback.h"
#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- EarlyStopping ---------------------------------------------------------------- */
/* Lightning 1.9.5's arguments and defaults. Thresholds: NAN = None. */
typedef struct bx_early_stopping_opts {
    const char *monitor;          /* required: the callback_metrics key */
    double min_delta;             /* 0.0; the sign is applied by mode (a negative value loosens) */
    int64_t patience;             /* 3 checks without improvement (<= 0: the first one stops) */
    bool verbose;                 /* info messages through bx_logf */
    const char *mode;             /* "min" or "max" */
    bool strict;                  /* a missing monitor is an error (else skipped) */
    bool check_finite;            /* stop on NaN/inf */
    double stopping_threshold;    /* NAN = None: stop once the metric is better than this */
    double divergence_threshold;  /* NAN = None: stop once the metric is worse than this */
    int check_on_train_epoch_end; /* -1 None (at setup: val_check_interval == 1.0 and
                                     check_val_every_n_epoch == 1), 0, 1 */
} bx_early_stopping_opts;
#define BX_EARLY_STOPPING_OPTS_INIT {NULL, 0.0, 3, false, "min", true, true, NAN, NAN, -1}

/* New EarlyStopping ("EarlyStopping", state key
 * "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}"); the caller owns it
 * until given to a Trainer. NULL with the message on bad options
 * (BX_ERR_INVALID: no monitor, mode not min/max). A missing
 * monitored metric at a check fails the run (strict) with BX_ERR_NOT_FOUND
 * and a message naming the metric and the available keys. */
bx_callback *bx_early_stopping_new(const bx_early_stopping_opts *o);

/* Read accessors (cb must be an EarlyStopping, else 0 / NAN / -1). */
int64_t bx_early_stopping_wait_count(const bx_callback *cb);
int64_t bx_early_stopping_stopped_epoch(const bx_callback *cb);
/* The best score so far (+inf / -inf before the first improvement). */
double bx_early_stopping_best_score(const bx_callback *cb);
int64_t bx_early_stopping_patience(const bx_callback *cb);
/* The resolved check_on_train_epoch_end: 0/1 after setup, -1 while None. */
int bx_early_stopping_check_on_train_epoch_end(const bx_callback *cb);
/* The monitored key (owned by the callback). */
const char *bx_early_stopping_monitor(const bx_callback *cb);

/* ---- ModelCheckpoint -------------------------------------------------------------- */
/* Lightning 1.9.5's arguments and defaults. every_n_train_steps /
 * every_n_epochs: BX_UNSET = None; when all three triggers are None,
 * every_n_epochs = 1 and every_n_train_steps = 0, otherwise the unset ones
 * are 0 (off). */
typedef struct bx_model_checkpoint_opts {
    const char *dirpath;          /* NULL: <log_dir>/checkpoints (or <default_root_dir>/checkpoints) */
    const char *filename;         /* NULL: "{epoch}-{step}"; Python format fields {name[:spec]} */
    const char *monitor;          /* NULL: no metric, keep the latest save_top_k files */
    bool verbose;
    int save_last;                /* 0 off, 1 also write dirpath/last.ckpt at every save */
    int64_t save_top_k;           /* 1; -1 all; 0 none */
    bool save_weights_only;
    const char *mode;             /* "min" or "max" */
    bool auto_insert_metric_name; /* true: "{epoch}" -> "epoch={epoch}" */
    int64_t every_n_train_steps;  /* BX_UNSET None; 0 off; n: at global_step % n == 0 */
    double train_time_interval_s; /* 0 = None; else seconds between step-end saves */
    int64_t every_n_epochs;       /* BX_UNSET None; 0 off; n: at (epoch + 1) % n == 0 */
    int save_on_train_epoch_end;  /* -1 None (decided at each check), 0, 1 */
} bx_model_checkpoint_opts;
#define BX_MODEL_CHECKPOINT_OPTS_INIT \
    {NULL, NULL, NULL, false, 0, 1, false, "min", true, BX_UNSET, 0.0, BX_UNSET, -1}

/* New ModelCheckpoint ("ModelCheckpoint"); the caller owns it until given to
 * a Trainer. NULL with the message on bad options (BX_ERR_INVALID: mode,
 * save_top_k < -1, negative triggers, more than one trigger, save_top_k not
 * in {-1,0,1} without a monitor, a filename template that does not format).
 * Checkpoints are written with bx_trainer_save_checkpoint (crash-safe). */
bx_callback *bx_model_checkpoint_new(const bx_model_checkpoint_opts *o);

/* Read accessors (cb must be a ModelCheckpoint, else ""/NAN/0). Strings are
 * owned by the callback and valid until its next save or load. Paths are
 * dirpath joined with the file name, "" when unset. Scores: NAN = None
 * (a NaN metric is stored as +inf (min) / -inf (max), so a real score is
 * never NaN). */
const char *bx_model_checkpoint_dirpath(const bx_callback *cb); /* resolved at setup ("" before) */
const char *bx_model_checkpoint_best_model_path(const bx_callback *cb);
double bx_model_checkpoint_best_model_score(const bx_callback *cb);
const char *bx_model_checkpoint_kth_best_model_path(const bx_callback *cb);
double bx_model_checkpoint_kth_value(const bx_callback *cb);
const char *bx_model_checkpoint_last_model_path(const bx_callback *cb);
double bx_model_checkpoint_current_score(const bx_callback *cb);
/* best_k_models in insertion order: count, i-th path and score. */
int bx_model_checkpoint_best_k_count(const bx_callback *cb);
const char *bx_model_checkpoint_best_k_path(const bx_callback *cb, int i);
double bx_model_checkpoint_best_k_score(const bx_callback *cb, int i);
/* Whether the next check saves at train-epoch end (explicit value, else
 * Lightning 1.9.5's rule on tr's current settings). */
bool bx_model_checkpoint_save_on_train_epoch_end(const bx_callback *cb, const bx_trainer *tr);
/* Formats a file name from the template like the callback does (no
 * dirpath, no extension): names/values are the metrics ("epoch", "step"
 * are formatted as integers), missing names format as 0. Writes at most n
 * bytes to out. Errors: BX_ERR_INVALID (template does not format). */
bx_status bx_model_checkpoint_format_name(const char *tmpl, bool auto_insert_metric_name,
                                          const char *const *names, const double *values, int n_metrics,
                                          char *out, size_t n);

/* ==== cb2 section: LearningRateMonitor, GradientAccumulationScheduler,
 * LambdaCallback, progress bars (src/callbacks/lr_monitor.c,
 * grad_accum_scheduler.c, lambda.c, progress_bar.c). ==================== */

/* ---- LearningRateMonitor (spec/callbacks.md §3, Lightning 1.9.5) -------- */
typedef struct bx_lr_monitor_opts {
    const char *logging_interval; /* NULL: each scheduler's own interval; "step"; "epoch" */
    bool log_momentum;            /* also log "<key>-momentum" (momentum, or betas[0]) */
} bx_lr_monitor_opts;
#define BX_LR_MONITOR_OPTS_INIT {NULL, false}

/* New LearningRateMonitor ("LearningRateMonitor"); o NULL = defaults. Caller
 * owns it until given to a Trainer. NULL on a bad logging_interval
 * (BX_ERR_INVALID, message names it) or NOMEM. At on_train_start a Trainer
 * without a logger is an error. Keys: "lr-<Optimizer>[-k]" or the scheduler
 * config's name, "/pg<i>" or "/<group name>" per group, "-momentum". */
bx_callback *bx_lr_monitor_new(const bx_lr_monitor_opts *o);
/* The `lrs` history: number of keys, key i, and its n values (borrowed,
 * valid until the next logging). cb must be a LearningRateMonitor (else 0 /
 * NULL). */
int bx_lr_monitor_num_keys(const bx_callback *cb);
const char *bx_lr_monitor_key(const bx_callback *cb, int i);
const double *bx_lr_monitor_values(const bx_callback *cb, int i, int64_t *n);
/* `last_momentum_values`: key i ("<key>-momentum") and its value; returns
 * false when the value is None (never logged). */
int bx_lr_monitor_num_momentum(const bx_callback *cb);
const char *bx_lr_monitor_momentum_key(const bx_callback *cb, int i);
bool bx_lr_monitor_momentum_value(const bx_callback *cb, int i, double *v);

/* ---- GradientAccumulationScheduler (spec §4) ----------------------------- */
/* New GradientAccumulationScheduler ("GradientAccumulationScheduler"):
 * from epoch epochs[i] (0-based) on, accumulate factors[i] batches. n == 0,
 * a negative epoch, a factor < 1 or a repeated epoch is BX_ERR_INVALID
 * (NULL + message); without epoch 0 the entry {0: 1} is added. At
 * on_train_epoch_start it sets the Trainer's accumulate_grad_batches to the
 * factor of the largest epoch <= current_epoch. Lightning's
 * Trainer(accumulate_grad_batches={...}) is this callback placed last in the
 * callback list; combined with a Trainer accumulate_grad_batches other than
 * 1 it fails at setup. Caller owns it until given to a Trainer. */
bx_callback *bx_grad_accum_scheduler_new(const int64_t *epochs, const int64_t *factors, int n);
/* The factor for `epoch` (0 if cb is not a GradientAccumulationScheduler). */
int64_t bx_grad_accum_scheduler_get(const bx_callback *cb, int64_t epoch);
/* Whether some factor is > 1 (going_to_accumulate_grad_batches). */
bool bx_grad_accum_scheduler_accumulates(const bx_callback *cb);

/* ---- LambdaCallback (spec §5) ---------------------------------------------- */
/* New LambdaCallback ("LambdaCallback"): every non-NULL member of `hooks`
 * (any hook of callback.h, including state_dict/load_state_dict and
 * destroy) is called with `ud` as its self argument. The table is copied;
 * `name` and `state_key` of `hooks` are ignored. Only the given hooks are
 * registered, so without state_dict the callback is stateless (several
 * LambdaCallbacks fit in one Trainer). ud is borrowed unless
 * hooks->destroy is set (then destroy(ud) runs when the callback is freed).
 * NULL on NOMEM. */
bx_callback *bx_lambda_callback_new(const bx_callback_ops *hooks, void *ud);

/* ---- Timer (spec §13, Lightning 1.9.5) --------------------------------------- */
/* Wall time per stage, and a training time limit. With a duration, training
 * stops (trainer.should_stop) once the training time reaches it: checked at
 * fit start (a resumed run may be out of time already), then at each train
 * batch end (interval "step") or train epoch end ("epoch"); verbose logs
 * "Time limit reached. Elapsed time is H:MM:SS. Signaling Trainer to stop."
 * State {"time_elapsed": {"train", "sanity_check", "validate", "test",
 * "predict", "tune": seconds}}; resuming continues the training time.
 * Trainer.max_time adds one (interval "step") when none is given. */
typedef struct bx_timer_opts {
    const char *duration; /* "DD:HH:MM:SS" (Lightning's string form); NULL: duration_s */
    double duration_s;    /* seconds, used when duration is NULL; 0 = no limit */
    const char *interval; /* "step" (default) or "epoch" */
    bool verbose;         /* true */
} bx_timer_opts;
#define BX_TIMER_OPTS_INIT {NULL, 0.0, "step", true}
/* New Timer ("Timer"); the caller owns it until given to a Trainer. NULL
 * with the message (BX_ERR_INVALID) on a bad duration or interval. */
bx_callback *bx_timer_new(const bx_timer_opts *o);
/* Seconds spent in a stage (BX_STAGE_FIT = training, restored offset
 * included; 0 before it started; still running: up to now). NAN when cb is
 * not a Timer. time_remaining = duration - elapsed (NAN without a duration). */
double bx_timer_time_elapsed(const bx_callback *cb, bx_stage stage);
double bx_timer_time_remaining(const bx_callback *cb, bx_stage stage);
double bx_timer_duration(const bx_callback *cb); /* seconds; NAN = none */
/* Parses "DD:HH:MM:SS" into seconds. BX_ERR_INVALID naming the text. */
bx_status bx_parse_duration(const char *text, double *seconds);

/* ---- ProgressBarBase / ProgressBar (spec §12, Lightning 1.9.5) ----------- */
/* What a progress bar shows, read from the Trainer (ProgressBarBase's
 * properties). Totals are INFINITY while unknown (e.g. during the sanity
 * check, before the training loader was sized). */
typedef struct bx_progress_counters {
    int64_t train_batch_idx;  /* training batches processed this epoch */
    int64_t val_batch_idx;    /* evaluation batches processed in the current/last run */
    double total_train_batches;
    double total_val_batches; /* 0 on epochs without validation; the sanity count while sanity checking */
    double total_val_batches_current_dataloader; /* meaningful inside a validation run */
    double total_batches_current_epoch; /* train + val x number of validation runs this epoch */
    double total_test_batches, total_predict_batches;
} bx_progress_counters;
/* Fills *out from the Trainer's current state. */
void bx_progress_bar_counters(const bx_trainer *tr, bx_progress_counters *out);
/* get_metrics(): a new dict (caller frees with bx_state_free): "loss" = the
 * running loss as "%.3g" text ("nan" before training), "v_num" = the first
 * logger's version (int for version_N, else the last 4 characters), then
 * every prog_bar metric (float). NULL on NOMEM. */
bx_state *bx_progress_bar_get_metrics(const bx_trainer *tr);

/* tqdm-like bar on stderr (Lightning's TQDMProgressBar, class name
 * "ProgressBar"): "Epoch N" main bar (train + validation batches),
 * "Validation" bar, "Validation sanity check" bar, postfix = get_metrics().
 * refresh_rate 0 disables drawing. When the stream is not a terminal it
 * prints one plain line per refresh of a finished bar (epoch end, end of a
 * validation run) instead of carriage-return updates. */
typedef struct bx_progress_bar_opts {
    int64_t refresh_rate;   /* 1 */
    void *stream;           /* FILE *; NULL = stderr */
    int tty;                /* -1 detect (isatty), 0 plain lines, 1 terminal drawing */
    double mininterval;     /* 0.1: seconds between redraws of the training bar (tqdm's
                               mininterval); 0 draws at every refresh_rate update */
} bx_progress_bar_opts;
#define BX_PROGRESS_BAR_OPTS_INIT {1, NULL, -1, 0.1}
bx_callback *bx_progress_bar_new_ex(const bx_progress_bar_opts *o);
/* The default progress bar ("ProgressBar") the Trainer adds when
 * enable_progress_bar is set and none is given (refresh_rate 1, stderr). */
bx_callback *bx_progress_bar_new(void);
/* Update-rule helper (exposed for tests): how far a bar at n of total
 * advances when its counter reaches `current` with refresh_rate r (0 = no
 * update): min(r, total - n) when current % r == 0 or current == total. */
int64_t bx_progress_bar_increment(int64_t n, double total, int64_t current, int64_t refresh_rate);

/* ==== end of cb2 section ================================================= */

#ifdef __cplusplus
}
#endif
#endif
