/* kinds_conv.c - golden case runners (see golden.h): conv2d, max_pool2d,
 * avg_pool2d, adaptive_avg_pool2d, batch_norm.
 *
 * Every case: forward, then bx_backward_with_grad(y, in.g) (loss =
 * sum(out.y * in.g)), then compare out.y and every grad.* present. All
 * options come from `args` with PyTorch's defaults for absent ones. */
#include "golden.h"

#include <math.h>
#include <string.h>

/* An int-or-pair argument (3, [3, 2] or [3]); dflt when absent or null.
 * false (with a failure recorded) when malformed. */
static bool arg_pair(gcase *c, const char *key, int dflt, int out[2]) {
    json_t *v = json_object_get(gc_args(c), key);
    out[0] = out[1] = dflt;
    if (!v || json_is_null(v)) return true;
    if (json_is_integer(v)) {
        out[0] = out[1] = (int)json_integer_value(v);
        return true;
    }
    if (json_is_array(v) && (json_array_size(v) == 1 || json_array_size(v) == 2)) {
        for (size_t i = 0; i < 2; i++) {
            json_t *e = json_array_get(v, json_array_size(v) == 1 ? 0 : i);
            if (!json_is_integer(e)) break;
            out[i] = (int)json_integer_value(e);
            if (i == 1) return true;
        }
    }
    gc_fail(c, "args.%s: expected an integer or a pair of integers", key);
    return false;
}

/* The case's first tensor among `names` (NULL-terminated). */
static const char *first_present(gcase *c, const char *const *names) {
    for (; *names; names++)
        if (gc_get(c, *names)) return *names;
    return NULL;
}

/* Owned f32 input; a parameter (requires grad) when its gradient is in the case. */
static bx_tensor *input(gcase *c, const char *name, const char *grad_name) {
    if (grad_name && gc_get(c, grad_name)) return gc_param(c, name);
    bx_tensor *t = gc_copy(c, name);
    if (t && t->dtype != BX_F32) {
        gc_fail(c, "%s: expected f32", name);
        return NULL;
    }
    return t;
}

/* Backward with in.g, then compares out.y and the gradient of each input. */
static void finish(gcase *c, bx_step *st, bx_tensor *y, bx_tensor *const *ins, const char *const *grad_names,
                   int nin) {
    if (bx_step_status(st) != BX_OK) {
        gc_fail(c, "forward failed: %s", bx_step_errmsg(st));
        return;
    }
    gc_compare(c, "out.y", y);
    const bx_tensor *g = gc_get(c, "in.g");
    bool any_grad = false;
    for (int i = 0; i < nin; i++) any_grad = any_grad || (grad_names[i] && gc_get(c, grad_names[i]));
    if (!any_grad) return;
    if (!g) {
        gc_fail(c, "missing tensor 'in.g' in the case file");
        return;
    }
    if (bx_backward_with_grad(st, y, g) != BX_OK) {
        gc_fail(c, "backward failed: %s", bx_errmsg());
        return;
    }
    for (int i = 0; i < nin; i++) {
        if (!grad_names[i] || !gc_get(c, grad_names[i])) continue;
        if (!ins[i] || !ins[i]->grad) gc_fail(c, "%s: the input received no gradient", grad_names[i]);
        else gc_compare(c, grad_names[i], ins[i]->grad);
    }
}

/* ---- conv2d -------------------------------------------------------------------- */

