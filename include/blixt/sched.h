/* blixt/sched.h - learning-rate schedulers (torch 1.13's lr_scheduler and
 * swa_utils.SWALR).
 *
 * A scheduler edits the lr (and, for OneCycleLR, the momentum) of every
 * param group of one optimizer, which it borrows: the optimizer must outlive
 * it. The formulas are torch's *chainable* ones: most schedulers multiply
 * the group's current lr, so they compose with other code that edits lrs
 * (fine-tuning callbacks, groups added at run time), exactly as in torch.
 *
 * Construction performs torch's initial step (last_epoch -1 -> 0) and sets
 * "initial_lr" in every group (torch's setdefault; OneCycleLR overwrites it,
 * SWALR also sets "swa_lr"). Call bx_scheduler_step after the optimizer step
 * of each iteration (or epoch), bx_scheduler_step_metric for
 * ReduceLROnPlateau.
 *
 *     bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
 *     so.step_size = 7; so.gamma = 0.5;
 *     bx_scheduler *s = bx_step_lr_new(opt, &so);
 *     for (...) { ...; bx_optimizer_step(opt); bx_scheduler_step(s); }
 *     bx_scheduler_free(s);
 *
 * Constructors return NULL on error with bx_errmsg() naming the bad option:
 * BX_ERR_INVALID (missing required option, out-of-range value, per-group
 * list whose length differs from the number of groups, last_epoch != -1
 * while a group lacks "initial_lr"), BX_ERR_NOMEM. Each *_opts has a
 * `last_epoch` (default -1: a fresh start), as torch's constructors do. */
#ifndef BLIXT_SCHED_H
#define BLIXT_SCHED_H

#include "optim.h"

#include <math.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_scheduler bx_scheduler;

typedef enum bx_anneal_strategy { BX_ANNEAL_COS = 0, BX_ANNEAL_LINEAR = 1 } bx_anneal_strategy;

/* StepLR: lr *= gamma every step_size epochs. */
typedef struct bx_step_lr_opts {
    int64_t step_size; /* required, > 0 */
    double gamma;      /* 0.1 */
    int64_t last_epoch;
} bx_step_lr_opts;
#define BX_STEP_LR_OPTS_INIT {0, 0.1, -1}
bx_scheduler *bx_step_lr_new(bx_optimizer *o, const bx_step_lr_opts *opts);

/* MultiStepLR: lr *= gamma^count at each milestone (repeats count twice). */
typedef struct bx_multistep_lr_opts {
    const int64_t *milestones; /* required (copied) */
    int n_milestones;
    double gamma; /* 0.1 */
    int64_t last_epoch;
} bx_multistep_lr_opts;
#define BX_MULTISTEP_LR_OPTS_INIT {NULL, 0, 0.1, -1}
bx_scheduler *bx_multistep_lr_new(bx_optimizer *o, const bx_multistep_lr_opts *opts);

/* ExponentialLR: lr *= gamma every epoch. */
typedef struct bx_exponential_lr_opts {
    double gamma; /* required */
    int64_t last_epoch;
} bx_exponential_lr_opts;
#define BX_EXPONENTIAL_LR_OPTS_INIT {NAN, -1}
bx_scheduler *bx_exponential_lr_new(bx_optimizer *o, const bx_exponential_lr_opts *opts);

/* CosineAnnealingLR: eta_min + (base-eta_min)*(1+cos(pi*e/T_max))/2 in
 * chainable form (not clamped at T_max: period 2*T_max). */
typedef struct bx_cosine_lr_opts {
    int64_t T_max; /* required, > 0 */
    double eta_min; /* 0 */
    int64_t last_epoch;
} bx_cosine_lr_opts;
#define BX_COSINE_LR_OPTS_INIT {0, 0.0, -1}
bx_scheduler *bx_cosine_lr_new(bx_optimizer *o, const bx_cosine_lr_opts *opts);

/* CosineAnnealingWarmRestarts: cosine over T_i epochs, restarting with
 * T_i *= T_mult. */
typedef struct bx_cosine_warm_restarts_opts {
    int64_t T_0;    /* required, > 0 */
    int64_t T_mult; /* 1 (>= 1) */
    double eta_min; /* 0 */
    int64_t last_epoch;
} bx_cosine_warm_restarts_opts;
#define BX_COSINE_WARM_RESTARTS_OPTS_INIT {0, 1, 0.0, -1}
bx_scheduler *bx_cosine_warm_restarts_new(bx_optimizer *o, const bx_cosine_warm_restarts_opts *opts);

