/* finetuning.c - BaseFinetuning (spec/callbacks.md §6): the static helpers
 * (flatten_modules, filter_params, filter_on_optimizer, make_trainable,
 * freeze_module, freeze, unfreeze_and_add_param_group) and the callback that
 * runs a user's freeze_before_training / finetune_function and records the
 * param groups it creates.
 *
 * Written against the public nn / optim / callback / trainer API only (the
 * library's allocator and error text are the only internals used), so a user
 * can write the same callback outside the library.
 *
 * When it runs (Lightning 1.9.5):
 *   setup (every stage)       freeze_before_training(root)
 *   load_state_dict           keep internal_optimizer_metadata, mark restarting
 *   on_fit_start              (restarting) add the recorded groups the freshly
 *                             configured optimizers lack - the Trainer loads
 *                             the optimizer state after on_fit_start
 *   on_train_epoch_start      per optimizer: finetune_function, then record
 *                             all groups (first time) or the new ones
 * Fixed against Lightning: filter_on_optimizer compares by identity. */

#include <blixt/finetuning.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

#define FT_TRY(x)                       \
    do {                                \
        bx_status ft_s_ = (x);          \
        if (ft_s_ != BX_OK) return ft_s_; \
    } while (0)

/* ---- lists ------------------------------------------------------------------------ */

void bx_module_array_free(bx_module_array *l) {
    if (!l) return;
    bx_free(l->items);
    bx_free(l);
}

void bx_param_array_free(bx_param_array *l) {
    if (!l) return;
    bx_free(l->items);
    bx_free(l);
}

static bx_status push_module(bx_module_array *l, int *cap, bx_module *m) {
    for (int i = 0; i < l->n; i++)
        if (l->items[i] == m) return BX_OK;
    if (l->n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        bx_module **v = bx_realloc(l->items, (size_t)nc * sizeof *v);
        if (!v) return bx_set_error(BX_ERR_NOMEM, "BaseFinetuning: out of memory");
        l->items = v;
        *cap = nc;
    }
    l->items[l->n++] = m;
    return BX_OK;
}

static bx_status push_param(bx_param_array *l, int *cap, bx_tensor *p) {
    for (int i = 0; i < l->n; i++)
        if (l->items[i] == p) return BX_OK;
    if (l->n == *cap) {
        int nc = *cap ? 2 * *cap : 16;
        bx_tensor **v = bx_realloc(l->items, (size_t)nc * sizeof *v);
        if (!v) return bx_set_error(BX_ERR_NOMEM, "BaseFinetuning: out of memory");
        l->items = v;
        *cap = nc;
    }
    l->items[l->n++] = p;
    return BX_OK;
}

/* ---- static helpers ----------------------------------------------------------------- */

static bx_status check_modules(const char *fn, bx_module *const *modules, int n) {
    if (n < 0 || (n > 0 && !modules)) return bx_set_error(BX_ERR_INVALID, "BaseFinetuning.%s: bad module list (n=%d)", fn, n);
    for (int i = 0; i < n; i++)
        if (!modules[i]) return bx_set_error(BX_ERR_INVALID, "BaseFinetuning.%s: module %d is NULL", fn, i);
    return BX_OK;
}

/* Flattened module list into *out (caller frees). Errors: INVALID, NOMEM. */
static bx_status flatten(const char *fn, bx_module *const *modules, int n, bx_module_array **out) {
    *out = NULL;
    FT_TRY(check_modules(fn, modules, n));
    bx_module_array *l = bx_calloc(sizeof *l);
    if (!l) return BX_ERR_NOMEM;
    int cap = 0;
    for (int r = 0; r < n; r++) {
        bx_named_modules *nm = bx_module_named_modules(modules[r]);
        bx_status s = nm ? BX_OK : BX_ERR_NOMEM;
        for (int i = 0; nm && i < nm->n && s == BX_OK; i++) {
            bx_module *m = nm->modules[i];
            /* leaves, and parents that own parameter slots directly (1.3.6 #7931) */
            if (bx_module_num_children(m) == 0 || bx_module_num_own_params(m) > 0) s = push_module(l, &cap, m);
        }
        bx_named_modules_free(nm);
        if (s != BX_OK) {
            bx_module_array_free(l);
            return s;
        }
    }
    *out = l;
    return BX_OK;
}

