/* blixt/quant.h - quantization-aware training (PyTorch 1.13's eager QAT) and
 * int8 inference.
 *
 * Pieces, all numerically identical to torch 1.13 (tests/golden/README.md
 * rules F1-F5):
 *  - observers (modules "MinMaxObserver", "MovingAverageMinMaxObserver" and
 *    their per-channel variants) keeping min_val/max_val buffers, and the two
 *    qparams formulas: Python's calculate_qparams (F2) and the C++
 *    ChooseQuantizationParams of the fused op (F3);
 *  - the fake-quantize op on the step (F4: float32 reciprocal multiply,
 *    round half to even, straight-through gradient with the clamp mask);
 *  - fake-quantize modules ("FakeQuantize", "FusedMovingAvgObsFakeQuantize")
 *    with torch's buffers (fake_quant_enabled, observer_enabled, scale,
 *    zero_point, activation_post_process.{eps,min_val,max_val}), so a QAT
 *    model's state dict has torch's keys;
 *  - qconfig presets (torch's get_default_qat_qconfig for 'fbgemm', 'x86',
 *    'qnnpack', 'onednn');
 *  - QAT preparation of Linear/Conv2d layers (weight fake-quant through the
 *    reparametrisation hook, output fake-quant through a forward hook),
 *    Linear+ReLU fusion, Conv+BatchNorm folding;
 *  - conversion to real int8 modules ("Quantize", "QuantizedLinear",
 *    "QuantizedLinearReLU", "QuantizedConv2d[ReLU]", "DeQuantize") run with
 *    a oneDNN u8s8->s32 matmul (prepacked weights) and F5 requantisation,
 *    saved to and loaded from safetensors.
 * See docs/quantization-engine.md. */
#ifndef BLIXT_QUANT_H
#define BLIXT_QUANT_H

#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum bx_qdtype { BX_QUINT8 = 0, BX_QINT8 = 1 } bx_qdtype;
typedef enum bx_qscheme {
    BX_PER_TENSOR_AFFINE = 0,
    BX_PER_TENSOR_SYMMETRIC = 1,
    BX_PER_CHANNEL_AFFINE = 2,
    BX_PER_CHANNEL_SYMMETRIC = 3
} bx_qscheme;
/* BX_OBS_HISTOGRAM: torch's HistogramObserver (per-tensor schemes only). */
typedef enum bx_observer_kind { BX_OBS_MINMAX = 0, BX_OBS_MOVING_AVERAGE = 1, BX_OBS_HISTOGRAM = 2 } bx_observer_kind;

/* Observer options (torch's observer constructor arguments). When
 * custom_range is false the range is the dtype's ([0,255] / [-128,127], or
 * [0,127] / [-64,63] with reduce_range); when true quant_min/quant_max are
 * used, halved with floor division under reduce_range (F2). */
typedef struct bx_observer_opts {
    bx_observer_kind kind;
    bx_qdtype dtype;
    bx_qscheme qscheme;
    bool reduce_range;
    bool custom_range;
    int quant_min, quant_max;
    int ch_axis;               /* per-channel schemes */
    double averaging_constant; /* moving-average kinds: 0.01 */
    float eps;                 /* float32 epsilon 2^-23 */
    int bins;                  /* histogram kind: 2048 (0 = 2048) */
    int upsample_rate;         /* histogram kind: 128 (0 = 128) */
} bx_observer_opts;
#define BX_OBSERVER_OPTS_INIT \
    {BX_OBS_MOVING_AVERAGE, BX_QUINT8, BX_PER_TENSOR_AFFINE, false, false, 0, 255, 0, 0.01, 1.1920928955078125e-07f, \
     2048, 128}

/* Effective [qmin, qmax] of the options (F2). BX_ERR_INVALID for an empty
 * range or one wider than 256 values. */
bx_status bx_quant_range(const bx_observer_opts *o, int *qmin, int *qmax);

