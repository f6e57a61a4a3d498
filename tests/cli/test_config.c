/* test_config.c - the CLI config: YAML parsing (types, quoting, errors with
 * line numbers), the emitter round trip, merging, dotted overrides (=, +=,
 * list items, class shorthand) and resolution (defaults, type errors,
 * unknown keys and classes, each message naming key, value and expectation). */
#include "cli/cli_int.h"
#include "test_util.h"

#include <string.h>

static bx_state *parse(const char *text) {
    bx_state *s = NULL;
    bx_status st = bx__yaml_parse(text, strlen(text), "t.yaml", true, &s);
    if (st != BX_OK) fprintf(stderr, "parse: %s\n", bx_errmsg());
    return s;
}

static void test_yaml_types(void) {
    bx_state *s = parse("a: 3\nb: 1.5\nc: true\nd: ~\ne: hello\nf: '3'\ng: [1, 2]\nh: {x: 1e-3}\ni: -.inf\nj: 0x10\nk: \"no\"\nl: no\nm: 1.0e-20\n");
    CHECK(s != NULL);
    if (!s) return;
    CHECK(bx_state_typeof(bx_state_get(s, "a")) == BX_STATE_INT);
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(s, "a")), 3);
    CHECK(bx_state_typeof(bx_state_get(s, "b")) == BX_STATE_FLOAT);
    CHECK(bx_state_typeof(bx_state_get(s, "c")) == BX_STATE_BOOL && bx_state_get_bool(bx_state_get(s, "c")));
    CHECK(bx_state_typeof(bx_state_get(s, "d")) == BX_STATE_NULL);
    CHECK(!strcmp(bx_state_get_string(bx_state_get(s, "e")), "hello"));
    CHECK(bx_state_typeof(bx_state_get(s, "f")) == BX_STATE_STRING); /* quoted stays a string */
    CHECK_EQ_INT((int64_t)bx_state_len(bx_state_get(s, "g")), 2);
    CHECK_NEAR(bx_state_get_float(bx_state_get(bx_state_get(s, "h"), "x")), 1e-3, 1e-12);
    CHECK(bx_state_get_float(bx_state_get(s, "i")) < -1e308);
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(s, "j")), 16);
    CHECK(bx_state_typeof(bx_state_get(s, "k")) == BX_STATE_STRING);
    CHECK(bx_state_typeof(bx_state_get(s, "l")) == BX_STATE_BOOL);

    /* emit + parse gives the same tree (keys in order, strings that look like numbers quoted) */
    char *text = bx__yaml_emit(s);
    CHECK(text != NULL);
    bx_state *back = text ? parse(text) : NULL;
    CHECK(back && bx_state_typeof(bx_state_get(back, "f")) == BX_STATE_STRING);
    CHECK(back && bx_state_typeof(bx_state_get(back, "k")) == BX_STATE_STRING);
    CHECK(back && !strcmp(bx_state_key_at(back, 0), "a"));
    CHECK(back && bx_state_get_float(bx_state_get(bx_state_get(back, "h"), "x")) == 1e-3);
    CHECK(text && strstr(text, "m: 1.0e-20") != NULL); /* PyYAML reads 1e-03 as a string */
    bx_state_free(back);
    bx__free(text);
    bx_state_free(s);
}

static void test_yaml_errors(void) {
    bx_state *s = NULL;
    const char *bad = "a: 1\nb: [1, 2\n";
    CHECK_ERR(bx__yaml_parse(bad, strlen(bad), "t.yaml", true, &s), BX_ERR_FORMAT, "t.yaml:");
    const char *dup = "a: 1\na: 2\n";
    CHECK_ERR(bx__yaml_parse(dup, strlen(dup), "t.yaml", true, &s), BX_ERR_FORMAT, "duplicate key 'a'");
    CHECK_ERR(bx__yaml_load_file("/nonexistent/cfg.yaml", &s), BX_ERR_IO, "/nonexistent/cfg.yaml");
    CHECK(s == NULL);
}