bx_module_array *bx_finetuning_flatten_modules(bx_module *const *modules, int n) {
    bx_module_array *l;
    flatten("flatten_modules", modules, n, &l);
    return l;
}

bx_param_array *bx_finetuning_filter_params(bx_module *const *modules, int n, bool train_bn, bool requires_grad) {
    bx_module_array *flat;
    if (flatten("filter_params", modules, n, &flat) != BX_OK) return NULL;
    bx_param_array *out = bx_calloc(sizeof *out);
    int cap = 0;
    bx_status s = out ? BX_OK : BX_ERR_NOMEM;
    for (int i = 0; i < flat->n && s == BX_OK; i++) {
        bx_module *m = flat->items[i];
        if (!train_bn && bx_module_is_batchnorm(m)) continue;
        for (int k = 0; k < bx_module_num_own_params(m) && s == BX_OK; k++) {
            bx_tensor *p = bx_module_param_at(m, k, NULL);
            if (p && p->requires_grad == requires_grad) s = push_param(out, &cap, p);
        }
    }
    bx_module_array_free(flat);
    if (s != BX_OK) {
        bx_param_array_free(out);
        return NULL;
    }
    return out;
}

static bool optimizer_has(const bx_optimizer *opt, const bx_tensor *p) {
    for (int g = 0; g < bx_optimizer_num_groups(opt); g++)
        for (int i = 0; i < bx_optimizer_group_num_params(opt, g); i++)
            if (bx_optimizer_group_param(opt, g, i) == p) return true;
    return false;
}

bx_param_array *bx_finetuning_filter_on_optimizer(const bx_optimizer *opt, bx_tensor *const *params, int n) {
    if (!opt) {
        bx_set_error(BX_ERR_INVALID, "BaseFinetuning.filter_on_optimizer: NULL optimizer");
        return NULL;
    }
    if (n < 0 || (n > 0 && !params)) {
        bx_set_error(BX_ERR_INVALID, "BaseFinetuning.filter_on_optimizer: bad parameter list (n=%d)", n);
        return NULL;
    }
    bx_param_array *out = bx_calloc(sizeof *out);
    if (!out) return NULL;
    int cap = 0, removed = 0;
    for (int i = 0; i < n; i++) {
        if (!params[i]) {
            bx_param_array_free(out);
            bx_set_error(BX_ERR_INVALID, "BaseFinetuning.filter_on_optimizer: parameter %d is NULL", i);
            return NULL;
        }
        if (optimizer_has(opt, params[i])) { /* identity, not torch.equal (Lightning's bug) */
            removed++;
        } else if (push_param(out, &cap, params[i]) != BX_OK) {
            bx_param_array_free(out);
            return NULL;
        }
    }
    if (removed)
        bx_logf(BX_LOG_WARNING,
                "The provided params to be frozen already exist within another group of this optimizer. Those "
                "parameters will be skipped.\nHINT: Did you init your optimizer in `configure_optimizer` as such:\n "
                "%s(<the parameters that require grad>, ...) ",
                bx_optimizer_type(opt));
    return out;
}

static void set_own_requires_grad(bx_module *m, bool rg) {
    for (int k = 0; k < bx_module_num_own_params(m); k++) {
        bx_tensor *p = bx_module_param_at(m, k, NULL);
        if (p) p->requires_grad = rg;
    }
}

bx_status bx_finetuning_make_trainable(bx_module *const *modules, int n) {
    bx_module_array *flat;
    FT_TRY(flatten("make_trainable", modules, n, &flat));
    for (int i = 0; i < flat->n; i++) {
        bx_module *m = flat->items[i];
        if (bx_module_is_batchnorm(m)) bx_batchnorm_set_track_running_stats(m, true);
        set_own_requires_grad(m, true);
    }
    bx_module_array_free(flat);
    return BX_OK;
}

bx_status bx_finetuning_freeze_module(bx_module *m) {
    if (!m) return bx_set_error(BX_ERR_INVALID, "BaseFinetuning.freeze_module: NULL module");
    /* a frozen BatchNorm also stops updating its running statistics (1.8.1 #15063) */
    if (bx_module_is_batchnorm(m)) bx_batchnorm_set_track_running_stats(m, false);
    set_own_requires_grad(m, false);
    return BX_OK;
}

