/* state_dict.c - named traversals (PyTorch's dotted names and order), the
 * state dict and loading it back with PyTorch's checks. */
#include "nn/nn_int.h"

#include <stdio.h>
#include <string.h>

/* ---- named lists ------------------------------------------------------------- */

bx_named_tensors *bx_named_tensors_new(bool owns_tensors) {
    bx_named_tensors *l = bx__calloc(sizeof *l);
    if (l) l->owns_tensors = owns_tensors;
    return l;
}

bx_status bx_named_tensors_add(bx_named_tensors *l, const char *name, bx_tensor *t) {
    if (!l || !name || !t) {
        if (l && l->owns_tensors) bx_tensor_free(t);
        return bx__error(BX_ERR_INVALID, "named tensors: NULL %s", !l ? "list" : !name ? "name" : "tensor");
    }
    if (l->n == l->cap) {
        int ncap = l->cap ? l->cap * 2 : 16;
        char **nn = bx__realloc(l->names, sizeof *nn * (size_t)ncap);
        if (nn) l->names = nn;
        bx_tensor **nt = nn ? bx__realloc(l->tensors, sizeof *nt * (size_t)ncap) : NULL;
        if (nt) l->tensors = nt;
        if (!nn || !nt) {
            if (l->owns_tensors) bx_tensor_free(t);
            return BX_ERR_NOMEM;
        }
        l->cap = ncap;
    }
    char *nm = bx__strdup(name);
    if (!nm) {
        if (l->owns_tensors) bx_tensor_free(t);
        return BX_ERR_NOMEM;
    }
    l->names[l->n] = nm;
    l->tensors[l->n] = t;
    l->n++;
    return BX_OK;
}

bx_tensor *bx_named_tensors_get(const bx_named_tensors *l, const char *name) {
    if (!l || !name) return NULL;
    for (int i = 0; i < l->n; i++)
        if (strcmp(l->names[i], name) == 0) return l->tensors[i];
    return NULL;
}

void bx_named_tensors_free(bx_named_tensors *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) {
        bx__free(l->names[i]);
        if (l->owns_tensors) bx_tensor_free(l->tensors[i]);
    }
    bx__free(l->names);
    bx__free(l->tensors);
    bx__free(l);
}

void bx_named_modules_free(bx_named_modules *l) {
    if (!l) return;
    for (int i = 0; i < l->n; i++) bx__free(l->names[i]);
    bx__free(l->names);
    bx__free(l->modules);
    bx__free(l);
}

/* ---- traversals ------------------------------------------------------------------ */

