/* kvcache.c — KV cache export and import in safetensors (kvcache.h). On the CPU the rows are
 * written straight from the cache and, on load, copied straight from the mapped file: one copy
 * each way. A GPU cache is first read into one host staging buffer (a device-to-host copy per
 * layer) and loaded with one host-to-device copy per layer. */
#define _GNU_SOURCE
#include "snapshot/kvcache.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/sha256.h"
#include "snapshot/restore_src.h"
#include "snapshot/safetensors.h"

#define KV_FORMAT "shoal.kv_cache"
#define KV_VERSION "1"

void shoal_model_sha256(const shoal_gguf_t *g, uint8_t out[32])
{
    shoal_sha256(shoal_gguf_base(g), (size_t)shoal_gguf_file_size(g), out);
}

typedef struct kvdesc {
    int n_layer, kv_dim, n_past;
    size_t row_bytes;
    shoal_st_tensor_t *t; /* 2 * n_layer */
    float *staging;       /* GPU caches: the rows in host memory, else NULL */
    char (*names)[32];
    char meta_vals[8][80];
    const char *meta[16];
} kvdesc_t;

static void kvdesc_free(kvdesc_t *d)
{
    free(d->t);
    free(d->names);
    free(d->staging);
}

/* Describes the cache rows [0, n_past) of every layer as tensors, with the metadata. */
static shoal_status_t kvdesc_build(shoal_engine_t *c, const uint8_t sha[32], kvdesc_t *d)
{
    memset(d, 0, sizeof *d);
    const shoal_llama_hparams_t *hp = &shoal_engine_model(c)->hp;
    d->n_layer = hp->n_layer;
    d->kv_dim = hp->kv_dim;
    d->n_past = shoal_engine_n_past(c);
    d->row_bytes = (size_t)d->kv_dim * sizeof(float);
    const size_t plane = (size_t)d->n_past * (size_t)d->kv_dim;
    const bool host = shoal_engine_device(c) == SHOAL_DEVICE_CPU;
    d->t = calloc(2 * (size_t)d->n_layer, sizeof *d->t);
    d->names = calloc(2 * (size_t)d->n_layer, sizeof *d->names);
    if (!host && plane) d->staging = malloc(2 * (size_t)d->n_layer * plane * sizeof(float));
    if (!d->t || !d->names || (!host && plane && !d->staging)) {
        kvdesc_free(d);
        return shoal_fail(SHOAL_E_NOMEM, "kv: out of memory");
    }
    uint32_t crc = 0;
    for (int l = 0; l < d->n_layer; l++) {
        const float *k, *v;
        shoal_status_t st;
        if (host) {
            st = shoal_engine_kv_host(c, l, &k, &v);
        } else {
            float *sk = d->staging + 2 * (size_t)l * plane, *sv = sk + plane;
            st = plane ? shoal_engine_kv_read(c, l, d->n_past, sk, sv) : SHOAL_OK;
            k = sk, v = sv;
        }
        if (st != SHOAL_OK) {
            kvdesc_free(d);
            return st;
        }
        for (int w = 0; w < 2; w++) {
            shoal_st_tensor_t *t = &d->t[2 * l + w];
            snprintf(d->names[2 * l + w], sizeof d->names[0], "layers.%d.%c", l, w ? 'v' : 'k');
            t->name = d->names[2 * l + w];
            t->dtype = "F32";
            t->ndim = 2;
            t->shape[0] = (uint64_t)d->n_past;
            t->shape[1] = (uint64_t)d->kv_dim;
            t->data = w ? v : k;
            t->nbytes = (uint64_t)d->n_past * d->row_bytes;
            crc = shoal_crc32c(crc, t->data, (size_t)t->nbytes);
        }
    }
    char hex[65];
    shoal_hex(sha, 32, hex);
    const char *keys[8] = {"format", "version", "model_sha256", "architecture", "n_layer", "kv_dim", "n_past", "data_crc32c"};
    snprintf(d->meta_vals[0], 80, "%s", KV_FORMAT);
    snprintf(d->meta_vals[1], 80, "%s", KV_VERSION);
    snprintf(d->meta_vals[2], 80, "%s", hex);
    snprintf(d->meta_vals[3], 80, "llama");
    snprintf(d->meta_vals[4], 80, "%d", d->n_layer);
    snprintf(d->meta_vals[5], 80, "%d", d->kv_dim);
    snprintf(d->meta_vals[6], 80, "%d", d->n_past);
    snprintf(d->meta_vals[7], 80, "%08" PRIx32, crc);
    for (int i = 0; i < 8; i++) d->meta[2 * i] = keys[i], d->meta[2 * i + 1] = d->meta_vals[i];
    return SHOAL_OK;
}

