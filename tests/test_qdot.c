/* test_qdot.c — the fused AVX-512 VNNI kernels (backend/cpu/qdot.h): activation bytes identical to
 * the portable quantiser, the two planes' precision, and every kernel (Q4_0/Q4_1/Q8_0, one and two
 * planes, one-row decode and four-row batched paths, ragged row counts, odd block counts) against
 * a float64 dot of the dequantised weights with the dequantised activation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/qdot.h"
#include "model/quant.h"

static uint64_t g_rng = 88172645463325252ull;
static float frand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

/* x (n,) with an outlier per 97 elements, like LLM activations */
static void fill_x(float *x, int n)
{
    for (int i = 0; i < n; i++)
        x[i] = frand() * (i % 97 == 5 ? 40.0f : 1.0f);
}

/* The activation as the kernels see it: d * (256 q1 + q2). */
static void qact_dequant(const void *act, int n, double *out)
{
    const int8_t *q1 = act, *q2 = q1 + n;
    const float *d = (const float *)(q2 + n);
    for (int i = 0; i < n; i++)
        out[i] = (double)d[i / 32] * (256.0 * q1[i] + q2[i]);
}

static void test_quantize(void **state)
{
    (void)state;
    if (!shoal_qdot_available())
        skip();
    const int ns[] = {32, 96, 576, 1536};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        float *x = malloc((size_t)n * 4);
        double *deq = malloc((size_t)n * 8);
        size_t sz = shoal_qact_size(n);
        uint8_t *a = malloc(sz), *b = malloc(sz);
        fill_x(x, n);
        x[0] = 0.0f; /* and a zero block when n == 32 is all zero: */
        for (int planes = 1; planes <= 2; planes++) {
            shoal_qact_quantize(x, n, planes, a);
            shoal_qact_quantize_scalar(x, n, planes, b);
            assert_memory_equal(a, b, sz);
            qact_dequant(a, n, deq);
            for (int blk = 0; blk < n / 32; blk++) {
                double amax = 0;
                for (int i = blk * 32; i < blk * 32 + 32; i++)
                    amax = fabs(x[i]) > amax ? fabs(x[i]) : amax;
                /* one plane: half a step of amax/127. Two: half a step of amax/127/256, except where a
                 * residual near +-0.5 step clamps plane 2 at +-127: one full fine step. */
                double bound = planes == 1 ? amax / 254.0 * 1.0001 : amax / 127.0 / 256.0 * 1.01 + 1e-7 * amax;
                for (int i = blk * 32; i < blk * 32 + 32; i++)
                    if (!(fabs(deq[i] - x[i]) <= bound)) {
                        fprintf(stderr, "n=%d planes=%d i=%d x=%.9g deq=%.9g err=%.3g bound=%.3g amax=%g\n", n, planes,
                                i, x[i], deq[i], fabs(deq[i] - x[i]), bound, amax);
                        fail();
                    }
            }
        }
        float *z = calloc((size_t)n, 4);
        shoal_qact_quantize(z, n, 2, a);
        qact_dequant(a, n, deq);
        for (int i = 0; i < n; i++)
            assert_true(deq[i] == 0.0);
        /* non-finite input: both quantisers agree, the block's scale is NaN, no UB */
        x[1] = NAN;
        x[n - 1] = INFINITY;
        shoal_qact_quantize(x, n, 2, a);
        shoal_qact_quantize_scalar(x, n, 2, b);
        assert_memory_equal(a, b, 2 * (size_t)n);
        qact_dequant(a, n, deq);
        assert_true(isnan(deq[1]) && isnan(deq[n - 1]));
        free(z), free(x), free(deq), free(a), free(b);
    }
}

static void check_kernel(uint32_t type, int n, int nrows, int nact, int planes)
{
    size_t rb = (size_t)shoal_qtype_row_size(type, n), asz = shoal_qact_size(n);
    uint8_t *w = malloc(rb * nrows), *acts = malloc(asz * nact);
    float *row = malloc((size_t)n * 4), *x = malloc((size_t)n * 4), *y = malloc((size_t)nrows * nact * 4);
    double *wd = malloc((size_t)n * nrows * 8), *ad = malloc((size_t)n * nact * 8);
    for (int r = 0; r < nrows; r++) {
        for (int i = 0; i < n; i++)
            row[i] = frand() * (1.0f + (float)(r % 3));
        assert_int_equal(shoal_quantize_row(type, row, w + r * rb, n), SHOAL_OK);
        assert_int_equal(shoal_dequantize_row(type, w + r * rb, row, n), SHOAL_OK);
        for (int i = 0; i < n; i++)
            wd[(size_t)r * n + i] = row[i];
    }
    for (int t = 0; t < nact; t++) {
        fill_x(x, n);
        shoal_qact_quantize(x, n, planes, acts + t * asz);
        qact_dequant(acts + t * asz, n, ad + (size_t)t * n);
    }
    const size_t ldy = (size_t)nrows + 3;
    float *yy = malloc(ldy * nact * 4);
    for (size_t i = 0; i < ldy * nact; i++)
        yy[i] = 777.0f;
    shoal_qdot_matmul(type, w, rb, nrows, acts, asz, nact, n, planes, yy, ldy);
    for (int t = 0; t < nact; t++)
        for (int r = 0; r < nrows; r++) {
            double ref = 0, mag = 0;
            for (int i = 0; i < n; i++) {
                ref += wd[(size_t)r * n + i] * ad[(size_t)t * n + i];
                mag += fabs(wd[(size_t)r * n + i] * ad[(size_t)t * n + i]);
            }
            double got = yy[(size_t)t * ldy + r];
            if (!(fabs(got - ref) <= 2e-6 * mag + 1e-6)) {
                fprintf(stderr, "%s n=%d rows=%d nact=%d planes=%d: row %d act %d: %.7g vs %.7g\n", shoal_qtype_name(type),
                        n, nrows, nact, planes, r, t, got, ref);
                fail();
            }
            (void)y;
        }
    for (int t = 0; t < nact; t++) /* padding between rows of the output is untouched */
        for (size_t r = (size_t)nrows; r < ldy; r++)
            assert_true(yy[(size_t)t * ldy + r] == 777.0f);
    free(w), free(acts), free(row), free(x), free(y), free(wd), free(ad), free(yy);
}

static void test_kernels(void **state)
{
    (void)state;
    if (!shoal_qdot_available())
        skip();
    const uint32_t types[] = {SHOAL_GGML_Q4_0, SHOAL_GGML_Q4_1, SHOAL_GGML_Q8_0};
    const int ns[] = {32, 96, 576, 1536};
    const int rows[] = {1, 4, 7, 13};
    for (int ti = 0; ti < 3; ti++) {
        assert_true(shoal_qdot_type_supported(types[ti]));
        for (int ni = 0; ni < 4; ni++)
            for (int ri = 0; ri < 4; ri++)
                for (int planes = 1; planes <= 2; planes++) {
                    check_kernel(types[ti], ns[ni], rows[ri], 1, planes);
                    check_kernel(types[ti], ns[ni], rows[ri], 3, planes);
                }
    }
    assert_false(shoal_qdot_type_supported(SHOAL_GGML_F32));
    assert_false(shoal_qdot_type_supported(SHOAL_GGML_Q4_K));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_quantize), cmocka_unit_test(test_kernels)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
