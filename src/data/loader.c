/* loader.c - the DataLoader: batching, seeded shuffle, drop_last, state.
 *
 * Shuffle: epoch e's order is a Fisher-Yates shuffle (i from N-1 down to 1,
 * j = bx_rng_below(i+1), swap) driven by a bx_rng (Philox) seeded with
 * splitmix64(seed ^ splitmix64(e)) - a pure function of (seed, e), so a
 * resumed run sees exactly the batches of the unbroken run. The permutation
 * buffer is allocated once with the loader and recomputed when the epoch or
 * seed changes; batches only use the step arena. */
#include "data/data_int.h"

#include "io/state_int.h"

#include <string.h>

struct bx_loader {
    bx_dataset *ds;
    bx_loader_opts o;
    int64_t epoch;
    int64_t *perm;      /* N entries when shuffling */
    bool perm_valid;    /* perm holds the order for (perm_seed, perm_epoch) */
    uint64_t perm_seed;
    int64_t perm_epoch;
};

static uint64_t splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

bx_loader *bx_loader_new(bx_dataset *ds, const bx_loader_opts *o) {
    bx_loader_opts def = BX_LOADER_OPTS_INIT;
    if (!o) o = &def;
    if (!ds) {
        bx__error(BX_ERR_INVALID, "loader: NULL dataset");
        return NULL;
    }
    if (o->batch_size < 1) {
        bx__error(BX_ERR_INVALID, "loader: batch_size %lld, must be >= 1", (long long)o->batch_size);
        return NULL;
    }
    bx_loader *l = bx__calloc(sizeof *l);
    if (!l) return NULL;
    l->ds = ds;
    l->o = *o;
    /* allocated up front even without shuffle, so loading a state that turns
     * shuffle on never allocates */
    l->perm = bx__malloc((size_t)(ds->n ? ds->n : 1) * sizeof *l->perm);
    if (!l->perm) {
        bx__free(l);
        return NULL;
    }
    return l;
}

void bx_loader_free(bx_loader *l) {
    if (!l) return;
    bx__free(l->perm);
    bx__free(l);
}

int64_t bx_loader_len(const bx_loader *l) {
    if (!l) return 0;
    int64_t n = l->ds->n, bs = l->o.batch_size;
    return l->o.drop_last ? n / bs : (n + bs - 1) / bs;
}

const bx_dataset *bx_loader_dataset(const bx_loader *l) { return l ? l->ds : NULL; }

void bx_loader_set_epoch(bx_loader *l, int64_t epoch) {
    if (l && epoch >= 0) l->epoch = epoch;
}

void bx_loader_set_seed(bx_loader *l, uint64_t seed) {
    if (l) l->o.seed = seed;
}

/* Makes l->perm the order of the current (seed, epoch). */
static void ensure_perm(bx_loader *l) {
    if (l->perm_valid && l->perm_seed == l->o.seed && l->perm_epoch == l->epoch) return;
    int64_t n = l->ds->n;
    int64_t *p = l->perm;
    for (int64_t i = 0; i < n; i++) p[i] = i;
    bx_rng r;
    bx_rng_init(&r, splitmix64(l->o.seed ^ splitmix64((uint64_t)l->epoch)));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)bx_rng_below(&r, (uint64_t)i + 1);
        int64_t t = p[i];
        p[i] = p[j];
        p[j] = t;
    }
    l->perm_valid = true;
    l->perm_seed = l->o.seed;
    l->perm_epoch = l->epoch;
}

