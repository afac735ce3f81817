/* bad_ops.c — calls shoal imports with hostile arguments named by argv[1]; each case must
 * trap with a precise message (the CLI test checks it), never touch host memory. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shoal_guest.h"

static float a[64], b[64], c[64];

int main(int argc, char **argv)
{
    const char *k = argc > 1 ? argv[1] : "";
    uint32_t mem = (uint32_t)__builtin_wasm_memory_size(0) * 65536u;
    if (!strcmp(k, "ok")) return shoal_matmul_f32(a, b, c, 8, 8, 8);
    if (!strcmp(k, "past-end")) /* B starts inside memory but runs past its end */
        return shoal_matmul_f32(a, (const float *)(uintptr_t)(mem - 16), c, 8, 8, 8);
    if (!strcmp(k, "wrap")) /* offset + length wraps around 2^32 */
        return shoal_matmul_f32((const float *)(uintptr_t)0xFFFFFFF0u, b, c, 8, 8, 8);
    if (!strcmp(k, "huge-dims")) /* m * k * 4 overflows 32 bits */
        return shoal_matmul_f32(a, b, c, 0x40000000u, 1, 0x40000000u);
    if (!strcmp(k, "misaligned")) return shoal_matmul_f32((const float *)((uintptr_t)a + 1), b, c, 2, 2, 2);
    if (!strcmp(k, "overlap")) return shoal_matmul_f32(a, b, a, 8, 8, 8);
    if (!strcmp(k, "bad-placement")) return shoal_matmul_f32_placed(a, b, c, 2, 2, 2, 7);
    if (!strcmp(k, "op-info-oob")) return shoal_op_info((shoal_op_info_t *)(uintptr_t)(mem - 8));
    if (!strcmp(k, "last-error-oob")) return shoal_last_error((char *)(uintptr_t)(mem - 4), 100);
    fprintf(stderr, "bad_ops: unknown case\n");
    return 3;
}
