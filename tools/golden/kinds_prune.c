/* kinds_prune.c - golden runners for pruning (group prune, README rules
 * P1-P5). Every case runs through the module API: the weights go into
 * parameter `weight` of small modules, are pruned with bx_prune_apply /
 * bx_prune_global (so the weight_orig / weight_mask reparametrisation is
 * exercised), and the masks (U8, exact), the effective weights
 * (orig * mask, exact) and the counts are compared.
 *
 * Kinds and args:
 *  prune_l1_unstructured    amount (int = count, float = fraction)
 *  prune_random_unstructured amount; only out.num_zeros / out.mask_sum (P5)
 *  prune_ln_structured      amount, n (number or "fro"/"inf"/"-inf"), dim;
 *                           also out.norms (1e-5) and out.num_pruned_slices
 *  prune_global_unstructured parameters ["l1.weight", ...], amount, method
 *                           "global_unstructured(L1Unstructured)"
 *  prune_iterative          either steps [{method, amount, n?, dim?}, ...] on
 *                           in.weight (out.maskK, out.weightK), or a global
 *                           method with `iterations` (out.<m>.mask.iterK,
 *                           out.<m>.weight.iterK). Before round K >= 2 the
 *                           deltas in.updateK.<p>_orig are added to the
 *                           trained tensors (an epoch of training). */
#include "golden.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_TARGETS 16

static const bx_module_type holder_type = {"Holder", NULL, NULL, NULL, NULL, NULL};

/* A module holding `weight` = a copy of the stored tensor `src`. */
static bx_module *holder(gcase *c, const char *src) {
    const bx_tensor *t = gc_need(c, src);
    if (!t) return NULL;
    bx_module *m = bx_module_new(&holder_type, NULL);
    bx_tensor *w = bx_tensor_new(BX_F32, t->ndim, t->shape);
    if (!m || !w) {
        bx_module_free(m);
        bx_tensor_free(w);
        gc_fail(c, "holder: %s", bx_errmsg());
        return NULL;
    }
    bx_copy(w, t);
    if (bx_module_add_param(m, "weight", w) != BX_OK) {
        gc_fail(c, "holder: %s", bx_errmsg());
        bx_module_free(m);
        return NULL;
    }
    return m;
}

/* amount from a json value: an integer (or amount_type "int") is a count. */
static bool parse_amount(gcase *c, json_t *o, bx_prune_amount *a) {
    json_t *v = json_object_get(o, "amount");
    json_t *ty = json_object_get(o, "amount_type");
    bool as_int = ty && json_is_string(ty) && strcmp(json_string_value(ty), "int") == 0;
    if (v && json_is_integer(v)) {
        *a = BX_PRUNE_COUNT(json_integer_value(v));
        return true;
    }
    if (v && json_is_real(v)) {
        double d = json_real_value(v);
        *a = as_int ? BX_PRUNE_COUNT((int64_t)d) : BX_PRUNE_FRACTION(d);
        return true;
    }
    gc_fail(c, "args: amount missing or not a number");
    return false;
}

/* Fills o from a json object: method (unless given), amount, n, dim. */
static bool parse_opts(gcase *c, json_t *obj, bx_prune_method method, bx_prune_opts *o, bx_rng *rng) {
    bx_prune_opts d = BX_PRUNE_OPTS_INIT;
    *o = d;
    o->method = method;
    o->rng = rng;
    if (!parse_amount(c, obj, &o->amount)) return false;
    json_t *n = json_object_get(obj, "n");
    if (n && json_is_number(n))
        o->norm = json_number_value(n);
    else if (n && json_is_string(n) && bx_prune_norm_parse(json_string_value(n), &o->norm) != BX_OK) {
        gc_fail(c, "args.n: %s", bx_errmsg());
        return false;
    }
    json_t *dim = json_object_get(obj, "dim");
    if (dim && json_is_integer(dim)) o->dim = (int)json_integer_value(dim);
    return true;
}

static bool method_of(gcase *c, const char *s, bx_prune_method *m) {
    if (!s || bx_prune_method_parse(s, m) != BX_OK) {
        gc_fail(c, "args.method '%s': %s", s ? s : "(none)", bx_errmsg());
        return false;
    }
    return true;
}

static bool is_random(bx_prune_method m) {
    return m == BX_PRUNE_RANDOM_UNSTRUCTURED || m == BX_PRUNE_RANDOM_STRUCTURED;
}

