/* Shared fixture of the Trainer tests: a Linear(2,1) model, data, a
 * recording callback and a run helper. */
#ifndef BLIXT_TRAIN_FIXTURE_H
#define BLIXT_TRAIN_FIXTURE_H

#include "test_util.h"

#include <blixt/callbacks.h>
#include <blixt/checkpoint.h>
#include <blixt/ops.h>
#include <blixt/trainer.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <math.h>

/* ---- tiny model ------------------------------------------------------------------ */
typedef struct tmodel {
    bx_module *lin;
    double momentum;
    double losses[64];
    int nloss;
    bool log_epoch;
} tmodel;

static inline bx_module *tm_module(void *self) { return ((tmodel *)self)->lin; }

static inline bx_status tm_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    tmodel *m = self;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    o.momentum = m->momentum;
    bx_optimizer *opt = bx_sgd_new(&o);
    bx_tensor *ps[2] = {bx_module_param(m->lin, "weight"), bx_module_param(m->lin, "bias")};
    bx_status s = bx_optimizer_add_group(opt, ps, 2, NULL);
    return s ? s : bx_optim_config_add_optimizer(cfg, opt);
}

static inline bx_status tm_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    tmodel *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->lin, st, b->x), b->y, BX_REDUCTION_MEAN);
    if (!bx_is_poison(loss) && m->nloss < 64) m->losses[m->nloss++] = bx_get(loss, 0);
    if (m->log_epoch) {
        bx_log_opts o = {BX_LOG_ON_STEP | BX_LOG_ON_EPOCH, (double)(i + 1)};
        bx_status s = bx_trainer_log_ex(bx_step_trainer(st), "m", (double)i, &o);
        if (s) return s;
    }
    return bx_step_set_loss(st, loss);
}

static inline bx_status tm_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    tmodel *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->lin, st, b->x), b->y, BX_REDUCTION_MEAN);
    return bx_log_metric(st, "val_loss", loss, 0);
}

static const bx_model_ops TM_OPS = {.name = "Tiny", .module = tm_module, .configure_optimizers = tm_opt,
                                    .training_step = tm_train, .validation_step = tm_val};

static inline void tm_init(tmodel *m) {
    memset(m, 0, sizeof *m);
    bx_rng r;
    bx_rng_init(&r, 7);
    m->lin = bx_nn_linear(2, 1, true, &r);
}

static inline bx_dataset *make_ds(int n) {
    int64_t xs[2] = {n, 2}, ys[2] = {n, 1};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < n; i++) {
        bx_set(x, 2 * i, (i % 5) * 0.3 - 0.5);
        bx_set(x, 2 * i + 1, (i % 3) * 0.2);
        bx_set(y, i, 0.7 * ((i % 5) * 0.3 - 0.5) - 0.2);
    }
    return bx_dataset_from_tensors(x, y, true);
}

/* ---- recording callback -------------------------------------------------------------- */
typedef struct rec {
    char log[4096];
    int zero_at[16], nzero, step_at[16], nstep;
    int64_t cur_batch;
    int vals;
    bool stop_at_epoch_end;
    uint64_t alloc_before;
    int64_t alloc_delta_max;
    int nbatches;
} rec;

static inline void add(rec *r, const char *s) {
    strncat(r->log, s, sizeof r->log - strlen(r->log) - 2);
    strcat(r->log, " ");
}
#define R(name, tag)                                                           \
    static bx_status r_##name(void *self, bx_trainer *tr) {                    \
        (void)tr;                                                              \
        add(self, tag);                                                        \
        return BX_OK;                                                          \
    }
R(on_fit_start, "fit_start") R(on_fit_end, "fit_end") R(on_sanity_check_start, "sanity_start")
R(on_sanity_check_end, "sanity_end") R(on_train_start, "train_start") R(on_train_end, "train_end")
R(on_train_epoch_start, "epoch_start") R(on_validation_end, "val_end") R(on_after_backward, "after_bwd")

