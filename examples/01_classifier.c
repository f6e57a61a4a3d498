/* 01_classifier.c - a classifier trained by the Trainer (read this first).
 *
 *   blixt-ex-01-classifier [--data DIR] [--epochs N]
 *
 * Lightning splits a program into a LightningModule (what to compute) and a
 * Trainer (the loop). In Blixt the module is a bx_model: a table of
 * functions (bx_model_ops) plus your own struct. example_common.h holds the
 * one every example uses; its parts are, in Lightning's words:
 *   .module                -> the nn.Module tree (parameters, state dict)
 *   .configure_optimizers  -> adds an Adam over the parameters
 *   .training_step         -> forward, cross entropy, bx_log_metric("train_loss"),
 *                             bx_step_set_loss (the Trainer runs backward + step)
 *   .validation_step / .test_step -> log val_/test_ loss and accuracy
 * Everything a step makes lives in the step arena (bx_step): nothing to free. */
#include "example_common.h"

int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 3)) return 2;

    /* Data: IDX files -> datasets -> loaders (batches of 64). */
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *val = ex_loader(test_ds, false);

    /* The model: our struct + its ops table. */
    ex_classifier cls = {ex_net_new(0), 1e-3};
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};

    /* The Trainer: options as Lightning's Trainer(...) arguments. With
     * enable_checkpointing it adds a ModelCheckpoint writing
     * <root>/checkpoints/epoch=E-step=S.ckpt after each epoch. */
    bx_trainer_opts o = ex_trainer_opts("runs/01", a.epochs);
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) EX_CHECK(BX_ERR_INVALID);

    /* fit: sanity check, then epochs of training + validation. */
    EX_CHECK(bx_trainer_fit(tr, &model, train, val, NULL));
    double v;
    EX_CHECK(bx_trainer_metric(tr, "val_acc", &v));
    printf("after %lld epochs: val_acc %.3f\n", (long long)bx_trainer_current_epoch(tr), v);

    /* test: one pass of test_step; metrics land in callback_metrics. */
    EX_CHECK(bx_trainer_test(tr, &model, val, NULL));
    for (int i = 0; i < bx_trainer_metrics_count(tr, BX_CALLBACK_METRICS); i++)
        printf("  %s = %.4f\n", bx_trainer_metric_name(tr, BX_CALLBACK_METRICS, i),
               bx_trainer_metric_value(tr, BX_CALLBACK_METRICS, i));

    bx_trainer_free(tr);
    bx_module_free(cls.net);
    bx_loader_free(train);
    bx_loader_free(val);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return 0;
}
