/* cli_int.h - internals of the command-line interface (LightningCLI's model):
 * the config tree (YAML through libyaml into a bx_state dict), typed
 * parameter tables used to validate and fill every section, the registry of
 * buildable classes, the classifier model, dataset builders and the model
 * summary. */
#ifndef BLIXT_CLI_INT_H
#define BLIXT_CLI_INT_H

#include "blixt/callbacks.h"
#include "blixt/cli.h"
#include "blixt/data.h"
#include "blixt/trainer.h"
#include "core/core_int.h"

#include <stdio.h>

/* ---- YAML ------------------------------------------------------------------ */
/* Parses YAML text (one document) into a new state tree (*out owned by the
 * caller). Plain scalars resolve as YAML 1.1 core types: null (~, null),
 * bool (true/false/yes/no/on/off), int, float (1e-3, .inf, .nan); quoted
 * scalars are strings. `what` names the source in messages ("cfg.yaml").
 * An empty document gives an empty dict when empty_is_dict. Errors:
 * BX_ERR_FORMAT "cfg.yaml:3:5: <libyaml problem>" or a duplicate key,
 * BX_ERR_NOMEM. */
bx_status bx__yaml_parse(const char *text, size_t n, const char *what, bool empty_is_dict,
                         bx_state **out);
/* Reads and parses a YAML file whose top level must be a mapping. Errors:
 * BX_ERR_IO (cannot read), those of bx__yaml_parse, BX_ERR_FORMAT (top level
 * not a mapping). */
bx_status bx__yaml_load_file(const char *path, bx_state **out);
/* Resolves one plain scalar text to a node (int/float/bool/null/string). */
bx_state *bx__yaml_scalar(const char *s);
/* YAML text of a config dict, keys in insertion order (caller frees with
 * bx__free). NULL on NOMEM. */
char *bx__yaml_emit(const bx_state *dict);

/* ---- typed parameter tables ---------------------------------------------- */
#define BX_P_INT 0x01u
#define BX_P_FLOAT 0x02u  /* ints are accepted and stored as floats */
#define BX_P_BOOL 0x04u
#define BX_P_STR 0x08u
#define BX_P_NULL 0x10u
#define BX_P_INTS 0x20u   /* a list of ints */
#define BX_P_FLOATS 0x40u /* a list of numbers */
#define BX_P_ANY 0x80u    /* any value (checked by the builder) */

typedef struct bx__param {
    const char *name;
    unsigned types;      /* BX_P_* mask */
    const char *def;     /* default as YAML text */
    const char *choices; /* "a|b|c" for strings, or NULL */
} bx__param;

/* Text "an int", "a float or null"... of a type mask into buf. */
const char *bx__types_text(unsigned types, char *buf, size_t n);
/* Short description of a node for messages: "'abc' (a string)". */
const char *bx__node_text(const bx_state *v, char *buf, size_t n);
/* Validates `given` (a dict or NULL) against params[0..n) and returns a new
 * dict with every parameter in table order: the given value (type-checked;
 * ints widened to floats where a float is expected) or the default.
 * `where` is the dotted key of the dict ("trainer", "model.init_args").
 * Errors (BX_ERR_INVALID, nothing returned): "<where>.<key>: unknown key
 * (known: a, b, ...)", "<where>.<key>: got 'x' (a string), expected an int",
 * "<where>.<key>: 'x' is not one of a|b". */
bx_status bx__params_resolve(const bx__param *params, int n, const bx_state *given,
                             const char *where, bx_state **out);

/* ---- the registry ---------------------------------------------------------- */
typedef enum bx__kind {
    BX_KIND_CALLBACK, BX_KIND_LOGGER, BX_KIND_OPTIMIZER, BX_KIND_SCHEDULER,
    BX_KIND_MODEL, BX_KIND_DATA, BX_KIND_COUNT
} bx__kind;

typedef struct bx__build_ctx bx__build_ctx;

/* One buildable class. build: makes the object from the resolved init_args
 * (every key present and typed) into *out; errors name `where`. */
typedef struct bx__class bx__class;
struct bx__class {
    bx__kind kind;
    const char *name;
    const bx__param *params;
    int nparams;
    const char *doc;
    bx_status (*build)(const bx__class *c, const bx_state *args, const char *where,
                       bx__build_ctx *ctx, void *out);
};

/* Classes of a kind (NULL-terminated table) and lookup by class_path (the
 * last dotted component is the name: "lightning.pytorch.callbacks.EarlyStopping").
 * NULL when unknown. */
const bx__class *const *bx__registry(bx__kind kind);
const bx__class *bx__registry_find(bx__kind kind, const char *class_path);
const char *bx__kind_name(bx__kind kind);
/* Comma-separated known names of a kind into buf. */
const char *bx__registry_names(bx__kind kind, char *buf, size_t n);

/* ---- context shared by the builders ---------------------------------------- */
typedef struct bx__data {
    bx_dataset *train, *val, *test; /* owned; val/test may be NULL */
    int64_t sample_shape[4];        /* shape of one x sample */
    int sample_ndim;
    int64_t num_classes;
    int64_t batch_size;
    bool shuffle;
    char source[1200];              /* where the data came from (for the log) */
} bx__data;

struct bx__build_ctx {
    const char *default_root_dir;
    int64_t seed;
    bx__data *data;       /* built before the model */
    bx_rng rng;           /* model initialisation */
    bx_trainer *trainer;  /* schedulers: the Trainer of the fit (NULL before it runs) */
    const bx_state *trainer_cfg; /* schedulers: the resolved trainer section (or NULL) */
};

