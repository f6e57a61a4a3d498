/* qconv.c - QuantizedConv2d[ReLU]: quint8 (N,C,H,W) -> quint8 (N,O,H',W'),
 * any groups, explicit padding or padding='same' (rule F5, as qlinear.c):
 *
 *   acc = sum((xq-zx)*(wq-zw[o]))  over the window (padding = zx, the real 0)
 *   yq  = clamp(nearbyint((acc*sx*sw[o] + bias[o])/so) + zo, 0 | zo (ReLU), 255)
 *
 * Fast path (every weight zero point 0, the symmetric weights of every preset
 * qconfig): the input is copied once into a channels-last u8 buffer padded
 * with zx (skipped when it is already channels-last and unpadded), a cached
 * oneDNN u8s8->s32 convolution (nhwc in and out, weights reordered once into
 * the layout it picks, VNNI) gives sum(xq*wq), acc = that - zx*sum(wq[o]),
 * and the F5 requantisation (with ReLU) writes the output channels-last:
 * quantized activations flow to the next int8 layer (QuantizedMaxPool2d,
 * QuantizedConv2d) without any reorder. Otherwise, or with
 * bx_quantized_linear_use_onednn(m, false), a plain C loop computes the same
 * integers.
 *
 * State (buffers): weight_int8 i8 (O,C/groups,kh,kw), weight_scales,
 * weight_zero_points, bias, scale, zero_point, input_scale,
 * input_zero_point, as QuantizedLinear. */
#include "backend/cpu/dnnl_int.h"
#include "quant/quant_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#if defined(BX__RQ_AVX512) && defined(__AVX512VNNI__)
#define BX__QCONV_DIRECT 1
#endif

/* One oneDNN convolution for an input of n images (Hp, Wp already padded)
 * and its packed weights. */
typedef struct qconv_prim {
    int64_t N, H, W; /* 0 = empty */
    dnnl_primitive_t prim;
    dnnl_primitive_desc_t pd;
    dnnl_memory_desc_t src_md, wei_md, dst_md;
    void *wpacked;
} qconv_prim;

static void prim_clear(qconv_prim *e) {
    bx__free(e->wpacked);
    if (e->prim) dnnl_primitive_destroy(e->prim);
    if (e->pd) dnnl_primitive_desc_destroy(e->pd);
    e->wpacked = NULL;
    e->prim = NULL;
    e->pd = NULL;
    e->N = e->H = e->W = 0;
}

typedef struct qconv_impl {
    bx_conv2d_opts o;
    bool relu;
    bool use_dnnl;
    /* cache (rebuilt from the buffers; never cloned) */
    bool ready, zw_zero, fast_rq;
    int64_t *wsum; /* [O] sum of wq[o] */
    double *sw, *bias;
    int64_t *zw;
    int32_t *corr;    /* [O] zx*wsum[o] */
    bx__requant rq;   /* m, c: [O] */
    int8_t *w4;       /* direct kernel (see qconv_direct): [KH][O][4] s8, or NULL */
    qconv_prim e[2]; /* the batch chunk and the last, shorter chunk */
    int last;        /* entry used most recently */
} qconv_impl;

static void qconv_reset(qconv_impl *q) {
    bx__free(q->wsum);
    bx__free(q->sw);
    bx__free(q->bias);
    bx__free(q->zw);
    bx__free(q->corr);
    bx__free(q->w4);
    q->w4 = NULL;
    bx__free(q->rq.m);
    bx__free(q->rq.c);
    q->corr = NULL;
    q->rq.m = q->rq.c = NULL;
    prim_clear(&q->e[0]);
    prim_clear(&q->e[1]);
    q->wsum = q->zw = NULL;
    q->sw = q->bias = NULL;
    q->ready = false;
}

static void qconv_destroy(void *impl) {
    qconv_reset(impl);
    bx__free(impl);
}

static void *qconv_clone(const void *impl) {
    const qconv_impl *src = impl;
    qconv_impl *q = bx__calloc(sizeof *q);
    if (!q) return NULL;
    q->o = src->o;
    q->relu = src->relu;
    q->use_dnnl = src->use_dnnl;
    return q;
}

