/* test_callbacks.c - the training-technique callbacks of the CLI registry
 * (StochasticWeightAveraging, EMAWeightAveraging, ModelPruning,
 * QuantizationAwareTraining, GPUStatsMonitor, Timer) and trainer.max_time:
 * each builds from a YAML config and runs a short fit on the shipped tiny
 * dataset, a bad init_arg of each gives a message naming the key, the value
 * and what was expected (and nothing is written), --print_config shows
 * their defaults, and max_time "00:00:00:00" stops a fit before its first
 * step. */
#include "blixt/checkpoint.h"
#include "cli/cli_int.h"
#include "test_util.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char cfg_path[1024], data_root[1024], extra_path[1100];

/* `blixt <cmd> --config tiny_mlp.yaml --config <yaml> [a1] [a2]`, the second
 * config written outside the run folder. */
static bx_status run_yaml(FILE *out, const char *cmd, const char *yaml, const char *a1, const char *a2) {
    FILE *f = fopen(extra_path, "w");
    if (!f) return BX_ERR_IO;
    fputs(yaml, f);
    fclose(f);
    char root_flag[1200];
    snprintf(root_flag, sizeof root_flag, "--data.init_args.fallback_root=%s", data_root);
    const char *argv[10] = {"blixt", cmd, "--config", cfg_path, "--config", extra_path, root_flag};
    int argc = 7;
    if (a1) argv[argc++] = a1;
    if (a2) argv[argc++] = a2;
    return bx_cli_run(argc, (char **)argv, out ? out : stdout);
}

/* A short fit: 2 epochs of 3 batches, one validation batch, no progress bar. */
#define SHORT "trainer:\n  max_epochs: 2\n  limit_train_batches: 3\n  limit_val_batches: 1\n  num_sanity_val_steps: 0\n"

static void expect_ok(const char *why, const char *yaml) {
    bx_status s = run_yaml(NULL, "fit", yaml, NULL, NULL);
    tu_checks++;
    if (s != BX_OK) {
        tu_failures++;
        fprintf(stderr, "%s: got %s \"%s\"\n", why, bx_status_str(s), bx_errmsg());
    }
    tu_rmtree("logs");
}

/* Expects a failure whose message holds the needles, and nothing written. */
static void expect_fail(const char *why, bx_status want, const char *yaml, const char *n1, const char *n2) {
    bx_status s = run_yaml(NULL, "fit", yaml, NULL, NULL);
    tu_checks++;
    const char *m = bx_errmsg();
    if (s != want || !strstr(m, n1) || (n2 && !strstr(m, n2))) {
        tu_failures++;
        fprintf(stderr, "%s: got %s \"%s\", wanted %s with \"%s\" \"%s\"\n", why, bx_status_str(s), m,
                bx_status_str(want), n1, n2 ? n2 : "");
    }
    tu_checks++;
    if (tu_count_entries(".") != 0) {
        tu_failures++;
        fprintf(stderr, "%s: files were written\n", why);
        tu_rmtree("logs");
    }
}

#define CB(x) "  callbacks: [{class_path: " x "}]\n"

