/* io_int.h - internals of the io layer shared between safetensors.c and the
 * checkpoint container (checkpoint.c). */
#ifndef BLIXT_IO_INT_H
#define BLIXT_IO_INT_H

#include "blixt/safetensors.h"
#include "core/core_int.h"

/* Like bx_st_writer_write, and additionally stores a CRC32 (zlib crc32) in
 * the __metadata__ entry `crc_key`, as 8 lowercase hex digits: the CRC is
 * continued from `seed` over the data section exactly as it is written
 * (computed while the bytes go out, then patched into the header of the temp
 * file before the fsync and rename). `crc_key` must be plain ASCII without
 * quotes or backslashes. Errors: as bx_st_writer_write; BX_ERR_INVALID for a
 * bad crc_key. */
bx_status bx__st_writer_write_crc(bx_st_writer *w, const char *path, const char *crc_key, uint32_t seed);

/* The data section of an open file (everything after the header): a pointer
 * into the mapping / buffer, valid until bx_st_close. */
void bx__st_data_section(const bx_st_file *f, const void **data, size_t *len);

#endif
