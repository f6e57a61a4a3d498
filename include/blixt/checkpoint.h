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
 * rename, fsync of the folder): a .ckpt is never half-written.
 *
 * Details (format version 1, metadata "blixt_format_version": "1"):
 *  - In a dotted path each dict key is escaped so paths are unambiguous:
 *    '%' -> "%25", '.' -> "%2E" (a callback state key "a.b" gives
 *    "callbacks.a%2Eb.<key>"); list items are their index. state_dict keys
 *    are stored verbatim (at most 255 bytes). A path longer than 200 bytes
 *    is cut and suffixed "~<8 hex digits of its crc32>". The JSON holds the
 *    exact stored name in each {"__tensor__": NAME}, so readers never parse
 *    names.
 *  - "blixt_crc32" is 8 lowercase hex digits: zlib crc32 of the UTF-8 bytes
 *    of the "blixt" JSON text followed by the whole data section.
 *  - A dict whose only key is "__tensor__" with a string value cannot be
 *    saved (it would read back as a tensor): BX_ERR_INVALID. */
#ifndef BLIXT_CHECKPOINT_H
#define BLIXT_CHECKPOINT_H

#include "state.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes `ckpt` (a dict) to path. On failure no temp file is left and an
 * existing file at path is unchanged. Errors: BX_ERR_INVALID (not a dict,
 * tensor names that collide, a fake tensor reference, a non-UTF-8 string or
 * key, a poison tensor), BX_ERR_IO (naming the path and the failed step:
 * temp file creation, write, fsync, rename), BX_ERR_NOMEM. */
bx_status bx_checkpoint_write(const char *path, const bx_state *ckpt);
/* Reads and validates a checkpoint; *out is a full tree owned by the caller
 * (bx_state_free; tensors are owned copies, the file is closed), NULL on
 * error. Checks, in order: safetensors rules (bx_st_open), metadata keys
 * present, format "pt", format version, CRC, JSON, every tensor reference
 * resolves, every tensor in the file is referenced. Errors: BX_ERR_IO
 * (missing/unreadable), BX_ERR_FORMAT naming the file and the failed check
 * ("is truncated", "checksum mismatch: the file is corrupt", "no blixt
 * metadata", ...), BX_ERR_NOMEM. */
bx_status bx_checkpoint_read(const char *path, bx_state **out);

#ifdef __cplusplus
}
#endif
#endif
