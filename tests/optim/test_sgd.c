/* test_sgd.c - SGD: hand-checked updates (plain, weight decay, momentum with
 * dampening, Nesterov, maximize), lazy momentum buffer, skipped parameters,
 * grad checks and option validation. */
#include "test_util.h"

static bx_tensor *vec(int n, const float *v) {
    int64_t s[1] = {n};
    bx_tensor *t = bx_tensor_new(BX_F32, 1, s);
    memcpy(t->data, v, (size_t)n * sizeof(float));
    bx_param_mark(t);
    return t;
}

static void set_grad(bx_tensor *p, const float *g) {
    memcpy(bx_param_grad(p)->data, g, (size_t)bx_numel(p) * sizeof(float));
}

static float at(const bx_tensor *t, int i) { return ((const float *)t->data)[i]; }

static bx_optimizer *sgd(double lr, double mom, double damp, double wd, bool nesterov, bool maximize) {
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = lr;
    o.momentum = mom;
    o.dampening = damp;
    o.weight_decay = wd;
    o.nesterov = nesterov;
    o.maximize = maximize;
    return bx_sgd_new(&o);
}

static const float P0[2] = {1.0f, -2.0f}, G1[2] = {0.5f, 0.25f}, G2[2] = {-1.0f, 2.0f};

static void test_plain_and_decay(void) {
    bx_tensor *p = vec(2, P0);
    bx_optimizer *o = sgd(0.1, 0, 0, 0.1, false, false);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    set_grad(p, G1);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < 2; i++) CHECK_NEAR(at(p, i), P0[i] - 0.1 * (G1[i] + 0.1 * P0[i]), 1e-6);
    CHECK_EQ_INT(bx_optimizer_step_count(o), 1);
    bx_optimizer_free(o);
    bx_tensor_free(p);
    /* maximize goes uphill */
    p = vec(2, P0);
    o = sgd(0.1, 0, 0, 0, false, true);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    set_grad(p, G1);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < 2; i++) CHECK_NEAR(at(p, i), P0[i] + 0.1 * G1[i], 1e-6);
    bx_optimizer_free(o);
    bx_tensor_free(p);
}

static void test_momentum(void) {
    /* momentum 0.9, dampening 0.2: buf1 = g1 (no dampening on the first step),
     * buf2 = 0.9*buf1 + 0.8*g2 */
    bx_tensor *p = vec(2, P0);
    bx_optimizer *o = sgd(0.1, 0.9, 0.2, 0, false, false);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    set_grad(p, G1);
    CHECK_OK(bx_optimizer_step(o));
    double e[2], buf[2];
    for (int i = 0; i < 2; i++) {
        buf[i] = G1[i];
        e[i] = P0[i] - 0.1 * buf[i];
        CHECK_NEAR(at(p, i), e[i], 1e-6);
    }
    set_grad(p, G2);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < 2; i++) {
        buf[i] = 0.9 * buf[i] + 0.8 * G2[i];
        e[i] -= 0.1 * buf[i];
        CHECK_NEAR(at(p, i), e[i], 1e-6);
    }
    bx_state *sd = bx_optimizer_state_dict(o);
    const bx_tensor *mb = bx_state_get_tensor(bx_state_get(bx_state_get(bx_state_get(sd, "state"), "0"), "momentum_buffer"));
    CHECK(mb != NULL);
    if (mb)
        for (int i = 0; i < 2; i++) CHECK_NEAR(at(mb, i), buf[i], 1e-6);
    bx_state_free(sd);
    bx_optimizer_free(o);
    bx_tensor_free(p);

    /* Nesterov: p -= lr*(g + m*buf) */
    p = vec(2, P0);
    o = sgd(0.1, 0.9, 0, 0, true, false);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    set_grad(p, G1);
    CHECK_OK(bx_optimizer_step(o));
    set_grad(p, G2);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < 2; i++) {
        double b1 = G1[i], x = P0[i] - 0.1 * (G1[i] + 0.9 * b1);
        double b2 = 0.9 * b1 + G2[i];
        x -= 0.1 * (G2[i] + 0.9 * b2);
        CHECK_NEAR(at(p, i), x, 1e-6);
    }
    bx_optimizer_free(o);
    bx_tensor_free(p);
}

static void test_lazy_buffer(void) {
    /* momentum 0: state {"momentum_buffer": null}; switching momentum on later
     * starts the buffer as a copy of the gradient (torch's clone) */
    bx_tensor *p = vec(2, P0);
    bx_optimizer *o = sgd(0.1, 0, 0, 0, false, false);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    bx_state *sd = bx_optimizer_state_dict(o);
    CHECK_EQ_INT(bx_state_len(bx_state_get(sd, "state")), 0);
    bx_state_free(sd);
    set_grad(p, G1);
    CHECK_OK(bx_optimizer_step(o));
    sd = bx_optimizer_state_dict(o);
    CHECK_EQ_INT(bx_state_typeof(bx_state_get(bx_state_get(bx_state_get(sd, "state"), "0"), "momentum_buffer")),
                 BX_STATE_NULL);
    bx_state_free(sd);
    CHECK_OK(bx_optimizer_group_set(o, 0, "momentum", 0.5));
    float before[2] = {at(p, 0), at(p, 1)};
    set_grad(p, G2);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < 2; i++) CHECK_NEAR(at(p, i), before[i] - 0.1 * G2[i], 1e-6);
    sd = bx_optimizer_state_dict(o);
    const bx_tensor *mb = bx_state_get_tensor(bx_state_get(bx_state_get(bx_state_get(sd, "state"), "0"), "momentum_buffer"));
    CHECK(mb && at(mb, 0) == G2[0] && at(mb, 1) == G2[1]);
    bx_state_free(sd);
    bx_optimizer_free(o);
    bx_tensor_free(p);
}

