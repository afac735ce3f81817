/* nn_abuse.c — drives every error path of wasi-nn (and the shoal llm_* API) with hostile or
 * out-of-order calls and checks the exact error code of each; the host must answer, never
 * crash or write outside what it was given. Exits 0 when every check holds; prints each miss.
 * Needs a model preloaded as "default".
 *   nn_abuse.wasm            all checks
 *   nn_abuse.wasm llm-trap   an llm_eval whose logits run past memory: must trap */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal_guest.h"
#include "wasi_nn.h"

static int checks, misses;

#define EXPECT(call, want)                                                                                             \
    do {                                                                                                               \
        int32_t got_ = (call);                                                                                         \
        checks++;                                                                                                      \
        if (got_ != (want)) {                                                                                          \
            char msg_[200];                                                                                            \
            shoal_last_error(msg_, sizeof msg_);                                                                       \
            printf("MISS line %d: %s -> %d (%s), want %d (%s) [%s]\n", __LINE__, #call, got_, nn_strerror(got_),     \
                   (int)(want), nn_strerror(want), msg_);                                                              \
            misses++;                                                                                                  \
        }                                                                                                              \
    } while (0)

/* A raw tensor record: every field under the test's control. */
typedef struct raw_tensor {
    uint32_t dims_ptr, dims_len, type, data_ptr, data_len;
} raw_tensor;

static int32_t set_raw(nn_ctx_t c, uint32_t index, uint32_t dims_ptr, uint32_t dims_len, uint32_t type,
                       uint32_t data_ptr, uint32_t data_len)
{
    static raw_tensor t;
    t = (raw_tensor){dims_ptr, dims_len, type, data_ptr, data_len};
    return nn_set_input(c, index, (const nn_tensor_t *)&t);
}

