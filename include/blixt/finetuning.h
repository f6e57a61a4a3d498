/* blixt/finetuning.h - BaseFinetuning and BackboneFinetuning (spec/callbacks.md
 * §6, §7; Lightning 1.9.5 behaviour as the conformance traces record it).
 *
 * BaseFinetuning is a callback skeleton plus static helpers that freeze and
 * unfreeze parts of a model and hand newly trainable parameters to an
 * optimizer as a new param group. A finetuning callback supplies two
 * functions (bx_finetuning_ops):
 *  - freeze_before_training: runs at the callback's `setup` - before
 *    configure_optimizers, so the model must build its optimizers from the
 *    parameters that still require grad;
 *  - finetune_function: runs at every on_train_epoch_start for every
 *    optimizer (epoch = current_epoch).
 * The base records the param groups each optimizer gained (parameter names,
 * hyper-parameters) in its state ("internal_optimizer_metadata") and, when a
 * run resumes from a checkpoint, adds those groups again at on_fit_start -
 * before the Trainer loads the optimizer state, so the group counts match.
 *
 * Everything here is written against the public callback, trainer, nn and
 * optim API: a user can write the same callbacks outside the library.
 *
 * Differences from Lightning (bugs fixed, see docs/callbacks/finetuning.md):
 *  - filter_on_optimizer compares parameters by identity, not by value
 *    (Lightning's torch.equal skips a new parameter whose values equal one
 *    already in the optimizer, e.g. two zero-initialised biases);
 *  - BackboneFinetuning persists previous_backbone_lr (#8501: a run resumed
 *    after the unfreeze epoch continues its backbone lr schedule). */
#ifndef BLIXT_FINETUNING_H
#define BLIXT_FINETUNING_H

#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- lists returned by the helpers ---------------------------------------- */
/* Borrowed module pointers (valid while the model's structure is unchanged).
 * Caller owns the list: bx_module_array_free. */
typedef struct bx_module_array {
    int n;
    bx_module **items;
} bx_module_array;
/* Borrowed parameter tensors. Caller owns the list: bx_param_array_free. */
typedef struct bx_param_array {
    int n;
    bx_tensor **items;
} bx_param_array;
/* Frees a list (not the modules/tensors). NULL is a no-op. */
void bx_module_array_free(bx_module_array *l);
void bx_param_array_free(bx_param_array *l);

/* ---- BaseFinetuning static helpers ------------------------------------------
 * `modules` is an array of n modules (a single one: &m, 1); each stands for
 * itself and all its descendants. NULL entries are an error (BX_ERR_INVALID). */

/* Every module of the given trees (pre-order, each module once) that has no
 * children or owns parameter slots directly (Lightning's flatten_modules).
 * NULL on error: BX_ERR_INVALID (a NULL module), BX_ERR_NOMEM. */
bx_module_array *bx_finetuning_flatten_modules(bx_module *const *modules, int n);
/* The direct parameters of every flattened module whose requires_grad equals
 * `requires_grad`; BatchNorm modules are skipped when !train_bn. Each
 * parameter once, in module order. NULL on error (as flatten_modules). */
bx_param_array *bx_finetuning_filter_params(bx_module *const *modules, int n, bool train_bn, bool requires_grad);
/* params[0..n) minus those already in any group of `opt`, compared by
 * IDENTITY (Lightning compares values - a bug). When some are dropped, warns
 * through bx_logf like Lightning. NULL on error: BX_ERR_INVALID (NULL
 * optimizer or parameter), BX_ERR_NOMEM. */
bx_param_array *bx_finetuning_filter_on_optimizer(const bx_optimizer *opt, bx_tensor *const *params, int n);
/* requires_grad = true on the direct parameters of every flattened module;
 * BatchNorm modules also track running statistics again. Errors: as
 * flatten_modules. */
bx_status bx_finetuning_make_trainable(bx_module *const *modules, int n);
/* Freezes one module (not its children): requires_grad = false on its own
 * parameters; a BatchNorm also stops updating its running statistics
 * (track_running_stats = false: batch statistics in training mode, running
 * statistics kept for eval). Errors: BX_ERR_INVALID (NULL module). */
bx_status bx_finetuning_freeze_module(bx_module *m);
/* Freezes every flattened module; with train_bn, BatchNorm modules are made
 * trainable instead. Errors: as flatten_modules. */
bx_status bx_finetuning_freeze(bx_module *const *modules, int n, bool train_bn);
/* Makes the modules trainable (all of them, BatchNorm included even when
 * !train_bn) and adds one param group to `opt` holding
 * filter_params(modules, train_bn, true) minus the parameters `opt` already
 * has, with lr = `lr`, or when lr is NAN (None) the lr of opt's group 0
 * divided by initial_denom_lr; the group's other hyper-parameters are the
 * optimizer's defaults. Nothing is added when no parameter remains.
 * Errors: BX_ERR_INVALID (NULL optimizer or module, an optimizer without
 * groups when lr is NAN, a bad lr), BX_ERR_NOMEM. */
