/* LearningRateMonitor: key naming (spec/callbacks.md §3 table, 1.9.5
 * group names), momentum / Adam betas, cadence per logging_interval,
 * logger records (step = batches_that_stepped), the no-logger error, bad
 * options, and the base -> base/pg1 rename when a group is added. */
#include "cb_util.h"

static bx_callback *lrm(const char *interval, bool mom) {
    bx_lr_monitor_opts o = BX_LR_MONITOR_OPTS_INIT;
    o.logging_interval = interval;
    o.log_momentum = mom;
    return bx_lr_monitor_new(&o);
}

static int key_index(const bx_callback *cb, const char *k) {
    for (int i = 0; i < bx_lr_monitor_num_keys(cb); i++)
        if (!strcmp(bx_lr_monitor_key(cb, i), k)) return i;
    return -1;
}

static int64_t nvalues(const bx_callback *cb, const char *k) {
    int64_t n = -1;
    int i = key_index(cb, k);
    if (i >= 0) bx_lr_monitor_values(cb, i, &n);
    return n;
}

/* Runs a fit with the LRM alone; returns the Trainer (caller frees). */
static bx_trainer *run(cu_model *m, bx_callback *cb, cu_logger *lg, int64_t epochs, int64_t every, int ntrain) {
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = epochs;
    o.log_every_n_steps = every;
    o.num_sanity_val_steps = 0;
    o.enable_progress_bar = false;
    bx_callback *cbs[1] = {cb};
    bx_trainer *tr = NULL;
    CHECK_OK(cu_fit(m, &o, cbs, 1, lg, ntrain, 2, &tr));
    return tr;
}

static bx_callback *find_lrm(bx_trainer *tr) {
    for (int i = 0; i < bx_trainer_num_callbacks(tr); i++)
        if (!strcmp(bx_callback_name(bx_trainer_callback(tr, i)), "LearningRateMonitor")) return bx_trainer_callback(tr, i);
    return NULL;
}

static void test_no_scheduler_sgd_momentum(void) {
    /* 1.9.5: an optimizer without a scheduler is logged at every epoch start
     * and every logging step (lr_sgd_momentum's trace) */
    cu_model m;
    cu_model_init(&m);
    m.momentum = 0.9;
    cu_logger *lg = calloc(1, sizeof *lg);
    bx_trainer *tr = run(&m, lrm(NULL, true), lg, 2, 1, 4);
    bx_callback *cb = find_lrm(tr);
    CHECK_EQ_INT(bx_lr_monitor_num_keys(cb), 1);
    CHECK(key_index(cb, "lr-SGD") == 0);
    CHECK_EQ_INT(nvalues(cb, "lr-SGD"), 6); /* 2 x (epoch start + 2 batches) */
    CHECK_EQ_INT(bx_lr_monitor_num_momentum(cb), 1);
    double v = 0;
    CHECK(!strcmp(bx_lr_monitor_momentum_key(cb, 0), "lr-SGD-momentum"));
    CHECK(bx_lr_monitor_momentum_value(cb, 0, &v));
    CHECK_NEAR(v, 0.9, 1e-12);
    /* logger records: epoch start at step 0, batch 0 at step 0, batch 1 at step 1, epoch 1 start at 2 */
    int lrrec = 0;
    int64_t steps[8];
    for (int i = 0; i < lg->nrec && lrrec < 8; i++) {
        int k = cu_find(&lg->rec[i], "lr-SGD");
        if (k < 0) continue;
        CHECK_NEAR(lg->rec[i].values[k], 0.1, 1e-12);
        CHECK(cu_find(&lg->rec[i], "lr-SGD-momentum") == k + 1);
        steps[lrrec++] = lg->rec[i].step;
    }
    CHECK_EQ_INT(lrrec, 6);
    CHECK_EQ_INT(steps[0], 0);
    CHECK_EQ_INT(steps[1], 0);
    CHECK_EQ_INT(steps[2], 1);
    CHECK_EQ_INT(steps[3], 2);
    CHECK_EQ_INT(steps[4], 2);
    /* not in callback_metrics */
    double x;
    CHECK(bx_trainer_metric(tr, "lr-SGD", &x) != BX_OK);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    free(lg);
}

