/* run.c - `blixt fit|validate|test|predict`: the command line, then every
 * object built from the resolved config before anything runs (so a bad
 * config fails with one message and writes nothing), then the Trainer entry
 * point. fit saves the resolved config as config.yaml in the run folder
 * (Lightning's SaveConfigCallback) and prints the model summary. */
#include "cli/cli_int.h"
#include "loggers/loggers_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char USAGE[] =
    "usage: blixt {fit,validate,test,predict} [--config CONFIG.yaml ...] [--print_config]\n"
    "             [--section.key=value ...] [--trainer.callbacks+=ClassName ...]\n"
    "\n"
    "Sections (LightningCLI): seed_everything, trainer, model, data, optimizer,\n"
    "lr_scheduler, ckpt_path. Classes are given as {class_path, init_args} or by name.\n"
    "The options of a class: --model.help MLP, --trainer.callbacks.help EarlyStopping, ...\n";

static void print_usage(FILE *out) {
    fputs(USAGE, out);
    static const bx__kind K[] = {BX_KIND_MODEL, BX_KIND_DATA, BX_KIND_OPTIMIZER, BX_KIND_SCHEDULER,
                                 BX_KIND_CALLBACK, BX_KIND_LOGGER};
    fputs("\nKnown classes:\n", out);
    for (size_t i = 0; i < sizeof K / sizeof K[0]; i++) {
        char names[1024];
        fprintf(out, "  %-13s %s\n", bx__kind_name(K[i]), bx__registry_names(K[i], names, sizeof names));
    }
    int n;
    const bx__param *p = bx__trainer_params(&n);
    fputs("\nTrainer flags (--trainer.<flag>=value):\n", out);
    for (int i = 0; i < n; i++) {
        char tb[128];
        fprintf(out, "  %-26s %s (default %s)\n", p[i].name, bx__types_text(p[i].types, tb, sizeof tb), p[i].def);
    }
}

/* --model.help MLP (LightningCLI's class help): the options of one class. */
static bx_status print_class_help(const char *section, const char *name, FILE *out) {
    static const struct {
        const char *section;
        bx__kind kind;
    } MAP[] = {{"model", BX_KIND_MODEL},           {"data", BX_KIND_DATA},
               {"optimizer", BX_KIND_OPTIMIZER},   {"lr_scheduler", BX_KIND_SCHEDULER},
               {"trainer.callbacks", BX_KIND_CALLBACK}, {"trainer.logger", BX_KIND_LOGGER}};
    for (size_t i = 0; i < sizeof MAP / sizeof MAP[0]; i++) {
        if (strcmp(MAP[i].section, section)) continue;
        char names[1024];
        const bx__class *c = bx__registry_find(MAP[i].kind, name);
        if (!c)
            return bx__error(BX_ERR_INVALID, "--%s.help: got '%s', expected a known %s class: %s", section, name,
                             bx__kind_name(MAP[i].kind), bx__registry_names(MAP[i].kind, names, sizeof names));
        fprintf(out, "%s (%s): %s\n", c->name, bx__kind_name(c->kind), c->doc ? c->doc : "");
        for (int j = 0; j < c->nparams; j++) {
            char tb[128];
            fprintf(out, "  --%s.%-24s %s (default %s)%s%s\n", section, c->params[j].name,
                    bx__types_text(c->params[j].types, tb, sizeof tb), c->params[j].def,
                    c->params[j].choices ? ", one of " : "", c->params[j].choices ? c->params[j].choices : "");
        }
        return BX_OK;
    }
    return bx__error(BX_ERR_INVALID, "--%s.help: expected one of --model.help, --data.help, --optimizer.help, "
                                     "--lr_scheduler.help, --trainer.callbacks.help, --trainer.logger.help", section);
}

/* ---- SaveConfigCallback ---------------------------------------------------------- */
typedef struct save_cfg {
    char *text;
} save_cfg;

/* Written at train start: after the loggers created the run folder (so they
 * do not find it non-empty), before the first batch. */
