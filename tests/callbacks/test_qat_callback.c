/* test_qat_callback.c - QuantizationAwareTraining: an MLP trained with QAT on
 * synthetic data and converted at fit end (int8 outputs close to the float
 * QAT model's), observers frozen outside training, collect_quantization
 * trigger counts (spec/callbacks.md §10 pins), construction / fit-start
 * errors, and resuming a QAT checkpoint. */
#include "qat_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- probe: float QAT output at fit end (runs before QAT's on_fit_end) ------ */
typedef struct probe {
    const bx_tensor *x;
    bx_tensor *float_out;
    int val_batches, val_obs_on, train_batches, train_obs_on;
} probe;

static bool observer_on(bx_trainer *tr) {
    bx_module *q = bx_module_find(bx_trainer_module(tr), "quant.activation_post_process");
    return q && bx_get(bx_module_buffer(q, "observer_enabled"), 0) != 0;
}
static bx_status p_fit_end(void *self, bx_trainer *tr) {
    probe *p = self;
    bx_module *root = bx_trainer_module(tr);
    bx_module_train(root, false);
    p->float_out = run(root, p->x);
    return BX_OK;
}
static bx_status p_vbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i, int d) {
    (void)b, (void)i, (void)d;
    probe *p = self;
    if (bx_trainer_sanity_checking(tr)) return BX_OK;
    p->val_batches++;
    p->val_obs_on += observer_on(tr);
    return BX_OK;
}
static bx_status p_tbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)b, (void)i;
    probe *p = self;
    p->train_batches++;
    p->train_obs_on += observer_on(tr);
    return BX_OK;
}
static const bx_callback_ops PROBE_OPS = {
    .name = "Probe", .on_fit_end = p_fit_end, .on_validation_batch_start = p_vbs, .on_train_batch_start = p_tbs};

static void test_mlp_convert(void) {
    mlp m;
    mlp_init(&m);
    bx_dataset *ds = make_ds(64, 0);
    probe p = {bx_dataset_x(ds), NULL, 0, 0, 0, 0};
    bx_qat_fuse_group g[1] = {{{"fc1", "relu", NULL}}};
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.qconfig = "qnnpack";
    o.modules_to_fuse = g;
    o.num_modules_to_fuse = 1;
    bx_callback *cbs[2] = {bx_callback_new(&PROBE_OPS, &p), bx_qat_callback_new(&o)};
    CHECK(cbs[1] != NULL);
    bx_trainer_opts to = topts(6, cbs, 2);
    bx_trainer *tr = NULL;
    CHECK_OK(fit(&m, &to, 64, 16, 16, NULL, &tr));
    bx_callback *qcb = bx_trainer_callback(tr, 1);
    CHECK(bx_qat_callback_converted(qcb));
    /* the model's children are the int8 modules now */
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "fc1")), "QuantizedLinearReLU"));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "fc2")), "QuantizedLinear"));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "quant")), "Quantize"));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "dequant")), "DeQuantize"));
    bx_named_tensors *np = bx_module_named_parameters(m.root);
    CHECK_EQ_INT(np->n, 0);
    bx_named_tensors_free(np);
    /* observers learn in training only: off during validation, on in training */
    CHECK(p.val_batches > 0 && p.val_obs_on == 0);
    CHECK(p.train_batches > 0 && p.train_obs_on == p.train_batches);
    /* int8 inference matches the float QAT model within a few output steps */
    bx_tensor *q = run(m.root, p.x);
    CHECK(q != NULL && p.float_out != NULL);
    if (q && p.float_out) {
        double s;
        int64_t z;
        CHECK(bx_quant_module_qparams(bx_module_child(m.root, "fc2"), &s, &z));
        double maxd = 0, maxv = 0;
        for (int64_t i = 0; i < bx_numel(q); i++) {
            maxd = fmax(maxd, fabs(bx_get(q, i) - bx_get(p.float_out, i)));
            maxv = fmax(maxv, fabs(bx_get(p.float_out, i)));
        }
        CHECK(maxv > 0.05);
        CHECK(maxd <= 3.0 * s);
        if (maxd > 3.0 * s) fprintf(stderr, "int8 vs float QAT: max |diff| %g, output scale %g\n", maxd, s);
    }
    bx_tensor_free(q);
    bx_tensor_free(p.float_out);
    bx_trainer_free(tr);
    bx_dataset_free(ds);
    bx_module_free(m.root);
}

