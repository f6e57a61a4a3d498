/* test_qconv.c - QuantizedConv2d against torch 1.13's quantized conv
 * (tests/quant/qconv_torch.safetensors, written by gen_qat_cases.py: three
 * convs converted by torch on the onednn / qnnpack engines, with their
 * quantized parameters, an input and torch's integer output), then convert
 * + save + load of a QAT Conv2d -> Flatten -> Linear model. */
#include "../test_util.h"
#include "quant/quant_int.h"

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
    for (int kernel = 0; kernel < 2; kernel++) { /* oneDNN, then the plain C loop */
        bx_quantized_linear_use_onednn(qc, kernel == 0);
        bx_tensor *y = bx_module_forward(qc, st, bx_module_forward(qz, st, xc));
        CHECK(bx_step_status(st) == BX_OK);
        CHECK(bx_same_shape(y, want));
        int bad = 0;
        for (int64_t i = 0; i < bx_numel(want) && bx_same_shape(y, want); i++) bad += bx_get(y, i) != bx_get(want, i);
        if (bad)
            fprintf(stderr, "qconv case %s (%s) kernel %d: %d of %lld integers differ\n", p, meta, kernel, bad,
                    (long long)bx_numel(want));
        CHECK_EQ_INT(bad, 0);
    }
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
    /* groups must divide the output channels; 'same' needs stride 1 */
    int64_t ws[4] = {4, 1, 3, 3}, four = 4;
    bx_tensor *w = bx_tensor_zeros(BX_I8, 4, ws), *s4 = bx_tensor_new(BX_F64, 1, &four),
              *z4 = bx_tensor_zeros(BX_I64, 1, &four);
    bx_fill(s4, 0.1);
    bx_conv2d_opts g = BX_CONV2D_OPTS_INIT;
    g.groups = 3;
    CHECK(bx_quantized_conv2d_new(w, s4, z4, NULL, &g, 0.1, 0, 0.1, 0, false) == NULL);
    CHECK(strstr(bx_errmsg(), "groups 3") != NULL && strstr(bx_errmsg(), "(4,1,3,3)") != NULL);
    g.groups = 1;
    g.padding_same = true;
    g.stride[0] = 2;
    CHECK(bx_quantized_conv2d_new(w, s4, z4, NULL, &g, 0.1, 0, 0.1, 0, false) == NULL);
    CHECK(strstr(bx_errmsg(), "same") != NULL);
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


/* ---- groups, padding='same', channels-last, max pool ------------------------------ */

/* Random int8 conv: weights in [-127,127], per-channel scales, weight zero
 * points 0 (zw = false) or in [-3,3], biases in [-0.5,0.5]. */
static bx_module *rand_qconv(bx_rng *r, int64_t O, int64_t Cg, int k0, int k1, const bx_conv2d_opts *co, bool zw,
                             bool relu, int64_t in_zp, int64_t out_zp, int64_t first, bx_tensor *w_full,
                             bx_tensor *s_full, bx_tensor *z_full, bx_tensor *b_full) {
    /* with w_full given: the slice [first, first+O) of those tensors */
    int64_t ws[4] = {O, Cg, k0, k1};
    bx_tensor *w = bx_tensor_new(BX_I8, 4, ws), *sc = bx_tensor_new(BX_F64, 1, &O), *zp = bx_tensor_new(BX_I64, 1, &O),
              *b = bx_tensor_new(BX_F32, 1, &O);
    int64_t per = Cg * k0 * k1;
    for (int64_t o = 0; o < O; o++) {
        for (int64_t k = 0; k < per; k++)
            ((int8_t *)w->data)[o * per + k] = w_full ? ((int8_t *)w_full->data)[(first + o) * per + k]
                                                      : (int8_t)((int)bx_rng_below(r, 255) - 127);
        ((double *)sc->data)[o] = w_full ? ((double *)s_full->data)[first + o] : 0.002 + 0.001 * (double)(o % 7);
        ((int64_t *)zp->data)[o] = w_full ? ((int64_t *)z_full->data)[first + o] : zw ? (int64_t)bx_rng_below(r, 7) - 3 : 0;
        ((float *)b->data)[o] = w_full ? ((float *)b_full->data)[first + o] : (float)bx_rng_uniform(r) - 0.5f;
    }
    bx_module *m = bx_quantized_conv2d_new(w, sc, zp, b, co, 0.03, in_zp, 0.05, out_zp, relu);
    CHECK(m != NULL);
    bx_tensor_free(w);
    bx_tensor_free(sc);
    bx_tensor_free(zp);
    bx_tensor_free(b);
    return m;
}

