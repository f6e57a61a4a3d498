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

/* The default progress bar ("ProgressBar") the Trainer adds when
 * enable_progress_bar is set and none is given. */
bx_callback *bx_progress_bar_new(void);

#ifdef __cplusplus
}
#endif
#endif
