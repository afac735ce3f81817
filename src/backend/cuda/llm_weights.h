/* llm_weights.h — a model's weights on a GPU, uploaded once per process and device (repacked for
 * the kernels of llm_kernels.h) and shared by every context that uses them. Internal to
 * src/backend/cuda (llm_weights.c, llm_cuda.c). */
#ifndef SHOAL_BACKEND_CUDA_LLM_WEIGHTS_H
#define SHOAL_BACKEND_CUDA_LLM_WEIGHTS_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "backend/cuda/llm_kernels.h"
#include "core/error.h"
#include "model/llama.h"
#include "model/quant.h"

typedef struct cu_layer {
    shoal_cu_mat_t wq, wk, wv, wo, gate, up, down;
    const float *attn_norm, *ffn_norm;
} cu_layer_t;

typedef struct cu_weights {
    struct cu_weights *next;
    const shoal_llama_model_t *model;
    int device, refs;
    void *base; /* one device allocation for everything */
    size_t bytes;
    shoal_cu_mat_t tok_embd, output;
    cu_layer_t *layers;
    const float *output_norm, *inv_freq;
} cu_weights_t;

/* m's weights on device, uploaded on first use and counted: every acquire wants a release. Types
 * or shapes the kernels do not take: SHOAL_E_UNSUPPORTED naming the tensor; too little device
 * memory: SHOAL_E_NOMEM. */
shoal_status_t shoal_cu_weights_acquire(const shoal_llama_model_t *m, int device, cu_weights_t **out);
void shoal_cu_weights_release(cu_weights_t *w);

static inline shoal_status_t cuda_fail(cudaError_t e, const char *what)
{
    return shoal_fail(SHOAL_E_DEVICE, "cuda llm: %s failed: %s (%s)", what, cudaGetErrorString(e), cudaGetErrorName(e));
}

static inline size_t align256(size_t n) { return (n + 255) & ~(size_t)255; }

/* Payload bytes of one repacked row of n_in elements (llm_kernels.h's layout; scales and minimums
 * are stored apart), or 0 for a type the kernels do not take. */
static inline size_t cu_row_payload(uint32_t type, int n_in)
{
    switch (type) {
    case SHOAL_GGML_F16:
    case SHOAL_GGML_BF16: return (size_t)n_in * 2;
    case SHOAL_GGML_Q8_0: return (size_t)n_in;
    case SHOAL_GGML_Q4_0:
    case SHOAL_GGML_Q4_1: return (size_t)n_in / 2;
    default: return 0;
    }
}

#endif
