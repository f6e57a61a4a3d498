/* ModelPruning tests: the spec's pins (32->32->2 MLP, weights of mlp_1 and
 * mlp_3, 1088 masked entries: l1 0.5 global / random 0.25 / l1 0.5 on
 * alternating epochs -> zeros 544, 680, 884; random 0.5 three times on 64
 * weights -> 32, 48, 56), the verbose report with the fixed denominator
 * (#21223), discovery order, the lottery-ticket reset that really resets the
 * survivors to theta_0 (#13643), permanent checkpoints loading strictly into
 * a plain model while training keeps its masks, resume with masks (both
 * checkpoint styles), validation-epoch-end pruning, construction errors. */
#include "cb_harness.h"

#include <blixt/checkpoint.h>
#include <blixt/pruning.h>

/* ---- a 32 -> 32 -> 2 MLP (Sequential: mlp_1, mlp_2 = ReLU, mlp_3) ---------------- */
typedef struct mlp_model {
    bx_module *seq;
    bool prepare_load; /* on_load_checkpoint calls bx_model_pruning_prepare_load */
} mlp_model;

static bx_module *mlp_module(void *self) { return ((mlp_model *)self)->seq; }
static bx_status mlp_opt(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    mlp_model *m = self;
    bx_sgd_opts o = BX_SGD_OPTS_INIT;
    o.lr = 0.1;
    bx_optimizer *opt = bx_sgd_new(&o);
    bx_named_tensors *np = bx_module_named_parameters(m->seq);
    bx_status s = bx_optimizer_add_group(opt, np->tensors, np->n, NULL);
    bx_named_tensors_free(np);
    return s ? s : bx_optim_config_add_optimizer(cfg, opt);
}
static bx_status mlp_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    mlp_model *m = self;
    bx_tensor *loss = bx_mse_loss(st, bx_module_forward(m->seq, st, b->x), b->y, BX_REDUCTION_MEAN);
    return bx_step_set_loss(st, loss);
}
static bx_status mlp_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)self, (void)st, (void)b, (void)i;
    return BX_OK;
}
static bx_status mlp_load(void *self, bx_trainer *tr, const bx_state *ck) {
    (void)tr;
    mlp_model *m = self;
    return m->prepare_load ? bx_model_pruning_prepare_load(m->seq, ck) : BX_OK;
}
static const bx_callback_ops MLP_HOOKS = {.name = "Mlp", .on_load_checkpoint = mlp_load};
static const bx_model_ops MLP_OPS = {.name = "Mlp", .module = mlp_module, .configure_optimizers = mlp_opt,
                                     .training_step = mlp_train, .validation_step = mlp_val, .hooks = &MLP_HOOKS};

static bx_module *mlp_new(uint64_t seed) {
    bx_rng r;
    bx_rng_init(&r, seed);
    bx_module *s = bx_nn_sequential();
    bx_module_add_child(s, "mlp_1", bx_nn_linear(32, 32, true, &r));
    bx_module_add_child(s, "mlp_2", bx_nn_relu());
    bx_module_add_child(s, "mlp_3", bx_nn_linear(32, 2, true, &r));
    return s;
}

static bx_dataset *mlp_ds(int n) {
    int64_t xs[2] = {n, 32}, ys[2] = {n, 2};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, ys);
    for (int i = 0; i < n * 32; i++) bx_set(x, i, ((i * 7919) % 101) / 50.0 - 1.0);
    for (int i = 0; i < n * 2; i++) bx_set(y, i, ((i * 31) % 7) / 3.5 - 1.0);
    return bx_dataset_from_tensors(x, y, true);
}

static bx_status mlp_fit(mlp_model *m, bx_trainer_opts *o, const char *ckpt, bx_trainer **out) {
    bx_trainer *tr = bx_trainer_new(o);
    if (!tr) return BX_ERR_INVALID;
    bx_dataset *dtr = mlp_ds(8), *dva = mlp_ds(4);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 4;
    bx_loader *ltr = bx_loader_new(dtr, &lo), *lva = bx_loader_new(dva, &lo);
    bx_model model = {&MLP_OPS, m};
    bx_status s = bx_trainer_fit(tr, &model, ltr, lva, ckpt);
    if (out) *out = tr;
    else bx_trainer_free(tr);
    bx_loader_free(ltr), bx_loader_free(lva);
    bx_dataset_free(dtr), bx_dataset_free(dva);
    return s;
}

