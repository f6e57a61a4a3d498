/* module.c - the module object: children, parameters, buffers,
 * reparametrisations, hooks, forward, modes, clone, repr. */
#include "nn/nn_int.h"

#include <stdio.h>
#include <string.h>

/* ---- small helpers --------------------------------------------------------- */

bx_status bx__nn_reserve(void **arr, int *cap, int need, size_t size) {
    if (need <= *cap) return BX_OK;
    int ncap = *cap ? *cap * 2 : 4;
    while (ncap < need) ncap *= 2;
    void *p = bx__realloc(*arr, (size_t)ncap * size);
    if (!p) return BX_ERR_NOMEM;
    *arr = p;
    *cap = ncap;
    return BX_OK;
}

void *bx__nn_dup(const void *p, size_t n) {
    void *d = bx__malloc(n ? n : 1);
    if (d && n) memcpy(d, p, n);
    return d;
}

bx_module *bx__nn_new_pod(const bx_module_type *t, const void *impl, size_t n) {
    void *d = bx__nn_dup(impl, n);
    if (!d) return NULL;
    return bx_module_new(t, d);
}

void bx__nn_uniform(bx_tensor *t, double bound, bx_rng *rng) {
    int64_t n = bx_numel(t);
    float *d = t->data;
    for (int64_t i = 0; i < n; i++)
        d[i] = rng ? (float)(bound * (2.0 * (double)bx_rng_uniform(rng) - 1.0)) : 0.0f;
}

char *bx__nn_path(const bx_module *m, char *buf, size_t n) {
    if (!n) return buf;
    buf[0] = '\0';
    if (!m || !m->parent) return buf;
    char tmp[512];
    bx__nn_path(m->parent, tmp, sizeof tmp);
    const char *name = "?";
    for (int i = 0; i < m->parent->nchildren; i++)
        if (m->parent->children[i].m == m) name = m->parent->children[i].name;
    snprintf(buf, n, "%s%s%s", tmp, tmp[0] ? "." : "", name);
    return buf;
}

const char *bx_module_type_name(const bx_module *m) {
    return m && m->type && m->type->name ? m->type->name : "Module";
}
const bx_module_type *bx_module_get_type(const bx_module *m) { return m ? m->type : NULL; }
void *bx_module_impl(const bx_module *m) { return m ? m->impl : NULL; }
bx_module *bx_module_parent(const bx_module *m) { return m ? m->parent : NULL; }

/* "module 'Linear' (fc)" for error messages. */
static const char *who(const bx_module *m, char *buf, size_t n) {
    char path[256];
    bx__nn_path(m, path, sizeof path);
    if (path[0]) snprintf(buf, n, "module '%s' (%s)", bx_module_type_name(m), path);
    else snprintf(buf, n, "module '%s'", bx_module_type_name(m));
    return buf;
}

static int find_slot(const bx__nn_slot *s, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].name, name) == 0) return i;
    return -1;
}

static int find_child(const bx_module *m, const char *name, size_t len) {
    for (int i = 0; i < m->nchildren; i++)
        if (strlen(m->children[i].name) == len && memcmp(m->children[i].name, name, len) == 0) return i;
    return -1;
}

/* A new entry name must be non-empty, dot-free and unused in m. */
static bx_status check_name(const bx_module *m, const char *name, const char *what) {
    char w[320];
    if (!name || !name[0]) return bx__error(BX_ERR_INVALID, "%s: %s name is empty", who(m, w, sizeof w), what);
    if (strchr(name, '.'))
        return bx__error(BX_ERR_INVALID, "%s: %s name '%s' contains '.'", who(m, w, sizeof w), what, name);
    const char *kind = NULL;
    if (find_slot(m->params, m->nparams, name) >= 0) kind = "parameter";
    else if (find_slot(m->buffers, m->nbuffers, name) >= 0) kind = "buffer";
    else if (find_child(m, name, strlen(name)) >= 0) kind = "child module";
    if (kind)
        return bx__error(BX_ERR_INVALID, "%s: cannot add %s '%s': a %s of that name exists",
                         who(m, w, sizeof w), what, name, kind);
    return BX_OK;
}

