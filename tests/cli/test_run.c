/* test_run.c - `blixt` end to end, in process: fit one epoch on the shipped
 * tiny dataset into a temp folder (config.yaml, metrics.csv, hparams.yaml,
 * the TensorBoard events and the checkpoints exist; the summary table is
 * printed), test/validate/predict from the checkpoint, --print_config, and
 * every kind of bad command line or config: a message naming the key, the
 * value and what was expected, and no file written. */
#include "cli/cli_int.h"
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char cfg_path[1024], data_root[1024];

static bx_status cli(FILE *out, const char *a1, const char *a2, const char *a3, const char *a4) {
    char root_flag[1200];
    snprintf(root_flag, sizeof root_flag, "--data.init_args.fallback_root=%s", data_root);
    const char *argv[12] = {"blixt", a1, "--config", cfg_path, root_flag};
    int argc = 5;
    if (a2) argv[argc++] = a2;
    if (a3) argv[argc++] = a3;
    if (a4) argv[argc++] = a4;
    return bx_cli_run(argc, (char **)argv, out ? out : stdout);
}

static bool exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* Expects a failure whose message holds the needles, and an empty folder. */
static void expect_fail(const char *why, bx_status want, const char *a2, const char *a3, const char *n1, const char *n2) {
    bx_status s = cli(NULL, "fit", a2, a3, NULL);
    tu_checks++;
    const char *m = bx_errmsg();
    if (s != want || !strstr(m, n1) || (n2 && !strstr(m, n2))) {
        tu_failures++;
        fprintf(stderr, "%s: got %s \"%s\", wanted %s with \"%s\" \"%s\"\n", why, bx_status_str(s), m, bx_status_str(want),
                n1, n2 ? n2 : "");
    }
    tu_checks++;
    if (tu_count_entries(".") != 0) {
        tu_failures++;
        fprintf(stderr, "%s: files were written\n", why);
        tu_rmtree("logs");
    }
}

