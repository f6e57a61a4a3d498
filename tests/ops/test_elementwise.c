/* test_elementwise.c - add/sub/mul/div broadcasting, scalar math ops,
 * strided inputs, gradients (finite differences), errors, accumulation. */
#include "ew_test_util.h"

#include "ops/ops_int.h"

typedef enum { ADD, SUB, MUL, DIV } binop;

static bx_tensor *apply_bin(bx_step *st, binop op, bx_tensor *a, bx_tensor *b) {
    switch (op) {
    case ADD: return bx_add(st, a, b);
    case SUB: return bx_sub(st, a, b);
    case MUL: return bx_mul(st, a, b);
    case DIV: return bx_div(st, a, b);
    }
    return NULL;
}

static double ref_bin(binop op, double a, double b) {
    switch (op) {
    case ADD: return (float)a + (float)b;
    case SUB: return (float)a - (float)b;
    case MUL: return (float)a * (float)b;
    case DIV: return (float)a / (float)b;
    }
    return 0;
}

/* Forward of op on a, b against a reference loop over the broadcast shape. */
static void check_bin_forward(binop op, bx_tensor *a, bx_tensor *b, int nd, const int64_t *shape) {
    bx_step *st = bx_step_new();
    bx_tensor *y = apply_bin(st, op, a, b);
    CHECK_OK(bx_step_status(st));
    if (bx_is_poison(y)) {
        bx_step_free(st);
        return;
    }
    int64_t n = bx__shape_numel(nd, shape);
    float *e = malloc(sizeof(float) * (size_t)(n ? n : 1));
    for (int64_t i = 0; i < n; i++) e[i] = (float)ref_bin(op, et_bget(a, nd, shape, i), et_bget(b, nd, shape, i));
    et_check(y, nd, shape, e, 0.0);
    CHECK(bx_is_contiguous(y));
    free(e);
    bx_step_free(st);
}

static void test_hand_values(void) {
    int64_t s23[2] = {2, 3}, s3[1] = {3};
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {10, 20, 40};
    bx_tensor *a = et_tensor(2, s23, av, false), *b = et_tensor(1, s3, bv, false);
    bx_step *st = bx_step_new();
    float add[6] = {11, 22, 43, 14, 25, 46}, sub[6] = {-9, -18, -37, -6, -15, -34};
    float mul[6] = {10, 40, 120, 40, 100, 240}, dv[6] = {0.1f, 0.1f, 0.075f, 0.4f, 0.25f, 0.15f};
    et_check(bx_add(st, a, b), 2, s23, add, 1e-7);
    et_check(bx_sub(st, a, b), 2, s23, sub, 1e-7);
    et_check(bx_mul(st, a, b), 2, s23, mul, 1e-7);
    et_check(bx_div(st, a, b), 2, s23, dv, 1e-7);
    /* b - a broadcasts the other way round */
    float rsub[6] = {9, 18, 37, 6, 15, 34};
    et_check(bx_sub(st, b, a), 2, s23, rsub, 1e-7);
    /* 0-d scalars on either side, and 0-d with 0-d */
    bx_tensor *s = bx_scalar(st, 2.0f);
    float twice[6] = {2, 4, 6, 8, 10, 12}, half[6] = {2, 1, 2.0f / 3, 0.5f, 0.4f, 1.0f / 3};
    et_check(bx_mul(st, a, s), 2, s23, twice, 1e-7);
    et_check(bx_div(st, s, a), 2, s23, half, 1e-7);
    bx_tensor *z = bx_add(st, s, bx_scalar(st, 3.0f));
    CHECK_EQ_INT(z->ndim, 0);
    CHECK_NEAR(bx_item(z), 5.0, 0);
    CHECK_OK(bx_step_status(st));
    /* unary ops */
    float ex[6], lg[6], sq[6], sr[6], ng[6], af[6];
    for (int i = 0; i < 6; i++) {
        ex[i] = expf(av[i]);
        lg[i] = logf(av[i]);
        sq[i] = av[i] * av[i];
        sr[i] = sqrtf(av[i]);
        ng[i] = -av[i];
        af[i] = av[i] * 3.0f - 0.5f;
    }
    et_check(bx_exp(st, a), 2, s23, ex, 1e-6);
    et_check(bx_log(st, a), 2, s23, lg, 1e-6);
    et_check(bx_square(st, a), 2, s23, sq, 0);
    et_check(bx_sqrt(st, a), 2, s23, sr, 1e-7);
    et_check(bx_neg(st, a), 2, s23, ng, 0);
    et_check(bx_affine_scalar(st, a, 3.0f, -0.5f), 2, s23, af, 0);
    CHECK_OK(bx_step_status(st));
    bx_step_free(st);
    bx_tensor_free(a);
    bx_tensor_free(b);
}

