/* backbone_finetuning.c - BackboneFinetuning (spec/callbacks.md §7), a
 * BaseFinetuning (finetuning.c) written with the public bx_finetuning_ops
 * interface only - the way a user writes a finetuning callback.
 *
 *   freeze_before_training   freeze(backbone) with train_bn = true (Lightning
 *                            ignores the train_bn option here: BatchNorm
 *                            layers of the backbone train from the start)
 *   epoch == unfreeze        lr0 = backbone_initial_lr or group0 lr * ratio;
 *                            unfreeze_and_add_param_group(backbone, lr0)
 *   epoch >  unfreeze        last group lr = lambda(epoch+1) * previous
 *                            backbone lr, capped at group 0's (should_align)
 * State {internal_optimizer_metadata, previous_backbone_lr} (#8501 fixed:
 * a run resumed after the unfreeze epoch continues the schedule). */

#include <blixt/finetuning.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct bbf {
    bx_backbone_finetuning_opts o;
    char *backbone;              /* owned copy of o.backbone */
    double previous_backbone_lr; /* NAN = None */
    bool loaded;                 /* state restored from a checkpoint, fit not started yet */
} bbf;

/* 1.9.5's default lambda_func `multiplicative`: 2.0 for every epoch. */
static double multiplicative(void *ud, int64_t epoch) {
    (void)ud;
    (void)epoch;
    return 2.0;
}

/* The backbone submodule, or a clear error naming what the root has. */
static bx_status find_backbone(const bbf *b, bx_module *root, bx_module **out) {
    *out = bx_module_find(root, b->backbone);
    if (*out) return BX_OK;
    char kids[256] = "";
    size_t used = 0;
    for (int i = 0; i < bx_module_num_children(root) && used + 1 < sizeof kids; i++) {
        const char *nm = NULL;
        bx_module_child_at(root, i, &nm);
        int k = snprintf(kids + used, sizeof kids - used, "%s'%s'", i ? ", " : "", nm ? nm : "?");
        if (k < 0) break;
        used += (size_t)k;
    }
    return bx_set_error(BX_ERR_NOT_FOUND,
                     "BackboneFinetuning: the model should have a module `%s` (a submodule at that path of its root "
                     "module); the root's children are [%s]",
                     b->backbone, kids);
}

static bx_status bb_freeze_before_training(void *self, bx_trainer *tr, bx_module *root) {
    (void)tr;
    bbf *b = self;
    bx_module *bb;
    bx_status s = find_backbone(b, root, &bb);
    if (s != BX_OK) return s;
    return bx_finetuning_freeze(&bb, 1, true);
}

static bx_status bb_on_fit_start(void *self, bx_trainer *tr, bx_module *root) {
    (void)tr;
    bbf *b = self;
    bx_module *bb;
    bx_status s = find_backbone(b, root, &bb);
    bool resumed_unfrozen = b->loaded && !isnan(b->previous_backbone_lr);
    b->loaded = false;
    /* Lightning leaves the restored backbone frozen (what the traces record);
     * opt in to train it after resuming */
    if (s == BX_OK && resumed_unfrozen && b->o.unfreeze_on_resume) s = bx_finetuning_make_trainable(&bb, 1);
    return s;
}

/* Python's round(x, nd) printed with repr(): fixed notation with the
 * trailing zeros dropped ("0.005", "2.0"). */
static void fmt_round(char *buf, size_t n, double x, int nd) {
    double ax = fabs(x);
    if (nd >= 0 && nd <= 40 && (ax == 0.0 || (ax >= 1e-4 && ax < 1e16))) {
        snprintf(buf, n, "%.*f", nd, x);
        char *dot = strchr(buf, '.');
        if (!dot) {
            size_t l = strlen(buf);
            if (l + 2 < n) memcpy(buf + l, ".0", 3);
            return;
        }
        char *e = buf + strlen(buf) - 1;
        while (e > dot + 1 && *e == '0') *e-- = '\0';
        return;
    }
    double r = x;
    if (nd >= 0 && nd <= 300) {
        char tmp[512];
        snprintf(tmp, sizeof tmp, "%.*e", nd > 17 ? 17 : nd, x);
        r = strtod(tmp, NULL);
    }
    for (int p = 1; p <= 17; p++) {
        snprintf(buf, n, "%.*g", p, r);
        if (strtod(buf, NULL) == r) return;
    }
}

static void log_lrs(const bbf *b, double current_lr, double backbone_lr) {
    if (!b->o.verbose) return;
    char a[64], c[64];
    fmt_round(a, sizeof a, current_lr, b->o.rounding);
    fmt_round(c, sizeof c, backbone_lr, b->o.rounding);
    bx_logf(BX_LOG_INFO, "Current lr: %s, Backbone lr: %s", a, c);
}

