/* model.c - the scenario's LightningModule (Linear layers, MSE loss,
 * scripted logging), its data, and the Recorder / Counter callbacks. */
#include "scenario.h"

#include <stdint.h>

#include <blixt/ops.h>
#include <blixt/optim.h>
#include <blixt/sched.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers --------------------------------------------------------------------- */
json_t *sc_tensor_json(const bx_tensor *t) {
    if (t->ndim == 0) return json_real(bx_get(t, 0));
    json_t *a = json_array();
    int64_t inner = 1;
    for (int d = 1; d < t->ndim; d++) inner *= t->shape[d];
    for (int64_t i = 0; i < t->shape[0]; i++) {
        if (t->ndim == 1) {
            double v = bx_get(t, i);
            json_array_append_new(a, isnan(v) ? json_string("NaN") : json_real(v));
        } else {
            json_t *row = json_array();
            for (int64_t j = 0; j < inner; j++) json_array_append_new(row, json_real(bx_get(t, i * inner + j)));
            json_array_append_new(a, row);
        }
    }
    return a;
}

json_t *sc_state_json(const bx_state *s) {
    if (!s) return json_null();
    switch (bx_state_typeof(s)) {
    case BX_STATE_NULL: return json_null();
    case BX_STATE_BOOL: return json_boolean(bx_state_get_bool(s));
    case BX_STATE_INT: return json_integer(bx_state_get_int(s));
    case BX_STATE_FLOAT: {
        double v = bx_state_get_float(s);
        if (isnan(v)) return json_string("NaN");
        if (isinf(v)) return json_string(v > 0 ? "Infinity" : "-Infinity");
        return json_real(v);
    }
    case BX_STATE_STRING: return json_string(bx_state_get_string(s));
    case BX_STATE_TENSOR: return sc_tensor_json(bx_state_get_tensor(s));
    case BX_STATE_LIST: {
        json_t *a = json_array();
        for (size_t i = 0; i < bx_state_len(s); i++) json_array_append_new(a, sc_state_json(bx_state_at(s, i)));
        return a;
    }
    case BX_STATE_DICT: {
        json_t *o = json_object();
        for (size_t i = 0; i < bx_state_len(s); i++)
            json_object_set_new(o, bx_state_key_at(s, i), sc_state_json(bx_state_value_at(s, i)));
        return o;
    }
    }
    return json_null();
}

void sc_event(sc_phase *ph, const char *src, const char *hook, bx_trainer *tr, int64_t batch_idx,
              const char *stage) {
    json_t *e = json_object();
    json_object_set_new(e, "src", json_string(src));
    json_object_set_new(e, "hook", json_string(hook));
    json_object_set_new(e, "epoch", json_integer(bx_trainer_current_epoch(tr)));
    json_object_set_new(e, "step", json_integer(bx_trainer_global_step(tr)));
    if (bx_trainer_sanity_checking(tr)) json_object_set_new(e, "sanity", json_true());
    if (batch_idx >= 0) json_object_set_new(e, "batch_idx", json_integer(batch_idx));
    if (stage) json_object_set_new(e, "stage", json_string(stage));
    json_array_append_new(ph->events, e);
}

static double script_value(json_t *list, int64_t idx) {
    json_t *v = list;
    if (json_is_array(list)) {
        size_t n = json_array_size(list);
        if (n == 0) return NAN;
        v = json_array_get(list, (size_t)idx < n ? (size_t)idx : n - 1);
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        if (strcmp(s, "nan") == 0) return NAN;
        if (strcmp(s, "inf") == 0) return INFINITY;
        if (strcmp(s, "-inf") == 0) return -INFINITY;
        return atof(s);
    }
    return json_number_value(v);
}

/* ---- the module ---------------------------------------------------------------------- */
static bx_tensor *root_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    sc_phase *ph = bx_module_impl(m);
    for (int i = 0; i < ph->nlayers; i++) {
        x = bx_module_forward(bx_module_child(m, ph->layers[i].name), st, x);
        if (ph->layers[i].relu) x = bx_relu(st, x);
    }
    return x;
}
/* impl is the borrowed phase (no destroy_impl): a clone (SWA's averaged
 * copy) shares it */
