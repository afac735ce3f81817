/* test_sampler.c — the sampler against an independent float64 reference of the same pipeline
 * (full sort, no selection tricks): greedy = argmax, support of top-k / top-p / min-p on
 * hand-made and large random vocabularies, frequencies of temperature sampling against the
 * softmax, penalty arithmetic, seeded determinism, state save/restore and bad input.
 *
 * Frequency tolerance: each token's observed frequency must lie within 5 standard errors,
 * 5 * sqrt(q (1 - q) / N), plus 3 / N (three draws: rare tokens drawn twice by chance in a large
 * vocabulary must not fail the test), of its reference probability q. With the seeds fixed the
 * tests are deterministic; the bound is what a correct sampler meets with overwhelming
 * probability for any seed, and a wrong distribution (e.g. temperature ignored) misses it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/sampler.h"

/* ---------------------------------------------------------------- reference (float64) */

typedef struct ref_ent {
    double l;
    int id;
} ref_ent;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref_ent *a = pa, *b = pb;
    if (a->l != b->l)
        return a->l > b->l ? -1 : 1;
    return a->id - b->id;
}

/* Probability of every token under params p (no penalties), into q[n]. */
static void reference(const float *logits, int n, const shoal_sampler_params_t *p, double *q)
{
    ref_ent *e = malloc((size_t)n * sizeof *e);
    for (int i = 0; i < n; i++) {
        e[i].l = isnan(logits[i]) ? -INFINITY : logits[i];
        e[i].id = i;
        q[i] = 0.0;
    }
    qsort(e, (size_t)n, sizeof *e, ref_cmp);
    int keep = n;
    if (p->top_k > 0 && p->top_k < keep)
        keep = p->top_k;
    double lmax = e[0].l;
    if (p->top_p < 1.0f) {
        double z = 0.0, cum = 0.0;
        for (int i = 0; i < keep; i++)
            z += exp(e[i].l - lmax);
        for (int i = 0; i < keep; i++) {
            cum += exp(e[i].l - lmax) / z;
            if (cum >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0.0f) {
        int k = 0;
        while (k < keep && exp(e[k].l - lmax) >= p->min_p)
            k++;
        keep = k ? k : 1;
    }
    double w = 0.0;
    for (int i = 0; i < keep; i++)
        w += exp((e[i].l - lmax) / p->temperature);
    for (int i = 0; i < keep; i++)
        q[e[i].id] = exp((e[i].l - lmax) / p->temperature) / w;
    free(e);
}

static uint64_t g_lcg = 12345;
static double urand(void)
{
    g_lcg = g_lcg * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(g_lcg >> 11) * 0x1.0p-53;
}
static float nrand(void) { return (float)(sqrt(-2.0 * log(urand() + 1e-300)) * cos(6.283185307179586 * urand())); }

static uint64_t checksum(const float *x, int n)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        uint32_t b;
        memcpy(&b, &x[i], 4);
        h = (h ^ b) * 1099511628211ull;
    }
    return h;
}

static shoal_sampler_params_t plain(float temp)
{
    shoal_sampler_params_t p;
    shoal_sampler_params_init(&p);
    p.temperature = temp;
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.0f;
    p.repeat_penalty = 1.0f;
    p.seed = 42;
    return p;
}

/* Draws `draws` tokens and checks support and frequencies against the reference. */
static void check_distribution(const float *logits, int n, const shoal_sampler_params_t *p, int draws)
{
    double *q = malloc((size_t)n * sizeof *q);
    int *count = calloc((size_t)n, sizeof *count);
    reference(logits, n, p, q);
    shoal_sampler_t *s;
    assert_int_equal(shoal_sampler_new(p, n, &s), SHOAL_OK);
    uint64_t before = checksum(logits, n);
    for (int d = 0; d < draws; d++) {
        int32_t tok = -1;
        assert_int_equal(shoal_sampler_sample(s, logits, n, &tok), SHOAL_OK);
        assert_true(tok >= 0 && tok < n);
        if (q[tok] == 0.0)
            fprintf(stderr, "token %d drawn outside the reference support\n", tok);
        assert_true(q[tok] > 0.0);
        count[tok]++;
    }
    assert_true(checksum(logits, n) == before); /* the logits are only read */
    double worst = 0.0;
    for (int i = 0; i < n; i++) {
        double f = (double)count[i] / draws;
        double tol = 5.0 * sqrt(q[i] * (1.0 - q[i]) / draws) + 3.0 / draws;
        double dev = fabs(f - q[i]);
        if (dev > tol)
            fprintf(stderr, "token %d: frequency %.5f, reference %.5f (tolerance %.5f)\n", i, f, q[i], tol);
        assert_true(dev <= tol);
        if (dev / tol > worst)
            worst = dev / tol;
    }
    shoal_sampler_delete(s);
    free(q);
    free(count);
}

