/* blixt/swa.h - weight averaging: torch.optim.swa_utils in C.
 *
 * bx_averaged_model is torch's AveragedModel: a deep copy of a module taken
 * at construction, whose parameters (and, with use_buffers, buffers) become
 * a running average of the models passed to bx_averaged_model_update:
 *   first call:  avg = p                                   (copy)
 *   later calls: avg = avg + (p - avg) / (n_averaged + 1)  (float32)
 * or a custom averaging function. n_averaged is an i64 0-d buffer like
 * torch's, so the state dict reads and writes torch's keys: "n_averaged"
 * then "module.<name>" for every entry of the wrapped model.
 *
 * The same object also does exponential moving averages (EMA) of weights:
 * avg = decay * avg + (1 - decay) * p, optionally with the warm-up decay
 * min(decay, (1 + n) / (10 + n)) and an update every N steps.
 *
 * bx_update_bn recomputes BatchNorm statistics with one pass over data
 * (torch.optim.swa_utils.update_bn) and bx_transfer_weights copies averaged
 * parameters into a model by name (Lightning's transfer_weights).
 *
 * Averaged models are not thread-safe: one thread at a time per object. */
#ifndef BLIXT_SWA_H
#define BLIXT_SWA_H

#include "data.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A custom averaging function: updates avg[0..n) in place from the model's
 * values p[0..n) when n_averaged models are already in the average (>= 1:
 * the first update always copies). Called once per tensor; tensors that are
 * not f32 (the i64 num_batches_tracked with use_buffers) are passed as f32
 * copies and converted back (integers truncated toward zero, as torch's
 * copy_ does). ud is the pointer given in the options. */
typedef void (*bx_avg_fn)(void *ud, float *avg, const float *p, int64_t n, int64_t n_averaged);

/* What an EMA does with the buffers of the model at each update. */
typedef enum bx_ema_buffers {
    BX_EMA_BUFFERS_COPY = 0,    /* copy the model's buffers (running stats follow the live model) */
    BX_EMA_BUFFERS_AVERAGE = 1, /* float buffers averaged like the parameters, integer ones copied */
    BX_EMA_BUFFERS_KEEP = 2     /* leave them as deep-copied at construction (torch's default) */
} bx_ema_buffers;

typedef struct bx_averaged_model_opts {
    bx_avg_fn avg_fn;  /* NULL: equal-weight running mean (torch's default) */
    void *avg_ud;      /* passed to avg_fn (borrowed) */
    bool use_buffers;  /* average the buffers too; otherwise they stay as copied at construction */
} bx_averaged_model_opts;
#define BX_AVERAGED_MODEL_OPTS_INIT {NULL, NULL, false}

typedef struct bx_ema_opts {
    double decay;            /* in [0, 1]; 0.999 */
    int64_t every_n_steps;   /* bx_averaged_model_step updates on every N-th call; >= 1 */
    int64_t start_step;      /* calls numbered below this (1-based) never update; 0 = from the first */
    bool warmup;             /* decay_k = min(decay, (1 + n) / (10 + n)), n = n_averaged */
    bx_ema_buffers buffers;  /* what happens to buffers at each update */
} bx_ema_opts;
#define BX_EMA_OPTS_INIT {0.999, 1, 0, false, BX_EMA_BUFFERS_COPY}

typedef struct bx_averaged_model bx_averaged_model;

/* New averaged model holding a deep copy of `model` (bx_module_clone: same
 * values, buffers and training flag), n_averaged = 0. o NULL = defaults.
 * `model` is not kept. Caller owns the result (bx_averaged_model_free).
 * NULL on error: BX_ERR_INVALID (model NULL), those of bx_module_clone
 * (BX_ERR_UNSUPPORTED, BX_ERR_NOMEM). */
bx_averaged_model *bx_averaged_model_new(const bx_module *model, const bx_averaged_model_opts *o);
/* New EMA averaged model (deep copy of model, n_averaged = 0); o NULL =
 * BX_EMA_OPTS_INIT. Errors as bx_averaged_model_new, plus BX_ERR_INVALID
 * (decay not in [0, 1], every_n_steps < 1, start_step < 0). */
