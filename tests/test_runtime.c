/* test_runtime.c — the zero-copy linear memory, end to end on the real Wasmtime: guest
 * stores land at the host address and host stores at the guest's, before and after
 * memory.grow; grown memory is zero; the base never moves; the backend hears about exactly
 * the accessible bytes; the guard region faults; in-place matmul agrees with float64. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <math.h>
#include <stdbool.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "memory/linmem.h"
#include "runtime/runtime_impl.h"

static char g_guest[1024];

/* cmocka installs its own SIGSEGV/SIGBUS/SIGILL/SIGFPE handlers around every test, and they do
 * not chain to earlier handlers. Wasmtime turns guard-page faults into traps with exactly
 * those signals, so tests that make a guest trap put Wasmtime's handlers back first. */
static const int k_trap_signals[] = {SIGSEGV, SIGBUS, SIGILL, SIGFPE};
static struct sigaction g_wasmtime_sa[4];

static void save_wasmtime_handlers(void)
{
    shoal_runtime_t *rt; /* creating an engine installs Wasmtime's handlers */
    if (shoal_runtime_new(NULL, &rt) == SHOAL_OK) shoal_runtime_delete(rt);
    for (int i = 0; i < 4; i++) sigaction(k_trap_signals[i], NULL, &g_wasmtime_sa[i]);
}

static void restore_wasmtime_handlers(void)
{
    for (int i = 0; i < 4; i++) sigaction(k_trap_signals[i], &g_wasmtime_sa[i], NULL);
}

typedef struct fixture {
    shoal_runtime_t *rt;
    shoal_module_t *mod;
    shoal_instance_t *inst;
} fixture;

static int setup(void **state)
{
    restore_wasmtime_handlers();
    fixture *f = calloc(1, sizeof *f);
    shoal_runtime_config_t rc;
    shoal_runtime_config_init(&rc);
    rc.threads = 2;
    if (shoal_runtime_new(&rc, &f->rt) != SHOAL_OK) fail_msg("runtime: %s", shoal_last_error());
    if (shoal_module_load(f->rt, g_guest, &f->mod) != SHOAL_OK) fail_msg("module: %s", shoal_last_error());
    if (shoal_instance_new(f->rt, f->mod, NULL, &f->inst) != SHOAL_OK) fail_msg("instance: %s", shoal_last_error());
    /* Reactors run their constructors in _initialize. */
    if (shoal_instance_call_i32(f->inst, "_initialize", NULL, 0, NULL, 0) != SHOAL_OK)
        fail_msg("_initialize: %s", shoal_last_error());
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    shoal_instance_delete(f->inst);
    shoal_module_delete(f->mod);
    shoal_runtime_delete(f->rt);
    free(f);
    return 0;
}

static int32_t call(fixture *f, const char *fn, int n, ...)
{
    int32_t args[8], r = 0;
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) args[i] = va_arg(ap, int32_t);
    va_end(ap);
    shoal_status_t s = shoal_instance_call_i32(f->inst, fn, args, (size_t)n, &r, 1);
    if (s != SHOAL_OK) fail_msg("%s: %s", fn, shoal_last_error());
    return r;
}

static void call_void(fixture *f, const char *fn, int32_t a, int32_t b, int32_t c)
{
    int32_t args[3] = {a, b, c};
    if (shoal_instance_call_i32(f->inst, fn, args, 3, NULL, 0) != SHOAL_OK) fail_msg("%s: %s", fn, shoal_last_error());
}

/* The memory Wasmtime gives the guest is the one our creator reserved. */
static void test_memory_is_ours(void **state)
{
    fixture *f = *state;
    size_t size;
    uint8_t *base = shoal_instance_memory(f->inst, &size);
    assert_non_null(base);
    assert_true(size >= 65536);
    shoal_linmem_t *m = shoal_linmem_find(&f->rt->pool, base, size);
    assert_non_null(m);
    assert_ptr_equal(m->base, base);
    assert_int_equal(m->size, size);
    assert_ptr_equal(f->inst->mem.mem, m);
}

static void test_guest_writes_seen_by_host(void **state)
{
    fixture *f = *state;
    uint32_t off = (uint32_t)call(f, "buf", 0);
    call_void(f, "fill", (int32_t)off, 4096, 7);
    uint8_t *base = shoal_instance_memory(f->inst, NULL);
    for (uint32_t i = 0; i < 4096; i++) assert_int_equal(base[off + i], (uint8_t)(7 * 31u + i * 7u));
}