static void qconv_repr(const bx_module *m, char *buf, size_t n) {
    const qconv_impl *q = bx_module_impl(m);
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    char pad[48];
    if (q->o.padding_same) snprintf(pad, sizeof pad, "padding=same");
    else snprintf(pad, sizeof pad, "padding=(%d, %d)", q->o.padding[0], q->o.padding[1]);
    snprintf(buf, n, "%lld, %lld, kernel_size=(%lld, %lld), stride=(%d, %d), %s, dilation=(%d, %d), groups=%d",
             w ? (long long)w->shape[1] * q->o.groups : 0LL, w ? (long long)w->shape[0] : 0LL,
             w ? (long long)w->shape[2] : 0LL, w ? (long long)w->shape[3] : 0LL, q->o.stride[0], q->o.stride[1], pad,
             q->o.dilation[0], q->o.dilation[1], q->o.groups);
}

void bx__quantized_conv2d_use_onednn(bx_module *m, bool on) {
    qconv_impl *q = bx_module_impl(m);
    qconv_reset(q);
    q->use_dnnl = on;
}

/* Per-output weight sums, scales, zero points and biases (once). */
static bx_status qconv_prepare(bx_module *m, qconv_impl *q) {
    if (q->ready) return BX_OK;
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    const bx_tensor *ws = bx_module_buffer(m, "weight_scales"), *wz = bx_module_buffer(m, "weight_zero_points");
    const bx_tensor *bias = bx_module_buffer(m, "bias");
    int64_t O = w->shape[0], K = O ? bx_numel(w) / O : 0;
    size_t n = (size_t)(O ? O : 1);
    q->wsum = bx__malloc(sizeof(int64_t) * n);
    q->zw = bx__malloc(sizeof(int64_t) * n);
    q->sw = bx__malloc(sizeof(double) * n);
    q->bias = bx__malloc(sizeof(double) * n);
    q->corr = bx__malloc(sizeof(int32_t) * n);
    q->rq.m = bx__malloc(sizeof(float) * 2 * n); /* m, then tol */
    q->rq.c = bx__malloc(sizeof(float) * n);
    if (!q->wsum || !q->zw || !q->sw || !q->bias || !q->corr || !q->rq.m || !q->rq.c)
        return bx__error(BX_ERR_NOMEM, "QuantizedConv2d: out of memory");
    int64_t zx = (int64_t)bx_get(bx_module_buffer(m, "input_zero_point"), 0);
    const int8_t *wp = w->data;
    bool per_channel = bx_numel(ws) != 1;
    q->zw_zero = true;
    for (int64_t o = 0; o < O; o++) {
        int64_t s = 0;
        for (int64_t k = 0; k < K; k++) s += wp[o * K + k];
        q->wsum[o] = s;
        q->sw[o] = bx_get(ws, per_channel ? o : 0);
        q->zw[o] = (int64_t)bx_get(wz, per_channel ? o : 0);
        q->bias[o] = bias ? bx_get(bias, o) : 0.0;
        if (q->zw[o] != 0) q->zw_zero = false;
        q->corr[o] = (int32_t)(zx * s); /* |zx*s| <= 255*127*K: checked below before use */
    }
    q->rq.sw = q->sw;
    q->rq.bias = q->bias;
    q->rq.sx = bx_get(bx_module_buffer(m, "input_scale"), 0);
    q->rq.so = bx_get(bx_module_buffer(m, "scale"), 0);
    q->rq.zo = (float)bx_get(bx_module_buffer(m, "zero_point"), 0);
    q->rq.lo = q->relu ? q->rq.zo : 0.0f;
    bx__requant_init(&q->rq, O);
    /* the int32 accumulator minus zx*wsum must not overflow: |.| <= 2*255*128*K */
    q->fast_rq = K < 30000;
#ifdef BX__QCONV_DIRECT
    /* the direct kernel: one input channel, rows of at most 4 taps, whole
     * 16-lane blocks of outputs (conv1 of an image model) */
    int64_t KH = w->shape[2], KW = w->shape[3];
    if (q->use_dnnl && q->zw_zero && q->fast_rq && q->o.groups == 1 && w->shape[1] == 1 && KW <= 4 &&
        q->o.dilation[1] == 1 && O % 16 == 0 && O <= 64 && KH <= 8) {
        q->w4 = bx__calloc((size_t)(KH * O * 4));
        if (!q->w4) return bx__error(BX_ERR_NOMEM, "QuantizedConv2d: out of memory");
        for (int64_t i = 0; i < KH; i++)
            for (int64_t o = 0; o < O; o++)
                for (int64_t j = 0; j < KW; j++) q->w4[(i * O + o) * 4 + j] = wp[(o * KH + i) * KW + j];
    }
#endif
    q->ready = true;
    return BX_OK;
}

