/* blixt/trainer.h - the model interface and the Trainer (DESIGN.md layer 8).
 *
 * The model (Lightning's LightningModule) is a user struct plus a table of
 * what it can do; the Trainer owns the loop: fit / validate / test /
 * predict, sanity check, limits, validation interval, gradient accumulation
 * and clipping, max/min epochs and steps, logging with step/epoch
 * aggregation, checkpoint save/restore, and callback dispatch. Behaviour
 * follows /spec (hooks.md, loggers.md, checkpoint.md) with the Lightning
 * 1.9.5 details the conformance traces record. */
#ifndef BLIXT_TRAINER_H
#define BLIXT_TRAINER_H

#include "callback.h"
#include "logger.h"
#include "nn.h"
#include "sched.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- configure_optimizers ------------------------------------------------ */
typedef enum bx_interval { BX_INTERVAL_EPOCH = 0, BX_INTERVAL_STEP = 1 } bx_interval;

/* Lightning's lr scheduler config. */
typedef struct bx_sched_config {
    bx_scheduler *scheduler; /* taken over by the Trainer */
    bx_interval interval;
    int64_t frequency;       /* >= 1 */
    const char *monitor;     /* required for ReduceLROnPlateau */
    bool strict;             /* a missing monitor is an error (else a warning) */
    const char *name;        /* LearningRateMonitor key, or NULL */
    int opt_idx;             /* which optimizer it drives (default 0) */
} bx_sched_config;
#define BX_SCHED_CONFIG_INIT {NULL, BX_INTERVAL_EPOCH, 1, NULL, true, NULL, 0}

typedef struct bx_optim_config bx_optim_config;
/* Adds an optimizer (taken over by the Trainer). */
bx_status bx_optim_config_add_optimizer(bx_optim_config *cfg, bx_optimizer *opt);
/* Adds a scheduler config (the scheduler is taken over; strings copied). */
bx_status bx_optim_config_add_scheduler(bx_optim_config *cfg, const bx_sched_config *sc);

/* ---- the model ------------------------------------------------------------ */
typedef struct bx_model_ops {
    const char *name;
    /* Build layers (called once per entry point, stage given). */
    bx_status (*setup)(void *self, bx_trainer *tr, bx_stage stage);
    /* The root module: parameters, buffers, train/eval, state dict. Required. */
    bx_module *(*module)(void *self);
    /* Required for fit: add optimizers (and schedulers). Adding nothing is an
     * error naming the model. */
    bx_status (*configure_optimizers)(void *self, bx_trainer *tr, bx_optim_config *cfg);
    /* Required for fit: compute the loss with ops on `st` and hand it over
     * with bx_step_set_loss (none = skip this batch's backward and step). */
    bx_status (*training_step)(void *self, bx_step *st, const bx_batch *b, int64_t batch_idx);
    bx_status (*validation_step)(void *self, bx_step *st, const bx_batch *b, int64_t batch_idx);
    bx_status (*test_step)(void *self, bx_step *st, const bx_batch *b, int64_t batch_idx);
    /* Hand the prediction over with bx_step_set_output. */
    bx_status (*predict_step)(void *self, bx_step *st, const bx_batch *b, int64_t batch_idx);
    /* Hyper-parameters for loggers (hparams.yaml) and checkpoints: fill `out`. */
    bx_status (*hparams)(void *self, bx_state *out);
    /* Model-only hooks (optional), called where Lightning calls them. */
    bx_status (*prepare_data)(void *self, bx_trainer *tr);
    bx_status (*configure_callbacks)(void *self, bx_trainer *tr);
    bx_status (*on_validation_model_eval)(void *self, bx_trainer *tr);
    bx_status (*on_validation_model_train)(void *self, bx_trainer *tr);
    bx_status (*optimizer_step)(void *self, bx_trainer *tr, bx_optimizer *opt, int opt_idx, int64_t batch_idx);
    bx_status (*optimizer_zero_grad)(void *self, bx_trainer *tr, bx_optimizer *opt, int opt_idx, int64_t batch_idx);
    bx_status (*backward)(void *self, bx_trainer *tr, bx_tensor *loss);
    bx_status (*configure_gradient_clipping)(void *self, bx_trainer *tr, bx_optimizer *opt, int opt_idx);
    bx_status (*lr_scheduler_step)(void *self, bx_trainer *tr, bx_scheduler *s, int idx);
    bx_status (*train_dataloader)(void *self, bx_trainer *tr);
    bx_status (*val_dataloader)(void *self, bx_trainer *tr);
    /* Every callback hook, run after the callbacks' hook of the same name
     * (self is the model's self). */
    const bx_callback_ops *hooks;
} bx_model_ops;

