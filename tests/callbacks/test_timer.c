/* Timer tests: duration parsing and construction errors, stopping at the
 * first batch ("step") or epoch end ("epoch"), the checkpoint state and a
 * resumed run that is already out of time, Trainer.max_time adding a Timer
 * (and lifting the 1000-epoch default). */
#include "cb_harness.h"

#include <math.h>

static void test_parse(void) {
    double s = -1;
    CHECK_OK(bx_parse_duration("00:01:02:03", &s));
    CHECK(s == 3723.0);
    CHECK_OK(bx_parse_duration(" 2:00:00:05 ", &s));
    CHECK(s == 2 * 86400.0 + 5);
    CHECK_ERR(bx_parse_duration("01:02", &s), BX_ERR_INVALID, "'01:02'");
    CHECK_ERR(bx_parse_duration("a:b:c:d", &s), BX_ERR_INVALID, "DD:HH:MM:SS");
    CHECK_ERR(bx_parse_duration("0:0:0:1:2", &s), BX_ERR_INVALID, "DD:HH:MM:SS");
    bx_timer_opts o = BX_TIMER_OPTS_INIT;
    o.interval = "hour";
    CHECK(bx_timer_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "step, epoch") != NULL);
    o = (bx_timer_opts)BX_TIMER_OPTS_INIT;
    o.duration = "1:2:3";
    CHECK(bx_timer_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "Timer") && strstr(bx_errmsg(), "1:2:3"));
    o = (bx_timer_opts)BX_TIMER_OPTS_INIT;
    o.duration = "00:12:00:00";
    bx_callback *t = bx_timer_new(&o);
    CHECK(t && bx_timer_duration(t) == 12 * 3600.0);
    CHECK(bx_timer_time_elapsed(t, BX_STAGE_FIT) == 0.0); /* not started */
    CHECK(bx_timer_time_remaining(t, BX_STAGE_FIT) == 12 * 3600.0);
    bx_callback_free(t);
}

/* A fit of 3 epochs x 3 batches under a Timer; returns the global step. */
static int64_t run_timer(bx_timer_opts to, const char *ckpt_save, const char *ckpt_load, double *train_s) {
    ch_model m;
    ch_init(&m);
    bx_callback *cb = bx_timer_new(&to);
    CHECK(cb != NULL);
    bx_trainer_opts o = ch_opts(3, &cb, 1, NULL);
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &o, 6, ckpt_load, &tr));
    int64_t steps = bx_trainer_global_step(tr);
    bx_callback *t = ch_find(tr, "Timer", 0);
    CHECK(t != NULL);
    if (train_s) *train_s = bx_timer_time_elapsed(t, BX_STAGE_FIT);
    CHECK(bx_timer_time_elapsed(t, BX_STAGE_VALIDATE) >= 0);
    if (ckpt_save) CHECK_OK(bx_trainer_save_checkpoint(tr, ckpt_save, false));
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    return steps;
}

static void test_stopping(void) {
    bx_timer_opts to = BX_TIMER_OPTS_INIT;
    to.verbose = false;
    double s;
    CHECK_EQ_INT(run_timer(to, NULL, NULL, &s), 9); /* no duration: measures only */
    CHECK(s > 0 && s < 60);
    to.duration_s = 1e-9; /* out of time at the first check */
    CHECK_EQ_INT(run_timer(to, NULL, NULL, NULL), 1);
    to.interval = "epoch";
    CHECK_EQ_INT(run_timer(to, NULL, NULL, NULL), 3);
}

static void test_state_and_resume(void) {
    char path[128];
    snprintf(path, sizeof path, "/tmp/blixt_test_timer_%d.ckpt", (int)getpid());
    bx_timer_opts to = BX_TIMER_OPTS_INIT;
    to.verbose = false;
    double s;
    CHECK_EQ_INT(run_timer(to, path, NULL, &s), 9);
    bx_state *ck = NULL;
    CHECK_OK(bx_checkpoint_read(path, &ck));
    const bx_state *te = bx_state_get(bx_state_get(bx_state_get(ck, "callbacks"), "Timer"), "time_elapsed");
    CHECK(te && bx_state_len(te) == 6);
    if (te) {
        const char *keys[] = {"train", "sanity_check", "validate", "test", "predict", "tune"};
        for (int i = 0; i < 6; i++) CHECK(strcmp(bx_state_key_at(te, (size_t)i), keys[i]) == 0);
        CHECK(fabs(bx_state_get_float(bx_state_get(te, "train")) - s) < 1e-6);
    }
    bx_state_free(ck);
    /* resumed with a limit below the saved training time: stops before any new step */
    to.duration_s = s / 2;
    ch_model m;
    ch_init(&m);
    bx_callback *cb = bx_timer_new(&to);
    bx_trainer_opts o = ch_opts(6, &cb, 1, NULL);
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &o, 6, path, &tr));
    CHECK_EQ_INT(bx_trainer_global_step(tr), 9);
    CHECK(bx_trainer_should_stop(tr));
    CHECK(bx_timer_time_elapsed(ch_find(tr, "Timer", 0), BX_STAGE_FIT) >= s);
    bx_trainer_free(tr);
    bx_module_free(m.lin);
    unlink(path);
}

static void test_trainer_max_time(void) {
    ch_model m;
    ch_init(&m);
    bx_trainer_opts o = ch_opts(BX_UNSET, NULL, 0, NULL);
    o.max_time = "00:00:00:00"; /* out of time at fit start: no step at all */
    bx_trainer *tr = NULL;
    CHECK_OK(ch_fit(&m, &o, 6, NULL, &tr));
    CHECK(ch_find(tr, "Timer", 0) != NULL);
    CHECK_EQ_INT(bx_trainer_global_step(tr), 0);
    CHECK_EQ_INT(bx_trainer_max_epochs(tr), -1); /* a time limit lifts the 1000-epoch default */
    bx_trainer_free(tr);
    o = ch_opts(BX_UNSET, NULL, 0, NULL);
    o.max_time = "12 hours";
    CHECK(bx_trainer_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "max_time") && strstr(bx_errmsg(), "DD:HH:MM:SS"));
    bx_module_free(m.lin);
}

int main(void) {
    test_parse();
    test_stopping();
    test_state_and_resume();
    test_trainer_max_time();
    return tu_finish("callbacks/timer");
}
