/* test_safetensors.c - safetensors round trips, the golden case files,
 * corrupted/truncated input (every rule has a case), writer failures and
 * allocation-failure injection.
 * `test_safetensors --write-interop FILE` writes the file that
 * tests/io/check_torch_interop.py checks with plain json+struct. */
#include "test_util.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

static void make_tmpdir(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/bx_st_test_XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(1);
    }
}

static void rm_tree(const char *path) {
    struct stat sb;
    if (lstat(path, &sb) != 0) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
            rm_tree(sub);
        }
        if (d) closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* Number of entries in dir whose name contains `needle`. */
static int count_names(const char *dir, const char *needle) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (strstr(de->d_name, needle)) n++;
    if (d) closedir(d);
    return n;
}

static unsigned char *read_all(const char *path, size_t *len) {
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 16);
    if (fread(buf, 1, (size_t)n, fp) != (size_t)n) n = 0;
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *fp = fopen(path, "wb");
    if (!fp) return;
    fwrite(p, 1, n, fp);
    fclose(fp);
}

/* Sum over every element: touches all data (ASan catches reads out of bounds). */
static double touch(const bx_tensor *t) {
    double s = 0;
    int64_t n = bx_numel(t);
    for (int64_t i = 0; i < n; i++) s += bx_get(t, i);
    return s;
}

/* ---- round trip ----------------------------------------------------------- */

typedef struct rt_set {
    bx_tensor *t[12];
    const char *name[12];
    int n;
} rt_set;

static bx_tensor *filled(bx_dtype dt, int ndim, const int64_t *shape, double base) {
    bx_tensor *t = bx_tensor_new(dt, ndim, shape);
    int64_t n = bx_numel(t);
    for (int64_t i = 0; i < n; i++) {
        double v = base + (double)i;
        if (dt == BX_F32 || dt == BX_F64) v = base + 0.25 * (double)i - 1.0 / 3.0;
        if (dt == BX_BOOL) v = (double)(i % 2);
        if (dt == BX_I8) v = (double)((int)(base + (double)i) % 100 - 50);
        if (dt == BX_U8) v = (double)((int)(base + (double)i) % 250);
        bx_set(t, i, v);
    }
    return t;
}

static void rt_build(rt_set *s) {
    int64_t sh23[2] = {2, 3}, sh5[1] = {5}, sh0[2] = {0, 4}, sh322[3] = {3, 2, 2};
    s->n = 0;
    /* deliberately mixed order of size classes: the writer reorders */
    s->name[s->n] = "u8.mask";   s->t[s->n++] = filled(BX_U8, 2, sh23, 200);
    s->name[s->n] = "f32.w";     s->t[s->n++] = filled(BX_F32, 2, sh23, 1.5);
    s->name[s->n] = "f64.lr";    s->t[s->n++] = filled(BX_F64, 1, sh5, 0.1);
    s->name[s->n] = "i8.q";      s->t[s->n++] = filled(BX_I8, 1, sh5, 7);
    s->name[s->n] = "i64.step";  s->t[s->n++] = filled(BX_I64, 0, NULL, 12345678901LL);
    s->name[s->n] = "i32.zp";    s->t[s->n++] = filled(BX_I32, 3, sh322, -6);
    s->name[s->n] = "bool.flag"; s->t[s->n++] = filled(BX_BOOL, 1, sh5, 0);
    s->name[s->n] = "f32.empty"; s->t[s->n++] = filled(BX_F32, 2, sh0, 0);
    s->name[s->n] = "f32.scalar"; s->t[s->n++] = filled(BX_F32, 0, NULL, 3.75);
    s->name[s->n] = "i64.labels"; s->t[s->n++] = filled(BX_I64, 1, sh5, -2);
    s->name[s->n] = "u8.empty";  s->t[s->n++] = filled(BX_U8, 1, (int64_t[]){0}, 0);
}

static void rt_free(rt_set *s) {
    for (int i = 0; i < s->n; i++) bx_tensor_free(s->t[i]);
}