/* ---------------------------------------------------------------- tests */

static void test_greedy_is_argmax(void **state)
{
    (void)state;
    int n = 49152;
    float *l = malloc((size_t)n * sizeof *l);
    shoal_sampler_params_t p = plain(0.0f);
    p.top_k = 40; /* filters cannot change the argmax */
    p.top_p = 0.5f;
    p.min_p = 0.2f;
    shoal_sampler_t *s;
    assert_int_equal(shoal_sampler_new(&p, n, &s), SHOAL_OK);
    for (int rep = 0; rep < 20; rep++) {
        int best = 0;
        for (int i = 0; i < n; i++) {
            l[i] = nrand() * 4.0f;
            if (l[i] > l[best])
                best = i;
        }
        int32_t tok;
        uint64_t before = checksum(l, n);
        assert_int_equal(shoal_sampler_sample(s, l, n, &tok), SHOAL_OK);
        assert_int_equal(tok, best);
        assert_true(checksum(l, n) == before);
    }
    /* ties go to the lower id; NaN never wins; all -inf gives id 0 */
    for (int i = 0; i < n; i++)
        l[i] = -1.0f;
    l[777] = 3.0f;
    l[555] = 3.0f;
    l[100] = NAN;
    int32_t tok;
    assert_int_equal(shoal_sampler_sample(s, l, n, &tok), SHOAL_OK);
    assert_int_equal(tok, 555);
    for (int i = 0; i < n; i++)
        l[i] = -INFINITY;
    l[0] = NAN;
    assert_int_equal(shoal_sampler_sample(s, l, n, &tok), SHOAL_OK);
    assert_int_equal(tok, 0);
    shoal_sampler_delete(s);
    /* temperature sampling with every candidate at -inf is still defined */
    p = plain(1.0f);
    assert_int_equal(shoal_sampler_new(&p, 8, &s), SHOAL_OK);
    float inf8[8] = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
    assert_int_equal(shoal_sampler_sample(s, inf8, 8, &tok), SHOAL_OK);
    assert_int_equal(tok, 0);
    shoal_sampler_delete(s);
    free(l);
}

static void test_temperature_frequencies(void **state)
{
    (void)state;
    float l[12];
    for (int i = 0; i < 12; i++)
        l[i] = nrand() * 1.5f;
    for (int k = 0; k < 3; k++) {
        static const float temps[] = {1.0f, 0.5f, 2.0f};
        shoal_sampler_params_t p = plain(temps[k]);
        p.seed = 1000 + (uint64_t)k;
        check_distribution(l, 12, &p, 200000);
    }
}

/* Hand-made distribution p = (0.5, 0.2, 0.15, 0.1, 0.05): each filter's survivors by hand. */
static void test_filters_by_hand(void **state)
{
    (void)state;
    static const double pr[5] = {0.5, 0.2, 0.15, 0.1, 0.05};
    float l[5];
    for (int i = 0; i < 5; i++)
        l[i] = (float)log(pr[i]);
    struct {
        int top_k;
        float top_p, min_p;
        int support; /* tokens 0..support-1 survive */
    } cases[] = {
        {2, 1.0f, 0.0f, 2},  /* top-k 2 */
        {0, 0.8f, 0.0f, 3},  /* 0.5, 0.7 < 0.8 <= 0.85 */
        {0, 0.3f, 0.0f, 1},  /* the first token alone */
        {0, 1.0f, 0.25f, 3}, /* p >= 0.125 */
        {0, 1.0f, 0.39f, 2}, /* p >= 0.195 */
        {0, 1.0f, 1.0f, 1},  /* only the maximum */
        /* top-k 4, then top-p over the renormalised four (0.526, 0.737, 0.895, 1), then min-p */
        {4, 0.85f, 0.25f, 3},
        {4, 0.95f, 0.35f, 2},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        shoal_sampler_params_t p = plain(1.0f);
        p.top_k = cases[c].top_k;
        p.top_p = cases[c].top_p;
        p.min_p = cases[c].min_p;
        p.seed = 7 + c;
        double q[5];
        reference(l, 5, &p, q);
        for (int i = 0; i < 5; i++)
            if ((q[i] > 0.0) != (i < cases[c].support)) /* the reference agrees with the hand count */
                fail_msg("case %zu: reference support differs from the hand count at %d", c, i);
        check_distribution(l, 5, &p, 50000);
    }
}

