/* gguf.h — read-only view of a GGUF model file (v2/v3) over mmap: metadata and tensor directory.
 *
 * Layout facts (GGUF, little-endian throughout):
 *   u32 magic "GGUF" | u32 version (2 or 3) | u64 tensor_count | u64 kv_count
 *   kv_count x { string key | u32 value_type | value }
 *   tensor_count x { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (default 32) | tensor data
 * A string is u64 length + bytes (no NUL). An array is u32 element_type + u64 count + elements;
 * arrays may nest. Tensor offsets are relative to the start of the data section and must be
 * multiples of the alignment. ne[0] is the fastest-varying dimension (the row length).
 *
 * Ownership and lifetime: shoal_gguf_open maps the file (PROT_READ, MAP_PRIVATE) and keeps it
 * mapped until shoal_gguf_close. Every pointer this API returns (tensor data, strings, array
 * elements, names) points into the mapping or into the handle and stays valid until close.
 * Weights are never copied. Strings from the file (values, array elements) are NOT
 * NUL-terminated: use the returned length. Keys and tensor names are returned as
 * NUL-terminated copies held by the handle (a name with an embedded NUL is rejected at open).
 * A handle is immutable after open: concurrent readers need no locking.
 *
 * Validation at open (all failures are SHOAL_E_FORMAT with a message naming the field):
 * magic (byte-swapped magic is reported as a big-endian file, unsupported), version, counts
 * bounded by the file size, every string length, value types, array nesting (depth <= 8),
 * duplicate keys and tensor names, n_dims in 1..4, every dim >= 1 with the element count and byte
 * size overflow-checked, row length a multiple of the type's block size, tensor type known to
 * the ggml type table (quant.h; unknown ids are rejected at open because their byte size, hence
 * their bounds, cannot be checked), offsets aligned, and each tensor's data inside the file.
 * Nothing is ever read past the mapping. Tensors whose type quant.h cannot compute on are
 * still listed (check shoal_qtype_supported before using their data). */
#ifndef SHOAL_MODEL_GGUF_H
#define SHOAL_MODEL_GGUF_H

#include "shoal.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SHOAL_GGUF_MAX_DIMS 4
#define SHOAL_GGUF_DEFAULT_ALIGNMENT 32

/* Metadata value types, numbered as GGUF stores them. */
typedef enum shoal_gguf_vtype {
    SHOAL_GGUF_U8 = 0,
    SHOAL_GGUF_I8 = 1,
    SHOAL_GGUF_U16 = 2,
    SHOAL_GGUF_I16 = 3,
    SHOAL_GGUF_U32 = 4,
    SHOAL_GGUF_I32 = 5,
    SHOAL_GGUF_F32 = 6,
    SHOAL_GGUF_BOOL = 7,   /* one byte, 0 or 1 (other values rejected at open) */
    SHOAL_GGUF_STRING = 8,
    SHOAL_GGUF_ARRAY = 9,
    SHOAL_GGUF_U64 = 10,
    SHOAL_GGUF_I64 = 11,
    SHOAL_GGUF_F64 = 12,
    SHOAL_GGUF_VTYPE_COUNT
} shoal_gguf_vtype_t;

typedef struct shoal_gguf shoal_gguf_t;

/* One entry of the tensor directory. */
typedef struct shoal_gguf_tensor {
    const char *name;                 /* NUL-terminated, owned by the handle */
    uint32_t n_dims;                  /* 1..SHOAL_GGUF_MAX_DIMS */
    uint64_t ne[SHOAL_GGUF_MAX_DIMS]; /* ne[0] = row length (fastest); dims past n_dims are 1 */
    uint32_t type;                    /* ggml type id as stored (see shoal_ggml_type_t in quant.h) */
    uint64_t n_elements;              /* product of ne */
    uint64_t offset;                  /* byte offset from the start of the data section */
    uint64_t file_offset;             /* byte offset from the start of the file */
    uint64_t nbytes;                  /* bytes of data (rows * row size) */
    uint64_t row_bytes;               /* bytes of one row of ne[0] elements */
    const void *data;                 /* into the mapping; aligned to the file's alignment */
} shoal_gguf_tensor_t;

/* An array value. Numeric elements are packed little-endian values of `type` starting at
 * `data` (the pointer may be unaligned for the element type: read with memcpy or the
 * shoal_gguf_array_* accessors). String elements are reached with shoal_gguf_array_string.
 * Nested arrays (type == SHOAL_GGUF_ARRAY) are validated at open but their elements are not
 * accessible through this API. */
typedef struct shoal_gguf_array {
    shoal_gguf_vtype_t type; /* element type */
    uint64_t len;            /* number of elements */
    const void *data;        /* first element (numeric arrays); NULL for string/array arrays */
    const shoal_gguf_t *owner;
    uint64_t kv;             /* index of the key/value holding this array */
} shoal_gguf_array_t;

/* A metadata value, as returned by shoal_gguf_kv_value. */
typedef struct shoal_gguf_value {
    shoal_gguf_vtype_t type;
    union {
        uint64_t u;   /* U8/U16/U32/U64 and BOOL (0/1), zero-extended */
        int64_t i;    /* I8/I16/I32/I64, sign-extended */
        double f;     /* F32/F64 */
    } num;
    const char *str;  /* STRING: bytes in the mapping, not NUL-terminated */
    uint64_t str_len;
    shoal_gguf_array_t arr; /* ARRAY */
} shoal_gguf_value_t;

/* ---- open / close ---- */

/* Maps and validates `path`. SHOAL_E_IO if it cannot be opened or mapped, SHOAL_E_FORMAT if it is
 * not a valid GGUF v2/v3 file, SHOAL_E_NOMEM on allocation failure. *out is written on success. */
