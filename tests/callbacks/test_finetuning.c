/* BaseFinetuning helpers and BackboneFinetuning: the spec's pins
 * (spec/callbacks.md §6, §7), identity (not value) membership, frozen
 * BatchNorm running statistics, the backbone lr schedule, resume after the
 * unfreeze epoch, a user-written finetuning callback, errors. */
#include "test_util.h"

#include <blixt/checkpoint.h>
#include <blixt/finetuning.h>
#include <unistd.h>

/* ---- captured log lines ------------------------------------------------------------- */
typedef struct logcap {
    int warnings, infos;
    char last_warning[512];
    char infos_text[2048];
} logcap;

static void cap_log(void *ud, bx_log_level level, const char *msg) {
    logcap *c = ud;
    if (level == BX_LOG_WARNING) {
        c->warnings++;
        snprintf(c->last_warning, sizeof c->last_warning, "%s", msg);
    } else if (level == BX_LOG_INFO) {
        c->infos++;
        strncat(c->infos_text, msg, sizeof c->infos_text - strlen(c->infos_text) - 2);
        strcat(c->infos_text, "\n");
    }
}

/* ---- a root module: children run in order (backbone, then head) ------------------------ */
static bx_tensor *chain_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    for (int i = 0; i < bx_module_num_children(m); i++) x = bx_module_forward(bx_module_child_at(m, i, NULL), st, x);
    return x;
}
static const bx_module_type CHAIN = {.name = "Chain", .forward = chain_forward};

static bool in_group(const bx_optimizer *o, int g, const bx_tensor *p) {
    for (int i = 0; i < bx_optimizer_group_num_params(o, g); i++)
        if (bx_optimizer_group_param(o, g, i) == p) return true;
    return false;
}

/* Spec pin: backbone = Sequential(5 x Linear(32,32,bias=False), BatchNorm1d(32)). */
static void test_unfreeze_and_add_param_group(void) {
    logcap cap = {0};
    bx_set_log_handler(cap_log, &cap);
    bx_rng r;
    bx_rng_init(&r, 1);
    bx_module *root = bx_module_new(&CHAIN, NULL);
    bx_module *bb = bx_nn_sequential();
    for (int i = 0; i < 5; i++) CHECK_OK(bx_sequential_append(bb, bx_nn_linear(32, 32, false, &r)));
    CHECK_OK(bx_sequential_append(bb, bx_nn_batchnorm1d(32, NULL)));
    CHECK_OK(bx_module_add_child(root, "backbone", bb));
    bx_module *l[5];
    for (int i = 0; i < 5; i++) l[i] = bx_module_child_at(bb, i, NULL);
    bx_module *bn = bx_module_child_at(bb, 5, NULL);

    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = 0.01;
    bx_optimizer *opt = bx_sgd_new(&so);
    bx_tensor *w0 = bx_module_param(l[0], "weight");
    CHECK_OK(bx_optimizer_add_group(opt, &w0, 1, NULL));

    /* backbone[0] is already there: warning, nothing added */
    CHECK_OK(bx_finetuning_unfreeze_and_add_param_group(&l[0], 1, opt, NAN, 10.0, true));
    CHECK_EQ_INT(cap.warnings, 1);
    CHECK(strstr(cap.last_warning, "already exist within another group") != NULL);
    CHECK_EQ_INT(bx_optimizer_num_groups(opt), 1);
    CHECK_NEAR(bx_optimizer_get_lr(opt, 0), 0.01, 1e-15);

    /* backbone[1] frozen: made trainable, new group lr = 0.01 / 10 */
    bx_module_param(l[1], "weight")->requires_grad = false;
    CHECK_OK(bx_finetuning_unfreeze_and_add_param_group(&l[1], 1, opt, NAN, 10.0, true));
    CHECK_EQ_INT(bx_optimizer_num_groups(opt), 2);
    CHECK_NEAR(bx_optimizer_get_lr(opt, 1), 0.001, 1e-15);
    CHECK(bx_optimizer_group_param(opt, 1, 0) == bx_module_param(l[1], "weight"));
    CHECK(bx_module_param(l[1], "weight")->requires_grad);
    CHECK_EQ_INT(cap.warnings, 1);

    /* whole model, lr=100, train_bn=False: the 3 remaining Linear weights */
    CHECK_OK(bx_finetuning_unfreeze_and_add_param_group(&root, 1, opt, 100.0, 10.0, false));
    CHECK_EQ_INT(cap.warnings, 2);
    CHECK_EQ_INT(bx_optimizer_num_groups(opt), 3);
    CHECK_NEAR(bx_optimizer_get_lr(opt, 2), 100.0, 1e-15);
    CHECK_EQ_INT(bx_optimizer_group_num_params(opt, 2), 3);
    for (int i = 0; i < 3; i++) CHECK(bx_optimizer_group_param(opt, 2, i) == bx_module_param(l[2 + i], "weight"));
    CHECK(!in_group(opt, 2, bx_module_param(bn, "weight")));
    /* make_trainable ran over everything, BatchNorm included */
    CHECK(bx_module_param(bn, "weight")->requires_grad && bx_module_param(bn, "bias")->requires_grad);

    /* errors */
    CHECK_ERR(bx_finetuning_unfreeze_and_add_param_group(&root, 1, NULL, NAN, 10.0, true), BX_ERR_INVALID,
              "NULL optimizer");
    bx_module *none = NULL;
    CHECK_ERR(bx_finetuning_unfreeze_and_add_param_group(&none, 1, opt, NAN, 10.0, true), BX_ERR_INVALID,
              "module 0 is NULL");
    bx_optimizer *empty = bx_sgd_new(&so);
    CHECK_ERR(bx_finetuning_unfreeze_and_add_param_group(&root, 1, empty, NAN, 10.0, true), BX_ERR_INVALID,
              "no param group");
    bx_optimizer_free(empty);
    bx_optimizer_free(opt);
    bx_module_free(root);
    bx_set_log_handler(NULL, NULL);
}