static void test_host_writes_seen_by_guest(void **state)
{
    fixture *f = *state;
    uint32_t off = (uint32_t)call(f, "buf", 0);
    uint8_t *base = shoal_instance_memory(f->inst, NULL);
    for (uint32_t i = 0; i < 4096; i++) base[off + i] = (uint8_t)(9 * 31u + i * 7u);
    assert_int_equal(call(f, "check", 3, (int32_t)off, 4096, 9), 1);
    base[off + 100] ^= 1;
    assert_int_equal(call(f, "check", 3, (int32_t)off, 4096, 9), 0);
}

/* memory.grow keeps the base, adds zeroed pages, and both directions work in the new pages. */
static void test_grow_in_place(void **state)
{
    fixture *f = *state;
    size_t size0, size1;
    uint8_t *base0 = shoal_instance_memory(f->inst, &size0);
    int32_t old_pages = call(f, "grow", 1, 16);
    assert_int_equal((size_t)old_pages * 65536, size0);
    uint8_t *base1 = shoal_instance_memory(f->inst, &size1);
    assert_ptr_equal(base0, base1);
    assert_int_equal(size1, size0 + 16 * 65536);
    assert_int_equal(call(f, "sum", 2, (int32_t)size0, 16 * 65536), 0);
    /* Guest -> host, then host -> guest, inside the grown range and across its boundary. */
    call_void(f, "fill", (int32_t)(size0 - 512), 8192, 3);
    for (uint32_t i = 0; i < 8192; i++) assert_int_equal(base1[size0 - 512 + i], (uint8_t)(3 * 31u + i * 7u));
    for (uint32_t i = 0; i < 8192; i++) base1[size1 - 8192 + i] = (uint8_t)(5 * 31u + i * 7u);
    assert_int_equal(call(f, "check", 3, (int32_t)(size1 - 8192), 8192, 5), 1);
    shoal_linmem_t *m = shoal_linmem_find(&f->rt->pool, base1, size1);
    assert_non_null(m);
    assert_int_equal(m->size, size1);
}

/* A guest load past the end of its memory traps; the host is untouched. */
static void test_out_of_bounds_load_traps(void **state)
{
    restore_wasmtime_handlers();
    fixture *f = *state;
    size_t size;
    shoal_instance_memory(f->inst, &size);
    int32_t args[1] = {(int32_t)size}, r;
    shoal_status_t s = shoal_instance_call_i32(f->inst, "load", args, 1, &r, 1);
    assert_int_equal(s, SHOAL_E_TRAP);
    assert_non_null(strstr(shoal_last_error(), "out of bounds"));
}

/* shoal.matmul_f32 computes on the guest's bytes in place; checked against float64. */
static void test_matmul_in_place(void **state)
{
    fixture *f = *state;
    const uint32_t m = 37, n = 53, k = 129;
    uint32_t a = (uint32_t)call(f, "alloc", 1, (int32_t)(m * k * 4));
    uint32_t b = (uint32_t)call(f, "alloc", 1, (int32_t)(k * n * 4));
    uint32_t c = (uint32_t)call(f, "alloc", 1, (int32_t)(m * n * 4));
    assert_true(a && b && c);
    uint8_t *base = shoal_instance_memory(f->inst, NULL);
    float *A = (float *)(base + a), *B = (float *)(base + b), *C = (float *)(base + c);
    srand(42);
    for (uint32_t i = 0; i < m * k; i++) A[i] = (float)rand() / RAND_MAX * 2 - 1;
    for (uint32_t i = 0; i < k * n; i++) B[i] = (float)rand() / RAND_MAX * 2 - 1;
    for (uint32_t i = 0; i < m * n; i++) C[i] = NAN;
    assert_int_equal(call(f, "matmul", 6, a, b, c, m, n, k), 0);
    assert_ptr_equal(f->inst->last_op.a_used, A);
    assert_ptr_equal(f->inst->last_op.c_used, C);
    for (uint32_t i = 0; i < m; i++)
        for (uint32_t j = 0; j < n; j++) {
            double ref = 0, mag = 0;
            for (uint32_t p = 0; p < k; p++) {
                ref += (double)A[i * k + p] * B[p * n + j];
                mag += fabs((double)A[i * k + p] * B[p * n + j]);
            }
            /* float32 accumulation of k terms: |err| <= k * 2^-24 * sum|ab| (loose bound). */
            assert_true(fabs(C[i * n + j] - ref) <= k * 6e-8 * mag + 1e-30);
        }
}

