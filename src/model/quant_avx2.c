/* quant_avx2.c — AVX2 + FMA + F16C kernels: activation quantisation, 4-bit/8-bit integer dots, float dots.
 * Compiled for the generic target; each function carries its own target attribute and is only reached
 * after shoal_isa_available(SHOAL_ISA_AVX2) said yes. */
#if defined(__x86_64__) && defined(__GNUC__)
#include "model/quant.h"
#include "model/quant_impl.h"

#include <immintrin.h>
#include <string.h>

#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

AVX2 static inline float h2f(uint16_t h) { return _cvtsh_ss(h); }

/* 16 packed nibble pairs -> 32 bytes: low nibbles in the low lane (elements 0..15), high in the high lane. */
AVX2 static inline __m256i unpack_nibbles(const uint8_t *qs)
{
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    b = _mm256_srlv_epi32(b, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4));
    return _mm256_and_si256(b, _mm256_set1_epi8(15));
}

/* Sum of u8 x s8 products of 32 elements as 8 i32 lanes; no saturation: |15 * 127 * 2| < 2^15. */
AVX2 static inline __m256i dot_u8s8(__m256i u, __m256i s)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
}

/* ---- activation quantisation: identical arithmetic to shoal_act_q8_scalar ---- */

AVX2 void shoal_act_q8_avx2(const float *x, void *act, int64_t n)
{
    int8_t *q = (int8_t *)act;
    float *d = (float *)((char *)act + n), *s = d + n / QK;
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
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
        const int r = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
        __m256i i0 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v0, vid), r));
        __m256i i1 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v1, vid), r));
        __m256i i2 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v2, vid), r));
        __m256i i3 = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v3, vid), r));
        __m256i sum = _mm256_add_epi32(_mm256_add_epi32(i0, i1), _mm256_add_epi32(i2, i3));
        __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4e));
        s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xb1));
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)(q + b * QK), p);
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)_mm_cvtsi128_si32(s4);
    }
}

/* ---- Q4_0: x = d * (q - 8); dot = dw * (da * sum(q * a) - 8 * sa) ---- */

AVX2 static float dot1_q4_0(const void *row, const void *act, int64_t n)
{
    const q4_0_block *w = row;
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n), *s = act_s(act, n);
    __m256 acc = _mm256_setzero_ps();
    float off = 0;
    for (int64_t b = 0; b < n / QK; b++) {
        __m256i p = dot_u8s8(unpack_nibbles(w[b].qs), _mm256_loadu_si256((const __m256i *)(q + b * QK)));
        float dw = h2f(w[b].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * d[b]), acc);
        off += dw * s[b];
    }
    return hsum8(acc) - 8.0f * off;
}

AVX2 static void dot4_q4_0(const void *w, size_t stride, const void *act, int64_t n, float *y)
{
    const q4_0_block *w0 = w, *w1 = (const void *)((const char *)w + stride),
                     *w2 = (const void *)((const char *)w + 2 * stride), *w3 = (const void *)((const char *)w + 3 * stride);
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n), *s = act_s(act, n);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m128 off = _mm_setzero_ps();
    for (int64_t b = 0; b < n / QK; b++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(q + b * QK));
        __m128 dw = _mm_cvtph_ps(_mm_setr_epi16((short)w0[b].d, (short)w1[b].d, (short)w2[b].d, (short)w3[b].d, 0, 0,
                                                0, 0));
        __m128 sc = _mm_mul_ps(dw, _mm_set1_ps(d[b]));
        off = _mm_fmadd_ps(dw, _mm_set1_ps(s[b]), off);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w0[b].qs), a)),
                             _mm256_broadcastss_ps(sc), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w1[b].qs), a)),
                             _mm256_broadcastss_ps(_mm_shuffle_ps(sc, sc, 0x55)), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w2[b].qs), a)),
                             _mm256_broadcastss_ps(_mm_shuffle_ps(sc, sc, 0xaa)), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w3[b].qs), a)),
                             _mm256_broadcastss_ps(_mm_shuffle_ps(sc, sc, 0xff)), a3);
    }
    float o[4];
    _mm_storeu_ps(o, off);
    y[0] = hsum8(a0) - 8.0f * o[0];
    y[1] = hsum8(a1) - 8.0f * o[1];
    y[2] = hsum8(a2) - 8.0f * o[2];
    y[3] = hsum8(a3) - 8.0f * o[3];
}

/* ---- Q4_1: x = d * q + m; dot = dw * da * sum(q * a) + mw * sa ---- */

AVX2 static float dot1_q4_1(const void *row, const void *act, int64_t n)
{
    const q4_1_block *w = row;
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n), *s = act_s(act, n);
    __m256 acc = _mm256_setzero_ps();
    float off = 0;
    for (int64_t b = 0; b < n / QK; b++) {
        __m256i p = dot_u8s8(unpack_nibbles(w[b].qs), _mm256_loadu_si256((const __m256i *)(q + b * QK)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w[b].d) * d[b]), acc);
        off += h2f(w[b].m) * s[b];
    }
    return hsum8(acc) + off;
}

