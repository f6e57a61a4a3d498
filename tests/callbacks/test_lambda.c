/* LambdaCallback: every hook is forwarded with the user pointer, NULL hooks
 * are skipped, state_dict / destroy reach the user, the class name. */
#include "cb_util.h"

typedef struct calls {
    char log[2048];
    int destroyed;
} calls;

static void add(calls *c, const char *s) {
    strncat(c->log, s, sizeof c->log - strlen(c->log) - 2);
    strcat(c->log, " ");
}

static bx_status l_fit_start(void *ud, bx_trainer *tr) {
    (void)tr;
    add(ud, "fit_start");
    return BX_OK;
}
static bx_status l_setup(void *ud, bx_trainer *tr, bx_stage s) {
    (void)tr;
    add(ud, s == BX_STAGE_FIT ? "setup(fit)" : "setup(?)");
    return BX_OK;
}
static bx_status l_tes(void *ud, bx_trainer *tr) {
    char b[32];
    snprintf(b, sizeof b, "epoch_start%lld", (long long)bx_trainer_current_epoch(tr));
    add(ud, b);
    return BX_OK;
}
static bx_status l_tbe(void *ud, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)tr;
    (void)b;
    char s[48];
    snprintf(s, sizeof s, "batch_end%lld(%s)", (long long)i, isnan(o->loss) ? "nan" : "loss");
    add(ud, s);
    return BX_OK;
}
static bx_status l_ve(void *ud, bx_trainer *tr) {
    add(ud, bx_trainer_sanity_checking(tr) ? "val_end(sanity)" : "val_end");
    return BX_OK;
}
static bx_status l_fit_end(void *ud, bx_trainer *tr) {
    (void)tr;
    add(ud, "fit_end");
    return BX_OK;
}
static bx_status l_bos(void *ud, bx_trainer *tr, bx_optimizer *o, int k) {
    (void)tr;
    add(ud, o && k == 0 ? "opt_step" : "opt_step?");
    return BX_OK;
}
static bx_status l_fail(void *ud, bx_trainer *tr) {
    (void)ud;
    (void)tr;
    return BX_ERR_INVALID;
}
static bx_status l_exc(void *ud, bx_trainer *tr, bx_status s, const char *msg) {
    (void)tr;
    (void)msg;
    add(ud, s == BX_ERR_INVALID ? "exception" : "exception?");
    return BX_OK;
}
static bx_status l_sd(void *ud, bx_trainer *tr, bx_state *out) {
    (void)tr;
    add(ud, "state_dict");
    return bx_state_set_int(out, "k", 1);
}
static void l_destroy(void *ud) { ((calls *)ud)->destroyed++; }

int main(void) {
    calls c;
    memset(&c, 0, sizeof c);
    bx_callback_ops h = {.name = "ignored", .setup = l_setup, .on_fit_start = l_fit_start,
                         .on_train_epoch_start = l_tes, .on_train_batch_end = l_tbe, .on_validation_end = l_ve,
                         .on_fit_end = l_fit_end, .on_before_optimizer_step = l_bos, .destroy = l_destroy};
    bx_callback *cb = bx_lambda_callback_new(&h, &c);
    CHECK(cb != NULL);
    CHECK(!strcmp(bx_callback_name(cb), "LambdaCallback"));
    h.on_fit_start = NULL; /* the table was copied */
    cu_model m;
    cu_model_init(&m);
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 2;
    o.enable_progress_bar = false;
    o.num_sanity_val_steps = 1;
    bx_callback *cbs[1] = {cb};
    CHECK_OK(cu_fit(&m, &o, cbs, 1, NULL, 4, 2, NULL));
    const char *expect = "setup(fit) fit_start val_end(sanity) epoch_start0 opt_step batch_end0(loss) opt_step "
                         "batch_end1(loss) val_end epoch_start1 opt_step batch_end0(loss) opt_step batch_end1(loss) "
                         "val_end fit_end ";
    if (strcmp(c.log, expect)) fprintf(stderr, "got:    %s\nexpect: %s\n", c.log, expect);
    CHECK(!strcmp(c.log, expect));
    CHECK_EQ_INT(c.destroyed, 1); /* the Trainer freed the callback -> destroy(ud) */

    /* a failing hook stops the run; on_exception reaches the user */
    calls c2;
    memset(&c2, 0, sizeof c2);
    bx_callback_ops h2 = {.on_train_start = l_fail, .on_exception = l_exc};
    bx_trainer_opts o2 = BX_TRAINER_OPTS_INIT;
    o2.max_epochs = 1;
    o2.enable_progress_bar = false;
    bx_callback *cbs2[1] = {bx_lambda_callback_new(&h2, &c2)};
    CHECK(cu_fit(&m, &o2, cbs2, 1, NULL, 4, 2, NULL) == BX_ERR_INVALID);
    CHECK(strstr(c2.log, "exception") != NULL);

    /* state_dict forwarded */
    calls c3;
    memset(&c3, 0, sizeof c3);
    bx_callback_ops h3 = {.state_dict = l_sd};
    bx_callback *cb3 = bx_lambda_callback_new(&h3, &c3);
    bx_state *sd = bx_state_dict();
    CHECK_OK(bx_callback_get_ops(cb3)->state_dict(bx_callback_self(cb3), NULL, sd));
    CHECK(bx_state_get(sd, "k") != NULL);
    CHECK(strstr(c3.log, "state_dict") != NULL);
    bx_state_free(sd);
    bx_callback_free(cb3);
    /* empty table: no hooks registered (NULL = no-op), stateless */
    bx_callback *e = bx_lambda_callback_new(NULL, NULL);
    CHECK(bx_callback_get_ops(e)->on_fit_start == NULL);
    CHECK(bx_callback_get_ops(e)->state_dict == NULL);
    CHECK(bx_callback_get_ops(e)->destroy != NULL);
    bx_callback_free(e);
    /* two LambdaCallbacks in one Trainer (no state -> no state-key clash) */
    calls c4;
    memset(&c4, 0, sizeof c4);
    bx_trainer_opts o4 = BX_TRAINER_OPTS_INIT;
    o4.max_epochs = 1;
    o4.enable_progress_bar = false;
    o4.num_sanity_val_steps = 0;
    bx_callback_ops h4 = {.on_fit_start = l_fit_start};
    bx_callback *cbs4[2] = {bx_lambda_callback_new(&h4, &c4), bx_lambda_callback_new(&h4, &c4)};
    CHECK_OK(cu_fit(&m, &o4, cbs4, 2, NULL, 4, 2, NULL));
    CHECK(!strcmp(c4.log, "fit_start fit_start "));
    bx_module_free(m.lin);
    return tu_finish("test_lambda");
}
