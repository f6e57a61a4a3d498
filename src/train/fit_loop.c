/* fit_loop.c - Lightning 1.9.5's FitLoop, TrainingEpochLoop and the
 * automatic-optimization closure.
 *
 * Per batch i (N = accumulate_grad_batches):
 *   on_train_batch_start -> [boundary: model optimizer_step notification]
 *   -> training_step -> [i % N == 0: on_before_zero_grad, optimizer_zero_grad]
 *      (zero_grad and step run for every configured optimizer in order)
 *   -> on_before_backward -> backward(loss / N) -> on_after_backward
 *   -> [boundary: on_before_optimizer_step, clipping, optimizer.step,
 *       global_step += 1] -> step schedulers -> [last batch: epoch schedulers]
 *   -> on_train_batch_end -> step metrics to loggers -> validation if due
 *   -> plateau step schedulers -> batches_that_stepped += 1 (boundary)
 * boundary = (ready % N == 0) or the epoch's last batch. */
#include "train/train_int.h"

#include <math.h>
#include <string.h>

static int64_t limit_batches(int64_t len, bx_limit l) {
    if (l.is_int) return len < (int64_t)l.value ? len : (int64_t)l.value;
    if (l.value == 0.0) return 0;
    return (int64_t)floor((double)len * l.value);
}

bool bx_trainer_enable_validation(const bx_trainer *tr) {
    const bx_limit l = tr->o.limit_val_batches;
    return tr->val_loader && tr->model && tr->model->ops->validation_step && l.value > 0;
}

bx_status bx__load_val_loader(bx_trainer *tr) {
    if (tr->val_loaded) return BX_OK;
    BX__CALL_MODEL_OP(tr, val_dataloader, tr);
    int64_t len = bx_loader_len(tr->val_loader);
    int64_t n = limit_batches(len, tr->o.limit_val_batches);
    if (n == 0 && len > 0 && tr->o.limit_val_batches.value > 0 && !tr->o.limit_val_batches.is_int)
        return bx__error(BX_ERR_INVALID,
                         "limit_val_batches=%g gives 0 of %lld validation batches; use at least %g", 
                         tr->o.limit_val_batches.value, (long long)len, 1.0 / (double)len);
    tr->num_val_batches = n;
    tr->val_loaded = true;
    return BX_OK;
}

static bx_status load_train_loader(bx_trainer *tr) {
    BX__CALL_MODEL_OP(tr, train_dataloader, tr);
    int64_t len = bx_loader_len(tr->train_loader);
    int64_t n = limit_batches(len, tr->o.limit_train_batches);
    if (n == 0 && len > 0 && tr->o.limit_train_batches.value > 0 && !tr->o.limit_train_batches.is_int)
        return bx__error(BX_ERR_INVALID, "limit_train_batches=%g gives 0 of %lld training batches",
                         tr->o.limit_train_batches.value, (long long)len);
    tr->num_training_batches = n;
    bx_limit v = tr->o.val_check_interval;
    if (v.is_int) {
        tr->val_check_batch = (int64_t)v.value;
        if (tr->val_check_batch > n && tr->o.check_val_every_n_epoch != 0)
            return bx__error(BX_ERR_INVALID,
                             "val_check_interval (%lld) must be <= the number of training batches (%lld); "
                             "set check_val_every_n_epoch=0 to count across epochs",
                             (long long)tr->val_check_batch, (long long)n);
    } else {
        int64_t k = (int64_t)((double)n * v.value);
        tr->val_check_batch = k < 1 ? 1 : k;
    }
    return BX_OK;
}

static bool should_check_val_epoch(const bx_trainer *tr) {
    int64_t n = tr->o.check_val_every_n_epoch;
    return bx_trainer_enable_validation(tr) && (n == 0 || (tr->epochs_completed + 1) % n == 0);
}

static bool num_ready_batches_reached(const bx_trainer *tr) {
    return tr->batches_ready == tr->num_training_batches || tr->is_last_batch;
}

static bool should_accumulate(const bx_trainer *tr) {
    bool done = tr->batches_ready % tr->accumulate == 0;
    return !done && !num_ready_batches_reached(tr);
}

static bool should_check_val_fx(const bx_trainer *tr) {
    if (!should_check_val_epoch(tr)) return false;
    if (tr->should_stop) return true;
    int64_t it = tr->o.check_val_every_n_epoch == 0 ? tr->total_batch_idx : tr->batch_idx;
    return (it + 1) % tr->val_check_batch == 0;
}

