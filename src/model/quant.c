/* quant.c — ggml type table, half-precision conversions, (de)quantisation, portable kernels, ISA dispatch. */
#include "model/quant.h"

#include "core/error.h"
#include "model/quant_impl.h"

#include <math.h>
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
#include <stdint.h>
#include <string.h>

/* ---- type table (block sizes and byte sizes are format facts; ids ggml retired are left out) ---- */

static const shoal_qtype_traits_t k_traits[SHOAL_GGML_TYPE_COUNT] = {
    [SHOAL_GGML_F32] = {"F32", 1, 4, true, false},
    [SHOAL_GGML_F16] = {"F16", 1, 2, true, false},
    [SHOAL_GGML_Q4_0] = {"Q4_0", 32, 18, true, true},
    [SHOAL_GGML_Q4_1] = {"Q4_1", 32, 20, true, true},
    [SHOAL_GGML_Q5_0] = {"Q5_0", 32, 22, false, false},
    [SHOAL_GGML_Q5_1] = {"Q5_1", 32, 24, false, false},
    [SHOAL_GGML_Q8_0] = {"Q8_0", 32, 34, true, true},
    [SHOAL_GGML_Q8_1] = {"Q8_1", 32, 36, false, false},
    [SHOAL_GGML_Q2_K] = {"Q2_K", 256, 84, false, false},
    [SHOAL_GGML_Q3_K] = {"Q3_K", 256, 110, false, false},
    [SHOAL_GGML_Q4_K] = {"Q4_K", 256, 144, false, false},
    [SHOAL_GGML_Q5_K] = {"Q5_K", 256, 176, false, false},
    [SHOAL_GGML_Q6_K] = {"Q6_K", 256, 210, false, false},
    [SHOAL_GGML_Q8_K] = {"Q8_K", 256, 292, false, false},
    [SHOAL_GGML_IQ2_XXS] = {"IQ2_XXS", 256, 66, false, false},
    [SHOAL_GGML_IQ2_XS] = {"IQ2_XS", 256, 74, false, false},
    [SHOAL_GGML_IQ3_XXS] = {"IQ3_XXS", 256, 98, false, false},
    [SHOAL_GGML_IQ1_S] = {"IQ1_S", 256, 50, false, false},
    [SHOAL_GGML_IQ4_NL] = {"IQ4_NL", 32, 18, false, false},
    [SHOAL_GGML_IQ3_S] = {"IQ3_S", 256, 110, false, false},
    [SHOAL_GGML_IQ2_S] = {"IQ2_S", 256, 82, false, false},
    [SHOAL_GGML_IQ4_XS] = {"IQ4_XS", 256, 136, false, false},
    [SHOAL_GGML_I8] = {"I8", 1, 1, false, false},
    [SHOAL_GGML_I16] = {"I16", 1, 2, false, false},
    [SHOAL_GGML_I32] = {"I32", 1, 4, false, false},
    [SHOAL_GGML_I64] = {"I64", 1, 8, false, false},
    [SHOAL_GGML_F64] = {"F64", 1, 8, false, false},
    [SHOAL_GGML_IQ1_M] = {"IQ1_M", 256, 56, false, false},
    [SHOAL_GGML_BF16] = {"BF16", 1, 2, true, false},
    [SHOAL_GGML_TQ1_0] = {"TQ1_0", 256, 54, false, false},
    [SHOAL_GGML_TQ2_0] = {"TQ2_0", 256, 66, false, false},
    [SHOAL_GGML_MXFP4] = {"MXFP4", 32, 17, false, false},
};

const shoal_qtype_traits_t *shoal_qtype_traits(uint32_t type)
{
    return type < SHOAL_GGML_TYPE_COUNT && k_traits[type].name ? &k_traits[type] : NULL;
}

const char *shoal_qtype_name(uint32_t type)
{
    const shoal_qtype_traits_t *t = shoal_qtype_traits(type);
    return t ? t->name : "unknown";
}

bool shoal_qtype_supported(uint32_t type)
{
    const shoal_qtype_traits_t *t = shoal_qtype_traits(type);
    return t && t->supported;
}

uint64_t shoal_qtype_row_size(uint32_t type, int64_t n)
{
    const shoal_qtype_traits_t *t = shoal_qtype_traits(type);
    if (!t || n <= 0 || n % t->block_elems) return 0;
    uint64_t blocks = (uint64_t)n / t->block_elems;
    if (blocks > UINT64_MAX / t->block_bytes) return 0;
    return blocks * t->block_bytes;
}

