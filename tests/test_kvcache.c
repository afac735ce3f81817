/* test_kvcache.c — the KV cache as safetensors with the real SmolLM2 model: a context that
 * evaluates a prompt, saves its cache, and a new context that loads it produce bit-identical
 * logits and cache rows for the next tokens; bad files (another model, corrupt, truncated,
 * too long for the context) are refused and the target context is untouched. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/sha256.h"
#include "snapshot/kvcache.h"
#include "snapshot/safetensors.h"

typedef struct fixture {
    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    shoal_threadpool_t *pool;
    uint8_t sha[32];
} fixture_t;

static char g_model[4096], g_dir[256];
static const int32_t k_prompt[] = {1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198};
#define NP ((int)(sizeof k_prompt / sizeof k_prompt[0]))

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (shoal_gguf_open(g_model, &f->g) != SHOAL_OK) {
        fprintf(stderr, "model not found (%s): %s\n", g_model, shoal_last_error());
        free(f);
        *state = NULL;
        return 0;
    }
    assert_int_equal(shoal_llama_model_new(f->g, &f->m), SHOAL_OK);
    assert_int_equal(shoal_threadpool_new(2, &f->pool), SHOAL_OK);
    shoal_model_sha256(f->g, f->sha);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    if (!f) return 0;
    shoal_threadpool_delete(f->pool);
    shoal_llama_model_delete(f->m);
    shoal_gguf_close(f->g);
    free(f);
    return 0;
}

#define NEED_MODEL(f)                                                                                                  \
    do {                                                                                                               \
        if (!(f)) skip();                                                                                              \
    } while (0)

static shoal_engine_t *new_ctx(fixture_t *f, int n_ctx)
{
    shoal_engine_params_t p;
    shoal_engine_params_init(&p);
    p.n_ctx = n_ctx;
    p.pool = f->pool;
    shoal_engine_t *c = NULL;
    assert_int_equal(shoal_engine_new(f->m, &p, &c), SHOAL_OK);
    return c;
}

static int argmax(const float *x, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return b;
}

/* Rows [0, n) of every layer's K and V must be equal bytes. */
static void assert_same_cache(fixture_t *f, shoal_engine_t *a, shoal_engine_t *b, int n)
{
    for (int l = 0; l < f->m->hp.n_layer; l++) {
        const float *ka, *va, *kb, *vb;
        const size_t rb = (size_t)f->m->hp.kv_dim * sizeof(float);
        assert_int_equal(shoal_engine_kv_host(a, l, &ka, &va), SHOAL_OK);
        assert_int_equal(shoal_engine_kv_host(b, l, &kb, &vb), SHOAL_OK);
        assert_memory_equal(ka, kb, (size_t)n * rb);
        assert_memory_equal(va, vb, (size_t)n * rb);
    }
}

