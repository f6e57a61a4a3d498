/* checkpoint_name.c - ModelCheckpoint file names: Lightning 1.9.5's
 * template rewriting and the part of Python's str.format / format-spec
 * mini-language the templates use ({name}, {name:03d}, {name:.2f}, empty
 * spec = Python's repr of the float: a float32 metric 0.1 prints
 * 0.10000000149011612). */
#include "callbacks_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a growable string ----------------------------------------------------------- */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_addn(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2 + 32;
        char *q = bx_realloc(b->p, cap);
        if (!q) {
            b->oom = true;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}
static void sb_add(sbuf *b, const char *s) { sb_addn(b, s, strlen(s)); }

/* Python str.replace(old, new) on a heap string; returns the new string
 * (old one freed) or NULL on NOMEM. */
static char *replace_all(char *s, const char *old, const char *rep) {
    sbuf b = {0};
    size_t ol = strlen(old);
    const char *p = s;
    const char *q;
    while (ol && (q = strstr(p, old)) != NULL) {
        sb_addn(&b, p, (size_t)(q - p));
        sb_add(&b, rep);
        p = q + ol;
    }
    sb_add(&b, p);
    bx_free(s);
    if (b.oom) {
        bx_free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- Python number formatting ----------------------------------------------------------- */
/* repr(float): shortest round-trip digits, exponent form when exp < -4 or >= 16. */
static void py_repr(double v, char *out, size_t n) {
    if (isnan(v)) {
        snprintf(out, n, "nan");
        return;
    }
    if (isinf(v)) {
        snprintf(out, n, v > 0 ? "inf" : "-inf");
        return;
    }
    if (v == 0) {
        snprintf(out, n, signbit(v) ? "-0.0" : "0.0");
        return;
    }
    char buf[64];
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (strtod(buf, NULL) == v) break;
    }
    /* buf: [-]d[.ddd]e[+-]xx */
    const char *s = buf;
    bool neg = *s == '-';
    if (neg) s++;
    char dig[32];
    int nd = 0;
    while (*s && *s != 'e') {
        if (*s != '.') dig[nd++] = *s;
        s++;
    }
    int x = atoi(s + 1);
    while (nd > 1 && dig[nd - 1] == '0') nd--;
    dig[nd] = '\0';
    sbuf b = {0};
    char tmp[64];
    if (neg) sb_add(&b, "-");
    if (x < -4 || x >= 16) {
        sb_addn(&b, dig, 1);
        if (nd > 1) {
            sb_add(&b, ".");
            sb_add(&b, dig + 1);
        }
        snprintf(tmp, sizeof tmp, "e%c%02d", x < 0 ? '-' : '+', abs(x));
        sb_add(&b, tmp);
    } else if (x >= 0) {
        for (int i = 0; i <= x; i++) sb_addn(&b, i < nd ? &dig[i] : "0", 1);
        sb_add(&b, ".");
        sb_add(&b, nd > x + 1 ? dig + x + 1 : "0");
    } else {
        sb_add(&b, "0.");
        for (int i = 0; i < -x - 1; i++) sb_add(&b, "0");
        sb_add(&b, dig);
    }
    snprintf(out, n, "%s", b.p ? b.p : "");
    bx_free(b.p);
}

typedef struct fspec {
    char fill, align, sign, type, grouping;
    bool alt;
    int width, prec;
} fspec;

static bool parse_spec(const char *s, fspec *f) {
    *f = (fspec){' ', 0, '-', 0, 0, false, -1, -1};
    size_t L = strlen(s);
    if (L >= 2 && strchr("<>=^", s[1])) {
        f->fill = s[0];
        f->align = s[1];
        s += 2;
    } else if (L >= 1 && strchr("<>=^", s[0])) {
        f->align = s[0];
        s += 1;
    }
    if (*s && strchr("+- ", *s)) f->sign = *s++;
    if (*s == '#') f->alt = true, s++;
    if (*s == '0') {
        if (!f->align) f->fill = '0', f->align = '=';
        s++;
    }
    if (*s >= '0' && *s <= '9') f->width = (int)strtol(s, (char **)&s, 10);
    if (*s == ',' || *s == '_') f->grouping = *s++;
    if (*s == '.') {
        s++;
        if (!(*s >= '0' && *s <= '9')) return false;
        f->prec = (int)strtol(s, (char **)&s, 10);
    }
    if (*s) f->type = *s++;
    return *s == '\0';
}

/* Inserts the grouping char every 3 digits of the leading digit run of s. */
static void group_digits(char *s, size_t n, char g) {
    size_t nd = strspn(s, "0123456789");
    if (nd <= 3) return;
    char tmp[256];
    size_t k = 0;
    for (size_t i = 0; i < nd && k + 2 < sizeof tmp; i++) {
        if (i && (nd - i) % 3 == 0) tmp[k++] = g;
        tmp[k++] = s[i];
    }
    tmp[k] = '\0';
    char rest[256];
    snprintf(rest, sizeof rest, "%s", s + nd);
    snprintf(s, n, "%s%s", tmp, rest);
}

bx_status bx__py_format_number(double v, bool is_int, const char *spec, char *out, size_t n) {
    fspec f;
    if (!parse_spec(spec ? spec : "", &f)) return bx_set_error(BX_ERR_INVALID, "Invalid format specifier '%s'", spec);
    char body[256];
    bool neg;
    char t = f.type;
    if (is_int && (!t || t == 'd' || t == 'n' || t == 'x' || t == 'X' || t == 'o' || t == 'b')) {
        if (f.prec >= 0) return bx_set_error(BX_ERR_INVALID, "Precision not allowed in integer format specifier");
        long long iv = (long long)v;
        neg = iv < 0;
        unsigned long long a = neg ? (unsigned long long)(-(iv + 1)) + 1u : (unsigned long long)iv;
        if (t == 'x' || t == 'X') {
            snprintf(body, sizeof body, t == 'x' ? "%s%llx" : "%s%llX", f.alt ? (t == 'x' ? "0x" : "0X") : "", a);
        } else if (t == 'o') {
            snprintf(body, sizeof body, "%s%llo", f.alt ? "0o" : "", a);
        } else if (t == 'b') {
            char bits[70];
            int k = 0;
            do bits[k++] = (char)('0' + (a & 1u)), a >>= 1;
            while (a);
            size_t j = 0;
            if (f.alt) body[j++] = '0', body[j++] = 'b';
            while (k) body[j++] = bits[--k];
            body[j] = '\0';
        } else {
            snprintf(body, sizeof body, "%llu", a);
        }
    } else if (t == 'd' || t == 'n' || t == 'x' || t == 'X' || t == 'o' || t == 'b' || t == 'c' || t == 's') {
        return bx_set_error(BX_ERR_INVALID, "Unknown format code '%c' for object of type '%s'", t,
                         is_int ? "int" : "float");
    } else if (!t || strchr("eEfFgG%", t)) {
        neg = signbit(v) && !isnan(v);
        double a = fabs(v);
        int p = f.prec;
        if (!t && is_int) {
            snprintf(body, sizeof body, "%lld", (long long)a);
        } else if (!t && p < 0) {
            py_repr(a, body, sizeof body);
        } else if (!t && !isfinite(a)) {
            snprintf(body, sizeof body, "%g", a);
        } else if (!t) {
            /* like 'g', but scientific from exp >= p - 1 and at least one digit after the point */
            int P = p == 0 ? 1 : p;
            char eb[64];
            snprintf(eb, sizeof eb, "%.*e", P - 1, a);
            char *ep = strchr(eb, 'e');
            int x = atoi(ep + 1);
            if (x < -4 || x >= P - 1) {
                *ep = '\0';
                if (!f.alt && strchr(eb, '.')) {
                    size_t L = strlen(eb);
                    while (eb[L - 1] == '0') eb[--L] = '\0';
                    if (eb[L - 1] == '.') eb[--L] = '\0';
                }
                snprintf(body, sizeof body, "%se%c%02d", eb, x < 0 ? '-' : '+', abs(x));
            } else {
                snprintf(body, sizeof body, "%.*f", P - 1 - x, a);
                if (!strchr(body, '.')) strncat(body, ".0", sizeof body - strlen(body) - 1);
                size_t L = strlen(body);
                while (!f.alt && body[L - 1] == '0' && body[L - 2] != '.') body[--L] = '\0';
            }
        } else if (t == '%') {
            snprintf(body, sizeof body, f.alt ? "%#.*f%%" : "%.*f%%", p < 0 ? 6 : p, a * 100.0);
        } else {
            char fmt[16];
            snprintf(fmt, sizeof fmt, "%%%s.*%c", f.alt ? "#" : "", t);
            if ((t == 'g' || t == 'G') && p == 0) p = 1;
            snprintf(body, sizeof body, fmt, p < 0 ? 6 : p, a);
        }
    } else {
        return bx_set_error(BX_ERR_INVALID, "Unknown format code '%c' for object of type '%s'", t,
                         is_int ? "int" : "float");
    }
    if (f.grouping) group_digits(body, sizeof body, f.grouping);
    const char *sg = neg ? "-" : f.sign == '+' ? "+" : f.sign == ' ' ? " " : "";
    size_t len = strlen(sg) + strlen(body);
    size_t pad = f.width > 0 && (size_t)f.width > len ? (size_t)f.width - len : 0;
    char align = f.align ? f.align : '>';
    size_t left = align == '>' ? pad : align == '^' ? pad / 2 : 0;
    size_t right = align == '<' ? pad : align == '^' ? pad - pad / 2 : 0;
    size_t mid = align == '=' ? pad : 0;
    if (len + pad + 1 > n) return bx_set_error(BX_ERR_INVALID, "formatted value too long");
    size_t k = 0;
    for (size_t i = 0; i < left; i++) out[k++] = f.fill;
    for (const char *c = sg; *c; c++) out[k++] = *c;
    for (size_t i = 0; i < mid; i++) out[k++] = f.fill;
    for (const char *c = body; *c; c++) out[k++] = *c;
    for (size_t i = 0; i < right; i++) out[k++] = f.fill;
    out[k] = '\0';
    return BX_OK;
}

/* ---- the template -------------------------------------------------------------------- */
static const bx__fmt_metric *find_metric(const bx__fmt_metric *m, int nm, const char *name) {
    for (int i = 0; i < nm; i++)
        if (strcmp(m[i].name, name) == 0) return &m[i];
    return NULL;
}

/* str.format(metrics) of a rewritten template: fields must be {0[name]} or
 * {0[name]:spec}; a name not in m (all template names were added as 0)
 * can only come from a corrupted rewrite. */
static bx_status py_format(const char *orig, const char *s, const bx__fmt_metric *m, int nm, sbuf *b) {
    while (*s) {
        if (s[0] == '{' && s[1] == '{') {
            sb_add(b, "{");
            s += 2;
        } else if (s[0] == '}' && s[1] == '}') {
            sb_add(b, "}");
            s += 2;
        } else if (s[0] == '}') {
            return bx_set_error(BX_ERR_INVALID, "ModelCheckpoint filename '%s': Single '}' encountered in format string",
                             orig);
        } else if (s[0] == '{') {
            const char *e = strchr(s, '}');
            const char *nb = strchr(s + 1, '{');
            if (!e) return bx_set_error(BX_ERR_INVALID, "ModelCheckpoint filename '%s': Single '{' encountered", orig);
            if (nb && nb < e)
                return bx_set_error(BX_ERR_INVALID, "ModelCheckpoint filename '%s': nested '{' is not supported", orig);
            char field[512];
            size_t fl = (size_t)(e - s - 1);
            if (fl >= sizeof field) return bx_set_error(BX_ERR_INVALID, "ModelCheckpoint filename '%s': field too long", orig);
            memcpy(field, s + 1, fl);
            field[fl] = '\0';
            if (strncmp(field, "0[", 2) != 0)
                return bx_set_error(BX_ERR_INVALID,
                                 "ModelCheckpoint filename '%s': format field '{%s}' is not a metric name", orig, field);
            char *close = strchr(field + 2, ']');
            if (!close)
                return bx_set_error(BX_ERR_INVALID, "ModelCheckpoint filename '%s': Missing ']' in format string", orig);
            *close = '\0';
            const char *name = field + 2, *rest = close + 1, *spec = "";
            if (*rest == ':') spec = rest + 1;
            else if (*rest)
                return bx_set_error(BX_ERR_INVALID,
                                 "ModelCheckpoint filename '%s': Only '.' or '[' may follow ']' in format field "
                                 "specifier (metric names that are prefixes of others corrupt the template)",
                                 orig);
            const bx__fmt_metric *mv = find_metric(m, nm, name);
            if (!mv) return bx_set_error(BX_ERR_INVALID, "ModelCheckpoint filename '%s': KeyError '%s'", orig, name);
            char num[300];
            bx_status st = bx__py_format_number(mv->value, mv->is_int, spec, num, sizeof num);
            if (st) {
                bx_error_context("ModelCheckpoint filename '%s': metric '%s'", orig, name);
                return st;
            }
            sb_add(b, num);
            s = e + 1;
        } else {
            const char *q = s;
            while (*q && *q != '{' && *q != '}') q++;
            sb_addn(b, s, (size_t)(q - s));
            s = q;
        }
    }
    return BX_OK;
}

bx_status bx__ckpt_format_name(const char *tmpl, bool auto_insert, const bx__fmt_metric *m, int nm, char *out,
                               size_t n) {
    const char *orig = tmpl && *tmpl ? tmpl : "{epoch}-{step}";
    char *f = bx_strdup(orig);
    if (!f) return BX_ERR_NOMEM;
    /* groups = re.findall(r"(\{.*?)[:\}]", template) on the original text */
    int ng = 0, cap = 8;
    char **groups = bx_calloc((size_t)cap * sizeof *groups);
    bx_status st = groups ? BX_OK : BX_ERR_NOMEM;
    for (const char *p = orig; st == BX_OK && (p = strchr(p, '{')) != NULL;) {
        const char *t = p + 1;
        while (*t && *t != ':' && *t != '}' && *t != '\n') t++;
        if (*t != ':' && *t != '}') {
            p++;
            continue;
        }
        if (ng == cap) {
            char **g2 = bx_realloc(groups, (size_t)cap * 2 * sizeof *groups);
            if (!g2) {
                st = BX_ERR_NOMEM;
                break;
            }
            groups = g2;
            cap *= 2;
        }
        size_t gl = (size_t)(t - p);
        groups[ng] = bx_malloc(gl + 1);
        if (!groups[ng]) {
            st = BX_ERR_NOMEM;
            break;
        }
        memcpy(groups[ng], p, gl);
        groups[ng][gl] = '\0';
        ng++;
        p = t + 1;
    }
    /* metrics plus the template's names missing from them (integer 0) */
    bx__fmt_metric *all = st == BX_OK ? bx_calloc(((size_t)nm + (size_t)ng + 1) * sizeof *all) : NULL;
    int na = 0;
    if (st == BX_OK && !all) st = BX_ERR_NOMEM;
    for (int i = 0; st == BX_OK && i < nm; i++) all[na++] = m[i];
    for (int i = 0; st == BX_OK && i < ng; i++) {
        const char *name = groups[i] + 1;
        sbuf r = {0};
        if (auto_insert) {
            sb_add(&r, name);
            sb_add(&r, "={");
            sb_add(&r, name);
            if (r.oom || !(f = replace_all(f, groups[i], r.p))) st = BX_ERR_NOMEM;
            bx_free(r.p);
            r = (sbuf){0};
        }
        sb_add(&r, "{0[");
        sb_add(&r, name);
        sb_add(&r, "]");
        if (st == BX_OK && (r.oom || !(f = replace_all(f, groups[i], r.p)))) st = BX_ERR_NOMEM;
        bx_free(r.p);
        if (st == BX_OK && !find_metric(all, na, name)) all[na++] = (bx__fmt_metric){name, 0.0, true};
    }
    sbuf b = {0};
    if (st == BX_OK) st = py_format(orig, f, all, na, &b);
    if (st == BX_OK && b.oom) st = BX_ERR_NOMEM;
    if (st == BX_OK) {
        const char *res = b.p ? b.p : "";
        if (strlen(res) + 1 > n)
            st = bx_set_error(BX_ERR_INVALID, "ModelCheckpoint filename '%s': formatted name is too long", orig);
        else
            memcpy(out, res, strlen(res) + 1);
    }
    bx_free(b.p);
    bx_free(all);
    for (int i = 0; i < ng; i++) bx_free(groups[i]);
    bx_free(groups);
    bx_free(f);
    return st;
}

bx_status bx_model_checkpoint_format_name(const char *tmpl, bool auto_insert_metric_name,
                                          const char *const *names, const double *values, int n_metrics,
                                          char *out, size_t n) {
    bx__fmt_metric *m = bx_calloc(((size_t)n_metrics + 1) * sizeof *m);
    if (!m) return BX_ERR_NOMEM;
    for (int i = 0; i < n_metrics; i++) {
        m[i].name = names[i];
        m[i].value = values[i];
        m[i].is_int = strcmp(names[i], "epoch") == 0 || strcmp(names[i], "step") == 0;
        if (m[i].is_int) m[i].value = (double)(int64_t)values[i];
    }
    bx_status s = bx__ckpt_format_name(tmpl, auto_insert_metric_name, m, n_metrics, out, n);
    bx_free(m);
    return s;
}