/* LambdaLR: lr = base_lr * fn(ud, epoch). Either one function for every
 * group (`lambda`) or one per group (`per_group`, n_per_group = number of
 * groups). The functions are not saved in the state dict (as in torch). */
typedef double (*bx_lr_lambda_fn)(void *ud, int64_t epoch);
typedef struct bx_lr_lambda {
    bx_lr_lambda_fn fn;
    void *ud;
} bx_lr_lambda;
typedef struct bx_lambda_lr_opts {
    bx_lr_lambda lambda;
    const bx_lr_lambda *per_group; /* copied */
    int n_per_group;
    int64_t last_epoch;
} bx_lambda_lr_opts;
#define BX_LAMBDA_LR_OPTS_INIT {{NULL, NULL}, NULL, 0, -1}
bx_scheduler *bx_lambda_lr_new(bx_optimizer *o, const bx_lambda_lr_opts *opts);

/* LinearLR: the factor goes linearly from start_factor to end_factor over
 * total_iters epochs. */
typedef struct bx_linear_lr_opts {
    double start_factor; /* 1/3, in (0, 1] */
    double end_factor;   /* 1.0, in [0, 1] */
    int64_t total_iters; /* 5 */
    int64_t last_epoch;
} bx_linear_lr_opts;
#define BX_LINEAR_LR_OPTS_INIT {1.0 / 3, 1.0, 5, -1}
bx_scheduler *bx_linear_lr_new(bx_optimizer *o, const bx_linear_lr_opts *opts);

/* OneCycleLR: initial (max_lr/div_factor) -> max_lr -> min
 * (initial/final_div_factor) over total_steps (or epochs*steps_per_epoch)
 * steps; three_phase goes initial -> max -> initial -> min. With
 * cycle_momentum the momentum (SGD/RMSprop momentum, Adam betas[0]) goes
 * max_momentum -> base_momentum -> max_momentum. Per-group lists, when
 * given, must have one value per group. */
typedef struct bx_one_cycle_lr_opts {
    double max_lr; /* required unless max_lrs */
    const double *max_lrs;
    int n_max_lrs;
    int64_t total_steps;     /* or epochs and steps_per_epoch */
    int64_t epochs;
    int64_t steps_per_epoch;
    double pct_start;        /* 0.3 */
    bx_anneal_strategy anneal_strategy; /* cos */
    bool cycle_momentum;     /* true */
    double base_momentum;    /* 0.85 */
    const double *base_momentums;
    int n_base_momentums;
    double max_momentum;     /* 0.95 */
    const double *max_momentums;
    int n_max_momentums;
    double div_factor;       /* 25 */
    double final_div_factor; /* 1e4 */
    bool three_phase;        /* false */
    int64_t last_epoch;
} bx_one_cycle_lr_opts;
#define BX_ONE_CYCLE_LR_OPTS_INIT                                                                 \
    {NAN, NULL, 0, 0, 0, 0, 0.3, BX_ANNEAL_COS, true, 0.85, NULL, 0, 0.95, NULL, 0, 25.0, 1e4, false, -1}
bx_scheduler *bx_one_cycle_lr_new(bx_optimizer *o, const bx_one_cycle_lr_opts *opts);

/* ReduceLROnPlateau: lr = max(lr*factor, min_lr) once the metric has not
 * improved for more than `patience` steps (golden rule S6). Step it with
 * bx_scheduler_step_metric. */
typedef enum bx_plateau_mode { BX_PLATEAU_MIN = 0, BX_PLATEAU_MAX = 1 } bx_plateau_mode;
typedef enum bx_threshold_mode { BX_THRESHOLD_REL = 0, BX_THRESHOLD_ABS = 1 } bx_threshold_mode;
typedef struct bx_plateau_opts {
    bx_plateau_mode mode;       /* min */
    double factor;              /* 0.1, < 1 */
    int64_t patience;           /* 10 */
    double threshold;           /* 1e-4 */
    bx_threshold_mode threshold_mode; /* rel */
    int64_t cooldown;           /* 0 */
    double min_lr;              /* 0, or per group: */
    const double *min_lrs;
    int n_min_lrs;
    double eps;                 /* 1e-8 */
} bx_plateau_opts;
#define BX_PLATEAU_OPTS_INIT {BX_PLATEAU_MIN, 0.1, 10, 1e-4, BX_THRESHOLD_REL, 0, 0.0, NULL, 0, 1e-8}
bx_scheduler *bx_plateau_new(bx_optimizer *o, const bx_plateau_opts *opts);

