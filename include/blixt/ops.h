/* blixt/ops.h - differentiable operations.
 *
 * Every op takes the step first, returns a new step tensor and, when
 * gradients are enabled and an input requires grad, records a tape node.
 * Shapes follow PyTorch exactly (broadcasting, negative dims, keepdim).
 * A shape/dtype mismatch sets the step's error with the op name and both
 * shapes ("matmul: a (5,7) and b (6,4): inner dimensions 7 and 6 differ") and
 * returns the poison tensor. Optional tensor arguments may be NULL.
 * Options are structs with *_INIT defaults; passing NULL means the defaults. */
#ifndef BLIXT_OPS_H
#define BLIXT_OPS_H

#include "autograd.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bx_reduction { BX_REDUCTION_MEAN = 0, BX_REDUCTION_SUM = 1, BX_REDUCTION_NONE = 2 } bx_reduction;

/* ---- linear algebra --------------------------------------------------------- */
/* x (..., in), w (out, in), b (out) or NULL -> (..., out). */
bx_tensor *bx_linear(bx_step *st, bx_tensor *x, bx_tensor *w, bx_tensor *b);
/* torch.matmul: 1-D·1-D dot, 2-D·2-D, matrix-vector, vector-matrix, and
 * batched with broadcast batch dims ([2,1,3,4] @ [5,4,6] -> [2,5,3,6]). */
bx_tensor *bx_matmul(bx_step *st, bx_tensor *a, bx_tensor *b);

/* ---- elementwise, broadcasting --------------------------------------------- */
bx_tensor *bx_add(bx_step *st, bx_tensor *a, bx_tensor *b);
bx_tensor *bx_sub(bx_step *st, bx_tensor *a, bx_tensor *b);
bx_tensor *bx_mul(bx_step *st, bx_tensor *a, bx_tensor *b);
bx_tensor *bx_div(bx_step *st, bx_tensor *a, bx_tensor *b);
/* a * s + c (scalars). */
bx_tensor *bx_affine_scalar(bx_step *st, bx_tensor *a, float s, float c);
bx_tensor *bx_neg(bx_step *st, bx_tensor *a);
bx_tensor *bx_exp(bx_step *st, bx_tensor *a);
bx_tensor *bx_log(bx_step *st, bx_tensor *a);
bx_tensor *bx_sqrt(bx_step *st, bx_tensor *a);
bx_tensor *bx_square(bx_step *st, bx_tensor *a);

/* ---- activations ------------------------------------------------------------ */
bx_tensor *bx_relu(bx_step *st, bx_tensor *x);
bx_tensor *bx_leaky_relu(bx_step *st, bx_tensor *x, float negative_slope);
typedef enum bx_gelu_approx { BX_GELU_EXACT = 0, BX_GELU_TANH = 1 } bx_gelu_approx;
bx_tensor *bx_gelu(bx_step *st, bx_tensor *x, bx_gelu_approx approx);
bx_tensor *bx_sigmoid(bx_step *st, bx_tensor *x);
bx_tensor *bx_tanh(bx_step *st, bx_tensor *x);
bx_tensor *bx_softmax(bx_step *st, bx_tensor *x, int dim);
bx_tensor *bx_log_softmax(bx_step *st, bx_tensor *x, int dim);

/* ---- losses ----------------------------------------------------------------- */
typedef struct bx_cross_entropy_opts {
    const bx_tensor *weight;   /* (C) class weights or NULL */
    int64_t ignore_index;      /* default -100 */
    float label_smoothing;     /* [0, 1] */
    bx_reduction reduction;
} bx_cross_entropy_opts;
#define BX_CROSS_ENTROPY_OPTS_INIT {NULL, -100, 0.0f, BX_REDUCTION_MEAN}
/* x (N,C) or (N,C,d1,...) logits; target i64 (N) or (N,d1,...) class indices.
 * Rule O2 of the golden README (weights, ignore_index, label smoothing). */
bx_tensor *bx_cross_entropy(bx_step *st, bx_tensor *x, bx_tensor *target,
                            const bx_cross_entropy_opts *opts);
/* x = log-probabilities; label_smoothing must be 0. */
bx_tensor *bx_nll_loss(bx_step *st, bx_tensor *x, bx_tensor *target,
                       const bx_cross_entropy_opts *opts);
bx_tensor *bx_mse_loss(bx_step *st, bx_tensor *x, bx_tensor *target, bx_reduction red);
typedef struct bx_bce_opts {
    const bx_tensor *weight;     /* broadcast to x, or NULL */
    const bx_tensor *pos_weight; /* broadcast along the last dim, or NULL */
    bx_reduction reduction;
} bx_bce_opts;
#define BX_BCE_OPTS_INIT {NULL, NULL, BX_REDUCTION_MEAN}
bx_tensor *bx_bce_with_logits(bx_step *st, bx_tensor *x, bx_tensor *target, const bx_bce_opts *opts);

