/* test_optim_state.c - optimizer and scheduler state dicts: torch's exact
 * layout (expected JSON printed by PyTorch 1.13, tensors replaced by their
 * path), resume through JSON bit-identical to an uninterrupted run, clear
 * errors on bad state, and a steady-state step that allocates nothing. */
#include "test_util.h"

#include <math.h>

/* ---- helpers ----------------------------------------------------------------- */

/* Names each tensor by its path (for layout checks). */
static bx_status by_path(void *ud, const char *path, const bx_tensor *t, char *name, size_t cap) {
    (void)ud;
    (void)t;
    snprintf(name, cap, "%s", path);
    return BX_OK;
}

typedef struct store {
    bx_tensor *t[64];
    char name[64][96];
    int n;
} store;

static bx_status store_out(void *ud, const char *path, const bx_tensor *t, char *name, size_t cap) {
    store *s = ud;
    if (s->n >= 64) return BX_ERR_NOMEM;
    snprintf(s->name[s->n], sizeof s->name[0], "%s", path);
    snprintf(name, cap, "%s", path);
    s->t[s->n++] = bx_tensor_clone(t);
    return BX_OK;
}

static const bx_tensor *store_in(void *ud, const char *name) {
    store *s = ud;
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->name[i], name) == 0) return s->t[i];
    return NULL;
}

static void store_clear(store *s) {
    for (int i = 0; i < s->n; i++) bx_tensor_free(s->t[i]);
    s->n = 0;
}

/* state -> JSON (tensors into the store) -> state: what a checkpoint does. */
static bx_state *through_json(const bx_state *sd, store *st) {
    char *j = bx_state_to_json(sd, store_out, st);
    CHECK(j != NULL);
    bx_state *back = NULL;
    CHECK_OK(bx_state_from_json(j, store_in, st, &back));
    bx_free(j);
    return back;
}

static bool json_is(const bx_state *s, const char *want) {
    char *j = bx_state_to_json(s, by_path, NULL);
    bool ok = j && strcmp(j, want) == 0;
    if (!ok) fprintf(stderr, "JSON mismatch:\n got  %s\n want %s\n", j ? j : "(null)", want);
    bx_free(j);
    return ok;
}

static bx_tensor *mk(int ndim, const int64_t *shape, const float *v) {
    bx_tensor *t = bx_tensor_new(BX_F32, ndim, shape);
    memcpy(t->data, v, (size_t)bx_numel(t) * sizeof(float));
    bx_param_mark(t);
    return t;
}

static const int64_t SW[2] = {2, 2}, SB[1] = {3};
static const float W0[4] = {0.5f, -1.0f, 2.0f, 0.25f}, B0[3] = {0.1f, -0.2f, 0.3f};
static const float GW[4] = {0.1f, 0.2f, -0.3f, 0.4f}, GB[3] = {1.0f, -1.0f, 0.5f};

static void set_grads(bx_tensor *w, bx_tensor *b, int k) {
    bx_tensor *gw = bx_param_grad(w), *gb = bx_param_grad(b);
    for (int i = 0; i < 4; i++) ((float *)gw->data)[i] = GW[i] * (1.0f + 0.37f * (float)k) * (k % 2 ? -1.0f : 1.0f);
    for (int i = 0; i < 3; i++) ((float *)gb->data)[i] = GB[i] * (1.0f - 0.21f * (float)k);
}

/* ---- layouts (expected strings printed by torch 1.13) ------------------------------- */

typedef bx_optimizer *(*mk_opt)(void);
static bx_optimizer *sgd_plain(void) {
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    return bx_sgd_new(&o);
}
static bx_optimizer *sgd_mom(void) {
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    o.momentum = 0.9;
    return bx_sgd_new(&o);
}
static bx_optimizer *adam_ams(void) {
    bx_adam_opts o = BX_ADAM_OPTS_INIT;
    o.amsgrad = true;
    return bx_adam_new(&o);
}
static bx_optimizer *adamw_dflt(void) { return bx_adamw_new(NULL); }
static bx_optimizer *rms_mc(void) {
    bx_rmsprop_opts o = BX_RMSPROP_OPTS_INIT;
    o.momentum = 0.9;
    o.centered = true;
    return bx_rmsprop_new(&o);
}

