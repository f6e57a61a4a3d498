/* optimizer.c - what every optimizer shares: param groups (with overrides,
 * names and extra keys), accessors for schedulers and callbacks, the step
 * driver (lazy state creation, grad checks), zero_grad, and the state dict in
 * torch's optimizer.state_dict() layout. The update math lives in sgd.c,
 * adam.c and rmsprop.c behind bx__optim_vt. */
#include "optim/optim_int.h"
#include "io/state_int.h"
#include "blixt/autograd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const hpkey_names[HK_COUNT] = {
    "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach",
    "differentiable", "betas", "eps", "amsgrad", "capturable", "fused", "alpha", "centered",
};

const char *bx__hpkey_name(bx__hpkey k) { return (k >= 0 && k < HK_COUNT) ? hpkey_names[k] : "?"; }

static int hpkey_lookup(const char *key) {
    for (int k = 0; k < HK_COUNT; k++)
        if (strcmp(hpkey_names[k], key) == 0) return k;
    return -1;
}

static bool vt_has_key(const bx__optim_vt *vt, int k) {
    for (int i = 0; i < vt->nkeys; i++)
        if ((int)vt->keys[i] == k) return true;
    return false;
}

static bool is_const_key(int k) {
    return k == HK_FOREACH || k == HK_DIFFERENTIABLE || k == HK_CAPTURABLE || k == HK_FUSED;
}

bx_status bx__check_nonneg(const char *what, const char *key, double v) {
    if (!(v >= 0.0)) return bx__error(BX_ERR_INVALID, "%s: invalid %s value: %g (must be >= 0)", what, key, v);
    return BX_OK;
}

/* Pointer to the double behind a numeric key, NULL for flags/betas/constants. */
static double *hp_num(bx__hp *hp, int k) {
    switch (k) {
    case HK_LR: return &hp->lr;
    case HK_MOMENTUM: return &hp->momentum;
    case HK_DAMPENING: return &hp->dampening;
    case HK_WEIGHT_DECAY: return &hp->weight_decay;
    case HK_EPS: return &hp->eps;
    case HK_ALPHA: return &hp->alpha;
    default: return NULL;
    }
}

static bool *hp_flag(bx__hp *hp, int k) {
    switch (k) {
    case HK_NESTEROV: return &hp->nesterov;
    case HK_MAXIMIZE: return &hp->maximize;
    case HK_AMSGRAD: return &hp->amsgrad;
    case HK_CENTERED: return &hp->centered;
    default: return NULL;
    }
}

/* ---- lifetime ------------------------------------------------------------------ */

bx_optimizer *bx__optimizer_new(const bx__optim_vt *vt, const bx__hp *defaults) {
    if (vt->check(defaults, vt->type) != BX_OK) return NULL;
    bx_optimizer *o = bx__calloc(sizeof *o);
    if (!o) return NULL;
    o->vt = vt;
    o->defaults = *defaults;
    return o;
}

static void free_extras(bx__extra *e, int n) {
    for (int i = 0; i < n; i++) bx__free(e[i].key);
    bx__free(e);
}

void bx_optimizer_free(bx_optimizer *o) {
    if (!o) return;
    for (int g = 0; g < o->ngroups; g++) {
        bx__group *gr = &o->groups[g];
        for (int i = 0; i < gr->n; i++)
            for (int k = 0; k < BX__NBUF; k++) bx_tensor_free(gr->slots[i].buf[k]);
        bx__free(gr->slots);
        bx__free(gr->name);
        free_extras(gr->extras, gr->nextra);
    }
    bx__free(o->groups);
    bx__free(o);
}

/* ---- groups ---------------------------------------------------------------------- */

