/* cpu_int.h - CPU backend kernels shared by the ops (GEMM through oneDNN). */
#ifndef BLIXT_CPU_INT_H
#define BLIXT_CPU_INT_H

#include <stdbool.h>
#include <stdint.h>

/* C (M,N) = alpha * op(A) @ op(B) + beta * C, all row-major f32.
 * op(A) is (M,K): A is stored (M,K) with leading dim lda when !ta, (K,M) when ta;
 * op(B) is (K,N): B is stored (K,N) with leading dim ldb when !tb, (N,K) when tb.
 * Through oneDNN's dnnl_sgemm. Zero-size M/N are no-ops; K == 0 gives
 * C = beta*C (beta == 0 writes zeros, never reading C). Leading dims must be
 * >= the stored row length (callers guarantee it; out-of-contract calls fall
 * back to a scalar loop instead of failing). Threads: OpenMP (bx_set_num_threads). */
void bx__sgemm(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha, const float *A,
               int64_t lda, const float *B, int64_t ldb, float beta, float *C, int64_t ldc);

/* `count` GEMMs as bx__sgemm, operand i at A + i*sa, B + i*sb, C + i*sc (strides
 * in elements; sa or sb may be 0 to reuse one matrix). When sc == 0 every
 * product accumulates into the same C (beta applies to the first one only). */
void bx__sgemm_batch(bool ta, bool tb, int64_t M, int64_t N, int64_t K, float alpha,
                     const float *A, int64_t lda, int64_t sa, const float *B, int64_t ldb,
                     int64_t sb, float beta, float *C, int64_t ldc, int64_t sc, int64_t count);

#endif
