/* ModelCheckpoint tests: filename formatting pins (spec/callbacks.md §2),
 * top-k with eviction and tie rules, NaN scores, save_last, every_n_epochs,
 * every_n_train_steps, version suffixes, construction errors, missing
 * monitor, no half-written files, resume restoring best_k_models. */
#include "cb_harness.h"

#include <blixt/checkpoint.h>

static char g_root[256];

static void fmt_is(const char *tmpl, bool auto_insert, const char *const *names, const double *vals, int n,
                   const char *want) {
    char out[512];
    bx_status s = bx_model_checkpoint_format_name(tmpl, auto_insert, names, vals, n, out, sizeof out);
    CHECK_OK(s);
    if (s == BX_OK && strcmp(out, want) != 0) fprintf(stderr, "template '%s': got '%s' want '%s'\n", tmpl, out, want);
    CHECK(s == BX_OK && strcmp(out, want) == 0);
}

static void test_format(void) {
    const char *es[] = {"epoch", "step"};
    const double ev[] = {3, 2};
    fmt_is("", true, es, ev, 2, "epoch=3-step=2");
    fmt_is(NULL, true, es, ev, 2, "epoch=3-step=2");
    fmt_is("ckpt", true, NULL, NULL, 0, "ckpt");
    const char *ea[] = {"epoch", "acc"};
    const double eav[] = {3, 0.03};
    fmt_is("{epoch:03d}-{acc}", true, ea, eav, 2, "epoch=003-acc=0.03");
    fmt_is("{epoch},{acc:.5f}", true, ea, eav, 2, "epoch=3,acc=0.03000");
    const char *vl[] = {"epoch", "val/loss", "val/acc"};
    const double vlv[] = {4, 0.03, 0.03};
    fmt_is("{epoch}_{val/loss:.5f}", true, vl, vlv, 3, "epoch=4_val/loss=0.03000");
    const double vlv3[] = {3, 0.03, 0.03};
    fmt_is("epoch={epoch:03d}-val_acc={val/acc}", false, vl, vlv3, 3, "epoch=003-val_acc=0.03");
    fmt_is("{missing:d}", true, NULL, NULL, 0, "missing=0");
    fmt_is("{missing}", true, NULL, NULL, 0, "missing=0");
    /* float32 metric, empty spec: Python's repr of the widened double */
    const char *f[] = {"val_loss"};
    double v = (double)0.1f;
    fmt_is("{val_loss}", true, f, &v, 1, "val_loss=0.10000000149011612");
    v = 0.125;
    fmt_is("{val_loss:.2f}", true, f, &v, 1, "val_loss=0.12"); /* round half even on the exact binary value */
    v = 0.1875;
    fmt_is("{val_loss:.2f}", true, f, &v, 1, "val_loss=0.19");
    v = 1e-05;
    fmt_is("{val_loss}", true, f, &v, 1, "val_loss=1e-05");
    v = 2.0;
    fmt_is("{val_loss}", true, f, &v, 1, "val_loss=2.0");
    v = 1e16;
    fmt_is("{val_loss}", true, f, &v, 1, "val_loss=1e+16");
    v = 123.456;
    fmt_is("{val_loss}", true, f, &v, 1, "val_loss=123.456");
    fmt_is("{val_loss:.3}|{val_loss:.4}", false, f, &v, 1, "1.23e+02|123.5");
    v = 2.0;
    fmt_is("{val_loss:.3}", false, f, &v, 1, "2.0");
    v = INFINITY;
    fmt_is("{val_loss:.3f}", true, f, &v, 1, "val_loss=inf");
    v = -0.5;
    fmt_is("{val_loss:+.1f}|{val_loss:>8.2f}|{val_loss:08.3f}", false, f, &v, 1, "-0.5|   -0.50|-000.500");
    v = 0.25;
    fmt_is("{val_loss:.1%}-{val_loss:.3e}-{val_loss:g}", false, f, &v, 1, "25.0%-2.500e-01-0.25");
    fmt_is("{epoch:x}-{epoch:#o}-{step:b}-{epoch:^5d}|{step:<3}|", false, es, ev, 2, "3-0o3-10-  3  |2  |");
    /* a name used twice */
    fmt_is("{epoch}-{step}-{epoch}", true, es, ev, 2, "epoch=3-step=2-epoch=3");
    /* user-logged epoch is cast to int */
    const char *ue[] = {"epoch"};
    const double uev[] = {2.7};
    fmt_is("{epoch}", true, ue, uev, 1, "epoch=2");
    /* errors */
    char out[64];
    CHECK_ERR(bx_model_checkpoint_format_name("{val_loss:d}", true, f, &v, 1, out, sizeof out), BX_ERR_INVALID,
              "Unknown format code 'd'");
    CHECK_ERR(bx_model_checkpoint_format_name("{epoch", true, es, ev, 2, out, sizeof out), BX_ERR_INVALID, "'{'");
    CHECK_ERR(bx_model_checkpoint_format_name("a}b", true, es, ev, 2, out, sizeof out), BX_ERR_INVALID, "'}'");
    /* "{{" is no escape here: the rewrite turns it into a broken field, as in Lightning */
    CHECK_ERR(bx_model_checkpoint_format_name("{{x}}", true, es, ev, 2, out, sizeof out), BX_ERR_INVALID, "{{x}}");
    /* Lightning 1.9.5 bug kept: a name that prefixes another corrupts the template (#17610) */
    CHECK_ERR(bx_model_checkpoint_format_name("{epoch}-{epoch_test}", true, es, ev, 2, out, sizeof out),
              BX_ERR_INVALID, "prefixes");
    CHECK_ERR(bx_model_checkpoint_format_name("{epoch}-{step}-{step}", true, es, ev, 2, out, 8), BX_ERR_INVALID,
              "too long");
}

