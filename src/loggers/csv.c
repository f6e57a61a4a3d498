/* csv.c - CSVLogger as Lightning 1.9.5 writes it (loggers.md §3, 1.3-1.9
 * ExperimentWriter): every log_metrics appends one row {**metrics, "step":
 * step} in memory; save() rewrites hparams.yaml and the whole metrics.csv
 * (header = keys in order of first appearance, sparse rows, csv.DictWriter's
 * QUOTE_MINIMAL and "\r\n" line ends, numbers as Python's str()).
 *
 * Appending instead of rewriting when the header did not change gives the
 * same bytes, so save() after every record stays linear in the new rows. */
#include "loggers/loggers_int.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct csv_cell {
    int key;
    bool is_int;
    int64_t i;
    double v;
} csv_cell;

typedef struct csv_row {
    csv_cell *cells;
    int n;
} csv_row;

typedef struct csv_logger {
    bx__logger_dirs dirs;
    char *prefix;
    int64_t flush_n;
    bool experiment; /* the writer exists: log_dir created */
    bx_state *hparams;
    char **keys;
    int nkeys, capkeys;
    csv_row *rows;
    size_t nrows, caprows;
    /* what metrics.csv holds now (for appending) */
    bool file_valid;
    int file_keys;
    size_t file_rows;
    /* hparams.yaml holds the current hyper-parameters: rewriting an unchanged
     * file on every save costs a forced ext4 writeback (truncate + close) and
     * gives the same bytes, so it is written only when they changed. */
    bool hparams_written;
    char *metrics_path;
    char *hparams_path;
} csv_logger;

static bx_status csv_experiment(csv_logger *c) {
    if (c->experiment) return BX_OK;
    bx_status s = bx__logger_dirs_resolve(&c->dirs);
    if (s != BX_OK) return s;
    const char *log_dir = c->dirs.log_dir;
    if (!c->metrics_path) c->metrics_path = bx__path_join(log_dir, "metrics.csv");
    if (!c->hparams_path) c->hparams_path = bx__path_join(log_dir, "hparams.yaml");
    if (!c->metrics_path || !c->hparams_path) return BX_ERR_NOMEM;
    if (bx__dir_nonempty(log_dir)) /* Lightning warns, then overwrites */
        bx_logf(BX_LOG_WARNING,
                "Experiment logs directory %s exists and is not empty. Previous log files in "
                "this directory will be deleted when the new ones are saved!",
                log_dir);
    if (c->dirs.name[0] && (s = bx__mkdirs(c->dirs.root_dir)) != BX_OK) return s;
    if ((s = bx__mkdirs(log_dir)) != BX_OK) return s;
    c->experiment = true;
    return BX_OK;
}

static int find_key(const csv_logger *c, const char *k) {
    for (int i = 0; i < c->nkeys; i++)
        if (strcmp(c->keys[i], k) == 0) return i;
    return -1;
}

/* Index of key k (taking ownership of `owned`, a copy of k), added when new. */
static int add_key(csv_logger *c, char *owned) {
    int i = find_key(c, owned);
    if (i >= 0) {
        bx__free(owned);
        return i;
    }
    if (c->nkeys == c->capkeys) {
        int cap = c->capkeys ? c->capkeys * 2 : 8;
        char **k = bx__realloc(c->keys, (size_t)cap * sizeof *k);
        if (!k) {
            bx__free(owned);
            return -1;
        }
        c->keys = k;
        c->capkeys = cap;
    }
    c->keys[c->nkeys] = owned;
    return c->nkeys++;
}

static void row_set(csv_row *r, csv_cell cell) {
    for (int j = 0; j < r->n; j++)
        if (r->cells[j].key == cell.key) { /* dict semantics: replace in place */
            r->cells[j] = cell;
            return;
        }
    r->cells[r->n++] = cell;
}

static bool heuristic_int(const char *name, double v) {
    return (strcmp(name, "epoch") == 0 || strcmp(name, "step") == 0) && isfinite(v) &&
           v == floor(v) && fabs(v) < 9.2e18;
}

static bx_status csv_save(void *self);

