/* norm.c - BatchNorm1d/2d and LayerNorm modules (torch's forward logic
 * around the bx_batch_norm / bx_layer_norm ops). */
#include "nn/nn_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- BatchNorm ------------------------------------------------------------- */

typedef struct bn_impl {
    int64_t num_features;
    double eps;
    double momentum; /* NAN = None */
    bool affine;
    bool track_running_stats; /* the attribute: may differ from whether buffers exist */
    int dims;                 /* 1 or 2 */
} bn_impl;

static void *bn_clone(const void *p) { return bx__nn_dup(p, sizeof(bn_impl)); }

/* x (N,C), (N,C,L) [1d] or (N,C,H,W) [2d] -> y same shape. As torch's
 * _BatchNorm.forward:
 *   factor = momentum (0 when None)
 *   if training and track_running_stats and num_batches_tracked exists:
 *       num_batches_tracked += 1; factor = 1/num_batches_tracked when None
 *   batch statistics when training or when there are no running buffers;
 *   running buffers passed when !training or track_running_stats. */
static bx_tensor *bn_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    const bn_impl *bi = m->impl;
    if (!x) return bx_step_fail(st, BX_ERR_INVALID, "%s: input is NULL", m->type->name);
    if (bx_is_poison(x)) return bx__poison(st);
    bool ok = bi->dims == 2 ? x->ndim == 4 : (x->ndim == 2 || x->ndim == 3);
    char sh[96];
    if (!ok)
        return bx_step_fail(st, BX_ERR_SHAPE, "%s(%lld): expected %s input, got %s", m->type->name,
                            (long long)bi->num_features, bi->dims == 2 ? "4D (N,C,H,W)" : "2D (N,C) or 3D (N,C,L)",
                            bx_shape_str(x, sh, sizeof sh));
    if (x->shape[1] != bi->num_features)
        return bx_step_fail(st, BX_ERR_SHAPE, "%s(%lld): input %s has %lld channels, expected %lld", m->type->name,
                            (long long)bi->num_features, bx_shape_str(x, sh, sizeof sh), (long long)x->shape[1],
                            (long long)bi->num_features);
    bx_tensor *rm = bx_module_tensor(st, m, "running_mean");
    bx_tensor *rv = bx_module_tensor(st, m, "running_var");
    bx_tensor *nbt = bx_module_buffer(m, "num_batches_tracked");
    double factor = isnan(bi->momentum) ? 0.0 : bi->momentum;
    if (m->training && bi->track_running_stats && nbt) {
        int64_t *cnt = nbt->data;
        *cnt += 1;
        if (isnan(bi->momentum)) factor = 1.0 / (double)*cnt;
    }
    bool batch_stats = m->training || (!rm && !rv);
    bool pass_running = !m->training || bi->track_running_stats;
    return bx_batch_norm(st, x, pass_running ? rm : NULL, pass_running ? rv : NULL, bx_module_tensor(st, m, "weight"),
                         bx_module_tensor(st, m, "bias"), batch_stats, factor, bi->eps);
}

static bx_status bn_reset(bx_module *m, bx_rng *rng) {
    bx_batchnorm_reset_running_stats(m);
    bx_tensor *w = bx_module_param(m, "weight"), *b = bx_module_param(m, "bias");
    if (w) bx_fill(w, 1.0);
    if (b) bx_fill(b, 0.0);
    return BX_OK;
}

static void bn_repr(const bx_module *m, char *buf, size_t n) {
    const bn_impl *bi = m->impl;
    char mom[32];
    if (isnan(bi->momentum)) snprintf(mom, sizeof mom, "None");
    else snprintf(mom, sizeof mom, "%g", bi->momentum);
    snprintf(buf, n, "%lld, eps=%g, momentum=%s, affine=%s, track_running_stats=%s", (long long)bi->num_features,
             bi->eps, mom, bi->affine ? "True" : "False", bi->track_running_stats ? "True" : "False");
}

static const bx_module_type bn1d_type = {"BatchNorm1d", bn_forward, bx__free, bn_clone, bn_reset, bn_repr};
static const bx_module_type bn2d_type = {"BatchNorm2d", bn_forward, bx__free, bn_clone, bn_reset, bn_repr};

bool bx_module_is_batchnorm(const bx_module *m) { return m && (m->type == &bn1d_type || m->type == &bn2d_type); }

