/* test_sched.c - LR schedulers against the closed forms of golden rules
 * S1-S7, chainable composition with other lr edits, groups added at run
 * time, initial_lr handling, errors. */
#include "test_util.h"

static const double PI = 3.141592653589793;

typedef struct fixture {
    bx_tensor *p, *q;
    bx_optimizer *o;
} fixture;

static void fx_init(fixture *f, bool adam) {
    int64_t s[1] = {2};
    f->p = bx_param_new(1, s);
    f->q = bx_param_new(1, s);
    if (adam) {
        bx_adam_opts ao = BX_ADAM_OPTS_INIT;
        ao.lr = 0.1;
        f->o = bx_adam_new(&ao);
    } else {
        bx_sgd_opts so = BX_SGD_OPTS_INIT;
        so.lr = 0.1;
        so.momentum = 0.9;
        f->o = bx_sgd_new(&so);
    }
    CHECK_OK(bx_optimizer_add_group(f->o, &f->p, 1, NULL));
}

static void fx_free(fixture *f) {
    bx_optimizer_free(f->o);
    bx_tensor_free(f->p);
    bx_tensor_free(f->q);
}

/* lr used by iterations 0..n-1 (scheduler stepped after each). */
static void run(bx_scheduler *s, bx_optimizer *o, int n, double *lr, double *mom, const double *metric) {
    for (int i = 0; i < n; i++) {
        lr[i] = bx_optimizer_get_lr(o, 0);
        if (mom) bx_optimizer_get_momentum(o, 0, &mom[i]);
        CHECK_OK(bx_optimizer_step(o));
        if (metric) CHECK_OK(bx_scheduler_step_metric(s, metric[i]));
        else CHECK_OK(bx_scheduler_step(s));
        CHECK(bx_scheduler_last_lr(s, 0) == bx_optimizer_get_lr(o, 0));
    }
}

static void check_series(const char *what, const double *got, const double *want, int n) {
    for (int i = 0; i < n; i++) {
        if (!(fabs(got[i] - want[i]) <= 1e-14 + 1e-12 * fabs(want[i])))
            fprintf(stderr, "%s: iteration %d: %.17g vs %.17g\n", what, i, got[i], want[i]);
        CHECK(fabs(got[i] - want[i]) <= 1e-14 + 1e-12 * fabs(want[i]));
    }
}

#define T 30

