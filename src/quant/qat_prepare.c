/* qat_prepare.c - eager-mode QAT preparation (torch prepare_qat and
 * fuse_modules for QAT) on Blixt modules:
 *  - a Linear/Conv2d gets children weight_fake_quant and
 *    activation_post_process (torch's names, so the state dict matches
 *    torch's QAT modules); `weight` is reparametrised to
 *    weight_fake_quant(weight) and a forward hook applies [relu and]
 *    activation_post_process to the output;
 *  - QuantStub / DeQuantStub;
 *  - Linear+ReLU fusion and Conv/Linear+BatchNorm folding.
 * The hooks find the fake-quant modules by child name (no pointers kept),
 * so bx_module_clone of a prepared model works. */
#include "quant/quant_int.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static bx_tensor *weight_reparam(void *ud, bx_module *m, bx_step *st) {
    (void)ud;
    bx_tensor *w = bx_module_tensor(st, m, "weight"); /* the plain parameter inside its own reparam */
    if (!w) return bx_step_fail(st, BX_ERR_STATE, "%s: no weight to fake-quantise", bx_module_type_name(m));
    bx_module *fq = bx_module_child(m, "weight_fake_quant");
    if (!fq) return bx_step_fail(st, BX_ERR_STATE, "%s: weight_fake_quant missing", bx_module_type_name(m));
    return bx_module_forward(fq, st, w);
}

static bx_tensor *act_hook(void *ud, bx_module *m, bx_step *st, bx_tensor *in, bx_tensor *out) {
    (void)ud;
    (void)in;
    bx_module *fq = bx_module_child(m, "activation_post_process");
    return fq ? bx_module_forward(fq, st, out) : NULL;
}

static bx_tensor *act_relu_hook(void *ud, bx_module *m, bx_step *st, bx_tensor *in, bx_tensor *out) {
    (void)ud;
    (void)in;
    bx_tensor *r = bx_relu(st, out);
    bx_module *fq = bx_module_child(m, "activation_post_process");
    return fq ? bx_module_forward(fq, st, r) : r;
}

static bool is_type(const bx_module *m, const char *name) {
    return m && strcmp(bx_module_type_name(m), name) == 0;
}

/* The post-processing module of a qconfig entry: a fake-quant, or the bare
 * observer for observer_only entries (torch's post-training qconfigs). */
static bx_module *post_process_new(const bx_fake_quant_opts *o) {
    return o->observer_only ? bx_observer_new(&o->observer) : bx_fake_quant_new(o);
}

static bool is_post_process(const bx_module *m) { return bx_module_is_fake_quant(m) || bx_module_is_observer(m); }

/* Prepares a Linear/Conv2d in place; see quant.h. */
bx_status bx_qat_prepare_layer(bx_module *m, const bx_qconfig *qc, bool fuse_relu) {
    if (!m || !qc) return bx__error(BX_ERR_INVALID, "prepare_qat: module or qconfig is NULL");
    if (!is_type(m, "Linear") && !is_type(m, "Conv2d"))
        return bx__error(BX_ERR_INVALID, "prepare_qat: %s is not a Linear or Conv2d", bx_module_type_name(m));
    if (bx_module_child(m, "weight_fake_quant") || bx_module_has_reparam(m, "weight"))
        return bx__error(BX_ERR_INVALID, "prepare_qat: %s is already prepared or reparametrised",
                         bx_module_type_name(m));
    bx_module *wfq = post_process_new(&qc->weight);
    if (!wfq) return bx__error(BX_ERR_INVALID, "prepare_qat: weight fake-quant: %s", bx_errmsg());
    bx_module *afq = post_process_new(&qc->activation);
    if (!afq) {
        bx_module_free(wfq);
        return bx__error(BX_ERR_INVALID, "prepare_qat: activation fake-quant: %s", bx_errmsg());
    }
    bx_status s = bx_module_add_child(m, "weight_fake_quant", wfq);
    if (s != BX_OK) {
        bx_module_free(afq);
        return s;
    }
    s = bx_module_add_child(m, "activation_post_process", afq);
    if (s == BX_OK) s = bx_module_set_reparam(m, "weight", weight_reparam, NULL);
    if (s == BX_OK) s = bx_module_add_forward_hook(m, fuse_relu ? act_relu_hook : act_hook, NULL);
    return s;
}

/* True when prepared; the ReLU flag is read by looking for the fused hook. */
bool bx_qat_is_prepared(bx_module *m, bool *relu) {
    if (!m || !is_post_process(bx_module_child(m, "weight_fake_quant"))) return false;
    if (relu) {
        *relu = bx_module_remove_forward_hook(m, act_relu_hook, NULL);
        if (*relu) bx_module_add_forward_hook(m, act_relu_hook, NULL);
    }
    return true;
}

/* Removes the QAT hooks of a prepared layer (convert uses a copy). */
void bx__qat_unhook(bx_module *m) {
    bx_module_set_reparam(m, "weight", NULL, NULL);
    bx_module_remove_forward_hook(m, act_hook, NULL);
    bx_module_remove_forward_hook(m, act_relu_hook, NULL);
}

