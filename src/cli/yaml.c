/* yaml.c - YAML config text <-> bx_state trees, through libyaml's document
 * loader (parsing) and a small block-style emitter that keeps key order
 * (config.yaml, --print_config). */
#include "cli/cli_int.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

static bool match_any(const char *s, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (!strcmp(s, list[i])) return true;
    return false;
}

/* YAML 1.1 core resolution of a plain scalar (what PyYAML's safe_load does
 * for the common forms). */
bx_state *bx__yaml_scalar(const char *s) {
    static const char *const NULLS[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const TRUES[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
    static const char *const FALSES[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
    if (match_any(s, NULLS)) return bx_state_null();
    if (match_any(s, TRUES)) return bx_state_bool(true);
    if (match_any(s, FALSES)) return bx_state_bool(false);
    const char *p = s;
    if (*p == '+' || *p == '-') p++;
    if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF"))
        return bx_state_float(s[0] == '-' ? -INFINITY : INFINITY);
    if (!strcmp(s, ".nan") || !strcmp(s, ".NaN") || !strcmp(s, ".NAN")) return bx_state_float(NAN);
    /* int: digits only (optionally 0x...) */
    bool digits = *p != '\0';
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') digits = false;
    if (digits) {
        errno = 0;
        long long v = strtoll(s, NULL, 10);
        if (errno == 0) return bx_state_int(v);
    }
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X') && p[2]) {
        char *end;
        long long v = strtoll(s, &end, 16);
        if (*end == '\0') return bx_state_int(v);
    }
    /* float: must contain a digit and parse fully */
    bool has_digit = false, has_alpha = false;
    for (const char *q = p; *q; q++) {
        if (*q >= '0' && *q <= '9') has_digit = true;
        else if (*q != '.' && *q != 'e' && *q != 'E' && *q != '+' && *q != '-') has_alpha = true;
    }
    if (has_digit && !has_alpha) {
        char *end;
        double v = strtod(s, &end);
        if (*end == '\0') return bx_state_float(v);
    }
    return bx_state_string(s);
}

static bx_status convert(yaml_document_t *doc, yaml_node_t *node, const char *what, int depth,
                         bx_state **out) {
    *out = NULL;
    if (depth > 64) return bx__error(BX_ERR_FORMAT, "%s: nesting deeper than 64 levels", what);
    switch (node->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)node->data.scalar.value;
        bool plain = node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (node->tag && !strcmp((const char *)node->tag, YAML_STR_TAG) && !plain) plain = false;
        *out = plain ? bx__yaml_scalar(s) : bx_state_string(s);
        break;
    }
    case YAML_SEQUENCE_NODE: {
        *out = bx_state_list();
        if (!*out) break;
        for (yaml_node_item_t *it = node->data.sequence.items.start; it < node->data.sequence.items.top; it++) {
            bx_state *v;
            bx_status s = convert(doc, yaml_document_get_node(doc, *it), what, depth + 1, &v);
            if (s != BX_OK || bx_state_append(*out, v) != BX_OK) {
                bx_state_free(*out);
                *out = NULL;
                return s != BX_OK ? s : bx__error(BX_ERR_NOMEM, "%s: out of memory", what);
            }
        }
        break;
    }
    case YAML_MAPPING_NODE: {
        *out = bx_state_dict();
        if (!*out) break;
        for (yaml_node_pair_t *pr = node->data.mapping.pairs.start; pr < node->data.mapping.pairs.top; pr++) {
            yaml_node_t *k = yaml_document_get_node(doc, pr->key);
            if (k->type != YAML_SCALAR_NODE) {
                bx_state_free(*out);
                *out = NULL;
                return bx__error(BX_ERR_FORMAT, "%s:%zu:%zu: a mapping key must be a scalar", what,
                                 k->start_mark.line + 1, k->start_mark.column + 1);
            }
            const char *key = (const char *)k->data.scalar.value;
            if (bx_state_get(*out, key)) {
                bx_state_free(*out);
                *out = NULL;
                return bx__error(BX_ERR_FORMAT, "%s:%zu:%zu: duplicate key '%s'", what,
                                 k->start_mark.line + 1, k->start_mark.column + 1, key);
            }
            bx_state *v;
            bx_status s = convert(doc, yaml_document_get_node(doc, pr->value), what, depth + 1, &v);
            if (s != BX_OK || bx_state_set(*out, key, v) != BX_OK) {
                bx_state_free(*out);
                *out = NULL;
                return s != BX_OK ? s : bx__error(BX_ERR_NOMEM, "%s: out of memory", what);
            }
        }
        break;
    }
    default:
        *out = bx_state_null();
        break;
    }
    return *out ? BX_OK : bx__error(BX_ERR_NOMEM, "%s: out of memory", what);
}