static void test_bad(void) {
    expect_fail("unknown flag", BX_ERR_INVALID, "--trainers.max_epochs=3", NULL, "unknown flag '--trainers.max_epochs'", "trainer");
    expect_fail("unknown trainer flag", BX_ERR_INVALID, "--trainer.max_epoch=3", NULL, "trainer.max_epoch: unknown key",
                "max_epochs");
    expect_fail("wrong type", BX_ERR_INVALID, "--trainer.max_epochs=three", NULL, "trainer.max_epochs",
                "'three' (a string), expected an int or null");
    expect_fail("unknown callback", BX_ERR_INVALID, "--trainer.callbacks+=EarlyStoping", NULL,
                "trainer.callbacks[1].class_path: got 'EarlyStoping'", "ModelCheckpoint");
    expect_fail("unknown callback option", BX_ERR_INVALID, "--trainer.callbacks+=ModelSummary", "--trainer.callbacks.depth=2",
                "trainer.callbacks[1].init_args.depth: unknown key", "max_depth");
    expect_fail("callback constructor", BX_ERR_INVALID, "--trainer.callbacks+=ModelSummary",
                "--trainer.callbacks.max_depth=-5", "trainer.callbacks[1].init_args", "max_depth -5");
    expect_fail("model vs data", BX_ERR_INVALID, "--model.sizes=[100, 10]", NULL, "model.init_args.sizes[0]: got 100",
                "expected 784");
    expect_fail("classes", BX_ERR_INVALID, "--model.sizes=[784, 5]", NULL, "model.init_args.sizes[1]: got 5",
                "classes");
    expect_fail("optimizer value", BX_ERR_INVALID, "--optimizer.lr=-1", NULL, "optimizer.init_args", "lr");
    expect_fail("scheduler value", BX_ERR_INVALID, "--lr_scheduler=StepLR", "--lr_scheduler.step_size=0",
                "lr_scheduler.init_args", "step_size");
    expect_fail("missing data", BX_ERR_INVALID, "--data.init_args.fallback_root=/nonexistent", NULL,
                "data.init_args.root", "train-images-idx3-ubyte");
    expect_fail("bad split", BX_ERR_INVALID, "--data.val_split=5000", NULL, "data.init_args.val_split: got 5000", "2000");
    expect_fail("no value", BX_ERR_INVALID, "--trainer.max_epochs", NULL, "expected a value", NULL);
    /* OneCycleLR without total_steps: inferred from the Trainer, unless it cannot be */
    expect_fail("one cycle, infinite", BX_ERR_INVALID, "--lr_scheduler=OneCycleLR", "--trainer.max_epochs=-1",
                "lr_scheduler.init_args.total_steps: got null", "training is infinite");
    expect_fail("one cycle, epochs only", BX_ERR_INVALID, "--lr_scheduler=OneCycleLR", "--lr_scheduler.epochs=3",
                "lr_scheduler.init_args.steps_per_epoch: got null", "both epochs and steps_per_epoch");
    expect_fail("one cycle, changing accumulation", BX_ERR_INVALID, "--lr_scheduler=OneCycleLR",
                "--trainer.accumulate_grad_batches={0: 1, 2: 4}", "lr_scheduler.init_args.total_steps",
                "changes at epoch 2");
    expect_fail("hardware flag", BX_ERR_INVALID, "--trainer.precision=16", NULL, "trainer.precision: got 16",
                "Blixt trains in float32");
    expect_fail("bare word", BX_ERR_INVALID, "fast", NULL, "unexpected argument 'fast'", NULL);
    expect_fail("missing config", BX_ERR_IO, "--config", "/nonexistent.yaml", "/nonexistent.yaml", NULL);
    expect_fail("bad yaml value", BX_ERR_INVALID, "--trainer.limit_train_batches={", NULL, "--trainer.limit_train_batches", NULL);
    /* class help */
    {
        FILE *f = tmpfile();
        const char *h[] = {"blixt", "fit", "--optimizer.help", "SGD"};
        CHECK_OK(bx_cli_run(4, (char **)h, f));
        long n = ftell(f);
        rewind(f);
        char buf[4096] = "";
        CHECK(n > 0 && fread(buf, 1, sizeof buf - 1, f) == (size_t)n);
        fclose(f);
        CHECK(strstr(buf, "--optimizer.nesterov") != NULL && strstr(buf, "(default 0.01)") != NULL);
        const char *bad[] = {"blixt", "fit", "--model.help", "VGG"};
        CHECK_ERR(bx_cli_run(4, (char **)bad, stdout), BX_ERR_INVALID, "--model.help: got 'VGG'");
    }
    const char *argv[] = {"blixt", "train"};
    CHECK_ERR(bx_cli_run(2, (char **)argv, stdout), BX_ERR_INVALID, "got 'train', expected one of fit, validate, test, predict");
}

static void test_print_config(void) {
    FILE *f = tmpfile();
    CHECK_OK(cli(f, "fit", "--print_config", "--trainer.max_epochs=4", "--trainer.callbacks+=ModelSummary"));
    long n = ftell(f);
    rewind(f);
    char *buf = calloc(1, (size_t)n + 1);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    bx_state *c = NULL;
    CHECK_OK(bx__yaml_parse(buf, strlen(buf), "printed", true, &c));
    if (c) {
        const bx_state *t = bx_state_get(c, "trainer");
        CHECK_EQ_INT(bx_state_get_int(bx_state_get(t, "max_epochs")), 4);
        CHECK_EQ_INT((int64_t)bx_state_len(bx_state_get(t, "callbacks")), 2);
        CHECK_EQ_INT(bx_state_get_int(bx_state_get(c, "seed_everything")), 1);
        CHECK(bx_state_get(bx_state_get(bx_state_get(c, "optimizer"), "init_args"), "betas") != NULL);
    }
    bx_state_free(c);
    free(buf);
    CHECK_EQ_INT(tu_count_entries("."), 0); /* nothing written */

    /* the shipped example config resolves (every class it names exists) */
    char ex[1200];
    snprintf(ex, sizeof ex, "%s/../../examples/configs/fashion_mnist_mlp.yaml", data_root);
    const char *argv[] = {"blixt", "fit", "--config", ex, "--print_config"};
    f = tmpfile();
    CHECK_OK(bx_cli_run(5, (char **)argv, f));
    fclose(f);
}

    /* OneCycleLR without total_steps: sized from the Trainer's estimated stepping batches
     * (2 epochs x 4 batches = 8 steps), so the last step's lr is the cycle's minimum,
     * max_lr / div_factor / final_div_factor */
