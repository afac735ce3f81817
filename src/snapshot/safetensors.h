/* safetensors.h — reading and writing the safetensors format (an 8-byte little-endian header
 * length, a JSON header {name: {dtype, shape, data_offsets}, "__metadata__": {str: str}}, then
 * the raw little-endian tensor bytes), so KV caches can be read by the reference library. */
#ifndef SHOAL_SNAPSHOT_SAFETENSORS_H
#define SHOAL_SNAPSHOT_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "shoal.h"

#define SHOAL_ST_MAX_DIMS 4

typedef struct shoal_st_tensor {
    const char *name;
    const char *dtype; /* "F32", "I32", "U8", ... */
    int ndim;
    uint64_t shape[SHOAL_ST_MAX_DIMS];
    const void *data;  /* writer: nbytes bytes; reader: points into the parsed buffer */
    uint64_t nbytes;
} shoal_st_tensor_t;

/* Byte sink for the writer: returns 0 on success. */
typedef int (*shoal_st_put_fn)(void *env, const void *p, size_t n);

/* Writes n tensors (data in the given order) and string metadata (meta[2i] = key,
 * meta[2i+1] = value, nmeta pairs). Checks that each tensor's nbytes matches dtype x shape. */
shoal_status_t shoal_safetensors_write(shoal_st_put_fn put, void *env, const shoal_st_tensor_t *t, size_t n,
                                       const char *const *meta, size_t nmeta);

/* A parsed safetensors buffer; tensors point into the caller's bytes, which must outlive it. */
typedef struct shoal_st shoal_st_t;
/* Validates the header completely (JSON, dtypes, shapes, offsets inside and tiling the data
 * area exactly as the reference reader demands); SHOAL_E_FORMAT with the fault named. */
shoal_status_t shoal_safetensors_parse(const uint8_t *buf, size_t len, shoal_st_t **out);
void shoal_safetensors_free(shoal_st_t *st);
size_t shoal_safetensors_count(const shoal_st_t *st);
const shoal_st_tensor_t *shoal_safetensors_at(const shoal_st_t *st, size_t i);
/* Tensor by name; SHOAL_E_NOT_FOUND or SHOAL_E_FORMAT if dtype/ndim/shape differ from those
 * given (shape may be NULL to skip that check). */
shoal_status_t shoal_safetensors_get(const shoal_st_t *st, const char *name, const char *dtype, int ndim,
                                     const uint64_t *shape, const shoal_st_tensor_t **out);
/* A __metadata__ value, or NULL. */
const char *shoal_safetensors_meta(const shoal_st_t *st, const char *key);
/* One line per metadata entry and a tensor summary, each prefixed by `indent`; prints nothing
 * if buf is not safetensors. */
void shoal_safetensors_describe(const uint8_t *buf, size_t len, const char *indent, FILE *out);

/* Element size of a safetensors dtype name, 0 if unknown. */
size_t shoal_safetensors_dtype_size(const char *dtype);

#endif
