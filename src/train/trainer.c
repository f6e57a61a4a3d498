/* trainer.c - the Trainer object: options, callback list, entry points,
 * error handling and the getters callbacks use.
 *
 * bx_trainer_fit follows Lightning 1.9.5's Trainer._run:
 *   configure_callbacks, prepare_data, setup (callbacks, model),
 *   [restore weights + callback states], configure_optimizers, on_fit_start,
 *   log_hyperparams, [restore optimizers/schedulers/loops], sanity check,
 *   fit loop (fit_loop.c), loggers finalize, on_fit_end, teardown.
 * Any failing hook or step: on_exception on every callback, loggers
 * finalize("failed"), the status returned with "fit (epoch E, step S): ...". */
#include "train/train_int.h"

#include "blixt/callbacks.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- optimizer config ---------------------------------------------------------- */
bx_status bx_optim_config_add_optimizer(bx_optim_config *cfg, bx_optimizer *opt) {
    if (!cfg || !opt) return bx__error(BX_ERR_INVALID, "configure_optimizers: NULL optimizer");
    if (cfg->nopt == cfg->capopt) {
        int cap = cfg->capopt ? cfg->capopt * 2 : 2;
        bx_optimizer **n = bx__realloc(cfg->opts, (size_t)cap * sizeof *n);
        if (!n) {
            bx_optimizer_free(opt);
            return BX_ERR_NOMEM;
        }
        cfg->opts = n;
        cfg->capopt = cap;
    }
    cfg->opts[cfg->nopt++] = opt;
    return BX_OK;
}

static void sched_config_clear(bx_sched_config *c) {
    bx_scheduler_free(c->scheduler);
    bx__free((char *)c->monitor);
    bx__free((char *)c->name);
    memset(c, 0, sizeof *c);
}

static bx_status sched_config_copy(bx_sched_config *dst, const bx_sched_config *src) {
    *dst = *src;
    dst->monitor = NULL;
    dst->name = NULL;
    if (src->monitor && !(dst->monitor = bx__strdup(src->monitor))) return BX_ERR_NOMEM;
    if (src->name && !(dst->name = bx__strdup(src->name))) return BX_ERR_NOMEM;
    if (dst->frequency < 1) dst->frequency = 1;
    return BX_OK;
}

bx_status bx_optim_config_add_scheduler(bx_optim_config *cfg, const bx_sched_config *sc) {
    if (!cfg || !sc || !sc->scheduler) return bx__error(BX_ERR_INVALID, "configure_optimizers: NULL scheduler");
    if (bx_scheduler_needs_metric(sc->scheduler) && (!sc->monitor || !*sc->monitor)) {
        bx_scheduler_free(sc->scheduler);
        return bx__error(BX_ERR_INVALID,
                         "configure_optimizers: ReduceLROnPlateau needs a 'monitor' in its scheduler config");
    }
    if (cfg->nsched == cfg->capsched) {
        int cap = cfg->capsched ? cfg->capsched * 2 : 2;
        bx_sched_config *n = bx__realloc(cfg->scheds, (size_t)cap * sizeof *n);
        if (!n) {
            bx_scheduler_free(sc->scheduler);
            return BX_ERR_NOMEM;
        }
        cfg->scheds = n;
        cfg->capsched = cap;
    }
    bx_status s = sched_config_copy(&cfg->scheds[cfg->nsched], sc);
    cfg->nsched++;
    return s;
}

static void optim_config_clear(bx_optim_config *cfg) {
    for (int i = 0; i < cfg->nsched; i++) sched_config_clear(&cfg->scheds[i]);
    for (int i = 0; i < cfg->nopt; i++) bx_optimizer_free(cfg->opts[i]);
    bx__free(cfg->scheds);
    bx__free(cfg->opts);
    memset(cfg, 0, sizeof *cfg);
}

/* ---- callback list ---------------------------------------------------------------- */
/* A progress bar is any callback whose class name contains "ProgressBar"
 * (ProgressBar, TQDMProgressBar, RichProgressBar, user subclasses). */
static bool is_progress_bar(const bx_callback *cb) { return strstr(bx_callback_name(cb), "ProgressBar") != NULL; }

