/* prune_int.h - internals shared by the files of src/prune. */
#ifndef BLIXT_PRUNE_INT_H
#define BLIXT_PRUNE_INT_H

#include "blixt/prune.h"
#include "core/core_int.h"

#include <math.h>
#include <string.h>

/* Longest parameter name pruning accepts (name_orig / name_mask must fit). */
#define BX__PRUNE_NAME_MAX 200

/* A tensor's values as a contiguous double-free f32 array: `vals` points
 * either into t (contiguous f32) or to `own` (heap, bx__free it). */
typedef struct bx__prune_vals {
    const float *vals;
    float *own;
} bx__prune_vals;
/* Loads t (f32/f64, any strides) row-major; BX_ERR_NOMEM, BX_ERR_SHAPE. */
bx_status bx__prune_vals_load(const bx_tensor *t, bx__prune_vals *v, const char *what);
void bx__prune_vals_free(bx__prune_vals *v);

/* Mask element i (row-major) as 0/1 and its write; any of f32/u8/bool. */
double bx__prune_mask_get(const bx_tensor *m, int64_t i);
void bx__prune_mask_zero(bx_tensor *m, int64_t i);
/* BX_ERR_UNSUPPORTED unless the mask dtype is f32, u8 or bool. */
bx_status bx__prune_mask_check(const bx_tensor *m, const char *what);

#endif
