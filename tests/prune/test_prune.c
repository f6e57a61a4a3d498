/* test_prune.c - the pruning engine (include/blixt/prune.h): P1 rounding,
 * torch's topk tie choices, iterative composition, structured skipping of
 * zeroed channels, the weight_orig / weight_mask reparametrisation (forward,
 * backward, optimizer), remove(), the permanent state dict, errors. */
#include "test_util.h"

/* ---- helpers ------------------------------------------------------------------------------ */

static const bx_module_type holder_type = {"Holder", NULL, NULL, NULL, NULL, NULL};

/* A module with parameter `weight` of the given values. */
static bx_module *holder(int ndim, const int64_t *shape, const float *vals) {
    bx_module *m = bx_module_new(&holder_type, NULL);
    bx_tensor *w = bx_tensor_new(BX_F32, ndim, shape);
    memcpy(w->data, vals, sizeof(float) * (size_t)bx_numel(w));
    bx_module_add_param(m, "weight", w);
    return m;
}

static int64_t mask_zeros(const bx_module *m, const char *name) {
    int64_t z = -1;
    bx_prune_mask_zeros(m, name, &z, NULL);
    return z;
}

static bool sorted_equal(int64_t *got, int k, const int64_t *want) {
    for (int i = 1; i < k; i++) /* insertion sort */
        for (int j = i; j > 0 && got[j - 1] > got[j]; j--) {
            int64_t t = got[j];
            got[j] = got[j - 1];
            got[j - 1] = t;
        }
    for (int i = 0; i < k; i++)
        if (got[i] != want[i]) return false;
    return true;
}

/* ---- P1: amounts ------------------------------------------------------------------------------ */

static void test_amounts(void) {
    int64_t k = -1;
    /* Python's round: half to even on the double product */
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_FRACTION(0.3), 35, &k));
    CHECK_EQ_INT(k, 10); /* 10.5 -> 10, not 11 */
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_FRACTION(0.25), 10, &k));
    CHECK_EQ_INT(k, 2); /* 2.5 -> 2 */
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_FRACTION(0.3), 25, &k));
    CHECK_EQ_INT(k, 8); /* 7.5 -> 8 */
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_FRACTION(0.3), 30, &k));
    CHECK_EQ_INT(k, 9);
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_FRACTION(0.34), 6, &k));
    CHECK_EQ_INT(k, 2); /* 2.04 */
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_FRACTION(1.0), 7, &k));
    CHECK_EQ_INT(k, 7);
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_FRACTION(0.0), 7, &k));
    CHECK_EQ_INT(k, 0);
    CHECK_OK(bx_prune_amount_resolve(BX_PRUNE_COUNT(7), 7, &k));
    CHECK_EQ_INT(k, 7);
    CHECK_ERR(bx_prune_amount_resolve(BX_PRUNE_COUNT(8), 7, &k), BX_ERR_INVALID, "amount=8 should be smaller");
    CHECK_ERR(bx_prune_amount_resolve(BX_PRUNE_COUNT(-1), 7, &k), BX_ERR_INVALID, "non-negative integer");
    CHECK_ERR(bx_prune_amount_resolve(BX_PRUNE_FRACTION(1.5), 7, &k), BX_ERR_INVALID, "range [0, 1]");
    CHECK_ERR(bx_prune_amount_resolve(BX_PRUNE_FRACTION(-0.1), 7, &k), BX_ERR_INVALID, "range [0, 1]");
    CHECK_ERR(bx_prune_amount_check(BX_PRUNE_FRACTION(NAN)), BX_ERR_INVALID, "amount=nan");

    bx_prune_method m;
    CHECK_OK(bx_prune_method_parse("L1_Unstructured", &m));
    CHECK_EQ_INT(m, BX_PRUNE_L1_UNSTRUCTURED);
    CHECK_OK(bx_prune_method_parse("ln_structured", &m));
    CHECK_EQ_INT(m, BX_PRUNE_LN_STRUCTURED);
    CHECK_OK(bx_prune_method_parse("RandomStructured", &m));
    CHECK_EQ_INT(m, BX_PRUNE_RANDOM_STRUCTURED);
    CHECK_ERR(bx_prune_method_parse("l2_unstructured", &m), BX_ERR_INVALID, "l2_unstructured");
    CHECK(strcmp(bx_prune_method_class_name(BX_PRUNE_RANDOM_UNSTRUCTURED), "RandomUnstructured") == 0);
    double p = 0;
    CHECK_OK(bx_prune_norm_parse("fro", &p));
    CHECK(p == 2.0);
    CHECK_OK(bx_prune_norm_parse("-inf", &p));
    CHECK(isinf(p) && p < 0);
    CHECK_OK(bx_prune_norm_parse("1", &p));
    CHECK(p == 1.0);
    CHECK_ERR(bx_prune_norm_parse("nuc", &p), BX_ERR_UNSUPPORTED, "nuc");
    CHECK_ERR(bx_prune_norm_parse("abc", &p), BX_ERR_INVALID, "abc");
}