static void layout_case(const char *what, mk_opt make, const bx_param_group_opts *g2, int steps, const char *want) {
    bx_tensor *w = mk(2, SW, W0), *b = mk(1, SB, B0);
    bx_optimizer *o = make();
    CHECK_OK(bx_optimizer_add_group(o, &w, 1, NULL));
    CHECK_OK(bx_optimizer_add_group(o, &b, 1, g2));
    for (int k = 0; k < steps; k++) {
        set_grads(w, b, 0);
        CHECK_OK(bx_optimizer_step(o));
    }
    bx_state *sd = bx_optimizer_state_dict(o);
    if (!json_is(sd, want)) fprintf(stderr, "  (layout case %s)\n", what);
    CHECK(json_is(sd, want));
    bx_state_free(sd);
    bx_optimizer_free(o);
    bx_tensor_free(w);
    bx_tensor_free(b);
}

static void test_optimizer_layouts(void) {
    bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
    layout_case("sgd0", sgd_plain, NULL, 0,
                "{\"state\": {}, \"param_groups\": [{\"lr\": 0.1, \"momentum\": 0, \"dampening\": 0, \"weight_decay\": 0, "
                "\"nesterov\": false, \"maximize\": false, \"foreach\": null, \"differentiable\": false, \"params\": [0]}, "
                "{\"lr\": 0.1, \"momentum\": 0, \"dampening\": 0, \"weight_decay\": 0, \"nesterov\": false, \"maximize\": "
                "false, \"foreach\": null, \"differentiable\": false, \"params\": [1]}]}");
    layout_case("sgd", sgd_plain, NULL, 1,
                "{\"state\": {\"0\": {\"momentum_buffer\": null}, \"1\": {\"momentum_buffer\": null}}, \"param_groups\": "
                "[{\"lr\": 0.1, \"momentum\": 0, \"dampening\": 0, \"weight_decay\": 0, \"nesterov\": false, \"maximize\": "
                "false, \"foreach\": null, \"differentiable\": false, \"params\": [0]}, {\"lr\": 0.1, \"momentum\": 0, "
                "\"dampening\": 0, \"weight_decay\": 0, \"nesterov\": false, \"maximize\": false, \"foreach\": null, "
                "\"differentiable\": false, \"params\": [1]}]}");
    g.lr = 0.01;
    g.momentum = 0.5;
    layout_case("sgdm", sgd_mom, &g, 1,
                "{\"state\": {\"0\": {\"momentum_buffer\": {\"__tensor__\": \"state.0.momentum_buffer\"}}, \"1\": "
                "{\"momentum_buffer\": {\"__tensor__\": \"state.1.momentum_buffer\"}}}, \"param_groups\": [{\"lr\": 0.1, "
                "\"momentum\": 0.9, \"dampening\": 0, \"weight_decay\": 0, \"nesterov\": false, \"maximize\": false, "
                "\"foreach\": null, \"differentiable\": false, \"params\": [0]}, {\"lr\": 0.01, \"momentum\": 0.5, "
                "\"dampening\": 0, \"weight_decay\": 0, \"nesterov\": false, \"maximize\": false, \"foreach\": null, "
                "\"differentiable\": false, \"params\": [1]}]}");
    g = (bx_param_group_opts)BX_PARAM_GROUP_OPTS_INIT;
    g.betas[0] = 0.5;
    g.betas[1] = 0.9;
    layout_case("adam", adam_ams, &g, 2,
                "{\"state\": {\"0\": {\"step\": 2.0, \"exp_avg\": {\"__tensor__\": \"state.0.exp_avg\"}, \"exp_avg_sq\": "
                "{\"__tensor__\": \"state.0.exp_avg_sq\"}, \"max_exp_avg_sq\": {\"__tensor__\": "
                "\"state.0.max_exp_avg_sq\"}}, \"1\": {\"step\": 2.0, \"exp_avg\": {\"__tensor__\": \"state.1.exp_avg\"}, "
                "\"exp_avg_sq\": {\"__tensor__\": \"state.1.exp_avg_sq\"}, \"max_exp_avg_sq\": {\"__tensor__\": "
                "\"state.1.max_exp_avg_sq\"}}}, \"param_groups\": [{\"lr\": 0.001, \"betas\": [0.9, 0.999], \"eps\": "
                "1e-08, \"weight_decay\": 0, \"amsgrad\": true, \"maximize\": false, \"foreach\": null, \"capturable\": "
                "false, \"differentiable\": false, \"fused\": false, \"params\": [0]}, {\"betas\": [0.5, 0.9], \"lr\": "
                "0.001, \"eps\": 1e-08, \"weight_decay\": 0, \"amsgrad\": true, \"maximize\": false, \"foreach\": null, "
                "\"capturable\": false, \"differentiable\": false, \"fused\": false, \"params\": [1]}]}");
    layout_case("adamw", adamw_dflt, NULL, 1,
                "{\"state\": {\"0\": {\"step\": 1.0, \"exp_avg\": {\"__tensor__\": \"state.0.exp_avg\"}, \"exp_avg_sq\": "
                "{\"__tensor__\": \"state.0.exp_avg_sq\"}}, \"1\": {\"step\": 1.0, \"exp_avg\": {\"__tensor__\": "
                "\"state.1.exp_avg\"}, \"exp_avg_sq\": {\"__tensor__\": \"state.1.exp_avg_sq\"}}}, \"param_groups\": "
                "[{\"lr\": 0.001, \"betas\": [0.9, 0.999], \"eps\": 1e-08, \"weight_decay\": 0.01, \"amsgrad\": false, "
                "\"foreach\": null, \"maximize\": false, \"capturable\": false, \"params\": [0]}, {\"lr\": 0.001, "
                "\"betas\": [0.9, 0.999], \"eps\": 1e-08, \"weight_decay\": 0.01, \"amsgrad\": false, \"foreach\": null, "
                "\"maximize\": false, \"capturable\": false, \"params\": [1]}]}");
    g = (bx_param_group_opts)BX_PARAM_GROUP_OPTS_INIT;
    g.momentum = 0.5;
    g.centered = 0;
    layout_case("rms", rms_mc, &g, 1,
                "{\"state\": {\"0\": {\"step\": 1, \"square_avg\": {\"__tensor__\": \"state.0.square_avg\"}, "
                "\"momentum_buffer\": {\"__tensor__\": \"state.0.momentum_buffer\"}, \"grad_avg\": {\"__tensor__\": "
                "\"state.0.grad_avg\"}}, \"1\": {\"step\": 1, \"square_avg\": {\"__tensor__\": \"state.1.square_avg\"}, "
                "\"momentum_buffer\": {\"__tensor__\": \"state.1.momentum_buffer\"}}}, \"param_groups\": [{\"lr\": 0.01, "
                "\"momentum\": 0.9, \"alpha\": 0.99, \"eps\": 1e-08, \"centered\": true, \"weight_decay\": 0, "
                "\"foreach\": null, \"maximize\": false, \"differentiable\": false, \"params\": [0]}, {\"momentum\": 0.5, "
                "\"centered\": false, \"lr\": 0.01, \"alpha\": 0.99, \"eps\": 1e-08, \"weight_decay\": 0, \"foreach\": "
                "null, \"maximize\": false, \"differentiable\": false, \"params\": [1]}]}");
}