AVX2 static void dot4_q4_1(const void *w, size_t stride, const void *act, int64_t n, float *y)
{
    const q4_1_block *w0 = w, *w1 = (const void *)((const char *)w + stride),
                     *w2 = (const void *)((const char *)w + 2 * stride), *w3 = (const void *)((const char *)w + 3 * stride);
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n), *s = act_s(act, n);
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    __m128 off = _mm_setzero_ps();
    for (int64_t b = 0; b < n / QK; b++) {
        __m256i a = _mm256_loadu_si256((const __m256i *)(q + b * QK));
        /* d and m of the four rows' blocks, converted together: lanes d0 m0 d1 m1 | d2 m2 d3 m3 */
        uint32_t dm[4];
        memcpy(&dm[0], &w0[b], 4);
        memcpy(&dm[1], &w1[b], 4);
        memcpy(&dm[2], &w2[b], 4);
        memcpy(&dm[3], &w3[b], 4);
        __m256 f = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)dm));
        __m256 dsel = _mm256_permutevar8x32_ps(f, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
        __m128 dw = _mm256_castps256_ps128(dsel), mw = _mm256_extractf128_ps(dsel, 1);
        __m128 sc = _mm_mul_ps(dw, _mm_set1_ps(d[b]));
        off = _mm_fmadd_ps(mw, _mm_set1_ps(s[b]), off);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w0[b].qs), a)),
                             _mm256_broadcastss_ps(sc), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w1[b].qs), a)),
                             _mm256_broadcastss_ps(_mm_shuffle_ps(sc, sc, 0x55)), a1);
        a2 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w2[b].qs), a)),
                             _mm256_broadcastss_ps(_mm_shuffle_ps(sc, sc, 0xaa)), a2);
        a3 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot_u8s8(unpack_nibbles(w3[b].qs), a)),
                             _mm256_broadcastss_ps(_mm_shuffle_ps(sc, sc, 0xff)), a3);
    }
    float o[4];
    _mm_storeu_ps(o, off);
    y[0] = hsum8(a0) + o[0];
    y[1] = hsum8(a1) + o[1];
    y[2] = hsum8(a2) + o[2];
    y[3] = hsum8(a3) + o[3];
}

/* ---- Q8_0: signed x signed via |w| * sign(a, w) ---- */

AVX2 static inline __m256i dot_s8s8(__m256i w, __m256i a)
{
    return dot_u8s8(_mm256_sign_epi8(w, w), _mm256_sign_epi8(a, w));
}

AVX2 static float dot1_q8_0(const void *row, const void *act, int64_t n)
{
    const q8_0_block *w = row;
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / QK; b++) {
        __m256i p = dot_s8s8(_mm256_loadu_si256((const __m256i *)w[b].qs),
                             _mm256_loadu_si256((const __m256i *)(q + b * QK)));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(h2f(w[b].d) * d[b]), acc);
    }
    return hsum8(acc);
}

AVX2 static void dot4_q8_0(const void *w, size_t stride, const void *act, int64_t n, float *y)
{
    for (int r = 0; r < 4; r++) y[r] = dot1_q8_0((const char *)w + r * stride, act, n);
}

/* ---- float weights ---- */

AVX2 static float dot1_f32(const void *row, const void *act, int64_t n)
{
    const float *w = row, *x = act;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float acc = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) acc += w[i] * x[i];
    return acc;
}

AVX2 static float dot1_f16(const void *row, const void *act, int64_t n)
{
    const uint16_t *w = row;
    const float *x = act;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i))), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(w + i + 8))), _mm256_loadu_ps(x + i + 8),
                             a1);
    }
    float acc = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) acc += h2f(w[i]) * x[i];
    return acc;
}

AVX2 static inline __m256 bf16x8(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

AVX2 static float dot1_bf16(const void *row, const void *act, int64_t n)
{
    const uint16_t *w = row;
    const float *x = act;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a0 = _mm256_fmadd_ps(bf16x8(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(bf16x8(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
    }
    float acc = hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) acc += shoal_bf16_to_fp32(w[i]) * x[i];
    return acc;
}

#define ROWS4(name, dot1)                                                                      \
    AVX2 static void name(const void *w, size_t stride, const void *act, int64_t n, float *y) \
    {                                                                                          \
        for (int r = 0; r < 4; r++) y[r] = dot1((const char *)w + r * stride, act, n);        \
    }
ROWS4(dot4_f32, dot1_f32)
ROWS4(dot4_f16, dot1_f16)
ROWS4(dot4_bf16, dot1_bf16)

const qkern *shoal_qkern_avx2(uint32_t type)
{
    static const qkern q4_0 = {dot1_q4_0, dot4_q4_0}, q4_1 = {dot1_q4_1, dot4_q4_1}, q8_0 = {dot1_q8_0, dot4_q8_0},
                       f32 = {dot1_f32, dot4_f32}, f16 = {dot1_f16, dot4_f16}, bf16 = {dot1_bf16, dot4_bf16};
    switch (type) {
    case SHOAL_GGML_Q4_0: return &q4_0;
    case SHOAL_GGML_Q4_1: return &q4_1;
    case SHOAL_GGML_Q8_0: return &q8_0;
    case SHOAL_GGML_F32: return &f32;
    case SHOAL_GGML_F16: return &f16;
    case SHOAL_GGML_BF16: return &bf16;
    default: return NULL;
    }
}

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
