/* test_quant.c — quantised types against float64 references written here from the format definitions:
 * half/bfloat conversions (exhaustive), dequantisation, activation quantisation (identical bytes on every
 * ISA), and every dot path (scalar, AVX2, AVX-512 where present) on random data of the model's sizes and
 * on real tensors of SmolLM2.
 *
 * Tolerances (stated once, used below):
 *  - dequantisation: |y - ref| <= 2^-22 * (|d| * 15 + |m|) per element (one float rounding of d*q + m);
 *  - a dot against the SAME quantised activation in float64 (sum of w_deq[i] * d_a * q_a[i]): the integer
 *    part is exact, so only float accumulation remains: |dot - ref| <= 2e-5 * sum|w_deq[i] * a_deq[i]| + 1e-30;
 *  - float-weight dots against float64 of w * x: the same 2e-5 relative-to-absolute-sum bound;
 *  - a Q8 activation dot against the unquantised x in float64: additionally |err| <= sum_b (d_b / 2) sum|w|
 *    over the block (the activation rounding bound), plus the above. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/quant.h"
#include "model/quant_impl.h" /* white-box: the prepared-activation layout */

#define REL_TOL 2e-5

static uint64_t rng_state = 0x1234567887654321ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double urand(void) { return (double)(rnd() >> 11) * 0x1p-53; }        /* [0, 1) */
static float frand(float scale) { return (float)((urand() * 2 - 1) * scale); } /* (-scale, scale) */

/* ------------------------------------------------------------ references from the format definition */

/* binary16 -> double by its definition: (-1)^s * 2^(e-15) * 1.m, subnormals 2^-14 * 0.m */
static double ref_h2d(uint16_t h)
{
    int s = h >> 15, e = (h >> 10) & 31, m = h & 1023;
    double v;
    if (e == 0) v = ldexp(m, -24);
    else if (e == 31) v = m ? NAN : INFINITY;
    else v = ldexp(1024 + m, e - 25);
    return s ? -v : v;
}

