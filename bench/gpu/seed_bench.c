/* seed_bench.c — the seed experiment on the GPU, through the CUDA backend's ops table.
 *
 * Guest memory is simulated as the memory creator makes it (PROT_NONE reservation, accessible
 * prefix, grown in place). Reports: pointer identity, errors against float64, RSS growth for a
 * 16 MiB region (zero-copy vs a staging copy of the region, as the reference measured it),
 * registration (pinning) cost, latency of 128..4096 square matmuls for each placement plus the
 * un-staged kernel, memory.grow while registered, and a bad operand refused without a launch.
 * Usage: seed_bench [max_size [lat]] (default 4096; lat: latency table only). Prints markdown. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_kernels.h"

#define MiB ((size_t)1 << 20)

static shoal_backend_t *be;
static double g_h2d_gbs = 50; /* measured in ceilings() */

static void die(const char *what, shoal_status_t s)
{
    fprintf(stderr, "FAILED: %s: %s: %s\n", what, shoal_status_name(s), shoal_last_error());
    exit(1);
}

#define OK(what, call)                                                                                                 \
    do {                                                                                                               \
        shoal_status_t s_ = (call);                                                                                    \
        if (s_ != SHOAL_OK)                                                                                            \
            die(what, s_);                                                                                             \
    } while (0)

#define CUOK(call)                                                                                                     \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess) {                                                                                       \
            fprintf(stderr, "FAILED: %s: %s\n", #call, cudaGetErrorString(e_));                                       \
            exit(1);                                                                                                   \
        }                                                                                                              \
    } while (0)