static int count_diff(const bx_tensor *a, const bx_tensor *b) {
    if (!bx_same_shape(a, b)) return -1;
    int bad = 0;
    for (int64_t i = 0; i < bx_numel(a); i++) bad += bx_get(a, i) != bx_get(b, i);
    return bad;
}

/* u8 x (N,C,H,W), random, as a new NCHW tensor; *cl receives a channels-last
 * copy (a permuted view of a step tensor). */
static bx_tensor *rand_u8(bx_rng *r, bx_step *st, int64_t N, int64_t C, int64_t H, int64_t W, bx_tensor **cl) {
    int64_t xs[4] = {N, C, H, W}, ls[4] = {N, H, W, C};
    bx_tensor *x = bx_tensor_new(BX_U8, 4, xs);
    for (int64_t i = 0; i < bx_numel(x); i++) ((uint8_t *)x->data)[i] = (uint8_t)bx_rng_below(r, 256);
    bx_tensor *l = bx_step_tensor(st, BX_U8, 4, ls);
    static const int perm[4] = {0, 3, 1, 2};
    *cl = bx_permute(st, l, perm);
    CHECK_OK(bx_copy(*cl, x));
    return x;
}

/* groups 2 and depthwise, padding='same' with odd and even kernels, dilation,
 * weight zero points: oneDNN = plain C kernel = per-group convs on explicitly
 * padded inputs; NCHW and channels-last inputs alike. */