bx_status bx_finetuning_freeze(bx_module *const *modules, int n, bool train_bn) {
    bx_module_array *flat;
    FT_TRY(flatten("freeze", modules, n, &flat));
    bx_status s = BX_OK;
    for (int i = 0; i < flat->n && s == BX_OK; i++) {
        bx_module *m = flat->items[i];
        if (train_bn && bx_module_is_batchnorm(m)) s = bx_finetuning_make_trainable(&m, 1);
        else s = bx_finetuning_freeze_module(m);
    }
    bx_module_array_free(flat);
    return s;
}

bx_status bx_finetuning_unfreeze_and_add_param_group(bx_module *const *modules, int n, bx_optimizer *opt, double lr,
                                                     double initial_denom_lr, bool train_bn) {
    if (!opt) return bx_set_error(BX_ERR_INVALID, "BaseFinetuning.unfreeze_and_add_param_group: NULL optimizer");
    FT_TRY(check_modules("unfreeze_and_add_param_group", modules, n));
    double params_lr = lr, denom = 1.0;
    if (isnan(lr)) {
        if (bx_optimizer_num_groups(opt) < 1)
            return bx_set_error(BX_ERR_INVALID,
                             "BaseFinetuning.unfreeze_and_add_param_group: no lr given and the %s optimizer has no "
                             "param group to take one from",
                             bx_optimizer_type(opt));
        params_lr = bx_optimizer_get_lr(opt, 0);
        denom = initial_denom_lr;
    }
    if (!(denom > 0.0) || !(params_lr / denom >= 0.0))
        return bx_set_error(BX_ERR_INVALID, "BaseFinetuning.unfreeze_and_add_param_group: bad lr %g / %g", params_lr, denom);
    FT_TRY(bx_finetuning_make_trainable(modules, n));
    bx_param_array *ps = bx_finetuning_filter_params(modules, n, train_bn, true);
    if (!ps) return BX_ERR_NOMEM;
    bx_param_array *fresh = bx_finetuning_filter_on_optimizer(opt, ps->items, ps->n);
    bx_param_array_free(ps);
    if (!fresh) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    if (fresh->n > 0) {
        bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
        g.lr = params_lr / denom;
        s = bx_optimizer_add_group(opt, fresh->items, fresh->n, &g);
    }
    bx_param_array_free(fresh);
    return s;
}

/* ---- the callback ------------------------------------------------------------------ */

typedef struct ft {
    bx_callback_ops cb; /* the registered table (name from the user's ops) */
    const bx_finetuning_ops *ops;
    void *self;
    bx_state *meta;  /* internal_optimizer_metadata: {"0": [group, ...], ...} */
    bool restarting; /* state loaded: rebuild the groups at on_fit_start */
} ft;

bx_module *bx_finetuning_root(bx_trainer *tr) {
    const bx_model *m = tr ? bx_trainer_model(tr) : NULL;
    if (m && m->ops && m->ops->module) return m->ops->module(m->self);
    return tr ? bx_trainer_module(tr) : NULL;
}

static bx_status need_root(const ft *f, bx_trainer *tr, const char *hook, bx_module **root) {
    *root = bx_finetuning_root(tr);
    if (!*root)
        return bx_set_error(BX_ERR_STATE,
                         "%s: the model's module() is NULL at %s; build the layers before fit (a callback's setup "
                         "runs before the model's, as in Lightning)",
                         f->ops->name, hook);
    return BX_OK;
}

static bx_status f_setup(void *self, bx_trainer *tr, bx_stage stage) {
    (void)stage;
    ft *f = self;
    bx_module *root;
    FT_TRY(need_root(f, tr, "setup", &root));
    return f->ops->freeze_before_training(f->self, tr, root);
}

/* Name of parameter p in the model (named_parameters), or NULL. */
static const char *param_name(const bx_named_tensors *np, const bx_tensor *p) {
    for (int i = 0; i < np->n; i++)
        if (np->tensors[i] == p) return np->names[i];
    return NULL;
}