static int put_file(void *env, const void *p, size_t n) { return fwrite(p, 1, n, env) != n; }

typedef struct membuf {
    uint8_t **buf;
    size_t *len, cap;
} membuf_t;

static int put_mem(void *env, const void *p, size_t n)
{
    membuf_t *m = env;
    if (*m->len + n > m->cap) {
        size_t cap = m->cap ? m->cap : 1 << 16;
        while (cap < *m->len + n) cap *= 2;
        uint8_t *nb = realloc(*m->buf, cap);
        if (!nb) return 1;
        *m->buf = nb;
        m->cap = cap;
    }
    memcpy(*m->buf + *m->len, p, n);
    *m->len += n;
    return 0;
}

shoal_status_t shoal_kv_serialize(shoal_engine_t *c, const uint8_t model_sha256[32], uint8_t **buf, size_t *len)
{
    kvdesc_t d;
    shoal_status_t st = kvdesc_build(c, model_sha256, &d);
    if (st != SHOAL_OK) return st;
    membuf_t m = {buf, len, *len};
    st = shoal_safetensors_write(put_mem, &m, d.t, 2 * (size_t)d.n_layer, d.meta, 8);
    kvdesc_free(&d);
    return st;
}

shoal_status_t shoal_kv_save_safetensors(shoal_engine_t *c, const uint8_t model_sha256[32], const char *path)
{
    kvdesc_t d;
    shoal_status_t st = kvdesc_build(c, model_sha256, &d);
    if (st != SHOAL_OK) return st;
    char *tmp = NULL;
    FILE *f = NULL;
    if (asprintf(&tmp, "%s.tmp", path) < 0) tmp = NULL, st = shoal_fail(SHOAL_E_NOMEM, "kv: out of memory");
    if (st == SHOAL_OK && !(f = fopen(tmp, "wb"))) st = shoal_fail(SHOAL_E_IO, "kv: %s: %s", tmp, strerror(errno));
    if (st == SHOAL_OK) {
        st = shoal_safetensors_write(put_file, f, d.t, 2 * (size_t)d.n_layer, d.meta, 8);
        if (fclose(f) != 0 && st == SHOAL_OK) st = shoal_fail(SHOAL_E_IO, "kv: writing %s: %s", tmp, strerror(errno));
        if (st == SHOAL_OK && rename(tmp, path) != 0) st = shoal_fail(SHOAL_E_IO, "kv: %s: %s", path, strerror(errno));
        if (st != SHOAL_OK) unlink(tmp);
    }
    free(tmp);
    kvdesc_free(&d);
    return st;
}

static shoal_status_t meta_int(const shoal_st_t *st, const char *key, long lo, long hi, long *out)
{
    const char *s = shoal_safetensors_meta(st, key);
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || !*s || *end || errno || v < lo || v > hi)
        return shoal_fail(SHOAL_E_FORMAT, "kv: metadata '%s' is %s%s%s", key, s ? "\"" : "missing", s ? s : "", s ? "\"" : "");
    *out = v;
    return SHOAL_OK;
}

/* fd >= 0: file maps that file and buf lies inside the mapping, so a GPU engine may read the rows
 * from the file itself. src: where the CRCs taken over the rows are noted (may be NULL). */
