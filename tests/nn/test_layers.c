/* test_layers.c - built-in layers: PyTorch's default initialisation
 * (bounds, mean, std), parameter names and shapes, output shapes, BatchNorm
 * running statistics (momentum, momentum None, track_running_stats) and
 * constructor errors. */
#include "test_util.h"

typedef struct stats {
    double min, max, mean, std;
} stats;

static stats stats_of(const bx_tensor *t) {
    stats s = {1e30, -1e30, 0, 0};
    int64_t n = bx_numel(t);
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = bx_get(t, i);
        sum += v;
        sq += v * v;
        if (v < s.min) s.min = v;
        if (v > s.max) s.max = v;
    }
    s.mean = sum / (double)n;
    s.std = sqrt(sq / (double)n - s.mean * s.mean);
    return s;
}

static void check_uniform(const bx_tensor *t, double bound) {
    stats s = stats_of(t);
    CHECK(s.max <= bound && s.min >= -bound);
    CHECK(s.max > 0.9 * bound && s.min < -0.9 * bound);
    CHECK(fabs(s.mean) < 0.05 * bound);
    CHECK_NEAR(s.std, bound / sqrt(3.0), 0.05);
}

static bool shape_is(const bx_tensor *t, int nd, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t want[4] = {a, b, c, d};
    if (!t || bx_is_poison(t) || t->ndim != nd) return false;
    for (int i = 0; i < nd; i++)
        if (t->shape[i] != want[i]) return false;
    return true;
}

static void test_init(void) {
    bx_rng r;
    bx_rng_init(&r, 7);
    /* Linear(256,128): kaiming_uniform(a=sqrt(5)) -> U(+-1/16), bias the same */
    bx_module *lin = bx_nn_linear(256, 128, true, &r);
    bx_tensor *w = bx_module_param(lin, "weight"), *b = bx_module_param(lin, "bias");
    CHECK(shape_is(w, 2, 128, 256, 0, 0) && shape_is(b, 1, 128, 0, 0, 0));
    CHECK(w->requires_grad && b->requires_grad);
    check_uniform(w, 1.0 / 16.0);
    stats sb = stats_of(b);
    CHECK(sb.max <= 1.0 / 16 && sb.min >= -1.0 / 16 && sb.max - sb.min > 0.1);
    CHECK(strcmp(bx_module_type_name(lin), "Linear") == 0);
    bx_module_free(lin);
    lin = bx_nn_linear(5, 3, false, NULL);
    CHECK(bx_module_param(lin, "bias") == NULL && bx_module_has_param(lin, "bias"));
    CHECK(stats_of(bx_module_param(lin, "weight")).max == 0.0);
    bx_module_free(lin);

    /* Conv2d(16,32,3x3,groups 2): fan_in = 16/2*9 = 72 */
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    co.groups = 2;
    bx_module *conv = bx_nn_conv2d(16, 32, 3, 3, &co, true, &r);
    w = bx_module_param(conv, "weight");
    CHECK(shape_is(w, 4, 32, 8, 3, 3));
    check_uniform(w, 1.0 / sqrt(72.0));
    stats s = stats_of(bx_module_param(conv, "bias"));
    CHECK(s.max <= 1.0 / sqrt(72.0) && s.min >= -1.0 / sqrt(72.0));
    bx_conv2d_opts got;
    CHECK_OK(bx_conv2d_get_opts(conv, &got));
    CHECK(got.groups == 2);
    CHECK_ERR(bx_conv2d_get_opts(lin = bx_nn_relu(), &got), BX_ERR_INVALID, "not a Conv2d");
    bx_module_free(lin);
    bx_module_free(conv);

    /* Embedding(1000,16,padding_idx=-1): N(0,1), last row zero */
    bx_module *emb = bx_nn_embedding(1000, 16, -1, &r);
    w = bx_module_param(emb, "weight");
    CHECK(shape_is(w, 2, 1000, 16, 0, 0));
    s = stats_of(w);
    CHECK(fabs(s.mean) < 0.03);
    CHECK_NEAR(s.std, 1.0, 0.03);
    for (int j = 0; j < 16; j++) CHECK(bx_get(w, 999 * 16 + j) == 0.0);
    CHECK(bx_get(w, 998 * 16) != 0.0);
    bx_module_free(emb);

    /* BatchNorm: weight 1, bias 0, running_mean 0, running_var 1, nbt 0 (i64 0-d) */
    bx_module *bn = bx_nn_batchnorm2d(6, NULL);
    CHECK(bx_module_is_batchnorm(bn));
    CHECK(stats_of(bx_module_param(bn, "weight")).min == 1.0);
    CHECK(stats_of(bx_module_param(bn, "bias")).max == 0.0);
    CHECK(stats_of(bx_module_buffer(bn, "running_mean")).max == 0.0);
    CHECK(stats_of(bx_module_buffer(bn, "running_var")).min == 1.0);
    bx_tensor *nbt = bx_module_buffer(bn, "num_batches_tracked");
    CHECK(nbt->dtype == BX_I64 && nbt->ndim == 0 && bx_get(nbt, 0) == 0.0);
    CHECK(!bx_module_buffer(bn, "running_mean")->requires_grad);
    CHECK(bx_batchnorm_momentum(bn) == 0.1 && bx_batchnorm_track_running_stats(bn));
    bx_module_free(bn);
    bx_batchnorm_opts bo = BX_BATCHNORM_OPTS_INIT;
    bo.affine = false;
    bo.track_running_stats = false;
    bn = bx_nn_batchnorm1d(3, &bo);
    bx_named_tensors *sd = bx_module_state_dict(bn);
    CHECK_EQ_INT(sd->n, 0);
    bx_named_tensors_free(sd);
    CHECK(bx_module_has_param(bn, "weight") && !bx_module_param(bn, "weight"));
    bx_module_free(bn);

    /* LayerNorm((4,5)) */
    int64_t ns[2] = {4, 5};
    bx_module *ln = bx_nn_layernorm(2, ns, 1e-5, true);
    CHECK(shape_is(bx_module_param(ln, "weight"), 2, 4, 5, 0, 0));
    CHECK(stats_of(bx_module_param(ln, "weight")).min == 1.0);
    bx_module_free(ln);
}

