/* blixt/core.h - status codes, error text, allocator hook, RNG, threads.
 *
 * Every fallible call returns a bx_status; bx_errmsg() then gives the calling
 * thread's last message, naming the thing and the reason
 * ("linear fc2: input (32,256) does not match weight (10,128)").
 * The library never calls exit/abort and never prints on user error. */
#ifndef BLIXT_CORE_H
#define BLIXT_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes. Append-only: values never change meaning. */
typedef enum bx_status {
    BX_OK = 0,
    BX_ERR_NOMEM = 1,       /* an allocation failed */
    BX_ERR_INVALID = 2,     /* a bad argument or option value */
    BX_ERR_SHAPE = 3,       /* tensor shapes or dtypes do not fit the op */
    BX_ERR_IO = 4,          /* a file could not be opened, read or written */
    BX_ERR_FORMAT = 5,      /* a file or text is malformed, truncated or corrupt */
    BX_ERR_NOT_FOUND = 6,   /* a named thing (metric, parameter, key, file) is missing */
    BX_ERR_STATE = 7,       /* the call is not allowed in the object's current state */
    BX_ERR_UNSUPPORTED = 8, /* valid, but not supported by this build or backend */
    BX_ERR_BACKEND = 9,     /* a backend library (oneDNN, CUDA) reported a failure */
    BX_ERR_NUMERIC = 10,    /* a non-finite value where a finite one is required */
    BX_ERR_INTERRUPTED = 11 /* the run was interrupted (signal or user request) */
} bx_status;

/* Human text for a status code ("invalid argument"). Never NULL. */
const char *bx_status_str(bx_status s);

/* The calling thread's last error message ("" if none). The pointer stays
 * valid until the next failing call on this thread. */
const char *bx_errmsg(void);

/* Clears the calling thread's error message. */
void bx_clear_error(void);

/* Sets the calling thread's error message (printf-style) and returns s, so
 * code outside the library (a custom callback's hook, a user module) reports
 * failures the way built-in code does:
 *     return bx_set_error(BX_ERR_NOT_FOUND, "MyCallback: metric '%s' was not logged", name);
 * The Trainer then stops and returns s with this text. */
bx_status bx_set_error(bx_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* Prefixes the calling thread's message with "context: " (printf-style),
 * adding context while an error travels up: "callback MyCallback: <message>". */
void bx_error_context(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;

/* ---- allocator hook ------------------------------------------------------
 * All heap memory the library owns goes through this hook (like Lua's
 * lua_Alloc): alloc(ud, NULL, 0, n) allocates, alloc(ud, p, old, n) resizes,
 * alloc(ud, p, old, 0) frees and returns NULL. Memory must be aligned to 64
 * bytes. Set it before creating any object; objects must be freed with the
 * allocator that created them. NULL restores the default (aligned malloc). */
typedef void *(*bx_alloc_fn)(void *ud, void *ptr, size_t old_size, size_t new_size);
void bx_set_allocator(bx_alloc_fn fn, void *ud);

/* Number of allocations (alloc or realloc calls that returned memory) made
 * through the hook since the process started. Used to prove that a
 * steady-state training step allocates nothing. */
uint64_t bx_alloc_count(void);

/* Heap memory through the allocator hook (64-byte aligned), for code outside
 * the library that wants its long-lived state counted and placed as the
 * library's is (custom callbacks, modules). bx_malloc/bx_calloc/bx_realloc
 * return NULL with BX_ERR_NOMEM text on failure; bx_calloc zero-fills;
 * bx_strdup copies a string (NULL gives NULL). Free with bx_free;
 * bx_free(NULL) does nothing. */
void *bx_malloc(size_t n);
void *bx_calloc(size_t n);
void *bx_realloc(void *p, size_t n);
char *bx_strdup(const char *s);
void bx_free(void *p);

/* ---- threads ------------------------------------------------------------- */
/* Sets the number of worker threads used by the CPU kernels (OpenMP and
 * oneDNN). n <= 0 means "all cores". */
void bx_set_num_threads(int n);
int bx_get_num_threads(void);

/* ---- RNG -----------------------------------------------------------------
 * Counter-based (Philox-4x32-10): the stream is a pure function of
 * (seed, offset), so its whole state is two integers, saved and restored
 * exactly by checkpoints. */
typedef struct bx_rng {
    uint64_t seed;
    uint64_t offset; /* number of 32-bit words drawn so far */
} bx_rng;

void bx_rng_init(bx_rng *r, uint64_t seed);
uint32_t bx_rng_u32(bx_rng *r);
/* Uniform float in [0, 1). */
float bx_rng_uniform(bx_rng *r);
/* Standard normal (Box-Muller). */
float bx_rng_normal(bx_rng *r);
/* Uniform integer in [0, n). */
uint64_t bx_rng_below(bx_rng *r, uint64_t n);

/* ---- logging hook ---------------------------------------------------------
 * Informational messages (EarlyStopping verbose output, warnings) go to this
 * hook; the default writes "[blixt LEVEL] msg" to stderr. */
typedef enum bx_log_level { BX_LOG_DEBUG, BX_LOG_INFO, BX_LOG_WARNING, BX_LOG_ERROR } bx_log_level;
typedef void (*bx_log_fn)(void *ud, bx_log_level level, const char *msg);
void bx_set_log_handler(bx_log_fn fn, void *ud);
void bx_logf(bx_log_level level, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
