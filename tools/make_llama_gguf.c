/* make_llama_gguf.c — writes a GGUF v3 of the Llama 3.2 1B shape with seeded random weights, for
 * throughput work where no real checkpoint of that shape can be fetched (DESIGN.md: Models).
 *
 * Shape (defaults): 16 layers, hidden 2048, FFN 8192, 32 query / 8 KV heads of 64, vocab 128256,
 * tied embeddings, RMS eps 1e-5, RoPE base 500000 with Llama 3 scaling (factor 32, low/high
 * frequency factors 1/4, original context 8192). The scaling goes into a `rope_freqs.weight`
 * tensor by default, as converted Llama 3 checkpoints carry it (and as llama.cpp reads it, so the
 * same file benchmarks there); --rope-meta writes the llama.rope.scaling.* keys instead.
 *
 * Weights: uniform in [-a, a] with a = std * sqrt(3) (std 0.02, the Llama initializer range), a
 * xoshiro256** stream per tensor seeded from (--seed, tensor index) so any tensor can be
 * regenerated alone; norms are 1. With these, activations of the random model stay finite and
 * O(1) through all layers. Matrices are stored as --type (f16, bf16, q8_0, q4_0, q4_1); norms and
 * rope_freqs as F32.
 *
 * Tokenizer metadata: a byte-level BPE ("gpt2", pre "llama-bpe") whose first 256 tokens are the
 * GPT-2 byte alphabet (so any text encodes), filler tokens up to 128000, then Llama 3's special
 * tokens (<|begin_of_text|> 128000, <|end_of_text|> 128001, <|eot_id|> 128009, the rest
 * reserved) and no merges: every byte is one token. Enough for the loaders and for benchmarks
 * that feed token ids; not a real Llama 3 vocabulary.
 *
 * --sparse lays the file out but leaves the weight matrices as holes (zeros; norms and rope_freqs
 * are written): a full-size file whose layout can be checked and loaded, without writing gigabytes. Shape overrides (--dim, --ffn, --heads, --kv-heads,
 * --vocab, --layers) make small versions for tests. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/quant.h"

typedef struct cfg {
    int layers, dim, ffn, heads, kv_heads, vocab, ctx;
    uint32_t type;
    uint64_t seed;
    float std;
    int rope_meta, sparse;
    const char *out;
} cfg_t;

enum { ALIGN = 32, MAX_TENSORS = 4 + 9 * 4096 };

typedef struct tinfo {
    char name[64];
    uint32_t n_dims, type;
    uint64_t ne[2];
    uint64_t offset, nbytes;
    int kind; /* 0 matrix (random), 1 norm (ones), 2 rope_freqs */
} tinfo_t;

/* ---------------------------------------------------------------- random numbers */

static uint64_t splitmix(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

typedef struct rng { uint64_t s[4]; } rng_t;

static void rng_seed(rng_t *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xD1B54A32D192ED03ull);
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline uint64_t rng_next(rng_t *r)
{
    uint64_t *s = r->s, out = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

/* Two uniforms in [-a, a) per draw (24 bits each). */
static void fill_uniform(rng_t *r, float *x, int64_t n, float a)
{
    const float k = 2.0f * a / 16777216.0f;
    int64_t i = 0;
    for (; i + 1 < n; i += 2) {
        uint64_t v = rng_next(r);
        x[i] = (float)(v >> 40) * k - a;
        x[i + 1] = (float)((v >> 8) & 0xFFFFFF) * k - a;
    }
    if (i < n)
        x[i] = (float)(rng_next(r) >> 40) * k - a;
}

/* ---------------------------------------------------------------- writing */

typedef struct writer {
    FILE *f;
    const char *path;
    int failed;
} writer_t;

static void put(writer_t *w, const void *p, size_t n)
{
    if (!w->failed && n && fwrite(p, 1, n, w->f) != n) {
        fprintf(stderr, "make_llama_gguf: writing %s: %s\n", w->path, strerror(errno));
        w->failed = 1;
    }
}
static void put_u32(writer_t *w, uint32_t v) { put(w, &v, 4); }
static void put_u64(writer_t *w, uint64_t v) { put(w, &v, 8); }
static void put_str(writer_t *w, const char *s)
{
    put_u64(w, strlen(s));
    put(w, s, strlen(s));
}
static void kv_key(writer_t *w, const char *k, uint32_t vtype)
{
    put_str(w, k);
    put_u32(w, vtype);
}
static void kv_u32(writer_t *w, const char *k, uint32_t v) { kv_key(w, k, 4), put_u32(w, v); }
static void kv_i32(writer_t *w, const char *k, int32_t v) { kv_key(w, k, 5), put(w, &v, 4); }
static void kv_f32(writer_t *w, const char *k, float v) { kv_key(w, k, 6), put(w, &v, 4); }
static void kv_bool(writer_t *w, const char *k, int v)
{
    uint8_t b = (uint8_t)(v != 0);
    kv_key(w, k, 7), put(w, &b, 1);
}
static void kv_str(writer_t *w, const char *k, const char *v) { kv_key(w, k, 8), put_str(w, v); }

/* GPT-2's printable stand-in for byte b, UTF-8 encoded into out (returns length). */
static int gpt2_byte_token(int b, char *out)
{
    int extra = 0;
    for (int i = 0; i < b; i++)
        if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF)))
            extra++;
    uint32_t cp = ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
                      ? (uint32_t)b
                      : 256u + (uint32_t)extra;
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

