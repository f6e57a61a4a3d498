/* bench_int8.c - int8 vs fp32 inference of one Linear layer (perf-anchors
 * §5: 128x784 -> 256, 1 thread by default).
 *
 *   blixt-bench-int8 [--threads N] [--iters N] [M K O]
 *
 * Prints one JSON object per line {"name", "us_median", "us_min"}:
 *   fp32_linear        bx_linear forward (dnnl_sgemm), no grad;
 *   int8_linear        QuantizedLinear u8 -> u8 (oneDNN u8s8->s32 matmul on
 *                      prepacked weights + F5 requantisation);
 *   int8_linear_ref    the same module on its plain C kernel;
 *   int8_quantize_linear_dequantize  f32 -> u8 -> u8 -> f32 (the whole
 *                      converted layer as a model runs it). */
#include "blixt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct ctx {
    bx_step *st;
    bx_tensor *x, *xq, *w, *b;
    bx_module *q, *ql, *dq;
    int mode;
} ctx;

static void run(ctx *c) {
    bx_step_reset(c->st);
    switch (c->mode) {
    case 0: bx_linear(c->st, c->x, c->w, c->b); break;
    case 1:
    case 2: bx_module_forward(c->ql, c->st, c->xq); break;
    default:
        bx_module_forward(c->dq, c->st, bx_module_forward(c->ql, c->st, bx_module_forward(c->q, c->st, c->x)));
    }
}

static void timed(const char *name, ctx *c, int iters) {
    double *s = malloc(sizeof(double) * (size_t)iters);
    for (int i = 0; i < 10; i++) run(c);
    for (int i = 0; i < iters; i++) {
        double t0 = now_us();
        run(c);
        s[i] = now_us() - t0;
    }
    qsort(s, (size_t)iters, sizeof(double), cmp_double);
    if (bx_step_status(c->st) != BX_OK) fprintf(stderr, "%s: %s\n", name, bx_step_errmsg(c->st));
    printf("{\"name\": \"%s\", \"us_median\": %.1f, \"us_min\": %.1f}\n", name, s[iters / 2], s[0]);
    free(s);
}

int main(int argc, char **argv) {
    int threads = 1, iters = 200;
    int64_t M = 128, K = 784, O = 256;
    int pos = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc) threads = atoi(argv[++i]);
        else if (strcmp(argv[i], "--iters") == 0 && i + 1 < argc) iters = atoi(argv[++i]);
        else if (pos < 3) {
            int64_t v = atoll(argv[i]);
            if (pos == 0) M = v;
            else if (pos == 1) K = v;
            else O = v;
            pos++;
        }
    }
    bx_set_num_threads(threads);
    bx_rng r;
    bx_rng_init(&r, 1);
    int64_t xs[2] = {M, K}, ws[2] = {O, K};
    ctx c = {0};
    c.st = bx_step_new();
    bx_no_grad_push(c.st);
    c.x = bx_tensor_new(BX_F32, 2, xs);
    c.w = bx_tensor_new(BX_F32, 2, ws);
    c.b = bx_tensor_new(BX_F32, 1, &O);
    c.xq = bx_tensor_new(BX_U8, 2, xs);
    bx_tensor *wq = bx_tensor_new(BX_I8, 2, ws), *sc = bx_tensor_new(BX_F64, 1, &O), *zp = bx_tensor_zeros(BX_I64, 1, &O);
    for (int64_t i = 0; i < M * K; i++) {
        ((float *)c.x->data)[i] = bx_rng_uniform(&r);
        ((uint8_t *)c.xq->data)[i] = (uint8_t)bx_rng_below(&r, 256);
    }
    for (int64_t i = 0; i < O * K; i++) {
        ((float *)c.w->data)[i] = bx_rng_uniform(&r) * 0.07f - 0.035f;
        ((int8_t *)wq->data)[i] = (int8_t)((int)bx_rng_below(&r, 256) - 128);
    }
    for (int64_t o = 0; o < O; o++) {
        ((float *)c.b->data)[o] = 0.01f * (float)(o % 7);
        ((double *)sc->data)[o] = 0.035 / 127.5;
    }
    c.q = bx_quantize_new(1.0 / 255.0, 0);
    c.ql = bx_quantized_linear_new(wq, sc, zp, c.b, 1.0 / 255.0, 0, 0.05, 128, false);
    c.dq = bx_dequantize_new(0.05, 128);
    if (!c.q || !c.ql || !c.dq) {
        fprintf(stderr, "setup: %s\n", bx_errmsg());
        return 1;
    }
    printf("{\"name\": \"shape\", \"M\": %lld, \"K\": %lld, \"O\": %lld, \"threads\": %d}\n", (long long)M,
           (long long)K, (long long)O, threads);
    c.mode = 0;
    timed("fp32_linear", &c, iters);
    c.mode = 1;
    timed("int8_linear", &c, iters);
    c.mode = 3;
    timed("int8_quantize_linear_dequantize", &c, iters);
    c.mode = 2;
    bx_quantized_linear_use_onednn(c.ql, false);
    timed("int8_linear_ref", &c, iters / 4 > 10 ? iters / 4 : 10);
    bx_module_free(c.q);
    bx_module_free(c.ql);
    bx_module_free(c.dq);
    bx_tensor_free(wq);
    bx_tensor_free(sc);
    bx_tensor_free(zp);
    bx_tensor_free(c.x);
    bx_tensor_free(c.w);
    bx_tensor_free(c.b);
    bx_tensor_free(c.xq);
    bx_step_free(c.st);
    return 0;
}
