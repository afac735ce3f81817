/* nn_snap.h — pieces of the nn layer's snapshot sections shared by wasi-nn contexts and llm
 * sessions: section versions, model references (name and GGUF SHA-256), the KV cache rows in
 * use (as an embedded safetensors blob), sampler state and wasi-nn options. Each *_load checks
 * what it reads against the live object and fails with SHOAL_E_FORMAT without side effects
 * beyond the object being loaded. */
#ifndef SHOAL_NN_SNAP_H
#define SHOAL_NN_SNAP_H

#include "model/llama.h"
#include "model/sampler.h"
#include "nn/nn_blob.h"
#include "nn/nn_config.h"
#include "nn/nn_model.h"

/* Version of the "nn" and "llm" section layouts (the last byte of their magic, '3'). Version 1
 * named models without hashing them and stored raw KV rows; version 2 had no guest-memory KV
 * caches and another "unset" for n-gpu-layers. Older versions are refused, not converted. */
#define NN_SNAP_VERSION 3u
#define NN_SNAP_MAGIC(a, b, c) ((uint32_t)(a) | (uint32_t)(b) << 8 | (uint32_t)(c) << 16 | (uint32_t)('0' + NN_SNAP_VERSION) << 24)
/* Reads the magic and checks it: SHOAL_E_FORMAT naming the version found when it is another. */
shoal_status_t nn_snap_magic_load(nn_reader *r, uint32_t magic, const char *what);

/* Model reference: name (u32 length, bytes) then the 32-byte SHA-256 of its GGUF. */
void nn_snap_model_save(nn_writer *w, const shoal_nn_model_t *m);
/* The preloaded model the reference names, or NULL with the error recorded: SHOAL_E_NOT_FOUND
 * if no model has that name, SHOAL_E_FORMAT if the one that does is another file (both hashes
 * in the message) or the record is truncated. */
const shoal_nn_model_t *nn_snap_model_load(nn_reader *r, shoal_runtime_t *rt, const char *what, shoal_status_t *st);

/* u64 length, then the rows [0, n_past) as shoal_kv_serialize writes them: a safetensors blob
 * bound to the model's hash. Loading checks all of it (hash, shape, n_past, CRC) first. */
void nn_snap_kv_save(nn_writer *w, shoal_engine_t *c, const uint8_t model_sha256[32]);
shoal_status_t nn_snap_kv_load(nn_reader *r, shoal_engine_t *c, const uint8_t model_sha256[32]);
/* Length-prefixed shoal_sampler_state_save blob (0 length: no sampler). */
void nn_snap_sampler_save(nn_writer *w, const shoal_sampler_t *s);
shoal_status_t nn_snap_sampler_load(nn_reader *r, shoal_sampler_t *s);
void nn_snap_config_save(nn_writer *w, const nn_config_t *c);
shoal_status_t nn_snap_config_load(nn_reader *r, nn_config_t *c);

#endif
