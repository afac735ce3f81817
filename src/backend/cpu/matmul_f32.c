/* matmul_f32.c — float32 GEMM for the `shoal.matmul_f32` op.
 *
 * Design: C is cut into tiles of TILE_M rows x TILE_N columns, one task each. Inside a tile,
 * k is walked in chunks of KC; for each 16-column block a KC x 16 panel of B is packed
 * contiguously (16 KiB, L1-resident) and a register-blocked micro-kernel keeps a 4 x 16 block
 * of C in vector registers while broadcasting A[i,k] against the panel, for all the tile's
 * rows. The micro-kernel is written with GCC vector
 * types and compiled per ISA (target_clones), so one binary uses AVX-512 where present and
 * AVX2+FMA or SSE elsewhere. */
#include "backend/cpu/matmul_f32.h"

#include <string.h>

/* The vector helpers below are static and always inlined, so their by-value vector ABI
 * never crosses a call boundary. */
#pragma GCC diagnostic ignored "-Wpsabi"

#define TILE_M 64
#define TILE_N 256
#define KC 256

typedef float v16 __attribute__((vector_size(64)));

static inline __attribute__((always_inline)) v16 load16(const float *p)
{
    v16 v;
    memcpy(&v, p, sizeof v);
    return v;
}
static inline __attribute__((always_inline)) void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

#define CLONES __attribute__((target_clones("avx512f", "arch=haswell", "default")))

/* Packs B[k0:k1, j:j+w] (w <= 16) into a contiguous KC x 16 panel, zero-padding short
 * blocks, so the micro-kernel streams it from L1 with no stride (strides that are multiples
 * of 4 KiB otherwise alias in the cache). */
static void pack_b(const float *b, uint32_t n, uint32_t k0, uint32_t k1, uint32_t j, uint32_t w, float *panel)
{
    for (uint32_t p = k0; p < k1; p++) {
        float *dst = panel + (size_t)(p - k0) * 16;
        memcpy(dst, b + (size_t)p * n + j, w * sizeof(float));
        for (uint32_t q = w; q < 16; q++) dst[q] = 0;
    }
}

/* rows [i0, i1) x cols [j, j+w) of C += A[:, k0:k1] @ panel, w <= 16 */
CLONES static void panel_kernel(const float *a, const float *panel, float *c, uint32_t n, uint32_t k, uint32_t i0,
                                uint32_t i1, uint32_t j, uint32_t w, uint32_t k0, uint32_t k1)
{
    uint32_t kc = k1 - k0, i = i0;
    float tmp[4][16];
    for (; i + 4 <= i1; i += 4) {
        const float *a0 = a + (size_t)i * k + k0, *a1 = a0 + k, *a2 = a1 + k, *a3 = a2 + k;
        v16 r0 = {0}, r1 = {0}, r2 = {0}, r3 = {0};
        for (uint32_t p = 0; p < kc; p++) {
            v16 bv = load16(panel + (size_t)p * 16);
            r0 += a0[p] * bv;
            r1 += a1[p] * bv;
            r2 += a2[p] * bv;
            r3 += a3[p] * bv;
        }
        float *c0 = c + (size_t)i * n + j;
        if (w == 16) {
            store16(c0, load16(c0) + r0);
            store16(c0 + n, load16(c0 + n) + r1);
            store16(c0 + 2 * (size_t)n, load16(c0 + 2 * (size_t)n) + r2);
            store16(c0 + 3 * (size_t)n, load16(c0 + 3 * (size_t)n) + r3);
        } else {
            store16(tmp[0], r0), store16(tmp[1], r1), store16(tmp[2], r2), store16(tmp[3], r3);
            for (uint32_t r = 0; r < 4; r++)
                for (uint32_t q = 0; q < w; q++) c0[(size_t)r * n + q] += tmp[r][q];
        }
    }
    for (; i < i1; i++) {
        const float *ar = a + (size_t)i * k + k0;
        v16 r0 = {0};
        for (uint32_t p = 0; p < kc; p++) r0 += ar[p] * load16(panel + (size_t)p * 16);
        store16(tmp[0], r0);
        float *cr = c + (size_t)i * n + j;
        for (uint32_t q = 0; q < w; q++) cr[q] += tmp[0][q];
    }
}

typedef struct {
    const float *a, *b;
    float *c;
    uint32_t m, n, k, tiles_n;
} mm_job;

static void mm_task(void *ctx, int task, int thread)
{
    (void)thread;
    const mm_job *j = ctx;
    uint32_t ti = (uint32_t)task / j->tiles_n, tj = (uint32_t)task % j->tiles_n;
    uint32_t i0 = ti * TILE_M, i1 = i0 + TILE_M < j->m ? i0 + TILE_M : j->m;
    uint32_t j0 = tj * TILE_N, j1 = j0 + TILE_N < j->n ? j0 + TILE_N : j->n;
    for (uint32_t i = i0; i < i1; i++) memset(j->c + (size_t)i * j->n + j0, 0, (size_t)(j1 - j0) * sizeof(float));
    float panel[KC * 16] __attribute__((aligned(64)));
    for (uint32_t k0 = 0; k0 < j->k; k0 += KC) {
        uint32_t k1 = k0 + KC < j->k ? k0 + KC : j->k;
        for (uint32_t jj = j0; jj < j1; jj += 16) {
            uint32_t w = j1 - jj < 16 ? j1 - jj : 16;
            pack_b(j->b, j->n, k0, k1, jj, w, panel);
            panel_kernel(j->a, panel, j->c, j->n, j->k, i0, i1, jj, w, k0, k1);
        }
    }
}

void shoal_cpu_matmul_f32(shoal_threadpool_t *pool, const float *a, const float *b, float *c, uint32_t m,
                          uint32_t n, uint32_t k)
{
    if (!m || !n) return;
    mm_job job = {a, b, c, m, n, k, (n + TILE_N - 1) / TILE_N};
    uint64_t tiles = (uint64_t)((m + TILE_M - 1) / TILE_M) * job.tiles_n;
    if (tiles > (uint64_t)INT32_MAX) tiles = 0; /* unreachable for wasm32 operands */
    shoal_threadpool_parallel_for(pool, mm_task, &job, (int)tiles);
}

const char *shoal_cpu_matmul_isa(void)
{
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512f";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2+fma";
    return "generic";
}
