/* test_dropout.c - dropout: identity cases, ~p zeros, 1/(1-p) scaling,
 * determinism from the step's seed (and the same stream as bx_rng_uniform),
 * gradient through the mask, errors. */
#include "test_util.h"

static void test_dropout(void) {
    bx_step *st = bx_step_new();
    const int64_t n = 100000;
    bx_tensor *x = bx_tensor_new(BX_F32, 1, &n);
    for (int64_t i = 0; i < n; i++) ((float *)x->data)[i] = 1.0f + (float)(i % 7);
    bx_param_mark(x);

    /* identity: eval, or p == 0 */
    CHECK(bx_dropout(st, x, 0.3f, false) == x);
    CHECK(bx_dropout(st, x, 0.0f, true) == x);

    /* ~p zeros, survivors scaled by 1/(1-p), stream = bx_rng_uniform in order */
    const float p = 0.3f;
    bx_rng_init(bx_step_rng(st), 42);
    bx_rng_u32(bx_step_rng(st)); /* start mid-block: offset 1 */
    bx_tensor *y = bx_dropout(st, x, p, true);
    bx_rng ref;
    bx_rng_init(&ref, 42);
    bx_rng_u32(&ref);
    int64_t zeros = 0, mism = 0;
    const float s = (float)(1.0 / (1.0 - 0.3f));
    for (int64_t i = 0; i < n; i++) {
        float v = ((float *)y->data)[i], xv = ((float *)x->data)[i];
        bool keep = bx_rng_uniform(&ref) < 1.0f - p;
        if (v == 0.0f) zeros++;
        if (keep ? v != xv * s : v != 0.0f) mism++;
    }
    CHECK_EQ_INT(mism, 0);
    CHECK(fabs((double)zeros / (double)n - p) < 0.01);
    CHECK_EQ_INT(bx_step_rng(st)->offset, ref.offset);
    /* backward: gradient is the mask times the scale */
    bx_tensor *g = bx_step_tensor(st, BX_F32, 1, &n);
    bx_fill(g, 1.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    int64_t gm = 0;
    for (int64_t i = 0; i < n; i++) {
        float yv = ((float *)y->data)[i], gv = ((float *)x->grad->data)[i];
        if (yv == 0.0f ? gv != 0.0f : gv != s) gm++;
    }
    CHECK_EQ_INT(gm, 0);

    /* deterministic: the same seed gives the same mask; the next call a different one */
    bx_tensor *keep1 = bx_tensor_clone(y);
    bx_step_reset(st);
    bx_rng_init(bx_step_rng(st), 42);
    bx_rng_u32(bx_step_rng(st));
    y = bx_dropout(st, x, p, true);
    CHECK(memcmp(y->data, keep1->data, sizeof(float) * (size_t)n) == 0);
    bx_tensor *y2 = bx_dropout(st, x, p, true);
    CHECK(memcmp(y2->data, keep1->data, sizeof(float) * (size_t)n) != 0);

    /* p == 1: all zeros, zero gradient */
    bx_step_reset(st);
    bx_param_zero_grad(x);
    y = bx_dropout(st, x, 1.0f, true);
    int64_t nz = 0;
    for (int64_t i = 0; i < n; i++) nz += ((float *)y->data)[i] != 0.0f;
    CHECK_EQ_INT(nz, 0);
    g = bx_step_tensor(st, BX_F32, 1, &n);
    bx_fill(g, 1.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    CHECK_NEAR(bx_get(x->grad, 5), 0, 0);

    /* errors */
    bx_step_reset(st);
    CHECK(bx_is_poison(bx_dropout(st, x, 1.5f, true)));
    CHECK(strstr(bx_step_errmsg(st), "dropout") && strstr(bx_step_errmsg(st), "1.5"));
    bx_step_reset(st);
    CHECK(bx_is_poison(bx_dropout(st, x, -0.1f, true)));
    bx_step_reset(st);
    CHECK(bx_is_poison(bx_dropout(st, x, NAN, true)));
    bx_tensor_free(keep1); bx_tensor_free(x);
    bx_step_free(st);
}

int main(void) {
    test_dropout();
    return tu_finish("test_dropout");
}