/* ---- the memory layer alone ---- */

typedef struct rec_backend {
    shoal_backend_t base;
    shoal_backend_t *cpu;
    void *maps[16];
    size_t map_len[16];
    int nmaps, nunmaps;
    size_t unmap_len;
    int fail_next_map;
} rec_backend;

static shoal_status_t rec_map(shoal_backend_t *be, void *p, size_t len)
{
    rec_backend *r = (rec_backend *)be;
    if (r->fail_next_map) {
        r->fail_next_map = 0;
        return SHOAL_E_DEVICE;
    }
    if (r->nmaps < 16) r->maps[r->nmaps] = p, r->map_len[r->nmaps] = len;
    r->nmaps++;
    return SHOAL_OK;
}
static void rec_unmap(shoal_backend_t *be, void *p, size_t len)
{
    rec_backend *r = (rec_backend *)be;
    r->nunmaps++;
    r->unmap_len = len;
}
static const shoal_backend_ops_t k_rec_ops = {.name = "recorder", .map = rec_map, .unmap = rec_unmap};

/* The backend hears about exactly the accessible bytes: once at creation, once per grown
 * increment, once at free. New bytes read as zero; past the accessible end is PROT_NONE. */
static void test_linmem_hooks(void **state)
{
    rec_backend rb = {.base = {&k_rec_ops}};
    shoal_linmem_pool_t pool;
    shoal_linmem_pool_init(&pool, &rb.base);
    shoal_linmem_t *m;
    assert_int_equal(shoal_linmem_new(&pool, 65536, SIZE_MAX, 1 << 24, 1 << 20, &m), SHOAL_OK);
    assert_int_equal(rb.nmaps, 1);
    assert_ptr_equal(rb.maps[0], m->base);
    assert_int_equal(rb.map_len[0], 65536);
    for (size_t i = 0; i < 65536; i++) assert_int_equal(m->base[i], 0);
    memset(m->base, 0xAB, 65536);
    uint8_t *base = m->base;
    assert_int_equal(shoal_linmem_grow(m, 3 * 65536), SHOAL_OK);
    assert_ptr_equal(m->base, base);
    assert_int_equal(rb.nmaps, 2);
    assert_ptr_equal(rb.maps[1], base + 65536);
    assert_int_equal(rb.map_len[1], 2 * 65536);
    for (size_t i = 65536; i < 3 * 65536; i++) assert_int_equal(base[i], 0);
    /* A backend that refuses a grown range makes the grow fail and leaves the memory as it was. */
    rb.fail_next_map = 1;
    assert_int_not_equal(shoal_linmem_grow(m, 4 * 65536), SHOAL_OK);
    assert_int_equal(m->size, 3 * 65536);
    /* Beyond the reservation: refused, never moved. */
    assert_int_equal(shoal_linmem_grow(m, (1 << 24) + 65536), SHOAL_E_LIMIT);
    assert_non_null(strstr(shoal_last_error(), "reservation"));
    assert_non_null(shoal_linmem_find(&pool, base + 100, 10));
    assert_null(shoal_linmem_find(&pool, base + 3 * 65536 - 4, 8));
    /* The byte after the accessible prefix must fault (checked in a child process). */
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL);
        volatile uint8_t x = base[3 * 65536];
        (void)x;
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV);
    shoal_linmem_free(m);
    assert_int_equal(rb.nunmaps, 1);
    assert_int_equal(rb.unmap_len, 3 * 65536);
    assert_null(shoal_linmem_find(&pool, base + 100, 10));
    shoal_linmem_pool_destroy(&pool);
}

