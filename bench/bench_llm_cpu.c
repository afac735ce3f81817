/* bench_llm_cpu.c — Shoal's Llama forward pass on the CPU: prefill and decode tokens/s, measured
 * the way llama-bench measures them (pp: one batch of N prompt tokens from an empty cache;
 * tg: N single-token steps from an empty cache), after validating the model on a fixed prompt.
 *
 *   bench_llm_cpu MODEL.gguf [--threads T] [--prompt N] [--gen N] [--reps R] [--planes 1|2] [--depth D]
 *
 * --depth D first fills the cache with D tokens (untimed), like llama-bench -d: the timed prefill
 * and decode then attend to D earlier positions.
 * Prints one line per test, "shoal ppN threads=T <median> tok/s (min .. max over R)", then a
 * line of JSON with every figure, for scripts (bench/llm_cpu.sh). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/threadpool.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/quant.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int die(const char *what)
{
    fprintf(stderr, "bench_llm_cpu: %s: %s\n", what, shoal_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL.gguf [--threads T] [--prompt N] [--gen N] [--reps R] [--planes 1|2]\n",
                argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int threads = 2, n_prompt = 128, n_gen = 64, reps = 5, planes = 2, depth = 0;
    for (int i = 2; i + 1 < argc; i += 2) {
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--threads"))
            threads = v;
        else if (!strcmp(argv[i], "--prompt"))
            n_prompt = v;
        else if (!strcmp(argv[i], "--gen"))
            n_gen = v;
        else if (!strcmp(argv[i], "--reps"))
            reps = v;
        else if (!strcmp(argv[i], "--planes"))
            planes = v;
        else if (!strcmp(argv[i], "--depth"))
            depth = v;
        else {
            fprintf(stderr, "bench_llm_cpu: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (reps < 1 || reps > 100 || n_prompt < 1 || n_gen < 1 || depth < 0 || depth > 1 << 20) {
        fprintf(stderr, "bench_llm_cpu: bad --reps/--prompt/--gen\n");
        return 2;
    }

    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    shoal_threadpool_t *pool;
    shoal_llama_ctx_t *c;
    if (shoal_gguf_open(path, &g))
        return die("open model");
    if (shoal_llama_model_new(g, &m))
        return die("load model");
    if (shoal_threadpool_new(threads, &pool))
        return die("thread pool");
    shoal_llama_ctx_params_t p;
    shoal_llama_ctx_params_init(&p);
    p.n_ctx = depth + n_prompt + n_gen + 8;
    p.n_batch = n_prompt < 512 ? n_prompt : 512;
    p.act_planes = planes;
    if (shoal_llama_ctx_new(m, &p, pool, &c))
        return die("context");
    const int vocab = m->hp.vocab;
    float *logits = malloc((size_t)vocab * sizeof(float));
    int n_toks = depth + (n_prompt > n_gen ? n_prompt : n_gen);
    int32_t *toks = malloc((size_t)n_toks * sizeof(int32_t));
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < n_toks; i++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        toks[i] = (int32_t)((rng >> 33) % (uint64_t)vocab);
    }

    /* validate before timing: the ChatML "capital of France" prompt must greedily continue
     * with "The capital of France is" (ids from the model's tokenizer, fixed here) */
    static const int32_t chat[] = {1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198};
    static const int32_t expect[] = {504, 3575, 282, 4649, 314};
    int valid = 1, n_chat = (int)(sizeof chat / sizeof chat[0]);
    if (m->hp.vocab == 49152 && m->hp.n_layer == 30) {
        if (shoal_llama_eval(c, chat, n_chat, 0, logits, SHOAL_LLAMA_LOGITS_LAST))
            return die("eval");
        for (int s = 0; s < 5; s++) {
            int32_t best = 0;
            for (int i = 1; i < vocab; i++)
                if (logits[i] > logits[best])
                    best = i;
            if (best != expect[s])
                valid = 0;
            if (shoal_llama_eval(c, &best, 1, n_chat + s, logits, SHOAL_LLAMA_LOGITS_LAST))
                return die("eval");
        }
        if (!valid) {
            fprintf(stderr, "bench_llm_cpu: validation failed: greedy continuation differs from the expected one\n");
            return 1;
        }
    }

    double *pp = malloc((size_t)reps * sizeof(double)), *tg = malloc((size_t)reps * sizeof(double));
    /* one untimed round pages the weights in and warms the pool */
    shoal_llama_reset(c);
    if (depth > 0 && shoal_llama_eval(c, toks + n_prompt, depth, 0, NULL, SHOAL_LLAMA_LOGITS_NONE))
        return die("depth");
    for (int r = -1; r < reps; r++) {
        double t0 = now_s();
        if (shoal_llama_eval(c, toks, n_prompt, depth, logits, SHOAL_LLAMA_LOGITS_LAST))
            return die("prefill");
        double t1 = now_s();
        double t2 = now_s();
        for (int i = 0; i < n_gen; i++)
            if (shoal_llama_eval(c, &toks[i], 1, depth + i, logits, SHOAL_LLAMA_LOGITS_LAST))
                return die("decode");
        double t3 = now_s();
        if (r >= 0) {
            pp[r] = n_prompt / (t1 - t0);
            tg[r] = n_gen / (t3 - t2);
        }
    }
    qsort(pp, (size_t)reps, sizeof(double), cmp_d);
    qsort(tg, (size_t)reps, sizeof(double), cmp_d);
    const char *isa = shoal_isa_name(shoal_isa_best());
    if (depth)
        printf("(depth %d: the cache holds %d positions before each timed test)\n", depth, depth);
    printf("shoal pp%-4d threads=%d %9.1f tok/s (min %.1f .. max %.1f over %d; %s, act_planes=%d)\n", n_prompt,
           threads, pp[reps / 2], pp[0], pp[reps - 1], reps, isa, planes);
    printf("shoal tg%-4d threads=%d %9.1f tok/s (min %.1f .. max %.1f over %d; %s, act_planes=%d)\n", n_gen, threads,
           tg[reps / 2], tg[0], tg[reps - 1], reps, isa, planes);
    printf("{\"impl\":\"shoal\",\"threads\":%d,\"n_prompt\":%d,\"n_gen\":%d,\"pp_tps\":%.2f,\"tg_tps\":%.2f,"
           "\"reps\":%d,\"isa\":\"%s\",\"act_planes\":%d,\"depth\":%d,\"validated\":%s}\n",
           threads, n_prompt, n_gen, pp[reps / 2], tg[reps / 2], reps, isa, planes, depth,
           m->hp.vocab == 49152 ? "true" : "false");
    free(pp);
    free(tg);
    free(toks);
    free(logits);
    shoal_llama_ctx_delete(c);
    shoal_threadpool_delete(pool);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
    return 0;
}
