/* test_swa.c - the weight-averaging engine (include/blixt/swa.h): SWA running
 * mean vs a direct mean, use_buffers integer truncation, custom avg_fn, EMA
 * (decay, every N, warm-up, start step, buffer modes), update_bn (equal
 * weight per batch, callback and loader sources, momenta and modes restored,
 * errors), state dict views, state round trip, transfer_weights. */
#include "test_util.h"

/* Linear(3,4) - BatchNorm1d(4) - ReLU - Linear(4,2) */
static bx_module *make_mlp(bx_rng *rng) {
    bx_module *s = bx_nn_sequential();
    bx_sequential_append(s, bx_nn_linear(3, 4, true, rng));
    bx_sequential_append(s, bx_nn_batchnorm1d(4, NULL));
    bx_sequential_append(s, bx_nn_relu());
    bx_sequential_append(s, bx_nn_linear(4, 2, true, rng));
    return s;
}

static void randomize(bx_module *m, bx_rng *rng, float scale) {
    bx_named_tensors *p = bx_module_named_parameters(m);
    for (int i = 0; i < p->n; i++)
        for (int64_t j = 0; j < bx_numel(p->tensors[i]); j++)
            ((float *)p->tensors[i]->data)[j] = scale * (2.0f * bx_rng_uniform(rng) - 1.0f);
    bx_named_tensors_free(p);
}

static bx_tensor *param_of(bx_module *m, const char *path) {
    bx_named_tensors *p = bx_module_named_parameters(m);
    bx_tensor *t = bx_named_tensors_get(p, path);
    bx_named_tensors_free(p);
    return t;
}

static bx_tensor *buffer_of(bx_module *m, const char *path) {
    bx_named_tensors *p = bx_module_named_buffers(m);
    bx_tensor *t = bx_named_tensors_get(p, path);
    bx_named_tensors_free(p);
    return t;
}

/* SWA after K snapshots == the plain mean of the K snapshots; buffers stay
 * as deep-copied at construction. */
static void test_running_mean(void) {
    bx_rng rng;
    bx_rng_init(&rng, 1);
    bx_module *m = make_mlp(&rng);
    bx_fill(buffer_of(m, "1.running_mean"), 0.25);
    bx_averaged_model *a = bx_averaged_model_new(m, NULL);
    CHECK(a != NULL);
    CHECK_EQ_INT(bx_averaged_model_n_averaged(a), 0);
    bx_module *am = bx_averaged_model_module(a);
    CHECK(am != m);
    enum { K = 6 };
    double sum[K][8] = {{0}};
    double acc[8] = {0};
    for (int k = 0; k < K; k++) {
        randomize(m, &rng, 3.0f);
        bx_fill(buffer_of(m, "1.running_mean"), (double)k);
        const float *w = param_of(m, "0.weight")->data;
        for (int i = 0; i < 8; i++) acc[i] += w[i];
        CHECK_OK(bx_averaged_model_update(a, m));
        CHECK_EQ_INT(bx_averaged_model_n_averaged(a), k + 1);
        const float *aw = param_of(am, "0.weight")->data;
        for (int i = 0; i < 8; i++) {
            sum[k][i] = acc[i] / (k + 1);
            CHECK_NEAR(aw[i], sum[k][i], 1e-6);
        }
        CHECK_NEAR(bx_get(buffer_of(am, "1.running_mean"), 0), 0.25, 0); /* not averaged */
    }
    /* first update copies exactly */
    bx_averaged_model *b = bx_averaged_model_new(m, NULL);
    randomize(m, &rng, 1.0f);
    CHECK_OK(bx_averaged_model_update(b, m));
    CHECK(memcmp(param_of(bx_averaged_model_module(b), "3.weight")->data, param_of(m, "3.weight")->data, 8 * sizeof(float)) == 0);
    CHECK(bx_averaged_model_n_averaged_tensor(b)->dtype == BX_I64 && bx_averaged_model_n_averaged_tensor(b)->ndim == 0);
    bx_averaged_model_free(b);
    /* the average is independent of the live model afterwards */
    bx_fill(param_of(m, "0.weight"), 100.0);
    CHECK(((const float *)param_of(am, "0.weight")->data)[0] < 10.0f);
    bx_averaged_model_free(a);
    bx_module_free(m);
}

