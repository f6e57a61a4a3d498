/* test_idx.c - IDX reader: every type code raw and gzip, truncated, trailing
 * and corrupt files, and Fashion-MNIST when it is installed. */
#include "test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

static void put_be32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* Writes bytes to tmpdir/name, gzip-compressed when gz. Returns the path. */
static const char *put_file(const char *name, const unsigned char *b, size_t n, bool gz) {
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    if (gz) {
        gzFile g = gzopen(path, "wb");
        if (n) gzwrite(g, b, (unsigned)n);
        gzclose(g);
    } else {
        FILE *fp = fopen(path, "wb");
        if (n) fwrite(b, 1, n, fp);
        fclose(fp);
    }
    return path;
}

/* IDX image of shape (2,3) for type code `code`; element i has value v(i). */
static size_t make_idx(unsigned char *b, uint8_t code, size_t esize) {
    b[0] = 0;
    b[1] = 0;
    b[2] = code;
    b[3] = 2;
    put_be32(b + 4, 2);
    put_be32(b + 8, 3);
    unsigned char *d = b + 12;
    for (int i = 0; i < 6; i++) {
        double v = (i - 2) * 1.5; /* -3, -1.5, 0, 1.5, 3, 4.5 */
        unsigned char e[8] = {0};
        switch (code) {
        case 0x08: e[0] = (unsigned char)(200 + i); break;
        case 0x09: e[0] = (unsigned char)(int8_t)(i * 50 - 128); break;
        case 0x0B: {
            uint16_t x = (uint16_t)(int16_t)(i * 10000 - 30000);
            e[0] = (unsigned char)(x >> 8);
            e[1] = (unsigned char)x;
            break;
        }
        case 0x0C: put_be32(e, (uint32_t)(int32_t)((int64_t)i * 800000000 - 2100000000)); break;
        case 0x0D: {
            float f = (float)v;
            uint32_t x;
            memcpy(&x, &f, 4);
            put_be32(e, x);
            break;
        }
        case 0x0E: {
            uint64_t x;
            memcpy(&x, &v, 8);
            put_be32(e, (uint32_t)(x >> 32));
            put_be32(e + 4, (uint32_t)x);
            break;
        }
        }
        memcpy(d + esize * (size_t)i, e, esize);
    }
    return 12 + 6 * esize;
}

static double expect_value(uint8_t code, int i) {
    switch (code) {
    case 0x08: return 200 + i;
    case 0x09: return i * 50 - 128;
    case 0x0B: return i * 10000 - 30000;
    case 0x0C: return (double)((int64_t)i * 800000000 - 2100000000);
    default: return (i - 2) * 1.5;
    }
}

static void test_types(void) {
    struct {
        uint8_t code;
        size_t size;
        bx_dtype dt;
    } types[] = {{0x08, 1, BX_U8}, {0x09, 1, BX_I8}, {0x0B, 2, BX_I32},
                 {0x0C, 4, BX_I32}, {0x0D, 4, BX_F32}, {0x0E, 8, BX_F64}};
    for (int k = 0; k < 6; k++) {
        for (int gz = 0; gz < 2; gz++) {
            unsigned char b[128];
            size_t n = make_idx(b, types[k].code, types[k].size);
            char name[64];
            snprintf(name, sizeof name, "t%02x.idx%s", types[k].code, gz ? ".gz" : "");
            const char *path = put_file(name, b, n, gz);
            bx_tensor *t = NULL;
            CHECK_OK(bx_idx_load(path, &t));
            if (!t) continue;
            CHECK_EQ_INT(t->dtype, types[k].dt);
            CHECK(t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3);
            for (int i = 0; i < 6; i++) CHECK_EQ_INT((long long)(bx_get(t, i) * 2), (long long)(expect_value(types[k].code, i) * 2));
            bx_tensor_free(t);

            /* every truncation fails with FORMAT, naming the file */
            for (size_t cut = 0; cut < n; cut++) {
                const char *p = put_file("cut.idx", b, cut, gz);
                bx_status s = bx_idx_load(p, &t);
                tu_checks++;
                if (s != BX_ERR_FORMAT || t || !strstr(bx_errmsg(), "cut.idx") || !strstr(bx_errmsg(), "missing")) {
                    tu_failures++;
                    fprintf(stderr, "type %02x gz %d cut %zu: %s: %s\n", types[k].code, gz, cut, bx_status_str(s),
                            bx_errmsg());
                }
            }
        }
    }
}

