/* bench_trainer.c - what the Trainer adds to a step, and one Fashion-MNIST
 * epoch through the Trainer (see compare.py, workloads "overhead", "epoch").
 *
 *   blixt-bench-trainer [--threads N] [--only overhead,epoch] [--quick]
 *
 * overhead: a tiny model (Linear 4->4, MSE, SGD, batch 8) trained by a plain
 * loop and by bx_trainer_fit with a CSV logger, ModelCheckpoint and the
 * progress bar (plus EarlyStopping and LearningRateMonitor when built in).
 * Fixed per-fit costs (setup, the checkpoint written at epoch end) are
 * removed by timing two epoch lengths and taking the slope; the Trainer's
 * own work per step is the slope minus the plain loop's time per step.
 * Also checks that a steady-state Trainer step allocates nothing.
 * epoch: MLP 784-256-128-10, batch 128, shuffled, SGD momentum, one epoch of
 * Fashion-MNIST through the Trainer (the same as torch_bench.py "epoch"). */
#include "blixt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

typedef struct net_model {
    bx_module *net;
    double lr;
    bool ce; /* cross entropy (classifier) or mse */
    uint64_t allocs_at_batch[2];
} net_model;

static bx_module *model_module(void *self) { return ((net_model *)self)->net; }

static bx_status model_configure(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    net_model *m = self;
    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = m->lr;
    so.momentum = 0.9;
    bx_optimizer *opt = bx_sgd_new(&so);
    bx_named_tensors *ps = bx_module_named_parameters(m->net);
    bx_status s = bx_optimizer_add_group(opt, ps->tensors, (int)ps->n, NULL);
    bx_named_tensors_free(ps);
    if (s != BX_OK) return s;
    return bx_optim_config_add_optimizer(cfg, opt);
}

static bx_status model_training_step(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    net_model *m = self;
    bx_tensor *out = bx_module_forward(m->net, st, b->x);
    bx_tensor *loss = m->ce ? bx_cross_entropy(st, out, b->y, NULL) : bx_mse_loss(st, out, b->y, BX_REDUCTION_MEAN);
    bx_log_metric(st, "train_loss", loss, BX_LOG_PROG_BAR);
    return bx_step_set_loss(st, loss);
}

static const bx_model_ops MODEL_OPS = {
    .name = "BenchModel",
    .module = model_module,
    .configure_optimizers = model_configure,
    .training_step = model_training_step,
};

/* Allocation probe: records bx_alloc_count() at two late batches. */
static bx_status probe_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t i) {
    net_model *m = self;
    int64_t n = bx_trainer_num_training_batches(tr);
    if (i == n - 40) m->allocs_at_batch[0] = bx_alloc_count();
    if (i == n - 20) m->allocs_at_batch[1] = bx_alloc_count();
    return BX_OK;
}
static const bx_callback_ops PROBE_OPS = {.name = "AllocProbe", .on_train_batch_start = probe_batch_start};

static double plain_loop(net_model *m, bx_loader *l) {
    bx_sgd_opts so = BX_SGD_OPTS_INIT;
    so.lr = m->lr;
    so.momentum = 0.9;
    bx_optimizer *opt = bx_sgd_new(&so);
    bx_named_tensors *ps = bx_module_named_parameters(m->net);
    bx_optimizer_add_group(opt, ps->tensors, (int)ps->n, NULL);
    bx_step *st = bx_step_new();
    int64_t nb = bx_loader_len(l);
    double t0 = now_ms();
    for (int64_t i = 0; i < nb; i++) {
        bx_batch b;
        bx_loader_batch(l, st, i, &b);
        bx_optimizer_zero_grad(opt);
        bx_tensor *out = bx_module_forward(m->net, st, b.x);
        bx_tensor *loss = m->ce ? bx_cross_entropy(st, out, b.y, NULL) : bx_mse_loss(st, out, b.y, BX_REDUCTION_MEAN);
        bx_backward(st, loss);
        bx_optimizer_step(opt);
        bx_step_reset(st);
    }
    double t = now_ms() - t0;
    bx_step_free(st);
    bx_named_tensors_free(ps);
    bx_optimizer_free(opt);
    return t;
}

static double trainer_fit(net_model *m, bx_loader *l, const char *root, int64_t limit, bool probe) {
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = 1;
    o.default_root_dir = root;
    o.enable_model_summary = false;
    o.num_sanity_val_steps = 0;
    if (limit > 0) o.limit_train_batches = (bx_limit){(double)limit, true};
    bx_callback *cbs[4];
    int n = 0;
    bx_csv_logger_opts lo = BX_CSV_LOGGER_OPTS_INIT;
    lo.save_dir = root;
    bx_logger *lg = bx_csv_logger_new(&lo);
    o.loggers = &lg;
    o.num_loggers = 1;
    if (getenv("BLIXT_BENCH_NO_LOGGER")) {
        bx_logger_free(lg);
        o.num_loggers = 0;
        o.logger_default = false;
    }
    if (probe) cbs[n++] = bx_callback_new(&PROBE_OPS, m);
    o.callbacks = cbs;
    o.num_callbacks = n;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) {
        fprintf(stderr, "trainer: %s\n", bx_errmsg());
        exit(1);
    }
    bx_model model = {&MODEL_OPS, m};
    double t0 = now_ms();
    if (bx_trainer_fit(tr, &model, l, NULL, NULL) != BX_OK) {
        fprintf(stderr, "fit: %s\n", bx_errmsg());
        exit(1);
    }
    double t = now_ms() - t0;
    bx_trainer_free(tr);
    return t;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

