/* layers.c - built-in layers: Linear, Conv2d, Embedding, Dropout,
 * activations, pools, Flatten, Identity. Each forward fetches its tensors
 * with bx_module_tensor on every call (reparametrisation rule, nn.h). */
#include "nn/nn_int.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *tf(bool b) { return b ? "True" : "False"; }

/* ---- Linear ------------------------------------------------------------------ */

typedef struct linear_impl {
    int64_t in, out;
} linear_impl;

static void *linear_clone(const void *p) { return bx__nn_dup(p, sizeof(linear_impl)); }

/* x (..., in) -> y (..., out) */
static bx_tensor *linear_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    bx_tensor *w = bx_module_tensor(st, m, "weight");
    if (!w) return bx_step_fail(st, BX_ERR_STATE, "Linear: no weight");
    return bx_linear(st, x, w, bx_module_tensor(st, m, "bias"));
}

/* kaiming_uniform_(a=sqrt(5)) gives bound = gain*sqrt(3/fan_in) with
 * gain = sqrt(2/(1+5)): exactly 1/sqrt(fan_in); the bias uses the same bound. */
static bx_status linear_reset(bx_module *m, bx_rng *rng) {
    const linear_impl *li = m->impl;
    double bound = li->in > 0 ? 1.0 / sqrt((double)li->in) : 0.0;
    bx_tensor *w = bx_module_param(m, "weight"), *b = bx_module_param(m, "bias");
    if (w) bx__nn_uniform(w, bound, rng);
    if (b) bx__nn_uniform(b, bound, rng);
    return BX_OK;
}

static void linear_repr(const bx_module *m, char *buf, size_t n) {
    const linear_impl *li = m->impl;
    snprintf(buf, n, "in_features=%lld, out_features=%lld, bias=%s", (long long)li->in, (long long)li->out,
             tf(bx_module_has_param(m, "bias") && bx_module_param(m, "bias")));
}

static const bx_module_type linear_type = {"Linear", linear_forward, bx__free, linear_clone, linear_reset,
                                           linear_repr};

/* Adds weight (and bias or a None slot) and initialises them. */
static bx_module *with_params(bx_module *m, int wnd, const int64_t *wshape, int64_t nbias, bool bias,
                              bx_rng *rng) {
    if (!m) return NULL;
    bx_status s = bx_module_add_param(m, "weight", bx_param_new(wnd, wshape));
    if (s == BX_OK) s = bx_module_add_param(m, "bias", bias ? bx_param_new(1, &nbias) : NULL);
    if (s == BX_OK && bias && !bx_module_param(m, "bias")) s = BX_ERR_NOMEM;
    if (s == BX_OK && !bx_module_param(m, "weight")) s = BX_ERR_NOMEM;
    if (s == BX_OK) s = m->type->reset_parameters(m, rng);
    if (s != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}

bx_module *bx_nn_linear(int64_t in_features, int64_t out_features, bool bias, bx_rng *rng) {
    if (in_features < 0 || out_features < 0) {
        bx__error(BX_ERR_INVALID, "Linear: sizes must be >= 0, got in_features=%lld, out_features=%lld",
                  (long long)in_features, (long long)out_features);
        return NULL;
    }
    linear_impl li = {in_features, out_features};
    int64_t shape[2] = {out_features, in_features};
    return with_params(bx__nn_new_pod(&linear_type, &li, sizeof li), 2, shape, out_features, bias, rng);
}

/* ---- Conv2d --------------------------------------------------------------------- */

typedef struct conv_impl {
    int64_t in, out;
    int kh, kw;
    bx_conv2d_opts o;
} conv_impl;

static void *conv_clone(const void *p) { return bx__nn_dup(p, sizeof(conv_impl)); }

/* x (N,in,H,W) -> y (N,out,H',W') */
static bx_tensor *conv_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    const conv_impl *ci = m->impl;
    bx_tensor *w = bx_module_tensor(st, m, "weight");
    if (!w) return bx_step_fail(st, BX_ERR_STATE, "Conv2d: no weight");
    return bx_conv2d(st, x, w, bx_module_tensor(st, m, "bias"), &ci->o);
}