/* ---- scheduler layouts ------------------------------------------------------------------ */

static double pow95(void *ud, int64_t e) {
    (void)ud;
    return pow(0.95, (double)e);
}

static bx_scheduler *make_sched(const char *kind, bx_optimizer *o) {
    if (!strcmp(kind, "step")) {
        bx_step_lr_opts s = BX_STEP_LR_OPTS_INIT;
        s.step_size = 3;
        s.gamma = 0.5;
        return bx_step_lr_new(o, &s);
    }
    if (!strcmp(kind, "multistep")) {
        static const int64_t ms[3] = {5, 2, 5};
        bx_multistep_lr_opts s = BX_MULTISTEP_LR_OPTS_INIT;
        s.milestones = ms;
        s.n_milestones = 3;
        s.gamma = 0.3;
        return bx_multistep_lr_new(o, &s);
    }
    if (!strcmp(kind, "exp")) {
        bx_exponential_lr_opts s = BX_EXPONENTIAL_LR_OPTS_INIT;
        s.gamma = 0.9;
        return bx_exponential_lr_new(o, &s);
    }
    if (!strcmp(kind, "cos")) {
        bx_cosine_lr_opts s = BX_COSINE_LR_OPTS_INIT;
        s.T_max = 10;
        return bx_cosine_lr_new(o, &s);
    }
    if (!strcmp(kind, "warm")) {
        bx_cosine_warm_restarts_opts s = BX_COSINE_WARM_RESTARTS_OPTS_INIT;
        s.T_0 = 5;
        s.T_mult = 2;
        s.eta_min = 1e-3;
        return bx_cosine_warm_restarts_new(o, &s);
    }
    if (!strcmp(kind, "lambda")) {
        bx_lambda_lr_opts s = BX_LAMBDA_LR_OPTS_INIT;
        s.lambda.fn = pow95;
        return bx_lambda_lr_new(o, &s);
    }
    if (!strcmp(kind, "linear")) return bx_linear_lr_new(o, NULL);
    if (!strcmp(kind, "onecycle") || !strcmp(kind, "onecycle3")) {
        bx_one_cycle_lr_opts s = BX_ONE_CYCLE_LR_OPTS_INIT;
        s.max_lr = 0.1;
        s.total_steps = 30;
        if (!strcmp(kind, "onecycle3")) {
            s.three_phase = true;
            s.anneal_strategy = BX_ANNEAL_LINEAR;
        }
        return bx_one_cycle_lr_new(o, &s);
    }
    if (!strcmp(kind, "plateau")) return bx_plateau_new(o, NULL);
    if (!strcmp(kind, "swalr")) {
        bx_swalr_opts s = BX_SWALR_OPTS_INIT;
        s.swa_lr = 0.02;
        s.anneal_epochs = 3;
        return bx_swalr_new(o, &s);
    }
    return NULL;
}