/* The mask of `name` as U8 (all ones when not pruned), owned by the case. */
static bx_tensor *mask_u8(gcase *c, bx_module *m, const char *name) {
    bx_tensor *p = bx_prune_param(m, name);
    if (!p) return NULL;
    bx_tensor *u = bx_tensor_new(BX_U8, p->ndim, p->shape);
    if (!u) return NULL;
    const bx_tensor *mask = bx_prune_mask(m, name);
    if (mask)
        bx_copy(u, mask);
    else
        bx_fill(u, 1);
    gc_own(c, u);
    return u;
}

static bx_tensor *effective(gcase *c, bx_module *m, const char *name) {
    bx_tensor *t = bx_prune_effective(m, name);
    gc_own(c, t);
    return t;
}

static int64_t zeros_of(const bx_tensor *t) {
    int64_t z = 0;
    for (int64_t i = 0; t && i < bx_numel(t); i++) z += bx_get(t, i) == 0;
    return z;
}

/* Number of slices along dim that are all zero. */
static int64_t zero_slices(const bx_tensor *mask, int dim) {
    int d = dim < 0 ? dim + mask->ndim : dim;
    int64_t nch = mask->shape[d], inner = 1, n = bx_numel(mask), z = 0;
    for (int j = d + 1; j < mask->ndim; j++) inner *= mask->shape[j];
    for (int64_t ch = 0; ch < nch; ch++) {
        bool all = true;
        for (int64_t i = 0; i < n && all; i++)
            if ((i / inner) % nch == ch && bx_get(mask, i) != 0) all = false;
        z += all;
    }
    return z;
}

/* Marks a reference that a random method cannot reproduce as seen (for
 * --strict): it is compared with itself. */
static void touch(gcase *c, const char *ref) {
    if (ref && gc_get(c, ref)) gc_compare_tol(c, ref, gc_get(c, ref), 0, 0);
}

/* Compares a mask: exactly, or only its number of zeros for a random method. */
static void compare_mask(gcase *c, const char *ref, const bx_tensor *got, bool random) {
    if (!random) {
        gc_compare(c, ref, got);
        return;
    }
    const bx_tensor *r = gc_get(c, ref);
    char what[160];
    snprintf(what, sizeof what, "zeros of %s", ref);
    gc_compare_value(c, what, (double)zeros_of(got), (double)zeros_of(r));
    touch(c, ref);
}

/* Compares a count against the stored I64 scalar `ref` (exact). */
static void compare_count(gcase *c, const char *ref, int64_t got) {
    const bx_tensor *r = gc_get(c, ref);
    if (!r) return;
    bx_tensor *t = bx_tensor_new(BX_I64, r->ndim, r->shape);
    if (!t || bx_numel(t) != 1) {
        bx_tensor_free(t);
        gc_fail(c, "%s: expected one element", ref);
        return;
    }
    bx_set(t, 0, (double)got);
    gc_own(c, t);
    gc_compare(c, ref, t);
}

static void compare_counts(gcase *c, const bx_tensor *mask, const bx_prune_opts *o) {
    compare_count(c, "out.num_pruned", zeros_of(mask));
    compare_count(c, "out.num_zeros", zeros_of(mask));
    compare_count(c, "out.mask_sum", bx_numel(mask) - zeros_of(mask));
    if (gc_get(c, "out.num_pruned_slices")) compare_count(c, "out.num_pruned_slices", zero_slices(mask, o->dim));
}

/* One local prune of in.weight with method m (prune_l1_unstructured,
 * prune_random_unstructured, prune_ln_structured). */
static void run_local(gcase *c, bx_prune_method method) {
    bx_prune_opts o;
    bx_rng rng;
    bx_rng_init(&rng, 1234);
    if (!parse_opts(c, gc_args(c), method, &o, &rng)) return;
    bx_module *m = holder(c, "in.weight");
    if (!m) return;
    if (bx_prune_apply(m, "weight", &o) != BX_OK) {
        gc_fail(c, "bx_prune_apply: %s", bx_errmsg());
        bx_module_free(m);
        return;
    }
    if (!bx_prune_is_pruned(m, "weight") || !bx_module_param(m, "weight_orig") || !bx_module_buffer(m, "weight_mask"))
        gc_fail(c, "weight is not reparametrised as weight_orig / weight_mask");
    bx_tensor *mask = mask_u8(c, m, "weight");
    if (gc_get(c, "out.mask")) compare_mask(c, "out.mask", mask, is_random(method));
    if (gc_get(c, "out.weight") && !is_random(method)) gc_compare(c, "out.weight", effective(c, m, "weight"));
    if (is_random(method)) touch(c, "out.weight");
    if (gc_get(c, "out.norms")) {
        const bx_tensor *w = gc_get(c, "in.weight");
        int d = o.dim < 0 ? o.dim + w->ndim : o.dim;
        bx_tensor *norms = d >= 0 && d < w->ndim ? bx_tensor_new(BX_F32, 1, &w->shape[d]) : NULL;
        gc_own(c, norms);
        if (!norms || bx_prune_channel_norms(w, o.norm, o.dim, norms) != BX_OK)
            gc_fail(c, "channel norms: %s", bx_errmsg());
        else
            gc_compare_tol(c, "out.norms", norms, 1e-5, 1e-6);
    }
    compare_counts(c, mask, &o);
    bx_module_free(m);
}

