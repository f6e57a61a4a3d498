/* test_swa_callback.c - StochasticWeightAveraging and EMAWeightAveraging
 * callbacks: the spec pin (spec/callbacks.md §8), per-group swa_lrs, resume
 * mid-SWA, EMA, construction / fit-start errors. */
#include "test_util.h"

#include <blixt.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- a model: Linear(2,3) [BatchNorm1d(3)] Linear(3,1), SGD ------------------------ */
typedef struct tm {
    bx_module *seq;
    bool two_groups, two_opts, with_sched, two_scheds;
    int nbackward, nopt_steps, ntrain_steps;
    int nbackward_per_epoch[16];
    /* params (flattened) at each epoch start, after SWA's hook */
    double start_params[16][32];
    int nparams;
    double lrs[16][2]; /* lrs at epoch start, after SWA's hook */
    char sched_type[16][32];
    int64_t save_at_epoch;
    const char *save_path;
} tm;

static bx_module *tm_module(void *self) { return ((tm *)self)->seq; }

static bx_status tm_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    tm *m = self;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    o.momentum = 0.5;
    bx_optimizer *opt = bx_sgd_new(&o);
    bx_named_tensors *np = bx_module_named_parameters(m->seq);
    bx_status s;
    if (m->two_groups) {
        bx_tensor *w[8], *b[8];
        int nw = 0, nb = 0;
        for (int i = 0; i < np->n; i++) {
            if (strstr(np->names[i], "bias")) b[nb++] = np->tensors[i];
            else w[nw++] = np->tensors[i];
        }
        bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
        g.lr = 0.2;
        s = bx_optimizer_add_group(opt, w, nw, NULL);
        if (!s) s = bx_optimizer_add_group(opt, b, nb, &g);
    } else {
        s = bx_optimizer_add_group(opt, np->tensors, np->n, NULL);
    }
    bx_named_tensors_free(np);
    if (!s) s = bx_optim_config_add_optimizer(cfg, opt);
    if (!s && m->two_opts) {
        bx_optimizer *o2 = bx_sgd_new(&o);
        bx_tensor *p = bx_module_param(bx_module_child(m->seq, "0"), "bias");
        s = bx_optimizer_add_group(o2, &p, 1, NULL);
        if (!s) s = bx_optim_config_add_optimizer(cfg, o2);
    }
    if (!s && m->with_sched) {
        bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
        so.step_size = 1;
        so.gamma = 0.5;
        bx_sched_config sc = BX_SCHED_CONFIG_INIT;
        sc.scheduler = bx_step_lr_new(opt, &so);
        s = bx_optim_config_add_scheduler(cfg, &sc);
        if (!s && m->two_scheds) {
            sc.scheduler = bx_step_lr_new(opt, &so);
            s = bx_optim_config_add_scheduler(cfg, &sc);
        }
    }
    return s;
}

static bx_status tm_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    tm *m = self;
    m->ntrain_steps++;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->seq, st, b->x), b->y, BX_REDUCTION_MEAN);
    return bx_step_set_loss(st, loss);
}

/* the recorder: placed after SWA in the callback list */
static void flat_params(bx_module *mod, double *out, int *n) {
    bx_named_tensors *np = bx_module_named_parameters(mod);
    int k = 0;
    for (int i = 0; i < np->n; i++)
        for (int64_t j = 0; j < bx_numel(np->tensors[i]); j++) out[k++] = bx_get(np->tensors[i], j);
    bx_named_tensors_free(np);
    *n = k;
}

