/* gguf.c — GGUF v2/v3 parser: validates the whole header once at open, then answers lookups from
 * indexes built over the mapping (nothing in the file is trusted after that pass). */
#include "model/gguf.h"

#include "core/error.h"
#include "model/quant.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GGUF_MAGIC 0x46554747u /* "GGUF" read as a little-endian u32 */
#define MAX_NEST 8             /* array-of-array depth accepted; real files use 1 */
#define MAX_KEY_LEN 65535u     /* the spec caps keys at 2^16-1 bytes; names share the cap here */

typedef struct kv_entry {
    const char *key;     /* NUL-terminated copy in the arena */
    uint32_t type;
    uint64_t voff;       /* file offset of the value (for arrays: of the element type field) */
    uint32_t atype;      /* arrays: element type */
    uint64_t alen;       /* arrays: element count */
    uint64_t adata;      /* arrays: file offset of the first element */
    uint64_t *soff;      /* string arrays: file offset of each element's u64 length */
} kv_entry;

struct shoal_gguf {
    const uint8_t *base;
    uint64_t size;
    bool mapped;
    uint32_t version;
    uint32_t alignment;
    uint64_t data_offset;
    uint64_t n_kv, n_tensors;
    kv_entry *kv;
    shoal_gguf_tensor_t *tensors;
    uint32_t *kv_hash, *t_hash; /* open addressing, index + 1 (0 = empty), capacity = mask + 1 */
    uint64_t kv_mask, t_mask;
    char *arena;                /* keys and tensor names */
    uint64_t *soff_pool;        /* offsets of all string-array elements */
    const char *arch;
};

/* ---- bounded cursor ---- */

typedef struct cursor {
    const uint8_t *p;
    uint64_t size, pos;
} cursor;

static shoal_status_t need(const cursor *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: truncated: %s at byte %llu needs %llu bytes, file has %llu", what,
                          (unsigned long long)c->pos, (unsigned long long)n, (unsigned long long)c->size);
    return SHOAL_OK;
}

static shoal_status_t rd_u32(cursor *c, uint32_t *v, const char *what)
{
    shoal_status_t s = need(c, 4, what);
    if (s) return s;
    memcpy(v, c->p + c->pos, 4);
    c->pos += 4;
    return SHOAL_OK;
}

static shoal_status_t rd_u64(cursor *c, uint64_t *v, const char *what)
{
    shoal_status_t s = need(c, 8, what);
    if (s) return s;
    memcpy(v, c->p + c->pos, 8);
    c->pos += 8;
    return SHOAL_OK;
}

/* A string: on success *off is the offset of its bytes and *len their count. */
static shoal_status_t rd_str(cursor *c, uint64_t *off, uint64_t *len, const char *what)
{
    shoal_status_t s = rd_u64(c, len, what);
    if (s) return s;
    if (*len > c->size - c->pos)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: %s at byte %llu has length %llu, past end of file (%llu bytes)", what,
                          (unsigned long long)(c->pos - 8), (unsigned long long)*len, (unsigned long long)c->size);
    *off = c->pos;
    c->pos += *len;
    return SHOAL_OK;
}

size_t shoal_gguf_vtype_size(shoal_gguf_vtype_t t)
{
    switch (t) {
    case SHOAL_GGUF_U8: case SHOAL_GGUF_I8: case SHOAL_GGUF_BOOL: return 1;
    case SHOAL_GGUF_U16: case SHOAL_GGUF_I16: return 2;
    case SHOAL_GGUF_U32: case SHOAL_GGUF_I32: case SHOAL_GGUF_F32: return 4;
    case SHOAL_GGUF_U64: case SHOAL_GGUF_I64: case SHOAL_GGUF_F64: return 8;
    default: return 0;
    }
}

const char *shoal_gguf_vtype_name(shoal_gguf_vtype_t t)
{
    static const char *names[] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32",
                                  "bool", "string", "array", "u64", "i64", "f64"};
    return (unsigned)t < SHOAL_GGUF_VTYPE_COUNT ? names[t] : "unknown";
}

