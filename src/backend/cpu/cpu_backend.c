/* cpu_backend.c — the CPU backend: kernels run on host pointers into guest memory as they
 * are, so map/unmap have nothing to do and the zero-copy placement is free. The COPY
 * placement exists to measure what the peers' copy-in/copy-out costs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "backend/backend.h"
#include "backend/cpu/cpu_backend.h"
#include "backend/cpu/matmul_f32.h"
#include "backend/cpu/threadpool.h"
#include "core/error.h"

typedef struct cpu_backend {
    shoal_backend_t base;
    shoal_threadpool_t *pool;
    char desc[128];
} cpu_backend;

static const char *cpu_describe(shoal_backend_t *be) { return ((cpu_backend *)be)->desc; }

static shoal_status_t cpu_map(shoal_backend_t *be, void *base, size_t len) { return SHOAL_OK; }
static void cpu_unmap(shoal_backend_t *be, void *base, size_t len) {}

static float *staging_alloc(size_t n)
{
    void *p = mmap(NULL, n ? n : 1, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

static void staging_free(float *p, size_t n)
{
    if (p) munmap(p, n ? n : 1);
}

static shoal_status_t cpu_matmul(shoal_backend_t *be_, const shoal_matmul_args_t *x, shoal_op_stats_t *st)
{
    cpu_backend *be = (cpu_backend *)be_;
    size_t sa = (size_t)x->m * x->k * sizeof(float), sb = (size_t)x->k * x->n * sizeof(float),
           sc = (size_t)x->m * x->n * sizeof(float);
    uint64_t t0 = shoal_now_ns();
    int64_t rss0 = shoal_rss_bytes();
    memset(st, 0, sizeof *st);
    if (x->placement != SHOAL_PLACE_COPY) {
        /* ZEROCOPY and RESIDENT are the same on the CPU: guest memory is the device memory. */
        st->rss_growth = shoal_rss_bytes() - rss0;
        shoal_cpu_matmul_f32(be->pool, x->a, x->b, x->c, x->m, x->n, x->k);
        st->a_used = x->a, st->b_used = x->b, st->c_used = x->c;
    } else {
        /* Fresh pages from mmap, not malloc: glibc recycles freed large blocks, which would
         * hide from the RSS figure the memory a staging copy needs. */
        float *ca = staging_alloc(sa), *cb = staging_alloc(sb), *cc = staging_alloc(sc);
        if (!ca || !cb || !cc) {
            staging_free(ca, sa), staging_free(cb, sb), staging_free(cc, sc);
            return shoal_fail(SHOAL_E_NOMEM, "cpu: cannot allocate %zu bytes of staging buffers", sa + sb + sc);
        }
        memcpy(ca, x->a, sa);
        memcpy(cb, x->b, sb);
        memset(cc, 0, sc); /* touched, as a staging buffer that is written back would be */
        st->rss_growth = shoal_rss_bytes() - rss0;
        shoal_cpu_matmul_f32(be->pool, ca, cb, cc, x->m, x->n, x->k);
        memcpy(x->c, cc, sc);
        st->a_used = ca, st->b_used = cb, st->c_used = cc;
        st->bytes_copied = sa + sb + sc;
        staging_free(ca, sa), staging_free(cb, sb), staging_free(cc, sc);
    }
    st->ns = shoal_now_ns() - t0;
    return SHOAL_OK;
}

static shoal_status_t cpu_resident_add(shoal_backend_t *be, const void *host, size_t len) { return SHOAL_OK; }
static void cpu_resident_drop(shoal_backend_t *be, const void *host) {}
static shoal_status_t cpu_sync(shoal_backend_t *be) { return SHOAL_OK; }

static void cpu_destroy(shoal_backend_t *be_)
{
    cpu_backend *be = (cpu_backend *)be_;
    shoal_threadpool_delete(be->pool);
    free(be);
}

static const shoal_backend_ops_t k_cpu_ops = {
    .name = "cpu",
    .caps = SHOAL_CAP_HOST_PTR,
    .describe = cpu_describe,
    .map = cpu_map,
    .unmap = cpu_unmap,
    .matmul_f32 = cpu_matmul,
    .resident_add = cpu_resident_add,
    .resident_drop = cpu_resident_drop,
    .synchronize = cpu_sync,
    .destroy = cpu_destroy,
};

shoal_status_t shoal_cpu_backend_create(int threads, shoal_backend_t **out)
{
    cpu_backend *be = calloc(1, sizeof *be);
    if (!be) return shoal_fail(SHOAL_E_NOMEM, "cpu backend: out of memory");
    be->base.ops = &k_cpu_ops;
    shoal_status_t st = shoal_threadpool_new(threads, &be->pool);
    if (st != SHOAL_OK) {
        free(be);
        return st;
    }
    snprintf(be->desc, sizeof be->desc, "cpu (%d threads, %s)", shoal_threadpool_size(be->pool),
             shoal_cpu_matmul_isa());
    *out = &be->base;
    return SHOAL_OK;
}

/* The CPU backend's pool, for CPU-side layers (the LLM forward pass) that share its threads. */
shoal_threadpool_t *shoal_cpu_backend_pool(shoal_backend_t *be)
{
    return be->ops == &k_cpu_ops ? ((cpu_backend *)be)->pool : NULL;
}
