/* reparam.c - pruning of module parameters: the weight_orig / weight_mask
 * reparametrisation of torch.nn.utils.prune (apply, global_unstructured,
 * custom_from_mask, remove, is_pruned) and the "pruned-permanent" state dict
 * that ModelPruning's checkpoints hold.
 *
 * After the first prune of `weight`:
 *   parameters: ..., weight_orig   (the same tensor object, moved last as
 *                                   torch's register_parameter does)
 *   buffers:    ..., weight_mask   (f32 0/1, persistent)
 *   reparam:    weight = weight_orig * weight_mask   (bx_mul on the step)
 * so optimizers keep training weight_orig and its pruned entries get zero
 * gradient. The step allocates nothing extra on the heap. */
#include "nn/nn_int.h"
#include "prune/prune_int.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- interned names -------------------------------------------------------------------
 * A reparametrisation gets one borrowed `ud` pointer, shared by every clone
 * of the module (bx_module_clone copies the fn/ud pairs) and never freed by
 * the module. Pruning passes the parameter name, so the name must outlive
 * every module: names are interned once per distinct string ("weight",
 * "bias", ...) in a process-wide list that only grows, guarded by a mutex.
 * Plain malloc, not the allocator hook: these few bytes live for the whole
 * process, past any allocator a user installs and removes. */
typedef struct name_node {
    struct name_node *next;
    char name[];
} name_node;

static pthread_mutex_t g_names_lock = PTHREAD_MUTEX_INITIALIZER;
static name_node *g_names; /* guarded by g_names_lock */

static const char *intern_name(const char *name) {
    pthread_mutex_lock(&g_names_lock);
    name_node *p = g_names;
    while (p && strcmp(p->name, name) != 0) p = p->next;
    if (!p) {
        size_t len = strlen(name);
        p = malloc(sizeof *p + len + 1);
        if (p) {
            memcpy(p->name, name, len + 1);
            p->next = g_names;
            g_names = p;
        }
    }
    pthread_mutex_unlock(&g_names_lock);
    if (!p) bx__error(BX_ERR_NOMEM, "prune: out of memory");
    return p ? p->name : NULL;
}

/* ---- names and lookups ------------------------------------------------------------------ */

typedef struct names {
    char orig[BX__PRUNE_NAME_MAX + 8];
    char mask[BX__PRUNE_NAME_MAX + 8];
} names;

static void make_names(const char *name, names *n) {
    snprintf(n->orig, sizeof n->orig, "%s_orig", name);
    snprintf(n->mask, sizeof n->mask, "%s_mask", name);
}

/* "module 'Linear' (fc1) parameter 'weight'" for messages. */
static const char *where(const bx_module *m, const char *name, char *buf, size_t n) {
    char path[256];
    bx__nn_path(m, path, sizeof path);
    if (path[0])
        snprintf(buf, n, "module '%s' (%s) parameter '%s'", bx_module_type_name(m), path, name);
    else
        snprintf(buf, n, "module '%s' parameter '%s'", bx_module_type_name(m), name);
    return buf;
}

static bx_status check_args(const bx_module *m, const char *name, const char *what) {
    if (!m) return bx__error(BX_ERR_INVALID, "%s: module is NULL", what);
    if (!name || !name[0] || strchr(name, '.'))
        return bx__error(BX_ERR_INVALID, "%s: bad parameter name '%s'", what, name ? name : "(null)");
    if (strlen(name) > BX__PRUNE_NAME_MAX)
        return bx__error(BX_ERR_INVALID, "%s: parameter name longer than %d characters", what,
                         BX__PRUNE_NAME_MAX);
    return BX_OK;
}

static bx_tensor *prune_reparam(void *ud, bx_module *m, bx_step *st);

static bool has_prune_reparam(const bx_module *m, const char *name) {
    for (int i = 0; i < m->nreparams; i++)
        if (m->reparams[i].fn == prune_reparam && strcmp(m->reparams[i].name, name) == 0) return true;
    return false;
}

bool bx_prune_is_pruned(const bx_module *m, const char *name) {
    if (!m || !name || strlen(name) > BX__PRUNE_NAME_MAX || !has_prune_reparam(m, name)) return false;
    names n;
    make_names(name, &n);
    return bx_module_param(m, n.orig) && bx_module_buffer(m, n.mask);
}

bx_tensor *bx_prune_param(const bx_module *m, const char *name) {
    if (!m || !name) return NULL;
    if (bx_prune_is_pruned(m, name)) {
        names n;
        make_names(name, &n);
        return bx_module_param(m, n.orig);
    }
    return bx_module_param(m, name);
}