static bx_status apply_overrides(const bx_optimizer *o, const bx_param_group_opts *ov, bx__hp *hp,
                                 uint32_t *mask, int gi) {
    const bx__optim_vt *vt = o->vt;
    struct {
        int key;
        double v;
    } nums[] = {
        {HK_LR, ov->lr},   {HK_MOMENTUM, ov->momentum}, {HK_DAMPENING, ov->dampening},
        {HK_WEIGHT_DECAY, ov->weight_decay}, {HK_EPS, ov->eps}, {HK_ALPHA, ov->alpha},
    };
    for (size_t i = 0; i < sizeof nums / sizeof nums[0]; i++) {
        if (isnan(nums[i].v)) continue;
        if (!vt_has_key(vt, nums[i].key))
            return bx__error(BX_ERR_INVALID, "%s param group %d: %s has no '%s'", vt->type, gi, vt->type,
                             hpkey_names[nums[i].key]);
        *hp_num(hp, nums[i].key) = nums[i].v;
        *mask |= 1u << nums[i].key;
    }
    if (!isnan(ov->betas[0]) || !isnan(ov->betas[1])) {
        if (!vt_has_key(vt, HK_BETAS))
            return bx__error(BX_ERR_INVALID, "%s param group %d: %s has no 'betas'", vt->type, gi, vt->type);
        if (!isnan(ov->betas[0])) hp->betas[0] = ov->betas[0];
        if (!isnan(ov->betas[1])) hp->betas[1] = ov->betas[1];
        *mask |= 1u << HK_BETAS;
    }
    struct {
        int key;
        int v;
    } flags[] = {
        {HK_NESTEROV, ov->nesterov}, {HK_MAXIMIZE, ov->maximize},
        {HK_AMSGRAD, ov->amsgrad},   {HK_CENTERED, ov->centered},
    };
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        if (flags[i].v < 0) continue;
        if (!vt_has_key(vt, flags[i].key))
            return bx__error(BX_ERR_INVALID, "%s param group %d: %s has no '%s'", vt->type, gi, vt->type,
                             hpkey_names[flags[i].key]);
        *hp_flag(hp, flags[i].key) = flags[i].v != 0;
        *mask |= 1u << flags[i].key;
    }
    return BX_OK;
}

static bool optimizer_holds(const bx_optimizer *o, const bx_tensor *p, int *gi, int *pi) {
    for (int g = 0; g < o->ngroups; g++)
        for (int i = 0; i < o->groups[g].n; i++)
            if (o->groups[g].slots[i].p == p) {
                *gi = g;
                *pi = i;
                return true;
            }
    return false;
}

bx_status bx_optimizer_add_group(bx_optimizer *o, bx_tensor *const *params, int n,
                                 const bx_param_group_opts *overrides) {
    if (!o) return bx__error(BX_ERR_INVALID, "add_param_group: NULL optimizer");
    const char *type = o->vt->type;
    int gi = o->ngroups;
    if (n < 1 || !params)
        return bx__error(BX_ERR_INVALID, "%s param group %d: needs at least one parameter (got %d)", type, gi, n);
    for (int i = 0; i < n; i++) {
        const bx_tensor *p = params[i];
        char sh[64];
        if (!p) return bx__error(BX_ERR_INVALID, "%s param group %d: parameter %d is NULL", type, gi, i);
        if (p->dtype != BX_F32 || !bx_is_contiguous(p) || (p->flags & (BX_TF_ARENA | BX_TF_POISON)))
            return bx__error(BX_ERR_INVALID,
                             "%s param group %d: parameter %d %s %s is not an owned contiguous f32 tensor",
                             type, gi, i, bx_dtype_name(p->dtype), bx_shape_str(p, sh, sizeof sh));
        int og, op;
        if (optimizer_holds(o, p, &og, &op))
            return bx__error(BX_ERR_INVALID,
                             "%s param group %d: parameter %d %s is already in param group %d "
                             "(a parameter can be in one group only)",
                             type, gi, i, bx_shape_str(p, sh, sizeof sh), og);
        for (int j = 0; j < i; j++)
            if (params[j] == p)
                return bx__error(BX_ERR_INVALID, "%s param group %d: parameter %d is given twice (also as %d)",
                                 type, gi, i, j);
    }
    bx__hp hp = o->defaults;
    uint32_t mask = 0;
    char what[64];
    snprintf(what, sizeof what, "%s param group %d", type, gi);
    if (overrides) {
        bx_status st = apply_overrides(o, overrides, &hp, &mask, gi);
        if (st) return st;
        st = o->vt->check(&hp, what);
        if (st) return st;
    }
    char *name = NULL;
    if (overrides && overrides->name) {
        name = bx__strdup(overrides->name);
        if (!name) return BX_ERR_NOMEM;
    }
    bx__pslot *slots = bx__calloc((size_t)n * sizeof *slots);
    bx__group *groups = slots ? bx__realloc(o->groups, (size_t)(o->ngroups + 1) * sizeof *groups) : NULL;
    if (!slots || !groups) {
        bx__free(slots);
        bx__free(name);
        return BX_ERR_NOMEM;
    }
    o->groups = groups;
    for (int i = 0; i < n; i++) slots[i].p = params[i];
    bx__group *g = &o->groups[o->ngroups++];
    memset(g, 0, sizeof *g);
    g->name = name;
    g->hp = hp;
    g->set_mask = mask;
    g->slots = slots;
    g->n = n;
    return BX_OK;
}

const char *bx_optimizer_type(const bx_optimizer *o) { return o ? o->vt->type : ""; }
int bx_optimizer_num_groups(const bx_optimizer *o) { return o ? o->ngroups : 0; }

int bx_optimizer_num_params(const bx_optimizer *o) {
    int n = 0;
    for (int g = 0; o && g < o->ngroups; g++) n += o->groups[g].n;
    return n;
}

