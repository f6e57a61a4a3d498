/* mask.c - pruning masks on tensors: amounts, channel norms, the
 * unstructured / structured / global selections (torch.nn.utils.prune's
 * compute_mask and PruningContainer._combine_masks). Rules P1-P5 of
 * tests/golden/README.md. */
#include "prune/prune_int.h"
#include "tensor/tensor_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

/* ---- names ------------------------------------------------------------------------ */

static const char *const method_names[] = {"l1_unstructured", "random_unstructured", "ln_structured",
                                           "random_structured"};
static const char *const method_classes[] = {"L1Unstructured", "RandomUnstructured", "LnStructured",
                                             "RandomStructured"};

static bool method_ok(bx_prune_method m) { return (unsigned)m < 4u; }

static const char *fn_name(bx_prune_method m) { return method_ok(m) ? method_names[m] : "prune"; }

bx_status bx_prune_method_parse(const char *s, bx_prune_method *out) {
    if (!out) return bx__error(BX_ERR_INVALID, "prune method: out is NULL");
    for (int i = 0; s && i < 4; i++) {
        if (strcasecmp(s, method_names[i]) == 0 || strcasecmp(s, method_classes[i]) == 0) {
            *out = (bx_prune_method)i;
            return BX_OK;
        }
    }
    return bx__error(BX_ERR_INVALID,
                     "prune method '%s' is not supported: use l1_unstructured, random_unstructured, "
                     "ln_structured or random_structured",
                     s ? s : "(null)");
}

const char *bx_prune_method_class_name(bx_prune_method m) { return method_ok(m) ? method_classes[m] : "?"; }

bool bx_prune_method_is_structured(bx_prune_method m) {
    return m == BX_PRUNE_LN_STRUCTURED || m == BX_PRUNE_RANDOM_STRUCTURED;
}

bx_status bx_prune_norm_parse(const char *s, double *out) {
    if (!s || !out) return bx__error(BX_ERR_INVALID, "prune norm: NULL argument");
    if (strcasecmp(s, "fro") == 0) {
        *out = BX_PRUNE_NORM_FRO;
        return BX_OK;
    }
    if (strcasecmp(s, "nuc") == 0)
        return bx__error(BX_ERR_UNSUPPORTED, "prune norm 'nuc' (nuclear norm) is not supported");
    char *end;
    double v = strtod(s, &end); /* also reads "inf", "-inf", "infinity" */
    while (*end && isspace((unsigned char)*end)) end++;
    if (end == s || *end || isnan(v))
        return bx__error(BX_ERR_INVALID, "prune norm '%s': expected a number, 'inf', '-inf' or 'fro'", s);
    *out = v;
    return BX_OK;
}

/* ---- amounts ---------------------------------------------------------------------- */

bx_status bx_prune_amount_check(bx_prune_amount a) {
    if (a.is_count && a.count < 0)
        return bx__error(BX_ERR_INVALID, "amount=%lld should either be a float in the range [0, 1] or a "
                                         "non-negative integer",
                         (long long)a.count);
    if (!a.is_count && !(a.fraction >= 0.0 && a.fraction <= 1.0))
        return bx__error(BX_ERR_INVALID, "amount=%g should either be a float in the range [0, 1] or a "
                                         "non-negative integer",
                         a.fraction);
    return BX_OK;
}

bx_status bx_prune_amount_resolve(bx_prune_amount a, int64_t n, int64_t *k) {
    bx_status s = bx_prune_amount_check(a);
    if (s != BX_OK) return s;
    if (!k || n < 0) return bx__error(BX_ERR_INVALID, "amount: bad arguments");
    if (a.is_count) {
        if (a.count > n)
            return bx__error(BX_ERR_INVALID,
                             "amount=%lld should be smaller than the number of parameters to prune=%lld",
                             (long long)a.count, (long long)n);
        *k = a.count;
    } else {
        /* Python's round(amount * n): the double product rounded half to even
         * (the default rounding mode, which the library never changes). */
        *k = (int64_t)nearbyint(a.fraction * (double)n);
    }
    return BX_OK;
}