static void *root_clone(const void *impl) { return (void *)(uintptr_t)impl; }
static const bx_module_type ROOT_TYPE = {"ScenarioModule", root_forward, NULL, root_clone, NULL, NULL};

static json_t *S(sc_phase *ph, const char *k) { return json_object_get(ph->sc, k); }

static bx_status build_module(sc_phase *ph) {
    json_t *layers = json_object_get(S(ph, "model"), "layers");
    ph->root = bx_module_new(&ROOT_TYPE, ph);
    if (!ph->root) return BX_ERR_NOMEM;
    size_t n = layers ? json_array_size(layers) : 1;
    ph->nlayers = (int)n;
    for (size_t li = 0; li < n; li++) {
        json_t *L = layers ? json_array_get(layers, li) : NULL;
        sc_layer *l = &ph->layers[li];
        snprintf(l->name, sizeof l->name, "%s", L && json_object_get(L, "name") ? json_string_value(json_object_get(L, "name")) : "layer");
        l->in = L && json_object_get(L, "in") ? json_integer_value(json_object_get(L, "in")) : 2;
        l->out = L && json_object_get(L, "out") ? json_integer_value(json_object_get(L, "out")) : 1;
        json_t *b = L ? json_object_get(L, "bias") : NULL;
        l->bias = !b || json_is_true(b);
        json_t *a = L ? json_object_get(L, "activation") : NULL;
        l->relu = a && json_is_string(a) && strcmp(json_string_value(a), "relu") == 0;
        bx_rng r;
        bx_rng_init(&r, 0);
        bx_module *lin = bx_nn_linear(l->in, l->out, l->bias, &r);
        if (!lin) return BX_ERR_NOMEM;
        bx_status s = bx_module_add_child(ph->root, l->name, lin);
        if (s != BX_OK) return s;
        bx_tensor *w = bx_module_param(lin, "weight");
        json_t *wj = L ? json_object_get(L, "weight") : NULL;
        int64_t K = l->in * l->out;
        for (int64_t o = 0; o < l->out; o++)
            for (int64_t i = 0; i < l->in; i++) {
                int64_t k = o * l->in + i;
                double v = wj ? json_number_value(json_array_get(json_array_get(wj, (size_t)o), (size_t)i))
                              : ((k % 2) ? -1.0 : 1.0) * (double)(k + 1) / (double)(2 * K);
                bx_set(w, k, (double)(float)v);
            }
        if (l->bias) {
            bx_tensor *bt = bx_module_param(lin, "bias");
            json_t *bj = L ? json_object_get(L, "bias_init") : NULL;
            for (int64_t o = 0; o < l->out; o++) {
                double v = bj ? json_number_value(json_array_get(bj, (size_t)o)) : ((o % 2) ? -1.0 : 1.0) * 0.05 * (double)(o + 1);
                bx_set(bt, o, (double)(float)v);
            }
        }
    }
    return BX_OK;
}

bx_status sc_build_data(sc_phase *ph, bx_dataset **train, bx_dataset **val) {
    json_t *d = S(ph, "data");
    int64_t ntr = d && json_object_get(d, "n_train") ? json_integer_value(json_object_get(d, "n_train")) : 8;
    int64_t nva = d && json_object_get(d, "n_val") ? json_integer_value(json_object_get(d, "n_val")) : 4;
    int64_t IN = ph->layers[0].in, OUT = ph->layers[ph->nlayers - 1].out;
    for (int which = 0; which < 2; which++) {
        int64_t n = which ? nva : ntr, base = which ? ntr : 0;
        json_t *xo = d ? json_object_get(d, which ? "x_val" : "x_train") : NULL;
        json_t *yo = d ? json_object_get(d, which ? "y_val" : "y_train") : NULL;
        if (xo) n = (int64_t)json_array_size(xo);
        int64_t xs[2] = {n, IN}, ys[2] = {n, OUT};
        bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
        if (!x || !y) return BX_ERR_NOMEM;
        for (int64_t s = 0; s < n; s++) {
            double xd[64];
            for (int64_t i = 0; i < IN; i++) {
                int64_t nn = base + s;
                xd[i] = xo ? json_number_value(json_array_get(json_array_get(xo, (size_t)s), (size_t)i))
                           : (double)((((nn * IN + i) * 7) % 11) - 5) / 5.0;
                bx_set(x, s * IN + i, (double)(float)xd[i]);
            }
            for (int64_t o = 0; o < OUT; o++) {
                double v = 0;
                if (yo) v = json_number_value(json_array_get(json_array_get(yo, (size_t)s), (size_t)o));
                else
                    for (int64_t i = 0; i < IN; i++) v += (0.5 * (double)(((i + o) % 3) - 1) + 0.25) * xd[i];
                bx_set(y, s * OUT + o, (double)(float)v);
            }
        }
        bx_dataset *ds = bx_dataset_from_tensors(x, y, true);
        if (!ds) return BX_ERR_NOMEM;
        if (which) *val = ds;
        else *train = ds;
    }
    return BX_OK;
}

