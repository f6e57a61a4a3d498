/* test_qlinear.c - int8 inference and QAT plumbing:
 *  - QuantizedLinear (oneDNN u8s8->s32 + F5 requantisation) against a
 *    straightforward integer reference written here, for per-channel and
 *    per-tensor weights, non-zero weight zero points, fused ReLU, several
 *    shapes; the library's own reference kernel agrees;
 *  - a prepared QAT Linear computes fq_act(linear(x, fq_w(w), b)) and its
 *    gradient reaches the weight; state dict names are torch's;
 *  - convert + save + load round trip gives the same integers;
 *  - Conv+BatchNorm folding; errors. */
#include "../test_util.h"

#include <unistd.h>

static bx_tensor *rand_tensor(bx_rng *r, bx_dtype dt, int ndim, const int64_t *shape, int lo, int hi) {
    bx_tensor *t = bx_tensor_new(dt, ndim, shape);
    for (int64_t i = 0; i < bx_numel(t); i++) bx_set(t, i, lo + (int)bx_rng_below(r, (uint64_t)(hi - lo + 1)));
    return t;
}

/* The integer reference: F5 written out. */
static uint8_t ref_out(const uint8_t *x, const int8_t *w, int64_t K, double sx, int64_t zx, double sw, int64_t zw,
                       float b, double so, int64_t zo, bool relu) {
    int64_t acc = 0;
    for (int64_t k = 0; k < K; k++) acc += ((int64_t)x[k] - zx) * ((int64_t)w[k] - zw);
    double y = (double)acc * sx * sw + (double)b;
    long long q = (long long)nearbyint(y / so) + zo;
    if (q < 0) q = 0;
    if (q > 255) q = 255;
    if (relu && q < zo) q = zo;
    return (uint8_t)q;
}

static void check_qlinear(bx_rng *r, int64_t M, int64_t K, int64_t O, bool per_channel, bool wzp, bool relu) {
    int64_t ws[2] = {O, K}, xs[2] = {M, K}, nsc = per_channel ? O : 1;
    bx_tensor *w = rand_tensor(r, BX_I8, 2, ws, -128, 127);
    bx_tensor *x = rand_tensor(r, BX_U8, 2, xs, 0, 255);
    bx_tensor *sc = bx_tensor_new(BX_F64, 1, &nsc), *zp = bx_tensor_new(BX_I64, 1, &nsc);
    bx_tensor *bias = bx_tensor_new(BX_F32, 1, &O);
    for (int64_t c = 0; c < nsc; c++) {
        bx_set(sc, c, (double)(float)(0.001 + 0.01 * bx_rng_uniform(r)));
        bx_set(zp, c, wzp ? (double)((int)bx_rng_below(r, 21) - 10) : 0.0);
    }
    for (int64_t o = 0; o < O; o++) bx_set(bias, o, bx_rng_uniform(r) - 0.5);
    double sx = 0.02, so = 0.05 * sqrt((double)K) / 10.0;
    int64_t zx = 37, zo = 120;
    bx_module *q = bx_quantized_linear_new(w, sc, zp, bias, sx, zx, so, zo, relu);
    CHECK(q != NULL);
    if (!q) return;
    bx_step *st = bx_step_new();
    bx_step_set_training(st, false);
    bx_tensor *y = bx_module_forward(q, st, x);
    CHECK(bx_step_status(st) == BX_OK);
    int64_t ys[2] = {M, O};
    bx_tensor *yr = bx_tensor_new(BX_U8, 2, ys);
    CHECK_OK(bx_quantized_linear_reference(q, x, yr));
    int bad = 0, bad_ref = 0;
    long sum = 0;
    for (int64_t i = 0; i < M; i++)
        for (int64_t o = 0; o < O; o++) {
            int64_t c = per_channel ? o : 0;
            uint8_t want = ref_out((uint8_t *)x->data + i * K, (int8_t *)w->data + o * K, K, sx, zx, bx_get(sc, c),
                                   (int64_t)bx_get(zp, c), ((float *)bias->data)[o], so, zo, relu);
            uint8_t got = ((uint8_t *)y->data)[i * O + o];
            bad += got != want;
            bad_ref += ((uint8_t *)yr->data)[i * O + o] != want;
            sum += want;
        }
    if (bad || bad_ref)
        fprintf(stderr, "qlinear M=%lld K=%lld O=%lld pc=%d wzp=%d relu=%d: %d onednn / %d reference mismatches\n",
                (long long)M, (long long)K, (long long)O, per_channel, wzp, relu, bad, bad_ref);
    CHECK_EQ_INT(bad, 0);
    CHECK_EQ_INT(bad_ref, 0);
    CHECK(sum > 0); /* the outputs are not all clamped to 0 */
    /* the C fallback kernel gives the same integers as oneDNN */
    bx_quantized_linear_use_onednn(q, false);
    bx_step_reset(st);
    bx_tensor *y2 = bx_module_forward(q, st, x);
    CHECK(memcmp(y2->data, yr->data, (size_t)(M * O)) == 0);
    bx_step_free(st);
    bx_module_free(q);
    bx_tensor_free(w);
    bx_tensor_free(x);
    bx_tensor_free(sc);
    bx_tensor_free(zp);
    bx_tensor_free(bias);
    bx_tensor_free(yr);
}

