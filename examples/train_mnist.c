/* train_mnist.c - a plain training loop on Fashion-MNIST with the engine
 * alone (tensors, autograd, nn modules, Adam): the shape every Blixt program
 * has underneath the Trainer.
 *
 *   blixt-train-mnist [--data DIR] [--epochs N] [--threads N]
 *
 * DIR holds the four IDX files (default: /usr/share/datasets/fashion-mnist,
 * from Debian's dataset-fashion-mnist package). Prints the loss per epoch and
 * the test accuracy. */
#include "blixt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK_STATUS(expr)                                                        \
    do {                                                                          \
        bx_status s_ = (expr);                                                    \
        if (s_ != BX_OK) {                                                        \
            fprintf(stderr, "error: %s: %s\n", bx_status_str(s_), bx_errmsg());   \
            return 1;                                                             \
        }                                                                         \
    } while (0)

/* images u8 (N,28,28) -> f32 (N,784) in [0,1]; labels u8 (N) -> i64 (N) */
static bx_status load_split(const char *dir, const char *prefix, bx_tensor **x, bx_tensor **y) {
    char path[1024];
    bx_tensor *img = NULL, *lab = NULL;
    snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix);
    bx_status s = bx_idx_load(path, &img);
    if (s != BX_OK) return s;
    snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix);
    s = bx_idx_load(path, &lab);
    if (s != BX_OK) {
        bx_tensor_free(img);
        return s;
    }
    int64_t n = img->shape[0], xs[2] = {n, 784};
    *x = bx_tensor_new(BX_F32, 2, xs);
    *y = bx_tensor_new(BX_I64, 1, &n);
    const uint8_t *ip = img->data, *lp = lab->data;
    float *xp = (*x)->data;
    int64_t *yp = (*y)->data;
    for (int64_t i = 0; i < n * 784; i++) xp[i] = ip[i] / 255.0f;
    for (int64_t i = 0; i < n; i++) yp[i] = lp[i];
    bx_tensor_free(img);
    bx_tensor_free(lab);
    return BX_OK;
}

/* Rows perm[start..start+b) of x and y gathered into step tensors. */
static void gather(bx_step *st, const bx_tensor *x, const bx_tensor *y, const int64_t *perm,
                   int64_t start, int64_t b, bx_tensor **bx, bx_tensor **by) {
    int64_t xs[2] = {b, x->shape[1]};
    *bx = bx_step_tensor(st, BX_F32, 2, xs);
    *by = bx_step_tensor(st, BX_I64, 1, &b);
    for (int64_t i = 0; i < b; i++) {
        int64_t r = perm ? perm[start + i] : start + i;
        memcpy((float *)(*bx)->data + i * xs[1], (const float *)x->data + r * xs[1], sizeof(float) * (size_t)xs[1]);
        ((int64_t *)(*by)->data)[i] = ((const int64_t *)y->data)[r];
    }
}

int main(int argc, char **argv) {
    const char *dir = "/usr/share/datasets/fashion-mnist";
    int epochs = 5, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc) epochs = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--threads N]\n", argv[0]);
            return 2;
        }
    }
    bx_set_num_threads(threads);
    bx_tensor *xtr, *ytr, *xte, *yte;
    CHECK_STATUS(load_split(dir, "train", &xtr, &ytr));
    CHECK_STATUS(load_split(dir, "t10k", &xte, &yte));

    bx_rng rng;
    bx_rng_init(&rng, 42);
    bx_module *net = bx_nn_sequential();
    bx_sequential_append(net, bx_nn_linear(784, 256, true, &rng));
    bx_sequential_append(net, bx_nn_relu());
    bx_sequential_append(net, bx_nn_linear(256, 128, true, &rng));
    bx_sequential_append(net, bx_nn_relu());
    bx_sequential_append(net, bx_nn_linear(128, 10, true, &rng));
    if (!net) {
        fprintf(stderr, "error: %s\n", bx_errmsg());
        return 1;
    }
    bx_adam_opts ao = BX_ADAM_OPTS_INIT;
    bx_optimizer *opt = bx_adam_new(&ao);
    bx_named_tensors *params = bx_module_named_parameters(net);
    CHECK_STATUS(bx_optimizer_add_group(opt, params->tensors, (int)params->n, NULL));

    bx_step *st = bx_step_new();
    int64_t n = xtr->shape[0], batch = 128;
    int64_t *perm = malloc(sizeof(int64_t) * (size_t)n);
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    for (int e = 0; e < epochs; e++) {
        for (int64_t i = n - 1; i > 0; i--) { /* Fisher-Yates, seeded */
            int64_t j = (int64_t)bx_rng_below(&rng, (uint64_t)i + 1), t = perm[i];
            perm[i] = perm[j];
            perm[j] = t;
        }
        bx_module_train(net, true);
        double total = 0;
        int64_t steps = 0;
        for (int64_t s = 0; s + batch <= n; s += batch, steps++) {
            bx_tensor *bxx, *byy;
            gather(st, xtr, ytr, perm, s, batch, &bxx, &byy);
            bx_optimizer_zero_grad(opt);
            bx_tensor *loss = bx_cross_entropy(st, bx_module_forward(net, st, bxx), byy, NULL);
            CHECK_STATUS(bx_backward(st, loss));
            CHECK_STATUS(bx_optimizer_step(opt));
            total += bx_item(loss);
            bx_step_reset(st);
        }
        /* test accuracy */
        bx_module_train(net, false);
        int64_t correct = 0, nt = xte->shape[0];
        bx_no_grad_push(st);
        for (int64_t s = 0; s < nt; s += 1000) {
            int64_t b = nt - s < 1000 ? nt - s : 1000;
            bx_tensor *bxx, *byy;
            gather(st, xte, yte, NULL, s, b, &bxx, &byy);
            bx_tensor *logits = bx_module_forward(net, st, bxx);
            const float *lp = logits->data;
            for (int64_t i = 0; i < b; i++) {
                int best = 0;
                for (int c = 1; c < 10; c++)
                    if (lp[i * 10 + c] > lp[i * 10 + best]) best = c;
                correct += best == ((const int64_t *)byy->data)[i];
            }
            bx_step_reset(st);
        }
        bx_no_grad_pop(st);
        printf("epoch %d: train loss %.4f, test accuracy %.2f%%\n", e, total / (double)steps,
               100.0 * (double)correct / (double)nt);
        fflush(stdout);
    }
    free(perm);
    bx_step_free(st);
    bx_named_tensors_free(params);
    bx_optimizer_free(opt);
    bx_module_free(net);
    bx_tensor_free(xtr);
    bx_tensor_free(ytr);
    bx_tensor_free(xte);
    bx_tensor_free(yte);
    return 0;
}
