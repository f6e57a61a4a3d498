/* main.c - blixt-golden: runs PyTorch golden cases (tests/golden/README.md).
 *
 * Usage: blixt-golden [--strict] PATH...
 * Each PATH is a .safetensors case file or a folder (searched recursively for
 * *.safetensors, files sorted by path; index.json and other files ignored).
 * For each case the metadata `kind` is looked up in every kind table of
 * golden.h and run; exactly one line is printed per case:
 *     PASS name (worst err X)
 *     FAIL name: first failure message (worst err X)
 * then `N passed, M failed`. Exit status 0 when all pass, 1 when any fails,
 * 2 on a usage error.
 *
 * Comparison rule: |got - ref| <= atol + tol * |ref| elementwise (tol/atol
 * from the case metadata unless gc_compare_tol gives them), exact for integer
 * and bool references and when tol == atol == 0. NaN matches only NaN, inf
 * only the same inf.
 *
 * Worst err X: the largest NORMALISED error over every compared element,
 *     |got - ref| / (atol + tol * |ref|),
 * so X <= 1 means within tolerance and X = 0.5 means "half the allowed
 * error". Exact comparisons contribute 0 when equal and inf otherwise. The
 * failure message gives the raw values and |diff| of the first bad element.
 *
 * --strict additionally fails a case when an `out.*` or `grad.*` tensor of
 * the file was never compared (to find kinds that skip outputs). A kind that
 * compares nothing at all always fails. */
#include "golden.h"

#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Empty default tables, so the runner links before every kinds_*.c exists:
 * a kinds file's (strong) table replaces the weak one at link time. */
#define GOLDEN_WEAK_TABLE(name) __attribute__((weak)) const gkind name[] = {{NULL, NULL}}
GOLDEN_WEAK_TABLE(golden_kinds_elementwise);
GOLDEN_WEAK_TABLE(golden_kinds_nn);
GOLDEN_WEAK_TABLE(golden_kinds_conv);
GOLDEN_WEAK_TABLE(golden_kinds_optim);
GOLDEN_WEAK_TABLE(golden_kinds_sched);
GOLDEN_WEAK_TABLE(golden_kinds_e2e);
GOLDEN_WEAK_TABLE(golden_kinds_swa);
GOLDEN_WEAK_TABLE(golden_kinds_prune);
GOLDEN_WEAK_TABLE(golden_kinds_qat);

struct gcase {
    const char *name;
    bx_st_file *f;
    json_t *args;
    double tol, atol;
    bool failed;
    char msg[1024];
    double worst;
    int compared;       /* number of gc_compare* calls */
    bool *ref_compared; /* per tensor index of the file (--strict) */
    bx_tensor **owned;
    int nown, capown;
};

/* ---- case API (golden.h) ----------------------------------------------------- */

void gc_fail(gcase *c, const char *fmt, ...) {
    if (c->failed) return;
    c->failed = true;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->msg, sizeof c->msg, fmt, ap);
    va_end(ap);
}

const bx_tensor *gc_get(gcase *c, const char *name) {
    for (int i = 0; i < bx_st_count(c->f); i++)
        if (strcmp(bx_st_name(c->f, i), name) == 0) return bx_st_get_index(c->f, i);
    return NULL;
}

const bx_tensor *gc_need(gcase *c, const char *name) {
    const bx_tensor *t = gc_get(c, name);
    if (!t) gc_fail(c, "missing tensor '%s' in the case file", name);
    return t;
}

json_t *gc_args(gcase *c) { return c->args; }

const char *gc_meta(gcase *c, const char *key) { return bx_st_metadata(c->f, key); }

void gc_own(gcase *c, bx_tensor *t) {
    if (!t) return;
    if (c->nown == c->capown) {
        int nc = c->capown ? 2 * c->capown : 32;
        bx_tensor **n = realloc(c->owned, (size_t)nc * sizeof *n);
        if (!n) {
            gc_fail(c, "runner: out of memory");
            bx_tensor_free(t);
            return;
        }
        c->owned = n;
        c->capown = nc;
    }
    c->owned[c->nown++] = t;
}

