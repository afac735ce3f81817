/* llama.h — Llama-family transformer on the CPU: model (weights in the GGUF mapping, shared,
 * read-only) and per-actor context (KV cache, scratch, eval).
 *
 * Architecture: token embedding -> n_layer x [RMSNorm -> Q,K,V -> RoPE -> grouped-query causal
 * attention -> O (+residual) -> RMSNorm -> SwiGLU FFN (+residual)] -> RMSNorm -> output matrix
 * (token_embd when output.weight is absent: tied embeddings).
 * RoPE rotates adjacent pairs (x[2i], x[2i+1]) by pos * theta_i, theta_i = base^(-2i/rope_dim),
 * optionally divided by Llama 3 frequency factors: llama.cpp's LLAMA convention, for which GGUF
 * converters permute the Q/K rows of Hugging Face checkpoints.
 *
 * KV cache: float32, per layer K then V, each (n_ctx, kv_dim) row-major by position. Positions
 * [0, n_past) hold the cache of the tokens evaluated so far; the bytes are a pure function of
 * the model, the tokens and their positions, so saving rows [0, n_past) of every layer and
 * writing them back (shoal_llama_kv_layer + shoal_llama_set_n_past) restores a context bit for
 * bit.
 *
 * Threads: a context borrows a thread pool (may be NULL: serial). A model may be used by any
 * number of contexts at once; one context must not be used by two threads at once. */
#ifndef SHOAL_MODEL_LLAMA_H
#define SHOAL_MODEL_LLAMA_H

#include "shoal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/threadpool.h"
#include "model/gguf.h"

/* Hyperparameters (the Config of llama2.c), read from the `llama.*` metadata. */
typedef struct shoal_llama_hparams {
    int n_layer;     /* llama.block_count */
    int dim;         /* llama.embedding_length */
    int ffn_dim;     /* llama.feed_forward_length */
    int n_head;      /* llama.attention.head_count */
    int n_head_kv;   /* llama.attention.head_count_kv (default n_head) */
    int head_dim;    /* llama.attention.key_length (default dim / n_head) */
    int q_dim;       /* n_head * head_dim */
    int kv_dim;      /* n_head_kv * head_dim */
    int vocab;       /* rows of token_embd */
    int n_ctx_train; /* llama.context_length */
    int rope_dim;    /* llama.rope.dimension_count (default head_dim): leading dims of a head rotated */
    float rope_base; /* llama.rope.freq_base (default 10000) */
    float rms_eps;   /* llama.attention.layer_norm_rms_epsilon */
    /* Llama 3 RoPE frequency scaling: from the rope_freqs tensor if present, else computed from
     * llama.rope.scaling.{type="llama3",factor,low_freq_factor,high_freq_factor,original_context_length}. */
    bool rope_llama3;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_orig_ctx;
} shoal_llama_hparams_t;

/* A weight matrix W (n_out, n_in) in the mapping: row r (n_in elements of `type`) at
 * data + r * row_bytes. y = W @ x. */
typedef struct shoal_llama_mat {
    const void *data;
    uint32_t type;    /* ggml type id */
    int n_in, n_out;
    size_t row_bytes;
} shoal_llama_mat_t;

typedef struct shoal_llama_layer {
    const float *attn_norm; /* (dim,) */
    shoal_llama_mat_t wq;   /* (q_dim, dim) */
    shoal_llama_mat_t wk;   /* (kv_dim, dim) */
    shoal_llama_mat_t wv;   /* (kv_dim, dim) */
    shoal_llama_mat_t wo;   /* (dim, q_dim) */
    const float *ffn_norm;  /* (dim,) */
    shoal_llama_mat_t w_gate; /* (ffn_dim, dim) */
    shoal_llama_mat_t w_up;   /* (ffn_dim, dim) */
    shoal_llama_mat_t w_down; /* (dim, ffn_dim) */
} shoal_llama_layer_t;

/* The Weights of llama2.c: pointers into the GGUF mapping, never copied (norm vectors stored
 * as F16/BF16 are the exception: converted once into small owned arrays). */
typedef struct shoal_llama_model {
    shoal_llama_hparams_t hp;
    const shoal_gguf_t *gguf;     /* borrowed: must outlive the model */
    shoal_llama_mat_t tok_embd;   /* (vocab, dim) */
    shoal_llama_layer_t *layers;  /* (n_layer,) */
    const float *output_norm;     /* (dim,) */
    shoal_llama_mat_t output;     /* (vocab, dim); == tok_embd when tied */
    bool tied_output;
    float *rope_inv_freq;         /* (rope_dim / 2,) theta_i, scaling applied */
    float *owned_norms;           /* backing store for converted norm vectors, or NULL */
} shoal_llama_model_t;

