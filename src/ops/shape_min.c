/* shape_min.c - contiguous / detach / item: the minimal shape ops others need. */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

#include <math.h>

/* x (strided) -> y contiguous copy; gx += gy */
static void contiguous_backward(bx_step *st, bx_node *n) {
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (gx) bx__acc_f32(gx, n->out->grad);
}

bx_tensor *bx_contiguous(bx_step *st, bx_tensor *x) {
    if (!bx__ok1(st, "contiguous", x)) return bx__poison(st);
    if (bx_is_contiguous(x)) return x;
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    bx_copy(y, x);
    if (x->dtype == BX_F32) bx__record(st, "contiguous", contiguous_backward, y, 1, &x, 0, NULL);
    return y;
}

bx_tensor *bx_detach(bx_step *st, bx_tensor *x) {
    if (!bx__ok1(st, "detach", x)) return bx__poison(st);
    return bx__view(st, x, x->data, x->ndim, x->shape, x->stride);
}

float bx_item(const bx_tensor *t) {
    if (bx_is_poison(t) || bx_numel(t) < 1) return NAN;
    return (float)bx_get(t, 0);
}
