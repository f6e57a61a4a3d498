/* update_bn.c - torch.optim.swa_utils.update_bn: recompute BatchNorm running
 * statistics with one train-mode pass (cumulative average, every batch
 * counted once), from a callback or a bx_loader. */
#include "swa/swa_int.h"

#include <math.h>

bx_status bx_update_bn(bx_module *m, bx_batch_next_fn next, void *ud, bx_step *st) {
    if (!m || !next) return bx__error(BX_ERR_INVALID, "update_bn: NULL %s", m ? "batch source" : "module");
    bx_named_modules *mods = bx_module_named_modules(m);
    if (!mods) return bx__error(BX_ERR_NOMEM, "update_bn: out of memory");
    /* BatchNorms with running statistics, their momenta, every module's mode */
    double *momenta = bx__malloc(sizeof(double) * (size_t)mods->n + 1);
    bool *modes = bx__malloc(sizeof(bool) * (size_t)mods->n + 1);
    bool *isbn = bx__malloc(sizeof(bool) * (size_t)mods->n + 1);
    if (!momenta || !modes || !isbn) {
        bx__free(momenta);
        bx__free(modes);
        bx__free(isbn);
        bx_named_modules_free(mods);
        return bx__error(BX_ERR_NOMEM, "update_bn: out of memory");
    }
    int nbn = 0;
    for (int i = 0; i < mods->n; i++) {
        bx_module *x = mods->modules[i];
        modes[i] = bx_module_is_training(x);
        isbn[i] = bx_module_is_batchnorm(x) && (bx_module_buffer(x, "running_mean") || bx_module_buffer(x, "running_var"));
        if (!isbn[i]) continue;
        nbn++;
        momenta[i] = bx_batchnorm_momentum(x);
        bx_batchnorm_reset_running_stats(x); /* mean 0, var 1, num_batches_tracked 0 */
        bx_batchnorm_set_momentum(x, NAN);   /* None: factor 1/num_batches_tracked */
    }
    bx_status s = BX_OK;
    bx_step *own = NULL;
    if (nbn > 0) { /* torch returns before any forward when there is no BatchNorm */
        if (!st) st = own = bx_step_new();
        if (!st) s = bx__error(BX_ERR_NOMEM, "update_bn: out of memory");
        bx_module_train(m, true);
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
    for (int i = 0; i < mods->n; i++) /* pre-order: a child's flag is set after its parent's */
        if (isbn[i]) bx_batchnorm_set_momentum(mods->modules[i], momenta[i]);
    if (nbn > 0)
        for (int i = 0; i < mods->n; i++) bx_module_train(mods->modules[i], modes[i]);
    bx_step_free(own);
    bx__free(momenta);
    bx__free(modes);
    bx__free(isbn);
    bx_named_modules_free(mods);
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
