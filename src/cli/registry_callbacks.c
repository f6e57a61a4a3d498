/* registry_callbacks.c - the CLI classes of the training-technique callbacks
 * (issue 5: every built-in callback buildable from a config):
 * StochasticWeightAveraging, EMAWeightAveraging, ModelPruning,
 * QuantizationAwareTraining, GPUStatsMonitor and Timer, with Lightning's
 * class and init_args names and defaults, plus the duration values shared
 * by Timer.duration and trainer.max_time. Each builder checks what the
 * parameter table cannot (list shapes, required values, names) with a
 * message naming the key, the value and what is expected, then builds
 * through the public constructor. The tables are in registry.c. */
#include "blixt/gpu_stats.h"
#include "blixt/pruning.h"
#include "blixt/qat.h"
#include "blixt/swa_callback.h"
#include "cli/cli_int.h"

#include <math.h>
#include <strings.h>
#include <string.h>

#define NP(a) ((int)(sizeof(a) / sizeof((a)[0])))

static bx_status cb_done(bx_callback *cb, const char *where, void *out) {
    if (!cb) {
        bx__error_prefix("%s", where);
        return BX_ERR_INVALID;
    }
    *(bx_callback **)out = cb;
    return BX_OK;
}

static bx_status bad(const char *where, const char *key, const bx_state *v, const char *expected) {
    char vb[300];
    return bx__error(BX_ERR_INVALID, "%s.%s: got %s, expected %s", where, key, bx__node_text(v, vb, sizeof vb),
                     expected);
}

/* ---- durations (Timer.duration, trainer.max_time) --------------------------------- */
/* timedelta's keyword arguments, in seconds */
static const struct {
    const char *key;
    double s;
} TD_KEYS[] = {{"weeks", 604800.0}, {"days", 86400.0}, {"hours", 3600.0}, {"minutes", 60.0},
               {"seconds", 1.0},    {"milliseconds", 1e-3}, {"microseconds", 1e-6}};

#define DURATION_EXPECTED                                                                              \
    "\"DD:HH:MM:SS\" (e.g. \"00:12:00:00\"), a mapping of timedelta arguments {days, hours, minutes, " \
    "seconds} or null"

