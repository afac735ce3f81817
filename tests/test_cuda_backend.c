/* test_cuda_backend.c — CUDA backend: registration of guest memory, pointer identity, matmul
 * in every placement against a float64 reference, refusal of unmapped operands, grow and
 * unmap/re-map. The range bookkeeping is tested everywhere; tests that need a GPU skip with the
 * reason printed when none is found (CI builds the CUDA code but has no GPU). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "backend/backend.h"

#ifdef SHOAL_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/cuda_backend.h"
#include "backend/cuda/cuda_ranges.h"

/* ------------------------------------------------------------ range bookkeeping (no GPU) */

static void test_ranges_add_find_covers(void **state)
{
    (void)state;
    shoal_range_set_t s = {0};
    assert_int_equal(shoal_range_set_add(&s, 0x20000, 0x1000, NULL), SHOAL_OK);
    assert_int_equal(shoal_range_set_add(&s, 0x10000, 0x1000, NULL), SHOAL_OK);
    assert_int_equal(shoal_range_set_add(&s, 0x21000, 0x2000, NULL), SHOAL_OK); /* adjacent: a grown increment */
    assert_int_equal(s.n, 3);
    assert_true(s.v[0].base < s.v[1].base && s.v[1].base < s.v[2].base);

    /* Overlaps are refused, also partial ones on either side and ones that swallow a range. */
    assert_int_equal(shoal_range_set_add(&s, 0x20800, 0x100, NULL), SHOAL_E_INVALID);
    assert_non_null(strstr(shoal_last_error(), "already mapped"));
    assert_int_equal(shoal_range_set_add(&s, 0x0f000, 0x1001, NULL), SHOAL_E_INVALID);
    assert_int_equal(shoal_range_set_add(&s, 0x22fff, 0x10, NULL), SHOAL_E_INVALID);
    assert_int_equal(shoal_range_set_add(&s, 0x0, 0x100000, NULL), SHOAL_E_INVALID);
    assert_int_equal(shoal_range_set_add(&s, 0x30000, 0, NULL), SHOAL_E_INVALID);
    assert_int_equal(shoal_range_set_add(&s, UINTPTR_MAX - 10, 100, NULL), SHOAL_E_INVALID);
    assert_int_equal(s.n, 3);

    assert_int_equal(shoal_range_set_find(&s, 0x10000), 0);
    assert_int_equal(shoal_range_set_find(&s, 0x10fff), 0);
    assert_int_equal(shoal_range_set_find(&s, 0x11000), -1);
    assert_int_equal(shoal_range_set_find(&s, 0xffff), -1);
    assert_int_equal(shoal_range_set_find(&s, 0x22000), 2);
    assert_int_equal(shoal_range_set_find_base(&s, 0x21000), 2);
    assert_int_equal(shoal_range_set_find_base(&s, 0x21004), -1);

    /* Coverage may span adjacent ranges but never a gap, and never one byte past the end. */
    assert_true(shoal_range_set_covers(&s, 0x20000, 0x3000));
    assert_true(shoal_range_set_covers(&s, 0x20ffc, 8));
    assert_false(shoal_range_set_covers(&s, 0x20000, 0x3001));
    assert_false(shoal_range_set_covers(&s, 0x10000, 0x10001));
    assert_false(shoal_range_set_covers(&s, 0x10ffc, 8));
    assert_false(shoal_range_set_covers(&s, 0x9000, 4));
    assert_true(shoal_range_set_covers(&s, 0x10000, 0));
    assert_false(shoal_range_set_covers(&s, 0x11000, 0));
    assert_false(shoal_range_set_covers(&s, 0x20000, SIZE_MAX));

    assert_int_equal(shoal_range_set_first_overlap(&s, 0x10800, 0x20001), 0);
    assert_int_equal(shoal_range_set_first_overlap(&s, 0x11000, 0x20001), 1);
    assert_int_equal(shoal_range_set_first_overlap(&s, 0x11000, 0x20000), s.n);
    shoal_range_set_remove(&s, 1);
    assert_int_equal(s.n, 2);
    assert_false(shoal_range_set_covers(&s, 0x20ffc, 8));
    assert_true(shoal_range_set_covers(&s, 0x21000, 0x2000));
    shoal_range_set_free(&s);
}

/* ------------------------------------------------------------ GPU fixtures */