static void kind_conv2d(gcase *c) {
    static const char *const wn[] = {"in.w", "in.weight", "param.weight", NULL};
    static const char *const bn[] = {"in.b", "in.bias", "param.bias", NULL};
    const char *wname = first_present(c, wn), *bname = first_present(c, bn);
    if (!wname) {
        gc_fail(c, "no weight tensor (in.w) in the case file");
        return;
    }
    const char *wgrad = strcmp(wname, "param.weight") == 0 ? "grad.weight" : strcmp(wname, "in.w") == 0 ? "grad.w"
                                                                                                      : "grad.weight";
    const char *bgrad = !bname ? NULL : strcmp(bname, "in.b") == 0 ? "grad.b" : "grad.bias";
    if (!gc_arg_bool(c, "bias", bname != NULL)) bname = bgrad = NULL;
    const char *mode = gc_arg_str(c, "padding_mode", "zeros");
    if (strcmp(mode, "zeros") != 0) {
        gc_fail(c, "padding_mode '%s' is not supported by bx_conv2d", mode);
        return;
    }
    bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
    json_t *pad = json_object_get(gc_args(c), "padding");
    if (json_is_string(pad)) {
        if (strcmp(json_string_value(pad), "same") == 0) o.padding_same = true;
        else if (strcmp(json_string_value(pad), "valid") != 0) {
            gc_fail(c, "args.padding: unknown string '%s'", json_string_value(pad));
            return;
        }
    } else if (!arg_pair(c, "padding", 0, o.padding)) {
        return;
    }
    if (!arg_pair(c, "stride", 1, o.stride) || !arg_pair(c, "dilation", 1, o.dilation)) return;
    o.groups = (int)gc_arg_int(c, "groups", 1);
    bx_tensor *x = input(c, "in.x", "grad.x"), *w = input(c, wname, wgrad);
    bx_tensor *b = bname ? input(c, bname, bgrad) : NULL;
    if (!x || !w || (bname && !b)) {
        gc_need(c, "in.x");
        return;
    }
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_conv2d(st, x, w, b, &o);
    bx_tensor *ins[3] = {x, w, b};
    const char *gn[3] = {"grad.x", wgrad, bgrad};
    finish(c, st, y, ins, gn, 3);
    bx_step_free(st);
}

/* ---- pooling ---------------------------------------------------------------------- */

static bool pool_opts(gcase *c, bx_pool2d_opts *o) {
    *o = (bx_pool2d_opts)BX_POOL2D_OPTS_INIT;
    int k[2];
    if (!arg_pair(c, "kernel_size", 0, k)) return false;
    if (k[0] == 0) {
        gc_fail(c, "args.kernel_size is required");
        return false;
    }
    o->kernel[0] = k[0], o->kernel[1] = k[1];
    /* stride absent, null or [] means "= kernel" (0) */
    json_t *s = json_object_get(gc_args(c), "stride");
    if (json_is_array(s) && json_array_size(s) == 0) o->stride[0] = o->stride[1] = 0;
    else if (!arg_pair(c, "stride", 0, o->stride)) return false;
    if (!arg_pair(c, "padding", 0, o->padding) || !arg_pair(c, "dilation", 1, o->dilation)) return false;
    o->ceil_mode = gc_arg_bool(c, "ceil_mode", false);
    o->count_include_pad = gc_arg_bool(c, "count_include_pad", true);
    o->divisor_override = (int)gc_arg_int(c, "divisor_override", 0);
    if (gc_arg_bool(c, "return_indices", false)) {
        gc_fail(c, "return_indices is not supported");
        return false;
    }
    return true;
}

static void run_pool(gcase *c, int which) {
    bx_pool2d_opts o;
    int64_t oh = 0, ow = 0;
    bx_tensor *x = input(c, "in.x", "grad.x");
    if (!x) {
        gc_need(c, "in.x");
        return;
    }
    if (which == 2) {
        /* output_size: int, [h, w], with null meaning "the input's size" */
        json_t *v = json_object_get(gc_args(c), "output_size");
        int64_t in_h = x->ndim >= 2 ? x->shape[x->ndim - 2] : 0, in_w = x->ndim >= 1 ? x->shape[x->ndim - 1] : 0;
        if (json_is_integer(v)) oh = ow = json_integer_value(v);
        else if (json_is_array(v) && (json_array_size(v) == 1 || json_array_size(v) == 2)) {
            json_t *a = json_array_get(v, 0), *b = json_array_get(v, json_array_size(v) - 1);
            oh = json_is_null(a) ? in_h : json_integer_value(a);
            ow = json_is_null(b) ? in_w : json_integer_value(b);
        } else {
            gc_fail(c, "args.output_size: expected an integer or a pair");
            return;
        }
    } else if (!pool_opts(c, &o)) {
        return;
    }
    bx_step *st = bx_step_new();
    bx_tensor *y = which == 0 ? bx_max_pool2d(st, x, &o)
                   : which == 1 ? bx_avg_pool2d(st, x, &o)
                                : bx_adaptive_avg_pool2d(st, x, oh, ow);
    const char *gn[1] = {"grad.x"};
    finish(c, st, y, &x, gn, 1);
    bx_step_free(st);
}

