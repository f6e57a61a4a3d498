/* cb_misc.c - blixt-scenario: LearningRateMonitor, GradientAccumulationScheduler
 * (callback and Trainer dict), LambdaCallback, ProgressBarRecorder and
 * TQDMProgressBar from the scenario JSON (FORMAT.md §1.5), and the trace
 * sections `lr_monitor` and `progress_bar` (§2.2, §2.5). */
#include "scenario.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- LambdaCallback: every listed hook appends a src "lambda" event ----------------- */
#define LAM0(h)                                                    \
    static bx_status lam_##h(void *ud, bx_trainer *tr) {           \
        sc_event(ud, "lambda", #h, tr, -1, NULL);                  \
        return BX_OK;                                              \
    }
#define LAM_STAGE(h)                                                         \
    static bx_status lam_##h(void *ud, bx_trainer *tr, bx_stage st) {        \
        sc_event(ud, "lambda", #h, tr, -1, bx_stage_name(st));               \
        return BX_OK;                                                        \
    }
#define LAM_BS(h)                                                                          \
    static bx_status lam_##h(void *ud, bx_trainer *tr, const bx_batch *b, int64_t i) {     \
        (void)b;                                                                           \
        sc_event(ud, "lambda", #h, tr, i, NULL);                                           \
        return BX_OK;                                                                      \
    }
#define LAM_BE(h)                                                                                               \
    static bx_status lam_##h(void *ud, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) { \
        (void)o;                                                                                                \
        (void)b;                                                                                                \
        sc_event(ud, "lambda", #h, tr, i, NULL);                                                                \
        return BX_OK;                                                                                           \
    }
#define LAM_EBS(h)                                                                                \
    static bx_status lam_##h(void *ud, bx_trainer *tr, const bx_batch *b, int64_t i, int d) {     \
        (void)b;                                                                                  \
        (void)d;                                                                                  \
        sc_event(ud, "lambda", #h, tr, i, NULL);                                                  \
        return BX_OK;                                                                             \
    }