/* Padding before/after along one dim (torch's 'same': the extra on the end). */
static void pads(const qconv_impl *q, int dim, int64_t k, int64_t *lo, int64_t *hi) {
    if (q->o.padding_same) {
        int64_t total = (int64_t)q->o.dilation[dim] * (k - 1);
        *lo = total / 2;
        *hi = total - *lo;
    } else {
        *lo = *hi = q->o.padding[dim];
    }
}

/* Cached oneDNN conv for N images (Hp, Wp already padded), nhwc u8 ->
 * nhwc s32; two entries (full chunks and the tail), the older one rebuilt. */
static bx_status qconv_dnnl_get(bx_step *st, bx_module *m, qconv_impl *q, int64_t N, int64_t Hp, int64_t Wp,
                                int64_t OH, int64_t OW, qconv_prim **out) {
    for (int i = 0; i < 2; i++)
        if (q->e[i].prim && q->e[i].N == N && q->e[i].H == Hp && q->e[i].W == Wp) {
            q->last = i;
            *out = &q->e[i];
            return BX_OK;
        }
    int slot = q->e[0].prim == NULL ? 0 : q->e[1].prim == NULL ? 1 : 1 - q->last;
    qconv_prim *e = &q->e[slot];
    prim_clear(e);
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    int64_t O = w->shape[0], Cg = w->shape[1], KH = w->shape[2], KW = w->shape[3], G = q->o.groups;
    dnnl_dims_t sd = {N, Cg * G, Hp, Wp}, dd = {N, O, OH, OW};
    dnnl_dims_t strides = {q->o.stride[0], q->o.stride[1]}, dil = {q->o.dilation[0] - 1, q->o.dilation[1] - 1};
    dnnl_dims_t pz = {0, 0};
    dnnl_memory_desc_t wany, user_w;
    bx_status s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&e->src_md, 4, sd, dnnl_u8, dnnl_nhwc), "qconv src");
    if (s == BX_OK) s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&e->dst_md, 4, dd, dnnl_s32, dnnl_nhwc), "qconv dst");
    if (G == 1) {
        dnnl_dims_t wd = {O, Cg, KH, KW};
        if (s == BX_OK) s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&wany, 4, wd, dnnl_s8, dnnl_format_tag_any), "qconv w");
        if (s == BX_OK) s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&user_w, 4, wd, dnnl_s8, dnnl_oihw), "qconv w");
    } else {
        dnnl_dims_t wd = {G, O / G, Cg, KH, KW};
        if (s == BX_OK) s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&wany, 5, wd, dnnl_s8, dnnl_format_tag_any), "qconv w");
        if (s == BX_OK) s = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&user_w, 5, wd, dnnl_s8, dnnl_goihw), "qconv w");
    }
    dnnl_convolution_desc_t cd;
    if (s == BX_OK)
        s = bx__dnnl_check(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_inference,
                                                                     dnnl_convolution_direct, &e->src_md, &wany, NULL,
                                                                     &e->dst_md, strides, dil, pz, pz),
                           "qconv descriptor");
    if (s == BX_OK) s = bx__dnnl_primitive(&cd, NULL, &e->pd, &e->prim, "qconv");
    if (s != BX_OK) {
        prim_clear(e);
        return s;
    }
    e->wei_md = *dnnl_primitive_desc_query_md(e->pd, dnnl_query_weights_md, 0);
    size_t bytes = dnnl_memory_desc_get_size(&e->wei_md);
    e->wpacked = bx__malloc(bytes ? bytes : 1);
    if (!e->wpacked) {
        prim_clear(e);
        return bx__error(BX_ERR_NOMEM, "QuantizedConv2d: out of memory");
    }
    dnnl_primitive_t r = NULL;
    s = bx__dnnl_reorder_new(&user_w, &e->wei_md, false, &r);
    if (s == BX_OK && r) s = bx__dnnl_reorder_run(st, r, &user_w, w->data, &e->wei_md, e->wpacked, "qconv weight reorder");
    else if (s == BX_OK) memcpy(e->wpacked, w->data, bytes);
    if (r) dnnl_primitive_destroy(r);
    if (s != BX_OK) {
        prim_clear(e);
        return s;
    }
    e->N = N;
    e->H = Hp;
    e->W = Wp;
    q->last = slot;
    *out = e;
    return BX_OK;
}