static void test_qlinear(void) {
    bx_rng r;
    bx_rng_init(&r, 7);
    check_qlinear(&r, 1, 1, 1, true, false, false);
    check_qlinear(&r, 7, 33, 5, true, false, true);
    check_qlinear(&r, 16, 64, 16, false, false, false);
    check_qlinear(&r, 5, 19, 12, true, true, true);
    check_qlinear(&r, 64, 784, 32, true, false, false);
    check_qlinear(&r, 3, 40, 9, false, true, false);
    /* errors */
    int64_t ws[2] = {4, 3}, two = 2, four = 4;
    bx_tensor *w = bx_tensor_zeros(BX_I8, 2, ws), *s2 = bx_tensor_zeros(BX_F64, 1, &two),
              *z2 = bx_tensor_zeros(BX_I64, 1, &two);
    CHECK(bx_quantized_linear_new(w, s2, z2, NULL, 0.1, 0, 0.1, 0, false) == NULL);
    CHECK(strstr(bx_errmsg(), "QuantizedLinear") && strstr(bx_errmsg(), "(4,3)"));
    bx_tensor *s4 = bx_tensor_new(BX_F64, 1, &four), *z4 = bx_tensor_zeros(BX_I64, 1, &four);
    bx_fill(s4, 0.1);
    bx_module *q = bx_quantized_linear_new(w, s4, z4, NULL, 0.1, 0, 0.1, 0, false);
    CHECK(q != NULL);
    bx_step *st = bx_step_new();
    int64_t xs[2] = {2, 5};
    bx_tensor *x = bx_tensor_zeros(BX_U8, 2, xs);
    bx_tensor *y = bx_module_forward(q, st, x);
    CHECK(bx_is_poison(y) && strstr(bx_step_errmsg(st), "QuantizedLinear") && strstr(bx_step_errmsg(st), "(2,5)") &&
          strstr(bx_step_errmsg(st), "(4,3)"));
    bx_step_free(st);
    bx_module_free(q);
    bx_tensor_free(x);
    bx_tensor_free(w);
    bx_tensor_free(s2);
    bx_tensor_free(z2);
    bx_tensor_free(s4);
    bx_tensor_free(z4);
}