/* Large vocabularies: top-p without top-k (the incremental selection), top-k with ties. */
static void test_large_vocab(void **state)
{
    (void)state;
    int n = 128256;
    float *l = malloc((size_t)n * sizeof *l);
    for (int i = 0; i < n; i++)
        l[i] = nrand() * 2.0f;
    for (int i = 0; i < 300; i++) /* a head of 300 strong candidates */
        l[(i * 7919) % n] = 8.0f + nrand();
    shoal_sampler_params_t p = plain(0.9f);
    p.top_p = 0.9f;
    check_distribution(l, n, &p, 1000);
    p = plain(1.0f);
    p.top_k = 50;
    p.min_p = 0.01f;
    check_distribution(l, n, &p, 1000);
    /* ties across the top-k boundary: lower ids win */
    for (int i = 0; i < n; i++)
        l[i] = 0.0f;
    for (int i = 0; i < 20; i++)
        l[n - 1 - i * 3] = 5.0f;
    p = plain(1.0f);
    p.top_k = 30;
    double *q = malloc((size_t)n * sizeof *q);
    reference(l, n, &p, q);
    for (int i = 0; i < 10; i++)
        assert_true(q[i] > 0.0); /* 20 at 5.0, then ids 0..9 at 0.0 */
    assert_true(q[10] == 0.0);
    check_distribution(l, n, &p, 1000);
    free(q);
    free(l);
}

static void test_defaults_distribution(void **state)
{
    (void)state;
    /* llama.cpp's defaults on a realistic spread of logits */
    int n = 2000;
    float *l = malloc((size_t)n * sizeof *l);
    for (int i = 0; i < n; i++)
        l[i] = nrand() * 3.0f;
    shoal_sampler_params_t p;
    shoal_sampler_params_init(&p);
    p.repeat_penalty = 1.0f;
    assert_true(p.temperature == 0.8f && p.top_k == 40 && p.top_p == 0.95f && p.min_p == 0.05f);
    check_distribution(l, n, &p, 50000);
    free(l);
}

static int32_t greedy_after(const float *l, int n, const shoal_sampler_params_t *p, const int32_t *hist, int nh)
{
    shoal_sampler_t *s;
    assert_int_equal(shoal_sampler_new(p, n, &s), SHOAL_OK);
    for (int i = 0; i < nh; i++)
        assert_int_equal(shoal_sampler_accept(s, hist[i]), SHOAL_OK);
    int32_t tok;
    assert_int_equal(shoal_sampler_sample(s, l, n, &tok), SHOAL_OK);
    shoal_sampler_delete(s);
    return tok;
}

static void test_penalties(void **state)
{
    (void)state;
    shoal_sampler_params_t p = plain(0.0f);
    p.repeat_penalty = 1.1f;
    p.repeat_last_n = 64;
    /* positive logit divided: 2.0 / 1.1 = 1.818 < 1.9 */
    float a[3] = {2.0f, 1.9f, -5.0f};
    int32_t h0[] = {0};
    assert_int_equal(greedy_after(a, 3, &p, NULL, 0), 0);
    assert_int_equal(greedy_after(a, 3, &p, h0, 1), 1);
    /* negative logit multiplied: -1.0 * 1.1 = -1.1 < -1.05 */
    float b[2] = {-1.0f, -1.05f};
    assert_int_equal(greedy_after(b, 2, &p, h0, 1), 1);
    /* a token seen three times is penalised once: 2.0 / 1.1 = 1.818 > 1.6 (thrice would be 1.503) */
    float c[2] = {2.0f, 1.6f};
    int32_t h000[] = {0, 0, 0};
    assert_int_equal(greedy_after(c, 2, &p, h000, 3), 0);
    /* the window: token 0 left it two tokens ago */
    p.repeat_last_n = 2;
    int32_t h0_56[] = {0, 1, 1};
    assert_int_equal(greedy_after(a, 3, &p, h0_56, 3), 0);
    int32_t h0_5[] = {2, 0};
    assert_int_equal(greedy_after(a, 3, &p, h0_5, 2), 1);
    /* frequency (per occurrence) and presence (once) penalties: 1.0 - 2 * 0.04 = 0.92 > 0.9,
     * then - 0.05 more = 0.87 < 0.9 */
    p = plain(0.0f);
    p.repeat_last_n = 8;
    p.frequency_penalty = 0.04f;
    float d[2] = {1.0f, 0.9f};
    int32_t h00[] = {0, 0};
    assert_int_equal(greedy_after(d, 2, &p, h00, 2), 0);
    p.presence_penalty = 0.05f;
    assert_int_equal(greedy_after(d, 2, &p, h00, 2), 1);
    /* penalised sampling: the distribution is the softmax of the penalised logits */
    p = plain(1.0f);
    p.repeat_penalty = 2.0f;
    p.repeat_last_n = 4;
    float e[4] = {1.0f, 1.0f, -1.0f, 0.0f};
    float pen[4] = {0.5f, 1.0f, -2.0f, 0.0f}; /* after accepting 0 and 2 */
    double q[4];
    reference(pen, 4, &p, q);
    shoal_sampler_t *s;
    assert_int_equal(shoal_sampler_new(&p, 4, &s), SHOAL_OK);
    assert_int_equal(shoal_sampler_accept(s, 0), SHOAL_OK);
    assert_int_equal(shoal_sampler_accept(s, 2), SHOAL_OK);
    int cnt[4] = {0};
    int N = 100000;
    for (int i = 0; i < N; i++) {
        int32_t t;
        assert_int_equal(shoal_sampler_sample(s, e, 4, &t), SHOAL_OK);
        cnt[t]++;
    }
    for (int i = 0; i < 4; i++)
        assert_true(fabs((double)cnt[i] / N - q[i]) <= 5.0 * sqrt(q[i] * (1 - q[i]) / N) + 3.0 / N);
    assert_true(e[0] == 1.0f && e[2] == -1.0f); /* the caller's logits untouched */
    shoal_sampler_delete(s);
}