/* Exact plain-C kernel (any weight zero points): y NCHW-contiguous. */
static void qconv_ref(const qconv_impl *q, const bx_module *m, const uint8_t *x, uint8_t *y, int64_t N, int64_t C,
                      int64_t H, int64_t W, int64_t OH, int64_t OW, int64_t ph, int64_t pw) {
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    int64_t O = w->shape[0], Cg = w->shape[1], KH = w->shape[2], KW = w->shape[3], G = q->o.groups, Og = O / G;
    const int8_t *wp = w->data;
    double sx = bx_get(bx_module_buffer(m, "input_scale"), 0), so = bx_get(bx_module_buffer(m, "scale"), 0);
    int64_t zx = (int64_t)bx_get(bx_module_buffer(m, "input_zero_point"), 0);
    int64_t zo = (int64_t)bx_get(bx_module_buffer(m, "zero_point"), 0);
    int sh = q->o.stride[0], sw = q->o.stride[1], dh = q->o.dilation[0], dw = q->o.dilation[1];
    for (int64_t n = 0; n < N; n++)
        for (int64_t o = 0; o < O; o++) {
            int64_t g = o / Og;
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    int64_t acc = 0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t i = 0; i < KH; i++) {
                            int64_t ih = oh * sh - ph + i * dh;
                            for (int64_t j = 0; j < KW; j++) {
                                int64_t iw = ow * sw - pw + j * dw;
                                int64_t xv = ih >= 0 && ih < H && iw >= 0 && iw < W
                                                 ? x[((n * C + g * Cg + c) * H + ih) * W + iw]
                                                 : zx;
                                acc += (xv - zx) * ((int64_t)wp[((o * Cg + c) * KH + i) * KW + j] - q->zw[o]);
                            }
                        }
                    double v = (double)acc * sx * q->sw[o] + q->bias[o];
                    int64_t yq = (int64_t)nearbyint(v / so) + zo;
                    yq = yq < 0 ? 0 : (yq > 255 ? 255 : yq);
                    if (q->relu && yq < zo) yq = zo;
                    y[((n * O + o) * OH + oh) * OW + ow] = (uint8_t)yq;
                }
        }
}

#ifdef BX__QCONV_DIRECT
/* Direct kernel for one input channel (q->w4 set): src is the zx-padded
 * input (N,Hp,Wp) with >= 4 readable bytes after it; for each output pixel
 * and kernel row i, the 4 bytes at (oh*sh + i*dh, ow*sw) are broadcast and
 * multiplied with the row's taps (zero weights past KW, so the extra bytes
 * add nothing) by VNNI dot products into O/16 int32 vectors, which are
 * requantised in registers (bx__rq16; lanes near a tie exactly) and written
 * channels-last. Gives the integers of the oneDNN path. */