/* ---- P2: torch.topk's choices among ties -------------------------------------------------------- */

/* Expected sets from tests/golden/topk_ties.py (topk_index_set). */
static void test_topk_ties(void) {
    float v[200];
    int64_t idx[200];
    /* 12 tied values, k = 9 smallest: introselect, not the first 9 */
    for (int i = 0; i < 12; i++) v[i] = 0.25f;
    CHECK_OK(bx_prune_topk(v, 12, 9, false, idx));
    const int64_t w1[] = {1, 2, 3, 6, 7, 8, 9, 10, 11};
    CHECK(sorted_equal(idx, 9, w1));
    /* 8 tied, 3 largest */
    for (int i = 0; i < 8; i++) v[i] = 1.0f;
    CHECK_OK(bx_prune_topk(v, 8, 3, true, idx));
    const int64_t w2[] = {4, 5, 6};
    CHECK(sorted_equal(idx, 3, w2));
    /* 128 tied, k = 2: k*64 <= n, heap select */
    for (int i = 0; i < 128; i++) v[i] = 1.0f;
    CHECK_OK(bx_prune_topk(v, 128, 2, false, idx));
    const int64_t w3[] = {0, 1};
    CHECK(sorted_equal(idx, 2, w3));
    /* 4 of the 5 tied 1s */
    const float v4[] = {2, 1, 2, 1, 2, 1, 2, 1, 2, 1};
    CHECK_OK(bx_prune_topk(v4, 10, 4, false, idx));
    const int64_t w4[] = {1, 5, 7, 9};
    CHECK(sorted_equal(idx, 4, w4));
    /* the 5 largest of 18 tied 3s */
    const float v5[] = {3, 3, 1, 3, 3, 3, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3};
    CHECK_OK(bx_prune_topk(v5, 20, 5, true, idx));
    const int64_t w5[] = {11, 12, 13, 14, 15};
    CHECK(sorted_equal(idx, 5, w5));
    /* without ties: the k smallest */
    const float v6[] = {0.5f, -3, 2, 0.1f, 7, -1};
    CHECK_OK(bx_prune_topk(v6, 6, 2, false, idx));
    const int64_t w6[] = {1, 5};
    CHECK(sorted_equal(idx, 2, w6));
    /* NaN counts as the largest */
    const float v7[] = {1, NAN, 3, 2};
    CHECK_OK(bx_prune_topk(v7, 4, 1, true, idx));
    CHECK_EQ_INT(idx[0], 1);
    CHECK_ERR(bx_prune_topk(v7, 4, 5, true, idx), BX_ERR_INVALID, "topk");

    /* the same ties through l1_unstructured: 9 of 12 equal |w| (amount 0.75) */
    float w[12];
    for (int i = 0; i < 12; i++) w[i] = i % 2 ? 0.25f : -0.25f;
    int64_t shape[2] = {3, 4};
    bx_module *m = holder(2, shape, w);
    bx_prune_opts o = BX_PRUNE_OPTS_INIT;
    o.amount = BX_PRUNE_FRACTION(0.75);
    CHECK_OK(bx_prune_apply(m, "weight", &o));
    const float *mask = bx_prune_mask(m, "weight")->data;
    const uint8_t want[12] = {1, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0};
    int bad = 0;
    for (int i = 0; i < 12; i++) bad += mask[i] != want[i];
    CHECK_EQ_INT(bad, 0);
    bx_module_free(m);
}

/* ---- P3: iterative composition ------------------------------------------------------------------ */