bx_tensor *bx_prune_mask(const bx_module *m, const char *name) {
    if (!bx_prune_is_pruned(m, name)) return NULL;
    names n;
    make_names(name, &n);
    return bx_module_buffer(m, n.mask);
}

bool bx_prune_tree_is_pruned(bx_module *m) {
    if (!m) return false;
    for (int i = 0; i < m->nreparams; i++)
        if (m->reparams[i].fn == prune_reparam && bx_prune_is_pruned(m, m->reparams[i].name)) return true;
    for (int i = 0; i < m->nchildren; i++)
        if (bx_prune_tree_is_pruned(m->children[i].m)) return true;
    return false;
}

/* Moves parameter slot `name` to position `to` (-1: last), keeping the
 * others in order; returns its old position. Allocation-free. */
static int move_param(bx_module *m, const char *name, int to) {
    int i = 0;
    while (i < m->nparams && strcmp(m->params[i].name, name) != 0) i++;
    if (i == m->nparams) return -1;
    if (to < 0 || to >= m->nparams) to = m->nparams - 1;
    bx__nn_slot slot = m->params[i];
    if (to > i)
        memmove(m->params + i, m->params + i + 1, sizeof *m->params * (size_t)(to - i));
    else if (to < i)
        memmove(m->params + to + 1, m->params + to, sizeof *m->params * (size_t)(i - to));
    m->params[to] = slot;
    return i;
}

/* ---- the reparametrisation ------------------------------------------------------------------ */

// weight = weight_orig * weight_mask   (orig (shape), mask (shape) f32 -> (shape))
// backward: d orig = g * mask (bx_mul's), so pruned entries get zero gradient.
static bx_tensor *prune_reparam(void *ud, bx_module *m, bx_step *st) {
    const char *name = ud;
    names n;
    make_names(name, &n);
    bx_tensor *orig = bx_module_tensor(st, m, n.orig);
    bx_tensor *mask = bx_module_buffer(m, n.mask);
    if (!orig || !mask) {
        char w[400];
        return bx_step_fail(st, BX_ERR_STATE, "prune: %s is pruned but '%s' or '%s' is missing",
                            where(m, name, w, sizeof w), n.orig, n.mask);
    }
    return bx_mul(st, orig, mask);
}

/* The parameter of `name` and its current mask. *orig: the trained tensor;
 * *mask: the mask buffer, NULL when not pruned yet. */
static bx_status resolve(bx_module *m, const char *name, const char *what, bx_tensor **orig, bx_tensor **mask) {
    char w[400];
    bx_status s = check_args(m, name, what);
    if (s != BX_OK) return s;
    *mask = bx_prune_mask(m, name);
    *orig = bx_prune_param(m, name);
    if (!*orig)
        return bx__error(BX_ERR_NOT_FOUND, "%s: %s does not exist%s", what, where(m, name, w, sizeof w),
                         bx_module_has_param(m, name) ? " (it is None)" : "");
    if ((*orig)->dtype != BX_F32) {
        char sh[96];
        return bx__error(BX_ERR_SHAPE, "%s: %s %s is %s; pruning needs f32", what, where(m, name, w, sizeof w),
                         bx_shape_str(*orig, sh, sizeof sh), bx_dtype_name((*orig)->dtype));
    }
    return BX_OK;
}

/* orig * mask elementwise into a new owned f32 tensor (torch's apply_mask:
 * a pruned negative value becomes -0.0, as there). */
static bx_tensor *masked_copy(const bx_tensor *orig, const bx_tensor *mask) {
    bx_tensor *t = bx_tensor_clone(orig);
    if (!t || !mask) return t;
    float *d = t->data;
    int64_t n = bx_numel(t);
    for (int64_t i = 0; i < n; i++) d[i] *= (float)bx__prune_mask_get(mask, i);
    return t;
}

/* New mask to update: a copy of the current one, or ones for a first prune. */
static bx_tensor *start_mask(const bx_tensor *orig, const bx_tensor *mask) {
    if (mask) return bx_tensor_clone(mask);
    bx_tensor *t = bx_tensor_new(BX_F32, orig->ndim, orig->shape);
    if (t) bx_fill(t, 1.0);
    return t;
}

/* Installs newmask (taken over) as the mask of `name`: copied into the
 * existing buffer, or the first-prune reparametrisation. On failure the
 * module is as before and newmask is freed. */
