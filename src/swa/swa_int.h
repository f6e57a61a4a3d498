/* swa_int.h - shared by the files of src/swa (weight averaging). */
#ifndef BLIXT_SWA_INT_H
#define BLIXT_SWA_INT_H

#include "blixt/swa.h"
#include "core/core_int.h"

/* The entry of `l` that plays the role of `name`: the same name, or, in a
 * model pruned after the averaged copy was made, `name` + "_orig" (pruning's
 * reparametrised parameter; its effective value is _orig * _mask). NULL if
 * neither exists. */
bx_tensor *bx__swa_peer(const bx_named_tensors *l, const char *name);
/* True for the pruning buffers a pruned model has and its averaged copy may
 * lack ("..._mask"). */
bool bx__swa_pruning_extra(const char *name);

#endif
