/* sampler.c — penalties, top-k / top-p / min-p, temperature and a saveable xoshiro256** RNG. */
#include "model/sampler.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    float l;    /* (penalised) logit */
    int32_t id;
    float w;    /* softmax weight exp(l - l_max), filled when needed */
} cand_t;

struct shoal_sampler {
    shoal_sampler_params_t p;
    int32_t n_vocab;
    shoal_rng_t rng;
    /* Penalty history: ring of the last repeat_last_n accepted tokens. */
    int32_t *hist;
    int32_t hist_cap, hist_head, hist_len;
    /* Scratch, sized n_vocab: candidates, and per-token occurrence counts (kept all-zero
     * between calls so a penalty pass costs O(history), not O(vocab)). */
    cand_t *cand;
    int32_t *count;
};

/* ---------------------------------------------------------------- RNG */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void shoal_rng_seed(shoal_rng_t *r, uint64_t seed)
{
    /* splitmix64 never yields four zero words, so the xoshiro state is never all-zero. */
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t shoal_rng_next(shoal_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double shoal_rng_uniform(shoal_rng_t *r) { return (double)(shoal_rng_next(r) >> 11) * 0x1.0p-53; }

/* ---------------------------------------------------------------- parameters */

void shoal_sampler_params_init(shoal_sampler_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.0f;
    p->repeat_last_n = 64;
}

static shoal_status_t check_params(const shoal_sampler_params_t *p)
{
    if (!(p->temperature == p->temperature))
        return shoal_fail(SHOAL_E_INVALID, "sampler: temperature is NaN");
    if (!(p->top_p > 0.0f))
        return shoal_fail(SHOAL_E_INVALID, "sampler: top_p must be > 0 (got %g)", (double)p->top_p);
    if (!(p->min_p <= 1.0f) || p->min_p != p->min_p)
        return shoal_fail(SHOAL_E_INVALID, "sampler: min_p must be <= 1 (got %g)", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f) || isinf(p->repeat_penalty))
        return shoal_fail(SHOAL_E_INVALID, "sampler: repeat_penalty must be finite and > 0 (got %g)",
                          (double)p->repeat_penalty);
    if (!isfinite(p->frequency_penalty) || !isfinite(p->presence_penalty))
        return shoal_fail(SHOAL_E_INVALID, "sampler: frequency/presence penalties must be finite");
    if (p->repeat_last_n < 0 || p->repeat_last_n > (1 << 24))
        return shoal_fail(SHOAL_E_INVALID, "sampler: repeat_last_n must be in 0..%d (got %d)", 1 << 24,
                          p->repeat_last_n);
    return SHOAL_OK;
}

shoal_status_t shoal_sampler_new(const shoal_sampler_params_t *p, int32_t n_vocab, shoal_sampler_t **out)
{
    if (!p || !out)
        return shoal_fail(SHOAL_E_INVALID, "sampler: NULL argument");
    if (n_vocab < 1)
        return shoal_fail(SHOAL_E_INVALID, "sampler: n_vocab must be >= 1 (got %d)", n_vocab);
    shoal_status_t st = check_params(p);
    if (st)
        return st;
    shoal_sampler_t *s = calloc(1, sizeof *s);
    if (!s)
        return shoal_fail(SHOAL_E_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->n_vocab = n_vocab;
    s->hist_cap = p->repeat_last_n;
    s->cand = malloc((size_t)n_vocab * sizeof *s->cand);
    s->count = calloc((size_t)n_vocab, sizeof *s->count);
    s->hist = s->hist_cap ? malloc((size_t)s->hist_cap * sizeof *s->hist) : NULL;
    if (!s->cand || !s->count || (s->hist_cap && !s->hist)) {
        shoal_sampler_delete(s);
        return shoal_fail(SHOAL_E_NOMEM, "sampler: out of memory for vocab %d", n_vocab);
    }
    shoal_rng_seed(&s->rng, p->seed);
    *out = s;
    return SHOAL_OK;
}

void shoal_sampler_delete(shoal_sampler_t *s)
{
    if (!s)
        return;
    free(s->cand);
    free(s->count);
    free(s->hist);
    free(s);
}

const shoal_sampler_params_t *shoal_sampler_params(const shoal_sampler_t *s) { return &s->p; }
int32_t shoal_sampler_n_vocab(const shoal_sampler_t *s) { return s->n_vocab; }

void shoal_sampler_reset(shoal_sampler_t *s, uint64_t seed)
{
    s->hist_head = s->hist_len = 0;
    s->p.seed = seed;
    shoal_rng_seed(&s->rng, seed);
}

shoal_status_t shoal_sampler_accept(shoal_sampler_t *s, int32_t token)
{
    if (token < 0 || token >= s->n_vocab)
        return shoal_fail(SHOAL_E_INVALID, "sampler: token %d outside vocab of %d", token, s->n_vocab);
    if (s->hist_cap == 0)
        return SHOAL_OK;
    s->hist[s->hist_head] = token;
    s->hist_head = (s->hist_head + 1) % s->hist_cap;
    if (s->hist_len < s->hist_cap)
        s->hist_len++;
    return SHOAL_OK;
}

/* ---------------------------------------------------------------- selection helpers */

/* Total order: larger logit first, then lower id. */
static inline int better(const cand_t *a, const cand_t *b) { return a->l > b->l || (a->l == b->l && a->id < b->id); }

static inline void swap_cand(cand_t *a, cand_t *b)
{
    cand_t t = *a;
    *a = *b;
    *b = t;
}

/* Orders c[lo], c[mid], c[hi-1] and returns the median, the pivot of both selections below. */
static cand_t median3_pivot(cand_t *c, size_t lo, size_t mid, size_t hi)
{
    if (better(&c[mid], &c[lo]))
        swap_cand(&c[mid], &c[lo]);
    if (better(&c[hi - 1], &c[lo]))
        swap_cand(&c[hi - 1], &c[lo]);
    if (better(&c[hi - 1], &c[mid]))
        swap_cand(&c[hi - 1], &c[mid]);
    return c[mid];
}

/* Rearranges c[0..n) so its best m elements occupy c[0..m) (in no particular order).
 * Quickselect with a median-of-three pivot: O(n) on average, no allocation. */
static void select_best(cand_t *c, size_t n, size_t m)
{
    size_t lo = 0, hi = n; /* the m-th boundary lies in [lo, hi) */
    if (m == 0 || m >= n)
        return;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        cand_t pivot = median3_pivot(c, lo, mid, hi);
        /* Partition: [lo, i) better than pivot, [i, hi) not better. Because the order is total
         * and the pivot itself is "not better", the left part never takes everything. */
        size_t i = lo;
        for (size_t j = lo; j < hi; j++)
            if (better(&c[j], &pivot))
                swap_cand(&c[i++], &c[j]);
        /* place the pivot at i so the recursion always shrinks */
        for (size_t j = i; j < hi; j++)
            if (c[j].id == pivot.id) {
                swap_cand(&c[i], &c[j]);
                break;
            }
        if (i == m || i + 1 == m)
            return;
        if (i > m)
            hi = i;
        else
            lo = i + 1;
    }
}

/* ---------------------------------------------------------------- sampling */

static int has_penalties(const shoal_sampler_t *s)
{
    return s->hist_len > 0 &&
           (s->p.repeat_penalty != 1.0f || s->p.frequency_penalty != 0.0f || s->p.presence_penalty != 0.0f);
}

/* Copies logits into the candidate scratch (NaN -> -inf) and applies the penalties. */
static void load_candidates(shoal_sampler_t *s, const float *logits)
{
    int32_t n = s->n_vocab;
    for (int32_t i = 0; i < n; i++) {
        float l = logits[i];
        s->cand[i].l = l == l ? l : -INFINITY;
        s->cand[i].id = i;
    }
    if (!has_penalties(s))
        return;
    for (int32_t k = 0; k < s->hist_len; k++)
        s->count[s->hist[k]]++;
    for (int32_t k = 0; k < s->hist_len; k++) {
        int32_t t = s->hist[k];
        int32_t c = s->count[t];
        if (c == 0)
            continue; /* already penalised: each distinct token once */
        float l = s->cand[t].l;
        l = l > 0.0f ? l / s->p.repeat_penalty : l * s->p.repeat_penalty;
        l -= (float)c * s->p.frequency_penalty + s->p.presence_penalty;
        s->cand[t].l = l;
        s->count[t] = 0;
    }
}

bool shoal_sampler_is_argmax(const shoal_sampler_t *s)
{
    return s->p.temperature <= 0.0f && !has_penalties(s);
}

static int32_t argmax_raw(const float *logits, int32_t n)
{
    int32_t best = 0;
    float bl = logits[0] == logits[0] ? logits[0] : -INFINITY;
    for (int32_t i = 1; i < n; i++)
        if (logits[i] > bl) { /* strict: ties keep the lower id; NaN never compares greater */
            bl = logits[i];
            best = i;
        }
    return best;
}

static size_t argbest(const cand_t *c, size_t n)
{
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (better(&c[i], &c[b]))
            b = i;
    return b;
}

/* Moves the best k of c[0..n) to c[0..k) (unordered). Small k: one pass with a min-heap of the
 * k best so far, where most candidates cost a single comparison with the heap's worst. */
static void top_k(cand_t *c, size_t n, size_t k)
{
    if (k >= n)
        return;
    if (k > 1024 || k > n / 8) {
        select_best(c, n, k);
        return;
    }
    /* min-heap over c[0..k): every parent is worse than its children, the root is the worst kept */
    for (size_t i = k / 2; i-- > 0;)
        for (size_t j = i;;) {
            size_t m = j, l = 2 * j + 1, r = l + 1;
            if (l < k && better(&c[m], &c[l]))
                m = l;
            if (r < k && better(&c[m], &c[r]))
                m = r;
            if (m == j)
                break;
            swap_cand(&c[j], &c[m]);
            j = m;
        }
    for (size_t i = k; i < n; i++) {
        if (!better(&c[i], &c[0]))
            continue;
        c[0] = c[i];
        for (size_t j = 0;;) {
            size_t m = j, l = 2 * j + 1, r = l + 1;
            if (l < k && better(&c[m], &c[l]))
                m = l;
            if (r < k && better(&c[m], &c[r]))
                m = r;
            if (m == j)
                break;
            swap_cand(&c[j], &c[m]);
            j = m;
        }
    }
}

/* top-p: the smallest set of best candidates whose weight reaches `target`, found without
 * sorting by a quickselect that partitions by the total order and descends by mass. Returns its
 * size; those candidates end up in c[0..size). Expected O(n). */
static size_t top_p_select(cand_t *c, size_t n, double target)
{
    size_t lo = 0, hi = n;
    double acc = 0.0; /* mass of c[0..lo), all better than anything in [lo, n) */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        cand_t pivot = median3_pivot(c, lo, mid, hi);
        size_t i = lo;
        double upper = 0.0;
        for (size_t j = lo; j < hi; j++)
            if (better(&c[j], &pivot)) {
                upper += c[j].w;
                swap_cand(&c[i++], &c[j]);
            }
        for (size_t j = i; j < hi; j++)
            if (c[j].id == pivot.id) {
                swap_cand(&c[i], &c[j]);
                break;
            }
        if (acc + upper >= target) {
            hi = i; /* the cut is among the better ones */
        } else {
            acc += upper + pivot.w;
            if (acc >= target)
                return i + 1;
            lo = i + 1;
        }
    }
    return lo ? lo : 1;
}

