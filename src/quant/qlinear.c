/* qlinear.c - int8 inference modules: Quantize (f32 -> quint8), DeQuantize
 * (quint8 -> f32) and QuantizedLinear[ReLU] (quint8 -> quint8), rule F5:
 *
 *   xq  = clamp(nearbyint(x*(1/sx)) + zx, 0, 255)         (float32 reciprocal)
 *   acc = sum((xq-zx)*(wq-zw[c]))                         (exact integers)
 *   y   = acc*sx*sw[c] + bias                             (double)
 *   yq  = clamp(nearbyint(y/so) + zo, 0, 255); ReLU: max(yq, zo)
 *
 * sum(xq*wq) comes from a oneDNN u8s8->s32 matmul whose weights are
 * reordered once into the layout the primitive picks (format_tag_any:
 * AMX/VNNI blocking); the zero-point terms are added from precomputed row
 * sums of wq and per-row sums of xq, so the integers are exact and the
 * requantisation is the C loop of F5. A plain C reference kernel gives the
 * same integers (bx_quantized_linear_reference).
 *
 * State (buffers, the state dict bx_quant_save writes): weight_int8 i8
 * (out,in), weight_scales f64 [out|1], weight_zero_points i64 [out|1],
 * bias f32 [out] (None without), scale f64 0-d, zero_point i64 0-d,
 * input_scale f64 0-d, input_zero_point i64 0-d. The packed weights and sums
 * are a cache built at the first forward from those buffers. */
#include "backend/cpu/dnnl_int.h"
#include "quant/quant_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- Quantize / DeQuantize ------------------------------------------------------ */

typedef struct qparam_impl {
    double scale;
    int64_t zp;
} qparam_impl;

// x f32 (any) -> q u8 (same shape)
static bx_tensor *quantize_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    const qparam_impl *q = bx_module_impl(m);
    char b[64];
    if (x->dtype != BX_F32)
        return bx_step_fail(st, BX_ERR_SHAPE, "quantize: x %s must be f32, not %s", bx_shape_str(x, b, sizeof b),
                            bx_dtype_name(x->dtype));
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    bx_tensor *y = bx_step_tensor(st, BX_U8, x->ndim, x->shape);
    if (bx_is_poison(y)) return y;
    int64_t n = bx_numel(x);
    const float *xp = x->data;
    uint8_t *yp = y->data;
    float inv = 1.0f / (float)q->scale;
    int64_t zp = q->zp;
    float fz = (float)zp;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        /* zp + nearbyint(x*inv) in float, as torch's quantize_val; NaN -> 0 */
        float r = nearbyintf(xp[i] * inv) + fz;
        r = r > 0.0f ? r : 0.0f;
        r = r < 255.0f ? r : 255.0f;
        yp[i] = (uint8_t)(int32_t)r;
    }
    return y;
}

// q u8 (any) -> x f32 (same shape): (q - zp)*scale
static bx_tensor *dequantize_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    const qparam_impl *q = bx_module_impl(m);
    char b[64];
    if (x->dtype != BX_U8)
        return bx_step_fail(st, BX_ERR_SHAPE, "dequantize: x %s must be u8, not %s", bx_shape_str(x, b, sizeof b),
                            bx_dtype_name(x->dtype));
    x = bx_contiguous(st, x); /* e.g. a channels-last conv output */
    if (bx_is_poison(x)) return x;
    bx_tensor *y = bx_step_tensor(st, BX_F32, x->ndim, x->shape);
    if (bx_is_poison(y)) return y;
    int64_t n = bx_numel(x);
    float *yp = y->data;
    float s = (float)q->scale, z = (float)q->zp;
    const uint8_t *xp = x->data;
#pragma omp simd
    for (int64_t i = 0; i < n; i++) yp[i] = ((float)xp[i] - z) * s;
    return y;
}

static void qparam_repr(const bx_module *m, char *buf, size_t n) {
    const qparam_impl *q = bx_module_impl(m);
    snprintf(buf, n, "scale=%.9g, zero_point=%lld", q->scale, (long long)q->zp);
}
static void *qparam_clone(const void *impl) { return bx__nn_dup(impl, sizeof(qparam_impl)); }

static const bx_module_type quantize_type = {"Quantize", quantize_forward, bx__free, qparam_clone, NULL, qparam_repr};
static const bx_module_type dequantize_type = {"DeQuantize", dequantize_forward, bx__free, qparam_clone, NULL,
                                               qparam_repr};

