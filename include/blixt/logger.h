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
    /* One record: n metrics at `step` (step < 0: no step, Lightning's
     * step=None; the CSV logger then uses the row index). All values are
     * floats except as log_metrics_typed says. */
    bx_status (*log_metrics)(void *self, const char *const *names, const double *values, int n,
                             int64_t step);
    /* Hyper-parameters (a dict), merged into hparams.yaml. */
    bx_status (*log_hyperparams)(void *self, const bx_state *params);
    bx_status (*save)(void *self);
    /* status: "success", "failed", "interrupted". */
    bx_status (*finalize)(void *self, const char *status);
    /* Experiment name, version text ("0" or a user string), folders. The
     * version is resolved lazily (first free version_N) and then fixed.
     * (The name getter is `experiment_name`: `name` above is the class.) */
    const char *(*experiment_name)(void *self);
    const char *(*version)(void *self);
    const char *(*save_dir)(void *self);
    const char *(*log_dir)(void *self);
    void (*destroy)(void *self);
    /* Optional typed form of log_metrics (preferred by the dispatcher when
     * set): is_int[i] true marks a value that is a Python int (the epoch the
     * Trainer adds, counters), which the CSV logger writes as "3" instead of
     * "3.0". is_int NULL: every value is a float, except that the built-in
     * loggers treat an exactly integral value under the key "epoch" or
     * "step" as an int (what Lightning's own keys are). */
    bx_status (*log_metrics_typed)(void *self, const char *const *names, const double *values,
                                   const bool *is_int, int n, int64_t step);
} bx_logger_ops;

typedef struct bx_logger bx_logger;
/* Wraps ops + self; self is destroyed with ops->destroy when the logger is
 * freed. NULL on NOMEM. */
bx_logger *bx_logger_new(const bx_logger_ops *ops, void *self);
void bx_logger_free(bx_logger *lg);
const bx_logger_ops *bx_logger_get_ops(const bx_logger *lg);
void *bx_logger_self(const bx_logger *lg);
/* Dispatch helpers (a NULL member is a successful no-op; the name/version/
 * folder getters then return NULL). log_metrics = log_metrics_typed with
 * is_int NULL; log_metrics_typed calls ops->log_metrics_typed, or
 * ops->log_metrics (dropping is_int) when the former is NULL. */
bx_status bx_logger_log_metrics(bx_logger *lg, const char *const *names, const double *values, int n,
                                int64_t step);
bx_status bx_logger_log_metrics_typed(bx_logger *lg, const char *const *names,
                                      const double *values, const bool *is_int, int n,
                                      int64_t step);
bx_status bx_logger_log_hyperparams(bx_logger *lg, const bx_state *params);
bx_status bx_logger_save(bx_logger *lg);
bx_status bx_logger_finalize(bx_logger *lg, const char *status);
const char *bx_logger_name(bx_logger *lg);
const char *bx_logger_version(bx_logger *lg);
const char *bx_logger_save_dir(bx_logger *lg);
const char *bx_logger_log_dir(bx_logger *lg);

/* Version selection shared by the built-in loggers. Paths: root_dir =
 * save_dir/name (save_dir when name is ""), log_dir = root_dir/version_<v>
 * (root_dir/<text> for a text version). Automatic: the first use of the
 * version or log_dir (or the first write) scans root_dir for folders named
 * version_<int> and takes max+1 (0 when none or root_dir is missing, with
 * the warning "Missing logger folder: ..."); it is then fixed. */
typedef struct bx_logger_version_opt {
    int64_t number;     /* >= 0: version_<number>; -1: first free version_N */
    const char *text;   /* non-NULL: a folder of exactly this name (wins over number) */
} bx_logger_version_opt;
#define BX_LOGGER_VERSION_AUTO {-1, NULL}

/* CSVLogger: <save_dir>/<name>/version_<v>/metrics.csv + hparams.yaml, as
 * Lightning 1.9 writes them. Each log_metrics appends the row
 * {**metrics, "step": step} in memory (keys "{prefix}-{key}" with a prefix;
 * step < 0 = the row index); save() (the Trainer calls it after every
 * record) rewrites hparams.yaml (yaml.dump of the merged log_hyperparams
 * dicts, "{}\n" when none) and metrics.csv: header = keys in order of first
 * appearance, sparse rows with empty cells, csv QUOTE_MINIMAL, "\r\n" line
 * ends, floats as Python's str(float) ("1.0", "1e-05", "nan"), ints as
 * "3"; no metrics.csv while no row was logged. log_metrics also saves when
 * (step+1) % flush_logs_every_n_steps == 0 (<= 0: never); finalize saves
 * unless nothing was ever logged. log_dir is created on the first
 * log_metrics/log_hyperparams/save.
 * Errors: BX_ERR_IO naming the folder or file that cannot be created or
 * written; BX_ERR_INVALID for non-dict hyper-parameters. Returns NULL on
 * NOMEM or a version number < -1. The logger owns copies of all options. */
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
 * masked CRC32C, scalar summaries, hparams plugin) + hparams.yaml.
 * The first record creates log_dir and events.out.tfevents.<unix time>.
 * <host>.<pid>.<n> there, starting with the "brain.Event:2" event; each
 * metric is one Event{wall_time, step, Summary{tag, simple_value (float32)}}
 * flushed at once. log_hyperparams merges into the hparams.yaml dict and,
 * when default_hp_metric, logs hp_metric = -1 at step 0 followed by the
 * hparams plugin's experiment / session_start_info / session_end_info
 * summaries exactly as torch.utils.tensorboard's hparams() builds them
 * (nested dicts flattened to "a/b", bool/int/float as numbers, strings as
 * strings, anything else as its Python str()). save() writes hparams.yaml
 * once (when log_dir exists and the file does not); finalize fsyncs and
 * closes the event file, then saves. Errors as the CSVLogger's. */
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
