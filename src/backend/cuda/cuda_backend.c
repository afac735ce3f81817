/* cuda_backend.c — the CUDA backend: kernels compute on the guest's linear memory in place. This
 * file: errors, lifecycle and creation; cuda_map.c registers guest memory, cuda_matmul.c computes.
 *
 * How the guest's bytes reach the GPU (see DESIGN, "CUDA backend"): map() registers each
 * accessible range with cudaHostRegister(Mapped) and checks that the device address equals the
 * host address, so a guest pointer means the same bytes to the CPU and to the GPU (optionally
 * lazily: chunks registered when an op first touches them). Before any
 * device work touches a host range, the range must be covered by registrations (possibly several
 * adjacent ones after memory.grow); otherwise the op fails with SHOAL_E_BOUNDS and nothing is
 * launched, because a kernel touching unregistered memory raises a sticky error that would break
 * the CUDA context for every actor in the process. Such errors, if they happen anyway, disable
 * the backend with a message; later ops fail fast.
 *
 * Matmul placements:
 *   ZEROCOPY  A and B are read from mapped guest memory exactly once (DMA, split at registration
 *             boundaries) into device scratch, cuBLAS computes in device memory, and C is written
 *             once straight into the guest's bytes. No host copy, no host allocation.
 *   COPY      the peers' way: copy operands out of the sandbox into a fresh host staging buffer,
 *             upload, compute, download, copy back into the guest. Measured, not recommended.
 *   RESIDENT  operands inside ranges named with resident_add are read from their device copy;
 *             others are staged as in ZEROCOPY. C is written into the guest (and refreshed in its
 *             device copy when C lies in a resident range).
 * One stream, one lock: ops are serialised and each ends synchronised, so stats->ns is end to end
 * and unmap never races a kernel. */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "core/error.h"

/* ------------------------------------------------------------------ errors */

shoal_status_t cbe_fail_dead(cuda_backend_t *be)
{
    return shoal_fail(SHOAL_E_DEVICE, "%s", be->dead_msg);
}

/* Turns a CUDA error into a status. Errors that poison the context (illegal address, launch
 * failure, ...) stay sticky: every later call returns them. We detect that by asking the device
 * once more; if it still fails, the backend is dead for good and says so on every later op. */
shoal_status_t cbe_fail(cuda_backend_t *be, cudaError_t e, const char *what)
{
    (void)cudaGetLastError(); /* clears a non-sticky error */
    cudaError_t probe = cudaDeviceSynchronize();
    if (probe != cudaSuccess) {
        be->dead = true;
        snprintf(be->dead_msg, sizeof be->dead_msg,
                 "cuda: the device context is broken (%s: %s, then %s); the CUDA backend is disabled for this "
                 "process: restart it, or run with --device cpu",
                 what, cudaGetErrorName(e), cudaGetErrorName(probe));
        return cbe_fail_dead(be);
    }
    return shoal_fail(SHOAL_E_DEVICE, "cuda: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

/* ------------------------------------------------------------------ lifecycle */

static shoal_status_t cuda_synchronize(shoal_backend_t *b)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    shoal_status_t s = SHOAL_OK;
    if (be->dead) {
        s = cbe_fail_dead(be);
    } else {
        cudaSetDevice(be->dev);
        cudaError_t e = cudaStreamSynchronize(be->stream);
        if (e != cudaSuccess)
            s = cbe_fail(be, e, "cudaStreamSynchronize");
    }
    pthread_mutex_unlock(&be->mu);
    return s;
}

static const char *cuda_describe(shoal_backend_t *b) { return cb(b)->desc; }

static void cuda_destroy(shoal_backend_t *b)
{
    cuda_backend_t *be = cb(b);
    if (!be)
        return;
    cudaSetDevice(be->dev);
    if (cudaStreamSynchronize(be->stream) != cudaSuccess)
        (void)cudaGetLastError();
    cbe_forget_range(be, 0, UINTPTR_MAX);
    for (int i = 0; i < SCRATCH_N; i++)
        if (be->scratch[i])
            cudaFree(be->scratch[i]);
    if (be->blas)
        cublasDestroy(be->blas);
    cudaStreamDestroy(be->stream);
    (void)cudaGetLastError();
    shoal_range_set_free(&be->regs);
    shoal_range_set_free(&be->acc);
    shoal_range_set_free(&be->resident);
    pthread_mutex_destroy(&be->mu);
    free(be);
}

static size_t mapped_bytes(const cuda_backend_t *be)
{
    size_t n = 0;
    for (size_t i = 0; i < be->acc.n; i++)
        n += be->acc.v[i].len;
    return n;
}

shoal_status_t shoal_cuda_set_lazy_registration(shoal_backend_t *b, size_t chunk)
{
    cuda_backend_t *be = cb(b);
    long page = sysconf(_SC_PAGESIZE);
    if (chunk && (page <= 0 || chunk % (size_t)page))
        return shoal_fail(SHOAL_E_INVALID, "cuda: lazy registration chunk %zu is not a multiple of the page size",
                          chunk);
    pthread_mutex_lock(&be->mu);
    shoal_status_t s = SHOAL_OK;
    if (be->acc.n)
        s = shoal_fail(SHOAL_E_INVALID, "cuda: the registration mode can change only while no memory is mapped");
    else
        be->lazy_chunk = chunk;
    pthread_mutex_unlock(&be->mu);
    return s;
}

void shoal_cuda_backend_info(shoal_backend_t *b, shoal_cuda_info_t *out)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    *out = (shoal_cuda_info_t){
        .mapped_bytes = mapped_bytes(be),
        .lazy_chunk = be->lazy_chunk,
        .registrations = be->regs.n,
        .registered_bytes = be->registered_bytes,
        .register_ns = be->register_ns,
        .resident_ranges = be->resident.n,
        .resident_bytes = be->resident_bytes,
        .scratch_bytes = be->scratch_cap[0] + be->scratch_cap[1] + be->scratch_cap[2],
        .direct_max_m = be->direct_max_m,
        .have_cublas = be->blas != NULL,
        .dead = be->dead,
    };
    pthread_mutex_unlock(&be->mu);
}