static shoal_backend_t *g_be;
static char g_skip[256];

static void need_gpu(void)
{
    if (!g_be) {
        print_message("[  SKIP    ] %s\n", g_skip);
        skip();
    }
}

static int group_setup(void **state)
{
    (void)state;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(g_skip, sizeof g_skip, "no GPU found (cudaGetDeviceCount: %s, %d devices): GPU tests skipped",
                 cudaGetErrorName(e), n);
        return 0;
    }
    shoal_status_t s = shoal_cuda_backend_create(&g_be);
    if (s != SHOAL_OK) {
        /* A GPU is present, so failing to use it is a real failure, not a skip. */
        fprintf(stderr, "shoal_cuda_backend_create: %s: %s\n", shoal_status_name(s), shoal_last_error());
        return -1;
    }
    print_message("device: %s\n", g_be->ops->describe(g_be));
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    shoal_backend_destroy(g_be);
    g_be = NULL;
    return 0;
}

/* Guest-like memory: a PROT_NONE reservation whose prefix is made accessible, as the memory
 * creator does. */
typedef struct region {
    uint8_t *base;
    size_t reserved, accessible;
} region_t;

static region_t region_new(size_t reserve, size_t accessible)
{
    region_t r = {.reserved = reserve};
    void *p = mmap(NULL, reserve, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    assert_true(p != MAP_FAILED);
    r.base = p;
    assert_int_equal(mprotect(r.base, accessible, PROT_READ | PROT_WRITE), 0);
    r.accessible = accessible;
    return r;
}

/* memory.grow: the next `more` bytes become accessible in place, then the backend is told. */
static void region_grow(region_t *r, size_t more)
{
    assert_true(r->accessible + more <= r->reserved);
    assert_int_equal(mprotect(r->base + r->accessible, more, PROT_READ | PROT_WRITE), 0);
    assert_int_equal(g_be->ops->map(g_be, r->base + r->accessible, more), SHOAL_OK);
    r->accessible += more;
}

static void region_free(region_t *r)
{
    g_be->ops->unmap(g_be, r->base, r->accessible);
    munmap(r->base, r->reserved);
}

static uint64_t g_rng = 0x9e3779b97f4a7c15ull;

static float frand(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / (double)(1ull << 53) * 2.0 - 1.0);
}

/* Writes fresh random floats at p (any alignment). */
static void fill(void *p, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        float f = frand();
        memcpy((char *)p + i * 4, &f, 4);
    }
}

static void poison(void *p, size_t count)
{
    float nan = NAN;
    for (size_t i = 0; i < count; i++)
        memcpy((char *)p + i * 4, &nan, 4);
}

static float ld(const void *p, size_t i)
{
    float f;
    memcpy(&f, (const char *)p + i * 4, 4);
    return f;
}

/* Checks C against a float64 product. Per element: |c - ref| <= 2 k u sum|a b| (u = 2^-24), the
 * classical bound for a float32 dot product of length k in any summation order; NaN (an element
 * never written) fails. Also ||c - ref|| / ||ref|| < 1e-5. Returns the number of bad elements. */
static size_t check_mm(const void *a, const void *b, const void *c, int m, int n, int k, const char *what)
{
    size_t bad = 0;
    double num = 0, den = 0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (int l = 0; l < k; l++) {
                double t = (double)ld(a, (size_t)i * k + l) * (double)ld(b, (size_t)l * n + j);
                ref += t;
                mag += fabs(t);
            }
            double got = ld(c, (size_t)i * n + j);
            double err = fabs(got - ref);
            if (!(err <= 2.0 * k * 0x1p-24 * mag + 1e-30)) {
                if (bad < 3)
                    print_message("%s: C[%d,%d] = %.9g, reference %.9g\n", what, i, j, got, ref);
                bad++;
            }
            num += (got - ref) * (got - ref);
            den += ref * ref;
        }
    if (den > 0 && !(sqrt(num / den) < 1e-5)) {
        print_message("%s: relative error %.3g\n", what, sqrt(num / den));
        bad += 1;
    }
    return bad;
}

static shoal_status_t mm(void *a, void *b, void *c, int m, int n, int k, shoal_placement_t pl, shoal_op_stats_t *st)
{
    shoal_matmul_args_t args = {.a = a, .b = b, .c = c, .m = (uint32_t)m, .n = (uint32_t)n, .k = (uint32_t)k,
                                .placement = pl};
    return g_be->ops->matmul_f32(g_be, &args, st);
}

