/* blixt/prune.h - pruning: torch.nn.utils.prune re-implemented in C.
 *
 * Two levels:
 *  - masks on tensors: bx_prune_compute_mask (one tensor) and
 *    bx_prune_compute_masks_global (several tensors as one vector) turn
 *    importance scores plus the current 0/1 mask into the next mask;
 *  - modules: bx_prune_apply / bx_prune_global reparametrise a parameter as
 *    torch does. On the first prune of (module, name) the parameter `name` is
 *    renamed `name_orig` (the same tensor object: optimizers holding it keep
 *    training it), a persistent f32 buffer `name_mask` (0/1, same shape) is
 *    added, and a reparametrisation makes every forward see
 *    `name = name_orig * name_mask` (a differentiable product: pruned entries
 *    get zero gradient). Later prunes only update the mask.
 *    bx_prune_remove makes the pruning permanent.
 *
 * Semantics (tests/golden/README.md rules P1-P5, spec/callbacks.md section 9):
 *  - amount: a count (error if larger than the number of candidates) or a
 *    fraction in [0, 1], k = nearbyint(fraction * n) on the double product,
 *    i.e. Python's round(): half to even (0.3*35 = 10.5 -> 10);
 *  - candidates: the entries whose mask is 1 (unstructured, compacted in
 *    row-major order) or the channels along `dim` whose mask slice is not all
 *    zero (structured). So pruning composes: two prunes of 0.5 leave 25 %,
 *    and the new mask is the old one with extra zeros;
 *  - importance scores are the current values (name_orig * name_mask);
 *  - selection is torch's CPU topk, tie for tie (libstdc++ partial_sort /
 *    nth_element as GCC 12 implements them): the same masks as PyTorch even
 *    among equal magnitudes;
 *  - l1_unstructured prunes the k smallest |w|; ln_structured keeps the
 *    n - k channels with the largest L_p norm over all other dims; the random
 *    methods draw i.i.d. U(0,1) keys from the given RNG (not reproducible
 *    against PyTorch: only the counts match).
 *
 * Nothing here runs inside a step: masks are computed on the heap between
 * steps (once per epoch in ModelPruning). Not thread-safe per module. */
#ifndef BLIXT_PRUNE_H
#define BLIXT_PRUNE_H

#include "nn.h"

#include <math.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bx_prune_method {
    BX_PRUNE_L1_UNSTRUCTURED = 0,     /* k smallest |w| among the unpruned entries */
    BX_PRUNE_RANDOM_UNSTRUCTURED = 1, /* k unpruned entries at random */
    BX_PRUNE_LN_STRUCTURED = 2,       /* k channels along dim with the smallest L_p norm */
    BX_PRUNE_RANDOM_STRUCTURED = 3    /* k channels along dim at random */
} bx_prune_method;

/* How much to prune: a count (PyTorch's int amount) or a fraction (its float
 * amount). Build one with BX_PRUNE_COUNT(k) / BX_PRUNE_FRACTION(f). */
typedef struct bx_prune_amount {
    bool is_count;
    int64_t count;   /* is_count: number of candidates to prune, >= 0 */
    double fraction; /* !is_count: in [0, 1] */
} bx_prune_amount;
#define BX_PRUNE_COUNT(k) ((bx_prune_amount){true, (int64_t)(k), 0.0})
#define BX_PRUNE_FRACTION(f) ((bx_prune_amount){false, 0, (double)(f)})

/* 'fro' over the dims of a channel is the 2-norm of the flattened slice. */
#define BX_PRUNE_NORM_FRO 2.0

typedef struct bx_prune_opts {
    bx_prune_method method;
    bx_prune_amount amount;
    /* ln_structured: the p of the norm (torch.norm's p): 1, 2 (= 'fro'),
     * INFINITY (max |x|), -INFINITY (min |x|), 0 (number of non-zeros) or
     * any other finite p ((sum |x|^p)^(1/p)). NAN (the default) = not given:
     * ln_structured then fails, as torch requires n. */
    double norm;
    /* structured methods: the channel dim; negative counts from the end
     * (torch's default is -1). */
    int dim;
    /* random methods: the generator the keys are drawn from (advanced). */
    bx_rng *rng;
} bx_prune_opts;
#define BX_PRUNE_OPTS_INIT {BX_PRUNE_L1_UNSTRUCTURED, {false, 0, 0.0}, NAN, -1, NULL}

/* ---- names -------------------------------------------------------------------- */
/* Parses a method name as ModelPruning takes it, case-insensitively:
 * "l1_unstructured", "random_unstructured", "ln_structured",
 * "random_structured" (also the class names "L1Unstructured", ...).
 * Errors: BX_ERR_INVALID naming the text and the accepted names. */
bx_status bx_prune_method_parse(const char *s, bx_prune_method *out);
/* PyTorch's class name of the method ("L1Unstructured", "RandomUnstructured",
 * "LnStructured", "RandomStructured"); "?" for a bad value. Static string. */