/* a tensor above the parallel threshold (200x200) on 2 threads: the same
 * values as the formula, for the SWA mean and the EMA */
static void test_large_parallel(void) {
    bx_set_num_threads(2);
    bx_rng rng;
    bx_rng_init(&rng, 9);
    bx_module *m = bx_nn_linear(200, 200, false, &rng);
    bx_ema_opts eo = BX_EMA_OPTS_INIT;
    eo.decay = 0.75;
    bx_averaged_model *a = bx_averaged_model_new(m, NULL), *e = bx_averaged_model_new_ema(m, &eo);
    float *w = param_of(m, "weight")->data;
    static float ref[40000], eref[40000];
    for (int k = 0; k < 3; k++) {
        randomize(m, &rng, 1.0f);
        for (int i = 0; i < 40000; i++) {
            if (k == 0) ref[i] = eref[i] = w[i];
            else {
                float q = (w[i] - ref[i]) / (float)(k + 1);
                ref[i] = ref[i] + q;
                float u = 0.75f * eref[i], v = 0.25f * w[i];
                eref[i] = u + v;
            }
        }
        CHECK_OK(bx_averaged_model_update(a, m));
        CHECK_OK(bx_averaged_model_update(e, m));
    }
    CHECK(memcmp(param_of(bx_averaged_model_module(a), "weight")->data, ref, sizeof ref) == 0);
    const float *ew = param_of(bx_averaged_model_module(e), "weight")->data;
    double worst = 0;
    for (int i = 0; i < 40000; i++) worst = fmax(worst, fabs(ew[i] - eref[i]));
    CHECK(worst <= 1e-6);
    bx_averaged_model_free(a);
    bx_averaged_model_free(e);
    bx_module_free(m);
    bx_set_num_threads(1);
}

/* use_buffers: float buffers averaged, i64 num_batches_tracked truncated
 * toward zero: 20 + (43-20)/2 = 31.5 -> 31, and 43 + (20-43)/2 = 31.5 -> 31. */
static void test_use_buffers(void) {
    bx_rng rng;
    bx_rng_init(&rng, 2);
    bx_module *m = make_mlp(&rng);
    bx_averaged_model_opts o = BX_AVERAGED_MODEL_OPTS_INIT;
    o.use_buffers = true;
    for (int dir = 0; dir < 2; dir++) {
        bx_averaged_model *a = bx_averaged_model_new(m, &o);
        bx_module *am = bx_averaged_model_module(a);
        bx_tensor *nbt = buffer_of(m, "1.num_batches_tracked"), *rm = buffer_of(m, "1.running_mean");
        bx_set(nbt, 0, dir ? 43 : 20);
        bx_fill(rm, 1.0);
        CHECK_OK(bx_averaged_model_update(a, m));
        bx_set(nbt, 0, dir ? 20 : 43);
        bx_fill(rm, 4.0);
        CHECK_OK(bx_averaged_model_update(a, m));
        CHECK_EQ_INT((int64_t)bx_get(buffer_of(am, "1.num_batches_tracked"), 0), 31);
        CHECK_NEAR(bx_get(buffer_of(am, "1.running_mean"), 2), 2.5, 1e-7);
        /* third: 31 + (44-31)/3 = 35.33 -> 35 */
        bx_set(nbt, 0, 44);
        CHECK_OK(bx_averaged_model_update(a, m));
        CHECK_EQ_INT((int64_t)bx_get(buffer_of(am, "1.num_batches_tracked"), 0), 35);
        bx_averaged_model_free(a);
    }
    bx_module_free(m);
}

typedef struct fn_log {
    int calls;
    int64_t last_n;
} fn_log;

