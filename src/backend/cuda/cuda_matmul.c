/* cuda_matmul.c — the CUDA backend's float32 matmul on guest memory, in the placements
 * cuda_backend.c describes (ZEROCOPY, COPY, RESIDENT, and the un-staged direct kernel). */
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_backend_impl.h"
#include "backend/cuda/cuda_kernels.h"
#include "core/error.h"

static const char *blas_name(cublasStatus_t s)
{
    switch (s) {
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_ARCH_MISMATCH: return "CUBLAS_STATUS_ARCH_MISMATCH";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case CUBLAS_STATUS_INTERNAL_ERROR: return "CUBLAS_STATUS_INTERNAL_ERROR";
    case CUBLAS_STATUS_NOT_SUPPORTED: return "CUBLAS_STATUS_NOT_SUPPORTED";
    default: return "cuBLAS error";
    }
}
static shoal_status_t ensure_scratch(cuda_backend_t *be, int which, size_t bytes)
{
    if (be->scratch_cap[which] >= bytes)
        return SHOAL_OK;
    if (be->scratch[which]) {
        CU(be, cudaStreamSynchronize(be->stream));
        cudaFree(be->scratch[which]);
        be->scratch[which] = NULL;
        be->scratch_cap[which] = 0;
    }
    /* Round up so a run of growing sizes does not reallocate every time. */
    size_t cap = bytes < ((size_t)1 << 20) ? ((size_t)1 << 20) : bytes + bytes / 4;
    cudaError_t e = cudaMalloc(&be->scratch[which], cap);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        be->scratch[which] = NULL;
        return shoal_fail(SHOAL_E_NOMEM, "cuda: cannot allocate %zu bytes of device scratch: %s", cap,
                          cudaGetErrorString(e));
    }
    be->scratch_cap[which] = cap;
    return SHOAL_OK;
}
/* C = A @ B on device pointers, row-major. cuBLAS is column-major, so it computes
 * C^T (n x m) = B^T (n x k) @ A^T (k x m), which is the same memory. */
static shoal_status_t gemm(cuda_backend_t *be, const float *a, const float *b, float *c, int m, int n, int k)
{
    if (be->blas) {
        const float one = 1.0f, zero = 0.0f;
        cublasStatus_t s = cublasSgemm(be->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero, c, n);
        if (s != CUBLAS_STATUS_SUCCESS) {
            shoal_status_t st = cbe_fail(be, cudaGetLastError(), "cublasSgemm");
            if (be->dead)
                return st;
            return shoal_fail(SHOAL_E_DEVICE, "cuda: cublasSgemm(%d x %d x %d) failed: %s", m, n, k, blas_name(s));
        }
        return SHOAL_OK;
    }
    CU(be, shoal_cuda_sgemm_tiled(a, b, c, m, n, k, be->stream));
    return SHOAL_OK;
}

/* ------------------------------------------------------------------ matmul */

typedef struct mm_shape {
    int m, n, k;
    size_t ba, bb, bc;
} mm_shape_t;

static shoal_status_t check_args(const shoal_matmul_args_t *args, mm_shape_t *sh)
{
    if (!args)
        return shoal_fail(SHOAL_E_INVALID, "cuda: matmul without arguments");
    if (args->m > INT_MAX || args->n > INT_MAX || args->k > INT_MAX)
        return shoal_fail(SHOAL_E_INVALID, "cuda: matmul shape %ux%ux%u exceeds the device's int range", args->m,
                          args->n, args->k);
    sh->m = (int)args->m;
    sh->n = (int)args->n;
    sh->k = (int)args->k;
    sh->ba = (size_t)args->m * args->k * sizeof(float);
    sh->bb = (size_t)args->k * args->n * sizeof(float);
    sh->bc = (size_t)args->m * args->n * sizeof(float);
    if ((sh->ba && !args->a) || (sh->bb && !args->b) || (sh->bc && !args->c))
        return shoal_fail(SHOAL_E_INVALID, "cuda: matmul with a NULL operand");
    return SHOAL_OK;
}

