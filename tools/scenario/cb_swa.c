/* cb_swa.c - blixt-scenario: StochasticWeightAveraging from the scenario's
 * callbacks list (FORMAT.md §1.5: swa_lrs float or list) and the trace
 * section `swa` (§2.2). */
#include "scenario.h"

#include <blixt/swa_callback.h>
#include <stdio.h>
#include <string.h>

bool sc_swa_handles(const char *type) { return type && !strcmp(type, "StochasticWeightAveraging"); }

bx_callback *sc_swa_new(json_t *a) {
    bx_swa_callback_opts o = BX_SWA_CALLBACK_OPTS_INIT;
    double lrs[64];
    json_t *v;
    if ((v = json_object_get(a, "swa_epoch_start"))) {
        o.swa_epoch_start = json_number_value(v);
        o.swa_epoch_start_is_fraction = !json_is_integer(v);
    }
    if ((v = json_object_get(a, "swa_lrs"))) {
        if (json_is_array(v)) {
            size_t i;
            json_t *x;
            json_array_foreach(v, i, x) if (i < 64) lrs[i] = json_number_value(x);
            o.swa_lrs = lrs;
            o.n_swa_lrs = (int)(json_array_size(v) < 64 ? json_array_size(v) : 64);
        } else {
            o.swa_lr = json_number_value(v);
        }
    }
    if ((v = json_object_get(a, "annealing_epochs"))) o.annealing_epochs = json_integer_value(v);
    if ((v = json_object_get(a, "annealing_strategy")) && json_is_string(v))
        o.annealing_strategy = !strcmp(json_string_value(v), "linear") ? BX_ANNEAL_LINEAR
                               : !strcmp(json_string_value(v), "cos")  ? BX_ANNEAL_COS
                                                                       : (bx_anneal_strategy)99;
    return bx_swa_callback_new(&o);
}

void sc_swa_trace(bx_trainer *tr, json_t *phase) {
    json_t *arr = json_array();
    bool any = false;
    for (int i = 0; tr && i < bx_trainer_num_callbacks(tr); i++) {
        bx_callback *cb = bx_trainer_callback(tr, i);
        if (!bx_swa_callback_is(cb)) continue;
        any = true;
        json_t *e = json_object();
        json_object_set_new(e, "swa_start", json_integer(bx_swa_callback_swa_start(cb)));
        json_object_set_new(e, "swa_end", json_integer(bx_swa_callback_swa_end(cb)));
        json_object_set_new(e, "initialized", json_boolean(bx_swa_callback_initialized(cb)));
        json_object_set_new(e, "n_averaged", json_integer(bx_swa_callback_n_averaged(cb)));
        json_object_set_new(e, "latest_update_epoch", json_integer(bx_swa_callback_latest_update_epoch(cb)));
        json_t *p = json_object();
        bx_module *m = bx_swa_callback_average_module(cb);
        bx_named_tensors *np = m ? bx_module_named_parameters(m) : NULL;
        for (int k = 0; np && k < np->n; k++) json_object_set_new(p, np->names[k], sc_tensor_json(np->tensors[k]));
        bx_named_tensors_free(np);
        json_object_set_new(e, "average_model_params", p);
        json_array_append_new(arr, e);
    }
    if (any) json_object_set_new(phase, "swa", arr);
    else json_decref(arr);
}