bx_status bx__yaml_parse(const char *text, size_t n, const char *what, bool empty_is_dict,
                         bx_state **out) {
    *out = NULL;
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return bx__error(BX_ERR_NOMEM, "%s: out of memory", what);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, n);
    if (!yaml_parser_load(&parser, &doc)) {
        bx_status s = bx__error(BX_ERR_FORMAT, "%s:%zu:%zu: %s%s%s", what, parser.problem_mark.line + 1,
                                parser.problem_mark.column + 1, parser.problem ? parser.problem : "invalid YAML",
                                parser.context ? " " : "", parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return s;
    }
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    bx_status s;
    if (!root) {
        *out = empty_is_dict ? bx_state_dict() : bx_state_null();
        s = *out ? BX_OK : bx__error(BX_ERR_NOMEM, "%s: out of memory", what);
    } else {
        s = convert(&doc, root, what, 0, out);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return s;
}

bx_status bx__yaml_load_file(const char *path, bx_state **out) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return bx__error(BX_ERR_IO, "config file '%s': cannot open: %s", path, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *nb = bx__realloc(buf, cap);
            if (!nb) {
                bx__free(buf);
                fclose(f);
                return bx__error(BX_ERR_NOMEM, "config file '%s': out of memory", path);
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0) break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        bx__free(buf);
        return bx__error(BX_ERR_IO, "config file '%s': read error", path);
    }
    bx_status s = bx__yaml_parse(buf ? buf : "", n, path, true, out);
    bx__free(buf);
    if (s == BX_OK && bx_state_typeof(*out) != BX_STATE_DICT) {
        bx_state_free(*out);
        *out = NULL;
        return bx__error(BX_ERR_FORMAT, "config file '%s': the top level must be a mapping of sections", path);
    }
    return s;
}

/* ---- emitter ---------------------------------------------------------------- */
typedef struct sb {
    char *p;
    size_t n, cap;
    bool oom;
} sb;

static void put(sb *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = bx__realloc(b->p, nc);
        if (!np) {
            b->oom = true;
            return;
        }
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}
static void puts_(sb *b, const char *s) { put(b, s, strlen(s)); }
static void indent(sb *b, int n) {
    for (int i = 0; i < n; i++) put(b, " ", 1);
}

static bool needs_quotes(const char *s) {
    if (!*s || s[0] == ' ' || s[strlen(s) - 1] == ' ') return true;
    if (strchr("-?:,[]{}#&*!|>'\"%@`", s[0])) return true;
    if (strstr(s, ": ") || strstr(s, " #") || s[strlen(s) - 1] == ':') return true;
    for (const char *q = s; *q; q++)
        if ((unsigned char)*q < 0x20) return true;
    bx_state *r = bx__yaml_scalar(s);
    bool other = !r || bx_state_typeof(r) != BX_STATE_STRING;
    bx_state_free(r);
    return other;
}

static void put_string(sb *b, const char *s) {
    if (!needs_quotes(s)) {
        puts_(b, s);
        return;
    }
    put(b, "\"", 1);
    for (const char *q = s; *q; q++) {
        char e[8];
        unsigned char c = (unsigned char)*q;
        if (c == '"' || c == '\\') {
            e[0] = '\\';
            e[1] = (char)c;
            put(b, e, 2);
        } else if (c == '\n') {
            put(b, "\\n", 2);
        } else if (c < 0x20) {
            snprintf(e, sizeof e, "\\x%02x", c);
            puts_(b, e);
        } else {
            put(b, q, 1);
        }
    }
    put(b, "\"", 1);
}