/* ---- a probe callback: mask zeros of the targets at every train-epoch end ---- */
typedef struct probe {
    int64_t zeros[8][2]; /* per epoch: mlp_1.weight, mlp_3.weight */
    int n;
    int64_t start_zeros; /* at on_train_start (after a restore) */
} probe;
static int64_t zeros_of(bx_trainer *tr, const char *mod, const char *name) {
    int64_t z = 0, n = 0;
    bx_prune_mask_zeros(bx_module_find(bx_trainer_module(tr), mod), name, &z, &n);
    return z;
}
static bx_status probe_end(void *self, bx_trainer *tr) {
    probe *p = self;
    if (p->n < 8) {
        p->zeros[p->n][0] = zeros_of(tr, "mlp_1", "weight");
        p->zeros[p->n][1] = zeros_of(tr, "mlp_3", "weight");
        p->n++;
    }
    return BX_OK;
}
static bx_status probe_start(void *self, bx_trainer *tr) {
    probe *p = self;
    p->start_zeros = zeros_of(tr, "mlp_1", "weight") + zeros_of(tr, "mlp_3", "weight");
    return BX_OK;
}
static const bx_callback_ops PROBE_OPS = {.name = "Probe", .on_train_start = probe_start,
                                          .on_train_epoch_end = probe_end};

/* ---- captured log lines --------------------------------------------------------- */
typedef struct logcap {
    char lines[16][256];
    int n;
} logcap;
static void cap_log(void *ud, bx_log_level lv, const char *msg) {
    logcap *c = ud;
    if (lv == BX_LOG_INFO && c->n < 16 && strstr(msg, "Applied")) snprintf(c->lines[c->n++], 256, "%s", msg);
}

static const bx_pruning_param TARGETS[] = {{"mlp_1", "weight"}, {"mlp_3", "weight"}};

static bool even_epoch(void *ud, int64_t e) { (void)ud; return e % 2 == 0; }
static bool odd_epoch(void *ud, int64_t e) { (void)ud; return e % 2 == 1; }

static bx_model_pruning_opts weight_opts(const char *fn, double amount) {
    bx_model_pruning_opts o = BX_MODEL_PRUNING_OPTS_INIT;
    o.pruning_fn = fn;
    o.amount = BX_PRUNE_FRACTION(amount);
    o.parameters_to_prune = TARGETS;
    o.num_parameters_to_prune = 2;
    return o;
}

/* l1 0.5 (even epochs) + random 0.25 (odd epochs), global: 0 -> 544 -> 680 -> 884 of 1088. */
static void test_pins_alternating(void) {
    mlp_model m = {mlp_new(1), false};
    bx_model_pruning_opts a = weight_opts("l1_unstructured", 0.5), b = weight_opts("random_unstructured", 0.25);
    a.apply_pruning_fn = even_epoch, b.apply_pruning_fn = odd_epoch;
    a.verbose = 2, b.verbose = 1;
    a.make_pruning_permanent = b.make_pruning_permanent = false;
    probe pr = {0};
    bx_callback *cbs[3] = {bx_model_pruning_new(&a), bx_model_pruning_new(&b), bx_callback_new(&PROBE_OPS, &pr)};
    CHECK(cbs[0] && cbs[1] && cbs[2]);
    bx_trainer_opts o = ch_opts(3, cbs, 3, NULL);
    logcap lc = {0};
    bx_set_log_handler(cap_log, &lc);
    bx_trainer *tr = NULL;
    CHECK_OK(mlp_fit(&m, &o, NULL, &tr));
    bx_set_log_handler(NULL, NULL);
    CHECK_EQ_INT(pr.n, 3);
    CHECK_EQ_INT(pr.zeros[0][0] + pr.zeros[0][1], 544);
    CHECK_EQ_INT(pr.zeros[1][0] + pr.zeros[1][1], 680);
    CHECK_EQ_INT(pr.zeros[2][0] + pr.zeros[2][1], 884);
    /* the report's denominator is the masked total (#21223), class name in global mode */
    CHECK(lc.n == 1 + 2 + 1 + 1 + 2);
    CHECK(!strcmp(lc.lines[0], "Applied `L1Unstructured`. Pruned: 0/1088 (0.00%) -> 544/1088 (50.00%)"));
    CHECK(strstr(lc.lines[1], "Applied `L1Unstructured` to `Linear(in_features=32, out_features=32, bias=True).weight` "
                              "with amount=0.5. Pruned: 0 (0.00%) -> ") == lc.lines[1]);
    CHECK(!strcmp(lc.lines[3], "Applied `RandomUnstructured`. Pruned: 544/1088 (50.00%) -> 680/1088 (62.50%)"));
    CHECK(!strcmp(lc.lines[4], "Applied `L1Unstructured`. Pruned: 680/1088 (62.50%) -> 884/1088 (81.25%)"));
    /* not permanent: the masks stay */
    CHECK(bx_prune_is_pruned(bx_module_find(m.seq, "mlp_1"), "weight"));
    CHECK(!bx_prune_is_pruned(bx_module_find(m.seq, "mlp_1"), "bias"));
    bx_trainer_free(tr);
    bx_module_free(m.seq);
}

