/* bench_boundary.c — what the Wasm boundary costs an LLM decode loop: the same greedy loop driven
 * by a Wasm guest (guests/bench_llm_actor.wasm, "gen N": N calls of shoal.llm_eval_greedy) and by
 * native C (shoal_engine_eval_greedy N times), on the same device, in one process, alternating.
 * Both start from the same 16 prompt tokens (the guest's xorshift sequence, reproduced here), so
 * both must produce the same token ids: the run checks that (hash of the ids) before printing the
 * ratio guest tokens/s ÷ native tokens/s.
 *
 * Guests' GPU sessions replay greedy steps as a CUDA graph; --graph does the same on the native
 * side (compare like with like).
 *
 * usage: bench_boundary GUEST.wasm [--model GGUF] [--device cpu|cuda] [--graph] [--tokens N] [--reps N] [--threads N] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/threadpool.h"
#include "backend/llm_engine.h"
#include "model/gguf.h"
#include "nn/nn_model.h"
#include "shoal.h"
#define BENCH_NAME "bench_boundary"
#include "bench_util.h"

#define PROMPT 16
#define N_CTX 4160 /* as the guest opens its session */

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ull;
    return h;
}

/* The native loop: the guest's prompt, its top-1, then n greedy steps. Returns ms of the steps. */
static double native_run(const shoal_llama_model_t *m, const shoal_engine_params_t *p, int n, uint64_t *ids_hash)
{
    shoal_engine_t *e;
    BENCH_CHECK(shoal_engine_new(m, p, &e));
    const int vocab = m->hp.vocab;
    int32_t ids[PROMPT];
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < PROMPT; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        ids[i] = (int32_t)(100 + rng % (uint64_t)(vocab - 100));
    }
    float *logits = malloc(sizeof(float) * (size_t)vocab);
    BENCH_CHECK(shoal_engine_eval(e, ids, PROMPT, 0, logits, SHOAL_LLAMA_LOGITS_LAST));
    int32_t tok = 0;
    for (int i = 1; i < vocab; i++)
        if (logits[i] > logits[tok]) tok = i;
    free(logits);
    uint64_t h = 1469598103934665603ull;
    double t = bench_now_ms();
    for (int i = 0; i < n; i++) {
        BENCH_CHECK(shoal_engine_eval_greedy(e, &tok, 1, PROMPT + i, &tok));
        h = fnv(h, &tok, sizeof tok);
    }
    t = bench_now_ms() - t;
    shoal_engine_delete(e);
    *ids_hash = h;
    return t;
}

static double guest_run(shoal_runtime_t *rt, shoal_module_t *mod, int n, uint64_t *ids_hash)
{
    shoal_instance_config_t ic;
    shoal_instance_config_init(&ic);
    shoal_instance_t *a;
    char *r;
    size_t rn;
    BENCH_CHECK(shoal_actor_start(rt, mod, &ic, &a));
    char msg[32];
    snprintf(msg, sizeof msg, "prefill %d", PROMPT);
    BENCH_CHECK(shoal_actor_send(a, msg, strlen(msg), &r, &rn));
    free(r);
    snprintf(msg, sizeof msg, "gen %d", n);
    double t = bench_now_ms();
    BENCH_CHECK(shoal_actor_send(a, msg, strlen(msg), &r, &rn));
    t = bench_now_ms() - t;
    const char *hx = strstr(r, "ids_fnv=");
    *ids_hash = hx ? strtoull(hx + 8, NULL, 16) : 0;
    free(r);
    shoal_instance_delete(a);
    return t;
}

int main(int argc, char **argv)
{
    const char *deps = getenv("SHOAL_DEPS");
    char model[4096];
    snprintf(model, sizeof model, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
    const char *guest = NULL;
    int n = 128, reps = 5, threads = 0;
    bool graph = false;
    shoal_device_kind_t device = SHOAL_DEVICE_CPU;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) snprintf(model, sizeof model, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--device") && i + 1 < argc) device = !strcmp(argv[++i], "cuda") ? SHOAL_DEVICE_CUDA : SHOAL_DEVICE_CPU;
        else if (!strcmp(argv[i], "--graph")) graph = true;
        else if (!guest && argv[i][0] != '-') guest = argv[i];
        else {
            fprintf(stderr, "usage: bench_boundary GUEST.wasm [--model GGUF] [--device cpu|cuda] [--graph] [--tokens N] [--reps N] [--threads N]\n");
            return 2;
        }
    }
    if (!guest || n < 1 || n > N_CTX - PROMPT - 1 || reps < 1 || reps > 64) {
        fprintf(stderr, "bench_boundary: need the guest (bench_llm_actor.wasm), 1 <= tokens <= %d, 1 <= reps <= 64\n",
                N_CTX - PROMPT - 1);
        return 2;
    }
    shoal_runtime_config_t rc;
    shoal_runtime_config_init(&rc);
    rc.device = device;
    rc.threads = threads;
    shoal_runtime_t *rt;
    shoal_module_t *mod;
    BENCH_CHECK(shoal_runtime_new(&rc, &rt));
    BENCH_CHECK(shoal_runtime_preload_model(rt, "default", model));
    BENCH_CHECK(shoal_module_load(rt, guest, &mod));
    /* The native side maps the model again (same bytes) and, on the CPU, borrows the runtime's own
     * worker pool: a second pool's spinning workers would steal cores from whichever loop runs. */
    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    BENCH_CHECK(shoal_gguf_open(model, &g));
    BENCH_CHECK(shoal_llama_model_new(g, &m));
    shoal_engine_params_t p;
    shoal_engine_params_init(&p);
    p.device = device;
    p.n_ctx = N_CTX;
    p.cuda_graph = graph;
    if (device == SHOAL_DEVICE_CPU) p.pool = shoal_nn_pool(rt);
    printf("bench_boundary: %s, device %s (%s), %d greedy tokens after a %d-token prompt, %d reps, alternating%s\n",
           model, device == SHOAL_DEVICE_CUDA ? "cuda" : "cpu", shoal_runtime_device(rt), n, PROMPT, reps,
           graph ? ", native side on a CUDA graph" : "");
    double tg[64], tn[64];
    uint64_t hg = 0, hn = 0;
    /* One untimed round of each warms caches, the GPU weight upload and the JIT'd guest. */
    guest_run(rt, mod, 8, &hg);
    native_run(m, &p, 8, &hn);
    for (int r = 0; r < reps; r++) {
        tg[r] = guest_run(rt, mod, n, &hg);
        tn[r] = native_run(m, &p, n, &hn);
        if (hg != hn) {
            fprintf(stderr, "bench_boundary: the guest and the native loop produced different tokens (%016llx vs %016llx)\n",
                    (unsigned long long)hg, (unsigned long long)hn);
            return 1;
        }
    }
    double mg = bench_median(tg, reps), mn = bench_median(tn, reps);
    printf("%-22s %10s %12s\n", "loop", "ms", "tokens/s");
    printf("%-22s %10.2f %12.1f\n", "native C", mn, n / mn * 1e3);
    printf("%-22s %10.2f %12.1f\n", "Wasm guest", mg, n / mg * 1e3);
    printf("same tokens: yes (ids fnv %016llx)\nratio guest/native tokens/s: %.3f\n", (unsigned long long)hg, mn / mg);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
    shoal_module_delete(mod);
    shoal_runtime_delete(rt);
    return 0;
}