bx_status bx__duration_of(const bx_state *v, const char *where, bool *is_null, char *text, size_t n) {
    char vb[300];
    double sec = 0.0;
    *is_null = false;
    text[0] = '\0';
    if (!v || bx_state_typeof(v) == BX_STATE_NULL) {
        *is_null = true;
        return BX_OK;
    }
    if (bx_state_typeof(v) == BX_STATE_STRING) {
        if (bx_parse_duration(bx_state_get_string(v), &sec) != BX_OK || sec < 0)
            return bx__error(BX_ERR_INVALID, "%s: got %s, expected %s", where, bx__node_text(v, vb, sizeof vb),
                             DURATION_EXPECTED);
    } else if (bx_state_typeof(v) == BX_STATE_DICT) {
        for (size_t i = 0; i < bx_state_len(v); i++) {
            const char *k = bx_state_key_at(v, i);
            const bx_state *x = bx_state_value_at(v, i);
            int j = 0;
            while (j < NP(TD_KEYS) && strcmp(TD_KEYS[j].key, k)) j++;
            if (j == NP(TD_KEYS))
                return bx__error(BX_ERR_INVALID, "%s.%s: unknown key (known: weeks, days, hours, minutes, seconds, "
                                                 "milliseconds, microseconds)", where, k);
            bx_state_type t = bx_state_typeof(x);
            if (t != BX_STATE_INT && t != BX_STATE_FLOAT)
                return bx__error(BX_ERR_INVALID, "%s.%s: got %s, expected a number", where, k,
                                 bx__node_text(x, vb, sizeof vb));
            sec += bx_state_get_float(x) * TD_KEYS[j].s;
        }
        if (!(sec >= 0) || sec > 1e12)
            return bx__error(BX_ERR_INVALID, "%s: got %g seconds in all, expected a duration >= 0", where, sec);
    } else {
        return bx__error(BX_ERR_INVALID, "%s: got %s, expected %s", where, bx__node_text(v, vb, sizeof vb),
                         DURATION_EXPECTED);
    }
    /* whole seconds, the resolution of the "DD:HH:MM:SS" form */
    long long s = llround(sec);
    snprintf(text, n, "%lld:%02lld:%02lld:%02lld", s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    return BX_OK;
}

/* ---- StochasticWeightAveraging ------------------------------------------------------ */
static const bx__param SWA_PARAMS[] = {
    {"swa_lrs", BX_P_FLOAT | BX_P_FLOATS | BX_P_NULL, "null", NULL},
    {"swa_epoch_start", BX_P_INT | BX_P_FLOAT, "0.8", NULL},
    {"annealing_epochs", BX_P_INT, "10", NULL},
    {"annealing_strategy", BX_P_STR, "cos", "cos|linear"},
    {"avg_fn", BX_P_ANY, "null", NULL},
    {"device", BX_P_ANY, "cpu", NULL},
};
static bx_status build_swa(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx, void *out) {
    (void)c, (void)ctx;
    bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT;
    const bx_state *lrs = bx_state_get(a, "swa_lrs");
    double v[64];
    if (bx_state_typeof(lrs) == BX_STATE_NULL)
        return bad(where, "swa_lrs", lrs, "a positive float or a list of positive floats (one per param group)");
    if (bx_state_typeof(lrs) == BX_STATE_LIST) {
        size_t n = bx_state_len(lrs);
        if (n == 0 || n > 64) return bad(where, "swa_lrs", lrs, "a list of 1 to 64 positive floats");
        for (size_t i = 0; i < n; i++) v[i] = bx_state_get_float(bx_state_at(lrs, i));
        o.swa_lrs = v;
        o.n_swa_lrs = (int)n;
    } else {
        o.swa_lr = bx_state_get_float(lrs);
    }
    const bx_state *se = bx_state_get(a, "swa_epoch_start");
    o.swa_epoch_start = bx_state_get_float(se);
    o.swa_epoch_start_is_fraction = bx_state_typeof(se) == BX_STATE_FLOAT;
    o.annealing_epochs = bx__arg_int(a, "annealing_epochs");
    o.annealing_strategy = !strcmp(bx__arg_str(a, "annealing_strategy"), "linear") ? BX_ANNEAL_LINEAR : BX_ANNEAL_COS;
    if (!bx__arg_is_null(a, "avg_fn"))
        return bad(where, "avg_fn", bx_state_get(a, "avg_fn"),
                   "null: a function cannot come from a config (set bx_swa_callback_opts.avg_fn in C)");
    const bx_state *dev = bx_state_get(a, "device");
    if (bx_state_typeof(dev) != BX_STATE_NULL &&
        !(bx_state_typeof(dev) == BX_STATE_STRING && !strcmp(bx_state_get_string(dev), "cpu")))
        return bad(where, "device", dev, "'cpu' or null: the averaged copy lives with the model, on the CPU");
    return cb_done(bx_swa_callback_new(&o), where, out);
}
const bx__class bx__cb_swa = {BX_KIND_CALLBACK, "StochasticWeightAveraging", SWA_PARAMS, NP(SWA_PARAMS),
                              "average the weights of the last epochs (SWA), lr driven by SWALR", build_swa};

/* ---- EMAWeightAveraging --------------------------------------------------------------- */
static const bx__param EMA_PARAMS[] = {
    {"decay", BX_P_FLOAT, "0.999", NULL},
    {"every_n_steps", BX_P_INT, "1", NULL},
    {"start_step", BX_P_INT, "0", NULL},
    {"warmup", BX_P_BOOL, "false", NULL},
    {"buffers", BX_P_STR, "copy", "copy|average|keep"},
    {"swap_at_end", BX_P_BOOL, "true", NULL},
};
static bx_status build_ema(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx, void *out) {
    (void)c, (void)ctx;
    bx_ema_callback_opts o = BX_EMA_CALLBACK_OPTS_INIT;
    o.decay = bx__arg_float(a, "decay");
    o.every_n_steps = bx__arg_int(a, "every_n_steps");
    o.start_step = bx__arg_int(a, "start_step");
    o.warmup = bx__arg_bool(a, "warmup");
    const char *b = bx__arg_str(a, "buffers");
    o.buffers = !strcmp(b, "average") ? BX_EMA_BUFFERS_AVERAGE : !strcmp(b, "keep") ? BX_EMA_BUFFERS_KEEP
                                                                                    : BX_EMA_BUFFERS_COPY;
    o.swap_at_end = bx__arg_bool(a, "swap_at_end");
    return cb_done(bx_ema_callback_new(&o), where, out);
}
const bx__class bx__cb_ema = {BX_KIND_CALLBACK, "EMAWeightAveraging", EMA_PARAMS, NP(EMA_PARAMS),
                              "exponential moving average of the weights, copied in at train end", build_ema};

/* ---- ModelPruning -------------------------------------------------------------------- */
static const char *const PRUNING_FNS[] = {"l1_unstructured", "random_unstructured", "ln_structured",
                                          "random_structured"};
#define PRUNING_FN_EXPECTED "one of l1_unstructured, random_unstructured, ln_structured, random_structured"

static const bx__param PRUNE_PARAMS[] = {
    {"pruning_fn", BX_P_STR | BX_P_NULL, "null", NULL},
    {"parameters_to_prune", BX_P_ANY, "null", NULL},
    {"parameter_names", BX_P_ANY, "null", NULL},
    {"use_global_unstructured", BX_P_BOOL, "true", NULL},
    {"amount", BX_P_INT | BX_P_FLOAT, "0.5", NULL},
    {"apply_pruning", BX_P_BOOL, "true", NULL},
    {"make_pruning_permanent", BX_P_BOOL, "true", NULL},
    {"use_lottery_ticket_hypothesis", BX_P_BOOL, "true", NULL},
    {"resample_parameters", BX_P_BOOL, "false", NULL},
    {"pruning_dim", BX_P_INT | BX_P_NULL, "null", NULL},
    {"pruning_norm", BX_P_ANY, "null", NULL},
    {"verbose", BX_P_INT, "0", NULL},
    {"prune_on_train_epoch_end", BX_P_BOOL, "true", NULL},
};
static bool is_str_list(const bx_state *v, size_t len) {
    if (bx_state_typeof(v) != BX_STATE_LIST || (len && bx_state_len(v) != len)) return false;
    for (size_t i = 0; i < bx_state_len(v); i++)
        if (bx_state_typeof(bx_state_at(v, i)) != BX_STATE_STRING) return false;
    return true;
}
static bx_status build_prune(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx, void *out) {
    (void)c;
    bx_model_pruning_opts o = BX_MODEL_PRUNING_OPTS_INIT;
    const bx_state *fn = bx_state_get(a, "pruning_fn");
    bool known = false;
    for (int i = 0; i < NP(PRUNING_FNS) && bx_state_typeof(fn) == BX_STATE_STRING; i++)
        known |= !strcasecmp(bx_state_get_string(fn), PRUNING_FNS[i]);
    if (!known) return bad(where, "pruning_fn", fn, PRUNING_FN_EXPECTED " (required)");
    o.pruning_fn = bx_state_get_string(fn);
    /* parameters_to_prune: null or [[module_path, param_name], ...] */
    const bx_state *ptp = bx_state_get(a, "parameters_to_prune");
    bx_pruning_param *pp = NULL;
    const char **names = NULL;
    bx_status s = BX_OK;
    if (bx_state_typeof(ptp) != BX_STATE_NULL) {
        bool ok = bx_state_typeof(ptp) == BX_STATE_LIST && bx_state_len(ptp) > 0;
        for (size_t i = 0; ok && i < bx_state_len(ptp); i++) ok = is_str_list(bx_state_at(ptp, i), 2);
        if (!ok)
            return bad(where, "parameters_to_prune", ptp,
                       "null or a list of [module_path, param_name] pairs (e.g. [[fc1, weight], [fc2, weight]])");
        size_t n = bx_state_len(ptp);
        pp = bx__calloc(sizeof *pp * n);
        if (!pp) return BX_ERR_NOMEM;
        for (size_t i = 0; i < n; i++) {
            pp[i].module = bx_state_get_string(bx_state_at(bx_state_at(ptp, i), 0));
            pp[i].name = bx_state_get_string(bx_state_at(bx_state_at(ptp, i), 1));
        }
        o.parameters_to_prune = pp;
        o.num_parameters_to_prune = (int)n;
    }
    const bx_state *pn = bx_state_get(a, "parameter_names");
    if (bx_state_typeof(pn) != BX_STATE_NULL) {
        if (!is_str_list(pn, 0) || bx_state_len(pn) == 0) {
            bx__free(pp);
            return bad(where, "parameter_names", pn, "null or a list of names from weight, bias");
        }
        size_t n = bx_state_len(pn);
        names = bx__calloc(sizeof *names * n);
        if (!names) {
            bx__free(pp);
            return BX_ERR_NOMEM;
        }
        for (size_t i = 0; i < n; i++) names[i] = bx_state_get_string(bx_state_at(pn, i));
        o.parameter_names = names;
        o.num_parameter_names = (int)n;
    }
    o.use_global_unstructured = bx__arg_bool(a, "use_global_unstructured");
    const bx_state *am = bx_state_get(a, "amount");
    if (bx_state_typeof(am) == BX_STATE_INT ? bx_state_get_int(am) < 0
                                            : !(bx_state_get_float(am) >= 0 && bx_state_get_float(am) <= 1)) {
        bx__free(pp);
        bx__free(names);
        return bad(where, "amount", am, "an int >= 0 (a count) or a fraction in [0, 1]");
    }
    o.amount = bx_state_typeof(am) == BX_STATE_INT ? BX_PRUNE_COUNT(bx_state_get_int(am))
                                                   : BX_PRUNE_FRACTION(bx_state_get_float(am));
    o.apply_pruning = bx__arg_bool(a, "apply_pruning");
    o.make_pruning_permanent = bx__arg_bool(a, "make_pruning_permanent");
    o.use_lottery_ticket_hypothesis = bx__arg_bool(a, "use_lottery_ticket_hypothesis");
    o.resample_parameters = bx__arg_bool(a, "resample_parameters");
    if (!bx__arg_is_null(a, "pruning_dim")) o.pruning_dim = (int)bx__arg_int(a, "pruning_dim");
    /* pruning_norm: a number (.inf), 'fro' (= 2), 'inf' / '-inf', or null */
    const bx_state *nm = bx_state_get(a, "pruning_norm");
    bx_state_type nt = bx_state_typeof(nm);
    if (nt == BX_STATE_INT || nt == BX_STATE_FLOAT) {
        o.pruning_norm = bx_state_get_float(nm);
    } else if (nt == BX_STATE_STRING && !strcmp(bx_state_get_string(nm), "fro")) {
        o.pruning_norm = 2.0;
    } else if (nt == BX_STATE_STRING && !strcmp(bx_state_get_string(nm), "inf")) {
        o.pruning_norm = INFINITY;
    } else if (nt == BX_STATE_STRING && !strcmp(bx_state_get_string(nm), "-inf")) {
        o.pruning_norm = -INFINITY;
    } else if (nt != BX_STATE_NULL) {
        s = bad(where, "pruning_norm", nm, "a number (e.g. 1, 2, .inf), 'fro' or null");
    }
    o.verbose = (int)bx__arg_int(a, "verbose");
    o.prune_on_train_epoch_end = bx__arg_bool(a, "prune_on_train_epoch_end");
    if (ctx && ctx->seed != BX_UNSET) o.seed = (uint64_t)ctx->seed;
    if (s == BX_OK) s = cb_done(bx_model_pruning_new(&o), where, out); /* copies the strings and arrays */
    bx__free(pp);
    bx__free(names);
    return s;
}
const bx__class bx__cb_pruning = {BX_KIND_CALLBACK, "ModelPruning", PRUNE_PARAMS, NP(PRUNE_PARAMS),
                                  "prune weights once per epoch (torch.nn.utils.prune methods)", build_prune};

/* ---- QuantizationAwareTraining ------------------------------------------------------------ */
static const bx__param QAT_PARAMS[] = {
    {"qconfig", BX_P_STR, "fbgemm", "fbgemm|x86|qnnpack|onednn"},
    {"observer_type", BX_P_STR, "average", "average|histogram"},
    {"collect_quantization", BX_P_INT | BX_P_NULL, "null", NULL},
    {"modules_to_fuse", BX_P_ANY, "null", NULL},
    {"input_compatible", BX_P_BOOL, "true", NULL},
    {"quantize_on_fit_end", BX_P_BOOL, "true", NULL},
    {"observer_enabled_stages", BX_P_ANY, "[train]", NULL},
};
static bx_status build_qat(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx, void *out) {
    (void)c, (void)ctx;
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.qconfig = bx__arg_str(a, "qconfig");
    o.observer_type = bx__arg_str(a, "observer_type");
    if (!bx__arg_is_null(a, "collect_quantization")) {
        o.collect = BX_QAT_COLLECT_COUNT;
        o.collect_n = bx__arg_int(a, "collect_quantization");
        if (o.collect_n < 0)
            return bad(where, "collect_quantization", bx_state_get(a, "collect_quantization"),
                       "null (every forward) or an int >= 0 (the first n forwards)");
    }
    o.input_compatible = bx__arg_bool(a, "input_compatible");
    o.quantize_on_fit_end = bx__arg_bool(a, "quantize_on_fit_end");
    /* observer_enabled_stages: a list from train, validate, test, predict */
    const bx_state *st = bx_state_get(a, "observer_enabled_stages");
    static const char *const STAGES[] = {"train", "validate", "test", "predict"};
    unsigned bits = 0;
    bool ok = is_str_list(st, 0);
    for (size_t i = 0; ok && i < bx_state_len(st); i++) {
        int j = 0;
        while (j < 4 && strcmp(STAGES[j], bx_state_get_string(bx_state_at(st, i)))) j++;
        ok = j < 4;
        bits |= 1u << j;
    }
    if (!ok) return bad(where, "observer_enabled_stages", st, "a list from train, validate, test, predict");
    o.observer_enabled_stages = bits;
    /* modules_to_fuse: null or [[path, path(, path)], ...] */
    const bx_state *mf = bx_state_get(a, "modules_to_fuse");
    bx_qat_fuse_group *g = NULL;
    if (bx_state_typeof(mf) != BX_STATE_NULL) {
        ok = bx_state_typeof(mf) == BX_STATE_LIST;
        for (size_t i = 0; ok && i < bx_state_len(mf); i++) {
            const bx_state *gi = bx_state_at(mf, i);
            ok = is_str_list(gi, 0) && bx_state_len(gi) >= 2 && bx_state_len(gi) <= 3;
        }
        if (!ok)
            return bad(where, "modules_to_fuse", mf,
                       "null or a list of groups of 2 or 3 module paths (e.g. [[fc1, act1]])");
        size_t n = bx_state_len(mf);
        g = bx__calloc(sizeof *g * (n ? n : 1));
        if (!g) return BX_ERR_NOMEM;
        for (size_t i = 0; i < n; i++)
            for (size_t j = 0; j < bx_state_len(bx_state_at(mf, i)); j++)
                g[i].paths[j] = bx_state_get_string(bx_state_at(bx_state_at(mf, i), j));
        o.modules_to_fuse = n ? g : NULL;
        o.num_modules_to_fuse = (int)n;
    }
    bx_status s = cb_done(bx_qat_callback_new(&o), where, out); /* copies the groups */
    bx__free(g);
    return s;
}
const bx__class bx__cb_qat = {BX_KIND_CALLBACK, "QuantizationAwareTraining", QAT_PARAMS, NP(QAT_PARAMS),
                              "fake-quantised training, converted to int8 at fit end", build_qat};

/* ---- GPUStatsMonitor ------------------------------------------------------------------------ */
static const bx__param GPU_PARAMS[] = {
    {"memory_utilization", BX_P_BOOL, "true", NULL}, {"gpu_utilization", BX_P_BOOL, "true", NULL},
    {"intra_step_time", BX_P_BOOL, "false", NULL},   {"inter_step_time", BX_P_BOOL, "false", NULL},
    {"fan_speed", BX_P_BOOL, "false", NULL},         {"temperature", BX_P_BOOL, "false", NULL},
};
static bx_status build_gpu(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx, void *out) {
    (void)c, (void)ctx;
    bx_gpu_stats_monitor_opts o = BX_GPU_STATS_MONITOR_OPTS_INIT;
    o.memory_utilization = bx__arg_bool(a, "memory_utilization");
    o.gpu_utilization = bx__arg_bool(a, "gpu_utilization");
    o.intra_step_time = bx__arg_bool(a, "intra_step_time");
    o.inter_step_time = bx__arg_bool(a, "inter_step_time");
    o.fan_speed = bx__arg_bool(a, "fan_speed");
    o.temperature = bx__arg_bool(a, "temperature");
    bx_callback *cb = bx_gpu_stats_monitor_new(&o);
    if (!cb) {
        /* no NVML here is "unsupported" (the constructor's status), the rest bad options */
        bx_status s = strstr(bx_errmsg(), "cannot be loaded") ? BX_ERR_UNSUPPORTED : BX_ERR_INVALID;
        bx__error_prefix("%s", where);
        return s;
    }
    *(bx_callback **)out = cb;
    return BX_OK;
}
const bx__class bx__cb_gpu_stats = {BX_KIND_CALLBACK, "GPUStatsMonitor", GPU_PARAMS, NP(GPU_PARAMS),
                                    "log NVIDIA GPU statistics (NVML) and batch times", build_gpu};

/* ---- Timer ---------------------------------------------------------------------------------- */
static const bx__param TIMER_PARAMS[] = {
    {"duration", BX_P_ANY, "null", NULL},
    {"interval", BX_P_STR, "step", "step|epoch"},
    {"verbose", BX_P_BOOL, "true", NULL},
};
static bx_status build_timer(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                             void *out) {
    (void)c, (void)ctx;
    char w[300], text[64];
    bool none;
    snprintf(w, sizeof w, "%s.duration", where);
    bx_status s = bx__duration_of(bx_state_get(a, "duration"), w, &none, text, sizeof text);
    if (s != BX_OK) return s;
    bx_timer_opts o = BX_TIMER_OPTS_INIT;
    o.duration = none ? NULL : text;
    o.interval = bx__arg_str(a, "interval");
    o.verbose = bx__arg_bool(a, "verbose");
    return cb_done(bx_timer_new(&o), where, out);
}
const bx__class bx__cb_timer = {BX_KIND_CALLBACK, "Timer", TIMER_PARAMS, NP(TIMER_PARAMS),
                                "time each stage; stop training after a duration", build_timer};
