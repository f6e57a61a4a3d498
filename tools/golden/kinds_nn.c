/* kinds_nn.c - golden case runners (see golden.h): linear, matmul, the losses,
 * embedding and layer_norm. Each runs the forward, compares out.y, then
 * back-propagates in.g (loss = sum(out.y * in.g)) and compares every grad.*
 * the case stores. An input is a parameter exactly when its gradient is
 * stored, so inputs PyTorch saw as no-grad stay no-grad here. Every option
 * is read from `args` (or from an optional in.* tensor). */
#include "golden.h"

#include <stdio.h>
#include <string.h>

/* in.<name>: a parameter when grad.<name> exists, else a plain copy; NULL if absent. */
static bx_tensor *input(gcase *c, const char *name) {
    char in[128], gr[128];
    snprintf(in, sizeof in, "in.%s", name);
    snprintf(gr, sizeof gr, "grad.%s", name);
    if (!gc_get(c, in)) return NULL;
    return gc_get(c, gr) ? gc_param(c, in) : gc_copy(c, in);
}

/* Optional f32 option tensor: in.<name>, else args.<name> as a number or a
 * list of numbers (1-D), else NULL. */
static bx_tensor *option_tensor(gcase *c, const char *name) {
    bx_tensor *t = input(c, name);
    if (t) return t;
    json_t *v = json_object_get(gc_args(c), name);
    if (!v || json_is_null(v)) return NULL;
    int64_t n = json_is_array(v) ? (int64_t)json_array_size(v) : 1;
    t = bx_tensor_new(BX_F32, json_is_array(v) ? 1 : 0, &n);
    gc_own(c, t);
    if (!t) return NULL;
    for (int64_t i = 0; i < n; i++) {
        json_t *e = json_is_array(v) ? json_array_get(v, (size_t)i) : v;
        if (!json_is_number(e)) {
            gc_fail(c, "args.%s: expected numbers", name);
            return NULL;
        }
        ((float *)t->data)[i] = (float)json_number_value(e);
    }
    return t;
}

static bx_reduction reduction_arg(gcase *c) {
    const char *r = gc_arg_str(c, "reduction", "mean");
    if (strcmp(r, "mean") == 0) return BX_REDUCTION_MEAN;
    if (strcmp(r, "sum") == 0) return BX_REDUCTION_SUM;
    if (strcmp(r, "none") == 0) return BX_REDUCTION_NONE;
    gc_fail(c, "args.reduction: unknown value '%s'", r);
    return BX_REDUCTION_MEAN;
}

/* Compares out.y, back-propagates in.g and compares grad.<names[i]> with ts[i]->grad. */
static void finish(gcase *c, bx_step *st, bx_tensor *y, int n, const char *const *names, bx_tensor *const *ts) {
    if (bx_step_status(st) != BX_OK) {
        gc_fail(c, "forward failed: %s", bx_step_errmsg(st));
        return;
    }
    gc_compare(c, "out.y", y);
    bool any_grad = false;
    for (int i = 0; i < n; i++) {
        char gr[128];
        snprintf(gr, sizeof gr, "grad.%s", names[i]);
        if (gc_get(c, gr)) any_grad = true;
    }
    if (!any_grad) return;
    const bx_tensor *g = gc_need(c, "in.g");
    if (!g) return;
    if (bx_backward_with_grad(st, y, g) != BX_OK) {
        gc_fail(c, "backward failed: %s", bx_errmsg());
        return;
    }
    for (int i = 0; i < n; i++) {
        char gr[128];
        snprintf(gr, sizeof gr, "grad.%s", names[i]);
        if (!gc_get(c, gr)) continue;
        if (!ts[i] || !ts[i]->grad) {
            gc_fail(c, "%s: no gradient was computed", gr);
            continue;
        }
        gc_compare(c, gr, ts[i]->grad);
    }
}

// y = x @ w^T + b; in.b absent = no bias
static void kind_linear(gcase *c) {
    bx_tensor *x = input(c, "x"), *w = input(c, "w"), *b = input(c, "b");
    if (!gc_need(c, "in.x") || !gc_need(c, "in.w")) return;
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_linear(st, x, w, b);
    const char *names[3] = {"x", "w", "b"};
    bx_tensor *ts[3] = {x, w, b};
    finish(c, st, y, 3, names, ts);
    bx_step_free(st);
}

// y = torch.matmul(a, b)
static void kind_matmul(gcase *c) {
    bx_tensor *a = input(c, "a"), *b = input(c, "b");
    if (!gc_need(c, "in.a") || !gc_need(c, "in.b")) return;
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_matmul(st, a, b);
    const char *names[2] = {"a", "b"};
    bx_tensor *ts[2] = {a, b};
    finish(c, st, y, 2, names, ts);
    bx_step_free(st);
}

