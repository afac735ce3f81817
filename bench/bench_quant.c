/* bench_quant.c — GB/s of weights streamed by shoal_matvec, per type and ISA, in cache and from DRAM.
 *
 * Usage: bench_quant [threads]   (default: 1 and the number of online CPUs)
 * Each case validates the kernel against the scalar path before timing. "L2" runs a 1536 x 576 matrix
 * (SmolLM2's FFN, ~0.5 MB for Q4_1) over and over; "DRAM" sweeps a set of matrices far larger than the
 * last-level cache, as a decode step does. A plain read of the same DRAM buffer gives the ceiling.
 * Env: BENCH_N (row length, default 576), BENCH_TRIALS (best of, default 7), BENCH_TYPE (one type name), BENCH_CPU_TIME (divide by the
 * slowest thread's CPU time instead of wall time: steadier on a shared machine). */
#define _GNU_SOURCE
#include "model/quant.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the calling thread: on a shared machine, time slices lost to other processes do not
 * count against the kernel (memory contention still does). */
static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((rng >> 11) * 0x1p-53 * 2.0 - 1.0);
}

static int g_use_cpu_time;

typedef struct job {
    shoal_isa_t isa;
    uint32_t type;
    const char *w;
    size_t stride;
    int64_t r0, r1, n;
    const void *act;
    float *y;
    int reps;
    pthread_barrier_t *bar;
    double cpu; /* seconds of CPU time the job took */
} job;

static void *run_job(void *p)
{
    job *j = p;
    pthread_barrier_wait(j->bar);
    double t0 = cpu_now();
    for (int k = 0; k < j->reps; k++)
        shoal_matvec_isa(j->isa, j->type, j->w + (size_t)j->r0 * j->stride, j->stride, j->r1 - j->r0, j->act, j->n,
                         j->y + j->r0);
    j->cpu = cpu_now() - t0;
    return NULL;
}

/* Seconds for `reps` matvecs of (rows x n) split across `threads` threads. */
static double time_matvec(int threads, shoal_isa_t isa, uint32_t type, const char *w, size_t stride, int64_t rows,
                          int64_t n, const void *act, float *y, int reps)
{
    pthread_t th[64];
    job jobs[64];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        int64_t r0 = rows * t / threads / 4 * 4, r1 = t == threads - 1 ? rows : rows * (t + 1) / threads / 4 * 4;
        jobs[t] = (job){isa, type, w, stride, r0, r1, n, act, y, reps, &bar, 0};
        pthread_create(&th[t], NULL, run_job, &jobs[t]);
    }
    double t0 = now();
    pthread_barrier_wait(&bar);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    double dt = now() - t0, cpu = 0;
    pthread_barrier_destroy(&bar);
    for (int t = 0; t < threads; t++) cpu = fmax(cpu, jobs[t].cpu);
    return g_use_cpu_time ? cpu : dt;
}

typedef struct rd_job { const char *p; size_t len; double sum; pthread_barrier_t *bar; } rd_job;
static void *read_job(void *p)
{
    rd_job *j = p;
    pthread_barrier_wait(j->bar);
    const uint64_t *q = (const uint64_t *)j->p;
    uint64_t a = 0, b = 0, c = 0, d = 0;
    for (size_t i = 0; i + 4 <= j->len / 8; i += 4) {
        a += q[i];
        b ^= q[i + 1];
        c += q[i + 2];
        d ^= q[i + 3];
    }
    j->sum = (double)(a + b + c + d);
    return NULL;
}

static double read_bw(const char *buf, size_t len, int threads)
{
    pthread_t th[64];
    rd_job jobs[64];
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, (unsigned)threads + 1);
    for (int t = 0; t < threads; t++) {
        jobs[t] = (rd_job){buf + len / threads * t, len / threads, 0, &bar};
        pthread_create(&th[t], NULL, read_job, &jobs[t]);
    }
    double t0 = now();
    pthread_barrier_wait(&bar);
    for (int t = 0; t < threads; t++) pthread_join(th[t], NULL);
    double dt = now() - t0;
    pthread_barrier_destroy(&bar);
    return len / dt / 1e9;
}

