/* EarlyStopping tests: spec/callbacks.md §1 test vectors (values per
 * validation epoch -> the epoch training stops at), two instances in either
 * order and at either hook, state round trip, strict / non-strict missing
 * metric, min_delta, mode max, construction errors. */
#include "cb_harness.h"

#define INF_ INFINITY

/* Runs EarlyStopping(val_loss, opts) over `vals` (one per epoch); returns stopped_epoch, -1 when it did not stop. */
static int64_t run_es(const double *vals, int n, bx_early_stopping_opts eo, int64_t *current_epoch, int64_t *wait) {
    ch_model m;
    ch_init(&m);
    ch_metric(&m, "val_loss", vals, n);
    eo.monitor = "val_loss";
    bx_callback *cb = bx_early_stopping_new(&eo);
    CHECK(cb != NULL);
    bx_trainer_opts o = ch_opts(n, &cb, 1, NULL);
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &o, 4, NULL, &tr));
    bx_callback *es = ch_find(tr, "EarlyStopping", 0);
    int64_t r = bx_trainer_should_stop(tr) ? bx_early_stopping_stopped_epoch(es) : -1;
    if (current_epoch) *current_epoch = bx_trainer_current_epoch(tr);
    if (wait) *wait = bx_early_stopping_wait_count(es);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    return r;
}

static void test_vectors(void) {
    bx_early_stopping_opts d = BX_EARLY_STOPPING_OPTS_INIT;
    struct {
        double v[10];
        int n;
        int64_t patience;
        double stop_thr, div_thr;
        int64_t expect;
    } rows[] = {
        {{6, 5, 5, 5, 5, 5}, 6, 3, NAN, NAN, 4},
        {{6, 5, 4, 4, 3, 3}, 6, 1, NAN, NAN, 3},
        {{6, 5, 6, 5, 5, 5}, 6, 3, NAN, NAN, 4},
        {{8, 4, 2, 3, 4, 5, 8, 10}, 8, 3, NAN, NAN, 5},
        {{9, 8, 7, 6, 5, 6, 4, 3, 2, 1}, 10, 3, 2.9, NAN, 8},
        {{9, 4, 2, 16, 32, 64}, 6, 3, NAN, 15.9, 3},
        {{4, 3, INF_, 2, 1}, 5, 3, NAN, NAN, 2},
        {{4, 3, NAN, 2, 1}, 5, 3, NAN, NAN, 2},
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        bx_early_stopping_opts eo = d;
        eo.patience = rows[i].patience;
        eo.stopping_threshold = rows[i].stop_thr;
        eo.divergence_threshold = rows[i].div_thr;
        int64_t cur = -1;
        int64_t got = run_es(rows[i].v, rows[i].n, eo, &cur, NULL);
        if (got != rows[i].expect) fprintf(stderr, "row %zu\n", i);
        CHECK_EQ_INT(got, rows[i].expect);
        /* Lightning 1.9.5: the epoch counter moves on once the stopped epoch completes */
        CHECK_EQ_INT(cur, rows[i].expect + 1);
    }
    /* check_finite=false: inf is just a non-improvement */
    bx_early_stopping_opts eo = d;
    eo.check_finite = false;
    const double v[] = {4, 3, INF_, 2, 1};
    CHECK_EQ_INT(run_es(v, 5, eo, NULL, NULL), -1);
}

static void test_min_delta_and_max(void) {
    bx_early_stopping_opts eo = BX_EARLY_STOPPING_OPTS_INIT;
    eo.min_delta = 0.1;
    eo.patience = 2;
    const double v[] = {1.0, 0.95, 0.8, 0.75, 0.74, 0.1};
    int64_t wait;
    CHECK_EQ_INT(run_es(v, 6, eo, NULL, &wait), 4);
    CHECK_EQ_INT(wait, 2);
    /* mode max: improvements must exceed best + min_delta */
    eo.mode = "max";
    const double w[] = {0.1, 0.15, 0.3, 0.35, 0.36, 0.9};
    CHECK_EQ_INT(run_es(w, 6, eo, NULL, NULL), 4);
    /* a negative min_delta loosens the test (Lightning does not normalise the sign) */
    eo.mode = "min";
    eo.min_delta = -0.5;
    eo.patience = 1;
    const double x[] = {1.0, 1.2, 1.4, 3.0};
    CHECK_EQ_INT(run_es(x, 4, eo, NULL, NULL), 3);
}

