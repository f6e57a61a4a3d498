/* test_tensorboard.c - TensorBoardLogger event files: TFRecord framing and
 * both masked CRC32Cs checked with an independent table-driven CRC, the
 * Event/Summary protobuf fields decoded here, hparams plugin summaries,
 * hparams.yaml once, version folders.
 *
 * `test_tensorboard --write DIR` writes the fixed run that
 * read_tfevents.py checks and prints the event file's path. */
#include "test_util.h"
#include "blixt/logger.h"
#include "loggers/loggers_int.h"

#include <stdlib.h>
#include <sys/stat.h>

static char g_root[256];

/* ---- independent CRC32C (table, built here) -------------------------------- */
static uint32_t crc_table[256];
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t crc32c_ref(const unsigned char *p, size_t n) {
    uint32_t c = 0xffffffffu;
    while (n--) c = crc_table[(c ^ *p++) & 0xff] ^ (c >> 8);
    return ~c;
}
static uint32_t mask_ref(uint32_t c) { return ((c >> 15) | (c << 17)) + 0xa282ead8u; }

static uint64_t le(const unsigned char *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}

/* ---- a minimal protobuf reader --------------------------------------------- */
typedef struct pb_field {
    int num, wire;
    uint64_t v;              /* varint / fixed */
    const unsigned char *p;  /* length-delimited */
    size_t n;
} pb_field;

static bool pb_next(const unsigned char **p, const unsigned char *end, pb_field *f) {
    memset(f, 0, sizeof *f);
    if (*p >= end) return false;
    uint64_t key = 0;
    int sh = 0;
    while (*p < end) {
        unsigned char c = *(*p)++;
        key |= (uint64_t)(c & 0x7f) << sh;
        sh += 7;
        if (!(c & 0x80)) break;
    }
    f->num = (int)(key >> 3);
    f->wire = (int)(key & 7);
    if (f->wire == 0 || f->wire == 2) {
        uint64_t v = 0;
        sh = 0;
        while (*p < end) {
            unsigned char c = *(*p)++;
            v |= (uint64_t)(c & 0x7f) << sh;
            sh += 7;
            if (!(c & 0x80)) break;
        }
        f->v = v;
        if (f->wire == 2) {
            f->p = *p;
            f->n = (size_t)v;
            *p += v;
        }
    } else if (f->wire == 1) {
        f->v = le(*p, 8);
        *p += 8;
    } else if (f->wire == 5) {
        f->v = le(*p, 4);
        *p += 4;
    } else {
        return false;
    }
    return *p <= end;
}

/* Finds field `num` in a message; returns false when absent. */
static bool pb_find(const unsigned char *p, size_t n, int num, pb_field *out) {
    const unsigned char *end = p + n;
    pb_field f = {0};
    while (pb_next(&p, end, &f))
        if (f.num == num) {
            *out = f;
            return true;
        }
    return false;
}

static bool pb_str_eq(const pb_field *f, const char *s) {
    return f->wire == 2 && f->n == strlen(s) && memcmp(f->p, s, f->n) == 0;
}