shoal_status_t shoal_qtype_check(uint32_t type, int64_t n)
{
    const shoal_qtype_traits_t *t = shoal_qtype_traits(type);
    if (!t) return shoal_fail(SHOAL_E_UNSUPPORTED, "quant: unknown ggml type %u", type);
    if (!t->supported) return shoal_fail(SHOAL_E_UNSUPPORTED, "quant: type %s is not supported on the CPU", t->name);
    if (n <= 0 || n % t->block_elems)
        return shoal_fail(SHOAL_E_INVALID, "quant: row length %lld is not a positive multiple of the %s block (%u)",
                          (long long)n, t->name, t->block_elems);
    return SHOAL_OK;
}

/* ---- half precision ---- */

float shoal_fp16_to_fp32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, bits;
    if (e == 0) {
        float f = (float)m * 0x1p-24f; /* zero or subnormal: exact in binary32 */
        memcpy(&bits, &f, 4);
        bits |= sign;
    } else if (e == 31) {
        bits = sign | 0x7f800000u | (m << 13);
    } else {
        bits = sign | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t shoal_fp32_to_fp16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
    uint32_t ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) return sign | 0x7e00u | (uint16_t)((ax >> 13) & 0x3ffu); /* NaN, kept quiet */
    if (ax >= 0x477ff000u) return sign | 0x7c00u; /* >= 65520 rounds past the largest half */
    if (ax < 0x38800000u) {                        /* below 2^-14: a subnormal half, in units of 2^-24 */
        float v;
        memcpy(&v, &ax, 4);
        return sign | (uint16_t)nearbyintf(v * 0x1p24f);
    }
    uint32_t r = ax - ((uint32_t)(127 - 15) << 23);
    r = (r + 0xfffu + ((r >> 13) & 1u)) >> 13; /* round to nearest, ties to even */
    return sign | (uint16_t)r;
}

float shoal_bf16_to_fp32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t shoal_fp32_to_bf16(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

/* ---- ISA selection ---- */

#if defined(__x86_64__) && defined(__GNUC__)
/* clang 14's __builtin_cpu_supports does not know "f16c": ask CPUID (leaf 1, ECX bit 29). AVX2 being
 * usable already implies the OS saves the YMM state F16C needs. */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
#endif

bool shoal_isa_available(shoal_isa_t isa)
{
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpu_has_f16c();
    switch (isa) {
    case SHOAL_ISA_SCALAR: return true;
    case SHOAL_ISA_AVX2: return avx2;
    case SHOAL_ISA_AVX512:
        return avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    default: return false;
    }
#else
    return isa == SHOAL_ISA_SCALAR;
#endif
}

const char *shoal_isa_name(shoal_isa_t isa)
{
    switch (isa) {
    case SHOAL_ISA_SCALAR: return "scalar";
    case SHOAL_ISA_AVX2: return "avx2";
    case SHOAL_ISA_AVX512: return "avx512-vnni";
    default: return "unknown";
    }
}

shoal_isa_t shoal_isa_best(void)
{
    static int cached = -1; /* benign race: every thread computes the same value */
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        v = shoal_isa_available(SHOAL_ISA_AVX512) ? SHOAL_ISA_AVX512
            : shoal_isa_available(SHOAL_ISA_AVX2) ? SHOAL_ISA_AVX2
                                                  : SHOAL_ISA_SCALAR;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return (shoal_isa_t)v;
}

static const qkern *kern(shoal_isa_t isa, uint32_t type)
{
    const qkern *k = NULL;
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa == SHOAL_ISA_AVX512) k = shoal_qkern_avx512(type);
    if (!k && isa >= SHOAL_ISA_AVX2) k = shoal_qkern_avx2(type);
#endif
    return k ? k : shoal_qkern_scalar(type);
}