const char *bx_prune_method_class_name(bx_prune_method m);
/* True for the structured methods (they need a dim, and a tensor of >= 2 dims). */
bool bx_prune_method_is_structured(bx_prune_method m);
/* Parses a norm as torch.norm's p: "fro" (2), "inf", "-inf", or a number
 * ("1", "2", "0.5"). "nuc" gives BX_ERR_UNSUPPORTED, anything else
 * BX_ERR_INVALID. */
bx_status bx_prune_norm_parse(const char *s, double *out);

/* ---- amounts -------------------------------------------------------------------- */
/* Checks an amount on its own (torch's _validate_pruning_amount_init):
 * BX_ERR_INVALID for a negative count or a fraction outside [0, 1] or NaN. */
bx_status bx_prune_amount_check(bx_prune_amount a);
/* Number of candidates to prune out of n: the count itself, or
 * nearbyint(fraction * n) (half to even). Errors: those of
 * bx_prune_amount_check, BX_ERR_INVALID for a count larger than n. */
bx_status bx_prune_amount_resolve(bx_prune_amount a, int64_t n, int64_t *k);

/* ---- selection ------------------------------------------------------------------ */
/* The indices torch.topk(values, k, largest) returns on CPU (PyTorch 1.13,
 * libstdc++ of GCC 12): with k*64 <= n a heap select (std::partial_sort),
 * otherwise an introselect (std::nth_element with nth = k-1), comparing
 * values only, NaN counting as the largest. Writes the k selected indices to
 * idx (in the order the algorithm leaves them, not sorted). 0 <= k <= n.
 * Errors: BX_ERR_INVALID (bad k or NULL pointers), BX_ERR_NOMEM. */
bx_status bx_prune_topk(const float *values, int64_t n, int64_t k, bool largest, int64_t *idx);

/* ---- masks on tensors --------------------------------------------------------------- */
/* L_p norm of every slice of t along dim (over all the other dims), as
 * torch.norm(t, p, dims) of prune's _compute_norm, into out: an f32 tensor
 * of t->shape[dim] elements (any shape). Computed in double, stored as
 * float. Errors: BX_ERR_SHAPE (t not float, dim out of range, out of the
 * wrong size), BX_ERR_INVALID (p NaN). */
bx_status bx_prune_channel_norms(const bx_tensor *t, double p, int dim, bx_tensor *out);

/* Updates `mask` in place with one pruning step of o->method: mask holds the
 * current mask (f32, u8 or bool, 0/1, the shape of scores; all ones for a
 * first prune) and receives it with the new zeros. `scores` are the
 * importance values (f32/f64, any strides), normally the current
 * (already masked) parameter values. *num_pruned (optional) receives the
 * number of entries (unstructured) or channels (structured) newly pruned.
 * On error the mask is unchanged. Errors:
 *  BX_ERR_SHAPE     scores/mask shapes differ, structured pruning of a
 *                   tensor with < 2 dims, dim out of range
 *  BX_ERR_INVALID   bad amount (see bx_prune_amount_resolve), ln_structured
 *                   without a norm, random method without rng, bad method
 *  BX_ERR_UNSUPPORTED a mask dtype other than f32/u8/bool
 *  BX_ERR_NOMEM */
bx_status bx_prune_compute_mask(const bx_tensor *scores, bx_tensor *mask, const bx_prune_opts *o,
                                int64_t *num_pruned);

/* Global unstructured pruning (torch's global_unstructured): the n score
 * tensors are flattened and concatenated in list order, compacted to the
 * entries whose mask is 1, and one selection of o->method
 * (BX_PRUNE_L1_UNSTRUCTURED or BX_PRUNE_RANDOM_UNSTRUCTURED) with the amount
 * relative to that global count is split back into the n masks (updated in
 * place; unchanged on error). Errors: those of bx_prune_compute_mask,
 * BX_ERR_INVALID for a structured method or n < 1. */
bx_status bx_prune_compute_masks_global(const bx_tensor *const *scores, bx_tensor *const *masks, int n,
                                        const bx_prune_opts *o, int64_t *num_pruned);

/* ---- modules ------------------------------------------------------------------------- */
/* Prunes parameter `name` (a direct parameter of m, f32) with o: on the first
 * call reparametrises it (name -> name_orig, buffer name_mask, forward sees
 * name_orig * name_mask), later calls add zeros to name_mask. The scores
 * are the current values name_orig * name_mask. On error the module is
 * unchanged. Errors: BX_ERR_NOT_FOUND (no parameter `name`, or a None slot),
 * BX_ERR_INVALID (bad name, name_orig / name_mask already taken by another
 * slot), BX_ERR_STATE (`name` already has a reparametrisation that is not
 * pruning's), those of bx_prune_compute_mask, BX_ERR_NOMEM. */
bx_status bx_prune_apply(bx_module *m, const char *name, const bx_prune_opts *o);

