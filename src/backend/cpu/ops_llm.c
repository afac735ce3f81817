/* ops_llm.c — RMSNorm, RoPE, attention and SwiGLU in float32 (AVX2+FMA paths and portable C).
 *
 * Accuracy note: the vector exp used by softmax and SiLU is a degree-6 Taylor polynomial after
 * reduction to |r| <= ln2/2, relative error about 2e-7 (a few float ulps), far below the error
 * of the 8-bit activations the matmuls use. Sums are accumulated in float; the vector paths sum
 * in a different order than the scalar ones, so results differ in the last bits between ISAs. */
#include "backend/cpu/ops_llm.h"

#include <math.h>
#include <stdbool.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#define AVX2 __attribute__((target("avx2,fma")))
#endif

static bool use_avx2(void)
{
#ifdef HAVE_X86
    static int cached = -1; /* benign race: every thread computes the same value */
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    }
    return cached;
#else
    return false;
#endif
}

/* ---------------------------------------------------------------- AVX2 */
#ifdef HAVE_X86

AVX2 static inline float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* e^x: x = n ln2 + r, |r| <= ln2/2, e^r by Taylor to r^6, 2^n through the exponent bits.
 * x is clamped to [-87, 88] so 2^n stays a normal float. */
AVX2 static inline __m256 exp8(__m256 x)
{
    x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.0f)), _mm256_set1_ps(88.0f));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693145751953125f), x); /* ln2 split: exact hi part */
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(1.428606765330187e-06f), r);
    __m256 p = _mm256_set1_ps(1.0f / 720.0f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

AVX2 static float dot_avx2(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8)
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++)
        s += a[i] * b[i];
    return s;
}

AVX2 static void rmsnorm_avx2(float *out, const float *x, const float *w, int n, float eps)
{
    float ss = dot_avx2(x, x, n);
    __m256 sc = _mm256_set1_ps(1.0f / sqrtf(ss / (float)n + eps));
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), sc), _mm256_loadu_ps(w + i)));
    float s = _mm256_cvtss_f32(sc);
    for (; i < n; i++)
        out[i] = x[i] * s * w[i];
}

/* One query head over n positions, head_dim = NV * 8 (NV a compile-time constant after inlining):
 * q and the output accumulator live in registers, K and V rows stream through once, in order.
 * Writes the unnormalised output sum_p e^(s_p - m) v_p and (m, l = sum_p e^(s_p - m)). */
AVX2 __attribute__((always_inline)) static inline void head_regs(const float *q, const float *k, const float *v,
                                                                 size_t kv_stride, int n, float scale, float *scores,
                                                                 float *out, float *ml, const int NV)
{
    __m256 qv[8], o[8];
#pragma GCC unroll 8
    for (int j = 0; j < NV; j++)
        qv[j] = _mm256_loadu_ps(q + 8 * j);
    float mx = -INFINITY;
    for (int p = 0; p < n; p++) {
        const float *kp = k + (size_t)p * kv_stride;
        __m256 a0 = _mm256_mul_ps(qv[0], _mm256_loadu_ps(kp)), a1 = _mm256_setzero_ps();
#pragma GCC unroll 8
        for (int j = 1; j < NV; j++) {
            if (j & 1)
                a1 = _mm256_fmadd_ps(qv[j], _mm256_loadu_ps(kp + 8 * j), a1);
            else
                a0 = _mm256_fmadd_ps(qv[j], _mm256_loadu_ps(kp + 8 * j), a0);
        }
        float sc = hsum8(_mm256_add_ps(a0, a1)) * scale;
        scores[p] = sc;
        mx = sc > mx ? sc : mx;
    }
    /* subtracting the max keeps every exponent <= 0: no overflow, same softmax */
    __m256 vm = _mm256_set1_ps(mx), vsum = _mm256_setzero_ps();
    int p = 0;
    for (; p + 8 <= n; p += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(scores + p), vm));
        _mm256_storeu_ps(scores + p, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum8(vsum);
    for (; p < n; p++) {
        scores[p] = _mm256_cvtss_f32(exp8(_mm256_set1_ps(scores[p] - mx)));
        sum += scores[p];
    }
#pragma GCC unroll 8
    for (int j = 0; j < NV; j++)
        o[j] = _mm256_setzero_ps();
    for (p = 0; p < n; p++) {
        const float *vp = v + (size_t)p * kv_stride;
        __m256 a = _mm256_set1_ps(scores[p]);
#pragma GCC unroll 8
        for (int j = 0; j < NV; j++)
            o[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(vp + 8 * j), o[j]);
    }
#pragma GCC unroll 8
    for (int j = 0; j < NV; j++)
        _mm256_storeu_ps(out + 8 * j, o[j]);
    ml[0] = mx;
    ml[1] = sum;
}

