/* GPUStatsMonitor tests (spec/callbacks.md §11) against a fake NVML
 * (tests/callbacks/fake_nvml.c, built as a shared library whose path comes
 * in FAKE_NVML_PATH): exact keys, order, values and units; the cadence
 * ((global_step+1) % log_every_n_steps, should_stop) and the NVML calls it
 * costs; the intra/inter step timers and their reset at epoch start;
 * device ids sorted/unique and mapped through CUDA_VISIBLE_DEVICES (index
 * and UUID entries); the errors (NVML missing or incomplete, no logger,
 * NVML init failing, a device outside CUDA_VISIBLE_DEVICES or NVML). */
#include "cb_harness.h"

#include <blixt/gpu_stats.h>
#include <dlfcn.h>
#include <time.h>

#ifndef FAKE_NVML_PATH
#error "FAKE_NVML_PATH must name the fake NVML library"
#endif

/* ---- a logger that records what it receives ---------------------------------------- */
#define MAXREC 64
#define MAXKEY 32
typedef struct rec {
    int n;
    char names[MAXKEY][64];
    double vals[MAXKEY];
    int64_t step;
} rec;
typedef struct recorder {
    rec r[MAXREC];
    int n;
} recorder;

static bx_status rec_log(void *self, const char *const *names, const double *values, int n, int64_t step) {
    recorder *rc = self;
    /* only the monitor's records (the Trainer logs nothing else here, but be safe) */
    if (n > 0 && strncmp(names[0], "gpu_id: ", 8) && strncmp(names[0], "batch_time/", 11)) return BX_OK;
    if (rc->n >= MAXREC) return BX_OK;
    rec *r = &rc->r[rc->n++];
    r->n = n < MAXKEY ? n : MAXKEY;
    r->step = step;
    for (int i = 0; i < r->n; i++) {
        snprintf(r->names[i], sizeof r->names[i], "%s", names[i]);
        r->vals[i] = values[i];
    }
    return BX_OK;
}
static void rec_destroy(void *self) { (void)self; }
static const bx_logger_ops REC_OPS = {.name = "Recorder", .log_metrics = rec_log, .destroy = rec_destroy};

/* Index of key in r, -1 when absent. */
static int rec_find(const rec *r, const char *key) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->names[i], key)) return i;
    return -1;
}

/* ---- the fake NVML's controls ------------------------------------------------------------ */
static void *fake_lib;
static void (*fake_control)(unsigned int, int);
static long (*fake_counter)(int);
static void (*fake_reset)(void);
static void (*fake_lose)(int);

static void load_fake(void) {
    fake_lib = dlopen(FAKE_NVML_PATH, RTLD_NOW | RTLD_LOCAL);
    CHECK(fake_lib != NULL);
    if (!fake_lib) {
        fprintf(stderr, "dlopen %s: %s\n", FAKE_NVML_PATH, dlerror());
        exit(1);
    }
    void *p;
    p = dlsym(fake_lib, "fake_nvml_control");
    memcpy(&fake_control, &p, sizeof p);
    p = dlsym(fake_lib, "fake_nvml_counter");
    memcpy(&fake_counter, &p, sizeof p);
    p = dlsym(fake_lib, "fake_nvml_reset");
    memcpy(&fake_reset, &p, sizeof p);
    p = dlsym(fake_lib, "fake_nvml_lose");
    memcpy(&fake_lose, &p, sizeof p);
    CHECK(fake_control && fake_counter && fake_reset && fake_lose);
}

/* ---- the model: the harness model, with a training step that takes >= 5 ms ---------------- */
static bx_status slow_train(void *self, bx_step *st, const bx_batch *b, int64_t i) {
    struct timespec ts = {0, 5 * 1000 * 1000};
    nanosleep(&ts, NULL);
    return ch_train(self, st, b, i);
}
static bx_model_ops SLOW_OPS;

/* A callback that sets should_stop at the end of batch `stop_at` (placed before the monitor). */
typedef struct stopper {
    int64_t stop_at;
} stopper;
static bx_status stop_batch_end(void *self, bx_trainer *tr, const bx_step_output *o, const bx_batch *b, int64_t i) {
    (void)o, (void)b;
    if (i == ((stopper *)self)->stop_at) bx_trainer_set_should_stop(tr, true);
    return BX_OK;
}
static const bx_callback_ops STOP_OPS = {.name = "Stopper", .on_train_batch_end = stop_batch_end};

/* Fits the slow model for `epochs` epochs of `nbatches` batches with `cbs`,
 * every record going to *rc (NULL: no logger at all). */
