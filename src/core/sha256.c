/* sha256.c — SHA-256 written from FIPS 180-4 (section 6.2), plus CRC-32C. Module hashes are
 * small; the CRC covers the megabytes of a KV cache at memory speed. */
#include "core/sha256.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void compress(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64];
    for (int t = 0; t < 16; t++)
        w[t] = (uint32_t)p[4 * t] << 24 | (uint32_t)p[4 * t + 1] << 16 | (uint32_t)p[4 * t + 2] << 8 | p[4 * t + 3];
    for (int t = 16; t < 64; t++) {
        uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
        uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int t = 0; t < 64; t++) {
        uint32_t t1 = k + (rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)) + ((e & f) ^ (~e & g)) + K[t] + w[t];
        uint32_t t2 = (rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

#if defined(__x86_64__)
#include <immintrin.h>

/* The same compression with the SHA extensions (Intel SDM: SHA256RNDS2 does two rounds on
 * state halves ABEF / CDGH; SHA256MSG1/MSG2 compute the message schedule four words at a time).
 * About 5x the portable speed, which makes hashing a whole GGUF (the model identity) cheap. */
__attribute__((target("sha,sse4.1,ssse3"))) static void compress_ni(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bLL, 0x0405060700010203LL);
    __m128i t = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[0]), 0xB1); /* CDAB */
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&h[4]), 0x1B); /* EFGH */
    __m128i s0 = _mm_alignr_epi8(t, s1, 8);                                        /* ABEF */
    s1 = _mm_blend_epi16(s1, t, 0xF0);                                             /* CDGH */
    for (; nblocks; nblocks--, p += 64) {
        __m128i abef = s0, cdgh = s1, w[4];
        for (int i = 0; i < 16; i++) {
            __m128i wi;
            if (i < 4) {
                wi = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * i)), bswap);
            } else {
                /* W[t] = s1(W[t-2]) + W[t-7] + s0(W[t-15]) + W[t-16], four at a time */
                wi = _mm_sha256msg1_epu32(w[i & 3], w[(i + 1) & 3]);
                wi = _mm_add_epi32(wi, _mm_alignr_epi8(w[(i + 3) & 3], w[(i + 2) & 3], 4));
                wi = _mm_sha256msg2_epu32(wi, w[(i + 3) & 3]);
            }
            w[i & 3] = wi;
            __m128i m = _mm_add_epi32(wi, _mm_loadu_si128((const __m128i *)&K[4 * i]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, m);
            s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m, 0x0E));
        }
        s0 = _mm_add_epi32(s0, abef);
        s1 = _mm_add_epi32(s1, cdgh);
    }
    t = _mm_shuffle_epi32(s0, 0x1B);  /* FEBA */
    s1 = _mm_shuffle_epi32(s1, 0xB1); /* DCHG */
    s0 = _mm_blend_epi16(t, s1, 0xF0); /* DCBA */
    s1 = _mm_alignr_epi8(s1, t, 8);    /* HGFE */
    _mm_storeu_si128((__m128i *)&h[0], s0);
    _mm_storeu_si128((__m128i *)&h[4], s1);
}

static int have_sha_ni(void)
{
    static int cached = -1; /* benign race: every thread computes the same answer */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        __builtin_cpu_init();
        c = __builtin_cpu_supports("sha") && __builtin_cpu_supports("sse4.1");
        if (getenv("SHOAL_SHA256_PORTABLE")) c = 0; /* tests compare both paths */
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}
#endif

/* nblocks consecutive 64-byte blocks. */
static void compress_blocks(uint32_t h[8], const uint8_t *p, size_t nblocks)
{
#if defined(__x86_64__)
    if (have_sha_ni()) {
        compress_ni(h, p, nblocks);
        return;
    }
#endif
    for (; nblocks; nblocks--, p += 64) compress(h, p);
}

void shoal_sha256_init(shoal_sha256_t *s)
{
    static const uint32_t iv[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, iv, sizeof iv);
    s->nbytes = 0;
    s->nblock = 0;
}

void shoal_sha256_update(shoal_sha256_t *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->nbytes += len;
    if (s->nblock) {
        size_t take = 64 - s->nblock < len ? 64 - s->nblock : len;
        memcpy(s->block + s->nblock, p, take);
        s->nblock += take, p += take, len -= take;
        if (s->nblock < 64) return;
        compress_blocks(s->h, s->block, 1);
        s->nblock = 0;
    }
    compress_blocks(s->h, p, len / 64);
    p += len / 64 * 64;
    len %= 64;
    memcpy(s->block, p, len);
    s->nblock = len;
}

