/* trainer_props.c - what callbacks and users read from the Trainer (and the
 * few things they set). Counters follow Lightning 1.9.5 (see train_int.h). */
#include "train/train_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int64_t bx_trainer_current_epoch(const bx_trainer *tr) { return tr->epochs_completed; }
int64_t bx_trainer_global_step(const bx_trainer *tr) { return tr->global_step; }
int64_t bx_trainer_batches_that_stepped(const bx_trainer *tr) { return tr->batches_that_stepped; }
bool bx_trainer_should_stop(const bx_trainer *tr) { return tr->should_stop; }
void bx_trainer_set_should_stop(bx_trainer *tr, bool stop) { tr->should_stop = stop; }
bool bx_trainer_sanity_checking(const bx_trainer *tr) { return tr->sanity_checking; }
bool bx_trainer_fast_dev_run(const bx_trainer *tr) { return tr->fast_dev_run_on; }
bx_stage bx_trainer_stage(const bx_trainer *tr) { return tr->stage; }
bool bx_trainer_training(const bx_trainer *tr) { return tr->training; }
int64_t bx_trainer_max_epochs(const bx_trainer *tr) { return tr->max_epochs; }
void bx_trainer_set_max_epochs(bx_trainer *tr, int64_t n) { tr->max_epochs = n; }
int64_t bx_trainer_min_epochs(const bx_trainer *tr) { return tr->min_epochs; }
int64_t bx_trainer_max_steps(const bx_trainer *tr) { return tr->max_steps; }
int64_t bx_trainer_accumulate_grad_batches(const bx_trainer *tr) { return tr->accumulate; }
void bx_trainer_set_accumulate_grad_batches(bx_trainer *tr, int64_t n) { tr->accumulate = n < 1 ? 1 : n; }
bool bx_trainer_skip_backward(const bx_trainer *tr) { return tr->skip_backward; }
void bx_trainer_set_skip_backward(bx_trainer *tr, bool skip) { tr->skip_backward = skip; }
int64_t bx_trainer_log_every_n_steps(const bx_trainer *tr) { return tr->o.log_every_n_steps; }
int64_t bx_trainer_num_training_batches(const bx_trainer *tr) { return tr->num_training_batches; }
void bx_trainer_set_num_training_batches(bx_trainer *tr, int64_t n) { tr->num_training_batches = n; }
int64_t bx_trainer_num_val_batches(const bx_trainer *tr) { return tr->num_val_batches; }
int64_t bx_trainer_num_sanity_val_batches(const bx_trainer *tr) { return tr->num_sanity_val_batches; }
int64_t bx_trainer_num_test_batches(const bx_trainer *tr) { return tr->num_test_batches; }
int64_t bx_trainer_num_predict_batches(const bx_trainer *tr) { return tr->num_predict_batches; }
int64_t bx_trainer_val_check_batch(const bx_trainer *tr) { return tr->val_check_batch; }
bx_limit bx_trainer_val_check_interval(const bx_trainer *tr) { return tr->o.val_check_interval; }
int64_t bx_trainer_check_val_every_n_epoch(const bx_trainer *tr) { return tr->o.check_val_every_n_epoch; }
int64_t bx_trainer_batch_idx(const bx_trainer *tr) { return tr->batch_idx; }
bool bx_trainer_is_last_batch(const bx_trainer *tr) { return tr->is_last_batch; }
const char *bx_trainer_status(const bx_trainer *tr) { return tr->status_text; }
bool bx_trainer_interrupted(const bx_trainer *tr) { return tr->interrupted; }

bx_status bx_trainer_estimated_stepping_batches(const bx_trainer *tr, int64_t *out) {
    *out = 0;
    if (!tr->train_loader)
        return bx__error(BX_ERR_INVALID, "estimated_stepping_batches: no train loader (only known during fit)");
    if (tr->max_epochs == -1 && tr->max_steps == -1)
        return bx__error(BX_ERR_INVALID, "estimated_stepping_batches: training is infinite (max_epochs=-1 and "
                                         "max_steps=-1); set max_epochs or max_steps");
    if (tr->max_epochs == -1) {
        *out = tr->max_steps;
        return BX_OK;
    }
    int64_t len = bx_loader_len(tr->train_loader), nb;
    bx_limit l = tr->o.limit_train_batches;
    if (l.is_int) nb = len < (int64_t)l.value ? len : (int64_t)l.value;
    else nb = l.value == 0.0 ? 0 : (int64_t)floor((double)len * l.value);
    int64_t acc = tr->accumulate < 1 ? 1 : tr->accumulate;
    int64_t n = (nb + acc - 1) / acc * (tr->max_epochs > 1 ? tr->max_epochs : 1);
    if (tr->max_steps != -1 && tr->max_steps < n) n = tr->max_steps;
    *out = n;
    return BX_OK;
}