static void test_one_cycle_inferred(void) {
    {
        const char *argv[] = {"blixt", "fit", "--config", cfg_path, "--trainer.max_epochs=2",
                              "--trainer.limit_train_batches=4", "--trainer.log_every_n_steps=1",
                              "--trainer.logger=[{class_path: CSVLogger, init_args: {save_dir: logs, name: onecycle}}]",
                              "--trainer.callbacks+=LearningRateMonitor", "--trainer.callbacks.logging_interval=step",
                              "--lr_scheduler=OneCycleLR", "--lr_scheduler.max_lr=0.01", NULL};
        char root_flag[1200];
        snprintf(root_flag, sizeof root_flag, "--data.init_args.fallback_root=%s", data_root);
        argv[12] = root_flag;
        CHECK_OK(bx_cli_run(13, (char **)argv, stdout));
        FILE *f = fopen("logs/onecycle/version_0/metrics.csv", "r");
        CHECK(f != NULL);
        char line[1024], head[1024] = "";
        int col = -1, rows = 0;
        double last = -1;
        while (f && fgets(line, sizeof line, f)) {
            if (!head[0]) {
                snprintf(head, sizeof head, "%s", line);
                int c = 0;
                for (char *p = strtok(head, ",\r\n"); p; p = strtok(NULL, ",\r\n"), c++)
                    if (!strcmp(p, "lr-Adam")) col = c;
                continue;
            }
            char *p = line;
            for (int c = 0; c < col && p; c++) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
            if (p && *p && *p != ',' && *p != '\r') {
                last = strtod(p, NULL);
                rows++;
            }
        }
        if (f) fclose(f);
        CHECK(col >= 0);
        CHECK_EQ_INT(rows, 8);
        CHECK_NEAR(last, 0.01 / 25.0 / 1e4, 1e-9);
    }
}

