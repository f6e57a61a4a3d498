/* qconv.c - QuantizedConv2d[ReLU]: quint8 (N,C,H,W) -> quint8 (N,O,H',W'),
 * groups 1. The input is unfolded (im2col) into u8 rows (N*H'*W', C*kh*kw)
 * with padding filled by the input zero point (the quantized real 0), run
 * through an inner QuantizedLinear with the weights viewed as
 * (O, C*kh*kw) - same oneDNN u8s8->s32 matmul and F5 requantisation - and
 * the (N,H',W',O) result is written back as NCHW.
 *
 * State (buffers): weight_int8 i8 (O,C,kh,kw), weight_scales, weight_zero_points,
 * bias, scale, zero_point, input_scale, input_zero_point, as QuantizedLinear. */
#include "quant/quant_int.h"

#include <stdio.h>
#include <string.h>

typedef struct qconv_impl {
    bx_conv2d_opts o;
    bool relu;
    bx_module *inner; /* QuantizedLinear on the (O, C*kh*kw) view; owned */
} qconv_impl;

static void qconv_destroy(void *impl) {
    qconv_impl *q = impl;
    bx_module_free(q->inner);
    bx__free(q);
}

static void *qconv_clone(const void *impl) {
    const qconv_impl *src = impl;
    qconv_impl *q = bx__malloc(sizeof *q);
    if (!q) return NULL;
    *q = *src;
    q->inner = bx_module_clone(src->inner);
    if (!q->inner) {
        bx__free(q);
        return NULL;
    }
    return q;
}

static void qconv_repr(const bx_module *m, char *buf, size_t n) {
    const qconv_impl *q = bx_module_impl(m);
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    snprintf(buf, n, "%lld, %lld, kernel_size=(%lld, %lld), stride=(%d, %d), padding=(%d, %d), dilation=(%d, %d)",
             w ? (long long)w->shape[1] : 0LL, w ? (long long)w->shape[0] : 0LL, w ? (long long)w->shape[2] : 0LL,
             w ? (long long)w->shape[3] : 0LL, q->o.stride[0], q->o.stride[1], q->o.padding[0], q->o.padding[1],
             q->o.dilation[0], q->o.dilation[1]);
}

// x u8 (N,C,H,W) -> y u8 (N,O,H',W')
static bx_tensor *qconv_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    const qconv_impl *q = bx_module_impl(m);
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    char b1[64], b2[64];
    if (!w) return bx_step_fail(st, BX_ERR_STATE, "QuantizedConv2d: weight_int8 missing");
    int64_t O = w->shape[0], C = w->shape[1], KH = w->shape[2], KW = w->shape[3];
    if (x->dtype != BX_U8 || x->ndim != 4 || x->shape[1] != C)
        return bx_step_fail(st, BX_ERR_SHAPE, "QuantizedConv2d: x %s (%s) does not fit weight %s (needs u8 (N,%lld,H,W))",
                            bx_shape_str(x, b1, sizeof b1), bx_dtype_name(x->dtype), bx_shape_str(w, b2, sizeof b2),
                            (long long)C);
    int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
    int sh = q->o.stride[0], sw = q->o.stride[1], ph = q->o.padding[0], pw = q->o.padding[1];
    int dh = q->o.dilation[0], dw = q->o.dilation[1];
    int64_t OH = (H + 2 * ph - dh * (KH - 1) - 1) / sh + 1, OW = (W + 2 * pw - dw * (KW - 1) - 1) / sw + 1;
    if (OH <= 0 || OW <= 0)
        return bx_step_fail(st, BX_ERR_SHAPE, "QuantizedConv2d: x %s too small for weight %s",
                            bx_shape_str(x, b1, sizeof b1), bx_shape_str(w, b2, sizeof b2));
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    int64_t K = C * KH * KW, rows = N * OH * OW;
    int64_t cs[2] = {rows, K};
    bx_tensor *cols = bx_step_tensor(st, BX_U8, 2, cs);
    if (bx_is_poison(cols)) return cols;
    uint8_t zx = (uint8_t)bx_get(bx_module_buffer(m, "input_zero_point"), 0);
    const uint8_t *xp = x->data;
    uint8_t *cp = cols->data;
    for (int64_t n = 0; n < N; n++)
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                uint8_t *row = cp + ((n * OH + oh) * OW + ow) * K;
                for (int64_t c = 0; c < C; c++)
                    for (int64_t i = 0; i < KH; i++) {
                        int64_t ih = oh * sh - ph + i * dh;
                        for (int64_t j = 0; j < KW; j++) {
                            int64_t iw = ow * sw - pw + j * dw;
                            bool in = ih >= 0 && ih < H && iw >= 0 && iw < W;
                            row[(c * KH + i) * KW + j] = in ? xp[((n * C + c) * H + ih) * W + iw] : zx;
                        }
                    }
            }
    bx_tensor *yl = bx_module_forward(q->inner, st, cols); /* (rows, O) */
    if (bx_is_poison(yl)) return yl;
    int64_t ys[4] = {N, O, OH, OW};
    bx_tensor *y = bx_step_tensor(st, BX_U8, 4, ys);
    if (bx_is_poison(y)) return y;
    const uint8_t *lp = yl->data;
    uint8_t *yp = y->data;
    int64_t hw = OH * OW;
    for (int64_t n = 0; n < N; n++)
        for (int64_t p = 0; p < hw; p++)
            for (int64_t o = 0; o < O; o++) yp[(n * O + o) * hw + p] = lp[(n * hw + p) * O + o];
    return y;
}