static bx_status bb_finetune_function(void *self, bx_trainer *tr, bx_module *root, int64_t epoch, bx_optimizer *opt,
                                      int opt_idx) {
    (void)tr;
    bbf *b = self;
    int64_t at = b->o.unfreeze_backbone_at_epoch;
    if (epoch < at) return BX_OK;
    double current_lr = bx_optimizer_get_lr(opt, 0);
    if (isnan(current_lr))
        return bx_set_error(BX_ERR_INVALID, "BackboneFinetuning: optimizer %d has no param group", opt_idx);
    if (epoch == at) {
        bx_module *bb;
        bx_status s = find_backbone(b, root, &bb);
        if (s != BX_OK) return s;
        double lr0 = isnan(b->o.backbone_initial_lr) ? current_lr * b->o.backbone_initial_ratio_lr
                                                     : b->o.backbone_initial_lr;
        b->previous_backbone_lr = lr0;
        s = bx_finetuning_unfreeze_and_add_param_group(&bb, 1, opt, lr0, b->o.initial_denom_lr, b->o.train_bn);
        if (s != BX_OK) return s;
        log_lrs(b, current_lr, lr0);
        return BX_OK;
    }
    if (isnan(b->previous_backbone_lr))
        return bx_set_error(BX_ERR_STATE,
                         "BackboneFinetuning: epoch %lld is past unfreeze_backbone_at_epoch=%lld but the backbone was "
                         "never unfrozen (resumed from a checkpoint without previous_backbone_lr?)",
                         (long long)epoch, (long long)at);
    bx_backbone_lambda_fn fn = b->o.lambda_func ? b->o.lambda_func : multiplicative;
    double next = fn(b->o.lambda_ud, epoch + 1) * b->previous_backbone_lr;
    if (b->o.should_align && next > current_lr) next = current_lr;
    /* the last group is taken to be the backbone's, as in Lightning */
    bx_status s = bx_optimizer_set_lr(opt, bx_optimizer_num_groups(opt) - 1, next);
    if (s != BX_OK) return s;
    b->previous_backbone_lr = next;
    log_lrs(b, current_lr, next);
    return BX_OK;
}

static bx_status bb_state_dict(void *self, bx_state *out) {
    const bbf *b = self;
    if (isnan(b->previous_backbone_lr)) return bx_state_set(out, "previous_backbone_lr", bx_state_null());
    return bx_state_set_float(out, "previous_backbone_lr", b->previous_backbone_lr);
}

static bx_status bb_load_state_dict(void *self, const bx_state *state) {
    bbf *b = self;
    const bx_state *v = bx_state_get(state, "previous_backbone_lr");
    if (!v) return bx_set_error(BX_ERR_FORMAT, "BackboneFinetuning: checkpoint state has no 'previous_backbone_lr'");
    bx_state_type t = bx_state_typeof(v);
    if (t == BX_STATE_NULL) b->previous_backbone_lr = NAN;
    else if (t == BX_STATE_FLOAT || t == BX_STATE_INT) b->previous_backbone_lr = bx_state_get_float(v);
    else return bx_set_error(BX_ERR_FORMAT, "BackboneFinetuning: checkpoint 'previous_backbone_lr' is not a number");
    b->loaded = true;
    return BX_OK;
}

static void bb_destroy(void *self) {
    bbf *b = self;
    if (!b) return;
    bx_free(b->backbone);
    bx_free(b);
}

static const bx_finetuning_ops BACKBONE_OPS = {
    .name = "BackboneFinetuning",
    .freeze_before_training = bb_freeze_before_training,
    .finetune_function = bb_finetune_function,
    .on_fit_start = bb_on_fit_start,
    .state_dict = bb_state_dict,
    .load_state_dict = bb_load_state_dict,
    .destroy = bb_destroy,
};

bx_callback *bx_backbone_finetuning_new(const bx_backbone_finetuning_opts *o) {
    bx_backbone_finetuning_opts d = BX_BACKBONE_FINETUNING_OPTS_INIT;
    if (o) d = *o;
    const char *bad = NULL;
    if (d.unfreeze_backbone_at_epoch < 0) bad = "unfreeze_backbone_at_epoch must be >= 0";
    else if (!(d.backbone_initial_ratio_lr >= 0.0)) bad = "backbone_initial_ratio_lr must be >= 0";
    else if (!isnan(d.backbone_initial_lr) && !(d.backbone_initial_lr >= 0.0)) bad = "backbone_initial_lr must be >= 0 or NAN (None)";
    else if (!(d.initial_denom_lr > 0.0)) bad = "initial_denom_lr must be > 0";
    else if (!d.backbone || !d.backbone[0]) bad = "backbone (the submodule path) must be a non-empty string";
    if (bad) {
        bx_set_error(BX_ERR_INVALID, "BackboneFinetuning: %s", bad);
        return NULL;
    }
    bbf *b = bx_calloc(sizeof *b);
    char *path = bx_strdup(d.backbone);
    if (!b || !path) {
        bx_free(b);
        bx_free(path);
        bx_set_error(BX_ERR_NOMEM, "BackboneFinetuning: out of memory");
        return NULL;
    }
    b->o = d;
    b->backbone = path;
    b->o.backbone = path;
    b->previous_backbone_lr = NAN;
    return bx_finetuning_new(&BACKBONE_OPS, b);
}