/* ---- qparams formulas (pure functions) ---------------------------------- */
/* Python calculate_qparams (F2) for one (min, max) pair, float32 math:
 * affine or symmetric (zero point 0 for qint8; 128, or the floor midpoint of
 * a custom range, for quint8). An unobserved pair (min = +inf, max = -inf)
 * gives scale 1, zero point 0 like torch. */
void bx_qparams_python(float min_val, float max_val, int qmin, int qmax, bool symmetric,
                       bx_qdtype dtype, bool custom_range, float eps, float *scale, int32_t *zp);
/* C++ ChooseQuantizationParams (F3) as called by the fused fake-quant op:
 * preserve_sparsity = symmetric (the symmetric branch only applies when the
 * range crosses zero), double intermediate scale, 6.1e-5 small-scale
 * cut-off, zero point from the smaller-error end, nearbyint. */
void bx_qparams_fused(float min_val, float max_val, int qmin, int qmax, bool symmetric,
                      float *scale, int32_t *zp);

/* ---- observers ------------------------------------------------------------ */
/* New observer module (caller owns). Type names as torch: MinMaxObserver,
 * MovingAverageMinMaxObserver, PerChannelMinMaxObserver,
 * MovingAveragePerChannelMinMaxObserver, HistogramObserver. Buffers: eps
 * (f32 [1]), [histogram (f32 [bins], HistogramObserver),] min_val, max_val
 * (f32 0-d = +inf/-inf for per-tensor; f32 [0] for per-channel until the
 * first batch sets their length). As modules, observers return their input
 * unchanged (gradient passes through) after observing it.
 * NULL + BX_ERR_INVALID on bad options (a per-channel scheme with the
 * histogram kind, bins < 1, upsample_rate < 1). */
bx_module *bx_observer_new(const bx_observer_opts *o);
/* Switches observing in the module forward of a bare observer (Blixt's; a
 * torch observer always observes): the QAT callback uses it for
 * observer_enabled_stages when the qconfig holds observers instead of
 * fake-quants. bx_observer_observe always observes. Fresh observers are
 * enabled; the flag is not part of the state dict. BX_ERR_INVALID for
 * another module. */
bx_status bx_observer_set_enabled(bx_module *obs, bool on);
/* The flag above (false for another module). */
bool bx_observer_enabled(const bx_module *obs);
/* HistogramObserver's _non_linear_param_search on the current histogram:
 * the clipped range (float32, as torch) that calculate_qparams turns into
 * qparams with F2. An unobserved observer gives (+inf, -inf). BX_ERR_INVALID
 * for another module, BX_ERR_STATE for missing buffers. */
bx_status bx_histogram_observer_search(const bx_module *obs, float *new_min, float *new_max);
/* True for observer modules. */
bool bx_module_is_observer(const bx_module *m);
/* The options of an observer (BX_ERR_INVALID for another module). */
bx_status bx_observer_get_opts(const bx_module *obs, bx_observer_opts *o);
/* Updates min_val/max_val from x (f32, any strides; F1 order). Per-channel
 * observers reduce over every dim except ch_axis. Errors: BX_ERR_SHAPE
 * (dtype, ch_axis out of range, channel count changed), BX_ERR_INVALID. */
bx_status bx_observer_observe(bx_module *obs, const bx_tensor *x);
/* Qparams from the observer's current state: owned f32 scale and i32 zero
 * point tensors of shape [n] (n = 1 per-tensor, channels per-channel).
 * fused selects F3 (the fused op's formula), else F2. A HistogramObserver
 * runs its parameter search first (bx_histogram_observer_search), then F2
 * (fused is ignored). */
bx_status bx_observer_qparams(const bx_module *obs, bool fused, bx_tensor **scale, bx_tensor **zp);

/* ---- fake-quantize op ------------------------------------------------------ */
/* y = (clamp(zp + nearbyint(x*(1/scale)), qmin, qmax) - zp)*scale (F4);
 * dy/dx = 1 where the unclamped value lies in [qmin, qmax], else 0.
 * x f32 any shape. Poison + step error for non-f32 x or qmin > qmax. */