/* ---- lifetime ------------------------------------------------------------------ */

bx_module *bx_module_new(const bx_module_type *t, void *impl) {
    if (!t) {
        bx__error(BX_ERR_INVALID, "module_new: type is NULL");
        return NULL;
    }
    bx_module *m = bx__calloc(sizeof *m);
    if (!m) {
        if (impl && t->destroy_impl) t->destroy_impl(impl);
        return NULL;
    }
    m->type = t;
    m->impl = impl;
    m->training = true;
    return m;
}

void bx_module_free(bx_module *m) {
    if (!m) return;
    for (int i = 0; i < m->nchildren; i++) {
        bx_module_free(m->children[i].m);
        bx__free(m->children[i].name);
    }
    for (int i = 0; i < m->nparams; i++) {
        bx_tensor_free(m->params[i].t);
        bx__free(m->params[i].name);
    }
    for (int i = 0; i < m->nbuffers; i++) {
        bx_tensor_free(m->buffers[i].t);
        bx__free(m->buffers[i].name);
    }
    for (int i = 0; i < m->nreparams; i++) bx__free(m->reparams[i].name);
    bx__free(m->children);
    bx__free(m->params);
    bx__free(m->buffers);
    bx__free(m->reparams);
    bx__free(m->pre_hooks);
    bx__free(m->post_hooks);
    if (m->impl && m->type->destroy_impl) m->type->destroy_impl(m->impl);
    bx__free(m);
}

/* ---- children ------------------------------------------------------------------ */

bx_status bx_module_add_child(bx_module *m, const char *name, bx_module *child) {
    char w[320];
    if (!m) {
        bx_module_free(child);
        return bx__error(BX_ERR_INVALID, "add_child: module is NULL");
    }
    if (!child) {
        /* the constructor that produced NULL left its reason in the message */
        bx__error_prefix("%s: add child '%s'", who(m, w, sizeof w), name ? name : "");
        return BX_ERR_INVALID;
    }
    if (child->parent || child == m) {
        /* do not free: it belongs to another tree */
        return bx__error(BX_ERR_INVALID, "%s: child '%s' already has a parent", who(m, w, sizeof w),
                         name ? name : "");
    }
    bx_status s = check_name(m, name, "child");
    if (s == BX_OK) s = bx__nn_reserve((void **)&m->children, &m->capchildren, m->nchildren + 1,
                                       sizeof *m->children);
    char *nm = s == BX_OK ? bx__strdup(name) : NULL;
    if (!nm) {
        bx_module_free(child);
        return s != BX_OK ? s : BX_ERR_NOMEM;
    }
    m->children[m->nchildren].name = nm;
    m->children[m->nchildren].m = child;
    m->nchildren++;
    child->parent = m;
    return BX_OK;
}

bx_module *bx_module_child(const bx_module *m, const char *name) {
    if (!m || !name) return NULL;
    int i = find_child(m, name, strlen(name));
    return i < 0 ? NULL : m->children[i].m;
}

int bx_module_num_children(const bx_module *m) { return m ? m->nchildren : 0; }

bx_module *bx_module_child_at(const bx_module *m, int i, const char **name) {
    if (!m || i < 0 || i >= m->nchildren) return NULL;
    if (name) *name = m->children[i].name;
    return m->children[i].m;
}

bx_module *bx_module_find(bx_module *root, const char *path) {
    if (!root || !path) return NULL;
    bx_module *m = root;
    const char *p = path;
    while (*p) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        int i = find_child(m, p, len);
        if (i < 0) {
            char w[320];
            bx__error(BX_ERR_NOT_FOUND, "%s has no submodule '%s'", who(root, w, sizeof w), path);
            return NULL;
        }
        m = m->children[i].m;
        p += len;
        if (*p == '.') p++;
    }
    return m;
}

