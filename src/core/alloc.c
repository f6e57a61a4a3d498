/* alloc.c - the allocator hook and 64-byte aligned heap memory.
 *
 * Every block carries a 64-byte header holding its size, so bx__free needs
 * no size from the caller while the hook still sees old sizes (Lua style). */
#include "core/core_int.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define HDR 64

static void *default_alloc(void *ud, void *ptr, size_t old_size, size_t new_size) {
    (void)ud;
    if (new_size == 0) {
        free(ptr);
        return NULL;
    }
    if (!ptr) {
        void *p = NULL;
        if (posix_memalign(&p, 64, new_size) != 0) return NULL;
        return p;
    }
    void *p = NULL;
    if (posix_memalign(&p, 64, new_size) != 0) return NULL;
    memcpy(p, ptr, old_size < new_size ? old_size : new_size);
    free(ptr);
    return p;
}

/* The hook is process-wide configuration (like sqlite3_config): set once
 * before any object is created. */
static bx_alloc_fn g_alloc = default_alloc;
static void *g_alloc_ud = NULL;
static atomic_uint_fast64_t g_alloc_count;

void bx_set_allocator(bx_alloc_fn fn, void *ud) {
    g_alloc = fn ? fn : default_alloc;
    g_alloc_ud = fn ? ud : NULL;
}

uint64_t bx_alloc_count(void) { return (uint64_t)atomic_load(&g_alloc_count); }

void *bx__malloc(size_t n) {
    void *raw = g_alloc(g_alloc_ud, NULL, 0, n + HDR);
    if (!raw) {
        bx__error(BX_ERR_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    atomic_fetch_add(&g_alloc_count, 1);
    *(size_t *)raw = n;
    return (char *)raw + HDR;
}

void *bx__calloc(size_t n) {
    void *p = bx__malloc(n);
    if (p) memset(p, 0, n);
    return p;
}

void *bx__realloc(void *p, size_t n) {
    if (!p) return bx__malloc(n);
    char *raw = (char *)p - HDR;
    size_t old = *(size_t *)raw;
    void *nraw = g_alloc(g_alloc_ud, raw, old + HDR, n + HDR);
    if (!nraw) {
        bx__error(BX_ERR_NOMEM, "out of memory allocating %zu bytes", n);
        return NULL;
    }
    atomic_fetch_add(&g_alloc_count, 1);
    *(size_t *)nraw = n;
    return (char *)nraw + HDR;
}

void bx__free(void *p) {
    if (!p) return;
    char *raw = (char *)p - HDR;
    size_t old = *(size_t *)raw;
    g_alloc(g_alloc_ud, raw, old + HDR, 0);
}

char *bx__strdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *d = bx__malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* The public names of the allocation helpers (core.h). */
void *bx_malloc(size_t n) { return bx__malloc(n); }
void *bx_calloc(size_t n) { return bx__calloc(n); }
void *bx_realloc(void *p, size_t n) { return bx__realloc(p, n); }
char *bx_strdup(const char *s) { return bx__strdup(s); }
void bx_free(void *p) { bx__free(p); }
