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
/* Dataset over x (N, ...) and y (N, ...) or NULL (owned CPU tensors, any
 * dtype). With take_ownership the dataset frees the tensors (also when this
 * call fails); otherwise they must outlive it. Non-contiguous tensors are
 * copied once into a contiguous copy the dataset owns. Errors:
 * BX_ERR_INVALID (NULL x, poison or non-CPU tensor), BX_ERR_SHAPE (first
 * dims differ, 0-d x or y), BX_ERR_NOMEM. NULL on error. */
bx_dataset *bx_dataset_from_tensors(bx_tensor *x, bx_tensor *y, bool take_ownership);
/* Dataset from an IDX image file and (optionally, NULL) an IDX label file
 * (raw or gzip, e.g. MNIST / Fashion-MNIST): u8 images (N,H,W) become f32
 * (N,1,H,W) with values x/255 (exactly torchvision's ToTensor), or (N,H*W)
 * when flatten; (N,C,H,W) images stay 4-d. Labels (N) of any integer type
 * become i64. *out is owned by the caller (bx_dataset_free). Errors: those
 * of bx_idx_load (BX_ERR_IO, BX_ERR_FORMAT naming the file), BX_ERR_SHAPE
 * (images not u8 (N,H,W)/(N,C,H,W), labels not 1-d integers, N differs),
 * BX_ERR_NOMEM. */
bx_status bx_dataset_from_idx(const char *images_path, const char *labels_path, bool flatten, bx_dataset **out);
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
/* Loader over ds (not owned; must outlive the loader); o NULL = defaults.
 * Shuffle: the permutation of epoch e is a Fisher-Yates shuffle driven by a
 * bx_rng seeded with splitmix64(seed ^ splitmix64(e)) (a pure function of
 * (seed, e); not torch's randperm stream). Epoch starts at 0. Caller owns
 * the loader (bx_loader_free). Errors: BX_ERR_INVALID (NULL ds, batch_size
 * < 1), BX_ERR_NOMEM. NULL on error. */
bx_loader *bx_loader_new(bx_dataset *ds, const bx_loader_opts *o);
void bx_loader_free(bx_loader *l);
/* Number of batches per epoch. */
int64_t bx_loader_len(const bx_loader *l);
const bx_dataset *bx_loader_dataset(const bx_loader *l);
/* Selects the epoch whose permutation the next batches follow (>= 0;
 * negative values are ignored). */
void bx_loader_set_epoch(bx_loader *l, int64_t epoch);
void bx_loader_set_seed(bx_loader *l, uint64_t seed);
/* Batch i (0-based) of the current epoch: rows [i*bs, min((i+1)*bs, N)) of
 * the epoch's order (the last batch is short unless drop_last). With shuffle
 * the rows are gathered into new contiguous step tensors; without shuffle
 * x/y are zero-copy step views of consecutive dataset rows (read-only by
 * convention: writing them changes the dataset). Allocates nothing on the
 * heap (only the step arena). Errors: BX_ERR_INVALID (i out of range; the
 * step is not poisoned), step errors (arena out of memory). */
bx_status bx_loader_batch(bx_loader *l, bx_step *st, int64_t i, bx_batch *out);
/* Loader state {seed, epoch, batch_size, shuffle, drop_last, dataset_len}
 * for checkpoints (a new dict owned by the caller; NULL on NOMEM; the seed
 * is stored as the int64 with the same bits), and its restore: sets seed,
 * epoch, batch_size, shuffle and drop_last, after checking every key and
 * that dataset_len equals this loader's dataset length (nothing changes on
 * error). Errors: BX_ERR_FORMAT (key missing or of the wrong type, bad
 * value), BX_ERR_INVALID (dataset length differs). */
bx_state *bx_loader_state_dict(const bx_loader *l);
bx_status bx_loader_load_state_dict(bx_loader *l, const bx_state *s);

#ifdef __cplusplus
}
#endif
#endif
