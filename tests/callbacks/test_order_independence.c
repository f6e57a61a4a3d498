/* test_order_independence.c - the callback page's best practice, checked:
 * one fit with EarlyStopping, ModelCheckpoint, LearningRateMonitor,
 * GradientAccumulationScheduler, a LambdaCallback, a ProgressBar and a CSV
 * logger, run with the callbacks given in several orders (ModelCheckpoint
 * anywhere in the list: the Trainer moves it last), gives identical weights,
 * metrics, files, metrics.csv bytes and checkpoint contents. */
#include "cb_harness.h"

#include <blixt/checkpoint.h>

#define NCB 6
#define MAXF 64

typedef struct run_result {
    float w[3];
    int nmetrics;
    char metric_names[32][64];
    double metric_values[32];
    int nfiles;
    char files[MAXF][256];
    char *csv;
    char *ckpt_json[MAXF]; /* per file: the checkpoint minus its callback order */
} run_result;

static int lambda_epochs;
static bx_status lambda_epoch_end(void *self, bx_trainer *tr) {
    (void)self, (void)tr;
    lambda_epochs++;
    return BX_OK;
}
static const bx_callback_ops LAMBDA_HOOKS = {.on_train_epoch_end = lambda_epoch_end};

static bx_callback *make_cb(int kind, FILE *devnull) {
    switch (kind) {
    case 0: {
        bx_early_stopping_opts o = BX_EARLY_STOPPING_OPTS_INIT;
        o.monitor = "val_loss";
        o.patience = 2;
        return bx_early_stopping_new(&o);
    }
    case 1: {
        bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
        o.monitor = "val_loss";
        o.save_top_k = 2;
        o.save_last = 1;
        o.filename = "{epoch}-{val_loss:.3f}";
        return bx_model_checkpoint_new(&o);
    }
    case 2: return bx_lr_monitor_new(NULL);
    case 3: {
        int64_t e[2] = {0, 2}, f[2] = {1, 2};
        return bx_grad_accum_scheduler_new(e, f, 2);
    }
    case 4: return bx_lambda_callback_new(&LAMBDA_HOOKS, NULL);
    default: {
        bx_progress_bar_opts o = BX_PROGRESS_BAR_OPTS_INIT;
        o.stream = devnull;
        o.tty = 0;
        return bx_progress_bar_new_ex(&o);
    }
    }
}

static void list_files(const char *root, const char *rel, run_result *r) {
    char p[1024];
    snprintf(p, sizeof p, "%s%s%s", root, *rel ? "/" : "", rel);
    DIR *d = opendir(p);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char sub[512], full[1024];
        snprintf(sub, sizeof sub, "%s%s%s", rel, *rel ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, sub);
        struct stat sb;
        if (stat(full, &sb) == 0 && S_ISDIR(sb.st_mode)) list_files(root, sub, r);
        else if (r->nfiles < MAXF) snprintf(r->files[r->nfiles++], 256, "%s", sub);
    }
    if (d) closedir(d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *s = malloc((size_t)n + 1);
    if (fread(s, 1, (size_t)n, f) != (size_t)n) n = 0;
    s[n] = '\0';
    fclose(f);
    return s;
}

/* JSON of a checkpoint with its callbacks dict sorted by state key (the
 * dict's order follows the callback list, its contents must not). */
static char *ckpt_canonical(const char *path) {
    bx_state *ck = NULL;
    if (bx_checkpoint_read(path, &ck) != BX_OK) return NULL;
    bx_state *cbs = bx_state_get(ck, "callbacks");
    bx_state *sorted = bx_state_dict();
    if (cbs) {
        size_t n = bx_state_len(cbs);
        const char *keys[32];
        for (size_t i = 0; i < n && i < 32; i++) keys[i] = bx_state_key_at(cbs, i);
        for (size_t i = 0; i < n; i++)
            for (size_t j = i + 1; j < n; j++)
                if (strcmp(keys[j], keys[i]) < 0) {
                    const char *t = keys[i];
                    keys[i] = keys[j];
                    keys[j] = t;
                }
        for (size_t i = 0; i < n; i++) bx_state_set(sorted, keys[i], bx_state_copy(bx_state_get(cbs, keys[i])));
        bx_state_set(ck, "callbacks", sorted);
    } else {
        bx_state_free(sorted);
    }
    char *txt = bx_state_to_json(ck, NULL, NULL);
    bx_state_free(ck);
    char *out = txt ? strdup(txt) : NULL;
    bx_free(txt);
    return out;
}

