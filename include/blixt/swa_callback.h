/* blixt/swa_callback.h - StochasticWeightAveraging and EMAWeightAveraging
 * callbacks (spec/callbacks.md §8; Lightning 1.9.5 with its bugs fixed, see
 * docs/callbacks/swa.md).
 *
 * StochasticWeightAveraging keeps a copy of the model whose parameters are
 * the running mean of the weights reached at the start of every epoch from
 * swa_start to swa_end (= max_epochs - 1), drives the lr with an SWALR that
 * replaces the first scheduler config (or is appended), and copies the
 * average into the model when training ends. A model with BatchNorm gets one
 * extra forward-only epoch (no backward, no optimizer step) that recomputes
 * the BatchNorm statistics for the averaged weights.
 *
 *     bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT;
 *     o.swa_lr = 0.05;
 *     o.swa_epoch_start = 2; o.swa_epoch_start_is_fraction = false;
 *     bx_callback *cb = bx_swa_callback_new(&o);   // give it to the Trainer
 *
 * EMAWeightAveraging keeps an exponential moving average of the weights
 * (avg = decay * avg + (1 - decay) * p) updated after every N-th optimizer
 * step, and copies it into the model when training ends. */
#ifndef BLIXT_SWA_CALLBACK_H
#define BLIXT_SWA_CALLBACK_H

#include "callback.h"
#include "sched.h"
#include "swa.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_swa_callback_opts {
    /* The epoch SWA starts: an integer >= 1 (1-based: 2 = the second epoch)
     * or, with swa_epoch_start_is_fraction, a fraction in [0, 1] of
     * max_epochs (start = int(max_epochs * f)). Default 0.8, fraction. */
    double swa_epoch_start;
    bool swa_epoch_start_is_fraction;
    /* The SWA learning rate: one value for every param group (swa_lr), or
     * one per group (swa_lrs[0..n_swa_lrs), honoured per group). Required,
     * positive. */
    double swa_lr;
    const double *swa_lrs; /* copied */
    int n_swa_lrs;
    int64_t annealing_epochs;              /* 10, >= 0 */
    bx_anneal_strategy annealing_strategy; /* BX_ANNEAL_COS or BX_ANNEAL_LINEAR */
    bx_avg_fn avg_fn;                      /* NULL: equal-weight running mean */
    void *avg_ud;                          /* passed to avg_fn (borrowed) */
} bx_swa_callback_opts;
#define BX_SWA_CALLBACK_OPTS_INIT {0.8, true, NAN, NULL, 0, 10, BX_ANNEAL_COS, NULL, NULL}

/* New StochasticWeightAveraging callback (state key
 * "StochasticWeightAveraging"). Caller owns it until given to a Trainer.
 * NULL on error: BX_ERR_INVALID with the reason ("StochasticWeightAveraging:
 * swa_epoch_start should be a >0 integer or a float between 0 and 1, got
 * 0"; "... swa_lrs should be a positive float or a list of positive floats,
 * got swa_lrs[1] = -1"; "... annealing_epochs should be >= 0, got -2";
 * "... annealing_strategy should be cos or linear"), BX_ERR_NOMEM.
 * At on_fit_start: BX_ERR_INVALID when the model configured more than one
 * optimizer or scheduler, a per-group swa_lrs list whose length differs
 * from the optimizer's group count, or a fractional start with
 * max_epochs = -1. */
bx_callback *bx_swa_callback_new(const bx_swa_callback_opts *o);

/* Introspection (cb must be a StochasticWeightAveraging; otherwise -1 /
 * false / NULL). swa_start and swa_end are 0-based epochs, known from
 * on_fit_start on (-1 before). */
bool bx_swa_callback_is(const bx_callback *cb);
int64_t bx_swa_callback_swa_start(const bx_callback *cb);
int64_t bx_swa_callback_swa_end(const bx_callback *cb);
/* Whether SWA has started (SWALR installed). */
bool bx_swa_callback_initialized(const bx_callback *cb);
int64_t bx_swa_callback_n_averaged(const bx_callback *cb);
/* The last epoch whose start was folded into the average (-1: none). */
int64_t bx_swa_callback_latest_update_epoch(const bx_callback *cb);
/* The averaged copy of the model (borrowed; NULL before on_fit_start). */
bx_module *bx_swa_callback_average_module(bx_callback *cb);

/* ---- EMA ------------------------------------------------------------------------ */
typedef struct bx_ema_callback_opts {
    double decay;            /* in [0, 1]; 0.999 */
    int64_t every_n_steps;   /* update after every N-th optimizer step; 1 */
    int64_t start_step;      /* optimizer steps numbered below this (1-based) never update; 0 */
    bool warmup;             /* decay_k = min(decay, (1 + n) / (10 + n)) */
    bx_ema_buffers buffers;  /* BX_EMA_BUFFERS_COPY: buffers follow the live model */
    bool swap_at_end;        /* copy the average into the model at train end; true */
} bx_ema_callback_opts;
#define BX_EMA_CALLBACK_OPTS_INIT {0.999, 1, 0, false, BX_EMA_BUFFERS_COPY, true}

/* New EMAWeightAveraging callback (state key "EMAWeightAveraging"; its
 * state is the engine's bx_averaged_model_state, so a resumed run continues
 * the same average). NULL on error: BX_ERR_INVALID ("EMAWeightAveraging:
 * decay should be in [0, 1], got 1.5"; every_n_steps < 1; start_step < 0),
 * BX_ERR_NOMEM. */
bx_callback *bx_ema_callback_new(const bx_ema_callback_opts *o);
bool bx_ema_callback_is(const bx_callback *cb);
/* The EMA copy (borrowed; NULL before on_fit_start) and its update count. */
bx_module *bx_ema_callback_average_module(bx_callback *cb);
int64_t bx_ema_callback_n_averaged(const bx_callback *cb);

#ifdef __cplusplus
}
#endif
#endif