static shoal_status_t deserialize(shoal_engine_t *c, const uint8_t model_sha256[32], const uint8_t *buf, size_t len,
                                  int fd, const uint8_t *file, shoal_restore_src_t *src)
{
    shoal_st_t *st = NULL;
    shoal_status_t s = shoal_safetensors_parse(buf, len, &st);
    if (s != SHOAL_OK) return shoal_fail_wrap(s, "kv");
    const shoal_llama_hparams_t *hp = &shoal_engine_model(c)->hp;
    const char *fmt = shoal_safetensors_meta(st, "format"), *ver = shoal_safetensors_meta(st, "version");
    const char *sha = shoal_safetensors_meta(st, "model_sha256"), *crc_s = shoal_safetensors_meta(st, "data_crc32c");
    char want[65];
    shoal_hex(model_sha256, 32, want);
    long n_layer = 0, kv_dim = 0, n_past = 0;
    if (!fmt || strcmp(fmt, KV_FORMAT)) s = shoal_fail(SHOAL_E_FORMAT, "kv: not a Shoal KV cache (metadata format is %s)", fmt ? fmt : "missing");
    else if (!ver || strcmp(ver, KV_VERSION))
        s = shoal_fail(SHOAL_E_FORMAT, "kv: KV cache format version %s, but this build reads version %s", ver ? ver : "(missing)", KV_VERSION);
    else if (!sha || strcmp(sha, want))
        s = shoal_fail(SHOAL_E_FORMAT, "kv: the cache was made by another model (model_sha256 %s, this model is %s)",
                       sha ? sha : "missing", want);
    const char *arch = shoal_safetensors_meta(st, "architecture");
    if (s == SHOAL_OK && (!arch || strcmp(arch, "llama")))
        s = shoal_fail(SHOAL_E_FORMAT, "kv: the cache is for architecture %s, this model is llama", arch ? arch : "(missing)");
    if (s == SHOAL_OK) s = meta_int(st, "n_layer", 1, 1 << 20, &n_layer);
    if (s == SHOAL_OK) s = meta_int(st, "kv_dim", 1, 1 << 24, &kv_dim);
    if (s == SHOAL_OK && (s = meta_int(st, "n_past", 0, shoal_engine_n_ctx(c), &n_past)) != SHOAL_OK)
        shoal_fail_append(s, "note: this context holds %d positions", shoal_engine_n_ctx(c));
    if (s == SHOAL_OK && (n_layer != hp->n_layer || kv_dim != hp->kv_dim))
        s = shoal_fail(SHOAL_E_FORMAT, "kv: cache shape %ld layers x %ld, this model has %d x %d", n_layer, kv_dim,
                       hp->n_layer, hp->kv_dim);
    if (s == SHOAL_OK && shoal_safetensors_count(st) != 2 * (size_t)n_layer)
        s = shoal_fail(SHOAL_E_FORMAT, "kv: %zu tensors, expected %ld", shoal_safetensors_count(st), 2 * n_layer);
    uint32_t crc = 0;
    const shoal_st_tensor_t **ts = calloc(2 * (size_t)hp->n_layer, sizeof *ts);
    shoal_span_t *spans = calloc(2 * (size_t)hp->n_layer, sizeof *spans);
    if ((!ts || !spans) && s == SHOAL_OK) s = shoal_fail(SHOAL_E_NOMEM, "kv: out of memory");
    uint64_t shape[2] = {(uint64_t)n_past, (uint64_t)kv_dim};
    for (int i = 0; s == SHOAL_OK && i < 2 * hp->n_layer; i++) {
        char name[32];
        snprintf(name, sizeof name, "layers.%d.%c", i / 2, i % 2 ? 'v' : 'k');
        s = shoal_safetensors_get(st, name, "F32", 2, shape, &ts[i]);
        if (s == SHOAL_OK) spans[i] = (shoal_span_t){ts[i]->data, (size_t)ts[i]->nbytes};
    }
    /* An empty cache of the engine's own is written and checksummed in one pass (on a GPU by the
     * threads that stage the upload): a mismatch is refused before set_n_past, so no valid row
     * was overwritten. A cache holding rows, or a guest's memory, is checked first and written
     * after. */
    bool checked = false;
    if (s == SHOAL_OK && shoal_engine_n_past(c) == 0 && n_past > 0) {
        const size_t nl = (size_t)hp->n_layer;
        const float **kp = calloc(2 * nl, sizeof *kp);
        uint64_t *off = calloc(2 * nl, sizeof *off);
        uint32_t *crcs = calloc(2 * nl, sizeof *crcs);
        if (!kp || !off || !crcs) s = shoal_fail(SHOAL_E_NOMEM, "kv: out of memory");
        /* K rows of every layer, then V: kp[0..nl) and kp[nl..2nl), offsets likewise */
        for (size_t l = 0; s == SHOAL_OK && l < nl; l++) {
            kp[l] = (const float *)ts[2 * l]->data, kp[nl + l] = (const float *)ts[2 * l + 1]->data;
            off[l] = fd >= 0 ? (uint64_t)((const uint8_t *)ts[2 * l]->data - file) : 0;
            off[nl + l] = fd >= 0 ? (uint64_t)((const uint8_t *)ts[2 * l + 1]->data - file) : 0;
        }
        if (s == SHOAL_OK) {
            /* SHOAL_KV_MAPPED_COPY=1 stages from the mapping instead of reading the file (experiments) */
            const int src_fd = fd >= 0 && !getenv("SHOAL_KV_MAPPED_COPY") ? fd : -1;
            s = shoal_engine_kv_write_all_crc(c, (int)n_past, kp, kp + nl, src_fd, off, off + nl, crcs, crcs + nl);
            if (s == SHOAL_E_UNSUPPORTED) shoal_clear_error(), s = SHOAL_OK; /* caller-owned cache: checksum first */
            else checked = s == SHOAL_OK;
        }
        for (size_t l = 0; checked && l < nl; l++) {
            crc = shoal_crc32c_combine(crc, crcs[l], ts[2 * l]->nbytes);
            crc = shoal_crc32c_combine(crc, crcs[nl + l], ts[2 * l + 1]->nbytes);
            shoal_restore_src_note(src, ts[2 * l]->data, ts[2 * l]->nbytes, crcs[l]);
            shoal_restore_src_note(src, ts[2 * l + 1]->data, ts[2 * l + 1]->nbytes, crcs[nl + l]);
        }
        free(kp);
        free(off);
        free(crcs);
    }
    if (s == SHOAL_OK && !checked) crc = shoal_crc32c_spans(0, spans, 2 * (size_t)hp->n_layer);
    if (s == SHOAL_OK) {
        char got[16];
        snprintf(got, sizeof got, "%08" PRIx32, crc);
        if (!crc_s || strcmp(crc_s, got))
            s = shoal_fail(SHOAL_E_FORMAT, "kv: data checksum mismatch (metadata %s, data %s): the file is corrupt",
                           crc_s ? crc_s : "missing", got);
    }
    /* Everything checked: only now is the context written (or, written above, declared valid). */
    /* safetensors data offsets are only 8-byte aligned: the rows are copied as bytes (memcpy or
     * cudaMemcpy), never dereferenced as floats here. */
    for (int l = 0; s == SHOAL_OK && !checked && l < hp->n_layer && n_past > 0; l++)
        s = shoal_engine_kv_write(c, l, (int)n_past, (const float *)ts[2 * l]->data, (const float *)ts[2 * l + 1]->data);
    if (s == SHOAL_OK) s = shoal_engine_set_n_past(c, (int)n_past);
    free(spans);
    free(ts);
    shoal_safetensors_free(st);
    return s;
}