shoal_status_t shoal_gguf_open(const char *path, shoal_gguf_t **out);
/* Same validation over caller-owned bytes (tests, fuzzing, files already in memory). Nothing is
 * copied: `data` must stay valid and unchanged until shoal_gguf_close. */
shoal_status_t shoal_gguf_open_buffer(const void *data, size_t len, shoal_gguf_t **out);
/* Unmaps the file (if opened by path) and frees the handle. NULL is allowed. */
void shoal_gguf_close(shoal_gguf_t *g);

/* ---- file ---- */

uint32_t shoal_gguf_version(const shoal_gguf_t *g);
uint32_t shoal_gguf_alignment(const shoal_gguf_t *g);   /* general.alignment or 32 */
const void *shoal_gguf_base(const shoal_gguf_t *g);      /* first byte of the file */
uint64_t shoal_gguf_file_size(const shoal_gguf_t *g);
uint64_t shoal_gguf_data_offset(const shoal_gguf_t *g);  /* start of the data section */

/* ---- metadata ---- */

uint64_t shoal_gguf_kv_count(const shoal_gguf_t *g);
/* Index of `key` in 0..kv_count-1, or SHOAL_E_NOT_FOUND. */
shoal_status_t shoal_gguf_find_key(const shoal_gguf_t *g, const char *key, uint64_t *index);
/* Key of entry i (NUL-terminated, owned by the handle); NULL if i is out of range. */
const char *shoal_gguf_kv_key(const shoal_gguf_t *g, uint64_t i);
/* Type of entry i; SHOAL_GGUF_VTYPE_COUNT if i is out of range. */
shoal_gguf_vtype_t shoal_gguf_kv_type(const shoal_gguf_t *g, uint64_t i);
/* Value of entry i. SHOAL_E_INVALID if i is out of range. */
shoal_status_t shoal_gguf_kv_value(const shoal_gguf_t *g, uint64_t i, shoal_gguf_value_t *out);

/* Typed getters by key. Missing key: SHOAL_E_NOT_FOUND. Wrong type or a value that does not fit:
 * SHOAL_E_FORMAT with a message. Integer getters accept any integer type whose value fits the
 * target (e.g. get_u32 accepts U8..U64 and non-negative I8..I64 up to UINT32_MAX); get_f32 /
 * get_f64 accept F32 and F64 only; get_bool accepts BOOL only; get_string accepts STRING only.
 * Out-params are written only on success. */
shoal_status_t shoal_gguf_get_u32(const shoal_gguf_t *g, const char *key, uint32_t *out);
shoal_status_t shoal_gguf_get_i32(const shoal_gguf_t *g, const char *key, int32_t *out);
shoal_status_t shoal_gguf_get_u64(const shoal_gguf_t *g, const char *key, uint64_t *out);
shoal_status_t shoal_gguf_get_i64(const shoal_gguf_t *g, const char *key, int64_t *out);
shoal_status_t shoal_gguf_get_f32(const shoal_gguf_t *g, const char *key, float *out);
shoal_status_t shoal_gguf_get_f64(const shoal_gguf_t *g, const char *key, double *out);
shoal_status_t shoal_gguf_get_bool(const shoal_gguf_t *g, const char *key, bool *out);
/* *ptr points into the mapping and is NOT NUL-terminated; *len is its byte length. */
shoal_status_t shoal_gguf_get_string(const shoal_gguf_t *g, const char *key, const char **ptr, size_t *len);
shoal_status_t shoal_gguf_get_array(const shoal_gguf_t *g, const char *key, shoal_gguf_array_t *out);

/* Same getters for "<general.architecture>.<suffix>", e.g. suffix "block_count" on a llama
 * model reads "llama.block_count". SHOAL_E_NOT_FOUND also when general.architecture is missing. */
shoal_status_t shoal_gguf_get_arch_u32(const shoal_gguf_t *g, const char *suffix, uint32_t *out);
shoal_status_t shoal_gguf_get_arch_f32(const shoal_gguf_t *g, const char *suffix, float *out);
/* general.architecture as a NUL-terminated string owned by the handle, or NULL if absent/not a string. */
const char *shoal_gguf_architecture(const shoal_gguf_t *g);

/* ---- array elements (bounds- and type-checked; SHOAL_E_INVALID for i >= len,
 *      SHOAL_E_FORMAT for an element type that does not fit the accessor) ---- */

/* String element i: pointer into the mapping (not NUL-terminated) and its length. O(1). */
shoal_status_t shoal_gguf_array_string(const shoal_gguf_array_t *a, uint64_t i, const char **ptr, size_t *len);
/* Numeric element i, widened like the scalar getters (integers must fit; floats from F32/F64). */
shoal_status_t shoal_gguf_array_i64(const shoal_gguf_array_t *a, uint64_t i, int64_t *out);
shoal_status_t shoal_gguf_array_f32(const shoal_gguf_array_t *a, uint64_t i, float *out);
/* Byte size of one element of a numeric type (1, 2, 4 or 8); 0 for STRING/ARRAY/unknown. */
size_t shoal_gguf_vtype_size(shoal_gguf_vtype_t t);
const char *shoal_gguf_vtype_name(shoal_gguf_vtype_t t);

/* ---- tensors ---- */

uint64_t shoal_gguf_tensor_count(const shoal_gguf_t *g);
/* Tensor i in file order; NULL if i is out of range. */
const shoal_gguf_tensor_t *shoal_gguf_tensor_at(const shoal_gguf_t *g, uint64_t i);
/* Tensor by exact name (hash lookup). SHOAL_E_NOT_FOUND with the name in the message. */
shoal_status_t shoal_gguf_find_tensor(const shoal_gguf_t *g, const char *name, const shoal_gguf_tensor_t **out);

#endif
