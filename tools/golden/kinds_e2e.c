/* kinds_e2e.c - end-to-end golden cases: e2e_mlp, e2e_cnn.
 *
 * Builds the model that `args.model` describes (model_desc.c), loads
 * `param.*` / `buf.*` through the strict state dict, then for each step
 * i = 1..steps: lr = out.lr[i-1] (checked against the scheduler), train-mode
 * forward of in.batch<i>.x, mean cross entropy with in.batch<i>.y
 * (-> out.loss[i-1]), zero_grad, backward (step 1: grad.step1.*), optimizer
 * step, scheduler step. Finally out.final.* (the state dict, BatchNorm
 * buffers included) and out.eval_y (eval-mode forward of in.eval_x, no
 * grad). */
#include "golden.h"
#include "model_desc.h"
#include "blixt/optim.h"
#include "blixt/sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- optimizer and scheduler --------------------------------------------------- */

static double kw_num(json_t *kw, const char *key, double dflt) {
    json_t *v = json_object_get(kw, key);
    return v && json_is_number(v) ? json_number_value(v) : dflt;
}
static bool kw_bool(json_t *kw, const char *key, bool dflt) {
    json_t *v = json_object_get(kw, key);
    return v && json_is_boolean(v) ? json_is_true(v) : dflt;
}

static bx_optimizer *make_optimizer(gcase *c, bx_module *m) {
    const char *name = gc_arg_str(c, "optimizer", "SGD");
    json_t *kw = json_object_get(gc_args(c), "optimizer_kwargs");
    bx_optimizer *o = NULL;
    if (strcmp(name, "SGD") == 0) {
        bx_sgd_opts so = BX_SGD_OPTS_INIT;
        so.lr = kw_num(kw, "lr", 0.0);
        so.momentum = kw_num(kw, "momentum", 0.0);
        so.dampening = kw_num(kw, "dampening", 0.0);
        so.weight_decay = kw_num(kw, "weight_decay", 0.0);
        so.nesterov = kw_bool(kw, "nesterov", false);
        so.maximize = kw_bool(kw, "maximize", false);
        o = bx_sgd_new(&so);
    } else if (strcmp(name, "Adam") == 0 || strcmp(name, "AdamW") == 0) {
        bool w = strcmp(name, "AdamW") == 0;
        bx_adam_opts ao = BX_ADAM_OPTS_INIT;
        if (w) ao = (bx_adam_opts)BX_ADAMW_OPTS_INIT;
        ao.lr = kw_num(kw, "lr", ao.lr);
        json_t *b = json_object_get(kw, "betas");
        if (json_is_array(b) && json_array_size(b) == 2) {
            ao.betas[0] = json_number_value(json_array_get(b, 0));
            ao.betas[1] = json_number_value(json_array_get(b, 1));
        }
        ao.eps = kw_num(kw, "eps", ao.eps);
        ao.weight_decay = kw_num(kw, "weight_decay", ao.weight_decay);
        ao.amsgrad = kw_bool(kw, "amsgrad", false);
        ao.maximize = kw_bool(kw, "maximize", false);
        o = w ? bx_adamw_new(&ao) : bx_adam_new(&ao);
    } else if (strcmp(name, "RMSprop") == 0) {
        bx_rmsprop_opts ro = BX_RMSPROP_OPTS_INIT;
        ro.lr = kw_num(kw, "lr", ro.lr);
        ro.alpha = kw_num(kw, "alpha", ro.alpha);
        ro.eps = kw_num(kw, "eps", ro.eps);
        ro.weight_decay = kw_num(kw, "weight_decay", ro.weight_decay);
        ro.momentum = kw_num(kw, "momentum", ro.momentum);
        ro.centered = kw_bool(kw, "centered", false);
        ro.maximize = kw_bool(kw, "maximize", false);
        o = bx_rmsprop_new(&ro);
    } else {
        gc_fail(c, "e2e: optimizer '%s' not supported", name);
        return NULL;
    }
    if (!o) {
        gc_fail(c, "e2e: %s: %s", name, bx_errmsg());
        return NULL;
    }
    bx_named_tensors *ps = bx_module_named_parameters(m);
    if (!ps || bx_optimizer_add_group(o, ps->tensors, ps->n, NULL) != BX_OK) {
        gc_fail(c, "e2e: add_group: %s", bx_errmsg());
        bx_optimizer_free(o);
        o = NULL;
    }
    bx_named_tensors_free(ps);
    return o;
}

/* Scheduler from args.scheduler_spec {type, kwargs}; NULL when there is none
 * or (*drive_lr set) when its type is not built here: the lr is then taken
 * from out.lr directly. */
