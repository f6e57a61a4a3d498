/* cb_prune.c - blixt-scenario: ModelPruning from the scenario's callbacks
 * list, the trace section `pruning`, `masks_final`, and the pruning parts of
 * the epoch records (`masks`, `effective_weights`, `sparsity`; FORMAT.md
 * §2.4).
 *
 * Scenario args: Lightning's keyword arguments; `amount` a number (an
 * integer = a count, a real = a fraction) or a list (amount(epoch) =
 * list[min(epoch, len - 1)]); `apply_pruning` / `use_lottery_ticket_hypothesis`
 * a bool or a list of bools indexed the same way; `parameters_to_prune`
 * [[module, param], ...]; `pruning_norm` a number or "fro"/"inf"/"-inf". The
 * lists are read from the scenario JSON, which outlives the phase's Trainer. */
#include "scenario.h"

#include <blixt/pruning.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool sc_prune_handles(const char *type) { return type && !strcmp(type, "ModelPruning"); }

static json_t *at_epoch(json_t *list, int64_t epoch) {
    size_t n = json_array_size(list);
    if (n == 0) return NULL;
    size_t i = epoch < 0 ? 0 : (size_t)epoch;
    return json_array_get(list, i < n ? i : n - 1);
}

static bx_prune_amount amount_of(json_t *v) {
    if (json_is_integer(v)) return BX_PRUNE_COUNT(json_integer_value(v));
    return BX_PRUNE_FRACTION(json_is_number(v) ? json_number_value(v) : 0.0);
}

static bx_prune_amount amount_fn(void *ud, int64_t epoch) { return amount_of(at_epoch(ud, epoch)); }
static bool bool_fn(void *ud, int64_t epoch) { return json_is_true(at_epoch(ud, epoch)); }

bx_callback *sc_prune_new(json_t *a) {
    bx_model_pruning_opts o = BX_MODEL_PRUNING_OPTS_INIT;
    json_t *v;
    bx_pruning_param pp[64];
    const char *names[8];
    if ((v = json_object_get(a, "pruning_fn")) && json_is_string(v)) o.pruning_fn = json_string_value(v);
    if ((v = json_object_get(a, "use_global_unstructured"))) o.use_global_unstructured = json_is_true(v);
    if ((v = json_object_get(a, "amount"))) {
        if (json_is_array(v)) o.amount_fn = amount_fn, o.amount_ud = v;
        else o.amount = amount_of(v);
    }
    if ((v = json_object_get(a, "apply_pruning"))) {
        if (json_is_array(v)) o.apply_pruning_fn = bool_fn, o.apply_pruning_ud = v;
        else o.apply_pruning = json_is_true(v);
    }
    if ((v = json_object_get(a, "use_lottery_ticket_hypothesis"))) {
        if (json_is_array(v)) o.lottery_ticket_fn = bool_fn, o.lottery_ticket_ud = v;
        else o.use_lottery_ticket_hypothesis = json_is_true(v);
    }
    if ((v = json_object_get(a, "make_pruning_permanent"))) o.make_pruning_permanent = json_is_true(v);
    if ((v = json_object_get(a, "resample_parameters"))) o.resample_parameters = json_is_true(v);
    if ((v = json_object_get(a, "prune_on_train_epoch_end"))) o.prune_on_train_epoch_end = json_is_true(v);
    if ((v = json_object_get(a, "verbose")) && json_is_integer(v)) o.verbose = (int)json_integer_value(v);
    if ((v = json_object_get(a, "verbose")) && json_is_boolean(v)) o.verbose = json_is_true(v);
    if ((v = json_object_get(a, "pruning_dim")) && json_is_integer(v)) o.pruning_dim = (int)json_integer_value(v);
    if ((v = json_object_get(a, "pruning_norm")) && !json_is_null(v)) {
        if (json_is_number(v)) o.pruning_norm = json_number_value(v);
        else if (json_is_string(v) && bx_prune_norm_parse(json_string_value(v), &o.pruning_norm) != BX_OK)
            return NULL;
    }
    if ((v = json_object_get(a, "parameters_to_prune")) && json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (i >= 64) break;
            pp[i].module = json_string_value(json_array_get(e, 0));
            pp[i].name = json_string_value(json_array_get(e, 1));
            o.num_parameters_to_prune = (int)i + 1;
        }
        o.parameters_to_prune = pp;
    }
    if ((v = json_object_get(a, "parameter_names")) && json_is_array(v)) {
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e) {
            if (i >= 8) break;
            names[i] = json_string_value(e);
            o.num_parameter_names = (int)i + 1;
        }
        o.parameter_names = names;
    }
    return bx_model_pruning_new(&o);
}