bx_status bx_module_replace_child(bx_module *root, const char *path, bx_module *child, bx_module **old) {
    if (old) *old = NULL;
    if (!root || !path || !path[0]) {
        bx_module_free(child);
        return bx__error(BX_ERR_INVALID, "replace_child: %s", root ? "empty path" : "module is NULL");
    }
    if (!child) {
        bx__error_prefix("replace_child '%s'", path);
        return BX_ERR_INVALID;
    }
    if (child->parent) return bx__error(BX_ERR_INVALID, "replace_child '%s': new module already has a parent", path);
    const char *last = strrchr(path, '.');
    bx_module *parent = root;
    if (last) {
        char pp[512];
        size_t len = (size_t)(last - path);
        if (len >= sizeof pp) len = sizeof pp - 1;
        memcpy(pp, path, len);
        pp[len] = '\0';
        parent = bx_module_find(root, pp);
    }
    const char *name = last ? last + 1 : path;
    int i = parent ? find_child(parent, name, strlen(name)) : -1;
    if (i < 0) {
        char w[320];
        bx_module_free(child);
        return bx__error(BX_ERR_NOT_FOUND, "%s has no submodule '%s'", who(root, w, sizeof w), path);
    }
    bx_module *prev = parent->children[i].m;
    prev->parent = NULL;
    parent->children[i].m = child;
    child->parent = parent;
    if (old) *old = prev;
    else bx_module_free(prev);
    return BX_OK;
}

/* ---- parameters and buffers -------------------------------------------------------- */

static bx_status add_slot(bx_module *m, bx__nn_slot **arr, int *n, int *cap, const char *name,
                          bx_tensor *t, bool persistent, const char *what) {
    char w[320];
    bx_status s = check_name(m, name, what);
    if (s == BX_OK && t && (t->flags & (BX_TF_ARENA | BX_TF_POISON)))
        s = bx__error(BX_ERR_INVALID, "%s: %s '%s' must be an owned tensor, not a step tensor",
                      who(m, w, sizeof w), what, name);
    if (s == BX_OK) s = bx__nn_reserve((void **)arr, cap, *n + 1, sizeof **arr);
    char *nm = s == BX_OK ? bx__strdup(name) : NULL;
    if (!nm) {
        if (!t || !(t->flags & BX_TF_ARENA)) bx_tensor_free(t);
        return s != BX_OK ? s : BX_ERR_NOMEM;
    }
    (*arr)[*n].name = nm;
    (*arr)[*n].t = t;
    (*arr)[*n].persistent = persistent;
    (*n)++;
    return BX_OK;
}

bx_status bx_module_add_param(bx_module *m, const char *name, bx_tensor *p) {
    if (!m) {
        bx_tensor_free(p);
        return bx__error(BX_ERR_INVALID, "add_param: module is NULL");
    }
    bx_status s = add_slot(m, &m->params, &m->nparams, &m->capparams, name, p, true, "parameter");
    if (s == BX_OK && p) bx_param_mark(p);
    return s;
}

bx_status bx_module_add_buffer(bx_module *m, const char *name, bx_tensor *t, bool persistent) {
    if (!m) {
        bx_tensor_free(t);
        return bx__error(BX_ERR_INVALID, "add_buffer: module is NULL");
    }
    bx_status s = add_slot(m, &m->buffers, &m->nbuffers, &m->capbuffers, name, t, persistent, "buffer");
    if (s == BX_OK && t) t->requires_grad = false;
    return s;
}

bx_tensor *bx_module_param(const bx_module *m, const char *name) {
    if (!m || !name) return NULL;
    int i = find_slot(m->params, m->nparams, name);
    return i < 0 ? NULL : m->params[i].t;
}

bool bx_module_has_param(const bx_module *m, const char *name) {
    return m && name && find_slot(m->params, m->nparams, name) >= 0;
}

