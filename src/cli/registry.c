/* registry.c - what the CLI can build: the built-in callbacks, loggers,
 * optimizers and schedulers (models and datasets live in models.c and
 * data.c and are listed here). Adding a class is one table entry: a
 * parameter table (names, types, defaults as YAML text) and a builder that
 * reads the resolved options. Callbacks whose implementation lands later are
 * compiled in when their header macro exists. The training-technique
 * callbacks (SWA, EMA, pruning, QAT, GPU stats, Timer) are built in
 * registry_callbacks.c. */
#include "blixt/finetuning.h"
#include "cli/cli_int.h"

#include <math.h>
#include <string.h>

#define NP(a) ((int)(sizeof(a) / sizeof((a)[0])))

extern const bx__class bx__model_mlp, bx__model_lenet, bx__model_resnet, bx__model_cnn;
extern const bx__class bx__data_fashion_mnist, bx__data_mnist, bx__data_idx, bx__data_csv;

static const char *str_or_null(const bx_state *a, const char *k) { return bx__arg_str(a, k); }

static bx_status cb_result(bx_callback *cb, const char *where, void *out) {
    if (!cb) {
        bx__error_prefix("%s", where);
        return BX_ERR_INVALID;
    }
    *(bx_callback **)out = cb;
    return BX_OK;
}

/* ---- callbacks ------------------------------------------------------------- */
static const bx__param MC_PARAMS[] = {
    {"dirpath", BX_P_STR | BX_P_NULL, "null", NULL},
    {"filename", BX_P_STR | BX_P_NULL, "null", NULL},
    {"monitor", BX_P_STR | BX_P_NULL, "null", NULL},
    {"verbose", BX_P_BOOL, "false", NULL},
    {"save_last", BX_P_BOOL | BX_P_NULL, "null", NULL},
    {"save_top_k", BX_P_INT, "1", NULL},
    {"save_weights_only", BX_P_BOOL, "false", NULL},
    {"mode", BX_P_STR, "min", "min|max"},
    {"auto_insert_metric_name", BX_P_BOOL, "true", NULL},
    {"every_n_train_steps", BX_P_INT | BX_P_NULL, "null", NULL},
    {"train_time_interval", BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"every_n_epochs", BX_P_INT | BX_P_NULL, "null", NULL},
    {"save_on_train_epoch_end", BX_P_BOOL | BX_P_NULL, "null", NULL},
};
static bx_status build_mc(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                          void *out) {
    bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = str_or_null(a, "dirpath");
    o.filename = str_or_null(a, "filename");
    o.monitor = str_or_null(a, "monitor");
    o.verbose = bx__arg_bool(a, "verbose");
    o.save_last = bx__arg_bool(a, "save_last") ? 1 : 0;
    o.save_top_k = bx__arg_int(a, "save_top_k");
    o.save_weights_only = bx__arg_bool(a, "save_weights_only");
    o.mode = bx__arg_str(a, "mode");
    o.auto_insert_metric_name = bx__arg_bool(a, "auto_insert_metric_name");
    if (!bx__arg_is_null(a, "every_n_train_steps")) o.every_n_train_steps = bx__arg_int(a, "every_n_train_steps");
    if (!bx__arg_is_null(a, "train_time_interval")) o.train_time_interval_s = bx__arg_float(a, "train_time_interval");
    if (!bx__arg_is_null(a, "every_n_epochs")) o.every_n_epochs = bx__arg_int(a, "every_n_epochs");
    if (!bx__arg_is_null(a, "save_on_train_epoch_end"))
        o.save_on_train_epoch_end = bx__arg_bool(a, "save_on_train_epoch_end") ? 1 : 0;
    return cb_result(bx_model_checkpoint_new(&o), where, out);
}
static const bx__class CB_MC = {BX_KIND_CALLBACK, "ModelCheckpoint", MC_PARAMS, NP(MC_PARAMS),
                                "save checkpoints (top-k by a monitored metric, or the latest)", build_mc};

#ifdef BX_PROGRESS_BAR_OPTS_INIT
static const bx__param PB_PARAMS[] = {{"refresh_rate", BX_P_INT, "1", NULL}};
static bx_status build_pb(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                          void *out) {
    bx_progress_bar_opts o = BX_PROGRESS_BAR_OPTS_INIT;
    o.refresh_rate = bx__arg_int(a, "refresh_rate");
    return cb_result(bx_progress_bar_new_ex(&o), where, out);
}
static const bx__class CB_PB = {BX_KIND_CALLBACK, "ProgressBar", PB_PARAMS, NP(PB_PARAMS),
                                "tqdm-like progress bar (TQDMProgressBar)", build_pb};
#else
static bx_status build_pb(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                          void *out) {
    return cb_result(bx_progress_bar_new(), where, out);
}
static const bx__class CB_PB = {BX_KIND_CALLBACK, "ProgressBar", NULL, 0, "progress bar", build_pb};
#endif

static const bx__param MS_PARAMS[] = {{"max_depth", BX_P_INT, "1", NULL}};
static bx_status build_ms(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                          void *out) {
    return cb_result(bx__model_summary_callback_new(bx__arg_int(a, "max_depth")), where, out);
}
static const bx__class CB_MS = {BX_KIND_CALLBACK, "ModelSummary", MS_PARAMS, NP(MS_PARAMS),
                                "print the model summary table at fit start", build_ms};