static bx__group *group_at(const bx_optimizer *o, int g) {
    return (o && g >= 0 && g < o->ngroups) ? &o->groups[g] : NULL;
}

static bx_status bad_group(const bx_optimizer *o, int g) {
    return bx__error(BX_ERR_INVALID, "%s: param group %d does not exist (%d groups)", o ? o->vt->type : "optimizer",
                     g, o ? o->ngroups : 0);
}

const char *bx_optimizer_group_name(const bx_optimizer *o, int g) {
    bx__group *gr = group_at(o, g);
    return gr ? gr->name : NULL;
}

int bx_optimizer_group_num_params(const bx_optimizer *o, int g) {
    bx__group *gr = group_at(o, g);
    return gr ? gr->n : 0;
}

bx_tensor *bx_optimizer_group_param(const bx_optimizer *o, int g, int i) {
    bx__group *gr = group_at(o, g);
    return (gr && i >= 0 && i < gr->n) ? gr->slots[i].p : NULL;
}

double bx_optimizer_get_lr(const bx_optimizer *o, int g) {
    bx__group *gr = group_at(o, g);
    return gr ? gr->hp.lr : NAN;
}

bx_status bx_optimizer_set_lr(bx_optimizer *o, int g, double lr) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    gr->hp.lr = lr;
    return BX_OK;
}

bx_status bx_optimizer_get_momentum(const bx_optimizer *o, int g, double *m) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    *m = vt_has_key(o->vt, HK_BETAS) ? gr->hp.betas[0] : gr->hp.momentum;
    return BX_OK;
}

bx_status bx_optimizer_set_momentum(bx_optimizer *o, int g, double m) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (vt_has_key(o->vt, HK_BETAS)) gr->hp.betas[0] = m;
    else gr->hp.momentum = m;
    return BX_OK;
}

bx_status bx_optimizer_get_betas(const bx_optimizer *o, int g, double betas[2]) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (!vt_has_key(o->vt, HK_BETAS)) return bx__error(BX_ERR_NOT_FOUND, "%s has no 'betas'", o->vt->type);
    betas[0] = gr->hp.betas[0];
    betas[1] = gr->hp.betas[1];
    return BX_OK;
}

bx_status bx_optimizer_set_betas(bx_optimizer *o, int g, const double betas[2]) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (!vt_has_key(o->vt, HK_BETAS)) return bx__error(BX_ERR_NOT_FOUND, "%s has no 'betas'", o->vt->type);
    gr->hp.betas[0] = betas[0];
    gr->hp.betas[1] = betas[1];
    return BX_OK;
}

static bx__extra *find_extra(const bx__group *g, const char *key) {
    for (int i = 0; i < g->nextra; i++)
        if (strcmp(g->extras[i].key, key) == 0) return &g->extras[i];
    return NULL;
}

bool bx_optimizer_group_has(const bx_optimizer *o, int g, const char *key) {
    bx__group *gr = group_at(o, g);
    if (!gr || !key) return false;
    int k = hpkey_lookup(key);
    if (k >= 0 && vt_has_key(o->vt, k)) return true;
    if (strcmp(key, "params") == 0) return true;
    if (strcmp(key, "name") == 0) return gr->name != NULL;
    return find_extra(gr, key) != NULL;
}

bx_status bx_optimizer_group_get(const bx_optimizer *o, int g, const char *key, double *out) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (!key) return bx__error(BX_ERR_INVALID, "%s: NULL key", o->vt->type);
    int k = hpkey_lookup(key);
    if (k >= 0 && vt_has_key(o->vt, k)) {
        if (k == HK_BETAS)
            return bx__error(BX_ERR_INVALID, "%s param group %d: 'betas' is a pair: use bx_optimizer_get_betas",
                             o->vt->type, g);
        if (is_const_key(k)) {
            *out = 0.0;
            return BX_OK;
        }
        bx__hp *hp = &gr->hp;
        double *num = hp_num(hp, k);
        *out = num ? *num : (*hp_flag(hp, k) ? 1.0 : 0.0);
        return BX_OK;
    }
    bx__extra *e = find_extra(gr, key);
    if (!e) return bx__error(BX_ERR_NOT_FOUND, "%s param group %d has no '%s'", o->vt->type, g, key);
    *out = e->v;
    return BX_OK;
}

