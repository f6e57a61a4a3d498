/* model_desc.h - the models golden cases describe in `args.model`, built
 * with blixt/nn.h (for the e2e, swa and pruning runners).
 *
 * Understood descriptions (text after ';' or ", input" is ignored):
 *   "Sequential(net.0=Linear(20,16), net.1=ReLU, net.2=Linear(16,3))"
 *   "conv=Conv2d(1,4,3,bias=False) -> bn=BatchNorm2d(4) -> relu -> MaxPool2d(2)
 *    -> flatten -> fc=Linear(36,3)"
 *   "MLP net.0=Linear(4,8)-net.1=BatchNorm1d(8)-ReLU-net.3=Linear(8,3)"
 *   "CNN conv=Conv2d(2,3,3,padding=1)-bn=BatchNorm2d(3)-relu-adaptive_avg_pool2d(1)-flatten-fc=Linear(3,2)"
 * A "name=" gives the layer's dotted path (state dict names); unnamed layers
 * hold no state and get names of their own. Layer sizes come from the
 * param.<path>.weight shapes of the case (BatchNorm without affine: from
 * buf.<path>.running_mean); only kinds and non-parameter options (stride,
 * padding, eps, momentum, pool sizes, slopes) are read from the text. Type
 * names are matched ignoring case and underscores: Linear, Conv2d,
 * BatchNorm1d/2d, ReLU, Tanh, Sigmoid, GELU, LeakyReLU, Identity, Flatten,
 * Dropout, MaxPool2d, AvgPool2d, AdaptiveAvgPool2d. */
#ifndef BLIXT_GOLDEN_MODEL_DESC_H
#define BLIXT_GOLDEN_MODEL_DESC_H

#include "golden.h"

/* The model of args.model, with zero-initialised parameters (load them with
 * gc_load_model). The root is a Sequential running the layers in order. With
 * mlp_fallback, a text that cannot be read is replaced by Linear layers at
 * every param.net.K.weight with ReLU in between. NULL after gc_fail. */
bx_module *gc_build_model(gcase *c, bool mlp_fallback);

/* Loads the case tensors <prefix><name> (else <prefix2><name> when prefix2 is
 * not NULL) into every state dict entry of m; strict: a missing one is an
 * error. False after gc_fail. E.g. ("param.", "buf.") or ("in.snap1.", NULL). */
bool gc_load_model(gcase *c, bx_module *m, const char *prefix, const char *prefix2, bool strict);

#endif
