/* sched_int.h - LR scheduler internals: the common part (torch's
 * _LRScheduler: base_lrs, last_epoch, _step_count, _last_lr, the initial
 * step, the state-dict frame) in sched.c and one vtable per scheduler kind
 * (sched.c, sched_cosine.c, sched_onecycle.c, sched_plateau.c,
 * sched_swalr.c). */
#ifndef BLIXT_SCHED_INT_H
#define BLIXT_SCHED_INT_H

#include "blixt/sched.h"
#include "io/state_int.h"
#include "optim/optim_int.h"

typedef struct bx__sched_vt {
    const char *type;
    /* torch's get_lr(): writes new lrs into s->values (capacity >= the
     * group count) and their number into *n (torch zips them with the
     * groups). NULL for kinds that replace the whole step. */
    bx_status (*get_lr)(bx_scheduler *s, int *n);
    /* Replaces the common step (CosineAnnealingWarmRestarts, plateau). */
    bx_status (*step)(bx_scheduler *s, double metric);
    /* State-dict keys written before / after the common ones. */
    bx_status (*save_pre)(const bx_scheduler *s, bx_state *d);
    bx_status (*save_post)(const bx_scheduler *s, bx_state *d);
    /* Validates (apply false) or restores (apply true) the kind's keys. */
    bx_status (*load)(bx_scheduler *s, const bx_state *d, bool apply);
    /* Frees the kind's own memory (not the struct). May be NULL. */
    void (*release)(bx_scheduler *s);
    bool metric;      /* stepped with a metric (plateau) */
    bool lr_common;   /* has torch's _LRScheduler state (all but plateau) */
} bx__sched_vt;

struct bx_scheduler {
    const bx__sched_vt *vt;
    bx_optimizer *opt;
    double *base_lrs;
    int nbase;
    int64_t last_epoch;
    int64_t step_count;
    double *last_lr;  /* _last_lr: one value per group at the last step */
    int nlast;
    bool has_last_lr;
    double *values;   /* get_lr scratch */
    int cap;          /* capacity of last_lr and values */
};

/* Allocates a zeroed scheduler struct of `size` bytes (a kind struct whose
 * first member is bx_scheduler); checks that the optimizer has groups and
 * that last_epoch >= -1 and (when != -1) every group has "initial_lr".
 * NULL + error. */
bx_scheduler *bx__sched_alloc(size_t size, const bx__sched_vt *vt, bx_optimizer *o, int64_t last_epoch);
/* torch's _LRScheduler.__init__ tail: sets "initial_lr" (setdefault) when
 * last_epoch == -1, records base_lrs, performs the initial step. On error
 * the scheduler is freed. */
bx_scheduler *bx__sched_start(bx_scheduler *s, int64_t last_epoch);
/* Makes room for `n` groups in last_lr/values. */
bx_status bx__sched_reserve(bx_scheduler *s, int n);
/* Records _last_lr from the optimizer's groups. */
void bx__sched_record_last_lr(bx_scheduler *s);
/* Reads a group key through the optimizer, with a BX_ERR_STATE error naming
 * the scheduler when the group lacks it. */
bx_status bx__sched_group_key(const bx_scheduler *s, int g, const char *key, double *out);
/* Per-group option list: the single value or the list (which must have one
 * entry per group). Writes ngroups values into out. */
bx_status bx__sched_per_group(const char *what, const char *name, double single, const double *list, int n,
                              int ngroups, double *out);

/* Floor modulo (Python's %) for b > 0. */
static inline int64_t bx__pymod(int64_t a, int64_t b) {
    int64_t r = a % b;
    return r < 0 ? r + b : r;
}

/* State helpers. */
bx_status bx__state_set_doubles(bx_state *d, const char *key, const double *v, int n, bool int_zero);
/* Reads a list of numbers; *out is bx__malloc'd (caller frees). */
bx_status bx__state_get_doubles(const bx_state *d, const char *key, double **out, int *n);
/* "num0": torch's int 0 defaults written as 0, other values as floats. */
bx_status bx__state_set_num0(bx_state *d, const char *key, double v);

#endif