static const bx_module_type qconv_type = {"QuantizedConv2d", qconv_forward, qconv_destroy, qconv_clone, NULL,
                                          qconv_repr};
static const bx_module_type qconvr_type = {"QuantizedConv2dReLU", qconv_forward, qconv_destroy, qconv_clone, NULL,
                                           qconv_repr};

bool bx__is_quantized_conv2d(const bx_module *m) {
    return m && (bx_module_get_type(m) == &qconv_type || bx_module_get_type(m) == &qconvr_type);
}

bx_status bx__quantized_conv2d_opts(const bx_module *m, bx_conv2d_opts *o) {
    if (!bx__is_quantized_conv2d(m)) return bx__error(BX_ERR_INVALID, "not a QuantizedConv2d");
    *o = ((const qconv_impl *)bx_module_impl(m))->o;
    return BX_OK;
}

static bx_tensor *scalar(bx_dtype dt, double v) {
    bx_tensor *t = bx_tensor_new(dt, 0, NULL);
    if (t) bx_set(t, 0, v);
    return t;
}

/* New quantized conv; see quant.h. */
bx_module *bx_quantized_conv2d_new(const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                                   const bx_tensor *bias, const bx_conv2d_opts *o, double in_scale, int64_t in_zp,
                                   double out_scale, int64_t out_zp, bool relu) {
    char b1[64];
    bx_conv2d_opts dflt = BX_CONV2D_OPTS_INIT;
    if (!o) o = &dflt;
    if (!w_int8 || w_int8->dtype != BX_I8 || w_int8->ndim != 4) {
        bx__error(BX_ERR_SHAPE, "QuantizedConv2d: weight %s must be i8 (O,C,kh,kw)",
                  w_int8 ? bx_shape_str(w_int8, b1, sizeof b1) : "NULL");
        return NULL;
    }
    if (o->groups != 1 || o->padding_same || o->stride[0] < 1 || o->stride[1] < 1 || o->dilation[0] < 1 ||
        o->dilation[1] < 1 || o->padding[0] < 0 || o->padding[1] < 0) {
        bx__error(BX_ERR_UNSUPPORTED, "QuantizedConv2d: groups %d / padding='same' / bad stride, padding or dilation "
                  "(groups 1 and explicit padding only)", o->groups);
        return NULL;
    }
    int64_t O = w_int8->shape[0], K = bx_numel(w_int8) / (O ? O : 1);
    int64_t ls[2] = {O, K};
    bx_tensor *w2 = bx_tensor_new(BX_I8, 2, ls);
    if (!w2) return NULL;
    memcpy(w2->data, w_int8->data, (size_t)bx_numel(w_int8));
    bx_module *inner = bx_quantized_linear_new(w2, w_scale, w_zp, bias, in_scale, in_zp, out_scale, out_zp, relu);
    bx_tensor_free(w2);
    if (!inner) return NULL;
    qconv_impl *q = bx__malloc(sizeof *q);
    if (!q) {
        bx_module_free(inner);
        return NULL;
    }
    q->o = *o;
    q->relu = relu;
    q->inner = inner;
    bx_module *m = bx_module_new(relu ? &qconvr_type : &qconv_type, q);
    if (!m) return NULL;
    /* the public state: the inner linear's buffers with the 4-D weight */
    bx_status s = bx_module_add_buffer(m, "weight_int8", bx_tensor_clone(w_int8), true);
    static const char *const names[] = {"weight_scales", "weight_zero_points", "bias"};
    for (int i = 0; i < 3 && s == BX_OK; i++) {
        const bx_tensor *t = bx_module_buffer(inner, names[i]);
        s = bx_module_add_buffer(m, names[i], t ? bx_tensor_clone(t) : NULL, true);
    }
    if (s == BX_OK) s = bx_module_add_buffer(m, "scale", scalar(BX_F64, out_scale), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "zero_point", scalar(BX_I64, (double)out_zp), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "input_scale", scalar(BX_F64, in_scale), true);
    if (s == BX_OK) s = bx_module_add_buffer(m, "input_zero_point", scalar(BX_I64, (double)in_zp), true);
    if (s != BX_OK || !bx_module_buffer(m, "input_zero_point")) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}
