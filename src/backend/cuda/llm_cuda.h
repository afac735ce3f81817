/* llm_cuda.h — the Llama forward pass on a CUDA GPU, mirroring model/llama.h.
 *
 * Weights: uploaded once per shoal_llama_model_t into device memory (repacked for 16-byte loads)
 * and shared by every context of that model in the process; the upload is reference-counted and
 * freed with the last context. Activations are float32 throughout and every dot product
 * accumulates in float32 (the CPU path quantises activations to two 8-bit planes: the two differ
 * by that rounding, see tests/test_cuda_llama.c for the tolerance).
 *
 * KV cache: float32, the CPU layout (per layer K then V, each (n_ctx, kv_dim) by position), in
 * device memory by default; or, when params.kv_mapped is set, in host memory the caller has
 * registered with cudaHostRegister(Mapped) (the guest's linear memory: zero-copy snapshots, at
 * PCIe instead of HBM speed for attention reads).
 *
 * Prefill of more than one token runs batched (n_batch tokens a chunk): each weight matrix is
 * dequantised to float32 into a context scratch and multiplied by cuBLAS SGEMM (pedantic float32,
 * no TF32), attention runs for every query token of the chunk at once, in tiles. It differs from
 * the token-by-token path only in summation order (see tests/test_cuda_llama.c). That scratch is
 * allocated by the context's first such prefill, so a context restored or forked only to decode
 * never holds it; when the device cannot give it, that prefill is refused (SHOAL_E_NOMEM) and the
 * context goes on decoding.
 * One context must not be used by two threads at once; contexts of one model may run in parallel
 * threads (each has its own stream). Every CUDA error is reported as SHOAL_E_DEVICE with the
 * failing step named; running out of device memory is SHOAL_E_NOMEM with the sizes. */
#ifndef SHOAL_BACKEND_CUDA_LLM_CUDA_H
#define SHOAL_BACKEND_CUDA_LLM_CUDA_H

#include "model/llama.h"

typedef struct shoal_cuda_llama_ctx shoal_cuda_llama_ctx_t;

typedef struct shoal_cuda_llama_params {
    int n_ctx;        /* KV positions; <= 0: min(n_ctx_train, 4096) */
    int device;       /* CUDA device ordinal (default 0) */
    float *kv_mapped; /* NULL: device-resident cache; else registered host memory of
                       * shoal_cuda_llama_kv_bytes(model, n_ctx) bytes, 16-byte aligned */
    bool use_graph;   /* replay the greedy single-token step as a CUDA graph (captured on first use;
                       * off by default here, on for wasi-nn / token-API sessions) */
    bool fused;       /* decode through the fused kernels (RMS norm + Q/K/V in one launch, norm + gate/up +
                       * SwiGLU in one, several rows per block sharing each activation load): 6
                       * launches a layer instead of 12. On by default; off: the separate kernels,
                       * the reference test_fused_decode compares them with */
    bool pdl;         /* launch the kernels with programmatic dependent launch (sm_90): each may start
                       * while its predecessor finishes and loads its first weights meanwhile. On by
                       * default */
    int n_batch;      /* tokens per batched-prefill chunk (dequantise + SGEMM); 0: 1024; at most
                       * n_ctx; 1: every token through the decode kernels (the reference path) */
    bool prefill_tf32; /* prefill's GEMMs on the tensor cores in TF32 (operands rounded to 10-bit
                        * mantissas, float32 sums): 2.6-2.9x the prefill rate of the 1B shape on an H100,
                        * logits within ~2e-3 of their range of the float32 path's (SmolLM2: 0.056 on
                        * +-34; test_cuda_llama states the bound).
                        * Off by default, so that prefill agrees with the decode kernels to float32
                        * rounding; params_init turns it on when SHOAL_CUDA_PREFILL_TF32=1 */
} shoal_cuda_llama_params_t;

void shoal_cuda_llama_params_init(shoal_cuda_llama_params_t *p);
/* Bytes of the KV cache of a context of n_ctx positions. */
size_t shoal_cuda_llama_kv_bytes(const shoal_llama_model_t *m, int n_ctx);

/* No usable device: SHOAL_E_DEVICE with the driver's message. Weight types or shapes the kernels
 * do not handle: SHOAL_E_UNSUPPORTED naming the tensor. Device memory too small: SHOAL_E_NOMEM. */
shoal_status_t shoal_cuda_llama_ctx_new(const shoal_llama_model_t *m, const shoal_cuda_llama_params_t *p,
                                        shoal_cuda_llama_ctx_t **out);
void shoal_cuda_llama_ctx_delete(shoal_cuda_llama_ctx_t *c);

/* As shoal_llama_eval (same validation, same modes, same n_past rules). logits_out is host memory;
 * if it is registered (mapped) host memory the kernels write the logits into it in place. */
shoal_status_t shoal_cuda_llama_eval(shoal_cuda_llama_ctx_t *c, const int32_t *tokens, int n, int pos0,
                                     float *logits_out, int logits_mode);
/* Evaluates like shoal_cuda_llama_eval and picks the last token's greedy next token on the GPU:
 * only the id crosses the bus. */
shoal_status_t shoal_cuda_llama_eval_greedy(shoal_cuda_llama_ctx_t *c, const int32_t *tokens, int n, int pos0,
                                            int32_t *token_out);
void shoal_cuda_llama_reset(shoal_cuda_llama_ctx_t *c);
int shoal_cuda_llama_n_past(const shoal_cuda_llama_ctx_t *c);
/* Tokens per batched-prefill chunk this context uses (params.n_batch after its default and bounds). */
int shoal_cuda_llama_n_batch(const shoal_cuda_llama_ctx_t *c);
int shoal_cuda_llama_n_ctx(const shoal_cuda_llama_ctx_t *c);
/* Whether greedy decode steps replay a captured CUDA graph (use_graph was set and capture worked). */
bool shoal_cuda_llama_uses_graph(const shoal_cuda_llama_ctx_t *c);
shoal_status_t shoal_cuda_llama_set_n_past(shoal_cuda_llama_ctx_t *c, int n_past);

/* Rows [0, rows) of layer `layer`'s K and V caches to / from host memory (kv_dim floats a row):
 * snapshots. SHOAL_E_INVALID for a bad layer or rows outside [0, n_ctx]. */
shoal_status_t shoal_cuda_llama_kv_read(shoal_cuda_llama_ctx_t *c, int layer, int rows, float *k, float *v);
shoal_status_t shoal_cuda_llama_kv_write(shoal_cuda_llama_ctx_t *c, int layer, int rows, const float *k,
                                         const float *v);
/* Rows [0, rows) of every layer's K and V written in one staged upload from host memory k[l], v[l];
 * when fd >= 0 the same bytes lie in file fd at byte offsets off_k[l], off_v[l] and are read from
 * there instead (pread by the staging threads into pinned memory: no page tables are built for
 * the file). crc_k[l] / crc_v[l] = the CRC-32C of the bytes, computed by the threads that stage
 * them (no pass of their own over the source). SHOAL_E_IO for a failed or short read. */
shoal_status_t shoal_cuda_llama_kv_write_all_crc(shoal_cuda_llama_ctx_t *c, int rows, const float *const *k,
                                                 const float *const *v, int fd, const uint64_t *off_k,
                                                 const uint64_t *off_v, uint32_t *crc_k, uint32_t *crc_v);

/* Device bytes held by the shared weights of m (0 if not uploaded). */
size_t shoal_cuda_llama_weight_bytes(const shoal_llama_model_t *m);

#endif
