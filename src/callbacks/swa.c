/* swa.c - StochasticWeightAveraging (spec/callbacks.md §8, Lightning 1.9.5
 * with the later fixes; docs/callbacks/swa.md).
 *
 * Written only against the public callback, Trainer and swa.h API.
 * Timeline (M = max_epochs at fit start):
 *   on_fit_start: averaged copy of the module (bx_averaged_model, parameters
 *     only), swa_start = max(start - 1, 0), swa_end = M - 1; with BatchNorm
 *     max_epochs = M + 1 (one forward-only epoch recomputing the statistics).
 *     A resumed run whose checkpoint had SWA running installs its SWALR here,
 *     so the Trainer restores the scheduler state into the right type.
 *   on_train_epoch_start(e): e == swa_start (first time): group initial_lr =
 *     swa_lr per group, SWALR(last_epoch = max_epochs for cos, -1 for linear)
 *     replaces scheduler config 0 or is appended; swa_start <= e <= swa_end
 *     and e > latest_update_epoch: fold the model into the average;
 *     e == swa_end + 1 (BatchNorm): copy the average into the model, reset
 *     the BatchNorm statistics (momentum None), forward-only epoch.
 *   on_train_end: BatchNorm epoch ran -> restore accumulate, num batches,
 *     max_epochs, momenta; else current_epoch - 1 == swa_end -> copy the
 *     average into the model. */
#include "blixt/swa_callback.h"
#include "blixt/trainer.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define TRY(x)                         \
    do {                               \
        bx_status try_s_ = (x);        \
        if (try_s_ != BX_OK) return try_s_; \
    } while (0)

typedef struct swa {
    /* options */
    double start_opt;
    bool start_frac;
    double *lrs; /* n_lrs values, or one value for every group (per_group false) */
    int n_lrs;
    bool per_group;
    int64_t anneal_epochs;
    bx_anneal_strategy strategy;
    bx_avg_fn avg_fn;
    void *avg_ud;
    /* run */
    int64_t swa_start, swa_end, max_epochs;
    bool has_bn, bumped_max;
    bool initialized;
    int64_t init_n_averaged, latest_update_epoch;
    bx_averaged_model *avg;
    bx_scheduler *sched; /* borrowed from the Trainer once installed */
    bx_state *loaded;    /* state from load_state_dict, applied at on_fit_start */
    /* BatchNorm epoch */
    bool bn_epoch;
    bx_bn_saved *bn_saved;
    int64_t saved_accumulate, saved_ntb;
} swa;

static const bx_callback_ops SWA_OPS;

static swa *self_of(const bx_callback *cb) {
    return cb && bx_callback_get_ops(cb) == &SWA_OPS ? bx_callback_self(cb) : NULL;
}

static bx_status fit_error(bx_status s) {
    bx_error_context("StochasticWeightAveraging");
    return s;
}

/* ---- averaged model state <-> bx_state ------------------------------------------- */
static bx_state *avg_state(swa *w) {
    bx_named_tensors *sd = bx_averaged_model_state_dict(w->avg, false);
    bx_state *d = bx_state_dict();
    if (!sd || !d) {
        bx_named_tensors_free(sd);
        bx_state_free(d);
        return NULL;
    }
    for (int i = 0; i < sd->n; i++)
        if (bx_state_set_tensor(d, sd->names[i], sd->tensors[i]) != BX_OK) {
            bx_state_free(d);
            d = NULL;
            break;
        }
    bx_named_tensors_free(sd);
    return d;
}

static bx_status load_avg_state(swa *w, const bx_state *d) {
    if (bx_state_typeof(d) != BX_STATE_DICT)
        return bx_set_error(BX_ERR_FORMAT, "average_model_state is not a dict");
    bx_named_tensors *l = bx_named_tensors_new(false);
    if (!l) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    for (size_t i = 0; s == BX_OK && i < bx_state_len(d); i++) {
        const bx_tensor *t = bx_state_get_tensor(bx_state_value_at(d, i));
        if (!t) s = bx_set_error(BX_ERR_FORMAT, "average_model_state['%s'] is not a tensor", bx_state_key_at(d, i));
        else s = bx_named_tensors_add(l, bx_state_key_at(d, i), (bx_tensor *)t);
    }
    if (s == BX_OK) s = bx_averaged_model_load_state_dict(w->avg, l, true);
    bx_named_tensors_free(l);
    return s;
}