bx_tensor *bx_fake_quantize(bx_step *st, bx_tensor *x, float scale, int32_t zp, int qmin, int qmax);
/* Per-channel along `axis`: scale f32 [C], zp (i32 or i64) [C] with C =
 * x's size along axis. */
bx_tensor *bx_fake_quantize_per_channel(bx_step *st, bx_tensor *x, const bx_tensor *scale,
                                        const bx_tensor *zp, int axis, int qmin, int qmax);

/* ---- fake-quantize modules -------------------------------------------------- */
typedef struct bx_fake_quant_opts {
    bx_observer_opts observer;
    bool fused; /* FusedMovingAvgObsFakeQuantize (F3 qparams) instead of FakeQuantize (F2) */
    /* No fake-quant module: QAT preparation puts the bare observer where the
     * fake-quant would be (torch's post-training qconfig entries are
     * observers), so training stays float and only gathers statistics. */
    bool observer_only;
} bx_fake_quant_opts;

/* New fake-quant module (caller owns): child "activation_post_process" (the
 * observer), buffers fake_quant_enabled, observer_enabled (u8 for
 * FakeQuantize, i64 for the fused module, as torch), scale (f32 [1]),
 * zero_point (i32 [1]). Forward (train and eval alike, as torch): when the
 * observer is enabled, observe x, then (FakeQuantize) recompute scale and
 * zero_point with F2, or (fused, only while fake-quant is enabled) with F3;
 * when fake-quant is enabled return the fake-quantised x, else x.
 * NULL + BX_ERR_INVALID on bad options (the fused module needs a
 * moving-average observer). */
bx_module *bx_fake_quant_new(const bx_fake_quant_opts *o);
bool bx_module_is_fake_quant(const bx_module *m);
/* Switches fake-quant / observing (torch's enable_fake_quant,
 * enable_observer). Errors: BX_ERR_INVALID for another module. */
bx_status bx_fake_quant_enable(bx_module *fq, bool fake_quant, bool observer);
/* The observer child (borrowed); fq itself when fq is a bare observer (a
 * post-processing module from an observer_only qconfig entry); else NULL. */
bx_module *bx_fake_quant_observer(const bx_module *fq);
/* Qparams convert() uses: the observer's Python formula (F2), owned tensors
 * as bx_observer_qparams. fq may be a bare observer. */
bx_status bx_fake_quant_calculate_qparams(const bx_module *fq, bx_tensor **scale, bx_tensor **zp);

/* bx_module_load_state_dict for models holding observers / fake-quants:
 * per-channel min_val/max_val and scale/zero_point buffers are first
 * re-created with the lengths found in sd (a fresh per-channel observer
 * holds [0]-shaped min/max until its first batch, as in torch), keeping the
 * buffer order. Same errors as bx_module_load_state_dict. */
bx_status bx_quant_load_state_dict(bx_module *m, const bx_named_tensors *sd, bool strict);

/* ---- qconfigs --------------------------------------------------------------- */
typedef struct bx_qconfig {
    bx_fake_quant_opts activation;
    bx_fake_quant_opts weight;
} bx_qconfig;
/* torch.ao.quantization.get_default_qat_qconfig(backend, version) for
 * backend "fbgemm" / "x86" (activation quint8 reduce_range -> [0,127], weight
 * per-channel symmetric qint8), "qnnpack" (activation [0,255], weight
 * per-tensor symmetric qint8), "onednn" (activation [0,255], weight
 * per-channel symmetric). version 1 = fused modules, 0 = FakeQuantize.
 * Errors: BX_ERR_INVALID (unknown backend or version). */
bx_status bx_qconfig_default_qat(const char *backend, int version, bx_qconfig *out);
/* torch.ao.quantization.get_default_qconfig(backend) (the post-training
 * qconfig; Lightning's QuantizationAwareTraining(observer_type="histogram")):
 * observer_only entries. "fbgemm" / "x86": activation HistogramObserver
 * quint8 reduce_range ([0,127]), weight PerChannelMinMaxObserver qint8
 * per-channel symmetric; "qnnpack": activation HistogramObserver [0,255],
 * weight MinMaxObserver qint8 per-tensor symmetric; "onednn": activation
 * HistogramObserver [0,255], weight per-channel. Errors: BX_ERR_INVALID
 * (unknown backend). */
