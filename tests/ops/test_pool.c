/* test_pool.c - max / avg / adaptive avg pooling: values and gradients
 * checked against PyTorch 1.13 (numbers below printed by torch), the tie
 * rule on integer inputs, finite-difference gradients, errors. */
#include "test_util.h"

/* x (5x5) = (i*7) % 11: integer values with repeats across windows */
static bx_tensor *mod_input(void) {
    int64_t s[4] = {1, 1, 5, 5};
    bx_tensor *x = bx_tensor_new(BX_F32, 4, s);
    for (int i = 0; i < 25; i++) ((float *)x->data)[i] = (float)((i * 7) % 11);
    bx_param_mark(x);
    return x;
}

static bx_tensor *arange_input(int64_t h, int64_t w) {
    int64_t s[4] = {1, 1, h, w};
    bx_tensor *x = bx_tensor_new(BX_F32, 4, s);
    for (int64_t i = 0; i < h * w; i++) ((float *)x->data)[i] = (float)(i + 1);
    bx_param_mark(x);
    return x;
}

typedef enum { P_MAX, P_AVG, P_ADA } pool_kind;
typedef struct pool_case {
    pool_kind kind;
    bx_pool2d_opts o;
    int64_t oh, ow; /* adaptive output */
} pool_case;

static bx_tensor *pool_fn(bx_step *st, bx_tensor **in, void *ud) {
    pool_case *pc = ud;
    if (pc->kind == P_MAX) return bx_max_pool2d(st, in[0], &pc->o);
    if (pc->kind == P_AVG) return bx_avg_pool2d(st, in[0], &pc->o);
    return bx_adaptive_avg_pool2d(st, in[0], pc->oh, pc->ow);
}

