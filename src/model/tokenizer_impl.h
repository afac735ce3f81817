/* tokenizer_impl.h — the tokenizer's internal state, shared by tokenizer.c (vocabulary, special
 * tokens, decode), tokenizer_bpe.c (pre-tokenizers and byte-level BPE) and tokenizer_spm.c. */
#ifndef SHOAL_MODEL_TOKENIZER_IMPL_H
#define SHOAL_MODEL_TOKENIZER_IMPL_H

#include "model/tokenizer.h"

typedef enum tok_pre {
    TOK_PRE_GPT2 = 1,
    TOK_PRE_SMOLLM,
    TOK_PRE_LLAMA3,
    TOK_PRE_SPM,
} tok_pre_t;

struct shoal_tokenizer {
    shoal_tokenizer_kind_t kind;
    tok_pre_t pre;
    int32_t n_vocab;

    /* Vocabulary: token i is arena[off[i] .. off[i] + len[i]). */
    char *arena;
    uint32_t *off;
    uint32_t *len;
    uint8_t *type;  /* shoal_token_type_t */
    float *score;   /* SPM merge scores (0 when absent) */
    uint8_t *eog;   /* 1 for end-of-generation tokens */

    /* text -> id: open addressing over token ids, -1 = empty. */
    int32_t *str_slot;
    uint32_t str_mask;

    /* BPE merges: (left id, right id) -> rank and result id, open addressing. */
    uint64_t *m_key; /* (left << 32 | right) + 1; 0 = empty */
    int32_t *m_rank;
    int32_t *m_res;
    uint32_t m_mask;
    bool ignore_merges; /* a pre-token that is itself a token skips merging (llama3) */

    /* BPE: token of each byte's byte-level character. SPM: the <0xNN> token. -1 if none. */
    int32_t byte_tok[256];
    /* BPE decode: byte-level alphabet code point (< 0x144) -> byte, -1 if not in the alphabet. */
    int16_t cp_byte[0x144];

    /* Special tokens (CONTROL, USER_DEFINED, UNKNOWN) by decreasing length, then id; and the
     * same ranks bucketed by first byte for the scan. */
    int32_t *special;
    uint32_t n_special;
    uint32_t *sp_bucket_start; /* 257 entries */
    uint32_t *sp_bucket;       /* ranks into special[] */

    int32_t bos, eos, eot, unk;
    bool add_bos;
    bool add_space_prefix;
};

/* Growable output of encode: counts every id, stores the first `cap`. */
typedef struct tok_out {
    int32_t *ids;
    size_t cap, n;
} tok_out_t;

static inline void tok_emit(tok_out_t *o, int32_t id)
{
    if (o->n < o->cap)
        o->ids[o->n] = id;
    o->n++;
}

int32_t tok_find(const shoal_tokenizer_t *t, const char *s, size_t n);
/* Merge of (a, b): rank and result id, or -1 if the pair never merges. */
int32_t tok_merge_rank(const shoal_tokenizer_t *t, int32_t a, int32_t b, int32_t *res);

/* Encodes one run of plain text (no special tokens in it). SHOAL_E_NOMEM only. */
shoal_status_t tok_bpe_encode(const shoal_tokenizer_t *t, const uint8_t *s, size_t n, tok_out_t *o);
/* SPM: prefix_space adds the leading space the reference adds at the start / after a special. */
shoal_status_t tok_spm_encode(const shoal_tokenizer_t *t, const uint8_t *s, size_t n, bool prefix_space,
                              tok_out_t *o);

#endif
