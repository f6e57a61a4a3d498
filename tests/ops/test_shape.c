/* test_shape.c - reshape, flatten, transpose, permute, concat, contiguous,
 * detach, item: views vs copies, values, gradients, other dtypes, errors. */
#include "ew_test_util.h"

static void test_reshape(void) {
    int64_t s[3] = {2, 3, 4};
    bx_tensor *x = et_tensor(3, s, NULL, true);
    bx_step *st = bx_step_new();
    int64_t t1[2] = {4, -1}, e1[2] = {4, 6};
    bx_tensor *y = bx_reshape(st, x, 2, t1);
    CHECK(y->ndim == 2 && y->shape[0] == 4 && y->shape[1] == 6);
    CHECK(y->data == x->data); /* a view */
    float ev[24];
    for (int i = 0; i < 24; i++) ev[i] = 0.1f * (float)i - 1.0f;
    et_check(y, 2, e1, ev, 0);
    int64_t t2[4] = {-1, 2, 1, 2}, e2[4] = {6, 2, 1, 2};
    et_check(bx_reshape(st, y, 4, t2), 4, e2, ev, 0);
    /* transposed input: a copy, in the view's row-major order */
    bx_tensor *xt = bx_transpose(st, x, 0, 2); /* (4,3,2) */
    int64_t t3[1] = {-1}, e3[1] = {24};
    bx_tensor *z = bx_reshape(st, xt, 1, t3);
    CHECK(z->data != x->data);
    float et[24];
    for (int i = 0; i < 24; i++) et[i] = (float)bx_get(xt, i);
    et_check(z, 1, e3, et, 0);
    /* to 0-d and back */
    bx_tensor *one = bx_reshape(st, bx_scalar(st, 2.5f), 2, (int64_t[]){1, -1});
    CHECK(one->ndim == 2 && one->shape[0] == 1 && one->shape[1] == 1);
    bx_tensor *zd = bx_reshape(st, one, 0, NULL);
    CHECK(zd->ndim == 0 && bx_item(zd) == 2.5f);
    /* flatten */
    bx_tensor *f = bx_flatten(st, x, 1, -1);
    CHECK(f->ndim == 2 && f->shape[0] == 2 && f->shape[1] == 12);
    f = bx_flatten(st, x, 0, 1);
    CHECK(f->ndim == 2 && f->shape[0] == 6 && f->shape[1] == 4);
    f = bx_flatten(st, x, -2, -2);
    CHECK(f->ndim == 3 && f->shape[1] == 3);
    f = bx_flatten(st, bx_scalar(st, 1.0f), 0, -1);
    CHECK(f->ndim == 1 && f->shape[0] == 1);
    CHECK_OK(bx_step_status(st));
    /* i64 reshape (no grad) */
    bx_tensor *iv = bx_step_tensor(st, BX_I64, 2, (int64_t[]){2, 3});
    for (int i = 0; i < 6; i++) ((int64_t *)iv->data)[i] = i * 10;
    bx_tensor *ir = bx_reshape(st, bx_transpose(st, iv, 0, 1), 1, t3);
    CHECK(ir->dtype == BX_I64 && ir->shape[0] == 6 && ((int64_t *)ir->data)[1] == 30);
    CHECK(!ir->requires_grad);
    CHECK_OK(bx_step_status(st));
    /* errors */
    int64_t bad1[2] = {5, -1}, bad2[2] = {-1, -1}, bad3[2] = {5, 5};
    et_check_fail(st, bx_reshape(st, x, 2, bad1), BX_ERR_SHAPE, "reshape", "(2,3,4)", "(5,-1)");
    bx_step_reset(st);
    et_check_fail(st, bx_reshape(st, x, 2, bad2), BX_ERR_INVALID, "reshape", "(2,3,4)", "(-1,-1)");
    bx_step_reset(st);
    et_check_fail(st, bx_reshape(st, x, 2, bad3), BX_ERR_SHAPE, "reshape", "(2,3,4)", "(5,5)");
    bx_step_reset(st);
    et_check_fail(st, bx_flatten(st, x, 2, 1), BX_ERR_SHAPE, "flatten", "(2,3,4)", NULL);
    bx_step_free(st);
    bx_tensor_free(x);
}

