/* test_layer_norm.c - layer norm: values (hand-checked and PyTorch 1.13),
 * gradients with and without weight/bias, several normalised dims, errors. */
#include "test_util.h"

typedef struct { int nnorm; bool w, b; double eps; } ln_ud;
static bx_tensor *f_ln(bx_step *st, bx_tensor **in, void *ud) {
    ln_ud *u = ud;
    return bx_layer_norm(st, in[0], u->nnorm, u->w ? in[1] : NULL, u->b ? in[2] : NULL, u->eps);
}

static void test_values(void) {
    bx_step *st = bx_step_new();
    bx_tensor *x = bx_tensor_new(BX_F32, 2, (int64_t[]){2, 3});
    float xv[6] = {1, 2, 4, -1, 0, 3};
    memcpy(x->data, xv, sizeof xv);
    /* row 0: mean 7/3, var = ((4/3)^2 + (1/3)^2 + (5/3)^2)/3 = 42/27 */
    bx_tensor *y = bx_layer_norm(st, x, 1, NULL, NULL, 0.0);
    double rs = 1.0 / sqrt(42.0 / 27.0);
    CHECK_NEAR(bx_get(y, 0), (1 - 7.0 / 3) * rs, 1e-6);
    CHECK_NEAR(bx_get(y, 2), (4 - 7.0 / 3) * rs, 1e-6);
    /* PyTorch 1.13: F.layer_norm(x, [3], w, b) */
    bx_tensor *w = bx_tensor_new(BX_F32, 1, (int64_t[]){3}), *b = bx_tensor_new(BX_F32, 1, (int64_t[]){3});
    memcpy(w->data, (float[]){0.5f, 1.0f, 2.0f}, 12);
    memcpy(b->data, (float[]){0.1f, 0.2f, 0.3f}, 12);
    y = bx_layer_norm(st, x, 1, w, b, 1e-5);
    const double ref[6] = {-0.4345206916332245, -0.06726031005382538, 2.9726035594940186,
                           -0.39028945565223694, -0.19223155081272125, 3.045621156692505};
    for (int i = 0; i < 6; i++) CHECK_NEAR(bx_get(y, i), ref[i], 1e-5);
    /* normalised over both dims: F.layer_norm(x, [2,3]) */
    y = bx_layer_norm(st, x, 2, NULL, NULL, 1e-5);
    const double ref2[6] = {-0.29276949167251587, 0.29276955127716064, 1.4638476371765137,
                            -1.4638476371765137, -0.8783085346221924, 0.8783085942268372};
    for (int i = 0; i < 6; i++) CHECK_NEAR(bx_get(y, i), ref2[i], 1e-5);
    bx_tensor_free(x); bx_tensor_free(w); bx_tensor_free(b);
    bx_step_free(st);
}

static void test_grads(void) {
    bx_rng r; bx_rng_init(&r, 31);
    bx_tensor *x = tu_rand_param(&r, 3, (int64_t[]){3, 4, 5}, -2, 2);
    bx_tensor *w = tu_rand_param(&r, 1, (int64_t[]){5}, 0.5f, 1.5f);
    bx_tensor *b = tu_rand_param(&r, 1, (int64_t[]){5}, -1, 1);
    bx_tensor *in[3] = {x, w, b};
    char name[64];
    for (int k = 0; k < 4; k++) {
        ln_ud u = {1, (k & 1) != 0, (k & 2) != 0, 1e-5};
        w->requires_grad = u.w;
        b->requires_grad = u.b;
        snprintf(name, sizeof name, "layer_norm w %d b %d", u.w, u.b);
        tu_gradcheck(name, f_ln, in, 3, &u, 5e-3, 1e-3, 5e-3);
    }
    bx_tensor *w2 = tu_rand_param(&r, 2, (int64_t[]){4, 5}, 0.5f, 1.5f);
    bx_tensor *b2 = tu_rand_param(&r, 2, (int64_t[]){4, 5}, -1, 1);
    bx_tensor *in2[3] = {x, w2, b2};
    ln_ud u2 = {2, true, true, 1e-3};
    tu_gradcheck("layer_norm 2 dims", f_ln, in2, 3, &u2, 5e-3, 1e-3, 5e-3);
    w->requires_grad = b->requires_grad = true;
    /* x not requiring grad: only w and b get gradients */
    x->requires_grad = false;
    bx_tensor_free(x->grad);
    x->grad = NULL;
    ln_ud u3 = {1, true, true, 1e-5};
    tu_gradcheck("layer_norm params only", f_ln, in, 3, &u3, 5e-3, 1e-3, 5e-3);
    bx_tensor_free(x); bx_tensor_free(w); bx_tensor_free(b); bx_tensor_free(w2); bx_tensor_free(b2);
}

static void test_errors(void) {
    bx_step *st = bx_step_new();
    bx_tensor *x = bx_tensor_zeros(BX_F32, 2, (int64_t[]){4, 6});
    bx_tensor *w = bx_tensor_zeros(BX_F32, 1, (int64_t[]){5});
    CHECK(bx_is_poison(bx_layer_norm(st, x, 1, w, NULL, 1e-5)));
    CHECK_EQ_INT(bx_step_status(st), BX_ERR_SHAPE);
    CHECK(strstr(bx_step_errmsg(st), "layer_norm") && strstr(bx_step_errmsg(st), "(4,6)") &&
          strstr(bx_step_errmsg(st), "(5)"));
    bx_step_reset(st);
    CHECK(bx_is_poison(bx_layer_norm(st, x, 3, NULL, NULL, 1e-5)));
    CHECK(strstr(bx_step_errmsg(st), "layer_norm"));
    bx_tensor_free(x); bx_tensor_free(w);
    bx_step_free(st);
}

int main(void) {
    test_values();
    test_grads();
    test_errors();
    return tu_finish("test_layer_norm");
}
