/* test_histogram.c - HistogramObserver on hand-checked cases: the first
 * batch's histc (bins over [int(min), int(max)], last bin closed, elements
 * outside dropped, constant tensors), the combine path (upsample,
 * double cumsum, downsample), buffers / state dict / clone / load, the
 * enable flag of bare observers, errors. torch 1.13 agreement on varied
 * data is the golden cases tests/quant/cases/qhist_*. */
#include "../test_util.h"

static bx_tensor *vec(int n, const float *v) {
    int64_t s = n;
    bx_tensor *t = bx_tensor_new(BX_F32, 1, &s);
    memcpy(t->data, v, sizeof(float) * (size_t)n);
    return t;
}

static bx_module *hist_obs(int bins, int up) {
    bx_observer_opts o = BX_OBSERVER_OPTS_INIT;
    o.kind = BX_OBS_HISTOGRAM;
    o.bins = bins;
    o.upsample_rate = up;
    return bx_observer_new(&o);
}

static void observe(bx_module *o, int n, const float *v) {
    bx_tensor *x = vec(n, v);
    CHECK_OK(bx_observer_observe(o, x));
    bx_tensor_free(x);
}

static bool hist_is(bx_module *o, int n, const float *want) {
    const bx_tensor *h = bx_module_buffer(o, "histogram");
    if (!h || bx_numel(h) != n) return false;
    for (int i = 0; i < n; i++)
        if (bx_get(h, i) != want[i]) {
            fprintf(stderr, "histogram[%d] = %g, want %g\n", i, bx_get(h, i), want[i]);
            return false;
        }
    return true;
}

static double buf(bx_module *o, const char *name) { return bx_get(bx_module_buffer(o, name), 0); }

static void test_first_batch(void) {
    bx_module *o = hist_obs(4, 2);
    CHECK(o && !strcmp(bx_module_type_name(o), "HistogramObserver"));
    CHECK(bx_module_is_observer(o));
    /* unobserved: +inf/-inf, qparams 1/0 */
    CHECK(buf(o, "min_val") == INFINITY && buf(o, "max_val") == -INFINITY);
    bx_tensor *s = NULL, *z = NULL;
    CHECK_OK(bx_observer_qparams(o, false, &s, &z));
    CHECK(bx_get(s, 0) == 1.0 && bx_get(z, 0) == 0);
    bx_tensor_free(s);
    bx_tensor_free(z);
    /* edges 0,1,2,3,4: the last bin holds 3 and 4 */
    observe(o, 5, (const float[]){0, 1, 2, 3, 4});
    CHECK(hist_is(o, 4, (const float[]){1, 1, 1, 2}));
    bx_module_free(o);
    /* int() truncation: range [int(-0.5), int(1.75)] = [0, 1], -0.5 and 1.75 dropped */
    o = hist_obs(4, 2);
    observe(o, 3, (const float[]){-0.5f, 0.25f, 1.75f});
    CHECK(hist_is(o, 4, (const float[]){0, 1, 0, 0}));
    CHECK(buf(o, "min_val") == -0.5 && buf(o, "max_val") == 1.75);
    /* a constant batch: the data's range, then +-1 -> edges 1, 1.5, 2, 2.5, 3 */
    bx_module_free(o);
    o = hist_obs(4, 2);
    observe(o, 3, (const float[]){2, 2, 2});
    CHECK(hist_is(o, 4, (const float[]){0, 0, 3, 0}));
    /* min == max: the next batch starts over (torch's same_values) */
    observe(o, 2, (const float[]){0.25f, 0.75f}); /* int range [0,0] -> data range [0.25, 0.75] */
    CHECK(hist_is(o, 4, (const float[]){1, 0, 0, 1}));
    CHECK(buf(o, "min_val") == 0.25 && buf(o, "max_val") == 0.75);
    bx_module_free(o);
}

