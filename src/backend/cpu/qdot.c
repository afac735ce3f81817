/* qdot.c — AVX-512 VNNI kernels for quantised weight rows x one- or two-plane 8-bit activations.
 *
 * Per 32-element block and row: unpack the weight bytes to 32 unsigned 8-bit values, VNNI dot with
 * plane 1 (8 int32 lanes), shift left 8, VNNI-accumulate plane 2, convert once, FMA with the
 * block's scale (weight scale * activation scale). Four rows share each activation load. Offsets
 * (Q4_1's m, Q4_0's -8 d) multiply the activation block sums and are accumulated on the side.
 * Signed Q8_0 weights use |w| x sign(a, w), which keeps the u8 x s8 form VNNI wants.
 * Integer range: a plane-1 lane sums 4 products of at most 128 * 127, so (p1 << 8) + p2 stays
 * below 2^24 and converts to float exactly. */
#include "backend/cpu/qdot.h"

#include <math.h>
#include <string.h>

#include "model/quant.h"

#define QB 32

static inline const int8_t *qa_q1(const void *a) { return (const int8_t *)a; }
static inline const int8_t *qa_q2(const void *a, int n) { return (const int8_t *)a + n; }
static inline const float *qa_d(const void *a, int n) { return (const float *)((const char *)a + 2 * (size_t)n); }
static inline const float *qa_s(const void *a, int n) { return qa_d(a, n) + n / QB; }

size_t shoal_qact_size(int n) { return 2 * (size_t)n + 8 * (size_t)(n / QB); }

bool shoal_qdot_type_supported(uint32_t type)
{
    return type == SHOAL_GGML_Q4_0 || type == SHOAL_GGML_Q4_1 || type == SHOAL_GGML_Q8_0;
}

bool shoal_qdot_available(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
    static int cached = -1; /* benign race: every thread computes the same value */
    if (cached < 0) {
        __builtin_cpu_init();
        /* F16C is not tested (clang 14 cannot): every AVX-512 CPU has it */
        cached = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
                 __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return false;
#endif
}

#if defined(__x86_64__) && defined(__GNUC__)
static void qact_quantize_avx512(const float *x, int n, int planes, void *act);
#endif

/* Plain C: the arithmetic the kernels assume; the AVX-512 version does the same float operations
 * (round to nearest even, an exact residual, an exact scaling by 256), so its bytes are identical. */
void shoal_qact_quantize(const float *x, int n, int planes, void *act)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (shoal_qdot_available()) {
        qact_quantize_avx512(x, n, planes, act);
        return;
    }
#endif
    shoal_qact_quantize_scalar(x, n, planes, act);
}