static void test_iterative(void) {
    float w[100];
    for (int i = 0; i < 100; i++) w[i] = (float)((i * 37) % 100 + 1); /* 1..100, shuffled */
    int64_t shape[2] = {10, 10};
    bx_module *m = holder(2, shape, w);
    bx_prune_opts o = BX_PRUNE_OPTS_INIT;
    o.amount = BX_PRUNE_FRACTION(0.5);
    CHECK_OK(bx_prune_apply(m, "weight", &o));
    CHECK_EQ_INT(mask_zeros(m, "weight"), 50);
    float first[100];
    memcpy(first, bx_prune_mask(m, "weight")->data, sizeof first);
    bx_tensor *mask_obj = bx_prune_mask(m, "weight");
    CHECK_OK(bx_prune_apply(m, "weight", &o)); /* 0.5 of the 50 remaining */
    CHECK_EQ_INT(mask_zeros(m, "weight"), 75); /* 25 % left */
    CHECK(bx_prune_mask(m, "weight") == mask_obj); /* the buffer is updated in place */
    const float *second = bx_prune_mask(m, "weight")->data;
    int resurrected = 0;
    for (int i = 0; i < 100; i++) resurrected += first[i] == 0 && second[i] != 0;
    CHECK_EQ_INT(resurrected, 0); /* new mask = old mask with new zeros */
    /* the pruned set is the 75 smallest |w| */
    int wrong = 0;
    for (int i = 0; i < 100; i++) wrong += (w[i] <= 75.0f) != (second[i] == 0);
    CHECK_EQ_INT(wrong, 0);
    /* an int amount counts among the remaining 25 */
    o.amount = BX_PRUNE_COUNT(26);
    CHECK_ERR(bx_prune_apply(m, "weight", &o), BX_ERR_INVALID, "amount=26 should be smaller");
    CHECK_EQ_INT(mask_zeros(m, "weight"), 75); /* unchanged by the failure */
    o.amount = BX_PRUNE_COUNT(25);
    CHECK_OK(bx_prune_apply(m, "weight", &o));
    CHECK_EQ_INT(mask_zeros(m, "weight"), 100);
    bx_module_free(m);

    /* scores are the current values: an update of weight_orig changes the next choice */
    const float v[4] = {1, 2, 3, 4};
    int64_t s1[1] = {4};
    m = holder(1, s1, v);
    o.amount = BX_PRUNE_COUNT(1);
    CHECK_OK(bx_prune_apply(m, "weight", &o)); /* prunes index 0 */
    float *orig = bx_prune_param(m, "weight")->data;
    orig[3] = 0.5f;                            /* index 3 is now the smallest */
    CHECK_OK(bx_prune_apply(m, "weight", &o));
    const float *mk = bx_prune_mask(m, "weight")->data;
    CHECK(mk[0] == 0 && mk[1] == 1 && mk[2] == 1 && mk[3] == 0);
    bx_module_free(m);
}

/* ---- structured ----------------------------------------------------------------------------------- */