void shoal_fp16_to_fp32_row(const uint16_t *x, float *y, int64_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (shoal_isa_best() >= SHOAL_ISA_AVX2) {
        shoal_fp16_to_fp32_row_f16c(x, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = shoal_fp16_to_fp32(x[i]);
}

void shoal_fp32_to_fp16_row(const float *x, uint16_t *y, int64_t n)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (shoal_isa_best() >= SHOAL_ISA_AVX2) {
        shoal_fp32_to_fp16_row_f16c(x, y, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] = shoal_fp32_to_fp16(x[i]);
}

/* ---- dequantise / quantise rows (not hot: embedding lookups and test-model writing) ---- */

shoal_status_t shoal_dequantize_row(uint32_t type, const void *row, float *y, int64_t n)
{
    shoal_status_t s = shoal_qtype_check(type, n);
    if (s) return s;
    switch (type) {
    case SHOAL_GGML_F32: memcpy(y, row, (size_t)n * 4); break;
    case SHOAL_GGML_F16: shoal_fp16_to_fp32_row(row, y, n); break;
    case SHOAL_GGML_BF16: {
        const uint16_t *h = row;
        for (int64_t i = 0; i < n; i++) y[i] = shoal_bf16_to_fp32(h[i]);
        break;
    }
    case SHOAL_GGML_Q4_0: {
        const q4_0_block *b = row;
        for (int64_t k = 0; k < n / QK; k++, y += QK) {
            float d = shoal_fp16_to_fp32(b[k].d);
            for (int j = 0; j < 16; j++) {
                y[j] = d * (float)((b[k].qs[j] & 15) - 8);
                y[j + 16] = d * (float)((b[k].qs[j] >> 4) - 8);
            }
        }
        break;
    }
    case SHOAL_GGML_Q4_1: {
        const q4_1_block *b = row;
        for (int64_t k = 0; k < n / QK; k++, y += QK) {
            float d = shoal_fp16_to_fp32(b[k].d), m = shoal_fp16_to_fp32(b[k].m);
            for (int j = 0; j < 16; j++) {
                y[j] = d * (float)(b[k].qs[j] & 15) + m;
                y[j + 16] = d * (float)(b[k].qs[j] >> 4) + m;
            }
        }
        break;
    }
    case SHOAL_GGML_Q8_0: {
        const q8_0_block *b = row;
        for (int64_t k = 0; k < n / QK; k++, y += QK) {
            float d = shoal_fp16_to_fp32(b[k].d);
            for (int j = 0; j < QK; j++) y[j] = d * (float)b[k].qs[j];
        }
        break;
    }
    }
    return SHOAL_OK;
}

static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

shoal_status_t shoal_quantize_row(uint32_t type, const float *x, void *row, int64_t n)
{
    shoal_status_t s = shoal_qtype_check(type, n);
    if (s) return s;
    switch (type) {
    case SHOAL_GGML_F32: memcpy(row, x, (size_t)n * 4); break;
    case SHOAL_GGML_F16: shoal_fp32_to_fp16_row(x, row, n); break;
    case SHOAL_GGML_BF16: {
        uint16_t *h = row;
        for (int64_t i = 0; i < n; i++) h[i] = shoal_fp32_to_bf16(x[i]);
        break;
    }
    case SHOAL_GGML_Q4_0: {
        q4_0_block *b = row;
        for (int64_t k = 0; k < n / QK; k++, x += QK) {
            /* the value of largest magnitude maps to -8 so the full signed range is used */
            float mx = 0;
            for (int j = 0; j < QK; j++)
                if (fabsf(x[j]) > fabsf(mx)) mx = x[j];
            b[k].d = shoal_fp32_to_fp16(mx / -8.0f);
            float d = shoal_fp16_to_fp32(b[k].d), id = d != 0 ? 1.0f / d : 0;
            for (int j = 0; j < 16; j++) {
                int lo = clampi((int)nearbyintf(x[j] * id) + 8, 0, 15);
                int hi = clampi((int)nearbyintf(x[j + 16] * id) + 8, 0, 15);
                b[k].qs[j] = (uint8_t)(lo | hi << 4);
            }
        }
        break;
    }
    case SHOAL_GGML_Q4_1: {
        q4_1_block *b = row;
        for (int64_t k = 0; k < n / QK; k++, x += QK) {
            float lo = x[0], hi = x[0];
            for (int j = 1; j < QK; j++) {
                lo = fminf(lo, x[j]);
                hi = fmaxf(hi, x[j]);
            }
            b[k].d = shoal_fp32_to_fp16((hi - lo) / 15.0f);
            b[k].m = shoal_fp32_to_fp16(lo);
            float d = shoal_fp16_to_fp32(b[k].d), m = shoal_fp16_to_fp32(b[k].m), id = d != 0 ? 1.0f / d : 0;
            for (int j = 0; j < 16; j++) {
                int q0 = clampi((int)nearbyintf((x[j] - m) * id), 0, 15);
                int q1 = clampi((int)nearbyintf((x[j + 16] - m) * id), 0, 15);
                b[k].qs[j] = (uint8_t)(q0 | q1 << 4);
            }
        }
        break;
    }
    case SHOAL_GGML_Q8_0: {
        q8_0_block *b = row;
        for (int64_t k = 0; k < n / QK; k++, x += QK) {
            float amax = 0;
            for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(x[j]));
            b[k].d = shoal_fp32_to_fp16(amax / 127.0f);
            float d = shoal_fp16_to_fp32(b[k].d), id = d != 0 ? 1.0f / d : 0;
            for (int j = 0; j < QK; j++) b[k].qs[j] = (int8_t)clampi((int)nearbyintf(x[j] * id), -127, 127);
        }
        break;
    }
    }
    return SHOAL_OK;
}

/* ---- portable kernels (the reference the SIMD versions are tested against) ---- */

void shoal_act_q8_scalar(const float *x, void *act, int64_t n)
{
    int8_t *q = (int8_t *)act;
    float *d = (float *)((char *)act + n), *s = d + n / QK;
    int32_t *sums = (int32_t *)(s + n / QK);
    for (int64_t b = 0; b < n / QK; b++) {
        const float *xb = x + b * QK;
        float amax = 0;
        for (int j = 0; j < QK; j++) amax = fmaxf(amax, fabsf(xb[j]));
        float id = amax != 0 ? 127.0f / amax : 0.0f;
        int64_t lo = act_index(b * QK, n), hi = act_index(b * QK + 16, n);
        int sum = 0;
        for (int j = 0; j < QK; j++) {
            /* the clamp only bites on non-finite input (inf * 0 = NaN -> -127): no undefined int cast */
            int qi = (int)nearbyintf(fminf(fmaxf(xb[j] * id, -127.0f), 127.0f));
            q[(j < 16 ? lo : hi) + (j & 15)] = (int8_t)qi;
            sum += qi;
        }
        d[b] = amax / 127.0f;
        s[b] = d[b] * (float)sum;
        sums[b] = sum;
    }
}

/* Integer dot of a block's 4-bit values with its activation (two 16-element halves). */
static int block_dot_q4(const uint8_t *qs, const int8_t *lo, const int8_t *hi)
{
    int isum = 0;
    for (int j = 0; j < 16; j++) isum += (qs[j] & 15) * lo[j] + (qs[j] >> 4) * hi[j];
    return isum;
}

static float dot1_q4_0(const void *row, const void *act, int64_t n)
{
    const q4_0_block *w = row;
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n), *s = act_s(act, n);
    float acc = 0;
    const int32_t *sum = act_sum(act, n);
    for (int64_t b = 0; b < n / QK; b++) {
        int isum = block_dot_q4(w[b].qs, q + act_index(b * QK, n), q + act_index(b * QK + 16, n)) - 8 * sum[b];
        acc += shoal_fp16_to_fp32(w[b].d) * d[b] * (float)isum;
    }
    (void)s;
    return acc;
}

