/* model_pruning.c - ModelPruning (spec/callbacks.md §9, Lightning 1.9.5 with
 * the bugs #13643 and #21223 fixed; docs/callbacks/model_pruning.md).
 *
 * Written only against the public callback / Trainer / nn / prune API.
 * Life cycle of one fit:
 *  - on_load_checkpoint (resume): masks saved next to a permanent-view
 *    state_dict ("pruning_masks") are put back on the freshly loaded model;
 *  - on_fit_start: targets resolved (explicit list, or discovery: names
 *    outer loop, non-container modules inner loop, like Lightning), and with
 *    the lottery ticket enabled theta_0 = a copy of each distinct target
 *    module as it is now;
 *  - every epoch (train-epoch end, or validation-epoch end outside the
 *    sanity check): apply_pruning(epoch) / amount(epoch) -> global or local
 *    pruning -> verbose report -> lottery-ticket reset of `<name>_orig`;
 *  - on_save_checkpoint: with make_pruning_permanent the checkpoint's
 *    state_dict becomes the permanent view (plain `weight`), the masks go
 *    to the extra top-level entry "pruning_masks" so a resume keeps them;
 *  - on_train_end: with make_pruning_permanent every pruned parameter of
 *    the tree is made permanent. */
#include "blixt/pruning.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct mp_target {
    char *module; /* dotted path from the root ("" = root) */
    char *name;   /* "weight" / "bias" */
    int orig_idx; /* index into theta0 modules, -1 without a copy */
} mp_target;

typedef struct mp {
    bx_prune_method method;
    bool structured;
    bx_model_pruning_opts o; /* strings/arrays below are owned copies */
    bx_pruning_param *given;
    int ngiven;
    char *names[2];
    int nnames;
    mp_target *t;
    int nt;
    bool resolved;
    bx_module **theta0; /* deep copies of the distinct target modules at fit start */
    char **theta0_path;
    int ntheta0;
    bx_rng rng;
} mp;

static const char *const MASKS_KEY = "pruning_masks";

#define MP_TRY(x)                   \
    do {                            \
        bx_status mp_s_ = (x);      \
        if (mp_s_ != BX_OK) return mp_s_; \
    } while (0)

/* ---- helpers ------------------------------------------------------------------------ */
static void free_targets(mp *p) {
    for (int i = 0; i < p->nt; i++) bx_free(p->t[i].module), bx_free(p->t[i].name);
    bx_free(p->t);
    p->t = NULL;
    p->nt = 0;
    for (int i = 0; i < p->ntheta0; i++) bx_module_free(p->theta0[i]), bx_free(p->theta0_path[i]);
    bx_free(p->theta0);
    bx_free(p->theta0_path);
    p->theta0 = NULL;
    p->theta0_path = NULL;
    p->ntheta0 = 0;
    p->resolved = false;
}

static void mp_destroy(void *self) {
    mp *p = self;
    if (!p) return;
    free_targets(p);
    for (int i = 0; i < p->ngiven; i++) bx_free((char *)p->given[i].module), bx_free((char *)p->given[i].name);
    bx_free(p->given);
    for (int i = 0; i < p->nnames; i++) bx_free(p->names[i]);
    bx_free(p);
}

static bool amount_is_zero(bx_prune_amount a) { return a.is_count ? a.count == 0 : a.fraction == 0.0; }

/* Python's repr of an int or float amount ("0.5", "3", "1.0"). */
static void amount_repr(bx_prune_amount a, char *buf, size_t n) {
    if (a.is_count) {
        snprintf(buf, n, "%lld", (long long)a.count);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, a.fraction);
        if (strtod(buf, NULL) == a.fraction) break;
    }
    if (!strpbrk(buf, ".eninf")) strncat(buf, ".0", n - strlen(buf) - 1);
}

static bool is_container(const bx_module *m) {
    const char *t = bx_module_type_name(m);
    return t && (!strcmp(t, "Sequential") || !strcmp(t, "ModuleList") || !strcmp(t, "ModuleDict"));
}

