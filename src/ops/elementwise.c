/* elementwise.c - add/sub/mul/div with PyTorch broadcasting, and the scalar
 * math ops (affine_scalar, neg, exp, log, sqrt, square).
 *
 * All run on bx__ew_apply, so inputs may be any strided view; the output is
 * contiguous. Backward follows rule O1: an input that was broadcast gets the
 * upstream gradient summed over every broadcast dim (bx__reduce_to). The
 * gradient formulas match PyTorch 1.13's derivatives.yaml term for term. */
#include "ops/ops_int.h"
#include "blixt/ops.h"

#include <math.h>
#include <string.h>

BX_EW_KERNEL(k_add, a[i] + b[i])
BX_EW_KERNEL(k_sub, a[i] - b[i])
BX_EW_KERNEL(k_mul, a[i] * b[i])
BX_EW_KERNEL(k_div, a[i] / b[i])
/* div: d/db (a/b) * gy = -gy * ((a/b)/b) = -(gy * (y / b)); a = gy, b = y, c = b */
BX_EW_KERNEL(k_div_gb, -(a[i] * (b[i] / c[i])))
BX_EW_KERNEL(k_affine, a[i] * p[0] + p[1])
BX_EW_KERNEL(k_scale, a[i] * p[0])
BX_EW_KERNEL(k_neg, -a[i])
BX_EW_KERNEL(k_exp, expf(a[i]))
BX_EW_KERNEL(k_log, logf(a[i]))
BX_EW_KERNEL(k_sqrt, sqrtf(a[i]))
BX_EW_KERNEL(k_square, a[i] * a[i])
/* sqrt backward: gy / (2*y) */
BX_EW_KERNEL(k_sqrt_bw, a[i] / (2.0f * b[i]))
/* square backward: gy * (2*x) */
BX_EW_KERNEL(k_square_bw, a[i] * (2.0f * b[i]))

/* Records the step error of a failed engine call (message in bx_errmsg). */
static void engine_fail(bx_step *st, const char *op, bx_status s) {
    if (s != BX_OK) bx_step_fail(st, s, "%s: %s", op, bx_errmsg());
}

/* ---- binary ops -------------------------------------------------------------- */

typedef enum { BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV } bin_kind;
static const char *const bin_name[] = {"add", "sub", "mul", "div"};

/* The gradient buffer of input t of y's node. *direct: t was not broadcast
 * (same element count as y), so gx can be written elementwise in y's order;
 * *acc: add to what gx holds (else gx is fresh and gets overwritten). A fresh
 * buffer that will be reduced into is zero-filled here. */
static bx_tensor *input_grad(bx_step *st, bx_tensor *t, const bx_tensor *y, bool *direct, bool *acc) {
    bool fresh;
    bx_tensor *g = bx__grad_overwrite(st, t, &fresh);
    if (!g) return NULL;
    *direct = bx_numel(g) == bx_numel(y);
    *acc = !fresh;
    if (fresh && !*direct) {
        memset(g->data, 0, sizeof(float) * (size_t)bx_numel(g));
        *acc = true;
    }
    return g;
}

/* gx (+)= reduce_to_x(k(ins)): direct into gx when x was not broadcast, else
 * through an arena temporary of the output's shape. */
static void grad_through(bx_step *st, const char *op, bx_tensor *gx, bool direct, bool acc, bx_tensor *y,
                         bx__ew_kernel k, const float *p, int nin, const bx_tensor *const *ins) {
    if (direct) {
        bx_tensor view = *gx; /* gx seen with y's shape: same elements, same order */
        view.ndim = y->ndim;
        for (int d = 0; d < BX_MAX_DIMS; d++) {
            view.shape[d] = y->shape[d];
            view.stride[d] = y->stride[d];
        }
        engine_fail(st, op, bx__ew_apply(k, p, acc, &view, nin, ins));
        return;
    }
    bx_tensor *tmp = bx__empty_like(st, y);
    if (bx_is_poison(tmp)) return;
    bx_status s = bx__ew_apply(k, p, false, tmp, nin, ins);
    if (s == BX_OK) s = bx__reduce_to(gx, tmp);
    engine_fail(st, op, s);
}