static void sched_step(bx_scheduler *s, int i) {
    if (bx_scheduler_needs_metric(s)) CHECK_OK(bx_scheduler_step_metric(s, i == 0 ? 1.0 : 1.0 + 0.1 * (i % 3)));
    else CHECK_OK(bx_scheduler_step(s));
}

#define SGD_KEYS "\"dampening\": 0, \"weight_decay\": 0, \"nesterov\": false, \"maximize\": false, \"foreach\": null, \"differentiable\": false"
#define COMMON(last_epoch, count, lr) \
    "\"base_lrs\": [0.1], \"last_epoch\": " last_epoch ", \"verbose\": false, \"_step_count\": " count \
    ", \"_get_lr_called_within_step\": false, \"_last_lr\": [" lr "]"

static void sched_layout(const char *kind, const char *want, const char *want_groups) {
    bx_tensor *w = mk(2, SW, W0);
    bx_optimizer *o = sgd_mom();
    CHECK_OK(bx_optimizer_add_group(o, &w, 1, NULL));
    bx_scheduler *s = make_sched(kind, o);
    CHECK(s != NULL);
    if (!s) {
        fprintf(stderr, "%s: %s\n", kind, bx_errmsg());
        return;
    }
    CHECK_OK(bx_optimizer_step(o));
    sched_step(s, 0);
    bx_state *sd = bx_scheduler_state_dict(s);
    if (!json_is(sd, want)) fprintf(stderr, "  (scheduler %s)\n", kind);
    bx_state_free(sd);
    bx_state *osd = bx_optimizer_state_dict(o);
    if (!json_is(bx_state_get(osd, "param_groups"), want_groups)) fprintf(stderr, "  (groups after %s)\n", kind);
    CHECK(json_is(bx_state_get(osd, "param_groups"), want_groups));
    bx_state_free(osd);
    bx_scheduler_free(s);
    bx_optimizer_free(o);
    bx_tensor_free(w);
}

