/* model_checkpoint.c - ModelCheckpoint (spec/callbacks.md §2, Lightning 1.9.5).
 *
 * Written only against the public callback and Trainer API. Triggers:
 *   on_train_batch_end: every_n_train_steps (global_step % n == 0) or
 *     train_time_interval elapsed;
 *   on_train_epoch_end (save_on_train_epoch_end) or on_validation_end
 *     (otherwise): every_n_epochs ((epoch + 1) % n == 0), then save_last.
 * Skipped in fast_dev_run, outside fit, during the sanity check and when
 * this instance already saved at this global_step (starts at 0: nothing is
 * saved before the first optimizer step).
 * Top-k (monitor set): a candidate enters when fewer than k are tracked or
 * it is strictly better than the k-th; the evicted file is deleted; NaN is
 * stored as +inf (min) / -inf (max); ties keep the first-inserted entry as
 * both best and worst. No monitor: the newest file (top_k 1 deletes the
 * previous one; -1 keeps all). Names come from the template
 * (checkpoint_name.c) with -v1, -v2, ... when the file exists. save_last
 * writes a full second checkpoint dirpath/last.ckpt. */
#include "callbacks_int.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MC_PATH 4096

#define TRY(x)                        \
    do {                              \
        bx_status s__ = (x);          \
        if (s__ != BX_OK) return s__; \
    } while (0)

typedef struct bk_entry {
    char *path;
    double score;
} bk_entry;

typedef struct mc {
    char *dirpath_opt, *filename, *monitor, *mode;
    bool verbose, save_weights_only, auto_insert, max_mode;
    int save_last, save_on_train_epoch_end;
    int64_t save_top_k, every_n_train_steps, every_n_epochs;
    double train_time_interval_s;
    char *dirpath; /* resolved at setup */
    bk_entry *bk;
    int nbk, capbk;
    char *best_model_path, *kth_best_model_path, *last_model_path;
    double best_model_score, kth_value, current_score; /* NAN = None (kth_value never) */
    int64_t last_global_step_saved;
    double last_time_checked; /* NAN until on_train_start */
    bool val_has_run;
} mc;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bx_status set_str(char **dst, const char *src) {
    char *c = bx_strdup(src ? src : "");
    if (!c) return BX_ERR_NOMEM;
    bx_free(*dst);
    *dst = c;
    return BX_OK;
}

static void mc_key(void *self, char *buf, size_t n) {
    mc *m = self;
    char mon[512], tti[160];
    if (m->monitor) snprintf(mon, sizeof mon, "'%s'", m->monitor);
    else snprintf(mon, sizeof mon, "None");
    if (m->train_time_interval_s > 0) {
        /* Python's repr of the timedelta */
        long long us = llround(m->train_time_interval_s * 1e6);
        long long days = us / 86400000000LL, secs = us / 1000000 % 86400, micro = us % 1000000;
        char part[3][48];
        int np = 0;
        if (days) snprintf(part[np++], sizeof part[0], "days=%lld", days);
        if (secs) snprintf(part[np++], sizeof part[0], "seconds=%lld", secs);
        if (micro) snprintf(part[np++], sizeof part[0], "microseconds=%lld", micro);
        if (!np) snprintf(part[np++], sizeof part[0], "0");
        snprintf(tti, sizeof tti, "datetime.timedelta(%s%s%s%s%s)", part[0], np > 1 ? ", " : "", np > 1 ? part[1] : "",
                 np > 2 ? ", " : "", np > 2 ? part[2] : "");
    } else {
        snprintf(tti, sizeof tti, "None");
    }
    snprintf(buf, n,
             "ModelCheckpoint{'monitor': %s, 'mode': '%s', 'every_n_train_steps': %lld, 'every_n_epochs': %lld, "
             "'train_time_interval': %s}",
             mon, m->mode, (long long)m->every_n_train_steps, (long long)m->every_n_epochs, tti);
}

/* ---- files ---------------------------------------------------------------------------- */
static bx_status mkdirs_for(const char *path) {
    char tmp[MC_PATH];
    snprintf(tmp, sizeof tmp, "%s", path);
    char *slash = strrchr(tmp, '/');
    if (!slash || slash == tmp) return BX_OK;
    *slash = '\0';
    for (char *p = tmp + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
                return bx_set_error(BX_ERR_IO, "ModelCheckpoint: cannot create directory '%s': %s", tmp, strerror(errno));
            *p = '/';
        }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
        return bx_set_error(BX_ERR_IO, "ModelCheckpoint: cannot create directory '%s': %s", tmp, strerror(errno));
    return BX_OK;
}