static void check_same(const bx_tensor *got, const bx_tensor *want, const char *name) {
    CHECK(got != NULL);
    if (!got) {
        fprintf(stderr, "  missing %s: %s\n", name, bx_errmsg());
        return;
    }
    CHECK_EQ_INT(got->dtype, want->dtype);
    CHECK(bx_same_shape(got, want));
    CHECK_EQ_INT((uintptr_t)got->data % bx_dtype_size(got->dtype), 0);
    int64_t n = bx_numel(want);
    int bad = 0;
    for (int64_t i = 0; i < n; i++)
        if (bx_get(got, i) != bx_get(want, i)) bad++;
    CHECK_EQ_INT(bad, 0);
}

static void check_file_matches(const bx_st_file *f, rt_set *s) {
    CHECK_EQ_INT(bx_st_count(f), s->n);
    for (int i = 0; i < s->n; i++) check_same(bx_st_get(f, s->name[i]), s->t[i], s->name[i]);
    CHECK(strcmp(bx_st_metadata(f, "format"), "pt") == 0);
    CHECK(strcmp(bx_st_metadata(f, "note"), "quotes \" and \\ and \n newline, ünïcode") == 0);
    CHECK(bx_st_metadata(f, "absent") == NULL);
    CHECK_EQ_INT(bx_st_metadata_count(f), 2);
    CHECK(strcmp(bx_st_metadata_key(f, 0), "format") == 0);
    /* file order: sorted by data offset, 8-byte types first, insertion order within a class */
    const char *expect[] = {"f64.lr", "i64.step", "i64.labels", "f32.w", "i32.zp", "f32.empty", "f32.scalar",
                            "u8.mask", "i8.q", "bool.flag", "u8.empty"};
    for (int i = 0; i < bx_st_count(f) && i < 11; i++) CHECK(strcmp(bx_st_name(f, i), expect[i]) == 0);
    CHECK(bx_st_get(f, "nope") == NULL);
    CHECK(strstr(bx_errmsg(), "nope") != NULL);
    CHECK(bx_st_get_index(f, 99) == NULL);
    CHECK(bx_st_get_index(f, 0) == bx_st_get(f, "f64.lr"));
}