/* avg = 0.25*avg + 0.75*p, logging the n_averaged it is given */
static void my_avg(void *ud, float *avg, const float *p, int64_t n, int64_t n_averaged) {
    fn_log *l = ud;
    l->calls++;
    l->last_n = n_averaged;
    for (int64_t i = 0; i < n; i++) avg[i] = 0.25f * avg[i] + 0.75f * p[i];
}

static void test_custom_avg_fn(void) {
    bx_rng rng;
    bx_rng_init(&rng, 3);
    bx_module *m = make_mlp(&rng);
    fn_log log = {0, -1};
    bx_averaged_model_opts o = {my_avg, &log, true};
    bx_averaged_model *a = bx_averaged_model_new(m, &o);
    bx_module *am = bx_averaged_model_module(a);
    bx_fill(param_of(m, "0.bias"), 4.0);
    bx_set(buffer_of(m, "1.num_batches_tracked"), 0, 10);
    CHECK_OK(bx_averaged_model_update(a, m));
    CHECK_EQ_INT(log.calls, 0); /* the first update copies */
    bx_fill(param_of(m, "0.bias"), 8.0);
    bx_set(buffer_of(m, "1.num_batches_tracked"), 0, 13);
    CHECK_OK(bx_averaged_model_update(a, m));
    CHECK_EQ_INT(log.calls, 6 + 3); /* 6 parameters, 3 buffers */
    CHECK_EQ_INT(log.last_n, 1);
    CHECK_NEAR(bx_get(param_of(am, "0.bias"), 1), 7.0, 1e-7);
    /* i64 buffer through a float copy: 0.25*10 + 0.75*13 = 12.25 -> 12 */
    CHECK_EQ_INT((int64_t)bx_get(buffer_of(am, "1.num_batches_tracked"), 0), 12);
    CHECK_OK(bx_averaged_model_update(a, m));
    CHECK_EQ_INT(log.last_n, 2);
    bx_averaged_model_free(a);
    bx_module_free(m);
}