static bx_status cb_append(bx_trainer *tr, bx_callback *cb) {
    bx_callback **n = bx__realloc(tr->cbs, (size_t)(tr->ncb + 1) * sizeof *n);
    if (!n) {
        bx_callback_free(cb);
        return BX_ERR_NOMEM;
    }
    tr->cbs = n;
    tr->cbs[tr->ncb++] = cb;
    return BX_OK;
}

/* Stable partition: every ModelCheckpoint last (in place, keeps both orders). */
static void checkpoints_last(bx_trainer *tr) {
    for (int pass = 0, moved = 0; pass < tr->ncb - moved;) {
        if (bx__cb_is(tr->cbs[pass], "ModelCheckpoint")) {
            bx_callback *mc = tr->cbs[pass];
            memmove(tr->cbs + pass, tr->cbs + pass + 1, (size_t)(tr->ncb - pass - 1) * sizeof *tr->cbs);
            tr->cbs[tr->ncb - 1] = mc;
            moved++;
        } else {
            pass++;
        }
    }
}

static bx_status check_state_keys(bx_trainer *tr) {
    char a[512], b[512];
    for (int i = 0; i < tr->ncb; i++) {
        if (!tr->cbs[i]->ops->state_dict) continue;
        bx_callback_state_key(tr->cbs[i], a, sizeof a);
        for (int j = i + 1; j < tr->ncb; j++) {
            if (!tr->cbs[j]->ops->state_dict) continue;
            bx_callback_state_key(tr->cbs[j], b, sizeof b);
            if (strcmp(a, b) == 0)
                return bx__error(BX_ERR_INVALID,
                                 "Trainer: found more than one stateful callback with the state key \"%s\"; "
                                 "give them distinct keys (bx_callback_set_state_key)", a);
        }
    }
    return BX_OK;
}

bx_status bx_trainer_attach_callback(bx_trainer *tr, bx_callback *cb) {
    if (!tr || !cb) return bx__error(BX_ERR_INVALID, "attach_callback: NULL argument");
    /* configure_callbacks semantics: replaces the trainer's callbacks of the same class. */
    int k = 0;
    for (int i = 0; i < tr->ncb; i++) {
        if (strcmp(bx_callback_name(tr->cbs[i]), bx_callback_name(cb)) == 0)
            bx_callback_free(tr->cbs[i]);
        else
            tr->cbs[k++] = tr->cbs[i];
    }
    tr->ncb = k;
    BX__TRY(cb_append(tr, cb));
    checkpoints_last(tr);
    return check_state_keys(tr);
}

/* ---- construction ------------------------------------------------------------------- */
static bool limit_ok(bx_limit l) {
    if (l.is_int) return l.value >= 0 && l.value == floor(l.value);
    return l.value >= 0.0 && l.value <= 1.0;
}

