/* ProgressBarBase counters + get_metrics, and the drawing ProgressBar: the
 * spec's update-rule pins ((train, val, refresh) -> main / val bar deltas,
 * read back from the terminal output), plain non-terminal output, the
 * sanity-check bar, refresh_rate 0. */
#include "cb_util.h"

#include <stdio.h>

/* ---- deltas read from tty output ---------------------------------------------------- */
typedef struct deltas {
    int64_t v[32];
    int n;
} deltas;

/* The successive "n/total" values drawn for bar `desc` (first opening only),
 * as positive deltas. */
static void bar_deltas(const char *text, const char *desc, deltas *d) {
    memset(d, 0, sizeof *d);
    size_t dl = strlen(desc);
    int64_t last = 0;
    int opened = 0;
    for (const char *p = text; *p; p++) {
        if (p != text && p[-1] != '\r' && p[-1] != '\n') continue;
        if (strncmp(p, desc, dl) || p[dl] != ':') continue;
        const char *bar = strstr(p, "| ");
        if (!bar) continue;
        long long n = 0, t = 0;
        if (sscanf(bar + 2, "%lld/%lld", &n, &t) != 2) continue;
        if (n == 0) {
            if (opened++) break; /* a second run of this bar */
            last = 0;
            continue;
        }
        if (n > last && d->n < 32) d->v[d->n++] = n - last;
        if (n < last) break;
        last = n;
    }
}

static char *run_bar(int train, int val, int refresh, int tty, int sanity, int epochs) {
    FILE *f = tmpfile();
    bx_progress_bar_opts po = BX_PROGRESS_BAR_OPTS_INIT;
    po.refresh_rate = refresh;
    po.stream = f;
    po.tty = tty;
    po.mininterval = 0; /* every update drawn: the pins read the deltas */
    cu_model m;
    cu_model_init(&m);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = epochs;
    o.num_sanity_val_steps = sanity;
    o.enable_progress_bar = true;
    cu_logger *lg = calloc(1, sizeof *lg);
    bx_callback *cbs[1] = {bx_progress_bar_new_ex(&po)};
    CHECK_OK(cu_fit(&m, &o, cbs, 1, lg, 2 * train, 2 * val, NULL));
    long len = ftell(f);
    char *buf = calloc(1, (size_t)len + 1);
    rewind(f);
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = '\0';
    fclose(f);
    free(lg);
    bx_module_free(m.lin);
    return buf;
}

static bool same(const deltas *d, const int64_t *v, int n) {
    if (d->n != n) return false;
    for (int i = 0; i < n; i++)
        if (d->v[i] != v[i]) return false;
    return true;
}

static void print_deltas(const char *what, const deltas *d) {
    fprintf(stderr, "  %s:", what);
    for (int i = 0; i < d->n; i++) fprintf(stderr, " %lld", (long long)d->v[i]);
    fprintf(stderr, "\n");
}

static void test_update_rule_pins(void) {
    struct {
        int train, val, refresh;
        int64_t main[8];
        int nmain;
        int64_t valv[8];
        int nval;
    } pins[] = {
        {2, 3, 1, {1, 1, 1, 1, 1}, 5, {1, 1, 1}, 3},
        {1, 0, 3, {1}, 1, {0}, 0},
        {1, 1, 3, {2}, 1, {1}, 1},
        {5, 0, 3, {3, 2}, 2, {0}, 0},
        {5, 2, 3, {3, 3, 1}, 3, {2}, 1},
        {5, 2, 6, {6, 1}, 2, {2}, 1},
    };
    for (size_t i = 0; i < sizeof pins / sizeof pins[0]; i++) {
        char *out = run_bar(pins[i].train, pins[i].val, pins[i].refresh, 1, 0, 1);
        deltas dm, dv;
        bar_deltas(out, "Epoch 0", &dm);
        bar_deltas(out, "Validation", &dv);
        bool ok = same(&dm, pins[i].main, pins[i].nmain) && same(&dv, pins[i].valv, pins[i].nval);
        if (!ok) {
            fprintf(stderr, "pin (%d,%d,%d):\n", pins[i].train, pins[i].val, pins[i].refresh);
            print_deltas("main", &dm);
            print_deltas("val", &dv);
        }
        CHECK(ok);
        /* never overshoots: no "n/total" with n > total */
        for (const char *p = out; (p = strstr(p, "| ")) != NULL; p += 2) {
            long long n, t;
            if (sscanf(p + 2, "%lld/%lld", &n, &t) == 2) CHECK(n <= t);
        }
        free(out);
    }
    /* the helper itself */
    CHECK_EQ_INT(bx_progress_bar_increment(0, 7, 3, 3), 3);
    CHECK_EQ_INT(bx_progress_bar_increment(3, 7, 5, 3), 0);
    CHECK_EQ_INT(bx_progress_bar_increment(6, 7, 6, 3), 1);
    CHECK_EQ_INT(bx_progress_bar_increment(5, 5, 6, 3), 0);
    CHECK_EQ_INT(bx_progress_bar_increment(0, INFINITY, 4, 2), 2);
    CHECK_EQ_INT(bx_progress_bar_increment(0, 5, 5, 0), 0);
}