bx_status bx_qconfig_default(const char *backend, bx_qconfig *out);

/* ---- QAT preparation --------------------------------------------------------- */
/* Makes a Linear or Conv2d module a QAT module in place (torch prepare_qat):
 * adds children weight_fake_quant (weight options, reparametrising `weight`
 * so every forward uses fake_quant(weight)) and activation_post_process
 * (activation options, applied to the output by a forward hook; after a
 * ReLU when fuse_relu). For observer_only entries (bx_qconfig_default) the
 * children are the bare observers: the forward stays float. Errors: BX_ERR_INVALID (another module type,
 * already prepared), BX_ERR_NOMEM. */
bx_status bx_qat_prepare_layer(bx_module *m, const bx_qconfig *qc, bool fuse_relu);
/* True when m was prepared by bx_qat_prepare_layer; *relu (optional) tells
 * whether a ReLU was fused. */
bool bx_qat_is_prepared(bx_module *m, bool *relu);
/* QuantStub for QAT: a module whose child activation_post_process
 * fake-quantises the model input. DeQuantStub: identity. Caller owns. */
bx_module *bx_qat_quant_stub(const bx_qconfig *qc);
bx_module *bx_qat_dequant_stub(void);
/* torch.ao.quantization.fuse_modules_qat on (Linear, ReLU) or (Conv2d,
 * ReLU) at dotted paths of root: the ReLU is replaced by Identity and the
 * layer prepared with fuse_relu (bx_qat_prepare_layer). For Conv+BN+ReLU
 * fold the BatchNorm first (bx_fuse_conv_bn). Errors: BX_ERR_NOT_FOUND,
 * BX_ERR_INVALID (wrong types, already prepared). */
bx_status bx_qat_fuse_linear_relu(bx_module *root, const char *linear, const char *relu,
                                  const bx_qconfig *qc);
/* Folds an eval-mode BatchNorm into the preceding Conv2d (or Linear) at
 * dotted paths (torch fuse_conv_bn_weights): w' = w*gamma/sqrt(var+eps),
 * b' = (b-mean)*gamma/sqrt(var+eps)+beta (a missing bias is created); the
 * BatchNorm becomes Identity. Uses the running statistics, so do it on a
 * trained (or loaded) model before preparing it. Errors: BX_ERR_NOT_FOUND,
 * BX_ERR_INVALID. */
bx_status bx_fuse_conv_bn(bx_module *root, const char *conv, const char *bn);

/* ---- int8 inference ------------------------------------------------------------ */
/* Quantize (f32 -> quint8 [0,255] with scale/zero point), DeQuantize (u8 ->
 * f32), QuantizedLinear[ReLU] (u8 (N,in) -> u8 (N,out)). New modules are
 * owned by the caller; the quantized linear copies its arguments:
 * w_int8 i8 (out,in); w_scale f64/f32 [out] or [1] (per-tensor); w_zp
 * i64/i32 same length; bias f32 [out] or NULL; in_scale/in_zp the input's
 * qparams, out_scale/out_zp the output's. NULL + BX_ERR_INVALID / SHAPE. */
bx_module *bx_quantize_new(double scale, int64_t zero_point);
bx_module *bx_dequantize_new(double scale, int64_t zero_point);
bx_module *bx_quantized_linear_new(const bx_tensor *w_int8, const bx_tensor *w_scale,
                                   const bx_tensor *w_zp, const bx_tensor *bias, double in_scale,
                                   int64_t in_zp, double out_scale, int64_t out_zp, bool relu);
