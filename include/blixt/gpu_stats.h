/* blixt/gpu_stats.h - GPUStatsMonitor (spec/callbacks.md §11).
 *
 * Logs NVIDIA GPU statistics (utilization, memory, fan, temperature) and
 * batch timings to the Trainer's loggers, like Lightning 1.3-1.6's
 * GPUStatsMonitor. The numbers come from NVML, loaded at run time with
 * dlopen (no build-time CUDA dependency), instead of a `nvidia-smi`
 * subprocess per logged batch. docs/callbacks/gpu_stats_monitor.md lists
 * the keys and what differs from Lightning. */
#ifndef BLIXT_GPU_STATS_H
#define BLIXT_GPU_STATS_H

#include "callback.h"
#include "trainer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Lightning's arguments and defaults, plus where NVML and the devices come
 * from. */
typedef struct bx_gpu_stats_monitor_opts {
    bool memory_utilization; /* true: memory.used/free (MB), utilization.memory (%) */
    bool gpu_utilization;    /* true: utilization.gpu (%) */
    bool intra_step_time;    /* false: batch_time/intra_step (ms) */
    bool inter_step_time;    /* false: batch_time/inter_step (ms) */
    bool fan_speed;          /* false: fan.speed (%) */
    bool temperature;        /* false: temperature.gpu / temperature.memory (°C) */
    /* The NVML shared library to dlopen; NULL or "" = "libnvidia-ml.so.1". */
    const char *nvml_path;
    /* The CUDA device ids training runs on (Lightning's
     * trainer.data_parallel_device_ids; sorted and de-duplicated). NULL /
     * 0 = {0}. Each id is mapped through CUDA_VISIBLE_DEVICES (when set) to
     * the NVML device queried; the keys name the id given here. */
    const int *device_ids;
    int num_device_ids;
} bx_gpu_stats_monitor_opts;
#define BX_GPU_STATS_MONITOR_OPTS_INIT {true, true, false, false, false, false, NULL, NULL, 0}

/* New GPUStatsMonitor ("GPUStatsMonitor", stateless); the caller owns it
 * until given to a Trainer. Loads NVML now (Lightning checks for
 * nvidia-smi at construction): NULL with the message
 * "GPUStatsMonitor: NVML (libnvidia-ml.so.1) cannot be loaded: <dlerror>"
 * (BX_ERR_UNSUPPORTED) when the library or one of its functions is missing;
 * BX_ERR_INVALID for a negative device id; BX_ERR_NOMEM.
 * At on_train_start the run fails with BX_ERR_STATE when the Trainer has no
 * logger, with BX_ERR_BACKEND when NVML cannot be initialised (no driver /
 * no GPU) or a device cannot be opened, and with BX_ERR_INVALID when a
 * device id is not covered by CUDA_VISIBLE_DEVICES. */
bx_callback *bx_gpu_stats_monitor_new(const bx_gpu_stats_monitor_opts *o);

#ifdef __cplusplus
}
#endif
#endif
