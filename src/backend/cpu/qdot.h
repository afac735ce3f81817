/* qdot.h — fused quantised matvec kernels of the Llama forward pass (AVX-512 VNNI): Q4_0, Q4_1 and
 * Q8_0 weight rows against activations of one or two 8-bit planes.
 *
 * Activation format ("qact"), n elements in nb = n / 32 blocks:
 *   int8  q1[n]   plane 1: round(x * 127 / amax) per block
 *   int8  q2[n]   plane 2: round(256 * (x * 127 / amax - q1)), the residual in 1/256 steps (0 if 1 plane)
 *   float d[nb]   scale of the integer sum (q1 << 8) + q2: amax / 127 / 256  (amax / 127 with 1 plane)
 *   float s[nb]   sum of the block's dequantised activation (for the Q4_0 / Q4_1 offsets)
 * So x ~= d * (256 q1 + q2): about 15 bits per element with two planes (error <= amax / 65000),
 * 8 bits with one (error <= amax / 254, what llama.cpp's Q8 activations have).
 * Both planes go through one kernel: VNNI dot of plane 1, shift left 8, VNNI-accumulate plane 2,
 * so the second plane costs one extra instruction per block, not a second pass. */
#ifndef SHOAL_BACKEND_CPU_QDOT_H
#define SHOAL_BACKEND_CPU_QDOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when the CPU has AVX-512 F/BW/VL/VNNI (and AVX2/FMA/F16C): the kernels below may run. */
bool shoal_qdot_available(void);
/* True for the weight types the kernels handle (ggml ids Q4_0, Q4_1, Q8_0). */
bool shoal_qdot_type_supported(uint32_t type);
/* Bytes of a qact for n elements (n a multiple of 32). */
size_t shoal_qact_size(int n);
/* Quantises x (n floats) into act with 1 or 2 planes. */
void shoal_qact_quantize(const float *x, int n, int planes, void *act);
/* The portable C version (tests: the SIMD one must produce the same bytes). */
void shoal_qact_quantize_scalar(const float *x, int n, int planes, void *act);
/* y[t * ldy + r] = row r . act t, rows r in [0, nrows) at w + r * stride, activations t in [0, nact) at
 * act + t * act_stride. Weights are reused across the activations while in L1. */
void shoal_qdot_matmul(uint32_t type, const void *w, size_t stride, int nrows, const void *act, size_t act_stride,
                       int nact, int n, int planes, float *y, size_t ldy);

#endif
