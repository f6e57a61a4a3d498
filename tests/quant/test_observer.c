/* test_observer.c - observers (F1) and qparams (F2 Python, F3 fused) against
 * values printed by torch 1.13 (hex floats), quantization ranges with
 * reduce_range floor division, the fused per-channel symmetric branch for
 * channels that do not cross zero, and errors. */
#include "../test_util.h"

static bx_tensor *vec2(float a, float b) {
    int64_t n = 2;
    bx_tensor *t = bx_tensor_new(BX_F32, 1, &n);
    ((float *)t->data)[0] = a;
    ((float *)t->data)[1] = b;
    return t;
}

static bx_observer_opts opts(bx_observer_kind k, bx_qdtype dt, bx_qscheme qs, int qmin, int qmax, bool reduce) {
    bx_observer_opts o = BX_OBSERVER_OPTS_INIT;
    o.kind = k;
    o.dtype = dt;
    o.qscheme = qs;
    o.custom_range = true;
    o.quant_min = qmin;
    o.quant_max = qmax;
    o.reduce_range = reduce;
    return o;
}

static void observe2(bx_module *o, float a, float b) {
    bx_tensor *x = vec2(a, b);
    CHECK_OK(bx_observer_observe(o, x));
    bx_tensor_free(x);
}

static void qparams(bx_module *o, bool fused, float *s, int32_t *z) {
    bx_tensor *st = NULL, *zt = NULL;
    CHECK_OK(bx_observer_qparams(o, fused, &st, &zt));
    *s = ((float *)st->data)[0];
    *z = ((int32_t *)zt->data)[0];
    bx_tensor_free(st);
    bx_tensor_free(zt);
}

static void test_moving_average(void) {
    bx_observer_opts oo = opts(BX_OBS_MOVING_AVERAGE, BX_QUINT8, BX_PER_TENSOR_AFFINE, 0, 255, false);
    bx_module *o = bx_observer_new(&oo);
    CHECK(o && strcmp(bx_module_type_name(o), "MovingAverageMinMaxObserver") == 0);
    float s;
    int32_t z;
    qparams(o, false, &s, &z); /* unobserved: torch returns 1, 0 */
    CHECK(s == 1.0f && z == 0);
    observe2(o, -0.3f, 0.7f);
    qparams(o, false, &s, &z);
    CHECK(s == 0x1.010102p-8f); /* torch: one batch */
    CHECK_EQ_INT(z, 76);
    observe2(o, -1.0f, 0.2f);
    observe2(o, 0.5f, 3.0f);
    CHECK(bx_get(bx_module_buffer(o, "min_val"), 0) == (double)-0x1.321ab6p-2f);
    CHECK(bx_get(bx_module_buffer(o, "max_val"), 0) == (double)0x1.6fa44p-1f);
    qparams(o, false, &s, &z);
    CHECK(s == 0x1.055e2cp-8f);
    CHECK_EQ_INT(z, 75);
    bx_module_free(o);

    oo = opts(BX_OBS_MINMAX, BX_QUINT8, BX_PER_TENSOR_AFFINE, 0, 255, false);
    o = bx_observer_new(&oo);
    observe2(o, -0.3f, 0.7f);
    observe2(o, -0.1f, 1.7f);
    CHECK(bx_get(bx_module_buffer(o, "min_val"), 0) == (double)-0.3f);
    CHECK(bx_get(bx_module_buffer(o, "max_val"), 0) == (double)1.7f);
    bx_module_free(o);

    /* quint8 symmetric with a custom range: zp = floor midpoint */
    oo = opts(BX_OBS_MOVING_AVERAGE, BX_QUINT8, BX_PER_TENSOR_SYMMETRIC, 0, 200, false);
    o = bx_observer_new(&oo);
    observe2(o, -0.3f, 0.7f);
    qparams(o, false, &s, &z);
    CHECK(s == 0x1.cac082p-8f);
    CHECK_EQ_INT(z, 100);
    bx_module_free(o);
}

static void test_ranges(void) {
    int lo, hi;
    bx_observer_opts o = opts(BX_OBS_MOVING_AVERAGE, BX_QINT8, BX_PER_TENSOR_AFFINE, -128, 127, true);
    CHECK_OK(bx_quant_range(&o, &lo, &hi));
    CHECK(lo == -64 && hi == 63);
    o = opts(BX_OBS_MOVING_AVERAGE, BX_QUINT8, BX_PER_TENSOR_AFFINE, 0, 253, true);
    CHECK_OK(bx_quant_range(&o, &lo, &hi));
    CHECK(lo == 0 && hi == 126);
    o = opts(BX_OBS_MOVING_AVERAGE, BX_QINT8, BX_PER_TENSOR_AFFINE, -127, 127, true);
    CHECK_OK(bx_quant_range(&o, &lo, &hi));
    CHECK(lo == -64 && hi == 63); /* floor division: -127 // 2 = -64 */
    o.custom_range = false;
    o.dtype = BX_QUINT8;
    CHECK_OK(bx_quant_range(&o, &lo, &hi));
    CHECK(lo == 0 && hi == 127);
    o = opts(BX_OBS_MOVING_AVERAGE, BX_QUINT8, BX_PER_TENSOR_AFFINE, 1, 254, false);
    CHECK_ERR(bx_quant_range(&o, &lo, &hi), BX_ERR_INVALID, "include 0");
    o = opts(BX_OBS_MOVING_AVERAGE, BX_QINT8, BX_PER_TENSOR_AFFINE, -200, 127, false);
    CHECK_ERR(bx_quant_range(&o, &lo, &hi), BX_ERR_INVALID, "[-200,127]");
    CHECK(bx_observer_new(&o) == NULL);
}

