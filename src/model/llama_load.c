/* llama_load.c — builds a shoal_llama_model_t from an open GGUF: hyperparameters, tensor
 * directory checks (presence, shape, type), RoPE frequencies with Llama 3 scaling. */
#include "model/llama.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/quant.h"

/* Optional u32 metadata: absent keeps *out; present but malformed is an error. */
static shoal_status_t opt_u32(const shoal_gguf_t *g, const char *suffix, uint32_t *out)
{
    shoal_status_t s = shoal_gguf_get_arch_u32(g, suffix, out);
    return s == SHOAL_E_NOT_FOUND ? SHOAL_OK : s;
}

static shoal_status_t opt_f32(const shoal_gguf_t *g, const char *suffix, float *out)
{
    shoal_status_t s = shoal_gguf_get_arch_f32(g, suffix, out);
    return s == SHOAL_E_NOT_FOUND ? SHOAL_OK : s;
}

static shoal_status_t req_u32(const shoal_gguf_t *g, const char *suffix, uint32_t max, int *out)
{
    uint32_t v = 0;
    shoal_status_t s = shoal_gguf_get_arch_u32(g, suffix, &v);
    if (s == SHOAL_E_NOT_FOUND)
        return shoal_fail(SHOAL_E_FORMAT, "llama: required metadata 'llama.%s' is missing", suffix);
    if (s)
        return s;
    if (v < 1 || v > max)
        return shoal_fail(SHOAL_E_FORMAT, "llama: 'llama.%s' = %u is outside [1, %u]", suffix, v, max);
    *out = (int)v;
    return SHOAL_OK;
}

static shoal_status_t find(const shoal_gguf_t *g, const char *name, const shoal_gguf_tensor_t **t)
{
    shoal_status_t s = shoal_gguf_find_tensor(g, name, t);
    if (s == SHOAL_E_NOT_FOUND)
        return shoal_fail(SHOAL_E_FORMAT, "llama: tensor '%s' is missing", name);
    return s;
}

/* A matrix tensor of shape (n_out rows, n_in columns) = GGUF ne {n_in, n_out}. */
static shoal_status_t load_mat(const shoal_gguf_t *g, const char *name, int n_in, int n_out, shoal_llama_mat_t *m)
{
    const shoal_gguf_tensor_t *t;
    shoal_status_t s = find(g, name, &t);
    if (s)
        return s;
    if (t->ne[0] != (uint64_t)n_in || (n_out > 0 && t->ne[1] != (uint64_t)n_out) || t->ne[2] != 1 || t->ne[3] != 1)
        return shoal_fail(SHOAL_E_FORMAT,
                          "llama: tensor '%s' has shape [%llu, %llu, %llu, %llu], expected [%d, %d]", name,
                          (unsigned long long)t->ne[0], (unsigned long long)t->ne[1],
                          (unsigned long long)t->ne[2], (unsigned long long)t->ne[3], n_in, n_out);
    if (t->ne[1] > (1u << 30))
        return shoal_fail(SHOAL_E_FORMAT, "llama: tensor '%s' has too many rows", name);
    s = shoal_qtype_check(t->type, n_in);
    if (s)
        return shoal_fail_wrap(s, "llama: tensor '%s'", name);
    m->data = t->data;
    m->type = t->type;
    m->n_in = n_in;
    m->n_out = (int)t->ne[1];
    m->row_bytes = (size_t)t->row_bytes;
    return SHOAL_OK;
}

/* A (dim,) vector as float32: the mapping itself for F32, else converted into `spare`. */
static shoal_status_t load_vec(const shoal_gguf_t *g, const char *name, int dim, float *spare, const float **out)
{
    const shoal_gguf_tensor_t *t;
    shoal_status_t s = find(g, name, &t);
    if (s)
        return s;
    if (t->n_elements != (uint64_t)dim || t->ne[0] != (uint64_t)dim)
        return shoal_fail(SHOAL_E_FORMAT, "llama: tensor '%s' has %llu elements, expected %d", name,
                          (unsigned long long)t->n_elements, dim);
    if (t->type == SHOAL_GGML_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
        return SHOAL_OK;
    }
    s = shoal_dequantize_row(t->type, t->data, spare, dim);
    if (s)
        return shoal_fail_wrap(s, "llama: tensor '%s'", name);
    *out = spare;
    return SHOAL_OK;
}

