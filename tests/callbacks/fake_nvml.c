/* fake_nvml.c - a stand-in libnvidia-ml for the GPUStatsMonitor test: the
 * NVML functions the monitor uses, with the public nvml.h signatures and
 * deterministic values per device index i:
 *   utilization gpu = 10 + i %, memory = 20 + i %;
 *   memory total = 81559 MiB, used = (1000 + 100 i) MiB + 12345 bytes,
 *     free = total - used (so whole MiB: used 1000+100i, free 80558-100i);
 *   fan speed: device 0 NVML_ERROR_NOT_SUPPORTED (a passively cooled
 *     board), else 30 + i %; temperature (GPU sensor) = 40 + i °C;
 *   UUID "GPU-fake-<i>" opens device i.
 * fake_nvml_control() sets the device count and makes nvmlInit_v2 fail;
 * fake_nvml_lose(i) makes device i's utilization query answer GPU_IS_LOST;
 * fake_nvml_counter() reads the call counters. Test-only: the mutable
 * state below is this fake's whole point. */
#include <stdio.h>
#include <string.h>

typedef int nvmlReturn_t;
typedef struct nvmlDevice_st *nvmlDevice_t;
typedef struct nvmlUtilization_st {
    unsigned int gpu, memory;
} nvmlUtilization_t;
typedef struct nvmlMemory_st {
    unsigned long long total, free, used;
} nvmlMemory_t;

#define MAXDEV 8
struct nvmlDevice_st {
    int index;
};
static struct nvmlDevice_st devices[MAXDEV] = {{0}, {1}, {2}, {3}, {4}, {5}, {6}, {7}};
static unsigned int ndev = 4;
static int fail_init;
static int lost = -1; /* a device index whose queries answer NVML_ERROR_GPU_IS_LOST */
/* counters: 0 init, 1 shutdown, 2 queries (util/mem/fan/temp), 3 handles opened, 4 last opened index */
static long counters[5];

/* Test controls (not NVML). */
void fake_nvml_control(unsigned int count, int init_fails);
long fake_nvml_counter(int which);
void fake_nvml_reset(void);
void fake_nvml_lose(int index);

nvmlReturn_t nvmlInit_v2(void);
nvmlReturn_t nvmlShutdown(void);
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count);
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device);
nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device);
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *utilization);
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory);
nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed);
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp);
const char *nvmlErrorString(nvmlReturn_t result);

void fake_nvml_control(unsigned int count, int init_fails) {
    ndev = count > MAXDEV ? MAXDEV : count;
    fail_init = init_fails;
}
long fake_nvml_counter(int which) { return which >= 0 && which < 5 ? counters[which] : -1; }
void fake_nvml_reset(void) { memset(counters, 0, sizeof counters); }
void fake_nvml_lose(int index) { lost = index; }

static int live(void) { return counters[0] > counters[1]; }

nvmlReturn_t nvmlInit_v2(void) {
    if (fail_init) return 9; /* NVML_ERROR_DRIVER_NOT_LOADED */
    counters[0]++;
    return 0;
}
nvmlReturn_t nvmlShutdown(void) {
    if (!live()) return 1; /* NVML_ERROR_UNINITIALIZED */
    counters[1]++;
    return 0;
}
nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!live()) return 1;
    *count = ndev;
    return 0;
}
nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (!live()) return 1;
    if (index >= ndev) return 2; /* NVML_ERROR_INVALID_ARGUMENT */
    *device = &devices[index];
    counters[3]++;
    counters[4] = (long)index;
    return 0;
}
nvmlReturn_t nvmlDeviceGetHandleByUUID(const char *uuid, nvmlDevice_t *device) {
    if (!live()) return 1;
    unsigned int i;
    char extra;
    if (sscanf(uuid, "GPU-fake-%u%c", &i, &extra) != 1 || i >= ndev) return 6; /* NVML_ERROR_NOT_FOUND */
    return nvmlDeviceGetHandleByIndex_v2(i, device);
}
nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t device, nvmlUtilization_t *u) {
    if (!live()) return 1;
    counters[2]++;
    if (device->index == lost) return 15; /* NVML_ERROR_GPU_IS_LOST */
    u->gpu = 10u + (unsigned)device->index;
    u->memory = 20u + (unsigned)device->index;
    return 0;
}
nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *m) {
    if (!live()) return 1;
    counters[2]++;
    const unsigned long long mib = 1024ull * 1024ull;
    m->total = 81559ull * mib;
    m->used = (1000ull + 100ull * (unsigned)device->index) * mib + 12345ull;
    m->free = m->total - m->used;
    return 0;
}
nvmlReturn_t nvmlDeviceGetFanSpeed(nvmlDevice_t device, unsigned int *speed) {
    if (!live()) return 1;
    counters[2]++;
    if (device->index == 0) return 3; /* NVML_ERROR_NOT_SUPPORTED */
    *speed = 30u + (unsigned)device->index;
    return 0;
}
nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, int sensorType, unsigned int *temp) {
    if (!live()) return 1;
    counters[2]++;
    if (sensorType != 0) return 2;
    *temp = 40u + (unsigned)device->index;
    return 0;
}
const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case 0: return "Success";
    case 1: return "Uninitialized";
    case 2: return "Invalid Argument";
    case 3: return "Not Supported";
    case 6: return "Not Found";
    case 9: return "Driver Not Loaded";
    case 15: return "GPU is lost";
    default: return "Unknown Error";
    }
}