shoal_status_t shoal_sampler_sample(shoal_sampler_t *s, const float *logits, int32_t n_vocab, int32_t *out_token)
{
    if (!s || !logits || !out_token)
        return shoal_fail(SHOAL_E_INVALID, "sampler: NULL argument");
    if (n_vocab != s->n_vocab)
        return shoal_fail(SHOAL_E_INVALID, "sampler: logits have %d entries, sampler was made for %d", n_vocab,
                          s->n_vocab);
    const shoal_sampler_params_t *p = &s->p;

    if (p->temperature <= 0.0f && !has_penalties(s)) {
        *out_token = argmax_raw(logits, n_vocab);
        return SHOAL_OK;
    }
    load_candidates(s, logits);
    cand_t *c = s->cand;
    size_t n = (size_t)n_vocab;
    if (p->temperature <= 0.0f) {
        *out_token = c[argbest(c, n)].id;
        return SHOAL_OK;
    }
    if (p->top_k > 0 && (size_t)p->top_k < n) {
        top_k(c, n, (size_t)p->top_k);
        n = (size_t)p->top_k;
    }
    size_t best = argbest(c, n);
    float lmax = c[best].l;
    if (lmax == -INFINITY) { /* nothing has weight: the lowest id wins (it is the best) */
        *out_token = c[best].id;
        return SHOAL_OK;
    }
    if (p->top_p < 1.0f) {
        double z = 0.0;
        for (size_t i = 0; i < n; i++) {
            c[i].w = expf(c[i].l - lmax);
            z += c[i].w;
        }
        n = top_p_select(c, n, (double)p->top_p * z);
    }
    if (p->min_p > 0.0f) {
        /* p_i >= min_p * p_max  <=>  l_i >= l_max + log(min_p); the best always stays */
        float thr = lmax + logf(p->min_p);
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (c[i].l >= thr)
                c[k++] = c[i];
        n = k ? k : 1;
    }
    /* temperature: draw from softmax(l / T) over c[0..n) */
    float inv_t = 1.0f / p->temperature;
    double w = 0.0;
    for (size_t i = 0; i < n; i++) {
        c[i].w = expf((c[i].l - lmax) * inv_t);
        w += c[i].w;
    }
    double r = shoal_rng_uniform(&s->rng) * w, acc = 0.0;
    size_t pick = n;
    for (size_t i = 0; i < n; i++) {
        acc += c[i].w;
        if (r < acc) {
            pick = i;
            break;
        }
    }
    if (pick == n) { /* rounding left r at the very end: take the last candidate with weight */
        pick = n - 1;
        while (pick > 0 && c[pick].w == 0.0f)
            pick--;
    }
    *out_token = c[pick].id;
    return SHOAL_OK;
}

