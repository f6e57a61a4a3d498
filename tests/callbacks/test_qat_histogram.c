/* test_qat_histogram.c - QuantizationAwareTraining(observer_type="histogram")
 * (Lightning 1.9.5: get_default_qconfig(backend), observers instead of
 * fake-quants): the prepared model holds HistogramObserver / MinMax
 * observers, training stays float (same weights as a plain fit), observers
 * learn in training only (observer_enabled_stages), the int8 model converted
 * at fit end uses the observers' qparams, and a checkpoint's histogram
 * buffers restore when resuming. Bit-exactness against torch is the golden
 * case qhist_convert_* (tests/quant/gen_hist_cases.py). */
#define QF_INIT_SEED 11
#define QF_DS_AMP 1.5
#include "qat_fixture.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *tname(bx_module *root, const char *path) {
    bx_module *m = bx_module_find(root, path);
    return m ? bx_module_type_name(m) : "(none)";
}

static float hist_sum(bx_module *obs) {
    const bx_tensor *h = bx_module_buffer(obs, "histogram");
    float s = 0;
    for (int64_t i = 0; h && i < bx_numel(h); i++) s += (float)bx_get(h, i);
    return s;
}

/* ---- probe: structure, observer flags, histogram mass per stage ------------- */
typedef struct probe {
    const bx_tensor *x;
    bx_tensor *float_out;
    bool types_ok;
    int train_batches, train_on, val_batches, val_on;
    float mass_before_val, mass_after_val;
    bx_tensor *fc2_scale; /* the weight observer's qparams just before convert */
} probe;

static bx_module *input_obs(bx_trainer *tr) { return bx_module_find(bx_trainer_module(tr), "quant.activation_post_process"); }

static bx_status p_tbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)b, (void)i;
    probe *p = self;
    bx_module *r = bx_trainer_module(tr);
    p->types_ok = !strcmp(tname(r, "quant.activation_post_process"), "HistogramObserver") &&
                  !strcmp(tname(r, "fc1.activation_post_process"), "HistogramObserver") &&
                  !strcmp(tname(r, "fc2.activation_post_process"), "HistogramObserver") &&
                  !strcmp(tname(r, "fc1.weight_fake_quant"), "PerChannelMinMaxObserver") &&
                  !strcmp(tname(r, "fc2.weight_fake_quant"), "PerChannelMinMaxObserver");
    p->train_batches++;
    p->train_on += bx_observer_enabled(input_obs(tr));
    return BX_OK;
}
static bx_status p_val_start(void *self, bx_trainer *tr) {
    ((probe *)self)->mass_before_val = hist_sum(input_obs(tr));
    return BX_OK;
}
static bx_status p_vbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i, int d) {
    (void)b, (void)i, (void)d;
    probe *p = self;
    p->val_batches++;
    p->val_on += bx_observer_enabled(input_obs(tr));
    return BX_OK;
}
static bx_status p_val_end(void *self, bx_trainer *tr) {
    ((probe *)self)->mass_after_val = hist_sum(input_obs(tr));
    return BX_OK;
}
static bx_status p_fit_end(void *self, bx_trainer *tr) {
    probe *p = self;
    bx_module *root = bx_trainer_module(tr);
    bx_module_train(root, false);
    /* the float model's output, observed like torch's eval forward would be;
     * restore the histograms afterwards is not needed: the QAT callback's
     * convert sees the same state in torch too (observers observe in eval) */
    p->float_out = run(root, p->x);
    bx_module *wobs = bx_module_find(root, "fc2.weight_fake_quant");
    bx_observer_observe(wobs, bx_module_param(bx_module_find(root, "fc2"), "weight")); /* what convert does */
    bx_tensor *z = NULL;
    bx_observer_qparams(wobs, false, &p->fc2_scale, &z);
    bx_tensor_free(z);
    return BX_OK;
}
static const bx_callback_ops PROBE_OPS = {.name = "Probe",
                                          .on_fit_end = p_fit_end,
                                          .on_train_batch_start = p_tbs,
                                          .on_validation_start = p_val_start,
                                          .on_validation_batch_start = p_vbs,
                                          .on_validation_end = p_val_end};

static const bx_qat_fuse_group FUSE[1] = {{{"fc1", "relu", NULL}}};