/* observer_enabled_stages with "validate": observers keep learning in validation */
static void test_stages(void) {
    mlp m;
    mlp_init(&m);
    probe p = {NULL, NULL, 0, 0, 0, 0};
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.observer_enabled_stages = BX_QAT_STAGE_TRAIN | BX_QAT_STAGE_VALIDATE;
    o.quantize_on_fit_end = false;
    bx_callback *cbs[2] = {bx_qat_callback_new(&o), bx_callback_new(&PROBE_OPS, &p)};
    p.x = NULL;
    bx_trainer_opts to = topts(2, cbs, 2);
    bx_trainer *tr = NULL;
    bx_dataset *ds = make_ds(8, 0);
    p.x = bx_dataset_x(ds);
    CHECK_OK(fit(&m, &to, 16, 8, 8, NULL, &tr));
    CHECK(p.val_batches == 2 && p.val_obs_on == 2);
    CHECK(!bx_qat_callback_converted(bx_trainer_callback(tr, 0)));
    /* without conversion the wrapper is gone: still a float QAT model */
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "fc1")), "Linear"));
    bx_tensor_free(p.float_out);
    bx_trainer_free(tr);
    bx_dataset_free(ds);
    bx_module_free(m.root);
}

/* ---- collect_quantization: 4 epochs x (1 train + 1 val batch) + 1 sanity ---- */
static bool even_epochs(void *ud, bx_trainer *tr) {
    (void)ud;
    return bx_trainer_current_epoch(tr) % 2 == 0;
}
static bool last_epoch(void *ud, bx_trainer *tr) {
    (void)ud;
    return bx_trainer_current_epoch(tr) == bx_trainer_max_epochs(tr) - 1;
}
static bool never(void *ud, bx_trainer *tr) {
    (void)ud, (void)tr;
    return false;
}

static int64_t count_calls(bx_qat_collect kind, int64_t n, bx_qat_trigger_fn fn) {
    mlp m;
    mlp_init(&m);
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.collect = kind;
    o.collect_n = n;
    o.collect_fn = fn;
    o.quantize_on_fit_end = false; /* the unfused ReLU module has no int8 version */
    bx_callback *cbs[1] = {bx_qat_callback_new(&o)};
    bx_trainer_opts to = topts(4, cbs, 1);
    to.num_sanity_val_steps = 1;
    bx_trainer *tr = NULL;
    bx_status s = fit(&m, &to, 8, 8, 8, NULL, &tr);
    CHECK_OK(s);
    int64_t c = bx_qat_callback_forward_calls(bx_trainer_callback(tr, 0));
    CHECK_EQ_INT(m.val_forwards, 5);
    bx_trainer_free(tr);
    bx_module_free(m.root);
    return c;
}

static void test_collect_counts(void) {
    CHECK_EQ_INT(count_calls(BX_QAT_COLLECT_ALWAYS, 0, NULL), 9);
    CHECK_EQ_INT(count_calls(BX_QAT_COLLECT_COUNT, 3, NULL), 3);
    CHECK_EQ_INT(count_calls(BX_QAT_COLLECT_FN, 0, never), 0);
    CHECK_EQ_INT(count_calls(BX_QAT_COLLECT_FN, 0, even_epochs), 5);
    CHECK_EQ_INT(count_calls(BX_QAT_COLLECT_FN, 0, last_epoch), 2);
}

/* ---- errors ---------------------------------------------------------------------- */
/* BX_ERR_INVALID when construction failed (the message is kept), else OK */
static bx_status new_status(const bx_qat_opts *o) {
    bx_callback *cb = bx_qat_callback_new(o);
    if (!cb) return BX_ERR_INVALID;
    bx_callback_free(cb);
    return BX_OK;
}