static void test_combine(void) {
    bx_module *o = hist_obs(4, 2);
    observe(o, 5, (const float[]){0, 1, 2, 3, 4});
    /* [0,8]: bin width 0.5 on the upsampled grid, downsample 4, start 0;
     * upsampled old {1,1,1,1,1,1,2,2}, cumsum at 3,7,11,15 = 4,10,10,10;
     * interpolated (4-0)/2, (10-4)/2, 0, 0; new histc of {8} over [0,8] */
    observe(o, 1, (const float[]){8});
    CHECK(hist_is(o, 4, (const float[]){2, 3, 0, 1}));
    CHECK(buf(o, "min_val") == 0 && buf(o, "max_val") == 8);
    /* inside the range: plain addition */
    observe(o, 2, (const float[]){1, 7});
    CHECK(hist_is(o, 4, (const float[]){3, 3, 0, 2}));
    CHECK(buf(o, "max_val") == 8);
    /* the search over 4 bins clips the last bin: torch 1.13
     * gives [0, 6] -> scale 6/255, zero point 0 */
    float lo, hi;
    CHECK_OK(bx_histogram_observer_search(o, &lo, &hi));
    CHECK(lo == 0.0f && hi == 6.0f);
    bx_tensor *s = NULL, *z = NULL;
    CHECK_OK(bx_observer_qparams(o, false, &s, &z));
    CHECK(bx_get(s, 0) == (double)(6.0f / 255.0f) && bx_get(z, 0) == 0);
    bx_tensor_free(s);
    bx_tensor_free(z);
    bx_module_free(o);
}

static void test_module(void) {
    bx_module *o = hist_obs(0, 0); /* defaults 2048 / 128 */
    CHECK_EQ_INT(bx_numel(bx_module_buffer(o, "histogram")), 2048);
    bx_observer_opts got;
    CHECK_OK(bx_observer_get_opts(o, &got));
    CHECK(got.kind == BX_OBS_HISTOGRAM && got.bins == 2048 && got.upsample_rate == 128);
    bx_named_tensors *sd = bx_module_state_dict(o);
    CHECK(sd && sd->n == 4 && !strcmp(sd->names[0], "eps") && !strcmp(sd->names[1], "histogram") &&
          !strcmp(sd->names[2], "min_val") && !strcmp(sd->names[3], "max_val"));
    bx_named_tensors_free(sd);
    /* forward returns x and observes; disabled: returns x, no change */
    bx_step *st = bx_step_new();
    bx_tensor *x = vec(3, (const float[]){-1, 0.5f, 3});
    CHECK(bx_module_forward(o, st, x) == x);
    CHECK(buf(o, "min_val") == -1 && buf(o, "max_val") == 3);
    CHECK(bx_observer_enabled(o));
    CHECK_OK(bx_observer_set_enabled(o, false));
    bx_tensor *x2 = vec(2, (const float[]){-5, 9});
    CHECK(bx_module_forward(o, st, x2) == x2);
    CHECK(buf(o, "min_val") == -1 && buf(o, "max_val") == 3);
    CHECK_OK(bx_observer_set_enabled(o, true));
    /* clone keeps the state; load_state_dict restores it into a fresh observer */
    bx_module *c = bx_module_clone(o);
    CHECK(c && buf(c, "max_val") == 3);
    bx_module *f = hist_obs(0, 0);
    sd = bx_module_state_dict(o);
    CHECK_OK(bx_quant_load_state_dict(f, sd, true));
    bx_named_tensors_free(sd);
    CHECK(buf(f, "min_val") == -1 && buf(f, "max_val") == 3);
    bx_tensor *s1 = NULL, *z1 = NULL, *s2 = NULL, *z2 = NULL;
    CHECK_OK(bx_observer_qparams(o, false, &s1, &z1));
    CHECK_OK(bx_observer_qparams(f, false, &s2, &z2));
    CHECK(bx_get(s1, 0) == bx_get(s2, 0) && bx_get(z1, 0) == bx_get(z2, 0));
    bx_tensor_free(s1);
    bx_tensor_free(z1);
    bx_tensor_free(s2);
    bx_tensor_free(z2);
    /* empty input: no-op */
    int64_t zero = 0;
    bx_tensor *e = bx_tensor_new(BX_F32, 1, &zero);
    CHECK_OK(bx_observer_observe(o, e));
    bx_tensor_free(e);
    bx_tensor_free(x);
    bx_tensor_free(x2);
    bx_step_free(st);
    bx_module_free(c);
    bx_module_free(f);
    bx_module_free(o);
}