static void test_fit_and_more(void) {
    CHECK_OK(cli(NULL, "fit", "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor=val_loss", NULL));
    const char *run = "logs/tiny/version_0";
    char p[1200];
    static const char *const FILES[] = {"config.yaml", "metrics.csv", "hparams.yaml", "checkpoints/last.ckpt"};
    for (int i = 0; i < 4; i++) {
        snprintf(p, sizeof p, "%s/%s", run, FILES[i]);
        tu_checks++;
        if (!exists(p)) {
            tu_failures++;
            fprintf(stderr, "missing %s\n", p);
        }
    }
    /* the loggers share the version: one run folder */
    CHECK_EQ_INT(tu_count_entries("logs/tiny"), 1);
    CHECK(tu_count_entries("logs/tiny/version_0/checkpoints") == 2); /* best + last */
    /* EarlyStopping added from the command line is in the saved config */
    bx_state *saved = NULL;
    CHECK_OK(bx__yaml_load_file("logs/tiny/version_0/config.yaml", &saved));
    CHECK(saved && bx_state_get_int(bx_state_get(bx_state_get(saved, "trainer"), "max_epochs")) == 1);
    const bx_state *es = saved ? bx_state_at(bx_state_get(bx_state_get(saved, "trainer"), "callbacks"), 1) : NULL;
    CHECK(es && !strcmp(bx_state_get_string(bx_state_get(es, "class_path")), "EarlyStopping"));
    CHECK(es && !strcmp(bx_state_get_string(bx_state_get(bx_state_get(es, "init_args"), "monitor")), "val_loss"));
    bx_state_free(saved);
    /* val_acc in metrics.csv */
    FILE *f = fopen("logs/tiny/version_0/metrics.csv", "r");
    char line[512] = "";
    CHECK(f && fgets(line, sizeof line, f));
    if (f) fclose(f);
    CHECK(strstr(line, "val_acc") != NULL && strstr(line, "val_loss") != NULL);

    /* test / validate / predict from the checkpoint */
    CHECK_OK(cli(NULL, "test", "--ckpt_path=logs/tiny/version_0/checkpoints/last.ckpt", NULL, NULL));
    CHECK_OK(cli(NULL, "validate", "--ckpt_path=logs/tiny/version_0/checkpoints/last.ckpt", NULL, NULL));
    CHECK_OK(cli(NULL, "predict", "--ckpt_path=logs/tiny/version_0/checkpoints/last.ckpt", NULL, NULL));
    CHECK(exists("logs/tiny/version_3/predictions.csv"));
    /* the saved config.yaml reproduces itself: --print_config of it is the same text */
    {
        const char *argv[] = {"blixt", "fit", "--config", "logs/tiny/version_0/config.yaml", "--print_config"};
        FILE *pf = tmpfile();
        CHECK_OK(bx_cli_run(5, (char **)argv, pf));
        long n = ftell(pf);
        rewind(pf);
        char *a = calloc(1, (size_t)n + 1), *b = calloc(1, 1 << 16);
        CHECK(fread(a, 1, (size_t)n, pf) == (size_t)n);
        fclose(pf);
        FILE *g = fopen("logs/tiny/version_0/config.yaml", "r");
        size_t m = g ? fread(b, 1, (1 << 16) - 1, g) : 0;
        if (g) fclose(g);
        CHECK(m > 0 && !strcmp(a, b));
        free(a);
        free(b);
    }
    /* a CSV table: 3 separable classes of 4 features */
    {
        FILE *cf = fopen("t.csv", "w");
        fprintf(cf, "a,b,c,d,label\n");
        bx_rng r;
        bx_rng_init(&r, 3);
        for (int i = 0; i < 300; i++) {
            int k = i % 3;
            fprintf(cf, "%g,%g,%g,%g,%d\n", k + 0.1 * bx_rng_normal(&r), -k + 0.1 * bx_rng_normal(&r),
                    bx_rng_normal(&r), 0.5 * k, k);
        }
        fclose(cf);
        const char *argv[] = {"blixt", "test", "--data=CSVDataset", "--data.train_file=t.csv", "--data.test_file=t.csv",
                              "--model.sizes=[4, 8, 3]", "--trainer.enable_progress_bar=false"};
        CHECK_OK(bx_cli_run(7, (char **)argv, stdout));
        const char *bad[] = {"blixt", "fit", "--data=CSVDataset", "--data.train_file=t.csv", "--model.sizes=[5, 3]"};
        CHECK_ERR(bx_cli_run(5, (char **)bad, stdout), BX_ERR_INVALID, "model.init_args.sizes[0]: got 5, expected 4");
        remove("t.csv");
    }
    /* explicit IDX files */
    {
        char ti[1200], tl[1200];
        snprintf(ti, sizeof ti, "--data.train_images=%s/train-images-idx3-ubyte.gz", data_root);
        snprintf(tl, sizeof tl, "--data.train_labels=%s/train-labels-idx1-ubyte.gz", data_root);
        const char *argv[] = {"blixt", "fit", "--data=IDXDataset", ti, tl, "--trainer.fast_dev_run=true",
                              "--trainer.enable_progress_bar=false"};
        CHECK_OK(bx_cli_run(7, (char **)argv, stdout));
        const char *bad[] = {"blixt", "fit", "--data=IDXDataset", "--data.train_images=nope.idx"};
        CHECK_ERR(bx_cli_run(4, (char **)bad, stdout), BX_ERR_INVALID,
                  "data.init_args.train_images: got 'nope.idx', expected an existing IDX file");
    }
    /* the callbacks of cb2 and ft from the command line, accumulate_grad_batches as a mapping */
    {
        const char *argv[] = {"blixt", "fit", "--config", cfg_path, "--trainer.max_epochs=2",
                              "--trainer.limit_train_batches=4", "--trainer.callbacks+=LearningRateMonitor",
                              "--trainer.callbacks+=BackboneFinetuning", "--trainer.callbacks.backbone=fc1",
                              "--trainer.callbacks.unfreeze_backbone_at_epoch=1",
                              "--trainer.accumulate_grad_batches={0: 1, 1: 2}", "--lr_scheduler=StepLR"};
        char root_flag[1200];
        snprintf(root_flag, sizeof root_flag, "--data.init_args.fallback_root=%s", data_root);
        const char *all[13];
        memcpy(all, argv, sizeof argv);
        all[12] = root_flag;
        CHECK_OK(bx_cli_run(13, (char **)all, stdout));
        const char *bad[] = {"blixt", "fit", "--trainer.accumulate_grad_batches={a: 2}"};
        CHECK_ERR(bx_cli_run(3, (char **)bad, stdout), BX_ERR_INVALID, "trainer.accumulate_grad_batches: got the entry 'a'");
    }
    test_one_cycle_inferred();
    /* LeNet and ResNet build and run a few batches */
    CHECK_OK(cli(NULL, "fit", "--model=LeNet", "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=1"));
    CHECK_OK(cli(NULL, "fit", "--model=ResNet", "--model.widths=[4, 8]", "--trainer.fast_dev_run=1"));
    /* CNN: by default exactly bench/'s network (conv 32, conv 64, fc 128, fc 10: 421642 parameters) */
    {
        CHECK_OK(cli(NULL, "fit", "--model=CNN", "--trainer.fast_dev_run=1", NULL));
        bx__build_ctx ctx;
        memset(&ctx, 0, sizeof ctx);
        bx_rng_init(&ctx.rng, 1);
        const bx__class *c = bx__registry_find(BX_KIND_MODEL, "CNN");
        bx_state *args = NULL;
        CHECK(c && bx__params_resolve(c->params, c->nparams, NULL, "model.init_args", &args) == BX_OK);
        bx__model_out mo = {NULL};
        if (c && args) CHECK_OK(c->build(c, args, "model.init_args", &ctx, &mo));
        bx_named_tensors *ps = mo.module ? bx_module_named_parameters(mo.module) : NULL;
        int64_t n = 0;
        for (int i = 0; ps && i < ps->n; i++) n += bx_numel(ps->tensors[i]);
        CHECK_EQ_INT(n, 32 * 9 + 32 + 64 * 32 * 9 + 64 + 64 * 7 * 7 * 128 + 128 + 128 * 10 + 10);
        CHECK(ps && ps->n == 8 && !strcmp(ps->names[0], "conv1.weight") && !strcmp(ps->names[6], "fc2.weight"));
        bx_named_tensors_free(ps);
        bx_module_free(mo.module);
        bx_state_free(args);
        CHECK_ERR(cli(NULL, "fit", "--model=CNN", "--model.kernel_size=4", NULL), BX_ERR_INVALID,
                  "model.init_args.kernel_size: got 4");
    }
    tu_rmtree("logs");
}

int main(void) {
    const char *src = getenv("BLIXT_TEST_DATA"); /* the tests/ folder */
    char base[1024];
    if (!src || !realpath(src, base)) snprintf(base, sizeof base, "%s", "tests");
    snprintf(cfg_path, sizeof cfg_path, "%s/cli/tiny_mlp.yaml", base);
    snprintf(data_root, sizeof data_root, "%s/../data/tiny-fashion", base);
    char tmp[] = "/tmp/blixt_cli_XXXXXX";
    if (!mkdtemp(tmp) || chdir(tmp) != 0) {
        fprintf(stderr, "cannot make a temp folder\n");
        return 1;
    }
    test_bad();
    test_print_config();
    test_fit_and_more();
    if (chdir("/") != 0) return 1;
    tu_rmtree(tmp);
    return tu_finish("cli/run");
}
