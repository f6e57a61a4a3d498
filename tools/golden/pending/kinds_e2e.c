/* kinds_e2e.c - end-to-end golden cases: e2e_mlp, e2e_cnn.
 *
 * Builds the model that `args.model` describes, loads `param.*` / `buf.*`
 * through the state dict (strict), then for each step i = 1..steps:
 * lr = out.lr[i-1] (checked against the scheduler), train-mode forward of
 * in.batch<i>.x, mean cross entropy with in.batch<i>.y (-> out.loss[i-1]),
 * zero_grad, backward (step 1: grad.step1.*), optimizer step, scheduler step.
 * Finally out.final.* (the state dict, BatchNorm buffers included) and
 * out.eval_y (eval-mode forward of in.eval_x, no grad).
 *
 * Model descriptions understood (tests/golden/README.md "e2e"):
 *   "Sequential(net.0=Linear(20,16), net.1=ReLU, net.2=Linear(16,3)); ..."
 *   "conv=Conv2d(1,4,3,bias=False) -> bn=BatchNorm2d(4) -> relu -> MaxPool2d(2)
 *    -> flatten -> fc=Linear(36,3); ..."
 * Layer sizes come from the parameter shapes in the case (so only the layer
 * kinds and their non-parameter options are read from the text); an MLP whose
 * text cannot be read is rebuilt from its net.K.weight parameters with ReLU
 * between the Linear layers. */
#include "golden.h"
#include "blixt/optim.h"
#include "blixt/sched.h"

#include <ctype.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- model description ---------------------------------------------------- */

/* The first problem met while reading args.model (reported only when no
 * fallback applies). */
typedef struct parse_err {
    char msg[300];
} parse_err;

