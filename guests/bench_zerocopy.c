/* bench_zerocopy.c — the seed experiment, driven from inside the sandbox.
 *
 * The guest fills A and B in its own linear memory, asks the host to multiply them in place
 * (shoal.matmul_f32_placed), reads C through the same pointer, and checks it against a
 * float64 product it computes itself. For each size and placement it prints the host-measured
 * latency, whether the kernel computed on the guest's own bytes (pointer identity), the
 * elements checked and the errors; then the RSS growth of exposing a 16 MiB region to the
 * backend, zero-copy vs staging copy.
 *
 * usage: bench_zerocopy [--sizes 128,256,...] [--placements zerocopy,copy,resident] [--reps N] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal_guest.h"

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static float frand(void) /* uniform in [-1, 1) */
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((rng >> 40) * (1.0 / (1ull << 24)) * 2.0 - 1.0);
}

static const char *k_place_names[] = {"zerocopy", "copy", "resident"};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Checks rows of C against float64; all rows when n is small, an evenly spread sample else.
 * An element is an error when |c - ref| > 1e-5 * sum_k |a_ik b_kj| (float32 accumulation of
 * k terms stays far inside that). */
static void check(const float *a, const float *b, const float *c, uint32_t n, uint64_t *checked, uint64_t *errors)
{
    uint32_t rows = n <= 256 ? n : 8, step = n / rows;
    double *ref = malloc(sizeof(double) * n), *mag = malloc(sizeof(double) * n);
    for (uint32_t r = 0; r < rows; r++) {
        uint32_t i = r * step + (n <= 256 ? 0 : step / 2);
        for (uint32_t j = 0; j < n; j++) ref[j] = mag[j] = 0;
        for (uint32_t p = 0; p < n; p++) {
            double av = a[(size_t)i * n + p];
            const float *brow = b + (size_t)p * n;
            for (uint32_t j = 0; j < n; j++) {
                double t = av * brow[j];
                ref[j] += t;
                mag[j] += fabs(t);
            }
        }
        for (uint32_t j = 0; j < n; j++) {
            double d = fabs((double)c[(size_t)i * n + j] - ref[j]);
            if (!(d <= 1e-5 * mag[j] + 1e-30)) (*errors)++;
            (*checked)++;
        }
    }
    free(ref);
    free(mag);
}

