/* cb_es_mc.c - blixt-scenario: EarlyStopping / ModelCheckpoint from the
 * scenario's callbacks list, and the trace sections `early_stopping` and
 * `model_checkpoints` (FORMAT.md §1.5, §2.2, §2.3). */
#include "scenario.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sc_es_mc_handles(const char *type) {
    return type && (!strcmp(type, "EarlyStopping") || !strcmp(type, "ModelCheckpoint"));
}

static bool jbool(json_t *a, const char *k, bool dflt) {
    json_t *v = json_object_get(a, k);
    return v && json_is_boolean(v) ? json_is_true(v) : dflt;
}
/* null -> dflt_null; missing -> dflt */
static double jnum(json_t *a, const char *k, double dflt, double dflt_null) {
    json_t *v = json_object_get(a, k);
    if (!v) return dflt;
    if (json_is_null(v)) return dflt_null;
    if (json_is_string(v)) return strtod(json_string_value(v), NULL); /* "nan", "inf" */
    return json_number_value(v);
}
static int64_t jint(json_t *a, const char *k, int64_t dflt, int64_t dflt_null) {
    json_t *v = json_object_get(a, k);
    if (!v) return dflt;
    if (json_is_null(v)) return dflt_null;
    return json_is_integer(v) ? json_integer_value(v) : (int64_t)json_number_value(v);
}
static const char *jstr(json_t *a, const char *k, const char *dflt) {
    json_t *v = json_object_get(a, k);
    if (!v) return dflt;
    return json_is_string(v) ? json_string_value(v) : NULL;
}
/* null/false -> 0, true -> 1, missing -> dflt */
static int jtri(json_t *a, const char *k, int dflt) {
    json_t *v = json_object_get(a, k);
    if (!v) return dflt;
    if (json_is_null(v)) return -1;
    return json_is_true(v) ? 1 : 0;
}

bx_callback *sc_es_mc_new(const char *type, json_t *a) {
    if (!strcmp(type, "EarlyStopping")) {
        bx_early_stopping_opts o = BX_EARLY_STOPPING_OPTS_INIT;
        o.monitor = jstr(a, "monitor", NULL);
        o.min_delta = jnum(a, "min_delta", 0.0, 0.0);
        o.patience = jint(a, "patience", 3, 3);
        o.verbose = jbool(a, "verbose", false);
        o.mode = jstr(a, "mode", "min");
        o.strict = jbool(a, "strict", true);
        o.check_finite = jbool(a, "check_finite", true);
        o.stopping_threshold = jnum(a, "stopping_threshold", NAN, NAN);
        o.divergence_threshold = jnum(a, "divergence_threshold", NAN, NAN);
        json_t *c = json_object_get(a, "check_on_train_epoch_end");
        o.check_on_train_epoch_end = !c || json_is_null(c) ? -1 : json_is_true(c);
        return bx_early_stopping_new(&o);
    }
    bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = jstr(a, "dirpath", NULL);
    o.filename = jstr(a, "filename", NULL);
    o.monitor = jstr(a, "monitor", NULL);
    o.verbose = jbool(a, "verbose", false);
    o.save_last = jtri(a, "save_last", 0) == 1;
    o.save_top_k = jint(a, "save_top_k", 1, 1);
    o.save_weights_only = jbool(a, "save_weights_only", false);
    o.mode = jstr(a, "mode", "min");
    o.auto_insert_metric_name = jbool(a, "auto_insert_metric_name", true);
    o.every_n_train_steps = jint(a, "every_n_train_steps", BX_UNSET, BX_UNSET);
    o.every_n_epochs = jint(a, "every_n_epochs", BX_UNSET, BX_UNSET);
    o.train_time_interval_s = jnum(a, "train_time_interval", 0.0, 0.0);
    o.save_on_train_epoch_end = jtri(a, "save_on_train_epoch_end", -1);
    return bx_model_checkpoint_new(&o);
}

