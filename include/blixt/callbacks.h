/* blixt/callbacks.h - built-in callbacks (DESIGN.md layer 9).
 *
 * DRAFT by the Trainer helper (tr): only what the Trainer needs to build its
 * default callback list. The callbacks helper owns this header and fills in
 * the rest (EarlyStopping, LearningRateMonitor, ...). */
#ifndef BLIXT_CALLBACKS_H
#define BLIXT_CALLBACKS_H

#include "callback.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ModelCheckpoint (Lightning 1.9's arguments). */
typedef struct bx_model_checkpoint_opts {
    const char *dirpath;        /* NULL: <log_dir>/checkpoints (or <default_root_dir>/checkpoints) */
    const char *filename;       /* NULL: "{epoch}-{step}" */
    const char *monitor;        /* NULL: save the latest */
    bool verbose;
    int save_last;              /* 0 false, 1 true, 2 "link" (unused) */
    int64_t save_top_k;         /* 1; -1 all; 0 none */
    bool save_weights_only;
    const char *mode;           /* "min" or "max" */
    bool auto_insert_metric_name; /* true */
    int64_t every_n_train_steps;  /* 0 = off */
    double train_time_interval_s; /* 0 = off */
    int64_t every_n_epochs;       /* 1 (0 = off); BX_UNSET = Lightning's None */
    int save_on_train_epoch_end;  /* -1 None (decided at run time), 0, 1 */
} bx_model_checkpoint_opts;
#define BX_MODEL_CHECKPOINT_OPTS_INIT {NULL, NULL, NULL, false, 0, 1, false, "min", true, 0, 0.0, 1, -1}

/* New ModelCheckpoint ("ModelCheckpoint"); caller owns it until given to a
 * Trainer. NULL with the message on bad options. */
bx_callback *bx_model_checkpoint_new(const bx_model_checkpoint_opts *o);

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
} bx_progress_bar_opts;
#define BX_PROGRESS_BAR_OPTS_INIT {1, NULL, -1}
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
