/* histogram.c - torch 1.13's HistogramObserver (torch/ao/quantization/
 * observer.py), operation for operation:
 *
 *  first batch (or after a constant batch, min_val == max_val):
 *    min_val, max_val = aminmax(x);
 *    histogram = histc(x, bins, min=int(min_val), max=int(max_val))
 *    (int() truncates toward zero; histc ignores elements outside its range)
 *  later batches: combined = [min(min_val, x), max(max_val, x)];
 *    _adjust_min_max relaxes the combined max so the old histogram's
 *    upsampled grid (bins*upsample_rate cells over [min_val, max_val])
 *    divides it (downsample_rate), new = histc(x, bins, int(cmin), int(cmax));
 *    same range -> new += histogram, else _combine_histograms: upsample the
 *    old histogram, place it at start_idx, cumsum in double, sample every
 *    downsample_rate cells, difference / upsample_rate, add in float32;
 *  calculate_qparams: _non_linear_param_search (L2 quantisation error over
 *    candidate [start_bin, end_bin] ranges, stepping quantiles by 1e-5) then
 *    the F2 formula on the clipped [new_min, new_max].
 *
 * Reproduced ATen kernels (torch 1.13 CPU, the AVX2 kernels this machine's
 * torch dispatches to; tests/quant/gen_hist_cases.py checks them):
 *  - histc: bin edges = linspace(lo, hi, bins+1) in float32 (vectors of 8
 *    from a base, pairs of vectors, scalar remainder; the second half counted
 *    back from hi), pos = (int64)((v-lo)*bins/(hi-lo)) then an upper_bound
 *    among the neighbouring edges; the last bin includes hi; lo == hi takes
 *    the data's range, then +-1;
 *  - torch.sum of float32: the cascade sum (4 accumulation levels, 4 rows of
 *    8-lane vectors, lanes added last);
 *  - torch.cumsum of float32: sequential with a double accumulator;
 *  - tensor-vs-Python-float comparisons: the double is rounded to float32.
 * Everything else is float32 except what torch computes in Python doubles
 * (_compute_quantization_error's bin widths, the quantile bounds). The build
 * is ISO C (-std=c11): no FMA contraction. */
#include "quant/quant_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define HIST_STACK_BINS 2048
#define TRY_H(x)                        \
    do {                                \
        bx_status s_h__ = (x);          \
        if (s_h__ != BX_OK) return s_h__; \
    } while (0)
#define LINSPACE_VEC 8 /* Vectorized<float>::size() of the AVX2 kernels */

static int hbins(const bx__observer *ob) { return ob->o.bins > 0 ? ob->o.bins : 2048; }
static int hup(const bx__observer *ob) { return ob->o.upsample_rate > 0 ? ob->o.upsample_rate : 128; }

/* ---- ATen kernels --------------------------------------------------------------- */

/* torch.linspace(lo, hi, steps) in float32 (RangeFactoriesKernel.cpp). */
static void linspace_f32(double lo, double hi, int64_t steps, float *out) {
    float start = (float)lo, end = (float)hi;
    if (steps == 1) {
        out[0] = start;
        return;
    }
    float step = (end - start) / (float)(steps - 1);
    int64_t half = steps / 2, i = 0;
    for (; i + 2 * LINSPACE_VEC <= steps; i += 2 * LINSPACE_VEC)
        for (int b = 0; b < 2; b++) {
            int64_t i0 = i + b * LINSPACE_VEC;
            float base = i0 < half ? start + step * (float)i0 : end - step * (float)(steps - i0 - 1);
            for (int j = 0; j < LINSPACE_VEC; j++) out[i0 + j] = base + (float)j * step;
        }
    for (; i < steps; i++) out[i] = i < half ? start + step * (float)i : end - step * (float)(steps - i - 1);
}

static int ceil_log2(int64_t x) {
    if (x <= 2) return 1;
    int b = 0;
    for (uint64_t v = (uint64_t)x - 1; v; v >>= 1) b++;
    return b;
}

/* ATen multi_row_sum: 4 rows of W lanes each, 4 cascade levels. row i,
 * column k, lane l is p[i*rs + k*cs + l]. */
