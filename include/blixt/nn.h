/* blixt/nn.h - modules: layers with named children, parameters and buffers.
 *
 * A module is an opaque object made of
 *  - a type: a const table of optional functions (bx_module_type) plus a
 *    `void *impl` with the type's own options; built-in layers and user
 *    modules use the same interface;
 *  - ordered, named children (owned modules);
 *  - ordered, named parameters (owned tensors marked with bx_param_mark); a
 *    slot may hold NULL, like PyTorch's `bias=None`;
 *  - ordered, named buffers (owned tensors, persistent or not), e.g.
 *    BatchNorm's running_mean / running_var / num_batches_tracked;
 *  - a training flag, forward pre/post hooks and reparametrisations.
 *
 * Names follow PyTorch: traversals produce dotted names in PyTorch's order
 * (a module's own entries first, then its children depth-first), so
 * state dicts read and write the same keys as `model.state_dict()`:
 * `net.0.weight`, `bn.running_mean`, `bn.num_batches_tracked`.
 *
 * Rules for forward functions (built-in and user-written):
 *  - fetch every tensor on each call with bx_module_tensor(st, m, "weight");
 *    never cache parameter pointers inside impl. This is what lets pruning
 *    (weight = weight_orig * weight_mask) and quantisation-aware training
 *    (fake-quantised weight) change what a layer computes with from outside;
 *  - allocate only from the step (ops, bx_step_tensor): a steady-state
 *    training step allocates nothing on the heap;
 *  - use bx_module_is_training(m) for train/eval behaviour.
 *
 * Ownership: every function that "takes ownership" of a module or tensor
 * also frees it when it fails, so constructor calls can be nested:
 *     bx_sequential_append(seq, bx_nn_linear(784, 256, true, &rng));
 * (a NULL argument makes the call fail with the constructor's error text).
 * Modules are not thread-safe: one thread at a time per module tree. */
#ifndef BLIXT_NN_H
#define BLIXT_NN_H

#include "ops.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_module bx_module;

/* What a module type can do. Every member is optional (NULL):
 *  name:             type name as PyTorch spells the class ("Linear"); used
 *                    in error messages, summaries and bx_module_repr.
 *  forward:          x -> y on the step. NULL: bx_module_forward fails.
 *  destroy_impl:     frees impl when the module is freed. NULL: impl is not
 *                    freed by the module (the caller keeps ownership).
 *  clone_impl:       deep copy of impl for bx_module_clone; returns NULL on
 *                    NOMEM. NULL with a non-NULL impl: the module cannot be
 *                    cloned (BX_ERR_UNSUPPORTED).
 *  reset_parameters: re-initialises this module's own parameters and buffers
 *                    (not its children) from rng, PyTorch's default init.
 *  extra_repr:       writes the options ("in_features=20, out_features=16,
 *                    bias=True") for bx_module_repr. */
typedef struct bx_module_type {
    const char *name;
    bx_tensor *(*forward)(bx_module *m, bx_step *st, bx_tensor *x);
    void (*destroy_impl)(void *impl);
    void *(*clone_impl)(const void *impl);
    bx_status (*reset_parameters)(bx_module *m, bx_rng *rng);
    void (*extra_repr)(const bx_module *m, char *buf, size_t n);
} bx_module_type;

/* ---- lifetime ----------------------------------------------------------- */
/* New empty module (training mode) of type t holding impl (ownership of impl
 * passes to the module when t->destroy_impl is set). t must outlive the
 * module. Caller owns the module (bx_module_free). NULL on NOMEM (impl is
 * then destroyed with t->destroy_impl) or when t is NULL (BX_ERR_INVALID). */
bx_module *bx_module_new(const bx_module_type *t, void *impl);
/* Frees the module, its children, parameters (and their grads), buffers and
 * impl. NULL is a no-op. */
void bx_module_free(bx_module *m);
/* Deep copy: type, impl (through clone_impl), training flag, parameters
 * (values and requires_grad; gradients are not copied), buffers, children,
 * hooks and reparametrisations (the same fn/ud pairs, shared). Caller owns
 * the copy. NULL on error: BX_ERR_UNSUPPORTED (a type with impl but no
 * clone_impl, naming the module path), BX_ERR_NOMEM. */
bx_module *bx_module_clone(const bx_module *m);