/* Token i's string (NUL-terminated in buf) and ggml token type. */
static int token_string(int i, int vocab, char *buf, size_t cap)
{
    int first_special = vocab >= 128256 ? 128000 : (vocab > 272 ? vocab - 16 : vocab);
    if (i < 256 && i < first_special) {
        buf[gpt2_byte_token(i, buf)] = 0;
        return 1; /* NORMAL: byte-level BPE marks byte tokens as normal */
    }
    if (i >= first_special) {
        int k = i - first_special;
        if (k == 0)
            snprintf(buf, cap, "<|begin_of_text|>");
        else if (k == 1)
            snprintf(buf, cap, "<|end_of_text|>");
        else if (k == 9)
            snprintf(buf, cap, "<|eot_id|>");
        else
            snprintf(buf, cap, "<|reserved_special_token_%d|>", k);
        return 3; /* CONTROL */
    }
    snprintf(buf, cap, "<filler_%d>", i);
    return 5; /* UNUSED: never produced by encoding (no merges reach it) */
}

static int special_id(const cfg_t *c, int k)
{
    int first_special = c->vocab >= 128256 ? 128000 : (c->vocab > 272 ? c->vocab - 16 : c->vocab);
    return first_special + k < c->vocab ? first_special + k : -1;
}

static void write_tokenizer(writer_t *w, const cfg_t *c)
{
    char buf[64];
    kv_str(w, "tokenizer.ggml.model", "gpt2");
    kv_str(w, "tokenizer.ggml.pre", "llama-bpe");
    kv_key(w, "tokenizer.ggml.tokens", 9);
    put_u32(w, 8);
    put_u64(w, (uint64_t)c->vocab);
    for (int i = 0; i < c->vocab; i++) {
        token_string(i, c->vocab, buf, sizeof buf);
        put_str(w, buf);
    }
    kv_key(w, "tokenizer.ggml.token_type", 9);
    put_u32(w, 5);
    put_u64(w, (uint64_t)c->vocab);
    for (int i = 0; i < c->vocab; i++) {
        int32_t t = token_string(i, c->vocab, buf, sizeof buf);
        put(w, &t, 4);
    }
    kv_key(w, "tokenizer.ggml.merges", 9);
    put_u32(w, 8);
    put_u64(w, 0);
    if (special_id(c, 0) >= 0)
        kv_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)special_id(c, 0));
    if (special_id(c, 1) >= 0)
        kv_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)special_id(c, 1));
    if (special_id(c, 9) >= 0)
        kv_u32(w, "tokenizer.ggml.eot_token_id", (uint32_t)special_id(c, 9));
}

static uint32_t file_type(uint32_t t)
{
    switch (t) {
    case SHOAL_GGML_F16: return 1;
    case SHOAL_GGML_Q4_0: return 2;
    case SHOAL_GGML_Q4_1: return 3;
    case SHOAL_GGML_Q8_0: return 7;
    case SHOAL_GGML_BF16: return 32;
    default: return 0;
    }
}

static int n_kv(const cfg_t *c)
{
    int n = 3 /* general.* */ + 12 /* llama.* */ + 4 /* tokens, types, merges, model */ + 1 /* pre */;
    n += (special_id(c, 0) >= 0) + (special_id(c, 1) >= 0) + (special_id(c, 9) >= 0);
    if (c->rope_meta)
        n += 5;
    return n;
}

