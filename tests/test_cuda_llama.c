/* test_cuda_llama.c — the CUDA forward pass (backend/cuda/llm_cuda.h) against the CPU one and, for
 * SmolLM2, against the float64 fixture; 64 greedy steps identical to the CPU's; mapped KV cache,
 * in-place logits, KV snapshot round trips and graph-replayed decode bit-identical to the default
 * paths; KV files restored through the pinned staging, corrupt ones refused; bad calls and
 * device out-of-memory give clear errors. Skips (with the reason) without a GPU.
 *
 * Model: $SHOAL_CUDA_LLAMA_MODEL, else SmolLM2 from $SHOAL_DEPS/models, else a small random model
 * written by make_llama_gguf ($SHOAL_BUILD_DIR) with the Llama 3.2 1B head layout.
 *
 * Tolerances. The GPU keeps activations in float32 and accumulates in float32 (exp and rsqrt from
 * the fast-math intrinsics); the CPU quantises activations to two 8-bit planes (~15 bits, within
 * 0.0093 of float64 on SmolLM2, test_llama.c). So on SmolLM2 (logits span about [-30, 37]):
 * GPU vs float64 fixture max |err| <= 0.02 (float32 rounding through 30 layers is ~1e-3; 0.02 is
 * the CPU's bound halved), GPU vs CPU <= 0.05 (the CPU's own bound to float64 plus the GPU's). On
 * other models the bound scales with the logits: 0.05 * max(1, max |logit| / 30). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef SHOAL_HAVE_CUDA
#include <cuda_runtime_api.h>

#include "backend/cuda/llm_cuda.h"
#include "backend/llm_engine.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "snapshot/kvcache.h"

typedef struct fixture {
    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    bool smollm2;
    char path[4096];
} fixture_t;

static fixture_t F;
static const char *g_skip;

static int group_setup(void **state)
{
    (void)state;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        g_skip = e != cudaSuccess ? cudaGetErrorString(e) : "no CUDA device";
        return 0;
    }
    const char *env = getenv("SHOAL_CUDA_LLAMA_MODEL"), *deps = getenv("SHOAL_DEPS"), *bd = getenv("SHOAL_BUILD_DIR");
    if (env) {
        snprintf(F.path, sizeof F.path, "%s", env);
    } else {
        snprintf(F.path, sizeof F.path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
        if (access(F.path, R_OK) != 0) {
            char cmd[8192];
            snprintf(F.path, sizeof F.path, "/tmp/shoal_cuda_llama_%d.gguf", (int)getpid());
            snprintf(cmd, sizeof cmd,
                     "'%s/make_llama_gguf' --layers 4 --dim 512 --ffn 1536 --heads 8 --kv-heads 2 --vocab 4096 "
                     "--type q8_0 --seed 3 --out '%s' >/dev/null",
                     bd ? bd : ".", F.path);
            if (system(cmd) != 0) {
                g_skip = "no model: SmolLM2 missing and make_llama_gguf failed";
                return 0;
            }
        }
    }
    if (shoal_gguf_open(F.path, &F.g) != SHOAL_OK || shoal_llama_model_new(F.g, &F.m) != SHOAL_OK) {
        fprintf(stderr, "cannot load %s: %s\n", F.path, shoal_last_error());
        return -1;
    }
    F.smollm2 = strstr(F.path, "SmolLM2-135M") != NULL && F.m->hp.vocab == 49152;
    print_message("model %s: %d layers, dim %d, vocab %d, %s weights\n", F.path, F.m->hp.n_layer, F.m->hp.dim,
                  F.m->hp.vocab, F.m->layers[0].w_up.type == 8 ? "Q8_0" : "other");
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    shoal_llama_model_delete(F.m);
    shoal_gguf_close(F.g);
    if (strncmp(F.path, "/tmp/shoal_cuda_llama_", 22) == 0)
        unlink(F.path);
    return 0;
}

#define NEED_GPU()                                                                                             \
    do {                                                                                                       \
        if (g_skip) {                                                                                          \
            print_message("[  SKIP    ] %s\n", g_skip);                                                       \
            skip();                                                                                            \
        }                                                                                                      \
    } while (0)

static void prompt_tokens(int32_t *t, int n)
{
    int v = F.m->hp.vocab < 256 ? F.m->hp.vocab : 256;
    uint32_t x = 12345;
    for (int i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        t[i] = (int32_t)((x >> 8) % (uint32_t)v);
    }
}

static float max_abs(const float *a, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmaxf(m, fabsf(a[i]));
    return m;
}

static float max_diff(const float *a, const float *b, size_t n)
{
    float m = 0;
    for (size_t i = 0; i < n; i++) {
        float d = fabsf(a[i] - b[i]);
        if (!(d <= m)) /* NaN fails */
            m = isnan(d) ? INFINITY : d;
    }
    return m;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b])
            b = i;
    return b;
}

/* How far the top logit r[top] stands above every other. */
static float top_margin(const float *r, int n, int top)
{
    float second = -INFINITY;
    for (int i = 0; i < n; i++)
        if (i != top && r[i] > second)
            second = r[i];
    return r[top] - second;
}

