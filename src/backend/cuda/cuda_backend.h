/* cuda_backend.h — CUDA-backend extras beyond the generic ops table, for tests and benchmarks.
 * Everything else goes through shoal_backend_ops_t (backend/backend.h). */
#ifndef SHOAL_BACKEND_CUDA_BACKEND_H
#define SHOAL_BACKEND_CUDA_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"

typedef struct shoal_cuda_info {
    size_t mapped_bytes;      /* guest memory map() made known (the device may touch it) */
    size_t lazy_chunk;        /* 0: eager registration; see shoal_cuda_set_lazy_registration */
    size_t registrations;     /* host ranges currently registered with the driver */
    size_t registered_bytes;  /* their total size (pinned) */
    uint64_t register_ns;     /* time spent in cudaHostRegister so far (pinning + populating) */
    size_t resident_ranges;   /* resident operands held in device memory */
    size_t resident_bytes;
    size_t scratch_bytes;     /* device staging buffers kept between ops */
    uint32_t direct_max_m;    /* see shoal_cuda_set_direct_max_m */
    bool have_cublas;         /* false: the tiled kernel computes everything */
    bool dead;                /* a fatal device error disabled the backend */
} shoal_cuda_info_t;

/* be must come from shoal_cuda_backend_create. */
void shoal_cuda_backend_info(shoal_backend_t *be, shoal_cuda_info_t *out);

/* Zero-copy matmul WITHOUT staging: the tiled kernel reads A and B straight from mapped guest
 * memory (each A element ceil(n/64) times over the bus) and writes C in place. Same checks as
 * matmul_f32 (every operand must lie in mapped ranges and be 4-byte aligned). It exists to
 * measure what staging buys; args->placement is ignored. */
shoal_status_t shoal_cuda_matmul_direct(shoal_backend_t *be, const shoal_matmul_args_t *args,
                                        shoal_op_stats_t *stats);

/* Registration mode. chunk = 0 (default): map() pins and registers each range at once, so ops
 * never pay for it, but a large untouched memory is pinned (and populated) whole. chunk > 0 (a
 * multiple of the page size, e.g. 2 MiB): map() only records the range, and the first op that
 * touches a chunk registers it (its cost lands in that op's ns and rss_growth). Only while no
 * memory is mapped; SHOAL_E_INVALID otherwise. */
shoal_status_t shoal_cuda_set_lazy_registration(shoal_backend_t *be, size_t chunk);

/* ZEROCOPY matmuls with m <= max_m use the un-staged path above instead of staging (0: never).
 * For benchmarks and tuning; the default is set from measurements (bench/RESULTS-cuda.md). */
void shoal_cuda_set_direct_max_m(shoal_backend_t *be, uint32_t max_m);

#endif