static void test_structured(void) {
    /* rows with L1 norms 6, 1, 5, 2, 4, 3 (4 columns each) */
    const float norms_row[6] = {6, 1, 5, 2, 4, 3};
    float w[24];
    for (int r = 0; r < 6; r++)
        for (int c = 0; c < 4; c++) w[r * 4 + c] = (c % 2 ? -1.0f : 1.0f) * norms_row[r] / 4.0f;
    int64_t shape[2] = {6, 4};
    bx_module *m = holder(2, shape, w);
    bx_prune_opts o = BX_PRUNE_OPTS_INIT;
    o.method = BX_PRUNE_LN_STRUCTURED;
    o.norm = 1;
    o.dim = 0;
    o.amount = BX_PRUNE_COUNT(2);
    CHECK_OK(bx_prune_apply(m, "weight", &o)); /* rows 1 and 3 */
    const float *mk = bx_prune_mask(m, "weight")->data;
    CHECK(mk[1 * 4] == 0 && mk[3 * 4 + 3] == 0 && mk[0] == 1 && mk[5 * 4] == 1);
    CHECK_EQ_INT(mask_zeros(m, "weight"), 8);
    /* second round: the two zeroed rows are no candidates: round(0.5*4) = 2 more
     * (were they counted, it would be round(0.5*6) = 3) */
    o.amount = BX_PRUNE_FRACTION(0.5);
    CHECK_OK(bx_prune_apply(m, "weight", &o)); /* rows 5 and 4 */
    mk = bx_prune_mask(m, "weight")->data;
    CHECK_EQ_INT(mask_zeros(m, "weight"), 16);
    CHECK(mk[4 * 4] == 0 && mk[5 * 4] == 0 && mk[0] == 1 && mk[2 * 4] == 1);
    bx_module_free(m);

    /* norms: [[3,4],[1,0]] per row */
    const float a[4] = {3, -4, 1, 0};
    int64_t s2[2] = {2, 2}, s1[1] = {2};
    bx_tensor *t = bx_tensor_new(BX_F32, 2, s2), *out = bx_tensor_new(BX_F32, 1, s1);
    memcpy(t->data, a, sizeof a);
    const double ps[5] = {2, INFINITY, -INFINITY, 0, 1};
    const float want[5][2] = {{5, 1}, {4, 1}, {3, 0}, {2, 1}, {7, 1}};
    for (int i = 0; i < 5; i++) {
        CHECK_OK(bx_prune_channel_norms(t, ps[i], 0, out));
        CHECK_NEAR(bx_get(out, 0), want[i][0], 1e-6);
        CHECK_NEAR(bx_get(out, 1), want[i][1], 1e-6);
    }
    CHECK_OK(bx_prune_channel_norms(t, 2, -1, out)); /* columns: sqrt(10), 4 */
    CHECK_NEAR(bx_get(out, 0), sqrt(10.0), 1e-6);
    CHECK_NEAR(bx_get(out, 1), 4, 1e-6);

    /* tensor-level: u8 mask, dim -1, 3-D */
    int64_t s3[3] = {2, 3, 4};
    bx_tensor *sc = bx_tensor_new(BX_F32, 3, s3), *mask = bx_tensor_new(BX_U8, 3, s3);
    for (int i = 0; i < 24; i++) ((float *)sc->data)[i] = (float)(i % 4 + 1); /* column c has norm ~ c+1 */
    bx_fill(mask, 1);
    o.amount = BX_PRUNE_COUNT(3);
    o.dim = -1;
    o.norm = 2;
    int64_t np = -1;
    CHECK_OK(bx_prune_compute_mask(sc, mask, &o, &np));
    CHECK_EQ_INT(np, 3);
    int ok = 1;
    for (int i = 0; i < 24; i++) ok &= ((const uint8_t *)mask->data)[i] == (i % 4 == 3);
    CHECK(ok);

    /* random_structured: exactly k channels, reproducible from the rng */
    bx_rng r1, r2;
    bx_rng_init(&r1, 5);
    bx_rng_init(&r2, 5);
    bx_tensor *m1 = bx_tensor_new(BX_F32, 3, s3), *m2 = bx_tensor_new(BX_F32, 3, s3);
    bx_fill(m1, 1);
    bx_fill(m2, 1);
    o.method = BX_PRUNE_RANDOM_STRUCTURED;
    o.dim = 1;
    o.amount = BX_PRUNE_FRACTION(0.5); /* round(1.5) = 2 */
    o.rng = &r1;
    CHECK_OK(bx_prune_compute_mask(sc, m1, &o, &np));
    CHECK_EQ_INT(np, 2);
    o.rng = &r2;
    CHECK_OK(bx_prune_compute_mask(sc, m2, &o, NULL));
    int zeros = 0, same = 1;
    for (int i = 0; i < 24; i++) {
        zeros += ((float *)m1->data)[i] == 0;
        same &= ((float *)m1->data)[i] == ((float *)m2->data)[i];
    }
    CHECK_EQ_INT(zeros, 16);
    CHECK(same);
    bx_tensor_free(m1);
    bx_tensor_free(m2);
    bx_tensor_free(sc);
    bx_tensor_free(mask);
    bx_tensor_free(t);
    bx_tensor_free(out);
}

/* ---- reparametrisation: forward, backward, optimizer, remove -------------------------------------- */

