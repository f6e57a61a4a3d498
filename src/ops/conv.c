/* conv.c - 2-D convolution (NCHW) through oneDNN primitives.
 *
 * Activations stay NCHW at the op boundary; inside, the primitives are
 * created with dnnl_format_tag_any so oneDNN picks its blocked layouts
 * (nChw16c & co., 2.5-8x faster than plain NCHW here), and reorders convert
 * in and out. The blocked copies of x and w made by the forward are kept in
 * the step arena and reused by the backward.
 *
 * Creating a primitive descriptor + primitive costs far more than running a
 * small conv, so they are cached process-wide (see "primitive cache"). */
#include "backend/cpu/dnnl_int.h"
#include "blixt/ops.h"

#include <omp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- primitive cache ----------------------------------------------------------
 * One entry per (shapes, options, thread count): the forward primitive and,
 * created on first need, the backward-weights and backward-data primitives,
 * plus the reorders between the user layouts (NCHW, OIHW) and the layouts
 * the primitives chose. Process-wide so every step and model shares them:
 * a mutex guards the list; an entry is pinned (users > 0) while a call uses
 * it and is immutable once built, so it is used outside the lock. At most
 * CONV_CACHE_CAP entries: beyond that the least recently used unpinned entry
 * is destroyed (a backward re-finds its entry by key, so eviction between a
 * forward and its backward only costs a rebuild; oneDNN picks the same
 * layouts for the same key, which the backward checks). */

#define CONV_CACHE_CAP 64

typedef struct conv_key { /* all int64_t: no padding bytes, memcmp-safe */
    int64_t n, c, h, w, o, kh, kw, oh, ow;
    int64_t sh, sw, pt, pl, pb, pr, dh, dw, groups;
    int64_t has_bias, nthreads;
} conv_key;

enum { DIR_FWD = 1, DIR_BWD_W = 2, DIR_BWD_D = 4 };

typedef struct conv_entry {
    conv_key key;
    dnnl_memory_desc_t x_md, w_md, y_md, b_md; /* user layouts: NCHW, (G)OIHW, NCHW, x */
    /* forward: r_src x->src, r_wei w->wei, r_dst dst->y (NULL = same layout) */
    dnnl_primitive_desc_t f_pd;
    dnnl_primitive_t f, f_r_src, f_r_wei, f_r_dst;
    dnnl_memory_desc_t f_src, f_wei, f_dst;
    /* backward weights: r_src f_src->src, r_ddst gy->ddst, r_dwei dwei->+=gw */
    bool bw_ready;
    dnnl_primitive_t bw, bw_r_src, bw_r_ddst, bw_r_dwei;
    dnnl_memory_desc_t bw_src, bw_ddst, bw_dwei;
    /* backward data: r_wei f_wei->wei, r_ddst gy->ddst, r_dsrc dsrc->+=gx */
    bool bd_ready;
    dnnl_primitive_t bd, bd_r_wei, bd_r_ddst, bd_r_dsrc;
    dnnl_memory_desc_t bd_wei, bd_ddst, bd_dsrc;
    int users;
    uint64_t last_used;
    struct conv_entry *next;
} conv_entry;

static pthread_mutex_t g_conv_lock = PTHREAD_MUTEX_INITIALIZER;
static struct { /* guarded by g_conv_lock */
    conv_entry *head;
    int count;
    uint64_t tick;
} g_conv;

static void prim_destroy(dnnl_primitive_t p) {
    if (p) dnnl_primitive_destroy(p);
}

static void entry_destroy(conv_entry *e) {
    prim_destroy(e->f);
    prim_destroy(e->f_r_src);
    prim_destroy(e->f_r_wei);
    prim_destroy(e->f_r_dst);
    if (e->f_pd) dnnl_primitive_desc_destroy(e->f_pd);
    prim_destroy(e->bw);
    prim_destroy(e->bw_r_src);
    prim_destroy(e->bw_r_ddst);
    prim_destroy(e->bw_r_dwei);
    prim_destroy(e->bd);
    prim_destroy(e->bd_r_wei);
    prim_destroy(e->bd_r_ddst);
    prim_destroy(e->bd_r_dsrc);
    bx__free(e);
}