static bx_status rec_epoch_start(void *self, bx_trainer *tr) {
    tm *m = self;
    int64_t e = bx_trainer_current_epoch(tr);
    flat_params(m->seq, m->start_params[e], &m->nparams);
    bx_optimizer *o = bx_trainer_optimizer(tr, 0);
    for (int g = 0; g < bx_optimizer_num_groups(o) && g < 2; g++) m->lrs[e][g] = bx_optimizer_get_lr(o, g);
    snprintf(m->sched_type[e], sizeof m->sched_type[e], "%s",
             bx_trainer_num_schedulers(tr) ? bx_scheduler_type(bx_trainer_scheduler(tr, 0)->scheduler) : "");
    return BX_OK;
}
static bx_status rec_before_backward(void *self, bx_trainer *tr, bx_tensor *loss) {
    (void)loss;
    tm *m = self;
    m->nbackward++;
    m->nbackward_per_epoch[bx_trainer_current_epoch(tr)]++;
    return BX_OK;
}
static bx_status rec_before_opt(void *self, bx_trainer *tr, bx_optimizer *o, int k) {
    (void)tr, (void)o, (void)k;
    ((tm *)self)->nopt_steps++;
    return BX_OK;
}
static bx_status rec_epoch_end(void *self, bx_trainer *tr) {
    tm *m = self;
    if (m->save_path && bx_trainer_current_epoch(tr) == m->save_at_epoch)
        return bx_trainer_save_checkpoint(tr, m->save_path, false);
    return BX_OK;
}
static const bx_callback_ops REC_OPS = {.name = "Rec",
                                        .on_train_epoch_start = rec_epoch_start,
                                        .on_before_backward = rec_before_backward,
                                        .on_before_optimizer_step = rec_before_opt,
                                        .on_train_epoch_end = rec_epoch_end};
static const bx_model_ops TM_OPS = {.name = "TM", .module = tm_module, .configure_optimizers = tm_opt,
                                    .training_step = tm_train};

static void tm_init(tm *m, bool bn) {
    memset(m, 0, sizeof *m);
    bx_rng r;
    bx_rng_init(&r, 7);
    m->seq = bx_nn_sequential();
    bx_sequential_append(m->seq, bx_nn_linear(2, 3, true, &r));
    if (bn) bx_sequential_append(m->seq, bx_nn_batchnorm1d(3, NULL));
    bx_sequential_append(m->seq, bx_nn_linear(3, 1, true, &r));
    m->save_at_epoch = -1;
}

static bx_dataset *ds(int n) {
    int64_t xs[2] = {n, 2}, ys[2] = {n, 1};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < n; i++) {
        bx_set(x, 2 * i, (i % 5) * 0.3 - 0.5);
        bx_set(x, 2 * i + 1, (i % 3) * 0.2 + 0.1 * (i % 2));
        bx_set(y, i, 0.7 * ((i % 5) * 0.3 - 0.5) - 0.2 + 0.1 * (i % 3));
    }
    return bx_dataset_from_tensors(x, y, true);
}

/* fit with [swa_or_ema, recorder]; keeps the trainer in *out when non-NULL */
static bx_status run(tm *m, bx_callback *cb, int64_t max_epochs, int64_t accumulate, const char *ckpt,
                     bx_trainer **out) {
    bx_callback *cbs[2] = {cb, bx_callback_new(&REC_OPS, m)};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = max_epochs;
    o.num_sanity_val_steps = 0;
    o.accumulate_grad_batches = accumulate;
    o.callbacks = cbs;
    o.num_callbacks = 2;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.enable_model_summary = false;
    o.logger_default = false;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) return BX_ERR_INVALID;
    bx_dataset *d = ds(10);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *l = bx_loader_new(d, &lo);
    bx_model model = {&TM_OPS, m};
    bx_status s = bx_trainer_fit(tr, &model, l, NULL, ckpt);
    if (out) *out = tr;
    else bx_trainer_free(tr);
    bx_loader_free(l);
    bx_dataset_free(d);
    return s;
}

static bx_callback *swa_cb(double start, double lr, int64_t anneal) {
    bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT;
    o.swa_epoch_start = start;
    o.swa_epoch_start_is_fraction = false;
    o.swa_lr = lr;
    o.annealing_epochs = anneal;
    return bx_swa_callback_new(&o);
}

static bx_callback *find(bx_trainer *tr, const char *name) {
    for (int i = 0; i < bx_trainer_num_callbacks(tr); i++)
        if (!strcmp(bx_callback_name(bx_trainer_callback(tr, i)), name)) return bx_trainer_callback(tr, i);
    return NULL;
}

