/* observer.c - quantization ranges, the two qparams formulas (F2 Python,
 * F3 fused C++) and the MinMax / MovingAverage observers (F1), per tensor
 * and per channel, as modules with torch's buffers (eps, min_val, max_val).
 *
 * All arithmetic mirrors torch 1.13 operation for operation in float32
 * (the fused formula uses double where ATen does). The build is ISO C
 * (-std=c11), so the compiler does not contract a*b+c into an FMA. */
#include "quant/quant_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- ranges ---------------------------------------------------------------- */

static int floordiv2(int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); }

/* The effective [qmin, qmax] (torch calculate_qmin_qmax). */
bx_status bx_quant_range(const bx_observer_opts *o, int *qmin, int *qmax) {
    int lo, hi;
    if (o->custom_range) {
        lo = o->quant_min;
        hi = o->quant_max;
        if (!(lo <= 0 && 0 <= hi) || lo >= hi || (int64_t)hi - lo + 1 > 256)
            return bx__error(BX_ERR_INVALID,
                             "observer: quant range [%d,%d] must include 0, have quant_min < quant_max and at most "
                             "256 values",
                             lo, hi);
        if (o->dtype == BX_QUINT8 && (lo < 0 || hi > 255))
            return bx__error(BX_ERR_INVALID, "observer: quant range [%d,%d] outside quint8 [0,255]", lo, hi);
        if (o->dtype == BX_QINT8 && (lo < -128 || hi > 127))
            return bx__error(BX_ERR_INVALID, "observer: quant range [%d,%d] outside qint8 [-128,127]", lo, hi);
        if (o->reduce_range) {
            lo = floordiv2(lo);
            hi = floordiv2(hi);
        }
    } else if (o->dtype == BX_QINT8) {
        lo = o->reduce_range ? -64 : -128;
        hi = o->reduce_range ? 63 : 127;
    } else if (o->dtype == BX_QUINT8) {
        lo = 0;
        hi = o->reduce_range ? 127 : 255;
    } else {
        return bx__error(BX_ERR_INVALID, "observer: unknown dtype %d", (int)o->dtype);
    }
    *qmin = lo;
    *qmax = hi;
    return BX_OK;
}

/* ---- qparams --------------------------------------------------------------- */

/* F2: torch's _ObserverBase._calculate_qparams, float32 tensors. */
void bx_qparams_python(float min_val, float max_val, int qmin, int qmax, bool symmetric,
                       bx_qdtype dtype, bool custom_range, float eps, float *scale, int32_t *zp) {
    if (!(min_val <= max_val)) { /* check_min_max_valid: unobserved (inf, -inf) */
        *scale = 1.0f;
        *zp = 0;
        return;
    }
    float mn = min_val < 0.0f ? min_val : 0.0f;
    float mx = max_val > 0.0f ? max_val : 0.0f;
    if (symmetric) {
        float amax = -mn > mx ? -mn : mx;
        float s = amax / (float)((double)(qmax - qmin) / 2.0);
        *scale = s > eps ? s : eps;
        int32_t z = 0;
        if (dtype == BX_QUINT8) z = custom_range ? (int32_t)floor((qmin + qmax) / 2.0) : 128;
        *zp = z;
        return;
    }
    float s = (mx - mn) / (float)(qmax - qmin);
    s = s > eps ? s : eps;
    float r = nearbyintf(mn / s); /* torch.round: half to even */
    int64_t z = (int64_t)qmin - (int64_t)r;
    if (z < qmin) z = qmin;
    if (z > qmax) z = qmax;
    *scale = s;
    *zp = (int32_t)z;
}

#define SMALL_SCALE_THRESHOLD 6.1e-5f

/* F3: ATen quant_utils::ChooseQuantizationParams(min, max, qmin, qmax,
 * preserve_sparsity = symmetric, force_scale_power_of_two = false,
 * reduce_range = false) as called by fused_moving_avg_obs_fake_quant. */