static void test_overrides(void) {
    bx_state *c = parse("trainer:\n  max_epochs: 5\n  callbacks:\n    - class_path: ModelCheckpoint\nmodel: MLP\n");
    CHECK_OK(bx__config_override(c, "trainer.max_epochs", "3", false));
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(bx_state_get(c, "trainer"), "max_epochs")), 3);
    CHECK_OK(bx__config_override(c, "trainer.callbacks", "ModelSummary", true));
    CHECK_OK(bx__config_override(c, "trainer.callbacks.max_depth", "2", false));
    bx_state *cbs = bx_state_get(bx_state_get(c, "trainer"), "callbacks");
    CHECK_EQ_INT((int64_t)bx_state_len(cbs), 2);
    bx_state *last = bx_state_at(cbs, 1);
    CHECK(!strcmp(bx_state_get_string(bx_state_get(last, "class_path")), "ModelSummary"));
    CHECK_EQ_INT(bx_state_get_int(bx_state_get(bx_state_get(last, "init_args"), "max_depth")), 2);
    /* an index picks an item */
    CHECK_OK(bx__config_override(c, "trainer.callbacks.0.monitor", "val_loss", false));
    CHECK(!strcmp(bx_state_get_string(bx_state_get(bx_state_get(bx_state_at(cbs, 0), "init_args"), "monitor")), "val_loss"));
    /* "model: MLP" then an option: the name becomes a class spec */
    CHECK_OK(bx__config_override(c, "model.sizes", "[4, 3]", false));
    bx_state *m = bx_state_get(c, "model");
    CHECK(bx_state_typeof(m) == BX_STATE_DICT && !strcmp(bx_state_get_string(bx_state_get(m, "class_path")), "MLP"));
    CHECK_EQ_INT((int64_t)bx_state_len(bx_state_get(bx_state_get(m, "init_args"), "sizes")), 2);
    /* a new class drops the old options */
    CHECK_OK(bx__config_override(c, "model", "LeNet", false));
    m = bx_state_get(c, "model");
    CHECK(!strcmp(bx_state_get_string(bx_state_get(m, "class_path")), "LeNet"));
    CHECK_EQ_INT((int64_t)bx_state_len(bx_state_get(m, "init_args")), 0);
    /* logger: true then += makes a list */
    CHECK_OK(bx__config_override(c, "trainer.logger", "true", false));
    CHECK_OK(bx__config_override(c, "trainer.logger", "CSVLogger", true));
    CHECK(bx_state_typeof(bx_state_get(bx_state_get(c, "trainer"), "logger")) == BX_STATE_LIST);
    /* errors */
    CHECK_ERR(bx__config_override(c, "trainer.callbacks.7.x", "1", false), BX_ERR_INVALID, "index 7");
    CHECK_ERR(bx__config_override(c, "trainer.max_epochs", "[1, 2", false), BX_ERR_INVALID, "--trainer.max_epochs");
    bx_state_free(c);

    /* merging a second file: dicts merge, a new class_path drops init_args */
    bx_state *a = parse("model:\n  class_path: MLP\n  init_args: {sizes: [4, 2]}\ntrainer: {max_epochs: 2}\n");
    bx_state *b = parse("model:\n  class_path: LeNet\ntrainer: {min_epochs: 1}\n");
    CHECK_OK(bx__config_merge(a, b));
    CHECK_EQ_INT((int64_t)bx_state_len(bx_state_get(bx_state_get(a, "model"), "init_args")), 0);
    CHECK_EQ_INT((int64_t)bx_state_len(bx_state_get(a, "trainer")), 2);
    bx_state_free(a);
    bx_state_free(b);
}

/* Resolves text; expects failure with every needle in the message. */
static void expect_bad(const char *text, const char *n1, const char *n2, const char *n3) {
    bx_state *raw = parse(text), *r = NULL;
    bx_status s = raw ? bx__config_resolve(raw, &r) : BX_ERR_FORMAT;
    tu_checks++;
    const char *m = bx_errmsg();
    if (s != BX_ERR_INVALID || r || !strstr(m, n1) || (n2 && !strstr(m, n2)) || (n3 && !strstr(m, n3))) {
        tu_failures++;
        fprintf(stderr, "expect_bad(%s): status %s, message \"%s\"; wanted %s / %s / %s\n", text, bx_status_str(s), m,
                n1, n2 ? n2 : "", n3 ? n3 : "");
    }
    bx_state_free(r);
    bx_state_free(raw);
}