static void test_permute(void) {
    int64_t s[4] = {2, 3, 4, 5};
    bx_tensor *x = et_tensor(4, s, NULL, true);
    bx_step *st = bx_step_new();
    int perm[4] = {2, 0, 3, 1};
    bx_tensor *y = bx_permute(st, x, perm);
    CHECK(y->data == x->data && !bx_is_contiguous(y));
    CHECK(y->shape[0] == 4 && y->shape[1] == 2 && y->shape[2] == 5 && y->shape[3] == 3);
    /* y[a,b,c,d] = x[b,d,a,c] */
    int bad = 0;
    for (int a = 0; a < 4; a++)
        for (int b = 0; b < 2; b++)
            for (int c = 0; c < 5; c++)
                for (int d = 0; d < 3; d++) {
                    int64_t iy = ((a * 2 + b) * 5 + c) * 3 + d, ix = ((b * 3 + d) * 4 + a) * 5 + c;
                    if (bx_get(y, iy) != bx_get(x, ix)) bad++;
                }
    CHECK_EQ_INT(bad, 0);
    bx_tensor *t = bx_transpose(st, x, -1, 1); /* (2,5,4,3) */
    CHECK(t->shape[1] == 5 && t->shape[3] == 3 && bx_get(t, 1) == bx_get(x, 20));
    bx_tensor *same = bx_transpose(st, x, 2, 2);
    CHECK(bx_is_contiguous(same));
    bx_tensor *z = bx_transpose(st, bx_scalar(st, 1.0f), 0, -1);
    CHECK(z->ndim == 0);
    /* negative entries */
    int nperm[4] = {-1, 0, 1, 2};
    bx_tensor *n = bx_permute(st, x, nperm);
    CHECK(n->shape[0] == 5 && n->shape[3] == 4);
    CHECK_OK(bx_step_status(st));
    int dup[4] = {0, 1, 1, 2}, oor[4] = {0, 1, 2, 4};
    et_check_fail(st, bx_permute(st, x, dup), BX_ERR_SHAPE, "permute", "(2,3,4,5)", NULL);
    bx_step_reset(st);
    et_check_fail(st, bx_permute(st, x, oor), BX_ERR_SHAPE, "permute", "(2,3,4,5)", NULL);
    bx_step_reset(st);
    et_check_fail(st, bx_transpose(st, x, 0, 4), BX_ERR_SHAPE, "transpose", "(2,3,4,5)", NULL);
    bx_step_free(st);
    bx_tensor_free(x);
}

