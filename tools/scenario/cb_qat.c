/* cb_qat.c - blixt-scenario: QuantizationAwareTraining from the scenario's
 * callbacks list, epoch_records `fake_quant` (record.fake_quant) and the
 * trace section `qat` (FORMAT.md §1.7, §2.2, §2.4). */
#include "scenario.h"

#include <blixt/qat.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

bool sc_qat_handles(const char *type) { return type && !strcmp(type, "QuantizationAwareTraining"); }

bx_callback *sc_qat_new(sc_phase *ph, json_t *a) {
    bx_qat_opts o = BX_QAT_OPTS_INIT;
    bx_qat_fuse_group groups[16];
    json_t *v;
    if (a && (v = json_object_get(a, "qconfig"))) {
        if (!json_is_string(v)) {
            fprintf(stderr, "blixt-scenario: QuantizationAwareTraining: only string qconfigs are supported here\n");
            return NULL;
        }
        o.qconfig = json_string_value(v);
    }
    if (a && (v = json_object_get(a, "observer_type"))) o.observer_type = json_is_string(v) ? json_string_value(v) : "?";
    if (a && (v = json_object_get(a, "collect_quantization")) && !json_is_null(v)) {
        if (json_is_integer(v)) {
            o.collect = BX_QAT_COLLECT_COUNT;
            o.collect_n = json_integer_value(v);
        } else {
            o.collect = (bx_qat_collect)99; /* 'abc', 1.2: rejected by the constructor */
        }
    }
    if (a && (v = json_object_get(a, "modules_to_fuse")) && json_is_array(v)) {
        size_t gi;
        json_t *g;
        json_array_foreach(v, gi, g) {
            if (gi >= 16) break;
            memset(&groups[gi], 0, sizeof groups[gi]);
            for (size_t k = 0; k < 3 && k < json_array_size(g); k++)
                groups[gi].paths[k] = json_string_value(json_array_get(g, k));
        }
        o.modules_to_fuse = groups;
        o.num_modules_to_fuse = (int)(json_array_size(v) < 16 ? json_array_size(v) : 16);
    }
    if (a && (v = json_object_get(a, "input_compatible"))) o.input_compatible = json_is_true(v);
    if (a && (v = json_object_get(a, "quantize_on_fit_end"))) o.quantize_on_fit_end = json_is_true(v);
    if (a && (v = json_object_get(a, "observer_enabled_stages")) && json_is_array(v)) {
        o.observer_enabled_stages = 0;
        size_t i;
        json_t *s;
        json_array_foreach(v, i, s) {
            const char *n = json_string_value(s);
            o.observer_enabled_stages |= !n                         ? 0x10u
                                         : !strcmp(n, "train")    ? BX_QAT_STAGE_TRAIN
                                         : !strcmp(n, "validate") ? BX_QAT_STAGE_VALIDATE
                                         : !strcmp(n, "test")     ? BX_QAT_STAGE_TEST
                                         : !strcmp(n, "predict")  ? BX_QAT_STAGE_PREDICT
                                                                  : 0x10u;
        }
    }
    bx_callback *cb = bx_qat_callback_new(&o);
    if (!cb) fprintf(stderr, "blixt-scenario: %s\n", bx_errmsg());
    ph->qat_cb = cb;
    return cb;
}

static json_t *int_json(const bx_tensor *t) {
    if (t->ndim == 0) return json_integer((json_int_t)bx_get(t, 0));
    json_t *a = json_array();
    int64_t inner = 1;
    for (int d = 1; d < t->ndim; d++) inner *= t->shape[d];
    for (int64_t i = 0; i < t->shape[0]; i++) {
        if (t->ndim == 1) {
            json_array_append_new(a, json_integer((json_int_t)bx_get(t, i)));
        } else {
            json_t *row = json_array();
            for (int64_t j = 0; j < inner; j++) json_array_append_new(row, json_integer((json_int_t)bx_get(t, i * inner + j)));
            json_array_append_new(a, row);
        }
    }
    return a;
}

/* one value for a per-tensor [1] tensor, a list per-channel */
static json_t *one_or_list(const bx_tensor *t, bool integer) {
    if (t->ndim == 1 && t->shape[0] == 1) return integer ? json_integer((json_int_t)bx_get(t, 0)) : json_real(bx_get(t, 0));
    return integer ? int_json(t) : sc_tensor_json(t);
}