static void test_sched_layouts(void) {
    sched_layout("step", "{\"step_size\": 3, \"gamma\": 0.5, " COMMON("1", "2", "0.1") "}",
                 "[{\"lr\": 0.1, \"momentum\": 0.9, " SGD_KEYS ", \"initial_lr\": 0.1, \"params\": [0]}]");
    sched_layout("multistep", "{\"milestones\": {\"5\": 2, \"2\": 1}, \"gamma\": 0.3, " COMMON("1", "2", "0.1") "}",
                 "[{\"lr\": 0.1, \"momentum\": 0.9, " SGD_KEYS ", \"initial_lr\": 0.1, \"params\": [0]}]");
    sched_layout("exp", "{\"gamma\": 0.9, " COMMON("1", "2", "0.09000000000000001") "}",
                 "[{\"lr\": 0.09000000000000001, \"momentum\": 0.9, " SGD_KEYS ", \"initial_lr\": 0.1, \"params\": [0]}]");
    sched_layout("cos", "{\"T_max\": 10, \"eta_min\": 0, " COMMON("1", "2", "0.09755282581475769") "}",
                 "[{\"lr\": 0.09755282581475769, \"momentum\": 0.9, " SGD_KEYS ", \"initial_lr\": 0.1, \"params\": [0]}]");
    sched_layout("warm",
                 "{\"T_0\": 5, \"T_i\": 5, \"T_mult\": 2, \"eta_min\": 0.001, \"T_cur\": 1, " COMMON(
                     "1", "0", "0.0905463412215599") "}",
                 "[{\"lr\": 0.0905463412215599, \"momentum\": 0.9, " SGD_KEYS ", \"initial_lr\": 0.1, \"params\": [0]}]");
    sched_layout("lambda", "{" COMMON("1", "2", "0.095") ", \"lr_lambdas\": [null]}",
                 "[{\"lr\": 0.095, \"momentum\": 0.9, " SGD_KEYS ", \"initial_lr\": 0.1, \"params\": [0]}]");
    sched_layout("linear",
                 "{\"start_factor\": 0.3333333333333333, \"end_factor\": 1.0, \"total_iters\": 5, " COMMON(
                     "1", "2", "0.04666666666666667") "}",
                 "[{\"lr\": 0.04666666666666667, \"momentum\": 0.9, " SGD_KEYS ", \"initial_lr\": 0.1, \"params\": [0]}]");
    sched_layout("onecycle",
                 "{\"total_steps\": 30, \"_schedule_phases\": [{\"end_step\": 8.0, \"start_lr\": \"initial_lr\", "
                 "\"end_lr\": \"max_lr\", \"start_momentum\": \"max_momentum\", \"end_momentum\": \"base_momentum\"}, "
                 "{\"end_step\": 29, \"start_lr\": \"max_lr\", \"end_lr\": \"min_lr\", \"start_momentum\": "
                 "\"base_momentum\", \"end_momentum\": \"max_momentum\"}], \"anneal_func\": \"<callable "
                 "OneCycleLR._annealing_cos>\", \"cycle_momentum\": true, \"use_beta1\": false, \"base_lrs\": [0.004], "
                 "\"last_epoch\": 1, \"verbose\": false, \"_step_count\": 2, \"_get_lr_called_within_step\": false, "
                 "\"_last_lr\": [0.0076537824394582454]}",
                 "[{\"lr\": 0.0076537824394582454, \"momentum\": 0.9461939766255643, " SGD_KEYS
                 ", \"initial_lr\": 0.004, \"max_lr\": 0.1, \"min_lr\": 4e-07, \"max_momentum\": 0.95, "
                 "\"base_momentum\": 0.85, \"params\": [0]}]");
    sched_layout("onecycle3",
                 "{\"total_steps\": 30, \"_schedule_phases\": [{\"end_step\": 8.0, \"start_lr\": \"initial_lr\", "
                 "\"end_lr\": \"max_lr\", \"start_momentum\": \"max_momentum\", \"end_momentum\": \"base_momentum\"}, "
                 "{\"end_step\": 16.0, \"start_lr\": \"max_lr\", \"end_lr\": \"initial_lr\", \"start_momentum\": "
                 "\"base_momentum\", \"end_momentum\": \"max_momentum\"}, {\"end_step\": 29, \"start_lr\": "
                 "\"initial_lr\", \"end_lr\": \"min_lr\", \"start_momentum\": \"max_momentum\", \"end_momentum\": "
                 "\"max_momentum\"}], \"anneal_func\": \"<callable OneCycleLR._annealing_linear>\", "
                 "\"cycle_momentum\": true, \"use_beta1\": false, \"base_lrs\": [0.004], \"last_epoch\": 1, "
                 "\"verbose\": false, \"_step_count\": 2, \"_get_lr_called_within_step\": false, \"_last_lr\": [0.016]}",
                 "[{\"lr\": 0.016, \"momentum\": 0.9375, " SGD_KEYS
                 ", \"initial_lr\": 0.004, \"max_lr\": 0.1, \"min_lr\": 4e-07, \"max_momentum\": 0.95, "
                 "\"base_momentum\": 0.85, \"params\": [0]}]");
    sched_layout("plateau",
                 "{\"factor\": 0.1, \"min_lrs\": [0], \"patience\": 10, \"verbose\": false, \"cooldown\": 0, "
                 "\"cooldown_counter\": 0, \"mode\": \"min\", \"threshold\": 0.0001, \"threshold_mode\": \"rel\", "
                 "\"best\": 1.0, \"num_bad_epochs\": 0, \"mode_worse\": \"Infinity\", \"eps\": 1e-08, \"last_epoch\": 1, "
                 "\"_last_lr\": [0.1]}",
                 "[{\"lr\": 0.1, \"momentum\": 0.9, " SGD_KEYS ", \"params\": [0]}]");
    sched_layout("swalr",
                 "{\"anneal_func\": \"<callable SWALR._cosine_anneal>\", \"anneal_epochs\": 3, " COMMON(
                     "1", "2", "0.08000000000000002") "}",
                 "[{\"lr\": 0.08000000000000002, \"momentum\": 0.9, " SGD_KEYS
                 ", \"swa_lr\": 0.02, \"initial_lr\": 0.1, \"params\": [0]}]");
    /* plateau before any step: no _last_lr, best = mode_worse */
    bx_tensor *w = mk(2, SW, W0);
    bx_optimizer *o = sgd_mom();
    CHECK_OK(bx_optimizer_add_group(o, &w, 1, NULL));
    bx_plateau_opts po = BX_PLATEAU_OPTS_INIT;
    po.mode = BX_PLATEAU_MAX;
    bx_scheduler *s = bx_plateau_new(o, &po);
    bx_state *sd = bx_scheduler_state_dict(s);
    CHECK(json_is(sd, "{\"factor\": 0.1, \"min_lrs\": [0], \"patience\": 10, \"verbose\": false, \"cooldown\": 0, "
                      "\"cooldown_counter\": 0, \"mode\": \"max\", \"threshold\": 0.0001, \"threshold_mode\": \"rel\", "
                      "\"best\": \"-Infinity\", \"num_bad_epochs\": 0, \"mode_worse\": \"-Infinity\", \"eps\": 1e-08, "
                      "\"last_epoch\": 0}"));
    bx_state_free(sd);
    bx_scheduler_free(s);
    bx_optimizer_free(o);
    bx_tensor_free(w);
}

