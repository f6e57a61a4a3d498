/* bench_qat.c - quantization-aware training with the Trainer and the
 * QuantizationAwareTraining callback on Fashion-MNIST, then int8 inference
 * of the converted model against the float model, in one run (issue 4).
 *
 *   blixt-bench-qat [--data DIR] [--epochs N] [--threads N] [--only mlp,cnn]
 *                   [--iters N] [--keep-files] [--profile] [--separate-float]
 *
 * For each model (MLP 784-256-128-10 and the CNN of bench_engine.c):
 *  1. train it with bx_trainer_fit and the QAT callback (x86 qconfig,
 *     Linear/Conv+ReLU fused; quantize_on_fit_end converts it in place to
 *     int8 at the end of fit);
 *  2. the float model: the same architecture with plain float layers and the
 *     weights the QAT run trained (snapshotted by a callback at on_fit_end,
 *     just before the conversion) - the model a user would get by training
 *     the same config without fake-quantisation at inference;
 *  3. accuracy on the 10k test set: float, the fake-quantised QAT model (the
 *     last validation epoch) and int8 (the converted model); with
 *     --separate-float also a float model trained without QAT (same seed,
 *     data order, optimizer and epochs);
 *  4. forward time on the same test inputs, batch 256 and batch 1, eval and
 *     no grad: float (our fp32 engine: oneDNN conv, dnnl_sgemm) vs int8
 *     (float in -> Quantize -> int8 layers -> DeQuantize -> float out), the
 *     two alternating call by call (medians); --profile adds per-layer times;
 *  5. file sizes: the float state dict as safetensors vs bx_quant_save.
 * Prints a table and one JSON line per model. */
#include "blixt.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CHECK(expr)                                                                   \
    do {                                                                              \
        bx_status s_ = (expr);                                                        \
        if (s_ != BX_OK) {                                                            \
            fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #expr, bx_errmsg()); \
            exit(1);                                                                  \
        }                                                                             \
    } while (0)

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- the two models: roots that call their children by name --------------- */
static const char *const MLP_ORDER[] = {"fc1", "relu1", "fc2", "relu2", "fc3", NULL};
static const char *const CNN_ORDER[] = {"conv1", "relu1", "pool1", "conv2", "relu2", "pool2",
                                        "flatten", "fc1", "relu3", "fc2", NULL};

static bx_tensor *run_order(bx_module *m, bx_step *st, bx_tensor *x, const char *const *order) {
    for (int i = 0; order[i]; i++) x = bx_module_forward(bx_module_child(m, order[i]), st, x);
    return x;
}
static bx_tensor *mlp_forward(bx_module *m, bx_step *st, bx_tensor *x) { return run_order(m, st, x, MLP_ORDER); }
static bx_tensor *cnn_forward(bx_module *m, bx_step *st, bx_tensor *x) { return run_order(m, st, x, CNN_ORDER); }
static const bx_module_type MLP_T = {"Mlp", mlp_forward, NULL, NULL, NULL, NULL};
static const bx_module_type CNN_T = {"Cnn", cnn_forward, NULL, NULL, NULL, NULL};

static bx_module *make_mlp(uint64_t seed) {
    bx_rng r;
    bx_rng_init(&r, seed);
    bx_module *m = bx_module_new(&MLP_T, NULL);
    CHECK(bx_module_add_child(m, "fc1", bx_nn_linear(784, 256, true, &r)));
    CHECK(bx_module_add_child(m, "relu1", bx_nn_relu()));
    CHECK(bx_module_add_child(m, "fc2", bx_nn_linear(256, 128, true, &r)));
    CHECK(bx_module_add_child(m, "relu2", bx_nn_relu()));
    CHECK(bx_module_add_child(m, "fc3", bx_nn_linear(128, 10, true, &r)));
    return m;
}

