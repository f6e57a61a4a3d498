/* kinds_qat.c - golden runners for quantization-aware training (rules F1-F6):
 *  fake_quantize        the op with fixed args.scale/zero_point, or a
 *                       FakeQuantize module over in.x.stepK;
 *  fused_fake_quantize  FusedMovingAvgObsFakeQuantize over in.x.stepK;
 *  qat_convert          a QAT MLP trained with SGD, converted to int8 and
 *                       run (see run_convert).
 * Every option is read from args. */
#include "golden.h"
#include "blixt/quant.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- options ------------------------------------------------------------------ */

static bool parse_qscheme(const char *s, bx_qscheme *q) {
    if (!s) return false;
    if (strcmp(s, "per_tensor_affine") == 0) *q = BX_PER_TENSOR_AFFINE;
    else if (strcmp(s, "per_tensor_symmetric") == 0) *q = BX_PER_TENSOR_SYMMETRIC;
    else if (strcmp(s, "per_channel_affine") == 0) *q = BX_PER_CHANNEL_AFFINE;
    else if (strcmp(s, "per_channel_symmetric") == 0) *q = BX_PER_CHANNEL_SYMMETRIC;
    else return false;
    return true;
}

/* Observer options from args (observer, dtype, qscheme, quant_min/max,
 * reduce_range, averaging_constant, ch_axis, eps). The recorded quant range
 * is taken as the effective one when it is already narrower than the
 * dtype's 256 values (torch stores the reduced range on the module). */
static bool observer_opts(gcase *c, bx_observer_opts *o) {
    bx_observer_opts d = BX_OBSERVER_OPTS_INIT;
    *o = d;
    const char *obs = gc_arg_str(c, "observer", "MovingAverageMinMaxObserver");
    bool pc_obs = strstr(obs, "PerChannel") != NULL;
    o->kind = strstr(obs, "MovingAverage") ? BX_OBS_MOVING_AVERAGE
              : strstr(obs, "Histogram")   ? BX_OBS_HISTOGRAM
                                           : BX_OBS_MINMAX;
    const char *dt = gc_arg_str(c, "dtype", "quint8");
    if (strcmp(dt, "quint8") == 0) o->dtype = BX_QUINT8;
    else if (strcmp(dt, "qint8") == 0) o->dtype = BX_QINT8;
    else {
        gc_fail(c, "args.dtype: unsupported '%s'", dt);
        return false;
    }
    const char *qs = gc_arg_str(c, "qscheme", pc_obs ? "per_channel_affine" : "per_tensor_affine");
    if (!parse_qscheme(qs, &o->qscheme)) {
        gc_fail(c, "args.qscheme: unsupported '%s'", qs);
        return false;
    }
    o->reduce_range = gc_arg_bool(c, "reduce_range", false);
    json_t *a = gc_args(c);
    if (json_object_get(a, "quant_min") && json_object_get(a, "quant_max")) {
        o->custom_range = true;
        o->quant_min = (int)gc_arg_int(c, "quant_min", 0);
        o->quant_max = (int)gc_arg_int(c, "quant_max", 255);
        if (o->reduce_range && o->quant_max - o->quant_min + 1 < 256) o->reduce_range = false;
    }
    o->averaging_constant = gc_arg_num(c, "averaging_constant", o->kind == BX_OBS_MOVING_AVERAGE ? 0.01 : 1.0);
    o->ch_axis = (int)gc_arg_int(c, "ch_axis", 0);
    o->eps = (float)gc_arg_num(c, "eps", 1.1920928955078125e-07);
    o->bins = (int)gc_arg_int(c, "bins", 2048);
    o->upsample_rate = (int)gc_arg_int(c, "upsample_rate", 128);
    return true;
}

/* ---- fake_quantize / fused_fake_quantize ------------------------------------------ */