static shoal_status_t read_hparams(const shoal_gguf_t *g, shoal_llama_hparams_t *hp)
{
    shoal_status_t s;
    memset(hp, 0, sizeof *hp);
    if ((s = req_u32(g, "block_count", 4096, &hp->n_layer)) || (s = req_u32(g, "embedding_length", 1 << 16, &hp->dim)) ||
        (s = req_u32(g, "feed_forward_length", 1 << 18, &hp->ffn_dim)) ||
        (s = req_u32(g, "attention.head_count", 4096, &hp->n_head)))
        return s;
    uint32_t n_head_kv = (uint32_t)hp->n_head, key_len = (uint32_t)(hp->dim / hp->n_head), ctx = 2048;
    if ((s = opt_u32(g, "attention.head_count_kv", &n_head_kv)) || (s = opt_u32(g, "attention.key_length", &key_len)) ||
        (s = opt_u32(g, "context_length", &ctx)))
        return s;
    if (n_head_kv < 1 || n_head_kv > (uint32_t)hp->n_head || hp->n_head % (int)n_head_kv)
        return shoal_fail(SHOAL_E_FORMAT, "llama: head_count_kv %u does not divide head_count %d", n_head_kv,
                          hp->n_head);
    if (key_len < 2 || key_len > 1024 || key_len % 2)
        return shoal_fail(SHOAL_E_FORMAT, "llama: head dimension %u is not an even number in [2, 1024]", key_len);
    uint32_t val_len = key_len;
    if ((s = opt_u32(g, "attention.value_length", &val_len)))
        return s;
    if (val_len != key_len)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "llama: value_length %u != key_length %u is not supported", val_len,
                          key_len);
    hp->n_head_kv = (int)n_head_kv;
    hp->head_dim = (int)key_len;
    hp->q_dim = hp->n_head * hp->head_dim;
    hp->kv_dim = hp->n_head_kv * hp->head_dim;
    hp->n_ctx_train = ctx > (1u << 24) ? 1 << 24 : (int)ctx;
    if (hp->n_ctx_train < 1)
        hp->n_ctx_train = 1;
    uint32_t rope_dim = key_len;
    hp->rope_base = 10000.0f;
    hp->rms_eps = 1e-5f;
    if ((s = opt_u32(g, "rope.dimension_count", &rope_dim)) || (s = opt_f32(g, "rope.freq_base", &hp->rope_base)) ||
        (s = opt_f32(g, "attention.layer_norm_rms_epsilon", &hp->rms_eps)))
        return s;
    if (rope_dim < 2 || rope_dim > key_len || rope_dim % 2)
        return shoal_fail(SHOAL_E_FORMAT, "llama: rope.dimension_count %u is not even and <= head dim %u", rope_dim,
                          key_len);
    hp->rope_dim = (int)rope_dim;
    if (!(hp->rope_base > 0.0f) || !isfinite(hp->rope_base))
        return shoal_fail(SHOAL_E_FORMAT, "llama: rope.freq_base %g is not a positive number", hp->rope_base);
    if (!(hp->rms_eps >= 0.0f) || !isfinite(hp->rms_eps))
        return shoal_fail(SHOAL_E_FORMAT, "llama: layer_norm_rms_epsilon %g is not a non-negative number",
                          hp->rms_eps);
    return SHOAL_OK;
}

/* theta_i = base^(-2i/rope_dim), then the model's scaling: a rope_freqs tensor (Llama 3 GGUFs
 * carry the per-frequency divisors precomputed), or llama3 / linear scaling from metadata. */
