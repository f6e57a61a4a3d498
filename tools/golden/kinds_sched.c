/* kinds_sched.c - golden runners for the LR schedulers. Every case drives an
 * optimizer (args.optimizer, e.g. "SGD(lr=0.1, momentum=0.9)" or
 * "Adam(lr=0.1)") on a dummy parameter for args.steps iterations: out.lr[i]
 * (and out.momentum[i] when present) is the lr of iteration i, then the
 * optimizer steps and the scheduler steps (ReduceLROnPlateau with
 * in.metric[i]). Scheduler options are read from args under torch's
 * argument names. SWALR cases: a warm phase (args.warm_phase: "constant lr
 * ..." or "ExponentialLR(gamma=0.8) ...") runs for iterations
 * 0..swalr_constructed_at_iteration-1, then SWALR is built (Lightning style:
 * initial_lr = swa_lr in each group and last_epoch = max_epochs) and stepped
 * after each later iteration. */
#include "golden.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- "Name(k=v, ...)" -> name + JSON kwargs ------------------------------------ */

static const char *skip_ws(const char *p) {
    while (*p && isspace((unsigned char)*p)) p++;
    return p;
}

static json_t *parse_value(const char **pp);

static json_t *parse_seq(const char **pp, char close) {
    json_t *a = json_array();
    const char *p = skip_ws(*pp);
    while (*p && *p != close) {
        json_t *v = parse_value(&p);
        if (!v) {
            json_decref(a);
            return NULL;
        }
        json_array_append_new(a, v);
        p = skip_ws(p);
        if (*p == ',') p = skip_ws(p + 1);
    }
    if (*p != close) {
        json_decref(a);
        return NULL;
    }
    *pp = p + 1;
    return a;
}

static json_t *parse_value(const char **pp) {
    const char *p = skip_ws(*pp);
    json_t *v = NULL;
    if (*p == '(' || *p == '[') {
        const char *q = p + 1;
        v = parse_seq(&q, *p == '(' ? ')' : ']');
        p = q;
    } else if (*p == '\'' || *p == '"') {
        char quote = *p++;
        const char *e = strchr(p, quote);
        if (!e) return NULL;
        v = json_stringn(p, (size_t)(e - p));
        p = e + 1;
    } else if (strncmp(p, "True", 4) == 0) {
        v = json_true();
        p += 4;
    } else if (strncmp(p, "False", 5) == 0) {
        v = json_false();
        p += 5;
    } else if (strncmp(p, "None", 4) == 0) {
        v = json_null();
        p += 4;
    } else {
        char *e = NULL;
        double d = strtod(p, &e);
        if (e == p) return NULL;
        bool is_int = true;
        for (const char *q = p; q < e; q++)
            if (*q == '.' || *q == 'e' || *q == 'E') is_int = false;
        v = is_int ? json_integer((json_int_t)d) : json_real(d);
        p = e;
    }
    *pp = p;
    return v;
}

/* Parses "Name(k=v, ...)" into name (copied into `name`) and kwargs. */
static json_t *parse_call(const char *s, char *name, size_t cap) {
    const char *p = skip_ws(s);
    size_t n = 0;
    while (p[n] && (isalnum((unsigned char)p[n]) || p[n] == '_')) n++;
    if (n == 0 || n >= cap) return NULL;
    memcpy(name, p, n);
    name[n] = '\0';
    p = skip_ws(p + n);
    json_t *kw = json_object();
    if (*p != '(') return kw;
    p = skip_ws(p + 1);
    while (*p && *p != ')') {
        size_t k = 0;
        while (p[k] && (isalnum((unsigned char)p[k]) || p[k] == '_')) k++;
        char key[64];
        if (k == 0 || k >= sizeof key) break;
        memcpy(key, p, k);
        key[k] = '\0';
        p = skip_ws(p + k);
        if (*p != '=') break;
        p++;
        json_t *v = parse_value(&p);
        if (!v) break;
        json_object_set_new(kw, key, v);
        p = skip_ws(p);
        if (*p == ',') p = skip_ws(p + 1);
    }
    return kw;
}

/* ---- builders ---------------------------------------------------------------- */

static double jnum(json_t *o, const char *key, double dflt) {
    json_t *v = json_object_get(o, key);
    return (v && json_is_number(v)) ? json_number_value(v) : dflt;
}

static int64_t jint(json_t *o, const char *key, int64_t dflt) {
    json_t *v = json_object_get(o, key);
    return (v && json_is_number(v)) ? (int64_t)json_number_value(v) : dflt;
}

static bool jbool(json_t *o, const char *key, bool dflt) {
    json_t *v = json_object_get(o, key);
    return (v && json_is_boolean(v)) ? json_is_true(v) : dflt;
}