/* ---- model ops ------------------------------------------------------------------------- */
#define MH(ph, name, tr) \
    do { if ((ph)->module_hooks) sc_event((ph), "module", name, (tr), -1, NULL); } while (0)
#define MHB(ph, name, tr, b) \
    do { if ((ph)->module_hooks) sc_event((ph), "module", name, (tr), (b), NULL); } while (0)

static bx_module *m_module(void *self) { return ((sc_phase *)self)->root; }

static bx_status m_setup(void *self, bx_trainer *tr, bx_stage stage) {
    sc_phase *ph = self;
    if (ph->module_hooks) sc_event(ph, "module", "setup", tr, -1, bx_stage_name(stage));
    return BX_OK;
}

static bx_status log_script(sc_phase *ph, bx_trainer *tr, const char *section, int64_t idx, unsigned flags) {
    json_t *scr = json_object_get(S(ph, "script"), section);
    const char *k;
    json_t *v;
    json_object_foreach(scr, k, v) {
        bx_log_opts o = {flags, 1.0};
        bx_status s = bx_trainer_log_ex(tr, k, script_value(v, idx), &o);
        if (s != BX_OK) return s;
    }
    return BX_OK;
}

static unsigned train_step_flags(sc_phase *ph) {
    json_t *f = json_object_get(S(ph, "script"), "train_step_flags");
    unsigned fl = BX_LOG_ON_STEP | BX_LOG_NO_EPOCH;
    if (!f) return fl;
    json_t *a = json_object_get(f, "on_step"), *b = json_object_get(f, "on_epoch"), *c = json_object_get(f, "prog_bar");
    fl = 0;
    fl |= (!a || json_is_true(a)) ? BX_LOG_ON_STEP : BX_LOG_NO_STEP;
    fl |= (b && json_is_true(b)) ? BX_LOG_ON_EPOCH : BX_LOG_NO_EPOCH;
    if (c && json_is_true(c)) fl |= BX_LOG_PROG_BAR;
    return fl;
}

static bx_tensor *loss_of(sc_phase *ph, bx_step *st, const bx_batch *b) {
    bx_tensor *out = bx_module_forward(ph->root, st, b->x);
    return bx_mse_loss(st, out, b->y, BX_REDUCTION_MEAN);
}

static bx_status m_training_step(void *self, bx_step *st, const bx_batch *b, int64_t bi) {
    sc_phase *ph = self;
    bx_trainer *tr = bx_step_trainer(st);
    MHB(ph, "training_step", tr, bi);
    int64_t k = ph->n_training_step++;
    bx_status s = log_script(ph, tr, "train_step", k, train_step_flags(ph));
    if (s == BX_OK) s = log_script(ph, tr, "train_epoch", bx_trainer_current_epoch(tr), BX_LOG_NO_STEP | BX_LOG_ON_EPOCH);
    bx_tensor *loss = loss_of(ph, st, b);
    json_t *ln = json_object_get(S(ph, "script"), "log_train_loss");
    if (s == BX_OK && ln && !bx_is_poison(loss)) {
        bx_log_opts o = {train_step_flags(ph), 0};
        s = bx_trainer_log_ex(tr, json_string_value(ln), bx_get(loss, 0), &o);
    }
    if (s == BX_OK) s = bx_step_set_loss(st, loss);
    return s;
}

