/* gpu_stats.c - GPUStatsMonitor (spec/callbacks.md §11, Lightning 1.4-1.6).
 *
 * Written only against the public callback and Trainer API. NVML
 * (libnvidia-ml.so.1) is dlopen'ed at construction; no NVIDIA header or
 * library is needed to build. At on_train_start: a logger is required,
 * NVML is initialised and every device id is mapped through
 * CUDA_VISIBLE_DEVICES to an NVML handle. Per training batch:
 *   batch start: snap the intra-step timer; when
 *     (global_step + 1) % log_every_n_steps == 0 or should_stop, log the
 *     "gpu stats" (utilization.gpu, memory.used/free, utilization.memory)
 *     plus batch_time/inter_step (now - previous batch end, from the 2nd
 *     batch of the epoch) at step = global_step;
 *   batch end: snap the inter-step timer; same condition (global_step has
 *     moved on), log the gpu stats + the "device stats" (fan.speed,
 *     temperature.gpu, temperature.memory) plus batch_time/intra_step.
 * Timers reset at each train epoch start. A query NVML does not support
 * gives 0.0, as Lightning parses nvidia-smi's "[N/A]". NVML is shut down at
 * train end, on exception and when the callback is freed. */
#include "blixt/gpu_stats.h"

#include <ctype.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the NVML ABI subset (NVIDIA's public nvml.h) ----------------------------------- */
typedef int nvml_return;                 /* nvmlReturn_t (a C enum) */
typedef struct nvml_device_st *nvml_device; /* nvmlDevice_t */
typedef struct nvml_utilization {        /* nvmlUtilization_t */
    unsigned int gpu, memory;            /* percent over the last sample period */
} nvml_utilization;
typedef struct nvml_memory {             /* nvmlMemory_t (v1) */
    unsigned long long total, free, used; /* bytes */
} nvml_memory;
enum {
    NVML_SUCCESS = 0,
    NVML_ERROR_UNINITIALIZED = 1,
    NVML_ERROR_GPU_IS_LOST = 15,
    NVML_TEMPERATURE_GPU = 0 /* nvmlTemperatureSensors_t */
};

typedef struct nvml_api {
    void *lib;
    nvml_return (*init)(void);                                     /* nvmlInit_v2 */
    nvml_return (*shutdown)(void);                                 /* nvmlShutdown */
    nvml_return (*count)(unsigned int *);                          /* nvmlDeviceGetCount_v2 */
    nvml_return (*by_index)(unsigned int, nvml_device *);          /* nvmlDeviceGetHandleByIndex_v2 */
    nvml_return (*by_uuid)(const char *, nvml_device *);           /* nvmlDeviceGetHandleByUUID (optional) */
    nvml_return (*util)(nvml_device, nvml_utilization *);          /* nvmlDeviceGetUtilizationRates */
    nvml_return (*mem)(nvml_device, nvml_memory *);                /* nvmlDeviceGetMemoryInfo */
    nvml_return (*fan)(nvml_device, unsigned int *);               /* nvmlDeviceGetFanSpeed */
    nvml_return (*temp)(nvml_device, int, unsigned int *);         /* nvmlDeviceGetTemperature */
    const char *(*errstr)(nvml_return);                            /* nvmlErrorString */
} nvml_api;

#define DEFAULT_NVML "libnvidia-ml.so.1"
#define TRY(x)                          \
    do {                                \
        bx_status s_ = (x);             \
        if (s_ != BX_OK) return s_;     \
    } while (0)
#define MAX_GPU_KEYS 4 /* utilization.gpu, memory.used, memory.free, utilization.memory */
#define MAX_DEV_KEYS 3 /* fan.speed, temperature.gpu, temperature.memory */

typedef enum query { Q_UTIL_GPU, Q_MEM_USED, Q_MEM_FREE, Q_UTIL_MEM, Q_FAN, Q_TEMP_GPU, Q_TEMP_MEM } query;
static const char *const QUERY_KEY[] = {"utilization.gpu", "memory.used", "memory.free", "utilization.memory",
                                        "fan.speed", "temperature.gpu", "temperature.memory"};
static const char *const QUERY_UNIT[] = {"%", "MB", "MB", "%", "%", "\xC2\xB0" "C", "\xC2\xB0" "C"};