/* ---- tensor access ------------------------------------------------------------------ */

bx_status bx__prune_vals_load(const bx_tensor *t, bx__prune_vals *v, const char *what) {
    v->vals = NULL;
    v->own = NULL;
    if (t->dtype != BX_F32 && t->dtype != BX_F64) {
        char sh[96];
        return bx__error(BX_ERR_SHAPE, "%s: scores %s must be f32 or f64, not %s", what,
                         bx_shape_str(t, sh, sizeof sh), bx_dtype_name(t->dtype));
    }
    int64_t n = bx_numel(t);
    if (t->dtype == BX_F32 && bx_is_contiguous(t)) {
        v->vals = t->data;
        return BX_OK;
    }
    v->own = bx__malloc(sizeof(float) * (size_t)(n ? n : 1));
    if (!v->own) return BX_ERR_NOMEM;
    for (int64_t i = 0; i < n; i++) v->own[i] = (float)bx_get(t, i);
    v->vals = v->own;
    return BX_OK;
}

void bx__prune_vals_free(bx__prune_vals *v) {
    bx__free(v->own);
    v->own = NULL;
    v->vals = NULL;
}

bx_status bx__prune_mask_check(const bx_tensor *m, const char *what) {
    if (m->dtype == BX_F32 || m->dtype == BX_U8 || m->dtype == BX_BOOL) return BX_OK;
    return bx__error(BX_ERR_UNSUPPORTED, "%s: mask dtype %s is not supported (f32, u8 or bool)", what,
                     bx_dtype_name(m->dtype));
}

double bx__prune_mask_get(const bx_tensor *m, int64_t i) {
    if (bx_is_contiguous(m)) {
        if (m->dtype == BX_F32) return ((const float *)m->data)[i];
        if (m->dtype == BX_U8 || m->dtype == BX_BOOL) return ((const uint8_t *)m->data)[i];
    }
    return bx_get(m, i);
}

void bx__prune_mask_zero(bx_tensor *m, int64_t i) {
    if (bx_is_contiguous(m)) {
        if (m->dtype == BX_F32) {
            ((float *)m->data)[i] = 0.0f;
            return;
        }
        if (m->dtype == BX_U8 || m->dtype == BX_BOOL) {
            ((uint8_t *)m->data)[i] = 0;
            return;
        }
    }
    bx_set(m, i, 0.0);
}

/* ---- channel norms -------------------------------------------------------------------- */

/* L_p norm of each of the c slices along the dim with `inner` elements after
 * it, accumulated in double (out[c]). */
static void norms_d(const float *x, int64_t n, int64_t nch, int64_t inner, double p, double *out) {
    bool pinf = isinf(p) && p > 0, ninf = isinf(p) && p < 0;
    for (int64_t c = 0; c < nch; c++) out[c] = ninf ? INFINITY : 0.0;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = (i / inner) % nch;
        double a = fabs((double)x[i]);
        if (pinf)
            out[c] = a > out[c] ? a : out[c];
        else if (ninf)
            out[c] = a < out[c] ? a : out[c];
        else if (p == 0)
            out[c] += a != 0;
        else if (p == 1)
            out[c] += a;
        else if (p == 2)
            out[c] += a * a;
        else
            out[c] += pow(a, p);
    }
    if (n == 0 && ninf)
        for (int64_t c = 0; c < nch; c++) out[c] = 0;
    if (!pinf && !ninf && p != 0 && p != 1)
        for (int64_t c = 0; c < nch; c++) out[c] = p == 2 ? sqrt(out[c]) : pow(out[c], 1.0 / p);
}

/* Normalised channel dim, or a BX_ERR_SHAPE naming the op. */
static bx_status channel_dim(const bx_tensor *t, int dim, const char *what, int *d) {
    char sh[96];
    if (t->ndim < 2)
        return bx__error(BX_ERR_SHAPE,
                         "%s: structured pruning can only be applied to multidimensional tensors, got %s "
                         "with %d dims",
                         what, bx_shape_str(t, sh, sizeof sh), t->ndim);
    *d = bx__norm_dim(dim, t->ndim);
    if (*d < 0)
        return bx__error(BX_ERR_SHAPE, "%s: dim %d is out of range for a tensor %s", what, dim,
                         bx_shape_str(t, sh, sizeof sh));
    return BX_OK;
}

