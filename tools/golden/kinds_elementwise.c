/* kinds_elementwise.c - golden runners for the elementwise, activation,
 * softmax, reduction and shape kinds (see golden.h).
 *
 * Every case is forward + backward: each float input in.<name> becomes a
 * parameter, the op's output is compared with out.y, then
 * bx_backward_with_grad(y, in.g) (loss = sum(out.y * in.g)) and every
 * grad.<name> present is compared with that input's gradient. All options
 * come from `args`. */
#include "golden.h"

#include <stdio.h>
#include <string.h>

#define MAX_IN 26

typedef struct ew_case {
    gcase *c;
    bx_tensor *in[MAX_IN];
    char names[MAX_IN][16];
    int nin;
} ew_case;

typedef bx_tensor *(*build_fn)(ew_case *e, bx_step *st);

/* Loads in.<name> as a parameter; false (and a failure) when missing. */
static bool load_input(ew_case *e, const char *name) {
    char key[32];
    snprintf(key, sizeof key, "in.%s", name);
    if (!gc_need(e->c, key)) return false;
    bx_tensor *t = gc_param(e->c, key);
    if (!t) return false;
    snprintf(e->names[e->nin], sizeof e->names[0], "%s", name);
    e->in[e->nin++] = t;
    return true;
}

/* Runs build on the loaded inputs, compares out.y and every grad.<name>. */
static void run_case(ew_case *e, build_fn build) {
    gcase *c = e->c;
    bx_step *st = bx_step_new();
    if (!st) {
        gc_fail(c, "no memory for a step");
        return;
    }
    bx_tensor *y = build(e, st);
    if (bx_step_status(st) != BX_OK || bx_is_poison(y)) {
        gc_fail(c, "forward failed: %s", bx_step_errmsg(st));
        bx_step_free(st);
        return;
    }
    gc_compare(c, "out.y", y);
    const bx_tensor *g = gc_get(c, "in.g");
    bool any_grad = false;
    char key[32];
    for (int i = 0; i < e->nin; i++) {
        snprintf(key, sizeof key, "grad.%s", e->names[i]);
        if (gc_get(c, key)) any_grad = true;
    }
    if (g && any_grad) {
        bx_status s = bx_backward_with_grad(st, y, g);
        if (s != BX_OK) {
            gc_fail(c, "backward failed: %s", bx_errmsg());
        } else {
            for (int i = 0; i < e->nin; i++) {
                snprintf(key, sizeof key, "grad.%s", e->names[i]);
                if (gc_get(c, key)) gc_compare(c, key, e->in[i]->grad);
            }
        }
    } else if (any_grad) {
        gc_fail(c, "grad.* present but no in.g");
    }
    bx_step_free(st);
}

/* Reads args[key] as an int or a list of ints into out (at most max);
 * returns the count, 0 for an empty list, -1 when absent or null. */
static int arg_int_list(gcase *c, const char *key, int64_t *out, int max) {
    json_t *v = json_object_get(gc_args(c), key);
    if (!v || json_is_null(v)) return -1;
    if (json_is_integer(v)) {
        out[0] = json_integer_value(v);
        return 1;
    }
    if (!json_is_array(v) || (int)json_array_size(v) > max) {
        gc_fail(c, "args.%s: expected an integer or a list of at most %d integers", key, max);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(v); i++) {
        json_t *x = json_array_get(v, i);
        if (!json_is_integer(x)) {
            gc_fail(c, "args.%s[%zu]: expected an integer", key, i);
            return -1;
        }
        out[i] = json_integer_value(x);
    }
    return (int)json_array_size(v);
}

/* ---- binary ------------------------------------------------------------------- */