/* double -> nearest binary16 (ties to even) by search over the representable values */
static uint16_t ref_d2h(double x)
{
    if (isnan(x)) return 0x7e00;
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs(x);
    if (a >= 65520.0) return sign | 0x7c00;
    /* binary search over the positive finite codes 0..0x7bff, which are ordered like their values */
    int lo = 0, hi = 0x7bff;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (ref_h2d((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    int best = lo;
    if (lo < 0x7bff) {
        double dl = a - ref_h2d((uint16_t)lo), dh = ref_h2d((uint16_t)(lo + 1)) - a;
        if (dh < dl || (dh == dl && (lo & 1))) best = lo + 1;
    }
    return sign | (uint16_t)best;
}

static double ref_bf2d(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* One row of reference blocks, quantised here (not with the library): returns the encoded row. */
static void ref_quantize(uint32_t type, const float *x, uint8_t *out, int n)
{
    for (int b = 0; b < n / 32; b++) {
        const float *xb = x + 32 * b;
        if (type == SHOAL_GGML_Q8_0) {
            double amax = 0;
            for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(xb[j]));
            uint16_t dh = ref_d2h(amax / 127);
            double d = ref_h2d(dh);
            uint8_t *blk = out + 34 * b;
            memcpy(blk, &dh, 2);
            for (int j = 0; j < 32; j++) {
                long q = d ? lround(xb[j] / d) : 0;
                q = q > 127 ? 127 : q < -127 ? -127 : q;
                blk[2 + j] = (uint8_t)(int8_t)q;
            }
        } else if (type == SHOAL_GGML_Q4_0) {
            double amax = 0, mx = 0;
            for (int j = 0; j < 32; j++)
                if (fabs(xb[j]) > amax) amax = fabs(xb[j]), mx = xb[j];
            uint16_t dh = ref_d2h(mx / -8);
            double d = ref_h2d(dh);
            uint8_t *blk = out + 18 * b;
            memcpy(blk, &dh, 2);
            for (int j = 0; j < 16; j++) {
                long q0 = d ? lround(xb[j] / d) + 8 : 8, q1 = d ? lround(xb[j + 16] / d) + 8 : 8;
                q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
                q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
                blk[2 + j] = (uint8_t)(q0 | q1 << 4);
            }
        } else if (type == SHOAL_GGML_Q4_1) {
            double mn = xb[0], mx = xb[0];
            for (int j = 0; j < 32; j++) mn = fmin(mn, xb[j]), mx = fmax(mx, xb[j]);
            uint16_t dh = ref_d2h((mx - mn) / 15), mh = ref_d2h(mn);
            double d = ref_h2d(dh), m = ref_h2d(mh);
            uint8_t *blk = out + 20 * b;
            memcpy(blk, &dh, 2);
            memcpy(blk + 2, &mh, 2);
            for (int j = 0; j < 16; j++) {
                long q0 = d ? lround((xb[j] - m) / d) : 0, q1 = d ? lround((xb[j + 16] - m) / d) : 0;
                q0 = q0 < 0 ? 0 : q0 > 15 ? 15 : q0;
                q1 = q1 < 0 ? 0 : q1 > 15 ? 15 : q1;
                blk[4 + j] = (uint8_t)(q0 | q1 << 4);
            }
        }
    }
    if (type == SHOAL_GGML_F32) memcpy(out, x, (size_t)n * 4);
    if (type == SHOAL_GGML_F16)
        for (int i = 0; i < n; i++) {
            uint16_t h = ref_d2h(x[i]);
            memcpy(out + 2 * i, &h, 2);
        }
    if (type == SHOAL_GGML_BF16)
        for (int i = 0; i < n; i++) {
            /* nearest of the two bfloat16 neighbours, ties to even */
            uint32_t bits;
            memcpy(&bits, &x[i], 4);
            uint16_t lo = (uint16_t)(bits >> 16), hi = (uint16_t)(lo + 1);
            double dl = fabs(x[i] - ref_bf2d(lo)), dh = fabs(ref_bf2d(hi) - x[i]);
            uint16_t h = (dh < dl || (dh == dl && (lo & 1))) ? hi : lo;
            memcpy(out + 2 * i, &h, 2);
        }
}

/* Dequantised row in float64, and per-element bound on the float rounding of the library's version. */
static void ref_dequantize(uint32_t type, const uint8_t *row, double *y, double *tol, int n)
{
    for (int i = 0; i < n; i++) {
        int b = i / 32, j = i % 32;
        uint16_t h;
        switch (type) {
        case SHOAL_GGML_F32: { float f; memcpy(&f, row + 4 * i, 4); y[i] = f; tol[i] = 0; break; }
        case SHOAL_GGML_F16: memcpy(&h, row + 2 * i, 2); y[i] = ref_h2d(h); tol[i] = 0; break;
        case SHOAL_GGML_BF16: memcpy(&h, row + 2 * i, 2); y[i] = ref_bf2d(h); tol[i] = 0; break;
        case SHOAL_GGML_Q8_0: {
            const uint8_t *blk = row + 34 * b;
            memcpy(&h, blk, 2);
            y[i] = ref_h2d(h) * (int8_t)blk[2 + j];
            tol[i] = 0x1p-22 * fabs(ref_h2d(h)) * 127;
            break;
        }
        case SHOAL_GGML_Q4_0: {
            const uint8_t *blk = row + 18 * b;
            memcpy(&h, blk, 2);
            int q = j < 16 ? (blk[2 + j] & 15) : (blk[2 + j - 16] >> 4);
            y[i] = ref_h2d(h) * (q - 8);
            tol[i] = 0x1p-22 * fabs(ref_h2d(h)) * 8;
            break;
        }
        case SHOAL_GGML_Q4_1: {
            const uint8_t *blk = row + 20 * b;
            uint16_t mh;
            memcpy(&h, blk, 2);
            memcpy(&mh, blk + 2, 2);
            int q = j < 16 ? (blk[4 + j] & 15) : (blk[4 + j - 16] >> 4);
            y[i] = ref_h2d(h) * q + ref_h2d(mh);
            tol[i] = 0x1p-22 * (fabs(ref_h2d(h)) * 15 + fabs(ref_h2d(mh)));
            break;
        }
        }
    }
}

static const uint32_t k_types[] = {SHOAL_GGML_F32, SHOAL_GGML_F16, SHOAL_GGML_BF16,
                                   SHOAL_GGML_Q4_0, SHOAL_GGML_Q4_1, SHOAL_GGML_Q8_0};
#define N_TYPES (sizeof k_types / sizeof *k_types)

/* ------------------------------------------------------------ traits and conversions */

static void test_traits(void **state)
{
    (void)state;
    static const struct { uint32_t id; const char *name; uint32_t be, bb; bool sup; } want[] = {
        {0, "F32", 1, 4, true},      {1, "F16", 1, 2, true},      {2, "Q4_0", 32, 18, true},
        {3, "Q4_1", 32, 20, true},   {6, "Q5_0", 32, 22, false},  {7, "Q5_1", 32, 24, false},
        {8, "Q8_0", 32, 34, true},   {9, "Q8_1", 32, 36, false},  {10, "Q2_K", 256, 84, false},
        {11, "Q3_K", 256, 110, false}, {12, "Q4_K", 256, 144, false}, {13, "Q5_K", 256, 176, false},
        {14, "Q6_K", 256, 210, false}, {15, "Q8_K", 256, 292, false}, {30, "BF16", 1, 2, true},
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++) {
        const shoal_qtype_traits_t *t = shoal_qtype_traits(want[i].id);
        assert_non_null(t);
        assert_string_equal(t->name, want[i].name);
        assert_int_equal(t->block_elems, want[i].be);
        assert_int_equal(t->block_bytes, want[i].bb);
        assert_int_equal(t->supported, want[i].sup);
        assert_int_equal(shoal_qtype_supported(want[i].id), want[i].sup);
    }
    assert_null(shoal_qtype_traits(4));
    assert_null(shoal_qtype_traits(31));
    assert_null(shoal_qtype_traits(1000));
    assert_string_equal(shoal_qtype_name(1000), "unknown");
    assert_int_equal(shoal_qtype_row_size(SHOAL_GGML_Q4_1, 576), 360);
    assert_int_equal(shoal_qtype_row_size(SHOAL_GGML_Q8_0, 576), 612);
    assert_int_equal(shoal_qtype_row_size(SHOAL_GGML_F16, 7), 14);
    assert_int_equal(shoal_qtype_row_size(SHOAL_GGML_Q4_1, 48), 0);
    assert_int_equal(shoal_qtype_row_size(SHOAL_GGML_Q4_1, 0), 0);
    assert_int_equal(shoal_qtype_row_size(SHOAL_GGML_Q4_1, -32), 0);
    assert_int_equal(shoal_qtype_row_size(31, 32), 0);
    assert_int_equal(shoal_qtype_check(SHOAL_GGML_Q4_1, 576), SHOAL_OK);
    assert_int_equal(shoal_qtype_check(SHOAL_GGML_Q6_K, 256), SHOAL_E_UNSUPPORTED);
    assert_non_null(strstr(shoal_last_error(), "Q6_K"));
    assert_int_equal(shoal_qtype_check(31, 32), SHOAL_E_UNSUPPORTED);
    assert_int_equal(shoal_qtype_check(SHOAL_GGML_Q8_0, 33), SHOAL_E_INVALID);
    float y[256];
    uint8_t row[512] = {0};
    assert_int_equal(shoal_dequantize_row(SHOAL_GGML_Q6_K, row, y, 256), SHOAL_E_UNSUPPORTED);
    assert_int_equal(shoal_dequantize_row(SHOAL_GGML_Q4_0, row, y, 40), SHOAL_E_INVALID);
    assert_int_equal(shoal_quantize_row(SHOAL_GGML_Q6_K, y, row, 256), SHOAL_E_UNSUPPORTED);
    assert_int_equal(shoal_act_size(SHOAL_GGML_Q6_K, 256), 0);
    assert_int_equal(shoal_act_size(SHOAL_GGML_Q4_1, 40), 0);
    assert_int_equal(shoal_act_size(SHOAL_GGML_F16, 40), 160);
    assert_int_equal(shoal_act_size(SHOAL_GGML_Q4_1, 576), 576 + 12 * 18);
    assert_true(shoal_isa_available(SHOAL_ISA_SCALAR));
    assert_true(shoal_isa_available(shoal_isa_best()));
    print_message("best ISA: %s (avx2 %d, avx512-vnni %d)\n", shoal_isa_name(shoal_isa_best()),
                  shoal_isa_available(SHOAL_ISA_AVX2), shoal_isa_available(SHOAL_ISA_AVX512));
}

static void test_half_conversions(void **state)
{
    (void)state;
    /* every half: to float exactly, and back to the same code (NaNs stay NaN) */
    for (uint32_t h = 0; h < 65536; h++) {
        double ref = ref_h2d((uint16_t)h);
        float f = shoal_fp16_to_fp32((uint16_t)h);
        if (isnan(ref)) {
            assert_true(isnan(f));
            assert_true(isnan(shoal_fp16_to_fp32(shoal_fp32_to_fp16(f))));
            continue;
        }
        assert_true((double)f == ref);
        assert_int_equal(signbit(f) != 0, (h >> 15) != 0);
        assert_int_equal(shoal_fp32_to_fp16(f), h);
        float bf = shoal_bf16_to_fp32((uint16_t)h);
        assert_true(isnan(bf) || (double)bf == ref_bf2d((uint16_t)h));
        if (!isnan(bf)) assert_int_equal(shoal_fp32_to_bf16(bf), h);
    }
    /* random floats of all magnitudes, ties and near-overflow values: nearest-even rounding */
    uint16_t hrow[1024], hrow2[1024];
    float frow[1024], back[1024];
    for (int k = 0; k < 200000; k++) {
        float f;
        if (k % 3 == 0) {
            uint32_t bits = (uint32_t)rnd();
            memcpy(&f, &bits, 4);
        } else if (k % 3 == 1) {
            f = (float)ldexp(urand() * 2 - 1, (int)(rnd() % 50) - 30);
        } else { /* exact midpoints between adjacent halves */
            uint16_t h = (uint16_t)(rnd() % 0x7bff);
            f = (float)((ref_h2d(h) + ref_h2d((uint16_t)(h + 1))) / 2);
        }
        if (isnan(f)) continue;
        assert_int_equal(shoal_fp32_to_fp16(f), ref_d2h(f));
        if (k < 1024) frow[k] = f;
    }
    frow[0] = 65519.0f, frow[1] = 65520.0f, frow[2] = -65504.0f, frow[3] = 1e-8f, frow[4] = -0.0f, frow[5] = INFINITY;
    frow[6] = 2.9802322e-08f; /* exactly half the smallest subnormal: ties to even -> 0 */
    /* the vectorised row conversions agree with the scalar ones */
    shoal_fp32_to_fp16_row(frow, hrow, 1023);
    for (int i = 0; i < 1023; i++) {
        hrow2[i] = shoal_fp32_to_fp16(frow[i]);
        assert_int_equal(hrow[i], hrow2[i]);
    }
    assert_int_equal(hrow[0], 0x7bff);
    assert_int_equal(hrow[1], 0x7c00);
    assert_int_equal(hrow[6], 0);
    shoal_fp16_to_fp32_row(hrow, back, 1023);
    for (int i = 0; i < 1023; i++) assert_true(back[i] == shoal_fp16_to_fp32(hrow[i]));
    /* bf16 rounding: random floats against the neighbour search */
    for (int k = 0; k < 100000; k++) {
        float f = (float)ldexp(urand() * 2 - 1, (int)(rnd() % 200) - 100);
        uint8_t out[2];
        ref_quantize(SHOAL_GGML_BF16, &f, out, 1);
        uint16_t want;
        memcpy(&want, out, 2);
        assert_int_equal(shoal_fp32_to_bf16(f), want);
    }
}

/* ------------------------------------------------------------ dequantisation and quantisation */

static void fill_random(float *x, int n, int style)
{
    for (int i = 0; i < n; i++) {
        switch (style) {
        case 0: x[i] = frand(1.0f); break;
        case 1: x[i] = frand(1.0f) * (float)ldexp(1, (int)(rnd() % 12) - 6); break; /* varied magnitudes */
        case 2: x[i] = 0.02f + frand(0.01f); break;                                  /* offset, one sign */
        default: x[i] = (i % 32 == 5) ? 50.0f : frand(0.1f); break;                  /* outliers */
        }
    }
    if (style == 1 && n >= 64) memset(x + 32, 0, 32 * sizeof *x); /* an all-zero block */
}

static void test_dequantize(void **state)
{
    (void)state;
    static const int sizes[] = {32, 64, 576, 1536};
    float x[1536], y[1536];
    double ref[1536], tol[1536];
    uint8_t row[1536 * 4], row2[1536 * 4];
    for (size_t t = 0; t < N_TYPES; t++) {
        uint32_t type = k_types[t];
        for (int si = 0; si < 4; si++) {
            int n = sizes[si];
            for (int style = 0; style < 4; style++) {
                fill_random(x, n, style);
                ref_quantize(type, x, row, n);
                assert_int_equal(shoal_dequantize_row(type, row, y, n), SHOAL_OK);
                ref_dequantize(type, row, ref, tol, n);
                for (int i = 0; i < n; i++) {
                    if (fabs(y[i] - ref[i]) > tol[i]) {
                        fprintf(stderr, "%s n=%d i=%d: %.9g vs %.9g\n", shoal_qtype_name(type), n, i, y[i], ref[i]);
                        fail();
                    }
                }
                /* the library's own quantiser: reconstruction within half a step of each value */
                assert_int_equal(shoal_quantize_row(type, x, row2, n), SHOAL_OK);
                ref_dequantize(type, row2, ref, tol, n);
                for (int b = 0; b < n / 32; b++) {
                    double lo = x[32 * b], hi = x[32 * b], amax = 0;
                    for (int j = 0; j < 32; j++) {
                        lo = fmin(lo, x[32 * b + j]);
                        hi = fmax(hi, x[32 * b + j]);
                        amax = fmax(amax, fabs(x[32 * b + j]));
                    }
                    double step = type == SHOAL_GGML_Q8_0 ? amax / 127
                                  : type == SHOAL_GGML_Q4_0 ? amax / 8
                                  : type == SHOAL_GGML_Q4_1 ? (hi - lo) / 15
                                  : type == SHOAL_GGML_F32 ? 0
                                  : type == SHOAL_GGML_F16 ? amax * 0x1p-11 + 0x1p-25
                                                           : amax * 0x1p-8;
                    for (int j = 0; j < 32; j++) {
                        /* half a step, widened by the f16 rounding of the scale (and offset) */
                        double bound = step * (type == SHOAL_GGML_Q4_0 ? 1.0 : 0.5) * 1.01 + amax * 0x1p-9 + 1e-30;
                        if (type == SHOAL_GGML_F32) bound = 0;
                        assert_true(fabs(ref[32 * b + j] - x[32 * b + j]) <= bound);
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------------------ activations and dot products */

static void test_act_quantize(void **state)
{
    (void)state;
    float x[1536];
    uint8_t a0[1536 + 12 * 48], a1[sizeof a0];
    for (int k = 0; k < 50; k++) {
        int n = k % 2 ? 1536 : 576;
        fill_random(x, n, k % 4);
        if (k == 7) x[3] = -x[3] * 1e6f; /* a block dominated by one value */
        if (k == 9) for (int i = 0; i < n; i++) x[i] = (float)(i % 32) * 0.5f - 8.0f; /* many exact .5 ties */
        size_t sz = shoal_act_size(SHOAL_GGML_Q4_1, n);
        assert_int_equal(sz, (size_t)n + 12 * (size_t)(n / 32));
        shoal_act_quantize_isa(SHOAL_ISA_SCALAR, SHOAL_GGML_Q4_1, x, a0, n);
        /* definition: d = amax / 127, |x - d q| <= d / 2, s = d * sum(q) */
        const int8_t *q = (const int8_t *)a0;
        const float *d = (const float *)(a0 + n), *s = d + n / 32;
        const int32_t *isum = (const int32_t *)(s + n / 32);
        for (int b = 0; b < n / 32; b++) {
            double amax = 0;
            long sum = 0;
            for (int j = 0; j < 32; j++) amax = fmax(amax, fabs(x[32 * b + j]));
            assert_true(fabs(d[b] - amax / 127) <= 1e-7 * amax);
            for (int j = 0; j < 32; j++) {
                int8_t qj = q[act_index(32 * b + j, n)];
                assert_true(fabs(x[32 * b + j] - (double)d[b] * qj) <= d[b] * 0.5000001 + 1e-30);
                assert_true(qj >= -127);
                sum += qj;
            }
            assert_int_equal(isum[b], sum);
            assert_true(fabs(s[b] - (double)d[b] * sum) <= 1e-6 * fabs((double)d[b] * sum) + 1e-30);
        }
        for (int isa = SHOAL_ISA_AVX2; isa < SHOAL_ISA_COUNT; isa++) {
            if (!shoal_isa_available(isa)) continue;
            memset(a1, 0xa5, sizeof a1);
            shoal_act_quantize_isa(isa, SHOAL_GGML_Q4_1, x, a1, n);
            assert_memory_equal(a0, a1, sz);
        }
        /* float weights take x as is */
        static float xf[1536];
        assert_int_equal(shoal_act_size(SHOAL_GGML_F16, n), (size_t)n * 4);
        shoal_act_quantize(SHOAL_GGML_F16, x, xf, n);
        assert_memory_equal(xf, x, (size_t)n * 4);
    }
}

/* Non-finite activations (a model gone wrong, or a file with inf weights) stay defined on every ISA. */
static void test_act_nonfinite(void **state)
{
    (void)state;
    float x[64];
    uint8_t a[64 + 12 * 2];
    for (int i = 0; i < 64; i++) x[i] = (float)i - 20.0f;
    x[3] = INFINITY;
    x[40] = NAN;
    x[41] = -INFINITY;
    for (int isa = 0; isa < SHOAL_ISA_COUNT; isa++) {
        if (!shoal_isa_available(isa)) continue;
        shoal_act_quantize_isa(isa, SHOAL_GGML_Q8_0, x, a, 64);
        for (int i = 0; i < 64; i++) {
            int8_t q = ((const int8_t *)a)[i];
            assert_true(q != -128); /* clamped, never the packs saturation value */
        }
    }
}

/* Checks one row's dot on every ISA against float64 (see the tolerances at the top). */
static void check_dot(uint32_t type, const void *row, const float *x, int n, const char *what)
{
    static double w[49152], tol[49152];
    static uint8_t act[49152 * 5];
    ref_dequantize(type, row, w, tol, n);
    shoal_act_quantize(type, x, act, n);
    const shoal_qtype_traits_t *tr = shoal_qtype_traits(type);
    double ref = 0, abs_sum = 0, ref_x = 0, act_bound = 0;
    for (int i = 0; i < n; i++) {
        double a = x[i];
        if (tr->int_dot) {
            const float *d = (const float *)(act + n);
            a = (double)d[i / 32] * ((const int8_t *)act)[act_index(i, n)];
            act_bound += fabs(w[i]) * d[i / 32] * 0.5;
        }
        ref += w[i] * a;
        ref_x += w[i] * x[i];
        abs_sum += fabs(w[i] * a) + tol[i] * fabs(a);
    }
    for (int isa = 0; isa < SHOAL_ISA_COUNT; isa++) {
        if (!shoal_isa_available(isa)) continue;
        float got = shoal_vec_dot_isa(isa, type, row, act, n);
        double err = fabs(got - ref), lim = REL_TOL * abs_sum + 1e-30;
        if (err > lim || fabs(got - ref_x) > lim + act_bound * 1.001) {
            fprintf(stderr, "%s %s %s n=%d: got %.9g, ref %.9g (err %.3g, limit %.3g), vs x %.9g (limit %.3g)\n",
                    what, shoal_qtype_name(type), shoal_isa_name(isa), n, got, ref, err, lim, ref_x,
                    lim + act_bound);
            fail();
        }
    }
}

static void test_dot_random(void **state)
{
    (void)state;
    static const int sizes[] = {32, 64, 96, 576, 1536};
    static float x[1536], wf[1536];
    static uint8_t row[1536 * 4];
    for (size_t t = 0; t < N_TYPES; t++) {
        for (int si = 0; si < 5; si++) {
            int n = sizes[si];
            for (int k = 0; k < 20; k++) {
                fill_random(wf, n, k % 4);
                fill_random(x, n, (k + 1) % 4);
                ref_quantize(k_types[t], wf, row, n);
                check_dot(k_types[t], row, x, n, "random");
            }
        }
    }
}

/* matvec (4-row kernels, quarter streams, remainders) and matmul (1..9 activations, padded passes) agree
 * with per-row dots on every ISA, for even and odd block counts. */
static void test_matvec_matmul(void **state)
{
    (void)state;
    static const int sizes[] = {576, 96};
    const int rows = 67, nact_max = 9;
    static float x[9][576], w[576], y[9 * 67], y2[67];
    static uint8_t mat[67 * 576 * 4], acts[9][576 * 4 + 64];
    for (int si = 0; si < 2; si++) {
        const int n = sizes[si];
        for (size_t t = 0; t < N_TYPES; t++) {
            uint32_t type = k_types[t];
            size_t rb = shoal_qtype_row_size(type, n);
            for (int r = 0; r < rows; r++) {
                fill_random(w, n, r % 4);
                ref_quantize(type, w, mat + r * rb, n);
            }
            for (int a = 0; a < nact_max; a++) {
                fill_random(x[a], n, a % 4);
                shoal_act_quantize(type, x[a], acts[a], n);
            }
            for (int isa = 0; isa < SHOAL_ISA_COUNT; isa++) {
                if (!shoal_isa_available(isa)) continue;
                for (int nact = 1; nact <= nact_max; nact += (nact < 5 ? 1 : 4)) {
                    memset(y, 0xff, sizeof y);
                    shoal_matmul_isa(isa, type, mat, rb, rows, acts, sizeof acts[0], nact, n, y, 67);
                    for (int a = 0; a < nact; a++) {
                        shoal_matvec_isa(isa, type, mat, rb, rows, acts[a], n, y2);
                        for (int r = 0; r < rows; r++) {
                            float one = shoal_vec_dot_isa(isa, type, mat + r * rb, acts[a], n);
                            assert_int_equal(shoal_dequantize_row(type, mat + r * rb, w, n), SHOAL_OK);
                            double abs_sum = 0;
                            for (int i = 0; i < n; i++) abs_sum += fabs(w[i] * x[a][i]);
                            double tol = REL_TOL * abs_sum * 1.1 + 1e-30; /* act rounding is shared: it cancels */
                            if (fabs(y2[r] - one) > tol || fabs(y[a * 67 + r] - one) > tol) {
                                fprintf(stderr, "%s %s n=%d nact=%d a=%d r=%d: dot %.9g matvec %.9g matmul %.9g\n",
                                        shoal_qtype_name(type), shoal_isa_name(isa), n, nact, a, r, one, y2[r],
                                        y[a * 67 + r]);
                                fail();
                            }
                        }
                    }
                    /* nothing written past the nact x rows block (ldy = rows here) */
                    if (nact < nact_max) {
                        uint32_t canary;
                        memcpy(&canary, &y[nact * 67], 4);
                        assert_int_equal(canary, 0xffffffffu);
                    }
                }
            }
        }
    }
}

/* Real tensors: dequantisation against the reference, dot paths against float64, and a full matvec of
 * the 49152 x 576 Q8_0 output matrix (tied embeddings). */
static void test_real_tensors(void **state)
{
    (void)state;
    char path[4096];
    const char *deps = getenv("SHOAL_DEPS");
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
    shoal_gguf_t *g;
    assert_int_equal(shoal_gguf_open(path, &g), SHOAL_OK);
    static const char *names[] = {"blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.17.ffn_gate.weight",
                                  "blk.29.attn_v.weight", "token_embd.weight", "blk.3.attn_norm.weight"};
    static float x[1536], y[1536];
    static double ref[1536], tol[1536];
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        const shoal_gguf_tensor_t *t;
        assert_int_equal(shoal_gguf_find_tensor(g, names[k], &t), SHOAL_OK);
        int n = (int)t->ne[0];
        int64_t rows = (int64_t)(t->n_elements / t->ne[0]);
        assert_int_equal(shoal_qtype_check(t->type, n), SHOAL_OK);
        for (int r = 0; r < 8 && r < rows; r++) {
            int64_t ri = (r * 7919) % rows;
            const uint8_t *row = (const uint8_t *)t->data + ri * t->row_bytes;
            assert_int_equal(shoal_dequantize_row(t->type, row, y, n), SHOAL_OK);
            ref_dequantize(t->type, row, ref, tol, n);
            for (int i = 0; i < n; i++) assert_true(fabs(y[i] - ref[i]) <= tol[i]);
            fill_random(x, n, r % 4);
            check_dot(t->type, row, x, n, names[k]);
        }
    }
    /* whole Q4_1 matrices of every shape the model has (rows of 576 and 1536), on every ISA */
    static const char *mats[] = {"blk.5.attn_k.weight", "blk.5.attn_output.weight", "blk.5.ffn_up.weight",
                                 "blk.5.ffn_down.weight"};
    for (size_t k = 0; k < sizeof mats / sizeof *mats; k++) {
        const shoal_gguf_tensor_t *m;
        assert_int_equal(shoal_gguf_find_tensor(g, mats[k], &m), SHOAL_OK);
        assert_int_equal(m->type, SHOAL_GGML_Q4_1);
        const int mn = (int)m->ne[0];
        const int64_t mrows = (int64_t)m->ne[1];
        float *ym = malloc(sizeof(float) * mrows);
        uint8_t *am = malloc(shoal_act_size(m->type, mn));
        double *wm = malloc(sizeof(double) * mn), *wmt = malloc(sizeof(double) * mn);
        fill_random(x, mn, 3);
        shoal_act_quantize(m->type, x, am, mn);
        const float *amd = (const float *)(am + mn);
        for (int isa = 0; isa < SHOAL_ISA_COUNT; isa++) {
            if (!shoal_isa_available(isa)) continue;
            memset(ym, 0xff, sizeof(float) * mrows);
            shoal_matvec_isa(isa, m->type, m->data, m->row_bytes, mrows, am, mn, ym);
            for (int64_t r = 0; r < mrows; r++) {
                ref_dequantize(m->type, (const uint8_t *)m->data + r * m->row_bytes, wm, wmt, mn);
                double ref_r = 0, abs_sum = 0;
                for (int i = 0; i < mn; i++) {
                    double a = (double)amd[i / 32] * ((const int8_t *)am)[act_index(i, mn)];
                    ref_r += wm[i] * a;
                    abs_sum += fabs(wm[i] * a);
                }
                if (fabs(ym[r] - ref_r) > REL_TOL * abs_sum) {
                    fprintf(stderr, "%s %s row %lld: %.9g vs %.9g\n", mats[k], shoal_isa_name(isa), (long long)r, ym[r],
                            ref_r);
                    fail();
                }
            }
        }
        free(ym);
        free(am);
        free(wm);
        free(wmt);
    }

    /* the whole output projection on the best ISA, and a 1000-row slice on each ISA */
    const shoal_gguf_tensor_t *t;
    assert_int_equal(shoal_gguf_find_tensor(g, "token_embd.weight", &t), SHOAL_OK);
    const int n = 576;
    const int64_t rows = 49152;
    float *yv = malloc(sizeof(float) * rows);
    uint8_t *act = malloc(shoal_act_size(t->type, n));
    double *w = malloc(sizeof(double) * n), *wt = malloc(sizeof(double) * n);
    fill_random(x, n, 1);
    shoal_act_quantize(t->type, x, act, n);
    const float *ad = (const float *)(act + n);
    for (int isa = SHOAL_ISA_COUNT - 1; isa >= 0; isa--) {
        if (!shoal_isa_available(isa)) continue;
        int64_t nrows = isa == (int)shoal_isa_best() ? rows : 1000;
        shoal_matvec_isa(isa, t->type, t->data, t->row_bytes, nrows, act, n, yv);
        double worst = 0;
        for (int64_t r = 0; r < nrows; r++) {
            ref_dequantize(t->type, (const uint8_t *)t->data + r * t->row_bytes, w, wt, n);
            double ref_r = 0, abs_sum = 0;
            for (int i = 0; i < n; i++) {
                double a = (double)ad[i / 32] * ((const int8_t *)act)[act_index(i, n)];
                ref_r += w[i] * a;
                abs_sum += fabs(w[i] * a);
            }
            double rel = fabs(yv[r] - ref_r) / (abs_sum + 1e-30);
            worst = fmax(worst, rel);
            assert_true(rel <= REL_TOL);
        }
        print_message("token_embd matvec %s, %lld rows: worst error / sum|w a| = %.3g\n", shoal_isa_name(isa),
                      (long long)nrows, worst);
    }
    free(yv);
    free(act);
    free(w);
    free(wt);
    shoal_gguf_close(g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_traits),         cmocka_unit_test(test_half_conversions),
        cmocka_unit_test(test_dequantize),     cmocka_unit_test(test_act_quantize),
        cmocka_unit_test(test_act_nonfinite),
        cmocka_unit_test(test_dot_random),     cmocka_unit_test(test_matvec_matmul),
        cmocka_unit_test(test_real_tensors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
