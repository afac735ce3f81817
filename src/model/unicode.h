/* unicode.h — code point classes and the lenient UTF-8 decoder used by the tokenizer.
 *
 * The pre-tokenizer regexes only ask three questions of a code point: is it a letter (\p{L}),
 * a number (\p{N}), whitespace (\s)? Everything else (marks, punctuation, symbols, controls,
 * unassigned) is OTHER. The table is generated (scripts/gen_unicode_table.py) from Unicode 15.1,
 * the version whose classes the reference tokenizer uses. */
#ifndef SHOAL_MODEL_UNICODE_H
#define SHOAL_MODEL_UNICODE_H

#include <stddef.h>
#include <stdint.h>

typedef enum shoal_uclass {
    SHOAL_UC_OTHER = 0,
    SHOAL_UC_LETTER = 1, /* general category L* */
    SHOAL_UC_NUMBER = 2, /* general category N* */
    SHOAL_UC_SPACE = 3,  /* White_Space property */
} shoal_uclass_t;

extern const char shoal_unicode_version[];
extern const uint8_t shoal_unicode_ascii[128];
extern const uint32_t shoal_unicode_run_start[];
extern const uint8_t shoal_unicode_run_class[];
extern const uint32_t shoal_unicode_run_count;

/* Class of a code point; values past U+10FFFF are OTHER. */
static inline shoal_uclass_t shoal_unicode_class(uint32_t cp)
{
    if (cp < 128)
        return (shoal_uclass_t)shoal_unicode_ascii[cp];
    if (cp > 0x10FFFF)
        return SHOAL_UC_OTHER;
    /* Last run whose start is <= cp; run 0 starts at U+0080. */
    uint32_t lo = 0, hi = shoal_unicode_run_count;
    while (hi - lo > 1) {
        uint32_t mid = (lo + hi) / 2;
        if (shoal_unicode_run_start[mid] <= cp)
            lo = mid;
        else
            hi = mid;
    }
    return (shoal_uclass_t)shoal_unicode_run_class[lo];
}

/* Decodes one code point at s[0..n) (n >= 1) the way the reference tokenizer does, so that
 * invalid input splits identically: a lead byte announces 1-4 bytes by its high bits and the
 * announced continuation bytes must be present and be 10xxxxxx; otherwise the single byte at s
 * is consumed and U+FFFD returned. Overlong forms and surrogates are accepted as decoded (and so
 * re-encode to their shortest form). A 4-byte form above U+10FFFF (lead bytes F4..F7), on which
 * the reference tokenizer throws, is treated as an invalid lead byte. Returns the code point and
 * stores the bytes consumed in *used. */
static inline uint32_t shoal_utf8_decode(const uint8_t *s, size_t n, size_t *used)
{
    uint8_t c = s[0];
    if (c < 0x80) {
        *used = 1;
        return c;
    }
    size_t need = (c & 0xE0) == 0xC0 ? 2 : (c & 0xF0) == 0xE0 ? 3 : (c & 0xF8) == 0xF0 ? 4 : 0;
    if (need == 0 || need > n)
        goto bad;
    uint32_t cp = need == 2 ? (c & 0x1Fu) : need == 3 ? (c & 0x0Fu) : (c & 0x07u);
    for (size_t i = 1; i < need; i++) {
        if ((s[i] & 0xC0) != 0x80)
            goto bad;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if (cp > 0x10FFFF) /* the reference throws here; we treat the lead byte as invalid instead */
        goto bad;
    *used = need;
    return cp;
bad:
    *used = 1;
    return 0xFFFD;
}

/* Encodes cp (<= 0x10FFFF; surrogates are encoded as 3 bytes like any other) as UTF-8 into
 * out[4]; returns the byte count. */
static inline size_t shoal_utf8_encode(uint32_t cp, uint8_t out[4])
{
    if (cp < 0x80) {
        out[0] = (uint8_t)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (uint8_t)(0xC0 | (cp >> 6));
        out[1] = (uint8_t)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (uint8_t)(0xE0 | (cp >> 12));
        out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (uint8_t)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (uint8_t)(0xF0 | ((cp >> 18) & 0x07));
    out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (uint8_t)(0x80 | (cp & 0x3F));
    return 4;
}

#endif
