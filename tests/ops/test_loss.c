/* test_loss.c - cross entropy, nll, mse, bce with logits: values (hand-checked
 * or computed once with PyTorch 1.13, quoted), finite-difference gradients for
 * every option combination, errors. */
#include "test_util.h"

static bx_tensor *owned_f32(int nd, const int64_t *shape, const float *v) {
    bx_tensor *t = bx_tensor_new(BX_F32, nd, shape);
    memcpy(t->data, v, sizeof(float) * (size_t)bx_numel(t));
    return t;
}
static bx_tensor *owned_i64(int nd, const int64_t *shape, const int64_t *v) {
    bx_tensor *t = bx_tensor_new(BX_I64, nd, shape);
    memcpy(t->data, v, sizeof(int64_t) * (size_t)bx_numel(t));
    return t;
}

static const float X43[12] = {1.0f, 2.0f, 0.5f, 0.1f, -1.0f, 0.3f, 2.0f, 0.0f, -2.0f, 0.5f, 0.5f, 1.5f};

static void test_ce_values(void) {
    bx_step *st = bx_step_new();
    /* uniform logits: loss = log C, grad = (1/C - onehot)/N */
    bx_tensor *u = bx_tensor_zeros(BX_F32, 2, (int64_t[]){2, 4});
    bx_param_mark(u);
    bx_tensor *tu = owned_i64(1, (int64_t[]){2}, (int64_t[]){3, 0});
    bx_tensor *l = bx_cross_entropy(st, u, tu, NULL);
    CHECK_EQ_INT(l->ndim, 0);
    CHECK_NEAR(bx_item(l), log(4.0), 1e-6);
    CHECK_OK(bx_backward(st, l));
    CHECK_NEAR(bx_get(u->grad, 0), 0.125, 1e-6);
    CHECK_NEAR(bx_get(u->grad, 3), (0.25 - 1) / 2, 1e-6);
    CHECK_NEAR(bx_get(u->grad, 4), (0.25 - 1) / 2, 1e-6);
    bx_step_reset(st);

    /* PyTorch 1.13: F.cross_entropy(X43, [1,0,0,2]) = 0.5241283178329468 */
    bx_tensor *x = owned_f32(2, (int64_t[]){4, 3}, X43);
    bx_param_mark(x);
    bx_tensor *t = owned_i64(1, (int64_t[]){4}, (int64_t[]){1, 0, 0, 2});
    CHECK_NEAR(bx_item(bx_cross_entropy(st, x, t, NULL)), 0.5241283178329468, 1e-6);
    bx_step_reset(st);

    /* weights + ignore_index + smoothing 0.2 (PyTorch 1.13 values) */
    bx_tensor *w = owned_f32(1, (int64_t[]){3}, (float[]){0.5f, 2.0f, 1.5f});
    bx_tensor *ti = owned_i64(1, (int64_t[]){4}, (int64_t[]){1, -100, 0, 2});
    bx_cross_entropy_opts o = BX_CROSS_ENTROPY_OPTS_INIT;
    o.weight = w;
    o.label_smoothing = 0.2f;
    l = bx_cross_entropy(st, x, ti, &o);
    CHECK_NEAR(bx_item(l), 0.6968904733657837, 1e-6);
    bx_param_zero_grad(x);
    CHECK_OK(bx_backward(st, l));
    const double gmean[12] = {0.09957114607095718, -0.1400185525417328, 0.04044737666845322, 0, 0, 0,
                              0.03613555431365967, -0.013781597837805748, -0.022353962063789368,
                              0.0693785697221756, 0.04437856376171112, -0.11375714093446732};
    for (int i = 0; i < 12; i++) CHECK_NEAR(bx_get(x->grad, i), gmean[i], 1e-6);
    bx_step_reset(st);
    o.reduction = BX_REDUCTION_SUM;
    CHECK_NEAR(bx_item(bx_cross_entropy(st, x, ti, &o)), 2.7875618934631348, 1e-6);
    bx_step_reset(st);
    o.reduction = BX_REDUCTION_NONE;
    l = bx_cross_entropy(st, x, ti, &o);
    CHECK_EQ_INT(l->ndim, 1); CHECK_EQ_INT(l->shape[0], 4);
    const double none_v[4] = {1.0501551628112793, 0.0, 0.7619545459747314, 0.9754522442817688};
    for (int i = 0; i < 4; i++) CHECK_NEAR(bx_get(l, i), none_v[i], 1e-6);
    bx_step_reset(st);

    /* N-d: x (2,3,2,2) = arange/7, PyTorch 1.13 mean = 1.2046265602111816 */
    float xv[24];
    for (int i = 0; i < 24; i++) xv[i] = (float)i / 7.0f;
    bx_tensor *x4 = owned_f32(4, (int64_t[]){2, 3, 2, 2}, xv);
    bx_tensor *t4 = owned_i64(3, (int64_t[]){2, 2, 2}, (int64_t[]){0, 1, 2, 1, 1, 1, 0, 2});
    CHECK_NEAR(bx_item(bx_cross_entropy(st, x4, t4, NULL)), 1.2046265602111816, 1e-6);
    bx_step_reset(st);

    /* nll with weights and an ignored row: PyTorch 1.13 = 0.4568426012992859 */
    bx_tensor *lp = bx_tensor_new(BX_F32, 2, (int64_t[]){4, 3});
    for (int i = 0; i < 4; i++) {
        double m = -1e30, s = 0;
        for (int k = 0; k < 3; k++) m = fmax(m, X43[i * 3 + k]);
        for (int k = 0; k < 3; k++) s += exp(X43[i * 3 + k] - m);
        for (int k = 0; k < 3; k++) ((float *)lp->data)[i * 3 + k] = (float)(X43[i * 3 + k] - m - log(s));
    }
    bx_cross_entropy_opts on = BX_CROSS_ENTROPY_OPTS_INIT;
    on.weight = w;
    CHECK_NEAR(bx_item(bx_nll_loss(st, lp, ti, &on)), 0.4568426012992859, 1e-6);
    bx_step_reset(st);
    /* all rows ignored: mean is 0/0 = NaN, as in PyTorch */
    bx_tensor *tall = owned_i64(1, (int64_t[]){2}, (int64_t[]){-100, -100});
    CHECK(isnan(bx_item(bx_cross_entropy(st, u, tall, NULL))));
    bx_tensor_free(u); bx_tensor_free(tu); bx_tensor_free(x); bx_tensor_free(t); bx_tensor_free(w);
    bx_tensor_free(ti); bx_tensor_free(x4); bx_tensor_free(t4); bx_tensor_free(lp); bx_tensor_free(tall);
    bx_step_free(st);
}

