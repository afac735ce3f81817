/* tokenizer.c — vocabulary tables from GGUF metadata, special-token partitioning, encode/decode. */
#include "model/tokenizer_impl.h"

#include "core/error.h"
#include "model/unicode.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- hashing */

static inline uint32_t hash_bytes(const char *s, size_t n)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

static inline uint32_t hash_pair(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xFF51AFD7ED558CCDull;
    k ^= k >> 33;
    return (uint32_t)k;
}

static uint32_t pow2_at_least(uint64_t n)
{
    uint32_t c = 16;
    while (c < n)
        c <<= 1;
    return c;
}

int32_t tok_find(const shoal_tokenizer_t *t, const char *s, size_t n)
{
    uint32_t i = hash_bytes(s, n) & t->str_mask;
    for (;;) {
        int32_t id = t->str_slot[i];
        if (id < 0)
            return -1;
        if (t->len[id] == n && memcmp(t->arena + t->off[id], s, n) == 0)
            return id;
        i = (i + 1) & t->str_mask;
    }
}

int32_t tok_merge_rank(const shoal_tokenizer_t *t, int32_t a, int32_t b, int32_t *res)
{
    if (!t->m_key || a < 0 || b < 0)
        return -1;
    uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = hash_pair(k) & t->m_mask;
    for (;;) {
        uint64_t v = t->m_key[i];
        if (v == 0)
            return -1;
        if (v == k) {
            *res = t->m_res[i];
            return t->m_rank[i];
        }
        i = (i + 1) & t->m_mask;
    }
}

/* ---------------------------------------------------------------- construction */

void shoal_tokenizer_delete(shoal_tokenizer_t *t)
{
    if (!t)
        return;
    free(t->arena);
    free(t->off);
    free(t->len);
    free(t->type);
    free(t->score);
    free(t->eog);
    free(t->str_slot);
    free(t->m_key);
    free(t->m_rank);
    free(t->m_res);
    free(t->special);
    free(t->sp_bucket_start);
    free(t->sp_bucket);
    free(t);
}

static bool str_is(const char *p, size_t n, const char *lit) { return n == strlen(lit) && memcmp(p, lit, n) == 0; }

/* Optional token id key: absent -> dflt; present but out of range -> error. */
static shoal_status_t get_id(const shoal_gguf_t *g, const char *key, int32_t n_vocab, int32_t dflt, int32_t *out)
{
    int64_t v;
    shoal_status_t s = shoal_gguf_get_i64(g, key, &v);
    if (s == SHOAL_E_NOT_FOUND) {
        *out = dflt;
        return SHOAL_OK;
    }
    if (s)
        return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer");
    if (v < 0 || v >= n_vocab)
        return shoal_fail(SHOAL_E_FORMAT, "tokenizer: %s = %lld is outside the vocabulary of %d", key, (long long)v,
                          n_vocab);
    *out = (int32_t)v;
    return SHOAL_OK;
}

static shoal_status_t get_flag(const shoal_gguf_t *g, const char *key, bool dflt, bool *out)
{
    shoal_status_t s = shoal_gguf_get_bool(g, key, out);
    if (s == SHOAL_E_NOT_FOUND) {
        *out = dflt;
        return SHOAL_OK;
    }
    return s ? shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer") : SHOAL_OK;
}

/* Pre-tokenizer names as llama.cpp knows them, grouped by the split rules they use. The llama3
 * names also skip merges for pre-tokens that are whole tokens and default to adding BOS. */
