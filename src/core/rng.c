/* rng.c - Philox-4x32-10 counter-based RNG: word i of the stream is a pure
 * function of (seed, i), so (seed, offset) is the whole state. */
#include "blixt/core.h"

#include <math.h>

static void philox(uint32_t ctr[4], uint32_t key[2]) {
    const uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u, W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
    for (int r = 0; r < 10; r++) {
        uint64_t p0 = (uint64_t)M0 * ctr[0], p1 = (uint64_t)M1 * ctr[2];
        uint32_t n0 = (uint32_t)(p1 >> 32) ^ ctr[1] ^ key[0];
        uint32_t n1 = (uint32_t)p1;
        uint32_t n2 = (uint32_t)(p0 >> 32) ^ ctr[3] ^ key[1];
        uint32_t n3 = (uint32_t)p0;
        ctr[0] = n0; ctr[1] = n1; ctr[2] = n2; ctr[3] = n3;
        key[0] += W0;
        key[1] += W1;
    }
}

void bx_rng_init(bx_rng *r, uint64_t seed) {
    r->seed = seed;
    r->offset = 0;
}

uint32_t bx_rng_u32(bx_rng *r) {
    uint64_t block = r->offset >> 2;
    uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), 0, 0};
    uint32_t key[2] = {(uint32_t)r->seed, (uint32_t)(r->seed >> 32)};
    philox(ctr, key);
    uint32_t v = ctr[r->offset & 3];
    r->offset++;
    return v;
}

float bx_rng_uniform(bx_rng *r) { return (float)(bx_rng_u32(r) >> 8) * (1.0f / 16777216.0f); }

float bx_rng_normal(bx_rng *r) {
    double u1 = ((double)bx_rng_u32(r) + 1.0) / 4294967297.0; /* (0,1] */
    double u2 = (double)bx_rng_u32(r) / 4294967296.0;
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t bx_rng_below(bx_rng *r, uint64_t n) {
    if (n <= 1) return 0;
    uint64_t x = ((uint64_t)bx_rng_u32(r) << 32) | bx_rng_u32(r);
    uint64_t lim = UINT64_MAX - UINT64_MAX % n;
    while (x >= lim) x = ((uint64_t)bx_rng_u32(r) << 32) | bx_rng_u32(r);
    return x % n;
}