/* A prepared Linear: forward equals the composition, gradients flow (STE). */
static void test_prepare(void) {
    bx_rng r;
    bx_rng_init(&r, 3);
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("fbgemm", 1, &qc));
    bx_module *l = bx_nn_linear(6, 4, true, &r);
    bx_module *ref_w = bx_fake_quant_new(&qc.weight), *ref_a = bx_fake_quant_new(&qc.activation);
    CHECK_OK(bx_qat_prepare_layer(l, &qc, true));
    CHECK_ERR(bx_qat_prepare_layer(l, &qc, true), BX_ERR_INVALID, "already prepared");
    bx_module *relu = bx_nn_relu();
    CHECK_ERR(bx_qat_prepare_layer(relu, &qc, false), BX_ERR_INVALID, "ReLU is not a Linear or Conv2d");
    bx_module_free(relu);
    bool fused = false;
    CHECK(bx_qat_is_prepared(l, &fused) && fused);
    bx_named_tensors *sd = bx_module_state_dict(l);
    CHECK(bx_named_tensors_get(sd, "weight_fake_quant.activation_post_process.min_val") != NULL);
    CHECK(bx_named_tensors_get(sd, "activation_post_process.scale") != NULL);
    bx_named_tensors_free(sd);
    int64_t xs[2] = {5, 6};
    bx_tensor *x = tu_rand_param(&r, 2, xs, -2, 2);
    x->requires_grad = false;
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_module_forward(l, st, x);
    bx_tensor *wq = bx_module_forward(ref_w, st, bx_module_param(l, "weight"));
    bx_tensor *want = bx_module_forward(ref_a, st, bx_relu(st, bx_linear(st, x, wq, bx_module_param(l, "bias"))));
    CHECK(bx_step_status(st) == BX_OK);
    for (int64_t i = 0; i < bx_numel(y); i++) CHECK(bx_get(y, i) == bx_get(want, i));
    CHECK_OK(bx_backward(st, bx_sum(st, y, NULL, 0, false)));
    bx_tensor *g = bx_module_param(l, "weight")->grad;
    double gs = 0;
    for (int64_t i = 0; g && i < bx_numel(g); i++) gs += fabs(bx_get(g, i));
    CHECK(g != NULL && gs > 0);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_module_free(ref_w);
    bx_module_free(ref_a);
    bx_module_free(l);
}

/* QuantStub -> fc1+relu -> fc2 -> DeQuantStub, a few forwards, convert,
 * save, load, same integers. */