static bx_module *qparam_module(const bx_module_type *t, double scale, int64_t zp) {
    if (!(scale > 0) || !isfinite(scale) || zp < 0 || zp > 255) {
        bx__error(BX_ERR_INVALID, "%s: scale %g must be positive and zero_point %lld in [0,255]", t->name, scale,
                  (long long)zp);
        return NULL;
    }
    qparam_impl q = {scale, zp};
    return bx__nn_new_pod(t, &q, sizeof q);
}

bx_module *bx_quantize_new(double scale, int64_t zero_point) { return qparam_module(&quantize_type, scale, zero_point); }
bx_module *bx_dequantize_new(double scale, int64_t zero_point) {
    return qparam_module(&dequantize_type, scale, zero_point);
}
bool bx__is_quantize(const bx_module *m) { return m && bx_module_get_type(m) == &quantize_type; }
bool bx__is_dequantize(const bx_module *m) { return m && bx_module_get_type(m) == &dequantize_type; }

/* ---- QuantizedLinear ------------------------------------------------------------------ */

typedef struct ql_impl {
    bool relu;
    bool use_dnnl;
    /* cache (rebuilt from the buffers; never cloned) */
    bool ready;
    int64_t *wsum;            /* [out] sum_k wq[c,k] */
    double *sw;               /* [out] weight scale per output (per-tensor broadcast) */
    int64_t *zw;              /* [out] weight zero point per output */
    double *bias;             /* [out] bias as double (0 without) */
    bool fast_rq;             /* every zw 0 and K small: bx__requant_rows */
    int32_t *corr;            /* [out] zx*wsum */
    bx__requant rq;
    int64_t M;                /* batch rows the primitive was made for (0 = none) */
    dnnl_primitive_t prim;
    dnnl_primitive_desc_t pd;
    dnnl_memory_desc_t src_md, wei_md, dst_md, user_wei_md;
    void *wpacked;            /* weights in wei_md layout */
} ql_impl;

static void ql_reset_cache(ql_impl *q) {
    bx__free(q->wsum);
    bx__free(q->sw);
    bx__free(q->zw);
    bx__free(q->bias);
    q->sw = NULL;
    q->zw = NULL;
    q->bias = NULL;
    bx__free(q->corr);
    bx__free(q->rq.m);
    bx__free(q->rq.c);
    q->corr = NULL;
    q->rq.m = q->rq.c = NULL;
    bx__free(q->wpacked);
    if (q->prim) dnnl_primitive_destroy(q->prim);
    if (q->pd) dnnl_primitive_desc_destroy(q->pd);
    q->wsum = NULL;
    q->wpacked = NULL;
    q->prim = NULL;
    q->pd = NULL;
    q->M = 0;
    q->ready = false;
}

static void ql_destroy(void *impl) {
    ql_reset_cache(impl);
    bx__free(impl);
}

static void *ql_clone(const void *impl) {
    ql_impl *q = bx__calloc(sizeof *q);
    if (!q) return NULL;
    q->relu = ((const ql_impl *)impl)->relu;
    q->use_dnnl = ((const ql_impl *)impl)->use_dnnl;
    return q;
}

static void ql_repr(const bx_module *m, char *buf, size_t n) {
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    const bx_tensor *s = bx_module_buffer(m, "scale"), *z = bx_module_buffer(m, "zero_point");
    snprintf(buf, n, "in_features=%lld, out_features=%lld, scale=%.9g, zero_point=%lld",
             w ? (long long)w->shape[1] : 0LL, w ? (long long)w->shape[0] : 0LL, s ? bx_get(s, 0) : 0.0,
             z ? (long long)bx_get(z, 0) : 0LL);
}

static bx_tensor *ql_forward(bx_module *m, bx_step *st, bx_tensor *x);

static const bx_module_type ql_type = {"QuantizedLinear", ql_forward, ql_destroy, ql_clone, NULL, ql_repr};
static const bx_module_type qlr_type = {"QuantizedLinearReLU", ql_forward, ql_destroy, ql_clone, NULL, ql_repr};

bool bx__is_quantized_linear(const bx_module *m) {
    return m && (bx_module_get_type(m) == &ql_type || bx_module_get_type(m) == &qlr_type);
}

bool bx__qmodule_out_qparams(const bx_module *m, double *scale, int64_t *zp) {
    if (bx__is_quantize(m) || bx__is_dequantize(m)) {
        const qparam_impl *q = bx_module_impl(m);
        *scale = q->scale;
        *zp = q->zp;
        return true;
    }
    if (bx__is_quantized_linear(m) || bx__is_quantized_conv2d(m)) {
        *scale = bx_get(bx_module_buffer(m, "scale"), 0);
        *zp = (int64_t)bx_get(bx_module_buffer(m, "zero_point"), 0);
        return true;
    }
    return false;
}

