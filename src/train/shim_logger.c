/* shim_logger.c - TEMPORARY weak logger.h implementation (logger wrapper and
 * a CSVLogger writing metrics.csv + hparams.yaml like Lightning 1.9.5) until
 * the loggers helper's land; theirs override these at link time. */
#include "blixt/logger.h"
#include "core/core_int.h"
#include "io/state_int.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define WEAK __attribute__((weak))

struct bx_logger {
    const bx_logger_ops *ops;
    void *self;
};

WEAK bx_logger *bx_logger_new(const bx_logger_ops *ops, void *self) {
    bx_logger *l = bx__calloc(sizeof *l);
    if (!l) {
        if (ops && ops->destroy) ops->destroy(self);
        return NULL;
    }
    l->ops = ops;
    l->self = self;
    return l;
}
WEAK void bx_logger_free(bx_logger *lg) {
    if (!lg) return;
    if (lg->ops->destroy) lg->ops->destroy(lg->self);
    bx__free(lg);
}
WEAK const bx_logger_ops *bx_logger_get_ops(const bx_logger *lg) { return lg->ops; }
WEAK void *bx_logger_self(const bx_logger *lg) { return lg->self; }
WEAK bx_status bx_logger_log_metrics(bx_logger *lg, const char *const *names, const double *values, int n,
                                     int64_t step) {
    return lg->ops->log_metrics ? lg->ops->log_metrics(lg->self, names, values, n, step) : BX_OK;
}
WEAK bx_status bx_logger_log_hyperparams(bx_logger *lg, const bx_state *p) {
    return lg->ops->log_hyperparams ? lg->ops->log_hyperparams(lg->self, p) : BX_OK;
}
WEAK bx_status bx_logger_save(bx_logger *lg) { return lg->ops->save ? lg->ops->save(lg->self) : BX_OK; }
WEAK bx_status bx_logger_finalize(bx_logger *lg, const char *status) {
    return lg->ops->finalize ? lg->ops->finalize(lg->self, status) : BX_OK;
}
WEAK const char *bx_logger_name(bx_logger *lg) { return lg->ops->experiment_name ? lg->ops->experiment_name(lg->self) : NULL; }
WEAK const char *bx_logger_version(bx_logger *lg) { return lg->ops->version ? lg->ops->version(lg->self) : NULL; }
WEAK const char *bx_logger_save_dir(bx_logger *lg) { return lg->ops->save_dir ? lg->ops->save_dir(lg->self) : NULL; }
WEAK const char *bx_logger_log_dir(bx_logger *lg) { return lg->ops->log_dir ? lg->ops->log_dir(lg->self) : NULL; }

/* ---- CSVLogger ------------------------------------------------------------- */
typedef struct csv_row {
    int n;
    char **keys;
    char **vals;
} csv_row;

typedef struct csv_lg {
    char save_dir[1024], name[256], version[64], log_dir[1400];
    int64_t vnum;
    bool resolved;
    csv_row *rows;
    int nrows, caprows;
} csv_lg;

static void mkdirs(const char *path) {
    char tmp[1400];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0777);
            *p = '/';
        }
    mkdir(tmp, 0777);
}

static void resolve(csv_lg *c) {
    if (c->resolved) return;
    char base[1300];
    const char *sd = c->save_dir;
    while (sd[0] == '.' && sd[1] == '/') sd += 2;
    bool dot = strcmp(sd, ".") == 0 || !*sd;
    if (c->name[0]) snprintf(base, sizeof base, "%s%s%s", dot ? "" : sd, dot ? "" : "/", c->name);
    else snprintf(base, sizeof base, "%s", dot ? "." : sd);
    if (c->vnum < 0) {
        int64_t v = 0;
        DIR *d = opendir(base);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            long long k;
            if (sscanf(e->d_name, "version_%lld", &k) == 1 && k + 1 > v) v = k + 1;
        }
        if (d) closedir(d);
        c->vnum = v;
    }
    if (!c->version[0]) snprintf(c->version, sizeof c->version, "version_%lld", (long long)c->vnum);
    snprintf(c->log_dir, sizeof c->log_dir, "%s/%s", base, c->version);
    c->resolved = true;
}

static void fmt_val(char *buf, const char *key, double v) {
    if ((strcmp(key, "epoch") == 0 || strcmp(key, "step") == 0) && v == floor(v))
        snprintf(buf, 32, "%lld", (long long)v);
    else if (isnan(v)) snprintf(buf, 32, "nan");
    else if (isinf(v)) snprintf(buf, 32, v > 0 ? "inf" : "-inf");
    else bx__fmt_double(buf, v);
}

