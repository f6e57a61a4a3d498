/* test_qconv.c - QuantizedConv2d against torch 1.13's quantized conv
 * (tests/quant/qconv_torch.safetensors, written by gen_qat_cases.py: three
 * convs converted by torch on the onednn / qnnpack engines, with their
 * quantized parameters, an input and torch's integer output), then convert
 * + save + load of a QAT Conv2d -> Flatten -> Linear model. */
#include "../test_util.h"

#include <unistd.h>

static void check_case(bx_st_file *f, const char *p) {
    char n[64];
#define GET(what) (snprintf(n, sizeof n, "%s.%s", p, what), bx_st_get(f, n))
    const bx_tensor *x = GET("x"), *w = GET("weight_int8"), *ws = GET("weight_scales"),
                    *wz = GET("weight_zero_points"), *b = GET("bias"), *sc = GET("scale"), *zp = GET("zero_point"),
                    *is = GET("input_scale"), *iz = GET("input_zero_point"), *want = GET("y_quint8");
#undef GET
    CHECK(x && w && ws && wz && b && sc && zp && is && iz && want);
    if (!want) return;
    const char *meta = bx_st_metadata(f, p);
    bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
    int relu = strstr(meta, "\"relu\": true") != NULL;
    CHECK(sscanf(strstr(meta, "\"stride\""), "\"stride\": [%d, %d]", &o.stride[0], &o.stride[1]) == 2);
    CHECK(sscanf(strstr(meta, "\"padding\""), "\"padding\": [%d, %d]", &o.padding[0], &o.padding[1]) == 2);
    CHECK(sscanf(strstr(meta, "\"dilation\""), "\"dilation\": [%d, %d]", &o.dilation[0], &o.dilation[1]) == 2);
    bx_module *qz = bx_quantize_new(bx_get(is, 0), (int64_t)bx_get(iz, 0));
    bx_module *qc = bx_quantized_conv2d_new(w, ws, wz, b, &o, bx_get(is, 0), (int64_t)bx_get(iz, 0), bx_get(sc, 0),
                                            (int64_t)bx_get(zp, 0), relu);
    CHECK(qz && qc);
    bx_step *st = bx_step_new();
    bx_tensor *xc = bx_tensor_clone(x);
    bx_tensor *y = bx_module_forward(qc, st, bx_module_forward(qz, st, xc));
    CHECK(bx_step_status(st) == BX_OK);
    CHECK(bx_same_shape(y, want));
    int bad = 0;
    for (int64_t i = 0; i < bx_numel(want) && bx_same_shape(y, want); i++) bad += bx_get(y, i) != bx_get(want, i);
    if (bad) fprintf(stderr, "qconv case %s (%s): %d of %lld integers differ\n", p, meta, bad, (long long)bx_numel(want));
    CHECK_EQ_INT(bad, 0);
    bx_step_free(st);
    bx_tensor_free(xc);
    bx_module_free(qz);
    bx_module_free(qc);
}

static void test_torch_cases(void) {
    bx_st_file *f = NULL;
    CHECK_OK(bx_st_open("quant/qconv_torch.safetensors", &f));
    if (!f) return;
    check_case(f, "a");
    check_case(f, "b");
    check_case(f, "c");
    bx_st_close(f);
}

/* QuantStub -> Conv2d+ReLU -> Flatten -> Linear -> DeQuantStub: prepare,
 * a few forwards, convert, save, load: same integers. */