/* y = fake_quantize(x, args.scale, args.zero_point, quant_min, quant_max);
 * args.scale a list = per-channel along args.axis (or ch_axis). */
static void run_fq_op(gcase *c) {
    bx_tensor *x = gc_param(c, "in.x");
    if (!gc_need(c, "in.x")) return;
    int qmin = (int)gc_arg_int(c, "quant_min", 0), qmax = (int)gc_arg_int(c, "quant_max", 255);
    json_t *sj = json_object_get(gc_args(c), "scale"), *zj = json_object_get(gc_args(c), "zero_point");
    bx_step *st = bx_step_new();
    bx_tensor *y;
    const bx_tensor *ins = gc_get(c, "in.scale"), *inz = gc_get(c, "in.zero_point");
    if (ins && inz && (bx_numel(ins) > 1 || json_object_get(gc_args(c), "axis") || json_object_get(gc_args(c), "ch_axis"))) {
        /* per-channel qparams stored as tensors */
        bx_tensor *s = bx_tensor_new(BX_F32, 1, (int64_t[]){bx_numel(ins)});
        bx_tensor *z = bx_tensor_new(BX_I64, 1, (int64_t[]){bx_numel(inz)});
        gc_own(c, s);
        gc_own(c, z);
        bx_copy(s, ins);
        bx_copy(z, inz);
        int axis = (int)gc_arg_int(c, "axis", gc_arg_int(c, "ch_axis", 0));
        y = bx_fake_quantize_per_channel(st, x, s, z, axis, qmin, qmax);
    } else if (ins) {
        y = bx_fake_quantize(st, x, (float)bx_get(ins, 0), (int32_t)(inz ? bx_get(inz, 0) : 0), qmin, qmax);
    } else if (json_is_array(sj)) {
        int64_t n = (int64_t)json_array_size(sj);
        bx_tensor *s = bx_tensor_new(BX_F32, 1, &n), *z = bx_tensor_new(BX_I64, 1, &n);
        gc_own(c, s);
        gc_own(c, z);
        for (int64_t i = 0; i < n; i++) {
            ((float *)s->data)[i] = (float)json_number_value(json_array_get(sj, (size_t)i));
            ((int64_t *)z->data)[i] =
                json_is_array(zj) ? (int64_t)json_number_value(json_array_get(zj, (size_t)i)) : 0;
        }
        int axis = (int)gc_arg_int(c, "axis", gc_arg_int(c, "ch_axis", 0));
        y = bx_fake_quantize_per_channel(st, x, s, z, axis, qmin, qmax);
    } else {
        y = bx_fake_quantize(st, x, (float)gc_arg_num(c, "scale", 1.0), (int32_t)gc_arg_int(c, "zero_point", 0),
                             qmin, qmax);
    }
    if (bx_step_status(st) != BX_OK) {
        gc_fail(c, "forward failed: %s", bx_step_errmsg(st));
    } else {
        gc_compare(c, "out.y", y);
        const bx_tensor *g = gc_get(c, "in.g");
        if (g && gc_get(c, "grad.x")) {
            if (bx_backward_with_grad(st, y, g) != BX_OK) gc_fail(c, "backward failed: %s", bx_errmsg());
            else if (!x->grad) gc_fail(c, "grad.x: no gradient");
            else gc_compare(c, "grad.x", x->grad);
        }
    }
    bx_step_free(st);
}

/* Compares out.<what>.step<k> with t when the case has it. */
static void cmp_step(gcase *c, const char *what, int k, const bx_tensor *t) {
    char name[96];
    snprintf(name, sizeof name, "out.%s.step%d", what, k);
    if (!gc_get(c, name)) return;
    if (!t) {
        gc_fail(c, "%s: nothing to compare", name);
        return;
    }
    gc_compare(c, name, t);
}

/* A fake-quant module over in.x.step1.. in train mode: per step the observer
 * state, qparams, output, observer (Python) qparams and STE gradient. */