void shoal_qact_quantize_scalar(const float *x, int n, int planes, void *act)
{
    int8_t *q1 = (int8_t *)act, *q2 = q1 + n;
    float *d = (float *)(q2 + n), *s = d + n / QB;
    for (int b = 0; b < n / QB; b++) {
        const float *xb = x + b * QB;
        float amax = 0.0f;
        bool finite = true;
        for (int j = 0; j < QB; j++) {
            finite &= fabsf(xb[j]) < INFINITY; /* false for NaN too */
            amax = fabsf(xb[j]) > amax ? fabsf(xb[j]) : amax;
        }
        if (!finite) {
            /* A model with non-finite weights: keep the NaN visible in the result, never convert
             * a NaN to an integer (undefined in C). */
            memset(q1 + b * QB, 0, QB);
            memset(q2 + b * QB, 0, QB);
            d[b] = s[b] = NAN;
            continue;
        }
        float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        int sum = 0;
        for (int j = 0; j < QB; j++) {
            float v = xb[j] * id;
            float r = nearbyintf(v);
            int a = (int)r, c = 0;
            if (planes == 2) {
                c = (int)nearbyintf((v - r) * 256.0f); /* |v - r| <= 0.5 */
                c = c > 127 ? 127 : c < -127 ? -127 : c;
            }
            q1[b * QB + j] = (int8_t)a;
            q2[b * QB + j] = (int8_t)c;
            sum += a * 256 + c;
        }
        d[b] = amax / 127.0f / 256.0f;
        s[b] = d[b] * (float)sum;
    }
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define K512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c")))

K512 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline uint32_t ld32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline uint16_t ld16(const char *p)
{
    uint16_t v;
    memcpy(&v, p, 2);
    return v;
}

/* The f16 at p, p + stride, p + 2 stride, p + 3 stride in the low four 16-bit lanes. */
K512 static inline __m128i f16x4(const char *p, size_t stride)
{
    return _mm_setr_epi16((short)ld16(p), (short)ld16(p + stride), (short)ld16(p + 2 * stride),
                          (short)ld16(p + 3 * stride), 0, 0, 0, 0);
}

#ifndef PF_GROUPS
#define PF_GROUPS 2
#endif
/* Decode streams every weight from DRAM once; the hardware prefetcher alone leaves the kernel
 * waiting (7 GB/s of 22 measured on one core), so each row also prefetches the bytes it will
 * read PF_GROUPS four-row groups later. */
K512 static inline void prefetch4(const char *p, size_t stride)
{
    const char *f = p + (size_t)PF_GROUPS * 4 * stride;
    _mm_prefetch(f, _MM_HINT_T0);
    _mm_prefetch(f + stride, _MM_HINT_T0);
    _mm_prefetch(f + 2 * stride, _MM_HINT_T0);
    _mm_prefetch(f + 3 * stride, _MM_HINT_T0);
}

/* 16 bytes of nibbles -> 32 u8: low nibbles (elements 0..15) then high nibbles (16..31). */
K512 static inline __m256i unpack_nib(const uint8_t *qs)
{
    __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs));
    b = _mm256_srlv_epi64(b, _mm256_setr_epi64x(0, 0, 4, 4));
    return _mm256_and_si256(b, _mm256_set1_epi8(15));
}

K512 static void qact_quantize_avx512(const float *x, int n, int planes, void *act)
{
    int8_t *q1 = (int8_t *)act, *q2 = q1 + n;
    float *d = (float *)(q2 + n), *s = d + n / QB;
    /* An immediate operand: a macro, not a const variable, so -O0 builds compile too. */
#define QDOT_RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
    for (int b = 0; b < n / QB; b++) {
        __m512 x0 = _mm512_loadu_ps(x + b * QB), x1 = _mm512_loadu_ps(x + b * QB + 16);
        const __m512 inf = _mm512_set1_ps(INFINITY);
        if ((__mmask16)(_mm512_cmp_ps_mask(_mm512_abs_ps(x0), inf, _CMP_LT_OQ) &
                        _mm512_cmp_ps_mask(_mm512_abs_ps(x1), inf, _CMP_LT_OQ)) != 0xffff) {
            memset(q1 + b * QB, 0, QB); /* as the portable version: NaN scale, zero values */
            memset(q2 + b * QB, 0, QB);
            d[b] = s[b] = NAN;
            continue;
        }
        float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(x0), _mm512_abs_ps(x1)));
        __m512 id = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
        __m512 v0 = _mm512_mul_ps(x0, id), v1 = _mm512_mul_ps(x1, id);
        __m512 r0 = _mm512_roundscale_ps(v0, QDOT_RN), r1 = _mm512_roundscale_ps(v1, QDOT_RN);
        __m512i a0 = _mm512_cvtps_epi32(r0), a1 = _mm512_cvtps_epi32(r1);
        __m512i c0 = _mm512_setzero_si512(), c1 = c0;
        if (planes == 2) {
            const __m512 k256 = _mm512_set1_ps(256.0f);
            const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
            c0 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(v0, r0), k256), QDOT_RN));
            c1 = _mm512_cvtps_epi32(_mm512_roundscale_ps(_mm512_mul_ps(_mm512_sub_ps(v1, r1), k256), QDOT_RN));
            c0 = _mm512_min_epi32(_mm512_max_epi32(c0, lo), hi);
            c1 = _mm512_min_epi32(_mm512_max_epi32(c1, lo), hi);
        }
        _mm_storeu_si128((__m128i *)(q1 + b * QB), _mm512_cvtepi32_epi8(a0));
        _mm_storeu_si128((__m128i *)(q1 + b * QB + 16), _mm512_cvtepi32_epi8(a1));
        _mm_storeu_si128((__m128i *)(q2 + b * QB), _mm512_cvtepi32_epi8(c0));
        _mm_storeu_si128((__m128i *)(q2 + b * QB + 16), _mm512_cvtepi32_epi8(c1));
        __m512i sum = _mm512_add_epi32(_mm512_add_epi32(_mm512_slli_epi32(a0, 8), c0),
                                       _mm512_add_epi32(_mm512_slli_epi32(a1, 8), c1));
        d[b] = amax / 127.0f / 256.0f;
        s[b] = d[b] * (float)_mm512_reduce_add_epi32(sum);
    }
}