bx_tensor *bx_module_buffer(const bx_module *m, const char *name) {
    if (!m || !name) return NULL;
    int i = find_slot(m->buffers, m->nbuffers, name);
    return i < 0 ? NULL : m->buffers[i].t;
}

static bx_tensor *remove_slot(bx_module *m, bx__nn_slot *arr, int *n, const char *name, const char *what) {
    int i = name ? find_slot(arr, *n, name) : -1;
    if (i < 0) {
        char w[320];
        bx__error(BX_ERR_NOT_FOUND, "%s has no %s '%s'", who(m, w, sizeof w), what, name ? name : "(null)");
        return NULL;
    }
    bx_tensor *t = arr[i].t;
    bx__free(arr[i].name);
    memmove(arr + i, arr + i + 1, sizeof *arr * (size_t)(*n - i - 1));
    (*n)--;
    return t;
}

bx_tensor *bx_module_remove_param(bx_module *m, const char *name) {
    return m ? remove_slot(m, m->params, &m->nparams, name, "parameter") : NULL;
}

bx_tensor *bx_module_remove_buffer(bx_module *m, const char *name) {
    return m ? remove_slot(m, m->buffers, &m->nbuffers, name, "buffer") : NULL;
}

bx_status bx_module_rename_param(bx_module *m, const char *old_name, const char *new_name) {
    if (!m) return bx__error(BX_ERR_INVALID, "rename_param: module is NULL");
    int i = old_name ? find_slot(m->params, m->nparams, old_name) : -1;
    if (i < 0) {
        char w[320];
        return bx__error(BX_ERR_NOT_FOUND, "%s has no parameter '%s'", who(m, w, sizeof w),
                         old_name ? old_name : "(null)");
    }
    bx_status s = check_name(m, new_name, "parameter");
    if (s != BX_OK) return s;
    char *nm = bx__strdup(new_name);
    if (!nm) return BX_ERR_NOMEM;
    bx__free(m->params[i].name);
    m->params[i].name = nm;
    return BX_OK;
}

int bx_module_num_own_params(const bx_module *m) { return m ? m->nparams : 0; }
int bx_module_num_own_buffers(const bx_module *m) { return m ? m->nbuffers : 0; }

bx_tensor *bx_module_param_at(const bx_module *m, int i, const char **name) {
    if (!m || i < 0 || i >= m->nparams) return NULL;
    if (name) *name = m->params[i].name;
    return m->params[i].t;
}

bx_tensor *bx_module_buffer_at(const bx_module *m, int i, const char **name, bool *persistent) {
    if (!m || i < 0 || i >= m->nbuffers) return NULL;
    if (name) *name = m->buffers[i].name;
    if (persistent) *persistent = m->buffers[i].persistent;
    return m->buffers[i].t;
}

/* ---- reparametrisation -------------------------------------------------------------- */

static int find_reparam(const bx_module *m, const char *name) {
    for (int i = 0; i < m->nreparams; i++)
        if (strcmp(m->reparams[i].name, name) == 0) return i;
    return -1;
}

bx_status bx_module_set_reparam(bx_module *m, const char *name, bx_reparam_fn fn, void *ud) {
    if (!m || !name || !name[0] || strchr(name, '.'))
        return bx__error(BX_ERR_INVALID, "set_reparam: %s", m ? "bad name" : "module is NULL");
    int i = find_reparam(m, name);
    if (!fn) {
        if (i >= 0) {
            bx__free(m->reparams[i].name);
            memmove(m->reparams + i, m->reparams + i + 1, sizeof *m->reparams * (size_t)(m->nreparams - i - 1));
            m->nreparams--;
        }
        return BX_OK;
    }
    if (i < 0) {
        if (bx__nn_reserve((void **)&m->reparams, &m->capreparams, m->nreparams + 1, sizeof *m->reparams))
            return BX_ERR_NOMEM;
        char *nm = bx__strdup(name);
        if (!nm) return BX_ERR_NOMEM;
        i = m->nreparams++;
        m->reparams[i].name = nm;
    }
    m->reparams[i].fn = fn;
    m->reparams[i].ud = ud;
    m->reparams[i].active = false;
    return BX_OK;
}