static void test_qconfig(void) {
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default("fbgemm", &qc));
    CHECK(qc.activation.observer_only && qc.weight.observer_only);
    CHECK(qc.activation.observer.kind == BX_OBS_HISTOGRAM && qc.activation.observer.reduce_range);
    CHECK(qc.weight.observer.kind == BX_OBS_MINMAX && qc.weight.observer.qscheme == BX_PER_CHANNEL_SYMMETRIC);
    CHECK_OK(bx_qconfig_default("qnnpack", &qc));
    CHECK(!qc.activation.observer.reduce_range && qc.weight.observer.qscheme == BX_PER_TENSOR_SYMMETRIC);
    CHECK_ERR(bx_qconfig_default("tpu", &qc), BX_ERR_INVALID, "unknown backend 'tpu'");
    /* a prepared Linear holds bare observers and computes in float */
    CHECK_OK(bx_qconfig_default("fbgemm", &qc));
    bx_rng r;
    bx_rng_init(&r, 3);
    bx_module *l = bx_nn_linear(3, 2, true, &r), *ref = bx_module_clone(l);
    CHECK_OK(bx_qat_prepare_layer(l, &qc, false));
    CHECK(bx_qat_is_prepared(l, NULL));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(l, "weight_fake_quant")), "PerChannelMinMaxObserver"));
    CHECK(!strcmp(bx_module_type_name(bx_module_child(l, "activation_post_process")), "HistogramObserver"));
    CHECK(bx_fake_quant_observer(bx_module_child(l, "weight_fake_quant")) == bx_module_child(l, "weight_fake_quant"));
    bx_step *st = bx_step_new();
    bx_tensor *x = vec(3, (const float[]){0.3f, -1.2f, 2.0f});
    int64_t sh[2] = {1, 3};
    bx_tensor *x2 = bx_reshape(st, x, 2, sh);
    bx_tensor *y = bx_module_forward(l, st, x2), *yr = bx_module_forward(ref, st, x2);
    CHECK(bx_step_status(st) == BX_OK);
    CHECK(bx_get(y, 0) == bx_get(yr, 0) && bx_get(y, 1) == bx_get(yr, 1));
    CHECK_EQ_INT(bx_numel(bx_module_buffer(bx_module_child(l, "weight_fake_quant"), "min_val")), 2);
    bx_tensor_free(x);
    bx_step_free(st);
    bx_module_free(l);
    bx_module_free(ref);
}

static void test_errors(void) {
    bx_observer_opts o = BX_OBSERVER_OPTS_INIT;
    o.kind = BX_OBS_HISTOGRAM;
    o.qscheme = BX_PER_CHANNEL_AFFINE;
    CHECK(bx_observer_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "per-tensor") != NULL);
    o.qscheme = BX_PER_TENSOR_AFFINE;
    o.bins = -3;
    CHECK(bx_observer_new(&o) == NULL);
    bx_module *h = hist_obs(16, 4);
    bx_tensor *x = vec(2, (const float[]){1, NAN});
    CHECK_ERR(bx_observer_observe(h, x), BX_ERR_INVALID, "NaN");
    bx_tensor_free(x);
    bx_observer_opts mo = BX_OBSERVER_OPTS_INIT;
    bx_module *m = bx_observer_new(&mo);
    float lo, hi;
    CHECK_ERR(bx_histogram_observer_search(m, &lo, &hi), BX_ERR_INVALID, "HistogramObserver");
    bx_module_free(m);
    bx_module_free(h);
}

int main(void) {
    test_first_batch();
    test_combine();
    test_module();
    test_qconfig();
    test_errors();
    return tu_finish("test_histogram");
}