static bx_status save_cfg_train_start(void *self, bx_trainer *tr) {
    save_cfg *c = self;
    const char *dir = bx_trainer_log_dir(tr);
    bx_status s = bx__mkdirs(dir);
    if (s != BX_OK) return s;
    char *path = bx__path_join(dir, "config.yaml");
    if (!path) return BX_ERR_NOMEM;
    FILE *f = fopen(path, "w");
    s = f ? BX_OK : bx__error(BX_ERR_IO, "SaveConfigCallback: cannot write '%s'", path);
    if (f) {
        if (fputs(c->text, f) < 0) s = bx__error(BX_ERR_IO, "SaveConfigCallback: cannot write '%s'", path);
        if (fclose(f) != 0 && s == BX_OK) s = bx__error(BX_ERR_IO, "SaveConfigCallback: cannot write '%s'", path);
    }
    bx__free(path);
    return s;
}
static void save_cfg_destroy(void *self) {
    save_cfg *c = self;
    bx__free(c->text);
    bx__free(c);
}
static const bx_callback_ops SAVE_CFG_OPS = {
    .name = "SaveConfigCallback", .on_train_start = save_cfg_train_start, .destroy = save_cfg_destroy};

/* ---- predictions --------------------------------------------------------------------- */
typedef struct pred_sink {
    bx_trainer *tr;
    FILE *f;
    int64_t row;
    char path[2048];
} pred_sink;

/* The sink owns each prediction (the Trainer hands over a copy). */
static bx_status pred_write(void *ud, int64_t batch_idx, const bx_tensor *pred) {
    pred_sink *p = ud;
    bx_status s = BX_OK;
    if (!p->f) {
        const char *dir = bx_trainer_log_dir(p->tr);
        s = bx__mkdirs(dir);
        snprintf(p->path, sizeof p->path, "%s/predictions.csv", dir);
        if (s == BX_OK) p->f = fopen(p->path, "w");
        if (s == BX_OK && !p->f) s = bx__error(BX_ERR_IO, "predict: cannot write '%s'", p->path);
        if (s != BX_OK) {
            bx_tensor_free((bx_tensor *)pred);
            return s;
        }
        fputs("index,prediction\n", p->f);
    }
    int64_t n = pred->shape[0], k = pred->ndim > 1 ? pred->shape[1] : 1;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++)
            if (bx_get(pred, i * k + j) > bx_get(pred, i * k + best)) best = j;
        fprintf(p->f, "%lld,%lld\n", (long long)p->row++, (long long)best);
    }
    bx_tensor_free((bx_tensor *)pred);
    return s;
}

/* ---- building ------------------------------------------------------------------------------ */
typedef struct run {
    bx_stage stage;
    bx_state *cfg;
    bx__data data;
    bx__classifier *cls;
    bx_trainer *tr;
    bx_loader *train, *val, *test;
} run;

static bx_limit limit_of(const bx_state *t, const char *k) {
    bx_limit l = BX_LIMIT_ALL;
    const bx_state *v = bx_state_get(t, k);
    if (v && bx_state_typeof(v) == BX_STATE_INT) {
        l.value = (double)bx_state_get_int(v);
        l.is_int = true;
    } else if (v && bx_state_typeof(v) == BX_STATE_FLOAT) {
        l.value = bx_state_get_float(v);
    }
    return l;
}

static bx_status build_class(bx__kind kind, const bx_state *spec, const char *where, bx__build_ctx *ctx, void *out) {
    const bx__class *c = bx__registry_find(kind, bx_state_get_string(bx_state_get(spec, "class_path")));
    char w[256];
    snprintf(w, sizeof w, "%s.init_args", where);
    return c->build(c, bx_state_get(spec, "init_args"), w, ctx, out);
}

static void free_list(bx_callback **cbs, int ncb, bx_logger **lgs, int nlg) {
    for (int i = 0; i < ncb; i++) bx_callback_free(cbs[i]);
    for (int i = 0; i < nlg; i++) bx_logger_free(lgs[i]);
}

