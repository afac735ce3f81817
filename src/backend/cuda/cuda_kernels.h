/* cuda_kernels.h — C entry points of the CUDA kernels (cuda_kernels.cu). */
#ifndef SHOAL_BACKEND_CUDA_KERNELS_H
#define SHOAL_BACKEND_CUDA_KERNELS_H

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

/* C[m,n] = A[m,k] @ B[k,n], row-major fp32, one tiled shared-memory kernel on `stream`.
 * Pointers must be device-accessible and 4-byte aligned; any m, n, k (edges are guarded).
 * Each A element is read ceil(n/64) times and each B element ceil(m/64) times, each C element
 * written once: used where cuBLAS is unavailable and to measure un-staged mapped reads.
 * Returns the launch error (cudaSuccess once queued). */
cudaError_t shoal_cuda_sgemm_tiled(const float *a, const float *b, float *c, int m, int n, int k,
                                   cudaStream_t stream);

#ifdef __cplusplus
}
#endif
#endif