static json_t *score(double v) {
    if (isnan(v)) return json_null();
    if (isinf(v)) return json_string(v > 0 ? "Infinity" : "-Infinity");
    return json_real(v);
}

static const char *strip_dot(const char *p) {
    while (p[0] == '.' && p[1] == '/') p += 2;
    return p;
}

/* path relative to dirpath (as the trace wants) */
static json_t *rel(const char *p, const char *dir) {
    p = strip_dot(p ? p : "");
    size_t dl = strlen(dir);
    if (dl && !strncmp(p, dir, dl) && p[dl] == '/') p += dl + 1;
    return json_string(p);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static json_t *dir_listing(const char *dirpath) {
    char *names[4096];
    int n = 0;
    DIR *d = opendir(dirpath);
    struct dirent *e;
    while (d && n < 4096 && (e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, (size_t)n, sizeof *names, cmp_str);
    json_t *arr = json_array();
    for (int i = 0; i < n; i++) {
        json_array_append_new(arr, json_string(names[i]));
        free(names[i]);
    }
    return arr;
}

void sc_es_mc_trace(bx_trainer *tr, json_t *phase) {
    json_t *es = json_array(), *mcs = json_array();
    for (int i = 0; tr && i < bx_trainer_num_callbacks(tr); i++) {
        bx_callback *cb = bx_trainer_callback(tr, i);
        char key[1024];
        bx_callback_state_key(cb, key, sizeof key);
        if (!strcmp(bx_callback_name(cb), "EarlyStopping")) {
            json_t *e = json_object();
            int c = bx_early_stopping_check_on_train_epoch_end(cb);
            json_object_set_new(e, "state_key", json_string(key));
            json_object_set_new(e, "wait_count", json_integer(bx_early_stopping_wait_count(cb)));
            json_object_set_new(e, "stopped_epoch", json_integer(bx_early_stopping_stopped_epoch(cb)));
            json_object_set_new(e, "best_score", score(bx_early_stopping_best_score(cb)));
            json_object_set_new(e, "patience", json_integer(bx_early_stopping_patience(cb)));
            json_object_set_new(e, "check_on_train_epoch_end", c < 0 ? json_null() : json_boolean(c));
            json_array_append_new(es, e);
        } else if (!strcmp(bx_callback_name(cb), "ModelCheckpoint")) {
            char dir[4096];
            snprintf(dir, sizeof dir, "%s", strip_dot(bx_model_checkpoint_dirpath(cb)));
            json_t *m = json_object();
            json_object_set_new(m, "state_key", json_string(key));
            json_object_set_new(m, "dirpath", json_string(dir));
            json_object_set_new(m, "files", dir_listing(dir));
            json_object_set_new(m, "best_model_path", rel(bx_model_checkpoint_best_model_path(cb), dir));
            json_object_set_new(m, "kth_best_model_path", rel(bx_model_checkpoint_kth_best_model_path(cb), dir));
            json_object_set_new(m, "last_model_path", rel(bx_model_checkpoint_last_model_path(cb), dir));
            json_object_set_new(m, "best_model_score", score(bx_model_checkpoint_best_model_score(cb)));
            json_object_set_new(m, "kth_value", score(bx_model_checkpoint_kth_value(cb)));
            json_object_set_new(m, "current_score", score(bx_model_checkpoint_current_score(cb)));
            json_t *bk = json_object();
            for (int k = 0; k < bx_model_checkpoint_best_k_count(cb); k++) {
                json_t *r = rel(bx_model_checkpoint_best_k_path(cb, k), dir);
                json_object_set_new(bk, json_string_value(r), score(bx_model_checkpoint_best_k_score(cb, k)));
                json_decref(r);
            }
            json_object_set_new(m, "best_k_models", bk);
            json_array_append_new(mcs, m);
        }
    }
    json_object_set_new(phase, "early_stopping", es);
    json_object_set_new(phase, "model_checkpoints", mcs);
}
