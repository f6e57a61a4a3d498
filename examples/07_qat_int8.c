/* 07_qat_int8.c - quantization-aware training, then int8 inference.
 *
 *   blixt-ex-07-qat-int8 [--data DIR] [--epochs N]
 *
 * There is no QAT callback yet, so this uses the quantization engine
 * (quant.h, docs/quantization-engine.md) directly, as torch.ao does:
 *   1. build quant -> fc1 -> relu -> fc2 -> dequant and prepare it for QAT
 *      (fake-quantised weights and activations; fc1+relu fused);
 *   2. train it with the Trainer like any model (01's ops table);
 *   3. convert: Quantize -> QuantizedLinearReLU -> QuantizedLinear ->
 *      DeQuantize, int8 weights with u8 activations (oneDNN u8 x s8 matmul);
 *   4. save it, load it back and compare its test accuracy with the
 *      fake-quantised float model's. */
#include "example_common.h"

/* Test accuracy of `net` (any module mapping (N,784) f32 -> (N,10) f32). */
static double accuracy(bx_module *net, bx_loader *test) {
    bx_step *st = bx_step_new();
    bx_batch b;
    double ok = 0, n = 0;
    bx_module_train(net, false);
    bx_no_grad_push(st);
    for (int64_t i = 0; i < bx_loader_len(test); i++) {
        if (bx_loader_batch(test, st, i, &b) != BX_OK) break;
        ok += ex_accuracy(bx_module_forward(net, st, b.x), b.y) * (double)b.size;
        n += (double)b.size;
        bx_step_reset(st);
    }
    bx_no_grad_pop(st);
    bx_step_free(st);
    return n > 0 ? ok / n : 0.0;
}

int main(int argc, char **argv) {
    ex_args a;
    if (ex_parse(argc, argv, &a, 2)) return 2;
    bx_dataset *train_ds, *test_ds;
    EX_CHECK(ex_dataset(a.data, "train", &train_ds));
    EX_CHECK(ex_dataset(a.data, "t10k", &test_ds));
    bx_loader *train = ex_loader(train_ds, true), *test = ex_loader(test_ds, false);

    /* ---- 1: the float model, prepared for QAT (fbgemm/x86 qconfig) ---- */
    bx_qconfig qc;
    EX_CHECK(bx_qconfig_default_qat("x86", 1, &qc));
    bx_rng rng;
    bx_rng_init(&rng, 0);
    bx_module *net = bx_nn_sequential(); /* children run in the order added */
    EX_CHECK(bx_module_add_child(net, "quant", bx_qat_quant_stub(&qc)));
    EX_CHECK(bx_module_add_child(net, "fc1", bx_nn_linear(784, 128, true, &rng)));
    EX_CHECK(bx_module_add_child(net, "relu", bx_nn_relu()));
    EX_CHECK(bx_module_add_child(net, "fc2", bx_nn_linear(128, 10, true, &rng)));
    EX_CHECK(bx_module_add_child(net, "dequant", bx_qat_dequant_stub()));
    EX_CHECK(bx_qat_fuse_linear_relu(net, "fc1", "relu", &qc));
    EX_CHECK(bx_qat_prepare_layer(bx_module_find(net, "fc2"), &qc, false));

    /* ---- 2: train with the Trainer (observers learn the ranges as it goes) ---- */
    ex_classifier cls = {net, 1e-3};
    bx_model model = {&EX_CLASSIFIER_OPS, &cls};
    bx_trainer_opts o = ex_trainer_opts("runs/07", a.epochs);
    o.enable_checkpointing = false;
    bx_trainer *tr = bx_trainer_new(&o);
    if (!tr) EX_CHECK(BX_ERR_INVALID);
    EX_CHECK(bx_trainer_fit(tr, &model, train, test, NULL));
    bx_trainer_free(tr);
    double acc_fq = accuracy(net, test);

    /* ---- 3: convert to a real int8 model (a new module; net is unchanged) ---- */
    bx_module *q;
    EX_CHECK(bx_quant_convert(net, &q));
    double scale;
    int64_t zp;
    bx_quant_module_qparams(bx_module_child_at(q, 0, NULL), &scale, &zp);
    printf("input quantised as u8 with scale %.5f, zero point %lld\n", scale, (long long)zp);

    /* ---- 4: save, load back, run int8 inference ---- */
    EX_CHECK(bx_quant_save(q, "model.int8.safetensors"));
    bx_module *q2;
    EX_CHECK(bx_quant_load("model.int8.safetensors", &q2));
    double acc_int8 = accuracy(q2, test);
    printf("test accuracy: fake-quantised float %.3f, int8 %.3f\n", acc_fq, acc_int8);

    bx_module_free(q);
    bx_module_free(q2);
    bx_module_free(net);
    bx_loader_free(train);
    bx_loader_free(test);
    bx_dataset_free(train_ds);
    bx_dataset_free(test_ds);
    return 0;
}
