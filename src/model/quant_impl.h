/* quant_impl.h — internal to quant*.c (and white-box tests): the prepared-activation layout and the
 * per-ISA kernel tables.
 *
 * Prepared activation for integer-dot types (Q4_0, Q4_1, Q8_0); n elements, nb = n / 32 blocks,
 * np = nb / 2 pairs of blocks:
 *   int8  q[n]      at byte 0          quantised values, pair-interleaved (below)
 *   float d[nb]     at byte n          scale: x[i] ~= d[b] * value i
 *   float s[nb]     at byte n + 4 nb   d[b] * (sum of block b's values), for Q4_1's offset m
 *   int32 sum[nb]   at byte n + 8 nb   sum of block b's values, for Q4_0's -8 and Q8_0's +128 offsets
 * Pair p (blocks 2p, 2p+1) occupies q[64p .. 64p+63] as
 *   block 2p elements 0..15 | block 2p+1 elements 0..15 | block 2p elements 16..31 | block 2p+1 16..31
 * because a 4-bit weight block keeps elements 0..15 in its low nibbles and 16..31 in its high ones:
 * two blocks' 16 bytes of nibbles, loaded side by side and masked / shifted, line up with the first
 * and second 32 bytes of the pair without any shuffling per row. An odd last block is stored plainly.
 * Quantisation is d = amax / 127, value = round_to_nearest_even(x * (127 / amax)) (0 when amax = 0),
 * done with the same float operations on every ISA so the bytes are identical for finite input
 * (non-finite input gives defined values, clamped to +-127, that may differ between ISAs).
 * For float types (F32, F16, BF16) the prepared activation is x as f32. */
#ifndef SHOAL_MODEL_QUANT_IMPL_H
#define SHOAL_MODEL_QUANT_IMPL_H

#include <stddef.h>
#include <stdint.h>

#define QK 32 /* elements per block of every supported block type */

typedef struct q4_0_block { uint16_t d; uint8_t qs[16]; } q4_0_block;
typedef struct q4_1_block { uint16_t d, m; uint8_t qs[16]; } q4_1_block;
typedef struct q8_0_block { uint16_t d; int8_t qs[32]; } q8_0_block;
_Static_assert(sizeof(q4_0_block) == 18, "Q4_0 block is 18 bytes");
_Static_assert(sizeof(q4_1_block) == 20, "Q4_1 block is 20 bytes");
_Static_assert(sizeof(q8_0_block) == 34, "Q8_0 block is 34 bytes");

static inline const int8_t *act_q(const void *act) { return (const int8_t *)act; }
static inline const float *act_d(const void *act, int64_t n) { return (const float *)((const char *)act + n); }
static inline const float *act_s(const void *act, int64_t n)
{
    return (const float *)((const char *)act + n + 4 * (n / QK));
}
static inline const int32_t *act_sum(const void *act, int64_t n)
{
    return (const int32_t *)((const char *)act + n + 8 * (n / QK));
}
/* Byte position in q of element i of an n-element activation. */
static inline int64_t act_index(int64_t i, int64_t n)
{
    int64_t b = i / QK, j = i % QK;
    if (b >= (n / QK) / 2 * 2) return i; /* odd last block: plain */
    return (b / 2) * 64 + (j < 16 ? 0 : 32) + (b & 1) * 16 + (j & 15);
}

/* One row's dot; four rows' dots (rows[0..3] may repeat) into y[0..3]. */
typedef float (*dot1_fn)(const void *row, const void *act, int64_t n);
typedef void (*dot4_fn)(const void *const *rows, const void *act, int64_t n, float *y);
typedef void (*actq_fn)(const float *x, void *act, int64_t n);
/* Four rows times mm_acts activations (acts[0..mm_acts-1], may repeat): y[4 a + r]. */
typedef void (*mm_fn)(const void *const *rows, const void *const *acts, int64_t n, float *y);

typedef struct qkern {
    dot1_fn dot1;
    dot4_fn dot4;
    mm_fn mm;    /* NULL: the batched form is dot4 per activation */
    int mm_acts; /* activations per mm call */
} qkern;

/* Kernel table for a supported type on an ISA; NULL: the caller falls back to a lesser ISA. */
const qkern *shoal_qkern_scalar(uint32_t type);
const qkern *shoal_qkern_avx2(uint32_t type);
const qkern *shoal_qkern_avx512(uint32_t type);
void shoal_act_q8_scalar(const float *x, void *act, int64_t n);
void shoal_act_q8_avx2(const float *x, void *act, int64_t n);
void shoal_fp16_to_fp32_row_f16c(const uint16_t *x, float *y, int64_t n);
void shoal_fp32_to_fp16_row_f16c(const float *x, uint16_t *y, int64_t n);

#endif