static bx_status conv_reset(bx_module *m, bx_rng *rng) {
    const conv_impl *ci = m->impl;
    int64_t fan_in = ci->in / ci->o.groups * ci->kh * ci->kw;
    double bound = fan_in > 0 ? 1.0 / sqrt((double)fan_in) : 0.0;
    bx_tensor *w = bx_module_param(m, "weight"), *b = bx_module_param(m, "bias");
    if (w) bx__nn_uniform(w, bound, rng);
    if (b) bx__nn_uniform(b, bound, rng);
    return BX_OK;
}

static void conv_repr(const bx_module *m, char *buf, size_t n) {
    const conv_impl *ci = m->impl;
    const bx_conv2d_opts *o = &ci->o;
    int k = snprintf(buf, n, "%lld, %lld, kernel_size=(%d, %d), stride=(%d, %d)", (long long)ci->in,
                     (long long)ci->out, ci->kh, ci->kw, o->stride[0], o->stride[1]);
    if (k < 0 || (size_t)k >= n) return;
    if (o->padding_same) k += snprintf(buf + k, n - (size_t)k, ", padding=same");
    else if (o->padding[0] || o->padding[1])
        k += snprintf(buf + k, n - (size_t)k, ", padding=(%d, %d)", o->padding[0], o->padding[1]);
    if ((size_t)k < n && (o->dilation[0] != 1 || o->dilation[1] != 1))
        k += snprintf(buf + k, n - (size_t)k, ", dilation=(%d, %d)", o->dilation[0], o->dilation[1]);
    if ((size_t)k < n && o->groups != 1) k += snprintf(buf + k, n - (size_t)k, ", groups=%d", o->groups);
    if ((size_t)k < n && !bx_module_param(m, "bias")) snprintf(buf + k, n - (size_t)k, ", bias=False");
}

static const bx_module_type conv_type = {"Conv2d", conv_forward, bx__free, conv_clone, conv_reset, conv_repr};

bx_module *bx_nn_conv2d(int64_t in_channels, int64_t out_channels, int kh, int kw, const bx_conv2d_opts *o,
                        bool bias, bx_rng *rng) {
    static const bx_conv2d_opts dflt = BX_CONV2D_OPTS_INIT;
    conv_impl ci = {in_channels, out_channels, kh, kw, o ? *o : dflt};
    const bx_conv2d_opts *co = &ci.o;
    const char *bad = NULL;
    if (in_channels <= 0 || out_channels <= 0 || kh <= 0 || kw <= 0) bad = "channels and kernel sizes must be > 0";
    else if (co->groups <= 0) bad = "groups must be > 0";
    else if (in_channels % co->groups || out_channels % co->groups) bad = "in and out channels must be divisible by groups";
    else if (co->stride[0] <= 0 || co->stride[1] <= 0) bad = "stride must be > 0";
    else if (co->dilation[0] <= 0 || co->dilation[1] <= 0) bad = "dilation must be > 0";
    else if (co->padding[0] < 0 || co->padding[1] < 0) bad = "padding must be >= 0";
    else if (co->padding_same && (co->stride[0] != 1 || co->stride[1] != 1))
        bad = "padding='same' is not supported for strided convolutions";
    if (bad) {
        bx__error(BX_ERR_INVALID, "Conv2d(%lld, %lld, kernel_size=(%d, %d), groups=%d): %s", (long long)in_channels,
                  (long long)out_channels, kh, kw, co->groups, bad);
        return NULL;
    }
    int64_t shape[4] = {out_channels, in_channels / co->groups, kh, kw};
    return with_params(bx__nn_new_pod(&conv_type, &ci, sizeof ci), 4, shape, out_channels, bias, rng);
}

bx_status bx_conv2d_get_opts(const bx_module *m, bx_conv2d_opts *out) {
    if (!m || m->type != &conv_type)
        return bx__error(BX_ERR_INVALID, "conv2d_get_opts: module '%s' is not a Conv2d", bx_module_type_name(m));
    *out = ((const conv_impl *)m->impl)->o;
    return BX_OK;
}

/* ---- Embedding -------------------------------------------------------------------- */

typedef struct embedding_impl {
    int64_t num, dim, padding_idx; /* normalised to [0, num) or BX_NO_PADDING_IDX */
} embedding_impl;

