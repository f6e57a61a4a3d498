/* cb_finetune.c - BackboneFinetuning from a scenario's callback entry
 * (FORMAT.md §1.5): args are the constructor's keywords; `lambda_func` a
 * number c means f(e) = c, a list means f(e) = list[min(e, len-1)]. */
#include "scenario.h"

#include <blixt/finetuning.h>

#include <math.h>
#include <stdio.h>
#include <string.h>

/* lambda_func from the scenario's JSON (borrowed from the phase's scenario,
 * which outlives the Trainer). */
static double json_lambda(void *ud, int64_t epoch) {
    json_t *v = ud;
    if (json_is_number(v)) return json_number_value(v);
    size_t n = json_array_size(v);
    if (n == 0) return NAN;
    size_t i = epoch < 0 ? 0 : (size_t)epoch;
    return json_number_value(json_array_get(v, i < n ? i : n - 1));
}

bool sc_cb_finetune_handles(const char *type) { return type && !strcmp(type, "BackboneFinetuning"); }

bx_callback *sc_cb_finetune_new(const char *type, json_t *a) {
    (void)type;
    bx_backbone_finetuning_opts o = BX_BACKBONE_FINETUNING_OPTS_INIT;
    json_t *v;
    if ((v = json_object_get(a, "unfreeze_backbone_at_epoch"))) o.unfreeze_backbone_at_epoch = json_integer_value(v);
    if ((v = json_object_get(a, "lambda_func")) && (json_is_number(v) || json_is_array(v))) {
        o.lambda_func = json_lambda;
        o.lambda_ud = v;
    }
    if ((v = json_object_get(a, "backbone_initial_ratio_lr"))) o.backbone_initial_ratio_lr = json_number_value(v);
    if ((v = json_object_get(a, "backbone_initial_lr")))
        o.backbone_initial_lr = json_is_null(v) ? NAN : json_number_value(v);
    if ((v = json_object_get(a, "should_align"))) o.should_align = json_is_true(v);
    if ((v = json_object_get(a, "initial_denom_lr"))) o.initial_denom_lr = json_number_value(v);
    if ((v = json_object_get(a, "train_bn"))) o.train_bn = json_is_true(v);
    if ((v = json_object_get(a, "verbose"))) o.verbose = json_is_true(v);
    if ((v = json_object_get(a, "rounding")) || (v = json_object_get(a, "round"))) o.rounding = (int)json_integer_value(v);
    bx_callback *cb = bx_backbone_finetuning_new(&o);
    if (!cb) fprintf(stderr, "blixt-scenario: BackboneFinetuning: %s\n", bx_errmsg());
    return cb;
}
