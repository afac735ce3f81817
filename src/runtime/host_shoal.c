/* host_shoal.c — the `shoal` import module: in-place ops on the guest's own memory.
 *
 * Every (offset, length) is validated against the memory's current size before the backend
 * sees a pointer; a bad one traps the guest. Other failures (a device error) return a
 * non-zero shoal_status_t to the guest, whose message shoal.last_error copies out. */
#include <stdio.h>
#include <string.h>

#include "runtime/hostcall.h"

/* Layout of the record shoal.op_info writes (little-endian, 56 bytes); mirrored in
 * guests/include/shoal_guest.h. Addresses are given as offsets from the guest's memory
 * base, so no host address reaches the sandbox; UINT64_MAX means "not inside guest memory"
 * (a staging buffer). */
typedef struct guest_op_info {
    uint64_t ns;
    uint64_t bytes_copied;
    int64_t rss_growth;
    uint64_t a_offset, b_offset, c_offset;
    uint32_t identity; /* 1: the kernel read A, B and wrote C at base + the offsets passed */
    uint32_t reserved;
} guest_op_info;
_Static_assert(sizeof(guest_op_info) == 56, "op_info layout");

static uint64_t offset_in(const shoal_guest_mem_t *m, const void *p)
{
    const uint8_t *q = p;
    return q >= m->base && q < m->base + m->size ? (uint64_t)(q - m->base) : UINT64_MAX;
}

static bool overlaps(const void *p, size_t plen, const void *q, size_t qlen)
{
    const uint8_t *a = p, *b = q;
    return plen && qlen && a < b + qlen && b < a + plen;
}

static wasm_trap_t *do_matmul(wasmtime_caller_t *caller, const wasmtime_val_t *args, uint32_t placement,
                              wasmtime_val_t *results)
{
    static const char *fn = "shoal.matmul_f32";
    shoal_instance_t *inst = shoal_caller_instance(caller);
    shoal_guest_mem_t mem;
    wasm_trap_t *t = shoal_caller_memory(caller, fn, &mem);
    if (t) return t;
    uint32_t a_off = (uint32_t)args[0].of.i32, b_off = (uint32_t)args[1].of.i32, c_off = (uint32_t)args[2].of.i32;
    uint32_t m = (uint32_t)args[3].of.i32, n = (uint32_t)args[4].of.i32, k = (uint32_t)args[5].of.i32;
    if (placement >= SHOAL_PLACE_COUNT_) return shoal_trap("%s: unknown placement %u", fn, placement);
    /* Sizes in 64 bits: m*k*4 cannot overflow for 32-bit dimensions. */
    uint64_t sa = (uint64_t)m * k * 4, sb = (uint64_t)k * n * 4, sc = (uint64_t)m * n * 4;
    void *pa, *pb, *pc;
    if ((t = shoal_guest_range(&mem, fn, "A", a_off, sa, 4, &pa))) return t;
    if ((t = shoal_guest_range(&mem, fn, "B", b_off, sb, 4, &pb))) return t;
    if ((t = shoal_guest_range(&mem, fn, "C", c_off, sc, 4, &pc))) return t;
    if (overlaps(pc, sc, pa, sa) || overlaps(pc, sc, pb, sb))
        return shoal_trap("%s: C [%#x, +%llu) overlaps an input operand", fn, c_off, (unsigned long long)sc);
    shoal_matmul_args_t x = {pa, pb, pc, m, n, k, (shoal_placement_t)placement};
    shoal_op_stats_t st;
    memset(&st, 0, sizeof st);
    shoal_backend_t *be = inst->rt->backend;
    shoal_status_t s = (m && n) ? be->ops->matmul_f32(be, &x, &st) : SHOAL_OK;
    inst->last_op = st;
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = (int32_t)s;
    return NULL;
}

static wasm_trap_t *h_matmul(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,
                             wasmtime_val_t *results, size_t nresults)
{
    return do_matmul(caller, args, SHOAL_PLACE_ZEROCOPY, results);
}

