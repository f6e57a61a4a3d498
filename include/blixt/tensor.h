/* blixt/tensor.h - n-dimensional tensors.
 *
 * A tensor is a typed, strided view of memory. Two lifetimes exist:
 *  - owned tensors (bx_tensor_new...): parameters, buffers, optimizer state,
 *    datasets. Created and destroyed explicitly; bx_tensor_free(NULL) is a no-op.
 *  - step tensors (bx_step_tensor..., in blixt/autograd.h): activations and
 *    temporaries, living in the step arena until the step is reset.
 * Shapes and strides are in elements; strides may be 0 (broadcast) for views.
 * The struct is public so kernels and users can read data directly; change
 * fields only through the API. */
#ifndef BLIXT_TENSOR_H
#define BLIXT_TENSOR_H

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BX_MAX_DIMS 8

typedef enum bx_dtype {
    BX_F32 = 0, /* compute */
    BX_F64 = 1, /* reference values, schedulers */
    BX_I64 = 2, /* labels, counters */
    BX_I32 = 3, /* zero points */
    BX_U8 = 4,  /* masks, quantized activations */
    BX_I8 = 5,  /* quantized weights */
    BX_BOOL = 6
} bx_dtype;

typedef enum bx_device { BX_CPU = 0, BX_CUDA = 1 } bx_device;

/* flags */
#define BX_TF_OWNS_DATA 0x1u /* data was allocated with the tensor and is freed with it */
#define BX_TF_ARENA 0x2u     /* lives in a step arena */
#define BX_TF_POISON 0x4u    /* result of a failed op: carries no data */
#define BX_TF_PARAM 0x8u     /* a learnable parameter (leaf that keeps .grad) */

struct bx_node;

typedef struct bx_tensor {
    void *data;                  /* first element */
    int64_t shape[BX_MAX_DIMS];
    int64_t stride[BX_MAX_DIMS]; /* in elements */
    int ndim;
    bx_dtype dtype;
    bx_device device;
    uint32_t flags;
    bool requires_grad;          /* for parameters: switchable at run time */
    struct bx_tensor *grad;      /* owned by a parameter; in the arena for step tensors */
    struct bx_node *node;        /* the tape node that produced it (step tensors) */
    uint64_t generation;         /* arena generation (catches use after reset) */
} bx_tensor;

/* Size in bytes of one element. */
size_t bx_dtype_size(bx_dtype dt);
/* "f32", "i64", ... */
const char *bx_dtype_name(bx_dtype dt);
/* safetensors spelling: "F32", "I64", ... */
const char *bx_dtype_st_name(bx_dtype dt);

/* ---- owned tensors ------------------------------------------------------ */
/* New contiguous tensor with uninitialised data. Caller owns it (bx_tensor_free).
 * Errors: BX_ERR_INVALID (bad ndim/shape), BX_ERR_NOMEM. Returns NULL on error. */
bx_tensor *bx_tensor_new(bx_dtype dt, int ndim, const int64_t *shape);
/* As bx_tensor_new, filled with zeros. */
bx_tensor *bx_tensor_zeros(bx_dtype dt, int ndim, const int64_t *shape);
/* New owned contiguous copy of any tensor (step or owned, any strides). */
bx_tensor *bx_tensor_clone(const bx_tensor *t);
/* Frees an owned tensor, its data (if owned) and its grad. NULL is a no-op. */
void bx_tensor_free(bx_tensor *t);

/* ---- inspection --------------------------------------------------------- */
int64_t bx_numel(const bx_tensor *t);
bool bx_is_contiguous(const bx_tensor *t);
bool bx_same_shape(const bx_tensor *a, const bx_tensor *b);
/* Writes "(2,3,4)" into buf (always NUL-terminated); returns buf. */
char *bx_shape_str(const bx_tensor *t, char *buf, size_t n);
/* Element i (row-major logical index over the shape) read as double, any dtype/strides. */
double bx_get(const bx_tensor *t, int64_t i);
/* Writes element i (row-major logical index) from a double, any dtype/strides. */
void bx_set(bx_tensor *t, int64_t i, double v);

/* ---- in-place data operations (no autograd) ------------------------------ */
void bx_fill(bx_tensor *t, double v);
/* Copies src into dst elementwise (same numel; dtypes converted; any strides). */
bx_status bx_copy(bx_tensor *dst, const bx_tensor *src);

#ifdef __cplusplus
}
#endif
#endif
