/* quant_int.h - internals shared by the src/quant files. */
#ifndef BLIXT_QUANT_INT_H
#define BLIXT_QUANT_INT_H

#include "blixt/quant.h"
#include "core/core_int.h"
#include "nn/nn_int.h"

#include <math.h>

/* Observer impl (the options plus the effective range). */
typedef struct bx__observer {
    bx_observer_opts o;
    int qmin, qmax;
    bool disabled; /* bx_observer_set_enabled(false): the module forward skips observing */
} bx__observer;

/* The observers' module forward (observe unless disabled, return x). */
bx_tensor *bx__observer_forward(bx_module *m, bx_step *st, bx_tensor *x);

/* HistogramObserver (histogram.c): a new module for options already
 * checked by bx_observer_new (impl = bx__observer), the type check, and the
 * observe / qparams steps bx_observer_observe and bx__observer_qparams_into
 * dispatch to. */
bx_module *bx__histogram_observer_new(const bx_observer_opts *o, int qmin, int qmax);
bool bx__is_histogram_observer(const bx_module *m);
bx_status bx__histogram_observe(bx_module *obs, const bx_tensor *x);
void bx__histogram_qparams_into(const bx_module *obs, float *s, int32_t *z);

/* Replaces buffer `name` of m by a new owned tensor of the given dtype and
 * length n (1-D), keeping the buffers' order when `name` and every later
 * buffer are re-added through this function in order. Returns the new
 * tensor (zero-filled) or NULL (error text set). */
bx_tensor *bx__quant_replace_buffer(bx_module *m, const char *name, bx_dtype dt, int64_t n);

/* Effective range of an observer module (no checks). */
void bx__observer_range(const bx_module *obs, int *qmin, int *qmax);
bool bx__observer_per_channel(const bx_module *obs);
/* Qparams count of the observer's state and the qparams written into
 * caller arrays of that length (F3 when fused, else F2); no allocation. */
int64_t bx__observer_nqparams(const bx_module *obs);
void bx__observer_qparams_into(const bx_module *obs, bool fused, float *s, int32_t *z);
bool bx__observer_symmetric(const bx_module *obs);

/* QAT internals (qat_prepare.c) used by convert. */
void bx__qat_unhook(bx_module *m);
bool bx__is_quant_stub(const bx_module *m);
bool bx__is_dequant_stub(const bx_module *m);

/* Type checks of the int8 modules (qlinear.c). */
bool bx__is_quantize(const bx_module *m);
bool bx__is_dequantize(const bx_module *m);
bool bx__is_quantized_linear(const bx_module *m);
/* Shared by QuantizedLinear and QuantizedConv2d (`what` names the layer):
 * scales / zero points per output channel or per tensor, bias per output,
 * qparams positive scales and u8 zero points (BX_ERR_SHAPE/INVALID); then
 * the buffers weight_int8, weight_scales (f64), weight_zero_points (i64),
 * bias (f32 or absent), scale, zero_point, input_scale, input_zero_point. */
bx_status bx__qlayer_check(const char *what, const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                           const bx_tensor *bias, double in_scale, int64_t in_zp, double out_scale, int64_t out_zp);
bx_status bx__qlayer_add_buffers(bx_module *m, const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                                 const bx_tensor *bias, double in_scale, int64_t in_zp, double out_scale,
                                 int64_t out_zp);
bool bx__is_quantized_conv2d(const bx_module *m);
bx_status bx__quantized_conv2d_opts(const bx_module *m, bx_conv2d_opts *o);
/* Kernel of a QuantizedConv2d: oneDNN (default) or the plain C loop. */
void bx__quantized_conv2d_use_onednn(bx_module *m, bool on);
bool bx__is_quantized_max_pool2d(const bx_module *m);
bx_status bx__quantized_max_pool2d_opts(const bx_module *m, bx_pool2d_opts *o);
/* Flatten for int8 models (type name "Flatten"): transposes a channels-last
 * u8 input to NCHW order first. NULL on NOMEM. */