static bx_status add_target(mp *p, const char *module, const char *name) {
    mp_target *nt = bx_malloc(sizeof *nt * (size_t)(p->nt + 1));
    if (!nt) return BX_ERR_NOMEM;
    if (p->nt) memcpy(nt, p->t, sizeof *nt * (size_t)p->nt);
    bx_free(p->t);
    p->t = nt;
    mp_target *t = &p->t[p->nt];
    t->module = bx_strdup(module);
    t->name = bx_strdup(name);
    t->orig_idx = -1;
    if (!t->module || !t->name) {
        bx_free(t->module), bx_free(t->name);
        return BX_ERR_NOMEM;
    }
    p->nt++;
    return BX_OK;
}

/* Lightning's setup: resolve the targets and, with the lottery ticket, keep
 * a copy of every distinct target module (theta_0). */
static bx_status resolve(mp *p, bx_module *root) {
    free_targets(p);
    if (!root) return bx_set_error(BX_ERR_STATE, "ModelPruning: the trainer has no model module");
    bx_status s = BX_OK;
    if (p->ngiven > 0) {
        for (int i = 0; s == BX_OK && i < p->ngiven; i++) {
            bx_module *m = bx_module_find(root, p->given[i].module);
            if (!m)
                s = bx_set_error(BX_ERR_NOT_FOUND, "ModelPruning: parameters_to_prune: module '%s' is not part of the model",
                              p->given[i].module);
            else if (!bx_prune_param(m, p->given[i].name))
                s = bx_set_error(BX_ERR_NOT_FOUND,
                              "ModelPruning: parameters_to_prune: module '%s' has no parameter '%s'",
                              p->given[i].module, p->given[i].name);
            else
                s = add_target(p, p->given[i].module, p->given[i].name);
        }
    } else {
        bx_named_modules *nm = bx_module_named_modules(root);
        if (!nm) return BX_ERR_NOMEM;
        for (int k = 0; s == BX_OK && k < p->nnames; k++)
            for (int i = 0; s == BX_OK && i < nm->n; i++) {
                bx_module *m = nm->modules[i];
                if (i == 0 && bx_module_num_children(m) > 0) continue; /* the LightningModule itself */
                if (is_container(m)) continue;
                if (bx_prune_param(m, p->names[k])) s = add_target(p, nm->names[i], p->names[k]);
            }
        bx_named_modules_free(nm);
    }
    if (s == BX_OK && (p->o.use_lottery_ticket_hypothesis || p->o.lottery_ticket_fn)) {
        for (int i = 0; s == BX_OK && i < p->nt; i++) {
            int j = 0;
            while (j < p->ntheta0 && strcmp(p->theta0_path[j], p->t[i].module)) j++;
            if (j == p->ntheta0) {
                bx_module **a = bx_malloc(sizeof *a * (size_t)(j + 1));
                char **b = bx_malloc(sizeof *b * (size_t)(j + 1));
                if (!a || !b) {
                    bx_free(a), bx_free(b);
                    s = BX_ERR_NOMEM;
                    break;
                }
                if (j) memcpy(a, p->theta0, sizeof *a * (size_t)j), memcpy(b, p->theta0_path, sizeof *b * (size_t)j);
                bx_free(p->theta0), bx_free(p->theta0_path);
                p->theta0 = a, p->theta0_path = b;
                a[j] = bx_module_clone(bx_module_find(root, p->t[i].module));
                b[j] = bx_strdup(p->t[i].module);
                if (!a[j] || !b[j]) {
                    bx_module_free(a[j]), bx_free(b[j]);
                    s = BX_ERR_NOMEM;
                    break;
                }
                p->ntheta0++;
            }
            p->t[i].orig_idx = j;
        }
    }
    if (s != BX_OK) {
        free_targets(p);
        return s;
    }
    p->resolved = true;
    return BX_OK;
}

/* ---- one round ------------------------------------------------------------------------ */
static void stats(const mp *p, bx_module *root, int64_t *zeros, int64_t *sizes) {
    for (int i = 0; i < p->nt; i++) {
        zeros[i] = 0, sizes[i] = 0;
        bx_prune_mask_zeros(bx_module_find(root, p->t[i].module), p->t[i].name, &zeros[i], &sizes[i]);
    }
}

static double pct(int64_t a, int64_t b) { return b > 0 ? 100.0 * (double)a / (double)b : 0.0; }

