/* qconvert.c - torch convert() for a prepared QAT Sequential, and
 * save/load of the resulting int8 model.
 *
 * convert, per child in order (torch nnq.*.from_float):
 *   QuantStub   -> Quantize(activation_post_process F2 qparams)
 *   prepared Linear[+ReLU] -> QuantizedLinear[ReLU]: the weight fake-quant
 *                  observes the weight once more (weight_post_process(weight)),
 *                  its observer's F2 qparams quantise the weight
 *                  (zp + nearbyint(w*(1/scale)), clamped to the observer's
 *                  range), the output qparams are the activation observer's F2;
 *   prepared Conv2d[+ReLU] -> QuantizedConv2d[ReLU] (same rules);
 *   MaxPool2d -> QuantizedMaxPool2d (max of the integers, same qparams);
 *   Flatten -> Flatten (a reshape of the quint8 tensor);
 *   Identity, Dropout -> dropped (identity at inference);
 *   DeQuantStub -> DeQuantize(the previous layer's output qparams).
 * File format (bx_quant_save): the int8 Sequential's state dict in
 * safetensors plus metadata "blixt.quant.layers", a JSON list with one
 * object per layer: {"type": "Quantize"|"DeQuantize", "scale", "zero_point"}
 * or {"type": "QuantizedLinear[ReLU]", "relu": bool}, conv layers with
 * "stride"/"padding"/"dilation" pairs, "groups" and "padding_same", QuantizedMaxPool2d with "kernel"/
 * "stride"/"padding"/"dilation" pairs and "ceil_mode", Flatten with "start_dim"/"end_dim". */
#include "quant/quant_int.h"
#include "blixt/safetensors.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_type(const bx_module *m, const char *name) { return strcmp(bx_module_type_name(m), name) == 0; }

/* Flatten's dims, read from its repr ("start_dim=1, end_dim=-1"). */
static void flatten_dims(const bx_module *m, int *sd, int *ed) {
    char rep[128];
    bx_module_repr(m, rep, sizeof rep);
    const char *p = strstr(rep, "start_dim=");
    if (p) *sd = atoi(p + 10);
    p = strstr(rep, "end_dim=");
    if (p) *ed = atoi(p + 8);
}

/* Weight quantisation with the observer's F2 qparams. */
static bx_tensor *quantize_weight(const bx_tensor *w, const bx_tensor *scale, const bx_tensor *zp, int qmin,
                                  int qmax) {
    bx_tensor *q = bx_tensor_new(BX_I8, w->ndim, w->shape);
    if (!q) return NULL;
    int64_t n = bx_numel(w), C = bx_numel(scale), per = C > 1 ? n / w->shape[0] : n;
    int lo = qmin < -128 ? -128 : qmin, hi = qmax > 127 ? 127 : qmax;
    for (int64_t i = 0; i < n; i++) {
        int64_t c = C > 1 ? i / per : 0;
        float s = ((const float *)scale->data)[c];
        float inv = 1.0f / s;
        float v = (float)bx_get(w, i);
        float f = (float)bx_get(zp, c) + nearbyintf(v * inv);
        int64_t iv = f >= -1e9f && f <= 1e9f ? (int64_t)f : (f > 0 ? hi : lo);
        iv = iv < lo ? lo : (iv > hi ? hi : iv);
        ((int8_t *)q->data)[i] = (int8_t)iv;
    }
    return q;
}

static bx_status fq_qparams(const bx_module *fq, double *scale, int64_t *zp) {
    bx_tensor *s = NULL, *z = NULL;
    bx_status rc = bx_fake_quant_calculate_qparams(fq, &s, &z);
    if (rc == BX_OK) {
        *scale = ((const float *)s->data)[0];
        *zp = ((const int32_t *)z->data)[0];
    }
    bx_tensor_free(s);
    bx_tensor_free(z);
    return rc;
}

