/* 05_swa.c - Stochastic Weight Averaging: average the weights of the last
 * epochs instead of keeping only the final ones.
 *
 *   blixt-ex-05-swa [--data DIR] [--epochs N]
 *
 * From swa_epoch_start (here the second half of training) the callback
 * switches the learning rate to SWALR (annealed to swa_lr over
 * annealing_epochs), folds the weights into a running average at the
 * start of every SWA epoch (as Lightning 1.9.5 does: the last epoch's own
 * updates are not in the average, so with 1 epoch the average is the initial
 * weights), and copies the average into the model when training ends, so
 * the validation/test after fit sees the averaged weights. */
#include "example_common.h"

int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 4)) return 2;
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *val = ex_loader(test_ds, false);
    ex_classifier cls = {ex_net_new(0), 1e-3};
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};

    bx_swa_callback_opts so = BX_SWA_CALLBACK_OPTS_INIT;
    so.swa_epoch_start = 0.5;             /* a fraction of max_epochs: int(N * 0.5) */
    so.swa_epoch_start_is_fraction = true;
    so.swa_lr = 5e-4;                     /* the constant lr the average is collected at */
    so.annealing_epochs = 1;              /* reach it in 1 epoch (cosine) */
    bx_callback *swa = bx_swa_callback_new(&so);
    if (!swa) EX_CHECK(BX_ERR_INVALID);
    bx_callback *cbs[1] = {swa};

    bx_trainer_opts o = ex_trainer_opts("runs/05", a.epochs);
    o.enable_checkpointing = false;
    o.callbacks = cbs;
    o.num_callbacks = 1;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) EX_CHECK(BX_ERR_INVALID);
    EX_CHECK(bx_trainer_fit(tr, &model, train, val, NULL));
    double last_val;
    EX_CHECK(bx_trainer_metric(tr, "val_loss", &last_val));
    /* the callback is still readable: the Trainer owns it until freed */
    printf("SWA from epoch %lld: %lld models averaged; val_loss of the last live weights %.4f\n",
           (long long)bx_swa_callback_swa_start(swa), (long long)bx_swa_callback_n_averaged(swa), last_val);

    /* the model now holds the average: evaluate it */
    EX_CHECK(bx_trainer_validate(tr, &model, val, NULL));
    double swa_val, swa_acc;
    EX_CHECK(bx_trainer_metric(tr, "val_loss", &swa_val));
    EX_CHECK(bx_trainer_metric(tr, "val_acc", &swa_acc));
    printf("averaged weights: val_loss %.4f, val_acc %.3f\n", swa_val, swa_acc);

    bx_trainer_free(tr);
    bx_module_free(cls.net);
    bx_loader_free(train);
    bx_loader_free(val);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return 0;
}