static void test_reparam(void) {
    bx_rng rng;
    bx_rng_init(&rng, 42);
    bx_module *lin = bx_nn_linear(4, 3, true, &rng);
    bx_tensor *w = bx_module_param(lin, "weight");
    bx_tensor *b = bx_module_param(lin, "bias");
    float w0[12];
    memcpy(w0, w->data, sizeof w0);
    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = 0.1;
    bx_optimizer *opt = bx_sgd_new(&so);
    bx_tensor *ps[2] = {w, b};
    CHECK_OK(bx_optimizer_add_group(opt, ps, 2, NULL));

    bx_prune_opts o = BX_PRUNE_OPTS_INIT;
    o.amount = BX_PRUNE_FRACTION(0.5);
    CHECK(!bx_prune_is_pruned(lin, "weight"));
    CHECK_OK(bx_prune_apply(lin, "weight", &o));
    CHECK(bx_prune_is_pruned(lin, "weight"));
    CHECK(bx_prune_tree_is_pruned(lin));
    CHECK(bx_module_param(lin, "weight") == NULL);
    CHECK(bx_module_param(lin, "weight_orig") == w); /* same tensor object */
    CHECK(bx_prune_param(lin, "weight") == w);
    bx_tensor *mask = bx_module_buffer(lin, "weight_mask");
    CHECK(mask && mask->dtype == BX_F32 && !mask->requires_grad);
    CHECK_EQ_INT(mask_zeros(lin, "weight"), 6);
    /* torch's order: bias, weight_orig, then the buffer weight_mask */
    bx_named_tensors *sd = bx_module_state_dict(lin);
    CHECK_EQ_INT(sd->n, 3);
    CHECK(strcmp(sd->names[0], "bias") == 0 && strcmp(sd->names[1], "weight_orig") == 0 &&
          strcmp(sd->names[2], "weight_mask") == 0);
    bx_named_tensors_free(sd);

    /* forward sees weight_orig * weight_mask; the gradient of pruned entries is 0 */
    bx_step *st = bx_step_new();
    int64_t xs[2] = {2, 4};
    bx_tensor *x = bx_step_tensor(st, BX_F32, 2, xs);
    for (int i = 0; i < 8; i++) ((float *)x->data)[i] = 0.5f + 0.25f * (float)i;
    bx_tensor *y = bx_module_forward(lin, st, x);
    bx_tensor *loss = bx_sum(st, y, NULL, 0, false);
    CHECK_OK(bx_backward(st, loss));
    const float *mk = mask->data, *xd = x->data, *bd = b->data;
    double maxerr = 0;
    for (int n = 0; n < 2; n++)
        for (int j = 0; j < 3; j++) {
            double acc = bd[j];
            for (int i = 0; i < 4; i++) acc += (double)xd[n * 4 + i] * w0[j * 4 + i] * mk[j * 4 + i];
            maxerr = fmax(maxerr, fabs(acc - bx_get(y, n * 3 + j)));
        }
    CHECK(maxerr < 1e-5);
    const float *g = w->grad->data;
    int badg = 0;
    for (int j = 0; j < 3; j++)
        for (int i = 0; i < 4; i++) {
            double want = mk[j * 4 + i] ? (double)xd[i] + xd[4 + i] : 0.0;
            badg += fabs(g[j * 4 + i] - want) > 1e-5;
        }
    CHECK_EQ_INT(badg, 0);
    /* the optimizer built before pruning still trains weight_orig */
    CHECK_OK(bx_optimizer_step(opt));
    const float *wd = w->data;
    CHECK_NEAR(wd[0], w0[0] - 0.1 * g[0], 1e-6);
    /* a steady-state step of the pruned model allocates nothing on the heap */
    for (int rep = 0; rep < 2; rep++) {
        uint64_t a0 = bx_alloc_count();
        bx_step_reset(st);
        bx_tensor *xr = bx_step_tensor(st, BX_F32, 2, xs);
        bx_fill(xr, 0.5);
        bx_tensor *lr = bx_sum(st, bx_module_forward(lin, st, xr), NULL, 0, false);
        CHECK_OK(bx_backward(st, lr));
        CHECK_OK(bx_optimizer_step(opt));
        bx_optimizer_zero_grad(opt);
        if (rep == 1) CHECK_EQ_INT(bx_alloc_count() - a0, 0);
    }
    memcpy(w0, w->data, sizeof w0);
    bx_optimizer_zero_grad(opt);
    bx_step_reset(st);
    x = bx_step_tensor(st, BX_F32, 2, xs);
    for (int i = 0; i < 8; i++) ((float *)x->data)[i] = 0.5f + 0.25f * (float)i;
    xd = x->data;
    y = bx_module_forward(lin, st, x);
    CHECK_OK(bx_backward(st, bx_sum(st, y, NULL, 0, false)));
    CHECK_OK(bx_optimizer_step(opt));
    for (int i = 0; i < 12; i++) badg += mk[i] == 0 && wd[i] != w0[i]; /* pruned entries never move */
    CHECK_EQ_INT(badg, 0);

    /* a clone is pruned too and uses its own mask */
    bx_module *cl = bx_module_clone(lin);
    CHECK(cl && bx_prune_is_pruned(cl, "weight"));
    CHECK(bx_prune_mask(cl, "weight") != mask);

    /* effective values and the permanent state dict leave the module alone */
    float worig[12];
    memcpy(worig, w->data, sizeof worig);
    bx_tensor *eff = bx_prune_effective(lin, "weight");
    int bade = 0;
    for (int i = 0; i < 12; i++) bade += ((float *)eff->data)[i] != worig[i] * mk[i];
    CHECK_EQ_INT(bade, 0);
    bx_named_tensors *psd = bx_prune_permanent_state_dict(lin);
    CHECK(psd && psd->n == 2);
    if (psd && psd->n == 2) {
        CHECK(strcmp(psd->names[0], "bias") == 0 && strcmp(psd->names[1], "weight") == 0);
        int bads = 0;
        for (int i = 0; i < 12; i++) bads += ((float *)psd->tensors[1]->data)[i] != worig[i] * mk[i];
        CHECK_EQ_INT(bads, 0);
        CHECK(psd->tensors[1] != w);
    }
    bx_named_tensors_free(psd);
    CHECK(bx_prune_is_pruned(lin, "weight"));
    CHECK(memcmp(w->data, worig, sizeof worig) == 0);

    /* remove: weight = orig * mask, the same tensor object, now plain */
    CHECK_OK(bx_prune_remove(lin, "weight"));
    CHECK(!bx_prune_is_pruned(lin, "weight"));
    CHECK(!bx_prune_tree_is_pruned(lin));
    CHECK(bx_module_param(lin, "weight") == w);
    CHECK(bx_module_param(lin, "weight_orig") == NULL);
    CHECK(bx_module_buffer(lin, "weight_mask") == NULL);
    CHECK(!bx_module_has_reparam(lin, "weight"));
    int badr = 0;
    for (int i = 0; i < 12; i++) badr += memcmp(&((float *)w->data)[i], &((float *)eff->data)[i], 4) != 0;
    CHECK_EQ_INT(badr, 0); /* bit for bit, -0.0 included */
    sd = bx_module_state_dict(lin);
    CHECK(sd->n == 2 && strcmp(sd->names[0], "bias") == 0 && strcmp(sd->names[1], "weight") == 0);
    bx_named_tensors_free(sd);
    CHECK_ERR(bx_prune_remove(lin, "weight"), BX_ERR_STATE, "has to be pruned");
    /* forward uses the plain parameter again */
    bx_step_reset(st);
    x = bx_step_tensor(st, BX_F32, 2, xs);
    for (int i = 0; i < 8; i++) ((float *)x->data)[i] = 1.0f;
    y = bx_module_forward(lin, st, x);
    CHECK(bx_step_status(st) == BX_OK);
    double acc = bd[0];
    for (int i = 0; i < 4; i++) acc += ((float *)w->data)[i];
    CHECK_NEAR(bx_get(y, 0), acc, 1e-5);

    /* the clone still works on its own after the original was made permanent */
    bx_step_reset(st);
    x = bx_step_tensor(st, BX_F32, 2, xs);
    bx_fill(x, 1.0);
    y = bx_module_forward(cl, st, x);
    CHECK(bx_step_status(st) == BX_OK);
    CHECK_OK(bx_prune_remove_all(cl));
    CHECK(!bx_prune_tree_is_pruned(cl));
    bx_module_free(cl);
    bx_tensor_free(eff);
    bx_step_free(st);
    bx_optimizer_free(opt);
    bx_module_free(lin);
}