static bx_tensor *scaled_b(ew_case *e, bx_step *st) {
    double alpha = gc_arg_num(e->c, "alpha", 1.0);
    return alpha == 1.0 ? e->in[1] : bx_affine_scalar(st, e->in[1], (float)alpha, 0.0f);
}
static bx_tensor *b_add(ew_case *e, bx_step *st) { return bx_add(st, e->in[0], scaled_b(e, st)); }
static bx_tensor *b_sub(ew_case *e, bx_step *st) { return bx_sub(st, e->in[0], scaled_b(e, st)); }
static bx_tensor *b_mul(ew_case *e, bx_step *st) { return bx_mul(st, e->in[0], e->in[1]); }
static bx_tensor *b_div(ew_case *e, bx_step *st) { return bx_div(st, e->in[0], e->in[1]); }

static void run_binary(gcase *c, build_fn f) {
    ew_case e = {.c = c};
    if (load_input(&e, "a") && load_input(&e, "b")) run_case(&e, f);
}
static void kind_add(gcase *c) { run_binary(c, b_add); }
static void kind_sub(gcase *c) { run_binary(c, b_sub); }
static void kind_mul(gcase *c) { run_binary(c, b_mul); }
static void kind_div(gcase *c) { run_binary(c, b_div); }

/* ---- unary (in.x) ------------------------------------------------------------------ */

static void run_unary(gcase *c, build_fn f) {
    ew_case e = {.c = c};
    if (load_input(&e, "x")) run_case(&e, f);
}

static bx_tensor *b_relu(ew_case *e, bx_step *st) { return bx_relu(st, e->in[0]); }
static bx_tensor *b_leaky(ew_case *e, bx_step *st) {
    return bx_leaky_relu(st, e->in[0], (float)gc_arg_num(e->c, "negative_slope", 0.01));
}
static bx_tensor *b_gelu(ew_case *e, bx_step *st) {
    const char *a = gc_arg_str(e->c, "approximate", "none");
    if (strcmp(a, "none") == 0) return bx_gelu(st, e->in[0], BX_GELU_EXACT);
    if (strcmp(a, "tanh") == 0) return bx_gelu(st, e->in[0], BX_GELU_TANH);
    return bx_step_fail(st, BX_ERR_INVALID, "gelu: unknown approximate '%s'", a);
}
static bx_tensor *b_sigmoid(ew_case *e, bx_step *st) { return bx_sigmoid(st, e->in[0]); }
static bx_tensor *b_tanh(ew_case *e, bx_step *st) { return bx_tanh(st, e->in[0]); }
static bx_tensor *b_softmax(ew_case *e, bx_step *st) {
    return bx_softmax(st, e->in[0], (int)gc_arg_int(e->c, "dim", -1));
}
static bx_tensor *b_log_softmax(ew_case *e, bx_step *st) {
    return bx_log_softmax(st, e->in[0], (int)gc_arg_int(e->c, "dim", -1));
}

/* sum / mean: args.dim (int, list, or absent = all; "dims" accepted too), keepdim */
static bx_tensor *reduce(ew_case *e, bx_step *st, bool mean) {
    int64_t d[BX_MAX_DIMS];
    int n = arg_int_list(e->c, "dim", d, BX_MAX_DIMS);
    if (n < 0) n = arg_int_list(e->c, "dims", d, BX_MAX_DIMS);
    bool keepdim = gc_arg_bool(e->c, "keepdim", false);
    int dims[BX_MAX_DIMS];
    for (int i = 0; i < n; i++) dims[i] = (int)d[i];
    if (n <= 0) return mean ? bx_mean(st, e->in[0], NULL, 0, keepdim) : bx_sum(st, e->in[0], NULL, 0, keepdim);
    return mean ? bx_mean(st, e->in[0], dims, n, keepdim) : bx_sum(st, e->in[0], dims, n, keepdim);
}
static bx_tensor *b_sum(ew_case *e, bx_step *st) { return reduce(e, st, false); }
static bx_tensor *b_mean(ew_case *e, bx_step *st) { return reduce(e, st, true); }