static float dot1_q4_1(const void *row, const void *act, int64_t n)
{
    const q4_1_block *w = row;
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n), *s = act_s(act, n);
    float acc = 0;
    for (int64_t b = 0; b < n / QK; b++) {
        int isum = block_dot_q4(w[b].qs, q + act_index(b * QK, n), q + act_index(b * QK + 16, n));
        acc += shoal_fp16_to_fp32(w[b].d) * d[b] * (float)isum + shoal_fp16_to_fp32(w[b].m) * s[b];
    }
    return acc;
}

static float dot1_q8_0(const void *row, const void *act, int64_t n)
{
    const q8_0_block *w = row;
    const int8_t *q = act_q(act);
    const float *d = act_d(act, n);
    float acc = 0;
    for (int64_t b = 0; b < n / QK; b++) {
        const int8_t *lo = q + act_index(b * QK, n), *hi = q + act_index(b * QK + 16, n);
        int isum = 0;
        for (int j = 0; j < 16; j++) isum += w[b].qs[j] * lo[j] + w[b].qs[j + 16] * hi[j];
        acc += shoal_fp16_to_fp32(w[b].d) * d[b] * (float)isum;
    }
    return acc;
}

static float dot1_f32(const void *row, const void *act, int64_t n)
{
    const float *w = row, *x = act;
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += w[i] * x[i];
    return acc;
}