typedef struct { bx_cross_entropy_opts o; bool nll; } ce_ud;
static bx_tensor *f_ce(bx_step *st, bx_tensor **in, void *ud) {
    ce_ud *u = ud;
    return u->nll ? bx_nll_loss(st, in[0], in[1], &u->o) : bx_cross_entropy(st, in[0], in[1], &u->o);
}

static void test_ce_grads(void) {
    bx_rng r; bx_rng_init(&r, 21);
    bx_tensor *x = tu_rand_param(&r, 2, (int64_t[]){6, 5}, -2, 2);
    bx_tensor *t = owned_i64(1, (int64_t[]){6}, (int64_t[]){4, 0, 7, 2, 7, 1});
    bx_tensor *w = owned_f32(1, (int64_t[]){5}, (float[]){0.3f, 1.0f, 2.5f, 0.7f, 1.2f});
    bx_tensor *in[2] = {x, t};
    const bx_reduction reds[3] = {BX_REDUCTION_MEAN, BX_REDUCTION_SUM, BX_REDUCTION_NONE};
    char name[128];
    for (int ri = 0; ri < 3; ri++)
        for (int wi = 0; wi < 2; wi++)
            for (int si = 0; si < 2; si++)
                for (int nl = 0; nl < 2; nl++) {
                    if (nl && si) continue;
                    ce_ud u = {BX_CROSS_ENTROPY_OPTS_INIT, nl};
                    u.o.reduction = reds[ri];
                    u.o.weight = wi ? w : NULL;
                    u.o.label_smoothing = si ? 0.15f : 0.0f;
                    u.o.ignore_index = 7;
                    snprintf(name, sizeof name, "%s red %d weight %d smooth %d", nl ? "nll" : "ce", ri, wi, si);
                    tu_gradcheck(name, f_ce, in, 2, &u, 5e-3, 5e-4, 5e-3);
                }
    /* N-d input (N,C,H,W) with weights, ignore_index and smoothing together */
    bx_tensor *x4 = tu_rand_param(&r, 4, (int64_t[]){2, 3, 2, 3}, -2, 2);
    bx_tensor *t4 = owned_i64(3, (int64_t[]){2, 2, 3}, (int64_t[]){0, 1, 2, -1, 1, 0, 2, 2, -1, 0, 1, 1});
    bx_tensor *w3 = owned_f32(1, (int64_t[]){3}, (float[]){0.5f, 2.0f, 1.0f});
    bx_tensor *in4[2] = {x4, t4};
    for (int ri = 0; ri < 3; ri++) {
        ce_ud u = {BX_CROSS_ENTROPY_OPTS_INIT, false};
        u.o.reduction = reds[ri];
        u.o.weight = w3;
        u.o.label_smoothing = 0.3f;
        u.o.ignore_index = -1;
        snprintf(name, sizeof name, "ce 4-d red %d", ri);
        tu_gradcheck(name, f_ce, in4, 2, &u, 5e-3, 5e-4, 5e-3);
        u.nll = true;
        u.o.label_smoothing = 0;
        snprintf(name, sizeof name, "nll 4-d red %d", ri);
        tu_gradcheck(name, f_ce, in4, 2, &u, 5e-3, 5e-4, 5e-3);
    }
    /* unbatched x (C) with a 0-d target */
    bx_tensor *x1 = tu_rand_param(&r, 1, (int64_t[]){4}, -2, 2);
    bx_tensor *t0 = owned_i64(0, NULL, (int64_t[]){2});
    bx_tensor *in1[2] = {x1, t0};
    ce_ud u1 = {BX_CROSS_ENTROPY_OPTS_INIT, false};
    u1.o.label_smoothing = 0.1f;
    tu_gradcheck("ce unbatched", f_ce, in1, 2, &u1, 5e-3, 5e-4, 5e-3);
    bx_tensor_free(x); bx_tensor_free(t); bx_tensor_free(w); bx_tensor_free(x4); bx_tensor_free(t4);
    bx_tensor_free(w3); bx_tensor_free(x1); bx_tensor_free(t0);
}

