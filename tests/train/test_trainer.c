/* Trainer tests: hook order, accumulation, limits/val intervals, should_stop
 * vs min_epochs, logging aggregation, steady-state allocation, resume. */
#include "test_util.h"

#include <blixt/callbacks.h>
#include <blixt/checkpoint.h>
#include <blixt/ops.h>
#include <blixt/trainer.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <math.h>

/* ---- tiny model ------------------------------------------------------------------ */
typedef struct tmodel {
    bx_module *lin;
    double momentum;
    double losses[64];
    int nloss;
    bool log_epoch;
} tmodel;

static bx_module *tm_module(void *self) { return ((tmodel *)self)->lin; }

static bx_status tm_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    tmodel *m = self;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    o.momentum = m->momentum;
    bx_optimizer *opt = bx_sgd_new(&o);
    bx_tensor *ps[2] = {bx_module_param(m->lin, "weight"), bx_module_param(m->lin, "bias")};
    bx_status s = bx_optimizer_add_group(opt, ps, 2, NULL);
    return s ? s : bx_optim_config_add_optimizer(cfg, opt);
}

static bx_status tm_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    tmodel *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->lin, st, b->x), b->y, BX_REDUCTION_MEAN);
    if (!bx_is_poison(loss) && m->nloss < 64) m->losses[m->nloss++] = bx_get(loss, 0);
    if (m->log_epoch) {
        bx_log_opts o = {BX_LOG_ON_STEP | BX_LOG_ON_EPOCH, (double)(i + 1)};
        bx_status s = bx_trainer_log_ex(bx_step_trainer(st), "m", (double)i, &o);
        if (s) return s;
    }
    return bx_step_set_loss(st, loss);
}

static bx_status tm_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    tmodel *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->lin, st, b->x), b->y, BX_REDUCTION_MEAN);
    return bx_log_metric(st, "val_loss", loss, 0);
}

static const bx_model_ops TM_OPS = {.name = "Tiny", .module = tm_module, .configure_optimizers = tm_opt,
                                    .training_step = tm_train, .validation_step = tm_val};

static void tm_init(tmodel *m) {
    memset(m, 0, sizeof *m);
    bx_rng r;
    bx_rng_init(&r, 7);
    m->lin = bx_nn_linear(2, 1, true, &r);
}

static bx_dataset *make_ds(int n) {
    int64_t xs[2] = {n, 2}, ys[2] = {n, 1};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < n; i++) {
        bx_set(x, 2 * i, (i % 5) * 0.3 - 0.5);
        bx_set(x, 2 * i + 1, (i % 3) * 0.2);
        bx_set(y, i, 0.7 * ((i % 5) * 0.3 - 0.5) - 0.2);
    }
    return bx_dataset_from_tensors(x, y, true);
}

/* ---- recording callback -------------------------------------------------------------- */
typedef struct rec {
    char log[4096];
    int zero_at[16], nzero, step_at[16], nstep;
    int64_t cur_batch;
    int vals;
    bool stop_at_epoch_end;
    uint64_t alloc_before;
    int64_t alloc_delta_max;
    int nbatches;
} rec;

static void add(rec *r, const char *s) {
    strncat(r->log, s, sizeof r->log - strlen(r->log) - 2);
    strcat(r->log, " ");
}
#define R(name, tag)                                                           \
    static bx_status r_##name(void *self, bx_trainer *tr) {                    \
        (void)tr;                                                              \
        add(self, tag);                                                        \
        return BX_OK;                                                          \
    }
R(on_fit_start, "fit_start") R(on_fit_end, "fit_end") R(on_sanity_check_start, "sanity_start")
R(on_sanity_check_end, "sanity_end") R(on_train_start, "train_start") R(on_train_end, "train_end")
R(on_train_epoch_start, "epoch_start") R(on_validation_end, "val_end") R(on_after_backward, "after_bwd")