static void test_errors(void) {
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.qconfig = "abc";
    CHECK(bx_qat_callback_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "qconfig 'abc'") != NULL);
    o = (bx_qat_opts)BX_QAT_OPTS_INIT;
    o.observer_type = "histogram"; /* get_default_qconfig: accepted (test_qat_histogram.c) */
    CHECK_OK(new_status(&o));
    o.qconfig = "abc";
    CHECK_ERR(new_status(&o), BX_ERR_INVALID, "qconfig 'abc'");
    o.qconfig = "fbgemm";
    o.observer_type = "minmax";
    CHECK_ERR(new_status(&o), BX_ERR_INVALID, "observer_type 'minmax'");
    o = (bx_qat_opts)BX_QAT_OPTS_INIT;
    o.collect = BX_QAT_COLLECT_COUNT;
    o.collect_n = -1;
    CHECK_ERR(new_status(&o), BX_ERR_INVALID, "collect_quantization");
    o.collect = BX_QAT_COLLECT_FN;
    CHECK_ERR(new_status(&o), BX_ERR_INVALID, "collect_quantization");
    /* a custom qconfig with histogram is taken as given */
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("fbgemm", 0, &qc));
    o = (bx_qat_opts)BX_QAT_OPTS_INIT;
    o.custom_qconfig = &qc;
    o.observer_type = "histogram";
    CHECK_OK(new_status(&o));
    /* fuse group naming a missing module: the fit fails at on_fit_start */
    mlp m;
    mlp_init(&m);
    bx_qat_fuse_group g[1] = {{{"fc1", "act", NULL}}};
    o = (bx_qat_opts)BX_QAT_OPTS_INIT;
    o.modules_to_fuse = g;
    o.num_modules_to_fuse = 1;
    bx_callback *cbs[1] = {bx_qat_callback_new(&o)};
    bx_trainer_opts to = topts(1, cbs, 1);
    CHECK_ERR(fit(&m, &to, 8, 8, 8, NULL, NULL), BX_ERR_NOT_FOUND, "missing module 'act'");
    /* nothing was changed */
    CHECK(bx_module_child(m.root, "quant") == NULL);
    bx_module_free(m.root);
}

/* ---- resume: the model is prepared before the checkpoint's weights load ----- */
static bx_status s_train_end(void *self, bx_trainer *tr) { return bx_trainer_save_checkpoint(tr, (const char *)self, false); }
static const bx_callback_ops SAVER_OPS = {.name = "Saver", .on_train_end = s_train_end};

static const bx_qat_fuse_group FUSE[1] = {{{"fc1", "relu", NULL}}};

static void test_resume(void) {
    char dir[] = "/tmp/bx_qat_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/qat.ckpt", dir);
    mlp m;
    mlp_init(&m);
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.quantize_on_fit_end = false;
    o.modules_to_fuse = FUSE;
    o.num_modules_to_fuse = 1;
    bx_callback *cbs[2] = {bx_qat_callback_new(&o), bx_callback_new(&SAVER_OPS, path)};
    bx_trainer_opts to = topts(2, cbs, 2);
    CHECK_OK(fit(&m, &to, 16, 8, 8, NULL, NULL));
    double mn = bx_get(bx_module_buffer(bx_module_find(m.root, "fc1.activation_post_process.activation_post_process"),
                                        "min_val"), 0);
    double ws = bx_get(bx_module_buffer(bx_module_find(m.root, "fc2.weight_fake_quant"), "scale"), 0);
    /* a fresh model and callback resume from the QAT checkpoint */
    mlp m2;
    mlp_init(&m2);
    bx_qat_opts o2 = BX_QAT_OPTS_INIT;
    o2.modules_to_fuse = FUSE;
    o2.num_modules_to_fuse = 1;
    bx_callback *cbs2[1] = {bx_qat_callback_new(&o2)};
    bx_trainer_opts to2 = topts(2, cbs2, 1); /* already done: restores, then converts at fit end */
    bx_trainer *tr = NULL;
    CHECK_OK(fit(&m2, &to2, 16, 8, 8, path, &tr));
    CHECK(bx_qat_callback_converted(bx_trainer_callback(tr, 0)));
    bx_trainer_free(tr);
    /* per-channel fbgemm weight observer (the default qconfig) restored before convert */
    (void)mn, (void)ws;
    mlp m3;
    mlp_init(&m3);
    bx_qat_opts o3 = BX_QAT_OPTS_INIT;
    o3.modules_to_fuse = FUSE;
    o3.num_modules_to_fuse = 1;
    o3.quantize_on_fit_end = false;
    bx_callback *cbs3[1] = {bx_qat_callback_new(&o3)};
    bx_trainer_opts to3 = topts(2, cbs3, 1);
    CHECK_OK(fit(&m3, &to3, 16, 8, 8, path, NULL));
    CHECK_NEAR(bx_get(bx_module_buffer(bx_module_find(m3.root, "fc1.activation_post_process.activation_post_process"),
                                       "min_val"), 0), mn, 0);
    CHECK_NEAR(bx_get(bx_module_buffer(bx_module_find(m3.root, "fc2.weight_fake_quant"), "scale"), 0), ws, 0);
    /* a checkpoint of another qconfig is refused */
    mlp m4;
    mlp_init(&m4);
    bx_qat_opts o4 = BX_QAT_OPTS_INIT;
    o4.modules_to_fuse = FUSE;
    o4.num_modules_to_fuse = 1;
    o4.qconfig = "qnnpack";
    bx_callback *cbs4[1] = {bx_qat_callback_new(&o4)};
    bx_trainer_opts to4 = topts(3, cbs4, 1);
    CHECK_ERR(fit(&m4, &to4, 16, 8, 8, path, NULL), BX_ERR_INVALID, "qconfig 'fbgemm'");
    unlink(path);
    rmdir(dir);
    bx_module_free(m.root);
    bx_module_free(m2.root);
    bx_module_free(m3.root);
    bx_module_free(m4.root);
}

