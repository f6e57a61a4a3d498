/* test_activation.c - relu, leaky_relu, gelu (exact, tanh), sigmoid, tanh:
 * values (from PyTorch 1.13), gradients, strided inputs, errors. */
#include "ew_test_util.h"

static const float X6[6] = {-3.0f, -1.5f, -0.5f, 0.25f, 1.0f, 2.5f};

typedef enum { RELU, LEAKY, GELU, GELU_TANH, SIGMOID, TANH } act;

typedef struct act_ud {
    act a;
    float slope;
    int transpose;
} act_ud;

static bx_tensor *act_apply(bx_step *st, bx_tensor *x, const act_ud *u) {
    switch (u->a) {
    case RELU: return bx_relu(st, x);
    case LEAKY: return bx_leaky_relu(st, x, u->slope);
    case GELU: return bx_gelu(st, x, BX_GELU_EXACT);
    case GELU_TANH: return bx_gelu(st, x, BX_GELU_TANH);
    case SIGMOID: return bx_sigmoid(st, x);
    case TANH: return bx_tanh(st, x);
    }
    return NULL;
}

/* y and dy/dx (with gy = 1) on X6 against PyTorch. */
static void check_values(act a, float slope, const float *ey, const float *eg) {
    int64_t s[1] = {6};
    bx_tensor *x = et_tensor(1, s, X6, true);
    bx_step *st = bx_step_new();
    act_ud u = {a, slope, 0};
    bx_tensor *y = act_apply(st, x, &u);
    et_check(y, 1, s, ey, 2e-6);
    bx_tensor *g = bx_step_tensor(st, BX_F32, 1, s);
    bx_fill(g, 1.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    et_check(x->grad, 1, s, eg, 2e-6);
    bx_step_free(st);
    bx_tensor_free(x);
}

static void test_values(void) {
    float relu_y[6] = {0, 0, 0, 0.25f, 1, 2.5f}, relu_g[6] = {0, 0, 0, 1, 1, 1};
    check_values(RELU, 0, relu_y, relu_g);
    float lr_y[6] = {-0.600000024f, -0.300000012f, -0.100000001f, 0.25f, 1.0f, 2.5f};
    float lr_g[6] = {0.2f, 0.2f, 0.2f, 1, 1, 1};
    check_values(LEAKY, 0.2f, lr_y, lr_g);
    float lr0_y[6] = {-0.03f, -0.015f, -0.005f, 0.25f, 1.0f, 2.5f};
    float lr0_g[6] = {0.01f, 0.01f, 0.01f, 1, 1, 1};
    check_values(LEAKY, 0.01f, lr0_y, lr0_g);
    float ge_y[6] = {-0.00404986739f, -0.10021086f, -0.154268786f, 0.149676561f, 0.841344714f, 2.48447585f};
    float ge_g[6] = {-0.0119456053f, -0.127469152f, 0.13250491f, 0.695373297f, 1.08331537f, 1.03761101f};
    check_values(GELU, 0, ge_y, ge_g);
    float gt_y[6] = {-0.00363743305f, -0.100428432f, -0.154285997f, 0.149675354f, 0.841192007f, 2.48491573f};
    float gt_g[6] = {-0.0115842968f, -0.127710819f, 0.13263011f, 0.695354104f, 1.08296406f, 1.03795171f};
    check_values(GELU_TANH, 0, gt_y, gt_g);
    float sg_y[6] = {0.0474258736f, 0.182425529f, 0.377540678f, 0.562176526f, 0.731058598f, 0.924141824f};
    float sg_g[6] = {0.0451766588f, 0.149146467f, 0.23500371f, 0.246134073f, 0.196611926f, 0.0701037124f};
    check_values(SIGMOID, 0, sg_y, sg_g);
    float th_y[6] = {-0.995054781f, -0.905148268f, -0.462117165f, 0.244918659f, 0.761594176f, 0.986614287f};
    float th_g[6] = {0.00986598153f, 0.18070662f, 0.786447704f, 0.940014839f, 0.419974297f, 0.0265922491f};
    check_values(TANH, 0, th_y, th_g);
}

/* Large |x|: sigmoid saturates without NaN, tanh stays in [-1,1]. */
static void test_extremes(void) {
    int64_t s[1] = {4};
    float v[4] = {-200.0f, -90.0f, 90.0f, 200.0f};
    bx_tensor *x = et_tensor(1, s, v, false);
    bx_step *st = bx_step_new();
    float sy[4] = {0, 0, 1, 1}, ty[4] = {-1, -1, 1, 1}, gy[4] = {-0.0f, -0.0f, 90, 200};
    et_check(bx_sigmoid(st, x), 1, s, sy, 1e-7);
    et_check(bx_tanh(st, x), 1, s, ty, 0);
    et_check(bx_gelu(st, x, BX_GELU_EXACT), 1, s, gy, 0);
    et_check(bx_gelu(st, x, BX_GELU_TANH), 1, s, gy, 0);
    bx_step_free(st);
    bx_tensor_free(x);
}

static bx_tensor *gc_fn(bx_step *st, bx_tensor **in, void *p) {
    act_ud *u = p;
    bx_tensor *x = in[0];
    if (u->transpose) x = bx_transpose(st, x, 0, 1);
    return act_apply(st, x, u);
}

static void test_gradcheck(void) {
    bx_rng r;
    bx_rng_init(&r, 9);
    act_ud cases[] = {{RELU, 0, 0},    {RELU, 0, 1},    {LEAKY, 0.01f, 0}, {LEAKY, 0.3f, 1}, {LEAKY, -0.5f, 0},
                      {GELU, 0, 0},    {GELU, 0, 1},    {GELU_TANH, 0, 0}, {GELU_TANH, 0, 1}, {SIGMOID, 0, 0},
                      {SIGMOID, 0, 1}, {TANH, 0, 0},    {TANH, 0, 1}};
    char name[64];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t s[2] = {4, 5};
        bx_tensor *in[1] = {tu_rand_param(&r, 2, s, -3, 3)};
        /* keep kinks of relu / leaky_relu away from the finite-difference step */
        float *d = in[0]->data;
        for (int i = 0; i < 20; i++)
            if (fabsf(d[i]) < 0.05f) d[i] = 0.3f;
        snprintf(name, sizeof name, "activation %d slope %g transpose %d", (int)cases[c].a, cases[c].slope,
                 cases[c].transpose);
        tu_gradcheck(name, gc_fn, in, 1, &cases[c], 1e-3, 2e-3, 1e-2);
        bx_tensor_free(in[0]);
    }
}