static void test_round_trip_bit_identical(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    const int vocab = f->m->hp.vocab;
    char path[512];
    snprintf(path, sizeof path, "%s/kv.safetensors", g_dir);
    shoal_engine_t *a = new_ctx(f, 128), *b = new_ctx(f, 64);
    float *la = malloc(sizeof(float) * vocab), *lb = malloc(sizeof(float) * vocab);
    assert_int_equal(shoal_engine_eval(a, k_prompt, NP, 0, la, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
    assert_int_equal(shoal_kv_save_safetensors(a, f->sha, path), SHOAL_OK);
    assert_int_equal(shoal_kv_load_safetensors(b, f->sha, path), SHOAL_OK);
    assert_int_equal(shoal_engine_n_past(b), NP);
    assert_same_cache(f, a, b, NP);
    /* Greedy continuation from both: the same tokens and the same logits, bit for bit. */
    int32_t tok = argmax(la, vocab);
    for (int step = 0; step < 6; step++) {
        assert_int_equal(shoal_engine_eval(a, &tok, 1, NP + step, la, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        assert_int_equal(shoal_engine_eval(b, &tok, 1, NP + step, lb, SHOAL_LLAMA_LOGITS_LAST), SHOAL_OK);
        assert_memory_equal(la, lb, sizeof(float) * vocab);
        tok = argmax(la, vocab);
    }
    assert_same_cache(f, a, b, NP + 6);
    /* The in-memory form is the file's bytes. */
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(shoal_kv_save_safetensors(a, f->sha, path), SHOAL_OK);
    assert_int_equal(shoal_kv_serialize(a, f->sha, &buf, &len), SHOAL_OK);
    FILE *fp = fopen(path, "rb");
    uint8_t *file = malloc(len + 1);
    assert_int_equal(fread(file, 1, len + 1, fp), len);
    fclose(fp);
    assert_memory_equal(buf, file, len);
    /* Header and layout: 2 x layers tensors of [n_past, kv_dim] F32, metadata naming the model. */
    shoal_st_t *st = NULL;
    assert_int_equal(shoal_safetensors_parse(buf, len, &st), SHOAL_OK);
    assert_int_equal(shoal_safetensors_count(st), 2 * (size_t)f->m->hp.n_layer);
    const shoal_st_tensor_t *t = NULL;
    uint64_t shape[2] = {(uint64_t)NP + 6, (uint64_t)f->m->hp.kv_dim};
    assert_int_equal(shoal_safetensors_get(st, "layers.29.v", "F32", 2, shape, &t), SHOAL_OK);
    assert_string_equal(shoal_safetensors_meta(st, "n_past"), "22");
    char hex[65];
    shoal_hex(f->sha, 32, hex);
    assert_string_equal(shoal_safetensors_meta(st, "model_sha256"), hex);
    shoal_safetensors_free(st);
    free(buf), free(file), free(la), free(lb);
    shoal_engine_delete(a);
    shoal_engine_delete(b);
}

static void test_empty_cache(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    char path[512];
    snprintf(path, sizeof path, "%s/empty.safetensors", g_dir);
    shoal_engine_t *a = new_ctx(f, 32), *b = new_ctx(f, 32);
    assert_int_equal(shoal_engine_eval(b, k_prompt, 4, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    assert_int_equal(shoal_kv_save_safetensors(a, f->sha, path), SHOAL_OK);
    assert_int_equal(shoal_kv_load_safetensors(b, f->sha, path), SHOAL_OK);
    assert_int_equal(shoal_engine_n_past(b), 0);
    shoal_engine_delete(a);
    shoal_engine_delete(b);
}

static uint8_t *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    fseek(fp, 0, SEEK_SET);
    uint8_t *b = malloc(*n);
    assert_int_equal(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

static void spit(const char *path, const uint8_t *b, size_t n)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(b, 1, n, fp), n);
    fclose(fp);
}

static void expect_refused(shoal_engine_t *c, const uint8_t *sha, const char *path, const char *needle)
{
    shoal_status_t s = shoal_kv_load_safetensors(c, sha, path);
    if (s == SHOAL_OK) fail_msg("%s accepted", path);
    if (needle && !strstr(shoal_last_error(), needle)) fail_msg("message \"%s\" lacks \"%s\"", shoal_last_error(), needle);
}

static void test_refusals_leave_context_untouched(void **state)
{
    fixture_t *f = *state;
    NEED_MODEL(f);
    char good[512], bad[512];
    snprintf(good, sizeof good, "%s/good.safetensors", g_dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", g_dir);
    shoal_engine_t *a = new_ctx(f, 64), *b = new_ctx(f, 64), *small = new_ctx(f, 8);
    assert_int_equal(shoal_engine_eval(a, k_prompt, 12, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    assert_int_equal(shoal_kv_save_safetensors(a, f->sha, good), SHOAL_OK);
    /* b holds another sequence; every refused load must leave it exactly so. */
    assert_int_equal(shoal_engine_eval(b, k_prompt + 5, 9, 0, NULL, SHOAL_LLAMA_LOGITS_NONE), SHOAL_OK);
    const size_t rb = (size_t)f->m->hp.kv_dim * sizeof(float);
    const float *k0, *v0;
    assert_int_equal(shoal_engine_kv_host(b, 0, &k0, &v0), SHOAL_OK);
    uint8_t *k_before = malloc(64 * rb);
    memcpy(k_before, k0, 64 * rb);

    uint8_t other[32];
    memcpy(other, f->sha, 32);
    other[0] ^= 1;
    expect_refused(b, other, good, "another model");
    expect_refused(small, f->sha, good, "n_past");

    size_t n;
    uint8_t *orig = slurp(good, &n), *c = malloc(n);
    memcpy(c, orig, n);
    c[n - 100] ^= 0x40; /* inside layer 29's V rows */
    spit(bad, c, n);
    expect_refused(b, f->sha, bad, "checksum");
    uint64_t hl;
    memcpy(&hl, orig, 8);
    for (size_t off = 0; off < 8 + hl; off += 7) { /* the length and JSON header */
        memcpy(c, orig, n);
        c[off] ^= 0x21;
        spit(bad, c, n);
        if (shoal_kv_load_safetensors(b, f->sha, bad) == SHOAL_OK) fail_msg("flip at %zu: '%c' accepted", off, orig[off]);
    }
    for (size_t len = 0; len < n; len += len < 64 ? 7 : n / 5) {
        spit(bad, orig, len);
        expect_refused(b, f->sha, bad, NULL);
    }
    spit(bad, orig, n - 1);
    expect_refused(b, f->sha, bad, NULL);
    spit(bad, (const uint8_t *)"not a safetensors file at all", 29);
    expect_refused(b, f->sha, bad, "safetensors");

    assert_int_equal(shoal_engine_n_past(b), 9);
    assert_memory_equal(k0, k_before, 64 * rb);

    /* An empty context takes the one-pass path (rows written and checksummed together): a corrupt
     * file is still refused, and nothing becomes valid; the good file then loads exactly. */
    shoal_engine_t *e = new_ctx(f, 64);
    memcpy(c, orig, n);
    c[n - 100] ^= 0x40;
    spit(bad, c, n);
    expect_refused(e, f->sha, bad, "checksum");
    assert_int_equal(shoal_engine_n_past(e), 0);
    assert_int_equal(shoal_kv_load_safetensors(e, f->sha, good), SHOAL_OK);
    assert_int_equal(shoal_engine_n_past(e), 12);
    const float *ka, *va, *ke, *ve;
    assert_int_equal(shoal_engine_kv_host(a, 3, &ka, &va), SHOAL_OK);
    assert_int_equal(shoal_engine_kv_host(e, 3, &ke, &ve), SHOAL_OK);
    assert_memory_equal(ka, ke, 12 * rb);
    assert_memory_equal(va, ve, 12 * rb);
    shoal_engine_delete(e);
    free(orig), free(c), free(k_before);
    shoal_engine_delete(a);
    shoal_engine_delete(b);
    shoal_engine_delete(small);
}

int main(void)
{
    const char *deps = getenv("SHOAL_DEPS");
    snprintf(g_model, sizeof g_model, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
    snprintf(g_dir, sizeof g_dir, "/tmp/shoal-test-kv-XXXXXX");
    if (!mkdtemp(g_dir)) return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_bit_identical),
        cmocka_unit_test(test_empty_cache),
        cmocka_unit_test(test_refusals_leave_context_untouched),
    };
    int rc = cmocka_run_group_tests(tests, setup, teardown);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (!getenv("KV_TEST_KEEP") && system(cmd) != 0 && !rc) rc = 1;
    return rc;
}
