/* params.c - typed parameter tables: validation of a given dict against a
 * class's parameters, defaults filled in table order, and the messages that
 * name the key, the value and what was expected. */
#include "cli/cli_int.h"

#include <math.h>
#include <string.h>

const char *bx__types_text(unsigned t, char *buf, size_t n) {
    static const struct {
        unsigned bit;
        const char *text;
    } NAMES[] = {{BX_P_INT, "an int"},      {BX_P_FLOAT, "a number"},          {BX_P_BOOL, "a bool"},
                 {BX_P_STR, "a string"},    {BX_P_INTS, "a list of ints"},     {BX_P_FLOATS, "a list of numbers"},
                 {BX_P_NULL, "null"},       {BX_P_ANY, "any value"}};
    buf[0] = '\0';
    int k = 0;
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++) {
        if (!(t & NAMES[i].bit)) continue;
        if (NAMES[i].bit == BX_P_INT && (t & BX_P_FLOAT)) continue; /* "a number" covers it */
        size_t l = strlen(buf);
        snprintf(buf + l, n - l, "%s%s", k ? " or " : "", NAMES[i].text);
        k++;
    }
    return buf;
}

const char *bx__node_text(const bx_state *v, char *buf, size_t n) {
    switch (bx_state_typeof(v)) {
    case BX_STATE_NULL: snprintf(buf, n, "null"); break;
    case BX_STATE_BOOL: snprintf(buf, n, "%s (a bool)", bx_state_get_bool(v) ? "true" : "false"); break;
    case BX_STATE_INT: snprintf(buf, n, "%lld (an int)", (long long)bx_state_get_int(v)); break;
    case BX_STATE_FLOAT: snprintf(buf, n, "%g (a float)", bx_state_get_float(v)); break;
    case BX_STATE_STRING: snprintf(buf, n, "'%.200s' (a string)", bx_state_get_string(v)); break;
    case BX_STATE_LIST: snprintf(buf, n, "a list of %zu items", bx_state_len(v)); break;
    case BX_STATE_DICT: snprintf(buf, n, "a mapping of %zu keys", bx_state_len(v)); break;
    default: snprintf(buf, n, "a tensor"); break;
    }
    return buf;
}

static bool all_items(const bx_state *v, bool allow_float) {
    for (size_t i = 0; i < bx_state_len(v); i++) {
        bx_state_type t = bx_state_typeof(bx_state_at(v, i));
        if (t != BX_STATE_INT && !(allow_float && t == BX_STATE_FLOAT)) return false;
    }
    return true;
}

/* A copy of v converted to what the mask accepts, or NULL (type mismatch). */
static bx_state *coerce(const bx_state *v, unsigned t) {
    switch (bx_state_typeof(v)) {
    case BX_STATE_NULL: return (t & (BX_P_NULL | BX_P_ANY)) ? bx_state_null() : NULL;
    case BX_STATE_BOOL: return (t & (BX_P_BOOL | BX_P_ANY)) ? bx_state_copy(v) : NULL;
    case BX_STATE_INT:
        if (t & (BX_P_INT | BX_P_ANY)) return bx_state_copy(v);
        if (t & BX_P_FLOAT) return bx_state_float((double)bx_state_get_int(v));
        return NULL;
    case BX_STATE_FLOAT:
        if (t & (BX_P_FLOAT | BX_P_ANY)) return bx_state_copy(v);
        /* an integral float where an int is expected (3.0) */
        if ((t & BX_P_INT) && bx_state_get_float(v) == floor(bx_state_get_float(v)) &&
            fabs(bx_state_get_float(v)) < 9e15)
            return bx_state_int((int64_t)bx_state_get_float(v));
        return NULL;
    case BX_STATE_STRING: return (t & (BX_P_STR | BX_P_ANY)) ? bx_state_copy(v) : NULL;
    case BX_STATE_LIST:
        if (t & BX_P_ANY) return bx_state_copy(v);
        if ((t & BX_P_INTS) && all_items(v, false)) return bx_state_copy(v);
        if ((t & BX_P_FLOATS) && all_items(v, true)) {
            bx_state *l = bx_state_list();
            for (size_t i = 0; l && i < bx_state_len(v); i++)
                if (bx_state_append(l, bx_state_float(bx_state_get_float(bx_state_at(v, i)))) != BX_OK) {
                    bx_state_free(l);
                    return NULL;
                }
            return l;
        }
        return NULL;
    case BX_STATE_DICT: return (t & BX_P_ANY) ? bx_state_copy(v) : NULL;
    default: return NULL;
    }
}

