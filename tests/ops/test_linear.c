/* test_linear.c - linear and matmul: values, gradients (finite differences),
 * transposed operands through GEMM flags, broadcasting, errors. */
#include "autograd/autograd_int.h"
#include "backend/cpu/cpu_int.h"
#include "test_util.h"

/* Test-only differentiable transpose of the last two dims (a strided view, no copy). */
static void tview_backward(bx_step *st, bx_node *n) {
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    bx_tensor d = *gx;
    int nd = d.ndim;
    int64_t t = d.shape[nd - 1]; d.shape[nd - 1] = d.shape[nd - 2]; d.shape[nd - 2] = t;
    t = d.stride[nd - 1]; d.stride[nd - 1] = d.stride[nd - 2]; d.stride[nd - 2] = t;
    bx__acc_f32(&d, n->out->grad);
}
static bx_tensor *tview(bx_step *st, bx_tensor *x) {
    int64_t sh[BX_MAX_DIMS], sd[BX_MAX_DIMS];
    int nd = x->ndim;
    for (int i = 0; i < nd; i++) { sh[i] = x->shape[i]; sd[i] = x->stride[i]; }
    int64_t t = sh[nd - 1]; sh[nd - 1] = sh[nd - 2]; sh[nd - 2] = t;
    t = sd[nd - 1]; sd[nd - 1] = sd[nd - 2]; sd[nd - 2] = t;
    bx_tensor *y = bx__view(st, x, x->data, nd, sh, sd);
    bx__record(st, "tview", tview_backward, y, 1, &x, 0, NULL);
    return y;
}

static bx_tensor *mk(bx_rng *r, int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t s[4] = {a, b, c, d};
    return tu_rand_param(r, nd, s, -1.0f, 1.0f);
}

typedef struct { int flags; } lin_ud; /* 1: transpose w (given stored (in,out)), 2: transpose x */
static bx_tensor *f_linear(bx_step *st, bx_tensor **in, void *ud) {
    int fl = ud ? ((lin_ud *)ud)->flags : 0;
    bx_tensor *x = (fl & 2) ? tview(st, in[0]) : in[0];
    bx_tensor *w = (fl & 1) ? tview(st, in[1]) : in[1];
    return bx_linear(st, x, w, in[2]);
}
static bx_tensor *f_matmul(bx_step *st, bx_tensor **in, void *ud) {
    int fl = ud ? ((lin_ud *)ud)->flags : 0;
    bx_tensor *a = (fl & 1) ? tview(st, in[0]) : in[0];
    bx_tensor *b = (fl & 2) ? tview(st, in[1]) : in[1];
    return bx_matmul(st, a, b);
}

static void free_all(bx_tensor **t, int n) {
    for (int i = 0; i < n; i++) bx_tensor_free(t[i]);
}

