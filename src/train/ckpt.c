/* ckpt.c - checkpoint save/restore glue (spec/checkpoint.md, 1.9.5 order).
 *
 * Save: {epoch, global_step, pytorch-lightning_version, state_dict, loops,
 * callbacks (non-empty states), optimizer_states, lr_schedulers, rng,
 * loaders, hyper_parameters}; callbacks' state_dict, then their
 * on_save_checkpoint, then the model's; written by bx_checkpoint_write.
 * Restore (fit): model on_load_checkpoint + weights after setup, callbacks'
 * on_load_checkpoint + load_state_dict, then after configure_optimizers the
 * optimizer/scheduler states and the loop counters: an end-of-epoch
 * checkpoint continues with the next epoch, a mid-epoch one with the next
 * batch. */
#include "train/train_int.h"
#include "blixt/quant.h"
#include "blixt/callbacks.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define BX_VERSION_TEXT "blixt-0.1"

static bx_status set_child(bx_state *d, const char *k, bx_state *v) {
    if (!v) return BX_ERR_NOMEM;
    return bx_state_set(d, k, v);
}

static bx_state *progress_node(int64_t ready, int64_t completed) {
    bx_state *d = bx_state_dict();
    if (!d) return NULL;
    if (bx_state_set_int(d, "ready", ready) || bx_state_set_int(d, "started", ready) ||
        bx_state_set_int(d, "processed", ready) || bx_state_set_int(d, "completed", completed)) {
        bx_state_free(d);
        return NULL;
    }
    return d;
}

static bx_status build_loops(bx_trainer *tr, bx_state *ck) {
    bx_state *loops = bx_state_dict(), *fit = bx_state_dict(), *esd = bx_state_dict(), *bp = bx_state_dict(),
             *ep = bx_state_dict(), *cur = bx_state_dict();
    bx_status s = (loops && fit && esd && bp && ep && cur) ? BX_OK : BX_ERR_NOMEM;
    if (s == BX_OK) s = bx_state_set_int(esd, "_batches_that_stepped", tr->batches_that_stepped);
    if (s == BX_OK) s = bx_state_set_int(esd, "total_batch_idx", tr->total_batch_idx);
    if (s == BX_OK) s = set_child(bp, "current", progress_node(tr->batches_ready, tr->batches_ready));
    if (s == BX_OK) s = bx_state_set_bool(bp, "is_last_batch", tr->is_last_batch);
    if (s == BX_OK) s = bx_state_set_int(cur, "ready", tr->epochs_processed);
    if (s == BX_OK) s = bx_state_set_int(cur, "processed", tr->epochs_processed);
    if (s == BX_OK) s = bx_state_set_int(cur, "completed", tr->epochs_completed);
    if (s == BX_OK) { s = bx_state_set(ep, "current", cur); cur = NULL; }
    if (s == BX_OK) { s = bx_state_set(fit, "epoch_loop.state_dict", esd); esd = NULL; }
    if (s == BX_OK) { s = bx_state_set(fit, "epoch_loop.batch_progress", bp); bp = NULL; }
    if (s == BX_OK) { s = bx_state_set(fit, "epoch_progress", ep); ep = NULL; }
    if (s == BX_OK) { s = bx_state_set(loops, "fit_loop", fit); fit = NULL; }
    if (s == BX_OK) { s = bx_state_set(ck, "loops", loops); loops = NULL; }
    bx_state_free(loops); bx_state_free(fit); bx_state_free(esd); bx_state_free(bp); bx_state_free(ep);
    bx_state_free(cur);
    return s;
}

