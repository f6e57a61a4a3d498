/* qpool.c - layout-aware int8 modules between the quantized convs and
 * linears: QuantizedMaxPool2d and the int8 Flatten (below), plus the
 * channels-last helpers they share with qconv.c.
 *
 * QuantizedMaxPool2d: quint8 (N,C,H,W) -> quint8 (N,C,H',W'),
 * torch's quantized max_pool2d: the maximum of the integers in each window
 * (padding never wins), the same qparams in and out. Exact: dequantisation
 * is monotone, so it equals pooling the float values and quantising.
 *
 * Layouts: a channels-last input (strides of NHWC, as QuantizedConv2d
 * produces) is pooled with vector maxima over the channels and gives a
 * channels-last output; anything else is made NCHW-contiguous and pooled
 * per plane. */
#include "quant/quant_int.h"

#include <stdio.h>
#include <string.h>

typedef struct qpool_impl {
    bx_pool2d_opts o;
} qpool_impl;

static int64_t floordiv(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

/* torch's pooling_output_shape */
static int64_t qpool_out(int64_t in, int64_t k, int64_t s, int64_t p, int64_t d, bool ceil_mode) {
    int64_t out = floordiv(in + 2 * p - d * (k - 1) - 1 + (ceil_mode ? s - 1 : 0), s) + 1;
    if (ceil_mode && (out - 1) * s >= in + p) out--;
    return out;
}

bool bx__is_channels_last(const bx_tensor *x) {
    if (x->ndim != 4) return false;
    int64_t C = x->shape[1], H = x->shape[2], W = x->shape[3];
    return x->stride[1] == 1 && x->stride[3] == C && x->stride[2] == W * C && x->stride[0] == H * W * C;
}

bx_tensor *bx__channels_last_tensor(bx_step *st, int64_t N, int64_t C, int64_t H, int64_t W) {
    int64_t s[4] = {N, H, W, C};
    bx_tensor *t = bx_step_tensor(st, BX_U8, 4, s);
    if (bx_is_poison(t)) return t;
    static const int perm[4] = {0, 3, 1, 2};
    return bx_permute(st, t, perm);
}

/* 2x2 stride-2 max pool of a channels-last u8 (N,H,W,C) into (N,OH,OW,C),
 * every window inside (inlined with constant C by the caller). */
static inline __attribute__((always_inline)) void pool2x2_cl(const uint8_t *restrict xp, uint8_t *restrict yp,
                                                              int64_t N, int64_t H, int64_t W, int64_t OH,
                                                              int64_t OW, int64_t C) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                uint8_t *yr = yp + ((n * OH + oh) * OW + ow) * C;
                const uint8_t *a = xp + ((n * H + 2 * oh) * W + 2 * ow) * C, *b2 = a + C, *c2 = a + W * C,
                              *d2 = c2 + C;
                for (int64_t c = 0; c < C; c++) {
                    uint8_t m1 = a[c] > b2[c] ? a[c] : b2[c], m2 = c2[c] > d2[c] ? c2[c] : d2[c];
                    yr[c] = m1 > m2 ? m1 : m2;
                }
            }
}

