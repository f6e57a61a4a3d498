/* test_steady_state.c - DESIGN.md "after the first step a steady-state
 * training step allocates nothing": full training steps (module forward,
 * cross entropy, zero_grad, backward, SGD with momentum) of an MLP
 * 784-256-128-10 and of a small CNN, then eval-mode no-grad forwards. After
 * two warm-up steps (arena growth, lazy gradient and momentum buffers),
 * five more steps must leave bx_alloc_count() unchanged. */
#include "test_util.h"

#include "blixt/optim.h"

static void fill_batch(bx_step *st, bx_rng *r, bx_tensor **x, bx_tensor **y, int nd, const int64_t *xs,
                       int64_t classes) {
    *x = bx_step_tensor(st, BX_F32, nd, xs);
    float *d = (*x)->data;
    for (int64_t i = 0; i < bx_numel(*x); i++) d[i] = bx_rng_uniform(r) - 0.5f;
    *y = bx_step_tensor(st, BX_I64, 1, xs);
    int64_t *t = (*y)->data;
    for (int64_t i = 0; i < xs[0]; i++) t[i] = (int64_t)bx_rng_below(r, (uint64_t)classes);
}

/* One training step; returns the loss (NAN on error). */
static float train_step(bx_module *m, bx_optimizer *opt, bx_step *st, bx_rng *r, int nd, const int64_t *xs) {
    bx_step_reset(st);
    bx_tensor *x, *y;
    fill_batch(st, r, &x, &y, nd, xs, 10);
    bx_tensor *loss = bx_cross_entropy(st, bx_module_forward(m, st, x), y, NULL);
    bx_optimizer_zero_grad(opt);
    if (bx_backward(st, loss) != BX_OK) {
        fprintf(stderr, "backward: %s\n", bx_errmsg());
        return NAN;
    }
    if (bx_optimizer_step(opt) != BX_OK) return NAN;
    return bx_item(loss);
}

static void eval_step(bx_module *m, bx_step *st, bx_rng *r, int nd, const int64_t *xs) {
    bx_step_reset(st);
    bx_tensor *x, *y;
    fill_batch(st, r, &x, &y, nd, xs, 10);
    bx_no_grad_push(st);
    bx_tensor *out = bx_module_forward(m, st, x);
    bx_no_grad_pop(st);
    CHECK(!bx_is_poison(out) && out->shape[1] == 10);
}

static void run(const char *name, bx_module *m, int nd, const int64_t *xs) {
    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = 0.01;
    so.momentum = 0.9;
    bx_optimizer *opt = bx_sgd_new(&so);
    bx_named_tensors *ps = bx_module_named_parameters(m);
    CHECK_OK(bx_optimizer_add_group(opt, ps->tensors, ps->n, NULL));
    bx_named_tensors_free(ps);
    bx_step *st = bx_step_new();
    bx_rng r;
    bx_rng_init(&r, 3);

    bx_module_train(m, true);
    for (int i = 0; i < 2; i++) CHECK(isfinite(train_step(m, opt, st, &r, nd, xs))); /* warm-up */
    CHECK_OK(bx_step_status(st));
    uint64_t before = bx_alloc_count();
    for (int i = 0; i < 5; i++) CHECK(isfinite(train_step(m, opt, st, &r, nd, xs)));
    uint64_t after = bx_alloc_count();
    CHECK_OK(bx_step_status(st));
    if (after != before) fprintf(stderr, "%s: %llu allocations in 5 steady-state training steps\n", name,
                                 (unsigned long long)(after - before));
    CHECK_EQ_INT(after - before, 0);

    bx_module_train(m, false);
    for (int i = 0; i < 2; i++) eval_step(m, st, &r, nd, xs);
    before = bx_alloc_count();
    for (int i = 0; i < 5; i++) eval_step(m, st, &r, nd, xs);
    CHECK_EQ_INT(bx_alloc_count() - before, 0);
    printf("%s: arena %zu bytes used of %zu\n", name, bx_step_arena_used(st), bx_step_arena_capacity(st));

    bx_step_free(st);
    bx_optimizer_free(opt);
}

int main(void) {
    bx_rng r;
    bx_rng_init(&r, 1);
    bx_module *mlp = bx_nn_sequential();
    CHECK_OK(bx_sequential_append(mlp, bx_nn_linear(784, 256, true, &r)));
    CHECK_OK(bx_sequential_append(mlp, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(mlp, bx_nn_linear(256, 128, true, &r)));
    CHECK_OK(bx_sequential_append(mlp, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(mlp, bx_nn_linear(128, 10, true, &r)));
    int64_t xs[2] = {64, 784};
    run("mlp", mlp, 2, xs);
    bx_module_free(mlp);

    /* conv(1,8,3,pad 1) - bn - relu - maxpool 2 - flatten - linear(8*14*14, 10) */
    bx_module *cnn = bx_nn_sequential();
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    co.padding[0] = co.padding[1] = 1;
    CHECK_OK(bx_sequential_append(cnn, bx_nn_conv2d(1, 8, 3, 3, &co, true, &r)));
    CHECK_OK(bx_sequential_append(cnn, bx_nn_batchnorm2d(8, NULL)));
    CHECK_OK(bx_sequential_append(cnn, bx_nn_relu()));
    CHECK_OK(bx_sequential_append(cnn, bx_nn_max_pool2d(NULL)));
    CHECK_OK(bx_sequential_append(cnn, bx_nn_flatten(1, -1)));
    CHECK_OK(bx_sequential_append(cnn, bx_nn_linear(8 * 14 * 14, 10, true, &r)));
    int64_t cs[4] = {16, 1, 28, 28};
    run("cnn", cnn, 4, cs);
    bx_module_free(cnn);
    return tu_finish("nn/steady_state");
}
