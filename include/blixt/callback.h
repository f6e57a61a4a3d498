/* blixt/callback.h - the callback interface (Lightning's Callback).
 *
 * A callback is a const table of optional hooks plus a `void *self`. The
 * Trainer alone calls the hooks, in the order of spec/hooks.md: for each
 * hook every callback in list order (ModelCheckpoint instances moved last),
 * then the model's hook of the same name. A NULL member is a no-op. A hook
 * returning an error stops the run: the Trainer calls on_exception on every
 * callback, finalizes the loggers with "failed" and returns that status.
 * Built-in callbacks use exactly this interface and nothing else; a user
 * writes a callback outside the library the same way. */
#ifndef BLIXT_CALLBACK_H
#define BLIXT_CALLBACK_H

#include "data.h"
#include "optim.h"
#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_trainer bx_trainer;

typedef enum bx_stage { BX_STAGE_FIT = 0, BX_STAGE_VALIDATE, BX_STAGE_TEST, BX_STAGE_PREDICT } bx_stage;
/* "fit", "validate", "test", "predict" */
const char *bx_stage_name(bx_stage s);

/* What training_step produced for one batch (on_train_batch_end's outputs). */
typedef struct bx_step_output {
    double loss;          /* the un-normalised loss value (NaN when the step returned none) */
    bx_tensor *output;    /* an extra output tensor set by the step, or NULL */
} bx_step_output;

typedef struct bx_callback_ops {
    const char *name; /* class name: "EarlyStopping", "MyCallback" */
    /* Writes the state key (default: name). Built-ins write Lightning's
     * "ClassName{'monitor': 'val_loss', 'mode': 'min'}". */
    void (*state_key)(void *self, char *buf, size_t n);

    bx_status (*setup)(void *self, bx_trainer *tr, bx_stage stage);
    bx_status (*teardown)(void *self, bx_trainer *tr, bx_stage stage);
    bx_status (*on_fit_start)(void *self, bx_trainer *tr);
    bx_status (*on_fit_end)(void *self, bx_trainer *tr);
    bx_status (*on_sanity_check_start)(void *self, bx_trainer *tr);
    bx_status (*on_sanity_check_end)(void *self, bx_trainer *tr);
    bx_status (*on_train_start)(void *self, bx_trainer *tr);
    bx_status (*on_train_end)(void *self, bx_trainer *tr);
    bx_status (*on_train_epoch_start)(void *self, bx_trainer *tr);
    bx_status (*on_train_epoch_end)(void *self, bx_trainer *tr);
    bx_status (*on_train_batch_start)(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx);
    bx_status (*on_train_batch_end)(void *self, bx_trainer *tr, const bx_step_output *out,
                                    const bx_batch *b, int64_t batch_idx);
    bx_status (*on_validation_start)(void *self, bx_trainer *tr);
    bx_status (*on_validation_end)(void *self, bx_trainer *tr);
    bx_status (*on_validation_epoch_start)(void *self, bx_trainer *tr);
    bx_status (*on_validation_epoch_end)(void *self, bx_trainer *tr);
    bx_status (*on_validation_batch_start)(void *self, bx_trainer *tr, const bx_batch *b,
                                           int64_t batch_idx, int dataloader_idx);
    bx_status (*on_validation_batch_end)(void *self, bx_trainer *tr, const bx_step_output *out,
                                         const bx_batch *b, int64_t batch_idx, int dataloader_idx);
    bx_status (*on_test_start)(void *self, bx_trainer *tr);
    bx_status (*on_test_end)(void *self, bx_trainer *tr);
    bx_status (*on_test_epoch_start)(void *self, bx_trainer *tr);
    bx_status (*on_test_epoch_end)(void *self, bx_trainer *tr);
    bx_status (*on_test_batch_start)(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx,
                                     int dataloader_idx);
    bx_status (*on_test_batch_end)(void *self, bx_trainer *tr, const bx_step_output *out,
                                   const bx_batch *b, int64_t batch_idx, int dataloader_idx);
    bx_status (*on_predict_start)(void *self, bx_trainer *tr);
    bx_status (*on_predict_end)(void *self, bx_trainer *tr);
    bx_status (*on_predict_epoch_start)(void *self, bx_trainer *tr);
    bx_status (*on_predict_epoch_end)(void *self, bx_trainer *tr);
    bx_status (*on_predict_batch_start)(void *self, bx_trainer *tr, const bx_batch *b,
                                        int64_t batch_idx, int dataloader_idx);
    bx_status (*on_predict_batch_end)(void *self, bx_trainer *tr, const bx_step_output *out,
                                      const bx_batch *b, int64_t batch_idx, int dataloader_idx);
    /* The run failed with status s (message msg); return value ignored. */
    bx_status (*on_exception)(void *self, bx_trainer *tr, bx_status s, const char *msg);
    bx_status (*on_before_backward)(void *self, bx_trainer *tr, bx_tensor *loss);
    bx_status (*on_after_backward)(void *self, bx_trainer *tr);
    bx_status (*on_before_optimizer_step)(void *self, bx_trainer *tr, bx_optimizer *opt, int opt_idx);
    bx_status (*on_before_zero_grad)(void *self, bx_trainer *tr, bx_optimizer *opt);
    /* Persisted state: fill `out` (an empty dict); an empty dict means
     * stateless. load_state_dict receives a copy of what state_dict saved. */
    bx_status (*state_dict)(void *self, bx_trainer *tr, bx_state *out);
    bx_status (*load_state_dict)(void *self, bx_trainer *tr, const bx_state *state);
    /* The whole checkpoint dict while it is built (may be mutated) / read. */
    bx_status (*on_save_checkpoint)(void *self, bx_trainer *tr, bx_state *ckpt);
    bx_status (*on_load_checkpoint)(void *self, bx_trainer *tr, const bx_state *ckpt);
    /* Frees self when the callback is freed (NULL: caller keeps self). */
    void (*destroy)(void *self);
    /* Restoring a checkpoint: called with this callback's saved state
     * (callbacks[state key]) BEFORE the model's weights are loaded, for
     * callbacks that change the model's structure (QuantizationAwareTraining
     * prepares the model so its QAT buffers load; Lightning's
     * _load_before_model). load_state_dict still runs later as usual. */
    bx_status (*load_before_model)(void *self, bx_trainer *tr, const bx_state *state);
} bx_callback_ops;

typedef struct bx_callback bx_callback;
/* Wraps ops + self. Caller owns the callback until it is given to a Trainer
 * (bx_trainer_opts.callbacks: the Trainer then owns it). NULL on NOMEM
 * (self destroyed with ops->destroy). */
bx_callback *bx_callback_new(const bx_callback_ops *ops, void *self);
void bx_callback_free(bx_callback *cb);
const bx_callback_ops *bx_callback_get_ops(const bx_callback *cb);
void *bx_callback_self(const bx_callback *cb);
const char *bx_callback_name(const bx_callback *cb);
/* The state key ("ClassName" or ops->state_key's text). */
void bx_callback_state_key(const bx_callback *cb, char *buf, size_t n);
/* Overrides the state key (a copy is kept), for several instances of a user
 * class that would otherwise collide. */
bx_status bx_callback_set_state_key(bx_callback *cb, const char *key);

#ifdef __cplusplus
}
#endif
#endif