const bx_module_type *bx_module_get_type(const bx_module *m);
/* The type's name, "Module" when the type has none. Never NULL. */
const char *bx_module_type_name(const bx_module *m);
/* The impl pointer given to bx_module_new (still owned by the module). */
void *bx_module_impl(const bx_module *m);

/* ---- children ------------------------------------------------------------- */
/* Appends a child under `name` and takes ownership of it (freed on failure,
 * except a child that already has a parent, which stays in its tree).
 * Errors: BX_ERR_INVALID (empty name, a '.' in it, a name already used by a
 * child, parameter or buffer, child NULL or already having a parent, or m
 * itself). */
bx_status bx_module_add_child(bx_module *m, const char *name, bx_module *child);
/* Direct child `name` (no dots), or NULL. Still owned by m. */
bx_module *bx_module_child(const bx_module *m, const char *name);
int bx_module_num_children(const bx_module *m);
/* Child i in insertion order (NULL when out of range); *name (optional)
 * receives its name, valid while the child stays. */
bx_module *bx_module_child_at(const bx_module *m, int i, const char **name);
/* Submodule at a dotted path ("features.0"; "" is root itself), or NULL with
 * BX_ERR_NOT_FOUND text. Still owned by its parent. */
bx_module *bx_module_find(bx_module *root, const char *path);
/* Replaces the submodule at dotted `path` with `child` (taken over; it keeps
 * the name and position). The old submodule goes to *old (caller owns it)
 * or is freed when old is NULL. Errors: BX_ERR_NOT_FOUND, BX_ERR_INVALID. */
bx_status bx_module_replace_child(bx_module *root, const char *path, bx_module *child, bx_module **old);
/* The module that owns m as a child, or NULL for a root. */
bx_module *bx_module_parent(const bx_module *m);

/* ---- parameters ----------------------------------------------------------- */
/* Appends parameter `name`, taking ownership of p and marking it a parameter
 * (bx_param_mark: requires_grad = true). p may be NULL: an empty slot like
 * PyTorch's register_parameter(name, None) - skipped by traversals and the
 * state dict. Errors: BX_ERR_INVALID (bad or used name, p not an owned
 * tensor). */
bx_status bx_module_add_param(bx_module *m, const char *name, bx_tensor *p);
/* Parameter `name` of this module (no dots), NULL when absent or None. */
bx_tensor *bx_module_param(const bx_module *m, const char *name);
/* True when this module has a parameter slot `name` (even a NULL one). */
bool bx_module_has_param(const bx_module *m, const char *name);
/* Removes slot `name` and returns its tensor, now owned by the caller (NULL
 * for a None slot, or when absent: BX_ERR_NOT_FOUND text). */
bx_tensor *bx_module_remove_param(bx_module *m, const char *name);
/* Renames a parameter in place; the tensor object stays the same (optimizers
 * holding the pointer keep working) and keeps its position in the order.
 * Errors: BX_ERR_NOT_FOUND (no `old_name`), BX_ERR_INVALID (bad or used new
 * name). */
bx_status bx_module_rename_param(bx_module *m, const char *old_name, const char *new_name);
/* Own parameter slots (including None ones) in order. */
int bx_module_num_own_params(const bx_module *m);
/* Own parameter slot i (the tensor may be NULL); *name optional. */
bx_tensor *bx_module_param_at(const bx_module *m, int i, const char **name);

/* ---- buffers -------------------------------------------------------------- */
/* Appends buffer `name`, taking ownership of t (t may be NULL: a None
 * buffer). Non-persistent buffers are left out of the state dict. Buffers
 * never require grad. Errors: BX_ERR_INVALID (bad or used name). */
bx_status bx_module_add_buffer(bx_module *m, const char *name, bx_tensor *t, bool persistent);
/* Buffer `name` of this module, NULL when absent or None. */
bx_tensor *bx_module_buffer(const bx_module *m, const char *name);
/* Removes buffer `name`, returning its tensor (caller owns; NULL if absent,
 * with BX_ERR_NOT_FOUND text, or None). */
bx_tensor *bx_module_remove_buffer(bx_module *m, const char *name);
int bx_module_num_own_buffers(const bx_module *m);
/* Own buffer slot i (may be NULL); *name and *persistent optional. */
bx_tensor *bx_module_buffer_at(const bx_module *m, int i, const char **name, bool *persistent);