static void test_determinism_and_state(void **state)
{
    (void)state;
    int n = 5000;
    float *l = malloc((size_t)n * sizeof *l);
    for (int i = 0; i < n; i++)
        l[i] = nrand() * 2.0f;
    shoal_sampler_params_t p;
    shoal_sampler_params_init(&p);
    p.repeat_penalty = 1.15f;
    p.seed = 0xC0FFEE;
    shoal_sampler_t *a, *b;
    assert_int_equal(shoal_sampler_new(&p, n, &a), SHOAL_OK);
    assert_int_equal(shoal_sampler_new(&p, n, &b), SHOAL_OK);
    int32_t ta, tb;
    for (int i = 0; i < 300; i++) {
        assert_int_equal(shoal_sampler_sample(a, l, n, &ta), SHOAL_OK);
        assert_int_equal(shoal_sampler_sample(b, l, n, &tb), SHOAL_OK);
        assert_int_equal(ta, tb);
        shoal_sampler_accept(a, ta);
        shoal_sampler_accept(b, tb);
    }
    /* a different seed gives a different sequence */
    shoal_sampler_reset(b, 1);
    shoal_sampler_reset(a, 2);
    int differ = 0;
    for (int i = 0; i < 100; i++) {
        shoal_sampler_sample(a, l, n, &ta);
        shoal_sampler_sample(b, l, n, &tb);
        differ += ta != tb;
    }
    assert_true(differ > 10);

    /* save, continue, restore into a sampler made with other parameters: same future */
    size_t sz = shoal_sampler_state_size(a);
    uint8_t *blob = malloc(sz);
    size_t w;
    assert_int_equal(shoal_sampler_state_save(a, blob, sz - 1, &w), SHOAL_E_LIMIT);
    assert_int_equal(shoal_sampler_state_save(a, blob, sz, &w), SHOAL_OK);
    assert_int_equal(w, sz);
    int32_t future[200];
    for (int i = 0; i < 200; i++) {
        shoal_sampler_sample(a, l, n, &future[i]);
        shoal_sampler_accept(a, future[i]);
    }
    shoal_sampler_params_t other = plain(0.0f);
    other.repeat_last_n = 3;
    shoal_sampler_t *c;
    assert_int_equal(shoal_sampler_new(&other, n, &c), SHOAL_OK);
    assert_int_equal(shoal_sampler_state_load(c, blob, sz), SHOAL_OK);
    assert_true(shoal_sampler_params(c)->temperature == p.temperature);
    assert_int_equal(shoal_sampler_params(c)->repeat_last_n, 64);
    for (int i = 0; i < 200; i++) {
        int32_t t;
        shoal_sampler_sample(c, l, n, &t);
        assert_int_equal(t, future[i]);
        shoal_sampler_accept(c, t);
    }
    /* bad blobs change nothing */
    uint8_t *bad = malloc(sz);
    memcpy(bad, blob, sz);
    bad[0] ^= 1;
    assert_int_equal(shoal_sampler_state_load(c, bad, sz), SHOAL_E_FORMAT);
    memcpy(bad, blob, sz);
    bad[4] = 9; /* version */
    assert_int_equal(shoal_sampler_state_load(c, bad, sz), SHOAL_E_FORMAT);
    assert_int_equal(shoal_sampler_state_load(c, blob, sz - 4), SHOAL_E_FORMAT);
    assert_int_equal(shoal_sampler_state_load(c, blob, 10), SHOAL_E_FORMAT);
    memcpy(bad, blob, sz);
    bad[sz - 1] = 0x7F; /* a history token far outside the vocabulary */
    assert_int_equal(shoal_sampler_state_load(c, bad, sz), SHOAL_E_FORMAT);
    memcpy(bad, blob, sz);
    memset(bad + 56, 0, 32); /* all-zero RNG state */
    assert_int_equal(shoal_sampler_state_load(c, bad, sz), SHOAL_E_FORMAT);
    shoal_sampler_t *d;
    assert_int_equal(shoal_sampler_new(&p, n + 1, &d), SHOAL_OK);
    assert_int_equal(shoal_sampler_state_load(d, blob, sz), SHOAL_E_FORMAT); /* other vocab */
    shoal_sampler_delete(d);
    /* after the failed loads, c still continues the restored sequence */
    int32_t t1, t2;
    shoal_sampler_sample(c, l, n, &t1);
    shoal_sampler_sample(a, l, n, &t2);
    assert_int_equal(t1, t2);
    free(bad);
    free(blob);
    shoal_sampler_delete(a);
    shoal_sampler_delete(b);
    shoal_sampler_delete(c);
    free(l);
}