/* ---- resume: 3 steps + save/load + 3 steps == 6 steps ----------------------------------- */

typedef struct run {
    bx_tensor *w, *b;
    bx_optimizer *o;
    bx_scheduler *s;
} run;

static void run_init(run *r, mk_opt make, const char *sched) {
    r->w = mk(2, SW, W0);
    r->b = mk(1, SB, B0);
    r->o = make();
    CHECK_OK(bx_optimizer_add_group(r->o, &r->w, 1, NULL));
    bx_param_group_opts g = BX_PARAM_GROUP_OPTS_INIT;
    g.lr = bx_optimizer_get_lr(r->o, 0) * 0.5;
    g.name = "bias";
    CHECK_OK(bx_optimizer_add_group(r->o, &r->b, 1, &g));
    r->s = sched ? make_sched(sched, r->o) : NULL;
}

static void run_steps(run *r, int from, int to) {
    for (int k = from; k < to; k++) {
        set_grads(r->w, r->b, k);
        CHECK_OK(bx_optimizer_step(r->o));
        if (r->s) sched_step(r->s, k + 1);
    }
}

static void run_free(run *r) {
    bx_scheduler_free(r->s);
    bx_optimizer_free(r->o);
    bx_tensor_free(r->w);
    bx_tensor_free(r->b);
}

static bool same_bits(const bx_tensor *a, const bx_tensor *b) {
    return memcmp(a->data, b->data, (size_t)bx_numel(a) * sizeof(float)) == 0;
}

static void resume_case(const char *what, mk_opt make, const char *sched) {
    run full, part, fresh;
    run_init(&full, make, sched);
    run_steps(&full, 0, 6);

    run_init(&part, make, sched);
    run_steps(&part, 0, 3);
    store st = {0};
    bx_state *osd = bx_optimizer_state_dict(part.o);
    bx_state *ssd = part.s ? bx_scheduler_state_dict(part.s) : NULL;
    bx_state *oback = through_json(osd, &st);
    bx_state *sback = ssd ? through_json(ssd, &st) : NULL;

    /* a fresh run: model weights restored, optimizer and scheduler rebuilt,
     * then their states loaded (Lightning's order) */
    run_init(&fresh, make, sched);
    memcpy(fresh.w->data, part.w->data, 4 * sizeof(float));
    memcpy(fresh.b->data, part.b->data, 3 * sizeof(float));
    CHECK_OK(bx_optimizer_load_state_dict(fresh.o, oback));
    if (fresh.s) CHECK_OK(bx_scheduler_load_state_dict(fresh.s, sback));
    /* the reloaded state serialises exactly as the saved one */
    bx_state *osd2 = bx_optimizer_state_dict(fresh.o);
    char *j1 = bx_state_to_json(osd, NULL, NULL), *j2 = bx_state_to_json(osd2, NULL, NULL);
    CHECK(j1 && j2 && strcmp(j1, j2) == 0);
    bx_free(j1);
    bx_free(j2);
    bx_state_free(osd2);
    run_steps(&fresh, 3, 6);

    bool ok = same_bits(full.w, fresh.w) && same_bits(full.b, fresh.b);
    for (int g = 0; g < 2; g++) ok = ok && bx_optimizer_get_lr(full.o, g) == bx_optimizer_get_lr(fresh.o, g);
    if (full.s) {
        bx_state *a = bx_scheduler_state_dict(full.s), *b = bx_scheduler_state_dict(fresh.s);
        char *ja = bx_state_to_json(a, NULL, NULL), *jb = bx_state_to_json(b, NULL, NULL);
        ok = ok && ja && jb && strcmp(ja, jb) == 0;
        bx_free(ja);
        bx_free(jb);
        bx_state_free(a);
        bx_state_free(b);
    }
    if (!ok) fprintf(stderr, "resume %s %s: not bit-identical\n", what, sched ? sched : "");
    CHECK(ok);
    bx_state_free(osd);
    bx_state_free(ssd);
    bx_state_free(oback);
    bx_state_free(sback);
    store_clear(&st);
    run_free(&full);
    run_free(&part);
    run_free(&fresh);
}

