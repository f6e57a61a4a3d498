/* test_embedding.c - embedding: lookup, repeated indices accumulate, padding_idx
 * rows get no gradient (rule O8), out-of-range errors. */
#include "test_util.h"

typedef struct { int64_t pad; } emb_ud;
static bx_tensor *f_emb(bx_step *st, bx_tensor **in, void *ud) {
    return bx_embedding(st, in[0], in[1], ((emb_ud *)ud)->pad);
}

static void test_embedding(void) {
    bx_step *st = bx_step_new();
    bx_rng r; bx_rng_init(&r, 4);
    bx_tensor *w = tu_rand_param(&r, 2, (int64_t[]){6, 3}, -1, 1);
    bx_tensor *idx = bx_tensor_new(BX_I64, 2, (int64_t[]){2, 3});
    memcpy(idx->data, (int64_t[]){1, 4, 1, 0, 5, 1}, 6 * sizeof(int64_t));
    bx_tensor *y = bx_embedding(st, idx, w, BX_NO_PADDING_IDX);
    CHECK_EQ_INT(y->ndim, 3); CHECK_EQ_INT(y->shape[0], 2); CHECK_EQ_INT(y->shape[2], 3);
    for (int j = 0; j < 3; j++) {
        CHECK_NEAR(bx_get(y, 3 + j), bx_get(w, 12 + j), 0);
        CHECK_NEAR(bx_get(y, 12 + j), bx_get(w, 15 + j), 0);
    }
    bx_tensor *g = bx_step_tensor(st, BX_F32, 3, y->shape);
    for (int i = 0; i < 18; i++) ((float *)g->data)[i] = (float)(i + 1);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    /* row 1 is used at positions 0, 2, 5: grads (1..3) + (7..9) + (16..18) */
    CHECK_NEAR(bx_get(w->grad, 3), 1 + 7 + 16, 0);
    CHECK_NEAR(bx_get(w->grad, 5), 3 + 9 + 18, 0);
    CHECK_NEAR(bx_get(w->grad, 6), 0, 0); /* row 2 unused */
    CHECK_NEAR(bx_get(w->grad, 0), 10, 0); /* row 0 at position 3 */

    /* padding_idx = 1 (and -5, the same row): forward reads it, gradient is zero */
    int64_t pads[2] = {1, -5};
    for (int k = 0; k < 2; k++) {
        bx_step_reset(st);
        bx_param_zero_grad(w);
        y = bx_embedding(st, idx, w, pads[k]);
        CHECK_NEAR(bx_get(y, 0), bx_get(w, 3), 0);
        g = bx_step_tensor(st, BX_F32, 3, y->shape);
        bx_fill(g, 1);
        CHECK_OK(bx_backward_with_grad(st, y, g));
        CHECK_NEAR(bx_get(w->grad, 3), 0, 0);
        CHECK_NEAR(bx_get(w->grad, 12), 1, 0);
    }
    emb_ud u = {BX_NO_PADDING_IDX};
    bx_tensor *in[2] = {idx, w};
    tu_gradcheck("embedding", f_emb, in, 2, &u, 1e-2, 1e-3, 1e-3);
    /* (no finite-difference check with padding_idx: its zero gradient is by
     * definition not the derivative; checked explicitly above) */

    /* errors */
    bx_step_reset(st);
    ((int64_t *)idx->data)[4] = 6;
    CHECK(bx_is_poison(bx_embedding(st, idx, w, BX_NO_PADDING_IDX)));
    CHECK(strstr(bx_step_errmsg(st), "embedding") && strstr(bx_step_errmsg(st), "index 6") &&
          strstr(bx_step_errmsg(st), "6 rows"));
    bx_step_reset(st);
    ((int64_t *)idx->data)[4] = -1;
    CHECK(bx_is_poison(bx_embedding(st, idx, w, BX_NO_PADDING_IDX)));
    CHECK(strstr(bx_step_errmsg(st), "-1"));
    bx_step_reset(st);
    ((int64_t *)idx->data)[4] = 2;
    CHECK(bx_is_poison(bx_embedding(st, idx, w, 6)));
    CHECK(strstr(bx_step_errmsg(st), "padding_idx"));
    bx_step_reset(st);
    bx_tensor *fi = bx_tensor_zeros(BX_F32, 1, (int64_t[]){2});
    CHECK(bx_is_poison(bx_embedding(st, fi, w, BX_NO_PADDING_IDX)));
    CHECK(strstr(bx_step_errmsg(st), "embedding") && strstr(bx_step_errmsg(st), "(6,3)"));
    bx_tensor_free(fi); bx_tensor_free(w); bx_tensor_free(idx);
    bx_step_free(st);
}

int main(void) {
    test_embedding();
    return tu_finish("test_embedding");
}