static void report(const mp *p, bx_module *root, const int64_t *z0, const int64_t *z1, const int64_t *sz,
                   bx_prune_amount amount) {
    /* #21223 fixed: T = the total size of the masks (1.9.5: every parameter of
     * every listed module, once per listed pair). */
    int64_t T = 0, a = 0, b = 0;
    for (int i = 0; i < p->nt; i++) T += sz[i], a += z0[i], b += z1[i];
    const char *mname = p->o.use_global_unstructured ? bx_prune_method_class_name(p->method) : p->o.pruning_fn;
    bx_logf(BX_LOG_INFO, "Applied `%s`. Pruned: %lld/%lld (%.2f%%) -> %lld/%lld (%.2f%%)", mname, (long long)a,
            (long long)T, pct(a, T), (long long)b, (long long)T, pct(b, T));
    if (p->o.verbose < 2) return;
    char am[64], rep[512];
    amount_repr(amount, am, sizeof am);
    for (int i = 0; i < p->nt; i++) {
        bx_module_repr(bx_module_find(root, p->t[i].module), rep, sizeof rep);
        bx_logf(BX_LOG_INFO, "Applied `%s` to `%s.%s` with amount=%s. Pruned: %lld (%.2f%%) -> %lld (%.2f%%)", mname,
                rep, p->t[i].name, am, (long long)z0[i], pct(z0[i], sz[i]), (long long)z1[i], pct(z1[i], sz[i]));
    }
}

/* Writes theta_0 into the tensor that holds the trained values (name_orig
 * once pruned: #13643 fixed). Pruned entries stay pruned through the mask. */
static bx_status lottery_ticket(mp *p, bx_module *root) {
    bx_status s = BX_OK;
    for (int j = 0; s == BX_OK && j < p->ntheta0; j++) {
        bx_module *src = p->theta0[j], *fresh = NULL;
        if (p->o.resample_parameters) {
            fresh = bx_module_clone(src);
            if (!fresh) return BX_ERR_NOMEM;
            s = bx_module_reset_parameters(fresh, &p->rng);
            src = fresh;
        }
        for (int i = 0; s == BX_OK && i < p->nt; i++) {
            if (p->t[i].orig_idx != j) continue;
            bx_tensor *dst = bx_prune_param(bx_module_find(root, p->t[i].module), p->t[i].name);
            bx_tensor *v = bx_prune_param(src, p->t[i].name);
            if (!dst || !v)
                s = bx_set_error(BX_ERR_STATE, "ModelPruning: lottery ticket: '%s.%s' is gone", p->t[i].module,
                              p->t[i].name);
            else
                s = bx_copy(dst, v);
        }
        bx_module_free(fresh);
    }
    return s;
}

bx_status bx_model_pruning_run(bx_callback *cb, bx_trainer *tr, int64_t epoch) {
    if (!cb || !tr || bx_callback_get_ops(cb)->destroy != mp_destroy)
        return bx_set_error(BX_ERR_INVALID, "bx_model_pruning_run: not a ModelPruning");
    mp *p = bx_callback_self(cb);
    if (!p->resolved) return bx_set_error(BX_ERR_STATE, "ModelPruning: targets not resolved (fit not started)");
    bool prune = p->o.apply_pruning_fn ? p->o.apply_pruning_fn(p->o.apply_pruning_ud, epoch) : p->o.apply_pruning;
    bx_prune_amount amount = p->o.amount_fn ? p->o.amount_fn(p->o.amount_ud, epoch) : p->o.amount;
    if (!prune || amount_is_zero(amount) || p->nt == 0) return BX_OK;
    MP_TRY(bx_prune_amount_check(amount));
    bx_module *root = bx_trainer_module(tr);
    int64_t *buf = bx_malloc(sizeof *buf * 3 * (size_t)p->nt);
    if (!buf) return BX_ERR_NOMEM;
    int64_t *z0 = buf, *z1 = buf + p->nt, *sz = buf + 2 * p->nt;
    if (p->o.verbose) stats(p, root, z0, sz);
    bx_prune_opts po = BX_PRUNE_OPTS_INIT;
    po.method = p->method;
    po.amount = amount;
    po.norm = p->o.pruning_norm;
    po.dim = p->o.pruning_dim == BX_PRUNING_DIM_NONE ? -1 : p->o.pruning_dim;
    po.rng = &p->rng;
    bx_status s = BX_OK;
    if (p->o.use_global_unstructured) {
        bx_prune_target *tg = bx_malloc(sizeof *tg * (size_t)p->nt);
        if (!tg) s = BX_ERR_NOMEM;
        for (int i = 0; s == BX_OK && i < p->nt; i++) {
            tg[i].module = bx_module_find(root, p->t[i].module);
            tg[i].name = p->t[i].name;
            if (!tg[i].module) s = bx_set_error(BX_ERR_STATE, "ModelPruning: module '%s' is gone", p->t[i].module);
        }
        if (s == BX_OK) s = bx_prune_global(tg, p->nt, &po);
        bx_free(tg);
    } else {
        for (int i = 0; s == BX_OK && i < p->nt; i++) {
            bx_module *m = bx_module_find(root, p->t[i].module);
            s = m ? bx_prune_apply(m, p->t[i].name, &po)
                  : bx_set_error(BX_ERR_STATE, "ModelPruning: module '%s' is gone", p->t[i].module);
        }
    }
    if (s == BX_OK && p->o.verbose) {
        stats(p, root, z1, sz);
        report(p, root, z0, z1, sz, amount);
    }
    bx_free(buf);
    if (s != BX_OK) return s;
    bool lth = p->o.lottery_ticket_fn ? p->o.lottery_ticket_fn(p->o.lottery_ticket_ud, epoch)
                                      : p->o.use_lottery_ticket_hypothesis;
    if (lth) s = lottery_ticket(p, root);
    return s;
}

