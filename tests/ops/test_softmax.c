/* test_softmax.c - softmax / log_softmax over every dim: values (PyTorch
 * 1.13), stability, strided inputs, gradients, errors. */
#include "ew_test_util.h"

/* x = 0.37*i - 3 over (2,3,4), gy = sin(i); PyTorch values at flat 0, 5, 23. */
static void test_values_every_dim(void) {
    static const double ref[3][2][6] = {
        {{0.0116584152, 0.0116584152, 0.98834151, 0.00618265942, 2.84969774e-05, 0.00177176949},
         {-4.45172691, -4.45172691, -0.0117269671, 0.00625559082, -0.936536372, 0.978466213}},
        {{0.0405007191, 0.177917495, 0.781581819, -0.0258644074, -0.203626469, -0.185885787},
         {-3.20643544, -1.72643542, -0.246435463, -0.00941867568, -1.01135039, -0.810224354}},
        {{0.131960437, 0.191043705, 0.400415331, -0.0618575513, -0.164612129, -0.314423352},
         {-2.02525306, -1.65525317, -0.915252984, -0.249654442, -0.703278124, -1.20440352}},
    };
    int64_t s[3] = {2, 3, 4};
    float xv[24], gv[24];
    for (int i = 0; i < 24; i++) {
        xv[i] = (float)i * 0.37f - 3.0f;
        gv[i] = sinf((float)i);
    }
    static const int at[3] = {0, 5, 23};
    for (int d = 0; d < 3; d++) {
        for (int lg = 0; lg < 2; lg++) {
            for (int neg = 0; neg < 2; neg++) {
                bx_tensor *x = et_tensor(3, s, xv, true);
                bx_step *st = bx_step_new();
                int dim = neg ? d - 3 : d;
                bx_tensor *y = lg ? bx_log_softmax(st, x, dim) : bx_softmax(st, x, dim);
                bx_tensor *g = bx_step_tensor(st, BX_F32, 3, s);
                memcpy(g->data, gv, sizeof gv);
                CHECK_OK(bx_backward_with_grad(st, y, g));
                for (int k = 0; k < 3; k++) {
                    CHECK_NEAR(bx_get(y, at[k]), ref[d][lg][k], 2e-6);
                    CHECK_NEAR(bx_get(x->grad, at[k]), ref[d][lg][3 + k], 2e-6);
                }
                /* rows sum to 1 (softmax) / logsumexp 0 (log_softmax) */
                bx_tensor *p = lg ? bx_exp(st, y) : y;
                bx_tensor *sum = bx_sum(st, p, &dim, 1, false);
                for (int64_t i = 0; i < bx_numel(sum); i++) CHECK_NEAR(bx_get(sum, i), 1.0, 1e-6);
                bx_step_free(st);
                bx_tensor_free(x);
            }
        }
    }
}

/* Huge logits: the max is subtracted, nothing overflows. */
static void test_stability(void) {
    int64_t s[2] = {2, 3};
    float v[6] = {1000, 1001, 1002, -1000, -1000, -1000};
    bx_tensor *x = et_tensor(2, s, v, false);
    bx_step *st = bx_step_new();
    float e[6] = {0.0900305732f, 0.244728476f, 0.665240943f, 1.0f / 3, 1.0f / 3, 1.0f / 3};
    et_check(bx_softmax(st, x, 1), 2, s, e, 1e-6);
    float l[6] = {-2.40760596f, -1.40760596f, -0.407605964f, -1.09861229f, -1.09861229f, -1.09861229f};
    et_check(bx_log_softmax(st, x, -1), 2, s, l, 1e-6);
    /* 0-d input: softmax is 1, log_softmax 0 */
    bx_tensor *z = bx_scalar(st, 5.0f);
    CHECK_NEAR(bx_item(bx_softmax(st, z, 0)), 1.0, 0);
    CHECK_NEAR(bx_item(bx_log_softmax(st, z, -1)), 0.0, 0);
    CHECK_OK(bx_step_status(st));
    bx_step_free(st);
    bx_tensor_free(x);
}

typedef struct sm_ud {
    int dim, log, transpose;
} sm_ud;

static bx_tensor *gc_fn(bx_step *st, bx_tensor **in, void *p) {
    sm_ud *u = p;
    bx_tensor *x = in[0];
    if (u->transpose) x = bx_transpose(st, x, 0, -1);
    return u->log ? bx_log_softmax(st, x, u->dim) : bx_softmax(st, x, u->dim);
}