static void test_names(void) {
    struct {
        int opt_type, num_opts, groups, sched;
        const char *gn0, *gn1, *sched_name;
        bool mom;
        const char *keys[4];
        const char *mkeys[4];
    } cases[] = {
        {0, 1, 1, 1, NULL, NULL, NULL, false, {"lr-SGD"}, {"lr-SGD-momentum"}},
        {1, 2, 1, 0, NULL, NULL, NULL, true, {"lr-Adam", "lr-Adam-1"}, {"lr-Adam-momentum", "lr-Adam-1-momentum"}},
        {1, 2, 1, 1, NULL, NULL, NULL, false, {"lr-Adam", "lr-Adam-1"}, {"lr-Adam-momentum", "lr-Adam-1-momentum"}},
        {0, 1, 2, 1, NULL, NULL, NULL, false, {"lr-SGD/pg1", "lr-SGD/pg2"}, {"lr-SGD/pg1-momentum", "lr-SGD/pg2-momentum"}},
        {0, 1, 2, 0, "head", "body", NULL, false, {"lr-SGD/head", "lr-SGD/body"}, {"lr-SGD/head-momentum"}},
        {0, 1, 1, 1, NULL, NULL, "my_logging_name", false, {"my_logging_name"}, {"my_logging_name-momentum"}},
        {0, 2, 1, 1, NULL, NULL, "my_lr", false, {"my_lr", "lr-SGD"}, {"my_lr-momentum"}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cu_model m;
        cu_model_init(&m);
        m.opt_type = cases[c].opt_type;
        m.num_opts = cases[c].num_opts;
        m.groups = cases[c].groups;
        m.sched = cases[c].sched;
        m.group_names[0] = cases[c].gn0;
        m.group_names[1] = cases[c].gn1;
        m.sched_name = cases[c].sched_name;
        cu_logger *lg = calloc(1, sizeof *lg);
        bx_trainer *tr = run(&m, lrm(NULL, cases[c].mom), lg, 1, 1, 2);
        bx_callback *cb = find_lrm(tr);
        int nk = 0;
        while (nk < 4 && cases[c].keys[nk]) nk++;
        CHECK_EQ_INT(bx_lr_monitor_num_keys(cb), nk);
        for (int k = 0; k < nk; k++) {
            if (key_index(cb, cases[c].keys[k]) != k) fprintf(stderr, "case %zu: key %s missing\n", c, cases[c].keys[k]);
            CHECK(key_index(cb, cases[c].keys[k]) == k);
        }
        for (int k = 0; k < 4 && cases[c].mkeys[k]; k++) {
            bool found = false;
            for (int i = 0; i < bx_lr_monitor_num_momentum(cb); i++)
                found = found || !strcmp(bx_lr_monitor_momentum_key(cb, i), cases[c].mkeys[k]);
            CHECK(found);
        }
        if (cases[c].mom && cases[c].opt_type == 1) {
            double v = 0;
            CHECK(bx_lr_monitor_momentum_value(cb, 0, &v));
            CHECK_NEAR(v, 0.8, 1e-12); /* betas[0] */
        }
        if (!cases[c].mom) {
            double v;
            CHECK(!bx_lr_monitor_momentum_value(cb, 0, &v)); /* None */
        }
        bx_trainer_free(tr);
        bx_module_free(m.lin);
        free(lg);
    }
}

static void test_cadence(void) {
    /* StepLR per epoch, 3 epochs x 2 batches */
    struct {
        const char *interval;
        bx_interval sched_interval;
        int64_t every;
        int64_t expect;
    } cases[] = {
        {NULL, BX_INTERVAL_EPOCH, 1, 3},    /* epoch starts only */
        {"epoch", BX_INTERVAL_EPOCH, 1, 3}, /* epoch starts */
        {"step", BX_INTERVAL_EPOCH, 1, 6},  /* every batch */
        {"step", BX_INTERVAL_EPOCH, 2, 3},  /* (batches_that_stepped + 1) % 2 == 0 */
        {NULL, BX_INTERVAL_STEP, 2, 3},     /* step scheduler follows the step cadence */
        {"epoch", BX_INTERVAL_STEP, 1, 3},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        cu_model m;
        cu_model_init(&m);
        m.sched = 1;
        m.sched_interval = cases[c].sched_interval;
        cu_logger *lg = calloc(1, sizeof *lg);
        bx_trainer *tr = run(&m, lrm(cases[c].interval, false), lg, 3, cases[c].every, 4);
        bx_callback *cb = find_lrm(tr);
        CHECK_EQ_INT(nvalues(cb, "lr-SGD"), cases[c].expect);
        if (c == 0) {
            int64_t n;
            const double *v = bx_lr_monitor_values(cb, 0, &n);
            CHECK_NEAR(v[0], 0.1, 1e-12);
            CHECK_NEAR(v[1], 0.05, 1e-12);
            CHECK_NEAR(v[2], 0.025, 1e-12);
            /* the records sit at steps 0, 2, 4 */
            int k = 0;
            for (int i = 0; i < lg->nrec; i++)
                if (cu_find(&lg->rec[i], "lr-SGD") >= 0) CHECK_EQ_INT(lg->rec[i].step, 2 * k++);
            CHECK_EQ_INT(k, 3);
        }
        bx_trainer_free(tr);
        bx_module_free(m.lin);
        free(lg);
    }
}

static void test_errors(void) {
    bx_lr_monitor_opts o = BX_LR_MONITOR_OPTS_INIT;
    o.logging_interval = "batch";
    CHECK(bx_lr_monitor_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "logging_interval") != NULL);
    CHECK(strstr(bx_errmsg(), "batch") != NULL);
    /* no logger: error at on_train_start */
    cu_model m;
    cu_model_init(&m);
    bx_trainer_opts to = BX_TRAINER_OPTS_INIT;
    to.max_epochs = 1;
    to.enable_progress_bar = false;
    bx_callback *cbs[1] = {lrm(NULL, false)};
    bx_trainer *tr = NULL;
    CHECK_ERR(cu_fit(&m, &to, cbs, 1, NULL, 2, 2, &tr), BX_ERR_INVALID, "no logger");
    CHECK_EQ_INT(bx_lr_monitor_num_keys(find_lrm(tr)), 0);
    bx_trainer_free(tr);
    /* duplicate group names */
    m.groups = 2;
    m.group_names[0] = m.group_names[1] = "same";
    cu_logger *lg = calloc(1, sizeof *lg);
    bx_trainer_opts t2 = BX_TRAINER_OPTS_INIT;
    t2.max_epochs = 1;
    t2.enable_progress_bar = false;
    bx_callback *cbs2[1] = {lrm(NULL, false)};
    CHECK_ERR(cu_fit(&m, &t2, cbs2, 1, lg, 2, 2, NULL), BX_ERR_INVALID, "same");
    free(lg);
    /* accessors on another callback */
    bx_callback *other = bx_lambda_callback_new(NULL, NULL);
    CHECK_EQ_INT(bx_lr_monitor_num_keys(other), 0);
    CHECK(bx_lr_monitor_key(other, 0) == NULL);
    bx_callback_free(other);
    bx_module_free(m.lin);
}