// x u8 (N,C,H,W) -> y u8 (N,C,H',W')
static bx_tensor *qpool_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    const bx_pool2d_opts *o = &((const qpool_impl *)bx_module_impl(m))->o;
    char b[64];
    if (x->dtype != BX_U8 || x->ndim != 4)
        return bx_step_fail(st, BX_ERR_SHAPE, "QuantizedMaxPool2d: x %s (%s) must be u8 (N,C,H,W)",
                            bx_shape_str(x, b, sizeof b), bx_dtype_name(x->dtype));
    int64_t N = x->shape[0], C = x->shape[1], H = x->shape[2], W = x->shape[3];
    int kh = o->kernel[0], kw = o->kernel[1];
    int sh = o->stride[0] ? o->stride[0] : kh, sw = o->stride[1] ? o->stride[1] : kw;
    int ph = o->padding[0], pw = o->padding[1], dh = o->dilation[0], dw = o->dilation[1];
    int64_t OH = qpool_out(H, kh, sh, ph, dh, o->ceil_mode), OW = qpool_out(W, kw, sw, pw, dw, o->ceil_mode);
    if (OH <= 0 || OW <= 0)
        return bx_step_fail(st, BX_ERR_SHAPE, "QuantizedMaxPool2d: x %s too small for kernel (%d, %d)",
                            bx_shape_str(x, b, sizeof b), kh, kw);
    if (bx__is_channels_last(x)) {
        bx_tensor *y = bx__channels_last_tensor(st, N, C, OH, OW);
        if (bx_is_poison(y)) return y;
        const uint8_t *xp = x->data;
        uint8_t *yp = y->data;
        if (kh == 2 && kw == 2 && sh == 2 && sw == 2 && ph == 0 && pw == 0 && dh == 1 && dw == 1 && 2 * OH <= H &&
            2 * OW <= W) { /* the common 2x2 pool: every window inside */
            switch (C) { /* the common widths as constants: whole vectors, no remainder loops */
            case 16: pool2x2_cl(xp, yp, N, H, W, OH, OW, 16); break;
            case 32: pool2x2_cl(xp, yp, N, H, W, OH, OW, 32); break;
            case 64: pool2x2_cl(xp, yp, N, H, W, OH, OW, 64); break;
            default: pool2x2_cl(xp, yp, N, H, W, OH, OW, C); break;
            }
            return y;
        }
        for (int64_t n = 0; n < N; n++)
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    uint8_t *yr = yp + ((n * OH + oh) * OW + ow) * C;
                    memset(yr, 0, (size_t)C);
                    for (int i = 0; i < kh; i++) {
                        int64_t ih = oh * sh - ph + (int64_t)i * dh;
                        if (ih < 0 || ih >= H) continue;
                        for (int j = 0; j < kw; j++) {
                            int64_t iw = ow * sw - pw + (int64_t)j * dw;
                            if (iw < 0 || iw >= W) continue;
                            const uint8_t *xr = xp + ((n * H + ih) * W + iw) * C;
#pragma omp simd
                            for (int64_t c = 0; c < C; c++) yr[c] = xr[c] > yr[c] ? xr[c] : yr[c];
                        }
                    }
                }
        return y;
    }
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    int64_t ys[4] = {N, C, OH, OW};
    bx_tensor *y = bx_step_tensor(st, BX_U8, 4, ys);
    if (bx_is_poison(y)) return y;
    const uint8_t *xp = x->data;
    uint8_t *yp = y->data;
    for (int64_t p = 0; p < N * C; p++) {
        const uint8_t *xpl = xp + p * H * W;
        uint8_t *ypl = yp + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                uint8_t mx = 0;
                for (int i = 0; i < kh; i++) {
                    int64_t ih = oh * sh - ph + (int64_t)i * dh;
                    if (ih < 0 || ih >= H) continue;
                    for (int j = 0; j < kw; j++) {
                        int64_t iw = ow * sw - pw + (int64_t)j * dw;
                        if (iw >= 0 && iw < W && xpl[ih * W + iw] > mx) mx = xpl[ih * W + iw];
                    }
                }
                ypl[oh * OW + ow] = mx;
            }
    }
    return y;
}

static void qpool_repr(const bx_module *m, char *buf, size_t n) {
    const bx_pool2d_opts *o = &((const qpool_impl *)bx_module_impl(m))->o;
    int sh = o->stride[0] ? o->stride[0] : o->kernel[0], sw = o->stride[1] ? o->stride[1] : o->kernel[1];
    snprintf(buf, n, "kernel_size=(%d, %d), stride=(%d, %d), padding=(%d, %d), dilation=(%d, %d), ceil_mode=%s",
             o->kernel[0], o->kernel[1], sh, sw, o->padding[0], o->padding[1], o->dilation[0], o->dilation[1],
             o->ceil_mode ? "True" : "False");
}
static void *qpool_clone(const void *impl) { return bx__nn_dup(impl, sizeof(qpool_impl)); }

static const bx_module_type qpool_type = {"QuantizedMaxPool2d", qpool_forward, bx__free, qpool_clone, NULL,
                                          qpool_repr};