// a (A...), b (B...) -> y (broadcast(A, B)); ga = sum_bcast(dy/da * gy), gb likewise
static void binary_backward(bx_step *st, bx_node *n, bin_kind kind) {
    bx_tensor *a = n->in[0], *b = n->in[1], *y = n->out, *gy = y->grad;
    const char *op = bin_name[kind];
    static const float one = 1.0f, minus_one = -1.0f;
    bool direct, acc;
    bx_tensor *ga = input_grad(st, a, y, &direct, &acc);
    if (ga) {
        if ((kind == BIN_ADD || kind == BIN_SUB) && !direct) {
            engine_fail(st, op, bx__reduce_to(ga, gy));
        } else if (kind == BIN_ADD || kind == BIN_SUB) {
            const bx_tensor *ins[1] = {gy};
            grad_through(st, op, ga, direct, acc, y, k_scale, &one, 1, ins);
        } else {
            const bx_tensor *ins[2] = {gy, b};
            grad_through(st, op, ga, direct, acc, y, kind == BIN_MUL ? k_mul : k_div, NULL, 2, ins);
        }
    }
    bx_tensor *gb = input_grad(st, b, y, &direct, &acc);
    if (gb) {
        if (kind == BIN_ADD && !direct) {
            engine_fail(st, op, bx__reduce_to(gb, gy));
        } else if (kind == BIN_SUB && !direct) {
            engine_fail(st, op, bx__reduce_to_scaled(gb, gy, -1.0f));
        } else if (kind == BIN_ADD || kind == BIN_SUB) {
            const bx_tensor *ins[1] = {gy};
            grad_through(st, op, gb, direct, acc, y, k_scale, kind == BIN_ADD ? &one : &minus_one, 1, ins);
        } else if (kind == BIN_MUL) {
            const bx_tensor *ins[2] = {gy, a};
            grad_through(st, op, gb, direct, acc, y, k_mul, NULL, 2, ins);
        } else {
            const bx_tensor *ins[3] = {gy, y, b};
            grad_through(st, op, gb, direct, acc, y, k_div_gb, NULL, 3, ins);
        }
    }
}

static void add_backward(bx_step *st, bx_node *n) { binary_backward(st, n, BIN_ADD); }
static void sub_backward(bx_step *st, bx_node *n) { binary_backward(st, n, BIN_SUB); }
static void mul_backward(bx_step *st, bx_node *n) { binary_backward(st, n, BIN_MUL); }
static void div_backward(bx_step *st, bx_node *n) { binary_backward(st, n, BIN_DIV); }

static bx_tensor *binary(bx_step *st, bx_tensor *a, bx_tensor *b, bin_kind kind) {
    static const bx__ew_kernel kern[] = {k_add, k_sub, k_mul, k_div};
    static const bx__backward_fn bw[] = {add_backward, sub_backward, mul_backward, div_backward};
    const char *op = bin_name[kind];
    if (!bx__ok2(st, op, a, b)) return bx__poison(st);
    if (!bx__need_f32(st, op, "a", a) || !bx__need_f32(st, op, "b", b)) return bx__poison(st);
    int64_t shape[BX_MAX_DIMS];
    int nd = bx__broadcast_shape(a, b, shape);
    if (nd < 0) {
        char sa[64], sb[64];
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: a %s and b %s cannot be broadcast together", op,
                            bx_shape_str(a, sa, sizeof sa), bx_shape_str(b, sb, sizeof sb));
    }
    bx_tensor *y = bx_step_tensor(st, BX_F32, nd, shape);
    if (bx_is_poison(y)) return y;
    const bx_tensor *ins[2] = {a, b};
    bx_status s = bx__ew_apply(kern[kind], NULL, false, y, 2, ins);
    if (s != BX_OK) return bx_step_fail(st, s, "%s: %s", op, bx_errmsg());
    bx_tensor *in[2] = {a, b};
    bx__record(st, op, bw[kind], y, 2, in, 0, NULL);
    return y;
}

/* y = a + b, broadcasting. Returns a step tensor; poison + step error on a
 * dtype or shape mismatch ("add: a (3,2) and b (4,2) cannot be broadcast"). */
bx_tensor *bx_add(bx_step *st, bx_tensor *a, bx_tensor *b) { return binary(st, a, b, BIN_ADD); }
/* y = a - b, broadcasting; errors as bx_add. */
bx_tensor *bx_sub(bx_step *st, bx_tensor *a, bx_tensor *b) { return binary(st, a, b, BIN_SUB); }
/* y = a * b, broadcasting; errors as bx_add. */
bx_tensor *bx_mul(bx_step *st, bx_tensor *a, bx_tensor *b) { return binary(st, a, b, BIN_MUL); }
/* y = a / b, broadcasting; errors as bx_add. */
bx_tensor *bx_div(bx_step *st, bx_tensor *a, bx_tensor *b) { return binary(st, a, b, BIN_DIV); }