/* cross_entropy / nll_loss: args reduction, ignore_index, label_smoothing; class weights in.weight */
static void run_ce(gcase *c, bool nll) {
    bx_tensor *x = input(c, "x"), *t = gc_copy(c, "in.target");
    if (!gc_need(c, "in.x") || !gc_need(c, "in.target")) return;
    bx_cross_entropy_opts o = BX_CROSS_ENTROPY_OPTS_INIT;
    o.weight = option_tensor(c, "weight");
    o.ignore_index = gc_arg_int(c, "ignore_index", -100);
    o.label_smoothing = (float)gc_arg_num(c, "label_smoothing", 0.0);
    o.reduction = reduction_arg(c);
    bx_step *st = bx_step_new();
    bx_tensor *y = nll ? bx_nll_loss(st, x, t, &o) : bx_cross_entropy(st, x, t, &o);
    const char *names[1] = {"x"};
    bx_tensor *ts[1] = {x};
    finish(c, st, y, 1, names, ts);
    bx_step_free(st);
}
static void kind_cross_entropy(gcase *c) { run_ce(c, false); }
static void kind_nll_loss(gcase *c) { run_ce(c, true); }

// mse_loss(x, target, reduction)
static void kind_mse_loss(gcase *c) {
    bx_tensor *x = input(c, "x"), *t = input(c, "target");
    if (!gc_need(c, "in.x") || !gc_need(c, "in.target")) return;
    bx_reduction red = reduction_arg(c);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_mse_loss(st, x, t, red);
    const char *names[2] = {"x", "target"};
    bx_tensor *ts[2] = {x, t};
    finish(c, st, y, 2, names, ts);
    bx_step_free(st);
}

// binary_cross_entropy_with_logits(x, target, weight, pos_weight, reduction)
static void kind_bce_with_logits(gcase *c) {
    bx_tensor *x = input(c, "x"), *t = input(c, "target");
    if (!gc_need(c, "in.x") || !gc_need(c, "in.target")) return;
    bx_bce_opts o = BX_BCE_OPTS_INIT;
    o.weight = option_tensor(c, "weight");
    o.pos_weight = option_tensor(c, "pos_weight");
    o.reduction = reduction_arg(c);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_bce_with_logits(st, x, t, &o);
    const char *names[2] = {"x", "target"};
    bx_tensor *ts[2] = {x, t};
    finish(c, st, y, 2, names, ts);
    bx_step_free(st);
}

// embedding(idx, w, padding_idx)
static void kind_embedding(gcase *c) {
    bx_tensor *idx = gc_copy(c, "in.idx"), *w = input(c, "w");
    if (!idx) idx = gc_copy(c, "in.x"); /* some generators call the indices x */
    if (!idx || !gc_need(c, "in.w")) {
        if (!idx) gc_fail(c, "missing tensor 'in.idx' in the case file");
        return;
    }
    int64_t pad = gc_arg_int(c, "padding_idx", BX_NO_PADDING_IDX);
    json_t *mn = json_object_get(gc_args(c), "max_norm");
    if (mn && !json_is_null(mn)) {
        gc_fail(c, "args.max_norm is not supported");
        return;
    }
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_embedding(st, idx, w, pad);
    const char *names[1] = {"w"};
    bx_tensor *ts[1] = {w};
    finish(c, st, y, 1, names, ts);
    bx_step_free(st);
}

// layer_norm(x, normalized_shape, w, b, eps); in.w / in.b absent = no affine part
static void kind_layer_norm(gcase *c) {
    bx_tensor *x = input(c, "x");
    if (!gc_need(c, "in.x")) return;
    bx_tensor *w = input(c, "w"), *b = input(c, "b");
    if (!w) w = input(c, "weight");
    if (!b) b = input(c, "bias");
    int nnorm = 1;
    json_t *ns = json_object_get(gc_args(c), "normalized_shape");
    if (json_is_array(ns)) nnorm = (int)json_array_size(ns);
    else if (json_is_integer(ns)) nnorm = 1;
    else if (w) nnorm = w->ndim;
    double eps = gc_arg_num(c, "eps", 1e-5);
    bx_step *st = bx_step_new();
    bx_tensor *y = bx_layer_norm(st, x, nnorm, w, b, eps);
    const char *names[5] = {"x", "w", "b", "weight", "bias"};
    bx_tensor *ts[5] = {x, w, b, w, b};
    finish(c, st, y, 5, names, ts);
    bx_step_free(st);
}

const gkind golden_kinds_nn[] = {
    {"linear", kind_linear},
    {"matmul", kind_matmul},
    {"cross_entropy", kind_cross_entropy},
    {"nll_loss", kind_nll_loss},
    {"mse_loss", kind_mse_loss},
    {"bce_with_logits", kind_bce_with_logits},
    {"embedding", kind_embedding},
    {"layer_norm", kind_layer_norm},
    {NULL, NULL},
};
