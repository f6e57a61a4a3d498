/* autograd_int.h - the step structure and the tape API used by every op.
 *
 * Writing an op (see src/ops/activation.c for the pattern):
 *
 *   bx_tensor *bx_relu(bx_step *st, bx_tensor *x) {
 *       if (!bx__ok1(st, "relu", x)) return bx__poison(st);  // poison / NULL / stale
 *       bx_tensor *y = bx__empty_like(st, x);               // arena output
 *       ... forward kernel ...
 *       bx__record(st, "relu", relu_backward, y, 1, &x, 0, NULL); // no-op unless grad needed
 *       return y;
 *   }
 *   static void relu_backward(bx_step *st, bx_node *n) {
 *       bx_tensor *gx = bx__grad(st, n->in[0]);   // NULL if that input needs no grad
 *       if (gx) ... gx += n->out->grad * (x > 0)  // always accumulate (+=)
 *   }
 */
#ifndef BLIXT_AUTOGRAD_INT_H
#define BLIXT_AUTOGRAD_INT_H

#include "blixt/autograd.h"
#include "core/arena.h"
#include "tensor/tensor_int.h"

typedef struct bx_node bx_node;
typedef void (*bx__backward_fn)(bx_step *st, bx_node *n);

struct bx_node {
    bx__backward_fn backward;
    const char *op;      /* static string, for error messages */
    bx_tensor *out;
    bx_tensor **in;      /* nin inputs (arena array) */
    int nin;
    void *ctx;           /* op-specific saved data (arena) */
    bx_node *prev;       /* previous node on the tape */
};

struct bx_step {
    bx__arena arena;
    bx_node *tape;        /* last recorded node */
    int no_grad;          /* no-grad nesting depth */
    bool training;
    bool walked;          /* backward already ran on this tape */
    bx_status err;
    char errmsg[512];
    bx_tensor poison;
    bx_rng rng;
    void *owner;          /* the Trainer's step context, or NULL */
};

/* Returns the poison tensor (after an error was recorded). */
static inline bx_tensor *bx__poison(bx_step *st) { return &st->poison; }

/* True when every given tensor is usable (non-NULL, not poison, not stale).
 * A NULL or stale tensor records an error; a poison one does not (the error
 * was recorded where it arose). */
bool bx__ok(bx_step *st, const char *op, int n, bx_tensor *const *ts);
static inline bool bx__ok1(bx_step *st, const char *op, bx_tensor *a) { return bx__ok(st, op, 1, &a); }
static inline bool bx__ok2(bx_step *st, const char *op, bx_tensor *a, bx_tensor *b) {
    bx_tensor *ts[2] = {a, b};
    return bx__ok(st, op, 2, ts);
}

/* Step tensor with x's shape and dtype (contiguous, uninitialised). */
bx_tensor *bx__empty_like(bx_step *st, const bx_tensor *x);
/* Step tensor header for a view of existing memory (no data copy). */
bx_tensor *bx__view(bx_step *st, const bx_tensor *base, void *data, int ndim,
                    const int64_t *shape, const int64_t *stride);

/* True when an op on these inputs must record a node. */
bool bx__needs_grad(const bx_step *st, int n, bx_tensor *const *in);
/* Records a tape node when needed (grad enabled, some input requires grad):
 * copies the input list, sets out->requires_grad/out->node. ctx_bytes > 0
 * allocates a zeroed ctx block, returned through *ctx (NULL when no node is
 * recorded). Returns the node or NULL. */
bx_node *bx__record(bx_step *st, const char *op, bx__backward_fn fn, bx_tensor *out, int nin,
                    bx_tensor *const *in, size_t ctx_bytes, void **ctx);
/* Gradient buffer of t (contiguous, t's shape), created zero-filled on first
 * use (arena for step tensors, owned for parameters). NULL when t does not
 * require grad. */
bx_tensor *bx__grad(bx_step *st, bx_tensor *t);
/* As bx__grad for a writer that will cover the whole buffer exactly once:
 * a step tensor's first gradient buffer is left uninitialised and *fresh is
 * set (write, don't accumulate: no zero fill); otherwise *fresh is false and
 * the caller accumulates. NULL when t needs no gradient. */
bx_tensor *bx__grad_overwrite(bx_step *st, bx_tensor *t, bool *fresh);

#endif
