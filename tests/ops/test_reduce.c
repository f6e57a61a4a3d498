/* test_reduce.c - sum / mean over dim lists (keepdim, negative, all),
 * bx__reduce_to (bias gradients), strided inputs, gradients, errors. */
#include "ew_test_util.h"

#include "ops/ops_int.h"

/* Reference: sum (or mean) of x (contiguous) over the dims flagged in red,
 * output in row-major order of the kept dims. */
static void ref_reduce(const bx_tensor *x, const bool *red, bool mean, double *out, int64_t nout) {
    for (int64_t i = 0; i < nout; i++) out[i] = 0;
    int64_t cnt = 1;
    for (int d = 0; d < x->ndim; d++)
        if (red[d]) cnt *= x->shape[d];
    for (int64_t i = 0; i < bx_numel(x); i++) {
        int64_t rem = i, o = 0, mul = 1;
        for (int d = x->ndim - 1; d >= 0; d--) {
            int64_t k = rem % x->shape[d];
            rem /= x->shape[d];
            if (!red[d]) {
                o += k * mul;
                mul *= x->shape[d];
            }
        }
        out[o] += bx_get(x, i);
    }
    if (mean)
        for (int64_t i = 0; i < nout; i++) out[i] /= (double)cnt;
}

static void check_reduce(bx_tensor *x, const int *dims, int nd, bool keepdim, bool mean) {
    bool red[BX_MAX_DIMS] = {false};
    for (int i = 0; i < nd; i++) red[dims[i] < 0 ? dims[i] + x->ndim : dims[i]] = true;
    if (nd == 0)
        for (int d = 0; d < x->ndim; d++) red[d] = true;
    int64_t eshape[BX_MAX_DIMS];
    int en = 0;
    for (int d = 0; d < x->ndim; d++)
        if (!red[d]) eshape[en++] = x->shape[d];
        else if (keepdim) eshape[en++] = 1;
    bx_step *st = bx_step_new();
    bx_tensor *y = mean ? bx_mean(st, x, dims, nd, keepdim) : bx_sum(st, x, dims, nd, keepdim);
    CHECK_OK(bx_step_status(st));
    if (!bx_is_poison(y)) {
        int64_t n = bx_numel(y);
        double *e = malloc(sizeof(double) * (size_t)(n ? n : 1));
        float *ef = malloc(sizeof(float) * (size_t)(n ? n : 1));
        ref_reduce(x, red, mean, e, n);
        for (int64_t i = 0; i < n; i++) ef[i] = (float)e[i];
        et_check(y, en, eshape, ef, 2e-6);
        free(e);
        free(ef);
    }
    bx_step_free(st);
}