typedef struct gsm {
    nvml_api api;
    char *path;
    bool intra, inter;
    query gpu_q[MAX_GPU_KEYS], dev_q[MAX_DEV_KEYS];
    int ngpu_q, ndev_q;
    int *ids; /* logical device ids, sorted, unique */
    int nids;
    /* Set at on_train_start, released by release(). */
    bool nvml_up;
    nvml_device *handles;
    char **start_names, **end_names; /* the record keys, built once per fit */
    double *start_vals, *end_vals;
    int nstart, nend;
    double snap_intra, snap_inter; /* seconds; valid when has_* */
    bool has_intra, has_inter;
} gsm;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static const char *nvml_err(const gsm *g, nvml_return r) {
    const char *s = g->api.errstr ? g->api.errstr(r) : NULL;
    return s ? s : "unknown NVML error";
}

static void free_names(char **names, int n) {
    if (!names) return;
    for (int i = 0; i < n; i++) bx_free(names[i]);
    bx_free(names);
}

/* Undoes on_train_start: NVML shut down, handles and record buffers freed. */
static void release(gsm *g) {
    if (g->nvml_up) g->api.shutdown();
    g->nvml_up = false;
    bx_free(g->handles);
    g->handles = NULL;
    free_names(g->start_names, g->nstart);
    free_names(g->end_names, g->nend);
    g->start_names = g->end_names = NULL;
    bx_free(g->start_vals);
    bx_free(g->end_vals);
    g->start_vals = g->end_vals = NULL;
    g->nstart = g->nend = 0;
}

/* ---- device ids ------------------------------------------------------------------------- */
/* The NVML handle of logical CUDA device `id`: the id-th entry of
 * CUDA_VISIBLE_DEVICES when set (an index, or a GPU-/MIG- UUID), else NVML
 * index `id`. */
static bx_status open_device(gsm *g, int id, unsigned int count, nvml_device *out) {
    const char *cvd = getenv("CUDA_VISIBLE_DEVICES");
    char ent[128];
    if (cvd) {
        const char *p = cvd;
        int k = 0, nvis = 0;
        ent[0] = '\0';
        for (;;) {
            const char *e = strchr(p, ',');
            size_t len = e ? (size_t)(e - p) : strlen(p);
            while (len && isspace((unsigned char)*p)) p++, len--;
            while (len && isspace((unsigned char)p[len - 1])) len--;
            if (len) nvis++;
            if (k == id && len) {
                if (len >= sizeof ent) len = sizeof ent - 1;
                memcpy(ent, p, len);
                ent[len] = '\0';
            }
            k++;
            if (!e) break;
            p = e + 1;
        }
        if (!ent[0])
            return bx_set_error(BX_ERR_INVALID,
                             "GPUStatsMonitor: device %d is not in CUDA_VISIBLE_DEVICES='%s' (%d visible)", id, cvd,
                             nvis);
    } else {
        snprintf(ent, sizeof ent, "%d", id);
    }
    nvml_return r;
    char *end;
    long idx = strtol(ent, &end, 10);
    if (*end == '\0' && end != ent) {
        if (idx < 0 || (unsigned long)idx >= count)
            return bx_set_error(BX_ERR_BACKEND,
                             "GPUStatsMonitor: device %d maps to NVML device %ld but NVML sees %u device(s)", id, idx,
                             count);
        r = g->api.by_index((unsigned int)idx, out);
    } else {
        if (!g->api.by_uuid)
            return bx_set_error(BX_ERR_UNSUPPORTED,
                             "GPUStatsMonitor: device %d maps to '%s' but this NVML has no nvmlDeviceGetHandleByUUID",
                             id, ent);
        r = g->api.by_uuid(ent, out);
    }
    if (r != NVML_SUCCESS)
        return bx_set_error(BX_ERR_BACKEND, "GPUStatsMonitor: cannot open NVML device '%s' (device %d): %s", ent, id,
                         nvml_err(g, r));
    return BX_OK;
}

/* ---- record keys ------------------------------------------------------------------------ */
static char *key_name(int id, query q) {
    char buf[96];
    snprintf(buf, sizeof buf, "gpu_id: %d/%s (%s)", id, QUERY_KEY[q], QUERY_UNIT[q]);
    return bx_strdup(buf);
}

