/* state.c - the bx_state tree: nodes, lists, insertion-ordered dicts, deep
 * copy and typed getters (blixt/state.h). JSON lives in state_json.c.
 *
 * Every node owns its children; a dict keeps its keys in insertion order in
 * two parallel arrays (lookups are linear: state dicts are small). All memory
 * goes through the allocator hook. */
#include "io/state_int.h"

#include <math.h>
#include <string.h>

static bx_state *node_new(bx_state_type t) {
    bx_state *s = bx__calloc(sizeof *s);
    if (s) s->type = t;
    return s;
}

bx_state *bx_state_null(void) { return node_new(BX_STATE_NULL); }

bx_state *bx_state_bool(bool v) {
    bx_state *s = node_new(BX_STATE_BOOL);
    if (s) s->u.b = v;
    return s;
}

bx_state *bx_state_int(int64_t v) {
    bx_state *s = node_new(BX_STATE_INT);
    if (s) s->u.i = v;
    return s;
}

bx_state *bx_state_float(double v) {
    bx_state *s = node_new(BX_STATE_FLOAT);
    if (s) s->u.f = v;
    return s;
}

bx_state *bx_state_string(const char *str) {
    bx_state *s = node_new(BX_STATE_STRING);
    if (!s) return NULL;
    s->u.s = bx__strdup(str ? str : "");
    if (!s->u.s) {
        bx__free(s);
        return NULL;
    }
    return s;
}

bx_state *bx_state_list(void) { return node_new(BX_STATE_LIST); }

bx_state *bx_state_dict(void) { return node_new(BX_STATE_DICT); }

bx_state *bx_state_tensor(const bx_tensor *t) {
    if (!t) {
        bx__error(BX_ERR_INVALID, "state: tensor node from a NULL tensor");
        return NULL;
    }
    bx_state *s = node_new(BX_STATE_TENSOR);
    if (!s) return NULL;
    s->u.t = bx_tensor_clone(t);
    if (!s->u.t) {
        bx__free(s);
        return NULL;
    }
    return s;
}

void bx_state_free(bx_state *s) {
    if (!s) return;
    switch (s->type) {
    case BX_STATE_STRING: bx__free(s->u.s); break;
    case BX_STATE_TENSOR: bx_tensor_free(s->u.t); break;
    case BX_STATE_LIST:
        for (size_t i = 0; i < s->u.list.n; i++) bx_state_free(s->u.list.items[i]);
        bx__free(s->u.list.items);
        break;
    case BX_STATE_DICT:
        for (size_t i = 0; i < s->u.dict.n; i++) {
            bx__free(s->u.dict.keys[i]);
            bx_state_free(s->u.dict.vals[i]);
        }
        bx__free(s->u.dict.keys);
        bx__free(s->u.dict.vals);
        break;
    default: break;
    }
    bx__free(s);
}

bx_state *bx_state_copy(const bx_state *s) {
    if (!s) return NULL;
    switch (s->type) {
    case BX_STATE_NULL: return bx_state_null();
    case BX_STATE_BOOL: return bx_state_bool(s->u.b);
    case BX_STATE_INT: return bx_state_int(s->u.i);
    case BX_STATE_FLOAT: return bx_state_float(s->u.f);
    case BX_STATE_STRING: return bx_state_string(s->u.s);
    case BX_STATE_TENSOR: return bx_state_tensor(s->u.t);
    case BX_STATE_LIST: {
        bx_state *l = bx_state_list();
        if (!l) return NULL;
        for (size_t i = 0; i < s->u.list.n; i++) {
            bx_state *c = bx_state_copy(s->u.list.items[i]);
            if (!c || bx_state_append(l, c) != BX_OK) {
                bx_state_free(l);
                return NULL;
            }
        }
        return l;
    }
    case BX_STATE_DICT: {
        bx_state *d = bx_state_dict();
        if (!d) return NULL;
        for (size_t i = 0; i < s->u.dict.n; i++) {
            bx_state *c = bx_state_copy(s->u.dict.vals[i]);
            if (!c || bx_state_set(d, s->u.dict.keys[i], c) != BX_OK) {
                bx_state_free(d);
                return NULL;
            }
        }
        return d;
    }
    }
    return NULL;
}

bx_state_type bx_state_typeof(const bx_state *s) { return s ? s->type : BX_STATE_NULL; }

bool bx_state_get_bool(const bx_state *s) {
    if (!s) return false;
    switch (s->type) {
    case BX_STATE_BOOL: return s->u.b;
    case BX_STATE_INT: return s->u.i != 0;
    case BX_STATE_FLOAT: return s->u.f != 0.0;
    default: return false;
    }
}