static bool file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

static void join(char *out, size_t n, const char *dir, const char *name) {
    if (dir && *dir) snprintf(out, n, "%s/%s", dir, name);
    else snprintf(out, n, "%s", name);
}

/* ---- monitor candidates: callback_metrics + epoch/step as ints ----------------------- */
typedef struct cands {
    bx__fmt_metric *m;
    int n;
} cands;

static bx_status get_cands(const bx_trainer *tr, cands *c) {
    int n = bx_trainer_metrics_count(tr, BX_CALLBACK_METRICS);
    c->m = bx_calloc(((size_t)n + 2) * sizeof *c->m);
    if (!c->m) return BX_ERR_NOMEM;
    c->n = 0;
    bool has_epoch = false, has_step = false;
    for (int i = 0; i < n; i++) {
        bx__fmt_metric *x = &c->m[c->n++];
        x->name = bx_trainer_metric_name(tr, BX_CALLBACK_METRICS, i);
        x->value = bx_trainer_metric_value(tr, BX_CALLBACK_METRICS, i);
        if (strcmp(x->name, "epoch") == 0 || strcmp(x->name, "step") == 0) {
            /* a logged epoch/step is cast with .int() */
            x->is_int = true;
            x->value = isfinite(x->value) ? (double)(int32_t)x->value : 0.0;
            if (x->name[0] == 'e') has_epoch = true;
            else has_step = true;
        }
    }
    if (!has_epoch) c->m[c->n++] = (bx__fmt_metric){"epoch", (double)bx_trainer_current_epoch(tr), true};
    if (!has_step) c->m[c->n++] = (bx__fmt_metric){"step", (double)bx_trainer_global_step(tr), true};
    return BX_OK;
}

static const bx__fmt_metric *cand(const cands *c, const char *name) {
    for (int i = 0; i < c->n; i++)
        if (strcmp(c->m[i].name, name) == 0) return &c->m[i];
    return NULL;
}

static int64_t cand_int(const cands *c, const char *name) {
    const bx__fmt_metric *x = cand(c, name);
    return x ? (int64_t)x->value : 0;
}

/* dirpath/<formatted name>[-v<ver>].ckpt */
static bx_status format_path(mc *m, const cands *c, const char *tmpl, int64_t ver, char *out, size_t n) {
    char name[MC_PATH];
    TRY(bx__ckpt_format_name(tmpl, m->auto_insert, c->m, c->n, name, sizeof name));
    char file[MC_PATH + 64];
    if (ver >= 0) snprintf(file, sizeof file, "%s-v%lld.ckpt", name, (long long)ver);
    else snprintf(file, sizeof file, "%s.ckpt", name);
    join(out, n, m->dirpath, file);
    return BX_OK;
}

/* The formatted path, versioned while a file of that name exists (unless it
 * is the file about to be replaced). */
static bx_status interpolated_path(mc *m, const cands *c, const char *del, char *out, size_t n) {
    TRY(format_path(m, c, m->filename, -1, out, n));
    for (int64_t v = 1; file_exists(out) && !(del && strcmp(out, del) == 0); v++)
        TRY(format_path(m, c, m->filename, v, out, n));
    return BX_OK;
}

static bx_status do_save(mc *m, bx_trainer *tr, const char *path) {
    TRY(mkdirs_for(path));
    TRY(bx_trainer_save_checkpoint(tr, path, m->save_weights_only));
    m->last_global_step_saved = bx_trainer_global_step(tr);
    return BX_OK;
}

static void remove_ckpt(const char *path) {
    if (path && *path && file_exists(path)) unlink(path);
}

/* ---- top-k bookkeeping ------------------------------------------------------------------ */
static int bk_find(const mc *m, const char *path) {
    for (int i = 0; i < m->nbk; i++)
        if (strcmp(m->bk[i].path, path) == 0) return i;
    return -1;
}

static void bk_remove(mc *m, int i) {
    bx_free(m->bk[i].path);
    memmove(&m->bk[i], &m->bk[i + 1], (size_t)(m->nbk - i - 1) * sizeof *m->bk);
    m->nbk--;
}

