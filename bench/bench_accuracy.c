/* bench_accuracy.c - Blixt's side of bench/train_compare.py: trains the MLP or
 * the CNN on Fashion-MNIST through the Trainer (bx_trainer_fit with its CSV
 * logger, default ModelCheckpoint and progress bar, as `blixt fit` runs) and
 * tests it (bx_trainer_test), printing one JSON line with the test accuracy
 * and the wall time of each training epoch.
 *
 *   blixt-bench-accuracy --model mlp|cnn [--epochs N] [--threads N] [--lr X]
 *       [--momentum X] [--batch N] [--shuffle-seed N] [--init FILE.safetensors]
 *       [--data DIR] [--dump-order FILE]
 *
 * The networks are nn.Sequential-shaped (children "0", "1", ...), so a
 * PyTorch state_dict written as safetensors (--init) loads by name
 * (strict): both sides start from the same weights. --dump-order writes the
 * training order the Trainer's shuffled loader will use (epochs x N int32,
 * little-endian, no header) and exits, so PyTorch can follow the same order;
 * the run checks the first batch of every epoch against it. Every training
 * step's loss is printed too (the trajectories are compared step by step).
 *
 * Epoch time is on_train_epoch_start -> on_train_epoch_end of a callback
 * placed first (training batches only: there is no validation loader; the
 * checkpoint written at epoch end is not included). */
#include "blixt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_EPOCHS 64

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "blixt-bench-accuracy: %s: %s\n", what, bx_errmsg());
    exit(1);
}

typedef struct acc_model {
    bx_module *net;
    double lr, momentum;
    int64_t correct, seen; /* test_step counts */
    float *losses; /* every training step's loss */
    int nloss, cap;
} acc_model;

static bx_module *m_module(void *self) { return ((acc_model *)self)->net; }

static bx_status m_configure(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    acc_model *m = self;
    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = m->lr;
    so.momentum = m->momentum;
    bx_optimizer *opt = bx_sgd_new(&so);
    bx_named_tensors *ps = bx_module_named_parameters(m->net);
    bx_status s = opt && ps ? bx_optimizer_add_group(opt, ps->tensors, (int)ps->n, NULL) : BX_ERR_NOMEM;
    bx_named_tensors_free(ps);
    if (s != BX_OK) {
        bx_optimizer_free(opt);
        return s;
    }
    return bx_optim_config_add_optimizer(cfg, opt);
}

static bx_status m_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    acc_model *m = self;
    bx_tensor *loss = bx_cross_entropy(st, bx_module_forward(m->net, st, b->x), b->y, NULL);
    bx_status s = bx_log_metric(st, "train_loss", loss, BX_LOG_PROG_BAR);
    if (s == BX_OK && m->nloss < m->cap) m->losses[m->nloss++] = (float)bx_get(loss, 0);
    return s != BX_OK ? s : bx_step_set_loss(st, loss);
}

static bx_status m_test(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    acc_model *m = self;
    bx_tensor *logits = bx_module_forward(m->net, st, b->x);
    bx_status s = bx_step_status(st);
    if (s != BX_OK) return s;
    int64_t n = logits->shape[0], k = logits->shape[1];
    const float *p = logits->data;
    for (int64_t r = 0; r < n; r++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++)
            if (p[r * k + j] > p[r * k + best]) best = j;
        m->correct += best == (int64_t)bx_get(b->y, r);
    }
    m->seen += n;
    return bx_trainer_log(bx_step_trainer(st), "test_acc", (double)m->correct / (double)m->seen, BX_LOG_PROG_BAR);
}

static const bx_model_ops OPS = {.name = "AccuracyBench",
                                 .module = m_module,
                                 .configure_optimizers = m_configure,
                                 .training_step = m_train,
                                 .test_step = m_test};

/* ---- epoch timer + order check ---------------------------------------------------- */
typedef struct timer {
    double t0, epoch_ms[MAX_EPOCHS];
    int n;
    const int32_t *order; /* expected order, epochs x N; NULL = not checked */
    int64_t N;
    const bx_tensor *labels;
    int64_t order_mismatch;
} timer;

static bx_status t_epoch_start(void *self, bx_trainer *tr) {
    ((timer *)self)->t0 = now_ms();
    return BX_OK;
}
static bx_status t_epoch_end(void *self, bx_trainer *tr) {
    timer *t = self;
    if (t->n < MAX_EPOCHS) t->epoch_ms[t->n++] = now_ms() - t->t0;
    return BX_OK;
}
static bx_status t_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    timer *t = self;
    if (i != 0 || !t->order) return BX_OK;
    const int32_t *o = t->order + bx_trainer_current_epoch(tr) * t->N;
    for (int64_t k = 0; k < b->size; k++)
        if (bx_get(b->y, k) != bx_get(t->labels, o[k])) t->order_mismatch++;
    return BX_OK;
}
static const bx_callback_ops TIMER_OPS = {.name = "EpochTimer",
                                          .on_train_epoch_start = t_epoch_start,
                                          .on_train_epoch_end = t_epoch_end,
                                          .on_train_batch_start = t_batch_start};

