/* model_checkpoint_stub.c - TEMPORARY minimal ModelCheckpoint (weak symbol)
 * so the Trainer can add its default checkpoint callback before the
 * callbacks helper's real one lands; the real bx_model_checkpoint_new
 * overrides this one at link time. Supports what the default
 * ModelCheckpoint() does in Lightning 1.9.5 (monitor None, top-1 latest,
 * epoch-end or validation-end saving, every_n_epochs, save_last) and a
 * top-1 monitor. Delete this file once src/callbacks/model_checkpoint.c exists. */
#include "blixt/callbacks.h"
#include "blixt/trainer.h"
#include "core/core_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct mc_stub {
    bx_model_checkpoint_opts o;
    char *monitor, *dirpath_opt, *mode;
    char dirpath[1024];
    char best_path[2048], last_path[2048];
    double best_score, current_score;
    bool has_best, has_current;
    int64_t last_step_saved;
} mc_stub;

static void mc_key(void *self, char *buf, size_t n) {
    mc_stub *m = self;
    char mon[300];
    if (m->monitor) snprintf(mon, sizeof mon, "'%s'", m->monitor);
    else snprintf(mon, sizeof mon, "None");
    snprintf(buf, n,
             "ModelCheckpoint{'monitor': %s, 'mode': '%s', 'every_n_train_steps': %lld, 'every_n_epochs': %lld, "
             "'train_time_interval': None}",
             mon, m->mode, (long long)m->o.every_n_train_steps, (long long)m->o.every_n_epochs);
}

static void mkdirs(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(tmp, 0777);
            *p = '/';
        }
    mkdir(tmp, 0777);
}

static void join(char *out, size_t n, const char *a, const char *b) {
    while (a[0] == '.' && a[1] == '/') a += 2;
    if (strcmp(a, ".") == 0 || !*a) snprintf(out, n, "%s", b);
    else snprintf(out, n, "%s/%s", a, b);
}

static bx_status mc_setup(void *self, bx_trainer *tr, bx_stage stage) {
    (void)stage;
    mc_stub *m = self;
    if (m->dirpath_opt) snprintf(m->dirpath, sizeof m->dirpath, "%s", m->dirpath_opt);
    else join(m->dirpath, sizeof m->dirpath, bx_trainer_log_dir(tr), "checkpoints");
    return BX_OK;
}

static bool skip(mc_stub *m, bx_trainer *tr) {
    return bx_trainer_fast_dev_run(tr) || bx_trainer_stage(tr) != BX_STAGE_FIT || bx_trainer_sanity_checking(tr) ||
           m->last_step_saved == bx_trainer_global_step(tr);
}

static bool on_epoch_end_mode(mc_stub *m, bx_trainer *tr) {
    if (m->o.save_on_train_epoch_end >= 0) return m->o.save_on_train_epoch_end != 0;
    if (bx_trainer_check_val_every_n_epoch(tr) != 1) return false;
    if (bx_trainer_num_val_batches(tr) <= 0) return true;
    return bx_trainer_val_check_batch(tr) == bx_trainer_num_training_batches(tr);
}

static bx_status save(mc_stub *m, bx_trainer *tr) {
    char name[512], path[2048];
    double score = NAN;
    if (m->monitor) {
        if (bx_trainer_metric(tr, m->monitor, &score) != BX_OK)
            return bx__error(BX_ERR_NOT_FOUND, "ModelCheckpoint(monitor='%s') could not find the monitored key",
                             m->monitor);
    }
    snprintf(name, sizeof name, "epoch=%lld-step=%lld.ckpt", (long long)bx_trainer_current_epoch(tr),
             (long long)bx_trainer_global_step(tr));
    join(path, sizeof path, m->dirpath, name);
    m->last_step_saved = bx_trainer_global_step(tr);
    bool better = !m->monitor || !m->has_best ||
                  (strcmp(m->mode, "max") == 0 ? score > m->best_score : score < m->best_score);
    if (m->monitor) {
        m->current_score = score;
        m->has_current = true;
    }
    if (m->o.save_top_k != 0 && better) {
        char old[2048];
        snprintf(old, sizeof old, "%s", m->best_path);
        snprintf(m->best_path, sizeof m->best_path, "%s", path);
        m->best_score = score;
        m->has_best = m->monitor != NULL;
        mkdirs(m->dirpath);
        bx_status s = bx_trainer_save_checkpoint(tr, path, m->o.save_weights_only);
        if (s != BX_OK) return s;
        if (old[0] && strcmp(old, path) != 0 && m->o.save_top_k == 1) unlink(old);
    }
    if (m->o.save_last == 1) {
        join(path, sizeof path, m->dirpath, "last.ckpt");
        mkdirs(m->dirpath);
        bx_status s = bx_trainer_save_checkpoint(tr, path, m->o.save_weights_only);
        if (s != BX_OK) return s;
        snprintf(m->last_path, sizeof m->last_path, "%s", path);
    }
    return BX_OK;
}