static bx_status r_val_start(void *self, bx_trainer *tr) {
    rec *r = self;
    add(r, "val_start");
    if (!bx_trainer_sanity_checking(tr)) r->vals++;
    return BX_OK;
}
static bx_status r_epoch_end(void *self, bx_trainer *tr) {
    rec *r = self;
    add(r, "epoch_end");
    if (r->stop_at_epoch_end) bx_trainer_set_should_stop(tr, true);
    return BX_OK;
}
static bx_status r_setup(void *self, bx_trainer *tr, bx_stage s) {
    (void)tr; (void)s;
    add(self, "setup");
    return BX_OK;
}
static bx_status r_teardown(void *self, bx_trainer *tr, bx_stage s) {
    (void)tr; (void)s;
    add(self, "teardown");
    return BX_OK;
}
static bx_status r_tbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)tr; (void)b;
    rec *r = self;
    r->cur_batch = i;
    add(r, "batch_start");
    /* allocations from one batch start to the next (step, logging, dicts,
     * epoch end), once every key exists (from the second epoch on) */
    uint64_t now = bx_alloc_count();
    if (r->nbatches > 6) {
        int64_t d = (int64_t)(now - r->alloc_before);
        if (d > r->alloc_delta_max) r->alloc_delta_max = d;
    }
    r->alloc_before = now;
    return BX_OK;
}
static bx_status r_tbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)tr; (void)o; (void)b; (void)i;
    rec *r = self;
    add(r, "batch_end");
    r->nbatches++;
    return BX_OK;
}
static bx_status r_vbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i, int d) {
    (void)tr; (void)b; (void)i; (void)d;
    add(self, "vbatch");
    return BX_OK;
}
static bx_status r_bzg(void *self, bx_trainer *tr, bx_optimizer *o) {
    (void)tr; (void)o;
    rec *r = self;
    add(r, "zero_grad");
    if (r->nzero < 16) r->zero_at[r->nzero++] = (int)r->cur_batch;
    return BX_OK;
}
static bx_status r_bos(void *self, bx_trainer *tr, bx_optimizer *o, int k) {
    (void)tr; (void)o; (void)k;
    rec *r = self;
    add(r, "opt_step");
    if (r->nstep < 16) r->step_at[r->nstep++] = (int)r->cur_batch;
    return BX_OK;
}

static const bx_callback_ops REC_OPS = {
    .name = "Rec", .setup = r_setup, .teardown = r_teardown, .on_fit_start = r_on_fit_start,
    .on_fit_end = r_on_fit_end, .on_sanity_check_start = r_on_sanity_check_start,
    .on_sanity_check_end = r_on_sanity_check_end, .on_train_start = r_on_train_start, .on_train_end = r_on_train_end,
    .on_train_epoch_start = r_on_train_epoch_start, .on_train_epoch_end = r_epoch_end, .on_train_batch_start = r_tbs,
    .on_train_batch_end = r_tbe, .on_validation_start = r_val_start, .on_validation_end = r_on_validation_end,
    .on_validation_batch_start = r_vbs, .on_after_backward = r_on_after_backward, .on_before_optimizer_step = r_bos,
    .on_before_zero_grad = r_bzg};

typedef struct run {
    tmodel m;
    rec r;
    bx_trainer *tr;
    bx_dataset *dtr, *dva;
    bx_loader *ltr, *lva;
} run;

static void run_setup(run *x, bx_trainer_opts *o, int ntrain, int nval) {
    memset(x, 0, sizeof *x);
    tm_init(&x->m);
    bx_callback *cb = bx_callback_new(&REC_OPS, &x->r);
    o->callbacks = &cb;
    o->num_callbacks = 1;
    o->enable_checkpointing = false;
    o->enable_progress_bar = false;
    o->logger_default = false;
    x->tr = bx_trainer_new(o);
    x->dtr = make_ds(ntrain);
    x->dva = make_ds(nval);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    x->ltr = bx_loader_new(x->dtr, &lo);
    x->lva = bx_loader_new(x->dva, &lo);
}

static bx_status run_fit(run *x, const char *ckpt) {
    bx_model model = {&TM_OPS, &x->m};
    return bx_trainer_fit(x->tr, &model, x->ltr, x->lva, ckpt);
}