static bx_status build_checkpoint(bx_trainer *tr, bool weights_only, bx_state *ck) {
    BX__TRY(bx_state_set_int(ck, "epoch", tr->epochs_completed));
    BX__TRY(bx_state_set_int(ck, "global_step", tr->global_step));
    BX__TRY(bx_state_set_string(ck, "pytorch-lightning_version", BX_VERSION_TEXT));
    bx_state *sd = bx_state_dict();
    if (!sd) return BX_ERR_NOMEM;
    BX__TRY(bx_state_set(ck, "state_dict", sd));
    if (tr->module) {
        bx_named_tensors *nt = bx_module_state_dict(tr->module);
        if (!nt) return BX_ERR_NOMEM;
        bx_status s = BX_OK;
        for (int i = 0; s == BX_OK && i < nt->n; i++) s = bx_state_set_tensor(sd, nt->names[i], nt->tensors[i]);
        bx_named_tensors_free(nt);
        BX__TRY(s);
    }
    BX__TRY(build_loops(tr, ck));
    if (!weights_only) {
        bx_state *cbs = bx_state_dict();
        if (!cbs) return BX_ERR_NOMEM;
        BX__TRY(bx_state_set(ck, "callbacks", cbs));
        char key[512];
        for (int i = 0; i < tr->ncb; i++) {
            bx_callback *cb = tr->cbs[i];
            if (!cb->ops->state_dict) continue;
            bx_state *st = bx_state_dict();
            if (!st) return BX_ERR_NOMEM;
            tr->cur_fx = "state_dict";
            bx_status s = cb->ops->state_dict(cb->self, tr, st);
            tr->cur_fx = NULL;
            if (s != BX_OK) {
                bx_state_free(st);
                return bx__hook_error(tr, bx_callback_name(cb), "state_dict", s);
            }
            if (bx_state_len(st) == 0) {
                bx_state_free(st);
                continue;
            }
            bx_callback_state_key(cb, key, sizeof key);
            BX__TRY(bx_state_set(cbs, key, st));
        }
        bx_state *os = bx_state_list(), *ls = bx_state_list();
        if (!os || !ls) {
            bx_state_free(os);
            bx_state_free(ls);
            return BX_ERR_NOMEM;
        }
        BX__TRY(bx_state_set(ck, "optimizer_states", os));
        BX__TRY(bx_state_set(ck, "lr_schedulers", ls));
        for (int i = 0; i < tr->ocfg.nopt; i++) BX__TRY(bx_state_append(os, bx_optimizer_state_dict(tr->ocfg.opts[i])));
        for (int i = 0; i < tr->ocfg.nsched; i++)
            BX__TRY(bx_state_append(ls, bx_scheduler_state_dict(tr->ocfg.scheds[i].scheduler)));
        bx_state *rng = bx_state_dict();
        if (!rng) return BX_ERR_NOMEM;
        BX__TRY(bx_state_set(ck, "rng", rng));
        const bx_rng *r = bx_step_rng(tr->step);
        BX__TRY(bx_state_set_int(rng, "seed", (int64_t)r->seed));
        BX__TRY(bx_state_set_int(rng, "offset", (int64_t)r->offset));
        bx_state *lst = tr->train_loader         ? bx_loader_state_dict(tr->train_loader)
                        : tr->train_loader_state ? bx_state_copy(tr->train_loader_state)
                                                 : NULL;
        if (lst) BX__TRY(bx_state_set(ck, "train_loader", lst));
    }
    if (tr->model && tr->model->ops->hparams) {
        bx_state *hp = bx_state_dict();
        if (!hp) return BX_ERR_NOMEM;
        BX__TRY(bx_state_set(ck, "hyper_parameters", hp));
        BX__TRY(tr->model->ops->hparams(tr->model->self, hp));
        if (bx_state_len(hp) > 0) BX__TRY(bx_state_set_string(ck, "hparams_name", "kwargs"));
    }
    if (!weights_only) BX__CALL_CBS(tr, on_save_checkpoint, tr, ck);
    BX__CALL_MODEL_HOOK(tr, on_save_checkpoint, tr, ck);
    return BX_OK;
}

bx_status bx_trainer_save_checkpoint(bx_trainer *tr, const char *path, bool weights_only) {
    if (!tr || !path || !*path) return bx__error(BX_ERR_INVALID, "save_checkpoint: no path");
    bx_state *ck = bx_state_dict();
    if (!ck) return BX_ERR_NOMEM;
    bx_status s = build_checkpoint(tr, weights_only, ck);
    if (s == BX_OK) s = bx_checkpoint_write(path, ck);
    bx_state_free(ck);
    return s;
}

