/* 04_finetune_backbone.c - transfer learning: a pretrained backbone loaded
 * from a safetensors file, frozen, then unfrozen by BackboneFinetuning.
 *
 *   blixt-ex-04-finetune-backbone [--data DIR] [--epochs N]
 *
 * Step 1 "pretrains" the model for one epoch and writes only its `backbone`
 * child (784 -> 128) to backbone.safetensors, the format Hugging Face and
 * PyTorch use for weights. Step 2 builds a fresh model, loads that file into
 * its backbone, and fits with BackboneFinetuning: the backbone is frozen
 * (only the new head trains) until epoch 1, then joins the optimizer as a
 * new param group at lr * 0.1 that doubles each epoch (capped at the head's lr). */
#include "example_common.h"

/* Trains `m` for `epochs` with the given callbacks (taken over). */
static bx_status fit(bx_model *m, bx_loader *train, bx_loader *val, int64_t epochs, bx_callback **cbs, int ncb) {
    bx_trainer_opts o = ex_trainer_opts("runs/04", epochs);
    o.enable_checkpointing = false;
    o.callbacks = cbs;
    o.num_callbacks = ncb;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) return BX_ERR_INVALID;
    bx_status s = bx_trainer_fit(tr, m, train, val, NULL);
    double acc = 0;
    if (s == BX_OK) s = bx_trainer_metric(tr, "val_acc", &acc);
    if (s == BX_OK) printf("  val_acc %.3f after %lld epochs\n", acc, (long long)bx_trainer_current_epoch(tr));
    bx_trainer_free(tr);
    return s;
}

/* The tensor lookup bx_module_load_state_dict_lookup asks: names in the file. */
static const bx_tensor *st_lookup(void *ud, const char *name) { return bx_st_get(ud, name); }

int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 3)) return 2;
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *val = ex_loader(test_ds, false);

    /* ---- 1: pretrain, save the backbone's state dict ("0.weight", "0.bias") ---- */
    printf("pretraining:\n");
    ex_classifier pre = {ex_net_new(0), 1e-3};
    bx_model pre_model = {&EX_CLASSIFIER_OPS, &pre};
    EX_CHECK(fit(&pre_model, train, val, 1, NULL, 0));
    bx_named_tensors *sd = bx_module_state_dict(bx_module_child(pre.net, "backbone"));
    bx_st_writer *w = bx_st_writer_new();
    for (int i = 0; i < sd->n; i++) EX_CHECK(bx_st_writer_add(w, sd->names[i], sd->tensors[i]));
    EX_CHECK(bx_st_writer_meta(w, "format", "pt"));
    EX_CHECK(bx_st_writer_write(w, "backbone.safetensors"));
    bx_st_writer_free(w);
    bx_named_tensors_free(sd);
    bx_module_free(pre.net);

    /* ---- 2: a new model (random head), backbone from the file ---- */
    ex_classifier cls = {ex_net_new(7), 1e-3};
    bx_st_file *f;
    EX_CHECK(bx_st_open("backbone.safetensors", &f));
    /* strict: every backbone tensor must be in the file with the right shape */
    EX_CHECK(bx_module_load_state_dict_lookup(bx_module_child(cls.net, "backbone"), st_lookup, f, true));
    bx_st_close(f);

    bx_backbone_finetuning_opts fo = BX_BACKBONE_FINETUNING_OPTS_INIT;
    fo.unfreeze_backbone_at_epoch = 1; /* epoch 0: head only */
    fo.backbone = "backbone";          /* the child's path in the module tree */
    fo.verbose = true;                 /* logs "Current lr: ..., Backbone lr: ..." */
    bx_callback *cbs[1] = {bx_backbone_finetuning_new(&fo)};
    printf("fine-tuning (%lld of %lld parameters trainable before the unfreeze):\n",
           (long long)(bx_module_num_params(cls.net, false) - bx_module_num_params(bx_module_child(cls.net, "backbone"), false)),
           (long long)bx_module_num_params(cls.net, false));
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};
    EX_CHECK(fit(&model, train, val, a.epochs, cbs, 1));

    bx_module_free(cls.net);
    bx_loader_free(train);
    bx_loader_free(val);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return 0;
}
