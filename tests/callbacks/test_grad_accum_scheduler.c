/* GradientAccumulationScheduler: validation, {0: 1} added, factor lookup,
 * the Trainer's accumulate_grad_batches set at each epoch start (optimizer
 * steps per epoch follow it), the conflict with a Trainer value. */
#include "cb_util.h"

typedef struct steps {
    int per_epoch[8];
    int64_t acc_at_start[8];
} steps;

static bx_status s_bos(void *self, bx_trainer *tr, bx_optimizer *o, int k) {
    (void)o;
    (void)k;
    steps *s = self;
    int64_t e = bx_trainer_current_epoch(tr);
    if (e < 8) s->per_epoch[e]++;
    return BX_OK;
}
static bx_status s_tes(void *self, bx_trainer *tr) {
    steps *s = self;
    int64_t e = bx_trainer_current_epoch(tr);
    if (e < 8) s->acc_at_start[e] = bx_trainer_accumulate_grad_batches(tr);
    return BX_OK;
}

static void test_validation(void) {
    int64_t e[3] = {0, 2, 5}, f[3] = {1, 4, 2};
    CHECK(bx_grad_accum_scheduler_new(e, f, 0) == NULL);
    CHECK(strstr(bx_errmsg(), "empty") != NULL);
    int64_t bad_e[1] = {-1}, one[1] = {1};
    CHECK(bx_grad_accum_scheduler_new(bad_e, one, 1) == NULL);
    CHECK(strstr(bx_errmsg(), "-1") != NULL);
    int64_t zero[1] = {0}, e2[1] = {2};
    CHECK(bx_grad_accum_scheduler_new(e2, zero, 1) == NULL);
    CHECK(strstr(bx_errmsg(), "factor") != NULL);
    int64_t dup[2] = {1, 1}, ff[2] = {2, 3};
    CHECK(bx_grad_accum_scheduler_new(dup, ff, 2) == NULL);

    bx_callback *cb = bx_grad_accum_scheduler_new(e, f, 3);
    CHECK(cb != NULL);
    CHECK(!strcmp(bx_callback_name(cb), "GradientAccumulationScheduler"));
    int64_t expect[7] = {1, 1, 4, 4, 4, 2, 2};
    for (int i = 0; i < 7; i++) CHECK_EQ_INT(bx_grad_accum_scheduler_get(cb, i), expect[i]);
    CHECK(bx_grad_accum_scheduler_accumulates(cb));
    bx_callback_free(cb);
    /* unsorted input, no epoch 0: {0: 1} added (Lightning mutates the dict) */
    int64_t e3[2] = {5, 2}, f3[2] = {3, 2};
    cb = bx_grad_accum_scheduler_new(e3, f3, 2);
    CHECK_EQ_INT(bx_grad_accum_scheduler_get(cb, 0), 1);
    CHECK_EQ_INT(bx_grad_accum_scheduler_get(cb, 1), 1);
    CHECK_EQ_INT(bx_grad_accum_scheduler_get(cb, 2), 2);
    CHECK_EQ_INT(bx_grad_accum_scheduler_get(cb, 4), 2);
    CHECK_EQ_INT(bx_grad_accum_scheduler_get(cb, 9), 3);
    bx_callback_free(cb);
    int64_t e4[1] = {0}, f4[1] = {1};
    cb = bx_grad_accum_scheduler_new(e4, f4, 1);
    CHECK(!bx_grad_accum_scheduler_accumulates(cb));
    bx_callback_free(cb);
}

static void test_run(void) {
    /* {0: 1, 2: 4} over 4 epochs of 4 batches: 4 optimizer steps in epochs 0-1, 1 in 2-3 */
    int64_t e[2] = {0, 2}, f[2] = {1, 4};
    steps st;
    memset(&st, 0, sizeof st);
    bx_callback_ops rec = {.name = "Steps", .on_before_optimizer_step = s_bos, .on_train_epoch_start = s_tes};
    cu_model m;
    cu_model_init(&m);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 4;
    o.enable_progress_bar = false;
    bx_callback *cbs[2] = {bx_grad_accum_scheduler_new(e, f, 2), bx_callback_new(&rec, &st)};
    bx_trainer *tr = NULL;
    CHECK_OK(cu_fit(&m, &o, cbs, 2, NULL, 8, 2, &tr));
    int expect[4] = {4, 4, 1, 1};
    int64_t acc[4] = {1, 1, 4, 4};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(st.per_epoch[i], expect[i]);
        CHECK_EQ_INT(st.acc_at_start[i], acc[i]);
    }
    CHECK_EQ_INT(bx_trainer_global_step(tr), 10);
    CHECK_EQ_INT(bx_trainer_accumulate_grad_batches(tr), 4);
    bx_trainer_free(tr);

    /* Trainer(accumulate_grad_batches=2) next to the callback: error */
    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.max_epochs = 1;
    o2.accumulate_grad_batches = 2;
    o2.enable_progress_bar = false;
    bx_callback *cbs2[1] = {bx_grad_accum_scheduler_new(e, f, 2)};
    CHECK_ERR(cu_fit(&m, &o2, cbs2, 1, NULL, 8, 2, NULL), BX_ERR_INVALID, "GradientAccumulationScheduler");
    bx_module_free(m.lin);
}

int main(void) {
    test_validation();
    test_run();
    return tu_finish("test_grad_accum_scheduler");
}