static void overhead(int threads, bool quick) {
    int64_t N = 8 * 4000, xs[2] = {N, 4};
    bx_tensor *x = bx_tensor_new(BX_F32, 2, xs), *y = bx_tensor_new(BX_F32, 2, xs);
    bx_rng rng;
    bx_rng_init(&rng, 1);
    for (int64_t i = 0; i < N * 4; i++) {
        ((float *)x->data)[i] = bx_rng_normal(&rng);
        ((float *)y->data)[i] = bx_rng_normal(&rng);
    }
    bx_dataset *ds = bx_dataset_from_tensors(x, y, true);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 8;
    bx_loader *l = bx_loader_new(ds, &lo);
    net_model m = {bx_nn_linear(4, 4, true, &rng), 1e-3, false, {0, 0}};
    char root[] = "/tmp/blixt-bench-XXXXXX";
    if (!mkdtemp(root)) return;
    int reps = quick ? 3 : 7;
    double plain[16], small[16], big[16];
    int64_t n_small = 1000, n_big = 4000;
    for (int r = 0; r < reps; r++) {
        plain[r] = plain_loop(&m, l) / (double)bx_loader_len(l);
        small[r] = trainer_fit(&m, l, root, n_small, false);
        big[r] = trainer_fit(&m, l, root, n_big, r == 0);
    }
    uint64_t allocs = m.allocs_at_batch[1] - m.allocs_at_batch[0];
    double p = median(plain, reps) * 1e3; /* us/step */
    double slope = (median(big, reps) - median(small, reps)) / (double)(n_big - n_small) * 1e3;
    printf("{\"name\": \"trainer_overhead\", \"impl\": \"blixt\", \"threads\": %d, \"ms\": %.5f, "
           "\"unit\": \"us/step\", \"plain_us\": %.3f, \"trainer_us\": %.3f, \"steady_state_allocs\": %llu}\n",
           threads, slope - p, p, slope, (unsigned long long)allocs);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    bx_loader_free(l);
    bx_dataset_free(ds);
    bx_module_free(m.net);
}

static void epoch(int threads, const char *dir) {
    char ip[512], lp[512];
    snprintf(ip, sizeof ip, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(lp, sizeof lp, "%s/train-labels-idx1-ubyte.gz", dir);
    bx_dataset *ds = NULL;
    double t0 = now_ms();
    if (bx_dataset_from_idx(ip, lp, true, &ds) != BX_OK) {
        fprintf(stderr, "epoch: %s (skipped)\n", bx_errmsg());
        return;
    }
    double load_ms = now_ms() - t0;
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 128;
    lo.shuffle = true;
    lo.seed = 7;
    bx_loader *l = bx_loader_new(ds, &lo);
    bx_rng rng;
    bx_rng_init(&rng, 3);
    bx_module *net = bx_nn_sequential();
    bx_sequential_append(net, bx_nn_linear(784, 256, true, &rng));
    bx_sequential_append(net, bx_nn_relu());
    bx_sequential_append(net, bx_nn_linear(256, 128, true, &rng));
    bx_sequential_append(net, bx_nn_relu());
    bx_sequential_append(net, bx_nn_linear(128, 10, true, &rng));
    net_model m = {net, 0.01, true, {0, 0}};
    char root[] = "/tmp/blixt-bench-XXXXXX";
    if (!mkdtemp(root)) return;
    double t = trainer_fit(&m, l, root, 0, false);
    printf("{\"name\": \"epoch\", \"impl\": \"blixt\", \"threads\": %d, \"ms\": %.1f, \"unit\": \"ms/epoch\", "
           "\"load_ms\": %.1f}\n",
           threads, t, load_ms);
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", root);
    bx_loader_free(l);
    bx_dataset_free(ds);
    bx_module_free(net);
}

int main(int argc, char **argv) {
    int threads = 1;
    bool quick = false;
    const char *only = "", *dir = "/usr/share/datasets/fashion-mnist";
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--data") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--quick")) quick = true;
        else {
            fprintf(stderr, "usage: %s [--threads N] [--only overhead,epoch] [--data DIR] [--quick]\n", argv[0]);
            return 2;
        }
    }
    bx_set_num_threads(threads);
    if (!*only || strstr(only, "overhead")) overhead(threads, quick);
    if (!*only || strstr(only, "epoch")) epoch(threads, dir);
    return 0;
}