static void test_values(void) {
    /* hand-checked: x = [[1,2,3],[4,5,6]] */
    int64_t s[2] = {2, 3};
    float v[6] = {1, 2, 3, 4, 5, 6};
    bx_tensor *x = et_tensor(2, s, v, false);
    bx_step *st = bx_step_new();
    int d0 = 0, d1 = -1;
    int64_t s3[1] = {3}, s2[1] = {2}, s21[2] = {2, 1}, s11[2] = {1, 1};
    float c[3] = {5, 7, 9}, rm[2] = {2, 5}, rk[2] = {6, 15}, all[1] = {21}, am[1] = {3.5f};
    et_check(bx_sum(st, x, &d0, 1, false), 1, s3, c, 0);
    et_check(bx_mean(st, x, &d1, 1, false), 1, s2, rm, 0);
    et_check(bx_sum(st, x, &d1, 1, true), 2, s21, rk, 0);
    et_check(bx_sum(st, x, NULL, 0, false), 0, NULL, all, 0);
    et_check(bx_mean(st, x, NULL, 0, true), 2, s11, am, 0);
    int both[2] = {1, 0};
    et_check(bx_sum(st, x, both, 2, false), 0, NULL, all, 0);
    /* 0-d input */
    bx_tensor *z = bx_scalar(st, 4.5f);
    CHECK_NEAR(bx_item(bx_sum(st, z, NULL, 0, false)), 4.5, 0);
    CHECK_NEAR(bx_item(bx_mean(st, z, &d0, 1, true)), 4.5, 0);
    CHECK_EQ_INT(bx_mean(st, z, &d1, 1, false)->ndim, 0);
    CHECK_OK(bx_step_status(st));
    bx_step_free(st);
    bx_tensor_free(x);

    /* random tensors, many dim lists */
    bx_rng r;
    bx_rng_init(&r, 21);
    int64_t s4[4] = {3, 4, 5, 2};
    bx_tensor *t = tu_rand_param(&r, 4, s4, -1, 1);
    int lists[][4] = {{1}, {0, 2}, {-1}, {1, 3}, {0, 1, 2, 3}, {2, 0}, {-4, -2}, {3, 2, 1}};
    int lens[] = {1, 2, 1, 2, 4, 2, 2, 3};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++)
        for (int k = 0; k < 2; k++)
            for (int m = 0; m < 2; m++) check_reduce(t, lists[i], lens[i], k, m);
    check_reduce(t, NULL, 0, false, true);
    bx_tensor_free(t);
    /* size-1 dims and a long row (blocked sum) */
    int64_t s5[3] = {2, 1, 5000};
    t = tu_rand_param(&r, 3, s5, -1, 1);
    int dd[2] = {1, 2}, d2 = 2;
    check_reduce(t, dd, 2, false, false);
    check_reduce(t, &d2, 1, true, true);
    check_reduce(t, NULL, 0, false, false);
    bx_tensor_free(t);
    /* empty: sum 0, mean NaN */
    int64_t se[2] = {0, 3};
    t = et_tensor(2, se, NULL, false);
    st = bx_step_new();
    bx_tensor *ys = bx_sum(st, t, &d0, 1, false), *ym = bx_mean(st, t, &d0, 1, false);
    CHECK(ys->ndim == 1 && ys->shape[0] == 3 && bx_get(ys, 2) == 0.0);
    CHECK(isnan(bx_get(ym, 0)));
    CHECK(isnan(bx_item(bx_mean(st, t, NULL, 0, false))));
    bx_step_free(st);
    bx_tensor_free(t);
}

/* Strided input (permuted view) equals its contiguous copy. */
static void test_strided(void) {
    bx_rng r;
    bx_rng_init(&r, 31);
    int64_t s[3] = {4, 6, 5};
    bx_tensor *x = tu_rand_param(&r, 3, s, -1, 1);
    bx_step *st = bx_step_new();
    int perm[3] = {2, 0, 1};
    bx_tensor *xp = bx_permute(st, x, perm), *xc = bx_contiguous(st, xp);
    int lists[][2] = {{0, 0}, {1, 0}, {2, 0}, {0, 2}, {1, 2}};
    int lens[] = {1, 1, 1, 2, 2};
    for (int i = 0; i < 5; i++) {
        bx_tensor *a = bx_sum(st, xp, lists[i], lens[i], false), *b = bx_sum(st, xc, lists[i], lens[i], false);
        CHECK(bx_same_shape(a, b));
        int bad = 0;
        for (int64_t k = 0; k < bx_numel(a); k++)
            if (fabs(bx_get(a, k) - bx_get(b, k)) > 1e-6) bad++;
        CHECK_EQ_INT(bad, 0);
    }
    CHECK_OK(bx_step_status(st));
    bx_step_free(st);
    bx_tensor_free(x);
}

typedef struct rd_ud {
    int dims[3], nd;
    bool keepdim, mean, transpose;
} rd_ud;

static bx_tensor *gc_fn(bx_step *st, bx_tensor **in, void *p) {
    rd_ud *u = p;
    bx_tensor *x = in[0];
    if (u->transpose) x = bx_transpose(st, x, 0, 2);
    return u->mean ? bx_mean(st, x, u->dims, u->nd, u->keepdim) : bx_sum(st, x, u->dims, u->nd, u->keepdim);
}

static void test_gradcheck(void) {
    bx_rng r;
    bx_rng_init(&r, 41);
    rd_ud cases[] = {
        {{1}, 1, false, false, false}, {{0, 2}, 2, true, true, false}, {{0}, 0, false, false, false},
        {{0}, 0, false, true, true},   {{-1}, 1, true, false, true},   {{2, 1}, 2, false, true, true},
        {{0, 1, 2}, 3, true, false, false},
    };
    char name[64];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int64_t s[3] = {3, 4, 5};
        bx_tensor *in[1] = {tu_rand_param(&r, 3, s, -1, 1)};
        snprintf(name, sizeof name, "reduce case %zu", c);
        tu_gradcheck(name, gc_fn, in, 1, &cases[c], 1e-2, 1e-3, 1e-2);
        bx_tensor_free(in[0]);
    }
}