static bx_status csv_log_typed(void *self, const char *const *names, const double *values,
                               const bool *is_int, int n, int64_t step) {
    csv_logger *c = self;
    bx_status s = csv_experiment(c);
    if (s != BX_OK) return s;
    if (c->nrows == c->caprows) {
        size_t cap = c->caprows ? c->caprows * 2 : 64;
        csv_row *r = bx__realloc(c->rows, cap * sizeof *r);
        if (!r) return BX_ERR_NOMEM;
        c->rows = r;
        c->caprows = cap;
    }
    csv_row row = {bx__malloc(((size_t)n + 1) * sizeof(csv_cell)), 0};
    if (!row.cells) return BX_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        char *k = bx__prefixed(c->prefix, names[i]);
        int ki = k ? add_key(c, k) : -1;
        if (ki < 0) {
            bx__free(row.cells);
            return BX_ERR_NOMEM;
        }
        double v = values[i];
        bool as_int = is_int ? (is_int[i] && isfinite(v)) : heuristic_int(names[i], v);
        row_set(&row, (csv_cell){ki, as_int, as_int ? (int64_t)v : 0, v});
    }
    char *sk = bx__strdup("step");
    int ki = sk ? add_key(c, sk) : -1;
    if (ki < 0) {
        bx__free(row.cells);
        return BX_ERR_NOMEM;
    }
    int64_t st = step >= 0 ? step : (int64_t)c->nrows; /* step=None -> row index */
    row_set(&row, (csv_cell){ki, true, st, (double)st});
    c->rows[c->nrows++] = row;
    if (step >= 0 && c->flush_n > 0 && (step + 1) % c->flush_n == 0) return csv_save(c);
    return BX_OK;
}

static bx_status csv_log(void *self, const char *const *names, const double *values, int n,
                         int64_t step) {
    return csv_log_typed(self, names, values, NULL, n, step);
}

static void put_field(bx__sbuf *b, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        bx__sb_puts(b, s);
        return;
    }
    bx__sb_putc(b, '"');
    for (const char *p = s; *p; p++) {
        if (*p == '"') bx__sb_putc(b, '"');
        bx__sb_putc(b, *p);
    }
    bx__sb_putc(b, '"');
}

static void put_row(bx__sbuf *b, const csv_logger *c, const csv_row *r, const csv_cell **tmp) {
    for (int k = 0; k < c->nkeys; k++) tmp[k] = NULL;
    for (int j = 0; j < r->n; j++) tmp[r->cells[j].key] = &r->cells[j];
    for (int k = 0; k < c->nkeys; k++) {
        if (k) bx__sb_putc(b, ',');
        const csv_cell *cell = tmp[k];
        if (!cell) continue;
        char num[40];
        if (cell->is_int) snprintf(num, sizeof num, "%lld", (long long)cell->i);
        else bx__py_float(num, cell->v);
        bx__sb_puts(b, num);
    }
    bx__sb_puts(b, "\r\n");
}

static bx_status write_metrics(csv_logger *c) {
    bool append = c->file_valid && c->file_keys == c->nkeys && c->file_rows <= c->nrows;
    FILE *f = NULL;
    if (append) {
        f = fopen(c->metrics_path, "r+b"); /* still ours? else rewrite it whole */
        if (!f || fseek(f, 0, SEEK_END) != 0) {
            if (f) fclose(f);
            f = NULL;
            append = false;
        }
    }
    if (!append) f = fopen(c->metrics_path, "wb");
    if (!f)
        return bx__error(BX_ERR_IO, "CSVLogger: cannot write '%s': %s", c->metrics_path,
                         strerror(errno));
    bx__sbuf b = {0};
    const csv_cell **tmp = bx__malloc((size_t)(c->nkeys ? c->nkeys : 1) * sizeof *tmp);
    if (!tmp) {
        fclose(f);
        return BX_ERR_NOMEM;
    }
    size_t first = append ? c->file_rows : 0;
    if (!append) {
        for (int k = 0; k < c->nkeys; k++) {
            if (k) bx__sb_putc(&b, ',');
            put_field(&b, c->keys[k]);
        }
        bx__sb_puts(&b, "\r\n");
    }
    for (size_t r = first; r < c->nrows; r++) put_row(&b, c, &c->rows[r], tmp);
    bx__free(tmp);
    bx_status s = BX_OK;
    if (b.oom) {
        s = BX_ERR_NOMEM;
    } else if ((b.n && fwrite(b.p, 1, b.n, f) != b.n) || fflush(f) != 0) {
        s = bx__error(BX_ERR_IO, "CSVLogger: cannot write '%s': %s", c->metrics_path,
                      strerror(errno));
    }
    if (fclose(f) != 0 && s == BX_OK)
        s = bx__error(BX_ERR_IO, "CSVLogger: cannot write '%s': %s", c->metrics_path,
                      strerror(errno));
    bx__sb_free(&b);
    c->file_valid = s == BX_OK;
    c->file_keys = c->nkeys;
    c->file_rows = c->nrows;
    return s;
}

