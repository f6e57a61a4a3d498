/* models.c - the networks the CLI builds: MLP (sizes from the config), a
 * LeNet-style CNN and a small ResNet. Each root module runs its children in
 * order, so the model summary lists the layers by name. Sizes are checked
 * against the data (features per sample, classes) before anything runs. */
#include "cli/cli_int.h"

#include <string.h>

#define NP(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* x -> child_0 -> child_1 -> ... */
static bx_tensor *chain_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    for (int i = 0; i < bx_module_num_children(m); i++) x = bx_module_forward(bx_module_child_at(m, i, NULL), st, x);
    return x;
}
static const bx_module_type MLP_TYPE = {"MLP", chain_forward, NULL, NULL, NULL, NULL};
static const bx_module_type LENET_TYPE = {"LeNet", chain_forward, NULL, NULL, NULL, NULL};
static const bx_module_type RESNET_TYPE = {"ResNet", chain_forward, NULL, NULL, NULL, NULL};
static const bx_module_type CNN_TYPE = {"CNN", chain_forward, NULL, NULL, NULL, NULL};

static int64_t sample_numel(const bx__data *d) {
    int64_t n = 1;
    for (int i = 0; i < d->sample_ndim; i++) n *= d->sample_shape[i];
    return n;
}
static const char *shape_text(const bx__data *d, char *buf, size_t n) {
    size_t l = (size_t)snprintf(buf, n, "(");
    for (int i = 0; i < d->sample_ndim && l < n; i++)
        l += (size_t)snprintf(buf + l, n - l, "%s%lld", i ? "," : "", (long long)d->sample_shape[i]);
    if (l < n) snprintf(buf + l, n - l, ")");
    return buf;
}

static bx_status add(bx_module *m, const char *name, bx_module *child) {
    return bx_module_add_child(m, name, child);
}

static bx_module *activation(const char *a) {
    if (!strcmp(a, "tanh")) return bx_nn_tanh();
    if (!strcmp(a, "sigmoid")) return bx_nn_sigmoid();
    if (!strcmp(a, "gelu")) return bx_nn_gelu(BX_GELU_EXACT);
    if (!strcmp(a, "leaky_relu")) return bx_nn_leaky_relu(0.01f);
    return bx_nn_relu();
}

/* ---- MLP -------------------------------------------------------------------- */
static const bx__param MLP_PARAMS[] = {
    {"sizes", BX_P_INTS, "[784, 256, 128, 10]", NULL},
    {"activation", BX_P_STR, "relu", "relu|tanh|sigmoid|gelu|leaky_relu"},
    {"dropout", BX_P_FLOAT, "0.0", NULL},
};
static bx_status build_mlp(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                           void *out) {
    const bx_state *sz = bx_state_get(a, "sizes");
    size_t n = bx_state_len(sz);
    char sb[64];
    if (n < 2) return bx__error(BX_ERR_INVALID, "%s.sizes: got a list of %zu items, expected at least 2 (inputs, ..., classes)", where, n);
    for (size_t i = 0; i < n; i++)
        if (bx_state_get_int(bx_state_at(sz, i)) < 1)
            return bx__error(BX_ERR_INVALID, "%s.sizes[%zu]: got %lld, expected a size >= 1", where, i,
                             (long long)bx_state_get_int(bx_state_at(sz, i)));
    double p = bx__arg_float(a, "dropout");
    if (!(p >= 0 && p < 1)) return bx__error(BX_ERR_INVALID, "%s.dropout: got %g, expected a number in [0, 1)", where, p);
    if (ctx->data) {
        int64_t in = bx_state_get_int(bx_state_at(sz, 0)), last = bx_state_get_int(bx_state_at(sz, n - 1));
        if (in != sample_numel(ctx->data))
            return bx__error(BX_ERR_INVALID, "%s.sizes[0]: got %lld, expected %lld: the data's samples are %s", where,
                             (long long)in, (long long)sample_numel(ctx->data), shape_text(ctx->data, sb, sizeof sb));
        if (last != ctx->data->num_classes)
            return bx__error(BX_ERR_INVALID, "%s.sizes[%zu]: got %lld, expected %lld: the number of classes in the data",
                             where, n - 1, (long long)last, (long long)ctx->data->num_classes);
    }
    bx_module *m = bx_module_new(&MLP_TYPE, NULL);
    bx_status s = m ? add(m, "flatten", bx_nn_flatten(1, -1)) : BX_ERR_NOMEM;
    char name[32];
    for (size_t i = 0; s == BX_OK && i + 1 < n; i++) {
        snprintf(name, sizeof name, "fc%zu", i + 1);
        s = add(m, name, bx_nn_linear(bx_state_get_int(bx_state_at(sz, i)), bx_state_get_int(bx_state_at(sz, i + 1)),
                                      true, &ctx->rng));
        if (s == BX_OK && i + 2 < n) {
            snprintf(name, sizeof name, "act%zu", i + 1);
            s = add(m, name, activation(bx__arg_str(a, "activation")));
            if (s == BX_OK && p > 0) {
                snprintf(name, sizeof name, "drop%zu", i + 1);
                s = add(m, name, bx_nn_dropout((float)p));
            }
        }
    }
    if (s != BX_OK) {
        bx_module_free(m);
        bx__error_prefix("%s", where);
        return s ? s : BX_ERR_NOMEM;
    }
    ((bx__model_out *)out)->module = m;
    return BX_OK;
}
const bx__class bx__model_mlp = {BX_KIND_MODEL, "MLP", MLP_PARAMS, NP(MLP_PARAMS),
                                 "multi-layer perceptron: Flatten, then Linear+activation per size", build_mlp};