static bx_status build(run *r) {
    const bx_state *cfg = r->cfg, *t = bx_state_get(cfg, "trainer");
    bx__build_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.default_root_dir = bx__arg_str(t, "default_root_dir") ? bx__arg_str(t, "default_root_dir") : ".";
    ctx.seed = bx__arg_is_null(cfg, "seed_everything") ? BX_UNSET : bx__arg_int(cfg, "seed_everything");
    bx_rng_init(&ctx.rng, ctx.seed == BX_UNSET ? (uint64_t)time(NULL) : (uint64_t)ctx.seed);
    if (bx__arg_int(t, "num_threads") > 0) bx_set_num_threads((int)bx__arg_int(t, "num_threads"));

    /* data, then the model sized from it */
    bx_status s = bx__build_data(bx_state_get(cfg, "data"), &ctx, &r->data);
    if (s != BX_OK) return s;
    ctx.data = &r->data;
    if ((r->stage == BX_STAGE_TEST || r->stage == BX_STAGE_PREDICT) && !r->data.test)
        return bx__error(BX_ERR_INVALID, "data: %s needs a test set, and '%s' has none (t10k-* files / test_file)",
                         bx_stage_name(r->stage), r->data.source);
    if (r->stage == BX_STAGE_VALIDATE && !r->data.val)
        return bx__error(BX_ERR_INVALID, "data.init_args.val_split: got 0, but validate needs a validation split");
    bx__model_out mo = {NULL};
    s = build_class(BX_KIND_MODEL, bx_state_get(cfg, "model"), "model", &ctx, &mo);
    if (s != BX_OK) return s;

    /* the optimizer and scheduler are built once here to check their options */
    bx_named_tensors *params = bx_module_named_parameters(mo.module);
    bx_optimizer *opt = NULL;
    s = params ? bx__build_optimizer(bx_state_get(cfg, "optimizer"), params->tensors, params->n, &opt) : BX_ERR_NOMEM;
    bx_named_tensors_free(params);
    if (s == BX_OK && !bx__arg_is_null(cfg, "lr_scheduler")) {
        bx_sched_config sc;
        s = bx__build_scheduler(bx_state_get(cfg, "lr_scheduler"), opt, NULL, t, &sc);
        if (s == BX_OK) bx_scheduler_free(sc.scheduler);
    }
    bx_optimizer_free(opt);
    if (s != BX_OK) {
        bx_module_free(mo.module);
        return s;
    }
    r->cls = bx__classifier_new(mo.module, bx_state_get(bx_state_get(cfg, "model"), "init_args"),
                                bx_state_get(cfg, "optimizer"),
                                bx__arg_is_null(cfg, "lr_scheduler") ? NULL : bx_state_get(cfg, "lr_scheduler"));
    if (!r->cls) return BX_ERR_NOMEM;

    /* callbacks and loggers */
    const bx_state *cl = bx_state_get(t, "callbacks"), *lg = bx_state_get(t, "logger");
    int ncl = (int)bx_state_len(cl), nlg = bx_state_typeof(lg) == BX_STATE_LIST ? (int)bx_state_len(lg) : 0;
    bx_callback **cbs = bx__calloc(sizeof *cbs * (size_t)(ncl + 3));
    bx_logger **lgs = bx__calloc(sizeof *lgs * (size_t)(nlg + 1));
    int ncb = 0, nlgb = 0;
    bool has_summary = false;
    if (!cbs || !lgs) s = BX_ERR_NOMEM;
    for (int i = 0; s == BX_OK && i < ncl; i++) {
        char w[64];
        snprintf(w, sizeof w, "trainer.callbacks[%d]", i);
        const bx_state *sp = bx_state_at(cl, (size_t)i);
        has_summary |= !strcmp(bx_state_get_string(bx_state_get(sp, "class_path")), "ModelSummary");
        s = build_class(BX_KIND_CALLBACK, sp, w, &ctx, &cbs[ncb]);
        if (s == BX_OK) ncb++;
    }
    for (int i = 0; s == BX_OK && i < nlg; i++) {
        char w[64];
        snprintf(w, sizeof w, "trainer.logger[%d]", i);
        /* loggers sharing a folder share the version (the first one's) */
        bx_state *sp = bx_state_copy(bx_state_at(lg, (size_t)i));
        bx_state *ia = sp ? bx_state_get(sp, "init_args") : NULL;
        for (int j = 0; ia && j < nlgb; j++) {
            const bx_state *pj = bx_state_get(bx_state_at(lg, (size_t)j), "init_args");
            const char *sd0 = bx__arg_str(pj, "save_dir"), *sd1 = bx__arg_str(ia, "save_dir");
            const char *n0 = bx__arg_str(pj, "name"), *n1 = bx__arg_str(ia, "name");
            if (bx__arg_is_null(ia, "version") && !strcmp(sd0 ? sd0 : "", sd1 ? sd1 : "") &&
                !strcmp(n0 ? n0 : "", n1 ? n1 : "")) {
                const char *v = bx_logger_version(lgs[j]);
                bx_state *vn = v ? bx__yaml_scalar(v) : NULL;
                if (vn) bx_state_set(ia, "version", vn);
                break;
            }
        }
        s = sp ? build_class(BX_KIND_LOGGER, sp, w, &ctx, &lgs[nlgb]) : BX_ERR_NOMEM;
        bx_state_free(sp);
        if (s == BX_OK) nlgb++;
    }
    if (s == BX_OK && r->stage == BX_STAGE_FIT && bx__arg_bool(t, "enable_model_summary") && !has_summary) {
        cbs[ncb] = bx__model_summary_callback_new(1);
        s = cbs[ncb] ? BX_OK : BX_ERR_NOMEM;
        if (s == BX_OK) ncb++;
    }
    /* accumulate_grad_batches: {epoch: factor} is the scheduler callback, last (Lightning 1.9.5) */
    const bx_state *ag = bx_state_get(t, "accumulate_grad_batches");
    if (s == BX_OK && bx_state_typeof(ag) == BX_STATE_DICT) {
        s = bx__gas_from_mapping(ag, "trainer.accumulate_grad_batches", &cbs[ncb]);
        if (s == BX_OK) ncb++;
    }
    if (s == BX_OK && r->stage == BX_STAGE_FIT) {
        save_cfg *sc = bx__calloc(sizeof *sc);
        if (sc) sc->text = bx__yaml_emit(cfg);
        cbs[ncb] = sc && sc->text ? bx_callback_new(&SAVE_CFG_OPS, sc) : NULL;
        if (!cbs[ncb]) {
            if (sc) save_cfg_destroy(sc);
            s = BX_ERR_NOMEM;
        } else {
            ncb++;
        }
    }
    if (s != BX_OK) {
        free_list(cbs, ncb, lgs, nlgb);
        bx__free(cbs);
        bx__free(lgs);
        return s;
    }

    /* the Trainer */
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = bx__arg_is_null(t, "max_epochs") ? BX_UNSET : bx__arg_int(t, "max_epochs");
    o.min_epochs = bx__arg_is_null(t, "min_epochs") ? BX_UNSET : bx__arg_int(t, "min_epochs");
    o.max_steps = bx__arg_int(t, "max_steps");
    o.min_steps = bx__arg_is_null(t, "min_steps") ? BX_UNSET : bx__arg_int(t, "min_steps");
    o.limit_train_batches = limit_of(t, "limit_train_batches");
    o.limit_val_batches = limit_of(t, "limit_val_batches");
    o.limit_test_batches = limit_of(t, "limit_test_batches");
    o.limit_predict_batches = limit_of(t, "limit_predict_batches");
    o.val_check_interval = limit_of(t, "val_check_interval");
    o.check_val_every_n_epoch = bx__arg_is_null(t, "check_val_every_n_epoch") ? 0 : bx__arg_int(t, "check_val_every_n_epoch");
    o.num_sanity_val_steps = bx__arg_int(t, "num_sanity_val_steps");
    o.accumulate_grad_batches = bx_state_typeof(ag) == BX_STATE_INT ? bx_state_get_int(ag) : 1;
    o.gradient_clip_val = bx__arg_is_null(t, "gradient_clip_val") ? 0.0 : bx__arg_float(t, "gradient_clip_val");
    o.gradient_clip_algorithm =
        bx__arg_str(t, "gradient_clip_algorithm") && !strcmp(bx__arg_str(t, "gradient_clip_algorithm"), "value")
            ? BX_CLIP_VALUE : BX_CLIP_NORM;
    o.log_every_n_steps = bx__arg_int(t, "log_every_n_steps");
    o.enable_checkpointing = bx__arg_bool(t, "enable_checkpointing");
    o.enable_progress_bar = bx__arg_bool(t, "enable_progress_bar");
    o.enable_model_summary = bx__arg_bool(t, "enable_model_summary");
    o.default_root_dir = ctx.default_root_dir;
    const bx_state *fdr = bx_state_get(t, "fast_dev_run");
    o.fast_dev_run = bx_state_typeof(fdr) == BX_STATE_BOOL ? (bx_state_get_bool(fdr) ? 1 : 0) : bx_state_get_int(fdr);
    o.seed = ctx.seed;
    o.num_threads = (int)bx__arg_int(t, "num_threads");
    o.loggers = lgs;
    o.num_loggers = nlgb;
    o.logger_default = bx_state_typeof(lg) == BX_STATE_BOOL ? bx_state_get_bool(lg) : false;
    o.callbacks = cbs;
    o.num_callbacks = ncb;
    char max_time[64];
    bool no_max_time = true;
    s = bx__duration_of(bx_state_get(t, "max_time"), "trainer.max_time", &no_max_time, max_time, sizeof max_time);
    if (s != BX_OK) { /* checked when the config was resolved */
        free_list(cbs, ncb, lgs, nlgb);
        bx__free(cbs);
        bx__free(lgs);
        return s;
    }
    o.max_time = no_max_time ? NULL : max_time;
    r->tr = bx_trainer_new(&o);
    bx__free(cbs);
    bx__free(lgs);
    if (!r->tr) return BX_ERR_INVALID;

    /* loaders */
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = r->data.batch_size;
    lo.shuffle = r->data.shuffle;
    r->train = bx_loader_new(r->data.train, &lo);
    lo.shuffle = false;
    if (r->data.val) r->val = bx_loader_new(r->data.val, &lo);
    if (r->data.test) r->test = bx_loader_new(r->data.test, &lo);
    if (!r->train || (r->data.val && !r->val) || (r->data.test && !r->test)) return BX_ERR_NOMEM;
    return BX_OK;
}