#define LAM_EBE(h)                                                                                           \
    static bx_status lam_##h(void *ud, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i, \
                             int d) {                                                                        \
        (void)o;                                                                                             \
        (void)b;                                                                                             \
        (void)d;                                                                                             \
        sc_event(ud, "lambda", #h, tr, i, NULL);                                                             \
        return BX_OK;                                                                                        \
    }

LAM_STAGE(setup)
LAM_STAGE(teardown)
LAM0(on_fit_start)
LAM0(on_fit_end)
LAM0(on_sanity_check_start)
LAM0(on_sanity_check_end)
LAM0(on_train_start)
LAM0(on_train_end)
LAM0(on_train_epoch_start)
LAM0(on_train_epoch_end)
LAM_BS(on_train_batch_start)
LAM_BE(on_train_batch_end)
LAM0(on_validation_start)
LAM0(on_validation_end)
LAM0(on_validation_epoch_start)
LAM0(on_validation_epoch_end)
LAM_EBS(on_validation_batch_start)
LAM_EBE(on_validation_batch_end)
LAM0(on_test_start)
LAM0(on_test_end)
LAM0(on_test_epoch_start)
LAM0(on_test_epoch_end)
LAM_EBS(on_test_batch_start)
LAM_EBE(on_test_batch_end)
LAM0(on_predict_start)
LAM0(on_predict_end)
LAM0(on_predict_epoch_start)
LAM0(on_predict_epoch_end)
LAM_EBS(on_predict_batch_start)
LAM_EBE(on_predict_batch_end)
LAM0(on_after_backward)

static bx_status lam_on_exception(void *ud, bx_trainer *tr, bx_status s, const char *msg) {
    (void)s;
    (void)msg;
    sc_event(ud, "lambda", "on_exception", tr, -1, NULL);
    return BX_OK;
}
static bx_status lam_on_before_backward(void *ud, bx_trainer *tr, bx_tensor *loss) {
    (void)loss;
    sc_event(ud, "lambda", "on_before_backward", tr, -1, NULL);
    return BX_OK;
}
static bx_status lam_on_before_optimizer_step(void *ud, bx_trainer *tr, bx_optimizer *opt, int i) {
    (void)opt;
    (void)i;
    sc_event(ud, "lambda", "on_before_optimizer_step", tr, -1, NULL);
    return BX_OK;
}
static bx_status lam_on_before_zero_grad(void *ud, bx_trainer *tr, bx_optimizer *opt) {
    (void)opt;
    sc_event(ud, "lambda", "on_before_zero_grad", tr, -1, NULL);
    return BX_OK;
}
static bx_status lam_on_save_checkpoint(void *ud, bx_trainer *tr, bx_state *ck) {
    (void)ck;
    sc_event(ud, "lambda", "on_save_checkpoint", tr, -1, NULL);
    return BX_OK;
}
static bx_status lam_on_load_checkpoint(void *ud, bx_trainer *tr, const bx_state *ck) {
    (void)ck;
    sc_event(ud, "lambda", "on_load_checkpoint", tr, -1, NULL);
    return BX_OK;
}

/* Sets the member of `ops` named `name`; false for an unknown hook name. */
static bool lam_set(bx_callback_ops *ops, const char *name) {
#define S(h)                      \
    if (!strcmp(name, #h)) {      \
        ops->h = lam_##h;         \
        return true;              \
    }
    S(setup) S(teardown) S(on_fit_start) S(on_fit_end) S(on_sanity_check_start) S(on_sanity_check_end)
    S(on_train_start) S(on_train_end) S(on_train_epoch_start) S(on_train_epoch_end) S(on_train_batch_start)
    S(on_train_batch_end) S(on_validation_start) S(on_validation_end) S(on_validation_epoch_start)
    S(on_validation_epoch_end) S(on_validation_batch_start) S(on_validation_batch_end) S(on_test_start)
    S(on_test_end) S(on_test_epoch_start) S(on_test_epoch_end) S(on_test_batch_start) S(on_test_batch_end)
    S(on_predict_start) S(on_predict_end) S(on_predict_epoch_start) S(on_predict_epoch_end)
    S(on_predict_batch_start) S(on_predict_batch_end) S(on_after_backward) S(on_exception)
    S(on_before_backward) S(on_before_optimizer_step) S(on_before_zero_grad) S(on_save_checkpoint)
    S(on_load_checkpoint)
#undef S
    return false;
}

/* ---- ProgressBarRecorder: a ProgressBarBase "subclass" on the public base API ------- */
typedef struct pbrec2 {
    sc_phase *ph;
    bool in_val;
} pbrec2;

static json_t *num_or_inf(double v) {
    if (isinf(v)) return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_integer((json_int_t)v);
}

static void pbr_record(pbrec2 *p, bx_trainer *tr, const char *hook, int64_t batch_idx) {
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    json_t *r = json_object();
    json_object_set_new(r, "hook", json_string(hook));
    json_object_set_new(r, "epoch", json_integer(bx_trainer_current_epoch(tr)));
    json_object_set_new(r, "step", json_integer(bx_trainer_global_step(tr)));
    if (bx_trainer_sanity_checking(tr)) json_object_set_new(r, "sanity", json_true());
    if (batch_idx >= 0) json_object_set_new(r, "batch_idx", json_integer(batch_idx));
    json_object_set_new(r, "train_batch_idx", json_integer(c.train_batch_idx));
    json_object_set_new(r, "total_train_batches", num_or_inf(c.total_train_batches));
    json_object_set_new(r, "val_batch_idx", json_integer(c.val_batch_idx));
    if (p->in_val) json_object_set_new(r, "total_val_batches_current_dataloader", num_or_inf(c.total_val_batches_current_dataloader));
    json_object_set_new(r, "total_val_batches", num_or_inf(c.total_val_batches));
    json_object_set_new(r, "total_batches_current_epoch", num_or_inf(c.total_batches_current_epoch));
    bx_state *m = bx_progress_bar_get_metrics(tr);
    json_object_set_new(r, "metrics", m ? sc_state_json(m) : json_object());
    bx_state_free(m);
    json_array_append_new(p->ph->progress_bar, r);
}

static bx_status pbr_tes(void *self, bx_trainer *tr) {
    pbr_record(self, tr, "on_train_epoch_start", -1);
    return BX_OK;
}
static bx_status pbr_tee(void *self, bx_trainer *tr) {
    pbr_record(self, tr, "on_train_epoch_end", -1);
    return BX_OK;
}
static bx_status pbr_tbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)o;
    (void)b;
    pbr_record(self, tr, "on_train_batch_end", i);
    return BX_OK;
}
static bx_status pbr_vs(void *self, bx_trainer *tr) {
    (void)tr;
    ((pbrec2 *)self)->in_val = true;
    return BX_OK;
}
static bx_status pbr_vbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i, int d) {
    (void)o;
    (void)b;
    (void)d;
    pbr_record(self, tr, "on_validation_batch_end", i);
    return BX_OK;
}
static bx_status pbr_ve(void *self, bx_trainer *tr) {
    pbr_record(self, tr, "on_validation_end", -1);
    ((pbrec2 *)self)->in_val = false;
    return BX_OK;
}
static void pbr_destroy(void *self) { free(self); }