static void test_convert_save_load(void) {
    bx_rng r;
    bx_rng_init(&r, 11);
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("qnnpack", 1, &qc));
    bx_module *net = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(net, bx_qat_quant_stub(&qc)));
    CHECK_OK(bx_sequential_append(net, bx_nn_linear(10, 8, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(net, bx_nn_linear(8, 3, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_qat_dequant_stub()));
    CHECK_OK(bx_qat_fuse_linear_relu(net, "1", "2", &qc));
    CHECK_OK(bx_qat_prepare_layer(bx_module_find(net, "3"), &qc, false));
    CHECK_ERR(bx_qat_fuse_linear_relu(net, "1", "9", &qc), BX_ERR_NOT_FOUND, "'9'");
    int64_t xs[2] = {9, 10};
    bx_tensor *x = tu_rand_param(&r, 2, xs, -3, 3);
    x->requires_grad = false;
    bx_step *st = bx_step_new();
    for (int i = 0; i < 3; i++) {
        bx_step_reset(st);
        bx_module_forward(net, st, x);
    }
    CHECK(bx_step_status(st) == BX_OK);
    bx_module *q = NULL;
    CHECK_OK(bx_quant_convert(net, &q));
    if (!q) return;
    CHECK_EQ_INT(bx_module_num_children(q), 4); /* Quantize, QuantizedLinearReLU, QuantizedLinear, DeQuantize */
    CHECK(strcmp(bx_module_type_name(bx_module_child_at(q, 1, NULL)), "QuantizedLinearReLU") == 0);
    bx_step_reset(st);
    bx_tensor *y1 = bx_module_forward(q, st, x);
    CHECK(bx_step_status(st) == BX_OK && y1->dtype == BX_F32);
    char path[256];
    snprintf(path, sizeof path, "%s/blixt_qlinear_%ld.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    CHECK_OK(bx_quant_save(q, path));
    bx_module *q2 = NULL;
    CHECK_OK(bx_quant_load(path, &q2));
    if (q2) {
        bx_tensor *y2 = bx_module_forward(q2, st, x);
        CHECK(bx_step_status(st) == BX_OK);
        for (int64_t i = 0; i < bx_numel(y1); i++) CHECK(bx_get(y1, i) == bx_get(y2, i));
        bx_named_tensors *a = bx_module_state_dict(q), *b = bx_module_state_dict(q2);
        CHECK_EQ_INT(a->n, b->n);
        for (int i = 0; i < a->n && i < b->n; i++) {
            CHECK(strcmp(a->names[i], b->names[i]) == 0 && a->tensors[i]->dtype == b->tensors[i]->dtype);
            for (int64_t j = 0; j < bx_numel(a->tensors[i]); j++)
                CHECK(bx_get(a->tensors[i], j) == bx_get(b->tensors[i], j));
        }
        bx_named_tensors_free(a);
        bx_named_tensors_free(b);
        /* the quantized weights are int8 in the file */
        bx_st_file *f = NULL;
        CHECK_OK(bx_st_open(path, &f));
        CHECK(f && bx_st_get(f, "1.weight_int8") && bx_st_get(f, "1.weight_int8")->dtype == BX_I8);
        bx_st_close(f);
    }
    remove(path);
    bx_module *q3 = NULL;
    CHECK_ERR(bx_quant_load("no_such_file.safetensors", &q3), BX_ERR_IO, "no_such_file");
    /* a plain safetensors file without the layer list */
    bx_st_writer *w = bx_st_writer_new();
    CHECK_OK(bx_st_writer_add(w, "x", x));
    CHECK_OK(bx_st_writer_write(w, path));
    bx_st_writer_free(w);
    CHECK_ERR(bx_quant_load(path, &q3), BX_ERR_FORMAT, "blixt.quant.layers");
    remove(path);
    /* a model with an unconvertible child */
    bx_module *bad = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(bad, bx_nn_sigmoid()));
    CHECK_ERR(bx_quant_convert(bad, &q3), BX_ERR_UNSUPPORTED, "Sigmoid");
    bx_module_free(bad);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_module_free(q2);
    bx_module_free(q);
    bx_module_free(net);
}

/* Observer / fake-quant state saved and loaded into a fresh QAT model (the
 * per-channel buffers are still [0] there): same state, same outputs. */
static void test_state_roundtrip(void) {
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("fbgemm", 1, &qc));
    bx_module *a = bx_nn_linear(5, 3, true, NULL), *b = bx_nn_linear(5, 3, true, NULL);
    bx_rng r;
    bx_rng_init(&r, 9);
    int64_t ws[2] = {3, 5}, xs[2] = {4, 5};
    bx_tensor *w = tu_rand_param(&r, 2, ws, -1, 1);
    bx_copy(bx_module_param(a, "weight"), w);
    CHECK_OK(bx_qat_prepare_layer(a, &qc, false));
    CHECK_OK(bx_qat_prepare_layer(b, &qc, false));
    bx_tensor *x = tu_rand_param(&r, 2, xs, -2, 2);
    x->requires_grad = false;
    bx_step *st = bx_step_new();
    for (int i = 0; i < 2; i++) {
        bx_step_reset(st);
        bx_module_forward(a, st, x);
    }
    bx_named_tensors *sd = bx_module_state_dict(a);
    CHECK_ERR(bx_module_load_state_dict(b, sd, true), BX_ERR_SHAPE, "size mismatch");
    CHECK_OK(bx_quant_load_state_dict(b, sd, true));
    bx_named_tensors *sb = bx_module_state_dict(b);
    CHECK_EQ_INT(sd->n, sb->n);
    for (int i = 0; i < sd->n && i < sb->n; i++) {
        CHECK(strcmp(sd->names[i], sb->names[i]) == 0);
        CHECK_EQ_INT(bx_numel(sd->tensors[i]), bx_numel(sb->tensors[i]));
        for (int64_t j = 0; j < bx_numel(sd->tensors[i]) && j < bx_numel(sb->tensors[i]); j++)
            CHECK(bx_get(sd->tensors[i], j) == bx_get(sb->tensors[i], j));
    }
    bx_named_tensors_free(sb);
    bx_named_tensors_free(sd);
    bx_step_reset(st);
    bx_tensor *ya = bx_module_forward(a, st, x), *yb = bx_module_forward(b, st, x);
    CHECK(bx_step_status(st) == BX_OK);
    for (int64_t i = 0; i < bx_numel(ya); i++) CHECK(bx_get(ya, i) == bx_get(yb, i));
    bx_step_free(st);
    bx_tensor_free(x);
    bx_tensor_free(w);
    bx_module_free(a);
    bx_module_free(b);
}

/* A QAT training step (fused fake-quants, per-channel weights) allocates
 * nothing once warm; neither does int8 inference. */
static void test_steady_state(void) {
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("fbgemm", 1, &qc));
    bx_rng r;
    bx_rng_init(&r, 2);
    bx_module *net = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(net, bx_qat_quant_stub(&qc)));
    CHECK_OK(bx_sequential_append(net, bx_nn_linear(12, 8, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(net, bx_nn_linear(8, 4, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_qat_dequant_stub()));
    CHECK_OK(bx_qat_fuse_linear_relu(net, "1", "2", &qc));
    CHECK_OK(bx_qat_prepare_layer(bx_module_find(net, "3"), &qc, false));
    int64_t xs[2] = {6, 12};
    bx_tensor *x = tu_rand_param(&r, 2, xs, -1, 1);
    x->requires_grad = false;
    bx_step *st = bx_step_new();
    uint64_t before = 0;
    for (int i = 0; i < 6; i++) {
        if (i == 3) before = bx_alloc_count();
        bx_step_reset(st);
        bx_module_zero_grad(net);
        CHECK_OK(bx_backward(st, bx_sum(st, bx_module_forward(net, st, x), NULL, 0, false)));
    }
    CHECK_EQ_INT(bx_alloc_count() - before, 0);
    bx_module *q = NULL;
    CHECK_OK(bx_quant_convert(net, &q));
    for (int i = 0; q && i < 6; i++) {
        if (i == 3) before = bx_alloc_count();
        bx_step_reset(st);
        bx_module_forward(q, st, x);
    }
    CHECK(bx_step_status(st) == BX_OK);
    CHECK_EQ_INT(bx_alloc_count() - before, 0);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_module_free(q);
    bx_module_free(net);
}

static void test_conv_bn_fold(void) {
    bx_rng r;
    bx_rng_init(&r, 5);
    bx_module *net = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(net, bx_nn_conv2d(3, 4, 3, 3, NULL, false, &r)));
    CHECK_OK(bx_sequential_append(net, bx_nn_batchnorm2d(4, NULL)));
    bx_module *bn = bx_module_find(net, "1");
    for (int c = 0; c < 4; c++) {
        bx_set(bx_module_buffer(bn, "running_mean"), c, 0.1 * c - 0.2);
        bx_set(bx_module_buffer(bn, "running_var"), c, 0.5 + 0.3 * c);
        bx_set(bx_module_param(bn, "weight"), c, 1.0 + 0.1 * c);
        bx_set(bx_module_param(bn, "bias"), c, -0.05 * c);
    }
    bx_module_train(net, false);
    int64_t xs[4] = {2, 3, 6, 6};
    bx_tensor *x = tu_rand_param(&r, 4, xs, -1, 1);
    x->requires_grad = false;
    bx_step *st = bx_step_new();
    bx_step_set_training(st, false);
    bx_tensor *y0 = bx_module_forward(net, st, x);
    CHECK_OK(bx_fuse_conv_bn(net, "0", "1"));
    CHECK(strcmp(bx_module_type_name(bx_module_find(net, "1")), "Identity") == 0);
    CHECK(bx_module_param(bx_module_find(net, "0"), "bias") != NULL);
    bx_tensor *y1 = bx_module_forward(net, st, x);
    CHECK(bx_step_status(st) == BX_OK);
    double worst = 0;
    for (int64_t i = 0; i < bx_numel(y0); i++) worst = fmax(worst, fabs(bx_get(y0, i) - bx_get(y1, i)));
    CHECK(worst < 1e-5);
    CHECK_ERR(bx_fuse_conv_bn(net, "0", "1"), BX_ERR_INVALID, "Identity");
    bx_step_free(st);
    bx_tensor_free(x);
    bx_module_free(net);
}

int main(void) {
    bx_set_num_threads(1);
    test_qlinear();
    test_prepare();
    test_convert_save_load();
    test_conv_bn_fold();
    test_state_roundtrip();
    test_steady_state();
    return tu_finish("quant/qlinear");
}
