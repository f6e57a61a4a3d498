/* blixt/qat.h - the QuantizationAwareTraining callback (Lightning 1.9's
 * pytorch_lightning.callbacks.QuantizationAwareTraining, spec/callbacks.md
 * §10, with bug #8507 fixed: observers learn only in the stages listed in
 * observer_enabled_stages).
 *
 * At on_fit_start the model's root module gets children "quant" (a QAT
 * QuantStub) and "dequant" (a DeQuantStub), optional fusion groups are
 * fused, every Linear / Conv2d is prepared for QAT (bx_qat_prepare_layer)
 * and the root's forward is wrapped (forward pre/post hooks):
 * dequant(forward(quant(x))) while the collect trigger holds, plain forward
 * otherwise. At on_fit_end (quantize_on_fit_end) the model is put in eval
 * mode and converted in place to real int8 layers (bx_quant_convert): the
 * root's children become Quantize / QuantizedLinear / DeQuantize modules, so
 * the trained model runs int8 inference (with float input and output when
 * input_compatible). Built on the public API only; see docs/callbacks/qat.md. */
#ifndef BLIXT_QAT_H
#define BLIXT_QAT_H

#include "quant.h"
#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* collect_quantization: None (every forward), int n (the first n forwards),
 * or a function of the trainer. */
typedef enum bx_qat_collect { BX_QAT_COLLECT_ALWAYS = 0, BX_QAT_COLLECT_COUNT = 1, BX_QAT_COLLECT_FN = 2 } bx_qat_collect;
typedef bool (*bx_qat_trigger_fn)(void *ud, bx_trainer *tr);

/* observer_enabled_stages bits */
#define BX_QAT_STAGE_TRAIN 0x1u
#define BX_QAT_STAGE_VALIDATE 0x2u
#define BX_QAT_STAGE_TEST 0x4u
#define BX_QAT_STAGE_PREDICT 0x8u

/* One fusion group: 2 or 3 dotted module paths, NULL-padded:
 * (Linear, ReLU), (Conv2d, ReLU), (Conv2d|Linear, BatchNorm), (Conv2d,
 * BatchNorm, ReLU). BatchNorms are folded with their running statistics
 * (bx_fuse_conv_bn) - unlike torch's ConvBn QAT modules they do not keep
 * training. */
typedef struct bx_qat_fuse_group {
    const char *paths[3];
} bx_qat_fuse_group;

typedef struct bx_qat_opts {
    /* "fbgemm", "x86", "qnnpack" or "onednn" (torch's default QAT qconfig,
     * version 0 = FakeQuantize modules, F2 qparams: what the reference
     * Lightning 1.9 / torch 1.13 run records); ignored when custom_qconfig is
     * set (the QConfig-object case; its name in the state is "custom"). */
    const char *qconfig;
    const bx_qconfig *custom_qconfig; /* copied */
    const char *observer_type;        /* "average" (default) | "histogram" */
    bx_qat_collect collect;
    int64_t collect_n;                /* BX_QAT_COLLECT_COUNT: >= 0 */
    bx_qat_trigger_fn collect_fn;     /* BX_QAT_COLLECT_FN */
    void *collect_ud;
    const bx_qat_fuse_group *modules_to_fuse; /* copied; NULL = none */
    int num_modules_to_fuse;
    bool input_compatible;            /* true */
    bool quantize_on_fit_end;         /* true */
    unsigned observer_enabled_stages; /* BX_QAT_STAGE_TRAIN */
} bx_qat_opts;
#define BX_QAT_OPTS_INIT \
    {"fbgemm", NULL, "average", BX_QAT_COLLECT_ALWAYS, 0, NULL, NULL, NULL, 0, true, true, BX_QAT_STAGE_TRAIN}

/* New QuantizationAwareTraining callback (caller owns until given to a
 * Trainer). NULL with the message: BX_ERR_INVALID (unknown qconfig, unknown
 * observer type, negative collect count, COLLECT_FN without a function,
 * unknown collect kind, a fuse group with fewer than 2 paths, unknown stage
 * bits). observer_type "histogram" with a preset qconfig uses torch's
 * post-training qconfig (bx_qconfig_default: HistogramObserver activations,
 * MinMax weight observers, float training; Lightning's behaviour); with a
 * custom qconfig the qconfig is used as given. Fuse groups naming missing
 * modules fail the fit at on_fit_start (BX_ERR_NOT_FOUND, naming the
 * path). State (Lightning's): _qconfig, _observer_type,
 * _collect_quantization (null / int / "<callable>"), _modules_to_fuse,
 * _input_compatible. When resuming, the model is prepared before its weights
 * are loaded (the load_before_model hook), so the QAT buffers restore. */
bx_callback *bx_qat_callback_new(const bx_qat_opts *o);

/* Forward calls that went through the quant stub so far (Lightning's
 * _forward_calls). -1 for another callback. */
int64_t bx_qat_callback_forward_calls(const bx_callback *cb);
/* True once the model was converted to int8 at fit end. */
bool bx_qat_callback_converted(const bx_callback *cb);

#ifdef __cplusplus
}
#endif
#endif