/* random 0.5 three times on mlp_3.weight (64 entries), local: 32, 48, 56. */
static void test_pins_random_local(void) {
    mlp_model m = {mlp_new(2), false};
    static const bx_pruning_param t3[] = {{"mlp_3", "weight"}};
    bx_model_pruning_opts a = weight_opts("random_unstructured", 0.5);
    a.parameters_to_prune = t3, a.num_parameters_to_prune = 1;
    a.use_global_unstructured = false;
    a.make_pruning_permanent = false;
    probe pr = {0};
    bx_callback *cbs[2] = {bx_model_pruning_new(&a), bx_callback_new(&PROBE_OPS, &pr)};
    bx_trainer_opts o = ch_opts(3, cbs, 2, NULL);
    CHECK_OK(mlp_fit(&m, &o, NULL, NULL));
    CHECK_EQ_INT(pr.n, 3);
    CHECK_EQ_INT(pr.zeros[0][1], 32);
    CHECK_EQ_INT(pr.zeros[1][1], 48);
    CHECK_EQ_INT(pr.zeros[2][1], 56);
    CHECK_EQ_INT(pr.zeros[2][0], 0);
    bx_module_free(m.seq);
}

/* Discovery: names outer loop, modules inner; containers skipped. */
static void test_discovery_order(void) {
    mlp_model m = {mlp_new(3), false};
    bx_model_pruning_opts a = BX_MODEL_PRUNING_OPTS_INIT;
    a.pruning_fn = "L1_UNSTRUCTURED"; /* case-insensitive */
    a.use_lottery_ticket_hypothesis = false;
    bx_callback *cb = bx_model_pruning_new(&a);
    CHECK(cb != NULL);
    bx_trainer_opts o = ch_opts(1, &cb, 1, NULL);
    bx_trainer *tr = NULL;
    CHECK_OK(mlp_fit(&m, &o, NULL, &tr));
    bx_callback *c = ch_find(tr, "ModelPruning", 0);
    CHECK_EQ_INT(bx_model_pruning_num_targets(c), 4);
    const char *want[4][2] = {{"mlp_1", "weight"}, {"mlp_3", "weight"}, {"mlp_1", "bias"}, {"mlp_3", "bias"}};
    for (int i = 0; i < 4 && i < bx_model_pruning_num_targets(c); i++) {
        CHECK(!strcmp(bx_model_pruning_target_module(c, i), want[i][0]));
        CHECK(!strcmp(bx_model_pruning_target_name(c, i), want[i][1]));
    }
    /* permanent at train end: plain parameters, half of the 1122 entries zero */
    CHECK(!bx_prune_tree_is_pruned(m.seq));
    bx_named_tensors *np = bx_module_named_parameters(m.seq);
    int64_t z = 0, n = 0;
    for (int i = 0; i < np->n; i++) {
        for (int64_t k = 0; k < bx_numel(np->tensors[i]); k++) z += bx_get(np->tensors[i], k) == 0.0;
        n += bx_numel(np->tensors[i]);
    }
    bx_named_tensors_free(np);
    CHECK_EQ_INT(n, 1122);
    CHECK_EQ_INT(z, 561);
    bx_trainer_free(tr);
    bx_module_free(m.seq);
}