#ifdef BX_EARLY_STOPPING_OPTS_INIT
static const bx__param ES_PARAMS[] = {
    {"monitor", BX_P_STR, "val_loss", NULL},
    {"min_delta", BX_P_FLOAT, "0.0", NULL},
    {"patience", BX_P_INT, "3", NULL},
    {"verbose", BX_P_BOOL, "false", NULL},
    {"mode", BX_P_STR, "min", "min|max"},
    {"strict", BX_P_BOOL, "true", NULL},
    {"check_finite", BX_P_BOOL, "true", NULL},
    {"stopping_threshold", BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"divergence_threshold", BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"check_on_train_epoch_end", BX_P_BOOL | BX_P_NULL, "null", NULL},
};
static bx_status build_es(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                          void *out) {
    bx_early_stopping_opts o = BX_EARLY_STOPPING_OPTS_INIT;
    o.monitor = bx__arg_str(a, "monitor");
    o.min_delta = bx__arg_float(a, "min_delta");
    o.patience = bx__arg_int(a, "patience");
    o.verbose = bx__arg_bool(a, "verbose");
    o.mode = bx__arg_str(a, "mode");
    o.strict = bx__arg_bool(a, "strict");
    o.check_finite = bx__arg_bool(a, "check_finite");
    o.stopping_threshold = bx__arg_float(a, "stopping_threshold");
    o.divergence_threshold = bx__arg_float(a, "divergence_threshold");
    if (!bx__arg_is_null(a, "check_on_train_epoch_end"))
        o.check_on_train_epoch_end = bx__arg_bool(a, "check_on_train_epoch_end") ? 1 : 0;
    return cb_result(bx_early_stopping_new(&o), where, out);
}
static const bx__class CB_ES = {BX_KIND_CALLBACK, "EarlyStopping", ES_PARAMS, NP(ES_PARAMS),
                                "stop when a monitored metric stops improving", build_es};
#endif

#ifdef BX_LR_MONITOR_OPTS_INIT
static const bx__param LRM_PARAMS[] = {
    {"logging_interval", BX_P_STR | BX_P_NULL, "null", "step|epoch"},
    {"log_momentum", BX_P_BOOL, "false", NULL},
};
static bx_status build_lrm(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_lr_monitor_opts o = BX_LR_MONITOR_OPTS_INIT;
    o.logging_interval = bx__arg_str(a, "logging_interval");
    o.log_momentum = bx__arg_bool(a, "log_momentum");
    return cb_result(bx_lr_monitor_new(&o), where, out);
}
static const bx__class CB_LRM = {BX_KIND_CALLBACK, "LearningRateMonitor", LRM_PARAMS, NP(LRM_PARAMS),
                                 "log the learning rate (and momentum) of every optimizer", build_lrm};

/* scheduling: {epoch: factor} given as a mapping */
static const bx__param GAS_PARAMS[] = {{"scheduling", BX_P_ANY, "null", NULL}};
static bx_status build_gas(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    char w[300];
    snprintf(w, sizeof w, "%s.scheduling", where);
    return bx__gas_from_mapping(bx_state_get(a, "scheduling"), w, out);
}
static const bx__class CB_GAS = {BX_KIND_CALLBACK, "GradientAccumulationScheduler", GAS_PARAMS, NP(GAS_PARAMS),
                                 "change accumulate_grad_batches by epoch", build_gas};
#endif

/* A GradientAccumulationScheduler from {epoch: factor} (also Lightning's
 * Trainer(accumulate_grad_batches={...})). */
bx_status bx__gas_from_mapping(const bx_state *s, const char *where, bx_callback **out) {
    char vb[300];
    if (!s || bx_state_typeof(s) != BX_STATE_DICT || bx_state_len(s) == 0 || bx_state_len(s) > 64)
        return bx__error(BX_ERR_INVALID, "%s: got %s, expected a mapping {epoch: factor}", where,
                         s ? bx__node_text(s, vb, sizeof vb) : "nothing");
#ifdef BX_LR_MONITOR_OPTS_INIT
    int64_t ep[64], fa[64];
    int n = (int)bx_state_len(s);
    for (int i = 0; i < n; i++) {
        const char *k = bx_state_key_at(s, i);
        bx_state *kv = bx__yaml_scalar(k);
        bool ok = kv && bx_state_typeof(kv) == BX_STATE_INT &&
                  bx_state_typeof(bx_state_value_at(s, i)) == BX_STATE_INT;
        ep[i] = ok ? bx_state_get_int(kv) : 0;
        bx_state_free(kv);
        if (!ok)
            return bx__error(BX_ERR_INVALID, "%s: got the entry '%s': %s, expected {int epoch: int factor}", where, k,
                             bx__node_text(bx_state_value_at(s, i), vb, sizeof vb));
        fa[i] = bx_state_get_int(bx_state_value_at(s, i));
    }
    return cb_result(bx_grad_accum_scheduler_new(ep, fa, n), where, out);
#else
    return bx__error(BX_ERR_UNSUPPORTED, "%s: a mapping needs the GradientAccumulationScheduler callback, "
                                         "which this build does not have", where);
#endif
}

