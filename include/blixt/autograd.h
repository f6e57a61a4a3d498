/* blixt/autograd.h - the step: arena, tape, backward, no-grad scope.
 *
 * Everything one training or inference step creates (activations, tape
 * nodes, saved tensors, temporaries) comes from the step's arena. After
 * bx_step_reset the arena is reused: after the first step a steady-state
 * step allocates nothing. Ops append nodes to the tape while gradients are
 * enabled and some input requires grad; bx_backward walks it in reverse and
 * accumulates into the .grad of every leaf that requires grad (parameters),
 * so several backward calls (one per micro-batch) add up.
 *
 * A failing op sets the step's sticky error (first one wins) and returns
 * the step's poison tensor; ops given a poison input return poison without a
 * new error, so chained expressions never crash. Check bx_step_status()
 * (or the status of bx_backward) once at the end. */
#ifndef BLIXT_AUTOGRAD_H
#define BLIXT_AUTOGRAD_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_step bx_step;

/* New step with an empty arena. Caller owns it (bx_step_free). NULL on NOMEM. */
bx_step *bx_step_new(void);
void bx_step_free(bx_step *st);
/* Forgets every step tensor and the tape, clears the sticky error; keeps the
 * arena's memory for the next step. */
void bx_step_reset(bx_step *st);

/* The sticky error of the step (BX_OK if none) and its message. */
bx_status bx_step_status(const bx_step *st);
const char *bx_step_errmsg(const bx_step *st);
/* Records an error on the step (first error wins) and returns the poison
 * tensor; for user-written ops and modules. */
bx_tensor *bx_step_fail(bx_step *st, bx_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
bool bx_is_poison(const bx_tensor *t);

/* Train/eval flag seen by dropout and batch norm (default: train). */
void bx_step_set_training(bx_step *st, bool training);
bool bx_step_training(const bx_step *st);

/* No-grad scope: nothing is recorded between push and pop. Nestable. */
void bx_no_grad_push(bx_step *st);
void bx_no_grad_pop(bx_step *st);
bool bx_grad_enabled(const bx_step *st);

/* RNG used by ops that draw random numbers (dropout). Owned by the step;
 * the Trainer seeds it. */
bx_rng *bx_step_rng(bx_step *st);

/* An opaque pointer for the layer running the step (the Trainer keeps its
 * per-step context here so bx_log / bx_step_set_loss can find it). */
void bx_step_set_owner(bx_step *st, void *owner);
void *bx_step_owner(const bx_step *st);

/* Bytes currently used / reserved by the arena. */
size_t bx_step_arena_used(const bx_step *st);
size_t bx_step_arena_capacity(const bx_step *st);

/* ---- step tensors -------------------------------------------------------- */
/* Contiguous tensor in the arena, uninitialised / zeroed. On failure the step
 * error is set and the poison tensor returned. */
bx_tensor *bx_step_tensor(bx_step *st, bx_dtype dt, int ndim, const int64_t *shape);
bx_tensor *bx_step_zeros(bx_step *st, bx_dtype dt, int ndim, const int64_t *shape);
/* 0-d f32 constant. */
bx_tensor *bx_scalar(bx_step *st, float v);
/* Raw arena memory (64-byte aligned), NULL + step error on failure. */
void *bx_step_alloc(bx_step *st, size_t bytes);

/* ---- backward ------------------------------------------------------------- */
/* Back-propagates from `loss` (one element) through the tape, accumulating
 * into .grad of every tensor that requires grad. The tape can be walked once
 * per step. Errors: the step's sticky error, BX_ERR_SHAPE (loss not scalar),
 * BX_ERR_STATE (no graph / already walked). */
bx_status bx_backward(bx_step *st, bx_tensor *loss);
/* Back-propagates from any tensor y given its upstream gradient gy (same
 * shape, f32): torch.autograd.backward(y, gy). Same errors as bx_backward. */
bx_status bx_backward_with_grad(bx_step *st, bx_tensor *y, const bx_tensor *gy);

/* ---- parameters ----------------------------------------------------------- */
/* New owned f32 parameter (requires_grad, BX_TF_PARAM), zero-filled; its grad
 * is allocated on first backward. Free with bx_tensor_free. */
bx_tensor *bx_param_new(int ndim, const int64_t *shape);
/* Makes an owned tensor a parameter in place (requires_grad = true). */
void bx_param_mark(bx_tensor *t);
/* Sets the parameter's gradient to zero (keeps the buffer). */
void bx_param_zero_grad(bx_tensor *p);
/* The parameter's gradient buffer, created zero-filled if absent; NULL on NOMEM. */
bx_tensor *bx_param_grad(bx_tensor *p);

#ifdef __cplusplus
}
#endif
#endif