void shoal_sha256_final(shoal_sha256_t *s, uint8_t out[32])
{
    uint64_t bits = s->nbytes * 8;
    /* Padding: a 1 bit, zeros up to 56 mod 64, then the bit length big-endian. */
    s->block[s->nblock++] = 0x80;
    if (s->nblock > 56) {
        memset(s->block + s->nblock, 0, 64 - s->nblock);
        compress(s->h, s->block);
        s->nblock = 0;
    }
    memset(s->block + s->nblock, 0, 56 - s->nblock);
    for (int i = 0; i < 8; i++) s->block[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    compress(s->h, s->block);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void shoal_sha256(const void *data, size_t len, uint8_t out[32])
{
    shoal_sha256_t s;
    shoal_sha256_init(&s);
    shoal_sha256_update(&s, data, len);
    shoal_sha256_final(&s, out);
}

void shoal_hex(const uint8_t *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- CRC-32C ---- */

static uint32_t crc_table[8][256];

static void crc_table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[0][i] = c;
    }
    /* Slicing-by-8 tables: table[k][i] is the CRC of byte i followed by k zero bytes. */
    for (uint32_t i = 0; i < 256; i++)
        for (int k = 1; k < 8; k++) crc_table[k][i] = (crc_table[k - 1][i] >> 8) ^ crc_table[0][crc_table[k - 1][i] & 0xff];
}

static uint32_t crc_portable(uint32_t c, const uint8_t *p, size_t n)
{
    static int ready; /* benign race: every thread writes the same tables */
    if (!__atomic_load_n(&ready, __ATOMIC_ACQUIRE)) {
        crc_table_init();
        __atomic_store_n(&ready, 1, __ATOMIC_RELEASE);
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t lo = c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
        c = crc_table[7][lo & 0xff] ^ crc_table[6][(lo >> 8) & 0xff] ^ crc_table[5][(lo >> 16) & 0xff] ^
            crc_table[4][lo >> 24] ^ crc_table[3][p[4]] ^ crc_table[2][p[5]] ^ crc_table[1][p[6]] ^ crc_table[0][p[7]];
    }
    while (n--) c = (c >> 8) ^ crc_table[0][(c ^ *p++) & 0xff];
    return c;
}

/* Feeding n zero bytes to a raw CRC register is linear over GF(2): a 32x32 bit matrix. These
 * build the matrix for a fixed n by repeated squaring of the one-zero-bit operator. */
static uint32_t gf2_times(const uint32_t m[32], uint32_t v)
{
    uint32_t s = 0;
    for (int i = 0; v; i++, v >>= 1)
        if (v & 1) s ^= m[i];
    return s;
}

static void gf2_square(uint32_t out[32], const uint32_t m[32])
{
    for (int i = 0; i < 32; i++) out[i] = gf2_times(m, m[i]);
}

/* out = the operator "append `bytes` zero bytes" (bytes a power of two). */
static void zeros_operator(uint32_t out[32], size_t bytes)
{
    uint32_t a[32], b[32];
    a[0] = 0x82F63B78u; /* one zero bit: shift right, fold the polynomial in if bit 0 was set */
    for (int i = 1; i < 32; i++) a[i] = 1u << (i - 1);
    for (size_t bits = 1; bits < 8 * bytes; bits *= 2) {
        gf2_square(b, a);
        memcpy(a, b, sizeof a);
    }
    memcpy(out, a, sizeof a);
}

#if defined(__x86_64__)
/* The crc32 instruction has a 3-cycle latency and a 1-cycle throughput, so one stream runs at a
 * third of its speed. Large inputs are cut into rounds of three consecutive blocks whose CRCs
 * run side by side, then joined: crc(A B) = shift(crc(A), |B|) ^ crc(B) for raw registers. */
#define CRC_BLOCK 8192
static uint32_t crc_shift_block[32];
static int crc_shift_ready;

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t c, const uint8_t *p, size_t n)
{
    uint64_t c64 = c;
    while (n && ((uintptr_t)p & 7)) c64 = _mm_crc32_u8((uint32_t)c64, *p++), n--;
    if (n >= 3 * CRC_BLOCK) {
        if (!__atomic_load_n(&crc_shift_ready, __ATOMIC_ACQUIRE)) { /* benign race: same values */
            zeros_operator(crc_shift_block, CRC_BLOCK);
            __atomic_store_n(&crc_shift_ready, 1, __ATOMIC_RELEASE);
        }
        for (; n >= 3 * CRC_BLOCK; p += 3 * CRC_BLOCK, n -= 3 * CRC_BLOCK) {
            uint64_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < CRC_BLOCK; i += 8) {
                uint64_t v0, v1, v2;
                memcpy(&v0, p + i, 8);
                memcpy(&v1, p + CRC_BLOCK + i, 8);
                memcpy(&v2, p + 2 * CRC_BLOCK + i, 8);
                c64 = _mm_crc32_u64(c64, v0);
                c1 = _mm_crc32_u64(c1, v1);
                c2 = _mm_crc32_u64(c2, v2);
            }
            uint32_t j = gf2_times(crc_shift_block, (uint32_t)c64) ^ (uint32_t)c1;
            c64 = gf2_times(crc_shift_block, j) ^ (uint32_t)c2;
        }
    }
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c64 = _mm_crc32_u64(c64, v);
    }
    c = (uint32_t)c64;
    while (n--) c = _mm_crc32_u8(c, *p++);
    return c;
}
#endif