// QuantStub: x -> activation_post_process(x); DeQuantStub: identity
static bx_tensor *stub_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    bx_module *fq = bx_module_child(m, "activation_post_process");
    return fq ? bx_module_forward(fq, st, x) : x;
}
static bx_tensor *dequant_stub_forward(bx_module *m, bx_step *st, bx_tensor *x) { return x; }
static const bx_module_type quant_stub_type = {"QuantStub", stub_forward, NULL, NULL, NULL, NULL};
static const bx_module_type dequant_stub_type = {"DeQuantStub", dequant_stub_forward, NULL, NULL, NULL, NULL};

bx_module *bx_qat_quant_stub(const bx_qconfig *qc) {
    if (!qc) {
        bx__error(BX_ERR_INVALID, "QuantStub: qconfig is NULL");
        return NULL;
    }
    bx_module *m = bx_module_new(&quant_stub_type, NULL);
    if (!m) return NULL;
    if (bx_module_add_child(m, "activation_post_process", post_process_new(&qc->activation)) != BX_OK) {
        bx_module_free(m);
        return NULL;
    }
    return m;
}

bx_module *bx_qat_dequant_stub(void) { return bx_module_new(&dequant_stub_type, NULL); }

bool bx__is_quant_stub(const bx_module *m) { return m && bx_module_get_type(m) == &quant_stub_type; }
bool bx__is_dequant_stub(const bx_module *m) { return m && bx_module_get_type(m) == &dequant_stub_type; }

/* Linear + ReLU fusion for QAT; see quant.h. */
bx_status bx_qat_fuse_linear_relu(bx_module *root, const char *linear, const char *relu, const bx_qconfig *qc) {
    bx_module *l = bx_module_find(root, linear);
    if (!l) return bx__error(BX_ERR_NOT_FOUND, "fuse_modules: no module '%s'", linear);
    bx_module *r = bx_module_find(root, relu);
    if (!r) return bx__error(BX_ERR_NOT_FOUND, "fuse_modules: no module '%s'", relu);
    if (!is_type(l, "Linear") && !is_type(l, "Conv2d"))
        return bx__error(BX_ERR_INVALID, "fuse_modules: '%s' is a %s, expected Linear or Conv2d", linear,
                         bx_module_type_name(l));
    if (!is_type(r, "ReLU"))
        return bx__error(BX_ERR_INVALID, "fuse_modules: '%s' is a %s, expected ReLU", relu, bx_module_type_name(r));
    bx_status s = bx_qat_prepare_layer(l, qc, true);
    if (s != BX_OK) return s;
    bx_module *id = bx_nn_identity();
    if (!id) return BX_ERR_NOMEM;
    return bx_module_replace_child(root, relu, id, NULL);
}

/* BatchNorm folding (torch fuse_conv_bn_weights, eval statistics); see quant.h. */
bx_status bx_fuse_conv_bn(bx_module *root, const char *conv, const char *bn) {
    bx_module *cv = bx_module_find(root, conv);
    if (!cv) return bx__error(BX_ERR_NOT_FOUND, "fuse_conv_bn: no module '%s'", conv);
    bx_module *b = bx_module_find(root, bn);
    if (!b) return bx__error(BX_ERR_NOT_FOUND, "fuse_conv_bn: no module '%s'", bn);
    if ((!is_type(cv, "Conv2d") && !is_type(cv, "Linear")) || !bx_module_is_batchnorm(b))
        return bx__error(BX_ERR_INVALID, "fuse_conv_bn: expected Conv2d/Linear and BatchNorm, got %s and %s",
                         bx_module_type_name(cv), bx_module_type_name(b));
    bx_tensor *w = bx_module_param(cv, "weight");
    const bx_tensor *rm = bx_module_buffer(b, "running_mean"), *rv = bx_module_buffer(b, "running_var");
    if (!w || !rm || !rv) return bx__error(BX_ERR_INVALID, "fuse_conv_bn: weight or running statistics missing");
    int64_t O = w->shape[0];
    if (bx_numel(rm) != O)
        return bx__error(BX_ERR_SHAPE, "fuse_conv_bn: %lld output channels, BatchNorm has %lld", (long long)O,
                         (long long)bx_numel(rm));
    const bx_tensor *g = bx_module_param(b, "weight"), *be = bx_module_param(b, "bias");
    double eps = 1e-5;
    char rep[256];
    bx_module_repr(b, rep, sizeof rep);
    const char *e = strstr(rep, "eps=");
    if (e) eps = strtod(e + 4, NULL);
    bx_tensor *bias = bx_module_param(cv, "bias");
    if (!bias) {
        bias = bx_tensor_zeros(BX_F32, 1, &O);
        if (!bias) return BX_ERR_NOMEM;
        bx_module_remove_param(cv, "bias");
        bx_status s = bx_module_add_param(cv, "bias", bias);
        if (s != BX_OK) return s;
    }
    int64_t per = bx_numel(w) / O;
    float *wp = w->data, *bp = bias->data;
    for (int64_t o = 0; o < O; o++) {
        float rs = 1.0f / sqrtf((float)bx_get(rv, o) + (float)eps); /* torch.rsqrt(var + eps) */
        float gw = g ? (float)bx_get(g, o) : 1.0f, gb = be ? (float)bx_get(be, o) : 0.0f;
        float k = gw * rs;
        for (int64_t i = 0; i < per; i++) wp[o * per + i] *= k;
        bp[o] = (bp[o] - (float)bx_get(rm, o)) * rs * gw + gb;
    }
    bx_module *id = bx_nn_identity();
    if (!id) return BX_ERR_NOMEM;
    return bx_module_replace_child(root, bn, id, NULL);
}