static bx_callback *hist_cb(const char *qconfig, bool convert) {
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    o.qconfig = qconfig;
    o.observer_type = "histogram";
    o.modules_to_fuse = FUSE;
    o.num_modules_to_fuse = 1;
    o.quantize_on_fit_end = convert;
    return bx_qat_callback_new(&o);
}

static void test_fit_convert(void) {
    mlp m;
    mlp_init(&m);
    bx_dataset *ds = make_ds(32, 5);
    probe p;
    memset(&p, 0, sizeof p);
    p.x = bx_dataset_x(ds);
    bx_callback *cbs[2] = {bx_callback_new(&PROBE_OPS, &p), hist_cb("fbgemm", true)};
    CHECK(cbs[1] != NULL);
    bx_trainer_opts to = topts(3, cbs, 2);
    bx_trainer *tr = NULL;
    CHECK_OK(fit(&m, &to, 48, 16, 16, NULL, &tr));
    CHECK(p.types_ok);
    /* observers learn in training only */
    CHECK(p.train_batches == 9 && p.train_on == 9);
    CHECK(p.val_batches == 3 && p.val_on == 0);
    CHECK(p.mass_before_val > 0 && p.mass_after_val == p.mass_before_val);
    CHECK(bx_qat_callback_converted(bx_trainer_callback(tr, 1)));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "fc1")), "QuantizedLinearReLU"));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "fc2")), "QuantizedLinear"));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m.root, "quant")), "Quantize"));
    /* fc2's int8 weight scales: the weight observer's per-channel qparams */
    const bx_tensor *ws = bx_module_buffer(bx_module_child(m.root, "fc2"), "weight_scales");
    CHECK(ws && p.fc2_scale && bx_numel(ws) == 2 && bx_numel(p.fc2_scale) == 2);
    for (int i = 0; ws && p.fc2_scale && i < 2; i++) CHECK_NEAR(bx_get(ws, i), bx_get(p.fc2_scale, i), 0);
    /* int8 inference close to the float model (histogram clipping may cut a
     * few outliers: allow a handful of output steps) */
    bx_tensor *q = run(m.root, p.x);
    CHECK(q != NULL && p.float_out != NULL);
    if (q && p.float_out) {
        double s;
        int64_t z;
        CHECK(bx_quant_module_qparams(bx_module_child(m.root, "fc2"), &s, &z));
        double maxd = 0, maxv = 0, sum = 0;
        for (int64_t i = 0; i < bx_numel(q); i++) {
            double d = fabs(bx_get(q, i) - bx_get(p.float_out, i));
            maxd = fmax(maxd, d);
            sum += d;
            maxv = fmax(maxv, fabs(bx_get(p.float_out, i)));
        }
        CHECK(maxv > 0.05);
        CHECK(sum / (double)bx_numel(q) <= 2.0 * s);
        CHECK(maxd <= 8.0 * s);
        if (maxd > 8.0 * s || sum / (double)bx_numel(q) > 2.0 * s)
            fprintf(stderr, "int8 vs float: max |diff| %g, mean %g, output scale %g\n", maxd,
                    sum / (double)bx_numel(q), s);
    }
    bx_tensor_free(q);
    bx_tensor_free(p.float_out);
    bx_tensor_free(p.fc2_scale);
    bx_trainer_free(tr);
    bx_dataset_free(ds);
    bx_module_free(m.root);
}

/* observers return their input: the weights after a histogram-QAT fit equal
 * a plain float fit's bit for bit (qnnpack: per-tensor weight observer) */
static void test_float_training(void) {
    mlp a, b;
    mlp_init(&a);
    mlp_init(&b);
    bx_callback *cbs[1] = {hist_cb("qnnpack", false)};
    bx_trainer_opts to = topts(2, cbs, 1);
    CHECK_OK(fit(&a, &to, 48, 16, 16, NULL, NULL));
    CHECK(!strcmp(tname(a.root, "fc2.weight_fake_quant"), "MinMaxObserver"));
    bx_trainer_opts to2 = topts(2, NULL, 0);
    CHECK_OK(fit(&b, &to2, 48, 16, 16, NULL, NULL));
    const char *names[4] = {"fc1", "fc1", "fc2", "fc2"}, *ps[4] = {"weight", "bias", "weight", "bias"};
    for (int k = 0; k < 4; k++) {
        const bx_tensor *ta = bx_module_param(bx_module_child(a.root, names[k]), ps[k]);
        const bx_tensor *tb = bx_module_param(bx_module_child(b.root, names[k]), ps[k]);
        CHECK(ta && tb && bx_numel(ta) == bx_numel(tb));
        int diff = 0;
        for (int64_t i = 0; ta && tb && i < bx_numel(ta); i++) diff += bx_get(ta, i) != bx_get(tb, i);
        CHECK_EQ_INT(diff, 0);
    }
    bx_module_free(a.root);
    bx_module_free(b.root);
}