/* torch's custom_from_mask: multiplies `mask` (any dtype, 0/1, the shape of
 * the parameter; NULL = all ones, torch's prune.identity) into the mask of
 * `name`, reparametrising it on first use. Errors: as bx_prune_apply,
 * BX_ERR_SHAPE for a mask of another shape. */
bx_status bx_prune_apply_mask(bx_module *m, const char *name, const bx_tensor *mask);

/* One (module, parameter name) target of global pruning. */
typedef struct bx_prune_target {
    bx_module *module;
    const char *name;
} bx_prune_target;

/* torch's global_unstructured over n targets, in list order (P4): one
 * selection over the concatenated current values of all of them, then each
 * target's mask is updated (reparametrising it on first use). Errors: those
 * of bx_prune_compute_masks_global and bx_prune_apply, BX_ERR_INVALID for a
 * target listed twice. On error nothing is changed (except on NOMEM while
 * reparametrising, which can leave earlier targets reparametrised with
 * their new masks). */
bx_status bx_prune_global(const bx_prune_target *targets, int n, const bx_prune_opts *o);

/* Makes the pruning of `name` permanent (torch's prune.remove): the
 * name_orig tensor is multiplied in place by the mask and renamed back to
 * `name` as a plain parameter (the same tensor object; like torch it moves
 * to the end of the module's parameter order), the mask buffer and the
 * reparametrisation are dropped. Errors: BX_ERR_STATE (not pruned),
 * BX_ERR_INVALID (bad arguments), BX_ERR_NOMEM (nothing changed). */
bx_status bx_prune_remove(bx_module *m, const char *name);
/* bx_prune_remove for every pruned parameter of every module of the tree
 * (pre-order, parameters in order). Errors: the first failure's. */
bx_status bx_prune_remove_all(bx_module *m);

/* True when `name` of m is pruned (reparametrised by this module). */
bool bx_prune_is_pruned(const bx_module *m, const char *name);
/* Splits a state-dict key "a.b.weight_mask" into the module at "a.b" below
 * root (*m) and the parameter name "weight" (param, n bytes). False when the
 * key does not end in "_mask", the name does not fit, or no such module
 * exists (whether it is pruned is not checked: see bx_prune_is_pruned). */
bool bx_prune_split_mask_key(bx_module *root, const char *key, bx_module **m, char *param, size_t n);
/* True when any parameter of any module of the tree is pruned. */
bool bx_prune_tree_is_pruned(bx_module *m);
/* The tensor that holds the trained values of `name`: name_orig when
 * pruned, else the parameter `name` (NULL when neither exists). Borrowed. */
bx_tensor *bx_prune_param(const bx_module *m, const char *name);
/* The mask buffer of `name` (f32 0/1), or NULL when not pruned. Borrowed. */
bx_tensor *bx_prune_mask(const bx_module *m, const char *name);
/* Number of zeros of the mask of `name` (0 when not pruned) and its number
 * of elements (the parameter's when not pruned). Errors: BX_ERR_NOT_FOUND. */
bx_status bx_prune_mask_zeros(const bx_module *m, const char *name, int64_t *zeros, int64_t *numel);
/* New owned f32 tensor with the values forwards see: name_orig * name_mask
 * when pruned, a copy of the parameter otherwise. Caller frees it. NULL on
 * error: BX_ERR_NOT_FOUND, BX_ERR_NOMEM. */
bx_tensor *bx_prune_effective(const bx_module *m, const char *name);

/* Prepares an unpruned tree for loading a state dict saved while pruned
 * (keys `fc.weight_orig` + `fc.weight_mask`, as ModelPruning checkpoints
 * without make_pruning_permanent hold): for every such pair among keys[0..n)
 * whose module exists and has a plain parameter `weight`, that parameter is
 * reparametrised with an all-ones mask (torch's prune.identity), so a strict
 * bx_module_load_state_dict then fills weight_orig and weight_mask. Pairs
 * already pruned or not matching the tree are skipped. *count (optional)
 * receives the number reparametrised. Errors: BX_ERR_INVALID (NULL
 * arguments), those of bx_prune_apply_mask (the tree keeps the earlier ones). */
bx_status bx_prune_identity_from_keys(bx_module *root, const char *const *keys, int n, int *count);

/* The state dict of the tree as it would be after bx_prune_remove_all (what
 * ModelPruning's checkpoints hold with make_pruning_permanent), without
 * touching the live module: every pruned `name_orig` / `name_mask` pair
 * becomes one plain `name` = orig * mask. Key order is that of
 * bx_module_state_dict on a copy made permanent: per module its unpruned
 * parameters, then the pruned ones, then its persistent buffers (masks
 * left out). Returns a new list owning copies of all tensors (caller frees
 * it with bx_named_tensors_free); NULL on NOMEM. */
bx_named_tensors *bx_prune_permanent_state_dict(bx_module *m);

#ifdef __cplusplus
}
#endif
#endif