static void test_round_trip(void) {
    rt_set s;
    rt_build(&s);
    bx_st_writer *w = bx_st_writer_new();
    for (int i = 0; i < s.n; i++) CHECK_OK(bx_st_writer_add(w, s.name[i], s.t[i]));
    CHECK_OK(bx_st_writer_meta(w, "format", "pt"));
    CHECK_OK(bx_st_writer_meta(w, "note", "first value, replaced"));
    CHECK_OK(bx_st_writer_meta(w, "note", "quotes \" and \\ and \n newline, ünïcode"));
    CHECK_ERR(bx_st_writer_add(w, "f32.w", s.t[0]), BX_ERR_INVALID, "duplicate");
    CHECK_ERR(bx_st_writer_add(w, "", s.t[0]), BX_ERR_INVALID, "empty");
    CHECK_ERR(bx_st_writer_add(w, "__metadata__", s.t[0]), BX_ERR_INVALID, "reserved");
    CHECK_ERR(bx_st_writer_add(w, "bad\xff", s.t[0]), BX_ERR_INVALID, "UTF-8");
    char path[512];
    snprintf(path, sizeof path, "%s/rt.safetensors", tmpdir);
    CHECK_OK(bx_st_writer_write(w, path));
    CHECK_EQ_INT(count_names(tmpdir, ".tmp-"), 0);
    bx_st_writer_free(w);

    bx_st_file *f = NULL;
    CHECK_OK(bx_st_open(path, &f));
    if (f) check_file_matches(f, &s);
    bx_st_close(f);

    /* header length is a multiple of 8; data aligned; from a misaligned buffer
     * the views are copied to aligned memory */
    size_t len;
    unsigned char *buf = read_all(path, &len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | buf[i];
    CHECK_EQ_INT(hlen % 8, 0);
    CHECK(buf[8] == '{');
    unsigned char *mis = malloc(len + 1);
    memcpy(mis + 1, buf, len);
    CHECK_OK(bx_st_open_memory(mis + 1, len, "misaligned", &f));
    if (f) check_file_matches(f, &s);
    bx_st_close(f);
    free(mis);
    free(buf);

    /* overwrite an existing file */
    w = bx_st_writer_new();
    CHECK_OK(bx_st_writer_add(w, "only", s.t[1]));
    CHECK_OK(bx_st_writer_write(w, path));
    bx_st_writer_free(w);
    CHECK_OK(bx_st_open(path, &f));
    CHECK_EQ_INT(bx_st_count(f), 1);
    CHECK_EQ_INT(bx_st_metadata_count(f), 0);
    bx_st_close(f);

    /* an empty file (no tensors, no metadata) */
    w = bx_st_writer_new();
    CHECK_OK(bx_st_writer_write(w, path));
    bx_st_writer_free(w);
    CHECK_OK(bx_st_open(path, &f));
    CHECK_EQ_INT(bx_st_count(f), 0);
    CHECK(bx_st_get(f, "x") == NULL);
    bx_st_close(f);

    /* a non-contiguous view is written contiguous */
    int64_t sh[2] = {3, 4};
    bx_tensor *a = filled(BX_F32, 2, sh, 0);
    bx_tensor tv = *a; /* transpose view (4,3) */
    tv.shape[0] = 4;
    tv.shape[1] = 3;
    tv.stride[0] = 1;
    tv.stride[1] = 4;
    tv.flags = 0;
    w = bx_st_writer_new();
    CHECK_OK(bx_st_writer_add(w, "t", &tv));
    CHECK_OK(bx_st_writer_write(w, path));
    bx_st_writer_free(w);
    CHECK_OK(bx_st_open(path, &f));
    const bx_tensor *g = f ? bx_st_get(f, "t") : NULL;
    CHECK(g && g->shape[0] == 4 && g->shape[1] == 3);
    if (g)
        for (int i = 0; i < 4; i++)
            for (int j = 0; j < 3; j++) CHECK(((const float *)g->data)[i * 3 + j] == ((float *)a->data)[j * 4 + i]);
    bx_st_close(f);
    bx_tensor_free(a);
    rt_free(&s);
}

/* ---- golden case files ------------------------------------------------------ */

static int golden_files;

static void read_golden_tree(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) {
            read_golden_tree(p);
            continue;
        }
        size_t nl = strlen(de->d_name);
        if (nl < 12 || strcmp(de->d_name + nl - 12, ".safetensors") != 0) continue;
        bx_st_file *f = NULL;
        bx_status s = bx_st_open(p, &f);
        CHECK_OK(s);
        if (s != BX_OK) continue;
        golden_files++;
        CHECK(bx_st_count(f) > 0);
        CHECK(bx_st_metadata(f, "kind") != NULL);
        for (int i = 0; i < bx_st_count(f); i++) {
            const bx_tensor *t = bx_st_get_index(f, i);
            CHECK(t != NULL);
            if (t) (void)touch(t);
        }
        bx_st_close(f);
    }
    closedir(d);
}

static void test_golden_files(void) {
    const char *root = getenv("BLIXT_TEST_DATA");
    char dir[512];
    snprintf(dir, sizeof dir, "%s/golden/cases", root ? root : ".");
    struct stat sb;
    if (!root && stat(dir, &sb) != 0) snprintf(dir, sizeof dir, "tests/golden/cases"); /* run from the repo root */
    read_golden_tree(dir);
    printf("read %d golden case files\n", golden_files);
    CHECK(golden_files >= 20);
}

/* ---- corrupted input ---------------------------------------------------------- */

/* File from a header text (padded to 8) and `ndata` data bytes 0,1,2,... */
static unsigned char *craft(const char *hdr, size_t ndata, size_t *len) {
    size_t h = strlen(hdr), hp = (h + 7) & ~(size_t)7;
    *len = 8 + hp + ndata;
    unsigned char *b = malloc(*len + 1);
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)((uint64_t)hp >> (8 * i));
    memcpy(b + 8, hdr, h);
    memset(b + 8 + h, ' ', hp - h);
    for (size_t i = 0; i < ndata; i++) b[8 + hp + i] = (unsigned char)i;
    return b;
}

typedef struct bad_case {
    const char *header;
    size_t ndata;
    const char *needle; /* the rule, as it appears in the message */
    const char *tensor; /* the tensor the message must name, or NULL */
} bad_case;