static void test_linear_values(void) {
    bx_step *st = bx_step_new();
    int64_t sx[2] = {2, 3}, sw[2] = {2, 3}, sb[1] = {2};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, sx), *w = bx_tensor_new(BX_F32, 2, sw), *b = bx_tensor_new(BX_F32, 1, sb);
    float xv[6] = {1, 2, 3, 4, 5, 6}, wv[6] = {1, 0, -1, 0.5f, 0.5f, 0.5f}, bv[2] = {10, -1};
    memcpy(x->data, xv, sizeof xv); memcpy(w->data, wv, sizeof wv); memcpy(b->data, bv, sizeof bv);
    bx_tensor *y = bx_linear(st, x, w, b);
    CHECK_EQ_INT(y->ndim, 2); CHECK_EQ_INT(y->shape[0], 2); CHECK_EQ_INT(y->shape[1], 2);
    /* row0: 1-3+10 = 8, 3-1 = 2; row1: 4-6+10 = 8, 7.5-1 = 6.5 */
    CHECK_NEAR(bx_get(y, 0), 8.0, 1e-6); CHECK_NEAR(bx_get(y, 1), 2.0, 1e-6);
    CHECK_NEAR(bx_get(y, 2), 8.0, 1e-6); CHECK_NEAR(bx_get(y, 3), 6.5, 1e-6);
    /* no bias; 1-D x */
    int64_t s1[1] = {3};
    bx_tensor *x1 = bx_tensor_new(BX_F32, 1, s1);
    memcpy(x1->data, xv, 3 * sizeof(float));
    bx_tensor *y1 = bx_linear(st, x1, w, NULL);
    CHECK_EQ_INT(y1->ndim, 1); CHECK_EQ_INT(y1->shape[0], 2);
    CHECK_NEAR(bx_get(y1, 0), -2.0, 1e-6); CHECK_NEAR(bx_get(y1, 1), 3.0, 1e-6);
    /* backward with loss = sum(y * g): dW = g^T x, db = colsum g, dx = g W */
    bx_param_mark(w); bx_param_mark(b); bx_param_mark(x);
    bx_step_reset(st);
    y = bx_linear(st, x, w, b);
    float gv[4] = {1, 2, 3, 4};
    bx_tensor *g = bx_step_tensor(st, BX_F32, 2, y->shape);
    memcpy(g->data, gv, sizeof gv);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    /* dW[0] = 1*x0 + 3*x1 = (13,17,21); dW[1] = 2*x0 + 4*x1 = (18,24,30) */
    CHECK_NEAR(bx_get(w->grad, 0), 13, 1e-6); CHECK_NEAR(bx_get(w->grad, 2), 21, 1e-6);
    CHECK_NEAR(bx_get(w->grad, 3), 18, 1e-6); CHECK_NEAR(bx_get(w->grad, 5), 30, 1e-6);
    CHECK_NEAR(bx_get(b->grad, 0), 4, 1e-6); CHECK_NEAR(bx_get(b->grad, 1), 6, 1e-6);
    /* dx[0] = 1*w0 + 2*w1 = (2,1,0) */
    CHECK_NEAR(bx_get(x->grad, 0), 2, 1e-6); CHECK_NEAR(bx_get(x->grad, 1), 1, 1e-6);
    CHECK_NEAR(bx_get(x->grad, 2), 0, 1e-6);
    /* a second backward on a new step accumulates into the parameter grads */
    bx_step_reset(st);
    y = bx_linear(st, x, w, b);
    g = bx_step_tensor(st, BX_F32, 2, y->shape);
    memcpy(g->data, gv, sizeof gv);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    CHECK_NEAR(bx_get(w->grad, 0), 26, 1e-6); CHECK_NEAR(bx_get(b->grad, 1), 12, 1e-6);
    bx_tensor_free(x); bx_tensor_free(w); bx_tensor_free(b); bx_tensor_free(x1);
    bx_step_free(st);
}

/* The first layer of an MLP: x needs no grad, so no dX is computed. */
static void test_linear_no_dx(void) {
    bx_rng r; bx_rng_init(&r, 7);
    bx_step *st = bx_step_new();
    int64_t sx[2] = {4, 5};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, sx);
    for (int i = 0; i < 20; i++) ((float *)x->data)[i] = (float)i * 0.1f;
    bx_tensor *w = mk(&r, 2, 3, 5, 0, 0), *b = mk(&r, 1, 3, 0, 0, 0);
    bx_tensor *y = bx_linear(st, x, w, b);
    bx_tensor *g = bx_step_tensor(st, BX_F32, 2, y->shape);
    bx_fill(g, 1.0);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    CHECK(x->grad == NULL);
    CHECK(w->grad != NULL && b->grad != NULL);
    bx_tensor_free(x); bx_tensor_free(w); bx_tensor_free(b);
    bx_step_free(st);
}

static void test_linear_grads(void) {
    bx_rng r; bx_rng_init(&r, 11);
    /* 2-D with bias */
    bx_tensor *in[3] = {mk(&r, 2, 6, 10, 0, 0), mk(&r, 2, 8, 10, 0, 0), mk(&r, 1, 8, 0, 0, 0)};
    tu_gradcheck("linear 2d bias", f_linear, in, 3, NULL, 1e-2, 1e-3, 2e-3);
    /* without bias */
    bx_tensor *nb[3] = {in[0], in[1], NULL};
    tu_gradcheck("linear no bias", f_linear, nb, 2, NULL, 1e-2, 1e-3, 2e-3);
    free_all(in, 3);
    /* 3-D x */
    bx_tensor *in3[3] = {mk(&r, 3, 2, 3, 4, 0), mk(&r, 2, 5, 4, 0, 0), mk(&r, 1, 5, 0, 0, 0)};
    tu_gradcheck("linear 3d x", f_linear, in3, 3, NULL, 1e-2, 1e-3, 2e-3);
    free_all(in3, 3);
    /* w given as a transposed view (stored (in,out)); x as a transposed view */
    bx_tensor *int_[3] = {mk(&r, 2, 6, 7, 0, 0), mk(&r, 2, 7, 4, 0, 0), mk(&r, 1, 4, 0, 0, 0)};
    lin_ud u1 = {1};
    tu_gradcheck("linear w^T view", f_linear, int_, 3, &u1, 1e-2, 1e-3, 2e-3);
    free_all(int_, 3);
    bx_tensor *inx[3] = {mk(&r, 2, 7, 6, 0, 0), mk(&r, 2, 4, 7, 0, 0), mk(&r, 1, 4, 0, 0, 0)};
    lin_ud u2 = {2};
    tu_gradcheck("linear x^T view", f_linear, inx, 3, &u2, 1e-2, 1e-3, 2e-3);
    free_all(inx, 3);
}