/* Appends groups [from, to) of opt to list: the optimizer's state-dict group
 * (hyper-parameters in torch's order, extra keys) with each parameter
 * replaced by its name. */
static bx_status store_groups(const ft *f, bx_module *root, const bx_optimizer *opt, int opt_idx, int from, int to,
                              bx_state *list) {
    bx_state *sd = bx_optimizer_state_dict(opt);
    bx_named_tensors *np = bx_module_named_parameters(root);
    const bx_state *pg = sd ? bx_state_get(sd, "param_groups") : NULL;
    bx_status s = sd && np && pg ? BX_OK : BX_ERR_NOMEM;
    for (int g = from; g < to && s == BX_OK; g++) {
        bx_state *d = bx_state_copy(bx_state_at(pg, (size_t)g));
        bx_state *names = bx_state_list();
        if (!d || !names) {
            bx_state_free(d);
            bx_state_free(names);
            s = BX_ERR_NOMEM;
            break;
        }
        for (int i = 0; i < bx_optimizer_group_num_params(opt, g) && s == BX_OK; i++) {
            const char *nm = param_name(np, bx_optimizer_group_param(opt, g, i));
            if (!nm)
                s = bx_set_error(BX_ERR_NOT_FOUND, "%s: optimizer %d param group %d holds a parameter that is not in the model",
                              f->ops->name, opt_idx, g);
            else
                s = bx_state_append(names, bx_state_string(nm));
        }
        if (s == BX_OK) s = bx_state_set(d, "params", names);
        else bx_state_free(names);
        if (s == BX_OK) s = bx_state_append(list, d);
        else bx_state_free(d);
    }
    bx_named_tensors_free(np);
    bx_state_free(sd);
    return s;
}

/* Lightning's _store: all groups the first time, later only the new ones. */
static bx_status store(ft *f, bx_module *root, const bx_optimizer *opt, int opt_idx, int groups_before) {
    char key[24];
    snprintf(key, sizeof key, "%d", opt_idx);
    bx_state *list = bx_state_get(f->meta, key);
    int now = bx_optimizer_num_groups(opt);
    if (!list) {
        list = bx_state_list();
        if (!list) return BX_ERR_NOMEM;
        bx_status s = store_groups(f, root, opt, opt_idx, 0, now, list);
        if (s != BX_OK) {
            bx_state_free(list);
            return s;
        }
        return bx_state_set(f->meta, key, list);
    }
    if (groups_before != now) return store_groups(f, root, opt, opt_idx, groups_before < now ? groups_before : now, now, list);
    return BX_OK;
}

static bx_status f_on_train_epoch_start(void *self, bx_trainer *tr) {
    ft *f = self;
    bx_module *root;
    FT_TRY(need_root(f, tr, "on_train_epoch_start", &root));
    int64_t epoch = bx_trainer_current_epoch(tr);
    for (int i = 0; i < bx_trainer_num_optimizers(tr); i++) {
        bx_optimizer *opt = bx_trainer_optimizer(tr, i);
        int before = bx_optimizer_num_groups(opt);
        FT_TRY(f->ops->finetune_function(f->self, tr, root, epoch, opt, i));
        FT_TRY(store(f, root, opt, i, before));
    }
    return BX_OK;
}

/* Sets the recorded hyper-parameters of the restored group g that differ
 * from what the optimizer gave it (numbers, flags, betas; nulls and strings
 * are torch-only or names). */
