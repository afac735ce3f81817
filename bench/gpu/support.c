/* support.c — shoal_rss_bytes / shoal_now_ns for building the CUDA test and bench without the
 * rest of libshoal (run_device.sh's plain build). libshoal's own definitions win in CMake builds. */
#include <stdint.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

int64_t shoal_rss_bytes(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return 0;
    long size = 0, rss = 0;
    int ok = fscanf(f, "%ld %ld", &size, &rss) == 2;
    fclose(f);
    return ok ? (int64_t)rss * sysconf(_SC_PAGESIZE) : 0;
}

uint64_t shoal_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
