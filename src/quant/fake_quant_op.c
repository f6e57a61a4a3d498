/* fake_quant_op.c - fake_quantize_per_tensor_affine and
 * fake_quantize_per_channel_affine on the step (golden rule F4):
 *
 *   inv = 1.0f/scale                      (float32 reciprocal, no division)
 *   q   = (int64)(zp + nearbyint(x*inv))  (half to even)
 *   y   = (clamp(q, qmin, qmax) - zp)*scale
 *   gx += gy where qmin <= q <= qmax      (straight-through, clamp mask)
 *
 * The forward keeps the mask (one byte per element, arena) for backward. */
#include "ops/ops_int.h"
#include "quant/quant_int.h"

#include <math.h>

typedef struct fq_ctx {
    uint8_t *mask;
} fq_ctx;

// x (any) -> y (same shape); gx += gy * mask
static void fq_backward(bx_step *st, bx_node *n) {
    fq_ctx *ctx = n->ctx;
    bx_tensor *gx = bx__grad(st, n->in[0]);
    if (!gx) return;
    const bx_tensor *gy = n->out->grad;
    int64_t cnt = bx_numel(gy);
    float *g = gx->data;
    const float *d = gy->data;
    const uint8_t *m = ctx->mask;
#pragma omp simd
    for (int64_t i = 0; i < cnt; i++) g[i] += m[i] ? d[i] : 0.0f;
}

static inline float fq1(float x, float scale, float inv, int64_t zp, int64_t qmin, int64_t qmax, uint8_t *m) {
    float f = (float)zp + nearbyintf(x * inv);
    /* out-of-range and NaN values: saturate instead of an undefined cast */
    int64_t q = f >= -9.0e18f && f <= 9.0e18f ? (int64_t)f : (f > 0.0f ? INT64_MAX : INT64_MIN);
    *m = (uint8_t)(q >= qmin && q <= qmax);
    int64_t c = q < qmin ? qmin : (q > qmax ? qmax : q);
    return (float)(c - zp) * scale;
}

/* Shared driver: per-tensor when scale_t is NULL (s0/z0 used), else
 * per-channel along axis. */
static bx_tensor *fake_quant(bx_step *st, const char *op, bx_tensor *x, float s0, int64_t z0,
                             const bx_tensor *scale_t, const bx_tensor *zp_t, int axis, int qmin, int qmax) {
    if (!bx__ok1(st, op, x)) return bx__poison(st);
    char b[64];
    if (x->dtype != BX_F32)
        return bx_step_fail(st, BX_ERR_SHAPE, "%s: x %s must be f32, not %s", op, bx_shape_str(x, b, sizeof b),
                            bx_dtype_name(x->dtype));
    if (qmin > qmax) return bx_step_fail(st, BX_ERR_INVALID, "%s: quant_min %d > quant_max %d", op, qmin, qmax);
    int64_t C = 1, inner = 1;
    if (scale_t) {
        int ax = axis < 0 ? axis + x->ndim : axis;
        if (ax < 0 || ax >= x->ndim)
            return bx_step_fail(st, BX_ERR_SHAPE, "%s: axis %d out of range for x %s", op, axis,
                                bx_shape_str(x, b, sizeof b));
        C = x->shape[ax];
        for (int d = ax + 1; d < x->ndim; d++) inner *= x->shape[d];
        char b2[64], b3[64];
        if (scale_t->dtype != BX_F32 || bx_numel(scale_t) != C || !zp_t || bx_numel(zp_t) != C ||
            (zp_t->dtype != BX_I32 && zp_t->dtype != BX_I64) || !bx_is_contiguous(scale_t) || !bx_is_contiguous(zp_t))
            return bx_step_fail(st, BX_ERR_SHAPE,
                                "%s: x %s along axis %d needs contiguous f32 scale and i32/i64 zero_point of %lld "
                                "entries, got "
                                "scale %s and zero_point %s",
                                op, bx_shape_str(x, b, sizeof b), ax, (long long)C,
                                bx_shape_str(scale_t, b2, sizeof b2),
                                zp_t ? bx_shape_str(zp_t, b3, sizeof b3) : "NULL");
    } else if (!(s0 > 0.0f) || !isfinite(s0)) {
        return bx_step_fail(st, BX_ERR_INVALID, "%s: scale %g must be positive and finite", op, (double)s0);
    }
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    int64_t n = bx_numel(x);
    uint8_t *mask = bx_step_alloc(st, (size_t)(n ? n : 1));
    if (!mask) return bx__poison(st);
    const float *xp = x->data;
    float *yp = y->data;
    if (!scale_t) {
        float inv = 1.0f / s0;
        for (int64_t i = 0; i < n; i++) yp[i] = fq1(xp[i], s0, inv, z0, qmin, qmax, &mask[i]);
    } else {
        int64_t outer = C && inner ? n / (C * inner) : 0;
        for (int64_t c = 0; c < C; c++)
            if (!(((const float *)scale_t->data)[c] > 0.0f))
                return bx_step_fail(st, BX_ERR_INVALID, "%s: scale[%lld] = %g must be positive", op, (long long)c,
                                    (double)((const float *)scale_t->data)[c]);
        for (int64_t a = 0; a < outer; a++)
            for (int64_t c = 0; c < C; c++) {
                float s = ((const float *)scale_t->data)[c], inv = 1.0f / s;
                int64_t z = zp_t->dtype == BX_I32 ? ((const int32_t *)zp_t->data)[c] : ((const int64_t *)zp_t->data)[c];
                int64_t base = (a * C + c) * inner;
                for (int64_t i = base; i < base + inner; i++) yp[i] = fq1(xp[i], s, inv, z, qmin, qmax, &mask[i]);
            }
    }
    void *ctxp = NULL;
    if (bx__record(st, op, fq_backward, y, 1, &x, sizeof(fq_ctx), &ctxp)) ((fq_ctx *)ctxp)->mask = mask;
    return y;
}

/* Per-tensor fake quantization (F4); see quant.h. */
bx_tensor *bx_fake_quantize(bx_step *st, bx_tensor *x, float scale, int32_t zp, int qmin, int qmax) {
    return fake_quant(st, "fake_quantize", x, scale, zp, NULL, NULL, 0, qmin, qmax);
}

/* Per-channel fake quantization (F4) along axis; see quant.h. */
bx_tensor *bx_fake_quantize_per_channel(bx_step *st, bx_tensor *x, const bx_tensor *scale, const bx_tensor *zp,
                                        int axis, int qmin, int qmax) {
    if (!scale)
        return bx_step_fail(st, BX_ERR_INVALID, "fake_quantize_per_channel: scale is NULL");
    return fake_quant(st, "fake_quantize_per_channel", x, 0.0f, 0, scale, zp, axis, qmin, qmax);
}