bx_trainer *bx_trainer_new(const bx_trainer_opts *o) {
    bx_trainer_opts def = BX_TRAINER_OPTS_INIT;
    if (!o) o = &def;
    bx_trainer *tr = bx__calloc(sizeof *tr);
    if (!tr) goto fail_nomem;
    tr->o = *o;
    tr->o.callbacks = NULL;
    tr->o.loggers = NULL;
    tr->default_root_dir = bx__strdup(o->default_root_dir && *o->default_root_dir ? o->default_root_dir : ".");
    tr->step = bx_step_new();
    if (!tr->default_root_dir || !tr->step) goto fail_nomem;
    bx_step_set_owner(tr->step, tr);
    tr->status_text = "initializing";
    tr->num_val_batches = -1;
    tr->num_sanity_val_batches = -1;
    tr->num_training_batches = -1;
    tr->num_test_batches = tr->num_predict_batches = -1;
    tr->val_check_batch = -1;
    tr->train_res.training = true;

    /* take the callbacks and loggers over first: freed with the trainer on error */
    for (int i = 0; i < o->num_callbacks; i++) {
        bx_callback *cb = o->callbacks[i];
        o->callbacks[i] = NULL;
        if (cb && cb_append(tr, cb) != BX_OK) goto fail_nomem;
    }
    if (o->num_loggers > 0) {
        tr->loggers = bx__calloc((size_t)o->num_loggers * sizeof *tr->loggers);
        if (!tr->loggers) goto fail_nomem;
        for (int i = 0; i < o->num_loggers; i++) {
            if (o->loggers[i]) tr->loggers[tr->nlog++] = o->loggers[i];
            o->loggers[i] = NULL;
        }
    }

    /* flags */
    const char *bad = NULL;
    if (!limit_ok(o->limit_train_batches)) bad = "limit_train_batches";
    else if (!limit_ok(o->limit_val_batches)) bad = "limit_val_batches";
    else if (!limit_ok(o->limit_test_batches)) bad = "limit_test_batches";
    else if (!limit_ok(o->limit_predict_batches)) bad = "limit_predict_batches";
    else if (!limit_ok(o->val_check_interval) || (o->val_check_interval.is_int && o->val_check_interval.value < 1) ||
             (!o->val_check_interval.is_int && o->val_check_interval.value <= 0))
        bad = "val_check_interval";
    if (bad) {
        bx__error(BX_ERR_INVALID, "Trainer: %s must be an int >= 0 or a fraction in [0, 1]", bad);
        goto fail;
    }
    if (o->accumulate_grad_batches < 1) {
        bx__error(BX_ERR_INVALID, "Trainer: accumulate_grad_batches must be >= 1 (got %lld)",
                  (long long)o->accumulate_grad_batches);
        goto fail;
    }
    if (o->log_every_n_steps < 1 || o->check_val_every_n_epoch < 0 || o->num_sanity_val_steps < -1 ||
        o->gradient_clip_val < 0 || o->fast_dev_run < 0) {
        bx__error(BX_ERR_INVALID, "Trainer: log_every_n_steps must be >= 1, check_val_every_n_epoch >= 0, "
                                  "num_sanity_val_steps >= -1, gradient_clip_val >= 0, fast_dev_run >= 0");
        goto fail;
    }
    /* max_time: a Timer unless one is given (CallbackConnector step 4) */
    bool has_timer = false;
    for (int i = 0; i < tr->ncb; i++) has_timer = has_timer || bx__cb_is(tr->cbs[i], "Timer");
    if (o->max_time && !has_timer) {
        bx_timer_opts to = BX_TIMER_OPTS_INIT;
        to.duration = o->max_time;
        bx_callback *t = bx_timer_new(&to);
        if (!t) {
            bx__error_prefix("Trainer: max_time");
            goto fail;
        }
        if (cb_append(tr, t) != BX_OK) goto fail_nomem;
        has_timer = true;
    }
    tr->max_steps = o->max_steps;
    tr->max_epochs = o->max_epochs == BX_UNSET ? (o->max_steps == -1 && !has_timer ? 1000 : -1) : o->max_epochs;
    tr->min_epochs = o->min_epochs == BX_UNSET ? 0 : o->min_epochs;
    tr->min_steps = o->min_steps == BX_UNSET ? -1 : o->min_steps;
    tr->accumulate = o->accumulate_grad_batches;
    tr->num_sanity_val_steps = o->num_sanity_val_steps == -1 ? INT64_MAX : o->num_sanity_val_steps;
    if (o->fast_dev_run > 0) {
        bx_limit l = {(double)o->fast_dev_run, true};
        tr->fast_dev_run_on = true;
        tr->o.limit_train_batches = tr->o.limit_val_batches = tr->o.limit_test_batches = l;
        tr->o.limit_predict_batches = l;
        tr->max_steps = o->fast_dev_run;
        tr->max_epochs = 1;
        tr->num_sanity_val_steps = 0;
        tr->o.val_check_interval = (bx_limit)BX_LIMIT_ALL;
        tr->o.check_val_every_n_epoch = 1;
        for (int i = 0; i < tr->nlog; i++) bx_logger_free(tr->loggers[i]);
        tr->nlog = 0;
    } else if (tr->nlog == 0 && o->logger_default) {
        bx_csv_logger_opts co = BX_CSV_LOGGER_OPTS_INIT;
        co.save_dir = tr->default_root_dir;
        bx_logger *lg = bx_csv_logger_new(&co);
        if (!lg) goto fail;
        if (!tr->loggers && !(tr->loggers = bx__calloc(sizeof *tr->loggers))) {
            bx_logger_free(lg);
            goto fail_nomem;
        }
        tr->loggers[tr->nlog++] = lg;
    }

    /* callback list (1.9.5 CallbackConnector.on_trainer_init) */
    int nmc = 0, npb = 0;
    for (int i = 0; i < tr->ncb; i++) {
        if (bx__cb_is(tr->cbs[i], "ModelCheckpoint")) nmc++;
        if (is_progress_bar(tr->cbs[i])) npb++;
    }
    if (!o->enable_checkpointing && nmc > 0) {
        bx__error(BX_ERR_INVALID, "Trainer: enable_checkpointing=false but a ModelCheckpoint is in the callbacks");
        goto fail;
    }
    if (o->enable_checkpointing && nmc == 0) {
        bx_model_checkpoint_opts mo = BX_MODEL_CHECKPOINT_OPTS_INIT;
        bx_callback *mc = bx_model_checkpoint_new(&mo);
        if (!mc || cb_append(tr, mc) != BX_OK) goto fail;
    }
    if (npb > 1) {
        bx__error(BX_ERR_INVALID, "Trainer: more than one progress bar callback given");
        goto fail;
    }
    if (npb == 1 && !o->enable_progress_bar) {
        bx__error(BX_ERR_INVALID, "Trainer: enable_progress_bar=false but a progress bar is in the callbacks");
        goto fail;
    }
    if (npb == 0 && o->enable_progress_bar) {
        bx_callback *pb = bx_progress_bar_new();
        if (!pb || cb_append(tr, pb) != BX_OK) goto fail;
    }
    checkpoints_last(tr);
    if (check_state_keys(tr) != BX_OK) goto fail;
    return tr;

fail_nomem:
    bx__error(BX_ERR_NOMEM, "Trainer: out of memory");
fail:
    if (!tr) {
        for (int i = 0; i < o->num_callbacks; i++) bx_callback_free(o->callbacks[i]);
        for (int i = 0; i < o->num_loggers; i++) bx_logger_free(o->loggers[i]);
        return NULL;
    }
    {
        char *msg = bx__strdup(bx_errmsg());
        bx_trainer_free(tr);
        bx__error(msg ? BX_ERR_INVALID : BX_ERR_NOMEM, "%s", msg ? msg : "Trainer: out of memory");
        bx__free(msg);
    }
    return NULL;
}

