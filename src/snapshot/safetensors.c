/* safetensors.c — the safetensors container, written from its published description: header
 * length (u64 LE), JSON header padded with spaces to a multiple of 8, tensor bytes. Parsing
 * applies the reference reader's rules (offsets in order, no gaps, no overlap, the data area
 * exactly covered), so a file we accept is one it accepts too. */
#include "snapshot/safetensors.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/error.h"

/* The reference reader refuses headers above 100 MB. */
#define ST_MAX_HEADER (100u * 1000u * 1000u)

static const struct {
    const char *name;
    size_t size;
} k_dtypes[] = {
    {"F64", 8}, {"F32", 4}, {"F16", 2}, {"BF16", 2}, {"I64", 8}, {"I32", 4}, {"I16", 2}, {"I8", 1},
    {"U64", 8}, {"U32", 4}, {"U16", 2}, {"U8", 1},   {"BOOL", 1},
};

size_t shoal_safetensors_dtype_size(const char *dtype)
{
    for (size_t i = 0; i < sizeof k_dtypes / sizeof k_dtypes[0]; i++)
        if (!strcmp(k_dtypes[i].name, dtype)) return k_dtypes[i].size;
    return 0;
}

/* dtype size x product of the shape, or UINT64_MAX on overflow. */
static uint64_t tensor_bytes(size_t esize, int ndim, const uint64_t *shape)
{
    uint64_t n = esize;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] && n > UINT64_MAX / shape[d]) return UINT64_MAX;
        n *= shape[d];
    }
    return n;
}

shoal_status_t shoal_safetensors_write(shoal_st_put_fn put, void *env, const shoal_st_tensor_t *t, size_t n,
                                       const char *const *meta, size_t nmeta)
{
    json_t *h = json_object();
    if (!h) return shoal_fail(SHOAL_E_NOMEM, "safetensors: out of memory");
    shoal_status_t st = SHOAL_OK;
    if (nmeta) {
        json_t *m = json_object();
        for (size_t i = 0; m && i < nmeta; i++) json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]));
        if (!m || json_object_set_new(h, "__metadata__", m) != 0) st = shoal_fail(SHOAL_E_NOMEM, "safetensors: out of memory");
    }
    uint64_t off = 0;
    for (size_t i = 0; st == SHOAL_OK && i < n; i++) {
        size_t es = shoal_safetensors_dtype_size(t[i].dtype);
        if (!es || t[i].ndim < 0 || t[i].ndim > SHOAL_ST_MAX_DIMS || tensor_bytes(es, t[i].ndim, t[i].shape) != t[i].nbytes) {
            st = shoal_fail(SHOAL_E_INVALID, "safetensors: tensor '%s': dtype/shape do not match its %" PRIu64 " bytes",
                            t[i].name, t[i].nbytes);
            break;
        }
        if (!strcmp(t[i].name, "__metadata__") || json_object_get(h, t[i].name)) {
            st = shoal_fail(SHOAL_E_INVALID, "safetensors: duplicate or reserved tensor name '%s'", t[i].name);
            break;
        }
        json_t *shape = json_array();
        for (int d = 0; shape && d < t[i].ndim; d++) json_array_append_new(shape, json_integer((json_int_t)t[i].shape[d]));
        json_t *e = json_pack("{s:s, s:o, s:[I,I]}", "dtype", t[i].dtype, "shape", shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + t[i].nbytes));
        if (!e || json_object_set_new(h, t[i].name, e) != 0) st = shoal_fail(SHOAL_E_NOMEM, "safetensors: out of memory");
        off += t[i].nbytes;
    }
    char *text = st == SHOAL_OK ? json_dumps(h, JSON_COMPACT) : NULL;
    json_decref(h);
    if (st != SHOAL_OK) return st;
    if (!text) return shoal_fail(SHOAL_E_NOMEM, "safetensors: out of memory");
    size_t tl = strlen(text), padded = (tl + 7) & ~(size_t)7;
    uint8_t len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    static const char spaces[8] = "        ";
    bool bad = put(env, len8, 8) || put(env, text, tl) || (padded > tl && put(env, spaces, padded - tl));
    free(text);
    for (size_t i = 0; !bad && i < n; i++)
        if (t[i].nbytes) bad = put(env, t[i].data, (size_t)t[i].nbytes);
    if (bad) return shoal_fail(SHOAL_E_IO, "safetensors: write failed");
    return SHOAL_OK;
}