int64_t bx_state_get_int(const bx_state *s) {
    if (!s) return 0;
    switch (s->type) {
    case BX_STATE_BOOL: return s->u.b ? 1 : 0;
    case BX_STATE_INT: return s->u.i;
    case BX_STATE_FLOAT:
        /* Truncation toward zero; out-of-range and NaN give 0 (no UB). */
        if (!(fabs(s->u.f) < 9.2e18)) return 0;
        return (int64_t)s->u.f;
    default: return 0;
    }
}

double bx_state_get_float(const bx_state *s) {
    if (!s) return 0.0;
    switch (s->type) {
    case BX_STATE_BOOL: return s->u.b ? 1.0 : 0.0;
    case BX_STATE_INT: return (double)s->u.i;
    case BX_STATE_FLOAT: return s->u.f;
    default: return 0.0;
    }
}

const char *bx_state_get_string(const bx_state *s) {
    return (s && s->type == BX_STATE_STRING) ? s->u.s : NULL;
}

const bx_tensor *bx_state_get_tensor(const bx_state *s) {
    return (s && s->type == BX_STATE_TENSOR) ? s->u.t : NULL;
}

/* ---- lists ------------------------------------------------------------- */

bx_status bx_state_append(bx_state *list, bx_state *v) {
    if (!v) return bx__error(BX_ERR_NOMEM, "state: appending a NULL node (allocation failed?)");
    if (!list || list->type != BX_STATE_LIST) {
        bx_state_free(v);
        return bx__error(BX_ERR_INVALID, "state: append to a node that is not a list");
    }
    if (list->u.list.n == list->u.list.cap) {
        size_t cap = list->u.list.cap ? 2 * list->u.list.cap : 4;
        bx_state **items = bx__realloc(list->u.list.items, cap * sizeof *items);
        if (!items) {
            bx_state_free(v);
            return BX_ERR_NOMEM;
        }
        list->u.list.items = items;
        list->u.list.cap = cap;
    }
    list->u.list.items[list->u.list.n++] = v;
    return BX_OK;
}

size_t bx_state_len(const bx_state *s) {
    if (!s) return 0;
    if (s->type == BX_STATE_LIST) return s->u.list.n;
    if (s->type == BX_STATE_DICT) return s->u.dict.n;
    return 0;
}

bx_state *bx_state_at(const bx_state *list, size_t i) {
    if (!list || list->type != BX_STATE_LIST || i >= list->u.list.n) return NULL;
    return list->u.list.items[i];
}

/* ---- dicts ------------------------------------------------------------- */

static long dict_find(const bx_state *d, const char *key) {
    for (size_t i = 0; i < d->u.dict.n; i++)
        if (strcmp(d->u.dict.keys[i], key) == 0) return (long)i;
    return -1;
}

bx_status bx_state_set(bx_state *dict, const char *key, bx_state *v) {
    if (!v) return bx__error(BX_ERR_NOMEM, "state: setting '%s' to a NULL node (allocation failed?)",
                             key ? key : "");
    if (!dict || dict->type != BX_STATE_DICT || !key) {
        bx_state_free(v);
        return bx__error(BX_ERR_INVALID, "state: set '%s' on a node that is not a dict",
                         key ? key : "(null)");
    }
    long at = dict_find(dict, key);
    if (at >= 0) {
        bx_state_free(dict->u.dict.vals[at]);
        dict->u.dict.vals[at] = v;
        return BX_OK;
    }
    if (dict->u.dict.n == dict->u.dict.cap) {
        size_t cap = dict->u.dict.cap ? 2 * dict->u.dict.cap : 8;
        char **keys = bx__realloc(dict->u.dict.keys, cap * sizeof *keys);
        if (!keys) {
            bx_state_free(v);
            return BX_ERR_NOMEM;
        }
        dict->u.dict.keys = keys;
        bx_state **vals = bx__realloc(dict->u.dict.vals, cap * sizeof *vals);
        if (!vals) {
            bx_state_free(v);
            return BX_ERR_NOMEM;
        }
        dict->u.dict.vals = vals;
        dict->u.dict.cap = cap;
    }
    char *k = bx__strdup(key);
    if (!k) {
        bx_state_free(v);
        return BX_ERR_NOMEM;
    }
    dict->u.dict.keys[dict->u.dict.n] = k;
    dict->u.dict.vals[dict->u.dict.n] = v;
    dict->u.dict.n++;
    return BX_OK;
}