static void test_broadcast_shapes(void) {
    bx_rng r;
    bx_rng_init(&r, 7);
    struct {
        int na, nb;
        int64_t sa[4], sb[4];
        int ny;
        int64_t sy[4];
    } cases[] = {
        {3, 2, {3, 1, 5}, {4, 1}, 3, {3, 4, 5}},
        {3, 3, {3, 1, 5}, {1, 4, 5}, 3, {3, 4, 5}},
        {3, 1, {2, 3, 4}, {4}, 3, {2, 3, 4}},
        {2, 2, {4, 1}, {1, 6}, 2, {4, 6}},
        {2, 0, {3, 4}, {0}, 2, {3, 4}},
        {0, 3, {0}, {2, 1, 3}, 3, {2, 1, 3}},
        {1, 4, {5}, {2, 3, 1, 5}, 4, {2, 3, 1, 5}},
        {2, 2, {3, 1}, {3, 1}, 2, {3, 1}},
        {2, 1, {1, 40000}, {1}, 2, {1, 40000}}, /* one long row: chunked */
        {2, 2, {0, 3}, {1, 3}, 2, {0, 3}},      /* empty */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bx_tensor *a = tu_rand_param(&r, cases[c].na, cases[c].sa, -2, 2);
        bx_tensor *b = tu_rand_param(&r, cases[c].nb, cases[c].sb, 0.5f, 2);
        for (int op = 0; op < 4; op++) check_bin_forward((binop)op, a, b, cases[c].ny, cases[c].sy);
        bx_tensor_free(a);
        bx_tensor_free(b);
    }
    /* bx__broadcast_shape directly */
    int64_t s1[3] = {3, 1, 5}, s2[2] = {4, 1}, out[BX_MAX_DIMS];
    bx_tensor *a = et_tensor(3, s1, NULL, false), *b = et_tensor(2, s2, NULL, false);
    CHECK_EQ_INT(bx__broadcast_shape(a, b, out), 3);
    CHECK(out[0] == 3 && out[1] == 4 && out[2] == 5);
    int64_t s3[2] = {4, 2};
    bx_tensor *c = et_tensor(2, s3, NULL, false);
    CHECK_EQ_INT(bx__broadcast_shape(a, c, out), -1);
    bx_tensor_free(a);
    bx_tensor_free(b);
    bx_tensor_free(c);
}

/* Strided inputs: a transposed view and a permuted one against their
 * contiguous copies. */