static bx_module *make_cnn(uint64_t seed) {
    bx_rng r;
    bx_rng_init(&r, seed);
    bx_conv2d_opts co = BX_CONV2D_OPTS_INIT;
    co.padding[0] = co.padding[1] = 1;
    bx_pool2d_opts po = BX_POOL2D_OPTS_INIT;
    bx_module *m = bx_module_new(&CNN_T, NULL);
    CHECK(bx_module_add_child(m, "conv1", bx_nn_conv2d(1, 32, 3, 3, &co, true, &r)));
    CHECK(bx_module_add_child(m, "relu1", bx_nn_relu()));
    CHECK(bx_module_add_child(m, "pool1", bx_nn_max_pool2d(&po)));
    CHECK(bx_module_add_child(m, "conv2", bx_nn_conv2d(32, 64, 3, 3, &co, true, &r)));
    CHECK(bx_module_add_child(m, "relu2", bx_nn_relu()));
    CHECK(bx_module_add_child(m, "pool2", bx_nn_max_pool2d(&po)));
    CHECK(bx_module_add_child(m, "flatten", bx_nn_flatten(1, -1)));
    CHECK(bx_module_add_child(m, "fc1", bx_nn_linear(64 * 7 * 7, 128, true, &r)));
    CHECK(bx_module_add_child(m, "relu3", bx_nn_relu()));
    CHECK(bx_module_add_child(m, "fc2", bx_nn_linear(128, 10, true, &r)));
    return m;
}

/* ---- LightningModule ---------------------------------------------------------- */
typedef struct model {
    bx_module *net;
} model;

static bx_module *m_module(void *self) { return ((model *)self)->net; }

static bx_status m_optimizers(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    bx_adam_opts ao = BX_ADAM_OPTS_INIT;
    ao.lr = 1e-3;
    bx_optimizer *opt = bx_adam_new(&ao);
    bx_named_tensors *p = bx_module_named_parameters(((model *)self)->net);
    bx_status s = bx_optimizer_add_group(opt, p->tensors, p->n, NULL);
    bx_named_tensors_free(p);
    return s != BX_OK ? s : bx_optim_config_add_optimizer(cfg, opt);
}

static int64_t correct(const bx_tensor *logits, const bx_tensor *y) {
    int64_t n = logits->shape[0], k = logits->shape[1], ok = 0;
    const float *l = logits->data;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++)
            if (l[i * k + j] > l[i * k + best]) best = j;
        ok += best == (int64_t)bx_get(y, i);
    }
    return ok;
}

static bx_status m_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    bx_tensor *loss = bx_cross_entropy(st, bx_module_forward(((model *)self)->net, st, b->x), b->y, NULL);
    return bx_step_set_loss(st, loss);
}

static bx_status m_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    bx_tensor *logits = bx_module_forward(((model *)self)->net, st, b->x);
    if (bx_is_poison(logits)) return bx_step_status(st);
    return bx_trainer_log(bx_step_trainer(st), "val_acc", (double)correct(logits, b->y) / (double)b->size,
                          BX_LOG_PROG_BAR);
}

static const bx_model_ops OPS = {.name = "QatBench",
                                 .module = m_module,
                                 .configure_optimizers = m_optimizers,
                                 .training_step = m_train,
                                 .validation_step = m_val};

/* A callback that copies the trained float weights at on_fit_end; it comes
 * before the QAT callback in the list, so it runs before the conversion. */
static bx_status snap_fit_end(void *self, bx_trainer *tr) {
    bx_named_tensors **out = self;
    bx_named_tensors *p = bx_module_named_parameters(bx_trainer_module(tr));
    *out = bx_named_tensors_new(true);
    for (int i = 0; i < p->n; i++) CHECK(bx_named_tensors_add(*out, p->names[i], bx_tensor_clone(p->tensors[i])));
    bx_named_tensors_free(p);
    return BX_OK;
}
static const bx_callback_ops SNAP = {.name = "FloatSnapshot", .on_fit_end = snap_fit_end};