/* The placements that read A and B and write C in place need all three inside registered guest memory. */
static shoal_status_t require_operands_mapped(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh)
{
    shoal_status_t s;
    if ((s = cbe_require_mapped(be, "A", x->a, sh->ba)) || (s = cbe_require_mapped(be, "B", x->b, sh->bb)))
        return s;
    return cbe_require_mapped(be, "C", x->c, sh->bc);
}

static shoal_status_t mm_zerocopy(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                                  shoal_op_stats_t *st)
{
    shoal_status_t s;
    if ((s = require_operands_mapped(be, x, sh)))
        return s;
    if ((s = ensure_scratch(be, SCRATCH_A, sh->ba)) || (s = ensure_scratch(be, SCRATCH_B, sh->bb)) ||
        (s = ensure_scratch(be, SCRATCH_C, sh->bc)))
        return s;
    /* One pass over each mapped operand; the GEMM's many re-reads then hit device memory. */
    if ((s = cbe_copy_guest(be, be->scratch[SCRATCH_A], (uintptr_t)x->a, sh->ba, true)) ||
        (s = cbe_copy_guest(be, be->scratch[SCRATCH_B], (uintptr_t)x->b, sh->bb, true)))
        return s;
    if ((s = gemm(be, be->scratch[SCRATCH_A], be->scratch[SCRATCH_B], be->scratch[SCRATCH_C], sh->m, sh->n, sh->k)))
        return s;
    if ((s = cbe_copy_guest(be, be->scratch[SCRATCH_C], (uintptr_t)x->c, sh->bc, false)))
        return s;
    CU(be, cudaStreamSynchronize(be->stream));
    st->a_used = x->a;
    st->b_used = x->b;
    st->c_used = x->c;
    return SHOAL_OK;
}

static shoal_status_t mm_copy(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                              shoal_op_stats_t *st, int64_t rss0, uint64_t *probe_ns)
{
    /* A fresh staging buffer per op, as a peer allocates a host tensor per set_input; mmap so the
     * RSS it costs is what is measured (malloc's reuse would hide it). */
    size_t total = sh->ba + sh->bb + sh->bc;
    char *stg = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (stg == MAP_FAILED)
        return shoal_fail(SHOAL_E_NOMEM, "cuda: cannot allocate a %zu-byte staging buffer", total);
    shoal_status_t s;
    memcpy(stg, x->a, sh->ba);
    memcpy(stg + sh->ba, x->b, sh->bb);
    if ((s = ensure_scratch(be, SCRATCH_A, sh->ba)) || (s = ensure_scratch(be, SCRATCH_B, sh->bb)) ||
        (s = ensure_scratch(be, SCRATCH_C, sh->bc)))
        goto out;
    cudaError_t e;
    if ((e = cudaMemcpyAsync(be->scratch[SCRATCH_A], stg, sh->ba, cudaMemcpyHostToDevice, be->stream)) ||
        (e = cudaMemcpyAsync(be->scratch[SCRATCH_B], stg + sh->ba, sh->bb, cudaMemcpyHostToDevice, be->stream))) {
        s = cbe_fail(be, e, "cudaMemcpyAsync (upload of staged operands)");
        goto out;
    }
    if ((s = gemm(be, be->scratch[SCRATCH_A], be->scratch[SCRATCH_B], be->scratch[SCRATCH_C], sh->m, sh->n, sh->k)))
        goto out;
    if ((e = cudaMemcpyAsync(stg + sh->ba + sh->bb, be->scratch[SCRATCH_C], sh->bc, cudaMemcpyDeviceToHost,
                             be->stream)) ||
        (e = cudaStreamSynchronize(be->stream))) {
        s = cbe_fail(be, e, "cudaMemcpyAsync (download of the result)");
        goto out;
    }
    uint64_t p0 = shoal_now_ns();
    st->rss_growth = shoal_rss_bytes() - rss0; /* staging + device buffers, all exposed now */
    *probe_ns = shoal_now_ns() - p0;            /* measuring is not part of the op */
    memcpy(x->c, stg + sh->ba + sh->bb, sh->bc);
    st->bytes_copied = total;
    st->a_used = be->scratch[SCRATCH_A];
    st->b_used = be->scratch[SCRATCH_B];
    st->c_used = be->scratch[SCRATCH_C];
out:
    munmap(stg, total);
    return s;
}