bool bx_module_has_reparam(const bx_module *m, const char *name) {
    return m && name && find_reparam(m, name) >= 0;
}

bx_tensor *bx_module_tensor(bx_step *st, bx_module *m, const char *name) {
    if (!m || !name) return NULL;
    int r = find_reparam(m, name);
    if (r >= 0 && !m->reparams[r].active) {
        m->reparams[r].active = true;
        bx_reparam_fn fn = m->reparams[r].fn;
        bx_tensor *t = fn(m->reparams[r].ud, m, st);
        /* the hook may have changed the list; find the entry again */
        r = find_reparam(m, name);
        if (r >= 0) m->reparams[r].active = false;
        if (!t) {
            char w[320];
            return bx_step_fail(st, BX_ERR_STATE, "%s: reparametrisation of '%s' returned NULL",
                                who(m, w, sizeof w), name);
        }
        return t;
    }
    int i = find_slot(m->params, m->nparams, name);
    if (i >= 0) return m->params[i].t;
    i = find_slot(m->buffers, m->nbuffers, name);
    return i >= 0 ? m->buffers[i].t : NULL;
}

/* ---- forward and hooks ---------------------------------------------------------------- */

bx_tensor *bx_module_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    if (!m) return bx_step_fail(st, BX_ERR_INVALID, "module forward: module is NULL");
    if (!m->type->forward) {
        char w[320];
        return bx_step_fail(st, BX_ERR_UNSUPPORTED, "%s has no forward", who(m, w, sizeof w));
    }
    bool saved = bx_step_training(st);
    bx_step_set_training(st, m->training);
    for (int i = 0; i < m->npre; i++) {
        bx_forward_pre_hook_fn fn = (bx_forward_pre_hook_fn)m->pre_hooks[i].fn;
        bx_tensor *nx = fn(m->pre_hooks[i].ud, m, st, x);
        if (nx) x = nx;
    }
    bx_tensor *y = m->type->forward(m, st, x);
    if (!y) {
        char w[320];
        y = bx_step_fail(st, BX_ERR_STATE, "%s: forward returned NULL", who(m, w, sizeof w));
    }
    for (int i = 0; i < m->npost; i++) {
        bx_forward_hook_fn fn = (bx_forward_hook_fn)m->post_hooks[i].fn;
        bx_tensor *ny = fn(m->post_hooks[i].ud, m, st, x, y);
        if (ny) y = ny;
    }
    bx_step_set_training(st, saved);
    return y;
}

static bx_status add_hook(bx__nn_hook **arr, int *n, int *cap, void (*fn)(void), void *ud) {
    if (!fn) return bx__error(BX_ERR_INVALID, "add_forward_hook: hook function is NULL");
    if (bx__nn_reserve((void **)arr, cap, *n + 1, sizeof **arr)) return BX_ERR_NOMEM;
    (*arr)[*n].fn = fn;
    (*arr)[*n].ud = ud;
    (*n)++;
    return BX_OK;
}

static bool remove_hook(bx__nn_hook *arr, int *n, void (*fn)(void), void *ud) {
    for (int i = 0; i < *n; i++) {
        if (arr[i].fn == fn && arr[i].ud == ud) {
            memmove(arr + i, arr + i + 1, sizeof *arr * (size_t)(*n - i - 1));
            (*n)--;
            return true;
        }
    }
    return false;
}

bx_status bx_module_add_forward_pre_hook(bx_module *m, bx_forward_pre_hook_fn fn, void *ud) {
    if (!m) return bx__error(BX_ERR_INVALID, "add_forward_pre_hook: module is NULL");
    return add_hook(&m->pre_hooks, &m->npre, &m->cappre, (void (*)(void))fn, ud);
}