int main(int argc, char **argv)
{
    int ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    int tlist[2] = {1, ncpu}, ntl = ncpu > 1 ? 2 : 1;
    if (argc > 1) {
        tlist[0] = atoi(argv[1]);
        ntl = 1;
    }
    const int64_t n = getenv("BENCH_N") ? atoi(getenv("BENCH_N")) : 576;
    const int64_t rows_l2 = n > 1024 ? 576 : 1536; /* ~0.5 MB of Q4_1 either way */
    /* shared VMs are noisy: report the best of several trials */
    int trials = getenv("BENCH_TRIALS") ? atoi(getenv("BENCH_TRIALS")) : 7;
    const char *only = getenv("BENCH_TYPE");
    g_use_cpu_time = getenv("BENCH_CPU_TIME") != NULL;
    const size_t dram_bytes = (size_t)512 << 20;
    printf("bench_quant: %d CPUs, best ISA %s; n = %lld; L2 case %lld rows; DRAM case %zu MiB of weights\n", ncpu,
           shoal_isa_name(shoal_isa_best()), (long long)n, (long long)rows_l2, dram_bytes >> 20);

    char *dram = aligned_alloc(64, dram_bytes);
    for (size_t i = 0; i < dram_bytes; i += 4) {
        float f = frand();
        memcpy(dram + i, &f, 4);
    }
    for (int ti = 0; ti < ntl; ti++) {
        double bw = 0;
        for (int k = 0; k < 3; k++) bw = fmax(bw, read_bw(dram, dram_bytes, tlist[ti]));
        printf("plain read of the DRAM buffer, %d thread(s): %.1f GB/s\n", tlist[ti], bw);
    }

    static float x[49152];
    for (int i = 0; i < n; i++) x[i] = frand();
    static const uint32_t types[] = {SHOAL_GGML_Q4_1, SHOAL_GGML_Q8_0, SHOAL_GGML_Q4_0, SHOAL_GGML_F16, SHOAL_GGML_BF16,
                                     SHOAL_GGML_F32};
    printf("%-5s %-12s %3s %10s %10s %10s %12s\n", "type", "isa", "thr", "L2 GB/s", "DRAM GB/s", "DRAM Gel/s",
           "mm32 GMAC/s");
    for (size_t ty = 0; ty < sizeof types / sizeof *types; ty++) {
        uint32_t type = types[ty];
        if (only && strcmp(only, shoal_qtype_name(type))) continue;
        size_t rb = shoal_qtype_row_size(type, n);
        int64_t drows = (int64_t)(dram_bytes / rb) / 4 * 4;
        /* fill with valid blocks: quantise random rows (f16 scales must be finite) */
        float *tmp = malloc(sizeof(float) * n);
        for (int64_t r = 0; r < drows; r++) {
            if (r < 4096) {
                for (int i = 0; i < n; i++) tmp[i] = frand();
                shoal_quantize_row(type, tmp, dram + r * rb, n);
            } else {
                memcpy(dram + r * rb, dram + (r % 4096) * rb, rb);
            }
        }
        free(tmp);
        void *act = aligned_alloc(64, (shoal_act_size(type, n) + 63) / 64 * 64);
        shoal_act_quantize(type, x, act, n);
        float *y = malloc(sizeof(float) * drows), *yref = malloc(sizeof(float) * rows_l2);
        size_t act_stride = (shoal_act_size(type, n) + 63) / 64 * 64;
        char *acts32 = aligned_alloc(64, act_stride * 32);
        float *ymm = malloc(sizeof(float) * rows_l2 * 32);
        for (int t = 0; t < 32; t++) {
            float *xt = malloc(sizeof(float) * n);
            for (int i = 0; i < n; i++) xt[i] = frand();
            shoal_act_quantize(type, xt, acts32 + t * act_stride, n);
            free(xt);
        }
        shoal_matvec_isa(SHOAL_ISA_SCALAR, type, dram, rb, rows_l2, act, n, yref);
        for (int isa = SHOAL_ISA_SCALAR; isa < SHOAL_ISA_COUNT; isa++) {
            if (!shoal_isa_available(isa)) continue;
            shoal_matvec_isa(isa, type, dram, rb, rows_l2, act, n, y);
            double maxerr = 0;
            for (int64_t r = 0; r < rows_l2; r++) maxerr = fmax(maxerr, fabs(y[r] - yref[r]) / (1 + fabs(yref[r])));
            if (maxerr > 1e-3) {
                printf("%s %s: MISMATCH vs scalar (%g); not timed\n", shoal_qtype_name(type), shoal_isa_name(isa), maxerr);
                continue;
            }
            for (int ti = 0; ti < ntl; ti++) {
                int th = tlist[ti];
                int reps = isa == SHOAL_ISA_SCALAR ? 5 : 50;
                time_matvec(th, isa, type, dram, rb, rows_l2, n, act, y, 5);
                double best_l2 = 1e9, best_dr = 1e9;
                for (int k = 0; k < trials; k++) {
                    best_l2 = fmin(best_l2, time_matvec(th, isa, type, dram, rb, rows_l2, n, act, y, reps) / reps);
                    best_dr = fmin(best_dr, time_matvec(th, isa, type, dram, rb, drows, n, act, y,
                                                        isa == SHOAL_ISA_SCALAR ? 1 : 2) /
                                                (isa == SHOAL_ISA_SCALAR ? 1 : 2));
                }
                /* batched (prefill-like): 32 activations over the L2 matrix, one thread */
                double best_mm = 1e9;
                for (int k = 0; k < trials; k++) {
                    double t0 = g_use_cpu_time ? cpu_now() : now();
                    shoal_matmul_isa(isa, type, dram, rb, rows_l2, acts32, act_stride, 32, n, ymm, rows_l2);
                    best_mm = fmin(best_mm, (g_use_cpu_time ? cpu_now() : now()) - t0);
                }
                printf("%-5s %-12s %3d %10.1f %10.1f %10.2f %12.1f\n", shoal_qtype_name(type), shoal_isa_name(isa), th,
                       rows_l2 * rb / best_l2 / 1e9, drows * rb / best_dr / 1e9, (double)drows * n / best_dr / 1e9,
                       32.0 * rows_l2 * n / best_mm / 1e9);
                fflush(stdout);
            }
        }
        free(act);
        free(acts32);
        free(ymm);
        free(y);
        free(yref);
    }
    free(dram);
    return 0;
}