static bx_status csv_log(void *self, const char *const *names, const double *values, int n, int64_t step) {
    csv_lg *c = self;
    if (c->nrows == c->caprows) {
        int cap = c->caprows ? 2 * c->caprows : 16;
        csv_row *r = bx__realloc(c->rows, (size_t)cap * sizeof *r);
        if (!r) return BX_ERR_NOMEM;
        c->rows = r;
        c->caprows = cap;
    }
    csv_row *r = &c->rows[c->nrows++];
    r->n = 0;
    r->keys = bx__calloc((size_t)(n + 1) * sizeof(char *));
    r->vals = bx__calloc((size_t)(n + 1) * sizeof(char *));
    if (!r->keys || !r->vals) return BX_ERR_NOMEM;
    char buf[64];
    for (int i = 0; i <= n; i++) {
        const char *k = i < n ? names[i] : "step";
        fmt_val(buf, k, i < n ? values[i] : (double)step);
        int j;
        for (j = 0; j < r->n; j++)
            if (strcmp(r->keys[j], k) == 0) break;
        if (j == r->n) {
            r->keys[j] = bx__strdup(k);
            r->n++;
        } else {
            bx__free(r->vals[j]);
        }
        r->vals[j] = bx__strdup(buf);
    }
    return BX_OK;
}

static bx_status csv_save(void *self) {
    csv_lg *c = self;
    resolve(c);
    mkdirs(c->log_dir);
    char p[1500];
    snprintf(p, sizeof p, "%s/hparams.yaml", c->log_dir);
    FILE *f = fopen(p, "w");
    if (!f) return bx__error(BX_ERR_IO, "CSVLogger: cannot write '%s'", p);
    fputs("{}\n", f);
    fclose(f);
    if (c->nrows == 0) return BX_OK;
    const char *hdr[512];
    int nh = 0;
    for (int i = 0; i < c->nrows; i++)
        for (int j = 0; j < c->rows[i].n; j++) {
            int k;
            for (k = 0; k < nh; k++)
                if (strcmp(hdr[k], c->rows[i].keys[j]) == 0) break;
            if (k == nh && nh < 512) hdr[nh++] = c->rows[i].keys[j];
        }
    snprintf(p, sizeof p, "%s/metrics.csv", c->log_dir);
    f = fopen(p, "w");
    if (!f) return bx__error(BX_ERR_IO, "CSVLogger: cannot write '%s'", p);
    for (int k = 0; k < nh; k++) fprintf(f, "%s%s", k ? "," : "", hdr[k]);
    fputs("\r\n", f);
    for (int i = 0; i < c->nrows; i++) {
        for (int k = 0; k < nh; k++) {
            const char *v = "";
            for (int j = 0; j < c->rows[i].n; j++)
                if (strcmp(c->rows[i].keys[j], hdr[k]) == 0) v = c->rows[i].vals[j];
            fprintf(f, "%s%s", k ? "," : "", v);
        }
        fputs("\r\n", f);
    }
    fclose(f);
    return BX_OK;
}

static bx_status csv_hp(void *self, const bx_state *p) {
    (void)self;
    (void)p;
    return BX_OK;
}
static bx_status csv_finalize(void *self, const char *status) {
    (void)status;
    return csv_save(self);
}
static const char *csv_name(void *self) { return ((csv_lg *)self)->name; }
static const char *csv_version(void *self) {
    resolve(self);
    return ((csv_lg *)self)->version;
}
static const char *csv_save_dir(void *self) { return ((csv_lg *)self)->save_dir; }
static const char *csv_log_dir(void *self) {
    resolve(self);
    return ((csv_lg *)self)->log_dir;
}
static void csv_destroy(void *self) {
    csv_lg *c = self;
    for (int i = 0; i < c->nrows; i++) {
        for (int j = 0; j < c->rows[i].n; j++) {
            bx__free(c->rows[i].keys[j]);
            bx__free(c->rows[i].vals[j]);
        }
        bx__free(c->rows[i].keys);
        bx__free(c->rows[i].vals);
    }
    bx__free(c->rows);
    bx__free(c);
}

static const bx_logger_ops CSV_OPS = {"CSVLogger", csv_log, csv_hp, csv_save, csv_finalize, csv_name,
                                      csv_version, csv_save_dir, csv_log_dir, csv_destroy};

WEAK bx_logger *bx_csv_logger_new(const bx_csv_logger_opts *o) {
    bx_csv_logger_opts def = BX_CSV_LOGGER_OPTS_INIT;
    if (!o) o = &def;
    csv_lg *c = bx__calloc(sizeof *c);
    if (!c) return NULL;
    snprintf(c->save_dir, sizeof c->save_dir, "%s", o->save_dir ? o->save_dir : ".");
    snprintf(c->name, sizeof c->name, "%s", o->name ? o->name : "lightning_logs");
    c->vnum = o->version.number;
    if (o->version.text) snprintf(c->version, sizeof c->version, "%s", o->version.text);
    return bx_logger_new(&CSV_OPS, c);
}