static void *embedding_clone(const void *p) { return bx__nn_dup(p, sizeof(embedding_impl)); }

/* idx i64 (...) -> y (..., dim) */
static bx_tensor *embedding_forward(bx_module *m, bx_step *st, bx_tensor *idx) {
    const embedding_impl *ei = m->impl;
    bx_tensor *w = bx_module_tensor(st, m, "weight");
    if (!w) return bx_step_fail(st, BX_ERR_STATE, "Embedding: no weight");
    return bx_embedding(st, idx, w, ei->padding_idx);
}

static bx_status embedding_reset(bx_module *m, bx_rng *rng) {
    const embedding_impl *ei = m->impl;
    bx_tensor *w = bx_module_param(m, "weight");
    if (!w) return BX_OK;
    float *d = w->data;
    int64_t n = bx_numel(w);
    for (int64_t i = 0; i < n; i++) d[i] = rng ? bx_rng_normal(rng) : 0.0f;
    if (ei->padding_idx != BX_NO_PADDING_IDX) memset(d + ei->padding_idx * ei->dim, 0, sizeof(float) * (size_t)ei->dim);
    return BX_OK;
}

static void embedding_repr(const bx_module *m, char *buf, size_t n) {
    const embedding_impl *ei = m->impl;
    int k = snprintf(buf, n, "%lld, %lld", (long long)ei->num, (long long)ei->dim);
    if (k >= 0 && (size_t)k < n && ei->padding_idx != BX_NO_PADDING_IDX)
        snprintf(buf + k, n - (size_t)k, ", padding_idx=%lld", (long long)ei->padding_idx);
}

static const bx_module_type embedding_type = {"Embedding", embedding_forward, bx__free, embedding_clone,
                                              embedding_reset, embedding_repr};

bx_module *bx_nn_embedding(int64_t num_embeddings, int64_t embedding_dim, int64_t padding_idx, bx_rng *rng) {
    if (num_embeddings < 0 || embedding_dim < 0) {
        bx__error(BX_ERR_INVALID, "Embedding(%lld, %lld): sizes must be >= 0", (long long)num_embeddings,
                  (long long)embedding_dim);
        return NULL;
    }
    int64_t pad = padding_idx;
    if (pad != BX_NO_PADDING_IDX) {
        if (pad < -num_embeddings || pad >= num_embeddings) {
            bx__error(BX_ERR_INVALID, "Embedding(%lld, %lld): padding_idx %lld must be within num_embeddings",
                      (long long)num_embeddings, (long long)embedding_dim, (long long)padding_idx);
            return NULL;
        }
        if (pad < 0) pad += num_embeddings;
    }
    embedding_impl ei = {num_embeddings, embedding_dim, pad};
    bx_module *m = bx__nn_new_pod(&embedding_type, &ei, sizeof ei);
    if (!m) return NULL;
    int64_t shape[2] = {num_embeddings, embedding_dim};
    bx_tensor *w = bx_param_new(2, shape);
    if (!w || bx_module_add_param(m, "weight", w) != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    embedding_reset(m, rng);
    return m;
}

/* ---- Dropout and activations ------------------------------------------------------------ */

typedef struct scalar_impl {
    float v;
    int i;
} scalar_impl;

static void *scalar_clone(const void *p) { return bx__nn_dup(p, sizeof(scalar_impl)); }

static bx_tensor *dropout_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    return bx_dropout(st, x, ((const scalar_impl *)m->impl)->v, m->training);
}
static void dropout_repr(const bx_module *m, char *buf, size_t n) {
    snprintf(buf, n, "p=%g, inplace=False", (double)((const scalar_impl *)m->impl)->v);
}
static const bx_module_type dropout_type = {"Dropout", dropout_forward, bx__free, scalar_clone, NULL, dropout_repr};

bx_module *bx_nn_dropout(float p) {
    if (!(p >= 0.0f && p <= 1.0f)) {
        bx__error(BX_ERR_INVALID, "Dropout: probability has to be between 0 and 1, but got %g", (double)p);
        return NULL;
    }
    scalar_impl si = {p, 0};
    return bx__nn_new_pod(&dropout_type, &si, sizeof si);
}