bx_status bx_module_add_forward_hook(bx_module *m, bx_forward_hook_fn fn, void *ud) {
    if (!m) return bx__error(BX_ERR_INVALID, "add_forward_hook: module is NULL");
    return add_hook(&m->post_hooks, &m->npost, &m->cappost, (void (*)(void))fn, ud);
}

bool bx_module_remove_forward_pre_hook(bx_module *m, bx_forward_pre_hook_fn fn, void *ud) {
    return m && remove_hook(m->pre_hooks, &m->npre, (void (*)(void))fn, ud);
}

bool bx_module_remove_forward_hook(bx_module *m, bx_forward_hook_fn fn, void *ud) {
    return m && remove_hook(m->post_hooks, &m->npost, (void (*)(void))fn, ud);
}

/* ---- whole-tree operations ------------------------------------------------------------- */

void bx_module_train(bx_module *m, bool training) {
    if (!m) return;
    m->training = training;
    for (int i = 0; i < m->nchildren; i++) bx_module_train(m->children[i].m, training);
}

bool bx_module_is_training(const bx_module *m) { return m && m->training; }

void bx_module_requires_grad(bx_module *m, bool requires_grad) {
    if (!m) return;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].t) m->params[i].t->requires_grad = requires_grad;
    for (int i = 0; i < m->nchildren; i++) bx_module_requires_grad(m->children[i].m, requires_grad);
}

void bx_module_zero_grad(bx_module *m) {
    if (!m) return;
    for (int i = 0; i < m->nparams; i++)
        if (m->params[i].t) bx_param_zero_grad(m->params[i].t);
    for (int i = 0; i < m->nchildren; i++) bx_module_zero_grad(m->children[i].m);
}

int64_t bx_module_num_params(const bx_module *m, bool trainable_only) {
    if (!m) return 0;
    int64_t n = 0;
    for (int i = 0; i < m->nparams; i++) {
        const bx_tensor *t = m->params[i].t;
        if (t && (!trainable_only || t->requires_grad)) n += bx_numel(t);
    }
    for (int i = 0; i < m->nchildren; i++) n += bx_module_num_params(m->children[i].m, trainable_only);
    return n;
}

bx_status bx_module_reset_parameters(bx_module *m, bx_rng *rng) {
    if (!m) return bx__error(BX_ERR_INVALID, "reset_parameters: module is NULL");
    if (m->type->reset_parameters) {
        bx_status s = m->type->reset_parameters(m, rng);
        if (s != BX_OK) return s;
    }
    for (int i = 0; i < m->nchildren; i++) {
        bx_status s = bx_module_reset_parameters(m->children[i].m, rng);
        if (s != BX_OK) return s;
    }
    return BX_OK;
}

/* ---- clone ------------------------------------------------------------------------------ */

static bx_status clone_slots(const bx__nn_slot *src, int n, bx__nn_slot **dst, int *dn, int *dcap) {
    if (n == 0) return BX_OK;
    if (bx__nn_reserve((void **)dst, dcap, n, sizeof **dst)) return BX_ERR_NOMEM;
    for (int i = 0; i < n; i++) {
        bx_tensor *t = NULL;
        if (src[i].t) {
            t = bx_tensor_clone(src[i].t);
            if (!t) return BX_ERR_NOMEM;
            t->flags |= src[i].t->flags & BX_TF_PARAM;
            t->requires_grad = src[i].t->requires_grad;
        }
        char *nm = bx__strdup(src[i].name);
        if (!nm) {
            bx_tensor_free(t);
            return BX_ERR_NOMEM;
        }
        (*dst)[*dn].name = nm;
        (*dst)[*dn].t = t;
        (*dst)[*dn].persistent = src[i].persistent;
        (*dn)++;
    }
    return BX_OK;
}

static bx_status clone_hooks(const bx__nn_hook *src, int n, bx__nn_hook **dst, int *dn, int *dcap) {
    if (n == 0) return BX_OK;
    if (bx__nn_reserve((void **)dst, dcap, n, sizeof **dst)) return BX_ERR_NOMEM;
    memcpy(*dst, src, sizeof *src * (size_t)n);
    *dn = n;
    return BX_OK;
}