static void test_tty_and_plain(void) {
    char *out = run_bar(3, 2, 1, 1, 2, 2);
    CHECK(strstr(out, "\rValidation sanity check:") != NULL);
    CHECK(strstr(out, "\rEpoch 0:") != NULL);
    CHECK(strstr(out, "\rEpoch 1:") != NULL);
    CHECK(strstr(out, "v_num=7") != NULL);
    CHECK(strstr(out, "loss=") != NULL);
    CHECK(strstr(out, "it/s") != NULL);
    free(out);

    out = run_bar(3, 2, 1, 0, 2, 2);
    CHECK(strchr(out, '\r') == NULL);
    CHECK(strchr(out, '\x1b') == NULL);
    int lines = 0, epoch_lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    for (char *p = out; (p = strstr(p, "Epoch ")) != NULL; p++) epoch_lines++;
    CHECK_EQ_INT(epoch_lines, 2);              /* one line per epoch end */
    CHECK_EQ_INT(lines, 5);                    /* + sanity + 2 validation runs */
    CHECK(strstr(out, "Epoch 0: 100%|##########| 5/5 [") != NULL);
    CHECK(strstr(out, "Validation: 100%") != NULL);
    CHECK(strstr(out, "v_num=7") != NULL);
    free(out);

    out = run_bar(3, 2, 0, 1, 2, 1); /* refresh_rate 0: nothing drawn */
    CHECK_EQ_INT(strlen(out), 0);
    free(out);
    bx_progress_bar_opts po = BX_PROGRESS_BAR_OPTS_INIT;
    po.refresh_rate = -1;
    CHECK(bx_progress_bar_new_ex(&po) == NULL);
    CHECK(strstr(bx_errmsg(), "refresh_rate") != NULL);
}

/* ---- a user bar on the base API: counters and get_metrics ----------------------------- */
typedef struct ubar {
    int nrec;
    bool ok_start, ok_batch, ok_val, ok_end;
    char loss_at_start[16], loss_at_end[16];
    int64_t vnum;
    double acc;
} ubar;

static bx_status u_tes(void *self, bx_trainer *tr) {
    ubar *u = self;
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    if (bx_trainer_current_epoch(tr) == 0) {
        u->ok_start = c.train_batch_idx == 0 && c.total_train_batches == 4 && c.total_val_batches == 2 &&
                      c.total_batches_current_epoch == 8; /* val_check_interval 0.5: 2 validation runs */
        bx_state *m = bx_progress_bar_get_metrics(tr);
        snprintf(u->loss_at_start, sizeof u->loss_at_start, "%s", bx_state_get_string(bx_state_get(m, "loss")));
        bx_state_free(m);
    }
    return BX_OK;
}
static bx_status u_tbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)o;
    (void)b;
    ubar *u = self;
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    if (i == 2) u->ok_batch = c.train_batch_idx == 3 && c.val_batch_idx == 2;
    return BX_OK;
}
static bx_status u_vbe(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i, int d) {
    (void)o;
    (void)b;
    (void)d;
    ubar *u = self;
    bx_progress_counters c;
    bx_progress_bar_counters(tr, &c);
    if (bx_trainer_sanity_checking(tr) && i == 0)
        u->ok_val = c.val_batch_idx == 1 && isinf(c.total_train_batches) && c.total_val_batches_current_dataloader == 2;
    return BX_OK;
}
static bx_status u_tee(void *self, bx_trainer *tr) {
    ubar *u = self;
    bx_state *m = bx_progress_bar_get_metrics(tr);
    snprintf(u->loss_at_end, sizeof u->loss_at_end, "%s", bx_state_get_string(bx_state_get(m, "loss")));
    u->vnum = bx_state_get_int(bx_state_get(m, "v_num"));
    bx_state *acc = bx_state_get(m, "acc");
    u->acc = acc ? bx_state_get_float(acc) : -1;
    u->ok_end = bx_state_len(m) == 3 && !strcmp(bx_state_key_at(m, 0), "loss") && !strcmp(bx_state_key_at(m, 1), "v_num");
    bx_state_free(m);
    return BX_OK;
}

