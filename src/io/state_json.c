/* state_json.c - bx_state <-> JSON text (blixt/state.h).
 *
 * Writing is done here (jansson cannot write NaN or shortest round-trip
 * floats): floats in Python's repr style ("0.1", "8.0", "1e-08"), ints as
 * ints, NaN/inf as the strings "NaN"/"Infinity"/"-Infinity", tensors as
 * {"__tensor__": NAME} through a callback or inline as nested lists.
 * Reading goes through jansson (errors carry line and column), then the
 * parsed tree is converted: the NaN/inf strings come back as floats and
 * {"__tensor__": NAME} objects are resolved through a callback. */
#include "io/state_int.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- float formatting ------------------------------------------------------- */

char *bx__fmt_double(char *buf, double v) {
    if (isnan(v)) return strcpy(buf, "NaN");
    if (isinf(v)) return strcpy(buf, v > 0 ? "Infinity" : "-Infinity");
    if (v == 0.0) return strcpy(buf, signbit(v) ? "-0.0" : "0.0");
    /* Shortest digit string that reads back exactly. */
    char tmp[40];
    int prec = 0;
    for (prec = 0; prec < 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec, v);
        if (strtod(tmp, NULL) == v) break;
    }
    if (prec == 17) snprintf(tmp, sizeof tmp, "%.16e", v);
    /* tmp = [-]d[.ddd]e[+-]XX */
    const char *p = tmp;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    char digits[24];
    int nd = 0;
    while (*p && *p != 'e') {
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
        p++;
    }
    int exp10 = (*p == 'e') ? atoi(p + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    char *o = buf;
    if (neg) *o++ = '-';
    if (exp10 < -4 || exp10 >= 16) {
        *o++ = digits[0];
        if (nd > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)nd - 1);
            o += nd - 1;
        }
        sprintf(o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
        return buf;
    }
    if (exp10 >= 0) {
        for (int i = 0; i <= exp10; i++) *o++ = i < nd ? digits[i] : '0';
        *o++ = '.';
        if (nd > exp10 + 1) {
            memcpy(o, digits + exp10 + 1, (size_t)(nd - exp10 - 1));
            o += nd - exp10 - 1;
        } else {
            *o++ = '0';
        }
    } else {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -exp10 - 1; i++) *o++ = '0';
        memcpy(o, digits, (size_t)nd);
        o += nd;
    }
    *o = '\0';
    return buf;
}

/* ---- writer ----------------------------------------------------------------- */

typedef struct jw {
    char *buf;
    size_t len, cap;
    bool failed;
    bx_state_tensor_out fn;
    void *ud;
    char path[1024]; /* dotted path of the node being written */
    size_t plen;
} jw;