#ifdef BX_BACKBONE_FINETUNING_OPTS_INIT
static const bx__param BBF_PARAMS[] = {
    {"unfreeze_backbone_at_epoch", BX_P_INT, "10", NULL},
    {"backbone_initial_ratio_lr", BX_P_FLOAT, "0.1", NULL},
    {"backbone_initial_lr", BX_P_FLOAT | BX_P_NULL, "null", NULL},
    {"should_align", BX_P_BOOL, "true", NULL},
    {"initial_denom_lr", BX_P_FLOAT, "10.0", NULL},
    {"train_bn", BX_P_BOOL, "true", NULL},
    {"verbose", BX_P_BOOL, "false", NULL},
    {"rounding", BX_P_INT, "12", NULL},
    {"backbone", BX_P_STR, "backbone", NULL},
    {"unfreeze_on_resume", BX_P_BOOL, "false", NULL},
};
static bx_status build_bbf(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_backbone_finetuning_opts o = BX_BACKBONE_FINETUNING_OPTS_INIT;
    o.unfreeze_backbone_at_epoch = bx__arg_int(a, "unfreeze_backbone_at_epoch");
    o.backbone_initial_ratio_lr = bx__arg_float(a, "backbone_initial_ratio_lr");
    o.backbone_initial_lr = bx__arg_float(a, "backbone_initial_lr");
    o.should_align = bx__arg_bool(a, "should_align");
    o.initial_denom_lr = bx__arg_float(a, "initial_denom_lr");
    o.train_bn = bx__arg_bool(a, "train_bn");
    o.verbose = bx__arg_bool(a, "verbose");
    o.rounding = (int)bx__arg_int(a, "rounding");
    o.backbone = bx__arg_str(a, "backbone");
    o.unfreeze_on_resume = bx__arg_bool(a, "unfreeze_on_resume");
    return cb_result(bx_backbone_finetuning_new(&o), where, out);
}
static const bx__class CB_BBF = {BX_KIND_CALLBACK, "BackboneFinetuning", BBF_PARAMS, NP(BBF_PARAMS),
                                 "freeze the submodule `backbone` (a dotted path, e.g. layer1), unfreeze it later",
                                 build_bbf};
#endif

/* ---- loggers ----------------------------------------------------------------- */
static const bx__param CSV_PARAMS[] = {
    {"save_dir", BX_P_STR | BX_P_NULL, "null", NULL},
    {"name", BX_P_STR | BX_P_NULL, "lightning_logs", NULL},
    {"version", BX_P_INT | BX_P_STR | BX_P_NULL, "null", NULL},
    {"prefix", BX_P_STR, "''", NULL},
    {"flush_logs_every_n_steps", BX_P_INT, "100", NULL},
};
static bx_logger_version_opt version_of(const bx_state *a) {
    bx_logger_version_opt v = BX_LOGGER_VERSION_AUTO;
    const bx_state *s = bx_state_get(a, "version");
    if (s && bx_state_typeof(s) == BX_STATE_INT) v.number = bx_state_get_int(s);
    if (s && bx_state_typeof(s) == BX_STATE_STRING) v.text = bx_state_get_string(s);
    return v;
}
static bx_status lg_result(bx_logger *lg, const char *where, void *out) {
    if (!lg) {
        bx__error(BX_ERR_INVALID, "%s: cannot build the logger: %s", where, bx_errmsg());
        return BX_ERR_INVALID;
    }
    *(bx_logger **)out = lg;
    return BX_OK;
}
static bx_status build_csv(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_csv_logger_opts o = BX_CSV_LOGGER_OPTS_INIT;
    o.save_dir = bx__arg_str(a, "save_dir") ? bx__arg_str(a, "save_dir") : ctx->default_root_dir;
    o.name = bx__arg_str(a, "name") ? bx__arg_str(a, "name") : "";
    o.version = version_of(a);
    o.prefix = bx__arg_str(a, "prefix");
    o.flush_logs_every_n_steps = bx__arg_int(a, "flush_logs_every_n_steps");
    return lg_result(bx_csv_logger_new(&o), where, out);
}
static const bx__class LG_CSV = {BX_KIND_LOGGER, "CSVLogger", CSV_PARAMS, NP(CSV_PARAMS),
                                 "metrics.csv + hparams.yaml", build_csv};
static const bx__param TB_PARAMS[] = {
    {"save_dir", BX_P_STR | BX_P_NULL, "null", NULL},
    {"name", BX_P_STR | BX_P_NULL, "lightning_logs", NULL},
    {"version", BX_P_INT | BX_P_STR | BX_P_NULL, "null", NULL},
    {"prefix", BX_P_STR, "''", NULL},
    {"default_hp_metric", BX_P_BOOL, "true", NULL},
};
static bx_status build_tb(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                          void *out) {
    bx_tensorboard_logger_opts o = BX_TENSORBOARD_LOGGER_OPTS_INIT;
    o.save_dir = bx__arg_str(a, "save_dir") ? bx__arg_str(a, "save_dir") : ctx->default_root_dir;
    o.name = bx__arg_str(a, "name") ? bx__arg_str(a, "name") : "";
    o.version = version_of(a);
    o.prefix = bx__arg_str(a, "prefix");
    o.default_hp_metric = bx__arg_bool(a, "default_hp_metric");
    return lg_result(bx_tensorboard_logger_new(&o), where, out);
}
static const bx__class LG_TB = {BX_KIND_LOGGER, "TensorBoardLogger", TB_PARAMS, NP(TB_PARAMS),
                                "TensorBoard event files + hparams.yaml", build_tb};