/* Runs the pool with gy = 1 and compares y (shape oh x ow) and gx with torch's. */
static void expect(const char *name, bx_tensor *x, pool_case pc, int64_t oh, int64_t ow, const float *y_ref,
                   const float *gx_ref) {
    bx_param_zero_grad(x);
    bx_step *st = bx_step_new();
    bx_tensor *in[1] = {x};
    bx_tensor *y = pool_fn(st, in, &pc);
    CHECK_OK(bx_step_status(st));
    if (bx_step_status(st) != BX_OK) {
        bx_step_free(st);
        return;
    }
    CHECK_EQ_INT(y->shape[2], oh);
    CHECK_EQ_INT(y->shape[3], ow);
    int bad = 0;
    if (y->shape[2] == oh && y->shape[3] == ow)
        for (int64_t i = 0; i < oh * ow; i++)
            if (fabsf(((float *)y->data)[i] - y_ref[i]) > 1e-5f * (1 + fabsf(y_ref[i]))) bad++;
    bx_tensor *g = bx_step_tensor(st, BX_F32, y->ndim, y->shape);
    bx_fill(g, 1.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    for (int64_t i = 0; i < bx_numel(x); i++)
        if (fabsf(((float *)x->grad->data)[i] - gx_ref[i]) > 1e-6f * (1 + fabsf(gx_ref[i]))) bad++;
    if (bad) fprintf(stderr, "%s: %d values differ from torch\n", name, bad);
    CHECK(bad == 0);
    bx_step_free(st);
}

static void test_max_torch(void) {
    bx_tensor *x = mod_input();
    pool_case pc = {P_MAX, BX_POOL2D_OPTS_INIT, 0, 0};
    pc.o.ceil_mode = true; /* k2 s2 ceil: a 3rd window starting at 4 (inside the input) */
    const float y1[] = {9, 10, 8, 6, 9, 10, 8, 7, 3};
    const float g1[] = {0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 0, 0, 1, 1};
    expect("max k2 s2 ceil", x, pc, 3, 3, y1, g1);

    pc.o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    pc.o.kernel[0] = pc.o.kernel[1] = 3;
    pc.o.stride[0] = pc.o.stride[1] = 2;
    pc.o.padding[0] = pc.o.padding[1] = 1;
    pc.o.ceil_mode = true; /* (5+2-3+1)/2+1 = 3.5 -> 4 windows, the 4th starts at 6 >= 5+1: dropped */
    const float y2[] = {9, 10, 10, 9, 9, 10, 8, 9, 7};
    const float g2[] = {0, 0, 0, 2, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0};
    expect("max k3 s2 p1 ceil", x, pc, 3, 3, y2, g2);

    pc.o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    pc.o.stride[0] = pc.o.stride[1] = 1; /* overlapping windows accumulate */
    const float y3[] = {9, 9, 10, 10, 9, 9, 7, 10, 6, 9, 9, 10, 8, 9, 9, 7};
    const float g3[] = {0, 0, 0, 2, 0, 0, 4, 0, 0, 0, 0, 0, 1, 0, 2, 1, 0, 4, 0, 0, 1, 0, 0, 1, 0};
    expect("max k2 s1 overlapping", x, pc, 4, 4, y3, g3);

    pc.o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    pc.o.stride[0] = pc.o.stride[1] = 1;
    pc.o.dilation[0] = pc.o.dilation[1] = 2;
    const float y4[] = {7, 10, 10, 9, 9, 9, 8, 7, 10};
    const float g4[] = {0, 0, 0, 1, 0, 0, 1, 0, 0, 0, 0, 0, 1, 0, 2, 0, 0, 2, 0, 0, 1, 0, 0, 1, 0};
    expect("max k2 s1 dilation 2", x, pc, 3, 3, y4, g4);
    bx_tensor_free(x);
}

/* Tie rule (O4): the gradient goes to the FIRST maximum of each window in
 * row-major order; later equal values never replace it. */
static void test_max_ties(void) {
    int64_t s[4] = {1, 1, 3, 3};
    bx_tensor *x = bx_tensor_new(BX_F32, 4, s);
    bx_param_mark(x);
    pool_case pc = {P_MAX, BX_POOL2D_OPTS_INIT, 0, 0};
    pc.o.stride[0] = pc.o.stride[1] = 1;
    bx_fill(x, 1.0); /* all equal: every window picks its top-left element */
    const float y1[] = {1, 1, 1, 1};
    const float g1[] = {1, 1, 0, 1, 1, 0, 0, 0, 0};
    expect("ties all equal", x, pc, 2, 2, y1, g1);
    const float v[9] = {1, 2, 2, 2, 1, 2, 2, 2, 1};
    memcpy(x->data, v, sizeof v);
    const float y2[] = {2, 2, 2, 2};
    const float g2[] = {0, 2, 0, 1, 0, 1, 0, 0, 0};
    expect("ties diagonal", x, pc, 2, 2, y2, g2);
    bx_tensor_free(x);
}

static void test_avg_torch(void) {
    bx_tensor *x = arange_input(5, 5);
    pool_case pc = {P_AVG, BX_POOL2D_OPTS_INIT, 0, 0};
    pc.o.kernel[0] = pc.o.kernel[1] = 3;
    pc.o.stride[0] = pc.o.stride[1] = 2;
    pc.o.padding[0] = pc.o.padding[1] = 1;
    pc.o.ceil_mode = true;
    pc.o.count_include_pad = false; /* divisor = in-bounds elements */
    const float y1[] = {4.0f, 5.5f, 7.0f, 11.5f, 13.0f, 14.5f, 19.0f, 20.5f, 22.0f};
    const float g1[] = {0.25f, 0.41666669f, 0.16666667f, 0.41666669f, 0.25f, 0.41666669f, 0.69444448f,
                        0.27777779f, 0.69444448f, 0.41666669f, 0.16666667f, 0.27777779f, 0.11111111f,
                        0.27777779f, 0.16666667f, 0.41666669f, 0.69444448f, 0.27777779f, 0.69444448f,
                        0.41666669f, 0.25f, 0.41666669f, 0.16666667f, 0.41666669f, 0.25f};
    expect("avg k3 s2 p1 ceil !count_include_pad", x, pc, 3, 3, y1, g1);

    pc.o.count_include_pad = true; /* divisor 9 (the window clipped to the padded input) */
    const float y2[] = {1.7777778f, 3.6666667f, 3.1111112f, 7.6666665f, 13.0f,
                        9.666667f,  8.444445f,  13.666667f, 9.777778f};
    const float g2[] = {0.11111111f, 0.22222222f, 0.11111111f, 0.22222222f, 0.11111111f, 0.22222222f, 0.44444445f,
                        0.22222222f, 0.44444445f, 0.22222222f, 0.11111111f, 0.22222222f, 0.11111111f, 0.22222222f,
                        0.11111111f, 0.22222222f, 0.44444445f, 0.22222222f, 0.44444445f, 0.22222222f, 0.11111111f,
                        0.22222222f, 0.11111111f, 0.22222222f, 0.11111111f};
    expect("avg k3 s2 p1 ceil count_include_pad", x, pc, 3, 3, y2, g2);

    pc.o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    pc.o.padding[0] = pc.o.padding[1] = 1;
    pc.o.ceil_mode = true; /* k2 s2 p1 ceil: last window covers row 4 and the right pad */
    const float y3[] = {0.25f, 1.25f, 2.25f, 4.25f, 10.0f, 12.0f, 9.25f, 20.0f, 22.0f};
    float g3[25];
    for (int i = 0; i < 25; i++) g3[i] = 0.25f;
    expect("avg k2 s2 p1 ceil", x, pc, 3, 3, y3, g3);

    pc.o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    pc.o.ceil_mode = true;
    pc.o.count_include_pad = false;
    pc.o.divisor_override = 3;
    const float y4[] = {5.3333335f, 8.0f, 5.0f, 18.666666f, 21.333334f, 11.666667f, 14.333333f, 15.666667f, 8.333333f};
    float g4[25];
    for (int i = 0; i < 25; i++) g4[i] = 1.0f / 3.0f;
    expect("avg divisor_override", x, pc, 3, 3, y4, g4);
    bx_tensor_free(x);

    x = arange_input(5, 7);
    pc.kind = P_ADA;
    pc.oh = 3, pc.ow = 4; /* windows [floor(i*H/oh), ceil((i+1)*H/oh)) overlap */
    const float y5[] = {5.0f, 6.5f, 8.5f, 10.0f, 15.5f, 17.0f, 19.0f, 20.5f, 26.0f, 27.5f, 29.5f, 31.0f};
    const float g5[] = {0.25f,       0.41666669f, 0.16666667f, 0.33333334f, 0.16666667f, 0.41666669f, 0.25f,
                        0.41666669f, 0.69444448f, 0.27777779f, 0.55555558f, 0.27777779f, 0.69444448f, 0.41666669f,
                        0.16666667f, 0.27777779f, 0.11111111f, 0.22222222f, 0.11111111f, 0.27777779f, 0.16666667f,
                        0.41666669f, 0.69444448f, 0.27777779f, 0.55555558f, 0.27777779f, 0.69444448f, 0.41666669f,
                        0.25f,       0.41666669f, 0.16666667f, 0.33333334f, 0.16666667f, 0.41666669f, 0.25f};
    expect("adaptive 5x7 -> 3x4", x, pc, 3, 4, y5, g5);
    bx_tensor_free(x);
}

/* Distinct values (gaps 0.05 >> eps) so finite differences never flip an argmax. */
static bx_tensor *distinct_input(int ndim, const int64_t *shape) {
    bx_tensor *x = bx_tensor_new(BX_F32, ndim, shape);
    int64_t n = bx_numel(x);
    for (int64_t i = 0; i < n; i++) ((float *)x->data)[i] = (float)((i * 7919) % n) * 0.05f - 1.0f;
    bx_param_mark(x);
    return x;
}

static void test_gradcheck(void) {
    int64_t s4[4] = {2, 3, 7, 6}, s3[3] = {2, 6, 5};
    bx_tensor *x4 = distinct_input(4, s4), *x3 = distinct_input(3, s3);
    pool_case pc = {P_MAX, BX_POOL2D_OPTS_INIT, 0, 0};
    pc.o.kernel[0] = 3, pc.o.kernel[1] = 2;
    pc.o.stride[0] = 2, pc.o.stride[1] = 1;
    pc.o.padding[0] = 1, pc.o.padding[1] = 1;
    pc.o.ceil_mode = true;
    tu_gradcheck("max k3x2 s2x1 p1 ceil", pool_fn, &x4, 1, &pc, 1e-3, 1e-3, 1e-3);
    pc.o.dilation[0] = 2;
    pc.o.ceil_mode = false;
    tu_gradcheck("max dilation", pool_fn, &x4, 1, &pc, 1e-3, 1e-3, 1e-3);
    tu_gradcheck("max 3-D input", pool_fn, &x3, 1, &pc, 1e-3, 1e-3, 1e-3);
    pc.kind = P_AVG;
    pc.o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    pc.o.kernel[0] = 3, pc.o.kernel[1] = 2;
    pc.o.stride[0] = 2, pc.o.stride[1] = 3;
    pc.o.padding[0] = 1, pc.o.padding[1] = 1;
    pc.o.ceil_mode = true;
    pc.o.count_include_pad = false;
    tu_gradcheck("avg ceil !count_include_pad", pool_fn, &x4, 1, &pc, 1e-2, 1e-3, 1e-3);
    pc.o.count_include_pad = true;
    tu_gradcheck("avg ceil count_include_pad", pool_fn, &x4, 1, &pc, 1e-2, 1e-3, 1e-3);
    pc.o.divisor_override = 5;
    tu_gradcheck("avg divisor_override", pool_fn, &x3, 1, &pc, 1e-2, 1e-3, 1e-3);
    pc.kind = P_ADA;
    pc.oh = 4, pc.ow = 4; /* upsampling windows along W (6 -> 4) and H (7 -> 4) */
    tu_gradcheck("adaptive 4x4", pool_fn, &x4, 1, &pc, 1e-2, 1e-3, 1e-3);
    pc.oh = 1, pc.ow = 1;
    tu_gradcheck("adaptive 1x1", pool_fn, &x3, 1, &pc, 1e-2, 1e-3, 1e-3);
    pc.oh = 9, pc.ow = 8; /* output larger than input */
    tu_gradcheck("adaptive 9x8", pool_fn, &x4, 1, &pc, 1e-2, 1e-3, 1e-3);
    bx_tensor_free(x4);
    bx_tensor_free(x3);
}

/* Sizes above the parallel threshold give the same bits on 1 and 2 threads. */
static void test_threads(void) {
    int64_t xs[4] = {4, 6, 40, 41};
    bx_tensor *x = distinct_input(4, xs);
    pool_case cases[3] = {{P_MAX, BX_POOL2D_OPTS_INIT, 0, 0}, {P_AVG, BX_POOL2D_OPTS_INIT, 0, 0},
                          {P_ADA, BX_POOL2D_OPTS_INIT, 5, 7}};
    cases[0].o.kernel[0] = cases[0].o.kernel[1] = 3;
    cases[0].o.stride[0] = cases[0].o.stride[1] = 2;
    cases[0].o.padding[0] = 1;
    cases[1].o.ceil_mode = true;
    int saved = bx_get_num_threads();
    for (int k = 0; k < 3; k++) {
        bx_tensor *res[2][2];
        for (int t = 0; t < 2; t++) {
            bx_set_num_threads(t + 1);
            bx_param_zero_grad(x);
            bx_step *st = bx_step_new();
            bx_tensor *in[1] = {x};
            bx_tensor *y = pool_fn(st, in, &cases[k]);
            bx_tensor *g = bx_step_tensor(st, BX_F32, y->ndim, y->shape);
            for (int64_t i = 0; i < bx_numel(g); i++) ((float *)g->data)[i] = (float)((i % 13) - 6) * 0.1f;
            CHECK_OK(bx_backward_with_grad(st, y, g));
            res[t][0] = bx_tensor_clone(y);
            res[t][1] = bx_tensor_clone(x->grad);
            bx_step_free(st);
        }
        for (int j = 0; j < 2; j++) {
            CHECK(memcmp(res[0][j]->data, res[1][j]->data, sizeof(float) * (size_t)bx_numel(res[0][j])) == 0);
            bx_tensor_free(res[0][j]);
            bx_tensor_free(res[1][j]);
        }
    }
    bx_set_num_threads(saved);
    bx_tensor_free(x);
}

static void test_errors(void) {
    bx_step *st = bx_step_new();
    int64_t s[4] = {1, 2, 4, 4};
    bx_tensor *x = bx_step_zeros(st, BX_F32, 4, s);
    bx_pool2d_opts o = BX_POOL2D_OPTS_INIT;
    o.padding[0] = 2; /* more than half the kernel */
    CHECK(bx_is_poison(bx_max_pool2d(st, x, &o)));
    CHECK(strstr(bx_step_errmsg(st), "max_pool2d") && strstr(bx_step_errmsg(st), "(1,2,4,4)") &&
          strstr(bx_step_errmsg(st), "half"));
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 4, s);
    o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    o.kernel[0] = o.kernel[1] = 5; /* larger than the input */
    CHECK(bx_is_poison(bx_avg_pool2d(st, x, &o)));
    CHECK(strstr(bx_step_errmsg(st), "avg_pool2d") && strstr(bx_step_errmsg(st), "(1,2,4,4)"));
    bx_step_reset(st);
    int64_t s2[2] = {4, 4};
    x = bx_step_zeros(st, BX_F32, 2, s2);
    CHECK(bx_is_poison(bx_adaptive_avg_pool2d(st, x, 2, 2)));
    CHECK(strstr(bx_step_errmsg(st), "adaptive_avg_pool2d") && strstr(bx_step_errmsg(st), "(4,4)"));
    bx_step_free(st);
}

