/* test_llama.c — the Llama forward pass against a float64 reference on the real SmolLM2 model:
 * top-1 agreement and max |logit error| at every position; batched prefill == token-by-token;
 * KV cache restore is bit-exact; context-overflow, bad-token and reset behaviour; greedy "Paris".
 *
 * Two references: the float64 fixture written by an independent numpy implementation
 * (tests/fixtures/logits_smollm2.bin, when present) and an in-test float64 forward pass
 * written directly from the architecture (weights dequantised exactly with quant.h, every sum
 * in double, RoPE angles from the metadata, no shared code with src/model/llama*.c). */
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
#include "model/llama.h"
#include "model/quant.h"
#include "model/tokenizer.h"

/* Tolerances on |logit - float64 reference| (this model's logits span about [-30, 37]).
 * The reference dequantises weights exactly and sums in double, so all of the error is Shoal's
 * activation rounding and float32 accumulation:
 * - act_planes = 2 (default): activations carry ~15 bits (an 8-bit plane plus an 8-bit plane of
 *   its residual, blocks of 32). Measured max |err| 0.0060-0.0093 on the prompts here and in
 *   the numpy fixture; 0.05 leaves 5x margin and is below the top-1 gaps (the closest here is
 *   0.064), so top-1 must match at every position.
 * - act_planes = 1: 8-bit activations, as llama.cpp does (Q8_1 for Q4_1 weights). Each matmul
 *   input is perturbed by up to amax/254 per element; through 30 layers that moves logits by up
 *   to 1.4-1.6 here (llama.cpp itself: 0.35-1.0 against the same reference on prompt 0), enough to
 *   flip near-tied tokens (1-2 of the 16 positions of prompt 0, whose gaps are < 0.11). Only the bound is
 *   checked: 3.0 leaves ~2x margin. */
#define LOGIT_TOL 0.05
#define LOGIT_TOL_8BIT 3.0
/* Batched vs token-by-token: decode runs a one-row kernel, prefill a four-row one, so float sums
 * round differently; through 30 layers (and activation re-quantisation, where a last-bit change
 * can move a rounding) that shows as up to 6.5e-3 here. Each path is within 0.0093 of float64,
 * so 0.02 bounds their difference with margin. */
#define BATCH_TOL 0.02

typedef struct fixture {
    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    shoal_threadpool_t *pool;
    shoal_tokenizer_t *tok;
} fixture_t;

static char g_model_path[4096];