static void test_swa_ema(void) {
    expect_ok("swa", SHORT "" CB("StochasticWeightAveraging, init_args: {swa_lrs: 0.01, swa_epoch_start: 1, "
                                          "annealing_epochs: 1, annealing_strategy: linear, device: cpu}"));
    expect_ok("swa list, fraction", SHORT "" CB("lightning.pytorch.callbacks.StochasticWeightAveraging, "
                                                         "init_args: {swa_lrs: [0.02], swa_epoch_start: 0.5, device: null}"));
    expect_fail("swa lrs missing", BX_ERR_INVALID, SHORT "" CB("StochasticWeightAveraging"),
                "trainer.callbacks[0].init_args.swa_lrs: got null", "positive float");
    expect_fail("swa lrs negative", BX_ERR_INVALID,
                SHORT "" CB("StochasticWeightAveraging, init_args: {swa_lrs: [0.1, -1]}"),
                "trainer.callbacks[0].init_args", "swa_lrs[1] = -1");
    expect_fail("swa start", BX_ERR_INVALID,
                SHORT "" CB("StochasticWeightAveraging, init_args: {swa_lrs: 0.1, swa_epoch_start: 0}"),
                "trainer.callbacks[0].init_args", "swa_epoch_start");
    expect_fail("swa strategy", BX_ERR_INVALID,
                SHORT "" CB("StochasticWeightAveraging, init_args: {swa_lrs: 0.1, annealing_strategy: cosine}"),
                "annealing_strategy: got 'cosine' (a string), expected one of", "cos|linear");
    expect_fail("swa avg_fn", BX_ERR_INVALID,
                SHORT "" CB("StochasticWeightAveraging, init_args: {swa_lrs: 0.1, avg_fn: my.avg}"),
                "init_args.avg_fn: got 'my.avg'", "cannot come from a config");
    expect_fail("swa device", BX_ERR_INVALID,
                SHORT "" CB("StochasticWeightAveraging, init_args: {swa_lrs: 0.1, device: cuda}"),
                "init_args.device: got 'cuda'", "'cpu' or null");
    expect_ok("ema", SHORT "" CB("EMAWeightAveraging, init_args: {decay: 0.9, every_n_steps: 2, warmup: true, "
                                          "buffers: average}"));
    expect_fail("ema decay", BX_ERR_INVALID, SHORT "" CB("EMAWeightAveraging, init_args: {decay: 1.5}"),
                "trainer.callbacks[0].init_args", "decay should be in [0, 1], got 1.5");
    expect_fail("ema buffers", BX_ERR_INVALID, SHORT "" CB("EMAWeightAveraging, init_args: {buffers: mean}"),
                "init_args.buffers: got 'mean' (a string), expected one of", "copy|average|keep");
}

static void test_pruning(void) {
    /* pruning renames fc.weight -> fc.weight_orig after the averaged copy was made */
    expect_ok("pruning + swa", SHORT "  callbacks: [{class_path: ModelPruning, init_args: {pruning_fn: l1_unstructured, "
                               "amount: 0.3}}, {class_path: StochasticWeightAveraging, init_args: {swa_lrs: 0.01, "
                               "swa_epoch_start: 1}}]\n");
    expect_ok("pruning + ema", SHORT "  callbacks: [{class_path: ModelPruning, init_args: {pruning_fn: l1_unstructured, "
                               "amount: 0.3}}, {class_path: EMAWeightAveraging, init_args: {decay: 0.9}}]\n");
    expect_ok("pruning global", SHORT "" CB("ModelPruning, init_args: {pruning_fn: l1_unstructured, amount: 0.3, "
                                                     "parameters_to_prune: [[fc1, weight], [fc2, weight]], verbose: 1}"));
    expect_ok("pruning structured", SHORT "" CB("ModelPruning, init_args: {pruning_fn: LN_STRUCTURED, amount: 2, "
                                                         "use_global_unstructured: false, pruning_dim: 0, "
                                                         "pruning_norm: fro, parameter_names: [weight], "
                                                         "make_pruning_permanent: false, "
                                                         "use_lottery_ticket_hypothesis: false}"));
    expect_fail("pruning fn missing", BX_ERR_INVALID, SHORT "" CB("ModelPruning"),
                "trainer.callbacks[0].init_args.pruning_fn: got null", "l1_unstructured");
    expect_fail("pruning fn", BX_ERR_INVALID, SHORT "" CB("ModelPruning, init_args: {pruning_fn: l3_unstructured}"),
                "init_args.pruning_fn: got 'l3_unstructured'", "random_structured");
    expect_fail("pruning pairs", BX_ERR_INVALID,
                SHORT "" CB("ModelPruning, init_args: {pruning_fn: l1_unstructured, parameters_to_prune: [fc1]}"),
                "init_args.parameters_to_prune: got", "[module_path, param_name] pairs");
    expect_fail("pruning dim", BX_ERR_INVALID,
                SHORT "" CB("ModelPruning, init_args: {pruning_fn: random_structured, "
                                      "use_global_unstructured: false}"),
                "trainer.callbacks[0].init_args", "pruning_dim");
    expect_fail("pruning amount", BX_ERR_INVALID,
                SHORT "" CB("ModelPruning, init_args: {pruning_fn: l1_unstructured, amount: 1.5}"),
                "trainer.callbacks[0].init_args.amount: got 1.5", "a fraction in [0, 1]");
    expect_fail("pruning norm", BX_ERR_INVALID,
                SHORT "" CB("ModelPruning, init_args: {pruning_fn: ln_structured, pruning_norm: nuc, "
                                      "pruning_dim: 0, use_global_unstructured: false}"),
                "init_args.pruning_norm: got 'nuc'", "'fro'");
    /* a target that does not exist fails the fit at its start */
    bx_status s = run_yaml(NULL, "fit",
                           SHORT "" CB("ModelPruning, init_args: {pruning_fn: l1_unstructured, "
                                                 "parameters_to_prune: [[fc9, weight]]}"), NULL, NULL);
    CHECK(s != BX_OK && strstr(bx_errmsg(), "fc9") != NULL);
    tu_rmtree("logs");
}