static bx_status apply_group_keys(const ft *f, bx_optimizer *opt, int opt_idx, int g, const bx_state *d) {
    for (size_t k = 0; k < bx_state_len(d); k++) {
        const char *key = bx_state_key_at(d, k);
        const bx_state *v = bx_state_value_at(d, k);
        bx_state_type t = bx_state_typeof(v);
        if (!strcmp(key, "params") || !strcmp(key, "name") || !strcmp(key, "lr")) continue;
        if (!strcmp(key, "betas") && t == BX_STATE_LIST && bx_state_len(v) == 2) {
            double want[2] = {bx_state_get_float(bx_state_at(v, 0)), bx_state_get_float(bx_state_at(v, 1))}, have[2];
            if (bx_optimizer_get_betas(opt, g, have) == BX_OK && have[0] == want[0] && have[1] == want[1]) continue;
            if (bx_optimizer_set_betas(opt, g, want) != BX_OK) goto bad;
            continue;
        }
        if (t != BX_STATE_INT && t != BX_STATE_FLOAT && t != BX_STATE_BOOL) continue;
        double want = t == BX_STATE_BOOL ? (double)bx_state_get_bool(v) : bx_state_get_float(v), have;
        if (bx_optimizer_group_get(opt, g, key, &have) == BX_OK && have == want) continue;
        if (bx_optimizer_group_set(opt, g, key, want) != BX_OK) goto bad;
        continue;
    bad:;
        char msg[256];
        snprintf(msg, sizeof msg, "%s", bx_errmsg());
        return bx_set_error(BX_ERR_INVALID, "%s: restoring optimizer %d param group %d: %s", f->ops->name, opt_idx, g, msg);
    }
    bx_clear_error();
    return BX_OK;
}

/* Gives `opt` the groups recorded in `list` that it lacks (Lightning replaces
 * optimizer.param_groups; here the groups configure_optimizers made must be
 * the recorded first ones and the rest are added). */
static bx_status restore_groups(const ft *f, bx_module *root, bx_optimizer *opt, int opt_idx, const bx_state *list) {
    const char *who = f->ops->name;
    if (bx_state_typeof(list) != BX_STATE_LIST)
        return bx_set_error(BX_ERR_FORMAT, "%s: checkpoint internal_optimizer_metadata['%d'] is not a list", who, opt_idx);
    int have = bx_optimizer_num_groups(opt), want = (int)bx_state_len(list);
    if (want < have)
        return bx_set_error(BX_ERR_INVALID,
                         "%s: the checkpoint records %d param groups for optimizer %d but configure_optimizers made %d",
                         who, want, opt_idx, have);
    bx_named_tensors *np = bx_module_named_parameters(root);
    if (!np) return BX_ERR_NOMEM;
    bx_tensor **ps = NULL;
    bx_status s = BX_OK;
    for (int g = 0; g < want && s == BX_OK; g++) {
        const bx_state *d = bx_state_at(list, (size_t)g);
        const bx_state *names = bx_state_typeof(d) == BX_STATE_DICT ? bx_state_get(d, "params") : NULL;
        if (!names || bx_state_typeof(names) != BX_STATE_LIST) {
            s = bx_set_error(BX_ERR_FORMAT, "%s: checkpoint param group %d of optimizer %d has no 'params' list", who, g,
                          opt_idx);
            break;
        }
        int n = (int)bx_state_len(names);
        bx_free(ps);
        ps = bx_malloc((size_t)(n ? n : 1) * sizeof *ps);
        if (!ps) {
            s = BX_ERR_NOMEM;
            break;
        }
        for (int i = 0; i < n && s == BX_OK; i++) {
            const bx_state *nm = bx_state_at(names, (size_t)i);
            const char *name = bx_state_typeof(nm) == BX_STATE_STRING ? bx_state_get_string(nm) : NULL;
            ps[i] = name ? bx_named_tensors_get(np, name) : NULL;
            if (!ps[i])
                s = bx_set_error(BX_ERR_NOT_FOUND, "%s: checkpoint param group %d of optimizer %d names parameter '%s', "
                              "which the model does not have", who, g, opt_idx, name ? name : "?");
        }
        if (s != BX_OK) break;
        if (g < have) { /* made by configure_optimizers: must be the recorded group */
            bool same = bx_optimizer_group_num_params(opt, g) == n;
            for (int i = 0; same && i < n; i++) same = bx_optimizer_group_param(opt, g, i) == ps[i];
            if (!same)
                s = bx_set_error(BX_ERR_INVALID,
                              "%s: optimizer %d param group %d from configure_optimizers differs from the checkpoint's "
                              "(build the optimizer from the parameters that require grad after freeze_before_training)",
                              who, opt_idx, g);
            continue;
        }
        bx_param_group_opts go = BX_PARAM_GROUP_OPTS_INIT;
        const bx_state *lr = bx_state_get(d, "lr"), *gname = bx_state_get(d, "name");
        if (lr && (bx_state_typeof(lr) == BX_STATE_FLOAT || bx_state_typeof(lr) == BX_STATE_INT))
            go.lr = bx_state_get_float(lr);
        if (gname && bx_state_typeof(gname) == BX_STATE_STRING) go.name = bx_state_get_string(gname);
        s = bx_optimizer_add_group(opt, ps, n, &go);
        if (s == BX_OK) s = apply_group_keys(f, opt, opt_idx, g, d);
    }
    bx_free(ps);
    bx_named_tensors_free(np);
    return s;
}