static void test_construction(void) {
    bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
    bx_callback *cb = bx_model_checkpoint_new(&o);
    char key[512];
    bx_callback_state_key(cb, key, sizeof key);
    CHECK(!strcmp(key, "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
                       "'train_time_interval': None}"));
    CHECK(isnan(bx_model_checkpoint_best_model_score(cb)));
    CHECK(bx_model_checkpoint_kth_value(cb) == INFINITY);
    CHECK(!strcmp(bx_model_checkpoint_best_model_path(cb), ""));
    bx_callback_free(cb);
    o.every_n_train_steps = 3;
    o.monitor = "train_loss";
    cb = bx_model_checkpoint_new(&o);
    bx_callback_state_key(cb, key, sizeof key);
    CHECK(!strcmp(key, "ModelCheckpoint{'monitor': 'train_loss', 'mode': 'min', 'every_n_train_steps': 3, "
                       "'every_n_epochs': 0, 'train_time_interval': None}"));
    bx_callback_free(cb);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.train_time_interval_s = 90.5;
    cb = bx_model_checkpoint_new(&o);
    bx_callback_state_key(cb, key, sizeof key);
    CHECK(strstr(key, "'every_n_train_steps': 0, 'every_n_epochs': 0, "
                      "'train_time_interval': datetime.timedelta(seconds=90, microseconds=500000)}") != NULL);
    bx_callback_free(cb);
    o.train_time_interval_s = 0;
    o.mode = "maximum";
    CHECK(bx_model_checkpoint_new(&o) == NULL && strstr(bx_errmsg(), "`mode` can be min, max"));
    o.mode = "min";
    o.save_top_k = -2;
    CHECK(bx_model_checkpoint_new(&o) == NULL && strstr(bx_errmsg(), "save_top_k=-2"));
    o.save_top_k = 2;
    CHECK(bx_model_checkpoint_new(&o) == NULL && strstr(bx_errmsg(), "No quantity for top_k to track"));
    o.save_top_k = 1;
    o.every_n_epochs = 2;
    o.every_n_train_steps = 2;
    CHECK(bx_model_checkpoint_new(&o) == NULL && strstr(bx_errmsg(), "mutually exclusive"));
    o.every_n_train_steps = -1;
    o.every_n_epochs = BX_UNSET;
    CHECK(bx_model_checkpoint_new(&o) == NULL && strstr(bx_errmsg(), "every_n_train_steps=-1"));
    o.every_n_train_steps = BX_UNSET;
    o.filename = "{epoch:q}";
    CHECK(bx_model_checkpoint_new(&o) == NULL && strstr(bx_errmsg(), "filename"));
    o.filename = "{epoch}-{epoch_x}";
    CHECK(bx_model_checkpoint_new(&o) == NULL && strstr(bx_errmsg(), "filename"));
}