static void test_ema(void) {
    bx_rng rng;
    bx_rng_init(&rng, 4);
    bx_module *m = make_mlp(&rng);
    bx_ema_opts o = BX_EMA_OPTS_INIT;
    o.decay = 0.9;
    o.every_n_steps = 2;
    bx_averaged_model *a = bx_averaged_model_new_ema(m, &o);
    CHECK(a && bx_averaged_model_is_ema(a));
    bx_module *am = bx_averaged_model_module(a);
    bx_tensor *w = param_of(m, "3.bias"), *rm = buffer_of(m, "1.running_mean");
    bool up = true;
    bx_fill(w, 1.0);
    CHECK_OK(bx_averaged_model_step(a, m, &up)); /* step 1: not due */
    CHECK(!up);
    CHECK_EQ_INT(bx_averaged_model_n_averaged(a), 0);
    CHECK_OK(bx_averaged_model_step(a, m, &up)); /* step 2: first update copies */
    CHECK(up);
    CHECK_NEAR(bx_get(param_of(am, "3.bias"), 0), 1.0, 0);
    bx_fill(w, 2.0);
    bx_fill(rm, 5.0);
    CHECK_OK(bx_averaged_model_step(a, m, NULL));
    CHECK_OK(bx_averaged_model_step(a, m, NULL)); /* step 4: 0.9*1 + 0.1*2 */
    CHECK_NEAR(bx_get(param_of(am, "3.bias"), 1), 1.1, 1e-6);
    CHECK_NEAR(bx_get(buffer_of(am, "1.running_mean"), 0), 5.0, 0); /* COPY mode */
    CHECK_EQ_INT(bx_averaged_model_num_steps(a), 4);
    CHECK_EQ_INT(bx_averaged_model_n_averaged(a), 2);
    bx_averaged_model_free(a);

    /* warm-up: decay_n = min(decay, (1+n)/(10+n)); AVERAGE buffers, i64 copied */
    bx_ema_opts w2 = BX_EMA_OPTS_INIT;
    w2.warmup = true;
    w2.buffers = BX_EMA_BUFFERS_AVERAGE;
    a = bx_averaged_model_new_ema(m, &w2);
    am = bx_averaged_model_module(a);
    bx_fill(w, 0.0);
    bx_fill(rm, 0.0);
    CHECK_OK(bx_averaged_model_update(a, m));
    bx_fill(w, 11.0);
    bx_fill(rm, 11.0);
    bx_set(buffer_of(m, "1.num_batches_tracked"), 0, 7);
    CHECK_OK(bx_averaged_model_update(a, m)); /* n=1: d = 2/11 -> 0 + (9/11)*11 = 9 */
    CHECK_NEAR(bx_get(param_of(am, "3.bias"), 0), 9.0, 1e-6);
    CHECK_NEAR(bx_get(buffer_of(am, "1.running_mean"), 0), 9.0, 1e-6);
    CHECK_EQ_INT((int64_t)bx_get(buffer_of(am, "1.num_batches_tracked"), 0), 7);
    bx_averaged_model_free(a);

    /* KEEP buffers; start_step */
    bx_ema_opts w3 = BX_EMA_OPTS_INIT;
    w3.buffers = BX_EMA_BUFFERS_KEEP;
    w3.start_step = 3;
    bx_fill(rm, -1.0);
    a = bx_averaged_model_new_ema(m, &w3);
    am = bx_averaged_model_module(a);
    bx_fill(rm, 3.0);
    for (int i = 0; i < 2; i++) CHECK_OK(bx_averaged_model_step(a, m, NULL));
    CHECK_EQ_INT(bx_averaged_model_n_averaged(a), 0);
    CHECK_OK(bx_averaged_model_step(a, m, &up));
    CHECK(up);
    CHECK_NEAR(bx_get(buffer_of(am, "1.running_mean"), 0), -1.0, 0);
    bx_averaged_model_free(a);

    bx_ema_opts bad = BX_EMA_OPTS_INIT;
    bad.decay = 1.5;
    CHECK(bx_averaged_model_new_ema(m, &bad) == NULL);
    CHECK(strstr(bx_errmsg(), "decay") != NULL);
    bad.decay = 0.5;
    bad.every_n_steps = 0;
    CHECK(bx_averaged_model_new_ema(m, &bad) == NULL);
    bx_module_free(m);
}

/* ---- update_bn ------------------------------------------------------------- */

typedef struct batches {
    bx_tensor *b[4];
    int n, next, calls;
} batches;

static bx_tensor *next_batch(void *ud, bx_step *st) {
    (void)st;
    batches *s = ud;
    s->calls++;
    return s->next < s->n ? s->b[s->next++] : NULL;
}

/* Each batch counts once: running_mean = mean of per-batch means, running_var
 * = mean of per-batch unbiased variances, num_batches_tracked = #batches. */
