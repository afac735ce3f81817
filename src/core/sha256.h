/* sha256.h — SHA-256 (FIPS 180-4) for module and model identities, and CRC32C for fast
 * checksums of large snapshot payloads. */
#ifndef SHOAL_CORE_SHA256_H
#define SHOAL_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct shoal_sha256 {
    uint32_t h[8];
    uint64_t nbytes;    /* message bytes consumed so far */
    uint8_t block[64];  /* pending partial block */
    size_t nblock;
} shoal_sha256_t;

void shoal_sha256_init(shoal_sha256_t *s);
void shoal_sha256_update(shoal_sha256_t *s, const void *data, size_t len);
void shoal_sha256_final(shoal_sha256_t *s, uint8_t out[32]);
/* One-shot digest of a buffer. */
void shoal_sha256(const void *data, size_t len, uint8_t out[32]);
/* Lower-case hex of n bytes into out (2n + 1 bytes, NUL-terminated). */
void shoal_hex(const uint8_t *bytes, size_t n, char *out);

/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as iSCSI/ext4 use it: start with
 * crc = 0 and feed the running value back to continue. Uses SSE4.2 when the CPU has it. */
uint32_t shoal_crc32c(uint32_t crc, const void *data, size_t len);
/* The CRC-32C of A followed by B from crc_a = crc(A), crc_b = crc(B) and B's length. */
uint32_t shoal_crc32c_combine(uint32_t crc_a, uint32_t crc_b, uint64_t len_b);

/* One piece of a byte sequence scattered in memory. */
typedef struct shoal_span {
    const void *p;
    size_t n;
} shoal_span_t;

/* shoal_crc32c over the concatenation of the spans, continuing crc. Large inputs (tens of MB: KV
 * caches in snapshots) are cut into equal byte ranges checksummed by up to 16 threads at once and
 * joined with shoal_crc32c_combine; the result equals the sequential CRC. */
uint32_t shoal_crc32c_spans(uint32_t crc, const shoal_span_t *spans, size_t n_spans);

#endif