static double as_double(uint64_t v) {
    double d;
    memcpy(&d, &v, 8);
    return d;
}
static float as_float(uint64_t v) {
    uint32_t u = (uint32_t)v;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- reading an event file ------------------------------------------------- */
typedef struct rec {
    unsigned char *data;
    size_t n;
} rec;

static int read_records(const char *path, rec *out, int cap) {
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return 0;
    int k = 0;
    unsigned char hdr[12];
    while (fread(hdr, 1, 12, f) == 12) {
        uint64_t n = le(hdr, 8);
        CHECK_EQ_INT(le(hdr + 8, 4), mask_ref(crc32c_ref(hdr, 8)));
        unsigned char *d = malloc(n ? n : 1);
        unsigned char crc[4];
        CHECK(fread(d, 1, n, f) == n);
        CHECK(fread(crc, 1, 4, f) == 4);
        CHECK_EQ_INT(le(crc, 4), mask_ref(crc32c_ref(d, n)));
        if (k < cap) out[k++] = (rec){d, n};
        else free(d);
    }
    fclose(f);
    return k;
}

/* Event fields: wall_time (1), step (2), file_version (3), summary (5) ->
 * Summary.value (1) -> tag (1), simple_value (2) / metadata (9). */
static void check_scalar(const rec *r, const char *tag, float v, int64_t step) {
    pb_field f = {0}, val = {0}, t = {0};
    CHECK(pb_find(r->data, r->n, 1, &f) && f.wire == 1 && as_double(f.v) > 1.5e9);
    if (step) CHECK(pb_find(r->data, r->n, 2, &f) && (int64_t)f.v == step);
    else CHECK(!pb_find(r->data, r->n, 2, &f)); /* proto3 default omitted */
    CHECK(pb_find(r->data, r->n, 5, &f));
    CHECK(pb_find(f.p, f.n, 1, &val));
    CHECK(pb_find(val.p, val.n, 1, &t) && pb_str_eq(&t, tag));
    CHECK(pb_find(val.p, val.n, 2, &t) && t.wire == 5 && as_float(t.v) == v);
}

/* Returns the HParamsPluginData content of a plugin summary with `tag`. */
static bool plugin_content(const rec *r, const char *tag, pb_field *content) {
    pb_field f = {0}, val = {0}, t = {0}, md = {0}, pd = {0};
    if (!pb_find(r->data, r->n, 5, &f) || !pb_find(f.p, f.n, 1, &val)) return false;
    if (!pb_find(val.p, val.n, 1, &t) || !pb_str_eq(&t, tag)) return false;
    if (!pb_find(val.p, val.n, 9, &md) || !pb_find(md.p, md.n, 1, &pd)) return false;
    if (!pb_find(pd.p, pd.n, 1, &t) || !pb_str_eq(&t, "hparams")) return false;
    return pb_find(pd.p, pd.n, 2, content);
}

static bx_logger *make_tb(const char *sub, bool hp_metric, const char *prefix) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_root, sub);
    bx_tensorboard_logger_opts o = BX_TENSORBOARD_LOGGER_OPTS_INIT;
    o.save_dir = dir;
    o.default_hp_metric = hp_metric;
    o.prefix = prefix;
    return bx_tensorboard_logger_new(&o);
}

/* The fixed run read_tfevents.py checks too. */
static bx_status write_run(bx_logger *lg) {
    bx_state *hp = bx_state_dict(), *nested = bx_state_dict(), *lst = bx_state_list();
    bx_state_set_float(hp, "lr", 0.01);
    bx_state_set_string(hp, "name", "mlp");
    bx_state_set_bool(hp, "flag", true);
    bx_state_set_int(nested, "depth", 3);
    bx_state_set(hp, "nested", nested);
    bx_state_set(hp, "none", bx_state_null());
    bx_state_append(lst, bx_state_int(1));
    bx_state_append(lst, bx_state_int(2));
    bx_state_set(hp, "lst", lst);
    bx_status s = bx_logger_log_hyperparams(lg, hp);
    bx_state_free(hp);
    const char *n1[] = {"loss"};
    const char *n2[] = {"loss", "acc"};
    const char *n3[] = {"val/x"};
    double v1[] = {0.5}, v2[] = {0.25, 0.75}, v3[] = {1.0 / 3.0}, v4[] = {-2.5e-3};
    if (s == BX_OK) s = bx_logger_log_metrics(lg, n1, v1, 1, 0);
    if (s == BX_OK) s = bx_logger_log_metrics(lg, n2, v2, 2, 1);
    if (s == BX_OK) s = bx_logger_log_metrics(lg, n3, v3, 1, 10);
    if (s == BX_OK) s = bx_logger_log_metrics(lg, n1, v4, 1, (int64_t)1 << 40);
    if (s == BX_OK) s = bx_logger_finalize(lg, "success");
    return s;
}

