/* fake_quant.c - the FakeQuantize and FusedMovingAvgObsFakeQuantize modules
 * and torch's default QAT qconfigs.
 *
 * Layout as torch (so state dicts carry torch's keys): buffers
 * fake_quant_enabled, observer_enabled, scale, zero_point, then the child
 * activation_post_process (the observer with eps, min_val, max_val).
 *
 * FakeQuantize.forward (F1, F2):   observe -> F2 qparams -> fake-quantise
 * FusedMovingAvgObsFakeQuantize (F3): observe; if fake-quant is on, F3
 *   qparams (ChooseQuantizationParams) -> fake-quantise.
 * Both run in train and eval mode alike: only the enable flags switch them. */
#include "quant/quant_int.h"

#include <stdio.h>
#include <string.h>

typedef struct fq_impl {
    bx_fake_quant_opts o;
    int qmin, qmax;
} fq_impl;

static bool flag(const bx_module *m, const char *name) {
    const bx_tensor *t = bx_module_buffer(m, name);
    return t && bx_numel(t) > 0 && bx_get(t, 0) != 0.0;
}

/* Recomputes the module's scale/zero_point buffers from the observer,
 * re-creating them only when the length changes (per-channel: [1] -> [C]),
 * so a steady-state step allocates nothing. */
static bx_status update_qparams(bx_module *m, const bx_module *obs, bool fused) {
    bx_tensor *sb = bx_module_buffer(m, "scale"), *zb = bx_module_buffer(m, "zero_point");
    int64_t n = bx__observer_nqparams(obs);
    if (!sb || !zb || bx_numel(sb) != n || bx_numel(zb) != n || sb->dtype != BX_F32 || zb->dtype != BX_I32) {
        sb = bx__quant_replace_buffer(m, "scale", BX_F32, n);
        zb = sb ? bx__quant_replace_buffer(m, "zero_point", BX_I32, n) : NULL;
        if (!zb) return bx__error(BX_ERR_NOMEM, "fake_quant: out of memory");
    }
    bx__observer_qparams_into(obs, fused, sb->data, zb->data);
    return BX_OK;
}

// x (any) -> y (same shape), fake-quantised with the module's qparams
static bx_tensor *fq_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    const fq_impl *fi = bx_module_impl(m);
    bx_module *obs = bx_module_child(m, "activation_post_process");
    if (!bx_module_is_observer(obs))
        return bx_step_fail(st, BX_ERR_STATE, "%s: activation_post_process observer missing", bx_module_type_name(m));
    bool fq_on = flag(m, "fake_quant_enabled"), obs_on = flag(m, "observer_enabled");
    bool per_channel = bx__observer_per_channel(obs);
    if (obs_on && bx_observer_observe(obs, x) != BX_OK)
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: %s", bx_module_type_name(m), bx_errmsg());
    bool update = fi->o.fused ? fq_on : obs_on;
    if (update) {
        bx_status rc = update_qparams(m, obs, fi->o.fused);
        if (rc != BX_OK) return bx_step_fail(st, rc, "%s: %s", bx_module_type_name(m), bx_errmsg());
    }
    if (!fq_on) return x;
    const bx_tensor *sb = bx_module_buffer(m, "scale"), *zb = bx_module_buffer(m, "zero_point");
    if (!sb || !zb) return bx_step_fail(st, BX_ERR_STATE, "%s: scale/zero_point buffers missing", bx_module_type_name(m));
    if (per_channel)
        return bx_fake_quantize_per_channel(st, x, sb, zb, fi->o.observer.ch_axis, fi->qmin, fi->qmax);
    return bx_fake_quantize(st, x, ((const float *)sb->data)[0], (int32_t)bx_get(zb, 0), fi->qmin, fi->qmax);
}

static void fq_repr(const bx_module *m, char *buf, size_t n) {
    const fq_impl *fi = bx_module_impl(m);
    snprintf(buf, n, "fake_quant_enabled=%d, observer_enabled=%d, quant_min=%d, quant_max=%d",
             (int)flag(m, "fake_quant_enabled"), (int)flag(m, "observer_enabled"), fi->qmin, fi->qmax);
}

static void *fq_clone(const void *impl) { return bx__nn_dup(impl, sizeof(fq_impl)); }

static const bx_module_type fq_type = {"FakeQuantize", fq_forward, bx__free, fq_clone, NULL, fq_repr};
static const bx_module_type fused_type = {"FusedMovingAvgObsFakeQuantize", fq_forward, bx__free, fq_clone, NULL,
                                          fq_repr};

bool bx_module_is_fake_quant(const bx_module *m) {
    return m && (bx_module_get_type(m) == &fq_type || bx_module_get_type(m) == &fused_type);
}

static bx_tensor *one_tensor(bx_dtype dt, double v) {
    int64_t one = 1;
    bx_tensor *t = bx_tensor_new(dt, 1, &one);
    if (t) bx_set(t, 0, v);
    return t;
}