bx_tensor *gc_copy(gcase *c, const char *name) {
    const bx_tensor *src = gc_get(c, name);
    if (!src) return NULL;
    bx_tensor *t = bx_tensor_clone(src);
    if (!t) gc_fail(c, "copy of '%s': %s", name, bx_errmsg());
    gc_own(c, t);
    return t;
}

bx_tensor *gc_param(gcase *c, const char *name) {
    const bx_tensor *src = gc_get(c, name);
    if (!src) return NULL;
    bx_tensor *t = bx_tensor_new(BX_F32, src->ndim, src->shape);
    if (!t) {
        gc_fail(c, "param '%s': %s", name, bx_errmsg());
        return NULL;
    }
    bx_copy(t, src);
    bx_param_mark(t);
    gc_own(c, t);
    return t;
}

static void note_compared(gcase *c, const char *ref_name) {
    c->compared++;
    if (!c->ref_compared) return;
    for (int i = 0; i < bx_st_count(c->f); i++)
        if (strcmp(bx_st_name(c->f, i), ref_name) == 0) c->ref_compared[i] = true;
}

/* Normalised error of one element; 0 = equal, > 1 = out of tolerance. */
static double elem_err(double got, double ref, double tol, double atol, bool exact) {
    if (isnan(ref) || isnan(got)) return isnan(ref) && isnan(got) ? 0.0 : INFINITY;
    if (got == ref) return 0.0;
    if (exact || isinf(ref) || isinf(got)) return INFINITY;
    double allowed = atol + tol * fabs(ref);
    return allowed > 0 ? fabs(got - ref) / allowed : INFINITY;
}

static void index_str(const bx_tensor *t, int64_t i, char *buf, size_t n) {
    int64_t idx[BX_MAX_DIMS];
    for (int d = t->ndim - 1; d >= 0; d--) {
        idx[d] = t->shape[d] ? i % t->shape[d] : 0;
        i = t->shape[d] ? i / t->shape[d] : 0;
    }
    size_t pos = (size_t)snprintf(buf, n, "[");
    for (int d = 0; d < t->ndim && pos < n; d++)
        pos += (size_t)snprintf(buf + pos, n - pos, d ? ",%lld" : "%lld", (long long)idx[d]);
    if (pos < n) snprintf(buf + pos, n - pos, "]");
}

void gc_compare_tol(gcase *c, const char *ref_name, const bx_tensor *got, double tol, double atol) {
    note_compared(c, ref_name);
    const bx_tensor *ref = gc_get(c, ref_name);
    if (!ref) {
        gc_fail(c, "missing reference tensor '%s' in the case file", ref_name);
        return;
    }
    if (!got) {
        gc_fail(c, "%s: no result (NULL): %s", ref_name, bx_errmsg());
        c->worst = INFINITY;
        return;
    }
    if (bx_is_poison(got)) {
        gc_fail(c, "%s: result is poison (the op failed)", ref_name);
        c->worst = INFINITY;
        return;
    }
    char sg[96], sr[96];
    if (!bx_same_shape(got, ref)) {
        gc_fail(c, "%s: shape %s but reference %s", ref_name, bx_shape_str(got, sg, sizeof sg),
                bx_shape_str(ref, sr, sizeof sr));
        c->worst = INFINITY;
        return;
    }
    bool exact = ref->dtype != BX_F32 && ref->dtype != BX_F64;
    exact = exact || (tol == 0 && atol == 0);
    int64_t n = bx_numel(ref), bad = 0, first = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double g = bx_get(got, i), r = bx_get(ref, i);
        double e = elem_err(g, r, tol, atol, exact);
        if (e > worst || isnan(e)) worst = e;
        if (!(e <= 1.0)) {
            if (first < 0) first = i;
            bad++;
        }
    }
    if (worst > c->worst) c->worst = worst;
    if (bad) {
        double g = bx_get(got, first), r = bx_get(ref, first);
        char at[160];
        index_str(ref, first, at, sizeof at);
        if (exact)
            gc_fail(c, "%s: %lld of %lld elements differ (exact), first at %s: got %.9g want %.9g", ref_name,
                    (long long)bad, (long long)n, at, g, r);
        else
            gc_fail(c, "%s: %lld of %lld elements out of tolerance, first at %s: got %.9g want %.9g "
                       "(|diff| %.3g > atol %g + tol %g * |ref|)",
                    ref_name, (long long)bad, (long long)n, at, g, r, fabs(g - r), atol, tol);
    }
}