static uint64_t rng = 88172645463325252ull;
static float frand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (float)((double)(rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}
static void fill(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = frand();
}
static void poison(float *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = NAN;
}

/* Elements of C wrong beyond the float32 dot-product bound 2 k u sum|ab| (NaN counts). Checks every
 * element when the product is small, else `samples` random ones. */
static size_t errors(const float *a, const float *b, const float *c, int m, int n, int k, size_t *checked)
{
    size_t bad = 0, total = (size_t)m * n, samples = (double)m * n * k <= 64e6 ? total : 4096;
    for (size_t s = 0; s < samples; s++) {
        size_t idx = samples == total ? s : (size_t)(rng = rng * 6364136223846793005ull + 1442695040888963407ull) % total;
        int i = (int)(idx / (size_t)n), j = (int)(idx % (size_t)n);
        double ref = 0, mag = 0;
        for (int l = 0; l < k; l++) {
            double t = (double)a[(size_t)i * k + l] * b[(size_t)l * n + j];
            ref += t;
            mag += fabs(t);
        }
        double err = fabs((double)c[idx] - ref);
        if (!(err <= 2.0 * k * 0x1p-24 * mag + 1e-30))
            bad++;
    }
    *checked = samples;
    return bad;
}

static void *reserve(size_t reserved, size_t accessible)
{
    void *p = mmap(NULL, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED || mprotect(p, accessible, PROT_READ | PROT_WRITE)) {
        perror("mmap/mprotect");
        exit(1);
    }
    return p;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

typedef struct timing {
    double med_us, min_us;
    shoal_op_stats_t first;
    int reps;
} timing_t;

/* Median over reps after warm-up; placement -1 = the un-staged direct kernel. */
static timing_t time_mmnk(float *a, float *b, float *c, int m, int n, int k, int placement)
{
    shoal_matmul_args_t args = {.a = a, .b = b, .c = c, .m = m, .n = n, .k = k,
                                .placement = placement < 0 ? SHOAL_PLACE_ZEROCOPY : (shoal_placement_t)placement};
    shoal_op_stats_t st;
    uint64_t ns[64];
    timing_t t = {0};
    for (int w = 0; w < 2; w++)
        OK("warm-up", placement < 0 ? shoal_cuda_matmul_direct(be, &args, &st) : be->ops->matmul_f32(be, &args, &st));
    int reps = st.ns > 100000000ull ? 3 : st.ns > 10000000ull ? 7 : st.ns > 1000000ull ? 21 : 51;
    for (int r = 0; r < reps; r++) {
        OK("timed", placement < 0 ? shoal_cuda_matmul_direct(be, &args, &st) : be->ops->matmul_f32(be, &args, &st));
        if (r == 0)
            t.first = st;
        ns[r] = st.ns;
    }
    qsort(ns, (size_t)reps, sizeof ns[0], cmp_u64);
    t.med_us = ns[reps / 2] / 1e3;
    t.min_us = ns[0] / 1e3;
    t.reps = reps;
    return t;
}

static timing_t time_mm(float *a, float *b, float *c, int s, int placement)
{
    return time_mmnk(a, b, c, s, s, s, placement);
}

/* Decode-like shapes: a few rows against a large B in mapped memory (a weight or a KV block the
 * guest owns). Staged zero-copy vs the un-staged kernel vs B resident on the device. */
static void skinny(void)
{
    const int ks[] = {1024, 4096}, ms[] = {1, 4, 16, 64};
    size_t bytes = (size_t)64 * 4096 * 4 * 2 + (size_t)4096 * 4096 * 4 + 3 * 65536;
    bytes = (bytes + 65535) & ~(size_t)65535;
    uint8_t *base = reserve(bytes, bytes);
    OK("map", be->ops->map(be, base, bytes));
    float *b = (float *)base, *a = (float *)(base + (size_t)4096 * 4096 * 4 + 65536),
          *c = (float *)(base + (size_t)4096 * 4096 * 4 + 65536 + (size_t)64 * 4096 * 4 + 65536);
    shoal_cuda_info_t info;
    shoal_cuda_backend_info(be, &info);
    printf("## Skinny shapes (m x k) @ (k x k): B in mapped guest memory, median us\n\n");
    printf("| m | k=n | zero-copy staged | un-staged direct | B resident | copy | B over PCIe us | errors |\n"
           "|---|---|---|---|---|---|---|---|\n");
    for (size_t ki = 0; ki < 2; ki++)
        for (size_t mi = 0; mi < 4; mi++) {
            int m = ms[mi], k = ks[ki], n = k;
            fill(a, (size_t)m * k);
            fill(b, (size_t)k * n);
            size_t bad = 0, chk;
            shoal_cuda_set_direct_max_m(be, 0);
            poison(c, (size_t)m * n);
            timing_t zs = time_mmnk(a, b, c, m, n, k, SHOAL_PLACE_ZEROCOPY);
            bad += errors(a, b, c, m, n, k, &chk);
            poison(c, (size_t)m * n);
            timing_t di = time_mmnk(a, b, c, m, n, k, -1);
            bad += errors(a, b, c, m, n, k, &chk);
            shoal_cuda_set_direct_max_m(be, info.direct_max_m);
            OK("resident B", be->ops->resident_add(be, b, (size_t)k * n * 4));
            poison(c, (size_t)m * n);
            timing_t rs = time_mmnk(a, b, c, m, n, k, SHOAL_PLACE_RESIDENT);
            bad += errors(a, b, c, m, n, k, &chk);
            be->ops->resident_drop(be, b);
            timing_t cp = time_mmnk(a, b, c, m, n, k, SHOAL_PLACE_COPY);
            bad += errors(a, b, c, m, n, k, &chk);
            printf("| %d | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %zu |\n", m, k, zs.med_us, di.med_us, rs.med_us,
                   cp.med_us, (double)k * n * 4 / (g_h2d_gbs * 1e3), bad);
            fflush(stdout);
        }
    printf("\n(default direct_max_m = %u: ZEROCOPY with m <= that runs un-staged)\n\n", info.direct_max_m);
    be->ops->unmap(be, base, bytes);
    munmap(base, bytes);
}

static void ceilings(void)
{
    /* Bandwidth ceilings measured here, not taken from the datasheet. */
    size_t bytes = 512 * MiB;
    void *d0, *d1;
    CUOK(cudaMalloc(&d0, bytes));
    CUOK(cudaMalloc(&d1, bytes));
    void *h = reserve(bytes, bytes);
    memset(h, 1, bytes);
    CUOK(cudaHostRegister(h, bytes, cudaHostRegisterMapped));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float ms, best_d2d = 1e9, best_h2d = 1e9, best_d2h = 1e9;
    for (int i = 0; i < 5; i++) {
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(d1, d0, bytes, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        best_d2d = ms < best_d2d ? ms : best_d2d;
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(d0, h, bytes, cudaMemcpyHostToDevice, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        best_h2d = ms < best_h2d ? ms : best_h2d;
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(h, d0, bytes, cudaMemcpyDeviceToHost, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        best_d2h = ms < best_d2h ? ms : best_d2h;
    }
    CUOK(cudaGetLastError());
    /* The peers' transfers: pageable (malloc'd, already faulted in) host memory. */
    void *pg = malloc(bytes);
    memset(pg, 2, bytes);
    float best_ph2d = 1e9, best_pd2h = 1e9;
    for (int i = 0; i < 3; i++) {
        uint64_t t0 = shoal_now_ns();
        CUOK(cudaMemcpy(d0, pg, bytes, cudaMemcpyHostToDevice));
        ms = (shoal_now_ns() - t0) / 1e6f;
        best_ph2d = ms < best_ph2d ? ms : best_ph2d;
        t0 = shoal_now_ns();
        CUOK(cudaMemcpy(pg, d0, bytes, cudaMemcpyDeviceToHost));
        ms = (shoal_now_ns() - t0) / 1e6f;
        best_pd2h = ms < best_pd2h ? ms : best_pd2h;
    }
    free(pg);
    g_h2d_gbs = bytes / (best_h2d * 1e6);
    /* cuBLAS SGEMM on device-only operands, 4096^3, random data. */
    int s = 4096;
    float *hx = malloc((size_t)s * s * 4);
    fill(hx, (size_t)s * s);
    CUOK(cudaMemcpy(d0, hx, (size_t)s * s * 4, cudaMemcpyHostToDevice));
    CUOK(cudaMemcpy((char *)d0 + (size_t)s * s * 4, hx, (size_t)s * s * 4, cudaMemcpyHostToDevice));
    cublasHandle_t hb;
    cublasCreate(&hb);
    const float one = 1, zero = 0;
    float best_gemm = 1e9;
    for (int i = 0; i < 5; i++) {
        cudaEventRecord(e0, 0);
        cublasSgemm(hb, CUBLAS_OP_N, CUBLAS_OP_N, s, s, s, &one, d0, s, (float *)d0 + (size_t)s * s, s, &zero, d1, s);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        best_gemm = ms < best_gemm ? ms : best_gemm;
    }
    float best_tiled = 1e9;
    for (int i = 0; i < 3; i++) {
        cudaEventRecord(e0, 0);
        shoal_cuda_sgemm_tiled(d0, (float *)d0 + (size_t)s * s, d1, s, s, s, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        cudaEventElapsedTime(&ms, e0, e1);
        best_tiled = ms < best_tiled ? ms : best_tiled;
    }
    CUOK(cudaGetLastError());
    double fl = 2.0 * s * s * s;
    printf("## Ceilings (best of 5)\n\n| what | measured |\n|---|---|\n");
    printf("| device-to-device copy, 512 MiB (read+write) | %.0f GB/s |\n", 2.0 * bytes / (best_d2d * 1e6));
    printf("| pinned (registered) host -> device DMA, 512 MiB | %.1f GB/s |\n", bytes / (best_h2d * 1e6));
    printf("| device -> pinned host DMA, 512 MiB | %.1f GB/s |\n", bytes / (best_d2h * 1e6));
    printf("| pageable host -> device / device -> pageable host, 512 MiB | %.1f / %.1f GB/s |\n",
           bytes / (best_ph2d * 1e6), bytes / (best_pd2h * 1e6));
    printf("| cuBLAS SGEMM 4096^3, device operands, fp32 | %.1f TFLOP/s (%.2f ms) |\n", fl / (best_gemm * 1e9),
           best_gemm);
    printf("| shoal tiled SGEMM 4096^3, device operands | %.1f TFLOP/s (%.2f ms) |\n\n", fl / (best_tiled * 1e9),
           best_tiled);
    cublasDestroy(hb);
    free(hx);
    cudaHostUnregister(h);
    munmap(h, bytes);
    cudaFree(d0);
    cudaFree(d1);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
}

static void seed(void)
{
    printf("## Seed experiment: 16 MiB region, 128x128 matmul in place\n\n");
    const size_t region = 16 * MiB;
    uint8_t *base = reserve(64 * MiB, region);
    /* The guest has written its memory (that is what the seed measures). */
    fill((float *)base, region / 4);
    int64_t r0 = shoal_rss_bytes();
    uint64_t t0 = shoal_now_ns();
    OK("map 16 MiB", be->ops->map(be, base, region));
    uint64_t map_ns = shoal_now_ns() - t0;
    int64_t map_rss = shoal_rss_bytes() - r0;
    void *dp = NULL;
    CUOK(cudaHostGetDevicePointer(&dp, base, 0));
    printf("| item | value |\n|---|---|\n");
    printf("| device pointer == host pointer | %s (%p vs %p) |\n", dp == (void *)base ? "yes" : "NO", dp, (void *)base);
    printf("| map() of the written 16 MiB region | %.2f ms, RSS +%.2f MB |\n", map_ns / 1e6, map_rss / 1e6);

    const int s = 128;
    float *a = (float *)(base + 4096), *b = (float *)(base + 4 * MiB), *c = (float *)(base + 8 * MiB);
    shoal_op_stats_t st;
    shoal_matmul_args_t args = {.a = a, .b = b, .c = c, .m = s, .n = s, .k = s, .placement = SHOAL_PLACE_ZEROCOPY};
    poison(c, (size_t)s * s);
    OK("zero-copy 128", be->ops->matmul_f32(be, &args, &st));
    size_t checked, bad = errors(a, b, c, s, s, s, &checked);
    printf("| zero-copy 128x128: errors vs float64 | %zu of %zu elements |\n", bad, checked);
    printf("| zero-copy: pointers the device used (A, B, C) | %s (%p %p %p) |\n",
           st.a_used == a && st.b_used == b && st.c_used == c ? "the guest's own" : "OTHER", st.a_used, st.b_used,
           st.c_used);
    printf("| zero-copy first op: RSS growth, bytes copied | %+.3f MB, %llu |\n", st.rss_growth / 1e6,
           (unsigned long long)st.bytes_copied);
    timing_t zc = time_mm(a, b, c, s, SHOAL_PLACE_ZEROCOPY);
    timing_t cp = time_mm(a, b, c, s, SHOAL_PLACE_COPY);
    timing_t di = time_mm(a, b, c, s, -1);
    bad = errors(a, b, c, s, s, s, &checked);
    printf("| zero-copy 128: RSS growth while operands exposed | %+.3f MB |\n", zc.first.rss_growth / 1e6);
    printf("| copy (operand staging) 128: RSS growth, bytes copied | %+.3f MB, %llu |\n", cp.first.rss_growth / 1e6,
           (unsigned long long)cp.first.bytes_copied);

    /* The reference's explicit-copy path: the region copied out of the sandbox into a staging
     * buffer, uploaded, computed on, downloaded and copied back. */
    int64_t q0 = shoal_rss_bytes();
    uint64_t c0 = shoal_now_ns();
    uint8_t *stg = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memcpy(stg, base, region);
    void *dev;
    CUOK(cudaMalloc(&dev, region));
    CUOK(cudaMemcpy(dev, stg, region, cudaMemcpyHostToDevice));
    uint8_t *dv = dev;
    CUOK(shoal_cuda_sgemm_tiled((float *)(dv + 4096), (float *)(dv + 4 * MiB), (float *)(dv + 8 * MiB), s, s, s, 0));
    CUOK(cudaMemcpy(stg, dev, region, cudaMemcpyDeviceToHost));
    int64_t copy_rss = shoal_rss_bytes() - q0;
    memcpy(base, stg, region);
    uint64_t copy_ns = shoal_now_ns() - c0;
    munmap(stg, region);
    cudaFree(dev);
    printf("| staging copy of the whole 16 MiB region: RSS growth | %+.2f MB (%.2f ms end to end) |\n",
           copy_rss / 1e6, copy_ns / 1e6);
    printf("| 128x128 latency, median: zero-copy / copy / un-staged direct | %.1f / %.1f / %.1f us |\n", zc.med_us,
           cp.med_us, di.med_us);
    printf("| errors after all placements | %zu of %zu |\n\n", bad, checked);

    /* Registration cost, reported separately: pinning populates untouched pages. */
    uint8_t *fresh = reserve(64 * MiB, 16 * MiB);
    r0 = shoal_rss_bytes();
    t0 = shoal_now_ns();
    OK("map untouched", be->ops->map(be, fresh, 16 * MiB));
    printf("| registration cost | value |\n|---|---|\n");
    printf("| map() of an untouched 16 MiB range | %.2f ms, RSS %+.2f MB (pinning populates pages) |\n",
           (shoal_now_ns() - t0) / 1e6, (shoal_rss_bytes() - r0) / 1e6);
    be->ops->unmap(be, fresh, 16 * MiB);
    munmap(fresh, 64 * MiB);
    fresh = reserve(64 * MiB, 4 * MiB);
    memset(fresh, 1, 4 * MiB);
    t0 = shoal_now_ns();
    for (int i = 0; i < 64; i++)
        OK("map 64 KiB", be->ops->map(be, fresh + (size_t)i * 65536, 65536));
    printf("| 64 map() calls of 64 KiB (one per Wasm page) | %.2f ms total |\n", (shoal_now_ns() - t0) / 1e6);
    t0 = shoal_now_ns();
    be->ops->unmap(be, fresh, 4 * MiB);
    printf("| unmap() of those 64 registrations | %.2f ms |\n", (shoal_now_ns() - t0) / 1e6);
    munmap(fresh, 64 * MiB);

    /* memory.grow while registered: new pages visible to device work across the boundary. */
    OK("grow", mprotect(base + region, 16 * MiB, PROT_READ | PROT_WRITE) ? SHOAL_E_NOMEM : SHOAL_OK);
    OK("map grown", be->ops->map(be, base + region, 16 * MiB));
    float *ga = (float *)(base + region - 4 * 3000), *gb = (float *)(base + region + MiB),
          *gc = (float *)(base + region + 2 * MiB);
    fill(ga, 200 * 100);
    fill(gb, 100 * 150);
    poison(gc, 200 * 150);
    shoal_matmul_args_t g = {.a = ga, .b = gb, .c = gc, .m = 200, .n = 150, .k = 100,
                             .placement = SHOAL_PLACE_ZEROCOPY};
    OK("matmul across grow boundary", be->ops->matmul_f32(be, &g, &st));
    bad = errors(ga, gb, gc, 200, 150, 100, &checked);
    printf("| memory.grow while registered, A across the boundary | %zu errors of %zu |\n", bad, checked);

    /* A bad operand: refused, nothing launched, the context stays healthy. */
    shoal_matmul_args_t badargs = {.a = (float *)(base + 2 * region - 4096), .b = b, .c = c, .m = s, .n = s, .k = s,
                                   .placement = SHOAL_PLACE_ZEROCOPY};
    shoal_status_t bs = be->ops->matmul_f32(be, &badargs, &st);
    shoal_cuda_info_t info;
    shoal_cuda_backend_info(be, &info);
    printf("| A running past the mapped end | %s, backend %s: \"%s\" |\n", shoal_status_name(bs),
           info.dead ? "DEAD" : "healthy", shoal_last_error());
    OK("op after refusal", be->ops->matmul_f32(be, &args, &st));
    printf("\n");
    be->ops->unmap(be, base, 2 * region);
    munmap(base, 64 * MiB);
}

static void latency(int max_size)
{
    size_t maxe = (size_t)max_size * max_size;
    size_t bytes = 3 * maxe * 4 + 3 * 4096;
    bytes = (bytes + 65535) & ~(size_t)65535;
    uint8_t *base = reserve(bytes, bytes);
    OK("map", be->ops->map(be, base, bytes));
    float *a = (float *)base, *b = (float *)(base + maxe * 4 + 4096), *c = (float *)(base + 2 * (maxe * 4 + 4096));
    printf("## Latency, square f32 matmul C = A @ B, median of reps, end to end (synchronised)\n\n");
    printf("| n | zero-copy us | copy us | resident us | un-staged us | zc - resident us | A+B over PCIe us | "
           "zc GFLOP/s | copy RSS MB | zc RSS MB | errors (checked) |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int s = 128; s <= max_size; s *= 2) {
        size_t n = (size_t)s * s;
        fill(a, n);
        fill(b, n);
        size_t bad = 0, checked = 0, chk;
        timing_t t[4];
        for (int p = 0; p < 4; p++) {
            int pl = p < 3 ? p : -1;
            if (pl == SHOAL_PLACE_RESIDENT) {
                OK("resident A", be->ops->resident_add(be, a, n * 4));
                OK("resident B", be->ops->resident_add(be, b, n * 4));
            }
            poison(c, n);
            t[p] = time_mm(a, b, c, s, pl);
            bad += errors(a, b, c, s, s, s, &chk);
            checked += chk;
            if (pl == SHOAL_PLACE_RESIDENT) {
                be->ops->resident_drop(be, a);
                be->ops->resident_drop(be, b);
            }
        }
        printf("| %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f | %+.2f | %+.3f | %zu (%zu) |\n", s, t[0].med_us,
               t[1].med_us, t[2].med_us, t[3].med_us, t[0].med_us - t[2].med_us, 2.0 * n * 4 / (g_h2d_gbs * 1e3),
               2.0 * s * s * s / (t[0].med_us * 1e3), t[1].first.rss_growth / 1e6, t[0].first.rss_growth / 1e6, bad,
               checked);
        fflush(stdout);
    }
    printf("\n");
    be->ops->unmap(be, base, bytes);
    munmap(base, bytes);
}

/* A large guest memory (256 MiB accessible) of which only 16 MiB was written: eager registration
 * pins and populates all of it at map(); lazy registration pins only the chunks ops touch. */
static void lazy(void)
{
    const size_t mem = 256 * MiB, written = 16 * MiB;
    printf("## Eager vs lazy registration: 256 MiB guest memory, 16 MiB of it written\n\n");
    printf("| mode | map() ms | map() RSS MB | first 128^2 op us | its RSS MB | steady op us | registered MB |\n"
           "|---|---|---|---|---|---|---|\n");
    for (int lz = 0; lz < 2; lz++) {
        OK("mode", shoal_cuda_set_lazy_registration(be, lz ? 2 * MiB : 0));
        uint8_t *base = reserve(mem, mem);
        fill((float *)base, written / 4);
        int64_t r0 = shoal_rss_bytes();
        uint64_t t0 = shoal_now_ns();
        OK("map", be->ops->map(be, base, mem));
        double map_ms = (shoal_now_ns() - t0) / 1e6;
        double map_rss = (shoal_rss_bytes() - r0) / 1e6;
        const int s = 128;
        float *a = (float *)(base + 4096), *b = (float *)(base + 4 * MiB), *c = (float *)(base + 8 * MiB);
        shoal_matmul_args_t args = {.a = a, .b = b, .c = c, .m = s, .n = s, .k = s,
                                    .placement = SHOAL_PLACE_ZEROCOPY};
        shoal_op_stats_t first;
        OK("first op", be->ops->matmul_f32(be, &args, &first));
        size_t checked, bad = errors(a, b, c, s, s, s, &checked);
        timing_t t = time_mm(a, b, c, s, SHOAL_PLACE_ZEROCOPY);
        shoal_cuda_info_t info;
        shoal_cuda_backend_info(be, &info);
        printf("| %s | %.2f | %+.2f | %.1f | %+.3f | %.1f | %.0f |%s\n", lz ? "lazy, 2 MiB chunks" : "eager", map_ms,
               map_rss, first.ns / 1e3, first.rss_growth / 1e6, t.med_us, info.registered_bytes / 1e6,
               bad ? " ERRORS" : "");
        be->ops->unmap(be, base, mem);
        munmap(base, mem);
    }
    OK("mode", shoal_cuda_set_lazy_registration(be, 0));
    printf("\n");
}

int main(int argc, char **argv)
{
    int max_size = argc > 1 ? atoi(argv[1]) : 4096;
    OK("create", shoal_cuda_backend_create(&be));
    shoal_cuda_info_t info;
    shoal_cuda_backend_info(be, &info);
    printf("# shoal CUDA seed bench\n\n%s\n\n", be->ops->describe(be));
    bool lat_only = argc > 2 && strcmp(argv[2], "lat") == 0; /* a second pass, to see the noise */
    if (!lat_only) {
        ceilings();
        seed();
    }
    latency(max_size);
    if (!lat_only) {
        skinny();
        lazy();
    }
    shoal_cuda_backend_info(be, &info);
    printf("backend after run: %zu registrations, dead=%d, cuBLAS=%d, scratch %.1f MB\n", info.registrations,
           info.dead, info.have_cublas, info.scratch_bytes / 1e6);
    shoal_backend_destroy(be);
    return info.dead ? 1 : 0;
}
