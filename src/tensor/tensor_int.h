/* tensor_int.h - tensor internals shared by ops, kernels and io. */
#ifndef BLIXT_TENSOR_INT_H
#define BLIXT_TENSOR_INT_H

#include "blixt/tensor.h"
#include "core/core_int.h"

/* Fills shape and contiguous row-major strides; checks ndim and shape.
 * Returns BX_ERR_INVALID (with text) on a bad shape. */
bx_status bx__set_shape(bx_tensor *t, bx_dtype dt, int ndim, const int64_t *shape);
/* Product of shape[0..ndim). */
int64_t bx__shape_numel(int ndim, const int64_t *shape);
/* Formats a shape list "(2,3)". */
char *bx__shape_fmt(int ndim, const int64_t *shape, char *buf, size_t n);
/* Normalises a possibly negative dim for a tensor of ndim dims; -1 if out of range. */
int bx__norm_dim(int dim, int ndim);

/* Multi-index iteration over a shape: for (bx__iter it = ...; ...) style.
 * Offsets for up to 3 operands with their own strides advance together. */
typedef struct bx__iter {
    int ndim;
    int64_t shape[BX_MAX_DIMS];
    int64_t idx[BX_MAX_DIMS];
    int64_t stride[3][BX_MAX_DIMS];
    int64_t off[3];
    int64_t remaining;
} bx__iter;
/* nops operands; strides[k] are the element strides of operand k over `shape`. */
void bx__iter_init(bx__iter *it, int ndim, const int64_t *shape, int nops,
                   const int64_t *const *strides);
/* Advances to the next element; returns false when done. */
static inline bool bx__iter_next(bx__iter *it, int nops) {
    if (--it->remaining <= 0) return false;
    for (int d = it->ndim - 1; d >= 0; d--) {
        if (++it->idx[d] < it->shape[d]) {
            for (int k = 0; k < nops; k++) it->off[k] += it->stride[k][d];
            return true;
        }
        for (int k = 0; k < nops; k++) it->off[k] -= it->stride[k][d] * (it->shape[d] - 1);
        it->idx[d] = 0;
    }
    return false;
}

/* dst (f32, any strides) += src (f32, same shape, any strides). */
void bx__acc_f32(bx_tensor *dst, const bx_tensor *src);
/* Value at a raw element offset, as double / written from double. */
double bx__load(const void *data, bx_dtype dt, int64_t off);
void bx__store(void *data, bx_dtype dt, int64_t off, double v);

#endif