bool bx_quant_module_qparams(const bx_module *m, double *scale, int64_t *zero_point) {
    return bx__qmodule_out_qparams(m, scale, zero_point);
}

static bx_tensor *scalar(bx_dtype dt, double v) {
    bx_tensor *t = bx_tensor_new(dt, 0, NULL);
    if (t) bx_set(t, 0, v);
    return t;
}
static bx_tensor *convert_1d(const bx_tensor *src, bx_dtype dt) {
    int64_t n = bx_numel(src);
    bx_tensor *t = bx_tensor_new(dt, 1, &n);
    if (t && bx_copy(t, src) != BX_OK) {
        bx_tensor_free(t);
        return NULL;
    }
    return t;
}

/* The checks and buffers QuantizedLinear and QuantizedConv2d share; see quant_int.h. */
bx_status bx__qlayer_check(const char *what, const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                           const bx_tensor *bias, double in_scale, int64_t in_zp, double out_scale, int64_t out_zp) {
    char b1[64], b2[64], b3[64];
    int64_t O = w_int8->shape[0], ns = bx_numel(w_scale);
    if ((ns != O && ns != 1) || bx_numel(w_zp) != ns || (bias && bx_numel(bias) != O))
        return bx__error(BX_ERR_SHAPE, "%s: weight %s, scales %s, zero points %s do not fit", what,
                         bx_shape_str(w_int8, b1, sizeof b1), bx_shape_str(w_scale, b2, sizeof b2),
                         bx_shape_str(w_zp, b3, sizeof b3));
    if (!(in_scale > 0) || !(out_scale > 0) || in_zp < 0 || in_zp > 255 || out_zp < 0 || out_zp > 255)
        return bx__error(BX_ERR_INVALID, "%s: bad qparams (in %g/%lld, out %g/%lld)", what, in_scale,
                         (long long)in_zp, out_scale, (long long)out_zp);
    return BX_OK;
}

bx_status bx__qlayer_add_buffers(bx_module *m, const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                                 const bx_tensor *bias, double in_scale, int64_t in_zp, double out_scale,
                                 int64_t out_zp) {
    bx_status s = bx_module_add_buffer(m, "weight_int8", bx_tensor_clone(w_int8), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "weight_scales", convert_1d(w_scale, BX_F64), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "weight_zero_points", convert_1d(w_zp, BX_I64), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "bias", bias ? convert_1d(bias, BX_F32) : NULL, true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "scale", scalar(BX_F64, out_scale), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "zero_point", scalar(BX_I64, (double)out_zp), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "input_scale", scalar(BX_F64, in_scale), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "input_zero_point", scalar(BX_I64, (double)in_zp), true);
    if (s == BX_OK && !bx_module_buffer(m, "input_zero_point")) s = BX_ERR_NOMEM;
    return s;
}