static void test_ce_errors(void) {
    bx_step *st = bx_step_new();
    bx_tensor *x = bx_tensor_zeros(BX_F32, 2, (int64_t[]){3, 5});
    bx_tensor *t = owned_i64(1, (int64_t[]){3}, (int64_t[]){0, 9, 1});
    CHECK(bx_is_poison(bx_cross_entropy(st, x, t, NULL)));
    CHECK_EQ_INT(bx_step_status(st), BX_ERR_INVALID);
    CHECK(strstr(bx_step_errmsg(st), "cross_entropy") && strstr(bx_step_errmsg(st), "9") &&
          strstr(bx_step_errmsg(st), "5 classes"));
    bx_step_reset(st);
    ((int64_t *)t->data)[1] = -3;
    CHECK(bx_is_poison(bx_nll_loss(st, x, t, NULL)));
    CHECK(strstr(bx_step_errmsg(st), "nll_loss") && strstr(bx_step_errmsg(st), "-3"));
    bx_step_reset(st);
    ((int64_t *)t->data)[1] = 1;
    bx_tensor *t4 = owned_i64(1, (int64_t[]){4}, (int64_t[]){0, 1, 1, 1});
    CHECK(bx_is_poison(bx_cross_entropy(st, x, t4, NULL)));
    CHECK_EQ_INT(bx_step_status(st), BX_ERR_SHAPE);
    CHECK(strstr(bx_step_errmsg(st), "cross_entropy") && strstr(bx_step_errmsg(st), "(3,5)") &&
          strstr(bx_step_errmsg(st), "(4)"));
    bx_step_reset(st);
    bx_cross_entropy_opts o = BX_CROSS_ENTROPY_OPTS_INIT;
    o.label_smoothing = 0.1f;
    CHECK(bx_is_poison(bx_nll_loss(st, x, t, &o)));
    CHECK(strstr(bx_step_errmsg(st), "nll_loss") && strstr(bx_step_errmsg(st), "label_smoothing"));
    bx_step_reset(st);
    bx_tensor *w = bx_tensor_zeros(BX_F32, 1, (int64_t[]){4});
    o.label_smoothing = 0;
    o.weight = w;
    CHECK(bx_is_poison(bx_cross_entropy(st, x, t, &o)));
    CHECK(strstr(bx_step_errmsg(st), "weight") && strstr(bx_step_errmsg(st), "(4)"));
    bx_step_reset(st);
    bx_tensor *tf = bx_tensor_zeros(BX_F32, 1, (int64_t[]){3});
    CHECK(bx_is_poison(bx_cross_entropy(st, x, tf, NULL)));
    CHECK(strstr(bx_step_errmsg(st), "i64"));
    bx_step_reset(st);
    o.weight = NULL;
    o.label_smoothing = 1.5f;
    CHECK(bx_is_poison(bx_cross_entropy(st, x, t, &o)));
    bx_tensor_free(x); bx_tensor_free(t); bx_tensor_free(t4); bx_tensor_free(w); bx_tensor_free(tf);
    bx_step_free(st);
}