/* (w . a1) << 8 + w . a2 in 8 int32 lanes (w unsigned, a signed). */
K512 static inline __m256i dot2(__m256i w, __m256i a1, __m256i a2, int planes)
{
    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), w, a1);
    if (planes == 2)
        return _mm256_dpbusd_epi32(_mm256_slli_epi32(p, 8), w, a2);
    return _mm256_slli_epi32(p, 8);
}

K512 static inline __m256 bcast(__m128 v, int lane)
{
    return _mm256_permutexvar_ps(_mm256_set1_epi32(lane), _mm256_castps128_ps256(v));
}

/* Four rows of Q4_1 ({f16 d, f16 m, u8 qs[16]}, 20 bytes per block). */
K512 static inline void q4_1_x4(const char *w, size_t stride, const void *act, int n, int planes, float *y)
{
    const int nb = n / QB;
    const int8_t *q1 = qa_q1(act), *q2 = qa_q2(act, n);
    const float *d = qa_d(act, n), *s = qa_s(act, n);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0, off = acc0;
    const __m256i perm = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int b = 0; b < nb; b++) {
        const char *p0 = w + (size_t)b * 20;
        prefetch4(p0, stride);
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(q1 + b * QB));
        __m256i a2 = planes == 2 ? _mm256_loadu_si256((const __m256i *)(q2 + b * QB)) : a1;
        /* lanes d0 m0 d1 m1 d2 m2 d3 m3 -> d0 d1 d2 d3 | m0 m1 m2 m3 (built in registers: a
         * 16-byte load of four 4-byte stores would miss store forwarding) */
        __m128i dm = _mm_setr_epi32((int)ld32(p0), (int)ld32(p0 + stride), (int)ld32(p0 + 2 * stride),
                                    (int)ld32(p0 + 3 * stride));
        __m256 f = _mm256_permutexvar_ps(perm, _mm256_cvtph_ps(dm));
        __m128 dw = _mm256_castps256_ps128(f);
        __m128 sc = _mm_mul_ps(dw, _mm_set1_ps(d[b]));
        off = _mm256_fmadd_ps(f, _mm256_set1_ps(s[b]), off); /* upper half: m_r * s_b */
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + 4), a1, a2, planes)),
                               bcast(sc, 0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + stride + 4), a1, a2, planes)),
                               bcast(sc, 1), acc1);
        acc2 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + 2 * stride + 4), a1, a2, planes)), bcast(sc, 2),
            acc2);
        acc3 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + 3 * stride + 4), a1, a2, planes)), bcast(sc, 3),
            acc3);
    }
    float o[8];
    _mm256_storeu_ps(o, off);
    y[0] = hsum8(acc0) + o[4];
    y[1] = hsum8(acc1) + o[5];
    y[2] = hsum8(acc2) + o[6];
    y[3] = hsum8(acc3) + o[7];
}

