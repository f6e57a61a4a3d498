/* lambda.c - LambdaCallback (spec/callbacks.md §5): a callback whose hooks
 * are user functions plus a user pointer. Every hook of callback.h is
 * forwarded (trampolines generated from the bx_callback_ops table); a NULL
 * hook is a no-op. Written against the public callback API only. */

#include <blixt/callbacks.h>

#include <string.h>

typedef struct lam {
    bx_callback_ops h;   /* the user's table (copied) */
    bx_callback_ops ops; /* the registered table: trampolines for the user's hooks only,
                          * so e.g. a LambdaCallback without state_dict is stateless */
    void *ud;
} lam;

static bx_status l_setup(void *self, bx_trainer *tr, bx_stage stage) {
    lam *l = self;
    return l->h.setup ? l->h.setup(l->ud, tr, stage) : BX_OK;
}

static bx_status l_teardown(void *self, bx_trainer *tr, bx_stage stage) {
    lam *l = self;
    return l->h.teardown ? l->h.teardown(l->ud, tr, stage) : BX_OK;
}

static bx_status l_on_fit_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_fit_start ? l->h.on_fit_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_fit_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_fit_end ? l->h.on_fit_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_sanity_check_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_sanity_check_start ? l->h.on_sanity_check_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_sanity_check_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_sanity_check_end ? l->h.on_sanity_check_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_train_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_train_start ? l->h.on_train_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_train_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_train_end ? l->h.on_train_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_train_epoch_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_train_epoch_start ? l->h.on_train_epoch_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_train_epoch_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_train_epoch_end ? l->h.on_train_epoch_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_train_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx) {
    lam *l = self;
    return l->h.on_train_batch_start ? l->h.on_train_batch_start(l->ud, tr, b, batch_idx) : BX_OK;
}

static bx_status l_on_train_batch_end(void *self, bx_trainer *tr, const bx_step_output *out, const bx_batch *b, int64_t batch_idx) {
    lam *l = self;
    return l->h.on_train_batch_end ? l->h.on_train_batch_end(l->ud, tr, out, b, batch_idx) : BX_OK;
}

static bx_status l_on_validation_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_validation_start ? l->h.on_validation_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_validation_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_validation_end ? l->h.on_validation_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_validation_epoch_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_validation_epoch_start ? l->h.on_validation_epoch_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_validation_epoch_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_validation_epoch_end ? l->h.on_validation_epoch_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_validation_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx, int dataloader_idx) {
    lam *l = self;
    return l->h.on_validation_batch_start ? l->h.on_validation_batch_start(l->ud, tr, b, batch_idx, dataloader_idx) : BX_OK;
}

static bx_status l_on_validation_batch_end(void *self, bx_trainer *tr, const bx_step_output *out, const bx_batch *b, int64_t batch_idx, int dataloader_idx) {
    lam *l = self;
    return l->h.on_validation_batch_end ? l->h.on_validation_batch_end(l->ud, tr, out, b, batch_idx, dataloader_idx) : BX_OK;
}

static bx_status l_on_test_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_test_start ? l->h.on_test_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_test_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_test_end ? l->h.on_test_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_test_epoch_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_test_epoch_start ? l->h.on_test_epoch_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_test_epoch_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_test_epoch_end ? l->h.on_test_epoch_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_test_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx, int dataloader_idx) {
    lam *l = self;
    return l->h.on_test_batch_start ? l->h.on_test_batch_start(l->ud, tr, b, batch_idx, dataloader_idx) : BX_OK;
}

static bx_status l_on_test_batch_end(void *self, bx_trainer *tr, const bx_step_output *out, const bx_batch *b, int64_t batch_idx, int dataloader_idx) {
    lam *l = self;
    return l->h.on_test_batch_end ? l->h.on_test_batch_end(l->ud, tr, out, b, batch_idx, dataloader_idx) : BX_OK;
}

static bx_status l_on_predict_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_predict_start ? l->h.on_predict_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_predict_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_predict_end ? l->h.on_predict_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_predict_epoch_start(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_predict_epoch_start ? l->h.on_predict_epoch_start(l->ud, tr) : BX_OK;
}

static bx_status l_on_predict_epoch_end(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_predict_epoch_end ? l->h.on_predict_epoch_end(l->ud, tr) : BX_OK;
}

static bx_status l_on_predict_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx, int dataloader_idx) {
    lam *l = self;
    return l->h.on_predict_batch_start ? l->h.on_predict_batch_start(l->ud, tr, b, batch_idx, dataloader_idx) : BX_OK;
}