static const struct pre_name {
    const char *name;
    tok_pre_t pre;
    bool ignore_merges, add_bos;
} k_pre_names[] = {
    {"gpt-2", TOK_PRE_GPT2, false, false},      {"gpt2", TOK_PRE_GPT2, false, false},
    {"phi-2", TOK_PRE_GPT2, false, false},      {"mpt", TOK_PRE_GPT2, false, false},
    {"olmo", TOK_PRE_GPT2, false, false},       {"jais", TOK_PRE_GPT2, false, false},
    {"trillion", TOK_PRE_GPT2, false, false},   {"granite-docling", TOK_PRE_GPT2, false, false},
    {"smollm", TOK_PRE_SMOLLM, false, false},   {"starcoder", TOK_PRE_SMOLLM, false, false},
    {"refact", TOK_PRE_SMOLLM, false, false},   {"command-r", TOK_PRE_SMOLLM, false, false},
    {"codeshell", TOK_PRE_SMOLLM, false, false}, {"exaone", TOK_PRE_SMOLLM, false, false},
    {"minerva-7b", TOK_PRE_SMOLLM, false, false}, {"mellum2", TOK_PRE_SMOLLM, false, false},
    {"llama3", TOK_PRE_LLAMA3, true, true},     {"llama-v3", TOK_PRE_LLAMA3, true, true},
    {"llama-bpe", TOK_PRE_LLAMA3, true, true},  {"falcon3", TOK_PRE_LLAMA3, true, true},
    {"falcon-h1", TOK_PRE_LLAMA3, true, true},  {"pixtral", TOK_PRE_LLAMA3, true, true},
    {"midm-2.0", TOK_PRE_LLAMA3, true, true},   {"lfm2", TOK_PRE_LLAMA3, true, true},
    {"dbrx", TOK_PRE_LLAMA3, false, false},     {"smaug-bpe", TOK_PRE_LLAMA3, false, false},
};

static shoal_status_t pick_pre(shoal_tokenizer_t *t, const char *p, size_t n, bool *add_bos_default)
{
    for (size_t i = 0; i < sizeof k_pre_names / sizeof k_pre_names[0]; i++)
        if (str_is(p, n, k_pre_names[i].name)) {
            t->pre = k_pre_names[i].pre;
            t->ignore_merges = k_pre_names[i].ignore_merges;
            *add_bos_default = k_pre_names[i].add_bos;
            return SHOAL_OK;
        }
    return shoal_fail(SHOAL_E_UNSUPPORTED, "tokenizer: pre-tokenizer '%.*s' is not supported (gpt2, smollm, llama3 "
                      "families are)", (int)(n > 64 ? 64 : n), p);
}

