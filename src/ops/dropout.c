/* dropout.c - inverted dropout: y = x * mask / (1-p), mask ~ Bernoulli(1-p).
 *
 * The mask comes from the step's RNG (bx_step_rng): element i uses word
 * offset+i of the Philox stream, kept when uniform(word) < 1-p, exactly what
 * calling bx_rng_uniform once per element in order would give; the offset
 * then advances by the element count. Because the stream is counter-based,
 * chunks are drawn in parallel and the mask is still bit-identical for any
 * thread count. */
#include "autograd/autograd_int.h"
#include "blixt/ops.h"

#include <string.h>

/* Philox-4x32-10, the same function as src/core/rng.c (word i of a stream =
 * lane i&3 of the block i>>2 under key = seed). Duplicated here to draw four
 * words per block instead of one; test_dropout checks it against bx_rng_u32. */
static void philox_block(uint64_t block, uint64_t seed, uint32_t out[4]) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    uint32_t c0 = (uint32_t)block, c1 = (uint32_t)(block >> 32), c2 = 0, c3 = 0;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)M0 * c0, p1 = (uint64_t)M1 * c2;
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
        uint32_t n3 = (uint32_t)p0;
        c0 = n0; c1 = n1; c2 = n2; c3 = n3;
        k0 += W0;
        k1 += W1;
    }
    out[0] = c0; out[1] = c1; out[2] = c2; out[3] = c3;
}

typedef struct dropout_ctx {
    const uint8_t *mask; /* NULL when p == 1 (everything dropped) */
    float scale;
} dropout_ctx;

// backward: gx += gy * mask * scale
static void dropout_backward(bx_step *st, bx_node *n) {
    const dropout_ctx *c = n->ctx;
    bx_tensor *gxt = bx__grad(st, n->in[0]);
    if (!gxt || !c->mask) return;
    float *gx = gxt->data;
    const float *gy = n->out->grad->data;
    const uint8_t *m = c->mask;
    const float s = c->scale;
    const int64_t len = bx_numel(n->out);
#pragma omp parallel for simd if (len > 32768) schedule(static)
    for (int64_t i = 0; i < len; i++) gx[i] += m[i] ? gy[i] * s : 0.0f;
}

// x (any) -> y (same shape)
bx_tensor *bx_dropout(bx_step *st, bx_tensor *x, float p, bool training) {
    if (!bx__ok1(st, "dropout", x)) return bx__poison(st);
    if (x->dtype != BX_F32) return bx_step_fail(st, BX_ERR_SHAPE, "dropout: x must be f32, got %s", bx_dtype_name(x->dtype));
    if (!(p >= 0.0f && p <= 1.0f))
        return bx_step_fail(st, BX_ERR_INVALID, "dropout: probability p must be in [0, 1], got %g", (double)p);
    if (!training || p == 0.0f) return x;
    x = bx_contiguous(st, x);
    if (bx_is_poison(x)) return x;
    bx_tensor *y = bx__empty_like(st, x);
    if (bx_is_poison(y)) return y;
    const int64_t len = bx_numel(x);
    float *yd = y->data;
    const float *xd = x->data;
    dropout_ctx dc = {NULL, 0.0f};
    if (p == 1.0f) {
        memset(yd, 0, sizeof(float) * (size_t)len);
    } else {
        uint8_t *mask = bx_step_alloc(st, (size_t)BX_MAX(len, 1));
        if (!mask) return bx__poison(st);
        bx_rng *r = bx_step_rng(st);
        const uint64_t seed = r->seed, off = r->offset;
        const float keep = 1.0f - p;
        dc.scale = (float)(1.0 / (1.0 - (double)p));
        dc.mask = mask;
        const float s = dc.scale;
        enum { CHUNK = 4096 };
        const int64_t nchunks = (len + CHUNK - 1) / CHUNK;
#pragma omp parallel for if (len > 32768) schedule(static)
        for (int64_t ch = 0; ch < nchunks; ch++) {
            const int64_t i0 = ch * CHUNK, i1 = BX_MIN(len, i0 + CHUNK);
            uint32_t words[4];
            uint64_t cur = UINT64_MAX;
            for (int64_t i = i0; i < i1; i++) {
                const uint64_t wi = off + (uint64_t)i;
                if ((wi >> 2) != cur) {
                    cur = wi >> 2;
                    philox_block(cur, seed, words);
                }
                const float u = (float)(words[wi & 3] >> 8) * (1.0f / 16777216.0f);
                const uint8_t k = u < keep;
                mask[i] = k;
                yd[i] = k ? xd[i] * s : 0.0f;
            }
        }
        r->offset = off + (uint64_t)len;
    }
    dropout_ctx *c;
    bx__record(st, "dropout", dropout_backward, y, 1, &x, sizeof *c, (void **)&c);
    if (c) *c = dc;
    return y;
}
