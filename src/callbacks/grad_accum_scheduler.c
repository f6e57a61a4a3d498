/* grad_accum_scheduler.c - GradientAccumulationScheduler (spec/callbacks.md
 * §4, Lightning 1.9.5): epoch -> accumulation factor, applied at
 * on_train_epoch_start (the factor of the largest epoch <= current_epoch).
 * Written against the public callback/trainer API only. */

#include <blixt/callbacks.h>
#include <blixt/trainer.h>

#include <stdio.h>
#include <string.h>

typedef struct gas {
    int n;
    int64_t *epochs, *factors; /* sorted by epoch */
    int64_t last_set;          /* the factor this callback last gave the Trainer (0 = none) */
} gas;

static const bx_callback_ops GAS_OPS;

static int64_t gas_get(const gas *g, int64_t epoch) {
    int64_t f = 1;
    for (int i = 0; i < g->n; i++)
        if (g->epochs[i] <= epoch) f = g->factors[i];
    return f;
}

/* Lightning rejects Trainer(accumulate_grad_batches=k) next to a
 * GradientAccumulationScheduler; a Trainer value this callback set itself
 * (a second fit) is fine. Sets the factor of epoch 0 like Lightning's
 * trainer.accumulate_grad_batches = scheduler.get_accumulate_grad_batches(0). */
static bx_status gas_setup(void *self, bx_trainer *tr, bx_stage stage) {
    gas *g = self;
    if (stage != BX_STAGE_FIT) return BX_OK;
    int64_t cur = bx_trainer_accumulate_grad_batches(tr);
    if (cur != 1 && cur != g->last_set)
        return bx_set_error(BX_ERR_INVALID,
                         "You set both `Trainer(accumulate_grad_batches=%lld)` and passed a "
                         "`GradientAccumulationScheduler` callback. Please use only one of them.",
                         (long long)cur);
    g->last_set = gas_get(g, 0);
    bx_trainer_set_accumulate_grad_batches(tr, g->last_set);
    return BX_OK;
}

static bx_status gas_train_start(void *self, bx_trainer *tr) {
    gas *g = self;
    const bx_model *m = bx_trainer_model(tr);
    bool overridden = m && m->ops && (m->ops->optimizer_step || m->ops->optimizer_zero_grad);
    bool acc = false;
    for (int i = 0; i < g->n; i++) acc = acc || g->factors[i] > 1;
    if (overridden && acc)
        bx_logf(BX_LOG_WARNING, "When using `Trainer(accumulate_grad_batches != 1)` and overriding "
                                "`LightningModule.optimizer_{step,zero_grad}`, the hooks will not be called on every batch "
                                "(rather, they are called on every optimization step).");
    return BX_OK;
}

static bx_status gas_epoch_start(void *self, bx_trainer *tr) {
    gas *g = self;
    g->last_set = gas_get(g, bx_trainer_current_epoch(tr));
    bx_trainer_set_accumulate_grad_batches(tr, g->last_set);
    return BX_OK;
}

static void gas_destroy(void *self) {
    gas *g = self;
    bx_free(g->epochs);
    bx_free(g->factors);
    bx_free(g);
}

static const bx_callback_ops GAS_OPS = {
    .name = "GradientAccumulationScheduler",
    .setup = gas_setup,
    .on_train_start = gas_train_start,
    .on_train_epoch_start = gas_epoch_start,
    .destroy = gas_destroy,
};

bx_callback *bx_grad_accum_scheduler_new(const int64_t *epochs, const int64_t *factors, int n) {
    if (n <= 0 || !epochs || !factors) {
        bx_set_error(BX_ERR_INVALID, "GradientAccumulationScheduler: empty scheduling cannot be interpreted");
        return NULL;
    }
    bool has0 = false;
    for (int i = 0; i < n; i++) {
        if (epochs[i] < 0) {
            bx_set_error(BX_ERR_INVALID, "GradientAccumulationScheduler: epoch should be an int greater than or equal "
                                      "to 0 (got %lld)", (long long)epochs[i]);
            return NULL;
        }
        if (factors[i] < 1) {
            bx_set_error(BX_ERR_INVALID, "GradientAccumulationScheduler: accumulation factor should be an int greater "
                                      "than 0 (got %lld for epoch %lld)", (long long)factors[i], (long long)epochs[i]);
            return NULL;
        }
        for (int j = 0; j < i; j++)
            if (epochs[j] == epochs[i]) {
                bx_set_error(BX_ERR_INVALID, "GradientAccumulationScheduler: epoch %lld given twice", (long long)epochs[i]);
                return NULL;
            }
        has0 = has0 || epochs[i] == 0;
    }
    gas *g = bx_calloc(sizeof *g);
    int cap = n + 1;
    if (!g || !(g->epochs = bx_calloc((size_t)cap * sizeof(int64_t))) ||
        !(g->factors = bx_calloc((size_t)cap * sizeof(int64_t)))) {
        if (g) gas_destroy(g);
        return NULL;
    }
    /* insertion sort by epoch; {0: 1} added when epoch 0 is missing */
    if (!has0) {
        g->epochs[0] = 0;
        g->factors[0] = 1;
        g->n = 1;
    }
    for (int i = 0; i < n; i++) {
        int k = g->n;
        while (k > 0 && g->epochs[k - 1] > epochs[i]) {
            g->epochs[k] = g->epochs[k - 1];
            g->factors[k] = g->factors[k - 1];
            k--;
        }
        g->epochs[k] = epochs[i];
        g->factors[k] = factors[i];
        g->n++;
    }
    return bx_callback_new(&GAS_OPS, g);
}

int64_t bx_grad_accum_scheduler_get(const bx_callback *cb, int64_t epoch) {
    if (!cb || bx_callback_get_ops(cb) != &GAS_OPS) return 0;
    return gas_get(bx_callback_self(cb), epoch);
}

bool bx_grad_accum_scheduler_accumulates(const bx_callback *cb) {
    if (!cb || bx_callback_get_ops(cb) != &GAS_OPS) return false;
    const gas *g = bx_callback_self(cb);
    for (int i = 0; i < g->n; i++)
        if (g->factors[i] > 1) return true;
    return false;
}