/* ---- global --------------------------------------------------------------------------------------- */

static void test_global(void) {
    bx_rng rng;
    bx_rng_init(&rng, 3);
    bx_module *seq = bx_nn_sequential();
    bx_sequential_append(seq, bx_nn_linear(5, 6, true, &rng));
    bx_sequential_append(seq, bx_nn_relu());
    bx_sequential_append(seq, bx_nn_linear(6, 2, true, &rng));
    bx_module *l0 = bx_module_child(seq, "0"), *l2 = bx_module_child(seq, "2");
    bx_prune_target t[3] = {{l0, "weight"}, {l2, "weight"}, {l2, "bias"}};
    bx_prune_opts o = BX_PRUNE_OPTS_INIT;
    o.amount = BX_PRUNE_COUNT(20);
    CHECK_OK(bx_prune_global(t, 3, &o));
    int64_t z0 = mask_zeros(l0, "weight"), z2 = mask_zeros(l2, "weight"), zb = mask_zeros(l2, "bias");
    CHECK_EQ_INT(z0 + z2 + zb, 20);
    /* the 20 pruned are the 20 smallest |w| of all 44 */
    float thr_lo = INFINITY, thr_hi = 0;
    int n = 0;
    for (int k = 0; k < 3; k++) {
        bx_tensor *p = bx_prune_param(t[k].module, t[k].name), *m = bx_prune_mask(t[k].module, t[k].name);
        for (int64_t i = 0; i < bx_numel(p); i++) {
            float a = fabsf(((float *)p->data)[i]);
            n++;
            if (((float *)m->data)[i] == 0)
                thr_hi = fmaxf(thr_hi, a);
            else
                thr_lo = fminf(thr_lo, a);
        }
    }
    CHECK_EQ_INT(n, 44);
    CHECK(thr_hi <= thr_lo);
    /* second round: 0.5 of the remaining 24 */
    o.amount = BX_PRUNE_FRACTION(0.5);
    CHECK_OK(bx_prune_global(t, 3, &o));
    CHECK_EQ_INT(mask_zeros(l0, "weight") + mask_zeros(l2, "weight") + mask_zeros(l2, "bias"), 32);
    /* permanent state dict of the tree: plain keys, masks gone, the order of a made-permanent copy */
    bx_named_tensors *psd = bx_prune_permanent_state_dict(seq);
    const char *want[] = {"0.bias", "0.weight", "2.weight", "2.bias"};
    CHECK(psd && psd->n == 4);
    for (int i = 0; psd && i < psd->n && i < 4; i++) CHECK(strcmp(psd->names[i], want[i]) == 0);
    bx_module *cp = bx_module_clone(seq);
    CHECK_OK(bx_prune_remove_all(cp));
    bx_named_tensors *sd = bx_module_state_dict(cp);
    CHECK(sd->n == 4);
    for (int i = 0; i < sd->n && psd && i < psd->n; i++) {
        CHECK(strcmp(sd->names[i], psd->names[i]) == 0);
        CHECK(memcmp(sd->tensors[i]->data, psd->tensors[i]->data, sizeof(float) * (size_t)bx_numel(sd->tensors[i])) == 0);
    }
    bx_named_tensors_free(sd);
    bx_named_tensors_free(psd);
    bx_module_free(cp);
    /* a pruned state dict loads strictly into a fresh tree after identity_from_keys */
    bx_named_tensors *live = bx_module_state_dict(seq);
    bx_module *fresh = bx_nn_sequential();
    bx_sequential_append(fresh, bx_nn_linear(5, 6, true, NULL));
    bx_sequential_append(fresh, bx_nn_relu());
    bx_sequential_append(fresh, bx_nn_linear(6, 2, true, NULL));
    CHECK(bx_module_load_state_dict(fresh, live, true) != BX_OK); /* weight_orig unexpected */
    int cnt = -1;
    CHECK_OK(bx_prune_identity_from_keys(fresh, (const char *const *)live->names, live->n, &cnt));
    CHECK_EQ_INT(cnt, 3);
    CHECK_OK(bx_module_load_state_dict(fresh, live, true));
    CHECK_EQ_INT(mask_zeros(bx_module_child(fresh, "2"), "bias"), mask_zeros(l2, "bias"));
    CHECK_EQ_INT(mask_zeros(bx_module_child(fresh, "0"), "weight"), mask_zeros(l0, "weight"));
    CHECK_OK(bx_prune_identity_from_keys(fresh, (const char *const *)live->names, live->n, &cnt));
    CHECK_EQ_INT(cnt, 0); /* already pruned: skipped */
    bx_named_tensors_free(live);
    bx_module_free(fresh);
    /* errors */
    bx_prune_target dup[2] = {{l0, "weight"}, {l0, "weight"}};
    CHECK_ERR(bx_prune_global(dup, 2, &o), BX_ERR_INVALID, "listed twice");
    o.method = BX_PRUNE_LN_STRUCTURED;
    o.norm = 2;
    CHECK_ERR(bx_prune_global(t, 3, &o), BX_ERR_INVALID, "only unstructured");
    o.method = BX_PRUNE_RANDOM_UNSTRUCTURED;
    o.rng = &rng;
    o.amount = BX_PRUNE_COUNT(3);
    CHECK_OK(bx_prune_global(t, 3, &o));
    CHECK_EQ_INT(mask_zeros(l0, "weight") + mask_zeros(l2, "weight") + mask_zeros(l2, "bias"), 35);
    bx_module_free(seq);
}