static void multi_row_sum(const float *p, int64_t rs, int64_t cs, int64_t size, int W, float out[4][8]) {
    int lp = ceil_log2(size) / 4;
    if (lp < 4) lp = 4;
    const int64_t step = (int64_t)1 << lp, mask = step - 1;
    float acc[4][4][8];
    memset(acc, 0, sizeof acc);
    int64_t i = 0;
    while (i + step <= size) {
        for (int64_t j = 0; j < step; j++, i++)
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < W; l++) acc[0][k][l] += p[i * rs + k * cs + l];
        for (int j = 1; j < 4; j++) {
            for (int k = 0; k < 4; k++)
                for (int l = 0; l < W; l++) {
                    acc[j][k][l] += acc[j - 1][k][l];
                    acc[j - 1][k][l] = 0.0f;
                }
            if ((i & (mask << (j * lp))) != 0) break;
        }
    }
    for (; i < size; i++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < W; l++) acc[0][k][l] += p[i * rs + k * cs + l];
    for (int j = 1; j < 4; j++)
        for (int k = 0; k < 4; k++)
            for (int l = 0; l < W; l++) acc[0][k][l] += acc[j][k][l];
    for (int k = 0; k < 4; k++)
        for (int l = 0; l < W; l++) out[k][l] = acc[0][k][l];
}

/* torch.sum of a contiguous float32 vector (SumKernel.cpp cascade_sum:
 * vectorized_inner_sum for n >= 8, scalar_inner_sum below). */
static float torch_sum_f32(const float *x, int64_t n) {
    int W = n >= 8 ? 8 : 1;
    int64_t nvec = n / W, size_ilp = nvec / 4;
    float part[4][8];
    multi_row_sum(x, 4 * W, W, size_ilp, W, part);
    for (int64_t i = size_ilp * 4; i < nvec; i++)
        for (int l = 0; l < W; l++) part[0][l] += x[i * W + l];
    for (int k = 1; k < 4; k++)
        for (int l = 0; l < W; l++) part[0][l] += part[k][l];
    if (W == 1) {
        float acc = part[0][0];
        for (int64_t i = nvec; i < n; i++) acc += x[i]; /* none: nvec == n */
        return acc;
    }
    float acc = 0.0f;
    for (int64_t i = nvec * W; i < n; i++) acc += x[i];
    for (int l = 0; l < W; l++) acc += part[0][l];
    return acc;
}

/* Element i of x (any strides) as float. */
static inline float elem(const bx_tensor *x, const float *p, int64_t i) { return p ? p[i] : (float)bx_get(x, i); }

/* aminmax of x; false when x holds a NaN. */
static bool aminmax(const bx_tensor *x, float *mn, float *mx) {
    const float *p = bx_is_contiguous(x) ? x->data : NULL;
    int64_t n = bx_numel(x);
    float lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        float v = elem(x, p, i);
        if (isnan(v)) return false;
        if (v < lo) lo = v;
        if (v > hi) hi = v;
    }
    *mn = lo;
    *mx = hi;
    return true;
}

/* torch.histc(x, bins, min=lo, max=hi) (Histogram.cpp + HistogramKernel.cpp,
 * linear interpolation with local search); edges: bins+1 floats scratch. */
static bx_status histc(const bx_tensor *x, int bins, double lo, double hi, float *hist, float *edges) {
    int64_t n = bx_numel(x);
    if (lo == hi && n > 0) {
        float a = 0.0f, b = 0.0f;
        aminmax(x, &a, &b);
        lo = a;
        hi = b;
    }
    if (lo == hi) {
        lo -= 1;
        hi += 1;
    }
    if (!isfinite(lo) || !isfinite(hi) || !(lo < hi))
        return bx__error(BX_ERR_INVALID, "HistogramObserver: histc range [%g, %g] is not finite or empty", lo, hi);
    linspace_f32(lo, hi, (int64_t)bins + 1, edges);
    memset(hist, 0, sizeof(float) * (size_t)bins);
    const float left = edges[0], right = edges[bins];
    const float *p = bx_is_contiguous(x) ? x->data : NULL;
    for (int64_t i = 0; i < n; i++) {
        float v = elem(x, p, i);
        if (!(v >= left && v <= right)) continue;
        int64_t pos = (int64_t)((v - left) * (float)bins / (right - left));
        int64_t pmin = pos - 1 > 0 ? pos - 1 : 0, pmax = pos + 2 < bins + 1 ? pos + 2 : bins + 1;
        int64_t k = pmin;
        while (k < pmax && !(v < edges[k])) k++; /* std::upper_bound */
        pos = k - 1;
        if (pos == bins) pos--; /* the last bin includes its right edge */
        if (pos < 0) pos = 0;
        hist[pos] += 1.0f;
    }
    return BX_OK;
}

