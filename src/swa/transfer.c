/* transfer.c - copying averaged weights into a model by name (Lightning's
 * StochasticWeightAveraging.transfer_weights). */
#include "swa/swa_int.h"

#include <stdio.h>
#include <string.h>

bx_tensor *bx__swa_peer(const bx_named_tensors *l, const char *name) {
    bx_tensor *t = bx_named_tensors_get(l, name);
    if (t) return t;
    char orig[512];
    int n = snprintf(orig, sizeof orig, "%s_orig", name);
    return n > 0 && (size_t)n < sizeof orig ? bx_named_tensors_get(l, orig) : NULL;
}

bool bx__swa_pruning_extra(const char *name) {
    size_t n = strlen(name);
    return n > 5 && strcmp(name + n - 5, "_mask") == 0;
}

/* Pairs every entry of `from` with its peer in `to` (same name, or the
 * pruned "_orig" parameter); checks everything first. what: "parameter" /
 * "buffer". */
static bx_status pair_check(const char *what, const bx_named_tensors *from, const bx_named_tensors *to) {
    for (int i = 0; i < from->n; i++) {
        const bx_tensor *d = bx__swa_peer(to, from->names[i]);
        char s1[96], s2[96];
        if (!d)
            return bx__error(BX_ERR_NOT_FOUND, "transfer_weights: %s '%s' missing in the destination", what,
                             from->names[i]);
        if (!bx_same_shape(d, from->tensors[i]))
            return bx__error(BX_ERR_SHAPE, "transfer_weights: %s '%s' is %s in the source, %s in the destination", what,
                             from->names[i], bx_shape_str(from->tensors[i], s1, sizeof s1), bx_shape_str(d, s2, sizeof s2));
    }
    return BX_OK;
}

bx_status bx_transfer_weights(bx_module *src, bx_module *dst, bool include_buffers) {
    if (!src || !dst) return bx__error(BX_ERR_INVALID, "transfer_weights: NULL %s", src ? "destination" : "source");
    bx_named_tensors *sp = bx_module_named_parameters(src), *dp = bx_module_named_parameters(dst);
    bx_named_tensors *sb = include_buffers ? bx_module_named_buffers(src) : NULL;
    bx_named_tensors *db = include_buffers ? bx_module_named_buffers(dst) : NULL;
    bx_status s = BX_OK;
    if (!sp || !dp || (include_buffers && (!sb || !db))) s = bx__error(BX_ERR_NOMEM, "transfer_weights: out of memory");
    if (s == BX_OK) s = pair_check("parameter", sp, dp);
    if (s == BX_OK && include_buffers) s = pair_check("buffer", sb, db);
    for (int i = 0; s == BX_OK && i < sp->n; i++) s = bx_copy(bx__swa_peer(dp, sp->names[i]), sp->tensors[i]);
    for (int i = 0; s == BX_OK && include_buffers && i < sb->n; i++)
        s = bx_copy(bx__swa_peer(db, sb->names[i]), sb->tensors[i]);
    bx_named_tensors_free(sp);
    bx_named_tensors_free(dp);
    bx_named_tensors_free(sb);
    bx_named_tensors_free(db);
    return s;
}

bx_status bx_averaged_model_transfer_weights(bx_averaged_model *a, bx_module *dst, bool include_buffers) {
    if (!a) return bx__error(BX_ERR_INVALID, "transfer_weights: NULL averaged model");
    return bx_transfer_weights(bx_averaged_model_module(a), dst, include_buffers);
}