bx_state *bx_state_get(const bx_state *dict, const char *key) {
    if (!dict || dict->type != BX_STATE_DICT || !key) return NULL;
    long at = dict_find(dict, key);
    return at >= 0 ? dict->u.dict.vals[at] : NULL;
}

const char *bx_state_key_at(const bx_state *dict, size_t i) {
    if (!dict || dict->type != BX_STATE_DICT || i >= dict->u.dict.n) return NULL;
    return dict->u.dict.keys[i];
}

bx_state *bx_state_value_at(const bx_state *dict, size_t i) {
    if (!dict || dict->type != BX_STATE_DICT || i >= dict->u.dict.n) return NULL;
    return dict->u.dict.vals[i];
}

bx_status bx_state_set_int(bx_state *dict, const char *key, int64_t v) {
    return bx_state_set(dict, key, bx_state_int(v));
}
bx_status bx_state_set_float(bx_state *dict, const char *key, double v) {
    return bx_state_set(dict, key, bx_state_float(v));
}
bx_status bx_state_set_bool(bx_state *dict, const char *key, bool v) {
    return bx_state_set(dict, key, bx_state_bool(v));
}
bx_status bx_state_set_string(bx_state *dict, const char *key, const char *v) {
    return bx_state_set(dict, key, bx_state_string(v));
}
bx_status bx_state_set_tensor(bx_state *dict, const char *key, const bx_tensor *t) {
    bx_state *n = bx_state_tensor(t);
    if (!n) return t ? BX_ERR_NOMEM : BX_ERR_INVALID;
    return bx_state_set(dict, key, n);
}

/* ---- typed getters -------------------------------------------------------- */

const char *bx__state_type_desc(bx_state_type t) {
    switch (t) {
    case BX_STATE_NULL: return "null";
    case BX_STATE_BOOL: return "a bool";
    case BX_STATE_INT: return "an integer";
    case BX_STATE_FLOAT: return "a float";
    case BX_STATE_STRING: return "a string";
    case BX_STATE_LIST: return "a list";
    case BX_STATE_DICT: return "a dict";
    case BX_STATE_TENSOR: return "a tensor";
    }
    return "unknown";
}

static bx_status need(const bx_state *dict, const char *key, const bx_state **out) {
    if (!dict || dict->type != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "expected a dict holding '%s', got %s", key,
                         dict ? bx__state_type_desc(dict->type) : "nothing");
    const bx_state *v = bx_state_get(dict, key);
    if (!v) return bx__error(BX_ERR_NOT_FOUND, "key '%s' missing", key);
    *out = v;
    return BX_OK;
}

bx_status bx_state_need_int(const bx_state *dict, const char *key, int64_t *out) {
    const bx_state *v = NULL;
    bx_status st = need(dict, key, &v);
    if (st) return st;
    if (v->type == BX_STATE_INT) {
        *out = v->u.i;
        return BX_OK;
    }
    /* Python writes some counters as floats (8.0): accept integral values. */
    if (v->type == BX_STATE_FLOAT && isfinite(v->u.f) && v->u.f == floor(v->u.f) &&
        fabs(v->u.f) < 9.0e18) {
        *out = (int64_t)v->u.f;
        return BX_OK;
    }
    if (v->type == BX_STATE_FLOAT)
        return bx__error(BX_ERR_FORMAT, "'%s' is %.17g, expected an integer", key, v->u.f);
    return bx__error(BX_ERR_FORMAT, "'%s' is %s, expected an integer", key,
                     bx__state_type_desc(v->type));
}

bx_status bx_state_need_float(const bx_state *dict, const char *key, double *out) {
    const bx_state *v = NULL;
    bx_status st = need(dict, key, &v);
    if (st) return st;
    if (v->type == BX_STATE_FLOAT) {
        *out = v->u.f;
        return BX_OK;
    }
    if (v->type == BX_STATE_INT) {
        *out = (double)v->u.i;
        return BX_OK;
    }
    return bx__error(BX_ERR_FORMAT, "'%s' is %s, expected a number", key, bx__state_type_desc(v->type));
}

bx_status bx_state_need_bool(const bx_state *dict, const char *key, bool *out) {
    const bx_state *v = NULL;
    bx_status st = need(dict, key, &v);
    if (st) return st;
    if (v->type == BX_STATE_BOOL) {
        *out = v->u.b;
        return BX_OK;
    }
    return bx__error(BX_ERR_FORMAT, "'%s' is %s, expected a bool", key, bx__state_type_desc(v->type));
}