static wasm_trap_t *h_matmul_placed(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,
                                    wasmtime_val_t *results, size_t nresults)
{
    return do_matmul(caller, args, (uint32_t)args[6].of.i32, results);
}

static wasm_trap_t *h_resident_add(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,
                                   wasmtime_val_t *results, size_t nresults)
{
    static const char *fn = "shoal.resident_add";
    shoal_instance_t *inst = shoal_caller_instance(caller);
    void *p;
    wasm_trap_t *t = shoal_caller_range(caller, fn, "range", (uint32_t)args[0].of.i32, (uint32_t)args[1].of.i32, 4, &p);
    if (t) return t;
    shoal_backend_t *be = inst->rt->backend;
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = (int32_t)be->ops->resident_add(be, p, (uint32_t)args[1].of.i32);
    return NULL;
}

static wasm_trap_t *h_resident_drop(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,
                                    wasmtime_val_t *results, size_t nresults)
{
    static const char *fn = "shoal.resident_drop";
    shoal_instance_t *inst = shoal_caller_instance(caller);
    void *p;
    wasm_trap_t *t = shoal_caller_range(caller, fn, "range", (uint32_t)args[0].of.i32, 0, 4, &p);
    if (t) return t;
    shoal_backend_t *be = inst->rt->backend;
    be->ops->resident_drop(be, p);
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = 0;
    return NULL;
}

static wasm_trap_t *h_op_info(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,
                              wasmtime_val_t *results, size_t nresults)
{
    static const char *fn = "shoal.op_info";
    shoal_instance_t *inst = shoal_caller_instance(caller);
    shoal_guest_mem_t mem;
    void *p;
    wasm_trap_t *t = shoal_caller_memory(caller, fn, &mem);
    if (!t) t = shoal_guest_range(&mem, fn, "out", (uint32_t)args[0].of.i32, sizeof(guest_op_info), 8, &p);
    if (t) return t;
    const shoal_op_stats_t *st = &inst->last_op;
    guest_op_info info = {
        .ns = st->ns,
        .bytes_copied = st->bytes_copied,
        .rss_growth = st->rss_growth,
        .a_offset = offset_in(&mem, st->a_used),
        .b_offset = offset_in(&mem, st->b_used),
        .c_offset = offset_in(&mem, st->c_used),
    };
    info.identity = info.a_offset != UINT64_MAX && info.b_offset != UINT64_MAX && info.c_offset != UINT64_MAX;
    memcpy(p, &info, sizeof info);
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = 0;
    return NULL;
}

static wasm_trap_t *h_last_error(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,
                                 wasmtime_val_t *results, size_t nresults)
{
    static const char *fn = "shoal.last_error";
    void *p;
    uint32_t cap = (uint32_t)args[1].of.i32;
    wasm_trap_t *t = shoal_caller_range(caller, fn, "buffer", (uint32_t)args[0].of.i32, cap, 1, &p);
    if (t) return t;
    const char *msg = shoal_last_error();
    size_t len = strlen(msg);
    if (cap) {
        size_t n = len < cap - 1 ? len : cap - 1;
        memcpy(p, msg, n);
        ((char *)p)[n] = '\0';
    }
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = (int32_t)len;
    return NULL;
}

shoal_status_t shoal_host_shoal_define(shoal_runtime_t *rt)
{
    static const struct {
        const char *name, *sig;
        wasmtime_func_callback_t cb;
    } fns[] = {
        {"matmul_f32", "iiiiii>i", h_matmul},
        {"matmul_f32_placed", "iiiiiii>i", h_matmul_placed},
        {"resident_add", "ii>i", h_resident_add},
        {"resident_drop", "i>i", h_resident_drop},
        {"op_info", "i>i", h_op_info},
        {"last_error", "ii>i", h_last_error},
    };
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        shoal_status_t s = shoal_runtime_define(rt, "shoal", fns[i].name, fns[i].sig, fns[i].cb, NULL);
        if (s != SHOAL_OK) return s;
    }
    return SHOAL_OK;
}
