/* bench_engine.c - Blixt side of the engine benchmarks (see compare.py).
 *
 *   blixt-bench-engine [--threads N] [--only mlp,cnn,bigmlp,tinyop,sgemm] [--quick]
 *
 * Prints one JSON object per line {"name", "ms", ...}: time per training step
 * (zero_grad + forward + cross entropy + backward + SGD momentum step + arena
 * reset), the same workloads as torch_bench.py. */
#include "blixt.h"

#include <dnnl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef void (*work_fn)(void *ud);

/* Median and min of `iters` timed calls after `warmup` untimed ones. */
static void timed(work_fn fn, void *ud, int warmup, int iters, double *med, double *mn) {
    double *s = malloc(sizeof(double) * (size_t)iters);
    for (int i = 0; i < warmup; i++) fn(ud);
    for (int i = 0; i < iters; i++) {
        double t0 = now_ms();
        fn(ud);
        s[i] = now_ms() - t0;
    }
    qsort(s, (size_t)iters, sizeof(double), cmp_double);
    *med = s[iters / 2];
    *mn = s[0];
    free(s);
}

typedef struct train_ctx {
    bx_module *net;
    bx_optimizer *opt;
    bx_step *st;
    bx_tensor *x, *y;
} train_ctx;

static void train_step(void *ud) {
    train_ctx *c = ud;
    bx_optimizer_zero_grad(c->opt);
    bx_tensor *logits = bx_module_forward(c->net, c->st, c->x);
    bx_tensor *loss = bx_cross_entropy(c->st, logits, c->y, NULL);
    if (bx_backward(c->st, loss) != BX_OK) {
        fprintf(stderr, "backward failed: %s\n", bx_errmsg());
        exit(1);
    }
    bx_optimizer_step(c->opt);
    bx_step_reset(c->st);
}

static bx_module *mlp(const int64_t *sizes, int n, bx_rng *rng) {
    bx_module *seq = bx_nn_sequential();
    for (int i = 0; i + 1 < n; i++) {
        bx_sequential_append(seq, bx_nn_linear(sizes[i], sizes[i + 1], true, rng));
        if (i + 2 < n) bx_sequential_append(seq, bx_nn_relu());
    }
    return seq;
}

static bx_module *cnn(bx_rng *rng) {
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    co.padding[0] = co.padding[1] = 1;
    bx_pool2d_opts po = BX_POOL2D_OPTS_INIT;
    bx_module *seq = bx_nn_sequential();
    bx_sequential_append(seq, bx_nn_conv2d(1, 32, 3, 3, &co, true, rng));
    bx_sequential_append(seq, bx_nn_relu());
    bx_sequential_append(seq, bx_nn_max_pool2d(&po));
    bx_sequential_append(seq, bx_nn_conv2d(32, 64, 3, 3, &co, true, rng));
    bx_sequential_append(seq, bx_nn_relu());
    bx_sequential_append(seq, bx_nn_max_pool2d(&po));
    bx_sequential_append(seq, bx_nn_flatten(1, -1));
    bx_sequential_append(seq, bx_nn_linear(64 * 7 * 7, 128, true, rng));
    bx_sequential_append(seq, bx_nn_relu());
    bx_sequential_append(seq, bx_nn_linear(128, 10, true, rng));
    return seq;
}

static void train_init(train_ctx *c, bx_module *net, int ndim, const int64_t *xshape, bx_rng *rng) {
    c->net = net;
    if (!net) {
        fprintf(stderr, "model: %s\n", bx_errmsg());
        exit(1);
    }
    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = 0.01;
    so.momentum = 0.9;
    c->opt = bx_sgd_new(&so);
    bx_named_tensors *ps = bx_module_named_parameters(net);
    bx_optimizer_add_group(c->opt, ps->tensors, (int)ps->n, NULL);
    bx_named_tensors_free(ps);
    c->st = bx_step_new();
    c->x = bx_tensor_new(BX_F32, ndim, xshape);
    float *xd = c->x->data;
    for (int64_t i = 0; i < bx_numel(c->x); i++) xd[i] = bx_rng_normal(rng);
    int64_t n = xshape[0];
    c->y = bx_tensor_new(BX_I64, 1, &n);
    int64_t *yd = c->y->data;
    for (int64_t i = 0; i < n; i++) yd[i] = (int64_t)bx_rng_below(rng, 10);
}

static void train_free(train_ctx *c) {
    bx_optimizer_free(c->opt);
    bx_module_free(c->net);
    bx_step_free(c->st);
    bx_tensor_free(c->x);
    bx_tensor_free(c->y);
}

typedef struct gemm_ctx {
    int64_t m, n, k;
    float *a, *b, *c;
} gemm_ctx;

static void gemm_call(void *ud) {
    gemm_ctx *g = ud;
    dnnl_sgemm('N', 'T', g->m, g->n, g->k, 1.0f, g->a, g->k, g->b, g->k, 0.0f, g->c, g->n);
}

