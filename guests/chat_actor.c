/* chat_actor.c — a chat as a Shoal actor: each message is a user turn, each reply the model's
 * answer (wasi-nn, greedy). The conversation lives in the actor's memory and its KV cache in the
 * host's wasi-nn context, so `:save` / `:load` / `:fork` in `shoal actor` carry both: a restored
 * actor continues the conversation without re-reading it.
 *   shoal actor --nn-preload default:GGML:AUTO:model.gguf chat_actor.wasm
 * SHOAL_GUEST_REACTOR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal_actor.h"
#include "wasi_nn.h"

static nn_graph_t graph;
static nn_ctx_t ctx;
static char *history;
static size_t hist_len, hist_cap;
static uint8_t answer[8192];

static int append(const char *s)
{
    size_t n = strlen(s);
    if (hist_len + n + 1 > hist_cap) {
        size_t cap = (hist_len + n + 1) * 2;
        char *h = realloc(history, cap);
        if (!h) return -1;
        history = h;
        hist_cap = cap;
    }
    memcpy(history + hist_len, s, n + 1);
    hist_len += n;
    return 0;
}

SHOAL_ACTOR_EXPORT("shoal_actor_init") int32_t actor_init(void)
{
    const char *cfg = "{\"ctx-size\": 2048, \"n-predict\": 128, \"temp\": 0}";
    int32_t e = nn_load_by_name_with_config("default", 7, cfg, strlen(cfg), &graph);
    if (!e) e = nn_init_execution_context(graph, &ctx);
    if (!e) e = append("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n");
    return e;
}

SHOAL_ACTOR_EXPORT("shoal_actor_handle") int32_t actor_handle(const char *msg, uint32_t len)
{
    (void)len; /* messages arrive NUL-terminated */
    size_t start = hist_len;
    if (append("<|im_start|>user\n") || append(msg) || append("<|im_end|>\n<|im_start|>assistant\n")) return -1;
    int32_t e = nn_set_input_bytes(ctx, 0, history, (uint32_t)hist_len);
    if (!e) e = nn_compute(ctx);
    uint32_t n = 0;
    if (!e) e = nn_get_output(ctx, 0, answer, sizeof answer - 1, &n);
    if (e) {
        hist_len = start; /* the turn did not happen */
        history[hist_len] = '\0';
        return -e;
    }
    answer[n] = '\0';
    if (append((const char *)answer) || append("<|im_end|>\n")) return -1;
    return shoal_actor_set_reply(answer, n);
}