static bx_status fit(bx_callback **cbs, int ncb, recorder *rc, int64_t epochs, int nbatches, int64_t every) {
    ch_model m;
    ch_init(&m);
    bx_trainer_opts o = ch_opts(epochs, cbs, ncb, NULL);
    o.log_every_n_steps = every;
    bx_logger *lg = rc ? bx_logger_new(&REC_OPS, rc) : NULL;
    if (rc) {
        memset(rc, 0, sizeof *rc);
        o.loggers = &lg;
        o.num_loggers = 1;
    }
    bx_trainer *tr = bx_trainer_new(&o);
    CHECK(tr != NULL);
    if (!tr) return BX_ERR_INVALID;
    bx_dataset *dtr = ch_ds(2 * nbatches);
    bx_loader_opts lo = BX_LOADER_OPTS_INIT;
    lo.batch_size = 2;
    bx_loader *ltr = bx_loader_new(dtr, &lo);
    bx_model model = {&SLOW_OPS, &m};
    bx_status s = bx_trainer_fit(tr, &model, ltr, NULL, NULL);
    bx_trainer_free(tr);
    bx_loader_free(ltr);
    bx_dataset_free(dtr);
    bx_module_free(m.lin);
    return s;
}

static bx_callback *monitor(bx_gpu_stats_monitor_opts o) {
    o.nvml_path = FAKE_NVML_PATH;
    bx_callback *cb = bx_gpu_stats_monitor_new(&o);
    CHECK(cb != NULL);
    if (!cb) fprintf(stderr, "bx_gpu_stats_monitor_new: %s\n", bx_errmsg());
    return cb;
}

static void check_balanced(void) {
    CHECK(fake_counter(0) > 0);
    CHECK_EQ_INT(fake_counter(0), fake_counter(1)); /* every nvmlInit_v2 shut down */
}

/* Defaults: utilization.gpu + the three memory keys for device 0; cadence 2. */
static void test_defaults_and_cadence(void) {
    fake_control(4, 0);
    fake_reset();
    unsetenv("CUDA_VISIBLE_DEVICES");
    bx_gpu_stats_monitor_opts o = BX_GPU_STATS_MONITOR_OPTS_INIT;
    bx_callback *cb = monitor(o);
    recorder rc;
    /* 2 epochs x 3 batches, log_every_n_steps = 2: batch k (overall) starts
     * at global_step k and ends at k+1, so records come at the end of
     * k = 0, 2, 4 and the start of k = 1, 3, 5 (step 1, 1, 3, 3, 5, 5). */
    CHECK_OK(fit(&cb, 1, &rc, 2, 3, 2));
    CHECK_EQ_INT(rc.n, 6);
    const char *keys[4] = {"gpu_id: 0/utilization.gpu (%)", "gpu_id: 0/memory.used (MB)",
                           "gpu_id: 0/memory.free (MB)", "gpu_id: 0/utilization.memory (%)"};
    const double vals[4] = {10, 1000, 80558, 20};
    const int64_t steps[6] = {1, 1, 3, 3, 5, 5};
    for (int r = 0; r < rc.n && r < 6; r++) {
        CHECK_EQ_INT(rc.r[r].step, steps[r]);
        CHECK_EQ_INT(rc.r[r].n, 4);
        for (int k = 0; k < 4 && k < rc.r[r].n; k++) {
            CHECK(!strcmp(rc.r[r].names[k], keys[k]));
            CHECK_NEAR(rc.r[r].vals[k], vals[k], 0);
        }
    }
    /* NVML is queried only for logged batches: 4 queries per record (one device). */
    CHECK_EQ_INT(fake_counter(2), 4 * 6);
    CHECK_EQ_INT(fake_counter(3), 1); /* one handle, opened at train start */
    check_balanced();

    /* log_every_n_steps = 50: nothing in 4 batches; should_stop forces a record. */
    fake_reset();
    cb = monitor(o);
    CHECK_OK(fit(&cb, 1, &rc, 1, 4, 50));
    CHECK_EQ_INT(rc.n, 0);
    CHECK_EQ_INT(fake_counter(2), 0);
    stopper sp = {1};
    bx_callback *cbs[2] = {bx_callback_new(&STOP_OPS, &sp), monitor(o)};
    CHECK_OK(fit(cbs, 2, &rc, 1, 4, 50));
    CHECK(rc.n >= 1);
    if (rc.n >= 1) {
        CHECK_EQ_INT(rc.r[0].step, 2); /* end of batch 1, global_step 2, should_stop */
        CHECK_EQ_INT(rc.r[0].n, 4);
    }
    check_balanced();
}