void bx_trainer_free(bx_trainer *tr) {
    if (!tr) return;
    for (int i = 0; i < tr->ncb; i++) bx_callback_free(tr->cbs[i]);
    bx__free(tr->cbs);
    for (int i = 0; i < tr->nlog; i++) bx_logger_free(tr->loggers[i]);
    bx__free(tr->loggers);
    optim_config_clear(&tr->ocfg);
    bx__results_free(&tr->train_res);
    bx__results_free(&tr->val_res);
    bx__mdict_free(&tr->cb_metrics);
    bx__mdict_free(&tr->logged_metrics);
    bx__mdict_free(&tr->pbar_metrics);
    bx__mdict_free(&tr->row_keys);
    bx__free(tr->row_names);
    bx__free(tr->row_vals);
    bx_step_free(tr->step);
    bx_state_free(tr->loaded_ckpt);
    bx_state_free(tr->train_loader_state);
    bx__free(tr->ckpt_path);
    bx__free(tr->default_root_dir);
    bx__free(tr->log_dir_buf);
    bx__free(tr);
}

/* ---- step context ---------------------------------------------------------------------- */
bx_trainer *bx_step_trainer(bx_step *st) { return st ? (bx_trainer *)bx_step_owner(st) : NULL; }

bx_status bx_step_set_loss(bx_step *st, bx_tensor *loss) {
    bx_trainer *tr = bx_step_trainer(st);
    if (!tr) return bx__error(BX_ERR_STATE, "set_loss: the step is not run by a Trainer");
    if (!loss || bx_is_poison(loss)) {
        bx_status s = bx_step_status(st);
        return bx__error(s != BX_OK ? s : BX_ERR_INVALID, "training_step: loss is %s%s",
                         loss ? "poison: " : "NULL", loss ? bx_step_errmsg(st) : "");
    }
    if (bx_numel(loss) != 1)
        return bx__error(BX_ERR_SHAPE, "training_step: loss has %lld elements, expected a scalar",
                         (long long)bx_numel(loss));
    tr->step_loss = loss;
    return BX_OK;
}