static bx_status m_validation_step(void *self, bx_step *st, const bx_batch *b, int64_t bi) {
    sc_phase *ph = self;
    bx_trainer *tr = bx_step_trainer(st);
    MHB(ph, "validation_step", tr, bi);
    bx_status s = BX_OK;
    if (!bx_trainer_sanity_checking(tr)) s = log_script(ph, tr, "val_step", ph->val_step_calls++, BX_LOG_NO_STEP | BX_LOG_ON_EPOCH);
    json_t *ln = json_object_get(S(ph, "script"), "log_val_loss");
    if (s == BX_OK && ln) {
        bx_tensor *loss = loss_of(ph, st, b);
        bx_log_opts o = {BX_LOG_NO_STEP | BX_LOG_ON_EPOCH, 0};
        if (!bx_is_poison(loss)) s = bx_trainer_log_ex(tr, json_string_value(ln), bx_get(loss, 0), &o);
    }
    return s;
}

static bx_status m_configure_optimizers(void *self, bx_trainer *tr, bx_optim_config *cfg);

static bx_status m_prepare_data(void *self, bx_trainer *tr) { MH((sc_phase *)self, "prepare_data", tr); return BX_OK; }
static bx_status m_configure_callbacks(void *self, bx_trainer *tr) { MH((sc_phase *)self, "configure_callbacks", tr); return BX_OK; }
static bx_status m_eval(void *self, bx_trainer *tr) {
    MH((sc_phase *)self, "on_validation_model_eval", tr);
    bx_module_train(((sc_phase *)self)->root, false);
    return BX_OK;
}
static bx_status m_train(void *self, bx_trainer *tr) {
    MH((sc_phase *)self, "on_validation_model_train", tr);
    bx_module_train(((sc_phase *)self)->root, true);
    return BX_OK;
}
static bx_status m_optimizer_step(void *self, bx_trainer *tr, bx_optimizer *o, int oi, int64_t bi) {
    (void)o; (void)oi;
    MHB((sc_phase *)self, "optimizer_step", tr, bi);
    return BX_OK;
}
static bx_status m_zero_grad(void *self, bx_trainer *tr, bx_optimizer *o, int oi, int64_t bi) {
    (void)oi;
    MHB((sc_phase *)self, "optimizer_zero_grad", tr, bi);
    bx_optimizer_zero_grad(o);
    return BX_OK;
}
static bx_status m_backward(void *self, bx_trainer *tr, bx_tensor *loss) {
    MH((sc_phase *)self, "backward", tr);
    return bx_backward(bx_trainer_current_step(tr), loss);
}
static bx_status m_clip(void *self, bx_trainer *tr, bx_optimizer *o, int oi) {
    (void)oi;
    MH((sc_phase *)self, "configure_gradient_clipping", tr);
    (void)o;
    return BX_OK;
}
static bx_status m_sched_step(void *self, bx_trainer *tr, bx_scheduler *s, int idx) {
    MH((sc_phase *)self, "lr_scheduler_step", tr);
    const bx_sched_config *c = bx_trainer_scheduler(tr, idx);
    if (bx_scheduler_needs_metric(s)) {
        double v;
        bx_status st = bx_trainer_metric(tr, c->monitor, &v);
        return st ? st : bx_scheduler_step_metric(s, v);
    }
    return bx_scheduler_step(s);
}
static bx_status m_train_dl(void *self, bx_trainer *tr) { MH((sc_phase *)self, "train_dataloader", tr); return BX_OK; }
static bx_status m_val_dl(void *self, bx_trainer *tr) { MH((sc_phase *)self, "val_dataloader", tr); return BX_OK; }

/* model's callback-hook table (events with src "module") */
#define MHOOK(name) \
    static bx_status mh_##name(void *self, bx_trainer *tr) { MH((sc_phase *)self, #name, tr); return BX_OK; }
MHOOK(on_fit_start) MHOOK(on_fit_end) MHOOK(on_train_start) MHOOK(on_train_end) MHOOK(on_train_epoch_start)
MHOOK(on_validation_start) MHOOK(on_validation_end) MHOOK(on_validation_epoch_start) MHOOK(on_after_backward)