static void test_bad_headers(void) {
    static const bad_case cases[] = {
        {"[1,2]", 0, "not a JSON object", NULL},
        {"\"str\"", 0, "rule: header is a JSON object", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "not valid JSON", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "not valid JSON", NULL},
        {"{\"a\xff\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "not valid JSON", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "duplicate name", "\"a\""},
        {"{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, "duplicate", NULL},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, "overlap", "'b'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}", 12, "gap", "'b'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, "gap", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 9, "trailing", NULL},
        {"{\"a\":{\"dtype\":\"F17\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown dtype", "'a'"},
        {"{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "dtype", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "byte length", "'a'"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "byte length", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,4]}}", 4,
         "byte length", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape entry 0", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1.0],\"data_offsets\":[0,4]}}", 4, "shape entry 0", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}}", 8, "shape entry 1", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":5,\"data_offsets\":[0,4]}}", 4, "shape is not an array", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,0]}}", 4, "begin > end", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 4, "data_offsets", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,-4]}}", 4, "data_offsets", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "in bounds", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "missing 'data_offsets'", "'a'"},
        {"{\"a\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "missing 'dtype'", "'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"x\":1}}", 4, "unknown field", "'a'"},
        {"{\"a\":[1]}", 4, "not a JSON object", "'a'"},
        {"{\"__metadata__\":[\"x\"]}", 0, "__metadata__", NULL},
        {"{\"__metadata__\":{\"k\":1}}", 0, "__metadata__", "'k'"},
        {"{\"__metadata__\":{\"k\":null}}", 0, "__metadata__", "'k'"},
        {"{}", 3, "trailing", NULL},
        {"", 0, "not valid JSON", NULL},
    };
    int n = (int)(sizeof cases / sizeof cases[0]);
    for (int i = 0; i < n; i++) {
        size_t len;
        unsigned char *b = craft(cases[i].header, cases[i].ndata, &len);
        bx_st_file *f = (bx_st_file *)1;
        char label[32];
        snprintf(label, sizeof label, "bad%d.st", i);
        bx_status s = bx_st_open_memory(b, len, label, &f);
        tu_checks++;
        if (s != BX_ERR_FORMAT || !strstr(bx_errmsg(), cases[i].needle) || !strstr(bx_errmsg(), label) ||
            !strstr(bx_errmsg(), "rule") || (cases[i].tensor && !strstr(bx_errmsg(), cases[i].tensor)) || f) {
            tu_failures++;
            fprintf(stderr, "bad header case %d (%s): expected FORMAT with '%s', got %s: %s\n", i, cases[i].header,
                    cases[i].needle, bx_status_str(s), bx_errmsg());
        }
        bx_st_close(f == (bx_st_file *)1 ? NULL : f);
        free(b);
    }

    /* header length rules */
    unsigned char small[7] = {1, 0, 0, 0, 0, 0, 0};
    bx_st_file *f = NULL;
    CHECK_ERR(bx_st_open_memory(small, 7, "tiny", &f), BX_ERR_FORMAT, "shorter than the 8-byte");
    CHECK_ERR(bx_st_open_memory(small, 0, "empty", &f), BX_ERR_FORMAT, "shorter than the 8-byte");
    unsigned char big[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, '{', '}'};
    CHECK_ERR(bx_st_open_memory(big, 16, "big", &f), BX_ERR_FORMAT, "absurd");
    unsigned char beyond[16] = {9, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    CHECK_ERR(bx_st_open_memory(beyond, 16, "beyond", &f), BX_ERR_FORMAT, "beyond the end of the file");
    CHECK(f == NULL);

    /* valid but unsupported: opens, reading that tensor is BX_ERR_UNSUPPORTED */
    size_t len;
    unsigned char *b = craft("{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]},"
                             "\"d\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[4,5]},"
                             "\"e\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[5,5]},"
                             "\"z\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[5,5]},"
                             "\"ok\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[5,6]}}",
                             6, &len);
    CHECK_OK(bx_st_open_memory(b, len, "half", &f));
    if (f) {
        CHECK_EQ_INT(bx_st_count(f), 5);
        CHECK(bx_st_get(f, "h") == NULL);
        CHECK(strstr(bx_errmsg(), "'h'") && strstr(bx_errmsg(), "F16"));
        CHECK(bx_st_get(f, "d") == NULL);
        CHECK(strstr(bx_errmsg(), "dimensions"));
        const bx_tensor *ok = bx_st_get(f, "ok");
        CHECK(ok && ((const uint8_t *)ok->data)[0] == 5);
        CHECK(bx_st_get(f, "e") && bx_numel(bx_st_get(f, "e")) == 0);
        CHECK(strcmp(bx_st_name(f, 4), "ok") == 0);
    }
    bx_st_close(f);
    free(b);
}

