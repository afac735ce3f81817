/* llm_chat_actor.c — a chat actor over the token-level LLM API: each message is a user turn;
 * the reply is the assistant's answer, sampled (temperature, top-p, repeat penalty, seeded RNG)
 * in this guest with the host writing logits into its memory. Its state between messages is
 * spread over everything a snapshot must carry: the conversation so far in linear memory, the
 * KV cache and the sampler's RNG on the host (the "llm" layer), the stack pointer.
 *
 *   shoal actor --nn-preload default:GGML:AUTO:model.gguf llm_chat_actor.wasm
 *
 * Replies: "tokens=<id,id,...> n_past=<n> text=<answer>".
 * SHOAL_GUEST_REACTOR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal_actor.h"
#include "shoal_guest.h"

#define MAX_NEW 48
#define N_CTX 2048

static int32_t g_h = -1;
static shoal_llm_info_t g_info;
static float *g_logits;
static int32_t g_ids[N_CTX];
static char g_reply[16384];
static char g_text[8192];
static unsigned g_turns;

/* Tokenises `text` (special tokens parsed) and appends it to the sequence. */
static int32_t feed(const char *text, int32_t mode)
{
    uint32_t n = 0;
    int32_t st = shoal_llm_tokenize(g_h, text, (uint32_t)strlen(text), SHOAL_TOKENIZE_SPECIAL, g_ids, N_CTX, &n);
    if (st == 0 && n > 0) st = shoal_llm_eval(g_h, g_ids, n, g_logits, mode);
    return st;
}

SHOAL_ACTOR_EXPORT("shoal_actor_init") int32_t actor_init(void)
{
    if (shoal_llm_open("default", 7, N_CTX, &g_h) != 0) return -1;
    if (shoal_llm_info(g_h, &g_info) != 0) return -2;
    g_logits = malloc(sizeof(float) * (size_t)g_info.n_vocab);
    if (!g_logits) return -3;
    shoal_sampler_params_t sp = {.temperature = 0.8f, .top_p = 0.95f, .min_p = 0.0f, .repeat_penalty = 1.1f,
                                 .top_k = 40, .repeat_last_n = 64, .seed = 1234};
    if (shoal_llm_sampler_config(g_h, &sp) != 0) return -4;
    return feed("<|im_start|>system\nYou are a helpful AI assistant named SmolLM.<|im_end|>\n", SHOAL_LLM_LOGITS_NONE);
}

SHOAL_ACTOR_EXPORT("shoal_actor_handle") int32_t actor_handle(const char *msg, uint32_t len)
{
    if (len > 4000) return -1;
    snprintf(g_text, sizeof g_text, "<|im_start|>user\n%.*s<|im_end|>\n<|im_start|>assistant\n", (int)len, msg);
    if (feed(g_text, SHOAL_LLM_LOGITS_LAST) != 0) return -2;
    int32_t gen[MAX_NEW];
    int n = 0;
    while (n < MAX_NEW) {
        int32_t tok;
        if (shoal_llm_sample(g_h, g_logits, &tok) != 0) return -3;
        if (shoal_llm_is_eog(g_h, tok) == 1) break;
        gen[n++] = tok;
        if (shoal_llm_eval(g_h, &tok, 1, g_logits, SHOAL_LLM_LOGITS_LAST) != 0) return -4;
    }
    if (feed("<|im_end|>\n", SHOAL_LLM_LOGITS_NONE) != 0) return -5; /* close the turn */
    g_turns++;
    uint32_t w = 0;
    if (shoal_llm_detokenize(g_h, gen, (uint32_t)n, 0, g_text, sizeof g_text - 1, &w) != 0) return -6;
    g_text[w] = '\0';
    for (uint32_t i = 0; i < w; i++)
        if (g_text[i] == '\n') g_text[i] = ' '; /* one reply per line */
    shoal_llm_info(g_h, &g_info);
    size_t at = (size_t)snprintf(g_reply, sizeof g_reply, "tokens=");
    for (int i = 0; i < n; i++) at += (size_t)snprintf(g_reply + at, sizeof g_reply - at, "%s%d", i ? "," : "", gen[i]);
    at += (size_t)snprintf(g_reply + at, sizeof g_reply - at, " turn=%u n_past=%d text=%s", g_turns, g_info.n_past, g_text);
    return shoal_actor_set_reply(g_reply, at < sizeof g_reply ? at : sizeof g_reply - 1);
}
