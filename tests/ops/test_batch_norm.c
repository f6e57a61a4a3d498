/* test_batch_norm.c - bx_batch_norm: hand-checked values and running-stat
 * updates (rule O6), finite-difference gradients in train and eval mode on
 * 2-D / 3-D / 4-D inputs, errors. */
#include "test_util.h"

typedef struct bn_case {
    bool training, use_weight, use_bias, use_running;
    double momentum;
} bn_case;

/* in: x, weight, bias, running_mean, running_var */
static bx_tensor *bn_fn(bx_step *st, bx_tensor **in, void *ud) {
    bn_case *c = ud;
    return bx_batch_norm(st, in[0], c->use_running ? in[3] : NULL, c->use_running ? in[4] : NULL,
                         c->use_weight ? in[1] : NULL, c->use_bias ? in[2] : NULL, c->training, c->momentum, 1e-5);
}

static void test_hand(void) {
    int64_t xs[2] = {4, 1}, cs[1] = {1};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *w = bx_param_new(1, cs), *b = bx_param_new(1, cs);
    bx_tensor *rm = bx_tensor_zeros(BX_F32, 1, cs), *rv = bx_tensor_new(BX_F32, 1, cs);
    bx_fill(rv, 1.0);
    for (int i = 0; i < 4; i++) ((float *)x->data)[i] = (float)(i + 1);
    bx_param_mark(x);
    bx_fill(w, 2.0);
    bx_fill(b, 1.0);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_batch_norm(st, x, rm, rv, w, b, true, 0.1, 1e-5);
    CHECK_OK(bx_step_status(st));
    double invstd = 1.0 / sqrt(1.25 + 1e-5); /* mean 2.5, biased var 1.25 */
    for (int i = 0; i < 4; i++) CHECK_NEAR(((float *)y->data)[i], 2 * (i + 1 - 2.5) * invstd + 1, 1e-6);
    CHECK_NEAR(((float *)rm->data)[0], 0.25, 1e-7);                /* 0.9*0 + 0.1*2.5 */
    CHECK_NEAR(((float *)rv->data)[0], 0.9 + 0.1 * 5.0 / 3.0, 1e-7); /* unbiased var 5/3 */
    /* gy = x: dbias = 10, dweight = sum x*xhat = 5*invstd, dx = w*invstd*(gy - mean(gy) - xhat*mean(gy*xhat)) */
    bx_tensor *g = bx_step_tensor(st, BX_F32, 2, xs);
    for (int i = 0; i < 4; i++) ((float *)g->data)[i] = (float)(i + 1);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    CHECK_NEAR(((float *)b->grad->data)[0], 10.0, 1e-6);
    CHECK_NEAR(((float *)w->grad->data)[0], 5.0 * invstd, 1e-5);
    for (int i = 0; i < 4; i++) {
        double xh = (i + 1 - 2.5) * invstd;
        double want = 2 * invstd * ((i + 1) - 2.5 - xh * (5.0 * invstd / 4.0));
        CHECK_NEAR(((float *)x->grad->data)[i], want, 1e-5);
    }
    /* eval mode: running stats used, not changed */
    bx_step_reset(st);
    y = bx_batch_norm(st, x, rm, rv, w, b, false, 0.1, 1e-5);
    CHECK_OK(bx_step_status(st));
    double ris = 1.0 / sqrt(0.9 + 0.5 / 3.0 + 1e-5);
    for (int i = 0; i < 4; i++) CHECK_NEAR(((float *)y->data)[i], 2 * (i + 1 - 0.25) * ris + 1, 1e-5);
    CHECK_NEAR(((float *)rm->data)[0], 0.25, 1e-7);
    bx_step_free(st);
    bx_tensor *ts[5] = {x, w, b, rm, rv};
    for (int i = 0; i < 5; i++) bx_tensor_free(ts[i]);
}

static void run_gradchecks(const char *tag, int ndim, const int64_t *shape) {
    bx_rng r;
    bx_rng_init(&r, 11);
    int64_t cs[1] = {shape[1]};
    bx_tensor *in[5] = {tu_rand_param(&r, ndim, shape, -2, 2), tu_rand_param(&r, 1, cs, 0.5f, 1.5f),
                        tu_rand_param(&r, 1, cs, -1, 1), tu_rand_param(&r, 1, cs, -0.5f, 0.5f),
                        tu_rand_param(&r, 1, cs, 0.5f, 2.0f)};
    in[3]->requires_grad = in[4]->requires_grad = false; /* buffers */
    char name[128];
    bn_case c = {true, true, true, false, 0.1};
    snprintf(name, sizeof name, "%s train affine", tag);
    tu_gradcheck(name, bn_fn, in, 5, &c, 1e-2, 3e-3, 3e-3);
    c.use_weight = c.use_bias = false;
    in[1]->requires_grad = in[2]->requires_grad = false;
    snprintf(name, sizeof name, "%s train no affine", tag);
    tu_gradcheck(name, bn_fn, in, 5, &c, 1e-2, 3e-3, 3e-3);
    c = (bn_case){false, true, true, true, 0.1};
    in[1]->requires_grad = in[2]->requires_grad = true;
    snprintf(name, sizeof name, "%s eval", tag);
    tu_gradcheck(name, bn_fn, in, 5, &c, 1e-2, 3e-3, 3e-3);
    c.use_bias = false;
    in[2]->requires_grad = false;
    snprintf(name, sizeof name, "%s eval no bias", tag);
    tu_gradcheck(name, bn_fn, in, 5, &c, 1e-2, 3e-3, 3e-3);
    for (int i = 0; i < 5; i++) bx_tensor_free(in[i]);
}