/* Every option, devices {2, 0, 2} -> 0 and 2; log every step; 2 epochs x 2 batches. */
static void test_all_options(void) {
    fake_control(4, 0);
    fake_reset();
    unsetenv("CUDA_VISIBLE_DEVICES");
    bx_gpu_stats_monitor_opts o = BX_GPU_STATS_MONITOR_OPTS_INIT;
    o.intra_step_time = o.inter_step_time = o.fan_speed = o.temperature = true;
    int ids[3] = {2, 0, 2};
    o.device_ids = ids;
    o.num_device_ids = 3;
    bx_callback *cb = monitor(o);
    recorder rc;
    CHECK_OK(fit(&cb, 1, &rc, 2, 2, 1));
    /* start(k) at step k, end(k) at step k+1, for k = 0..3 */
    CHECK_EQ_INT(rc.n, 8);
    static const char *const q_start[4] = {"utilization.gpu (%)", "memory.used (MB)", "memory.free (MB)",
                                           "utilization.memory (%)"};
    static const char *const q_end[3] = {"fan.speed (%)", "temperature.gpu (°C)", "temperature.memory (°C)"};
    for (int r = 0; r < rc.n && r < 8; r++) {
        const rec *x = &rc.r[r];
        int k = r / 2;
        bool start = r % 2 == 0;
        CHECK_EQ_INT(x->step, start ? k : k + 1);
        int ngpu = start ? 4 : 7;
        bool timer = start ? (k % 2 == 1) /* inter: not at the first batch of an epoch */ : true;
        CHECK_EQ_INT(x->n, 2 * ngpu + timer);
        int i = 0;
        for (int d = 0; d < 2; d++) {
            int dev = d ? 2 : 0;
            double expect[7] = {10 + dev, 1000 + 100 * dev, 80558 - 100 * dev, 20 + dev,
                                dev ? 30 + dev : 0.0 /* fan not supported on device 0 */, 40 + dev,
                                0.0 /* NVML has no memory sensor: [N/A] -> 0.0 */};
            for (int j = 0; j < ngpu; j++, i++) {
                char key[96];
                snprintf(key, sizeof key, "gpu_id: %d/%s", dev, j < 4 ? q_start[j] : q_end[j - 4]);
                CHECK(i < x->n && !strcmp(x->names[i], key));
                if (i < x->n && strcmp(x->names[i], key)) fprintf(stderr, "  got '%s' want '%s'\n", x->names[i], key);
                CHECK_NEAR(x->vals[i], expect[j], 0);
            }
        }
        if (timer) {
            const char *tk = start ? "batch_time/inter_step (ms)" : "batch_time/intra_step (ms)";
            CHECK_EQ_INT(rec_find(x, tk), x->n - 1);
            double v = x->vals[x->n - 1];
            if (start) CHECK(v >= 0.0 && v < 2000.0); /* between two batches: hooks only */
            else CHECK(v >= 5.0 && v < 2000.0);       /* the step sleeps 5 ms */
        } else {
            CHECK_EQ_INT(rec_find(x, "batch_time/inter_step (ms)"), -1);
        }
    }
    CHECK_EQ_INT(fake_counter(3), 2);
    check_balanced();
}

/* Device ids through CUDA_VISIBLE_DEVICES: keys keep the CUDA id, values come from the mapped NVML device. */
static void test_visible_devices(void) {
    fake_control(4, 0);
    fake_reset();
    bx_gpu_stats_monitor_opts o = BX_GPU_STATS_MONITOR_OPTS_INIT;
    o.memory_utilization = false;
    int ids[2] = {1, 0};
    o.device_ids = ids;
    o.num_device_ids = 2;
    recorder rc;

    setenv("CUDA_VISIBLE_DEVICES", " 3 , 1", 1);
    bx_callback *cb = monitor(o);
    CHECK_OK(fit(&cb, 1, &rc, 1, 1, 1));
    CHECK_EQ_INT(rc.n, 2);
    if (rc.n >= 1) {
        CHECK_EQ_INT(rc.r[0].n, 2);
        CHECK(!strcmp(rc.r[0].names[0], "gpu_id: 0/utilization.gpu (%)"));
        CHECK_NEAR(rc.r[0].vals[0], 13, 0); /* CUDA 0 = NVML 3 */
        CHECK(!strcmp(rc.r[0].names[1], "gpu_id: 1/utilization.gpu (%)"));
        CHECK_NEAR(rc.r[0].vals[1], 11, 0); /* CUDA 1 = NVML 1 */
    }

    setenv("CUDA_VISIBLE_DEVICES", "GPU-fake-2,0", 1);
    cb = monitor(o);
    CHECK_OK(fit(&cb, 1, &rc, 1, 1, 1));
    CHECK(rc.n >= 1 && rc.r[0].n == 2);
    if (rc.n >= 1) {
        CHECK_NEAR(rc.r[0].vals[0], 12, 0); /* UUID of NVML device 2 */
        CHECK_NEAR(rc.r[0].vals[1], 10, 0);
    }

    /* errors: an id past CUDA_VISIBLE_DEVICES, an unknown UUID, an NVML index past the count */
    setenv("CUDA_VISIBLE_DEVICES", "2", 1);
    cb = monitor(o);
    CHECK_ERR(fit(&cb, 1, &rc, 1, 1, 1), BX_ERR_INVALID,
              "GPUStatsMonitor: device 1 is not in CUDA_VISIBLE_DEVICES='2' (1 visible)");
    setenv("CUDA_VISIBLE_DEVICES", "GPU-nope,1", 1);
    cb = monitor(o);
    CHECK_ERR(fit(&cb, 1, &rc, 1, 1, 1), BX_ERR_BACKEND,
              "GPUStatsMonitor: cannot open NVML device 'GPU-nope' (device 0): Not Found");
    unsetenv("CUDA_VISIBLE_DEVICES");
    int far[1] = {6};
    o.device_ids = far;
    o.num_device_ids = 1;
    cb = monitor(o);
    CHECK_ERR(fit(&cb, 1, &rc, 1, 1, 1), BX_ERR_BACKEND,
              "GPUStatsMonitor: device 6 maps to NVML device 6 but NVML sees 4 device(s)");
    check_balanced();
}

