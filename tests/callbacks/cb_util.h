/* cb_util.h - shared fixtures of the callback tests: a tiny configurable
 * model (Linear 2->1, SGD/Adam, one or two optimizers, one or two param
 * groups, an optional StepLR), a dataset, and an in-memory logger that keeps
 * every record (names, values, step). */
#ifndef BLIXT_TESTS_CB_UTIL_H
#define BLIXT_TESTS_CB_UTIL_H

#include "test_util.h"

#include <blixt/callbacks.h>
#include <blixt/trainer.h>

#include <stdint.h>

/* ---- in-memory logger ------------------------------------------------------------ */
#define CU_MAX_REC 256
typedef struct cu_record {
    int n;
    char names[8][64];
    double values[8];
    int64_t step;
} cu_record;

typedef struct cu_logger {
    cu_record rec[CU_MAX_REC];
    int nrec;
} cu_logger;

static bx_status cu_log_metrics(void *self, const char *const *names, const double *values, int n, int64_t step) {
    cu_logger *l = self;
    if (l->nrec == CU_MAX_REC) return BX_OK;
    cu_record *r = &l->rec[l->nrec++];
    r->n = n < 8 ? n : 8;
    r->step = step;
    for (int i = 0; i < r->n; i++) {
        snprintf(r->names[i], sizeof r->names[i], "%s", names[i]);
        r->values[i] = values[i];
    }
    return BX_OK;
}
static const char *cu_version(void *self) {
    (void)self;
    return "7";
}
static const bx_logger_ops CU_LOGGER_OPS = {.name = "MemLogger", .log_metrics = cu_log_metrics, .version = cu_version};

/* Index of `name` in record r, or -1. */
static inline int cu_find(const cu_record *r, const char *name) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->names[i], name)) return i;
    return -1;
}

/* ---- tiny model ------------------------------------------------------------------- */
typedef struct cu_model {
    bx_module *lin;
    int opt_type;     /* 0 SGD, 1 Adam */
    int num_opts;     /* 1 or 2 (the second: same type, on the bias, never stepped) */
    int groups;       /* 1 or 2 (weight / bias) */
    const char *group_names[2];
    double momentum;  /* SGD */
    int sched;        /* 0 none, 1 StepLR(1, 0.5) */
    bx_interval sched_interval;
    const char *sched_name;
    bool log_prog_bar;
    bool bias_later;  /* the optimizer starts with the weight only (a test adds the bias) */
} cu_model;

static bx_module *cu_module(void *self) { return ((cu_model *)self)->lin; }

static bx_optimizer *cu_new_opt(const cu_model *m, double lr) {
    if (m->opt_type == 1) {
        bx_adam_opts o = BX_ADAM_OPTS_INIT;
        o.lr = lr;
        o.betas[0] = 0.8;
        return bx_adam_new(&o);
    }
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = lr;
    o.momentum = m->momentum;
    return bx_sgd_new(&o);
}

static bx_status cu_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    cu_model *m = self;
    bx_optimizer *opt = cu_new_opt(m, 0.1);
    bx_tensor *w = bx_module_param(m->lin, "weight"), *b = bx_module_param(m->lin, "bias");
    bx_status s;
    if (m->groups == 2) {
        bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
        g.name = m->group_names[0];
        s = bx_optimizer_add_group(opt, &w, 1, &g);
        g.name = m->group_names[1];
        g.lr = 0.01;
        if (s == BX_OK) s = bx_optimizer_add_group(opt, &b, 1, &g);
    } else if (m->bias_later) {
        s = bx_optimizer_add_group(opt, &w, 1, NULL);
    } else {
        bx_tensor *ps[2] = {w, b};
        s = bx_optimizer_add_group(opt, ps, 2, NULL);
    }
    if (s == BX_OK && m->sched) {
        bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
        so.step_size = 1;
        so.gamma = 0.5;
        bx_sched_config sc = BX_SCHED_CONFIG_INIT;
        sc.scheduler = bx_step_lr_new(opt, &so);
        sc.interval = m->sched_interval;
        sc.name = m->sched_name;
        s = bx_optim_config_add_optimizer(cfg, opt);
        if (s == BX_OK) s = bx_optim_config_add_scheduler(cfg, &sc);
    } else if (s == BX_OK) {
        s = bx_optim_config_add_optimizer(cfg, opt);
    }
    if (s == BX_OK && m->num_opts == 2) {
        bx_optimizer *o2 = cu_new_opt(m, 0.2);
        s = bx_optimizer_add_group(o2, &b, 1, NULL);
        if (s == BX_OK) s = bx_optim_config_add_optimizer(cfg, o2);
    }
    return s;
}