struct shoal_st {
    json_t *header;
    size_t n;
    shoal_st_tensor_t *t;
};

void shoal_safetensors_free(shoal_st_t *st)
{
    if (!st) return;
    json_decref(st->header);
    free(st->t);
    free(st);
}

size_t shoal_safetensors_count(const shoal_st_t *st) { return st->n; }
const shoal_st_tensor_t *shoal_safetensors_at(const shoal_st_t *st, size_t i) { return i < st->n ? &st->t[i] : NULL; }

static int by_offset(const void *a, const void *b)
{
    const shoal_st_tensor_t *x = a, *y = b;
    const uint8_t *px = x->data, *py = y->data;
    if (px != py) return px < py ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

shoal_status_t shoal_safetensors_parse(const uint8_t *buf, size_t len, shoal_st_t **out)
{
    if (len < 8) return shoal_fail(SHOAL_E_FORMAT, "safetensors: %zu bytes is shorter than the 8-byte header length", len);
    uint64_t hl = 0;
    for (int i = 0; i < 8; i++) hl |= (uint64_t)buf[i] << (8 * i);
    if (hl > ST_MAX_HEADER || hl > len - 8)
        return shoal_fail(SHOAL_E_FORMAT, "safetensors: header length %" PRIu64 " exceeds the %zu bytes available", hl, len - 8);
    if (hl < 2 || buf[8] != '{') return shoal_fail(SHOAL_E_FORMAT, "safetensors: the header is not a JSON object");
    json_error_t jerr;
    json_t *h = json_loadb((const char *)buf + 8, (size_t)hl, JSON_REJECT_DUPLICATES, &jerr);
    if (!h || !json_is_object(h)) {
        json_decref(h);
        return shoal_fail(SHOAL_E_FORMAT, "safetensors: bad JSON header: %s", jerr.text);
    }
    const uint8_t *data = buf + 8 + hl;
    uint64_t dlen = len - 8 - hl;
    shoal_st_t *st = calloc(1, sizeof *st);
    if (!st) {
        json_decref(h);
        return shoal_fail(SHOAL_E_NOMEM, "safetensors: out of memory");
    }
    st->header = h;
    st->t = calloc(json_object_size(h) + 1, sizeof *st->t);
    if (!st->t) {
        shoal_safetensors_free(st);
        return shoal_fail(SHOAL_E_NOMEM, "safetensors: out of memory");
    }
    shoal_status_t s = SHOAL_OK;
    const char *key;
    json_t *val;
    json_object_foreach(h, key, val)
    {
        if (!strcmp(key, "__metadata__")) {
            const char *mk;
            json_t *mv;
            if (!json_is_object(val)) s = shoal_fail(SHOAL_E_FORMAT, "safetensors: __metadata__ is not an object");
            json_object_foreach(val, mk, mv) if (s == SHOAL_OK && !json_is_string(mv)) s =
                shoal_fail(SHOAL_E_FORMAT, "safetensors: metadata '%s' is not a string", mk);
            if (s != SHOAL_OK) break;
            continue;
        }
        json_t *dt = json_object_get(val, "dtype"), *shape = json_object_get(val, "shape"),
               *offs = json_object_get(val, "data_offsets");
        size_t es = json_is_string(dt) ? shoal_safetensors_dtype_size(json_string_value(dt)) : 0;
        if (!es || !json_is_array(shape) || json_array_size(shape) > SHOAL_ST_MAX_DIMS || !json_is_array(offs) ||
            json_array_size(offs) != 2) {
            s = shoal_fail(SHOAL_E_FORMAT, "safetensors: tensor '%s' needs a known dtype, a shape of at most %d dims and "
                           "two data_offsets", key, SHOAL_ST_MAX_DIMS);
            break;
        }
        shoal_st_tensor_t *t = &st->t[st->n];
        t->name = key;
        t->dtype = json_string_value(dt);
        t->ndim = (int)json_array_size(shape);
        for (int d = 0; d < t->ndim; d++) {
            json_t *x = json_array_get(shape, (size_t)d);
            if (!json_is_integer(x) || json_integer_value(x) < 0) s = shoal_fail(SHOAL_E_FORMAT, "safetensors: tensor '%s' has a bad shape", key);
            else t->shape[d] = (uint64_t)json_integer_value(x);
        }
        json_t *b = json_array_get(offs, 0), *e = json_array_get(offs, 1);
        if (s == SHOAL_OK && (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
                              json_integer_value(e) < json_integer_value(b) || (uint64_t)json_integer_value(e) > dlen))
            s = shoal_fail(SHOAL_E_FORMAT, "safetensors: tensor '%s' data_offsets lie outside the %" PRIu64 "-byte data area",
                           key, dlen);
        if (s != SHOAL_OK) break;
        t->nbytes = (uint64_t)(json_integer_value(e) - json_integer_value(b));
        t->data = data + json_integer_value(b);
        if (tensor_bytes(es, t->ndim, t->shape) != t->nbytes) {
            s = shoal_fail(SHOAL_E_FORMAT, "safetensors: tensor '%s' has %" PRIu64 " bytes, its dtype and shape need %" PRIu64,
                           key, t->nbytes, tensor_bytes(es, t->ndim, t->shape));
            break;
        }
        st->n++;
    }
    if (s == SHOAL_OK) {
        /* The tensors must tile the data area: sorted by offset, each starts where the last ended. */
        shoal_st_tensor_t *sorted = malloc((st->n + 1) * sizeof *sorted);
        if (!sorted) s = shoal_fail(SHOAL_E_NOMEM, "safetensors: out of memory");
        else {
            memcpy(sorted, st->t, st->n * sizeof *sorted);
            qsort(sorted, st->n, sizeof *sorted, by_offset);
            uint64_t at = 0;
            for (size_t i = 0; s == SHOAL_OK && i < st->n; i++) {
                if ((uint64_t)((const uint8_t *)sorted[i].data - data) != at)
                    s = shoal_fail(SHOAL_E_FORMAT, "safetensors: tensor '%s' does not start where the previous one ends",
                                   sorted[i].name);
                at += sorted[i].nbytes;
            }
            if (s == SHOAL_OK && at != dlen)
                s = shoal_fail(SHOAL_E_FORMAT, "safetensors: tensors cover %" PRIu64 " of the %" PRIu64 " data bytes", at, dlen);
            free(sorted);
        }
    }
    if (s != SHOAL_OK) {
        shoal_safetensors_free(st);
        return s;
    }
    *out = st;
    return SHOAL_OK;
}

shoal_status_t shoal_safetensors_get(const shoal_st_t *st, const char *name, const char *dtype, int ndim,
                                     const uint64_t *shape, const shoal_st_tensor_t **out)
{
    for (size_t i = 0; i < st->n; i++) {
        const shoal_st_tensor_t *t = &st->t[i];
        if (strcmp(t->name, name)) continue;
        if (strcmp(t->dtype, dtype) || t->ndim != ndim)
            return shoal_fail(SHOAL_E_FORMAT, "safetensors: tensor '%s' is %s with %d dims, expected %s with %d", name,
                              t->dtype, t->ndim, dtype, ndim);
        for (int d = 0; shape && d < ndim; d++)
            if (t->shape[d] != shape[d])
                return shoal_fail(SHOAL_E_FORMAT, "safetensors: tensor '%s' dim %d is %" PRIu64 ", expected %" PRIu64, name,
                                  d, t->shape[d], shape[d]);
        *out = t;
        return SHOAL_OK;
    }
    return shoal_fail(SHOAL_E_NOT_FOUND, "safetensors: no tensor '%s'", name);
}

const char *shoal_safetensors_meta(const shoal_st_t *st, const char *key)
{
    return json_string_value(json_object_get(json_object_get(st->header, "__metadata__"), key));
}

void shoal_safetensors_describe(const uint8_t *buf, size_t len, const char *indent, FILE *out)
{
    shoal_st_t *st = NULL;
    if (len < 9 || buf[8] != '{' || shoal_safetensors_parse(buf, len, &st) != SHOAL_OK) {
        shoal_clear_error();
        return;
    }
    const char *key;
    json_t *val;
    json_object_foreach(json_object_get(st->header, "__metadata__"), key, val)
        fprintf(out, "%s%-14s %s\n", indent, key, json_string_value(val));
    uint64_t total = 0;
    for (size_t i = 0; i < st->n; i++) total += st->t[i].nbytes;
    fprintf(out, "%s%zu tensors, %" PRIu64 " bytes", indent, st->n, total);
    if (st->n) {
        const shoal_st_tensor_t *t = &st->t[0];
        fprintf(out, " (e.g. %s %s [", t->name, t->dtype);
        for (int d = 0; d < t->ndim; d++) fprintf(out, "%s%" PRIu64, d ? ", " : "", t->shape[d]);
        fprintf(out, "])");
    }
    fprintf(out, "\n");
    shoal_safetensors_free(st);
}