/* Output objects of the builders (void *out above points to one of these). */
typedef struct bx__model_out {
    bx_module *module; /* the network, root type "<class>" */
} bx__model_out;

/* The classifier model (bx_model) around a network: cross entropy, metrics
 * train_loss (prog bar), val_loss, val_acc, test_loss, test_acc;
 * configure_optimizers from the optimizer / lr_scheduler config dicts
 * (resolved, copied). hparams: the model's resolved init_args. Takes the
 * module. NULL on NOMEM. */
typedef struct bx__classifier bx__classifier;
bx__classifier *bx__classifier_new(bx_module *net, const bx_state *hparams,
                                   const bx_state *optimizer, const bx_state *lr_scheduler);
void bx__classifier_free(bx__classifier *c);
bx_model bx__classifier_model(bx__classifier *c);

/* Builds the optimizer of a resolved {class_path, init_args} for params. */
bx_status bx__build_optimizer(const bx_state *spec, bx_tensor *const *params, int n,
                              bx_optimizer **out);
/* Builds the scheduler config of a resolved {class_path, init_args}.
 * Values a scheduler infers from the run (OneCycleLR's total_steps from the
 * Trainer's estimated stepping batches) come from tr during a fit
 * (configure_optimizers); with tr NULL (the check before anything runs) they
 * get a placeholder after checking, from the resolved trainer config
 * `trainer_cfg`, that they can be inferred. */
bx_status bx__build_scheduler(const bx_state *spec, bx_optimizer *opt, bx_trainer *tr,
                              const bx_state *trainer_cfg, bx_sched_config *out);

/* ---- model summary ------------------------------------------------------------ */
/* Lightning's ModelSummary table of m's direct children (max_depth 1):
 *   "  | Name | Type | Params" rows, then Trainable / Non-trainable / Total
 * params and the estimated size in MB (float32). Appended to a new string
 * (caller frees with bx__free); NULL on NOMEM. */
char *bx__model_summary(bx_module *m);
/* The same with max_depth levels of submodules (-1: all). */
char *bx__model_summary_depth(bx_module *m, int64_t max_depth);
/* Lightning's get_human_readable_count ("235 K", "1.2 M", "0  "). */
const char *bx__human_count(int64_t n, char *buf, size_t cap);
/* Callback "ModelSummary" printing the table to stdout at fit start. */
bx_callback *bx__model_summary_callback_new(int64_t max_depth);

/* Helpers for resolved dicts (keys known to exist with the right type). */
int64_t bx__arg_int(const bx_state *args, const char *key);
double bx__arg_float(const bx_state *args, const char *key);
bool bx__arg_bool(const bx_state *args, const char *key);
const char *bx__arg_str(const bx_state *args, const char *key); /* NULL for null */
bool bx__arg_is_null(const bx_state *args, const char *key);

/* GradientAccumulationScheduler from a mapping {epoch: factor}; errors name `where`. */
bx_status bx__gas_from_mapping(const bx_state *m, const char *where, bx_callback **out);

/* The callbacks of registry_callbacks.c (listed in registry.c's table):
 * StochasticWeightAveraging, EMAWeightAveraging, ModelPruning,
 * QuantizationAwareTraining, GPUStatsMonitor, Timer. */
extern const bx__class bx__cb_swa, bx__cb_ema, bx__cb_pruning, bx__cb_qat, bx__cb_gpu_stats, bx__cb_timer;

/* A duration value (Timer.duration, trainer.max_time) at `where`:
 * "DD:HH:MM:SS", a mapping of timedelta arguments {weeks, days, hours,
 * minutes, seconds, milliseconds, microseconds} (numbers, total >= 0), or
 * null (*is_null). Writes its "D:HH:MM:SS" text (whole seconds, rounded)
 * into text[0..n). Errors (BX_ERR_INVALID): "<where>: got 'x' (a string),
 * expected \"DD:HH:MM:SS\" ...", "<where>.<key>: unknown key ...". */
bx_status bx__duration_of(const bx_state *v, const char *where, bool *is_null, char *text, size_t n);

/* Datasets (data.c): builds ctx->data from the resolved data spec. */
bx_status bx__build_data(const bx_state *spec, bx__build_ctx *ctx, bx__data *out);
void bx__data_free(bx__data *d);

#endif

/* ---- config tree operations (config.c) -------------------------------------- */
/* Deep merge of src into dst (dicts merge key by key, everything else
 * replaces; a new class_path drops the old init_args). Errors: NOMEM. */
bx_status bx__config_merge(bx_state *dst, const bx_state *src);
/* Applies a dotted command-line override: key "trainer.max_epochs", value
 * YAML text. append (the "+=" form) adds a class (or value) to a list.
 * A key that walks into a list goes to its last item (a number picks an
 * item); a key under a class spec that is not class_path / init_args goes
 * into init_args. Errors: BX_ERR_INVALID naming the flag. */
bx_status bx__config_override(bx_state *cfg, const char *key, const char *value, bool append);
/* Validates a merged config and returns the resolved one: every section,
 * every Trainer flag and every init_args key present with its default,
 * class_paths checked against the registry. seed_everything true becomes a
 * drawn seed. Errors (BX_ERR_INVALID): one message naming the key, the value
 * and what was expected. */
bx_status bx__config_resolve(const bx_state *raw, bx_state **out);
/* The Trainer flags (name, types, default), for docs and --help. */
const bx__param *bx__trainer_params(int *n);