static void test_base_api(void) {
    ubar u;
    memset(&u, 0, sizeof u);
    bx_callback_ops ops = {.name = "MyProgressBar", .on_train_epoch_start = u_tes, .on_train_batch_end = u_tbe,
                           .on_validation_batch_end = u_vbe, .on_train_epoch_end = u_tee};
    cu_model m;
    cu_model_init(&m);
    m.log_prog_bar = true;
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.val_check_interval.value = 0.5;
    o.enable_progress_bar = true;
    cu_logger *lg = calloc(1, sizeof *lg);
    bx_callback *cbs[1] = {bx_callback_new(&ops, &u)};
    bx_trainer *tr = NULL;
    CHECK_OK(cu_fit(&m, &o, cbs, 1, lg, 8, 4, &tr));
    CHECK(u.ok_start);
    CHECK(u.ok_batch);
    CHECK(u.ok_val);
    CHECK(u.ok_end);
    CHECK(!strcmp(u.loss_at_start, "nan"));
    char expect[16];
    snprintf(expect, sizeof expect, "%.3g", bx_trainer_running_loss(tr));
    CHECK(!strcmp(u.loss_at_end, expect));
    CHECK_EQ_INT(u.vnum, 7);
    CHECK_NEAR(u.acc, 1.0, 1e-12); /* last batch: 0.25 * 4 */
    /* no default bar was added next to the user's (its name contains ProgressBar) */
    CHECK_EQ_INT(bx_trainer_num_callbacks(tr), 1);
    bx_trainer_free(tr);
    free(lg);
    bx_module_free(m.lin);
}

/* test (5 batches, refresh 3) -> [3, 2] */
static void test_testing_bar(void) {
    FILE *f = tmpfile();
    bx_progress_bar_opts po = BX_PROGRESS_BAR_OPTS_INIT;
    po.refresh_rate = 3;
    po.stream = f;
    po.tty = 1;
    cu_model m;
    cu_model_init(&m);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.enable_progress_bar = true;
    o.enable_checkpointing = false;
    o.logger_default = false;
    bx_callback *cb = bx_progress_bar_new_ex(&po);
    o.callbacks = &cb;
    o.num_callbacks = 1;
    bx_trainer *tr = bx_trainer_new(&o);
    bx_dataset *d = cu_dataset(10);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *l = bx_loader_new(d, &lo);
    bx_model model = {&CU_OPS, &m};
    CHECK_OK(bx_trainer_test(tr, &model, l, NULL));
    long len = ftell(f);
    char *buf = calloc(1, (size_t)len + 1);
    rewind(f);
    size_t got = fread(buf, 1, (size_t)len, f);
    buf[got] = '\0';
    deltas dt;
    bar_deltas(buf, "Testing", &dt);
    int64_t expect[2] = {3, 2};
    if (!same(&dt, expect, 2)) print_deltas("test", &dt);
    CHECK(same(&dt, expect, 2));
    free(buf);
    fclose(f);
    bx_trainer_free(tr);
    bx_loader_free(l);
    bx_dataset_free(d);
    bx_module_free(m.lin);
}

/* ---- v_num: the first logger's version, an int as an int, text as text ---------------- */
static const char *text_version(void *self) { return self; }
static const bx_logger_ops TEXT_LOGGER_OPS = {.name = "TextVersionLogger", .version = text_version};

