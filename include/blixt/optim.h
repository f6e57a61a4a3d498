/* blixt/optim.h - optimizers: SGD, Adam, AdamW, RMSprop with param groups.
 *
 * The math is torch 1.13's single-tensor path (float32 tensors, double
 * hyper-parameters, bias corrections in double). An optimizer holds one or
 * more param groups; each group has its own hyper-parameters, taken from the
 * constructor's defaults unless the group overrides them, and may carry
 * extra numeric keys that schedulers and callbacks set ("initial_lr",
 * "swa_lr", "max_lr", ...), exactly like torch's param_group dicts.
 *
 *     bx_adam_opts ao = BX_ADAM_OPTS_INIT;
 *     ao.lr = 1e-2;
 *     bx_optimizer *opt = bx_adam_new(&ao);
 *     bx_optimizer_add_group(opt, params, nparams, NULL);      // defaults
 *     bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
 *     g.lr = 1e-3; g.name = "head";
 *     bx_optimizer_add_group(opt, head_params, nhead, &g);     // lr overridden
 *     ... backward ...; bx_optimizer_step(opt); bx_optimizer_zero_grad(opt);
 *
 * Parameters are borrowed: they must outlive the optimizer. The optimizer owns
 * its state tensors (created lazily on the first step that sees a gradient);
 * after that, bx_optimizer_step allocates nothing. */
#ifndef BLIXT_OPTIM_H
#define BLIXT_OPTIM_H

#include "state.h"
#include "tensor.h"

#include <math.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_optimizer bx_optimizer;

/* ---- constructors ----------------------------------------------------------
 * Each takes the defaults every group starts from (torch's constructor
 * arguments); NULL means the *_OPTS_INIT values. The new optimizer has no
 * groups yet: add them with bx_optimizer_add_group. Caller owns the result
 * (bx_optimizer_free). NULL on error, with bx_errmsg() naming the bad option:
 * BX_ERR_INVALID for an out-of-range value (negative lr, momentum, eps,
 * weight decay; betas outside [0,1); nesterov without momentum > 0 and zero
 * dampening; SGD without lr > 0), BX_ERR_NOMEM. */

typedef struct bx_sgd_opts {
    double lr;           /* required: torch has no default (> 0) */
    double momentum;     /* 0 */
    double dampening;    /* 0 */
    double weight_decay; /* 0 (L2 added to the gradient) */
    bool nesterov;       /* false; needs momentum > 0 and dampening 0 */
    bool maximize;       /* false */
} bx_sgd_opts;
#define BX_SGD_OPTS_INIT {0.0, 0.0, 0.0, 0.0, false, false}

typedef struct bx_adam_opts {
    double lr;           /* 1e-3 */
    double betas[2];     /* (0.9, 0.999) */
    double eps;          /* 1e-8, added after the bias-correction division */
    double weight_decay; /* Adam: 0 (L2); AdamW: 1e-2 (decoupled) */
    bool amsgrad;        /* false */
    bool maximize;       /* false */
} bx_adam_opts;
#define BX_ADAM_OPTS_INIT {1e-3, {0.9, 0.999}, 1e-8, 0.0, false, false}
#define BX_ADAMW_OPTS_INIT {1e-3, {0.9, 0.999}, 1e-8, 1e-2, false, false}

typedef struct bx_rmsprop_opts {
    double lr;           /* 1e-2 */
    double alpha;        /* 0.99 */
    double eps;          /* 1e-8 */
    double weight_decay; /* 0 */
    double momentum;     /* 0 */
    bool centered;       /* false */
    bool maximize;       /* false */
} bx_rmsprop_opts;
#define BX_RMSPROP_OPTS_INIT {1e-2, 0.99, 1e-8, 0.0, 0.0, false, false}

bx_optimizer *bx_sgd_new(const bx_sgd_opts *defaults);
bx_optimizer *bx_adam_new(const bx_adam_opts *defaults);  /* NULL: BX_ADAM_OPTS_INIT */
bx_optimizer *bx_adamw_new(const bx_adam_opts *defaults); /* NULL: BX_ADAMW_OPTS_INIT */
bx_optimizer *bx_rmsprop_new(const bx_rmsprop_opts *defaults);
/* Frees the optimizer and its state (not the parameters). NULL is a no-op. */
void bx_optimizer_free(bx_optimizer *o);

/* ---- param groups ------------------------------------------------------------
 * Per-group overrides: a field left at its INIT value (NAN for numbers, -1
 * for flags) takes the optimizer's default. Setting a field the optimizer
 * type does not have (alpha for SGD, betas for RMSprop, ...) is an error. */
typedef struct bx_param_group_opts {
    const char *name;    /* optional group name (copied), e.g. for LR monitors */
    double lr;
    double momentum;     /* SGD, RMSprop */
    double dampening;    /* SGD */
    double weight_decay;
    double betas[2];     /* Adam, AdamW */
    double eps;          /* Adam, AdamW, RMSprop */
    double alpha;        /* RMSprop */
    int nesterov;        /* SGD: -1 unset, 0, 1 */
    int maximize;        /* -1 unset, 0, 1 */
    int amsgrad;         /* Adam, AdamW */
    int centered;        /* RMSprop */
} bx_param_group_opts;
#define BX_PARAM_GROUP_OPTS_INIT \
    {NULL, NAN, NAN, NAN, NAN, {NAN, NAN}, NAN, NAN, -1, -1, -1, -1}