static const char *chatml(const char *q)
{
    static char buf[4096];
    snprintf(buf, sizeof buf, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", q);
    return buf;
}

static nn_ctx_t new_ctx(const char *config, nn_graph_t *g)
{
    nn_ctx_t c = 0;
    EXPECT(nn_load_by_name_with_config("default", 7, config, strlen(config), g), NN_SUCCESS);
    EXPECT(nn_init_execution_context(*g, &c), NN_SUCCESS);
    return c;
}

int main(int argc, char **argv)
{
    uint32_t mem = (uint32_t)__builtin_wasm_memory_size(0) * 65536u;
    static uint32_t dims[1] = {1};
    static uint8_t buf[4096];
    uint32_t w = 0;
    nn_graph_t g = 0, g2 = 0;
    nn_ctx_t c = 0;

    /* "kv-trap MODE": llm_open_kv with a misaligned buffer (0), one past memory (1), or eval ids
     * inside the session's cache (2): each traps with a precise message. */
    if (argc > 2 && !strcmp(argv[1], "kv-trap")) {
        int32_t h;
        uint64_t need = 0;
        shoal_llm_kv_bytes("default", 7, 64, &need);
        uint8_t *kv = aligned_alloc(16, (size_t)need + 16);
        int mode = atoi(argv[2]);
        if (mode == 0) shoal_llm_open_kv("default", 7, 64, kv + 4, (uint32_t)need, &h);
        uint32_t end = (uint32_t)__builtin_wasm_memory_size(0) * 65536u; /* the buffer above grew it */
        if (mode == 1) shoal_llm_open_kv("default", 7, 64, (void *)(uintptr_t)(end - 1024), (uint32_t)need, &h);
        if (mode == 2) {
            if (shoal_llm_open_kv("default", 7, 64, kv, (uint32_t)need, &h)) return 3;
            int32_t next;
            shoal_llm_eval_greedy(h, (const int32_t *)(void *)kv, 1, &next);
        }
        return 4; /* not reached: the calls trap */
    }

    if (argc > 1 && !strcmp(argv[1], "llm-trap")) {
        int32_t h;
        if (shoal_llm_open("default", 7, 64, &h)) return 3;
        int32_t id = 1;
        shoal_llm_eval(h, &id, 1, (float *)(uintptr_t)(mem - 64), SHOAL_LLM_LOGITS_LAST);
        return 4; /* not reached: the call traps */
    }

    /* "oom": one small session decodes, then sessions of 32768 positions are opened until the
     * device (or host) refuses one; the refusal is printed and the first session must still work. */
    if (argc > 1 && !strcmp(argv[1], "oom")) {
        int32_t h, big[15], tok = 1, t1 = -1, t2 = -1;
        if (shoal_llm_open("default", 7, 64, &h) || shoal_llm_eval_greedy(h, &tok, 1, &t1)) return 3;
        int opened = 0, st = 0;
        char msg[512] = "";
        while (opened < 15 && (st = shoal_llm_open("default", 7, 32768, &big[opened])) == SHOAL_ST_OK) opened++;
        if (st) shoal_last_error(msg, sizeof msg);
        for (int i = 0; i < opened; i++) shoal_llm_close(big[i]);
        int32_t s2 = shoal_llm_eval_greedy(h, &t1, 1, &t2);
        printf("opened=%d refused_status=%d message=[%s] first_session_after=%d next=%d\n", opened, (int)st, msg,
               (int)s2, (int)t2);
        return 0;
    }

    /* "placement TARGET CONFIG": load with an execution target (0 CPU, 1 GPU, 2 TPU, 3 AUTO) and a
     * JSON config, compute a short greedy answer; prints each call's code and the text, so
     * test_nn_device.sh can check where a context may run and what refusals look like. */
    if (argc > 3 && !strcmp(argv[1], "placement")) {
        nn_builder_t pb[2] = {{(const uint8_t *)"default", 7}, {(const uint8_t *)argv[3], (uint32_t)strlen(argv[3])}};
        int32_t rl = nn_load(pb, 2, NN_ENCODING_GGML, (uint32_t)atoi(argv[2]), &g), ri = -1, rs = -1, rc = -1;
        if (rl == NN_SUCCESS) ri = nn_init_execution_context(g, &c);
        const char *q = "The capital of France is";
        if (ri == NN_SUCCESS) rs = nn_set_input_bytes(c, 0, q, (uint32_t)strlen(q));
        if (rs == NN_SUCCESS) rc = nn_compute(c);
        static char meta[512];
        uint32_t mw = 0;
        w = 0;
        if (rc == NN_SUCCESS) nn_get_output(c, 0, buf, sizeof buf - 1, &w), nn_get_output(c, 1, (uint8_t *)meta, sizeof meta - 1, &mw);
        buf[w] = 0;
        meta[mw] = 0;
        const char *ot = strstr(meta, "\"output_tokens\":");
        printf("load=%d init=%d set_input=%d compute=%d output_tokens=%d text=[%s]\n", (int)rl, (int)ri, (int)rs, (int)rc,
               ot ? atoi(ot + 16) : -1, (char *)buf);
        return 0;
    }

    /* ---- model names and graph loading ---- */
    EXPECT(nn_load_by_name("nope", 4, &g), NN_NOT_FOUND);
    EXPECT(nn_load_by_name("", 0, &g), NN_NOT_FOUND);
    EXPECT(nn_load_by_name((const char *)(uintptr_t)0xFFFFFFF0u, 100, &g), NN_INVALID_ARGUMENT); /* wraps 2^32 */
    EXPECT(nn_load_by_name("default", 7, (nn_graph_t *)(uintptr_t)(mem - 2)), NN_INVALID_ARGUMENT);
    EXPECT(nn_load_by_name_with_config("default", 7, "{", 1, &g), NN_INVALID_ENCODING);
    EXPECT(nn_load_by_name_with_config("default", 7, "[1]", 3, &g), NN_INVALID_ENCODING);
    EXPECT(nn_load_by_name_with_config("default", 7, "{\"ctx-size\":\"big\"}", 18, &g), NN_INVALID_ARGUMENT);
    EXPECT(nn_load_by_name_with_config("default", 7, "{\"temp\":-1}", 11, &g), NN_INVALID_ARGUMENT);
    EXPECT(nn_load_by_name_with_config("default", 7, "{\"top-p\":0}", 11, &g), NN_INVALID_ARGUMENT);
    EXPECT(nn_load_by_name_with_config("default", 7, "{\"some-future-key\":1}", 21, &g), NN_SUCCESS);
    EXPECT(nn_unload(g), NN_SUCCESS);
    EXPECT(nn_unload(g), NN_INVALID_ARGUMENT); /* double unload */
    EXPECT(nn_unload(12345), NN_INVALID_ARGUMENT);
    EXPECT(nn_load_by_name_with_config("default", 7, (const char *)(uintptr_t)(mem - 4), 8, &g), NN_INVALID_ARGUMENT);

    nn_builder_t b[2] = {{(const uint8_t *)"preload:default", 15}, {(const uint8_t *)"{\"n-predict\":4}", 15}};
    EXPECT(nn_load(b, 2, NN_ENCODING_GGML, NN_TARGET_AUTO, &g), NN_SUCCESS);
    EXPECT(nn_unload(g), NN_SUCCESS);
    EXPECT(nn_load(b, 1, 1 /* ONNX */, NN_TARGET_CPU, &g), NN_INVALID_ENCODING);
    EXPECT(nn_load(b, 1, NN_ENCODING_GGML, 9, &g), NN_INVALID_ARGUMENT);
    EXPECT(nn_load(b, 1, NN_ENCODING_GGML, NN_TARGET_TPU, &g), NN_UNSUPPORTED_OPERATION);
    EXPECT(nn_load(b, 0, NN_ENCODING_GGML, NN_TARGET_CPU, &g), NN_INVALID_ARGUMENT);
    EXPECT(nn_load((const nn_builder_t *)(uintptr_t)(mem - 8), 2, NN_ENCODING_GGML, NN_TARGET_CPU, &g),
           NN_INVALID_ARGUMENT);
    EXPECT(nn_load(b, 0x20000001u, NN_ENCODING_GGML, NN_TARGET_CPU, &g), NN_INVALID_ARGUMENT); /* n*8 wraps 32 bits */
    nn_builder_t gguf[1] = {{(const uint8_t *)"GGUF\3\0\0\0", 8}};
    EXPECT(nn_load(gguf, 1, NN_ENCODING_GGML, NN_TARGET_CPU, &g), NN_UNSUPPORTED_OPERATION);
    nn_builder_t missing[1] = {{(const uint8_t *)"preload:missing", 15}};
    EXPECT(nn_load(missing, 1, NN_ENCODING_AUTODETECT, NN_TARGET_CPU, &g), NN_NOT_FOUND);
    nn_builder_t badb[1] = {{(const uint8_t *)(uintptr_t)(mem - 4), 16}};
    EXPECT(nn_load(badb, 1, NN_ENCODING_GGML, NN_TARGET_CPU, &g), NN_INVALID_ARGUMENT);

    /* ---- handle tables are finite: the 65th graph / context is busy, and freeing one helps ---- */
    {
        static nn_graph_t gs[65];
        static nn_ctx_t cs[65];
        int ng = 0, nc = 0;
        int32_t r;
        while (ng < 65 && (r = nn_load_by_name("default", 7, &gs[ng])) == NN_SUCCESS) ng++;
        EXPECT(ng, 64);
        EXPECT(r, NN_BUSY);
        while (nc < 65 && (r = nn_init_execution_context(gs[0], &cs[nc])) == NN_SUCCESS) nc++;
        EXPECT(nc, 64);
        EXPECT(r, NN_BUSY);
        EXPECT(nn_finalize_execution_context(cs[7]), NN_SUCCESS);
        EXPECT(nn_init_execution_context(gs[0], &cs[7]), NN_SUCCESS);
        EXPECT(nn_unload(gs[3]), NN_SUCCESS);
        EXPECT(nn_load_by_name("default", 7, &gs[3]), NN_SUCCESS);
        for (int i = 0; i < nc; i++) EXPECT(nn_finalize_execution_context(cs[i]), NN_SUCCESS);
        for (int i = 0; i < ng; i++) EXPECT(nn_unload(gs[i]), NN_SUCCESS);
    }

    /* ---- unknown handles ---- */
    EXPECT(nn_init_execution_context(77, &c), NN_INVALID_ARGUMENT);
    EXPECT(nn_set_input_bytes(77, 0, "x", 1), NN_INVALID_ARGUMENT);
    EXPECT(nn_compute(77), NN_INVALID_ARGUMENT);
    EXPECT(nn_compute_single(77), NN_INVALID_ARGUMENT);
    EXPECT(nn_get_output(77, 0, buf, sizeof buf, &w), NN_INVALID_ARGUMENT);
    EXPECT(nn_get_output_single(77, 0, buf, sizeof buf, &w), NN_INVALID_ARGUMENT);
    EXPECT(nn_fini_single(77), NN_INVALID_ARGUMENT);
    EXPECT(nn_finalize_execution_context(77), NN_INVALID_ARGUMENT);
    EXPECT(nn_compute(0xFFFFFFFFu), NN_INVALID_ARGUMENT);

    /* ---- a split of the layers between devices is refused (SmolLM2 has 30 layers) ---- */
    c = new_ctx("{\"n-predict\":2,\"n-gpu-layers\":5}", &g);
    EXPECT(nn_set_input_bytes(c, 0, "Hi", 2), NN_SUCCESS);
    EXPECT(nn_compute(c), NN_INVALID_ARGUMENT);
    EXPECT(nn_finalize_execution_context(c), NN_SUCCESS);
    EXPECT(nn_unload(g), NN_SUCCESS);

    /* ---- calls in the wrong order ---- */
    c = new_ctx("{\"n-predict\":8,\"ctx-size\":256,\"temp\":0}", &g);
    EXPECT(nn_init_execution_context(g, (nn_ctx_t *)(uintptr_t)mem), NN_INVALID_ARGUMENT);
    EXPECT(nn_compute(c), NN_INVALID_ARGUMENT);                               /* no prompt yet */
    EXPECT(nn_compute_single(c), NN_INVALID_ARGUMENT);
    EXPECT(nn_get_output(c, 0, buf, sizeof buf, &w), NN_INVALID_ARGUMENT);    /* nothing computed */
    EXPECT(nn_get_output_single(c, 0, buf, sizeof buf, &w), NN_INVALID_ARGUMENT);
    EXPECT(nn_fini_single(c), NN_SUCCESS);                                    /* no stream: a no-op */
    EXPECT(nn_get_output(c, 1, buf, sizeof buf, &w), NN_SUCCESS);             /* metadata is always there */

    /* ---- malformed tensor records ---- */
    const char *p = chatml("Say hi.");
    uint32_t pl = (uint32_t)strlen(p);
    EXPECT(nn_set_input(c, 0, (const nn_tensor_t *)(uintptr_t)(mem - 12)), NN_INVALID_ARGUMENT); /* record past end */
    EXPECT(set_raw(c, 0, mem - 2, 1, NN_U8, (uint32_t)(uintptr_t)p, pl), NN_INVALID_ARGUMENT);   /* dims past end */
    EXPECT(set_raw(c, 0, (uint32_t)(uintptr_t)dims, 0x40000001u, NN_U8, (uint32_t)(uintptr_t)p, pl),
           NN_INVALID_ARGUMENT);                                                              /* dims_len*4 wraps */
    EXPECT(set_raw(c, 0, (uint32_t)(uintptr_t)dims, 1, NN_U8, 0x10, 0xFFFFFFF8u), NN_INVALID_ARGUMENT); /* data wraps */
    EXPECT(set_raw(c, 0, (uint32_t)(uintptr_t)dims, 1, NN_U8, mem - 4, 8), NN_INVALID_ARGUMENT); /* data past end */
    EXPECT(set_raw(c, 0, (uint32_t)(uintptr_t)dims, 1, 9, (uint32_t)(uintptr_t)p, pl), NN_INVALID_ARGUMENT); /* type */
    EXPECT(set_raw(c, 7, (uint32_t)(uintptr_t)dims, 1, NN_U8, (uint32_t)(uintptr_t)p, pl), NN_INVALID_ARGUMENT);
    EXPECT(nn_set_input_bytes(c, 1, "{nope", 5), NN_INVALID_ENCODING);
    EXPECT(nn_set_input_bytes(c, 1, "{\"n-predict\":true}", 18), NN_INVALID_ARGUMENT);
    /* older bindings number u8 as 2 and padding bytes may be garbage: still bytes */
    EXPECT(set_raw(c, 0, (uint32_t)(uintptr_t)dims, 1, 0xABCDEF02u, (uint32_t)(uintptr_t)p, pl), NN_SUCCESS);

    /* ---- outputs and buffers ---- */
    EXPECT(nn_compute(c), NN_SUCCESS);
    uint32_t need = 0;
    memset(buf, 0xA5, sizeof buf);
    EXPECT(nn_get_output(c, 0, buf, 2, &need), NN_TOO_LARGE);
    int clean = 1;
    for (size_t i = 0; i < sizeof buf; i++) clean &= buf[i] == 0xA5;
    EXPECT(clean, 1);   /* nothing written on too_large, not even within max */
    EXPECT(need > 2, 1); /* the size needed is reported */
    EXPECT(nn_get_output(c, 0, buf, need, &w), NN_SUCCESS);
    EXPECT(w == need && buf[need] == 0xA5, 1);                              /* exactly `need` bytes, none past */
    EXPECT(nn_get_output(c, 1, buf, 3, &w), NN_TOO_LARGE);
    EXPECT(nn_get_output(c, 5, buf, sizeof buf, &w), NN_INVALID_ARGUMENT);
    EXPECT(nn_get_output(c, 0, (uint8_t *)(uintptr_t)(mem - 8), 64, &w), NN_INVALID_ARGUMENT);
    EXPECT(nn_get_output(c, 0, buf, sizeof buf, (uint32_t *)(uintptr_t)(mem - 3)), NN_INVALID_ARGUMENT);
    EXPECT(nn_get_output(c, 0, (uint8_t *)(uintptr_t)0xFFFFFF00u, 0x200, &w), NN_INVALID_ARGUMENT); /* wraps */
    EXPECT(nn_get_output(c, 1, buf, sizeof buf, &w), NN_SUCCESS);
    buf[w] = 0;
    EXPECT(strstr((char *)buf, "\"input_tokens\":") != NULL && strstr((char *)buf, "\"output_tokens\":") != NULL, 1);

    /* ---- streaming ---- */
    int32_t e = NN_SUCCESS;
    int steps = 0;
    while (steps < 200 && (e = nn_compute_single(c)) == NN_SUCCESS) {
        EXPECT(nn_get_output_single(c, 0, buf, sizeof buf, &w), NN_SUCCESS);
        steps++;
    }
    EXPECT(e, NN_END_OF_SEQUENCE);
    EXPECT(nn_get_output_single(c, 0, buf, sizeof buf, &w), NN_SUCCESS);
    EXPECT(w, 0); /* nothing after the end */
    EXPECT(nn_fini_single(c), NN_SUCCESS);

    /* ---- prompts longer than the context, and a full context ---- */
    EXPECT(nn_set_input_bytes(c, 1, "{\"ctx-size\":32}", 15), NN_SUCCESS);
    static char longp[2048];
    longp[0] = 0;
    for (int i = 0; i < 40; i++) strcat(longp, "apple pear ");
    EXPECT(nn_set_input_bytes(c, 0, longp, strlen(longp)), NN_SUCCESS);
    EXPECT(nn_compute(c), NN_PROMPT_TOO_LONG);
    EXPECT(nn_compute_single(c), NN_PROMPT_TOO_LONG);
    /* invalid UTF-8 (each byte becomes U+FFFD: more ids than bytes) and a 200 KB prompt: both
     * tokenise (the id buffer grows to the tokenizer's count) and are too long to evaluate */
    static char junk[200000];
    memset(junk, 0xFF, 3000);
    EXPECT(nn_set_input_bytes(c, 0, junk, 3000), NN_SUCCESS);
    EXPECT(nn_compute(c), NN_PROMPT_TOO_LONG);
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (char)('0' + i % 10); /* one id per digit */
    EXPECT(nn_set_input_bytes(c, 0, junk, sizeof junk), NN_SUCCESS);
    EXPECT(nn_compute_single(c), NN_PROMPT_TOO_LONG);
    const char *count = chatml("Count from 1 to 100, one number per line.");
    EXPECT(nn_set_input_bytes(c, 1, "{\"ctx-size\":48,\"n-predict\":-1}", 30), NN_SUCCESS);
    EXPECT(nn_set_input_bytes(c, 0, count, strlen(count)), NN_SUCCESS);
    EXPECT(nn_compute(c), NN_CONTEXT_FULL);
    EXPECT(nn_get_output(c, 0, buf, sizeof buf, &w), NN_SUCCESS); /* the text so far stays readable */
    EXPECT(w > 0, 1);

    /* ---- lifetimes ---- */
    EXPECT(nn_unload(g), NN_SUCCESS);
    EXPECT(nn_init_execution_context(g, &g2), NN_INVALID_ARGUMENT);
    EXPECT(nn_set_input_bytes(c, 1, "{\"ctx-size\":256,\"n-predict\":4}", 30), NN_SUCCESS);
    EXPECT(nn_set_input_bytes(c, 0, p, pl), NN_SUCCESS);
    EXPECT(nn_compute(c), NN_SUCCESS); /* a context outlives its graph handle */
    EXPECT(nn_finalize_execution_context(c), NN_SUCCESS);
    EXPECT(nn_finalize_execution_context(c), NN_INVALID_ARGUMENT); /* double finalize */
    EXPECT(nn_compute(c), NN_INVALID_ARGUMENT);                    /* use after finalize */
    (void)g2;

    /* ---- a context that keeps its cache across computes (the multi-turn case: the next prompt
     * extends the last one) answers exactly as a fresh context does ---- */
    {
        static char p2[4096], a1[2048], a2[2048], a3[2048];
        uint32_t n1 = 0, n2 = 0, n3 = 0;
        nn_graph_t gx;
        nn_ctx_t cx = new_ctx("{\"n-predict\":16,\"ctx-size\":512,\"temp\":0}", &gx), cy = 0;
        static char q1[256];
        strcpy(q1, chatml("Name a fruit.")); /* chatml's buffer is reused below */
        EXPECT(nn_set_input_bytes(cx, 0, q1, strlen(q1)), NN_SUCCESS);
        EXPECT(nn_compute(cx), NN_SUCCESS);
        EXPECT(nn_get_output(cx, 0, (uint8_t *)a1, sizeof a1 - 1, &n1), NN_SUCCESS);
        a1[n1] = 0;
        snprintf(p2, sizeof p2, "%s%s<|im_end|>\n%s", q1, a1, chatml("Name another one."));
        EXPECT(nn_set_input_bytes(cx, 0, p2, strlen(p2)), NN_SUCCESS);
        EXPECT(nn_compute(cx), NN_SUCCESS);
        EXPECT(nn_get_output(cx, 0, (uint8_t *)a2, sizeof a2, &n2), NN_SUCCESS);
        EXPECT(nn_get_output(cx, 1, buf, sizeof buf - 1, &w), NN_SUCCESS);
        buf[w] = 0;
        const char *cached = strstr((char *)buf, "\"cached_tokens\":");
        EXPECT(cached != NULL && atoi(cached + 16) > 10, 1); /* the first turn came from the cache */
        EXPECT(nn_init_execution_context(gx, &cy), NN_SUCCESS);
        EXPECT(nn_set_input_bytes(cy, 0, p2, strlen(p2)), NN_SUCCESS);
        EXPECT(nn_compute(cy), NN_SUCCESS);
        EXPECT(nn_get_output(cy, 0, (uint8_t *)a3, sizeof a3, &n3), NN_SUCCESS);
        EXPECT(n2 > 0 && n2 == n3 && memcmp(a2, a3, n2) == 0, 1);
        /* a different conversation in the same two contexts: only the shared head may be reused */
        const char *q3 = chatml("Name a colour.");
        EXPECT(nn_set_input_bytes(cx, 0, q3, strlen(q3)), NN_SUCCESS);
        EXPECT(nn_set_input_bytes(cy, 1, "{\"ctx-size\":300}", 16), NN_SUCCESS); /* a new, empty cache */
        EXPECT(nn_set_input_bytes(cy, 0, q3, strlen(q3)), NN_SUCCESS);
        EXPECT(nn_compute(cx), NN_SUCCESS);
        EXPECT(nn_compute(cy), NN_SUCCESS);
        EXPECT(nn_get_output(cx, 0, (uint8_t *)a2, sizeof a2, &n2), NN_SUCCESS);
        EXPECT(nn_get_output(cy, 0, (uint8_t *)a3, sizeof a3, &n3), NN_SUCCESS);
        EXPECT(n2 > 0 && n2 == n3 && memcmp(a2, a3, n2) == 0, 1);
        nn_finalize_execution_context(cx);
        nn_finalize_execution_context(cy);
        nn_unload(gx);
    }

    /* ---- the shoal token API: statuses (bad pointers trap: see llm-trap) ---- */
    int32_t h = -1, id = 0;
    EXPECT(shoal_llm_open("nope", 4, 0, &h), SHOAL_ST_NOT_FOUND);
    EXPECT(shoal_llm_open("default", 7, -5, &h), SHOAL_ST_INVALID);
    EXPECT(shoal_llm_close(42), SHOAL_ST_INVALID);
    EXPECT(shoal_llm_is_eog(42, 0), -SHOAL_ST_INVALID);
    EXPECT(shoal_llm_open("default", 7, 8, &h), SHOAL_ST_OK);
    shoal_llm_info_t info;
    EXPECT(shoal_llm_info(h, &info), SHOAL_ST_OK);
    float *logits = malloc(sizeof(float) * (size_t)info.n_vocab);
    int32_t ids[16];
    uint32_t n = 0;
    EXPECT(shoal_llm_tokenize(h, "one two three four five six", 27, 0, ids, 2, &n), SHOAL_ST_LIMIT);
    EXPECT(n > 2, 1);
    EXPECT(shoal_llm_tokenize(h, "one two three four five six", 27, 0, ids, 16, &n), SHOAL_ST_OK);
    EXPECT(shoal_llm_eval(h, ids, n, logits, 3), SHOAL_ST_INVALID); /* bad mode */
    id = info.n_vocab;
    EXPECT(shoal_llm_eval(h, &id, 1, logits, SHOAL_LLM_LOGITS_LAST), SHOAL_ST_INVALID); /* id outside vocab */
    EXPECT(shoal_llm_eval(h, ids, n, logits, SHOAL_LLM_LOGITS_LAST), SHOAL_ST_OK);
    EXPECT(shoal_llm_eval(h, ids, n, logits, SHOAL_LLM_LOGITS_LAST), SHOAL_ST_LIMIT); /* 8 positions: full */
    EXPECT(shoal_llm_rewind(h, 99), SHOAL_ST_INVALID);
    EXPECT(shoal_llm_rewind(h, 0), SHOAL_ST_OK);
    char small[2];
    EXPECT(shoal_llm_detokenize(h, ids, n, 0, small, 2, &w), SHOAL_ST_LIMIT);
    EXPECT(w > 2, 1);
    EXPECT(shoal_llm_close(h), SHOAL_ST_OK);
    EXPECT(shoal_llm_close(h), SHOAL_ST_INVALID);
    free(logits);

    /* ---- llm_open_kv: the KV cache in guest memory (last: its buffer grows the memory, and the
     * checks above use the memory size taken at the start) ---- */
    {
        uint64_t need = 0;
        int32_t h = -1;
        EXPECT(shoal_llm_kv_bytes("default", 7, 64, &need), SHOAL_ST_OK);
        EXPECT(need > 0 && need < (64u << 20), 1);
        EXPECT(shoal_llm_kv_bytes("default", 7, 0, &need), SHOAL_ST_INVALID);
        EXPECT(shoal_llm_kv_bytes("nope", 4, 64, &need), SHOAL_ST_NOT_FOUND);
        shoal_llm_kv_bytes("default", 7, 64, &need);
        uint8_t *kv = aligned_alloc(16, (size_t)need + 64);
        EXPECT(shoal_llm_open_kv("default", 7, 64, kv, (uint32_t)need - 4, &h), SHOAL_ST_LIMIT); /* short */
        EXPECT(shoal_llm_open_kv("default", 7, 0, kv, (uint32_t)need, &h), SHOAL_ST_INVALID);
        EXPECT(shoal_llm_open_kv("default", 7, 64, kv, (uint32_t)need, &h), SHOAL_ST_OK);
        int32_t id = 1, next = -1;
        EXPECT(shoal_llm_eval_greedy(h, &id, 1, &next), SHOAL_ST_OK);
        EXPECT(next >= 0, 1);
        EXPECT(shoal_llm_close(h), SHOAL_ST_OK);
        free(kv);
    }

    printf("nn_abuse: %d checks, %d misses\n", checks, misses);
    return misses ? 1 : 0;
}