static void test_closed_forms(void) {
    double lr[T], want[T], mom[T], wm[T];
    fixture f;
    /* StepLR */
    fx_init(&f, false);
    bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
    so.step_size = 7;
    so.gamma = 0.5;
    bx_scheduler *s = bx_step_lr_new(f.o, &so);
    CHECK(strcmp(bx_scheduler_type(s), "StepLR") == 0);
    run(s, f.o, T, lr, NULL, NULL);
    for (int e = 0; e < T; e++) want[e] = 0.1 * pow(0.5, e / 7);
    check_series("StepLR", lr, want, T);
    CHECK_EQ_INT(bx_scheduler_last_epoch(s), T);
    bx_scheduler_free(s);
    fx_free(&f);
    /* MultiStepLR with a repeated milestone */
    fx_init(&f, false);
    int64_t ms[4] = {5, 12, 20, 12};
    bx_multistep_lr_opts mo = BX_MULTISTEP_LR_OPTS_INIT;
    mo.milestones = ms;
    mo.n_milestones = 4;
    mo.gamma = 0.3;
    s = bx_multistep_lr_new(f.o, &mo);
    run(s, f.o, T, lr, NULL, NULL);
    for (int e = 0; e < T; e++) want[e] = 0.1 * pow(0.3, (e >= 5) + 2 * (e >= 12) + (e >= 20));
    check_series("MultiStepLR", lr, want, T);
    bx_scheduler_free(s);
    fx_free(&f);
    /* ExponentialLR */
    fx_init(&f, false);
    bx_exponential_lr_opts eo = BX_EXPONENTIAL_LR_OPTS_INIT;
    eo.gamma = 0.9;
    s = bx_exponential_lr_new(f.o, &eo);
    run(s, f.o, T, lr, NULL, NULL);
    for (int e = 0; e < T; e++) want[e] = 0.1 * pow(0.9, e);
    check_series("ExponentialLR", lr, want, T);
    bx_scheduler_free(s);
    fx_free(&f);
    /* CosineAnnealingLR, not clamped at T_max */
    fx_init(&f, false);
    bx_cosine_lr_opts co = BX_COSINE_LR_OPTS_INIT;
    co.T_max = 10;
    co.eta_min = 1e-3;
    s = bx_cosine_lr_new(f.o, &co);
    run(s, f.o, T, lr, NULL, NULL);
    for (int e = 0; e < T; e++) want[e] = 1e-3 + (0.1 - 1e-3) * (1 + cos(PI * e / 10)) / 2;
    check_series("CosineAnnealingLR", lr, want, T);
    bx_scheduler_free(s);
    fx_free(&f);
    /* CosineAnnealingWarmRestarts */
    fx_init(&f, false);
    bx_cosine_warm_restarts_opts wo = BX_COSINE_WARM_RESTARTS_OPTS_INIT;
    wo.T_0 = 5;
    wo.T_mult = 2;
    wo.eta_min = 1e-3;
    s = bx_cosine_warm_restarts_new(f.o, &wo);
    run(s, f.o, T, lr, NULL, NULL);
    for (int e = 0, tcur = 0, ti = 5; e < T; e++) {
        want[e] = 1e-3 + (0.1 - 1e-3) * (1 + cos(PI * tcur / ti)) / 2;
        if (++tcur >= ti) {
            tcur -= ti;
            ti *= 2;
        }
    }
    check_series("CosineAnnealingWarmRestarts", lr, want, T);
    bx_scheduler_free(s);
    fx_free(&f);
    /* LinearLR */
    fx_init(&f, false);
    bx_linear_lr_opts lo = BX_LINEAR_LR_OPTS_INIT;
    lo.start_factor = 1.0;
    lo.end_factor = 0.05;
    lo.total_iters = 20;
    s = bx_linear_lr_new(f.o, &lo);
    run(s, f.o, T, lr, NULL, NULL);
    for (int e = 0; e < T; e++) want[e] = 0.1 * (1.0 + (0.05 - 1.0) * (e < 20 ? e : 20) / 20.0);
    check_series("LinearLR", lr, want, T);
    bx_scheduler_free(s);
    fx_free(&f);
    /* OneCycleLR on Adam: momentum is betas[0] */
    fx_init(&f, true);
    bx_one_cycle_lr_opts oo = BX_ONE_CYCLE_LR_OPTS_INIT;
    oo.max_lr = 0.1;
    oo.total_steps = T;
    s = bx_one_cycle_lr_new(f.o, &oo);
    run(s, f.o, T, lr, mom, NULL);
    for (int e = 0; e < T; e++) {
        double init = 0.1 / 25, min = init / 1e4, pct, a0, a1, m0, m1;
        if (e <= 8) {
            pct = e / 8.0;
            a0 = init, a1 = 0.1, m0 = 0.95, m1 = 0.85;
        } else {
            pct = (e - 8.0) / (29 - 8.0);
            a0 = 0.1, a1 = min, m0 = 0.85, m1 = 0.95;
        }
        want[e] = a1 + (a0 - a1) / 2 * (cos(PI * pct) + 1);
        wm[e] = m1 + (m0 - m1) / 2 * (cos(PI * pct) + 1);
    }
    check_series("OneCycleLR", lr, want, T);
    check_series("OneCycleLR momentum", mom, wm, T);
    /* stepping past total_steps is an error that changes nothing */
    CHECK_ERR(bx_scheduler_step(s), BX_ERR_STATE, "tried to step 32 times");
    CHECK_EQ_INT(bx_scheduler_last_epoch(s), T);
    bx_scheduler_free(s);
    fx_free(&f);
}

static double inv(void *ud, int64_t e) { return *(double *)ud / (1.0 + (double)e); }
static double one(void *ud, int64_t e) {
    (void)ud;
    (void)e;
    return 1.0;
}