static void test_qat(void) {
    expect_ok("qat", SHORT "" CB("QuantizationAwareTraining, init_args: {qconfig: qnnpack, "
                                          "modules_to_fuse: [[fc1, act1]], collect_quantization: 4, "
                                          "observer_enabled_stages: [train, validate]}"));
    expect_ok("qat histogram", SHORT "" CB("QuantizationAwareTraining, init_args: {observer_type: histogram, "
                                                    "quantize_on_fit_end: false}"));
    expect_fail("qat qconfig", BX_ERR_INVALID, SHORT "" CB("QuantizationAwareTraining, init_args: {qconfig: tensorrt}"),
                "trainer.callbacks[0].init_args.qconfig: got 'tensorrt' (a string), expected one of", "fbgemm|x86|qnnpack|onednn");
    expect_fail("qat observer", BX_ERR_INVALID,
                SHORT "" CB("QuantizationAwareTraining, init_args: {observer_type: minmax}"),
                "init_args.observer_type: got 'minmax' (a string), expected one of", "average|histogram");
    expect_fail("qat collect", BX_ERR_INVALID,
                SHORT "" CB("QuantizationAwareTraining, init_args: {collect_quantization: abc}"),
                "init_args.collect_quantization: got 'abc'", "an int or null");
    expect_fail("qat collect < 0", BX_ERR_INVALID,
                SHORT "" CB("QuantizationAwareTraining, init_args: {collect_quantization: -1}"),
                "init_args.collect_quantization: got -1", "int >= 0");
    expect_fail("qat stages", BX_ERR_INVALID,
                SHORT "" CB("QuantizationAwareTraining, init_args: {observer_enabled_stages: [training]}"),
                "init_args.observer_enabled_stages: got", "train, validate, test, predict");
    expect_fail("qat fuse", BX_ERR_INVALID,
                SHORT "" CB("QuantizationAwareTraining, init_args: {modules_to_fuse: [[fc1]]}"),
                "init_args.modules_to_fuse: got", "groups of 2 or 3 module paths");
}