bx_status bx_optimizer_group_set(bx_optimizer *o, int g, const char *key, double v) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (!key) return bx__error(BX_ERR_INVALID, "%s: NULL key", o->vt->type);
    if (strcmp(key, "params") == 0 || strcmp(key, "name") == 0)
        return bx__error(BX_ERR_INVALID, "%s param group %d: '%s' is not a number", o->vt->type, g, key);
    int k = hpkey_lookup(key);
    if (k >= 0 && vt_has_key(o->vt, k)) {
        if (k == HK_BETAS)
            return bx__error(BX_ERR_INVALID, "%s param group %d: 'betas' is a pair: use bx_optimizer_set_betas",
                             o->vt->type, g);
        if (is_const_key(k))
            return bx__error(BX_ERR_UNSUPPORTED, "%s param group %d: '%s' cannot be changed", o->vt->type, g, key);
        double *num = hp_num(&gr->hp, k);
        if (num) {
            *num = v;
            return BX_OK;
        }
        if (v != 0.0 && v != 1.0)
            return bx__error(BX_ERR_INVALID, "%s param group %d: flag '%s' set to %g (expected 0 or 1)", o->vt->type,
                             g, key, v);
        *hp_flag(&gr->hp, k) = v != 0.0;
        return BX_OK;
    }
    bx__extra *e = find_extra(gr, key);
    if (e) {
        e->v = v;
        return BX_OK;
    }
    char *dup = bx__strdup(key);
    bx__extra *ex = dup ? bx__realloc(gr->extras, (size_t)(gr->nextra + 1) * sizeof *ex) : NULL;
    if (!ex) {
        bx__free(dup);
        return BX_ERR_NOMEM;
    }
    gr->extras = ex;
    gr->extras[gr->nextra].key = dup;
    gr->extras[gr->nextra].v = v;
    gr->nextra++;
    return BX_OK;
}

bool bx_optimizer_has_default(const bx_optimizer *o, const char *key) {
    if (!o || !key) return false;
    int k = hpkey_lookup(key);
    return k >= 0 && vt_has_key(o->vt, k);
}

/* ---- step ----------------------------------------------------------------------- */

static bool slot_active(const bx__pslot *s) { return s->p->requires_grad && s->p->grad != NULL; }

static bx_status check_grad(const bx_optimizer *o, int g, int i, const bx__pslot *s) {
    const bx_tensor *p = s->p, *gr = p->grad;
    if (gr->dtype != BX_F32 || !bx_same_shape(gr, p) || !bx_is_contiguous(gr) || (gr->flags & BX_TF_POISON)) {
        char a[64], b[64];
        return bx__error(BX_ERR_SHAPE, "%s step: param group %d parameter %d: grad %s %s does not match parameter %s f32",
                         o->vt->type, g, i, bx_dtype_name(gr->dtype), bx_shape_str(gr, a, sizeof a),
                         bx_shape_str(p, b, sizeof b));
    }
    return BX_OK;
}

/* Creates state the first time a parameter is stepped (and any tensor a
 * changed hyper-parameter needs later). Allocates only when a buffer is
 * missing: never in steady state. */
static bx_status prepare(bx_optimizer *o, const bx__group *g, bx__pslot *s) {
    const bx__optim_vt *vt = o->vt;
    if (!s->has_state) {
        s->has_state = true;
        s->seq = o->seq++;
        s->step = 0;
        for (int k = 0; k < BX__NBUF; k++) s->has[k] = false;
    }
    for (int k = 0; k < vt->nstate; k++) {
        if (!vt->needs(&g->hp, k)) continue;
        if (!s->buf[k]) {
            s->buf[k] = bx_tensor_new(BX_F32, s->p->ndim, s->p->shape);
            if (!s->buf[k]) return BX_ERR_NOMEM;
        }
        if (vt->zero_init && !s->has[k]) {
            memset(s->buf[k]->data, 0, (size_t)bx_numel(s->p) * sizeof(float));
            s->has[k] = true;
        }
    }
    return BX_OK;
}

bx_status bx_optimizer_step(bx_optimizer *o) {
    if (!o) return bx__error(BX_ERR_INVALID, "optimizer step: NULL optimizer");
    for (int g = 0; g < o->ngroups; g++)
        for (int i = 0; i < o->groups[g].n; i++) {
            bx__pslot *s = &o->groups[g].slots[i];
            if (!slot_active(s)) continue;
            bx_status st = check_grad(o, g, i, s);
            if (st) return st;
        }
    for (int g = 0; g < o->ngroups; g++)
        for (int i = 0; i < o->groups[g].n; i++) {
            bx__pslot *s = &o->groups[g].slots[i];
            if (!slot_active(s)) continue;
            bx_status st = prepare(o, &o->groups[g], s);
            if (st) return st;
        }
    for (int g = 0; g < o->ngroups; g++) {
        const bx__hp hp = o->groups[g].hp;
        for (int i = 0; i < o->groups[g].n; i++) {
            bx__pslot *s = &o->groups[g].slots[i];
            if (slot_active(s)) o->vt->update(&hp, s);
        }
    }
    o->steps++;
    return BX_OK;
}