void gc_compare(gcase *c, const char *ref_name, const bx_tensor *got) {
    gc_compare_tol(c, ref_name, got, c->tol, c->atol);
}

void gc_compare_value(gcase *c, const char *what, double got, double ref) {
    c->compared++;
    bool exact = c->tol == 0 && c->atol == 0;
    double e = elem_err(got, ref, c->tol, c->atol, exact);
    if (e > c->worst || isnan(e)) c->worst = e;
    if (!(e <= 1.0))
        gc_fail(c, "%s: got %.9g want %.9g (|diff| %.3g, atol %g + tol %g * |ref|)", what, got, ref, fabs(got - ref),
                c->atol, c->tol);
}

double gc_arg_num(gcase *c, const char *key, double dflt) {
    json_t *v = json_object_get(c->args, key);
    if (!v || json_is_null(v)) return dflt;
    if (!json_is_number(v)) {
        gc_fail(c, "args.%s: expected a number", key);
        return dflt;
    }
    return json_number_value(v);
}

int64_t gc_arg_int(gcase *c, const char *key, int64_t dflt) {
    json_t *v = json_object_get(c->args, key);
    if (!v || json_is_null(v)) return dflt;
    if (json_is_integer(v)) return (int64_t)json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) return (int64_t)json_real_value(v);
    if (json_is_boolean(v)) return json_is_true(v);
    gc_fail(c, "args.%s: expected an integer", key);
    return dflt;
}

bool gc_arg_bool(gcase *c, const char *key, bool dflt) {
    json_t *v = json_object_get(c->args, key);
    if (!v || json_is_null(v)) return dflt;
    if (json_is_boolean(v)) return json_is_true(v);
    if (json_is_integer(v)) return json_integer_value(v) != 0;
    gc_fail(c, "args.%s: expected a boolean", key);
    return dflt;
}

const char *gc_arg_str(gcase *c, const char *key, const char *dflt) {
    json_t *v = json_object_get(c->args, key);
    if (!v || json_is_null(v)) return dflt;
    if (!json_is_string(v)) {
        gc_fail(c, "args.%s: expected a string", key);
        return dflt;
    }
    return json_string_value(v);
}

/* ---- built-in kind for the runner's own test --------------------------------- */

/* runner_selftest: `in.x` (copied through gc_param) must equal `out.y`;
 * optional `in.i` vs `out.i` (exact); optional args value/ref through
 * gc_compare_value; args.missing names a tensor fetched with gc_need. */
static void kind_runner_selftest(gcase *c) {
    bx_tensor *p = gc_param(c, "in.x");
    if (p && (!p->requires_grad || p->dtype != BX_F32)) gc_fail(c, "gc_param: not an f32 parameter");
    if (p) gc_compare(c, "out.y", p);
    if (gc_get(c, "out.i")) gc_compare(c, "out.i", gc_copy(c, "in.i"));
    double v = gc_arg_num(c, "value", NAN);
    if (!isnan(v)) gc_compare_value(c, "value", v, gc_arg_num(c, "ref", 0));
    const char *need = gc_arg_str(c, "missing", NULL);
    if (need) gc_need(c, need);
}