typedef struct bx_model {
    const bx_model_ops *ops;
    void *self;
} bx_model;

/* Notes on the model-only hooks above: optimizer_step is a notification
 * called when an optimizer step begins (before the closure runs
 * training_step); the Trainer always runs the closure and the step.
 * optimizer_zero_grad, backward, configure_gradient_clipping and
 * lr_scheduler_step REPLACE the default action when set: call
 * bx_optimizer_zero_grad, bx_backward(bx_trainer_current_step(tr), loss),
 * bx_trainer_clip_gradients, bx_scheduler_step yourself. configure_callbacks
 * adds callbacks with bx_trainer_attach_callback. With several optimizers,
 * training_step runs once per batch and every optimizer is zeroed and
 * stepped in order (each step counts in global_step; Lightning 1.9.5 would
 * call training_step once per optimizer with optimizer_idx). */

/* ---- inside a step ----------------------------------------------------------- */
/* The training loss of this batch (a scalar step tensor). */
bx_status bx_step_set_loss(bx_step *st, bx_tensor *loss);
/* The prediction (predict_step) or an extra output passed to batch-end hooks. */
bx_status bx_step_set_output(bx_step *st, bx_tensor *out);
/* The Trainer running this step (NULL outside a Trainer). */
bx_trainer *bx_step_trainer(bx_step *st);

/* ---- logging (Lightning's self.log) -------------------------------------------- */
#define BX_LOG_ON_STEP 0x01u    /* log per step (default in training_step / train batch hooks) */
#define BX_LOG_ON_EPOCH 0x02u   /* aggregate over the epoch (default elsewhere) */
#define BX_LOG_NO_STEP 0x04u    /* explicitly on_step=False */
#define BX_LOG_NO_EPOCH 0x08u   /* explicitly on_epoch=False */
#define BX_LOG_PROG_BAR 0x10u
#define BX_LOG_NO_LOGGER 0x20u  /* keep out of the loggers (logger=False) */
#define BX_LOG_REDUCE_SUM 0x100u
#define BX_LOG_REDUCE_MAX 0x200u
#define BX_LOG_REDUCE_MIN 0x400u

typedef struct bx_log_opts {
    unsigned flags;
    double batch_size; /* weight in the epoch mean; 0 = the current batch's size */
} bx_log_opts;

/* Logs a one-element tensor from a step (value read immediately). With both
 * on_step and on_epoch the metric forks into name_step / name_epoch. */
bx_status bx_log_metric(bx_step *st, const char *name, const bx_tensor *value, unsigned flags);
/* Logs a number from a hook or a step (tr from the hook's argument). */
bx_status bx_trainer_log(bx_trainer *tr, const char *name, double value, unsigned flags);
bx_status bx_trainer_log_ex(bx_trainer *tr, const char *name, double value, const bx_log_opts *o);

/* ---- Trainer options -------------------------------------------------------------- */
/* A batch limit or interval: an int count, or a fraction of the loader. */
typedef struct bx_limit {
    double value;
    bool is_int;
} bx_limit;
#define BX_LIMIT_ALL {1.0, false}
#define BX_UNSET INT64_MIN

typedef enum bx_clip_algorithm { BX_CLIP_NORM = 0, BX_CLIP_VALUE = 1 } bx_clip_algorithm;