/* ---- LeNet ------------------------------------------------------------------- */
static const bx__param LENET_PARAMS[] = {
    {"num_classes", BX_P_INT | BX_P_NULL, "null", NULL},
    {"dropout", BX_P_FLOAT, "0.0", NULL},
};
static bx_status need_image(const bx__data *d, const char *cls, const char *where, int64_t min_hw) {
    char sb[64];
    if (!d) return BX_OK;
    if (d->sample_ndim != 3 || d->sample_shape[1] < min_hw || d->sample_shape[2] < min_hw)
        return bx__error(BX_ERR_INVALID, "%s: %s needs image samples (C,H,W) of at least %lldx%lld; the data gives %s",
                         where, cls, (long long)min_hw, (long long)min_hw, shape_text(d, sb, sizeof sb));
    return BX_OK;
}
static int64_t classes(const bx_state *a, const bx__build_ctx *ctx) {
    return bx__arg_is_null(a, "num_classes") ? (ctx->data ? ctx->data->num_classes : 10) : bx__arg_int(a, "num_classes");
}
static bx_status build_lenet(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                             void *out) {
    bx_status s = need_image(ctx->data, "LeNet", where, 12);
    if (s != BX_OK) return s;
    int64_t C = ctx->data ? ctx->data->sample_shape[0] : 1, H = ctx->data ? ctx->data->sample_shape[1] : 28,
            W = ctx->data ? ctx->data->sample_shape[2] : 28, nc = classes(a, ctx);
    if (nc < 1) return bx__error(BX_ERR_INVALID, "%s.num_classes: got %lld, expected >= 1", where, (long long)nc);
    double p = bx__arg_float(a, "dropout");
    if (!(p >= 0 && p < 1)) return bx__error(BX_ERR_INVALID, "%s.dropout: got %g, expected a number in [0, 1)", where, p);
    bx_conv2d_opts pad2 = BX_CONV2D_OPTS_INIT;
    pad2.padding[0] = pad2.padding[1] = 2;
    int64_t h = ((H / 2) - 4) / 2, w = ((W / 2) - 4) / 2;
    bx_module *m = bx_module_new(&LENET_TYPE, NULL);
    s = m ? BX_OK : BX_ERR_NOMEM;
    if (s == BX_OK) s = add(m, "conv1", bx_nn_conv2d(C, 6, 5, 5, &pad2, true, &ctx->rng));
    if (s == BX_OK) s = add(m, "relu1", bx_nn_relu());
    if (s == BX_OK) s = add(m, "pool1", bx_nn_max_pool2d(NULL));
    if (s == BX_OK) s = add(m, "conv2", bx_nn_conv2d(6, 16, 5, 5, NULL, true, &ctx->rng));
    if (s == BX_OK) s = add(m, "relu2", bx_nn_relu());
    if (s == BX_OK) s = add(m, "pool2", bx_nn_max_pool2d(NULL));
    if (s == BX_OK) s = add(m, "flatten", bx_nn_flatten(1, -1));
    if (s == BX_OK) s = add(m, "fc1", bx_nn_linear(16 * h * w, 120, true, &ctx->rng));
    if (s == BX_OK) s = add(m, "relu3", bx_nn_relu());
    if (s == BX_OK && p > 0) s = add(m, "drop", bx_nn_dropout((float)p));
    if (s == BX_OK) s = add(m, "fc2", bx_nn_linear(120, 84, true, &ctx->rng));
    if (s == BX_OK) s = add(m, "relu4", bx_nn_relu());
    if (s == BX_OK) s = add(m, "fc3", bx_nn_linear(84, nc, true, &ctx->rng));
    if (s != BX_OK) {
        bx_module_free(m);
        bx__error_prefix("%s", where);
        return s;
    }
    ((bx__model_out *)out)->module = m;
    return BX_OK;
}
const bx__class bx__model_lenet = {BX_KIND_MODEL, "LeNet", LENET_PARAMS, NP(LENET_PARAMS),
                                   "LeNet-5 style CNN: 2 conv+pool, 3 linear", build_lenet};