static void print_metrics(const bx_trainer *tr, const char *title, FILE *out) {
    int n = bx_trainer_metrics_count(tr, BX_CALLBACK_METRICS);
    fprintf(out, "-------------------------------------------------\n");
    fprintf(out, "%20s %22s\n", title, "DataLoader 0");
    fprintf(out, "-------------------------------------------------\n");
    for (int i = 0; i < n; i++)
        fprintf(out, "%20s %22.6f\n", bx_trainer_metric_name(tr, BX_CALLBACK_METRICS, i),
                bx_trainer_metric_value(tr, BX_CALLBACK_METRICS, i));
    fprintf(out, "-------------------------------------------------\n");
}

static bx_status execute(run *r) {
    bx_model m = bx__classifier_model(r->cls);
    const char *ckpt = bx__arg_str(r->cfg, "ckpt_path");
    printf("Data: %s (%lld train, %lld val, %lld test samples, %lld classes)\n", r->data.source,
           (long long)bx_dataset_len(r->data.train), (long long)(r->data.val ? bx_dataset_len(r->data.val) : 0),
           (long long)(r->data.test ? bx_dataset_len(r->data.test) : 0), (long long)r->data.num_classes);
    fflush(stdout);
    bx_status s;
    switch (r->stage) {
    case BX_STAGE_FIT:
        s = bx_trainer_fit(r->tr, &m, r->train, r->val, ckpt);
        if (s == BX_OK) printf("Run folder: %s\n", bx_trainer_log_dir(r->tr));
        break;
    case BX_STAGE_VALIDATE:
        s = bx_trainer_validate(r->tr, &m, r->val, ckpt);
        if (s == BX_OK) print_metrics(r->tr, "Validate metric", stdout);
        break;
    case BX_STAGE_TEST:
        s = bx_trainer_test(r->tr, &m, r->test, ckpt);
        if (s == BX_OK) print_metrics(r->tr, "Test metric", stdout);
        break;
    default: {
        pred_sink ps = {r->tr, NULL, 0, ""};
        s = bx_trainer_predict(r->tr, &m, r->test, ckpt, pred_write, &ps);
        if (ps.f && fclose(ps.f) != 0 && s == BX_OK) s = bx__error(BX_ERR_IO, "predict: cannot write '%s'", ps.path);
        if (s == BX_OK) printf("Predictions: %s (%lld rows)\n", ps.path, (long long)ps.row);
        break;
    }
    }
    fflush(stdout);
    return s;
}