static bx_status bk_set(mc *m, const char *path, double score) {
    int i = bk_find(m, path);
    if (i >= 0) {
        m->bk[i].score = score;
        return BX_OK;
    }
    if (m->nbk == m->capbk) {
        int cap = m->capbk ? m->capbk * 2 : 8;
        bk_entry *nb = bx_realloc(m->bk, (size_t)cap * sizeof *nb);
        if (!nb) return BX_ERR_NOMEM;
        m->bk = nb;
        m->capbk = cap;
    }
    char *p = bx_strdup(path);
    if (!p) return BX_ERR_NOMEM;
    m->bk[m->nbk++] = (bk_entry){p, score};
    return BX_OK;
}

static void bk_clear(mc *m) {
    for (int i = 0; i < m->nbk; i++) bx_free(m->bk[i].path);
    m->nbk = 0;
}

/* Python max()/min() over the dict by value: the first-inserted extreme wins. */
static int bk_extreme(const mc *m, bool want_max) {
    int best = -1;
    for (int i = 0; i < m->nbk; i++)
        if (best < 0 || (want_max ? m->bk[i].score > m->bk[best].score : m->bk[i].score < m->bk[best].score)) best = i;
    return best;
}

static bool better(const mc *m, float a, float b) { return m->max_mode ? a > b : a < b; }

static bool check_monitor_top_k(const mc *m, const bx__fmt_metric *cur) {
    if (!cur) return false;
    if (m->save_top_k == -1) return true;
    if (m->nbk < m->save_top_k) return true;
    int k = bk_find(m, m->kth_best_model_path);
    if (k < 0) return true;
    return better(m, (float)cur->value, (float)m->bk[k].score);
}

static bx_status update_best_and_save(mc *m, bx_trainer *tr, const cands *c, double current) {
    int64_t k = m->save_top_k == -1 ? m->nbk + 1 : m->save_top_k;
    char del[MC_PATH] = "";
    bool has_del = false;
    if (m->nbk == k && k > 0) {
        snprintf(del, sizeof del, "%s", m->kth_best_model_path);
        has_del = true;
        int i = bk_find(m, del);
        if (i >= 0) bk_remove(m, i);
    }
    if (isnan(current)) current = m->max_mode ? -INFINITY : INFINITY;
    char path[MC_PATH];
    TRY(interpolated_path(m, c, has_del ? del : NULL, path, sizeof path));
    m->current_score = current;
    TRY(bk_set(m, path, current));
    if (m->nbk == k) {
        int w = bk_extreme(m, !m->max_mode);
        TRY(set_str(&m->kth_best_model_path, m->bk[w].path));
        m->kth_value = m->bk[w].score;
    }
    int b = bk_extreme(m, m->max_mode);
    TRY(set_str(&m->best_model_path, m->bk[b].path));
    m->best_model_score = m->bk[b].score;
    if (m->verbose)
        bx_logf(BX_LOG_INFO, "Epoch %lld, global step %lld: '%s' reached %0.5f (best %0.5f), saving model to '%s' as top %lld",
                (long long)cand_int(c, "epoch"), (long long)cand_int(c, "step"), m->monitor, current,
                m->best_model_score, path, (long long)k);
    TRY(do_save(m, tr, path));
    if (has_del && strcmp(path, del) != 0) remove_ckpt(del);
    return BX_OK;
}