static void write_metadata(writer_t *w, const cfg_t *c)
{
    int head_dim = c->dim / c->heads;
    kv_str(w, "general.architecture", "llama");
    kv_str(w, "general.name", "shoal-random-llama-3.2-1b-shape");
    kv_u32(w, "general.file_type", file_type(c->type));
    kv_u32(w, "llama.block_count", (uint32_t)c->layers);
    kv_u32(w, "llama.context_length", (uint32_t)c->ctx);
    kv_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    kv_u32(w, "llama.feed_forward_length", (uint32_t)c->ffn);
    kv_u32(w, "llama.attention.head_count", (uint32_t)c->heads);
    kv_u32(w, "llama.attention.head_count_kv", (uint32_t)c->kv_heads);
    kv_u32(w, "llama.attention.key_length", (uint32_t)head_dim);
    kv_u32(w, "llama.attention.value_length", (uint32_t)head_dim);
    kv_u32(w, "llama.rope.dimension_count", (uint32_t)head_dim);
    kv_f32(w, "llama.rope.freq_base", 500000.0f);
    kv_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    kv_u32(w, "llama.vocab_size", (uint32_t)c->vocab);
    if (c->rope_meta) {
        kv_str(w, "llama.rope.scaling.type", "llama3");
        kv_f32(w, "llama.rope.scaling.factor", 32.0f);
        kv_f32(w, "llama.rope.scaling.low_freq_factor", 1.0f);
        kv_f32(w, "llama.rope.scaling.high_freq_factor", 4.0f);
        kv_u32(w, "llama.rope.scaling.original_context_length", 8192);
    }
    write_tokenizer(w, c);
    (void)kv_i32;
    (void)kv_bool;
}

/* Llama 3 frequency divisors for rope_freqs.weight: theta_i / divisor_i is the scaled frequency. */
static void llama3_rope_divisors(int head_dim, float *out)
{
    const double base = 500000.0, factor = 32.0, lo = 1.0, hi = 4.0, orig = 8192.0;
    for (int i = 0; i < head_dim / 2; i++) {
        double f = pow(base, -2.0 * i / head_dim), wavelen = 2.0 * M_PI / f;
        if (wavelen < orig / hi)
            out[i] = 1.0f;
        else if (wavelen > orig / lo)
            out[i] = (float)factor;
        else {
            double smooth = (orig / wavelen - lo) / (hi - lo);
            out[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
        }
    }
}

static int add_tensor(tinfo_t *t, int *n, const char *name, uint32_t type, uint64_t ne0, uint64_t ne1, int kind)
{
    tinfo_t *x = &t[(*n)++];
    memset(x, 0, sizeof *x);
    snprintf(x->name, sizeof x->name, "%s", name);
    x->type = type;
    x->n_dims = ne1 > 1 || kind == 0 ? 2 : 1;
    x->ne[0] = ne0;
    x->ne[1] = ne1;
    x->kind = kind;
    x->nbytes = shoal_qtype_row_size(type, (int64_t)ne0) * ne1;
    return x->nbytes ? 0 : -1;
}

static int build_tensors(const cfg_t *c, tinfo_t *t)
{
    int n = 0, hd = c->dim / c->heads, kvd = c->kv_heads * hd, bad = 0;
    char name[64];
    bad |= add_tensor(t, &n, "token_embd.weight", c->type, (uint64_t)c->dim, (uint64_t)c->vocab, 0);
    if (!c->rope_meta)
        bad |= add_tensor(t, &n, "rope_freqs.weight", SHOAL_GGML_F32, (uint64_t)hd / 2, 1, 2);
    for (int l = 0; l < c->layers; l++) {
#define T(suffix, ty, a, b, kind)                                                                               \
    snprintf(name, sizeof name, "blk.%d." suffix ".weight", l);                                                \
    bad |= add_tensor(t, &n, name, ty, (uint64_t)(a), (uint64_t)(b), kind);
        T("attn_norm", SHOAL_GGML_F32, c->dim, 1, 1)
        T("attn_q", c->type, c->dim, c->dim, 0)
        T("attn_k", c->type, c->dim, kvd, 0)
        T("attn_v", c->type, c->dim, kvd, 0)
        T("attn_output", c->type, c->dim, c->dim, 0)
        T("ffn_norm", SHOAL_GGML_F32, c->dim, 1, 1)
        T("ffn_gate", c->type, c->dim, c->ffn, 0)
        T("ffn_up", c->type, c->dim, c->ffn, 0)
        T("ffn_down", c->type, c->ffn, c->dim, 0)
#undef T
    }
    bad |= add_tensor(t, &n, "output_norm.weight", SHOAL_GGML_F32, (uint64_t)c->dim, 1, 1);
    if (bad) {
        fprintf(stderr, "make_llama_gguf: a row length is not a multiple of the type's block size\n");
        return -1;
    }
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        t[i].offset = off;
        off += (t[i].nbytes + ALIGN - 1) / ALIGN * ALIGN;
    }
    return n;
}