/* ---- schedulers ------------------------------------------------------------------- */
bx_status bx__update_lr_schedulers(bx_trainer *tr, bx_interval interval, bool plateau) {
    if (interval == BX_INTERVAL_STEP && should_accumulate(tr)) return BX_OK;
    for (int i = 0; i < tr->ocfg.nsched; i++) {
        bx_sched_config *c = &tr->ocfg.scheds[i];
        bool is_plateau = bx_scheduler_needs_metric(c->scheduler);
        if (plateau != is_plateau || c->interval != interval) continue;
        int64_t idx = (interval == BX_INTERVAL_STEP ? tr->batch_idx : tr->epochs_completed) + 1;
        if (idx % c->frequency != 0) continue;
        double mv = NAN;
        if (is_plateau) {
            if (bx_trainer_metric(tr, c->monitor, &mv) != BX_OK) {
                if (c->strict)
                    return bx__error(BX_ERR_NOT_FOUND,
                                     "ReduceLROnPlateau conditioned on metric '%s' which is not available "
                                     "(%s); set strict=false to skip",
                                     c->monitor, bx_errmsg());
                bx_logf(BX_LOG_WARNING, "ReduceLROnPlateau: metric '%s' not available, skipping", c->monitor);
                continue;
            }
        }
        if (tr->model->ops->lr_scheduler_step) {
            BX__CALL_MODEL_OP(tr, lr_scheduler_step, tr, c->scheduler, i);
        } else {
            bx_status s = is_plateau ? bx_scheduler_step_metric(c->scheduler, mv) : bx_scheduler_step(c->scheduler);
            if (s != BX_OK) return bx__hook_error(tr, "scheduler", "lr_scheduler_step", s);
        }
    }
    return BX_OK;
}

/* ---- gradient clipping ------------------------------------------------------------- */
bx_status bx_trainer_clip_gradients(bx_trainer *tr, bx_optimizer *opt, double val, bx_clip_algorithm algo) {
    (void)tr;
    if (!opt || val <= 0) return BX_OK;
    int ng = bx_optimizer_num_groups(opt);
    if (algo == BX_CLIP_VALUE) {
        for (int g = 0; g < ng; g++)
            for (int i = 0; i < bx_optimizer_group_num_params(opt, g); i++) {
                bx_tensor *p = bx_optimizer_group_param(opt, g, i);
                if (!p->grad) continue;
                float *d = (float *)p->grad->data;
                int64_t n = bx_numel(p->grad);
                float v = (float)val;
                for (int64_t k = 0; k < n; k++) d[k] = d[k] < -v ? -v : (d[k] > v ? v : d[k]);
            }
        return BX_OK;
    }
    /* torch.nn.utils.clip_grad_norm_ (norm 2): norm of the per-parameter norms */
    double total = 0.0;
    for (int g = 0; g < ng; g++)
        for (int i = 0; i < bx_optimizer_group_num_params(opt, g); i++) {
            bx_tensor *p = bx_optimizer_group_param(opt, g, i);
            if (!p->grad) continue;
            const float *d = (const float *)p->grad->data;
            float ss = 0.0f;
            for (int64_t k = 0; k < bx_numel(p->grad); k++) ss += d[k] * d[k];
            float pn = sqrtf(ss);
            total += (double)pn * (double)pn;
        }
    float tn = sqrtf((float)total);
    if (!isfinite(tn)) return bx__error(BX_ERR_NUMERIC, "gradient clipping: the total gradient norm is %g", (double)tn);
    float coef = (float)val / (tn + 1e-6f);
    if (coef < 1.0f)
        for (int g = 0; g < ng; g++)
            for (int i = 0; i < bx_optimizer_group_num_params(opt, g); i++) {
                bx_tensor *p = bx_optimizer_group_param(opt, g, i);
                if (!p->grad) continue;
                float *d = (float *)p->grad->data;
                for (int64_t k = 0; k < bx_numel(p->grad); k++) d[k] *= coef;
            }
    return BX_OK;
}

/* ---- one training batch ------------------------------------------------------------ */
static void running_loss_push(bx_trainer *tr, double v) {
    tr->loss_window[tr->loss_pos] = v;
    tr->loss_pos = (tr->loss_pos + 1) % 20;
    if (tr->loss_n < 20) tr->loss_n++;
}