bx_status bx_step_set_output(bx_step *st, bx_tensor *out) {
    bx_trainer *tr = bx_step_trainer(st);
    if (!tr) return bx__error(BX_ERR_STATE, "set_output: the step is not run by a Trainer");
    tr->step_output = out;
    return BX_OK;
}

bx_step *bx_trainer_current_step(const bx_trainer *tr) { return tr ? tr->step : NULL; }

/* ---- fit ---------------------------------------------------------------------------------- */
static bx_status log_hyperparams(bx_trainer *tr) {
    if (tr->nlog == 0) return BX_OK;
    bx_state *hp = bx_state_dict();
    if (!hp) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    if (tr->model->ops->hparams) s = tr->model->ops->hparams(tr->model->self, hp);
    for (int i = 0; s == BX_OK && i < tr->nlog; i++) {
        s = bx_logger_log_hyperparams(tr->loggers[i], hp);
        if (s == BX_OK) s = bx_logger_save(tr->loggers[i]);
    }
    bx_state_free(hp);
    return s;
}

static bx_status run_sanity_check(bx_trainer *tr) {
    if (!bx_trainer_enable_validation(tr) || tr->num_sanity_val_steps <= 0) return BX_OK;
    bx_rng saved = *bx_step_rng(tr->step); /* isolate_rng(): the sanity run shifts nothing */
    tr->sanity_checking = true;
    bx__results_reset(&tr->train_res);
    bx__results_reset(&tr->val_res);
    bx__mdict_clear(&tr->cb_metrics);
    bx__mdict_clear(&tr->logged_metrics);
    bx__mdict_clear(&tr->pbar_metrics);
    BX__CALL_CBS(tr, on_sanity_check_start, tr);
    BX__TRY(bx__load_val_loader(tr));
    tr->num_sanity_val_batches =
        tr->num_val_batches < tr->num_sanity_val_steps ? tr->num_val_batches : tr->num_sanity_val_steps;
    tr->active = BX__LOOP_VAL;
    BX__TRY(bx__eval_run(tr, tr->val_loader, tr->num_sanity_val_batches, false));
    tr->active = BX__LOOP_NONE;
    BX__CALL_CBS(tr, on_sanity_check_end, tr);
    tr->eval_processed = 0; /* _reset_progress(val_loop) */
    bx__results_reset(&tr->val_res);
    bx__mdict_clear(&tr->cb_metrics);
    bx__mdict_clear(&tr->logged_metrics);
    bx__mdict_clear(&tr->pbar_metrics);
    tr->sanity_checking = false;
    *bx_step_rng(tr->step) = saved;
    return BX_OK;
}