typedef struct tiny_ctx {
    bx_step *st;
    bx_tensor *a, *b;
    int n;
} tiny_ctx;

static void tiny_calls(void *ud) {
    tiny_ctx *t = ud;
    for (int i = 0; i < t->n; i++) bx_add(t->st, t->a, t->b);
    bx_step_reset(t->st);
}

static int want(const char *only, const char *name) {
    if (!only || !*only) return 1;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    int threads = 1, quick = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = 1;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--only a,b] [--quick]\n", argv[0]);
            return 2;
        }
    }
    bx_set_num_threads(threads);
    bx_rng rng;
    bx_rng_init(&rng, 0);
    double med, mn;
    double sgemm_gflops = 0;

    if (want(only, "sgemm") || want(only, "bigmlp")) {
        gemm_ctx g = {512, 4096, 4096, NULL, NULL, NULL};
        g.a = calloc((size_t)(g.m * g.k), 4);
        g.b = calloc((size_t)(g.n * g.k), 4);
        g.c = calloc((size_t)(g.m * g.n), 4);
        for (int64_t i = 0; i < g.m * g.k; i++) g.a[i] = 0.001f * (float)(i % 97);
        for (int64_t i = 0; i < g.n * g.k; i++) g.b[i] = 0.001f * (float)(i % 89);
        timed(gemm_call, &g, 2, quick ? 5 : 15, &med, &mn);
        sgemm_gflops = 2.0 * g.m * g.n * g.k / mn / 1e6;
        printf("{\"name\": \"sgemm\", \"impl\": \"blixt\", \"threads\": %d, \"ms\": %.4f, \"min_ms\": %.4f, "
               "\"gflops\": %.1f, \"unit\": \"ms/call (512x4096x4096 dnnl_sgemm)\"}\n",
               threads, med, mn, sgemm_gflops);
        free(g.a);
        free(g.b);
        free(g.c);
    }
    if (want(only, "mlp")) {
        train_ctx c;
        int64_t sizes[] = {784, 256, 128, 10}, xs[] = {128, 784};
        train_init(&c, mlp(sizes, 4, &rng), 2, xs, &rng);
        timed(train_step, &c, 20, quick ? 50 : 300, &med, &mn);
        printf("{\"name\": \"mlp\", \"impl\": \"blixt\", \"threads\": %d, \"ms\": %.4f, \"min_ms\": %.4f}\n",
               threads, med, mn);
        train_free(&c);
    }
    if (want(only, "cnn")) {
        train_ctx c;
        int64_t xs[] = {128, 1, 28, 28};
        train_init(&c, cnn(&rng), 4, xs, &rng);
        timed(train_step, &c, 2, quick ? 5 : 15, &med, &mn);
        printf("{\"name\": \"cnn\", \"impl\": \"blixt\", \"threads\": %d, \"ms\": %.4f, \"min_ms\": %.4f}\n",
               threads, med, mn);
        train_free(&c);
    }
    if (want(only, "bigmlp")) {
        train_ctx c;
        int64_t sizes[] = {784, 4096, 4096, 10}, xs[] = {512, 784};
        train_init(&c, mlp(sizes, 4, &rng), 2, xs, &rng);
        timed(train_step, &c, 1, quick ? 3 : 7, &med, &mn);
        double flops = 2.0 * 512 * (784.0 * 4096 + 4096.0 * 4096 + 4096.0 * 10) * 3 - 2.0 * 512 * 784 * 4096;
        double gf = flops / med / 1e6;
        printf("{\"name\": \"bigmlp\", \"impl\": \"blixt\", \"threads\": %d, \"ms\": %.4f, \"min_ms\": %.4f, "
               "\"gflops\": %.1f, \"sgemm_gflops\": %.1f, \"pct_sgemm\": %.1f}\n",
               threads, med, mn, gf, sgemm_gflops, sgemm_gflops > 0 ? 100.0 * gf / sgemm_gflops : 0.0);
        train_free(&c);
    }
    if (want(only, "tinyop")) {
        tiny_ctx t;
        t.st = bx_step_new();
        int64_t one = 1;
        t.a = bx_tensor_zeros(BX_F32, 1, &one);
        t.b = bx_tensor_zeros(BX_F32, 1, &one);
        t.n = 2000;
        timed(tiny_calls, &t, 2, 10, &med, &mn);
        printf("{\"name\": \"tinyop\", \"impl\": \"blixt\", \"threads\": %d, \"ms\": %.4f, \"min_ms\": %.4f, "
               "\"unit\": \"us/call\"}\n",
               threads, med / t.n * 1e3, mn / t.n * 1e3);
        bx_tensor_free(t.a);
        bx_tensor_free(t.b);
        bx_step_free(t.st);
    }
    return 0;
}
