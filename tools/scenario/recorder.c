/* recorder.c - the scenario's own callbacks: the Recorder (events, epoch and
 * step records), Counter (a stateful callback). */
#include "scenario.h"

#include <blixt/optim.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- Recorder ---------------------------------------------------------------------------- */
static void rec_epoch_record(sc_phase *ph, bx_trainer *tr, const char *at) {
    if (!ph->epoch_lrs) return;
    json_t *r = json_object();
    json_object_set_new(r, "at", json_string(at));
    json_object_set_new(r, "epoch", json_integer(bx_trainer_current_epoch(tr)));
    json_object_set_new(r, "step", json_integer(bx_trainer_global_step(tr)));
    json_t *lrs = json_array(), *mom = json_array(), *gp = json_array();
    bx_named_tensors *np = bx_module_named_parameters(ph->root);
    for (int o = 0; o < bx_trainer_num_optimizers(tr); o++) {
        bx_optimizer *opt = bx_trainer_optimizer(tr, o);
        json_t *l = json_array(), *m = json_array(), *g = json_array();
        for (int gi = 0; gi < bx_optimizer_num_groups(opt); gi++) {
            json_array_append_new(l, json_real(bx_optimizer_get_lr(opt, gi)));
            double mv = 0;
            bx_optimizer_get_momentum(opt, gi, &mv);
            json_array_append_new(m, json_real(mv));
            json_t *names = json_array();
            for (int pi = 0; pi < bx_optimizer_group_num_params(opt, gi); pi++) {
                bx_tensor *p = bx_optimizer_group_param(opt, gi, pi);
                for (int k = 0; k < np->n; k++)
                    if (np->tensors[k] == p) json_array_append_new(names, json_string(np->names[k]));
            }
            json_array_append_new(g, names);
        }
        json_array_append_new(lrs, l);
        json_array_append_new(mom, m);
        json_array_append_new(gp, g);
    }
    if (ph->rec_requires_grad) {
        json_t *rg = json_object();
        for (int k = 0; k < np->n; k++) json_object_set_new(rg, np->names[k], json_boolean(np->tensors[k]->requires_grad));
        json_object_set_new(r, "requires_grad", rg);
    }
    if (ph->rec_params && !strcmp(at, "on_train_epoch_end")) {
        json_t *pp = json_object();
        for (int k = 0; k < np->n; k++) json_object_set_new(pp, np->names[k], sc_tensor_json(np->tensors[k]));
        json_object_set_new(r, "params", pp);
    }
    if (!strcmp(at, "on_train_epoch_end")) sc_prune_epoch_record(ph, r);
    if (!strcmp(at, "on_train_epoch_end")) sc_qat_epoch_record(ph, r);
    bx_named_tensors_free(np);
    json_object_set_new(r, "lrs", lrs);
    json_object_set_new(r, "momenta", mom);
    json_object_set_new(r, "group_params", gp);
    json_array_append_new(ph->epoch_records, r);
}

#define REC(name)                                                               \
    static bx_status r_##name(void *self, bx_trainer *tr) {                     \
        sc_event((sc_phase *)self, "cb", #name, tr, -1, NULL);                  \
        return BX_OK;                                                           \
    }
REC(on_fit_start) REC(on_fit_end) REC(on_sanity_check_start) REC(on_sanity_check_end) REC(on_train_start)
REC(on_train_end) REC(on_validation_epoch_start) REC(on_validation_epoch_end) REC(on_after_backward)