static shoal_status_t load_vocab(shoal_tokenizer_t *t, const shoal_gguf_t *g)
{
    shoal_gguf_array_t toks;
    shoal_status_t s = shoal_gguf_get_array(g, "tokenizer.ggml.tokens", &toks);
    if (s)
        return shoal_fail_wrap(s == SHOAL_E_NOT_FOUND ? SHOAL_E_FORMAT : s, "tokenizer");
    if (toks.type != SHOAL_GGUF_STRING)
        return shoal_fail(SHOAL_E_FORMAT, "tokenizer: tokenizer.ggml.tokens is an array of %s, not strings",
                          shoal_gguf_vtype_name(toks.type));
    if (toks.len == 0 || toks.len > (1u << 30))
        return shoal_fail(SHOAL_E_FORMAT, "tokenizer: tokenizer.ggml.tokens has %llu entries",
                          (unsigned long long)toks.len);
    int32_t n = (int32_t)toks.len;
    t->n_vocab = n;
    uint64_t total = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *p;
        size_t l;
        if ((s = shoal_gguf_array_string(&toks, (uint64_t)i, &p, &l)))
            return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer: token %d", i);
        total += l;
    }
    if (total >= UINT32_MAX)
        return shoal_fail(SHOAL_E_FORMAT, "tokenizer: vocabulary strings total %llu bytes", (unsigned long long)total);
    t->arena = malloc(total ? total : 1);
    t->off = malloc((size_t)n * sizeof *t->off);
    t->len = malloc((size_t)n * sizeof *t->len);
    t->type = malloc((size_t)n);
    t->score = calloc((size_t)n, sizeof *t->score);
    t->eog = calloc((size_t)n, 1);
    t->str_mask = pow2_at_least((uint64_t)n * 2) - 1;
    t->str_slot = malloc(((size_t)t->str_mask + 1) * sizeof *t->str_slot);
    if (!t->arena || !t->off || !t->len || !t->type || !t->score || !t->eog || !t->str_slot)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory for %d tokens", n);
    memset(t->str_slot, 0xFF, ((size_t)t->str_mask + 1) * sizeof *t->str_slot);
    uint32_t at = 0;
    for (int32_t i = 0; i < n; i++) {
        const char *p;
        size_t l;
        shoal_gguf_array_string(&toks, (uint64_t)i, &p, &l);
        /* The reference reads token strings as C strings: a NUL ends the token. */
        const char *nul = memchr(p, 0, l);
        if (nul)
            l = (size_t)(nul - p);
        memcpy(t->arena + at, p, l);
        t->off[i] = at;
        t->len[i] = (uint32_t)l;
        at += (uint32_t)l;
        /* Duplicate strings: the first id wins, as a map built by insertion would keep. */
        if (tok_find(t, p, l) < 0) {
            uint32_t h = hash_bytes(p, l) & t->str_mask;
            while (t->str_slot[h] >= 0)
                h = (h + 1) & t->str_mask;
            t->str_slot[h] = i;
        }
    }

    shoal_gguf_array_t types;
    s = shoal_gguf_get_array(g, "tokenizer.ggml.token_type", &types);
    if (s == SHOAL_E_NOT_FOUND) {
        memset(t->type, SHOAL_TOKEN_NORMAL, (size_t)n);
    } else if (s) {
        return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer");
    } else {
        if (types.len != toks.len)
            return shoal_fail(SHOAL_E_FORMAT, "tokenizer: %llu token types for %d tokens",
                              (unsigned long long)types.len, n);
        for (int32_t i = 0; i < n; i++) {
            int64_t v;
            if ((s = shoal_gguf_array_i64(&types, (uint64_t)i, &v)))
                return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer: token_type %d", i);
            if (v < 0 || v > SHOAL_TOKEN_BYTE)
                return shoal_fail(SHOAL_E_FORMAT, "tokenizer: token %d has type %lld", i, (long long)v);
            t->type[i] = (uint8_t)v;
        }
    }

    shoal_gguf_array_t scores;
    s = shoal_gguf_get_array(g, "tokenizer.ggml.scores", &scores);
    if (s && s != SHOAL_E_NOT_FOUND)
        return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer");
    if (!s) {
        if (scores.len != toks.len)
            return shoal_fail(SHOAL_E_FORMAT, "tokenizer: %llu scores for %d tokens", (unsigned long long)scores.len, n);
        for (int32_t i = 0; i < n; i++)
            if ((s = shoal_gguf_array_f32(&scores, (uint64_t)i, &t->score[i])))
                return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer: score %d", i);
    }
    return SHOAL_OK;
}

/* GPT-2's byte alphabet: printable bytes stand for themselves, the other 68 bytes take the code
 * points 256, 257, ... in byte order, so every byte has a visible, non-space character. */
static uint32_t gpt2_byte_cp(int b, int *next_extra)
{
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF))
        return (uint32_t)b;
    return 256u + (uint32_t)(*next_extra)++;
}

