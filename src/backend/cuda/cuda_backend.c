/* cuda_backend.c — the CUDA backend: kernels compute on the guest's linear memory in place.
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
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"
#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/cuda_ranges.h"
#include "core/error.h"

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

static cuda_backend_t *cb(shoal_backend_t *be) { return (cuda_backend_t *)be; }

/* ------------------------------------------------------------------ errors */

static shoal_status_t fail_dead(cuda_backend_t *be)
{
    return shoal_fail(SHOAL_E_DEVICE, "%s", be->dead_msg);
}

/* Turns a CUDA error into a status. Errors that poison the context (illegal address, launch
 * failure, ...) stay sticky: every later call returns them. We detect that by asking the device
 * once more; if it still fails, the backend is dead for good and says so on every later op. */
static shoal_status_t cu_fail(cuda_backend_t *be, cudaError_t e, const char *what)
{
    (void)cudaGetLastError(); /* clears a non-sticky error */
    cudaError_t probe = cudaDeviceSynchronize();
    if (probe != cudaSuccess) {
        be->dead = true;
        snprintf(be->dead_msg, sizeof be->dead_msg,
                 "cuda: the device context is broken (%s: %s, then %s); the CUDA backend is disabled for this "
                 "process: restart it, or run with --device cpu",
                 what, cudaGetErrorName(e), cudaGetErrorName(probe));
        return fail_dead(be);
    }
    return shoal_fail(SHOAL_E_DEVICE, "cuda: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

#define CU(be, call)                                                                                                   \
    do {                                                                                                               \
        cudaError_t e_ = (call);                                                                                       \
        if (e_ != cudaSuccess)                                                                                         \
            return cu_fail((be), e_, #call);                                                                           \
    } while (0)

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

/* ------------------------------------------------------------------ helpers */

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

/* Host <-> device copies of a guest range, one DMA per registration it spans: each copy then
 * lies inside one pinned allocation, whatever the driver thinks of copies that straddle two.
 * Parts not registered (resident_add of unmapped memory) go through the driver's pageable path. */
static shoal_status_t copy_guest(cuda_backend_t *be, void *dev, uintptr_t host, size_t len, bool to_device)
{
    size_t off = 0;
    while (off < len) {
        uintptr_t cur = host + off;
        size_t seg = len - off;
        ptrdiff_t r = shoal_range_set_find(&be->regs, cur);
        if (r >= 0) {
            size_t left = be->regs.v[r].base + be->regs.v[r].len - cur;
            if (left < seg)
                seg = left;
        } else {
            size_t o = shoal_range_set_first_overlap(&be->regs, cur, cur + seg);
            if (o < be->regs.n)
                seg = be->regs.v[o].base - cur;
        }
        char *d = (char *)dev + off;
        if (to_device)
            CU(be, cudaMemcpyAsync(d, (const void *)cur, seg, cudaMemcpyHostToDevice, be->stream));
        else
            CU(be, cudaMemcpyAsync((void *)cur, d, seg, cudaMemcpyDeviceToHost, be->stream));
        off += seg;
    }
    return SHOAL_OK;
}

static shoal_status_t register_range(cuda_backend_t *be, uintptr_t p, size_t len);

/* Lazy mode: registers the chunks of mapped memory that [p, p+len) touches and that are not
 * registered yet. Chunks are aligned to the start of their mapped range (a grown increment is
 * its own range), so they never overlap one another or an eager registration. */
static shoal_status_t register_touched(cuda_backend_t *be, uintptr_t p, size_t len)
{
    uintptr_t end = p + (len ? len : 1);
    for (size_t i = shoal_range_set_first_overlap(&be->acc, p, end); i < be->acc.n && be->acc.v[i].base < end; i++) {
        uintptr_t rb = be->acc.v[i].base, re = rb + be->acc.v[i].len;
        uintptr_t lo = p > rb ? p : rb, hi = end < re ? end : re;
        for (uintptr_t c = rb + (lo - rb) / be->lazy_chunk * be->lazy_chunk; c < hi; c += be->lazy_chunk) {
            if (shoal_range_set_find(&be->regs, c) >= 0)
                continue;
            size_t clen = re - c < be->lazy_chunk ? re - c : be->lazy_chunk;
            shoal_status_t s = register_range(be, c, clen);
            if (s)
                return s;
        }
    }
    return SHOAL_OK;
}

static shoal_status_t require_mapped(cuda_backend_t *be, const char *what, const void *p, size_t len)
{
    if (!shoal_range_set_covers(&be->acc, (uintptr_t)p, len))
        return shoal_fail(SHOAL_E_BOUNDS,
                          "cuda: operand %s [%p, +%zu bytes) is not inside guest memory mapped to the device; "
                          "nothing was launched",
                          what, p, len);
    if (shoal_range_set_covers(&be->regs, (uintptr_t)p, len))
        return SHOAL_OK;
    shoal_status_t s = be->lazy_chunk ? register_touched(be, (uintptr_t)p, len) : SHOAL_OK;
    if (s)
        return s;
    /* Belt and braces: nothing reaches the device unless every byte is registered. */
    if (!shoal_range_set_covers(&be->regs, (uintptr_t)p, len))
        return shoal_fail(SHOAL_E_DEVICE, "cuda: operand %s [%p, +%zu bytes) is mapped but not registered; "
                                          "nothing was launched", what, p, len);
    return SHOAL_OK;
}

/* Device copy of [p, p+len) if it lies wholly in one resident range and the resulting device
 * address is float-aligned; NULL otherwise. */
static void *resident_lookup(cuda_backend_t *be, const void *p, size_t len)
{
    ptrdiff_t i = shoal_range_set_find(&be->resident, (uintptr_t)p);
    if (i < 0)
        return NULL;
    const shoal_range_t *r = &be->resident.v[i];
    size_t off = (uintptr_t)p - r->base;
    if (len > r->len - off || (off & 3u))
        return NULL;
    return (char *)r->payload + off;
}

/* C = A @ B on device pointers, row-major. cuBLAS is column-major, so it computes
 * C^T (n x m) = B^T (n x k) @ A^T (k x m), which is the same memory. */
static shoal_status_t gemm(cuda_backend_t *be, const float *a, const float *b, float *c, int m, int n, int k)
{
    if (be->blas) {
        const float one = 1.0f, zero = 0.0f;
        cublasStatus_t s = cublasSgemm(be->blas, CUBLAS_OP_N, CUBLAS_OP_N, n, m, k, &one, b, n, a, k, &zero, c, n);
        if (s != CUBLAS_STATUS_SUCCESS) {
            shoal_status_t st = cu_fail(be, cudaGetLastError(), "cublasSgemm");
            if (be->dead)
                return st;
            return shoal_fail(SHOAL_E_DEVICE, "cuda: cublasSgemm(%d x %d x %d) failed: %s", m, n, k, blas_name(s));
        }
        return SHOAL_OK;
    }
    CU(be, shoal_cuda_sgemm_tiled(a, b, c, m, n, k, be->stream));
    return SHOAL_OK;
}

/* ------------------------------------------------------------------ map / unmap */

/* Registers [p, p+len) with the driver and checks that the device sees it at the same address.
 * Pinning populates the pages: the RSS cost of untouched memory is paid here. */
static shoal_status_t register_range(cuda_backend_t *be, uintptr_t p, size_t len)
{
    void *base = (void *)p;
    uint64_t t0 = shoal_now_ns();
    cudaError_t e = cudaHostRegister(base, len, cudaHostRegisterMapped);
    be->register_ns += shoal_now_ns() - t0;
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        return shoal_fail(SHOAL_E_DEVICE,
                          "cuda: cannot register guest memory [%p, +%zu) with the driver (cudaHostRegister: %s, %s); "
                          "the GPU cannot see these bytes",
                          base, len, cudaGetErrorName(e), cudaGetErrorString(e));
    }
    void *dp = NULL;
    e = cudaHostGetDevicePointer(&dp, base, 0);
    if (e != cudaSuccess || dp != base) {
        (void)cudaGetLastError();
        cudaHostUnregister(base);
        return shoal_fail(SHOAL_E_DEVICE,
                          "cuda: registered [%p, +%zu) but its device address is %p (%s): zero-copy needs the device "
                          "to use the host's addresses (unified addressing)",
                          base, len, dp, cudaGetErrorName(e));
    }
    shoal_status_t st = shoal_range_set_add(&be->regs, p, len, NULL);
    if (st != SHOAL_OK) {
        cudaHostUnregister(base);
        return st;
    }
    be->registered_bytes += len;
    return SHOAL_OK;
}

static shoal_status_t cuda_map(shoal_backend_t *b, void *base, size_t len)
{
    cuda_backend_t *be = cb(b);
    if (len == 0)
        return SHOAL_OK;
    if (!base)
        return shoal_fail(SHOAL_E_INVALID, "cuda: map of a NULL range");
    pthread_mutex_lock(&be->mu);
    shoal_status_t st = SHOAL_OK;
    if (be->dead) {
        st = fail_dead(be);
        goto out;
    }
    uintptr_t p = (uintptr_t)base;
    if (p + len < p) {
        st = shoal_fail(SHOAL_E_INVALID, "cuda: map range [%p, +%zu) wraps", base, len);
        goto out;
    }
    size_t o = shoal_range_set_first_overlap(&be->acc, p, p + len);
    if (o < be->acc.n) {
        /* The driver refuses this too ("already mapped"); say which range holds it. */
        st = shoal_fail(SHOAL_E_INVALID, "cuda: [%p, +%zu) overlaps [%p, +%zu), which is already mapped", base, len,
                        (void *)be->acc.v[o].base, be->acc.v[o].len);
        goto out;
    }
    cudaSetDevice(be->dev);
    if (!be->lazy_chunk && (st = register_range(be, p, len)))
        goto out;
    if ((st = shoal_range_set_add(&be->acc, p, len, NULL)) && !be->lazy_chunk) {
        cudaHostUnregister(base);
        shoal_range_set_remove(&be->regs, (size_t)shoal_range_set_find_base(&be->regs, p));
        be->registered_bytes -= len;
    }
out:
    pthread_mutex_unlock(&be->mu);
    return st;
}

/* Frees resident entries and unregisters registrations that intersect [lo, hi). Caller holds
 * the lock and has synchronised. */
static void forget_range(cuda_backend_t *be, uintptr_t lo, uintptr_t hi)
{
    size_t i;
    while ((i = shoal_range_set_first_overlap(&be->resident, lo, hi)) < be->resident.n) {
        cudaFree(be->resident.v[i].payload);
        be->resident_bytes -= be->resident.v[i].len;
        shoal_range_set_remove(&be->resident, i);
    }
    while ((i = shoal_range_set_first_overlap(&be->regs, lo, hi)) < be->regs.n) {
        /* On a dead context this fails; the memory is going away regardless. */
        if (cudaHostUnregister((void *)be->regs.v[i].base) != cudaSuccess)
            (void)cudaGetLastError();
        be->registered_bytes -= be->regs.v[i].len;
        shoal_range_set_remove(&be->regs, i);
    }
    while ((i = shoal_range_set_first_overlap(&be->acc, lo, hi)) < be->acc.n)
        shoal_range_set_remove(&be->acc, i);
}

static void cuda_unmap(shoal_backend_t *b, void *base, size_t len)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    cudaSetDevice(be->dev);
    /* No kernel may still be reading pages that are about to be unpinned and freed. */
    if (cudaStreamSynchronize(be->stream) != cudaSuccess)
        (void)cudaGetLastError();
    uintptr_t lo = (uintptr_t)base;
    uintptr_t hi = lo + (len ? len : 1);
    forget_range(be, lo, hi < lo ? UINTPTR_MAX : hi);
    pthread_mutex_unlock(&be->mu);
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

static shoal_status_t mm_zerocopy(cuda_backend_t *be, const shoal_matmul_args_t *x, const mm_shape_t *sh,
                                  shoal_op_stats_t *st)
{
    shoal_status_t s;
    if ((s = require_mapped(be, "A", x->a, sh->ba)) || (s = require_mapped(be, "B", x->b, sh->bb)) ||
        (s = require_mapped(be, "C", x->c, sh->bc)))
        return s;
    if ((s = ensure_scratch(be, SCRATCH_A, sh->ba)) || (s = ensure_scratch(be, SCRATCH_B, sh->bb)) ||
        (s = ensure_scratch(be, SCRATCH_C, sh->bc)))
        return s;
    /* One pass over each mapped operand; the GEMM's many re-reads then hit device memory. */
    if ((s = copy_guest(be, be->scratch[SCRATCH_A], (uintptr_t)x->a, sh->ba, true)) ||
        (s = copy_guest(be, be->scratch[SCRATCH_B], (uintptr_t)x->b, sh->bb, true)))
        return s;
    if ((s = gemm(be, be->scratch[SCRATCH_A], be->scratch[SCRATCH_B], be->scratch[SCRATCH_C], sh->m, sh->n, sh->k)))
        return s;
    if ((s = copy_guest(be, be->scratch[SCRATCH_C], (uintptr_t)x->c, sh->bc, false)))
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
        s = cu_fail(be, e, "cudaMemcpyAsync (upload of staged operands)");
        goto out;
    }
    if ((s = gemm(be, be->scratch[SCRATCH_A], be->scratch[SCRATCH_B], be->scratch[SCRATCH_C], sh->m, sh->n, sh->k)))
        goto out;
    if ((e = cudaMemcpyAsync(stg + sh->ba + sh->bb, be->scratch[SCRATCH_C], sh->bc, cudaMemcpyDeviceToHost,
                             be->stream)) ||
        (e = cudaStreamSynchronize(be->stream))) {
        s = cu_fail(be, e, "cudaMemcpyAsync (download of the result)");
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
    const float *da = resident_lookup(be, x->a, sh->ba);
    const float *db = resident_lookup(be, x->b, sh->bb);
    /* Operands not named resident are staged from mapped memory once, as in ZEROCOPY. */
    if (!da) {
        if ((s = require_mapped(be, "A", x->a, sh->ba)) || (s = ensure_scratch(be, SCRATCH_A, sh->ba)) ||
            (s = copy_guest(be, be->scratch[SCRATCH_A], (uintptr_t)x->a, sh->ba, true)))
            return s;
        da = be->scratch[SCRATCH_A];
    }
    if (!db) {
        if ((s = require_mapped(be, "B", x->b, sh->bb)) || (s = ensure_scratch(be, SCRATCH_B, sh->bb)) ||
            (s = copy_guest(be, be->scratch[SCRATCH_B], (uintptr_t)x->b, sh->bb, true)))
            return s;
        db = be->scratch[SCRATCH_B];
    }
    if ((s = require_mapped(be, "C", x->c, sh->bc)) || (s = ensure_scratch(be, SCRATCH_C, sh->bc)))
        return s;
    if ((s = gemm(be, da, db, be->scratch[SCRATCH_C], sh->m, sh->n, sh->k)))
        return s;
    if ((s = copy_guest(be, be->scratch[SCRATCH_C], (uintptr_t)x->c, sh->bc, false)))
        return s;
    /* A result that lands in a resident range must not leave its device copy stale. */
    void *dc = resident_lookup(be, x->c, sh->bc);
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
    if ((s = require_mapped(be, "A", x->a, sh->ba)) || (s = require_mapped(be, "B", x->b, sh->bb)) ||
        (s = require_mapped(be, "C", x->c, sh->bc)))
        return s;
    cudaError_t e = shoal_cuda_sgemm_tiled(x->a, x->b, x->c, sh->m, sh->n, sh->k, be->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(be->stream);
    if (e != cudaSuccess)
        return cu_fail(be, e, "tiled sgemm on mapped memory");
    st->a_used = x->a;
    st->b_used = x->b;
    st->c_used = x->c;
    return SHOAL_OK;
}

static shoal_status_t cuda_matmul(shoal_backend_t *b, const shoal_matmul_args_t *args, shoal_op_stats_t *stats)
{
    cuda_backend_t *be = cb(b);
    mm_shape_t sh;
    shoal_status_t s = check_args(args, &sh);
    if (s)
        return s;
    if ((unsigned)args->placement >= SHOAL_PLACE_COUNT_)
        return shoal_fail(SHOAL_E_INVALID, "cuda: unknown placement %d", (int)args->placement);
    shoal_op_stats_t st = {0};
    pthread_mutex_lock(&be->mu);
    if (be->dead) {
        s = fail_dead(be);
        goto out;
    }
    cudaSetDevice(be->dev);
    int64_t rss0 = shoal_rss_bytes();
    uint64_t probe_ns = 0, t0 = shoal_now_ns();
    if (sh.m == 0 || sh.n == 0) {
        /* nothing to write */
    } else if (sh.k == 0) {
        memset(args->c, 0, sh.bc);
        st.c_used = args->c;
    } else {
        switch (args->placement) {
        case SHOAL_PLACE_ZEROCOPY:
            s = (uint32_t)sh.m <= be->direct_max_m && is_float_aligned(args) ? mm_direct(be, args, &sh, &st)
                                                                              : mm_zerocopy(be, args, &sh, &st);
            break;
        case SHOAL_PLACE_COPY: s = mm_copy(be, args, &sh, &st, rss0, &probe_ns); break;
        case SHOAL_PLACE_RESIDENT: s = mm_resident(be, args, &sh, &st); break;
        default: s = shoal_fail(SHOAL_E_INVALID, "cuda: unknown placement"); break;
        }
    }
    st.ns = shoal_now_ns() - t0 - probe_ns;
    if (args->placement != SHOAL_PLACE_COPY)
        st.rss_growth = shoal_rss_bytes() - rss0;
    if (s == SHOAL_OK && stats)
        *stats = st;
out:
    pthread_mutex_unlock(&be->mu);
    return s;
}

shoal_status_t shoal_cuda_matmul_direct(shoal_backend_t *b, const shoal_matmul_args_t *args, shoal_op_stats_t *stats)
{
    cuda_backend_t *be = cb(b);
    mm_shape_t sh;
    shoal_status_t s = check_args(args, &sh);
    if (s)
        return s;
    if (!is_float_aligned(args))
        return shoal_fail(SHOAL_E_INVALID, "cuda: direct matmul needs 4-byte aligned operands");
    shoal_op_stats_t st = {0};
    pthread_mutex_lock(&be->mu);
    if (be->dead) {
        s = fail_dead(be);
        goto out;
    }
    cudaSetDevice(be->dev);
    int64_t rss0 = shoal_rss_bytes();
    uint64_t t0 = shoal_now_ns();
    if (sh.m > 0 && sh.n > 0 && (s = mm_direct(be, args, &sh, &st)))
        goto out;
    st.ns = shoal_now_ns() - t0;
    st.rss_growth = shoal_rss_bytes() - rss0;
    if (stats)
        *stats = st;
out:
    pthread_mutex_unlock(&be->mu);
    return s;
}

void shoal_cuda_set_direct_max_m(shoal_backend_t *b, uint32_t max_m)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    be->direct_max_m = max_m;
    pthread_mutex_unlock(&be->mu);
}

/* ------------------------------------------------------------------ resident operands */

static shoal_status_t cuda_resident_add(shoal_backend_t *b, const void *host, size_t len)
{
    cuda_backend_t *be = cb(b);
    if (!host || len == 0)
        return shoal_fail(SHOAL_E_INVALID, "cuda: resident_add of an empty range");
    uintptr_t p = (uintptr_t)host;
    if (p + len < p)
        return shoal_fail(SHOAL_E_INVALID, "cuda: resident range [%p, +%zu) wraps", host, len);
    pthread_mutex_lock(&be->mu);
    shoal_status_t s = SHOAL_OK;
    void *dev = NULL;
    if (be->dead) {
        s = fail_dead(be);
        goto out;
    }
    cudaSetDevice(be->dev);
    /* Adding the same range again refreshes its copy (the guest wrote to it since). */
    ptrdiff_t same = shoal_range_set_find_base(&be->resident, p);
    if (same >= 0 && be->resident.v[same].len == len) {
        s = copy_guest(be, be->resident.v[same].payload, p, len, true);
        if (!s && cudaStreamSynchronize(be->stream) != cudaSuccess)
            s = cu_fail(be, cudaGetLastError(), "refresh of a resident operand");
        goto out;
    }
    if (same >= 0) {
        cudaError_t se = cudaStreamSynchronize(be->stream);
        if (se != cudaSuccess) {
            s = cu_fail(be, se, "cudaStreamSynchronize");
            goto out;
        }
        cudaFree(be->resident.v[same].payload);
        be->resident_bytes -= be->resident.v[same].len;
        shoal_range_set_remove(&be->resident, (size_t)same);
    }
    size_t o = shoal_range_set_first_overlap(&be->resident, p, p + len);
    if (o < be->resident.n) {
        s = shoal_fail(SHOAL_E_INVALID, "cuda: resident range [%p, +%zu) overlaps resident [%p, +%zu)", host, len,
                       (void *)be->resident.v[o].base, be->resident.v[o].len);
        goto out;
    }
    cudaError_t e = cudaMalloc(&dev, len);
    if (e != cudaSuccess) {
        (void)cudaGetLastError();
        dev = NULL;
        s = shoal_fail(SHOAL_E_NOMEM, "cuda: cannot allocate %zu bytes of device memory for a resident operand: %s",
                       len, cudaGetErrorString(e));
        goto out;
    }
    if ((s = copy_guest(be, dev, p, len, true)))
        goto out;
    if ((e = cudaStreamSynchronize(be->stream)) != cudaSuccess) {
        s = cu_fail(be, e, "upload of a resident operand");
        goto out;
    }
    if ((s = shoal_range_set_add(&be->resident, p, len, dev)))
        goto out;
    be->resident_bytes += len;
    dev = NULL;
out:
    if (dev)
        cudaFree(dev);
    pthread_mutex_unlock(&be->mu);
    return s;
}

static void cuda_resident_drop(shoal_backend_t *b, const void *host)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    ptrdiff_t i = shoal_range_set_find_base(&be->resident, (uintptr_t)host);
    if (i >= 0) {
        cudaSetDevice(be->dev);
        if (cudaStreamSynchronize(be->stream) != cudaSuccess)
            (void)cudaGetLastError();
        cudaFree(be->resident.v[i].payload);
        be->resident_bytes -= be->resident.v[i].len;
        shoal_range_set_remove(&be->resident, (size_t)i);
    }
    pthread_mutex_unlock(&be->mu);
}

/* ------------------------------------------------------------------ lifecycle */

static shoal_status_t cuda_synchronize(shoal_backend_t *b)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    shoal_status_t s = SHOAL_OK;
    if (be->dead) {
        s = fail_dead(be);
    } else {
        cudaSetDevice(be->dev);
        cudaError_t e = cudaStreamSynchronize(be->stream);
        if (e != cudaSuccess)
            s = cu_fail(be, e, "cudaStreamSynchronize");
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
    forget_range(be, 0, UINTPTR_MAX);
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
    .map = cuda_map,
    .unmap = cuda_unmap,
    .matmul_f32 = cuda_matmul,
    .resident_add = cuda_resident_add,
    .resident_drop = cuda_resident_drop,
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