static bx_module *new_bn(const bx_module_type *t, int dims, int64_t c, const bx_batchnorm_opts *o) {
    static const bx_batchnorm_opts dflt = BX_BATCHNORM_OPTS_INIT;
    bx_batchnorm_opts op = o ? *o : dflt;
    if (c <= 0 || !(op.eps > 0.0) || (!isnan(op.momentum) && !(op.momentum >= 0.0 && op.momentum <= 1.0))) {
        bx__error(BX_ERR_INVALID, "%s(%lld, eps=%g, momentum=%g): num_features and eps must be > 0, momentum in [0, 1] or NAN",
                  t->name, (long long)c, op.eps, op.momentum);
        return NULL;
    }
    bn_impl bi = {c, op.eps, op.momentum, op.affine, op.track_running_stats, dims};
    bx_module *m = bx__nn_new_pod(t, &bi, sizeof bi);
    if (!m) return NULL;
    bx_status s = BX_OK;
    if (op.affine) {
        bx_tensor *w = bx_param_new(1, &c), *b = w ? bx_param_new(1, &c) : NULL;
        s = bx_module_add_param(m, "weight", w);
        if (s == BX_OK) s = bx_module_add_param(m, "bias", b);
        else bx_tensor_free(b);
        if (s == BX_OK && (!w || !b)) s = BX_ERR_NOMEM;
    } else {
        s = bx_module_add_param(m, "weight", NULL);
        if (s == BX_OK) s = bx_module_add_param(m, "bias", NULL);
    }
    if (op.track_running_stats) {
        bx_tensor *rm = bx_tensor_new(BX_F32, 1, &c);
        bx_tensor *rv = bx_tensor_new(BX_F32, 1, &c);
        bx_tensor *nb = bx_tensor_zeros(BX_I64, 0, NULL);
        if (s == BX_OK) s = bx_module_add_buffer(m, "running_mean", rm, true);
        else bx_tensor_free(rm);
        if (s == BX_OK) s = bx_module_add_buffer(m, "running_var", rv, true);
        else bx_tensor_free(rv);
        if (s == BX_OK) s = bx_module_add_buffer(m, "num_batches_tracked", nb, true);
        else bx_tensor_free(nb);
        if (s == BX_OK && (!rm || !rv || !nb)) s = BX_ERR_NOMEM;
    } else {
        if (s == BX_OK) s = bx_module_add_buffer(m, "running_mean", NULL, true);
        if (s == BX_OK) s = bx_module_add_buffer(m, "running_var", NULL, true);
        if (s == BX_OK) s = bx_module_add_buffer(m, "num_batches_tracked", NULL, true);
    }
    if (s == BX_OK) s = bn_reset(m, NULL);
    if (s != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}

bx_module *bx_nn_batchnorm1d(int64_t num_features, const bx_batchnorm_opts *o) {
    return new_bn(&bn1d_type, 1, num_features, o);
}

bx_module *bx_nn_batchnorm2d(int64_t num_features, const bx_batchnorm_opts *o) {
    return new_bn(&bn2d_type, 2, num_features, o);
}

static bn_impl *bn_of(const bx_module *m, const char *what) {
    if (bx_module_is_batchnorm(m)) return m->impl;
    bx__error(BX_ERR_INVALID, "%s: module '%s' is not a BatchNorm", what, bx_module_type_name(m));
    return NULL;
}

bx_status bx_batchnorm_set_momentum(bx_module *m, double momentum) {
    bn_impl *bi = bn_of(m, "batchnorm_set_momentum");
    if (!bi) return BX_ERR_INVALID;
    if (!isnan(momentum) && !(momentum >= 0.0 && momentum <= 1.0))
        return bx__error(BX_ERR_INVALID, "batchnorm_set_momentum: momentum %g not in [0, 1] (NAN = None)", momentum);
    bi->momentum = momentum;
    return BX_OK;
}

double bx_batchnorm_momentum(const bx_module *m) {
    return bx_module_is_batchnorm(m) ? ((const bn_impl *)m->impl)->momentum : NAN;
}

bx_status bx_batchnorm_set_track_running_stats(bx_module *m, bool track) {
    bn_impl *bi = bn_of(m, "batchnorm_set_track_running_stats");
    if (!bi) return BX_ERR_INVALID;
    bi->track_running_stats = track;
    return BX_OK;
}

bool bx_batchnorm_track_running_stats(const bx_module *m) {
    return bx_module_is_batchnorm(m) && ((const bn_impl *)m->impl)->track_running_stats;
}

bx_status bx_batchnorm_reset_running_stats(bx_module *m) {
    if (!bn_of(m, "batchnorm_reset_running_stats")) return BX_ERR_INVALID;
    bx_tensor *rm = bx_module_buffer(m, "running_mean"), *rv = bx_module_buffer(m, "running_var");
    bx_tensor *nb = bx_module_buffer(m, "num_batches_tracked");
    if (rm) bx_fill(rm, 0.0);
    if (rv) bx_fill(rv, 1.0);
    if (nb) bx_fill(nb, 0.0);
    return BX_OK;
}

/* ---- LayerNorm ---------------------------------------------------------------- */

typedef struct ln_impl {
    int nnorm;
    int64_t shape[BX_MAX_DIMS];
    double eps;
    bool affine;
} ln_impl;

static void *ln_clone(const void *p) { return bx__nn_dup(p, sizeof(ln_impl)); }

/* x (..., *shape) -> y same shape, normalised over the trailing nnorm dims */
static bx_tensor *ln_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    const ln_impl *li = m->impl;
    if (!x) return bx_step_fail(st, BX_ERR_INVALID, "LayerNorm: input is NULL");
    if (bx_is_poison(x)) return bx__poison(st);
    bool ok = x->ndim >= li->nnorm;
    for (int i = 0; ok && i < li->nnorm; i++) ok = x->shape[x->ndim - li->nnorm + i] == li->shape[i];
    if (!ok) {
        char a[96], b[96];
        return bx_step_fail(st, BX_ERR_SHAPE, "LayerNorm: input %s does not end with normalized_shape %s",
                            bx_shape_str(x, a, sizeof a), bx__shape_fmt(li->nnorm, li->shape, b, sizeof b));
    }
    return bx_layer_norm(st, x, li->nnorm, bx_module_tensor(st, m, "weight"), bx_module_tensor(st, m, "bias"), li->eps);
}