static void test_resolve(void) {
    bx_state *raw = parse("seed_everything: 7\ntrainer:\n  max_epochs: 3\n  callbacks: [ModelCheckpoint]\n"
                          "  logger: {class_path: lightning.pytorch.loggers.CSVLogger, init_args: {name: x}}\n"
                          "optimizer: {class_path: torch.optim.SGD, init_args: {lr: 1}}\n"),
             *r = NULL;
    CHECK_OK(bx__config_resolve(raw, &r));
    if (r) {
        const bx_state *t = bx_state_get(r, "trainer");
        CHECK_EQ_INT(bx_state_get_int(bx_state_get(r, "seed_everything")), 7);
        CHECK_EQ_INT(bx_state_get_int(bx_state_get(t, "max_epochs")), 3);
        CHECK_EQ_INT(bx_state_get_int(bx_state_get(t, "log_every_n_steps")), 50); /* default filled */
        const bx_state *cb = bx_state_at(bx_state_get(t, "callbacks"), 0);
        CHECK(!strcmp(bx_state_get_string(bx_state_get(cb, "class_path")), "ModelCheckpoint"));
        CHECK(bx_state_get(bx_state_get(cb, "init_args"), "save_top_k") != NULL);
        const bx_state *lg = bx_state_at(bx_state_get(t, "logger"), 0);
        CHECK(!strcmp(bx_state_get_string(bx_state_get(lg, "class_path")), "CSVLogger"));
        const bx_state *opt = bx_state_get(bx_state_get(r, "optimizer"), "init_args");
        CHECK(bx_state_typeof(bx_state_get(opt, "lr")) == BX_STATE_FLOAT); /* int widened */
        CHECK(!strcmp(bx_state_get_string(bx_state_get(bx_state_get(r, "model"), "class_path")), "MLP"));
        CHECK(!strcmp(bx_state_get_string(bx_state_get(bx_state_get(r, "data"), "class_path")), "FashionMNIST"));
        CHECK(bx_state_typeof(bx_state_get(r, "lr_scheduler")) == BX_STATE_NULL);
    }
    bx_state_free(r);
    bx_state_free(raw);

    /* options without a class belong to the section's default class */
    raw = parse("model: {sizes: [4, 3]}\noptimizer: {init_args: {lr: 0.5}}\n");
    CHECK_OK(bx__config_resolve(raw, &r));
    if (r) {
        const bx_state *m = bx_state_get(r, "model");
        CHECK(!strcmp(bx_state_get_string(bx_state_get(m, "class_path")), "MLP"));
        CHECK_EQ_INT((int64_t)bx_state_len(bx_state_get(bx_state_get(m, "init_args"), "sizes")), 2);
        CHECK_NEAR(bx_state_get_float(bx_state_get(bx_state_get(bx_state_get(r, "optimizer"), "init_args"), "lr")), 0.5, 0);
    }
    bx_state_free(r);
    bx_state_free(raw);

    /* seed_everything: true draws a seed */
    raw = parse("seed_everything: true\n");
    CHECK_OK(bx__config_resolve(raw, &r));
    CHECK(r && bx_state_typeof(bx_state_get(r, "seed_everything")) == BX_STATE_INT);
    bx_state_free(r);
    bx_state_free(raw);

    /* every kind of bad config: the key, the value and what was expected */
    expect_bad("trainer: {max_epochs: abc}\n", "trainer.max_epochs", "'abc' (a string)", "expected an int or null");
    expect_bad("trainer: {max_epoch: 3}\n", "trainer.max_epoch: unknown key", "max_epochs", NULL);
    expect_bad("trainer: {gradient_clip_algorithm: norm2}\n", "trainer.gradient_clip_algorithm", "'norm2'", "norm|value");
    expect_bad("trainer: {callbacks: [{class_path: EarlyStop}]}\n", "trainer.callbacks[0].class_path", "'EarlyStop'",
               "ModelCheckpoint");
    expect_bad("trainer: {callbacks: [{class_path: ModelCheckpoint, init_args: {monitr: x}}]}\n",
               "trainer.callbacks[0].init_args.monitr: unknown key", "monitor", NULL);
    expect_bad("trainer: {callbacks: [{class_path: ModelCheckpoint, init_args: {save_top_k: [1]}}]}\n",
               "trainer.callbacks[0].init_args.save_top_k", "a list of 1 items", "expected an int");
    expect_bad("trainer: {logger: [{class_path: WandbLogger}]}\n", "trainer.logger[0].class_path", "'WandbLogger'",
               "CSVLogger, TensorBoardLogger");
    expect_bad("trainer: {logger: 3}\n", "trainer.logger", "3 (an int)", "expected a logger class");
    expect_bad("model: {class_path: VGG}\n", "model.class_path", "'VGG'", "MLP, LeNet, ResNet");
    expect_bad("model: {class_path: MLP, init_args: {sizes: [784, x]}}\n", "model.init_args.sizes", "a list of 2 items",
               "a list of ints");
    expect_bad("model: {class_path: MLP, foo: 1}\n", "model.foo: unknown key", "class_path + init_args", NULL);
    expect_bad("trainer: {callbacks: [{init_args: {}}]}\n", "trainer.callbacks[0].class_path", "nothing", "ModelCheckpoint");
    expect_bad("model: {sizes: [4, 3], depth: 2}\n", "model.init_args.depth: unknown key", "sizes", NULL);
    expect_bad("data: {class_path: CSVDataset, init_args: {header: maybe}}\n", "data.init_args.header", "'maybe'",
               "a bool");
    expect_bad("optimizer: {class_path: Adam, init_args: {lr: fast}}\n", "optimizer.init_args.lr", "'fast'", "a number");
    expect_bad("lr_scheduler: {class_path: StepLR, init_args: {interval: hour}}\n", "lr_scheduler.init_args.interval",
               "'hour'", "epoch|step");
    expect_bad("lr_scheduler: {class_path: Cosine}\n", "lr_scheduler.class_path", "'Cosine'", "StepLR");
    expect_bad("seed_everything: abc\n", "seed_everything", "'abc'", "an int or a bool");
    expect_bad("ckpt_path: 3\n", "ckpt_path", "3 (an int)", "a path");
    expect_bad("trainers: {}\n", "trainers: unknown key", "trainer", NULL);
}