static bx_status convert_linear(bx_module *l, bool relu, double in_s, int64_t in_z, bx_module **out) {
    bx_module *wfq = bx_module_child(l, "weight_fake_quant"), *afq = bx_module_child(l, "activation_post_process");
    bx_tensor *w = bx_module_param(l, "weight");
    if (!wfq || !afq || !w) return bx__error(BX_ERR_INVALID, "convert: prepared layer lacks weight or fake-quants");
    bool conv = is_type(l, "Conv2d");
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    if (conv && bx_conv2d_get_opts(l, &co) != BX_OK) return BX_ERR_INVALID;
    /* weight_post_process(mod.weight): one more forward of the weight fake-quant */
    bx_step *st = bx_step_new();
    if (!st) return BX_ERR_NOMEM;
    bx_no_grad_push(st);
    bx_module_forward(wfq, st, w);
    bx_status rc = bx_step_status(st);
    if (rc != BX_OK) bx__error(rc, "convert: weight fake-quant: %s", bx_step_errmsg(st));
    bx_step_free(st);
    if (rc != BX_OK) return rc;
    bx_tensor *ws = NULL, *wz = NULL;
    rc = bx_fake_quant_calculate_qparams(wfq, &ws, &wz);
    if (rc != BX_OK) return rc;
    int qmin, qmax;
    bx__observer_range(bx_fake_quant_observer(wfq), &qmin, &qmax);
    bx_tensor *wq = quantize_weight(w, ws, wz, qmin, qmax);
    double os = 1.0;
    int64_t oz = 0;
    rc = wq ? fq_qparams(afq, &os, &oz) : BX_ERR_NOMEM;
    if (rc == BX_OK) {
        bx_tensor *b = bx_module_param(l, "bias");
        *out = conv ? bx_quantized_conv2d_new(wq, ws, wz, b, &co, in_s, in_z, os, oz, relu)
                    : bx_quantized_linear_new(wq, ws, wz, b, in_s, in_z, os, oz, relu);
        if (!*out) rc = BX_ERR_INVALID;
    }
    bx_tensor_free(wq);
    bx_tensor_free(ws);
    bx_tensor_free(wz);
    return rc;
}

/* torch convert() for a prepared Sequential; see quant.h. */
bx_status bx_quant_convert(bx_module *qat_seq, bx_module **out) {
    *out = NULL;
    if (!qat_seq) return bx__error(BX_ERR_INVALID, "convert: model is NULL");
    bx_module *seq = bx_nn_sequential();
    if (!seq) return BX_ERR_NOMEM;
    bool have_q = false;
    double cur_s = 1.0;
    int64_t cur_z = 0;
    bx_status rc = BX_OK;
    for (int i = 0; i < bx_module_num_children(qat_seq) && rc == BX_OK; i++) {
        const char *name;
        bx_module *c = bx_module_child_at(qat_seq, i, &name);
        bool relu = false;
        bx_module *q = NULL;
        if (bx__is_quant_stub(c)) {
            bx_module *fq = bx_module_child(c, "activation_post_process");
            if (!fq) {
                rc = bx__error(BX_ERR_INVALID, "convert: QuantStub '%s' has no activation_post_process", name);
                break;
            }
            rc = fq_qparams(fq, &cur_s, &cur_z);
            if (rc == BX_OK) q = bx_quantize_new(cur_s, cur_z);
            have_q = true;
        } else if (bx_qat_is_prepared(c, &relu)) {
            if (!have_q) {
                rc = bx__error(BX_ERR_INVALID, "convert: layer '%s' has no quantized input (QuantStub first)", name);
                break;
            }
            rc = convert_linear(c, relu, cur_s, cur_z, &q);
            if (rc == BX_OK) bx__qmodule_out_qparams(q, &cur_s, &cur_z);
            else bx__error(rc, "convert: layer '%s': %s", name, bx_errmsg());
        } else if (is_type(c, "Identity") || is_type(c, "Dropout")) {
            continue;
        } else if (is_type(c, "MaxPool2d")) { /* on the integers, qparams unchanged */
            bx_pool2d_opts po;
            rc = bx_pool2d_get_opts(c, &po);
            if (rc == BX_OK) q = bx_quantized_max_pool2d_new(&po);
        } else if (is_type(c, "Flatten")) { /* a reshape: works on quint8 as is */
            int sd = 1, ed = -1;
            flatten_dims(c, &sd, &ed);
            q = bx__quant_flatten_new(sd, ed);
        } else if (bx__is_dequant_stub(c)) {
            q = bx_dequantize_new(cur_s, cur_z);
            have_q = false;
        } else {
            rc = bx__error(BX_ERR_UNSUPPORTED, "convert: child '%s' (%s) cannot be converted", name,
                           bx_module_type_name(c));
            break;
        }
        if (rc == BX_OK && !q) rc = BX_ERR_INVALID;
        if (rc == BX_OK) rc = bx_sequential_append(seq, q);
    }
    if (rc != BX_OK) {
        bx_module_free(seq);
        return rc;
    }
    *out = seq;
    return BX_OK;
}

/* ---- save / load ---------------------------------------------------------------- */

