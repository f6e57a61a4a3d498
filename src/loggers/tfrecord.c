/* tfrecord.c - CRC32C, protobuf wire-format encoding and TFRecord framing
 * for TensorBoard event files. Encoded by hand: fields in field-number
 * order, proto3 defaults omitted by the callers, like Python protobuf. */
#include "loggers/loggers_int.h"

#include <string.h>

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bitwise: event
 * records are small and written once per logged scalar. */
uint32_t bx__crc32c(const void *data, size_t n) {
    const unsigned char *p = data;
    uint32_t crc = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
    }
    return crc ^ 0xffffffffu;
}

uint32_t bx__crc32c_masked(const void *data, size_t n) {
    uint32_t crc = bx__crc32c(data, n);
    return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static void put_le(bx__sbuf *b, uint64_t v, int nbytes) {
    unsigned char t[8];
    for (int i = 0; i < nbytes; i++) t[i] = (unsigned char)(v >> (8 * i));
    bx__sb_put(b, t, (size_t)nbytes);
}

void bx__pb_varint(bx__sbuf *b, uint64_t v) {
    unsigned char t[10];
    int n = 0;
    do {
        unsigned char c = v & 0x7f;
        v >>= 7;
        t[n++] = (unsigned char)(c | (v ? 0x80 : 0));
    } while (v);
    bx__sb_put(b, t, (size_t)n);
}

void bx__pb_key(bx__sbuf *b, int field, int wire) {
    bx__pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire);
}

void bx__pb_uint(bx__sbuf *b, int field, uint64_t v) {
    bx__pb_key(b, field, 0);
    bx__pb_varint(b, v);
}

void bx__pb_double(bx__sbuf *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    bx__pb_key(b, field, 1);
    put_le(b, u, 8);
}

void bx__pb_float(bx__sbuf *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    bx__pb_key(b, field, 5);
    put_le(b, u, 4);
}

void bx__pb_bytes(bx__sbuf *b, int field, const void *p, size_t n) {
    bx__pb_key(b, field, 2);
    bx__pb_varint(b, n);
    bx__sb_put(b, p, n);
}

void bx__pb_string(bx__sbuf *b, int field, const char *s) { bx__pb_bytes(b, field, s, strlen(s)); }

void bx__pb_msg(bx__sbuf *b, int field, const bx__sbuf *m) {
    if (m->oom) b->oom = true;
    bx__pb_bytes(b, field, m->p, m->n);
}

void bx__tfrecord(bx__sbuf *out, const void *data, size_t n) {
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)n >> (8 * i));
    bx__sb_put(out, len, 8);
    put_le(out, bx__crc32c_masked(len, 8), 4);
    bx__sb_put(out, data, n);
    put_le(out, bx__crc32c_masked(data, n), 4);
}