AVX2 static void attention_partial_avx2(const float *q, const float *k, const float *v, size_t kv_stride, int n,
                                        int n_rep, int hd, float scale, float *scores, float *out, float *ml)
{
    for (int r = 0; r < n_rep; r++) {
        const float *qr = q + (size_t)r * hd;
        float *o = out + (size_t)r * hd, *mlr = ml + 2 * r;
        switch (hd) {
        case 64: head_regs(qr, k, v, kv_stride, n, scale, scores, o, mlr, 8); continue;
        case 32: head_regs(qr, k, v, kv_stride, n, scale, scores, o, mlr, 4); continue;
        case 16: head_regs(qr, k, v, kv_stride, n, scale, scores, o, mlr, 2); continue;
        default: break;
        }
        float mx = -INFINITY;
        for (int p = 0; p < n; p++) {
            scores[p] = dot_avx2(qr, k + (size_t)p * kv_stride, hd) * scale;
            mx = scores[p] > mx ? scores[p] : mx;
        }
        float sum = 0.0f;
        for (int p = 0; p < n; p++) {
            scores[p] = _mm256_cvtss_f32(exp8(_mm256_set1_ps(scores[p] - mx)));
            sum += scores[p];
        }
        for (int i = 0; i < hd; i++)
            o[i] = 0.0f;
        for (int p = 0; p < n; p++) {
            const float *vp = v + (size_t)p * kv_stride;
            __m256 a = _mm256_set1_ps(scores[p]);
            int i = 0;
            for (; i + 8 <= hd; i += 8)
                _mm256_storeu_ps(o + i, _mm256_fmadd_ps(a, _mm256_loadu_ps(vp + i), _mm256_loadu_ps(o + i)));
            for (; i < hd; i++)
                o[i] += scores[p] * vp[i];
        }
        mlr[0] = mx;
        mlr[1] = sum;
    }
}

AVX2 static void swiglu_avx2(float *g, const float *u, int n)
{
    int i = 0;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        __m256 z = _mm256_loadu_ps(g + i);
        __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), z));
        __m256 s = _mm256_div_ps(z, _mm256_add_ps(one, e));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(s, _mm256_loadu_ps(u + i)));
    }
    for (; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

AVX2 static void add_avx2(float *y, const float *x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
    for (; i < n; i++)
        y[i] += x[i];
}
#endif

/* ---------------------------------------------------------------- portable C and dispatch */

static float dot_c(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += a[i] * b[i];
    return s;
}

void shoal_op_rmsnorm(float *out, const float *x, const float *w, int n, float eps)
{
#ifdef HAVE_X86
    if (use_avx2()) {
        rmsnorm_avx2(out, x, w, n, eps);
        return;
    }
#endif
    float s = 1.0f / sqrtf(dot_c(x, x, n) / (float)n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * s * w[i];
}

void shoal_op_rope(float *x, int n_heads, int head_dim, int rope_dim, const float *cs)
{
    for (int h = 0; h < n_heads; h++) {
        float *xh = x + (size_t)h * head_dim;
        for (int i = 0; i < rope_dim / 2; i++) {
            float c = cs[2 * i], s = cs[2 * i + 1];
            float a = xh[2 * i], b = xh[2 * i + 1];
            xh[2 * i] = a * c - b * s;
            xh[2 * i + 1] = a * s + b * c;
        }
    }
}

void shoal_op_attention_partial(const float *q, const float *k, const float *v, size_t kv_stride, int n, int n_rep,
                                 int head_dim, float scale, float *scores, float *out, float *ml)
{
    if (n <= 0) {
        for (int r = 0; r < n_rep; r++) {
            ml[2 * r] = -INFINITY;
            ml[2 * r + 1] = 0.0f;
            for (int i = 0; i < head_dim; i++)
                out[(size_t)r * head_dim + i] = 0.0f;
        }
        return;
    }
#ifdef HAVE_X86
    if (use_avx2()) {
        attention_partial_avx2(q, k, v, kv_stride, n, n_rep, head_dim, scale, scores, out, ml);
        return;
    }
#endif
    for (int r = 0; r < n_rep; r++) {
        const float *qr = q + (size_t)r * head_dim;
        float *o = out + (size_t)r * head_dim;
        float mx = -INFINITY;
        for (int p = 0; p < n; p++) {
            scores[p] = dot_c(qr, k + (size_t)p * kv_stride, head_dim) * scale;
            mx = scores[p] > mx ? scores[p] : mx;
        }
        float sum = 0.0f;
        for (int p = 0; p < n; p++) {
            scores[p] = expf(scores[p] - mx);
            sum += scores[p];
        }
        for (int i = 0; i < head_dim; i++)
            o[i] = 0.0f;
        for (int p = 0; p < n; p++) {
            const float *vp = v + (size_t)p * kv_stride;
            for (int i = 0; i < head_dim; i++)
                o[i] += scores[p] * vp[i];
        }
        ml[2 * r] = mx;
        ml[2 * r + 1] = sum;
    }
}

void shoal_op_attention(const float *q, const float *k, const float *v, size_t kv_stride, int n_kv, int n_rep,
                        int head_dim, float scale, float *scores, float *out)
{
    float ml[2 * 64];
    for (int r0 = 0; r0 < n_rep; r0 += 64) {
        int nr = n_rep - r0 < 64 ? n_rep - r0 : 64;
        shoal_op_attention_partial(q + (size_t)r0 * head_dim, k, v, kv_stride, n_kv, nr, head_dim, scale, scores,
                                   out + (size_t)r0 * head_dim, ml);
        for (int r = 0; r < nr; r++) {
            float inv = ml[2 * r + 1] > 0.0f ? 1.0f / ml[2 * r + 1] : 0.0f;
            for (int i = 0; i < head_dim; i++)
                out[(size_t)(r0 + r) * head_dim + i] *= inv;
        }
    }
}

void shoal_op_swiglu(float *g, const float *u, int n)
{
#ifdef HAVE_X86
    if (use_avx2()) {
        swiglu_avx2(g, u, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void shoal_op_add(float *y, const float *x, int n)
{
#ifdef HAVE_X86
    if (use_avx2()) {
        add_avx2(y, x, n);
        return;
    }
#endif
    for (int i = 0; i < n; i++)
        y[i] += x[i];
}