static void test_bad_files(void) {
    unsigned char b[128];
    size_t n = make_idx(b, 0x08, 1);
    bx_tensor *t = NULL;
    /* the message says how many bytes are missing */
    CHECK_ERR(bx_idx_load(put_file("short.idx", b, n - 4, false), &t), BX_ERR_FORMAT, "4 bytes missing");
    CHECK_ERR(bx_idx_load(put_file("short.idx.gz", b, n - 5, true), &t), BX_ERR_FORMAT, "5 bytes missing");
    CHECK_ERR(bx_idx_load(put_file("hdr.idx", b, 6, false), &t), BX_ERR_FORMAT, "dimension list: 6 bytes missing");
    b[n] = 7;
    CHECK_ERR(bx_idx_load(put_file("trail.idx", b, n + 1, false), &t), BX_ERR_FORMAT, "trailing");
    CHECK_ERR(bx_idx_load(put_file("trail.idx.gz", b, n + 1, true), &t), BX_ERR_FORMAT, "trailing");
    unsigned char c[128];
    memcpy(c, b, n);
    c[1] = 8;
    CHECK_ERR(bx_idx_load(put_file("magic.idx", c, n, false), &t), BX_ERR_FORMAT, "magic");
    memcpy(c, b, n);
    c[2] = 0x0A;
    CHECK_ERR(bx_idx_load(put_file("type.idx", c, n, false), &t), BX_ERR_FORMAT, "type code 0x0A");
    memcpy(c, b, n);
    c[3] = 9;
    CHECK_ERR(bx_idx_load(put_file("dims.idx", c, n, false), &t), BX_ERR_UNSUPPORTED, "9 dimensions");
    /* a header claiming a huge shape fails on the missing data, without a huge allocation */
    memcpy(c, b, n);
    put_be32(c + 4, 65536);
    put_be32(c + 8, 65536);
    CHECK_ERR(bx_idx_load(put_file("huge.idx", c, n, false), &t), BX_ERR_FORMAT, "4294967290 bytes missing");
    put_be32(c + 4, 0xFFFFFFFFu);
    put_be32(c + 8, 0xFFFFFFFFu);
    CHECK_ERR(bx_idx_load(put_file("huge.idx", c, n, false), &t), BX_ERR_FORMAT, "too large");
    CHECK(t == NULL);
    /* 0-d and empty tensors */
    unsigned char z[8] = {0, 0, 0x08, 0, 42};
    CHECK_OK(bx_idx_load(put_file("scalar.idx", z, 5, false), &t));
    CHECK(t && t->ndim == 0 && bx_get(t, 0) == 42);
    bx_tensor_free(t);
    unsigned char e[8] = {0, 0, 0x0D, 1, 0, 0, 0, 0};
    CHECK_OK(bx_idx_load(put_file("empty.idx.gz", e, 8, true), &t));
    CHECK(t && t->ndim == 1 && t->shape[0] == 0);
    bx_tensor_free(t);
    t = NULL;
    CHECK_ERR(bx_idx_load("/nonexistent/train-images.idx", &t), BX_ERR_IO, "train-images.idx");
    CHECK_ERR(bx_idx_load(tmpdir, &t), BX_ERR_IO, "bx_idx_test");

    /* corrupt gzip streams: cut compressed bytes, flip compressed bytes */
    unsigned char big[12 + 4096];
    big[0] = 0, big[1] = 0, big[2] = 0x08, big[3] = 2;
    put_be32(big + 4, 64);
    put_be32(big + 8, 64);
    for (int i = 0; i < 4096; i++) big[12 + i] = (unsigned char)((i * 7919) >> 3);
    const char *p = put_file("big.idx.gz", big, sizeof big, true);
    FILE *fp = fopen(p, "rb");
    unsigned char comp[16384];
    size_t cn = fread(comp, 1, sizeof comp, fp);
    fclose(fp);
    CHECK_OK(bx_idx_load(p, &t));
    CHECK(t && t->shape[0] == 64 && bx_get(t, 100) == big[112]);
    bx_tensor_free(t);
    int bad = 0;
    for (size_t cut = 10; cut < cn; cut += 3) {
        const char *q = put_file("cutgz.idx.gz", comp, cut, false);
        t = NULL;
        bx_status s = bx_idx_load(q, &t);
        if (s != BX_ERR_FORMAT || t) {
            if (bad++ < 3) fprintf(stderr, "gzip cut at %zu: %s: %s\n", cut, bx_status_str(s), bx_errmsg());
            bx_tensor_free(t);
        }
    }
    CHECK_EQ_INT(bad, 0);
    bad = 0;
    for (size_t pos = 10; pos < cn; pos += 5) {
        unsigned char f[16384];
        memcpy(f, comp, cn);
        f[pos] ^= 0x5A;
        const char *q = put_file("flipgz.idx.gz", f, cn, false);
        t = NULL;
        bx_status s = bx_idx_load(q, &t);
        if (s != BX_ERR_FORMAT) {
            if (bad++ < 3) fprintf(stderr, "gzip flip at %zu: %s: %s\n", pos, bx_status_str(s), bx_errmsg());
        }
        bx_tensor_free(t);
    }
    CHECK_EQ_INT(bad, 0);
}