/* New quantized linear; see quant.h. */
bx_module *bx_quantized_linear_new(const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                                   const bx_tensor *bias, double in_scale, int64_t in_zp, double out_scale,
                                   int64_t out_zp, bool relu) {
    char b1[64];
    if (!w_int8 || !w_scale || !w_zp) {
        bx__error(BX_ERR_INVALID, "QuantizedLinear: weight, scales and zero points are required");
        return NULL;
    }
    if (w_int8->dtype != BX_I8 || w_int8->ndim != 2) {
        bx__error(BX_ERR_SHAPE, "QuantizedLinear: weight %s must be i8 (out,in)", bx_shape_str(w_int8, b1, sizeof b1));
        return NULL;
    }
    if (bx__qlayer_check("QuantizedLinear", w_int8, w_scale, w_zp, bias, in_scale, in_zp, out_scale, out_zp) !=
        BX_OK)
        return NULL;
    ql_impl *q = bx__calloc(sizeof *q);
    if (!q) return NULL;
    q->relu = relu;
    q->use_dnnl = true;
    bx_module *m = bx_module_new(relu ? &qlr_type : &ql_type, q);
    if (!m) return NULL;
    if (bx__qlayer_add_buffers(m, w_int8, w_scale, w_zp, bias, in_scale, in_zp, out_scale, out_zp) != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}

void bx_quantized_linear_use_onednn(bx_module *ql, bool on) {
    if (bx__is_quantized_conv2d(ql)) bx__quantized_conv2d_use_onednn(ql, on);
    if (!bx__is_quantized_linear(ql)) return;
    ql_impl *q = bx_module_impl(ql);
    ql_reset_cache(q);
    q->use_dnnl = on;
}

/* Row sums of the weights and per-output scale / zero point / bias arrays
 * (built once from the buffers). */
static bx_status ql_prepare(bx_module *m, ql_impl *q) {
    if (q->ready) return BX_OK;
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    const bx_tensor *ws = bx_module_buffer(m, "weight_scales"), *wz = bx_module_buffer(m, "weight_zero_points");
    const bx_tensor *bias = bx_module_buffer(m, "bias");
    int64_t O = w->shape[0], K = w->shape[1];
    size_t n = (size_t)(O ? O : 1);
    q->wsum = bx__malloc(sizeof(int64_t) * n);
    q->sw = bx__malloc(sizeof(double) * n);
    q->zw = bx__malloc(sizeof(int64_t) * n);
    q->bias = bx__malloc(sizeof(double) * n);
    q->corr = bx__malloc(sizeof(int32_t) * n);
    q->rq.m = bx__malloc(sizeof(float) * 2 * n); /* m, then tol */
    q->rq.c = bx__malloc(sizeof(float) * n);
    if (!q->wsum || !q->sw || !q->zw || !q->bias || !q->corr || !q->rq.m || !q->rq.c)
        return bx__error(BX_ERR_NOMEM, "QuantizedLinear: out of memory");
    const int64_t zx = (int64_t)bx_get(bx_module_buffer(m, "input_zero_point"), 0);
    bool zw_zero = true;
    const int8_t *wp = w->data;
    bool per_channel = bx_numel(ws) != 1;
    for (int64_t o = 0; o < O; o++) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; k++) s += wp[o * K + k];
        q->wsum[o] = s;
        q->sw[o] = bx_get(ws, per_channel ? o : 0);
        q->zw[o] = (int64_t)bx_get(wz, per_channel ? o : 0);
        q->bias[o] = bias ? bx_get(bias, o) : 0.0;
        q->corr[o] = (int32_t)(zx * s); /* used only when K is small (below) */
        if (q->zw[o] != 0) zw_zero = false;
    }
    q->rq.sw = q->sw;
    q->rq.bias = q->bias;
    q->rq.sx = bx_get(bx_module_buffer(m, "input_scale"), 0);
    q->rq.so = bx_get(bx_module_buffer(m, "scale"), 0);
    q->rq.zo = (float)bx_get(bx_module_buffer(m, "zero_point"), 0);
    q->rq.lo = q->relu ? q->rq.zo : 0.0f;
    bx__requant_init(&q->rq, O);
    q->fast_rq = zw_zero && K < 30000; /* |acc - zx*wsum| <= 2*255*128*K fits int32 */
    q->ready = true;
    return BX_OK;
}

/* oneDNN u8 (M,K) x s8 (K,O) -> s32 (M,O), primitive and packed weights for M. */
static bx_status ql_dnnl_setup(bx_step *st, bx_module *m, ql_impl *q, int64_t M) {
    if (q->prim && q->M == M) return BX_OK;
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    int64_t O = w->shape[0], K = w->shape[1];
    if (q->prim) dnnl_primitive_destroy(q->prim);
    if (q->pd) dnnl_primitive_desc_destroy(q->pd);
    q->prim = NULL;
    q->pd = NULL;
    q->M = 0;
    dnnl_dims_t sd = {M, K}, wd = {K, O}, dd = {M, O};
    bx_status s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&q->src_md, 2, sd, dnnl_u8, dnnl_ab), "qlinear src");
    dnnl_memory_desc_t wany;
    if (s == BX_OK) s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&wany, 2, wd, dnnl_s8, dnnl_format_tag_any), "qlinear w");
    if (s == BX_OK)
        s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&q->user_wei_md, 2, wd, dnnl_s8, dnnl_ba), "qlinear w");
    if (s == BX_OK) s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&q->dst_md, 2, dd, dnnl_s32, dnnl_ab), "qlinear dst");
    dnnl_matmul_desc_t md;
    if (s == BX_OK) s = bx__dnnl_check(dnnl_matmul_desc_init(&md, &q->src_md, &wany, NULL, &q->dst_md), "qlinear matmul");
    if (s == BX_OK) s = bx__dnnl_primitive(&md, NULL, &q->pd, &q->prim, "qlinear matmul");
    if (s != BX_OK) return s;
    const dnnl_memory_desc_t *wq = dnnl_primitive_desc_query_md(q->pd, dnnl_query_weights_md, 0);
    bool same_layout = q->wpacked && dnnl_memory_desc_equal(wq, &q->wei_md);
    if (!same_layout) {
        q->wei_md = *wq;
        bx__free(q->wpacked);
        size_t bytes = dnnl_memory_desc_get_size(&q->wei_md);
        q->wpacked = bx__malloc(bytes ? bytes : 1);
        if (!q->wpacked) return bx__error(BX_ERR_NOMEM, "QuantizedLinear: out of memory");
        dnnl_primitive_t r = NULL;
        s = bx__dnnl_reorder_new(&q->user_wei_md, &q->wei_md, false, &r);
        if (s != BX_OK) return s;
        if (r) {
            s = bx__dnnl_reorder_run(st, r, &q->user_wei_md, w->data, &q->wei_md, q->wpacked, "qlinear weight reorder");
            dnnl_primitive_destroy(r);
            if (s != BX_OK) return s;
        } else {
            memcpy(q->wpacked, w->data, bytes);
        }
    }
    q->M = M;
    return BX_OK;
}