/* get_metrics' v_num with loggers of these versions (NULL ends). */
static bx_state *metrics_with_versions(const char *v0, const char *v1) {
    bx_logger *lgs[2] = {bx_logger_new(&TEXT_LOGGER_OPS, (void *)v0), v1 ? bx_logger_new(&TEXT_LOGGER_OPS, (void *)v1) : NULL};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.enable_checkpointing = false;
    o.enable_progress_bar = false;
    o.loggers = lgs;
    o.num_loggers = v1 ? 2 : 1;
    bx_trainer *tr = bx_trainer_new(&o);
    bx_state *m = tr ? bx_progress_bar_get_metrics(tr) : NULL;
    bx_trainer_free(tr);
    return m;
}

static void test_v_num(void) {
    static const struct {
        const char *v0, *v1;
        bool is_int;
        int64_t k;
        const char *text;
    } cases[] = {
        {"0", "0", true, 0, NULL},                /* CSV + TensorBoard sharing version 0 (the CLI) */
        {"3", "5", true, 3, NULL},                /* the first logger's */
        {"version_3", NULL, true, 3, NULL},       /* the folder name of an int version */
        {"12", "version_12", true, 12, NULL},
        {"myrun", "0", false, 0, "yrun"},         /* text: its last 4 characters */
        {"abc", NULL, false, 0, "abc"},
        {"version_3b", NULL, false, 0, "n_3b"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bx_state *m = metrics_with_versions(cases[i].v0, cases[i].v1);
        const bx_state *v = m ? bx_state_get(m, "v_num") : NULL;
        bool ok = v && (cases[i].is_int ? bx_state_typeof(v) == BX_STATE_INT && bx_state_get_int(v) == cases[i].k
                                        : bx_state_typeof(v) == BX_STATE_STRING &&
                                              !strcmp(bx_state_get_string(v), cases[i].text));
        if (!ok) fprintf(stderr, "v_num for versions %s/%s wrong\n", cases[i].v0, cases[i].v1 ? cases[i].v1 : "-");
        CHECK(ok);
        bx_state_free(m);
    }

    /* drawn: v_num=0 (not 0.000) with two loggers; a text version as it is; loss as its text */
    for (int k = 0; k < 2; k++) {
        FILE *f = tmpfile();
        bx_progress_bar_opts po = BX_PROGRESS_BAR_OPTS_INIT;
        po.stream = f;
        po.tty = 0;
        cu_model m;
        cu_model_init(&m);
        bx_logger *lgs[2] = {bx_logger_new(&TEXT_LOGGER_OPS, k ? "run_ab" : "0"), bx_logger_new(&TEXT_LOGGER_OPS, "0")};
        bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
        o.max_epochs = 1;
        o.enable_checkpointing = false;
        o.enable_model_summary = false;
        o.loggers = lgs;
        o.num_loggers = 2;
        bx_callback *cb = bx_progress_bar_new_ex(&po);
        o.callbacks = &cb;
        o.num_callbacks = 1;
        bx_trainer *tr = bx_trainer_new(&o);
        bx_dataset *d = cu_dataset(4);
        bx_loader_opts lo = BX_LOADER_OPTS_INIT;
        lo.batch_size = 2;
        bx_loader *l = bx_loader_new(d, &lo);
        bx_model model = {&CU_OPS, &m};
        CHECK_OK(bx_trainer_fit(tr, &model, l, NULL, NULL));
        char loss[32];
        snprintf(loss, sizeof loss, "loss=%.3g,", bx_trainer_running_loss(tr));
        long len = ftell(f);
        char *buf = calloc(1, (size_t)len + 1);
        rewind(f);
        CHECK(fread(buf, 1, (size_t)len, f) == (size_t)len);
        fclose(f);
        CHECK(strstr(buf, k ? "v_num=n_ab" : "v_num=0") != NULL);
        CHECK(strstr(buf, "v_num=0.000") == NULL);
        CHECK(strstr(buf, loss) != NULL);
        if (!strstr(buf, loss)) fprintf(stderr, "wanted '%s' in: %s\n", loss, buf);
        free(buf);
        bx_trainer_free(tr);
        bx_loader_free(l);
        bx_dataset_free(d);
        bx_module_free(m.lin);
    }
}

int main(void) {
    test_v_num();
    test_update_rule_pins();
    test_testing_bar();
    test_tty_and_plain();
    test_base_api();
    return tu_finish("test_progress_bar");
}