static bx_status save_topk(mc *m, bx_trainer *tr, const cands *c) {
    if (m->save_top_k == 0) return BX_OK;
    if (m->monitor) {
        const bx__fmt_metric *cur = cand(c, m->monitor);
        if (!cur) {
            char keys[2048];
            size_t kl = 0;
            keys[0] = '\0';
            for (int i = 0; i < c->n && kl < sizeof keys; i++) {
                int w = snprintf(keys + kl, sizeof keys - kl, "%s'%s'", i ? ", " : "", c->m[i].name);
                if (w < 0) break;
                kl += (size_t)w;
            }
            if (m->val_has_run)
                return bx_set_error(BX_ERR_NOT_FOUND,
                                 "`ModelCheckpoint(monitor='%s')` could not find the monitored key in the returned "
                                 "metrics: [%s]. HINT: Did you call `log('%s', value)` in the `LightningModule`?",
                                 m->monitor, keys, m->monitor);
            bx_logf(BX_LOG_WARNING,
                    "`ModelCheckpoint(monitor='%s')` could not find the monitored key in the returned metrics: [%s]. "
                    "HINT: Did you call `log('%s', value)` in the `LightningModule`?",
                    m->monitor, keys, m->monitor);
        }
        if (check_monitor_top_k(m, cur)) return update_best_and_save(m, tr, c, cur->value);
        if (m->verbose)
            bx_logf(BX_LOG_INFO, "Epoch %lld, global step %lld: '%s' was not in top %lld", (long long)cand_int(c, "epoch"),
                    (long long)cand_int(c, "step"), m->monitor, (long long)m->save_top_k);
        return BX_OK;
    }
    /* no monitor: the newest file */
    char path[MC_PATH], prev[MC_PATH];
    TRY(interpolated_path(m, c, NULL, path, sizeof path));
    snprintf(prev, sizeof prev, "%s", m->best_model_path);
    TRY(set_str(&m->best_model_path, path));
    TRY(do_save(m, tr, path));
    if (m->save_top_k == 1 && prev[0] && strcmp(prev, path) != 0) remove_ckpt(prev);
    return BX_OK;
}

static bx_status save_last(mc *m, bx_trainer *tr, const cands *c) {
    if (!m->save_last) return BX_OK;
    char path[MC_PATH], prev[MC_PATH];
    TRY(format_path(m, c, "last", -1, path, sizeof path));
    snprintf(prev, sizeof prev, "%s", m->last_model_path);
    TRY(set_str(&m->last_model_path, path));
    TRY(do_save(m, tr, path));
    if (prev[0] && strcmp(prev, path) != 0) remove_ckpt(prev);
    return BX_OK;
}

/* ---- hooks -------------------------------------------------------------------------------- */
static bool skip_saving(const mc *m, const bx_trainer *tr) {
    return bx_trainer_fast_dev_run(tr) || bx_trainer_stage(tr) != BX_STAGE_FIT || bx_trainer_sanity_checking(tr) ||
           m->last_global_step_saved == bx_trainer_global_step(tr);
}

static bool on_train_epoch_end_mode(const mc *m, const bx_trainer *tr) {
    if (m->save_on_train_epoch_end >= 0) return m->save_on_train_epoch_end != 0;
    if (bx_trainer_check_val_every_n_epoch(tr) != 1) return false;
    if (bx_trainer_num_val_batches(tr) <= 0) return true;
    return bx_trainer_val_check_interval(tr).value == 1.0;
}

static void warn_if_dir_not_empty(const mc *m) {
    if (m->save_top_k == 0) return;
    DIR *d = opendir(m->dirpath);
    struct dirent *e;
    bool any = false;
    while (d && !any && (e = readdir(d)) != NULL) any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    if (any) bx_logf(BX_LOG_WARNING, "Checkpoint directory %s exists and is not empty.", m->dirpath);
}

static bx_status mc_setup(void *self, bx_trainer *tr, bx_stage stage) {
    mc *m = self;
    m->val_has_run = false;
    if (m->dirpath_opt) {
        TRY(set_str(&m->dirpath, m->dirpath_opt));
    } else {
        char d[MC_PATH];
        const char *base = bx_trainer_num_loggers(tr) > 0 ? bx_trainer_log_dir(tr) : bx_trainer_default_root_dir(tr);
        if (!base) base = ".";
        while (base[0] == '.' && base[1] == '/') base += 2;
        if (!*base || strcmp(base, ".") == 0) snprintf(d, sizeof d, "checkpoints");
        else snprintf(d, sizeof d, "%s/checkpoints", base);
        TRY(set_str(&m->dirpath, d));
    }
    if (stage == BX_STAGE_FIT) warn_if_dir_not_empty(m);
    return BX_OK;
}

static bx_status mc_train_start(void *self, bx_trainer *tr) {
    (void)tr;
    ((mc *)self)->last_time_checked = now_s();
    return BX_OK;
}

static bx_status save_both(mc *m, bx_trainer *tr, bool topk) {
    cands c;
    TRY(get_cands(tr, &c));
    bx_status s = topk ? save_topk(m, tr, &c) : BX_OK;
    if (s == BX_OK) s = save_last(m, tr, &c);
    bx_free(c.m);
    return s;
}

