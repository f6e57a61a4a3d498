/* loggers_int.h - internals shared by the built-in loggers (CSV, TensorBoard):
 * folder/version resolution, a growable text buffer, Python-style number
 * text, the hparams.yaml writer and the protobuf/TFRecord helpers. */
#ifndef BLIXT_LOGGERS_INT_H
#define BLIXT_LOGGERS_INT_H

#include "blixt/logger.h"
#include "core/core_int.h"

/* ---- folders and version (Lightning's root_dir / version / log_dir) ------- */
typedef struct bx__logger_dirs {
    char *save_dir; /* owned */
    char *name;     /* owned; "" = no name level */
    int64_t number; /* >= 0 explicit, -1 auto */
    char *text;     /* owned explicit folder name or NULL */
    bool resolved;
    char *version;  /* "3" or the text; set once resolved */
    char *root_dir; /* save_dir/name (or save_dir) */
    char *log_dir;  /* root_dir/version_<v> (or root_dir/<text>) */
} bx__logger_dirs;

/* Copies the options (NULL save_dir -> ".", NULL name -> "lightning_logs").
 * Errors: NOMEM, INVALID (negative number other than -1). */
bx_status bx__logger_dirs_init(bx__logger_dirs *d, const char *save_dir, const char *name,
                               bx_logger_version_opt v);
void bx__logger_dirs_free(bx__logger_dirs *d);
/* Resolves the version once (scan root_dir for version_<int>: max+1, 0 if
 * none or root_dir missing); later calls keep it. Errors: NOMEM. */
bx_status bx__logger_dirs_resolve(bx__logger_dirs *d);
/* Python's os.path.join(a, b). Owned result (bx__free) or NULL on NOMEM. */
char *bx__path_join(const char *a, const char *b);
/* mkdir -p. Errors: BX_ERR_IO "logger: cannot create folder 'p': reason". */
bx_status bx__mkdirs(const char *path);
bool bx__is_dir(const char *path);
bool bx__is_file(const char *path);
bool bx__dir_nonempty(const char *path); /* false when missing */
/* "{prefix}-{key}" when prefix is non-empty, else a copy of key. Owned. */
char *bx__prefixed(const char *prefix, const char *key);

/* ---- growable text/bytes --------------------------------------------------- */
typedef struct bx__sbuf {
    char *p;
    size_t n, cap;
    bool oom; /* an append failed: the content is incomplete */
} bx__sbuf;
void bx__sb_put(bx__sbuf *b, const void *s, size_t n);
void bx__sb_puts(bx__sbuf *b, const char *s);
void bx__sb_putc(bx__sbuf *b, char c);
void bx__sb_printf(bx__sbuf *b, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void bx__sb_free(bx__sbuf *b);
/* Writes the buffer to `path` (truncating). Errors: NOMEM (b->oom), IO naming path. */
bx_status bx__sb_write_file(const bx__sbuf *b, const char *path, const char *what);

/* ---- Python text of numbers and values ------------------------------------ */
/* Python's str(float): "1.0", "0.1", "1e-05", "1.5e+20", "nan", "inf",
 * "-inf". buf needs 32 bytes. Returns buf. */
char *bx__py_float(char *buf, double v);
/* Python's repr() of a state node ("None", "True", "[1, 'a']", "{'k': 2.0}")
 * appended to b. Tensors as "tensor(<n> elements)". */
void bx__py_repr(bx__sbuf *b, const bx_state *s);

/* ---- hparams.yaml (PyYAML 6 yaml.dump of the dict: sorted keys, block style) */
/* Appends the YAML text of a dict node ("{}\n" when empty). Tensor values
 * are skipped with a warning, like Lightning's "Skipping 'k' parameter". */
void bx__yaml_dump(bx__sbuf *b, const bx_state *dict);
/* Writes yaml.dump(dict) to path. Errors: IO naming the path, NOMEM. */
bx_status bx__yaml_write_file(const char *path, const bx_state *dict);
/* dict.update(params) on a deep copy of each value. Errors: INVALID when
 * params is not a dict (NULL = empty), NOMEM. */
bx_status bx__hparams_update(bx_state *dst, const bx_state *params);

/* ---- protobuf wire format + TFRecord framing ------------------------------- */
uint32_t bx__crc32c(const void *data, size_t n);
/* ((crc >> 15) | (crc << 17)) + 0xa282ead8 */
uint32_t bx__crc32c_masked(const void *data, size_t n);
void bx__pb_varint(bx__sbuf *b, uint64_t v);
void bx__pb_key(bx__sbuf *b, int field, int wire);
void bx__pb_uint(bx__sbuf *b, int field, uint64_t v);     /* varint field */
void bx__pb_double(bx__sbuf *b, int field, double v);     /* fixed64 */
void bx__pb_float(bx__sbuf *b, int field, float v);       /* fixed32 */
void bx__pb_bytes(bx__sbuf *b, int field, const void *p, size_t n);
void bx__pb_string(bx__sbuf *b, int field, const char *s);
void bx__pb_msg(bx__sbuf *b, int field, const bx__sbuf *m); /* embedded message */
/* Appends one TFRecord (u64 len, masked crc(len), data, masked crc(data)). */
void bx__tfrecord(bx__sbuf *out, const void *data, size_t n);

/* Path of a TensorBoardLogger's current event file (NULL before the first
 * record or for another logger); for tests. */
const char *bx__tensorboard_event_path(bx_logger *lg);

#endif