static int alloc_budget = -1; /* allocations left before failing; -1 = unlimited */
static void *failing_alloc(void *ud, void *ptr, size_t old_size, size_t new_size) {
    (void)ud;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (alloc_budget == 0) return NULL;
    if (alloc_budget > 0) alloc_budget--;
    void *p = NULL;
    if (posix_memalign(&p, 64, new_size)) return NULL;
    if (ptr) {
        memcpy(p, ptr, old_size < new_size ? old_size : new_size);
        free(ptr);
    }
    return p;
}

static void test_alloc_failures(void) {
    unsigned char b[128];
    size_t n = make_idx(b, 0x0D, 4);
    const char *p = put_file("nomem.idx.gz", b, n, true);
    bx_set_allocator(failing_alloc, NULL);
    int k;
    for (k = 0; k < 20; k++) {
        alloc_budget = k;
        bx_tensor *t = NULL;
        bx_status s = bx_idx_load(p, &t);
        alloc_budget = -1;
        bx_tensor_free(t);
        if (s == BX_OK) break;
        CHECK_EQ_INT(s, BX_ERR_NOMEM);
        CHECK(t == NULL);
    }
    CHECK(k >= 2 && k < 20);
    bx_set_allocator(NULL, NULL);
}

static void test_fashion_mnist(void) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    char ip[256], lp[256];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte.gz", dir);
    if (access(ip, R_OK) != 0 || access(lp, R_OK) != 0) {
        printf("Fashion-MNIST not installed: skipped\n");
        return;
    }
    bx_tensor *x = NULL, *y = NULL;
    CHECK_OK(bx_idx_load(ip, &x));
    CHECK_OK(bx_idx_load(lp, &y));
    if (x) {
        CHECK(x->dtype == BX_U8 && x->ndim == 3 && x->shape[0] == 60000 && x->shape[1] == 28 && x->shape[2] == 28);
        uint64_t sum = 0;
        const uint8_t *d = x->data;
        for (int64_t i = 0; i < bx_numel(x); i++) sum += d[i];
        CHECK(sum > 0);
    }
    if (y) {
        CHECK(y->dtype == BX_U8 && y->ndim == 1 && y->shape[0] == 60000);
        int64_t count[10] = {0}, out_of_range = 0;
        const uint8_t *l = y->data;
        for (int64_t i = 0; i < bx_numel(y); i++) {
            if (l[i] > 9) out_of_range++;
            else count[l[i]]++;
        }
        CHECK_EQ_INT(out_of_range, 0);
        for (int c = 0; c < 10; c++) CHECK_EQ_INT(count[c], 6000); /* Fashion-MNIST is balanced */
    }
    bx_tensor_free(x);
    bx_tensor_free(y);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bx_idx_test_XXXXXX");
    if (!mkdtemp(tmpdir)) return 1;
    test_types();
    test_bad_files();
    test_alloc_failures();
    test_fashion_mnist();
    DIR *d = opendir(tmpdir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", tmpdir, de->d_name);
        unlink(p);
    }
    if (d) closedir(d);
    rmdir(tmpdir);
    return tu_finish("test_idx");
}