static void conv_params(const conv_key *k, dnnl_dims_t strides, dnnl_dims_t dil, dnnl_dims_t pad_l,
                        dnnl_dims_t pad_r) {
    strides[0] = k->sh, strides[1] = k->sw;
    dil[0] = k->dh - 1, dil[1] = k->dw - 1; /* oneDNN counts the gaps */
    pad_l[0] = k->pt, pad_l[1] = k->pl;
    pad_r[0] = k->pb, pad_r[1] = k->pr;
}

/* Memory descriptor with format `any` for x / w / y of this key. */
static bx_status md_any(const conv_key *k, char which, dnnl_format_tag_t tag, dnnl_memory_desc_t *md) {
    dnnl_dims_t d;
    int nd = 4;
    if (which == 'x') d[0] = k->n, d[1] = k->c, d[2] = k->h, d[3] = k->w;
    else if (which == 'y') d[0] = k->n, d[1] = k->o, d[2] = k->oh, d[3] = k->ow;
    else if (k->groups == 1) d[0] = k->o, d[1] = k->c, d[2] = k->kh, d[3] = k->kw;
    else {
        nd = 5;
        d[0] = k->groups, d[1] = k->o / k->groups, d[2] = k->c / k->groups, d[3] = k->kh, d[4] = k->kw;
        if (tag == dnnl_oihw) tag = dnnl_goihw;
    }
    return bx__dnnl_check(dnnl_memory_desc_init_by_tag(md, nd, d, dnnl_f32, tag), "memory descriptor");
}

static const dnnl_memory_desc_t *q_md(const_dnnl_primitive_desc_t pd, dnnl_query_t q, int i) {
    return dnnl_primitive_desc_query_md(pd, q, i);
}

/* The format_tag_any descriptors of x, w, y and the stride/dilation/padding
 * dims every direction's descriptor needs. */
static bx_status any_descs(const conv_key *k, dnnl_memory_desc_t *xa, dnnl_memory_desc_t *wa,
                           dnnl_memory_desc_t *ya, dnnl_dims_t s, dnnl_dims_t d, dnnl_dims_t pl, dnnl_dims_t pr) {
    bx_status r = md_any(k, 'x', dnnl_format_tag_any, xa);
    if (r == BX_OK) r = md_any(k, 'w', dnnl_format_tag_any, wa);
    if (r == BX_OK) r = md_any(k, 'y', dnnl_format_tag_any, ya);
    if (r == BX_OK) conv_params(k, s, d, pl, pr);
    return r;
}

static bx_status build_fwd(conv_entry *e) {
    const conv_key *k = &e->key;
    dnnl_memory_desc_t xa, wa, ya;
    dnnl_dims_t s, d, pl, pr, bd = {k->o};
    bx_status r = md_any(k, 'x', dnnl_nchw, &e->x_md);
    if (r == BX_OK) r = md_any(k, 'w', dnnl_oihw, &e->w_md);
    if (r == BX_OK) r = md_any(k, 'y', dnnl_nchw, &e->y_md);
    if (r == BX_OK) r = bx__dnnl_check(dnnl_memory_desc_init_by_tag(&e->b_md, 1, bd, dnnl_f32, dnnl_x), "bias md");
    if (r == BX_OK) r = any_descs(k, &xa, &wa, &ya, s, d, pl, pr);
    if (r != BX_OK) return r;
    dnnl_convolution_desc_t cd;
    r = bx__dnnl_check(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training, dnnl_convolution_direct,
                                                                 &xa, &wa, k->has_bias ? &e->b_md : NULL, &ya, s,
                                                                 d, pl, pr),
                       "conv2d forward descriptor");
    if (r == BX_OK) r = bx__dnnl_primitive(&cd, NULL, &e->f_pd, &e->f, "conv2d forward");
    if (r != BX_OK) return r;
    /* One input channel (a grayscale first layer): oneDNN keeps the input
     * plain and the conv is so cheap that reordering its blocked output back
     * to NCHW costs as much as the conv itself; a plain-output primitive is
     * faster overall (1->32 @28, batch 128, 1 thread: forward 1.7 -> 1.3 ms).
     * Measured: from 3 input channels on the blocked output wins again. */
    if (k->c == 1 && k->groups == 1 && dnnl_memory_desc_equal(q_md(e->f_pd, dnnl_query_src_md, 0), &e->x_md)) {
        dnnl_primitive_desc_t pd2 = NULL;
        dnnl_primitive_t p2 = NULL;
        r = bx__dnnl_check(dnnl_dilated_convolution_forward_desc_init(&cd, dnnl_forward_training,
                                                                     dnnl_convolution_direct, &xa, &wa,
                                                                     k->has_bias ? &e->b_md : NULL, &e->y_md, s, d,
                                                                     pl, pr),
                           "conv2d forward descriptor");
        if (r == BX_OK && bx__dnnl_primitive(&cd, NULL, &pd2, &p2, "conv2d forward") == BX_OK) {
            dnnl_primitive_destroy(e->f);
            dnnl_primitive_desc_destroy(e->f_pd);
            e->f = p2;
            e->f_pd = pd2;
        }
        bx_clear_error();
        r = BX_OK;
    }
    e->f_src = *q_md(e->f_pd, dnnl_query_src_md, 0);
    e->f_wei = *q_md(e->f_pd, dnnl_query_weights_md, 0);
    e->f_dst = *q_md(e->f_pd, dnnl_query_dst_md, 0);
    r = bx__dnnl_reorder_new(&e->x_md, &e->f_src, false, &e->f_r_src);
    if (r == BX_OK) r = bx__dnnl_reorder_new(&e->w_md, &e->f_wei, false, &e->f_r_wei);
    if (r == BX_OK) r = bx__dnnl_reorder_new(&e->f_dst, &e->y_md, false, &e->f_r_dst);
    return r;
}