static void test_rng(void **state)
{
    (void)state;
    shoal_rng_t r, r2;
    shoal_rng_seed(&r, 0);
    shoal_rng_seed(&r2, 0);
    double sum = 0.0;
    int N = 200000;
    for (int i = 0; i < N; i++) {
        double u = shoal_rng_uniform(&r);
        assert_true(u >= 0.0 && u < 1.0);
        sum += u;
        assert_true(shoal_rng_next(&r2) >> 11 == (uint64_t)(u * 0x1.0p53));
    }
    /* mean of U(0,1): standard error 1/sqrt(12 N) */
    assert_true(fabs(sum / N - 0.5) < 5.0 / sqrt(12.0 * N));
    assert_true((r.s[0] | r.s[1] | r.s[2] | r.s[3]) != 0);
}

static void test_bad_params(void **state)
{
    (void)state;
    shoal_sampler_params_t p = plain(1.0f);
    shoal_sampler_t *s = NULL;
    assert_int_equal(shoal_sampler_new(&p, 0, &s), SHOAL_E_INVALID);
    p.top_p = 0.0f;
    assert_int_equal(shoal_sampler_new(&p, 10, &s), SHOAL_E_INVALID);
    p = plain(NAN);
    assert_int_equal(shoal_sampler_new(&p, 10, &s), SHOAL_E_INVALID);
    p = plain(1.0f);
    p.min_p = 1.5f;
    assert_int_equal(shoal_sampler_new(&p, 10, &s), SHOAL_E_INVALID);
    p = plain(1.0f);
    p.repeat_penalty = 0.0f;
    assert_int_equal(shoal_sampler_new(&p, 10, &s), SHOAL_E_INVALID);
    p = plain(1.0f);
    p.repeat_last_n = -1;
    assert_int_equal(shoal_sampler_new(&p, 10, &s), SHOAL_E_INVALID);
    assert_null(s);
    p = plain(1.0f);
    assert_int_equal(shoal_sampler_new(&p, 10, &s), SHOAL_OK);
    float l[11] = {0};
    int32_t t;
    assert_int_equal(shoal_sampler_sample(s, l, 11, &t), SHOAL_E_INVALID); /* wrong vocab size */
    assert_int_equal(shoal_sampler_sample(s, NULL, 10, &t), SHOAL_E_INVALID);
    assert_int_equal(shoal_sampler_accept(s, 10), SHOAL_E_INVALID);
    assert_int_equal(shoal_sampler_accept(s, -1), SHOAL_E_INVALID);
    shoal_sampler_delete(s);
    shoal_sampler_delete(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_is_argmax),   cmocka_unit_test(test_temperature_frequencies),
        cmocka_unit_test(test_filters_by_hand),    cmocka_unit_test(test_large_vocab),
        cmocka_unit_test(test_defaults_distribution), cmocka_unit_test(test_penalties),
        cmocka_unit_test(test_determinism_and_state), cmocka_unit_test(test_rng),
        cmocka_unit_test(test_bad_params),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