static bx_status mh_on_train_epoch_end(void *self, bx_trainer *tr) {
    MH((sc_phase *)self, "on_train_epoch_end", tr);
    return BX_OK;
}
static bx_status mh_on_validation_epoch_end(void *self, bx_trainer *tr) {
    sc_phase *ph = self;
    MH(ph, "on_validation_epoch_end", tr);
    if (bx_trainer_sanity_checking(tr)) {
        json_t *san = json_object_get(S(ph, "script"), "sanity");
        const char *k;
        json_t *v;
        json_object_foreach(san, k, v) {
            bx_status s = bx_trainer_log(tr, k, script_value(v, 0), 0);
            if (s) return s;
        }
        return BX_OK;
    }
    return log_script(ph, tr, "val", ph->val_run_idx++, 0);
}
static bx_status mh_teardown(void *self, bx_trainer *tr, bx_stage s) {
    if (((sc_phase *)self)->module_hooks) sc_event(self, "module", "teardown", tr, -1, bx_stage_name(s));
    return BX_OK;
}
static bx_status mh_on_train_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)b;
    MHB((sc_phase *)self, "on_train_batch_start", tr, i);
    return BX_OK;
}
static bx_status mh_on_train_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)b; (void)o;
    MHB((sc_phase *)self, "on_train_batch_end", tr, i);
    return BX_OK;
}
static bx_status mh_on_validation_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t i, int d) {
    (void)b; (void)d;
    MHB((sc_phase *)self, "on_validation_batch_start", tr, i);
    return BX_OK;
}
static bx_status mh_on_validation_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b,
                                            int64_t i, int d) {
    (void)b; (void)d; (void)o;
    MHB((sc_phase *)self, "on_validation_batch_end", tr, i);
    return BX_OK;
}
static bx_status mh_on_before_backward(void *self, bx_trainer *tr, bx_tensor *l) {
    (void)l;
    MH((sc_phase *)self, "on_before_backward", tr);
    return BX_OK;
}
static bx_status mh_on_before_optimizer_step(void *self, bx_trainer *tr, bx_optimizer *o, int i) {
    (void)o; (void)i;
    MH((sc_phase *)self, "on_before_optimizer_step", tr);
    return BX_OK;
}
static bx_status mh_on_before_zero_grad(void *self, bx_trainer *tr, bx_optimizer *o) {
    (void)o;
    MH((sc_phase *)self, "on_before_zero_grad", tr);
    return BX_OK;
}
static bx_status mh_on_save_checkpoint(void *self, bx_trainer *tr, bx_state *c) {
    (void)c;
    MH((sc_phase *)self, "on_save_checkpoint", tr);
    return BX_OK;
}
static bx_status mh_on_load_checkpoint(void *self, bx_trainer *tr, const bx_state *c) {
    (void)c;
    MH((sc_phase *)self, "on_load_checkpoint", tr);
    return BX_OK;
}

static const bx_callback_ops MODEL_HOOKS = {
    .name = "ScenarioModule",
    .on_fit_start = mh_on_fit_start, .on_fit_end = mh_on_fit_end, .teardown = mh_teardown,
    .on_train_start = mh_on_train_start, .on_train_end = mh_on_train_end,
    .on_train_epoch_start = mh_on_train_epoch_start, .on_train_epoch_end = mh_on_train_epoch_end,
    .on_train_batch_start = mh_on_train_batch_start, .on_train_batch_end = mh_on_train_batch_end,
    .on_validation_start = mh_on_validation_start, .on_validation_end = mh_on_validation_end,
    .on_validation_epoch_start = mh_on_validation_epoch_start, .on_validation_epoch_end = mh_on_validation_epoch_end,
    .on_validation_batch_start = mh_on_validation_batch_start, .on_validation_batch_end = mh_on_validation_batch_end,
    .on_before_backward = mh_on_before_backward, .on_after_backward = mh_on_after_backward,
    .on_before_optimizer_step = mh_on_before_optimizer_step, .on_before_zero_grad = mh_on_before_zero_grad,
    .on_save_checkpoint = mh_on_save_checkpoint, .on_load_checkpoint = mh_on_load_checkpoint,
};

static const bx_model_ops MODEL_OPS_PLAIN = {
    .name = "ScenarioModule", .setup = m_setup, .module = m_module, .configure_optimizers = m_configure_optimizers,
    .training_step = m_training_step, .validation_step = m_validation_step, .hooks = &MODEL_HOOKS,
};

