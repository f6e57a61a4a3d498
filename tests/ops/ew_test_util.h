/* ew_test_util.h - small helpers shared by the elementwise/shape op tests. */
#ifndef BLIXT_EW_TEST_UTIL_H
#define BLIXT_EW_TEST_UTIL_H

#include "test_util.h"
#include "tensor/tensor_int.h"

/* Owned f32 tensor with the given values (NULL: 0.1*i - 1 pattern), marked
 * as a parameter when grad. */
static inline bx_tensor *et_tensor(int nd, const int64_t *shape, const float *vals, bool grad) {
    bx_tensor *t = bx_tensor_new(BX_F32, nd, shape);
    float *d = t->data;
    for (int64_t i = 0; i < bx_numel(t); i++) d[i] = vals ? vals[i] : 0.1f * (float)i - 1.0f;
    if (grad) bx_param_mark(t);
    return t;
}

/* Element of t broadcast to (nd, shape) at row-major logical index i. */
static inline double et_bget(const bx_tensor *t, int nd, const int64_t *shape, int64_t i) {
    int64_t idx[BX_MAX_DIMS];
    for (int d = nd - 1; d >= 0; d--) {
        idx[d] = i % shape[d];
        i /= shape[d];
    }
    int64_t off = 0;
    for (int d = 0; d < t->ndim; d++) {
        int od = d + nd - t->ndim;
        int64_t k = t->shape[d] == 1 ? 0 : idx[od];
        off += k * t->stride[d];
    }
    return bx__load(t->data, t->dtype, off);
}

/* Checks shape (nd, shape) and values of t against expect[] (n = numel). */
static inline int et_check(const bx_tensor *t, int nd, const int64_t *shape, const float *expect, double tol) {
    int bad = 0;
    CHECK_EQ_INT(t->ndim, nd);
    if (t->ndim != nd) return 1;
    for (int d = 0; d < nd; d++) {
        CHECK_EQ_INT(t->shape[d], shape[d]);
        if (t->shape[d] != shape[d]) return 1;
    }
    for (int64_t i = 0; i < bx_numel(t); i++) {
        double g = bx_get(t, i), e = expect[i];
        if (!(fabs(g - e) <= tol * (1.0 + fabs(e)))) {
            if (bad < 5) fprintf(stderr, "  elem %lld: got %.9g expected %.9g\n", (long long)i, g, e);
            bad++;
        }
    }
    tu_checks++;
    if (bad) tu_failures++;
    return bad;
}

/* Checks that the step failed with status s and a message containing all needles. */
static inline void et_check_fail(bx_step *st, bx_tensor *y, bx_status s, const char *n1, const char *n2,
                                 const char *n3) {
    CHECK(bx_is_poison(y));
    CHECK_EQ_INT(bx_step_status(st), s);
    const char *m = bx_step_errmsg(st);
    const char *ns[3] = {n1, n2, n3};
    for (int i = 0; i < 3; i++)
        if (ns[i] && !strstr(m, ns[i])) {
            tu_failures++;
            fprintf(stderr, "error message \"%s\" lacks \"%s\"\n", m, ns[i]);
        }
    tu_checks++;
}

#endif