/* Fits with the MCs given; scripted val_loss; dir = g_root/<sub>. */
static bx_trainer *fit_mc(ch_model *m, bx_callback **cbs, int n, int64_t epochs, int ntrain, const char *ckpt,
                          bx_status *st) {
    bx_trainer_opts o = ch_opts(epochs, cbs, n, g_root);
    o.enable_checkpointing = true;
    bx_trainer *tr = NULL;
    *st = ch_fit(m, &o, ntrain, ckpt, &tr);
    return tr;
}

static void sub(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", g_root, name); }

static void test_topk(void) {
    char dir[512];
    sub(dir, sizeof dir, "topk");
    const double v[] = {0.5, 0.25, 0.375, 0.125, 0.1875, 0.3};
    ch_model m;
    ch_init(&m);
    ch_metric(&m, "val_loss", v, 6);
    bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.monitor = "val_loss";
    o.save_top_k = 2;
    o.filename = "{epoch}-{val_loss:.2f}";
    bx_callback *cb = bx_model_checkpoint_new(&o);
    bx_status s;
    bx_trainer *tr = fit_mc(&m, &cb, 1, 6, 4, NULL, &s);
    CHECK_OK(s);
    bx_callback *mc = ch_find(tr, "ModelCheckpoint", 0);
    CHECK_EQ_INT(ch_count(dir), 2);
    CHECK(ch_exists(dir, "epoch=3-val_loss=0.12.ckpt"));
    CHECK(ch_exists(dir, "epoch=4-val_loss=0.19.ckpt"));
    char p[1024];
    snprintf(p, sizeof p, "%s/epoch=3-val_loss=0.12.ckpt", dir);
    CHECK(!strcmp(bx_model_checkpoint_best_model_path(mc), p));
    CHECK(bx_model_checkpoint_best_model_score(mc) == 0.125);
    snprintf(p, sizeof p, "%s/epoch=4-val_loss=0.19.ckpt", dir);
    CHECK(!strcmp(bx_model_checkpoint_kth_best_model_path(mc), p));
    CHECK(bx_model_checkpoint_kth_value(mc) == 0.1875);
    CHECK(bx_model_checkpoint_current_score(mc) == 0.1875);
    CHECK_EQ_INT(bx_model_checkpoint_best_k_count(mc), 2);
    CHECK(bx_model_checkpoint_best_k_score(mc, 0) == 0.125 && bx_model_checkpoint_best_k_score(mc, 1) == 0.1875);
    /* the saved checkpoint holds the callback's state under its state key */
    bx_state *ck = NULL;
    snprintf(p, sizeof p, "%s/epoch=3-val_loss=0.12.ckpt", dir);
    CHECK_OK(bx_checkpoint_read(p, &ck));
    char key[512];
    bx_callback_state_key(mc, key, sizeof key);
    const bx_state *cs = ck ? bx_state_get(bx_state_get(ck, "callbacks"), key) : NULL;
    CHECK(cs != NULL);
    if (cs) {
        CHECK(bx_state_get_float(bx_state_get(cs, "best_model_score")) == 0.125);
        CHECK_EQ_INT(bx_state_len(bx_state_get(cs, "best_k_models")), 2);
        CHECK(!strcmp(bx_state_get_string(bx_state_get(cs, "dirpath")), dir));
    }
    bx_state_free(ck);
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* ties: an equal score never displaces; mode max; NaN stored as -inf */
    sub(dir, sizeof dir, "ties");
    const double t[] = {0.5, 0.5, NAN, 0.75, 0.5};
    ch_init(&m);
    ch_metric(&m, "acc", t, 5);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.monitor = "acc";
    o.mode = "max";
    o.save_top_k = 2;
    o.filename = "{epoch}";
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 5, 4, NULL, &s);
    CHECK_OK(s);
    mc = ch_find(tr, "ModelCheckpoint", 0);
    /* e0 .5, e1 .5 -> both kept (k not reached before e1); e2 NaN rejected; e3 .75 evicts the
       first-inserted worst (epoch 0); e4 .5 not better than kth .5 */
    CHECK(!ch_exists(dir, "epoch=0.ckpt") && ch_exists(dir, "epoch=1.ckpt") && ch_exists(dir, "epoch=3.ckpt"));
    CHECK_EQ_INT(ch_count(dir), 2);
    CHECK(bx_model_checkpoint_best_model_score(mc) == 0.75);
    CHECK(bx_model_checkpoint_kth_value(mc) == 0.5);
    CHECK(bx_model_checkpoint_current_score(mc) == 0.75);
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* NaN accepted while fewer than k are tracked: stored as +inf in min mode */
    sub(dir, sizeof dir, "nan");
    const double nn[] = {NAN};
    ch_init(&m);
    ch_metric(&m, "val_loss", nn, 1);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.monitor = "val_loss";
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 1, 4, NULL, &s);
    mc = ch_find(tr, "ModelCheckpoint", 0);
    CHECK(bx_model_checkpoint_best_model_score(mc) == INFINITY);
    CHECK(bx_model_checkpoint_current_score(mc) == INFINITY);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
}