static const bx_callback_ops PBREC2_OPS = {
    .name = "ProgressBarRecorder", .on_train_epoch_start = pbr_tes, .on_train_epoch_end = pbr_tee,
    .on_train_batch_end = pbr_tbe, .on_validation_start = pbr_vs, .on_validation_batch_end = pbr_vbe,
    .on_validation_end = pbr_ve, .destroy = pbr_destroy};

/* ---- building ------------------------------------------------------------------------- */
int sc_cb_misc_build(sc_phase *ph, const char *type, json_t *a, bx_trainer_opts *o, bx_callback **out) {
    *out = NULL;
    if (!type) return 0;
    json_t *v;
    if (!strcmp(type, "LearningRateMonitor")) {
        bx_lr_monitor_opts lo = BX_LR_MONITOR_OPTS_INIT;
        if (a && (v = json_object_get(a, "logging_interval")) && json_is_string(v)) lo.logging_interval = json_string_value(v);
        if (a && (v = json_object_get(a, "log_momentum"))) lo.log_momentum = json_is_true(v);
        *out = bx_lr_monitor_new(&lo);
        return *out ? 1 : -1;
    }
    if (!strcmp(type, "GradientAccumulationScheduler")) {
        json_t *sch = a ? json_object_get(a, "scheduling") : NULL;
        int64_t ep[64], fa[64];
        int n = 0;
        const char *k;
        json_object_foreach(sch, k, v) {
            char *end;
            long long e = strtoll(k, &end, 10);
            if (n == 64 || *end || !json_is_integer(v)) {
                fprintf(stderr, "blixt-scenario: GradientAccumulationScheduler: bad scheduling entry '%s'\n", k);
                return -1;
            }
            ep[n] = e;
            fa[n++] = json_integer_value(v);
        }
        *out = bx_grad_accum_scheduler_new(ep, fa, n);
        return *out ? 1 : -1;
    }
    if (!strcmp(type, "LambdaCallback")) {
        bx_callback_ops ops;
        memset(&ops, 0, sizeof ops);
        json_t *hooks = a ? json_object_get(a, "hooks") : NULL;
        size_t i;
        json_array_foreach(hooks, i, v) {
            if (!json_is_string(v) || !lam_set(&ops, json_string_value(v))) {
                fprintf(stderr, "blixt-scenario: LambdaCallback: unknown hook '%s'\n", json_is_string(v) ? json_string_value(v) : "?");
                return -1;
            }
        }
        *out = bx_lambda_callback_new(&ops, ph);
        return *out ? 1 : -1;
    }
    if (!strcmp(type, "ProgressBarRecorder")) {
        pbrec2 *p = calloc(1, sizeof *p);
        if (!p) return -1;
        p->ph = ph;
        *out = bx_callback_new(&PBREC2_OPS, p);
        o->enable_progress_bar = true;
        return *out ? 1 : -1;
    }
    if (!strcmp(type, "TQDMProgressBar") || !strcmp(type, "ProgressBar")) {
        bx_progress_bar_opts po = BX_PROGRESS_BAR_OPTS_INIT;
        if (a && (v = json_object_get(a, "refresh_rate")) && json_is_integer(v)) po.refresh_rate = json_integer_value(v);
        *out = bx_progress_bar_new_ex(&po);
        o->enable_progress_bar = true;
        return *out ? 1 : -1;
    }
    return 0;
}

