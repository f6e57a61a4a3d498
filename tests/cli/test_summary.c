/* test_summary.c - the model summary table is Lightning 1.9.5's text
 * (expected strings produced by pytorch_lightning.utilities.model_summary's
 * get_human_readable_count and _format_summary_table), the count
 * formatting, frozen parameters counted as non-trainable, and the registry
 * builds each model. */
#include "cli/cli_int.h"
#include "test_util.h"

#include <string.h>

static void test_counts(void) {
    static const struct {
        int64_t n;
        const char *want;
    } CASES[] = {{0, "0  "},           {7, "7  "},         {999, "999  "},    {1000, "1.0 K"},
                 {1234, "1.2 K"},      {99999, "100.0 K"}, {235146, "235 K"}, {1234567, "1.2 M"},
                 {12345678, "12.3 M"}, {999999999, "999 M"}, {1234567890123456LL, "1,234 T"}};
    for (size_t i = 0; i < sizeof CASES / sizeof CASES[0]; i++) {
        char buf[64];
        bx__human_count(CASES[i].n, buf, sizeof buf);
        tu_checks++;
        if (strcmp(buf, CASES[i].want)) {
            tu_failures++;
            fprintf(stderr, "human_count(%lld) = '%s', want '%s'\n", (long long)CASES[i].n, buf, CASES[i].want);
        }
    }
}

static bx_module *build_model(const char *cls, const char *args_yaml) {
    const bx__class *c = bx__registry_find(BX_KIND_MODEL, cls);
    bx_state *given = NULL, *args = NULL;
    if (!c || bx__yaml_parse(args_yaml, strlen(args_yaml), "args", true, &given) != BX_OK) return NULL;
    bx__model_out out = {NULL};
    bx__build_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    bx_rng_init(&ctx.rng, 1);
    if (bx__params_resolve(c->params, c->nparams, given, "model.init_args", &args) == BX_OK)
        c->build(c, args, "model.init_args", &ctx, &out);
    bx_state_free(given);
    bx_state_free(args);
    return out.module;
}

static void test_table(void) {
    bx_module *m = build_model("MLP", "{sizes: [784, 20, 10]}");
    CHECK(m != NULL);
    if (!m) return;
    char *s = bx__model_summary(m);
    const char *want =
        "  | Name    | Type    | Params\n------------------------------------\n0 | flatten | Flatten | 0     \n"
        "1 | fc1     | Linear  | 15.7 K\n2 | act1    | ReLU    | 0     \n3 | fc2     | Linear  | 210   \n"
        "------------------------------------\n15.9 K    Trainable params\n0         Non-trainable params\n"
        "15.9 K    Total params\n0.064     Total estimated model params size (MB)";
    tu_checks++;
    if (!s || strcmp(s, want)) {
        tu_failures++;
        fprintf(stderr, "summary:\n%s\nwant:\n%s\n", s ? s : "(null)", want);
    }
    bx__free(s);
    /* frozen layer: non-trainable */
    bx_module_requires_grad(bx_module_child(m, "fc1"), false);
    s = bx__model_summary(m);
    CHECK(s && strstr(s, "\n210       Trainable params\n15.7 K    Non-trainable params\n15.9 K    Total params"));
    bx__free(s);
    bx_module_free(m);
}

static void test_models(void) {
    bx_module *m = build_model("LeNet", "{}");
    CHECK(m && bx_module_num_params(m, false) == 61706); /* torch LeNet-5 (padding 2) on 28x28 */
    bx_module_free(m);
    m = build_model("ResNet", "{widths: [4, 8], num_classes: 3}");
    CHECK(m && bx_module_child(m, "layer2") != NULL && bx_module_child(m, "fc") != NULL);
    /* a forward pass on (2,1,8,8) gives (2,3) */
    if (m) {
        bx_step *st = bx_step_new();
        int64_t xs[4] = {2, 1, 8, 8};
        bx_tensor *x = bx_step_tensor(st, BX_F32, 4, xs);
        bx_fill(x, 0.5);
        bx_tensor *y = bx_module_forward(m, st, x);
        CHECK(y && y->ndim == 2 && y->shape[0] == 2 && y->shape[1] == 3);
        bx_step_free(st);
    }
    bx_module_free(m);
}

int main(void) {
    test_counts();
    test_table();
    test_models();
    return tu_finish("cli/summary");
}