static void perr(parse_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(parse_err *e, const char *fmt, ...) {
    if (e->msg[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

/* Integer option `key=` in the argument text, else the positional argument
 * `pos` (0-based; -1: none), else dflt. */
static long arg_int(const char *args, const char *key, int pos, long dflt) {
    if (!args) return dflt;
    char pat[32];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *k = strstr(args, pat);
    if (k) {
        k += strlen(pat);
        if (*k == '(') k++; /* stride=(2, 2): first value */
        return strtol(k, NULL, 10);
    }
    const char *p = args;
    for (int i = 0; p && *p && i <= pos; i++) {
        while (*p == ' ') p++;
        if (i == pos) {
            if (!isdigit((unsigned char)*p) && *p != '-') return dflt;
            return strtol(p, NULL, 10);
        }
        p = strchr(p, ',');
        if (p) p++;
    }
    return dflt;
}

static double arg_num(const char *args, const char *key, int pos, double dflt) {
    if (!args) return dflt;
    char pat[32];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *k = strstr(args, pat);
    if (k) return strtod(k + strlen(pat), NULL);
    if (pos == 0) {
        while (*args == ' ') args++;
        if (isdigit((unsigned char)*args) || *args == '-' || *args == '.') return strtod(args, NULL);
    }
    return dflt;
}

static bool arg_false(const char *args, const char *key) {
    char pat[40];
    snprintf(pat, sizeof pat, "%s=False", key);
    return args && strstr(args, pat);
}

/* The parameter `<path>.<leaf>` of the case (param.* tensors). */
static const bx_tensor *case_param(gcase *c, const char *path, const char *leaf) {
    char name[256];
    snprintf(name, sizeof name, "param.%s.%s", path, leaf);
    return gc_get(c, name);
}

/* One layer from its type name ("Linear", "relu", "MaxPool2d") and argument
 * text (inside the parentheses, or NULL); `path` is its dotted name, used to
 * read the parameter shapes. NULL (reason in *pe) on anything not understood. */
static bx_module *make_layer(gcase *c, parse_err *pe, const char *type, const char *args, const char *path) {
    char t[64];
    size_t n = 0;
    for (; type[n] && n < sizeof t - 1; n++) t[n] = (char)tolower((unsigned char)type[n]);
    t[n] = '\0';
    const bx_tensor *w = case_param(c, path, "weight");
    if (strcmp(t, "linear") == 0) {
        if (!w || w->ndim != 2) {
            perr(pe, "e2e: no 2-d param.%s.weight for Linear", path);
            return NULL;
        }
        return bx_nn_linear(w->shape[1], w->shape[0], case_param(c, path, "bias") != NULL, NULL);
    }
    if (strcmp(t, "conv2d") == 0) {
        if (!w || w->ndim != 4) {
            perr(pe, "e2e: no 4-d param.%s.weight for Conv2d", path);
            return NULL;
        }
        bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
        o.stride[0] = o.stride[1] = (int)arg_int(args, "stride", 3, 1);
        o.padding[0] = o.padding[1] = (int)arg_int(args, "padding", 4, 0);
        o.dilation[0] = o.dilation[1] = (int)arg_int(args, "dilation", 5, 1);
        o.groups = (int)arg_int(args, "groups", 6, 1);
        bool bias = case_param(c, path, "bias") != NULL;
        if (json_is_boolean(json_object_get(gc_args(c), "conv_bias")) && bias != gc_arg_bool(c, "conv_bias", bias))
            perr(pe, "e2e: args.conv_bias disagrees with the presence of param.%s.bias", path);
        return bx_nn_conv2d(w->shape[1] * o.groups, w->shape[0], (int)w->shape[2], (int)w->shape[3], &o, bias, NULL);
    }
    if (strcmp(t, "batchnorm1d") == 0 || strcmp(t, "batchnorm2d") == 0) {
        bx_batchnorm_opts o = BX_BATCHNORM_OPTS_INIT;
        o.eps = arg_num(args, "eps", -1, 1e-5);
        if (args && strstr(args, "momentum=None")) o.momentum = NAN;
        else o.momentum = arg_num(args, "momentum", -1, 0.1);
        o.affine = !arg_false(args, "affine");
        o.track_running_stats = !arg_false(args, "track_running_stats");
        char name[256];
        snprintf(name, sizeof name, "buf.%s.running_mean", path);
        const bx_tensor *rm = gc_get(c, name);
        int64_t ch = w ? w->shape[0] : rm ? rm->shape[0] : arg_int(args, "num_features", 0, 0);
        return t[9] == '1' ? bx_nn_batchnorm1d(ch, &o) : bx_nn_batchnorm2d(ch, &o);
    }
    if (strcmp(t, "relu") == 0) return bx_nn_relu();
    if (strcmp(t, "tanh") == 0) return bx_nn_tanh();
    if (strcmp(t, "sigmoid") == 0) return bx_nn_sigmoid();
    if (strcmp(t, "identity") == 0) return bx_nn_identity();
    if (strcmp(t, "gelu") == 0)
        return bx_nn_gelu(args && strstr(args, "tanh") ? BX_GELU_TANH : BX_GELU_EXACT);
    if (strcmp(t, "leakyrelu") == 0 || strcmp(t, "leaky_relu") == 0)
        return bx_nn_leaky_relu((float)arg_num(args, "negative_slope", 0, 0.01));
    if (strcmp(t, "flatten") == 0) return bx_nn_flatten((int)arg_int(args, "start_dim", 0, 1), (int)arg_int(args, "end_dim", 1, -1));
    if (strcmp(t, "dropout") == 0) return bx_nn_dropout((float)arg_num(args, "p", 0, 0.5));
    if (strcmp(t, "maxpool2d") == 0 || strcmp(t, "max_pool2d") == 0 || strcmp(t, "avgpool2d") == 0 ||
        strcmp(t, "avg_pool2d") == 0) {
        bx_pool2d_opts o = BX_POOL2D_OPTS_INIT;
        o.kernel[0] = o.kernel[1] = (int)arg_int(args, "kernel_size", 0, 2);
        o.stride[0] = o.stride[1] = (int)arg_int(args, "stride", 1, 0);
        o.padding[0] = o.padding[1] = (int)arg_int(args, "padding", 2, 0);
        o.ceil_mode = args && strstr(args, "ceil_mode=True");
        return t[0] == 'm' ? bx_nn_max_pool2d(&o) : bx_nn_avg_pool2d(&o);
    }
    if (strcmp(t, "adaptiveavgpool2d") == 0) {
        long h = arg_int(args, "output_size", 0, 1);
        return bx_nn_adaptive_avg_pool2d(h, arg_int(args, "output_size", 1, h));
    }
    perr(pe, "e2e: layer type '%s' in args.model is not supported by this runner", type);
    return NULL;
}

/* Adds `layer` under dotted `path` below root, creating Sequential parents. */
static bool add_at(parse_err *pe, bx_module *root, const char *path, bx_module *layer) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    bx_module *parent = root;
    char *p = buf, *dot;
    while ((dot = strchr(p, '.'))) {
        *dot = '\0';
        bx_module *ch = bx_module_child(parent, p);
        if (!ch) {
            ch = bx_nn_sequential();
            if (bx_module_add_child(parent, p, ch) != BX_OK) break;
        }
        parent = ch;
        p = dot + 1;
    }
    if (bx_module_add_child(parent, p, layer) != BX_OK) {
        perr(pe, "e2e: cannot add layer '%s': %s", path, bx_errmsg());
        return false;
    }
    return true;
}

/* Splits the element text "name=Type(args)" / "Type(args)" / "relu" and adds
 * the layer; unnamed layers get a name of their own (they hold no state). */
static bool add_element(gcase *c, parse_err *pe, bx_module *root, const char *elem, size_t len, int idx) {
    char e[256];
    while (len && isspace((unsigned char)*elem)) elem++, len--;
    while (len && isspace((unsigned char)elem[len - 1])) len--;
    if (len == 0 || len >= sizeof e) return true;
    memcpy(e, elem, len);
    e[len] = '\0';
    char path[128];
    char *type = e;
    char *eq = strchr(e, '=');
    char *paren = strchr(e, '(');
    if (eq && (!paren || eq < paren)) {
        *eq = '\0';
        snprintf(path, sizeof path, "%s", e);
        type = eq + 1;
        paren = strchr(type, '(');
    } else {
        snprintf(path, sizeof path, "_layer%d", idx);
    }
    char *args = NULL;
    if (paren) {
        *paren = '\0';
        args = paren + 1;
        char *close = strrchr(args, ')');
        if (close) *close = '\0';
    }
    while (*type == ' ') type++;
    bx_module *layer = make_layer(c, pe, type, args, path);
    if (!layer) {
        perr(pe, "e2e: cannot build layer '%s': %s", path, bx_errmsg());
        return false;
    }
    return add_at(pe, root, path, layer);
}

/* Splits `s` at top-level occurrences of `sep` (outside parentheses); a "-"
 * separator is not one when a digit follows (a negative number). */
static bool add_list(gcase *c, parse_err *pe, bx_module *root, const char *s, size_t len, const char *sep) {
    size_t seplen = strlen(sep), start = 0;
    int depth = 0, idx = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] == '(') depth++;
        if (i < len && s[i] == ')') depth--;
        bool at_sep = i < len && depth == 0 && i + seplen <= len && strncmp(s + i, sep, seplen) == 0;
        if (at_sep && seplen == 1 && *sep == '-' && (i + 1 < len && (isdigit((unsigned char)s[i + 1]) || s[i + 1] == '>')))
            at_sep = false;
        if (i == len || at_sep) {
            if (!add_element(c, pe, root, s + start, i - start, idx++)) return false;
            start = i + seplen;
            i += seplen - 1;
        }
    }
    return true;
}