static const bx_model_ops MODEL_OPS_REC = {
    .name = "ScenarioModule", .setup = m_setup, .module = m_module, .configure_optimizers = m_configure_optimizers,
    .training_step = m_training_step, .validation_step = m_validation_step,
    .prepare_data = m_prepare_data, .configure_callbacks = m_configure_callbacks,
    .on_validation_model_eval = m_eval, .on_validation_model_train = m_train, .optimizer_step = m_optimizer_step,
    .optimizer_zero_grad = m_zero_grad, .backward = m_backward, .configure_gradient_clipping = m_clip,
    .lr_scheduler_step = m_sched_step, .train_dataloader = m_train_dl, .val_dataloader = m_val_dl,
    .hooks = &MODEL_HOOKS,
};

bx_status sc_build_model(sc_phase *ph, const bx_model_ops **ops) {
    *ops = ph->module_hooks ? &MODEL_OPS_REC : &MODEL_OPS_PLAIN;
    return build_module(ph);
}

/* ---- optimizer + schedulers ----------------------------------------------------------- */
static double jnum(json_t *o, const char *k, double def) {
    json_t *v = json_object_get(o, k);
    return v && json_is_number(v) ? json_number_value(v) : def;
}

static bx_optimizer *make_opt(json_t *oj) {
    const char *type = json_object_get(oj, "type") ? json_string_value(json_object_get(oj, "type")) : "SGD";
    if (strcmp(type, "SGD") == 0) {
        bx_sgd_opts o = BX_SGD_OPTS_INIT;
        o.lr = jnum(oj, "lr", 0.1);
        o.momentum = jnum(oj, "momentum", 0);
        o.dampening = jnum(oj, "dampening", 0);
        o.weight_decay = jnum(oj, "weight_decay", 0);
        o.nesterov = json_is_true(json_object_get(oj, "nesterov"));
        return bx_sgd_new(&o);
    }
    bx_adam_opts a = strcmp(type, "AdamW") == 0 ? (bx_adam_opts)BX_ADAMW_OPTS_INIT : (bx_adam_opts)BX_ADAM_OPTS_INIT;
    a.lr = jnum(oj, "lr", a.lr);
    a.eps = jnum(oj, "eps", a.eps);
    a.weight_decay = jnum(oj, "weight_decay", a.weight_decay);
    json_t *b = json_object_get(oj, "betas");
    if (b) {
        a.betas[0] = json_number_value(json_array_get(b, 0));
        a.betas[1] = json_number_value(json_array_get(b, 1));
    }
    if (strcmp(type, "Adam") == 0) return bx_adam_new(&a);
    if (strcmp(type, "AdamW") == 0) return bx_adamw_new(&a);
    if (strcmp(type, "RMSprop") == 0) {
        bx_rmsprop_opts r = BX_RMSPROP_OPTS_INIT;
        r.lr = jnum(oj, "lr", r.lr);
        r.momentum = jnum(oj, "momentum", 0);
        r.alpha = jnum(oj, "alpha", r.alpha);
        return bx_rmsprop_new(&r);
    }
    return NULL;
}

static bx_scheduler *make_sched(bx_optimizer *opt, json_t *sj) {
    const char *type = json_string_value(json_object_get(sj, "type"));
    json_t *a = json_object_get(sj, "args");
    if (!type) return NULL;
    if (strcmp(type, "StepLR") == 0) {
        bx_step_lr_opts o = BX_STEP_LR_OPTS_INIT;
        o.step_size = (int64_t)jnum(a, "step_size", 1);
        o.gamma = jnum(a, "gamma", 0.1);
        return bx_step_lr_new(opt, &o);
    }
    if (strcmp(type, "MultiStepLR") == 0) {
        bx_multistep_lr_opts o = BX_MULTISTEP_LR_OPTS_INIT;
        static int64_t ms[32];
        json_t *m = json_object_get(a, "milestones");
        o.n_milestones = (int)json_array_size(m);
        for (int i = 0; i < o.n_milestones && i < 32; i++) ms[i] = json_integer_value(json_array_get(m, (size_t)i));
        o.milestones = ms;
        o.gamma = jnum(a, "gamma", 0.1);
        return bx_multistep_lr_new(opt, &o);
    }
    if (strcmp(type, "ExponentialLR") == 0) {
        bx_exponential_lr_opts o = BX_EXPONENTIAL_LR_OPTS_INIT;
        o.gamma = jnum(a, "gamma", 0.9);
        return bx_exponential_lr_new(opt, &o);
    }
    if (strcmp(type, "CosineAnnealingLR") == 0) {
        bx_cosine_lr_opts o = BX_COSINE_LR_OPTS_INIT;
        o.T_max = (int64_t)jnum(a, "T_max", 1);
        o.eta_min = jnum(a, "eta_min", 0);
        return bx_cosine_lr_new(opt, &o);
    }
    if (strcmp(type, "ReduceLROnPlateau") == 0) {
        bx_plateau_opts o = BX_PLATEAU_OPTS_INIT;
        json_t *mode = json_object_get(a, "mode");
        if (mode && strcmp(json_string_value(mode), "max") == 0) o.mode = BX_PLATEAU_MAX;
        o.factor = jnum(a, "factor", 0.1);
        o.patience = (int64_t)jnum(a, "patience", 10);
        o.threshold = jnum(a, "threshold", 1e-4);
        return bx_plateau_new(opt, &o);
    }
    return NULL;
}