/* ---- the spec pin: start 2, M 5, 5 batches, accumulate 2, BatchNorm ----------------- */
static void test_pin(void) {
    tm m;
    tm_init(&m, true);
    bx_trainer *tr = NULL;
    CHECK_OK(run(&m, swa_cb(2, 0.05, 2), 5, 2, NULL, &tr));
    bx_callback *cb = find(tr, "StochasticWeightAveraging");
    CHECK(cb != NULL);
    CHECK_EQ_INT(bx_swa_callback_swa_start(cb), 1);
    CHECK_EQ_INT(bx_swa_callback_swa_end(cb), 4);
    CHECK(bx_swa_callback_initialized(cb));
    CHECK_EQ_INT(bx_swa_callback_n_averaged(cb), 4); /* update_parameters at epochs 1..4 */
    CHECK_EQ_INT(bx_swa_callback_latest_update_epoch(cb), 4);
    CHECK(!strcmp(m.sched_type[0], ""));
    for (int e = 1; e <= 5; e++) CHECK(!strcmp(m.sched_type[e], "SWALR")); /* active from epoch 1 */
    CHECK_NEAR(m.lrs[0][0], 0.1, 1e-12);
    CHECK_NEAR(m.lrs[1][0], 0.1, 1e-12);                                      /* construction: unchanged */
    CHECK_NEAR(m.lrs[2][0], 0.5 * 0.05 + 0.5 * 0.1, 1e-9);                    /* cos, t = 1/2 */
    CHECK_NEAR(m.lrs[3][0], 0.05, 1e-9);
    /* backward 5 x 5, none in the BN epoch (epoch 5); optimizer steps 5 x 3 */
    CHECK_EQ_INT(m.nbackward, 25);
    CHECK_EQ_INT(m.nbackward_per_epoch[5], 0);
    CHECK_EQ_INT(m.ntrain_steps, 30);
    CHECK_EQ_INT(m.nopt_steps, 15);
    CHECK_EQ_INT(bx_trainer_global_step(tr), 15);
    CHECK_EQ_INT(bx_trainer_current_epoch(tr), 6);
    /* counters restored */
    CHECK_EQ_INT(bx_trainer_max_epochs(tr), 5);
    CHECK_EQ_INT(bx_trainer_accumulate_grad_batches(tr), 2);
    CHECK_EQ_INT(bx_trainer_num_training_batches(tr), 5);
    CHECK(!bx_trainer_skip_backward(tr));
    /* the model holds the mean of the weights at the starts of epochs 1..4
     * (transferred once, at the BN epoch start; no step since) */
    double fin[32], avg[32];
    int n;
    flat_params(m.seq, fin, &n);
    for (int j = 0; j < n; j++) {
        avg[j] = 0;
        for (int e = 1; e <= 4; e++) avg[j] += m.start_params[e][j] / 4.0;
        CHECK_NEAR(fin[j], avg[j], 1e-6);
        CHECK_NEAR(m.start_params[5][j], fin[j], 0.0); /* transferred before the BN epoch */
    }
    double am[32];
    flat_params(bx_swa_callback_average_module(cb), am, &n);
    for (int j = 0; j < n; j++) CHECK_NEAR(am[j], fin[j], 0.0);
    /* BatchNorm statistics recomputed over the 5 batches of the BN epoch */
    bx_module *bn = bx_module_child(m.seq, "1");
    CHECK_EQ_INT(bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0), 5);
    bx_trainer_free(tr);
    bx_module_free(m.seq);
}

/* no BatchNorm: no extra epoch, the average is copied at train end */
static void test_no_bn(void) {
    tm m;
    tm_init(&m, false);
    bx_trainer *tr = NULL;
    CHECK_OK(run(&m, swa_cb(3, 0.05, 1), 5, 1, NULL, &tr));
    CHECK_EQ_INT(bx_trainer_current_epoch(tr), 5);
    CHECK_EQ_INT(bx_trainer_global_step(tr), 25);
    CHECK_EQ_INT(m.nbackward, 25);
    bx_callback *cb = find(tr, "StochasticWeightAveraging");
    CHECK_EQ_INT(bx_swa_callback_n_averaged(cb), 3);
    double fin[32];
    int n;
    flat_params(m.seq, fin, &n);
    for (int j = 0; j < n; j++) {
        double a = (m.start_params[2][j] + m.start_params[3][j] + m.start_params[4][j]) / 3.0;
        CHECK_NEAR(fin[j], a, 1e-6);
    }
    bx_trainer_free(tr);
    bx_module_free(m.seq);
}