static shoal_status_t mm_resident(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                                  shoal_op_stats_t *st)
{
    shoal_status_t s;
    const float *da = cbe_resident_lookup(be, x->a, sh->ba);
    const float *db = cbe_resident_lookup(be, x->b, sh->bb);
    /* Operands not named resident are staged from mapped memory once, as in ZEROCOPY. */
    if (!da) {
        if ((s = cbe_require_mapped(be, "A", x->a, sh->ba)) || (s = ensure_scratch(be, SCRATCH_A, sh->ba)) ||
            (s = cbe_copy_guest(be, be->scratch[SCRATCH_A], (uintptr_t)x->a, sh->ba, true)))
            return s;
        da = be->scratch[SCRATCH_A];
    }
    if (!db) {
        if ((s = cbe_require_mapped(be, "B", x->b, sh->bb)) || (s = ensure_scratch(be, SCRATCH_B, sh->bb)) ||
            (s = cbe_copy_guest(be, be->scratch[SCRATCH_B], (uintptr_t)x->b, sh->bb, true)))
            return s;
        db = be->scratch[SCRATCH_B];
    }
    if ((s = cbe_require_mapped(be, "C", x->c, sh->bc)) || (s = ensure_scratch(be, SCRATCH_C, sh->bc)))
        return s;
    if ((s = gemm(be, da, db, be->scratch[SCRATCH_C], sh->m, sh->n, sh->k)))
        return s;
    if ((s = cbe_copy_guest(be, be->scratch[SCRATCH_C], (uintptr_t)x->c, sh->bc, false)))
        return s;
    /* A result that lands in a resident range must not leave its device copy stale. */
    void *dc = cbe_resident_lookup(be, x->c, sh->bc);
    if (dc)
        CU(be, cudaMemcpyAsync(dc, be->scratch[SCRATCH_C], sh->bc, cudaMemcpyDeviceToDevice, be->stream));
    CU(be, cudaStreamSynchronize(be->stream));
    st->a_used = da;
    st->b_used = db;
    st->c_used = x->c;
    return SHOAL_OK;
}

static bool is_float_aligned(const shoal_matmul_args_t *x)
{
    return (((uintptr_t)x->a | (uintptr_t)x->b | (uintptr_t)x->c) & 3u) == 0;
}

/* Un-staged: the tiled kernel reads A and B in place over the bus and writes C in place. With
 * m <= 64 every B element crosses the bus once and A (m x k, small) ceil(n/64) times, with one
 * launch instead of three copies and a GEMM: the shape of a decode step (m = 1). */