static void run_fq_module(gcase *c, bool fused) {
    bx_fake_quant_opts o = {.observer_only = false};
    if (!observer_opts(c, &o.observer)) return;
    o.fused = fused;
    bx_module *fq = bx_fake_quant_new(&o);
    if (!fq) {
        gc_fail(c, "fake-quant module: %s", bx_errmsg());
        return;
    }
    bx_module *obs = bx_fake_quant_observer(fq);
    bx_step *st = bx_step_new();
    int steps = 0;
    for (int k = 1;; k++) {
        char xn[64], gn[64], grn[64];
        snprintf(xn, sizeof xn, "in.x.step%d", k);
        snprintf(gn, sizeof gn, "in.g.step%d", k);
        snprintf(grn, sizeof grn, "grad.x.step%d", k);
        if (!gc_get(c, xn)) break;
        steps++;
        bx_step_reset(st);
        bx_tensor *x = gc_param(c, xn);
        bx_tensor *y = bx_module_forward(fq, st, x);
        if (bx_step_status(st) != BX_OK) {
            gc_fail(c, "step %d: forward failed: %s", k, bx_step_errmsg(st));
            break;
        }
        cmp_step(c, "y", k, y);
        cmp_step(c, "min_val", k, bx_module_buffer(obs, "min_val"));
        cmp_step(c, "max_val", k, bx_module_buffer(obs, "max_val"));
        cmp_step(c, "scale", k, bx_module_buffer(fq, "scale"));
        cmp_step(c, "zero_point", k, bx_module_buffer(fq, "zero_point"));
        bx_tensor *os = NULL, *oz = NULL;
        if (bx_fake_quant_calculate_qparams(fq, &os, &oz) != BX_OK) {
            gc_fail(c, "step %d: calculate_qparams: %s", k, bx_errmsg());
        } else {
            cmp_step(c, "observer_scale", k, os);
            cmp_step(c, "observer_zero_point", k, oz);
        }
        bx_tensor_free(os);
        bx_tensor_free(oz);
        const bx_tensor *g = gc_get(c, gn);
        if (g && gc_get(c, grn)) {
            if (bx_backward_with_grad(st, y, g) != BX_OK) gc_fail(c, "step %d: backward failed: %s", k, bx_errmsg());
            else if (!x->grad) gc_fail(c, "%s: no gradient", grn);
            else gc_compare(c, grn, x->grad);
        }
    }
    if (steps == 0) gc_fail(c, "no in.x.step1");
    bx_step_free(st);
    bx_module_free(fq);
}

static void kind_fake_quantize(gcase *c) {
    if (gc_get(c, "in.x")) run_fq_op(c);
    else run_fq_module(c, strcmp(gc_arg_str(c, "module", "FakeQuantize"), "FusedMovingAvgObsFakeQuantize") == 0);
}

static void kind_fused_fake_quantize(gcase *c) { run_fq_module(c, true); }

/* ---- histogram_observer ---------------------------------------------------------------- */

/* A HistogramObserver fed in.x.step1.. in order: after each step its
 * buffers (out.histogram / min_val / max_val.stepK), the parameter search
 * (out.new_min / new_max.stepK) and calculate_qparams
 * (out.scale / zero_point.stepK); args.state_keys: torch's state-dict keys. */
