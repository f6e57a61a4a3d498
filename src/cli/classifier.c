/* classifier.c - the model the CLI trains: a network plus cross entropy.
 * training_step logs train_loss (progress bar); validation_step val_loss and
 * val_acc; test_step test_loss and test_acc; predict_step hands the logits
 * over. configure_optimizers builds the optimizer (and scheduler) of the
 * config over every parameter. hparams: the model's init_args. */
#include "cli/cli_int.h"

#include <string.h>

struct bx__classifier {
    bx_module *net;
    bx_state *hparams, *opt, *sched; /* owned copies; sched may be NULL */
};

static bx_module *cls_module(void *self) { return ((bx__classifier *)self)->net; }

static bx_status cls_configure(void *self, bx_trainer *tr, bx_optim_config *cfg) {
    bx__classifier *c = self;
    bx_named_tensors *p = bx_module_named_parameters(c->net);
    if (!p) return BX_ERR_NOMEM;
    /* the trainable parameters (frozen ones are left to fine-tuning callbacks,
     * like filter(lambda p: p.requires_grad, self.parameters())) */
    int k = 0;
    for (int i = 0; i < p->n; i++)
        if (p->tensors[i]->requires_grad) p->tensors[k++] = p->tensors[i];
    bx_optimizer *o = NULL;
    bx_status s = k > 0 ? bx__build_optimizer(c->opt, p->tensors, k, &o)
                        : bx__error(BX_ERR_INVALID, "Classifier: configure_optimizers: no trainable parameters");
    bx_named_tensors_free(p);
    if (s != BX_OK) return s;
    bx_sched_config sc = BX_SCHED_CONFIG_INIT;
    if (c->sched) {
        s = bx__build_scheduler(c->sched, o, tr, NULL, &sc);
        if (s != BX_OK) {
            bx_optimizer_free(o);
            return s;
        }
    }
    s = bx_optim_config_add_optimizer(cfg, o);
    if (s == BX_OK && sc.scheduler) s = bx_optim_config_add_scheduler(cfg, &sc);
    else if (sc.scheduler && s != BX_OK) bx_scheduler_free(sc.scheduler);
    return s;
}

/* Fraction of rows whose argmax equals the label. */
static double accuracy(const bx_tensor *logits, const bx_tensor *y) {
    int64_t n = logits->shape[0], k = logits->shape[1], ok = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t best = 0;
        double bv = bx_get(logits, i * k);
        for (int64_t j = 1; j < k; j++) {
            double v = bx_get(logits, i * k + j);
            if (v > bv) {
                bv = v;
                best = j;
            }
        }
        ok += best == (int64_t)bx_get(y, i);
    }
    return n ? (double)ok / (double)n : 0.0;
}

static bx_status eval_step(bx__classifier *c, bx_step *st, const bx_batch *b, const char *loss_key,
                           const char *acc_key) {
    bx_tensor *logits = bx_module_forward(c->net, st, b->x);
    bx_tensor *loss = bx_cross_entropy(st, logits, b->y, NULL);
    bx_status s = bx_log_metric(st, loss_key, loss, BX_LOG_PROG_BAR);
    if (s != BX_OK) return s;
    bx_log_opts o = {BX_LOG_PROG_BAR, (double)b->size};
    return bx_trainer_log_ex(bx_step_trainer(st), acc_key, accuracy(logits, b->y), &o);
}

static bx_status cls_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    bx__classifier *c = self;
    bx_tensor *loss = bx_cross_entropy(st, bx_module_forward(c->net, st, b->x), b->y, NULL);
    bx_status s = bx_log_metric(st, "train_loss", loss, BX_LOG_PROG_BAR);
    return s != BX_OK ? s : bx_step_set_loss(st, loss);
}
static bx_status cls_val(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    return eval_step(self, st, b, "val_loss", "val_acc");
}
static bx_status cls_test(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    return eval_step(self, st, b, "test_loss", "test_acc");
}
static bx_status cls_predict(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    bx__classifier *c = self;
    return bx_step_set_output(st, bx_module_forward(c->net, st, b->x));
}
static bx_status cls_hparams(void *self, bx_state *out) {
    bx__classifier *c = self;
    for (size_t i = 0; c->hparams && i < bx_state_len(c->hparams); i++) {
        bx_state *v = bx_state_copy(bx_state_value_at(c->hparams, i));
        if (!v || bx_state_set(out, bx_state_key_at(c->hparams, i), v) != BX_OK) return BX_ERR_NOMEM;
    }
    return BX_OK;
}

static const bx_model_ops CLASSIFIER_OPS = {
    .name = "Classifier",
    .module = cls_module,
    .configure_optimizers = cls_configure,
    .training_step = cls_train,
    .validation_step = cls_val,
    .test_step = cls_test,
    .predict_step = cls_predict,
    .hparams = cls_hparams,
};

bx__classifier *bx__classifier_new(bx_module *net, const bx_state *hparams, const bx_state *optimizer,
                                   const bx_state *lr_scheduler) {
    bx__classifier *c = bx__calloc(sizeof *c);
    if (!c) {
        bx_module_free(net);
        return NULL;
    }
    c->net = net;
    c->hparams = hparams ? bx_state_copy(hparams) : bx_state_dict();
    c->opt = bx_state_copy(optimizer);
    c->sched = lr_scheduler ? bx_state_copy(lr_scheduler) : NULL;
    if (!c->hparams || !c->opt || (lr_scheduler && !c->sched)) {
        bx__classifier_free(c);
        bx__error(BX_ERR_NOMEM, "model: out of memory");
        return NULL;
    }
    return c;
}

void bx__classifier_free(bx__classifier *c) {
    if (!c) return;
    bx_module_free(c->net);
    bx_state_free(c->hparams);
    bx_state_free(c->opt);
    bx_state_free(c->sched);
    bx__free(c);
}

bx_model bx__classifier_model(bx__classifier *c) {
    bx_model m = {&CLASSIFIER_OPS, c};
    return m;
}