static float dot1_f16(const void *row, const void *act, int64_t n)
{
    const uint16_t *w = row;
    const float *x = act;
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += shoal_fp16_to_fp32(w[i]) * x[i];
    return acc;
}

static float dot1_bf16(const void *row, const void *act, int64_t n)
{
    const uint16_t *w = row;
    const float *x = act;
    float acc = 0;
    for (int64_t i = 0; i < n; i++) acc += shoal_bf16_to_fp32(w[i]) * x[i];
    return acc;
}

#define SCALAR_DOT4(name, dot1)                                                    \
    static void name(const void *const *rows, const void *act, int64_t n, float *y) \
    {                                                                              \
        for (int r = 0; r < 4; r++) y[r] = dot1(rows[r], act, n);                  \
    }
SCALAR_DOT4(dot4_q4_0, dot1_q4_0)
SCALAR_DOT4(dot4_q4_1, dot1_q4_1)
SCALAR_DOT4(dot4_q8_0, dot1_q8_0)
SCALAR_DOT4(dot4_f32, dot1_f32)
SCALAR_DOT4(dot4_f16, dot1_f16)
SCALAR_DOT4(dot4_bf16, dot1_bf16)

const qkern *shoal_qkern_scalar(uint32_t type)
{
    static const qkern q4_0 = {dot1_q4_0, dot4_q4_0, NULL, 0}, q4_1 = {dot1_q4_1, dot4_q4_1, NULL, 0}, q8_0 = {dot1_q8_0, dot4_q8_0, NULL, 0},
                       f32 = {dot1_f32, dot4_f32, NULL, 0}, f16 = {dot1_f16, dot4_f16, NULL, 0}, bf16 = {dot1_bf16, dot4_bf16, NULL, 0};
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

/* ---- public dot-product entry points ---- */

size_t shoal_act_size(uint32_t type, int64_t n)
{
    const shoal_qtype_traits_t *t = shoal_qtype_traits(type);
    if (!t || !t->supported || n <= 0 || n % t->block_elems) return 0;
    return t->int_dot ? (size_t)n + 12 * (size_t)(n / QK) : 4 * (size_t)n;
}

void shoal_act_quantize_isa(shoal_isa_t isa, uint32_t type, const float *x, void *act, int64_t n)
{
    const shoal_qtype_traits_t *t = shoal_qtype_traits(type);
    if (!t || !t->int_dot) {
        memcpy(act, x, (size_t)n * 4);
        return;
    }
#if defined(__x86_64__) && defined(__GNUC__)
    if (isa >= SHOAL_ISA_AVX2) {
        shoal_act_q8_avx2(x, act, n);
        return;
    }
#endif
    shoal_act_q8_scalar(x, act, n);
}

void shoal_act_quantize(uint32_t type, const float *x, void *act, int64_t n)
{
    shoal_act_quantize_isa(shoal_isa_best(), type, x, act, n);
}

float shoal_vec_dot_isa(shoal_isa_t isa, uint32_t type, const void *row, const void *act, int64_t n)
{
    const qkern *k = kern(isa, type);
    return k ? k->dot1(row, act, n) : 0.0f;
}

float shoal_vec_dot(uint32_t type, const void *row, const void *act, int64_t n)
{
    return shoal_vec_dot_isa(shoal_isa_best(), type, row, act, n);
}

void shoal_matvec_isa(shoal_isa_t isa, uint32_t type, const void *w, size_t row_stride, int64_t nrows,
                      const void *act, int64_t n, float *y)
{
    const qkern *k = kern(isa, type);
    if (!k) return;
    const char *p = w;
    /* Rows of 512 bytes and more: the four rows of a step come from the four quarters of the matrix,
     * so each stream of weights is read sequentially. Four adjacent long rows interleave within a few
     * KiB and the hardware prefetchers do not keep up: measured on Zen 4 from DRAM, Q8_0 x 576 (612-byte
     * rows) 6 -> 12 GB/s and Q4_1 x 1536 (960 bytes) 5.6 -> 11 GB/s with quarters, while short rows
     * (Q4_1 x 576, 360 bytes) stream better adjacent (12.6 vs 7.9 GB/s). The kernels address the rows'
     * scales by 32-bit offsets from the first row, hence the size limit. */
    int64_t quarter = nrows / 4, r = 0;
    if (row_stride >= 512 && quarter > 0 && (uint64_t)quarter * row_stride * 3 <= (uint64_t)INT32_MAX) {
        const size_t qs = (size_t)quarter * row_stride;
        for (; r < quarter; r++) {
            const char *r0 = p + (size_t)r * row_stride;
            const void *rows[4] = {r0, r0 + qs, r0 + 2 * qs, r0 + 3 * qs};
            float out[4];
            k->dot4(rows, act, n, out);
            y[r] = out[0];
            y[r + quarter] = out[1];
            y[r + 2 * quarter] = out[2];
            y[r + 3 * quarter] = out[3];
        }
        r = 4 * quarter;
    } else if ((uint64_t)row_stride * 3 > (uint64_t)INT32_MAX) { /* absurdly long rows: one at a time */
        for (; r < nrows; r++) y[r] = k->dot1(p + (size_t)r * row_stride, act, n);
    } else {
        for (; r + 4 <= nrows; r += 4) {
            const void *rows[4] = {p + (size_t)r * row_stride, p + (size_t)(r + 1) * row_stride,
                                   p + (size_t)(r + 2) * row_stride, p + (size_t)(r + 3) * row_stride};
            k->dot4(rows, act, n, y + r);
        }
    }
    if (r < nrows) { /* 1-3 rows left: repeat the last one rather than keep a second code path hot */
        const void *rows[4];
        float out[4];
        for (int i = 0; i < 4; i++) rows[i] = p + (size_t)(r + i < nrows ? r + i : nrows - 1) * row_stride;
        k->dot4(rows, act, n, out);
        for (int i = 0; r + i < nrows; i++) y[r + i] = out[i];
    }
}

void shoal_matvec(uint32_t type, const void *w, size_t row_stride, int64_t nrows, const void *act, int64_t n,
                  float *y)
{
    shoal_matvec_isa(shoal_isa_best(), type, w, row_stride, nrows, act, n, y);
}

void shoal_matmul(uint32_t type, const void *w, size_t row_stride, int64_t nrows, const void *acts,
                  size_t act_stride, int64_t nact, int64_t n, float *y, size_t ldy)
{
    shoal_matmul_isa(shoal_isa_best(), type, w, row_stride, nrows, acts, act_stride, nact, n, y, ldy);
}

void shoal_matmul_isa(shoal_isa_t isa, uint32_t type, const void *w, size_t row_stride, int64_t nrows,
                      const void *acts, size_t act_stride, int64_t nact, int64_t n, float *y, size_t ldy)
{
    const qkern *k = kern(isa, type);
    if (!k) return;
    const char *p = w, *a = acts;
    if ((uint64_t)row_stride * 3 > (uint64_t)INT32_MAX) { /* the kernels' 32-bit row offsets: one row at a time */
        for (int64_t r = 0; r < nrows; r++)
            for (int64_t t = 0; t < nact; t++)
                y[(size_t)t * ldy + r] = k->dot1(p + (size_t)r * row_stride, a + (size_t)t * act_stride, n);
        return;
    }
    /* four rows stay in L1 while every activation passes over them: weights leave memory once */
    for (int64_t r = 0; r < nrows; r += 4) {
        const void *rows[4];
        for (int i = 0; i < 4; i++) rows[i] = p + (size_t)(r + i < nrows ? r + i : nrows - 1) * row_stride;
        int64_t t = 0;
        if (k->mm) { /* several activations per pass over the unpacked weights */
            const int na = k->mm_acts;
            for (; t < nact; t += na) {
                const void *av[8];
                float out[32];
                for (int i = 0; i < na; i++) av[i] = a + (size_t)(t + i < nact ? t + i : nact - 1) * act_stride;
                k->mm(rows, av, n, out);
                for (int i = 0; i < na && t + i < nact; i++)
                    for (int j = 0; j < 4 && r + j < nrows; j++) y[(size_t)(t + i) * ldy + r + j] = out[4 * i + j];
            }
            continue;
        }
        for (; t < nact; t++) {
            float out[4];
            k->dot4(rows, a + (size_t)t * act_stride, n, out);
            for (int i = 0; i < 4 && r + i < nrows; i++) y[(size_t)t * ldy + r + i] = out[i];
        }
    }
}
