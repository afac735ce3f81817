/* llm_kernels.h — C entry points of the transformer kernels (llm_kernels.cu) used by llm_cuda.c.
 *
 * Weight matrices live on the device in a repacked form (llm_cuda.c does the repacking at upload)
 * so every lane of a warp reads 16 aligned bytes at a time:
 *   F16/BF16: the GGUF rows as they are (n_in % 8 == 0).
 *   Q8_0:     qs (rows, n_in) int8, then d (rows, n_in/32) f16.
 *   Q4_0:     qs (rows, n_in/2) nibbles as in the file's blocks, then d (rows, n_in/32) f16.
 *   Q4_1:     qs as Q4_0, then d and m (rows, n_in/32) f16 each.
 * All activations are float32 and every dot product accumulates in float32. */
#ifndef SHOAL_BACKEND_CUDA_LLM_KERNELS_H
#define SHOAL_BACKEND_CUDA_LLM_KERNELS_H

#include <stdint.h>

#include <cuda_runtime_api.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct shoal_cu_mat {
    const void *qs;     /* device: element payload (see above) */
    const void *d;      /* device: per-block f16 scales (quantised types), else NULL */
    const void *m;      /* device: per-block f16 minimums (Q4_1), else NULL */
    uint32_t type;      /* ggml type id */
    int n_in, n_out;
} shoal_cu_mat_t;

/* y[r] (+)= W[r,:] . x for r < W.n_out; accumulate adds into y (the residual). */
cudaError_t shoal_cu_matvec(const shoal_cu_mat_t *w, const float *x, float *y, int accumulate, cudaStream_t s);
/* x = row `*token` of the embedding matrix, dequantised (token read on the device, which may be
 * mapped host memory); with pos_dst, also *pos_dst = *pos_src (the step's position, for the
 * kernels after it). */
cudaError_t shoal_cu_embed(const shoal_cu_mat_t *e, const int32_t *token, float *x, const int32_t *pos_src,
                           int32_t *pos_dst, cudaStream_t s);
/* out = x / sqrt(mean(x^2) + eps) * w, n <= 65536. */
cudaError_t shoal_cu_rmsnorm(const float *x, const float *w, float *out, int n, float eps, cudaStream_t s);
/* Rotates q (n_head heads) and k (n_kv heads) at position *pos, then stores k and v into row *pos
 * of the layer's caches (rows of kv_dim floats). */
cudaError_t shoal_cu_rope_store(float *q, const float *k, const float *v, float *kcache, float *vcache,
                                const float *inv_freq, const int32_t *pos, int n_head, int n_kv, int head_dim,
                                int rope_dim, cudaStream_t s);
/* Decode attention of every query head over cache rows [0, *pos + 1): out (n_head, head_dim). */
cudaError_t shoal_cu_attention(const float *q, const float *kcache, const float *vcache, const int32_t *pos,
                               float *out, int n_head, int n_kv, int head_dim, int n_ctx, cudaStream_t s);
/* The two above in one launch for one token (the fused decode path): rotates q and the new k at
 * *pos, stores k and v into row *pos of the caches and attends over rows [0, *pos], a long
 * context in chunks of positions merged on the device. scratch: shoal_cu_rope_attention_scratch
 * bytes of device memory whose last n_head ints are zero (the launch leaves them so); one launch
 * at a time per scratch. */
size_t shoal_cu_rope_attention_scratch(int n_head, int head_dim, int n_ctx);
/* Raises rope_attention's shared memory limit on the current device for n_ctx positions (called
 * by shoal_cu_attention_prepare). */
cudaError_t shoal_cu_rope_attention_prepare(int n_ctx);
cudaError_t shoal_cu_rope_attention(const float *q, const float *k, const float *v, float *kcache, float *vcache,
                                    const float *inv_freq, const int32_t *pos, float *out, int n_head, int n_kv,
                                    int head_dim, int rope_dim, int n_ctx, void *scratch, cudaStream_t s);