/* ---- SWALR ------------------------------------------------------------------------ */
static int find_sched(bx_trainer *tr, const bx_scheduler *s) {
    for (int i = 0; s && i < bx_trainer_num_schedulers(tr); i++)
        if (bx_trainer_scheduler(tr, i)->scheduler == s) return i;
    return -1;
}

/* Sets every group's initial_lr to its swa_lr, builds the SWALR and swaps it
 * for scheduler config 0 (or appends it). sched_state: restore it (resume). */
static bx_status install_swalr(swa *w, bx_trainer *tr, const bx_state *sched_state) {
    bx_optimizer *opt = bx_trainer_optimizer(tr, 0);
    int ng = bx_optimizer_num_groups(opt);
    if (w->per_group && w->n_lrs != ng)
        return bx_set_error(BX_ERR_INVALID,
                         "StochasticWeightAveraging: swa_lrs has %d values but the optimizer has %d param groups",
                         w->n_lrs, ng);
    double *lrs = bx_malloc(sizeof(double) * (size_t)(ng > 0 ? ng : 1));
    if (!lrs) return BX_ERR_NOMEM;
    bx_status gs = BX_OK;
    for (int g = 0; gs == BX_OK && g < ng; g++) {
        lrs[g] = w->per_group ? w->lrs[g] : w->lrs[0];
        gs = bx_optimizer_group_set(opt, g, "initial_lr", lrs[g]);
    }
    if (gs != BX_OK) {
        bx_free(lrs);
        return fit_error(gs);
    }
    bx_swalr_opts so = BX_SWALR_OPTS_INIT;
    so.swa_lrs = lrs;
    so.n_swa_lrs = ng;
    so.anneal_epochs = w->anneal_epochs;
    so.anneal_strategy = w->strategy;
    so.last_epoch = w->strategy == BX_ANNEAL_COS ? bx_trainer_max_epochs(tr) : -1;
    bx_scheduler *s = bx_swalr_new(opt, &so);
    bx_free(lrs);
    if (!s) return fit_error(BX_ERR_INVALID);
    if (sched_state && bx_state_typeof(sched_state) == BX_STATE_DICT) {
        bx_status st = bx_scheduler_load_state_dict(s, sched_state);
        if (st != BX_OK) {
            bx_scheduler_free(s);
            bx_error_context("StochasticWeightAveraging: scheduler_state");
            return st;
        }
    } else if (bx_trainer_current_epoch(tr) != w->swa_start) {
        bx_logf(BX_LOG_WARNING,
                "SWA is initializing after swa_start without any checkpoint data. This may be caused by loading "
                "a checkpoint from an older version of PyTorch Lightning.");
    }
    bx_sched_config sc = BX_SCHED_CONFIG_INIT;
    sc.scheduler = s;
    int idx = bx_trainer_num_schedulers(tr);
    if (idx > 0) {
        const bx_sched_config *old = bx_trainer_scheduler(tr, 0);
        if (old->interval != BX_INTERVAL_EPOCH || old->frequency != 1)
            bx_logf(BX_LOG_WARNING, "SWA is currently only supported every epoch. Found the scheduler config of %s",
                    bx_scheduler_type(old->scheduler));
        bx_logf(BX_LOG_INFO, "Swapping scheduler `%s` for `SWALR`", bx_scheduler_type(old->scheduler));
        idx = 0;
    }
    TRY(bx_trainer_set_scheduler(tr, idx, &sc)); /* takes s over, also on failure */
    w->sched = s;
    w->initialized = true;
    return bx_averaged_model_set_n_averaged(w->avg, w->init_n_averaged);
}

