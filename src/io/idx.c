/* idx.c - reader for the IDX format (MNIST, Fashion-MNIST), raw or gzip.
 *
 * zlib's gzread reads both forms: a file without the gzip magic is passed
 * through unchanged. The data is read into a growing buffer (so a corrupt
 * header that claims gigabytes fails on the missing data, not on an
 * allocation), then converted from big-endian into the tensor. */
#include "tensor/tensor_int.h"

#include "blixt/idx.h"

#include <errno.h>
#include <string.h>
#include <zlib.h>

typedef struct idx_type {
    uint8_t code;
    size_t size; /* bytes per element in the file */
    bx_dtype dt;
    const char *name;
} idx_type;

static const idx_type idx_types[] = {
    {0x08, 1, BX_U8, "u8"},   {0x09, 1, BX_I8, "i8"},   {0x0B, 2, BX_I32, "i16"},
    {0x0C, 4, BX_I32, "i32"}, {0x0D, 4, BX_F32, "f32"}, {0x0E, 8, BX_F64, "f64"},
};

/* Outcome of reading exactly n bytes: n read, or an error already set. */
static bx_status read_exact(gzFile gz, const char *path, void *buf, size_t n, const char *what, size_t *got) {
    *got = 0;
    char *p = buf;
    while (*got < n) {
        size_t chunk = n - *got;
        if (chunk > ((size_t)1 << 30)) chunk = (size_t)1 << 30;
        int r = gzread(gz, p + *got, (unsigned)chunk);
        if (r > 0) {
            *got += (size_t)r;
            continue;
        }
        if (r == 0) break; /* end of file */
        int zerr = 0;
        const char *msg = gzerror(gz, &zerr);
        if (zerr == Z_ERRNO)
            return bx__error(BX_ERR_IO, "idx '%s': reading the %s failed: %s", path, what, strerror(errno));
        if (zerr == Z_BUF_ERROR) break; /* gzip stream cut short: reported as missing bytes */
        return bx__error(BX_ERR_FORMAT, "idx '%s': corrupt gzip data in the %s: %s", path, what, msg);
    }
    if (*got < n)
        return bx__error(BX_ERR_FORMAT, "idx '%s': truncated %s: %zu bytes missing (expected %zu, got %zu)", path,
                         what, n - *got, n, *got);
    return BX_OK;
}

/* Reads `n` data bytes into a buffer grown as data arrives. */
static bx_status read_data(gzFile gz, const char *path, size_t n, uint8_t **out) {
    *out = NULL;
    size_t cap = n < ((size_t)1 << 20) ? n : ((size_t)1 << 20), got = 0;
    uint8_t *buf = bx__malloc(cap ? cap : 1);
    if (!buf) return BX_ERR_NOMEM;
    while (got < n) {
        if (got == cap) {
            size_t nc = cap * 2 < n ? cap * 2 : n;
            uint8_t *nb = bx__realloc(buf, nc);
            if (!nb) {
                bx__free(buf);
                return BX_ERR_NOMEM;
            }
            buf = nb;
            cap = nc;
        }
        size_t k;
        bx_status s = read_exact(gz, path, buf + got, cap - got, "data", &k);
        got += k;
        if (s != BX_OK) {
            bx__free(buf);
            if (s == BX_ERR_FORMAT && got < n && strstr(bx_errmsg(), "truncated"))
                return bx__error(BX_ERR_FORMAT, "idx '%s': truncated data: %zu bytes missing (expected %zu, got %zu)",
                                 path, n - got, n, got);
            return s;
        }
    }
    *out = buf;
    return BX_OK;
}

static uint32_t be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t be64(const uint8_t *p) { return ((uint64_t)be32(p) << 32) | be32(p + 4); }