/* A valid file to corrupt: header + data of a few tensors. */
static unsigned char *valid_file(size_t *len) {
    rt_set s;
    rt_build(&s);
    bx_st_writer *w = bx_st_writer_new();
    for (int i = 0; i < s.n; i++) bx_st_writer_add(w, s.name[i], s.t[i]);
    bx_st_writer_meta(w, "kind", "x");
    char path[512];
    snprintf(path, sizeof path, "%s/valid.safetensors", tmpdir);
    CHECK_OK(bx_st_writer_write(w, path));
    bx_st_writer_free(w);
    rt_free(&s);
    return read_all(path, len);
}

static void test_truncation_and_flips(void) {
    size_t len;
    unsigned char *b = valid_file(&len);
    bx_st_file *f = NULL;
    CHECK_OK(bx_st_open_memory(b, len, "valid", &f));
    bx_st_close(f);
    /* every truncation fails with FORMAT */
    int bad = 0;
    for (size_t cut = 0; cut < len; cut++) {
        unsigned char *p = malloc(cut ? cut : 1);
        memcpy(p, b, cut);
        f = NULL;
        bx_status s = bx_st_open_memory(p, cut, "cut", &f);
        if (s != BX_ERR_FORMAT || f || !strstr(bx_errmsg(), "rule")) {
            if (bad++ < 5) fprintf(stderr, "truncated at %zu: %s: %s\n", cut, bx_status_str(s), bx_errmsg());
        }
        bx_st_close(f);
        free(p);
    }
    CHECK_EQ_INT(bad, 0);
    /* trailing garbage */
    unsigned char *p = malloc(len + 3);
    memcpy(p, b, len);
    memset(p + len, 0xAB, 3);
    CHECK_ERR(bx_st_open_memory(p, len + 3, "trail", &f), BX_ERR_FORMAT, "trailing");
    free(p);

    /* flips of every header byte and random corruption: FORMAT or OK, never a crash */
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    p = malloc(len);
    const unsigned char subs[] = {0xFF, '"', '{', '}', '[', ']', ',', ':', '0', '9', '-', ' ', 0};
    int formats = 0, oks = 0, others = 0;
    for (size_t pos = 0; pos < 8 + hlen; pos++) {
        for (size_t k = 0; k < sizeof subs; k++) {
            memcpy(p, b, len);
            p[pos] = pos < 8 ? (unsigned char)(p[pos] ^ (1u << (k % 8))) : subs[k];
            f = NULL;
            bx_status s = bx_st_open_memory(p, len, "flip", &f);
            if (s == BX_OK) {
                oks++;
                for (int i = 0; i < bx_st_count(f); i++) {
                    const bx_tensor *t = bx_st_get_index(f, i);
                    if (t) touch(t);
                }
            } else if (s == BX_ERR_FORMAT) {
                formats++;
            } else {
                if (others++ < 5) fprintf(stderr, "flip at %zu: %s: %s\n", pos, bx_status_str(s), bx_errmsg());
            }
            bx_st_close(f);
        }
    }
    CHECK_EQ_INT(others, 0);
    CHECK(formats > oks);
    bx_rng rng;
    bx_rng_init(&rng, 42);
    for (int it = 0; it < 3000; it++) {
        memcpy(p, b, len);
        int nflip = 1 + (int)bx_rng_below(&rng, 4);
        for (int j = 0; j < nflip; j++) p[bx_rng_below(&rng, 8 + hlen)] = (unsigned char)bx_rng_u32(&rng);
        f = NULL;
        bx_status s = bx_st_open_memory(p, len, "fuzz", &f);
        CHECK(s == BX_OK || s == BX_ERR_FORMAT);
        for (int i = 0; i < bx_st_count(f); i++) {
            const bx_tensor *t = bx_st_get_index(f, i);
            if (t) touch(t);
        }
        bx_st_close(f);
    }
    free(p);

    /* truncated files on disk go through the mmap path */
    char path[512];
    snprintf(path, sizeof path, "%s/cut.safetensors", tmpdir);
    size_t cuts[] = {0, 3, 8, 9, 8 + (size_t)hlen - 1, 8 + (size_t)hlen, len - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_bytes(path, b, cuts[i]);
        CHECK_ERR(bx_st_open(path, &f), BX_ERR_FORMAT, "cut.safetensors");
        CHECK(f == NULL);
    }
    free(b);
    CHECK_ERR(bx_st_open("/nonexistent/x.safetensors", &f), BX_ERR_IO, "x.safetensors");
    CHECK_ERR(bx_st_open(tmpdir, &f), BX_ERR_IO, "folder");
}