/* ---- hooks ------------------------------------------------------------------------ */
static bx_status swa_fit_start(void *self, bx_trainer *tr) {
    swa *w = self;
    if (bx_trainer_num_optimizers(tr) != 1)
        return bx_set_error(BX_ERR_INVALID, "StochasticWeightAveraging: SWA works with 1 optimizer, the model configured %d",
                         bx_trainer_num_optimizers(tr));
    if (bx_trainer_num_schedulers(tr) > 1)
        return bx_set_error(BX_ERR_INVALID,
                         "StochasticWeightAveraging: SWA supports at most 1 lr scheduler, the model configured %d",
                         bx_trainer_num_schedulers(tr));
    int ng = bx_optimizer_num_groups(bx_trainer_optimizer(tr, 0));
    if (w->per_group && w->n_lrs != ng)
        return bx_set_error(BX_ERR_INVALID,
                         "StochasticWeightAveraging: swa_lrs has %d values but the optimizer has %d param groups",
                         w->n_lrs, ng);
    int64_t M = bx_trainer_max_epochs(tr);
    int64_t start;
    if (w->start_frac) {
        if (M < 0)
            return bx_set_error(BX_ERR_INVALID, "StochasticWeightAveraging: a fractional swa_epoch_start (%g) needs "
                                             "max_epochs; give an integer epoch with max_epochs=-1", w->start_opt);
        start = (int64_t)((double)M * w->start_opt);
    } else {
        start = (int64_t)w->start_opt;
    }
    w->swa_start = start - 1 > 0 ? start - 1 : 0;
    w->max_epochs = M;
    w->swa_end = M < 0 ? INT64_MAX - 2 : M - 1;
    bx_module *m = bx_trainer_module(tr);
    /* SWA that never starts (start after the last epoch) neither adds the
     * BatchNorm epoch nor copies the untouched initial copy into the model
     * (Lightning 1.9.5 does both) */
    bool will_run = w->swa_start <= w->swa_end;
    if (!will_run)
        bx_logf(BX_LOG_WARNING, "StochasticWeightAveraging: swa_epoch_start=%lld is after the last epoch (%lld); "
                                "SWA will not run", (long long)start, (long long)M);
    w->has_bn = will_run && M >= 0 && bx_module_has_batchnorm(m);
    w->bn_epoch = false;
    w->bumped_max = false;
    if (w->has_bn) {
        bx_trainer_set_max_epochs(tr, M + 1);
        w->bumped_max = true;
    }
    /* a fresh copy for every fit (Lightning: setup) */
    bx_averaged_model_free(w->avg);
    w->sched = NULL;
    w->initialized = false;
    bx_averaged_model_opts ao = BX_AVERAGED_MODEL_OPTS_INIT;
    ao.avg_fn = w->avg_fn;
    ao.avg_ud = w->avg_ud;
    w->avg = bx_averaged_model_new(m, &ao);
    if (!w->avg) return fit_error(BX_ERR_NOMEM);
    if (w->loaded) {
        bx_state *ld = w->loaded;
        w->loaded = NULL;
        const bx_state *ams = bx_state_get(ld, "average_model_state");
        const bx_state *ss = bx_state_get(ld, "scheduler_state");
        bx_status s = BX_OK;
        if (ams && bx_state_typeof(ams) != BX_STATE_NULL) s = load_avg_state(w, ams);
        if (s != BX_OK) bx_error_context("StochasticWeightAveraging: load_state_dict");
        /* SWA was running: install SWALR now so the Trainer restores the
         * checkpoint's scheduler state into it (Lightning clears the configs
         * instead, #11665). */
        if (s == BX_OK && ss && bx_state_typeof(ss) == BX_STATE_DICT) s = install_swalr(w, tr, ss);
        bx_state_free(ld);
        return s;
    }
    return BX_OK;
}

static bx_status swa_epoch_start(void *self, bx_trainer *tr) {
    swa *w = self;
    int64_t e = bx_trainer_current_epoch(tr);
    if (!w->avg) return BX_OK;
    if (!w->initialized && w->swa_start <= e && e <= w->swa_end) TRY(install_swalr(w, tr, NULL));
    if (w->swa_start <= e && e <= w->swa_end && e > w->latest_update_epoch) {
        bx_status s = bx_averaged_model_update(w->avg, bx_trainer_module(tr));
        if (s != BX_OK) return fit_error(s);
        w->latest_update_epoch = e;
    }
    if (w->has_bn && e == w->swa_end + 1 && !w->bn_epoch && w->initialized) {
        bx_module *m = bx_trainer_module(tr);
        TRY(bx_averaged_model_transfer_weights(w->avg, m, false));
        TRY(bx_bn_recompute_begin(m, false, &w->bn_saved));
        /* forward only: no zero_grad, backward or optimizer step; the whole
         * epoch is one accumulation window so no step boundary is counted */
        w->saved_accumulate = bx_trainer_accumulate_grad_batches(tr);
        w->saved_ntb = bx_trainer_num_training_batches(tr);
        bx_trainer_set_accumulate_grad_batches(tr, w->saved_ntb > 0 ? w->saved_ntb : 1);
        bx_trainer_set_skip_backward(tr, true);
        w->bn_epoch = true;
    }
    return BX_OK;
}