static void kind_histogram_observer(gcase *c) {
    bx_observer_opts o;
    if (!observer_opts(c, &o)) return;
    if (o.kind != BX_OBS_HISTOGRAM) {
        gc_fail(c, "args.observer: expected HistogramObserver");
        return;
    }
    bx_module *obs = bx_observer_new(&o);
    if (!obs) {
        gc_fail(c, "observer: %s", bx_errmsg());
        return;
    }
    json_t *keys = json_object_get(gc_args(c), "state_keys");
    if (json_is_array(keys)) {
        bx_named_tensors *sd = bx_module_state_dict(obs);
        bool same = sd && (size_t)sd->n == json_array_size(keys);
        for (int i = 0; same && i < sd->n; i++)
        {
            const char *k = json_string_value(json_array_get(keys, (size_t)i));
            same = k && strcmp(sd->names[i], k) == 0;
        }
        if (!same) gc_fail(c, "state dict keys differ from torch's");
        bx_named_tensors_free(sd);
    }
    bx_step *st = bx_step_new();
    int steps = 0;
    for (int k = 1;; k++) {
        char xn[64];
        snprintf(xn, sizeof xn, "in.x.step%d", k);
        if (!gc_get(c, xn)) break;
        steps++;
        bx_step_reset(st);
        bx_tensor *x = gc_copy(c, xn);
        bx_tensor *y = bx_module_forward(obs, st, x); /* the module forward: observes, returns x */
        if (bx_step_status(st) != BX_OK || y != x) {
            gc_fail(c, "step %d: forward failed: %s", k, bx_step_errmsg(st));
            break;
        }
        cmp_step(c, "histogram", k, bx_module_buffer(obs, "histogram"));
        cmp_step(c, "min_val", k, bx_module_buffer(obs, "min_val"));
        cmp_step(c, "max_val", k, bx_module_buffer(obs, "max_val"));
        float lo, hi;
        if (bx_histogram_observer_search(obs, &lo, &hi) != BX_OK) {
            gc_fail(c, "step %d: search: %s", k, bx_errmsg());
            break;
        }
        bx_tensor *tl = bx_tensor_new(BX_F32, 0, NULL), *th = bx_tensor_new(BX_F32, 0, NULL);
        gc_own(c, tl);
        gc_own(c, th);
        bx_set(tl, 0, lo);
        bx_set(th, 0, hi);
        cmp_step(c, "new_min", k, tl);
        cmp_step(c, "new_max", k, th);
        bx_tensor *os = NULL, *oz = NULL;
        if (bx_observer_qparams(obs, false, &os, &oz) != BX_OK) {
            gc_fail(c, "step %d: calculate_qparams: %s", k, bx_errmsg());
        } else {
            cmp_step(c, "scale", k, os);
            cmp_step(c, "zero_point", k, oz);
        }
        bx_tensor_free(os);
        bx_tensor_free(oz);
    }
    if (steps == 0) gc_fail(c, "no in.x.step1");
    bx_step_free(st);
    bx_module_free(obs);
}

/* ---- qat_convert --------------------------------------------------------------------- */

/* The model of the case: children quant, fc1, relu1, ..., fcN, dequant run in
 * order (torch: QuantStub -> fc1 -> relu -> fc2 -> DeQuantStub). */
static bx_tensor *net_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    for (int i = 0; i < bx_module_num_children(m); i++) x = bx_module_forward(bx_module_child_at(m, i, NULL), st, x);
    return x;
}
static const bx_module_type net_type = {"QATNet", net_forward, NULL, NULL, NULL, NULL};

/* Compares every out.<prefix><state-dict key> the case stores with the
 * model's state; histogram buffers with args.histogram_atol (counts) when
 * given, and the case must not store keys the model lacks. */
static void cmp_state(gcase *c, bx_module *m, const char *prefix) {
    bx_named_tensors *sd = bx_module_state_dict(m);
    if (!sd) return;
    json_t *ha = json_object_get(gc_args(c), "histogram_atol");
    for (int i = 0; i < sd->n; i++) {
        char name[256];
        snprintf(name, sizeof name, "%s%s", prefix, sd->names[i]);
        size_t nl = strlen(name);
        if (!gc_get(c, name)) continue;
        if (ha && nl > 10 && strcmp(name + nl - 10, ".histogram") == 0)
            gc_compare_tol(c, name, sd->tensors[i], 0, json_number_value(ha));
        else
            gc_compare(c, name, sd->tensors[i]);
    }
    bx_named_tensors_free(sd);
}