/* ---- CNN ------------------------------------------------------------------------ */
/* Per entry of channels: conv<i> (kernel_size, padding k/2), relu<i>, pool<i>
 * (max 2x2); then flatten, fc1 (-> hidden), relu, fc2 (-> classes). The
 * default is the CNN of bench/ (c32-pool-c64-pool-fc128-fc10). */
static const bx__param CNN_PARAMS[] = {
    {"channels", BX_P_INTS, "[32, 64]", NULL},
    {"hidden", BX_P_INT, "128", NULL},
    {"kernel_size", BX_P_INT, "3", NULL},
    {"num_classes", BX_P_INT | BX_P_NULL, "null", NULL},
    {"dropout", BX_P_FLOAT, "0.0", NULL},
};
static bx_status build_cnn(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx, void *out) {
    const bx_state *ch = bx_state_get(a, "channels");
    size_t ns = bx_state_len(ch);
    int64_t hidden = bx__arg_int(a, "hidden"), k = bx__arg_int(a, "kernel_size"), nc = classes(a, ctx);
    if (ns < 1 || ns > 6) return bx__error(BX_ERR_INVALID, "%s.channels: got %zu layers, expected 1 to 6", where, ns);
    for (size_t i = 0; i < ns; i++)
        if (bx_state_get_int(bx_state_at(ch, i)) < 1)
            return bx__error(BX_ERR_INVALID, "%s.channels[%zu]: got %lld, expected >= 1", where, i,
                             (long long)bx_state_get_int(bx_state_at(ch, i)));
    if (hidden < 1) return bx__error(BX_ERR_INVALID, "%s.hidden: got %lld, expected >= 1", where, (long long)hidden);
    if (k < 1 || k % 2 == 0)
        return bx__error(BX_ERR_INVALID, "%s.kernel_size: got %lld, expected an odd size >= 1 (padding k/2 keeps H, W)",
                         where, (long long)k);
    if (nc < 1) return bx__error(BX_ERR_INVALID, "%s.num_classes: got %lld, expected >= 1", where, (long long)nc);
    double p = bx__arg_float(a, "dropout");
    if (!(p >= 0 && p < 1)) return bx__error(BX_ERR_INVALID, "%s.dropout: got %g, expected a number in [0, 1)", where, p);
    bx_status s = need_image(ctx->data, "CNN", where, (int64_t)1 << ns);
    if (s != BX_OK) return s;
    int64_t C = ctx->data ? ctx->data->sample_shape[0] : 1, H = ctx->data ? ctx->data->sample_shape[1] : 28,
            W = ctx->data ? ctx->data->sample_shape[2] : 28;
    bx_conv2d_opts pad = BX_CONV2D_OPTS_INIT;
    pad.padding[0] = pad.padding[1] = k / 2;
    bx_module *m = bx_module_new(&CNN_TYPE, NULL);
    s = m ? BX_OK : BX_ERR_NOMEM;
    char name[32];
    int64_t in = C;
    for (size_t i = 0; s == BX_OK && i < ns; i++) {
        int64_t o = bx_state_get_int(bx_state_at(ch, i));
        snprintf(name, sizeof name, "conv%zu", i + 1);
        s = add(m, name, bx_nn_conv2d(in, o, k, k, &pad, true, &ctx->rng));
        snprintf(name, sizeof name, "relu%zu", i + 1);
        if (s == BX_OK) s = add(m, name, bx_nn_relu());
        snprintf(name, sizeof name, "pool%zu", i + 1);
        if (s == BX_OK) s = add(m, name, bx_nn_max_pool2d(NULL));
        in = o;
        H /= 2;
        W /= 2;
    }
    snprintf(name, sizeof name, "relu%zu", ns + 1);
    if (s == BX_OK) s = add(m, "flatten", bx_nn_flatten(1, -1));
    if (s == BX_OK) s = add(m, "fc1", bx_nn_linear(in * H * W, hidden, true, &ctx->rng));
    if (s == BX_OK) s = add(m, name, bx_nn_relu());
    if (s == BX_OK && p > 0) s = add(m, "drop", bx_nn_dropout((float)p));
    if (s == BX_OK) s = add(m, "fc2", bx_nn_linear(hidden, nc, true, &ctx->rng));
    if (s != BX_OK) {
        bx_module_free(m);
        bx__error_prefix("%s", where);
        return s;
    }
    ((bx__model_out *)out)->module = m;
    return BX_OK;
}
const bx__class bx__model_cnn = {BX_KIND_MODEL, "CNN", CNN_PARAMS, NP(CNN_PARAMS),
                                 "plain CNN: (conv 3x3 + ReLU + maxpool 2) per channels entry, then Linear-ReLU-Linear",
                                 build_cnn};