static bx_status build_bwd_w(conv_entry *e) {
    const conv_key *k = &e->key;
    dnnl_memory_desc_t xa, wa, ya;
    dnnl_dims_t s, d, pl, pr;
    bx_status r = any_descs(k, &xa, &wa, &ya, s, d, pl, pr);
    if (r != BX_OK) return r;
    dnnl_convolution_desc_t cd;
    r = bx__dnnl_check(dnnl_dilated_convolution_backward_weights_desc_init(
                           &cd, dnnl_convolution_direct, &xa, &wa, k->has_bias ? &e->b_md : NULL, &ya, s, d, pl, pr),
                       "conv2d backward-weights descriptor");
    dnnl_primitive_desc_t pd = NULL;
    if (r == BX_OK) r = bx__dnnl_primitive(&cd, e->f_pd, &pd, &e->bw, "conv2d backward weights");
    if (r != BX_OK) return r;
    e->bw_src = *q_md(pd, dnnl_query_src_md, 0);
    e->bw_ddst = *q_md(pd, dnnl_query_diff_dst_md, 0);
    e->bw_dwei = *q_md(pd, dnnl_query_diff_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    r = bx__dnnl_reorder_new(&e->f_src, &e->bw_src, false, &e->bw_r_src);
    if (r == BX_OK) r = bx__dnnl_reorder_new(&e->y_md, &e->bw_ddst, false, &e->bw_r_ddst);
    if (r == BX_OK) r = bx__dnnl_reorder_new(&e->bw_dwei, &e->w_md, true, &e->bw_r_dwei);
    if (r == BX_OK) e->bw_ready = true;
    return r;
}

static bx_status build_bwd_d(conv_entry *e) {
    const conv_key *k = &e->key;
    dnnl_memory_desc_t xa, wa, ya;
    dnnl_dims_t s, d, pl, pr;
    bx_status r = any_descs(k, &xa, &wa, &ya, s, d, pl, pr);
    if (r != BX_OK) return r;
    dnnl_convolution_desc_t cd;
    r = bx__dnnl_check(dnnl_dilated_convolution_backward_data_desc_init(&cd, dnnl_convolution_direct, &xa, &wa, &ya,
                                                                       s, d, pl, pr),
                       "conv2d backward-data descriptor");
    dnnl_primitive_desc_t pd = NULL;
    if (r == BX_OK) r = bx__dnnl_primitive(&cd, e->f_pd, &pd, &e->bd, "conv2d backward data");
    if (r != BX_OK) return r;
    e->bd_wei = *q_md(pd, dnnl_query_weights_md, 0);
    e->bd_ddst = *q_md(pd, dnnl_query_diff_dst_md, 0);
    e->bd_dsrc = *q_md(pd, dnnl_query_diff_src_md, 0);
    dnnl_primitive_desc_destroy(pd);
    r = bx__dnnl_reorder_new(&e->f_wei, &e->bd_wei, false, &e->bd_r_wei);
    if (r == BX_OK) r = bx__dnnl_reorder_new(&e->y_md, &e->bd_ddst, false, &e->bd_r_ddst);
    if (r == BX_OK) r = bx__dnnl_reorder_new(&e->bd_dsrc, &e->x_md, true, &e->bd_r_dsrc);
    if (r == BX_OK) e->bd_ready = true;
    return r;
}

/* Removes the least recently used unpinned entry (lock held). */
static void evict_one(void) {
    conv_entry **victim = NULL;
    for (conv_entry **pp = &g_conv.head; *pp; pp = &(*pp)->next)
        if ((*pp)->users == 0 && (!victim || (*pp)->last_used < (*victim)->last_used)) victim = pp;
    if (!victim) return;
    conv_entry *e = *victim;
    *victim = e->next;
    g_conv.count--;
    entry_destroy(e);
}

/* The pinned entry for key with the directions in `dirs` built; NULL with
 * error text on failure. Unpin with conv_release. */
static conv_entry *conv_acquire(const conv_key *key, int dirs) {
    pthread_mutex_lock(&g_conv_lock);
    conv_entry *e = g_conv.head;
    while (e && memcmp(&e->key, key, sizeof *key) != 0) e = e->next;
    bx_status r = BX_OK;
    if (!e) {
        if (g_conv.count >= CONV_CACHE_CAP) evict_one();
        e = bx__calloc(sizeof *e);
        if (!e) goto fail;
        e->key = *key;
        r = build_fwd(e);
        if (r != BX_OK) {
            entry_destroy(e);
            goto fail;
        }
        e->next = g_conv.head;
        g_conv.head = e;
        g_conv.count++;
    }
    if ((dirs & DIR_BWD_W) && !e->bw_ready) r = build_bwd_w(e);
    if (r == BX_OK && (dirs & DIR_BWD_D) && !e->bd_ready) r = build_bwd_d(e);
    if (r != BX_OK) goto fail; /* the entry stays, half-built directions are retried */
    e->users++;
    e->last_used = ++g_conv.tick;
    pthread_mutex_unlock(&g_conv_lock);
    return e;
fail:
    pthread_mutex_unlock(&g_conv_lock);
    return NULL;
}

static void conv_release(conv_entry *e) {
    pthread_mutex_lock(&g_conv_lock);
    e->users--;
    pthread_mutex_unlock(&g_conv_lock);
}

/* ---- the op ------------------------------------------------------------------ */

typedef struct conv_ctx {
    conv_key key;
    const void *xb; /* x in the forward's src layout (arena, or x->data) */
    const void *wb; /* w in the forward's weights layout */
    dnnl_memory_desc_t xb_md, wb_md; /* those layouts (see relayout) */
} conv_ctx;

/* p (laid out as `from`) in layout `to`: p itself when equal. Only differs
 * when the entry was evicted and rebuilt between a forward and its backward
 * under another thread count, so the reorder is made on the spot. */
static const void *relayout(bx_step *st, const dnnl_memory_desc_t *from, const void *p,
                            const dnnl_memory_desc_t *to) {
    if (dnnl_memory_desc_equal(from, to)) return p;
    dnnl_primitive_t r = NULL;
    void *buf = bx_step_alloc(st, dnnl_memory_desc_get_size(to));
    if (!buf) return NULL;
    if (bx__dnnl_reorder_new(from, to, false, &r) != BX_OK) {
        bx_step_fail(st, BX_ERR_BACKEND, "conv2d backward: %s", bx_errmsg());
        return NULL;
    }
    bx_status s = bx__dnnl_reorder_run(st, r, from, p, to, buf, "conv2d backward (relayout)");
    if (r) dnnl_primitive_destroy(r);
    return s == BX_OK ? buf : NULL;
}

/* Buffer in layout md holding `src` (user layout): src itself when no reorder. */
static void *to_layout(bx_step *st, dnnl_primitive_t r, const dnnl_memory_desc_t *user_md, const void *src,
                       const dnnl_memory_desc_t *md, const char *what) {
    if (!r) return (void *)src;
    void *buf = bx_step_alloc(st, dnnl_memory_desc_get_size(md));
    if (!buf) return NULL;
    if (bx__dnnl_reorder_run(st, r, user_md, src, md, buf, what) != BX_OK) return NULL;
    return buf;
}

static bool run_bwd_w(bx_step *st, conv_entry *e, const conv_ctx *c, const float *gy, bx_tensor *gw,
                      bx_tensor *gb, const void **ddst_out) {
    const void *xb = relayout(st, &c->xb_md, c->xb, &e->f_src);
    const void *src = xb ? to_layout(st, e->bw_r_src, &e->f_src, xb, &e->bw_src, "conv2d backward (src reorder)") : NULL;
    const void *ddst = src ? to_layout(st, e->bw_r_ddst, &e->y_md, gy, &e->bw_ddst, "conv2d backward (grad reorder)")
                           : NULL;
    void *dwei = ddst ? bx_step_alloc(st, dnnl_memory_desc_get_size(&e->bw_dwei)) : NULL;
    float *dbias = dwei && c->key.has_bias ? bx_step_alloc(st, sizeof(float) * (size_t)c->key.o) : NULL;
    if (!dwei || (c->key.has_bias && !dbias)) return false;
    bx__dnnl_args a;
    bx__dnnl_args_init(&a);
    bx_status s = bx__dnnl_args_add(&a, DNNL_ARG_SRC, &e->bw_src, (void *)src);
    if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_DIFF_DST, &e->bw_ddst, (void *)ddst);
    if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_DIFF_WEIGHTS, &e->bw_dwei, dwei);
    if (s == BX_OK && dbias) s = bx__dnnl_args_add(&a, DNNL_ARG_DIFF_BIAS, &e->b_md, dbias);
    if (s != BX_OK) {
        bx__dnnl_args_release(&a);
        bx_step_fail(st, s, "conv2d backward weights: %s", bx_errmsg());
        return false;
    }
    if (bx__dnnl_args_run(st, &a, e->bw, "conv2d backward weights") != BX_OK) return false;
    if (gw && bx__dnnl_reorder_run(st, e->bw_r_dwei, &e->bw_dwei, dwei, &e->w_md, gw->data,
                                   "conv2d backward (weight-grad reorder)") != BX_OK)
        return false;
    if (gb) {
        float *g = gb->data;
        for (int64_t i = 0; i < c->key.o; i++) g[i] += dbias[i];
    }
    *ddst_out = ddst;
    return true;
}