/* _combine_histograms(new, old, up, ds, start, bins): new += interpolated old. */
static void combine(float *nh, const float *old, int up, int64_t ds, int64_t start, int bins) {
    const int64_t L = (int64_t)bins * up;
    double run = 0.0;
    float shifted = 0.0f;
    int64_t j = 0;
    for (int k = 0; k < bins; k++) {
        int64_t lim = ((int64_t)k + 1) * ds - start; /* cumsum index (k+1)*ds - 1 covers j < lim */
        if (lim > L) lim = L;
        for (; j < lim; j++) run += (double)old[j / up];
        double interp = (run - (double)shifted) / (double)up;
        nh[k] = nh[k] + (float)interp;
        shifted = (float)run;
    }
}

/* ---- module ---------------------------------------------------------------------- */

static void hist_repr(const bx_module *m, char *buf, size_t n) {
    const bx__observer *ob = bx_module_impl(m);
    snprintf(buf, n, "bins=%d, upsample_rate=%d, quant_min=%d, quant_max=%d", hbins(ob), hup(ob), ob->qmin, ob->qmax);
}

static void *hist_clone(const void *impl) { return bx__nn_dup(impl, sizeof(bx__observer)); }

static const bx_module_type hist_type = {"HistogramObserver", bx__observer_forward, bx__free, hist_clone, NULL,
                                         hist_repr};

bool bx__is_histogram_observer(const bx_module *m) { return m && bx_module_get_type(m) == &hist_type; }

/* New HistogramObserver (options checked by bx_observer_new except the
 * histogram's own); buffers in torch's order: eps, histogram, min_val, max_val. */