static int64_t inner_size(const bx_tensor *t, int d) {
    int64_t inner = 1;
    for (int j = d + 1; j < t->ndim; j++) inner *= t->shape[j];
    return inner;
}

bx_status bx_prune_channel_norms(const bx_tensor *t, double p, int dim, bx_tensor *out) {
    if (!t || !out) return bx__error(BX_ERR_INVALID, "channel_norms: NULL tensor");
    if (isnan(p)) return bx__error(BX_ERR_INVALID, "channel_norms: the norm p is NaN");
    int d = 0;
    bx_status s = channel_dim(t, dim, "channel_norms", &d);
    if (s != BX_OK) return s;
    int64_t nch = t->shape[d];
    if (out->dtype != BX_F32 || bx_numel(out) != nch) {
        char a[96], b[96];
        return bx__error(BX_ERR_SHAPE, "channel_norms: out %s %s must be f32 with %lld elements for t %s dim %d",
                         bx_shape_str(out, a, sizeof a), bx_dtype_name(out->dtype), (long long)nch,
                         bx_shape_str(t, b, sizeof b), dim);
    }
    bx__prune_vals v;
    if ((s = bx__prune_vals_load(t, &v, "channel_norms")) != BX_OK) return s;
    double *nd = bx__malloc(sizeof(double) * (size_t)(nch ? nch : 1));
    if (!nd) {
        bx__prune_vals_free(&v);
        return BX_ERR_NOMEM;
    }
    norms_d(v.vals, bx_numel(t), nch, inner_size(t, d), p, nd);
    for (int64_t c = 0; c < nch; c++) bx_set(out, c, (double)(float)nd[c]);
    bx__free(nd);
    bx__prune_vals_free(&v);
    return BX_OK;
}

/* ---- selections ------------------------------------------------------------------------- */

static bx_status check_common(const bx_prune_opts *o, const char *what) {
    if (!o) return bx__error(BX_ERR_INVALID, "prune: options are NULL");
    if (!method_ok(o->method)) return bx__error(BX_ERR_INVALID, "prune: bad method %d", (int)o->method);
    bx_status s = bx_prune_amount_check(o->amount);
    if (s != BX_OK) {
        bx__error_prefix("%s", what);
        return s;
    }
    if ((o->method == BX_PRUNE_RANDOM_UNSTRUCTURED || o->method == BX_PRUNE_RANDOM_STRUCTURED) && !o->rng)
        return bx__error(BX_ERR_INVALID, "%s: a random method needs an rng", what);
    if (o->method == BX_PRUNE_LN_STRUCTURED && isnan(o->norm))
        return bx__error(BX_ERR_INVALID, "%s: the norm n is required (1, 2, inf, -inf, 'fro', ...)", what);
    return BX_OK;
}

/* Unstructured selection over nt tensors seen as one vector (one tensor for
 * l1/random_unstructured, several for global_unstructured): the entries
 * whose mask is 1, compacted in order, are the candidates; the k chosen are
 * zeroed in the masks. All checks and allocations happen before any write. */