/* Lightning compares by value (torch.equal): two zero-initialised layers
 * would look "already present". Blixt compares identity. */
static void test_identity_not_value(void) {
    logcap cap = {0};
    bx_set_log_handler(cap_log, &cap);
    bx_module *a = bx_nn_linear(3, 2, true, NULL), *b = bx_nn_linear(3, 2, true, NULL); /* all zeros */
    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = 0.1;
    bx_optimizer *opt = bx_sgd_new(&so);
    bx_tensor *pa[2] = {bx_module_param(a, "weight"), bx_module_param(a, "bias")};
    CHECK_OK(bx_optimizer_add_group(opt, pa, 2, NULL));
    bx_tensor *pb[2] = {bx_module_param(b, "weight"), bx_module_param(b, "bias")};
    bx_param_array *f = bx_finetuning_filter_on_optimizer(opt, pb, 2);
    CHECK(f && f->n == 2);
    bx_param_array_free(f);
    CHECK_EQ_INT(cap.warnings, 0);
    CHECK_OK(bx_finetuning_unfreeze_and_add_param_group(&b, 1, opt, NAN, 10.0, true));
    CHECK_EQ_INT(bx_optimizer_num_groups(opt), 2);
    CHECK_EQ_INT(bx_optimizer_group_num_params(opt, 1), 2);
    CHECK(in_group(opt, 1, pb[1]));
    CHECK_NEAR(bx_optimizer_get_lr(opt, 1), 0.01, 1e-15);
    /* the same tensors again are dropped with a warning */
    f = bx_finetuning_filter_on_optimizer(opt, pa, 2);
    CHECK(f && f->n == 0);
    bx_param_array_free(f);
    CHECK_EQ_INT(cap.warnings, 1);
    bx_optimizer_free(opt);
    bx_module_free(a);
    bx_module_free(b);
    bx_set_log_handler(NULL, NULL);
}