static bx_status mc_batch_end(void *self, bx_trainer *tr, const bx_step_output *out, const bx_batch *b, int64_t bi) {
    (void)out, (void)b, (void)bi;
    mc *m = self;
    if (skip_saving(m, tr)) return BX_OK;
    bool skip_batch = m->every_n_train_steps < 1 || bx_trainer_global_step(tr) % m->every_n_train_steps != 0;
    bool skip_time = true;
    double t = now_s();
    if (m->train_time_interval_s > 0)
        skip_time = isnan(m->last_time_checked) || t - m->last_time_checked < m->train_time_interval_s;
    if (skip_batch && skip_time) return BX_OK;
    if (!skip_time) m->last_time_checked = t;
    return save_both(m, tr, true);
}

static bool epoch_due(const mc *m, const bx_trainer *tr) {
    return m->every_n_epochs >= 1 && (bx_trainer_current_epoch(tr) + 1) % m->every_n_epochs == 0;
}

static bx_status mc_train_epoch_end(void *self, bx_trainer *tr) {
    mc *m = self;
    if (skip_saving(m, tr) || !on_train_epoch_end_mode(m, tr)) return BX_OK;
    return save_both(m, tr, epoch_due(m, tr));
}

static bx_status mc_val_end(void *self, bx_trainer *tr) {
    mc *m = self;
    /* Lightning's val_loop._has_run: any evaluation run inside fit (the sanity check included) */
    if (bx_trainer_stage(tr) == BX_STAGE_FIT) m->val_has_run = true;
    if (skip_saving(m, tr) || on_train_epoch_end_mode(m, tr)) return BX_OK;
    return save_both(m, tr, epoch_due(m, tr));
}

/* ---- state ---------------------------------------------------------------------------------- */
static bx_state *score_node(double v) { return isnan(v) ? bx_state_null() : bx_state_float(v); }

static bx_status mc_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    (void)tr;
    mc *m = self;
    bx_status s = bx_state_set(out, "monitor", m->monitor ? bx_state_string(m->monitor) : bx_state_null());
    if (!s) s = bx_state_set(out, "best_model_score", score_node(m->best_model_score));
    if (!s) s = bx_state_set_string(out, "best_model_path", m->best_model_path);
    if (!s) s = bx_state_set(out, "current_score", score_node(m->current_score));
    if (!s) s = bx_state_set(out, "dirpath", m->dirpath ? bx_state_string(m->dirpath) : bx_state_null());
    bx_state *bk = s ? NULL : bx_state_dict();
    if (!s && !bk) s = BX_ERR_NOMEM;
    for (int i = 0; !s && i < m->nbk; i++) s = bx_state_set_float(bk, m->bk[i].path, m->bk[i].score);
    if (!s) {
        s = bx_state_set(out, "best_k_models", bk);
        bk = NULL;
    }
    bx_state_free(bk);
    if (!s) s = bx_state_set_string(out, "kth_best_model_path", m->kth_best_model_path);
    if (!s) s = bx_state_set_float(out, "kth_value", m->kth_value);
    if (!s) s = bx_state_set_string(out, "last_model_path", m->last_model_path);
    return s;
}

static double node_score(const bx_state *v, double dflt) {
    if (!v) return dflt;
    bx_state_type t = bx_state_typeof(v);
    if (t == BX_STATE_NULL) return NAN;
    if (t == BX_STATE_FLOAT || t == BX_STATE_INT) return bx_state_get_float(v);
    if (t == BX_STATE_TENSOR) {
        const bx_tensor *x = bx_state_get_tensor(v);
        if (x && bx_numel(x) == 1) return bx_get(x, 0);
    }
    return dflt;
}

static const char *node_str(const bx_state *v, const char *dflt) {
    return v && bx_state_typeof(v) == BX_STATE_STRING ? bx_state_get_string(v) : dflt;
}

/* Lightning 1.9.5: the top-k state is restored only when dirpath is unchanged;
 * best_model_path always. */
