/* blixt/pruning.h - the ModelPruning callback (spec/callbacks.md section 9).
 *
 * Lightning's ModelPruning on the pruning engine of prune.h, written only
 * against the public callback / Trainer / nn / prune API. Once per epoch
 * (train-epoch end, or validation-epoch end outside the sanity check when
 * prune_on_train_epoch_end is false) it prunes the targets by `amount`
 * (globally as one vector, or each tensor on its own), optionally resets the
 * surviving weights to their values at fit start (lottery ticket), and at
 * train end makes the pruning permanent. Checkpoints written while training
 * hold plain `weight` tensors (the permanent view) when make_pruning_permanent
 * is set, while the live model keeps its masks.
 *
 * Behaviour is Lightning 1.9.5's (what the conformance traces record) with
 * two Lightning bugs fixed (docs/callbacks/model_pruning.md):
 *  - #13643: the lottery-ticket reset really writes theta_0 into
 *    `<name>_orig` (1.x wrote into the derived `<name>`, so it was lost);
 *  - #21223: the verbose report's denominator is the total mask size (1.x
 *    counted every parameter of every listed module once per listed pair). */
#ifndef BLIXT_PRUNING_H
#define BLIXT_PRUNING_H

#include <limits.h>

#include "callback.h"
#include "prune.h"
#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* amount as a function of the epoch (Lightning's callable amount): return
 * BX_PRUNE_COUNT(k) or BX_PRUNE_FRACTION(f); a zero amount skips the epoch. */
typedef bx_prune_amount (*bx_pruning_amount_fn)(void *ud, int64_t epoch);
/* apply_pruning / use_lottery_ticket_hypothesis as a function of the epoch. */
typedef bool (*bx_pruning_epoch_fn)(void *ud, int64_t epoch);

/* One (module path, parameter name) target: "layer1", "weight";
 * "encoder.0", "bias". */
typedef struct bx_pruning_param {
    const char *module;
    const char *name;
} bx_pruning_param;

#define BX_PRUNING_DIM_NONE INT_MIN

/* Lightning's arguments and defaults. Strings and arrays are copied. */
typedef struct bx_model_pruning_opts {
    /* required: "l1_unstructured", "random_unstructured", "ln_structured",
     * "random_structured" (case-insensitive) */
    const char *pruning_fn;
    /* explicit targets (NULL/0 = None: discovered at fit start) */
    const bx_pruning_param *parameters_to_prune;
    int num_parameters_to_prune;
    /* names searched by discovery (NULL/0 = {"weight", "bias"}; only these two allowed) */
    const char *const *parameter_names;
    int num_parameter_names;
    bool use_global_unstructured; /* true */
    bx_prune_amount amount;       /* BX_PRUNE_FRACTION(0.5) */
    bx_pruning_amount_fn amount_fn; /* non-NULL: overrides amount */
    void *amount_ud;
    bool apply_pruning; /* true */
    bx_pruning_epoch_fn apply_pruning_fn; /* non-NULL: overrides apply_pruning */
    void *apply_pruning_ud;
    bool make_pruning_permanent;        /* true */
    bool use_lottery_ticket_hypothesis; /* true */
    bx_pruning_epoch_fn lottery_ticket_fn; /* non-NULL: overrides the bool */
    void *lottery_ticket_ud;
    bool resample_parameters; /* false: theta_0 from the fit-start copy; true: re-initialised values */
    int pruning_dim;          /* BX_PRUNING_DIM_NONE = None; required by the structured methods */
    double pruning_norm;      /* NAN = None; required by ln_structured (INFINITY, 2 = 'fro', ...) */
    int verbose;              /* 0, 1 (summary line), 2 (plus one line per tensor) via bx_logf */
    bool prune_on_train_epoch_end; /* true; false: at on_validation_epoch_end (not in sanity) */
    uint64_t seed; /* seed of the random methods' and resampling generator (0) */
} bx_model_pruning_opts;
#define BX_MODEL_PRUNING_OPTS_INIT                                                                   \
    {NULL, NULL, 0, NULL, 0, true, {false, 0, 0.5}, NULL, NULL, true, NULL, NULL, true, true, NULL, \
     NULL, false, BX_PRUNING_DIM_NONE, NAN, 0, true, 0}

/* New ModelPruning ("ModelPruning"); the caller owns it until given to a
 * Trainer. NULL with the message (BX_ERR_INVALID) on: missing or unknown
 * pruning_fn; a structured method without pruning_dim; ln_structured
 * without pruning_norm; use_global_unstructured with a structured method;
 * a bad amount (negative count, fraction outside [0, 1]); verbose not in
 * {0, 1, 2}; a parameter name other than "weight"/"bias"; a target with a
 * NULL module or name. Errors at fit start (the run fails): a listed
 * module that does not exist (BX_ERR_NOT_FOUND) or has no such parameter. */
bx_callback *bx_model_pruning_new(const bx_model_pruning_opts *o);

/* The resolved targets (valid from fit start; 0 before). Strings owned by
 * the callback. cb must be a ModelPruning (else 0 / NULL). */
int bx_model_pruning_num_targets(const bx_callback *cb);
const char *bx_model_pruning_target_module(const bx_callback *cb, int i);
const char *bx_model_pruning_target_name(const bx_callback *cb, int i);
/* Runs one pruning round as the callback does at the end of `epoch`
 * (apply_pruning, amount, lottery ticket) on tr's model. The targets must
 * be resolved (after fit start). Errors: those of the prune engine. */
bx_status bx_model_pruning_run(bx_callback *cb, bx_trainer *tr, int64_t epoch);

/* Resuming from a checkpoint written without make_pruning_permanent (its
 * state_dict holds `x.weight_orig` + `x.weight_mask`): call this from the
 * model's on_load_checkpoint hook, which runs before the Trainer's strict
 * weight load, so the fresh module is reparametrised and accepts those
 * keys (masks restored by the load). Checkpoints written with
 * make_pruning_permanent need nothing: ModelPruning restores their masks
 * itself from the checkpoint's "pruning_masks" entry. Errors: those of
 * bx_prune_identity_from_keys. */
bx_status bx_model_pruning_prepare_load(bx_module *root, const bx_state *ckpt);

#ifdef __cplusplus
}
#endif
#endif