/* flatten_modules keeps leaves and parents with own parameters; filter_params
 * picks by requires_grad and skips BatchNorm without train_bn. */
static void test_flatten_and_filter(void) {
    bx_rng r;
    bx_rng_init(&r, 2);
    bx_module *root = bx_module_new(&CHAIN, NULL);
    int64_t one = 1;
    CHECK_OK(bx_module_add_param(root, "scale", bx_tensor_zeros(BX_F32, 1, &one)));
    bx_module *seq = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(seq, bx_nn_linear(2, 2, true, &r)));
    CHECK_OK(bx_sequential_append(seq, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(seq, bx_nn_batchnorm1d(2, NULL)));
    CHECK_OK(bx_module_add_child(root, "seq", seq));
    bx_module_array *fl = bx_finetuning_flatten_modules(&root, 1);
    CHECK(fl && fl->n == 4); /* root (own param), Linear, ReLU, BatchNorm; not the Sequential */
    if (fl && fl->n == 4) {
        CHECK(fl->items[0] == root);
        CHECK(fl->items[1] == bx_module_child_at(seq, 0, NULL));
        CHECK(fl->items[3] == bx_module_child_at(seq, 2, NULL));
    }
    bx_module_array_free(fl);
    /* the same tree twice: each module once */
    bx_module *two[2] = {root, seq};
    fl = bx_finetuning_flatten_modules(two, 2);
    CHECK(fl && fl->n == 4);
    bx_module_array_free(fl);

    bx_param_array *ps = bx_finetuning_filter_params(&root, 1, true, true);
    CHECK(ps && ps->n == 5); /* scale, linear w/b, bn w/b */
    bx_param_array_free(ps);
    ps = bx_finetuning_filter_params(&root, 1, false, true);
    CHECK(ps && ps->n == 3);
    bx_param_array_free(ps);
    CHECK_OK(bx_finetuning_freeze(&root, 1, true)); /* BatchNorm stays trainable */
    ps = bx_finetuning_filter_params(&root, 1, true, false);
    CHECK(ps && ps->n == 3);
    bx_param_array_free(ps);
    ps = bx_finetuning_filter_params(&root, 1, true, true);
    CHECK(ps && ps->n == 2 && ps->items[0] == bx_module_param(bx_module_child_at(seq, 2, NULL), "weight"));
    bx_param_array_free(ps);
    bx_module *bad[1] = {NULL};
    CHECK(bx_finetuning_flatten_modules(bad, 1) == NULL);
    CHECK(strstr(bx_errmsg(), "module 0 is NULL") != NULL);
    CHECK_ERR(bx_finetuning_freeze(bad, 1, true), BX_ERR_INVALID, "freeze");
    bx_module_free(root);
}

/* A frozen BatchNorm keeps its running statistics; make_trainable resumes them. */
static void test_frozen_batchnorm(void) {
    bx_module *bn = bx_nn_batchnorm1d(2, NULL);
    bx_step *st = bx_step_new();
    int64_t sh[2] = {4, 2};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, sh);
    for (int i = 0; i < 8; i++) bx_set(x, i, 1.0 + i);
    CHECK_OK(bx_finetuning_freeze(&bn, 1, false));
    CHECK(!bx_module_param(bn, "weight")->requires_grad);
    CHECK(!bx_batchnorm_track_running_stats(bn));
    bx_module_train(bn, true);
    bx_step_set_training(st, true);
    bx_tensor *y = bx_module_forward(bn, st, x);
    CHECK(!bx_is_poison(y));
    CHECK(bx_get(bx_module_buffer(bn, "running_mean"), 0) == 0.0);
    CHECK(bx_get(bx_module_buffer(bn, "running_var"), 1) == 1.0);
    CHECK(bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0) == 0.0);
    bx_step_reset(st);
    CHECK_OK(bx_finetuning_make_trainable(&bn, 1));
    CHECK(bx_module_param(bn, "bias")->requires_grad);
    CHECK(bx_batchnorm_track_running_stats(bn));
    y = bx_module_forward(bn, st, x);
    CHECK(!bx_is_poison(y));
    CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_mean"), 0), 0.1 * 4.0, 1e-6); /* mean of 1,3,5,7 */
    CHECK(bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0) == 1.0);
    /* freeze with train_bn keeps a BatchNorm trainable and tracking */
    CHECK_OK(bx_finetuning_freeze(&bn, 1, true));
    CHECK(bx_module_param(bn, "weight")->requires_grad && bx_batchnorm_track_running_stats(bn));
    bx_step_free(st);
    bx_tensor_free(x);
    bx_module_free(bn);
}

