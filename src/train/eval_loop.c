/* eval_loop.c - one evaluation run (Lightning 1.9.5's EvaluationLoop):
 *   on_validation_model_eval, zero_grad, on_validation_start,
 *   on_validation_epoch_start, per batch (on_validation_batch_start,
 *   validation_step under no-grad, on_validation_batch_end, step metrics),
 *   on_validation_epoch_end, epoch metrics to loggers (not in the sanity
 *   check), on_validation_end, results reset, on_validation_model_train.
 * The same for test with the test hooks. */
#include "train/train_int.h"

#include <math.h>

#define EVAL_HOOK(tr, test, vhook, thook, ...)                 \
    do {                                                       \
        if (test)                                              \
            BX__CALL_HOOK(tr, thook, __VA_ARGS__);             \
        else                                                   \
            BX__CALL_HOOK(tr, vhook, __VA_ARGS__);             \
    } while (0)

bx_status bx__eval_run(bx_trainer *tr, bx_loader *ld, int64_t max_batches, bool test) {
    if (max_batches <= 0 || !ld) return BX_OK;
    const bx_model *m = tr->model;
    bool prev_mode = bx_module_is_training(tr->module);
    if (m->ops->on_validation_model_eval)
        BX__CALL_MODEL_OP(tr, on_validation_model_eval, tr);
    else
        bx_module_train(tr->module, false);
    bx_module_zero_grad(tr->module);
    tr->eval_processed = 0;
    EVAL_HOOK(tr, test, on_validation_start, on_test_start, tr);
    tr->epoch_end_reached = false;
    EVAL_HOOK(tr, test, on_validation_epoch_start, on_test_epoch_start, tr);
    int64_t len = bx_loader_len(ld);
    for (int64_t i = 0; i < max_batches && i < len; i++) {
        bx_batch b;
        bx_step_reset(tr->step);
        tr->batch_idx = i;
        tr->epoch_end_reached = false;
        bx_status s = bx_loader_batch(ld, tr->step, i, &b);
        if (s != BX_OK) return bx__hook_error(tr, "loader", test ? "test batch" : "validation batch", s);
        tr->cur_batch_size = (double)b.size;
        EVAL_HOOK(tr, test, on_validation_batch_start, on_test_batch_start, tr, &b, i, 0);
        tr->step_loss = NULL;
        tr->step_output = NULL;
        bx_step_set_training(tr->step, false);
        bx_no_grad_push(tr->step);
        tr->cur_fx = test ? "test_step" : "validation_step";
        s = test ? m->ops->test_step(m->self, tr->step, &b, i) : m->ops->validation_step(m->self, tr->step, &b, i);
        tr->cur_fx = NULL;
        bx_no_grad_pop(tr->step);
        if (s == BX_OK && bx_step_status(tr->step) != BX_OK)
            s = bx__error(bx_step_status(tr->step), "%s", bx_step_errmsg(tr->step));
        if (s != BX_OK) return bx__hook_error(tr, "model", test ? "test_step" : "validation_step", s);
        bx_step_output out = {tr->step_loss ? bx_get(tr->step_loss, 0) : NAN, tr->step_output};
        tr->eval_processed = i + 1;
        EVAL_HOOK(tr, test, on_validation_batch_end, on_test_batch_end, tr, &out, &b, i, 0);
        BX__TRY(bx__metrics_update_dicts(tr));
        if (!tr->sanity_checking) BX__TRY(bx__metrics_log_to_loggers(tr, tr->val_batches_seen));
        tr->val_batches_seen++;
        bx_step_reset(tr->step);
    }
    tr->epoch_end_reached = true;
    tr->cur_batch_size = 0;
    EVAL_HOOK(tr, test, on_validation_epoch_end, on_test_epoch_end, tr);
    BX__TRY(bx__metrics_update_dicts(tr));
    if (!tr->sanity_checking) BX__TRY(bx__metrics_log_to_loggers(tr, -1));
    EVAL_HOOK(tr, test, on_validation_end, on_test_end, tr);
    bx__results_reset(&tr->val_res);
    if (m->ops->on_validation_model_train)
        BX__CALL_MODEL_OP(tr, on_validation_model_train, tr);
    else
        bx_module_train(tr->module, prev_mode || tr->stage == BX_STAGE_FIT);
    return BX_OK;
}