static shoal_status_t load_merges(shoal_tokenizer_t *t, const shoal_gguf_t *g)
{
    shoal_gguf_array_t mg;
    shoal_status_t s = shoal_gguf_get_array(g, "tokenizer.ggml.merges", &mg);
    if (s)
        return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer: BPE model needs merges");
    if (mg.type != SHOAL_GGUF_STRING)
        return shoal_fail(SHOAL_E_FORMAT, "tokenizer: tokenizer.ggml.merges is not an array of strings");
    if (mg.len > (1u << 30))
        return shoal_fail(SHOAL_E_FORMAT, "tokenizer: %llu merges", (unsigned long long)mg.len);
    t->m_mask = pow2_at_least(mg.len * 2 + 1) - 1;
    size_t cap = (size_t)t->m_mask + 1;
    t->m_key = calloc(cap, sizeof *t->m_key);
    t->m_rank = malloc(cap * sizeof *t->m_rank);
    t->m_res = malloc(cap * sizeof *t->m_res);
    if (!t->m_key || !t->m_rank || !t->m_res)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory for merges");
    char buf[512];
    for (uint64_t r = 0; r < mg.len; r++) {
        const char *p;
        size_t l;
        if ((s = shoal_gguf_array_string(&mg, r, &p, &l)))
            return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer: merge %llu", (unsigned long long)r);
        /* "left right": split at the first space after the first byte. */
        const char *sp = l > 1 ? memchr(p + 1, ' ', l - 1) : NULL;
        if (!sp)
            continue;
        size_t la = (size_t)(sp - p), lb = l - la - 1;
        int32_t a = tok_find(t, p, la), b = tok_find(t, sp + 1, lb);
        if (a < 0 || b < 0 || la + lb > sizeof buf)
            continue; /* see tokenizer.h: merges over non-tokens are ignored */
        memcpy(buf, p, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t res = tok_find(t, buf, la + lb);
        if (res < 0)
            continue;
        uint64_t k = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        uint32_t i = hash_pair(k) & t->m_mask;
        while (t->m_key[i] != 0 && t->m_key[i] != k)
            i = (i + 1) & t->m_mask;
        if (t->m_key[i] == k)
            continue; /* a repeated merge keeps its first (best) rank */
        t->m_key[i] = k;
        t->m_rank[i] = (int32_t)r;
        t->m_res[i] = res;
    }
    return SHOAL_OK;
}

static void setup_bytes(shoal_tokenizer_t *t)
{
    memset(t->cp_byte, 0xFF, sizeof t->cp_byte);
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        if (t->kind == SHOAL_TOKENIZER_BPE) {
            uint32_t cp = gpt2_byte_cp(b, &extra);
            uint8_t u[4];
            size_t l = shoal_utf8_encode(cp, u);
            t->byte_tok[b] = tok_find(t, (const char *)u, l);
            t->cp_byte[cp] = (int16_t)b;
        } else {
            static const char hex[] = "0123456789ABCDEF";
            char s[6] = {'<', '0', 'x', hex[b >> 4], hex[b & 15], '>'};
            t->byte_tok[b] = tok_find(t, s, 6);
        }
    }
}

static int cmp_u64(const void *pa, const void *pb)
{
    uint64_t a = *(const uint64_t *)pa, b = *(const uint64_t *)pb;
    return a < b ? -1 : a > b;
}

static shoal_status_t setup_specials(shoal_tokenizer_t *t)
{
    uint32_t n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint8_t ty = t->type[i];
        if ((ty == SHOAL_TOKEN_CONTROL || ty == SHOAL_TOKEN_USER_DEFINED || ty == SHOAL_TOKEN_UNKNOWN) && t->len[i] > 0)
            n++;
    }
    t->special = malloc((n ? n : 1) * sizeof *t->special);
    t->sp_bucket = malloc((n ? n : 1) * sizeof *t->sp_bucket);
    t->sp_bucket_start = calloc(257, sizeof *t->sp_bucket_start);
    if (!t->special || !t->sp_bucket || !t->sp_bucket_start)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory");
    n = 0;
    for (int32_t i = 0; i < t->n_vocab; i++) {
        uint8_t ty = t->type[i];
        if ((ty == SHOAL_TOKEN_CONTROL || ty == SHOAL_TOKEN_USER_DEFINED || ty == SHOAL_TOKEN_UNKNOWN) && t->len[i] > 0)
            t->special[n++] = i;
    }
    t->n_special = n;
    /* order: longer first, then lower id (key = (~len, id) ascending) */
    uint64_t *key = malloc((n ? n : 1) * sizeof *key);
    if (!key)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory");
    for (uint32_t r = 0; r < n; r++)
        key[r] = ((uint64_t)(UINT32_MAX - t->len[t->special[r]]) << 32) | (uint32_t)t->special[r];
    qsort(key, n, sizeof *key, cmp_u64);
    for (uint32_t r = 0; r < n; r++)
        t->special[r] = (int32_t)(uint32_t)key[r];
    free(key);
    /* bucket ranks by first byte, keeping rank order inside a bucket */
    for (uint32_t r = 0; r < n; r++)
        t->sp_bucket_start[(uint8_t)t->arena[t->off[t->special[r]]] + 1]++;
    for (int b = 0; b < 256; b++)
        t->sp_bucket_start[b + 1] += t->sp_bucket_start[b];
    uint32_t fill[256];
    memcpy(fill, t->sp_bucket_start, sizeof fill);
    for (uint32_t r = 0; r < n; r++)
        t->sp_bucket[fill[(uint8_t)t->arena[t->off[t->special[r]]]]++] = r;
    return SHOAL_OK;
}