/* ---- a Trainer run with backbone + head ----------------------------------------------- */
typedef struct fmodel {
    bx_module *root;
    double step_gamma; /* StepLR(step_size=1, gamma) when > 0 */
    double lr;
    bool adam;       /* Adam instead of SGD */
    bool all_params; /* the optimizer takes every parameter, frozen or not */
} fmodel;

static bx_module *fm_module(void *self) { return ((fmodel *)self)->root; }

static bx_status fm_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    fmodel *m = self;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = m->lr;
    bx_adam_opts ao = BX_ADAM_OPTS_INIT;
    ao.lr = m->lr;
    bx_optimizer *opt = m->adam ? bx_adam_new(&ao) : bx_sgd_new(&o);
    bx_named_tensors *np = bx_module_named_parameters(m->root);
    bx_tensor *ps[16];
    int n = 0;
    for (int i = 0; i < np->n && n < 16; i++)
        if (np->tensors[i]->requires_grad || m->all_params) ps[n++] = np->tensors[i];
    bx_named_tensors_free(np);
    bx_status s = bx_optimizer_add_group(opt, ps, n, NULL);
    if (s == BX_OK && m->step_gamma > 0) {
        bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
        so.step_size = 1;
        so.gamma = m->step_gamma;
        bx_sched_config sc = BX_SCHED_CONFIG_INIT;
        sc.scheduler = bx_step_lr_new(opt, &so);
        s = bx_optim_config_add_optimizer(cfg, opt);
        return s ? s : bx_optim_config_add_scheduler(cfg, &sc);
    }
    return s ? s : bx_optim_config_add_optimizer(cfg, opt);
}

static bx_status fm_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    fmodel *m = self;
    return bx_step_set_loss(st, bx_mse_loss(st, bx_module_forward(m->root, st, b->x), b->y, BX_REDUCTION_MEAN));
}

static const bx_model_ops FM_OPS = {.name = "Finetune", .module = fm_module, .configure_optimizers = fm_opt,
                                    .training_step = fm_train};

static bx_module *fm_build(bool with_backbone) {
    bx_rng r;
    bx_rng_init(&r, 3);
    bx_module *root = bx_module_new(&CHAIN, NULL);
    bx_module *bb = bx_nn_sequential();
    bx_sequential_append(bb, bx_nn_linear(2, 3, true, &r));
    bx_sequential_append(bb, bx_nn_batchnorm1d(3, NULL));
    bx_module_add_child(root, with_backbone ? "backbone" : "features", bb);
    bx_module_add_child(root, "head", bx_nn_linear(3, 1, true, &r));
    return root;
}

/* Records every optimizer's lrs at on_train_epoch_start (placed after the
 * finetuning callback, so it sees what it set). */
typedef struct lrrec {
    int n;
    int groups[16];
    double head[16], backbone[16];
    bool bb_requires_grad[16];
    bx_module *root;
} lrrec;

static bx_status lr_epoch_start(void *self, bx_trainer *tr) {
    lrrec *r = self;
    bx_optimizer *o = bx_trainer_optimizer(tr, 0);
    if (r->n < 16) {
        r->groups[r->n] = bx_optimizer_num_groups(o);
        r->head[r->n] = bx_optimizer_get_lr(o, 0);
        r->backbone[r->n] = bx_optimizer_get_lr(o, bx_optimizer_num_groups(o) - 1);
        bx_module *lin = bx_module_find(r->root, "backbone.0");
        r->bb_requires_grad[r->n] = lin && bx_module_param(lin, "weight")->requires_grad;
        r->n++;
    }
    return BX_OK;
}
static const bx_callback_ops LRREC_OPS = {.name = "LrRec", .on_train_epoch_start = lr_epoch_start};