static void kind_l1_unstructured(gcase *c) { run_local(c, BX_PRUNE_L1_UNSTRUCTURED); }
static void kind_random_unstructured(gcase *c) { run_local(c, BX_PRUNE_RANDOM_UNSTRUCTURED); }
static void kind_ln_structured(gcase *c) { run_local(c, BX_PRUNE_LN_STRUCTURED); }
static void kind_random_structured(gcase *c) { run_local(c, BX_PRUNE_RANDOM_STRUCTURED); }

/* ---- global ------------------------------------------------------------------------- */

/* A root module with one Holder child per listed parameter "l1.weight"
 * (child l1, parameter weight, values in.l1.weight). */
typedef struct gtargets {
    bx_module *root;
    int n;
    char module[MAX_TARGETS][64], param[MAX_TARGETS][64], full[MAX_TARGETS][128];
    bx_prune_target t[MAX_TARGETS];
} gtargets;

static bool build_targets(gcase *c, gtargets *g) {
    json_t *ps = json_object_get(gc_args(c), "parameters");
    g->n = 0;
    g->root = NULL;
    if (!json_is_array(ps) || json_array_size(ps) < 1 || json_array_size(ps) > MAX_TARGETS) {
        gc_fail(c, "args.parameters: expected a list of 1..%d names", MAX_TARGETS);
        return false;
    }
    g->root = bx_module_new(&holder_type, NULL);
    for (size_t i = 0; i < json_array_size(ps); i++) {
        const char *full = json_string_value(json_array_get(ps, i));
        const char *dot = full ? strrchr(full, '.') : NULL;
        if (!dot || (size_t)(dot - full) >= sizeof g->module[0] || strlen(dot + 1) >= sizeof g->param[0]) {
            gc_fail(c, "args.parameters[%zu]: expected 'module.param'", i);
            return false;
        }
        int k = g->n++;
        snprintf(g->module[k], sizeof g->module[k], "%.*s", (int)(dot - full), full);
        snprintf(g->param[k], sizeof g->param[k], "%s", dot + 1);
        snprintf(g->full[k], sizeof g->full[k], "%s", full);
        bx_module *child = g->root;
        for (const char *p = g->module[k]; child && *p;) { /* find or create each level of "net.0" */
            char part[64];
            size_t len = strcspn(p, ".");
            snprintf(part, sizeof part, "%.*s", (int)len, p);
            bx_module *next = bx_module_child(child, part);
            if (!next) {
                next = bx_module_new(&holder_type, NULL);
                if (bx_module_add_child(child, part, next) != BX_OK) {
                    gc_fail(c, "add_child: %s", bx_errmsg());
                    return false;
                }
            }
            child = next;
            p += len + (p[len] == '.');
        }
        char src[160];
        snprintf(src, sizeof src, "in.%s", full);
        const bx_tensor *t = gc_need(c, src);
        if (!t) return false;
        bx_tensor *w = bx_tensor_new(BX_F32, t->ndim, t->shape);
        if (!w || bx_copy(w, t) != BX_OK || bx_module_add_param(child, g->param[k], w) != BX_OK) {
            gc_fail(c, "parameter %s: %s", full, bx_errmsg());
            return false;
        }
        g->t[k].module = child;
        g->t[k].name = g->param[k];
    }
    return true;
}

/* The first of the candidate reference names present in the case. */
static const char *ref_name(gcase *c, char cands[][192], int n) {
    for (int i = 0; i < n; i++)
        if (gc_get(c, cands[i])) return cands[i];
    return NULL;
}

