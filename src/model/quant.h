/* quant.h — ggml tensor types: traits, dequantisation, and the row dot products of a CPU matvec.
 *
 * Block layouts (facts of the ggml/GGUF format; all little-endian, blocks packed with no padding):
 *   F32  (0)  1 element,  4 bytes: IEEE binary32.
 *   F16  (1)  1 element,  2 bytes: IEEE binary16.
 *   BF16 (30) 1 element,  2 bytes: the upper 16 bits of a binary32.
 *   Q4_0 (2)  32 elements, 18 bytes: { f16 d; u8 qs[16]; }
 *             element j (0..15) = d * ((qs[j] & 15) - 8), element j+16 = d * ((qs[j] >> 4) - 8).
 *   Q4_1 (3)  32 elements, 20 bytes: { f16 d; f16 m; u8 qs[16]; }
 *             element j = d * (qs[j] & 15) + m, element j+16 = d * (qs[j] >> 4) + m.
 *   Q8_0 (8)  32 elements, 34 bytes: { f16 d; i8 qs[32]; }   element j = d * qs[j].
 *   Q8_1 (9)  32 elements, 36 bytes: { f16 d; f16 s; i8 qs[32]; }  element j = d * qs[j], s = d * sum(qs).
 * Other ggml types (K-quants, IQ*, integer types) are known by id, block size and byte size so the
 * GGUF reader can validate files holding them, but cannot be dequantised or multiplied here.
 *
 * How a matvec uses this (the forward pass):
 *   1. once per weight matrix at load:   shoal_qtype_check(type, n_cols) must be SHOAL_OK.
 *   2. once per activation vector x:     shoal_act_quantize(type, x, act, n)   (act has
 *                                        shoal_act_size(type, n) bytes, 64-byte aligned preferred)
 *   3. per row (or better, per range):   y[r] = shoal_vec_dot(type, row_r, act, n), or
 *                                        shoal_matvec(type, W, row_stride, rows, act, n, y).
 * The prepared activation depends only on (type, x, n), is read-only during the dots, and can be
 * shared by any number of threads that split the rows between them.
 *
 * For F32/F16/BF16 weights the activation is x itself as f32 (act_quantize copies it; the dots run
 * in float with FMA). For Q4_0/Q4_1/Q8_0 weights x is quantised once to 8-bit blocks of 32 with an
 * f32 scale per block (like ggml's Q8_0/Q8_1 activations, but scale and block sums kept exactly), and
 * the dots are integer multiply-adds (AVX2 maddubs, AVX-512 VNNI dpbusd) with one float FMA per
 * block. The error this adds is that of 8-bit activations: at most d/2 = |x|max/254 per element of a
 * block (tests bound it). The activation layout is an implementation detail (quant_impl.h: blocks
 * paired and interleaved by 16-byte halves to match 4-bit weights), identical across ISAs.
 *
 * Speed (measured by bench/bench_quant on the 2-core Zen 4 dev VM, AVX-512 VNNI, best of 7):
 * Q4_1 x 576 rows ~20 GB/s of weights per core from L2 and 13-15 GB/s from DRAM (22-23 GB/s with two
 * threads); Q8_0 x 576 ~44 GB/s from L2, 12 GB/s from DRAM (29-31 GB/s with two threads). Use
 * shoal_matvec for anything larger than a few rows: it processes four rows per pass and feeds long
 * rows from four quarters of the matrix so each weight stream is sequential for the prefetchers.
 *
 * Kernels are chosen at run time: AVX-512 (F + BW + VL + VNNI) if the CPU has it, else AVX2 + FMA
 * (+F16C), else portable C. Every entry point is thread-safe and allocation-free. */
#ifndef SHOAL_MODEL_QUANT_H
#define SHOAL_MODEL_QUANT_H

#include "shoal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ggml type ids, as stored in GGUF tensor infos. Gaps (4, 5, 31-33, 36-38) are ids ggml retired. */
typedef enum shoal_ggml_type {
    SHOAL_GGML_F32 = 0,
    SHOAL_GGML_F16 = 1,
    SHOAL_GGML_Q4_0 = 2,
    SHOAL_GGML_Q4_1 = 3,
    SHOAL_GGML_Q5_0 = 6,
    SHOAL_GGML_Q5_1 = 7,
    SHOAL_GGML_Q8_0 = 8,
    SHOAL_GGML_Q8_1 = 9,
    SHOAL_GGML_Q2_K = 10,
    SHOAL_GGML_Q3_K = 11,
    SHOAL_GGML_Q4_K = 12,
    SHOAL_GGML_Q5_K = 13,
    SHOAL_GGML_Q6_K = 14,
    SHOAL_GGML_Q8_K = 15,
    SHOAL_GGML_IQ2_XXS = 16,
    SHOAL_GGML_IQ2_XS = 17,
    SHOAL_GGML_IQ3_XXS = 18,
    SHOAL_GGML_IQ1_S = 19,
    SHOAL_GGML_IQ4_NL = 20,
    SHOAL_GGML_IQ3_S = 21,
    SHOAL_GGML_IQ2_S = 22,
    SHOAL_GGML_IQ4_XS = 23,
    SHOAL_GGML_I8 = 24,
    SHOAL_GGML_I16 = 25,
    SHOAL_GGML_I32 = 26,
    SHOAL_GGML_I64 = 27,
    SHOAL_GGML_F64 = 28,
    SHOAL_GGML_IQ1_M = 29,
    SHOAL_GGML_BF16 = 30,
    SHOAL_GGML_TQ1_0 = 34,
    SHOAL_GGML_TQ2_0 = 35,
    SHOAL_GGML_MXFP4 = 39,
    SHOAL_GGML_TYPE_COUNT = 40 /* one past the largest id known */
} shoal_ggml_type_t;