static inline bx_status r_val_start(void *self, bx_trainer *tr) {
    rec *r = self;
    add(r, "val_start");
    if (!bx_trainer_sanity_checking(tr)) r->vals++;
    return BX_OK;
}
static inline bx_status r_epoch_end(void *self, bx_trainer *tr) {
    rec *r = self;
    add(r, "epoch_end");
    if (r->stop_at_epoch_end) bx_trainer_set_should_stop(tr, true);
    return BX_OK;
}
static inline bx_status r_setup(void *self, bx_trainer *tr, bx_stage s) {
    (void)tr; (void)s;
    add(self, "setup");
    return BX_OK;
}
static inline bx_status r_teardown(void *self, bx_trainer *tr, bx_stage s) {
    (void)tr; (void)s;
    add(self, "teardown");
    return BX_OK;
}
static inline bx_status r_tbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)tr; (void)b;
    rec *r = self;
    r->cur_batch = i;
    add(r, "batch_start");
    /* allocations from one batch start to the next (step, logging, dicts,
     * epoch end), once every key exists (from the second epoch on) */
    uint64_t now = bx_alloc_count();
    if (r->nbatches > 6) {
        int64_t d = (int64_t)(now - r->alloc_before);
        if (d > r->alloc_delta_max) r->alloc_delta_max = d;
    }
    r->alloc_before = now;
    return BX_OK;
}
static inline bx_status r_tbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)tr; (void)o; (void)b; (void)i;
    rec *r = self;
    add(r, "batch_end");
    r->nbatches++;
    return BX_OK;
}
static inline bx_status r_vbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i, int d) {
    (void)tr; (void)b; (void)i; (void)d;
    add(self, "vbatch");
    return BX_OK;
}
static inline bx_status r_bzg(void *self, bx_trainer *tr, bx_optimizer *o) {
    (void)tr; (void)o;
    rec *r = self;
    add(r, "zero_grad");
    if (r->nzero < 16) r->zero_at[r->nzero++] = (int)r->cur_batch;
    return BX_OK;
}
static inline bx_status r_bos(void *self, bx_trainer *tr, bx_optimizer *o, int k) {
    (void)tr; (void)o; (void)k;
    rec *r = self;
    add(r, "opt_step");
    if (r->nstep < 16) r->step_at[r->nstep++] = (int)r->cur_batch;
    return BX_OK;
}

static const bx_callback_ops REC_OPS = {
    .name = "Rec", .setup = r_setup, .teardown = r_teardown, .on_fit_start = r_on_fit_start,
    .on_fit_end = r_on_fit_end, .on_sanity_check_start = r_on_sanity_check_start,
    .on_sanity_check_end = r_on_sanity_check_end, .on_train_start = r_on_train_start, .on_train_end = r_on_train_end,
    .on_train_epoch_start = r_on_train_epoch_start, .on_train_epoch_end = r_epoch_end, .on_train_batch_start = r_tbs,
    .on_train_batch_end = r_tbe, .on_validation_start = r_val_start, .on_validation_end = r_on_validation_end,
    .on_validation_batch_start = r_vbs, .on_after_backward = r_on_after_backward, .on_before_optimizer_step = r_bos,
    .on_before_zero_grad = r_bzg};

typedef struct run {
    tmodel m;
    rec r;
    bx_trainer *tr;
    bx_dataset *dtr, *dva;
    bx_loader *ltr, *lva;
} run;

static inline void run_setup(run *x, bx_trainer_opts *o, int ntrain, int nval) {
    memset(x, 0, sizeof *x);
    tm_init(&x->m);
    bx_callback *cb = bx_callback_new(&REC_OPS, &x->r);
    o->callbacks = &cb;
    o->num_callbacks = 1;
    o->enable_checkpointing = false;
    o->enable_progress_bar = false;
    o->logger_default = false;
    x->tr = bx_trainer_new(o);
    x->dtr = make_ds(ntrain);
    x->dva = make_ds(nval);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    x->ltr = bx_loader_new(x->dtr, &lo);
    x->lva = bx_loader_new(x->dva, &lo);
}

static inline bx_status run_fit(run *x, const char *ckpt) {
    bx_model model = {&TM_OPS, &x->m};
    return bx_trainer_fit(x->tr, &model, x->ltr, x->lva, ckpt);
}

static inline void run_free(run *x) {
    bx_trainer_free(x->tr);
    bx_loader_free(x->ltr);
    bx_loader_free(x->lva);
    bx_dataset_free(x->dtr);
    bx_dataset_free(x->dva);
    bx_module_free(x->m.lin);
}


#endif
