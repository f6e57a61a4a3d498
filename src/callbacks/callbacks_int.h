/* callbacks_int.h - internals shared by the built-in callbacks' files. */
#ifndef BLIXT_CALLBACKS_INT_H
#define BLIXT_CALLBACKS_INT_H

#include "blixt/callbacks.h"

/* One formatting candidate: a metric value, integer-typed (epoch, step,
 * names missing from the metrics) or float. */
typedef struct bx__fmt_metric {
    const char *name;
    double value;
    bool is_int;
} bx__fmt_metric;

/* Lightning 1.9.5's ModelCheckpoint._format_checkpoint_name: template NULL
 * or "" -> "{epoch}-{step}"; every "{name" up to ':' or '}' is a metric
 * name; auto_insert rewrites "{name" as "name={name" (textually, every
 * occurrence); names not in m format as integer 0; then Python str.format
 * with format specs. Writes the name (no dirpath, no extension) into out.
 * Errors: BX_ERR_INVALID naming the template and the problem (unbalanced
 * braces, unknown format code, result longer than n). */
bx_status bx__ckpt_format_name(const char *tmpl, bool auto_insert, const bx__fmt_metric *m, int nm, char *out,
                               size_t n);

/* Python's format(value, spec) of a float (is_int false) or an int. */
bx_status bx__py_format_number(double v, bool is_int, const char *spec, char *out, size_t n);

#endif