static bool in_choices(const char *s, const char *choices) {
    size_t n = strlen(s);
    for (const char *p = choices; *p;) {
        const char *e = strchr(p, '|');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        if (l == n && !strncmp(p, s, n)) return true;
        if (!e) break;
        p = e + 1;
    }
    return false;
}

bx_status bx__params_resolve(const bx__param *params, int n, const bx_state *given, const char *where,
                             bx_state **out) {
    *out = NULL;
    char vb[300], tb[128];
    if (given && bx_state_typeof(given) != BX_STATE_DICT && bx_state_typeof(given) != BX_STATE_NULL)
        return bx__error(BX_ERR_INVALID, "%s: got %s, expected a mapping of options", where,
                         bx__node_text(given, vb, sizeof vb));
    if (given && bx_state_typeof(given) == BX_STATE_DICT) {
        for (size_t i = 0; i < bx_state_len(given); i++) {
            const char *k = bx_state_key_at(given, i);
            bool known = false;
            for (int j = 0; j < n && !known; j++) known = !strcmp(params[j].name, k);
            if (!known) {
                char names[2048] = "";
                for (int j = 0; j < n; j++) {
                    size_t l = strlen(names);
                    snprintf(names + l, sizeof names - l, "%s%s", j ? ", " : "", params[j].name);
                }
                return bx__error(BX_ERR_INVALID, "%s.%s: unknown key (known: %s)", where, k,
                                 n ? names : "none: this class takes no options");
            }
        }
    }
    bx_state *d = bx_state_dict();
    if (!d) return bx__error(BX_ERR_NOMEM, "%s: out of memory", where);
    for (int j = 0; j < n; j++) {
        const bx__param *p = &params[j];
        const bx_state *v = given && bx_state_typeof(given) == BX_STATE_DICT ? bx_state_get(given, p->name) : NULL;
        bx_state *c;
        if (v) {
            c = coerce(v, p->types);
            if (!c) {
                bx_state_free(d);
                return bx__error(BX_ERR_INVALID, "%s.%s: got %s, expected %s", where, p->name,
                                 bx__node_text(v, vb, sizeof vb), bx__types_text(p->types, tb, sizeof tb));
            }
        } else {
            const char *def = p->def ? p->def : "null";
            if (bx__yaml_parse(def, strlen(def), p->name, false, &c) != BX_OK) c = NULL;
            if (c && (p->types & BX_P_FLOAT) && !(p->types & BX_P_INT) && bx_state_typeof(c) == BX_STATE_INT) {
                bx_state *f = bx_state_float((double)bx_state_get_int(c));
                bx_state_free(c);
                c = f;
            }
        }
        if (c && p->choices && bx_state_typeof(c) == BX_STATE_STRING &&
            !in_choices(bx_state_get_string(c), p->choices)) {
            bx_status s = bx__error(BX_ERR_INVALID, "%s.%s: got %s, expected one of %s", where, p->name,
                                    bx__node_text(c, vb, sizeof vb), p->choices);
            bx_state_free(c);
            bx_state_free(d);
            return s;
        }
        if (!c || bx_state_set(d, p->name, c) != BX_OK) {
            bx_state_free(d);
            return bx__error(BX_ERR_NOMEM, "%s: out of memory", where);
        }
    }
    *out = d;
    return BX_OK;
}

int64_t bx__arg_int(const bx_state *a, const char *k) {
    const bx_state *v = bx_state_get(a, k);
    return v && bx_state_typeof(v) != BX_STATE_NULL ? bx_state_get_int(v) : 0;
}
double bx__arg_float(const bx_state *a, const char *k) {
    const bx_state *v = bx_state_get(a, k);
    return v && bx_state_typeof(v) != BX_STATE_NULL ? bx_state_get_float(v) : NAN;
}
bool bx__arg_bool(const bx_state *a, const char *k) {
    const bx_state *v = bx_state_get(a, k);
    return v && bx_state_typeof(v) == BX_STATE_BOOL && bx_state_get_bool(v);
}
const char *bx__arg_str(const bx_state *a, const char *k) {
    const bx_state *v = bx_state_get(a, k);
    return v && bx_state_typeof(v) == BX_STATE_STRING ? bx_state_get_string(v) : NULL;
}
bool bx__arg_is_null(const bx_state *a, const char *k) {
    const bx_state *v = bx_state_get(a, k);
    return !v || bx_state_typeof(v) == BX_STATE_NULL;
}