static void test_gradcheck(void) {
    bx_rng r;
    bx_rng_init(&r, 4);
    int64_t s[3] = {2, 3, 4};
    char name[64];
    for (int dim = -3; dim < 3; dim++)
        for (int lg = 0; lg < 2; lg++)
            for (int tr = 0; tr < 2; tr++) {
                bx_tensor *in[1] = {tu_rand_param(&r, 3, s, -2, 2)};
                sm_ud u = {dim, lg, tr};
                snprintf(name, sizeof name, "softmax dim %d log %d transpose %d", dim, lg, tr);
                tu_gradcheck(name, gc_fn, in, 1, &u, 1e-3, 1e-3, 1e-2);
                bx_tensor_free(in[0]);
            }
}

/* Strided input and a wide middle dim (column blocks beyond one block). */
static void test_strided_wide(void) {
    bx_rng r;
    bx_rng_init(&r, 8);
    int64_t s[3] = {3, 5, 300};
    bx_tensor *x = tu_rand_param(&r, 3, s, -4, 4);
    bx_step *st = bx_step_new();
    bx_tensor *xt = bx_transpose(st, x, 1, 2); /* (3,300,5) strided */
    bx_tensor *xc = bx_contiguous(st, xt);
    for (int d = 0; d < 3; d++) {
        bx_tensor *y1 = bx_softmax(st, xt, d), *y2 = bx_softmax(st, xc, d);
        bx_tensor *y3 = bx_log_softmax(st, x, d);
        int bad = 0;
        for (int64_t i = 0; i < bx_numel(y1); i++)
            if (bx_get(y1, i) != bx_get(y2, i)) bad++;
        CHECK_EQ_INT(bad, 0);
        /* log_softmax vs log of a per-slice reference */
        int64_t outer = 1, inner = 1, n = s[d];
        for (int k = 0; k < d; k++) outer *= s[k];
        for (int k = d + 1; k < 3; k++) inner *= s[k];
        bad = 0;
        const float *xd = x->data;
        for (int64_t o = 0; o < outer; o++)
            for (int64_t j = 0; j < inner; j++) {
                double m = -INFINITY, sum = 0;
                for (int64_t k = 0; k < n; k++) m = fmax(m, xd[(o * n + k) * inner + j]);
                for (int64_t k = 0; k < n; k++) sum += exp(xd[(o * n + k) * inner + j] - m);
                for (int64_t k = 0; k < n; k++) {
                    int64_t i = (o * n + k) * inner + j;
                    double e = xd[i] - m - log(sum);
                    if (fabs(bx_get(y3, i) - e) > 2e-5 * (1 + fabs(e))) bad++;
                }
            }
        CHECK_EQ_INT(bad, 0);
    }
    CHECK_OK(bx_step_status(st));
    bx_step_free(st);
    bx_tensor_free(x);
}

static void test_errors(void) {
    int64_t s[2] = {4, 7};
    bx_step *st = bx_step_new();
    bx_tensor *x = bx_step_zeros(st, BX_F32, 2, s);
    et_check_fail(st, bx_softmax(st, x, 2), BX_ERR_SHAPE, "softmax", "(4,7)", "dim 2");
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 2, s);
    et_check_fail(st, bx_log_softmax(st, x, -3), BX_ERR_SHAPE, "log_softmax", "(4,7)", NULL);
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_I64, 2, s);
    et_check_fail(st, bx_softmax(st, x, 1), BX_ERR_SHAPE, "softmax", "i64", NULL);
    bx_step_free(st);
}

static void test_accumulation(void) {
    int64_t s[2] = {2, 3};
    float v[6] = {0.5f, -1, 2, 0, 1, 3};
    bx_tensor *x = et_tensor(2, s, v, true);
    bx_step *st = bx_step_new();
    float once[6];
    for (int k = 0; k < 2; k++) {
        bx_step_reset(st);
        bx_tensor *y = bx_log_softmax(st, x, 1);
        int64_t s1[1] = {3};
        float wv[3] = {1, -2, 0.5f};
        bx_tensor *w = bx_step_tensor(st, BX_F32, 1, s1);
        memcpy(w->data, wv, sizeof wv);
        CHECK_OK(bx_backward(st, bx_sum(st, bx_mul(st, y, w), NULL, 0, false)));
        if (k == 0) memcpy(once, x->grad->data, sizeof once);
    }
    for (int i = 0; i < 6; i++) once[i] *= 2;
    et_check(x->grad, 2, s, once, 1e-6);
    bx_step_free(st);
    bx_tensor_free(x);
}

int main(void) {
    test_values_every_dim();
    test_stability();
    test_gradcheck();
    test_strided_wide();
    test_errors();
    test_accumulation();
    return tu_finish("ops/softmax");
}
