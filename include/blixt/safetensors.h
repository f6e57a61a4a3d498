/* blixt/safetensors.h - read and write the safetensors format.
 *
 * Format: u64 little-endian header length N, N bytes of JSON
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [b, e]}, ...,
 *  "__metadata__": {"k": "v", ...}}, then the raw little-endian data.
 * The reader maps the file and validates every rule: header length within
 * the file, valid UTF-8 JSON object, known dtypes, shape x dtype size equal to
 * the byte range, offsets in bounds, ranges contiguous and non-overlapping and
 * covering the whole data section, no duplicate names, metadata values all
 * strings. Errors name the file, the tensor and the rule. */
#ifndef BLIXT_SAFETENSORS_H
#define BLIXT_SAFETENSORS_H

#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct bx_st_file bx_st_file;

/* Opens and validates a file (mmap). *out is owned by the caller (bx_st_close).
 * Errors: BX_ERR_IO (open/map), BX_ERR_FORMAT (any rule broken), BX_ERR_NOMEM. */
bx_status bx_st_open(const char *path, bx_st_file **out);
/* Same from a memory buffer, which must outlive the file object. */
bx_status bx_st_open_memory(const void *buf, size_t len, const char *label, bx_st_file **out);
void bx_st_close(bx_st_file *f);

/* Tensors in file order (sorted by data offset). */
int bx_st_count(const bx_st_file *f);
const char *bx_st_name(const bx_st_file *f, int i);
/* The tensor called `name`: a read-only view valid until bx_st_close (data
 * copied to aligned memory when the file's offset is misaligned).
 * NULL with BX_ERR_NOT_FOUND text when absent. */
const bx_tensor *bx_st_get(const bx_st_file *f, const char *name);
const bx_tensor *bx_st_get_index(const bx_st_file *f, int i);
/* __metadata__ value for key, or NULL. */
const char *bx_st_metadata(const bx_st_file *f, const char *key);
int bx_st_metadata_count(const bx_st_file *f);
const char *bx_st_metadata_key(const bx_st_file *f, int i);

typedef struct bx_st_writer bx_st_writer;
/* New empty writer; caller owns it (bx_st_writer_free). NULL on NOMEM. */
bx_st_writer *bx_st_writer_new(void);
void bx_st_writer_free(bx_st_writer *w);
/* Adds a tensor (any strides; written contiguous). The tensor must stay alive
 * until bx_st_writer_write. Errors: BX_ERR_INVALID (duplicate or empty name). */
bx_status bx_st_writer_add(bx_st_writer *w, const char *name, const bx_tensor *t);
/* Adds a __metadata__ entry (both strings copied). */
bx_status bx_st_writer_meta(bx_st_writer *w, const char *key, const char *value);
/* Writes the file crash-safely: temp file in the target folder, fsync, rename,
 * fsync of the folder. Tensors are laid out 8-byte types first so every
 * tensor is aligned to its element size. Errors: BX_ERR_IO. */
bx_status bx_st_writer_write(bx_st_writer *w, const char *path);

#ifdef __cplusplus
}
#endif
#endif
