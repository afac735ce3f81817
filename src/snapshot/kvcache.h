/* kvcache.h — an LLM engine's KV cache (CPU or GPU: backend/llm_engine.h) as safetensors:
 * tensors layers.{i}.k and layers.{i}.v, each F32 [n_past, kv_dim] (row p = position p), plus __metadata__ naming the
 * model (SHA-256 of its GGUF), the shape, n_past and a CRC-32C of the data. Loading checks all
 * of it before the first byte of the context is written: a refused file leaves it untouched. */
#ifndef SHOAL_SNAPSHOT_KVCACHE_H
#define SHOAL_SNAPSHOT_KVCACHE_H

#include <stddef.h>
#include <stdint.h>

#include "model/gguf.h"
#include "backend/llm_engine.h"

/* SHA-256 of the whole GGUF file: the model identity KV caches are bound to. Costs a pass over
 * the file (tens of ms for 100 MB with the SHA extensions), so compute it once per loaded model. */
void shoal_model_sha256(const shoal_gguf_t *g, uint8_t out[32]);

shoal_status_t shoal_kv_save_safetensors(shoal_engine_t *c, const uint8_t model_sha256[32], const char *path);
shoal_status_t shoal_kv_load_safetensors(shoal_engine_t *c, const uint8_t model_sha256[32], const char *path);

/* The same bytes in memory, for layers that embed the cache in a snapshot section: appends to
 * *buf (realloc'd, *len updated) / reads buf[0, len). */
shoal_status_t shoal_kv_serialize(shoal_engine_t *c, const uint8_t model_sha256[32], uint8_t **buf, size_t *len);
shoal_status_t shoal_kv_deserialize(shoal_engine_t *c, const uint8_t model_sha256[32], const uint8_t *buf, size_t len);
/* As shoal_kv_deserialize for a blob inside the snapshot file src maps (src may be NULL): the
 * rows may be read from that file, and the CRCs taken over them are noted in src. */
struct shoal_restore_src;
shoal_status_t shoal_kv_deserialize_from(shoal_engine_t *c, const uint8_t model_sha256[32], const uint8_t *buf, size_t len,
                                         struct shoal_restore_src *src);

#endif
