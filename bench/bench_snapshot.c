/* bench_snapshot.c — KV cache snapshot cost against re-prefill, on the CPU or a GPU, with SmolLM2
 * (or any GGUF given with --model).
 *
 * For each context length L: prefill L tokens into a fresh context (the cost a restore
 * avoids), save the cache as safetensors (time, size), load it into another fresh context
 * (time), check that the next token's logits match the prefilled context bit for bit, and
 * print restore speed-up = prefill time / restore time. The saved file sits in the page cache
 * (just written), as it does when an actor is moved or forked on one machine.
 *
 * With --actor GUEST (guests/bench_llm_actor.wasm) it then does the same for a whole actor:
 * "prefill L" sent to a fresh actor, shoal_instance_snapshot_save (linear memory, globals and
 * the LLM layer's section with the KV rows), shoal_instance_snapshot_restore into a new instance,
 * and "next" sent to both, whose replies carry a hash of the logits' bytes.
 *
 * --device cuda runs the contexts (and the actor's runtime) on the GPU: save reads the rows back
 * from device memory, restore uploads them. --cross also loads each saved cache into a context on
 * the other device and compares the next token's logits with the saving context's: the
 * cross-backend move, which is close but not bit-exact (the two devices round differently).
 *
 * usage: bench_snapshot [--model GGUF] [--threads N] [--ctx 24,512,4096] [--reps N] [--dir DIR]
 *                       [--device cpu|cuda] [--cross] [--actor GUEST.wasm] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <math.h>

#define BENCH_NAME "bench_snapshot"
#include "bench_util.h"
#ifdef SHOAL_HAVE_CUDA
#include <cuda_runtime_api.h>
#endif
#include "snapshot/kvcache.h"

static void bench_actor(const char *guest, const char *model, int threads, const int *lens, int nlens, int reps,
                        const char *dir, shoal_device_kind_t device)
{
    shoal_runtime_config_t rc;
    shoal_runtime_config_init(&rc);
    rc.threads = threads;
    rc.device = device;
    shoal_runtime_t *rt;
    shoal_module_t *mod;
    BENCH_CHECK(shoal_runtime_new(&rc, &rt));
    BENCH_CHECK(shoal_runtime_preload_model(rt, "default", model));
    BENCH_CHECK(shoal_module_load(rt, guest, &mod));
    shoal_instance_config_t ic;
    shoal_instance_config_init(&ic);
    char path[4200], msg[64];
    snprintf(path, sizeof path, "%s/bench_snapshot_actor.snap", dir);
    printf("\nwhole actor (%s): snapshot = memory + globals + llm section; restore = new instance + all of it\n", guest);
    printf("%-7s %12s %10s %10s %12s %11s  %s\n", "context", "prefill ms", "save ms", "size MB", "restore ms",
           "restore/pf", "next-token logits after restore");
    { /* one untimed prefill first, as for the KV table */
        shoal_instance_t *w = NULL;
        char *rw;
        size_t nw;
        BENCH_CHECK(shoal_actor_start(rt, mod, &ic, &w));
        BENCH_CHECK(shoal_actor_send(w, "prefill 64", 10, &rw, &nw));
        free(rw);
        shoal_instance_delete(w);
    }
    for (int li = 0; li < nlens; li++) {
        int L = lens[li], pf_reps = L >= 2048 ? (device == SHOAL_DEVICE_CUDA ? 3 : 1) : L >= 256 ? 3 : reps;
        double pf[64], sv[64], rs[64];
        shoal_instance_t *a = NULL, *b = NULL;
        char *ra, *rb;
        size_t na, nb;
        snprintf(msg, sizeof msg, "prefill %d", L);
        for (int r = 0; r < pf_reps; r++) {
            shoal_instance_delete(a);
            BENCH_CHECK(shoal_actor_start(rt, mod, &ic, &a));
            double t = bench_now_ms();
            BENCH_CHECK(shoal_actor_send(a, msg, strlen(msg), &ra, &na));
            pf[r] = bench_now_ms() - t;
            free(ra);
        }
        for (int r = 0; r < reps; r++) {
            double t = bench_now_ms();
            BENCH_CHECK(shoal_instance_snapshot_save(a, mod, path));
            sv[r] = bench_now_ms() - t;
        }
        struct stat sb;
        stat(path, &sb);
        for (int r = 0; r < reps; r++) {
            shoal_instance_delete(b);
            double t = bench_now_ms();
            BENCH_CHECK(shoal_instance_snapshot_restore(rt, mod, &ic, path, &b));
            rs[r] = bench_now_ms() - t;
        }
        BENCH_CHECK(shoal_actor_send(a, "next", 4, &ra, &na));
        BENCH_CHECK(shoal_actor_send(b, "next", 4, &rb, &nb));
        bool same = na == nb && !memcmp(ra, rb, na);
        double mpf = bench_median(pf, pf_reps), msv = bench_median(sv, reps), mrs = bench_median(rs, reps);
        printf("%-7d %12.2f %10.3f %10.3f %12.3f %10.0fx  %s (%s)\n", L, mpf, msv, (double)sb.st_size / 1e6, mrs,
               mpf / mrs, same ? "bit-identical" : "DIFFERENT", ra);
        fflush(stdout);
        free(ra), free(rb);
        shoal_instance_delete(a);
        shoal_instance_delete(b);
        if (!same) exit(1);
    }
    unlink(path);
    shoal_module_delete(mod);
    shoal_runtime_delete(rt);
}

