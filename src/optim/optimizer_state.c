/* optimizer_state.c - optimizer.state_dict() / load_state_dict() in
 * torch 1.13's layout: {"state": {index: per-param state}, "param_groups":
 * [hyper-parameters in torch's key order, extra keys, "params"]}. Loading
 * validates everything before it changes anything. */
#include "optim/optim_int.h"
#include "io/state_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    const char *name = bx__hpkey_name(k);
    switch (k) {
    case HK_LR:
    case HK_EPS:
    case HK_ALPHA: return bx_state_set_float(d, name, *bx__hp_num((bx__hp *)hp, k));
    case HK_MOMENTUM:
    case HK_DAMPENING:
    case HK_WEIGHT_DECAY: return set_num0(d, name, *bx__hp_num((bx__hp *)hp, k));
    case HK_NESTEROV:
    case HK_MAXIMIZE:
    case HK_AMSGRAD:
    case HK_CENTERED: return bx_state_set_bool(d, name, *bx__hp_flag((bx__hp *)hp, k));
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
        const char *name = bx__hpkey_name(k);
        if (bx__is_const_key(k)) continue;
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
        double *num = bx__hp_num(&lg->hp, k);
        if (num) st = bx_state_need_float(gd, name, num);
        else st = bx_state_need_bool(gd, name, bx__hp_flag(&lg->hp, k));
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
        int k = bx__hpkey_lookup(key);
        if ((k >= 0 && bx__vt_has_key(vt, k)) || strcmp(key, "params") == 0) continue;
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
        bx__free_extras(lg[i].extras, lg[i].nextra);
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
        bx__free_extras(gr->extras, gr->nextra);
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
    return st == BX_ERR_NOT_FOUND ? BX_ERR_FORMAT : st; /* a missing key: malformed state */
}