/* Two instances: 'abc' (8,4,2,3,4,5,8,10) and 'cba' (0 every epoch): cba stops at epoch 3. */
static void test_two_instances(void) {
    const double abc[] = {8, 4, 2, 3, 4, 5, 8, 10}, cba[] = {0};
    for (int order = 0; order < 2; order++)
        for (int at_train_end = 0; at_train_end < 2; at_train_end++) {
            ch_model m;
            ch_init(&m);
            ch_metric(&m, "abc", abc, 8);
            ch_metric(&m, "cba", cba, 1);
            bx_early_stopping_opts a = BX_EARLY_STOPPING_OPTS_INIT, b = BX_EARLY_STOPPING_OPTS_INIT;
            a.monitor = "abc";
            b.monitor = "cba";
            a.check_on_train_epoch_end = b.check_on_train_epoch_end = at_train_end;
            bx_callback *cbs[2];
            cbs[order] = bx_early_stopping_new(&a);
            cbs[1 - order] = bx_early_stopping_new(&b);
            bx_trainer_opts o = ch_opts(8, cbs, 2, NULL);
            bx_trainer *tr = NULL;
            CHECK_OK(ch_fit(&m, &o, 4, NULL, &tr));
            CHECK_EQ_INT(bx_trainer_current_epoch(tr), 4);
            bx_callback *e0 = ch_find(tr, "EarlyStopping", 0), *e1 = ch_find(tr, "EarlyStopping", 1);
            bx_callback *ecba = !strcmp(bx_early_stopping_monitor(e0), "cba") ? e0 : e1;
            bx_callback *eabc = ecba == e0 ? e1 : e0;
            CHECK_EQ_INT(bx_early_stopping_stopped_epoch(ecba), 3);
            CHECK_EQ_INT(bx_early_stopping_wait_count(ecba), 3);
            CHECK_EQ_INT(bx_early_stopping_stopped_epoch(eabc), 0);
            CHECK_EQ_INT(bx_early_stopping_check_on_train_epoch_end(eabc), at_train_end);
            char key[256];
            bx_callback_state_key(ecba, key, sizeof key);
            CHECK(!strcmp(key, "EarlyStopping{'monitor': 'cba', 'mode': 'min'}"));
            bx_trainer_free(tr);
            bx_module_free(m.lin);
        }
}

static void test_state_round_trip(void) {
    const double v[] = {0.5, 0.25, 0.375, 0.4};
    ch_model m;
    ch_init(&m);
    ch_metric(&m, "val_loss", v, 4);
    bx_early_stopping_opts eo = BX_EARLY_STOPPING_OPTS_INIT;
    eo.monitor = "val_loss";
    eo.patience = 5;
    bx_callback *cb = bx_early_stopping_new(&eo);
    bx_trainer_opts o = ch_opts(4, &cb, 1, NULL);
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &o, 4, NULL, &tr));
    bx_callback *es = ch_find(tr, "EarlyStopping", 0);
    CHECK_EQ_INT(bx_early_stopping_wait_count(es), 2);
    CHECK_NEAR(bx_early_stopping_best_score(es), 0.25, 0);
    bx_state *st = bx_state_dict();
    CHECK_OK(bx_callback_get_ops(es)->state_dict(bx_callback_self(es), tr, st));
    CHECK_EQ_INT(bx_state_len(st), 4);
    CHECK(!strcmp(bx_state_key_at(st, 0), "wait_count") && !strcmp(bx_state_key_at(st, 3), "patience"));
    /* a fresh instance with another patience takes all four from the state */
    eo.patience = 1;
    bx_callback *fresh = bx_early_stopping_new(&eo);
    CHECK_OK(bx_callback_get_ops(fresh)->load_state_dict(bx_callback_self(fresh), tr, st));
    CHECK_EQ_INT(bx_early_stopping_wait_count(fresh), 2);
    CHECK_EQ_INT(bx_early_stopping_patience(fresh), 5);
    CHECK_NEAR(bx_early_stopping_best_score(fresh), 0.25, 0);
    CHECK_EQ_INT(bx_early_stopping_stopped_epoch(fresh), 0);
    /* a broken state is an error naming the callback */
    bx_state *bad = bx_state_dict();
    bx_state_set_int(bad, "wait_count", 1);
    CHECK_ERR(bx_callback_get_ops(fresh)->load_state_dict(bx_callback_self(fresh), tr, bad), BX_ERR_NOT_FOUND,
              "EarlyStopping");
    bx_state_free(bad);
    bx_state_free(st);
    bx_callback_free(fresh);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
}