static bx_optimizer *make_optimizer(gcase *c, const char *spec) {
    char name[64];
    json_t *kw = parse_call(spec, name, sizeof name);
    if (!kw) {
        gc_fail(c, "cannot parse optimizer '%s'", spec);
        return NULL;
    }
    bx_optimizer *o = NULL;
    if (strcmp(name, "SGD") == 0) {
        bx_sgd_opts so = BX_SGD_OPTS_INIT;
        so.lr = jnum(kw, "lr", 0.1);
        so.momentum = jnum(kw, "momentum", 0);
        so.dampening = jnum(kw, "dampening", 0);
        so.weight_decay = jnum(kw, "weight_decay", 0);
        so.nesterov = jbool(kw, "nesterov", false);
        o = bx_sgd_new(&so);
    } else if (strcmp(name, "Adam") == 0 || strcmp(name, "AdamW") == 0) {
        bool w = strcmp(name, "AdamW") == 0;
        bx_adam_opts ao = BX_ADAM_OPTS_INIT;
        if (w) ao.weight_decay = 1e-2;
        ao.lr = jnum(kw, "lr", ao.lr);
        json_t *b = json_object_get(kw, "betas");
        if (json_is_array(b) && json_array_size(b) == 2) {
            ao.betas[0] = json_number_value(json_array_get(b, 0));
            ao.betas[1] = json_number_value(json_array_get(b, 1));
        }
        ao.eps = jnum(kw, "eps", ao.eps);
        ao.weight_decay = jnum(kw, "weight_decay", ao.weight_decay);
        o = w ? bx_adamw_new(&ao) : bx_adam_new(&ao);
    } else if (strcmp(name, "RMSprop") == 0) {
        bx_rmsprop_opts ro = BX_RMSPROP_OPTS_INIT;
        ro.lr = jnum(kw, "lr", ro.lr);
        ro.momentum = jnum(kw, "momentum", ro.momentum);
        ro.alpha = jnum(kw, "alpha", ro.alpha);
        o = bx_rmsprop_new(&ro);
    } else {
        gc_fail(c, "unknown optimizer '%s'", name);
    }
    json_decref(kw);
    if (!o && !bx_errmsg()[0]) gc_fail(c, "optimizer '%s' failed", spec);
    return o;
}

typedef struct lambda_table {
    double v[256];
    int n;
} lambda_table;

static double table_lambda(void *ud, int64_t epoch) {
    const lambda_table *t = ud;
    if (t->n == 0) return 1.0;
    if (epoch < 0) epoch = 0;
    return t->v[epoch < t->n ? epoch : t->n - 1];
}

static bx_anneal_strategy janneal(json_t *kw) {
    json_t *v = json_object_get(kw, "anneal_strategy");
    return (json_is_string(v) && strcmp(json_string_value(v), "linear") == 0) ? BX_ANNEAL_LINEAR : BX_ANNEAL_COS;
}