static bx_status commit(bx_module *m, const char *name, bx_tensor *newmask, const char *what) {
    names n;
    make_names(name, &n);
    bx_tensor *cur = bx_prune_mask(m, name);
    if (cur) {
        bx_status s = bx_copy(cur, newmask);
        bx_tensor_free(newmask);
        return s;
    }
    const char *ud = intern_name(name);
    if (!ud) {
        bx_tensor_free(newmask);
        return BX_ERR_NOMEM;
    }
    char w[400];
    if (bx_module_has_reparam(m, name)) {
        bx_tensor_free(newmask);
        return bx__error(BX_ERR_STATE, "%s: cannot prune %s: it already has another reparametrisation", what,
                         where(m, name, w, sizeof w));
    }
    if (bx_module_buffer(m, n.mask) || bx_module_has_param(m, n.orig) || bx_module_child(m, n.mask) ||
        bx_module_child(m, n.orig)) {
        bx_tensor_free(newmask);
        return bx__error(BX_ERR_INVALID, "%s: cannot reparametrise %s: '%s' or '%s' is already taken", what,
                         where(m, name, w, sizeof w), n.orig, n.mask);
    }
    bx_status s = bx_module_rename_param(m, name, n.orig);
    if (s != BX_OK) {
        bx_tensor_free(newmask);
        return s;
    }
    int old_pos = move_param(m, n.orig, -1); /* register_parameter(name_orig) appends */
    newmask->requires_grad = false;
    s = bx_module_add_buffer(m, n.mask, newmask, true); /* frees newmask on failure */
    if (s == BX_OK) {
        s = bx_module_set_reparam(m, name, prune_reparam, (void *)ud);
        if (s != BX_OK) bx_tensor_free(bx_module_remove_buffer(m, n.mask));
    }
    if (s != BX_OK) {
        move_param(m, n.orig, old_pos);
        char msg[512];
        bx__strlcpy(msg, bx_errmsg(), sizeof msg);
        bx_module_rename_param(m, n.orig, name); /* the old name is free again: cannot fail */
        bx__error(s, "%s", msg);
    }
    return s;
}

/* ---- apply ---------------------------------------------------------------------------------- */

static const char *method_fn(const bx_prune_opts *o) {
    static const char *const fns[] = {"l1_unstructured", "random_unstructured", "ln_structured",
                                      "random_structured"};
    return o && (unsigned)o->method < 4u ? fns[o->method] : "prune";
}

bx_status bx_prune_apply(bx_module *m, const char *name, const bx_prune_opts *o) {
    const char *what = method_fn(o);
    bx_tensor *orig, *mask;
    bx_status s = resolve(m, name, what, &orig, &mask);
    if (s != BX_OK) return s;
    bx_tensor *scores = masked_copy(orig, mask); /* the current values */
    bx_tensor *nm = scores ? start_mask(orig, mask) : NULL;
    if (!scores || !nm) {
        bx_tensor_free(scores);
        return BX_ERR_NOMEM;
    }
    s = bx_prune_compute_mask(scores, nm, o, NULL);
    bx_tensor_free(scores);
    if (s != BX_OK) {
        bx_tensor_free(nm);
        char w[400];
        bx__error_prefix("%s", where(m, name, w, sizeof w));
        return s;
    }
    return commit(m, name, nm, what);
}

bx_status bx_prune_apply_mask(bx_module *m, const char *name, const bx_tensor *mask) {
    const char *what = "custom_from_mask";
    bx_tensor *orig, *cur;
    bx_status s = resolve(m, name, what, &orig, &cur);
    if (s != BX_OK) return s;
    if (mask && bx_numel(mask) != bx_numel(orig)) {
        char a[96], b[96], w[400];
        return bx__error(BX_ERR_SHAPE, "%s: mask %s does not match %s %s", what, bx_shape_str(mask, a, sizeof a),
                         where(m, name, w, sizeof w), bx_shape_str(orig, b, sizeof b));
    }
    if (mask && !bx_same_shape(mask, orig)) {
        char a[96], b[96], w[400];
        return bx__error(BX_ERR_SHAPE, "%s: mask %s does not match %s %s", what, bx_shape_str(mask, a, sizeof a),
                         where(m, name, w, sizeof w), bx_shape_str(orig, b, sizeof b));
    }
    bx_tensor *nm = start_mask(orig, cur);
    if (!nm) return BX_ERR_NOMEM;
    if (mask) {
        float *d = nm->data;
        for (int64_t i = 0; i < bx_numel(nm); i++) d[i] *= (float)bx_get(mask, i);
    }
    return commit(m, name, nm, what);
}