static void run_free(run *x) {
    bx_trainer_free(x->tr);
    bx_loader_free(x->ltr);
    bx_loader_free(x->lva);
    bx_dataset_free(x->dtr);
    bx_dataset_free(x->dva);
    bx_module_free(x->m.lin);
}

static void test_hook_order(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.limit_train_batches = (bx_limit){2, true};
    o.limit_val_batches = (bx_limit){1, true};
    run_setup(&x, &o, 8, 4);
    CHECK_OK(run_fit(&x, NULL));
    const char *want =
        "setup fit_start sanity_start val_start vbatch val_end sanity_end train_start epoch_start "
        "batch_start zero_grad after_bwd opt_step batch_end batch_start zero_grad after_bwd opt_step batch_end "
        "val_start vbatch val_end epoch_end train_end fit_end teardown ";
    CHECK(strcmp(x.r.log, want) == 0);
    if (strcmp(x.r.log, want) != 0) fprintf(stderr, "got:  %s\nwant: %s\n", x.r.log, want);
    CHECK_EQ_INT(bx_trainer_global_step(x.tr), 2);
    CHECK_EQ_INT(bx_trainer_current_epoch(x.tr), 1);
    double v;
    CHECK_OK(bx_trainer_metric(x.tr, "val_loss", &v));
    run_free(&x);
}

static void test_accumulation(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.accumulate_grad_batches = 2;
    o.num_sanity_val_steps = 0;
    run_setup(&x, &o, 10, 2); /* B = 5 */
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(x.r.nzero, 3);
    CHECK_EQ_INT(x.r.zero_at[0], 0);
    CHECK_EQ_INT(x.r.zero_at[1], 2);
    CHECK_EQ_INT(x.r.zero_at[2], 4);
    CHECK_EQ_INT(x.r.nstep, 3);
    CHECK_EQ_INT(x.r.step_at[0], 1);
    CHECK_EQ_INT(x.r.step_at[1], 3);
    CHECK_EQ_INT(x.r.step_at[2], 4);
    CHECK_EQ_INT(bx_trainer_global_step(x.tr), 3);
    CHECK_EQ_INT(bx_trainer_batches_that_stepped(x.tr), 3);
    run_free(&x);
}

static void test_limits_and_intervals(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 2;
    o.val_check_interval = (bx_limit){0.4, false}; /* B = 5 -> every 2 batches: after 2, 4 */
    o.num_sanity_val_steps = 0;
    run_setup(&x, &o, 10, 4);
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(bx_trainer_val_check_batch(x.tr), 2);
    CHECK_EQ_INT(x.r.vals, 4);
    run_free(&x);

    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.max_epochs = 3;
    o2.limit_train_batches = (bx_limit){0.5, false}; /* 5 -> 2 batches */
    o2.check_val_every_n_epoch = 2;
    o2.num_sanity_val_steps = -1;
    run_setup(&x, &o2, 10, 6);
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(bx_trainer_num_training_batches(x.tr), 2);
    CHECK_EQ_INT(bx_trainer_num_sanity_val_batches(x.tr), 3);
    CHECK_EQ_INT(x.r.vals, 1);
    CHECK_EQ_INT(bx_trainer_global_step(x.tr), 6);
    run_free(&x);

    bx_trainer_opts o3 = BX_TRAINER_OPTS_INIT;
    o3.max_steps = 3;
    o3.num_sanity_val_steps = 0;
    run_setup(&x, &o3, 4, 2);
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(bx_trainer_global_step(x.tr), 3);
    CHECK_EQ_INT(bx_trainer_current_epoch(x.tr), 2);
    run_free(&x);
}

static void test_should_stop_min_epochs(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 10;
    o.min_epochs = 3;
    o.num_sanity_val_steps = 0;
    run_setup(&x, &o, 4, 2);
    x.r.stop_at_epoch_end = true;
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(bx_trainer_current_epoch(x.tr), 3);
    CHECK(bx_trainer_should_stop(x.tr));
    run_free(&x);
}