static const shoal_backend_ops_t cuda_ops = {
    .name = "cuda",
    .caps = SHOAL_CAP_HOST_PTR | SHOAL_CAP_DEVICE_MEM | SHOAL_CAP_NEEDS_MAP,
    .describe = cuda_describe,
    .map = cbe_map,
    .unmap = cbe_unmap,
    .matmul_f32 = cbe_matmul,
    .resident_add = cbe_resident_add,
    .resident_drop = cbe_resident_drop,
    .synchronize = cuda_synchronize,
    .destroy = cuda_destroy,
};

shoal_status_t shoal_cuda_backend_create(shoal_backend_t **out)
{
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda: no usable GPU (cudaGetDeviceCount: %s, %s)", cudaGetErrorName(e),
                          cudaGetErrorString(e));
    }
    if (count == 0)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda: no usable GPU (the driver reports 0 devices)");
    const int dev = 0;
    int can_map = 0, uva = 0, major = 0, minor = 0, sms = 0, pageable = 0;
    cudaDeviceGetAttribute(&can_map, cudaDevAttrCanMapHostMemory, dev);
    cudaDeviceGetAttribute(&uva, cudaDevAttrUnifiedAddressing, dev);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaDeviceGetAttribute(&pageable, cudaDevAttrPageableMemoryAccess, dev);
    if (!can_map || !uva)
        return shoal_fail(SHOAL_E_UNSUPPORTED,
                          "cuda: GPU %d cannot map host memory at host addresses (canMapHostMemory=%d, "
                          "unifiedAddressing=%d): zero-copy is impossible on it",
                          dev, can_map, uva);
    cuda_backend_t *be = calloc(1, sizeof *be);
    if (!be)
        return shoal_fail(SHOAL_E_NOMEM, "cuda: out of memory");
    be->base.ops = &cuda_ops;
    be->dev = dev;
    pthread_mutex_init(&be->mu, NULL);
    if ((e = cudaSetDevice(dev)) != cudaSuccess || (e = cudaFree(NULL)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&be->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        (void)cudaGetLastError();
        pthread_mutex_destroy(&be->mu);
        free(be);
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda: cannot start a context on GPU %d: %s", dev,
                          cudaGetErrorString(e));
    }
    cublasStatus_t bs = cublasCreate(&be->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) {
        cublasSetStream(be->blas, be->stream);
        /* Plain fp32 FMA, never TF32: results are compared against float64 at fp32 tolerance. */
        cublasSetMathMode(be->blas, CUBLAS_DEFAULT_MATH);
    } else {
        be->blas = NULL;
    }
    char name[256] = "?";
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, dev) == cudaSuccess)
        snprintf(name, sizeof name, "%s", prop.name);
    size_t freeb = 0, total = 0;
    cudaMemGetInfo(&freeb, &total);
    int drv = 0, rt = 0;
    cudaDriverGetVersion(&drv);
    cudaRuntimeGetVersion(&rt);
    (void)cudaGetLastError();
    snprintf(be->desc, sizeof be->desc,
             "cuda: %.120s (GPU %d of %d, sm_%d%d, %d SMs, %.1f GiB), driver %d.%d, runtime %d.%d, %s, host memory "
             "registered in place (pageableMemoryAccess=%d)",
             name, dev, count, major, minor, sms, (double)total / (1u << 30), drv / 1000, drv % 1000 / 10, rt / 1000,
             rt % 1000 / 10, be->blas ? "cuBLAS sgemm" : "tiled sgemm (cuBLAS unavailable)", pageable);
    *out = &be->base;
    return SHOAL_OK;
}