static bx_optimizer *sgd_nesterov_wd(void) {
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    o.momentum = 0.9;
    o.nesterov = true;
    o.weight_decay = 0.01;
    return bx_sgd_new(&o);
}
static bx_optimizer *adam_cycle(void) {
    bx_adam_opts o = BX_ADAM_OPTS_INIT;
    o.lr = 0.05;
    return bx_adam_new(&o);
}

static void test_resume(void) {
    resume_case("sgd", sgd_plain, NULL);
    resume_case("sgd nesterov", sgd_nesterov_wd, NULL);
    resume_case("adam amsgrad", adam_ams, NULL);
    resume_case("adamw", adamw_dflt, NULL);
    resume_case("rmsprop", rms_mc, NULL);
    const char *kinds[] = {"step", "multistep", "exp", "cos", "warm", "lambda",
                           "linear", "onecycle", "onecycle3", "plateau", "swalr"};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++) {
        resume_case("sgd", sgd_mom, kinds[i]);
        resume_case("adam", adam_cycle, kinds[i]);
    }
}

/* ---- bad state ------------------------------------------------------------------------- */

static void test_bad_state(void) {
    run r;
    run_init(&r, adam_ams, NULL);
    run_steps(&r, 0, 2);
    bx_state *sd = bx_optimizer_state_dict(r.o);

    /* another optimizer with one group */
    bx_optimizer *one = bx_adam_new(NULL);
    CHECK_OK(bx_optimizer_add_group(one, &r.w, 1, NULL));
    CHECK_ERR(bx_optimizer_load_state_dict(one, sd), BX_ERR_INVALID, "2 param groups, the optimizer has 1");
    bx_optimizer_free(one);

    /* a group of another size */
    bx_tensor *x = mk(1, SB, B0);
    bx_optimizer *two = bx_adam_new(NULL);
    bx_tensor *wx[2] = {r.w, x};
    CHECK_OK(bx_optimizer_add_group(two, wx, 2, NULL));
    CHECK_OK(bx_optimizer_add_group(two, &r.b, 1, NULL));
    CHECK_ERR(bx_optimizer_load_state_dict(two, sd), BX_ERR_INVALID, "param group 0 has 1 parameters in the loaded state, 2");
    bx_optimizer_free(two);

    /* shapes swapped: group 0 holds b's shape */
    bx_optimizer *sw = bx_adam_new(NULL);
    bx_tensor *b2 = mk(1, SB, B0), *w2 = mk(2, SW, W0);
    CHECK_OK(bx_optimizer_add_group(sw, &b2, 1, NULL));
    CHECK_OK(bx_optimizer_add_group(sw, &w2, 1, NULL));
    CHECK_ERR(bx_optimizer_load_state_dict(sw, sd), BX_ERR_INVALID, "'exp_avg' is f32 (2,2), the parameter is f32 (3)");
    bx_optimizer_free(sw);
    bx_tensor_free(b2);
    bx_tensor_free(w2);

    bx_optimizer *ok = adam_ams();
    CHECK_OK(bx_optimizer_add_group(ok, &r.w, 1, NULL));
    CHECK_OK(bx_optimizer_add_group(ok, &r.b, 1, NULL));
    /* missing lr */
    bx_state *bad = bx_state_copy(sd);
    bx_state *g0 = bx_state_at(bx_state_get(bad, "param_groups"), 0);
    CHECK_OK(bx_state_set_string(g0, "lr", "fast"));
    CHECK_ERR(bx_optimizer_load_state_dict(ok, bad), BX_ERR_FORMAT, "param group 0: 'lr' is a string, expected a number");
    bx_state_free(bad);
    /* missing moment with amsgrad */
    bad = bx_state_copy(sd);
    bx_state *s1 = bx_state_get(bx_state_get(bad, "state"), "1");
    bx_state *s1copy = bx_state_dict();
    CHECK_OK(bx_state_set_float(s1copy, "step", 2.0));
    CHECK_OK(bx_state_set(s1copy, "exp_avg", bx_state_copy(bx_state_get(s1, "exp_avg"))));
    CHECK_OK(bx_state_set(s1copy, "exp_avg_sq", bx_state_copy(bx_state_get(s1, "exp_avg_sq"))));
    CHECK_OK(bx_state_set(bx_state_get(bad, "state"), "1", s1copy));
    CHECK_ERR(bx_optimizer_load_state_dict(ok, bad), BX_ERR_FORMAT, "state '1': key 'max_exp_avg_sq' missing");
    bx_state_free(bad);
    /* unknown parameter index */
    bad = bx_state_copy(sd);
    CHECK_OK(bx_state_set(bx_state_get(bad, "state"), "7", bx_state_dict()));
    CHECK_ERR(bx_optimizer_load_state_dict(ok, bad), BX_ERR_INVALID, "state key '7' is not a parameter");
    bx_state_free(bad);
    /* bad betas, not a dict */
    bad = bx_state_copy(sd);
    g0 = bx_state_at(bx_state_get(bad, "param_groups"), 0);
    CHECK_OK(bx_state_set_float(g0, "betas", 0.9));
    CHECK_ERR(bx_optimizer_load_state_dict(ok, bad), BX_ERR_FORMAT, "'betas' must be a list of 2 numbers");
    bx_state_free(bad);
    bx_state *nd = bx_state_list();
    CHECK_ERR(bx_optimizer_load_state_dict(ok, nd), BX_ERR_FORMAT, "the state is a list, expected a dict");
    bx_state_free(nd);
    /* none of the failed loads changed anything: a good load still works */
    CHECK_OK(bx_optimizer_load_state_dict(ok, sd));
    bx_optimizer_free(ok);
    bx_state_free(sd);

    /* schedulers */
    bx_scheduler *step = make_sched("step", r.o);
    bx_scheduler *cos = make_sched("cos", r.o);
    bx_state *ssd = bx_scheduler_state_dict(step);
    CHECK_ERR(bx_scheduler_load_state_dict(cos, ssd), BX_ERR_FORMAT, "CosineAnnealingLR load_state_dict: key 'T_max' missing");
    bx_state *b3 = bx_state_copy(ssd);
    CHECK_OK(bx_state_set_string(b3, "last_epoch", "3"));
    CHECK_ERR(bx_scheduler_load_state_dict(step, b3), BX_ERR_FORMAT, "'last_epoch' is a string, expected an integer");
    CHECK_OK(bx_state_set_int(b3, "last_epoch", 3));
    CHECK_OK(bx_state_set_int(b3, "step_size", 0));
    CHECK_ERR(bx_scheduler_load_state_dict(step, b3), BX_ERR_INVALID, "step_size 0 must be > 0");
    bx_state_free(b3);
    bx_state_free(ssd);
    bx_scheduler_free(step);
    bx_scheduler_free(cos);
    bx_tensor_free(x);
    run_free(&r);
}