/* acc[M,O] = sum_k xq[m,k]*wq[o,k] (plain C). */
static void ql_gemm_ref(const uint8_t *x, const int8_t *w, int32_t *acc, int64_t M, int64_t K, int64_t O) {
    for (int64_t i = 0; i < M; i++)
        for (int64_t o = 0; o < O; o++) {
            int32_t s = 0;
            const uint8_t *xr = x + i * K;
            const int8_t *wr = w + o * K;
#pragma omp simd reduction(+ : s)
            for (int64_t k = 0; k < K; k++) s += (int32_t)xr[k] * (int32_t)wr[k];
            acc[i * O + o] = s;
        }
}

/* Zero-point corrections and F5 requantisation of acc into y, vectorised
 * over outputs: a = acc - zx*wsum - zw*xsum + K*zx*zw (exact integers),
 * v = a*sx*sw + bias (double, F5's order), yq = clamp(nearbyint(v/so) + zo). */
static void ql_requant(const bx_module *m, const ql_impl *q, const uint8_t *x, const int32_t *acc, uint8_t *y,
                       int64_t M, int64_t K, int64_t O) {
    const double sx = bx_get(bx_module_buffer(m, "input_scale"), 0);
    const int64_t zx = (int64_t)bx_get(bx_module_buffer(m, "input_zero_point"), 0);
    const double so = bx_get(bx_module_buffer(m, "scale"), 0);
    const double zo = bx_get(bx_module_buffer(m, "zero_point"), 0);
    const double lo = q->relu ? zo : 0.0;
    const int64_t *wsum = q->wsum, *zw = q->zw;
    const double *sw = q->sw, *bias = q->bias;
    for (int64_t i = 0; i < M; i++) {
        const uint8_t *xr = x + i * K;
        int64_t xsum = 0;
#pragma omp simd reduction(+ : xsum)
        for (int64_t k = 0; k < K; k++) xsum += xr[k];
        const int32_t *ar = acc + i * O;
        uint8_t *yr = y + i * O;
#pragma omp simd
        for (int64_t o = 0; o < O; o++) {
            int64_t a = (int64_t)ar[o] - zx * wsum[o] - zw[o] * xsum + K * zx * zw[o];
            double v = (double)a * sx * sw[o] + bias[o];
            double r = nearbyint(v / so) + zo;
            r = r < lo ? lo : r;
            r = r > 255.0 ? 255.0 : r;
            yr[o] = (uint8_t)(int32_t)r;
        }
    }
}

