/* pytext.c - a growable text buffer and Python's text for numbers and
 * values (str(float), repr of dicts/lists), as the loggers write them. */
#include "io/state_int.h"
#include "loggers/loggers_int.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- buffer ------------------------------------------------------------------ */

void bx__sb_put(bx__sbuf *b, const void *s, size_t n) {
    if (b->oom) return;
    if (b->n + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n + 1) cap *= 2;
        char *p = bx__realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

void bx__sb_puts(bx__sbuf *b, const char *s) { bx__sb_put(b, s, strlen(s)); }
void bx__sb_putc(bx__sbuf *b, char c) { bx__sb_put(b, &c, 1); }

void bx__sb_printf(bx__sbuf *b, const char *fmt, ...) {
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof tmp) {
        bx__sb_put(b, tmp, (size_t)n);
        return;
    }
    char *big = bx__malloc((size_t)n + 1);
    if (!big) {
        b->oom = true;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    bx__sb_put(b, big, (size_t)n);
    bx__free(big);
}

void bx__sb_free(bx__sbuf *b) {
    bx__free(b->p);
    memset(b, 0, sizeof *b);
}

bx_status bx__sb_write_file(const bx__sbuf *b, const char *path, const char *what) {
    if (b->oom) return bx__error(BX_ERR_NOMEM, "%s: out of memory writing '%s'", what, path);
    FILE *f = fopen(path, "wb");
    if (!f) return bx__error(BX_ERR_IO, "%s: cannot write '%s': %s", what, path, strerror(errno));
    size_t w = b->n ? fwrite(b->p, 1, b->n, f) : 0;
    int e = errno;
    int c = fclose(f);
    if (w != b->n || c != 0)
        return bx__error(BX_ERR_IO, "%s: cannot write '%s': %s", what, path,
                         strerror(w != b->n ? e : errno));
    return BX_OK;
}

/* ---- Python text ----------------------------------------------------------------- */

char *bx__py_float(char *buf, double v) {
    if (isnan(v)) return strcpy(buf, "nan");
    if (isinf(v)) return strcpy(buf, v > 0 ? "inf" : "-inf");
    return bx__fmt_double(buf, v); /* repr style: shortest round trip */
}

static void py_repr_str(bx__sbuf *b, const char *s) {
    /* Python picks single quotes unless the text has ' and no ". */
    char q = (strchr(s, '\'') && !strchr(s, '"')) ? '"' : '\'';
    bx__sb_putc(b, q);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if (c == '\\' || c == (unsigned char)q) {
            bx__sb_putc(b, '\\');
            bx__sb_putc(b, (char)c);
        } else if (c == '\n') {
            bx__sb_puts(b, "\\n");
        } else if (c == '\r') {
            bx__sb_puts(b, "\\r");
        } else if (c == '\t') {
            bx__sb_puts(b, "\\t");
        } else if (c < 0x20 || c == 0x7f) {
            bx__sb_printf(b, "\\x%02x", c);
        } else {
            bx__sb_putc(b, (char)c); /* UTF-8 passes through (printable) */
        }
    }
    bx__sb_putc(b, q);
}

void bx__py_repr(bx__sbuf *b, const bx_state *s) {
    char num[32];
    switch (bx_state_typeof(s)) {
    case BX_STATE_NULL: bx__sb_puts(b, "None"); break;
    case BX_STATE_BOOL: bx__sb_puts(b, bx_state_get_bool(s) ? "True" : "False"); break;
    case BX_STATE_INT: bx__sb_printf(b, "%lld", (long long)bx_state_get_int(s)); break;
    case BX_STATE_FLOAT: bx__sb_puts(b, bx__py_float(num, bx_state_get_float(s))); break;
    case BX_STATE_STRING: py_repr_str(b, bx_state_get_string(s)); break;
    case BX_STATE_LIST:
        bx__sb_putc(b, '[');
        for (size_t i = 0; i < bx_state_len(s); i++) {
            if (i) bx__sb_puts(b, ", ");
            bx__py_repr(b, bx_state_at(s, i));
        }
        bx__sb_putc(b, ']');
        break;
    case BX_STATE_DICT:
        bx__sb_putc(b, '{');
        for (size_t i = 0; i < bx_state_len(s); i++) {
            if (i) bx__sb_puts(b, ", ");
            py_repr_str(b, bx_state_key_at(s, i));
            bx__sb_puts(b, ": ");
            bx__py_repr(b, bx_state_value_at(s, i));
        }
        bx__sb_putc(b, '}');
        break;
    case BX_STATE_TENSOR:
        bx__sb_printf(b, "tensor(%lld elements)", (long long)bx_numel(bx_state_get_tensor(s)));
        break;
    }
}
