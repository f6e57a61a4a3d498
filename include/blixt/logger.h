/* blixt/logger.h - experiment loggers (DESIGN.md layer 10).
 *
 * A logger is a const table of optional functions plus a state pointer, like
 * every object with behaviour. The Trainer sends each record once, already
 * aggregated (Lightning's agg_and_log_metrics + save() per record). */
#ifndef BLIXT_LOGGER_H
#define BLIXT_LOGGER_H

#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_logger_ops {
    const char *name; /* class name, e.g. "CSVLogger" */
    /* One record: n metrics at `step`. */
    bx_status (*log_metrics)(void *self, const char *const *names, const double *values, int n,
                             int64_t step);
    /* Hyper-parameters (a dict), merged into hparams.yaml. */
    bx_status (*log_hyperparams)(void *self, const bx_state *params);
    bx_status (*save)(void *self);
    /* status: "success", "failed", "interrupted". */
    bx_status (*finalize)(void *self, const char *status);
    /* Experiment name, version text ("0" or a user string), folders. The
     * version is resolved lazily (first free version_N) and then fixed. */
    const char *(*experiment_name)(void *self);
    const char *(*version)(void *self);
    const char *(*save_dir)(void *self);
    const char *(*log_dir)(void *self);
    void (*destroy)(void *self);
} bx_logger_ops;

typedef struct bx_logger bx_logger;
/* Wraps ops + self; self is destroyed with ops->destroy when the logger is
 * freed. NULL on NOMEM. */
bx_logger *bx_logger_new(const bx_logger_ops *ops, void *self);
void bx_logger_free(bx_logger *lg);
const bx_logger_ops *bx_logger_get_ops(const bx_logger *lg);
void *bx_logger_self(const bx_logger *lg);
/* Dispatch helpers (a NULL member is a successful no-op). */
bx_status bx_logger_log_metrics(bx_logger *lg, const char *const *names, const double *values, int n,
                                int64_t step);
bx_status bx_logger_log_hyperparams(bx_logger *lg, const bx_state *params);
bx_status bx_logger_save(bx_logger *lg);
bx_status bx_logger_finalize(bx_logger *lg, const char *status);
const char *bx_logger_name(bx_logger *lg);
const char *bx_logger_version(bx_logger *lg);
const char *bx_logger_save_dir(bx_logger *lg);
const char *bx_logger_log_dir(bx_logger *lg);

/* Version selection shared by the built-in loggers. */
typedef struct bx_logger_version_opt {
    int64_t number;     /* >= 0: version_<number>; -1: first free version_N */
    const char *text;   /* non-NULL: a folder of exactly this name */
} bx_logger_version_opt;
#define BX_LOGGER_VERSION_AUTO {-1, NULL}

/* CSVLogger: <save_dir>/<name>/version_<v>/metrics.csv + hparams.yaml, as
 * Lightning 1.9 writes them (header = keys in order of first appearance,
 * rows sparse, Python float formatting). */
typedef struct bx_csv_logger_opts {
    const char *save_dir;             /* default "." */
    const char *name;                 /* default "lightning_logs"; "" = no name level */
    bx_logger_version_opt version;
    const char *prefix;               /* "" */
    int64_t flush_logs_every_n_steps; /* 100 */
} bx_csv_logger_opts;
#define BX_CSV_LOGGER_OPTS_INIT {".", "lightning_logs", BX_LOGGER_VERSION_AUTO, "", 100}
bx_logger *bx_csv_logger_new(const bx_csv_logger_opts *o);

/* TensorBoardLogger: event files TensorBoard reads (TFRecord framing with
 * masked CRC32C, scalar summaries, hparams plugin) + hparams.yaml. */
typedef struct bx_tensorboard_logger_opts {
    const char *save_dir;
    const char *name;
    bx_logger_version_opt version;
    const char *prefix;
    bool default_hp_metric; /* true */
} bx_tensorboard_logger_opts;
#define BX_TENSORBOARD_LOGGER_OPTS_INIT {".", "lightning_logs", BX_LOGGER_VERSION_AUTO, "", true}
bx_logger *bx_tensorboard_logger_new(const bx_tensorboard_logger_opts *o);

#ifdef __cplusplus
}
#endif
#endif