/* ---- against the CPU: every position's logits, then 64 greedy steps */

static void test_logits_and_greedy_vs_cpu(void **state)
{
    (void)state;
    NEED_GPU();
    const int V = F.m->hp.vocab, NP = 12, NG = 64;
    int32_t toks[12];
    prompt_tokens(toks, NP);
    float *cpu = malloc(sizeof(float) * (size_t)V * NP), *gpu = malloc(sizeof(float) * (size_t)V * NP);
    shoal_llama_ctx_t *cc;
    shoal_cuda_llama_ctx_t *gc;
    assert_int_equal(shoal_llama_ctx_new(F.m, NULL, NULL, &cc), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, NULL, &gc), SHOAL_OK);
    assert_int_equal(shoal_llama_eval(cc, toks, NP, 0, cpu, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    for (size_t i = 0; i < (size_t)V * NP; i++)
        gpu[i] = NAN; /* poison: every element must be written */
    assert_int_equal(shoal_cuda_llama_eval(gc, toks, NP, 0, gpu, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    float scale = fmaxf(1.0f, max_abs(cpu, (size_t)V * NP) / 30.0f), d = max_diff(cpu, gpu, (size_t)V * NP);
    print_message("GPU vs CPU logits over %d positions: max |diff| %.3g (max |logit| %.3g, tolerance %.3g)\n", NP, d,
                  max_abs(cpu, (size_t)V * NP), 0.05 * scale);
    assert_true(d <= 0.05f * scale);
    for (int p = 0; p < NP; p++)
        assert_int_equal(argmax(cpu + (size_t)p * V, V), argmax(gpu + (size_t)p * V, V));

    /* 64 greedy steps: CPU argmax of its logits, GPU argmax on the device (only the id comes back). */
    int32_t next_c = argmax(cpu + (size_t)(NP - 1) * V, V), next_g = next_c;
    int pos = NP, first_diff = -1;
    for (int s = 0; s < NG; s++) {
        int32_t tc = next_c, tg = next_g;
        assert_int_equal(shoal_llama_eval(cc, &tc, 1, pos, cpu, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        next_c = argmax(cpu, V);
        assert_int_equal(shoal_cuda_llama_eval_greedy(gc, &tg, 1, pos, &next_g), SHOAL_OK);
        if (next_c != next_g && first_diff < 0)
            first_diff = s;
        pos++;
        next_g = next_c; /* keep both on the CPU's sequence so a difference is reported where it arises */
    }
    print_message("greedy: %d steps, first difference at %d\n", NG, first_diff);
    assert_int_equal(first_diff, -1);
    assert_int_equal(shoal_cuda_llama_n_past(gc), NP + NG);
    shoal_cuda_llama_ctx_delete(gc);
    shoal_llama_ctx_delete(cc);
    free(cpu);
    free(gpu);
}

/* Two contexts made with pa and pb prefill the same NP-token prompt: their logits (all
 * positions), and the largest K/V row difference between them and magnitude in b's rows. */
enum { PAIR_NP = 40 };
typedef struct prefill_pair {
    shoal_cuda_llama_ctx_t *ca, *cb;
    float *a, *b;
    float kv_diff, kv_max;
} prefill_pair_t;

static void prefill_pair(const shoal_cuda_llama_params_t *pa, const shoal_cuda_llama_params_t *pb, int NP,
                         prefill_pair_t *pp)
{
    const int V = F.m->hp.vocab, kvd = F.m->hp.kv_dim;
    int32_t *toks = malloc(sizeof *toks * (size_t)NP);
    prompt_tokens(toks, NP);
    pp->a = malloc(sizeof(float) * (size_t)V * NP);
    pp->b = malloc(sizeof(float) * (size_t)V * NP);
    for (size_t i = 0; i < (size_t)V * NP; i++)
        pp->a[i] = NAN;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, pa, &pp->ca), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, pb, &pp->cb), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(pp->ca, toks, NP, 0, pp->a, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(pp->cb, toks, NP, 0, pp->b, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    float *ka = malloc(sizeof(float) * (size_t)NP * kvd * 4), *va = ka + (size_t)NP * kvd, *kb = va + (size_t)NP * kvd,
          *vb = kb + (size_t)NP * kvd;
    pp->kv_diff = 0, pp->kv_max = 0;
    for (int l = 0; l < F.m->hp.n_layer; l++) {
        assert_int_equal(shoal_cuda_llama_kv_read(pp->ca, l, NP, ka, va), SHOAL_OK);
        assert_int_equal(shoal_cuda_llama_kv_read(pp->cb, l, NP, kb, vb), SHOAL_OK);
        pp->kv_diff = fmaxf(pp->kv_diff, fmaxf(max_diff(ka, kb, (size_t)NP * kvd), max_diff(va, vb, (size_t)NP * kvd)));
        pp->kv_max = fmaxf(pp->kv_max, fmaxf(max_abs(kb, (size_t)NP * kvd), max_abs(vb, (size_t)NP * kvd)));
    }
    free(ka);
    free(toks);
}

/* The pair's common parameters: 64 positions, chunks of 16, float32 GEMMs; each test changes one. */
static shoal_cuda_llama_params_t pair_params(void)
{
    shoal_cuda_llama_params_t p;
    shoal_cuda_llama_params_init(&p);
    p.n_ctx = 64;
    p.n_batch = 16;
    p.prefill_tf32 = false;
    return p;
}

static void prefill_pair_free(prefill_pair_t *pp)
{
    shoal_cuda_llama_ctx_delete(pp->ca);
    shoal_cuda_llama_ctx_delete(pp->cb);
    free(pp->a);
    free(pp->b);
}

/* Batched prefill (dequantise + SGEMM, chunks of 16 so a 40-token prompt crosses two chunk
 * boundaries) against the token-by-token decode kernels: the same sums in another order, so the
 * logits agree to float32 rounding (tolerance 2e-3 scaled by the logit range) with the same
 * top-1 everywhere, and the cache rows agree as closely. */
static void test_batched_prefill_vs_tokenwise(void **state)
{
    (void)state;
    NEED_GPU();
    const int V = F.m->hp.vocab, NP = PAIR_NP;
    shoal_cuda_llama_params_t pa = pair_params(), pb = pa; /* float32 GEMMs: agreement to rounding */
    pb.n_batch = 1;
    prefill_pair_t pp;
    prefill_pair(&pa, &pb, NP, &pp);
    float scale = fmaxf(1.0f, max_abs(pp.b, (size_t)V * NP) / 30.0f), d = max_diff(pp.a, pp.b, (size_t)V * NP);
    print_message("batched (chunks of 16) vs token-by-token prefill, %d tokens: max |logit diff| %.3g (tolerance %.3g)\n",
                  NP, d, 2e-3 * scale);
    assert_true(d <= 2e-3f * scale);
    for (int p = 0; p < NP; p++)
        assert_int_equal(argmax(pp.a + (size_t)p * V, V), argmax(pp.b + (size_t)p * V, V));
    print_message("batched vs token-by-token KV rows: max |diff| %.3g\n", pp.kv_diff);
    assert_true(pp.kv_diff <= 2e-3f * scale);
    /* A greedy continuation after the batched prefill matches the token-by-token one. */
    int32_t ta = argmax(pp.a + (size_t)(NP - 1) * V, V), tb = ta, na, nb;
    assert_int_equal(shoal_cuda_llama_eval_greedy(pp.ca, &ta, 1, NP, &na), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval_greedy(pp.cb, &tb, 1, NP, &nb), SHOAL_OK);
    assert_int_equal(na, nb);
    prefill_pair_free(&pp);
}

/* Batched prefill of a long prompt in chunks of 256 against token-by-token decode:
 * 300 tokens make a first chunk of four 64-query tiles and a second of 44 queries attending to
 * all 300 rows, so the tiled prefill attention (att_prefill.cu) runs full and partial query and
 * position tiles and its causal mask inside a tile; same tolerance as above. */
static void test_long_batched_prefill(void **state)
{
    (void)state;
    NEED_GPU();
    const int V = F.m->hp.vocab, NP = 300;
    if (F.m->hp.n_ctx_train && F.m->hp.n_ctx_train < NP) {
        print_message("skip: the model's context (%d) is shorter than %d\n", F.m->hp.n_ctx_train, NP);
        return;
    }
    shoal_cuda_llama_params_t pa = pair_params(), pb = pa;
    pa.n_ctx = pb.n_ctx = 320;
    pa.n_batch = 256;
    pb.n_batch = 1;
    prefill_pair_t pp;
    prefill_pair(&pa, &pb, NP, &pp);
    float scale = fmaxf(1.0f, max_abs(pp.b, (size_t)V * NP) / 30.0f), d = max_diff(pp.a, pp.b, (size_t)V * NP);
    print_message("batched (chunks of 256) vs token-by-token prefill, %d tokens, head dim %d: max |logit diff| %.3g "
                  "(tolerance %.3g); KV rows %.3g\n", NP, F.m->hp.head_dim, d, 2e-3 * scale, pp.kv_diff);
    assert_true(d <= 2e-3f * scale);
    assert_true(pp.kv_diff <= 2e-3f * scale);
    /* the top-1 must agree wherever the reference's top two are further apart than the tolerance
     * allows either to move */
    int same = 0, clear = 0;
    for (int p = 0; p < NP; p++) {
        const float *r = pp.b + (size_t)p * V;
        const int top = argmax(r, V), got = argmax(pp.a + (size_t)p * V, V);
        same += got == top;
        if (top_margin(r, V, top) > 4e-3f * scale) {
            clear++;
            assert_int_equal(got, top);
        }
    }
    print_message("same top-1 at %d of %d positions (%d with a clear top-1)\n", same, NP, clear);
    assert_true(clear > NP / 2);
    prefill_pair_free(&pp);
}

/* prefill_tf32: the GEMMs' operands are rounded to TF32 (10-bit mantissas, unit roundoff 2^-11)
 * and summed in float32, so logits and cache rows move by a few units of 2^-11 of their scale.
 * Stated bound: 8e-3 of max(1, largest logit magnitude) for logits and of max(1, largest row
 * value) for the rows (measured 0.8e-3 to 1.6e-3 of it on an H100; SmolLM2: 0.056 on logits of
 * up to 34); the top-1 may change only where the float32 top two are within twice the bound. */
static void test_tf32_prefill_bound(void **state)
{
    (void)state;
    NEED_GPU();
    const int V = F.m->hp.vocab, NP = PAIR_NP;
    shoal_cuda_llama_params_t pa = pair_params(), pb = pa;
    pa.prefill_tf32 = true;
    prefill_pair_t pp;
    prefill_pair(&pa, &pb, NP, &pp);
    const float bound = 8e-3f * fmaxf(1.0f, max_abs(pp.b, (size_t)V * NP)), d = max_diff(pp.a, pp.b, (size_t)V * NP);
    print_message("TF32 vs float32 prefill, %d tokens: max |logit diff| %.3g (bound %.3g)\n", NP, d, bound);
    assert_true(d <= bound);
    for (int p = 0; p < NP; p++) {
        const float *r = pp.b + (size_t)p * V;
        const int top = argmax(r, V);
        if (top_margin(r, V, top) > 2 * bound)
            assert_int_equal(argmax(pp.a + (size_t)p * V, V), top);
    }
    const float kbound = 8e-3f * fmaxf(1.0f, pp.kv_max);
    print_message("TF32 vs float32 prefill KV rows: max |diff| %.3g (bound %.3g)\n", pp.kv_diff, kbound);
    assert_true(pp.kv_diff <= kbound);
    prefill_pair_free(&pp);
}

/* The fused decode kernels (norm + QKV, norm + gate/up + SwiGLU, shared-memory inputs) against
 * the separate ones: logits of 24 single-token steps within float32 reordering (2e-3 scaled),
 * and the same greedy ids for 32 steps, also when replayed as a CUDA graph. */
static void test_fused_decode(void **state)
{
    (void)state;
    NEED_GPU();
    const int V = F.m->hp.vocab, NP = 8, NS = 24;
    int32_t toks[8];
    prompt_tokens(toks, NP);
    shoal_cuda_llama_params_t pa, pb;
    shoal_cuda_llama_params_init(&pa);
    shoal_cuda_llama_params_init(&pb);
    pa.n_ctx = pb.n_ctx = 128;
    pa.n_batch = pb.n_batch = 1;
    pa.fused = true;
    pa.pdl = true; /* kernels overlap their predecessors' tails: a missing wait would show here */
    pb.fused = false; /* the reference: separate kernels, plain launches */
    pb.pdl = false;
    shoal_cuda_llama_ctx_t *ca, *cb;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &pa, &ca), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &pb, &cb), SHOAL_OK);
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    float worst = 0, scale = 1;
    for (int i = 0; i < NS; i++) {
        int32_t t = i < NP ? toks[i] : (i * 7 + 3) % (V < 200 ? V : 200);
        assert_int_equal(shoal_cuda_llama_eval(ca, &t, 1, i, a, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        assert_int_equal(shoal_cuda_llama_eval(cb, &t, 1, i, b, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        scale = fmaxf(scale, max_abs(b, (size_t)V) / 30.0f);
        worst = fmaxf(worst, max_diff(a, b, (size_t)V));
        assert_int_equal(argmax(a, V), argmax(b, V));
    }
    print_message("fused + PDL vs separate decode kernels, %d steps: max |logit diff| %.3g (tolerance %.3g)\n", NS, worst,
                  2e-3 * scale);
    assert_true(worst <= 2e-3f * scale);
    shoal_cuda_llama_ctx_delete(ca);
    /* greedy on the device, fused, graph-replayed and launched with PDL, against the separate
     * kernels: any missing wait for a predecessor would show as a different id */
    pa.use_graph = true;
    pa.pdl = true;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &pa, &ca), SHOAL_OK);
    shoal_cuda_llama_reset(cb);
    int32_t ta, tb;
    assert_int_equal(shoal_cuda_llama_eval_greedy(ca, toks, NP, 0, &ta), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval_greedy(cb, toks, NP, 0, &tb), SHOAL_OK);
    int first_diff = ta == tb ? -1 : 0;
    for (int i = 0; i < 32; i++) {
        int32_t in = tb;
        assert_int_equal(shoal_cuda_llama_eval_greedy(ca, &in, 1, NP + i, &ta), SHOAL_OK);
        assert_int_equal(shoal_cuda_llama_eval_greedy(cb, &in, 1, NP + i, &tb), SHOAL_OK);
        if (ta != tb && first_diff < 0)
            first_diff = i + 1;
    }
    print_message("fused + graph + PDL greedy: 32 steps, graph %s, first difference at %d\n",
                  shoal_cuda_llama_uses_graph(ca) ? "used" : "NOT used", first_diff);
    assert_int_equal(first_diff, -1);
    assert_true(shoal_cuda_llama_uses_graph(ca));
    shoal_cuda_llama_ctx_delete(ca);
    shoal_cuda_llama_ctx_delete(cb);
    free(a);
    free(b);
}

/* Long contexts: the fused decode attention spreads a head's positions over several blocks and
 * merges their partial softmaxes (chunks of 128 positions, or n / 16 past 2048, rounded up to
 * whole tiles for head dimensions 64 and 128, whose blocks also go through several tiles); against the
 * separate kernels, one block a head over every position: the logits of 6 steps within float32
 * reordering with the same top-1, then 12 graph-replayed greedy ids identical. */
static void long_context_case(int n_ctx, int np)
{
    const int V = F.m->hp.vocab;
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)np);
    for (int i = 0; i < np; i++)
        toks[i] = (i * 31 + 7) % (V < 500 ? V : 500);
    shoal_cuda_llama_params_t pa, pb;
    shoal_cuda_llama_params_init(&pa);
    pa.n_ctx = n_ctx;
    pa.prefill_tf32 = false;
    pb = pa;
    pb.fused = false;
    pb.pdl = false;
    shoal_cuda_llama_ctx_t *ca, *cb;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &pa, &ca), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &pb, &cb), SHOAL_OK);
    float *a = malloc(sizeof(float) * (size_t)V), *b = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(shoal_cuda_llama_eval(ca, toks, np, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(cb, toks, np, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    float worst = 0, scale = 1;
    for (int i = 0; i < 6; i++) {
        int32_t t = (i * 13 + 5) % (V < 200 ? V : 200);
        assert_int_equal(shoal_cuda_llama_eval(ca, &t, 1, np + i, a, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        assert_int_equal(shoal_cuda_llama_eval(cb, &t, 1, np + i, b, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        scale = fmaxf(scale, max_abs(b, (size_t)V) / 30.0f);
        worst = fmaxf(worst, max_diff(a, b, (size_t)V));
        assert_int_equal(argmax(a, V), argmax(b, V));
    }
    print_message("fused (chunked) vs separate attention at %d positions (n_ctx %d): max |logit diff| %.3g (tolerance %.3g)\n",
                  np + 6, n_ctx, worst, 2e-3 * scale);
    assert_true(worst <= 2e-3f * scale);
    shoal_cuda_llama_ctx_delete(ca);
    pa.use_graph = true;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &pa, &ca), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(ca, toks, np, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    int32_t ta = 1, tb = 1;
    int first_diff = -1;
    for (int i = 0; i < 12; i++) {
        int32_t in = tb;
        assert_int_equal(shoal_cuda_llama_eval_greedy(ca, &in, 1, np + i, &ta), SHOAL_OK);
        assert_int_equal(shoal_cuda_llama_eval_greedy(cb, &in, 1, np + i, &tb), SHOAL_OK);
        if (ta != tb && first_diff < 0)
            first_diff = i;
    }
    print_message("  graph-replayed greedy, 12 steps: first difference at %d\n", first_diff);
    assert_int_equal(first_diff, -1);
    shoal_cuda_llama_ctx_delete(ca);
    shoal_cuda_llama_ctx_delete(cb);
    free(a);
    free(b);
    free(toks);
}

static void test_long_context_decode(void **state)
{
    (void)state;
    NEED_GPU();
    if (F.m->hp.n_ctx_train && F.m->hp.n_ctx_train < 4608) {
        long_context_case(F.m->hp.n_ctx_train, F.m->hp.n_ctx_train - 20);
        return;
    }
    long_context_case(2048, 700);  /* 6 chunks of 128 */
    long_context_case(4608, 4400); /* past 16 x 128: 16 chunks of n / 16 */
}

/* ---- SmolLM2 only: against the float64 fixture */

static void test_vs_float64_fixture(void **state)
{
    (void)state;
    NEED_GPU();
    if (!F.smollm2) {
        print_message("[  SKIP    ] the float64 fixture is for SmolLM2; model is %s\n", F.path);
        skip();
    }
    const char *src = getenv("SHOAL_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/logits_smollm2.bin", src ? src : ".");
    FILE *f = fopen(path, "rb");
    if (!f) {
        print_message("[  SKIP    ] %s missing\n", path);
        skip();
    }
    char magic[8];
    uint32_t hdr[4];
    assert_int_equal(fread(magic, 1, 8, f), 8);
    assert_memory_equal(magic, "SHOALLG1", 8);
    assert_int_equal(fread(hdr, 4, 4, f), 4);
    const int V = (int)hdr[1], n_prompts = (int)hdr[2], n_greedy = (int)hdr[3];
    assert_int_equal(V, 49152);
    shoal_cuda_llama_ctx_t *gc;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, NULL, &gc), SHOAL_OK);
    float worst = 0;
    for (int p = 0; p < n_prompts; p++) {
        uint32_t nt[2];
        assert_int_equal(fread(nt, 4, 2, f), 2);
        int n = (int)nt[0];
        int32_t *ids = malloc(sizeof(int32_t) * (size_t)(n + n_greedy));
        float *ref = malloc(sizeof(float) * (size_t)n * V), *got = malloc(sizeof(float) * (size_t)n * V);
        assert_int_equal(fread(ids, 4, (size_t)(n + n_greedy), f), (size_t)(n + n_greedy));
        assert_int_equal(fread(ref, 4, (size_t)n * V, f), (size_t)n * V);
        assert_int_equal(shoal_cuda_llama_eval(gc, ids, n, 0, got, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
        float d = max_diff(ref, got, (size_t)n * V);
        worst = fmaxf(worst, d);
        for (int t = 0; t < n; t++)
            assert_int_equal(argmax(ref + (size_t)t * V, V), argmax(got + (size_t)t * V, V));
        /* The reference's greedy continuation, token by token on the GPU. */
        int32_t next;
        assert_int_equal(shoal_cuda_llama_eval_greedy(gc, ids + n - 1, 1, n - 1, &next), SHOAL_OK);
        for (int g = 0; g < n_greedy; g++) {
            assert_int_equal(next, ids[n + g]);
            assert_int_equal(shoal_cuda_llama_eval_greedy(gc, &ids[n + g], 1, n + g, &next), SHOAL_OK);
        }
        free(ids);
        free(ref);
        free(got);
    }
    fclose(f);
    print_message("GPU vs float64 fixture: max |err| %.3g over %d prompts (tolerance 0.02)\n", worst, n_prompts);
    assert_true(worst <= 0.02f);
    shoal_cuda_llama_ctx_delete(gc);
}

/* ---- mapped KV cache, in-place logits, KV snapshot: bit-identical to the default paths */

static void test_mapped_kv_inplace_snapshot(void **state)
{
    (void)state;
    NEED_GPU();
    const int V = F.m->hp.vocab, NP = 8, L = F.m->hp.n_layer, kvd = F.m->hp.kv_dim;
    int32_t toks[9];
    prompt_tokens(toks, NP + 1);
    shoal_cuda_llama_params_t p;
    shoal_cuda_llama_params_init(&p);
    p.n_ctx = 64;
    shoal_cuda_llama_ctx_t *a, *b, *r;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &a), SHOAL_OK);
    size_t kvb = shoal_cuda_llama_kv_bytes(F.m, 64);
    float *kvhost = aligned_alloc(4096, (kvb + 4095) / 4096 * 4096);
    assert_int_equal(cudaHostRegister(kvhost, (kvb + 4095) / 4096 * 4096, cudaHostRegisterMapped), cudaSuccess);
    p.kv_mapped = kvhost;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &b), SHOAL_OK);

    float *la = malloc(sizeof(float) * (size_t)V), *lb;
    assert_int_equal(cudaHostAlloc((void **)&lb, sizeof(float) * (size_t)V, cudaHostAllocMapped), cudaSuccess);
    assert_int_equal(shoal_cuda_llama_eval(a, toks, NP, 0, la, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(b, toks, NP, 0, lb, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_memory_equal(la, lb, sizeof(float) * (size_t)V);

    /* KV snapshot of a, restored into a fresh context r: the next step is bit-identical. */
    float *k = malloc(sizeof(float) * (size_t)NP * kvd), *v = malloc(sizeof(float) * (size_t)NP * kvd);
    p.kv_mapped = NULL;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &r), SHOAL_OK);
    for (int l = 0; l < L; l++) {
        assert_int_equal(shoal_cuda_llama_kv_read(a, l, NP, k, v), SHOAL_OK);
        /* the mapped cache of b holds the same rows, in the CPU layout */
        assert_memory_equal(k, kvhost + (size_t)l * 2 * 64 * kvd, sizeof(float) * (size_t)NP * kvd);
        assert_int_equal(shoal_cuda_llama_kv_write(r, l, NP, k, v), SHOAL_OK);
    }
    assert_int_equal(shoal_cuda_llama_set_n_past(r, NP), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(a, toks + NP, 1, NP, la, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(r, toks + NP, 1, NP, lb, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_memory_equal(la, lb, sizeof(float) * (size_t)V);
    assert_int_equal(shoal_cuda_llama_kv_read(a, L, 1, k, v), SHOAL_E_INVALID);
    assert_int_equal(shoal_cuda_llama_kv_read(a, 0, 65, k, v), SHOAL_E_INVALID);

    shoal_cuda_llama_ctx_delete(a);
    shoal_cuda_llama_ctx_delete(b);
    shoal_cuda_llama_ctx_delete(r);
    cudaHostUnregister(kvhost);
    free(kvhost);
    cudaFreeHost(lb);
    free(la);
    free(k);
    free(v);
}

/* ---- the greedy decode step replayed as a CUDA graph: same tokens, same cache, same logits */

static void test_graph_decode(void **state)
{
    (void)state;
    NEED_GPU();
    const int V = F.m->hp.vocab, NP = 6, NG = 32;
    int32_t toks[6];
    prompt_tokens(toks, NP);
    shoal_cuda_llama_params_t p;
    shoal_cuda_llama_params_init(&p);
    p.n_ctx = 64;
    shoal_cuda_llama_ctx_t *a, *b;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &a), SHOAL_OK);
    p.use_graph = true;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &b), SHOAL_OK);
    int32_t ta, tb;
    assert_int_equal(shoal_cuda_llama_eval_greedy(a, toks, NP, 0, &ta), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval_greedy(b, toks, NP, 0, &tb), SHOAL_OK);
    assert_int_equal(ta, tb);
    for (int s = 0; s < NG; s++) {
        assert_int_equal(shoal_cuda_llama_eval_greedy(a, &ta, 1, NP + s, &ta), SHOAL_OK);
        assert_int_equal(shoal_cuda_llama_eval_greedy(b, &tb, 1, NP + s, &tb), SHOAL_OK);
        assert_int_equal(ta, tb);
    }
    assert_true(shoal_cuda_llama_uses_graph(b));
    assert_false(shoal_cuda_llama_uses_graph(a));
    /* a rewind inside the graph's lifetime: the position comes from the host each replay */
    assert_int_equal(shoal_cuda_llama_eval_greedy(a, toks, 1, 2, &ta), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval_greedy(b, toks, 1, 2, &tb), SHOAL_OK);
    assert_int_equal(ta, tb);
    float *la = malloc(sizeof(float) * (size_t)V), *lb = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(shoal_cuda_llama_eval(a, toks + 3, 1, 3, la, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(b, toks + 3, 1, 3, lb, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_memory_equal(la, lb, sizeof(float) * (size_t)V);
    free(la);
    free(lb);
    shoal_cuda_llama_ctx_delete(a);
    shoal_cuda_llama_ctx_delete(b);
}

/* ---- bad calls and device out-of-memory */

static void copy_file(const char *from, const char *to, size_t len, long flip_at)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    assert_non_null(a);
    assert_non_null(b);
    uint8_t *buf = malloc(len);
    assert_int_equal(fread(buf, 1, len, a), len);
    if (flip_at >= 0)
        buf[flip_at] ^= 0x40;
    assert_int_equal(fwrite(buf, 1, len, b), len);
    free(buf);
    fclose(a);
    fclose(b);
}

/* A KV file restored into an empty GPU context takes the staged path (the rows are read from the
 * file by the staging threads into pinned memory, checksummed there and uploaded): a corrupt or
 * truncated file is refused with nothing made valid, and the good file restores the rows bit for
 * bit and continues with identical logits. The sequence is long enough (> 1 MB a tensor) for the
 * staging to be used. */
static void test_kv_file_restore(void **state)
{
    (void)state;
    NEED_GPU();
    const size_t row = (size_t)F.m->hp.kv_dim * sizeof(float);
    const int n = (int)((3u << 20) / row) + 7, n_ctx = n + 16, V = F.m->hp.vocab;
    shoal_engine_params_t p;
    shoal_engine_params_init(&p);
    p.device = SHOAL_DEVICE_CUDA;
    p.n_ctx = n_ctx;
    shoal_engine_t *a, *b;
    assert_int_equal(shoal_engine_new(F.m, &p, &a), SHOAL_OK);
    assert_int_equal(shoal_engine_new(F.m, &p, &b), SHOAL_OK);
    int32_t *toks = malloc(sizeof(int32_t) * (size_t)(n + 1));
    for (int i = 0; i <= n; i++)
        toks[i] = (int32_t)((i * 7919u + 13u) % (unsigned)(V < 2000 ? V : 2000));
    assert_int_equal(shoal_engine_eval(a, toks, n, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    uint8_t sha[32];
    for (int i = 0; i < 32; i++)
        sha[i] = (uint8_t)(i * 37 + 1);
    char good[128], bad[128];
    snprintf(good, sizeof good, "/tmp/shoal_kvgpu_%d.safetensors", (int)getpid());
    snprintf(bad, sizeof bad, "/tmp/shoal_kvgpu_%d_bad.safetensors", (int)getpid());
    assert_int_equal(shoal_kv_save_safetensors(a, sha, good), SHOAL_OK);
    FILE *f = fopen(good, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    const long len = ftell(f);
    fclose(f);
    print_message("KV file: %d positions, %.1f MB\n", n, len / 1e6);

    copy_file(good, bad, (size_t)len, len - 100); /* inside the last V tensor's rows */
    assert_int_not_equal(shoal_kv_load_safetensors(b, sha, bad), SHOAL_OK);
    print_message("corrupt: %s\n", shoal_last_error());
    assert_non_null(strstr(shoal_last_error(), "checksum"));
    assert_int_equal(shoal_engine_n_past(b), 0);
    copy_file(good, bad, (size_t)len / 2, -1);
    assert_int_not_equal(shoal_kv_load_safetensors(b, sha, bad), SHOAL_OK);
    assert_int_equal(shoal_engine_n_past(b), 0);

    assert_int_equal(shoal_kv_load_safetensors(b, sha, good), SHOAL_OK);
    assert_int_equal(shoal_engine_n_past(b), n);
    float *ka = malloc(row * (size_t)n), *va = malloc(row * (size_t)n), *kb = malloc(row * (size_t)n),
          *vb = malloc(row * (size_t)n);
    const int step = F.m->hp.n_layer > 1 ? F.m->hp.n_layer - 1 : 1; /* the first and the last layer */
    for (int l = 0; l < F.m->hp.n_layer; l += step) {
        assert_int_equal(shoal_engine_kv_read(a, l, n, ka, va), SHOAL_OK);
        assert_int_equal(shoal_engine_kv_read(b, l, n, kb, vb), SHOAL_OK);
        assert_memory_equal(ka, kb, row * (size_t)n);
        assert_memory_equal(va, vb, row * (size_t)n);
    }
    float *la = malloc(sizeof(float) * (size_t)V), *lb = malloc(sizeof(float) * (size_t)V);
    assert_int_equal(shoal_engine_eval(a, &toks[n], 1, n, la, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_engine_eval(b, &toks[n], 1, n, lb, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_memory_equal(la, lb, sizeof(float) * (size_t)V);
    unlink(good);
    unlink(bad);
    free(ka), free(va), free(kb), free(vb), free(la), free(lb), free(toks);
    shoal_engine_delete(a);
    shoal_engine_delete(b);
}

static void test_errors_and_oom(void **state)
{
    (void)state;
    NEED_GPU();
    shoal_cuda_llama_params_t p;
    shoal_cuda_llama_params_init(&p);
    p.n_ctx = 16;
    shoal_cuda_llama_ctx_t *c;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &c), SHOAL_OK);
    float *lg = malloc(sizeof(float) * (size_t)F.m->hp.vocab);
    int32_t bad = F.m->hp.vocab, ok[17] = {0};
    assert_int_equal(shoal_cuda_llama_eval(c, &bad, 1, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 1, 1, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 17, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_LIMIT);
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 1, 0, NULL, SHOAL_LLAMA_LOGITS_LAST), SHOAL_E_INVALID);
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 1, 0, lg, 7), SHOAL_E_INVALID);
    p.kv_mapped = lg; /* not registered */
    shoal_cuda_llama_ctx_t *c2 = NULL;
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &c2), SHOAL_E_INVALID);
    assert_null(c2);
    /* the context still works after refused calls */
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 2, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    shoal_cuda_llama_ctx_delete(c);
    assert_int_equal(shoal_cuda_llama_weight_bytes(F.m), 0); /* freed with the last context */

    /* Out of device memory: hold all but a quarter of the file's size, then ask for the weights. */
    size_t free_b, total_b;
    assert_int_equal(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
    size_t hold = free_b - (size_t)shoal_gguf_file_size(F.g) / 4;
    void *hog = NULL;
    /* steps of 1 MiB, so that what is left stays below the weights even for a small model */
    while (cudaMalloc(&hog, hold) != cudaSuccess && hold > (64u << 20)) {
        cudaGetLastError();
        hold -= 1u << 20;
    }
    assert_non_null(hog);
    p.kv_mapped = NULL;
    shoal_status_t s = shoal_cuda_llama_ctx_new(F.m, &p, &c);
    print_message("OOM: %s\n", shoal_last_error());
    assert_int_equal(s, SHOAL_E_NOMEM);
    assert_non_null(strstr(shoal_last_error(), "device out of memory"));
    cudaFree(hog);
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &c), SHOAL_OK);
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 1, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    shoal_cuda_llama_ctx_delete(c);

    /* The prefill scratch comes with the first prefill of several tokens: with the device full,
     * that prefill is refused (device out of memory) and the context still decodes; once memory
     * is back, the same prefill runs. */
    assert_int_equal(shoal_cuda_llama_ctx_new(F.m, &p, &c), SHOAL_OK);
    void *hogs[256];
    int nh = 0;
    assert_int_equal(cudaMemGetInfo(&free_b, &total_b), cudaSuccess);
    for (size_t want = free_b; want >= (1u << 20) && nh < 256;) {
        if (cudaMalloc(&hogs[nh], want) == cudaSuccess)
            nh++;
        else
            cudaGetLastError(), want /= 2;
    }
    s = shoal_cuda_llama_eval(c, ok, 8, 0, lg, SHOAL_LLAMA_LOGITS_LAST);
    print_message("prefill with the device full: %s\n", s ? shoal_last_error() : "ran");
    assert_int_equal(s, SHOAL_E_NOMEM);
    assert_non_null(strstr(shoal_last_error(), "device out of memory"));
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 1, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    for (int i = 0; i < nh; i++)
        cudaFree(hogs[i]);
    assert_int_equal(shoal_cuda_llama_eval(c, ok, 8, 0, lg, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    shoal_cuda_llama_ctx_delete(c);
    free(lg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_and_greedy_vs_cpu),
        cmocka_unit_test(test_batched_prefill_vs_tokenwise),
        cmocka_unit_test(test_long_batched_prefill),
        cmocka_unit_test(test_tf32_prefill_bound),
        cmocka_unit_test(test_fused_decode),
        cmocka_unit_test(test_long_context_decode),
        cmocka_unit_test(test_vs_float64_fixture),
        cmocka_unit_test(test_mapped_kv_inplace_snapshot),
        cmocka_unit_test(test_graph_decode),
        cmocka_unit_test(test_kv_file_restore),
        cmocka_unit_test(test_errors_and_oom),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

#else /* !SHOAL_HAVE_CUDA */

static void test_cuda_not_built(void **state)
{
    (void)state;
    print_message("[  SKIP    ] libshoal was built without nvcc: no CUDA LLM to test\n");
    skip();
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_cuda_not_built)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
