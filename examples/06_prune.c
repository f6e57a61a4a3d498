/* 06_prune.c - ModelPruning: train while zeroing the smallest weights, then
 * load the saved checkpoint into a plain, never-pruned model.
 *
 *   blixt-ex-06-prune [--data DIR] [--epochs N]
 *
 * After every training epoch the callback removes 40 % of the remaining
 * weights of backbone.0 and head with the smallest |w|, chosen globally
 * (over both layers as one vector: torch's global_unstructured + L1). While
 * training, each pruned layer computes weight = weight_orig * weight_mask.
 * make_pruning_permanent (the default) turns them back into plain `weight`
 * tensors holding zeros at train end, and checkpoints always store that
 * plain view, so they load strictly into the unpruned architecture. */
#include "example_common.h"

/* The tensor lookup of bx_module_load_state_dict_lookup: ckpt["state_dict"][name]. */
static const bx_tensor *sd_lookup(void *ud, const char *name) {
    const bx_state *t = bx_state_get(ud, name);
    return t ? bx_state_get_tensor(t) : NULL;
}

/* Zeros among `path`'s weight. */
static int64_t zeros(bx_module *net, const char *path, int64_t *numel) {
    bx_tensor *w = bx_module_param(bx_module_find(net, path), "weight");
    int64_t z = 0;
    *numel = bx_numel(w);
    for (int64_t i = 0; i < *numel; i++) z += bx_get(w, i) == 0.0;
    return z;
}

int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 3)) return 2;
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *val = ex_loader(test_ds, false);
    ex_classifier cls = {ex_net_new(0), 1e-3};
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};

    static const bx_pruning_param targets[] = {{"backbone.0", "weight"}, {"head", "weight"}};
    bx_model_pruning_opts po = BX_MODEL_PRUNING_OPTS_INIT;
    po.pruning_fn = "l1_unstructured";
    po.parameters_to_prune = targets;     /* NULL would discover every weight and bias */
    po.num_parameters_to_prune = 2;
    po.use_global_unstructured = true;
    po.amount = BX_PRUNE_FRACTION(0.4);   /* of the weights still unpruned, each epoch */
    po.use_lottery_ticket_hypothesis = false; /* keep the trained survivors */
    po.verbose = 1;                       /* "Applied `L1Unstructured`. Pruned: ..." */
    bx_model_checkpoint_opts mo = BX_MODEL_CHECKPOINT_OPTS_INIT;
    mo.dirpath = "runs/06/ckpt";
    mo.save_last = 1;
    bx_callback *cbs[2] = {bx_model_pruning_new(&po), bx_model_checkpoint_new(&mo)};
    bx_trainer_opts o = ex_trainer_opts("runs/06", a.epochs);
    o.callbacks = cbs;
    o.num_callbacks = 2;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) EX_CHECK(BX_ERR_INVALID);
    EX_CHECK(bx_trainer_fit(tr, &model, train, val, NULL));
    double acc;
    EX_CHECK(bx_trainer_metric(tr, "val_acc", &acc));
    int64_t n0, n1, z0 = zeros(cls.net, "backbone.0", &n0), z1 = zeros(cls.net, "head", &n1);
    printf("pruned model: val_acc %.3f, backbone.0 %lld/%lld zeros, head %lld/%lld zeros\n", acc,
           (long long)z0, (long long)n0, (long long)z1, (long long)n1);
    bx_trainer_free(tr);

    /* A plain model of the same architecture takes the checkpoint's weights:
     * the checkpoint is a dict; its "state_dict" maps "backbone.0.weight" etc. */
    bx_state *ckpt;
    EX_CHECK(bx_checkpoint_read("runs/06/ckpt/last.ckpt", &ckpt));
    bx_module *plain = ex_net_new(99);
    EX_CHECK(bx_module_load_state_dict_lookup(plain, sd_lookup, bx_state_get(ckpt, "state_dict"), true));
    z0 = zeros(plain, "backbone.0", &n0);
    printf("plain model from last.ckpt: backbone.0 %lld/%lld zeros\n", (long long)z0, (long long)n0);
    bx_state_free(ckpt);

    bx_module_free(plain);
    bx_module_free(cls.net);
    bx_loader_free(train);
    bx_loader_free(val);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return 0;
}