static bx_tensor *other_reparam(void *ud, bx_module *m, bx_step *st) {
    (void)ud;
    return bx_module_tensor(st, m, "weight");
}

/* ---- errors ---------------------------------------------------------------------------------------- */

static void test_errors(void) {
    bx_rng rng;
    bx_rng_init(&rng, 1);
    bx_module *lin = bx_nn_linear(4, 3, true, &rng);
    bx_prune_opts o = BX_PRUNE_OPTS_INIT;
    o.amount = BX_PRUNE_FRACTION(0.5);
    CHECK_ERR(bx_prune_apply(lin, "weigth", &o), BX_ERR_NOT_FOUND, "'weigth'");
    CHECK_ERR(bx_prune_apply(NULL, "weight", &o), BX_ERR_INVALID, "module is NULL");
    CHECK_ERR(bx_prune_apply(lin, "a.b", &o), BX_ERR_INVALID, "bad parameter name");
    o.method = BX_PRUNE_LN_STRUCTURED;
    o.norm = 1;
    o.dim = 0;
    CHECK_ERR(bx_prune_apply(lin, "bias", &o), BX_ERR_SHAPE, "multidimensional");
    o.dim = 2;
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_SHAPE, "dim 2 is out of range");
    o.dim = -3;
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_SHAPE, "dim -3");
    o.dim = 0;
    o.norm = NAN;
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_INVALID, "norm n is required");
    o.norm = 2;
    o.amount = BX_PRUNE_FRACTION(1.5);
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_INVALID, "amount=1.5");
    o.amount = BX_PRUNE_COUNT(4); /* 3 rows */
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_INVALID, "amount=4 should be smaller");
    o.method = BX_PRUNE_RANDOM_UNSTRUCTURED;
    o.amount = BX_PRUNE_COUNT(1);
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_INVALID, "needs an rng");
    o.method = (bx_prune_method)9;
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_INVALID, "bad method");
    /* nothing changed by the failures */
    CHECK(!bx_prune_is_pruned(lin, "weight"));
    CHECK(bx_module_param(lin, "weight") != NULL && bx_module_buffer(lin, "weight_mask") == NULL);
    CHECK_ERR(bx_prune_remove(lin, "weight"), BX_ERR_STATE, "has to be pruned");
    /* a name that would collide */
    int64_t s1[1] = {3};
    CHECK_OK(bx_module_add_buffer(lin, "bias_mask", bx_tensor_zeros(BX_F32, 1, s1), true));
    o.method = BX_PRUNE_L1_UNSTRUCTURED;
    CHECK_ERR(bx_prune_apply(lin, "bias", &o), BX_ERR_INVALID, "already taken");
    CHECK(bx_module_param(lin, "bias") != NULL && !bx_prune_is_pruned(lin, "bias"));
    /* another reparametrisation of the same name is not replaced */
    CHECK_OK(bx_module_set_reparam(lin, "weight", other_reparam, NULL));
    CHECK_ERR(bx_prune_apply(lin, "weight", &o), BX_ERR_STATE, "another reparametrisation");
    CHECK(bx_module_param(lin, "weight") != NULL && !bx_prune_is_pruned(lin, "weight"));
    CHECK_OK(bx_module_set_reparam(lin, "weight", NULL, NULL));
    /* tensor level */
    int64_t s2[2] = {2, 3}, s3[2] = {3, 2};
    bx_tensor *a = bx_tensor_zeros(BX_F32, 2, s2), *m = bx_tensor_zeros(BX_F32, 2, s3);
    CHECK_ERR(bx_prune_compute_mask(a, m, &o, NULL), BX_ERR_SHAPE, "scores (2,3) and mask (3,2)");
    bx_tensor *mi = bx_tensor_zeros(BX_I64, 2, s2);
    CHECK_ERR(bx_prune_compute_mask(a, mi, &o, NULL), BX_ERR_UNSUPPORTED, "i64");
    bx_tensor_free(a);
    bx_tensor_free(m);
    bx_tensor_free(mi);
    bx_module_free(lin);
}

int main(void) {
    test_amounts();
    test_topk_ties();
    test_iterative();
    test_structured();
    test_reparam();
    test_global();
    test_errors();
    return tu_finish("prune");
}
