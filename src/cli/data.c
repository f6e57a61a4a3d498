/* data.c - the datasets the CLI builds: Fashion-MNIST / MNIST (IDX files,
 * gzip or raw, in a folder, with a fallback folder such as the small one
 * shipped in data/), any IDX image/label pair, and CSV tables (one row per
 * sample, one integer label column). A deterministic train/val split
 * (val_split: a fraction or a count) is cut from the training set. */
#include "cli/cli_int.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define NP(a) ((int)(sizeof(a) / sizeof((a)[0])))

#define DATA_COMMON                                                                   \
    {"batch_size", BX_P_INT, "64", NULL}, {"shuffle", BX_P_BOOL, "true", NULL},       \
        {"val_split", BX_P_FLOAT | BX_P_INT, "0.1", NULL},                            \
        {"split_seed", BX_P_INT, "42", NULL},                                         \
        {"max_train_samples", BX_P_INT | BX_P_NULL, "null", NULL}

static bool file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

void bx__data_free(bx__data *d) {
    bx_dataset_free(d->train);
    bx_dataset_free(d->val);
    bx_dataset_free(d->test);
    d->train = d->val = d->test = NULL;
}

/* Rows idx[0..n) of t into a new tensor. */
static bx_tensor *take_rows(const bx_tensor *t, const int64_t *idx, int64_t n) {
    int64_t shape[BX_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    shape[0] = n;
    bx_tensor *o = bx_tensor_new(t->dtype, t->ndim, shape);
    if (!o) return NULL;
    size_t row = (size_t)(bx_numel(t) / (t->shape[0] ? t->shape[0] : 1)) * bx_dtype_size(t->dtype);
    for (int64_t i = 0; i < n; i++)
        memcpy((char *)o->data + (size_t)i * row, (const char *)t->data + (size_t)idx[i] * row, row);
    return o;
}

/* Splits `all` (consumed) into train/val with a seeded permutation; val_split
 * < 1 is a fraction, >= 1 a count; max_train caps the training rows. */
static bx_status split(bx_dataset *all, const bx_state *a, const char *where, bx__data *d) {
    int64_t n = bx_dataset_len(all);
    double vs = bx__arg_float(a, "val_split");
    int64_t nv = vs < 1.0 ? (int64_t)(vs * (double)n) : (int64_t)vs;
    if (vs < 0 || nv >= n) {
        bx_dataset_free(all);
        return bx__error(BX_ERR_INVALID, "%s.val_split: got %g, expected a fraction in [0, 1) or a count below the %lld training samples",
                         where, vs, (long long)n);
    }
    int64_t ntr = n - nv;
    if (!bx__arg_is_null(a, "max_train_samples")) {
        int64_t mx = bx__arg_int(a, "max_train_samples");
        if (mx < 1) {
            bx_dataset_free(all);
            return bx__error(BX_ERR_INVALID, "%s.max_train_samples: got %lld, expected >= 1 or null", where, (long long)mx);
        }
        if (mx < ntr) ntr = mx;
    }
    if (nv == 0 && ntr == n) {
        d->train = all;
        return BX_OK;
    }
    int64_t *perm = bx__malloc(sizeof(int64_t) * (size_t)n);
    if (!perm) {
        bx_dataset_free(all);
        return BX_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    bx_rng r;
    bx_rng_init(&r, (uint64_t)bx__arg_int(a, "split_seed"));
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)bx_rng_below(&r, (uint64_t)i + 1), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    const bx_tensor *x = bx_dataset_x(all), *y = bx_dataset_y(all);
    bx_tensor *xt = take_rows(x, perm + nv, ntr), *yt = y ? take_rows(y, perm + nv, ntr) : NULL;
    bx_tensor *xv = nv ? take_rows(x, perm, nv) : NULL, *yv = (nv && y) ? take_rows(y, perm, nv) : NULL;
    bx__free(perm);
    bx_dataset_free(all);
    d->train = bx_dataset_from_tensors(xt, yt, true);
    if (nv) d->val = bx_dataset_from_tensors(xv, yv, true);
    if (!d->train || (nv && !d->val)) return bx__error(BX_ERR_NOMEM, "%s: out of memory splitting the data", where);
    return BX_OK;
}

/* Fills sample shape and class count from the training set. */
static bx_status describe(bx__data *d, const bx_state *a, const char *where) {
    const bx_tensor *x = bx_dataset_x(d->train), *y = bx_dataset_y(d->train);
    d->sample_ndim = x->ndim - 1;
    for (int i = 1; i < x->ndim && i <= 4; i++) d->sample_shape[i - 1] = x->shape[i];
    int64_t mx = -1;
    for (int64_t i = 0; y && i < bx_numel(y); i++) {
        int64_t v = (int64_t)bx_get(y, i);
        if (v < 0) return bx__error(BX_ERR_INVALID, "%s: label %lld of sample %lld is negative", where, (long long)v, (long long)i);
        if (v > mx) mx = v;
    }
    if (!y) return bx__error(BX_ERR_INVALID, "%s: the training data has no labels", where);
    d->num_classes = mx + 1;
    if (bx_state_get(a, "num_classes") && !bx__arg_is_null(a, "num_classes")) {
        int64_t nc = bx__arg_int(a, "num_classes");
        if (nc < d->num_classes)
            return bx__error(BX_ERR_INVALID, "%s.num_classes: got %lld, but the labels go up to %lld", where,
                             (long long)nc, (long long)mx);
        d->num_classes = nc;
    }
    d->batch_size = bx__arg_int(a, "batch_size");
    d->shuffle = bx__arg_bool(a, "shuffle");
    if (d->batch_size < 1)
        return bx__error(BX_ERR_INVALID, "%s.batch_size: got %lld, expected >= 1", where, (long long)d->batch_size);
    return BX_OK;
}

/* ---- IDX folders (Fashion-MNIST / MNIST layout) -------------------------------------- */
static bool find_idx(const char *root, const char *stem, char *out, size_t n) {
    snprintf(out, n, "%s/%s.gz", root, stem);
    if (file_exists(out)) return true;
    snprintf(out, n, "%s/%s", root, stem);
    return file_exists(out);
}

static bx_status load_idx_pair(const char *img, const char *lab, const char *where, bx_dataset **out) {
    bx_status s = bx_dataset_from_idx(img, lab, false, out);
    if (s != BX_OK) bx__error_prefix("%s", where);
    return s;
}

static bx_status build_mnist_like(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                                  void *out) {
    bx__data *d = out;
    const char *roots[2] = {bx__arg_str(a, "root"), bx__arg_str(a, "fallback_root")};
    char ti[1100], tl[1100], ei[1100], el[1100];
    const char *root = NULL;
    char src_rel[1100];
    for (int i = 0; i < 2 && !root; i++) {
        if (roots[i] && find_idx(roots[i], "train-images-idx3-ubyte", ti, sizeof ti) &&
            find_idx(roots[i], "train-labels-idx1-ubyte", tl, sizeof tl))
            root = roots[i];
#ifdef BLIXT_SOURCE_DIR
        /* a relative fallback (data/tiny-fashion) also resolves against the source tree */
        if (!root && i == 1 && roots[1] && roots[1][0] != '/') {
            snprintf(src_rel, sizeof src_rel, "%s/%s", BLIXT_SOURCE_DIR, roots[1]);
            if (find_idx(src_rel, "train-images-idx3-ubyte", ti, sizeof ti) &&
                find_idx(src_rel, "train-labels-idx1-ubyte", tl, sizeof tl))
                root = src_rel;
        }
#endif
    }
    if (!root)
        return bx__error(BX_ERR_INVALID,
                         "%s.root: got '%s'%s%s%s, expected a folder with train-images-idx3-ubyte[.gz] and "
                         "train-labels-idx1-ubyte[.gz] (%s)",
                         where, roots[0] ? roots[0] : "null", roots[1] ? " (fallback_root '" : "",
                         roots[1] ? roots[1] : "", roots[1] ? "')" : "",
                         !strcmp(c->name, "FashionMNIST") ? "install Debian's dataset-fashion-mnist" : "MNIST's IDX files");
    if (root != roots[0] && roots[0])
        bx_logf(BX_LOG_WARNING, "%s: '%s' has no %s files; using the fallback '%s'", where, roots[0], c->name, root);
    snprintf(d->source, sizeof d->source, "%s", root);
    bx_dataset *all = NULL;
    bx_status s = load_idx_pair(ti, tl, where, &all);
    if (s == BX_OK) s = split(all, a, where, d);
    if (s == BX_OK && find_idx(root, "t10k-images-idx3-ubyte", ei, sizeof ei) &&
        find_idx(root, "t10k-labels-idx1-ubyte", el, sizeof el))
        s = load_idx_pair(ei, el, where, &d->test);
    if (s == BX_OK) s = describe(d, a, where);
    if (s != BX_OK) bx__data_free(d);
    return s;
}

static const bx__param FMNIST_PARAMS[] = {
    {"root", BX_P_STR | BX_P_NULL, "/usr/share/datasets/fashion-mnist", NULL},
    {"fallback_root", BX_P_STR | BX_P_NULL, "data/tiny-fashion", NULL}, DATA_COMMON};
const bx__class bx__data_fashion_mnist = {BX_KIND_DATA, "FashionMNIST", FMNIST_PARAMS, NP(FMNIST_PARAMS),
                                          "Fashion-MNIST IDX files (train-*, t10k-*; gzip or raw)", build_mnist_like};
static const bx__param MNIST_PARAMS[] = {
    {"root", BX_P_STR | BX_P_NULL, "/usr/share/datasets/mnist", NULL},
    {"fallback_root", BX_P_STR | BX_P_NULL, "null", NULL}, DATA_COMMON};
const bx__class bx__data_mnist = {BX_KIND_DATA, "MNIST", MNIST_PARAMS, NP(MNIST_PARAMS),
                                  "MNIST IDX files (train-*, t10k-*; gzip or raw)", build_mnist_like};

/* ---- explicit IDX pair --------------------------------------------------------------- */
static const bx__param IDX_PARAMS[] = {
    {"train_images", BX_P_STR, "''", NULL},         {"train_labels", BX_P_STR, "''", NULL},
    {"test_images", BX_P_STR | BX_P_NULL, "null", NULL}, {"test_labels", BX_P_STR | BX_P_NULL, "null", NULL},
    {"num_classes", BX_P_INT | BX_P_NULL, "null", NULL}, DATA_COMMON};
static bx_status build_idx(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx__data *d = out;
    const char *ti = bx__arg_str(a, "train_images"), *tl = bx__arg_str(a, "train_labels");
    const char *keys[2] = {"train_images", "train_labels"}, *vals[2] = {ti, tl};
    for (int i = 0; i < 2; i++)
        if (!file_exists(vals[i]))
            return bx__error(BX_ERR_INVALID, "%s.%s: got '%s', expected an existing IDX file", where, keys[i], vals[i]);
    snprintf(d->source, sizeof d->source, "%s", ti);
    bx_dataset *all = NULL;
    bx_status s = load_idx_pair(ti, tl, where, &all);
    if (s == BX_OK) s = split(all, a, where, d);
    const char *ei = bx__arg_str(a, "test_images"), *el = bx__arg_str(a, "test_labels");
    if (s == BX_OK && ei) {
        if (!file_exists(ei) || (el && !file_exists(el)))
            s = bx__error(BX_ERR_INVALID, "%s.%s: got '%s', expected an existing IDX file", where,
                          !file_exists(ei) ? "test_images" : "test_labels", !file_exists(ei) ? ei : el);
        else
            s = load_idx_pair(ei, el, where, &d->test);
    }
    if (s == BX_OK) s = describe(d, a, where);
    if (s != BX_OK) bx__data_free(d);
    return s;
}
const bx__class bx__data_idx = {BX_KIND_DATA, "IDXDataset", IDX_PARAMS, NP(IDX_PARAMS),
                                "any IDX image + label files", build_idx};

/* ---- CSV tables ------------------------------------------------------------------------ */
static bx_status load_csv(const char *path, int64_t label_col, bool header, const char *where,
                          const char *key, bx_dataset **out) {
    FILE *f = fopen(path, "r");
    if (!f) return bx__error(BX_ERR_INVALID, "%s.%s: got '%s', expected a readable CSV file (%s)", where, key, path, strerror(errno));
    char line[65536];
    float *xs = NULL;
    int64_t *ys = NULL, rows = 0, cap = 0, ncol = -1, lineno = 0;
    bx_status s = BX_OK;
    while (s == BX_OK && fgets(line, sizeof line, f)) {
        lineno++;
        if (header && lineno == 1) continue;
        char *p = line;
        while (*p == ' ' || *p == '\t') p++;
        if (*p == '\n' || *p == '\r' || *p == '\0') continue;
        double vals[4096];
        int64_t nc = 0;
        for (;;) {
            char *end;
            double v = strtod(p, &end);
            if (end == p || nc >= 4096) {
                s = bx__error(BX_ERR_FORMAT, "%s: %s:%lld: column %lld is not a number", where, path,
                              (long long)lineno, (long long)nc + 1);
                break;
            }
            vals[nc++] = v;
            p = end;
            while (*p == ' ' || *p == '\t') p++;
            if (*p == ',' || *p == ';') {
                p++;
                continue;
            }
            break;
        }
        if (s != BX_OK) break;
        if (ncol < 0) ncol = nc;
        if (nc != ncol || nc < 2) {
            s = bx__error(BX_ERR_FORMAT, "%s: %s:%lld: %lld columns, expected %lld (at least 2)", where, path,
                          (long long)lineno, (long long)nc, (long long)ncol);
            break;
        }
        int64_t lc = label_col < 0 ? ncol + label_col : label_col;
        if (lc < 0 || lc >= ncol) {
            s = bx__error(BX_ERR_INVALID, "%s.label_column: got %lld, expected a column of the %lld in %s", where,
                          (long long)label_col, (long long)ncol, path);
            break;
        }
        if (rows == cap) {
            cap = cap ? cap * 2 : 256;
            float *nx = bx__realloc(xs, sizeof(float) * (size_t)(cap * (ncol - 1)));
            if (nx) xs = nx;
            int64_t *ny = nx ? bx__realloc(ys, sizeof(int64_t) * (size_t)cap) : NULL;
            if (ny) ys = ny;
            if (!nx || !ny) {
                s = bx__error(BX_ERR_NOMEM, "%s: out of memory reading %s", where, path);
                break;
            }
        }
        int64_t k = 0;
        for (int64_t j = 0; j < ncol; j++) {
            if (j == lc) ys[rows] = (int64_t)vals[j];
            else xs[rows * (ncol - 1) + k++] = (float)vals[j];
        }
        rows++;
    }
    fclose(f);
    if (s == BX_OK && rows == 0) s = bx__error(BX_ERR_FORMAT, "%s: %s has no data rows", where, path);
    if (s == BX_OK) {
        int64_t xsh[2] = {rows, ncol - 1};
        bx_tensor *x = bx_tensor_new(BX_F32, 2, xsh), *y = bx_tensor_new(BX_I64, 1, &rows);
        if (x) memcpy(x->data, xs, sizeof(float) * (size_t)(rows * (ncol - 1)));
        if (y) memcpy(y->data, ys, sizeof(int64_t) * (size_t)rows);
        *out = (x && y) ? bx_dataset_from_tensors(x, y, true) : NULL;
        if (!x || !y) {
            bx_tensor_free(x);
            bx_tensor_free(y);
        }
        if (!*out) s = BX_ERR_NOMEM;
    }
    bx__free(xs);
    bx__free(ys);
    return s;
}

static const bx__param CSV_PARAMS[] = {
    {"train_file", BX_P_STR, "''", NULL},         {"test_file", BX_P_STR | BX_P_NULL, "null", NULL},
    {"label_column", BX_P_INT, "-1", NULL},       {"header", BX_P_BOOL, "true", NULL},
    {"num_classes", BX_P_INT | BX_P_NULL, "null", NULL}, DATA_COMMON};
static bx_status build_csv(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    bx__data *d = out;
    int64_t lc = bx__arg_int(a, "label_column");
    bool header = bx__arg_bool(a, "header");
    snprintf(d->source, sizeof d->source, "%s", bx__arg_str(a, "train_file"));
    bx_dataset *all = NULL;
    bx_status s = load_csv(bx__arg_str(a, "train_file"), lc, header, where, "train_file", &all);
    if (s == BX_OK) s = split(all, a, where, d);
    if (s == BX_OK && bx__arg_str(a, "test_file"))
        s = load_csv(bx__arg_str(a, "test_file"), lc, header, where, "test_file", &d->test);
    if (s == BX_OK) s = describe(d, a, where);
    if (s == BX_OK && d->test && bx_dataset_x(d->test)->shape[1] != d->sample_shape[0])
        s = bx__error(BX_ERR_INVALID, "%s.test_file: %lld feature columns, the training file has %lld", where,
                      (long long)bx_dataset_x(d->test)->shape[1], (long long)d->sample_shape[0]);
    if (s != BX_OK) bx__data_free(d);
    return s;
}
const bx__class bx__data_csv = {BX_KIND_DATA, "CSVDataset", CSV_PARAMS, NP(CSV_PARAMS),
                                "CSV table: numeric feature columns + an integer label column", build_csv};

bx_status bx__build_data(const bx_state *spec, bx__build_ctx *ctx, bx__data *out) {
    memset(out, 0, sizeof *out);
    const bx__class *c = bx__registry_find(BX_KIND_DATA, bx_state_get_string(bx_state_get(spec, "class_path")));
    if (!c) return bx__error(BX_ERR_INVALID, "data: unknown class");
    return c->build(c, bx_state_get(spec, "init_args"), "data.init_args", ctx, out);
}