/* A strided view gives the same result as its contiguous copy. */
static void test_strided(void) {
    bx_rng r;
    bx_rng_init(&r, 2);
    int64_t s[3] = {3, 4, 5};
    bx_tensor *x = tu_rand_param(&r, 3, s, -2, 2);
    bx_step *st = bx_step_new();
    int perm[3] = {2, 0, 1};
    bx_tensor *xp = bx_permute(st, x, perm), *xc = bx_contiguous(st, xp);
    for (int a = 0; a <= TANH; a++) {
        act_ud u = {(act)a, 0.1f, 0};
        bx_tensor *y1 = act_apply(st, xp, &u), *y2 = act_apply(st, xc, &u);
        int bad = 0;
        /* vector and scalar libm paths differ by a few ulp (more after the
         * cancellation in 1+erf(x) of gelu for negative x) */
        for (int64_t i = 0; i < 60; i++)
            if (fabs(bx_get(y1, i) - bx_get(y2, i)) > 1e-7 + 1e-5 * fabs(bx_get(y2, i))) {
                fprintf(stderr, "act %d elem %lld: %.9g vs %.9g\n", a, (long long)i, bx_get(y1, i), bx_get(y2, i));
                bad++;
            }
        CHECK_EQ_INT(bad, 0);
        CHECK(bx_same_shape(y1, xp));
    }
    CHECK_OK(bx_step_status(st));
    bx_step_free(st);
    bx_tensor_free(x);
}

static void test_errors(void) {
    int64_t s[2] = {2, 3};
    bx_step *st = bx_step_new();
    bx_tensor *xi = bx_step_zeros(st, BX_I64, 2, s);
    et_check_fail(st, bx_gelu(st, xi, BX_GELU_EXACT), BX_ERR_SHAPE, "gelu", "(2,3)", "i64");
    bx_step_reset(st);
    bx_tensor *x = bx_step_zeros(st, BX_F32, 2, s);
    et_check_fail(st, bx_gelu(st, x, (bx_gelu_approx)7), BX_ERR_INVALID, "gelu", "approximation", NULL);
    bx_step_reset(st);
    xi = bx_step_zeros(st, BX_U8, 2, s);
    et_check_fail(st, bx_sigmoid(st, xi), BX_ERR_SHAPE, "sigmoid", "u8", NULL);
    bx_step_reset(st);
    et_check_fail(st, bx_relu(st, NULL), BX_ERR_INVALID, "relu", NULL, NULL);
    bx_step_free(st);
}

/* Two steps, two backward calls accumulate. */
static void test_accumulation(void) {
    int64_t s[1] = {6};
    bx_tensor *x = et_tensor(1, s, X6, true);
    bx_step *st = bx_step_new();
    for (int k = 0; k < 2; k++) {
        bx_step_reset(st);
        CHECK_OK(bx_backward(st, bx_sum(st, bx_tanh(st, x), NULL, 0, false)));
    }
    float e[6];
    for (int i = 0; i < 6; i++) e[i] = 2.0f * (1.0f - tanhf(X6[i]) * tanhf(X6[i]));
    et_check(x->grad, 1, s, e, 1e-6);
    bx_step_free(st);
    bx_tensor_free(x);
}

int main(void) {
    test_values();
    test_extremes();
    test_gradcheck();
    test_strided();
    test_errors();
    test_accumulation();
    return tu_finish("ops/activation");
}
