/* nn_steps.c — a reactor for the nn snapshot test: one wasi-nn stream and one token-level
 * session advanced a token at a time by exported calls, so the host can snapshot their state
 * between steps and compare continuations.
 * SHOAL_GUEST_REACTOR */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "shoal_guest.h"
#include "wasi_nn.h"

static nn_graph_t g;
static nn_ctx_t c;
static int32_t h, pending;
static float *logits;
static int32_t n_vocab;
static const char prompt[] = "<|im_start|>user\nName three colours.<|im_end|>\n<|im_start|>assistant\n";

static int32_t argmax(void)
{
    int32_t best = 0;
    for (int32_t v = 1; v < n_vocab; v++)
        if (logits[v] > logits[best]) best = v;
    return best;
}

/* Returns 0, or the failing call's code (negated for the token API). */
__attribute__((export_name("setup"))) int32_t setup(void)
{
    const char *cfg = "{\"ctx-size\":256,\"temp\":0}";
    int32_t e = nn_load_by_name_with_config("default", 7, cfg, strlen(cfg), &g);
    if (!e) e = nn_init_execution_context(g, &c);
    if (!e) e = nn_set_input_bytes(c, 0, prompt, sizeof prompt - 1);
    if (e) return e;
    shoal_llm_info_t info;
    static int32_t ids[256];
    uint32_t n = 0;
    if ((e = shoal_llm_open("default", 7, 256, &h)) || (e = shoal_llm_info(h, &info))) return -e;
    n_vocab = info.n_vocab;
    logits = malloc(sizeof(float) * (size_t)n_vocab);
    if ((e = shoal_llm_tokenize(h, prompt, sizeof prompt - 1, SHOAL_TOKENIZE_SPECIAL, ids, 256, &n))) return -e;
    if ((e = shoal_llm_eval(h, ids, n, logits, SHOAL_LLM_LOGITS_LAST))) return -e;
    pending = argmax();
    return 0;
}

/* The next streamed piece's FNV-1a hash (never 0), or -code. */
__attribute__((export_name("step_nn"))) int32_t step_nn(void)
{
    int32_t e = nn_compute_single(c);
    if (e) return -e;
    uint8_t buf[256];
    uint32_t n = 0;
    if ((e = nn_get_output_single(c, 0, buf, sizeof buf, &n))) return -e;
    uint32_t hsh = 2166136261u;
    for (uint32_t i = 0; i < n; i++) hsh = (hsh ^ buf[i]) * 16777619u;
    return (int32_t)((hsh & 0x7FFFFFFFu) | 1u);
}

/* Feeds the pending token, returns the next greedy token (or -status). */
__attribute__((export_name("step_llm"))) int32_t step_llm(void)
{
    int32_t e = shoal_llm_eval(h, &pending, 1, logits, SHOAL_LLM_LOGITS_LAST);
    if (e) return -e;
    pending = argmax();
    return pending;
}

/* A second token-level session whose KV cache lives in this guest's memory (llm_open_kv), fed a
 * few tokens: its snapshot record is an offset into linear memory rather than rows. */
__attribute__((export_name("setup_kv"))) int32_t setup_kv(void)
{
    uint64_t bytes = 0;
    int32_t h2, e, ids[4] = {1, 520, 9531, 198}, next;
    if ((e = shoal_llm_kv_bytes("default", 7, 64, &bytes))) return -e;
    void *kv = aligned_alloc(16, (size_t)bytes);
    if (!kv) return -100;
    if ((e = shoal_llm_open_kv("default", 7, 64, kv, (uint32_t)bytes, &h2))) return -e;
    if ((e = shoal_llm_eval_greedy(h2, ids, 4, &next))) return -e;
    return 0;
}

__attribute__((export_name("get_pending"))) int32_t get_pending(void) { return pending; }
__attribute__((export_name("set_pending"))) void set_pending(int32_t t) { pending = t; }