/* Builds scheduler `name` from torch-named kwargs. */
static bx_scheduler *make_sched(gcase *c, bx_optimizer *o, const char *name, json_t *kw, lambda_table *lt,
                                int64_t last_epoch) {
    bx_scheduler *s = NULL;
    if (strcmp(name, "StepLR") == 0) {
        bx_step_lr_opts so = BX_STEP_LR_OPTS_INIT;
        so.step_size = jint(kw, "step_size", 0);
        so.gamma = jnum(kw, "gamma", so.gamma);
        so.last_epoch = last_epoch;
        s = bx_step_lr_new(o, &so);
    } else if (strcmp(name, "MultiStepLR") == 0) {
        bx_multistep_lr_opts mo = BX_MULTISTEP_LR_OPTS_INIT;
        int64_t ms[64];
        json_t *l = json_object_get(kw, "milestones");
        size_t i;
        json_t *v;
        int n = 0;
        json_array_foreach(l, i, v) if (n < 64) ms[n++] = (int64_t)json_number_value(v);
        mo.milestones = ms;
        mo.n_milestones = n;
        mo.gamma = jnum(kw, "gamma", mo.gamma);
        mo.last_epoch = last_epoch;
        s = bx_multistep_lr_new(o, &mo);
    } else if (strcmp(name, "ExponentialLR") == 0) {
        bx_exponential_lr_opts eo = BX_EXPONENTIAL_LR_OPTS_INIT;
        eo.gamma = jnum(kw, "gamma", NAN);
        eo.last_epoch = last_epoch;
        s = bx_exponential_lr_new(o, &eo);
    } else if (strcmp(name, "CosineAnnealingLR") == 0) {
        bx_cosine_lr_opts co = BX_COSINE_LR_OPTS_INIT;
        co.T_max = jint(kw, "T_max", 0);
        co.eta_min = jnum(kw, "eta_min", 0);
        co.last_epoch = last_epoch;
        s = bx_cosine_lr_new(o, &co);
    } else if (strcmp(name, "CosineAnnealingWarmRestarts") == 0) {
        bx_cosine_warm_restarts_opts wo = BX_COSINE_WARM_RESTARTS_OPTS_INIT;
        wo.T_0 = jint(kw, "T_0", 0);
        wo.T_mult = jint(kw, "T_mult", 1);
        wo.eta_min = jnum(kw, "eta_min", 0);
        wo.last_epoch = last_epoch;
        s = bx_cosine_warm_restarts_new(o, &wo);
    } else if (strcmp(name, "LambdaLR") == 0) {
        json_t *vals = json_object_get(kw, "lr_lambda_values");
        lt->n = 0;
        size_t i;
        json_t *v;
        json_array_foreach(vals, i, v) if (lt->n < 256) lt->v[lt->n++] = json_number_value(v);
        bx_lambda_lr_opts lo = BX_LAMBDA_LR_OPTS_INIT;
        lo.lambda.fn = table_lambda;
        lo.lambda.ud = lt;
        lo.last_epoch = last_epoch;
        s = bx_lambda_lr_new(o, &lo);
    } else if (strcmp(name, "LinearLR") == 0) {
        bx_linear_lr_opts lo = BX_LINEAR_LR_OPTS_INIT;
        lo.start_factor = jnum(kw, "start_factor", lo.start_factor);
        lo.end_factor = jnum(kw, "end_factor", lo.end_factor);
        lo.total_iters = jint(kw, "total_iters", lo.total_iters);
        lo.last_epoch = last_epoch;
        s = bx_linear_lr_new(o, &lo);
    } else if (strcmp(name, "OneCycleLR") == 0) {
        bx_one_cycle_lr_opts oo = BX_ONE_CYCLE_LR_OPTS_INIT;
        oo.max_lr = jnum(kw, "max_lr", NAN);
        oo.total_steps = jint(kw, "total_steps", 0);
        oo.epochs = jint(kw, "epochs", 0);
        oo.steps_per_epoch = jint(kw, "steps_per_epoch", 0);
        oo.pct_start = jnum(kw, "pct_start", oo.pct_start);
        oo.anneal_strategy = janneal(kw);
        oo.cycle_momentum = jbool(kw, "cycle_momentum", oo.cycle_momentum);
        oo.base_momentum = jnum(kw, "base_momentum", oo.base_momentum);
        oo.max_momentum = jnum(kw, "max_momentum", oo.max_momentum);
        oo.div_factor = jnum(kw, "div_factor", oo.div_factor);
        oo.final_div_factor = jnum(kw, "final_div_factor", oo.final_div_factor);
        oo.three_phase = jbool(kw, "three_phase", oo.three_phase);
        oo.last_epoch = last_epoch;
        s = bx_one_cycle_lr_new(o, &oo);
    } else if (strcmp(name, "ReduceLROnPlateau") == 0) {
        bx_plateau_opts po = BX_PLATEAU_OPTS_INIT;
        json_t *m = json_object_get(kw, "mode");
        if (json_is_string(m) && strcmp(json_string_value(m), "max") == 0) po.mode = BX_PLATEAU_MAX;
        json_t *tm = json_object_get(kw, "threshold_mode");
        if (json_is_string(tm) && strcmp(json_string_value(tm), "abs") == 0) po.threshold_mode = BX_THRESHOLD_ABS;
        po.factor = jnum(kw, "factor", po.factor);
        po.patience = jint(kw, "patience", po.patience);
        po.threshold = jnum(kw, "threshold", po.threshold);
        po.cooldown = jint(kw, "cooldown", po.cooldown);
        po.min_lr = jnum(kw, "min_lr", po.min_lr);
        po.eps = jnum(kw, "eps", po.eps);
        s = bx_plateau_new(o, &po);
    } else if (strcmp(name, "SWALR") == 0) {
        bx_swalr_opts wo = BX_SWALR_OPTS_INIT;
        wo.swa_lr = jnum(kw, "swa_lr", NAN);
        wo.anneal_epochs = jint(kw, "anneal_epochs", wo.anneal_epochs);
        wo.anneal_strategy = janneal(kw);
        wo.last_epoch = last_epoch;
        s = bx_swalr_new(o, &wo);
    } else {
        gc_fail(c, "unknown scheduler '%s'", name);
        return NULL;
    }
    if (!s) gc_fail(c, "%s: %s", name, bx_errmsg());
    return s;
}

