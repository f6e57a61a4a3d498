/* blixt/data.h - datasets, batches and the DataLoader (DESIGN.md layer 7).
 *
 * A dataset here is a pair of in-memory tensors x (N, ...) and y (N, ...)
 * (y optional). A loader cuts it into batches: batch_size, seeded shuffle
 * (the permutation of epoch e is a pure function of (seed, e), so a resumed
 * run sees the same batches), drop_last. Batches are gathered into step
 * tensors, so iterating allocates nothing after the first step. */
#ifndef BLIXT_DATA_H
#define BLIXT_DATA_H

#include "autograd.h"
#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One batch as the model sees it. x/y are step tensors (or views of the
 * dataset); size = number of samples (the weight of this batch in epoch means). */
typedef struct bx_batch {
    bx_tensor *x;
    bx_tensor *y;  /* NULL when the dataset has no targets */
    int64_t size;
} bx_batch;

typedef struct bx_dataset bx_dataset;
/* Dataset over x (N, ...) and y (N, ...) or NULL. With take_ownership the
 * dataset frees the tensors; otherwise they must outlive it. Errors:
 * BX_ERR_SHAPE (first dims differ, 0-d x), BX_ERR_NOMEM. NULL on error. */
bx_dataset *bx_dataset_from_tensors(bx_tensor *x, bx_tensor *y, bool take_ownership);
void bx_dataset_free(bx_dataset *ds);
int64_t bx_dataset_len(const bx_dataset *ds);
const bx_tensor *bx_dataset_x(const bx_dataset *ds);
const bx_tensor *bx_dataset_y(const bx_dataset *ds);

typedef struct bx_loader_opts {
    int64_t batch_size; /* >= 1 */
    bool shuffle;
    bool drop_last;
    uint64_t seed;      /* shuffle seed; the Trainer's seed_everything sets it when 0 */
} bx_loader_opts;
#define BX_LOADER_OPTS_INIT {1, false, false, 0}

typedef struct bx_loader bx_loader;
/* Loader over ds (not owned; must outlive the loader). Errors: BX_ERR_INVALID. */
bx_loader *bx_loader_new(bx_dataset *ds, const bx_loader_opts *o);
void bx_loader_free(bx_loader *l);
/* Number of batches per epoch. */
int64_t bx_loader_len(const bx_loader *l);
const bx_dataset *bx_loader_dataset(const bx_loader *l);
/* Selects the epoch whose permutation the next batches follow. */
void bx_loader_set_epoch(bx_loader *l, int64_t epoch);
void bx_loader_set_seed(bx_loader *l, uint64_t seed);
/* Batch i (0-based) of the current epoch, gathered into step tensors.
 * Errors: BX_ERR_INVALID (i out of range), step errors. */
bx_status bx_loader_batch(bx_loader *l, bx_step *st, int64_t i, bx_batch *out);
/* Loader state {seed, epoch, shuffle, batch_size, ...} for checkpoints, and
 * its restore (checks the dataset size matches). */
bx_state *bx_loader_state_dict(const bx_loader *l);
bx_status bx_loader_load_state_dict(bx_loader *l, const bx_state *s);

#ifdef __cplusplus
}
#endif
#endif
