/* main.c - blixt-scenario: runs one conformance scenario (FORMAT.md §1) with
 * the Blixt Trainer and prints its trace (FORMAT.md §2) on stdout. Exit 0
 * whenever a trace was printed, also when the run itself failed. */
#include "scenario.h"

#include <blixt/checkpoint.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *norm(const char *p) {
    while (p[0] == '.' && p[1] == '/') p += 2;
    return p;
}

static void list_files(const char *dir, json_t *out) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char p[4096];
        if (!strcmp(dir, ".")) snprintf(p, sizeof p, "%s", e->d_name);
        else snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat sb;
        if (stat(p, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode)) list_files(p, out);
        else json_array_append_new(out, json_string(p));
    }
    closedir(d);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

static json_t *sorted(json_t *arr) {
    size_t n = json_array_size(arr);
    json_t **v = malloc((n + 1) * sizeof *v);
    for (size_t i = 0; i < n; i++) v[i] = json_incref(json_array_get(arr, i));
    qsort(v, n, sizeof *v, cmp_str);
    json_t *o = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(o, v[i]);
    free(v);
    json_decref(arr);
    return o;
}

static json_t *file_mtimes(void) {
    json_t *files = json_array(), *o = json_object();
    list_files(".", files);
    size_t i;
    json_t *f;
    json_array_foreach(files, i, f) {
        struct stat sb;
        if (stat(json_string_value(f), &sb) == 0)
            json_object_set_new(o, json_string_value(f), json_real((double)sb.st_mtim.tv_sec + 1e-9 * sb.st_mtim.tv_nsec));
    }
    json_decref(files);
    return o;
}

static json_t *read_csv(const char *path) {
    json_t *c = json_object();
    json_object_set_new(c, "path", json_string(norm(path)));
    FILE *f = fopen(path, "r");
    if (!f) {
        json_object_set_new(c, "missing", json_true());
        return c;
    }
    json_t *rows = json_array();
    json_t *header = NULL;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        size_t n = strlen(line);
        while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
        json_t *r = json_array();
        char *p = line;
        for (;;) {
            char *q = strchr(p, ',');
            if (q) *q = '\0';
            json_array_append_new(r, json_string(p));
            if (!q) break;
            p = q + 1;
        }
        if (!header) header = r;
        else json_array_append_new(rows, r);
    }
    fclose(f);
    json_object_set_new(c, "header", header ? header : json_array());
    json_object_set_new(c, "rows", rows);
    return c;
}

static json_t *metrics_json(bx_trainer *tr, bx_metric_dict which) {
    json_t *o = json_object();
    for (int i = 0; i < bx_trainer_metrics_count(tr, which); i++) {
        double v = bx_trainer_metric_value(tr, which, i);
        json_object_set_new(o, bx_trainer_metric_name(tr, which, i),
                            isnan(v) ? json_string("NaN") : isinf(v) ? json_string(v > 0 ? "Infinity" : "-Infinity") : json_real(v));
    }
    return o;
}

static bx_limit jlimit(json_t *v, bx_limit def) {
    if (!v || json_is_null(v)) return def;
    bx_limit l = {json_number_value(v), json_is_integer(v)};
    return l;
}

static json_t *merged_phase(json_t *top, json_t *phase) {
    json_t *m = json_deep_copy(top);
    json_object_del(m, "phases");
    const char *k;
    json_t *v;
    json_object_foreach(phase, k, v) {
        if (!strcmp(k, "trainer")) {
            json_t *t = json_object_get(m, "trainer");
            if (!t) {
                t = json_object();
                json_object_set_new(m, "trainer", t);
            }
            json_object_update(t, v);
        } else {
            json_object_set(m, k, v);
        }
    }
    return m;
}

static bool rec_flag(json_t *sc, const char *k, bool def) {
    json_t *r = json_object_get(sc, "record");
    json_t *v = r ? json_object_get(r, k) : NULL;
    return v ? json_is_true(v) : def;
}