/* names[]: for each device the queries qs in order, then `extra` (NULL: none). */
static bx_status build_names(const gsm *g, const query *const qs[2], const int nq[2], const char *extra,
                             char ***names_out, double **vals_out, int *n_out) {
    int n = 0;
    for (int d = 0; d < g->nids; d++) n += nq[0] + nq[1];
    n += extra != NULL;
    char **names = bx_calloc(sizeof(char *) * (size_t)(n ? n : 1));
    double *vals = bx_calloc(sizeof(double) * (size_t)(n ? n : 1));
    if (!names || !vals) {
        bx_free(names);
        bx_free(vals);
        return BX_ERR_NOMEM;
    }
    *names_out = names;
    *vals_out = vals;
    *n_out = n;
    int k = 0;
    for (int d = 0; d < g->nids; d++)
        for (int s = 0; s < 2; s++)
            for (int j = 0; j < nq[s]; j++)
                if (!(names[k++] = key_name(g->ids[d], qs[s][j]))) return BX_ERR_NOMEM;
    if (extra && !(names[k] = bx_strdup(extra))) return BX_ERR_NOMEM;
    return BX_OK;
}

/* ---- hooks ---------------------------------------------------------------------------------- */
static bx_status gsm_train_start(void *self, bx_trainer *tr) {
    gsm *g = self;
    release(g);
    if (bx_trainer_num_loggers(tr) == 0)
        return bx_set_error(BX_ERR_STATE, "GPUStatsMonitor: Cannot use GPUStatsMonitor callback with Trainer that has "
                                       "no logger.");
    nvml_return r = g->api.init();
    if (r != NVML_SUCCESS)
        return bx_set_error(BX_ERR_BACKEND,
                         "GPUStatsMonitor: NVML (%s) cannot be initialised: %s. You are using GPUStatsMonitor but "
                         "are not running on an NVIDIA GPU with its driver loaded.",
                         g->path, nvml_err(g, r));
    g->nvml_up = true;
    unsigned int count = 0;
    r = g->api.count(&count);
    bx_status s = BX_OK;
    if (r != NVML_SUCCESS) {
        s = bx_set_error(BX_ERR_BACKEND, "GPUStatsMonitor: nvmlDeviceGetCount_v2 failed: %s", nvml_err(g, r));
        goto fail;
    }
    g->handles = bx_calloc(sizeof(nvml_device) * (size_t)g->nids);
    if (!g->handles) {
        s = BX_ERR_NOMEM;
        goto fail;
    }
    for (int d = 0; d < g->nids; d++)
        if ((s = open_device(g, g->ids[d], count, &g->handles[d])) != BX_OK) goto fail;
    const query *qs_start[2] = {g->gpu_q, g->dev_q}, *qs_end[2] = {g->gpu_q, g->dev_q};
    int nq_start[2] = {g->ngpu_q, 0}, nq_end[2] = {g->ngpu_q, g->ndev_q};
    if ((s = build_names(g, qs_start, nq_start, g->inter ? "batch_time/inter_step (ms)" : NULL, &g->start_names,
                         &g->start_vals, &g->nstart)) != BX_OK)
        goto fail;
    if ((s = build_names(g, qs_end, nq_end, g->intra ? "batch_time/intra_step (ms)" : NULL, &g->end_names,
                         &g->end_vals, &g->nend)) != BX_OK)
        goto fail;
    return BX_OK;
fail:
    release(g);
    return s;
}

static bx_status gsm_train_end(void *self, bx_trainer *tr) {
    (void)tr;
    release(self);
    return BX_OK;
}

static bx_status gsm_exception(void *self, bx_trainer *tr, bx_status st, const char *msg) {
    (void)tr, (void)st, (void)msg;
    release(self);
    return BX_OK;
}

static bx_status gsm_epoch_start(void *self, bx_trainer *tr) {
    (void)tr;
    gsm *g = self;
    g->has_intra = g->has_inter = false;
    return BX_OK;
}

static bool should_log(const bx_trainer *tr) {
    int64_t n = bx_trainer_log_every_n_steps(tr);
    return (n > 0 && (bx_trainer_global_step(tr) + 1) % n == 0) || bx_trainer_should_stop(tr);
}

/* One NVML query as a float; an unsupported / failing query is 0.0 (what
 * Lightning makes of nvidia-smi's "[N/A]"), except a lost GPU or a dead
 * NVML, which end the run. */