/* Big-endian file data -> tensor elements. */
static void convert(const idx_type *ty, const uint8_t *src, size_t n, void *dst) {
    switch (ty->code) {
    case 0x08:
    case 0x09: memcpy(dst, src, n); break;
    case 0x0B: {
        int32_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = (int16_t)(uint16_t)((src[2 * i] << 8) | src[2 * i + 1]);
        break;
    }
    case 0x0C:
    case 0x0D: {
        uint32_t *d = dst; /* i32 and f32 share the bit pattern swap */
        for (size_t i = 0; i < n; i++) d[i] = be32(src + 4 * i);
        break;
    }
    case 0x0E: {
        uint64_t *d = dst;
        for (size_t i = 0; i < n; i++) d[i] = be64(src + 8 * i);
        break;
    }
    }
}

static bx_status load(gzFile gz, const char *path, bx_tensor **out) {
    uint8_t head[4];
    size_t got;
    bx_status s = read_exact(gz, path, head, 4, "header", &got);
    if (s != BX_OK) return s;
    if (head[0] != 0 || head[1] != 0)
        return bx__error(BX_ERR_FORMAT, "idx '%s': bad magic %02x %02x (an IDX file starts with 00 00)", path,
                         head[0], head[1]);
    const idx_type *ty = NULL;
    for (size_t i = 0; i < sizeof idx_types / sizeof idx_types[0]; i++)
        if (idx_types[i].code == head[2]) ty = &idx_types[i];
    if (!ty)
        return bx__error(BX_ERR_FORMAT,
                         "idx '%s': unknown type code 0x%02X (known: 08 u8, 09 i8, 0B i16, 0C i32, 0D f32, 0E f64)",
                         path, head[2]);
    int ndim = head[3];
    if (ndim > BX_MAX_DIMS)
        return bx__error(BX_ERR_UNSUPPORTED, "idx '%s': %d dimensions (Blixt tensors have at most %d)", path, ndim,
                         BX_MAX_DIMS);
    uint8_t dims[4 * BX_MAX_DIMS];
    s = read_exact(gz, path, dims, 4 * (size_t)ndim, "dimension list", &got);
    if (s != BX_OK) return s;
    int64_t shape[BX_MAX_DIMS];
    size_t numel = 1;
    for (int d = 0; d < ndim; d++) {
        shape[d] = be32(dims + 4 * d);
        if (shape[d] && numel > SIZE_MAX / 16 / (size_t)shape[d])
            return bx__error(BX_ERR_FORMAT, "idx '%s': dimensions too large", path);
        numel *= (size_t)shape[d];
    }
    size_t bytes = numel * ty->size;
    uint8_t *raw = NULL;
    s = read_data(gz, path, bytes, &raw);
    if (s != BX_OK) return s;
    char extra;
    int r = gzread(gz, &extra, 1), zerr = 0;
    const char *msg = gzerror(gz, &zerr); /* a gzip stream cut in its trailer reads as EOF + Z_BUF_ERROR */
    if (r != 0 || zerr != Z_OK) {
        bx__free(raw);
        if (r > 0)
            return bx__error(BX_ERR_FORMAT, "idx '%s': trailing bytes after the %zu data bytes of the header's shape",
                             path, bytes);
        if (zerr == Z_ERRNO) return bx__error(BX_ERR_IO, "idx '%s': read failed: %s", path, strerror(errno));
        return bx__error(BX_ERR_FORMAT, "idx '%s': corrupt or truncated gzip stream after the data: %s", path, msg);
    }
    bx_tensor *t = bx_tensor_new(ty->dt, ndim, shape);
    if (!t) {
        bx__free(raw);
        return BX_ERR_NOMEM;
    }
    convert(ty, raw, numel, t->data);
    bx__free(raw);
    *out = t;
    return BX_OK;
}

bx_status bx_idx_load(const char *path, bx_tensor **out) {
    if (!out) return bx__error(BX_ERR_INVALID, "idx: NULL output pointer");
    *out = NULL;
    if (!path) return bx__error(BX_ERR_INVALID, "idx: NULL path");
    errno = 0;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return bx__error(errno ? BX_ERR_IO : BX_ERR_NOMEM, "idx '%s': cannot open: %s", path,
                         errno ? strerror(errno) : "out of memory");
    gzbuffer(gz, 1u << 17);
    bx_status s = load(gz, path, out);
    gzclose(gz);
    return s;
}