/* matmul of stored tensors against a naive reference. */
static void test_matmul_values(void) {
    bx_step *st = bx_step_new();
    int64_t sa[2] = {2, 3}, sb[2] = {3, 2};
    bx_tensor *a = bx_tensor_new(BX_F32, 2, sa), *b = bx_tensor_new(BX_F32, 2, sb);
    float av[6] = {1, 2, 3, 4, 5, 6}, bv[6] = {7, 8, 9, 10, 11, 12};
    memcpy(a->data, av, sizeof av); memcpy(b->data, bv, sizeof bv);
    bx_tensor *y = bx_matmul(st, a, b);
    CHECK_NEAR(bx_get(y, 0), 58, 1e-6); CHECK_NEAR(bx_get(y, 1), 64, 1e-6);
    CHECK_NEAR(bx_get(y, 2), 139, 1e-6); CHECK_NEAR(bx_get(y, 3), 154, 1e-6);
    /* 1-D . 1-D -> 0-d */
    int64_t s3[1] = {3};
    bx_tensor *v = bx_tensor_new(BX_F32, 1, s3);
    memcpy(v->data, av, 3 * sizeof(float));
    bx_tensor *d = bx_matmul(st, v, v);
    CHECK_EQ_INT(d->ndim, 0); CHECK_NEAR(bx_item(d), 14, 1e-6);
    /* matrix . vector -> (2); vector . matrix -> (2) */
    bx_tensor *mv = bx_matmul(st, a, v);
    CHECK_EQ_INT(mv->ndim, 1); CHECK_EQ_INT(mv->shape[0], 2);
    CHECK_NEAR(bx_get(mv, 0), 14, 1e-6); CHECK_NEAR(bx_get(mv, 1), 32, 1e-6);
    bx_tensor *vm = bx_matmul(st, v, b);
    CHECK_EQ_INT(vm->ndim, 1); CHECK_NEAR(bx_get(vm, 0), 58, 1e-6); CHECK_NEAR(bx_get(vm, 1), 64, 1e-6);
    /* broadcast batch shape [2,1,3,4] @ [5,4,6] -> [2,5,3,6], checked against loops */
    bx_rng r; bx_rng_init(&r, 3);
    bx_tensor *A = mk(&r, 4, 2, 1, 3, 4), *B = mk(&r, 3, 5, 4, 6, 0);
    bx_tensor *Y = bx_matmul(st, A, B);
    CHECK_EQ_INT(Y->ndim, 4); CHECK_EQ_INT(Y->shape[0], 2); CHECK_EQ_INT(Y->shape[1], 5);
    CHECK_EQ_INT(Y->shape[2], 3); CHECK_EQ_INT(Y->shape[3], 6);
    double maxerr = 0;
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 5; j++)
            for (int n = 0; n < 3; n++)
                for (int m = 0; m < 6; m++) {
                    double s = 0;
                    for (int k = 0; k < 4; k++)
                        s += (double)((float *)A->data)[(i * 3 + n) * 4 + k] * ((float *)B->data)[(j * 4 + k) * 6 + m];
                    double e = fabs(s - bx_get(Y, ((i * 5 + j) * 3 + n) * 6 + m));
                    if (e > maxerr) maxerr = e;
                }
    CHECK(maxerr < 1e-5);
    bx_tensor_free(a); bx_tensor_free(b); bx_tensor_free(v); bx_tensor_free(A); bx_tensor_free(B);
    bx_step_free(st);
}

static void gc_mm(const char *name, bx_rng *r, int na, const int64_t *sa, int nb, const int64_t *sb, int flags) {
    bx_tensor *in[2] = {tu_rand_param(r, na, sa, -1, 1), tu_rand_param(r, nb, sb, -1, 1)};
    lin_ud u = {flags};
    tu_gradcheck(name, f_matmul, in, 2, &u, 1e-2, 1e-3, 2e-3);
    free_all(in, 2);
}