static bx_status fit_inner(bx_trainer *tr, const char *ckpt_path) {
    const bx_model *m = tr->model;
    BX__CALL_MODEL_OP(tr, configure_callbacks, tr);
    BX__CALL_MODEL_OP(tr, prepare_data, tr);
    BX__CALL_CBS(tr, setup, tr, BX_STAGE_FIT);
    if (m->ops->setup) {
        tr->cur_fx = "setup";
        bx_status s = m->ops->setup(m->self, tr, BX_STAGE_FIT);
        tr->cur_fx = NULL;
        if (s != BX_OK) return bx__hook_error(tr, "model", "setup", s);
    } else {
        BX__CALL_MODEL_HOOK(tr, setup, tr, BX_STAGE_FIT);
    }
    tr->module = m->ops->module(m->self);
    if (!tr->module) return bx__error(BX_ERR_INVALID, "model '%s': module() returned NULL after setup",
                                      m->ops->name ? m->ops->name : "?");
    if (ckpt_path) {
        BX__TRY(bx__ckpt_restore_model(tr, ckpt_path));
        BX__TRY(bx__ckpt_restore_callbacks(tr));
    }
    optim_config_clear(&tr->ocfg);
    tr->cur_fx = "configure_optimizers";
    bx_status s = m->ops->configure_optimizers(m->self, tr, &tr->ocfg);
    tr->cur_fx = NULL;
    if (s != BX_OK) return bx__hook_error(tr, "model", "configure_optimizers", s);
    if (tr->ocfg.nopt == 0)
        return bx__error(BX_ERR_INVALID, "model '%s': configure_optimizers added no optimizer",
                         m->ops->name ? m->ops->name : "?");
    for (int i = 0; i < tr->ocfg.nsched; i++)
        if (tr->ocfg.scheds[i].opt_idx < 0 || tr->ocfg.scheds[i].opt_idx >= tr->ocfg.nopt)
            return bx__error(BX_ERR_INVALID, "configure_optimizers: scheduler %d drives optimizer %d of %d", i,
                             tr->ocfg.scheds[i].opt_idx, tr->ocfg.nopt);
    BX__CALL_HOOK(tr, on_fit_start, tr);
    BX__TRY(log_hyperparams(tr));
    if (ckpt_path) BX__TRY(bx__ckpt_restore_training_state(tr));
    bx_module_train(tr->module, true);
    if (!tr->restarting) BX__TRY(run_sanity_check(tr));
    BX__TRY(bx__fit_run(tr));
    tr->active = BX__LOOP_NONE;
    for (int i = 0; i < tr->nlog; i++) BX__TRY(bx_logger_finalize(tr->loggers[i], "success"));
    BX__CALL_HOOK(tr, on_fit_end, tr);
    BX__CALL_HOOK(tr, teardown, tr, BX_STAGE_FIT);
    return BX_OK;
}

static bx_status run_failed(bx_trainer *tr, const char *stage, bx_status s) {
    char *msg = bx__strdup(bx_errmsg());
    const char *cause = msg && *msg ? msg : bx_status_str(s);
    tr->status_text = "interrupted";
    tr->interrupted = true;
    for (int i = 0; i < tr->ncb; i++)
        if (tr->cbs[i]->ops->on_exception) (void)tr->cbs[i]->ops->on_exception(tr->cbs[i]->self, tr, s, cause);
    for (int i = 0; i < tr->nlog; i++) (void)bx_logger_finalize(tr->loggers[i], "failed");
    bx_step_reset(tr->step);
    tr->active = BX__LOOP_NONE;
    tr->training = tr->validating = tr->sanity_checking = tr->testing = false;
    bx__error(s, "%s (epoch %lld, step %lld): %s", stage, (long long)tr->epochs_completed,
              (long long)tr->global_step, cause);
    bx__free(msg);
    return s;
}