/* LTH: after pruning, the surviving weights are theta_0 (weights at fit
 * start), the pruned ones are zero. 1.x left the trained values (#13643). */
static void test_lottery_ticket(void) {
    mlp_model m = {mlp_new(4), false};
    bx_module *theta0 = bx_module_clone(m.seq);
    bx_model_pruning_opts a = weight_opts("l1_unstructured", 0.5);
    a.use_lottery_ticket_hypothesis = true;
    a.make_pruning_permanent = false;
    bx_callback *cb = bx_model_pruning_new(&a);
    bx_trainer_opts o = ch_opts(2, &cb, 1, NULL);
    CHECK_OK(mlp_fit(&m, &o, NULL, NULL));
    const char *mods[2] = {"mlp_1", "mlp_3"};
    int64_t bad = 0, survivors = 0, changed_bias = 0;
    for (int j = 0; j < 2; j++) {
        bx_module *lm = bx_module_find(m.seq, mods[j]);
        bx_tensor *orig = bx_prune_param(lm, "weight"), *mask = bx_prune_mask(lm, "weight");
        bx_tensor *eff = bx_prune_effective(lm, "weight");
        bx_tensor *t0 = bx_module_param(bx_module_find(theta0, mods[j]), "weight");
        CHECK(orig && mask && eff && t0);
        for (int64_t k = 0; orig && mask && eff && k < bx_numel(orig); k++) {
            if (bx_get(mask, k) != 0) {
                survivors++;
                bad += bx_get(orig, k) != bx_get(t0, k) || bx_get(eff, k) != bx_get(t0, k);
            } else {
                bad += bx_get(eff, k) != 0.0;
            }
        }
        bx_tensor_free(eff);
        /* biases are not targets: they keep training */
        bx_tensor *b = bx_module_param(lm, "bias"), *b0 = bx_module_param(bx_module_find(theta0, mods[j]), "bias");
        for (int64_t k = 0; k < bx_numel(b); k++) changed_bias += bx_get(b, k) != bx_get(b0, k);
    }
    CHECK_EQ_INT(survivors, 1088 - 816);
    CHECK_EQ_INT(bad, 0);
    CHECK(changed_bias > 0);
    bx_module_free(theta0);
    bx_module_free(m.seq);
}

/* resample_parameters: the survivors get freshly initialised values (not
 * theta_0), drawn again at every reset; pruned entries stay 0. */
static bool first_epoch_only(void *ud, int64_t e) { (void)ud; return e == 0; }
static void test_lottery_ticket_resample(void) {
    mlp_model m = {mlp_new(12), false};
    bx_module *theta0 = bx_module_clone(m.seq);
    bx_model_pruning_opts a = weight_opts("l1_unstructured", 0.5);
    a.lottery_ticket_fn = first_epoch_only; /* reset after epoch 0 only */
    a.resample_parameters = true;
    a.make_pruning_permanent = false;
    a.apply_pruning_fn = first_epoch_only;
    a.seed = 42;
    bx_callback *cb = bx_model_pruning_new(&a);
    bx_trainer_opts o = ch_opts(1, &cb, 1, NULL);
    CHECK_OK(mlp_fit(&m, &o, NULL, NULL));
    bx_module *lm = bx_module_find(m.seq, "mlp_1");
    bx_tensor *orig = bx_prune_param(lm, "weight"), *mask = bx_prune_mask(lm, "weight");
    bx_tensor *eff = bx_prune_effective(lm, "weight");
    bx_tensor *t0 = bx_module_param(bx_module_find(theta0, "mlp_1"), "weight");
    int64_t same = 0, surv = 0, nonzero_pruned = 0;
    double bound = 1.0 / sqrt(32.0) + 1e-6; /* kaiming-uniform bound of Linear(32, .) */
    int64_t out_of_bound = 0;
    for (int64_t k = 0; orig && mask && eff && k < bx_numel(orig); k++) {
        if (bx_get(mask, k) != 0) {
            surv++;
            same += bx_get(orig, k) == bx_get(t0, k);
            out_of_bound += fabs(bx_get(orig, k)) > bound;
        } else {
            nonzero_pruned += bx_get(eff, k) != 0.0;
        }
    }
    CHECK(orig && mask && eff);
    CHECK(surv > 0);
    CHECK_EQ_INT(same, 0);
    CHECK_EQ_INT(out_of_bound, 0);
    CHECK_EQ_INT(nonzero_pruned, 0);
    bx_tensor_free(eff);
    bx_module_free(theta0);
    bx_module_free(m.seq);
}