static bx_status query_value(const gsm *g, int d, query q, double *out) {
    nvml_device h = g->handles[d];
    nvml_return r;
    unsigned int u = 0;
    *out = 0.0;
    switch (q) {
    case Q_UTIL_GPU:
    case Q_UTIL_MEM: {
        nvml_utilization ut = {0, 0};
        r = g->api.util(h, &ut);
        u = q == Q_UTIL_GPU ? ut.gpu : ut.memory;
        if (r == NVML_SUCCESS) *out = (double)u;
        break;
    }
    case Q_MEM_USED:
    case Q_MEM_FREE: {
        nvml_memory m = {0, 0, 0};
        r = g->api.mem(h, &m);
        /* nvidia-smi prints whole MiB (integer division) under "MB". */
        if (r == NVML_SUCCESS) *out = (double)((q == Q_MEM_USED ? m.used : m.free) / (1024ull * 1024ull));
        break;
    }
    case Q_FAN:
        r = g->api.fan(h, &u);
        if (r == NVML_SUCCESS) *out = (double)u;
        break;
    case Q_TEMP_GPU:
        r = g->api.temp(h, NVML_TEMPERATURE_GPU, &u);
        if (r == NVML_SUCCESS) *out = (double)u;
        break;
    default: /* temperature.memory: NVML has no such sensor; nvidia-smi prints [N/A] */
        return BX_OK;
    }
    if (r == NVML_ERROR_GPU_IS_LOST || r == NVML_ERROR_UNINITIALIZED)
        return bx_set_error(BX_ERR_BACKEND, "GPUStatsMonitor: NVML query %s on device %d failed: %s", QUERY_KEY[q],
                         g->ids[d], nvml_err(g, r));
    return BX_OK;
}

/* Fills vals with the stats of every device (queries of nq[0] then nq[1]). */
static bx_status collect(const gsm *g, int ndev_q, double *vals) {
    int k = 0;
    for (int d = 0; d < g->nids; d++) {
        for (int j = 0; j < g->ngpu_q; j++) TRY(query_value(g, d, g->gpu_q[j], &vals[k++]));
        for (int j = 0; j < ndev_q; j++) TRY(query_value(g, d, g->dev_q[j], &vals[k++]));
    }
    return BX_OK;
}

static bx_status gsm_batch_start(void *self, bx_trainer *tr, const bx_batch *b, int64_t batch_idx) {
    (void)b, (void)batch_idx;
    gsm *g = self;
    if (!g->nvml_up) return BX_OK;
    if (g->intra) {
        g->snap_intra = now_s();
        g->has_intra = true;
    }
    if (!should_log(tr)) return BX_OK;
    TRY(collect(g, 0, g->start_vals));
    int n = g->nstart;
    if (g->inter) {
        /* Lightning adds the key only from the second batch of the epoch. */
        if (g->has_inter) g->start_vals[n - 1] = (now_s() - g->snap_inter) * 1000.0;
        else n--;
    }
    return bx_trainer_log_metrics_direct(tr, (const char *const *)g->start_names, g->start_vals, n,
                                         bx_trainer_global_step(tr));
}

static bx_status gsm_batch_end(void *self, bx_trainer *tr, const bx_step_output *out, const bx_batch *b,
                               int64_t batch_idx) {
    (void)out, (void)b, (void)batch_idx;
    gsm *g = self;
    if (!g->nvml_up) return BX_OK;
    if (g->inter) {
        g->snap_inter = now_s();
        g->has_inter = true;
    }
    if (!should_log(tr)) return BX_OK;
    TRY(collect(g, g->ndev_q, g->end_vals));
    int n = g->nend;
    if (g->intra) {
        if (g->has_intra) g->end_vals[n - 1] = (now_s() - g->snap_intra) * 1000.0;
        else n--;
    }
    return bx_trainer_log_metrics_direct(tr, (const char *const *)g->end_names, g->end_vals, n,
                                         bx_trainer_global_step(tr));
}

static void gsm_destroy(void *self) {
    gsm *g = self;
    if (!g) return;
    release(g);
    if (g->api.lib) dlclose(g->api.lib);
    bx_free(g->ids);
    bx_free(g->path);
    bx_free(g);
}

static const bx_callback_ops GSM_OPS = {
    .name = "GPUStatsMonitor",
    .on_train_start = gsm_train_start,
    .on_train_end = gsm_train_end,
    .on_train_epoch_start = gsm_epoch_start,
    .on_train_batch_start = gsm_batch_start,
    .on_train_batch_end = gsm_batch_end,
    .on_exception = gsm_exception,
    .destroy = gsm_destroy,
};

/* ---- construction ----------------------------------------------------------------------- */
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* dlsym into *slot (function pointers through memcpy: ISO C has no
 * object-to-function pointer conversion). false when missing. */