bx_status bx_finetuning_unfreeze_and_add_param_group(bx_module *const *modules, int n, bx_optimizer *opt, double lr,
                                                     double initial_denom_lr, bool train_bn);

/* ---- BaseFinetuning: a finetuning callback of your own ------------------------ */
typedef struct bx_finetuning_ops {
    /* Class name, also the state key ("MyFinetuning"). Required. */
    const char *name;
    /* Freeze the layers that train later. Runs at setup (every stage), before
     * configure_optimizers. root = the model's module(). Required. */
    bx_status (*freeze_before_training)(void *self, bx_trainer *tr, bx_module *root);
    /* Runs at every on_train_epoch_start for every optimizer (opt_idx) with
     * epoch = current_epoch; unfreeze here with
     * bx_finetuning_unfreeze_and_add_param_group. Required. */
    bx_status (*finetune_function)(void *self, bx_trainer *tr, bx_module *root, int64_t epoch, bx_optimizer *opt,
                                   int opt_idx);
    /* Optional: runs at on_fit_start before the recorded groups are restored
     * (a check of the model, e.g. that the backbone exists). */
    bx_status (*on_fit_start)(void *self, bx_trainer *tr, bx_module *root);
    /* Optional extra state, saved in the same dict after
     * "internal_optimizer_metadata" / read back from it. */
    bx_status (*state_dict)(void *self, bx_state *out);
    bx_status (*load_state_dict)(void *self, const bx_state *state);
    /* Frees self with the callback (NULL: the caller keeps self). */
    void (*destroy)(void *self);
} bx_finetuning_ops;

/* New finetuning callback named ops->name driven by ops (borrowed: must
 * outlive the callback) and self. Caller owns the callback until it is given
 * to a Trainer. NULL on error: BX_ERR_INVALID (ops without name,
 * freeze_before_training or finetune_function), BX_ERR_NOMEM; self is
 * destroyed with ops->destroy on error. */
bx_callback *bx_finetuning_new(const bx_finetuning_ops *ops, void *self);

/* The module a finetuning callback works on: the model's module() (also
 * valid at setup, before the Trainer caches it). NULL when there is none. */
bx_module *bx_finetuning_root(bx_trainer *tr);

/* ---- BackboneFinetuning ------------------------------------------------------ */
/* The backbone lr multiplier for `epoch` (Lightning calls lambda_func(epoch + 1)). */
typedef double (*bx_backbone_lambda_fn)(void *ud, int64_t epoch);

typedef struct bx_backbone_finetuning_opts {
    int64_t unfreeze_backbone_at_epoch; /* 10 */
    bx_backbone_lambda_fn lambda_func;  /* NULL: 2.0 for every epoch (1.9.5's `multiplicative`) */
    void *lambda_ud;                    /* passed to lambda_func (borrowed) */
    double backbone_initial_ratio_lr;   /* 0.1: backbone lr0 = group 0 lr * ratio ... */
    double backbone_initial_lr;         /* NAN (None): ... unless this is set */
    bool should_align;                  /* true: the backbone lr never exceeds group 0's */
    double initial_denom_lr;            /* 10.0 (no effect: an lr is always passed) */
    bool train_bn;                      /* true: BatchNorm parameters join the backbone group */
    bool verbose;                       /* false: "Current lr: ..., Backbone lr: ..." info lines */
    int rounding;                       /* 12: decimals in those lines */
    const char *backbone;               /* "backbone": dotted path of the backbone submodule */
    bool unfreeze_on_resume;            /* false (1.9.5): a run resumed after the unfreeze epoch keeps
                                           the backbone frozen (in the optimizer, requires_grad false);
                                           true: make it trainable again at on_fit_start */
} bx_backbone_finetuning_opts;
#define BX_BACKBONE_FINETUNING_OPTS_INIT {10, NULL, NULL, 0.1, NAN, true, 10.0, true, false, 12, "backbone", false}

/* New BackboneFinetuning ("BackboneFinetuning", state key the same):
 * freezes the submodule `backbone` of the model (BatchNorm stays trainable)
 * before training; at epoch unfreeze_backbone_at_epoch makes it trainable
 * and adds it as a new param group of every optimizer with lr0 =
 * backbone_initial_lr or group 0's lr * backbone_initial_ratio_lr; at every
 * later epoch sets the last group's lr to lambda_func(epoch + 1) * the
 * previous backbone lr (capped at group 0's lr when should_align). State:
 * {"internal_optimizer_metadata", "previous_backbone_lr"}. A model without
 * the backbone submodule fails at setup / on_fit_start with a clear message.
 * o NULL = defaults (copied; strings too). Caller owns the callback until it
 * is given to a Trainer. NULL on error: BX_ERR_INVALID (negative
 * unfreeze epoch, ratio or lr, initial_denom_lr <= 0, empty backbone
 * path), BX_ERR_NOMEM. */
bx_callback *bx_backbone_finetuning_new(const bx_backbone_finetuning_opts *o);

#ifdef __cplusplus
}
#endif
#endif
