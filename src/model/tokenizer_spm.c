/* tokenizer_spm.c — SentencePiece-style (Llama 2) encoding: U+2581 for spaces, greedy merging
 * of adjacent symbols by the score of the merged token, byte tokens for what is left over. */
#include "model/tokenizer_impl.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

typedef struct spm_sym {
    uint32_t off, n; /* bytes of the escaped text; n == 0 once merged into its left neighbour */
    int32_t prev, next;
} spm_sym_t;

typedef struct spm_pair {
    float score;
    int32_t left, right;
    uint32_t size; /* bytes the merged symbol had when queued: a later size means stale */
} spm_pair_t;

/* Highest score first; ties to the leftmost pair. */
static inline bool pair_before(const spm_pair_t *a, const spm_pair_t *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct spm_heap {
    spm_pair_t *a;
    size_t n, cap;
    bool oom;
} spm_heap_t;

static bool sh_push(spm_heap_t *h, spm_pair_t e)
{
    if (h->n == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        spm_pair_t *a = realloc(h->a, cap * sizeof *a);
        if (!a)
            return false;
        h->a = a;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!pair_before(&e, &h->a[p]))
            break;
        h->a[i] = h->a[p];
        i = p;
    }
    h->a[i] = e;
    return true;
}

static spm_pair_t sh_pop(spm_heap_t *h)
{
    spm_pair_t top = h->a[0], last = h->a[--h->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && pair_before(&h->a[c + 1], &h->a[c]))
            c++;
        if (!pair_before(&h->a[c], &last))
            break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n)
        h->a[i] = last;
    return top;
}

static void try_pair(const shoal_tokenizer_t *t, const char *text, const spm_sym_t *sym, spm_heap_t *h, int32_t l,
                     int32_t r)
{
    if (l < 0 || r < 0)
        return;
    uint32_t size = sym[l].n + sym[r].n;
    int32_t id = tok_find(t, text + sym[l].off, size);
    if (id < 0)
        return;
    if (!sh_push(h, (spm_pair_t){t->score[id], l, r, size}))
        h->oom = true;
}

/* Byte length the reference gives a symbol starting with byte c (by its high bits only). */
static inline uint32_t lead_len(uint8_t c)
{
    static const uint8_t len[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return len[c >> 4];
}

shoal_status_t tok_spm_encode(const shoal_tokenizer_t *t, const uint8_t *s, size_t n, bool prefix_space,
                              tok_out_t *o)
{
    /* escape: optional leading space, every ' ' -> U+2581 (3 bytes) */
    char *text = malloc(3 * (n + 1));
    if (!text)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory for %zu bytes of text", n);
    size_t tl = 0;
    if (prefix_space) {
        memcpy(text, "\xE2\x96\x81", 3);
        tl = 3;
    }
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ') {
            memcpy(text + tl, "\xE2\x96\x81", 3);
            tl += 3;
        } else {
            text[tl++] = (char)s[i];
        }
    }
    size_t count = 0;
    for (size_t off = 0; off < tl; count++)
        off += lead_len((uint8_t)text[off]);
    spm_sym_t *sym = malloc((count ? count : 1) * sizeof *sym);
    spm_heap_t h = {NULL, 0, 0, false};
    if (!sym) {
        free(text);
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory for %zu bytes of text", n);
    }
    int32_t ns = 0;
    for (size_t off = 0; off < tl;) {
        uint32_t l = lead_len((uint8_t)text[off]);
        if (l > tl - off)
            l = (uint32_t)(tl - off);
        sym[ns] = (spm_sym_t){(uint32_t)off, l, ns - 1, off + l < tl ? ns + 1 : -1};
        ns++;
        off += l;
    }
    for (int32_t i = 1; i < ns; i++)
        try_pair(t, text, sym, &h, i - 1, i);
    while (h.n && !h.oom) {
        spm_pair_t p = sh_pop(&h);
        spm_sym_t *L = &sym[p.left], *R = &sym[p.right];
        if (L->n == 0 || R->n == 0 || L->n + R->n != p.size)
            continue;
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0)
            sym[R->next].prev = p.left;
        try_pair(t, text, sym, &h, L->prev, p.left);
        try_pair(t, text, sym, &h, p.left, L->next);
    }
    for (int32_t i = ns ? 0 : -1; i >= 0; i = sym[i].next) {
        int32_t id = tok_find(t, text + sym[i].off, sym[i].n);
        if (id >= 0) {
            tok_emit(o, id);
            continue;
        }
        /* no token for this character: its bytes as <0xNN>, else a one-byte token, else unk */
        for (uint32_t j = 0; j < sym[i].n; j++) {
            uint8_t b = (uint8_t)text[sym[i].off + j];
            int32_t bt = t->byte_tok[b];
            if (bt < 0)
                bt = tok_find(t, (const char *)&b, 1);
            if (bt < 0)
                bt = t->unk;
            if (bt >= 0)
                tok_emit(o, bt);
        }
    }
    free(text);
    free(sym);
    free(h.a);
    if (h.oom)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory merging %zu bytes of text", n);
    return SHOAL_OK;
}
