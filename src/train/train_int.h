/* train_int.h - internals of the Trainer shared by the src/train files.
 *
 * The Trainer follows Lightning 1.9.5's loops (FitLoop -> TrainingEpochLoop
 * -> optimizer closure, EvaluationLoop) with its counters:
 *   current_epoch        = epoch_progress.current.completed
 *   global_step          = optimizer steps taken (total)
 *   batches_that_stepped = the logger step (incremented after mid-epoch
 *                          validation, at each accumulation boundary)
 * and its logging model (_ResultCollection per loop, three metric dicts). */
#ifndef BLIXT_TRAIN_INT_H
#define BLIXT_TRAIN_INT_H

#include "blixt/checkpoint.h"
#include "blixt/trainer.h"
#include "core/core_int.h"

struct bx_callback {
    const bx_callback_ops *ops;
    void *self;
    char *state_key; /* override, or NULL */
};

struct bx_optim_config {
    bx_optimizer **opts;
    int nopt, capopt;
    bx_sched_config *scheds; /* strings owned */
    int nsched, capsched;
};

/* ---- logging results (Lightning's _ResultCollection) ---------------------- */
typedef struct bx__metric {
    char *fx;    /* hook that logged it */
    char *name;
    bool on_step, on_epoch, prog_bar, logger;
    unsigned reduce; /* 0 mean, BX_LOG_REDUCE_SUM/MAX/MIN */
    bool valid;      /* updated since the last reset */
    bool has_cache;
    float cache;     /* last logged value (forward cache) */
    float value;     /* accumulated (float32 like torch) */
    float cum_bs;
    bool has_value;
} bx__metric;

typedef struct bx__results {
    bx__metric *m;
    int n, cap;
    bool training;
} bx__results;

/* An ordered name -> value dict. */
typedef struct bx__mdict {
    char **names;
    double *vals;
    int n, cap;
} bx__mdict;

typedef enum bx__loopkind { BX__LOOP_NONE = 0, BX__LOOP_TRAIN, BX__LOOP_VAL, BX__LOOP_TEST } bx__loopkind;

struct bx_trainer {
    bx_trainer_opts o;        /* copy; pointer fields below own copies */
    char *default_root_dir;
    bx_callback **cbs;
    int ncb;
    bx_logger **loggers;
    int nlog;
    char *log_dir_buf;

    /* resolved flags */
    int64_t max_epochs, min_epochs, max_steps, min_steps;
    int64_t accumulate;
    bool skip_backward; /* bx_trainer_set_skip_backward: forward-only training batches */
    int64_t num_sanity_val_steps; /* INT64_MAX for -1 */
    bool fast_dev_run_on;

    /* run */
    const bx_model *model;    /* &model_store during and after a run */
    bx_model model_store;
    bx_module *module;
    bx_stage stage;
    const char *status_text; /* "initializing", "running", "finished", "interrupted" */
    bool training, validating, sanity_checking, testing;
    bool should_stop;
    bool interrupted;
    bx_step *step;
    bx_optim_config ocfg;
    bx_loader *train_loader, *val_loader;
    bx_state *train_loader_state; /* the train loader's state when the last fit returned */

    /* counters */
    int64_t epochs_completed;   /* epoch_progress.current.completed */
    int64_t epochs_processed;   /* epoch_progress.current.processed */
    int64_t global_step;
    int64_t batches_that_stepped;
    int64_t batch_idx;          /* within epoch */
    int64_t total_batch_idx;
    int64_t batches_ready;      /* batch_progress.current.ready */
    int64_t train_processed;    /* batch_progress.current.processed (train) */
    int64_t eval_processed;     /* evaluation batches processed in the current/last run */
    int64_t total_batches_ready;
    bool is_last_batch;
    int64_t restart_batch;      /* first batch of the first epoch after a mid-epoch resume; 0 */
    bool restarting;

    /* batch counts */
    int64_t num_training_batches;
    int64_t num_val_batches;        /* -1 = none loaded */
    int64_t num_sanity_val_batches; /* -1 = none */
    int64_t num_test_batches, num_predict_batches;
    int64_t val_check_batch;
    bool val_loaded;

    /* running loss (last 20 batch losses) */
    double loss_window[20];
    int loss_n, loss_pos;
    double acc_loss; /* this batch's loss / N (the running loss appends it times N) */

    /* logging */
    bx__results train_res, val_res;
    bx__loopkind active;       /* which results are current */
    bool epoch_end_reached;
    const char *cur_fx;        /* hook being run (logging defaults) */
    double cur_batch_size;
    bx__mdict cb_metrics, logged_metrics, pbar_metrics;
    bx__mdict row_keys;        /* every key ever sent to loggers (owns the names) */
    const char **row_names;    /* the record being sent */
    double *row_vals;
    int row_n, row_cap;
    int64_t val_batches_seen;  /* eval step logger step */

    /* step context */
    bx_tensor *step_loss;
    bx_tensor *step_output;

    /* checkpoint */
    char *ckpt_path;
    bx_state *loaded_ckpt;