static bx_status run_closure(bx_trainer *tr, const bx_batch *b, int64_t i, double *loss_out) {
    const bx_model *m = tr->model;
    bx_step *st = tr->step;
    tr->step_loss = NULL;
    tr->step_output = NULL;
    bx_step_set_training(st, true);
    tr->cur_fx = "training_step";
    bx_status s = m->ops->training_step(m->self, st, b, i);
    tr->cur_fx = NULL;
    if (s == BX_OK && bx_step_status(st) != BX_OK)
        s = bx__error(bx_step_status(st), "%s", bx_step_errmsg(st));
    if (s != BX_OK) return bx__hook_error(tr, "model", "training_step", s);
    *loss_out = NAN;
    bx_tensor *loss = tr->step_loss;
    if (!loss) return BX_OK; /* no loss: no backward, no step */
    *loss_out = bx_get(loss, 0);
    if (tr->skip_backward) { /* forward only (SWA's BatchNorm epoch) */
        tr->acc_loss += *loss_out / (double)tr->accumulate;
        return BX_OK;
    }
    for (int k = 0; i % tr->accumulate == 0 && k < tr->ocfg.nopt; k++) {
        bx_optimizer *opt = tr->ocfg.opts[k];
        BX__CALL_HOOK(tr, on_before_zero_grad, tr, opt);
        if (m->ops->optimizer_zero_grad)
            BX__CALL_MODEL_OP(tr, optimizer_zero_grad, tr, opt, k, i);
        else
            bx_optimizer_zero_grad(opt);
    }
    bx_tensor *scaled = loss;
    if (tr->accumulate > 1) scaled = bx_div(st, loss, bx_scalar(st, (float)tr->accumulate));
    tr->acc_loss += bx_get(scaled, 0);
    BX__CALL_HOOK(tr, on_before_backward, tr, scaled);
    if (m->ops->backward) {
        BX__CALL_MODEL_OP(tr, backward, tr, scaled);
    } else {
        s = bx_backward(st, scaled);
        if (s != BX_OK) return bx__hook_error(tr, "trainer", "backward", s);
    }
    BX__CALL_HOOK(tr, on_after_backward, tr);
    return BX_OK;
}

static bx_status train_batch(bx_trainer *tr, int64_t i, int64_t loader_len) {
    const bx_model *m = tr->model;
    bx_batch b;
    tr->batch_idx = i;
    tr->batches_ready++;
    tr->is_last_batch = i + 1 == loader_len;
    tr->epoch_end_reached = false;
    bx_step_reset(tr->step);
    bx_status s = bx_loader_batch(tr->train_loader, tr->step, i, &b);
    if (s != BX_OK) return bx__hook_error(tr, "loader", "train batch", s);
    tr->cur_batch_size = (double)b.size;
    BX__CALL_HOOK(tr, on_train_batch_start, tr, &b, i);
    bool boundary = !should_accumulate(tr);
    if (boundary && !tr->skip_backward)
        for (int k = 0; k < tr->ocfg.nopt; k++) BX__CALL_MODEL_OP(tr, optimizer_step, tr, tr->ocfg.opts[k], k, i);
    double loss = NAN;
    BX__TRY(run_closure(tr, &b, i, &loss));
    /* every optimizer steps at the boundary (one training_step per batch; each
     * step counts in global_step, as 1.9.5 counts optimizer steps) */
    for (int k = 0; boundary && !tr->skip_backward && !isnan(loss) && k < tr->ocfg.nopt; k++) {
        bx_optimizer *opt = tr->ocfg.opts[k];
        BX__CALL_HOOK(tr, on_before_optimizer_step, tr, opt, k);
        if (m->ops->configure_gradient_clipping)
            BX__CALL_MODEL_OP(tr, configure_gradient_clipping, tr, opt, k);
        else
            BX__TRY(bx_trainer_clip_gradients(tr, opt, tr->o.gradient_clip_val, tr->o.gradient_clip_algorithm));
        s = bx_optimizer_step(opt);
        if (s != BX_OK) return bx__hook_error(tr, "optimizer", "step", s);
        tr->global_step++;
    }
    /* 1.9.5 _update_running_loss: every batch with a loss appends (loss/N)*N */
    if (!isnan(loss)) running_loss_push(tr, tr->acc_loss * (double)tr->accumulate);
    tr->acc_loss = 0.0;
    BX__TRY(bx__update_lr_schedulers(tr, BX_INTERVAL_STEP, false));
    if (num_ready_batches_reached(tr)) BX__TRY(bx__update_lr_schedulers(tr, BX_INTERVAL_EPOCH, false));
    bx_step_output out = {loss, tr->step_output};
    tr->train_processed = tr->batches_ready;
    BX__CALL_HOOK(tr, on_train_batch_end, tr, &out, &b, i);
    BX__TRY(bx__metrics_update_dicts(tr));
    if (!should_accumulate(tr) &&
        ((tr->batches_that_stepped + 1) % tr->o.log_every_n_steps == 0 || tr->should_stop || tr->fast_dev_run_on))
        BX__TRY(bx__metrics_log_to_loggers(tr, -1));
    bx_step_reset(tr->step); /* the batch's arena is free again: no allocation next step */
    /* on_advance_end */
    if (should_check_val_fx(tr)) {
        tr->training = false;
        tr->validating = true;
        tr->active = BX__LOOP_VAL;
        BX__TRY(bx__load_val_loader(tr));
        BX__TRY(bx__eval_run(tr, tr->val_loader, tr->num_val_batches, false));
        tr->validating = false;
        tr->training = true;
        tr->active = BX__LOOP_TRAIN;
    }
    BX__TRY(bx__update_lr_schedulers(tr, BX_INTERVAL_STEP, true));
    if (!should_accumulate(tr)) tr->batches_that_stepped++;
    tr->total_batch_idx++;
    return BX_OK;
}