/* StepLR swapped for SWALR at swa_start */
static void test_replaces_scheduler(void) {
    tm m;
    tm_init(&m, false);
    m.with_sched = true;
    bx_trainer *tr = NULL;
    CHECK_OK(run(&m, swa_cb(3, 0.05, 1), 5, 1, NULL, &tr));
    CHECK(!strcmp(m.sched_type[1], "StepLR"));
    CHECK(!strcmp(m.sched_type[2], "SWALR"));
    CHECK_EQ_INT(bx_trainer_num_schedulers(tr), 1);
    CHECK_NEAR(m.lrs[1][0], 0.05, 1e-12);
    CHECK_NEAR(m.lrs[2][0], 0.025, 1e-12);
    CHECK_NEAR(m.lrs[3][0], 0.05, 1e-12);
    CHECK_NEAR(m.lrs[4][0], 0.05, 1e-12);
    bx_trainer_free(tr);
    bx_module_free(m.seq);
}

/* per-group swa_lrs honoured per group (Lightning #8747) */
static void test_per_group(void) {
    tm m;
    tm_init(&m, false);
    m.two_groups = true;
    double lrs[2] = {0.02, 0.04};
    bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT;
    o.swa_epoch_start = 2;
    o.swa_epoch_start_is_fraction = false;
    o.swa_lrs = lrs;
    o.n_swa_lrs = 2;
    o.annealing_epochs = 0; /* jumps straight to swa_lr */
    o.annealing_strategy = BX_ANNEAL_LINEAR;
    CHECK_OK(run(&m, bx_swa_callback_new(&o), 3, 1, NULL, NULL));
    CHECK_NEAR(m.lrs[0][0], 0.1, 1e-12);
    CHECK_NEAR(m.lrs[0][1], 0.2, 1e-12);
    CHECK_NEAR(m.lrs[1][0], 0.02, 1e-12);
    CHECK_NEAR(m.lrs[1][1], 0.04, 1e-12);
    CHECK_NEAR(m.lrs[2][1], 0.04, 1e-12);
    bx_module_free(m.seq);
    /* a list of the wrong length: error at on_fit_start */
    tm_init(&m, false);
    o.n_swa_lrs = 1;
    m.two_groups = true;
    CHECK_ERR(run(&m, bx_swa_callback_new(&o), 3, 1, NULL, NULL), BX_ERR_INVALID, "swa_lrs has 1 values");
    bx_module_free(m.seq);
}

/* resume from the end of epoch 2 (mid-SWA): bit-identical to the straight run */
static void test_resume(bool bn) {
    char dir[] = "/tmp/blixt_swa_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/mid.ckpt", dir);
    tm a, b;
    tm_init(&a, bn);
    a.with_sched = true;
    a.save_at_epoch = 2;
    a.save_path = path;
    CHECK_OK(run(&a, swa_cb(2, 0.05, 3), 5, 2, NULL, NULL));
    tm_init(&b, bn);
    b.with_sched = true;
    bx_trainer *tr = NULL;
    CHECK_OK(run(&b, swa_cb(2, 0.05, 3), 5, 2, path, &tr));
    double pa[32], pb[32];
    int n;
    flat_params(a.seq, pa, &n);
    flat_params(b.seq, pb, &n);
    for (int j = 0; j < n; j++) CHECK(pa[j] == pb[j]);
    for (int e = 3; e <= 4; e++) CHECK(a.lrs[e][0] == b.lrs[e][0]);
    bx_callback *cb = find(tr, "StochasticWeightAveraging");
    CHECK_EQ_INT(bx_swa_callback_n_averaged(cb), 4);
    CHECK_EQ_INT(b.nbackward, 2 * 5); /* only epochs 3 and 4 trained */
    if (bn) {
        bx_named_tensors *ba = bx_module_named_buffers(a.seq), *bb = bx_module_named_buffers(b.seq);
        for (int i = 0; i < ba->n; i++)
            for (int64_t j = 0; j < bx_numel(ba->tensors[i]); j++)
                CHECK(bx_get(ba->tensors[i], j) == bx_get(bb->tensors[i], j));
        bx_named_tensors_free(ba);
        bx_named_tensors_free(bb);
    }
    bx_trainer_free(tr);
    bx_module_free(a.seq);
    bx_module_free(b.seq);
    unlink(path);
    rmdir(dir);
}