/* Lightning's hardware flags: the values meaning one CPU process in float32 pass */
static void test_hardware_flags(void) {
    static const char *const GOOD[] = {
        "trainer: {accelerator: cpu, devices: 1, precision: 32, strategy: auto, num_nodes: 1}\n",
        "trainer: {accelerator: auto, devices: auto, precision: '32', strategy: null}\n",
        "trainer: {accelerator: null, devices: '1', precision: 32-true, strategy: single_device}\n",
        "trainer: {devices: [0], accelerator: cpu}\n",
        "trainer: {devices: null, precision: null}\n",
    };
    for (size_t i = 0; i < sizeof GOOD / sizeof GOOD[0]; i++) {
        bx_state *raw = parse(GOOD[i]), *r = NULL;
        bx_status s = bx__config_resolve(raw, &r);
        CHECK_OK(s);
        if (s != BX_OK) fprintf(stderr, "  for %s", GOOD[i]);
        bx_state_free(r);
        bx_state_free(raw);
    }
    /* defaults as Lightning 1.9.5's, present in the resolved (printed, saved) config */
    bx_state *raw = parse("{}\n"), *r = NULL;
    CHECK_OK(bx__config_resolve(raw, &r));
    const bx_state *t = r ? bx_state_get(r, "trainer") : NULL;
    CHECK(t && bx_state_typeof(bx_state_get(t, "accelerator")) == BX_STATE_NULL);
    CHECK(t && bx_state_get_int(bx_state_get(t, "precision")) == 32);
    CHECK(t && bx_state_get_int(bx_state_get(t, "num_nodes")) == 1);
    bx_state_free(r);
    bx_state_free(raw);

    expect_bad("trainer: {accelerator: gpu}\n", "trainer.accelerator: got 'gpu'", "expected 'cpu', 'auto' or null",
               "Blixt trains on the CPU");
    expect_bad("trainer: {accelerator: cuda}\n", "trainer.accelerator", "'cuda'", "not supported");
    expect_bad("trainer: {precision: 16}\n", "trainer.precision: got 16 (an int)", "expected 32, '32' or '32-true'",
               "not supported: Blixt trains in float32");
    expect_bad("trainer: {precision: bf16-mixed}\n", "trainer.precision: got 'bf16-mixed'", "float32", NULL);
    expect_bad("trainer: {precision: 64}\n", "trainer.precision: got 64", "float32", NULL);
    expect_bad("trainer: {devices: 2}\n", "trainer.devices: got 2 (an int)", "expected 1, '1', 'auto', [0] or null",
               "trainer.num_threads");
    expect_bad("trainer: {devices: [0, 1]}\n", "trainer.devices: got a list of 2 items", "one device", NULL);
    expect_bad("trainer: {devices: -1}\n", "trainer.devices: got -1", "expected 1", NULL);
    expect_bad("trainer: {strategy: ddp}\n", "trainer.strategy: got 'ddp'", "expected 'auto', 'single_device' or null",
               "one process");
    expect_bad("trainer: {num_nodes: 2}\n", "trainer.num_nodes: got 2 (an int)", "expected 1", "one machine");
    expect_bad("trainer: {num_nodes: null}\n", "trainer.num_nodes: got", "expected 1", NULL);
}

int main(void) {
    test_hardware_flags();
    test_yaml_types();
    test_yaml_errors();
    test_overrides();
    test_resolve();
    return tu_finish("cli/config");
}