/* A converted parameter: with args.qparams_tol (0 = exact) when given. */
static void cmp_qparam(gcase *c, const char *name, const bx_tensor *t) {
    json_t *q = json_object_get(gc_args(c), "qparams_tol");
    if (q) gc_compare_tol(c, name, t, json_number_value(q), json_number_value(q));
    else gc_compare(c, name, t);
}

/* The converted model's quantized parameters: the input qparams of its
 * Quantize and out.fcK.* of its K-th quantized linear. */
static void cmp_converted(gcase *c, bx_module *q) {
    static const char *const keys[] = {"weight_int8", "weight_scales", "weight_zero_points", "bias", "scale",
                                       "zero_point"};
    int k = 0;
    for (int i = 0; i < bx_module_num_children(q); i++) {
        bx_module *l = bx_module_child_at(q, i, NULL);
        const char *t = bx_module_type_name(l);
        if (strcmp(t, "Quantize") == 0) {
            double s = 0;
            int64_t z = 0;
            bx_quant_module_qparams(l, &s, &z);
            bx_tensor *ts = bx_tensor_new(BX_F64, 0, NULL), *tz = bx_tensor_new(BX_I64, 0, NULL);
            gc_own(c, ts);
            gc_own(c, tz);
            bx_set(ts, 0, s);
            bx_set(tz, 0, (double)z);
            if (gc_get(c, "out.input_scale")) cmp_qparam(c, "out.input_scale", ts);
            if (gc_get(c, "out.input_zero_point")) gc_compare(c, "out.input_zero_point", tz);
        } else if (strncmp(t, "QuantizedLinear", 15) == 0) {
            k++;
            for (size_t j = 0; j < sizeof keys / sizeof keys[0]; j++) {
                char name[96];
                snprintf(name, sizeof name, "out.fc%d.%s", k, keys[j]);
                if (gc_get(c, name)) cmp_qparam(c, name, bx_module_buffer(l, keys[j]));
            }
        }
    }
}

/* in.eval_x through an int8 model; compares out.y_quint8 (exact) and, when
 * check_y, the dequantized out.y. */
static void run_int8(gcase *c, bx_module *q, const char *what, bool check_y) {
    const bx_tensor *ex = gc_need(c, "in.eval_x");
    if (!ex) return;
    bx_step *st = bx_step_new();
    bx_step_set_training(st, false);
    bx_tensor *x = bx_tensor_clone(ex);
    gc_own(c, x);
    /* quantize, the int8 layers, then dequantize separately to see the integers */
    int n = bx_module_num_children(q);
    bx_tensor *h = x;
    for (int i = 0; i < n; i++) {
        bx_module *l = bx_module_child_at(q, i, NULL);
        if (strcmp(bx_module_type_name(l), "DeQuantize") == 0) break;
        h = bx_module_forward(l, st, h);
    }
    bx_tensor *y = bx_module_forward(bx_module_child_at(q, n - 1, NULL), st, h);
    if (bx_step_status(st) != BX_OK) {
        gc_fail(c, "%s: int8 forward failed: %s", what, bx_step_errmsg(st));
    } else {
        gc_compare_tol(c, "out.y_quint8", h, 0, 0);
        if (check_y) gc_compare(c, "out.y", y);
    }
    bx_step_free(st);
}

/* The int8 model rebuilt from the recorded quantized parameters (out.fcK.*,
 * out.input_*): checks the int8 engine alone, bit for bit. */