/* Four rows of Q4_0 ({f16 d, u8 qs[16]}, 18 bytes): x = d (q - 8), so the offset is -8 d s. */
K512 static inline void q4_0_x4(const char *w, size_t stride, const void *act, int n, int planes, float *y)
{
    const int nb = n / QB;
    const int8_t *q1 = qa_q1(act), *q2 = qa_q2(act, n);
    const float *d = qa_d(act, n), *s = qa_s(act, n);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    __m128 off = _mm_setzero_ps();
    for (int b = 0; b < nb; b++) {
        const char *p0 = w + (size_t)b * 18;
        prefetch4(p0, stride);
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(q1 + b * QB));
        __m256i a2 = planes == 2 ? _mm256_loadu_si256((const __m256i *)(q2 + b * QB)) : a1;
        __m128 dw = _mm_cvtph_ps(f16x4(p0, stride));
        __m128 sc = _mm_mul_ps(dw, _mm_set1_ps(d[b]));
        off = _mm_fmadd_ps(dw, _mm_set1_ps(-8.0f * s[b]), off);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + 2), a1, a2, planes)),
                               bcast(sc, 0), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + stride + 2), a1, a2, planes)),
                               bcast(sc, 1), acc1);
        acc2 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + 2 * stride + 2), a1, a2, planes)), bcast(sc, 2),
            acc2);
        acc3 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2(unpack_nib((const uint8_t *)p0 + 3 * stride + 2), a1, a2, planes)), bcast(sc, 3),
            acc3);
    }
    float o[4];
    _mm_storeu_ps(o, off);
    y[0] = hsum8(acc0) + o[0];
    y[1] = hsum8(acc1) + o[1];
    y[2] = hsum8(acc2) + o[2];
    y[3] = hsum8(acc3) + o[3];
}

/* Signed weights: |w| . sign(a, w) == w . a, in VNNI's unsigned x signed form. */
K512 static inline __m256i dot2_s8(__m256i w, __m256i a1, __m256i a2, int planes)
{
    __m256i aw = _mm256_sign_epi8(w, w);
    __m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), aw, _mm256_sign_epi8(a1, w));
    if (planes == 2)
        return _mm256_dpbusd_epi32(_mm256_slli_epi32(p, 8), aw, _mm256_sign_epi8(a2, w));
    return _mm256_slli_epi32(p, 8);
}

/* Four rows of Q8_0 ({f16 d, i8 qs[32]}, 34 bytes). */
K512 static inline void q8_0_x4(const char *w, size_t stride, const void *act, int n, int planes, float *y)
{
    const int nb = n / QB;
    const int8_t *q1 = qa_q1(act), *q2 = qa_q2(act, n);
    const float *d = qa_d(act, n);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    for (int b = 0; b < nb; b++) {
        const char *p0 = w + (size_t)b * 34;
        prefetch4(p0, stride);
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(q1 + b * QB));
        __m256i a2 = planes == 2 ? _mm256_loadu_si256((const __m256i *)(q2 + b * QB)) : a1;
        __m128 sc = _mm_mul_ps(_mm_cvtph_ps(f16x4(p0, stride)), _mm_set1_ps(d[b]));
        acc0 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2_s8(_mm256_loadu_si256((const __m256i *)(p0 + 2)), a1, a2, planes)), bcast(sc, 0),
            acc0);
        acc1 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2_s8(_mm256_loadu_si256((const __m256i *)(p0 + stride + 2)), a1, a2, planes)),
            bcast(sc, 1), acc1);
        acc2 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2_s8(_mm256_loadu_si256((const __m256i *)(p0 + 2 * stride + 2)), a1, a2, planes)),
            bcast(sc, 2), acc2);
        acc3 = _mm256_fmadd_ps(
            _mm256_cvtepi32_ps(dot2_s8(_mm256_loadu_si256((const __m256i *)(p0 + 3 * stride + 2)), a1, a2, planes)),
            bcast(sc, 3), acc3);
    }
    y[0] = hsum8(acc0);
    y[1] = hsum8(acc1);
    y[2] = hsum8(acc2);
    y[3] = hsum8(acc3);
}