/* ---- restore ------------------------------------------------------------------------- */
/* ckpt_path "last": the newest "*last*.ckpt" in the dirpath of every ModelCheckpoint. */
static bx_status find_last(bx_trainer *tr, char *out, size_t n) {
    out[0] = '\0';
    double best = -1;
    for (int i = 0; i < tr->ncb; i++) {
        const char *dir = bx_model_checkpoint_dirpath(tr->cbs[i]); /* "" for other callbacks */
        DIR *d = dir[0] ? opendir(dir) : NULL;
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            size_t len = strlen(e->d_name);
            if (!strstr(e->d_name, "last") || len < 5 || strcmp(e->d_name + len - 5, ".ckpt") != 0) continue;
            char p[4096];
            struct stat sb;
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            if (stat(p, &sb) != 0) continue;
            double t = (double)sb.st_mtim.tv_sec + 1e-9 * (double)sb.st_mtim.tv_nsec;
            if (t > best) {
                best = t;
                bx__strlcpy(out, p, n);
            }
        }
        if (d) closedir(d);
    }
    return BX_OK;
}

/* ckpt_path "best": the first ModelCheckpoint's best_model_path (Lightning's
 * trainer.checkpoint_callback). Errors as Lightning's _parse_ckpt_path: no
 * ModelCheckpoint, or it has not saved a best model (fit has not run in this
 * Trainer: a fresh process knows no best model). */
static bx_status find_best(bx_trainer *tr, const char *fn, char *out, size_t n) {
    out[0] = '\0';
    for (int i = 0; i < tr->ncb; i++) {
        if (!bx__cb_is(tr->cbs[i], "ModelCheckpoint")) continue;
        bx__strlcpy(out, bx_model_checkpoint_best_model_path(tr->cbs[i]), n);
        if (!out[0])
            return bx__error(BX_ERR_STATE,
                             "%s(ckpt_path=\"best\"): ModelCheckpoint has no best checkpoint yet (fit has not "
                             "saved one with this Trainer); pass the checkpoint file's path instead", fn);
        return BX_OK;
    }
    return bx__error(BX_ERR_STATE, "%s(ckpt_path=\"best\") is set but no ModelCheckpoint is configured", fn);
}

static const bx_tensor *sd_lookup(void *ud, const char *name) {
    const bx_state *t = bx_state_get((const bx_state *)ud, name);
    return t && bx_state_typeof(t) == BX_STATE_TENSOR ? bx_state_get_tensor(t) : NULL;
}