static void test_logging(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.num_sanity_val_steps = 0;
    run_setup(&x, &o, 6, 2); /* 3 batches: m = 0,1,2 with batch sizes 1,2,3 */
    x.m.log_epoch = true;
    CHECK_OK(run_fit(&x, NULL));
    double v;
    CHECK_OK(bx_trainer_metric(x.tr, "m_epoch", &v));
    CHECK_NEAR(v, (0 * 1 + 1 * 2 + 2 * 3) / 6.0, 1e-6);
    CHECK_OK(bx_trainer_metric(x.tr, "m_step", &v));
    CHECK_NEAR(v, 2.0, 0);
    CHECK_OK(bx_trainer_metric(x.tr, "m", &v));
    CHECK_NEAR(v, 8.0 / 6.0, 1e-6);
    CHECK_ERR(bx_trainer_metric(x.tr, "nope", &v), BX_ERR_NOT_FOUND, "m_epoch");
    run_free(&x);
}

static void test_steady_state_alloc(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 3;
    o.num_sanity_val_steps = 0;
    o.limit_val_batches = (bx_limit){0, true};
    run_setup(&x, &o, 10, 2);
    x.m.log_epoch = true; /* self.log on every step: dict updates must not allocate either */
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(x.r.alloc_delta_max, 0);
    run_free(&x);
}

static void test_resume(void) {
    const char *path = "/tmp/blixt_test_trainer_resume.ckpt";
    run a, b;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 4;
    o.num_sanity_val_steps = 0;
    run_setup(&a, &o, 10, 2);
    a.m.momentum = 0.9;
    CHECK_OK(run_fit(&a, NULL));

    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.max_epochs = 2;
    o2.num_sanity_val_steps = 0;
    run_setup(&b, &o2, 10, 2);
    b.m.momentum = 0.9;
    CHECK_OK(run_fit(&b, NULL));
    CHECK_OK(bx_trainer_save_checkpoint(b.tr, path, false));
    int first = b.m.nloss;
    run_free(&b);
    bx_trainer_opts o3 = BX_TRAINER_OPTS_INIT;
    o3.max_epochs = 4;
    o3.num_sanity_val_steps = 0;
    run c;
    run_setup(&c, &o3, 10, 2);
    c.m.momentum = 0.9;
    CHECK_OK(run_fit(&c, path));
    CHECK_EQ_INT(bx_trainer_global_step(c.tr), 20);
    CHECK_EQ_INT(first + c.m.nloss, a.m.nloss);
    for (int i = 0; i < c.m.nloss; i++) CHECK(c.m.losses[i] == a.m.losses[first + i]);
    bx_tensor *wa = bx_module_param(a.m.lin, "weight"), *wc = bx_module_param(c.m.lin, "weight");
    CHECK(memcmp(wa->data, wc->data, 2 * sizeof(float)) == 0);
    run_free(&a);
    run_free(&c);

    /* a checkpoint of another model: error naming the file and the mismatch */
    run d;
    bx_trainer_opts o4 = BX_TRAINER_OPTS_INIT;
    run_setup(&d, &o4, 4, 2);
    bx_module_free(d.m.lin);
    bx_rng r;
    bx_rng_init(&r, 1);
    d.m.lin = bx_nn_linear(3, 1, true, &r);
    CHECK_ERR(run_fit(&d, path), BX_ERR_SHAPE, "blixt_test_trainer_resume.ckpt");
    CHECK(strstr(bx_errmsg(), "weight") != NULL);
    run_free(&d);
    unlink(path);
}

static bx_status bad_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)self; (void)tr; (void)cfg;
    return BX_OK;
}