/* Skips (and validates) one value of type t. Strings inside nested arrays are checked but not indexed. */
static shoal_status_t skip_value(cursor *c, uint32_t t, int depth, const char *key)
{
    if (t >= SHOAL_GGUF_VTYPE_COUNT)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: key '%s': unknown value type %u", key, t);
    if (t == SHOAL_GGUF_STRING) {
        uint64_t off, len;
        return rd_str(c, &off, &len, "string value");
    }
    if (t == SHOAL_GGUF_ARRAY) {
        if (depth >= MAX_NEST)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: key '%s': arrays nested deeper than %d", key, MAX_NEST);
        uint32_t et;
        uint64_t n;
        shoal_status_t s = rd_u32(c, &et, "array element type");
        if (!s) s = rd_u64(c, &n, "array length");
        if (s) return s;
        if (et >= SHOAL_GGUF_VTYPE_COUNT)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: key '%s': array of unknown element type %u", key, et);
        size_t es = shoal_gguf_vtype_size(et);
        /* every element occupies at least this many bytes, so the count is bounded by what is left */
        uint64_t min_es = es ? es : (et == SHOAL_GGUF_STRING ? 8 : 12);
        if (n > (c->size - c->pos) / min_es)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: key '%s': array of %llu %s elements cannot fit in the file", key,
                              (unsigned long long)n, shoal_gguf_vtype_name(et));
        if (es) {
            if (et == SHOAL_GGUF_BOOL)
                for (uint64_t i = 0; i < n; i++)
                    if (c->p[c->pos + i] > 1)
                        return shoal_fail(SHOAL_E_FORMAT, "gguf: key '%s': bool element %llu is %u, not 0 or 1", key,
                                          (unsigned long long)i, c->p[c->pos + i]);
            c->pos += n * es;
            return SHOAL_OK;
        }
        for (uint64_t i = 0; i < n; i++) {
            s = skip_value(c, et, depth + 1, key);
            if (s) return s;
        }
        return SHOAL_OK;
    }
    size_t es = shoal_gguf_vtype_size(t);
    shoal_status_t s = need(c, es, "scalar value");
    if (s) return s;
    if (t == SHOAL_GGUF_BOOL && c->p[c->pos] > 1)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: key '%s': bool value is %u, not 0 or 1", key, c->p[c->pos]);
    c->pos += es;
    return SHOAL_OK;
}

/* ---- hashing (FNV-1a) ---- */

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 1099511628211ull;
    return h;
}

static uint64_t table_cap(uint64_t n)
{
    uint64_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    return cap;
}

/* Inserts item idx named `name`; fails on a duplicate (get(j) gives the name of item j). */
static bool hash_insert(uint32_t *tab, uint64_t mask, const char *name, uint32_t idx,
                        const char *(*get)(const shoal_gguf_t *, uint64_t), const shoal_gguf_t *g)
{
    for (uint64_t h = hash_str(name) & mask;; h = (h + 1) & mask) {
        if (!tab[h]) {
            tab[h] = idx + 1;
            return true;
        }
        if (!strcmp(get(g, tab[h] - 1), name)) return false;
    }
}

static int64_t hash_find(const uint32_t *tab, uint64_t mask, const char *name,
                         const char *(*get)(const shoal_gguf_t *, uint64_t), const shoal_gguf_t *g)
{
    if (!tab) return -1;
    for (uint64_t h = hash_str(name) & mask;; h = (h + 1) & mask) {
        if (!tab[h]) return -1;
        if (!strcmp(get(g, tab[h] - 1), name)) return tab[h] - 1;
    }
}

static const char *kv_name(const shoal_gguf_t *g, uint64_t i) { return g->kv[i].key; }
static const char *t_name(const shoal_gguf_t *g, uint64_t i) { return g->tensors[i].name; }

/* Copies a name (key or tensor name) out of the file into the arena. */
static shoal_status_t take_name(const shoal_gguf_t *g, uint64_t off, uint64_t len, char **arena, const char *what,
                                const char **out)
{
    if (len == 0) return shoal_fail(SHOAL_E_FORMAT, "gguf: empty %s at byte %llu", what, (unsigned long long)off);
    if (len > MAX_KEY_LEN)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: %s at byte %llu is %llu bytes long (limit %u)", what,
                          (unsigned long long)off, (unsigned long long)len, MAX_KEY_LEN);
    if (memchr(g->base + off, 0, len))
        return shoal_fail(SHOAL_E_FORMAT, "gguf: %s at byte %llu contains a NUL byte", what, (unsigned long long)off);
    memcpy(*arena, g->base + off, len);
    (*arena)[len] = '\0';
    *out = *arena;
    *arena += len + 1;
    return SHOAL_OK;
}

