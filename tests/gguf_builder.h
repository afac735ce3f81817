/* gguf_builder.h — writes GGUF files in memory for tests and fuzz seeds (header-only, test code).
 *
 * Usage: gb_t b; gb_init(&b, 3); gb_kv_u32(&b, "llama.block_count", 2); ...;
 *        gb_tensor(&b, "w", SHOAL_GGML_Q4_1, 2, ne, bytes, nbytes); gb_finish(&b, align);
 *        ... use b.out.p / b.out.n ...; gb_free(&b);
 * Key/values are appended as they come; tensors are collected and laid out by gb_finish, which
 * writes the tensor infos, pads to the alignment and appends each tensor's bytes at an aligned
 * offset. Raw writers (gb_put_*) let tests produce malformed files on purpose. */
#ifndef SHOAL_TESTS_GGUF_BUILDER_H
#define SHOAL_TESTS_GGUF_BUILDER_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct gb_buf {
    uint8_t *p;
    size_t n, cap;
} gb_buf;

static inline void gb_put(gb_buf *b, const void *src, size_t n)
{
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n) cap *= 2;
        b->p = realloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->n, src, n);
    b->n += n;
}
static inline void gb_put_u8(gb_buf *b, uint8_t v) { gb_put(b, &v, 1); }
static inline void gb_put_u32(gb_buf *b, uint32_t v) { gb_put(b, &v, 4); }
static inline void gb_put_u64(gb_buf *b, uint64_t v) { gb_put(b, &v, 8); }
static inline void gb_put_str(gb_buf *b, const char *s)
{
    gb_put_u64(b, strlen(s));
    gb_put(b, s, strlen(s));
}

typedef struct gb_tensor_rec {
    char name[96];
    uint32_t type, n_dims;
    uint64_t ne[8]; /* room for malformed n_dims up to 8 */
    const void *data;
    size_t nbytes;
} gb_tensor_rec;

typedef struct gb_t {
    uint32_t version;
    uint64_t n_kv;
    gb_buf kv;  /* key/value bytes */
    gb_tensor_rec t[64];
    uint64_t n_t;
    gb_buf out; /* the finished file */
} gb_t;

static inline void gb_init(gb_t *b, uint32_t version)
{
    memset(b, 0, sizeof *b);
    b->version = version;
}
static inline void gb_free(gb_t *b)
{
    free(b->kv.p);
    free(b->out.p);
    memset(b, 0, sizeof *b);
}

/* key + value type; the caller then writes the value with gb_put_* on b->kv */
static inline void gb_kv_head(gb_t *b, const char *key, uint32_t vtype)
{
    gb_put_str(&b->kv, key);
    gb_put_u32(&b->kv, vtype);
    b->n_kv++;
}
static inline void gb_kv_u32(gb_t *b, const char *key, uint32_t v) { gb_kv_head(b, key, 4); gb_put_u32(&b->kv, v); }
static inline void gb_kv_i32(gb_t *b, const char *key, int32_t v) { gb_kv_head(b, key, 5); gb_put(&b->kv, &v, 4); }
static inline void gb_kv_f32(gb_t *b, const char *key, float v) { gb_kv_head(b, key, 6); gb_put(&b->kv, &v, 4); }
static inline void gb_kv_bool(gb_t *b, const char *key, int v) { gb_kv_head(b, key, 7); gb_put_u8(&b->kv, (uint8_t)v); }
static inline void gb_kv_str(gb_t *b, const char *key, const char *v) { gb_kv_head(b, key, 8); gb_put_str(&b->kv, v); }
static inline void gb_kv_u64(gb_t *b, const char *key, uint64_t v) { gb_kv_head(b, key, 10); gb_put_u64(&b->kv, v); }
/* array header; the caller appends `len` elements of `etype` to b->kv */
static inline void gb_kv_arr(gb_t *b, const char *key, uint32_t etype, uint64_t len)
{
    gb_kv_head(b, key, 9);
    gb_put_u32(&b->kv, etype);
    gb_put_u64(&b->kv, len);
}
static inline void gb_kv_strs(gb_t *b, const char *key, const char *const *v, uint64_t len)
{
    gb_kv_arr(b, key, 8, len);
    for (uint64_t i = 0; i < len; i++) gb_put_str(&b->kv, v[i]);
}

static inline void gb_tensor(gb_t *b, const char *name, uint32_t type, uint32_t n_dims, const uint64_t *ne,
                             const void *data, size_t nbytes)
{
    gb_tensor_rec *t = &b->t[b->n_t++];
    memset(t, 0, sizeof *t);
    size_t nl = strnlen(name, sizeof t->name - 1); /* names longer than the record are cut */
    memcpy(t->name, name, nl);
    t->name[nl] = '\0';
    t->type = type;
    t->n_dims = n_dims;
    for (uint32_t d = 0; d < n_dims && d < 8; d++) t->ne[d] = ne[d];
    t->data = data;
    t->nbytes = nbytes;
}

/* Lays out the file with `align` (0: the default 32, without writing general.alignment; otherwise
 * the caller must have written general.alignment itself). Returns the offset of the data section. */
static inline size_t gb_finish(gb_t *b, uint32_t align)
{
    if (!align) align = 32;
    gb_buf *o = &b->out;
    o->n = 0;
    gb_put(o, "GGUF", 4);
    gb_put_u32(o, b->version);
    gb_put_u64(o, b->n_t);
    gb_put_u64(o, b->n_kv);
    gb_put(o, b->kv.p, b->kv.n);
    uint64_t off = 0;
    uint64_t offs[64];
    for (uint64_t i = 0; i < b->n_t; i++) {
        gb_tensor_rec *t = &b->t[i];
        gb_put_str(o, t->name);
        gb_put_u32(o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims && d < 8; d++) gb_put_u64(o, t->ne[d]);
        gb_put_u32(o, t->type);
        gb_put_u64(o, off);
        offs[i] = off;
        off += (t->nbytes + align - 1) / align * align;
    }
    static const uint8_t zeros[4096];
    size_t data = (o->n + align - 1) / align * align;
    gb_put(o, zeros, data - o->n);
    for (uint64_t i = 0; i < b->n_t; i++) {
        size_t want = data + offs[i];
        while (o->n < want) gb_put(o, zeros, want - o->n > sizeof zeros ? sizeof zeros : want - o->n);
        gb_put(o, b->t[i].data, b->t[i].nbytes);
    }
    return data;
}

#endif