static void test_run(void) {
    bx_logger *lg = make_tb("run", true, "");
    CHECK(lg != NULL);
    CHECK(bx__tensorboard_event_path(lg) == NULL);
    CHECK_OK(write_run(lg));
    const char *path = bx__tensorboard_event_path(lg);
    CHECK(path != NULL && strstr(path, "/run/lightning_logs/version_0/events.out.tfevents.") != NULL);
    rec r[16];
    int n = read_records(path, r, 16);
    CHECK_EQ_INT(n, 10);
    if (n == 10) {
        pb_field f = {0}, c = {0}, x = {0}, y = {0}, z = {0};
        /* 0: file_version */
        CHECK(pb_find(r[0].data, r[0].n, 3, &f) && pb_str_eq(&f, "brain.Event:2"));
        CHECK(pb_find(r[0].data, r[0].n, 1, &f) && as_double(f.v) > 1.5e9);
        CHECK(!pb_find(r[0].data, r[0].n, 5, &f));
        /* 1: hp_metric -1 at step 0 */
        check_scalar(&r[1], "hp_metric", -1.0f, 0);
        /* 2: experiment: hparam_infos (4) {name, type}, metric_infos (5) */
        CHECK(plugin_content(&r[2], "_hparams_/experiment", &c));
        CHECK(!pb_find(c.p, c.n, 1, &f)); /* version 0 omitted */
        CHECK(pb_find(c.p, c.n, 2, &x));
        const char *names[] = {"lr", "name", "flag", "nested/depth", "none", "lst"};
        const int types[] = {3, 1, 3, 3, 1, 1};
        const unsigned char *p = x.p, *end = x.p + x.n;
        int k = 0;
        while (pb_next(&p, end, &f)) {
            if (f.num == 4) {
                CHECK(k < 6);
                if (k < 6) {
                    CHECK(pb_find(f.p, f.n, 1, &y) && pb_str_eq(&y, names[k]));
                    CHECK(pb_find(f.p, f.n, 4, &y) && (int)y.v == types[k]);
                }
                k++;
            } else {
                CHECK_EQ_INT(f.num, 5);
                CHECK(pb_find(f.p, f.n, 1, &y) && pb_find(y.p, y.n, 2, &z) &&
                      pb_str_eq(&z, "hp_metric"));
            }
        }
        CHECK_EQ_INT(k, 6);
        /* 3: session_start_info (3): map entries {key, Value} */
        CHECK(plugin_content(&r[3], "_hparams_/session_start_info", &c));
        CHECK(pb_find(c.p, c.n, 3, &x));
        p = x.p;
        end = x.p + x.n;
        k = 0;
        while (pb_next(&p, end, &f)) {
            CHECK_EQ_INT(f.num, 1);
            CHECK(pb_find(f.p, f.n, 1, &y) && k < 6 && pb_str_eq(&y, names[k]));
            CHECK(pb_find(f.p, f.n, 2, &y));
            if (k == 0) CHECK(pb_find(y.p, y.n, 2, &z) && as_double(z.v) == 0.01);
            if (k == 1) CHECK(pb_find(y.p, y.n, 3, &z) && pb_str_eq(&z, "mlp"));
            if (k == 2) CHECK(pb_find(y.p, y.n, 2, &z) && as_double(z.v) == 1.0);
            if (k == 3) CHECK(pb_find(y.p, y.n, 2, &z) && as_double(z.v) == 3.0);
            if (k == 4) CHECK(pb_find(y.p, y.n, 3, &z) && pb_str_eq(&z, "None"));
            if (k == 5) CHECK(pb_find(y.p, y.n, 3, &z) && pb_str_eq(&z, "[1, 2]"));
            k++;
        }
        CHECK_EQ_INT(k, 6);
        /* 4: session_end_info (4) {status 1} */
        CHECK(plugin_content(&r[4], "_hparams_/session_end_info", &c));
        CHECK(pb_find(c.p, c.n, 4, &x) && pb_find(x.p, x.n, 1, &y) && y.v == 1);
        /* 5..9: scalars */
        check_scalar(&r[5], "loss", 0.5f, 0);
        check_scalar(&r[6], "loss", 0.25f, 1);
        check_scalar(&r[7], "acc", 0.75f, 1);
        check_scalar(&r[8], "val/x", (float)(1.0 / 3.0), 10);
        check_scalar(&r[9], "loss", -2.5e-3f, (int64_t)1 << 40);
    }
    for (int i = 0; i < n; i++) free(r[i].data);
    /* hparams.yaml (unflattened) written by finalize's save() */
    char yp[512];
    snprintf(yp, sizeof yp, "%s/run/lightning_logs/version_0/hparams.yaml", g_root);
    FILE *f = fopen(yp, "rb");
    CHECK(f != NULL);
    if (f) {
        char buf[512] = {0};
        size_t got = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        CHECK(got > 0);
        CHECK(strcmp(buf, "flag: true\nlr: 0.01\nlst:\n- 1\n- 2\nname: mlp\nnested:\n  depth: 3\n"
                          "none: null\n") == 0);
    }
    CHECK(strcmp(bx_logger_get_ops(lg)->name, "TensorBoardLogger") == 0);
    bx_logger_free(lg);
}

