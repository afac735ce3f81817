/* quant_avx2.c — AVX2 + FMA + F16C kernels: activation quantisation, 4-bit/8-bit integer dots, float dots.
 * Compiled for the generic target; each function carries its own target attribute and is only reached
 * after shoal_isa_available(SHOAL_ISA_AVX2) said yes. */
#if defined(__x86_64__) && defined(__GNUC__)
#include "model/quant.h"
#include "model/quant_impl.h"

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* ---- activation quantisation: identical arithmetic to shoal_act_q8_scalar ---- */

/* One block of 32 floats -> 32 int8 in natural order (returned), its scale and its integer sum. */
AVX2 static inline __m256i quant_block(const float *xb, float *d, float *s, int32_t *sum)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8), v2 = _mm256_loadu_ps(xb + 16),
           v3 = _mm256_loadu_ps(xb + 24);
    __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_and_ps(v0, absmask), _mm256_and_ps(v1, absmask)),
                             _mm256_max_ps(_mm256_and_ps(v2, absmask), _mm256_and_ps(v3, absmask)));
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    float amax = _mm_cvtss_f32(m4);
    float id = amax != 0 ? 127.0f / amax : 0.0f;
    __m256 vid = _mm256_set1_ps(id);
#define RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
    /* max(v, -127) returns -127 for NaN like the scalar fmaxf; finite values are unchanged */
    const __m256 lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
#define QV(v) _mm256_cvtps_epi32(_mm256_round_ps(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v, vid), lo), hi), RNE))
    __m256i i0 = QV(v0), i1 = QV(v1), i2 = QV(v2), i3 = QV(v3);
#undef QV
#undef RNE
    __m256i t = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
    *sum = _mm_cvtsi128_si32(s4);
    *d = amax / 127.0f;
    *s = *d * (float)*sum;
    __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* Same arithmetic as shoal_act_q8_scalar; pairs of blocks are interleaved by 16-byte halves. */
AVX2 void shoal_act_q8_avx2(const float *x, void *act, int64_t n)
{
    int8_t *q = (int8_t *)act;
    const int64_t nb = n / QK;
    float *d = (float *)((char *)act + n), *s = d + nb;
    int32_t *sum = (int32_t *)(s + nb);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        __m256i v0 = quant_block(x + b * QK, &d[b], &s[b], &sum[b]);
        __m256i v1 = quant_block(x + (b + 1) * QK, &d[b + 1], &s[b + 1], &sum[b + 1]);
        _mm256_storeu_si256((__m256i *)(q + b * QK), _mm256_permute2x128_si256(v0, v1, 0x20));
        _mm256_storeu_si256((__m256i *)(q + b * QK + 32), _mm256_permute2x128_si256(v0, v1, 0x31));
    }
    if (b < nb) _mm256_storeu_si256((__m256i *)(q + b * QK), quant_block(x + b * QK, &d[b], &s[b], &sum[b]));
}

/* ---- dot kernels: AVX2 has no u8 x s8 -> i32 accumulate, so maddubs (to i16 pairs) then madd ---- */

/* Q4: each maddubs lane is at most 2 * 15 * 127 = 3810, so the two halves' i16 sums add without
 * saturation before one widening madd. */
#define DOTQ4(lo, hi, alo, ahi)                                                                           \
    _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo, alo), _mm256_maddubs_epi16(hi, ahi)), \
                      _mm256_set1_epi16(1))
/* Q8: s8 x s8 as |w| x sign(a, w); a lane is at most 2 * 128 * 127 = 32512, so each half widens alone. */
#define DOTQ8(wlo, whi, alo, ahi)                                                                          \
    _mm256_add_epi32(                                                                                      \
        _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(wlo, wlo), _mm256_sign_epi8(alo, wlo)),    \
                          _mm256_set1_epi16(1)),                                                           \
        _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(whi, whi), _mm256_sign_epi8(ahi, whi)),    \
                          _mm256_set1_epi16(1)))
#define DOT1(u, a) _mm256_madd_epi16(_mm256_maddubs_epi16(u, a), _mm256_set1_epi16(1))
#define Q8_PREP(w) (w)
#define DOTQ8P DOTQ8
#define Q8_BIAS 0
#define MM_A 2 /* 16 ymm registers: two activations per pass keep the unpacked weights in registers */
#define KT AVX2
#define KTABLE shoal_qkern_avx2
#include "model/quant_kern.inc"

/* ---- f16 rows (KV caches, F16 embeddings) ---- */

AVX2 void shoal_fp16_to_fp32_row_f16c(const uint16_t *x, float *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(x + i))));
    for (; i < n; i++) y[i] = h2f(x[i]);
}

AVX2 void shoal_fp32_to_fp16_row_f16c(const float *x, uint16_t *y, int64_t n)
{
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++) y[i] = shoal_fp32_to_fp16(x[i]);
}
#endif
