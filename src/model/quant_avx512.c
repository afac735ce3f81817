/* quant_avx512.c — the dot kernels of quant_kern.inc with AVX-512 VNNI's u8 x s8 -> i32 multiply-add
 * (vpdpbusd on 256-bit registers, via AVX512VL). Zen 4 executes 512-bit operations as two 256-bit
 * halves, so the wider registers would not add throughput there; the gain is the fused multiply-add
 * chain (one instruction where AVX2 needs maddubs + madd, and no i16 saturation limit). */
#if defined(__x86_64__) && defined(__GNUC__)
#include "model/quant.h"
#include "model/quant_impl.h"

#include <immintrin.h>
#include <string.h>

#define KT __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

/* Q4: two chained u8 x s8 dot-accumulates; Q8: weights offset by +128 into u8 (the bias is removed
 * exactly with the activation's integer block sums). */
#define DOTQ4(lo, hi, alo, ahi) _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), lo, alo), hi, ahi)
#define DOTQ8(wlo, whi, alo, ahi)                                                                             \
    _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_xor_si256(wlo, _mm256_set1_epi8(-128)), \
                                            alo),                                                                \
                        _mm256_xor_si256(whi, _mm256_set1_epi8(-128)), ahi)
#define DOT1(u, a) _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, a)
#define Q8_PREP(w) _mm256_xor_si256(w, _mm256_set1_epi8(-128))
#define DOTQ8P(wlo, whi, alo, ahi) _mm256_dpbusd_epi32(_mm256_dpbusd_epi32(_mm256_setzero_si256(), wlo, alo), whi, ahi)
#define Q8_BIAS 128
#define MM_A 4 /* 32 vector registers with AVX-512VL: four activations per pass */
#define KTABLE shoal_qkern_avx512
#include "model/quant_kern.inc"
#endif