/* ---- open ---- */

static shoal_status_t parse(shoal_gguf_t *g)
{
    cursor c = {g->base, g->size, 0};
    uint32_t magic;
    if (g->size == 0) return shoal_fail(SHOAL_E_FORMAT, "gguf: empty file");
    shoal_status_t s = rd_u32(&c, &magic, "magic");
    if (s) return s;
    if (magic != GGUF_MAGIC)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: bad magic %02x %02x %02x %02x (expected \"GGUF\")", g->base[0],
                          g->base[1], g->base[2], g->base[3]);
    if ((s = rd_u32(&c, &g->version, "version"))) return s;
    if (g->version == 1)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: version 1 files are not supported (only 2 and 3)");
    if ((g->version & 0xffffu) == 0 && (g->version >> 24) >= 1 && (g->version >> 24) <= 3)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: big-endian file (version reads as 0x%08x): not supported", g->version);
    if (g->version != 2 && g->version != 3)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: unsupported version %u (only 2 and 3)", g->version);
    if ((s = rd_u64(&c, &g->n_tensors, "tensor count"))) return s;
    if ((s = rd_u64(&c, &g->n_kv, "metadata count"))) return s;
    /* smallest kv: key length + 1 byte key + type + 1 byte value; smallest tensor info: 33 bytes */
    uint64_t left = g->size - c.pos;
    if (g->n_kv > left / 14 || g->n_kv > UINT32_MAX - 1)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: metadata count %llu cannot fit in a %llu-byte file",
                          (unsigned long long)g->n_kv, (unsigned long long)g->size);
    if (g->n_tensors > left / 33 || g->n_tensors > UINT32_MAX - 1)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor count %llu cannot fit in a %llu-byte file",
                          (unsigned long long)g->n_tensors, (unsigned long long)g->size);

    /* arena: every name is at most as long as its bytes in the file, plus a NUL each */
    g->arena = malloc(g->size + g->n_kv + g->n_tensors + 1);
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    g->kv_mask = table_cap(g->n_kv) - 1;
    g->t_mask = table_cap(g->n_tensors) - 1;
    g->kv_hash = calloc(g->kv_mask + 1, sizeof *g->kv_hash);
    g->t_hash = calloc(g->t_mask + 1, sizeof *g->t_hash);
    if (!g->arena || !g->kv || !g->tensors || !g->kv_hash || !g->t_hash)
        return shoal_fail(SHOAL_E_NOMEM, "gguf: out of memory indexing %llu keys and %llu tensors",
                          (unsigned long long)g->n_kv, (unsigned long long)g->n_tensors);
    char *arena = g->arena;

    /* metadata: first pass validates and records; string arrays are indexed afterwards */
    uint64_t n_strings = 0;
    for (uint64_t i = 0; i < g->n_kv; i++) {
        kv_entry *e = &g->kv[i];
        uint64_t koff, klen;
        if ((s = rd_str(&c, &koff, &klen, "key"))) return shoal_fail_wrap(s, "metadata entry %llu", (unsigned long long)i);
        if ((s = take_name(g, koff, klen, &arena, "key", &e->key))) return s;
        if ((s = rd_u32(&c, &e->type, "value type"))) return shoal_fail_wrap(s, "key '%s'", e->key);
        e->voff = c.pos;
        if ((s = skip_value(&c, e->type, 0, e->key))) return shoal_fail_wrap(s, "key '%s'", e->key);
        if (e->type == SHOAL_GGUF_ARRAY) {
            memcpy(&e->atype, g->base + e->voff, 4);
            memcpy(&e->alen, g->base + e->voff + 4, 8);
            e->adata = e->voff + 12;
            if (e->atype == SHOAL_GGUF_STRING) n_strings += e->alen;
        }
        if (!hash_insert(g->kv_hash, g->kv_mask, e->key, (uint32_t)i, kv_name, g))
            return shoal_fail(SHOAL_E_FORMAT, "gguf: duplicate key '%s'", e->key);
    }
    if (n_strings) {
        g->soff_pool = malloc(n_strings * sizeof *g->soff_pool);
        if (!g->soff_pool) return shoal_fail(SHOAL_E_NOMEM, "gguf: out of memory indexing %llu strings",
                                             (unsigned long long)n_strings);
        uint64_t *pool = g->soff_pool;
        for (uint64_t i = 0; i < g->n_kv; i++) {
            kv_entry *e = &g->kv[i];
            if (e->type != SHOAL_GGUF_ARRAY || e->atype != SHOAL_GGUF_STRING) continue;
            e->soff = pool;
            uint64_t off = e->adata; /* already validated: every length lies inside the file */
            for (uint64_t j = 0; j < e->alen; j++) {
                uint64_t len;
                memcpy(&len, g->base + off, 8);
                pool[j] = off;
                off += 8 + len;
            }
            pool += e->alen;
        }
    }

    g->alignment = SHOAL_GGUF_DEFAULT_ALIGNMENT;
    uint32_t al;
    s = shoal_gguf_get_u32(g, "general.alignment", &al);
    if (s == SHOAL_OK) {
        if (al == 0 || (al & (al - 1)) || al > (1u << 30))
            return shoal_fail(SHOAL_E_FORMAT, "gguf: general.alignment %u is not a power of two up to 2^30", al);
        g->alignment = al;
    } else if (s != SHOAL_E_NOT_FOUND) {
        return shoal_fail_wrap(s, "gguf: general.alignment");
    }
    uint64_t ak;
    if (shoal_gguf_find_key(g, "general.architecture", &ak) == SHOAL_OK && g->kv[ak].type == SHOAL_GGUF_STRING) {
        uint64_t len;
        memcpy(&len, g->base + g->kv[ak].voff, 8);
        if (len <= MAX_KEY_LEN && !memchr(g->base + g->kv[ak].voff + 8, 0, len)) {
            memcpy(arena, g->base + g->kv[ak].voff + 8, len);
            arena[len] = '\0';
            g->arch = arena;
            arena += len + 1;
        }
    }

    /* tensor directory */
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        shoal_gguf_tensor_t *t = &g->tensors[i];
        uint64_t noff, nlen;
        if ((s = rd_str(&c, &noff, &nlen, "tensor name")))
            return shoal_fail_wrap(s, "tensor info %llu", (unsigned long long)i);
        if ((s = take_name(g, noff, nlen, &arena, "tensor name", &t->name))) return s;
        if ((s = rd_u32(&c, &t->n_dims, "tensor n_dims"))) return shoal_fail_wrap(s, "tensor '%s'", t->name);
        if (t->n_dims < 1 || t->n_dims > SHOAL_GGUF_MAX_DIMS)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor '%s' has %u dimensions (1..%d supported)", t->name,
                              t->n_dims, SHOAL_GGUF_MAX_DIMS);
        uint64_t nel = 1;
        for (uint32_t d = 0; d < SHOAL_GGUF_MAX_DIMS; d++) {
            t->ne[d] = 1;
            if (d >= t->n_dims) continue;
            if ((s = rd_u64(&c, &t->ne[d], "tensor dimension"))) return shoal_fail_wrap(s, "tensor '%s'", t->name);
            if (t->ne[d] == 0 || t->ne[d] > INT64_MAX)
                return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor '%s' dimension %u is %llu", t->name, d,
                                  (unsigned long long)t->ne[d]);
            if (nel > INT64_MAX / t->ne[d])
                return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor '%s' element count overflows (dimension %u = %llu)",
                                  t->name, d, (unsigned long long)t->ne[d]);
            nel *= t->ne[d];
        }
        t->n_elements = nel;
        if ((s = rd_u32(&c, &t->type, "tensor type"))) return shoal_fail_wrap(s, "tensor '%s'", t->name);
        if ((s = rd_u64(&c, &t->offset, "tensor offset"))) return shoal_fail_wrap(s, "tensor '%s'", t->name);
        const shoal_qtype_traits_t *tr = shoal_qtype_traits(t->type);
        if (!tr)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor '%s' has unknown ggml type %u", t->name, t->type);
        if (t->ne[0] % tr->block_elems)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor '%s' row length %llu is not a multiple of the %s block (%u)",
                              t->name, (unsigned long long)t->ne[0], tr->name, tr->block_elems);
        t->row_bytes = (t->ne[0] / tr->block_elems) * tr->block_bytes; /* cannot overflow: ne0 < 2^63, bytes <= 292 */
        uint64_t rows = nel / t->ne[0];
        if (t->row_bytes > (uint64_t)INT64_MAX || (rows && t->row_bytes > (uint64_t)INT64_MAX / rows))
            return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor '%s' byte size overflows", t->name);
        t->nbytes = t->row_bytes * rows;
        if (t->offset % g->alignment)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: tensor '%s' offset %llu is not a multiple of the alignment %u",
                              t->name, (unsigned long long)t->offset, g->alignment);
        if (!hash_insert(g->t_hash, g->t_mask, t->name, (uint32_t)i, t_name, g))
            return shoal_fail(SHOAL_E_FORMAT, "gguf: duplicate tensor name '%s'", t->name);
    }
    /* c.pos <= size, alignment <= 2^30: no overflow */
    g->data_offset = (c.pos + g->alignment - 1) / g->alignment * g->alignment;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        shoal_gguf_tensor_t *t = &g->tensors[i];
        uint64_t room = g->data_offset <= g->size ? g->size - g->data_offset : 0;
        if (g->data_offset > g->size || t->offset > room || t->nbytes > room - t->offset)
            return shoal_fail(SHOAL_E_FORMAT,
                              "gguf: tensor '%s' data (%llu bytes at data offset %llu) runs past end of file "
                              "(data section %llu bytes)",
                              t->name, (unsigned long long)t->nbytes, (unsigned long long)t->offset,
                              (unsigned long long)room);
        t->file_offset = g->data_offset + t->offset;
        t->data = g->base + t->file_offset;
    }
    return SHOAL_OK;
}