/* One row at a time, for decode (one activation): the weights stream from DRAM strictly in
 * order, which this machine's prefetchers follow at ~10 GB/s per core against ~6.5 GB/s for the
 * four-row interleave (measured over 48 MB of FFN weights). Two blocks per iteration keep two
 * independent accumulators in flight. */
#define X1_BODY(BLOCK_BYTES, QS_OFF, UNPACK, DOT, HAS_M, M_MUL)                                                      \
    const int nb = n / QB;                                                                                             \
    const int8_t *q1 = qa_q1(act), *q2 = qa_q2(act, n);                                                                \
    const float *d = qa_d(act, n), *s = qa_s(act, n);                                                                  \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                                    \
    float off = 0.0f;                                                                                                  \
    int b = 0;                                                                                                         \
    for (; b + 2 <= nb; b += 2) {                                                                                      \
        const char *p = w + (size_t)b * BLOCK_BYTES;                                                                   \
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(q1 + b * QB));                                               \
        __m256i c1 = _mm256_loadu_si256((const __m256i *)(q1 + b * QB + QB));                                          \
        __m256i a2 = planes == 2 ? _mm256_loadu_si256((const __m256i *)(q2 + b * QB)) : a1;                            \
        __m256i c2 = planes == 2 ? _mm256_loadu_si256((const __m256i *)(q2 + b * QB + QB)) : c1;                       \
        __m256i p0 = DOT(UNPACK(p + QS_OFF), a1, a2, planes);                                                          \
        __m256i p1 = DOT(UNPACK(p + BLOCK_BYTES + QS_OFF), c1, c2, planes);                                            \
        float d0 = _cvtsh_ss(ld16(p)), d1 = _cvtsh_ss(ld16(p + BLOCK_BYTES));                                          \
        if (HAS_M)                                                                                                     \
            off += M_MUL(p) * s[b] + M_MUL(p + BLOCK_BYTES) * s[b + 1];                                               \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(d0 * d[b]), acc0);                             \
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(d1 * d[b + 1]), acc1);                         \
    }                                                                                                                  \
    for (; b < nb; b++) {                                                                                              \
        const char *p = w + (size_t)b * BLOCK_BYTES;                                                                   \
        __m256i a1 = _mm256_loadu_si256((const __m256i *)(q1 + b * QB));                                               \
        __m256i a2 = planes == 2 ? _mm256_loadu_si256((const __m256i *)(q2 + b * QB)) : a1;                            \
        __m256i p0 = DOT(UNPACK(p + QS_OFF), a1, a2, planes);                                                          \
        if (HAS_M)                                                                                                     \
            off += M_MUL(p) * s[b];                                                                                    \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(_cvtsh_ss(ld16(p)) * d[b]), acc0);              \
    }                                                                                                                  \
    return hsum8(_mm256_add_ps(acc0, acc1)) + off;

K512 static inline __m256i load_s8(const char *p) { return _mm256_loadu_si256((const __m256i *)p); }
K512 static inline __m256i unpack_nib_c(const char *p) { return unpack_nib((const uint8_t *)p); }
K512 static inline float m_q4_1(const char *p) { return _cvtsh_ss(ld16(p + 2)); }
K512 static inline float m_q4_0(const char *p) { return -8.0f * _cvtsh_ss(ld16(p)); }

K512 static inline float q4_1_x1(const char *w, const void *act, int n, int planes)
{
    X1_BODY(20, 4, unpack_nib_c, dot2, 1, m_q4_1)
}
K512 static inline float q4_0_x1(const char *w, const void *act, int n, int planes)
{
    X1_BODY(18, 2, unpack_nib_c, dot2, 1, m_q4_0)
}
K512 static inline float q8_0_x1(const char *w, const void *act, int n, int planes)
{
    X1_BODY(34, 2, load_s8, dot2_s8, 0, m_q4_0)
}
#undef X1_BODY

typedef float (*x1_fn)(const char *, const void *, int, int);