    /* error context */
    char err_hook[64];
};

/* ---- dispatch.c ----------------------------------------------------------- */
/* Calls hook `name` on every callback, then on the model (model's hooks
 * table). The variadic arguments are the hook's arguments after `self`,
 * starting with the trainer: BX__CALL_HOOK(tr, on_fit_start, tr). The macros set tr->cur_fx for logging defaults and prefix errors
 * with the hook name. */
bx_status bx__hook_error(bx_trainer *tr, const char *who, const char *hook, bx_status s);

#define BX__CALL_CBS(tr, hook, ...)                                                     \
    do {                                                                                \
        const char *prev_fx__ = (tr)->cur_fx;                                           \
        (tr)->cur_fx = #hook;                                                           \
        for (int i__ = 0; i__ < (tr)->ncb; i__++) {                                     \
            bx_callback *cb__ = (tr)->cbs[i__];                                         \
            if (cb__->ops->hook) {                                                      \
                bx_status s__ = cb__->ops->hook(cb__->self, __VA_ARGS__);       \
                if (s__ != BX_OK) {                                                     \
                    (tr)->cur_fx = prev_fx__;                                           \
                    return bx__hook_error((tr), cb__->ops->name, #hook, s__);           \
                }                                                                       \
            }                                                                           \
        }                                                                               \
        (tr)->cur_fx = prev_fx__;                                                       \
    } while (0)

#define BX__CALL_MODEL_HOOK(tr, hook, ...)                                              \
    do {                                                                                \
        const bx_model *m__ = (tr)->model;                                              \
        if (m__ && m__->ops->hooks && m__->ops->hooks->hook) {                          \
            const char *prev_fx__ = (tr)->cur_fx;                                       \
            (tr)->cur_fx = #hook;                                                       \
            bx_status s__ = m__->ops->hooks->hook(m__->self, __VA_ARGS__);      \
            (tr)->cur_fx = prev_fx__;                                                   \
            if (s__ != BX_OK) return bx__hook_error((tr), "model", #hook, s__);         \
        }                                                                               \
    } while (0)

#define BX__CALL_MODEL_OP(tr, op, ...)                                                  \
    do {                                                                                \
        const bx_model *m__ = (tr)->model;                                              \
        if (m__ && m__->ops->op) {                                                      \
            const char *prev_fx__ = (tr)->cur_fx;                                       \
            (tr)->cur_fx = #op;                                                         \
            bx_status s__ = m__->ops->op(m__->self, __VA_ARGS__);               \
            (tr)->cur_fx = prev_fx__;                                                   \
            if (s__ != BX_OK) return bx__hook_error((tr), "model", #op, s__);           \
        }                                                                               \
    } while (0)

#define BX__CALL_HOOK(tr, hook, ...)                                                    \
    do {                                                                                \
        BX__CALL_CBS(tr, hook, __VA_ARGS__);                                          \
        BX__CALL_MODEL_HOOK(tr, hook, __VA_ARGS__);                                   \
    } while (0)

#define BX__TRY(x)                      \
    do {                                \
        bx_status s__ = (x);            \
        if (s__ != BX_OK) return s__;   \
    } while (0)

/* ---- metrics.c ------------------------------------------------------------- */
void bx__results_free(bx__results *r);
void bx__results_reset(bx__results *r);
void bx__mdict_free(bx__mdict *d);
void bx__mdict_clear(bx__mdict *d);
bx_status bx__mdict_set(bx__mdict *d, const char *name, double v);
/* metrics(on_step) of the active results, merged into the three dicts
 * (logger_connector.on_batch_end / on_epoch_end). */
bx_status bx__metrics_update_dicts(bx_trainer *tr);
/* Sends the "log" metrics of the active results to the loggers at `step`
 * (step < 0: batches_that_stepped, with "epoch" added). */
bx_status bx__metrics_log_to_loggers(bx_trainer *tr, int64_t step);
/* Lazily refreshed callback_metrics and progress_bar_metrics (Lightning's properties). */
void bx__metrics_refresh_callback(const bx_trainer *tr);
bx__results *bx__active_results(const bx_trainer *tr);

/* ---- fit_loop.c / eval_loop.c ------------------------------------------------ */
bx_status bx__fit_run(bx_trainer *tr);
/* One evaluation run (validation inside fit, sanity check, validate/test). */
bx_status bx__eval_run(bx_trainer *tr, bx_loader *ld, int64_t max_batches, bool test);
bx_status bx__load_val_loader(bx_trainer *tr);
bx_status bx__update_lr_schedulers(bx_trainer *tr, bx_interval interval, bool plateau);

/* ---- ckpt.c -------------------------------------------------------------- */
bx_status bx__ckpt_restore_model(bx_trainer *tr, const char *path);
bx_status bx__ckpt_restore_callbacks(bx_trainer *tr);
bx_status bx__ckpt_restore_training_state(bx_trainer *tr);

/* ---- callback list --------------------------------------------------------- */
bool bx__cb_is(const bx_callback *cb, const char *name);

#endif