static bx_tensor *b_reshape(ew_case *e, bx_step *st) {
    int64_t shape[BX_MAX_DIMS];
    int n = arg_int_list(e->c, "shape", shape, BX_MAX_DIMS);
    if (n < 0) return bx_step_fail(st, BX_ERR_INVALID, "reshape: args.shape missing");
    return bx_reshape(st, e->in[0], n, shape);
}
static bx_tensor *b_transpose(ew_case *e, bx_step *st) {
    return bx_transpose(st, e->in[0], (int)gc_arg_int(e->c, "dim0", 0), (int)gc_arg_int(e->c, "dim1", 1));
}
static bx_tensor *b_permute(ew_case *e, bx_step *st) {
    int64_t p[BX_MAX_DIMS];
    int n = arg_int_list(e->c, "dims", p, BX_MAX_DIMS);
    if (n < 0) n = arg_int_list(e->c, "perm", p, BX_MAX_DIMS);
    if (n != e->in[0]->ndim)
        return bx_step_fail(st, BX_ERR_INVALID, "permute: args.dims has %d entries for %d dims", n, e->in[0]->ndim);
    int perm[BX_MAX_DIMS];
    for (int i = 0; i < n; i++) perm[i] = (int)p[i];
    return bx_permute(st, e->in[0], perm);
}

static void kind_relu(gcase *c) { run_unary(c, b_relu); }
static void kind_leaky_relu(gcase *c) { run_unary(c, b_leaky); }
static void kind_gelu(gcase *c) { run_unary(c, b_gelu); }
static void kind_sigmoid(gcase *c) { run_unary(c, b_sigmoid); }
static void kind_tanh(gcase *c) { run_unary(c, b_tanh); }
static void kind_softmax(gcase *c) { run_unary(c, b_softmax); }
static void kind_log_softmax(gcase *c) { run_unary(c, b_log_softmax); }
static void kind_sum(gcase *c) { run_unary(c, b_sum); }
static void kind_mean(gcase *c) { run_unary(c, b_mean); }
static void kind_reshape(gcase *c) { run_unary(c, b_reshape); }
static void kind_transpose(gcase *c) { run_unary(c, b_transpose); }
static void kind_permute(gcase *c) { run_unary(c, b_permute); }

/* ---- concat: in.a, in.b, ... (skipping in.g, the upstream gradient; or in.x0,
 * in.x1, ...), args.dim --------------------------------------------------------- */

static bx_tensor *b_concat(ew_case *e, bx_step *st) {
    return bx_concat(st, e->in, e->nin, (int)gc_arg_int(e->c, "dim", 0));
}

static void kind_concat(gcase *c) {
    ew_case e = {.c = c};
    char name[8];
    for (int i = 0; i < MAX_IN; i++) {
        if ('a' + i == 'g') continue; /* in.g is the upstream gradient */
        snprintf(name, sizeof name, "%c", 'a' + i);
        char key[16];
        snprintf(key, sizeof key, "in.%s", name);
        if (!gc_get(c, key)) break;
        if (!load_input(&e, name)) return;
    }
    for (int i = 0; e.nin == 0 && i < 10; i++) {
        snprintf(name, sizeof name, "x%d", i);
        char key[16];
        snprintf(key, sizeof key, "in.%s", name);
        if (!gc_get(c, key)) break;
        if (!load_input(&e, name)) return;
    }
    if (e.nin == 0) {
        gc_fail(c, "concat: no inputs in.a, in.b, ... in the case");
        return;
    }
    run_case(&e, b_concat);
}

const gkind golden_kinds_elementwise[] = {
    {"add", kind_add},
    {"sub", kind_sub},
    {"mul", kind_mul},
    {"div", kind_div},
    {"relu", kind_relu},
    {"leaky_relu", kind_leaky_relu},
    {"gelu", kind_gelu},
    {"sigmoid", kind_sigmoid},
    {"tanh", kind_tanh},
    {"softmax", kind_softmax},
    {"log_softmax", kind_log_softmax},
    {"sum", kind_sum},
    {"mean", kind_mean},
    {"reshape", kind_reshape},
    {"transpose", kind_transpose},
    {"permute", kind_permute},
    {"concat", kind_concat},
    {NULL, NULL},
};
