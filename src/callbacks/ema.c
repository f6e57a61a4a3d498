/* ema.c - EMAWeightAveraging: an exponential moving average of the weights
 * (Lightning 2.6's EMAWeightAveraging idea on the engine's EMA, swa.h).
 *
 * on_fit_start: EMA copy of the module (bx_averaged_model_new_ema), or the
 * restored one; on_train_batch_end: one bx_averaged_model_step per optimizer
 * step taken (global_step advanced), which updates on every N-th step from
 * start_step on; on_train_end (swap_at_end): the average is copied into the
 * model (parameters; buffers too when they are averaged). State: the
 * engine's bx_averaged_model_state, so a resumed run continues exactly. */
#include "blixt/swa_callback.h"
#include "blixt/trainer.h"

#include <math.h>

typedef struct ema {
    bx_ema_opts o;
    bool swap_at_end;
    bx_averaged_model *avg;
    bx_state *loaded;
    int64_t last_step;
} ema;

static const bx_callback_ops EMA_OPS;

static ema *self_of(const bx_callback *cb) {
    return cb && bx_callback_get_ops(cb) == &EMA_OPS ? bx_callback_self(cb) : NULL;
}

static bx_status ema_fit_start(void *self, bx_trainer *tr) {
    ema *e = self;
    bx_averaged_model_free(e->avg);
    e->avg = bx_averaged_model_new_ema(bx_trainer_module(tr), &e->o);
    if (!e->avg) {
        bx_error_context("EMAWeightAveraging");
        return BX_ERR_NOMEM;
    }
    if (e->loaded) {
        bx_status s = bx_averaged_model_load_state(e->avg, e->loaded);
        bx_state_free(e->loaded);
        e->loaded = NULL;
        if (s != BX_OK) {
            bx_error_context("EMAWeightAveraging: load_state_dict");
            return s;
        }
    }
    return BX_OK;
}

static bx_status ema_train_start(void *self, bx_trainer *tr) {
    ((ema *)self)->last_step = bx_trainer_global_step(tr); /* after a restore */
    return BX_OK;
}

static bx_status ema_batch_end(void *self, bx_trainer *tr, const bx_step_output *out, const bx_batch *b,
                               int64_t batch_idx) {
    (void)out;
    (void)b;
    (void)batch_idx;
    ema *e = self;
    int64_t gs = bx_trainer_global_step(tr);
    if (!e->avg || gs <= e->last_step) return BX_OK;
    e->last_step = gs;
    bx_status s = bx_averaged_model_step(e->avg, bx_trainer_module(tr), NULL);
    if (s != BX_OK) bx_error_context("EMAWeightAveraging");
    return s;
}

static bx_status ema_train_end(void *self, bx_trainer *tr) {
    ema *e = self;
    if (!e->avg || !e->swap_at_end || bx_averaged_model_n_averaged(e->avg) == 0) return BX_OK;
    return bx_averaged_model_transfer_weights(e->avg, bx_trainer_module(tr), e->o.buffers == BX_EMA_BUFFERS_AVERAGE);
}

static bx_status ema_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    ema *e = self;
    if (!e->avg) return BX_OK;
    bx_state *st = bx_averaged_model_state(e->avg);
    if (!st) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    for (size_t i = 0; s == BX_OK && i < bx_state_len(st); i++) {
        bx_state *c = bx_state_copy(bx_state_value_at(st, i));
        s = c ? bx_state_set(out, bx_state_key_at(st, i), c) : BX_ERR_NOMEM;
    }
    bx_state_free(st);
    return s;
}

static bx_status ema_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    ema *e = self;
    bx_state *c = bx_state_copy(st);
    if (!c) return BX_ERR_NOMEM;
    bx_state_free(e->loaded);
    e->loaded = c;
    return BX_OK;
}

static void ema_destroy(void *self) {
    ema *e = self;
    if (!e) return;
    bx_averaged_model_free(e->avg);
    bx_state_free(e->loaded);
    bx_free(e);
}

static const bx_callback_ops EMA_OPS = {
    .name = "EMAWeightAveraging",
    .on_fit_start = ema_fit_start,
    .on_train_start = ema_train_start,
    .on_train_batch_end = ema_batch_end,
    .on_train_end = ema_train_end,
    .state_dict = ema_state_dict,
    .load_state_dict = ema_load_state_dict,
    .destroy = ema_destroy,
};

bx_callback *bx_ema_callback_new(const bx_ema_callback_opts *o) {
    bx_ema_callback_opts def = BX_EMA_CALLBACK_OPTS_INIT;
    if (!o) o = &def;
    if (!(o->decay >= 0.0 && o->decay <= 1.0)) {
        bx_set_error(BX_ERR_INVALID, "EMAWeightAveraging: decay should be in [0, 1], got %g", o->decay);
        return NULL;
    }
    if (o->every_n_steps < 1) {
        bx_set_error(BX_ERR_INVALID, "EMAWeightAveraging: every_n_steps should be >= 1, got %lld",
                  (long long)o->every_n_steps);
        return NULL;
    }
    if (o->start_step < 0) {
        bx_set_error(BX_ERR_INVALID, "EMAWeightAveraging: start_step should be >= 0, got %lld", (long long)o->start_step);
        return NULL;
    }
    ema *e = bx_calloc(sizeof *e);
    if (!e) return NULL;
    e->o.decay = o->decay;
    e->o.every_n_steps = o->every_n_steps;
    e->o.start_step = o->start_step;
    e->o.warmup = o->warmup;
    e->o.buffers = o->buffers;
    e->swap_at_end = o->swap_at_end;
    return bx_callback_new(&EMA_OPS, e);
}

bool bx_ema_callback_is(const bx_callback *cb) { return self_of(cb) != NULL; }
bx_module *bx_ema_callback_average_module(bx_callback *cb) {
    ema *e = self_of(cb);
    return e && e->avg ? bx_averaged_model_module(e->avg) : NULL;
}
int64_t bx_ema_callback_n_averaged(const bx_callback *cb) {
    ema *e = self_of(cb);
    return e && e->avg ? bx_averaged_model_n_averaged(e->avg) : -1;
}