/* ---- resume: histogram buffers and per-channel weight observers restore ---- */
static bx_status s_train_end(void *self, bx_trainer *tr) { return bx_trainer_save_checkpoint(tr, (const char *)self, false); }
static const bx_callback_ops SAVER_OPS = {.name = "Saver", .on_train_end = s_train_end};

static bool same_buffer(bx_module *ra, bx_module *rb, const char *path, const char *buf) {
    const bx_tensor *a = bx_module_buffer(bx_module_find(ra, path), buf), *b = bx_module_buffer(bx_module_find(rb, path), buf);
    if (!a || !b || bx_numel(a) != bx_numel(b)) return false;
    for (int64_t i = 0; i < bx_numel(a); i++)
        if (bx_get(a, i) != bx_get(b, i)) return false;
    return true;
}

static void test_resume(void) {
    char dir[] = "/tmp/bx_qath_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/qat.ckpt", dir);
    mlp m;
    mlp_init(&m);
    bx_callback *cbs[2] = {hist_cb("fbgemm", false), bx_callback_new(&SAVER_OPS, path)};
    bx_trainer_opts to = topts(2, cbs, 2);
    CHECK_OK(fit(&m, &to, 48, 16, 16, NULL, NULL));
    CHECK(hist_sum(bx_module_find(m.root, "fc1.activation_post_process")) > 0);
    /* a fresh model + callback resume (max_epochs reached: nothing trains) */
    mlp m2;
    mlp_init(&m2);
    bx_callback *cbs2[1] = {hist_cb("fbgemm", false)};
    bx_trainer_opts to2 = topts(2, cbs2, 1);
    CHECK_OK(fit(&m2, &to2, 48, 16, 16, path, NULL));
    const char *obs[3] = {"quant.activation_post_process", "fc1.activation_post_process",
                          "fc2.activation_post_process"};
    for (int k = 0; k < 3; k++) {
        CHECK(same_buffer(m.root, m2.root, obs[k], "histogram"));
        CHECK(same_buffer(m.root, m2.root, obs[k], "min_val"));
        CHECK(same_buffer(m.root, m2.root, obs[k], "max_val"));
    }
    CHECK(same_buffer(m.root, m2.root, "fc1.weight_fake_quant", "min_val"));
    CHECK(same_buffer(m.root, m2.root, "fc2.weight_fake_quant", "max_val"));
    CHECK_EQ_INT(bx_numel(bx_module_buffer(bx_module_find(m2.root, "fc1.weight_fake_quant"), "min_val")), 8);
    /* resuming with conversion converts the restored observers */
    mlp m3;
    mlp_init(&m3);
    bx_callback *cbs3[1] = {hist_cb("fbgemm", true)};
    bx_trainer_opts to3 = topts(2, cbs3, 1);
    CHECK_OK(fit(&m3, &to3, 48, 16, 16, path, NULL));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(m3.root, "fc2")), "QuantizedLinear"));
    /* a checkpoint of the other observer type is refused */
    mlp m4;
    mlp_init(&m4);
    bx_qat_opts o4 = BX_QAT_OPTS_INIT;
    o4.modules_to_fuse = FUSE;
    o4.num_modules_to_fuse = 1;
    bx_callback *cbs4[1] = {bx_qat_callback_new(&o4)};
    bx_trainer_opts to4 = topts(3, cbs4, 1);
    CHECK_ERR(fit(&m4, &to4, 48, 16, 16, path, NULL), BX_ERR_INVALID, "observer_type 'histogram'");
    unlink(path);
    rmdir(dir);
    bx_module_free(m.root);
    bx_module_free(m2.root);
    bx_module_free(m3.root);
    bx_module_free(m4.root);
}

int main(void) {
    test_fit_convert();
    test_float_training();
    test_resume();
    return tu_finish("test_qat_histogram");
}