static json_t *run_phase(json_t *sc, int index, bool *failed) {
    sc_phase ph;
    memset(&ph, 0, sizeof ph);
    ph.sc = sc;
    ph.events = json_array();
    ph.epoch_records = json_array();
    ph.step_records = json_array();
    ph.progress_bar = json_array();
    ph.counters = json_array();
    ph.module_hooks = rec_flag(sc, "module_hooks", false);
    ph.epoch_lrs = rec_flag(sc, "epoch_lrs", true);
    ph.step_lrs = rec_flag(sc, "step_lrs", false);
    ph.rec_requires_grad = rec_flag(sc, "requires_grad", false);
    ph.rec_params = rec_flag(sc, "params_per_epoch", false);
    ph.rec_fake_quant = rec_flag(sc, "fake_quant", false);
    json_t *P = json_object();
    json_object_set_new(P, "index", json_integer(index));
    json_t *cp = json_object_get(sc, "ckpt_path");
    json_object_set(P, "ckpt_path", cp ? cp : json_null());
    json_t *before = file_mtimes();

    const bx_model_ops *ops;
    bx_dataset *dtr = NULL, *dva = NULL;
    const char *stage = "construct";
    bx_status s = sc_build_model(&ph, &ops);
    if (s == BX_OK) s = sc_build_data(&ph, &dtr, &dva);
    /* trainer options */
    json_t *T = json_object_get(sc, "trainer");
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.enable_model_summary = false;
    o.enable_progress_bar = false;
    o.default_root_dir = ".";
    json_t *v;
    if ((v = json_object_get(T, "max_epochs")) && !json_is_null(v)) o.max_epochs = json_integer_value(v);
    if ((v = json_object_get(T, "min_epochs")) && !json_is_null(v)) o.min_epochs = json_integer_value(v);
    if ((v = json_object_get(T, "max_steps")) && !json_is_null(v)) o.max_steps = json_integer_value(v);
    if ((v = json_object_get(T, "min_steps")) && !json_is_null(v)) o.min_steps = json_integer_value(v);
    o.limit_train_batches = jlimit(json_object_get(T, "limit_train_batches"), o.limit_train_batches);
    o.limit_val_batches = jlimit(json_object_get(T, "limit_val_batches"), o.limit_val_batches);
    o.val_check_interval = jlimit(json_object_get(T, "val_check_interval"), o.val_check_interval);
    if ((v = json_object_get(T, "check_val_every_n_epoch"))) o.check_val_every_n_epoch = json_is_null(v) ? 0 : json_integer_value(v);
    if ((v = json_object_get(T, "num_sanity_val_steps"))) o.num_sanity_val_steps = json_integer_value(v);
    if ((v = json_object_get(T, "accumulate_grad_batches")) && json_is_integer(v)) o.accumulate_grad_batches = json_integer_value(v);
    if ((v = json_object_get(T, "log_every_n_steps"))) o.log_every_n_steps = json_integer_value(v);
    if ((v = json_object_get(T, "enable_checkpointing"))) o.enable_checkpointing = json_is_true(v);
    if ((v = json_object_get(T, "gradient_clip_val")) && !json_is_null(v)) o.gradient_clip_val = json_number_value(v);
    if ((v = json_object_get(T, "gradient_clip_algorithm")) && json_is_string(v) && !strcmp(json_string_value(v), "value"))
        o.gradient_clip_algorithm = BX_CLIP_VALUE;
    if ((v = json_object_get(T, "fast_dev_run"))) o.fast_dev_run = json_is_true(v) ? 1 : json_is_integer(v) ? json_integer_value(v) : 0;
    json_t *seed = json_object_get(sc, "seed");
    o.seed = seed ? json_integer_value(seed) : 0;
    /* logger */
    json_t *L = json_object_get(sc, "logger");
    bx_logger *lg = NULL;
    if (L && json_is_false(L)) {
        o.logger_default = false;
    } else {
        bx_csv_logger_opts co = BX_CSV_LOGGER_OPTS_INIT;
        co.save_dir = ".";
        if (L && (v = json_object_get(L, "name"))) co.name = json_string_value(v);
        if (L && (v = json_object_get(L, "version"))) {
            if (json_is_integer(v)) co.version.number = json_integer_value(v);
            else if (json_is_string(v)) co.version.text = json_string_value(v);
        }
        if (L && (v = json_object_get(L, "flush_logs_every_n_steps"))) co.flush_logs_every_n_steps = json_integer_value(v);
        lg = bx_csv_logger_new(&co);
        o.loggers = &lg;
        o.num_loggers = 1;
    }
    /* callbacks */
    bx_callback *cbs[32];
    int ncb = 0;
    json_t *C = json_object_get(sc, "callbacks");
    size_t ci;
    json_t *cj;
    json_array_foreach(C, ci, cj) {
        const char *type = json_string_value(json_object_get(cj, "type"));
        json_t *a = json_object_get(cj, "args");
        bx_callback *cb = NULL;
        int misc = sc_cb_misc_build(&ph, type, a, &o, &cb); /* cb_misc.c */
        if (misc != 0) {
            if (misc < 0) s = BX_ERR_INVALID;
        } else if (type && !strcmp(type, "Counter")) {
            json_t *k = a ? json_object_get(a, "key") : NULL;
            cb = sc_counter_new(&ph, k ? json_string_value(k) : "c");
        } else if (sc_es_mc_handles(type)) {
            cb = sc_es_mc_new(type, a);
            if (!cb) s = BX_ERR_INVALID;
        } else if (sc_prune_handles(type)) {
            cb = sc_prune_new(a);
        } else if (sc_qat_handles(type)) { /* cb_qat.c */
            cb = sc_qat_new(&ph, a);
            if (!cb) s = BX_ERR_INVALID;
        } else if (sc_swa_handles(type)) {
            cb = sc_swa_new(a);
            if (!cb) s = BX_ERR_INVALID;
        } else if (sc_cb_finetune_handles(type)) { /* cb_finetune.c */
            cb = sc_cb_finetune_new(type, a);
            if (!cb) s = BX_ERR_INVALID;
        } else if (getenv("BLIXT_SCENARIO_SKIP_UNKNOWN")) {
            /* debugging aid: run without the callbacks this build lacks */
            fprintf(stderr, "blixt-scenario: skipping unavailable callback '%s'\n", type ? type : "?");
        } else {
            fprintf(stderr, "blixt-scenario: callback type '%s' is not available\n", type ? type : "?");
            s = BX_ERR_UNSUPPORTED;
        }
        if (cb) cbs[ncb++] = cb;
    }
    cbs[ncb++] = sc_recorder_new(&ph);
    if (s == BX_OK) s = sc_cb_misc_after_recorder(&ph, cbs, &ncb);
    o.callbacks = cbs;
    o.num_callbacks = ncb;
    bx_trainer *tr = NULL;
    if (s == BX_OK) {
        tr = bx_trainer_new(&o);
        if (!tr) s = BX_ERR_INVALID;
    } else {
        for (int i = 0; i < ncb; i++) bx_callback_free(cbs[i]);
        bx_logger_free(lg);
    }
    ph.tr = tr;
    bx_loader *ltr = NULL, *lva = NULL;
    if (s == BX_OK) {
        stage = "fit";
        json_t *d = json_object_get(sc, "data");
        bx_loader_opts lo = BX_LOADER_OPTS_INIT;
        lo.batch_size = d && json_object_get(d, "batch_size") ? json_integer_value(json_object_get(d, "batch_size")) : 2;
        ltr = bx_loader_new(dtr, &lo);
        lva = bx_loader_new(dva, &lo);
        bx_model model = {ops, &ph};
        const char *ckpt = cp && json_is_string(cp) ? json_string_value(cp) : NULL;
        s = bx_trainer_fit(tr, &model, ltr, lva, ckpt);
    }
    json_object_set_new(P, "status", json_string(s == BX_OK ? "ok" : "error"));
    if (s != BX_OK) {
        *failed = true;
        json_object_set_new(P, "error", json_pack("{s:s,s:s,s:s}", "type", bx_status_str(s), "message", bx_errmsg(),
                                                   "stage", stage));
        fprintf(stderr, "blixt-scenario: %s: %s\n", stage, bx_errmsg());
    }
    json_object_set_new(P, "events", ph.events);
    json_object_set_new(P, "counts", json_pack("{s:I,s:I,s:I,s:I,s:I}", "training_step", (json_int_t)ph.n_training_step,
                                               "validation_runs", (json_int_t)ph.n_val_runs, "sanity_runs",
                                               (json_int_t)ph.n_sanity_runs, "optimizer_steps", (json_int_t)ph.n_opt_steps,
                                               "checkpoint_saves", (json_int_t)ph.n_ckpt_saves));
    if (tr) {
        json_t *F = json_object();
        json_object_set_new(F, "current_epoch", json_integer(bx_trainer_current_epoch(tr)));
        json_object_set_new(F, "global_step", json_integer(bx_trainer_global_step(tr)));
        json_object_set_new(F, "should_stop", json_boolean(bx_trainer_should_stop(tr)));
        json_object_set_new(F, "state", json_pack("{s:s,s:s}", "fn", "fit", "status", bx_trainer_status(tr)));
        json_object_set_new(F, "interrupted", json_boolean(bx_trainer_interrupted(tr)));
        json_object_set_new(F, "max_epochs", json_integer(bx_trainer_max_epochs(tr)));
        json_object_set_new(F, "min_epochs", json_integer(bx_trainer_min_epochs(tr)));
        json_object_set_new(F, "max_steps", json_integer(bx_trainer_max_steps(tr)));
        json_object_set_new(F, "num_training_batches", json_integer(bx_trainer_num_training_batches(tr)));
        json_t *nv = json_array(), *ns = json_array();
        if (bx_trainer_num_val_batches(tr) >= 0) json_array_append_new(nv, json_integer(bx_trainer_num_val_batches(tr)));
        if (bx_trainer_num_sanity_val_batches(tr) >= 0) json_array_append_new(ns, json_integer(bx_trainer_num_sanity_val_batches(tr)));
        json_object_set_new(F, "num_val_batches", nv);
        json_object_set_new(F, "num_sanity_val_batches", ns);
        json_object_set_new(F, "val_check_batch", json_integer(bx_trainer_val_check_batch(tr)));
        int64_t cv = bx_trainer_check_val_every_n_epoch(tr);
        json_object_set_new(F, "check_val_every_n_epoch", cv ? json_integer(cv) : json_null());
        json_object_set_new(F, "accumulate_grad_batches", json_integer(bx_trainer_accumulate_grad_batches(tr)));
        json_object_set_new(F, "batches_that_stepped", json_integer(bx_trainer_batches_that_stepped(tr)));
        json_t *order = json_array();
        for (int i = 0; i < bx_trainer_num_callbacks(tr); i++) {
            bx_callback *cb = bx_trainer_callback(tr, i);
            json_array_append_new(order, json_string(bx_callback_name(cb)));
        }
        json_object_set_new(F, "callbacks_order", order);
        json_object_set_new(F, "callback_metrics", metrics_json(tr, BX_CALLBACK_METRICS));
        json_object_set_new(F, "logged_metrics", metrics_json(tr, BX_LOGGED_METRICS));
        json_object_set_new(F, "progress_bar_metrics", metrics_json(tr, BX_PROGRESS_BAR_METRICS));
        json_object_set_new(P, "final", F);
        sc_es_mc_trace(tr, P);
        sc_prune_trace(tr, P, &ph);
        sc_swa_trace(tr, P);
        sc_cb_misc_trace(&ph, tr, P);
        json_object_set_new(P, "counters", ph.counters);
        ph.counters = NULL;
        json_object_set_new(P, "epoch_records", ph.epoch_records);
        ph.epoch_records = NULL;
        if (rec_flag(sc, "step_lrs", false)) json_object_set_new(P, "step_records", ph.step_records), ph.step_records = NULL;
        json_t *pf = json_object();
        bx_named_tensors *np = bx_module_named_parameters(ph.root);
        for (int i = 0; i < np->n; i++) json_object_set_new(pf, np->names[i], sc_tensor_json(np->tensors[i]));
        bx_named_tensors_free(np);
        json_object_set_new(P, "params_final", pf);
        sc_qat_trace(&ph, P, dtr, dva);
        if (json_array_size(ph.progress_bar)) json_object_set_new(P, "progress_bar", ph.progress_bar), ph.progress_bar = NULL;
        if (bx_trainer_num_loggers(tr) > 0) {
            char p[2048];
            snprintf(p, sizeof p, "%s/metrics.csv", bx_logger_log_dir(bx_trainer_logger(tr, 0)));
            json_object_set_new(P, "csv", read_csv(p));
        }
    }
    json_t *files = json_array();
    list_files(".", files);
    json_object_set_new(P, "files", sorted(files));
    if (rec_flag(sc, "checkpoint_contents", true)) {
        json_t *after = file_mtimes(), *cks = json_object();
        const char *f;
        json_t *mt;
        json_object_foreach(after, f, mt) {
            size_t n = strlen(f);
            if (n < 5 || strcmp(f + n - 5, ".ckpt")) continue;
            json_t *old = json_object_get(before, f);
            if (old && json_real_value(old) == json_real_value(mt)) continue;
            bx_state *ck = NULL;
            if (bx_checkpoint_read(f, &ck) != BX_OK) continue;
            json_t *c = sc_state_json(ck), *out = json_object(), *keys = json_array();
            const char *k;
            json_t *kv;
            json_object_foreach(c, k, kv) json_array_append_new(keys, json_string(k));
            json_object_set_new(out, "keys", sorted(keys));
            const char *copy[] = {"epoch", "global_step", "pytorch-lightning_version", "callbacks", "state_dict",
                                  "lr_schedulers", "loops"};
            for (int i = 0; i < 7; i++)
                if (json_object_get(c, copy[i])) json_object_set(out, copy[i], json_object_get(c, copy[i]));
            json_t *os = json_array(), *ol = json_object_get(c, "optimizer_states");
            size_t oi;
            json_t *oe;
            json_array_foreach(ol, oi, oe) {
                json_t *e = json_object();
                json_object_set(e, "param_groups", json_object_get(oe, "param_groups"));
                json_object_set(e, "state", json_object_get(oe, "state"));
                json_array_append_new(os, e);
            }
            json_object_set_new(out, "optimizer_states", os);
            json_object_set_new(cks, f, out);
            json_decref(c);
            bx_state_free(ck);
        }
        json_object_set_new(P, "checkpoints", cks);
        json_decref(after);
    }
    json_decref(before);
    bx_trainer_free(tr);
    bx_loader_free(ltr);
    bx_loader_free(lva);
    bx_dataset_free(dtr);
    bx_dataset_free(dva);
    bx_module_free(ph.root);
    json_decref(ph.counters);
    json_decref(ph.epoch_records);
    json_decref(ph.step_records);
    json_decref(ph.progress_bar);
    return P;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: blixt-scenario SCENARIO.json\n");
        return 2;
    }
    json_error_t err;
    json_t *sc = json_load_file(argv[1], JSON_DECODE_INT_AS_REAL * 0, &err);
    if (!sc) {
        fprintf(stderr, "blixt-scenario: %s: %s (line %d)\n", argv[1], err.text, err.line);
        return 2;
    }
    json_t *trace = json_object();
    json_object_set_new(trace, "format", json_string("lightning-peer-trace/1"));
    json_object_set(trace, "scenario", json_object_get(sc, "name"));
    json_object_set_new(trace, "peer", json_pack("{s:s}", "blixt", "0.1"));
    json_t *phases = json_array(), *pl = json_object_get(sc, "phases");
    bool failed = false;
    size_t n = pl ? json_array_size(pl) : 1;
    for (size_t i = 0; i < n && !failed; i++) {
        json_t *empty = json_object();
        json_t *m = merged_phase(sc, pl ? json_array_get(pl, i) : empty);
        json_decref(empty);
        json_array_append_new(phases, run_phase(m, (int)i, &failed));
        json_decref(m);
    }
    json_object_set_new(trace, "status", json_string(failed ? "error" : "ok"));
    json_object_set_new(trace, "phases", phases);
    char *text = json_dumps(trace, JSON_REAL_PRECISION(17));
    puts(text);
    free(text);
    json_decref(trace);
    json_decref(sc);
    return 0;
}
