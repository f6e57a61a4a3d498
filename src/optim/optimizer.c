/* optimizer.c - what every optimizer shares: param groups (with overrides,
 * names and extra keys), accessors for schedulers and callbacks, the step
 * driver (lazy state creation, grad checks, the parallel loop helper) and
 * zero_grad. The state dict lives in optimizer_state.c, the update math in
 * sgd.c, adam.c and rmsprop.c behind bx__optim_vt. */
#include "optim/optim_int.h"
#include "blixt/autograd.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const hpkey_names[HK_COUNT] = {
    "lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", "foreach",
    "differentiable", "betas", "eps", "amsgrad", "capturable", "fused", "alpha", "centered",
};

const char *bx__hpkey_name(bx__hpkey k) { return (k >= 0 && k < HK_COUNT) ? hpkey_names[k] : "?"; }

int bx__hpkey_lookup(const char *key) {
    for (int k = 0; k < HK_COUNT; k++)
        if (strcmp(hpkey_names[k], key) == 0) return k;
    return -1;
}

bool bx__vt_has_key(const bx__optim_vt *vt, int k) {
    for (int i = 0; i < vt->nkeys; i++)
        if ((int)vt->keys[i] == k) return true;
    return false;
}

bool bx__is_const_key(int k) {
    return k == HK_FOREACH || k == HK_DIFFERENTIABLE || k == HK_CAPTURABLE || k == HK_FUSED;
}

bx_status bx__check_nonneg(const char *what, const char *key, double v) {
    if (!(v >= 0.0)) return bx__error(BX_ERR_INVALID, "%s: invalid %s value: %g (must be >= 0)", what, key, v);
    return BX_OK;
}

/* Pointer to the double behind a numeric key, NULL for flags/betas/constants. */
double *bx__hp_num(bx__hp *hp, int k) {
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

bool *bx__hp_flag(bx__hp *hp, int k) {
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

void bx__free_extras(bx__extra *e, int n) {
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
        bx__free_extras(gr->extras, gr->nextra);
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
        if (!bx__vt_has_key(vt, nums[i].key))
            return bx__error(BX_ERR_INVALID, "%s param group %d: %s has no '%s'", vt->type, gi, vt->type,
                             hpkey_names[nums[i].key]);
        *bx__hp_num(hp, nums[i].key) = nums[i].v;
        *mask |= 1u << nums[i].key;
    }
    if (!isnan(ov->betas[0]) || !isnan(ov->betas[1])) {
        if (!bx__vt_has_key(vt, HK_BETAS))
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
        if (!bx__vt_has_key(vt, flags[i].key))
            return bx__error(BX_ERR_INVALID, "%s param group %d: %s has no '%s'", vt->type, gi, vt->type,
                             hpkey_names[flags[i].key]);
        *bx__hp_flag(hp, flags[i].key) = flags[i].v != 0;
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
    *m = bx__vt_has_key(o->vt, HK_BETAS) ? gr->hp.betas[0] : gr->hp.momentum;
    return BX_OK;
}

bx_status bx_optimizer_set_momentum(bx_optimizer *o, int g, double m) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (bx__vt_has_key(o->vt, HK_BETAS)) gr->hp.betas[0] = m;
    else gr->hp.momentum = m;
    return BX_OK;
}

bx_status bx_optimizer_get_betas(const bx_optimizer *o, int g, double betas[2]) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (!bx__vt_has_key(o->vt, HK_BETAS)) return bx__error(BX_ERR_NOT_FOUND, "%s has no 'betas'", o->vt->type);
    betas[0] = gr->hp.betas[0];
    betas[1] = gr->hp.betas[1];
    return BX_OK;
}

bx_status bx_optimizer_set_betas(bx_optimizer *o, int g, const double betas[2]) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (!bx__vt_has_key(o->vt, HK_BETAS)) return bx__error(BX_ERR_NOT_FOUND, "%s has no 'betas'", o->vt->type);
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
    int k = bx__hpkey_lookup(key);
    if (k >= 0 && bx__vt_has_key(o->vt, k)) return true;
    if (strcmp(key, "params") == 0) return true;
    if (strcmp(key, "name") == 0) return gr->name != NULL;
    return find_extra(gr, key) != NULL;
}

bx_status bx_optimizer_group_get(const bx_optimizer *o, int g, const char *key, double *out) {
    bx__group *gr = group_at(o, g);
    if (!gr) return bad_group(o, g);
    if (!key) return bx__error(BX_ERR_INVALID, "%s: NULL key", o->vt->type);
    int k = bx__hpkey_lookup(key);
    if (k >= 0 && bx__vt_has_key(o->vt, k)) {
        if (k == HK_BETAS)
            return bx__error(BX_ERR_INVALID, "%s param group %d: 'betas' is a pair: use bx_optimizer_get_betas",
                             o->vt->type, g);
        if (bx__is_const_key(k)) {
            *out = 0.0;
            return BX_OK;
        }
        bx__hp *hp = &gr->hp;
        double *num = bx__hp_num(hp, k);
        *out = num ? *num : (*bx__hp_flag(hp, k) ? 1.0 : 0.0);
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
    int k = bx__hpkey_lookup(key);
    if (k >= 0 && bx__vt_has_key(o->vt, k)) {
        if (k == HK_BETAS)
            return bx__error(BX_ERR_INVALID, "%s param group %d: 'betas' is a pair: use bx_optimizer_set_betas",
                             o->vt->type, g);
        if (bx__is_const_key(k))
            return bx__error(BX_ERR_UNSUPPORTED, "%s param group %d: '%s' cannot be changed", o->vt->type, g, key);
        double *num = bx__hp_num(&gr->hp, k);
        if (num) {
            *num = v;
            return BX_OK;
        }
        if (v != 0.0 && v != 1.0)
            return bx__error(BX_ERR_INVALID, "%s param group %d: flag '%s' set to %g (expected 0 or 1)", o->vt->type,
                             g, key, v);
        *bx__hp_flag(&gr->hp, k) = v != 0.0;
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
    int k = bx__hpkey_lookup(key);
    return k >= 0 && bx__vt_has_key(o->vt, k);
}

/* ---- step ----------------------------------------------------------------------- */

void bx__optim_parallel(bx__range_fn fn, const void *args, int64_t n) {
    if (n <= BX__OPTIM_PAR_MIN || omp_get_max_threads() == 1) {
        fn(args, 0, n);
        return;
    }
#pragma omp parallel
    {
        int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        int64_t chunk = ((n + nt - 1) / nt + 63) / 64 * 64;
        int64_t lo = t * chunk, hi = lo + chunk < n ? lo + chunk : n;
        if (lo < hi) fn(args, lo, hi);
    }
}

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