static int setup(void **state)
{
    const char *deps = getenv("SHOAL_DEPS");
    snprintf(g_model_path, sizeof g_model_path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
    fixture_t *f = calloc(1, sizeof *f);
    if (shoal_gguf_open(g_model_path, &f->g) != SHOAL_OK) {
        fprintf(stderr, "model not found (%s): %s\n", g_model_path, shoal_last_error());
        free(f);
        *state = NULL;
        return 0;
    }
    assert_int_equal(shoal_llama_model_new(f->g, &f->m), SHOAL_OK);
    assert_int_equal(shoal_threadpool_new(2, &f->pool), SHOAL_OK);
    if (shoal_tokenizer_new_from_gguf(f->g, &f->tok) != SHOAL_OK)
        f->tok = NULL;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (!f)
        return 0;
    shoal_tokenizer_delete(f->tok);
    shoal_threadpool_delete(f->pool);
    shoal_llama_model_delete(f->m);
    shoal_gguf_close(f->g);
    free(f);
    return 0;
}

#define NEED_MODEL(f)                                                                                                  \
    do {                                                                                                               \
        if (!(f))                                                                                                      \
            skip();                                                                                                    \
    } while (0)

/* ---------------------------------------------------------------- float64 reference */

typedef struct ref_mat {
    double *w; /* (rows, cols) */
    int rows, cols;
} ref_mat_t;

static ref_mat_t ref_load(const shoal_gguf_t *g, const char *name)
{
    const shoal_gguf_tensor_t *t;
    assert_int_equal(shoal_gguf_find_tensor(g, name, &t), SHOAL_OK);
    ref_mat_t m = {NULL, (int)t->ne[1], (int)t->ne[0]};
    m.w = malloc((size_t)m.rows * m.cols * sizeof(double));
    float *row = malloc((size_t)m.cols * sizeof(float));
    assert_non_null(m.w);
    for (int r = 0; r < m.rows; r++) {
        assert_int_equal(shoal_dequantize_row(t->type, (const char *)t->data + (size_t)r * t->row_bytes, row, m.cols),
                         SHOAL_OK);
        for (int c = 0; c < m.cols; c++)
            m.w[(size_t)r * m.cols + c] = row[c];
    }
    free(row);
    return m;
}

/* y (T, rows) = x (T, cols) @ W^T */
static void ref_matmul(const ref_mat_t *m, const double *x, int T, double *y)
{
    for (int t = 0; t < T; t++)
        for (int r = 0; r < m->rows; r++) {
            const double *w = m->w + (size_t)r * m->cols, *xt = x + (size_t)t * m->cols;
            double s = 0;
            for (int c = 0; c < m->cols; c++)
                s += w[c] * xt[c];
            y[(size_t)t * m->rows + r] = s;
        }
}

static void ref_rmsnorm(const double *x, const ref_mat_t *w, int T, int dim, double eps, double *out)
{
    for (int t = 0; t < T; t++) {
        double ss = 0;
        for (int i = 0; i < dim; i++)
            ss += x[(size_t)t * dim + i] * x[(size_t)t * dim + i];
        double sc = 1.0 / sqrt(ss / dim + eps);
        for (int i = 0; i < dim; i++)
            out[(size_t)t * dim + i] = x[(size_t)t * dim + i] * sc * w->w[i];
    }
}

static uint32_t meta_u32(const shoal_gguf_t *g, const char *key)
{
    uint32_t v = 0;
    assert_int_equal(shoal_gguf_get_u32(g, key, &v), SHOAL_OK);
    return v;
}

static float meta_f32(const shoal_gguf_t *g, const char *key)
{
    float v = 0;
    assert_int_equal(shoal_gguf_get_f32(g, key, &v), SHOAL_OK);
    return v;
}

/* All T positions' logits (T, vocab) in double, straight from the GGUF. */
static double *ref_forward(const shoal_gguf_t *g, const int32_t *tokens, int T)
{
    const int L = (int)meta_u32(g, "llama.block_count"), dim = (int)meta_u32(g, "llama.embedding_length"),
              ffn = (int)meta_u32(g, "llama.feed_forward_length"), nh = (int)meta_u32(g, "llama.attention.head_count"),
              nkv = (int)meta_u32(g, "llama.attention.head_count_kv"), hd = dim / nh,
              rd = (int)meta_u32(g, "llama.rope.dimension_count");
    const double base = meta_f32(g, "llama.rope.freq_base"), eps = meta_f32(g, "llama.attention.layer_norm_rms_epsilon");
    const int qd = nh * hd, kvd = nkv * hd;
    /* RoPE frequencies, with Llama 3 scaling when the metadata asks for it (formula of the
     * Llama 3.1 release: keep short wavelengths, divide long ones by factor, blend between) */
    double *freq = malloc((size_t)(rd / 2) * sizeof(double));
    uint64_t kidx;
    bool llama3 = shoal_gguf_find_key(g, "llama.rope.scaling.type", &kidx) == SHOAL_OK;
    for (int i = 0; i < rd / 2; i++) {
        freq[i] = pow(base, -2.0 * i / rd);
        if (llama3) {
            double factor = meta_f32(g, "llama.rope.scaling.factor"), lo = meta_f32(g, "llama.rope.scaling.low_freq_factor"),
                   hi = meta_f32(g, "llama.rope.scaling.high_freq_factor"),
                   orig = meta_u32(g, "llama.rope.scaling.original_context_length");
            double wl = 2 * M_PI / freq[i];
            if (wl > orig / lo)
                freq[i] /= factor;
            else if (wl >= orig / hi) {
                double sm = (orig / wl - lo) / (hi - lo);
                freq[i] = (1 - sm) * freq[i] / factor + sm * freq[i];
            }
        }
    }
    double *x = calloc((size_t)T * dim, sizeof(double)), *xn = calloc((size_t)T * dim, sizeof(double));
    double *q = calloc((size_t)T * qd, sizeof(double)), *k = calloc((size_t)T * kvd, sizeof(double));
    double *v = calloc((size_t)T * kvd, sizeof(double)), *att = calloc((size_t)T * qd, sizeof(double));
    double *tmp = calloc((size_t)T * dim, sizeof(double)), *hg = calloc((size_t)T * ffn, sizeof(double));
    double *hu = calloc((size_t)T * ffn, sizeof(double)), *sc = calloc((size_t)T, sizeof(double));
    char name[96];

    ref_mat_t emb = ref_load(g, "token_embd.weight");
    const int vocab = emb.rows;
    for (int t = 0; t < T; t++)
        memcpy(x + (size_t)t * dim, emb.w + (size_t)tokens[t] * dim, (size_t)dim * sizeof(double));

    for (int l = 0; l < L; l++) {
#define LOAD(var, suffix)                                                                                              \
    snprintf(name, sizeof name, "blk.%d." suffix ".weight", l);                                                       \
    ref_mat_t var = ref_load(g, name);
        LOAD(an, "attn_norm") LOAD(wq, "attn_q") LOAD(wk, "attn_k") LOAD(wv, "attn_v") LOAD(wo, "attn_output")
        LOAD(fnrm, "ffn_norm") LOAD(wg, "ffn_gate") LOAD(wu, "ffn_up") LOAD(wd, "ffn_down")
#undef LOAD
        ref_rmsnorm(x, &an, T, dim, eps, xn);
        ref_matmul(&wq, xn, T, q);
        ref_matmul(&wk, xn, T, k);
        ref_matmul(&wv, xn, T, v);
        /* RoPE, adjacent pairs, angle pos * base^(-2i/rd) */
        for (int t = 0; t < T; t++)
            for (int i = 0; i < rd / 2; i++) {
                double a = t * freq[i], c = cos(a), s = sin(a);
                for (int h = 0; h < nh + nkv; h++) {
                    double *p = h < nh ? q + (size_t)t * qd + (size_t)h * hd : k + (size_t)t * kvd + (size_t)(h - nh) * hd;
                    double x0 = p[2 * i], x1 = p[2 * i + 1];
                    p[2 * i] = x0 * c - x1 * s;
                    p[2 * i + 1] = x0 * s + x1 * c;
                }
            }
        for (int t = 0; t < T; t++)
            for (int h = 0; h < nh; h++) {
                int kh = h / (nh / nkv);
                const double *qh = q + (size_t)t * qd + (size_t)h * hd;
                double mx = -INFINITY, sum = 0;
                for (int p = 0; p <= t; p++) {
                    double s = 0;
                    for (int i = 0; i < hd; i++)
                        s += qh[i] * k[(size_t)p * kvd + (size_t)kh * hd + i];
                    sc[p] = s / sqrt((double)hd);
                    mx = sc[p] > mx ? sc[p] : mx;
                }
                for (int p = 0; p <= t; p++)
                    sum += (sc[p] = exp(sc[p] - mx));
                for (int i = 0; i < hd; i++) {
                    double o = 0;
                    for (int p = 0; p <= t; p++)
                        o += sc[p] * v[(size_t)p * kvd + (size_t)kh * hd + i];
                    att[(size_t)t * qd + (size_t)h * hd + i] = o / sum;
                }
            }
        ref_matmul(&wo, att, T, tmp);
        for (size_t i = 0; i < (size_t)T * dim; i++)
            x[i] += tmp[i];
        ref_rmsnorm(x, &fnrm, T, dim, eps, xn);
        ref_matmul(&wg, xn, T, hg);
        ref_matmul(&wu, xn, T, hu);
        for (size_t i = 0; i < (size_t)T * ffn; i++)
            hg[i] = hg[i] / (1.0 + exp(-hg[i])) * hu[i];
        ref_matmul(&wd, hg, T, tmp);
        for (size_t i = 0; i < (size_t)T * dim; i++)
            x[i] += tmp[i];
        ref_mat_t *all[] = {&an, &wq, &wk, &wv, &wo, &fnrm, &wg, &wu, &wd};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
            free(all[i]->w);
    }
    ref_mat_t on = ref_load(g, "output_norm.weight");
    ref_rmsnorm(x, &on, T, dim, eps, xn);
    double *logits = malloc((size_t)T * vocab * sizeof(double));
    const shoal_gguf_tensor_t *ot;
    if (shoal_gguf_find_tensor(g, "output.weight", &ot) == SHOAL_OK) {
        ref_mat_t out = ref_load(g, "output.weight");
        ref_matmul(&out, xn, T, logits);
        free(out.w);
    } else {
        ref_matmul(&emb, xn, T, logits); /* tied embeddings */
    }
    free(freq);
    free(on.w);
    free(emb.w);
    free(x), free(xn), free(q), free(k), free(v), free(att), free(tmp), free(hg), free(hu), free(sc);
    return logits;
}

/* ---------------------------------------------------------------- helpers */

static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static float frand_t(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static int argmax_f(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static int argmax_d(const double *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static int encode(fixture_t *f, const char *text, int32_t *ids, int cap)
{
    size_t n = 0;
    assert_non_null(f->tok);
    assert_int_equal(shoal_tokenizer_encode(f->tok, text, strlen(text), true, false, ids, (size_t)cap, &n), SHOAL_OK);
    return (int)n;
}

/* Fixed prompts of the in-test reference (token ids, so the test does not depend on the tokenizer). */
static const int32_t k_prompt_chat[] = {1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198};
static const int32_t k_prompt_misc[] = {504, 2365, 6354, 16438, 27003, 690, 260, 23790, 2767, 30, 378, 216, 33, 34, 35};

static void compare_to_ref(fixture_t *f, const int32_t *tokens, int T, const double *ref, const char *label,
                           int act_planes, bool portable, double tol, bool strict_top1)
{
    const int vocab = f->m->hp.vocab;
    shoal_llama_ctx_t *c;
    shoal_llama_ctx_params_t p;
    shoal_llama_ctx_params_init(&p);
    p.n_ctx = 256;
    p.n_batch = 7; /* several chunks, the last one partial */
    p.act_planes = act_planes;
    p.portable_kernels = portable;
    assert_int_equal(shoal_llama_ctx_new(f->m, &p, f->pool, &c), SHOAL_OK);
    float *lg = malloc((size_t)T * vocab * sizeof(float));
    assert_int_equal(shoal_llama_eval(c, tokens, T, 0, lg, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    double max_err = 0;
    int mismatches = 0;
    for (int t = 0; t < T; t++) {
        const float *lt = lg + (size_t)t * vocab;
        const double *rt = ref + (size_t)t * vocab;
        double amax = 0;
        for (int i = 0; i < vocab; i++) {
            double e = fabs(lt[i] - rt[i]);
            max_err = e > max_err ? e : max_err;
            amax = fabs(rt[i]) > amax ? fabs(rt[i]) : amax;
        }
        if (getenv("LLAMA_TEST_VERBOSE")) {
            double pe = 0;
            for (int i = 0; i < vocab; i++)
                pe = fabs(lt[i] - rt[i]) > pe ? fabs(lt[i] - rt[i]) : pe;
            fprintf(stderr, "  pos %d: max err %.4f, |ref| max %.2f\n", t, pe, amax);
        }
        int a = argmax_f(lt, vocab), b = argmax_d(rt, vocab);
        if (a != b) {
            fprintf(stderr, "%s: position %d: top-1 %d, reference %d (%.4f vs %.4f)\n", label, t, a, b, rt[a], rt[b]);
            mismatches++;
        }
    }
    fprintf(stderr, "%s: %d positions, %d top-1 mismatches, max |logit err| = %.4f (tolerance %.2f)\n", label, T,
            mismatches, max_err, tol);
    if (strict_top1)
        assert_int_equal(mismatches, 0);
    assert_true(max_err < tol);
    free(lg);
    shoal_llama_ctx_delete(c);
}


/* The independent numpy float64 reference (tests/fixtures/README.md, format SHOALLG1): logits at
 * every position of 4 prompts and the reference's 16-token greedy continuations. */
static uint32_t rd_u32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static void test_matches_numpy_fixture(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    const char *src = getenv("SHOAL_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/logits_smollm2.bin", src ? src : ".");
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "fixture %s missing\n", path);
        skip();
    }
    fseek(fp, 0, SEEK_END);
    long len = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *buf = malloc((size_t)len);
    assert_int_equal(fread(buf, 1, (size_t)len, fp), (size_t)len);
    fclose(fp);
    assert_true(len >= 24 && !memcmp(buf, "SHOALLG1", 8));
    const int vocab = f->m->hp.vocab;
    assert_int_equal(rd_u32(buf + 8), 1);
    assert_int_equal(rd_u32(buf + 12), (uint32_t)vocab);
    const int n_prompts = (int)rd_u32(buf + 16), n_greedy = (int)rd_u32(buf + 20);
    size_t off = 24;
    double worst = 0;
    for (int pi = 0; pi < n_prompts; pi++) {
        assert_true(off + 8 <= (size_t)len);
        int T = (int)rd_u32(buf + off);
        off += 8;
        assert_true(T > 0 && off + 4 * ((size_t)T + n_greedy + (size_t)T * vocab) <= (size_t)len);
        int32_t *ids = malloc(((size_t)T + n_greedy) * sizeof(int32_t));
        memcpy(ids, buf + off, (size_t)(T + n_greedy) * 4);
        off += 4 * (size_t)(T + n_greedy);
        double *ref = malloc((size_t)T * vocab * sizeof(double));
        for (size_t i = 0; i < (size_t)T * vocab; i++) {
            float v;
            memcpy(&v, buf + off + 4 * i, 4);
            ref[i] = v;
        }
        off += 4 * (size_t)T * vocab;
        char label[64];
        snprintf(label, sizeof label, "numpy fixture, prompt %d", pi);
        compare_to_ref(f, ids, T, ref, label, 2, false, LOGIT_TOL, true);

        /* greedy continuation, token by token (the decode path) */
        shoal_llama_ctx_t *c;
        assert_int_equal(shoal_llama_ctx_new(f->m, NULL, f->pool, &c), SHOAL_OK);
        float *lg = malloc((size_t)vocab * sizeof(float));
        assert_int_equal(shoal_llama_eval(c, ids, T, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        for (int s = 0; s < n_greedy; s++) {
            int32_t t = argmax_f(lg, vocab);
            if (t != ids[T + s])
                fprintf(stderr, "%s: greedy step %d: %d, reference %d\n", label, s, t, ids[T + s]);
            assert_int_equal(t, ids[T + s]);
            assert_int_equal(shoal_llama_eval(c, &t, 1, T + s, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        }
        fprintf(stderr, "%s: greedy continuation of %d tokens identical\n", label, n_greedy);
        free(lg);
        shoal_llama_ctx_delete(c);
        free(ref);
        free(ids);
        (void)worst;
    }
    assert_int_equal(off, (size_t)len);
    free(buf);
}

/* ---------------------------------------------------------------- tests */

static void test_hparams(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    const shoal_llama_hparams_t *hp = &f->m->hp;
    assert_int_equal(hp->n_layer, 30);
    assert_int_equal(hp->dim, 576);
    assert_int_equal(hp->ffn_dim, 1536);
    assert_int_equal(hp->n_head, 9);
    assert_int_equal(hp->n_head_kv, 3);
    assert_int_equal(hp->head_dim, 64);
    assert_int_equal(hp->vocab, 49152);
    assert_true(f->m->tied_output);
    assert_ptr_equal(f->m->output.data, f->m->tok_embd.data);
    /* weights are views of the mapping, not copies */
    const char *base = shoal_gguf_base(f->g);
    const char *wq = f->m->layers[0].wq.data;
    assert_true(wq > base && wq < base + shoal_gguf_file_size(f->g));
}

static void test_matches_float64_reference(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    const int32_t *prompts[] = {k_prompt_chat, k_prompt_misc};
    const int lens[] = {(int)(sizeof k_prompt_chat / 4), (int)(sizeof k_prompt_misc / 4)};
    for (int i = 0; i < 2; i++) {
        double *ref = ref_forward(f->g, prompts[i], lens[i]);
        char label[64];
        snprintf(label, sizeof label, "in-test reference, prompt %d", i);
        compare_to_ref(f, prompts[i], lens[i], ref, label, 2, false, LOGIT_TOL, true);
        snprintf(label, sizeof label, "in-test reference, prompt %d, portable kernels", i);
        compare_to_ref(f, prompts[i], lens[i], ref, label, 2, true, LOGIT_TOL, true);
        snprintf(label, sizeof label, "in-test reference, prompt %d, 8-bit", i);
        compare_to_ref(f, prompts[i], lens[i], ref, label, 1, false, LOGIT_TOL_8BIT, false);
        free(ref);
    }
}

static void test_batched_equals_sequential(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    const int vocab = f->m->hp.vocab, T = (int)(sizeof k_prompt_misc / 4);
    shoal_llama_ctx_t *a, *b;
    assert_int_equal(shoal_llama_ctx_new(f->m, NULL, f->pool, &a), SHOAL_OK);
    assert_int_equal(shoal_llama_ctx_new(f->m, NULL, NULL, &b), SHOAL_OK); /* serial, too */
    float *la = malloc((size_t)T * vocab * sizeof(float)), *lb = malloc((size_t)vocab * sizeof(float));
    assert_int_equal(shoal_llama_eval(a, k_prompt_misc, T, 0, la, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    double max_err = 0;
    for (int t = 0; t < T; t++) {
        assert_int_equal(shoal_llama_eval(b, &k_prompt_misc[t], 1, t, lb, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        for (int i = 0; i < vocab; i++) {
            double e = fabs(lb[i] - la[(size_t)t * vocab + i]);
            max_err = e > max_err ? e : max_err;
        }
    }
    fprintf(stderr, "batched vs token-by-token: max |diff| = %.2e\n", max_err);
    assert_true(max_err < BATCH_TOL);
    assert_int_equal(shoal_llama_n_past(a), T);
    assert_int_equal(shoal_llama_n_past(b), T);
    /* LAST mode writes only the last row: the rest of the buffer stays untouched */
    float *guard = malloc((size_t)2 * vocab * sizeof(float));
    for (int i = 0; i < 2 * vocab; i++)
        guard[i] = 12345.0f;
    shoal_llama_reset(a);
    assert_int_equal(shoal_llama_eval(a, k_prompt_misc, T, 0, guard, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    for (int i = vocab; i < 2 * vocab; i++)
        assert_true(guard[i] == 12345.0f);
    for (int i = 0; i < vocab; i++)
        assert_true(fabsf(guard[i] - la[(size_t)(T - 1) * vocab + i]) < BATCH_TOL);
    free(guard);
    free(la);
    free(lb);
    shoal_llama_ctx_delete(a);
    shoal_llama_ctx_delete(b);
}

static void test_kv_restore_bit_exact(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    const shoal_llama_hparams_t *hp = &f->m->hp;
    const int vocab = hp->vocab, T = 10;
    shoal_llama_ctx_t *c;
    assert_int_equal(shoal_llama_ctx_new(f->m, NULL, f->pool, &c), SHOAL_OK);
    float *l1 = malloc((size_t)vocab * sizeof(float)), *l2 = malloc((size_t)vocab * sizeof(float));
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, T, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    /* save rows [0, T) of every layer */
    size_t row_bytes = 0;
    float *k, *v;
    char *saved = malloc((size_t)hp->n_layer * 2 * T * hp->kv_dim * sizeof(float)), *p = saved;
    for (int l = 0; l < hp->n_layer; l++) {
        assert_int_equal(shoal_llama_kv_layer(c, l, &k, &v, &row_bytes), SHOAL_OK);
        assert_int_equal(row_bytes, hp->kv_dim * sizeof(float));
        memcpy(p, k, T * row_bytes), p += T * row_bytes;
        memcpy(p, v, T * row_bytes), p += T * row_bytes;
    }
    assert_int_equal(shoal_llama_eval(c, &k_prompt_misc[T], 1, T, l1, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    /* clobber the cache with another sequence, then restore */
    shoal_llama_reset(c);
    assert_int_equal(shoal_llama_eval(c, k_prompt_chat, 12, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    p = saved;
    for (int l = 0; l < hp->n_layer; l++) {
        assert_int_equal(shoal_llama_kv_layer(c, l, &k, &v, &row_bytes), SHOAL_OK);
        memcpy(k, p, T * row_bytes), p += T * row_bytes;
        memcpy(v, p, T * row_bytes), p += T * row_bytes;
    }
    assert_int_equal(shoal_llama_set_n_past(c, T), SHOAL_OK);
    assert_int_equal(shoal_llama_eval(c, &k_prompt_misc[T], 1, T, l2, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_memory_equal(l1, l2, (size_t)vocab * sizeof(float));
    assert_int_equal(shoal_llama_kv_layer(c, hp->n_layer, &k, &v, &row_bytes), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_set_n_past(c, shoal_llama_n_ctx(c) + 1), SHOAL_E_INVALID);
    free(saved);
    free(l1);
    free(l2);
    shoal_llama_ctx_delete(c);
}

static void test_limits_and_bad_input(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    const int vocab = f->m->hp.vocab;
    shoal_llama_ctx_params_t p;
    shoal_llama_ctx_params_init(&p);
    p.n_ctx = 8;
    shoal_llama_ctx_t *c;
    assert_int_equal(shoal_llama_ctx_new(f->m, &p, f->pool, &c), SHOAL_OK);
    assert_int_equal(shoal_llama_n_ctx(c), 8);
    float *lg = malloc((size_t)vocab * sizeof(float));
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 9, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_LIMIT);
    assert_non_null(strstr(shoal_last_error(), "n_ctx = 8"));
    assert_int_equal(shoal_llama_n_past(c), 0);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 5, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 4, 5, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_LIMIT);
    assert_int_equal(shoal_llama_n_past(c), 5);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 3, 5, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_llama_n_past(c), 8);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 1, 8, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_LIMIT);
    /* bad tokens, positions, modes, buffers: rejected before anything changes */
    int32_t bad[2] = {5, vocab};
    assert_int_equal(shoal_llama_eval(c, bad, 2, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    bad[1] = -1;
    assert_int_equal(shoal_llama_eval(c, bad, 2, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_n_past(c), 8);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 0, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 1, 9, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 1, -1, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 1, 0, NULL, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 1, 0, lg, 7), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_eval(NULL, k_prompt_misc, 1, 0, lg, 1), SHOAL_E_INVALID);
    /* reset: a full context works again; rewinding (pos0 < n_past) too */
    shoal_llama_reset(c);
    assert_int_equal(shoal_llama_n_past(c), 0);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 8, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_llama_eval(c, k_prompt_misc, 2, 3, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_llama_n_past(c), 5);
    free(lg);
    shoal_llama_ctx_delete(c);
    /* oversize parameters */
    p.n_ctx = (1 << 24) + 1;
    assert_int_equal(shoal_llama_ctx_new(f->m, &p, NULL, &c), SHOAL_E_INVALID);
    assert_int_equal(shoal_llama_ctx_new(NULL, NULL, NULL, &c), SHOAL_E_INVALID);
}

static void test_greedy_paris(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    if (!f->tok)
        skip();
    int32_t ids[128];
    int n = encode(f, "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n", ids, 128);
    shoal_llama_ctx_t *c;
    assert_int_equal(shoal_llama_ctx_new(f->m, NULL, f->pool, &c), SHOAL_OK);
    const int vocab = f->m->hp.vocab;
    float *lg = malloc((size_t)vocab * sizeof(float));
    assert_int_equal(shoal_llama_eval(c, ids, n, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    char text[1024];
    size_t len = 0;
    for (int s = 0; s < 24; s++) {
        int32_t t = argmax_f(lg, vocab);
        if (shoal_tokenizer_is_eog(f->tok, t))
            break;
        size_t pl = 0;
        assert_int_equal(shoal_tokenizer_token_to_piece(f->tok, t, false, text + len, sizeof text - 1 - len, &pl),
                         SHOAL_OK);
        len += pl;
        assert_int_equal(shoal_llama_eval(c, &t, 1, n + s, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    }
    text[len] = 0;
    fprintf(stderr, "greedy answer: \"%s\"\n", text);
    assert_non_null(strstr(text, "Paris"));
    free(lg);
    shoal_llama_ctx_delete(c);
}


/* ---------------------------------------------------------------- a synthetic model */

/* A small random Llama GGUF built in memory: mixed weight types (Q4_0, Q4_1, Q8_0, F16, F32), a
 * separate output matrix, GQA 4:2, partial RoPE (rope_dim < head_dim) and Llama 3 frequency
 * scaling, none of which SmolLM2 exercises. */
typedef struct gw {
    uint8_t *buf;
    size_t len, cap;
} gw_t;

static void gw_put(gw_t *w, const void *p, size_t n)
{
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2;
        w->buf = realloc(w->buf, w->cap);
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}
static void gw_u32(gw_t *w, uint32_t v) { gw_put(w, &v, 4); }
static void gw_u64(gw_t *w, uint64_t v) { gw_put(w, &v, 8); }
static void gw_str(gw_t *w, const char *s)
{
    gw_u64(w, strlen(s));
    gw_put(w, s, strlen(s));
}
static void gw_kv_u32(gw_t *w, const char *k, uint32_t v)
{
    gw_str(w, k);
    gw_u32(w, SHOAL_GGUF_U32);
    gw_u32(w, v);
}
static void gw_kv_f32(gw_t *w, const char *k, float v)
{
    gw_str(w, k);
    gw_u32(w, SHOAL_GGUF_F32);
    gw_put(w, &v, 4);
}
static void gw_kv_str(gw_t *w, const char *k, const char *v)
{
    gw_str(w, k);
    gw_u32(w, SHOAL_GGUF_STRING);
    gw_str(w, v);
}

typedef struct synth_tensor {
    char name[48];
    uint32_t type;
    int n_in, n_out;
} synth_tensor_t;

enum { S_DIM = 64, S_HEADS = 4, S_KV = 2, S_FFN = 96, S_LAYERS = 2, S_VOCAB = 40, S_ROPE = 8 };

static uint8_t *make_synthetic(size_t *len_out)
{
    synth_tensor_t ts[64];
    int nt = 0;
#define T(nm, ty, in, out) (snprintf(ts[nt].name, sizeof ts[nt].name, "%s", nm), ts[nt].type = ty, ts[nt].n_in = in, ts[nt].n_out = out, nt++)
    T("token_embd.weight", SHOAL_GGML_F16, S_DIM, S_VOCAB);
    T("output_norm.weight", SHOAL_GGML_F32, S_DIM, 1);
    T("output.weight", SHOAL_GGML_Q8_0, S_DIM, S_VOCAB);
    for (int l = 0; l < S_LAYERS; l++) {
        char b[48];
#define TL(sfx, ty, in, out) (snprintf(b, sizeof b, "blk.%d.%s.weight", l, sfx), T(b, ty, in, out))
        TL("attn_norm", SHOAL_GGML_F32, S_DIM, 1);
        TL("attn_q", SHOAL_GGML_Q4_0, S_DIM, S_DIM);
        TL("attn_k", SHOAL_GGML_Q8_0, S_DIM, S_DIM / S_HEADS * S_KV);
        TL("attn_v", SHOAL_GGML_Q4_1, S_DIM, S_DIM / S_HEADS * S_KV);
        TL("attn_output", SHOAL_GGML_F16, S_DIM, S_DIM);
        TL("ffn_norm", SHOAL_GGML_F32, S_DIM, 1);
        TL("ffn_gate", SHOAL_GGML_Q4_1, S_DIM, S_FFN);
        TL("ffn_up", SHOAL_GGML_Q8_0, S_DIM, S_FFN);
        TL("ffn_down", SHOAL_GGML_F32, S_FFN, S_DIM);
#undef TL
    }
#undef T
    gw_t w = {0};
    gw_u32(&w, 0x46554747);
    gw_u32(&w, 3);
    gw_u64(&w, (uint64_t)nt);
    gw_u64(&w, 13);
    gw_kv_str(&w, "general.architecture", "llama");
    gw_kv_u32(&w, "llama.block_count", S_LAYERS);
    gw_kv_u32(&w, "llama.embedding_length", S_DIM);
    gw_kv_u32(&w, "llama.feed_forward_length", S_FFN);
    gw_kv_u32(&w, "llama.attention.head_count", S_HEADS);
    gw_kv_u32(&w, "llama.attention.head_count_kv", S_KV);
    gw_kv_u32(&w, "llama.rope.dimension_count", S_ROPE);
    gw_kv_f32(&w, "llama.rope.freq_base", 10000.0f);
    gw_kv_f32(&w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gw_kv_str(&w, "llama.rope.scaling.type", "llama3");
    gw_kv_f32(&w, "llama.rope.scaling.factor", 8.0f);
    gw_kv_f32(&w, "llama.rope.scaling.low_freq_factor", 1.0f);
    gw_kv_f32(&w, "llama.rope.scaling.high_freq_factor", 4.0f);
    /* 13 keys so far would be 14 with this one: count it */
    size_t data_size = 0;
    uint64_t offs[64];
    for (int i = 0; i < nt; i++) {
        offs[i] = data_size;
        data_size += (shoal_qtype_row_size(ts[i].type, ts[i].n_in) * ts[i].n_out + 31) & ~(size_t)31;
    }
    gw_kv_u32(&w, "llama.rope.scaling.original_context_length", 64);
    uint64_t nkv = 14;
    memcpy(w.buf + 16, &nkv, 8);
    for (int i = 0; i < nt; i++) {
        gw_str(&w, ts[i].name);
        gw_u32(&w, ts[i].n_out > 1 ? 2 : 1);
        gw_u64(&w, (uint64_t)ts[i].n_in);
        if (ts[i].n_out > 1)
            gw_u64(&w, (uint64_t)ts[i].n_out);
        gw_u32(&w, ts[i].type);
        gw_u64(&w, offs[i]);
    }
    while (w.len % 32)
        gw_put(&w, "", 1);
    size_t base = w.len;
    uint8_t zero[32] = {0};
    float row[256];
    for (int i = 0; i < nt; i++) {
        assert_int_equal(w.len - base, offs[i]);
        bool norm = strstr(ts[i].name, "norm") != NULL;
        size_t rb = (size_t)shoal_qtype_row_size(ts[i].type, ts[i].n_in);
        uint8_t q[1024];
        for (int r = 0; r < ts[i].n_out; r++) {
            for (int k = 0; k < ts[i].n_in; k++)
                row[k] = norm ? 1.0f + 0.3f * frand_t() : frand_t() * (strstr(ts[i].name, "embd") ? 1.0f : 0.4f);
            assert_int_equal(shoal_quantize_row(ts[i].type, row, q, ts[i].n_in), SHOAL_OK);
            gw_put(&w, q, rb);
        }
        while ((w.len - base) % 32)
            gw_put(&w, zero, 1);
    }
    *len_out = w.len;
    return w.buf;
}

static void test_synthetic_model(void **state)
{
    (void)state;
    size_t len = 0;
    uint8_t *buf = make_synthetic(&len);
    shoal_gguf_t *g;
    assert_int_equal(shoal_gguf_open_buffer(buf, len, &g), SHOAL_OK);
    shoal_llama_model_t *m;
    assert_int_equal(shoal_llama_model_new(g, &m), SHOAL_OK);
    assert_false(m->tied_output);
    assert_true(m->hp.rope_llama3);
    assert_int_equal(m->hp.rope_dim, S_ROPE);
    assert_int_equal(m->hp.head_dim, S_DIM / S_HEADS);
    /* original context 64, low/high factors 1/4: wavelength 6.3 (i = 0) < 16 is kept, 62.8 (i = 1)
     * lies in [16, 64] and is blended, 628 and beyond are divided by 8: all three bands of the
     * Llama 3 rule run, and the logits below check them against the reference's own formula */
    assert_true(m->rope_inv_freq[0] == 1.0f);
    assert_true(m->rope_inv_freq[1] < 0.1f && m->rope_inv_freq[1] > 0.1f / 8.0f);
    assert_true(fabsf(m->rope_inv_freq[2] - 0.01f / 8.0f) < 1e-9f);
    const int32_t toks[] = {3, 17, 5, 39, 0, 22, 8, 8, 30, 1, 12};
    const int T = (int)(sizeof toks / sizeof toks[0]);
    double *ref = ref_forward(g, toks, T);
    shoal_threadpool_t *pool;
    assert_int_equal(shoal_threadpool_new(2, &pool), SHOAL_OK);
    for (int portable = 0; portable <= 1; portable++) {
        shoal_llama_ctx_t *c;
        shoal_llama_ctx_params_t p;
        shoal_llama_ctx_params_init(&p);
        p.n_ctx = 16;
        p.n_batch = 4;
        p.portable_kernels = portable;
        assert_int_equal(shoal_llama_ctx_new(m, &p, pool, &c), SHOAL_OK);
        float lg[16 * S_VOCAB];
        assert_int_equal(shoal_llama_eval(c, toks, T, 0, lg, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
        double max_err = 0, amax = 0;
        for (int i = 0; i < T * S_VOCAB; i++) {
            max_err = fabs(lg[i] - ref[i]) > max_err ? fabs(lg[i] - ref[i]) : max_err;
            amax = fabs(ref[i]) > amax ? fabs(ref[i]) : amax;
        }
        fprintf(stderr, "synthetic model (%s kernels): max |logit err| %.2e of max |logit| %.2f\n",
                portable ? "portable" : "fused", max_err, amax);
        /* measured 7.9e-4 (fused) and 7.7e-4 (portable) of a 6.17 range with two activation planes
         * (8-bit: ~0.15); 1e-3 of the range leaves ~8x margin */
        assert_true(max_err < 1e-3 * amax);
        for (int t = 0; t < T; t++)
            assert_int_equal(argmax_f(lg + t * S_VOCAB, S_VOCAB), argmax_d(ref + t * S_VOCAB, S_VOCAB));
        shoal_llama_ctx_delete(c);
    }
    free(ref);

    /* a long sequence: attention runs split over position ranges and merged, in batches (prefill)
     * and one token at a time (decode) */
    enum { TL = 300 };
    int32_t lt[TL];
    for (int i = 0; i < TL; i++)
        lt[i] = (int32_t)((unsigned)(i * 7919 + 13) % S_VOCAB);
    ref = ref_forward(g, lt, TL);
    shoal_llama_ctx_t *c;
    shoal_llama_ctx_params_t p;
    shoal_llama_ctx_params_init(&p);
    p.n_ctx = TL;
    p.n_batch = 64;
    assert_int_equal(shoal_llama_ctx_new(m, &p, pool, &c), SHOAL_OK);
    float *lg = malloc((size_t)TL * S_VOCAB * sizeof(float));
    assert_int_equal(shoal_llama_eval(c, lt, TL - 40, 0, lg, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    for (int t = TL - 40; t < TL; t++)
        assert_int_equal(shoal_llama_eval(c, &lt[t], 1, t, lg + (size_t)t * S_VOCAB, SHOAL_LLAMA_LOGITS_LAST),
                         SHOAL_OK);
    double max_err = 0, amax = 0;
    for (int i = 0; i < TL * S_VOCAB; i++) {
        max_err = fabs(lg[i] - ref[i]) > max_err ? fabs(lg[i] - ref[i]) : max_err;
        amax = fabs(ref[i]) > amax ? fabs(ref[i]) : amax;
    }
    fprintf(stderr, "synthetic model, %d positions: max |logit err| %.2e of max |logit| %.2f\n", TL, max_err, amax);
    assert_true(max_err < 1e-3 * amax);
    free(lg);
    free(ref);
    shoal_llama_ctx_delete(c);
    shoal_threadpool_delete(pool);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
    free(buf);
}

/* A GGUF that is not a complete llama model is refused with the missing piece named. */
static void put(uint8_t **p, const void *src, size_t n)
{
    memcpy(*p, src, n);
    *p += n;
}
static void put_str(uint8_t **p, const char *s)
{
    uint64_t n = strlen(s);
    put(p, &n, 8);
    put(p, s, n);
}
static void put_kv_u32(uint8_t **p, const char *key, uint32_t v)
{
    uint32_t t = SHOAL_GGUF_U32;
    put_str(p, key);
    put(p, &t, 4);
    put(p, &v, 4);
}

static void test_bad_models(void **state)
{
    (void)state;
    uint8_t buf[1024], *p = buf;
    uint32_t magic = 0x46554747, version = 3, tstr = SHOAL_GGUF_STRING;
    uint64_t n_tensors = 0, n_kv = 5;
    put(&p, &magic, 4);
    put(&p, &version, 4);
    put(&p, &n_tensors, 8);
    put(&p, &n_kv, 8);
    put_str(&p, "general.architecture");
    put(&p, &tstr, 4);
    put_str(&p, "llama");
    put_kv_u32(&p, "llama.block_count", 2);
    put_kv_u32(&p, "llama.embedding_length", 64);
    put_kv_u32(&p, "llama.feed_forward_length", 128);
    put_kv_u32(&p, "llama.attention.head_count", 4);
    shoal_gguf_t *g;
    shoal_llama_model_t *m = NULL;
    assert_int_equal(shoal_gguf_open_buffer(buf, (size_t)(p - buf), &g), SHOAL_OK);
    assert_int_equal(shoal_llama_model_new(g, &m), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "token_embd.weight"));
    assert_null(m);
    shoal_gguf_close(g);

    /* head_count that does not divide into head_count_kv */
    n_kv = 6;
    memcpy(buf + 16, &n_kv, 8);
    uint8_t *q = p;
    put_kv_u32(&q, "llama.attention.head_count_kv", 3);
    assert_int_equal(shoal_gguf_open_buffer(buf, (size_t)(q - buf), &g), SHOAL_OK);
    assert_int_equal(shoal_llama_model_new(g, &m), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "head_count_kv"));
    shoal_gguf_close(g);

    /* a missing required key */
    n_kv = 4;
    memcpy(buf + 16, &n_kv, 8);
    assert_int_equal(shoal_gguf_open_buffer(buf, (size_t)(p - buf) - (8 + 26 + 8), &g), SHOAL_OK);
    assert_int_equal(shoal_llama_model_new(g, &m), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "head_count"));
    shoal_gguf_close(g);
    assert_int_equal(shoal_llama_model_new(NULL, &m), SHOAL_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hparams),
        cmocka_unit_test(test_matches_float64_reference),
        cmocka_unit_test(test_matches_numpy_fixture),
        cmocka_unit_test(test_batched_equals_sequential),
        cmocka_unit_test(test_kv_restore_bit_exact),
        cmocka_unit_test(test_limits_and_bad_input),
        cmocka_unit_test(test_greedy_paris),
        cmocka_unit_test(test_bad_models),
        cmocka_unit_test(test_synthetic_model),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
