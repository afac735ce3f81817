/* cuda_backend_impl.h — what the files of the CUDA backend share (cuda_backend.c: errors,
 * lifecycle, creation; cuda_map.c: registrations, map / unmap, resident operands; cuda_matmul.c:
 * the matmul placements). Internal to src/backend/cuda. Every function here is called with the
 * backend's lock held. */
#ifndef SHOAL_BACKEND_CUDA_CUDA_BACKEND_IMPL_H
#define SHOAL_BACKEND_CUDA_CUDA_BACKEND_IMPL_H

#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_ranges.h"

enum { SCRATCH_A, SCRATCH_B, SCRATCH_C, SCRATCH_N };

typedef struct cuda_backend {
    shoal_backend_t base;
    pthread_mutex_t mu;
    int dev;
    cudaStream_t stream;
    cublasHandle_t blas; /* NULL when cuBLAS could not start: the tiled kernel is used */
    shoal_range_set_t acc;      /* host ranges map() made known: guest memory the device may touch */
    shoal_range_set_t regs;     /* host ranges registered with the driver (all of acc unless lazy) */
    size_t lazy_chunk;          /* 0: map() registers at once; else chunks are registered on first use */
    shoal_range_set_t resident; /* host range -> device copy (payload) */
    void *scratch[SCRATCH_N];
    size_t scratch_cap[SCRATCH_N];
    size_t registered_bytes, resident_bytes;
    uint64_t register_ns;
    uint32_t direct_max_m; /* ZEROCOPY with m <= this reads mapped operands in place, un-staged */
    bool dead;
    char dead_msg[512];
    char desc[512];
} cuda_backend_t;

static inline cuda_backend_t *cb(shoal_backend_t *be) { return (cuda_backend_t *)be; }

/* The message of a backend whose device context broke (every later op returns it). */
shoal_status_t cbe_fail_dead(cuda_backend_t *be);
/* A CUDA error as a status; an error that poisoned the context disables the backend. */
shoal_status_t cbe_fail(cuda_backend_t *be, cudaError_t e, const char *what);

#define CU(be, call)                                                                                                   \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess)                                                                                         \
            return cbe_fail((be), e_, #call);                                                                           \
    } while (0)

/* Host <-> device copies of a guest range, one DMA per registration it spans. */
shoal_status_t cbe_copy_guest(cuda_backend_t *be, void *dev, uintptr_t host, size_t len, bool to_device);
/* SHOAL_E_BOUNDS unless [p, p+len) lies in mapped guest memory; registers it first in lazy mode. */
shoal_status_t cbe_require_mapped(cuda_backend_t *be, const char *what, const void *p, size_t len);
/* Device copy of [p, p+len) from a resident range, or NULL. */
void *cbe_resident_lookup(cuda_backend_t *be, const void *p, size_t len);
/* Drops resident copies and registrations that intersect [lo, hi) (synchronised caller). */
void cbe_forget_range(cuda_backend_t *be, uintptr_t lo, uintptr_t hi);

/* The ops (cuda_map.c, cuda_matmul.c) */
shoal_status_t cbe_map(shoal_backend_t *b, void *base, size_t len);
void cbe_unmap(shoal_backend_t *b, void *base, size_t len);
shoal_status_t cbe_matmul(shoal_backend_t *b, const shoal_matmul_args_t *args, shoal_op_stats_t *stats);
shoal_status_t cbe_resident_add(shoal_backend_t *b, const void *host, size_t len);
void cbe_resident_drop(shoal_backend_t *b, const void *host);

#endif