/* ---- writer failures ------------------------------------------------------------ */

static void test_writer_failures(void) {
    int64_t sh[1] = {256};
    bx_tensor *t = bx_tensor_zeros(BX_F32, 1, sh);
    bx_st_writer *w = bx_st_writer_new();
    CHECK_OK(bx_st_writer_add(w, "t", t));

    /* unwritable folders (root ignores permission bits, /proc refuses anyway) */
    CHECK_ERR(bx_st_writer_write(w, "/proc/bx_test.safetensors"), BX_ERR_IO, "bx_test.safetensors");
    CHECK_ERR(bx_st_writer_write(w, "/nonexistent_dir_bx/x.safetensors"), BX_ERR_IO, "x.safetensors");
    char sub[512], path[600];
    snprintf(sub, sizeof sub, "%s/ro", tmpdir);
    mkdir(sub, 0555);
    if (geteuid() != 0) {
        snprintf(path, sizeof path, "%s/x.safetensors", sub);
        CHECK_ERR(bx_st_writer_write(w, path), BX_ERR_IO, "x.safetensors");
        CHECK_EQ_INT(count_names(sub, "tmp"), 0);
    }
    /* the target is a folder: rename fails after the temp was written -> removed */
    snprintf(path, sizeof path, "%s/isdir.safetensors", tmpdir);
    mkdir(path, 0755);
    CHECK_ERR(bx_st_writer_write(w, path), BX_ERR_IO, "rename");
    CHECK_EQ_INT(count_names(tmpdir, ".tmp-"), 0);
    struct stat sb;
    CHECK(stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));

    /* a write that fails midway (file size limit): existing target untouched */
    snprintf(path, sizeof path, "%s/keep.safetensors", tmpdir);
    write_bytes(path, "old", 3);
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 512;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
        CHECK_ERR(bx_st_writer_write(w, path), BX_ERR_IO, "unchanged");
        setrlimit(RLIMIT_FSIZE, &old);
        size_t len = 0;
        unsigned char *b = read_all(path, &len);
        CHECK(len == 3 && memcmp(b, "old", 3) == 0);
        free(b);
        CHECK_EQ_INT(count_names(tmpdir, ".tmp-"), 0);
    }
    signal(SIGXFSZ, prev);
    bx_st_writer_free(w);
    bx_tensor_free(t);
}