/* Batched forms for prefill: n_tok tokens whose rows are contiguous (x: (n_tok, n_in); q: (n_tok,
 * n_head * head_dim); k, v: (n_tok, kv_dim); positions pos[0..n_tok)). Each query token attends
 * to cache rows [0, its position]: tokens of one batch see each other causally because their
 * rows are stored (rope_store_batch) before attention_batch runs. */
cudaError_t shoal_cu_embed_batch(const shoal_cu_mat_t *e, const int32_t *tokens, int n_tok, float *x, cudaStream_t s);
cudaError_t shoal_cu_rmsnorm_rows(const float *x, const float *w, float *out, int n, int rows, float eps,
                                  cudaStream_t s);
cudaError_t shoal_cu_rope_store_batch(float *q, const float *k, const float *v, float *kcache, float *vcache,
                                      const float *inv_freq, const int32_t *pos, int n_tok, int n_head, int n_kv,
                                      int head_dim, int rope_dim, cudaStream_t s);
cudaError_t shoal_cu_attention_batch(const float *q, const float *kcache, const float *vcache, const int32_t *pos,
                                     int n_tok, float *out, int n_head, int n_kv, int head_dim, int n_ctx,
                                     cudaStream_t s);
/* attention_batch in tiles of 64 queries and 64 positions (att_prefill.cu), for head dimensions 64
 * and 128 (else cudaErrorNotSupported); attention_batch takes it for batches of several tokens
 * unless SHOAL_CUDA_PREFILL_ATT=rows (an experiment switch: the one-block-per-query kernel). The
 * prepare call raises its shared memory limit on the current device. */
cudaError_t shoal_cu_attention_tiled(const float *q, const float *kcache, const float *vcache, const int32_t *pos,
                                     int n_tok, float *out, int n_head, int n_kv, int head_dim, cudaStream_t s);
cudaError_t shoal_cu_attention_tiled_prepare(void);
/* Fused decode launches (several rows per warp share each activation load). matvec_fused:
 * y[i] = W[i] . x for up to 3 matrices of one type and width in one launch; with norm_w, x is
 * RMS-normalised (eps) and scaled by norm_w first; with accumulate (no norm), y[i] += W[i] . x.
 * gateup_fused: h = silu(gate . n(x)) * (up . n(x)), n the RMS norm with norm_w.
 * cudaErrorInvalidValue when the matrices differ in type or width (the caller then uses the
 * separate kernels). */
cudaError_t shoal_cu_matvec_fused(const shoal_cu_mat_t *const *w, float *const *y, int n_mats, const float *x,
                                  const float *norm_w, float eps, int accumulate, cudaStream_t s);
cudaError_t shoal_cu_gateup_fused(const shoal_cu_mat_t *gate, const shoal_cu_mat_t *up, const float *x,
                                  const float *norm_w, float eps, float *h, cudaStream_t s);
/* Whether this thread's following launches use programmatic dependent launch (Hopper): each
 * kernel may start while its predecessor finishes, and the fused matrix-vector kernels load their
 * first weights before waiting for it. Every kernel here waits for its inputs itself. */
void shoal_cu_set_pdl(int on);
/* out (n_out, n_in) float32: the whole matrix dequantised. */
cudaError_t shoal_cu_dequant(const shoal_cu_mat_t *e, float *out, cudaStream_t s);
/* g = silu(g) * u */
cudaError_t shoal_cu_swiglu(float *g, const float *u, int n, cudaStream_t s);
/* *out = argmax x (first index on ties). scratch: SHOAL_CU_ARGMAX_SCRATCH int32 words of device
 * memory, zeroed before the first launch and not shared with a launch that may run concurrently. */
#define SHOAL_CU_ARGMAX_SCRATCH (2 * 64 + 1)
cudaError_t shoal_cu_argmax(const float *x, int n, int32_t *out, int32_t *scratch, cudaStream_t s);
/* Raises the attention kernels' dynamic shared memory limit for contexts of n_ctx positions. */
cudaError_t shoal_cu_attention_prepare(int n_ctx);

#ifdef __cplusplus
}
#endif
#endif