static bx_tensor *relu_forward(bx_module *m, bx_step *st, bx_tensor *x) { return bx_relu(st, x); }
static bx_tensor *sigmoid_forward(bx_module *m, bx_step *st, bx_tensor *x) { return bx_sigmoid(st, x); }
static bx_tensor *tanh_forward(bx_module *m, bx_step *st, bx_tensor *x) { return bx_tanh(st, x); }
static bx_tensor *identity_forward(bx_module *m, bx_step *st, bx_tensor *x) { return x; }
static bx_tensor *leaky_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    return bx_leaky_relu(st, x, ((const scalar_impl *)m->impl)->v);
}
static bx_tensor *gelu_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    return bx_gelu(st, x, (bx_gelu_approx)((const scalar_impl *)m->impl)->i);
}
static void leaky_repr(const bx_module *m, char *buf, size_t n) {
    snprintf(buf, n, "negative_slope=%g", (double)((const scalar_impl *)m->impl)->v);
}
static void gelu_repr(const bx_module *m, char *buf, size_t n) {
    snprintf(buf, n, "approximate='%s'", ((const scalar_impl *)m->impl)->i == BX_GELU_TANH ? "tanh" : "none");
}

static const bx_module_type relu_type = {"ReLU", relu_forward, NULL, NULL, NULL, NULL};
static const bx_module_type sigmoid_type = {"Sigmoid", sigmoid_forward, NULL, NULL, NULL, NULL};
static const bx_module_type tanh_type = {"Tanh", tanh_forward, NULL, NULL, NULL, NULL};
static const bx_module_type identity_type = {"Identity", identity_forward, NULL, NULL, NULL, NULL};
static const bx_module_type leaky_type = {"LeakyReLU", leaky_forward, bx__free, scalar_clone, NULL, leaky_repr};
static const bx_module_type gelu_type = {"GELU", gelu_forward, bx__free, scalar_clone, NULL, gelu_repr};

bx_module *bx_nn_relu(void) { return bx_module_new(&relu_type, NULL); }
bx_module *bx_nn_sigmoid(void) { return bx_module_new(&sigmoid_type, NULL); }
bx_module *bx_nn_tanh(void) { return bx_module_new(&tanh_type, NULL); }
bx_module *bx_nn_identity(void) { return bx_module_new(&identity_type, NULL); }

bx_module *bx_nn_leaky_relu(float negative_slope) {
    scalar_impl si = {negative_slope, 0};
    return bx__nn_new_pod(&leaky_type, &si, sizeof si);
}

bx_module *bx_nn_gelu(bx_gelu_approx approx) {
    if (approx != BX_GELU_EXACT && approx != BX_GELU_TANH) {
        bx__error(BX_ERR_INVALID, "GELU: unknown approximation %d", (int)approx);
        return NULL;
    }
    scalar_impl si = {0.0f, (int)approx};
    return bx__nn_new_pod(&gelu_type, &si, sizeof si);
}

/* ---- pools ---------------------------------------------------------------------------------- */

typedef struct pool_impl {
    bx_pool2d_opts o;
    int64_t out_h, out_w; /* adaptive only */
} pool_impl;

static void *pool_clone(const void *p) { return bx__nn_dup(p, sizeof(pool_impl)); }

/* x (N,C,H,W) -> y (N,C,H',W') */
static bx_tensor *maxpool_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    return bx_max_pool2d(st, x, &((const pool_impl *)m->impl)->o);
}
static bx_tensor *avgpool_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    return bx_avg_pool2d(st, x, &((const pool_impl *)m->impl)->o);
}
static bx_tensor *adaptive_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    const pool_impl *pi = m->impl;
    return bx_adaptive_avg_pool2d(st, x, pi->out_h, pi->out_w);
}

static void pool_repr(const bx_module *m, char *buf, size_t n) {
    const bx_pool2d_opts *o = &((const pool_impl *)m->impl)->o;
    int sh = o->stride[0] ? o->stride[0] : o->kernel[0], sw = o->stride[1] ? o->stride[1] : o->kernel[1];
    snprintf(buf, n, "kernel_size=(%d, %d), stride=(%d, %d), padding=(%d, %d), ceil_mode=%s", o->kernel[0],
             o->kernel[1], sh, sw, o->padding[0], o->padding[1], tf(o->ceil_mode));
}
static void adaptive_repr(const bx_module *m, char *buf, size_t n) {
    const pool_impl *pi = m->impl;
    snprintf(buf, n, "output_size=(%lld, %lld)", (long long)pi->out_h, (long long)pi->out_w);
}