static void test_matmul_grads(void) {
    bx_rng r; bx_rng_init(&r, 5);
    gc_mm("mm 2d", &r, 2, (int64_t[]){5, 7}, 2, (int64_t[]){7, 4}, 0);
    gc_mm("mm dot", &r, 1, (int64_t[]){6}, 1, (int64_t[]){6}, 0);
    gc_mm("mm mat-vec", &r, 2, (int64_t[]){3, 5}, 1, (int64_t[]){5}, 0);
    gc_mm("mm vec-mat", &r, 1, (int64_t[]){5}, 2, (int64_t[]){5, 4}, 0);
    gc_mm("mm bcast", &r, 4, (int64_t[]){2, 1, 3, 4}, 3, (int64_t[]){5, 4, 6}, 0);
    gc_mm("mm batched same", &r, 3, (int64_t[]){3, 2, 4}, 3, (int64_t[]){3, 4, 5}, 0);
    gc_mm("mm 2d @ batched", &r, 2, (int64_t[]){3, 4}, 3, (int64_t[]){2, 4, 5}, 0);
    gc_mm("mm batched @ 2d (fold)", &r, 3, (int64_t[]){2, 3, 4}, 2, (int64_t[]){4, 5}, 0);
    gc_mm("mm batched @ vec (fold)", &r, 3, (int64_t[]){2, 3, 4}, 1, (int64_t[]){4}, 0);
    gc_mm("mm vec @ batched", &r, 1, (int64_t[]){4}, 3, (int64_t[]){2, 4, 3}, 0);
    gc_mm("mm a^T view", &r, 2, (int64_t[]){7, 5}, 2, (int64_t[]){7, 4}, 1);
    gc_mm("mm b^T view", &r, 2, (int64_t[]){5, 7}, 2, (int64_t[]){4, 7}, 2);
    gc_mm("mm both ^T batched bcast", &r, 3, (int64_t[]){1, 4, 3}, 3, (int64_t[]){2, 5, 4}, 3);
    gc_mm("mm a^T batched @ 2d", &r, 3, (int64_t[]){2, 4, 3}, 2, (int64_t[]){4, 5}, 1);
    /* the same tensor on both sides */
    bx_tensor *sq = tu_rand_param(&r, 2, (int64_t[]){4, 4}, -1, 1);
    bx_tensor *in[2] = {sq, sq};
    tu_gradcheck("mm a @ a", f_matmul, in, 2, NULL, 1e-2, 1e-3, 2e-3);
    bx_tensor_free(sq);
}

static void test_errors(void) {
    bx_step *st = bx_step_new();
    bx_tensor *x = bx_tensor_zeros(BX_F32, 2, (int64_t[]){32, 256});
    bx_tensor *w = bx_tensor_zeros(BX_F32, 2, (int64_t[]){10, 128});
    bx_tensor *y = bx_linear(st, x, w, NULL);
    CHECK(bx_is_poison(y));
    CHECK_EQ_INT(bx_step_status(st), BX_ERR_SHAPE);
    CHECK(strstr(bx_step_errmsg(st), "linear") && strstr(bx_step_errmsg(st), "(32,256)") &&
          strstr(bx_step_errmsg(st), "(10,128)"));
    /* poison propagates without a new error */
    bx_tensor *y2 = bx_linear(st, y, w, NULL);
    CHECK(bx_is_poison(y2));
    CHECK(strstr(bx_step_errmsg(st), "(32,256)") != NULL);
    bx_step_reset(st);
    bx_tensor *b = bx_tensor_zeros(BX_F32, 1, (int64_t[]){3});
    bx_tensor *w2 = bx_tensor_zeros(BX_F32, 2, (int64_t[]){10, 256});
    CHECK(bx_is_poison(bx_linear(st, x, w2, b)));
    CHECK(strstr(bx_step_errmsg(st), "linear") && strstr(bx_step_errmsg(st), "(3)"));
    bx_step_reset(st);
    bx_tensor *a = bx_tensor_zeros(BX_F32, 2, (int64_t[]){5, 7});
    bx_tensor *c = bx_tensor_zeros(BX_F32, 2, (int64_t[]){6, 4});
    CHECK(bx_is_poison(bx_matmul(st, a, c)));
    CHECK(strstr(bx_step_errmsg(st), "matmul: a (5,7) and b (6,4)") && strstr(bx_step_errmsg(st), "7 and 6"));
    bx_step_reset(st);
    bx_tensor *p = bx_tensor_zeros(BX_F32, 3, (int64_t[]){2, 3, 4});
    bx_tensor *q = bx_tensor_zeros(BX_F32, 3, (int64_t[]){3, 4, 5});
    CHECK(bx_is_poison(bx_matmul(st, p, q)));
    CHECK(strstr(bx_step_errmsg(st), "matmul") && strstr(bx_step_errmsg(st), "(2,3,4)") &&
          strstr(bx_step_errmsg(st), "(3,4,5)"));
    bx_step_reset(st);
    bx_tensor *i64 = bx_tensor_zeros(BX_I64, 2, (int64_t[]){5, 7});
    CHECK(bx_is_poison(bx_matmul(st, i64, a)));
    CHECK(strstr(bx_step_errmsg(st), "f32") != NULL);
    bx_tensor_free(x); bx_tensor_free(w); bx_tensor_free(b); bx_tensor_free(w2);
    bx_tensor_free(a); bx_tensor_free(c); bx_tensor_free(p); bx_tensor_free(q); bx_tensor_free(i64);
    bx_step_free(st);
}