static bx_status r_on_validation_start(void *self, bx_trainer *tr) {
    sc_phase *ph = self;
    sc_event(ph, "cb", "on_validation_start", tr, -1, NULL);
    if (bx_trainer_sanity_checking(tr)) ph->n_sanity_runs++;
    else ph->n_val_runs++;
    return BX_OK;
}
static bx_status r_on_validation_end(void *self, bx_trainer *tr) {
    sc_event(self, "cb", "on_validation_end", tr, -1, NULL);
    return BX_OK;
}
static bx_status r_on_train_epoch_start(void *self, bx_trainer *tr) {
    sc_event(self, "cb", "on_train_epoch_start", tr, -1, NULL);
    rec_epoch_record(self, tr, "on_train_epoch_start");
    return BX_OK;
}
static bx_status r_on_train_epoch_end(void *self, bx_trainer *tr) {
    sc_event(self, "cb", "on_train_epoch_end", tr, -1, NULL);
    rec_epoch_record(self, tr, "on_train_epoch_end");
    return BX_OK;
}
static bx_status r_setup(void *self, bx_trainer *tr, bx_stage s) {
    sc_event(self, "cb", "setup", tr, -1, bx_stage_name(s));
    return BX_OK;
}
static bx_status r_teardown(void *self, bx_trainer *tr, bx_stage s) {
    sc_event(self, "cb", "teardown", tr, -1, bx_stage_name(s));
    return BX_OK;
}
static bx_status r_tbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    (void)b;
    sc_phase *ph = self;
    sc_event(ph, "cb", "on_train_batch_start", tr, i, NULL);
    if (ph->step_lrs) {
        json_t *r = json_object(), *lrs = json_array(), *mom = json_array();
        json_object_set_new(r, "epoch", json_integer(bx_trainer_current_epoch(tr)));
        json_object_set_new(r, "step", json_integer(bx_trainer_global_step(tr)));
        json_object_set_new(r, "batch_idx", json_integer(i));
        for (int o = 0; o < bx_trainer_num_optimizers(tr); o++) {
            bx_optimizer *opt = bx_trainer_optimizer(tr, o);
            json_t *l = json_array(), *m = json_array();
            for (int g = 0; g < bx_optimizer_num_groups(opt); g++) {
                double mv = 0;
                json_array_append_new(l, json_real(bx_optimizer_get_lr(opt, g)));
                bx_optimizer_get_momentum(opt, g, &mv);
                json_array_append_new(m, json_real(mv));
            }
            json_array_append_new(lrs, l);
            json_array_append_new(mom, m);
        }
        json_object_set_new(r, "lrs", lrs);
        json_object_set_new(r, "momenta", mom);
        json_array_append_new(ph->step_records, r);
    }
    return BX_OK;
}
static bx_status r_tbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)b; (void)o;
    sc_event(self, "cb", "on_train_batch_end", tr, i, NULL);
    return BX_OK;
}
static bx_status r_vbs(void *self, bx_trainer *tr, const bx_batch *b, int64_t i, int d) {
    (void)b; (void)d;
    sc_event(self, "cb", "on_validation_batch_start", tr, i, NULL);
    return BX_OK;
}
static bx_status r_vbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i, int d) {
    (void)b; (void)d; (void)o;
    sc_event(self, "cb", "on_validation_batch_end", tr, i, NULL);
    return BX_OK;
}
static bx_status r_bzg(void *self, bx_trainer *tr, bx_optimizer *o) {
    (void)o;
    sc_event(self, "cb", "on_before_zero_grad", tr, -1, NULL);
    return BX_OK;
}
static bx_status r_bb(void *self, bx_trainer *tr, bx_tensor *l) {
    (void)l;
    sc_event(self, "cb", "on_before_backward", tr, -1, NULL);
    return BX_OK;
}
static bx_status r_bos(void *self, bx_trainer *tr, bx_optimizer *o, int i) {
    (void)o; (void)i;
    ((sc_phase *)self)->n_opt_steps++;
    sc_event(self, "cb", "on_before_optimizer_step", tr, -1, NULL);
    return BX_OK;
}
static bx_status r_save(void *self, bx_trainer *tr, bx_state *c) {
    (void)c;
    ((sc_phase *)self)->n_ckpt_saves++;
    sc_event(self, "cb", "on_save_checkpoint", tr, -1, NULL);
    return BX_OK;
}
static bx_status r_load(void *self, bx_trainer *tr, const bx_state *c) {
    (void)c;
    sc_event(self, "cb", "on_load_checkpoint", tr, -1, NULL);
    return BX_OK;
}
static bx_status r_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)out;
    sc_event(self, "cb", "state_dict", tr, -1, NULL);
    return BX_OK;
}
static bx_status r_exc(void *self, bx_trainer *tr, bx_status s, const char *m) {
    (void)s; (void)m;
    sc_event(self, "cb", "on_exception", tr, -1, NULL);
    return BX_OK;
}