static void run(const int *order, run_result *r) {
    memset(r, 0, sizeof *r);
    /* the same folder for every run: checkpoints record their paths */
    char root[256];
    snprintf(root, sizeof root, "/tmp/blixt-order-%d", (int)getpid());
    ch_rmtree(root);
    CHECK(mkdir(root, 0700) == 0);
    FILE *devnull = fopen("/dev/null", "w");
    ch_model m;
    ch_init(&m);
    double vl[] = {0.9, 0.7, 0.8, 0.6, 0.65, 0.5};
    ch_metric(&m, "val_loss", vl, 6);
    bx_callback *cbs[NCB];
    for (int i = 0; i < NCB; i++) cbs[i] = make_cb(order[i], devnull);
    bx_trainer_opts o = ch_opts(6, cbs, NCB, root);
    o.enable_checkpointing = true; /* a ModelCheckpoint and a progress bar are given */
    o.enable_progress_bar = true;
    bx_csv_logger_opts lo = BX_CSV_LOGGER_OPTS_INIT;
    lo.save_dir = root;
    bx_logger *lg = bx_csv_logger_new(&lo);
    o.loggers = &lg;
    o.num_loggers = 1;
    o.log_every_n_steps = 1;
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &o, 8, NULL, &tr));
    const float *w = bx_module_param(m.lin, "weight")->data, *b = bx_module_param(m.lin, "bias")->data;
    r->w[0] = w[0], r->w[1] = w[1], r->w[2] = b[0];
    r->nmetrics = bx_trainer_metrics_count(tr, BX_CALLBACK_METRICS);
    for (int i = 0; i < r->nmetrics && i < 32; i++) {
        snprintf(r->metric_names[i], 64, "%s", bx_trainer_metric_name(tr, BX_CALLBACK_METRICS, i));
        r->metric_values[i] = bx_trainer_metric_value(tr, BX_CALLBACK_METRICS, i);
    }
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    fclose(devnull);
    list_files(root, "", r);
    qsort(r->files, (size_t)r->nfiles, sizeof r->files[0], cmp_str);
    for (int i = 0; i < r->nfiles; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", root, r->files[i]);
        if (strstr(r->files[i], "metrics.csv")) r->csv = slurp(p);
        if (strstr(r->files[i], ".ckpt")) r->ckpt_json[i] = ckpt_canonical(p);
    }
    ch_rmtree(root);
}

static void free_result(run_result *r) {
    free(r->csv);
    for (int i = 0; i < MAXF; i++) free(r->ckpt_json[i]);
}

int main(void) {
    /* 0 ES, 1 MC, 2 LRM, 3 GradAccum, 4 Lambda, 5 ProgressBar */
    const int orders[][NCB] = {
        {0, 2, 3, 4, 5, 1}, {1, 0, 2, 3, 4, 5}, {5, 4, 3, 2, 1, 0}, {3, 1, 5, 0, 4, 2},
    };
    const int norders = (int)(sizeof orders / sizeof orders[0]);
    run_result ref, got;
    run(orders[0], &ref);
    CHECK(ref.nfiles >= 4); /* checkpoints, last.ckpt, metrics.csv, hparams.yaml */
    CHECK(ref.csv != NULL);
    for (int k = 1; k < norders; k++) {
        run(orders[k], &got);
        for (int i = 0; i < 3; i++) CHECK(memcmp(&ref.w[i], &got.w[i], sizeof(float)) == 0);
        CHECK_EQ_INT(got.nmetrics, ref.nmetrics);
        for (int i = 0; i < ref.nmetrics && i < got.nmetrics; i++) {
            CHECK(strcmp(ref.metric_names[i], got.metric_names[i]) == 0);
            CHECK(ref.metric_values[i] == got.metric_values[i]);
        }
        CHECK_EQ_INT(got.nfiles, ref.nfiles);
        for (int i = 0; i < ref.nfiles && i < got.nfiles; i++) {
            if (strcmp(ref.files[i], got.files[i])) {
                tu_failures++;
                fprintf(stderr, "order %d: file %s vs %s\n", k, ref.files[i], got.files[i]);
            }
            if (ref.ckpt_json[i] || got.ckpt_json[i])
                CHECK(ref.ckpt_json[i] && got.ckpt_json[i] && !strcmp(ref.ckpt_json[i], got.ckpt_json[i]));
        }
        CHECK(got.csv && ref.csv && strcmp(got.csv, ref.csv) == 0);
        free_result(&got);
    }
    free_result(&ref);
    CHECK(lambda_epochs > 0);
    return tu_finish("order_independence");
}