static void test_errors(void) {
    /* configure_optimizers adding nothing */
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    run_setup(&x, &o, 4, 2);
    bx_model_ops ops = TM_OPS;
    ops.configure_optimizers = bad_opt;
    bx_model model = {&ops, &x.m};
    CHECK_ERR(bx_trainer_fit(x.tr, &model, x.ltr, x.lva, NULL), BX_ERR_INVALID, "configure_optimizers");
    CHECK(bx_trainer_interrupted(x.tr));
    run_free(&x);
    /* duplicate stateful state keys */
    bx_model_checkpoint_opts mo = BX_MODEL_CHECKPOINT_OPTS_INIT;
    bx_callback *cbs[2] = {bx_model_checkpoint_new(&mo), bx_model_checkpoint_new(&mo)};
    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.callbacks = cbs;
    o2.num_callbacks = 2;
    o2.logger_default = false;
    o2.enable_progress_bar = false;
    CHECK(bx_trainer_new(&o2) == NULL);
    CHECK(strstr(bx_errmsg(), "state key") != NULL);
}


/* ---- more ---------------------------------------------------------------------------- */
typedef struct clipcb {
    float w0[3], g[3];
    double delta_norm, delta_max;
} clipcb;

static bx_status cc_bos(void *self, bx_trainer *tr, bx_optimizer *o, int k) {
    (void)k; (void)tr;
    clipcb *c = self;
    for (int p = 0; p < 2; p++) {
        bx_tensor *t = bx_optimizer_group_param(o, 0, p);
        for (int64_t i = 0; i < bx_numel(t); i++) c->w0[p * 2 + i] = (float)bx_get(t, i);
    }
    return BX_OK;
}
static bx_status cc_tbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)o; (void)b; (void)i;
    clipcb *c = self;
    bx_optimizer *opt = bx_trainer_optimizer(tr, 0);
    double ss = 0, mx = 0;
    for (int p = 0; p < 2; p++) {
        bx_tensor *t = bx_optimizer_group_param(opt, 0, p);
        for (int64_t k = 0; k < bx_numel(t); k++) {
            double d = (c->w0[p * 2 + k] - bx_get(t, k)) / 0.1;
            ss += d * d;
            if (fabs(d) > mx) mx = fabs(d);
        }
    }
    c->delta_norm = sqrt(ss);
    c->delta_max = mx;
    return BX_OK;
}
static const bx_callback_ops CLIP_OPS = {.name = "Clip", .on_before_optimizer_step = cc_bos, .on_train_batch_end = cc_tbe};

static void test_clipping(void) {
    for (int algo = 0; algo < 2; algo++) {
        tmodel m;
        tm_init(&m);
        clipcb c;
        memset(&c, 0, sizeof c);
        bx_callback *cb = bx_callback_new(&CLIP_OPS, &c);
        bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
        o.max_steps = 1;
        o.callbacks = &cb;
        o.num_callbacks = 1;
        o.enable_checkpointing = false;
        o.enable_progress_bar = false;
        o.logger_default = false;
        o.num_sanity_val_steps = 0;
        o.gradient_clip_val = 0.01;
        o.gradient_clip_algorithm = algo ? BX_CLIP_VALUE : BX_CLIP_NORM;
        bx_trainer *tr = bx_trainer_new(&o);
        bx_dataset *ds = make_ds(4);
        bx_loader_opts lo = BX_LOADER_OPTS_INIT;
        lo.batch_size = 2;
        bx_loader *ld = bx_loader_new(ds, &lo);
        bx_model model = {&TM_OPS, &m};
        CHECK_OK(bx_trainer_fit(tr, &model, ld, NULL, NULL));
        if (algo == 0) CHECK_NEAR(c.delta_norm, 0.01, 1e-5);
        else CHECK_NEAR(c.delta_max, 0.01, 1e-6);
        bx_trainer_free(tr);
        bx_loader_free(ld);
        bx_dataset_free(ds);
        bx_module_free(m.lin);
    }
}