static void test_lambda(void) {
    fixture f;
    fx_init(&f, false);
    CHECK_OK(bx_optimizer_add_group(f.o, &f.q, 1, NULL));
    double k = 2.0, lr[T], want[T];
    bx_lr_lambda fns[2] = {{inv, &k}, {one, NULL}};
    bx_lambda_lr_opts lo = BX_LAMBDA_LR_OPTS_INIT;
    lo.per_group = fns;
    lo.n_per_group = 1;
    CHECK(bx_lambda_lr_new(f.o, &lo) == NULL);
    CHECK(strstr(bx_errmsg(), "expected 2 lr_lambdas, but got 1") != NULL);
    lo.n_per_group = 2;
    bx_scheduler *s = bx_lambda_lr_new(f.o, &lo);
    run(s, f.o, T, lr, NULL, NULL);
    for (int e = 0; e < T; e++) want[e] = 0.1 * 2.0 / (1.0 + e);
    check_series("LambdaLR", lr, want, T);
    CHECK(bx_optimizer_get_lr(f.o, 1) == 0.1);
    bx_scheduler_free(s);
    fx_free(&f);
}

static void test_plateau(void) {
    fixture f;
    fx_init(&f, false);
    bx_plateau_opts po = BX_PLATEAU_OPTS_INIT;
    po.factor = 0.5;
    po.patience = 2;
    po.cooldown = 1;
    po.min_lr = 0.01;
    bx_scheduler *s = bx_plateau_new(f.o, &po);
    CHECK(bx_scheduler_needs_metric(s));
    CHECK_ERR(bx_scheduler_step(s), BX_ERR_INVALID, "use bx_scheduler_step_metric");
    CHECK(bx_scheduler_last_lr(s, 0) == 0.1);
    double metric[T], lr[T], want[T];
    for (int i = 0; i < T; i++) metric[i] = 1.0 / (1 + (i < 6 ? i : 6)) + (i % 4 == 0 ? 1e-6 : 0);
    run(s, f.o, T, lr, NULL, metric);
    /* S6 simulated */
    double best = INFINITY, cur = 0.1;
    int bad = 0, cool = 0;
    for (int i = 0; i < T; i++) {
        want[i] = cur;
        double a = metric[i];
        if (a < best * (1 - 1e-4)) {
            best = a;
            bad = 0;
        } else {
            bad++;
        }
        if (cool > 0) {
            cool--;
            bad = 0;
        }
        if (bad > 2) {
            double n = fmax(cur * 0.5, 0.01);
            if (cur - n > 1e-8) cur = n;
            cool = 1;
            bad = 0;
        }
    }
    check_series("ReduceLROnPlateau", lr, want, T);
    CHECK(lr[T - 1] == 0.01); /* reached min_lr */
    bx_scheduler_free(s);
    fx_free(&f);
}

static void test_swalr(void) {
    fixture f;
    fx_init(&f, false);
    bx_optimizer_set_lr(f.o, 0, 0.07);
    bx_swalr_opts wo = BX_SWALR_OPTS_INIT;
    wo.swa_lr = 0.02;
    wo.anneal_epochs = 3;
    bx_scheduler *s = bx_swalr_new(f.o, &wo);
    double lr[10], want[10];
    run(s, f.o, 10, lr, NULL, NULL);
    for (int i = 0; i < 10; i++) {
        double t = i / 3.0 > 1 ? 1 : i / 3.0, a = (1 - cos(PI * t)) / 2;
        want[i] = (1 - a) * 0.07 + a * 0.02;
    }
    check_series("SWALR", lr, want, 10);
    double v;
    CHECK_OK(bx_optimizer_group_get(f.o, 0, "swa_lr", &v));
    CHECK(v == 0.02);
    bx_scheduler_free(s);
    fx_free(&f);
}