/* ---- unary ops ----------------------------------------------------------------- */

typedef struct unary_ctx {
    float p[2];
} unary_ctx;

/* Shared forward of the unary ops: y = k(x) (x any strides) and a node with
 * the kernel parameters saved. */
static bx_tensor *unary(bx_step *st, const char *op, bx_tensor *x, bx__ew_kernel k, const float *p,
                        bx__backward_fn bw) {
    if (!bx__ok1(st, op, x)) return bx__poison(st);
    if (!bx__need_f32(st, op, "x", x)) return bx__poison(st);
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    const bx_tensor *ins[1] = {x};
    bx_status s = bx__ew_apply(k, p, false, y, 1, ins);
    if (s != BX_OK) return bx_step_fail(st, s, "%s: %s", op, bx_errmsg());
    void *ctxp = NULL;
    if (bx__record(st, op, bw, y, 1, &x, sizeof(unary_ctx), &ctxp) && p) {
        unary_ctx *ctx = ctxp;
        ctx->p[0] = p[0];
        ctx->p[1] = p[1];
    }
    return y;
}

/* gx += k(a, b) where a, b are chosen by the caller (gy and y or x); gx = ...
 * when x has no gradient yet. */
static void unary_grad(bx_step *st, bx_node *n, bx__ew_kernel k, const float *p, const bx_tensor *a,
                       const bx_tensor *b) {
    bool fresh;
    bx_tensor *gx = bx__grad_overwrite(st, n->in[0], &fresh);
    if (!gx) return;
    const bx_tensor *ins[2] = {a, b};
    engine_fail(st, n->op, bx__ew_apply(k, p, !fresh, gx, b ? 2 : 1, ins));
}

// x -> y = x*s + c; gx += gy*s
static void affine_backward(bx_step *st, bx_node *n) {
    unary_ctx *ctx = n->ctx;
    unary_grad(st, n, k_scale, ctx->p, n->out->grad, NULL);
}
/* The unary ops below return a new contiguous step tensor of x's shape
 * (x may be any strided view); poison + step error when x is not f32. */
/* y = a*s + c. */
bx_tensor *bx_affine_scalar(bx_step *st, bx_tensor *a, float s, float c) {
    float p[2] = {s, c};
    return unary(st, "affine_scalar", a, k_affine, p, affine_backward);
}

// x -> y = -x; gx += -gy
static void neg_backward(bx_step *st, bx_node *n) { unary_grad(st, n, k_neg, NULL, n->out->grad, NULL); }
/* y = -a. */
bx_tensor *bx_neg(bx_step *st, bx_tensor *a) { return unary(st, "neg", a, k_neg, NULL, neg_backward); }

// x -> y = exp(x); gx += gy*y
static void exp_backward(bx_step *st, bx_node *n) { unary_grad(st, n, k_mul, NULL, n->out->grad, n->out); }
/* y = exp(a). */
bx_tensor *bx_exp(bx_step *st, bx_tensor *a) { return unary(st, "exp", a, k_exp, NULL, exp_backward); }

// x -> y = log(x); gx += gy/x
static void log_backward(bx_step *st, bx_node *n) { unary_grad(st, n, k_div, NULL, n->out->grad, n->in[0]); }
/* y = log(a). */
bx_tensor *bx_log(bx_step *st, bx_tensor *a) { return unary(st, "log", a, k_log, NULL, log_backward); }

// x -> y = sqrt(x); gx += gy/(2y)
static void sqrt_backward(bx_step *st, bx_node *n) { unary_grad(st, n, k_sqrt_bw, NULL, n->out->grad, n->out); }
/* y = sqrt(a). */
bx_tensor *bx_sqrt(bx_step *st, bx_tensor *a) { return unary(st, "sqrt", a, k_sqrt, NULL, sqrt_backward); }

// x -> y = x*x; gx += gy*(2x)
static void square_backward(bx_step *st, bx_node *n) {
    unary_grad(st, n, k_square_bw, NULL, n->out->grad, n->in[0]);
}
/* y = a*a. */
bx_tensor *bx_square(bx_step *st, bx_tensor *a) { return unary(st, "square", a, k_square, NULL, square_backward); }