static bool sym(void *lib, const char *name, void *slot, size_t size) {
    void *p = dlsym(lib, name);
    if (!p) return false;
    memcpy(slot, &p, size);
    return true;
}

static bx_status load_nvml(gsm *g) {
    dlerror();
    g->api.lib = dlopen(g->path, RTLD_NOW | RTLD_LOCAL);
    if (!g->api.lib) {
        const char *e = dlerror();
        return bx_set_error(BX_ERR_UNSUPPORTED, "GPUStatsMonitor: NVML (%s) cannot be loaded: %s", g->path,
                         e ? e : "dlopen failed");
    }
    static const char *const NAMES[] = {"nvmlInit_v2",
                                        "nvmlShutdown",
                                        "nvmlDeviceGetCount_v2",
                                        "nvmlDeviceGetHandleByIndex_v2",
                                        "nvmlDeviceGetUtilizationRates",
                                        "nvmlDeviceGetMemoryInfo",
                                        "nvmlDeviceGetFanSpeed",
                                        "nvmlDeviceGetTemperature",
                                        "nvmlErrorString"};
    void *slots[] = {&g->api.init, &g->api.shutdown, &g->api.count, &g->api.by_index, &g->api.util,
                     &g->api.mem,  &g->api.fan,      &g->api.temp,  &g->api.errstr};
    size_t sizes[] = {sizeof g->api.init, sizeof g->api.shutdown, sizeof g->api.count,
                      sizeof g->api.by_index, sizeof g->api.util, sizeof g->api.mem,
                      sizeof g->api.fan, sizeof g->api.temp, sizeof g->api.errstr};
    for (size_t i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (!sym(g->api.lib, NAMES[i], slots[i], sizes[i]))
            return bx_set_error(BX_ERR_UNSUPPORTED, "GPUStatsMonitor: NVML (%s) cannot be loaded: %s is missing", g->path,
                             NAMES[i]);
    sym(g->api.lib, "nvmlDeviceGetHandleByUUID", &g->api.by_uuid, sizeof g->api.by_uuid); /* optional */
    return BX_OK;
}

bx_callback *bx_gpu_stats_monitor_new(const bx_gpu_stats_monitor_opts *o) {
    bx_gpu_stats_monitor_opts def = BX_GPU_STATS_MONITOR_OPTS_INIT;
    if (!o) o = &def;
    for (int i = 0; i < o->num_device_ids; i++)
        if (o->device_ids && o->device_ids[i] < 0) {
            bx_set_error(BX_ERR_INVALID, "GPUStatsMonitor: device id %d is negative", o->device_ids[i]);
            return NULL;
        }
    gsm *g = bx_calloc(sizeof *g);
    if (!g) return NULL;
    int n = o->device_ids && o->num_device_ids > 0 ? o->num_device_ids : 1;
    g->ids = bx_malloc(sizeof(int) * (size_t)n);
    g->path = bx_strdup(o->nvml_path && o->nvml_path[0] ? o->nvml_path : DEFAULT_NVML);
    if (!g->ids || !g->path) {
        gsm_destroy(g);
        return NULL;
    }
    if (o->device_ids && o->num_device_ids > 0) memcpy(g->ids, o->device_ids, sizeof(int) * (size_t)n);
    else g->ids[0] = 0;
    qsort(g->ids, (size_t)n, sizeof(int), cmp_int);
    g->nids = 0;
    for (int i = 0; i < n; i++)
        if (g->nids == 0 || g->ids[g->nids - 1] != g->ids[i]) g->ids[g->nids++] = g->ids[i];
    g->intra = o->intra_step_time;
    g->inter = o->inter_step_time;
    if (o->gpu_utilization) g->gpu_q[g->ngpu_q++] = Q_UTIL_GPU;
    if (o->memory_utilization) {
        g->gpu_q[g->ngpu_q++] = Q_MEM_USED;
        g->gpu_q[g->ngpu_q++] = Q_MEM_FREE;
        g->gpu_q[g->ngpu_q++] = Q_UTIL_MEM;
    }
    if (o->fan_speed) g->dev_q[g->ndev_q++] = Q_FAN;
    if (o->temperature) {
        g->dev_q[g->ndev_q++] = Q_TEMP_GPU;
        g->dev_q[g->ndev_q++] = Q_TEMP_MEM;
    }
    if (load_nvml(g) != BX_OK) {
        gsm_destroy(g);
        return NULL;
    }
    return bx_callback_new(&GSM_OPS, g);
}
