/* ops_int.h - helpers shared by op authors: broadcasting, the strided
 * elementwise loop engine, and gradient reduction over broadcast dims.
 *
 * Typical use in a backward (bias of a linear layer, gy (N,O), b (O)):
 *     bx_tensor *gb = bx__grad(st, b);
 *     if (gb && bx__reduce_to(gb, gy) != BX_OK) bx_step_fail(st, BX_ERR_SHAPE, "%s", bx_errmsg());
 * and in a forward, any "out = f(in0, in1, ...)" with broadcasting and strided
 * inputs goes through bx__ew_apply with a kernel over contiguous blocks. */
#ifndef BLIXT_OPS_INT_H
#define BLIXT_OPS_INT_H

#include "autograd/autograd_int.h"

#include <math.h>

/* Vector math. glibc's libmvec (x86_64) has SIMD versions of expf, logf,
 * tanhf and erff, but <math.h> only declares them under -ffast-math. These
 * declarations let the vectoriser call them from `omp simd` loops while the
 * rest of the code keeps strict IEEE semantics (libmvec's special inputs
 * fall back to the scalar functions; max error a few ulp). The symbols come
 * with -lm (libm.so pulls libmvec in as needed). Define BLIXT_NO_LIBMVEC to
 * turn this off. */
#if defined(__x86_64__) && defined(__GLIBC__) && defined(_OPENMP) && !defined(__FAST_MATH__) && \
    !defined(BLIXT_NO_LIBMVEC) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#pragma omp declare simd notinbranch
float expf(float);
#pragma omp declare simd notinbranch
float logf(float);
#pragma omp declare simd notinbranch
float tanhf(float);
#pragma omp declare simd notinbranch
float erff(float);
#endif

/* Element count above which the CPU kernels go parallel (OpenMP). */
#define BX_PAR_MIN 32768

/* Broadcast shape of a and b (PyTorch rules: align trailing dims; sizes equal
 * or one of them 1). Writes it to out_shape (BX_MAX_DIMS entries) and
 * returns its ndim, or -1 when the shapes are incompatible. */
int bx__broadcast_shape(const bx_tensor *a, const bx_tensor *b, int64_t *out_shape);

/* Strides of t seen with the broadcast shape (ndim, shape): t's dims align to
 * the trailing ones, missing and size-1-broadcast dims get stride 0. Returns
 * false when t cannot broadcast to that shape. */
bool bx__bcast_strides(const bx_tensor *t, int ndim, const int64_t *shape, int64_t *strides);

/* Kernel over one contiguous block: for i < n,
 *     o[i] = f(x[0][i], x[1][i], ...)     (acc false)
 *     o[i] += f(x[0][i], x[1][i], ...)    (acc true)
 * p points at the caller's float parameters (may be NULL). */
typedef void (*bx__ew_kernel)(int64_t n, float *restrict o, const float *const *x, const float *p,
                              bool acc);

/* Defines a static bx__ew_kernel `name`: o[i] (+)= EXPR over a contiguous
 * block, where EXPR reads a[i], b[i], c[i] (inputs 0..2) and p[k] (params). */
#define BX_EW_KERNEL(name, EXPR)                                                                     \
    static void name(int64_t n, float *restrict o, const float *const *x, const float *p, bool acc) { \
        const float *restrict a = x[0], *restrict b = x[1], *restrict c = x[2];                  \
        (void)a; (void)b; (void)c; (void)p;                                                      \
        if (acc) {                                                                                \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] += (EXPR);                   \
        } else {                                                                                  \
            _Pragma("omp simd") for (int64_t i = 0; i < n; i++) o[i] = (EXPR);                    \
        }                                                                                         \
    }

/* Runs k over every element of out (f32, any strides without overlap: each
 * element written once) with up to 4 f32 inputs of any strides broadcast to
 * out's shape. Contiguous operands are passed to k directly; broadcast and
 * strided ones through small per-thread buffers. Parallel above BX_PAR_MIN.
 * Errors: BX_ERR_SHAPE (input not broadcastable to out), with text. */
bx_status bx__ew_apply(bx__ew_kernel k, const float *p, bool acc, bx_tensor *out, int nin,
                       const bx_tensor *const *in);

/* dst (f32, any strides) ACCUMULATES (+=) g (f32, any strides) summed over
 * every dim along which dst broadcasts to g: dst's shape must broadcast to
 * g's (dst->ndim <= g->ndim, each aligned size equal or 1). The bias
 * gradient of linear/conv layers: bx__reduce_to(gb (O), gy (N,O)); for a
 * conv bias view gb as (O,1,1) against gy (N,O,H,W). Sums in double.
 * Errors: BX_ERR_SHAPE with both shapes in the text. */
bx_status bx__reduce_to(bx_tensor *dst, const bx_tensor *g);
/* As bx__reduce_to with dst += alpha * sum(g). */
bx_status bx__reduce_to_scaled(bx_tensor *dst, const bx_tensor *g, float alpha);

/* Sum of n contiguous floats, accumulated in double (blocked, parallel above
 * BX_PAR_MIN, deterministic for a given thread count). */
double bx__sum_f32(const float *p, int64_t n);

/* Checks that x is f32; otherwise records "op: name must be f32, got i64" on
 * the step and returns false. */
bool bx__need_f32(bx_step *st, const char *op, const char *name, const bx_tensor *x);

#endif