bx_status bx_quant_save(const bx_module *qmodel, const char *path) {
    bx_module *m = (bx_module *)qmodel; /* traversals take non-const; nothing is changed */
    if (!m || !is_type(m, "Sequential")) return bx__error(BX_ERR_UNSUPPORTED, "quant save: expected an int8 Sequential");
    json_t *layers = json_array();
    bx_st_writer *w = bx_st_writer_new();
    bx_named_tensors *sd = bx_module_state_dict(m);
    bx_status rc = layers && w && sd ? BX_OK : bx__error(BX_ERR_NOMEM, "quant save: out of memory");
    for (int i = 0; rc == BX_OK && i < bx_module_num_children(m); i++) {
        bx_module *c = bx_module_child_at(m, i, NULL);
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string(bx_module_type_name(c)));
        double s;
        int64_t z;
        if (bx__is_quantize(c) || bx__is_dequantize(c)) {
            bx__qmodule_out_qparams(c, &s, &z);
            json_object_set_new(o, "scale", json_real(s));
            json_object_set_new(o, "zero_point", json_integer(z));
        } else if (bx__is_quantized_linear(c)) {
            json_object_set_new(o, "relu", json_boolean(is_type(c, "QuantizedLinearReLU")));
        } else if (bx__is_quantized_conv2d(c)) {
            bx_conv2d_opts co;
            bx__quantized_conv2d_opts(c, &co);
            json_object_set_new(o, "relu", json_boolean(is_type(c, "QuantizedConv2dReLU")));
            json_object_set_new(o, "stride", json_pack("[ii]", co.stride[0], co.stride[1]));
            json_object_set_new(o, "padding", json_pack("[ii]", co.padding[0], co.padding[1]));
            json_object_set_new(o, "dilation", json_pack("[ii]", co.dilation[0], co.dilation[1]));
            json_object_set_new(o, "groups", json_integer(co.groups));
            json_object_set_new(o, "padding_same", json_boolean(co.padding_same));
        } else if (bx__is_quantized_max_pool2d(c)) {
            bx_pool2d_opts po;
            bx__quantized_max_pool2d_opts(c, &po);
            json_object_set_new(o, "kernel", json_pack("[ii]", po.kernel[0], po.kernel[1]));
            json_object_set_new(o, "stride", json_pack("[ii]", po.stride[0], po.stride[1]));
            json_object_set_new(o, "padding", json_pack("[ii]", po.padding[0], po.padding[1]));
            json_object_set_new(o, "dilation", json_pack("[ii]", po.dilation[0], po.dilation[1]));
            json_object_set_new(o, "ceil_mode", json_boolean(po.ceil_mode));
        } else if (is_type(c, "Flatten")) {
            int sdim = 1, ed = -1;
            flatten_dims(c, &sdim, &ed);
            json_object_set_new(o, "start_dim", json_integer(sdim));
            json_object_set_new(o, "end_dim", json_integer(ed));
        } else {
            json_decref(o);
            rc = bx__error(BX_ERR_UNSUPPORTED, "quant save: child %d is a %s", i, bx_module_type_name(c));
            break;
        }
        json_array_append_new(layers, o);
    }
    for (int i = 0; rc == BX_OK && i < sd->n; i++) rc = bx_st_writer_add(w, sd->names[i], sd->tensors[i]);
    char *text = rc == BX_OK ? json_dumps(layers, JSON_COMPACT | JSON_REAL_PRECISION(17)) : NULL;
    if (rc == BX_OK && !text) rc = bx__error(BX_ERR_NOMEM, "quant save: out of memory");
    if (rc == BX_OK) rc = bx_st_writer_meta(w, "blixt.quant.layers", text);
    if (rc == BX_OK) rc = bx_st_writer_meta(w, "format", "blixt-int8");
    if (rc == BX_OK) rc = bx_st_writer_write(w, path);
    free(text);
    json_decref(layers);
    bx_named_tensors_free(sd);
    bx_st_writer_free(w);
    return rc;
}

static const bx_tensor *need(const bx_st_file *f, const char *path, int i, const char *what, bx_status *rc) {
    char name[64];
    snprintf(name, sizeof name, "%d.%s", i, what);
    const bx_tensor *t = bx_st_get(f, name);
    if (!t && *rc == BX_OK) *rc = bx__error(BX_ERR_FORMAT, "quant load '%s': tensor '%s' missing", path, name);
    return t;
}