static void setup_eog(shoal_tokenizer_t *t)
{
    /* Names llama.cpp treats as end of generation: ends of turn/text, and the fill-in-the-middle
     * pad / repository / file-separator tokens. The eot fallback takes the first of the first
     * five (in this order) that exists. */
    static const char *const names[] = {
        "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>", "_<EOT>",
        "<|end_of_text|>", "<end_of_utterance>", "<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]",
        "<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>", "<|file_sep|>", NULL};
    for (int k = 0; names[k]; k++) {
        int32_t id = tok_find(t, names[k], strlen(names[k]));
        if (id < 0)
            continue;
        t->eog[id] = 1;
        if (t->eot < 0 && k <= 4)
            t->eot = id;
    }
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    if (t->eot >= 0)
        t->eog[t->eot] = 1;
}

shoal_status_t shoal_tokenizer_new_from_gguf(const shoal_gguf_t *g, shoal_tokenizer_t **out)
{
    if (!g || !out)
        return shoal_fail(SHOAL_E_INVALID, "tokenizer: NULL argument");
    const char *model;
    size_t model_len;
    shoal_status_t s = shoal_gguf_get_string(g, "tokenizer.ggml.model", &model, &model_len);
    if (s)
        return shoal_fail_wrap(SHOAL_E_FORMAT, "tokenizer: no tokenizer.ggml.model");
    shoal_tokenizer_t *t = calloc(1, sizeof *t);
    if (!t)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory");
    bool add_bos_default = false;
    if (str_is(model, model_len, "gpt2")) {
        t->kind = SHOAL_TOKENIZER_BPE;
        const char *pre;
        size_t pre_len;
        s = shoal_gguf_get_string(g, "tokenizer.ggml.pre", &pre, &pre_len);
        if (s == SHOAL_E_NOT_FOUND) {
            pre = "gpt2"; /* the reference's "default" pre-tokenizer is a different regex set; files
                           * without the key predate it and were GPT-2 style */
            pre_len = 4;
            s = SHOAL_OK;
        }
        if (!s)
            s = pick_pre(t, pre, pre_len, &add_bos_default);
    } else if (str_is(model, model_len, "llama")) {
        t->kind = SHOAL_TOKENIZER_SPM;
        t->pre = TOK_PRE_SPM;
        add_bos_default = true;
    } else {
        s = shoal_fail(SHOAL_E_UNSUPPORTED, "tokenizer: tokenizer.ggml.model '%.*s' is not supported (gpt2, llama are)",
                       (int)(model_len > 64 ? 64 : model_len), model);
    }
    if (!s)
        s = load_vocab(t, g);
    if (!s && t->kind == SHOAL_TOKENIZER_BPE)
        s = load_merges(t, g);
    if (!s) {
        bool spm = t->kind == SHOAL_TOKENIZER_SPM;
        setup_bytes(t);
        int32_t n = t->n_vocab;
        /* SPM files written without these keys follow Llama 2: unk 0, bos 1, eos 2. */
        s = get_id(g, "tokenizer.ggml.bos_token_id", n, spm && n > 1 ? 1 : -1, &t->bos);
        if (!s)
            s = get_id(g, "tokenizer.ggml.eos_token_id", n, spm && n > 2 ? 2 : -1, &t->eos);
        if (!s)
            s = get_id(g, "tokenizer.ggml.eot_token_id", n, -1, &t->eot);
        if (!s)
            s = get_id(g, "tokenizer.ggml.unknown_token_id", n, spm ? 0 : -1, &t->unk);
        if (!s)
            s = get_flag(g, "tokenizer.ggml.add_bos_token", add_bos_default, &t->add_bos);
        if (!s)
            s = get_flag(g, "tokenizer.ggml.add_space_prefix", spm, &t->add_space_prefix);
        if (!spm)
            t->add_space_prefix = false; /* byte-level BPE encodes spaces itself */
    }
    if (!s)
        s = setup_specials(t);
    if (s) {
        shoal_tokenizer_delete(t);
        return s;
    }
    setup_eog(t);
    *out = t;
    return SHOAL_OK;
}

