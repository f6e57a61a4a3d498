/* dnnl_ctx.c - the process-wide oneDNN CPU engine and stream, and the
 * helpers that wrap buffers and run primitives (see dnnl_int.h).
 *
 * Why one engine and one stream per process: a oneDNN CPU engine is an
 * immutable handle on "the CPU" (there is exactly one), and primitives are
 * tied to the engine they were created on, so a process-wide engine is what
 * lets the primitive caches be shared by every step and model. An in-order
 * CPU stream carries no per-execution state (execution is synchronous on the
 * calling thread's OpenMP team), and primitives created with a user-managed
 * scratchpad keep no mutable state either, so concurrent steps on different
 * threads may execute through the same stream. Both are created once
 * (pthread_once) and live until the process exits. */
#include "backend/cpu/dnnl_int.h"

#include <dnnl_debug.h>
#include <pthread.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
/* Written once inside pthread_once, read-only afterwards. */
static struct {
    dnnl_engine_t engine;
    dnnl_stream_t stream;
    dnnl_status_t status;
    const char *what;
} g_dnnl;

static void dnnl_init_once(void) {
    g_dnnl.what = "engine create";
    g_dnnl.status = dnnl_engine_create(&g_dnnl.engine, dnnl_cpu, 0);
    if (g_dnnl.status != dnnl_success) return;
    g_dnnl.what = "stream create";
    g_dnnl.status = dnnl_stream_create(&g_dnnl.stream, g_dnnl.engine, dnnl_stream_default_flags);
}

bx_status bx__dnnl_check(dnnl_status_t s, const char *what) {
    if (s == dnnl_success) return BX_OK;
    return bx__error(BX_ERR_BACKEND, "oneDNN: %s: %s", what, dnnl_status2str(s));
}

bx_status bx__dnnl_get(dnnl_engine_t *engine, dnnl_stream_t *stream) {
    pthread_once(&g_once, dnnl_init_once);
    if (g_dnnl.status != dnnl_success) return bx__dnnl_check(g_dnnl.status, g_dnnl.what);
    if (engine) *engine = g_dnnl.engine;
    if (stream) *stream = g_dnnl.stream;
    return BX_OK;
}

dnnl_primitive_attr_t bx__dnnl_attr_new(bool accumulate) {
    dnnl_primitive_attr_t attr = NULL;
    if (bx__dnnl_check(dnnl_primitive_attr_create(&attr), "attr create") != BX_OK) return NULL;
    if (bx__dnnl_check(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user),
                       "set scratchpad mode") != BX_OK)
        goto fail;
    if (accumulate) {
        dnnl_post_ops_t po = NULL;
        if (bx__dnnl_check(dnnl_post_ops_create(&po), "post-ops create") != BX_OK) goto fail;
        dnnl_status_t s = dnnl_post_ops_append_sum(po, 1.0f);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, po);
        dnnl_post_ops_destroy(po);
        if (bx__dnnl_check(s, "sum post-op") != BX_OK) goto fail;
    }
    return attr;
fail:
    dnnl_primitive_attr_destroy(attr);
    return NULL;
}

bx_status bx__dnnl_primitive(const void *op_desc, const_dnnl_primitive_desc_t hint,
                             dnnl_primitive_desc_t *pd_out, dnnl_primitive_t *prim,
                             const char *what) {
    dnnl_engine_t eng;
    *prim = NULL;
    if (pd_out) *pd_out = NULL;
    bx_status s = bx__dnnl_get(&eng, NULL);
    if (s != BX_OK) return s;
    dnnl_primitive_attr_t attr = bx__dnnl_attr_new(false);
    if (!attr) return BX_ERR_BACKEND;
    dnnl_primitive_desc_t pd = NULL;
    s = bx__dnnl_check(dnnl_primitive_desc_create(&pd, op_desc, attr, eng, hint), what);
    dnnl_primitive_attr_destroy(attr);
    if (s != BX_OK) return s;
    s = bx__dnnl_check(dnnl_primitive_create(prim, pd), what);
    if (s != BX_OK || !pd_out) dnnl_primitive_desc_destroy(pd);
    else *pd_out = pd;
    return s;
}