#ifdef SHOAL_HAVE_CUDA
/* Median ms of copying bytes from pinned host memory to the device; 0 if it cannot be measured. */
static double h2d_floor_ms(size_t bytes, int reps)
{
    void *h = NULL, *d = NULL;
    double t[64], r = 0;
    if (reps > 64) reps = 64;
    if (cudaMallocHost(&h, bytes) == cudaSuccess && cudaMalloc(&d, bytes) == cudaSuccess) {
        memset(h, 1, bytes);
        cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice); /* warm-up */
        for (int i = 0; i < reps; i++) {
            double t0 = bench_now_ms();
            cudaMemcpy(d, h, bytes, cudaMemcpyHostToDevice);
            t[i] = bench_now_ms() - t0;
        }
        r = bench_median(t, reps);
    }
    cudaGetLastError();
    cudaFree(d);
    cudaFreeHost(h);
    return r;
}
#endif

int main(int argc, char **argv)
{
    const char *deps = getenv("SHOAL_DEPS");
    char model[4096];
    snprintf(model, sizeof model, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
    int threads = 2, reps = 5, lens[8] = {24, 512, 4096}, nlens = 3;
    const char *dir = "/tmp", *actor = NULL;
    shoal_device_kind_t device = SHOAL_DEVICE_CPU;
    bool cross = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--model") && i + 1 < argc) snprintf(model, sizeof model, "%s", argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--dir") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--actor") && i + 1 < argc) actor = argv[++i];
        else if (!strcmp(argv[i], "--cross")) cross = true;
        else if (!strcmp(argv[i], "--device") && i + 1 < argc && (!strcmp(argv[i + 1], "cpu") || !strcmp(argv[i + 1], "cuda")))
            device = !strcmp(argv[++i], "cuda") ? SHOAL_DEVICE_CUDA : SHOAL_DEVICE_CPU;
        else if (!strcmp(argv[i], "--ctx") && i + 1 < argc) {
            nlens = 0;
            for (char *s = strtok(argv[++i], ","); s && nlens < 8; s = strtok(NULL, ",")) lens[nlens++] = atoi(s);
        } else {
            fprintf(stderr, "usage: bench_snapshot [--model GGUF] [--threads N] [--ctx 24,512,4096] [--reps N] [--dir DIR] "
                            "[--device cpu|cuda] [--cross] [--actor GUEST.wasm]\n");
            return 2;
        }
    }
    if (reps < 1 || reps > 64) reps = 5;
    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    shoal_threadpool_t *pool;
    BENCH_CHECK(shoal_gguf_open(model, &g));
    BENCH_CHECK(shoal_llama_model_new(g, &m));
    BENCH_CHECK(shoal_threadpool_new(threads, &pool));
    double t0 = bench_now_ms();
    uint8_t sha[32];
    shoal_model_sha256(g, sha);
    double sha_ms = bench_now_ms() - t0;
    const int vocab = m->hp.vocab;
    int max_len = 0;
    for (int i = 0; i < nlens; i++) max_len = lens[i] > max_len ? lens[i] : max_len;
    shoal_engine_params_t p;
    shoal_engine_params_init(&p);
    p.n_ctx = max_len + 64;
    p.pool = pool;
    p.device = device;
    const char *dev_name = device == SHOAL_DEVICE_CUDA ? "cuda" : "cpu";
    printf("bench_snapshot: model %s (%d layers, kv_dim %d), device %s, threads %d, n_ctx %d, reps %d\n", model,
           m->hp.n_layer, m->hp.kv_dim, dev_name, threads, p.n_ctx, reps);
    printf("model identity: SHA-256 of the GGUF (%.0f MB) in %.1f ms, once per model\n",
           (double)shoal_gguf_file_size(g) / 1e6, sha_ms);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(max_len + 1));
    uint64_t x = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i <= max_len; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        toks[i] = (int32_t)(100 + x % (uint64_t)(vocab - 100));
    }
    float *la = malloc(sizeof(float) * (size_t)vocab), *lb = malloc(sizeof(float) * (size_t)vocab);
    char path[4200];
    snprintf(path, sizeof path, "%s/bench_snapshot_kv.safetensors", dir);
    shoal_engine_t *a, *b, *other = NULL;
    BENCH_CHECK(shoal_engine_new(m, &p, &a));
    BENCH_CHECK(shoal_engine_new(m, &p, &b));
    float *lo = NULL;
    if (cross) {
        shoal_engine_params_t po = p;
        po.device = device == SHOAL_DEVICE_CUDA ? SHOAL_DEVICE_CPU : SHOAL_DEVICE_CUDA;
        BENCH_CHECK(shoal_engine_new(m, &po, &other));
        lo = malloc(sizeof(float) * (size_t)vocab);
    }
    printf("%-7s %12s %10s %10s %12s %11s %9s  %s\n", "context", "prefill ms", "save ms", "size MB", "restore ms",
           "restore/pf", "save/pf", "next-token logits after restore");
    /* One untimed prefill first: the first timed one would otherwise carry one-time costs (cuBLAS
     * workspaces, first kernel launches, GPU clocks; on an H100 a lone 4096-token prefill measured
     * 568 ms cold vs 495 ms warm, which would have flattered the restore ratio). */
    shoal_engine_reset(a);
    BENCH_CHECK(shoal_engine_eval(a, toks, max_len < 256 ? max_len : 256, 0, la, SHOAL_LLAMA_LOGITS_LAST));
    for (int li = 0; li < nlens; li++) {
        int L = lens[li];
        /* Prefill reps scale down with length: 4096 tokens take seconds each on the CPU. */
        int pf_reps = L >= 2048 ? (device == SHOAL_DEVICE_CUDA ? 3 : 1) : L >= 256 ? 3 : reps;
        double pf[64], sv[64], rs[64];
        for (int r = 0; r < pf_reps; r++) {
            shoal_engine_reset(a);
            double t = bench_now_ms();
            BENCH_CHECK(shoal_engine_eval(a, toks, L, 0, la, SHOAL_LLAMA_LOGITS_LAST));
            pf[r] = bench_now_ms() - t;
        }
        for (int r = 0; r < reps; r++) {
            double t = bench_now_ms();
            BENCH_CHECK(shoal_kv_save_safetensors(a, sha, path));
            sv[r] = bench_now_ms() - t;
        }
        struct stat sb;
        stat(path, &sb);
        for (int r = 0; r < reps; r++) {
            shoal_engine_reset(b);
            double t = bench_now_ms();
            BENCH_CHECK(shoal_kv_load_safetensors(b, sha, path));
            rs[r] = bench_now_ms() - t;
        }
        BENCH_CHECK(shoal_engine_eval(a, &toks[L], 1, L, la, SHOAL_LLAMA_LOGITS_LAST));
        BENCH_CHECK(shoal_engine_eval(b, &toks[L], 1, L, lb, SHOAL_LLAMA_LOGITS_LAST));
        bool same = memcmp(la, lb, sizeof(float) * (size_t)vocab) == 0;
        double mpf = bench_median(pf, pf_reps), msv = bench_median(sv, reps), mrs = bench_median(rs, reps);
        printf("%-7d %12.2f %10.3f %10.3f %12.3f %10.0fx %8.0fx  %s\n", L, mpf, msv, (double)sb.st_size / 1e6, mrs,
               mpf / mrs, mpf / msv, same ? "bit-identical" : "DIFFERENT");
#ifdef SHOAL_HAVE_CUDA
        if (device == SHOAL_DEVICE_CUDA) {
            /* What no restore can beat: the file's bytes copied host -> device from pinned memory
             * (the bus), measured here beside the restore. */
            double h2d = h2d_floor_ms((size_t)sb.st_size, reps);
            if (h2d > 0)
                printf("        floor: pinned host->device copy of %.1f MB: %.3f ms (%.1f GB/s); restore = %.1fx it; "
                       "prefill / floor = %.0fx\n",
                       (double)sb.st_size / 1e6, h2d, (double)sb.st_size / h2d / 1e6, mrs / h2d, mpf / h2d);
        }
#endif
        if (cross) {
            /* The same file restored on the other device, then one token there. */
            double t = bench_now_ms();
            BENCH_CHECK(shoal_kv_load_safetensors(other, sha, path));
            double ms = bench_now_ms() - t;
            BENCH_CHECK(shoal_engine_eval(other, &toks[L], 1, L, lo, SHOAL_LLAMA_LOGITS_LAST));
            double md = 0;
            int ia = 0, io = 0;
            for (int i = 0; i < vocab; i++) {
                md = fmax(md, fabs((double)la[i] - lo[i]));
                if (la[i] > la[ia]) ia = i;
                if (lo[i] > lo[io]) io = i;
            }
            printf("        cross: restored on %s in %.3f ms; next-token logits max |diff| %.4f vs %s, top-1 %s\n",
                   device == SHOAL_DEVICE_CUDA ? "cpu" : "cuda", ms, md, dev_name, ia == io ? "same" : "DIFFERENT");
        }
        fflush(stdout);
        if (!same) return 1;
    }
    unlink(path);
    free(toks), free(la), free(lb);
    shoal_engine_delete(a);
    shoal_engine_delete(b);
    shoal_engine_delete(other);
    free(lo);
    if (actor) bench_actor(actor, model, threads, lens, nlens, reps, dir, device);
    shoal_threadpool_delete(pool);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
    return 0;
}