void bx_qparams_fused(float min, float max, int qmin, int qmax, bool symmetric, float *scale_out,
                      int32_t *zp_out) {
    if (min < 0 && max > 0 && symmetric) {
        int symmetric_qmin = -((qmax - qmin) / 2 + 1);
        int symmetric_qmax = (qmax - qmin) / 2;
        double max_scale = fmax(fabs(min / (double)symmetric_qmin), fabs(max / (double)symmetric_qmax));
        min = (float)(max_scale * symmetric_qmin);
        max = (float)(max_scale * symmetric_qmax);
    }
    min = fminf(min, 0.0f);
    max = fmaxf(max, 0.0f);
    double scale = ((double)max - min) / (qmax - qmin);
    if ((float)scale == 0.0f || isinf(1.0f / (float)scale)) scale = 0.1;
    if (scale < SMALL_SCALE_THRESHOLD) {
        float org_scale = (float)scale;
        scale = SMALL_SCALE_THRESHOLD;
        if (min == 0.0f) {
            max = SMALL_SCALE_THRESHOLD * (qmax - qmin);
        } else if (max == 0.0f) {
            min = -SMALL_SCALE_THRESHOLD * (qmax - qmin);
        } else {
            float amplifier = SMALL_SCALE_THRESHOLD / org_scale;
            min *= amplifier;
            max *= amplifier;
        }
    }
    double zp_from_min = qmin - min / (double)scale;
    double zp_from_max = qmax - max / (double)scale;
    double zp_from_min_error = fabs((double)qmin) - fabs(min / (double)scale);
    double zp_from_max_error = fabs((double)qmax) - fabs(max / (double)scale);
    double initial = zp_from_min_error < zp_from_max_error ? zp_from_min : zp_from_max;
    if (min < 0 && max > 0 && symmetric) initial = (double)(qmin + qmax) / 2;
    int32_t zp;
    if (initial < qmin) zp = qmin;
    else if (initial > qmax) zp = qmax;
    else zp = (int32_t)nearbyint(initial);
    *scale_out = (float)scale;
    *zp_out = zp;
}

/* ---- observer modules -------------------------------------------------------- */

static void observer_repr(const bx_module *m, char *buf, size_t n) {
    const bx__observer *ob = bx_module_impl(m);
    snprintf(buf, n, "quant_min=%d, quant_max=%d, ch_axis=%d, averaging_constant=%g", ob->qmin, ob->qmax,
             ob->o.ch_axis, ob->o.averaging_constant);
}

/* Observers are called explicitly (bx_observer_observe); as modules their
 * forward observes x (unless disabled) and returns it, like torch. */
bx_tensor *bx__observer_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    if (((const bx__observer *)bx_module_impl(m))->disabled) return x;
    if (bx_observer_observe(m, x) != BX_OK) return bx_step_fail(st, BX_ERR_SHAPE, "%s", bx_errmsg());
    return x;
}

static void *obs_clone(const void *impl) { return bx__nn_dup(impl, sizeof(bx__observer)); }

static const bx_module_type *obs_type(bool per_channel, bx_observer_kind k) {
    static const bx_module_type t[4] = {
        {"MinMaxObserver", bx__observer_forward, bx__free, obs_clone, NULL, observer_repr},
        {"MovingAverageMinMaxObserver", bx__observer_forward, bx__free, obs_clone, NULL, observer_repr},
        {"PerChannelMinMaxObserver", bx__observer_forward, bx__free, obs_clone, NULL, observer_repr},
        {"MovingAveragePerChannelMinMaxObserver", bx__observer_forward, bx__free, obs_clone, NULL, observer_repr},
    };
    return &t[(per_channel ? 2 : 0) + (k == BX_OBS_MOVING_AVERAGE ? 1 : 0)];
}

static bool is_per_channel(bx_qscheme q) { return q == BX_PER_CHANNEL_AFFINE || q == BX_PER_CHANNEL_SYMMETRIC; }
static bool is_symmetric(bx_qscheme q) { return q == BX_PER_TENSOR_SYMMETRIC || q == BX_PER_CHANNEL_SYMMETRIC; }

bool bx_module_is_observer(const bx_module *m) {
    if (!m) return false;
    const bx_module_type *t = bx_module_get_type(m);
    for (int pc = 0; pc < 2; pc++)
        for (int k = 0; k < 2; k++)
            if (t == obs_type(pc, (bx_observer_kind)k)) return true;
    return bx__is_histogram_observer(m);
}

bx_status bx_observer_set_enabled(bx_module *obs, bool on) {
    if (!bx_module_is_observer(obs)) return bx__error(BX_ERR_INVALID, "observer: module is not an observer");
    ((bx__observer *)bx_module_impl(obs))->disabled = !on;
    return BX_OK;
}

bool bx_observer_enabled(const bx_module *obs) {
    return bx_module_is_observer(obs) && !((const bx__observer *)bx_module_impl(obs))->disabled;
}