/* ---- measurements ------------------------------------------------------------------ */
/* Correct predictions of net over the loader (eval, no grad); preds (optional)
 * receives the argmax per sample. */
static int64_t evaluate(bx_module *net, bx_loader *test, int64_t *preds) {
    bx_step *st = bx_step_new();
    bx_no_grad_push(st);
    bx_module_train(net, false);
    bx_batch b;
    int64_t ok = 0, off = 0;
    for (int64_t i = 0; i < bx_loader_len(test); i++) {
        CHECK(bx_loader_batch(test, st, i, &b));
        bx_tensor *l = bx_module_forward(net, st, b.x);
        if (bx_step_status(st) != BX_OK) {
            fprintf(stderr, "evaluate: %s\n", bx_step_errmsg(st));
            exit(1);
        }
        ok += correct(l, b.y);
        if (preds) {
            const float *lp = l->data;
            for (int64_t r = 0; r < b.size; r++) {
                int64_t best = 0;
                for (int64_t j = 1; j < 10; j++)
                    if (lp[r * 10 + j] > lp[r * 10 + best]) best = j;
                preds[off + r] = best;
            }
        }
        off += b.size;
        bx_step_reset(st);
    }
    bx_step_free(st);
    return ok;
}

/* Median ms of a forward of a and of b on x (eval, no grad, step reset
 * each time), the two alternating call by call so that a noisy neighbour
 * slows both alike. */
static void time_pair(bx_module *a, bx_module *b, bx_tensor *x, int iters, double *ma, double *mb) {
    bx_step *st = bx_step_new();
    bx_no_grad_push(st);
    double *s[2] = {malloc(sizeof(double) * (size_t)iters), malloc(sizeof(double) * (size_t)iters)};
    bx_module *net[2] = {a, b};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 2; k++) {
            bx_module_forward(net[k], st, x);
            bx_step_reset(st);
        }
    for (int i = 0; i < iters; i++)
        for (int k = 0; k < 2; k++) {
            double t0 = now_ms();
            bx_module_forward(net[k], st, x);
            bx_step_reset(st);
            s[k][i] = now_ms() - t0;
        }
    if (bx_step_status(st) != BX_OK) fprintf(stderr, "time_pair: %s\n", bx_step_errmsg(st));
    for (int k = 0; k < 2; k++) qsort(s[k], (size_t)iters, sizeof(double), cmp_double);
    *ma = s[0][iters / 2];
    *mb = s[1][iters / 2];
    free(s[0]);
    free(s[1]);
    bx_step_free(st);
}

/* Rows [0, n) of the dataset's x as a new contiguous tensor. */
static bx_tensor *first_rows(const bx_dataset *ds, int64_t n) {
    const bx_tensor *x = bx_dataset_x(ds);
    int64_t shape[BX_MAX_DIMS];
    memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    shape[0] = n;
    bx_tensor *t = bx_tensor_new(BX_F32, x->ndim, shape);
    memcpy(t->data, x->data, sizeof(float) * (size_t)bx_numel(t));
    return t;
}

