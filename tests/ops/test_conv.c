/* test_conv.c - bx_conv2d: hand-checked values, a direct reference for many
 * option combinations, finite-difference gradients, errors, steady-state
 * allocations. */
#include "test_util.h"

typedef struct conv_case {
    int64_t n, c, h, w, o, kh, kw;
    bx_conv2d_opts opts;
    bool bias;
} conv_case;

static bx_tensor *conv_fn(bx_step *st, bx_tensor **in, void *ud) {
    conv_case *cc = ud;
    return bx_conv2d(st, in[0], in[1], cc->bias ? in[2] : NULL, &cc->opts);
}

/* Direct convolution in double (PyTorch's definition). */
static void ref_conv(const conv_case *cc, const float *x, const float *w, const float *b, double *y, int64_t oh,
                     int64_t ow) {
    int64_t g = cc->opts.groups, cg = cc->c / g, og = cc->o / g;
    int64_t pt, pl;
    if (cc->opts.padding_same) {
        pt = cc->opts.dilation[0] * (cc->kh - 1) / 2;
        pl = cc->opts.dilation[1] * (cc->kw - 1) / 2;
    } else {
        pt = cc->opts.padding[0];
        pl = cc->opts.padding[1];
    }
    for (int64_t n = 0; n < cc->n; n++)
        for (int64_t o = 0; o < cc->o; o++)
            for (int64_t i = 0; i < oh; i++)
                for (int64_t j = 0; j < ow; j++) {
                    double s = b ? b[o] : 0;
                    int64_t gi = o / og;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t a = 0; a < cc->kh; a++)
                            for (int64_t bb = 0; bb < cc->kw; bb++) {
                                int64_t hi = i * cc->opts.stride[0] - pt + a * cc->opts.dilation[0];
                                int64_t wi = j * cc->opts.stride[1] - pl + bb * cc->opts.dilation[1];
                                if (hi < 0 || hi >= cc->h || wi < 0 || wi >= cc->w) continue;
                                s += (double)x[((n * cc->c + gi * cg + ci) * cc->h + hi) * cc->w + wi] *
                                     w[((o * cg + ci) * cc->kh + a) * cc->kw + bb];
                            }
                    y[((n * cc->o + o) * oh + i) * ow + j] = s;
                }
}

static void check_case(const char *name, conv_case cc, bool gradcheck) {
    bx_rng r;
    bx_rng_init(&r, 42);
    int64_t xs[4] = {cc.n, cc.c, cc.h, cc.w}, ws[4] = {cc.o, cc.c / cc.opts.groups, cc.kh, cc.kw}, bs[1] = {cc.o};
    bx_tensor *in[3] = {tu_rand_param(&r, 4, xs, -1, 1), tu_rand_param(&r, 4, ws, -1, 1),
                        tu_rand_param(&r, 1, bs, -1, 1)};
    bx_step *st = bx_step_new();
    bx_tensor *y = conv_fn(st, in, &cc);
    CHECK_OK(bx_step_status(st));
    if (bx_step_status(st) == BX_OK) {
        int64_t oh = y->shape[2], ow = y->shape[3];
        double *ref = malloc(sizeof(double) * (size_t)bx_numel(y));
        ref_conv(&cc, in[0]->data, in[1]->data, cc.bias ? in[2]->data : NULL, ref, oh, ow);
        double worst = 0;
        for (int64_t i = 0; i < bx_numel(y); i++) {
            double d = fabs(((float *)y->data)[i] - ref[i]) / (1 + fabs(ref[i]));
            if (d > worst) worst = d;
        }
        if (worst > 1e-5) fprintf(stderr, "%s: forward worst rel error %g\n", name, worst);
        CHECK(worst <= 1e-5);
        free(ref);
    }
    bx_step_free(st);
    if (gradcheck) {
        if (!cc.bias) in[2]->requires_grad = false;
        tu_gradcheck(name, conv_fn, in, 3, &cc, 1e-2, 2e-3, 2e-3);
    }
    for (int i = 0; i < 3; i++) bx_tensor_free(in[i]);
}

