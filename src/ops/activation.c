/* activation.c - relu, leaky_relu, gelu (exact and tanh), sigmoid, tanh.
 *
 * Elementwise on bx__ew_apply (x may be a strided view; y is contiguous).
 * Forward and backward formulas are PyTorch 1.13's CPU kernels, operation for
 * operation, so results agree to a few ulp. */
#include "ops/ops_int.h"
#include "blixt/ops.h"

#include <math.h>

/* gelu constants (golden rule O3) */
#define GELU_SQRT1_2 0.70710678118654752440f               /* 1/sqrt(2) */
#define GELU_PDF_K 0.39894228040143267794f                 /* 1/sqrt(2*pi) */
#define GELU_BETA 0.79788456080286535588f                  /* sqrt(2/pi) */
#define GELU_KAPPA 0.044715f

/* relu: NaN propagates (torch clamp_min); the gradient passes where y > 0 */
BX_EW_KERNEL(k_relu, a[i] < 0.0f ? 0.0f : a[i])
BX_EW_KERNEL(k_relu_bw, b[i] <= 0.0f ? 0.0f : a[i]) /* a = gy, b = y */
BX_EW_KERNEL(k_leaky, a[i] > 0.0f ? a[i] : a[i] * p[0])
BX_EW_KERNEL(k_leaky_bw, b[i] > 0.0f ? a[i] : a[i] * p[0]) /* a = gy, b = x */
BX_EW_KERNEL(k_gelu, a[i] * 0.5f * (1.0f + erff(a[i] * GELU_SQRT1_2)))
BX_EW_KERNEL(k_gelu_bw, /* a = gy, b = x: gy * (cdf(x) + x * pdf(x)) */
             a[i] * (0.5f * (1.0f + erff(b[i] * GELU_SQRT1_2)) +
                     b[i] * (GELU_PDF_K * expf(b[i] * b[i] * -0.5f))))

static inline float gelu_tanh_f(float x) {
    float inner = GELU_BETA * (x + GELU_KAPPA * (x * x * x));
    return 0.5f * x * (1.0f + tanhf(inner));
}
static inline float gelu_tanh_d(float x) {
    float x_sq = x * x, x_cube = x_sq * x;
    float inner = GELU_BETA * (x + GELU_KAPPA * x_cube);
    float t = tanhf(inner);
    float left = 0.5f * x, right = 1.0f + t;
    float left_d = 0.5f * right;
    float tanh_d = 1.0f - t * t;
    float inner_d = GELU_BETA * (1.0f + 3.0f * GELU_KAPPA * x_sq);
    return left_d + left * tanh_d * inner_d;
}
BX_EW_KERNEL(k_gelu_tanh, gelu_tanh_f(a[i]))
BX_EW_KERNEL(k_gelu_tanh_bw, a[i] * gelu_tanh_d(b[i]))
BX_EW_KERNEL(k_sigmoid, 1.0f / (1.0f + expf(-a[i])))
BX_EW_KERNEL(k_sigmoid_bw, a[i] * (1.0f - b[i]) * b[i]) /* a = gy, b = y */
BX_EW_KERNEL(k_tanh, tanhf(a[i]))
BX_EW_KERNEL(k_tanh_bw, a[i] * (1.0f - b[i] * b[i])) /* a = gy, b = y */

typedef struct act_ctx {
    float p[1];
    bx__ew_kernel bw;
    bool uses_x; /* backward reads x (else y) */
} act_ctx;

// x (any) -> y (same shape); gx += bw(gy, x or y) (gx = ... when x has no gradient yet)
static void act_backward(bx_step *st, bx_node *n) {
    act_ctx *ctx = n->ctx;
    bool fresh;
    bx_tensor *gx = bx__grad_overwrite(st, n->in[0], &fresh);
    if (!gx) return;
    const bx_tensor *ins[2] = {n->out->grad, ctx->uses_x ? n->in[0] : n->out};
    bx_status s = bx__ew_apply(ctx->bw, ctx->p, !fresh, gx, 2, ins);
    if (s != BX_OK) bx_step_fail(st, s, "%s: %s", n->op, bx_errmsg());
}

static bx_tensor *activation(bx_step *st, const char *op, bx_tensor *x, bx__ew_kernel fw, bx__ew_kernel bw,
                             bool uses_x, float p0) {
    if (!bx__ok1(st, op, x)) return bx__poison(st);
    if (!bx__need_f32(st, op, "x", x)) return bx__poison(st);
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    const bx_tensor *ins[1] = {x};
    float p[1] = {p0};
    bx_status s = bx__ew_apply(fw, p, false, y, 1, ins);
    if (s != BX_OK) return bx_step_fail(st, s, "%s: %s", op, bx_errmsg());
    void *ctxp = NULL;
    if (bx__record(st, op, act_backward, y, 1, &x, sizeof(act_ctx), &ctxp)) {
        act_ctx *ctx = ctxp;
        ctx->p[0] = p0;
        ctx->bw = bw;
        ctx->uses_x = uses_x;
    }
    return y;
}

/* Each activation returns a new contiguous step tensor of x's shape (x may be
 * any strided view); poison + step error when x is not f32. */

/* y = max(x, 0); gradient where y > 0. */
bx_tensor *bx_relu(bx_step *st, bx_tensor *x) { return activation(st, "relu", x, k_relu, k_relu_bw, false, 0.0f); }

/* y = x > 0 ? x : x*negative_slope. */
bx_tensor *bx_leaky_relu(bx_step *st, bx_tensor *x, float negative_slope) {
    return activation(st, "leaky_relu", x, k_leaky, k_leaky_bw, true, negative_slope);
}

/* y = 0.5*x*(1+erf(x/sqrt(2))) (BX_GELU_EXACT) or
 * 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3))) (BX_GELU_TANH). */
bx_tensor *bx_gelu(bx_step *st, bx_tensor *x, bx_gelu_approx approx) {
    if (approx == BX_GELU_TANH) return activation(st, "gelu", x, k_gelu_tanh, k_gelu_tanh_bw, true, 0.0f);
    if (approx != BX_GELU_EXACT) return bx_step_fail(st, BX_ERR_INVALID, "gelu: unknown approximation %d", (int)approx);
    return activation(st, "gelu", x, k_gelu, k_gelu_bw, true, 0.0f);
}

/* y = 1/(1+exp(-x)). */
bx_tensor *bx_sigmoid(bx_step *st, bx_tensor *x) {
    return activation(st, "sigmoid", x, k_sigmoid, k_sigmoid_bw, false, 0.0f);
}

/* y = tanh(x). */
bx_tensor *bx_tanh(bx_step *st, bx_tensor *x) { return activation(st, "tanh", x, k_tanh, k_tanh_bw, false, 0.0f); }
