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
    o->kind = strstr(obs, "MovingAverage") ? BX_OBS_MOVING_AVERAGE : BX_OBS_MINMAX;
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
    if (json_is_array(sj)) {
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
    bx_fake_quant_opts o;
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

static void kind_qat_convert(gcase *c) { gc_fail(c, "qat_convert: not yet"); }

const gkind golden_kinds_qat[] = {
    {"fake_quantize", kind_fake_quantize},
    {"fused_fake_quantize", kind_fused_fake_quantize},
    {"qat_convert", kind_qat_convert},
    {NULL, NULL},
};