typedef struct bx_trainer_opts {
    int64_t max_epochs;    /* BX_UNSET: 1000 unless max_steps, max_time or a Timer is set; -1 = no limit */
    int64_t min_epochs;    /* BX_UNSET: 0 (1 if only min_steps...) */
    int64_t max_steps;     /* -1 = none */
    int64_t min_steps;     /* BX_UNSET: none */
    bx_limit limit_train_batches, limit_val_batches, limit_test_batches, limit_predict_batches;
    bx_limit val_check_interval;
    int64_t check_val_every_n_epoch; /* 0 = None (count val_check_interval across epochs) */
    int64_t num_sanity_val_steps;    /* 2; -1 = all */
    int64_t accumulate_grad_batches; /* 1 */
    double gradient_clip_val;        /* 0 = off */
    bx_clip_algorithm gradient_clip_algorithm;
    int64_t log_every_n_steps;       /* 50 */
    bool enable_checkpointing;       /* adds a default ModelCheckpoint when none given */
    bool enable_progress_bar;        /* adds a ProgressBar when none given */
    bool enable_model_summary;       /* prints the summary table at fit start */
    const char *default_root_dir;    /* "." */
    int64_t fast_dev_run;            /* 0 = off, n = run n batches of each */
    int64_t seed;                    /* BX_UNSET = no seed_everything; else the global seed */
    int num_threads;                 /* 0 = leave as is */
    /* Loggers: given ones are taken over. logger_default: a CSVLogger in
     * default_root_dir when none given; false = logger=False. */
    bx_logger **loggers;
    int num_loggers;
    bool logger_default;
    /* Callbacks, taken over by the Trainer (also on failure). */
    bx_callback **callbacks;
    int num_callbacks;
    /* Training time limit "DD:HH:MM:SS" (NULL = none): adds a Timer
     * (interval "step") unless one is in the callbacks. With it (or a Timer),
     * an unset max_epochs means no epoch limit instead of 1000. */
    const char *max_time;
} bx_trainer_opts;

#define BX_TRAINER_OPTS_INIT                                                                 \
    {BX_UNSET, BX_UNSET, -1, BX_UNSET, BX_LIMIT_ALL, BX_LIMIT_ALL, BX_LIMIT_ALL, BX_LIMIT_ALL, \
     BX_LIMIT_ALL, 1, 2, 1, 0.0, BX_CLIP_NORM, 50, true, true, true, ".", 0, BX_UNSET, 0,   \
     NULL, 0, true, NULL, 0, NULL}

/* New Trainer. Validates flags and the callback list (more than one
 * progress bar, two stateful callbacks with one state key, ...): NULL with
 * the message on error (callbacks and loggers freed). */
bx_trainer *bx_trainer_new(const bx_trainer_opts *o);
void bx_trainer_free(bx_trainer *tr);

/* Entry points. Loaders are not owned. ckpt_path: NULL, a path, "last"
 * (the newest *last*.ckpt in a ModelCheckpoint's dirpath; a warning and no
 * load when there is none, as Lightning) or "best" (the first
 * ModelCheckpoint's best_model_path; BX_ERR_STATE when there is no
 * ModelCheckpoint or it has not saved a best model in this Trainer). On error the status is
 * returned with the message (bx_errmsg) naming the stage, the epoch/step and
 * the cause; callbacks' on_exception have run and no file is half-written. */
bx_status bx_trainer_fit(bx_trainer *tr, const bx_model *m, bx_loader *train, bx_loader *val,
                         const char *ckpt_path);
bx_status bx_trainer_validate(bx_trainer *tr, const bx_model *m, bx_loader *val, const char *ckpt_path);
bx_status bx_trainer_test(bx_trainer *tr, const bx_model *m, bx_loader *test, const char *ckpt_path);
/* Predictions: one owned tensor per batch through `sink` (may be NULL). */
typedef bx_status (*bx_predict_sink)(void *ud, int64_t batch_idx, const bx_tensor *pred);
bx_status bx_trainer_predict(bx_trainer *tr, const bx_model *m, bx_loader *data, const char *ckpt_path,
                             bx_predict_sink sink, void *ud);