/* ---- tensors seen by forward: reparametrisation ---------------------------- */
/* A reparametrisation computes tensor `name` on the step each time a forward
 * asks for it (pruning: weight_orig * weight_mask; QAT: fake_quant(weight)).
 * The result is a step tensor (or an owned one). */
typedef bx_tensor *(*bx_reparam_fn)(void *ud, bx_module *m, bx_step *st);
/* Registers (or replaces) the reparametrisation of `name`; fn NULL removes
 * it. ud is borrowed. Errors: BX_ERR_INVALID (bad name), BX_ERR_NOMEM. */
bx_status bx_module_set_reparam(bx_module *m, const char *name, bx_reparam_fn fn, void *ud);
bool bx_module_has_reparam(const bx_module *m, const char *name);
/* The tensor a forward must use for `name`: the reparametrisation's result
 * when one is registered (inside that reparametrisation, asking for the same
 * name gives the plain parameter, so a QAT hook can read the weight it
 * quantises), else parameter `name`, else buffer `name`. NULL when none
 * exists or the slot is None (an optional bias): a forward decides whether
 * that is an error. A failing reparametrisation returns poison. */
bx_tensor *bx_module_tensor(bx_step *st, bx_module *m, const char *name);

/* ---- forward and hooks ------------------------------------------------------ */
/* Runs m on x: pre hooks (in order, each may replace the input), the type's
 * forward, post hooks (each may replace the output). While it runs the
 * step's training flag equals the module's (restored afterwards), so ops and
 * user code see a consistent train/eval mode. Errors go to the step
 * (poison result): NULL module, type without forward. */
bx_tensor *bx_module_forward(bx_module *m, bx_step *st, bx_tensor *x);
/* Pre hook: returns the input to use, or NULL to keep `in`. */
typedef bx_tensor *(*bx_forward_pre_hook_fn)(void *ud, bx_module *m, bx_step *st, bx_tensor *in);
/* Post hook: returns the output to use, or NULL to keep `out`. */
typedef bx_tensor *(*bx_forward_hook_fn)(void *ud, bx_module *m, bx_step *st, bx_tensor *in,
                                         bx_tensor *out);
/* Appends a hook (ud borrowed). Errors: BX_ERR_INVALID (fn NULL), NOMEM. */
bx_status bx_module_add_forward_pre_hook(bx_module *m, bx_forward_pre_hook_fn fn, void *ud);
bx_status bx_module_add_forward_hook(bx_module *m, bx_forward_hook_fn fn, void *ud);
/* Removes the first hook registered with this (fn, ud); false if none. */
bool bx_module_remove_forward_pre_hook(bx_module *m, bx_forward_pre_hook_fn fn, void *ud);
bool bx_module_remove_forward_hook(bx_module *m, bx_forward_hook_fn fn, void *ud);

/* ---- modes and parameters of the whole tree ---------------------------------- */
/* Sets the training flag of m and every submodule (train(true) / eval). */
void bx_module_train(bx_module *m, bool training);
bool bx_module_is_training(const bx_module *m);
/* Sets requires_grad of every parameter in the tree (requires_grad_). */
void bx_module_requires_grad(bx_module *m, bool requires_grad);
/* Zeroes the gradient of every parameter in the tree (keeps the buffers). */
void bx_module_zero_grad(bx_module *m);
/* Number of parameter elements in the tree; only those with requires_grad
 * when trainable_only (Lightning's summary "Trainable params"). */
int64_t bx_module_num_params(const bx_module *m, bool trainable_only);
/* Re-initialises every module of the tree (pre-order) with its type's
 * reset_parameters. rng NULL: weights that need random draws become zeros.
 * Errors: the first failing reset's. */
bx_status bx_module_reset_parameters(bx_module *m, bx_rng *rng);
/* PyTorch-style text of the tree into buf (always NUL-terminated, truncated
 * to n); returns the length it needed (like snprintf). */
size_t bx_module_repr(const bx_module *m, char *buf, size_t n);

/* ---- named collections --------------------------------------------------------- */
/* A list of (name, tensor) pairs. When owns_tensors the tensors belong to the
 * list and are freed with it; otherwise they are borrowed (for lists a
 * module returns: valid while the module and its structure are unchanged). */