static void run_recorded_int8(gcase *c, int nfc) {
    bx_module *q = bx_nn_sequential();
    double s;
    const bx_tensor *is = gc_need(c, "out.input_scale"), *iz = gc_need(c, "out.input_zero_point");
    if (!is || !iz || !q) {
        bx_module_free(q);
        return;
    }
    s = bx_get(is, 0);
    int64_t z = (int64_t)bx_get(iz, 0);
    bx_status rc = bx_sequential_append(q, bx_quantize_new(s, z));
    for (int k = 1; k <= nfc && rc == BX_OK; k++) {
        char n1[64], n2[64], n3[64], n4[64], n5[64], n6[64];
        snprintf(n1, sizeof n1, "out.fc%d.weight_int8", k);
        snprintf(n2, sizeof n2, "out.fc%d.weight_scales", k);
        snprintf(n3, sizeof n3, "out.fc%d.weight_zero_points", k);
        snprintf(n4, sizeof n4, "out.fc%d.bias", k);
        snprintf(n5, sizeof n5, "out.fc%d.scale", k);
        snprintf(n6, sizeof n6, "out.fc%d.zero_point", k);
        const bx_tensor *w = gc_need(c, n1), *ws = gc_need(c, n2), *wz = gc_need(c, n3), *os = gc_need(c, n5),
                        *oz = gc_need(c, n6);
        if (!w || !ws || !wz || !os || !oz) {
            rc = BX_ERR_NOT_FOUND;
            break;
        }
        double so = bx_get(os, 0);
        int64_t zo = (int64_t)bx_get(oz, 0);
        rc = bx_sequential_append(q, bx_quantized_linear_new(w, ws, wz, gc_get(c, n4), s, z, so, zo, k < nfc));
        s = so;
        z = zo;
    }
    if (rc == BX_OK) rc = bx_sequential_append(q, bx_dequantize_new(s, z));
    if (rc != BX_OK) gc_fail(c, "recorded int8 model: %s", bx_errmsg());
    else run_int8(c, q, "recorded", true);
    bx_module_free(q);
}

/* QAT model trained with SGD on in.batchK (cross entropy), then eval forward
 * (out.qat_eval_y), state (out.qat.*), convert (out.fcK.*, out.input_*),
 * int8 inference (out.y_quint8, out.y). Layers: param.fc1..fcN, ReLU fused
 * after every layer but the last; qconfig from args.qconfig_name. */