/* New quantized max pool; see quant.h. */
bx_module *bx_quantized_max_pool2d_new(const bx_pool2d_opts *o) {
    bx_pool2d_opts d = BX_POOL2D_OPTS_INIT;
    if (!o) o = &d;
    if (o->kernel[0] <= 0 || o->kernel[1] <= 0 || o->stride[0] < 0 || o->stride[1] < 0 || o->padding[0] < 0 ||
        o->padding[1] < 0 || 2 * o->padding[0] > o->kernel[0] || 2 * o->padding[1] > o->kernel[1] ||
        o->dilation[0] <= 0 || o->dilation[1] <= 0) {
        bx__error(BX_ERR_INVALID,
                  "QuantizedMaxPool2d(kernel_size=(%d, %d)): bad kernel, stride, padding (at most half the kernel) "
                  "or dilation",
                  o->kernel[0], o->kernel[1]);
        return NULL;
    }
    qpool_impl q = {*o};
    return bx__nn_new_pod(&qpool_type, &q, sizeof q);
}

bool bx__is_quantized_max_pool2d(const bx_module *m) { return m && bx_module_get_type(m) == &qpool_type; }

bx_status bx__quantized_max_pool2d_opts(const bx_module *m, bx_pool2d_opts *o) {
    if (!bx__is_quantized_max_pool2d(m)) return bx__error(BX_ERR_INVALID, "not a QuantizedMaxPool2d");
    *o = ((const qpool_impl *)bx_module_impl(m))->o;
    return BX_OK;
}

/* ---- Flatten of quantized activations ------------------------------------------ */
/* torch's Flatten on a quint8 tensor; a channels-last input (the int8 conv
 * and pool layout) is first transposed to NCHW per image with a plain loop
 * (the generic strided copy is ~20x slower for u8). Type name "Flatten" and
 * the same repr as nn's Flatten, so bx_quant_save writes it as a Flatten. */
typedef struct qflat_impl {
    int sd, ed;
} qflat_impl;

/* channels-last u8 (N,HW,C) -> (N,C,HW), per image (in cache), contiguous
 * writes (inlined with constant C by the caller). */
static inline __attribute__((always_inline)) void to_nchw(const uint8_t *restrict xp, uint8_t *restrict yp, int64_t N,
                                                           int64_t HW, int64_t C) {
    for (int64_t n = 0; n < N; n++)
        for (int64_t c = 0; c < C; c++) {
            const uint8_t *xc = xp + n * HW * C + c;
            uint8_t *yc = yp + (n * C + c) * HW;
            for (int64_t p = 0; p < HW; p++) yc[p] = xc[p * C];
        }
}

// x u8 (N,C,H,W) or any -> flatten(x, sd, ed)
static bx_tensor *qflat_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    const qflat_impl *f = bx_module_impl(m);
    if (x->dtype == BX_U8 && bx__is_channels_last(x)) {
        int64_t N = x->shape[0], C = x->shape[1], HW = x->shape[2] * x->shape[3];
        bx_tensor *y = bx_step_tensor(st, BX_U8, 4, x->shape);
        if (bx_is_poison(y)) return y;
        const uint8_t *xp = x->data;
        uint8_t *yp = y->data;
        switch (C) { /* the common widths as constants */
        case 32: to_nchw(xp, yp, N, HW, 32); break;
        case 64: to_nchw(xp, yp, N, HW, 64); break;
        default: to_nchw(xp, yp, N, HW, C); break;
        }
        x = y;
    }
    return bx_flatten(st, x, f->sd, f->ed);
}

static void qflat_repr(const bx_module *m, char *buf, size_t n) {
    const qflat_impl *f = bx_module_impl(m);
    snprintf(buf, n, "start_dim=%d, end_dim=%d", f->sd, f->ed);
}
static void *qflat_clone(const void *impl) { return bx__nn_dup(impl, sizeof(qflat_impl)); }
static const bx_module_type qflat_type = {"Flatten", qflat_forward, bx__free, qflat_clone, NULL, qflat_repr};

bx_module *bx__quant_flatten_new(int start_dim, int end_dim) {
    qflat_impl f = {start_dim, end_dim};
    return bx__nn_new_pod(&qflat_type, &f, sizeof f);
}
