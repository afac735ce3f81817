/* shoal_guest.h — the guest side of Shoal's native `shoal` import module.
 *
 * Offsets are ordinary guest pointers: the host computes on these very bytes, in place.
 * A pointer/length outside the guest's memory traps the guest; other failures return a
 * non-zero status whose message shoal_last_error() copies out. */
#ifndef SHOAL_GUEST_H
#define SHOAL_GUEST_H

#include <stdint.h>

#define SHOAL_IMPORT(name) __attribute__((import_module("shoal"), import_name(name)))

enum shoal_placement { SHOAL_ZEROCOPY = 0, SHOAL_COPY = 1, SHOAL_RESIDENT = 2 };

/* What the last op did. Addresses are offsets into this guest's memory; UINT64_MAX means
 * the kernel used memory outside it (a staging copy). */
typedef struct shoal_op_info {
    uint64_t ns;           /* host-measured time of the op, copies included */
    uint64_t bytes_copied; /* bytes staged (0 on the zero-copy path) */
    int64_t rss_growth;    /* host RSS growth while the operands were exposed to the kernel */
    uint64_t a_offset, b_offset, c_offset; /* where the kernel read A, B and wrote C */
    uint32_t identity;     /* 1 when all three lie in this guest's memory */
    uint32_t reserved;
} shoal_op_info_t;

/* C[m,n] = A[m,k] @ B[k,n], float32, row-major; C must not overlap A or B. Returns 0. */
SHOAL_IMPORT("matmul_f32")
int32_t shoal_matmul_f32(const float *a, const float *b, float *c, uint32_t m, uint32_t n, uint32_t k);
SHOAL_IMPORT("matmul_f32_placed")
int32_t shoal_matmul_f32_placed(const float *a, const float *b, float *c, uint32_t m, uint32_t n, uint32_t k,
                                int32_t placement);
/* Names [p, p+len) as a device-resident operand (a copy kept in device memory until dropped;
 * re-add after writing to it). A no-op on the CPU. */
SHOAL_IMPORT("resident_add") int32_t shoal_resident_add(const void *p, uint32_t len);
SHOAL_IMPORT("resident_drop") int32_t shoal_resident_drop(const void *p);
SHOAL_IMPORT("op_info") int32_t shoal_op_info(shoal_op_info_t *out);
/* Copies the last error message (NUL-terminated, truncated to cap); returns its full length. */
SHOAL_IMPORT("last_error") int32_t shoal_last_error(char *buf, uint32_t cap);

#endif