static void test_update_bn_equal_weight(void) {
    bx_rng rng;
    bx_rng_init(&rng, 5);
    bx_batchnorm_opts bo = BX_BATCHNORM_OPTS_INIT;
    bo.momentum = 0.3;
    bx_module *bn = bx_nn_batchnorm1d(2, &bo);
    bx_module *root = bx_nn_sequential();
    bx_sequential_append(root, bx_nn_identity());
    bx_sequential_append(root, bn);
    bx_fill(bx_module_buffer(bn, "running_mean"), 7.0);
    bx_set(bx_module_buffer(bn, "num_batches_tracked"), 0, 99);
    bx_module_train(root, false);
    bx_module_train(bx_module_child(root, "0"), true); /* mixed modes must come back */
    const int64_t sizes[3] = {8, 8, 5};
    batches src = {{NULL}, 3, 0, 0};
    double mean_exp[2] = {0}, var_exp[2] = {0}, wmean[2] = {0};
    for (int k = 0; k < 3; k++) {
        int64_t shape[2] = {sizes[k], 2};
        src.b[k] = bx_tensor_new(BX_F32, 2, shape);
        float *d = src.b[k]->data;
        for (int64_t i = 0; i < sizes[k] * 2; i++) d[i] = (float)(k * 3) + 4.0f * bx_rng_uniform(&rng) * (float)(1 + (i & 1));
        for (int c = 0; c < 2; c++) {
            double s = 0, ss = 0;
            for (int64_t i = 0; i < sizes[k]; i++) s += d[i * 2 + c];
            double mu = s / (double)sizes[k];
            for (int64_t i = 0; i < sizes[k]; i++) ss += (d[i * 2 + c] - mu) * (d[i * 2 + c] - mu);
            mean_exp[c] += mu / 3.0;
            wmean[c] += s / 21.0;
            var_exp[c] += ss / (double)(sizes[k] - 1) / 3.0;
        }
    }
    bx_step *st = bx_step_new();
    CHECK_OK(bx_update_bn(root, next_batch, &src, st));
    for (int c = 0; c < 2; c++) {
        CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_mean"), c), mean_exp[c], 1e-5);
        CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_var"), c), var_exp[c], 1e-5);
    }
    CHECK_EQ_INT((int64_t)bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0), 3);
    /* a size-weighted average would differ: the property is not vacuous */
    CHECK(fabs(mean_exp[0] - wmean[0]) > 1e-2);
    CHECK_NEAR(bx_batchnorm_momentum(bn), 0.3, 0);
    CHECK(!bx_module_is_training(root));
    CHECK(bx_module_is_training(bx_module_child(root, "0")));
    CHECK(!bx_module_is_training(bn));

    /* the same through a bx_loader over the 21 rows, batch_size 8 (NULL step) */
    int64_t all_shape[2] = {21, 2};
    bx_tensor *all = bx_tensor_new(BX_F32, 2, all_shape);
    memcpy(all->data, src.b[0]->data, 16 * sizeof(float));
    memcpy((float *)all->data + 16, src.b[1]->data, 16 * sizeof(float));
    memcpy((float *)all->data + 32, src.b[2]->data, 10 * sizeof(float));
    bx_dataset *ds = bx_dataset_from_tensors(all, NULL, true);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 8;
    bx_loader *l = bx_loader_new(ds, &lo);
    float before[2] = {(float)bx_get(bx_module_buffer(bn, "running_var"), 0),
                       (float)bx_get(bx_module_buffer(bn, "running_var"), 1)};
    bx_fill(bx_module_buffer(bn, "running_var"), 50.0);
    CHECK_OK(bx_update_bn_loader(root, l, NULL));
    for (int c = 0; c < 2; c++)
        CHECK_NEAR(bx_get(bx_module_buffer(bn, "running_var"), c), before[c], 1e-6);
    CHECK_EQ_INT((int64_t)bx_get(bx_module_buffer(bn, "num_batches_tracked"), 0), 3);

    /* a failing forward: error returned, momentum and modes still restored */
    int64_t bad_shape[2] = {4, 3};
    bx_tensor *bad = bx_tensor_zeros(BX_F32, 2, bad_shape);
    batches bsrc = {{bad}, 1, 0, 0};
    bx_status s = bx_update_bn(root, next_batch, &bsrc, st);
    CHECK(s == BX_ERR_SHAPE);
    CHECK(strstr(bx_errmsg(), "update_bn") != NULL && strstr(bx_errmsg(), "BatchNorm1d") != NULL);
    CHECK_NEAR(bx_batchnorm_momentum(bn), 0.3, 0);
    CHECK(!bx_module_is_training(root) && bx_module_is_training(bx_module_child(root, "0")));
    CHECK_ERR(bx_update_bn(root, NULL, NULL, st), BX_ERR_INVALID, "update_bn");

    /* no BatchNorm: nothing runs (torch returns early) */
    bx_module *lin = bx_nn_linear(2, 2, true, &rng);
    batches none = {{src.b[0]}, 1, 0, 0};
    CHECK_OK(bx_update_bn(lin, next_batch, &none, st));
    CHECK_EQ_INT(none.calls, 0);

    /* momentum None kept as None */
    bx_batchnorm_set_momentum(bn, NAN);
    src.next = 0;
    CHECK_OK(bx_update_bn(root, next_batch, &src, st));
    CHECK(isnan(bx_batchnorm_momentum(bn)));

    bx_module_free(lin);
    bx_tensor_free(bad);
    bx_loader_free(l);
    bx_dataset_free(ds);
    for (int k = 0; k < 3; k++) bx_tensor_free(src.b[k]);
    bx_step_free(st);
    bx_module_free(root);
}