static void test_chainable(void) {
    /* StepLR multiplies the current lr: an external edit carries on */
    fixture f;
    fx_init(&f, false);
    bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
    so.step_size = 2;
    so.gamma = 0.5;
    bx_scheduler *s = bx_step_lr_new(f.o, &so);
    CHECK_OK(bx_scheduler_step(s)); /* e1: 0.1 */
    CHECK_OK(bx_optimizer_set_lr(f.o, 0, 0.04));
    CHECK_OK(bx_scheduler_step(s)); /* e2: 0.04*0.5 */
    CHECK(bx_optimizer_get_lr(f.o, 0) == 0.04 * 0.5);
    /* a group added later is stepped too (StepLR reads every group) */
    bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
    g.lr = 0.2;
    CHECK_OK(bx_optimizer_add_group(f.o, &f.q, 1, &g));
    CHECK_OK(bx_scheduler_step(s)); /* e3: unchanged */
    CHECK_OK(bx_scheduler_step(s)); /* e4: x0.5 */
    CHECK(bx_optimizer_get_lr(f.o, 1) == 0.1);
    CHECK_EQ_INT(bx_scheduler_num_last_lr(s), 2);
    CHECK(bx_scheduler_last_lr(s, 1) == 0.1);
    CHECK(!bx_optimizer_group_has(f.o, 1, "initial_lr"));
    /* initial_lr was set by the constructor and base_lrs keep one entry */
    double v;
    CHECK_OK(bx_optimizer_group_get(f.o, 0, "initial_lr", &v));
    CHECK(v == 0.1);
    bx_state *sd = bx_scheduler_state_dict(s);
    CHECK_EQ_INT(bx_state_len(bx_state_get(sd, "base_lrs")), 1);
    CHECK_EQ_INT(bx_state_len(bx_state_get(sd, "_last_lr")), 2);
    bx_state_free(sd);
    bx_scheduler_free(s);
    /* a second scheduler keeps the existing initial_lr (setdefault) */
    CHECK_OK(bx_optimizer_group_set(f.o, 0, "initial_lr", 0.3));
    bx_exponential_lr_opts eo = BX_EXPONENTIAL_LR_OPTS_INIT;
    eo.gamma = 0.5;
    s = bx_exponential_lr_new(f.o, &eo);
    CHECK_OK(bx_optimizer_group_get(f.o, 0, "initial_lr", &v));
    CHECK(v == 0.3);
    CHECK_OK(bx_optimizer_group_get(f.o, 1, "initial_lr", &v));
    CHECK(v == 0.1);
    bx_scheduler_free(s);
    /* OneCycleLR/SWALR need their keys in every group */
    bx_swalr_opts wo = BX_SWALR_OPTS_INIT;
    wo.swa_lr = 0.05;
    s = bx_swalr_new(f.o, &wo);
    int64_t sh[1] = {1};
    bx_tensor *r = bx_param_new(1, sh);
    CHECK_OK(bx_optimizer_add_group(f.o, &r, 1, NULL));
    CHECK_ERR(bx_scheduler_step(s), BX_ERR_STATE, "SWALR: param group 2 has no 'swa_lr'");
    bx_scheduler_free(s);
    bx_plateau_opts po = BX_PLATEAU_OPTS_INIT;
    po.patience = 0;
    bx_optimizer *o2 = bx_adam_new(NULL);
    CHECK_OK(bx_optimizer_add_group(o2, &f.p, 1, NULL));
    s = bx_plateau_new(o2, &po);
    CHECK_OK(bx_scheduler_step_metric(s, 1.0));
    CHECK_OK(bx_optimizer_add_group(o2, &f.q, 1, NULL));
    CHECK_ERR(bx_scheduler_step_metric(s, 2.0), BX_ERR_STATE, "param group 1 has no min_lr");
    bx_scheduler_free(s);
    bx_optimizer_free(o2);
    bx_tensor_free(r);
    fx_free(&f);
}