static const gkind golden_kinds_builtin[] = {{"runner_selftest", kind_runner_selftest}, {NULL, NULL}};

static gkind_fn find_kind(const char *kind) {
    const gkind *tables[] = {golden_kinds_elementwise, golden_kinds_nn, golden_kinds_conv, golden_kinds_optim,
                             golden_kinds_sched, golden_kinds_e2e, golden_kinds_swa, golden_kinds_prune,
                             golden_kinds_qat, golden_kinds_builtin};
    for (size_t t = 0; t < sizeof tables / sizeof tables[0]; t++)
        for (const gkind *k = tables[t]; k && k->kind; k++)
            if (strcmp(k->kind, kind) == 0) return k->run;
    return NULL;
}

/* ---- running cases ------------------------------------------------------------ */

/* Python's json.dumps writes float('inf') / float('nan') as the bare tokens
 * Infinity, -Infinity and NaN, which are not JSON: jansson rejects them.
 * Returns a malloc'd copy of `text` with those tokens (outside strings)
 * quoted as "inf", "-inf" and "nan" (kinds read such strings, e.g. a norm
 * p), or NULL on NOMEM. */
static char *quote_nonfinite(const char *text) {
    size_t n = strlen(text);
    char *out = malloc(n * 2 + 1); /* "-inf" quoted (6) is shorter than -Infinity (9) */
    if (!out) return NULL;
    size_t o = 0;
    bool in_str = false;
    for (size_t i = 0; i < n;) {
        char ch = text[i];
        if (in_str) {
            out[o++] = ch;
            if (ch == '\\' && i + 1 < n) out[o++] = text[++i];
            else if (ch == '"') in_str = false;
            i++;
            continue;
        }
        if (ch == '"') in_str = true;
        static const char *const toks[] = {"-Infinity", "Infinity", "NaN"};
        static const char *const reps[] = {"\"-inf\"", "\"inf\"", "\"nan\""};
        bool done = false;
        for (int t = 0; t < 3 && !done; t++) {
            size_t len = strlen(toks[t]);
            if (strncmp(text + i, toks[t], len) == 0) {
                memcpy(out + o, reps[t], strlen(reps[t]));
                o += strlen(reps[t]);
                i += len;
                done = true;
            }
        }
        if (!done) out[o++] = text[i++];
    }
    out[o] = '\0';
    return out;
}

/* Parses a tolerance string; false if present but not a number >= 0. */
static bool parse_tol(const char *s, double *out) {
    *out = 0;
    if (!s) return true;
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !(v >= 0)) return false;
    *out = v;
    return true;
}

static void case_name(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    size_t l = strlen(out);
    if (l > 12 && strcmp(out + l - 12, ".safetensors") == 0) out[l - 12] = '\0';
}

static void run_body(gcase *c, bool strict) {
    const char *kind = gc_meta(c, "kind");
    if (!kind) {
        gc_fail(c, "no 'kind' in the metadata");
        return;
    }
    if (!parse_tol(gc_meta(c, "tol"), &c->tol) || !parse_tol(gc_meta(c, "atol"), &c->atol)) {
        gc_fail(c, "bad tol/atol metadata ('%s', '%s')", gc_meta(c, "tol") ? gc_meta(c, "tol") : "",
                gc_meta(c, "atol") ? gc_meta(c, "atol") : "");
        return;
    }
    const char *args = gc_meta(c, "args");
    if (args) {
        json_error_t err;
        c->args = json_loads(args, 0, &err);
        if (!c->args) { /* maybe Python's Infinity / NaN tokens */
            char *q = quote_nonfinite(args);
            if (q) c->args = json_loads(q, 0, &err);
            free(q);
        }
        if (!c->args || !json_is_object(c->args)) {
            gc_fail(c, "metadata 'args' is not a JSON object: %s", c->args ? "wrong type" : err.text);
            return;
        }
    } else {
        c->args = json_object();
    }
    gkind_fn fn = find_kind(kind);
    if (!fn) {
        gc_fail(c, "unknown kind '%s'", kind);
        return;
    }
    if (strict) c->ref_compared = calloc((size_t)bx_st_count(c->f) + 1, sizeof(bool));
    bx_clear_error();
    fn(c);
    if (!c->failed && c->compared == 0) gc_fail(c, "kind '%s' compared nothing", kind);
    for (int i = 0; strict && !c->failed && i < bx_st_count(c->f); i++) {
        const char *nm = bx_st_name(c->f, i);
        if ((strncmp(nm, "out.", 4) == 0 || strncmp(nm, "grad.", 5) == 0) && !c->ref_compared[i])
            gc_fail(c, "--strict: '%s' was never compared", nm);
    }
}