static bx_status mc_load_state_dict(void *self, bx_trainer *tr, const bx_state *st) {
    (void)tr;
    mc *m = self;
    const bx_state *dp = bx_state_get(st, "dirpath");
    const char *from = dp ? node_str(dp, NULL) : m->dirpath;
    bool same = (from == NULL && m->dirpath == NULL) || (from && m->dirpath && strcmp(from, m->dirpath) == 0);
    if (same) {
        m->best_model_score = node_score(bx_state_get(st, "best_model_score"), m->best_model_score);
        TRY(set_str(&m->kth_best_model_path, node_str(bx_state_get(st, "kth_best_model_path"), m->kth_best_model_path)));
        m->kth_value = node_score(bx_state_get(st, "kth_value"), m->kth_value);
        const bx_state *bk = bx_state_get(st, "best_k_models");
        if (bk && bx_state_typeof(bk) == BX_STATE_DICT) {
            bk_clear(m);
            for (size_t i = 0; i < bx_state_len(bk); i++)
                TRY(bk_set(m, bx_state_key_at(bk, i), node_score(bx_state_value_at(bk, i), NAN)));
        }
        TRY(set_str(&m->last_model_path, node_str(bx_state_get(st, "last_model_path"), m->last_model_path)));
    } else {
        bx_logf(BX_LOG_WARNING,
                "The dirpath has changed from '%s' to '%s', therefore `best_model_score`, `kth_best_model_path`, "
                "`kth_value`, `last_model_path` and `best_k_models` won't be reloaded. Only `best_model_path` will "
                "be reloaded.",
                from ? from : "None", m->dirpath ? m->dirpath : "None");
    }
    return set_str(&m->best_model_path, node_str(bx_state_get(st, "best_model_path"), m->best_model_path));
}

static void mc_destroy(void *self) {
    mc *m = self;
    if (!m) return;
    bk_clear(m);
    bx_free(m->bk);
    bx_free(m->dirpath_opt);
    bx_free(m->filename);
    bx_free(m->monitor);
    bx_free(m->mode);
    bx_free(m->dirpath);
    bx_free(m->best_model_path);
    bx_free(m->kth_best_model_path);
    bx_free(m->last_model_path);
    bx_free(m);
}

static const bx_callback_ops MC_OPS = {
    .name = "ModelCheckpoint",
    .state_key = mc_key,
    .setup = mc_setup,
    .on_train_start = mc_train_start,
    .on_train_batch_end = mc_batch_end,
    .on_train_epoch_end = mc_train_epoch_end,
    .on_validation_end = mc_val_end,
    .state_dict = mc_state_dict,
    .load_state_dict = mc_load_state_dict,
    .destroy = mc_destroy,
};

static bx_callback *fail(mc *m, bx_status s, const char *fmt, long long a, long long b) {
    if (fmt) bx_set_error(s, fmt, a, b);
    mc_destroy(m);
    return NULL;
}