static bx_status cu_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    cu_model *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->lin, st, b->x), b->y, BX_REDUCTION_MEAN);
    if (m->log_prog_bar) {
        bx_status s = bx_trainer_log(bx_step_trainer(st), "acc", 0.25 * (double)(i + 1), BX_LOG_PROG_BAR);
        if (s) return s;
    }
    return bx_step_set_loss(st, loss);
}

static bx_status cu_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    cu_model *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->lin, st, b->x), b->y, BX_REDUCTION_MEAN);
    return bx_log_metric(st, "val_loss", loss, 0);
}

static const bx_model_ops CU_OPS = {.name = "CbTiny", .module = cu_module, .configure_optimizers = cu_opt,
                                    .training_step = cu_train, .validation_step = cu_val, .test_step = cu_val};

static inline void cu_model_init(cu_model *m) {
    memset(m, 0, sizeof *m);
    bx_rng r;
    bx_rng_init(&r, 7);
    m->lin = bx_nn_linear(2, 1, true, &r);
    m->num_opts = 1;
    m->groups = 1;
}

static inline bx_dataset *cu_dataset(int n) {
    int64_t xs[2] = {n, 2}, ys[2] = {n, 1};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < n; i++) {
        bx_set(x, 2 * i, (i % 5) * 0.3 - 0.5);
        bx_set(x, 2 * i + 1, (i % 3) * 0.2);
        bx_set(y, i, 0.7 * ((i % 5) * 0.3 - 0.5) - 0.2);
    }
    return bx_dataset_from_tensors(x, y, true);
}

/* One fit: `ntrain`/`nval` samples in batches of 2, the given callbacks
 * (taken over), an in-memory logger when `lg` is non-NULL. Returns the
 * Trainer (caller frees) through *trp when non-NULL. */
static inline bx_status cu_fit(cu_model *m, bx_trainer_opts *o, bx_callback **cbs, int ncb, cu_logger *lg, int ntrain,
                               int nval, bx_trainer **trp) {
    o->callbacks = cbs;
    o->num_callbacks = ncb;
    o->enable_checkpointing = false;
    o->enable_model_summary = false;
    bx_logger *l = NULL;
    if (lg) {
        l = bx_logger_new(&CU_LOGGER_OPS, lg);
        o->loggers = &l;
        o->num_loggers = 1;
    } else {
        o->logger_default = false;
    }
    bx_trainer *tr = bx_trainer_new(o);
    if (!tr) return BX_ERR_INVALID;
    bx_dataset *dtr = cu_dataset(ntrain), *dva = cu_dataset(nval > 0 ? nval : 2);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ltr = bx_loader_new(dtr, &lo), *lva = bx_loader_new(dva, &lo);
    bx_model model = {&CU_OPS, m};
    bx_status s = bx_trainer_fit(tr, &model, ltr, nval > 0 ? lva : NULL, NULL);
    bx_loader_free(ltr);
    bx_loader_free(lva);
    bx_dataset_free(dtr);
    bx_dataset_free(dva);
    if (trp) *trp = tr;
    else bx_trainer_free(tr);
    return s;
}

#endif