typedef struct bx_named_tensors {
    int n;
    char **names;
    bx_tensor **tensors;
    int cap;
    bool owns_tensors;
} bx_named_tensors;
/* New empty list; NULL on NOMEM. */
bx_named_tensors *bx_named_tensors_new(bool owns_tensors);
/* Appends (name copied). An owning list takes t (freed on failure).
 * Errors: BX_ERR_INVALID (NULL name or t), BX_ERR_NOMEM. */
bx_status bx_named_tensors_add(bx_named_tensors *l, const char *name, bx_tensor *t);
/* Tensor under `name`, or NULL. */
bx_tensor *bx_named_tensors_get(const bx_named_tensors *l, const char *name);
/* Frees the list (and its tensors when it owns them). NULL is a no-op. */
void bx_named_tensors_free(bx_named_tensors *l);

/* All parameters of the tree with dotted names, PyTorch's named_parameters()
 * order; None slots are skipped. Tensors borrowed. NULL on NOMEM. */
bx_named_tensors *bx_module_named_parameters(bx_module *m);
/* All buffers (persistent or not, None skipped), named_buffers() order. */
bx_named_tensors *bx_module_named_buffers(bx_module *m);

typedef struct bx_named_modules {
    int n;
    char **names;
    bx_module **modules; /* borrowed */
    int cap;
} bx_named_modules;
/* m itself (name "") and every submodule, pre-order (named_modules()). */
bx_named_modules *bx_module_named_modules(bx_module *m);
void bx_named_modules_free(bx_named_modules *l);

/* ---- state dict ---------------------------------------------------------------- */
/* PyTorch's state_dict(): for each module in pre-order its parameters then
 * its persistent buffers (None skipped), dotted names. Tensors borrowed (the
 * live parameters: write the list out before changing the model).
 * NULL on NOMEM. */
bx_named_tensors *bx_module_state_dict(bx_module *m);
/* Copies the entries of sd into the module's parameters and persistent
 * buffers (in place: tensor identities stay; dtypes converted). All checks
 * run before anything is copied, so a failed load changes nothing. Errors:
 *  BX_ERR_NOT_FOUND  "load_state_dict: missing key 'fc.weight'" (strict)
 *  BX_ERR_INVALID    "load_state_dict: unexpected key 'fc.bias'" (strict)
 *  BX_ERR_SHAPE      "load_state_dict: size mismatch for fc.weight:
 *                     checkpoint (10,128), model (10,256)" (always)
 * When there are several, the message ends with "(and N more problems)". */
bx_status bx_module_load_state_dict(bx_module *m, const bx_named_tensors *sd, bool strict);
/* The same with entries fetched by name through fn (NULL = absent), e.g.
 * straight from a safetensors file. Unexpected keys cannot be seen this way;
 * strict only reports missing keys. */
typedef const bx_tensor *(*bx_tensor_lookup_fn)(void *ud, const char *name);
bx_status bx_module_load_state_dict_lookup(bx_module *m, bx_tensor_lookup_fn fn, void *ud, bool strict);

/* ---- built-in layers ------------------------------------------------------------
 * Constructors return a new module (caller owns) or NULL with
 * BX_ERR_INVALID (bad size or option) / BX_ERR_NOMEM. Parameter names,
 * shapes and default initialisation are PyTorch's. Layers with random
 * initialisation take `rng` (the draws advance it); rng NULL leaves those
 * weights zero, for loading a checkpoint right after. Type names are the
 * PyTorch class names. */

/* Linear: weight (out,in), bias (out) or None. Init: weight and bias
 * U(-1/sqrt(in), 1/sqrt(in)) (kaiming_uniform a=sqrt(5)).
 * x (..., in) -> (..., out). */
bx_module *bx_nn_linear(int64_t in_features, int64_t out_features, bool bias, bx_rng *rng);
/* Conv2d: weight (out, in/groups, kh, kw), bias (out) or None. Init:
 * U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = in/groups*kh*kw. o NULL =
 * BX_CONV2D_OPTS_INIT. x (N,in,H,W) -> (N,out,H',W'). */
bx_module *bx_nn_conv2d(int64_t in_channels, int64_t out_channels, int kh, int kw,
                        const bx_conv2d_opts *o, bool bias, bx_rng *rng);
/* The conv options of a Conv2d module (BX_ERR_INVALID for another type). */
bx_status bx_conv2d_get_opts(const bx_module *m, bx_conv2d_opts *out);