static shoal_status_t rope_freqs(const shoal_gguf_t *g, shoal_llama_hparams_t *hp, float *inv_freq)
{
    int half = hp->rope_dim / 2;
    for (int i = 0; i < half; i++)
        inv_freq[i] = (float)pow((double)hp->rope_base, -2.0 * i / hp->rope_dim);

    const shoal_gguf_tensor_t *t;
    if (shoal_gguf_find_tensor(g, "rope_freqs.weight", &t) == SHOAL_OK) {
        if (t->type != SHOAL_GGML_F32 || t->n_elements != (uint64_t)half)
            return shoal_fail(SHOAL_E_FORMAT, "llama: tensor 'rope_freqs.weight' must be F32 with %d elements", half);
        float f[1024];
        memcpy(f, t->data, (size_t)half * sizeof(float));
        for (int i = 0; i < half; i++) {
            if (!(f[i] > 0.0f) || !isfinite(f[i]))
                return shoal_fail(SHOAL_E_FORMAT, "llama: rope_freqs[%d] = %g is not positive", i, f[i]);
            inv_freq[i] /= f[i];
        }
        hp->rope_llama3 = true;
        return SHOAL_OK;
    }
    shoal_clear_error();

    const char *type = NULL;
    size_t type_len = 0;
    uint64_t idx;
    char key[128];
    snprintf(key, sizeof key, "%s.rope.scaling.type", shoal_gguf_architecture(g));
    if (shoal_gguf_find_key(g, key, &idx) == SHOAL_OK) {
        shoal_status_t s = shoal_gguf_get_string(g, key, &type, &type_len);
        if (s)
            return s;
    }
    shoal_clear_error();
    float factor = 1.0f;
    shoal_status_t s = opt_f32(g, "rope.scaling.factor", &factor);
    if (s)
        return s;
    if (!type || (type_len == 4 && !memcmp(type, "none", 4)))
        return SHOAL_OK;
    if (!(factor > 0.0f) || !isfinite(factor))
        return shoal_fail(SHOAL_E_FORMAT, "llama: rope.scaling.factor %g is not positive", factor);
    if (type_len == 6 && !memcmp(type, "linear", 6)) {
        for (int i = 0; i < half; i++)
            inv_freq[i] /= factor;
        return SHOAL_OK;
    }
    if (!(type_len == 6 && !memcmp(type, "llama3", 6)))
        return shoal_fail(SHOAL_E_UNSUPPORTED, "llama: rope scaling type '%.*s' is not supported", (int)type_len, type);

    /* Llama 3: long wavelengths are slowed by `factor`, short ones kept, and the band between
     * blended linearly in (original context / wavelength). */
    float lo = 1.0f, hi = 4.0f;
    uint32_t orig = 8192;
    if ((s = opt_f32(g, "rope.scaling.low_freq_factor", &lo)) || (s = opt_f32(g, "rope.scaling.high_freq_factor", &hi)) ||
        (s = opt_u32(g, "rope.scaling.original_context_length", &orig)))
        return s;
    if (!(hi > lo) || !(lo > 0.0f) || orig < 1)
        return shoal_fail(SHOAL_E_FORMAT, "llama: llama3 rope scaling needs high_freq_factor > low_freq_factor > 0");
    hp->rope_llama3 = true;
    hp->rope_factor = factor;
    hp->rope_low_freq_factor = lo;
    hp->rope_high_freq_factor = hi;
    hp->rope_orig_ctx = (int)orig;
    double low_wavelen = orig / (double)lo, high_wavelen = orig / (double)hi;
    for (int i = 0; i < half; i++) {
        double f = inv_freq[i], wavelen = 2.0 * M_PI / f;
        if (wavelen > low_wavelen)
            f /= factor;
        else if (wavelen >= high_wavelen) {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            f = (1.0 - smooth) * f / factor + smooth * f;
        }
        inv_freq[i] = (float)f;
    }
    return SHOAL_OK;
}