/* Compares mask and weight of target k; iter 0 = no suffix. */
static void compare_target(gcase *c, gtargets *g, int k, int iter, bool random) {
    char sfx[32] = "";
    if (iter) snprintf(sfx, sizeof sfx, ".iter%d", iter);
    char mc[4][192], wc[2][192];
    snprintf(mc[0], sizeof mc[0], "out.%s.mask%s", g->module[k], sfx);
    snprintf(mc[1], sizeof mc[1], "out.%s_mask%s", g->full[k], sfx);
    snprintf(mc[2], sizeof mc[2], "out.%s.mask%s", g->full[k], sfx);
    snprintf(mc[3], sizeof mc[3], "out.%s.%s_mask%s", g->module[k], g->param[k], sfx);
    snprintf(wc[0], sizeof wc[0], "out.%s%s", g->full[k], sfx);
    snprintf(wc[1], sizeof wc[1], "out.%s.weight%s", g->module[k], sfx);
    /* with weight and bias both listed, "out.l1.mask" would be ambiguous: prefer the full names */
    const char *mr = strcmp(g->param[k], "weight") == 0 ? ref_name(c, mc, 4) : ref_name(c, mc + 1, 3);
    const char *wr = ref_name(c, wc, strcmp(g->param[k], "weight") == 0 ? 2 : 1);
    if (!mr) {
        gc_fail(c, "no reference mask for %s%s", g->full[k], sfx);
        return;
    }
    compare_mask(c, mr, mask_u8(c, g->t[k].module, g->param[k]), random);
    if (wr && !random) gc_compare(c, wr, effective(c, g->t[k].module, g->param[k]));
    if (random) touch(c, wr);
}

/* "global_unstructured(L1Unstructured)" -> L1 (also a bare method name). */
static bool global_method(gcase *c, const char *s, bx_prune_method *m) {
    char inner[64];
    const char *p = s ? strchr(s, '(') : NULL;
    if (p) {
        snprintf(inner, sizeof inner, "%s", p + 1);
        char *e = strchr(inner, ')');
        if (e) *e = '\0';
        s = inner;
    }
    return method_of(c, s, m);
}

/* Adds in.update<K>.<p>_orig (or in.update<K>.<p>) to the trained tensor of
 * parameter p of module m, when the case has it. */
static void apply_update(gcase *c, bx_module *m, const char *prefix, const char *param, int k) {
    char n1[256], n2[256];
    snprintf(n1, sizeof n1, "in.update%d.%s%s%s_orig", k, prefix, prefix[0] ? "." : "", param);
    snprintf(n2, sizeof n2, "in.update%d.%s%s%s", k, prefix, prefix[0] ? "." : "", param);
    const bx_tensor *u = gc_get(c, n1);
    if (!u) u = gc_get(c, n2);
    if (!u) return;
    bx_tensor *p = bx_prune_param(m, param);
    if (!p || bx_numel(p) != bx_numel(u)) {
        gc_fail(c, "update %d of %s: shape mismatch", k, param);
        return;
    }
    float *d = p->data;
    for (int64_t i = 0; i < bx_numel(p); i++) d[i] = (float)(d[i] + (float)bx_get(u, i));
}