void bx_optimizer_zero_grad(bx_optimizer *o) {
    for (int g = 0; o && g < o->ngroups; g++)
        for (int i = 0; i < o->groups[g].n; i++) bx_param_zero_grad(o->groups[g].slots[i].p);
}

int64_t bx_optimizer_step_count(const bx_optimizer *o) { return o ? o->steps : 0; }

/* ---- state dict: save ---------------------------------------------------------- */

#define TRY(x)                       \
    do {                             \
        if ((st = (x)) != BX_OK) goto fail; \
    } while (0)

/* torch writes a zero default of momentum/dampening/weight_decay as the int 0. */
static bx_status set_num0(bx_state *d, const char *key, double v) {
    return v == 0.0 ? bx_state_set_int(d, key, 0) : bx_state_set_float(d, key, v);
}

static bx_status emit_key(bx_state *d, const bx__hp *hp, int k) {
    const char *name = hpkey_names[k];
    switch (k) {
    case HK_LR:
    case HK_EPS:
    case HK_ALPHA: return bx_state_set_float(d, name, *hp_num((bx__hp *)hp, k));
    case HK_MOMENTUM:
    case HK_DAMPENING:
    case HK_WEIGHT_DECAY: return set_num0(d, name, *hp_num((bx__hp *)hp, k));
    case HK_NESTEROV:
    case HK_MAXIMIZE:
    case HK_AMSGRAD:
    case HK_CENTERED: return bx_state_set_bool(d, name, *hp_flag((bx__hp *)hp, k));
    case HK_FOREACH: return bx_state_set(d, name, bx_state_null());
    case HK_DIFFERENTIABLE:
    case HK_CAPTURABLE:
    case HK_FUSED: return bx_state_set_bool(d, name, false);
    case HK_BETAS: {
        bx_state *l = bx_state_list();
        if (!l) return BX_ERR_NOMEM;
        bx_status st = bx_state_append(l, bx_state_float(hp->betas[0]));
        if (st == BX_OK) st = bx_state_append(l, bx_state_float(hp->betas[1]));
        if (st != BX_OK) {
            bx_state_free(l);
            return st;
        }
        return bx_state_set(d, name, l);
    }
    }
    return BX_OK;
}

typedef struct seq_ref {
    int64_t seq;
    int index;
    const bx__pslot *s;
} seq_ref;