/* ---- Conv + BatchNorm + ReLU fusion: a small CNN converts to int8 conv ------ */
typedef struct cnn {
    bx_module *root;
} cnn;
static bx_tensor *cnn_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    const char *order[5] = {"conv", "bn", "relu", "flat", "fc"};
    for (int i = 0; i < 5; i++) x = bx_module_forward(bx_module_child(m, order[i]), st, x);
    return x;
}
static const bx_module_type CNN_TYPE = {"Cnn", cnn_forward, NULL, NULL, NULL, NULL};
static bx_module *c_module(void *self) { return ((cnn *)self)->root; }
static bx_status c_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.05;
    bx_optimizer *opt = bx_sgd_new(&o);
    bx_named_tensors *np = bx_module_named_parameters(((cnn *)self)->root);
    bx_status s = bx_optimizer_add_group(opt, np->tensors, np->n, NULL);
    bx_named_tensors_free(np);
    return s ? s : bx_optim_config_add_optimizer(cfg, opt);
}
static bx_status c_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    bx_tensor *y = bx_module_forward(((cnn *)self)->root, st, b->x);
    return bx_step_set_loss(st, bx_mse_loss(st, y, b->y, BX_REDUCTION_MEAN));
}
static const bx_model_ops CNN_OPS = {.name = "Cnn", .module = c_module, .configure_optimizers = c_opt,
                                     .training_step = c_train};

static void test_conv_bn_relu(void) {
    bx_rng r;
    bx_rng_init(&r, 5);
    cnn m = {bx_module_new(&CNN_TYPE, NULL)};
    bx_module_add_child(m.root, "conv", bx_nn_conv2d(1, 2, 3, 3, NULL, true, &r));
    bx_module_add_child(m.root, "bn", bx_nn_batchnorm2d(2, NULL));
    bx_module_add_child(m.root, "relu", bx_nn_relu());
    bx_module_add_child(m.root, "flat", bx_nn_flatten(1, -1));
    bx_module_add_child(m.root, "fc", bx_nn_linear(8, 1, true, &r));
    int64_t xs[4] = {16, 1, 4, 4}, ys[2] = {16, 1};
    bx_tensor *x = bx_tensor_new(BX_F32, 4, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int64_t i = 0; i < 16 * 16; i++) bx_set(x, i, sin(0.3 * (double)i));
    for (int i = 0; i < 16; i++) bx_set(y, i, cos(0.5 * i));
    bx_dataset *ds = bx_dataset_from_tensors(x, y, true);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 8;
    bx_loader *ld = bx_loader_new(ds, &lo);
    bx_qat_fuse_group g[1] = {{{"conv", "bn", "relu"}}};
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.modules_to_fuse = g;
    o.num_modules_to_fuse = 1;
    bx_callback *cbs[1] = {bx_qat_callback_new(&o)};
    bx_trainer_opts to = topts(2, cbs, 1);
    bx_trainer *tr = bx_trainer_new(&to);
    bx_model model = {&CNN_OPS, &m};
    CHECK_OK(bx_trainer_fit(tr, &model, ld, NULL, NULL));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "conv")), "QuantizedConv2dReLU"));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "fc")), "QuantizedLinear"));
    bx_tensor *out = run(m.root, bx_dataset_x(ds));
    CHECK(out && out->ndim == 2 && out->shape[0] == 16 && out->shape[1] == 1);
    bx_tensor_free(out);
    bx_trainer_free(tr);
    bx_loader_free(ld);
    bx_dataset_free(ds);
    bx_module_free(m.root);
}

int main(void) {
    test_mlp_convert();
    test_stages();
    test_collect_counts();
    test_errors();
    test_resume();
    test_conv_bn_relu();
    return tu_finish("test_qat_callback");
}
