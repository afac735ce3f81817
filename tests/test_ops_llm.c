/* test_ops_llm.c — the float32 transformer ops (backend/cpu/ops_llm.h) against float64 references:
 * RMSNorm, RoPE, attention (whole and split into ranges then merged), SwiGLU, add. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/cpu/ops_llm.h"

static uint64_t g_rng = 0x853c49e6748fea9bull;
static float frand(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void test_rmsnorm(void **state)
{
    (void)state;
    const int ns[] = {1, 7, 64, 576, 1001};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        int n = ns[k];
        float *x = malloc((size_t)n * 4), *w = malloc((size_t)n * 4), *o = malloc((size_t)n * 4);
        double ss = 0;
        for (int i = 0; i < n; i++) {
            x[i] = frand() * 3.0f;
            w[i] = 1.0f + 0.5f * frand();
            ss += (double)x[i] * x[i];
        }
        double sc = 1.0 / sqrt(ss / n + 1e-5);
        shoal_op_rmsnorm(o, x, w, n, 1e-5f);
        for (int i = 0; i < n; i++)
            assert_true(fabs(o[i] - x[i] * sc * w[i]) <= 1e-5 * (fabs(x[i] * sc * w[i]) + 1e-3));
        shoal_op_rmsnorm(x, x, w, n, 1e-5f); /* in place */
        assert_memory_equal(x, o, (size_t)n * 4);
        free(x), free(w), free(o);
    }
}

static void test_rope(void **state)
{
    (void)state;
    enum { H = 3, HD = 16, RD = 8 };
    float x[H * HD], x0[H * HD], cs[RD];
    double ang[RD / 2];
    for (int i = 0; i < RD / 2; i++) {
        ang[i] = 7.0 * pow(10000.0, -2.0 * i / RD);
        cs[2 * i] = (float)cos(ang[i]);
        cs[2 * i + 1] = (float)sin(ang[i]);
    }
    for (int i = 0; i < H * HD; i++)
        x[i] = x0[i] = frand();
    shoal_op_rope(x, H, HD, RD, cs);
    for (int h = 0; h < H; h++)
        for (int i = 0; i < HD / 2; i++) {
            const float *a = x0 + h * HD, *b = x + h * HD;
            if (2 * i >= RD) { /* past rope_dim: untouched */
                assert_true(b[2 * i] == a[2 * i] && b[2 * i + 1] == a[2 * i + 1]);
                continue;
            }
            double c = cos(ang[i]), s = sin(ang[i]);
            assert_true(fabs(b[2 * i] - (a[2 * i] * c - a[2 * i + 1] * s)) < 1e-6);
            assert_true(fabs(b[2 * i + 1] - (a[2 * i] * s + a[2 * i + 1] * c)) < 1e-6);
        }
}

/* float64 softmax attention of one head over n positions */
static void ref_attention(const float *q, const float *k, const float *v, size_t stride, int n, int hd, double scale,
                          double *out)
{
    double *s = malloc((size_t)n * sizeof(double)), mx = -INFINITY, sum = 0;
    for (int p = 0; p < n; p++) {
        double d = 0;
        for (int i = 0; i < hd; i++)
            d += (double)q[i] * k[(size_t)p * stride + i];
        s[p] = d * scale;
        mx = s[p] > mx ? s[p] : mx;
    }
    for (int p = 0; p < n; p++)
        sum += (s[p] = exp(s[p] - mx));
    for (int i = 0; i < hd; i++) {
        double o = 0;
        for (int p = 0; p < n; p++)
            o += s[p] * v[(size_t)p * stride + i];
        out[i] = o / sum;
    }
    free(s);
}

static void test_attention(void **state)
{
    (void)state;
    const int hds[] = {16, 24, 32, 64, 72};
    const int ns[] = {1, 5, 8, 37, 300};
    for (size_t a = 0; a < sizeof hds / sizeof hds[0]; a++)
        for (size_t b = 0; b < sizeof ns / sizeof ns[0]; b++) {
            const int hd = hds[a], n = ns[b], n_rep = 3;
            const size_t stride = (size_t)hd * 2 + 8; /* rows of a wider, interleaved cache */
            float *q = malloc((size_t)n_rep * hd * 4), *k = malloc(stride * n * 4), *v = malloc(stride * n * 4);
            float *out = malloc((size_t)n_rep * hd * 4), *scores = malloc((size_t)n * 4);
            for (int i = 0; i < n_rep * hd; i++)
                q[i] = frand() * 2.0f;
            for (size_t i = 0; i < stride * n; i++) {
                k[i] = frand() * 2.0f;
                v[i] = frand();
            }
            const double scale = 1.0 / sqrt((double)hd);
            shoal_op_attention(q, k, v, stride, n, n_rep, hd, (float)scale, scores, out);
            /* the same split into three ranges (one possibly empty) and merged */
            float *po = malloc((size_t)3 * n_rep * hd * 4), ml[3 * 2 * 3];
            int cut[4] = {0, n / 3, n / 3, n};
            for (int s = 0; s < 3; s++)
                shoal_op_attention_partial(q, k + (size_t)cut[s] * stride, v + (size_t)cut[s] * stride, stride,
                                           cut[s + 1] - cut[s], n_rep, hd, (float)scale, scores,
                                           po + (size_t)s * n_rep * hd, ml + s * 2 * n_rep);
            double *ref = malloc((size_t)hd * sizeof(double));
            for (int r = 0; r < n_rep; r++) {
                ref_attention(q + r * hd, k, v, stride, n, hd, scale, ref);
                double m = -INFINITY, l = 0;
                for (int s = 0; s < 3; s++)
                    m = ml[s * 2 * n_rep + 2 * r] > m ? ml[s * 2 * n_rep + 2 * r] : m;
                for (int s = 0; s < 3; s++)
                    l += exp(ml[s * 2 * n_rep + 2 * r] - m) * ml[s * 2 * n_rep + 2 * r + 1];
                for (int i = 0; i < hd; i++) {
                    double merged = 0;
                    for (int s = 0; s < 3; s++)
                        merged += exp(ml[s * 2 * n_rep + 2 * r] - m) * po[((size_t)s * n_rep + r) * hd + i];
                    merged /= l;
                    assert_true(fabs(out[r * hd + i] - ref[i]) < 2e-6);
                    assert_true(fabs(merged - ref[i]) < 2e-6);
                }
            }
            free(q), free(k), free(v), free(out), free(scores), free(po), free(ref);
        }
}

static void test_swiglu_add(void **state)
{
    (void)state;
    enum { N = 203 };
    float g[N], u[N], g0[N], y[N], y0[N];
    for (int i = 0; i < N; i++) {
        g[i] = g0[i] = (i - N / 2) * 0.3f; /* through the saturated ends of the sigmoid */
        u[i] = frand();
        y[i] = y0[i] = frand();
    }
    g[0] = g0[0] = -200.0f;
    g[1] = g0[1] = 200.0f;
    shoal_op_swiglu(g, u, N);
    for (int i = 0; i < N; i++) {
        double r = g0[i] / (1.0 + exp(-(double)g0[i])) * u[i];
        assert_true(fabs(g[i] - r) <= 1e-6 * fabs(r) + 1e-30);
    }
    shoal_op_add(y, u, N);
    for (int i = 0; i < N; i++)
        assert_true(y[i] == y0[i] + u[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rmsnorm),
        cmocka_unit_test(test_rope),
        cmocka_unit_test(test_attention),
        cmocka_unit_test(test_swiglu_add),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
