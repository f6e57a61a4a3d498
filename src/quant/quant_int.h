/* quant_int.h - internals shared by the src/quant files. */
#ifndef BLIXT_QUANT_INT_H
#define BLIXT_QUANT_INT_H

#include "blixt/quant.h"
#include "core/core_int.h"
#include "nn/nn_int.h"

/* Observer impl (the options plus the effective range). */
typedef struct bx__observer {
    bx_observer_opts o;
    int qmin, qmax;
    bool disabled; /* bx_observer_set_enabled(false): the module forward skips observing */
} bx__observer;

/* The observers' module forward (observe unless disabled, return x). */
bx_tensor *bx__observer_forward(bx_module *m, bx_step *st, bx_tensor *x);

/* HistogramObserver (histogram.c): a new module for options already
 * checked by bx_observer_new (impl = bx__observer), the type check, and the
 * observe / qparams steps bx_observer_observe and bx__observer_qparams_into
 * dispatch to. */
bx_module *bx__histogram_observer_new(const bx_observer_opts *o, int qmin, int qmax);
bool bx__is_histogram_observer(const bx_module *m);
bx_status bx__histogram_observe(bx_module *obs, const bx_tensor *x);
void bx__histogram_qparams_into(const bx_module *obs, float *s, int32_t *z);

/* Replaces buffer `name` of m by a new owned tensor of the given dtype and
 * length n (1-D), keeping the buffers' order when `name` and every later
 * buffer are re-added through this function in order. Returns the new
 * tensor (zero-filled) or NULL (error text set). */
bx_tensor *bx__quant_replace_buffer(bx_module *m, const char *name, bx_dtype dt, int64_t n);

/* Effective range of an observer module (no checks). */
void bx__observer_range(const bx_module *obs, int *qmin, int *qmax);
bool bx__observer_per_channel(const bx_module *obs);
/* Qparams count of the observer's state and the qparams written into
 * caller arrays of that length (F3 when fused, else F2); no allocation. */
int64_t bx__observer_nqparams(const bx_module *obs);
void bx__observer_qparams_into(const bx_module *obs, bool fused, float *s, int32_t *z);
bool bx__observer_symmetric(const bx_module *obs);

/* QAT internals (qat_prepare.c) used by convert. */
void bx__qat_unhook(bx_module *m);
bool bx__is_quant_stub(const bx_module *m);
bool bx__is_dequant_stub(const bx_module *m);

/* Type checks of the int8 modules (qlinear.c). */
bool bx__is_quantize(const bx_module *m);
bool bx__is_dequantize(const bx_module *m);
bool bx__is_quantized_linear(const bx_module *m);
bool bx__is_quantized_conv2d(const bx_module *m);
bx_status bx__quantized_conv2d_opts(const bx_module *m, bx_conv2d_opts *o);
/* Qparams of an int8 module: Quantize/QuantizedLinear output, DeQuantize input. */
bool bx__qmodule_out_qparams(const bx_module *m, double *scale, int64_t *zp);

#endif