/* custom avg_fn: keep the latest weights (avg = p) */
static void latest_fn(void *ud, float *avg, const float *p, int64_t n, int64_t n_averaged) {
    (void)n_averaged;
    (*(int *)ud)++;
    for (int64_t i = 0; i < n; i++) avg[i] = p[i];
}
static void test_avg_fn(void) {
    tm m;
    tm_init(&m, false);
    int calls = 0;
    bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT;
    o.swa_epoch_start = 2;
    o.swa_epoch_start_is_fraction = false;
    o.swa_lr = 0.05;
    o.avg_fn = latest_fn;
    o.avg_ud = &calls;
    CHECK_OK(run(&m, bx_swa_callback_new(&o), 4, 1, NULL, NULL));
    CHECK_EQ_INT(calls, 2 * 4); /* epochs 2, 3 (the first update copies); 4 tensors each */
    double fin[32];
    int n;
    flat_params(m.seq, fin, &n);
    for (int j = 0; j < n; j++) CHECK_NEAR(fin[j], m.start_params[3][j], 0.0);
    bx_module_free(m.seq);
}

/* fractional start: int(M * f) */
static void test_fraction(void) {
    tm m;
    tm_init(&m, false);
    bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT; /* 0.8 */
    o.swa_lr = 0.05;
    bx_trainer *tr = NULL;
    CHECK_OK(run(&m, bx_swa_callback_new(&o), 5, 1, NULL, &tr));
    bx_callback *cb = find(tr, "StochasticWeightAveraging");
    CHECK_EQ_INT(bx_swa_callback_swa_start(cb), 3);
    CHECK_EQ_INT(bx_swa_callback_n_averaged(cb), 2);
    bx_trainer_free(tr);
    bx_module_free(m.seq);
}

/* a start after the last epoch: SWA never runs, no BN epoch, trained weights kept */
static void test_never_starts(void) {
    tm m;
    tm_init(&m, true);
    bx_trainer *tr = NULL;
    CHECK_OK(run(&m, swa_cb(10, 0.05, 1), 3, 1, NULL, &tr));
    CHECK_EQ_INT(bx_trainer_current_epoch(tr), 3);
    CHECK_EQ_INT(bx_trainer_max_epochs(tr), 3);
    bx_callback *cb = find(tr, "StochasticWeightAveraging");
    CHECK(!bx_swa_callback_initialized(cb));
    CHECK_EQ_INT(bx_swa_callback_n_averaged(cb), 0);
    double fin[32], init[32];
    int n;
    flat_params(m.seq, fin, &n);
    flat_params(bx_swa_callback_average_module(cb), init, &n);
    bool differ = false;
    for (int j = 0; j < n; j++) differ = differ || fin[j] != init[j];
    CHECK(differ); /* the model was not overwritten by the untouched copy */
    bx_trainer_free(tr);
    bx_module_free(m.seq);
}

static void test_errors(void) {
    bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT;
    o.swa_lr = 0.05;
    o.swa_epoch_start = 0;
    o.swa_epoch_start_is_fraction = false;
    CHECK(bx_swa_callback_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), ">0 integer or a float between 0 and 1"));
    o.swa_epoch_start = 1.5;
    CHECK(bx_swa_callback_new(&o) == NULL);
    o.swa_epoch_start_is_fraction = true;
    CHECK(bx_swa_callback_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "swa_epoch_start"));
    o.swa_epoch_start = 0.5;
    o.swa_lr = NAN;
    CHECK(bx_swa_callback_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "swa_lrs is required"));
    double bad[2] = {0.2, -1};
    o.swa_lrs = bad;
    o.n_swa_lrs = 2;
    CHECK(bx_swa_callback_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "positive float or a list of positive floats, got swa_lrs[1] = -1"));
    o.swa_lrs = NULL;
    o.swa_lr = 0.1;
    o.annealing_epochs = -2;
    CHECK(bx_swa_callback_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "annealing_epochs should be >= 0, got -2"));
    o.annealing_epochs = 2;
    o.annealing_strategy = (bx_anneal_strategy)7;
    CHECK(bx_swa_callback_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "annealing_strategy"));
    /* two optimizers: error at on_fit_start */
    tm m;
    tm_init(&m, false);
    m.two_opts = true;
    CHECK_ERR(run(&m, swa_cb(2, 0.05, 1), 3, 1, NULL, NULL), BX_ERR_INVALID, "1 optimizer");
    bx_module_free(m.seq);
    tm_init(&m, false);
    m.with_sched = m.two_scheds = true;
    CHECK_ERR(run(&m, swa_cb(2, 0.05, 1), 3, 1, NULL, NULL), BX_ERR_INVALID, "at most 1 lr scheduler");
    CHECK_EQ_INT(m.ntrain_steps, 0);
    bx_module_free(m.seq);
    bx_ema_callback_opts eo = BX_EMA_CALLBACK_OPTS_INIT;
    eo.decay = 1.5;
    CHECK(bx_ema_callback_new(&eo) == NULL);
    CHECK(strstr(bx_errmsg(), "decay should be in [0, 1], got 1.5"));
}