/* ---- convolution and pooling (NCHW) ------------------------------------------ */
typedef struct bx_conv2d_opts {
    int stride[2], padding[2], dilation[2];
    int groups;
    bool padding_same; /* PyTorch padding='same' (stride must be 1) */
} bx_conv2d_opts;
#define BX_CONV2D_OPTS_INIT {{1, 1}, {0, 0}, {1, 1}, 1, false}
/* x (N,C,H,W), w (O, C/groups, kh, kw), b (O) or NULL -> (N,O,H',W'). */
bx_tensor *bx_conv2d(bx_step *st, bx_tensor *x, bx_tensor *w, bx_tensor *b, const bx_conv2d_opts *o);

typedef struct bx_pool2d_opts {
    int kernel[2];
    int stride[2];   /* 0 = kernel size */
    int padding[2];
    int dilation[2]; /* max pool only */
    bool ceil_mode;
    bool count_include_pad; /* avg pool only, default true */
    int divisor_override;   /* avg pool only, 0 = none */
} bx_pool2d_opts;
#define BX_POOL2D_OPTS_INIT {{2, 2}, {0, 0}, {0, 0}, {1, 1}, false, true, 0}
bx_tensor *bx_max_pool2d(bx_step *st, bx_tensor *x, const bx_pool2d_opts *o);
bx_tensor *bx_avg_pool2d(bx_step *st, bx_tensor *x, const bx_pool2d_opts *o);
bx_tensor *bx_adaptive_avg_pool2d(bx_step *st, bx_tensor *x, int64_t out_h, int64_t out_w);

/* ---- normalisation ------------------------------------------------------------ */
/* F.batch_norm: x (N,C), (N,C,L) or (N,C,H,W). training: batch statistics
 * (biased variance for normalising), and when running_mean/var are given they
 * are updated in place: r = (1-momentum)*r + momentum*stat with the unbiased
 * variance (rule O6). !training: running statistics. weight/bias may be NULL. */
bx_tensor *bx_batch_norm(bx_step *st, bx_tensor *x, bx_tensor *running_mean,
                         bx_tensor *running_var, bx_tensor *weight, bx_tensor *bias,
                         bool training, double momentum, double eps);
/* Normalises over the last `nnorm` dims; weight/bias of that trailing shape or NULL. */
bx_tensor *bx_layer_norm(bx_step *st, bx_tensor *x, int nnorm, bx_tensor *weight,
                         bx_tensor *bias, double eps);

/* ---- embedding and dropout -------------------------------------------------------- */
#define BX_NO_PADDING_IDX INT64_MIN
/* idx i64 (any shape), w (num, dim) -> (idx..., dim). Rows at padding_idx get
 * no gradient. */
bx_tensor *bx_embedding(bx_step *st, bx_tensor *idx, bx_tensor *w, int64_t padding_idx);
/* Inverted dropout with the step's RNG; identity when !training or p == 0. */
bx_tensor *bx_dropout(bx_step *st, bx_tensor *x, float p, bool training);

/* ---- reductions ------------------------------------------------------------------- */
/* Over `ndims` dims listed in `dims` (negative allowed); ndims == 0 reduces all. */
bx_tensor *bx_sum(bx_step *st, bx_tensor *x, const int *dims, int ndims, bool keepdim);
bx_tensor *bx_mean(bx_step *st, bx_tensor *x, const int *dims, int ndims, bool keepdim);

/* ---- shape -------------------------------------------------------------------------- */
/* One -1 entry is inferred. A view when x is contiguous, else a copy. */
bx_tensor *bx_reshape(bx_step *st, bx_tensor *x, int ndim, const int64_t *shape);
bx_tensor *bx_flatten(bx_step *st, bx_tensor *x, int start_dim, int end_dim);
bx_tensor *bx_transpose(bx_step *st, bx_tensor *x, int d0, int d1); /* a view */
bx_tensor *bx_permute(bx_step *st, bx_tensor *x, const int *perm);  /* a view, x->ndim entries */
bx_tensor *bx_concat(bx_step *st, bx_tensor *const *xs, int n, int dim);
/* Contiguous copy (or x itself when already contiguous). Differentiable. */
bx_tensor *bx_contiguous(bx_step *st, bx_tensor *x);
/* Same data, no gradient flows back. */
bx_tensor *bx_detach(bx_step *st, bx_tensor *x);

/* Value of a one-element tensor as float (NaN for poison). */
float bx_item(const bx_tensor *t);

#ifdef __cplusplus
}
#endif
#endif