static void kind_max_pool2d(gcase *c) { run_pool(c, 0); }
static void kind_avg_pool2d(gcase *c) { run_pool(c, 1); }
static void kind_adaptive_avg_pool2d(gcase *c) { run_pool(c, 2); }

/* ---- batch_norm ---------------------------------------------------------------------- */

/* The buffer `name` (buf.<name>, else in.<name>) as an owned copy, or NULL. */
static bx_tensor *buffer(gcase *c, const char *name) {
    char k[96];
    snprintf(k, sizeof k, "buf.%s", name);
    if (gc_get(c, k)) return gc_copy(c, k);
    snprintf(k, sizeof k, "in.%s", name);
    return gc_get(c, k) ? gc_copy(c, k) : NULL;
}

/* nn.BatchNorm{1,2,3}d.forward as torch 1.13 runs it: num_batches_tracked
 * += 1 in training with tracked stats, momentum None -> 1/num_batches_tracked,
 * batch statistics when training or when no running stats are tracked. */
static void kind_batch_norm(gcase *c) {
    bool training = gc_arg_bool(c, "training", true);
    bool affine = gc_arg_bool(c, "affine", true);
    bool track = gc_arg_bool(c, "track_running_stats", true);
    double eps = gc_arg_num(c, "eps", 1e-5);
    json_t *mv = json_object_get(gc_args(c), "momentum");
    bool momentum_none = mv && json_is_null(mv);
    double momentum = momentum_none ? 0.0 : gc_arg_num(c, "momentum", 0.1);

    static const char *const wn[] = {"param.weight", "in.weight", "in.w", NULL};
    static const char *const bn[] = {"param.bias", "in.bias", "in.b", NULL};
    const char *wname = affine ? first_present(c, wn) : NULL, *bname = affine ? first_present(c, bn) : NULL;
    const char *wgrad = !wname ? NULL : strcmp(wname, "in.w") == 0 ? "grad.w" : "grad.weight";
    const char *bgrad = !bname ? NULL : strcmp(bname, "in.b") == 0 ? "grad.b" : "grad.bias";
    bx_tensor *x = input(c, "in.x", "grad.x");
    bx_tensor *w = wname ? input(c, wname, wgrad) : NULL, *b = bname ? input(c, bname, bgrad) : NULL;
    if (!x) {
        gc_need(c, "in.x");
        return;
    }
    bx_tensor *rm = track ? buffer(c, "running_mean") : NULL, *rv = track ? buffer(c, "running_var") : NULL;
    bx_tensor *nbt = track ? buffer(c, "num_batches_tracked") : NULL;
    if (track && (!rm || !rv)) {
        gc_fail(c, "track_running_stats but no buf.running_mean / buf.running_var");
        return;
    }
    double factor = momentum;
    if (training && track && nbt) {
        int64_t cnt = (int64_t)bx_get(nbt, 0) + 1;
        bx_set(nbt, 0, (double)cnt);
        if (momentum_none) factor = 1.0 / (double)cnt;
    }
    bool bn_training = training || (!rm && !rv);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_batch_norm(st, x, rm, rv, w, b, bn_training, factor, eps);
    bx_tensor *ins[3] = {x, w, b};
    const char *gn[3] = {"grad.x", wgrad, bgrad};
    finish(c, st, y, ins, gn, 3);
    static const char *const bufs[3] = {"running_mean", "running_var", "num_batches_tracked"};
    bx_tensor *vals[3] = {rm, rv, nbt};
    for (int i = 0; i < 3; i++) {
        char k[96];
        snprintf(k, sizeof k, "out.%s", bufs[i]);
        if (!gc_get(c, k)) continue;
        if (!vals[i]) gc_fail(c, "%s in the case but no matching buf.%s", k, bufs[i]);
        else gc_compare(c, k, vals[i]);
    }
    bx_step_free(st);
}

const gkind golden_kinds_conv[] = {
    {"conv2d", kind_conv2d},
    {"max_pool2d", kind_max_pool2d},
    {"avg_pool2d", kind_avg_pool2d},
    {"adaptive_avg_pool2d", kind_adaptive_avg_pool2d},
    {"batch_norm", kind_batch_norm},
    {NULL, NULL},
};