/* Runs one case file and prints its line; returns true on PASS. */
static bool run_case(const char *path, bool strict) {
    char name[512];
    case_name(path, name, sizeof name);
    gcase c;
    memset(&c, 0, sizeof c);
    c.name = name;
    bx_clear_error();
    if (bx_st_open(path, &c.f) != BX_OK) {
        gc_fail(&c, "cannot load: %s", bx_errmsg());
    } else {
        run_body(&c, strict);
    }
    for (int i = c.nown - 1; i >= 0; i--) bx_tensor_free(c.owned[i]);
    free(c.owned);
    free(c.ref_compared);
    if (c.args) json_decref(c.args);
    bx_st_close(c.f);
    if (c.failed) printf("FAIL %s: %s (worst err %.3g)\n", name, c.msg, c.worst);
    else printf("PASS %s (worst err %.3g)\n", name, c.worst);
    fflush(stdout);
    return !c.failed;
}

typedef struct pathlist {
    char **p;
    int n, cap;
} pathlist;

static void push_path(pathlist *l, const char *p) {
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        char **np = realloc(l->p, (size_t)l->cap * sizeof *np);
        if (!np) {
            fprintf(stderr, "blixt-golden: out of memory\n");
            exit(2);
        }
        l->p = np;
    }
    char *d = strdup(p);
    if (!d) {
        fprintf(stderr, "blixt-golden: out of memory\n");
        exit(2);
    }
    l->p[l->n++] = d;
}

static void collect(const char *dir, pathlist *l) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        char p[4096];
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0) continue;
        size_t nl = strlen(de->d_name);
        if (S_ISDIR(sb.st_mode)) collect(p, l);
        else if (nl > 12 && strcmp(de->d_name + nl - 12, ".safetensors") == 0) push_path(l, p);
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int usage(void) {
    fprintf(stderr, "usage: blixt-golden [--strict] PATH...\n"
                    "  PATH: a .safetensors golden case or a folder of them (searched recursively)\n"
                    "  --strict: also fail when an out.*/grad.* tensor was never compared\n"
                    "prints PASS/FAIL per case with the worst normalised error |got-ref|/(atol+tol*|ref|)\n"
                    "(<= 1 passes); exit status 1 if any case fails, 2 on a usage error\n");
    return 2;
}

int main(int argc, char **argv) {
    bool strict = false;
    int npaths = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--strict") == 0) strict = true;
        else if (argv[i][0] == '-') return usage();
        else npaths++;
    }
    if (npaths == 0) return usage();
    int passed = 0, failed = 0;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] == '-') continue;
        struct stat sb;
        if (stat(argv[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            pathlist l = {0};
            collect(argv[i], &l);
            qsort(l.p, (size_t)l.n, sizeof *l.p, cmp_str);
            for (int k = 0; k < l.n; k++) {
                if (run_case(l.p[k], strict)) passed++;
                else failed++;
                free(l.p[k]);
            }
            free(l.p);
            if (l.n == 0) fprintf(stderr, "blixt-golden: no .safetensors files under '%s'\n", argv[i]);
        } else {
            if (run_case(argv[i], strict)) passed++; /* a missing file gives a FAIL line */
            else failed++;
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
