/* Trainer tests: checkpoint resume (end of epoch and mid-epoch, bit-identical),
 * checkpoint of another model, failures (on_exception, loggers
 * finalize("failed")), predict and test entry points. */
#include "train/train_fixture.h"

static void test_resume(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/blixt_test_trainer_resume_%d.ckpt", (int)getpid());
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
    CHECK_ERR(run_fit(&d, path), BX_ERR_SHAPE, "blixt_test_trainer_resume_");
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
    char path[128];
    snprintf(path, sizeof path, "/tmp/blixt_test_trainer_mid_%d.ckpt", (int)getpid());
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

/* ckpt_path "best": the ModelCheckpoint's best file after fit; clear errors
 * when no ModelCheckpoint exists or none has saved a best model. */
static void test_ckpt_path_best(void) {
    char dir[128];
    snprintf(dir, sizeof dir, "/tmp/blixt_test_best_%d", (int)getpid());
    bx_dataset *dtr = make_ds(10), *dva = make_ds(4);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ltr = bx_loader_new(dtr, &lo), *lva = bx_loader_new(dva, &lo);
    tmodel m;
    tm_init(&m);
    bx_model_ops ops = TM_OPS;
    ops.test_step = tm_val;
    bx_model model = {&ops, &m};
    for (int round = 0; round < 3; round++) {
        bx_model_checkpoint_opts mo = BX_MODEL_CHECKPOINT_OPTS_INIT;
        mo.dirpath = dir;
        mo.monitor = "val_loss";
        bx_callback *mc = bx_model_checkpoint_new(&mo), *mc_ref = mc; /* the Trainer takes mc */
        bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
        o.enable_checkpointing = round != 2; /* round 2: no ModelCheckpoint at all */
        o.max_epochs = 3;
        o.num_sanity_val_steps = 0;
        o.enable_progress_bar = false;
        o.logger_default = false;
        o.callbacks = &mc;
        o.num_callbacks = round == 2 ? 0 : 1;
        if (round == 2) bx_callback_free(mc);
        bx_trainer *tr = bx_trainer_new(&o);
        CHECK(tr != NULL);
        if (round == 0) { /* fit, then test the best checkpoint */
            CHECK_OK(bx_trainer_fit(tr, &model, ltr, lva, NULL));
            const char *best = bx_model_checkpoint_best_model_path(mc_ref);
            CHECK(best[0] != '\0');
            char keep[256];
            snprintf(keep, sizeof keep, "%s", best);
            CHECK_OK(bx_trainer_test(tr, &model, lva, "best"));
            CHECK(strcmp(bx_trainer_ckpt_path(tr), keep) == 0);
            unlink(keep);
        } else if (round == 1) { /* a fresh Trainer knows no best model */
            CHECK_ERR(bx_trainer_test(tr, &model, lva, "best"), BX_ERR_STATE, "test(ckpt_path=\"best\")");
            CHECK(strstr(bx_errmsg(), "no best checkpoint") != NULL);
        } else {
            CHECK_ERR(bx_trainer_validate(tr, &model, lva, "best"), BX_ERR_STATE, "no ModelCheckpoint");
        }
        bx_trainer_free(tr);
    }
    rmdir(dir);
    bx_loader_free(ltr);
    bx_loader_free(lva);
    bx_dataset_free(dtr);
    bx_dataset_free(dva);
    bx_module_free(m.lin);
}

int main(void) {
    test_resume();
    test_errors();
    test_exception();
    test_resume_mid_epoch();
    test_predict_and_test();
    test_ckpt_path_best();
    return tu_finish("train/resume");
}