typedef struct { bx_reduction red; const bx_tensor *w, *pw; } red_ud;
static bx_tensor *f_mse(bx_step *st, bx_tensor **in, void *ud) {
    return bx_mse_loss(st, in[0], in[1], ((red_ud *)ud)->red);
}
static bx_tensor *f_bce(bx_step *st, bx_tensor **in, void *ud) {
    red_ud *u = ud;
    bx_bce_opts o = {u->w, u->pw, u->red};
    return bx_bce_with_logits(st, in[0], in[1], &o);
}

static void test_mse_bce(void) {
    bx_step *st = bx_step_new();
    bx_tensor *a = owned_f32(2, (int64_t[]){2, 2}, (float[]){1, 2, 3, 4});
    bx_tensor *b = owned_f32(2, (int64_t[]){2, 2}, (float[]){0, 2, 5, 3});
    CHECK_NEAR(bx_item(bx_mse_loss(st, a, b, BX_REDUCTION_MEAN)), 6.0 / 4, 1e-7);
    CHECK_NEAR(bx_item(bx_mse_loss(st, a, b, BX_REDUCTION_SUM)), 6.0, 1e-7);
    bx_tensor *n = bx_mse_loss(st, a, b, BX_REDUCTION_NONE);
    CHECK_EQ_INT(n->ndim, 2); CHECK_NEAR(bx_get(n, 2), 4.0, 0);
    /* bce: x = 0, t = 0.5 -> log 2 */
    bx_tensor *z = bx_tensor_zeros(BX_F32, 1, (int64_t[]){3});
    bx_tensor *h = owned_f32(1, (int64_t[]){3}, (float[]){0.5f, 0.5f, 0.5f});
    CHECK_NEAR(bx_item(bx_bce_with_logits(st, z, h, NULL)), log(2.0), 1e-6);
    /* PyTorch 1.13 values */
    bx_tensor *xb = owned_f32(2, (int64_t[]){2, 2}, (float[]){0.5f, -1.0f, 2.0f, 0.1f});
    bx_tensor *tb = owned_f32(2, (int64_t[]){2, 2}, (float[]){1.0f, 0.0f, 0.3f, 0.9f});
    CHECK_NEAR(bx_item(bx_bce_with_logits(st, xb, tb, NULL)), 0.7421658039093018, 1e-6);
    bx_tensor *bw = owned_f32(1, (int64_t[]){2}, (float[]){2.0f, 0.5f});
    bx_tensor *bpw = owned_f32(1, (int64_t[]){2}, (float[]){3.0f, 0.25f});
    bx_bce_opts bo = {bw, bpw, BX_REDUCTION_SUM};
    CHECK_NEAR(bx_item(bx_bce_with_logits(st, xb, tb, &bo)), 6.316976547241211, 1e-6);
    /* large logits stay finite (log-sum-exp form) */
    bx_tensor *big = owned_f32(1, (int64_t[]){2}, (float[]){100.0f, -100.0f});
    bx_tensor *tt = owned_f32(1, (int64_t[]){2}, (float[]){0.0f, 1.0f});
    CHECK_NEAR(bx_item(bx_bce_with_logits(st, big, tt, NULL)), 100.0, 1e-6);
    bx_step_reset(st);

    bx_rng r; bx_rng_init(&r, 9);
    const bx_reduction reds[3] = {BX_REDUCTION_MEAN, BX_REDUCTION_SUM, BX_REDUCTION_NONE};
    bx_tensor *x = tu_rand_param(&r, 3, (int64_t[]){2, 3, 4}, -3, 3);
    bx_tensor *t = tu_rand_param(&r, 3, (int64_t[]){2, 3, 4}, 0.05f, 0.95f);
    bx_tensor *w = tu_rand_param(&r, 2, (int64_t[]){3, 1}, 0.5f, 2);
    bx_tensor *pw = tu_rand_param(&r, 1, (int64_t[]){4}, 0.5f, 3);
    w->requires_grad = pw->requires_grad = false;
    bx_tensor *in[2] = {x, t};
    char name[96];
    for (int ri = 0; ri < 3; ri++) {
        red_ud u = {reds[ri], NULL, NULL};
        snprintf(name, sizeof name, "mse red %d", ri);
        tu_gradcheck(name, f_mse, in, 2, &u, 5e-3, 5e-4, 5e-3);
        for (int wi = 0; wi < 4; wi++) {
            red_ud ub = {reds[ri], (wi & 1) ? w : NULL, (wi & 2) ? pw : NULL};
            snprintf(name, sizeof name, "bce red %d weights %d", ri, wi);
            tu_gradcheck(name, f_bce, in, 2, &ub, 5e-3, 5e-4, 5e-3);
        }
    }
    /* errors */
    bx_tensor *t5 = bx_tensor_zeros(BX_F32, 1, (int64_t[]){5});
    CHECK(bx_is_poison(bx_mse_loss(st, x, t5, BX_REDUCTION_MEAN)));
    CHECK(strstr(bx_step_errmsg(st), "mse_loss") && strstr(bx_step_errmsg(st), "(2,3,4)") &&
          strstr(bx_step_errmsg(st), "(5)"));
    bx_step_reset(st);
    CHECK(bx_is_poison(bx_bce_with_logits(st, x, t5, NULL)));
    CHECK(strstr(bx_step_errmsg(st), "bce_with_logits") && strstr(bx_step_errmsg(st), "(5)"));
    bx_step_reset(st);
    bx_bce_opts bad = {NULL, t5, BX_REDUCTION_MEAN};
    CHECK(bx_is_poison(bx_bce_with_logits(st, x, t, &bad)));
    CHECK(strstr(bx_step_errmsg(st), "pos_weight"));
    bx_tensor_free(a); bx_tensor_free(b); bx_tensor_free(z); bx_tensor_free(h); bx_tensor_free(xb);
    bx_tensor_free(tb); bx_tensor_free(bw); bx_tensor_free(bpw); bx_tensor_free(big); bx_tensor_free(tt);
    bx_tensor_free(x); bx_tensor_free(t); bx_tensor_free(w); bx_tensor_free(pw); bx_tensor_free(t5);
    bx_step_free(st);
}