typedef struct bx_batchnorm_opts {
    double eps;               /* 1e-5 */
    double momentum;          /* 0.1; NAN = None: cumulative average 1/num_batches_tracked */
    bool affine;              /* weight (ones) and bias (zeros) parameters */
    bool track_running_stats; /* running_mean/running_var/num_batches_tracked buffers */
} bx_batchnorm_opts;
#define BX_BATCHNORM_OPTS_INIT {1e-5, 0.1, true, true}
/* BatchNorm1d over (N,C) or (N,C,L) / BatchNorm2d over (N,C,H,W); o NULL =
 * defaults. Parameters weight, bias (None without affine); buffers
 * running_mean (zeros), running_var (ones), num_batches_tracked (i64 0-d),
 * all None without track_running_stats. Forward, as torch: in training mode
 * batch statistics, and when tracking, num_batches_tracked += 1 and the
 * running statistics are updated with momentum (or 1/num_batches_tracked
 * when momentum is None); in eval mode the running statistics when present,
 * else batch statistics. */
bx_module *bx_nn_batchnorm1d(int64_t num_features, const bx_batchnorm_opts *o);
bx_module *bx_nn_batchnorm2d(int64_t num_features, const bx_batchnorm_opts *o);
/* True for BatchNorm1d/2d modules (torch's isinstance(m, _BatchNorm)). */
bool bx_module_is_batchnorm(const bx_module *m);
/* Runtime BatchNorm settings (BX_ERR_INVALID on a non-BatchNorm module).
 * momentum NAN = None. set_track_running_stats only flips the flag, as
 * assigning the attribute does in torch: buffers stay, so a module built with
 * tracking and switched off uses batch statistics and leaves the running
 * ones untouched in training mode, and still uses them in eval mode. */
bx_status bx_batchnorm_set_momentum(bx_module *m, double momentum);
double bx_batchnorm_momentum(const bx_module *m); /* NAN for None or non-BatchNorm */
bx_status bx_batchnorm_set_track_running_stats(bx_module *m, bool track);
bool bx_batchnorm_track_running_stats(const bx_module *m);
/* running_mean = 0, running_var = 1, num_batches_tracked = 0 (when the
 * buffers exist). */
bx_status bx_batchnorm_reset_running_stats(bx_module *m);

/* LayerNorm over the trailing `nnorm` dims of the given shape; weight (ones)
 * and bias (zeros) of that shape when elementwise_affine. */
bx_module *bx_nn_layernorm(int nnorm, const int64_t *normalized_shape, double eps,
                           bool elementwise_affine);
/* Embedding: weight (num, dim) ~ N(0,1), row padding_idx zeroed (negative
 * counts from the end; BX_NO_PADDING_IDX for none). idx i64 (...) -> (..., dim). */
bx_module *bx_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx,
                           bx_rng *rng);
/* Dropout(p): inverted dropout with the step's RNG in training mode. */
bx_module *bx_nn_dropout(float p);
bx_module *bx_nn_relu(void);
bx_module *bx_nn_leaky_relu(float negative_slope);
bx_module *bx_nn_gelu(bx_gelu_approx approx);
bx_module *bx_nn_sigmoid(void);
bx_module *bx_nn_tanh(void);
/* Identity: returns its input (a placeholder when replacing layers). */
bx_module *bx_nn_identity(void);
/* Pools; o NULL = BX_POOL2D_OPTS_INIT (kernel 2, stride = kernel). */
bx_module *bx_nn_max_pool2d(const bx_pool2d_opts *o);
bx_module *bx_nn_avg_pool2d(const bx_pool2d_opts *o);
/* The options of a MaxPool2d or AvgPool2d module as given (stride 0 = kernel
 * size). BX_ERR_INVALID for another type. */
bx_status bx_pool2d_get_opts(const bx_module *m, bx_pool2d_opts *out);
bx_module *bx_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w);
/* Flatten(start_dim, end_dim); PyTorch's defaults are (1, -1). */
bx_module *bx_nn_flatten(int start_dim, int end_dim);

/* Sequential: runs its children in order; they are named "0", "1", ... */
bx_module *bx_nn_sequential(void);
/* Appends child (taken over, freed on failure) under the next index name.
 * Errors: BX_ERR_INVALID (seq not a Sequential, child NULL), NOMEM. */
bx_status bx_sequential_append(bx_module *seq, bx_module *child);

#ifdef __cplusplus
}
#endif
#endif