/* New observer module; see quant.h. */
bx_module *bx_observer_new(const bx_observer_opts *o) {
    bx_observer_opts dflt = BX_OBSERVER_OPTS_INIT;
    if (!o) o = &dflt;
    bx__observer ob = {*o, 0, 0, false};
    if (o->kind != BX_OBS_MINMAX && o->kind != BX_OBS_MOVING_AVERAGE && o->kind != BX_OBS_HISTOGRAM) {
        bx__error(BX_ERR_INVALID, "observer: unknown kind %d", (int)o->kind);
        return NULL;
    }
    if ((unsigned)o->qscheme > BX_PER_CHANNEL_SYMMETRIC) {
        bx__error(BX_ERR_INVALID, "observer: unknown qscheme %d", (int)o->qscheme);
        return NULL;
    }
    if (!(o->averaging_constant >= 0.0 && o->averaging_constant <= 1.0)) {
        bx__error(BX_ERR_INVALID, "observer: averaging_constant %g not in [0,1]", o->averaging_constant);
        return NULL;
    }
    if (bx_quant_range(o, &ob.qmin, &ob.qmax) != BX_OK) return NULL;
    if (o->kind == BX_OBS_HISTOGRAM) return bx__histogram_observer_new(o, ob.qmin, ob.qmax);
    bool pc = is_per_channel(o->qscheme);
    bx_module *m = bx__nn_new_pod(obs_type(pc, o->kind), &ob, sizeof ob);
    if (!m) return NULL;
    int64_t one = 1, zero = 0;
    bx_tensor *eps = bx_tensor_new(BX_F32, 1, &one);
    bx_tensor *mn = pc ? bx_tensor_new(BX_F32, 1, &zero) : bx_tensor_new(BX_F32, 0, NULL);
    bx_tensor *mx = pc ? bx_tensor_new(BX_F32, 1, &zero) : bx_tensor_new(BX_F32, 0, NULL);
    if (eps) ((float *)eps->data)[0] = o->eps;
    if (!pc && mn && mx) {
        ((float *)mn->data)[0] = INFINITY;
        ((float *)mx->data)[0] = -INFINITY;
    }
    if (!eps || !mn || !mx || bx_module_add_buffer(m, "eps", eps, true) != BX_OK) {
        bx_tensor_free(mn);
        bx_tensor_free(mx);
        bx_module_free(m);
        return NULL;
    }
    if (bx_module_add_buffer(m, "min_val", mn, true) != BX_OK) {
        bx_tensor_free(mx);
        bx_module_free(m);
        return NULL;
    }
    if (bx_module_add_buffer(m, "max_val", mx, true) != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}

bx_status bx_observer_get_opts(const bx_module *obs, bx_observer_opts *o) {
    if (!bx_module_is_observer(obs)) return bx__error(BX_ERR_INVALID, "observer: module is not an observer");
    *o = ((const bx__observer *)bx_module_impl(obs))->o;
    return BX_OK;
}

void bx__observer_range(const bx_module *obs, int *qmin, int *qmax) {
    const bx__observer *ob = bx_module_impl(obs);
    *qmin = ob->qmin;
    *qmax = ob->qmax;
}
bool bx__observer_per_channel(const bx_module *obs) {
    return is_per_channel(((const bx__observer *)bx_module_impl(obs))->o.qscheme);
}
bool bx__observer_symmetric(const bx_module *obs) {
    return is_symmetric(((const bx__observer *)bx_module_impl(obs))->o.qscheme);
}

bx_tensor *bx__quant_replace_buffer(bx_module *m, const char *name, bx_dtype dt, int64_t n) {
    bx_tensor *t = bx_tensor_zeros(dt, 1, &n);
    if (!t) return NULL;
    bx_tensor_free(bx_module_remove_buffer(m, name));
    if (bx_module_add_buffer(m, name, t, true) != BX_OK) return NULL;
    return t;
}

/* Moving-average update in float32, one operation at a time like torch:
 * v + c*(cur - v). */
static float mavg(float v, float cur, float c) {
    float d = cur - v;
    float t = c * d;
    return v + t;
}

static inline void minmax_upd(float v, float *mn, float *mx) {
    /* torch's aminmax propagates NaN */
    if (isnan(v)) {
        *mn = *mx = v;
        return;
    }
    if (v < *mn) *mn = v;
    if (v > *mx) *mx = v;
}

/* Per-channel min/max of x along axis into mn/mx (C entries). */
static void channel_minmax(const bx_tensor *x, int axis, float *mn, float *mx) {
    int64_t C = x->shape[axis], outer = 1, inner = 1;
    for (int d = 0; d < axis; d++) outer *= x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) inner *= x->shape[d];
    for (int64_t c = 0; c < C; c++) {
        mn[c] = INFINITY;
        mx[c] = -INFINITY;
    }
    bool contig = bx_is_contiguous(x);
    const float *p = x->data;
    for (int64_t a = 0; a < outer; a++)
        for (int64_t c = 0; c < C; c++) {
            float lo = mn[c], hi = mx[c];
            if (isnan(lo)) continue;
            int64_t base = (a * C + c) * inner;
            for (int64_t i = 0; i < inner; i++) minmax_upd(contig ? p[base + i] : (float)bx_get(x, base + i), &lo, &hi);
            mn[c] = lo;
            mx[c] = hi;
        }
}

