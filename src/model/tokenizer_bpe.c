/* tokenizer_bpe.c — byte-level BPE: hand-written pre-tokenizers (gpt2, smollm, llama3 splits)
 * over Unicode classes, then rank-ordered pair merging with a binary heap. */
#include "model/tokenizer_impl.h"

#include "core/error.h"
#include "model/unicode.h"

#include <stdlib.h>
#include <string.h>

#define CLS_OUT 255 /* past the end of the current run: matches no class */

/* Scratch for one call; grown as needed, freed at the end of the call. */
typedef struct bpe_work {
    /* the run as code points */
    uint32_t *cp;
    uint8_t *cls;
    uint32_t *boff; /* byte offset of each code point in norm, n_cp + 1 entries */
    uint8_t *norm;  /* the run re-encoded (invalid bytes become U+FFFD) */
    uint32_t *wend; /* end (code point index) of each pre-token */
    size_t n_words;
    /* merging */
    int32_t *id, *prev, *next;
    struct heap_ent {
        int32_t rank, left, right, lid, rid;
    } *heap;
    size_t heap_n, sym_cap, heap_cap;
    char *enc; /* the pre-token in the byte-level alphabet (llama3 whole-word lookup) */
} bpe_work_t;

static inline uint8_t cls_at(const bpe_work_t *w, size_t i, size_t e) { return i < e ? w->cls[i] : CLS_OUT; }

static inline void push_end(bpe_work_t *w, size_t end)
{
    if (w->n_words == 0 || w->wend[w->n_words - 1] < end)
        w->wend[w->n_words++] = (uint32_t)end;
}

/* 's|'t|'re|'ve|'m|'ll|'d (lower: fold ASCII case first, as llama3's (?i:...) does).
 * Returns the contraction's length in code points, or 0. */
static size_t contraction(const uint32_t *cp, size_t pos, size_t e, bool fold)
{
    if (cp[pos] != '\'' || pos + 1 >= e)
        return 0;
    uint32_t a = cp[pos + 1];
    if (fold && a >= 'A' && a <= 'Z')
        a += 32;
    if (a == 's' || a == 't' || a == 'm' || a == 'd')
        return 2;
    if (pos + 2 >= e)
        return 0;
    uint32_t b = cp[pos + 2];
    if (fold && b >= 'A' && b <= 'Z')
        b += 32;
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
        return 3;
    return 0;
}

/* Whitespace at pos: \s+(?!\S) leaves the last space to the next piece when more text follows
 * inside the run; otherwise \s+ takes the whole run. */
static size_t space_run(const bpe_work_t *w, size_t pos, size_t e)
{
    size_t n = 0;
    while (pos + n < e && w->cls[pos + n] == SHOAL_UC_SPACE)
        n++;
    if (n > 1 && pos + n < e)
        return n - 1;
    return n ? n : 1;
}

/* GPT-2: 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+ on [s, e). */
static void split_gpt2(bpe_work_t *w, size_t s, size_t e)
{
    const uint32_t *cp = w->cp;
    size_t pos = s;
    while (pos < e) {
        size_t k = contraction(cp, pos, e, false);
        if (k) {
            pos += k;
            push_end(w, pos);
            continue;
        }
        bool sp = cp[pos] == ' ';
        uint8_t c = sp ? cls_at(w, pos + 1, e) : w->cls[pos];
        if (c == SHOAL_UC_LETTER || c == SHOAL_UC_NUMBER || c == SHOAL_UC_OTHER) {
            pos += sp;
            while (pos < e && w->cls[pos] == c)
                pos++;
            push_end(w, pos);
            continue;
        }
        pos += space_run(w, pos, e);
        push_end(w, pos);
    }
}

/* SmolLM / StarCoder: every \p{N} code point alone, GPT-2 rules between them. */
static void split_smollm(bpe_work_t *w, size_t s, size_t e)
{
    size_t run = s;
    for (size_t i = s; i < e; i++) {
        if (w->cls[i] != SHOAL_UC_NUMBER)
            continue;
        if (i > run)
            split_gpt2(w, run, i);
        push_end(w, i + 1);
        run = i + 1;
    }
    if (run < e)
        split_gpt2(w, run, e);
}

/* Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+ */
static void split_llama3(bpe_work_t *w, size_t s, size_t e)
{
    const uint32_t *cp = w->cp;
    size_t pos = s;
    while (pos < e) {
        size_t k = contraction(cp, pos, e, true);
        if (k) {
            pos += k;
            push_end(w, pos);
            continue;
        }
        uint32_t c = cp[pos];
        uint8_t cl = w->cls[pos];
        bool nl = c == '\r' || c == '\n';
        if (!nl && cl != SHOAL_UC_NUMBER && (cl == SHOAL_UC_LETTER || cls_at(w, pos + 1, e) == SHOAL_UC_LETTER)) {
            pos++; /* one optional non-letter prefix, or the first letter */
            while (pos < e && w->cls[pos] == SHOAL_UC_LETTER)
                pos++;
            push_end(w, pos);
            continue;
        }
        if (cl == SHOAL_UC_NUMBER) {
            size_t start = pos;
            while (pos < e && w->cls[pos] == SHOAL_UC_NUMBER) {
                pos++;
                if (pos - start == 3) {
                    push_end(w, pos);
                    start = pos;
                }
            }
            push_end(w, pos);
            continue;
        }
        bool sp = c == ' ';
        uint8_t c2 = sp ? cls_at(w, pos + 1, e) : cl;
        if (c2 == SHOAL_UC_OTHER || c2 == CLS_OUT) {
            pos += sp;
            while (pos < e && w->cls[pos] == SHOAL_UC_OTHER)
                pos++;
            while (pos < e && (cp[pos] == '\r' || cp[pos] == '\n'))
                pos++;
            push_end(w, pos);
            continue;
        }
        /* whitespace: up to and including the last \r or \n of the run, else as GPT-2 */
        size_t n = 0, last_nl = 0;
        while (pos + n < e && w->cls[pos + n] == SHOAL_UC_SPACE) {
            if (cp[pos + n] == '\r' || cp[pos + n] == '\n')
                last_nl = n + 1;
            n++;
        }
        if (last_nl) {
            pos += last_nl;
        } else {
            pos += space_run(w, pos, e);
        }
        push_end(w, pos);
    }
}

/* ---------------------------------------------------------------- merging */

static inline bool heap_less(const struct heap_ent *a, const struct heap_ent *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static void heap_push(bpe_work_t *w, struct heap_ent e)
{
    size_t i = w->heap_n++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &w->heap[p]))
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = e;
}