static void test_gpu_stats(void) {
    /* without NVML (no driver here) the constructor refuses, as Lightning's
     * does without nvidia-smi; with one (no GPU training) the fit fails at
     * train start, or runs */
    bx_status s = run_yaml(NULL, "fit", SHORT "" CB("GPUStatsMonitor, init_args: {intra_step_time: true, "
                                                              "inter_step_time: true, fan_speed: true, temperature: true}"),
                           NULL, NULL);
    tu_checks++;
    if (!(s == BX_OK || (s == BX_ERR_UNSUPPORTED && strstr(bx_errmsg(), "trainer.callbacks[0].init_args: GPUStatsMonitor: NVML")) ||
          (s == BX_ERR_BACKEND && strstr(bx_errmsg(), "GPUStatsMonitor")))) {
        tu_failures++;
        fprintf(stderr, "gpu stats: got %s \"%s\"\n", bx_status_str(s), bx_errmsg());
    }
    tu_rmtree("logs");
    expect_fail("gpu stats flag", BX_ERR_INVALID, SHORT "" CB("GPUStatsMonitor, init_args: {fan_speed: fast}"),
                "trainer.callbacks[0].init_args.fan_speed: got 'fast'", "expected a bool");
    expect_fail("gpu stats key", BX_ERR_INVALID, SHORT "" CB("GPUStatsMonitor, init_args: {gpu_temp: true}"),
                "init_args.gpu_temp: unknown key", "temperature");
}

/* Training steps logged in the run's metrics.csv (log_every_n_steps 1):
 * rows with a train_loss; 0 when the file does not exist. */
static int train_rows(void) {
    FILE *f = fopen("logs/tiny/version_0/metrics.csv", "r");
    if (!f) return 0;
    char line[1024];
    int col = -1, rows = 0;
    for (int r = 0; fgets(line, sizeof line, f); r++) {
        int c = 0;
        char *p = line;
        if (r == 0) {
            for (char *t = strtok(line, ",\r\n"); t; t = strtok(NULL, ",\r\n"), c++)
                if (!strcmp(t, "train_loss")) col = c;
            continue;
        }
        for (; c < col && p; c++) p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL;
        if (col >= 0 && p && *p && *p != ',' && *p != '\r' && *p != '\n') rows++;
    }
    fclose(f);
    return rows;
}

/* global_step of the run's last.ckpt (-1 when none was written) */
static int64_t last_step(void) {
    bx_state *ck = NULL;
    int64_t g = -1;
    if (bx_checkpoint_read("logs/tiny/version_0/checkpoints/last.ckpt", &ck) == BX_OK)
        g = bx_state_get_int(bx_state_get(ck, "global_step"));
    bx_state_free(ck);
    return g;
}