typedef struct shoal_qtype_traits {
    const char *name;     /* "Q4_1" */
    uint32_t block_elems; /* elements per block (1 for plain types) */
    uint32_t block_bytes; /* bytes per block */
    bool supported;       /* dequantise / dot / quantise available here */
    bool int_dot;         /* the dot runs on 8-bit quantised activations (else on f32) */
} shoal_qtype_traits_t;

/* Traits of a known ggml type id; NULL for ids ggml does not define. */
const shoal_qtype_traits_t *shoal_qtype_traits(uint32_t type);
/* Name of a type id ("Q4_1"); "unknown" for undefined ids. Never NULL. */
const char *shoal_qtype_name(uint32_t type);
bool shoal_qtype_supported(uint32_t type);
/* Bytes of a row of n elements; 0 if the type is unknown, n is not a positive multiple of the block
 * size, or the size overflows. */
uint64_t shoal_qtype_row_size(uint32_t type, int64_t n);
/* SHOAL_OK if rows of n elements of `type` can be dequantised and dotted here; otherwise
 * SHOAL_E_UNSUPPORTED (type) or SHOAL_E_INVALID (n) with a message. Call once per weight matrix;
 * the hot functions below assume it passed. */
shoal_status_t shoal_qtype_check(uint32_t type, int64_t n);

/* ---- conversions ---- */

float shoal_fp16_to_fp32(uint16_t h);
uint16_t shoal_fp32_to_fp16(float f); /* round to nearest even; overflow -> inf; NaN stays NaN */
float shoal_bf16_to_fp32(uint16_t h);
uint16_t shoal_fp32_to_bf16(float f); /* round to nearest even; NaN stays NaN */
void shoal_fp16_to_fp32_row(const uint16_t *x, float *y, int64_t n);
void shoal_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t n);

/* Dequantises one row of n elements (n a multiple of the block size) to f32. SHOAL_E_UNSUPPORTED /
 * SHOAL_E_INVALID as shoal_qtype_check. */
shoal_status_t shoal_dequantize_row(uint32_t type, const void *row, float *y, int64_t n);
/* Quantises n floats into one row of `type` (for writing test models; not a hot path). Q4_0/Q8_0
 * use d = signed max / -8 resp. absmax / 127, Q4_1 uses d = (max - min) / 15, m = min; nearest
 * rounding. SHOAL_E_UNSUPPORTED / SHOAL_E_INVALID as shoal_qtype_check. */
shoal_status_t shoal_quantize_row(uint32_t type, const float *x, void *row, int64_t n);

/* ---- dot products ---- */

/* Bytes of the prepared activation for rows of `type` and length n (0 if unsupported / bad n). */
size_t shoal_act_size(uint32_t type, int64_t n);
/* Prepares x (n floats) for dots against rows of `type`; act must hold shoal_act_size bytes. */
void shoal_act_quantize(uint32_t type, const float *x, void *act, int64_t n);
/* Dot product of one row of `type` (n elements) with a prepared activation. (A row at a time costs
 * the per-call dispatch and forgoes the four-row sharing: loops over rows should call shoal_matvec.) */
float shoal_vec_dot(uint32_t type, const void *row, const void *act, int64_t n);
/* y[r] = dot(row r, act) for r in [0, nrows), row r at (const char *)w + r * row_stride. Processes
 * several rows per pass so activation loads are shared; this is the matvec inner loop. */
void shoal_matvec(uint32_t type, const void *w, size_t row_stride, int64_t nrows, const void *act, int64_t n,
                  float *y);
/* Batched form for prefill: y[t * ldy + r] = dot(row r, act t) for t in [0, nact), act t at
 * (const char *)acts + t * act_stride (each prepared with shoal_act_quantize). Weights are streamed
 * once for all activations. */
void shoal_matmul(uint32_t type, const void *w, size_t row_stride, int64_t nrows, const void *acts,
                  size_t act_stride, int64_t nact, int64_t n, float *y, size_t ldy);

/* ---- ISA selection (tests and benchmarks; normal callers use the functions above) ---- */

typedef enum shoal_isa {
    SHOAL_ISA_SCALAR = 0, /* portable C */
    SHOAL_ISA_AVX2 = 1,   /* AVX2 + FMA + F16C */
    SHOAL_ISA_AVX512 = 2, /* AVX-512 F + BW + VL + VNNI (plus the AVX2 requirements) */
    SHOAL_ISA_COUNT
} shoal_isa_t;

bool shoal_isa_available(shoal_isa_t isa);
const char *shoal_isa_name(shoal_isa_t isa);
/* The ISA the un-suffixed entry points use (the best available). */
shoal_isa_t shoal_isa_best(void);
/* Same as shoal_act_quantize / shoal_vec_dot / shoal_matvec on a given ISA (must be available).
 * All ISAs produce the same prepared activation bytes. */
void shoal_act_quantize_isa(shoal_isa_t isa, uint32_t type, const float *x, void *act, int64_t n);
float shoal_vec_dot_isa(shoal_isa_t isa, uint32_t type, const void *row, const void *act, int64_t n);
void shoal_matvec_isa(shoal_isa_t isa, uint32_t type, const void *w, size_t row_stride, int64_t nrows,
                      const void *act, int64_t n, float *y);
void shoal_matmul_isa(shoal_isa_t isa, uint32_t type, const void *w, size_t row_stride, int64_t nrows,
                      const void *acts, size_t act_stride, int64_t nact, int64_t n, float *y, size_t ldy);

#endif