bx_status bx_trainer_fit(bx_trainer *tr, const bx_model *m, bx_loader *train, bx_loader *val,
                         const char *ckpt_path) {
    if (!tr || !m || !m->ops) return bx__error(BX_ERR_INVALID, "fit: NULL trainer or model");
    const char *mn = m->ops->name ? m->ops->name : "?";
    if (!m->ops->module) return bx__error(BX_ERR_INVALID, "fit: model '%s' has no module()", mn);
    if (!m->ops->training_step) return bx__error(BX_ERR_INVALID, "fit: model '%s' has no training_step", mn);
    if (!m->ops->configure_optimizers)
        return bx__error(BX_ERR_INVALID, "fit: model '%s' has no configure_optimizers", mn);
    if (!train) return bx__error(BX_ERR_INVALID, "fit: no train loader");
    tr->model_store = *m; /* the caller's bx_model may be a temporary */
    tr->model = &tr->model_store;
    tr->train_loader = train;
    tr->val_loader = val;
    tr->val_loaded = false;
    tr->stage = BX_STAGE_FIT;
    tr->status_text = "running";
    tr->interrupted = false;
    tr->restarting = false;
    tr->err_hook[0] = '\0';
    if (tr->o.seed != BX_UNSET) {
        /* seed_everything: the step RNG (dropout) and loaders left unseeded */
        bx_rng_init(bx_step_rng(tr->step), (uint64_t)tr->o.seed);
        bx_loader *lds[2] = {train, val};
        for (int i = 0; i < 2; i++) {
            bx_state *ls = lds[i] ? bx_loader_state_dict(lds[i]) : NULL;
            int64_t seed = -1;
            if (ls && bx_state_need_int(ls, "seed", &seed) == BX_OK && seed == 0)
                bx_loader_set_seed(lds[i], (uint64_t)tr->o.seed);
            bx_state_free(ls);
        }
        bx_clear_error();
    }
    bx__free(tr->ckpt_path);
    tr->ckpt_path = NULL;
    bx_status s = fit_inner(tr, ckpt_path);
    /* The loaders are the caller's and may be freed once fit returns: keep
     * the train loader's position (for a checkpoint saved after fit) and
     * forget both pointers. */
    bx_state_free(tr->train_loader_state);
    tr->train_loader_state = bx_loader_state_dict(train);
    tr->train_loader = tr->val_loader = NULL;
    if (s != BX_OK) return run_failed(tr, "fit", s);
    tr->status_text = "finished";
    return BX_OK;
}

/* ---- validate / test ----------------------------------------------------------------------- */
static bx_status eval_entry(bx_trainer *tr, const bx_model *m, bx_loader *ld, const char *ckpt_path, bool test) {
    bx_stage stage = test ? BX_STAGE_TEST : BX_STAGE_VALIDATE;
    BX__CALL_CBS(tr, setup, tr, stage);
    if (m->ops->setup) {
        bx_status s = m->ops->setup(m->self, tr, stage);
        if (s != BX_OK) return bx__hook_error(tr, "model", "setup", s);
    }
    tr->module = m->ops->module(m->self);
    if (!tr->module) return bx__error(BX_ERR_INVALID, "model: module() returned NULL after setup");
    if (ckpt_path) BX__TRY(bx__ckpt_restore_model(tr, ckpt_path));
    int64_t len = bx_loader_len(ld);
    bx_limit l = test ? tr->o.limit_test_batches : tr->o.limit_val_batches;
    int64_t n = l.is_int ? (len < (int64_t)l.value ? len : (int64_t)l.value) : (int64_t)floor((double)len * l.value);
    if (test)
        tr->num_test_batches = n;
    else
        tr->num_val_batches = n;
    tr->active = test ? BX__LOOP_TEST : BX__LOOP_VAL;
    if (test)
        tr->testing = true;
    else
        tr->validating = true;
    BX__TRY(bx__eval_run(tr, ld, n, test));
    tr->active = BX__LOOP_NONE;
    tr->testing = tr->validating = false;
    BX__CALL_HOOK(tr, teardown, tr, stage);
    return BX_OK;
}

static bx_status eval_public(bx_trainer *tr, const bx_model *m, bx_loader *ld, const char *ckpt_path, bool test) {
    const char *what = test ? "test" : "validate";
    if (!tr || !m || !m->ops || !m->ops->module || !ld)
        return bx__error(BX_ERR_INVALID, "%s: NULL trainer, model, module() or loader", what);
    if (test ? !m->ops->test_step : !m->ops->validation_step)
        return bx__error(BX_ERR_INVALID, "%s: model '%s' has no %s", what, m->ops->name ? m->ops->name : "?",
                         test ? "test_step" : "validation_step");
    tr->model_store = *m; /* the caller's bx_model may be a temporary */
    tr->model = &tr->model_store;
    tr->stage = test ? BX_STAGE_TEST : BX_STAGE_VALIDATE;
    tr->status_text = "running";
    tr->err_hook[0] = '\0';
    bx_status s = eval_entry(tr, m, ld, ckpt_path, test);
    if (s != BX_OK) return run_failed(tr, what, s);
    tr->status_text = "finished";
    return BX_OK;
}