/* begin/end halves driven by the caller (Lightning's extra epoch): the same
 * statistics as bx_update_bn; modes untouched without set_train. */
static void test_bn_recompute_halves(void) {
    bx_rng rng;
    bx_rng_init(&rng, 8);
    bx_module *m = make_mlp(&rng), *m2 = NULL;
    CHECK(bx_module_has_batchnorm(m));
    bx_module *lin = bx_nn_linear(2, 2, true, &rng);
    CHECK(!bx_module_has_batchnorm(lin));
    bx_batchnorm_set_momentum(bx_module_child(m, "1"), 0.2);
    m2 = bx_module_clone(m);
    int64_t shape[2] = {6, 3};
    batches src = {{bx_tensor_new(BX_F32, 2, shape), bx_tensor_new(BX_F32, 2, shape)}, 2, 0, 0};
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 18; i++) ((float *)src.b[k]->data)[i] = (float)k + bx_rng_normal(&rng);
    CHECK_OK(bx_update_bn(m, next_batch, &src, NULL));

    bx_module_train(m2, true);
    bx_bn_saved *sv = NULL;
    CHECK_OK(bx_bn_recompute_begin(m2, false, &sv));
    CHECK_EQ_INT(bx_bn_saved_count(sv), 1);
    CHECK(isnan(bx_batchnorm_momentum(bx_module_child(m2, "1"))));
    bx_step *st = bx_step_new();
    for (int k = 0; k < 2; k++) {
        bx_step_reset(st);
        bx_tensor *y = bx_module_forward(m2, st, src.b[k]);
        bx_tensor *loss = bx_sum(st, y, NULL, 0, false);
        CHECK_OK(bx_backward(st, loss)); /* a training step's forward+backward */
    }
    bx_bn_recompute_end(sv);
    CHECK_NEAR(bx_batchnorm_momentum(bx_module_child(m2, "1")), 0.2, 0);
    bx_tensor *a = buffer_of(m, "1.running_var"), *b = buffer_of(m2, "1.running_var");
    for (int i = 0; i < 4; i++) CHECK_NEAR(bx_get(a, i), bx_get(b, i), 1e-6);
    CHECK_EQ_INT((int64_t)bx_get(buffer_of(m2, "1.num_batches_tracked"), 0), 2);
    CHECK_ERR(bx_bn_recompute_begin(NULL, true, &sv), BX_ERR_INVALID, "update_bn");
    bx_bn_recompute_end(NULL);
    bx_step_free(st);
    bx_tensor_free(src.b[0]);
    bx_tensor_free(src.b[1]);
    bx_module_free(lin);
    bx_module_free(m2);
    bx_module_free(m);
}

/* ---- state ------------------------------------------------------------------ */

typedef struct tstore {
    const bx_tensor *t[64];
    int n;
} tstore;

static bx_status store_out(void *ud, const char *path, const bx_tensor *t, char *name, size_t cap) {
    (void)path;
    tstore *s = ud;
    if (s->n == 64) return BX_ERR_NOMEM;
    snprintf(name, cap, "t%d", s->n);
    s->t[s->n++] = t;
    return BX_OK;
}