/* The 2x2 stride-2 kernel (with and without a backward) against a plain
 * scan: many ties and NaNs, odd sizes, ceil_mode's cut windows. The argmax
 * shows through the gradient (gy = output index + 1). */
static void test_max_2x2_reference(void) {
    const int64_t sizes[][2] = {{6, 6}, {7, 5}, {5, 8}, {3, 3}, {9, 33}};
    uint64_t r = 12345;
    for (size_t c = 0; c < sizeof sizes / sizeof sizes[0]; c++)
        for (int ceil_mode = 0; ceil_mode < 2; ceil_mode++) {
            const int64_t H = sizes[c][0], W = sizes[c][1];
            int64_t s[4] = {2, 3, H, W};
            bx_tensor *x = bx_tensor_new(BX_F32, 4, s);
            float *xd = x->data;
            for (int64_t i = 0; i < bx_numel(x); i++) {
                r = r * 6364136223846793005ULL + 1442695040888963407ULL;
                unsigned v = (unsigned)(r >> 33) % 9;
                xd[i] = v == 8 ? NAN : (float)(v % 3); /* ties everywhere, some NaN */
            }
            bx_param_mark(x);
            bx_pool2d_opts o = BX_POOL2D_OPTS_INIT;
            o.kernel[0] = o.kernel[1] = 2;
            o.stride[0] = o.stride[1] = 2;
            o.ceil_mode = ceil_mode;
            const int64_t OH = ceil_mode ? (H + 1) / 2 : H / 2, OW = ceil_mode ? (W + 1) / 2 : W / 2;
            bx_step *st = bx_step_new();
            bx_tensor *y = bx_max_pool2d(st, x, &o);
            CHECK_OK(bx_step_status(st));
            bx_tensor *y_ng = NULL;
            bx_no_grad_push(st);
            y_ng = bx_max_pool2d(st, x, &o);
            bx_no_grad_pop(st);
            CHECK(y->shape[2] == OH && y->shape[3] == OW && y_ng->shape[2] == OH);
            bx_tensor *g = bx_step_tensor(st, BX_F32, 4, y->shape);
            for (int64_t i = 0; i < bx_numel(g); i++) ((float *)g->data)[i] = (float)(i + 1);
            bx_param_zero_grad(x);
            CHECK_OK(bx_backward_with_grad(st, y, g));
            int bad = 0;
            float *gref = calloc((size_t)bx_numel(x), sizeof(float));
            for (int64_t p = 0; p < 6; p++)
                for (int64_t i = 0; i < OH; i++)
                    for (int64_t j = 0; j < OW; j++) {
                        float best = 0;
                        int64_t bi = -1;
                        for (int64_t h = 2 * i; h < 2 * i + 2 && h < H; h++)
                            for (int64_t w = 2 * j; w < 2 * j + 2 && w < W; w++) {
                                float v = xd[p * H * W + h * W + w];
                                if (bi < 0 || v > best || v != v) best = v, bi = h * W + w;
                            }
                        int64_t o_i = p * OH * OW + i * OW + j;
                        float got = ((float *)y->data)[o_i], got_ng = ((float *)y_ng->data)[o_i];
                        if (!(got == best || (got != got && best != best))) bad++;
                        if (!(got_ng == best || (got_ng != got_ng && best != best))) bad++;
                        gref[p * H * W + bi] += (float)(o_i + 1);
                    }
            for (int64_t i = 0; i < bx_numel(x); i++)
                if (((float *)x->grad->data)[i] != gref[i]) bad++;
            if (bad) fprintf(stderr, "max 2x2 %lldx%lld ceil=%d: %d mismatches\n", (long long)H, (long long)W, ceil_mode, bad);
            CHECK(bad == 0);
            free(gref);
            bx_step_free(st);
            bx_tensor_free(x);
        }
}

int main(void) {
    test_max_torch();
    test_max_ties();
    test_max_2x2_reference();
    test_avg_torch();
    test_gradcheck();
    test_threads();
    test_errors();
    return tu_finish("test_pool");
}