/* make_pruning_permanent: the epoch checkpoints hold plain weights (= the
 * masked values) that load strictly into a plain model; training kept masks
 * until train end. Then resume from that checkpoint: masks restored. */
static void test_permanent_checkpoint_and_resume(void) {
    const char *dir = "mp_test_perm";
    ch_rmtree(dir);
    mlp_model m = {mlp_new(5), false};
    bx_model_pruning_opts a = weight_opts("l1_unstructured", 0.5);
    a.use_lottery_ticket_hypothesis = false;
    probe pr = {0};
    bx_model_checkpoint_opts co = BX_MODEL_CHECKPOINT_OPTS_INIT;
    co.dirpath = dir;
    co.filename = "{epoch}";
    co.save_top_k = -1;
    bx_callback *cbs[3] = {bx_model_pruning_new(&a), bx_callback_new(&PROBE_OPS, &pr), bx_model_checkpoint_new(&co)};
    bx_trainer_opts o = ch_opts(1, cbs, 3, NULL);
    o.enable_checkpointing = true;
    CHECK_OK(mlp_fit(&m, &o, NULL, NULL));
    CHECK_EQ_INT(pr.zeros[0][0] + pr.zeros[0][1], 544); /* masks during training */
    CHECK(!bx_prune_tree_is_pruned(m.seq));            /* permanent at train end */
    char path[256];
    snprintf(path, sizeof path, "%s/epoch=0.ckpt", dir);
    bx_state *ck = NULL;
    CHECK_OK(bx_checkpoint_read(path, &ck));
    if (ck) {
        const bx_state *sd = bx_state_get(ck, "state_dict");
        CHECK(sd && bx_state_get(sd, "mlp_1.weight") && !bx_state_get(sd, "mlp_1.weight_orig") &&
              !bx_state_get(sd, "mlp_1.weight_mask"));
        bx_named_tensors *nt = bx_named_tensors_new(false);
        for (size_t i = 0; sd && i < bx_state_len(sd); i++)
            bx_named_tensors_add(nt, bx_state_key_at(sd, i), (bx_tensor *)bx_state_get_tensor(bx_state_value_at(sd, i)));
        bx_module *plain = mlp_new(99);
        CHECK_OK(bx_module_load_state_dict(plain, nt, true));
        /* the loaded values are the permanent model's */
        bx_tensor *w = bx_module_param(bx_module_find(plain, "mlp_1"), "weight");
        bx_tensor *wm = bx_module_param(bx_module_find(m.seq, "mlp_1"), "weight");
        int64_t diff = 0;
        for (int64_t k = 0; k < bx_numel(w); k++) diff += bx_get(w, k) != bx_get(wm, k);
        CHECK_EQ_INT(diff, 0);
        bx_named_tensors_free(nt);
        bx_module_free(plain);
        bx_state_free(ck);
    }
    /* resume into a fresh model: masks come back, pruning continues 544 -> 816 */
    mlp_model m2 = {mlp_new(6), false};
    probe pr2 = {0};
    bx_callback *cbs2[2] = {bx_model_pruning_new(&a), bx_callback_new(&PROBE_OPS, &pr2)};
    bx_trainer_opts o2 = ch_opts(2, cbs2, 2, NULL);
    CHECK_OK(mlp_fit(&m2, &o2, path, NULL));
    CHECK_EQ_INT(pr2.start_zeros, 544);
    CHECK_EQ_INT(pr2.n, 1);
    CHECK_EQ_INT(pr2.zeros[0][0] + pr2.zeros[0][1], 816);
    bx_module_free(m.seq);
    bx_module_free(m2.seq);
    ch_rmtree(dir);
}