/* ------------------------------------------------------------ GPU tests */

static void test_create_reports_device(void **state)
{
    (void)state;
    if (!g_be) {
        /* Without a GPU, creation must fail cleanly with a reason, never crash. */
        shoal_backend_t *be = NULL;
        assert_int_equal(shoal_cuda_backend_create(&be), SHOAL_E_UNSUPPORTED);
        assert_null(be);
        assert_non_null(strstr(shoal_last_error(), "no usable GPU"));
        print_message("creation without a GPU: %s\n", shoal_last_error());
        return;
    }
    assert_string_equal(g_be->ops->name, "cuda");
    uint32_t want = SHOAL_CAP_HOST_PTR | SHOAL_CAP_DEVICE_MEM | SHOAL_CAP_NEEDS_MAP;
    assert_int_equal(g_be->ops->caps & want, want);
    assert_non_null(strstr(g_be->ops->describe(g_be), "cuda:"));
}

static void test_map_identity_grow(void **state)
{
    (void)state;
    need_gpu();
    const size_t MiB = 1u << 20;
    region_t r = region_new(64 * MiB, 4 * MiB);
    memset(r.base, 0x5a, r.accessible); /* the guest has written it */
    assert_int_equal(g_be->ops->map(g_be, r.base, r.accessible), SHOAL_OK);
    void *dp = NULL;
    assert_int_equal(cudaHostGetDevicePointer(&dp, r.base, 0), cudaSuccess);
    assert_ptr_equal(dp, r.base);

    /* Double registration is refused by us, before the driver sees it. */
    assert_int_equal(g_be->ops->map(g_be, r.base + MiB, MiB), SHOAL_E_INVALID);
    assert_non_null(strstr(shoal_last_error(), "already mapped"));
    /* Registering PROT_NONE bytes fails in the driver: reported, and the backend stays usable. */
    assert_int_equal(g_be->ops->map(g_be, r.base + 8 * MiB, MiB), SHOAL_E_DEVICE);
    assert_non_null(strstr(shoal_last_error(), "cannot register"));
    print_message("PROT_NONE registration: %s\n", shoal_last_error());

    region_grow(&r, 4 * MiB);
    region_grow(&r, 4 * MiB);
    shoal_cuda_info_t info;
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 3);
    assert_int_equal(info.registered_bytes, 12 * MiB);
    assert_int_equal(cudaHostGetDevicePointer(&dp, r.base + 4 * MiB, 0), cudaSuccess);
    assert_ptr_equal(dp, r.base + 4 * MiB);

    /* Operands straddling the boundaries between registrations: the new pages must be visible
     * to device work, reads and writes, in every placement. */
    const int m = 77, n = 129, k = 65;
    uint8_t *a = r.base + 4 * MiB - 4 * 1000; /* A crosses the first boundary */
    uint8_t *b = r.base + 5 * MiB;
    uint8_t *c = r.base + 8 * MiB - 4 * 3000; /* C crosses the second */
    for (int pl = 0; pl < SHOAL_PLACE_COUNT_; pl++) {
        fill(a, (size_t)m * k);
        fill(b, (size_t)k * n);
        poison(c, (size_t)m * n);
        if (pl == SHOAL_PLACE_RESIDENT) {
            assert_int_equal(g_be->ops->resident_add(g_be, b, (size_t)k * n * 4), SHOAL_OK);
        }
        shoal_op_stats_t st;
        assert_int_equal(mm(a, b, c, m, n, k, (shoal_placement_t)pl, &st), SHOAL_OK);
        assert_int_equal(check_mm(a, b, c, m, n, k, "across registrations"), 0);
        if (pl == SHOAL_PLACE_ZEROCOPY) {
            assert_ptr_equal(st.a_used, a);
            assert_ptr_equal(st.c_used, c);
        }
        if (pl == SHOAL_PLACE_RESIDENT)
            g_be->ops->resident_drop(g_be, b);
    }
    /* The un-staged kernel reads the mapped bytes directly across the boundary as well. */
    poison(c, (size_t)m * n);
    shoal_op_stats_t st;
    assert_int_equal(shoal_cuda_matmul_direct(g_be, &(shoal_matmul_args_t){.a = (float *)a, .b = (float *)b,
                                                                          .c = (float *)c, .m = m, .n = n, .k = k},
                                              &st),
                     SHOAL_OK);
    assert_int_equal(check_mm(a, b, c, m, n, k, "direct across registrations"), 0);

    region_free(&r);
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 0);
    assert_int_equal(info.registered_bytes, 0);
}