static void test_groups_same(void) {
    bx_rng r;
    bx_rng_init(&r, 11);
    bx_step *st = bx_step_new();
    struct {
        int64_t C, O;
        int groups, k0, k1, dil, stride;
        bool same, zw;
        int pad;
    } cs[] = {
        {4, 6, 2, 3, 3, 1, 1, true, false, 0}, /* grouped, same (odd kernel) */
        {4, 4, 4, 3, 3, 1, 2, false, false, 1}, /* depthwise, stride 2, padding 1 */
        {3, 4, 1, 2, 4, 1, 1, true, false, 0}, /* same with even kernels: extra padding at the end */
        {4, 8, 2, 3, 2, 2, 1, true, false, 0}, /* same + dilation */
        {4, 6, 2, 3, 3, 1, 1, true, true, 0},  /* weight zero points: the plain C kernel */
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
        o.groups = cs[ci].groups;
        o.padding_same = cs[ci].same;
        o.padding[0] = o.padding[1] = cs[ci].pad;
        o.dilation[0] = o.dilation[1] = cs[ci].dil;
        o.stride[0] = o.stride[1] = cs[ci].stride;
        int64_t C = cs[ci].C, O = cs[ci].O, G = cs[ci].groups, Cg = C / G, Og = O / G, zx = 7, zo = 3;
        bx_module *m = rand_qconv(&r, O, Cg, cs[ci].k0, cs[ci].k1, &o, cs[ci].zw, ci % 2 == 0, zx, zo, 0, NULL, NULL,
                                  NULL, NULL);
        if (!m) continue;
        bx_step_reset(st);
        bx_tensor *xcl, *x = rand_u8(&r, st, 2, C, 7, 6, &xcl);
        bx_tensor *y1 = bx_module_forward(m, st, x), *y2 = bx_module_forward(m, st, xcl);
        bx_quantized_linear_use_onednn(m, false);
        bx_tensor *y3 = bx_module_forward(m, st, x);
        CHECK(bx_step_status(st) == BX_OK);
        if (bx_step_status(st) != BX_OK) fprintf(stderr, "%s\n", bx_step_errmsg(st));
        CHECK_EQ_INT(count_diff(y1, y3), 0);
        CHECK_EQ_INT(count_diff(y2, y3), 0);
        /* independent: per group, a groups-1 conv with explicit padding on a padded input */
        int64_t pads[2][2];
        int ks[2] = {cs[ci].k0, cs[ci].k1};
        for (int d = 0; d < 2; d++) {
            int64_t tot = cs[ci].same ? (int64_t)cs[ci].dil * (ks[d] - 1) : 2 * cs[ci].pad;
            pads[d][0] = tot / 2;
            pads[d][1] = tot - tot / 2;
        }
        int64_t H = 7, W = 6, Hp = H + pads[0][0] + pads[0][1], Wp = W + pads[1][0] + pads[1][1];
        bx_conv2d_opts o1 = BX_CONV2D_OPTS_INIT;
        o1.dilation[0] = o1.dilation[1] = cs[ci].dil;
        o1.stride[0] = o1.stride[1] = cs[ci].stride;
        for (int64_t gi = 0; gi < G; gi++) {
            int64_t ps[4] = {2, Cg, Hp, Wp};
            bx_tensor *xp = bx_tensor_new(BX_U8, 4, ps);
            for (int64_t n = 0; n < 2; n++)
                for (int64_t c = 0; c < Cg; c++)
                    for (int64_t h = 0; h < Hp; h++)
                        for (int64_t w = 0; w < Wp; w++) {
                            int64_t ih = h - pads[0][0], iw = w - pads[1][0];
                            bool in = ih >= 0 && ih < H && iw >= 0 && iw < W;
                            ((uint8_t *)xp->data)[((n * Cg + c) * Hp + h) * Wp + w] =
                                in ? ((uint8_t *)x->data)[((n * C + gi * Cg + c) * H + ih) * W + iw] : (uint8_t)zx;
                        }
            bx_module *mg = rand_qconv(&r, Og, Cg, cs[ci].k0, cs[ci].k1, &o1, false, ci % 2 == 0, zx, zo, gi * Og,
                                       bx_module_buffer(m, "weight_int8"), bx_module_buffer(m, "weight_scales"),
                                       bx_module_buffer(m, "weight_zero_points"), bx_module_buffer(m, "bias"));
            if (mg) {
                bx_quantized_linear_use_onednn(mg, false);
                bx_tensor *yg = bx_module_forward(mg, st, xp);
                CHECK(bx_step_status(st) == BX_OK && yg->shape[1] == Og && bx_same_shape(y3, y1));
                int bad = 0;
                for (int64_t n = 0; bx_step_status(st) == BX_OK && n < 2; n++)
                    for (int64_t c = 0; c < Og; c++)
                        for (int64_t i = 0; i < yg->shape[2] * yg->shape[3]; i++)
                            bad += bx_get(yg, (n * Og + c) * yg->shape[2] * yg->shape[3] + i) !=
                                   bx_get(y3, (n * O + gi * Og + c) * y3->shape[2] * y3->shape[3] + i);
                if (bad) fprintf(stderr, "groups/same case %zu group %lld: %d differ\n", ci, (long long)gi, bad);
                CHECK_EQ_INT(bad, 0);
                bx_module_free(mg);
            }
            bx_tensor_free(xp);
        }
        if (cs[ci].same) CHECK(y1->shape[2] == H && y1->shape[3] == W);
        bx_tensor_free(x);
        bx_module_free(m);
    }
    bx_step_free(st);
}

/* QuantizedMaxPool2d = float max_pool2d of the integers, NCHW and
 * channels-last inputs, several options. */
