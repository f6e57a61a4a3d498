/* shim_data.c - TEMPORARY weak implementation of data.h (in-memory dataset
 * and loader) so the Trainer builds and tests run before the data helper's
 * loader lands; the real definitions override these at link time. Delete
 * once src/data/ implements data.h. */
#include "blixt/data.h"
#include "core/core_int.h"

#include <string.h>

struct bx_dataset {
    bx_tensor *x, *y;
    bool owns;
};

struct bx_loader {
    bx_dataset *ds;
    bx_loader_opts o;
    int64_t epoch;
    int64_t *perm;
};

#define WEAK __attribute__((weak))

WEAK bx_dataset *bx_dataset_from_tensors(bx_tensor *x, bx_tensor *y, bool take_ownership) {
    if (!x || x->ndim < 1 || (y && (y->ndim < 1 || y->shape[0] != x->shape[0]))) {
        bx__error(BX_ERR_SHAPE, "dataset: x and y must have the same first dimension");
        return NULL;
    }
    bx_dataset *d = bx__calloc(sizeof *d);
    if (!d) return NULL;
    d->x = x;
    d->y = y;
    d->owns = take_ownership;
    return d;
}

WEAK void bx_dataset_free(bx_dataset *ds) {
    if (!ds) return;
    if (ds->owns) {
        bx_tensor_free(ds->x);
        bx_tensor_free(ds->y);
    }
    bx__free(ds);
}

WEAK int64_t bx_dataset_len(const bx_dataset *ds) { return ds->x->shape[0]; }
WEAK const bx_tensor *bx_dataset_x(const bx_dataset *ds) { return ds->x; }
WEAK const bx_tensor *bx_dataset_y(const bx_dataset *ds) { return ds->y; }

static void make_perm(bx_loader *l) {
    int64_t n = bx_dataset_len(l->ds);
    for (int64_t i = 0; i < n; i++) l->perm[i] = i;
    if (!l->o.shuffle) return;
    bx_rng r;
    bx_rng_init(&r, l->o.seed * 1000003ull + (uint64_t)l->epoch);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)bx_rng_below(&r, (uint64_t)(i + 1));
        int64_t t = l->perm[i];
        l->perm[i] = l->perm[j];
        l->perm[j] = t;
    }
}

WEAK bx_loader *bx_loader_new(bx_dataset *ds, const bx_loader_opts *o) {
    bx_loader_opts def = BX_LOADER_OPTS_INIT;
    if (!o) o = &def;
    if (!ds || o->batch_size < 1) {
        bx__error(BX_ERR_INVALID, "loader: no dataset or batch_size < 1");
        return NULL;
    }
    bx_loader *l = bx__calloc(sizeof *l);
    if (!l) return NULL;
    l->ds = ds;
    l->o = *o;
    l->perm = bx__malloc((size_t)(bx_dataset_len(ds) + 1) * sizeof *l->perm);
    if (!l->perm) {
        bx__free(l);
        return NULL;
    }
    make_perm(l);
    return l;
}

WEAK void bx_loader_free(bx_loader *l) {
    if (!l) return;
    bx__free(l->perm);
    bx__free(l);
}

WEAK int64_t bx_loader_len(const bx_loader *l) {
    int64_t n = bx_dataset_len(l->ds), b = l->o.batch_size;
    return l->o.drop_last ? n / b : (n + b - 1) / b;
}

WEAK const bx_dataset *bx_loader_dataset(const bx_loader *l) { return l->ds; }

WEAK void bx_loader_set_epoch(bx_loader *l, int64_t epoch) {
    if (l->epoch == epoch) return;
    l->epoch = epoch;
    make_perm(l);
}

WEAK void bx_loader_set_seed(bx_loader *l, uint64_t seed) {
    l->o.seed = seed;
    make_perm(l);
}

static bx_tensor *gather(bx_step *st, const bx_tensor *src, const int64_t *idx, int64_t k) {
    int64_t shape[BX_MAX_DIMS];
    memcpy(shape, src->shape, sizeof shape);
    shape[0] = k;
    bx_tensor *t = bx_step_tensor(st, src->dtype, src->ndim, shape);
    if (bx_is_poison(t)) return t;
    size_t row = bx_dtype_size(src->dtype);
    for (int d = 1; d < src->ndim; d++) row *= (size_t)src->shape[d];
    for (int64_t i = 0; i < k; i++)
        memcpy((char *)t->data + (size_t)i * row, (const char *)src->data + (size_t)idx[i] * row, row);
    return t;
}

WEAK bx_status bx_loader_batch(bx_loader *l, bx_step *st, int64_t i, bx_batch *out) {
    if (i < 0 || i >= bx_loader_len(l))
        return bx__error(BX_ERR_INVALID, "loader: batch %lld out of range 0..%lld", (long long)i,
                         (long long)bx_loader_len(l));
    int64_t b = l->o.batch_size, n = bx_dataset_len(l->ds);
    int64_t start = i * b, k = start + b <= n ? b : n - start;
    out->x = gather(st, l->ds->x, l->perm + start, k);
    out->y = l->ds->y ? gather(st, l->ds->y, l->perm + start, k) : NULL;
    out->size = k;
    return bx_step_status(st);
}

WEAK bx_state *bx_loader_state_dict(const bx_loader *l) {
    bx_state *d = bx_state_dict();
    if (!d) return NULL;
    if (bx_state_set_int(d, "seed", (int64_t)l->o.seed) || bx_state_set_int(d, "epoch", l->epoch) ||
        bx_state_set_bool(d, "shuffle", l->o.shuffle) || bx_state_set_int(d, "batch_size", l->o.batch_size) ||
        bx_state_set_int(d, "dataset_len", bx_dataset_len(l->ds))) {
        bx_state_free(d);
        return NULL;
    }
    return d;
}

WEAK bx_status bx_loader_load_state_dict(bx_loader *l, const bx_state *s) {
    int64_t seed, epoch, n;

    if (bx_state_need_int(s, "seed", &seed) || bx_state_need_int(s, "epoch", &epoch) ||
        bx_state_need_int(s, "dataset_len", &n))
        return BX_ERR_FORMAT;
    if (n != bx_dataset_len(l->ds))
        return bx__error(BX_ERR_INVALID, "loader state: dataset has %lld samples, the checkpoint %lld",
                         (long long)bx_dataset_len(l->ds), (long long)n);
    l->o.seed = (uint64_t)seed;
    l->epoch = epoch;
    make_perm(l);
    return BX_OK;
}
