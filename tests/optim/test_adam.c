/* test_adam.c - Adam and AdamW against a double-precision reference of
 * golden rules Q2/Q3 (eps after the bias-correction division, bias
 * corrections in double, L2 vs decoupled decay, amsgrad, maximize), the
 * first-step identity p -= lr*g/(|g|+eps'), and option validation. */
#include "test_util.h"

#define N 5

static const float P0[N] = {0.5f, -1.0f, 2.0f, 0.25f, -0.75f};

static bx_tensor *vec(const float *v) {
    int64_t s[1] = {N};
    bx_tensor *t = bx_tensor_new(BX_F32, 1, s);
    memcpy(t->data, v, sizeof(float) * N);
    bx_param_mark(t);
    return t;
}

static void grad_at(int k, float *g) {
    for (int i = 0; i < N; i++) g[i] = (float)(0.3 * sin(1.7 * i + 0.9 * k) + (k == 2 ? 2.0 : 0.0) * (i == 1));
}

typedef struct ref {
    double p[N], m[N], v[N], vmax[N];
    int t;
} ref;

static void ref_step(ref *r, const bx_adam_opts *o, bool decoupled, const float *g) {
    r->t++;
    double bc1 = 1 - pow(o->betas[0], r->t), bc2 = 1 - pow(o->betas[1], r->t);
    for (int i = 0; i < N; i++) {
        if (decoupled) r->p[i] *= 1 - o->lr * o->weight_decay;
        double gi = o->maximize ? -g[i] : g[i];
        if (!decoupled) gi += o->weight_decay * r->p[i];
        r->m[i] = o->betas[0] * r->m[i] + (1 - o->betas[0]) * gi;
        r->v[i] = o->betas[1] * r->v[i] + (1 - o->betas[1]) * gi * gi;
        if (r->vmax[i] < r->v[i]) r->vmax[i] = r->v[i];
        double den = sqrt(o->amsgrad ? r->vmax[i] : r->v[i]) / sqrt(bc2) + o->eps;
        r->p[i] -= o->lr / bc1 * r->m[i] / den;
    }
}

static void compare(const char *what, const bx_adam_opts *o, bool decoupled) {
    bx_tensor *p = vec(P0);
    bx_optimizer *opt = decoupled ? bx_adamw_new(o) : bx_adam_new(o);
    CHECK(opt != NULL);
    CHECK_OK(bx_optimizer_add_group(opt, &p, 1, NULL));
    ref r;
    memset(&r, 0, sizeof r);
    for (int i = 0; i < N; i++) r.p[i] = P0[i];
    for (int k = 0; k < 6; k++) {
        float g[N];
        grad_at(k, g);
        memcpy(bx_param_grad(p)->data, g, sizeof g);
        CHECK_OK(bx_optimizer_step(opt));
        ref_step(&r, o, decoupled, g);
        for (int i = 0; i < N; i++) {
            double got = ((float *)p->data)[i];
            if (fabs(got - r.p[i]) > 1e-6 + 1e-5 * fabs(r.p[i]))
                fprintf(stderr, "%s step %d [%d]: %.9g vs %.9g\n", what, k + 1, i, got, r.p[i]);
            CHECK_NEAR(got, r.p[i], 1e-5);
        }
    }
    bx_state *sd = bx_optimizer_state_dict(opt);
    const bx_state *e = bx_state_get(bx_state_get(sd, "state"), "0");
    CHECK(bx_state_get_float(bx_state_get(e, "step")) == 6.0);
    CHECK_EQ_INT(bx_state_typeof(bx_state_get(e, "step")), BX_STATE_FLOAT);
    CHECK((bx_state_get(e, "max_exp_avg_sq") != NULL) == o->amsgrad);
    const bx_tensor *m = bx_state_get_tensor(bx_state_get(e, "exp_avg"));
    for (int i = 0; m && i < N; i++) CHECK_NEAR(((float *)m->data)[i], r.m[i], 1e-5);
    bx_state_free(sd);
    bx_optimizer_free(opt);
    bx_tensor_free(p);
}