/* Observes x; see quant.h. */
bx_status bx_observer_observe(bx_module *obs, const bx_tensor *x) {
    if (!bx_module_is_observer(obs)) return bx__error(BX_ERR_INVALID, "observer: module is not an observer");
    if (!x || x->dtype != BX_F32) return bx__error(BX_ERR_SHAPE, "observer: x must be an f32 tensor");
    if (bx__is_histogram_observer(obs)) return bx__histogram_observe(obs, x);
    const bx__observer *ob = bx_module_impl(obs);
    bx_tensor *mnb = bx_module_buffer(obs, "min_val"), *mxb = bx_module_buffer(obs, "max_val");
    if (!mnb || !mxb) return bx__error(BX_ERR_STATE, "observer: min_val/max_val buffers missing");
    float c = (float)ob->o.averaging_constant;
    bool avg = ob->o.kind == BX_OBS_MOVING_AVERAGE;
    if (!is_per_channel(ob->o.qscheme)) {
        if (bx_numel(x) == 0) return BX_OK; /* torch: empty input returns unchanged */
        float cur_mn, cur_mx;
        float mn1 = INFINITY, mx1 = -INFINITY;
        if (bx_is_contiguous(x)) {
            const float *p = x->data;
            int64_t n = bx_numel(x);
            for (int64_t i = 0; i < n; i++) {
                float v = p[i];
                if (isnan(v)) { mn1 = mx1 = v; break; }
                if (v < mn1) mn1 = v;
                if (v > mx1) mx1 = v;
            }
        } else {
            int64_t n = bx_numel(x);
            for (int64_t i = 0; i < n; i++) {
                float v = (float)bx_get(x, i);
                if (isnan(v)) { mn1 = mx1 = v; break; }
                if (v < mn1) mn1 = v;
                if (v > mx1) mx1 = v;
            }
        }
        cur_mn = mn1;
        cur_mx = mx1;
        float *mn = mnb->data, *mx = mxb->data;
        if (avg) {
            if (mn[0] == INFINITY && mx[0] == -INFINITY) {
                mn[0] = cur_mn;
                mx[0] = cur_mx;
            } else {
                mn[0] = mavg(mn[0], cur_mn, c);
                mx[0] = mavg(mx[0], cur_mx, c);
            }
        } else {
            mn[0] = fminf(cur_mn, mn[0]);
            mx[0] = fmaxf(cur_mx, mx[0]);
            if (isnan(cur_mn)) mn[0] = cur_mn;
            if (isnan(cur_mx)) mx[0] = cur_mx;
        }
        return BX_OK;
    }
    int axis = ob->o.ch_axis < 0 ? ob->o.ch_axis + x->ndim : ob->o.ch_axis;
    if (axis < 0 || axis >= x->ndim) {
        char b[64];
        return bx__error(BX_ERR_SHAPE, "observer: ch_axis %d out of range for x %s", ob->o.ch_axis,
                         bx_shape_str(x, b, sizeof b));
    }
    int64_t C = x->shape[axis];
    int64_t have = bx_numel(mnb);
    if (have != 0 && have != C) {
        char b[64];
        return bx__error(BX_ERR_SHAPE, "observer: x %s has %lld channels along axis %d, observer has %lld",
                         bx_shape_str(x, b, sizeof b), (long long)C, axis, (long long)have);
    }
    /* a steady-state step must not allocate: the stack for up to 1024 channels */
    float stack_buf[2048];
    float *cur = 2 * C <= 2048 ? stack_buf : bx__malloc(sizeof(float) * (size_t)(2 * C + 1));
    if (!cur) return bx__error(BX_ERR_NOMEM, "observer: out of memory");
    channel_minmax(x, axis, cur, cur + C);
    if (have == 0) {
        /* first batch (or a MinMax observer's first): sets min/max directly */
        mnb = bx__quant_replace_buffer(obs, "min_val", BX_F32, C);
        mxb = mnb ? bx__quant_replace_buffer(obs, "max_val", BX_F32, C) : NULL;
        if (!mxb) {
            if (cur != stack_buf) bx__free(cur);
            return bx__error(BX_ERR_NOMEM, "observer: out of memory");
        }
        memcpy(mnb->data, cur, sizeof(float) * (size_t)C);
        memcpy(mxb->data, cur + C, sizeof(float) * (size_t)C);
    } else {
        float *mn = mnb->data, *mx = mxb->data;
        for (int64_t i = 0; i < C; i++) {
            if (avg) {
                mn[i] = mavg(mn[i], cur[i], c);
                mx[i] = mavg(mx[i], cur[C + i], c);
            } else {
                mn[i] = isnan(cur[i]) ? cur[i] : fminf(cur[i], mn[i]);
                mx[i] = isnan(cur[C + i]) ? cur[C + i] : fmaxf(cur[C + i], mx[i]);
            }
        }
    }
    if (cur != stack_buf) bx__free(cur);
    return BX_OK;
}