/* ---------------------------------------------------------------- queries */

shoal_tokenizer_kind_t shoal_tokenizer_kind(const shoal_tokenizer_t *t) { return t->kind; }
int32_t shoal_tokenizer_n_vocab(const shoal_tokenizer_t *t) { return t->n_vocab; }
int32_t shoal_tokenizer_bos(const shoal_tokenizer_t *t) { return t->bos; }
int32_t shoal_tokenizer_eos(const shoal_tokenizer_t *t) { return t->eos; }
int32_t shoal_tokenizer_eot(const shoal_tokenizer_t *t) { return t->eot; }
int32_t shoal_tokenizer_unk(const shoal_tokenizer_t *t) { return t->unk; }
bool shoal_tokenizer_wants_bos(const shoal_tokenizer_t *t) { return t->add_bos && t->bos >= 0; }

const char *shoal_tokenizer_pre(const shoal_tokenizer_t *t)
{
    switch (t->pre) {
    case TOK_PRE_GPT2: return "gpt2";
    case TOK_PRE_SMOLLM: return "smollm";
    case TOK_PRE_LLAMA3: return "llama3";
    case TOK_PRE_SPM: return "spm";
    }
    return "?";
}

bool shoal_tokenizer_is_eog(const shoal_tokenizer_t *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab && t->eog[id];
}

shoal_token_type_t shoal_tokenizer_token_type(const shoal_tokenizer_t *t, int32_t id)
{
    return id >= 0 && id < t->n_vocab ? (shoal_token_type_t)t->type[id] : SHOAL_TOKEN_UNDEFINED;
}

bool shoal_tokenizer_is_control(const shoal_tokenizer_t *t, int32_t id)
{
    shoal_token_type_t ty = shoal_tokenizer_token_type(t, id);
    return ty == SHOAL_TOKEN_CONTROL || ty == SHOAL_TOKEN_UNKNOWN;
}

const char *shoal_tokenizer_token_text(const shoal_tokenizer_t *t, int32_t id, size_t *len)
{
    if (id < 0 || id >= t->n_vocab)
        return NULL;
    if (len)
        *len = t->len[id];
    return t->arena + t->off[id];
}

int32_t shoal_tokenizer_find(const shoal_tokenizer_t *t, const char *text, size_t len)
{
    return text ? tok_find(t, text, len) : -1;
}

/* ---------------------------------------------------------------- encode */

typedef struct occ {
    uint32_t rank; /* index into t->special: lower = matched first */
    uint32_t pos;
} occ_t;

