/* llama_ref.h — test code shared by test_llama.c and test_llama_synthetic.c: an independent float64
 * Llama forward pass written directly from the architecture (weights dequantised exactly with
 * quant.h, every sum in double, RoPE angles from the metadata, no code shared with
 * src/model/llama*.c), plus small helpers. Header-only: each test is one translation unit. */
#ifndef SHOAL_TESTS_LLAMA_REF_H
#define SHOAL_TESTS_LLAMA_REF_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/gguf.h"
#include "model/quant.h"


typedef struct ref_mat {
    double *w; /* (rows, cols) */
    int rows, cols;
} ref_mat_t;

static inline ref_mat_t ref_load(const shoal_gguf_t *g, const char *name)
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
static inline void ref_matmul(const ref_mat_t *m, const double *x, int T, double *y)
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

static inline void ref_rmsnorm(const double *x, const ref_mat_t *w, int T, int dim, double eps, double *out)
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

static inline uint32_t meta_u32(const shoal_gguf_t *g, const char *key)
{
    uint32_t v = 0;
    assert_int_equal(shoal_gguf_get_u32(g, key, &v), SHOAL_OK);
    return v;
}

static inline float meta_f32(const shoal_gguf_t *g, const char *key)
{
    float v = 0;
    assert_int_equal(shoal_gguf_get_f32(g, key, &v), SHOAL_OK);
    return v;
}

/* All T positions' logits (T, vocab) in double, straight from the GGUF. */
static inline double *ref_forward(const shoal_gguf_t *g, const int32_t *tokens, int T)
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


static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static inline float frand_t(void) /* uniform in [-1, 1) */
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (float)((double)(g_rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static inline int argmax_f(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

static inline int argmax_d(const double *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

#endif
