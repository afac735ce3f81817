/* bench_llm_actor.c — an actor for bench_snapshot's whole-actor mode: "prefill N" evaluates N
 * fixed pseudo-random tokens into its session (the work a restore replaces); "next" evaluates
 * one more token and answers with its greedy top-1 and a hash of the logits' bytes, so two actors
 * can be compared bit for bit; "gen N" decodes N greedy tokens with llm_eval_greedy (the Wasm
 * boundary benchmark's guest loop) and answers with a hash of their ids; "kvmode N" reopens the
 * session with an N-position KV cache in the actor's own linear memory (llm_open_kv).
 * SHOAL_GUEST_REACTOR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal_actor.h"
#include "shoal_guest.h"

#define N_CTX 4160

static int32_t g_h = -1;
static shoal_llm_info_t g_info;
static float *g_logits;
static int32_t *g_ids;
static uint64_t g_rng = 0x2545F4914F6CDD1Dull;
static char g_reply[128];

static int32_t next_id(void)
{
    g_rng ^= g_rng << 13, g_rng ^= g_rng >> 7, g_rng ^= g_rng << 17;
    return (int32_t)(100 + g_rng % (uint64_t)(g_info.n_vocab - 100));
}

SHOAL_ACTOR_EXPORT("shoal_actor_init") int32_t actor_init(void)
{
    if (shoal_llm_open("default", 7, N_CTX, &g_h) != 0 || shoal_llm_info(g_h, &g_info) != 0) {
        char msg[512];
        shoal_last_error(msg, sizeof msg);
        fprintf(stderr, "bench_llm_actor: %s\n", msg);
        return -1;
    }
    g_logits = malloc(sizeof(float) * (size_t)g_info.n_vocab);
    g_ids = malloc(sizeof(int32_t) * N_CTX);
    return g_logits && g_ids ? 0 : -2;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* "gen N": N greedy tokens, each chosen by the host (on a GPU, on the device) and fed back: the
 * decode loop of a real guest, for measuring what the Wasm boundary costs per token. */
static int32_t gen(int n)
{
    if (n < 1 || g_info.n_past + n > N_CTX) return -2;
    int32_t tok = g_ids[0];
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        if (shoal_llm_eval_greedy(g_h, &tok, 1, &tok) != 0) return -3;
        h = fnv(h, &tok, sizeof tok);
    }
    g_ids[0] = tok;
    shoal_llm_info(g_h, &g_info);
    int k = snprintf(g_reply, sizeof g_reply, "n_past=%d last=%d ids_fnv=%016llx", g_info.n_past, (int)tok,
                     (unsigned long long)h);
    return shoal_actor_set_reply(g_reply, (size_t)k);
}

/* "kvmode N": the session again, its cache now in this actor's memory (a fresh sequence). */
static int32_t kvmode(int n_ctx)
{
    uint64_t bytes = 0;
    if (n_ctx < 1 || n_ctx > N_CTX || shoal_llm_kv_bytes("default", 7, n_ctx, &bytes) || bytes > 0xFFFFFFF0u) return -2;
    void *kv = aligned_alloc(16, (size_t)bytes);
    if (!kv || shoal_llm_close(g_h) || shoal_llm_open_kv("default", 7, n_ctx, kv, (uint32_t)bytes, &g_h) ||
        shoal_llm_info(g_h, &g_info))
        return -3;
    int k = snprintf(g_reply, sizeof g_reply, "kv in guest memory: %llu bytes at 0x%lx, n_ctx %d",
                     (unsigned long long)bytes, (unsigned long)(uintptr_t)kv, g_info.n_ctx);
    return shoal_actor_set_reply(g_reply, (size_t)k);
}

SHOAL_ACTOR_EXPORT("shoal_actor_handle") int32_t actor_handle(const char *msg, uint32_t len)
{
    (void)len;
    int n = 1;
    if (!strncmp(msg, "kvmode ", 7)) return kvmode(atoi(msg + 7));
    if (!strncmp(msg, "gen ", 4)) return gen(atoi(msg + 4));
    if (!strncmp(msg, "prefill ", 8)) n = atoi(msg + 8);
    else if (strcmp(msg, "next")) return -1;
    if (n < 1 || n > N_CTX) return -2;
    for (int i = 0; i < n; i++) g_ids[i] = next_id();
    if (shoal_llm_eval(g_h, g_ids, (uint32_t)n, g_logits, SHOAL_LLM_LOGITS_LAST) != 0) return -3;
    uint64_t h = fnv(1469598103934665603ull, g_logits, sizeof(float) * (size_t)g_info.n_vocab);
    int top = 0;
    for (int i = 1; i < g_info.n_vocab; i++)
        if (g_logits[i] > g_logits[top]) top = i;
    g_ids[0] = top; /* where "gen" continues from */
    shoal_llm_info(g_h, &g_info);
    int k = snprintf(g_reply, sizeof g_reply, "n_past=%d top=%d logits_fnv=%016llx", g_info.n_past, top,
                     (unsigned long long)h);
    return shoal_actor_set_reply(g_reply, (size_t)k);
}