static bool run_bwd_d(bx_step *st, conv_entry *e, const conv_ctx *c, const float *gy, const void *ddst_w,
                      bx_tensor *gx) {
    const void *wb = relayout(st, &c->wb_md, c->wb, &e->f_wei);
    const void *wei = wb ? to_layout(st, e->bd_r_wei, &e->f_wei, wb, &e->bd_wei, "conv2d backward (weight reorder)") : NULL;
    const void *ddst = ddst_w && e->bw_ready && dnnl_memory_desc_equal(&e->bd_ddst, &e->bw_ddst)
                           ? ddst_w
                           : to_layout(st, e->bd_r_ddst, &e->y_md, gy, &e->bd_ddst, "conv2d backward (grad reorder)");
    void *dsrc = wei && ddst ? bx_step_alloc(st, dnnl_memory_desc_get_size(&e->bd_dsrc)) : NULL;
    if (!dsrc) return false;
    bx__dnnl_args a;
    bx__dnnl_args_init(&a);
    bx_status s = bx__dnnl_args_add(&a, DNNL_ARG_WEIGHTS, &e->bd_wei, (void *)wei);
    if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_DIFF_DST, &e->bd_ddst, (void *)ddst);
    if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_DIFF_SRC, &e->bd_dsrc, dsrc);
    if (s != BX_OK) {
        bx__dnnl_args_release(&a);
        bx_step_fail(st, s, "conv2d backward data: %s", bx_errmsg());
        return false;
    }
    if (bx__dnnl_args_run(st, &a, e->bd, "conv2d backward data") != BX_OK) return false;
    return bx__dnnl_reorder_run(st, e->bd_r_dsrc, &e->bd_dsrc, dsrc, &e->x_md, gx->data,
                                "conv2d backward (input-grad reorder)") == BX_OK;
}