double bx_trainer_running_loss(const bx_trainer *tr) {
    if (tr->loss_n == 0) return NAN;
    double s = 0.0;
    for (int i = 0; i < tr->loss_n; i++) s += tr->loss_window[i];
    return s / tr->loss_n;
}

const bx_model *bx_trainer_model(const bx_trainer *tr) { return tr->model; }
bx_module *bx_trainer_module(const bx_trainer *tr) { return tr->module; }
int bx_trainer_num_optimizers(const bx_trainer *tr) { return tr->ocfg.nopt; }
bx_optimizer *bx_trainer_optimizer(const bx_trainer *tr, int i) {
    return i >= 0 && i < tr->ocfg.nopt ? tr->ocfg.opts[i] : NULL;
}
int bx_trainer_num_schedulers(const bx_trainer *tr) { return tr->ocfg.nsched; }
const bx_sched_config *bx_trainer_scheduler(const bx_trainer *tr, int i) {
    return i >= 0 && i < tr->ocfg.nsched ? &tr->ocfg.scheds[i] : NULL;
}

bx_status bx_trainer_set_scheduler(bx_trainer *tr, int i, const bx_sched_config *sc) {
    if (!sc || !sc->scheduler || i < 0 || i > tr->ocfg.nsched) {
        if (sc && sc->scheduler) bx_scheduler_free(sc->scheduler);
        return bx__error(BX_ERR_INVALID, "set_scheduler: index %d out of range 0..%d or no scheduler", i,
                         tr->ocfg.nsched);
    }
    if (i == tr->ocfg.nsched) return bx_optim_config_add_scheduler(&tr->ocfg, sc);
    bx_sched_config *c = &tr->ocfg.scheds[i];
    char *mon = sc->monitor ? bx__strdup(sc->monitor) : NULL;
    char *name = sc->name ? bx__strdup(sc->name) : NULL;
    if ((sc->monitor && !mon) || (sc->name && !name)) {
        bx__free(mon);
        bx__free(name);
        bx_scheduler_free(sc->scheduler);
        return BX_ERR_NOMEM;
    }
    bx_scheduler_free(c->scheduler);
    bx__free((char *)c->monitor);
    bx__free((char *)c->name);
    *c = *sc;
    c->monitor = mon;
    c->name = name;
    if (c->frequency < 1) c->frequency = 1;
    return BX_OK;
}

int bx_trainer_num_loggers(const bx_trainer *tr) { return tr->nlog; }
bx_logger *bx_trainer_logger(const bx_trainer *tr, int i) { return i >= 0 && i < tr->nlog ? tr->loggers[i] : NULL; }

bx_status bx_trainer_log_metrics_direct(bx_trainer *tr, const char *const *names, const double *values, int n,
                                        int64_t step) {
    for (int i = 0; i < tr->nlog; i++) {
        BX__TRY(bx_logger_log_metrics(tr->loggers[i], names, values, n, step));
        BX__TRY(bx_logger_save(tr->loggers[i]));
    }
    return BX_OK;
}

const char *bx_trainer_default_root_dir(const bx_trainer *tr) { return tr->default_root_dir; }

const char *bx_trainer_log_dir(const bx_trainer *tr) {
    if (tr->nlog > 0) {
        const char *d = bx_logger_log_dir(tr->loggers[0]);
        if (d) return d;
    }
    return tr->default_root_dir;
}

int bx_trainer_num_callbacks(const bx_trainer *tr) { return tr->ncb; }
bx_callback *bx_trainer_callback(const bx_trainer *tr, int i) { return i >= 0 && i < tr->ncb ? tr->cbs[i] : NULL; }
const char *bx_trainer_ckpt_path(const bx_trainer *tr) { return tr->ckpt_path ? tr->ckpt_path : ""; }
int64_t bx_trainer_total_batch_idx(const bx_trainer *tr) { return tr->total_batch_idx; }
int64_t bx_trainer_train_batches_processed(const bx_trainer *tr) { return tr->train_processed; }
int64_t bx_trainer_eval_batches_processed(const bx_trainer *tr) { return tr->eval_processed; }