/* Zero-size dims give empty / zero results, never a crash. */
static void test_empty(void) {
    bx_step *st = bx_step_new();
    bx_tensor *a = bx_tensor_zeros(BX_F32, 2, (int64_t[]){3, 0});
    bx_tensor *b = bx_tensor_zeros(BX_F32, 2, (int64_t[]){0, 2});
    bx_param_mark(a); bx_param_mark(b);
    bx_tensor *y = bx_matmul(st, a, b);
    CHECK(!bx_is_poison(y));
    CHECK_EQ_INT(bx_numel(y), 6);
    for (int i = 0; i < 6; i++) CHECK_NEAR(bx_get(y, i), 0, 0);
    bx_tensor *g = bx_step_tensor(st, BX_F32, 2, y->shape);
    bx_fill(g, 1);
    CHECK_OK(bx_backward_with_grad(st, y, g));
    bx_tensor_free(a); bx_tensor_free(b);
    bx_step_free(st);
}

/* bx__sgemm / bx__sgemm_batch against a naive loop: all flag combinations,
 * padded leading dims, beta 0/1/0.5, K == 0, shared-C accumulation. */
static void test_sgemm(void) {
    bx_rng r; bx_rng_init(&r, 17);
    float A[64], B[64], C[64], R[64];
    for (int i = 0; i < 64; i++) { A[i] = bx_rng_uniform(&r) - 0.5f; B[i] = bx_rng_uniform(&r) - 0.5f; }
    const int M = 3, N = 4, K = 5, lda_n = 7, lda_t = 6, ldb_n = 6, ldb_t = 8, ldc = 5;
    const float betas[3] = {0.0f, 1.0f, 0.5f};
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            for (int bi = 0; bi < 3; bi++) {
                int lda = ta ? lda_t : lda_n, ldb = tb ? ldb_t : ldb_n;
                for (int i = 0; i < 64; i++) C[i] = R[i] = (float)i * 0.01f;
                for (int i = 0; i < M; i++)
                    for (int j = 0; j < N; j++) {
                        double s = 0;
                        for (int k = 0; k < K; k++)
                            s += (double)(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
                        R[i * ldc + j] = (float)(2.0 * s + betas[bi] * R[i * ldc + j]);
                    }
                bx__sgemm(ta, tb, M, N, K, 2.0f, A, lda, B, ldb, betas[bi], C, ldc);
                for (int i = 0; i < 64; i++) CHECK_NEAR(C[i], R[i], 1e-5);
            }
    /* K == 0: C = beta * C, and beta 0 writes zeros even over NaN */
    for (int i = 0; i < 64; i++) C[i] = NAN;
    bx__sgemm(false, false, 2, 3, 0, 1.0f, A, 1, B, 3, 0.0f, C, 3);
    for (int i = 0; i < 6; i++) CHECK_NEAR(C[i], 0, 0);
    CHECK(isnan(C[6]));
    /* batch of 3 products into one C (sc = 0) with beta 0: sum of the products */
    float Cb[4] = {9, 9, 9, 9};
    float Ab[12], Bb[12];
    for (int i = 0; i < 12; i++) { Ab[i] = (float)(i + 1); Bb[i] = 1.0f; }
    /* (1,4) @ (4,1) per batch: sums 10, 26, 42 -> 78 */
    bx__sgemm_batch(false, false, 1, 1, 4, 1.0f, Ab, 4, 4, Bb, 1, 4, 0.0f, Cb, 1, 0, 3);
    CHECK_NEAR(Cb[0], 78, 1e-6);
    CHECK_NEAR(Cb[1], 9, 0);
}

int main(void) {
    test_sgemm();
    test_linear_values();
    test_linear_no_dx();
    test_linear_grads();
    test_matmul_values();
    test_matmul_grads();
    test_errors();
    test_empty();
    return tu_finish("test_linear");
}
