/* kinds_swa.c - golden runner for kind averaged_model (tests/golden/README.md
 * "swa" conventions, rules W1-W2).
 *
 * The model is built from args.model, e.g.
 *   "MLP net.0=Linear(4,8)-net.1=BatchNorm1d(8)-ReLU-net.3=Linear(8,3)"
 *   "CNN conv=Conv2d(2,3,3,padding=1)-bn=BatchNorm2d(3)-relu-adaptive_avg_pool2d(1)-flatten-fc=Linear(3,2), input [N,2,5,5]"
 * Layers are separated by '-'; "a=Type(...)" is a named child (a dotted name
 * "net.K" goes into the Sequential "net"), an unnamed layer follows a
 * Sequential's numbering when the previous layer was in one, otherwise it is
 * a functional step (a parameterless child with a hidden name). Whether a
 * layer has a bias / affine parameters / running statistics is read from
 * the tensors present (param.*, buf.*).
 *
 * Run: AveragedModel(model, use_buffers=args.use_buffers) over param.* and buf.*;
 * for K = 1.. update_parameters(in.snapK.*) and compare out.stepK.*; compare
 * the buffers with out.before_update_bn.*; update_bn over in.loader.J (via a
 * bx_loader when the sizes are [b, ..., b, r<=b], else the callback source);
 * compare out.final.*, out.n_averaged and the eval output out.eval_y. */
#include "golden.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- the model ---------------------------------------------------------------- */

/* Root module: runs its children in insertion order (like Sequential, with
 * free names). impl NULL, so bx_module_clone copies it. */
static bx_tensor *pipe_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    for (int i = 0; i < bx_module_num_children(m); i++) x = bx_module_forward(bx_module_child_at(m, i, NULL), st, x);
    return x;
}
static const bx_module_type pipe_type = {"Net", pipe_forward, NULL, NULL, NULL, NULL};

/* Splits s at `sep` outside parentheses/brackets; writes at most max pieces
 * (pointers into s, which is modified). Returns the count. */
static int split_top(char *s, char sep, char **out, int max) {
    int n = 0, depth = 0;
    out[n++] = s;
    for (char *p = s; *p; p++) {
        if (*p == '(' || *p == '[') depth++;
        else if (*p == ')' || *p == ']') depth--;
        else if (*p == sep && depth == 0 && n < max) {
            *p = 0;
            out[n++] = p + 1;
        }
    }
    return n;
}