bx_averaged_model *bx_averaged_model_new_ema(const bx_module *model, const bx_ema_opts *o);
/* Frees the object and its module. NULL is a no-op. */
void bx_averaged_model_free(bx_averaged_model *a);

/* The averaged module (borrowed, owned by a): forward it, save it, give it
 * to bx_update_bn. Changing its structure breaks later updates. */
bx_module *bx_averaged_model_module(bx_averaged_model *a);
/* Number of models averaged so far (torch's n_averaged). */
int64_t bx_averaged_model_n_averaged(const bx_averaged_model *a);
/* The n_averaged buffer itself: an i64 0-d tensor owned by a. */
const bx_tensor *bx_averaged_model_n_averaged_tensor(const bx_averaged_model *a);
/* True for an EMA built with bx_averaged_model_new_ema. */
bool bx_averaged_model_is_ema(const bx_averaged_model *a);
/* Number of bx_averaged_model_step calls so far (EMA step counter). */
int64_t bx_averaged_model_num_steps(const bx_averaged_model *a);

/* update_parameters: folds `model` into the average. The tensors are paired
 * in order (parameters; then buffers with use_buffers / an averaging EMA) and
 * must have the same names and shapes as the averaged copy's. The first call
 * (n_averaged 0) copies; later ones apply the averaging function; then
 * n_averaged += 1. Nothing changes on error: BX_ERR_INVALID (NULL argument),
 * BX_ERR_SHAPE ("averaged_model update: parameter 'fc.weight' (3,8) does not
 * match the model's (3,4)", a different count or name), BX_ERR_NOMEM. */
bx_status bx_averaged_model_update(bx_averaged_model *a, bx_module *model);
/* The EMA step hook (call it after every optimizer step): counts the call
 * (1-based s) and runs bx_averaged_model_update when s >= start_step and
 * s % every_n_steps == 0; *updated (optional) tells whether it did. For a
 * plain averaged model every call updates. Errors: those of the update. */
bx_status bx_averaged_model_step(bx_averaged_model *a, bx_module *model, bool *updated);
/* Sets n_averaged (e.g. 0 to restart averaging, as Lightning does at
 * swa_start). BX_ERR_INVALID for a negative value. */
bx_status bx_averaged_model_set_n_averaged(bx_averaged_model *a, int64_t n);

/* State dict views (lists of borrowed tensors, valid while a lives and its
 * module's structure is unchanged; free the list with bx_named_tensors_free):
 *  prefixed = true:  torch's AveragedModel.state_dict(): "n_averaged" (i64
 *                    0-d) first, then "module.<key>" for every key of the
 *                    averaged module's state dict;
 *  prefixed = false: the averaged module's own state dict (plain keys, what
 *                    a plain model of the same architecture loads).
 * NULL on NOMEM. */
bx_named_tensors *bx_averaged_model_state_dict(bx_averaged_model *a, bool prefixed);
/* Loads either view: when sd holds "n_averaged" or any "module." key it is
 * read as the prefixed view (n_averaged then comes from it), otherwise as the
 * plain view (n_averaged unchanged). Checks run before anything changes.
 * Errors: those of bx_module_load_state_dict (missing / unexpected keys when
 * strict, size mismatches), BX_ERR_SHAPE (n_averaged not one integer). */
bx_status bx_averaged_model_load_state_dict(bx_averaged_model *a, const bx_named_tensors *sd, bool strict);

/* Resumable state as a new bx_state dict owned by the caller:
 *   {"kind": "swa"|"ema", "n_averaged": int, "num_steps": int,
 *    "use_buffers": bool, "average_model_state": {prefixed state dict}}
 * (tensors copied). NULL on NOMEM. */
bx_state *bx_averaged_model_state(bx_averaged_model *a);
/* Restores what bx_averaged_model_state saved (strict: every key of the
 * averaged module must be present). Nothing changes on error:
 * BX_ERR_FORMAT (a key missing or of the wrong type, "kind" differs),
 * the errors of bx_module_load_state_dict. */
