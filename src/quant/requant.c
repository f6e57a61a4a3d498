/* requant.c - F5 requantisation of int32 accumulators to quint8, fast and
 * exact (see bx__requant in quant_int.h): a float32 pass that flags lanes
 * near a rounding tie, redone in double (with AVX-512: 16 lanes at a time,
 * only the flagged lanes redone; else the scalar row form). */
#include "quant/quant_int.h"

#include <math.h>

bool bx__requant_row_fast(const bx__requant *r, const int32_t *restrict acc, const int32_t *restrict corr,
                          uint8_t *restrict y, int64_t O) {
    int bad = 0;
    const float *restrict m = r->m, *restrict c = r->c, *restrict tol0 = r->m + O;
    const float zo = r->zo, lo = r->lo - r->zo, hi = 255.0f - r->zo;
    /* auto-vectorised (-O3); no branches: & instead of && */
    for (int64_t o = 0; o < O; o++) {
        float am = (float)(acc[o] - corr[o]) * m[o];
        float t = am + c[o];
        t = t < lo ? lo : t; /* clamped to integers: exact */
        t = t > hi ? hi : t;
        float q = nearbyintf(t);
        float d = t - q;
        d = d < 0.0f ? -d : d;
        float aam = am < 0.0f ? -am : am;
        bad |= d > 0.5f - (4e-6f * aam + tol0[o]);
        y[o] = (uint8_t)(int32_t)(q + zo);
    }
    return bad != 0;
}

void bx__requant_row_exact(const bx__requant *r, const int32_t *acc, const int32_t *corr, uint8_t *y, int64_t O) {
    for (int64_t o = 0; o < O; o++) {
        double v = (double)((int64_t)acc[o] - corr[o]) * r->sx * r->sw[o] + r->bias[o];
        double q = nearbyint(v / r->so) + (double)r->zo;
        q = q < (double)r->lo ? (double)r->lo : q;
        q = q > 255.0 ? 255.0 : q;
        y[o] = (uint8_t)(int32_t)q;
    }
}

uint8_t bx__requant_one(const bx__requant *r, int64_t a, int64_t o) {
    double v = (double)a * r->sx * r->sw[o] + r->bias[o];
    double q = nearbyint(v / r->so) + (double)r->zo;
    q = q < (double)r->lo ? (double)r->lo : q;
    q = q > 255.0 ? 255.0 : q;
    return (uint8_t)(int32_t)q;
}

void bx__requant_rows(const bx__requant *r, const int32_t *acc, const int32_t *corr, uint8_t *y, int64_t rows,
                      int64_t O, bool fast) {
#ifdef BX__RQ_AVX512
    if (fast) { /* bx__requant_row_fast 16 lanes at a time (the tail masked) */
        const __m512 zo = _mm512_set1_ps(r->zo), lo = _mm512_set1_ps(r->lo - r->zo), hi = _mm512_set1_ps(255.0f - r->zo);
        if (O % 16 == 0 && O <= 64) { /* whole blocks: the channel constants stay in registers */
            const int nb = (int)(O / 16);
            __m512i cv[4];
            __m512 mv[4], crv[4], tv[4];
            for (int b = 0; b < nb; b++) {
                cv[b] = _mm512_loadu_si512(corr + 16 * b);
                mv[b] = _mm512_loadu_ps(r->m + 16 * b);
                crv[b] = _mm512_loadu_ps(r->c + 16 * b);
                tv[b] = _mm512_loadu_ps(r->m + O + 16 * b);
            }
            for (int64_t p = 0; p < rows; p++) {
                const int32_t *ap = acc + p * O;
                uint8_t *yp = y + p * O;
                for (int b = 0; b < nb; b++) {
                    __m512i a = _mm512_sub_epi32(_mm512_loadu_si512(ap + 16 * b), cv[b]);
                    unsigned bad = bx__rq16(a, mv[b], crv[b], tv[b], lo, hi, zo, yp + 16 * b, 0xFFFF);
                    for (; bad; bad &= bad - 1) { /* the lanes near a tie, exactly */
                        int64_t l = 16 * b + __builtin_ctz(bad);
                        yp[l] = bx__requant_one(r, (int64_t)ap[l] - corr[l], l);
                    }
                }
            }
            return;
        }
        for (int64_t p = 0; p < rows; p++) {
            const int32_t *ap = acc + p * O;
            uint8_t *yp = y + p * O;
            for (int64_t o = 0; o < O; o += 16) {
                __mmask16 k = O - o >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (O - o)) - 1u);
                __m512i a = _mm512_sub_epi32(_mm512_maskz_loadu_epi32(k, ap + o), _mm512_maskz_loadu_epi32(k, corr + o));
                unsigned bad = bx__rq16(a, _mm512_maskz_loadu_ps(k, r->m + o), _mm512_maskz_loadu_ps(k, r->c + o),
                                        _mm512_maskz_loadu_ps(k, r->m + O + o), lo, hi, zo, yp + o, k);
                for (; bad; bad &= bad - 1) { /* the lanes near a tie, exactly */
                    int64_t l = o + __builtin_ctz(bad);
                    yp[l] = bx__requant_one(r, (int64_t)ap[l] - corr[l], l);
                }
            }
        }
        return;
    }
#endif
    for (int64_t p = 0; p < rows; p++)
        if (!fast || bx__requant_row_fast(r, acc + p * O, corr, y + p * O, O))
            bx__requant_row_exact(r, acc + p * O, corr, y + p * O, O);
}

void bx__requant_init(bx__requant *r, int64_t O) {
    for (int64_t o = 0; o < O; o++) {
        r->m[o] = (float)(r->sx * r->sw[o] / r->so);
        r->c[o] = (float)(r->bias[o] / r->so);
        float ac = r->c[o] < 0.0f ? -r->c[o] : r->c[o];
        r->m[O + o] = 4e-6f * ac + 1e-6f;
    }
}