static void test_fast_dev_run_and_intervals(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.fast_dev_run = 2;
    run_setup(&x, &o, 10, 10);
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(bx_trainer_global_step(x.tr), 2);
    CHECK_EQ_INT(bx_trainer_num_val_batches(x.tr), 2);
    CHECK_EQ_INT(x.r.vals, 1);
    CHECK(strstr(x.r.log, "sanity") == NULL);
    run_free(&x);

    /* check_val_every_n_epoch = None: val_check_interval counts batches across epochs */
    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.max_epochs = 3;
    o2.check_val_every_n_epoch = 0;
    o2.val_check_interval = (bx_limit){3, true};
    o2.num_sanity_val_steps = 0;
    run_setup(&x, &o2, 4, 2); /* B = 2: 6 batches -> validation after 3 and 6 */
    CHECK_OK(run_fit(&x, NULL));
    CHECK_EQ_INT(x.r.vals, 2);
    run_free(&x);

    /* int val_check_interval > batches with check_val_every_n_epoch set: error */
    bx_trainer_opts o3 = BX_TRAINER_OPTS_INIT;
    o3.val_check_interval = (bx_limit){3, true};
    run_setup(&x, &o3, 4, 2);
    CHECK_ERR(run_fit(&x, NULL), BX_ERR_INVALID, "val_check_interval");
    run_free(&x);
}

typedef struct lgrec {
    char final[32];
    int rows;
} lgrec;
static bx_status lg_log(void *self, const char *const *n, const double *v, int k, int64_t step) {
    (void)n; (void)v; (void)k; (void)step;
    ((lgrec *)self)->rows++;
    return BX_OK;
}
static bx_status lg_fin(void *self, const char *st) {
    snprintf(((lgrec *)self)->final, 32, "%s", st);
    return BX_OK;
}
static const bx_logger_ops LG_OPS = {.name = "Mem", .log_metrics = lg_log, .finalize = lg_fin};

static int exc_calls;
static bx_status ex_on_exc(void *self, bx_trainer *tr, bx_status s, const char *msg) {
    (void)self; (void)tr; (void)s; (void)msg;
    exc_calls++;
    return BX_OK;
}
static const bx_callback_ops EXC_OPS = {.name = "Exc", .on_exception = ex_on_exc};

static bx_status failing_step(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    if (i == 1) {
        bx_step_fail(st, BX_ERR_NUMERIC, "loss went bad");
        return BX_OK;
    }
    return tm_train(self, st, b, i);
}

static void test_exception(void) {
    tmodel m;
    tm_init(&m);
    lgrec lr;
    memset(&lr, 0, sizeof lr);
    bx_logger *lg = bx_logger_new(&LG_OPS, &lr);
    bx_callback *cbs[2] = {bx_callback_new(&EXC_OPS, NULL), bx_callback_new(&EXC_OPS, NULL)};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.callbacks = cbs;
    o.num_callbacks = 2;
    o.loggers = &lg;
    o.num_loggers = 1;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.num_sanity_val_steps = 0;
    bx_trainer *tr = bx_trainer_new(&o);
    bx_dataset *ds = make_ds(8);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ld = bx_loader_new(ds, &lo);
    bx_model_ops ops = TM_OPS;
    ops.training_step = failing_step;
    bx_model model = {&ops, &m};
    exc_calls = 0;
    CHECK_ERR(bx_trainer_fit(tr, &model, ld, NULL, NULL), BX_ERR_NUMERIC, "training_step");
    CHECK(strstr(bx_errmsg(), "epoch 0, step 1") != NULL);
    CHECK(strstr(bx_errmsg(), "loss went bad") != NULL);
    CHECK_EQ_INT(exc_calls, 2);
    CHECK(strcmp(lr.final, "failed") == 0);
    CHECK(strcmp(bx_trainer_status(tr), "interrupted") == 0);
    bx_trainer_free(tr);
    bx_loader_free(ld);
    bx_dataset_free(ds);
    bx_module_free(m.lin);
}

static bx_status sched_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    bx_status s = tm_opt(self, tr, cfg);
    if (s) return s;
    bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
    so.step_size = 1;
    so.gamma = 0.5;
    bx_sched_config c = BX_SCHED_CONFIG_INIT;
    c.scheduler = bx_step_lr_new(bx_trainer_optimizer(tr, 0), &so);
    c.interval = BX_INTERVAL_STEP;
    c.frequency = 2;
    return bx_optim_config_add_scheduler(cfg, &c);
}