static bx_status csv_save(void *self) {
    csv_logger *c = self;
    bx_status s = csv_experiment(c);
    if (s != BX_OK) return s;
    if (!c->hparams_written) {
        s = bx__yaml_write_file(c->hparams_path, c->hparams);
        if (s != BX_OK) return s;
        c->hparams_written = true;
    }
    if (c->nrows == 0) return BX_OK;
    return write_metrics(c);
}

static bx_status csv_log_hyperparams(void *self, const bx_state *params) {
    csv_logger *c = self;
    bx_status s = csv_experiment(c);
    if (s != BX_OK) return s;
    c->hparams_written = false;
    return bx__hparams_update(c->hparams, params);
}

static bx_status csv_finalize(void *self, const char *status) {
    csv_logger *c = self;
    if (!c->experiment) return BX_OK; /* nothing was ever logged */
    return csv_save(c);
}

static const char *csv_name(void *self) { return ((csv_logger *)self)->dirs.name; }
static const char *csv_save_dir(void *self) { return ((csv_logger *)self)->dirs.save_dir; }
static const char *csv_version(void *self) {
    csv_logger *c = self;
    return bx__logger_dirs_resolve(&c->dirs) == BX_OK ? c->dirs.version : NULL;
}
static const char *csv_log_dir(void *self) {
    csv_logger *c = self;
    return bx__logger_dirs_resolve(&c->dirs) == BX_OK ? c->dirs.log_dir : NULL;
}

static void csv_destroy(void *self) {
    csv_logger *c = self;
    if (!c) return;
    bx__logger_dirs_free(&c->dirs);
    bx__free(c->prefix);
    bx_state_free(c->hparams);
    for (int k = 0; k < c->nkeys; k++) bx__free(c->keys[k]);
    bx__free(c->keys);
    for (size_t r = 0; r < c->nrows; r++) bx__free(c->rows[r].cells);
    bx__free(c->rows);
    bx__free(c->metrics_path);
    bx__free(c->hparams_path);
    bx__free(c);
}

static const bx_logger_ops CSV_OPS = {
    .name = "CSVLogger",
    .log_metrics = csv_log,
    .log_hyperparams = csv_log_hyperparams,
    .save = csv_save,
    .finalize = csv_finalize,
    .experiment_name = csv_name,
    .version = csv_version,
    .save_dir = csv_save_dir,
    .log_dir = csv_log_dir,
    .destroy = csv_destroy,
    .log_metrics_typed = csv_log_typed,
};

bx_logger *bx_csv_logger_new(const bx_csv_logger_opts *o) {
    bx_csv_logger_opts def = BX_CSV_LOGGER_OPTS_INIT;
    if (!o) o = &def;
    csv_logger *c = bx__calloc(sizeof *c);
    if (!c) return NULL;
    if (bx__logger_dirs_init(&c->dirs, o->save_dir, o->name, o->version) != BX_OK) {
        bx__free(c);
        return NULL;
    }
    c->prefix = bx__strdup(o->prefix ? o->prefix : "");
    c->flush_n = o->flush_logs_every_n_steps;
    c->hparams = bx_state_dict();
    if (!c->prefix || !c->hparams) {
        csv_destroy(c);
        return NULL;
    }
    bx_logger *lg = bx_logger_new(&CSV_OPS, c);
    if (!lg) csv_destroy(c);
    return lg;
}