static int cmp_occ(const void *pa, const void *pb)
{
    const occ_t *a = pa, *b = pb;
    if (a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int cmp_occ_pos(const void *pa, const void *pb)
{
    const occ_t *a = pa, *b = pb;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static shoal_status_t encode_text(const shoal_tokenizer_t *t, const uint8_t *s, size_t n, bool *prev_special,
                                  tok_out_t *o)
{
    shoal_status_t st;
    if (t->kind == SHOAL_TOKENIZER_BPE)
        st = tok_bpe_encode(t, s, n, o);
    else
        st = tok_spm_encode(t, s, n, t->add_space_prefix && *prev_special, o);
    *prev_special = false;
    return st;
}

/* Cuts special tokens out of the text the way the reference does: special tokens in order of
 * decreasing length, each taking its leftmost non-overlapping occurrences that lie wholly
 * inside text not yet taken by a longer one. Found here in one scan of the text, then settled
 * in that priority order. */
shoal_status_t shoal_tokenizer_encode(const shoal_tokenizer_t *t, const char *text, size_t len, bool parse_special,
                                      bool add_bos, int32_t *out, size_t cap, size_t *n_out)
{
    if (!t || (!text && len) || (!out && cap) || !n_out)
        return shoal_fail(SHOAL_E_INVALID, "tokenizer: NULL argument");
    /* Offsets and symbol indices are 32-bit and a run may grow 3x (U+FFFD, U+2581) on the way:
     * 256 MiB keeps every one of them far inside int32 range. */
    if (len > (256u << 20))
        return shoal_fail(SHOAL_E_LIMIT, "tokenizer: text of %zu bytes is longer than 256 MiB", len);
    tok_out_t o = {out, cap, 0};
    if (add_bos) {
        if (t->bos < 0)
            return shoal_fail(SHOAL_E_INVALID, "tokenizer: BOS requested but the model has no BOS token");
        tok_emit(&o, t->bos);
    }
    const uint8_t *s = (const uint8_t *)text;
    shoal_status_t st = SHOAL_OK;
    bool prev_special = true;

    occ_t *occ = NULL;
    size_t n_occ = 0, cap_occ = 0;
    for (size_t i = 0; i < len && t->n_special; i++) {
        for (uint32_t k = t->sp_bucket_start[s[i]]; k < t->sp_bucket_start[s[i] + 1]; k++) {
            uint32_t r = t->sp_bucket[k];
            int32_t id = t->special[r];
            uint8_t ty = t->type[id];
            if (!parse_special && ty != SHOAL_TOKEN_USER_DEFINED)
                continue;
            uint32_t l = t->len[id];
            if (l > len - i || memcmp(s + i, t->arena + t->off[id], l) != 0)
                continue;
            if (n_occ == cap_occ) {
                size_t nc = cap_occ ? cap_occ * 2 : 64;
                occ_t *no = realloc(occ, nc * sizeof *occ);
                if (!no) {
                    free(occ);
                    return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory");
                }
                occ = no;
                cap_occ = nc;
            }
            occ[n_occ++] = (occ_t){r, (uint32_t)i};
        }
    }

    if (n_occ) {
        uint8_t *taken = calloc(len, 1);
        if (!taken) {
            free(occ);
            return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory");
        }
        qsort(occ, n_occ, sizeof *occ, cmp_occ);
        size_t kept = 0;
        for (size_t k = 0; k < n_occ; k++) {
            uint32_t l = t->len[t->special[occ[k].rank]];
            bool free_span = true;
            for (uint32_t j = 0; j < l && free_span; j++)
                free_span = !taken[occ[k].pos + j];
            if (!free_span)
                continue;
            memset(taken + occ[k].pos, 1, l);
            occ[kept++] = occ[k];
        }
        free(taken);
        qsort(occ, kept, sizeof *occ, cmp_occ_pos);
        size_t at = 0;
        for (size_t k = 0; k < kept && !st; k++) {
            if (occ[k].pos > at)
                st = encode_text(t, s + at, occ[k].pos - at, &prev_special, &o);
            int32_t id = t->special[occ[k].rank];
            tok_emit(&o, id);
            prev_special = true;
            at = occ[k].pos + t->len[id];
        }
        if (!st && at < len)
            st = encode_text(t, s + at, len - at, &prev_special, &o);
    } else if (len) {
        st = encode_text(t, s, len, &prev_special, &o);
    }
    free(occ);
    if (st)
        return st;
    *n_out = o.n;
    if (o.n > cap)
        return shoal_fail(SHOAL_E_LIMIT, "tokenizer: %zu tokens do not fit in a buffer of %zu", o.n, cap);
    return SHOAL_OK;
}

/* ---------------------------------------------------------------- decode */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* Appends the piece of `id` at buf[*n] (writing only below cap, counting always). */
static void piece(const shoal_tokenizer_t *t, int32_t id, bool special, bool strip_space, char *buf, size_t cap,
                  size_t *n)
{
    const char *p = t->arena + t->off[id];
    size_t l = t->len[id];
    uint8_t ty = t->type[id];
#define PUT(c)                                                                                                         \
    do {                                                                                                               \
        if (strip_space && (c) == ' ') {                                                                               \
            strip_space = false;                                                                                       \
            break;                                                                                                     \
        }                                                                                                              \
        strip_space = false;                                                                                           \
        if (*n < cap)                                                                                                  \
            buf[*n] = (char)(c);                                                                                       \
        (*n)++;                                                                                                        \
    } while (0)
    if (ty == SHOAL_TOKEN_CONTROL || ty == SHOAL_TOKEN_UNKNOWN) {
        if (!special)
            return;
        for (size_t i = 0; i < l; i++)
            PUT(p[i]);
        return;
    }
    if (ty == SHOAL_TOKEN_USER_DEFINED) {
        for (size_t i = 0; i < l; i++)
            PUT(p[i]);
        return;
    }
    if (ty == SHOAL_TOKEN_BYTE) {
        int hi = l == 6 ? hexval(p[3]) : -1, lo = l == 6 ? hexval(p[4]) : -1;
        if (hi >= 0 && lo >= 0 && p[0] == '<' && p[1] == '0' && p[2] == 'x' && p[5] == '>') {
            PUT(hi * 16 + lo);
        } else {
            for (size_t i = 0; i < l; i++)
                PUT(p[i]);
        }
        return;
    }
    if (ty != SHOAL_TOKEN_NORMAL)
        return; /* UNUSED / UNDEFINED render as nothing, like the reference */
    const uint8_t *u = (const uint8_t *)p;
    for (size_t i = 0; i < l;) {
        size_t used;
        uint32_t cp = shoal_utf8_decode(u + i, l - i, &used);
        if (t->kind == SHOAL_TOKENIZER_BPE) {
            if (cp < 0x144 && t->cp_byte[cp] >= 0 && used > 0) {
                PUT(t->cp_byte[cp]);
            } else {
                for (size_t j = 0; j < used; j++)
                    PUT(u[i + j]); /* outside the byte alphabet: pass the character through */
            }
        } else if (cp == 0x2581) {
            PUT(' ');
        } else {
            for (size_t j = 0; j < used; j++)
                PUT(u[i + j]);
        }
        i += used;
    }
#undef PUT
}

shoal_status_t shoal_tokenizer_token_to_piece(const shoal_tokenizer_t *t, int32_t id, bool special, char *buf,
                                              size_t cap, size_t *n_out)
{
    if (!t || (!buf && cap) || !n_out)
        return shoal_fail(SHOAL_E_INVALID, "tokenizer: NULL argument");
    if (id < 0 || id >= t->n_vocab)
        return shoal_fail(SHOAL_E_INVALID, "tokenizer: token id %d outside the vocabulary of %d", id, t->n_vocab);
    size_t n = 0;
    piece(t, id, special, false, buf, cap, &n);
    *n_out = n;
    if (n > cap)
        return shoal_fail(SHOAL_E_LIMIT, "tokenizer: piece of %zu bytes does not fit in %zu", n, cap);
    return SHOAL_OK;
}

shoal_status_t shoal_tokenizer_decode(const shoal_tokenizer_t *t, const int32_t *ids, size_t n, bool special,
                                      char *buf, size_t cap, size_t *n_out)
{
    if (!t || (!ids && n) || (!buf && cap) || !n_out)
        return shoal_fail(SHOAL_E_INVALID, "tokenizer: NULL argument");
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= t->n_vocab)
            return shoal_fail(SHOAL_E_INVALID, "tokenizer: token %zu has id %d, outside the vocabulary of %d", i,
                              ids[i], t->n_vocab);
    size_t w = 0;
    for (size_t i = 0; i < n; i++)
        piece(t, ids[i], special, i == 0 && t->add_space_prefix, buf, cap, &w);
    *n_out = w;
    if (w > cap)
        return shoal_fail(SHOAL_E_LIMIT, "tokenizer: decoded text of %zu bytes does not fit in %zu", w, cap);
    return SHOAL_OK;
}
