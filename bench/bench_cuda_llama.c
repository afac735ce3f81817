/* bench_cuda_llama.c — the CUDA forward pass: decode and prefill (batched, and token by token) tokens/s, the
 * weight bytes streamed per decode step against the device's measured copy bandwidth (the HBM
 * roofline), and decode with the KV cache in device memory vs in mapped host memory.
 *
 *   bench_cuda_llama MODEL.gguf [--gen N] [--prompt N] [--depth D] [--reps R] [--batch B]
 *                    [--default-only | --prefill-only]
 *
 * --prefill-only times the batched prefill of --prompt tokens alone (float32, then TF32): long
 * prompts without the token-by-token and decode rows.
 * Decode is timed as llama-bench's tg: N greedy single-token steps (argmax on the GPU, the id read
 * back each step). Prints a table and one JSON line. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cuda_runtime_api.h>

#include "backend/cuda/llm_cuda.h"
#include "model/gguf.h"
#include "model/llama.h"

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

/* Device-to-device copy of 1 GiB: bytes read + written per second (median of 10). */
static double copy_bandwidth(void)
{
    size_t n = (size_t)1 << 30;
    void *a, *b;
    if (cudaMalloc(&a, n) || cudaMalloc(&b, n))
        return 0;
    cudaMemset(a, 1, n);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    double t[10];
    for (int i = 0; i < 12; i++) {
        cudaEventRecord(e0, 0);
        cudaMemcpyAsync(b, a, n, cudaMemcpyDeviceToDevice, 0);
        cudaEventRecord(e1, 0);
        cudaEventSynchronize(e1);
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (i >= 2)
            t[i - 2] = ms * 1e-3;
    }
    qsort(t, 10, sizeof t[0], cmp_d);
    cudaFree(a);
    cudaFree(b);
    return 2.0 * n / t[5];
}

/* Median decode tokens/s of `gen` greedy steps after `depth` cached positions. */
static double decode_tps(shoal_cuda_llama_ctx_t *c, int depth, int gen, int reps)
{
    double *t = calloc((size_t)reps, sizeof *t);
    int32_t *prompt = calloc((size_t)depth + 1, sizeof *prompt);
    for (int i = 0; i <= depth; i++)
        prompt[i] = (i * 37 + 11) % 200;
    for (int r = 0; r < reps; r++) {
        int32_t tok;
        if (shoal_cuda_llama_eval_greedy(c, prompt, depth + 1, 0, &tok)) {
            fprintf(stderr, "eval: %s\n", shoal_last_error());
            exit(1);
        }
        double t0 = now_s();
        for (int s = 0; s < gen; s++)
            if (shoal_cuda_llama_eval_greedy(c, &tok, 1, depth + 1 + s, &tok)) {
                fprintf(stderr, "eval: %s\n", shoal_last_error());
                exit(1);
            }
        t[r] = gen / (now_s() - t0);
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_d);
    double m = t[reps / 2];
    free(t);
    free(prompt);
    return m;
}

/* The prompt every prefill row evaluates (the caller frees it). */
static int32_t *prefill_ids(int prompt)
{
    int32_t *pt = calloc((size_t)prompt, sizeof *pt);
    for (int i = 0; pt && i < prompt; i++)
        pt[i] = (i * 13 + 5) % 200;
    return pt;
}

/* Median prefill tokens/s of `prompt` tokens from an empty cache (at most 16 repetitions). */

static double prefill_tps(shoal_cuda_llama_ctx_t *c, const int32_t *pt, int prompt, float *logits, int reps)
{
    double t[16];
    const int n = reps < 16 ? reps : 16;
    for (int r = 0; r < n; r++) {
        double s0 = now_s();
        if (shoal_cuda_llama_eval(c, pt, prompt, 0, logits, SHOAL_LLAMA_LOGITS_LAST)) {
            fprintf(stderr, "eval: %s\n", shoal_last_error());
            exit(1);
        }
        t[r] = prompt / (now_s() - s0);
    }
    qsort(t, (size_t)n, sizeof t[0], cmp_d);
    return t[n / 2];
}

/* Decode tokens/s of a fresh context made from *base with the given kernels and launch modes;
 * 0 if it cannot be made, or if a graph was asked for and not used. */