// x u8 (..., in) -> y u8 (..., out)
static bx_tensor *ql_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    ql_impl *q = bx_module_impl(m);
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    char b1[64], b2[64];
    if (!w) return bx_step_fail(st, BX_ERR_STATE, "QuantizedLinear: weight_int8 missing");
    int64_t O = w->shape[0], K = w->shape[1];
    if (x->dtype != BX_U8 || x->ndim < 1 || x->shape[x->ndim - 1] != K)
        return bx_step_fail(st, BX_ERR_SHAPE, "QuantizedLinear: x %s (%s) does not fit weight %s (needs u8 (..., %lld))",
                            bx_shape_str(x, b1, sizeof b1), bx_dtype_name(x->dtype), bx_shape_str(w, b2, sizeof b2),
                            (long long)K);
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    int64_t M = K ? bx_numel(x) / K : 0;
    int64_t yshape[BX_MAX_DIMS];
    memcpy(yshape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    yshape[x->ndim - 1] = O;
    bx_tensor *y = bx_step_tensor(st, BX_U8, x->ndim, yshape);
    if (bx_is_poison(y)) return y;
    if (M == 0 || O == 0) return y;
    bx_status s = ql_prepare(m, q);
    if (s != BX_OK) return bx_step_fail(st, s, "QuantizedLinear: %s", bx_errmsg());
    int32_t *acc = bx_step_alloc(st, sizeof(int32_t) * (size_t)(M * O));
    if (!acc) return bx__poison(st);
    bool done = false;
    if (q->use_dnnl && K > 0) {
        s = ql_dnnl_setup(st, m, q, M);
        if (s == BX_OK) {
            bx__dnnl_args a;
            bx__dnnl_args_init(&a);
            s = bx__dnnl_args_add(&a, DNNL_ARG_SRC, &q->src_md, x->data);
            if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_WEIGHTS, &q->wei_md, q->wpacked);
            if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_DST, &q->dst_md, acc);
            if (s == BX_OK) s = bx__dnnl_args_run(st, &a, q->prim, "QuantizedLinear matmul");
            else bx__dnnl_args_release(&a);
            if (s != BX_OK) return bx__poison(st);
            done = true;
        } else {
            return bx_step_fail(st, s, "QuantizedLinear: %s", bx_errmsg());
        }
    }
    if (!done) ql_gemm_ref(x->data, w->data, acc, M, K, O);
    if (q->fast_rq) bx__requant_rows(&q->rq, acc, q->corr, y->data, M, O, true);
    else ql_requant(m, q, x->data, acc, y->data, M, K, O);
    return y;
}

/* Reference kernel into a caller tensor; see quant.h. */
bx_status bx_quantized_linear_reference(const bx_module *ql, const bx_tensor *x, bx_tensor *y) {
    if (!bx__is_quantized_linear(ql)) return bx__error(BX_ERR_INVALID, "QuantizedLinear reference: not a quantized linear");
    const bx_tensor *w = bx_module_buffer(ql, "weight_int8");
    int64_t O = w->shape[0], K = w->shape[1];
    if (!x || !y || x->dtype != BX_U8 || y->dtype != BX_U8 || !bx_is_contiguous(x) || !bx_is_contiguous(y) ||
        x->shape[x->ndim - 1] != K || bx_numel(y) != bx_numel(x) / K * O)
        return bx__error(BX_ERR_SHAPE, "QuantizedLinear reference: x/y must be contiguous u8 (M,%lld)/(M,%lld)",
                         (long long)K, (long long)O);
    int64_t M = bx_numel(x) / K;
    /* plain loops, independent of the cache: recompute everything */
    const bx_tensor *ws = bx_module_buffer(ql, "weight_scales"), *wz = bx_module_buffer(ql, "weight_zero_points");
    const bx_tensor *bias = bx_module_buffer(ql, "bias");
    double sx = bx_get(bx_module_buffer(ql, "input_scale"), 0), so = bx_get(bx_module_buffer(ql, "scale"), 0);
    int64_t zx = (int64_t)bx_get(bx_module_buffer(ql, "input_zero_point"), 0);
    int64_t zo = (int64_t)bx_get(bx_module_buffer(ql, "zero_point"), 0);
    bool relu = ((const ql_impl *)bx_module_impl(ql))->relu;
    const uint8_t *xp = x->data;
    const int8_t *wp = w->data;
    uint8_t *yp = y->data;
    for (int64_t i = 0; i < M; i++)
        for (int64_t o = 0; o < O; o++) {
            int64_t c = bx_numel(ws) == 1 ? 0 : o;
            int64_t zw = (int64_t)bx_get(wz, c);
            int64_t acc = 0;
            for (int64_t k = 0; k < K; k++) acc += ((int64_t)xp[i * K + k] - zx) * ((int64_t)wp[o * K + k] - zw);
            double v = (double)acc * sx * bx_get(ws, c) + (bias ? bx_get(bias, o) : 0.0);
            int64_t yq = (int64_t)nearbyint(v / so) + zo;
            yq = yq < 0 ? 0 : (yq > 255 ? 255 : yq);
            if (relu && yq < zo) yq = zo;
            yp[i * O + o] = (uint8_t)yq;
        }
    return BX_OK;
}