static void test_concat(void) {
    bx_step *st = bx_step_new();
    int64_t sa[3] = {2, 3, 4}, sb[3] = {2, 1, 4}, sc[3] = {2, 5, 4};
    bx_tensor *a = et_tensor(3, sa, NULL, true), *b = et_tensor(3, sb, NULL, true), *c = et_tensor(3, sc, NULL, true);
    bx_tensor *xs[3] = {a, b, c};
    bx_tensor *y = bx_concat(st, xs, 3, 1);
    CHECK(y->ndim == 3 && y->shape[0] == 2 && y->shape[1] == 9 && y->shape[2] == 4);
    int bad = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 9; j++)
            for (int k = 0; k < 4; k++) {
                double got = bx_get(y, (i * 9 + j) * 4 + k), want;
                if (j < 3) want = bx_get(a, (i * 3 + j) * 4 + k);
                else if (j < 4) want = bx_get(b, i * 4 + k);
                else want = bx_get(c, (i * 5 + j - 4) * 4 + k);
                if (got != want) bad++;
            }
    CHECK_EQ_INT(bad, 0);
    /* last dim, negative, with a strided input */
    int64_t s32[2] = {3, 2}, s35[2] = {3, 5}, s53[2] = {5, 3};
    bx_tensor *p = et_tensor(2, s32, NULL, false), *q = et_tensor(2, s53, NULL, false);
    bx_tensor *qt = bx_transpose(st, q, 0, 1); /* (3,5) strided */
    bx_tensor *ys[2] = {p, qt};
    bx_tensor *y2 = bx_concat(st, ys, 2, -1);
    CHECK(y2->shape[0] == 3 && y2->shape[1] == 7);
    bad = 0;
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 7; j++) {
            double want = j < 2 ? bx_get(p, i * 2 + j) : bx_get(q, (j - 2) * 3 + i);
            if (bx_get(y2, i * 7 + j) != want) bad++;
        }
    CHECK_EQ_INT(bad, 0);
    /* dim 0, one input, i64 */
    bx_tensor *one[1] = {p};
    bx_tensor *y3 = bx_concat(st, one, 1, 0);
    CHECK(bx_same_shape(y3, p) && bx_get(y3, 5) == bx_get(p, 5));
    bx_tensor *i1 = bx_step_tensor(st, BX_I64, 1, (int64_t[]){2}), *i2 = bx_step_tensor(st, BX_I64, 1, (int64_t[]){3});
    for (int i = 0; i < 2; i++) ((int64_t *)i1->data)[i] = i;
    for (int i = 0; i < 3; i++) ((int64_t *)i2->data)[i] = 10 + i;
    bx_tensor *is[2] = {i1, i2};
    bx_tensor *yi = bx_concat(st, is, 2, 0);
    CHECK(yi->dtype == BX_I64 && yi->shape[0] == 5 && ((int64_t *)yi->data)[4] == 12);
    /* an empty slice */
    bx_tensor *e = bx_step_zeros(st, BX_F32, 2, (int64_t[]){3, 0});
    bx_tensor *es[3] = {p, e, p};
    CHECK(bx_concat(st, es, 3, 1)->shape[1] == 4);
    CHECK_OK(bx_step_status(st));
    (void)s35;
    /* errors */
    bx_tensor *mm[2] = {a, p};
    et_check_fail(st, bx_concat(st, mm, 2, 0), BX_ERR_SHAPE, "concat", "(2,3,4)", "(3,2)");
    bx_step_reset(st);
    bx_tensor *mm2[2] = {a, c};
    et_check_fail(st, bx_concat(st, mm2, 2, 0), BX_ERR_SHAPE, "concat", "(2,3,4)", "(2,5,4)");
    bx_step_reset(st);
    bx_tensor *mix[2] = {p, bx_step_zeros(st, BX_I64, 2, s32)};
    et_check_fail(st, bx_concat(st, mix, 2, 0), BX_ERR_SHAPE, "concat", "i64", NULL);
    bx_step_reset(st);
    bx_tensor *sc0[1] = {bx_scalar(st, 1.0f)};
    et_check_fail(st, bx_concat(st, sc0, 1, 0), BX_ERR_SHAPE, "concat", "0-d", NULL);
    bx_step_reset(st);
    et_check_fail(st, bx_concat(st, xs, 3, 3), BX_ERR_SHAPE, "concat", "dim 3", NULL);
    bx_step_reset(st);
    et_check_fail(st, bx_concat(st, xs, 0, 0), BX_ERR_INVALID, "concat", NULL, NULL);
    bx_step_free(st);
    bx_tensor_free(a);
    bx_tensor_free(b);
    bx_tensor_free(c);
    bx_tensor_free(p);
    bx_tensor_free(q);
}