static bx_status clone_rec(const bx_module *m, bx_module **out) {
    *out = NULL;
    void *impl = NULL;
    if (m->impl) {
        if (!m->type->clone_impl) {
            char w[320];
            return bx__error(BX_ERR_UNSUPPORTED, "clone: %s cannot be copied (its type has no clone_impl)",
                             who(m, w, sizeof w));
        }
        impl = m->type->clone_impl(m->impl);
        if (!impl) return bx__error(BX_ERR_NOMEM, "clone: out of memory copying a '%s'", bx_module_type_name(m));
    }
    bx_module *c = bx_module_new(m->type, impl);
    if (!c) return BX_ERR_NOMEM;
    c->training = m->training;
    bx_status s = clone_slots(m->params, m->nparams, &c->params, &c->nparams, &c->capparams);
    if (s == BX_OK) s = clone_slots(m->buffers, m->nbuffers, &c->buffers, &c->nbuffers, &c->capbuffers);
    if (s == BX_OK) s = clone_hooks(m->pre_hooks, m->npre, &c->pre_hooks, &c->npre, &c->cappre);
    if (s == BX_OK) s = clone_hooks(m->post_hooks, m->npost, &c->post_hooks, &c->npost, &c->cappost);
    for (int i = 0; s == BX_OK && i < m->nreparams; i++)
        s = bx_module_set_reparam(c, m->reparams[i].name, m->reparams[i].fn, m->reparams[i].ud);
    for (int i = 0; s == BX_OK && i < m->nchildren; i++) {
        bx_module *ch;
        s = clone_rec(m->children[i].m, &ch);
        if (s == BX_OK) s = bx_module_add_child(c, m->children[i].name, ch);
    }
    if (s != BX_OK) {
        bx_module_free(c);
        return s;
    }
    *out = c;
    return BX_OK;
}

bx_module *bx_module_clone(const bx_module *m) {
    if (!m) {
        bx__error(BX_ERR_INVALID, "clone: module is NULL");
        return NULL;
    }
    bx_module *c;
    clone_rec(m, &c);
    return c;
}

/* ---- repr ------------------------------------------------------------------------------- */

typedef struct repr_buf {
    char *buf;
    size_t n, len;
} repr_buf;

static void rb_put(repr_buf *rb, const char *fmt, const char *a, const char *b) {
    char tmp[1024];
    int k = snprintf(tmp, sizeof tmp, fmt, a, b);
    if (k < 0) return;
    size_t add = (size_t)k < sizeof tmp ? (size_t)k : sizeof tmp - 1;
    if (rb->n && rb->len < rb->n - 1) {
        size_t room = rb->n - 1 - rb->len;
        memcpy(rb->buf + rb->len, tmp, add < room ? add : room);
        rb->buf[rb->len + (add < room ? add : room)] = '\0';
    }
    rb->len += add;
}

static void repr_rec(const bx_module *m, repr_buf *rb, int depth) {
    char extra[512] = "";
    if (m->type->extra_repr) m->type->extra_repr(m, extra, sizeof extra);
    rb_put(rb, "%s(%s", bx_module_type_name(m), extra);
    if (m->nchildren) {
        rb_put(rb, "\n", "", "");
        for (int i = 0; i < m->nchildren; i++) {
            for (int d = 0; d <= depth; d++) rb_put(rb, "  ", "", "");
            rb_put(rb, "(%s): ", m->children[i].name, "");
            repr_rec(m->children[i].m, rb, depth + 1);
            rb_put(rb, "\n", "", "");
        }
        for (int d = 0; d < depth; d++) rb_put(rb, "  ", "", "");
    }
    rb_put(rb, ")", "", "");
}

size_t bx_module_repr(const bx_module *m, char *buf, size_t n) {
    repr_buf rb = {buf, n, 0};
    if (n) buf[0] = '\0';
    if (m) repr_rec(m, &rb, 0);
    return rb.len;
}
