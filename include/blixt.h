/* blixt.h - the whole public API of Blixt. */
#ifndef BLIXT_H
#define BLIXT_H

#include "blixt/core.h"
#include "blixt/tensor.h"
#include "blixt/autograd.h"
#include "blixt/ops.h"
#include "blixt/nn.h"
#include "blixt/prune.h"
#include "blixt/safetensors.h"
#include "blixt/state.h"
#include "blixt/idx.h"
#include "blixt/optim.h"
#include "blixt/sched.h"
#include "blixt/data.h"
#include "blixt/checkpoint.h"
#include "blixt/logger.h"
#include "blixt/callback.h"
#include "blixt/trainer.h"
#include "blixt/callbacks.h"
#include "blixt/pruning.h"
#include "blixt/gpu_stats.h"
#include "blixt/swa.h"
#include "blixt/swa_callback.h"
#include "blixt/finetuning.h"
#include "blixt/quant.h"
#include "blixt/qat.h"

#endif