static const bx_module_type maxpool_type = {"MaxPool2d", maxpool_forward, bx__free, pool_clone, NULL, pool_repr};
static const bx_module_type avgpool_type = {"AvgPool2d", avgpool_forward, bx__free, pool_clone, NULL, pool_repr};
static const bx_module_type adaptive_type = {"AdaptiveAvgPool2d", adaptive_forward, bx__free, pool_clone, NULL,
                                             adaptive_repr};

static bx_module *new_pool(const bx_module_type *t, const bx_pool2d_opts *o) {
    static const bx_pool2d_opts dflt = BX_POOL2D_OPTS_INIT;
    pool_impl pi = {o ? *o : dflt, 0, 0};
    const bx_pool2d_opts *p = &pi.o;
    const char *bad = NULL;
    if (p->kernel[0] <= 0 || p->kernel[1] <= 0) bad = "kernel size must be > 0";
    else if (p->stride[0] < 0 || p->stride[1] < 0) bad = "stride must be >= 0 (0 = kernel size)";
    else if (p->padding[0] < 0 || p->padding[1] < 0) bad = "padding must be >= 0";
    else if (2 * p->padding[0] > p->kernel[0] || 2 * p->padding[1] > p->kernel[1])
        bad = "padding should be at most half of kernel size";
    else if (t == &maxpool_type && (p->dilation[0] <= 0 || p->dilation[1] <= 0)) bad = "dilation must be > 0";
    if (bad) {
        bx__error(BX_ERR_INVALID, "%s(kernel_size=(%d, %d)): %s", t->name, p->kernel[0], p->kernel[1], bad);
        return NULL;
    }
    return bx__nn_new_pod(t, &pi, sizeof pi);
}

bx_module *bx_nn_max_pool2d(const bx_pool2d_opts *o) { return new_pool(&maxpool_type, o); }

bx_status bx_pool2d_get_opts(const bx_module *m, bx_pool2d_opts *out) {
    if (!m || (m->type != &maxpool_type && m->type != &avgpool_type))
        return bx__error(BX_ERR_INVALID, "pool2d_get_opts: module '%s' is not a MaxPool2d or AvgPool2d",
                         bx_module_type_name(m));
    *out = ((const pool_impl *)m->impl)->o;
    return BX_OK;
}
bx_module *bx_nn_avg_pool2d(const bx_pool2d_opts *o) { return new_pool(&avgpool_type, o); }

bx_module *bx_nn_adaptive_avg_pool2d(int64_t out_h, int64_t out_w) {
    if (out_h <= 0 || out_w <= 0) {
        bx__error(BX_ERR_INVALID, "AdaptiveAvgPool2d: output size (%lld, %lld) must be > 0", (long long)out_h,
                  (long long)out_w);
        return NULL;
    }
    pool_impl pi = {BX_POOL2D_OPTS_INIT, out_h, out_w};
    return bx__nn_new_pod(&adaptive_type, &pi, sizeof pi);
}

/* ---- Flatten ---------------------------------------------------------------------------------- */

typedef struct flatten_impl {
    int start, end;
} flatten_impl;

static void *flatten_clone(const void *p) { return bx__nn_dup(p, sizeof(flatten_impl)); }

/* x (N, d1, ..., dk) -> (N, d1*...*dk) for the defaults (1, -1) */
static bx_tensor *flatten_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    const flatten_impl *fi = m->impl;
    return bx_flatten(st, x, fi->start, fi->end);
}
static void flatten_repr(const bx_module *m, char *buf, size_t n) {
    const flatten_impl *fi = m->impl;
    snprintf(buf, n, "start_dim=%d, end_dim=%d", fi->start, fi->end);
}
static const bx_module_type flatten_type = {"Flatten", flatten_forward, bx__free, flatten_clone, NULL, flatten_repr};

bx_module *bx_nn_flatten(int start_dim, int end_dim) {
    flatten_impl fi = {start_dim, end_dim};
    return bx__nn_new_pod(&flatten_type, &fi, sizeof fi);
}