static bx_status m_configure_optimizers(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    sc_phase *ph = self;
    MH(ph, "configure_optimizers", tr);
    json_t *oj = S(ph, "optimizer");
    json_t *def = json_pack("{s:s,s:f}", "type", "SGD", "lr", 0.1);
    if (!oj) oj = def;
    bx_optimizer *opt = make_opt(oj);
    if (!opt) {
        json_decref(def);
        return BX_ERR_INVALID;
    }
    json_t *groups = json_object_get(oj, "param_groups");
    bx_named_tensors *np = bx_module_named_parameters(ph->root);
    bx_status s = BX_OK;
    if (!groups) {
        bx_tensor *ps[64];
        int n = 0;
        for (int i = 0; i < np->n && n < 64; i++)
            if (np->tensors[i]->requires_grad) ps[n++] = np->tensors[i];
        s = bx_optimizer_add_group(opt, ps, n, NULL);
    } else {
        for (size_t g = 0; s == BX_OK && g < json_array_size(groups); g++) {
            json_t *G = json_array_get(groups, g), *pl = json_object_get(G, "params");
            bx_tensor *ps[64];
            int n = 0;
            for (size_t i = 0; i < json_array_size(pl); i++) {
                bx_tensor *t = bx_named_tensors_get(np, json_string_value(json_array_get(pl, i)));
                if (t) ps[n++] = t;
            }
            bx_param_group_opts go = BX_PARAM_GROUP_OPTS_INIT;
            go.lr = jnum(G, "lr", NAN);
            go.momentum = jnum(G, "momentum", NAN);
            go.weight_decay = jnum(G, "weight_decay", NAN);
            json_t *nm = json_object_get(G, "name");
            go.name = nm ? json_string_value(nm) : NULL;
            s = bx_optimizer_add_group(opt, ps, n, &go);
        }
    }
    bx_named_tensors_free(np);
    json_decref(def);
    if (s != BX_OK) {
        bx_optimizer_free(opt);
        return s;
    }
    s = bx_optim_config_add_optimizer(cfg, opt);
    json_t *lr = S(ph, "lr_scheduler");
    if (s == BX_OK && lr) {
        size_t n = json_is_array(lr) ? json_array_size(lr) : 1;
        for (size_t i = 0; s == BX_OK && i < n; i++) {
            json_t *sj = json_is_array(lr) ? json_array_get(lr, i) : lr;
            bx_sched_config c = BX_SCHED_CONFIG_INIT;
            c.scheduler = make_sched(opt, sj);
            if (!c.scheduler) return BX_ERR_INVALID;
            json_t *iv = json_object_get(sj, "interval");
            if (iv && strcmp(json_string_value(iv), "step") == 0) c.interval = BX_INTERVAL_STEP;
            c.frequency = (int64_t)jnum(sj, "frequency", 1);
            json_t *mo = json_object_get(sj, "monitor"), *nm = json_object_get(sj, "name"), *st = json_object_get(sj, "strict");
            c.monitor = mo && json_is_string(mo) ? json_string_value(mo) : NULL;
            c.name = nm && json_is_string(nm) ? json_string_value(nm) : NULL;
            if (st) c.strict = json_is_true(st);
            s = bx_optim_config_add_scheduler(cfg, &c);
        }
    }
    return s;
}