/* ---- ResNet -------------------------------------------------------------------- */
/* BasicBlock: relu(bn2(conv2(relu(bn1(conv1 x)))) + shortcut(x)) */
static bx_tensor *block_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    bx_tensor *y = bx_module_forward(bx_module_child(m, "conv1"), st, x);
    y = bx_relu(st, bx_module_forward(bx_module_child(m, "bn1"), st, y));
    y = bx_module_forward(bx_module_child(m, "bn2"), st, bx_module_forward(bx_module_child(m, "conv2"), st, y));
    bx_module *ds = bx_module_child(m, "downsample");
    return bx_relu(st, bx_add(st, y, ds ? bx_module_forward(ds, st, x) : x));
}
static const bx_module_type BLOCK_TYPE = {"BasicBlock", block_forward, NULL, NULL, NULL, NULL};

static bx_module *conv3(int64_t in, int64_t out, int stride, bx_rng *rng) {
    bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
    o.stride[0] = o.stride[1] = stride;
    o.padding[0] = o.padding[1] = 1;
    return bx_nn_conv2d(in, out, 3, 3, &o, false, rng);
}
static bx_module *basic_block(int64_t in, int64_t out, int stride, bx_rng *rng) {
    bx_module *b = bx_module_new(&BLOCK_TYPE, NULL);
    if (!b) return NULL;
    bx_status s = add(b, "conv1", conv3(in, out, stride, rng));
    if (s == BX_OK) s = add(b, "bn1", bx_nn_batchnorm2d(out, NULL));
    if (s == BX_OK) s = add(b, "conv2", conv3(out, out, 1, rng));
    if (s == BX_OK) s = add(b, "bn2", bx_nn_batchnorm2d(out, NULL));
    if (s == BX_OK && (stride != 1 || in != out)) {
        bx_conv2d_opts o = BX_CONV2D_OPTS_INIT;
        o.stride[0] = o.stride[1] = stride;
        bx_module *ds = bx_nn_sequential();
        if (ds) s = bx_sequential_append(ds, bx_nn_conv2d(in, out, 1, 1, &o, false, rng));
        if (ds && s == BX_OK) s = bx_sequential_append(ds, bx_nn_batchnorm2d(out, NULL));
        if (s == BX_OK) s = add(b, "downsample", ds);
        else bx_module_free(ds);
    }
    if (s != BX_OK) {
        bx_module_free(b);
        return NULL;
    }
    return b;
}
static const bx__param RESNET_PARAMS[] = {
    {"widths", BX_P_INTS, "[16, 32, 64]", NULL},
    {"blocks_per_stage", BX_P_INT, "1", NULL},
    {"num_classes", BX_P_INT | BX_P_NULL, "null", NULL},
};
static bx_status build_resnet(const bx__class *c, const bx_state *a, const char *where, bx__build_ctx *ctx,
                              void *out) {
    bx_status s = need_image(ctx->data, "ResNet", where, 4);
    if (s != BX_OK) return s;
    const bx_state *wd = bx_state_get(a, "widths");
    size_t ns = bx_state_len(wd);
    int64_t nb = bx__arg_int(a, "blocks_per_stage"), nc = classes(a, ctx);
    if (ns < 1 || ns > 6) return bx__error(BX_ERR_INVALID, "%s.widths: got %zu stages, expected 1 to 6", where, ns);
    for (size_t i = 0; i < ns; i++)
        if (bx_state_get_int(bx_state_at(wd, i)) < 1)
            return bx__error(BX_ERR_INVALID, "%s.widths[%zu]: got %lld, expected >= 1", where, i,
                             (long long)bx_state_get_int(bx_state_at(wd, i)));
    if (nb < 1 || nb > 16) return bx__error(BX_ERR_INVALID, "%s.blocks_per_stage: got %lld, expected 1 to 16", where, (long long)nb);
    if (nc < 1) return bx__error(BX_ERR_INVALID, "%s.num_classes: got %lld, expected >= 1", where, (long long)nc);
    int64_t C = ctx->data ? ctx->data->sample_shape[0] : 1, w0 = bx_state_get_int(bx_state_at(wd, 0));
    bx_module *m = bx_module_new(&RESNET_TYPE, NULL);
    s = m ? BX_OK : BX_ERR_NOMEM;
    if (s == BX_OK) s = add(m, "conv1", conv3(C, w0, 1, &ctx->rng));
    if (s == BX_OK) s = add(m, "bn1", bx_nn_batchnorm2d(w0, NULL));
    if (s == BX_OK) s = add(m, "relu", bx_nn_relu());
    int64_t in = w0;
    for (size_t i = 0; s == BX_OK && i < ns; i++) {
        int64_t w = bx_state_get_int(bx_state_at(wd, i));
        bx_module *stage = bx_nn_sequential();
        for (int64_t j = 0; stage && s == BX_OK && j < nb; j++) {
            s = bx_sequential_append(stage, basic_block(in, w, (i > 0 && j == 0) ? 2 : 1, &ctx->rng));
            in = w;
        }
        char name[16];
        snprintf(name, sizeof name, "layer%zu", i + 1);
        if (s == BX_OK) s = add(m, name, stage);
        else bx_module_free(stage);
    }
    if (s == BX_OK) s = add(m, "avgpool", bx_nn_adaptive_avg_pool2d(1, 1));
    if (s == BX_OK) s = add(m, "flatten", bx_nn_flatten(1, -1));
    if (s == BX_OK) s = add(m, "fc", bx_nn_linear(in, nc, true, &ctx->rng));
    if (s != BX_OK) {
        bx_module_free(m);
        bx__error_prefix("%s", where);
        return s;
    }
    ((bx__model_out *)out)->module = m;
    return BX_OK;
}
const bx__class bx__model_resnet = {BX_KIND_MODEL, "ResNet", RESNET_PARAMS, NP(RESNET_PARAMS),
                                    "small ResNet: stem conv, BasicBlock stages, global pool, linear", build_resnet};