/* New fake-quant module; see quant.h. */
bx_module *bx_fake_quant_new(const bx_fake_quant_opts *o) {
    if (!o) {
        bx__error(BX_ERR_INVALID, "fake_quant: options are NULL");
        return NULL;
    }
    if (o->fused && o->observer.kind != BX_OBS_MOVING_AVERAGE) {
        bx__error(BX_ERR_INVALID, "FusedMovingAvgObsFakeQuantize: needs a moving-average observer");
        return NULL;
    }
    bool pc = o->observer.qscheme == BX_PER_CHANNEL_AFFINE || o->observer.qscheme == BX_PER_CHANNEL_SYMMETRIC;
    if (o->fused && pc && o->observer.ch_axis != 0) { /* torch: "only supported on axis == 0" */
        bx__error(BX_ERR_INVALID, "FusedMovingAvgObsFakeQuantize: per-channel only on ch_axis 0, not %d",
                  o->observer.ch_axis);
        return NULL;
    }
    fq_impl fi = {*o, 0, 0};
    if (bx_quant_range(&o->observer, &fi.qmin, &fi.qmax) != BX_OK) return NULL;
    bx_module *obs = bx_observer_new(&o->observer);
    if (!obs) return NULL;
    bx_module *m = bx__nn_new_pod(o->fused ? &fused_type : &fq_type, &fi, sizeof fi);
    if (!m) {
        bx_module_free(obs);
        return NULL;
    }
    /* torch: FakeQuantize flags are uint8, the fused module's int64 */
    bx_dtype fdt = o->fused ? BX_I64 : BX_U8;
    if (bx_module_add_buffer(m, "fake_quant_enabled", one_tensor(fdt, 1), true) != BX_OK ||
        bx_module_add_buffer(m, "observer_enabled", one_tensor(fdt, 1), true) != BX_OK ||
        bx_module_add_buffer(m, "scale", one_tensor(BX_F32, 1.0), true) != BX_OK ||
        bx_module_add_buffer(m, "zero_point", one_tensor(BX_I32, 0), true) != BX_OK ||
        bx_module_add_child(m, "activation_post_process", obs) != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}

bx_status bx_fake_quant_enable(bx_module *fq, bool fake_quant, bool observer) {
    if (!bx_module_is_fake_quant(fq)) return bx__error(BX_ERR_INVALID, "fake_quant: module is not a fake-quant module");
    bx_set(bx_module_buffer(fq, "fake_quant_enabled"), 0, fake_quant ? 1 : 0);
    bx_set(bx_module_buffer(fq, "observer_enabled"), 0, observer ? 1 : 0);
    return BX_OK;
}

bx_module *bx_fake_quant_observer(const bx_module *fq) {
    if (bx_module_is_observer(fq)) return (bx_module *)fq; /* a bare observer (observer_only qconfig entry) */
    if (!bx_module_is_fake_quant(fq)) return NULL;
    return bx_module_child(fq, "activation_post_process");
}

bx_status bx_fake_quant_calculate_qparams(const bx_module *fq, bx_tensor **scale, bx_tensor **zp) {
    *scale = *zp = NULL;
    bx_module *obs = bx_fake_quant_observer(fq); /* fq itself when it is a bare observer */
    if (!obs) return bx__error(BX_ERR_INVALID, "fake_quant: module is not a fake-quant module or an observer");
    return bx_observer_qparams(obs, false, scale, zp);
}

/* ---- qconfigs ----------------------------------------------------------------- */

static bx_fake_quant_opts fq_opts(bool fused, bx_qdtype dt, bx_qscheme qs, int qmin, int qmax, bool reduce) {
    bx_fake_quant_opts o;
    bx_observer_opts ob = BX_OBSERVER_OPTS_INIT;
    ob.kind = BX_OBS_MOVING_AVERAGE;
    ob.dtype = dt;
    ob.qscheme = qs;
    ob.custom_range = true;
    ob.quant_min = qmin;
    ob.quant_max = qmax;
    ob.reduce_range = reduce;
    ob.ch_axis = 0;
    o.observer = ob;
    o.fused = fused;
    o.observer_only = false;
    return o;
}

/* A bare observer entry of torch's post-training qconfigs (dtype range, no
 * custom quant_min/quant_max, as HistogramObserver.with_args(reduce_range)
 * and default_[per_channel_]weight_observer). */
static bx_fake_quant_opts obs_entry(bx_observer_kind k, bx_qdtype dt, bx_qscheme qs, bool reduce) {
    bx_fake_quant_opts o;
    bx_observer_opts ob = BX_OBSERVER_OPTS_INIT;
    ob.kind = k;
    ob.dtype = dt;
    ob.qscheme = qs;
    ob.reduce_range = reduce;
    ob.ch_axis = 0;
    o.observer = ob;
    o.fused = false;
    o.observer_only = true;
    return o;
}

/* torch get_default_qconfig(backend); see quant.h. */
bx_status bx_qconfig_default(const char *backend, bx_qconfig *out) {
    if (!backend) return bx__error(BX_ERR_INVALID, "qconfig: backend is NULL");
    bool fb = strcmp(backend, "fbgemm") == 0 || strcmp(backend, "x86") == 0;
    if (fb || strcmp(backend, "onednn") == 0) {
        out->activation = obs_entry(BX_OBS_HISTOGRAM, BX_QUINT8, BX_PER_TENSOR_AFFINE, fb);
        out->weight = obs_entry(BX_OBS_MINMAX, BX_QINT8, BX_PER_CHANNEL_SYMMETRIC, false);
    } else if (strcmp(backend, "qnnpack") == 0) {
        out->activation = obs_entry(BX_OBS_HISTOGRAM, BX_QUINT8, BX_PER_TENSOR_AFFINE, false);
        out->weight = obs_entry(BX_OBS_MINMAX, BX_QINT8, BX_PER_TENSOR_SYMMETRIC, false);
    } else {
        return bx__error(BX_ERR_INVALID, "qconfig: unknown backend '%s' (fbgemm, x86, qnnpack, onednn)", backend);
    }
    return BX_OK;
}

/* torch get_default_qat_qconfig(backend, version); see quant.h. */
bx_status bx_qconfig_default_qat(const char *backend, int version, bx_qconfig *out) {
    if (version != 0 && version != 1)
        return bx__error(BX_ERR_INVALID, "qconfig: version %d (expected 0 or 1)", version);
    bool fused = version == 1;
    if (!backend) return bx__error(BX_ERR_INVALID, "qconfig: backend is NULL");
    if (strcmp(backend, "fbgemm") == 0 || strcmp(backend, "x86") == 0) {
        out->activation = fq_opts(fused, BX_QUINT8, BX_PER_TENSOR_AFFINE, 0, 255, true);
        out->weight = fq_opts(fused, BX_QINT8, BX_PER_CHANNEL_SYMMETRIC, -128, 127, false);
    } else if (strcmp(backend, "qnnpack") == 0) {
        out->activation = fq_opts(fused, BX_QUINT8, BX_PER_TENSOR_AFFINE, 0, 255, false);
        out->weight = fq_opts(fused, BX_QINT8, BX_PER_TENSOR_SYMMETRIC, -128, 127, false);
    } else if (strcmp(backend, "onednn") == 0) {
        out->activation = fq_opts(fused, BX_QUINT8, BX_PER_TENSOR_AFFINE, 0, 255, false);
        out->weight = fq_opts(fused, BX_QINT8, BX_PER_CHANNEL_SYMMETRIC, -128, 127, false);
    } else {
        return bx__error(BX_ERR_INVALID, "qconfig: unknown backend '%s' (fbgemm, x86, qnnpack, onednn)", backend);
    }
    return BX_OK;
}

/* ---- state dict ---------------------------------------------------------------- */

/* Re-creates buffers a/b of m with the lengths stored under prefix.a and
 * prefix.b in sd when they differ (per-channel state: [0] -> [C]), keeping
 * their order; torch's observers and fake-quants resize the same way in
 * _load_from_state_dict. */
static bx_status resize_pair(bx_module *m, const char *prefix, const char *a, const char *b, bx_dtype dta,
                             bx_dtype dtb, const bx_named_tensors *sd) {
    char ka[512], kb[512];
    snprintf(ka, sizeof ka, "%s%s%s", prefix, *prefix ? "." : "", a);
    snprintf(kb, sizeof kb, "%s%s%s", prefix, *prefix ? "." : "", b);
    const bx_tensor *ta = bx_named_tensors_get(sd, ka), *tb = bx_named_tensors_get(sd, kb);
    const bx_tensor *ca = bx_module_buffer(m, a), *cb = bx_module_buffer(m, b);
    if (!ta || !tb || !ca || !cb || ta->ndim != 1 || tb->ndim != 1) return BX_OK;
    if (bx_numel(ta) == bx_numel(ca) && bx_numel(tb) == bx_numel(cb)) return BX_OK;
    if (!bx__quant_replace_buffer(m, a, dta, bx_numel(ta)) || !bx__quant_replace_buffer(m, b, dtb, bx_numel(tb)))
        return bx__error(BX_ERR_NOMEM, "load_state_dict: out of memory");
    return BX_OK;
}

/* Loads a state dict into a model holding observers / fake-quants whose
 * per-channel buffers may still be empty; see quant.h. */
bx_status bx_quant_load_state_dict(bx_module *m, const bx_named_tensors *sd, bool strict) {
    if (!m || !sd) return bx__error(BX_ERR_INVALID, "load_state_dict: model or state dict is NULL");
    bx_named_modules *mods = bx_module_named_modules(m);
    if (!mods) return bx__error(BX_ERR_NOMEM, "load_state_dict: out of memory");
    bx_status rc = BX_OK;
    for (int i = 0; i < mods->n && rc == BX_OK; i++) {
        bx_module *c = mods->modules[i];
        if (bx_module_is_observer(c))
            rc = resize_pair(c, mods->names[i], "min_val", "max_val", BX_F32, BX_F32, sd);
        else if (bx_module_is_fake_quant(c))
            rc = resize_pair(c, mods->names[i], "scale", "zero_point", BX_F32, BX_I32, sd);
    }
    bx_named_modules_free(mods);
    return rc == BX_OK ? bx_module_load_state_dict(m, sd, strict) : rc;
}
