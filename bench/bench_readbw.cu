// bench_readbw.cu — the device's read-only streaming bandwidth (the ceiling a decode matvec
// chases) beside its copy bandwidth (what bench_cuda_llama divides by): 16-byte loads, UN in
// flight per thread, a grid of blocks/SM x SMs; best of 8 over 4 GiB. Prints one line per shape.
#include <cuda_runtime.h>
#include <stdio.h>
#include <stdint.h>

template <int UN>
__global__ void rd(const uint4 *__restrict__ p, size_t n, unsigned *out)
{
    unsigned acc = 0;
    const size_t T = (size_t)gridDim.x * blockDim.x;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += T * UN) {
        uint4 v[UN];
#pragma unroll
        for (int j = 0; j < UN; j++)
            v[j] = i + j * T < n ? __ldg(p + i + j * T) : make_uint4(0, 0, 0, 0);
#pragma unroll
        for (int j = 0; j < UN; j++)
            acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    }
    if (acc == 0x12345678u)
        *out = acc;
}

/* The best of 8 timings (ms) of what enqueue puts on the default stream. */
template <typename F> static float best_ms(F enqueue)
{
    cudaEvent_t a, b;
    cudaEventCreate(&a);
    cudaEventCreate(&b);
    float best = 1e9f;
    for (int r = 0; r < 8; r++) {
        cudaEventRecord(a);
        enqueue();
        cudaEventRecord(b);
        cudaEventSynchronize(b);
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        if (ms < best)
            best = ms;
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    return best;
}

template <int UN> static void run(const uint4 *p, size_t n, unsigned *o, int sms, int bps, int thr)
{
    const float ms = best_ms([&] { rd<UN><<<sms * bps, thr>>>(p, n, o); });
    printf("read UN=%d blocks/SM=%d threads=%d: %.0f GB/s\n", UN, bps, thr, n * 16.0 / ms / 1e6);
}

int main()
{
    size_t bytes = (size_t)4 << 30;
    uint4 *p;
    unsigned *o;
    if (cudaMalloc(&p, bytes) || cudaMalloc(&o, 4)) {
        fprintf(stderr, "bench_readbw: cannot allocate 4 GiB on the device: %s\n", cudaGetErrorString(cudaGetLastError()));
        return 1;
    }
    cudaMemset(p, 1, bytes);
    int sms;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0);
    const size_t n = bytes / 16;
    run<1>(p, n, o, sms, 8, 256);
    run<2>(p, n, o, sms, 4, 256);
    run<4>(p, n, o, sms, 4, 256);
    run<4>(p, n, o, sms, 8, 256);
    run<8>(p, n, o, sms, 2, 256);
    run<8>(p, n, o, sms, 4, 256);
    // copy bandwidth, read + write counted, as bench_cuda_llama measures it
    const float ms = best_ms([&] { cudaMemcpy((char *)p + bytes / 2, p, bytes / 2, cudaMemcpyDeviceToDevice); });
    printf("copy (read + write): %.0f GB/s\n", bytes / ms / 1e6);
    return 0;
}