static void put_scalar(sb *b, const bx_state *v) {
    char buf[64];
    switch (bx_state_typeof(v)) {
    case BX_STATE_NULL: puts_(b, "null"); break;
    case BX_STATE_BOOL: puts_(b, bx_state_get_bool(v) ? "true" : "false"); break;
    case BX_STATE_INT:
        snprintf(buf, sizeof buf, "%lld", (long long)bx_state_get_int(v));
        puts_(b, buf);
        break;
    case BX_STATE_FLOAT: {
        double d = bx_state_get_float(v);
        if (isnan(d)) puts_(b, ".nan");
        else if (isinf(d)) puts_(b, d < 0 ? "-.inf" : ".inf");
        else {
            snprintf(buf, sizeof buf, "%.15g", d);
            if (strtod(buf, NULL) != d) snprintf(buf, sizeof buf, "%.17g", d);
            if (!strpbrk(buf, ".eEn")) {
                strcat(buf, ".0");
            } else if (!strchr(buf, '.') && strpbrk(buf, "eE")) {
                /* PyYAML reads 1e-08 as a string: write 1.0e-08 */
                char *e = strpbrk(buf, "eE");
                char tail[32];
                snprintf(tail, sizeof tail, "%s", e);
                snprintf(e, sizeof buf - (size_t)(e - buf), ".0%s", tail);
            }
            puts_(b, buf);
        }
        break;
    }
    case BX_STATE_STRING: put_string(b, bx_state_get_string(v)); break;
    case BX_STATE_LIST: puts_(b, "[]"); break;
    case BX_STATE_DICT: puts_(b, "{}"); break;
    default: puts_(b, "null"); break;
    }
}

static bool is_block(const bx_state *v) {
    bx_state_type t = bx_state_typeof(v);
    return (t == BX_STATE_LIST || t == BX_STATE_DICT) && bx_state_len(v) > 0;
}

static void emit(sb *b, const bx_state *v, int ind, bool in_list_item);

static void emit_dict(sb *b, const bx_state *d, int ind, bool first_inline) {
    for (size_t i = 0; i < bx_state_len(d); i++) {
        if (i > 0 || !first_inline) indent(b, ind);
        put_string(b, bx_state_key_at(d, i));
        const bx_state *v = bx_state_value_at(d, i);
        if (is_block(v)) {
            puts_(b, ":\n");
            emit(b, v, bx_state_typeof(v) == BX_STATE_LIST ? ind : ind + 2, false);
        } else {
            puts_(b, ": ");
            put_scalar(b, v);
            puts_(b, "\n");
        }
    }
}

static void emit(sb *b, const bx_state *v, int ind, bool in_list_item) {
    if (bx_state_typeof(v) == BX_STATE_DICT) {
        emit_dict(b, v, ind, in_list_item);
    } else if (bx_state_typeof(v) == BX_STATE_LIST) {
        for (size_t i = 0; i < bx_state_len(v); i++) {
            const bx_state *it = bx_state_at(v, i);
            indent(b, ind);
            puts_(b, "- ");
            if (bx_state_typeof(it) == BX_STATE_DICT && bx_state_len(it) > 0) {
                emit_dict(b, it, ind + 2, true);
            } else if (bx_state_typeof(it) == BX_STATE_LIST && bx_state_len(it) > 0) {
                puts_(b, "\n");
                emit(b, it, ind + 2, false);
            } else {
                put_scalar(b, it);
                puts_(b, "\n");
            }
        }
    }
}

char *bx__yaml_emit(const bx_state *dict) {
    sb b = {0};
    put(&b, "", 0);
    emit(&b, dict, 0, false);
    if (b.oom) {
        bx__free(b.p);
        bx__error(BX_ERR_NOMEM, "config: out of memory");
        return NULL;
    }
    return b.p;
}
