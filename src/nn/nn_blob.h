/* nn_blob.h — little-endian writer/reader for the nn layer's snapshot sections (wasi-nn
 * contexts, llm sessions). The reader never reads past its end: a short or corrupt blob makes
 * every later get fail (ok = false) and return zeros, and the caller reports SHOAL_E_FORMAT. */
#ifndef SHOAL_NN_BLOB_H
#define SHOAL_NN_BLOB_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct nn_writer {
    uint8_t **buf;
    size_t *len;
    size_t cap;
    bool ok; /* false after an allocation failure */
} nn_writer;

static inline void nn_w_init(nn_writer *w, uint8_t **buf, size_t *len)
{
    w->buf = buf;
    w->len = len;
    w->cap = *len;
    w->ok = true;
}

static inline void nn_w_bytes(nn_writer *w, const void *p, size_t n)
{
    if (!w->ok || n == 0) return;
    if (*w->len + n > w->cap) {
        size_t cap = (*w->len + n) * 2;
        uint8_t *b = realloc(*w->buf, cap);
        if (!b) {
            w->ok = false;
            return;
        }
        *w->buf = b;
        w->cap = cap;
    }
    memcpy(*w->buf + *w->len, p, n);
    *w->len += n;
}

static inline void nn_w_u32(nn_writer *w, uint32_t v) { nn_w_bytes(w, &v, 4); }
static inline void nn_w_u64(nn_writer *w, uint64_t v) { nn_w_bytes(w, &v, 8); }
static inline void nn_w_f64(nn_writer *w, double v) { nn_w_bytes(w, &v, 8); }
static inline void nn_w_str(nn_writer *w, const char *s, size_t n)
{
    nn_w_u32(w, (uint32_t)n);
    nn_w_bytes(w, s, n);
}

struct shoal_restore_src; /* snapshot/restore_src.h */

typedef struct nn_reader {
    const uint8_t *p, *end;
    bool ok;
    struct shoal_restore_src *src; /* the snapshot file being restored, or NULL */
} nn_reader;

static inline void nn_r_init(nn_reader *r, const uint8_t *buf, size_t len)
{
    r->p = buf;
    r->end = buf + len;
    r->ok = true;
    r->src = NULL;
}

/* A pointer to the next n bytes, or NULL (and ok = false) if the blob is shorter. */
static inline const uint8_t *nn_r_take(nn_reader *r, uint64_t n)
{
    if (!r->ok || n > (uint64_t)(r->end - r->p)) {
        r->ok = false;
        return NULL;
    }
    const uint8_t *q = r->p;
    r->p += n;
    return q;
}

static inline uint32_t nn_r_u32(nn_reader *r)
{
    const uint8_t *q = nn_r_take(r, 4);
    uint32_t v = 0;
    if (q) memcpy(&v, q, 4);
    return v;
}

static inline uint64_t nn_r_u64(nn_reader *r)
{
    const uint8_t *q = nn_r_take(r, 8);
    uint64_t v = 0;
    if (q) memcpy(&v, q, 8);
    return v;
}

static inline double nn_r_f64(nn_reader *r)
{
    const uint8_t *q = nn_r_take(r, 8);
    double v = 0;
    if (q) memcpy(&v, q, 8);
    return v;
}

#endif
