/* optim_int.h - optimizer internals shared by optimizer.c (groups, state
 * dicts, the step driver) and the per-algorithm files sgd.c, adam.c,
 * rmsprop.c (validation and the update math), and sched*.c. */
#ifndef BLIXT_OPTIM_INT_H
#define BLIXT_OPTIM_INT_H

#include "blixt/optim.h"
#include "core/core_int.h"
#include "tensor/tensor_int.h"

/* torch's param_group keys. Each optimizer type lists its own in torch's
 * order; foreach/differentiable/capturable/fused are constants (null/false)
 * written for layout fidelity only. */
typedef enum bx__hpkey {
    HK_LR, HK_MOMENTUM, HK_DAMPENING, HK_WEIGHT_DECAY, HK_NESTEROV, HK_MAXIMIZE,
    HK_FOREACH, HK_DIFFERENTIABLE, HK_BETAS, HK_EPS, HK_AMSGRAD, HK_CAPTURABLE,
    HK_FUSED, HK_ALPHA, HK_CENTERED, HK_COUNT
} bx__hpkey;

/* torch key name of k ("lr", "weight_decay", ...). */
const char *bx__hpkey_name(bx__hpkey k);

typedef struct bx__hp {
    double lr, momentum, dampening, weight_decay, betas[2], eps, alpha;
    bool nesterov, maximize, amsgrad, centered;
} bx__hp;

/* An extra numeric group key ("initial_lr", "swa_lr", ...). */
typedef struct bx__extra {
    char *key;
    double v;
} bx__extra;

#define BX__NBUF 3

/* One parameter and its optimizer state. `has_state` is torch's
 * "state[p] is non-empty"; has[k] says whether state tensor k exists
 * (buf[k] may stay allocated while has[k] is false, so that a reload or a
 * later lazy start allocates nothing). */
typedef struct bx__pslot {
    bx_tensor *p;
    bx_tensor *buf[BX__NBUF];
    bool has[BX__NBUF];
    bool has_state;
    double step;  /* Adam: float count, RMSprop: integer count */
    int64_t seq;  /* order in which the state was created (state dict order) */
} bx__pslot;

typedef struct bx__group {
    char *name;
    bx__hp hp;
    uint32_t set_mask; /* 1 << key for keys the group overrode */
    bx__pslot *slots;
    int n;
    bx__extra *extras;
    int nextra;
} bx__group;

typedef enum { BX__STEP_NONE, BX__STEP_FLOAT, BX__STEP_INT } bx__step_kind;

typedef struct bx__optim_vt {
    const char *type;                /* "SGD" */
    const bx__hpkey *keys;           /* torch key order */
    int nkeys;
    const char *const *state_keys;   /* names of buf[0..nstate) */
    int nstate;
    bx__step_kind step_kind;
    bool zero_init;   /* state tensors start at zero (Adam, RMSprop); SGD's
                         momentum buffer starts as a copy of the gradient */
    bool null_state;  /* absent state tensors are written as null (SGD) */
    /* Checks a complete set of hyper-parameters; `what` names the owner
     * ("SGD", "SGD param group 1"). */
    bx_status (*check)(const bx__hp *hp, const char *what);
    /* Whether state tensor k is used under hp. */
    bool (*needs)(const bx__hp *hp, int k);
    /* The update of one parameter (state prepared, grad checked). */
    void (*update)(const bx__hp *hp, bx__pslot *s);
} bx__optim_vt;

struct bx_optimizer {
    const bx__optim_vt *vt;
    bx__hp defaults;
    bx__group *groups;
    int ngroups;
    int64_t seq;
    int64_t steps;
};

/* New optimizer of the given type with checked defaults; NULL + error. */
bx_optimizer *bx__optimizer_new(const bx__optim_vt *vt, const bx__hp *defaults);

/* Key helpers shared by optimizer.c and optimizer_state.c. */
int bx__hpkey_lookup(const char *key);                    /* -1 if not a torch key */
bool bx__vt_has_key(const bx__optim_vt *vt, int k);      /* k is one of the type's keys */
bool bx__is_const_key(int k);                            /* foreach/differentiable/... */
double *bx__hp_num(bx__hp *hp, int k);                   /* numeric key, else NULL */
bool *bx__hp_flag(bx__hp *hp, int k);                    /* flag key, else NULL */
void bx__free_extras(bx__extra *e, int n);

/* Common validation pieces (error text in torch's words). */
bx_status bx__check_nonneg(const char *what, const char *key, double v);

/* Elementwise loops go parallel above this many elements. */
#define BX__OPTIM_PAR_MIN 32768

/* Runs fn(args, lo, hi) over [0, n): directly below BX__OPTIM_PAR_MIN
 * elements (no OpenMP region at all), else split over the threads in
 * 64-element-aligned chunks. */
typedef void (*bx__range_fn)(const void *args, int64_t lo, int64_t hi);
void bx__optim_parallel(bx__range_fn fn, const void *args, int64_t n);

#endif