static void test_strided(void) {
    bx_rng r;
    bx_rng_init(&r, 11);
    int64_t sa[3] = {4, 3, 5}, sb[2] = {3, 1};
    bx_tensor *a = tu_rand_param(&r, 3, sa, -1, 1);
    bx_tensor *b = tu_rand_param(&r, 2, sb, 0.5f, 1.5f);
    bx_step *st = bx_step_new();
    bx_tensor *at = bx_transpose(st, a, 0, 2); /* (5,3,4) */
    CHECK(!bx_is_contiguous(at));
    bx_tensor *ac = bx_contiguous(st, at);
    CHECK(bx_is_contiguous(ac));
    for (int op = 0; op < 4; op++) {
        bx_tensor *y1 = apply_bin(st, (binop)op, at, b);
        bx_tensor *y2 = apply_bin(st, (binop)op, ac, b);
        bx_tensor *y3 = apply_bin(st, (binop)op, b, at);
        CHECK(bx_same_shape(y1, y2));
        int bad = 0;
        for (int64_t i = 0; i < bx_numel(y1); i++) {
            if (bx_get(y1, i) != bx_get(y2, i)) bad++;
            if (bx_get(y3, i) != ref_bin((binop)op, et_bget(b, 3, y1->shape, i), bx_get(ac, i))) bad++;
        }
        CHECK_EQ_INT(bad, 0);
    }
    bx_tensor *e1 = bx_exp(st, at), *e2 = bx_exp(st, ac);
    int bad = 0;
    for (int64_t i = 0; i < bx_numel(e1); i++) /* vector vs scalar expf: last ulp */
        if (fabs(bx_get(e1, i) - bx_get(e2, i)) > 1e-6 * fabs(bx_get(e2, i))) bad++;
    CHECK_EQ_INT(bad, 0);
    CHECK_OK(bx_step_status(st));
    bx_step_free(st);
    bx_tensor_free(a);
    bx_tensor_free(b);
}

/* ---- gradient checks -------------------------------------------------------------- */

typedef struct gc_ud {
    binop op;
    int transpose_a; /* 1: transpose a's first two dims before the op */
    int unary;       /* 0: binary; 1 exp, 2 log, 3 sqrt, 4 square, 5 neg, 6 affine */
} gc_ud;

static bx_tensor *gc_fn(bx_step *st, bx_tensor **in, void *p) {
    gc_ud *u = p;
    bx_tensor *a = in[0];
    if (u->transpose_a) a = bx_transpose(st, a, 0, 1);
    switch (u->unary) {
    case 1: return bx_exp(st, a);
    case 2: return bx_log(st, a);
    case 3: return bx_sqrt(st, a);
    case 4: return bx_square(st, a);
    case 5: return bx_neg(st, a);
    case 6: return bx_affine_scalar(st, a, -1.5f, 0.25f);
    default: return apply_bin(st, u->op, a, in[1]);
    }
}

static void test_gradcheck(void) {
    bx_rng r;
    bx_rng_init(&r, 3);
    struct {
        int na, nb;
        int64_t sa[3], sb[3];
        int transpose_a;
    } cases[] = {
        {2, 2, {3, 4}, {3, 4}, 0},   {3, 2, {3, 1, 5}, {4, 1}, 0}, {3, 3, {3, 1, 5}, {1, 4, 5}, 0},
        {3, 1, {2, 3, 4}, {4}, 0},   {2, 0, {2, 3}, {0}, 0},       {0, 2, {0}, {2, 3}, 0},
        {2, 2, {4, 3}, {1, 4}, 1},   {3, 2, {4, 2, 3}, {4, 1}, 1},
    };
    char name[64];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int op = 0; op < 4; op++) {
            bx_tensor *in[2];
            in[0] = tu_rand_param(&r, cases[c].na, cases[c].sa, -2, 2);
            in[1] = tu_rand_param(&r, cases[c].nb, cases[c].sb, 0.5f, 2);
            /* divisors away from 0 with random sign */
            float *bd = in[1]->data;
            for (int64_t i = 0; i < bx_numel(in[1]); i++)
                if (bx_rng_uniform(&r) < 0.5f) bd[i] = -bd[i];
            gc_ud u = {(binop)op, cases[c].transpose_a, 0};
            snprintf(name, sizeof name, "bin op %d case %zu", op, c);
            tu_gradcheck(name, gc_fn, in, 2, &u, 1e-3, 2e-3, 1e-2);
            /* only b requires grad */
            in[0]->requires_grad = false;
            tu_gradcheck(name, gc_fn, in, 2, &u, 1e-3, 2e-3, 1e-2);
            bx_tensor_free(in[0]);
            bx_tensor_free(in[1]);
        }
    }
    for (int un = 1; un <= 6; un++) {
        for (int tr = 0; tr < 2; tr++) {
            int64_t s[2] = {3, 4};
            bx_tensor *in[1] = {tu_rand_param(&r, 2, s, 0.5f, 2.0f)};
            gc_ud u = {ADD, tr, un};
            snprintf(name, sizeof name, "unary %d transpose %d", un, tr);
            tu_gradcheck(name, gc_fn, in, 1, &u, 1e-3, 2e-3, 1e-2);
            bx_tensor_free(in[0]);
        }
    }
}