bx_module *bx__histogram_observer_new(const bx_observer_opts *o, int qmin, int qmax) {
    if (o->qscheme != BX_PER_TENSOR_AFFINE && o->qscheme != BX_PER_TENSOR_SYMMETRIC) {
        bx__error(BX_ERR_INVALID, "HistogramObserver: only per-tensor affine / symmetric qschemes (as torch)");
        return NULL;
    }
    if (o->bins < 0 || o->upsample_rate < 0) {
        bx__error(BX_ERR_INVALID, "HistogramObserver: bins %d / upsample_rate %d must be positive", o->bins,
                  o->upsample_rate);
        return NULL;
    }
    bx__observer ob = {*o, qmin, qmax, false};
    ob.o.bins = hbins(&ob);
    ob.o.upsample_rate = hup(&ob);
    bx_module *m = bx__nn_new_pod(&hist_type, &ob, sizeof ob);
    if (!m) return NULL;
    int64_t one = 1, nb = ob.o.bins;
    bx_tensor *eps = bx_tensor_new(BX_F32, 1, &one), *h = bx_tensor_zeros(BX_F32, 1, &nb);
    bx_tensor *mn = bx_tensor_new(BX_F32, 0, NULL), *mx = bx_tensor_new(BX_F32, 0, NULL);
    if (!eps || !h || !mn || !mx) {
        bx_tensor_free(eps);
        bx_tensor_free(h);
        bx_tensor_free(mn);
        bx_tensor_free(mx);
        bx_module_free(m);
        return NULL;
    }
    ((float *)eps->data)[0] = o->eps;
    ((float *)mn->data)[0] = INFINITY;
    ((float *)mx->data)[0] = -INFINITY;
    bx_status s = bx_module_add_buffer(m, "eps", eps, true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "histogram", h, true);
    else bx_tensor_free(h);
    if (s == BX_OK) s = bx_module_add_buffer(m, "min_val", mn, true);
    else bx_tensor_free(mn);
    if (s == BX_OK) s = bx_module_add_buffer(m, "max_val", mx, true);
    else bx_tensor_free(mx);
    if (s != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}

/* The buffers, checked: histogram f32 [bins], min_val/max_val f32 1 element. */
static bx_status hist_buffers(const bx_module *obs, float **h, float **mn, float **mx) {
    const bx__observer *ob = bx_module_impl(obs);
    bx_tensor *hb = bx_module_buffer(obs, "histogram"), *mnb = bx_module_buffer(obs, "min_val"),
              *mxb = bx_module_buffer(obs, "max_val");
    if (!hb || !mnb || !mxb || hb->dtype != BX_F32 || mnb->dtype != BX_F32 || mxb->dtype != BX_F32 ||
        bx_numel(hb) != hbins(ob) || bx_numel(mnb) != 1 || bx_numel(mxb) != 1 || !bx_is_contiguous(hb))
        return bx__error(BX_ERR_STATE, "HistogramObserver: histogram [%d] / min_val / max_val buffers missing or "
                         "resized", hbins(ob));
    *h = hb->data;
    *mn = mnb->data;
    *mx = mxb->data;
    return BX_OK;
}

/* forward(x) of torch's HistogramObserver; see the file comment. */
bx_status bx__histogram_observe(bx_module *obs, const bx_tensor *x) {
    if (bx_numel(x) == 0) return BX_OK;
    const bx__observer *ob = bx_module_impl(obs);
    float *h, *mnp, *mxp;
    TRY_H(hist_buffers(obs, &h, &mnp, &mxp));
    const int bins = hbins(ob), up = hup(ob);
    float xmn, xmx;
    if (!aminmax(x, &xmn, &xmx) || !isfinite(xmn) || !isfinite(xmx))
        return bx__error(BX_ERR_INVALID, "HistogramObserver: x holds NaN or infinite values (torch fails on int())");
    float stack_buf[2 * HIST_STACK_BINS + 1];
    float *scratch = bins <= HIST_STACK_BINS ? stack_buf : bx__malloc(sizeof(float) * (size_t)(2 * bins + 1));
    if (!scratch) return bx__error(BX_ERR_NOMEM, "HistogramObserver: out of memory");
    float *nh = scratch, *edges = scratch + bins;
    float mn = *mnp, mx = *mxp;
    bx_status s = BX_OK;
    if ((mn == INFINITY && mx == -INFINITY) || mn == mx) {
        s = histc(x, bins, trunc((double)xmn), trunc((double)xmx), nh, edges);
        if (s == BX_OK) {
            *mnp = xmn;
            *mxp = xmx;
            memcpy(h, nh, sizeof(float) * (size_t)bins);
        }
    } else {
        float cmin = xmn < mn ? xmn : mn, cmax = xmx > mx ? xmx : mx;
        /* _adjust_min_max */
        float hw = (mx - mn) / (float)((int64_t)bins * up);
        float w = (float)bins * hw;
        float ratio = ceilf((cmax - cmin) / w);
        if (!(ratio >= 1.0f && ratio < 9.0e15f)) {
            s = bx__error(BX_ERR_INVALID, "HistogramObserver: range [%g, %g] against the histogram's [%g, %g] "
                          "gives no usable downsample rate", cmin, cmax, mn, mx);
        } else {
            int64_t ds = (int64_t)ratio;
            float e = (float)ds * w - (cmax - cmin);
            cmax = cmax + e;
            int64_t start = (int64_t)nearbyintf((mn - cmin) / hw);
            s = histc(x, bins, trunc((double)cmin), trunc((double)cmax), nh, edges);
            if (s == BX_OK) {
                if (cmin == mn && cmax == mx) {
                    for (int i = 0; i < bins; i++) nh[i] = nh[i] + h[i];
                } else if (start < 0 || start + (int64_t)bins * up > (int64_t)bins * ds) {
                    s = bx__error(BX_ERR_INVALID, "HistogramObserver: the old histogram (start %lld) does not fit "
                                  "the combined range (downsample rate %lld); torch fails here too",
                                  (long long)start, (long long)ds);
                } else {
                    combine(nh, h, up, ds, start, bins);
                }
            }
            if (s == BX_OK) {
                memcpy(h, nh, sizeof(float) * (size_t)bins);
                *mnp = cmin;
                *mxp = cmax;
            }
        }
    }
    if (scratch != stack_buf) bx__free(scratch);
    return s;
}

/* _compute_quantization_error(ns, ne); norm: bins floats scratch. */
static double quant_error(const float *h, int bins, int dst_nbins, float mn, float mx, int ns, int ne, float *norm) {
    double bw = ((double)mx - (double)mn) / bins;
    double dbw = bw * (double)(ne - ns + 1) / dst_nbins;
    if (dbw == 0.0) return 0.0;
    const float bwf = (float)bw, dbwf = (float)dbw, half = (float)(dbw / 2), nhalf = (float)(-dbw / 2);
    const float mid = (half * half * half - nhalf * nhalf * nhalf) / 3.0f; /* _get_norm(-w/2, w/2) as 0-d */
    const float nb3 = nhalf * nhalf * nhalf;
    const float hi_clamp = (float)(dst_nbins - 1);
    for (int i = 0; i < bins; i++) {
        float sbb = (float)(i - ns) * bwf;
        float sbe = sbb + bwf;
        float db = 0.0f, de = 0.0f;
        /* torch.div(.., rounding_mode='floor') then clamp(0, dst_nbins-1) */
        for (int t = 0; t < 2; t++) {
            float a = t ? sbe : sbb;
            float mod = fmodf(a, dbwf);
            float dv = (a - mod) / dbwf;
            if (mod != 0.0f && ((dbwf < 0.0f) != (mod < 0.0f))) dv -= 1.0f;
            float fd;
            if (dv != 0.0f) {
                fd = floorf(dv);
                if (dv - fd > 0.5f) fd += 1.0f;
            } else {
                fd = copysignf(0.0f, a / dbwf);
            }
            fd = fd < 0.0f ? 0.0f : (fd > hi_clamp ? hi_clamp : fd);
            if (t) de = fd;
            else db = fd;
        }
        float dbc = (db + 0.5f) * dbwf;
        float dens = h[i] / bwf;
        float b1 = sbb - dbc;
        float n = 0.0f;
        n = n + dens * ((half * half * half - b1 * b1 * b1) / 3.0f);
        n = n + ((de - db) - 1.0f) * (dens * mid);
        float dec = de * dbwf + half;
        float e3 = sbe - dec;
        n = n + dens * ((e3 * e3 * e3 - nb3) / 3.0f);
        norm[i] = n;
    }
    return (double)torch_sum_f32(norm, bins);
}

/* _non_linear_param_search on the buffers. */
static bx_status search(const bx_module *obs, float *new_min, float *new_max) {
    const bx__observer *ob = bx_module_impl(obs);
    float *h, *mnp, *mxp;
    TRY_H(hist_buffers(obs, &h, &mnp, &mxp));
    const float mn = *mnp, mx = *mxp;
    if (mn == INFINITY && mx == -INFINITY) {
        *new_min = mn;
        *new_max = mx;
        return BX_OK;
    }
    const int bins = hbins(ob), dst_nbins = 256; /* 2 ** iinfo(dtype).bits, 8-bit dtypes */
    float stack_buf[2 * HIST_STACK_BINS];
    float *cs = bins <= HIST_STACK_BINS ? stack_buf : bx__malloc(sizeof(float) * (size_t)(2 * bins));
    if (!cs) return bx__error(BX_ERR_NOMEM, "HistogramObserver: out of memory");
    float *norm = cs + bins;
    const float bw = (mx - mn) / (float)bins;
    const double total = (double)torch_sum_f32(h, bins);
    double acc = 0.0;
    for (int i = 0; i < bins; i++) { /* torch.cumsum (float, double accumulator) */
        acc += (double)h[i];
        cs[i] = (float)acc;
    }
    const double stepsize = 1e-5;
    double alpha = 0.0, beta = 1.0, norm_min = INFINITY;
    int start_bin = 0, end_bin = bins - 1;
    while (alpha < beta) {
        double next_alpha = alpha + stepsize, next_beta = beta - stepsize;
        int l = start_bin, r = end_bin;
        const float lo_q = (float)(next_alpha * total), hi_q = (float)(next_beta * total);
        while (l < end_bin && cs[l] < lo_q) l++;
        while (r > start_bin && cs[r] > hi_q) r--;
        int next_start = start_bin, next_end = end_bin;
        if ((l - start_bin) > (end_bin - r)) {
            next_start = l;
            alpha = next_alpha;
        } else {
            next_end = r;
            beta = next_beta;
        }
        if (next_start == start_bin && next_end == end_bin) continue;
        double nrm = quant_error(h, bins, dst_nbins, mn, mx, next_start, next_end, norm);
        if (nrm > norm_min) break;
        norm_min = nrm;
        start_bin = next_start;
        end_bin = next_end;
    }
    if (cs != stack_buf) bx__free(cs);
    *new_min = mn + bw * (float)start_bin;
    *new_max = mn + bw * (float)(end_bin + 1);
    return BX_OK;
}

bx_status bx_histogram_observer_search(const bx_module *obs, float *new_min, float *new_max) {
    if (!bx__is_histogram_observer(obs)) return bx__error(BX_ERR_INVALID, "observer: module is not a HistogramObserver");
    return search(obs, new_min, new_max);
}

/* calculate_qparams: search, then F2 (unobserved: scale 1, zero point 0). */
void bx__histogram_qparams_into(const bx_module *obs, float *s, int32_t *z) {
    const bx__observer *ob = bx_module_impl(obs);
    float lo, hi;
    if (search(obs, &lo, &hi) != BX_OK) {
        lo = INFINITY;
        hi = -INFINITY;
    }
    bool sym = ob->o.qscheme == BX_PER_TENSOR_SYMMETRIC;
    const bx_tensor *eb = bx_module_buffer(obs, "eps");
    float eps = eb && bx_numel(eb) > 0 ? (float)bx_get(eb, 0) : ob->o.eps;
    bx_qparams_python(lo, hi, ob->qmin, ob->qmax, sym, ob->o.dtype, ob->o.custom_range, eps, s, z);
}