/* Without make_pruning_permanent the checkpoint holds weight_orig/weight_mask;
 * the model's on_load_checkpoint calls bx_model_pruning_prepare_load. */
static void test_resume_masks_state_dict(void) {
    const char *dir = "mp_test_masks";
    ch_rmtree(dir);
    mlp_model m = {mlp_new(7), false};
    bx_model_pruning_opts a = weight_opts("l1_unstructured", 0.5);
    a.use_lottery_ticket_hypothesis = false;
    a.make_pruning_permanent = false;
    bx_model_checkpoint_opts co = BX_MODEL_CHECKPOINT_OPTS_INIT;
    co.dirpath = dir;
    co.filename = "last_ep";
    co.auto_insert_metric_name = false;
    bx_callback *cbs[2] = {bx_model_pruning_new(&a), bx_model_checkpoint_new(&co)};
    bx_trainer_opts o = ch_opts(1, cbs, 2, NULL);
    o.enable_checkpointing = true;
    CHECK_OK(mlp_fit(&m, &o, NULL, NULL));
    char path[256];
    snprintf(path, sizeof path, "%s/last_ep.ckpt", dir);
    /* without preparation the strict load refuses the pruned keys */
    mlp_model m2 = {mlp_new(8), false};
    bx_callback *c2 = bx_model_pruning_new(&a);
    bx_trainer_opts o2 = ch_opts(2, &c2, 1, NULL);
    CHECK(mlp_fit(&m2, &o2, path, NULL) != BX_OK);
    bx_module_free(m2.seq);
    mlp_model m3 = {mlp_new(9), true};
    probe pr = {0};
    bx_callback *cbs3[2] = {bx_model_pruning_new(&a), bx_callback_new(&PROBE_OPS, &pr)};
    bx_trainer_opts o3 = ch_opts(2, cbs3, 2, NULL);
    CHECK_OK(mlp_fit(&m3, &o3, path, NULL));
    CHECK_EQ_INT(pr.start_zeros, 544);
    CHECK_EQ_INT(pr.zeros[0][0] + pr.zeros[0][1], 816);
    /* the restored masks are the saved ones */
    bx_tensor *m1 = bx_prune_mask(bx_module_find(m.seq, "mlp_1"), "weight");
    bx_tensor *m3m = bx_prune_mask(bx_module_find(m3.seq, "mlp_1"), "weight");
    int64_t lost = 0;
    for (int64_t k = 0; m1 && m3m && k < bx_numel(m1); k++) lost += bx_get(m1, k) == 0 && bx_get(m3m, k) != 0;
    CHECK(m1 && m3m);
    CHECK_EQ_INT(lost, 0);
    bx_module_free(m.seq);
    bx_module_free(m3.seq);
    ch_rmtree(dir);
}

/* amount as a function of the epoch (count), structured local pruning at
 * validation-epoch end. */
static bx_prune_amount amount_by_epoch(void *ud, int64_t e) {
    (void)ud;
    return e == 0 ? BX_PRUNE_COUNT(0) : BX_PRUNE_COUNT(4);
}
static void test_amount_fn_structured_val_end(void) {
    mlp_model m = {mlp_new(10), false};
    static const bx_pruning_param t1[] = {{"mlp_1", "weight"}};
    bx_model_pruning_opts a = BX_MODEL_PRUNING_OPTS_INIT;
    a.pruning_fn = "ln_structured";
    a.pruning_norm = 2;
    a.pruning_dim = 0;
    a.use_global_unstructured = false;
    a.use_lottery_ticket_hypothesis = false;
    a.make_pruning_permanent = false;
    a.amount_fn = amount_by_epoch;
    a.parameters_to_prune = t1, a.num_parameters_to_prune = 1;
    a.prune_on_train_epoch_end = false;
    probe pr = {0};
    bx_callback *cbs[2] = {bx_model_pruning_new(&a), bx_callback_new(&PROBE_OPS, &pr)};
    bx_trainer_opts o = ch_opts(3, cbs, 2, NULL);
    o.num_sanity_val_steps = 2; /* the sanity check must not prune */
    CHECK_OK(mlp_fit(&m, &o, NULL, NULL));
    /* validation runs inside the epoch, before its train-epoch end (1.9.5
     * order): epoch 0 amount 0; epochs 1 and 2 prune 4 rows of 32 each */
    CHECK_EQ_INT(pr.n, 3);
    CHECK_EQ_INT(pr.zeros[0][0], 0);
    CHECK_EQ_INT(pr.zeros[1][0], 4 * 32);
    CHECK_EQ_INT(pr.zeros[2][0], 8 * 32);
    /* whole rows */
    bx_tensor *mk = bx_prune_mask(bx_module_find(m.seq, "mlp_1"), "weight");
    int64_t mixed = 0;
    for (int64_t r = 0; mk && r < 32; r++)
        for (int64_t c = 1; c < 32; c++) mixed += bx_get(mk, r * 32 + c) != bx_get(mk, r * 32);
    CHECK(mk != NULL);
    CHECK_EQ_INT(mixed, 0);
    bx_module_free(m.seq);
}

