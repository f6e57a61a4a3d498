/* example_common.h - what every example shares, kept out of the way so each
 * example shows only its feature: argument parsing, the Fashion-MNIST
 * loaders, and a small classifier model (bx_model_ops) with a "backbone"
 * (784 -> 128, ReLU) and a "head" (128 -> 10). Public API only.
 *
 * Every example takes [--data DIR] [--epochs N]; DIR holds the four IDX
 * files (default: the tiny set shipped in data/tiny-fashion, relative to the
 * source tree; Debian's full set is /usr/share/datasets/fashion-mnist). */
#ifndef EXAMPLE_COMMON_H
#define EXAMPLE_COMMON_H

#include <blixt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef EX_DEFAULT_DATA
#define EX_DEFAULT_DATA "data/tiny-fashion"
#endif

/* Prints the error and its message, then leaves main with 1. */
#define EX_CHECK(expr)                                                                \
    do {                                                                              \
        bx_status s_ = (expr);                                                        \
        if (s_ != BX_OK) {                                                            \
            fprintf(stderr, "error: %s: %s\n", bx_status_str(s_), bx_errmsg());       \
            return 1;                                                                 \
        }                                                                             \
    } while (0)

typedef struct ex_args {
    const char *data;
    int64_t epochs;
} ex_args;

static inline int ex_parse(int argc, char **argv, ex_args *a, int64_t default_epochs) {
    a->data = EX_DEFAULT_DATA;
    a->epochs = default_epochs;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--data") && i + 1 < argc) a->data = argv[++i];
        else if (!strcmp(argv[i], "--epochs") && i + 1 < argc) a->epochs = atoll(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--data DIR] [--epochs N]\n", argv[0]);
            return 2;
        }
    }
    bx_set_num_threads(1);
    return 0;
}

/* Flattened split "train" or "t10k" of DIR as a dataset (caller frees). */
static inline bx_status ex_dataset(const char *dir, const char *split, bx_dataset **out) {
    char img[1024], lab[1024];
    snprintf(img, sizeof img, "%s/%s-images-idx3-ubyte.gz", dir, split);
    snprintf(lab, sizeof lab, "%s/%s-labels-idx1-ubyte.gz", dir, split);
    return bx_dataset_from_idx(img, lab, true, out);
}

/* Batches of 64; shuffled for training. */
static inline bx_loader *ex_loader(bx_dataset *ds, bool shuffle) {
    bx_loader_opts o = BX_LOADER_OPTS_INIT;
    o.batch_size = 64;
    o.shuffle = shuffle;
    return bx_loader_new(ds, &o);
}

/* ---- the model: a LightningModule is a struct plus a table of functions ---- */
typedef struct ex_classifier {
    bx_module *net; /* Sequential: "backbone" (Sequential), "head" (Linear) */
    double lr;
} ex_classifier;

static inline bx_module *ex_net_new(uint64_t seed) {
    bx_rng rng;
    bx_rng_init(&rng, seed);
    bx_module *net = bx_nn_sequential(), *backbone = bx_nn_sequential();
    bx_sequential_append(backbone, bx_nn_linear(784, 128, true, &rng));
    bx_sequential_append(backbone, bx_nn_relu());
    if (bx_module_add_child(net, "backbone", backbone) != BX_OK) return NULL;
    if (bx_module_add_child(net, "head", bx_nn_linear(128, 10, true, &rng)) != BX_OK) return NULL;
    return net;
}

static inline bx_module *ex_module(void *self) { return ((ex_classifier *)self)->net; }

/* Adam over the trainable parameters (fine-tuning freezes some). */
static inline bx_status ex_configure_optimizers(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    (void)tr;
    ex_classifier *c = self;
    bx_named_tensors *p = bx_module_named_parameters(c->net);
    int k = 0;
    for (int i = 0; i < p->n; i++)
        if (p->tensors[i]->requires_grad) p->tensors[k++] = p->tensors[i];
    bx_adam_opts ao = BX_ADAM_OPTS_INIT;
    ao.lr = c->lr;
    bx_optimizer *opt = bx_adam_new(&ao);
    bx_status s = bx_optimizer_add_group(opt, p->tensors, k, NULL);
    bx_named_tensors_free(p);
    if (s != BX_OK) {
        bx_optimizer_free(opt);
        return s;
    }
    return bx_optim_config_add_optimizer(cfg, opt); /* the Trainer owns it now */
}

/* Fraction of rows whose argmax is the label. */
static inline double ex_accuracy(const bx_tensor *logits, const bx_tensor *y) {
    int64_t n = logits->shape[0], k = logits->shape[1], ok = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        for (int64_t j = 1; j < k; j++)
            if (bx_get(logits, i * k + j) > bx_get(logits, i * k + best)) best = j;
        ok += best == (int64_t)bx_get(y, i);
    }
    return n ? (double)ok / (double)n : 0.0;
}

static inline bx_status ex_training_step(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    ex_classifier *c = self;
    bx_tensor *loss = bx_cross_entropy(st, bx_module_forward(c->net, st, b->x), b->y, NULL);
    bx_status s = bx_log_metric(st, "train_loss", loss, BX_LOG_PROG_BAR);
    return s != BX_OK ? s : bx_step_set_loss(st, loss);
}

/* Validation and test: loss and accuracy, averaged over the epoch. */
static inline bx_status ex_eval(ex_classifier *c, bx_step *st, const bx_batch *b, const char *lk, const char *ak) {
    bx_tensor *logits = bx_module_forward(c->net, st, b->x);
    bx_status s = bx_log_metric(st, lk, bx_cross_entropy(st, logits, b->y, NULL), BX_LOG_PROG_BAR);
    if (s != BX_OK) return s;
    return bx_trainer_log(bx_step_trainer(st), ak, ex_accuracy(logits, b->y), BX_LOG_PROG_BAR);
}
static inline bx_status ex_validation_step(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    return ex_eval(self, st, b, "val_loss", "val_acc");
}
static inline bx_status ex_test_step(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    (void)i;
    return ex_eval(self, st, b, "test_loss", "test_acc");
}

static const bx_model_ops EX_CLASSIFIER_OPS = {
    .name = "Classifier",
    .module = ex_module,
    .configure_optimizers = ex_configure_optimizers,
    .training_step = ex_training_step,
    .validation_step = ex_validation_step,
    .test_step = ex_test_step,
};

/* Trainer options every example starts from: quiet, logs under `root`. */
static inline bx_trainer_opts ex_trainer_opts(const char *root, int64_t epochs) {
    bx_trainer_opts o = BX_TRAINER_OPTS_INIT;
    o.max_epochs = epochs;
    o.default_root_dir = root;
    o.enable_progress_bar = false;
    o.enable_model_summary = false;
    o.logger_default = false;
    o.seed = 42;
    return o;
}

#endif