static void test_skips_and_errors(void) {
    bx_tensor *a = vec(2, P0), *b = vec(2, P0), *c = vec(2, P0);
    bx_tensor *ps[3] = {a, b, c};
    bx_optimizer *o = sgd(0.1, 0.9, 0, 0, false, false);
    CHECK_OK(bx_optimizer_add_group(o, ps, 3, NULL));
    set_grad(a, G1);
    set_grad(c, G1);
    c->requires_grad = false; /* frozen: skipped although it has a grad */
    CHECK_OK(bx_optimizer_step(o));
    CHECK(at(a, 0) != P0[0]);
    CHECK(at(b, 0) == P0[0] && at(c, 0) == P0[0]);
    bx_state *sd = bx_optimizer_state_dict(o);
    CHECK_EQ_INT(bx_state_len(bx_state_get(sd, "state")), 1); /* only a has state */
    CHECK(bx_state_get(bx_state_get(sd, "state"), "0") != NULL);
    bx_state_free(sd);
    /* a grad of the wrong shape: an error, nothing updated */
    int64_t s3[1] = {3};
    bx_tensor_free(b->grad);
    b->grad = bx_tensor_zeros(BX_F32, 1, s3);
    float a0 = at(a, 0);
    set_grad(a, G1);
    CHECK_ERR(bx_optimizer_step(o), BX_ERR_SHAPE, "SGD step: param group 0 parameter 1: grad f32 (3) does not match parameter (2)");
    CHECK(at(a, 0) == a0);
    CHECK_EQ_INT(bx_optimizer_step_count(o), 1);
    /* zero_grad keeps the buffers */
    bx_optimizer_zero_grad(o);
    CHECK(a->grad != NULL && at(a->grad, 0) == 0.0f && at(a->grad, 1) == 0.0f);
    bx_optimizer_free(o);
    bx_tensor_free(a);
    bx_tensor_free(b);
    bx_tensor_free(c);
}

static void test_validation(void) {
    bx_clear_error();
    CHECK(bx_sgd_new(NULL) == NULL);
    CHECK(strstr(bx_errmsg(), "lr is required") != NULL);
    CHECK(sgd(0, 0, 0, 0, false, false) == NULL);
    CHECK(strstr(bx_errmsg(), "must be > 0") != NULL);
    CHECK(sgd(0.1, 0, 0, 0, true, false) == NULL);
    CHECK(strstr(bx_errmsg(), "Nesterov momentum requires a momentum and zero dampening") != NULL);
    CHECK(sgd(0.1, 0.9, 0.1, 0, true, false) == NULL);
    CHECK(strstr(bx_errmsg(), "Nesterov") != NULL);
    CHECK(sgd(0.1, -0.9, 0, 0, false, false) == NULL);
    CHECK(strstr(bx_errmsg(), "invalid momentum value") != NULL);
    CHECK(sgd(0.1, 0, 0, -1e-4, false, false) == NULL);
    CHECK(strstr(bx_errmsg(), "invalid weight_decay value") != NULL);
    bx_optimizer *o = sgd(0.1, 0.9, 0, 0, true, false);
    CHECK(o != NULL);
    CHECK(strcmp(bx_optimizer_type(o), "SGD") == 0);
    bx_optimizer_free(o);
    bx_optimizer_free(NULL);
}

static void test_large(void) {
    /* above the parallel threshold: same result as the formula */
    int n = 100003;
    int64_t s[1] = {n};
    bx_tensor *p = bx_tensor_new(BX_F32, 1, s);
    bx_param_mark(p);
    float *d = p->data, *g = bx_param_grad(p)->data;
    for (int i = 0; i < n; i++) {
        d[i] = (float)((i % 17) - 8) * 0.125f;
        g[i] = (float)((i % 13) - 6) * 0.0625f;
    }
    bx_optimizer *o = sgd(0.5, 0.9, 0, 0.25, false, false);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    CHECK_OK(bx_optimizer_step(o));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        float p0 = (float)((i % 17) - 8) * 0.125f, g0 = (float)((i % 13) - 6) * 0.0625f;
        float dd = g0 + 0.25f * p0;
        if (d[i] != p0 + (-0.5f) * dd) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    bx_optimizer_free(o);
    bx_tensor_free(p);
}

int main(void) {
    test_plain_and_decay();
    test_momentum();
    test_lazy_buffer();
    test_skips_and_errors();
    test_validation();
    test_large();
    return tu_finish("test_sgd");
}