/* Loads the model described by an open GGUF (general.architecture must be "llama"). Checks every
 * tensor's presence, shape and type; SHOAL_E_FORMAT / SHOAL_E_UNSUPPORTED with the tensor named.
 * The GGUF must stay open until shoal_llama_model_delete. */
shoal_status_t shoal_llama_model_new(const shoal_gguf_t *g, shoal_llama_model_t **out);
void shoal_llama_model_delete(shoal_llama_model_t *m);

typedef struct shoal_llama_ctx shoal_llama_ctx_t;

typedef struct shoal_llama_ctx_params {
    int n_ctx;   /* KV cache positions; <= 0: min(n_ctx_train, 4096) */
    int n_batch; /* tokens per forward chunk (prefill); <= 0: 64 */
    /* Activation precision of the integer dot products. 1: each activation vector is quantised
     * to 8 bits per element (blocks of 32, scale amax/127), as llama.cpp does; fastest, but on
     * SmolLM2 it moves logits by up to ~1.5 against float64 and can flip near-tied top-1 tokens.
     * 2 (default): a second 8-bit plane carries the residual, ~15 bits in all; logits within
     * ~0.02 of float64, at the cost of a second integer pass over weights already in cache. */
    int act_planes;
    /* Use only the portable quant.h dot products, never the fused AVX-512 kernels (tests). */
    bool portable_kernels;
    /* Caller-owned KV cache of shoal_llama_kv_bytes(m, n_ctx) bytes (a guest's linear memory:
     * the cache then lives in the guest's own state), or NULL for one of the context's own.
     * Requires an explicit n_ctx. Its contents need no initialisation (rows past n_past are dead). */
    float *kv_external;
} shoal_llama_ctx_params_t;

void shoal_llama_ctx_params_init(shoal_llama_ctx_params_t *p);
/* Bytes of the KV cache of a context of n_ctx positions: (n_layer, 2, n_ctx, kv_dim) float32, the
 * same layout on every device. */
size_t shoal_llama_kv_bytes(const shoal_llama_model_t *m, int n_ctx);
/* A context for `m`; `pool` is borrowed (NULL runs serially). p may be NULL for defaults. */
shoal_status_t shoal_llama_ctx_new(const shoal_llama_model_t *m, const shoal_llama_ctx_params_t *p,
                                   shoal_threadpool_t *pool, shoal_llama_ctx_t **out);
void shoal_llama_ctx_delete(shoal_llama_ctx_t *c);

typedef enum shoal_llama_logits_mode {
    SHOAL_LLAMA_LOGITS_NONE = 0, /* fill the cache only (a prefill chunk) */
    SHOAL_LLAMA_LOGITS_LAST = 1, /* logits_out (vocab,): the last token's logits */
    SHOAL_LLAMA_LOGITS_ALL = 2,  /* logits_out (n, vocab): every token's logits */
} shoal_llama_logits_mode_t;

/* Evaluates tokens[0..n) at positions pos0..pos0+n-1, attending to cache positions [0, pos) for
 * each; afterwards n_past = pos0 + n. pos0 may be < n_past (rewind: later cache rows are
 * overwritten) but not > n_past. Validation happens before anything is written:
 * SHOAL_E_INVALID (n < 1, a token outside [0, vocab), pos0 out of range, missing logits_out,
 * bad mode), SHOAL_E_LIMIT (pos0 + n > n_ctx; the message says by how much).
 * logits_out may be a guest's linear memory: only the requested rows are written, once each,
 * with final values. */
shoal_status_t shoal_llama_eval(shoal_llama_ctx_t *c, const int32_t *tokens, int n, int pos0, float *logits_out,
                                int logits_mode);
/* Forgets the sequence (n_past = 0). The cache bytes are not cleared (they are dead). */
void shoal_llama_reset(shoal_llama_ctx_t *c);

int shoal_llama_n_past(const shoal_llama_ctx_t *c);
int shoal_llama_n_ctx(const shoal_llama_ctx_t *c);
const shoal_llama_model_t *shoal_llama_ctx_model(const shoal_llama_ctx_t *c);

/* KV cache of one layer: *k and *v are (n_ctx, kv_dim) float32, row p = position p. Bytes of
 * one position's row (per K or V) in *row_bytes. SHOAL_E_INVALID for a bad layer. For
 * snapshots: save rows [0, n_past) of K and V of every layer; restore by writing them back and
 * calling shoal_llama_set_n_past. */
shoal_status_t shoal_llama_kv_layer(shoal_llama_ctx_t *c, int layer, float **k, float **v, size_t *row_bytes);
/* Declares that cache rows [0, n_past) are valid (after a restore). SHOAL_E_INVALID outside [0, n_ctx]. */
shoal_status_t shoal_llama_set_n_past(shoal_llama_ctx_t *c, int n_past);

#endif