/* "a.weight_mask" -> module a, "weight" (false when it is no live mask). */
static bool mask_target(bx_module *root, const char *key, bx_module **m, char *param, size_t n) {
    return bx_prune_split_mask_key(root, key, m, param, n) && bx_prune_is_pruned(*m, param);
}

static bool masks_flag(sc_phase *ph) {
    json_t *r = json_object_get(ph->sc, "record");
    return r && json_is_true(json_object_get(r, "masks"));
}

void sc_prune_epoch_record(sc_phase *ph, json_t *rec) {
    if (!masks_flag(ph) || !ph->root) return;
    json_t *masks = json_object(), *eff = json_object();
    int64_t zeros = 0, total = 0;
    bx_named_tensors *bufs = bx_module_named_buffers(ph->root);
    for (int i = 0; bufs && i < bufs->n; i++) {
        bx_module *m;
        char param[256];
        if (!mask_target(ph->root, bufs->names[i], &m, param, sizeof param)) continue;
        const bx_tensor *mk = bufs->tensors[i];
        json_object_set_new(masks, bufs->names[i], sc_tensor_json(mk));
        for (int64_t k = 0; k < bx_numel(mk); k++) zeros += bx_get(mk, k) == 0.0;
        total += bx_numel(mk);
        char name[600];
        snprintf(name, sizeof name, "%.*s%s", (int)(strlen(bufs->names[i]) - 5 - strlen(param)), bufs->names[i],
                 param);
        bx_tensor *e = bx_prune_effective(m, param);
        if (e) json_object_set_new(eff, name, sc_tensor_json(e));
        bx_tensor_free(e);
    }
    bx_named_tensors_free(bufs);
    json_object_set_new(rec, "masks", masks);
    json_object_set_new(rec, "effective_weights", eff);
    json_object_set_new(rec, "sparsity", json_pack("{s:I,s:I}", "zeros", (json_int_t)zeros, "total", (json_int_t)total));
}

void sc_prune_trace(bx_trainer *tr, json_t *P, sc_phase *ph) {
    json_t *sec = json_array();
    for (int i = 0; i < bx_trainer_num_callbacks(tr); i++) {
        bx_callback *cb = bx_trainer_callback(tr, i);
        if (strcmp(bx_callback_name(cb), "ModelPruning")) continue;
        json_t *l = json_array();
        for (int k = 0; k < bx_model_pruning_num_targets(cb); k++)
            json_array_append_new(l, json_pack("[s,s]", bx_model_pruning_target_module(cb, k),
                                               bx_model_pruning_target_name(cb, k)));
        json_array_append_new(sec, json_pack("{s:o}", "parameters_to_prune", l));
    }
    if (json_array_size(sec) == 0) {
        json_decref(sec);
        return;
    }
    json_object_set_new(P, "pruning", sec);
    if (!ph->root) return;
    json_t *mf = json_object();
    bx_named_tensors *bufs = bx_module_named_buffers(ph->root);
    for (int i = 0; bufs && i < bufs->n; i++) {
        bx_module *m;
        char param[256];
        if (mask_target(ph->root, bufs->names[i], &m, param, sizeof param))
            json_object_set_new(mf, bufs->names[i], sc_tensor_json(bufs->tensors[i]));
    }
    bx_named_tensors_free(bufs);
    if (json_object_size(mf)) json_object_set_new(P, "masks_final", mf);
    else json_decref(mf);
}