static const bx_callback_ops RECORDER_OPS = {
    .name = "Recorder", .setup = r_setup, .teardown = r_teardown, .on_fit_start = r_on_fit_start,
    .on_fit_end = r_on_fit_end, .on_sanity_check_start = r_on_sanity_check_start,
    .on_sanity_check_end = r_on_sanity_check_end, .on_train_start = r_on_train_start, .on_train_end = r_on_train_end,
    .on_train_epoch_start = r_on_train_epoch_start, .on_train_epoch_end = r_on_train_epoch_end,
    .on_train_batch_start = r_tbs, .on_train_batch_end = r_tbe, .on_validation_start = r_on_validation_start,
    .on_validation_end = r_on_validation_end, .on_validation_epoch_start = r_on_validation_epoch_start,
    .on_validation_epoch_end = r_on_validation_epoch_end, .on_validation_batch_start = r_vbs,
    .on_validation_batch_end = r_vbe, .on_exception = r_exc, .on_before_backward = r_bb,
    .on_after_backward = r_on_after_backward, .on_before_optimizer_step = r_bos, .on_before_zero_grad = r_bzg,
    .state_dict = r_state_dict, .on_save_checkpoint = r_save, .on_load_checkpoint = r_load,
};

bx_callback *sc_recorder_new(sc_phase *ph) { return bx_callback_new(&RECORDER_OPS, ph); }

/* ---- Counter ---------------------------------------------------------------------------- */
typedef struct counter {
    sc_phase *ph;
    char key[64];
    int64_t batches, epochs, val_ends;
    json_t *rec; /* {state_key, state, loaded} in ph->counters */
} counter;

static void c_key(void *self, char *buf, size_t n) { snprintf(buf, n, "Counter{'key': '%s'}", ((counter *)self)->key); }
static void c_sync(counter *c) {
    json_t *st = json_pack("{s:I,s:I,s:I}", "batches", (json_int_t)c->batches, "epochs", (json_int_t)c->epochs,
                           "val_ends", (json_int_t)c->val_ends);
    json_object_set_new(c->rec, "state", st);
}
static bx_status c_tbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)tr; (void)o; (void)b; (void)i;
    ((counter *)self)->batches++;
    c_sync(self);
    return BX_OK;
}
static bx_status c_tee(void *self, bx_trainer *tr) {
    (void)tr;
    ((counter *)self)->epochs++;
    c_sync(self);
    return BX_OK;
}
static bx_status c_ve(void *self, bx_trainer *tr) {
    if (!bx_trainer_sanity_checking(tr)) ((counter *)self)->val_ends++;
    c_sync(self);
    return BX_OK;
}
static bx_status c_sd(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    counter *c = self;
    bx_status s = bx_state_set_int(out, "batches", c->batches);
    if (!s) s = bx_state_set_int(out, "epochs", c->epochs);
    if (!s) s = bx_state_set_int(out, "val_ends", c->val_ends);
    return s;
}
static bx_status c_lsd(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    counter *c = self;
    bx_state_need_int(st, "batches", &c->batches);
    bx_state_need_int(st, "epochs", &c->epochs);
    bx_state_need_int(st, "val_ends", &c->val_ends);
    json_object_set_new(c->rec, "loaded", sc_state_json(st));
    c_sync(c);
    return BX_OK;
}
static void c_destroy(void *self) { free(self); }

static const bx_callback_ops COUNTER_OPS = {
    .name = "Counter", .state_key = c_key, .on_train_batch_end = c_tbe, .on_train_epoch_end = c_tee,
    .on_validation_end = c_ve, .state_dict = c_sd, .load_state_dict = c_lsd, .destroy = c_destroy,
};

bx_callback *sc_counter_new(sc_phase *ph, const char *key) {
    counter *c = calloc(1, sizeof *c);
    c->ph = ph;
    snprintf(c->key, sizeof c->key, "%s", key);
    c->rec = json_object();
    char k[128];
    c_key(c, k, sizeof k);
    json_object_set_new(c->rec, "state_key", json_string(k));
    json_object_set_new(c->rec, "loaded", json_null());
    c_sync(c);
    json_array_append_new(ph->counters, c->rec);
    return bx_callback_new(&COUNTER_OPS, c);
}

/* ProgressBarRecorder: cb_misc.c, on the public ProgressBarBase API. */
