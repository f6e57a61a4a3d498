/* blixt/checkpoint.h - the .ckpt container.
 *
 * A checkpoint is a bx_state dict (epoch, global_step, state_dict, loops,
 * optimizer_states, lr_schedulers, callbacks, hyper_parameters, ...) written
 * as ONE safetensors file: the tensors of `state_dict` under their PyTorch
 * names (so torch/safetensors load them directly), every other tensor under
 * its dotted path ("optimizer_states.0.state.0.exp_avg",
 * "callbacks.<state_key>.<key>"), and the rest of the tree as JSON in the
 * `__metadata__` entry "blixt" next to "format": "pt". A CRC32 over the JSON
 * and the data section (metadata "blixt_crc32") detects truncation and bit
 * flips. Writes are crash-safe (temp file in the target folder, fsync,
 * rename, fsync of the folder): a .ckpt is never half-written. */
#ifndef BLIXT_CHECKPOINT_H
#define BLIXT_CHECKPOINT_H

#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes `ckpt` (a dict) to path. Errors: BX_ERR_INVALID (not a dict, tensor
 * names that collide), BX_ERR_IO (naming the path and the failed step). */
bx_status bx_checkpoint_write(const char *path, const bx_state *ckpt);
/* Reads and validates a checkpoint; *out is owned by the caller
 * (bx_state_free). Errors: BX_ERR_IO (missing/unreadable), BX_ERR_FORMAT
 * naming the file and the failed check ("checksum mismatch", "truncated",
 * "no blixt metadata", ...). */
bx_status bx_checkpoint_read(const char *path, bx_state **out);

#ifdef __cplusplus
}
#endif
#endif
