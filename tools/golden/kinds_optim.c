/* kinds_optim.c - golden runners for the optimizers (sgd, adam, adamw,
 * rmsprop). args: `optimizer`, `constructor_kwargs` (the constructor's
 * defaults), `param_groups` (each group's full hyper-parameters and its
 * parameter names), `steps`. Per step K every parameter's .grad is set to
 * in.grad.stepK.<p> (no tensor: grad None, the parameter is skipped), then
 * optimizer.step(); out.stepK.<p> and every state.stepK.<p>.<key> present
 * are compared (the state is read through bx_optimizer_state_dict). */
#include "golden.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_PARAMS 64

static double jnum(json_t *o, const char *key, double dflt) {
    json_t *v = json_object_get(o, key);
    return (v && json_is_number(v)) ? json_number_value(v) : dflt;
}

static int jflag(json_t *o, const char *key, int dflt) {
    json_t *v = json_object_get(o, key);
    return (v && json_is_boolean(v)) ? json_is_true(v) : dflt;
}

static void jbetas(json_t *o, double betas[2]) {
    json_t *b = json_object_get(o, "betas");
    if (json_is_array(b) && json_array_size(b) == 2) {
        betas[0] = json_number_value(json_array_get(b, 0));
        betas[1] = json_number_value(json_array_get(b, 1));
    }
}

/* Builds the optimizer from its name and the constructor's kwargs. */
static bx_optimizer *make_optimizer(gcase *c, const char *kind, json_t *kw, json_t *first_group) {
    if (strcmp(kind, "sgd") == 0) {
        bx_sgd_opts o = BX_SGD_OPTS_INIT;
        o.lr = jnum(kw, "lr", jnum(first_group, "lr", 0));
        o.momentum = jnum(kw, "momentum", o.momentum);
        o.dampening = jnum(kw, "dampening", o.dampening);
        o.weight_decay = jnum(kw, "weight_decay", o.weight_decay);
        o.nesterov = jflag(kw, "nesterov", o.nesterov);
        o.maximize = jflag(kw, "maximize", o.maximize);
        return bx_sgd_new(&o);
    }
    if (strcmp(kind, "adam") == 0 || strcmp(kind, "adamw") == 0) {
        bool w = strcmp(kind, "adamw") == 0;
        bx_adam_opts o = BX_ADAM_OPTS_INIT;
        if (w) o.weight_decay = 1e-2;
        o.lr = jnum(kw, "lr", o.lr);
        jbetas(kw, o.betas);
        o.eps = jnum(kw, "eps", o.eps);
        o.weight_decay = jnum(kw, "weight_decay", o.weight_decay);
        o.amsgrad = jflag(kw, "amsgrad", o.amsgrad);
        o.maximize = jflag(kw, "maximize", o.maximize);
        return w ? bx_adamw_new(&o) : bx_adam_new(&o);
    }
    if (strcmp(kind, "rmsprop") == 0) {
        bx_rmsprop_opts o = BX_RMSPROP_OPTS_INIT;
        o.lr = jnum(kw, "lr", o.lr);
        o.alpha = jnum(kw, "alpha", o.alpha);
        o.eps = jnum(kw, "eps", o.eps);
        o.weight_decay = jnum(kw, "weight_decay", o.weight_decay);
        o.momentum = jnum(kw, "momentum", o.momentum);
        o.centered = jflag(kw, "centered", o.centered);
        o.maximize = jflag(kw, "maximize", o.maximize);
        return bx_rmsprop_new(&o);
    }
    gc_fail(c, "unknown optimizer kind '%s'", kind);
    return NULL;
}

/* Every hyper-parameter the group lists becomes an override (the cases give
 * each group in full, defaults included). */
static void group_overrides(const char *kind, json_t *g, bx_param_group_opts *ov) {
    *ov = (bx_param_group_opts)BX_PARAM_GROUP_OPTS_INIT;
    bool sgd = strcmp(kind, "sgd") == 0, rms = strcmp(kind, "rmsprop") == 0, adam = !sgd && !rms;
    ov->lr = jnum(g, "lr", NAN);
    ov->weight_decay = jnum(g, "weight_decay", NAN);
    ov->maximize = jflag(g, "maximize", -1);
    if (sgd || rms) ov->momentum = jnum(g, "momentum", NAN);
    if (sgd) {
        ov->dampening = jnum(g, "dampening", NAN);
        ov->nesterov = jflag(g, "nesterov", -1);
    }
    if (adam || rms) ov->eps = jnum(g, "eps", NAN);
    if (adam) {
        jbetas(g, ov->betas);
        ov->amsgrad = jflag(g, "amsgrad", -1);
    }
    if (rms) {
        ov->alpha = jnum(g, "alpha", NAN);
        ov->centered = jflag(g, "centered", -1);
    }
    json_t *name = json_object_get(g, "name");
    if (json_is_string(name)) ov->name = json_string_value(name);
}