static bx_dataset *ds(void) {
    int64_t xs[2] = {4, 2}, ys[2] = {4, 1};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < 8; i++) bx_set(x, i, ((i * 7) % 11 - 5) / 5.0);
    for (int i = 0; i < 4; i++) bx_set(y, i, 0.3 * i - 0.2);
    return bx_dataset_from_tensors(x, y, true);
}

/* One fit of max_epochs with a BackboneFinetuning built from `bo`; lrs in *rec. */
static bx_status fit_once(fmodel *m, const bx_backbone_finetuning_opts *bo, int64_t max_epochs, lrrec *rec,
                          const char *ckpt_in, const char *ckpt_out) {
    memset(rec, 0, sizeof *rec);
    rec->root = m->root;
    bx_callback *cbs[2] = {bx_backbone_finetuning_new(bo), bx_callback_new(&LRREC_OPS, rec)};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = max_epochs;
    o.num_sanity_val_steps = 0;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.enable_model_summary = false;
    o.logger_default = false;
    o.callbacks = cbs;
    o.num_callbacks = 2;
    bx_trainer *tr = bx_trainer_new(&o);
    bx_dataset *d = ds();
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ld = bx_loader_new(d, &lo);
    bx_model model = {&FM_OPS, m};
    bx_status s = tr ? bx_trainer_fit(tr, &model, ld, NULL, ckpt_in) : BX_ERR_INVALID;
    if (s == BX_OK && ckpt_out) s = bx_trainer_save_checkpoint(tr, ckpt_out, false);
    bx_trainer_free(tr);
    bx_loader_free(ld);
    bx_dataset_free(d);
    return s;
}

/* Spec pin: SGD lr 0.1 + StepLR(1, 0.7), unfreeze at 3, 8 epochs. */
static void test_backbone_schedule(void) {
    logcap cap = {0};
    bx_set_log_handler(cap_log, &cap);
    for (int align = 1; align >= 0; align--) {
        fmodel m = {fm_build(true), 0.7, 0.1, false, false};
        bx_backbone_finetuning_opts bo = BX_BACKBONE_FINETUNING_OPTS_INIT;
        bo.unfreeze_backbone_at_epoch = 3;
        bo.should_align = align;
        lrrec r;
        CHECK_OK(fit_once(&m, &bo, 8, &r, NULL, NULL));
        CHECK_EQ_INT(r.n, 8);
        for (int e = 0; e < r.n; e++) {
            double head = 0.1 * pow(0.7, e);
            CHECK_NEAR(r.head[e], head, 1e-12);
            CHECK_EQ_INT(r.groups[e], e < 3 ? 1 : 2);
            CHECK(r.bb_requires_grad[e] == (e >= 3));
            if (e < 3) continue;
            double bb = 0.1 * pow(0.7, 3) * 0.1 * pow(2.0, e - 3);
            if (align && bb > head) bb = head;
            CHECK_NEAR(r.backbone[e], bb, 1e-12);
            if (align) CHECK(e < 6 ? r.backbone[e] < r.head[e] : r.backbone[e] == r.head[e]);
        }
        bx_module_free(m.root);
    }
    bx_set_log_handler(NULL, NULL);
}

/* Resume after the unfreeze epoch: the group is back before the optimizer
 * state loads, and the schedule continues from previous_backbone_lr. */
