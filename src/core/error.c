/* error.c - status text and the thread-local error message. */
#include "core/core_int.h"

#include <stdio.h>
#include <string.h>

static _Thread_local char errbuf[1024];

const char *bx_status_str(bx_status s) {
    switch (s) {
    case BX_OK: return "ok";
    case BX_ERR_NOMEM: return "out of memory";
    case BX_ERR_INVALID: return "invalid argument";
    case BX_ERR_SHAPE: return "shape mismatch";
    case BX_ERR_IO: return "i/o error";
    case BX_ERR_FORMAT: return "malformed or corrupt data";
    case BX_ERR_NOT_FOUND: return "not found";
    case BX_ERR_STATE: return "not allowed in this state";
    case BX_ERR_UNSUPPORTED: return "unsupported";
    case BX_ERR_BACKEND: return "backend failure";
    case BX_ERR_NUMERIC: return "non-finite value";
    case BX_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

const char *bx_errmsg(void) { return errbuf; }

void bx_clear_error(void) { errbuf[0] = '\0'; }

bx_status bx__verror(bx_status s, const char *fmt, va_list ap) {
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    return s;
}

bx_status bx__error(bx_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    bx__verror(s, fmt, ap);
    va_end(ap);
    return s;
}

static void error_vprefix(const char *fmt, va_list ap) {
    char prefix[512], old[sizeof errbuf];
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    memcpy(old, errbuf, sizeof old);
    snprintf(errbuf, sizeof errbuf, "%s: %s", prefix, old);
}

void bx__error_prefix(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_vprefix(fmt, ap);
    va_end(ap);
}

bx_status bx_set_error(bx_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    bx__verror(s, fmt, ap);
    va_end(ap);
    return s;
}

void bx_error_context(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    error_vprefix(fmt, ap);
    va_end(ap);
}

size_t bx__strlcpy(char *dst, const char *src, size_t n) {
    size_t len = strlen(src);
    if (n) {
        size_t c = len < n - 1 ? len : n - 1;
        memcpy(dst, src, c);
        dst[c] = '\0';
    }
    return len;
}