static void test_hand(void) {
    /* x = 1..9 (3x3), w = [[1,2],[3,4]], b = 0.5: y = [[37,47],[67,77]] + 0.5 */
    int64_t xs[4] = {1, 1, 3, 3}, ws[4] = {1, 1, 2, 2}, bs[1] = {1};
    bx_tensor *x = bx_tensor_new(BX_F32, 4, xs), *w = bx_param_new(4, ws), *b = bx_param_new(1, bs);
    for (int i = 0; i < 9; i++) ((float *)x->data)[i] = (float)(i + 1);
    for (int i = 0; i < 4; i++) ((float *)w->data)[i] = (float)(i + 1);
    ((float *)b->data)[0] = 0.5f;
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_conv2d(st, x, w, b, NULL);
    CHECK_OK(bx_step_status(st));
    CHECK_EQ_INT(y->shape[2], 2);
    const float want[4] = {37.5f, 47.5f, 67.5f, 77.5f};
    for (int i = 0; i < 4; i++) CHECK_NEAR(((float *)y->data)[i], want[i], 1e-6);
    /* gy = 1: gw[a][b] = sum of the 2x2 window sums = x window totals, gb = 4 */
    bx_tensor *g = bx_step_tensor(st, BX_F32, 4, y->shape);
    bx_fill(g, 1.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    const float gw[4] = {1 + 2 + 4 + 5, 2 + 3 + 5 + 6, 4 + 5 + 7 + 8, 5 + 6 + 8 + 9};
    for (int i = 0; i < 4; i++) CHECK_NEAR(((float *)w->grad->data)[i], gw[i], 1e-6);
    CHECK_NEAR(((float *)b->grad->data)[0], 4.0, 1e-6);
    CHECK(x->grad == NULL); /* x does not require grad: no backward-data */
    /* a second backward (new step) accumulates into the parameters' grads */
    bx_step_reset(st);
    y = bx_conv2d(st, x, w, b, NULL);
    g = bx_step_tensor(st, BX_F32, 4, y->shape);
    bx_fill(g, 1.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    CHECK_NEAR(((float *)w->grad->data)[0], 24.0, 1e-6);
    CHECK_NEAR(((float *)b->grad->data)[0], 8.0, 1e-6);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_tensor_free(w);
    bx_tensor_free(b);
}

static void test_cases(void) {
    conv_case c0 = {2, 3, 7, 6, 4, 3, 3, BX_CONV2D_OPTS_INIT, true};
    check_case("plain", c0, true);
    conv_case c1 = {2, 4, 9, 11, 6, 3, 2, {{2, 1}, {1, 2}, {1, 2}, 2, false}, true};
    check_case("stride+pad+dilation+groups", c1, true);
    conv_case c2 = {2, 4, 6, 6, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 4, false}, false};
    check_case("depthwise, no bias", c2, true);
    conv_case c3 = {1, 2, 6, 7, 3, 2, 4, {{1, 1}, {0, 0}, {2, 1}, 1, true}, true};
    check_case("padding same, even kernel, dilation", c3, true);
    conv_case c4 = {2, 6, 8, 8, 12, 1, 1, {{2, 2}, {0, 0}, {1, 1}, 3, false}, false};
    check_case("1x1 stride 2 groups 3", c4, true);
    conv_case c5 = {1, 1, 5, 5, 2, 5, 5, {{1, 1}, {0, 0}, {1, 1}, 1, false}, true};
    check_case("kernel == input", c5, true);
    /* larger shapes: blocked layouts (nChw16c) and reorders, forward only */
    conv_case c6 = {3, 32, 14, 14, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1, false}, true};
    check_case("32->64 blocked", c6, false);
    conv_case c7 = {2, 32, 10, 9, 32, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 32, false}, true};
    check_case("depthwise 32 stride 2", c7, false);
    conv_case c8 = {2, 17, 9, 10, 20, 3, 5, {{1, 2}, {2, 0}, {2, 1}, 1, false}, false};
    check_case("odd channels", c8, false);
    conv_case c9 = {2, 1, 12, 12, 32, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1, false}, true};
    check_case("1 input channel (plain output)", c9, true);
}