static bx_status l_on_predict_batch_end(void *self, bx_trainer *tr, const bx_step_output *out, const bx_batch *b, int64_t batch_idx, int dataloader_idx) {
    lam *l = self;
    return l->h.on_predict_batch_end ? l->h.on_predict_batch_end(l->ud, tr, out, b, batch_idx, dataloader_idx) : BX_OK;
}

static bx_status l_on_exception(void *self, bx_trainer *tr, bx_status s, const char *msg) {
    lam *l = self;
    return l->h.on_exception ? l->h.on_exception(l->ud, tr, s, msg) : BX_OK;
}

static bx_status l_on_before_backward(void *self, bx_trainer *tr, bx_tensor *loss) {
    lam *l = self;
    return l->h.on_before_backward ? l->h.on_before_backward(l->ud, tr, loss) : BX_OK;
}

static bx_status l_on_after_backward(void *self, bx_trainer *tr) {
    lam *l = self;
    return l->h.on_after_backward ? l->h.on_after_backward(l->ud, tr) : BX_OK;
}

static bx_status l_on_before_optimizer_step(void *self, bx_trainer *tr, bx_optimizer *opt, int opt_idx) {
    lam *l = self;
    return l->h.on_before_optimizer_step ? l->h.on_before_optimizer_step(l->ud, tr, opt, opt_idx) : BX_OK;
}

static bx_status l_on_before_zero_grad(void *self, bx_trainer *tr, bx_optimizer *opt) {
    lam *l = self;
    return l->h.on_before_zero_grad ? l->h.on_before_zero_grad(l->ud, tr, opt) : BX_OK;
}

static bx_status l_state_dict(void *self, bx_trainer *tr, bx_state *out) {
    lam *l = self;
    return l->h.state_dict ? l->h.state_dict(l->ud, tr, out) : BX_OK;
}

static bx_status l_load_state_dict(void *self, bx_trainer *tr, const bx_state *state) {
    lam *l = self;
    return l->h.load_state_dict ? l->h.load_state_dict(l->ud, tr, state) : BX_OK;
}

static bx_status l_on_save_checkpoint(void *self, bx_trainer *tr, bx_state *ckpt) {
    lam *l = self;
    return l->h.on_save_checkpoint ? l->h.on_save_checkpoint(l->ud, tr, ckpt) : BX_OK;
}

static bx_status l_on_load_checkpoint(void *self, bx_trainer *tr, const bx_state *ckpt) {
    lam *l = self;
    return l->h.on_load_checkpoint ? l->h.on_load_checkpoint(l->ud, tr, ckpt) : BX_OK;
}

static void l_destroy(void *self) {
    lam *l = self;
    if (l->h.destroy) l->h.destroy(l->ud);
    bx_free(l);
}

static const bx_callback_ops LAMBDA_OPS = {
    .name = "LambdaCallback",
    .setup = l_setup,
    .teardown = l_teardown,
    .on_fit_start = l_on_fit_start,
    .on_fit_end = l_on_fit_end,
    .on_sanity_check_start = l_on_sanity_check_start,
    .on_sanity_check_end = l_on_sanity_check_end,
    .on_train_start = l_on_train_start,
    .on_train_end = l_on_train_end,
    .on_train_epoch_start = l_on_train_epoch_start,
    .on_train_epoch_end = l_on_train_epoch_end,
    .on_train_batch_start = l_on_train_batch_start,
    .on_train_batch_end = l_on_train_batch_end,
    .on_validation_start = l_on_validation_start,
    .on_validation_end = l_on_validation_end,
    .on_validation_epoch_start = l_on_validation_epoch_start,
    .on_validation_epoch_end = l_on_validation_epoch_end,
    .on_validation_batch_start = l_on_validation_batch_start,
    .on_validation_batch_end = l_on_validation_batch_end,
    .on_test_start = l_on_test_start,
    .on_test_end = l_on_test_end,
    .on_test_epoch_start = l_on_test_epoch_start,
    .on_test_epoch_end = l_on_test_epoch_end,
    .on_test_batch_start = l_on_test_batch_start,
    .on_test_batch_end = l_on_test_batch_end,
    .on_predict_start = l_on_predict_start,
    .on_predict_end = l_on_predict_end,
    .on_predict_epoch_start = l_on_predict_epoch_start,
    .on_predict_epoch_end = l_on_predict_epoch_end,
    .on_predict_batch_start = l_on_predict_batch_start,
    .on_predict_batch_end = l_on_predict_batch_end,
    .on_exception = l_on_exception,
    .on_before_backward = l_on_before_backward,
    .on_after_backward = l_on_after_backward,
    .on_before_optimizer_step = l_on_before_optimizer_step,
    .on_before_zero_grad = l_on_before_zero_grad,
    .state_dict = l_state_dict,
    .load_state_dict = l_load_state_dict,
    .on_save_checkpoint = l_on_save_checkpoint,
    .on_load_checkpoint = l_on_load_checkpoint,
    .destroy = l_destroy,
};