/* ---- the networks (PyTorch nn.Sequential layouts of torch_bench.py) -------------- */
static bx_module *build_net(const char *model, bx_rng *rng) {
    bx_module *n = bx_nn_sequential();
    if (!n) return NULL;
    bx_status s = BX_OK;
    if (!strcmp(model, "mlp")) {
        s |= bx_sequential_append(n, bx_nn_linear(784, 256, true, rng));
        s |= bx_sequential_append(n, bx_nn_relu());
        s |= bx_sequential_append(n, bx_nn_linear(256, 128, true, rng));
        s |= bx_sequential_append(n, bx_nn_relu());
        s |= bx_sequential_append(n, bx_nn_linear(128, 10, true, rng));
    } else {
        bx_conv2d_opts pad1 = BX_CONV2D_OPTS_INIT;
        pad1.padding[0] = pad1.padding[1] = 1;
        s |= bx_sequential_append(n, bx_nn_conv2d(1, 32, 3, 3, &pad1, true, rng));
        s |= bx_sequential_append(n, bx_nn_relu());
        s |= bx_sequential_append(n, bx_nn_max_pool2d(NULL));
        s |= bx_sequential_append(n, bx_nn_conv2d(32, 64, 3, 3, &pad1, true, rng));
        s |= bx_sequential_append(n, bx_nn_relu());
        s |= bx_sequential_append(n, bx_nn_max_pool2d(NULL));
        s |= bx_sequential_append(n, bx_nn_flatten(1, -1));
        s |= bx_sequential_append(n, bx_nn_linear(64 * 7 * 7, 128, true, rng));
        s |= bx_sequential_append(n, bx_nn_relu());
        s |= bx_sequential_append(n, bx_nn_linear(128, 10, true, rng));
    }
    if (s != BX_OK) {
        bx_module_free(n);
        return NULL;
    }
    return n;
}

static const bx_tensor *st_lookup(void *ud, const char *name) { return bx_st_get(ud, name); }

static bx_dataset *load(const char *dir, const char *split, bool flatten) {
    char ip[1024], lp[1024];
    snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    if (access(ip, R_OK) != 0) {
        snprintf(ip, sizeof ip, "%s/%s-images-idx3-ubyte", dir, split);
        snprintf(lp, sizeof lp, "%s/%s-labels-idx1-ubyte", dir, split);
    }
    bx_dataset *ds = NULL;
    if (bx_dataset_from_idx(ip, lp, flatten, &ds) != BX_OK) die(ip);
    return ds;
}

/* The loader's order for epochs 0..E-1: a loader over the row indices. */
static int32_t *loader_order(int64_t N, const bx_loader_opts *lo, int epochs) {
    bx_tensor *idx = bx_tensor_new(BX_I64, 1, &N);
    if (!idx) die("order");
    for (int64_t i = 0; i < N; i++) ((int64_t *)idx->data)[i] = i;
    bx_dataset *ds = bx_dataset_from_tensors(idx, NULL, true);
    bx_loader *l = ds ? bx_loader_new(ds, lo) : NULL;
    int32_t *out = malloc(sizeof(int32_t) * (size_t)(N * epochs));
    bx_step *st = bx_step_new();
    if (!l || !out || !st) die("order");
    for (int e = 0; e < epochs; e++) {
        bx_loader_set_epoch(l, e);
        int64_t k = 0;
        for (int64_t i = 0; i < bx_loader_len(l); i++) {
            bx_batch b;
            if (bx_loader_batch(l, st, i, &b) != BX_OK) die("order");
            for (int64_t j = 0; j < b.size; j++) out[e * N + k++] = (int32_t)bx_get(b.x, j);
            bx_step_reset(st);
        }
    }
    bx_step_free(st);
    bx_loader_free(l);
    bx_dataset_free(ds);
    return out;
}

