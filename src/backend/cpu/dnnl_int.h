/* dnnl_int.h - the process-wide oneDNN CPU engine and stream, and small
 * helpers shared by every op that runs a oneDNN primitive (conv, and later
 * pooling, normalisation, matmul).
 *
 * Pattern for an op:
 *   dnnl_engine_t eng; dnnl_stream_t strm;
 *   if (bx__dnnl_get(&eng, &strm) != BX_OK) ... fail with bx_errmsg()
 *   create primitives once (attr from bx__dnnl_attr_new: user scratchpad) and
 *   cache them; per call:
 *   bx__dnnl_args a; bx__dnnl_args_init(&a);
 *   bx__dnnl_args_add(&a, DNNL_ARG_SRC, src_md, ptr); ...
 *   bx__dnnl_args_run(st, &a, prim, "conv2d forward");
 * The scratchpad comes from the step arena, so a steady-state step
 * allocates nothing through the allocator hook. */
#ifndef BLIXT_DNNL_INT_H
#define BLIXT_DNNL_INT_H

#include "autograd/autograd_int.h"

#include <dnnl.h>

/* The CPU engine and stream, created once per process (pthread_once).
 * Errors: BX_ERR_BACKEND when oneDNN cannot create them (then every later
 * call fails the same way). */
bx_status bx__dnnl_get(dnnl_engine_t *engine, dnnl_stream_t *stream);

/* BX_OK when s is dnnl_success; otherwise sets the thread's error text
 * ("oneDNN: <what>: <status>") and returns BX_ERR_BACKEND. */
bx_status bx__dnnl_check(dnnl_status_t s, const char *what);

/* New primitive attributes with user-managed scratchpad; the caller destroys
 * it with dnnl_primitive_attr_destroy. NULL on failure (error text set).
 * accumulate: append a sum post-op (dst = result + dst) - used by reorders
 * that add into a gradient. */
dnnl_primitive_attr_t bx__dnnl_attr_new(bool accumulate);

/* Creates a primitive from an op descriptor with a user-scratchpad attr.
 * *pd receives the primitive descriptor (kept by the caller as hint or for
 * queries; NULL pd argument = destroyed right away). */
bx_status bx__dnnl_primitive(const void *op_desc, const_dnnl_primitive_desc_t hint,
                             dnnl_primitive_desc_t *pd, dnnl_primitive_t *prim,
                             const char *what);

/* Reorder primitive from src to dst layout; *prim = NULL when the two
 * descriptors are equal and accumulate is false (a plain copy is not needed:
 * use the memory directly). accumulate: dst += reorder(src). */
bx_status bx__dnnl_reorder_new(const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                               bool accumulate, dnnl_primitive_t *prim);

/* Argument list for one execution: memory objects wrapping caller buffers. */
#define BX__DNNL_MAX_ARGS 10
typedef struct bx__dnnl_args {
    int n;
    dnnl_exec_arg_t a[BX__DNNL_MAX_ARGS];
} bx__dnnl_args;

static inline void bx__dnnl_args_init(bx__dnnl_args *a) { a->n = 0; }
/* Wraps ptr (laid out as md) as argument `arg`. Errors: BX_ERR_BACKEND. */
bx_status bx__dnnl_args_add(bx__dnnl_args *a, int arg, const dnnl_memory_desc_t *md, void *ptr);
/* Adds the scratchpad (from the step arena) when prim needs one, executes
 * prim on the process stream, waits, and releases the argument wrappers
 * (also on failure). Errors: BX_ERR_BACKEND / BX_ERR_NOMEM, with the step
 * error set ("<what>: ..."). */
bx_status bx__dnnl_args_run(bx_step *st, bx__dnnl_args *a, const_dnnl_primitive_t prim,
                            const char *what);
/* Releases the argument wrappers without executing (error paths). */
void bx__dnnl_args_release(bx__dnnl_args *a);

/* Runs a reorder (from bx__dnnl_reorder_new) from src to dst. prim may be
 * NULL only when the caller already knows no copy is needed (then nothing
 * happens). Same errors as bx__dnnl_args_run. */
bx_status bx__dnnl_reorder_run(bx_step *st, const_dnnl_primitive_t prim,
                               const dnnl_memory_desc_t *src_md, const void *src,
                               const dnnl_memory_desc_t *dst_md, void *dst, const char *what);

#endif