static bx_status unstructured(const bx_tensor *const *scores, bx_tensor *const *masks, int nt,
                              const bx_prune_opts *o, int64_t *num_pruned, const char *what) {
    int64_t total = 0;
    for (int t = 0; t < nt; t++) total += bx_numel(masks[t]);
    bx_status s = BX_OK;
    int64_t *offs = bx__malloc(sizeof(int64_t) * (size_t)(nt + 1));
    int64_t *cand = bx__malloc(sizeof(int64_t) * (size_t)(total ? total : 1));
    float *keys = bx__malloc(sizeof(float) * (size_t)(total ? total : 1));
    if (!offs || !cand || !keys) {
        s = BX_ERR_NOMEM;
        goto done;
    }
    int64_t nc = 0;
    offs[0] = 0;
    for (int t = 0; t < nt && s == BX_OK; t++) {
        int64_t n = bx_numel(masks[t]);
        offs[t + 1] = offs[t] + n;
        bx__prune_vals v = {0};
        if (o->method == BX_PRUNE_L1_UNSTRUCTURED && (s = bx__prune_vals_load(scores[t], &v, what)) != BX_OK)
            break;
        for (int64_t i = 0; i < n; i++) {
            if (bx__prune_mask_get(masks[t], i) != 1.0) continue;
            if (v.vals) keys[nc] = fabsf(v.vals[i]);
            cand[nc++] = offs[t] + i;
        }
        bx__prune_vals_free(&v);
    }
    if (s != BX_OK) goto done;
    int64_t k;
    if ((s = bx_prune_amount_resolve(o->amount, nc, &k)) != BX_OK) {
        bx__error_prefix("%s", what);
        goto done;
    }
    if (k > 0) {
        /* random_unstructured: topk(rand_like(t), k) = the k largest U(0,1) keys */
        bool random = o->method == BX_PRUNE_RANDOM_UNSTRUCTURED;
        if (random)
            for (int64_t j = 0; j < nc; j++) keys[j] = bx_rng_uniform(o->rng);
        int64_t *sel = bx__malloc(sizeof(int64_t) * (size_t)k);
        if (!sel) {
            s = BX_ERR_NOMEM;
            goto done;
        }
        if ((s = bx_prune_topk(keys, nc, k, random, sel)) == BX_OK) {
            for (int64_t j = 0; j < k; j++) {
                int64_t flat = cand[sel[j]];
                int lo = 0, hi = nt - 1; /* tensor t with offs[t] <= flat < offs[t+1] */
                while (lo < hi) {
                    int mid = (lo + hi + 1) / 2;
                    if (offs[mid] <= flat)
                        lo = mid;
                    else
                        hi = mid - 1;
                }
                bx__prune_mask_zero(masks[lo], flat - offs[lo]);
            }
        }
        bx__free(sel);
    }
    if (s == BX_OK && num_pruned) *num_pruned = k;
done:
    bx__free(keys);
    bx__free(cand);
    bx__free(offs);
    return s;
}

/* Structured selection: the channels along dim whose mask slice is not all
 * zero are the candidates (compacted in order); ln_structured keeps the
 * nc - k with the largest norm (topk largest of the kept count, as torch),
 * random_structured prunes the k smallest U(0,1) keys. */