/* Same input on both sides: y = a*a, y = a + a. */
static void test_aliased_inputs(void) {
    int64_t s[1] = {3};
    float v[3] = {1, -2, 3}, g[3] = {1, 1, 1};
    bx_tensor *a = et_tensor(1, s, v, true);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_mul(st, a, a);
    bx_tensor *gy = bx_step_tensor(st, BX_F32, 1, s);
    memcpy(gy->data, g, sizeof g);
    CHECK_OK(bx_backward_with_grad(st, y, gy));
    float e[3] = {2, -4, 6};
    et_check(a->grad, 1, s, e, 0);
    bx_step_free(st);
    bx_tensor_free(a);
}

/* Two steps, two backward calls: the parameter's gradient adds up. */
static void test_accumulation(void) {
    int64_t sa[2] = {2, 3}, sb[1] = {3};
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[3] = {0.5f, -1, 2};
    bx_tensor *a = et_tensor(2, sa, av, true), *b = et_tensor(1, sb, bv, true);
    bx_step *st = bx_step_new();
    for (int step = 0; step < 2; step++) {
        bx_step_reset(st);
        bx_tensor *y = bx_mul(st, a, b);
        bx_tensor *loss = bx_sum(st, bx_add(st, y, b), NULL, 0, false);
        CHECK_OK(bx_backward(st, loss));
    }
    /* d/da = b (per row), d/db = sum over rows of a + 2 (the add broadcasts over 2 rows) */
    float ga[6] = {1, -2, 4, 1, -2, 4}, gb[3] = {2 * (5 + 2), 2 * (7 + 2), 2 * (9 + 2)};
    et_check(a->grad, 2, sa, ga, 1e-6);
    et_check(b->grad, 1, sb, gb, 1e-6);
    bx_step_free(st);
    bx_tensor_free(a);
    bx_tensor_free(b);
}

static void test_errors(void) {
    int64_t s32[2] = {3, 2}, s42[2] = {4, 2};
    bx_tensor *a = et_tensor(2, s32, NULL, true), *b = et_tensor(2, s42, NULL, true);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_add(st, a, b);
    et_check_fail(st, y, BX_ERR_SHAPE, "add", "(3,2)", "(4,2)");
    /* poison propagates without replacing the first error */
    bx_tensor *z = bx_mul(st, y, a);
    CHECK(bx_is_poison(z));
    CHECK(strstr(bx_step_errmsg(st), "add") != NULL);
    CHECK(bx_is_poison(bx_exp(st, z)));
    CHECK_ERR(bx_backward(st, z), BX_ERR_SHAPE, "add");
    bx_step_reset(st);
    et_check_fail(st, bx_div(st, b, a), BX_ERR_SHAPE, "div", "(4,2)", "(3,2)");
    bx_step_reset(st);
    bx_tensor *iv = bx_step_zeros(st, BX_I64, 2, s32);
    et_check_fail(st, bx_sub(st, a, iv), BX_ERR_SHAPE, "sub", "f32", "i64");
    bx_step_reset(st);
    iv = bx_step_zeros(st, BX_I64, 2, s32);
    et_check_fail(st, bx_log(st, iv), BX_ERR_SHAPE, "log", "f32", "i64");
    bx_step_reset(st);
    et_check_fail(st, bx_add(st, a, NULL), BX_ERR_INVALID, "add", NULL, NULL);
    bx_step_free(st);
    bx_tensor_free(a);
    bx_tensor_free(b);
}