static void run_sched(gcase *c) {
    json_t *args = gc_args(c);
    int steps = (int)gc_arg_int(c, "steps", 30);
    const char *sname = gc_arg_str(c, "scheduler", NULL);
    const char *ospec = gc_arg_str(c, "optimizer", "SGD(lr=0.1, momentum=0.9)");
    if (!sname || steps < 1 || steps > 100000) {
        gc_fail(c, "args need scheduler and steps");
        return;
    }
    bx_optimizer *o = make_optimizer(c, ospec);
    if (!o) return;
    int64_t shape[1] = {1};
    bx_tensor *p = bx_param_new(1, shape);
    gc_own(c, p);
    bx_scheduler *s = NULL, *warm = NULL;
    lambda_table lt = {{0}, 0};
    bx_tensor *lr = NULL, *mom = NULL;
    if (!p || bx_optimizer_add_group(o, &p, 1, NULL) != BX_OK) {
        gc_fail(c, "add_param_group: %s", bx_errmsg());
        goto out;
    }
    bool swa = strcmp(sname, "SWALR") == 0;
    int64_t swa_at = swa ? gc_arg_int(c, "swalr_constructed_at_iteration", 0) : -1;
    if (swa) {
        const char *wp = gc_arg_str(c, "warm_phase", "constant");
        char wname[64];
        json_t *wkw = parse_call(wp, wname, sizeof wname);
        const char *q = skip_ws(wp);
        while (*q && (isalnum((unsigned char)*q) || *q == '_')) q++;
        bool is_call = *skip_ws(q) == '('; /* "ExponentialLR(gamma=0.8) for ..." */
        if (wkw && is_call) warm = make_sched(c, o, wname, wkw, &lt, -1);
        if (wkw) json_decref(wkw);
        if (is_call && !warm) goto out;
    } else {
        s = make_sched(c, o, sname, args, &lt, -1);
        if (!s) goto out;
    }
    const bx_tensor *metric = gc_get(c, "in.metric");
    if (bx_scheduler_needs_metric(s) && (!metric || bx_numel(metric) < steps)) {
        gc_fail(c, "ReduceLROnPlateau case without in.metric[%d]", steps);
        goto out;
    }
    int64_t n = steps;
    lr = bx_tensor_new(BX_F64, 1, &n);
    mom = bx_tensor_new(BX_F64, 1, &n);
    gc_own(c, lr);
    gc_own(c, mom);
    for (int i = 0; i < steps; i++) {
        if (swa && i == swa_at) {
            int64_t last_epoch = -1;
            if (gc_arg_bool(c, "lightning_style", false)) {
                double swa_lr = gc_arg_num(c, "swa_lr", NAN);
                for (int g = 0; g < bx_optimizer_num_groups(o); g++)
                    bx_optimizer_group_set(o, g, "initial_lr", swa_lr);
                last_epoch = gc_arg_int(c, "max_epochs", steps);
            }
            s = make_sched(c, o, "SWALR", args, &lt, last_epoch);
            if (!s) goto out;
        }
        bx_set(lr, i, bx_optimizer_get_lr(o, 0));
        double m = NAN;
        bx_optimizer_get_momentum(o, 0, &m);
        bx_set(mom, i, m);
        if (bx_optimizer_step(o) != BX_OK) {
            gc_fail(c, "optimizer step %d: %s", i, bx_errmsg());
            goto out;
        }
        bx_status st = BX_OK;
        if (swa && i < swa_at) {
            if (warm) st = bx_scheduler_step(warm);
        } else if (bx_scheduler_needs_metric(s)) {
            st = bx_scheduler_step_metric(s, bx_get(metric, i));
        } else {
            st = bx_scheduler_step(s);
        }
        if (st != BX_OK) {
            gc_fail(c, "scheduler step %d: %s", i, bx_errmsg());
            goto out;
        }
    }
    gc_compare(c, "out.lr", lr);
    if (gc_get(c, "out.momentum")) gc_compare(c, "out.momentum", mom);
out:
    bx_scheduler_free(s);
    bx_scheduler_free(warm);
    bx_optimizer_free(o);
}

const gkind golden_kinds_sched[] = {
    {"step_lr", run_sched},
    {"multistep_lr", run_sched},
    {"exponential_lr", run_sched},
    {"cosine_annealing_lr", run_sched},
    {"cosine_annealing_warm_restarts", run_sched},
    {"lambda_lr", run_sched},
    {"linear_lr", run_sched},
    {"onecycle_lr", run_sched},
    {"reduce_lr_on_plateau", run_sched},
    {"swalr", run_sched},
    {NULL, NULL},
};