static void run_global(gcase *c, int iterations) {
    gtargets g;
    bx_prune_method method;
    bx_prune_opts o;
    bx_rng rng;
    bx_rng_init(&rng, 99);
    if (!global_method(c, gc_arg_str(c, "method", "global_unstructured(L1Unstructured)"), &method) ||
        !parse_opts(c, gc_args(c), method, &o, &rng) || !build_targets(c, &g)) {
        bx_module_free(g.root);
        return;
    }
    for (int it = 1; it <= iterations; it++) {
        if (it > 1)
            for (int k = 0; k < g.n; k++) apply_update(c, g.t[k].module, g.module[k], g.param[k], it);
        if (bx_prune_global(g.t, g.n, &o) != BX_OK) {
            gc_fail(c, "bx_prune_global (round %d): %s", it, bx_errmsg());
            break;
        }
        if (!is_random(method)) {
            for (int k = 0; k < g.n; k++) compare_target(c, &g, k, iterations > 1 ? it : 0, false);
            continue;
        }
        /* random: only the total number of zeros over all tensors is reproducible */
        int64_t got = 0, want = 0;
        bool all = true;
        for (int k = 0; k < g.n; k++) {
            char sfx[32] = "", mc[4][192];
            if (iterations > 1) snprintf(sfx, sizeof sfx, ".iter%d", it);
            snprintf(mc[0], sizeof mc[0], "out.%s.mask%s", g.module[k], sfx);
            snprintf(mc[1], sizeof mc[1], "out.%s_mask%s", g.full[k], sfx);
            snprintf(mc[2], sizeof mc[2], "out.%s.mask%s", g.full[k], sfx);
            snprintf(mc[3], sizeof mc[3], "out.%s.%s_mask%s", g.module[k], g.param[k], sfx);
            const char *mr = strcmp(g.param[k], "weight") == 0 ? ref_name(c, mc, 4) : ref_name(c, mc + 1, 3);
            got += zeros_of(mask_u8(c, g.t[k].module, g.param[k]));
            char wc[2][192];
            snprintf(wc[0], sizeof wc[0], "out.%s%s", g.full[k], sfx);
            snprintf(wc[1], sizeof wc[1], "out.%s.weight%s", g.module[k], sfx);
            touch(c, ref_name(c, wc, 2));
            if (mr) {
                want += zeros_of(gc_get(c, mr));
                touch(c, mr);
            } else {
                all = false;
            }
        }
        if (all) gc_compare_value(c, "total zeros of the masks", (double)got, (double)want);
    }
    if (gc_get(c, "out.num_zeros")) {
        int64_t z = 0;
        for (int k = 0; k < g.n; k++) z += zeros_of(mask_u8(c, g.t[k].module, g.param[k]));
        compare_count(c, "out.num_zeros", z);
    }
    bx_module_free(g.root);
}

static void kind_global_unstructured(gcase *c) { run_global(c, 1); }

/* ---- iterative ----------------------------------------------------------------------- */

static void kind_iterative(gcase *c) {
    json_t *steps = json_object_get(gc_args(c), "steps");
    const char *gm = gc_arg_str(c, "method", NULL);
    if (!steps && gm && strncmp(gm, "global", 6) == 0) {
        run_global(c, (int)gc_arg_int(c, "iterations", 2));
        return;
    }
    bx_module *m = holder(c, "in.weight");
    if (!m) return;
    bx_rng rng;
    bx_rng_init(&rng, 7);
    int nsteps = steps ? (int)json_array_size(steps) : (int)gc_arg_int(c, "iterations", 2);
    bool random_seen = false; /* after a random step only counts are reproducible */
    for (int k = 1; k <= nsteps; k++) {
        json_t *st = steps ? json_array_get(steps, (size_t)(k - 1)) : gc_args(c);
        bx_prune_method method;
        bx_prune_opts o;
        json_t *jm = json_object_get(st, "method");
        if (!method_of(c, jm && json_is_string(jm) ? json_string_value(jm) : gm, &method) ||
            !parse_opts(c, st, method, &o, &rng))
            break;
        if (k > 1) apply_update(c, m, "", "weight", k);
        if (bx_prune_apply(m, "weight", &o) != BX_OK) {
            gc_fail(c, "bx_prune_apply (step %d): %s", k, bx_errmsg());
            break;
        }
        char mc[3][192], wc[3][192];
        snprintf(mc[0], sizeof mc[0], "out.mask%d", k);
        snprintf(mc[1], sizeof mc[1], "out.mask.iter%d", k);
        snprintf(mc[2], sizeof mc[2], "out.mask.step%d", k);
        snprintf(wc[0], sizeof wc[0], "out.weight%d", k);
        snprintf(wc[1], sizeof wc[1], "out.weight.iter%d", k);
        snprintf(wc[2], sizeof wc[2], "out.weight.step%d", k);
        const char *mr = ref_name(c, mc, 3), *wr = ref_name(c, wc, 3);
        if (!mr) {
            gc_fail(c, "no reference mask for step %d", k);
            break;
        }
        random_seen = random_seen || is_random(method);
        compare_mask(c, mr, mask_u8(c, m, "weight"), random_seen);
        if (wr && !random_seen) gc_compare(c, wr, effective(c, m, "weight"));
        if (random_seen) touch(c, wr);
    }
    bx_module_free(m);
}

const gkind golden_kinds_prune[] = {
    {"prune_l1_unstructured", kind_l1_unstructured},
    {"prune_random_unstructured", kind_random_unstructured},
    {"prune_ln_structured", kind_ln_structured},
    {"prune_random_structured", kind_random_structured},
    {"prune_global_unstructured", kind_global_unstructured},
    {"prune_iterative", kind_iterative},
    {NULL, NULL},
};
