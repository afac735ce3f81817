/* bench_util.h — the timing helpers every benchmark here uses: a monotonic clock, the median of
 * repeated runs, and a check that stops the benchmark with Shoal's error message. Header-only
 * (each benchmark is one translation unit). */
#ifndef SHOAL_BENCH_UTIL_H
#define SHOAL_BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "shoal.h"

static inline double bench_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sorts v in place. */
static inline double bench_median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* BENCH_NAME names the benchmark in the message. */
#define BENCH_CHECK(x)                                                                                                 \
    do {                                                                                                               \
        if ((x) != SHOAL_OK) {                                                                                         \
            fprintf(stderr, "%s: %s: %s\n", BENCH_NAME, #x, shoal_last_error());                                      \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

#endif