static bx_status structured(const bx_tensor *scores, bx_tensor *mask, const bx_prune_opts *o,
                            int64_t *num_pruned, const char *what) {
    int d = 0;
    bx_status s = channel_dim(mask, o->dim, what, &d);
    if (s != BX_OK) return s;
    int64_t nch = mask->shape[d], n = bx_numel(mask), inner = inner_size(mask, d);
    bx__prune_vals v = {0};
    double *norms = NULL;
    float *keys = NULL;
    int64_t *cand = NULL, *sel = NULL;
    uint8_t *alive = NULL, *prune = NULL;
    if (o->method == BX_PRUNE_LN_STRUCTURED && (s = bx__prune_vals_load(scores, &v, what)) != BX_OK) return s;
    size_t cn = (size_t)(nch ? nch : 1);
    norms = bx__malloc(sizeof(double) * cn);
    keys = bx__malloc(sizeof(float) * cn);
    cand = bx__malloc(sizeof(int64_t) * cn);
    sel = bx__malloc(sizeof(int64_t) * cn);
    alive = bx__calloc(cn);
    prune = bx__calloc(cn);
    if (!norms || !keys || !cand || !sel || !alive || !prune) {
        s = BX_ERR_NOMEM;
        goto done;
    }
    /* keep_channel = mask.sum(other dims) != 0 (masks are 0/1) */
    for (int64_t i = 0; i < n; i++)
        if (bx__prune_mask_get(mask, i) != 0) alive[(i / inner) % nch] = 1;
    int64_t nc = 0;
    for (int64_t c = 0; c < nch; c++)
        if (alive[c]) cand[nc++] = c;
    int64_t k;
    if ((s = bx_prune_amount_resolve(o->amount, nc, &k)) != BX_OK) {
        bx__error_prefix("%s", what);
        goto done;
    }
    if (k > 0) {
        if (o->method == BX_PRUNE_LN_STRUCTURED) {
            /* norms of the candidate slices of the scores (the compacted t[slc]) */
            norms_d(v.vals, n, nch, inner, o->norm, norms);
            for (int64_t j = 0; j < nc; j++) keys[j] = (float)norms[cand[j]];
            int64_t keep = nc - k;
            if ((s = bx_prune_topk(keys, nc, keep, true, sel)) != BX_OK) goto done;
            for (int64_t j = 0; j < nc; j++) prune[cand[j]] = 1;
            for (int64_t j = 0; j < keep; j++) prune[cand[sel[j]]] = 0;
        } else {
            /* prob > kthvalue(prob, k) is kept: the k smallest keys are pruned */
            for (int64_t j = 0; j < nc; j++) keys[j] = bx_rng_uniform(o->rng);
            if ((s = bx_prune_topk(keys, nc, k, false, sel)) != BX_OK) goto done;
            for (int64_t j = 0; j < k; j++) prune[cand[sel[j]]] = 1;
        }
        for (int64_t i = 0; i < n; i++)
            if (prune[(i / inner) % nch]) bx__prune_mask_zero(mask, i);
    }
    if (num_pruned) *num_pruned = k;
done:
    bx__prune_vals_free(&v);
    bx__free(norms);
    bx__free(keys);
    bx__free(cand);
    bx__free(sel);
    bx__free(alive);
    bx__free(prune);
    return s;
}

static bx_status check_pair(const bx_tensor *scores, const bx_tensor *mask, const char *what) {
    if (!scores || !mask) return bx__error(BX_ERR_INVALID, "%s: scores or mask is NULL", what);
    if (bx_is_poison(scores) || bx_is_poison(mask)) return bx__error(BX_ERR_INVALID, "%s: poison tensor", what);
    if (!bx_same_shape(scores, mask)) {
        char a[96], b[96];
        return bx__error(BX_ERR_SHAPE, "%s: scores %s and mask %s differ in shape", what,
                         bx_shape_str(scores, a, sizeof a), bx_shape_str(mask, b, sizeof b));
    }
    if (scores->dtype != BX_F32 && scores->dtype != BX_F64) {
        char a[96];
        return bx__error(BX_ERR_SHAPE, "%s: scores %s must be f32 or f64, not %s", what,
                         bx_shape_str(scores, a, sizeof a), bx_dtype_name(scores->dtype));
    }
    return bx__prune_mask_check(mask, what);
}

bx_status bx_prune_compute_mask(const bx_tensor *scores, bx_tensor *mask, const bx_prune_opts *o,
                                int64_t *num_pruned) {
    const char *what = o ? fn_name(o->method) : "prune";
    bx_status s = check_common(o, what);
    if (s == BX_OK) s = check_pair(scores, mask, what);
    if (s != BX_OK) return s;
    if (bx_prune_method_is_structured(o->method)) return structured(scores, mask, o, num_pruned, what);
    return unstructured(&scores, &mask, 1, o, num_pruned, what);
}

bx_status bx_prune_compute_masks_global(const bx_tensor *const *scores, bx_tensor *const *masks, int n,
                                        const bx_prune_opts *o, int64_t *num_pruned) {
    const char *what = "global_unstructured";
    bx_status s = check_common(o, what);
    if (s != BX_OK) return s;
    if (bx_prune_method_is_structured(o->method))
        return bx__error(BX_ERR_INVALID, "%s: only unstructured methods are supported, got %s", what,
                         fn_name(o->method));
    if (n < 1 || !scores || !masks) return bx__error(BX_ERR_INVALID, "%s: no tensors to prune", what);
    for (int t = 0; t < n; t++)
        if ((s = check_pair(scores[t], masks[t], what)) != BX_OK) return s;
    return unstructured(scores, masks, n, o, num_pruned, what);
}