bx_status bx__ckpt_restore_model(bx_trainer *tr, const char *path) {
    char last[4096];
    if (strcmp(path, "last") == 0) {
        BX__TRY(find_last(tr, last, sizeof last));
        if (!last[0]) {
            bx_logf(BX_LOG_WARNING, "ckpt_path=\"last\" is set, but there is no last checkpoint available; "
                                    "no checkpoint will be loaded");
            return BX_OK;
        }
        path = last;
    } else if (strcmp(path, "best") == 0) {
        BX__TRY(find_best(tr, bx_stage_name(tr->stage), last, sizeof last));
        path = last;
    }
    bx_state_free(tr->loaded_ckpt);
    tr->loaded_ckpt = NULL;
    BX__TRY(bx_checkpoint_read(path, &tr->loaded_ckpt));
    bx__free(tr->ckpt_path);
    tr->ckpt_path = bx__strdup(path);
    BX__CALL_MODEL_HOOK(tr, on_load_checkpoint, tr, tr->loaded_ckpt);
    const bx_state *sd = bx_state_get(tr->loaded_ckpt, "state_dict");
    if (!sd || bx_state_typeof(sd) != BX_STATE_DICT)
        return bx__error(BX_ERR_FORMAT, "checkpoint '%s': no 'state_dict'", path);
    const bx_state *cbst = bx_state_get(tr->loaded_ckpt, "callbacks");
    if (cbst && bx_state_typeof(cbst) == BX_STATE_DICT) {
        char key[512];
        for (int i = 0; i < tr->ncb; i++) { /* structure-changing callbacks first (QAT) */
            bx_callback *cb = tr->cbs[i];
            if (!cb->ops->load_before_model) continue;
            bx_callback_state_key(cb, key, sizeof key);
            const bx_state *st = bx_state_get(cbst, key);
            if (!st) continue;
            bx_status s = cb->ops->load_before_model(cb->self, tr, st);
            if (s != BX_OK) return bx__hook_error(tr, bx_callback_name(cb), "load_before_model", s);
        }
    }
    bx_named_tensors *nt = bx_named_tensors_new(false);
    if (!nt) return BX_ERR_NOMEM;
    bx_status s = BX_OK;
    for (size_t i = 0; s == BX_OK && i < bx_state_len(sd); i++) {
        const bx_state *v = bx_state_value_at(sd, i);
        if (bx_state_typeof(v) != BX_STATE_TENSOR)
            s = bx__error(BX_ERR_FORMAT, "checkpoint '%s': state_dict entry '%s' is not a tensor", path,
                          bx_state_key_at(sd, i));
        else
            s = bx_named_tensors_add(nt, bx_state_key_at(sd, i), (bx_tensor *)bx_state_get_tensor(v));
    }
    if (s == BX_OK) {
        s = bx_quant_load_state_dict(tr->module, nt, true); /* = bx_module_load_state_dict without observers */
        if (s != BX_OK) {
            char *m = bx__strdup(bx_errmsg());
            s = bx__error(s, "checkpoint '%s' does not match the model: %s", path, m ? m : "");
            bx__free(m);
        }
    }
    bx_named_tensors_free(nt);
    (void)sd_lookup;
    return s;
}

bx_status bx__ckpt_restore_callbacks(bx_trainer *tr) {
    if (!tr->loaded_ckpt) return BX_OK;
    BX__CALL_CBS(tr, on_load_checkpoint, tr, tr->loaded_ckpt);
    const bx_state *cbs = bx_state_get(tr->loaded_ckpt, "callbacks");
    if (!cbs || bx_state_typeof(cbs) != BX_STATE_DICT) return BX_OK;
    char key[512];
    for (int i = 0; i < tr->ncb; i++) {
        bx_callback *cb = tr->cbs[i];
        if (!cb->ops->load_state_dict) continue;
        bx_callback_state_key(cb, key, sizeof key);
        const bx_state *st = bx_state_get(cbs, key);
        if (!st) continue;
        bx_status s = cb->ops->load_state_dict(cb->self, tr, st);
        if (s != BX_OK) return bx__hook_error(tr, bx_callback_name(cb), "load_state_dict", s);
    }
    return BX_OK;
}

static int64_t get_int_path(const bx_state *root, const char *const *path, int64_t def) {
    const bx_state *n = root;
    for (; *path && n; path++) n = bx_state_typeof(n) == BX_STATE_DICT ? bx_state_get(n, *path) : NULL;
    if (!n || (bx_state_typeof(n) != BX_STATE_INT && bx_state_typeof(n) != BX_STATE_FLOAT &&
               bx_state_typeof(n) != BX_STATE_BOOL))
        return def;
    return bx_state_typeof(n) == BX_STATE_BOOL ? (int64_t)bx_state_get_bool(n) : bx_state_get_int(n);
}

