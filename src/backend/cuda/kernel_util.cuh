/* kernel_util.cuh — what the kernel files of the CUDA backend share (llm_kernels.cu, mv_fused.cu):
 * ggml type ids, warp and block sums, the programmatic-dependent-launch handshake and the launch
 * helper. Internal to src/backend/cuda. */
#ifndef SHOAL_BACKEND_CUDA_KERNEL_UTIL_CUH
#define SHOAL_BACKEND_CUDA_KERNEL_UTIL_CUH

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

/* Whether this thread's launches use programmatic dependent launch (shoal_cu_set_pdl). */
extern thread_local bool shoal_cu_pdl;

namespace {

enum { T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_BF16 = 30 };

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Programmatic dependent launch (Hopper): a kernel launched with the PDL attribute may start
 * while its predecessor is still running. Every kernel here therefore waits for its predecessor's
 * results (griddepcontrol.wait; a no-op when launched without the attribute) before reading
 * anything a predecessor wrote or writing anything one may still read, and then lets its own
 * successor launch, which can meanwhile stream the weights it does not need to wait for. */
__device__ __forceinline__ void pdl_wait_then_release()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ void bf16x2(uint32_t w, float &a, float &b)
{
    a = __uint_as_float(w << 16);
    b = __uint_as_float(w & 0xffff0000u);
}

/* Eight 16-bit weights (F16, or BF16 when BF) of a 16-byte load as floats. */
template <bool BF> __device__ __forceinline__ void unit16_to_float(uint4 q, float *f)
{
    if (BF) {
        bf16x2(q.x, f[0], f[1]);
        bf16x2(q.y, f[2], f[3]);
        bf16x2(q.z, f[4], f[5]);
        bf16x2(q.w, f[6], f[7]);
    } else {
        const __half2 *h = (const __half2 *)&q;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float2 t = __half22float2(h[k]);
            f[2 * k] = t.x;
            f[2 * k + 1] = t.y;
        }
    }
}

__device__ __forceinline__ float block_sum(float v, float *sh)
{
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, wid = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    __syncthreads(); // sh may still be read by a previous call
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(v);
}

/* Threads of an attention block (decode and the one-block-per-query prefill kernel). */
constexpr int ATT_THREADS = 256;

/* The unnormalised softmax of sc[0, n) in place: the block's maximum from each thread's own
 * maximum mx (over the positions it wrote), sc[p] = exp(sc[p] - max), and the block-wide sum,
 * returned to every thread with the writes ordered before later reads. red: 32 floats. */
__device__ __forceinline__ float block_softmax(float mx, float *sc, int n, float *red, float *max_out = nullptr)
{
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0)
        red[wid] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < nw; i++)
        mx = fmaxf(mx, red[i]);
    if (max_out)
        *max_out = mx;
    float l = 0.0f;
    for (int p = threadIdx.x; p < n; p += blockDim.x) {
        const float e = expf(sc[p] - mx);
        sc[p] = e;
        l += e;
    }
    return block_sum(l, red);
}

/* Launches a kernel on s, with programmatic dependent launch when enabled for this thread's
 * launches (shoal_cu_set_pdl). */
template <typename... P, typename... A>
cudaError_t launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A... args)
{
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = shoal_cu_pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k, args...);
}

/* Rows per group: 4 (gate/up: 2 of each). Threads per block: up to eight warps, so that each
 * thread owns one unit of a row of 16-bit weights, UNROLL of quantised ones (a 576-wide Q4 row runs
 * one warp). Blocks: as many as the GPU holds at once (they loop over the groups; the count is
 * trimmed so that every block takes the same number), or fewer when there are fewer groups.
 * Measured on an H100 (bench/gpu/run_tune.sh, bench/RESULTS-cuda-llm.md). */
} // namespace

#endif
