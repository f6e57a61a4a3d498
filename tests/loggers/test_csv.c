/* test_csv.c - CSVLogger: exact metrics.csv / hparams.yaml bytes as
 * Lightning 1.9.5 writes them, version folders, errors. */
#include "test_util.h"
#include "blixt/logger.h"
#include "loggers/loggers_int.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_root[256];

static char *slurp(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (fread(p, 1, (size_t)n, f) != (size_t)n) n = 0;
    p[n] = '\0';
    fclose(f);
    return p;
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

#define CHECK_FILE(path, expect)                                                           \
    do {                                                                                   \
        char *got_ = slurp(path);                                                          \
        tu_checks++;                                                                       \
        if (!got_ || strcmp(got_, (expect)) != 0) {                                        \
            tu_failures++;                                                                 \
            fprintf(stderr, "%s:%d: %s:\n--- got\n%s\n--- expected\n%s\n", __FILE__,       \
                    __LINE__, path, got_ ? got_ : "(missing)", (expect));                  \
        }                                                                                  \
        free(got_);                                                                        \
    } while (0)

static bx_logger *make(const char *sub, const char *name, bx_logger_version_opt v,
                       const char *prefix, int64_t flush) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/%s", g_root, sub);
    bx_csv_logger_opts o = BX_CSV_LOGGER_OPTS_INIT;
    o.save_dir = dir;
    o.name = name;
    o.version = v;
    o.prefix = prefix;
    o.flush_logs_every_n_steps = flush;
    bx_logger *lg = bx_csv_logger_new(&o);
    CHECK(lg != NULL);
    return lg;
}

/* One Trainer-style record: metrics (floats) + "epoch" (int). */
static void rec(bx_logger *lg, const char *k, double v, int64_t epoch, int64_t step) {
    const char *names[2] = {k, "epoch"};
    double vals[2] = {v, (double)epoch};
    bool isint[2] = {false, true};
    CHECK_OK(bx_logger_log_metrics_typed(lg, names, vals, isint, 2, step));
    CHECK_OK(bx_logger_save(lg));
}

/* hooks_fit_sanity-like sequence: the header grows when val_loss appears,
 * earlier rows get an empty cell; save() after every record. */
static void test_trainer_sequence(void) {
    bx_logger *lg = make("seq", "lightning_logs", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO,
                         "", 100);
    char path[512];
    snprintf(path, sizeof path, "%s/seq/lightning_logs/version_0/metrics.csv", g_root);
    rec(lg, "train_loss", 1.0, 0, 0);
    CHECK_FILE(path, "train_loss,epoch,step\r\n1.0,0,0\r\n");
    rec(lg, "train_loss", 0.75, 0, 1);
    CHECK_FILE(path, "train_loss,epoch,step\r\n1.0,0,0\r\n0.75,0,1\r\n");
    rec(lg, "val_loss", 0.5, 0, 1);
    rec(lg, "train_loss", 0.5, 1, 2);
    rec(lg, "val_loss", (double)0.3f, 1, 3);
    CHECK_FILE(path, "train_loss,epoch,step,val_loss\r\n"
                     "1.0,0,0,\r\n"
                     "0.75,0,1,\r\n"
                     ",0,1,0.5\r\n"
                     "0.5,1,2,\r\n"
                     ",1,3,0.30000001192092896\r\n");
    CHECK(strcmp(bx_logger_version(lg), "0") == 0);
    CHECK(strcmp(bx_logger_name(lg), "lightning_logs") == 0);
    CHECK(strstr(bx_logger_log_dir(lg), "seq/lightning_logs/version_0") != NULL);
    CHECK(strcmp(bx_logger_get_ops(lg)->name, "CSVLogger") == 0);
    CHECK_OK(bx_logger_finalize(lg, "success"));
    char hp[512];
    snprintf(hp, sizeof hp, "%s/seq/lightning_logs/version_0/hparams.yaml", g_root);
    CHECK_FILE(hp, "{}\n");
    bx_logger_free(lg);
}

/* Python str(float)/str(int) cells, NaN/inf, untyped records (the "epoch"
 * heuristic), prefix, quoting, step=None. */