bx_callback *bx_lambda_callback_new(const bx_callback_ops *hooks, void *ud) {
    lam *l = bx_calloc(sizeof *l);
    if (!l) {
        if (hooks && hooks->destroy) hooks->destroy(ud);
        return NULL;
    }
    if (hooks) l->h = *hooks;
    l->ud = ud;
    l->ops = LAMBDA_OPS;
    if (!l->h.setup) l->ops.setup = NULL;
    if (!l->h.teardown) l->ops.teardown = NULL;
    if (!l->h.on_fit_start) l->ops.on_fit_start = NULL;
    if (!l->h.on_fit_end) l->ops.on_fit_end = NULL;
    if (!l->h.on_sanity_check_start) l->ops.on_sanity_check_start = NULL;
    if (!l->h.on_sanity_check_end) l->ops.on_sanity_check_end = NULL;
    if (!l->h.on_train_start) l->ops.on_train_start = NULL;
    if (!l->h.on_train_end) l->ops.on_train_end = NULL;
    if (!l->h.on_train_epoch_start) l->ops.on_train_epoch_start = NULL;
    if (!l->h.on_train_epoch_end) l->ops.on_train_epoch_end = NULL;
    if (!l->h.on_train_batch_start) l->ops.on_train_batch_start = NULL;
    if (!l->h.on_train_batch_end) l->ops.on_train_batch_end = NULL;
    if (!l->h.on_validation_start) l->ops.on_validation_start = NULL;
    if (!l->h.on_validation_end) l->ops.on_validation_end = NULL;
    if (!l->h.on_validation_epoch_start) l->ops.on_validation_epoch_start = NULL;
    if (!l->h.on_validation_epoch_end) l->ops.on_validation_epoch_end = NULL;
    if (!l->h.on_validation_batch_start) l->ops.on_validation_batch_start = NULL;
    if (!l->h.on_validation_batch_end) l->ops.on_validation_batch_end = NULL;
    if (!l->h.on_test_start) l->ops.on_test_start = NULL;
    if (!l->h.on_test_end) l->ops.on_test_end = NULL;
    if (!l->h.on_test_epoch_start) l->ops.on_test_epoch_start = NULL;
    if (!l->h.on_test_epoch_end) l->ops.on_test_epoch_end = NULL;
    if (!l->h.on_test_batch_start) l->ops.on_test_batch_start = NULL;
    if (!l->h.on_test_batch_end) l->ops.on_test_batch_end = NULL;
    if (!l->h.on_predict_start) l->ops.on_predict_start = NULL;
    if (!l->h.on_predict_end) l->ops.on_predict_end = NULL;
    if (!l->h.on_predict_epoch_start) l->ops.on_predict_epoch_start = NULL;
    if (!l->h.on_predict_epoch_end) l->ops.on_predict_epoch_end = NULL;
    if (!l->h.on_predict_batch_start) l->ops.on_predict_batch_start = NULL;
    if (!l->h.on_predict_batch_end) l->ops.on_predict_batch_end = NULL;
    if (!l->h.on_exception) l->ops.on_exception = NULL;
    if (!l->h.on_before_backward) l->ops.on_before_backward = NULL;
    if (!l->h.on_after_backward) l->ops.on_after_backward = NULL;
    if (!l->h.on_before_optimizer_step) l->ops.on_before_optimizer_step = NULL;
    if (!l->h.on_before_zero_grad) l->ops.on_before_zero_grad = NULL;
    if (!l->h.state_dict) l->ops.state_dict = NULL;
    if (!l->h.load_state_dict) l->ops.load_state_dict = NULL;
    if (!l->h.on_save_checkpoint) l->ops.on_save_checkpoint = NULL;
    if (!l->h.on_load_checkpoint) l->ops.on_load_checkpoint = NULL;
    return bx_callback_new(&l->ops, l);
}