/* Large enough for the parallel paths: checked against a double reference. */
static void test_ce_large(void) {
    bx_step *st = bx_step_new();
    bx_rng r; bx_rng_init(&r, 77);
    const int64_t N = 4096, C = 12;
    bx_tensor *x = tu_rand_param(&r, 2, (int64_t[]){N, C}, -4, 4);
    bx_tensor *t = bx_tensor_new(BX_I64, 1, &N);
    for (int64_t i = 0; i < N; i++) ((int64_t *)t->data)[i] = (int64_t)bx_rng_below(&r, (uint64_t)C);
    bx_cross_entropy_opts o = BX_CROSS_ENTROPY_OPTS_INIT;
    o.label_smoothing = 0.1f;
    bx_tensor *l = bx_cross_entropy(st, x, t, &o);
    CHECK_OK(bx_backward(st, l));
    const float *xd = x->data;
    double tot = 0, gerr = 0;
    for (int64_t i = 0; i < N; i++) {
        double m = -1e30, s = 0, sm = 0;
        for (int64_t k = 0; k < C; k++) m = fmax(m, xd[i * C + k]);
        for (int64_t k = 0; k < C; k++) s += exp(xd[i * C + k] - m);
        double lz = m + log(s);
        int64_t ti = ((int64_t *)t->data)[i];
        for (int64_t k = 0; k < C; k++) {
            sm -= xd[i * C + k] - lz;
            double pk = exp(xd[i * C + k] - lz);
            double g = (0.9 * (pk - (k == ti)) + 0.1 / C * (C * pk - 1)) / N;
            gerr = fmax(gerr, fabs(g - ((float *)x->grad->data)[i * C + k]));
        }
        tot += -0.9 * (xd[i * C + ti] - lz) + 0.1 / C * sm;
    }
    CHECK_NEAR(bx_item(l), tot / N, 1e-5);
    CHECK(gerr < 1e-8);
    bx_tensor_free(x); bx_tensor_free(t);
    bx_step_free(st);
}

int main(void) {
    test_ce_large();
    test_ce_values();
    test_ce_grads();
    test_ce_errors();
    test_mse_bce();
    return tu_finish("test_loss");
}