static void free_handle(shoal_gguf_t *g)
{
    free(g->arena);
    free(g->kv);
    free(g->tensors);
    free(g->kv_hash);
    free(g->t_hash);
    free(g->soff_pool);
    if (g->mapped) munmap((void *)g->base, g->size);
    free(g);
}

static shoal_status_t open_common(shoal_gguf_t *g, shoal_gguf_t **out)
{
    shoal_status_t s = parse(g);
    if (s) {
        free_handle(g);
        return s;
    }
    *out = g;
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_open_buffer(const void *data, size_t len, shoal_gguf_t **out)
{
    if (!out || (!data && len)) return shoal_fail(SHOAL_E_INVALID, "gguf: NULL argument");
    shoal_gguf_t *g = calloc(1, sizeof *g);
    if (!g) return shoal_fail(SHOAL_E_NOMEM, "gguf: out of memory");
    g->base = data;
    g->size = len;
    return open_common(g, out);
}

shoal_status_t shoal_gguf_open(const char *path, shoal_gguf_t **out)
{
    if (!path || !out) return shoal_fail(SHOAL_E_INVALID, "gguf: NULL argument");
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return shoal_fail(SHOAL_E_IO, "gguf: cannot open '%s': %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return shoal_fail(SHOAL_E_IO, "gguf: cannot stat '%s': %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return shoal_fail(SHOAL_E_IO, "gguf: '%s' is not a regular file", path);
    }
    if (st.st_size == 0) {
        close(fd);
        return shoal_fail(SHOAL_E_FORMAT, "gguf: '%s' is an empty file", path);
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file alive */
    if (p == MAP_FAILED) return shoal_fail(SHOAL_E_IO, "gguf: cannot map '%s': %s", path, strerror(e));
    shoal_gguf_t *g = calloc(1, sizeof *g);
    if (!g) {
        munmap(p, (size_t)st.st_size);
        return shoal_fail(SHOAL_E_NOMEM, "gguf: out of memory");
    }
    g->base = p;
    g->size = (uint64_t)st.st_size;
    g->mapped = true;
    shoal_status_t s = open_common(g, out);
    if (s) return shoal_fail_wrap(s, "%s", path);
    return SHOAL_OK;
}

void shoal_gguf_close(shoal_gguf_t *g)
{
    if (g) free_handle(g);
}

/* ---- accessors ---- */

uint32_t shoal_gguf_version(const shoal_gguf_t *g) { return g->version; }
uint32_t shoal_gguf_alignment(const shoal_gguf_t *g) { return g->alignment; }
const void *shoal_gguf_base(const shoal_gguf_t *g) { return g->base; }
uint64_t shoal_gguf_file_size(const shoal_gguf_t *g) { return g->size; }
uint64_t shoal_gguf_data_offset(const shoal_gguf_t *g) { return g->data_offset; }
uint64_t shoal_gguf_kv_count(const shoal_gguf_t *g) { return g->n_kv; }
uint64_t shoal_gguf_tensor_count(const shoal_gguf_t *g) { return g->n_tensors; }
const char *shoal_gguf_architecture(const shoal_gguf_t *g) { return g->arch; }

shoal_status_t shoal_gguf_find_key(const shoal_gguf_t *g, const char *key, uint64_t *index)
{
    int64_t i = key ? hash_find(g->kv_hash, g->kv_mask, key, kv_name, g) : -1;
    if (i < 0) return shoal_fail(SHOAL_E_NOT_FOUND, "gguf: no key '%s'", key ? key : "(null)");
    if (index) *index = (uint64_t)i;
    return SHOAL_OK;
}

const char *shoal_gguf_kv_key(const shoal_gguf_t *g, uint64_t i) { return i < g->n_kv ? g->kv[i].key : NULL; }

shoal_gguf_vtype_t shoal_gguf_kv_type(const shoal_gguf_t *g, uint64_t i)
{
    return i < g->n_kv ? (shoal_gguf_vtype_t)g->kv[i].type : SHOAL_GGUF_VTYPE_COUNT;
}

/* Reads a scalar of type t at p into v (type and numeric union only). */
static void load_scalar(const uint8_t *p, uint32_t t, shoal_gguf_value_t *v)
{
    v->type = (shoal_gguf_vtype_t)t;
    switch (t) {
    case SHOAL_GGUF_U8: case SHOAL_GGUF_BOOL: v->num.u = p[0]; break;
    case SHOAL_GGUF_I8: v->num.i = (int8_t)p[0]; break;
    case SHOAL_GGUF_U16: { uint16_t x; memcpy(&x, p, 2); v->num.u = x; break; }
    case SHOAL_GGUF_I16: { int16_t x; memcpy(&x, p, 2); v->num.i = x; break; }
    case SHOAL_GGUF_U32: { uint32_t x; memcpy(&x, p, 4); v->num.u = x; break; }
    case SHOAL_GGUF_I32: { int32_t x; memcpy(&x, p, 4); v->num.i = x; break; }
    case SHOAL_GGUF_U64: { uint64_t x; memcpy(&x, p, 8); v->num.u = x; break; }
    case SHOAL_GGUF_I64: { int64_t x; memcpy(&x, p, 8); v->num.i = x; break; }
    case SHOAL_GGUF_F32: { float x; memcpy(&x, p, 4); v->num.f = x; break; }
    case SHOAL_GGUF_F64: { double x; memcpy(&x, p, 8); v->num.f = x; break; }
    default: break;
    }
}

shoal_status_t shoal_gguf_kv_value(const shoal_gguf_t *g, uint64_t i, shoal_gguf_value_t *out)
{
    if (i >= g->n_kv || !out) return shoal_fail(SHOAL_E_INVALID, "gguf: metadata index %llu out of range",
                                                (unsigned long long)i);
    const kv_entry *e = &g->kv[i];
    shoal_gguf_value_t v;
    memset(&v, 0, sizeof v);
    v.type = (shoal_gguf_vtype_t)e->type;
    if (e->type == SHOAL_GGUF_STRING) {
        memcpy(&v.str_len, g->base + e->voff, 8);
        v.str = (const char *)g->base + e->voff + 8;
    } else if (e->type == SHOAL_GGUF_ARRAY) {
        v.arr.type = (shoal_gguf_vtype_t)e->atype;
        v.arr.len = e->alen;
        v.arr.data = shoal_gguf_vtype_size(e->atype) ? g->base + e->adata : NULL;
        v.arr.owner = g;
        v.arr.kv = i;
    } else {
        load_scalar(g->base + e->voff, e->type, &v);
    }
    *out = v;
    return SHOAL_OK;
}

static bool is_unsigned(uint32_t t)
{
    return t == SHOAL_GGUF_U8 || t == SHOAL_GGUF_U16 || t == SHOAL_GGUF_U32 || t == SHOAL_GGUF_U64;
}
static bool is_signed(uint32_t t)
{
    return t == SHOAL_GGUF_I8 || t == SHOAL_GGUF_I16 || t == SHOAL_GGUF_I32 || t == SHOAL_GGUF_I64;
}

/* Integer value v (of any integer type) as a value in [lo, hi], else SHOAL_E_FORMAT naming `what`. */
static shoal_status_t int_in_range(const shoal_gguf_value_t *v, int64_t lo, uint64_t hi, const char *what,
                                   const char *target, uint64_t *u, int64_t *s)
{
    if (is_unsigned(v->type)) {
        if (v->num.u > hi)
            return shoal_fail(SHOAL_E_FORMAT, "gguf: %s = %llu does not fit %s", what, (unsigned long long)v->num.u,
                              target);
        if (u) *u = v->num.u;
        if (s) *s = (int64_t)v->num.u;
        return SHOAL_OK;
    }
    if (is_signed(v->type)) {
        if (v->num.i < lo || (v->num.i >= 0 && (uint64_t)v->num.i > hi))
            return shoal_fail(SHOAL_E_FORMAT, "gguf: %s = %lld does not fit %s", what, (long long)v->num.i, target);
        if (u) *u = (uint64_t)v->num.i;
        if (s) *s = v->num.i;
        return SHOAL_OK;
    }
    return shoal_fail(SHOAL_E_FORMAT, "gguf: %s is %s, expected an integer (%s)", what, shoal_gguf_vtype_name(v->type),
                      target);
}

static shoal_status_t get_value(const shoal_gguf_t *g, const char *key, shoal_gguf_value_t *v)
{
    uint64_t i;
    shoal_status_t s = shoal_gguf_find_key(g, key, &i);
    if (s) return s;
    return shoal_gguf_kv_value(g, i, v);
}

#define GET_INT(fn, T, lo, hi, tname, use_u)                                                                  \
    shoal_status_t fn(const shoal_gguf_t *g, const char *key, T *out)                                     \
    {                                                                                                      \
        shoal_gguf_value_t v;                                                                              \
        uint64_t u;                                                                                        \
        int64_t sv;                                                                                        \
        shoal_status_t s = get_value(g, key, &v);                                                          \
        if (!s) s = int_in_range(&v, lo, hi, key, tname, &u, &sv);                                         \
        if (s) return s;                                                                                   \
        *out = use_u ? (T)u : (T)sv;                                                                       \
        return SHOAL_OK;                                                                                   \
    }

GET_INT(shoal_gguf_get_u32, uint32_t, 0, UINT32_MAX, "u32", 1)
GET_INT(shoal_gguf_get_i32, int32_t, INT32_MIN, INT32_MAX, "i32", 0)
GET_INT(shoal_gguf_get_u64, uint64_t, 0, UINT64_MAX, "u64", 1)
GET_INT(shoal_gguf_get_i64, int64_t, INT64_MIN, INT64_MAX, "i64", 0)

shoal_status_t shoal_gguf_get_f64(const shoal_gguf_t *g, const char *key, double *out)
{
    shoal_gguf_value_t v;
    shoal_status_t s = get_value(g, key, &v);
    if (s) return s;
    if (v.type != SHOAL_GGUF_F32 && v.type != SHOAL_GGUF_F64)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: %s is %s, expected f32 or f64", key, shoal_gguf_vtype_name(v.type));
    *out = v.num.f;
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_get_f32(const shoal_gguf_t *g, const char *key, float *out)
{
    double d = 0;
    shoal_status_t s = shoal_gguf_get_f64(g, key, &d);
    if (s) return s;
    *out = (float)d;
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_get_bool(const shoal_gguf_t *g, const char *key, bool *out)
{
    shoal_gguf_value_t v;
    shoal_status_t s = get_value(g, key, &v);
    if (s) return s;
    if (v.type != SHOAL_GGUF_BOOL)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: %s is %s, expected bool", key, shoal_gguf_vtype_name(v.type));
    *out = v.num.u != 0;
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_get_string(const shoal_gguf_t *g, const char *key, const char **ptr, size_t *len)
{
    shoal_gguf_value_t v;
    shoal_status_t s = get_value(g, key, &v);
    if (s) return s;
    if (v.type != SHOAL_GGUF_STRING)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: %s is %s, expected string", key, shoal_gguf_vtype_name(v.type));
    *ptr = v.str;
    *len = (size_t)v.str_len;
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_get_array(const shoal_gguf_t *g, const char *key, shoal_gguf_array_t *out)
{
    shoal_gguf_value_t v;
    shoal_status_t s = get_value(g, key, &v);
    if (s) return s;
    if (v.type != SHOAL_GGUF_ARRAY)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: %s is %s, expected array", key, shoal_gguf_vtype_name(v.type));
    *out = v.arr;
    return SHOAL_OK;
}

static shoal_status_t arch_key(const shoal_gguf_t *g, const char *suffix, char *buf, size_t cap)
{
    if (!g->arch) return shoal_fail(SHOAL_E_NOT_FOUND, "gguf: no general.architecture string");
    int n = snprintf(buf, cap, "%s.%s", g->arch, suffix);
    if (n < 0 || (size_t)n >= cap) return shoal_fail(SHOAL_E_INVALID, "gguf: key '%s.%s' too long", g->arch, suffix);
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_get_arch_u32(const shoal_gguf_t *g, const char *suffix, uint32_t *out)
{
    char key[512];
    shoal_status_t s = arch_key(g, suffix, key, sizeof key);
    return s ? s : shoal_gguf_get_u32(g, key, out);
}

shoal_status_t shoal_gguf_get_arch_f32(const shoal_gguf_t *g, const char *suffix, float *out)
{
    char key[512];
    shoal_status_t s = arch_key(g, suffix, key, sizeof key);
    return s ? s : shoal_gguf_get_f32(g, key, out);
}

shoal_status_t shoal_gguf_array_string(const shoal_gguf_array_t *a, uint64_t i, const char **ptr, size_t *len)
{
    if (!a || !a->owner) return shoal_fail(SHOAL_E_INVALID, "gguf: NULL array");
    if (a->type != SHOAL_GGUF_STRING)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: array '%s' holds %s, not strings", a->owner->kv[a->kv].key,
                          shoal_gguf_vtype_name(a->type));
    if (i >= a->len)
        return shoal_fail(SHOAL_E_INVALID, "gguf: index %llu past the %llu strings of '%s'", (unsigned long long)i,
                          (unsigned long long)a->len, a->owner->kv[a->kv].key);
    const shoal_gguf_t *g = a->owner;
    uint64_t off = g->kv[a->kv].soff[i], n;
    memcpy(&n, g->base + off, 8);
    *ptr = (const char *)g->base + off + 8;
    *len = (size_t)n;
    return SHOAL_OK;
}

static shoal_status_t array_elem(const shoal_gguf_array_t *a, uint64_t i, shoal_gguf_value_t *v)
{
    if (!a || !a->owner) return shoal_fail(SHOAL_E_INVALID, "gguf: NULL array");
    size_t es = shoal_gguf_vtype_size(a->type);
    if (!es)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: array '%s' holds %s, not numbers", a->owner->kv[a->kv].key,
                          shoal_gguf_vtype_name(a->type));
    if (i >= a->len)
        return shoal_fail(SHOAL_E_INVALID, "gguf: index %llu past the %llu elements of '%s'", (unsigned long long)i,
                          (unsigned long long)a->len, a->owner->kv[a->kv].key);
    load_scalar((const uint8_t *)a->data + i * es, a->type, v);
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_array_i64(const shoal_gguf_array_t *a, uint64_t i, int64_t *out)
{
    shoal_gguf_value_t v;
    shoal_status_t s = array_elem(a, i, &v);
    int64_t x;
    if (!s) s = int_in_range(&v, INT64_MIN, INT64_MAX, a->owner->kv[a->kv].key, "i64", NULL, &x);
    if (s) return s;
    *out = x;
    return SHOAL_OK;
}

shoal_status_t shoal_gguf_array_f32(const shoal_gguf_array_t *a, uint64_t i, float *out)
{
    shoal_gguf_value_t v;
    shoal_status_t s = array_elem(a, i, &v);
    if (s) return s;
    if (v.type != SHOAL_GGUF_F32 && v.type != SHOAL_GGUF_F64)
        return shoal_fail(SHOAL_E_FORMAT, "gguf: array '%s' holds %s, expected f32 or f64", a->owner->kv[a->kv].key,
                          shoal_gguf_vtype_name(v.type));
    *out = (float)v.num.f;
    return SHOAL_OK;
}

const shoal_gguf_tensor_t *shoal_gguf_tensor_at(const shoal_gguf_t *g, uint64_t i)
{
    return i < g->n_tensors ? &g->tensors[i] : NULL;
}

shoal_status_t shoal_gguf_find_tensor(const shoal_gguf_t *g, const char *name, const shoal_gguf_tensor_t **out)
{
    int64_t i = name ? hash_find(g->t_hash, g->t_mask, name, t_name, g) : -1;
    if (i < 0) return shoal_fail(SHOAL_E_NOT_FOUND, "gguf: no tensor '%s'", name ? name : "(null)");
    *out = &g->tensors[i];
    return SHOAL_OK;
}