/* ---- optimizers ---------------------------------------------------------------- */
typedef struct opt_out {
    bx_tensor *const *params;
    int n;
    bx_optimizer *opt;
} opt_out;

static bx_status opt_finish(bx_optimizer *o, const char *where, void *out) {
    opt_out *r = out;
    if (!o) {
        bx__error_prefix("%s", where);
        return BX_ERR_INVALID;
    }
    bx_status s = r->n > 0 ? bx_optimizer_add_group(o, r->params, r->n, NULL) : BX_OK;
    if (s != BX_OK) {
        bx_optimizer_free(o);
        bx__error_prefix("%s", where);
        return s;
    }
    r->opt = o;
    return BX_OK;
}
static const bx__param SGD_PARAMS[] = {
    {"lr", BX_P_FLOAT, "0.01", NULL},      {"momentum", BX_P_FLOAT, "0.0", NULL},
    {"dampening", BX_P_FLOAT, "0.0", NULL}, {"weight_decay", BX_P_FLOAT, "0.0", NULL},
    {"nesterov", BX_P_BOOL, "false", NULL}, {"maximize", BX_P_BOOL, "false", NULL},
};
static bx_status build_sgd(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = bx__arg_float(a, "lr");
    o.momentum = bx__arg_float(a, "momentum");
    o.dampening = bx__arg_float(a, "dampening");
    o.weight_decay = bx__arg_float(a, "weight_decay");
    o.nesterov = bx__arg_bool(a, "nesterov");
    o.maximize = bx__arg_bool(a, "maximize");
    return opt_finish(bx_sgd_new(&o), where, out);
}
static const bx__param ADAM_PARAMS[] = {
    {"lr", BX_P_FLOAT, "0.001", NULL},        {"betas", BX_P_FLOATS, "[0.9, 0.999]", NULL},
    {"eps", BX_P_FLOAT, "1e-08", NULL},       {"weight_decay", BX_P_FLOAT, "0.0", NULL},
    {"amsgrad", BX_P_BOOL, "false", NULL},    {"maximize", BX_P_BOOL, "false", NULL},
};
static const bx__param ADAMW_PARAMS[] = {
    {"lr", BX_P_FLOAT, "0.001", NULL},        {"betas", BX_P_FLOATS, "[0.9, 0.999]", NULL},
    {"eps", BX_P_FLOAT, "1e-08", NULL},       {"weight_decay", BX_P_FLOAT, "0.01", NULL},
    {"amsgrad", BX_P_BOOL, "false", NULL},    {"maximize", BX_P_BOOL, "false", NULL},
};
static bx_status build_adam(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                            void *out) {
    bx_adam_opts o = BX_ADAM_OPTS_INIT;
    o.lr = bx__arg_float(a, "lr");
    const bx_state *b = bx_state_get(a, "betas");
    if (bx_state_len(b) != 2)
        return bx__error(BX_ERR_INVALID, "%s.betas: got a list of %zu items, expected 2 numbers", where,
                         bx_state_len(b));
    o.betas[0] = bx_state_get_float(bx_state_at(b, 0));
    o.betas[1] = bx_state_get_float(bx_state_at(b, 1));
    o.eps = bx__arg_float(a, "eps");
    o.weight_decay = bx__arg_float(a, "weight_decay");
    o.amsgrad = bx__arg_bool(a, "amsgrad");
    o.maximize = bx__arg_bool(a, "maximize");
    return opt_finish(!strcmp(c->name, "AdamW") ? bx_adamw_new(&o) : bx_adam_new(&o), where, out);
}
static const bx__param RMS_PARAMS[] = {
    {"lr", BX_P_FLOAT, "0.01", NULL},       {"alpha", BX_P_FLOAT, "0.99", NULL},
    {"eps", BX_P_FLOAT, "1e-08", NULL},     {"weight_decay", BX_P_FLOAT, "0.0", NULL},
    {"momentum", BX_P_FLOAT, "0.0", NULL},  {"centered", BX_P_BOOL, "false", NULL},
    {"maximize", BX_P_BOOL, "false", NULL},
};
static bx_status build_rms(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_rmsprop_opts o = BX_RMSPROP_OPTS_INIT;
    o.lr = bx__arg_float(a, "lr");
    o.alpha = bx__arg_float(a, "alpha");
    o.eps = bx__arg_float(a, "eps");
    o.weight_decay = bx__arg_float(a, "weight_decay");
    o.momentum = bx__arg_float(a, "momentum");
    o.centered = bx__arg_bool(a, "centered");
    o.maximize = bx__arg_bool(a, "maximize");
    return opt_finish(bx_rmsprop_new(&o), where, out);
}
static const bx__class OPT_SGD = {BX_KIND_OPTIMIZER, "SGD", SGD_PARAMS, NP(SGD_PARAMS), "torch.optim.SGD", build_sgd};
static const bx__class OPT_ADAM = {BX_KIND_OPTIMIZER, "Adam", ADAM_PARAMS, NP(ADAM_PARAMS), "torch.optim.Adam",
                                   build_adam};