/* Number of qparams the observer's state gives (1 for an unobserved
 * per-channel observer). */
int64_t bx__observer_nqparams(const bx_module *obs) {
    int64_t n = bx_numel(bx_module_buffer(obs, "min_val"));
    return n ? n : 1;
}

/* Qparams into caller arrays of bx__observer_nqparams entries. */
void bx__observer_qparams_into(const bx_module *obs, bool fused, float *s, int32_t *z) {
    if (bx__is_histogram_observer(obs)) {
        bx__histogram_qparams_into(obs, s, z);
        return;
    }
    const bx__observer *ob = bx_module_impl(obs);
    const bx_tensor *mnb = bx_module_buffer(obs, "min_val"), *mxb = bx_module_buffer(obs, "max_val");
    int64_t n = bx_numel(mnb);
    if (n == 0) { /* unobserved per-channel observer: torch returns [1.0], [0] */
        s[0] = 1.0f;
        z[0] = 0;
        return;
    }
    bool sym = is_symmetric(ob->o.qscheme);
    float eps = ((const float *)bx_module_buffer(obs, "eps")->data)[0];
    const float *mn = mnb->data, *mx = mxb->data;
    for (int64_t i = 0; i < n; i++) {
        if (fused)
            bx_qparams_fused(mn[i], mx[i], ob->qmin, ob->qmax, sym, &s[i], &z[i]);
        else
            bx_qparams_python(mn[i], mx[i], ob->qmin, ob->qmax, sym, ob->o.dtype, ob->o.custom_range, eps, &s[i],
                              &z[i]);
    }
}

/* Qparams from the current state; see quant.h. */
bx_status bx_observer_qparams(const bx_module *obs, bool fused, bx_tensor **scale, bx_tensor **zp) {
    *scale = *zp = NULL;
    if (!bx_module_is_observer(obs)) return bx__error(BX_ERR_INVALID, "observer: module is not an observer");
    const bx_tensor *mnb = bx_module_buffer(obs, "min_val"), *mxb = bx_module_buffer(obs, "max_val");
    if (!mnb || !mxb || !bx_module_buffer(obs, "eps"))
        return bx__error(BX_ERR_STATE, "observer: eps/min_val/max_val buffers missing");
    if (bx_numel(mnb) != bx_numel(mxb)) return bx__error(BX_ERR_STATE, "observer: min_val and max_val differ in size");
    int64_t len = bx__observer_nqparams(obs);
    *scale = bx_tensor_new(BX_F32, 1, &len);
    *zp = bx_tensor_new(BX_I32, 1, &len);
    if (!*scale || !*zp) {
        bx_tensor_free(*scale);
        bx_tensor_free(*zp);
        *scale = *zp = NULL;
        return bx__error(BX_ERR_NOMEM, "observer: out of memory");
    }
    bx__observer_qparams_into(obs, fused, (*scale)->data, (*zp)->data);
    return BX_OK;
}