static void test_resume_after_unfreeze(bool adam) {
    logcap cap = {0};
    bx_set_log_handler(cap_log, &cap);
    char path[128];
    snprintf(path, sizeof path, "/tmp/blixt_test_finetuning_%d.ckpt", (int)getpid());
    bx_backbone_finetuning_opts bo = BX_BACKBONE_FINETUNING_OPTS_INIT;
    bo.unfreeze_backbone_at_epoch = 1;
    fmodel full = {fm_build(true), 0.0, 0.1, adam, false};
    lrrec rf;
    CHECK_OK(fit_once(&full, &bo, 4, &rf, NULL, NULL));
    fmodel a = {fm_build(true), 0.0, 0.1, adam, false};
    lrrec ra;
    CHECK_OK(fit_once(&a, &bo, 2, &ra, NULL, path));
    CHECK_EQ_INT(ra.n, 2);
    CHECK_NEAR(ra.backbone[1], 0.01, 1e-15);

    /* the checkpoint's state */
    bx_state *ck = NULL;
    CHECK_OK(bx_checkpoint_read(path, &ck));
    const bx_state *st = ck ? bx_state_get(bx_state_get(ck, "callbacks"), "BackboneFinetuning") : NULL;
    CHECK(st != NULL);
    if (st) {
        CHECK_NEAR(bx_state_get_float(bx_state_get(st, "previous_backbone_lr")), 0.01, 1e-15);
        const bx_state *groups = bx_state_get(bx_state_get(st, "internal_optimizer_metadata"), "0");
        CHECK(groups && bx_state_len(groups) == 2);
        if (groups && bx_state_len(groups) == 2) {
            const bx_state *g1 = bx_state_at(groups, 1);
            CHECK_NEAR(bx_state_get_float(bx_state_get(g1, "lr")), 0.01, 1e-15);
            const bx_state *names = bx_state_get(g1, "params");
            /* the Linear only: the BatchNorm was in group 0 already (warning) */
            CHECK(names && bx_state_len(names) == 2);
            if (names && bx_state_len(names) == 2) {
                CHECK(!strcmp(bx_state_get_string(bx_state_at(names, 0)), "backbone.0.weight"));
                CHECK(!strcmp(bx_state_get_string(bx_state_at(names, 1)), "backbone.0.bias"));
            }
            CHECK(!strcmp(bx_state_get_string(bx_state_at(bx_state_get(bx_state_at(groups, 0), "params"), 0)),
                          "backbone.1.weight")); /* BatchNorm trains from the start (train_bn) */
        }
    }
    bx_state_free(ck);

    fmodel b = {fm_build(true), 0.0, 0.1, adam, false};
    lrrec rb;
    CHECK_OK(fit_once(&b, &bo, 4, &rb, path, NULL));
    CHECK_EQ_INT(rb.n, 2);
    for (int i = 0; i < rb.n && i < 2; i++) {
        CHECK_EQ_INT(rb.groups[i], 2);
        CHECK_NEAR(rb.backbone[i], rf.backbone[2 + i], 1e-15); /* 0.02, 0.04 */
        CHECK_NEAR(rb.head[i], rf.head[2 + i], 1e-15);
        /* Lightning 1.9.5 (the conformance trace): the restored backbone keeps
         * requires_grad = false from freeze_before_training */
        CHECK(!rb.bb_requires_grad[i]);
    }
    CHECK_NEAR(rb.backbone[1], 0.04, 1e-15);
    CHECK_EQ_INT(cap.warnings, 2); /* backbone BatchNorm already in group 0, once per unfreezing run */

    /* opt-in: the resumed backbone trains again; then the run equals the
     * uninterrupted one */
    bo.unfreeze_on_resume = true;
    fmodel e = {fm_build(true), 0.0, 0.1, adam, false};
    CHECK_OK(fit_once(&e, &bo, 4, &rb, path, NULL));
    CHECK(rb.bb_requires_grad[0] && rb.bb_requires_grad[1]);
    CHECK_NEAR(rb.backbone[1], 0.04, 1e-15);
    bx_named_tensors *pf = bx_module_named_parameters(full.root), *pe = bx_module_named_parameters(e.root);
    CHECK(pf && pe && pf->n == pe->n);
    for (int i = 0; pf && pe && i < pf->n && i < pe->n; i++) {
        CHECK(!strcmp(pf->names[i], pe->names[i]));
        for (int64_t k = 0; k < bx_numel(pf->tensors[i]); k++)
            CHECK(bx_get(pf->tensors[i], k) == bx_get(pe->tensors[i], k));
    }
    bx_named_tensors_free(pf);
    bx_named_tensors_free(pe);
    bx_module_free(e.root);
    bo.unfreeze_on_resume = false;

    /* an optimizer whose first group is not the recorded one: clear error */
    fmodel c = {fm_build(true), 0.0, 0.1, adam, true};
    CHECK_ERR(fit_once(&c, &bo, 4, &rb, path, NULL), BX_ERR_INVALID,
              "optimizer 0 param group 0 from configure_optimizers differs from the checkpoint's");
    bx_module_free(c.root);
    bx_set_log_handler(NULL, NULL);
    unlink(path);
    bx_module_free(full.root);
    bx_module_free(a.root);
    bx_module_free(b.root);
}