/* hparams.yaml is written once (TB semantics); no hp_metric / plugin events
 * without default_hp_metric; prefix on tags; a second logger -> version_1. */
static void test_semantics(void) {
    bx_logger *lg = make_tb("sem", false, "p");
    bx_state *hp = bx_state_dict();
    bx_state_set_int(hp, "a", 1);
    CHECK_OK(bx_logger_log_hyperparams(lg, hp));
    CHECK_OK(bx_logger_save(lg)); /* no log_dir yet: nothing */
    char yp[512];
    snprintf(yp, sizeof yp, "%s/sem/lightning_logs/version_0/hparams.yaml", g_root);
    struct stat st;
    CHECK(stat(yp, &st) != 0);
    const char *k = "m";
    double v = 2.0;
    CHECK_OK(bx_logger_log_metrics(lg, &k, &v, 1, 5));
    CHECK_OK(bx_logger_save(lg));
    CHECK(stat(yp, &st) == 0);
    bx_state_set_int(hp, "b", 2);
    CHECK_OK(bx_logger_log_hyperparams(lg, hp));
    CHECK_OK(bx_logger_finalize(lg, "success")); /* file exists: not rewritten */
    FILE *f = fopen(yp, "rb");
    char buf[64] = {0};
    if (f) {
        CHECK(fread(buf, 1, sizeof buf - 1, f) > 0);
        fclose(f);
    }
    CHECK(strcmp(buf, "a: 1\n") == 0);
    rec r[8];
    int n = read_records(bx__tensorboard_event_path(lg), r, 8);
    CHECK_EQ_INT(n, 2);
    if (n == 2) check_scalar(&r[1], "p-m", 2.0f, 5);
    for (int i = 0; i < n; i++) free(r[i].data);
    bx_state_free(hp);
    bx_logger_free(lg);

    lg = make_tb("sem", true, "");
    CHECK(strcmp(bx_logger_version(lg), "1") == 0);
    bx_logger_free(lg);
}

static void test_crc_vectors(void) {
    /* Known CRC-32C check value and the library against the table version. */
    CHECK_EQ_INT(crc32c_ref((const unsigned char *)"123456789", 9), 0xe3069283u);
    CHECK_EQ_INT(bx__crc32c("123456789", 9), 0xe3069283u);
    unsigned char buf[300];
    for (int i = 0; i < 300; i++) buf[i] = (unsigned char)(i * 37 + 11);
    CHECK_EQ_INT(bx__crc32c(buf, 300), crc32c_ref(buf, 300));
    CHECK_EQ_INT(bx__crc32c_masked(buf, 7), mask_ref(crc32c_ref(buf, 7)));
}

static void test_unwritable(void) {
    char f[512];
    snprintf(f, sizeof f, "%s/plainfile", g_root);
    FILE *fp = fopen(f, "w");
    if (fp) fclose(fp);
    bx_logger *lg = make_tb("plainfile/x", true, "");
    const char *k = "m";
    double v = 1.0;
    CHECK_ERR(bx_logger_log_metrics(lg, &k, &v, 1, 0), BX_ERR_IO, "plainfile/x/lightning_logs");
    bx_logger_free(lg);
}

int main(int argc, char **argv) {
    crc_init();
    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        bx_tensorboard_logger_opts o = BX_TENSORBOARD_LOGGER_OPTS_INIT;
        o.save_dir = argv[2];
        bx_logger *lg = bx_tensorboard_logger_new(&o);
        if (!lg || write_run(lg) != BX_OK) {
            fprintf(stderr, "write failed: %s\n", bx_errmsg());
            return 1;
        }
        printf("%s\n", bx__tensorboard_event_path(lg));
        bx_logger_free(lg);
        return 0;
    }
    snprintf(g_root, sizeof g_root, "/tmp/blixt_test_tb_XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_crc_vectors();
    test_run();
    test_semantics();
    test_unwritable();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (tu_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
    return tu_finish("loggers/tensorboard");
}