static void test_matmul_shapes_placements(void **state)
{
    (void)state;
    need_gpu();
    const size_t MiB = 1u << 20;
    region_t r = region_new(16 * MiB, 16 * MiB);
    assert_int_equal(g_be->ops->map(g_be, r.base, r.accessible), SHOAL_OK);
    static const int shapes[][3] = {{1, 1, 1},   {3, 5, 7},     {64, 64, 64},   {65, 63, 17},
                                    {128, 128, 128}, {200, 3, 300}, {257, 129, 511}, {1, 300, 1000}};
    for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
        int m = shapes[si][0], n = shapes[si][1], k = shapes[si][2];
        uint8_t *a = r.base + 64, *b = r.base + 5 * MiB + 4, *c = r.base + 10 * MiB + 8;
        /* pl == SHOAL_PLACE_COUNT_: ZEROCOPY again, with the un-staged path forced for every m. */
        for (int pl = 0; pl <= SHOAL_PLACE_COUNT_; pl++) {
            fill(a, (size_t)m * k);
            fill(b, (size_t)k * n);
            poison(c, (size_t)m * n);
            shoal_cuda_info_t info;
            shoal_cuda_backend_info(g_be, &info);
            if (pl == SHOAL_PLACE_COUNT_)
                shoal_cuda_set_direct_max_m(g_be, UINT32_MAX);
            if (pl == SHOAL_PLACE_RESIDENT) {
                assert_int_equal(g_be->ops->resident_add(g_be, a, (size_t)m * k * 4), SHOAL_OK);
                assert_int_equal(g_be->ops->resident_add(g_be, b, (size_t)k * n * 4), SHOAL_OK);
            }
            shoal_op_stats_t st;
            memset(&st, 0xff, sizeof st);
            assert_int_equal(mm(a, b, c, m, n, k, pl == SHOAL_PLACE_COUNT_ ? SHOAL_PLACE_ZEROCOPY : pl, &st),
                             SHOAL_OK);
            shoal_cuda_set_direct_max_m(g_be, info.direct_max_m);
            char what[64];
            snprintf(what, sizeof what, "%dx%dx%d placement %d", m, n, k, pl);
            assert_int_equal(check_mm(a, b, c, m, n, k, what), 0);
            assert_true(st.ns > 0);
            switch (pl) {
            case SHOAL_PLACE_ZEROCOPY:
            case SHOAL_PLACE_COUNT_:
                assert_ptr_equal(st.a_used, a);
                assert_ptr_equal(st.b_used, b);
                assert_ptr_equal(st.c_used, c);
                assert_int_equal(st.bytes_copied, 0);
                break;
            case SHOAL_PLACE_COPY:
                assert_true(st.a_used != (void *)a && st.c_used != (void *)c);
                assert_int_equal(st.bytes_copied, (uint64_t)(m * k + k * n + m * n) * 4);
                break;
            case SHOAL_PLACE_RESIDENT:
                assert_true(st.a_used != (void *)a && st.b_used != (void *)b);
                assert_ptr_equal(st.c_used, c);
                assert_int_equal(st.bytes_copied, 0);
                g_be->ops->resident_drop(g_be, a);
                g_be->ops->resident_drop(g_be, b);
                break;
            }
        }
    }
    /* k = 0: C is all zeros. */
    fill(r.base, 16);
    assert_int_equal(mm(r.base, r.base, r.base + 4096, 4, 4, 0, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_OK);
    for (int i = 0; i < 16; i++)
        assert_true(ld(r.base + 4096, (size_t)i) == 0.0f);
    /* Operands that are not float-aligned are legal for staged placements (DMA does not care). */
    uint8_t *a = r.base + 2, *b = r.base + MiB + 1, *c = r.base + 2 * MiB + 3;
    fill(a, 33 * 45);
    fill(b, 45 * 17);
    poison(c, 33 * 17);
    assert_int_equal(mm(a, b, c, 33, 17, 45, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_OK);
    assert_int_equal(check_mm(a, b, c, 33, 17, 45, "unaligned"), 0);
    assert_int_equal(shoal_cuda_matmul_direct(g_be, &(shoal_matmul_args_t){.a = (float *)a, .b = (float *)b,
                                                                          .c = (float *)c, .m = 33, .n = 17, .k = 45},
                                              NULL),
                     SHOAL_E_INVALID);
    region_free(&r);
}

static void test_unmapped_operands_refused(void **state)
{
    (void)state;
    need_gpu();
    const size_t MiB = 1u << 20;
    region_t r = region_new(4 * MiB, 2 * MiB);
    assert_int_equal(g_be->ops->map(g_be, r.base, r.accessible), SHOAL_OK);
    float *heap = malloc(64 * 64 * 4);
    assert_non_null(heap);
    fill(heap, 64 * 64);
    uint8_t *end = r.base + r.accessible;
    uint8_t *ok = r.base;
    fill(ok, 64 * 64);
    /* Unregistered host memory, and ranges running 4 bytes past the mapped end: refused. */
    struct {
        void *a, *b, *c;
    } bad[] = {
        {heap, ok, ok + 64 * 1024},
        {ok, heap, ok + 64 * 1024},
        {ok, ok, heap},
        {end - 64 * 64 * 4 + 4, ok, ok + 64 * 1024},
        {ok, ok, end - 64 * 64 * 4 + 4},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        for (int pl = 0; pl < SHOAL_PLACE_COUNT_; pl++) {
            if (pl == SHOAL_PLACE_COPY)
                continue; /* the CPU copies: the caller's bounds check is what protects it */
            assert_int_equal(mm(bad[i].a, bad[i].b, bad[i].c, 64, 64, 64, (shoal_placement_t)pl, NULL),
                             SHOAL_E_BOUNDS);
            assert_non_null(strstr(shoal_last_error(), "nothing was launched"));
        }
        assert_int_equal(shoal_cuda_matmul_direct(g_be, &(shoal_matmul_args_t){.a = bad[i].a, .b = bad[i].b,
                                                                              .c = bad[i].c, .m = 64, .n = 64,
                                                                              .k = 64},
                                                  NULL),
                         SHOAL_E_BOUNDS);
    }
    print_message("refused: %s\n", shoal_last_error());
    /* The context is healthy: a valid op still works. */
    shoal_cuda_info_t info;
    shoal_cuda_backend_info(g_be, &info);
    assert_false(info.dead);
    poison(ok + 64 * 1024, 64 * 64);
    assert_int_equal(mm(ok, ok, ok + 64 * 1024, 64, 64, 64, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_OK);
    assert_int_equal(check_mm(ok, ok, ok + 64 * 1024, 64, 64, 64, "after refusals"), 0);
    assert_int_equal(g_be->ops->synchronize(g_be), SHOAL_OK);
    free(heap);
    region_free(&r);
}

static void test_unmap_then_reuse_and_resident(void **state)
{
    (void)state;
    need_gpu();
    const size_t MiB = 1u << 20;
    region_t r = region_new(2 * MiB, 2 * MiB);
    uint8_t *a = r.base, *b = r.base + 256 * 1024, *c = r.base + 512 * 1024;
    const int m = 96, n = 80, k = 112;
    assert_int_equal(g_be->ops->map(g_be, r.base, r.accessible), SHOAL_OK);
    fill(a, (size_t)m * k);
    fill(b, (size_t)k * n);
    assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_OK);

    /* Resident A: later guest writes are not seen until it is added again. */
    size_t abytes = (size_t)m * k * 4;
    uint8_t *a_old = malloc(abytes);
    assert_non_null(a_old);
    memcpy(a_old, a, abytes);
    assert_int_equal(g_be->ops->resident_add(g_be, a, abytes), SHOAL_OK);
    fill(a, (size_t)m * k);
    poison(c, (size_t)m * n);
    assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_RESIDENT, NULL), SHOAL_OK);
    assert_int_equal(check_mm(a_old, b, c, m, n, k, "resident (old A)"), 0);
    assert_int_equal(g_be->ops->resident_add(g_be, a, abytes), SHOAL_OK); /* refresh */
    poison(c, (size_t)m * n);
    assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_RESIDENT, NULL), SHOAL_OK);
    assert_int_equal(check_mm(a, b, c, m, n, k, "resident (refreshed A)"), 0);
    /* Overlapping resident ranges are refused. */
    assert_int_equal(g_be->ops->resident_add(g_be, a + 4096, 4096), SHOAL_E_INVALID);

    /* After unmap the device may no longer touch the range, and resident copies inside it are
     * gone; mapping it again makes it usable again. */
    g_be->ops->unmap(g_be, r.base, r.accessible);
    shoal_cuda_info_t info;
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 0);
    assert_int_equal(info.resident_ranges, 0);
    assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_E_BOUNDS);
    assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_RESIDENT, NULL), SHOAL_E_BOUNDS);
    assert_int_equal(g_be->ops->map(g_be, r.base, r.accessible), SHOAL_OK);
    fill(a, (size_t)m * k);
    poison(c, (size_t)m * n);
    assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_OK);
    assert_int_equal(check_mm(a, b, c, m, n, k, "after re-map"), 0);
    free(a_old);
    region_free(&r);
}

