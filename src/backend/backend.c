/* backend.c — choosing a backend by device kind, and small process-level measurements. */
#define _GNU_SOURCE
#include "backend/backend.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

shoal_status_t shoal_backend_create(shoal_device_kind_t kind, int threads, shoal_backend_t **out)
{
    switch (kind) {
    case SHOAL_DEVICE_CPU:
        return shoal_cpu_backend_create(threads, out);
    case SHOAL_DEVICE_CUDA:
#ifdef SHOAL_HAVE_CUDA
        return shoal_cuda_backend_create(out);
#else
        return shoal_fail(SHOAL_E_UNSUPPORTED, "this build of Shoal has no CUDA backend (nvcc was not found at build time)");
#endif
    case SHOAL_DEVICE_AUTO:
#ifdef SHOAL_HAVE_CUDA
        if (shoal_cuda_backend_create(out) == SHOAL_OK) return SHOAL_OK;
#endif
        return shoal_cpu_backend_create(threads, out);
    }
    return shoal_fail(SHOAL_E_INVALID, "unknown device kind %d", (int)kind);
}

int64_t shoal_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return 0;
    long long size = 0, resident = 0;
    int n = fscanf(f, "%lld %lld", &size, &resident);
    fclose(f);
    return n == 2 ? (int64_t)resident * sysconf(_SC_PAGESIZE) : 0;
}

uint64_t shoal_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