static void test_qpool(void) {
    bx_rng r;
    bx_rng_init(&r, 12);
    bx_step *st = bx_step_new();
    bx_pool2d_opts os[4] = {BX_POOL2D_OPTS_INIT, BX_POOL2D_OPTS_INIT, BX_POOL2D_OPTS_INIT, BX_POOL2D_OPTS_INIT};
    os[1].kernel[0] = os[1].kernel[1] = 3;
    os[1].stride[0] = os[1].stride[1] = 2;
    os[1].padding[0] = os[1].padding[1] = 1;
    os[1].ceil_mode = true;
    os[2].dilation[0] = 2;
    os[2].stride[1] = 1;
    os[3].kernel[1] = 3;
    os[3].padding[1] = 1;
    static const int64_t Cs[4] = {5, 16, 32, 64}; /* the kernels' constant widths and another */
    for (int i = 0; i < 16; i++) {
        bx_module *p = bx_quantized_max_pool2d_new(&os[i % 4]);
        CHECK(p != NULL);
        if (!p) continue;
        bx_step_reset(st);
        bx_tensor *xcl, *x = rand_u8(&r, st, 2, Cs[i / 4], 9, 8, &xcl);
        bx_tensor *xf = bx_tensor_new(BX_F32, 4, x->shape);
        CHECK_OK(bx_copy(xf, x));
        bx_tensor *want = bx_max_pool2d(st, xf, &os[i % 4]);
        bx_tensor *y1 = bx_module_forward(p, st, x), *y2 = bx_module_forward(p, st, xcl);
        CHECK(bx_step_status(st) == BX_OK);
        CHECK_EQ_INT(count_diff(y1, want), 0);
        CHECK_EQ_INT(count_diff(y2, want), 0);
        CHECK(y1->dtype == BX_U8);
        /* the int8 Flatten of the channels-last result = flatten of the NCHW one */
        bx_module *fl = bx__quant_flatten_new(1, -1);
        bx_tensor *f2 = bx_module_forward(fl, st, y2), *f1 = bx_flatten(st, bx_contiguous(st, y1), 1, -1);
        CHECK(bx_step_status(st) == BX_OK && bx__is_channels_last(y2));
        CHECK_EQ_INT(count_diff(f2, f1), 0);
        bx_module_free(fl);
        bx_tensor_free(xf);
        bx_tensor_free(x);
        bx_module_free(p);
    }
    bx_pool2d_opts bad = BX_POOL2D_OPTS_INIT;
    bad.padding[0] = 2;
    CHECK(bx_quantized_max_pool2d_new(&bad) == NULL && strstr(bx_errmsg(), "QuantizedMaxPool2d"));
    bx_module *p = bx_quantized_max_pool2d_new(NULL);
    int64_t fs[4] = {1, 2, 4, 4};
    bx_tensor *xf = bx_tensor_zeros(BX_F32, 4, fs);
    bx_tensor *y = bx_module_forward(p, st, xf);
    CHECK(bx_is_poison(y) && strstr(bx_step_errmsg(st), "QuantizedMaxPool2d") && strstr(bx_step_errmsg(st), "(1,2,4,4)"));
    bx_tensor_free(xf);
    bx_module_free(p);
    bx_step_free(st);
}

/* A QAT CNN with pooling, a grouped 'same' conv and Flatten: convert, run,
 * save, load: the same integers, close to the fake-quantised model. */