static const bx_tensor *store_in(void *ud, const char *name) {
    tstore *s = ud;
    int i = atoi(name + 1);
    return i >= 0 && i < s->n ? s->t[i] : NULL;
}

static void test_state(void) {
    bx_rng rng;
    bx_rng_init(&rng, 6);
    bx_module *m = make_mlp(&rng);
    bx_averaged_model_opts o = BX_AVERAGED_MODEL_OPTS_INIT;
    o.use_buffers = true;
    bx_averaged_model *a = bx_averaged_model_new(m, &o);
    for (int k = 0; k < 3; k++) {
        randomize(m, &rng, 1.0f);
        bx_set(buffer_of(m, "1.num_batches_tracked"), 0, 10 * k + 3);
        CHECK_OK(bx_averaged_model_step(a, m, NULL));
    }
    /* views: torch's AveragedModel.state_dict() keys, and the plain ones */
    bx_named_tensors *pv = bx_averaged_model_state_dict(a, true), *pl = bx_averaged_model_state_dict(a, false);
    CHECK(pv && pl && pv->n == pl->n + 1);
    CHECK(strcmp(pv->names[0], "n_averaged") == 0);
    CHECK(strcmp(pv->names[1], "module.0.weight") == 0);
    CHECK(strcmp(pv->names[pv->n - 1], "module.3.bias") == 0);
    CHECK(bx_named_tensors_get(pv, "module.1.num_batches_tracked") != NULL);
    CHECK(strcmp(pl->names[0], "0.weight") == 0);
    CHECK_EQ_INT((int64_t)bx_get(pv->tensors[0], 0), 3);

    /* load the prefixed view into a fresh averaged model of another init */
    bx_module *m2 = make_mlp(&rng);
    bx_averaged_model *b = bx_averaged_model_new(m2, &o);
    CHECK_OK(bx_averaged_model_load_state_dict(b, pv, true));
    CHECK_EQ_INT(bx_averaged_model_n_averaged(b), 3);
    CHECK(memcmp(param_of(bx_averaged_model_module(b), "0.weight")->data,
                 param_of(bx_averaged_model_module(a), "0.weight")->data, 12 * sizeof(float)) == 0);
    /* the plain view leaves n_averaged alone; a missing key fails strictly */
    bx_averaged_model_set_n_averaged(b, 9);
    CHECK_OK(bx_averaged_model_load_state_dict(b, pl, true));
    CHECK_EQ_INT(bx_averaged_model_n_averaged(b), 9);
    bx_named_tensors *part = bx_named_tensors_new(false);
    bx_named_tensors_add(part, "n_averaged", pv->tensors[0]);
    CHECK_ERR(bx_averaged_model_load_state_dict(b, part, true), BX_ERR_NOT_FOUND, "0.weight");
    CHECK_EQ_INT(bx_averaged_model_n_averaged(b), 9);
    bx_named_tensors_free(part);
    bx_named_tensors_free(pv);
    bx_named_tensors_free(pl);
    bx_averaged_model_free(b);

    /* resumable state through JSON: a restored copy continues identically */
    bx_state *s = bx_averaged_model_state(a);
    CHECK(s != NULL);
    tstore store = {{NULL}, 0};
    char *json = bx_state_to_json(s, store_out, &store);
    CHECK(json != NULL && strstr(json, "\"average_model_state\"") && strstr(json, "\"module.1.running_mean\""));
    bx_state *back = NULL;
    CHECK_OK(bx_state_from_json(json, store_in, &store, &back));
    b = bx_averaged_model_new(m2, &o);
    CHECK_OK(bx_averaged_model_load_state(b, back));
    CHECK_EQ_INT(bx_averaged_model_n_averaged(b), 3);
    CHECK_EQ_INT(bx_averaged_model_num_steps(b), 3);
    randomize(m, &rng, 1.0f);
    CHECK_OK(bx_averaged_model_update(a, m));
    CHECK_OK(bx_averaged_model_update(b, m));
    bx_named_tensors *sa = bx_module_state_dict(bx_averaged_model_module(a)), *sb = bx_module_state_dict(bx_averaged_model_module(b));
    bool same = sa->n == sb->n;
    for (int i = 0; same && i < sa->n; i++)
        same = memcmp(sa->tensors[i]->data, sb->tensors[i]->data,
                      (size_t)bx_numel(sa->tensors[i]) * bx_dtype_size(sa->tensors[i]->dtype)) == 0;
    CHECK(same);
    bx_named_tensors_free(sa);
    bx_named_tensors_free(sb);
    /* wrong kind */
    bx_averaged_model *e = bx_averaged_model_new_ema(m, NULL);
    CHECK_ERR(bx_averaged_model_load_state(e, back), BX_ERR_FORMAT, "kind");
    bx_averaged_model_free(e);
    bx_free(json);
    bx_state_free(back);
    bx_state_free(s);
    bx_averaged_model_free(b);
    bx_averaged_model_free(a);
    bx_module_free(m2);
    bx_module_free(m);
}