/* The step (arena + tape) the Trainer runs batches on; valid during fit. */
bx_step *bx_trainer_current_step(const bx_trainer *tr);
/* Clips the gradients of opt's parameters like torch's clip_grad_norm_
 * (2-norm over all parameters, coefficient val/(norm+1e-6) when < 1) or
 * clip_grad_value_. val <= 0 does nothing. Errors: BX_ERR_NUMERIC (the
 * total norm is not finite). */
bx_status bx_trainer_clip_gradients(bx_trainer *tr, bx_optimizer *opt, double val, bx_clip_algorithm algo);
/* Adds a callback during a run (the model's configure_callbacks): callbacks
 * of the same class are replaced, ModelCheckpoints are kept last. Takes cb
 * over. Errors: BX_ERR_INVALID (duplicate state key). */
bx_status bx_trainer_attach_callback(bx_trainer *tr, bx_callback *cb);
/* "initializing", "running", "finished", "interrupted" (Lightning's
 * trainer.state.status) and whether the last run failed. */
const char *bx_trainer_status(const bx_trainer *tr);
bool bx_trainer_interrupted(const bx_trainer *tr);

/* ---- what callbacks and users can read (and the few things they set) ----------- */
int64_t bx_trainer_current_epoch(const bx_trainer *tr);
int64_t bx_trainer_global_step(const bx_trainer *tr);
int64_t bx_trainer_batches_that_stepped(const bx_trainer *tr);
bool bx_trainer_should_stop(const bx_trainer *tr);
void bx_trainer_set_should_stop(bx_trainer *tr, bool stop);
bool bx_trainer_sanity_checking(const bx_trainer *tr);
bool bx_trainer_fast_dev_run(const bx_trainer *tr);
/* The entry point being run (fit during validation inside fit). */
bx_stage bx_trainer_stage(const bx_trainer *tr);
/* True while the fit loop trains (not validating/sanity checking). */
bool bx_trainer_training(const bx_trainer *tr);
int64_t bx_trainer_max_epochs(const bx_trainer *tr);
void bx_trainer_set_max_epochs(bx_trainer *tr, int64_t n);
int64_t bx_trainer_min_epochs(const bx_trainer *tr);
int64_t bx_trainer_max_steps(const bx_trainer *tr);
int64_t bx_trainer_accumulate_grad_batches(const bx_trainer *tr);
void bx_trainer_set_accumulate_grad_batches(bx_trainer *tr, int64_t n);
/* Forward-only training batches (Lightning's fit_loop._skip_backward, set by
 * StochasticWeightAveraging for its BatchNorm epoch): while set, each batch
 * runs training_step only - no zero_grad, no backward hooks or backward, no
 * optimizer step and no global_step increment. Cleared by the caller. */
bool bx_trainer_skip_backward(const bx_trainer *tr);
void bx_trainer_set_skip_backward(bx_trainer *tr, bool skip);
int64_t bx_trainer_log_every_n_steps(const bx_trainer *tr);
int64_t bx_trainer_num_training_batches(const bx_trainer *tr);
void bx_trainer_set_num_training_batches(bx_trainer *tr, int64_t n);
/* Lightning's trainer.estimated_stepping_batches: the optimizer steps the
 * fit will take, ceil(batches per epoch / accumulate_grad_batches) x
 * max_epochs, capped by max_steps (batches per epoch: the train loader's
 * length after limit_train_batches). With max_epochs -1 it is max_steps
 * (Lightning 1.9.5 would give one epoch's worth there, which a OneCycleLR
 * sized from it outruns). Usable from configure_optimizers and any hook of
 * a fit (the train loader is known). The accumulation factor is the one in
 * effect (a GradientAccumulationScheduler's epoch-0 factor after setup).
 * Errors (BX_ERR_INVALID): no fit running ("no train loader"), infinite
 * training (max_epochs -1 and max_steps -1). */
