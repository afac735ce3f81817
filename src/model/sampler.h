/* sampler.h — next-token selection from a logits vector: greedy, or temperature sampling after
 * repeat penalties and top-k / top-p / min-p filtering, with a seeded RNG whose state can be saved.
 *
 * Pipeline (the order llama.cpp's default chain uses, so the same parameters mean the same thing):
 *   1. penalties on the tokens seen in the last `repeat_last_n` accepted tokens, each distinct
 *      token once:  l > 0 ? l / repeat_penalty : l * repeat_penalty,  then
 *      l -= count * frequency_penalty + presence_penalty  (count = occurrences in the window)
 *   2. top-k: keep the k largest logits                          (top_k <= 0 or >= n: off)
 *   3. top-p: keep the smallest prefix, in descending order, whose softmax mass (temperature 1,
 *      over the survivors of 2) reaches top_p                     (top_p >= 1: off)
 *   4. min-p: keep logits with p >= min_p * p_max, i.e. l >= l_max + log(min_p)  (min_p <= 0: off)
 *   5. temperature: draw from softmax(l / temperature) over the survivors.
 * temperature <= 0 means greedy: the argmax of the penalised logits (steps 2-4 cannot change it).
 * At least one candidate always survives. Ties between equal logits break towards the lower id,
 * so every step has a unique answer and results do not depend on the selection algorithm.
 * NaN logits are treated as -inf; if every candidate is -inf, the lowest id among them wins.
 *
 * Randomness: xoshiro256** (Blackman & Vigna, 2018; period 2^256 - 1), seeded by expanding the
 * 64-bit seed with splitmix64; each draw uses the top 53 bits of one output as a double in [0, 1).
 * One draw per sampled token, none for greedy. The same seed, logits and accepted tokens give the
 * same tokens on every machine (the arithmetic is float/double with no reassociation-sensitive
 * reductions across threads).
 *
 * The logits are only read (they may live in a guest's linear memory); the sampler works in its
 * own scratch, sized for n_vocab at creation. A sampler is not thread-safe: one per sequence. */
#ifndef SHOAL_MODEL_SAMPLER_H
#define SHOAL_MODEL_SAMPLER_H

#include "shoal.h"

#include <stddef.h>
#include <stdint.h>

typedef struct shoal_sampler_params {
    float temperature;       /* <= 0: greedy */
    int32_t top_k;           /* <= 0: off */
    float top_p;             /* >= 1: off; must be > 0 */
    float min_p;             /* <= 0: off; must be <= 1 */
    float repeat_penalty;    /* 1: off; must be > 0 */
    float frequency_penalty; /* 0: off */
    float presence_penalty;  /* 0: off */
    int32_t repeat_last_n;   /* tokens of history the penalties look at; 0: none */
    uint64_t seed;
} shoal_sampler_params_t;

typedef struct shoal_sampler shoal_sampler_t;

/* llama.cpp's defaults: temperature 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat_penalty 1
 * (off), repeat_last_n 64, no frequency/presence penalty, seed 0. */
void shoal_sampler_params_init(shoal_sampler_params_t *p);

/* SHOAL_E_INVALID for n_vocab < 1 or out-of-range parameters (message names the field). */
shoal_status_t shoal_sampler_new(const shoal_sampler_params_t *p, int32_t n_vocab, shoal_sampler_t **out);
void shoal_sampler_delete(shoal_sampler_t *s);

const shoal_sampler_params_t *shoal_sampler_params(const shoal_sampler_t *s);
/* Whether the next sample is the plain argmax of the logits (lowest id on ties): temperature 0
 * and no penalty in effect. Callers may then take the argmax where the logits are (a GPU). */
bool shoal_sampler_is_argmax(const shoal_sampler_t *s);
int32_t shoal_sampler_n_vocab(const shoal_sampler_t *s);

/* Picks the next token from logits[0..n_vocab). Draws from the RNG only when temperature > 0.
 * Does not record the token: call shoal_sampler_accept with what the sequence actually got
 * (the sampled token, or a forced/prompt token). SHOAL_E_INVALID if n_vocab differs from the
 * sampler's. */
shoal_status_t shoal_sampler_sample(shoal_sampler_t *s, const float *logits, int32_t n_vocab, int32_t *out_token);
/* Appends a token to the penalty history (ignored when repeat_last_n is 0). Out-of-range ids
 * give SHOAL_E_INVALID and change nothing. */
shoal_status_t shoal_sampler_accept(shoal_sampler_t *s, int32_t token);
/* Clears the history and restarts the RNG from `seed`. */
void shoal_sampler_reset(shoal_sampler_t *s, uint64_t seed);

/* Snapshot of everything that decides future draws: parameters, RNG state and history.
 * The blob is little-endian, versioned, position independent; load checks magic, version,
 * n_vocab and every length (SHOAL_E_FORMAT on a bad blob, nothing changed on failure).
 * A loaded sampler continues exactly as the saved one would have. */
size_t shoal_sampler_state_size(const shoal_sampler_t *s);
shoal_status_t shoal_sampler_state_save(const shoal_sampler_t *s, void *buf, size_t cap, size_t *written);
shoal_status_t shoal_sampler_state_load(shoal_sampler_t *s, const void *buf, size_t len);

/* The RNG, exposed for tests and for guests that want the same generator. */
typedef struct shoal_rng {
    uint64_t s[4];
} shoal_rng_t;
void shoal_rng_seed(shoal_rng_t *r, uint64_t seed);
uint64_t shoal_rng_next(shoal_rng_t *r);
double shoal_rng_uniform(shoal_rng_t *r); /* [0, 1) */

#endif