/* Parallel path (2 threads) gives the same numbers as the serial one. */
static void test_parallel(void) {
    int saved = bx_get_num_threads();
    bx_rng r;
    bx_rng_init(&r, 5);
    int64_t sa[2] = {300, 257}, sb[1] = {257};
    bx_tensor *a = tu_rand_param(&r, 2, sa, -1, 1), *b = tu_rand_param(&r, 1, sb, 0.5f, 1);
    float *res[2];
    for (int t = 0; t < 2; t++) {
        bx_set_num_threads(t + 1);
        bx_param_zero_grad(a);
        bx_param_zero_grad(b);
        bx_step *st = bx_step_new();
        bx_tensor *y = bx_div(st, bx_transpose(st, bx_mul(st, a, b), 0, 1), bx_scalar(st, 3.0f));
        bx_tensor *loss = bx_sum(st, bx_square(st, y), NULL, 0, false);
        CHECK_OK(bx_backward(st, loss));
        res[t] = malloc(sizeof(float) * (300 * 257 + 257 + 1));
        memcpy(res[t], a->grad->data, sizeof(float) * 300 * 257);
        memcpy(res[t] + 300 * 257, b->grad->data, sizeof(float) * 257);
        res[t][300 * 257 + 257] = bx_item(loss);
        bx_step_free(st);
    }
    int bad = 0;
    for (int i = 0; i < 300 * 257 + 258; i++)
        if (fabsf(res[0][i] - res[1][i]) > 1e-5f * (1 + fabsf(res[0][i]))) bad++;
    CHECK_EQ_INT(bad, 0);
    free(res[0]);
    free(res[1]);
    /* short rows: (20000,5) * (20000,1) + (5), forward and backward, against
     * a reference loop, on 1 and 2 threads */
    int64_t sx[2] = {20000, 5}, sc[2] = {20000, 1}, sr[1] = {5};
    bx_tensor *x = tu_rand_param(&r, 2, sx, -1, 1), *c = tu_rand_param(&r, 2, sc, -1, 1);
    bx_tensor *w = tu_rand_param(&r, 1, sr, -1, 1);
    for (int t = 0; t < 2; t++) {
        bx_set_num_threads(t + 1);
        bx_param_zero_grad(x);
        bx_param_zero_grad(c);
        bx_param_zero_grad(w);
        bx_step *st = bx_step_new();
        bx_tensor *y = bx_add(st, bx_mul(st, x, c), w);
        CHECK_OK(bx_backward(st, bx_sum(st, y, NULL, 0, false)));
        const float *xd = x->data, *cd = c->data, *wd = w->data, *yd = y->data;
        bad = 0;
        double gw = 0;
        for (int i = 0; i < 20000; i++) {
            double gc = 0;
            for (int j = 0; j < 5; j++) {
                if (yd[i * 5 + j] != xd[i * 5 + j] * cd[i] + wd[j]) bad++;
                if (((float *)x->grad->data)[i * 5 + j] != cd[i]) bad++;
                gc += xd[i * 5 + j];
            }
            if (fabs(((float *)c->grad->data)[i] - gc) > 1e-5) bad++;
        }
        gw = 20000;
        for (int j = 0; j < 5; j++)
            if (fabs(((float *)w->grad->data)[j] - gw) > 1e-3) bad++;
        CHECK_EQ_INT(bad, 0);
        bx_step_free(st);
    }
    bx_tensor_free(x);
    bx_tensor_free(c);
    bx_tensor_free(w);
    bx_set_num_threads(saved);
    bx_tensor_free(a);
    bx_tensor_free(b);
}

int main(void) {
    test_hand_values();
    test_broadcast_shapes();
    test_strided();
    test_gradcheck();
    test_aliased_inputs();
    test_accumulation();
    test_errors();
    test_parallel();
    return tu_finish("ops/elementwise");
}