/* Gradient of a blocked-layout conv against a double reference backward. */
static void test_blocked_backward(void) {
    conv_case cc = {2, 16, 8, 8, 32, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1, false}, true};
    bx_rng r;
    bx_rng_init(&r, 7);
    int64_t xs[4] = {2, 16, 8, 8}, ws[4] = {32, 16, 3, 3}, bs[1] = {32};
    bx_tensor *x = tu_rand_param(&r, 4, xs, -1, 1), *w = tu_rand_param(&r, 4, ws, -1, 1),
              *b = tu_rand_param(&r, 1, bs, -1, 1);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_conv2d(st, x, w, b, &cc.opts);
    bx_tensor *g = bx_step_tensor(st, BX_F32, 4, y->shape);
    for (int64_t i = 0; i < bx_numel(g); i++) ((float *)g->data)[i] = 2 * bx_rng_uniform(&r) - 1;
    CHECK_OK(bx_backward_with_grad(st, y, g));
    const float *xd = x->data, *wd = w->data, *gd = g->data;
    double worst = 0;
    /* dx[n,c,h,w] = sum_{o,a,b} g[n,o,h+1-a,w+1-b] w[o,c,a,b]; dw[o,c,a,b] = sum g[n,o,i,j] x[n,c,i-1+a,j-1+b] */
    for (int64_t n = 0; n < 2; n++)
        for (int64_t c = 0; c < 16; c++)
            for (int64_t h = 0; h < 8; h++)
                for (int64_t ww = 0; ww < 8; ww++) {
                    double s = 0;
                    for (int64_t o = 0; o < 32; o++)
                        for (int64_t a = 0; a < 3; a++)
                            for (int64_t bb = 0; bb < 3; bb++) {
                                int64_t i = h + 1 - a, j = ww + 1 - bb;
                                if (i < 0 || i >= 8 || j < 0 || j >= 8) continue;
                                s += (double)gd[((n * 32 + o) * 8 + i) * 8 + j] * wd[((o * 16 + c) * 3 + a) * 3 + bb];
                            }
                    double d = fabs(((float *)x->grad->data)[((n * 16 + c) * 8 + h) * 8 + ww] - s) / (1 + fabs(s));
                    if (d > worst) worst = d;
                }
    for (int64_t o = 0; o < 32; o++)
        for (int64_t c = 0; c < 16; c++)
            for (int64_t a = 0; a < 3; a++)
                for (int64_t bb = 0; bb < 3; bb++) {
                    double s = 0;
                    for (int64_t n = 0; n < 2; n++)
                        for (int64_t i = 0; i < 8; i++)
                            for (int64_t j = 0; j < 8; j++) {
                                int64_t h = i - 1 + a, ww = j - 1 + bb;
                                if (h < 0 || h >= 8 || ww < 0 || ww >= 8) continue;
                                s += (double)gd[((n * 32 + o) * 8 + i) * 8 + j] * xd[((n * 16 + c) * 8 + h) * 8 + ww];
                            }
                    double d = fabs(((float *)w->grad->data)[((o * 16 + c) * 3 + a) * 3 + bb] - s) / (1 + fabs(s));
                    if (d > worst) worst = d;
                }
    for (int64_t o = 0; o < 32; o++) {
        double s = 0;
        for (int64_t i = 0; i < 2 * 64; i++) s += gd[(i / 64 * 32 + o) * 64 + i % 64];
        double d = fabs(((float *)b->grad->data)[o] - s) / (1 + fabs(s));
        if (d > worst) worst = d;
    }
    if (worst > 1e-5) fprintf(stderr, "blocked backward: worst rel error %g\n", worst);
    CHECK(worst <= 1e-5);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_tensor_free(w);
    bx_tensor_free(b);
}

static void test_errors(void) {
    bx_step *st = bx_step_new();
    int64_t xs[4] = {2, 3, 5, 5}, ws[4] = {4, 2, 3, 3}, big[4] = {4, 3, 7, 7};
    bx_tensor *x = bx_step_zeros(st, BX_F32, 4, xs), *w = bx_step_zeros(st, BX_F32, 4, ws);
    bx_tensor *y = bx_conv2d(st, x, w, NULL, NULL);
    CHECK(bx_is_poison(y));
    CHECK_EQ_INT(bx_step_status(st), BX_ERR_SHAPE);
    CHECK(strstr(bx_step_errmsg(st), "conv2d") && strstr(bx_step_errmsg(st), "(2,3,5,5)") &&
          strstr(bx_step_errmsg(st), "(4,2,3,3)"));
    /* poison in -> poison out, first error kept */
    CHECK(bx_is_poison(bx_conv2d(st, y, w, NULL, NULL)));
    CHECK(strstr(bx_step_errmsg(st), "(4,2,3,3)") != NULL);

    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 4, xs);
    w = bx_step_zeros(st, BX_F32, 4, big);
    y = bx_conv2d(st, x, w, NULL, NULL);
    CHECK(bx_is_poison(y));
    CHECK(strstr(bx_step_errmsg(st), "larger than the padded input") && strstr(bx_step_errmsg(st), "(4,3,7,7)"));
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 4, xs);
    w = bx_step_zeros(st, BX_F32, 4, big);
    bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
    o.padding[0] = o.padding[1] = 1; /* 7x7 padded input: fits */
    y = bx_conv2d(st, x, w, NULL, &o);
    CHECK_OK(bx_step_status(st));
    CHECK_EQ_INT(y->shape[2], 1);

    bx_step_reset(st);
    int64_t ws2[4] = {4, 3, 3, 3}, bs[1] = {5};
    x = bx_step_zeros(st, BX_F32, 4, xs);
    w = bx_step_zeros(st, BX_F32, 4, ws2);
    bx_tensor *b = bx_step_zeros(st, BX_F32, 1, bs);
    CHECK(bx_is_poison(bx_conv2d(st, x, w, b, NULL)));
    CHECK(strstr(bx_step_errmsg(st), "bias") != NULL);

    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 4, xs);
    w = bx_step_zeros(st, BX_F32, 4, ws2);
    o = (bx_conv2d_opts)BX_CONV2D_OPTS_INIT;
    o.padding_same = true;
    o.stride[0] = 2;
    CHECK(bx_is_poison(bx_conv2d(st, x, w, NULL, &o)));
    CHECK(strstr(bx_step_errmsg(st), "same") != NULL);
    bx_step_free(st);
}