/* EMA: decay 0.5 every 2 steps over 5 steps -> updates after steps 2 and 4 */
typedef struct ema_rec {
    bx_module *seq;
    double after[8][32];
    int n;
} ema_rec;
static bx_status er_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)o, (void)b, (void)i;
    ema_rec *r = self;
    int n;
    flat_params(r->seq, r->after[bx_trainer_global_step(tr)], &n);
    r->n = n;
    return BX_OK;
}
static const bx_callback_ops ER_OPS = {.name = "EmaRec", .on_train_batch_end = er_batch_end};

static void test_ema(void) {
    tm m;
    tm_init(&m, false);
    ema_rec r = {.seq = m.seq};
    bx_ema_callback_opts eo = BX_EMA_CALLBACK_OPTS_INIT;
    eo.decay = 0.5;
    eo.every_n_steps = 2;
    bx_callback *cbs[3] = {bx_callback_new(&ER_OPS, &r), bx_ema_callback_new(&eo), bx_callback_new(&REC_OPS, &m)};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.callbacks = cbs;
    o.num_callbacks = 3;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.enable_model_summary = false;
    o.logger_default = false;
    bx_trainer *tr = bx_trainer_new(&o);
    bx_dataset *d = ds(10);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *l = bx_loader_new(d, &lo);
    bx_model model = {&TM_OPS, &m};
    CHECK_OK(bx_trainer_fit(tr, &model, l, NULL, NULL));
    bx_callback *cb = find(tr, "EMAWeightAveraging");
    CHECK(bx_ema_callback_is(cb));
    CHECK_EQ_INT(bx_ema_callback_n_averaged(cb), 2);
    double fin[32];
    int n;
    flat_params(m.seq, fin, &n);
    for (int j = 0; j < n; j++) {
        float a = (float)r.after[2][j];
        a = 0.5f * a + 0.5f * (float)r.after[4][j];
        CHECK_NEAR(fin[j], a, 1e-6);
    }
    bx_trainer_free(tr);
    bx_loader_free(l);
    bx_dataset_free(d);
    bx_module_free(m.seq);
}

/* EMA resumed from the end of epoch 0 continues the same average */
static void test_ema_resume(void) {
    char dir[] = "/tmp/blixt_ema_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[256];
    snprintf(path, sizeof path, "%s/mid.ckpt", dir);
    bx_ema_callback_opts eo = BX_EMA_CALLBACK_OPTS_INIT;
    eo.decay = 0.7;
    eo.every_n_steps = 2;
    eo.warmup = true;
    tm a, b;
    tm_init(&a, true);
    a.save_at_epoch = 0;
    a.save_path = path;
    CHECK_OK(run(&a, bx_ema_callback_new(&eo), 3, 1, NULL, NULL));
    tm_init(&b, true);
    bx_trainer *tr = NULL;
    CHECK_OK(run(&b, bx_ema_callback_new(&eo), 3, 1, path, &tr));
    CHECK_EQ_INT(bx_ema_callback_n_averaged(find(tr, "EMAWeightAveraging")), 7); /* 15 steps / 2 */
    double pa[32], pb[32];
    int n;
    flat_params(a.seq, pa, &n);
    flat_params(b.seq, pb, &n);
    for (int j = 0; j < n; j++) CHECK(pa[j] == pb[j]);
    bx_trainer_free(tr);
    bx_module_free(a.seq);
    bx_module_free(b.seq);
    unlink(path);
    rmdir(dir);
}

int main(void) {
    test_pin();
    test_no_bn();
    test_replaces_scheduler();
    test_per_group();
    test_resume(false);
    test_resume(true);
    test_avg_fn();
    test_fraction();
    test_never_starts();
    test_errors();
    test_ema();
    test_ema_resume();
    return tu_finish("test_swa_callback");
}