/* One row, for row counts that are not a multiple of 4: the 4-row kernel on a row repeated. */
typedef void (*x4_fn)(const char *, size_t, const void *, int, int, float *);

K512 static void run_rows(x4_fn k, const char *w, size_t stride, int nrows, const void *act, size_t act_stride,
                          int nact, int n, int planes, float *y, size_t ldy)
{
    int r = 0;
    for (; r + 4 <= nrows; r += 4)
        for (int t = 0; t < nact; t++) {
            float o[4];
            k(w + (size_t)r * stride, stride, (const char *)act + (size_t)t * act_stride, n, planes, o);
            memcpy(y + (size_t)t * ldy + r, o, sizeof o);
        }
    for (; r < nrows; r++)
        for (int t = 0; t < nact; t++) {
            float o[4];
            k(w + (size_t)r * stride, 0, (const char *)act + (size_t)t * act_stride, n, planes, o);
            y[(size_t)t * ldy + r] = o[0];
        }
}

/* Separate instantiations for 1 and 2 planes so the plane test is resolved at compile time. */
#define INST(name, kern, pl)                                                                                           \
    K512 static void name(const char *w, size_t stride, const void *act, int n, int planes, float *y)                 \
    {                                                                                                                  \
        (void)planes;                                                                                                  \
        kern(w, stride, act, n, pl, y);                                                                                \
    }
INST(q4_1_p1, q4_1_x4, 1)
INST(q4_1_p2, q4_1_x4, 2)
INST(q4_0_p1, q4_0_x4, 1)
INST(q4_0_p2, q4_0_x4, 2)
INST(q8_0_p1, q8_0_x4, 1)
INST(q8_0_p2, q8_0_x4, 2)
#undef INST
#define INST1(name, kern, pl)                                                                                          \
    K512 static float name(const char *w, const void *act, int n, int planes)                                         \
    {                                                                                                                  \
        (void)planes;                                                                                                  \
        return kern(w, act, n, pl);                                                                                    \
    }
INST1(q4_1_1p1, q4_1_x1, 1)
INST1(q4_1_1p2, q4_1_x1, 2)
INST1(q4_0_1p1, q4_0_x1, 1)
INST1(q4_0_1p2, q4_0_x1, 2)
INST1(q8_0_1p1, q8_0_x1, 1)
INST1(q8_0_1p2, q8_0_x1, 2)
#undef INST1

void shoal_qdot_matmul(uint32_t type, const void *w, size_t stride, int nrows, const void *act, size_t act_stride,
                       int nact, int n, int planes, float *y, size_t ldy)
{
    x4_fn k = NULL;
    x1_fn k1 = NULL;
    switch (type) {
    case SHOAL_GGML_Q4_1: k = planes == 2 ? q4_1_p2 : q4_1_p1, k1 = planes == 2 ? q4_1_1p2 : q4_1_1p1; break;
    case SHOAL_GGML_Q4_0: k = planes == 2 ? q4_0_p2 : q4_0_p1, k1 = planes == 2 ? q4_0_1p2 : q4_0_1p1; break;
    case SHOAL_GGML_Q8_0: k = planes == 2 ? q8_0_p2 : q8_0_p1, k1 = planes == 2 ? q8_0_1p2 : q8_0_1p1; break;
    default: return;
    }
    if (nact == 1) {
        for (int r = 0; r < nrows; r++)
            y[r] = k1((const char *)w + (size_t)r * stride, act, n, planes);
        return;
    }
    run_rows(k, w, stride, nrows, act, act_stride, nact, n, planes, y, ldy);
}
#else
void shoal_qdot_matmul(uint32_t type, const void *w, size_t stride, int nrows, const void *act, size_t act_stride,
                       int nact, int n, int planes, float *y, size_t ldy)
{
    (void)type, (void)w, (void)stride, (void)nrows, (void)act, (void)act_stride, (void)nact, (void)n, (void)planes;
    (void)y, (void)ldy;
}
#endif