static void run_optim(gcase *c) {
    const char *kind = gc_meta(c, "kind");
    json_t *args = gc_args(c);
    json_t *kw = json_object_get(args, "constructor_kwargs");
    json_t *groups = json_object_get(args, "param_groups");
    int steps = (int)gc_arg_int(c, "steps", 0);
    if (!json_is_array(groups) || json_array_size(groups) == 0 || steps < 1) {
        gc_fail(c, "args need param_groups and steps");
        return;
    }
    bx_optimizer *opt = make_optimizer(c, kind, kw, json_array_get(groups, 0));
    if (!opt) {
        gc_fail(c, "optimizer: %s", bx_errmsg());
        return;
    }
    const char *names[MAX_PARAMS];
    bx_tensor *params[MAX_PARAMS];
    int np = 0;
    size_t gi;
    json_t *g;
    json_array_foreach(groups, gi, g) {
        json_t *pl = json_object_get(g, "params");
        bx_tensor *gp[MAX_PARAMS];
        int n = 0;
        size_t pi;
        json_t *pn;
        json_array_foreach(pl, pi, pn) {
            if (np >= MAX_PARAMS || !json_is_string(pn)) break;
            char key[256];
            snprintf(key, sizeof key, "param.%s", json_string_value(pn));
            bx_tensor *p = gc_param(c, key);
            if (!p) {
                gc_fail(c, "missing tensor '%s'", key);
                goto out;
            }
            names[np] = json_string_value(pn);
            params[np++] = p;
            gp[n++] = p;
        }
        bx_param_group_opts ov;
        group_overrides(kind, g, &ov);
        if (bx_optimizer_add_group(opt, gp, n, &ov) != BX_OK) {
            gc_fail(c, "add_param_group %zu: %s", gi, bx_errmsg());
            goto out;
        }
    }
    for (int k = 1; k <= steps; k++) {
        char key[300];
        for (int i = 0; i < np; i++) {
            snprintf(key, sizeof key, "in.grad.step%d.%s", k, names[i]);
            const bx_tensor *gr = gc_get(c, key);
            if (!gr) {
                bx_tensor_free(params[i]->grad);
                params[i]->grad = NULL;
                continue;
            }
            bx_tensor *pg = bx_param_grad(params[i]);
            if (!pg || bx_copy(pg, gr) != BX_OK) {
                gc_fail(c, "grad %s: %s", key, bx_errmsg());
                goto out;
            }
        }
        if (bx_optimizer_step(opt) != BX_OK) {
            gc_fail(c, "step %d: %s", k, bx_errmsg());
            goto out;
        }
        bx_state *sd = bx_optimizer_state_dict(opt);
        if (!sd) {
            gc_fail(c, "state_dict: %s", bx_errmsg());
            goto out;
        }
        const bx_state *state = bx_state_get(sd, "state");
        for (int i = 0; i < np; i++) {
            snprintf(key, sizeof key, "out.step%d.%s", k, names[i]);
            if (gc_get(c, key)) gc_compare(c, key, params[i]);
            char idx[16];
            snprintf(idx, sizeof idx, "%d", i);
            const bx_state *e = bx_state_get(state, idx);
            const char *skeys[] = {"momentum_buffer", "exp_avg", "exp_avg_sq", "max_exp_avg_sq",
                                   "square_avg",      "grad_avg", "step"};
            for (size_t s = 0; s < sizeof skeys / sizeof skeys[0]; s++) {
                snprintf(key, sizeof key, "state.step%d.%s.%s", k, names[i], skeys[s]);
                if (!gc_get(c, key)) continue;
                const bx_state *v = bx_state_get(e, skeys[s]);
                if (strcmp(skeys[s], "step") == 0) {
                    int64_t shape0[1] = {0};
                    bx_tensor *t = bx_tensor_new(BX_F64, 0, shape0);
                    gc_own(c, t);
                    if (t) bx_set(t, 0, bx_state_get_float(v));
                    if (!v) gc_fail(c, "%s: no step in the optimizer state", key);
                    else gc_compare(c, key, t);
                } else {
                    gc_compare(c, key, bx_state_get_tensor(v));
                }
            }
        }
        bx_state_free(sd);
    }
out:
    bx_optimizer_free(opt);
}

const gkind golden_kinds_optim[] = {
    {"sgd", run_optim},
    {"adam", run_optim},
    {"adamw", run_optim},
    {"rmsprop", run_optim},
    {NULL, NULL},
};
