/* requant.c - F5 requantisation of int32 accumulators to quint8, fast and
 * exact (see bx__requant in quant_int.h): a float32 pass that flags rows
 * with a lane near a rounding tie, redone in double. */
#include "quant/quant_int.h"

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

void bx__requant_rows(const bx__requant *r, const int32_t *acc, const int32_t *corr, uint8_t *y, int64_t rows,
                      int64_t O, bool fast) {
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