static void test_cells(void) {
    bx_logger *lg = make("cells", "", (bx_logger_version_opt){3, NULL}, "train", 1000);
    const char *names[] = {"a", "b,c", "q\"x", "epoch", "n1", "n2", "n3", "n4", "n5", "n6", "n7",
                           "n8", "n9", "n10"};
    double vals[] = {0.1 + 0.2, 1e-05, 1.5e20, 2.0, NAN, INFINITY, -INFINITY, 100.0, 1e16, 1e15,
                     0.0001, -0.0, 123456789012345678.0, 3.0};
    CHECK_OK(bx_logger_log_metrics(lg, names, vals, 14, 7));
    const char *n2[] = {"a", "step_like"};
    double v2[] = {2.0, 5.0};
    bool i2[] = {true, false};
    CHECK_OK(bx_logger_log_metrics_typed(lg, n2, v2, i2, 2, -1)); /* step None -> row index 1 */
    CHECK_OK(bx_logger_save(lg));
    char path[512];
    snprintf(path, sizeof path, "%s/cells/version_3/metrics.csv", g_root);
    CHECK_FILE(path,
               "train-a,\"train-b,c\",\"train-q\"\"x\",train-epoch,train-n1,train-n2,train-n3,"
               "train-n4,train-n5,train-n6,train-n7,train-n8,train-n9,train-n10,step,"
               "train-step_like\r\n"
               "0.30000000000000004,1e-05,1.5e+20,2,nan,inf,-inf,100.0,1e+16,1000000000000000.0,"
               "0.0001,-0.0,1.2345678901234568e+17,3.0,7,\r\n"
               "2,,,,,,,,,,,,,,1,5.0\r\n");
    CHECK(strcmp(bx_logger_version(lg), "3") == 0);
    bx_logger_free(lg);
}

static void mkdir_p(const char *rel) {
    char p[512];
    snprintf(p, sizeof p, "mkdir -p '%s/%s'", g_root, rel);
    CHECK(system(p) == 0);
}

static void test_versions(void) {
    mkdir_p("ver/lightning_logs/version_0");
    mkdir_p("ver/lightning_logs/version_1");
    mkdir_p("ver/lightning_logs/version_x");
    mkdir_p("ver/lightning_logs/other_9");
    char f[512];
    snprintf(f, sizeof f, "%s/ver/lightning_logs/version_7", g_root); /* a file, not a folder */
    FILE *fp = fopen(f, "w");
    if (fp) fclose(fp);
    bx_logger *lg = make("ver", "lightning_logs", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO,
                         "", 100);
    CHECK(strcmp(bx_logger_version(lg), "2") == 0);
    mkdir_p("ver/lightning_logs/version_5"); /* resolved once: stays 2 */
    CHECK(strcmp(bx_logger_version(lg), "2") == 0);
    const char *k = "x";
    double v = 1.0;
    CHECK_OK(bx_logger_log_metrics(lg, &k, &v, 1, 0));
    CHECK_OK(bx_logger_finalize(lg, "success"));
    char p[512];
    snprintf(p, sizeof p, "%s/ver/lightning_logs/version_2/metrics.csv", g_root);
    CHECK_FILE(p, "x,step\r\n1.0,0\r\n");
    bx_logger_free(lg);

    /* a second logger now sees version_5 -> 6 */
    lg = make("ver", "lightning_logs", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO, "", 100);
    CHECK(strcmp(bx_logger_version(lg), "6") == 0);
    bx_logger_free(lg);
    /* explicit number, text, name "" and a missing root */
    lg = make("ver", "lightning_logs", (bx_logger_version_opt){1, NULL}, "", 100);
    CHECK(strcmp(bx_logger_version(lg), "1") == 0);
    CHECK(strstr(bx_logger_log_dir(lg), "/ver/lightning_logs/version_1") != NULL);
    bx_logger_free(lg);
    lg = make("ver", "lightning_logs", (bx_logger_version_opt){-1, "exp_name_1"}, "", 100);
    CHECK(strcmp(bx_logger_version(lg), "exp_name_1") == 0);
    CHECK_OK(bx_logger_save(lg));
    snprintf(p, sizeof p, "%s/ver/lightning_logs/exp_name_1/hparams.yaml", g_root);
    CHECK(exists(p));
    bx_logger_free(lg);
    mkdir_p("noname/version_4");
    lg = make("noname", "", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO, "", 100);
    CHECK(strcmp(bx_logger_version(lg), "5") == 0);
    snprintf(p, sizeof p, "%s/noname/version_5", g_root);
    CHECK(strcmp(bx_logger_log_dir(lg), p) == 0);
    bx_logger_free(lg);
    lg = make("missing", "logs", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO, "", 100);
    CHECK(strcmp(bx_logger_version(lg), "0") == 0);
    CHECK_OK(bx_logger_finalize(lg, "success")); /* nothing logged: no folder */
    snprintf(p, sizeof p, "%s/missing", g_root);
    CHECK(!exists(p));
    bx_logger_free(lg);
}