static struct heap_ent heap_pop(bpe_work_t *w)
{
    struct heap_ent top = w->heap[0], last = w->heap[--w->heap_n];
    size_t i = 0, n = w->heap_n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_less(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!heap_less(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n)
        w->heap[i] = last;
    return top;
}

static void try_pair(const shoal_tokenizer_t *t, bpe_work_t *w, int32_t l, int32_t r)
{
    if (l < 0 || r < 0)
        return;
    int32_t res;
    int32_t rank = tok_merge_rank(t, w->id[l], w->id[r], &res);
    if (rank >= 0)
        heap_push(w, (struct heap_ent){rank, l, r, w->id[l], w->id[r]});
}

static shoal_status_t grow_sym(bpe_work_t *w, size_t m)
{
    if (m <= w->sym_cap)
        return SHOAL_OK;
    size_t cap = m < 64 ? 64 : m * 2;
    int32_t *a = realloc(w->id, cap * sizeof *a);
    if (a)
        w->id = a;
    int32_t *b = realloc(w->prev, cap * sizeof *b);
    if (b)
        w->prev = b;
    int32_t *c = realloc(w->next, cap * sizeof *c);
    if (c)
        w->next = c;
    /* every merge pushes at most two pairs: m - 1 + 2 (m - 1) */
    struct heap_ent *h = realloc(w->heap, 3 * cap * sizeof *h);
    if (h)
        w->heap = h;
    char *enc = realloc(w->enc, 2 * cap);
    if (enc)
        w->enc = enc;
    if (!a || !b || !c || !h || !enc)
        return shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory");
    w->sym_cap = cap;
    return SHOAL_OK;
}

#define DEAD INT32_MIN

static shoal_status_t bpe_word(const shoal_tokenizer_t *t, bpe_work_t *w, const uint8_t *b, size_t m, tok_out_t *o)
{
    if (m == 1) {
        if (t->byte_tok[b[0]] >= 0)
            tok_emit(o, t->byte_tok[b[0]]);
        return SHOAL_OK;
    }
    shoal_status_t st = grow_sym(w, m);
    if (st)
        return st;
    if (t->ignore_merges) {
        /* the pre-token spelled in the byte-level alphabet: a whole token skips merging */
        size_t el = 0;
        for (size_t i = 0; i < m; i++) {
            int32_t bt = t->byte_tok[b[i]];
            if (bt < 0) {
                el = 0;
                break;
            }
            memcpy(w->enc + el, t->arena + t->off[bt], t->len[bt]);
            el += t->len[bt];
        }
        int32_t id = el ? tok_find(t, w->enc, el) : -1;
        if (id >= 0) {
            tok_emit(o, id);
            return SHOAL_OK;
        }
    }
    for (size_t i = 0; i < m; i++) {
        w->id[i] = t->byte_tok[b[i]];
        w->prev[i] = (int32_t)i - 1;
        w->next[i] = i + 1 < m ? (int32_t)i + 1 : -1;
    }
    w->heap_n = 0;
    for (size_t i = 0; i + 1 < m; i++)
        try_pair(t, w, (int32_t)i, (int32_t)i + 1);
    while (w->heap_n) {
        struct heap_ent e = heap_pop(w);
        /* stale if either side has merged since the pair was queued */
        if (w->id[e.left] != e.lid || w->id[e.right] != e.rid || w->next[e.left] != e.right)
            continue;
        int32_t res;
        tok_merge_rank(t, e.lid, e.rid, &res);
        w->id[e.left] = res;
        w->id[e.right] = DEAD;
        int32_t nx = w->next[e.right];
        w->next[e.left] = nx;
        if (nx >= 0)
            w->prev[nx] = e.left;
        try_pair(t, w, w->prev[e.left], e.left);
        try_pair(t, w, e.left, nx);
    }
    for (int32_t i = 0; i >= 0; i = w->next[i])
        if (w->id[i] >= 0)
            tok_emit(o, w->id[i]); /* a byte with no token emits nothing, like the reference */
    return SHOAL_OK;
}

shoal_status_t tok_bpe_encode(const shoal_tokenizer_t *t, const uint8_t *s, size_t n, tok_out_t *o)
{
    bpe_work_t w;
    memset(&w, 0, sizeof w);
    shoal_status_t st = SHOAL_OK;
    w.cp = malloc(n * sizeof *w.cp);
    w.cls = malloc(n);
    w.boff = malloc((n + 1) * sizeof *w.boff);
    w.norm = malloc(3 * n);
    w.wend = malloc(n * sizeof *w.wend);
    if (!w.cp || !w.cls || !w.boff || !w.norm || !w.wend) {
        st = shoal_fail(SHOAL_E_NOMEM, "tokenizer: out of memory for %zu bytes of text", n);
        goto out;
    }
    /* decode leniently and re-encode, as the reference does before splitting */
    size_t ncp = 0, nb = 0;
    for (size_t i = 0; i < n;) {
        size_t used;
        uint32_t c = shoal_utf8_decode(s + i, n - i, &used);
        w.cp[ncp] = c;
        w.cls[ncp] = (uint8_t)shoal_unicode_class(c);
        w.boff[ncp] = (uint32_t)nb;
        ncp++;
        if (used == 1 && c < 0x80) {
            w.norm[nb++] = (uint8_t)c;
        } else {
            nb += shoal_utf8_encode(c, w.norm + nb);
        }
        i += used;
    }
    w.boff[ncp] = (uint32_t)nb;

    switch (t->pre) {
    case TOK_PRE_SMOLLM: split_smollm(&w, 0, ncp); break;
    case TOK_PRE_LLAMA3: split_llama3(&w, 0, ncp); break;
    default: split_gpt2(&w, 0, ncp); break;
    }

    size_t start = 0;
    for (size_t k = 0; k < w.n_words && !st; k++) {
        size_t end = w.wend[k];
        st = bpe_word(t, &w, w.norm + w.boff[start], w.boff[end] - w.boff[start], o);
        start = end;
    }
out:
    free(w.cp);
    free(w.cls);
    free(w.boff);
    free(w.norm);
    free(w.wend);
    free(w.id);
    free(w.prev);
    free(w.next);
    free(w.heap);
    free(w.enc);
    return st;
}