bx_callback *bx_model_checkpoint_new(const bx_model_checkpoint_opts *o) {
    bx_model_checkpoint_opts def = BX_MODEL_CHECKPOINT_OPTS_INIT;
    if (!o) o = &def;
    const char *mode = o->mode ? o->mode : "min";
    if (strcmp(mode, "min") != 0 && strcmp(mode, "max") != 0) {
        bx_set_error(BX_ERR_INVALID, "ModelCheckpoint: `mode` can be min, max but got %s", mode);
        return NULL;
    }
    mc *m = bx_calloc(sizeof *m);
    if (!m) return NULL;
    m->max_mode = strcmp(mode, "max") == 0;
    m->verbose = o->verbose;
    m->save_weights_only = o->save_weights_only;
    m->auto_insert = o->auto_insert_metric_name;
    m->save_last = o->save_last;
    m->save_on_train_epoch_end = o->save_on_train_epoch_end < 0 ? -1 : o->save_on_train_epoch_end != 0;
    m->save_top_k = o->save_top_k;
    m->train_time_interval_s = o->train_time_interval_s > 0 ? o->train_time_interval_s : 0.0;
    if (o->every_n_train_steps == BX_UNSET && o->every_n_epochs == BX_UNSET && m->train_time_interval_s == 0) {
        m->every_n_epochs = 1;
        m->every_n_train_steps = 0;
    } else {
        m->every_n_epochs = o->every_n_epochs == BX_UNSET ? 0 : o->every_n_epochs;
        m->every_n_train_steps = o->every_n_train_steps == BX_UNSET ? 0 : o->every_n_train_steps;
    }
    m->kth_value = m->max_mode ? -INFINITY : INFINITY;
    m->best_model_score = m->current_score = NAN;
    m->last_time_checked = NAN;
    m->last_global_step_saved = 0;
    if (set_str(&m->mode, mode) || set_str(&m->best_model_path, "") || set_str(&m->kth_best_model_path, "") ||
        set_str(&m->last_model_path, "") || (o->monitor && set_str(&m->monitor, o->monitor)) ||
        (o->dirpath && (set_str(&m->dirpath_opt, o->dirpath) || set_str(&m->dirpath, o->dirpath))) || (o->filename && set_str(&m->filename, o->filename)))
        return fail(m, BX_ERR_NOMEM, NULL, 0, 0);
    if (m->save_top_k < -1)
        return fail(m, BX_ERR_INVALID, "ModelCheckpoint: Invalid value for save_top_k=%lld. Must be >= -1",
                    (long long)m->save_top_k, 0);
    if (m->every_n_train_steps < 0)
        return fail(m, BX_ERR_INVALID, "ModelCheckpoint: Invalid value for every_n_train_steps=%lld. Must be >= 0",
                    (long long)m->every_n_train_steps, 0);
    if (m->every_n_epochs < 0)
        return fail(m, BX_ERR_INVALID, "ModelCheckpoint: Invalid value for every_n_epochs=%lld. Must be >= 0",
                    (long long)m->every_n_epochs, 0);
    if ((m->every_n_train_steps >= 1) + (m->every_n_epochs >= 1) + (m->train_time_interval_s > 0) > 1)
        return fail(m, BX_ERR_INVALID,
                    "ModelCheckpoint: Combination of parameters every_n_train_steps=%lld, every_n_epochs=%lld and "
                    "train_time_interval should be mutually exclusive.",
                    (long long)m->every_n_train_steps, (long long)m->every_n_epochs);
    if (!m->monitor && m->save_top_k != -1 && m->save_top_k != 0 && m->save_top_k != 1)
        return fail(m, BX_ERR_INVALID,
                    "ModelCheckpoint(save_top_k=%lld, monitor=None) is not a valid configuration. No quantity for "
                    "top_k to track.",
                    (long long)m->save_top_k, 0);
    /* the template must format (names missing from the metrics format as 0) */
    char probe[MC_PATH];
    if (bx__ckpt_format_name(m->filename, m->auto_insert, NULL, 0, probe, sizeof probe) != BX_OK) {
        bx_error_context("ModelCheckpoint: bad filename template");
        mc_destroy(m);
        return NULL;
    }
    return bx_callback_new(&MC_OPS, m);
}

/* ---- accessors ------------------------------------------------------------------------------ */
static mc *get(const bx_callback *cb) { return cb && bx_callback_get_ops(cb) == &MC_OPS ? bx_callback_self(cb) : NULL; }

const char *bx_model_checkpoint_dirpath(const bx_callback *cb) {
    mc *m = get(cb);
    return m && m->dirpath ? m->dirpath : "";
}
const char *bx_model_checkpoint_best_model_path(const bx_callback *cb) { return get(cb) ? get(cb)->best_model_path : ""; }
double bx_model_checkpoint_best_model_score(const bx_callback *cb) { return get(cb) ? get(cb)->best_model_score : NAN; }
const char *bx_model_checkpoint_kth_best_model_path(const bx_callback *cb) {
    return get(cb) ? get(cb)->kth_best_model_path : "";
}
double bx_model_checkpoint_kth_value(const bx_callback *cb) { return get(cb) ? get(cb)->kth_value : NAN; }
const char *bx_model_checkpoint_last_model_path(const bx_callback *cb) { return get(cb) ? get(cb)->last_model_path : ""; }
double bx_model_checkpoint_current_score(const bx_callback *cb) { return get(cb) ? get(cb)->current_score : NAN; }
int bx_model_checkpoint_best_k_count(const bx_callback *cb) { return get(cb) ? get(cb)->nbk : 0; }
const char *bx_model_checkpoint_best_k_path(const bx_callback *cb, int i) {
    mc *m = get(cb);
    return m && i >= 0 && i < m->nbk ? m->bk[i].path : "";
}
double bx_model_checkpoint_best_k_score(const bx_callback *cb, int i) {
    mc *m = get(cb);
    return m && i >= 0 && i < m->nbk ? m->bk[i].score : NAN;
}
bool bx_model_checkpoint_save_on_train_epoch_end(const bx_callback *cb, const bx_trainer *tr) {
    mc *m = get(cb);
    return m && on_train_epoch_end_mode(m, tr);
}