static int write_tensor_data(writer_t *w, const cfg_t *c, const tinfo_t *t, int idx, float *rowf, void *rowq)
{
    int64_t n_in = (int64_t)t->ne[0], rows = (int64_t)t->ne[1];
    size_t row_bytes = shoal_qtype_row_size(t->type, n_in);
    if (t->kind == 1) {
        for (int64_t i = 0; i < n_in; i++)
            rowf[i] = 1.0f;
        put(w, rowf, (size_t)n_in * 4);
        return 0;
    }
    if (t->kind == 2) {
        llama3_rope_divisors(c->dim / c->heads, rowf);
        put(w, rowf, (size_t)n_in * 4);
        return 0;
    }
    rng_t r;
    rng_seed(&r, c->seed, (uint64_t)idx);
    float a = c->std * sqrtf(3.0f);
    for (int64_t i = 0; i < rows && !w->failed; i++) {
        fill_uniform(&r, rowf, n_in, a);
        if (t->type == SHOAL_GGML_F16)
            shoal_fp32_to_fp16_row(rowf, rowq, n_in);
        else if (t->type == SHOAL_GGML_BF16)
            for (int64_t j = 0; j < n_in; j++)
                ((uint16_t *)rowq)[j] = shoal_fp32_to_bf16(rowf[j]);
        else if (shoal_quantize_row(t->type, rowf, rowq, n_in) != SHOAL_OK) {
            fprintf(stderr, "make_llama_gguf: cannot quantise to %s\n", shoal_qtype_name(t->type));
            return -1;
        }
        put(w, rowq, row_bytes);
    }
    return 0;
}

static int write_file(const cfg_t *c)
{
    int cap = 4 + 9 * c->layers;
    tinfo_t *t = calloc((size_t)cap, sizeof *t);
    int maxrow = c->dim > c->ffn ? c->dim : c->ffn;
    float *rowf = malloc((size_t)maxrow * sizeof(float));
    void *rowq = malloc((size_t)maxrow * 4);
    if (!t || !rowf || !rowq) {
        fprintf(stderr, "make_llama_gguf: out of memory\n");
        return 1;
    }
    int n = build_tensors(c, t);
    if (n < 0)
        return 1;
    writer_t w = {fopen(c->out, "wb"), c->out, 0};
    if (!w.f) {
        fprintf(stderr, "make_llama_gguf: cannot create %s: %s\n", c->out, strerror(errno));
        return 1;
    }
    setvbuf(w.f, NULL, _IOFBF, 1 << 22);
    put(&w, "GGUF", 4);
    put_u32(&w, 3);
    put_u64(&w, (uint64_t)n);
    put_u64(&w, (uint64_t)n_kv(c));
    write_metadata(&w, c);
    for (int i = 0; i < n; i++) {
        put_str(&w, t[i].name);
        put_u32(&w, t[i].n_dims);
        for (uint32_t d = 0; d < t[i].n_dims; d++)
            put_u64(&w, t[i].ne[d]);
        put_u32(&w, t[i].type);
        put_u64(&w, t[i].offset);
    }
    static const char zeros[ALIGN];
    off_t pos = ftello(w.f);
    put(&w, zeros, (size_t)((ALIGN - pos % ALIGN) % ALIGN));
    off_t data_start = ftello(w.f);
    uint64_t total = 0;
    for (int i = 0; i < n && !w.failed; i++) {
        uint64_t at = (uint64_t)data_start + t[i].offset;
        total = at + t[i].nbytes;
        if (c->sparse && t[i].kind == 0) {
            /* Leave a hole; the small norm and rope tensors are still written so the model loads. */
            if (fseeko(w.f, (off_t)total, SEEK_SET) != 0) {
                fprintf(stderr, "make_llama_gguf: seeking in %s: %s\n", c->out, strerror(errno));
                w.failed = 1;
            }
            continue;
        }
        off_t cur = ftello(w.f);
        put(&w, zeros, (size_t)(at - (uint64_t)cur));
        if (write_tensor_data(&w, c, &t[i], i, rowf, rowq))
            w.failed = 1;
    }
    if (c->sparse && !w.failed) {
        fflush(w.f);
        if (ftruncate(fileno(w.f), (off_t)total) != 0) {
            fprintf(stderr, "make_llama_gguf: cannot size %s: %s\n", c->out, strerror(errno));
            w.failed = 1;
        }
    }
    if (fclose(w.f) != 0 && !w.failed) {
        fprintf(stderr, "make_llama_gguf: closing %s: %s\n", c->out, strerror(errno));
        w.failed = 1;
    }
    if (!w.failed)
        printf("wrote %s: %d tensors, %d layers, %s, %.1f MB%s\n", c->out, n, c->layers, shoal_qtype_name(c->type),
               (double)total / 1e6, c->sparse ? " (sparse: matrices left as holes)" : "");
    free(t);
    free(rowf);
    free(rowq);
    return w.failed ? 1 : 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: make_llama_gguf --out FILE [--type f16|bf16|q8_0|q4_0|q4_1] [--seed N] [--layers L]\n"
            "                       [--dim D] [--ffn F] [--heads H] [--kv-heads K] [--vocab V] [--ctx C]\n"
            "                       [--std S] [--rope-meta] [--sparse]\n"
            "Defaults: the Llama 3.2 1B shape (16 layers, 2048, 8192, 32/8 heads, vocab 128256), f16, seed 1.\n");
}