int main(int argc, char **argv) {
    const char *model = "mlp", *init = NULL, *dir = "/usr/share/datasets/fashion-mnist", *dump = NULL;
    int epochs = 5, threads = 1;
    double lr = 0.01, momentum = 0.9;
    int64_t batch = 128;
    uint64_t shuffle_seed = 1234;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) goto usage;
        i++;
        if (!strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--epochs")) epochs = atoi(v);
        else if (!strcmp(a, "--threads")) threads = atoi(v);
        else if (!strcmp(a, "--lr")) lr = atof(v);
        else if (!strcmp(a, "--momentum")) momentum = atof(v);
        else if (!strcmp(a, "--batch")) batch = atoll(v);
        else if (!strcmp(a, "--shuffle-seed")) shuffle_seed = strtoull(v, NULL, 10);
        else if (!strcmp(a, "--init")) init = v;
        else if (!strcmp(a, "--data")) dir = v;
        else if (!strcmp(a, "--dump-order")) dump = v;
        else goto usage;
    }
    if ((strcmp(model, "mlp") && strcmp(model, "cnn")) || epochs < 1 || epochs > MAX_EPOCHS || batch < 1) goto usage;
    bx_set_num_threads(threads);
    bool flat = !strcmp(model, "mlp");
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = batch;
    lo.shuffle = true;
    lo.seed = shuffle_seed;

    double t0 = now_ms();
    bx_dataset *train = load(dir, "train", flat), *test = load(dir, "t10k", flat);
    double load_ms = now_ms() - t0;
    int64_t N = bx_dataset_len(train);
    int32_t *order = loader_order(N, &lo, epochs);
    if (dump) {
        FILE *f = fopen(dump, "wb");
        if (!f || fwrite(order, sizeof *order, (size_t)(N * epochs), f) != (size_t)(N * epochs) || fclose(f) != 0) {
            fprintf(stderr, "blixt-bench-accuracy: cannot write %s\n", dump);
            return 1;
        }
        free(order);
        bx_dataset_free(train);
        bx_dataset_free(test);
        return 0;
    }

    bx_rng rng;
    bx_rng_init(&rng, 42);
    bx_module *net = build_net(model, &rng);
    if (!net) die("model");
    if (init) {
        bx_st_file *f = NULL;
        if (bx_st_open(init, &f) != BX_OK) die(init);
        if (bx_module_load_state_dict_lookup(net, st_lookup, f, true) != BX_OK) die(init);
        bx_st_close(f);
    }
    bx_loader *tl = bx_loader_new(train, &lo);
    bx_loader_opts to = BX_LOADER_OPTS_INIT;
    to.batch_size = 1000;
    bx_loader *el = bx_loader_new(test, &to);
    if (!tl || !el) die("loader");

    char root[] = "/tmp/blixt-bench-acc-XXXXXX";
    if (!mkdtemp(root)) die("mkdtemp");
    acc_model m = {net, lr, momentum, 0, 0, NULL, 0, (int)(bx_loader_len(tl) * epochs)};
    m.losses = malloc(sizeof(float) * (size_t)m.cap);
    if (!m.losses) die("losses");
    timer tm = {0};
    tm.order = order;
    tm.N = N;
    tm.labels = bx_dataset_y(train);
    bx_callback *cbs[1] = {bx_callback_new(&TIMER_OPS, &tm)};
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = epochs;
    o.default_root_dir = root;
    o.enable_model_summary = false;
    o.num_sanity_val_steps = 0;
    o.callbacks = cbs;
    o.num_callbacks = 1;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) die("trainer");
    bx_model bm = {&OPS, &m};
    double f0 = now_ms();
    if (bx_trainer_fit(tr, &bm, tl, NULL, NULL) != BX_OK) die("fit");
    double fit_ms = now_ms() - f0;
    double train_loss = NAN;
    bx_trainer_metric(tr, "train_loss", &train_loss);
    f0 = now_ms();
    if (bx_trainer_test(tr, &bm, el, NULL) != BX_OK) die("test");
    double test_ms = now_ms() - f0;

    printf("{\"impl\": \"blixt\", \"model\": \"%s\", \"threads\": %d, \"epochs\": %d, \"test_acc\": %.6f, "
           "\"test_correct\": %lld, \"test_n\": %lld, \"train_loss_last\": %.6f, \"epoch_ms\": [",
           model, threads, epochs, (double)m.correct / (double)m.seen, (long long)m.correct, (long long)m.seen,
           train_loss);
    for (int i = 0; i < tm.n; i++) printf("%s%.1f", i ? ", " : "", tm.epoch_ms[i]);
    printf("], \"losses\": [");
    for (int i = 0; i < m.nloss; i++) printf("%s%.8g", i ? ", " : "", m.losses[i]);
    printf("], \"fit_ms\": %.1f, \"test_ms\": %.1f, \"load_ms\": %.1f, \"same_init\": %s, \"order_mismatch\": %lld}\n",
           fit_ms, test_ms, load_ms, init ? "true" : "false", (long long)tm.order_mismatch);
    bx_trainer_free(tr);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    bx_loader_free(tl);
    bx_loader_free(el);
    bx_module_free(net);
    bx_dataset_free(train);
    bx_dataset_free(test);
    free(order);
    free(m.losses);
    return 0;
usage:
    fprintf(stderr,
            "usage: %s --model mlp|cnn [--epochs N] [--threads N] [--lr X] [--momentum X] [--batch N]\n"
            "       [--shuffle-seed N] [--init FILE.safetensors] [--data DIR] [--dump-order FILE]\n",
            argv[0]);
    return 2;
}