/* ---- global ----------------------------------------------------------------------------------- */

bx_status bx_prune_global(const bx_prune_target *targets, int n, const bx_prune_opts *o) {
    const char *what = "global_unstructured";
    if (!targets || n < 1) return bx__error(BX_ERR_INVALID, "%s: no parameters to prune", what);
    for (int i = 0; i < n; i++) {
        bx_status s = check_args(targets[i].module, targets[i].name, what);
        if (s != BX_OK) return s;
        for (int j = 0; j < i; j++)
            if (targets[j].module == targets[i].module && strcmp(targets[j].name, targets[i].name) == 0) {
                char w[400];
                return bx__error(BX_ERR_INVALID, "%s: %s is listed twice", what,
                                 where(targets[i].module, targets[i].name, w, sizeof w));
            }
    }
    bx_tensor **scores = bx__calloc(sizeof *scores * (size_t)n);
    bx_tensor **masks = bx__calloc(sizeof *masks * (size_t)n);
    bx_status s = scores && masks ? BX_OK : BX_ERR_NOMEM;
    for (int i = 0; i < n && s == BX_OK; i++) {
        bx_tensor *orig, *cur;
        s = resolve(targets[i].module, targets[i].name, what, &orig, &cur);
        if (s != BX_OK) break;
        scores[i] = masked_copy(orig, cur);
        masks[i] = start_mask(orig, cur);
        if (!scores[i] || !masks[i]) s = BX_ERR_NOMEM;
    }
    if (s == BX_OK)
        s = bx_prune_compute_masks_global((const bx_tensor *const *)scores, (bx_tensor *const *)masks, n, o, NULL);
    for (int i = 0; i < n && s == BX_OK; i++) {
        s = commit(targets[i].module, targets[i].name, masks[i], what);
        masks[i] = NULL;
    }
    for (int i = 0; i < n; i++) {
        if (scores) bx_tensor_free(scores[i]);
        if (masks) bx_tensor_free(masks[i]);
    }
    bx__free(scores);
    bx__free(masks);
    return s;
}

/* ---- remove ----------------------------------------------------------------------------------- */

bx_status bx_prune_remove(bx_module *m, const char *name) {
    const char *what = "prune remove";
    bx_status s = check_args(m, name, what);
    if (s != BX_OK) return s;
    char w[400];
    if (!bx_prune_is_pruned(m, name))
        return bx__error(BX_ERR_STATE, "%s: %s has to be pruned before pruning can be removed", what,
                         where(m, name, w, sizeof w));
    names n;
    make_names(name, &n);
    bx_tensor *orig = bx_module_param(m, n.orig);
    if ((s = bx_module_rename_param(m, n.orig, name)) != BX_OK) return s; /* only NOMEM: nothing changed */
    move_param(m, name, -1); /* setattr(module, name, orig) appends */
    bx_module_set_reparam(m, name, NULL, NULL);
    bx_tensor *mask = bx_module_remove_buffer(m, n.mask);
    /* orig.data = (orig * mask).data, in place: the tensor object stays */
    float *d = orig->data;
    int64_t cnt = bx_numel(orig);
    if (bx_is_contiguous(orig))
        for (int64_t i = 0; i < cnt; i++) d[i] *= (float)bx__prune_mask_get(mask, i);
    else
        for (int64_t i = 0; i < cnt; i++) bx_set(orig, i, (double)((float)bx_get(orig, i) * (float)bx_get(mask, i)));
    bx_tensor_free(mask);
    return BX_OK;
}

/* Names (without _orig) of the pruned parameters of m, in parameter order;
 * returns how many (at most cap). */
static int pruned_names(const bx_module *m, const char **out, int cap) {
    int k = 0;
    for (int i = 0; i < m->nparams; i++) {
        const char *pn = m->params[i].name;
        size_t len = strlen(pn);
        if (len <= 5 || strcmp(pn + len - 5, "_orig") != 0 || len - 5 > BX__PRUNE_NAME_MAX) continue;
        for (int r = 0; r < m->nreparams; r++) {
            const char *rn = m->reparams[r].name;
            if (m->reparams[r].fn == prune_reparam && strlen(rn) == len - 5 && strncmp(rn, pn, len - 5) == 0 &&
                bx_prune_is_pruned(m, rn)) {
                if (k < cap) out[k] = rn;
                k++;
                break;
            }
        }
    }
    return k;
}