static void test_missing_metric(void) {
    const double v[] = {0.5};
    for (int strict = 1; strict >= 0; strict--) {
        ch_model m;
        ch_init(&m);
        ch_metric(&m, "val_loss", v, 1);
        bx_early_stopping_opts eo = BX_EARLY_STOPPING_OPTS_INIT;
        eo.monitor = "not_logged";
        eo.strict = strict;
        bx_callback *cb = bx_early_stopping_new(&eo);
        bx_trainer_opts o = ch_opts(3, &cb, 1, NULL);
        bx_trainer *tr = NULL;
        bx_status s = ch_fit(&m, &o, 4, NULL, &tr);
        if (strict) {
            CHECK_EQ_INT(s, BX_ERR_NOT_FOUND);
            CHECK(strstr(bx_errmsg(), "`not_logged`") != NULL);
            CHECK(strstr(bx_errmsg(), "`val_loss`") != NULL);
            CHECK(strstr(bx_errmsg(), "fit") != NULL);
            CHECK_EQ_INT(bx_trainer_current_epoch(tr), 0);
        } else {
            CHECK_OK(s);
            CHECK_EQ_INT(bx_trainer_current_epoch(tr), 3);
            CHECK_EQ_INT(bx_early_stopping_wait_count(ch_find(tr, "EarlyStopping", 0)), 0);
        }
        bx_trainer_free(tr);
        bx_module_free(m.lin);
    }
}

/* check_on_train_epoch_end=None resolves at setup: true by default, false with
 * val_check_interval 0.5 (then every validation counts toward patience). */
static void test_resolution(void) {
    const double v[] = {0.5, 0.25, 0.375, 0.375, 0.375};
    ch_model m;
    ch_init(&m);
    ch_metric(&m, "val_loss", v, 5);
    bx_early_stopping_opts eo = BX_EARLY_STOPPING_OPTS_INIT;
    eo.monitor = "val_loss";
    eo.patience = 2;
    bx_callback *cb = bx_early_stopping_new(&eo);
    CHECK_EQ_INT(bx_early_stopping_check_on_train_epoch_end(cb), -1);
    bx_trainer_opts o = ch_opts(6, &cb, 1, NULL);
    o.val_check_interval = (bx_limit){0.5, false};
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &o, 8, NULL, &tr));
    bx_callback *es = ch_find(tr, "EarlyStopping", 0);
    CHECK_EQ_INT(bx_early_stopping_check_on_train_epoch_end(es), 0);
    CHECK_EQ_INT(bx_early_stopping_stopped_epoch(es), 1);
    CHECK_EQ_INT(m.val_runs, 4);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
}

static void test_construction(void) {
    bx_early_stopping_opts eo = BX_EARLY_STOPPING_OPTS_INIT;
    CHECK(bx_early_stopping_new(&eo) == NULL);
    CHECK(strstr(bx_errmsg(), "monitor") != NULL);
    eo.monitor = "val_loss";
    eo.mode = "maximum";
    CHECK(bx_early_stopping_new(&eo) == NULL);
    CHECK(strstr(bx_errmsg(), "`mode` can be min, max, got maximum") != NULL);
    eo.mode = "max";
    bx_callback *cb = bx_early_stopping_new(&eo);
    CHECK(cb != NULL);
    CHECK(bx_early_stopping_best_score(cb) == -INF_);
    char key[256];
    bx_callback_state_key(cb, key, sizeof key);
    CHECK(!strcmp(key, "EarlyStopping{'monitor': 'val_loss', 'mode': 'max'}"));
    bx_callback_free(cb);
    /* accessors on another callback type return neutral values */
    CHECK(isnan(bx_early_stopping_best_score(NULL)));
}

int main(void) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    test_vectors();
    test_min_delta_and_max();
    test_two_instances();
    test_state_round_trip();
    test_missing_metric();
    test_resolution();
    test_construction();
    return tu_finish("test_early_stopping");
}
