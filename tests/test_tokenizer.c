/* test_tokenizer.c — token ids identical to llama.cpp's tokenizer: the SmolLM2 fixture (generated
 * by llama.cpp on the real model), invalid UTF-8, the llama3 pre-tokenizer and SentencePiece on
 * synthetic vocabularies (expected ids produced by llama.cpp on the same vocabularies), round
 * trips, and every error path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf_builder.h"
#include "model/gguf.h"
#include "model/tokenizer.h"

static shoal_gguf_t *g_model;
static shoal_tokenizer_t *g_tok;

static int setup_model(void **state)
{
    (void)state;
    const char *deps = getenv("SHOAL_DEPS");
    char path[4096];
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
    if (shoal_gguf_open(path, &g_model) != SHOAL_OK) {
        fprintf(stderr, "model not available (%s): %s\n", path, shoal_last_error());
        g_model = NULL;
        return 0;
    }
    if (shoal_tokenizer_new_from_gguf(g_model, &g_tok) != SHOAL_OK) {
        fprintf(stderr, "tokenizer: %s\n", shoal_last_error());
        return -1;
    }
    return 0;
}

static int teardown_model(void **state)
{
    (void)state;
    shoal_tokenizer_delete(g_tok);
    shoal_gguf_close(g_model);
    return 0;
}

#define NEED_MODEL()                                                                                                   \
    do {                                                                                                               \
        if (!g_tok)                                                                                                    \
            skip();                                                                                                    \
    } while (0)

/* Encodes and compares with the expected ids; prints both on mismatch. */
static int encode_eq(const shoal_tokenizer_t *t, const char *text, size_t len, bool ps, bool bos, const int32_t *want,
                     size_t n_want)
{
    int32_t ids[512];
    size_t n = 0;
    shoal_status_t s = shoal_tokenizer_encode(t, text, len, ps, bos, ids, 512, &n);
    if (s != SHOAL_OK) {
        fprintf(stderr, "encode failed: %s\n", shoal_last_error());
        return 0;
    }
    if (n == n_want && (n == 0 || memcmp(ids, want, n * sizeof *ids) == 0))
        return 1;
    fprintf(stderr, "mismatch for %zu-byte text (ps=%d bos=%d)\n  want:", len, ps, bos);
    for (size_t i = 0; i < n_want; i++)
        fprintf(stderr, " %d", want[i]);
    fprintf(stderr, "\n  got: ");
    for (size_t i = 0; i < n; i++)
        fprintf(stderr, " %d", ids[i]);
    fprintf(stderr, "\n");
    return 0;
}

#define EXPECT(t, text, ps, bos, ...)                                                                                  \
    do {                                                                                                               \
        static const int32_t want_[] = {__VA_ARGS__};                                                                  \
        assert_true(encode_eq(t, text, sizeof(text) - 1, ps, bos, want_, sizeof want_ / sizeof want_[0]));             \
    } while (0)
#define EXPECT_NONE(t, text, ps, bos) assert_true(encode_eq(t, text, sizeof(text) - 1, ps, bos, NULL, 0))

/* ---------------------------------------------------------------- SmolLM2 (real model) */