static bx_status mc_train_epoch_end(void *self, bx_trainer *tr) {
    mc_stub *m = self;
    if (skip(m, tr) || !on_epoch_end_mode(m, tr)) return BX_OK;
    if (m->o.every_n_epochs < 1 || (bx_trainer_current_epoch(tr) + 1) % m->o.every_n_epochs != 0) return BX_OK;
    return save(m, tr);
}

static bx_status mc_val_end(void *self, bx_trainer *tr) {
    mc_stub *m = self;
    if (skip(m, tr) || on_epoch_end_mode(m, tr)) return BX_OK;
    if (m->o.every_n_epochs < 1 || (bx_trainer_current_epoch(tr) + 1) % m->o.every_n_epochs != 0) return BX_OK;
    return save(m, tr);
}

static bx_state *score_node(bool has, double v) { return has ? bx_state_float(v) : bx_state_null(); }

static bx_status mc_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    mc_stub *m = self;
    bx_status s = bx_state_set(out, "monitor", m->monitor ? bx_state_string(m->monitor) : bx_state_null());
    if (!s) s = bx_state_set(out, "best_model_score", score_node(m->has_best, m->best_score));
    if (!s) s = bx_state_set_string(out, "best_model_path", m->best_path);
    if (!s) s = bx_state_set(out, "current_score", score_node(m->has_current, m->current_score));
    if (!s) s = bx_state_set_string(out, "dirpath", m->dirpath);
    bx_state *bk = bx_state_dict();
    if (!s && m->monitor && m->best_path[0]) s = bx_state_set_float(bk, m->best_path, m->best_score);
    if (!s) s = bx_state_set(out, "best_k_models", bk);
    else bx_state_free(bk);
    if (!s) s = bx_state_set_string(out, "kth_best_model_path", m->monitor ? m->best_path : "");
    if (!s) s = bx_state_set_float(out, "kth_value", m->has_best ? m->best_score : (strcmp(m->mode, "max") == 0 ? -INFINITY : INFINITY));
    if (!s) s = bx_state_set_string(out, "last_model_path", m->last_path);
    return s;
}

static bx_status mc_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    mc_stub *m = self;
    const bx_state *v = bx_state_get(st, "best_model_path");
    if (v && bx_state_typeof(v) == BX_STATE_STRING) snprintf(m->best_path, sizeof m->best_path, "%s", bx_state_get_string(v));
    v = bx_state_get(st, "best_model_score");
    if (v && (bx_state_typeof(v) == BX_STATE_FLOAT || bx_state_typeof(v) == BX_STATE_INT)) {
        m->best_score = bx_state_get_float(v);
        m->has_best = true;
    }
    v = bx_state_get(st, "last_model_path");
    if (v && bx_state_typeof(v) == BX_STATE_STRING) snprintf(m->last_path, sizeof m->last_path, "%s", bx_state_get_string(v));
    return BX_OK;
}

static void mc_destroy(void *self) {
    mc_stub *m = self;
    bx__free(m->monitor);
    bx__free(m->dirpath_opt);
    bx__free(m->mode);
    bx__free(m);
}

static const bx_callback_ops MC_OPS = {
    .name = "ModelCheckpoint",
    .state_key = mc_key,
    .setup = mc_setup,
    .on_train_epoch_end = mc_train_epoch_end,
    .on_validation_end = mc_val_end,
    .state_dict = mc_state_dict,
    .load_state_dict = mc_load_state_dict,
    .destroy = mc_destroy,
};

__attribute__((weak)) bx_callback *bx_model_checkpoint_new(const bx_model_checkpoint_opts *o) {
    bx_model_checkpoint_opts def = BX_MODEL_CHECKPOINT_OPTS_INIT;
    if (!o) o = &def;
    mc_stub *m = bx__calloc(sizeof *m);
    if (!m) return NULL;
    m->o = *o;
    m->monitor = o->monitor ? bx__strdup(o->monitor) : NULL;
    m->dirpath_opt = o->dirpath ? bx__strdup(o->dirpath) : NULL;
    m->mode = bx__strdup(o->mode ? o->mode : "min");
    m->last_step_saved = -1;
    return bx_callback_new(&MC_OPS, m);
}

static const bx_callback_ops PB_OPS = {.name = "ProgressBar"};

__attribute__((weak)) bx_callback *bx_progress_bar_new(void) { return bx_callback_new(&PB_OPS, NULL); }