/* gy (N,O,H',W') -> gx (N,C,H,W) via backward data, gw (O,C/g,kh,kw) and
 * gb (O) via backward weights; all accumulated into existing gradients. */
static void conv2d_backward(bx_step *st, bx_node *n) {
    const conv_ctx *c = n->ctx;
    bx_tensor *gx = bx__grad(st, n->in[0]);
    bx_tensor *gw = bx__grad(st, n->in[1]);
    bx_tensor *gb = n->nin > 2 ? bx__grad(st, n->in[2]) : NULL;
    int dirs = (gw || gb ? DIR_BWD_W : 0) | (gx ? DIR_BWD_D : 0);
    if (!dirs || bx_numel(n->out) == 0 || bx_step_status(st) != BX_OK) return;
    conv_entry *e = conv_acquire(&c->key, DIR_FWD | dirs);
    if (!e) {
        bx_step_fail(st, BX_ERR_BACKEND, "conv2d backward: %s", bx_errmsg());
        return;
    }
    const float *gy = n->out->grad->data;
    const void *ddst = NULL;
    bool ok = true;
    if (dirs & DIR_BWD_W) ok = run_bwd_w(st, e, c, gy, gw, gb, &ddst);
    if (ok && (dirs & DIR_BWD_D)) run_bwd_d(st, e, c, gy, ddst, gx);
    conv_release(e);
}