static void test_contiguous_detach_item(void) {
    bx_step *st = bx_step_new();
    int64_t s[2] = {2, 3};
    bx_tensor *x = et_tensor(2, s, NULL, true);
    CHECK(bx_contiguous(st, x) == x);
    bx_tensor *t = bx_transpose(st, x, 0, 1);
    bx_tensor *c = bx_contiguous(st, t);
    CHECK(c != t && bx_is_contiguous(c) && bx_get(c, 1) == bx_get(x, 3));
    bx_tensor *d = bx_detach(st, x);
    CHECK(d->data == x->data && !d->requires_grad && d->node == NULL);
    CHECK(bx_item(x) == ((float *)x->data)[0]);
    CHECK(isnan(bx_item(bx_step_fail(st, BX_ERR_INVALID, "test"))));
    bx_step_reset(st);
    CHECK(isnan(bx_item(NULL)));
    /* u8 strided contiguous copy */
    bx_tensor *u = bx_step_tensor(st, BX_U8, 2, s);
    for (int i = 0; i < 6; i++) ((uint8_t *)u->data)[i] = (uint8_t)i;
    bx_tensor *uc = bx_contiguous(st, bx_transpose(st, u, 0, 1));
    CHECK(uc->dtype == BX_U8 && ((uint8_t *)uc->data)[1] == 3);
    /* detach stops the gradient */
    bx_tensor *y = bx_add(st, bx_mul(st, x, x), bx_detach(st, x));
    CHECK_OK(bx_backward(st, bx_sum(st, y, NULL, 0, false)));
    for (int i = 0; i < 6; i++) CHECK_NEAR(((float *)x->grad->data)[i], 2 * ((float *)x->data)[i], 1e-7);
    bx_step_free(st);
    bx_tensor_free(x);
}

/* Big transposes / permutes (tiled copy path), forward and backward, against
 * index arithmetic; also with 2 threads. */
static void test_big_transpose(void) {
    int saved = bx_get_num_threads();
    bx_rng r;
    bx_rng_init(&r, 99);
    int64_t s[3] = {5, 40, 33};
    bx_tensor *x = tu_rand_param(&r, 3, s, -1, 1);
    for (int th = 1; th <= 2; th++) {
        bx_set_num_threads(th);
        bx_param_zero_grad(x);
        bx_step *st = bx_step_new();
        int perm[3] = {2, 0, 1};
        bx_tensor *y = bx_contiguous(st, bx_permute(st, x, perm)); /* (33,5,40) */
        bx_tensor *t = bx_contiguous(st, bx_transpose(st, x, 1, 2)); /* (5,33,40) */
        int bad = 0;
        const float *xd = x->data;
        for (int a = 0; a < 33; a++)
            for (int b = 0; b < 5; b++)
                for (int c = 0; c < 40; c++) {
                    if (((float *)y->data)[(a * 5 + b) * 40 + c] != xd[(b * 40 + c) * 33 + a]) bad++;
                    if (((float *)t->data)[(b * 33 + a) * 40 + c] != xd[(b * 40 + c) * 33 + a]) bad++;
                }
        CHECK_EQ_INT(bad, 0);
        /* gy = index pattern: gx = permuted back, summed over both paths */
        bx_tensor *gy = bx_step_tensor(st, BX_F32, 3, y->shape);
        for (int64_t i = 0; i < bx_numel(gy); i++) ((float *)gy->data)[i] = (float)i;
        bx_tensor *both = bx_add(st, y, bx_permute(st, t, (int[]){1, 0, 2}));
        CHECK_OK(bx_backward_with_grad(st, both, gy));
        bad = 0;
        for (int a = 0; a < 33; a++)
            for (int b = 0; b < 5; b++)
                for (int c = 0; c < 40; c++)
                    if (((float *)x->grad->data)[(b * 40 + c) * 33 + a] != 2.0f * (float)((a * 5 + b) * 40 + c)) bad++;
        CHECK_EQ_INT(bad, 0);
        bx_step_free(st);
    }
    bx_set_num_threads(saved);
    bx_tensor_free(x);
}

typedef struct sh_ud {
    int kind; /* 0 reshape of a transposed view, 1 permute, 2 transpose, 3 concat, 4 flatten, 5 contiguous chain */
    int dim;
} sh_ud;