/* Running stats on a 4-D input against a direct computation; momentum 0.3. */
static void test_running_4d(void) {
    bx_rng r;
    bx_rng_init(&r, 5);
    int64_t xs[4] = {3, 2, 4, 5}, cs[1] = {2};
    bx_tensor *x = tu_rand_param(&r, 4, xs, -3, 3);
    bx_tensor *rm = bx_tensor_zeros(BX_F32, 1, cs), *rv = bx_tensor_new(BX_F32, 1, cs);
    bx_fill(rm, 0.5);
    bx_fill(rv, 2.0);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_batch_norm(st, x, rm, rv, NULL, NULL, true, 0.3, 1e-3);
    CHECK_OK(bx_step_status(st));
    const float *xd = x->data;
    for (int c = 0; c < 2; c++) {
        double s = 0, ss = 0;
        for (int n = 0; n < 3; n++)
            for (int k = 0; k < 20; k++) s += xd[(n * 2 + c) * 20 + k];
        double mu = s / 60;
        for (int n = 0; n < 3; n++)
            for (int k = 0; k < 20; k++) ss += (xd[(n * 2 + c) * 20 + k] - mu) * (xd[(n * 2 + c) * 20 + k] - mu);
        CHECK_NEAR(((float *)rm->data)[c], 0.7 * 0.5 + 0.3 * mu, 1e-6);
        CHECK_NEAR(((float *)rv->data)[c], 0.7 * 2.0 + 0.3 * ss / 59, 1e-6);
        double is = 1 / sqrt(ss / 60 + 1e-3);
        for (int n = 0; n < 3; n++)
            for (int k = 0; k < 20; k++)
                CHECK_NEAR(((float *)y->data)[(n * 2 + c) * 20 + k], (xd[(n * 2 + c) * 20 + k] - mu) * is, 1e-5);
    }
    bx_step_free(st);
    bx_tensor_free(x);
    bx_tensor_free(rm);
    bx_tensor_free(rv);
}

/* A size above the parallel threshold gives the same bits on 1 and 2 threads. */
static void test_threads(void) {
    bx_rng r;
    bx_rng_init(&r, 9);
    int64_t xs[4] = {4, 8, 32, 33}, cs[1] = {8};
    bx_tensor *x = tu_rand_param(&r, 4, xs, -2, 2), *w = tu_rand_param(&r, 1, cs, 0.5f, 1.5f);
    bx_tensor *res[2][3];
    int saved = bx_get_num_threads();
    for (int t = 0; t < 2; t++) {
        bx_set_num_threads(t + 1);
        bx_param_zero_grad(x);
        bx_param_zero_grad(w);
        bx_step *st = bx_step_new();
        bx_tensor *y = bx_batch_norm(st, x, NULL, NULL, w, NULL, true, 0.1, 1e-5);
        bx_tensor *g = bx_step_tensor(st, BX_F32, 4, xs);
        for (int64_t i = 0; i < bx_numel(g); i++) ((float *)g->data)[i] = (float)((i % 17) - 8) * 0.1f;
        CHECK_OK(bx_backward_with_grad(st, y, g));
        res[t][0] = bx_tensor_clone(y);
        res[t][1] = bx_tensor_clone(x->grad);
        res[t][2] = bx_tensor_clone(w->grad);
        bx_step_free(st);
    }
    bx_set_num_threads(saved);
    for (int k = 0; k < 3; k++) {
        CHECK(memcmp(res[0][k]->data, res[1][k]->data, sizeof(float) * (size_t)bx_numel(res[0][k])) == 0);
        bx_tensor_free(res[0][k]);
        bx_tensor_free(res[1][k]);
    }
    bx_tensor_free(x);
    bx_tensor_free(w);
}

static void test_errors(void) {
    bx_step *st = bx_step_new();
    int64_t xs[3] = {4, 3, 5}, ws[1] = {4}, one[2] = {1, 3};
    bx_tensor *x = bx_step_zeros(st, BX_F32, 3, xs), *w = bx_step_zeros(st, BX_F32, 1, ws);
    CHECK(bx_is_poison(bx_batch_norm(st, x, NULL, NULL, w, NULL, true, 0.1, 1e-5)));
    CHECK(strstr(bx_step_errmsg(st), "batch_norm") && strstr(bx_step_errmsg(st), "(4,3,5)") &&
          strstr(bx_step_errmsg(st), "(4)"));
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 3, xs);
    CHECK(bx_is_poison(bx_batch_norm(st, x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5)));
    CHECK(strstr(bx_step_errmsg(st), "eval mode") != NULL);
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 2, one);
    CHECK(bx_is_poison(bx_batch_norm(st, x, NULL, NULL, NULL, NULL, true, 0.1, 1e-5)));
    CHECK(strstr(bx_step_errmsg(st), "more than 1 value") != NULL);
    bx_step_free(st);
}

int main(void) {
    test_hand();
    int64_t s2[2] = {6, 3}, s3[3] = {3, 2, 4}, s4[4] = {2, 3, 3, 2};
    run_gradchecks("2-D", 2, s2);
    run_gradchecks("3-D", 3, s3);
    run_gradchecks("4-D", 4, s4);
    test_running_4d();
    test_threads();
    test_errors();
    return tu_finish("test_batch_norm");
}