static int cmp_seq(const void *a, const void *b) {
    const seq_ref *x = a, *y = b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

bx_state *bx_optimizer_state_dict(const bx_optimizer *o) {
    if (!o) {
        bx__error(BX_ERR_INVALID, "optimizer state_dict: NULL optimizer");
        return NULL;
    }
    const bx__optim_vt *vt = o->vt;
    bx_status st = BX_OK;
    int total = bx_optimizer_num_params(o);
    seq_ref *refs = bx__malloc((size_t)(total ? total : 1) * sizeof *refs);
    bx_state *root = bx_state_dict(), *state = bx_state_dict(), *groups = bx_state_list();
    if (!refs || !root || !state || !groups) {
        bx_state_free(state);
        bx_state_free(groups);
        st = BX_ERR_NOMEM;
        goto fail;
    }
    if ((st = bx_state_set(root, "state", state)) != BX_OK) {
        bx_state_free(groups);
        goto fail;
    }
    TRY(bx_state_set(root, "param_groups", groups));
    int nref = 0, idx = 0;
    for (int g = 0; g < o->ngroups; g++)
        for (int i = 0; i < o->groups[g].n; i++, idx++) {
            const bx__pslot *s = &o->groups[g].slots[i];
            if (s->has_state) refs[nref++] = (seq_ref){s->seq, idx, s};
        }
    qsort(refs, (size_t)nref, sizeof *refs, cmp_seq);
    for (int r = 0; r < nref; r++) {
        const bx__pslot *s = refs[r].s;
        bx_state *e = bx_state_dict();
        char key[24];
        snprintf(key, sizeof key, "%d", refs[r].index);
        TRY(bx_state_set(state, key, e));
        if (vt->step_kind == BX__STEP_FLOAT) TRY(bx_state_set_float(e, "step", s->step));
        if (vt->step_kind == BX__STEP_INT) TRY(bx_state_set_int(e, "step", (int64_t)s->step));
        for (int k = 0; k < vt->nstate; k++) {
            if (s->has[k]) TRY(bx_state_set_tensor(e, vt->state_keys[k], s->buf[k]));
            else if (vt->null_state) TRY(bx_state_set(e, vt->state_keys[k], bx_state_null()));
        }
    }
    idx = 0;
    for (int g = 0; g < o->ngroups; g++) {
        const bx__group *gr = &o->groups[g];
        bx_state *d = bx_state_dict();
        TRY(bx_state_append(groups, d));
        /* Keys the group set come first (torch's dict keeps the user's keys
         * ahead of the defaults it fills in), then the name, the defaults,
         * the extra keys in the order they were set, and the params. */
        for (int i = 0; i < vt->nkeys; i++)
            if (gr->set_mask & (1u << vt->keys[i])) TRY(emit_key(d, &gr->hp, vt->keys[i]));
        if (gr->name) TRY(bx_state_set_string(d, "name", gr->name));
        for (int i = 0; i < vt->nkeys; i++)
            if (!(gr->set_mask & (1u << vt->keys[i]))) TRY(emit_key(d, &gr->hp, vt->keys[i]));
        for (int i = 0; i < gr->nextra; i++) TRY(bx_state_set_float(d, gr->extras[i].key, gr->extras[i].v));
        bx_state *pl = bx_state_list();
        TRY(bx_state_set(d, "params", pl));
        for (int i = 0; i < gr->n; i++) TRY(bx_state_append(pl, bx_state_int(idx++)));
    }
    bx__free(refs);
    return root;
fail:
    bx__free(refs);
    bx_state_free(root);
    if (st == BX_ERR_NOMEM) bx__error(BX_ERR_NOMEM, "%s state_dict: out of memory", vt->type);
    return NULL;
}

/* ---- state dict: load ---------------------------------------------------------- */

/* One parsed group of a state dict being loaded. */
typedef struct load_group {
    bx__hp hp;
    char *name;
    bx__extra *extras;
    int nextra;
} load_group;

static bx_status parse_group(const bx_optimizer *o, const bx_state *gd, load_group *lg) {
    const bx__optim_vt *vt = o->vt;
    bx_status st = BX_OK;
    lg->hp = o->defaults;
    if (bx_state_typeof(gd) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "is %s, expected a dict", bx__state_type_desc(bx_state_typeof(gd)));
    for (int i = 0; i < vt->nkeys; i++) {
        int k = vt->keys[i];
        const char *name = hpkey_names[k];
        if (is_const_key(k)) continue;
        if (k == HK_MAXIMIZE && !bx_state_get(gd, name)) continue; /* older torch */
        if (k == HK_BETAS) {
            const bx_state *b = bx_state_get(gd, "betas");
            if (!b) return bx__error(BX_ERR_FORMAT, "key 'betas' missing");
            if (bx_state_typeof(b) != BX_STATE_LIST || bx_state_len(b) != 2)
                return bx__error(BX_ERR_FORMAT, "'betas' must be a list of 2 numbers");
            for (int j = 0; j < 2; j++) {
                const bx_state *v = bx_state_at(b, (size_t)j);
                if (bx_state_typeof(v) != BX_STATE_FLOAT && bx_state_typeof(v) != BX_STATE_INT)
                    return bx__error(BX_ERR_FORMAT, "'betas' must be a list of 2 numbers");
                lg->hp.betas[j] = bx_state_get_float(v);
            }
            continue;
        }
        double *num = hp_num(&lg->hp, k);
        if (num) st = bx_state_need_float(gd, name, num);
        else st = bx_state_need_bool(gd, name, hp_flag(&lg->hp, k));
        if (st) return st;
    }
    const bx_state *params = bx_state_get(gd, "params");
    if (!params) return bx__error(BX_ERR_FORMAT, "key 'params' missing");
    if (bx_state_typeof(params) != BX_STATE_LIST)
        return bx__error(BX_ERR_FORMAT, "'params' is %s, expected a list",
                         bx__state_type_desc(bx_state_typeof(params)));
    /* name and extra numeric keys; other unknown keys are ignored */
    for (size_t i = 0; i < bx_state_len(gd); i++) {
        const char *key = bx_state_key_at(gd, i);
        const bx_state *v = bx_state_value_at(gd, i);
        int k = hpkey_lookup(key);
        if ((k >= 0 && vt_has_key(vt, k)) || strcmp(key, "params") == 0) continue;
        if (strcmp(key, "name") == 0) {
            if (bx_state_typeof(v) == BX_STATE_STRING) {
                bx__free(lg->name);
                lg->name = bx__strdup(bx_state_get_string(v));
                if (!lg->name) return BX_ERR_NOMEM;
            }
            continue;
        }
        if (bx_state_typeof(v) != BX_STATE_FLOAT && bx_state_typeof(v) != BX_STATE_INT) continue;
        bx__extra *ex = bx__realloc(lg->extras, (size_t)(lg->nextra + 1) * sizeof *ex);
        if (!ex) return BX_ERR_NOMEM;
        lg->extras = ex;
        ex[lg->nextra].key = bx__strdup(key);
        if (!ex[lg->nextra].key) return BX_ERR_NOMEM;
        ex[lg->nextra].v = bx_state_get_float(v);
        lg->nextra++;
    }
    char what[80];
    snprintf(what, sizeof what, "%s", vt->type);
    return vt->check(&lg->hp, what);
}

/* A number, or a one-element tensor (torch keeps Adam's step as a tensor). */
static bx_status need_count(const bx_state *e, const char *key, double *out) {
    const bx_state *v = bx_state_get(e, key);
    if (v && bx_state_typeof(v) == BX_STATE_TENSOR && bx_numel(bx_state_get_tensor(v)) == 1) {
        *out = bx_get(bx_state_get_tensor(v), 0);
        return BX_OK;
    }
    bx_status st = bx_state_need_float(e, key, out);
    if (st) return st;
    if (!(*out >= 0) || *out != floor(*out) || *out > 9.0e15)
        return bx__error(BX_ERR_FORMAT, "'%s' is %g, expected a step count", key, *out);
    return BX_OK;
}

/* Validates one per-parameter state entry against its parameter. */
static bx_status check_entry(const bx_optimizer *o, const bx__hp *hp, const bx__pslot *s, const bx_state *e) {
    const bx__optim_vt *vt = o->vt;
    if (bx_state_typeof(e) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "is %s, expected a dict", bx__state_type_desc(bx_state_typeof(e)));
    if (vt->step_kind != BX__STEP_NONE) {
        double step;
        bx_status st = need_count(e, "step", &step);
        if (st) return st;
    }
    for (int k = 0; k < vt->nstate; k++) {
        const char *key = vt->state_keys[k];
        const bx_state *v = bx_state_get(e, key);
        if (!v || bx_state_typeof(v) == BX_STATE_NULL) {
            if (vt->zero_init && vt->needs(hp, k))
                return bx__error(BX_ERR_FORMAT, "key '%s' missing (needed by the group's settings)", key);
            continue;
        }
        if (bx_state_typeof(v) != BX_STATE_TENSOR)
            return bx__error(BX_ERR_FORMAT, "'%s' is %s, expected a tensor", key,
                             bx__state_type_desc(bx_state_typeof(v)));
        const bx_tensor *t = bx_state_get_tensor(v);
        if (!bx_same_shape(t, s->p) || (t->dtype != BX_F32 && t->dtype != BX_F64)) {
            char a[64], b[64];
            return bx__error(BX_ERR_INVALID, "'%s' is %s %s, the parameter is f32 %s", key, bx_dtype_name(t->dtype),
                             bx_shape_str(t, a, sizeof a), bx_shape_str(s->p, b, sizeof b));
        }
    }
    return BX_OK;
}

static void free_load_groups(load_group *lg, int n) {
    for (int i = 0; lg && i < n; i++) {
        bx__free(lg[i].name);
        free_extras(lg[i].extras, lg[i].nextra);
    }
    bx__free(lg);
}

bx_status bx_optimizer_load_state_dict(bx_optimizer *o, const bx_state *sd) {
    if (!o) return bx__error(BX_ERR_INVALID, "optimizer load_state_dict: NULL optimizer");
    const bx__optim_vt *vt = o->vt;
    const char *T = vt->type;
    if (bx_state_typeof(sd) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "%s load_state_dict: the state is %s, expected a dict", T,
                         sd ? bx__state_type_desc(bx_state_typeof(sd)) : "missing");
    const bx_state *groups = bx_state_get(sd, "param_groups");
    const bx_state *state = bx_state_get(sd, "state");
    if (bx_state_typeof(groups) != BX_STATE_LIST || !groups)
        return bx__error(BX_ERR_FORMAT, "%s load_state_dict: 'param_groups' %s", T,
                         groups ? "is not a list" : "missing");
    if (!state || bx_state_typeof(state) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "%s load_state_dict: 'state' %s", T, state ? "is not a dict" : "missing");
    if ((int)bx_state_len(groups) != o->ngroups)
        return bx__error(BX_ERR_INVALID,
                         "%s load_state_dict: the loaded state has %zu param groups, the optimizer has %d", T,
                         bx_state_len(groups), o->ngroups);
    int total = bx_optimizer_num_params(o);
    int64_t *ids = bx__malloc((size_t)(total ? total : 1) * sizeof *ids);
    bx__pslot **slot_of = bx__malloc((size_t)(total ? total : 1) * sizeof *slot_of);
    int *group_of = bx__malloc((size_t)(total ? total : 1) * sizeof *group_of);
    load_group *lg = bx__calloc((size_t)(o->ngroups ? o->ngroups : 1) * sizeof *lg);
    bx_status st = BX_OK;
    if (!ids || !slot_of || !group_of || !lg) {
        st = BX_ERR_NOMEM;
        goto done;
    }
    /* pass 1: validate everything */
    int idx = 0;
    for (int g = 0; g < o->ngroups; g++) {
        const bx_state *gd = bx_state_at(groups, (size_t)g);
        st = parse_group(o, gd, &lg[g]);
        if (st) {
            bx__error_prefix("%s load_state_dict: param group %d", T, g);
            goto done;
        }
        const bx_state *params = bx_state_get(gd, "params");
        if ((int)bx_state_len(params) != o->groups[g].n) {
            st = bx__error(BX_ERR_INVALID,
                           "%s load_state_dict: param group %d has %zu parameters in the loaded state, %d in the "
                           "optimizer",
                           T, g, bx_state_len(params), o->groups[g].n);
            goto done;
        }
        for (int i = 0; i < o->groups[g].n; i++, idx++) {
            const bx_state *v = bx_state_at(params, (size_t)i);
            if (bx_state_typeof(v) != BX_STATE_INT) {
                st = bx__error(BX_ERR_FORMAT, "%s load_state_dict: param group %d: params[%d] is %s, expected an integer",
                               T, g, i, bx__state_type_desc(bx_state_typeof(v)));
                goto done;
            }
            ids[idx] = bx_state_get_int(v);
            slot_of[idx] = &o->groups[g].slots[i];
            group_of[idx] = g;
        }
    }
    for (size_t e = 0; e < bx_state_len(state); e++) {
        const char *key = bx_state_key_at(state, e);
        char *end = NULL;
        long long id = strtoll(key, &end, 10);
        int at = -1;
        if (end && end != key && *end == '\0')
            for (int i = 0; i < total && at < 0; i++)
                if (ids[i] == id) at = i;
        if (at < 0) {
            st = bx__error(BX_ERR_INVALID, "%s load_state_dict: state key '%s' is not a parameter of any param group",
                           T, key);
            goto done;
        }
        st = check_entry(o, &lg[group_of[at]].hp, slot_of[at], bx_state_value_at(state, e));
        if (st) {
            bx__error_prefix("%s load_state_dict: state '%s'", T, key);
            goto done;
        }
    }
    /* pass 2a: allocate every buffer the loaded state needs */
    for (size_t e = 0; e < bx_state_len(state); e++) {
        long long id = strtoll(bx_state_key_at(state, e), NULL, 10);
        int at = 0;
        while (ids[at] != id) at++;
        bx__pslot *s = slot_of[at];
        const bx_state *ent = bx_state_value_at(state, e);
        for (int k = 0; k < vt->nstate; k++)
            if (bx_state_typeof(bx_state_get(ent, vt->state_keys[k])) == BX_STATE_TENSOR && !s->buf[k]) {
                s->buf[k] = bx_tensor_new(BX_F32, s->p->ndim, s->p->shape);
                if (!s->buf[k]) {
                    st = BX_ERR_NOMEM;
                    goto done;
                }
            }
    }
    /* pass 2b: apply (nothing can fail from here on) */
    for (int g = 0; g < o->ngroups; g++) {
        bx__group *gr = &o->groups[g];
        gr->hp = lg[g].hp;
        bx__free(gr->name);
        gr->name = lg[g].name;
        lg[g].name = NULL;
        free_extras(gr->extras, gr->nextra);
        gr->extras = lg[g].extras;
        gr->nextra = lg[g].nextra;
        lg[g].extras = NULL;
        lg[g].nextra = 0;
        for (int i = 0; i < gr->n; i++) {
            bx__pslot *s = &gr->slots[i];
            s->has_state = false;
            s->step = 0;
            for (int k = 0; k < BX__NBUF; k++) s->has[k] = false;
        }
    }
    for (size_t e = 0; e < bx_state_len(state); e++) {
        long long id = strtoll(bx_state_key_at(state, e), NULL, 10);
        int at = 0;
        while (ids[at] != id) at++;
        bx__pslot *s = slot_of[at];
        const bx_state *ent = bx_state_value_at(state, e);
        s->has_state = true;
        s->seq = o->seq++;
        if (vt->step_kind != BX__STEP_NONE) need_count(ent, "step", &s->step);
        for (int k = 0; k < vt->nstate; k++) {
            const bx_state *v = bx_state_get(ent, vt->state_keys[k]);
            if (bx_state_typeof(v) != BX_STATE_TENSOR) continue;
            bx_copy(s->buf[k], bx_state_get_tensor(v));
            s->has[k] = true;
        }
    }
done:
    free_load_groups(lg, o->ngroups);
    bx__free(ids);
    bx__free(slot_of);
    bx__free(group_of);
    return st;
}