static const bx__class OPT_ADAMW = {BX_KIND_OPTIMIZER, "AdamW", ADAMW_PARAMS, NP(ADAMW_PARAMS),
                                    "torch.optim.AdamW", build_adam};
static const bx__class OPT_RMS = {BX_KIND_OPTIMIZER, "RMSprop", RMS_PARAMS, NP(RMS_PARAMS),
                                  "torch.optim.RMSprop", build_rms};

/* ---- schedulers ------------------------------------------------------------------ */
/* Every scheduler also takes Lightning's scheduler-config keys. */
#define SCHED_COMMON                                                                              \
    {"interval", BX_P_STR, "epoch", "epoch|step"}, {"frequency", BX_P_INT, "1", NULL},          \
        {"name", BX_P_STR | BX_P_NULL, "null", NULL}

typedef struct sched_out {
    bx_optimizer *opt;
    bx_sched_config sc;
} sched_out;

static bx_status sched_finish(bx_scheduler *s, const bx_state *a, const char *where, void *out) {
    sched_out *r = out;
    if (!s) {
        bx__error_prefix("%s", where);
        return BX_ERR_INVALID;
    }
    bx_sched_config sc = BX_SCHED_CONFIG_INIT;
    sc.scheduler = s;
    sc.interval = !strcmp(bx__arg_str(a, "interval"), "step") ? BX_INTERVAL_STEP : BX_INTERVAL_EPOCH;
    sc.frequency = bx__arg_int(a, "frequency");
    sc.name = bx__arg_str(a, "name");
    if (sc.frequency < 1) {
        bx_scheduler_free(s);
        return bx__error(BX_ERR_INVALID, "%s.frequency: got %lld, expected an int >= 1", where,
                         (long long)sc.frequency);
    }
    if (bx_state_get(a, "monitor")) sc.monitor = bx__arg_str(a, "monitor");
    r->sc = sc;
    return BX_OK;
}
static const bx__param STEP_PARAMS[] = {{"step_size", BX_P_INT, "1", NULL}, {"gamma", BX_P_FLOAT, "0.1", NULL},
                                        SCHED_COMMON};