static void test_last_and_triggers(void) {
    char dir[512];
    const double v[] = {0.5};
    ch_model m;
    bx_status s;
    /* monitor None + top_k -1 + save_last over 2 epochs x 4 batches */
    sub(dir, sizeof dir, "last");
    ch_init(&m);
    ch_metric(&m, "val_loss", v, 1);
    bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.save_top_k = -1;
    o.save_last = 1;
    bx_callback *cb = bx_model_checkpoint_new(&o);
    bx_trainer *tr = fit_mc(&m, &cb, 1, 2, 8, NULL, &s);
    CHECK_OK(s);
    CHECK_EQ_INT(ch_count(dir), 3);
    CHECK(ch_exists(dir, "epoch=0-step=4.ckpt") && ch_exists(dir, "epoch=1-step=8.ckpt") && ch_exists(dir, "last.ckpt"));
    bx_callback *mc = ch_find(tr, "ModelCheckpoint", 0);
    char p[1024];
    snprintf(p, sizeof p, "%s/last.ckpt", dir);
    CHECK(!strcmp(bx_model_checkpoint_last_model_path(mc), p));
    /* last.ckpt is a full checkpoint of the same step */
    bx_state *ck = NULL;
    CHECK_OK(bx_checkpoint_read(p, &ck));
    CHECK(ck && bx_state_get_int(bx_state_get(ck, "global_step")) == 8);
    CHECK(ck && bx_state_get(ck, "state_dict") != NULL);
    bx_state_free(ck);
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* top_k 0 + save_last: only last.ckpt */
    sub(dir, sizeof dir, "top0");
    ch_init(&m);
    ch_metric(&m, "val_loss", v, 1);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.monitor = "val_loss";
    o.save_top_k = 0;
    o.save_last = 1;
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 3, 4, NULL, &s);
    CHECK_OK(s);
    CHECK_EQ_INT(ch_count(dir), 1);
    CHECK(ch_exists(dir, "last.ckpt"));
    CHECK(isnan(bx_model_checkpoint_current_score(ch_find(tr, "ModelCheckpoint", 0))));
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* every_n_epochs=2 over 5 epochs, top_k -1, filename {epoch} */
    sub(dir, sizeof dir, "every_epochs");
    ch_init(&m);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.save_top_k = -1;
    o.every_n_epochs = 2;
    o.filename = "{epoch}";
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 5, 4, NULL, &s);
    CHECK_OK(s);
    CHECK_EQ_INT(ch_count(dir), 2);
    CHECK(ch_exists(dir, "epoch=1.ckpt") && ch_exists(dir, "epoch=3.ckpt"));
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* every_n_train_steps=3, 4 batches x 3 epochs: steps 3, 6, 9, 12 */
    sub(dir, sizeof dir, "every_steps");
    ch_init(&m);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.save_top_k = -1;
    o.every_n_train_steps = 3;
    o.filename = "{step}";
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 3, 8, NULL, &s);
    CHECK_OK(s);
    CHECK_EQ_INT(ch_count(dir), 4);
    CHECK(ch_exists(dir, "step=3.ckpt") && ch_exists(dir, "step=6.ckpt") && ch_exists(dir, "step=9.ckpt") &&
          ch_exists(dir, "step=12.ckpt"));
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* train_time_interval: a tiny interval saves at every batch end (once per step) */
    sub(dir, sizeof dir, "every_time");
    ch_init(&m);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.save_top_k = -1;
    o.train_time_interval_s = 1e-9;
    o.filename = "{step}";
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 1, 8, NULL, &s);
    CHECK_OK(s);
    CHECK_EQ_INT(ch_count(dir), 4);
    CHECK(ch_exists(dir, "step=1.ckpt") && ch_exists(dir, "step=4.ckpt"));
    bx_trainer_free(tr);
    bx_module_free(m.lin);
}

