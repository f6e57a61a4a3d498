/* update_bn.c - torch.optim.swa_utils.update_bn: recompute BatchNorm running
 * statistics with one train-mode pass (cumulative average, every batch
 * counted once), from a callback or a bx_loader; and its two halves
 * (bx_bn_recompute_begin / _end) for a caller that drives the forwards
 * itself (Lightning's extra SWA epoch). */
#include "swa/swa_int.h"

#include <math.h>

struct bx_bn_saved {
    bx_module **mods; /* every module of the tree, pre-order (borrowed) */
    bool *modes;      /* their training flags */
    double *momenta;  /* BatchNorm momenta (NAN = None); unused for others */
    bool *isbn;       /* a BatchNorm with running buffers */
    int n, nbn;
    bool set_train;   /* begin switched the tree to training mode */
};

bool bx_module_has_batchnorm(bx_module *m) {
    bx_named_modules *mods = m ? bx_module_named_modules(m) : NULL;
    bool any = false;
    for (int i = 0; mods && !any && i < mods->n; i++) any = bx_module_is_batchnorm(mods->modules[i]);
    bx_named_modules_free(mods);
    return any;
}

static void saved_free(bx_bn_saved *s) {
    if (!s) return;
    bx__free(s->mods);
    bx__free(s->modes);
    bx__free(s->momenta);
    bx__free(s->isbn);
    bx__free(s);
}

bx_status bx_bn_recompute_begin(bx_module *m, bool set_train, bx_bn_saved **out) {
    if (out) *out = NULL;
    if (!m || !out) return bx__error(BX_ERR_INVALID, "update_bn: NULL %s", m ? "output" : "module");
    bx_named_modules *mods = bx_module_named_modules(m);
    bx_bn_saved *s = bx__calloc(sizeof *s);
    size_t n = mods ? (size_t)mods->n : 0;
    if (s && mods) {
        s->mods = bx__malloc(sizeof(bx_module *) * n + 1);
        s->modes = bx__malloc(sizeof(bool) * n + 1);
        s->momenta = bx__malloc(sizeof(double) * n + 1);
        s->isbn = bx__malloc(sizeof(bool) * n + 1);
    }
    if (!mods || !s || !s->mods || !s->modes || !s->momenta || !s->isbn) {
        bx_named_modules_free(mods);
        saved_free(s);
        return bx__error(BX_ERR_NOMEM, "update_bn: out of memory");
    }
    s->n = (int)n;
    for (int i = 0; i < s->n; i++) {
        bx_module *x = mods->modules[i];
        s->mods[i] = x;
        s->modes[i] = bx_module_is_training(x);
        s->isbn[i] = bx_module_is_batchnorm(x) && (bx_module_buffer(x, "running_mean") || bx_module_buffer(x, "running_var"));
        s->momenta[i] = NAN;
        if (!s->isbn[i]) continue;
        s->nbn++;
        s->momenta[i] = bx_batchnorm_momentum(x);
        bx_batchnorm_reset_running_stats(x); /* mean 0, var 1, num_batches_tracked 0 */
        bx_batchnorm_set_momentum(x, NAN);   /* None: factor 1/num_batches_tracked */
    }
    bx_named_modules_free(mods);
    s->set_train = set_train && s->nbn > 0;
    if (s->set_train) bx_module_train(m, true);
    *out = s;
    return BX_OK;
}

int bx_bn_saved_count(const bx_bn_saved *s) { return s ? s->nbn : 0; }

void bx_bn_recompute_end(bx_bn_saved *s) {
    if (!s) return;
    for (int i = 0; i < s->n; i++)
        if (s->isbn[i]) bx_batchnorm_set_momentum(s->mods[i], s->momenta[i]);
    if (s->set_train) /* pre-order: a child's flag is set after its parent's */
        for (int i = 0; i < s->n; i++) bx_module_train(s->mods[i], s->modes[i]);
    saved_free(s);
}

bx_status bx_update_bn(bx_module *m, bx_batch_next_fn next, void *ud, bx_step *st) {
    if (!m || !next) return bx__error(BX_ERR_INVALID, "update_bn: NULL %s", m ? "batch source" : "module");
    bx_bn_saved *saved = NULL;
    bx_status s = bx_bn_recompute_begin(m, true, &saved);
    if (s != BX_OK) return s;
    bx_step *own = NULL;
    if (saved->nbn > 0) { /* torch returns before any forward when there is no BatchNorm */
        if (!st) st = own = bx_step_new();
        if (!st) s = bx__error(BX_ERR_NOMEM, "update_bn: out of memory");
        while (s == BX_OK) {
            bx_step_reset(st);
            bx_tensor *x = next(ud, st);
            if (!x || bx_is_poison(x)) {
                s = bx_step_status(st);
                if (s != BX_OK) bx__error(s, "update_bn: batch source: %s", bx_step_errmsg(st));
                break;
            }
            bx_no_grad_push(st);
            (void)bx_module_forward(m, st, x);
            bx_no_grad_pop(st);
            s = bx_step_status(st);
            if (s != BX_OK) bx__error(s, "update_bn: forward: %s", bx_step_errmsg(st));
        }
    }
    bx_bn_recompute_end(saved);
    bx_step_free(own);
    return s;
}

typedef struct loader_src {
    bx_loader *l;
    int64_t i, n;
} loader_src;

static bx_tensor *loader_next(void *ud, bx_step *st) {
    loader_src *src = ud;
    if (src->i >= src->n) return NULL;
    bx_batch b;
    bx_status s = bx_loader_batch(src->l, st, src->i, &b);
    if (s != BX_OK) return bx_step_fail(st, s, "loader batch %lld: %s", (long long)src->i, bx_errmsg());
    src->i++;
    return b.x;
}

bx_status bx_update_bn_loader(bx_module *m, bx_loader *l, bx_step *st) {
    if (!m || !l) return bx__error(BX_ERR_INVALID, "update_bn: NULL %s", m ? "loader" : "module");
    loader_src src = {l, 0, bx_loader_len(l)};
    return bx_update_bn(m, loader_next, &src, st);
}
