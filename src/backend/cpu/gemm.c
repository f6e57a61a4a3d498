/* gemm.c - single-precision GEMM for every op that multiplies matrices.
 *
 * All products go through oneDNN's dnnl_sgemm (row-major, 'N'/'T' flags):
 * Debian's OpenBLAS is not used because it runs SSE3 kernels on these CPUs
 * (see shared/perf-anchors.md). Transposes are expressed with the flags and
 * leading dimensions, never by copying. */
#include "backend/cpu/cpu_int.h"

#include <dnnl.h>
#include <string.h>

/* Plain loop: used only when dnnl_sgemm rejects its arguments (it validates
 * leading dims; callers keep within contract, so this is a safety net). */
static void sgemm_ref(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                      const float *A, int64_t lda, const float *B, int64_t ldb, float beta,
                      float *C, int64_t ldc) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t j = 0; j < N; j++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) {
                float a = ta ? A[k * lda + i] : A[i * lda + k];
                float b = tb ? B[j * ldb + k] : B[k * ldb + j];
                s += a * b;
            }
            float *c = &C[i * ldc + j];
            *c = beta == 0.0f ? alpha * s : alpha * s + beta * *c;
        }
}

void bx__sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0 || alpha == 0.0f) {
        for (int64_t i = 0; i < M; i++) {
            float *c = C + i * ldc;
            if (beta == 0.0f)
                memset(c, 0, sizeof(float) * (size_t)N);
            else if (beta != 1.0f)
                for (int64_t j = 0; j < N; j++) c[j] *= beta;
        }
        return;
    }
    /* dnnl wants ld >= the stored row length even when there is a single
     * stored row (whose ld is never used): fix those up. */
    int64_t len_a = ta ? M : K, rows_a = ta ? K : M;
    int64_t len_b = tb ? K : N, rows_b = tb ? N : K;
    if (rows_a == 1 && lda < len_a) lda = len_a;
    if (rows_b == 1 && ldb < len_b) ldb = len_b;
    if (M == 1 && ldc < N) ldc = N;
    dnnl_status_t s = dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb,
                                 beta, C, ldc);
    if (s != dnnl_success) sgemm_ref(ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void bx__sgemm_batch(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb,
                     int64_t sb, float beta, float *C, int64_t ldc, int64_t sc, int64_t count) {
    for (int64_t i = 0; i < count; i++) {
        float b = (sc == 0 && i > 0) ? 1.0f : beta;
        bx__sgemm(ta, tb, M, N, K, alpha, A + i * sa, lda, B + i * sb, ldb, b, C + i * sc, ldc);
    }
}