static void test_versions_and_errors(void) {
    char dir[512];
    const double v[] = {0.5, 0.25, 0.375, 0.125};
    ch_model m;
    bx_status s;
    sub(dir, sizeof dir, "clash");
    ch_init(&m);
    ch_metric(&m, "val_loss", v, 4);
    bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.monitor = "val_loss";
    o.save_top_k = -1;
    o.filename = "fixed";
    bx_callback *cb = bx_model_checkpoint_new(&o);
    bx_trainer *tr = fit_mc(&m, &cb, 1, 4, 4, NULL, &s);
    CHECK_OK(s);
    CHECK_EQ_INT(ch_count(dir), 4);
    CHECK(ch_exists(dir, "fixed.ckpt") && ch_exists(dir, "fixed-v1.ckpt") && ch_exists(dir, "fixed-v2.ckpt") &&
          ch_exists(dir, "fixed-v3.ckpt"));
    bx_callback *mc = ch_find(tr, "ModelCheckpoint", 0);
    char p[1024];
    snprintf(p, sizeof p, "%s/fixed-v3.ckpt", dir);
    CHECK(!strcmp(bx_model_checkpoint_best_model_path(mc), p));
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* a second run into the same directory gets -v1 names */
    sub(dir, sizeof dir, "rerun");
    for (int run = 0; run < 2; run++) {
        ch_init(&m);
        o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
        o.dirpath = dir;
        o.save_top_k = -1;
        o.filename = "{epoch}";
        cb = bx_model_checkpoint_new(&o);
        tr = fit_mc(&m, &cb, 1, 2, 4, NULL, &s);
        CHECK_OK(s);
        bx_trainer_free(tr);
        bx_module_free(m.lin);
    }
    CHECK_EQ_INT(ch_count(dir), 4);
    CHECK(ch_exists(dir, "epoch=0-v1.ckpt") && ch_exists(dir, "epoch=1-v1.ckpt"));

    /* missing monitor once validation ran: the run fails naming the key and the candidates */
    sub(dir, sizeof dir, "missing");
    ch_init(&m);
    ch_metric(&m, "val_loss", v, 4);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.monitor = "nope";
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 2, 4, NULL, &s);
    CHECK_EQ_INT(s, BX_ERR_NOT_FOUND);
    CHECK(strstr(bx_errmsg(), "ModelCheckpoint(monitor='nope')") != NULL);
    CHECK(strstr(bx_errmsg(), "['val_loss', 'epoch', 'step']") != NULL);
    CHECK_EQ_INT(ch_count(dir), 0);
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* a directory that cannot be created: the run fails, nothing half-written is left */
    char blocker[512];
    sub(blocker, sizeof blocker, "blocker");
    FILE *f = fopen(blocker, "w");
    if (f) fclose(f);
    snprintf(dir, sizeof dir, "%s/blocker/sub", g_root);
    ch_init(&m);
    o = (bx_model_checkpoint_opts)BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 1, 4, NULL, &s);
    CHECK_EQ_INT(s, BX_ERR_IO);
    CHECK(strstr(bx_errmsg(), "blocker") != NULL);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    unlink(blocker);
}

/* Every entry of dir ends in ".ckpt" or is a directory (no temp files left). */
static bool only_ckpts(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *e;
    bool ok = true;
    while (d && (e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (e->d_name[0] == '.') {
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) ok = false;
            continue;
        }
        if (n < 5 || strcmp(e->d_name + n - 5, ".ckpt")) ok = false;
    }
    if (d) closedir(d);
    return ok;
}

