/* cuda_map.c — the CUDA backend's view of guest memory: map() registers each accessible range
 * with the driver at the host's addresses (or, lazily, the chunks an op first touches), unmap()
 * forgets them, and resident operands keep a device copy of a guest range (cuda_backend.c says
 * why nothing reaches the device outside registered memory). */
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

/* Host <-> device copies of a guest range, one DMA per registration it spans: each copy then
 * lies inside one pinned allocation, whatever the driver thinks of copies that straddle two.
 * Parts not registered (resident_add of unmapped memory) go through the driver's pageable path. */
shoal_status_t cbe_copy_guest(cuda_backend_t *be, void *dev, uintptr_t host, size_t len, bool to_device)
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

shoal_status_t cbe_require_mapped(cuda_backend_t *be, const char *what, const void *p, size_t len)
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
void *cbe_resident_lookup(cuda_backend_t *be, const void *p, size_t len)
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
shoal_status_t cbe_map(shoal_backend_t *b, void *base, size_t len)
{
    cuda_backend_t *be = cb(b);
    if (len == 0)
        return SHOAL_OK;
    if (!base)
        return shoal_fail(SHOAL_E_INVALID, "cuda: map of a NULL range");
    pthread_mutex_lock(&be->mu);
    shoal_status_t st = SHOAL_OK;
    if (be->dead) {
        st = cbe_fail_dead(be);
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
void cbe_forget_range(cuda_backend_t *be, uintptr_t lo, uintptr_t hi)
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
void cbe_unmap(shoal_backend_t *b, void *base, size_t len)
{
    cuda_backend_t *be = cb(b);
    pthread_mutex_lock(&be->mu);
    cudaSetDevice(be->dev);
    /* No kernel may still be reading pages that are about to be unpinned and freed. */
    if (cudaStreamSynchronize(be->stream) != cudaSuccess)
        (void)cudaGetLastError();
    uintptr_t lo = (uintptr_t)base;
    uintptr_t hi = lo + (len ? len : 1);
    cbe_forget_range(be, lo, hi < lo ? UINTPTR_MAX : hi);
    pthread_mutex_unlock(&be->mu);
}
/* ------------------------------------------------------------------ resident operands */

shoal_status_t cbe_resident_add(shoal_backend_t *b, const void *host, size_t len)
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
        s = cbe_fail_dead(be);
        goto out;
    }
    cudaSetDevice(be->dev);
    /* Adding the same range again refreshes its copy (the guest wrote to it since). */
    ptrdiff_t same = shoal_range_set_find_base(&be->resident, p);
    if (same >= 0 && be->resident.v[same].len == len) {
        s = cbe_copy_guest(be, be->resident.v[same].payload, p, len, true);
        if (!s && cudaStreamSynchronize(be->stream) != cudaSuccess)
            s = cbe_fail(be, cudaGetLastError(), "refresh of a resident operand");
        goto out;
    }
    if (same >= 0) {
        cudaError_t se = cudaStreamSynchronize(be->stream);
        if (se != cudaSuccess) {
            s = cbe_fail(be, se, "cudaStreamSynchronize");
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
    if ((s = cbe_copy_guest(be, dev, p, len, true)))
        goto out;
    if ((e = cudaStreamSynchronize(be->stream)) != cudaSuccess) {
        s = cbe_fail(be, e, "upload of a resident operand");
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

void cbe_resident_drop(shoal_backend_t *b, const void *host)
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
