/* qat_fixture.h - the model and data the QuantizationAwareTraining tests
 * share: an MLP fc1 (4->8) -> relu -> fc2 (8->2) whose forward goes through
 * its children by name (so QAT can swap them), synthetic regression data,
 * quiet Trainer options and a fit helper. A test may define QF_INIT_SEED
 * (weights) and QF_DS_AMP (input amplitude) before including it. Header-only,
 * one include per test program. */
#ifndef QAT_FIXTURE_H
#define QAT_FIXTURE_H

#include "test_util.h"

#include <blixt/callbacks.h>
#include <blixt/ops.h>
#include <blixt/qat.h>
#include <blixt/trainer.h>
#include <math.h>

#ifndef QF_INIT_SEED
#define QF_INIT_SEED 7
#endif
#ifndef QF_DS_AMP
#define QF_DS_AMP 1.0
#endif

/* ---- the model: fc1 (4->8) -> relu -> fc2 (8->2), forward by name ---------- */
typedef struct mlp {
    bx_module *root;
    int64_t val_forwards;
} mlp;

static bx_tensor *mlp_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    x = bx_module_forward(bx_module_child(m, "fc1"), st, x);
    x = bx_module_forward(bx_module_child(m, "relu"), st, x);
    return bx_module_forward(bx_module_child(m, "fc2"), st, x);
}
static const bx_module_type MLP_TYPE = {"Mlp", mlp_forward, NULL, NULL, NULL, NULL};

static bx_module *m_module(void *self) { return ((mlp *)self)->root; }
static bx_status m_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    bx_optimizer *opt = bx_sgd_new(&o);
    bx_named_tensors *np = bx_module_named_parameters(((mlp *)self)->root);
    bx_status s = bx_optimizer_add_group(opt, np->tensors, np->n, NULL);
    bx_named_tensors_free(np);
    return s ? s : bx_optim_config_add_optimizer(cfg, opt);
}
static bx_status m_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    bx_tensor *y = bx_module_forward(((mlp *)self)->root, st, b->x);
    return bx_step_set_loss(st, bx_mse_loss(st, y, b->y, BX_REDUCTION_MEAN));
}
static bx_status m_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    ((mlp *)self)->val_forwards++;
    bx_module_forward(((mlp *)self)->root, st, b->x);
    return BX_OK;
}
static const bx_model_ops MLP_OPS = {.name = "Mlp", .module = m_module, .configure_optimizers = m_opt,
                                     .training_step = m_train, .validation_step = m_val};

static void mlp_init(mlp *m) {
    memset(m, 0, sizeof *m);
    bx_rng r;
    bx_rng_init(&r, QF_INIT_SEED);
    m->root = bx_module_new(&MLP_TYPE, NULL);
    bx_module_add_child(m->root, "fc1", bx_nn_linear(4, 8, true, &r));
    bx_module_add_child(m->root, "relu", bx_nn_relu());
    bx_module_add_child(m->root, "fc2", bx_nn_linear(8, 2, true, &r));
}

static bx_dataset *make_ds(int n, int seed) {
    int64_t xs[2] = {n, 4}, ys[2] = {n, 2};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < n; i++) {
        double v[4];
        for (int k = 0; k < 4; k++) v[k] = QF_DS_AMP * sin(0.7 * (i + seed) + 1.3 * k);
        for (int k = 0; k < 4; k++) bx_set(x, 4 * i + k, v[k]);
        bx_set(y, 2 * i, 0.5 * v[0] - 0.3 * v[1] + 0.2);
        bx_set(y, 2 * i + 1, fabs(v[2]) - 0.4 * v[3]);
    }
    return bx_dataset_from_tensors(x, y, true);
}

static bx_trainer_opts topts(int64_t epochs, bx_callback **cbs, int ncb) {
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = epochs;
    o.num_sanity_val_steps = 0;
    o.callbacks = cbs;
    o.num_callbacks = ncb;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.enable_model_summary = false;
    o.logger_default = false;
    return o;
}

static bx_status fit(mlp *m, bx_trainer_opts *o, int ntrain, int nval, int bs, const char *ckpt, bx_trainer **keep) {
    bx_trainer *tr = bx_trainer_new(o);
    if (!tr) return BX_ERR_INVALID;
    bx_dataset *dtr = make_ds(ntrain, 0), *dva = make_ds(nval, 100);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = bs;
    bx_loader *ltr = bx_loader_new(dtr, &lo), *lva = bx_loader_new(dva, &lo);
    bx_model model = {&MLP_OPS, m};
    bx_status s = bx_trainer_fit(tr, &model, ltr, lva, ckpt);
    if (keep) *keep = tr;
    else bx_trainer_free(tr);
    bx_loader_free(ltr);
    bx_loader_free(lva);
    bx_dataset_free(dtr);
    bx_dataset_free(dva);
    return s;
}

/* forward of root on x, copied out (owned) */
static bx_tensor *run(bx_module *root, const bx_tensor *x) {
    bx_step *st = bx_step_new();
    bx_no_grad_push(st);
    bx_tensor *y = bx_module_forward(root, st, (bx_tensor *)x);
    bx_tensor *out = bx_is_poison(y) ? NULL : bx_tensor_clone(y);
    bx_no_grad_pop(st);
    bx_step_free(st);
    return out;
}

#endif
