/* memprobe.c — a reactor guest for the zero-copy memory tests: the host writes and reads
 * its memory directly and asks it to do the same. SHOAL_GUEST_REACTOR */
#include <stdint.h>
#include <stdlib.h>

#define EXPORT(name) __attribute__((export_name(name)))

static uint8_t buffer[4096];

EXPORT("buf") uint32_t buf(void) { return (uint32_t)(uintptr_t)buffer; }

/* Fills [off, off+len) with bytes derived from seed. */
EXPORT("fill") void fill(uint32_t off, uint32_t len, uint32_t seed)
{
    uint8_t *p = (uint8_t *)(uintptr_t)off;
    for (uint32_t i = 0; i < len; i++) p[i] = (uint8_t)(seed * 31u + i * 7u);
}

/* 1 when [off, off+len) holds fill(off, len, seed)'s pattern. */
EXPORT("check") int32_t check(uint32_t off, uint32_t len, uint32_t seed)
{
    const uint8_t *p = (const uint8_t *)(uintptr_t)off;
    for (uint32_t i = 0; i < len; i++)
        if (p[i] != (uint8_t)(seed * 31u + i * 7u)) return 0;
    return 1;
}

/* memory.grow by `pages` 64 KiB pages; returns the old size in pages or -1. */
EXPORT("grow") int32_t grow(uint32_t pages) { return (int32_t)__builtin_wasm_memory_grow(0, pages); }
EXPORT("pages") int32_t pages(void) { return (int32_t)__builtin_wasm_memory_size(0); }

/* Sums the bytes of [off, off+len): every byte of freshly grown memory must read as zero. */
EXPORT("sum") uint32_t sum(uint32_t off, uint32_t len)
{
    const uint8_t *p = (const uint8_t *)(uintptr_t)off;
    uint32_t s = 0;
    for (uint32_t i = 0; i < len; i++) s += p[i];
    return s;
}

EXPORT("load") uint32_t load(uint32_t off) { return *(volatile uint8_t *)(uintptr_t)off; }

/* The host multiplies through the guest: C = A @ B on guest offsets. */
__attribute__((import_module("shoal"), import_name("matmul_f32"))) int32_t
shoal_matmul_f32(uint32_t a, uint32_t b, uint32_t c, uint32_t m, uint32_t n, uint32_t k);
EXPORT("matmul") int32_t matmul(uint32_t a, uint32_t b, uint32_t c, uint32_t m, uint32_t n, uint32_t k)
{
    return shoal_matmul_f32(a, b, c, m, n, k);
}
EXPORT("alloc") uint32_t alloc(uint32_t n) { return (uint32_t)(uintptr_t)malloc(n); }