static bx_tensor *gc_fn(bx_step *st, bx_tensor **in, void *p) {
    sh_ud *u = p;
    switch (u->kind) {
    case 0: return bx_reshape(st, bx_transpose(st, in[0], 0, 2), 2, (int64_t[]){-1, 6});
    case 1: return bx_permute(st, in[0], (int[]){2, 0, 1});
    case 2: return bx_transpose(st, in[0], 0, -1);
    case 3: {
        bx_tensor *xs[3] = {in[0], bx_transpose(st, in[1], 0, 1), in[2]};
        return bx_concat(st, xs, 3, u->dim);
    }
    case 4: return bx_flatten(st, in[0], 0, 1);
    default: {
        /* views of views, then an op that makes them contiguous */
        bx_tensor *v = bx_permute(st, bx_transpose(st, in[0], 0, 1), (int[]){1, 2, 0});
        return bx_mul(st, bx_reshape(st, v, 1, (int64_t[]){-1}), bx_scalar(st, 1.5f));
    }
    }
}

static void test_gradcheck(void) {
    bx_rng r;
    bx_rng_init(&r, 77);
    char name[64];
    for (int k = 0; k < 6; k++) {
        if (k == 3) continue;
        int64_t s[3] = {2, 3, 4};
        bx_tensor *in[1] = {tu_rand_param(&r, 3, s, -1, 1)};
        sh_ud u = {k, 0};
        snprintf(name, sizeof name, "shape kind %d", k);
        tu_gradcheck(name, gc_fn, in, 1, &u, 1e-2, 1e-3, 1e-3);
        bx_tensor_free(in[0]);
    }
    /* concat along each dim: a (2,3,4) + transposed b + c */
    for (int dim = 0; dim < 3; dim++) {
        int64_t sa[3] = {2, 3, 4}, sb[3] = {3, 2, 4}, sc[3] = {2, 3, 4};
        if (dim == 0) sb[1] = 1; /* b^T (1,3,4) */
        if (dim == 1) sb[0] = 2; /* b^T (2,2,4) */
        if (dim == 2) sb[2] = 5; /* b^T (2,3,5) */
        sc[dim] = 5;
        bx_tensor *in[3] = {tu_rand_param(&r, 3, sa, -1, 1), tu_rand_param(&r, 3, sb, -1, 1),
                            tu_rand_param(&r, 3, sc, -1, 1)};
        in[1]->requires_grad = dim != 1; /* one case where an input needs no gradient */
        sh_ud u = {3, dim - (dim == 2 ? 3 : 0)};
        snprintf(name, sizeof name, "concat dim %d", dim);
        tu_gradcheck(name, gc_fn, in, 3, &u, 1e-2, 1e-3, 1e-3);
        for (int i = 0; i < 3; i++) bx_tensor_free(in[i]);
    }
}

/* Gradients through views add up over two steps. */
static void test_accumulation(void) {
    int64_t s[2] = {2, 3};
    bx_tensor *x = et_tensor(2, s, NULL, true);
    bx_step *st = bx_step_new();
    for (int k = 0; k < 2; k++) {
        bx_step_reset(st);
        bx_tensor *t = bx_transpose(st, x, 0, 1); /* (3,2) */
        bx_tensor *xs[2] = {t, t};
        bx_tensor *y = bx_concat(st, xs, 2, 1);                    /* (3,4) */
        bx_tensor *w = bx_reshape(st, y, 2, (int64_t[]){2, 6});    /* view */
        CHECK_OK(bx_backward(st, bx_sum(st, bx_mul(st, w, w), NULL, 0, false)));
    }
    /* loss = 2 * sum x^2 per step -> grad 4x per step, 8x over two */
    float e[6];
    for (int i = 0; i < 6; i++) e[i] = 8.0f * ((float *)x->data)[i];
    et_check(x->grad, 2, s, e, 1e-6);
    bx_step_free(st);
    bx_tensor_free(x);
}

int main(void) {
    test_reshape();
    test_permute();
    test_concat();
    test_contiguous_detach_item();
    test_big_transpose();
    test_gradcheck();
    test_accumulation();
    return tu_finish("ops/shape");
}
