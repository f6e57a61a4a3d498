/* model_desc.c - builds the model a golden case describes in `args.model`
 * (see model_desc.h). */
#include "model_desc.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- model description ---------------------------------------------------- */

/* The first problem met while reading args.model (reported only when no
 * fallback applies). */
typedef struct parse_err {
    char msg[300];
} parse_err;

static void perr(parse_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void perr(parse_err *e, const char *fmt, ...) {
    if (e->msg[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
}

/* Integer option `key=` in the argument text, else the positional argument
 * `pos` (0-based; -1: none), else dflt. */
static long arg_int(const char *args, const char *key, int pos, long dflt) {
    if (!args) return dflt;
    char pat[32];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *k = strstr(args, pat);
    if (k) {
        k += strlen(pat);
        if (*k == '(') k++; /* stride=(2, 2): first value */
        return strtol(k, NULL, 10);
    }
    const char *p = args;
    for (int i = 0; p && *p && i <= pos; i++) {
        while (*p == ' ') p++;
        if (i == pos) {
            if (!isdigit((unsigned char)*p) && *p != '-') return dflt;
            return strtol(p, NULL, 10);
        }
        p = strchr(p, ',');
        if (p) p++;
    }
    return dflt;
}

static double arg_num(const char *args, const char *key, int pos, double dflt) {
    if (!args) return dflt;
    char pat[32];
    snprintf(pat, sizeof pat, "%s=", key);
    const char *k = strstr(args, pat);
    if (k) return strtod(k + strlen(pat), NULL);
    if (pos == 0) {
        while (*args == ' ') args++;
        if (isdigit((unsigned char)*args) || *args == '-' || *args == '.') return strtod(args, NULL);
    }
    return dflt;
}

static bool arg_false(const char *args, const char *key) {
    char pat[40];
    snprintf(pat, sizeof pat, "%s=False", key);
    return args && strstr(args, pat);
}

/* The parameter `<path>.<leaf>` of the case (param.* tensors). */
static const bx_tensor *case_param(gcase *c, const char *path, const char *leaf) {
    char name[256];
    snprintf(name, sizeof name, "param.%s.%s", path, leaf);
    return gc_get(c, name);
}

/* One layer from its type name ("Linear", "relu", "MaxPool2d") and argument
 * text (inside the parentheses, or NULL); `path` is its dotted name, used to
 * read the parameter shapes. NULL (reason in *pe) on anything not understood. */
static bx_module *make_layer(gcase *c, parse_err *pe, const char *type, const char *args, const char *path) {
    char t[64];
    size_t n = 0;
    for (; *type && n < sizeof t - 1; type++)
        if (*type != '_') t[n++] = (char)tolower((unsigned char)*type);
    t[n] = '\0';
    const bx_tensor *w = case_param(c, path, "weight");
    if (strcmp(t, "linear") == 0) {
        if (!w || w->ndim != 2) {
            perr(pe, "model: no 2-d param.%s.weight for Linear", path);
            return NULL;
        }
        return bx_nn_linear(w->shape[1], w->shape[0], case_param(c, path, "bias") != NULL, NULL);
    }
    if (strcmp(t, "conv2d") == 0) {
        if (!w || w->ndim != 4) {
            perr(pe, "model: no 4-d param.%s.weight for Conv2d", path);
            return NULL;
        }
        bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
        o.stride[0] = o.stride[1] = (int)arg_int(args, "stride", 3, 1);
        o.padding[0] = o.padding[1] = (int)arg_int(args, "padding", 4, 0);
        o.dilation[0] = o.dilation[1] = (int)arg_int(args, "dilation", 5, 1);
        o.groups = (int)arg_int(args, "groups", 6, 1);
        bool bias = case_param(c, path, "bias") != NULL;
        if (json_is_boolean(json_object_get(gc_args(c), "conv_bias")) && bias != gc_arg_bool(c, "conv_bias", bias))
            perr(pe, "model: args.conv_bias disagrees with the presence of param.%s.bias", path);
        return bx_nn_conv2d(w->shape[1] * o.groups, w->shape[0], (int)w->shape[2], (int)w->shape[3], &o, bias, NULL);
    }
    if (strcmp(t, "batchnorm1d") == 0 || strcmp(t, "batchnorm2d") == 0) {
        bx_batchnorm_opts o = BX_BATCHNORM_OPTS_INIT;
        o.eps = arg_num(args, "eps", -1, 1e-5);
        if (args && strstr(args, "momentum=None")) o.momentum = NAN;
        else o.momentum = arg_num(args, "momentum", -1, 0.1);
        o.affine = !arg_false(args, "affine");
        o.track_running_stats = !arg_false(args, "track_running_stats");
        char name[256];
        snprintf(name, sizeof name, "buf.%s.running_mean", path);
        const bx_tensor *rm = gc_get(c, name);
        int64_t ch = w ? w->shape[0] : rm ? rm->shape[0] : arg_int(args, "num_features", 0, 0);
        return t[9] == '1' ? bx_nn_batchnorm1d(ch, &o) : bx_nn_batchnorm2d(ch, &o);
    }
    if (strcmp(t, "relu") == 0) return bx_nn_relu();
    if (strcmp(t, "tanh") == 0) return bx_nn_tanh();
    if (strcmp(t, "sigmoid") == 0) return bx_nn_sigmoid();
    if (strcmp(t, "identity") == 0) return bx_nn_identity();
    if (strcmp(t, "gelu") == 0)
        return bx_nn_gelu(args && strstr(args, "tanh") ? BX_GELU_TANH : BX_GELU_EXACT);
    if (strcmp(t, "leakyrelu") == 0)
        return bx_nn_leaky_relu((float)arg_num(args, "negative_slope", 0, 0.01));
    if (strcmp(t, "flatten") == 0) return bx_nn_flatten((int)arg_int(args, "start_dim", 0, 1), (int)arg_int(args, "end_dim", 1, -1));
    if (strcmp(t, "dropout") == 0) return bx_nn_dropout((float)arg_num(args, "p", 0, 0.5));
    if (strcmp(t, "maxpool2d") == 0 || strcmp(t, "avgpool2d") == 0) {
        bx_pool2d_opts o = BX_POOL2D_OPTS_INIT;
        o.kernel[0] = o.kernel[1] = (int)arg_int(args, "kernel_size", 0, 2);
        o.stride[0] = o.stride[1] = (int)arg_int(args, "stride", 1, 0);
        o.padding[0] = o.padding[1] = (int)arg_int(args, "padding", 2, 0);
        o.ceil_mode = args && strstr(args, "ceil_mode=True");
        return t[0] == 'm' ? bx_nn_max_pool2d(&o) : bx_nn_avg_pool2d(&o);
    }
    if (strcmp(t, "adaptiveavgpool2d") == 0) {
        long h = arg_int(args, "output_size", 0, 1);
        return bx_nn_adaptive_avg_pool2d(h, arg_int(args, "output_size", 1, h));
    }
    perr(pe, "model: layer type '%s' in args.model is not supported by this runner", type);
    return NULL;
}

/* Adds `layer` under dotted `path` below root, creating Sequential parents. */
static bool add_at(parse_err *pe, bx_module *root, const char *path, bx_module *layer) {
    char buf[256];
    snprintf(buf, sizeof buf, "%s", path);
    bx_module *parent = root;
    char *p = buf, *dot;
    while ((dot = strchr(p, '.'))) {
        *dot = '\0';
        bx_module *ch = bx_module_child(parent, p);
        if (!ch) {
            ch = bx_nn_sequential();
            if (bx_module_add_child(parent, p, ch) != BX_OK) break;
        }
        parent = ch;
        p = dot + 1;
    }
    if (bx_module_add_child(parent, p, layer) != BX_OK) {
        perr(pe, "model: cannot add layer '%s': %s", path, bx_errmsg());
        return false;
    }
    return true;
}

/* Splits the element text "name=Type(args)" / "Type(args)" / "relu" and adds
 * the layer. An unnamed layer right after "<seq>.<K>" is "<seq>.<K+1>" (as in
 * "net.1=BatchNorm1d(8)-ReLU-net.3=Linear(8,3)": the ReLU is net.2); other
 * unnamed layers get a name of their own (they hold no state). `prev` holds
 * the previous element's path. */
static bool add_element(gcase *c, parse_err *pe, bx_module *root, const char *elem, size_t len, int idx,
                        char *prev) {
    char e[256];
    while (len && isspace((unsigned char)*elem)) elem++, len--;
    while (len && isspace((unsigned char)elem[len - 1])) len--;
    if (len == 0 || len >= sizeof e) return true;
    memcpy(e, elem, len);
    e[len] = '\0';
    char path[128];
    char *type = e;
    char *eq = strchr(e, '=');
    char *paren = strchr(e, '(');
    if (eq && (!paren || eq < paren)) {
        *eq = '\0';
        snprintf(path, sizeof path, "%s", e);
        type = eq + 1;
        paren = strchr(type, '(');
    } else {
        const char *dot = strrchr(prev, '.');
        char *end = NULL;
        long k = dot ? strtol(dot + 1, &end, 10) : -1;
        if (dot && end && *end == '\0' && end != dot + 1 && k >= 0)
            snprintf(path, sizeof path, "%.*s.%ld", (int)(dot - prev), prev, k + 1);
        else
            snprintf(path, sizeof path, "_layer%d", idx);
    }
    snprintf(prev, 128, "%s", path);
    char *args = NULL;
    if (paren) {
        *paren = '\0';
        args = paren + 1;
        char *close = strrchr(args, ')');
        if (close) *close = '\0';
    }
    while (*type == ' ') type++;
    bx_module *layer = make_layer(c, pe, type, args, path);
    if (!layer) {
        perr(pe, "model: cannot build layer '%s': %s", path, bx_errmsg());
        return false;
    }
    return add_at(pe, root, path, layer);
}

/* Splits `s` at top-level occurrences of `sep` (outside parentheses); a "-"
 * separator is not one when a digit follows (a negative number). */
static bool add_list(gcase *c, parse_err *pe, bx_module *root, const char *s, size_t len, const char *sep) {
    size_t seplen = strlen(sep), start = 0;
    int depth = 0, idx = 0;
    char prev[128] = "";
    for (size_t i = 0; i <= len; i++) {
        if (i < len && s[i] == '(') depth++;
        if (i < len && s[i] == ')') depth--;
        bool at_sep = i < len && depth == 0 && i + seplen <= len && strncmp(s + i, sep, seplen) == 0;
        if (at_sep && seplen == 1 && *sep == '-' && (i + 1 < len && (isdigit((unsigned char)s[i + 1]) || s[i + 1] == '>')))
            at_sep = false;
        if (i == len || at_sep) {
            if (!add_element(c, pe, root, s + start, i - start, idx++, prev)) return false;
            start = i + seplen;
            i += seplen - 1;
        }
    }
    return true;
}

/* MLP fallback: Linear at every net.K with a weight, ReLU in between. */
static bool mlp_from_params(gcase *c, parse_err *pe, bx_module *root) {
    int last = -1;
    for (int k = 0; k < 64; k++) {
        char path[32];
        snprintf(path, sizeof path, "net.%d", k);
        if (!case_param(c, path, "weight")) continue;
        if (last >= 0 && k - last >= 2) {
            char rp[32];
            snprintf(rp, sizeof rp, "net.%d", k - 1);
            if (!add_at(pe, root, rp, bx_nn_relu())) return false;
        }
        bx_module *l = make_layer(c, pe, "Linear", NULL, path);
        if (!l || !add_at(pe, root, path, l)) return false;
        last = k;
    }
    if (last < 0) perr(pe, "model: no param.net.K.weight to build an MLP from");
    return last >= 0;
}

bx_module *gc_build_model(gcase *c, bool mlp_fallback) {
    const char *desc = gc_arg_str(c, "model", "");
    parse_err pe = {""};
    bx_module *root = bx_nn_sequential();
    size_t len = strcspn(desc, ";");
    const char *input = strstr(desc, ", input");
    if (input && (size_t)(input - desc) < len) len = (size_t)(input - desc);
    const char *seq = strstr(desc, "Sequential(");
    /* a leading label such as "MLP " or "CNN " */
    size_t word = strcspn(desc, " =(");
    if (desc[word] == ' ' && word < len) {
        desc += word + 1;
        len -= word + 1;
    }
    bool ok;
    if (seq && seq >= desc && (size_t)(seq - desc) < len) {
        const char *in = seq + strlen("Sequential(");
        const char *end = desc + len;
        while (end > in && end[-1] != ')') end--;
        ok = end > in && add_list(c, &pe, root, in, (size_t)(end - 1 - in), ",");
    } else if (memchr(desc, '-', len)) {
        const char *arrow = strstr(desc, "->");
        ok = add_list(c, &pe, root, desc, len, arrow && (size_t)(arrow - desc) < len ? "->" : "-");
    } else {
        ok = false;
        perr(&pe, "model: cannot read args.model '%s'", gc_arg_str(c, "model", ""));
    }
    if (!ok && mlp_fallback) {
        /* the text was not understood: rebuild the MLP from its parameters */
        bx_module_free(root);
        root = bx_nn_sequential();
        parse_err pe2 = {""};
        ok = mlp_from_params(c, &pe2, root);
    }
    if (!ok) {
        gc_fail(c, "%s", pe.msg);
        bx_module_free(root);
        return NULL;
    }
    return root;
}

typedef struct prefixes {
    gcase *c;
    const char *a, *b;
} prefixes;

/* <a><name>, else <b><name> */
static const bx_tensor *case_state(void *ud, const char *name) {
    const prefixes *p = ud;
    char key[300];
    snprintf(key, sizeof key, "%s%s", p->a, name);
    const bx_tensor *t = gc_get(p->c, key);
    if (t || !p->b) return t;
    snprintf(key, sizeof key, "%s%s", p->b, name);
    return gc_get(p->c, key);
}

bool gc_load_model(gcase *c, bx_module *m, const char *prefix, const char *prefix2, bool strict) {
    prefixes p = {c, prefix, prefix2};
    if (bx_module_load_state_dict_lookup(m, case_state, &p, strict) == BX_OK) return true;
    gc_fail(c, "loading %s*%s%s into the model: %s", prefix, prefix2 ? " / " : "", prefix2 ? prefix2 : "", bx_errmsg());
    return false;
}