static void test_against_reference(void) {
    bx_adam_opts o = BX_ADAM_OPTS_INIT;
    compare("adam defaults", &o, false);
    o.lr = 1e-2;
    o.weight_decay = 0.05;
    compare("adam l2", &o, false);
    o.eps = 1e-3; /* exposes the eps placement */
    o.betas[0] = 0.8;
    o.betas[1] = 0.95;
    compare("adam eps betas", &o, false);
    o.amsgrad = true;
    compare("adam amsgrad", &o, false);
    o.maximize = true;
    compare("adam maximize", &o, false);
    bx_adam_opts w = BX_ADAMW_OPTS_INIT;
    compare("adamw defaults", &w, true);
    w.lr = 0.05;
    w.weight_decay = 0.3;
    w.amsgrad = true;
    compare("adamw amsgrad", &w, true);
}

static void test_first_step(void) {
    /* m/bc1 = g and sqrt(v/bc2) = |g| on step 1: p -= lr*g/(|g| + eps) */
    bx_tensor *p = vec(P0);
    bx_optimizer *o = bx_adam_new(NULL);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    float g[N] = {0.5f, -0.25f, 4.0f, -8.0f, 1e-3f};
    memcpy(bx_param_grad(p)->data, g, sizeof g);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < N; i++) CHECK_NEAR(((float *)p->data)[i], P0[i] - 1e-3 * g[i] / (fabs(g[i]) + 1e-8), 1e-6);
    bx_optimizer_free(o);
    bx_tensor_free(p);
    /* AdamW with a zero grad only decays: p *= 1 - lr*wd */
    p = vec(P0);
    bx_adam_opts w = BX_ADAMW_OPTS_INIT;
    w.lr = 0.1;
    w.weight_decay = 0.5;
    o = bx_adamw_new(&w);
    CHECK_OK(bx_optimizer_add_group(o, &p, 1, NULL));
    bx_param_zero_grad(p);
    bx_param_grad(p);
    CHECK_OK(bx_optimizer_step(o));
    for (int i = 0; i < N; i++) CHECK(((float *)p->data)[i] == P0[i] * (float)(1.0 - 0.1 * 0.5));
    CHECK(strcmp(bx_optimizer_type(o), "AdamW") == 0);
    bx_optimizer_free(o);
    bx_tensor_free(p);
}

static void test_validation(void) {
    bx_adam_opts o = BX_ADAM_OPTS_INIT;
    o.betas[0] = 1.0;
    CHECK(bx_adam_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "invalid beta parameter at index 0") != NULL);
    o = (bx_adam_opts)BX_ADAM_OPTS_INIT;
    o.betas[1] = -0.1;
    CHECK(bx_adamw_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "AdamW: invalid beta parameter at index 1") != NULL);
    o = (bx_adam_opts)BX_ADAM_OPTS_INIT;
    o.eps = -1;
    CHECK(bx_adam_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "invalid eps value") != NULL);
    o = (bx_adam_opts)BX_ADAM_OPTS_INIT;
    o.lr = -1e-3;
    CHECK(bx_adam_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "invalid lr value") != NULL);
    o.lr = 0; /* allowed, as in torch */
    bx_optimizer *z = bx_adam_new(&o);
    CHECK(z != NULL);
    bx_optimizer_free(z);
    /* defaults */
    bx_optimizer *a = bx_adam_new(NULL), *w = bx_adamw_new(NULL);
    bx_tensor *p = vec(P0), *q = vec(P0);
    CHECK_OK(bx_optimizer_add_group(a, &p, 1, NULL));
    CHECK_OK(bx_optimizer_add_group(w, &q, 1, NULL));
    double v, b[2];
    CHECK_OK(bx_optimizer_group_get(a, 0, "weight_decay", &v));
    CHECK(v == 0.0);
    CHECK_OK(bx_optimizer_group_get(w, 0, "weight_decay", &v));
    CHECK(v == 1e-2);
    CHECK_OK(bx_optimizer_get_betas(a, 0, b));
    CHECK(b[0] == 0.9 && b[1] == 0.999);
    CHECK_OK(bx_optimizer_group_get(a, 0, "eps", &v));
    CHECK(v == 1e-8);
    CHECK(bx_optimizer_get_lr(a, 0) == 1e-3);
    bx_optimizer_free(a);
    bx_optimizer_free(w);
    bx_tensor_free(p);
    bx_tensor_free(q);
}

int main(void) {
    test_against_reference();
    test_first_step();
    test_validation();
    return tu_finish("test_adam");
}
