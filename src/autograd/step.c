/* step.c - step lifecycle, arena tensors, tape recording, backward. */
#include "autograd/autograd_int.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

bx_step *bx_step_new(void) {
    bx_step *st = bx__calloc(sizeof *st);
    if (!st) return NULL;
    bx__arena_init(&st->arena);
    st->training = true;
    st->poison.flags = BX_TF_POISON;
    st->poison.ndim = 0;
    bx_rng_init(&st->rng, 0);
    return st;
}

void bx_step_free(bx_step *st) {
    if (!st) return;
    bx__arena_destroy(&st->arena);
    bx__free(st);
}

void bx_step_reset(bx_step *st) {
    bx__arena_reset(&st->arena);
    st->tape = NULL;
    st->walked = false;
    st->err = BX_OK;
    st->errmsg[0] = '\0';
    st->no_grad = 0;
}

bx_status bx_step_status(const bx_step *st) { return st->err; }
const char *bx_step_errmsg(const bx_step *st) { return st->errmsg; }

bx_tensor *bx_step_fail(bx_step *st, bx_status s, const char *fmt, ...) {
    if (st->err == BX_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(st->errmsg, sizeof st->errmsg, fmt, ap);
        va_end(ap);
        st->err = s;
        bx__error(s, "%s", st->errmsg);
    }
    return &st->poison;
}

bool bx_is_poison(const bx_tensor *t) { return !t || (t->flags & BX_TF_POISON); }

void bx_step_set_training(bx_step *st, bool training) { st->training = training; }
bool bx_step_training(const bx_step *st) { return st->training; }
void bx_no_grad_push(bx_step *st) { st->no_grad++; }
void bx_no_grad_pop(bx_step *st) {
    if (st->no_grad > 0) st->no_grad--;
}
bool bx_grad_enabled(const bx_step *st) { return st->no_grad == 0; }
bx_rng *bx_step_rng(bx_step *st) { return &st->rng; }
void bx_step_set_owner(bx_step *st, void *owner) { st->owner = owner; }
void *bx_step_owner(const bx_step *st) { return st->owner; }
size_t bx_step_arena_used(const bx_step *st) { return st->arena.used_total; }
size_t bx_step_arena_capacity(const bx_step *st) { return st->arena.capacity; }

void *bx_step_alloc(bx_step *st, size_t bytes) {
    void *p = bx__arena_alloc(&st->arena, bytes);
    if (!p) bx_step_fail(st, BX_ERR_NOMEM, "step arena: out of memory allocating %zu bytes", bytes);
    return p;
}