/* A finetuning-like callback: adds the bias as a new group at epoch 1. */
static bx_status add_group_at_1(void *self, bx_trainer *tr) {
    cu_model *m = self;
    if (bx_trainer_current_epoch(tr) != 1) return BX_OK;
    bx_tensor *b = bx_module_param(m->lin, "bias");
    bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
    g.lr = 0.01;
    return bx_optimizer_add_group(bx_trainer_optimizer(tr, 0), &b, 1, &g);
}

static void test_rename_on_new_group(void) {
    cu_model m;
    cu_model_init(&m);
    m.bias_later = true;
    bx_callback_ops ft = {.on_train_epoch_start = add_group_at_1};
    cu_logger *lg = calloc(1, sizeof *lg);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 3;
    o.log_every_n_steps = 50;
    o.num_sanity_val_steps = 0;
    o.enable_progress_bar = false;
    bx_callback *cbs[2] = {bx_lambda_callback_new(&ft, &m), lrm(NULL, false)};
    bx_trainer *tr = NULL;
    CHECK_OK(cu_fit(&m, &o, cbs, 2, lg, 4, 2, &tr));
    bx_callback *cb = find_lrm(tr);
    CHECK_EQ_INT(bx_lr_monitor_num_keys(cb), 2);
    CHECK(key_index(cb, "lr-SGD") < 0);
    CHECK_EQ_INT(nvalues(cb, "lr-SGD/pg1"), 3); /* history of "lr-SGD" kept */
    CHECK_EQ_INT(nvalues(cb, "lr-SGD/pg2"), 2);
    int64_t n;
    const double *v = bx_lr_monitor_values(cb, key_index(cb, "lr-SGD/pg2"), &n);
    CHECK_NEAR(v[0], 0.01, 1e-12);
    /* the first record used the old name */
    CHECK(cu_find(&lg->rec[0], "lr-SGD") == 0);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    free(lg);
}

/* Logging allocates nothing in steady state (only the histories grow, by
 * doubling): allocations between a callback before and one after the LRM. */
typedef struct allocs {
    uint64_t before;
    int64_t batches, total;
} allocs;
static bx_status a_before(void *ud, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)tr;
    (void)b;
    (void)i;
    ((allocs *)ud)->before = bx_alloc_count();
    return BX_OK;
}
static bx_status a_after(void *ud, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)tr;
    (void)b;
    (void)i;
    allocs *a = ud;
    if (a->batches++ >= 4) a->total += (int64_t)(bx_alloc_count() - a->before);
    return BX_OK;
}

static void test_steady_state_allocs(void) {
    cu_model m;
    cu_model_init(&m);
    m.sched = 1;
    m.sched_interval = BX_INTERVAL_STEP;
    allocs a;
    memset(&a, 0, sizeof a);
    bx_callback_ops hb = {.on_train_batch_start = a_before}, ha = {.on_train_batch_start = a_after};
    cu_logger *lg = calloc(1, sizeof *lg);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.log_every_n_steps = 1;
    o.num_sanity_val_steps = 0;
    o.enable_progress_bar = false;
    bx_callback *cbs[3] = {bx_lambda_callback_new(&hb, &a), lrm(NULL, true), bx_lambda_callback_new(&ha, &a)};
    CHECK_OK(cu_fit(&m, &o, cbs, 3, lg, 80, 2, NULL));
    CHECK_EQ_INT(a.batches, 40);
    CHECK(a.total <= 2); /* history regrowth at 17 and 33 values */
    free(lg);
    bx_module_free(m.lin);
}

int main(void) {
    test_steady_state_allocs();
    test_no_scheduler_sgd_momentum();
    test_names();
    test_cadence();
    test_errors();
    test_rename_on_new_group();
    return tu_finish("test_lr_monitor");
}