/* MLP fallback: Linear at every net.K with a weight, ReLU in between. */
static bool mlp_from_params(gcase *c, parse_err *pe, bx_module *root) {
    int last = -1;
    for (int k = 0; k < 64; k++) {
        char path[32];
        snprintf(path, sizeof path, "net.%d", k);
        if (!case_param(c, path, "weight")) continue;
        if (last >= 0 && k - last >= 2) {
            char rp[32];
            snprintf(rp, sizeof rp, "net.%d", k - 1);
            if (!add_at(pe, root, rp, bx_nn_relu())) return false;
        }
        bx_module *l = make_layer(c, pe, "Linear", NULL, path);
        if (!l || !add_at(pe, root, path, l)) return false;
        last = k;
    }
    if (last < 0) perr(pe, "e2e: no param.net.K.weight to build an MLP from");
    return last >= 0;
}

static bx_module *build_model(gcase *c, bool cnn) {
    const char *desc = gc_arg_str(c, "model", "");
    parse_err pe = {""};
    bx_module *root = bx_nn_sequential();
    size_t len = strcspn(desc, ";");
    const char *seq = strstr(desc, "Sequential(");
    /* a leading label such as "MLP " or "CNN " */
    size_t word = strcspn(desc, " =(");
    if (desc[word] == ' ' && word < len) {
        desc += word + 1;
        len -= word + 1;
    }
    bool ok;
    if (seq && seq >= desc && (size_t)(seq - desc) < len) {
        const char *in = seq + strlen("Sequential(");
        const char *end = desc + len;
        while (end > in && end[-1] != ')') end--;
        ok = end > in && add_list(c, &pe, root, in, (size_t)(end - 1 - in), ",");
    } else if (memchr(desc, '-', len)) {
        const char *arrow = strstr(desc, "->");
        ok = add_list(c, &pe, root, desc, len, arrow && (size_t)(arrow - desc) < len ? "->" : "-");
    } else {
        ok = false;
        perr(&pe, "e2e: cannot read args.model '%s'", gc_arg_str(c, "model", ""));
    }
    if (!ok && !cnn) {
        /* the text was not understood: rebuild the MLP from its parameters */
        bx_module_free(root);
        root = bx_nn_sequential();
        parse_err pe2 = {""};
        ok = mlp_from_params(c, &pe2, root);
    }
    if (!ok) {
        gc_fail(c, "%s", pe.msg);
        bx_module_free(root);
        return NULL;
    }
    return root;
}

/* param.<name>, else buf.<name> */
static const bx_tensor *case_state(void *ud, const char *name) {
    gcase *c = ud;
    char key[300];
    snprintf(key, sizeof key, "param.%s", name);
    const bx_tensor *t = gc_get(c, key);
    if (t) return t;
    snprintf(key, sizeof key, "buf.%s", name);
    return gc_get(c, key);
}

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
    bx_module *m = build_model(c, cnn);
    if (!m) return;
    if (bx_module_load_state_dict_lookup(m, case_state, c, true) != BX_OK) {
        gc_fail(c, "e2e: loading param.*/buf.*: %s", bx_errmsg());
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