static void test_constructor_errors(void) {
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    co.groups = 3;
    CHECK(bx_nn_conv2d(4, 6, 3, 3, &co, true, NULL) == NULL);
    CHECK(strstr(bx_errmsg(), "Conv2d") && strstr(bx_errmsg(), "divisible"));
    co.groups = 1;
    co.padding_same = true;
    co.stride[0] = 2;
    CHECK(bx_nn_conv2d(4, 6, 3, 3, &co, true, NULL) == NULL);
    CHECK(bx_nn_linear(-1, 3, true, NULL) == NULL && strstr(bx_errmsg(), "Linear"));
    CHECK(bx_nn_embedding(10, 3, 10, NULL) == NULL && strstr(bx_errmsg(), "padding_idx"));
    CHECK(bx_nn_dropout(-0.1f) == NULL);
    CHECK(bx_nn_batchnorm2d(0, NULL) == NULL && strstr(bx_errmsg(), "BatchNorm2d"));
    bx_pool2d_opts po = BX_POOL2D_OPTS_INIT;
    po.padding[0] = 2;
    CHECK(bx_nn_max_pool2d(&po) == NULL && strstr(bx_errmsg(), "half"));
    CHECK(bx_nn_adaptive_avg_pool2d(0, 1) == NULL);
    CHECK(bx_nn_layernorm(0, NULL, 1e-5, true) == NULL);
    bx_module *seq = bx_nn_sequential();
    CHECK_ERR(bx_batchnorm_set_momentum(seq, 0.1), BX_ERR_INVALID, "not a BatchNorm");
    bx_module_free(seq);
}

static bx_tensor *rand_input(bx_step *st, bx_rng *r, int nd, const int64_t *shape) {
    bx_tensor *x = bx_step_tensor(st, BX_F32, nd, shape);
    float *d = x->data;
    for (int64_t i = 0; i < bx_numel(x); i++) d[i] = 4.0f * bx_rng_uniform(r) - 1.0f;
    return x;
}