/* --max-memory: growth past the limit is refused (memory.grow returns -1) and recorded. */
static void test_max_memory(void **state)
{
    restore_wasmtime_handlers();
    shoal_runtime_t *rt;
    shoal_module_t *mod;
    shoal_instance_t *inst;
    assert_int_equal(shoal_runtime_new(NULL, &rt), SHOAL_OK);
    assert_int_equal(shoal_module_load(rt, g_guest, &mod), SHOAL_OK);
    shoal_instance_config_t cfg;
    shoal_instance_config_init(&cfg);
    cfg.max_memory = 4 << 20;
    assert_int_equal(shoal_instance_new(rt, mod, &cfg, &inst), SHOAL_OK);
    size_t size;
    shoal_instance_memory(inst, &size);
    int32_t pages_ok = (int32_t)(((4 << 20) - size) / 65536), r;
    assert_int_equal(shoal_instance_call_i32(inst, "grow", &pages_ok, 1, &r, 1), SHOAL_OK);
    assert_int_equal(r, (int32_t)(size / 65536));
    int32_t one = 1;
    assert_int_equal(shoal_instance_call_i32(inst, "grow", &one, 1, &r, 1), SHOAL_OK);
    assert_int_equal(r, -1);
    assert_int_equal(inst->mem.refused_bytes, (4 << 20) + 65536);
    shoal_instance_delete(inst);
    /* A limit below the module's minimum fails instantiation with a message. */
    cfg.max_memory = 65536;
    assert_int_not_equal(shoal_instance_new(rt, mod, &cfg, &inst), SHOAL_OK);
    assert_non_null(strstr(shoal_last_error(), "max-memory"));
    shoal_module_delete(mod);
    shoal_runtime_delete(rt);
}

/* Malformed modules are refused with SHOAL_E_FORMAT and a message, never a crash. */
static void test_bad_modules(void **state)
{
    restore_wasmtime_handlers();
    shoal_runtime_t *rt;
    shoal_module_t *mod = NULL;
    assert_int_equal(shoal_runtime_new(NULL, &rt), SHOAL_OK);
    static const uint8_t junk[] = "hello, not wasm";
    assert_int_equal(shoal_module_new(rt, junk, sizeof junk, &mod), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "not a WebAssembly module"));
    FILE *fp = fopen(g_guest, "rb");
    assert_non_null(fp);
    static uint8_t buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, fp);
    fclose(fp);
    /* Section boundaries: a module cut exactly there can still be valid (sections are
     * optional; trailing custom sections carry only names), so only cuts inside a section
     * must fail. Each section is an id byte and a LEB128 size. */
    static bool boundary[1 << 20];
    memset(boundary, 0, sizeof boundary);
    for (size_t p = 8; p < len;) {
        boundary[p] = true;
        size_t q = p + 1, size = 0;
        for (int shift = 0; q < len; shift += 7) {
            size |= (size_t)(buf[q] & 0x7f) << shift;
            if (!(buf[q++] & 0x80)) break;
        }
        p = q + size;
    }
    /* Every truncation point in the first 4 KiB, then coarser: all must fail cleanly. */
    int must_fail = 0;
    for (size_t cut = 0; cut < len; cut += cut < 4096 ? 1 : 509) {
        shoal_status_t s = shoal_module_new(rt, buf, cut, &mod);
        if (s == SHOAL_OK) {
            assert_true(cut >= 8 && boundary[cut]);
            shoal_module_delete(mod);
            mod = NULL;
            continue;
        }
        assert_int_equal(s, SHOAL_E_FORMAT);
        assert_true(strlen(shoal_last_error()) > 0);
        must_fail++;
    }
    assert_true(must_fail > 4000);
    assert_int_equal(shoal_module_load(rt, "/nonexistent/guest.wasm", &mod), SHOAL_E_IO);
    assert_null(mod);
    shoal_runtime_delete(rt);
}

int main(void)
{
    const char *dir = getenv("SHOAL_GUESTS");
    snprintf(g_guest, sizeof g_guest, "%s/memprobe.wasm", dir ? dir : "build/guests");
    save_wasmtime_handlers();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_memory_is_ours, setup, teardown),
        cmocka_unit_test_setup_teardown(test_guest_writes_seen_by_host, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_writes_seen_by_guest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_grow_in_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_bounds_load_traps, setup, teardown),
        cmocka_unit_test_setup_teardown(test_matmul_in_place, setup, teardown),
        cmocka_unit_test(test_linmem_hooks),
        cmocka_unit_test(test_max_memory),
        cmocka_unit_test(test_bad_modules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