bx_status bx_averaged_model_load_state(bx_averaged_model *a, const bx_state *s);

/* Copies every parameter of src (and every buffer when include_buffers)
 * into the entry of dst with the same dotted name (values only: tensor
 * identities, requires_grad and gradients of dst stay), like Lightning's
 * transfer_weights after SWA. All names and shapes are checked before
 * anything is copied. Errors: BX_ERR_INVALID (NULL), BX_ERR_NOT_FOUND
 * ("transfer_weights: 'fc.bias' missing in the destination"),
 * BX_ERR_SHAPE (sizes differ), BX_ERR_NOMEM. */
bx_status bx_transfer_weights(bx_module *src, bx_module *dst, bool include_buffers);
/* bx_transfer_weights(bx_averaged_model_module(a), dst, include_buffers). */
bx_status bx_averaged_model_transfer_weights(bx_averaged_model *a, bx_module *dst, bool include_buffers);

/* ---- update_bn ---------------------------------------------------------------
 * Recomputes the running statistics of every BatchNorm in m with one pass
 * over data (torch.optim.swa_utils.update_bn): running_mean = 0,
 * running_var = 1, num_batches_tracked = 0, momentum None (cumulative
 * average: factor 1/num_batches_tracked, so every batch counts once whatever
 * its size), a train-mode forward of every batch with gradients off, then
 * each BatchNorm's momentum and every module's train/eval flag restored.
 * BatchNorms without running buffers are left alone; a model without any
 * BatchNorm is not run at all (torch returns early too).
 *
 * The step st (NULL: a temporary one) is reset before each batch: the batch
 * and the forward's tensors live in it until the next batch. On error the
 * momenta and modes are still restored, the statistics are partly updated,
 * and the step's error is returned (st keeps the message). */

/* The batch source: returns the next input batch as a tensor in st (or any
 * tensor that stays valid until the next call), NULL at the end; an error
 * is reported by returning bx_step_fail(st, ...). */
typedef bx_tensor *(*bx_batch_next_fn)(void *ud, bx_step *st);
/* update_bn over the batches next() returns. Errors: BX_ERR_INVALID (NULL m
 * or next), the step error of a failing batch or forward. */
bx_status bx_update_bn(bx_module *m, bx_batch_next_fn next, void *ud, bx_step *st);
/* update_bn over every batch of loader l (its current epoch, batch.x fed to
 * the model). Errors: BX_ERR_INVALID (NULL argument), those of
 * bx_loader_batch and of the forward. */
bx_status bx_update_bn_loader(bx_module *m, bx_loader *l, bx_step *st);

/* ---- the two halves of update_bn ------------------------------------------------
 * For a caller that runs the forwards itself (Lightning's extra SWA epoch runs
 * them inside the training loop). begin: every BatchNorm with running buffers
 * gets running_mean 0, running_var 1, num_batches_tracked 0 and momentum None,
 * and (set_train) the tree is put in training mode when it has any such
 * BatchNorm; the previous momenta and train/eval flags go into *saved (caller
 * owns it until bx_bn_recompute_end). end: restores them and frees saved (NULL
 * is a no-op). The module's structure must not change in between. Errors:
 * BX_ERR_INVALID (NULL), BX_ERR_NOMEM (nothing changed). */
typedef struct bx_bn_saved bx_bn_saved;
bx_status bx_bn_recompute_begin(bx_module *m, bool set_train, bx_bn_saved **saved);
void bx_bn_recompute_end(bx_bn_saved *saved);
/* Number of BatchNorms begin reset (0: update_bn would run nothing). */
int bx_bn_saved_count(const bx_bn_saved *saved);
/* True when m or a submodule is a BatchNorm (Lightning adds the extra
 * update_bn epoch only then). */
bool bx_module_has_batchnorm(bx_module *m);

#ifdef __cplusplus
}
#endif
#endif