static void test_validate_and_schedulers(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.num_sanity_val_steps = 0;
    run_setup(&x, &o, 8, 4); /* B = 4: step scheduler with frequency 2 steps twice */
    bx_model_ops ops = TM_OPS;
    ops.configure_optimizers = sched_opt;
    bx_model model = {&ops, &x.m};
    CHECK_OK(bx_trainer_fit(x.tr, &model, x.ltr, x.lva, NULL));
    CHECK_NEAR(bx_optimizer_get_lr(bx_trainer_optimizer(x.tr, 0), 0), 0.025, 1e-12);
    int before = x.r.vals;
    CHECK_OK(bx_trainer_validate(x.tr, &model, x.lva, NULL));
    CHECK_EQ_INT(x.r.vals, before + 1);
    double v;
    CHECK_OK(bx_trainer_metric(x.tr, "val_loss", &v));
    run_free(&x);
}

/* mid-epoch checkpoint: saved at the first validation of epoch 1 (after batch 2 of 5) */
typedef struct midsave {
    const char *path;
    int vals;
} midsave;
static bx_status ms_val_end(void *self, bx_trainer *tr) {
    midsave *m = self;
    if (bx_trainer_sanity_checking(tr)) return BX_OK;
    if (++m->vals == 3) return bx_trainer_save_checkpoint(tr, m->path, false);
    return BX_OK;
}
static const bx_callback_ops MS_OPS = {.name = "MidSave", .on_validation_end = ms_val_end};

static void test_resume_mid_epoch(void) {
    const char *path = "/tmp/blixt_test_trainer_mid.ckpt";
    tmodel a;
    tm_init(&a);
    a.momentum = 0.9;
    midsave ms = {path, 0};
    bx_callback *cb = bx_callback_new(&MS_OPS, &ms);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 3;
    o.num_sanity_val_steps = 0;
    o.val_check_interval = (bx_limit){0.4, false};
    o.callbacks = &cb;
    o.num_callbacks = 1;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.logger_default = false;
    bx_trainer *tr = bx_trainer_new(&o);
    bx_dataset *ds = make_ds(10), *dv = make_ds(2);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ld = bx_loader_new(ds, &lo), *lv = bx_loader_new(dv, &lo);
    bx_model model = {&TM_OPS, &a};
    CHECK_OK(bx_trainer_fit(tr, &model, ld, lv, NULL));
    bx_trainer_free(tr);
    /* the checkpoint was written after 5 + 2 = 7 steps (epoch 1, batch index 1) */
    tmodel c;
    tm_init(&c);
    c.momentum = 0.9;
    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.max_epochs = 3;
    o2.num_sanity_val_steps = 0;
    o2.val_check_interval = (bx_limit){0.4, false};
    o2.enable_checkpointing = false;
    o2.enable_progress_bar = false;
    o2.logger_default = false;
    tr = bx_trainer_new(&o2);
    bx_model model2 = {&TM_OPS, &c};
    CHECK_OK(bx_trainer_fit(tr, &model2, ld, lv, path));
    CHECK_EQ_INT(bx_trainer_global_step(tr), 15);
    CHECK_EQ_INT(c.nloss, 8);
    for (int i = 0; i < c.nloss && i + 7 < a.nloss; i++) CHECK(c.losses[i] == a.losses[7 + i]);
    CHECK(memcmp(bx_module_param(a.lin, "weight")->data, bx_module_param(c.lin, "weight")->data, 2 * sizeof(float)) == 0);
    CHECK(memcmp(bx_module_param(a.lin, "bias")->data, bx_module_param(c.lin, "bias")->data, sizeof(float)) == 0);
    bx_trainer_free(tr);
    bx_loader_free(ld);
    bx_loader_free(lv);
    bx_dataset_free(ds);
    bx_dataset_free(dv);
    bx_module_free(a.lin);
    bx_module_free(c.lin);
    unlink(path);
}

static const bx_callback_ops A_OPS = {.name = "A"};
static const bx_callback_ops PB_OPS = {.name = "MyProgressBar"};