static bx_scheduler *make_scheduler(gcase *c, bx_optimizer *o, bool *drive_lr) {
    *drive_lr = false;
    json_t *spec = json_object_get(gc_args(c), "scheduler_spec");
    if (!spec || json_is_null(spec)) return NULL;
    const char *type = json_string_value(json_object_get(spec, "type"));
    json_t *kw = json_object_get(spec, "kwargs");
    const char *interval = json_string_value(json_object_get(spec, "interval"));
    if (interval && strcmp(interval, "step") != 0) gc_fail(c, "e2e: scheduler interval '%s' not supported", interval);
    bx_scheduler *s = NULL;
    if (!type) type = "";
    if (strcmp(type, "StepLR") == 0) {
        bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
        so.step_size = (int64_t)kw_num(kw, "step_size", 0);
        so.gamma = kw_num(kw, "gamma", so.gamma);
        s = bx_step_lr_new(o, &so);
    } else if (strcmp(type, "MultiStepLR") == 0) {
        bx_multistep_lr_opts mo = BX_MULTISTEP_LR_OPTS_INIT;
        json_t *ms = json_object_get(kw, "milestones");
        int64_t mil[64];
        int nm = 0;
        for (size_t i = 0; json_is_array(ms) && i < json_array_size(ms) && nm < 64; i++)
            mil[nm++] = (int64_t)json_number_value(json_array_get(ms, i));
        mo.milestones = mil;
        mo.n_milestones = nm;
        mo.gamma = kw_num(kw, "gamma", mo.gamma);
        s = bx_multistep_lr_new(o, &mo);
    } else if (strcmp(type, "ExponentialLR") == 0) {
        bx_exponential_lr_opts eo = BX_EXPONENTIAL_LR_OPTS_INIT;
        eo.gamma = kw_num(kw, "gamma", NAN);
        s = bx_exponential_lr_new(o, &eo);
    } else if (strcmp(type, "CosineAnnealingLR") == 0) {
        bx_cosine_lr_opts co = BX_COSINE_LR_OPTS_INIT;
        co.T_max = (int64_t)kw_num(kw, "T_max", 0);
        co.eta_min = kw_num(kw, "eta_min", 0.0);
        s = bx_cosine_lr_new(o, &co);
    } else if (strcmp(type, "CosineAnnealingWarmRestarts") == 0) {
        bx_cosine_warm_restarts_opts wo = BX_COSINE_WARM_RESTARTS_OPTS_INIT;
        wo.T_0 = (int64_t)kw_num(kw, "T_0", 0);
        wo.T_mult = (int64_t)kw_num(kw, "T_mult", 1);
        wo.eta_min = kw_num(kw, "eta_min", 0.0);
        s = bx_cosine_warm_restarts_new(o, &wo);
    } else if (strcmp(type, "LinearLR") == 0) {
        bx_linear_lr_opts lo = BX_LINEAR_LR_OPTS_INIT;
        lo.start_factor = kw_num(kw, "start_factor", lo.start_factor);
        lo.end_factor = kw_num(kw, "end_factor", lo.end_factor);
        lo.total_iters = (int64_t)kw_num(kw, "total_iters", (double)lo.total_iters);
        s = bx_linear_lr_new(o, &lo);
    } else if (strcmp(type, "OneCycleLR") == 0) {
        bx_one_cycle_lr_opts oo = BX_ONE_CYCLE_LR_OPTS_INIT;
        oo.max_lr = kw_num(kw, "max_lr", NAN);
        oo.total_steps = (int64_t)kw_num(kw, "total_steps", 0);
        oo.epochs = (int64_t)kw_num(kw, "epochs", 0);
        oo.steps_per_epoch = (int64_t)kw_num(kw, "steps_per_epoch", 0);
        oo.pct_start = kw_num(kw, "pct_start", oo.pct_start);
        const char *as = json_string_value(json_object_get(kw, "anneal_strategy"));
        if (as && strcmp(as, "linear") == 0) oo.anneal_strategy = BX_ANNEAL_LINEAR;
        oo.cycle_momentum = kw_bool(kw, "cycle_momentum", true);
        oo.base_momentum = kw_num(kw, "base_momentum", oo.base_momentum);
        oo.max_momentum = kw_num(kw, "max_momentum", oo.max_momentum);
        oo.div_factor = kw_num(kw, "div_factor", oo.div_factor);
        oo.final_div_factor = kw_num(kw, "final_div_factor", oo.final_div_factor);
        oo.three_phase = kw_bool(kw, "three_phase", false);
        s = bx_one_cycle_lr_new(o, &oo);
    } else {
        *drive_lr = true; /* e.g. LambdaLR: the lr sequence is in out.lr */
        return NULL;
    }
    if (!s) gc_fail(c, "e2e: scheduler %s: %s", type, bx_errmsg());
    return s;
}

/* ---- the run --------------------------------------------------------------------------- */

static bx_tensor *cast(const bx_tensor *t) { return (bx_tensor *)(uintptr_t)t; }

