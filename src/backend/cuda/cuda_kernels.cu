/* cuda_kernels.cu — a tiled shared-memory SGEMM for any device-accessible fp32 pointers.
 *
 * Design: a 64x64 block of C per 256-thread block, K walked in slices of 16; each thread owns a
 * 4x4 patch in registers. A slice of A (64x16) and of B (16x64) is loaded once per block into
 * shared memory, so global (or mapped host) memory is read 64x less often than a naive kernel.
 * A is stored transposed in shared memory so the inner loop reads both tiles as broadcasts
 * along rows. Edges are guarded element by element, so no shape needs padding, and loads are
 * scalar so guest pointers need only 4-byte alignment. cuBLAS does the heavy lifting in the
 * backend; this kernel is the fallback and the "un-staged" reference for benchmarks. */
#include "backend/cuda/cuda_kernels.h"

namespace {

constexpr int BM = 64, BN = 64, BK = 16, TM = 4, TN = 4, THREADS = 256;

__global__ void __launch_bounds__(THREADS) sgemm_tiled(const float *__restrict__ A, const float *__restrict__ B,
                                                       float *__restrict__ C, int M, int N, int K)
{
    __shared__ float As[BK][BM + 4]; // transposed: As[kk][row]; +4 breaks bank conflicts on the store
    __shared__ float Bs[BK][BN];
    const int tid = threadIdx.x;
    const int row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    const int ty = tid / (BN / TN), tx = tid % (BN / TN); // 16x16 threads, 4x4 each
    float acc[TM][TN] = {};

    for (int k0 = 0; k0 < K; k0 += BK) {
        // A tile 64x16: thread loads 4 elements; consecutive threads walk k, so a warp reads 2 rows of 16.
#pragma unroll
        for (int i = 0; i < (BM * BK) / THREADS; i++) {
            int idx = tid + i * THREADS;
            int r = idx / BK, kk = idx % BK;
            int gr = row0 + r, gk = k0 + kk;
            As[kk][r] = (gr < M && gk < K) ? A[(size_t)gr * K + gk] : 0.0f;
        }
        // B tile 16x64: consecutive threads walk columns (coalesced).
#pragma unroll
        for (int i = 0; i < (BK * BN) / THREADS; i++) {
            int idx = tid + i * THREADS;
            int kk = idx / BN, cc = idx % BN;
            int gk = k0 + kk, gc = col0 + cc;
            Bs[kk][cc] = (gk < K && gc < N) ? B[(size_t)gk * N + gc] : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float av[TM], bv[TN];
#pragma unroll
            for (int i = 0; i < TM; i++)
                av[i] = As[kk][ty * TM + i];
#pragma unroll
            for (int j = 0; j < TN; j++)
                bv[j] = Bs[kk][tx * TN + j];
#pragma unroll
            for (int i = 0; i < TM; i++)
#pragma unroll
                for (int j = 0; j < TN; j++)
                    acc[i][j] = fmaf(av[i], bv[j], acc[i][j]);
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < TM; i++) {
        int gr = row0 + ty * TM + i;
        if (gr >= M)
            continue;
#pragma unroll
        for (int j = 0; j < TN; j++) {
            int gc = col0 + tx * TN + j;
            if (gc < N)
                C[(size_t)gr * N + gc] = acc[i][j];
        }
    }
}

} // namespace

extern "C" cudaError_t shoal_cuda_sgemm_tiled(const float *a, const float *b, float *c, int m, int n, int k,
                                              cudaStream_t stream)
{
    if (m <= 0 || n <= 0)
        return cudaSuccess;
    dim3 grid((unsigned)((n + BN - 1) / BN), (unsigned)((m + BM - 1) / BM));
    if (grid.y > 65535u)
        return cudaErrorInvalidConfiguration;
    sgemm_tiled<<<grid, THREADS, 0, stream>>>(a, b, c, m, n, k);
    return cudaGetLastError();
}