static void test_timer_max_time(void) {
    expect_ok("timer", SHORT "" CB("Timer, init_args: {duration: {minutes: 5, seconds: 30}, interval: epoch, "
                                            "verbose: false}"));
    expect_ok("timer string", SHORT "" CB("Timer, init_args: {duration: \"00:01:00:00\"}"));
    /* a duration of zero stops training before its first step */
    CHECK_OK(run_yaml(NULL, "fit",
                      SHORT "  log_every_n_steps: 1\n  callbacks:\n    - {class_path: Timer, init_args: {duration: \"00:00:00:00\"}}\n"
                            "    - {class_path: ModelCheckpoint, init_args: {save_last: true}}\n",
                      NULL, NULL));
    CHECK_EQ_INT(train_rows(), 0);
    CHECK_EQ_INT(last_step(), -1); /* no epoch ended: no checkpoint */
    tu_rmtree("logs");
    expect_fail("timer duration", BX_ERR_INVALID, SHORT "" CB("Timer, init_args: {duration: 5 minutes}"),
                "trainer.callbacks[0].init_args.duration: got '5 minutes'", "DD:HH:MM:SS");
    expect_fail("timer duration key", BX_ERR_INVALID, SHORT "" CB("Timer, init_args: {duration: {mins: 5}}"),
                "trainer.callbacks[0].init_args.duration.mins: unknown key", "minutes");
    expect_fail("timer interval", BX_ERR_INVALID, SHORT "" CB("Timer, init_args: {interval: batch}"),
                "init_args.interval: got 'batch' (a string), expected one of", "step|epoch");

    /* trainer.max_time: zero stops at once (global step 0); the dict form; bad values before anything runs */
    CHECK_OK(run_yaml(NULL, "fit", SHORT "  log_every_n_steps: 1\n", "--trainer.max_time=00:00:00:00", NULL));
    CHECK_EQ_INT(train_rows(), 0);
    CHECK_EQ_INT(last_step(), -1);
    tu_rmtree("logs");
    CHECK_OK(run_yaml(NULL, "fit", SHORT "  log_every_n_steps: 1\n",
                      "--trainer.max_time={days: 0, hours: 0, minutes: 0, seconds: 0}", NULL));
    CHECK_EQ_INT(train_rows(), 0);
    CHECK_EQ_INT(last_step(), -1);
    tu_rmtree("logs");
    /* the same run with a far limit: every step (the check above can fail) */
    CHECK_OK(run_yaml(NULL, "fit", SHORT "  log_every_n_steps: 1\n  max_time: {hours: 1, minutes: 30}\n", NULL, NULL));
    CHECK_EQ_INT(train_rows(), 6); /* 2 epochs x 3 batches */
    CHECK_EQ_INT(last_step(), 6);
    tu_rmtree("logs");
    expect_fail("max_time string", BX_ERR_INVALID, SHORT "  max_time: 1 hour\n",
                "trainer.max_time: got '1 hour' (a string), expected \"DD:HH:MM:SS\"", "{days, hours, minutes, seconds}");
    expect_fail("max_time number", BX_ERR_INVALID, SHORT "  max_time: 60\n", "trainer.max_time: got 60",
                "DD:HH:MM:SS");
    expect_fail("max_time key", BX_ERR_INVALID, SHORT "  max_time: {hour: 1}\n",
                "trainer.max_time.hour: unknown key", "hours");
    expect_fail("max_time value", BX_ERR_INVALID, SHORT "  max_time: {hours: one}\n",
                "trainer.max_time.hours: got 'one'", "a number");
    expect_fail("max_time negative", BX_ERR_INVALID, SHORT "  max_time: {hours: -1}\n",
                "trainer.max_time: got -3600 seconds", ">= 0");
    /* the dict becomes D:HH:MM:SS */
    char text[64];
    bool none = true;
    bx_state *d = NULL;
    const char *dt = "{days: 1, hours: 2, minutes: 3, seconds: 4.4}";
    CHECK_OK(bx__yaml_parse(dt, strlen(dt), "t", false, &d));
    CHECK_OK(bx__duration_of(d, "x", &none, text, sizeof text));
    CHECK(!none && !strcmp(text, "1:02:03:04"));
    bx_state_free(d);
}