static void test_fixture_smollm2(void **state)
{
    (void)state;
    NEED_MODEL();
    const char *src = getenv("SHOAL_SOURCE_DIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/tokens_smollm2.json", src ? src : ".");
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (!root) {
        fprintf(stderr, "fixture %s not readable: %s\n", path, err.text);
        skip();
    }
    json_t *cases = json_object_get(root, "cases");
    assert_true(json_is_array(cases));
    size_t n_cases = json_array_size(cases), ok_ids = 0, ok_detok = 0, n_rt = 0, ok_rt = 0;
    assert_true(n_cases > 0);
    size_t cap = 1 << 16;
    int32_t *ids = malloc(cap * sizeof *ids);
    char *buf = malloc(1 << 20);
    for (size_t i = 0; i < n_cases; i++) {
        json_t *c = json_array_get(cases, i);
        json_t *jt = json_object_get(c, "text"), *jids = json_object_get(c, "ids");
        const char *text = json_string_value(jt);
        size_t len = json_string_length(jt);
        bool ps = json_is_true(json_object_get(c, "parse_special"));
        /* add_bos is llama_tokenize's add_special: BOS only where the model asks for it */
        bool bos = json_is_true(json_object_get(c, "add_bos")) && shoal_tokenizer_wants_bos(g_tok);
        size_t n = 0;
        assert_int_equal(shoal_tokenizer_encode(g_tok, text, len, ps, bos, ids, cap, &n), SHOAL_OK);
        bool same = n == json_array_size(jids);
        for (size_t k = 0; same && k < n; k++)
            same = ids[k] == (int32_t)json_integer_value(json_array_get(jids, k));
        if (same)
            ok_ids++;
        else
            fprintf(stderr, "case %s: ids differ\n", json_string_value(json_object_get(c, "name")));
        /* detok: the reference's detokenize with special tokens rendered */
        size_t w = 0;
        assert_int_equal(shoal_tokenizer_decode(g_tok, ids, n, true, buf, 1 << 20, &w), SHOAL_OK);
        json_t *jd = json_object_get(c, "detok");
        if (jd && w == json_string_length(jd) && memcmp(buf, json_string_value(jd), w) == 0)
            ok_detok++;
        else if (jd)
            fprintf(stderr, "case %s: detok differs\n", json_string_value(json_object_get(c, "name")));
        else
            ok_detok++;
        if (!ps) { /* plain text: decode(encode(x)) == x */
            n_rt++;
            assert_int_equal(shoal_tokenizer_decode(g_tok, ids, n, false, buf, 1 << 20, &w), SHOAL_OK);
            if (w == len && memcmp(buf, text, len) == 0)
                ok_rt++;
            else
                fprintf(stderr, "case %s: round trip differs\n", json_string_value(json_object_get(c, "name")));
        }
    }
    printf("tokens_smollm2.json: ids identical in %zu/%zu cases, detokenized text in %zu/%zu, "
           "round trip in %zu/%zu plain-text cases\n",
           ok_ids, n_cases, ok_detok, n_cases, ok_rt, n_rt);
    free(ids);
    free(buf);
    json_decref(root);
    assert_int_equal(ok_ids, n_cases);
    assert_int_equal(ok_detok, n_cases);
    assert_int_equal(ok_rt, n_rt);
}

/* Invalid UTF-8: each byte that does not start a well-formed sequence is U+FFFD (token 24211
 * in SmolLM2); overlong forms and surrogates pass through decoded. Expected ids: llama.cpp. */
static void test_invalid_utf8(void **state)
{
    (void)state;
    NEED_MODEL();
    EXPECT(g_tok, "\xff\xfe bad \x80", false, false, 24211, 24211, 3309, 216, 24211);
    EXPECT(g_tok, "\xe2\x82 truncated", false, false, 24211, 24211, 45641);
    EXPECT(g_tok, "\xc0\x80 overlong", false, false, 190, 690, 5480);
    EXPECT(g_tok, "\xed\xa0\x80 surrogate", false, false, 184, 250, 218, 40918);
    EXPECT(g_tok, "ok\xf0\x9f\x98", false, false, 2231, 24211, 24211, 24211);
    EXPECT(g_tok, "a\x80\x80\x80" "b", false, false, 81, 24211, 24211, 24211, 82);
    /* Above U+10FFFF the reference throws; here the lead byte is invalid like any other. */
    EXPECT(g_tok, "\xf5\x80\x80\x80", false, false, 24211, 24211, 24211, 24211);
}