static bx_status f_on_fit_start(void *self, bx_trainer *tr) {
    ft *f = self;
    bx_module *root;
    FT_TRY(need_root(f, tr, "on_fit_start", &root));
    if (f->ops->on_fit_start) FT_TRY(f->ops->on_fit_start(f->self, tr, root));
    if (!f->restarting) return BX_OK;
    /* The Trainer loads the optimizer state right after on_fit_start: give the
     * optimizers the groups recorded before the checkpoint so the counts match.
     * As in Lightning, requires_grad is left as freeze_before_training set it. */
    for (int i = 0; i < bx_trainer_num_optimizers(tr); i++) {
        char key[24];
        snprintf(key, sizeof key, "%d", i);
        const bx_state *list = bx_state_get(f->meta, key);
        if (list) FT_TRY(restore_groups(f, root, bx_trainer_optimizer(tr, i), i, list));
    }
    f->restarting = false;
    return BX_OK;
}

static bx_status f_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    ft *f = self;
    bx_state *m = bx_state_copy(f->meta);
    if (!m) return BX_ERR_NOMEM;
    FT_TRY(bx_state_set(out, "internal_optimizer_metadata", m));
    return f->ops->state_dict ? f->ops->state_dict(f->self, out) : BX_OK;
}

static bx_status f_load_state_dict(void *self, bx_trainer *tr, const bx_state *state) {
    (void)tr;
    ft *f = self;
    if (bx_state_typeof(state) != BX_STATE_DICT)
        return bx_set_error(BX_ERR_FORMAT, "%s: checkpoint state is not a dict", f->ops->name);
    const bx_state *m = bx_state_get(state, "internal_optimizer_metadata");
    /* checkpoints before Lightning #11887 hold the metadata as the whole state */
    bx_state *copy = bx_state_copy(m ? m : state);
    if (!copy) return BX_ERR_NOMEM;
    if (bx_state_typeof(copy) != BX_STATE_DICT) {
        bx_state_free(copy);
        return bx_set_error(BX_ERR_FORMAT, "%s: checkpoint internal_optimizer_metadata is not a dict", f->ops->name);
    }
    bx_state_free(f->meta);
    f->meta = copy;
    f->restarting = true;
    return f->ops->load_state_dict ? f->ops->load_state_dict(f->self, state) : BX_OK;
}

static void f_destroy(void *self) {
    ft *f = self;
    if (!f) return;
    bx_state_free(f->meta);
    if (f->ops->destroy) f->ops->destroy(f->self);
    bx_free(f);
}

bx_callback *bx_finetuning_new(const bx_finetuning_ops *ops, void *self) {
    if (!ops || !ops->name || !ops->name[0] || !ops->freeze_before_training || !ops->finetune_function) {
        bx_set_error(BX_ERR_INVALID, "BaseFinetuning: ops need a name, freeze_before_training and finetune_function");
        if (ops && ops->destroy) ops->destroy(self);
        return NULL;
    }
    ft *f = bx_calloc(sizeof *f);
    bx_state *meta = bx_state_dict();
    if (!f || !meta) {
        bx_free(f);
        bx_state_free(meta);
        if (ops->destroy) ops->destroy(self);
        bx_set_error(BX_ERR_NOMEM, "%s: out of memory", ops->name);
        return NULL;
    }
    f->ops = ops;
    f->self = self;
    f->meta = meta;
    f->cb.name = ops->name;
    f->cb.setup = f_setup;
    f->cb.on_fit_start = f_on_fit_start;
    f->cb.on_train_epoch_start = f_on_train_epoch_start;
    f->cb.state_dict = f_state_dict;
    f->cb.load_state_dict = f_load_state_dict;
    f->cb.destroy = f_destroy;
    return bx_callback_new(&f->cb, f);
}