static char *trim(char *s) {
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

typedef struct layer_args {
    long pos[8];
    double posd[8];
    int npos;
    char kw[8][32];
    long kwv[8];
    double kwd[8];
    int nkw;
} layer_args;

static long kw_int(const layer_args *a, const char *k, long dflt) {
    for (int i = 0; i < a->nkw; i++)
        if (strcmp(a->kw[i], k) == 0) return a->kwv[i];
    return dflt;
}
static double kw_num(const layer_args *a, const char *k, double dflt) {
    for (int i = 0; i < a->nkw; i++)
        if (strcmp(a->kw[i], k) == 0) return a->kwd[i];
    return dflt;
}

/* "Type(1,2,k=v)" -> type (lowercased, no underscores) and args. */
static void parse_layer(char *spec, char *type, size_t tn, layer_args *a) {
    memset(a, 0, sizeof *a);
    char *paren = strchr(spec, '(');
    if (paren) *paren = 0;
    size_t j = 0;
    for (char *p = trim(spec); *p && j + 1 < tn; p++)
        if (*p != '_') type[j++] = (char)tolower((unsigned char)*p);
    type[j] = 0;
    if (!paren) return;
    char *inner = paren + 1, *close = strrchr(inner, ')');
    if (close) *close = 0;
    char *parts[16];
    int np = split_top(inner, ',', parts, 16);
    for (int i = 0; i < np; i++) {
        char *t = trim(parts[i]);
        if (!*t) continue;
        char *eq = strchr(t, '=');
        if (eq && a->nkw < 8) {
            *eq = 0;
            snprintf(a->kw[a->nkw], sizeof a->kw[0], "%s", trim(t));
            char *v = trim(eq + 1);
            a->kwv[a->nkw] = strcmp(v, "True") == 0 ? 1 : strcmp(v, "False") == 0 ? 0 : strtol(v, NULL, 10);
            a->kwd[a->nkw] = strtod(v, NULL);
            a->nkw++;
        } else if (!eq && a->npos < 8) {
            a->posd[a->npos] = strtod(t, NULL);
            a->pos[a->npos++] = strtol(t, NULL, 10);
        }
    }
}

static bool has_tensor(gcase *c, const char *name, const char *suffix) {
    char key[256];
    snprintf(key, sizeof key, "param.%s.%s", name, suffix);
    if (gc_get(c, key)) return true;
    snprintf(key, sizeof key, "buf.%s.%s", name, suffix);
    return gc_get(c, key) != NULL;
}

/* One layer module from its spec; name (may be "") tells which tensors exist. */
static bx_module *make_layer(gcase *c, char *spec, const char *name) {
    char type[64];
    layer_args a;
    parse_layer(spec, type, sizeof type, &a);
    if (strcmp(type, "linear") == 0 && a.npos >= 2)
        return bx_nn_linear(a.pos[0], a.pos[1], kw_int(&a, "bias", has_tensor(c, name, "bias")), NULL);
    if (strcmp(type, "conv2d") == 0 && a.npos >= 2) {
        long k = a.npos >= 3 ? a.pos[2] : kw_int(&a, "kernel_size", 1);
        bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
        o.stride[0] = o.stride[1] = (int)kw_int(&a, "stride", a.npos >= 4 ? a.pos[3] : 1);
        o.padding[0] = o.padding[1] = (int)kw_int(&a, "padding", a.npos >= 5 ? a.pos[4] : 0);
        o.dilation[0] = o.dilation[1] = (int)kw_int(&a, "dilation", 1);
        o.groups = (int)kw_int(&a, "groups", 1);
        return bx_nn_conv2d(a.pos[0], a.pos[1], (int)k, (int)k, &o, kw_int(&a, "bias", has_tensor(c, name, "bias")),
                            NULL);
    }
    if ((strcmp(type, "batchnorm1d") == 0 || strcmp(type, "batchnorm2d") == 0) && a.npos >= 1) {
        bx_batchnorm_opts o = BX_BATCHNORM_OPTS_INIT;
        o.eps = kw_num(&a, "eps", gc_arg_num(c, "bn_eps", o.eps));
        o.momentum = kw_num(&a, "momentum", gc_arg_num(c, "bn_momentum", o.momentum));
        o.affine = kw_int(&a, "affine", has_tensor(c, name, "weight"));
        o.track_running_stats = kw_int(&a, "track_running_stats", has_tensor(c, name, "running_mean"));
        return type[9] == '1' ? bx_nn_batchnorm1d(a.pos[0], &o) : bx_nn_batchnorm2d(a.pos[0], &o);
    }
    if (strcmp(type, "relu") == 0) return bx_nn_relu();
    if (strcmp(type, "leakyrelu") == 0)
        return bx_nn_leaky_relu((float)kw_num(&a, "negative_slope", a.npos >= 1 ? a.posd[0] : 0.01));
    if (strcmp(type, "tanh") == 0) return bx_nn_tanh();
    if (strcmp(type, "sigmoid") == 0) return bx_nn_sigmoid();
    if (strcmp(type, "gelu") == 0) return bx_nn_gelu(BX_GELU_EXACT);
    if (strcmp(type, "identity") == 0) return bx_nn_identity();
    if (strcmp(type, "flatten") == 0) return bx_nn_flatten((int)(a.npos >= 1 ? a.pos[0] : 1), (int)(a.npos >= 2 ? a.pos[1] : -1));
    if (strcmp(type, "adaptiveavgpool2d") == 0) {
        long k = a.npos >= 1 ? a.pos[0] : 1;
        return bx_nn_adaptive_avg_pool2d(k, a.npos >= 2 ? a.pos[1] : k);
    }
    if (strcmp(type, "maxpool2d") == 0 || strcmp(type, "avgpool2d") == 0) {
        bx_pool2d_opts o = BX_POOL2D_OPTS_INIT;
        int k = (int)(a.npos >= 1 ? a.pos[0] : kw_int(&a, "kernel_size", 2));
        int s = (int)(a.npos >= 2 ? a.pos[1] : kw_int(&a, "stride", k));
        o.kernel[0] = o.kernel[1] = k;
        o.stride[0] = o.stride[1] = s;
        o.padding[0] = o.padding[1] = (int)kw_int(&a, "padding", 0);
        return type[0] == 'm' ? bx_nn_max_pool2d(&o) : bx_nn_avg_pool2d(&o);
    }
    gc_fail(c, "averaged_model: unknown layer '%s' in args.model", type);
    return NULL;
}

static bx_module *build_model(gcase *c) {
    const char *desc = gc_arg_str(c, "model", NULL);
    if (!desc) {
        gc_fail(c, "averaged_model: args.model missing");
        return NULL;
    }
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", desc);
    char *s = strchr(buf, ' '); /* skip "MLP " / "CNN " */
    s = s ? s + 1 : buf;
    char *cut = strstr(s, ", input");
    if (cut) *cut = 0;
    char *toks[64];
    int nt = split_top(s, '-', toks, 64);
    bx_module *root = bx_module_new(&pipe_type, NULL);
    bx_module *seq = NULL; /* the Sequential the last named layer went into */
    for (int i = 0; root && i < nt; i++) {
        char *t = trim(toks[i]), *eq = strchr(t, '='), *paren = strchr(t, '(');
        char name[128] = "";
        if (eq && (!paren || eq < paren)) {
            *eq = 0;
            snprintf(name, sizeof name, "%s", trim(t));
            t = eq + 1;
        }
        char *dot = strchr(name, '.');
        if (dot) { /* "net.K": child K of Sequential "net" */
            *dot = 0;
            seq = bx_module_child(root, name);
            if (!seq) {
                seq = bx_nn_sequential();
                if (bx_module_add_child(root, name, seq) != BX_OK) break;
            }
            if (atoi(dot + 1) != bx_module_num_children(seq)) {
                gc_fail(c, "averaged_model: layer %s.%s out of order in args.model", name, dot + 1);
                break;
            }
            *dot = '.';
        } else if (name[0]) {
            seq = NULL;
        }
        bx_module *l = make_layer(c, t, name);
        if (!l) break;
        bx_status st;
        if (seq) st = bx_sequential_append(seq, l);
        else if (name[0]) st = bx_module_add_child(root, name, l);
        else {
            char hidden[32];
            snprintf(hidden, sizeof hidden, "_f%d", i);
            st = bx_module_add_child(root, hidden, l);
        }
        if (st != BX_OK) {
            gc_fail(c, "averaged_model: building the model: %s", bx_errmsg());
            break;
        }
        if (i == nt - 1) return root;
    }
    if (root) gc_fail(c, "averaged_model: cannot build '%s': %s", desc, bx_errmsg());
    bx_module_free(root);
    return NULL;
}

/* ---- loading from the case ------------------------------------------------------ */

typedef struct lookup_ud {
    gcase *c;
    const char *prefixes[2];
} lookup_ud;

static const bx_tensor *case_lookup(void *ud, const char *name) {
    lookup_ud *u = ud;
    char key[512];
    for (int i = 0; i < 2 && u->prefixes[i]; i++) {
        snprintf(key, sizeof key, "%s%s", u->prefixes[i], name);
        const bx_tensor *t = gc_get(u->c, key);
        if (t) return t;
    }
    return NULL;
}

/* Compares every entry of l with `<prefix><name>`; required ones must exist. */
static void compare_list(gcase *c, const char *prefix, const bx_named_tensors *l, bool required) {
    char key[512];
    for (int i = 0; l && i < l->n; i++) {
        snprintf(key, sizeof key, "%s%s", prefix, l->names[i]);
        if (required ? gc_need(c, key) != NULL : gc_get(c, key) != NULL) gc_compare(c, key, l->tensors[i]);
    }
}

typedef struct case_src {
    gcase *c;
    int j;
} case_src;

static bx_tensor *case_next(void *ud, bx_step *st) {
    (void)st;
    case_src *s = ud;
    char key[64];
    snprintf(key, sizeof key, "in.loader.%d", s->j);
    const bx_tensor *t = gc_get(s->c, key);
    if (!t) return NULL;
    s->j++;
    return (bx_tensor *)t; /* read-only use: the forward does not write its input */
}

/* update_bn through a bx_loader when the batches look like one (sizes
 * b, ..., b, r <= b); returns false when they do not (caller falls back). */
static bool update_bn_via_loader(gcase *c, bx_module *m, bx_step *st) {
    const bx_tensor *b[256];
    int nb = 0;
    char key[64];
    for (; nb < 256; nb++) {
        snprintf(key, sizeof key, "in.loader.%d", nb);
        if (!(b[nb] = gc_get(c, key))) break;
    }
    if (nb == 0) return false;
    int64_t bs = b[0]->shape[0], total = 0;
    for (int i = 0; i < nb; i++) {
        if (b[i]->ndim != b[0]->ndim || b[i]->dtype != BX_F32 || !bx_is_contiguous(b[i])) return false;
        for (int d = 1; d < b[i]->ndim; d++)
            if (b[i]->shape[d] != b[0]->shape[d]) return false;
        if ((i < nb - 1 && b[i]->shape[0] != bs) || b[i]->shape[0] > bs || b[i]->shape[0] < 1) return false;
        total += b[i]->shape[0];
    }
    int64_t shape[BX_MAX_DIMS];
    memcpy(shape, b[0]->shape, sizeof shape);
    shape[0] = total;
    bx_tensor *x = bx_tensor_new(BX_F32, b[0]->ndim, shape);
    if (!x) return false;
    size_t off = 0;
    for (int i = 0; i < nb; i++) {
        size_t bytes = (size_t)bx_numel(b[i]) * sizeof(float);
        memcpy((char *)x->data + off, b[i]->data, bytes);
        off += bytes;
    }
    bx_dataset *ds = bx_dataset_from_tensors(x, NULL, true);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = bs;
    bx_loader *l = ds ? bx_loader_new(ds, &lo) : NULL;
    if (!l || bx_loader_len(l) != nb) {
        bx_loader_free(l);
        bx_dataset_free(ds);
        return false;
    }
    if (bx_update_bn_loader(m, l, st) != BX_OK) gc_fail(c, "update_bn (loader): %s", bx_errmsg());
    bx_loader_free(l);
    bx_dataset_free(ds);
    return true;
}

static void run_averaged_model(gcase *c) {
    bx_module *model = build_model(c);
    if (!model) return;
    bx_averaged_model *avg = NULL;
    bx_step *st = bx_step_new();
    lookup_ud init = {c, {"param.", "buf."}};
    if (bx_module_load_state_dict_lookup(model, case_lookup, &init, true) != BX_OK) {
        gc_fail(c, "averaged_model: loading param.*/buf.*: %s", bx_errmsg());
        goto done;
    }
    bx_averaged_model_opts o = BX_AVERAGED_MODEL_OPTS_INIT;
    o.use_buffers = gc_arg_bool(c, "use_buffers", false);
    const char *fn = gc_arg_str(c, "avg_fn", "default");
    if (strncmp(fn, "default", 7) != 0) {
        gc_fail(c, "averaged_model: avg_fn '%s' not understood (only the default running mean)", fn);
        goto done;
    }
    avg = bx_averaged_model_new(model, &o);
    if (!avg || !st) {
        gc_fail(c, "averaged_model: %s", bx_errmsg());
        goto done;
    }
    bx_module *am = bx_averaged_model_module(avg);
    int64_t nsnap = gc_arg_int(c, "snapshots", 0);
    for (int k = 1; nsnap <= 0 || k <= nsnap; k++) {
        char pre[64], key[96];
        snprintf(pre, sizeof pre, "in.snap%d.", k);
        bx_named_tensors *params = bx_module_named_parameters(model);
        snprintf(key, sizeof key, "%s%s", pre, params && params->n ? params->names[0] : "");
        bool present = params && params->n && gc_get(c, key);
        bx_named_tensors_free(params);
        if (!present) {
            if (nsnap > 0) gc_fail(c, "averaged_model: snapshot %d missing", k);
            break;
        }
        /* the snapshot model: parameters (and buffers when given) from in.snapK.* */
        lookup_ud snap = {c, {pre, NULL}};
        if (bx_module_load_state_dict_lookup(model, case_lookup, &snap, o.use_buffers) != BX_OK) {
            gc_fail(c, "averaged_model: loading %s*: %s", pre, bx_errmsg());
            goto done;
        }
        params = bx_module_named_parameters(model);
        for (int i = 0; params && i < params->n; i++) {
            snprintf(key, sizeof key, "%s%s", pre, params->names[i]);
            gc_need(c, key);
        }
        bx_named_tensors_free(params);
        if (bx_averaged_model_update(avg, model) != BX_OK) {
            gc_fail(c, "averaged_model: update_parameters %d: %s", k, bx_errmsg());
            goto done;
        }
        snprintf(pre, sizeof pre, "out.step%d.", k);
        bx_named_tensors *ap = bx_module_named_parameters(am), *ab = bx_module_named_buffers(am);
        compare_list(c, pre, ap, true);
        compare_list(c, pre, ab, o.use_buffers);
        bx_named_tensors_free(ap);
        bx_named_tensors_free(ab);
    }
    bx_named_tensors *ab = bx_module_named_buffers(am);
    compare_list(c, "out.before_update_bn.", ab, false);
    bx_named_tensors_free(ab);

    if (!update_bn_via_loader(c, am, st)) {
        case_src src = {c, 0};
        if (bx_update_bn(am, case_next, &src, st) != BX_OK) gc_fail(c, "update_bn: %s", bx_errmsg());
    }
    bx_named_tensors *sd = bx_module_state_dict(am);
    compare_list(c, "out.final.", sd, true);
    bx_named_tensors_free(sd);
    if (gc_get(c, "out.n_averaged")) gc_compare(c, "out.n_averaged", bx_averaged_model_n_averaged_tensor(avg));

    bx_tensor *ex = gc_copy(c, "in.eval_x");
    if (ex && gc_get(c, "out.eval_y")) {
        bx_module_train(am, false);
        bx_step_reset(st);
        bx_no_grad_push(st);
        bx_tensor *y = bx_module_forward(am, st, ex);
        bx_no_grad_pop(st);
        if (bx_step_status(st) != BX_OK) gc_fail(c, "eval forward: %s", bx_step_errmsg(st));
        else gc_compare(c, "out.eval_y", y);
    }
done:
    bx_step_free(st);
    bx_averaged_model_free(avg);
    bx_module_free(model);
}

const gkind golden_kinds_swa[] = {
    {"averaged_model", run_averaged_model},
    {NULL, NULL},
};