static void kind_qat_convert(gcase *c) {
    int nfc = 0;
    for (;; nfc++) {
        char n[64];
        snprintf(n, sizeof n, "param.fc%d.weight", nfc + 1);
        if (!gc_get(c, n)) break;
    }
    if (nfc == 0) {
        gc_fail(c, "no param.fc1.weight");
        return;
    }
    run_recorded_int8(c, nfc);

    bx_qconfig qc;
    int version = (int)gc_arg_int(c, "qconfig_version", 1);
    /* qconfig_kind "ptq": get_default_qconfig (observers: HistogramObserver
     * activations, MinMax weights; float training), else the QAT qconfig */
    bool ptq = strcmp(gc_arg_str(c, "qconfig_kind", "qat"), "ptq") == 0;
    if ((ptq ? bx_qconfig_default(gc_arg_str(c, "qconfig_name", "fbgemm"), &qc)
             : bx_qconfig_default_qat(gc_arg_str(c, "qconfig_name", "fbgemm"), version, &qc)) != BX_OK) {
        gc_fail(c, "qconfig: %s", bx_errmsg());
        return;
    }
    bx_module *net = bx_module_new(&net_type, NULL);
    bx_status rc = bx_module_add_child(net, "quant", bx_qat_quant_stub(&qc));
    for (int k = 1; k <= nfc && rc == BX_OK; k++) {
        char n[64];
        snprintf(n, sizeof n, "param.fc%d.weight", k);
        const bx_tensor *w = gc_get(c, n);
        snprintf(n, sizeof n, "param.fc%d.bias", k);
        const bx_tensor *b = gc_get(c, n);
        bx_module *l = bx_nn_linear(w->shape[1], w->shape[0], b != NULL, NULL);
        if (!l) {
            rc = BX_ERR_NOMEM;
            break;
        }
        bx_copy(bx_module_param(l, "weight"), w);
        if (b) bx_copy(bx_module_param(l, "bias"), b);
        snprintf(n, sizeof n, "fc%d", k);
        rc = bx_module_add_child(net, n, l);
        if (rc == BX_OK && k < nfc) {
            char r[64];
            snprintf(r, sizeof r, "relu%d", k);
            rc = bx_module_add_child(net, r, bx_nn_relu());
            if (rc == BX_OK) rc = bx_qat_fuse_linear_relu(net, n, r, &qc);
        } else if (rc == BX_OK) {
            rc = bx_qat_prepare_layer(l, &qc, false);
        }
    }
    if (rc == BX_OK) rc = bx_module_add_child(net, "dequant", bx_qat_dequant_stub());
    if (rc != BX_OK) {
        gc_fail(c, "model: %s", bx_errmsg());
        bx_module_free(net);
        return;
    }
    float lr = (float)gc_arg_num(c, "lr", 0.05);
    bx_named_tensors *params = bx_module_named_parameters(net);
    bx_step *st = bx_step_new();
    const bx_tensor *losses = gc_get(c, "out.qat_loss");
    bx_tensor *got_losses = losses ? bx_tensor_zeros(BX_F32, losses->ndim, losses->shape) : NULL;
    gc_own(c, got_losses);
    for (int k = 1;; k++) {
        char xn[64], yn[64];
        snprintf(xn, sizeof xn, "in.batch%d.x", k);
        snprintf(yn, sizeof yn, "in.batch%d.y", k);
        if (!gc_get(c, xn)) break;
        bx_step_reset(st);
        bx_module_zero_grad(net);
        bx_tensor *x = gc_copy(c, xn), *t = gc_copy(c, yn);
        bx_tensor *loss = bx_cross_entropy(st, bx_module_forward(net, st, x), t, NULL);
        if (bx_backward(st, loss) != BX_OK) {
            gc_fail(c, "step %d: %s", k, bx_step_status(st) ? bx_step_errmsg(st) : bx_errmsg());
            break;
        }
        if (got_losses && k <= bx_numel(got_losses)) bx_set(got_losses, k - 1, bx_item(loss));
        for (int i = 0; i < params->n; i++) { /* SGD: p += (-lr)*g */
            bx_tensor *p = params->tensors[i];
            if (!p->grad) continue;
            float *pd = p->data;
            const float *g = p->grad->data;
            for (int64_t j = 0; j < bx_numel(p); j++) pd[j] += -lr * g[j];
        }
    }
    bx_named_tensors_free(params);
    if (got_losses) gc_compare(c, "out.qat_loss", got_losses);
    cmp_state(c, net, "out.qat."); /* the trained state, before the eval forward */
    /* eval forward: observers keep observing (torch QAT modules ignore eval()) */
    bx_module_train(net, false);
    bx_step_reset(st);
    bx_no_grad_push(st);
    bx_tensor *ex = gc_copy(c, "in.eval_x");
    bx_tensor *ey = ex ? bx_module_forward(net, st, ex) : NULL;
    if (ey && bx_step_status(st) == BX_OK && gc_get(c, "out.qat_eval_y")) gc_compare(c, "out.qat_eval_y", ey);
    bx_no_grad_pop(st);
    bx_step_free(st);
    bx_module *q = NULL;
    if (bx_quant_convert(net, &q) != BX_OK) {
        gc_fail(c, "convert: %s", bx_errmsg());
    } else {
        cmp_converted(c, q);
        run_int8(c, q, "converted", true);
    }
    bx_module_free(q);
    bx_module_free(net);
}

const gkind golden_kinds_qat[] = {
    {"fake_quantize", kind_fake_quantize},
    {"fused_fake_quantize", kind_fused_fake_quantize},
    {"qat_convert", kind_qat_convert},
    {"histogram_observer", kind_histogram_observer},
    {NULL, NULL},
};