static bx_tensor *conv_fail(bx_step *st, const bx_tensor *x, const bx_tensor *w, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static bx_tensor *conv_fail(bx_step *st, const bx_tensor *x, const bx_tensor *w, const char *fmt, ...) {
    char xs[96], ws[96], why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return bx_step_fail(st, BX_ERR_SHAPE, "conv2d: x %s and w %s: %s", bx_shape_str(x, xs, sizeof xs),
                        bx_shape_str(w, ws, sizeof ws), why);
}

/* x (N,C,H,W), w (O,C/g,kh,kw), b (O) -> y (N,O,H',W'),
 * H' = (H + pt + pb - dh*(kh-1) - 1)/sh + 1 (likewise W'). */
bx_tensor *bx_conv2d(bx_step *st, bx_tensor *x, bx_tensor *w, bx_tensor *b, const bx_conv2d_opts *o) {
    static const bx_conv2d_opts dflt = BX_CONV2D_OPTS_INIT;
    if (!o) o = &dflt;
    if (!bx__ok2(st, "conv2d", x, w) || (b && !bx__ok1(st, "conv2d", b))) return bx__poison(st);
    if (x->dtype != BX_F32 || w->dtype != BX_F32 || (b && b->dtype != BX_F32))
        return conv_fail(st, x, w, "tensors must be f32");
    if (x->ndim != 4 || w->ndim != 4)
        return conv_fail(st, x, w, "x must be 4-D (N,C,H,W) and w 4-D (O,C/groups,kh,kw)");
    conv_key k;
    memset(&k, 0, sizeof k);
    k.n = x->shape[0], k.c = x->shape[1], k.h = x->shape[2], k.w = x->shape[3];
    k.o = w->shape[0], k.kh = w->shape[2], k.kw = w->shape[3];
    k.groups = o->groups;
    k.sh = o->stride[0], k.sw = o->stride[1], k.dh = o->dilation[0], k.dw = o->dilation[1];
    if (k.groups < 1 || k.sh < 1 || k.sw < 1 || k.dh < 1 || k.dw < 1 || o->padding[0] < 0 || o->padding[1] < 0)
        return conv_fail(st, x, w,
                         "bad options: groups %lld, stride (%lld,%lld), dilation (%lld,%lld) must be >= 1, "
                         "padding (%d,%d) >= 0",
                         (long long)k.groups, (long long)k.sh, (long long)k.sw, (long long)k.dh, (long long)k.dw,
                         o->padding[0], o->padding[1]);
    if (k.c != w->shape[1] * k.groups)
        return conv_fail(st, x, w, "x has %lld input channels but w expects %lld (w.shape[1] %lld * groups %lld)",
                         (long long)k.c, (long long)(w->shape[1] * k.groups), (long long)w->shape[1],
                         (long long)k.groups);
    if (k.o % k.groups)
        return conv_fail(st, x, w, "%lld output channels are not divisible by groups %lld", (long long)k.o,
                         (long long)k.groups);
    if (b && (b->ndim != 1 || b->shape[0] != k.o)) {
        char bs[96];
        return conv_fail(st, x, w, "bias must have shape (%lld), got %s", (long long)k.o, bx_shape_str(b, bs, sizeof bs));
    }
    int64_t ekh = k.dh * (k.kh - 1) + 1, ekw = k.dw * (k.kw - 1) + 1; /* dilated kernel extent */
    if (o->padding_same) {
        if (k.sh != 1 || k.sw != 1)
            return conv_fail(st, x, w, "padding='same' needs stride 1, got stride (%lld,%lld)", (long long)k.sh,
                             (long long)k.sw);
        k.pt = (ekh - 1) / 2, k.pb = ekh - 1 - k.pt; /* PyTorch: the extra pad goes right/bottom */
        k.pl = (ekw - 1) / 2, k.pr = ekw - 1 - k.pl;
    } else {
        k.pt = k.pb = o->padding[0];
        k.pl = k.pr = o->padding[1];
    }
    int64_t ph = k.h + k.pt + k.pb, pw = k.w + k.pl + k.pr;
    if (ph < ekh || pw < ekw)
        return conv_fail(st, x, w, "kernel %lldx%lld (with dilation) is larger than the padded input %lldx%lld",
                         (long long)ekh, (long long)ekw, (long long)ph, (long long)pw);
    k.oh = (ph - ekh) / k.sh + 1, k.ow = (pw - ekw) / k.sw + 1;
    k.has_bias = b != NULL;
    k.nthreads = omp_get_max_threads();

    x = bx_contiguous(st, x);
    w = bx_contiguous(st, w);
    if (b) b = bx_contiguous(st, b);
    int64_t yshape[4] = {k.n, k.o, k.oh, k.ow};
    bx_tensor *y = bx_step_tensor(st, BX_F32, 4, yshape);
    if (bx_is_poison(y) || bx_is_poison(x) || bx_is_poison(w) || (b && bx_is_poison(b))) return bx__poison(st);
    bx_tensor *in[3] = {x, w, b};
    int nin = b ? 3 : 2;
    if (bx_numel(y) == 0) {
        bx__record(st, "conv2d", conv2d_backward, y, nin, in, sizeof(conv_ctx), NULL);
        return y;
    }

    conv_entry *e = conv_acquire(&k, DIR_FWD);
    if (!e) return bx_step_fail(st, BX_ERR_BACKEND, "conv2d: %s", bx_errmsg());
    const void *xb = to_layout(st, e->f_r_src, &e->x_md, x->data, &e->f_src, "conv2d (input reorder)");
    const void *wb = xb ? to_layout(st, e->f_r_wei, &e->w_md, w->data, &e->f_wei, "conv2d (weight reorder)") : NULL;
    void *yb = !wb ? NULL : e->f_r_dst ? bx_step_alloc(st, dnnl_memory_desc_get_size(&e->f_dst)) : y->data;
    bx_status s = yb ? BX_OK : BX_ERR_NOMEM;
    if (s == BX_OK) {
        bx__dnnl_args a;
        bx__dnnl_args_init(&a);
        s = bx__dnnl_args_add(&a, DNNL_ARG_SRC, &e->f_src, (void *)xb);
        if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_WEIGHTS, &e->f_wei, (void *)wb);
        if (s == BX_OK && b) s = bx__dnnl_args_add(&a, DNNL_ARG_BIAS, &e->b_md, b->data);
        if (s == BX_OK) s = bx__dnnl_args_add(&a, DNNL_ARG_DST, &e->f_dst, yb);
        if (s == BX_OK) s = bx__dnnl_args_run(st, &a, e->f, "conv2d forward");
        else bx__dnnl_args_release(&a);
    }
    if (s == BX_OK) s = bx__dnnl_reorder_run(st, e->f_r_dst, &e->f_dst, yb, &e->y_md, y->data, "conv2d (output reorder)");
    if (s != BX_OK || bx_step_status(st) != BX_OK) {
        conv_release(e);
        if (bx_step_status(st) == BX_OK) bx_step_fail(st, s, "conv2d: %s", bx_errmsg());
        return bx__poison(st);
    }
    conv_ctx *c;
    bx__record(st, "conv2d", conv2d_backward, y, nin, in, sizeof *c, (void **)&c);
    if (c) {
        c->key = k;
        c->xb = xb;
        c->wb = wb;
        c->xb_md = e->f_src; /* read while the entry is pinned */
        c->wb_md = e->f_wei;
    }
    conv_release(e);
    return y;
}
