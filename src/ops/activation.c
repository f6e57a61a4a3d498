/* activation.c - relu (the reference pattern for elementwise unary ops). */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

/* x (any) -> y = max(x, 0); dy/dx = 1 where x > 0 */
static void relu_backward(bx_step *st, bx_node *n) {
    bx_tensor *x = n->in[0];
    bx_tensor *gx = bx__grad(st, x);
    if (!gx) return;
    const float *y = n->out->data, *gy = n->out->grad->data;
    float *g = gx->data;
    int64_t len = bx_numel(x);
#pragma omp simd
    for (int64_t i = 0; i < len; i++) g[i] += y[i] > 0.0f ? gy[i] : 0.0f;
}

bx_tensor *bx_relu(bx_step *st, bx_tensor *x) {
    if (!bx__ok1(st, "relu", x)) return bx__poison(st);
    if (x->dtype != BX_F32) return bx_step_fail(st, BX_ERR_SHAPE, "relu: x must be f32, got %s", bx_dtype_name(x->dtype));
    x = bx_contiguous(st, x);
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    const float *xs = x->data;
    float *ys = y->data;
    int64_t len = bx_numel(x);
#pragma omp simd
    for (int64_t i = 0; i < len; i++) ys[i] = xs[i] > 0.0f ? xs[i] : 0.0f;
    bx__record(st, "relu", relu_backward, y, 1, &x, 0, NULL);
    return y;
}
