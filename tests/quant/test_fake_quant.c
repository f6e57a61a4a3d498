/* test_fake_quant.c - the fake-quantize op (F4): exact .5 ties (half to
 * even), float32 reciprocal multiply (not division), the STE clamp mask,
 * per-channel along an inner axis, errors; the fake-quant modules' flags
 * and state dict names. */
#include "../test_util.h"

static bx_tensor *vec(int64_t n, const float *v) {
    bx_tensor *t = bx_tensor_new(BX_F32, 1, &n);
    memcpy(t->data, v, sizeof(float) * (size_t)n);
    bx_param_mark(t);
    return t;
}

static void test_ties_and_mask(void) {
    /* scale 0.25, zp 10, [0,255]: x*4 = 0.5 -> 0, 1.5 -> 2, 2.5 -> 2, -0.5 -> -0, -1.5 -> -2 */
    const float xs[] = {0.125f, 0.375f, 0.625f, -0.125f, -0.375f,
                        /* q = 255 exactly (in range), q = 256 and below 0 (masked) */
                        61.25f, 61.5f, -2.5f, -2.75f, -100.0f, 1e30f};
    const float want[] = {0.0f, 0.5f, 0.5f, 0.0f, -0.5f, 61.25f, 61.25f, -2.5f, -2.5f, -2.5f, 61.25f};
    const float wantg[] = {1, 1, 1, 1, 1, 1, 0, 1, 0, 0, 0};
    int64_t n = (int64_t)(sizeof xs / sizeof xs[0]);
    bx_tensor *x = vec(n, xs);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_fake_quantize(st, x, 0.25f, 10, 0, 255);
    CHECK(bx_step_status(st) == BX_OK);
    for (int64_t i = 0; i < n; i++) CHECK_NEAR(bx_get(y, i), want[i], 0);
    bx_tensor *g = bx_step_tensor(st, BX_F32, 1, &n);
    bx_fill(g, 3.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    for (int64_t i = 0; i < n; i++) CHECK_NEAR(bx_get(x->grad, i), 3.0 * wantg[i], 0);
    bx_step_free(st);
    bx_tensor_free(x);
}

/* Cases where x*(1/scale) and x/scale round differently (found with numpy;
 * torch gives the reciprocal result). */
static void test_reciprocal(void) {
    struct { float s, x, q; } cs[] = {
        {0x1.d37602p-6f, -0x1.0e403ap-1f, -19.0f},
        {0x1.de34fcp-4f, 0x1.5d50b4p+3f, 93.0f},
        {0x1.0b18f2p-2f, -0x1.06ec8ep+3f, -31.0f},
    };
    bx_step *st = bx_step_new();
    for (int i = 0; i < 3; i++) {
        bx_tensor *x = vec(1, &cs[i].x);
        bx_step_reset(st);
        bx_tensor *y = bx_fake_quantize(st, x, cs[i].s, 0, -128, 127);
        CHECK(bx_get(y, 0) == (double)(cs[i].q * cs[i].s));
        bx_tensor_free(x);
    }
    bx_step_free(st);
}

static void test_per_channel(void) {
    /* x (2,3,2), axis 1: channel c has scale 0.5*(c+1), zp c */
    int64_t shape[3] = {2, 3, 2};
    bx_tensor *x = bx_tensor_new(BX_F32, 3, shape);
    for (int i = 0; i < 12; i++) ((float *)x->data)[i] = (float)i * 0.37f - 2.0f;
    bx_param_mark(x);
    int64_t three = 3;
    bx_tensor *s = bx_tensor_new(BX_F32, 1, &three), *z = bx_tensor_new(BX_I32, 1, &three);
    for (int c = 0; c < 3; c++) {
        ((float *)s->data)[c] = 0.5f * (float)(c + 1);
        ((int32_t *)z->data)[c] = c;
    }
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_fake_quantize_per_channel(st, x, s, z, 1, -2, 3);
    CHECK(bx_step_status(st) == BX_OK);
    for (int i = 0; i < 12; i++) {
        int c = (i / 2) % 3;
        float sc = 0.5f * (float)(c + 1), inv = 1.0f / sc, xv = ((float *)x->data)[i];
        long q = (long)(c + nearbyintf(xv * inv));
        long cl = q < -2 ? -2 : (q > 3 ? 3 : q);
        CHECK(bx_get(y, i) == (double)((float)(cl - c) * sc));
    }
    /* errors: wrong scale length, axis out of range, non-f32 x */
    int64_t two = 2;
    bx_tensor *s2 = bx_tensor_new(BX_F32, 1, &two), *z2 = bx_tensor_zeros(BX_I32, 1, &two);
    bx_step_reset(st);
    y = bx_fake_quantize_per_channel(st, x, s2, z2, 1, 0, 255);
    CHECK(bx_is_poison(y));
    CHECK(strstr(bx_step_errmsg(st), "fake_quantize_per_channel") && strstr(bx_step_errmsg(st), "(2,3,2)") &&
          strstr(bx_step_errmsg(st), "(2)"));
    bx_step_reset(st);
    y = bx_fake_quantize_per_channel(st, x, s, z, 3, 0, 255);
    CHECK(bx_is_poison(y) && strstr(bx_step_errmsg(st), "axis 3"));
    bx_step_reset(st);
    bx_tensor *xi = bx_tensor_zeros(BX_I64, 1, &two);
    y = bx_fake_quantize(st, xi, 0.1f, 0, 0, 255);
    CHECK(bx_is_poison(y) && strstr(bx_step_errmsg(st), "fake_quantize") && strstr(bx_step_errmsg(st), "f32"));
    bx_step_reset(st);
    y = bx_fake_quantize(st, x, 0.0f, 0, 0, 255);
    CHECK(bx_is_poison(y) && strstr(bx_step_errmsg(st), "scale"));
    bx_step_free(st);
    bx_tensor_free(xi);
    bx_tensor_free(s2);
    bx_tensor_free(z2);
    bx_tensor_free(s);
    bx_tensor_free(z);
    bx_tensor_free(x);
}

static void test_module_flags_and_names(void) {
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("fbgemm", 1, &qc));
    bx_module *fq = bx_fake_quant_new(&qc.activation);
    CHECK(fq && strcmp(bx_module_type_name(fq), "FusedMovingAvgObsFakeQuantize") == 0);
    bx_named_tensors *sd = bx_module_state_dict(fq);
    const char *names[] = {"fake_quant_enabled", "observer_enabled", "scale", "zero_point",
                           "activation_post_process.eps", "activation_post_process.min_val",
                           "activation_post_process.max_val"};
    CHECK_EQ_INT(sd->n, 7);
    for (int i = 0; i < 7 && i < sd->n; i++) CHECK(strcmp(sd->names[i], names[i]) == 0);
    bx_named_tensors_free(sd);
    const float xs[] = {-1.0f, 0.3f, 2.0f, 0.77f};
    bx_tensor *x = vec(4, xs);
    bx_step *st = bx_step_new();
    /* fake-quant off: identity, observer still updates */
    CHECK_OK(bx_fake_quant_enable(fq, false, true));
    bx_tensor *y = bx_module_forward(fq, st, x);
    CHECK(y == x);
    bx_module *obs = bx_fake_quant_observer(fq);
    CHECK_NEAR(bx_get(bx_module_buffer(obs, "min_val"), 0), -1.0, 0);
    /* observer off: min/max frozen, output quantised with [0,127] */
    CHECK_OK(bx_fake_quant_enable(fq, true, false));
    const float xs2[] = {-5.0f, 0.3f, 9.0f, 0.77f};
    bx_tensor *x2 = vec(4, xs2);
    bx_step_reset(st);
    y = bx_module_forward(fq, st, x2);
    CHECK_NEAR(bx_get(bx_module_buffer(obs, "min_val"), 0), -1.0, 0);
    CHECK_NEAR(bx_get(bx_module_buffer(obs, "max_val"), 0), 2.0, 0);
    float s = (float)bx_get(bx_module_buffer(fq, "scale"), 0);
    CHECK_NEAR(s, 3.0 / 127.0, 1e-6);
    CHECK(bx_get(y, 2) <= 2.0 + s); /* clamped at the top of [0,127] */
    CHECK_ERR(bx_fake_quant_enable(obs, true, true), BX_ERR_INVALID, "not a fake-quant");
    CHECK_ERR(bx_qconfig_default_qat("fbgemm2", 1, &qc), BX_ERR_INVALID, "unknown backend 'fbgemm2'");
    CHECK_ERR(bx_qconfig_default_qat("qnnpack", 2, &qc), BX_ERR_INVALID, "version 2");
    bx_step_free(st);
    bx_tensor_free(x);
    bx_tensor_free(x2);
    bx_module_free(fq);
}

int main(void) {
    bx_set_num_threads(1);
    test_ties_and_mask();
    test_reciprocal();
    test_per_channel();
    test_module_flags_and_names();
    return tu_finish("quant/fake_quant");
}
