/* cb_harness.h - a tiny scripted model for the callback tests: a Linear(2,1)
 * trained with SGD on 2*ntrain samples (2 batches per epoch by default);
 * at every non-sanity validation epoch end it logs the next value of each
 * scripted metric (the last value repeats), and at every training batch the
 * metric "train_metric" from its own script. Header-only, one include per
 * test program. */
#ifndef CB_HARNESS_H
#define CB_HARNESS_H

#include "test_util.h"

#include <blixt/callbacks.h>
#include <blixt/ops.h>
#include <blixt/trainer.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#define CH_MAXV 16
typedef struct ch_model {
    bx_module *lin;
    const char *names[4];
    double vals[4][CH_MAXV];
    int nvals[4], nmetrics;
    int val_runs;
    double train_vals[CH_MAXV];
    int ntrain_vals;
} ch_model;

static bx_module *ch_module(void *self) { return ((ch_model *)self)->lin; }

static inline bx_status ch_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    ch_model *m = self;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.05;
    bx_optimizer *opt = bx_sgd_new(&o);
    bx_tensor *ps[2] = {bx_module_param(m->lin, "weight"), bx_module_param(m->lin, "bias")};
    bx_status s = bx_optimizer_add_group(opt, ps, 2, NULL);
    return s ? s : bx_optim_config_add_optimizer(cfg, opt);
}

static inline bx_status ch_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    ch_model *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->lin, st, b->x), b->y, BX_REDUCTION_MEAN);
    if (m->ntrain_vals) {
        bx_trainer *tr = bx_step_trainer(st);
        int64_t e = bx_trainer_current_epoch(tr);
        double v = m->train_vals[e < m->ntrain_vals ? e : m->ntrain_vals - 1];
        bx_status s = bx_trainer_log(tr, "train_metric", v, BX_LOG_ON_EPOCH | BX_LOG_NO_STEP);
        if (s) return s;
    }
    return bx_step_set_loss(st, loss);
}

static inline bx_status ch_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)self, (void)st, (void)b, (void)i;
    return BX_OK;
}

static inline bx_status ch_val_epoch_end(void *self, bx_trainer *tr) {
    ch_model *m = self;
    if (bx_trainer_sanity_checking(tr)) return BX_OK;
    int r = m->val_runs++;
    for (int k = 0; k < m->nmetrics; k++) {
        double v = m->vals[k][r < m->nvals[k] ? r : m->nvals[k] - 1];
        bx_status s = bx_trainer_log(tr, m->names[k], v, 0);
        if (s) return s;
    }
    return BX_OK;
}

static const bx_callback_ops CH_HOOKS = {.name = "ChModel", .on_validation_epoch_end = ch_val_epoch_end};
static const bx_model_ops CH_OPS = {.name = "ChModel", .module = ch_module, .configure_optimizers = ch_opt,
                                    .training_step = ch_train, .validation_step = ch_val, .hooks = &CH_HOOKS};

static inline void ch_init(ch_model *m) {
    memset(m, 0, sizeof *m);
    bx_rng r;
    bx_rng_init(&r, 3);
    m->lin = bx_nn_linear(2, 1, true, &r);
}

static inline void ch_metric(ch_model *m, const char *name, const double *v, int n) {
    int k = m->nmetrics++;
    m->names[k] = name;
    for (int i = 0; i < n && i < CH_MAXV; i++) m->vals[k][i] = v[i];
    m->nvals[k] = n;
}

static inline bx_dataset *ch_ds(int n) {
    int64_t xs[2] = {n, 2}, ys[2] = {n, 1};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < n; i++) {
        bx_set(x, 2 * i, (i % 5) * 0.3 - 0.5);
        bx_set(x, 2 * i + 1, (i % 3) * 0.2);
        bx_set(y, i, 0.7 * ((i % 5) * 0.3 - 0.5) - 0.2);
    }
    return bx_dataset_from_tensors(x, y, true);
}

/* Trainer options for the tests: no sanity check, no logger, no progress bar. */
static inline bx_trainer_opts ch_opts(int64_t max_epochs, bx_callback **cbs, int ncb, const char *root) {
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = max_epochs;
    o.num_sanity_val_steps = 0;
    o.callbacks = cbs;
    o.num_callbacks = ncb;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.enable_model_summary = false;
    o.logger_default = false;
    o.default_root_dir = root ? root : ".";
    return o;
}

/* Runs fit of a fresh trainer; *tr_out keeps the trainer (caller frees) when non-NULL. */
static inline bx_status ch_fit(ch_model *m, bx_trainer_opts *o, int ntrain, const char *ckpt, bx_trainer **tr_out) {
    bx_trainer *tr = bx_trainer_new(o);
    if (!tr) return BX_ERR_INVALID;
    bx_dataset *dtr = ch_ds(ntrain), *dva = ch_ds(2);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ltr = bx_loader_new(dtr, &lo), *lva = bx_loader_new(dva, &lo);
    bx_model model = {&CH_OPS, m};
    bx_status s = bx_trainer_fit(tr, &model, ltr, lva, ckpt);
    if (tr_out) *tr_out = tr;
    else bx_trainer_free(tr);
    bx_loader_free(ltr);
    bx_loader_free(lva);
    bx_dataset_free(dtr);
    bx_dataset_free(dva);
    return s;
}

/* The i-th callback of tr whose name is `name`. */
static inline bx_callback *ch_find(bx_trainer *tr, const char *name, int nth) {
    for (int i = 0; i < bx_trainer_num_callbacks(tr); i++)
        if (!strcmp(bx_callback_name(bx_trainer_callback(tr, i)), name) && nth-- == 0) return bx_trainer_callback(tr, i);
    return NULL;
}

static inline bool ch_exists(const char *dir, const char *name) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* Number of entries in dir (0 when missing). */
static inline int ch_count(const char *dir) {
    int n = tu_count_entries(dir);
    return n < 0 ? 0 : n;
}

/* rm -rf of a test directory tree. */
static inline void ch_rmtree(const char *dir) { tu_rmtree(dir); }

#endif
