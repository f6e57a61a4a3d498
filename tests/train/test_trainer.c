/* Trainer tests: hook order, accumulation, limits/val intervals, should_stop
 * vs min_epochs, logging aggregation, steady-state allocation, clipping,
 * fast_dev_run, schedulers, callback list, several optimizers. */
#include "train/train_fixture.h"

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

static bx_status two_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    tmodel *m = self;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    bx_tensor *w = bx_module_param(m->lin, "weight"), *b = bx_module_param(m->lin, "bias");
    bx_optimizer *a = bx_sgd_new(&o), *c = bx_sgd_new(&o);
    bx_status s = bx_optimizer_add_group(a, &w, 1, NULL);
    if (!s) s = bx_optimizer_add_group(c, &b, 1, NULL);
    if (!s) s = bx_optim_config_add_optimizer(cfg, a);
    if (!s) s = bx_optim_config_add_optimizer(cfg, c);
    return s;
}

static void test_two_optimizers(void) {
    run x;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.num_sanity_val_steps = 0;
    run_setup(&x, &o, 4, 2);
    float b0 = (float)bx_get(bx_module_param(x.m.lin, "bias"), 0);
    bx_model_ops ops = TM_OPS;
    ops.configure_optimizers = two_opt;
    bx_model model = {&ops, &x.m};
    CHECK_OK(bx_trainer_fit(x.tr, &model, x.ltr, x.lva, NULL));
    CHECK_EQ_INT(bx_trainer_num_optimizers(x.tr), 2);
    CHECK_EQ_INT(bx_trainer_global_step(x.tr), 4);
    CHECK_EQ_INT(x.r.nstep, 4);
    CHECK_EQ_INT(x.r.nzero, 4);
    CHECK(bx_get(bx_module_param(x.m.lin, "bias"), 0) != b0);
    run_free(&x);
}


/* estimated_stepping_batches, read at train start (then the fit is stopped) */
typedef struct est_probe {
    bx_status s;
    int64_t n;
} est_probe;
static bx_status est_train_start(void *self, bx_trainer *tr) {
    est_probe *p = self;
    p->s = bx_trainer_estimated_stepping_batches(tr, &p->n);
    bx_clear_error();
    bx_trainer_set_should_stop(tr, true);
    return BX_OK;
}
static const bx_callback_ops EST_OPS = {.name = "EstProbe", .on_train_start = est_train_start};

static est_probe estimate(int64_t max_epochs, int64_t max_steps, bx_limit limit, int64_t accumulate) {
    est_probe p = {BX_OK, -1};
    tmodel m;
    tm_init(&m);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = max_epochs;
    o.max_steps = max_steps;
    o.limit_train_batches = limit;
    o.accumulate_grad_batches = accumulate;
    o.enable_checkpointing = o.enable_progress_bar = o.logger_default = false;
    bx_callback *cb = bx_callback_new(&EST_OPS, &p);
    o.callbacks = &cb;
    o.num_callbacks = 1;
    bx_trainer *tr = bx_trainer_new(&o);
    int64_t n;
    CHECK_ERR(bx_trainer_estimated_stepping_batches(tr, &n), BX_ERR_INVALID, "no train loader");
    bx_dataset *d = make_ds(20); /* 10 batches of 2 */
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *l = bx_loader_new(d, &lo);
    bx_model model = {&TM_OPS, &m};
    CHECK_OK(bx_trainer_fit(tr, &model, l, NULL, NULL));
    bx_trainer_free(tr);
    bx_loader_free(l);
    bx_dataset_free(d);
    bx_module_free(m.lin);
    return p;
}

static void test_estimated_stepping_batches(void) {
    bx_limit all = BX_LIMIT_ALL, half = {0.5, false}, three = {3, true};
    est_probe p = estimate(3, -1, all, 1);
    CHECK(p.s == BX_OK && p.n == 30);
    p = estimate(3, -1, half, 2); /* ceil(5 / 2) * 3 */
    CHECK(p.s == BX_OK && p.n == 9);
    p = estimate(4, -1, three, 1);
    CHECK(p.s == BX_OK && p.n == 12);
    p = estimate(3, 4, all, 1); /* capped by max_steps */
    CHECK(p.s == BX_OK && p.n == 4);
    p = estimate(BX_UNSET, -1, all, 1); /* max_epochs defaults to 1000 */
    CHECK(p.s == BX_OK && p.n == 10000);
    p = estimate(-1, 25, all, 1); /* epochs unbounded: max_steps */
    CHECK(p.s == BX_OK && p.n == 25);
    p = estimate(BX_UNSET, 25, all, 1);
    CHECK(p.s == BX_OK && p.n == 25);
    p = estimate(-1, -1, all, 1); /* infinite */
    CHECK(p.s == BX_ERR_INVALID);
}

int main(void) {
    test_estimated_stepping_batches();
    test_hook_order();
    test_accumulation();
    test_limits_and_intervals();
    test_should_stop_min_epochs();
    test_logging();
    test_steady_state_alloc();
    test_clipping();
    test_fast_dev_run_and_intervals();
    test_validate_and_schedulers();
    test_callback_list();
    test_two_optimizers();
    return tu_finish("train/trainer");
}