/* Same conv fwd+bwd repeated: after warm-up nothing goes through the hook. */
static void test_steady_alloc(void) {
    bx_rng r;
    bx_rng_init(&r, 3);
    int64_t xs[4] = {4, 8, 12, 12}, ws[4] = {16, 8, 3, 3}, bs[1] = {16};
    bx_tensor *x = tu_rand_param(&r, 4, xs, -1, 1), *w = tu_rand_param(&r, 4, ws, -1, 1),
              *b = tu_rand_param(&r, 1, bs, -1, 1);
    bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
    o.padding[0] = o.padding[1] = 1;
    bx_step *st = bx_step_new();
    uint64_t before = 0;
    for (int it = 0; it < 6; it++) {
        if (it == 3) before = bx_alloc_count();
        bx_step_reset(st);
        bx_tensor *y = bx_conv2d(st, x, w, b, &o);
        bx_tensor *g = bx_step_tensor(st, BX_F32, 4, y->shape);
        bx_fill(g, 0.5);
        CHECK_OK(bx_backward_with_grad(st, y, g));
    }
    CHECK_EQ_INT(bx_alloc_count(), before);
    bx_step_free(st);
    bx_tensor_free(x);
    bx_tensor_free(w);
    bx_tensor_free(b);
}

/* A forward whose cache entry is evicted (more distinct shapes than the
 * cache holds) before its backward, which then rebuilds the entry. */
static void test_eviction(void) {
    bx_rng r;
    bx_rng_init(&r, 21);
    int64_t xs[4] = {2, 16, 9, 9}, ws[4] = {8, 16, 3, 3}, bs[1] = {8};
    bx_tensor *x = tu_rand_param(&r, 4, xs, -1, 1), *w = tu_rand_param(&r, 4, ws, -1, 1),
              *b = tu_rand_param(&r, 1, bs, -1, 1);
    bx_tensor *ref[3];
    bx_step *st = bx_step_new(), *other = bx_step_new();
    for (int pass = 0; pass < 2; pass++) {
        bx_param_zero_grad(x);
        bx_param_zero_grad(w);
        bx_param_zero_grad(b);
        bx_step_reset(st);
        bx_tensor *y = bx_conv2d(st, x, w, b, NULL);
        if (pass == 1) {
            bx_no_grad_push(other);
            for (int64_t k = 0; k < 70; k++) { /* 70 other shapes: evicts y's entry */
                bx_step_reset(other);
                int64_t s2[4] = {1, 2, 4 + k % 10, 4 + k / 10}, w2[4] = {2, 2, 2, 2};
                bx_conv2d(other, bx_step_zeros(other, BX_F32, 4, s2), bx_step_zeros(other, BX_F32, 4, w2), NULL, NULL);
                CHECK_OK(bx_step_status(other));
            }
            bx_no_grad_pop(other);
        }
        bx_tensor *g = bx_step_tensor(st, BX_F32, 4, y->shape);
        for (int64_t i = 0; i < bx_numel(g); i++) ((float *)g->data)[i] = (float)(i % 7) - 3.0f;
        CHECK_OK(bx_backward_with_grad(st, y, g));
        if (pass == 0) {
            ref[0] = bx_tensor_clone(x->grad);
            ref[1] = bx_tensor_clone(w->grad);
            ref[2] = bx_tensor_clone(b->grad);
        } else {
            bx_tensor *got[3] = {x->grad, w->grad, b->grad};
            for (int k = 0; k < 3; k++) {
                CHECK(memcmp(got[k]->data, ref[k]->data, sizeof(float) * (size_t)bx_numel(ref[k])) == 0);
                bx_tensor_free(ref[k]);
            }
        }
    }
    bx_step_free(st);
    bx_step_free(other);
    bx_tensor_free(x);
    bx_tensor_free(w);
    bx_tensor_free(b);
}

int main(void) {
    test_hand();
    test_cases();
    test_blocked_backward();
    test_errors();
    test_steady_alloc();
    test_eviction();
    /* a different thread count builds other primitives (cache key) */
    int saved = bx_get_num_threads();
    bx_set_num_threads(2);
    conv_case c6 = {3, 32, 14, 14, 64, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1, false}, true};
    check_case("32->64 blocked, 2 threads", c6, false);
    test_blocked_backward();
    bx_set_num_threads(saved);
    return tu_finish("test_conv");
}