bx_status bx_quant_load(const char *path, bx_module **out) {
    *out = NULL;
    bx_st_file *f = NULL;
    bx_status rc = bx_st_open(path, &f);
    if (rc != BX_OK) return rc;
    const char *meta = bx_st_metadata(f, "blixt.quant.layers");
    json_t *layers = meta ? json_loads(meta, 0, NULL) : NULL;
    bx_module *seq = bx_nn_sequential();
    if (!json_is_array(layers)) rc = bx__error(BX_ERR_FORMAT, "quant load '%s': metadata blixt.quant.layers missing or bad", path);
    if (rc == BX_OK && !seq) rc = BX_ERR_NOMEM;
    for (size_t i = 0; rc == BX_OK && i < json_array_size(layers); i++) {
        json_t *o = json_array_get(layers, i);
        const char *type = json_string_value(json_object_get(o, "type"));
        bx_module *m = NULL;
        if (!type) {
            rc = bx__error(BX_ERR_FORMAT, "quant load '%s': layer %zu has no type", path, i);
        } else if (strcmp(type, "Quantize") == 0 || strcmp(type, "DeQuantize") == 0) {
            double s = json_number_value(json_object_get(o, "scale"));
            int64_t z = json_integer_value(json_object_get(o, "zero_point"));
            m = type[0] == 'Q' ? bx_quantize_new(s, z) : bx_dequantize_new(s, z);
            if (!m) rc = bx__error(BX_ERR_FORMAT, "quant load '%s': layer %zu: %s", path, i, bx_errmsg());
        } else if (strcmp(type, "QuantizedMaxPool2d") == 0) {
            bx_pool2d_opts po = BX_POOL2D_OPTS_INIT;
            static const char *const keys[4] = {"kernel", "stride", "padding", "dilation"};
            int *dst[4] = {po.kernel, po.stride, po.padding, po.dilation};
            for (int j = 0; j < 4; j++) {
                json_t *a = json_object_get(o, keys[j]);
                if (json_array_size(a) == 2) {
                    dst[j][0] = (int)json_integer_value(json_array_get(a, 0));
                    dst[j][1] = (int)json_integer_value(json_array_get(a, 1));
                }
            }
            po.ceil_mode = json_is_true(json_object_get(o, "ceil_mode"));
            m = bx_quantized_max_pool2d_new(&po);
            if (!m) rc = bx__error(BX_ERR_FORMAT, "quant load '%s': layer %zu: %s", path, i, bx_errmsg());
        } else if (strcmp(type, "Flatten") == 0) {
            m = bx__quant_flatten_new((int)json_integer_value(json_object_get(o, "start_dim")),
                              (int)json_integer_value(json_object_get(o, "end_dim")));
            if (!m) rc = bx__error(BX_ERR_FORMAT, "quant load '%s': layer %zu: %s", path, i, bx_errmsg());
        } else if (strncmp(type, "QuantizedLinear", 15) == 0 || strncmp(type, "QuantizedConv2d", 15) == 0) {
            int k = (int)i;
            const bx_tensor *wq = need(f, path, k, "weight_int8", &rc), *ws = need(f, path, k, "weight_scales", &rc),
                            *wz = need(f, path, k, "weight_zero_points", &rc), *sc = need(f, path, k, "scale", &rc),
                            *zp = need(f, path, k, "zero_point", &rc), *is = need(f, path, k, "input_scale", &rc),
                            *iz = need(f, path, k, "input_zero_point", &rc);
            char bn[64];
            snprintf(bn, sizeof bn, "%d.bias", k);
            const bx_tensor *bias = bx_st_get(f, bn);
            if (rc == BX_OK) {
                bool relu = json_is_true(json_object_get(o, "relu"));
                if (type[9] == 'C') {
                    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
                    static const char *const keys[3] = {"stride", "padding", "dilation"};
                    int *dst[3] = {co.stride, co.padding, co.dilation};
                    for (int j = 0; j < 3; j++) {
                        json_t *a = json_object_get(o, keys[j]);
                        if (json_array_size(a) == 2) {
                            dst[j][0] = (int)json_integer_value(json_array_get(a, 0));
                            dst[j][1] = (int)json_integer_value(json_array_get(a, 1));
                        }
                    }
                    json_t *g = json_object_get(o, "groups");
                    if (json_is_integer(g)) co.groups = (int)json_integer_value(g);
                    co.padding_same = json_is_true(json_object_get(o, "padding_same"));
                    m = bx_quantized_conv2d_new(wq, ws, wz, bias, &co, bx_get(is, 0), (int64_t)bx_get(iz, 0),
                                                bx_get(sc, 0), (int64_t)bx_get(zp, 0), relu);
                } else {
                    m = bx_quantized_linear_new(wq, ws, wz, bias, bx_get(is, 0), (int64_t)bx_get(iz, 0),
                                                bx_get(sc, 0), (int64_t)bx_get(zp, 0), relu);
                }
                if (!m) rc = bx__error(BX_ERR_FORMAT, "quant load '%s': layer %zu: %s", path, i, bx_errmsg());
            }
        } else {
            rc = bx__error(BX_ERR_FORMAT, "quant load '%s': unknown layer type '%s'", path, type);
        }
        if (rc == BX_OK) rc = bx_sequential_append(seq, m);
    }
    json_decref(layers);
    bx_st_close(f);
    if (rc != BX_OK) {
        bx_module_free(seq);
        return rc;
    }
    *out = seq;
    return BX_OK;
}