/* Trainer(accumulate_grad_batches={...}): Lightning wraps the dict into its
 * own GradientAccumulationScheduler appended after the given callbacks (so
 * after the Recorder). A Trainer value next to a user scheduler is a
 * construct error, as in Lightning. */
bx_status sc_cb_misc_after_recorder(sc_phase *ph, bx_callback **cbs, int *ncb) {
    json_t *T = json_object_get(ph->sc, "trainer");
    json_t *acc = T ? json_object_get(T, "accumulate_grad_batches") : NULL;
    if (!acc || json_is_null(acc)) return BX_OK;
    for (int i = 0; i < *ncb; i++)
        if (!strcmp(bx_callback_name(cbs[i]), "GradientAccumulationScheduler")) {
            fprintf(stderr, "blixt-scenario: accumulate_grad_batches with a GradientAccumulationScheduler callback\n");
            return BX_ERR_INVALID;
        }
    if (!json_is_object(acc)) return BX_OK;
    json_t *args = json_pack("{s:O}", "scheduling", acc);
    bx_callback *cb = NULL;
    int r = sc_cb_misc_build(ph, "GradientAccumulationScheduler", args, NULL, &cb);
    json_decref(args);
    if (r < 0) return BX_ERR_INVALID;
    cbs[(*ncb)++] = cb;
    return BX_OK;
}

/* The `lr_monitor` section: per LearningRateMonitor in callback order. */
void sc_cb_misc_trace(sc_phase *ph, bx_trainer *tr, json_t *P) {
    (void)ph;
    json_t *lm = json_array();
    for (int i = 0; i < bx_trainer_num_callbacks(tr); i++) {
        bx_callback *cb = bx_trainer_callback(tr, i);
        if (strcmp(bx_callback_name(cb), "LearningRateMonitor") != 0) continue;
        json_t *e = json_object(), *lrs = json_object(), *mom = json_object();
        for (int k = 0; k < bx_lr_monitor_num_keys(cb); k++) {
            int64_t n;
            const double *v = bx_lr_monitor_values(cb, k, &n);
            json_t *arr = json_array();
            for (int64_t j = 0; j < n; j++) json_array_append_new(arr, json_real(v[j]));
            json_object_set_new(lrs, bx_lr_monitor_key(cb, k), arr);
        }
        for (int k = 0; k < bx_lr_monitor_num_momentum(cb); k++) {
            double v;
            bool has = bx_lr_monitor_momentum_value(cb, k, &v);
            json_object_set_new(mom, bx_lr_monitor_momentum_key(cb, k), has ? json_real(v) : json_null());
        }
        json_object_set_new(e, "lrs", lrs);
        json_object_set_new(e, "last_momentum_values", mom);
        json_array_append_new(lm, e);
    }
    if (json_array_size(lm)) json_object_set_new(P, "lr_monitor", lm);
    else json_decref(lm);
}