static bx_status ln_reset(bx_module *m, bx_rng *rng) {
    bx_tensor *w = bx_module_param(m, "weight"), *b = bx_module_param(m, "bias");
    if (w) bx_fill(w, 1.0);
    if (b) bx_fill(b, 0.0);
    return BX_OK;
}

static void ln_repr(const bx_module *m, char *buf, size_t n) {
    const ln_impl *li = m->impl;
    char sh[96];
    bx__shape_fmt(li->nnorm, li->shape, sh, sizeof sh);
    snprintf(buf, n, "%s, eps=%g, elementwise_affine=%s", sh, li->eps, li->affine ? "True" : "False");
}

static const bx_module_type ln_type = {"LayerNorm", ln_forward, bx__free, ln_clone, ln_reset, ln_repr};

bx_module *bx_nn_layernorm(int nnorm, const int64_t *normalized_shape, double eps, bool elementwise_affine) {
    ln_impl li;
    memset(&li, 0, sizeof li);
    bool ok = nnorm >= 1 && nnorm <= BX_MAX_DIMS && normalized_shape && eps > 0.0;
    for (int i = 0; ok && i < nnorm; i++) ok = normalized_shape[i] > 0;
    if (!ok) {
        bx__error(BX_ERR_INVALID, "LayerNorm: normalized_shape needs 1..%d dims of size > 0 and eps > 0", BX_MAX_DIMS);
        return NULL;
    }
    li.nnorm = nnorm;
    memcpy(li.shape, normalized_shape, sizeof(int64_t) * (size_t)nnorm);
    li.eps = eps;
    li.affine = elementwise_affine;
    bx_module *m = bx__nn_new_pod(&ln_type, &li, sizeof li);
    if (!m) return NULL;
    bx_status s;
    if (elementwise_affine) {
        bx_tensor *w = bx_param_new(nnorm, normalized_shape), *b = w ? bx_param_new(nnorm, normalized_shape) : NULL;
        s = bx_module_add_param(m, "weight", w);
        if (s == BX_OK) s = bx_module_add_param(m, "bias", b);
        else bx_tensor_free(b);
        if (s == BX_OK && (!w || !b)) s = BX_ERR_NOMEM;
    } else {
        s = bx_module_add_param(m, "weight", NULL);
        if (s == BX_OK) s = bx_module_add_param(m, "bias", NULL);
    }
    if (s == BX_OK) s = ln_reset(m, NULL);
    if (s != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}