static void test_per_channel(void) {
    /* torch: MovingAveragePerChannelMinMaxObserver(ch_axis=1, qint8, per_channel_symmetric) on
     * x = arange(24).reshape(2,3,4) - 10, then 2*x */
    bx_observer_opts oo = opts(BX_OBS_MOVING_AVERAGE, BX_QINT8, BX_PER_CHANNEL_SYMMETRIC, -128, 127, false);
    oo.custom_range = false;
    oo.ch_axis = 1;
    bx_module *o = bx_observer_new(&oo);
    int64_t shape[3] = {2, 3, 4};
    bx_tensor *x = bx_tensor_new(BX_F32, 3, shape);
    for (int i = 0; i < 24; i++) ((float *)x->data)[i] = (float)i - 10.0f;
    CHECK_EQ_INT(bx_numel(bx_module_buffer(o, "min_val")), 0);
    CHECK_OK(bx_observer_observe(o, x));
    const float mn1[3] = {-10, -6, -2}, mx1[3] = {5, 9, 13};
    for (int c = 0; c < 3; c++) {
        CHECK(bx_get(bx_module_buffer(o, "min_val"), c) == mn1[c]);
        CHECK(bx_get(bx_module_buffer(o, "max_val"), c) == mx1[c]);
    }
    for (int i = 0; i < 24; i++) ((float *)x->data)[i] *= 2.0f;
    CHECK_OK(bx_observer_observe(o, x));
    const float mn2[3] = {-0x1.433334p+3f, -0x1.83d70ap+2f, -0x1.028f5cp+1f};
    const float mx2[3] = {0x1.433334p+2f, 0x1.22e148p+3f, 0x1.a428f6p+3f};
    const float sc[3] = {0x1.4477acp-4f, 0x1.24054ep-4f, 0x1.a5cec4p-4f};
    bx_tensor *s = NULL, *z = NULL;
    CHECK_OK(bx_observer_qparams(o, false, &s, &z));
    for (int c = 0; c < 3; c++) {
        CHECK(bx_get(bx_module_buffer(o, "min_val"), c) == mn2[c]);
        CHECK(bx_get(bx_module_buffer(o, "max_val"), c) == mx2[c]);
        CHECK(bx_get(s, c) == sc[c]);
        CHECK_EQ_INT(bx_get(z, c), 0);
    }
    bx_tensor_free(s);
    bx_tensor_free(z);
    /* a different channel count is an error naming the shapes */
    int64_t sh2[2] = {4, 5};
    bx_tensor *x2 = bx_tensor_zeros(BX_F32, 2, sh2);
    CHECK_ERR(bx_observer_observe(o, x2), BX_ERR_SHAPE, "(4,5)");
    bx_tensor_free(x2);
    bx_tensor_free(x);
    bx_module_free(o);
}

static void test_fused_formula(void) {
    float s;
    int32_t z;
    /* per-channel symmetric qint8: crossing zero -> max(|min|/128, max/127), zp 0 */
    bx_qparams_fused(-1.28f, 0.5f, -128, 127, true, &s, &z);
    CHECK_NEAR(s, 0.01, 1e-7);
    CHECK_EQ_INT(z, 0);
    bx_qparams_fused(-0.5f, 1.27f, -128, 127, true, &s, &z);
    CHECK_NEAR(s, 0.01, 1e-7);
    CHECK_EQ_INT(z, 0);
    /* all positive: asymmetric, max/255, zp -128; all negative: -min/255, zp 127 */
    bx_qparams_fused(1.0f, 2.0f, -128, 127, true, &s, &z);
    CHECK(s == (float)(2.0 / 255.0));
    CHECK_EQ_INT(z, -128);
    bx_qparams_fused(-3.0f, -1.0f, -128, 127, true, &s, &z);
    CHECK(s == (float)(3.0 / 255.0));
    CHECK_EQ_INT(z, 127);
    /* values printed by torch.fused_moving_avg_obs_fake_quant */
    bx_qparams_fused(-2e-6f, 1e-6f, 0, 127, false, &s, &z); /* small-scale cut-off */
    CHECK(s == 6.1e-5f);
    CHECK_EQ_INT(z, 85);
    bx_qparams_fused(0.0f, 0.0f, 0, 127, false, &s, &z);
    CHECK(s == 0.1f);
    CHECK_EQ_INT(z, 0);
    bx_qparams_fused(0.0f, 0.0f, -128, 127, true, &s, &z);
    CHECK(s == 0.1f);
    CHECK_EQ_INT(z, 127);
    bx_qparams_fused(-0.3f, 0.7f, 0, 255, false, &s, &z);
    CHECK_NEAR(s, 1.0 / 255.0, 1e-7);
    CHECK_EQ_INT(z, 77);
    bx_qparams_fused(-0.3f, 0.7f, 0, 255, true, &s, &z);
    CHECK_NEAR(s, 0.7 / 127.0, 1e-7);
    CHECK_EQ_INT(z, 128);
    /* Python formula on the same channels: absmax/127.5, zp 0 */
    bx_qparams_python(1.0f, 2.0f, -128, 127, true, BX_QINT8, true, 0x1p-23f, &s, &z);
    CHECK(s == 2.0f / 127.5f);
    CHECK_EQ_INT(z, 0);
}

int main(void) {
    test_moving_average();
    test_ranges();
    test_per_channel();
    test_fused_formula();
    return tu_finish("quant/observer");
}