static void test_shapes(void) {
    bx_rng r;
    bx_rng_init(&r, 11);
    bx_step *st = bx_step_new();
    int64_t xs[4] = {2, 3, 9, 9};
    bx_tensor *x = rand_input(st, &r, 4, xs);
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    co.stride[0] = co.stride[1] = 2;
    co.padding[0] = co.padding[1] = 1;
    bx_module *net = bx_nn_sequential();
    bx_sequential_append(net, bx_nn_conv2d(3, 8, 3, 3, &co, true, &r)); /* (2,8,5,5) */
    bx_sequential_append(net, bx_nn_batchnorm2d(8, NULL));
    bx_sequential_append(net, bx_nn_relu());
    bx_pool2d_opts po = BX_POOL2D_OPTS_INIT;
    po.kernel[0] = po.kernel[1] = 3;
    po.stride[0] = po.stride[1] = 2;
    po.padding[0] = po.padding[1] = 1;
    bx_sequential_append(net, bx_nn_max_pool2d(&po));          /* (2,8,3,3) */
    bx_sequential_append(net, bx_nn_avg_pool2d(NULL));         /* (2,8,1,1) */
    bx_sequential_append(net, bx_nn_adaptive_avg_pool2d(1, 1)); /* (2,8,1,1) */
    bx_sequential_append(net, bx_nn_flatten(1, -1));            /* (2,8) */
    bx_sequential_append(net, bx_nn_linear(8, 5, true, &r));
    bx_sequential_append(net, bx_nn_leaky_relu(0.1f));
    bx_sequential_append(net, bx_nn_dropout(0.5f));
    bx_sequential_append(net, bx_nn_gelu(BX_GELU_TANH));
    bx_sequential_append(net, bx_nn_sigmoid());
    bx_sequential_append(net, bx_nn_tanh());
    int64_t ln_shape = 5;
    bx_sequential_append(net, bx_nn_layernorm(1, &ln_shape, 1e-5, true));
    CHECK_EQ_INT(bx_module_num_children(net), 14);
    bx_tensor *y = bx_module_forward(bx_module_child(net, "0"), st, x);
    CHECK(shape_is(y, 4, 2, 8, 5, 5));
    y = bx_module_forward(net, st, x);
    CHECK_OK(bx_step_status(st));
    CHECK(shape_is(y, 2, 2, 5, 0, 0));
    /* eval: dropout is the identity */
    bx_module *drop = bx_module_child(net, "9");
    bx_module_train(drop, false);
    bx_tensor *z = rand_input(st, &r, 2, xs);
    CHECK(bx_module_forward(drop, st, z) == z || bx_get(bx_module_forward(drop, st, z), 0) == bx_get(z, 0));

    /* embedding: idx (2,3) -> (2,3,4) */
    bx_module *emb = bx_nn_embedding(10, 4, BX_NO_PADDING_IDX, &r);
    int64_t is[2] = {2, 3};
    bx_tensor *idx = bx_step_tensor(st, BX_I64, 2, is);
    for (int i = 0; i < 6; i++) ((int64_t *)idx->data)[i] = i;
    y = bx_module_forward(emb, st, idx);
    CHECK(shape_is(y, 3, 2, 3, 4, 0));
    CHECK(!bx_is_poison(y) && bx_get(y, 4) == bx_get(bx_module_param(emb, "weight"), 4));
    bx_module_free(emb);

    /* errors name the module and the shapes */
    bx_module *bn = bx_nn_batchnorm2d(8, NULL);
    bx_step_reset(st);
    int64_t bad[2] = {4, 8};
    CHECK(bx_is_poison(bx_module_forward(bn, st, rand_input(st, &r, 2, bad))));
    CHECK(strstr(bx_step_errmsg(st), "BatchNorm2d(8): expected 4D") && strstr(bx_step_errmsg(st), "(4,8)"));
    bx_step_reset(st);
    int64_t bad2[4] = {2, 3, 4, 4};
    CHECK(bx_is_poison(bx_module_forward(bn, st, rand_input(st, &r, 4, bad2))));
    CHECK(strstr(bx_step_errmsg(st), "has 3 channels, expected 8"));
    bx_module_free(bn);
    bx_module_free(net);
    bx_step_free(st);
}

/* Batch statistics of channel c of x (N,C,L): mean and unbiased variance. */
static void batch_stats(const bx_tensor *x, int c, double *mean, double *uvar) {
    int64_t N = x->shape[0], C = x->shape[1], L = x->ndim == 3 ? x->shape[2] : 1;
    double s = 0, q = 0, n = (double)(N * L);
    for (int64_t i = 0; i < N; i++)
        for (int64_t l = 0; l < L; l++) s += bx_get(x, (i * C + c) * L + l);
    *mean = s / n;
    for (int64_t i = 0; i < N; i++)
        for (int64_t l = 0; l < L; l++) {
            double d = bx_get(x, (i * C + c) * L + l) - *mean;
            q += d * d;
        }
    *uvar = q / (n - 1);
}