static int parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return -1;
    *out = (int)v;
    return 0;
}

int main(int argc, char **argv)
{
    cfg_t c = {16, 2048, 8192, 32, 8, 128256, 131072, SHOAL_GGML_F16, 1, 0.02f, 0, 0, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int bad = 0;
        if (!strcmp(a, "--rope-meta"))
            c.rope_meta = 1;
        else if (!strcmp(a, "--sparse"))
            c.sparse = 1;
        else if (!v)
            bad = 1;
        else if (!strcmp(a, "--out"))
            c.out = v;
        else if (!strcmp(a, "--type")) {
            if (!strcmp(v, "f16")) c.type = SHOAL_GGML_F16;
            else if (!strcmp(v, "bf16")) c.type = SHOAL_GGML_BF16;
            else if (!strcmp(v, "q8_0")) c.type = SHOAL_GGML_Q8_0;
            else if (!strcmp(v, "q4_0")) c.type = SHOAL_GGML_Q4_0;
            else if (!strcmp(v, "q4_1")) c.type = SHOAL_GGML_Q4_1;
            else bad = 1;
        } else if (!strcmp(a, "--seed")) {
            char *end;
            errno = 0;
            c.seed = strtoull(v, &end, 0);
            bad = errno || *end || end == v;
        } else if (!strcmp(a, "--std")) {
            char *end;
            c.std = strtof(v, &end);
            bad = *end || end == v || !(c.std > 0.0f && c.std < 1.0f);
        } else if (!strcmp(a, "--layers")) bad = parse_int(v, 1, 4096, &c.layers);
        else if (!strcmp(a, "--dim")) bad = parse_int(v, 32, 1 << 16, &c.dim);
        else if (!strcmp(a, "--ffn")) bad = parse_int(v, 32, 1 << 18, &c.ffn);
        else if (!strcmp(a, "--heads")) bad = parse_int(v, 1, 4096, &c.heads);
        else if (!strcmp(a, "--kv-heads")) bad = parse_int(v, 1, 4096, &c.kv_heads);
        else if (!strcmp(a, "--vocab")) bad = parse_int(v, 1, 1 << 24, &c.vocab);
        else if (!strcmp(a, "--ctx")) bad = parse_int(v, 1, 1 << 24, &c.ctx);
        else
            bad = 1;
        if (bad) {
            fprintf(stderr, "make_llama_gguf: bad option or value: %s%s%s\n", a, v ? " " : "", v ? v : "");
            usage();
            return 2;
        }
        if (strcmp(a, "--rope-meta") && strcmp(a, "--sparse"))
            i++;
    }
    if (!c.out) {
        usage();
        return 2;
    }
    if (c.dim % c.heads || (c.dim / c.heads) % 2 || c.heads % c.kv_heads || c.vocab < 256) {
        fprintf(stderr, "make_llama_gguf: heads must divide dim into an even head size, kv-heads must divide heads, "
                        "vocab must be >= 256\n");
        return 2;
    }
    return write_file(&c);
}