static void test_errors(void) {
    bx_model_pruning_opts o = BX_MODEL_PRUNING_OPTS_INIT;
    CHECK(bx_model_pruning_new(&o) == NULL); /* no pruning_fn */
    o.pruning_fn = "l2_unstructured";
    CHECK(bx_model_pruning_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "l2_unstructured") != NULL);
    o.pruning_fn = "ln_structured";
    CHECK(bx_model_pruning_new(&o) == NULL); /* global + structured */
    CHECK(strstr(bx_errmsg(), "unstructured") != NULL);
    o.use_global_unstructured = false;
    CHECK(bx_model_pruning_new(&o) == NULL); /* no pruning_dim */
    CHECK(strstr(bx_errmsg(), "pruning_dim") != NULL);
    o.pruning_dim = 0;
    CHECK(bx_model_pruning_new(&o) == NULL); /* no pruning_norm */
    CHECK(strstr(bx_errmsg(), "pruning_norm") != NULL);
    o.pruning_norm = 1;
    bx_callback *cb = bx_model_pruning_new(&o);
    CHECK(cb != NULL);
    bx_callback_free(cb);
    o.pruning_fn = "random_structured";
    o.pruning_dim = BX_PRUNING_DIM_NONE;
    CHECK(bx_model_pruning_new(&o) == NULL);
    o = (bx_model_pruning_opts)BX_MODEL_PRUNING_OPTS_INIT;
    o.pruning_fn = "l1_unstructured";
    o.amount = BX_PRUNE_FRACTION(1.5);
    CHECK(bx_model_pruning_new(&o) == NULL);
    o.amount = BX_PRUNE_COUNT(-1);
    CHECK(bx_model_pruning_new(&o) == NULL);
    o.amount = BX_PRUNE_FRACTION(0.5);
    o.verbose = 3;
    CHECK(bx_model_pruning_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "verbose") != NULL);
    o.verbose = 0;
    const char *names[] = {"weight", "running_mean"};
    o.parameter_names = names, o.num_parameter_names = 2;
    CHECK(bx_model_pruning_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "running_mean") != NULL);
    /* a listed module that is not in the model fails the run at fit start */
    o.parameter_names = NULL, o.num_parameter_names = 0;
    static const bx_pruning_param bad[] = {{"mlp_9", "weight"}};
    o.parameters_to_prune = bad, o.num_parameters_to_prune = 1;
    mlp_model m = {mlp_new(11), false};
    cb = bx_model_pruning_new(&o);
    CHECK(cb != NULL);
    bx_trainer_opts to = ch_opts(1, &cb, 1, NULL);
    CHECK(mlp_fit(&m, &to, NULL, NULL) == BX_ERR_NOT_FOUND);
    CHECK(strstr(bx_errmsg(), "mlp_9") != NULL);
    bx_module_free(m.seq);
}

int main(void) {
    test_pins_alternating();
    test_pins_random_local();
    test_discovery_order();
    test_lottery_ticket();
    test_lottery_ticket_resample();
    test_permanent_checkpoint_and_resume();
    test_resume_masks_state_dict();
    test_amount_fn_structured_val_end();
    test_errors();
    return tu_finish("test_model_pruning");
}