static void test_errors(void) {
    fixture f;
    fx_init(&f, false);
    bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
    CHECK(bx_step_lr_new(f.o, &so) == NULL);
    CHECK(strstr(bx_errmsg(), "StepLR: step_size is required") != NULL);
    bx_exponential_lr_opts eo = BX_EXPONENTIAL_LR_OPTS_INIT;
    CHECK(bx_exponential_lr_new(f.o, &eo) == NULL);
    CHECK(strstr(bx_errmsg(), "gamma is required") != NULL);
    bx_cosine_lr_opts co = BX_COSINE_LR_OPTS_INIT;
    CHECK(bx_cosine_lr_new(f.o, &co) == NULL);
    bx_cosine_warm_restarts_opts wo = BX_COSINE_WARM_RESTARTS_OPTS_INIT;
    wo.T_0 = 3;
    wo.T_mult = 0;
    CHECK(bx_cosine_warm_restarts_new(f.o, &wo) == NULL);
    CHECK(strstr(bx_errmsg(), "T_mult >= 1") != NULL);
    bx_lambda_lr_opts lo = BX_LAMBDA_LR_OPTS_INIT;
    CHECK(bx_lambda_lr_new(f.o, &lo) == NULL);
    bx_linear_lr_opts li = BX_LINEAR_LR_OPTS_INIT;
    li.start_factor = 1.5;
    CHECK(bx_linear_lr_new(f.o, &li) == NULL);
    CHECK(strstr(bx_errmsg(), "start_factor") != NULL);
    bx_one_cycle_lr_opts oo = BX_ONE_CYCLE_LR_OPTS_INIT;
    oo.total_steps = 10;
    CHECK(bx_one_cycle_lr_new(f.o, &oo) == NULL);
    CHECK(strstr(bx_errmsg(), "max_lr is required") != NULL);
    oo.max_lr = 0.1;
    oo.total_steps = 0;
    CHECK(bx_one_cycle_lr_new(f.o, &oo) == NULL);
    CHECK(strstr(bx_errmsg(), "total_steps OR (epochs AND steps_per_epoch)") != NULL);
    oo.total_steps = 10;
    oo.pct_start = 1.5;
    CHECK(bx_one_cycle_lr_new(f.o, &oo) == NULL);
    oo.pct_start = 0.3;
    double two[2] = {0.1, 0.2};
    oo.max_lrs = two;
    oo.n_max_lrs = 2;
    CHECK(bx_one_cycle_lr_new(f.o, &oo) == NULL);
    CHECK(strstr(bx_errmsg(), "expected 1 values for max_lr, got 2") != NULL);
    bx_plateau_opts po = BX_PLATEAU_OPTS_INIT;
    po.factor = 1.0;
    CHECK(bx_plateau_new(f.o, &po) == NULL);
    CHECK(strstr(bx_errmsg(), "factor should be < 1.0") != NULL);
    bx_swalr_opts sw = BX_SWALR_OPTS_INIT;
    CHECK(bx_swalr_new(f.o, &sw) == NULL);
    CHECK(strstr(bx_errmsg(), "swa_lr is required") != NULL);
    /* resuming (last_epoch != -1) needs initial_lr in every group */
    so.step_size = 2;
    so.last_epoch = 5;
    CHECK(bx_step_lr_new(f.o, &so) == NULL);
    CHECK(strstr(bx_errmsg(), "param 'initial_lr' is not specified in param_groups[0]") != NULL);
    CHECK_OK(bx_optimizer_group_set(f.o, 0, "initial_lr", 0.1));
    bx_scheduler *s = bx_step_lr_new(f.o, &so);
    CHECK(s != NULL);
    CHECK_EQ_INT(bx_scheduler_last_epoch(s), 6); /* the initial step: 5 -> 6, a multiple of 2: x0.1 */
    CHECK_NEAR(bx_optimizer_get_lr(f.o, 0), 0.01, 1e-15);
    CHECK_ERR(bx_scheduler_step_metric(s, 1.0), BX_ERR_INVALID, "StepLR: step takes no metric");
    bx_scheduler_free(s);
    bx_scheduler_free(NULL);
    bx_optimizer *empty = bx_adam_new(NULL);
    CHECK(bx_exponential_lr_new(empty, &(bx_exponential_lr_opts){0.5, -1}) == NULL);
    CHECK(strstr(bx_errmsg(), "the optimizer has no param groups") != NULL);
    bx_optimizer_free(empty);
    fx_free(&f);
}

int main(void) {
    test_closed_forms();
    test_lambda();
    test_plateau();
    test_swalr();
    test_chainable();
    test_errors();
    return tu_finish("test_sched");
}
