/* nn_int.h - the module structure, shared by the files of src/nn. */
#ifndef BLIXT_NN_INT_H
#define BLIXT_NN_INT_H

#include "autograd/autograd_int.h"
#include "blixt/nn.h"

/* A named tensor slot (parameter or buffer); t may be NULL (None). */
typedef struct bx__nn_slot {
    char *name;
    bx_tensor *t;
    bool persistent; /* buffers only */
} bx__nn_slot;

typedef struct bx__nn_child {
    char *name;
    bx_module *m;
} bx__nn_child;

typedef struct bx__nn_reparam {
    char *name;
    bx_reparam_fn fn;
    void *ud;
    bool active; /* running now: a nested lookup of the same name gets the raw tensor */
} bx__nn_reparam;

typedef struct bx__nn_hook {
    void (*fn)(void); /* bx_forward_pre_hook_fn or bx_forward_hook_fn */
    void *ud;
} bx__nn_hook;

struct bx_module {
    const bx_module_type *type;
    void *impl;
    bx_module *parent;
    bool training;
    bx__nn_child *children;
    int nchildren, capchildren;
    bx__nn_slot *params;
    int nparams, capparams;
    bx__nn_slot *buffers;
    int nbuffers, capbuffers;
    bx__nn_reparam *reparams;
    int nreparams, capreparams;
    bx__nn_hook *pre_hooks;
    int npre, cappre;
    bx__nn_hook *post_hooks;
    int npost, cappost;
};

/* Grows *arr (elements of `size` bytes, capacity *cap) to hold at least
 * `need` elements. BX_ERR_NOMEM on failure (the array is left as it was). */
bx_status bx__nn_reserve(void **arr, int *cap, int need, size_t size);
/* Owned heap copy of n bytes (NULL on NOMEM): clone_impl for plain structs. */
void *bx__nn_dup(const void *p, size_t n);
/* Builds a module of type t with a heap copy of the impl struct (n bytes);
 * NULL on NOMEM. The type must use bx__free as destroy_impl. */
bx_module *bx__nn_new_pod(const bx_module_type *t, const void *impl, size_t n);
/* Fills t with U(-bound, bound) draws from rng, or zeros when rng is NULL. */
void bx__nn_uniform(bx_tensor *t, double bound, bx_rng *rng);
/* The module's path from its root ("features.0", "" for a root) into buf. */
char *bx__nn_path(const bx_module *m, char *buf, size_t n);

#endif