/* ---- hooks ------------------------------------------------------------------------------ */
static bx_status mp_on_fit_start(void *self, bx_trainer *tr) { return resolve(self, bx_trainer_module(tr)); }

static bx_status run_here(mp *p, bx_trainer *tr) {
    for (int i = 0; i < bx_trainer_num_callbacks(tr); i++) {
        bx_callback *cb = bx_trainer_callback(tr, i);
        if (bx_callback_self(cb) == p) return bx_model_pruning_run(cb, tr, bx_trainer_current_epoch(tr));
    }
    return bx_set_error(BX_ERR_STATE, "ModelPruning: not attached to the trainer");
}

static bx_status mp_on_train_epoch_end(void *self, bx_trainer *tr) {
    mp *p = self;
    return p->o.prune_on_train_epoch_end ? run_here(p, tr) : BX_OK;
}

static bx_status mp_on_validation_epoch_end(void *self, bx_trainer *tr) {
    mp *p = self;
    if (p->o.prune_on_train_epoch_end || bx_trainer_sanity_checking(tr) || bx_trainer_stage(tr) != BX_STAGE_FIT)
        return BX_OK;
    return run_here(p, tr);
}

static bx_status mp_on_train_end(void *self, bx_trainer *tr) {
    mp *p = self;
    if (!p->o.make_pruning_permanent) return BX_OK;
    bx_module *root = bx_trainer_module(tr);
    return root && bx_prune_tree_is_pruned(root) ? bx_prune_remove_all(root) : BX_OK;
}


static bx_status mp_on_save_checkpoint(void *self, bx_trainer *tr, bx_state *ckpt) {
    mp *p = self;
    bx_module *root = bx_trainer_module(tr);
    if (!p->o.make_pruning_permanent || !root || !bx_prune_tree_is_pruned(root)) return BX_OK;
    bx_named_tensors *nt = bx_prune_permanent_state_dict(root);
    bx_named_tensors *bufs = bx_module_named_buffers(root);
    bx_state *sd = bx_state_dict(), *masks = bx_state_dict();
    bx_status s = nt && bufs && sd && masks ? BX_OK : BX_ERR_NOMEM;
    for (int i = 0; s == BX_OK && i < nt->n; i++) s = bx_state_set_tensor(sd, nt->names[i], nt->tensors[i]);
    for (int i = 0; s == BX_OK && i < bufs->n; i++) {
        bx_module *m;
        char param[256];
        if (bx_prune_split_mask_key(root, bufs->names[i], &m, param, sizeof param) && bx_prune_is_pruned(m, param))
            s = bx_state_set_tensor(masks, bufs->names[i], bufs->tensors[i]);
    }
    bx_named_tensors_free(nt);
    bx_named_tensors_free(bufs);
    if (s == BX_OK) {
        s = bx_state_set(ckpt, "state_dict", sd);
        sd = NULL;
    }
    if (s == BX_OK) {
        s = bx_state_set(ckpt, MASKS_KEY, masks);
        masks = NULL;
    }
    bx_state_free(sd);
    bx_state_free(masks);
    return s;
}