static shoal_status_t load_layers(const shoal_gguf_t *g, shoal_llama_model_t *m)
{
    const shoal_llama_hparams_t *hp = &m->hp;
    char name[96];
    shoal_status_t s;
    for (int l = 0; l < hp->n_layer; l++) {
        shoal_llama_layer_t *L = &m->layers[l];
        float *spare = m->owned_norms + (size_t)(2 * l) * hp->dim;
#define MAT(field, suffix, nin, nout)                                                                           \
    snprintf(name, sizeof name, "blk.%d." suffix ".weight", l);                                                \
    if ((s = load_mat(g, name, nin, nout, &L->field)))                                                         \
        return s;
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l);
        if ((s = load_vec(g, name, hp->dim, spare, &L->attn_norm)))
            return s;
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l);
        if ((s = load_vec(g, name, hp->dim, spare + hp->dim, &L->ffn_norm)))
            return s;
        MAT(wq, "attn_q", hp->dim, hp->q_dim)
        MAT(wk, "attn_k", hp->dim, hp->kv_dim)
        MAT(wv, "attn_v", hp->dim, hp->kv_dim)
        MAT(wo, "attn_output", hp->q_dim, hp->dim)
        MAT(w_gate, "ffn_gate", hp->dim, hp->ffn_dim)
        MAT(w_up, "ffn_up", hp->dim, hp->ffn_dim)
        MAT(w_down, "ffn_down", hp->ffn_dim, hp->dim)
#undef MAT
    }
    return SHOAL_OK;
}

shoal_status_t shoal_llama_model_new(const shoal_gguf_t *g, shoal_llama_model_t **out)
{
    if (!g || !out)
        return shoal_fail(SHOAL_E_INVALID, "llama: NULL argument");
    const char *arch = shoal_gguf_architecture(g);
    if (!arch)
        return shoal_fail(SHOAL_E_FORMAT, "llama: general.architecture is missing");
    if (strcmp(arch, "llama") != 0)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "llama: architecture '%s' is not supported (only 'llama')", arch);
    shoal_llama_model_t *m = calloc(1, sizeof *m);
    if (!m)
        return shoal_fail(SHOAL_E_NOMEM, "llama: out of memory");
    m->gguf = g;
    shoal_llama_hparams_t *hp = &m->hp;
    shoal_status_t s = read_hparams(g, hp);
    if (s)
        goto fail;
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    m->owned_norms = malloc(((size_t)2 * hp->n_layer + 1) * (size_t)hp->dim * sizeof(float));
    m->rope_inv_freq = malloc((size_t)hp->rope_dim / 2 * sizeof(float));
    if (!m->layers || !m->owned_norms || !m->rope_inv_freq) {
        s = shoal_fail(SHOAL_E_NOMEM, "llama: out of memory");
        goto fail;
    }
    if ((s = load_mat(g, "token_embd.weight", hp->dim, 0, &m->tok_embd)))
        goto fail;
    hp->vocab = m->tok_embd.n_out;
    uint32_t vocab_meta = 0;
    if (shoal_gguf_get_arch_u32(g, "vocab_size", &vocab_meta) == SHOAL_OK && vocab_meta != (uint32_t)hp->vocab) {
        s = shoal_fail(SHOAL_E_FORMAT, "llama: vocab_size %u disagrees with token_embd rows %d", vocab_meta, hp->vocab);
        goto fail;
    }
    shoal_clear_error();
    if ((s = load_vec(g, "output_norm.weight", hp->dim, m->owned_norms + (size_t)2 * hp->n_layer * hp->dim,
                      &m->output_norm)))
        goto fail;
    const shoal_gguf_tensor_t *t;
    if (shoal_gguf_find_tensor(g, "output.weight", &t) == SHOAL_OK) {
        if ((s = load_mat(g, "output.weight", hp->dim, hp->vocab, &m->output)))
            goto fail;
    } else {
        shoal_clear_error();
        m->output = m->tok_embd;
        m->tied_output = true;
    }
    if ((s = load_layers(g, m)) || (s = rope_freqs(g, hp, m->rope_inv_freq)))
        goto fail;
    *out = m;
    return SHOAL_OK;
fail:
    shoal_llama_model_delete(m);
    return s;
}

void shoal_llama_model_delete(shoal_llama_model_t *m)
{
    if (!m)
        return;
    free(m->rope_inv_freq);
    free(m->owned_norms);
    free(m->layers);
    free(m);
}