/* ---- steady-state steps allocate nothing ------------------------------------------------ */

static void test_no_alloc(void) {
    mk_opt makers[] = {sgd_mom, sgd_nesterov_wd, adam_ams, adamw_dflt, rms_mc};
    const char *scheds[] = {"step", "multistep", "exp", "cos", "warm", "lambda",
                            "linear", "onecycle", "plateau", "swalr"};
    for (size_t m = 0; m < sizeof makers / sizeof makers[0]; m++) {
        run r;
        run_init(&r, makers[m], scheds[m * 2 % 10]);
        bx_scheduler *s2 = make_sched(scheds[(m * 2 + 1) % 10], r.o);
        run_steps(&r, 0, 1);
        uint64_t before = bx_alloc_count();
        for (int k = 1; k < 20; k++) {
            set_grads(r.w, r.b, k);
            CHECK_OK(bx_optimizer_step(r.o));
            sched_step(r.s, k);
            sched_step(s2, k);
            bx_optimizer_zero_grad(r.o);
        }
        CHECK_EQ_INT(bx_alloc_count() - before, 0);
        bx_scheduler_free(s2);
        run_free(&r);
    }
}

int main(void) {
    test_optimizer_layouts();
    test_sched_layouts();
    test_resume();
    test_bad_state();
    test_no_alloc();
    return tu_finish("test_optim_state");
}