bx_status bx_trainer_validate(bx_trainer *tr, const bx_model *m, bx_loader *val, const char *ckpt_path) {
    return eval_public(tr, m, val, ckpt_path, false);
}

bx_status bx_trainer_test(bx_trainer *tr, const bx_model *m, bx_loader *test, const char *ckpt_path) {
    return eval_public(tr, m, test, ckpt_path, true);
}

static bx_status predict_inner(bx_trainer *tr, const bx_model *m, bx_loader *data, const char *ckpt_path,
                               bx_predict_sink sink, void *ud) {
    BX__CALL_CBS(tr, setup, tr, BX_STAGE_PREDICT);
    if (m->ops->setup) {
        bx_status s = m->ops->setup(m->self, tr, BX_STAGE_PREDICT);
        if (s != BX_OK) return bx__hook_error(tr, "model", "setup", s);
    }
    if (!(tr->module = m->ops->module(m->self))) return bx__error(BX_ERR_INVALID, "predict: module() returned NULL");
    if (ckpt_path) BX__TRY(bx__ckpt_restore_model(tr, ckpt_path));
    int64_t len = bx_loader_len(data);
    bx_limit l = tr->o.limit_predict_batches;
    int64_t n = l.is_int ? (len < (int64_t)l.value ? len : (int64_t)l.value) : (int64_t)floor((double)len * l.value);
    tr->num_predict_batches = n;
    bx_module_train(tr->module, false);
    BX__CALL_HOOK(tr, on_predict_start, tr);
    BX__CALL_HOOK(tr, on_predict_epoch_start, tr);
    for (int64_t i = 0; i < n; i++) {
        bx_batch b;
        bx_step_reset(tr->step);
        tr->batch_idx = i;
        bx_status s = bx_loader_batch(data, tr->step, i, &b);
        if (s != BX_OK) return bx__hook_error(tr, "loader", "predict batch", s);
        BX__CALL_HOOK(tr, on_predict_batch_start, tr, &b, i, 0);
        bx_step_set_training(tr->step, false);
        bx_no_grad_push(tr->step);
        tr->step_output = NULL;
        tr->cur_fx = "predict_step";
        s = m->ops->predict_step(m->self, tr->step, &b, i);
        tr->cur_fx = NULL;
        bx_no_grad_pop(tr->step);
        if (s == BX_OK && bx_step_status(tr->step) != BX_OK)
            s = bx__error(bx_step_status(tr->step), "%s", bx_step_errmsg(tr->step));
        if (s != BX_OK) return bx__hook_error(tr, "model", "predict_step", s);
        if (sink && tr->step_output) {
            bx_tensor *c = bx_tensor_clone(tr->step_output);
            if (!c) return BX_ERR_NOMEM;
            s = sink(ud, i, c);
            if (s != BX_OK) return bx__hook_error(tr, "predict", "sink", s);
        }
        bx_step_output out = {NAN, tr->step_output};
        BX__CALL_HOOK(tr, on_predict_batch_end, tr, &out, &b, i, 0);
        bx_step_reset(tr->step);
    }
    BX__CALL_HOOK(tr, on_predict_epoch_end, tr);
    BX__CALL_HOOK(tr, on_predict_end, tr);
    BX__CALL_HOOK(tr, teardown, tr, BX_STAGE_PREDICT);
    return BX_OK;
}

bx_status bx_trainer_predict(bx_trainer *tr, const bx_model *m, bx_loader *data, const char *ckpt_path,
                             bx_predict_sink sink, void *ud) {
    if (!tr || !m || !m->ops || !m->ops->module || !m->ops->predict_step || !data)
        return bx__error(BX_ERR_INVALID, "predict: NULL trainer/loader or model without predict_step");
    tr->model_store = *m; /* the caller's bx_model may be a temporary */
    tr->model = &tr->model_store;
    tr->stage = BX_STAGE_PREDICT;
    tr->status_text = "running";
    tr->err_hook[0] = '\0';
    bx_status s = predict_inner(tr, m, data, ckpt_path, sink, ud);
    bx_step_reset(tr->step);
    if (s != BX_OK) return run_failed(tr, "predict", s);
    tr->status_text = "finished";
    return BX_OK;
}