static void test_callback_list(void) {
    bx_model_checkpoint_opts mo = BX_MODEL_CHECKPOINT_OPTS_INIT;
    mo.monitor = "x";
    bx_callback *cbs[3] = {bx_model_checkpoint_new(&mo), bx_callback_new(&A_OPS, NULL), bx_callback_new(&A_OPS, NULL)};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.callbacks = cbs;
    o.num_callbacks = 3;
    o.logger_default = false;
    bx_trainer *tr = bx_trainer_new(&o); /* + default progress bar, no default checkpoint */
    CHECK(tr != NULL);
    CHECK_EQ_INT(bx_trainer_num_callbacks(tr), 4);
    CHECK(strcmp(bx_callback_name(bx_trainer_callback(tr, 0)), "A") == 0);
    CHECK(strcmp(bx_callback_name(bx_trainer_callback(tr, 2)), "ProgressBar") == 0);
    CHECK(strcmp(bx_callback_name(bx_trainer_callback(tr, 3)), "ModelCheckpoint") == 0);
    bx_trainer_free(tr);

    bx_callback *c2[2] = {bx_callback_new(&PB_OPS, NULL), bx_callback_new(&A_OPS, NULL)};
    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.callbacks = c2;
    o2.num_callbacks = 2;
    o2.logger_default = false;
    tr = bx_trainer_new(&o2); /* user bar kept, default checkpoint appended last */
    CHECK_EQ_INT(bx_trainer_num_callbacks(tr), 3);
    CHECK(strcmp(bx_callback_name(bx_trainer_callback(tr, 0)), "MyProgressBar") == 0);
    CHECK(strcmp(bx_callback_name(bx_trainer_callback(tr, 2)), "ModelCheckpoint") == 0);
    bx_trainer_free(tr);

    bx_callback *c3[1] = {bx_callback_new(&PB_OPS, NULL)};
    bx_trainer_opts o3 = BX_TRAINER_OPTS_INIT;
    o3.callbacks = c3;
    o3.num_callbacks = 1;
    o3.enable_progress_bar = false;
    o3.logger_default = false;
    CHECK(bx_trainer_new(&o3) == NULL);
    CHECK(strstr(bx_errmsg(), "enable_progress_bar") != NULL);
}

static bx_status tm_predict(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    tmodel *m = self;
    return bx_step_set_output(st, bx_module_forward(m->lin, st, b->x));
}
typedef struct sinkrec {
    int n;
    int64_t rows;
} sinkrec;
static bx_status sink_fn(void *ud, int64_t i, const bx_tensor *pred) {
    (void)i;
    sinkrec *r = ud;
    r->n++;
    r->rows += pred->shape[0];
    bx_tensor_free((bx_tensor *)pred);
    return BX_OK;
}

static void test_predict_and_test(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    run_setup(&x, &o, 5, 4);
    bx_model_ops ops = TM_OPS;
    ops.predict_step = tm_predict;
    ops.test_step = tm_val;
    bx_model model = {&ops, &x.m};
    sinkrec r = {0, 0};
    CHECK_OK(bx_trainer_predict(x.tr, &model, x.ltr, NULL, sink_fn, &r));
    CHECK_EQ_INT(r.n, 3);
    CHECK_EQ_INT(r.rows, 5);
    CHECK_EQ_INT(bx_trainer_num_predict_batches(x.tr), 3);
    CHECK_OK(bx_trainer_test(x.tr, &model, x.lva, NULL));
    CHECK_EQ_INT(bx_trainer_num_test_batches(x.tr), 2);
    double v;
    CHECK_OK(bx_trainer_metric(x.tr, "val_loss", &v));
    run_free(&x);
}

int main(void) {
    test_hook_order();
    test_accumulation();
    test_limits_and_intervals();
    test_should_stop_min_epochs();
    test_logging();
    test_steady_state_alloc();
    test_resume();
    test_errors();
    test_clipping();
    test_fast_dev_run_and_intervals();
    test_exception();
    test_validate_and_schedulers();
    test_resume_mid_epoch();
    test_callback_list();
    test_predict_and_test();
    return tu_finish("train/trainer");
}