bx_status bx_prune_remove_all(bx_module *m) {
    if (!m) return bx__error(BX_ERR_INVALID, "prune remove_all: module is NULL");
    int k = pruned_names(m, NULL, 0);
    if (k > 0) {
        const char **list = bx__malloc(sizeof *list * (size_t)k);
        char **copies = bx__calloc(sizeof *copies * (size_t)k);
        bx_status s = list && copies ? BX_OK : BX_ERR_NOMEM;
        if (s == BX_OK) pruned_names(m, list, k);
        /* the reparam names die with their entries: copy them first */
        for (int i = 0; i < k && s == BX_OK; i++)
            if (!(copies[i] = bx__strdup(list[i]))) s = BX_ERR_NOMEM;
        for (int i = 0; i < k && s == BX_OK; i++) s = bx_prune_remove(m, copies[i]);
        for (int i = 0; i < k && copies; i++) bx__free(copies[i]);
        bx__free(copies);
        bx__free(list);
        if (s != BX_OK) return s;
    }
    for (int i = 0; i < m->nchildren; i++) {
        bx_status s = bx_prune_remove_all(m->children[i].m);
        if (s != BX_OK) return s;
    }
    return BX_OK;
}

/* ---- inspection -------------------------------------------------------------------------------- */

bx_status bx_prune_mask_zeros(const bx_module *m, const char *name, int64_t *zeros, int64_t *numel) {
    bx_status s = check_args(m, name, "prune mask_zeros");
    if (s != BX_OK) return s;
    bx_tensor *p = bx_prune_param(m, name);
    if (!p) {
        char w[400];
        return bx__error(BX_ERR_NOT_FOUND, "prune mask_zeros: %s does not exist", where(m, name, w, sizeof w));
    }
    bx_tensor *mask = bx_prune_mask(m, name);
    int64_t z = 0, n = bx_numel(p);
    for (int64_t i = 0; mask && i < n; i++) z += bx__prune_mask_get(mask, i) == 0;
    if (zeros) *zeros = z;
    if (numel) *numel = n;
    return BX_OK;
}

bx_tensor *bx_prune_effective(const bx_module *m, const char *name) {
    if (check_args(m, name, "prune effective") != BX_OK) return NULL;
    bx_tensor *p = bx_prune_param(m, name);
    if (!p) {
        char w[400];
        bx__error(BX_ERR_NOT_FOUND, "prune effective: %s does not exist", where(m, name, w, sizeof w));
        return NULL;
    }
    bx_tensor *t = masked_copy(p, bx_prune_mask(m, name));
    if (t) {
        t->requires_grad = false;
        t->flags &= ~(uint32_t)BX_TF_PARAM;
    }
    return t;
}

/* ---- pruned-permanent state dict ------------------------------------------------------------------ */

static bx_status sd_add(bx_named_tensors *l, const char *prefix, const char *name, bx_tensor *t) {
    if (!t) return BX_ERR_NOMEM;
    t->requires_grad = false;
    t->flags &= ~(uint32_t)BX_TF_PARAM;
    char key[1024];
    snprintf(key, sizeof key, "%s%s%s", prefix, prefix[0] ? "." : "", name);
    return bx_named_tensors_add(l, key, t);
}

static bool is_pruned_orig(const bx_module *m, const char *pname, const char **base) {
    size_t len = strlen(pname);
    if (len <= 5 || len - 5 > BX__PRUNE_NAME_MAX || strcmp(pname + len - 5, "_orig") != 0) return false;
    char nm[BX__PRUNE_NAME_MAX + 1];
    memcpy(nm, pname, len - 5);
    nm[len - 5] = '\0';
    for (int r = 0; r < m->nreparams; r++)
        if (strcmp(m->reparams[r].name, nm) == 0 && bx_prune_is_pruned(m, nm)) {
            *base = m->reparams[r].name;
            return true;
        }
    return false;
}

static bool is_pruned_mask(const bx_module *m, const char *bname) {
    size_t len = strlen(bname);
    if (len <= 5 || len - 5 > BX__PRUNE_NAME_MAX || strcmp(bname + len - 5, "_mask") != 0) return false;
    char nm[BX__PRUNE_NAME_MAX + 1];
    memcpy(nm, bname, len - 5);
    nm[len - 5] = '\0';
    return bx_prune_is_pruned(m, nm);
}