/* ---- allocation failures ----------------------------------------------------------- */

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
    size_t len;
    unsigned char *b = valid_file(&len);
    unsigned char *mis = malloc(len + 1);
    memcpy(mis + 1, b, len); /* misaligned: the copy path allocates too */
    char path[512];
    snprintf(path, sizeof path, "%s/nomem.safetensors", tmpdir);
    bx_set_allocator(failing_alloc, NULL);
    int k, nomem_open = 0, nomem_write = 0;
    for (k = 0; k < 200; k++) {
        alloc_budget = k;
        bx_st_file *f = NULL;
        bx_status s = bx_st_open_memory(mis + 1, len, "m", &f);
        bx_st_close(f);
        if (s == BX_OK) break;
        CHECK_EQ_INT(s, BX_ERR_NOMEM);
        nomem_open++;
    }
    CHECK(k < 200);
    int64_t sh[2] = {3, 4};
    alloc_budget = -1;
    bx_tensor *a = bx_tensor_zeros(BX_F32, 2, sh);
    bx_tensor tv = *a;
    tv.stride[0] = 1;
    tv.stride[1] = 3;
    for (k = 0; k < 200; k++) {
        alloc_budget = k;
        bx_st_writer *w = bx_st_writer_new();
        bx_status s = w ? BX_OK : BX_ERR_NOMEM;
        if (s == BX_OK) s = bx_st_writer_add(w, "a", a);
        if (s == BX_OK) s = bx_st_writer_add(w, "view", &tv);
        if (s == BX_OK) s = bx_st_writer_meta(w, "k", "v");
        if (s == BX_OK) s = bx_st_writer_write(w, path);
        bx_st_writer_free(w);
        CHECK_EQ_INT(count_names(tmpdir, ".tmp-"), 0);
        if (s == BX_OK) break;
        CHECK_EQ_INT(s, BX_ERR_NOMEM);
        nomem_write++;
    }
    CHECK(k < 200);
    alloc_budget = -1;
    bx_tensor_free(a);
    bx_set_allocator(NULL, NULL);
    printf("allocation failures injected: open %d, write %d\n", nomem_open, nomem_write);
    CHECK(nomem_open >= 3 && nomem_write >= 4);
    free(mis);
    free(b);
}

/* ---- interop file for check_torch_interop.py ------------------------------------------ */

static int write_interop(const char *path) {
    int64_t s23[2] = {2, 3}, s4[1] = {4};
    bx_tensor *w = bx_tensor_new(BX_F32, 2, s23);
    for (int i = 0; i < 6; i++) ((float *)w->data)[i] = 0.5f * (float)i - 1.0f;
    bx_tensor *lr = bx_tensor_new(BX_F64, 1, s4);
    for (int i = 0; i < 4; i++) ((double *)lr->data)[i] = 0.1 / (double)(i + 1);
    bx_tensor *step = bx_tensor_new(BX_I64, 0, NULL);
    *(int64_t *)step->data = 1234567890123LL;
    bx_tensor *zp = bx_tensor_new(BX_I32, 1, s4);
    for (int i = 0; i < 4; i++) ((int32_t *)zp->data)[i] = -2 + i;
    bx_tensor *q = bx_tensor_new(BX_I8, 1, s4);
    for (int i = 0; i < 4; i++) ((int8_t *)q->data)[i] = (int8_t)(-128 + 85 * i);
    bx_tensor *m = bx_tensor_new(BX_U8, 2, s23);
    for (int i = 0; i < 6; i++) ((uint8_t *)m->data)[i] = (uint8_t)(i % 2 ? 255 : i);
    bx_tensor *bl = bx_tensor_new(BX_BOOL, 1, s4);
    for (int i = 0; i < 4; i++) ((uint8_t *)bl->data)[i] = (uint8_t)(i % 3 == 0);
    int64_t s0[2] = {0, 3};
    bx_tensor *e = bx_tensor_new(BX_F32, 2, s0);
    bx_st_writer *wr = bx_st_writer_new();
    bx_st_writer_add(wr, "net.0.weight", w);
    bx_st_writer_add(wr, "mask", m);
    bx_st_writer_add(wr, "lr", lr);
    bx_st_writer_add(wr, "zp", zp);
    bx_st_writer_add(wr, "q", q);
    bx_st_writer_add(wr, "flag", bl);
    bx_st_writer_add(wr, "empty", e);
    bx_st_writer_add(wr, "step", step);
    bx_st_writer_meta(wr, "format", "pt");
    bx_status s = bx_st_writer_write(wr, path);
    bx_st_writer_free(wr);
    bx_tensor *all[] = {w, lr, step, zp, q, m, bl, e};
    for (int i = 0; i < 8; i++) bx_tensor_free(all[i]);
    if (s != BX_OK) fprintf(stderr, "%s\n", bx_errmsg());
    return s == BX_OK ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write-interop") == 0) return write_interop(argv[2]);
    make_tmpdir();
    test_round_trip();
    test_golden_files();
    test_bad_headers();
    test_truncation_and_flips();
    test_writer_failures();
    test_alloc_failures();
    rm_tree(tmpdir);
    return tu_finish("test_safetensors");
}