bx_status bx_trainer_estimated_stepping_batches(const bx_trainer *tr, int64_t *out);
/* Validation batches of the current run (sum over loaders); -1 unknown. */
int64_t bx_trainer_num_val_batches(const bx_trainer *tr);
int64_t bx_trainer_num_sanity_val_batches(const bx_trainer *tr);
int64_t bx_trainer_num_test_batches(const bx_trainer *tr);
int64_t bx_trainer_num_predict_batches(const bx_trainer *tr);
int64_t bx_trainer_val_check_batch(const bx_trainer *tr);
/* The val_check_interval option as given (known before the loaders are). */
bx_limit bx_trainer_val_check_interval(const bx_trainer *tr);
int64_t bx_trainer_check_val_every_n_epoch(const bx_trainer *tr);
/* True when validation is enabled for this fit (validation_step, loader, limit > 0). */
bool bx_trainer_enable_validation(const bx_trainer *tr);
/* Index of the batch being run in the current loop. */
int64_t bx_trainer_batch_idx(const bx_trainer *tr);
bool bx_trainer_is_last_batch(const bx_trainer *tr);
/* Batches across epochs so far (Lightning's total_batch_idx). */
int64_t bx_trainer_total_batch_idx(const bx_trainer *tr);
/* Progress counters for progress bars: training batches processed in the
 * current epoch (kept until the next epoch's first batch), and evaluation
 * batches processed in the current or last evaluation run (0 after the
 * sanity check). */
int64_t bx_trainer_train_batches_processed(const bx_trainer *tr);
int64_t bx_trainer_eval_batches_processed(const bx_trainer *tr);
/* Mean of the last 20 training-batch losses (Lightning 1.9.5 running_loss; NaN before any). */
double bx_trainer_running_loss(const bx_trainer *tr);

/* Metric dictionaries (Lightning's callback_metrics, logged_metrics,
 * progress_bar_metrics), in insertion order. */
typedef enum bx_metric_dict { BX_CALLBACK_METRICS = 0, BX_LOGGED_METRICS, BX_PROGRESS_BAR_METRICS } bx_metric_dict;
int bx_trainer_metrics_count(const bx_trainer *tr, bx_metric_dict which);
const char *bx_trainer_metric_name(const bx_trainer *tr, bx_metric_dict which, int i);
double bx_trainer_metric_value(const bx_trainer *tr, bx_metric_dict which, int i);
/* callback_metrics[name]: BX_ERR_NOT_FOUND (text lists the available keys). */
bx_status bx_trainer_metric(const bx_trainer *tr, const char *name, double *out);

const bx_model *bx_trainer_model(const bx_trainer *tr);
bx_module *bx_trainer_module(const bx_trainer *tr);
int bx_trainer_num_optimizers(const bx_trainer *tr);
bx_optimizer *bx_trainer_optimizer(const bx_trainer *tr, int i);
int bx_trainer_num_schedulers(const bx_trainer *tr);
const bx_sched_config *bx_trainer_scheduler(const bx_trainer *tr, int i);
/* Replaces scheduler config i (i == count appends); the old scheduler is
 * freed, the new one taken over. SWA swaps in its SWALR this way. */
bx_status bx_trainer_set_scheduler(bx_trainer *tr, int i, const bx_sched_config *sc);

int bx_trainer_num_loggers(const bx_trainer *tr);
bx_logger *bx_trainer_logger(const bx_trainer *tr, int i);
/* Sends a record straight to every logger (LearningRateMonitor's path: not
 * into callback_metrics). */
bx_status bx_trainer_log_metrics_direct(bx_trainer *tr, const char *const *names, const double *values,
                                        int n, int64_t step);
const char *bx_trainer_default_root_dir(const bx_trainer *tr);
/* The first logger's log_dir, else default_root_dir. */
const char *bx_trainer_log_dir(const bx_trainer *tr);

int bx_trainer_num_callbacks(const bx_trainer *tr);
bx_callback *bx_trainer_callback(const bx_trainer *tr, int i);

/* Builds the checkpoint dict of the current state (calls every callback's
 * state_dict and on_save_checkpoint, then the model's) and writes it
 * crash-safely. Used by ModelCheckpoint. */
bx_status bx_trainer_save_checkpoint(bx_trainer *tr, const char *path, bool weights_only);
/* The checkpoint this run resumed from ("" if none). */
const char *bx_trainer_ckpt_path(const bx_trainer *tr);

#ifdef __cplusplus
}
#endif
#endif
