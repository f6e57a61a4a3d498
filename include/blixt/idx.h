/* blixt/idx.h - the IDX format of MNIST / Fashion-MNIST.
 *
 * An IDX file is: two zero bytes, a type code, the number of dimensions n,
 * n big-endian u32 sizes, then the big-endian, row-major data. Files may be
 * gzip-compressed (.gz); both forms are read transparently. */
#ifndef BLIXT_IDX_H
#define BLIXT_IDX_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Reads the IDX file at `path` (raw or gzip) into a new contiguous tensor;
 * *out is owned by the caller (bx_tensor_free), NULL on error.
 * Type codes map to: 0x08 -> BX_U8, 0x09 -> BX_I8, 0x0B (i16) -> BX_I32
 * (widened), 0x0C -> BX_I32, 0x0D -> BX_F32, 0x0E -> BX_F64.
 * Errors: BX_ERR_IO (cannot open/read), BX_ERR_FORMAT (bad magic or type
 * code, truncated header or data - the message says how many bytes were
 * missing -, trailing bytes after the data, corrupt gzip stream),
 * BX_ERR_UNSUPPORTED (more than BX_MAX_DIMS dimensions), BX_ERR_NOMEM. */
bx_status bx_idx_load(const char *path, bx_tensor **out);

#ifdef __cplusplus
}
#endif
#endif