static void test_flush_every(void) {
    bx_logger *lg = make("flush", "lightning_logs", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO,
                         "", 2);
    char p[512];
    snprintf(p, sizeof p, "%s/flush/lightning_logs/version_0/metrics.csv", g_root);
    const char *k = "m";
    double v = 0.5;
    CHECK_OK(bx_logger_log_metrics(lg, &k, &v, 1, 0));
    CHECK(!exists(p));
    CHECK_OK(bx_logger_log_metrics(lg, &k, &v, 1, 1)); /* (1+1) % 2 == 0: saved */
    CHECK_FILE(p, "m,step\r\n0.5,0\r\n0.5,1\r\n");
    CHECK_OK(bx_logger_log_metrics(lg, &k, &v, 1, 2));
    CHECK_FILE(p, "m,step\r\n0.5,0\r\n0.5,1\r\n");
    CHECK_OK(bx_logger_finalize(lg, "success"));
    CHECK_FILE(p, "m,step\r\n0.5,0\r\n0.5,1\r\n0.5,2\r\n");
    bx_logger_free(lg);
}

static void test_hparams_yaml(void) {
    bx_logger *lg = make("hp", "lightning_logs", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO,
                         "", 100);
    bx_state *d = bx_state_dict();
    bx_state_set_float(d, "lr", 0.001);
    bx_state_set_float(d, "b1", 0.5);
    bx_state_set_string(d, "name", "abc");
    bx_state_set_bool(d, "flag", true);
    bx_state *nested = bx_state_dict(), *a = bx_state_dict();
    bx_state_set_int(a, "b", 1);
    bx_state_set(nested, "a", a);
    bx_state_set(nested, "z", bx_state_list());
    bx_state_set(d, "nested", nested);
    bx_state *lst = bx_state_list();
    bx_state_append(lst, bx_state_int(1));
    bx_state_append(lst, bx_state_float(2.5));
    bx_state_append(lst, bx_state_string("x"));
    bx_state *kv = bx_state_dict();
    bx_state_set_string(kv, "k", "v");
    bx_state_set_int(kv, "j", 2);
    bx_state_append(lst, kv);
    bx_state *l2 = bx_state_list();
    bx_state_append(l2, bx_state_int(3));
    bx_state_append(l2, bx_state_int(4));
    bx_state_append(lst, l2);
    bx_state_set(d, "lst", lst);
    bx_state_set(d, "empty", bx_state_dict());
    bx_state_set(d, "none", bx_state_null());
    const char *strs[][2] = {{"yes_s", "yes"}, {"num_s", "1.0"}, {"int_s", "12"},
                             {"empty_s", ""}, {"colon", "a: b"}, {"hash", "#x"},
                             {"tab", "tab\tx"}, {"sp", " lead"}, {"dash", "- x"},
                             {"dash2", "-x"}, {"url", "http://x.y/z"}, {"date", "2020-01-01"},
                             {"tilde", "~"}, {"null_s", "null"}, {"e5", "1e5"},
                             {"quote", "it's"}, {"uni", "caf\xc3\xa9"}, {"path", "a/b c"},
                             {"nl", "a\nb"}, {"On", "On"}};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        bx_state_set_string(d, strs[i][0], strs[i][1]);
    bx_state_set_float(d, "small", 1e-05);
    bx_state_set_float(d, "big", 1.5e20);
    bx_state_set_float(d, "nan", NAN);
    bx_state_set_float(d, "ninf", -INFINITY);
    bx_state_set_int(d, "neg", -3);
    CHECK_OK(bx_logger_log_hyperparams(lg, d));
    /* a second call merges (dict.update): lr replaced, new key added */
    bx_state *d2 = bx_state_dict();
    bx_state_set_float(d2, "lr", 0.01);
    bx_state_set_int(d2, "zz", 0);
    CHECK_OK(bx_logger_log_hyperparams(lg, d2));
    CHECK_OK(bx_logger_save(lg));
    char p[512];
    snprintf(p, sizeof p, "%s/hp/lightning_logs/version_0/hparams.yaml", g_root);
    /* Expected text: PyYAML 6 yaml.dump of the same dict. */
    CHECK_FILE(p, "'On': 'On'\nb1: 0.5\nbig: 1.5e+20\ncolon: 'a: b'\ndash: '- x'\ndash2: -x\n"
                  "date: '2020-01-01'\ne5: 1e5\nempty: {}\nempty_s: ''\nflag: true\nhash: '#x'\n"
                  "int_s: '12'\nlr: 0.01\nlst:\n- 1\n- 2.5\n- x\n- j: 2\n  k: v\n- - 3\n  - 4\n"
                  "name: abc\nnan: .nan\nneg: -3\nnested:\n  a:\n    b: 1\n  z: []\n"
                  "ninf: -.inf\nnl: 'a\n\n  b'\nnone: null\nnull_s: 'null'\nnum_s: '1.0'\n"
                  "path: a/b c\nquote: it's\nsmall: 1.0e-05\nsp: ' lead'\ntab: \"tab\\tx\"\n"
                  "tilde: '~'\nuni: \"caf\\xE9\"\nurl: http://x.y/z\nyes_s: 'yes'\nzz: 0\n");
    /* no metrics logged: no metrics.csv (ExperimentWriter.save returns early) */
    snprintf(p, sizeof p, "%s/hp/lightning_logs/version_0/metrics.csv", g_root);
    CHECK(!exists(p));
    bx_state *bad = bx_state_list();
    CHECK_ERR(bx_logger_log_hyperparams(lg, bad), BX_ERR_INVALID, "dict");
    bx_state_free(bad);
    bx_state_free(d);
    bx_state_free(d2);
    bx_logger_free(lg);
}