static bx_status swa_epoch_end(void *self, bx_trainer *tr) {
    swa *w = self;
    if (w->bn_epoch) bx_trainer_set_skip_backward(tr, false);
    return BX_OK;
}

static void restore_bn_epoch(swa *w, bx_trainer *tr) {
    if (w->bn_epoch) {
        bx_trainer_set_skip_backward(tr, false);
        bx_trainer_set_accumulate_grad_batches(tr, w->saved_accumulate);
        bx_trainer_set_num_training_batches(tr, w->saved_ntb);
        bx_bn_recompute_end(w->bn_saved);
        w->bn_saved = NULL;
        w->bn_epoch = false;
    }
    if (w->bumped_max) {
        bx_trainer_set_max_epochs(tr, w->max_epochs);
        w->bumped_max = false;
    }
}

static bx_status swa_train_end(void *self, bx_trainer *tr) {
    swa *w = self;
    if (!w->avg) return BX_OK;
    bool bn_ran = w->bn_epoch;
    restore_bn_epoch(w, tr);
    if (bn_ran) return BX_OK;
    if (bx_trainer_current_epoch(tr) - 1 == w->swa_end && w->initialized && bx_averaged_model_n_averaged(w->avg) > 0) {
        if (w->has_bn)
            bx_logf(BX_LOG_WARNING, "StochasticWeightAveraging: training ended before the BatchNorm update epoch; "
                                    "the averaged weights are used with the model's BatchNorm statistics");
        return bx_averaged_model_transfer_weights(w->avg, bx_trainer_module(tr), false);
    }
    if (w->initialized)
        bx_logf(BX_LOG_WARNING, "StochasticWeightAveraging: training stopped at epoch %lld before swa_end (%lld); "
                                "the model keeps its trained weights, not the average",
                (long long)bx_trainer_current_epoch(tr) - 1, (long long)w->swa_end);
    return BX_OK;
}

static bx_status swa_exception(void *self, bx_trainer *tr, bx_status s, const char *msg) {
    (void)s;
    (void)msg;
    restore_bn_epoch(self, tr);
    return BX_OK;
}

static bx_status swa_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    swa *w = self;
    int64_t n = w->initialized ? bx_averaged_model_n_averaged(w->avg) : w->init_n_averaged;
    TRY(bx_state_set_int(out, "n_averaged", n));
    TRY(bx_state_set_int(out, "latest_update_epoch", w->latest_update_epoch));
    bx_state *ss = w->initialized && find_sched(tr, w->sched) >= 0 ? bx_scheduler_state_dict(w->sched) : bx_state_null();
    if (!ss) return BX_ERR_NOMEM;
    TRY(bx_state_set(out, "scheduler_state", ss));
    bx_state *as = w->avg ? avg_state(w) : bx_state_null();
    if (!as) return BX_ERR_NOMEM;
    return bx_state_set(out, "average_model_state", as);
}

static bx_status swa_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    swa *w = self;
    int64_t n, lue;
    bx_status s = bx_state_need_int(st, "n_averaged", &n);
    if (!s) s = bx_state_need_int(st, "latest_update_epoch", &lue);
    if (!s && (!bx_state_get(st, "scheduler_state") || !bx_state_get(st, "average_model_state")))
        s = bx_set_error(BX_ERR_FORMAT, "key 'scheduler_state' or 'average_model_state' missing");
    if (s) {
        bx_error_context("StochasticWeightAveraging: load_state_dict");
        return s;
    }
    bx_state *c = bx_state_copy(st);
    if (!c) return BX_ERR_NOMEM;
    bx_state_free(w->loaded);
    w->loaded = c;
    w->init_n_averaged = n;
    w->latest_update_epoch = lue;
    return BX_OK;
}

static void swa_destroy(void *self) {
    swa *w = self;
    if (!w) return;
    /* bn_saved is restored at on_train_end / on_exception; a leftover one
     * (Trainer freed mid-run) only holds momenta: drop it without touching
     * the module, which may be gone */
    bx_averaged_model_free(w->avg);
    bx_state_free(w->loaded);
    bx_free(w->lrs);
    bx_free(w);
}

static const bx_callback_ops SWA_OPS = {
    .name = "StochasticWeightAveraging",
    .on_fit_start = swa_fit_start,
    .on_train_epoch_start = swa_epoch_start,
    .on_train_epoch_end = swa_epoch_end,
    .on_train_end = swa_train_end,
    .on_exception = swa_exception,
    .state_dict = swa_state_dict,
    .load_state_dict = swa_load_state_dict,
    .destroy = swa_destroy,
};