static bx_tensor *arena_header(bx_step *st) {
    bx_tensor *t = bx_step_alloc(st, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    t->flags = BX_TF_ARENA;
    t->generation = st->arena.generation;
    return t;
}

bx_tensor *bx_step_tensor(bx_step *st, bx_dtype dt, int ndim, const int64_t *shape) {
    bx_tensor *t = arena_header(st);
    if (!t) return &st->poison;
    if (bx__set_shape(t, dt, ndim, shape) != BX_OK) return bx_step_fail(st, BX_ERR_INVALID, "%s", bx_errmsg());
    size_t bytes = (size_t)bx_numel(t) * bx_dtype_size(dt);
    t->data = bx_step_alloc(st, bytes ? bytes : 1);
    if (!t->data) return &st->poison;
    return t;
}

bx_tensor *bx_step_zeros(bx_step *st, bx_dtype dt, int ndim, const int64_t *shape) {
    bx_tensor *t = bx_step_tensor(st, dt, ndim, shape);
    if (!bx_is_poison(t)) memset(t->data, 0, (size_t)bx_numel(t) * bx_dtype_size(dt));
    return t;
}

bx_tensor *bx_scalar(bx_step *st, float v) {
    bx_tensor *t = bx_step_tensor(st, BX_F32, 0, NULL);
    if (!bx_is_poison(t)) *(float *)t->data = v;
    return t;
}

bx_tensor *bx__empty_like(bx_step *st, const bx_tensor *x) {
    return bx_step_tensor(st, x->dtype, x->ndim, x->shape);
}

bx_tensor *bx__view(bx_step *st, const bx_tensor *base, void *data, int ndim, const int64_t *shape,
                    const int64_t *stride) {
    bx_tensor *t = arena_header(st);
    if (!t) return &st->poison;
    t->data = data;
    t->ndim = ndim;
    t->dtype = base->dtype;
    t->device = base->device;
    for (int i = 0; i < BX_MAX_DIMS; i++) {
        t->shape[i] = i < ndim ? shape[i] : 1;
        t->stride[i] = i < ndim ? stride[i] : 0;
    }
    return t;
}

bool bx__ok(bx_step *st, const char *op, int n, bx_tensor *const *ts) {
    for (int i = 0; i < n; i++) {
        const bx_tensor *t = ts[i];
        if (!t) {
            bx_step_fail(st, BX_ERR_INVALID, "%s: input %d is NULL", op, i);
            return false;
        }
        if (t->flags & BX_TF_POISON) {
            if (st->err == BX_OK) bx_step_fail(st, BX_ERR_INVALID, "%s: input %d is the result of a failed op", op, i);
            return false;
        }
        if ((t->flags & BX_TF_ARENA) && t->generation != st->arena.generation) {
            bx_step_fail(st, BX_ERR_STATE, "%s: input %d is a step tensor used after bx_step_reset", op, i);
            return false;
        }
        if (t->device != BX_CPU) {
            bx_step_fail(st, BX_ERR_UNSUPPORTED, "%s: input %d is on a device this build cannot run", op, i);
            return false;
        }
    }
    return true;
}

bool bx__needs_grad(const bx_step *st, int n, bx_tensor *const *in) {
    if (st->no_grad) return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

bx_node *bx__record(bx_step *st, const char *op, bx__backward_fn fn, bx_tensor *out, int nin,
                    bx_tensor *const *in, size_t ctx_bytes, void **ctx) {
    if (ctx) *ctx = NULL;
    if (!bx__needs_grad(st, nin, in) || bx_is_poison(out)) return NULL;
    bx_node *n = bx_step_alloc(st, sizeof *n);
    bx_tensor **ins = bx_step_alloc(st, sizeof *ins * (size_t)(nin ? nin : 1));
    if (!n || !ins) return NULL;
    memcpy(ins, in, sizeof *ins * (size_t)nin);
    n->backward = fn;
    n->op = op;
    n->out = out;
    n->in = ins;
    n->nin = nin;
    n->ctx = NULL;
    if (ctx_bytes) {
        n->ctx = bx_step_alloc(st, ctx_bytes);
        if (!n->ctx) return NULL;
        memset(n->ctx, 0, ctx_bytes);
        if (ctx) *ctx = n->ctx;
    }
    n->prev = st->tape;
    st->tape = n;
    out->requires_grad = true;
    out->node = n;
    return n;
}

bx_tensor *bx_param_grad(bx_tensor *p) {
    if (!p->grad) {
        p->grad = bx_tensor_zeros(p->dtype, p->ndim, p->shape);
    }
    return p->grad;
}

bx_tensor *bx__grad(bx_step *st, bx_tensor *t) {
    if (!t->requires_grad) return NULL;
    if (t->grad) return t->grad;
    if (!(t->flags & BX_TF_ARENA)) {
        bx_tensor *g = bx_param_grad(t);
        if (!g) bx_step_fail(st, BX_ERR_NOMEM, "backward: no memory for a parameter gradient");
        return g;
    }
    bx_tensor *g = bx_step_zeros(st, t->dtype, t->ndim, t->shape);
    if (bx_is_poison(g)) return NULL;
    t->grad = g;
    return g;
}

static bx_status walk(bx_step *st) {
    st->walked = true;
    for (bx_node *n = st->tape; n; n = n->prev) {
        if (!n->out->grad) continue; /* nothing flowed into this node */
        n->backward(st, n);
        if (st->err != BX_OK) return bx__error(st->err, "backward of %s: %s", n->op, st->errmsg);
    }
    return BX_OK;
}

static bx_status backward_check(bx_step *st, bx_tensor *y) {
    if (st->err != BX_OK) return bx__error(st->err, "%s", st->errmsg);
    if (!y || bx_is_poison(y)) return bx__error(BX_ERR_INVALID, "backward: tensor is NULL or poison");
    if (st->walked) return bx__error(BX_ERR_STATE, "backward: the tape of this step was already walked");
    if (!y->requires_grad)
        return bx__error(BX_ERR_STATE, "backward: tensor does not require grad (no parameter reached it)");
    return BX_OK;
}

bx_tensor *bx__grad_overwrite(bx_step *st, bx_tensor *t, bool *fresh) {
    *fresh = false;
    if (!t->requires_grad) return NULL;
    if (!t->grad && (t->flags & BX_TF_ARENA)) {
        bx_tensor *g = bx_step_tensor(st, t->dtype, t->ndim, t->shape);
        if (bx_is_poison(g)) return NULL;
        t->grad = g;
        *fresh = true;
        return g;
    }
    return bx__grad(st, t);
}

bx_status bx_backward(bx_step *st, bx_tensor *loss) {
    bx_status s = backward_check(st, loss);
    if (s != BX_OK) return s;
    if (bx_numel(loss) != 1) {
        char b[64];
        return bx__error(BX_ERR_SHAPE, "backward: loss must have one element, got shape %s",
                         bx_shape_str(loss, b, sizeof b));
    }
    bx_tensor *g = bx__grad(st, loss);
    if (!g) return bx__error(st->err ? st->err : BX_ERR_NOMEM, "backward: %s", st->errmsg);
    *(float *)g->data += 1.0f;
    return walk(st);
}

bx_status bx_backward_with_grad(bx_step *st, bx_tensor *y, const bx_tensor *gy) {
    bx_status s = backward_check(st, y);
    if (s != BX_OK) return s;
    if (!gy || bx_numel(gy) != bx_numel(y) || gy->dtype != BX_F32) {
        char a[64], b[64];
        return bx__error(BX_ERR_SHAPE, "backward: gradient %s does not match tensor %s",
                         gy ? bx_shape_str(gy, a, sizeof a) : "(null)", bx_shape_str(y, b, sizeof b));
    }
    bx_tensor *g = bx__grad(st, y);
    if (!g) return bx__error(st->err ? st->err : BX_ERR_NOMEM, "backward: %s", st->errmsg);
    bx_tensor view = *gy;
    for (int i = 0; i < BX_MAX_DIMS; i++) view.shape[i] = g->shape[i];
    view.ndim = g->ndim;
    if (!bx_is_contiguous(gy)) return bx__error(BX_ERR_INVALID, "backward: gradient must be contiguous");
    {
        int64_t s1 = 1;
        for (int i = view.ndim - 1; i >= 0; i--) { view.stride[i] = s1; s1 *= view.shape[i]; }
    }
    bx__acc_f32(g, &view);
    return walk(st);
}

bx_tensor *bx_param_new(int ndim, const int64_t *shape) {
    bx_tensor *p = bx_tensor_zeros(BX_F32, ndim, shape);
    if (p) bx_param_mark(p);
    return p;
}

void bx_param_mark(bx_tensor *t) {
    t->flags |= BX_TF_PARAM;
    t->requires_grad = true;
}

void bx_param_zero_grad(bx_tensor *p) {
    if (p->grad) memset(p->grad->data, 0, (size_t)bx_numel(p->grad) * bx_dtype_size(p->grad->dtype));
}
