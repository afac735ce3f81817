/* llm_engine.h — one LLM sequence (a KV cache over a shared model) on the CPU or a CUDA GPU,
 * behind one handle, so that wasi-nn contexts, token-API sessions and snapshots do not care
 * where the forward pass runs.
 *
 * Both devices keep the cache in the same logical layout (per layer, K and V rows of kv_dim
 * float32 by position), so a cache read from one engine can be written into an engine on the
 * other device: that is how snapshots move between the CPU and a GPU. They are not bit-exact
 * with each other (the CPU quantises activations for its integer dot products, the GPU
 * accumulates in float32 in another order); each is deterministic on its own.
 *
 * Ownership: the engine borrows the model (and the CPU thread pool) and owns its cache. One
 * engine must not be used by two threads at once. */
#ifndef SHOAL_BACKEND_LLM_ENGINE_H
#define SHOAL_BACKEND_LLM_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "backend/cpu/threadpool.h"
#include "model/llama.h"
#include "shoal.h"

typedef struct shoal_engine shoal_engine_t;

typedef struct shoal_engine_params {
    shoal_device_kind_t device; /* SHOAL_DEVICE_CPU or SHOAL_DEVICE_CUDA (AUTO is resolved by the caller) */
    int n_ctx;                  /* KV positions; <= 0: min(n_ctx_train, 4096) */
    int n_batch;                /* CPU prefill chunk; <= 0: the CPU default */
    shoal_threadpool_t *pool;   /* CPU: borrowed worker pool (NULL runs serially) */
    bool cuda_graph;            /* CUDA: replay greedy decode steps as a captured graph */
    /* Caller-owned KV cache of shoal_llama_kv_bytes(m, n_ctx) bytes, 16-byte aligned (a guest's
     * linear memory), or NULL. On the GPU it must be registered mapped host memory (the CUDA
     * backend registers guest memories); the kernels then read and write it over the bus. */
    float *kv_external;
} shoal_engine_params_t;

void shoal_engine_params_init(shoal_engine_params_t *p);

/* SHOAL_E_UNSUPPORTED for CUDA in a build without it; the device's own errors otherwise
 * (SHOAL_E_DEVICE: no usable GPU; SHOAL_E_NOMEM: device memory too small, with the sizes). */
shoal_status_t shoal_engine_new(const shoal_llama_model_t *m, const shoal_engine_params_t *p, shoal_engine_t **out);
void shoal_engine_delete(shoal_engine_t *e);

shoal_device_kind_t shoal_engine_device(const shoal_engine_t *e);
const shoal_llama_model_t *shoal_engine_model(const shoal_engine_t *e);
int shoal_engine_n_past(const shoal_engine_t *e);
int shoal_engine_n_ctx(const shoal_engine_t *e);

/* As shoal_llama_eval: tokens[0..n) at positions pos0.., logits per shoal_llama_logits_mode_t.
 * logits_out may be a guest's linear memory: on the GPU it is written in place when that memory
 * is registered with the device (the CUDA backend registers guest memories). */
shoal_status_t shoal_engine_eval(shoal_engine_t *e, const int32_t *tokens, int n, int pos0, float *logits_out,
                                 int logits_mode);
/* Evaluates and returns the last token's most likely next token (lowest id on ties). On the GPU
 * the choice is made on the device: only the id crosses the bus. */
shoal_status_t shoal_engine_eval_greedy(shoal_engine_t *e, const int32_t *tokens, int n, int pos0, int32_t *token_out);
void shoal_engine_reset(shoal_engine_t *e);
/* Declares rows [0, n_past) valid (rewind, or after writing a restored cache). */
shoal_status_t shoal_engine_set_n_past(shoal_engine_t *e, int n_past);

/* Rows [0, rows) of layer `layer`'s K and V, kv_dim floats a row, to or from host memory. */
shoal_status_t shoal_engine_kv_read(shoal_engine_t *e, int layer, int rows, float *k, float *v);
shoal_status_t shoal_engine_kv_write(shoal_engine_t *e, int layer, int rows, const float *k, const float *v);
/* A restore's write of rows [0, rows) of every layer into an empty cache the engine owns, from host
 * memory k[l], v[l]; when fd >= 0 the same bytes lie in file fd at byte offsets off_k[l], off_v[l]
 * and a GPU engine reads them from there (its staging threads pread straight into pinned memory).
 * crc_k[l] / crc_v[l] = the CRC-32C of the K / V bytes, on a GPU computed by the threads that stage
 * the rows for the upload (no pass of their own). The caller checks them against the file before
 * declaring the rows valid (set_n_past); if they do not match, nothing valid was overwritten.
 * SHOAL_E_UNSUPPORTED when the cache holds rows (n_past > 0) or is caller-owned (a guest's memory
 * must not change on a refused restore): use the checksum-first path then. */
shoal_status_t shoal_engine_kv_write_all_crc(shoal_engine_t *e, int rows, const float *const *k, const float *const *v,
                                             int fd, const uint64_t *off_k, const uint64_t *off_v, uint32_t *crc_k,
                                             uint32_t *crc_v);
/* The CPU cache of one layer in place ((n_ctx, kv_dim) each), for writers that want no copy;
 * SHOAL_E_UNSUPPORTED on a GPU engine (use shoal_engine_kv_read). */
shoal_status_t shoal_engine_kv_host(shoal_engine_t *e, int layer, const float **k, const float **v);

#endif