static void run_free(run *r) {
    bx_trainer_free(r->tr);
    bx__classifier_free(r->cls);
    bx_loader_free(r->train);
    bx_loader_free(r->val);
    bx_loader_free(r->test);
    bx__data_free(&r->data);
    bx_state_free(r->cfg);
}

/* ---- the command line ------------------------------------------------------------------- */
bx_status bx_cli_run(int argc, char **argv, FILE *out) {
    static const char *const STAGES[] = {"fit", "validate", "test", "predict"};
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        print_usage(out);
        return argc < 2 ? bx__error(BX_ERR_INVALID, "no subcommand given: expected one of fit, validate, test, predict") : BX_OK;
    }
    run r;
    memset(&r, 0, sizeof r);
    int st = -1;
    for (int i = 0; i < 4; i++)
        if (!strcmp(argv[1], STAGES[i])) st = i;
    if (st < 0)
        return bx__error(BX_ERR_INVALID, "subcommand: got '%s', expected one of fit, validate, test, predict", argv[1]);
    r.stage = (bx_stage)st;
    bx_state *raw = bx_state_dict();
    if (!raw) return BX_ERR_NOMEM;
    bool print_config = false;
    bx_status s = BX_OK;
    for (int i = 2; s == BX_OK && i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            print_usage(out);
            bx_state_free(raw);
            return BX_OK;
        }
        if (!strcmp(a, "--print_config")) {
            print_config = true;
            continue;
        }
        if (!strcmp(a, "--config") || !strncmp(a, "--config=", 9) || !strcmp(a, "-c")) {
            const char *path = a[8] == '=' ? a + 9 : (i + 1 < argc ? argv[++i] : NULL);
            if (!path) {
                s = bx__error(BX_ERR_INVALID, "--config: expected a file path after it");
                break;
            }
            bx_state *f = NULL;
            s = bx__yaml_load_file(path, &f);
            if (s == BX_OK) s = bx__config_merge(raw, f);
            bx_state_free(f);
            continue;
        }
        if (strncmp(a, "--", 2) != 0 || !a[2]) {
            s = bx__error(BX_ERR_INVALID, "unexpected argument '%s': options are --config FILE, --print_config and --section.key=value", a);
            break;
        }
        const char *eq = strchr(a, '=');
        char key[512];
        const char *value;
        bool append = false;
        if (eq) {
            size_t kl = (size_t)(eq - a - 2);
            if (kl > 0 && a[2 + kl - 1] == '+') {
                append = true;
                kl--;
            }
            snprintf(key, sizeof key, "%.*s", (int)kl, a + 2);
            value = eq + 1;
        } else {
            snprintf(key, sizeof key, "%s", a + 2);
            if (i + 1 >= argc) {
                s = bx__error(BX_ERR_INVALID, "flag '%s': expected a value (--%s=VALUE or --%s VALUE)", a, key, key);
                break;
            }
            value = argv[++i];
        }
        size_t kl = strlen(key);
        if (kl > 5 && !strcmp(key + kl - 5, ".help")) {
            key[kl - 5] = '\0';
            s = print_class_help(key, value, out);
            bx_state_free(raw);
            return s;
        }
        char *dot = strchr(key, '.');
        size_t sl = dot ? (size_t)(dot - key) : strlen(key);
        static const char *const SECTIONS[] = {"seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler", "ckpt_path"};
        bool known = false;
        for (int j = 0; j < 7 && !known; j++) known = strlen(SECTIONS[j]) == sl && !strncmp(SECTIONS[j], key, sl);
        if (!known) {
            s = bx__error(BX_ERR_INVALID,
                          "unknown flag '--%s': expected --config, --print_config or --<section>.<key>=value with a section "
                          "of seed_everything, trainer, model, data, optimizer, lr_scheduler, ckpt_path", key);
            break;
        }
        s = bx__config_override(raw, key, value, append);
    }
    if (s == BX_OK) s = bx__config_resolve(raw, &r.cfg);
    bx_state_free(raw);
    if (s != BX_OK) return s;
    if (print_config) {
        char *text = bx__yaml_emit(r.cfg);
        if (text) fputs(text, out);
        bx__free(text);
        bx_state_free(r.cfg);
        return text ? BX_OK : BX_ERR_NOMEM;
    }
    s = build(&r);
    if (s == BX_OK) s = execute(&r);
    run_free(&r);
    return s;
}
