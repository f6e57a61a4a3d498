/* core_int.h - internals of layer 1 shared across the library. */
#ifndef BLIXT_CORE_INT_H
#define BLIXT_CORE_INT_H

#include "blixt/core.h"

#include <stdarg.h>

/* Sets the thread's error message (printf-style) and returns s. */
bx_status bx__error(bx_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
bx_status bx__verror(bx_status s, const char *fmt, va_list ap);
/* Prefixes the current thread message with "prefix: " (context while unwinding). */
void bx__error_prefix(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* Heap memory through the allocator hook, 64-byte aligned. bx__free(NULL) is a
 * no-op. bx__malloc/bx__calloc set BX_ERR_NOMEM text on failure. */
void *bx__malloc(size_t n);
void *bx__calloc(size_t n);
void *bx__realloc(void *p, size_t n);
void bx__free(void *p);
char *bx__strdup(const char *s);

/* Allocation-free text helpers. */
size_t bx__strlcpy(char *dst, const char *src, size_t n);

#define BX_UNUSED(x) ((void)(x))
#define BX_MIN(a, b) ((a) < (b) ? (a) : (b))
#define BX_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