/* One image of qconv_direct: src (Hp,Wp) -> y (OH,OW,O). */
static void qconv_direct_image(const qconv_impl *q, const uint8_t *src, uint8_t *y, int64_t Wp, int64_t KH,
                               int64_t O, int64_t OH, int64_t OW) {
    const bx__requant *r = &q->rq;
    const int64_t sh = q->o.stride[0], sw = q->o.stride[1], dh = q->o.dilation[0];
    const int nb = (int)(O / 16);
    __m512i wv[8][4], cv[4];
    __m512 mv[4], crv[4], tv[4];
    for (int b = 0; b < nb; b++) {
        for (int64_t i = 0; i < KH; i++) wv[i][b] = _mm512_loadu_si512(q->w4 + (i * O + 16 * b) * 4);
        cv[b] = _mm512_loadu_si512(q->corr + 16 * b);
        mv[b] = _mm512_loadu_ps(r->m + 16 * b);
        crv[b] = _mm512_loadu_ps(r->c + 16 * b);
        tv[b] = _mm512_loadu_ps(r->m + O + 16 * b);
    }
    const __m512 zo = _mm512_set1_ps(r->zo), lo = _mm512_set1_ps(r->lo - r->zo), hi = _mm512_set1_ps(255.0f - r->zo);
    for (int64_t oh = 0; oh < OH; oh++) {
        const uint8_t *row = src + oh * sh * Wp;
        uint8_t *yr = y + oh * OW * O;
        for (int64_t ow = 0; ow < OW; ow++) {
            const uint8_t *px = row + ow * sw;
            __m512i a[4];
            for (int b = 0; b < nb; b++) a[b] = _mm512_sub_epi32(_mm512_setzero_si512(), cv[b]);
            for (int64_t i = 0; i < KH; i++) {
                int32_t v;
                memcpy(&v, px + i * dh * Wp, 4);
                __m512i xb = _mm512_set1_epi32(v);
                for (int b = 0; b < nb; b++) a[b] = _mm512_dpbusd_epi32(a[b], xb, wv[i][b]);
            }
            for (int b = 0; b < nb; b++) {
                unsigned bad = bx__rq16(a[b], mv[b], crv[b], tv[b], lo, hi, zo, yr + ow * O + 16 * b, 0xFFFF);
                if (bad) { /* the lanes near a tie, exactly */
                    int32_t tmp[16];
                    _mm512_storeu_si512(tmp, a[b]);
                    for (; bad; bad &= bad - 1) {
                        int l = __builtin_ctz(bad);
                        yr[ow * O + 16 * b + l] = bx__requant_one(r, tmp[l], 16 * b + l);
                    }
                }
            }
        }
    }
}

static void qconv_direct(const qconv_impl *q, const uint8_t *src, uint8_t *y, int64_t N, int64_t Hp, int64_t Wp,
                         int64_t KH, int64_t O, int64_t OH, int64_t OW) {
#pragma omp parallel for schedule(static) if (N > 1 && N * OH * OW * O > 262144)
    for (int64_t n = 0; n < N; n++) qconv_direct_image(q, src + n * Hp * Wp, y + n * OH * OW * O, Wp, KH, O, OH, OW);
}
#endif