/* ---------------------------------------------------------------- state */

#define STATE_MAGIC 0x504D5353u /* "SSMP" */
#define STATE_VERSION 1u
#define STATE_FIXED (4 + 4 + 4 + 9 * 4 + 8 + 4 * 8 + 4)

static void put32(uint8_t **w, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        *(*w)++ = (uint8_t)(v >> (8 * i));
}
static void put64(uint8_t **w, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        *(*w)++ = (uint8_t)(v >> (8 * i));
}
static void putf(uint8_t **w, float f)
{
    uint32_t v;
    memcpy(&v, &f, 4);
    put32(w, v);
}
static uint32_t get32(const uint8_t **r)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)(*r)[i] << (8 * i);
    *r += 4;
    return v;
}
static uint64_t get64(const uint8_t **r)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)(*r)[i] << (8 * i);
    *r += 8;
    return v;
}
static float getf(const uint8_t **r)
{
    uint32_t v = get32(r);
    float f;
    memcpy(&f, &v, 4);
    return f;
}

size_t shoal_sampler_state_size(const shoal_sampler_t *s) { return STATE_FIXED + 4 * (size_t)s->hist_len; }

shoal_status_t shoal_sampler_state_save(const shoal_sampler_t *s, void *buf, size_t cap, size_t *written)
{
    size_t need = shoal_sampler_state_size(s);
    if (!buf || cap < need)
        return shoal_fail(SHOAL_E_LIMIT, "sampler: state needs %zu bytes, buffer has %zu", need, buf ? cap : 0);
    uint8_t *w = buf;
    put32(&w, STATE_MAGIC);
    put32(&w, STATE_VERSION);
    put32(&w, (uint32_t)s->n_vocab);
    putf(&w, s->p.temperature);
    put32(&w, (uint32_t)s->p.top_k);
    putf(&w, s->p.top_p);
    putf(&w, s->p.min_p);
    putf(&w, s->p.repeat_penalty);
    putf(&w, s->p.frequency_penalty);
    putf(&w, s->p.presence_penalty);
    put32(&w, (uint32_t)s->p.repeat_last_n);
    put32(&w, 0); /* reserved */
    put64(&w, s->p.seed);
    for (int i = 0; i < 4; i++)
        put64(&w, s->rng.s[i]);
    put32(&w, (uint32_t)s->hist_len);
    int32_t first = (s->hist_head - s->hist_len + s->hist_cap) % (s->hist_cap ? s->hist_cap : 1);
    for (int32_t k = 0; k < s->hist_len; k++)
        put32(&w, (uint32_t)s->hist[(first + k) % s->hist_cap]);
    if (written)
        *written = need;
    return SHOAL_OK;
}