/* QuantizedConv2d[ReLU]: u8 (N,C,H,W) -> u8 (N,O,H',W'), any groups,
 * explicit padding or padding='same' (stride 1; the odd extra on the end,
 * as torch), stride, dilation (o NULL = BX_CONV2D_OPTS_INIT); w_int8 i8
 * (O,C/groups,kh,kw), the rest as bx_quantized_linear_new. Padding is the
 * input zero point (the quantized 0). With all weight zero points 0 it runs
 * a cached oneDNN u8s8->s32 convolution on a channels-last copy of the input
 * and returns a channels-last tensor (a permuted view; QuantizedMaxPool2d,
 * QuantizedConv2d and the int8 Flatten take it as is); otherwise a plain C
 * kernel (same integers, NCHW output). NULL + BX_ERR_SHAPE (weight, scales)
 * / BX_ERR_INVALID (groups not dividing O, 'same' with stride > 1, bad
 * stride/padding/dilation or qparams). */
bx_module *bx_quantized_conv2d_new(const bx_tensor *w_int8, const bx_tensor *w_scale, const bx_tensor *w_zp,
                                   const bx_tensor *bias, const bx_conv2d_opts *o, double in_scale, int64_t in_zp,
                                   double out_scale, int64_t out_zp, bool relu);
/* QuantizedMaxPool2d: u8 (N,C,H,W) -> u8 (N,C,H',W'), the maximum integer of
 * each window (padding never wins; exact, as torch's quantized max_pool2d),
 * the input's qparams kept. o NULL = BX_POOL2D_OPTS_INIT. A channels-last
 * input (what QuantizedConv2d returns) gives a channels-last output.
 * Caller owns; NULL + BX_ERR_INVALID on bad options. */
bx_module *bx_quantized_max_pool2d_new(const bx_pool2d_opts *o);
/* The qparams of an int8 module: a Quantize's or QuantizedLinear's output,
 * a DeQuantize's input. False for other modules. */
bool bx_quant_module_qparams(const bx_module *m, double *scale, int64_t *zero_point);
/* Integer reference of a quantized linear's output (no oneDNN), for
 * checks: writes u8 (N,out) into y from u8 x (N,in). */
bx_status bx_quantized_linear_reference(const bx_module *ql, const bx_tensor *x, bx_tensor *y);
/* Selects the kernel of a QuantizedLinear or QuantizedConv2d: true = oneDNN
 * (default), false = the plain C reference. For measurements and checks. */
void bx_quantized_linear_use_onednn(bx_module *ql, bool on);

/* Converts a prepared QAT model whose forward runs its children in order
 * (a Sequential, or a user module like torch's QuantStub -> fc1 -> relu ->
 * fc2 -> DeQuantStub) made of QuantStub, prepared Linear / Conv2d layers,
 * MaxPool2d, Flatten, Identity/Dropout and DeQuantStub, into a new int8
 * Sequential of Quantize / QuantizedLinear[ReLU] / QuantizedConv2d[ReLU] /
 * QuantizedMaxPool2d / Flatten / DeQuantize (torch convert()): each
 * weight fake-quant observes the weight once more, weights are quantised
 * with its F2 qparams (float32 reciprocal, nearbyint, clamp), output qparams
 * come from the activation observers (F2). The QAT model is left unchanged
 * except for those observer updates. Caller owns *out. Errors:
 * BX_ERR_UNSUPPORTED (a child that cannot be converted, named),
 * BX_ERR_INVALID, BX_ERR_NOMEM. */
bx_status bx_quant_convert(bx_module *qat_seq, bx_module **out);

/* Saves an int8 Sequential from bx_quant_convert to safetensors (int8
 * weights, scales, zero points, biases; the layer list with conv and
 * flatten options in metadata "blixt.quant.layers"). Errors: BX_ERR_IO,
 * BX_ERR_UNSUPPORTED. */
bx_status bx_quant_save(const bx_module *qmodel, const char *path);
/* Loads what bx_quant_save wrote into a new int8 Sequential (caller owns).
 * Errors: BX_ERR_IO, BX_ERR_FORMAT (missing tensors or metadata). */
bx_status bx_quant_load(const char *path, bx_module **out);

#ifdef __cplusplus
}
#endif
#endif