// x u8 (N,C,H,W) -> y u8 (N,O,H',W') (channels-last on the oneDNN path)
static bx_tensor *qconv_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (bx_is_poison(x)) return x;
    qconv_impl *q = bx_module_impl(m);
    const bx_tensor *w = bx_module_buffer(m, "weight_int8");
    char b1[64], b2[64];
    if (!w) return bx_step_fail(st, BX_ERR_STATE, "QuantizedConv2d: weight_int8 missing");
    int64_t O = w->shape[0], C = w->shape[1] * q->o.groups, KH = w->shape[2], KW = w->shape[3];
    if (x->dtype != BX_U8 || x->ndim != 4 || x->shape[1] != C)
        return bx_step_fail(st, BX_ERR_SHAPE, "QuantizedConv2d: x %s (%s) does not fit weight %s (needs u8 (N,%lld,H,W))",
                            bx_shape_str(x, b1, sizeof b1), bx_dtype_name(x->dtype), bx_shape_str(w, b2, sizeof b2),
                            (long long)C);
    int64_t N = x->shape[0], H = x->shape[2], W = x->shape[3];
    int64_t pt, pb, pl, pr;
    pads(q, 0, KH, &pt, &pb);
    pads(q, 1, KW, &pl, &pr);
    int sh = q->o.stride[0], sw = q->o.stride[1], dh = q->o.dilation[0], dw = q->o.dilation[1];
    int64_t Hp = H + pt + pb, Wp = W + pl + pr;
    int64_t OH = (Hp - dh * (KH - 1) - 1) / sh + 1, OW = (Wp - dw * (KW - 1) - 1) / sw + 1;
    if (Hp - dh * (KH - 1) - 1 < 0 || Wp - dw * (KW - 1) - 1 < 0)
        return bx_step_fail(st, BX_ERR_SHAPE, "QuantizedConv2d: x %s too small for weight %s",
                            bx_shape_str(x, b1, sizeof b1), bx_shape_str(w, b2, sizeof b2));
    bx_status s = qconv_prepare(m, q);
    if (s != BX_OK) return bx_step_fail(st, s, "QuantizedConv2d: %s", bx_errmsg());
    if (N == 0 || O == 0) {
        int64_t ys[4] = {N, O, OH, OW};
        return bx_step_tensor(st, BX_U8, 4, ys);
    }
    const int64_t zx = (int64_t)bx_get(bx_module_buffer(m, "input_zero_point"), 0);
    if (!q->use_dnnl || !q->zw_zero) {
        x = bx_contiguous(st, x);
        if (bx_is_poison(x)) return x;
        int64_t ys[4] = {N, O, OH, OW};
        bx_tensor *y = bx_step_tensor(st, BX_U8, 4, ys);
        if (bx_is_poison(y)) return y;
        qconv_ref(q, m, x->data, y->data, N, C, H, W, OH, OW, pt, pl);
        return y;
    }
    /* the input as padded channels-last u8 */
    const uint8_t *src;
    bool padded = pt || pb || pl || pr;
    if (!padded && bx__is_channels_last(x)) {
        src = x->data;
    } else {
        uint8_t *buf = bx_step_alloc(st, (size_t)(N * Hp * Wp * C) + 64);
        if (!buf) return bx__poison(st);
        src = buf;
        memset(buf + N * Hp * Wp * C, 0, 64); /* read (times zero weights) by qconv_direct */
        if (padded) memset(buf, (int)zx, (size_t)(N * Hp * Wp * C));
        const uint8_t *xp = x->data;
        if (bx__is_channels_last(x)) {
            for (int64_t n = 0; n < N; n++)
                for (int64_t h = 0; h < H; h++)
                    memcpy(buf + ((n * Hp + h + pt) * Wp + pl) * C, xp + (n * H + h) * W * C, (size_t)(W * C));
        } else {
            x = bx_contiguous(st, x);
            if (bx_is_poison(x)) return x;
            xp = x->data;
            if (C == 1) { /* NCHW = NHWC */
                for (int64_t n = 0; n < N; n++)
                    for (int64_t h = 0; h < H; h++)
                        memcpy(buf + (n * Hp + h + pt) * Wp + pl, xp + (n * H + h) * W, (size_t)W);
            } else {
                for (int64_t n = 0; n < N; n++)
                    for (int64_t c = 0; c < C; c++)
                        for (int64_t h = 0; h < H; h++) {
                            const uint8_t *xr = xp + ((n * C + c) * H + h) * W;
                            uint8_t *br = buf + ((n * Hp + h + pt) * Wp + pl) * C + c;
                            for (int64_t ww = 0; ww < W; ww++) br[ww * C] = xr[ww];
                        }
            }
        }
    }
#ifdef BX__QCONV_DIRECT
    if (q->w4) {
        if (src == x->data) { /* reads past the end: give it slack */
            uint8_t *buf = bx_step_alloc(st, (size_t)(N * Hp * Wp * C) + 64);
            if (!buf) return bx__poison(st);
            memcpy(buf, src, (size_t)(N * Hp * Wp * C));
            memset(buf + N * Hp * Wp * C, 0, 64);
            src = buf;
        }
        bx_tensor *y = bx__channels_last_tensor(st, N, O, OH, OW);
        if (bx_is_poison(y)) return y;
        qconv_direct(q, src, y->data, N, Hp, Wp, KH, O, OH, OW);
        return y;
    }