static void jw_put(jw *w, const char *s, size_t n) {
    if (w->failed) return;
    if (w->len + n + 1 > w->cap) {
        size_t cap = w->cap ? w->cap : 256;
        while (w->len + n + 1 > cap) cap *= 2;
        char *b = bx__realloc(w->buf, cap);
        if (!b) {
            w->failed = true;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = '\0';
}

static void jw_puts(jw *w, const char *s) { jw_put(w, s, strlen(s)); }

static void jw_string(jw *w, const char *s) {
    jw_put(w, "\"", 1);
    const char *run = s;
    for (const char *p = s; *p; p++) {
        unsigned char c = (unsigned char)*p;
        const char *esc = NULL;
        char u[8];
        if (c == '"') esc = "\\\"";
        else if (c == '\\') esc = "\\\\";
        else if (c == '\n') esc = "\\n";
        else if (c == '\r') esc = "\\r";
        else if (c == '\t') esc = "\\t";
        else if (c < 0x20) {
            snprintf(u, sizeof u, "\\u%04x", c);
            esc = u;
        }
        if (esc) {
            jw_put(w, run, (size_t)(p - run));
            jw_puts(w, esc);
            run = p + 1;
        }
    }
    jw_puts(w, run);
    jw_put(w, "\"", 1);
}

static void jw_double(jw *w, double v) {
    char b[40];
    bx__fmt_double(b, v);
    if (isfinite(v)) jw_puts(w, b);
    else jw_string(w, b);
}

static void jw_int(jw *w, int64_t v) {
    char b[32];
    snprintf(b, sizeof b, "%lld", (long long)v);
    jw_puts(w, b);
}

static size_t path_push(jw *w, const char *seg) {
    size_t old = w->plen;
    size_t n = strlen(seg);
    size_t need = (old ? 1 : 0) + n;
    if (old + need + 1 < sizeof w->path) {
        if (old) w->path[w->plen++] = '.';
        memcpy(w->path + w->plen, seg, n);
        w->plen += n;
        w->path[w->plen] = '\0';
    }
    return old;
}

static void path_pop(jw *w, size_t old) {
    w->plen = old;
    w->path[old] = '\0';
}

/* Inline tensor: nested lists over the shape (a bare value for 0-d). */
static void jw_tensor_inline(jw *w, const bx_tensor *t, int dim, int64_t *flat) {
    if (dim == t->ndim) {
        double v = bx_get(t, (*flat)++);
        switch (t->dtype) {
        case BX_F32:
        case BX_F64: jw_double(w, v); break;
        case BX_BOOL: jw_puts(w, v != 0 ? "true" : "false"); break;
        default: jw_int(w, (int64_t)v); break;
        }
        return;
    }
    jw_put(w, "[", 1);
    for (int64_t i = 0; i < t->shape[dim]; i++) {
        if (i) jw_put(w, ", ", 2);
        jw_tensor_inline(w, t, dim + 1, flat);
    }
    jw_put(w, "]", 1);
}

static bx_status jw_node(jw *w, const bx_state *s) {
    switch (s->type) {
    case BX_STATE_NULL: jw_puts(w, "null"); break;
    case BX_STATE_BOOL: jw_puts(w, s->u.b ? "true" : "false"); break;
    case BX_STATE_INT: jw_int(w, s->u.i); break;
    case BX_STATE_FLOAT: jw_double(w, s->u.f); break;
    case BX_STATE_STRING: jw_string(w, s->u.s); break;
    case BX_STATE_TENSOR:
        if (w->fn) {
            char name[256] = {0};
            bx_status st = w->fn(w->ud, w->path, s->u.t, name, sizeof name);
            if (st != BX_OK) {
                bx__error_prefix("state to JSON: tensor at '%s'", w->path);
                return st;
            }
            name[sizeof name - 1] = '\0';
            jw_puts(w, "{\"__tensor__\": ");
            jw_string(w, name);
            jw_put(w, "}", 1);
        } else {
            int64_t flat = 0;
            jw_tensor_inline(w, s->u.t, 0, &flat);
        }
        break;
    case BX_STATE_LIST:
        jw_put(w, "[", 1);
        for (size_t i = 0; i < s->u.list.n; i++) {
            if (i) jw_put(w, ", ", 2);
            char seg[24];
            snprintf(seg, sizeof seg, "%zu", i);
            size_t old = path_push(w, seg);
            bx_status st = jw_node(w, s->u.list.items[i]);
            path_pop(w, old);
            if (st) return st;
        }
        jw_put(w, "]", 1);
        break;
    case BX_STATE_DICT:
        jw_put(w, "{", 1);
        for (size_t i = 0; i < s->u.dict.n; i++) {
            if (i) jw_put(w, ", ", 2);
            jw_string(w, s->u.dict.keys[i]);
            jw_put(w, ": ", 2);
            size_t old = path_push(w, s->u.dict.keys[i]);
            bx_status st = jw_node(w, s->u.dict.vals[i]);
            path_pop(w, old);
            if (st) return st;
        }
        jw_put(w, "}", 1);
        break;
    }
    return w->failed ? bx__error(BX_ERR_NOMEM, "state to JSON: out of memory") : BX_OK;
}

char *bx_state_to_json(const bx_state *s, bx_state_tensor_out fn, void *ud) {
    if (!s) {
        bx__error(BX_ERR_INVALID, "state to JSON: NULL state");
        return NULL;
    }
    jw w;
    memset(&w, 0, sizeof w);
    w.fn = fn;
    w.ud = ud;
    bx_status st = jw_node(&w, s);
    if (st != BX_OK || w.failed) {
        if (st == BX_OK) bx__error(BX_ERR_NOMEM, "state to JSON: out of memory");
        bx__free(w.buf);
        return NULL;
    }
    if (!w.buf) jw_puts(&w, "");
    return w.buf;
}

/* ---- reader ----------------------------------------------------------------- */

typedef struct jr {
    bx_state_tensor_in fn;
    void *ud;
} jr;

static bx_status from_json_value(jr *r, json_t *j, bx_state **out);

static bx_status tensor_ref(jr *r, json_t *j, bx_state **out) {
    const char *name = json_string_value(json_object_get(j, "__tensor__"));
    if (!r->fn)
        return bx__error(BX_ERR_FORMAT, "state JSON: tensor '%s' referenced but no tensor reader given",
                         name);
    const bx_tensor *t = r->fn(r->ud, name);
    if (!t) return bx__error(BX_ERR_NOT_FOUND, "state JSON: tensor '%s' not found", name);
    *out = bx_state_tensor(t);
    return *out ? BX_OK : BX_ERR_NOMEM;
}

static bx_status from_json_value(jr *r, json_t *j, bx_state **out) {
    *out = NULL;
    switch (json_typeof(j)) {
    case JSON_NULL: *out = bx_state_null(); break;
    case JSON_TRUE: *out = bx_state_bool(true); break;
    case JSON_FALSE: *out = bx_state_bool(false); break;
    case JSON_INTEGER: *out = bx_state_int((int64_t)json_integer_value(j)); break;
    case JSON_REAL: *out = bx_state_float(json_real_value(j)); break;
    case JSON_STRING: {
        const char *s = json_string_value(j);
        if (strcmp(s, "NaN") == 0) *out = bx_state_float(NAN);
        else if (strcmp(s, "Infinity") == 0) *out = bx_state_float(INFINITY);
        else if (strcmp(s, "-Infinity") == 0) *out = bx_state_float(-INFINITY);
        else *out = bx_state_string(s);
        break;
    }
    case JSON_ARRAY: {
        bx_state *l = bx_state_list();
        if (!l) return BX_ERR_NOMEM;
        size_t n = json_array_size(j);
        for (size_t i = 0; i < n; i++) {
            bx_state *c;
            bx_status st = from_json_value(r, json_array_get(j, i), &c);
            if (st == BX_OK) st = bx_state_append(l, c);
            if (st != BX_OK) {
                bx_state_free(l);
                return st;
            }
        }
        *out = l;
        return BX_OK;
    }
    case JSON_OBJECT: {
        if (json_object_size(j) == 1 && json_is_string(json_object_get(j, "__tensor__")))
            return tensor_ref(r, j, out);
        bx_state *d = bx_state_dict();
        if (!d) return BX_ERR_NOMEM;
        const char *key;
        json_t *v;
        json_object_foreach(j, key, v) {
            bx_state *c;
            bx_status st = from_json_value(r, v, &c);
            if (st == BX_OK) st = bx_state_set(d, key, c);
            if (st != BX_OK) {
                bx_state_free(d);
                return st;
            }
        }
        *out = d;
        return BX_OK;
    }
    }
    return *out ? BX_OK : BX_ERR_NOMEM;
}

bx_status bx_state_from_json(const char *text, bx_state_tensor_in fn, void *ud, bx_state **out) {
    if (!out) return bx__error(BX_ERR_INVALID, "state from JSON: NULL output pointer");
    *out = NULL;
    if (!text) return bx__error(BX_ERR_INVALID, "state from JSON: NULL text");
    json_error_t err;
    json_t *root = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &err);
    if (!root)
        return bx__error(BX_ERR_FORMAT, "state JSON: line %d column %d: %s", err.line, err.column,
                         err.text);
    jr r = {fn, ud};
    bx_status st = from_json_value(&r, root, out);
    json_decref(root);
    if (st == BX_ERR_NOMEM && !strstr(bx_errmsg(), "memory"))
        bx__error(BX_ERR_NOMEM, "state from JSON: out of memory");
    return st;
}