/* bx__reduce_to: accumulates, handles every broadcast pattern. */
static void test_reduce_to(void) {
    bx_rng r;
    bx_rng_init(&r, 51);
    struct {
        int ng, nd;
        int64_t sg[4], sd[4];
    } cases[] = {
        {2, 1, {8, 6}, {6}},             /* linear bias */
        {4, 3, {2, 3, 4, 5}, {3, 1, 1}}, /* conv bias */
        {3, 3, {3, 4, 5}, {1, 4, 1}},    /* mean dims (0,2) keepdim */
        {3, 0, {3, 4, 5}, {0}},          /* all */
        {3, 3, {3, 4, 5}, {3, 4, 5}},    /* same */
        {3, 2, {3, 4, 5}, {4, 1}},       /* add_bcast b */
        {3, 3, {3, 4, 5}, {3, 1, 5}},    /* add_bcast a */
        {2, 2, {1, 5}, {5, 1}},          /* not broadcastable */
        {2, 1, {700, 300}, {300}},       /* several column blocks */
        {3, 1, {2, 1, 3}, {3}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bx_tensor *g = tu_rand_param(&r, cases[c].ng, cases[c].sg, -1, 1);
        bx_tensor *d = tu_rand_param(&r, cases[c].nd, cases[c].sd, -1, 1);
        bx_tensor *orig = bx_tensor_clone(d);
        bx_status s = bx__reduce_to_scaled(d, g, c % 2 ? -1.0f : 1.0f);
        if (c == 7) {
            CHECK_ERR(s, BX_ERR_SHAPE, "(5,1)");
            CHECK(strstr(bx_errmsg(), "(1,5)") != NULL);
        } else {
            CHECK_OK(s);
            int64_t nd = bx_numel(d);
            double *e = calloc((size_t)nd, sizeof(double));
            for (int64_t i = 0; i < bx_numel(g); i++) {
                /* index of g's element i in d */
                int64_t rem = i, o = 0, mul = 1;
                for (int k = g->ndim - 1; k >= 0; k--) {
                    int64_t q = rem % g->shape[k];
                    rem /= g->shape[k];
                    int kd = k - (g->ndim - d->ndim);
                    if (kd >= 0 && d->shape[kd] != 1) o += q * mul;
                    if (kd >= 0) mul *= d->shape[kd];
                }
                e[o] += bx_get(g, i);
            }
            int bad = 0;
            for (int64_t i = 0; i < nd; i++) {
                double want = bx_get(orig, i) + (c % 2 ? -1 : 1) * e[i];
                if (fabs(bx_get(d, i) - want) > 1e-5 * (1 + fabs(want))) bad++;
            }
            if (bad) fprintf(stderr, "reduce_to case %zu: %d wrong\n", c, bad);
            CHECK_EQ_INT(bad, 0);
            free(e);
        }
        bx_tensor_free(g);
        bx_tensor_free(d);
        bx_tensor_free(orig);
    }
    /* strided g: a transposed view */
    int64_t s[2] = {6, 4}, s4[1] = {6};
    bx_tensor *g = tu_rand_param(&r, 2, s, -1, 1);
    bx_step *st = bx_step_new();
    bx_tensor *gt = bx_transpose(st, g, 0, 1); /* (4,6) */
    bx_tensor *d = bx_step_zeros(st, BX_F32, 1, s4);
    CHECK_OK(bx__reduce_to(d, gt));
    for (int i = 0; i < 6; i++) {
        double e = 0;
        for (int j = 0; j < 4; j++) e += ((float *)g->data)[i * 4 + j];
        CHECK_NEAR(bx_get(d, i), e, 1e-6);
    }
    bx_step_free(st);
    bx_tensor_free(g);
    /* bx__sum_f32 on a long vector */
    int64_t n = 100003;
    float *p = malloc(sizeof(float) * (size_t)n);
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        p[i] = (float)((i % 7) * 0.25 - 0.5);
        e += p[i];
    }
    CHECK_NEAR(bx__sum_f32(p, n), e, 1e-12);
    free(p);
}