bx_callback *bx_swa_callback_new(const bx_swa_callback_opts *o) {
    bx_swa_callback_opts def = BX_SWA_CALLBACK_OPTS_INIT;
    if (!o) o = &def;
    double v = o->swa_epoch_start;
    if (o->swa_epoch_start_is_fraction ? !(v >= 0.0 && v <= 1.0) : !(v >= 1.0 && v == floor(v) && v < 9e18)) {
        bx_set_error(BX_ERR_INVALID,
                  "StochasticWeightAveraging: swa_epoch_start should be a >0 integer or a float between 0 and 1, "
                  "got %g (%s)", v, o->swa_epoch_start_is_fraction ? "fraction" : "integer");
        return NULL;
    }
    int n = o->swa_lrs ? o->n_swa_lrs : 1;
    if (o->swa_lrs && n < 1) {
        bx_set_error(BX_ERR_INVALID, "StochasticWeightAveraging: swa_lrs should be a positive float or a list of "
                                  "positive floats, got an empty list");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        double lr = o->swa_lrs ? o->swa_lrs[i] : o->swa_lr;
        if (!(lr > 0.0) || isinf(lr)) {
            if (o->swa_lrs)
                bx_set_error(BX_ERR_INVALID, "StochasticWeightAveraging: swa_lrs should be a positive float or a list "
                                          "of positive floats, got swa_lrs[%d] = %g", i, lr);
            else
                bx_set_error(BX_ERR_INVALID, "StochasticWeightAveraging: swa_lrs should be a positive float or a list "
                                          "of positive floats, got %g%s", lr, isnan(lr) ? " (swa_lrs is required)" : "");
            return NULL;
        }
    }
    if (o->annealing_epochs < 0) {
        bx_set_error(BX_ERR_INVALID, "StochasticWeightAveraging: annealing_epochs should be >= 0, got %lld",
                  (long long)o->annealing_epochs);
        return NULL;
    }
    if (o->annealing_strategy != BX_ANNEAL_COS && o->annealing_strategy != BX_ANNEAL_LINEAR) {
        bx_set_error(BX_ERR_INVALID, "StochasticWeightAveraging: annealing_strategy should be cos or linear, got %d",
                  (int)o->annealing_strategy);
        return NULL;
    }
    swa *w = bx_calloc(sizeof *w);
    double *lrs = bx_malloc(sizeof(double) * (size_t)n);
    if (!w || !lrs) {
        bx_free(w);
        bx_free(lrs);
        return NULL;
    }
    for (int i = 0; i < n; i++) lrs[i] = o->swa_lrs ? o->swa_lrs[i] : o->swa_lr;
    w->start_opt = v;
    w->start_frac = o->swa_epoch_start_is_fraction;
    w->lrs = lrs;
    w->n_lrs = n;
    w->per_group = o->swa_lrs != NULL;
    w->anneal_epochs = o->annealing_epochs;
    w->strategy = o->annealing_strategy;
    w->avg_fn = o->avg_fn;
    w->avg_ud = o->avg_ud;
    w->swa_start = w->swa_end = -1;
    w->latest_update_epoch = -1;
    return bx_callback_new(&SWA_OPS, w);
}

bool bx_swa_callback_is(const bx_callback *cb) { return self_of(cb) != NULL; }
int64_t bx_swa_callback_swa_start(const bx_callback *cb) {
    swa *w = self_of(cb);
    return w ? w->swa_start : -1;
}
int64_t bx_swa_callback_swa_end(const bx_callback *cb) {
    swa *w = self_of(cb);
    return w ? w->swa_end : -1;
}
bool bx_swa_callback_initialized(const bx_callback *cb) {
    swa *w = self_of(cb);
    return w && w->initialized;
}
int64_t bx_swa_callback_n_averaged(const bx_callback *cb) {
    swa *w = self_of(cb);
    if (!w) return -1;
    return w->initialized ? bx_averaged_model_n_averaged(w->avg) : w->init_n_averaged;
}
int64_t bx_swa_callback_latest_update_epoch(const bx_callback *cb) {
    swa *w = self_of(cb);
    return w ? w->latest_update_epoch : -1;
}
bx_module *bx_swa_callback_average_module(bx_callback *cb) {
    swa *w = self_of(cb);
    return w && w->avg ? bx_averaged_model_module(w->avg) : NULL;
}