bx_module *bx__quant_flatten_new(int start_dim, int end_dim);
/* True when x is a 4-d tensor with channels-last (NHWC) strides. */
bool bx__is_channels_last(const bx_tensor *x);
/* New u8 step tensor (N,C,H,W) stored channels-last (a permuted view of an
 * (N,H,W,C) tensor). Poison on failure. */
bx_tensor *bx__channels_last_tensor(bx_step *st, int64_t N, int64_t C, int64_t H, int64_t W);
/* Qparams of an int8 module: Quantize/QuantizedLinear output, DeQuantize input. */
bool bx__qmodule_out_qparams(const bx_module *m, double *scale, int64_t *zp);

/* ---- F5 requantisation, fast and exact ------------------------------------
 * yq = clamp(nearbyint((a*sx*sw[o] + bias[o])/so) + zo, lo, 255) in double
 * (rule F5) is what the int8 layers must produce. The fast form computes
 * t = a*m[o] + c[o] in float32 (m = sx*sw/so, c = bias/so), clamps it to
 * [lo-zo, 255-zo] (integers: exact, and no rounding question left there)
 * and rounds it; its error is below tol = 4e-6*(|a*m| + |c|) + 1e-6, so
 * wherever the clamped t is farther than tol from a .5 tie the two
 * roundings agree. Rows with a lane near a tie (about one row in 100) are
 * redone with the exact double formula (bx__requant_rows with AVX-512:
 * only those lanes, bx__requant_one). a must fit in int32 (callers check
 * K*255*255 bounds). */
typedef struct bx__requant {
    float *m, *c;      /* [O]; m holds 2*O floats: m, then tol0 = 4e-6*|c| + 1e-6 */
    double *sw, *bias; /* [O], exact form */
    double sx, so;
    float zo, lo;      /* lo = zo with a fused ReLU, else 0 */
} bx__requant;

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__)
#include <immintrin.h>
#define BX__RQ_AVX512 1
/* 16 lanes of bx__requant_row_fast, the same operations in the same order
 * (a = acc - corr; m, c, tol0 the lanes' entries; lo = r->lo - zo,
 * hi = 255 - zo): writes the k lanes' bytes to y and returns the lanes near
 * a tie (those must be redone with the exact form). */
static inline __mmask16 bx__rq16(__m512i a, __m512 m, __m512 c, __m512 tol0, __m512 lo, __m512 hi, __m512 zo,
                                 uint8_t *y, __mmask16 k) {
    __m512 am = _mm512_mul_ps(_mm512_cvtepi32_ps(a), m);
    __m512 t = _mm512_add_ps(am, c);
    t = _mm512_min_ps(_mm512_max_ps(t, lo), hi);
    __m512 q = _mm512_roundscale_ps(t, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 d = _mm512_abs_ps(_mm512_sub_ps(t, q));
    __m512 tol = _mm512_fmadd_ps(_mm512_set1_ps(4e-6f), _mm512_abs_ps(am), tol0); /* the bound; its own rounding is immaterial */
    __mmask16 bad = _mm512_mask_cmp_ps_mask(k, d, _mm512_sub_ps(_mm512_set1_ps(0.5f), tol), _CMP_GT_OQ);
    _mm_mask_storeu_epi8(y, k, _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(_mm512_add_ps(q, zo))));
    return bad;
}
#endif

/* Fast row: returns true when some lane was near a tie (row must be redone
 * with bx__requant_row_exact). */
bool bx__requant_row_fast(const bx__requant *r, const int32_t *acc, const int32_t *corr, uint8_t *y, int64_t O);
/* Exact row (F5 in double). */
void bx__requant_row_exact(const bx__requant *r, const int32_t *acc, const int32_t *corr, uint8_t *y, int64_t O);
/* One exact lane (F5 in double): a = acc - corr of output channel o. */
uint8_t bx__requant_one(const bx__requant *r, int64_t a, int64_t o);
/* Requantises rows [0, rows) of acc (rows x O), fast with exact fallback. */
void bx__requant_rows(const bx__requant *r, const int32_t *acc, const int32_t *corr, uint8_t *y, int64_t rows,
                      int64_t O, bool fast);
/* Fills m/c of r from its sw/bias/sx/so (O entries; arrays allocated by the
 * caller). */
void bx__requant_init(bx__requant *r, int64_t O);

#endif