shoal_status_t shoal_sampler_state_load(shoal_sampler_t *s, const void *buf, size_t len)
{
    if (!s || !buf)
        return shoal_fail(SHOAL_E_INVALID, "sampler: NULL argument");
    if (len < STATE_FIXED)
        return shoal_fail(SHOAL_E_FORMAT, "sampler state: %zu bytes, need at least %d", len, STATE_FIXED);
    const uint8_t *r = buf;
    uint32_t magic = get32(&r), version = get32(&r);
    if (magic != STATE_MAGIC)
        return shoal_fail(SHOAL_E_FORMAT, "sampler state: bad magic 0x%08x", magic);
    if (version != STATE_VERSION)
        return shoal_fail(SHOAL_E_FORMAT, "sampler state: version %u, this build reads %u", version, STATE_VERSION);
    int32_t n_vocab = (int32_t)get32(&r);
    if (n_vocab != s->n_vocab)
        return shoal_fail(SHOAL_E_FORMAT, "sampler state: saved for vocab %d, sampler has %d", n_vocab, s->n_vocab);
    shoal_sampler_params_t p;
    memset(&p, 0, sizeof p);
    p.temperature = getf(&r);
    p.top_k = (int32_t)get32(&r);
    p.top_p = getf(&r);
    p.min_p = getf(&r);
    p.repeat_penalty = getf(&r);
    p.frequency_penalty = getf(&r);
    p.presence_penalty = getf(&r);
    p.repeat_last_n = (int32_t)get32(&r);
    (void)get32(&r);
    p.seed = get64(&r);
    shoal_rng_t rng;
    for (int i = 0; i < 4; i++)
        rng.s[i] = get64(&r);
    uint32_t hl = get32(&r);
    shoal_status_t st = check_params(&p);
    if (st)
        return shoal_fail_wrap(SHOAL_E_FORMAT, "sampler state");
    if ((rng.s[0] | rng.s[1] | rng.s[2] | rng.s[3]) == 0)
        return shoal_fail(SHOAL_E_FORMAT, "sampler state: all-zero RNG state");
    if (hl > (uint32_t)p.repeat_last_n || len != STATE_FIXED + 4 * (size_t)hl)
        return shoal_fail(SHOAL_E_FORMAT, "sampler state: history of %u tokens (window %d) in %zu bytes", hl,
                          p.repeat_last_n, len);
    const uint8_t *toks = r;
    for (uint32_t k = 0; k < hl; k++) {
        int32_t t = (int32_t)get32(&r);
        if (t < 0 || t >= s->n_vocab)
            return shoal_fail(SHOAL_E_FORMAT, "sampler state: history token %d outside vocab", t);
    }
    int32_t *hist = s->hist;
    if (p.repeat_last_n != s->hist_cap) {
        hist = p.repeat_last_n ? malloc((size_t)p.repeat_last_n * sizeof *hist) : NULL;
        if (p.repeat_last_n && !hist)
            return shoal_fail(SHOAL_E_NOMEM, "sampler state: out of memory");
        free(s->hist);
    }
    /* commit */
    s->hist = hist;
    s->hist_cap = p.repeat_last_n;
    s->p = p;
    s->rng = rng;
    r = toks;
    for (uint32_t k = 0; k < hl; k++)
        s->hist[k] = (int32_t)get32(&r);
    s->hist_len = (int32_t)hl;
    s->hist_head = s->hist_cap ? (int32_t)(hl % (uint32_t)s->hist_cap) : 0;
    return SHOAL_OK;
}