static void test_backbone_errors(void) {
    fmodel m = {fm_build(false), 0.0, 0.1, false, false};
    bx_backbone_finetuning_opts bo = BX_BACKBONE_FINETUNING_OPTS_INIT;
    lrrec r;
    CHECK_ERR(fit_once(&m, &bo, 1, &r, NULL, NULL), BX_ERR_NOT_FOUND, "should have a module `backbone`");
    CHECK(strstr(bx_errmsg(), "'features', 'head'") != NULL);
    bo.backbone = "features";
    CHECK_OK(fit_once(&m, &bo, 1, &r, NULL, NULL));
    bx_module_free(m.root);

    bo = (bx_backbone_finetuning_opts)BX_BACKBONE_FINETUNING_OPTS_INIT;
    bo.unfreeze_backbone_at_epoch = -1;
    CHECK(bx_backbone_finetuning_new(&bo) == NULL);
    CHECK(strstr(bx_errmsg(), "unfreeze_backbone_at_epoch") != NULL);
    bo = (bx_backbone_finetuning_opts)BX_BACKBONE_FINETUNING_OPTS_INIT;
    bo.initial_denom_lr = 0;
    CHECK(bx_backbone_finetuning_new(&bo) == NULL);
    bx_callback *cb = bx_backbone_finetuning_new(NULL);
    CHECK(cb && !strcmp(bx_callback_name(cb), "BackboneFinetuning"));
    char key[64];
    bx_callback_state_key(cb, key, sizeof key);
    CHECK(!strcmp(key, "BackboneFinetuning"));
    bx_callback_free(cb);
    bx_finetuning_ops bad = {0};
    CHECK(bx_finetuning_new(&bad, NULL) == NULL);
}

/* verbose lines, a custom lambda and backbone_initial_lr */
static double halves(void *ud, int64_t epoch) {
    int *calls = ud;
    (*calls)++;
    return epoch >= 3 ? 0.5 : 1.0;
}

static void test_backbone_options(void) {
    logcap cap = {0};
    bx_set_log_handler(cap_log, &cap);
    fmodel m = {fm_build(true), 0.0, 0.1, false, false};
    bx_backbone_finetuning_opts bo = BX_BACKBONE_FINETUNING_OPTS_INIT;
    int calls = 0;
    bo.unfreeze_backbone_at_epoch = 1;
    bo.backbone_initial_lr = 0.04;
    bo.lambda_func = halves;
    bo.lambda_ud = &calls;
    bo.verbose = true;
    bo.rounding = 3;
    lrrec r;
    CHECK_OK(fit_once(&m, &bo, 4, &r, NULL, NULL));
    CHECK_EQ_INT(calls, 2);                  /* epochs 2 and 3: lambda(3), lambda(4) */
    CHECK_NEAR(r.backbone[1], 0.04, 1e-15);  /* backbone_initial_lr */
    CHECK_NEAR(r.backbone[2], 0.02, 1e-15);  /* lambda(3) = 0.5 */
    CHECK_NEAR(r.backbone[3], 0.01, 1e-15);
    CHECK(strstr(cap.infos_text, "Current lr: 0.1, Backbone lr: 0.04\n") != NULL);
    CHECK(strstr(cap.infos_text, "Current lr: 0.1, Backbone lr: 0.01\n") != NULL);
    bx_module_free(m.root);
    bx_set_log_handler(NULL, NULL);
}

