/* summary.c - Lightning 1.9.5's ModelSummary table (max_depth levels of
 * submodules: index, name, type, parameter count), then the trainable /
 * non-trainable / total counts and the float32 size in MB, formatted as
 * pytorch_lightning.utilities.model_summary does:
 *
 *     | Name | Type   | Params
 *   ---------------------------------
 *   0 | fc1  | Linear | 200 K
 *   ...
 *   235 K     Trainable params
 *   0         Non-trainable params
 *   235 K     Total params
 *   0.941     Total estimated model params size (MB)
 */
#include "cli/cli_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Python's f"{v:,d}" */
static void commas(char *out, size_t n, long long v) {
    char d[32];
    snprintf(d, sizeof d, "%lld", v < 0 ? -v : v);
    size_t len = strlen(d), k = 0;
    if (v < 0 && k + 1 < n) out[k++] = '-';
    for (size_t i = 0; i < len && k + 1 < n; i++) {
        out[k++] = d[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len && k + 1 < n) out[k++] = ',';
    }
    out[k] = '\0';
}

/* Python's f"{v:,.<prec>f}" for v >= 0 */
static void commas_f(char *out, size_t n, double v, int prec) {
    char t[64];
    snprintf(t, sizeof t, "%.*f", prec, v);
    char *dot = strchr(t, '.');
    long long ip = atoll(t);
    char ib[48];
    commas(ib, sizeof ib, ip);
    snprintf(out, n, "%s%s", ib, dot ? dot : "");
}

const char *bx__human_count(int64_t number, char *buf, size_t cap) {
    static const char *const LABELS[] = {" ", "K", "M", "B", "T"};
    int num_digits = number > 0 ? (int)floor(log10((double)number)) + 1 : 1;
    int groups = (num_digits + 2) / 3;
    if (groups > 5) groups = 5;
    double v = (double)number * pow(10.0, -3.0 * (groups - 1));
    int idx = groups - 1;
    char t[48];
    if (idx < 1 || v >= 100) commas(t, sizeof t, (long long)v);
    else commas_f(t, sizeof t, v, 1);
    snprintf(buf, cap, "%s %s", t, LABELS[idx]);
    return buf;
}

typedef struct row {
    char idx[16], name[256], type[64], params[32];
} row;

static void pad(char **p, size_t *left, const char *s, int w) {
    int k = snprintf(*p, *left, "%-*s", w, s);
    if (k > 0 && (size_t)k < *left) {
        *p += k;
        *left -= (size_t)k;
    }
}

char *bx__model_summary_depth(bx_module *m, int64_t max_depth) {
    bx_named_modules *nm = bx_module_named_modules(m);
    if (!nm) return NULL;
    row *rows = bx__calloc(sizeof(row) * (size_t)(nm->n + 1));
    int nr = 0;
    for (int i = 0; rows && i < nm->n; i++) {
        const char *nmn = nm->names[i];
        if (!nmn[0]) continue; /* the root */
        int depth = 1;
        for (const char *q = nmn; *q; q++) depth += *q == '.';
        if (max_depth >= 0 && depth > max_depth) continue;
        row *r = &rows[nr];
        snprintf(r->idx, sizeof r->idx, "%d", nr);
        snprintf(r->name, sizeof r->name, "%s", nmn);
        snprintf(r->type, sizeof r->type, "%s", bx_module_type_name(nm->modules[i]));
        bx__human_count(bx_module_num_params(nm->modules[i], false), r->params, sizeof r->params);
        nr++;
    }
    bx_named_modules_free(nm);
    if (!rows) return NULL;
    int w[4] = {1, 4, 4, 6};
    for (int i = 0; i < nr; i++) {
        const char *c[4] = {rows[i].idx, rows[i].name, rows[i].type, rows[i].params};
        for (int j = 0; j < 4; j++)
            if ((int)strlen(c[j]) > w[j]) w[j] = (int)strlen(c[j]);
    }
    int total_w = w[0] + w[1] + w[2] + w[3] + 3 * 5;
    size_t cap = (size_t)(nr + 10) * (size_t)(total_w + 64) + 512, left = cap;
    char *out = bx__malloc(cap), *p = out;
    if (!out) {
        bx__free(rows);
        return NULL;
    }
    const char *hdr[4] = {" ", "Name", "Type", "Params"};
    for (int j = 0; j < 4; j++) {
        if (j) pad(&p, &left, " | ", 0);
        pad(&p, &left, hdr[j], w[j]);
    }
    pad(&p, &left, "\n", 0);
    for (int k = 0; k < total_w; k++) pad(&p, &left, "-", 0);
    for (int i = 0; i < nr; i++) {
        pad(&p, &left, "\n", 0);
        const char *c[4] = {rows[i].idx, rows[i].name, rows[i].type, rows[i].params};
        for (int j = 0; j < 4; j++) {
            if (j) pad(&p, &left, " | ", 0);
            pad(&p, &left, c[j], w[j]);
        }
    }
    pad(&p, &left, "\n", 0);
    for (int k = 0; k < total_w; k++) pad(&p, &left, "-", 0);
    int64_t total = bx_module_num_params(m, false), train = bx_module_num_params(m, true);
    char t[48], sz[48];
    pad(&p, &left, "\n", 0);
    pad(&p, &left, bx__human_count(train, t, sizeof t), 10);
    pad(&p, &left, "Trainable params\n", 0);
    pad(&p, &left, bx__human_count(total - train, t, sizeof t), 10);
    pad(&p, &left, "Non-trainable params\n", 0);
    pad(&p, &left, bx__human_count(total, t, sizeof t), 10);
    pad(&p, &left, "Total params\n", 0);
    commas_f(sz, sizeof sz, (double)total * 4.0 * 1e-6, 3);
    pad(&p, &left, sz, 10);
    pad(&p, &left, "Total estimated model params size (MB)", 0);
    bx__free(rows);
    return out;
}

char *bx__model_summary(bx_module *m) { return bx__model_summary_depth(m, 1); }

/* ---- the ModelSummary callback ------------------------------------------------ */
typedef struct ms_cb {
    int64_t max_depth;
} ms_cb;

static bx_status ms_fit_start(void *self, bx_trainer *tr) {
    ms_cb *c = self;
    if (c->max_depth == 0) return BX_OK;
    char *s = bx__model_summary_depth(bx_trainer_module(tr), c->max_depth);
    if (!s) return bx__error(BX_ERR_NOMEM, "ModelSummary: out of memory");
    printf("%s\n", s);
    fflush(stdout);
    bx__free(s);
    return BX_OK;
}
static void ms_destroy(void *self) { bx__free(self); }
static const bx_callback_ops MS_OPS = {.name = "ModelSummary", .on_fit_start = ms_fit_start, .destroy = ms_destroy};

bx_callback *bx__model_summary_callback_new(int64_t max_depth) {
    if (max_depth < -1) {
        bx__error(BX_ERR_INVALID, "ModelSummary: max_depth %lld, expected -1 (all), 0 (off) or more",
                  (long long)max_depth);
        return NULL;
    }
    ms_cb *c = bx__calloc(sizeof *c);
    if (!c) return NULL;
    c->max_depth = max_depth;
    return bx_callback_new(&MS_OPS, c);
}