static void test_convert_cnn(void) {
    bx_rng r;
    bx_rng_init(&r, 13);
    bx_qconfig qc;
    CHECK_OK(bx_qconfig_default_qat("x86", 1, &qc));
    bx_conv2d_opts c1 = BX_CONV2D_OPTS_INIT, c2 = BX_CONV2D_OPTS_INIT;
    c1.padding[0] = c1.padding[1] = 1;
    c2.padding_same = true;
    c2.groups = 2;
    bx_pool2d_opts po = BX_POOL2D_OPTS_INIT;
    bx_module *net = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(net, bx_qat_quant_stub(&qc)));
    CHECK_OK(bx_sequential_append(net, bx_nn_conv2d(1, 4, 3, 3, &c1, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(net, bx_nn_max_pool2d(&po)));
    CHECK_OK(bx_sequential_append(net, bx_nn_conv2d(4, 6, 3, 3, &c2, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(net, bx_nn_max_pool2d(&po)));
    CHECK_OK(bx_sequential_append(net, bx_nn_flatten(1, -1)));
    CHECK_OK(bx_sequential_append(net, bx_nn_linear(6 * 2 * 2, 3, true, &r)));
    CHECK_OK(bx_sequential_append(net, bx_qat_dequant_stub()));
    CHECK_OK(bx_qat_fuse_linear_relu(net, "1", "2", &qc));
    CHECK_OK(bx_qat_fuse_linear_relu(net, "4", "5", &qc));
    CHECK_OK(bx_qat_prepare_layer(bx_module_find(net, "8"), &qc, false));
    int64_t xs[4] = {5, 1, 8, 8};
    bx_tensor *x = tu_rand_param(&r, 4, xs, 0, 1);
    x->requires_grad = false;
    bx_step *st = bx_step_new();
    for (int i = 0; i < 3; i++) {
        bx_step_reset(st);
        CHECK_OK(bx_backward(st, bx_sum(st, bx_module_forward(net, st, x), NULL, 0, false)));
    }
    bx_module *q = NULL, *q2 = NULL;
    CHECK_OK(bx_quant_convert(net, &q));
    if (!q) return;
    CHECK(strcmp(bx_module_type_name(bx_module_child_at(q, 2, NULL)), "QuantizedMaxPool2d") == 0);
    CHECK_EQ_INT(bx_module_num_children(q), 8); /* the fused ReLUs' Identities are dropped */
    bx_step_reset(st);
    bx_no_grad_push(st);
    bx_tensor *yq = bx_module_forward(q, st, x), *yf = bx_module_forward(net, st, x);
    CHECK(bx_step_status(st) == BX_OK);
    double so = 1;
    int64_t zo;
    bx_quant_module_qparams(bx_module_child_at(q, 7, NULL), &so, &zo);
    double worst = 0;
    for (int64_t i = 0; i < bx_numel(yq); i++) worst = fmax(worst, fabs(bx_get(yq, i) - bx_get(yf, i)));
    CHECK(worst <= 4 * so);
    char path[256];
    snprintf(path, sizeof path, "%s/blixt_qcnn_%ld.safetensors", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (long)getpid());
    CHECK_OK(bx_quant_save(q, path));
    CHECK_OK(bx_quant_load(path, &q2));
    remove(path);
    if (q2) {
        bx_tensor *y2 = bx_module_forward(q2, st, x);
        CHECK(bx_step_status(st) == BX_OK);
        CHECK_EQ_INT(count_diff(yq, y2), 0);
        char rep[256];
        bx_module_repr(bx_module_child_at(q2, 3, NULL), rep, sizeof rep);
        CHECK(strstr(rep, "padding=same") && strstr(rep, "groups=2"));
    }
    bx_step_free(st);
    bx_tensor_free(x);
    bx_module_free(q2);
    bx_module_free(q);
    bx_module_free(net);
}

/* A batch split into cache-sized chunks (2 + 2 + 1 images: two cached
 * primitives) gives the plain kernel's integers, also on a second run. */
static void test_chunks(void) {
    bx_rng r;
    bx_rng_init(&r, 14);
    bx_step *st = bx_step_new();
    bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
    o.padding[0] = o.padding[1] = 1;
    bx_module *m = rand_qconv(&r, 64, 2, 3, 3, &o, false, true, 5, 2, 0, NULL, NULL, NULL, NULL);
    bx_tensor *xcl, *x = rand_u8(&r, st, 5, 2, 32, 32, &xcl);
    bx_tensor *y1 = bx_module_forward(m, st, x), *y2 = bx_module_forward(m, st, xcl);
    bx_quantized_linear_use_onednn(m, false);
    bx_tensor *y3 = bx_module_forward(m, st, x);
    bx_quantized_linear_use_onednn(m, true);
    bx_tensor *y4 = bx_module_forward(m, st, x);
    CHECK(bx_step_status(st) == BX_OK);
    CHECK_EQ_INT(count_diff(y1, y3), 0);
    CHECK_EQ_INT(count_diff(y2, y3), 0);
    CHECK_EQ_INT(count_diff(y4, y3), 0);
    bx_tensor_free(x);
    bx_module_free(m);
    bx_step_free(st);
}

/* One input channel, 16..64 outputs (the direct VNNI kernel where the CPU
 * has one): the plain C kernel's integers for kernel sizes 1..5 x 1..4,
 * strides, paddings, 'same', dilation (in h: direct; in w: oneDNN), ReLU or
 * not, NCHW and channels-last inputs (unpadded channels-last: read in
 * place), and a scale set with exact .5 ties (lanes flagged: the exact fallback runs). */
static void test_one_channel(void) {
    bx_rng r;
    bx_rng_init(&r, 15);
    bx_step *st = bx_step_new();
    struct {
        int64_t O;
        int k0, k1, sh, sw, ph, pw, dh, dw;
        bool same, relu;
    } cs[] = {
        {32, 3, 3, 1, 1, 1, 1, 1, 1, false, true},  {16, 3, 3, 1, 1, 0, 0, 1, 1, false, false},
        {48, 5, 4, 2, 1, 2, 1, 1, 1, false, true},  {64, 1, 1, 1, 2, 0, 0, 1, 1, false, false},
        {16, 2, 4, 1, 1, 0, 0, 2, 1, true, true},   {32, 3, 2, 2, 2, 1, 1, 1, 1, false, false},
        {32, 4, 3, 1, 3, 0, 1, 2, 1, false, true},  {16, 3, 3, 1, 1, 1, 1, 1, 2, false, true},
        {24, 3, 3, 1, 1, 1, 1, 1, 1, false, true}, /* not whole 16-lane blocks: oneDNN */
    };
    for (size_t ci = 0; ci < sizeof cs / sizeof cs[0]; ci++) {
        bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
        o.padding_same = cs[ci].same;
        o.padding[0] = cs[ci].ph;
        o.padding[1] = cs[ci].pw;
        o.stride[0] = cs[ci].sh;
        o.stride[1] = cs[ci].sw;
        o.dilation[0] = cs[ci].dh;
        o.dilation[1] = cs[ci].dw;
        bx_module *m = rand_qconv(&r, cs[ci].O, 1, cs[ci].k0, cs[ci].k1, &o, false, cs[ci].relu, 9, ci % 3 ? 4 : 0, 0,
                                  NULL, NULL, NULL, NULL);
        bx_step_reset(st);
        bx_tensor *xcl, *x = rand_u8(&r, st, 3, 1, 11, 13, &xcl);
        bx_tensor *y1 = bx_module_forward(m, st, x), *y2 = bx_module_forward(m, st, xcl);
        bx_quantized_linear_use_onednn(m, false);
        bx_tensor *y3 = bx_module_forward(m, st, x);
        CHECK(bx_step_status(st) == BX_OK);
        int d1 = count_diff(y1, y3), d2 = count_diff(y2, y3);
        if (d1 || d2) fprintf(stderr, "one-channel case %zu: %d, %d differ\n", ci, d1, d2);
        CHECK_EQ_INT(d1, 0);
        CHECK_EQ_INT(d2, 0);
        bx_tensor_free(x);
        bx_module_free(m);
    }
    /* ties: weights in {-1,0,1}, scales 1, input scale 1/8, output scale 1:
     * v = acc/8 + bias is k+0.5 whenever acc = 4 (mod 8) */
    for (int relu = 0; relu < 2; relu++) {
        int64_t O = 32, ws[4] = {O, 1, 3, 3};
        bx_tensor *w = bx_tensor_new(BX_I8, 4, ws), *sc = bx_tensor_new(BX_F64, 1, &O), *zp = bx_tensor_new(BX_I64, 1, &O),
                  *b = bx_tensor_new(BX_F32, 1, &O);
        for (int64_t i = 0; i < bx_numel(w); i++) ((int8_t *)w->data)[i] = (int8_t)((int)bx_rng_below(&r, 3) - 1);
        for (int64_t i = 0; i < O; i++) {
            ((double *)sc->data)[i] = 1.0;
            ((int64_t *)zp->data)[i] = 0;
            ((float *)b->data)[i] = (float)(i % 5) - 2.0f;
        }
        bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
        o.padding[0] = o.padding[1] = 1;
        bx_module *m = bx_quantized_conv2d_new(w, sc, zp, b, &o, 0.125, 128, 1.0, 100, relu);
        CHECK(m != NULL);
        bx_step_reset(st);
        bx_tensor *xcl, *x = rand_u8(&r, st, 4, 1, 12, 12, &xcl);
        bx_tensor *y1 = bx_module_forward(m, st, x);
        bx_quantized_linear_use_onednn(m, false);
        bx_tensor *y3 = bx_module_forward(m, st, x);
        CHECK(bx_step_status(st) == BX_OK);
        CHECK_EQ_INT(count_diff(y1, y3), 0);
        bx_tensor_free(w);
        bx_tensor_free(sc);
        bx_tensor_free(zp);
        bx_tensor_free(b);
        bx_tensor_free(x);
        bx_module_free(m);
    }
    bx_step_free(st);
}

int main(void) {
    bx_set_num_threads(1);
    test_one_channel();
    test_torch_cases();
    test_convert_conv();
    test_groups_same();
    test_qpool();
    test_chunks();
    test_convert_cnn();
    return tu_finish("quant/qconv");
}