static bx_status build_step(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                            void *out) {
    bx_step_lr_opts o = BX_STEP_LR_OPTS_INIT;
    o.step_size = bx__arg_int(a, "step_size");
    o.gamma = bx__arg_float(a, "gamma");
    return sched_finish(bx_step_lr_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param MSTEP_PARAMS[] = {{"milestones", BX_P_INTS, "[]", NULL}, {"gamma", BX_P_FLOAT, "0.1", NULL},
                                         SCHED_COMMON};
static bx_status build_mstep(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                             void *out) {
    bx_multistep_lr_opts o = BX_MULTISTEP_LR_OPTS_INIT;
    const bx_state *m = bx_state_get(a, "milestones");
    int64_t ms[64];
    int n = (int)BX_MIN(bx_state_len(m), 64);
    for (int i = 0; i < n; i++) ms[i] = bx_state_get_int(bx_state_at(m, i));
    o.milestones = ms;
    o.n_milestones = n;
    o.gamma = bx__arg_float(a, "gamma");
    return sched_finish(bx_multistep_lr_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param EXP_PARAMS[] = {{"gamma", BX_P_FLOAT, "0.9", NULL}, SCHED_COMMON};
static bx_status build_exp(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_exponential_lr_opts o = BX_EXPONENTIAL_LR_OPTS_INIT;
    o.gamma = bx__arg_float(a, "gamma");
    return sched_finish(bx_exponential_lr_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param COS_PARAMS[] = {{"T_max", BX_P_INT, "10", NULL}, {"eta_min", BX_P_FLOAT, "0.0", NULL},
                                       SCHED_COMMON};
static bx_status build_cos(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_cosine_lr_opts o = BX_COSINE_LR_OPTS_INIT;
    o.T_max = bx__arg_int(a, "T_max");
    o.eta_min = bx__arg_float(a, "eta_min");
    return sched_finish(bx_cosine_lr_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param COSWR_PARAMS[] = {{"T_0", BX_P_INT, "10", NULL}, {"T_mult", BX_P_INT, "1", NULL},
                                         {"eta_min", BX_P_FLOAT, "0.0", NULL}, SCHED_COMMON};
static bx_status build_coswr(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                             void *out) {
    bx_cosine_warm_restarts_opts o = BX_COSINE_WARM_RESTARTS_OPTS_INIT;
    o.T_0 = bx__arg_int(a, "T_0");
    o.T_mult = bx__arg_int(a, "T_mult");
    o.eta_min = bx__arg_float(a, "eta_min");
    return sched_finish(bx_cosine_warm_restarts_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param LIN_PARAMS[] = {{"start_factor", BX_P_FLOAT, "0.3333333333333333", NULL},
                                       {"end_factor", BX_P_FLOAT, "1.0", NULL},
                                       {"total_iters", BX_P_INT, "5", NULL}, SCHED_COMMON};
static bx_status build_lin(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_linear_lr_opts o = BX_LINEAR_LR_OPTS_INIT;
    o.start_factor = bx__arg_float(a, "start_factor");
    o.end_factor = bx__arg_float(a, "end_factor");
    o.total_iters = bx__arg_int(a, "total_iters");
    return sched_finish(bx_linear_lr_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param ONE_PARAMS[] = {
    {"max_lr", BX_P_FLOAT, "0.01", NULL},        {"total_steps", BX_P_INT | BX_P_NULL, "null", NULL},
    {"epochs", BX_P_INT | BX_P_NULL, "null", NULL}, {"steps_per_epoch", BX_P_INT | BX_P_NULL, "null", NULL},
    {"pct_start", BX_P_FLOAT, "0.3", NULL},      {"anneal_strategy", BX_P_STR, "cos", "cos|linear"},
    {"cycle_momentum", BX_P_BOOL, "true", NULL}, {"base_momentum", BX_P_FLOAT, "0.85", NULL},
    {"max_momentum", BX_P_FLOAT, "0.95", NULL},  {"div_factor", BX_P_FLOAT, "25.0", NULL},
    {"final_div_factor", BX_P_FLOAT, "10000.0", NULL}, {"three_phase", BX_P_BOOL, "false", NULL},
    {"interval", BX_P_STR, "step", "epoch|step"}, {"frequency", BX_P_INT, "1", NULL},
    {"name", BX_P_STR | BX_P_NULL, "null", NULL},
};
/* OneCycleLR's total_steps when the config leaves it (and epochs x
 * steps_per_epoch) out: the scheduler steps of the fit, from the Trainer's
 * estimated stepping batches (Lightning users write
 * total_steps=self.trainer.estimated_stepping_batches): one per optimizer
 * step with interval "step", one per epoch with "epoch", divided by the
 * frequency. Before the fit (tr NULL) only checks, from the trainer config,
 * that it can be inferred, and gives a placeholder. */
static bx_status one_cycle_total(const bx_state *a, const char *where, const bx__build_ctx *ctx, int64_t *total) {
    bool per_step = !strcmp(bx__arg_str(a, "interval"), "step");
    int64_t freq = bx__arg_int(a, "frequency") < 1 ? 1 : bx__arg_int(a, "frequency"), n = 0;
    const char *why = NULL;
    char wb[256];
    if (ctx && ctx->trainer) {
        if (per_step) {
            if (bx_trainer_estimated_stepping_batches(ctx->trainer, &n) != BX_OK) {
                snprintf(wb, sizeof wb, "%s", bx_errmsg()); /* bx__error below rewrites the message buffer */
                why = wb;
            }
        } else {
            n = bx_trainer_max_epochs(ctx->trainer);
            if (n < 1) why = "max_epochs is -1 (no epoch count)";
        }
    } else if (ctx && ctx->trainer_cfg) {
        const bx_state *t = ctx->trainer_cfg;
        int64_t me = bx__arg_is_null(t, "max_epochs") ? BX_UNSET : bx__arg_int(t, "max_epochs");
        int64_t ms = bx__arg_int(t, "max_steps");
        const bx_state *ag = bx_state_get(t, "accumulate_grad_batches");
        const bx_state *fdr = bx_state_get(t, "fast_dev_run");
        bool fast = bx_state_typeof(fdr) == BX_STATE_BOOL ? bx_state_get_bool(fdr) : bx_state_get_int(fdr) > 0;
        if (fast) {
            /* fast_dev_run: one epoch of a few batches, always finite */
        } else if (per_step && me == -1 && ms == -1) {
            why = "training is infinite (trainer.max_epochs=-1 and trainer.max_steps=-1)";
        } else if (!per_step && (me == -1 || (me == BX_UNSET && ms != -1))) {
            why = "interval 'epoch' needs trainer.max_epochs (got none)";
        } else if (per_step && bx_state_typeof(ag) == BX_STATE_DICT) {
            for (size_t i = 0; i < bx_state_len(ag) && !why; i++)
                if (strcmp(bx_state_key_at(ag, i), "0")) {
                    snprintf(wb, sizeof wb, "trainer.accumulate_grad_batches changes at epoch %s, so the "
                                            "number of optimizer steps cannot be estimated", bx_state_key_at(ag, i));
                    why = wb;
                }
        }
        n = 1000000; /* placeholder: the real value is computed in configure_optimizers */
    } else {
        why = "no Trainer to infer it from";
    }
    if (why)
        return bx__error(BX_ERR_INVALID, "%s.total_steps: got null and no epochs/steps_per_epoch, and it cannot be "
                                         "inferred from the Trainer: %s; give total_steps", where, why);
    *total = (n + freq - 1) / freq;
    if (*total < 1)
        return bx__error(BX_ERR_INVALID, "%s.total_steps: inferred %lld from the Trainer (no training steps); give "
                                         "total_steps", where, (long long)*total);
    return BX_OK;
}
static bx_status build_one(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_one_cycle_lr_opts o = BX_ONE_CYCLE_LR_OPTS_INIT;
    o.max_lr = bx__arg_float(a, "max_lr");
    bool has_e = !bx__arg_is_null(a, "epochs"), has_s = !bx__arg_is_null(a, "steps_per_epoch");
    if (!bx__arg_is_null(a, "total_steps")) {
        o.total_steps = bx__arg_int(a, "total_steps");
    } else if (has_e || has_s) {
        /* torch: total_steps = epochs * steps_per_epoch, both needed */
        if (!has_e || !has_s)
            return bx__error(BX_ERR_INVALID, "%s.%s: got null, expected an int >= 1: OneCycleLR needs total_steps, "
                                             "or both epochs and steps_per_epoch", where, has_e ? "steps_per_epoch" : "epochs");
        int64_t e = bx__arg_int(a, "epochs"), sp = bx__arg_int(a, "steps_per_epoch");
        if (e < 1 || sp < 1)
            return bx__error(BX_ERR_INVALID, "%s.%s: got %lld, expected an int >= 1", where, e < 1 ? "epochs" : "steps_per_epoch",
                             (long long)(e < 1 ? e : sp));
        o.total_steps = e * sp;
    } else {
        bx_status s = one_cycle_total(a, where, ctx, &o.total_steps);
        if (s != BX_OK) return s;
    }
    o.pct_start = bx__arg_float(a, "pct_start");
    o.anneal_strategy = !strcmp(bx__arg_str(a, "anneal_strategy"), "linear") ? BX_ANNEAL_LINEAR : BX_ANNEAL_COS;
    o.cycle_momentum = bx__arg_bool(a, "cycle_momentum");
    o.base_momentum = bx__arg_float(a, "base_momentum");
    o.max_momentum = bx__arg_float(a, "max_momentum");
    o.div_factor = bx__arg_float(a, "div_factor");
    o.final_div_factor = bx__arg_float(a, "final_div_factor");
    o.three_phase = bx__arg_bool(a, "three_phase");
    return sched_finish(bx_one_cycle_lr_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param PLAT_PARAMS[] = {
    {"monitor", BX_P_STR, "val_loss", NULL},     {"mode", BX_P_STR, "min", "min|max"},
    {"factor", BX_P_FLOAT, "0.1", NULL},         {"patience", BX_P_INT, "10", NULL},
    {"threshold", BX_P_FLOAT, "0.0001", NULL},   {"threshold_mode", BX_P_STR, "rel", "rel|abs"},
    {"cooldown", BX_P_INT, "0", NULL},           {"min_lr", BX_P_FLOAT, "0.0", NULL},
    {"eps", BX_P_FLOAT, "1e-08", NULL},          SCHED_COMMON,
};
static bx_status build_plat(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                            void *out) {
    bx_plateau_opts o = BX_PLATEAU_OPTS_INIT;
    o.mode = !strcmp(bx__arg_str(a, "mode"), "max") ? BX_PLATEAU_MAX : BX_PLATEAU_MIN;
    o.factor = bx__arg_float(a, "factor");
    o.patience = bx__arg_int(a, "patience");
    o.threshold = bx__arg_float(a, "threshold");
    o.threshold_mode = !strcmp(bx__arg_str(a, "threshold_mode"), "abs") ? BX_THRESHOLD_ABS : BX_THRESHOLD_REL;
    o.cooldown = bx__arg_int(a, "cooldown");
    o.min_lr = bx__arg_float(a, "min_lr");
    o.eps = bx__arg_float(a, "eps");
    return sched_finish(bx_plateau_new(((sched_out *)out)->opt, &o), a, where, out);
}
static const bx__param SWA_PARAMS[] = {{"swa_lr", BX_P_FLOAT, "0.05", NULL},
                                       {"anneal_epochs", BX_P_INT, "10", NULL},
                                       {"anneal_strategy", BX_P_STR, "cos", "cos|linear"}, SCHED_COMMON};
static bx_status build_swa(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx_swalr_opts o = BX_SWALR_OPTS_INIT;
    o.swa_lr = bx__arg_float(a, "swa_lr");
    o.anneal_epochs = bx__arg_int(a, "anneal_epochs");
    o.anneal_strategy = !strcmp(bx__arg_str(a, "anneal_strategy"), "linear") ? BX_ANNEAL_LINEAR : BX_ANNEAL_COS;
    return sched_finish(bx_swalr_new(((sched_out *)out)->opt, &o), a, where, out);
}
#define SCHED(var, nm, P, fn) \
    static const bx__class var = {BX_KIND_SCHEDULER, nm, P, NP(P), "torch.optim.lr_scheduler." nm, fn}
SCHED(SC_STEP, "StepLR", STEP_PARAMS, build_step);
SCHED(SC_MSTEP, "MultiStepLR", MSTEP_PARAMS, build_mstep);
SCHED(SC_EXP, "ExponentialLR", EXP_PARAMS, build_exp);
SCHED(SC_COS, "CosineAnnealingLR", COS_PARAMS, build_cos);
SCHED(SC_COSWR, "CosineAnnealingWarmRestarts", COSWR_PARAMS, build_coswr);
SCHED(SC_LIN, "LinearLR", LIN_PARAMS, build_lin);
SCHED(SC_ONE, "OneCycleLR", ONE_PARAMS, build_one);
SCHED(SC_PLAT, "ReduceLROnPlateau", PLAT_PARAMS, build_plat);
SCHED(SC_SWA, "SWALR", SWA_PARAMS, build_swa);

/* ---- the tables ------------------------------------------------------------------- */
static const bx__class *const CALLBACKS[] = {
    &CB_MC,
#ifdef BX_EARLY_STOPPING_OPTS_INIT
    &CB_ES,
#endif
#ifdef BX_LR_MONITOR_OPTS_INIT
    &CB_LRM, &CB_GAS,
#endif
#ifdef BX_BACKBONE_FINETUNING_OPTS_INIT
    &CB_BBF,
#endif
    &bx__cb_swa, &bx__cb_ema, &bx__cb_pruning, &bx__cb_qat, &bx__cb_gpu_stats, &bx__cb_timer,
    &CB_PB, &CB_MS, NULL};
static const bx__class *const LOGGERS[] = {&LG_CSV, &LG_TB, NULL};
static const bx__class *const OPTIMIZERS[] = {&OPT_SGD, &OPT_ADAM, &OPT_ADAMW, &OPT_RMS, NULL};
static const bx__class *const SCHEDULERS[] = {&SC_STEP, &SC_MSTEP, &SC_EXP, &SC_COS, &SC_COSWR,
                                              &SC_LIN, &SC_ONE, &SC_PLAT, &SC_SWA, NULL};
static const bx__class *const MODELS[] = {&bx__model_mlp, &bx__model_lenet, &bx__model_resnet, &bx__model_cnn, NULL};
static const bx__class *const DATA[] = {&bx__data_fashion_mnist, &bx__data_mnist, &bx__data_idx, &bx__data_csv,
                                        NULL};

const bx__class *const *bx__registry(bx__kind kind) {
    switch (kind) {
    case BX_KIND_CALLBACK: return CALLBACKS;
    case BX_KIND_LOGGER: return LOGGERS;
    case BX_KIND_OPTIMIZER: return OPTIMIZERS;
    case BX_KIND_SCHEDULER: return SCHEDULERS;
    case BX_KIND_MODEL: return MODELS;
    case BX_KIND_DATA: return DATA;
    default: return NULL;
    }
}

const char *bx__kind_name(bx__kind kind) {
    static const char *const N[] = {"callback", "logger", "optimizer", "lr_scheduler", "model", "data"};
    return kind < BX_KIND_COUNT ? N[kind] : "?";
}

const bx__class *bx__registry_find(bx__kind kind, const char *class_path) {
    const char *dot = strrchr(class_path, '.');
    const char *name = dot ? dot + 1 : class_path;
    for (const bx__class *const *c = bx__registry(kind); c && *c; c++)
        if (!strcmp((*c)->name, name)) return *c;
    /* Lightning's spellings of the same classes */
    if (kind == BX_KIND_CALLBACK && (!strcmp(name, "TQDMProgressBar") || !strcmp(name, "RichProgressBar")))
        return bx__registry_find(kind, "ProgressBar");
    return NULL;
}

const char *bx__registry_names(bx__kind kind, char *buf, size_t n) {
    buf[0] = '\0';
    int k = 0;
    for (const bx__class *const *c = bx__registry(kind); c && *c; c++, k++) {
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", k ? ", " : "", (*c)->name);
    }
    return buf;
}

/* ---- optimizer / scheduler from a resolved spec ------------------------------------ */
bx_status bx__build_optimizer(const bx_state *spec, bx_tensor *const *params, int n, bx_optimizer **out) {
    *out = NULL;
    const bx__class *c = bx__registry_find(BX_KIND_OPTIMIZER, bx_state_get_string(bx_state_get(spec, "class_path")));
    if (!c) return bx__error(BX_ERR_INVALID, "optimizer: unknown class");
    opt_out r = {params, n, NULL};
    bx_status s = c->build(c, bx_state_get(spec, "init_args"), "optimizer.init_args", NULL, &r);
    *out = r.opt;
    return s;
}

bx_status bx__build_scheduler(const bx_state *spec, bx_optimizer *opt, bx_trainer *tr, const bx_state *trainer_cfg,
                              bx_sched_config *out) {
    const bx__class *c = bx__registry_find(BX_KIND_SCHEDULER, bx_state_get_string(bx_state_get(spec, "class_path")));
    if (!c) return bx__error(BX_ERR_INVALID, "lr_scheduler: unknown class");
    sched_out r = {opt, BX_SCHED_CONFIG_INIT};
    bx__build_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.trainer = tr;
    ctx.trainer_cfg = trainer_cfg;
    bx_status s = c->build(c, bx_state_get(spec, "init_args"), "lr_scheduler.init_args", &ctx, &r);
    *out = r.sc;
    return s;
}
