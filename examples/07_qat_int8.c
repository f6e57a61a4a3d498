/* 07_qat_int8.c - quantization-aware training with the
 * QuantizationAwareTraining callback, then int8 inference.
 *
 *   blixt-ex-07-qat-int8 [--data DIR] [--epochs N]
 *
 *   1. a model whose forward calls its layers by name (the callback adds
 *      "quant"/"dequant" children to the root, so the root must not be a
 *      Sequential);
 *   2. fit it with the QuantizationAwareTraining callback (qat.h): it fuses
 *      fc1+relu, trains with fake-quantised weights and activations, and at
 *      the end of fit converts the model in place to int8 layers
 *      (QuantizedLinearReLU, QuantizedLinear: u8 activations, s8 weights);
 *   3. test the int8 model with the same Trainer (float in, float out);
 *   4. save it as an int8 file, load it back and check its accuracy.
 * bench/bench_qat.c measures the same path on the full data set. */
#include "example_common.h"

// x (N,784) -> logits (N,10)
static bx_tensor *net_forward(bx_module *m, bx_step *st, bx_tensor *x) {
    x = bx_module_forward(bx_module_child(m, "fc1"), st, x);
    x = bx_module_forward(bx_module_child(m, "relu"), st, x);
    return bx_module_forward(bx_module_child(m, "fc2"), st, x);
}
static const bx_module_type NET = {"Net", net_forward, NULL, NULL, NULL, NULL};

int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 2)) return 2;
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *test = ex_loader(test_ds, false);

    /* ---- 1: the float model ---- */
    bx_rng rng;
    bx_rng_init(&rng, 0);
    bx_module *net = bx_module_new(&NET, NULL);
    EX_CHECK(bx_module_add_child(net, "fc1", bx_nn_linear(784, 128, true, &rng)));
    EX_CHECK(bx_module_add_child(net, "relu", bx_nn_relu()));
    EX_CHECK(bx_module_add_child(net, "fc2", bx_nn_linear(128, 10, true, &rng)));
    ex_classifier cls = {net, 1e-3};
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};

    /* ---- 2: QAT with the callback; int8 at the end of fit ---- */
    bx_qat_fuse_group fuse[1] = {{{"fc1", "relu", NULL}}};
    bx_qat_opts qo = BX_QAT_OPTS_INIT;
    qo.qconfig = "x86";
    qo.modules_to_fuse = fuse;
    qo.num_modules_to_fuse = 1;
    bx_callback *qat = bx_qat_callback_new(&qo);
    if (!qat) EX_CHECK(BX_ERR_INVALID);
    bx_trainer_opts o = ex_trainer_opts("runs/07", a.epochs);
    o.enable_checkpointing = false;
    o.callbacks = &qat;
    o.num_callbacks = 1;
    bx_trainer *tr = bx_trainer_new(&o); /* owns the callback */
    if (!tr) EX_CHECK(BX_ERR_INVALID);
    EX_CHECK(bx_trainer_fit(tr, &model, train, test, NULL));
    double acc_fq = 0, acc_int8 = 0;
    bx_trainer_metric(tr, "val_acc", &acc_fq); /* the fake-quantised model, last epoch */
    printf("after fit: fc1 is a %s, fc2 a %s\n", bx_module_type_name(bx_module_child(net, "fc1")),
           bx_module_type_name(bx_module_child(net, "fc2")));

    /* ---- 3: test the int8 model ---- */
    EX_CHECK(bx_trainer_test(tr, &model, test, NULL));
    bx_trainer_metric(tr, "test_acc", &acc_int8);
    printf("test accuracy: fake-quantised %.3f, int8 %.3f\n", acc_fq, acc_int8);

    /* ---- 4: an int8 file: quant -> fc1 -> fc2 -> dequant ---- */
    bx_module *seq = bx_nn_sequential(), *loaded = NULL;
    static const char *const order[] = {"quant", "fc1", "fc2", "dequant"};
    for (int i = 0; i < 4; i++) EX_CHECK(bx_sequential_append(seq, bx_module_clone(bx_module_child(net, order[i]))));
    EX_CHECK(bx_quant_save(seq, "model.int8.safetensors"));
    EX_CHECK(bx_quant_load("model.int8.safetensors", &loaded));
    cls.net = loaded; /* the same LightningModule, now on the loaded int8 Sequential */
    EX_CHECK(bx_trainer_test(tr, &model, test, NULL));
    double acc_loaded = 0;
    bx_trainer_metric(tr, "test_acc", &acc_loaded);
    printf("loaded int8 file: test accuracy %.3f\n", acc_loaded);

    bx_trainer_free(tr); /* frees the callback: after the last forward of net */
    bx_module_free(loaded);
    bx_module_free(seq);
    bx_module_free(net);
    bx_loader_free(train);
    bx_loader_free(test);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return acc_loaded == acc_int8 ? 0 : 1;
}