/* SWALR: anneals each group's lr to swa_lr over anneal_epochs steps
 * (golden rule S7). Lightning's StochasticWeightAveraging sets the groups'
 * "initial_lr" and passes last_epoch = max_epochs. */
typedef struct bx_swalr_opts {
    double swa_lr; /* required unless swa_lrs */
    const double *swa_lrs;
    int n_swa_lrs;
    int64_t anneal_epochs; /* 10, >= 0 */
    bx_anneal_strategy anneal_strategy; /* cos */
    int64_t last_epoch;
} bx_swalr_opts;
#define BX_SWALR_OPTS_INIT {NAN, NULL, 0, 10, BX_ANNEAL_COS, -1}
bx_scheduler *bx_swalr_new(bx_optimizer *o, const bx_swalr_opts *opts);

/* ---- common ----------------------------------------------------------------- */

/* torch's class name: "StepLR", "MultiStepLR", "ExponentialLR",
 * "CosineAnnealingLR", "CosineAnnealingWarmRestarts", "LambdaLR", "LinearLR",
 * "OneCycleLR", "ReduceLROnPlateau", "SWALR". */
const char *bx_scheduler_type(const bx_scheduler *s);
/* The optimizer the scheduler drives. */
bx_optimizer *bx_scheduler_optimizer(const bx_scheduler *s);
/* Whether the scheduler is stepped with a metric (ReduceLROnPlateau). */
bool bx_scheduler_needs_metric(const bx_scheduler *s);
/* One scheduler step (torch's scheduler.step()). Errors: BX_ERR_INVALID
 * (ReduceLROnPlateau: use bx_scheduler_step_metric), BX_ERR_STATE (OneCycleLR
 * stepped past total_steps; a group added after construction lacks a key
 * the scheduler reads, e.g. "max_lr" or "swa_lr"), BX_ERR_NOMEM (only when
 * the optimizer gained groups). */
bx_status bx_scheduler_step(bx_scheduler *s);
/* ReduceLROnPlateau's step(metric). Errors: BX_ERR_INVALID for other
 * schedulers, BX_ERR_STATE (a group added after construction has no
 * min_lr). */
bx_status bx_scheduler_step_metric(bx_scheduler *s, double metric);
/* The lr of group g after the last step (torch's get_last_lr()[g]); NAN if
 * g is out of range. Before its first step ReduceLROnPlateau reports the
 * group's current lr. */
double bx_scheduler_last_lr(const bx_scheduler *s, int g);
/* Number of values get_last_lr() has (the optimizer's group count at the
 * last step). */
int bx_scheduler_num_last_lr(const bx_scheduler *s);
/* torch's last_epoch (the number of steps taken, plus the initial one). */
int64_t bx_scheduler_last_epoch(const bx_scheduler *s);

/* torch's scheduler.state_dict() layout and key order, e.g. StepLR
 * {"step_size", "gamma", "base_lrs", "last_epoch", "verbose", "_step_count",
 * "_get_lr_called_within_step", "_last_lr"}; MultiStepLR milestones as a
 * dict {"5": 1, ...}; functions as strings ("<callable SWALR._cosine_anneal>")
 * or nulls (LambdaLR's lr_lambdas). Caller owns the tree; NULL on NOMEM. */
bx_state *bx_scheduler_state_dict(const bx_scheduler *s);
/* Restores a state dict of the same scheduler type. Validates before
 * changing anything. Errors: BX_ERR_FORMAT (missing key, wrong type),
 * BX_ERR_INVALID (the state is of another scheduler type or has out-of-range
 * values), BX_ERR_NOMEM. */
bx_status bx_scheduler_load_state_dict(bx_scheduler *s, const bx_state *sd);
/* Frees the scheduler (not the optimizer). NULL is a no-op. */
void bx_scheduler_free(bx_scheduler *s);

#ifdef __cplusplus
}
#endif
#endif