static int run_one(uint32_t n, int place, int reps, int *fail)
{
    size_t bytes = (size_t)n * n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    if (!a || !b || !c) {
        printf("%6u  %-9s  out of guest memory\n", n, k_place_names[place]);
        free(a), free(b), free(c);
        *fail = 1;
        return 1;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = frand(), b[i] = frand();
    if (place == SHOAL_RESIDENT) shoal_resident_add(a, (uint32_t)bytes), shoal_resident_add(b, (uint32_t)bytes);
    uint64_t ns[64];
    shoal_op_info_t info = {0};
    int identity = 1;
    for (int r = -1; r < reps; r++) { /* r = -1 is a warm-up */
        memset(c, 0xff, bytes);       /* poison: every element must be written */
        int32_t s = shoal_matmul_f32_placed(a, b, c, n, n, n, place);
        if (s != 0) {
            char msg[256];
            shoal_last_error(msg, sizeof msg);
            printf("%6u  %-9s  failed: %s\n", n, k_place_names[place], msg);
            *fail = 1;
            goto out;
        }
        shoal_op_info(&info);
        if (r >= 0) ns[r] = info.ns;
        /* Zero-copy: the kernel read A and B and wrote C at the guest's own addresses.
         * Resident: A and B come from device copies (on a GPU) by design; C is still
         * written in place. */
        int c_in_place = info.c_offset == (uintptr_t)c;
        int ab_in_place = info.a_offset == (uintptr_t)a && info.b_offset == (uintptr_t)b;
        if (place == SHOAL_ZEROCOPY) identity &= c_in_place && ab_in_place;
        if (place == SHOAL_RESIDENT) identity &= c_in_place;
    }
    qsort(ns, (size_t)reps, sizeof ns[0], cmp_u64);
    uint64_t checked = 0, errors = 0;
    check(a, b, c, n, &checked, &errors);
    double ms = ns[reps / 2] / 1e6, gflops = 2.0 * n * n * (double)n / (ns[reps / 2] + 1);
    const char *idtxt = place == SHOAL_COPY       ? (info.identity ? "yes?!" : "no (copy)")
                        : place == SHOAL_RESIDENT ? (identity ? "C in place" : "NO")
                        : identity                ? "yes"
                                                  : "NO";
    printf("%6u  %-9s  %10.3f  %8.1f  %-10s  %8llu  %6llu  %9.2f\n", n, k_place_names[place], ms, gflops, idtxt,
           (unsigned long long)checked, (unsigned long long)errors, info.bytes_copied / 1048576.0);
    if (errors || (place != SHOAL_COPY && !identity)) *fail = 1;
out:
    if (place == SHOAL_RESIDENT) shoal_resident_drop(a), shoal_resident_drop(b);
    free(a), free(b), free(c);
    return 0;
}

/* RSS growth of exposing a 16 MiB region (A, B and C of 1182 x 1182 floats = 16.0 MiB) that
 * the guest has already written. */
static void rss_region(int *fail)
{
    const uint32_t n = 1182;
    size_t bytes = (size_t)n * n * sizeof(float);
    float *a = malloc(bytes), *b = malloc(bytes), *c = malloc(bytes);
    if (!a || !b || !c) {
        printf("out of guest memory\n");
        *fail = 1;
        return;
    }
    for (size_t i = 0; i < (size_t)n * n; i++) a[i] = frand(), b[i] = frand(), c[i] = 0;
    printf("\nRSS growth of exposing a %.2f MiB region (A, B, C of %ux%u float32) to the backend:\n",
           3.0 * bytes / 1048576.0, n, n);
    printf("%-9s  %12s  %10s  %9s\n", "placement", "rss_MB", "ms", "copied_MB");
    for (int place = 0; place < 2; place++) {
        shoal_op_info_t info = {0};
        for (int r = 0; r < 2; r++) { /* the second call is reported: no first-use effects */
            if (shoal_matmul_f32_placed(a, b, c, n, n, n, place) != 0) {
                *fail = 1;
                return;
            }
            shoal_op_info(&info);
        }
        printf("%-9s  %12.3f  %10.3f  %9.2f\n", k_place_names[place], info.rss_growth / 1e6, info.ns / 1e6,
               info.bytes_copied / 1048576.0);
    }
    free(a), free(b), free(c);
}

int main(int argc, char **argv)
{
    uint32_t sizes[16] = {128, 256, 512, 1024, 2048};
    int nsizes = 5, places[3] = {0, 1, 2}, nplaces = 3, reps = 0, do_rss = 1;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sizes") && i + 1 < argc) {
            nsizes = 0;
            for (char *s = strtok(argv[++i], ","); s && nsizes < 16; s = strtok(NULL, ",")) {
                long v = atol(s);
                if (v < 1 || v > 8192) {
                    fprintf(stderr, "bench_zerocopy: size %s out of range 1..8192\n", s);
                    return 2;
                }
                sizes[nsizes++] = (uint32_t)v;
            }
        } else if (!strcmp(argv[i], "--placements") && i + 1 < argc) {
            nplaces = 0;
            for (char *s = strtok(argv[++i], ","); s && nplaces < 3; s = strtok(NULL, ",")) {
                int p = -1;
                for (int q = 0; q < 3; q++)
                    if (!strcmp(s, k_place_names[q])) p = q;
                if (p < 0) {
                    fprintf(stderr, "bench_zerocopy: unknown placement %s\n", s);
                    return 2;
                }
                places[nplaces++] = p;
            }
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            reps = atoi(argv[++i]);
            if (reps < 1 || reps > 64) reps = 5;
        } else if (!strcmp(argv[i], "--no-rss")) {
            do_rss = 0;
        } else {
            fprintf(stderr, "usage: bench_zerocopy [--sizes N,N..] [--placements zerocopy,copy,resident] [--reps N] "
                            "[--no-rss]\n");
            return 2;
        }
    }
    int fail = 0;
    printf("%6s  %-9s  %10s  %8s  %-10s  %8s  %6s  %9s\n", "size", "placement", "median_ms", "GFLOP/s", "identity",
           "checked", "errors", "copied_MB");
    for (int s = 0; s < nsizes; s++)
        for (int p = 0; p < nplaces; p++) {
            int r = reps ? reps : sizes[s] <= 512 ? 21 : sizes[s] <= 1024 ? 7 : 3;
            run_one(sizes[s], places[p], r, &fail);
        }
    if (do_rss) rss_region(&fail);
    printf("\n%s\n", fail ? "RESULT: FAIL" : "RESULT: OK (0 errors; the backend computed on the guest's own bytes)");
    return fail;
}