void sc_qat_epoch_record(sc_phase *ph, json_t *r) {
    if (!ph->rec_fake_quant || !ph->root) return;
    json_t *fq = json_object();
    bx_named_modules *mods = bx_module_named_modules(ph->root);
    for (int i = 0; mods && i < mods->n; i++) {
        bx_module *m = mods->modules[i];
        if (!bx_module_is_fake_quant(m)) continue;
        json_t *e = json_object();
        json_object_set_new(e, "scale", sc_tensor_json(bx_module_buffer(m, "scale")));
        json_object_set_new(e, "zero_point", int_json(bx_module_buffer(m, "zero_point")));
        json_object_set_new(e, "fake_quant_enabled", int_json(bx_module_buffer(m, "fake_quant_enabled")));
        json_object_set_new(e, "observer_enabled", int_json(bx_module_buffer(m, "observer_enabled")));
        bx_module *obs = bx_fake_quant_observer(m);
        json_object_set_new(e, "min_val", obs ? sc_tensor_json(bx_module_buffer(obs, "min_val")) : json_null());
        json_object_set_new(e, "max_val", obs ? sc_tensor_json(bx_module_buffer(obs, "max_val")) : json_null());
        json_object_set_new(fq, mods->names[i], e);
    }
    bx_named_modules_free(mods);
    json_object_set_new(r, "fake_quant", fq);
}

static json_t *run_all(sc_phase *ph, const bx_dataset *ds) {
    if (!ds) return json_null();
    bx_step *st = bx_step_new();
    if (!st) return json_null();
    bx_no_grad_push(st);
    bx_tensor *y = bx_module_forward(ph->root, st, (bx_tensor *)bx_dataset_x(ds));
    bool bad = !y || bx_is_poison(y);
    json_t *out = bad ? json_null() : sc_tensor_json(y);
    if (bad) fprintf(stderr, "blixt-scenario: qat output: %s\n", bx_errmsg());
    bx_no_grad_pop(st);
    bx_step_free(st);
    return out;
}

void sc_qat_trace(sc_phase *ph, json_t *P, const bx_dataset *train, const bx_dataset *val) {
    if (!ph->qat_cb) return;
    json_t *Q = json_object();
    const char *eng = "custom";
    json_t *cbs = json_object_get(ph->sc, "callbacks");
    size_t i;
    json_t *c;
    json_array_foreach(cbs, i, c) {
        if (!sc_qat_handles(json_string_value(json_object_get(c, "type")))) continue;
        json_t *q = json_object_get(json_object_get(c, "args"), "qconfig");
        eng = q ? json_string_value(q) : "fbgemm";
    }
    json_object_set_new(Q, "engine", json_string(eng ? eng : "custom"));
    json_object_set_new(Q, "supported_engines", json_pack("[s,s,s,s]", "fbgemm", "x86", "qnnpack", "onednn"));
    bool conv = bx_qat_callback_converted(ph->qat_cb);
    json_object_set_new(Q, "converted", json_boolean(conv));
    json_t *M = json_object();
    for (int k = 0; conv && k < bx_module_num_children(ph->root); k++) {
        const char *name;
        bx_module *m = bx_module_child_at(ph->root, k, &name);
        const char *t = bx_module_type_name(m);
        double s;
        int64_t z;
        json_t *e = json_object();
        if (!strcmp(t, "QuantizedLinear") || !strcmp(t, "QuantizedLinearReLU")) {
            json_object_set_new(e, "type", json_string(strcmp(t, "QuantizedLinear") ? "LinearReLU" : "Linear"));
            json_object_set_new(e, "weight_int", int_json(bx_module_buffer(m, "weight_int8")));
            json_object_set_new(e, "weight_scale", one_or_list(bx_module_buffer(m, "weight_scales"), false));
            json_object_set_new(e, "weight_zero_point", one_or_list(bx_module_buffer(m, "weight_zero_points"), true));
            bx_quant_module_qparams(m, &s, &z);
            json_object_set_new(e, "scale", json_real(s));
            json_object_set_new(e, "zero_point", json_integer((json_int_t)z));
            const bx_tensor *b = bx_module_buffer(m, "bias");
            json_object_set_new(e, "bias", b ? sc_tensor_json(b) : json_null());
        } else if (!strcmp(t, "Quantize")) {
            bx_quant_module_qparams(m, &s, &z);
            json_object_set_new(e, "type", json_string("Quantize"));
            json_object_set_new(e, "scale", json_pack("[f]", (double)(float)s));
            json_object_set_new(e, "zero_point", json_pack("[I]", (json_int_t)z));
        } else {
            json_decref(e);
            continue;
        }
        json_object_set_new(M, name, e);
    }
    json_object_set_new(Q, "modules", M);
    json_object_set_new(Q, "train_output", run_all(ph, train));
    json_object_set_new(Q, "val_output", run_all(ph, val));
    json_object_set_new(P, "qat", Q);
}