static shoal_status_t mm_direct(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                                shoal_op_stats_t *st)
{
    shoal_status_t s;
    if ((s = require_operands_mapped(be, x, sh)))
        return s;
    cudaError_t e = shoal_cuda_sgemm_tiled(x->a, x->b, x->c, sh->m, sh->n, sh->k, be->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(be->stream);
    if (e != cudaSuccess)
        return cbe_fail(be, e, "tiled sgemm on mapped memory");
    st->a_used = x->a;
    st->b_used = x->b;
    st->c_used = x->c;
    return SHOAL_OK;
}

/* One matmul on the backend's device: rss0 is the RSS when it began; time spent measuring inside
 * it goes to *probe_ns. */
typedef shoal_status_t (*mm_op_fn)(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                                   shoal_op_stats_t *st, int64_t rss0, uint64_t *probe_ns);

/* Runs op under the backend's lock and fills the stats (*stats only on success): the time, less
 * what op spent measuring, and the RSS growth unless op measures its own (op_rss). */
static shoal_status_t run_locked(cuda_backend_t *be, const shoal_matmul_args_t *args, const mm_shape_t *sh,
                                 mm_op_fn op, bool op_rss, shoal_op_stats_t *stats)
{
    shoal_op_stats_t st = {0};
    shoal_status_t s;
    pthread_mutex_lock(&be->mu);
    if (be->dead) {
        s = cbe_fail_dead(be);
    } else {
        cudaSetDevice(be->dev);
        const int64_t rss0 = shoal_rss_bytes();
        uint64_t probe_ns = 0;
        const uint64_t t0 = shoal_now_ns();
        s = op(be, args, sh, &st, rss0, &probe_ns);
        st.ns = shoal_now_ns() - t0 - probe_ns;
        if (!op_rss)
            st.rss_growth = shoal_rss_bytes() - rss0;
        if (s == SHOAL_OK && stats)
            *stats = st;
    }
    pthread_mutex_unlock(&be->mu);
    return s;
}

/* The placement args names (ZEROCOPY small enough for the direct kernel takes it). */
static shoal_status_t mm_placed(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                                shoal_op_stats_t *st, int64_t rss0, uint64_t *probe_ns)
{
    if (sh->m == 0 || sh->n == 0)
        return SHOAL_OK; /* nothing to write */
    if (sh->k == 0) {
        memset(x->c, 0, sh->bc);
        st->c_used = x->c;
        return SHOAL_OK;
    }
    switch (x->placement) {
    case SHOAL_PLACE_ZEROCOPY:
        return (uint32_t)sh->m <= be->direct_max_m && is_float_aligned(x) ? mm_direct(be, x, sh, st)
                                                                          : mm_zerocopy(be, x, sh, st);
    case SHOAL_PLACE_COPY: return mm_copy(be, x, sh, st, rss0, probe_ns);
    case SHOAL_PLACE_RESIDENT: return mm_resident(be, x, sh, st);
    default: return shoal_fail(SHOAL_E_INVALID, "cuda: unknown placement");
    }
}

static shoal_status_t mm_direct_only(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                                     shoal_op_stats_t *st, int64_t rss0, uint64_t *probe_ns)
{
    (void)rss0, (void)probe_ns;
    return sh->m > 0 && sh->n > 0 ? mm_direct(be, x, sh, st) : SHOAL_OK;
}

shoal_status_t cbe_matmul(shoal_backend_t *b, const shoal_matmul_args_t *args, shoal_op_stats_t *stats)
{
    mm_shape_t sh;
    shoal_status_t s = check_args(args, &sh);
    if (s)
        return s;
    if ((unsigned)args->placement >= SHOAL_PLACE_COUNT_)
        return shoal_fail(SHOAL_E_INVALID, "cuda: unknown placement %d", (int)args->placement);
    /* COPY measures the RSS of its own staging (mm_copy) */
    return run_locked(cb(b), args, &sh, mm_placed, args->placement == SHOAL_PLACE_COPY, stats);
}

shoal_status_t shoal_cuda_matmul_direct(shoal_backend_t *b, const shoal_matmul_args_t *args, shoal_op_stats_t *stats)
{
    mm_shape_t sh;
    shoal_status_t s = check_args(args, &sh);
    if (s)
        return s;
    if (!is_float_aligned(args))
        return shoal_fail(SHOAL_E_INVALID, "cuda: direct matmul needs 4-byte aligned operands");
    return run_locked(cb(b), args, &sh, mm_direct_only, false, stats);
}

void shoal_cuda_set_direct_max_m(shoal_backend_t *b, uint32_t max_m)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    be->direct_max_m = max_m;
    pthread_mutex_unlock(&be->mu);
}