static void test_batchnorm_running_stats(void) {
    bx_rng r;
    bx_rng_init(&r, 21);
    bx_step *st = bx_step_new();
    int64_t xs[3] = {4, 2, 3};
    bx_batchnorm_opts bo = BX_BATCHNORM_OPTS_INIT;
    bo.momentum = 0.3;
    bx_module *bn = bx_nn_batchnorm1d(2, &bo);
    bx_module *cum = bx_nn_batchnorm1d(2, NULL);
    CHECK_OK(bx_batchnorm_set_momentum(cum, NAN)); /* None: cumulative average */
    CHECK(isnan(bx_batchnorm_momentum(cum)));
    double rm[2] = {0, 0}, rv[2] = {1, 1}, sum_m[2] = {0, 0}, sum_v[2] = {0, 0};
    for (int step = 1; step <= 3; step++) {
        bx_step_reset(st);
        bx_tensor *x = rand_input(st, &r, 3, xs);
        bx_module_forward(bn, st, x);
        bx_module_forward(cum, st, x);
        CHECK_OK(bx_step_status(st));
        for (int c = 0; c < 2; c++) {
            double m, v;
            batch_stats(x, c, &m, &v);
            rm[c] = 0.7 * rm[c] + 0.3 * m;
            rv[c] = 0.7 * rv[c] + 0.3 * v;
            sum_m[c] += m;
            sum_v[c] += v;
            CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_mean"), c), rm[c], 1e-5);
            CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_var"), c), rv[c], 1e-5);
            /* momentum None: plain average of the batch statistics so far */
            CHECK_NEAR(bx_get(bx_module_buffer(cum, "running_mean"), c), sum_m[c] / step, 1e-5);
            CHECK_NEAR(bx_get(bx_module_buffer(cum, "running_var"), c), sum_v[c] / step, 1e-5);
        }
        CHECK_EQ_INT(bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0), step);
    }

    /* eval: running statistics used, nothing updated */
    bx_module_train(bn, false);
    bx_step_reset(st);
    bx_tensor *x = rand_input(st, &r, 3, xs);
    bx_tensor *y = bx_module_forward(bn, st, x);
    CHECK_NEAR(bx_get(y, 0), (bx_get(x, 0) - rm[0]) / sqrt(rv[0] + 1e-5), 1e-5);
    CHECK_EQ_INT(bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0), 3);
    CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_mean"), 0), rm[0], 1e-6);

    /* switched off at run time (BaseFinetuning.freeze): train mode uses batch
     * statistics and leaves the buffers alone; eval still uses them */
    bx_module_train(bn, true);
    CHECK_OK(bx_batchnorm_set_track_running_stats(bn, false));
    bx_step_reset(st);
    x = rand_input(st, &r, 3, xs);
    y = bx_module_forward(bn, st, x);
    double m0, v0;
    batch_stats(x, 0, &m0, &v0);
    double bvar = v0 * 11.0 / 12.0; /* biased, n = 12 */
    CHECK_NEAR(bx_get(y, 0), (bx_get(x, 0) - m0) / sqrt(bvar + 1e-5), 1e-4);
    CHECK_EQ_INT(bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0), 3);
    CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_mean"), 0), rm[0], 1e-6);
    bx_module_train(bn, false);
    y = bx_module_forward(bn, st, x);
    CHECK_NEAR(bx_get(y, 0), (bx_get(x, 0) - rm[0]) / sqrt(rv[0] + 1e-5), 1e-5);

    /* reset */
    CHECK_OK(bx_batchnorm_reset_running_stats(bn));
    CHECK(bx_get(bx_module_buffer(bn, "running_var"), 1) == 1.0 && bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0) == 0);

    /* built without tracking: batch statistics in both modes */
    bo = (bx_batchnorm_opts)BX_BATCHNORM_OPTS_INIT;
    bo.track_running_stats = false;
    bx_module *nt = bx_nn_batchnorm1d(2, &bo);
    CHECK(bx_module_buffer(nt, "running_mean") == NULL);
    bx_module_train(nt, false);
    y = bx_module_forward(nt, st, x);
    CHECK_OK(bx_step_status(st));
    CHECK_NEAR(bx_get(y, 0), (bx_get(x, 0) - m0) / sqrt(bvar + 1e-5), 1e-4);

    bx_module_free(nt);
    bx_module_free(bn);
    bx_module_free(cum);
    bx_step_free(st);
}

int main(void) {
    test_init();
    test_constructor_errors();
    test_shapes();
    test_batchnorm_running_stats();
    return tu_finish("nn/layers");
}