static void test_convert_conv(void) {
    bx_rng r;
    bx_rng_init(&r, 4);
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("fbgemm", 1, &qc));
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    co.stride[0] = co.stride[1] = 2;
    co.padding[0] = co.padding[1] = 1;
    bx_module *net = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(net, bx_qat_quant_stub(&qc)));
    CHECK_OK(bx_sequential_append(net, bx_nn_conv2d(2, 4, 3, 3, &co, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(net, bx_nn_flatten(1, -1)));
    CHECK_OK(bx_sequential_append(net, bx_nn_linear(4 * 4 * 4, 3, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_qat_dequant_stub()));
    CHECK_OK(bx_qat_fuse_linear_relu(net, "1", "2", &qc));
    CHECK_OK(bx_qat_prepare_layer(bx_module_find(net, "4"), &qc, false));
    int64_t xs[4] = {3, 2, 8, 8};
    bx_tensor *x = tu_rand_param(&r, 4, xs, -2, 2);
    x->requires_grad = false;
    bx_step *st = bx_step_new();
    for (int i = 0; i < 3; i++) {
        bx_step_reset(st);
        bx_tensor *y = bx_module_forward(net, st, x);
        CHECK_OK(bx_backward(st, bx_sum(st, y, NULL, 0, false)));
    }
    CHECK(bx_module_param(bx_module_find(net, "1"), "weight")->grad != NULL);
    bx_module *q = NULL;
    CHECK_OK(bx_quant_convert(net, &q));
    if (!q) return;
    CHECK_EQ_INT(bx_module_num_children(q), 5);
    CHECK(strcmp(bx_module_type_name(bx_module_child_at(q, 1, NULL)), "QuantizedConv2dReLU") == 0);
    bx_step_reset(st);
    bx_tensor *yq = bx_module_forward(q, st, x);
    bx_tensor *yf = bx_module_forward(net, st, x); /* fake-quant model, for a sanity bound */
    CHECK(bx_step_status(st) == BX_OK);
    double worst = 0;
    for (int64_t i = 0; i < bx_numel(yq); i++) worst = fmax(worst, fabs(bx_get(yq, i) - bx_get(yf, i)));
    CHECK(worst < 0.5);
    char path[256];
    snprintf(path, sizeof path, "%s/blixt_qconv_%ld.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    CHECK_OK(bx_quant_save(q, path));
    bx_module *q2 = NULL;
    CHECK_OK(bx_quant_load(path, &q2));
    remove(path);
    if (q2) {
        bx_tensor *y2 = bx_module_forward(q2, st, x);
        CHECK(bx_step_status(st) == BX_OK);
        for (int64_t i = 0; i < bx_numel(yq); i++) CHECK(bx_get(yq, i) == bx_get(y2, i));
    }
    /* groups are not supported by the int8 conv */
    int64_t ws[4] = {4, 1, 3, 3}, four = 4;
    bx_tensor *w = bx_tensor_zeros(BX_I8, 4, ws), *s4 = bx_tensor_new(BX_F64, 1, &four),
              *z4 = bx_tensor_zeros(BX_I64, 1, &four);
    bx_fill(s4, 0.1);
    bx_conv2d_opts g = BX_CONV2D_OPTS_INIT;
    g.groups = 2;
    CHECK(bx_quantized_conv2d_new(w, s4, z4, NULL, &g, 0.1, 0, 0.1, 0, false) == NULL);
    CHECK(strstr(bx_errmsg(), "groups 2") != NULL);
    bx_module *qc1 = bx_quantized_conv2d_new(w, s4, z4, NULL, NULL, 0.1, 0, 0.1, 0, false);
    int64_t bs[4] = {1, 2, 5, 5};
    bx_tensor *xb = bx_tensor_zeros(BX_U8, 4, bs);
    bx_step_reset(st);
    bx_tensor *yb = bx_module_forward(qc1, st, xb);
    CHECK(bx_is_poison(yb) && strstr(bx_step_errmsg(st), "QuantizedConv2d") && strstr(bx_step_errmsg(st), "(1,2,5,5)"));
    bx_tensor_free(xb);
    bx_module_free(qc1);
    bx_tensor_free(w);
    bx_tensor_free(s4);
    bx_tensor_free(z4);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_module_free(q2);
    bx_module_free(q);
    bx_module_free(net);
}

int main(void) {
    bx_set_num_threads(1);
    test_torch_cases();
    test_convert_conv();
    return tu_finish("quant/qconv");
}