/* "prefix.name" (or "name" at the root) into buf; false when it does not fit. */
static bool join(char *buf, size_t n, const char *prefix, const char *name) {
    int k = snprintf(buf, n, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    if (k < 0 || (size_t)k >= n) {
        bx__error(BX_ERR_INVALID, "module names: '%s.%s' is longer than %zu characters", prefix, name, n - 1);
        return false;
    }
    return true;
}

enum { WANT_PARAMS = 1, WANT_BUFFERS = 2, WANT_PERSISTENT_ONLY = 4 };

/* Pre-order walk: a module's own params, then its buffers, then children. */
static bx_status collect(bx_module *m, const char *prefix, int want, bx_named_tensors *out) {
    char name[1024];
    if (want & WANT_PARAMS)
        for (int i = 0; i < m->nparams; i++) {
            if (!m->params[i].t) continue;
            if (!join(name, sizeof name, prefix, m->params[i].name)) return BX_ERR_INVALID;
            bx_status s = bx_named_tensors_add(out, name, m->params[i].t);
            if (s != BX_OK) return s;
        }
    if (want & WANT_BUFFERS)
        for (int i = 0; i < m->nbuffers; i++) {
            if (!m->buffers[i].t) continue;
            if ((want & WANT_PERSISTENT_ONLY) && !m->buffers[i].persistent) continue;
            if (!join(name, sizeof name, prefix, m->buffers[i].name)) return BX_ERR_INVALID;
            bx_status s = bx_named_tensors_add(out, name, m->buffers[i].t);
            if (s != BX_OK) return s;
        }
    for (int i = 0; i < m->nchildren; i++) {
        if (!join(name, sizeof name, prefix, m->children[i].name)) return BX_ERR_INVALID;
        bx_status s = collect(m->children[i].m, name, want, out);
        if (s != BX_OK) return s;
    }
    return BX_OK;
}

static bx_named_tensors *collect_list(bx_module *m, int want) {
    if (!m) {
        bx__error(BX_ERR_INVALID, "module is NULL");
        return NULL;
    }
    bx_named_tensors *l = bx_named_tensors_new(false);
    if (l && collect(m, "", want, l) != BX_OK) {
        bx_named_tensors_free(l);
        l = NULL;
    }
    return l;
}

/* named_parameters() walks named_modules() and yields each module's own
 * parameters: the same pre-order as collect() with params only. */
bx_named_tensors *bx_module_named_parameters(bx_module *m) { return collect_list(m, WANT_PARAMS); }
bx_named_tensors *bx_module_named_buffers(bx_module *m) { return collect_list(m, WANT_BUFFERS); }
bx_named_tensors *bx_module_state_dict(bx_module *m) {
    return collect_list(m, WANT_PARAMS | WANT_BUFFERS | WANT_PERSISTENT_ONLY);
}

static bx_status add_module(bx_named_modules *l, const char *name, bx_module *m) {
    if (l->n == l->cap) {
        int ncap = l->cap ? l->cap * 2 : 16;
        char **nn = bx__realloc(l->names, sizeof *nn * (size_t)ncap);
        if (nn) l->names = nn;
        bx_module **nm = nn ? bx__realloc(l->modules, sizeof *nm * (size_t)ncap) : NULL;
        if (nm) l->modules = nm;
        if (!nn || !nm) return BX_ERR_NOMEM;
        l->cap = ncap;
    }
    char *s = bx__strdup(name);
    if (!s) return BX_ERR_NOMEM;
    l->names[l->n] = s;
    l->modules[l->n] = m;
    l->n++;
    return BX_OK;
}

static bx_status collect_modules(bx_module *m, const char *prefix, bx_named_modules *out) {
    bx_status s = add_module(out, prefix, m);
    char name[1024];
    for (int i = 0; s == BX_OK && i < m->nchildren; i++) {
        if (!join(name, sizeof name, prefix, m->children[i].name)) return BX_ERR_INVALID;
        s = collect_modules(m->children[i].m, name, out);
    }
    return s;
}

bx_named_modules *bx_module_named_modules(bx_module *m) {
    if (!m) {
        bx__error(BX_ERR_INVALID, "named_modules: module is NULL");
        return NULL;
    }
    bx_named_modules *l = bx__calloc(sizeof *l);
    if (l && collect_modules(m, "", l) != BX_OK) {
        bx_named_modules_free(l);
        l = NULL;
    }
    return l;
}

/* ---- loading ------------------------------------------------------------------------ */

typedef struct loader {
    bx_tensor_lookup_fn fn;
    void *ud;
    const bx_named_tensors *sd; /* set for list loads: to find unexpected keys */
} loader;

/* Records one problem: the first one gives the message, later ones are counted. */
typedef struct problems {
    bx_status first;
    char msg[768];
    int count;
} problems;

static void problem(problems *p, bx_status s, const char *fmt, const char *a, const char *b, const char *c) {
    if (p->count++ == 0) {
        p->first = s;
        snprintf(p->msg, sizeof p->msg, fmt, a, b, c);
    }
}

static const bx_tensor *list_lookup(void *ud, const char *name) {
    return bx_named_tensors_get((const bx_named_tensors *)ud, name);
}

static bx_status load(bx_module *m, const loader *ld, bool strict) {
    bx_named_tensors *own = bx_module_state_dict(m);
    if (!own) return bx__error(BX_ERR_NOMEM, "load_state_dict: out of memory");
    problems pr = {BX_OK, "", 0};
    /* 1. check everything */
    for (int i = 0; i < own->n; i++) {
        const bx_tensor *src = ld->fn(ld->ud, own->names[i]);
        if (!src) {
            if (strict) problem(&pr, BX_ERR_NOT_FOUND, "load_state_dict: missing key '%s'%s%s", own->names[i], "", "");
            continue;
        }
        if (bx_is_poison(src) || !bx_same_shape(src, own->tensors[i])) {
            char a[96], b[96];
            if (bx_is_poison(src)) bx__strlcpy(a, "(poison)", sizeof a);
            else bx_shape_str(src, a, sizeof a);
            bx_shape_str(own->tensors[i], b, sizeof b);
            problem(&pr, BX_ERR_SHAPE, "load_state_dict: size mismatch for %s: checkpoint %s, model %s",
                    own->names[i], a, b);
        }
    }
    if (strict && ld->sd)
        for (int i = 0; i < ld->sd->n; i++)
            if (!bx_named_tensors_get(own, ld->sd->names[i]))
                problem(&pr, BX_ERR_INVALID, "load_state_dict: unexpected key '%s'%s%s", ld->sd->names[i], "", "");
    if (pr.count) {
        bx_named_tensors_free(own);
        if (pr.count > 1)
            return bx__error(pr.first, "%s (and %d more problem%s)", pr.msg, pr.count - 1, pr.count > 2 ? "s" : "");
        return bx__error(pr.first, "%s", pr.msg);
    }
    /* 2. copy */
    for (int i = 0; i < own->n; i++) {
        const bx_tensor *src = ld->fn(ld->ud, own->names[i]);
        if (!src) continue;
        bx_status s = bx_copy(own->tensors[i], src);
        if (s != BX_OK) {
            bx__error_prefix("load_state_dict: %s", own->names[i]);
            bx_named_tensors_free(own);
            return s;
        }
    }
    bx_named_tensors_free(own);
    return BX_OK;
}

bx_status bx_module_load_state_dict(bx_module *m, const bx_named_tensors *sd, bool strict) {
    if (!m || !sd) return bx__error(BX_ERR_INVALID, "load_state_dict: %s is NULL", m ? "state dict" : "module");
    loader ld = {list_lookup, (void *)sd, sd};
    return load(m, &ld, strict);
}

bx_status bx_module_load_state_dict_lookup(bx_module *m, bx_tensor_lookup_fn fn, void *ud, bool strict) {
    if (!m || !fn) return bx__error(BX_ERR_INVALID, "load_state_dict: %s is NULL", m ? "lookup function" : "module");
    loader ld = {fn, ud, NULL};
    return load(m, &ld, strict);
}