static void test_resume(void) {
    char dir[512];
    sub(dir, sizeof dir, "resume");
    ch_model m;
    bx_status s;
    const double v1[] = {0.5, 0.25, 0.375};
    ch_init(&m);
    ch_metric(&m, "val_loss", v1, 3);
    bx_model_checkpoint_opts o = BX_MODEL_CHECKPOINT_OPTS_INIT;
    o.dirpath = dir;
    o.monitor = "val_loss";
    o.save_top_k = 2;
    o.save_last = 1;
    o.filename = "{epoch}";
    bx_callback *cb = bx_model_checkpoint_new(&o);
    bx_trainer *tr = fit_mc(&m, &cb, 1, 3, 4, NULL, &s);
    CHECK_OK(s);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    CHECK(ch_exists(dir, "epoch=1.ckpt") && ch_exists(dir, "epoch=2.ckpt") && !ch_exists(dir, "epoch=0.ckpt"));
    CHECK(only_ckpts(dir));

    /* phase 2 resumes from last.ckpt: the top-k dict comes back, so a better
       score evicts (and deletes) the old worst file */
    const double v2[] = {0.125, 0.3};
    ch_init(&m);
    ch_metric(&m, "val_loss", v2, 2);
    cb = bx_model_checkpoint_new(&o);
    char last[1024];
    snprintf(last, sizeof last, "%s/last.ckpt", dir);
    tr = fit_mc(&m, &cb, 1, 5, 4, last, &s);
    CHECK_OK(s);
    bx_callback *mc = ch_find(tr, "ModelCheckpoint", 0);
    CHECK_EQ_INT(bx_model_checkpoint_best_k_count(mc), 2);
    CHECK(ch_exists(dir, "epoch=1.ckpt") && ch_exists(dir, "epoch=3.ckpt") && !ch_exists(dir, "epoch=2.ckpt"));
    CHECK(!ch_exists(dir, "epoch=4.ckpt"));
    CHECK(bx_model_checkpoint_best_model_score(mc) == 0.125);
    CHECK(bx_model_checkpoint_kth_value(mc) == 0.25);
    CHECK(only_ckpts(dir));
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* ckpt_path "last" finds it through the ModelCheckpoint's dirpath */
    ch_init(&m);
    ch_metric(&m, "val_loss", v2, 2);
    cb = bx_model_checkpoint_new(&o);
    tr = fit_mc(&m, &cb, 1, 6, 4, "last", &s);
    CHECK_OK(s);
    CHECK(strstr(bx_trainer_ckpt_path(tr), "last.ckpt") != NULL);
    CHECK_EQ_INT(bx_trainer_current_epoch(tr), 6);
    bx_trainer_free(tr);
    bx_module_free(m.lin);

    /* another dirpath: only best_model_path is restored */
    char dir2[512];
    sub(dir2, sizeof dir2, "resume2");
    ch_init(&m);
    ch_metric(&m, "val_loss", v2, 2);
    o.dirpath = dir2;
    cb = bx_model_checkpoint_new(&o);
    bx_trainer_opts to = ch_opts(6, &cb, 1, g_root);
    to.enable_checkpointing = true;
    tr = bx_trainer_new(&to);
    mc = ch_find(tr, "ModelCheckpoint", 0);
    bx_callback_get_ops(mc)->setup(bx_callback_self(mc), tr, BX_STAGE_FIT);
    bx_state *ck = NULL;
    CHECK_OK(bx_checkpoint_read(last, &ck));
    char key[512];
    bx_callback_state_key(mc, key, sizeof key);
    const bx_state *st = ck ? bx_state_get(bx_state_get(ck, "callbacks"), key) : NULL;
    CHECK(st != NULL);
    if (st) CHECK_OK(bx_callback_get_ops(mc)->load_state_dict(bx_callback_self(mc), tr, st));
    CHECK_EQ_INT(bx_model_checkpoint_best_k_count(mc), 0);
    CHECK(strstr(bx_model_checkpoint_best_model_path(mc), "resume/") != NULL);
    CHECK(isnan(bx_model_checkpoint_best_model_score(mc)));
    bx_state_free(ck);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
}

/* Default dirpath: <default_root_dir>/checkpoints without a logger. */
static void test_default_dir(void) {
    ch_model m;
    ch_init(&m);
    bx_trainer_opts to = ch_opts(2, NULL, 0, g_root);
    to.enable_checkpointing = true;
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &to, 4, NULL, &tr));
    bx_callback *mc = ch_find(tr, "ModelCheckpoint", 0);
    char dir[512];
    sub(dir, sizeof dir, "checkpoints");
    CHECK(!strcmp(bx_model_checkpoint_dirpath(mc), dir));
    CHECK_EQ_INT(ch_count(dir), 1);
    CHECK(ch_exists(dir, "epoch=1-step=4.ckpt"));
    CHECK(bx_model_checkpoint_save_on_train_epoch_end(mc, tr));
    bx_trainer_free(tr);
    bx_module_free(m.lin);
}

int main(void) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    snprintf(g_root, sizeof g_root, "/tmp/blixt_test_mc_XXXXXX");
    if (!mkdtemp(g_root)) {
        perror("mkdtemp");
        return 1;
    }
    test_format();
    test_construction();
    test_topk();
    test_last_and_triggers();
    test_versions_and_errors();
    test_resume();
    test_default_dir();
    ch_rmtree(g_root);
    return tu_finish("test_model_checkpoint");
}