bx_status bx__ckpt_restore_training_state(bx_trainer *tr) {
    const bx_state *ck = tr->loaded_ckpt;
    if (!ck) return BX_OK;
    const char *path = tr->ckpt_path ? tr->ckpt_path : "?";
    const bx_state *os = bx_state_get(ck, "optimizer_states");
    if (os && bx_state_typeof(os) == BX_STATE_LIST) {
        if ((int)bx_state_len(os) != tr->ocfg.nopt)
            return bx__error(BX_ERR_INVALID, "checkpoint '%s' has %zu optimizer states, the model configured %d",
                             path, bx_state_len(os), tr->ocfg.nopt);
        for (int i = 0; i < tr->ocfg.nopt; i++)
            if (bx_optimizer_load_state_dict(tr->ocfg.opts[i], bx_state_at(os, (size_t)i)) != BX_OK) {
                char *m = bx__strdup(bx_errmsg());
                bx_status s = bx__error(BX_ERR_INVALID, "checkpoint '%s': optimizer %d: %s", path, i, m ? m : "");
                bx__free(m);
                return s;
            }
    }
    const bx_state *ls = bx_state_get(ck, "lr_schedulers");
    if (ls && bx_state_typeof(ls) == BX_STATE_LIST) {
        if ((int)bx_state_len(ls) != tr->ocfg.nsched)
            return bx__error(BX_ERR_INVALID, "checkpoint '%s' has %zu schedulers, the model configured %d", path,
                             bx_state_len(ls), tr->ocfg.nsched);
        for (int i = 0; i < tr->ocfg.nsched; i++)
            if (bx_scheduler_load_state_dict(tr->ocfg.scheds[i].scheduler, bx_state_at(ls, (size_t)i)) != BX_OK) {
                char *m = bx__strdup(bx_errmsg());
                bx_status s = bx__error(BX_ERR_INVALID, "checkpoint '%s': scheduler %d: %s", path, i, m ? m : "");
                bx__free(m);
                return s;
            }
    }
    static const char *const P_GS[] = {"global_step", NULL};
    static const char *const P_BTS[] = {"loops", "fit_loop", "epoch_loop.state_dict", "_batches_that_stepped", NULL};
    static const char *const P_TBI[] = {"loops", "fit_loop", "epoch_loop.state_dict", "total_batch_idx", NULL};
    static const char *const P_READY[] = {"loops", "fit_loop", "epoch_loop.batch_progress", "current", "ready", NULL};
    static const char *const P_LAST[] = {"loops", "fit_loop", "epoch_loop.batch_progress", "is_last_batch", NULL};
    static const char *const P_EPROC[] = {"loops", "fit_loop", "epoch_progress", "current", "processed", NULL};
    static const char *const P_ECOMP[] = {"loops", "fit_loop", "epoch_progress", "current", "completed", NULL};
    static const char *const P_EPOCH[] = {"epoch", NULL};
    tr->global_step = get_int_path(ck, P_GS, 0);
    tr->batches_that_stepped = get_int_path(ck, P_BTS, tr->global_step);
    tr->total_batch_idx = get_int_path(ck, P_TBI, 0);
    int64_t epoch = get_int_path(ck, P_EPOCH, 0);
    tr->epochs_completed = get_int_path(ck, P_ECOMP, epoch);
    tr->epochs_processed = get_int_path(ck, P_EPROC, epoch + 1);
    tr->batches_ready = get_int_path(ck, P_READY, 0);
    tr->is_last_batch = get_int_path(ck, P_LAST, 0) != 0;
    if (tr->epochs_processed > tr->epochs_completed) {
        /* saved at the end of an epoch: continue with the next one (current_epoch
         * moves on when the fit loop starts, after the sanity check, as in 1.9.5) */
        tr->batches_ready = 0;
        tr->is_last_batch = false;
        tr->restarting = false;
    } else {
        /* mid-epoch: continue with the next batch of this epoch */
        tr->restarting = tr->batches_ready > 0;
        tr->train_processed = tr->batches_ready;
    }
    const bx_state *rng = bx_state_get(ck, "rng");
    if (rng && bx_state_typeof(rng) == BX_STATE_DICT) {
        static const char *const P_S[] = {"seed", NULL}, *const P_O[] = {"offset", NULL};
        bx_rng *r = bx_step_rng(tr->step);
        r->seed = (uint64_t)get_int_path(rng, P_S, (int64_t)r->seed);
        r->offset = (uint64_t)get_int_path(rng, P_O, (int64_t)r->offset);
    }
    const bx_state *lst = bx_state_get(ck, "train_loader");
    if (lst && tr->train_loader) BX__TRY(bx_loader_load_state_dict(tr->train_loader, lst));
    return BX_OK;
}