/* A user-written finetuning callback through bx_finetuning_ops: freeze the
 * head, unfreeze it at epoch 2 with lr = group 0 lr / initial_denom_lr. */
typedef struct mine {
    int finetune_calls, state_loads;
} mine;
static bx_status mine_freeze(void *self, bx_trainer *tr, bx_module *root) {
    (void)self; (void)tr;
    bx_module *head = bx_module_child(root, "head");
    return bx_finetuning_freeze(&head, 1, true);
}
static bx_status mine_finetune(void *self, bx_trainer *tr, bx_module *root, int64_t epoch, bx_optimizer *opt,
                               int opt_idx) {
    (void)tr; (void)opt_idx;
    mine *u = self;
    u->finetune_calls++;
    if (epoch != 2) return BX_OK;
    bx_module *head = bx_module_child(root, "head");
    return bx_finetuning_unfreeze_and_add_param_group(&head, 1, opt, NAN, 4.0, true);
}
static bx_status mine_state(void *self, bx_state *out) {
    return bx_state_set_int(out, "calls", ((mine *)self)->finetune_calls);
}
static const bx_finetuning_ops MINE = {.name = "HeadLater", .freeze_before_training = mine_freeze,
                                       .finetune_function = mine_finetune, .state_dict = mine_state};

static void test_user_callback(void) {
    fmodel m = {fm_build(true), 0.0, 0.2, false, false};
    mine u = {0};
    lrrec r = {0};
    r.root = m.root;
    bx_callback *cbs[2] = {bx_finetuning_new(&MINE, &u), bx_callback_new(&LRREC_OPS, &r)};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 3;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.enable_model_summary = false;
    o.logger_default = false;
    o.callbacks = cbs;
    o.num_callbacks = 2;
    bx_trainer *tr = bx_trainer_new(&o);
    bx_dataset *d = ds();
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ld = bx_loader_new(d, &lo);
    bx_model model = {&FM_OPS, &m};
    CHECK_OK(bx_trainer_fit(tr, &model, ld, NULL, NULL));
    CHECK_EQ_INT(u.finetune_calls, 3);
    CHECK_EQ_INT(r.groups[1], 1);
    CHECK_EQ_INT(r.groups[2], 2);
    CHECK_NEAR(r.backbone[2], 0.05, 1e-15);
    CHECK(bx_module_param(bx_module_child(m.root, "head"), "weight")->requires_grad);
    bx_callback *cb = bx_trainer_callback(tr, 0);
    CHECK(!strcmp(bx_callback_name(cb), "HeadLater"));
    bx_state *st = bx_state_dict();
    CHECK_OK(bx_callback_get_ops(cb)->state_dict(bx_callback_self(cb), tr, st));
    CHECK(!strcmp(bx_state_key_at(st, 0), "internal_optimizer_metadata"));
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(st, "calls")), 3);
    CHECK_EQ_INT(bx_state_len(bx_state_get(bx_state_get(st, "internal_optimizer_metadata"), "0")), 2);
    bx_state_free(st);
    bx_trainer_free(tr);
    bx_loader_free(ld);
    bx_dataset_free(d);
    bx_module_free(m.root);
}

int main(void) {
    test_unfreeze_and_add_param_group();
    test_identity_not_value();
    test_flatten_and_filter();
    test_frozen_batchnorm();
    test_backbone_schedule();
    test_resume_after_unfreeze(false);
    test_resume_after_unfreeze(true);
    test_backbone_errors();
    test_backbone_options();
    test_user_callback();
    return tu_finish("test_finetuning");
}
