/* nn_snap.h — pieces of the nn layer's snapshot sections shared by wasi-nn contexts and llm
 * sessions: the KV cache rows in use, sampler state and wasi-nn options. Each *_load checks
 * what it reads against the live object and fails with SHOAL_E_FORMAT without side effects
 * beyond the object being loaded. */
#ifndef SHOAL_NN_SNAP_H
#define SHOAL_NN_SNAP_H

#include "model/llama.h"
#include "model/sampler.h"
#include "nn/nn_blob.h"
#include "nn/nn_config.h"

/* n_layer, row bytes, n_past, then per layer K rows [0, n_past) and V rows [0, n_past). */
void nn_snap_kv_save(nn_writer *w, shoal_llama_ctx_t *c);
shoal_status_t nn_snap_kv_load(nn_reader *r, shoal_llama_ctx_t *c);
/* Length-prefixed shoal_sampler_state_save blob (0 length: no sampler). */
void nn_snap_sampler_save(nn_writer *w, const shoal_sampler_t *s);
shoal_status_t nn_snap_sampler_load(nn_reader *r, shoal_sampler_t *s);
void nn_snap_config_save(nn_writer *w, const nn_config_t *c);
shoal_status_t nn_snap_config_load(nn_reader *r, nn_config_t *c);

#endif