static void test_specials_smollm2(void **state)
{
    (void)state;
    NEED_MODEL();
    const shoal_tokenizer_t *t = g_tok;
    assert_int_equal(shoal_tokenizer_kind(t), SHOAL_TOKENIZER_BPE);
    assert_string_equal(shoal_tokenizer_pre(t), "smollm");
    assert_int_equal(shoal_tokenizer_n_vocab(t), 49152);
    assert_int_equal(shoal_tokenizer_bos(t), 1);
    assert_int_equal(shoal_tokenizer_eos(t), 2);
    assert_int_equal(shoal_tokenizer_eot(t), 2); /* <|im_end|> */
    assert_false(shoal_tokenizer_wants_bos(t));
    assert_true(shoal_tokenizer_is_eog(t, 2));
    assert_true(shoal_tokenizer_is_eog(t, 0)); /* <|endoftext|> */
    assert_true(shoal_tokenizer_is_eog(t, 4)); /* <reponame>: llama.cpp's FIM repository token */
    assert_false(shoal_tokenizer_is_eog(t, 1));
    assert_false(shoal_tokenizer_is_eog(t, 3)); /* <repo_name> is not one of those names */
    assert_false(shoal_tokenizer_is_eog(t, -1));
    assert_false(shoal_tokenizer_is_eog(t, 49152));
    assert_int_equal(shoal_tokenizer_token_type(t, 1), SHOAL_TOKEN_CONTROL);
    assert_int_equal(shoal_tokenizer_token_type(t, 100), SHOAL_TOKEN_NORMAL);
    assert_int_equal(shoal_tokenizer_token_type(t, 99999), SHOAL_TOKEN_UNDEFINED);
    assert_true(shoal_tokenizer_is_control(t, 1));
    assert_false(shoal_tokenizer_is_control(t, 100));
    assert_int_equal(shoal_tokenizer_find(t, "<|im_start|>", 12), 1);
    assert_int_equal(shoal_tokenizer_find(t, "no such token at all", 20), -1);
    size_t l;
    const char *txt = shoal_tokenizer_token_text(t, 2, &l);
    assert_non_null(txt);
    assert_int_equal(l, 10);
    assert_memory_equal(txt, "<|im_end|>", 10);
    assert_null(shoal_tokenizer_token_text(t, -3, &l));

    char buf[64];
    size_t n;
    assert_int_equal(shoal_tokenizer_token_to_piece(t, 1, false, buf, sizeof buf, &n), SHOAL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(shoal_tokenizer_token_to_piece(t, 1, true, buf, sizeof buf, &n), SHOAL_OK);
    assert_int_equal(n, 12);
    assert_memory_equal(buf, "<|im_start|>", 12);
    /* byte-level alphabet back to bytes: "Ġworld" -> " world", "Ċ" -> "\n" */
    int32_t id = shoal_tokenizer_find(t, "\xc4\xa0world", 7);
    assert_true(id >= 0);
    assert_int_equal(shoal_tokenizer_token_to_piece(t, id, false, buf, sizeof buf, &n), SHOAL_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, " world", 6);
    assert_int_equal(shoal_tokenizer_token_to_piece(t, 198, false, buf, sizeof buf, &n), SHOAL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(buf[0], '\n');

    /* control tokens are text unless parse_special; longest match wins inside runs */
    EXPECT(g_tok, "<|im_start|>user\nhi<|im_end|>", true, false, 1, 4093, 198, 6004, 2);
    EXPECT(g_tok, "x<|endoftext|>y", true, false, 104, 0, 105);
    int32_t ids[64];
    assert_int_equal(shoal_tokenizer_encode(t, "<|im_start|>", 12, false, false, ids, 64, &n), SHOAL_OK);
    assert_true(n > 1);
    for (size_t i = 0; i < n; i++)
        assert_false(shoal_tokenizer_is_control(t, ids[i]));
    /* BOS on request, even where the model does not ask for it */
    EXPECT(g_tok, "hi", false, true, 1, 6004);
}

static void test_roundtrip_and_large(void **state)
{
    (void)state;
    NEED_MODEL();
    /* A ~1 MiB mixed text: exercises the scratch sizing and the merge heap on long words. */
    static const char *const parts[] = {"The quick brown fox ", "    indented\n", "\t\tcode(x, y) {}\n",
                                        "caf\xc3\xa9 na\xc3\xafve ", "\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e ",
                                        "\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd ", "12345 ",
                                        "don't ", "\n\n\n", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
    size_t cap = 1 << 20, len = 0;
    char *text = malloc(cap + 64);
    for (unsigned k = 0; len < cap; k = k * 1103515245u + 12345u)
        for (const char *p = parts[(k >> 16) % 10]; *p; p++)
            text[len++] = *p;
    size_t n = 0;
    assert_int_equal(shoal_tokenizer_encode(g_tok, text, len, false, false, NULL, 0, &n), SHOAL_E_LIMIT);
    assert_true(n > len / 8);
    int32_t *ids = malloc(n * sizeof *ids);
    size_t n2 = 0;
    assert_int_equal(shoal_tokenizer_encode(g_tok, text, len, false, false, ids, n, &n2), SHOAL_OK);
    assert_int_equal(n2, n);
    char *back = malloc(len + 1);
    size_t w = 0;
    assert_int_equal(shoal_tokenizer_decode(g_tok, ids, n, false, back, len, &w), SHOAL_OK);
    assert_int_equal(w, len);
    assert_memory_equal(back, text, len);
    /* a single run of 20000 spaces and one 20000-letter word */
    char *sp = malloc(20001);
    memset(sp, ' ', 20000);
    sp[20000] = 'x';
    assert_int_equal(shoal_tokenizer_encode(g_tok, sp, 20001, false, false, ids, n, &n2), SHOAL_OK);
    assert_int_equal(shoal_tokenizer_decode(g_tok, ids, n2, false, back, len, &w), SHOAL_OK);
    assert_int_equal(w, 20001);
    assert_memory_equal(back, sp, 20001);
    memset(sp, 'q', 20000);
    assert_int_equal(shoal_tokenizer_encode(g_tok, sp, 20000, false, false, ids, n, &n2), SHOAL_OK);
    assert_int_equal(shoal_tokenizer_decode(g_tok, ids, n2, false, back, len, &w), SHOAL_OK);
    assert_int_equal(w, 20000);
    assert_memory_equal(back, sp, 20000);
    free(sp);
    free(back);
    free(ids);
    free(text);
}

static void test_cap_errors(void **state)
{
    (void)state;
    NEED_MODEL();
    const char *text = "The quick brown fox jumps over the lazy dog.";
    int32_t ids[4] = {-7, -7, -7, -7};
    size_t n = 0;
    assert_int_equal(shoal_tokenizer_encode(g_tok, text, strlen(text), false, false, ids, 3, &n), SHOAL_E_LIMIT);
    assert_int_equal(n, 10); /* the number needed */
    assert_int_equal(ids[0], 504); /* the first cap ids are written */
    assert_int_equal(ids[3], -7);  /* and nothing past cap */
    assert_non_null(strstr(shoal_last_error(), "10 tokens"));
    assert_int_equal(shoal_tokenizer_encode(g_tok, text, strlen(text), false, false, NULL, 0, &n), SHOAL_E_LIMIT);
    assert_int_equal(n, 10);
    assert_int_equal(shoal_tokenizer_encode(g_tok, "", 0, false, false, NULL, 0, &n), SHOAL_OK);
    assert_int_equal(n, 0);
    assert_int_equal(shoal_tokenizer_encode(g_tok, NULL, 5, false, false, ids, 4, &n), SHOAL_E_INVALID);
    assert_int_equal(shoal_tokenizer_encode(g_tok, text, 4, false, false, ids, 4, NULL), SHOAL_E_INVALID);

    char buf[8];
    int32_t two[2] = {504, 2365};
    assert_int_equal(shoal_tokenizer_decode(g_tok, two, 2, false, buf, 3, &n), SHOAL_E_LIMIT);
    assert_int_equal(n, 9); /* "The quick" */
    int32_t bad[2] = {504, 49152};
    assert_int_equal(shoal_tokenizer_decode(g_tok, bad, 2, false, buf, 8, &n), SHOAL_E_INVALID);
    assert_non_null(strstr(shoal_last_error(), "49152"));
    bad[1] = -1;
    assert_int_equal(shoal_tokenizer_decode(g_tok, bad, 2, false, buf, 8, &n), SHOAL_E_INVALID);
    assert_int_equal(shoal_tokenizer_token_to_piece(g_tok, 1, true, buf, 4, &n), SHOAL_E_LIMIT);
    assert_int_equal(n, 12);
    assert_int_equal(shoal_tokenizer_token_to_piece(g_tok, 70000, true, buf, 8, &n), SHOAL_E_INVALID);
}

/* ---------------------------------------------------------------- llama3 pre-tokenizer */

/* Copies a string array from the model into the builder. */
static void copy_strs(gb_t *b, const char *key)
{
    shoal_gguf_array_t a;
    assert_int_equal(shoal_gguf_get_array(g_model, key, &a), SHOAL_OK);
    gb_kv_arr(b, key, 8, a.len);
    for (uint64_t i = 0; i < a.len; i++) {
        const char *p;
        size_t l;
        assert_int_equal(shoal_gguf_array_string(&a, i, &p, &l), SHOAL_OK);
        gb_put_u64(&b->kv, l);
        gb_put(&b->kv, p, l);
    }
}

/* SmolLM2's vocabulary and merges behind the Llama 3 pre-tokenizer (a file llama.cpp reads the
 * same way; the expected ids below are what it produced). */
static void test_llama3_pre(void **state)
{
    (void)state;
    NEED_MODEL();
    gb_t b;
    gb_init(&b, 3);
    gb_kv_str(&b, "tokenizer.ggml.model", "gpt2");
    gb_kv_str(&b, "tokenizer.ggml.pre", "llama-bpe");
    copy_strs(&b, "tokenizer.ggml.tokens");
    copy_strs(&b, "tokenizer.ggml.merges");
    shoal_gguf_array_t ty;
    assert_int_equal(shoal_gguf_get_array(g_model, "tokenizer.ggml.token_type", &ty), SHOAL_OK);
    gb_kv_arr(&b, "tokenizer.ggml.token_type", 5, ty.len);
    for (uint64_t i = 0; i < ty.len; i++) {
        int64_t v;
        assert_int_equal(shoal_gguf_array_i64(&ty, i, &v), SHOAL_OK);
        int32_t v32 = (int32_t)v;
        gb_put(&b.kv, &v32, 4);
    }
    gb_kv_u32(&b, "tokenizer.ggml.bos_token_id", 1);
    gb_kv_u32(&b, "tokenizer.ggml.eos_token_id", 2);
    gb_kv_bool(&b, "tokenizer.ggml.add_bos_token", 1);
    gb_finish(&b, 0);
    shoal_gguf_t *g;
    shoal_tokenizer_t *t;
    assert_int_equal(shoal_gguf_open_buffer(b.out.p, b.out.n, &g), SHOAL_OK);
    assert_int_equal(shoal_tokenizer_new_from_gguf(g, &t), SHOAL_OK);
    assert_string_equal(shoal_tokenizer_pre(t), "llama3");
    assert_true(shoal_tokenizer_wants_bos(t));
    EXPECT(t, "I'LL DON'T we'Re", false, false, 57, 23, 16421, 422, 2154, 23, 68, 392, 23, 3733);
    EXPECT(t, "1234567 89", false, false, 33, 34, 35, 36, 37, 38, 39, 216, 40, 41);
    EXPECT(t, "Hello\r\n\r\n  world\n", false, false, 19556, 18682, 216, 905, 198);
    EXPECT(t, "x  \n\n  y", false, false, 104, 256, 1116, 216, 329);
    EXPECT(t, "...\n\nok!!\n", false, false, 2026, 1116, 2231, 10095, 198);
    EXPECT(t, " \xd9\xa3\xd9\xa4 \xc2\xbd", false, false, 216, 164, 113, 164, 114, 216, 16738);
    EXPECT(t, "\tcode(x)", false, false, 197, 4635, 24, 104, 25);
    EXPECT(t, "<|im_start|>hi", false, false, 44, 108, 306, 79, 3738, 108, 46, 6004);
    EXPECT(t, "<|im_start|>hi", true, false, 1, 6004);
    EXPECT(t, "hi", false, true, 1, 6004);
    shoal_tokenizer_delete(t);
    shoal_gguf_close(g);
    gb_free(&b);
}

/* ---------------------------------------------------------------- SentencePiece */

#define SPM_U "\xe2\x96\x81" /* U+2581 */
static const char *const k_spm_normal[] = {
    SPM_U,       "a",         "b",     "c",  "d",       "h",         "e",     "l",      "o",  "w",
    "r",         "he",        "ll",    "llo", "lo",     "el",        SPM_U "h", SPM_U "he", SPM_U "hello",
    SPM_U "w",   SPM_U "wor", "or",    "ld", SPM_U "world", "ab",    "bc",    "abc",    SPM_U SPM_U,
    "\xc3\xa9",  "h\xc3\xa9",
};
#define SPM_N_NORMAL (sizeof k_spm_normal / sizeof k_spm_normal[0])

/* <unk> <s> </s>, the 256 byte tokens, the normal tokens (score -1, -2, ... in order), a
 * USER_DEFINED "<user>" and a CONTROL "<|im_start|>"; scores only if with_scores. */
static shoal_tokenizer_t *spm_make(gb_t *b, shoal_gguf_t **g, bool with_scores)
{
    const uint32_t n = 3 + 256 + SPM_N_NORMAL + 2;
    gb_init(b, 3);
    gb_kv_str(b, "tokenizer.ggml.model", "llama");
    gb_kv_arr(b, "tokenizer.ggml.tokens", 8, n);
    gb_put_str(&b->kv, "<unk>");
    gb_put_str(&b->kv, "<s>");
    gb_put_str(&b->kv, "</s>");
    for (int i = 0; i < 256; i++) {
        char s[8];
        snprintf(s, sizeof s, "<0x%02X>", i);
        gb_put_str(&b->kv, s);
    }
    for (size_t i = 0; i < SPM_N_NORMAL; i++)
        gb_put_str(&b->kv, k_spm_normal[i]);
    gb_put_str(&b->kv, "<user>");
    gb_put_str(&b->kv, "<|im_start|>");
    gb_kv_arr(b, "tokenizer.ggml.token_type", 5, n);
    for (uint32_t i = 0; i < n; i++) {
        int32_t ty = i == 0 ? 2 : i < 3 ? 3 : i < 259 ? 6 : i < 259 + SPM_N_NORMAL ? 1 : i == n - 2 ? 4 : 3;
        gb_put(&b->kv, &ty, 4);
    }
    if (with_scores) {
        gb_kv_arr(b, "tokenizer.ggml.scores", 6, n);
        for (uint32_t i = 0; i < n; i++) {
            float sc = i >= 259 && i < 259 + SPM_N_NORMAL ? -(float)(i - 258) : 0.0f;
            gb_put(&b->kv, &sc, 4);
        }
    }
    gb_kv_u32(b, "tokenizer.ggml.bos_token_id", 1);
    gb_kv_u32(b, "tokenizer.ggml.eos_token_id", 2);
    gb_kv_u32(b, "tokenizer.ggml.unknown_token_id", 0);
    gb_finish(b, 0);
    shoal_tokenizer_t *t = NULL;
    assert_int_equal(shoal_gguf_open_buffer(b->out.p, b->out.n, g), SHOAL_OK);
    assert_int_equal(shoal_tokenizer_new_from_gguf(*g, &t), SHOAL_OK);
    return t;
}

static void test_spm(void **state)
{
    (void)state;
    gb_t b;
    shoal_gguf_t *g;
    shoal_tokenizer_t *t = spm_make(&b, &g, true);
    assert_int_equal(shoal_tokenizer_kind(t), SHOAL_TOKENIZER_SPM);
    assert_true(shoal_tokenizer_wants_bos(t)); /* SPM default */
    assert_int_equal(shoal_tokenizer_unk(t), 0);
    /* expected ids: llama.cpp on the same vocabulary (same for parse_special on and off
     * except where a CONTROL token is written in the text) */
    for (int ps = 0; ps < 2; ps++) {
        EXPECT(t, "hello world", ps, false, 277, 282);
        EXPECT(t, " hello", ps, false, 259, 277);
        EXPECT(t, "hello  world", ps, false, 277, 259, 282);
        EXPECT(t, "abc", ps, false, 259, 285);
        EXPECT(t, "abcd", ps, false, 259, 285, 263);
        EXPECT(t, "xyz", ps, false, 259, 123, 124, 125);
        EXPECT(t, "h\xc3\xa9llo", ps, false, 275, 287, 272);
        EXPECT(t, "\xe6\x97\xa5", ps, false, 259, 233, 154, 168);
        EXPECT(t, "<user>hello", ps, false, 289, 277);
        EXPECT_NONE(t, "", ps, false);
        EXPECT(t, "  ", ps, false, 286, 259);
        EXPECT(t, "a\xff" "b", ps, false, 259, 260, 258, 101);
        EXPECT(t, "hello world", ps, true, 1, 277, 282);
        EXPECT(t, "", ps, true, 1);
    }
    EXPECT(t, "<|im_start|>hello", false, false, 259, 63, 127, 108, 112, 98, 118, 119, 260, 269, 119, 127, 65, 270,
           272);
    EXPECT(t, "<|im_start|>hello", true, false, 290, 277);

    /* decode: U+2581 -> space, <0xNN> -> byte, the added leading space dropped */
    static const char *const texts[] = {"hello world", ("xyz \xe6\x97\xa5 a\xff" "b"), "  two  spaces ", "h\xc3\xa9llo"};
    for (size_t k = 0; k < 4; k++) {
        int32_t ids[128];
        size_t n, w;
        char out[128];
        size_t len = strlen(texts[k]);
        assert_int_equal(shoal_tokenizer_encode(t, texts[k], len, false, false, ids, 128, &n), SHOAL_OK);
        assert_int_equal(shoal_tokenizer_decode(t, ids, n, false, out, sizeof out, &w), SHOAL_OK);
        assert_int_equal(w, len);
        assert_memory_equal(out, texts[k], len);
    }
    char p[16];
    size_t n;
    assert_int_equal(shoal_tokenizer_token_to_piece(t, 3 + 0x41, false, p, sizeof p, &n), SHOAL_OK);
    assert_int_equal(n, 1);
    assert_int_equal(p[0], 'A');
    assert_int_equal(shoal_tokenizer_token_to_piece(t, 277, false, p, sizeof p, &n), SHOAL_OK);
    assert_int_equal(n, 6);
    assert_memory_equal(p, " hello", 6);
    assert_int_equal(shoal_tokenizer_token_to_piece(t, 0, false, p, sizeof p, &n), SHOAL_OK); /* <unk> hidden */
    assert_int_equal(n, 0);
    assert_int_equal(shoal_tokenizer_token_to_piece(t, 289, false, p, sizeof p, &n), SHOAL_OK); /* user-defined */
    assert_int_equal(n, 6);
    shoal_tokenizer_delete(t);
    shoal_gguf_close(g);
    gb_free(&b);

    /* without scores every merge ties: still deterministic (leftmost first) */
    t = spm_make(&b, &g, false);
    int32_t ids[32];
    size_t n1, n2;
    assert_int_equal(shoal_tokenizer_encode(t, "hello", 5, false, false, ids, 32, &n1), SHOAL_OK);
    int32_t first[32];
    memcpy(first, ids, sizeof ids);
    assert_int_equal(shoal_tokenizer_encode(t, "hello", 5, false, false, ids, 32, &n2), SHOAL_OK);
    assert_int_equal(n1, n2);
    assert_memory_equal(first, ids, n1 * sizeof *ids);
    shoal_tokenizer_delete(t);
    shoal_gguf_close(g);
    gb_free(&b);
}

/* ---------------------------------------------------------------- malformed metadata */

typedef enum { BAD_NO_MODEL, BAD_MODEL, BAD_PRE, BAD_TYPES_LEN, BAD_BOS, BAD_TOKENS_TYPE, BAD_NO_MERGES,
               BAD_TYPE_VALUE, NO_BOS } bad_kind_t;

static shoal_status_t make_bad(bad_kind_t k)
{
    static const char *const toks[] = {"a", "b", "ab", "\xc4\xa0"};
    gb_t b;
    gb_init(&b, 3);
    if (k != BAD_NO_MODEL)
        gb_kv_str(&b, "tokenizer.ggml.model", k == BAD_MODEL ? "wordpiece" : "gpt2");
    gb_kv_str(&b, "tokenizer.ggml.pre", k == BAD_PRE ? "no-such-pre" : "smollm");
    if (k == BAD_TOKENS_TYPE) {
        gb_kv_arr(&b, "tokenizer.ggml.tokens", 4, 2);
        gb_put_u32(&b.kv, 1);
        gb_put_u32(&b.kv, 2);
    } else {
        gb_kv_strs(&b, "tokenizer.ggml.tokens", toks, 4);
    }
    gb_kv_arr(&b, "tokenizer.ggml.token_type", 5, k == BAD_TYPES_LEN ? 3 : 4);
    for (int i = 0; i < (k == BAD_TYPES_LEN ? 3 : 4); i++) {
        int32_t ty = k == BAD_TYPE_VALUE && i == 2 ? 9 : 1;
        gb_put(&b.kv, &ty, 4);
    }
    if (k != BAD_NO_MERGES) {
        static const char *const merges[] = {"a b"};
        gb_kv_strs(&b, "tokenizer.ggml.merges", merges, 1);
    }
    if (k != NO_BOS)
        gb_kv_u32(&b, "tokenizer.ggml.bos_token_id", k == BAD_BOS ? 4 : 0);
    gb_finish(&b, 0);
    shoal_gguf_t *g;
    shoal_tokenizer_t *t = NULL;
    assert_int_equal(shoal_gguf_open_buffer(b.out.p, b.out.n, &g), SHOAL_OK);
    shoal_status_t s = shoal_tokenizer_new_from_gguf(g, &t);
    if (s == SHOAL_OK) {
        /* the tiny vocabulary works: "ab" merges, the space has its byte token */
        int32_t ids[8];
        size_t n;
        assert_int_equal(shoal_tokenizer_encode(t, "ab ab", 5, false, false, ids, 8, &n), SHOAL_OK);
        assert_int_equal(n, 3);
        assert_int_equal(ids[0], 2);
        assert_int_equal(ids[1], 3);
        assert_int_equal(ids[2], 2);
        s = shoal_tokenizer_encode(t, "a", 1, false, true, ids, 8, &n);
    }
    shoal_tokenizer_delete(t);
    shoal_gguf_close(g);
    gb_free(&b);
    return s;
}

static void test_bad_metadata(void **state)
{
    (void)state;
    assert_int_equal(make_bad(BAD_NO_MODEL), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "tokenizer.ggml.model"));
    assert_int_equal(make_bad(BAD_MODEL), SHOAL_E_UNSUPPORTED);
    assert_non_null(strstr(shoal_last_error(), "wordpiece"));
    assert_int_equal(make_bad(BAD_PRE), SHOAL_E_UNSUPPORTED);
    assert_non_null(strstr(shoal_last_error(), "no-such-pre"));
    assert_int_equal(make_bad(BAD_TYPES_LEN), SHOAL_E_FORMAT);
    assert_int_equal(make_bad(BAD_BOS), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "bos_token_id"));
    assert_int_equal(make_bad(BAD_TOKENS_TYPE), SHOAL_E_FORMAT);
    assert_int_equal(make_bad(BAD_NO_MERGES), SHOAL_E_FORMAT);
    assert_int_equal(make_bad(BAD_TYPE_VALUE), SHOAL_E_FORMAT);
    /* a well-formed file without a BOS token: fine, until BOS is asked for */
    assert_int_equal(make_bad(NO_BOS), SHOAL_E_INVALID);
    assert_non_null(strstr(shoal_last_error(), "BOS"));
    assert_int_equal(shoal_tokenizer_new_from_gguf(NULL, NULL), SHOAL_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixture_smollm2), cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_specials_smollm2), cmocka_unit_test(test_roundtrip_and_large),
        cmocka_unit_test(test_cap_errors),      cmocka_unit_test(test_llama3_pre),
        cmocka_unit_test(test_spm),             cmocka_unit_test(test_bad_metadata),
    };
    return cmocka_run_group_tests(tests, setup_model, teardown_model);
}