static void run_e2e(gcase *c, bool cnn) {
    bx_module *m = gc_build_model(c, !cnn);
    if (!m) return;
    if (!gc_load_model(c, m, "param.", "buf.", true)) {
        bx_module_free(m);
        return;
    }
    bx_optimizer *opt = make_optimizer(c, m);
    bool drive_lr = false;
    bx_scheduler *sch = opt ? make_scheduler(c, opt, &drive_lr) : NULL;
    bx_step *st = bx_step_new();
    const bx_tensor *lrs = gc_need(c, "out.lr");
    int steps = (int)gc_arg_int(c, "steps", 10);
    int64_t ns = steps;
    bx_tensor *losses = bx_tensor_zeros(BX_F32, 1, &ns), *used_lr = bx_tensor_zeros(BX_F64, 1, &ns);
    gc_own(c, losses);
    gc_own(c, used_lr);
    bx_module_train(m, true);
    for (int i = 1; opt && i <= steps; i++) {
        char xn[64], yn[64];
        snprintf(xn, sizeof xn, "in.batch%d.x", i);
        snprintf(yn, sizeof yn, "in.batch%d.y", i);
        const bx_tensor *x = gc_need(c, xn), *y = gc_need(c, yn);
        if (!x || !y || !lrs) break;
        if (drive_lr) bx_optimizer_set_lr(opt, 0, bx_get(lrs, i - 1));
        bx_set(used_lr, i - 1, bx_optimizer_get_lr(opt, 0)); /* checks the scheduler */
        bx_step_reset(st);
        bx_tensor *logits = bx_module_forward(m, st, cast(x));
        bx_tensor *loss = bx_cross_entropy(st, logits, cast(y), NULL);
        if (bx_step_status(st) != BX_OK) {
            gc_fail(c, "e2e: step %d forward: %s", i, bx_step_errmsg(st));
            break;
        }
        bx_set(losses, i - 1, bx_item(loss));
        bx_optimizer_zero_grad(opt);
        if (bx_backward(st, loss) != BX_OK) {
            gc_fail(c, "e2e: step %d backward: %s", i, bx_errmsg());
            break;
        }
        if (i == 1) {
            bx_named_tensors *ps = bx_module_named_parameters(m);
            for (int k = 0; ps && k < ps->n; k++) {
                char gn[300];
                snprintf(gn, sizeof gn, "grad.step1.%s", ps->names[k]);
                if (!gc_get(c, gn)) continue;
                if (!ps->tensors[k]->grad) gc_fail(c, "e2e: %s got no gradient", ps->names[k]);
                else gc_compare(c, gn, ps->tensors[k]->grad);
            }
            bx_named_tensors_free(ps);
        }
        if (bx_optimizer_step(opt) != BX_OK) {
            gc_fail(c, "e2e: step %d optimizer: %s", i, bx_errmsg());
            break;
        }
        if (sch && bx_scheduler_step(sch) != BX_OK) {
            gc_fail(c, "e2e: step %d scheduler: %s", i, bx_errmsg());
            break;
        }
    }
    if (lrs && lrs->shape[0] == steps) gc_compare(c, "out.lr", used_lr);
    else if (lrs) gc_fail(c, "e2e: out.lr has %lld entries for %d steps", (long long)lrs->shape[0], steps);
    gc_compare(c, "out.loss", losses);
    if (gc_get(c, "out.loss_f64")) gc_compare(c, "out.loss_f64", losses); /* float64 run of the same steps */
    bx_named_tensors *sd = bx_module_state_dict(m);
    for (int k = 0; sd && k < sd->n; k++) {
        char fn[300];
        snprintf(fn, sizeof fn, "out.final.%s", sd->names[k]);
        if (gc_get(c, fn)) gc_compare(c, fn, sd->tensors[k]);
        else gc_fail(c, "e2e: the case has no '%s' for state dict entry '%s'", fn, sd->names[k]);
    }
    bx_named_tensors_free(sd);
    const bx_tensor *ex = gc_get(c, "in.eval_x");
    if (ex && gc_get(c, "out.eval_y")) {
        bx_module_train(m, false);
        bx_step_reset(st);
        bx_no_grad_push(st);
        bx_tensor *ey = bx_module_forward(m, st, cast(ex));
        if (bx_step_status(st) != BX_OK) gc_fail(c, "e2e: eval forward: %s", bx_step_errmsg(st));
        else gc_compare(c, "out.eval_y", ey);
        bx_no_grad_pop(st);
    }
    bx_step_free(st);
    bx_scheduler_free(sch);
    bx_optimizer_free(opt);
    bx_module_free(m);
}

static void kind_e2e_mlp(gcase *c) { run_e2e(c, false); }
static void kind_e2e_cnn(gcase *c) { run_e2e(c, true); }

const gkind golden_kinds_e2e[] = {
    {"e2e_mlp", kind_e2e_mlp},
    {"e2e_cnn", kind_e2e_cnn},
    {NULL, NULL},
};