/* Rows idx[0..m) of src (contiguous, row elements `row`) into a new step tensor. */
static bx_tensor *gather(bx_step *st, const bx_tensor *src, int64_t row, const int64_t *idx, int64_t m) {
    int64_t shape[BX_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = m;
    bx_tensor *t = bx_step_tensor(st, src->dtype, src->ndim, shape);
    if (bx_is_poison(t)) return t;
    size_t rb = (size_t)row * bx_dtype_size(src->dtype);
    const char *s = src->data;
    char *d = t->data;
    if (rb * (size_t)m > ((size_t)1 << 20)) {
#pragma omp parallel for schedule(static)
        for (int64_t k = 0; k < m; k++) memcpy(d + (size_t)k * rb, s + (size_t)idx[k] * rb, rb);
    } else {
        for (int64_t k = 0; k < m; k++) memcpy(d + (size_t)k * rb, s + (size_t)idx[k] * rb, rb);
    }
    return t;
}

/* Rows [r0, r0+m) of src as a zero-copy step view. */
static bx_tensor *rows_view(bx_step *st, const bx_tensor *src, int64_t row, int64_t r0, int64_t m) {
    int64_t shape[BX_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = m;
    char *data = (char *)src->data + (size_t)(r0 * row) * bx_dtype_size(src->dtype);
    return bx__view(st, src, data, src->ndim, shape, src->stride);
}

bx_status bx_loader_batch(bx_loader *l, bx_step *st, int64_t i, bx_batch *out) {
    if (out) memset(out, 0, sizeof *out);
    if (!l || !st || !out) return bx__error(BX_ERR_INVALID, "loader batch: NULL loader, step or output");
    int64_t nb = bx_loader_len(l);
    if (i < 0 || i >= nb)
        return bx__error(BX_ERR_INVALID, "loader batch: index %lld out of range (%lld batches per epoch)", (long long)i,
                         (long long)nb);
    const bx_dataset *ds = l->ds;
    int64_t r0 = i * l->o.batch_size;
    int64_t m = BX_MIN(l->o.batch_size, ds->n - r0);
    bx_tensor *x, *y = NULL;
    if (l->o.shuffle) {
        ensure_perm(l);
        x = gather(st, ds->x, ds->x_row, l->perm + r0, m);
        if (ds->y) y = gather(st, ds->y, ds->y_row, l->perm + r0, m);
    } else {
        x = rows_view(st, ds->x, ds->x_row, r0, m);
        if (ds->y) y = rows_view(st, ds->y, ds->y_row, r0, m);
    }
    if (bx_is_poison(x) || (y && bx_is_poison(y))) {
        bx_status s = bx_step_status(st);
        return bx__error(s ? s : BX_ERR_NOMEM, "loader batch %lld: %s", (long long)i, bx_step_errmsg(st));
    }
    out->x = x;
    out->y = y;
    out->size = m;
    return BX_OK;
}

/* ---- state ------------------------------------------------------------------- */

bx_state *bx_loader_state_dict(const bx_loader *l) {
    if (!l) {
        bx__error(BX_ERR_INVALID, "loader state: NULL loader");
        return NULL;
    }
    bx_state *d = bx_state_dict();
    if (!d) return NULL;
    bx_status s = bx_state_set_int(d, "seed", (int64_t)l->o.seed);
    if (!s) s = bx_state_set_int(d, "epoch", l->epoch);
    if (!s) s = bx_state_set_int(d, "batch_size", l->o.batch_size);
    if (!s) s = bx_state_set_bool(d, "shuffle", l->o.shuffle);
    if (!s) s = bx_state_set_bool(d, "drop_last", l->o.drop_last);
    if (!s) s = bx_state_set_int(d, "dataset_len", l->ds->n);
    if (s) {
        bx_state_free(d);
        return NULL;
    }
    return d;
}

bx_status bx_loader_load_state_dict(bx_loader *l, const bx_state *s) {
    if (!l || !s) return bx__error(BX_ERR_INVALID, "loader state: NULL loader or state");
    if (bx_state_typeof(s) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "loader state: %s, expected a dict", bx__state_type_desc(bx_state_typeof(s)));
    int64_t seed, epoch, bs, n;
    bool shuffle, drop_last;
    bx_status st = bx_state_need_int(s, "seed", &seed);
    if (!st) st = bx_state_need_int(s, "epoch", &epoch);
    if (!st) st = bx_state_need_int(s, "batch_size", &bs);
    if (!st) st = bx_state_need_bool(s, "shuffle", &shuffle);
    if (!st) st = bx_state_need_bool(s, "drop_last", &drop_last);
    if (!st) st = bx_state_need_int(s, "dataset_len", &n);
    if (st) {
        bx__error_prefix("loader state");
        return st == BX_ERR_NOT_FOUND ? BX_ERR_FORMAT : st;
    }
    if (bs < 1 || epoch < 0)
        return bx__error(BX_ERR_FORMAT, "loader state: batch_size %lld / epoch %lld out of range", (long long)bs,
                         (long long)epoch);
    if (n != l->ds->n)
        return bx__error(BX_ERR_INVALID,
                         "loader state: saved for a dataset of %lld samples, but this loader's dataset has %lld",
                         (long long)n, (long long)l->ds->n);
    l->o.seed = (uint64_t)seed;
    l->epoch = epoch;
    l->o.batch_size = bs;
    l->o.shuffle = shuffle;
    l->o.drop_last = drop_last;
    return BX_OK;
}
