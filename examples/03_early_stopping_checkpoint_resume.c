/* 03_early_stopping_checkpoint_resume.c - EarlyStopping, ModelCheckpoint and
 * resuming a run.
 *
 *   blixt-ex-03-early-stopping-checkpoint-resume [--data DIR] [--epochs N]
 *
 * Run 1 trains at most N epochs with EarlyStopping on val_loss and a
 * ModelCheckpoint that keeps the best checkpoint (lowest val_loss) plus
 * runs/03/ckpt/last.ckpt. Run 2 is a fresh Trainer and a fresh model that
 * continues from "last": weights, optimizer, epoch/step counters, loader
 * position and every callback's state (EarlyStopping's wait count, the
 * checkpoint's best score) come back, and it trains 2 more epochs. */
#include "example_common.h"

/* Builds run r's Trainer (callbacks are owned by the Trainer, so each run
 * makes its own; their state comes from the checkpoint on resume). */
static bx_trainer *make_trainer(int64_t max_epochs, bx_callback **ckpt_out) {
    bx_early_stopping_opts eo = BX_EARLY_STOPPING_OPTS_INIT;
    eo.monitor = "val_loss";
    eo.patience = 3;       /* 3 validations without improvement stop the fit */
    eo.min_delta = 1e-3;
    bx_model_checkpoint_opts mo = BX_MODEL_CHECKPOINT_OPTS_INIT;
    mo.dirpath = "runs/03/ckpt";
    mo.filename = "{epoch}-{val_loss:.3f}";
    mo.monitor = "val_loss"; /* keep the best 1 by val_loss (mode "min") */
    mo.save_last = 1;        /* and always the newest as last.ckpt */
    bx_callback *cbs[2] = {bx_early_stopping_new(&eo), bx_model_checkpoint_new(&mo)};
    *ckpt_out = cbs[1];
    bx_trainer_opts o = ex_trainer_opts("runs/03", max_epochs);
    o.callbacks = cbs;
    o.num_callbacks = 2;
    return bx_trainer_new(&o);
}

int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 4)) return 2;
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *val = ex_loader(test_ds, false);

    /* ---- run 1 ---- */
    ex_classifier cls = {ex_net_new(0), 1e-3};
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};
    bx_callback *ckpt;
    bx_trainer *tr = make_trainer(a.epochs, &ckpt);
    if (!tr) EX_CHECK(BX_ERR_INVALID);
    EX_CHECK(bx_trainer_fit(tr, &model, train, val, NULL));
    printf("run 1: %lld epochs, %lld steps; best %s (val_loss %.4f), last %s\n",
           (long long)bx_trainer_current_epoch(tr), (long long)bx_trainer_global_step(tr),
           bx_model_checkpoint_best_model_path(ckpt), bx_model_checkpoint_best_model_score(ckpt),
           bx_model_checkpoint_last_model_path(ckpt));
    bx_trainer_free(tr);
    bx_module_free(cls.net);

    /* ---- run 2: new process state, resume from "last" ---- */
    ex_classifier cls2 = {ex_net_new(123), 1e-3}; /* its weights get overwritten */
    bx_model model2 = {&EX_CLASSIFIER_OPS, &cls2};
    tr = make_trainer(a.epochs + 2, &ckpt);
    if (!tr) EX_CHECK(BX_ERR_INVALID);
    EX_CHECK(bx_trainer_fit(tr, &model2, train, val, "last"));
    printf("run 2: resumed from %s, now %lld epochs, %lld steps, best val_loss %.4f\n",
           bx_trainer_ckpt_path(tr), (long long)bx_trainer_current_epoch(tr),
           (long long)bx_trainer_global_step(tr), bx_model_checkpoint_best_model_score(ckpt));

    /* test with the best weights: pass the best checkpoint's path as ckpt_path */
    EX_CHECK(bx_trainer_test(tr, &model2, val, bx_model_checkpoint_best_model_path(ckpt)));
    double acc;
    EX_CHECK(bx_trainer_metric(tr, "test_acc", &acc));
    printf("test_acc of the best checkpoint: %.3f\n", acc);

    bx_trainer_free(tr);
    bx_module_free(cls2.net);
    bx_loader_free(train);
    bx_loader_free(val);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return 0;
}