static void test_lazy_registration(void **state)
{
    (void)state;
    need_gpu();
    const size_t MiB = 1u << 20;
    assert_int_equal(shoal_cuda_set_lazy_registration(g_be, 1000), SHOAL_E_INVALID); /* not page-sized */
    assert_int_equal(shoal_cuda_set_lazy_registration(g_be, MiB), SHOAL_OK);
    region_t r = region_new(64 * MiB, 8 * MiB);
    assert_int_equal(g_be->ops->map(g_be, r.base, r.accessible), SHOAL_OK);
    shoal_cuda_info_t info;
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 0); /* nothing pinned until a kernel needs it */
    assert_int_equal(info.mapped_bytes, 8 * MiB);
    assert_int_equal(shoal_cuda_set_lazy_registration(g_be, 0), SHOAL_E_INVALID); /* memory is mapped */

    const int m = 77, n = 129, k = 65;
    uint8_t *a = r.base + MiB - 8000; /* chunks 0 and 1 */
    uint8_t *b = r.base + 5 * MiB;    /* chunk 5 */
    uint8_t *c = r.base + 3 * MiB;    /* chunk 3 */
    for (int rep = 0; rep < 2; rep++) {
        fill(a, (size_t)m * k);
        fill(b, (size_t)k * n);
        poison(c, (size_t)m * n);
        assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_OK);
        assert_int_equal(check_mm(a, b, c, m, n, k, "lazy"), 0);
        shoal_cuda_backend_info(g_be, &info);
        assert_int_equal(info.registrations, 4);
        assert_int_equal(info.registered_bytes, 4 * MiB);
    }
    /* A grown increment is recorded, not pinned; C straddles the old end and the new range. */
    region_grow(&r, 3 * MiB);
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 4);
    c = r.base + 8 * MiB - 4000;
    poison(c, (size_t)m * n);
    assert_int_equal(mm(a, b, c, m, n, k, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_OK);
    assert_int_equal(check_mm(a, b, c, m, n, k, "lazy across grow"), 0);
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 6);
    /* Unmapped memory is still refused before anything is registered or launched. */
    assert_int_equal(mm(a, b, r.base + r.accessible - 4, m, n, k, SHOAL_PLACE_ZEROCOPY, NULL), SHOAL_E_BOUNDS);
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 6);
    region_free(&r);
    shoal_cuda_backend_info(g_be, &info);
    assert_int_equal(info.registrations, 0);
    assert_int_equal(info.mapped_bytes, 0);
    assert_int_equal(shoal_cuda_set_lazy_registration(g_be, 0), SHOAL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges_add_find_covers),
        cmocka_unit_test(test_create_reports_device),
        cmocka_unit_test(test_map_identity_grow),
        cmocka_unit_test(test_matmul_shapes_placements),
        cmocka_unit_test(test_unmapped_operands_refused),
        cmocka_unit_test(test_unmap_then_reuse_and_resident),
        cmocka_unit_test(test_lazy_registration),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

#else /* !SHOAL_HAVE_CUDA */

static void test_cuda_not_built(void **state)
{
    (void)state;
    print_message("[  SKIP    ] libshoal was built without nvcc: no CUDA backend to test\n");
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cuda_not_built)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