/* Serial vs 2 threads, large sizes hitting every parallel branch. */
static void test_parallel(void) {
    int saved = bx_get_num_threads();
    bx_rng r;
    bx_rng_init(&r, 61);
    int64_t s[3] = {64, 40, 30};
    bx_tensor *x = tu_rand_param(&r, 3, s, -1, 1);
    int lists[][2] = {{0, 0}, {2, 0}, {0, 2}, {1, 0}};
    int lens[] = {1, 1, 2, 0};
    double res[2][4000];
    int64_t cnt = 0;
    for (int t = 0; t < 2; t++) {
        bx_set_num_threads(t + 1);
        bx_step *st = bx_step_new();
        cnt = 0;
        for (int i = 0; i < 4; i++) {
            bx_tensor *y = bx_sum(st, x, lists[i], lens[i], false);
            for (int64_t k = 0; k < bx_numel(y); k++) res[t][cnt++] = bx_get(y, k);
        }
        /* full reduction of a strided view: rows split over the threads */
        res[t][cnt++] = bx_item(bx_sum(st, bx_transpose(st, x, 0, 2), NULL, 0, false));
        bx_step_free(st);
    }
    int bad = 0;
    for (int64_t i = 0; i < cnt; i++)
        if (fabs(res[0][i] - res[1][i]) > 1e-5 * (1 + fabs(res[0][i]))) bad++;
    CHECK_EQ_INT(bad, 0);
    /* short columns (block path), short rows, on 2 threads against the reference */
    bx_set_num_threads(2);
    int64_t s2[3] = {8, 5000, 5};
    bx_tensor *x2 = tu_rand_param(&r, 3, s2, -1, 1);
    int l1[1] = {1}, l01[2] = {0, 1}, l2[1] = {2}, l02[2] = {0, 2};
    check_reduce(x2, l1, 1, false, false);
    check_reduce(x2, l01, 2, true, true);
    check_reduce(x2, l2, 1, false, false);
    check_reduce(x2, l02, 2, false, true);
    check_reduce(x2, NULL, 0, false, false);
    bx_tensor_free(x2);
    bx_set_num_threads(saved);
    bx_tensor_free(x);
}

static void test_errors(void) {
    int64_t s[3] = {3, 4, 5};
    bx_step *st = bx_step_new();
    bx_tensor *x = bx_step_zeros(st, BX_F32, 3, s);
    int bad[2] = {1, -2};
    et_check_fail(st, bx_sum(st, x, bad, 2, false), BX_ERR_INVALID, "sum", "more than once", "(3,4,5)");
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_F32, 3, s);
    int oor = 3;
    et_check_fail(st, bx_mean(st, x, &oor, 1, false), BX_ERR_SHAPE, "mean", "dim 3", "(3,4,5)");
    bx_step_reset(st);
    x = bx_step_zeros(st, BX_I64, 3, s);
    et_check_fail(st, bx_sum(st, x, NULL, 0, false), BX_ERR_SHAPE, "sum", "i64", NULL);
    bx_step_free(st);
}

static void test_accumulation(void) {
    int64_t s[2] = {2, 3};
    bx_tensor *x = et_tensor(2, s, NULL, true);
    bx_step *st = bx_step_new();
    int d1 = 1;
    for (int k = 0; k < 2; k++) {
        bx_step_reset(st);
        bx_tensor *m = bx_mean(st, x, &d1, 1, true); /* (2,1) */
        CHECK_OK(bx_backward(st, bx_sum(st, bx_mul(st, m, m), NULL, 0, false)));
    }
    /* d/dx sum_r m_r^2 = 2 m_r / 3, twice */
    float e[6];
    const float *xd = x->data;
    for (int rr = 0; rr < 2; rr++) {
        float m = (xd[rr * 3] + xd[rr * 3 + 1] + xd[rr * 3 + 2]) / 3.0f;
        for (int c = 0; c < 3; c++) e[rr * 3 + c] = 2.0f * (2.0f * m / 3.0f);
    }
    et_check(x->grad, 2, s, e, 1e-6);
    bx_step_free(st);
    bx_tensor_free(x);
}

int main(void) {
    test_values();
    test_strided();
    test_gradcheck();
    test_reduce_to();
    test_parallel();
    test_errors();
    test_accumulation();
    return tu_finish("ops/reduce");
}