/* ---- loops ----------------------------------------------------------------------------- */
static bool max_reached(int64_t cur, int64_t max) { return max != -1 && cur >= max; }

static bool fit_done(bx_trainer *tr) {
    if (tr->num_training_batches == 0) return true;
    if (max_reached(tr->global_step, tr->max_steps)) return true;
    if (max_reached(tr->epochs_processed, tr->max_epochs)) {
        tr->epochs_completed = tr->epochs_processed;
        return true;
    }
    if (tr->should_stop) {
        bool met_e = tr->min_epochs > 0 ? tr->epochs_processed >= tr->min_epochs : true;
        bool met_s = tr->min_steps > 0 ? tr->global_step >= tr->min_steps : true;
        if (met_e && met_s) return true;
        bx_logf(BX_LOG_INFO,
                "Trainer was signaled to stop but the required min_epochs=%lld or min_steps=%lld has not been "
                "met. Training will continue...",
                (long long)tr->min_epochs, (long long)tr->min_steps);
    }
    tr->should_stop = false;
    return false;
}

static bool epoch_done(const bx_trainer *tr) {
    bool training_done = max_reached(tr->global_step, tr->max_steps) || num_ready_batches_reached(tr);
    return training_done || tr->should_stop;
}

static bx_status run_epoch(bx_trainer *tr) {
    int64_t len = bx_loader_len(tr->train_loader);
    if (!tr->restarting || tr->batches_ready >= tr->num_training_batches) {
        tr->batches_ready = 0;
        tr->train_processed = 0;
        tr->is_last_batch = false;
    }
    tr->restarting = false;
    while (!epoch_done(tr)) BX__TRY(train_batch(tr, tr->batches_ready, len));
    return BX_OK;
}

bx_status bx__fit_run(bx_trainer *tr) {
    if (tr->o.limit_train_batches.value == 0) return BX_OK;
    int64_t saved_ntb = tr->num_training_batches;
    tr->num_training_batches = -1; /* unknown until the loader is set up (Lightning: inf) */
    bool skip = fit_done(tr);
    tr->num_training_batches = saved_ntb;
    if (skip) return BX_OK;
    tr->epochs_completed = tr->epochs_processed; /* a restored end-of-epoch checkpoint moves on */
    BX__TRY(load_train_loader(tr));
    if (should_check_val_epoch(tr)) BX__TRY(bx__load_val_loader(tr));
    tr->training = true;
    tr->active = BX__LOOP_TRAIN;
    BX__CALL_HOOK(tr, on_train_start, tr);
    while (!fit_done(tr)) {
        /* on_advance_start */
        bx_loader_set_epoch(tr->train_loader, tr->epochs_processed);
        tr->acc_loss = 0.0;
        tr->epoch_end_reached = false;
        BX__CALL_HOOK(tr, on_train_epoch_start, tr);
        BX__TRY(run_epoch(tr));
        /* on_advance_end */
        tr->epoch_end_reached = true;
        tr->cur_batch_size = 0;
        tr->epochs_processed++;
        BX__CALL_HOOK(tr, on_train_epoch_end, tr);
        BX__TRY(bx__metrics_update_dicts(tr));
        if (num_ready_batches_reached(tr)) BX__TRY(bx__update_lr_schedulers(tr, BX_INTERVAL_EPOCH, true));
        tr->batches_that_stepped--;
        bx_status s = bx__metrics_log_to_loggers(tr, -1);
        tr->batches_that_stepped++;
        BX__TRY(s);
        bx__results_reset(&tr->train_res);
        tr->epochs_completed++;
    }
    BX__CALL_HOOK(tr, on_train_end, tr);
    tr->training = false;
    return BX_OK;
}