static bx_status mp_on_load_checkpoint(void *self, bx_trainer *tr, const bx_state *ckpt) {
    (void)self;
    const bx_state *masks = bx_state_get(ckpt, MASKS_KEY);
    bx_module *root = bx_trainer_module(tr);
    if (!masks || bx_state_typeof(masks) != BX_STATE_DICT || !root) return BX_OK;
    for (size_t i = 0; i < bx_state_len(masks); i++) {
        const char *k = bx_state_key_at(masks, i);
        const bx_state *v = bx_state_value_at(masks, i);
        bx_module *m;
        char param[256];
        if (bx_state_typeof(v) != BX_STATE_TENSOR || !bx_prune_split_mask_key(root, k, &m, param, sizeof param)) continue;
        if (bx_prune_is_pruned(m, param)) {
            MP_TRY(bx_copy(bx_prune_mask(m, param), bx_state_get_tensor(v)));
        } else if (bx_module_param(m, param)) {
            MP_TRY(bx_prune_apply_mask(m, param, bx_state_get_tensor(v)));
        }
    }
    return BX_OK;
}

bx_status bx_model_pruning_prepare_load(bx_module *root, const bx_state *ckpt) {
    if (!root || !ckpt) return bx_set_error(BX_ERR_INVALID, "bx_model_pruning_prepare_load: NULL argument");
    const bx_state *sd = bx_state_get(ckpt, "state_dict");
    if (!sd || bx_state_typeof(sd) != BX_STATE_DICT) return BX_OK;
    size_t n = bx_state_len(sd);
    const char **keys = bx_malloc(sizeof *keys * (n ? n : 1));
    if (!keys) return BX_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) keys[i] = bx_state_key_at(sd, i);
    bx_status s = bx_prune_identity_from_keys(root, keys, (int)n, NULL);
    bx_free(keys);
    return s;
}

static const bx_callback_ops MP_OPS = {
    .name = "ModelPruning",
    .on_fit_start = mp_on_fit_start,
    .on_train_epoch_end = mp_on_train_epoch_end,
    .on_validation_epoch_end = mp_on_validation_epoch_end,
    .on_train_end = mp_on_train_end,
    .on_save_checkpoint = mp_on_save_checkpoint,
    .on_load_checkpoint = mp_on_load_checkpoint,
    .destroy = mp_destroy,
};

/* ---- construction and accessors ------------------------------------------------------------ */
static const mp *get(const bx_callback *cb) {
    return cb && bx_callback_get_ops(cb)->destroy == mp_destroy ? bx_callback_self(cb) : NULL;
}
int bx_model_pruning_num_targets(const bx_callback *cb) {
    const mp *p = get(cb);
    return p ? p->nt : 0;
}
const char *bx_model_pruning_target_module(const bx_callback *cb, int i) {
    const mp *p = get(cb);
    return p && i >= 0 && i < p->nt ? p->t[i].module : NULL;
}
const char *bx_model_pruning_target_name(const bx_callback *cb, int i) {
    const mp *p = get(cb);
    return p && i >= 0 && i < p->nt ? p->t[i].name : NULL;
}