bx_status bx__dnnl_reorder_new(const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *dst,
                               bool accumulate, dnnl_primitive_t *prim) {
    dnnl_engine_t eng;
    *prim = NULL;
    if (!accumulate && dnnl_memory_desc_equal(src, dst)) return BX_OK;
    bx_status s = bx__dnnl_get(&eng, NULL);
    if (s != BX_OK) return s;
    dnnl_primitive_attr_t attr = bx__dnnl_attr_new(accumulate);
    if (!attr) return BX_ERR_BACKEND;
    dnnl_primitive_desc_t pd = NULL;
    s = bx__dnnl_check(dnnl_reorder_primitive_desc_create(&pd, src, eng, dst, eng, attr),
                       "reorder descriptor");
    dnnl_primitive_attr_destroy(attr);
    if (s != BX_OK) return s;
    s = bx__dnnl_check(dnnl_primitive_create(prim, pd), "reorder create");
    dnnl_primitive_desc_destroy(pd);
    return s;
}

bx_status bx__dnnl_args_add(bx__dnnl_args *a, int arg, const dnnl_memory_desc_t *md, void *ptr) {
    dnnl_engine_t eng;
    bx_status s = bx__dnnl_get(&eng, NULL);
    if (s != BX_OK) return s;
    if (a->n >= BX__DNNL_MAX_ARGS) return bx__error(BX_ERR_BACKEND, "oneDNN: too many arguments");
    dnnl_memory_t m = NULL;
    s = bx__dnnl_check(dnnl_memory_create(&m, md, eng, ptr), "memory create");
    if (s != BX_OK) return s;
    a->a[a->n].arg = arg;
    a->a[a->n].memory = m;
    a->n++;
    return BX_OK;
}

void bx__dnnl_args_release(bx__dnnl_args *a) {
    for (int i = 0; i < a->n; i++) dnnl_memory_destroy(a->a[i].memory);
    a->n = 0;
}

bx_status bx__dnnl_args_run(bx_step *st, bx__dnnl_args *a, const_dnnl_primitive_t prim,
                            const char *what) {
    dnnl_stream_t strm;
    bx_status s = bx__dnnl_get(NULL, &strm);
    if (s == BX_OK) {
        const_dnnl_primitive_desc_t pd = NULL;
        const dnnl_memory_desc_t *smd = NULL;
        if (dnnl_primitive_get_primitive_desc(prim, &pd) == dnnl_success && pd)
            smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        size_t sbytes = smd ? dnnl_memory_desc_get_size(smd) : 0;
        if (sbytes) {
            void *scratch = bx_step_alloc(st, sbytes);
            if (!scratch) s = BX_ERR_NOMEM;
            else s = bx__dnnl_args_add(a, DNNL_ARG_SCRATCHPAD, smd, scratch);
        }
    }
    if (s == BX_OK) s = bx__dnnl_check(dnnl_primitive_execute(prim, strm, a->n, a->a), what);
    if (s == BX_OK) s = bx__dnnl_check(dnnl_stream_wait(strm), what);
    bx__dnnl_args_release(a);
    if (s != BX_OK && bx_step_status(st) == BX_OK) bx_step_fail(st, s, "%s: %s", what, bx_errmsg());
    return s;
}

bx_status bx__dnnl_reorder_run(bx_step *st, const_dnnl_primitive_t prim,
                               const dnnl_memory_desc_t *src_md, const void *src,
                               const dnnl_memory_desc_t *dst_md, void *dst, const char *what) {
    if (!prim) return BX_OK;
    bx__dnnl_args a;
    bx__dnnl_args_init(&a);
    bx_status s = bx__dnnl_args_add(&a, DNNL_ARG_FROM, src_md, (void *)src);
    if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_TO, dst_md, dst);
    if (s != BX_OK) {
        bx__dnnl_args_release(&a);
        bx_step_fail(st, s, "%s: %s", what, bx_errmsg());
        return s;
    }
    return bx__dnnl_args_run(st, &a, prim, what);
}