static void test_print_config(void) {
    FILE *f = tmpfile();
    const char *yaml = "trainer:\n  callbacks: [StochasticWeightAveraging, EMAWeightAveraging, ModelPruning, "
                       "QuantizationAwareTraining, GPUStatsMonitor, Timer]\n";
    CHECK_OK(run_yaml(f, "fit", yaml, "--print_config", NULL));
    long n = ftell(f);
    rewind(f);
    char *buf = calloc(1, (size_t)n + 1);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    bx_state *c = NULL;
    CHECK_OK(bx__yaml_parse(buf, strlen(buf), "printed", true, &c));
    const bx_state *t = bx_state_get(c, "trainer"), *cbs = bx_state_get(t, "callbacks");
    CHECK(t && bx_state_typeof(bx_state_get(t, "max_time")) == BX_STATE_NULL);
    CHECK_EQ_INT((int64_t)bx_state_len(cbs), 6);
    static const struct {
        int i;
        const char *cls, *key, *val;
    } W[] = {{0, "StochasticWeightAveraging", "swa_epoch_start", "0.8"},
             {0, "StochasticWeightAveraging", "annealing_epochs", "10"},
             {0, "StochasticWeightAveraging", "annealing_strategy", "cos"},
             {0, "StochasticWeightAveraging", "device", "cpu"},
             {1, "EMAWeightAveraging", "decay", "0.999"},
             {2, "ModelPruning", "amount", "0.5"},
             {2, "ModelPruning", "use_global_unstructured", "true"},
             {2, "ModelPruning", "verbose", "0"},
             {3, "QuantizationAwareTraining", "qconfig", "fbgemm"},
             {3, "QuantizationAwareTraining", "observer_type", "average"},
             {4, "GPUStatsMonitor", "memory_utilization", "true"},
             {4, "GPUStatsMonitor", "fan_speed", "false"},
             {5, "Timer", "interval", "step"},
             {5, "Timer", "verbose", "true"}};
    for (size_t k = 0; k < sizeof W / sizeof W[0]; k++) {
        const bx_state *sp = bx_state_at(cbs, (size_t)W[k].i);
        const bx_state *v = bx_state_get(bx_state_get(sp, "init_args"), W[k].key);
        char got[64] = "?";
        if (v && bx_state_typeof(v) == BX_STATE_STRING) snprintf(got, sizeof got, "%s", bx_state_get_string(v));
        else if (v && bx_state_typeof(v) == BX_STATE_BOOL) snprintf(got, sizeof got, "%s", bx_state_get_bool(v) ? "true" : "false");
        else if (v && bx_state_typeof(v) == BX_STATE_INT) snprintf(got, sizeof got, "%lld", (long long)bx_state_get_int(v));
        else if (v && bx_state_typeof(v) == BX_STATE_FLOAT) snprintf(got, sizeof got, "%g", bx_state_get_float(v));
        tu_checks++;
        if (!sp || strcmp(bx_state_get_string(bx_state_get(sp, "class_path")), W[k].cls) || strcmp(got, W[k].val)) {
            tu_failures++;
            fprintf(stderr, "print_config: %s.%s = %s, wanted %s\n", W[k].cls, W[k].key, got, W[k].val);
        }
    }
    const bx_state *qa = bx_state_get(bx_state_at(cbs, 3), "init_args");
    const bx_state *st = bx_state_get(qa, "observer_enabled_stages");
    CHECK(st && bx_state_len(st) == 1 && !strcmp(bx_state_get_string(bx_state_at(st, 0)), "train"));
    CHECK(bx_state_typeof(bx_state_get(bx_state_get(bx_state_at(cbs, 0), "init_args"), "swa_lrs")) == BX_STATE_NULL);
    CHECK(bx_state_typeof(bx_state_get(bx_state_get(bx_state_at(cbs, 2), "init_args"), "pruning_fn")) == BX_STATE_NULL);
    CHECK(bx_state_typeof(bx_state_get(bx_state_get(bx_state_at(cbs, 5), "init_args"), "duration")) == BX_STATE_NULL);
    bx_state_free(c);
    free(buf);
    CHECK_EQ_INT(tu_count_entries("."), 0);
    /* a given max_time dict is printed as given */
    f = tmpfile();
    CHECK_OK(run_yaml(f, "fit", "trainer: {max_time: {hours: 2}}\n", "--print_config", NULL));
    n = ftell(f);
    rewind(f);
    buf = calloc(1, (size_t)n + 1);
    CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    CHECK(strstr(buf, "max_time:") != NULL && strstr(buf, "hours: 2") != NULL);
    free(buf);
}

int main(void) {
    const char *src = getenv("BLIXT_TEST_DATA"); /* the tests/ folder */
    char base[1024];
    if (!src || !realpath(src, base)) snprintf(base, sizeof base, "%s", "tests");
    snprintf(cfg_path, sizeof cfg_path, "%s/cli/tiny_mlp.yaml", base);
    snprintf(data_root, sizeof data_root, "%s/../data/tiny-fashion", base);
    char tmp[] = "/tmp/blixt_clicb_XXXXXX";
    if (!mkdtemp(tmp) || chdir(tmp) != 0) {
        fprintf(stderr, "cannot make a temp folder\n");
        return 1;
    }
    snprintf(extra_path, sizeof extra_path, "%s.yaml", tmp); /* beside the run folder, not in it */
    test_print_config();
    test_swa_ema();
    test_pruning();
    test_qat();
    test_gpu_stats();
    test_timer_max_time();
    if (chdir("/") != 0) return 1;
    tu_rmtree(tmp);
    remove(extra_path);
    return tu_finish("cli/callbacks");
}