#endif
    /* images in chunks whose int32 accumulators stay in cache (~512 KB):
     * the conv writes them and the requantisation reads them back at once */
    int64_t per_img = OH * OW * O;
    int64_t chunk = (int64_t)(512 * 1024 / 4) / (per_img ? per_img : 1);
    chunk = chunk < 1 ? 1 : (chunk > N ? N : chunk);
    int32_t *acc = bx_step_alloc(st, sizeof(int32_t) * (size_t)(chunk * per_img));
    if (!acc) return bx__poison(st);
    bx_tensor *y = bx__channels_last_tensor(st, N, O, OH, OW);
    if (bx_is_poison(y)) return y;
    uint8_t *yp = y->data;
    for (int64_t n0 = 0; n0 < N; n0 += chunk) {
        int64_t nc = N - n0 < chunk ? N - n0 : chunk;
        qconv_prim *e = NULL;
        s = qconv_dnnl_get(st, m, q, nc, Hp, Wp, OH, OW, &e);
        if (s != BX_OK) return bx_step_fail(st, s, "QuantizedConv2d: %s", bx_errmsg());
        bx__dnnl_args a;
        bx__dnnl_args_init(&a);
        s = bx__dnnl_args_add(&a, DNNL_ARG_SRC, &e->src_md, (void *)(src + n0 * Hp * Wp * C));
        if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_WEIGHTS, &e->wei_md, e->wpacked);
        if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_DST, &e->dst_md, acc);
        if (s == BX_OK) s = bx__dnnl_args_run(st, &a, e->prim, "QuantizedConv2d");
        else bx__dnnl_args_release(&a);
        if (s != BX_OK) return bx__poison(st);
        bx__requant_rows(&q->rq, acc, q->corr, yp + n0 * per_img, nc * OH * OW, O, q->fast_rq);
    }
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

/* New quantized conv; see quant.h. */
bx_module *bx_quantized_conv2d_new(const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                                   const bx_tensor *bias, const bx_conv2d_opts *o, double in_scale, int64_t in_zp,
                                   double out_scale, int64_t out_zp, bool relu) {
    char b1[64];
    bx_conv2d_opts dflt = BX_CONV2D_OPTS_INIT;
    if (!o) o = &dflt;
    if (!w_int8 || w_int8->dtype != BX_I8 || w_int8->ndim != 4 || !w_scale || !w_zp) {
        bx__error(BX_ERR_SHAPE, "QuantizedConv2d: weight %s must be i8 (O,C/groups,kh,kw) with scales and zero points",
                  w_int8 ? bx_shape_str(w_int8, b1, sizeof b1) : "NULL");
        return NULL;
    }
    int64_t O = w_int8->shape[0];
    if (o->groups < 1 || O % o->groups != 0 || o->stride[0] < 1 || o->stride[1] < 1 || o->dilation[0] < 1 ||
        o->dilation[1] < 1 || o->padding[0] < 0 || o->padding[1] < 0 ||
        (o->padding_same && (o->stride[0] != 1 || o->stride[1] != 1))) {
        bx__error(BX_ERR_INVALID,
                  "QuantizedConv2d: weight %s with groups %d, stride (%d, %d), padding (%d, %d)%s, dilation (%d, %d): "
                  "groups must divide the output channels, padding='same' needs stride 1",
                  bx_shape_str(w_int8, b1, sizeof b1), o->groups, o->stride[0], o->stride[1], o->padding[0],
                  o->padding[1], o->padding_same ? " same" : "", o->dilation[0], o->dilation[1]);
        return NULL;
    }
    if (bx__qlayer_check("QuantizedConv2d", w_int8, w_scale, w_zp, bias, in_scale, in_zp, out_scale, out_zp) !=
        BX_OK)
        return NULL;
    qconv_impl *q = bx__calloc(sizeof *q);
    if (!q) return NULL;
    q->o = *o;
    q->relu = relu;
    q->use_dnnl = true;
    bx_module *m = bx_module_new(relu ? &qconvr_type : &qconv_type, q);
    if (!m) return NULL;
    if (bx__qlayer_add_buffers(m, w_int8, w_scale, w_zp, bias, in_scale, in_zp, out_scale, out_zp) != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}