shoal_status_t shoal_kv_deserialize(shoal_engine_t *c, const uint8_t model_sha256[32], const uint8_t *buf, size_t len)
{
    return deserialize(c, model_sha256, buf, len, -1, NULL, NULL);
}

shoal_status_t shoal_kv_deserialize_from(shoal_engine_t *c, const uint8_t model_sha256[32], const uint8_t *buf, size_t len,
                                         shoal_restore_src_t *src)
{
    return deserialize(c, model_sha256, buf, len, src ? src->fd : -1, src ? src->base : NULL, src);
}

shoal_status_t shoal_kv_load_safetensors(shoal_engine_t *c, const uint8_t model_sha256[32], const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return shoal_fail(SHOAL_E_IO, "kv: %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return shoal_fail(SHOAL_E_IO, "kv: %s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    if (n == 0) {
        close(fd);
        return shoal_fail(SHOAL_E_FORMAT, "kv: %s: empty file", path);
    }
    void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return shoal_fail(SHOAL_E_IO, "kv: %s: mmap: %s", path, strerror(errno));
    }
    shoal_status_t s = deserialize(c, model_sha256, map, n, fd, map, NULL);
    munmap(map, n);
    close(fd);
    if (s != SHOAL_OK) shoal_fail_wrap(s, "%s", path);
    return s;
}