bx_named_tensors *bx_prune_permanent_state_dict(bx_module *m) {
    if (!m) {
        bx__error(BX_ERR_INVALID, "prune permanent_state_dict: module is NULL");
        return NULL;
    }
    bx_named_modules *mods = bx_module_named_modules(m);
    bx_named_tensors *l = mods ? bx_named_tensors_new(true) : NULL;
    bx_status s = l ? BX_OK : BX_ERR_NOMEM;
    for (int k = 0; mods && k < mods->n && s == BX_OK; k++) {
        const bx_module *sub = mods->modules[k];
        const char *prefix = mods->names[k];
        const char *base;
        for (int i = 0; i < sub->nparams && s == BX_OK; i++) /* plain parameters */
            if (sub->params[i].t && !is_pruned_orig(sub, sub->params[i].name, &base))
                s = sd_add(l, prefix, sub->params[i].name, bx_tensor_clone(sub->params[i].t));
        for (int i = 0; i < sub->nparams && s == BX_OK; i++) /* pruned ones, made permanent (moved last) */
            if (sub->params[i].t && is_pruned_orig(sub, sub->params[i].name, &base))
                s = sd_add(l, prefix, base, masked_copy(sub->params[i].t, bx_prune_mask(sub, base)));
        for (int i = 0; i < sub->nbuffers && s == BX_OK; i++)
            if (sub->buffers[i].t && sub->buffers[i].persistent && !is_pruned_mask(sub, sub->buffers[i].name))
                s = sd_add(l, prefix, sub->buffers[i].name, bx_tensor_clone(sub->buffers[i].t));
    }
    bx_named_modules_free(mods);
    if (s != BX_OK) {
        bx_named_tensors_free(l);
        return NULL;
    }
    return l;
}

/* ---- loading a pruned state dict into an unpruned tree ---------------------------------------------- */

static bool has_key(const char *const *keys, int n, const char *k) {
    for (int i = 0; i < n; i++)
        if (keys[i] && strcmp(keys[i], k) == 0) return true;
    return false;
}

bx_status bx_prune_identity_from_keys(bx_module *root, const char *const *keys, int n, int *count) {
    if (count) *count = 0;
    if (!root || (n > 0 && !keys)) return bx__error(BX_ERR_INVALID, "prune identity_from_keys: NULL argument");
    for (int i = 0; i < n; i++) {
        const char *k = keys[i];
        size_t len = k ? strlen(k) : 0;
        if (len <= 5 || len >= 1024 || strcmp(k + len - 5, "_mask") != 0) continue;
        char orig_key[1024], path[1024], name[BX__PRUNE_NAME_MAX + 1];
        snprintf(orig_key, sizeof orig_key, "%.*s_orig", (int)(len - 5), k);
        if (!has_key(keys, n, orig_key)) continue;
        const char *dot = strrchr(k, '.');
        size_t plen = dot ? (size_t)(dot - k) : 0;
        const char *base = dot ? dot + 1 : k;
        size_t blen = len - 5 - (size_t)(base - k);
        if (blen == 0 || blen > BX__PRUNE_NAME_MAX) continue;
        snprintf(path, sizeof path, "%.*s", (int)plen, k);
        snprintf(name, sizeof name, "%.*s", (int)blen, base);
        bx_module *m = bx_module_find(root, path);
        if (!m) {
            bx_clear_error();
            continue;
        }
        if (bx_prune_is_pruned(m, name) || !bx_module_param(m, name)) continue;
        bx_status s = bx_prune_apply_mask(m, name, NULL);
        if (s != BX_OK) return s;
        if (count) (*count)++;
    }
    return BX_OK;
}

/* "a.b.weight_mask" -> module "a.b", param "weight" (see prune.h). */
bool bx_prune_split_mask_key(bx_module *root, const char *key, bx_module **m, char *param, size_t n) {
    size_t len = strlen(key);
    if (len < 6 || strcmp(key + len - 5, "_mask")) return false;
    const char *dot = strrchr(key, '.');
    char path[512];
    size_t pl = dot ? (size_t)(dot - key) : 0;
    if (pl >= sizeof path) return false;
    memcpy(path, key, pl);
    path[pl] = 0;
    const char *pn = dot ? dot + 1 : key;
    size_t nl = strlen(pn) - 5;
    if (nl == 0 || nl >= n) return false;
    memcpy(param, pn, nl);
    param[nl] = 0;
    *m = bx_module_find(root, path);
    return *m != NULL;
}
