/* test_rmsprop.c - RMSprop against a double-precision reference of golden
 * rule Q4 (plain, weight decay, centered, momentum, maximize), the
 * hand-checked first step, state keys and option validation. */
#include "test_util.h"

#define N 4

static const float P0[N] = {0.5f, -1.0f, 2.0f, 0.25f};

static bx_tensor *vec(const float *v) {
    int64_t s[1] = {N};
    bx_tensor *t = bx_tensor_new(BX_F32, 1, s);
    memcpy(t->data, v, sizeof(float) * N);
    bx_param_mark(t);
    return t;
}

static void grad_at(int k, float *g) {
    for (int i = 0; i < N; i++) g[i] = (float)(0.4 * cos(1.3 * i + 0.7 * k) + 0.05 * k);
}

static void compare(const char *what, const bx_rmsprop_opts *o) {
    bx_tensor *p = vec(P0);
    bx_optimizer *opt = bx_rmsprop_new(o);
    CHECK(opt != NULL);
    CHECK_OK(bx_optimizer_add_group(opt, &p, 1, NULL));
    double rp[N], sq[N] = {0}, ga[N] = {0}, buf[N] = {0};
    for (int i = 0; i < N; i++) rp[i] = P0[i];
    for (int k = 0; k < 6; k++) {
        float g[N];
        grad_at(k, g);
        memcpy(bx_param_grad(p)->data, g, sizeof g);
        CHECK_OK(bx_optimizer_step(opt));
        for (int i = 0; i < N; i++) {
            double gi = (o->maximize ? -g[i] : g[i]) + o->weight_decay * rp[i];
            sq[i] = o->alpha * sq[i] + (1 - o->alpha) * gi * gi;
            double avg;
            if (o->centered) {
                ga[i] = o->alpha * ga[i] + (1 - o->alpha) * gi;
                avg = sqrt(sq[i] - ga[i] * ga[i]) + o->eps;
            } else {
                avg = sqrt(sq[i]) + o->eps;
            }
            if (o->momentum > 0) {
                buf[i] = o->momentum * buf[i] + gi / avg;
                rp[i] -= o->lr * buf[i];
            } else {
                rp[i] -= o->lr * gi / avg;
            }
            double got = ((float *)p->data)[i];
            if (fabs(got - rp[i]) > 1e-5 * (1 + fabs(rp[i])))
                fprintf(stderr, "%s step %d [%d]: %.9g vs %.9g\n", what, k + 1, i, got, rp[i]);
            CHECK_NEAR(got, rp[i], 1e-5);
        }
    }
    bx_state *sd = bx_optimizer_state_dict(opt);
    const bx_state *e = bx_state_get(bx_state_get(sd, "state"), "0");
    CHECK_EQ_INT(bx_state_typeof(bx_state_get(e, "step")), BX_STATE_INT);
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(e, "step")), 6);
    CHECK(bx_state_get(e, "square_avg") != NULL);
    CHECK((bx_state_get(e, "momentum_buffer") != NULL) == (o->momentum > 0));
    CHECK((bx_state_get(e, "grad_avg") != NULL) == o->centered);
    bx_state_free(sd);
    bx_optimizer_free(opt);
    bx_tensor_free(p);
}

static void test_against_reference(void) {
    bx_rmsprop_opts o = BX_RMSPROP_OPTS_INIT;
    compare("defaults", &o);
    o.weight_decay = 0.1;
    o.alpha = 0.9;
    compare("wd alpha", &o);
    o.centered = true;
    compare("centered", &o);
    o.momentum = 0.8;
    compare("centered momentum", &o);
    o.centered = false;
    o.maximize = true;
    o.eps = 1e-3;
    compare("momentum maximize eps", &o);
}

static void test_first_step(void) {
    /* sq = (1-alpha) g^2, avg = sqrt(sq) + eps: p -= lr*g/avg */
    bx_tensor *p = vec(P0);
    bx_optimizer *o = bx_rmsprop_new(NULL);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    float g[N] = {0.5f, -0.25f, 4.0f, -8.0f};
    memcpy(bx_param_grad(p)->data, g, sizeof g);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < N; i++)
        CHECK_NEAR(((float *)p->data)[i], P0[i] - 1e-2 * g[i] / (sqrt(0.01) * fabs(g[i]) + 1e-8), 1e-6);
    CHECK(strcmp(bx_optimizer_type(o), "RMSprop") == 0);
    bx_optimizer_free(o);
    bx_tensor_free(p);
}

static void test_validation(void) {
    bx_rmsprop_opts o = BX_RMSPROP_OPTS_INIT;
    o.alpha = -0.5;
    CHECK(bx_rmsprop_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "RMSprop: invalid alpha value") != NULL);
    o = (bx_rmsprop_opts)BX_RMSPROP_OPTS_INIT;
    o.momentum = -1;
    CHECK(bx_rmsprop_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "invalid momentum value") != NULL);
    o = (bx_rmsprop_opts)BX_RMSPROP_OPTS_INIT;
    o.eps = NAN;
    CHECK(bx_rmsprop_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "invalid eps value") != NULL);
}

int main(void) {
    test_against_reference();
    test_first_step();
    test_validation();
    return tu_finish("test_rmsprop");
}