uint32_t shoal_crc32c(uint32_t crc, const void *data, size_t len)
{
    uint32_t c = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) return ~crc_hw(c, data, len);
#endif
    return ~crc_portable(c, data, len);
}

/* Polynomials over GF(2) modulo the CRC-32C polynomial, in the CRC's reflected bit order
 * (bit 31 is x^0). */
static uint32_t gf2_mulmod(uint32_t a, uint32_t b)
{
    uint32_t p = 0;
    for (uint32_t m = 1u << 31; m; m >>= 1) {
        if (a & m) p ^= b;
        b = (b & 1) ? (b >> 1) ^ 0x82F63B78u : b >> 1;
    }
    return p;
}

uint32_t shoal_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b)
{
    /* crc(A B) = crc(A) * x^(8 |B|) + crc(B): the pre- and post-inversions cancel */
    uint32_t x8 = 1u << 30; /* x^1 */
    for (int i = 0; i < 3; i++) x8 = gf2_mulmod(x8, x8);
    uint32_t pw = 1u << 31; /* x^0 */
    for (uint64_t n = len_b; n; n >>= 1, x8 = gf2_mulmod(x8, x8))
        if (n & 1) pw = gf2_mulmod(pw, x8);
    return gf2_mulmod(pw, crc_a) ^ crc_b;
}

/* One thread's byte range [from, to) of the spans' concatenation. */
typedef struct crc_job {
    const shoal_span_t *spans;
    size_t n_spans;
    uint64_t from, to;
    uint32_t crc;
} crc_job_t;

static void *crc_job_run(void *arg)
{
    crc_job_t *j = arg;
    uint32_t c = 0;
    uint64_t at = 0;
    for (size_t i = 0; i < j->n_spans && at < j->to; at += j->spans[i].n, i++) {
        uint64_t lo = j->from > at ? j->from : at, hi = j->to < at + j->spans[i].n ? j->to : at + j->spans[i].n;
        if (lo < hi) c = shoal_crc32c(c, (const uint8_t *)j->spans[i].p + (lo - at), (size_t)(hi - lo));
    }
    j->crc = c;
    return NULL;
}

uint32_t shoal_crc32c_spans(uint32_t crc, const shoal_span_t *spans, size_t n_spans)
{
    enum { MAX_THREADS = 16, MIN_BYTES = 8u << 20 }; /* below 8 MB a thread costs more than it saves */
    uint64_t total = 0;
    for (size_t i = 0; i < n_spans; i++) total += spans[i].n;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int t = (int)(total / MIN_BYTES);
    if (t > MAX_THREADS) t = MAX_THREADS;
    if (cpus > 0 && t > cpus) t = (int)cpus;
    crc_job_t jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    if (t < 1) t = 1;
    for (int i = 0; i < t; i++) {
        jobs[i] = (crc_job_t){spans, n_spans, total * (uint64_t)i / (uint64_t)t, total * (uint64_t)(i + 1) / (uint64_t)t, 0};
        /* a thread that cannot be started leaves its range to this one */
        if (i > 0) started[i] = pthread_create(&tid[i], NULL, crc_job_run, &jobs[i]) == 0;
    }
    crc_job_run(&jobs[0]);
    for (int i = 1; i < t; i++) {
        if (started[i]) pthread_join(tid[i], NULL);
        else crc_job_run(&jobs[i]);
    }
    uint32_t c = shoal_crc32c_combine(crc, jobs[0].crc, jobs[0].to - jobs[0].from);
    for (int i = 1; i < t; i++) c = shoal_crc32c_combine(c, jobs[i].crc, jobs[i].to - jobs[i].from);
    return c;
}