static void test_errors(void) {
    /* NVML not loadable: construction fails like Lightning without nvidia-smi. */
    bx_gpu_stats_monitor_opts o = BX_GPU_STATS_MONITOR_OPTS_INIT;
    o.nvml_path = "/nonexistent/libnvidia-ml.so.1";
    CHECK(bx_gpu_stats_monitor_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "GPUStatsMonitor: NVML (/nonexistent/libnvidia-ml.so.1) cannot be loaded: ") != NULL);
    /* The default library: absent on machines without the NVIDIA driver. */
    o.nvml_path = NULL;
    bx_callback *cb = bx_gpu_stats_monitor_new(&o);
    if (cb) bx_callback_free(cb);
    else CHECK(strstr(bx_errmsg(), "GPUStatsMonitor: NVML (libnvidia-ml.so.1) cannot be loaded: ") != NULL);
    /* A library without the NVML functions. */
    o.nvml_path = "libm.so.6";
    CHECK(bx_gpu_stats_monitor_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "GPUStatsMonitor: NVML (libm.so.6) cannot be loaded: nvmlInit_v2 is missing") != NULL);
    /* A negative device id. */
    int bad[1] = {-1};
    o.nvml_path = FAKE_NVML_PATH;
    o.device_ids = bad;
    o.num_device_ids = 1;
    CHECK(bx_gpu_stats_monitor_new(&o) == NULL);
    CHECK(strstr(bx_errmsg(), "device id -1 is negative") != NULL);

    /* No logger: error at on_train_start, before NVML is touched. */
    fake_control(4, 0);
    fake_reset();
    unsetenv("CUDA_VISIBLE_DEVICES");
    bx_gpu_stats_monitor_opts d = BX_GPU_STATS_MONITOR_OPTS_INIT;
    cb = monitor(d);
    CHECK_ERR(fit(&cb, 1, NULL, 1, 2, 1), BX_ERR_STATE,
              "GPUStatsMonitor: Cannot use GPUStatsMonitor callback with Trainer that has no logger.");
    CHECK_EQ_INT(fake_counter(0), 0);

    /* NVML present but no driver/GPU. */
    fake_control(4, 1);
    recorder rc;
    cb = monitor(d);
    CHECK_ERR(fit(&cb, 1, &rc, 1, 2, 1), BX_ERR_BACKEND,
              "GPUStatsMonitor: NVML (" FAKE_NVML_PATH ") cannot be initialised: Driver Not Loaded");
    CHECK_EQ_INT(rc.n, 0);
    fake_control(4, 0);

    /* A GPU lost mid-run ends it with a clear message; NVML is shut down on the exception. */
    fake_reset();
    fake_lose(0);
    cb = monitor(d);
    CHECK_ERR(fit(&cb, 1, &rc, 1, 3, 2), BX_ERR_BACKEND,
              "GPUStatsMonitor: NVML query utilization.gpu on device 0 failed: GPU is lost");
    CHECK_EQ_INT(rc.n, 0);
    check_balanced();
    fake_lose(-1);
}

int main(void) {
    setenv("OMP_WAIT_POLICY", "PASSIVE", 0);
    (void)ch_find; /* harness helper unused here */
    SLOW_OPS = CH_OPS;
    SLOW_OPS.training_step = slow_train;
    SLOW_OPS.validation_step = NULL;
    load_fake();
    test_defaults_and_cadence();
    test_all_options();
    test_visible_devices();
    test_errors();
    dlclose(fake_lib);
    return tu_finish("test_gpu_stats");
}