static bx_status check_opts(const bx_model_pruning_opts *o, bx_prune_method *method) {
    if (!o->pruning_fn) return bx_set_error(BX_ERR_INVALID, "ModelPruning: pruning_fn is required");
    if (bx_prune_method_parse(o->pruning_fn, method) != BX_OK)
        return bx_set_error(BX_ERR_INVALID,
                         "ModelPruning: pruning_fn '%s' is not supported; expected one of l1_unstructured, "
                         "random_unstructured, ln_structured, random_structured",
                         o->pruning_fn);
    bool structured = bx_prune_method_is_structured(*method);
    if (o->use_global_unstructured && structured)
        return bx_set_error(BX_ERR_INVALID,
                         "ModelPruning: only the \"unstructured\" PRUNING_TYPE is supported with "
                         "use_global_unstructured=True; '%s' is structured",
                         o->pruning_fn);
    if (structured && o->pruning_dim == BX_PRUNING_DIM_NONE)
        return bx_set_error(BX_ERR_INVALID, "ModelPruning: pruning_fn '%s' requires pruning_dim", o->pruning_fn);
    if (*method == BX_PRUNE_LN_STRUCTURED && isnan(o->pruning_norm))
        return bx_set_error(BX_ERR_INVALID, "ModelPruning: pruning_fn 'ln_structured' requires pruning_norm");
    if (!o->amount_fn && bx_prune_amount_check(o->amount) != BX_OK)
        return bx_set_error(BX_ERR_INVALID, "ModelPruning: amount must be a count >= 0 or a fraction in [0, 1]");
    if (o->verbose < 0 || o->verbose > 2)
        return bx_set_error(BX_ERR_INVALID, "ModelPruning: verbose = %d, expected 0, 1 or 2", o->verbose);
    for (int i = 0; i < o->num_parameter_names; i++)
        if (!o->parameter_names || !o->parameter_names[i] ||
            (strcmp(o->parameter_names[i], "weight") && strcmp(o->parameter_names[i], "bias")))
            return bx_set_error(BX_ERR_INVALID,
                             "ModelPruning: parameter_names may only contain 'weight' and 'bias', got '%s'",
                             o->parameter_names && o->parameter_names[i] ? o->parameter_names[i] : "(null)");
    if (o->num_parameters_to_prune < 0 || (o->num_parameters_to_prune > 0 && !o->parameters_to_prune))
        return bx_set_error(BX_ERR_INVALID, "ModelPruning: bad parameters_to_prune list");
    for (int i = 0; i < o->num_parameters_to_prune; i++)
        if (!o->parameters_to_prune[i].module || !o->parameters_to_prune[i].name)
            return bx_set_error(BX_ERR_INVALID, "ModelPruning: parameters_to_prune[%d] has a NULL module or name", i);
    return BX_OK;
}

bx_callback *bx_model_pruning_new(const bx_model_pruning_opts *o) {
    if (!o) {
        bx_set_error(BX_ERR_INVALID, "ModelPruning: NULL options");
        return NULL;
    }
    bx_prune_method method;
    if (check_opts(o, &method) != BX_OK) return NULL;
    mp *p = bx_calloc(sizeof *p);
    if (!p) return NULL;
    p->o = *o;
    p->method = method;
    p->structured = bx_prune_method_is_structured(method);
    p->o.parameters_to_prune = NULL;
    p->o.parameter_names = NULL;
    bool ok = true;
    static const char *const dflt[] = {"weight", "bias"};
    const char *const *names = o->num_parameter_names > 0 ? o->parameter_names : dflt;
    int nn = o->num_parameter_names > 0 ? o->num_parameter_names : 2;
    for (int i = 0; ok && i < nn && p->nnames < 2; i++) {
        bool dup = false;
        for (int j = 0; j < p->nnames; j++) dup = dup || !strcmp(p->names[j], names[i]);
        if (dup) continue;
        ok = (p->names[p->nnames] = bx_strdup(names[i])) != NULL;
        if (ok) p->nnames++;
    }
    if (ok && o->num_parameters_to_prune > 0) {
        p->given = bx_calloc(sizeof *p->given * (size_t)o->num_parameters_to_prune);
        ok = p->given != NULL;
        for (int i = 0; ok && i < o->num_parameters_to_prune; i++) {
            p->given[i].module = bx_strdup(o->parameters_to_prune[i].module);
            p->given[i].name = bx_strdup(o->parameters_to_prune[i].name);
            p->ngiven++;
            ok = p->given[i].module && p->given[i].name;
        }
    }
    /* the caller's string is not kept: the canonical name serves the reports */
    static const char *const fn_names[] = {"l1_unstructured", "random_unstructured", "ln_structured",
                                           "random_structured"};
    p->o.pruning_fn = fn_names[method];
    bx_rng_init(&p->rng, o->seed);
    if (!ok) {
        mp_destroy(p);
        return NULL;
    }
    return bx_callback_new(&MP_OPS, p);
}
