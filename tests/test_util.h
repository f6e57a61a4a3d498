/* test_util.h - assertions and the finite-difference gradient check.
 * Header-only: every test program includes it once. */
#ifndef BLIXT_TEST_UTIL_H
#define BLIXT_TEST_UTIL_H

#include "blixt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

static int tu_failures = 0;
static int tu_checks = 0;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        tu_checks++;                                                                    \
        if (!(cond)) {                                                                  \
            tu_failures++;                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                               \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                              \
    do {                                                                                \
        long long va_ = (long long)(a), vb_ = (long long)(b);                           \
        tu_checks++;                                                                    \
        if (va_ != vb_) {                                                               \
            tu_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld vs %lld\n", __FILE__, __LINE__, \
                    #a, #b, va_, vb_);                                                  \
        }                                                                               \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                           \
    do {                                                                                \
        double va_ = (double)(a), vb_ = (double)(b);                                    \
        tu_checks++;                                                                    \
        if (!(fabs(va_ - vb_) <= (tol) * (1.0 + fabs(vb_)))) {                          \
            tu_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s ~ %s failed: %.9g vs %.9g (tol %g)\n", __FILE__,  \
                    __LINE__, #a, #b, va_, vb_, (double)(tol));                         \
        }                                                                               \
    } while (0)

#define CHECK_OK(expr)                                                                  \
    do {                                                                                \
        bx_status s_ = (expr);                                                          \
        tu_checks++;                                                                    \
        if (s_ != BX_OK) {                                                              \
            tu_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s returned %s: %s\n", __FILE__, __LINE__, #expr,   \
                    bx_status_str(s_), bx_errmsg());                                    \
        }                                                                               \
    } while (0)

/* Checks that `expr` fails with status `st` and that the message contains `needle`. */
#define CHECK_ERR(expr, st, needle)                                                     \
    do {                                                                                \
        bx_status s_ = (expr);                                                          \
        tu_checks++;                                                                    \
        if (s_ != (st) || !strstr(bx_errmsg(), (needle))) {                             \
            tu_failures++;                                                              \
            fprintf(stderr, "%s:%d: %s: expected %s containing \"%s\", got %s: \"%s\"\n", \
                    __FILE__, __LINE__, #expr, bx_status_str(st), needle,              \
                    bx_status_str(s_), bx_errmsg());                                    \
        }                                                                               \
    } while (0)

/* Entries of dir other than "." and ".." (-1 when it cannot be opened). */
static inline int tu_count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
    closedir(d);
    return n;
}

/* rm -rf of a file or directory tree (test folders only). */
static inline void tu_rmtree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (!S_ISDIR(sb.st_mode)) {
        unlink(path);
        return;
    }
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[2048];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        tu_rmtree(p);
    }
    if (d) closedir(d);
    rmdir(path);
}

static inline int tu_finish(const char *name) {
    if (tu_failures) {
        fprintf(stderr, "%s: %d of %d checks failed\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: %d checks passed\n", name, tu_checks);
    return 0;
}

/* Owned f32 tensor filled with uniform values in [lo, hi) from a seeded RNG,
 * marked as a parameter (so it receives .grad). */
static inline bx_tensor *tu_rand_param(bx_rng *r, int ndim, const int64_t *shape, float lo, float hi) {
    bx_tensor *t = bx_tensor_new(BX_F32, ndim, shape);
    float *d = t->data;
    for (int64_t i = 0; i < bx_numel(t); i++) d[i] = lo + (hi - lo) * bx_rng_uniform(r);
    bx_param_mark(t);
    return t;
}

/* Function under gradient check: builds the output from the inputs. */
typedef bx_tensor *(*tu_fn)(bx_step *st, bx_tensor **in, void *ud);

static inline double tu_eval(bx_step *st, tu_fn fn, bx_tensor **in, void *ud, const float *g) {
    bx_step_reset(st);
    bx_no_grad_push(st);
    bx_tensor *y = fn(st, in, ud);
    bx_no_grad_pop(st);
    double s = 0;
    for (int64_t i = 0; i < bx_numel(y); i++) s += bx_get(y, i) * g[i];
    return s;
}

/* Finite-difference check of d sum(fn(in) * g) / d in[k] for every input k
 * that requires grad, with a random g. Central differences of step eps,
 * tolerance atol + rtol*|analytic|. Returns the number of mismatches (and
 * prints the first few). */
static inline int tu_gradcheck(const char *name, tu_fn fn, bx_tensor **in, int nin, void *ud,
                               double eps, double atol, double rtol) {
    bx_step *st = bx_step_new();
    bx_rng r;
    bx_rng_init(&r, 1234);
    for (int k = 0; k < nin; k++)
        if (in[k]->requires_grad) bx_param_zero_grad(in[k]);
    bx_tensor *y = fn(st, in, ud);
    if (bx_step_status(st) != BX_OK) {
        fprintf(stderr, "gradcheck %s: forward failed: %s\n", name, bx_step_errmsg(st));
        bx_step_free(st);
        tu_failures++;
        return 1;
    }
    int64_t ny = bx_numel(y);
    float *g = malloc(sizeof(float) * (size_t)(ny ? ny : 1));
    for (int64_t i = 0; i < ny; i++) g[i] = 2.0f * bx_rng_uniform(&r) - 1.0f;
    bx_tensor *gt = bx_step_tensor(st, BX_F32, y->ndim, y->shape);
    memcpy(gt->data, g, sizeof(float) * (size_t)ny);
    bx_status s = bx_backward_with_grad(st, y, gt);
    int bad = 0;
    if (s != BX_OK) {
        fprintf(stderr, "gradcheck %s: backward failed: %s\n", name, bx_errmsg());
        bad = 1;
    }
    for (int k = 0; k < nin && !bad; k++) {
        bx_tensor *p = in[k];
        if (!p->requires_grad) continue;
        if (!p->grad) {
            fprintf(stderr, "gradcheck %s: input %d got no gradient\n", name, k);
            bad++;
            continue;
        }
        float *d = p->data;
        for (int64_t i = 0; i < bx_numel(p); i++) {
            float orig = d[i];
            d[i] = (float)(orig + eps);
            double fp = tu_eval(st, fn, in, ud, g);
            d[i] = (float)(orig - eps);
            double fm = tu_eval(st, fn, in, ud, g);
            d[i] = orig;
            double num = (fp - fm) / (2 * eps);
            double ana = ((float *)p->grad->data)[i];
            if (!(fabs(num - ana) <= atol + rtol * fabs(ana))) {
                if (bad < 5)
                    fprintf(stderr, "gradcheck %s: input %d elem %lld: analytic %.6g numeric %.6g\n",
                            name, k, (long long)i, ana, num);
                bad++;
            }
        }
    }
    free(g);
    bx_step_free(st);
    tu_checks++;
    if (bad) tu_failures++;
    return bad;
}

#endif