static double variant_tps(const shoal_llama_model_t *m, const shoal_cuda_llama_params_t *base, bool fused, bool pdl,
                          bool graph, int depth, int gen, int reps)
{
    shoal_cuda_llama_params_t p = *base;
    p.fused = fused, p.pdl = pdl, p.use_graph = graph;
    shoal_cuda_llama_ctx_t *c;
    if (shoal_cuda_llama_ctx_new(m, &p, &c) != SHOAL_OK)
        return 0;
    double tps = decode_tps(c, depth, gen, reps);
    if (graph && !shoal_cuda_llama_uses_graph(c))
        tps = 0;
    shoal_cuda_llama_ctx_delete(c);
    return tps;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: bench_cuda_llama MODEL.gguf [--gen N] [--prompt N] [--depth D] [--reps R]\n");
        return 2;
    }
    int gen = 64, prompt = 64, depth = 0, reps = 5, batch = 0;
    bool only_default = false, only_prefill = false;
    for (int i = 2; i < argc; i += 2) {
        const bool d = !strcmp(argv[i], "--default-only"), pf = !strcmp(argv[i], "--prefill-only");
        if (d || pf) { /* d: kernel tuning, the default decode path alone */
            only_default |= d;
            only_prefill |= pf;
            i--;
            continue;
        }
        if (i + 1 >= argc) break;
        int v = atoi(argv[i + 1]);
        if (!strcmp(argv[i], "--gen")) gen = v;
        else if (!strcmp(argv[i], "--prompt")) prompt = v;
        else if (!strcmp(argv[i], "--depth")) depth = v;
        else if (!strcmp(argv[i], "--reps")) reps = v;
        else if (!strcmp(argv[i], "--batch")) batch = v; /* prefill chunk (n_batch); 0: the default */
    }
    if (gen < 1 || prompt < 1 || depth < 0 || reps < 1)
        return 2;
    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    if (shoal_gguf_open(argv[1], &g) || shoal_llama_model_new(g, &m)) {
        fprintf(stderr, "%s\n", shoal_last_error());
        return 1;
    }
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    double bw = copy_bandwidth();
    int n_ctx = depth + gen + prompt + 8;
    shoal_cuda_llama_params_t p;
    shoal_cuda_llama_params_init(&p);
    p.n_ctx = n_ctx;
    p.n_batch = batch;
    p.prefill_tf32 = false; /* the float32 path; TF32 is measured as a row of its own */
    if (only_prefill) {
        int32_t *pt = prefill_ids(prompt);
        float *logits = malloc(sizeof(float) * (size_t)m->hp.vocab);
        double pp[2] = {0, 0};
        for (int tf32 = 0; tf32 < 2; tf32++) {
            shoal_cuda_llama_ctx_t *c;
            p.prefill_tf32 = tf32;
            if (shoal_cuda_llama_ctx_new(m, &p, &c)) {
                fprintf(stderr, "%s\n", shoal_last_error());
                return 1;
            }
            pp[tf32] = prefill_tps(c, pt, prompt, logits, reps);
            shoal_cuda_llama_ctx_delete(c);
        }
        printf("shoal-cuda pp%d: %.1f tok/s (TF32 GEMMs: %.1f)\n", prompt, pp[0], pp[1]);
        free(pt);
        free(logits);
        shoal_llama_model_delete(m);
        shoal_gguf_close(g);
        return 0;
    }
    if (only_default) {
        /* the weights stay uploaded (and countable) while a context holds them */
        shoal_cuda_llama_ctx_t *hold;
        if (shoal_cuda_llama_ctx_new(m, &p, &hold)) {
            fprintf(stderr, "%s\n", shoal_last_error());
            return 1;
        }
        const double wbytes = (double)shoal_cuda_llama_weight_bytes(m);
        const double tps = variant_tps(m, &p, true, true, true, depth, gen, reps);
        shoal_cuda_llama_ctx_delete(hold);
        printf("shoal-cuda tg%d depth %d, default (fused + CUDA graph + PDL): %.1f tok/s = %.2f of copy bandwidth\n", gen,
               depth, tps, bw > 0 ? tps * wbytes / bw : 0);
        shoal_llama_model_delete(m);
        shoal_gguf_close(g);
        return 0;
    }
    /* the first rows: the separate kernels with plain launches (the reference path); the default
     * is the fused kernels + PDL, as a CUDA graph for greedy steps (the last decode row) */
    p.fused = false;
    p.pdl = false;
    shoal_cuda_llama_ctx_t *c;
    double t0 = now_s();
    if (shoal_cuda_llama_ctx_new(m, &p, &c)) {
        fprintf(stderr, "%s\n", shoal_last_error());
        return 1;
    }
    double upload_s = now_s() - t0;
    size_t wbytes = shoal_cuda_llama_weight_bytes(m);
    /* bytes per decode step: every weight once (tied embedding: the output matrix once; the
     * embedding row is negligible) */
    double step_bytes = (double)wbytes;

    double tg = decode_tps(c, depth, gen, reps);
    /* prefill: one batch of `prompt` tokens from an empty cache */
    int32_t *pt = prefill_ids(prompt);
    float *logits = malloc(sizeof(float) * (size_t)m->hp.vocab);
    double pp = prefill_tps(c, pt, prompt, logits, reps);
    const int chunk = shoal_cuda_llama_n_batch(c) < prompt ? shoal_cuda_llama_n_batch(c) : prompt;
    shoal_cuda_llama_ctx_delete(c);

    /* the same prefill through the decode kernels, one token after another (n_batch 1) */
    double pp_tok = 0;
    p.n_batch = 1;
    if (shoal_cuda_llama_ctx_new(m, &p, &c) == SHOAL_OK) {
        pp_tok = prefill_tps(c, pt, prompt, logits, reps);
        shoal_cuda_llama_ctx_delete(c);
    }
    p.n_batch = batch;
    /* the same prefill with its GEMMs on the tensor cores (TF32) */
    double pp_tf32 = 0;
    p.prefill_tf32 = true;
    if (shoal_cuda_llama_ctx_new(m, &p, &c) == SHOAL_OK) {
        pp_tf32 = prefill_tps(c, pt, prompt, logits, reps);
        shoal_cuda_llama_ctx_delete(c);
    }
    p.prefill_tf32 = false;

    /* the same decode: as a CUDA graph; the fused kernels, plain and as a graph; and with PDL */
    const double tg_graph = variant_tps(m, &p, false, false, true, depth, gen, reps);
    const double tg_fused = variant_tps(m, &p, true, false, false, depth, gen, reps);
    const double tg_fused_graph = variant_tps(m, &p, true, false, true, depth, gen, reps);
    const double tg_fused_graph_pdl = variant_tps(m, &p, true, true, true, depth, gen, reps);

    /* the same decode with the KV cache in mapped (registered) host memory */
    size_t kvb = (shoal_cuda_llama_kv_bytes(m, n_ctx) + 4095) / 4096 * 4096;
    float *kvh = aligned_alloc(4096, kvb);
    double tg_mapped = 0;
    if (kvh && cudaHostRegister(kvh, kvb, cudaHostRegisterMapped) == cudaSuccess) {
        p.kv_mapped = kvh;
        if (shoal_cuda_llama_ctx_new(m, &p, &c) == SHOAL_OK) {
            tg_mapped = decode_tps(c, depth, gen, reps);
            shoal_cuda_llama_ctx_delete(c);
        }
        cudaHostUnregister(kvh);
    }
    free(kvh);

    double achieved = tg * step_bytes;
    printf("device %s, copy bandwidth %.0f GB/s (read+write)\n", prop.name, bw / 1e9);
    printf("model %s: %d layers, dim %d, weights on device %.1f MB (upload %.2f s)\n", argv[1], m->hp.n_layer,
           m->hp.dim, wbytes / 1e6, upload_s);
    printf("shoal-cuda tg%d depth %d, separate kernels: %.1f tok/s = %.0f GB/s of weights = %.2f of copy bandwidth\n", gen, depth, tg,
           achieved / 1e9, bw > 0 ? achieved / bw : 0);
    printf("shoal-cuda tg%d depth %d, separate kernels + CUDA graph: %.1f tok/s = %.2f of copy bandwidth\n", gen, depth, tg_graph,
           bw > 0 ? tg_graph * step_bytes / bw : 0);
    printf("shoal-cuda tg%d depth %d, fused kernels: %.1f tok/s = %.2f of copy bandwidth\n", gen, depth, tg_fused,
           bw > 0 ? tg_fused * step_bytes / bw : 0);
    printf("shoal-cuda tg%d depth %d, fused kernels + CUDA graph: %.1f tok/s = %.2f of copy bandwidth\n", gen, depth,
           tg_fused_graph, bw > 0 ? tg_fused_graph * step_bytes / bw : 0);
    printf("shoal-cuda tg%d depth %d, fused kernels + CUDA graph + PDL: %.1f tok/s = %.2f of copy bandwidth\n", gen,
           depth, tg_fused_graph_pdl, bw > 0 ? tg_fused_graph_pdl * step_bytes / bw : 0);
    printf("shoal-cuda tg%d depth %d, separate kernels, KV in mapped host memory: %.1f tok/s (%.2fx device-KV)\n", gen, depth, tg_mapped,
           tg > 0 ? tg_mapped / tg : 0);
    printf("shoal-cuda pp%d batched (SGEMM, chunks of %d): %.1f tok/s; token by token: %.1f tok/s\n", prompt, chunk,
           pp, pp_tok);
    printf("shoal-cuda pp%d batched, GEMMs in TF32 on the tensor cores (prefill_tf32): %.1f tok/s\n", prompt, pp_tf32);
    printf("{\"device\":\"%s\",\"copy_gbps\":%.1f,\"weights_mb\":%.1f,\"tg\":%d,\"depth\":%d,\"tg_tps\":%.2f,"
           "\"tg_weight_gbps\":%.1f,\"roofline_frac\":%.3f,\"tg_mapped_kv_tps\":%.2f,\"tg_graph_tps\":%.2f,\"pp\":%d,\"pp_tps\":%.2f,\"pp_tokenwise_tps\":%.2f,\"pp_tf32_tps\":%.2f,\"tg_fused_tps\":%.2f,\"tg_fused_graph_tps\":%.2f,\"tg_fused_graph_pdl_tps\":%.2f}\n",
           prop.name, bw / 1e9, wbytes / 1e6, gen, depth, tg, achieved / 1e9, bw > 0 ? achieved / bw : 0, tg_mapped,
           tg_graph, prompt, pp, pp_tok, pp_tf32, tg_fused, tg_fused_graph, tg_fused_graph_pdl);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
    return 0;
}