/* ---- errors and transfer_weights --------------------------------------------- */

static void test_errors_and_transfer(void) {
    bx_rng rng;
    bx_rng_init(&rng, 7);
    bx_module *m = make_mlp(&rng);
    bx_averaged_model *a = bx_averaged_model_new(m, NULL);
    CHECK_OK(bx_averaged_model_update(a, m));
    bx_module *other = bx_nn_sequential();
    bx_sequential_append(other, bx_nn_linear(3, 5, true, &rng));
    float w0 = ((float *)param_of(bx_averaged_model_module(a), "0.weight")->data)[0];
    CHECK_ERR(bx_averaged_model_update(a, other), BX_ERR_SHAPE, "averaged_model update");
    CHECK_EQ_INT(bx_averaged_model_n_averaged(a), 1);
    CHECK(((float *)param_of(bx_averaged_model_module(a), "0.weight")->data)[0] == w0);
    CHECK_ERR(bx_averaged_model_update(a, NULL), BX_ERR_INVALID, "NULL");
    CHECK(bx_averaged_model_new(NULL, NULL) == NULL);

    /* transfer: averaged parameters into a model by name */
    randomize(m, &rng, 2.0f);
    CHECK_OK(bx_averaged_model_update(a, m));
    bx_module *dst = make_mlp(&rng);
    bx_tensor *dw = param_of(dst, "3.weight");
    bx_fill(buffer_of(dst, "1.running_var"), 9.0);
    CHECK_OK(bx_averaged_model_transfer_weights(a, dst, false));
    CHECK(param_of(dst, "3.weight") == dw); /* identity kept */
    CHECK(memcmp(dw->data, param_of(bx_averaged_model_module(a), "3.weight")->data, 8 * sizeof(float)) == 0);
    CHECK_NEAR(bx_get(buffer_of(dst, "1.running_var"), 0), 9.0, 0);
    CHECK_OK(bx_averaged_model_transfer_weights(a, dst, true));
    CHECK_NEAR(bx_get(buffer_of(dst, "1.running_var"), 0), 1.0, 0);
    float keep = ((float *)param_of(other, "0.weight")->data)[0];
    CHECK_ERR(bx_transfer_weights(bx_averaged_model_module(a), other, false), BX_ERR_SHAPE, "0.weight");
    CHECK(((float *)param_of(other, "0.weight")->data)[0] == keep);
    CHECK_ERR(bx_transfer_weights(m, bx_module_child(dst, "0"), false), BX_ERR_NOT_FOUND, "missing in the destination");
    bx_module_free(dst);
    bx_module_free(other);
    bx_averaged_model_free(a);
    bx_module_free(m);
}

int main(void) {
    test_running_mean();
    test_use_buffers();
    test_large_parallel();
    test_custom_avg_fn();
    test_ema();
    test_update_bn_equal_weight();
    test_bn_recompute_halves();
    test_state();
    test_errors_and_transfer();
    return tu_finish("swa");
}