static void test_unwritable(void) {
    char f[512];
    snprintf(f, sizeof f, "%s/plainfile", g_root);
    FILE *fp = fopen(f, "w");
    if (fp) fclose(fp);
    bx_logger *lg = make("plainfile/sub", "lightning_logs",
                         (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO, "", 100);
    const char *k = "m";
    double v = 1.0;
    CHECK_ERR(bx_logger_log_metrics(lg, &k, &v, 1, 0), BX_ERR_IO, "plainfile/sub/lightning_logs");
    CHECK_ERR(bx_logger_save(lg), BX_ERR_IO, "plainfile/sub");
    bx_logger_free(lg);
}

/* Many records with save() after each stay fast (append path) and exact. */
static void test_many_rows(void) {
    bx_logger *lg = make("many", "lightning_logs", (bx_logger_version_opt)BX_LOGGER_VERSION_AUTO,
                         "", 100);
    for (int i = 0; i < 500; i++) rec(lg, i % 10 == 9 ? "val" : "loss", 0.25, i / 100, i);
    char p[512];
    snprintf(p, sizeof p, "%s/many/lightning_logs/version_0/metrics.csv", g_root);
    char *got = slurp(p);
    CHECK(got != NULL);
    if (got) {
        CHECK(strncmp(got, "loss,epoch,step,val\r\n0.25,0,0,\r\n", 32) == 0);
        int lines = 0;
        for (char *q = got; *q; q++) lines += *q == '\n';
        CHECK_EQ_INT(lines, 501);
        CHECK(strstr(got, "\r\n,4,499,0.25\r\n") != NULL);
        free(got);
    }
    bx_logger_free(lg);
}

/* --yaml FILE: FILE holds a JSON list of dicts; prints each one's
 * hparams.yaml text followed by a \x1e separator (check_yaml.py compares
 * them with PyYAML's yaml.dump). */
static int yaml_mode(const char *path) {
    char *text = slurp(path);
    bx_state *list = NULL;
    if (!text || bx_state_from_json(text, NULL, NULL, &list) != BX_OK) {
        fprintf(stderr, "cannot read %s: %s\n", path, bx_errmsg());
        free(text);
        return 1;
    }
    free(text);
    for (size_t i = 0; i < bx_state_len(list); i++) {
        bx__sbuf b = {0};
        bx__yaml_dump(&b, bx_state_at(list, i));
        fwrite(b.p, 1, b.n, stdout);
        fputc('\x1e', stdout);
        bx__sb_free(&b);
    }
    bx_state_free(list);
    return 0;
}

/* --rows FILE DIR: FILE holds {"header": [...], "rows": [[cell text]...]}
 * (a conformance trace's csv section); each row is logged as one record
 * (non-empty cells; "step" as the step; cells without '.', 'e', 'n' or 'i'
 * as ints) into a CSVLogger in DIR; prints the metrics.csv path. */
static int rows_mode(const char *path, const char *dir) {
    char *text = slurp(path);
    bx_state *doc = NULL;
    if (!text || bx_state_from_json(text, NULL, NULL, &doc) != BX_OK) {
        fprintf(stderr, "cannot read %s: %s\n", path, bx_errmsg());
        free(text);
        return 1;
    }
    free(text);
    const bx_state *hdr = bx_state_get(doc, "header"), *rows = bx_state_get(doc, "rows");
    size_t nk = bx_state_len(hdr);
    bx_csv_logger_opts o = BX_CSV_LOGGER_OPTS_INIT;
    o.save_dir = dir;
    bx_logger *lg = bx_csv_logger_new(&o);
    const char **names = calloc(nk + 1, sizeof *names);
    double *vals = calloc(nk + 1, sizeof *vals);
    bool *isint = calloc(nk + 1, sizeof *isint);
    int rc = 0;
    for (size_t r = 0; r < bx_state_len(rows) && rc == 0; r++) {
        const bx_state *row = bx_state_at(rows, r);
        int n = 0;
        int64_t step = -1;
        for (size_t k = 0; k < nk; k++) {
            const char *cell = bx_state_get_string(bx_state_at(row, k));
            const char *key = bx_state_get_string(bx_state_at(hdr, k));
            if (!cell[0]) continue;
            if (strcmp(key, "step") == 0) {
                step = strtoll(cell, NULL, 10);
                continue;
            }
            names[n] = key;
            vals[n] = strtod(cell, NULL);
            isint[n] = !strpbrk(cell, ".eni");
            n++;
        }
        if (bx_logger_log_metrics_typed(lg, names, vals, isint, n, step) != BX_OK ||
            bx_logger_save(lg) != BX_OK)
            rc = 1;
    }
    if (rc == 0 && bx_logger_finalize(lg, "success") == BX_OK)
        printf("%s/metrics.csv\n", bx_logger_log_dir(lg));
    else
        fprintf(stderr, "rows mode failed: %s\n", bx_errmsg());
    free(names);
    free(vals);
    free(isint);
    bx_logger_free(lg);
    bx_state_free(doc);
    return rc;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--yaml") == 0) return yaml_mode(argv[2]);
    if (argc == 4 && strcmp(argv[1], "--rows") == 0) return rows_mode(argv[2], argv[3]);
    snprintf(g_root, sizeof g_root, "/tmp/blixt_test_csv_XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_trainer_sequence();
    test_cells();
    test_versions();
    test_flush_every();
    test_hparams_yaml();
    test_unwritable();
    test_many_rows();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (tu_failures == 0 && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", g_root);
    return tu_finish("loggers/csv");
}