static long file_size(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

typedef struct opts {
    const char *data;
    int64_t epochs;
    int threads, iters;
    const char *only;
    bool keep, profile, separate;
} opts;

/* Mean ms per layer of a forward at x: the children of a Sequential, or the
 * named children of a root in `order`. */
static void layer_profile(const char *what, bx_module *net, bx_tensor *x, int iters, const char *const *order) {
    bx_step *st = bx_step_new();
    bx_no_grad_push(st);
    int n = 0;
    bx_module *layers[32];
    const char *names[32];
    if (order) {
        for (; order[n] && n < 32; n++) layers[n] = bx_module_child(net, order[n]), names[n] = order[n];
    } else {
        for (; n < bx_module_num_children(net) && n < 32; n++) layers[n] = bx_module_child_at(net, n, &names[n]);
    }
    double t[32] = {0};
    for (int it = 0; it < iters + 2; it++) {
        bx_tensor *h = x;
        for (int l = 0; l < n; l++) {
            double t0 = now_ms();
            h = bx_module_forward(layers[l], st, h);
            if (it >= 2) t[l] += now_ms() - t0;
        }
        bx_step_reset(st);
    }
    printf("%s layers (ms):", what);
    for (int l = 0; l < n; l++) printf(" %s(%s) %.3f", names[l], bx_module_type_name(layers[l]), t[l] / iters);
    printf("\n");
    bx_step_free(st);
}

static void bench_model(const char *name, bool cnn, const opts *o) {
    char img[1024], lab[1024];
    bx_dataset *train_ds, *test_ds;
    snprintf(img, sizeof img, "%s/train-images-idx3-ubyte.gz", o->data);
    snprintf(lab, sizeof lab, "%s/train-labels-idx1-ubyte.gz", o->data);
    CHECK(bx_dataset_from_idx(img, lab, !cnn, &train_ds));
    snprintf(img, sizeof img, "%s/t10k-images-idx3-ubyte.gz", o->data);
    snprintf(lab, sizeof lab, "%s/t10k-labels-idx1-ubyte.gz", o->data);
    CHECK(bx_dataset_from_idx(img, lab, !cnn, &test_ds));
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 128;
    lo.shuffle = true;
    bx_loader *train = bx_loader_new(train_ds, &lo);
    lo.batch_size = 256;
    lo.shuffle = false;
    bx_loader *test = bx_loader_new(test_ds, &lo);

    /* ---- train with QAT; the model is int8 after fit ---- */
    model mdl = {cnn ? make_cnn(0) : make_mlp(0)};
    bx_qat_fuse_group mlp_fuse[2] = {{{"fc1", "relu1", NULL}}, {{"fc2", "relu2", NULL}}};
    bx_qat_fuse_group cnn_fuse[3] = {{{"conv1", "relu1", NULL}}, {{"conv2", "relu2", NULL}}, {{"fc1", "relu3", NULL}}};
    bx_qat_opts qo = BX_QAT_OPTS_INIT;
    qo.qconfig = "x86";
    qo.modules_to_fuse = cnn ? cnn_fuse : mlp_fuse;
    qo.num_modules_to_fuse = cnn ? 3 : 2;
    bx_named_tensors *snapshot = NULL;
    bx_callback *cbs[2] = {bx_callback_new(&SNAP, &snapshot), bx_qat_callback_new(&qo)};
    if (!cbs[0] || !cbs[1]) {
        fprintf(stderr, "callbacks: %s\n", bx_errmsg());
        exit(1);
    }
    bx_trainer_opts to = BX_TRAINER_OPTS_INIT;
    to.max_epochs = o->epochs;
    to.callbacks = cbs;
    to.num_callbacks = 2;
    to.logger_default = false;
    to.enable_checkpointing = false;
    to.enable_progress_bar = false;
    to.enable_model_summary = false;
    to.num_sanity_val_steps = 0;
    to.seed = 42;
    bx_trainer *tr = bx_trainer_new(&to);
    if (!tr) {
        fprintf(stderr, "trainer: %s\n", bx_errmsg());
        exit(1);
    }
    bx_model bm = {&OPS, &mdl};
    double t0 = now_ms();
    CHECK(bx_trainer_fit(tr, &bm, train, test, NULL));
    double train_s = (now_ms() - t0) / 1e3;
    if (strncmp(bx_module_type_name(bx_module_child(mdl.net, "fc1")), "Quantized", 9) != 0 || !snapshot) {
        fprintf(stderr, "%s: the model was not converted at fit end\n", name);
        exit(1);
    }
    double fq_acc = NAN;
    bx_trainer_metric(tr, "val_acc", &fq_acc);
    bx_module *qnet = mdl.net; /* int8 now (float in, float out through the callback's wrapper) */

    /* ---- the float model with the trained weights ---- */
    bx_module *fnet = cnn ? make_cnn(1) : make_mlp(1);
    CHECK(bx_module_load_state_dict(fnet, snapshot, true));
    bx_module_train(fnet, false);

    /* ---- accuracy ---- */
    int64_t n = bx_dataset_len(test_ds);
    int64_t *pf = malloc(sizeof(int64_t) * (size_t)n), *pq = malloc(sizeof(int64_t) * (size_t)n);
    double acc_f = (double)evaluate(fnet, test, pf) / (double)n;
    double acc_q = (double)evaluate(qnet, test, pq) / (double)n;
    int64_t agree = 0;
    for (int64_t i = 0; i < n; i++) agree += pf[i] == pq[i];
    double acc_sep = NAN;
    if (o->separate) { /* the same config trained without the QAT callback */
        model sm = {cnn ? make_cnn(0) : make_mlp(0)};
        bx_trainer_opts so = to;
        so.callbacks = NULL;
        so.num_callbacks = 0;
        bx_trainer *str = bx_trainer_new(&so);
        bx_model sbm = {&OPS, &sm};
        if (!str) CHECK(BX_ERR_INVALID);
        CHECK(bx_trainer_fit(str, &sbm, train, test, NULL));
        acc_sep = (double)evaluate(sm.net, test, NULL) / (double)n;
        bx_trainer_free(str);
        bx_module_free(sm.net);
    }

    /* ---- files: float state dict vs the int8 model ---- */
    char fpath[256], qpath[256];
    snprintf(fpath, sizeof fpath, "bench-qat-%s.f32.safetensors", name);
    snprintf(qpath, sizeof qpath, "bench-qat-%s.int8.safetensors", name);
    bx_st_writer *w = bx_st_writer_new();
    bx_named_tensors *sd = bx_module_state_dict(fnet);
    for (int i = 0; i < sd->n; i++) CHECK(bx_st_writer_add(w, sd->names[i], sd->tensors[i]));
    CHECK(bx_st_writer_write(w, fpath));
    bx_st_writer_free(w);
    bx_named_tensors_free(sd);
    /* the converted root as an int8 Sequential: quant, the layers in forward order, dequant */
    bx_module *seq = bx_nn_sequential();
    const char *const *order = cnn ? CNN_ORDER : MLP_ORDER;
    CHECK(bx_sequential_append(seq, bx_module_clone(bx_module_child(qnet, "quant"))));
    for (int i = 0; order[i]; i++) {
        bx_module *c = bx_module_child(qnet, order[i]);
        if (strcmp(bx_module_type_name(c), "Identity") != 0) CHECK(bx_sequential_append(seq, bx_module_clone(c)));
    }
    CHECK(bx_sequential_append(seq, bx_module_clone(bx_module_child(qnet, "dequant"))));
    CHECK(bx_quant_save(seq, qpath));
    bx_module *loaded = NULL;
    CHECK(bx_quant_load(qpath, &loaded));
    double acc_l = (double)evaluate(loaded, test, NULL) / (double)n;
    long fsz = file_size(fpath), qsz = file_size(qpath);
    if (!o->keep) {
        remove(fpath);
        remove(qpath);
    }

    /* ---- speed: the same inputs (the first test images) ---- */
    bx_tensor *x256 = first_rows(test_ds, 256), *x1 = first_rows(test_ds, 1);
    if (o->profile) {
        layer_profile("int8", loaded, x256, o->iters, NULL);
        layer_profile("float", fnet, x256, o->iters, order);
    }
    double f256, q256, f1, q1;
    time_pair(fnet, qnet, x256, o->iters, &f256, &q256);
    time_pair(fnet, qnet, x1, o->iters * 20, &f1, &q1);

    printf("\n%s (%lld epochs, %.1f s of QAT training, %d thread%s)\n", name, (long long)o->epochs, train_s,
           o->threads, o->threads == 1 ? "" : "s");
    printf("| | float | int8 | float/int8 |\n| --- | --- | --- | --- |\n");
    printf("| test accuracy | %.4f | %.4f (loaded file: %.4f) | %+.2f points |\n", acc_f, acc_q, acc_l,
           100.0 * (acc_q - acc_f));
    printf("| forward, batch 256 (ms) | %.3f | %.3f | %.2fx |\n", f256, q256, f256 / q256);
    printf("| forward, batch 1 (ms) | %.4f | %.4f | %.2fx |\n", f1, q1, f1 / q1);
    printf("| file (bytes) | %ld | %ld | %.2fx |\n", fsz, qsz, (double)fsz / (double)qsz);
    printf("fake-quantised QAT model (last validation): %.4f; predictions float vs int8 agree on %.2f%%\n", fq_acc,
           100.0 * (double)agree / (double)n);
    if (o->separate) printf("float model trained without QAT (same config): %.4f\n", acc_sep);
    char sepbuf[32] = "null";
    if (o->separate) snprintf(sepbuf, sizeof sepbuf, "%.4f", acc_sep);
    printf("{\"name\": \"qat_%s\", \"threads\": %d, \"epochs\": %lld, \"train_s\": %.1f, \"acc_float\": %.4f, "
           "\"acc_fake_quant\": %.4f, \"acc_float_separate\": %s, \"acc_int8\": %.4f, \"acc_int8_loaded\": %.4f, \"acc_diff_points\": %.2f, "
           "\"agree\": %.4f, \"ms_float_b256\": %.3f, \"ms_int8_b256\": %.3f, \"speedup_b256\": %.2f, "
           "\"ms_float_b1\": %.4f, \"ms_int8_b1\": %.4f, \"speedup_b1\": %.2f, \"bytes_float\": %ld, "
           "\"bytes_int8\": %ld, \"size_ratio\": %.2f}\n",
           name, o->threads, (long long)o->epochs, train_s, acc_f, fq_acc, sepbuf, acc_q, acc_l, 100.0 * (acc_q - acc_f),
           (double)agree / (double)n, f256, q256, f256 / q256, f1, q1, f1 / q1, fsz, qsz,
           (double)fsz / (double)qsz);
    fflush(stdout);

    free(pf);
    free(pq);
    bx_tensor_free(x256);
    bx_tensor_free(x1);
    bx_module_free(loaded);
    bx_module_free(seq);
    bx_module_free(fnet);
    bx_named_tensors_free(snapshot);
    bx_trainer_free(tr); /* frees the callbacks: after the last int8 forward (they wrap its forward) */
    bx_module_free(mdl.net);
    bx_loader_free(train);
    bx_loader_free(test);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
}

static int want(const char *only, const char *name) {
    if (!only || !*only) return 1;
    size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)); p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0')) return 1;
    return 0;
}

int main(int argc, char **argv) {
    opts o = {"/usr/share/datasets/fashion-mnist", 3, 1, 50, NULL, false, false, false};
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) o.data = argv[++i];
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc) o.epochs = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) o.threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc) o.iters = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) o.only = argv[++i];
        else if (!strcmp(argv[i], "--keep-files")) o.keep = true;
        else if (!strcmp(argv[i], "--profile")) o.profile = true;
        else if (!strcmp(argv[i], "--separate-float")) o.separate = true;
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--epochs N] [--threads N] [--only mlp,cnn] [--iters N] "
                            "[--keep-files]\n",
                    argv[0]);
            return 2;
        }
    }
    if (o.epochs < 1 || o.threads < 1 || o.iters < 1) {
        fprintf(stderr, "epochs, threads and iters must be >= 1\n");
        return 2;
    }
    bx_set_num_threads(o.threads);
    if (want(o.only, "mlp")) bench_model("mlp", false, &o);
    if (want(o.only, "cnn")) bench_model("cnn", true, &o);
    return 0;
}