/* Adds a group holding params[0..n) (borrowed; f32, contiguous, owned
 * tensors). May be called at any time, also after steps (fine-tuning
 * callbacks unfreeze layers that way). overrides may be NULL.
 * Errors: BX_ERR_INVALID (n < 1, a NULL or non-f32/non-contiguous parameter,
 * a parameter already in this or another group - compared by identity -, an
 * override the optimizer type does not have or an out-of-range value),
 * BX_ERR_NOMEM. Nothing is added on error. */
bx_status bx_optimizer_add_group(bx_optimizer *o, bx_tensor *const *params, int n,
                                 const bx_param_group_opts *overrides);

/* "SGD", "Adam", "AdamW", "RMSprop" (torch's class names). */
const char *bx_optimizer_type(const bx_optimizer *o);
int bx_optimizer_num_groups(const bx_optimizer *o);
/* Total number of parameters over all groups. */
int bx_optimizer_num_params(const bx_optimizer *o);
/* The group's name, or NULL if it has none or g is out of range. */
const char *bx_optimizer_group_name(const bx_optimizer *o, int g);
/* Number of parameters in group g (0 if out of range) and the i-th one
 * (NULL if out of range). */
int bx_optimizer_group_num_params(const bx_optimizer *o, int g);
bx_tensor *bx_optimizer_group_param(const bx_optimizer *o, int g, int i);

/* Learning rate of group g (NAN if g is out of range) / set it
 * (BX_ERR_INVALID for a bad g). */
double bx_optimizer_get_lr(const bx_optimizer *o, int g);
bx_status bx_optimizer_set_lr(bx_optimizer *o, int g, double lr);
/* The group's momentum as LR monitors and OneCycleLR see it: `momentum` for
 * SGD and RMSprop, betas[0] for Adam/AdamW. Errors: BX_ERR_INVALID (bad g). */
bx_status bx_optimizer_get_momentum(const bx_optimizer *o, int g, double *m);
bx_status bx_optimizer_set_momentum(bx_optimizer *o, int g, double m);
/* Adam/AdamW betas. Errors: BX_ERR_INVALID (bad g), BX_ERR_NOT_FOUND (the
 * optimizer has no betas). */
bx_status bx_optimizer_get_betas(const bx_optimizer *o, int g, double betas[2]);
bx_status bx_optimizer_set_betas(bx_optimizer *o, int g, const double betas[2]);

/* Generic per-group hyper-parameter by torch key name: the type's own keys
 * ("lr", "momentum", "dampening", "weight_decay", "eps", "alpha"; flags
 * "nesterov", "maximize", "amsgrad", "centered" read as 0/1) and any extra
 * numeric key set on the group ("initial_lr", "swa_lr", "max_lr", ...).
 * group_has: whether the key exists in the group. group_get errors:
 * BX_ERR_INVALID (bad g), BX_ERR_NOT_FOUND ("param group 0 has no 'swa_lr'").
 * group_set creates an extra key when absent; "betas" goes through
 * bx_optimizer_set_betas. Errors: BX_ERR_INVALID (bad g, key "betas" or
 * "params", a flag set to other than 0/1), BX_ERR_NOMEM. */
bool bx_optimizer_group_has(const bx_optimizer *o, int g, const char *key);
bx_status bx_optimizer_group_get(const bx_optimizer *o, int g, const char *key, double *out);
bx_status bx_optimizer_group_set(bx_optimizer *o, int g, const char *key, double v);
/* Whether `key` is one of the optimizer's constructor defaults (torch's
 * `key in optimizer.defaults`), e.g. "momentum" for SGD, "betas" for Adam. */
bool bx_optimizer_has_default(const bx_optimizer *o, const char *key);

/* One optimization step over every group. Parameters whose grad is NULL or
 * whose requires_grad is false are skipped (their state is untouched).
 * Errors: BX_ERR_SHAPE (a grad that is not an f32 contiguous tensor of the
 * parameter's shape; nothing is updated then), BX_ERR_NOMEM (first step
 * only: state creation). */
bx_status bx_optimizer_step(bx_optimizer *o);
/* Sets the gradient of every parameter to zero (keeps the buffers, like
 * torch 1.13's zero_grad(set_to_none=False)). */
void bx_optimizer_zero_grad(bx_optimizer *o);
/* Number of bx_optimizer_step calls that succeeded. */
int64_t bx_optimizer_step_count(const bx_optimizer *o);

/* ---- state -------------------------------------------------------------------
 * bx_optimizer_state_dict returns torch's optimizer.state_dict() layout:
 *   {"state": {"0": {...per-param state...}, ...},
 *    "param_groups": [{hyper-parameters in torch's key order, extra keys,
 *                      "params": [0, 1]}, ...]}
 * Parameters are numbered over all groups in order. Per-param state exists
 * once a step has seen the parameter's gradient:
 *   SGD     {"momentum_buffer": tensor | null}
 *   Adam(W) {"step": 8.0, "exp_avg", "exp_avg_sq"[, "max_exp_avg_sq"]}
 *   RMSprop {"step": 8, "square_avg"[, "momentum_buffer"][, "grad_avg"]}
 * Caller owns the tree (bx_state_free); NULL on NOMEM. */
bx_state *bx_optimizer_state_dict(const bx_optimizer *o);
/* Restores hyper-parameters, extra keys and per-param state from a state
 * dict of the same layout (e.g. read back from a checkpoint), so that
 * training continues bit-identically. Validates everything before changing
 * anything. Errors: BX_ERR_FORMAT (missing key, wrong type), BX_ERR_INVALID
 * (a different number of groups or of parameters in a group, a state tensor
 * whose shape differs from its parameter, an unknown parameter index),
 * BX_ERR_NOMEM. */
bx_status bx_optimizer_load_state_dict(bx_optimizer *o, const bx_state *sd);

#ifdef __cplusplus
}
#endif
#endif
