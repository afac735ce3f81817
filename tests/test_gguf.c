/* test_gguf.c — GGUF reader: the real SmolLM2 model, synthetic v2/v3 files with every value and tensor
 * type read back, every malformed-input path (each must fail with SHOAL_E_FORMAT and a message, never
 * crash or read past the buffer: run under ASan), and a seeded mutation loop. */
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

#include "gguf_builder.h"
#include "model/gguf.h"
#include "model/quant.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static char *model_path(void)
{
    static char path[4096];
    const char *deps = getenv("SHOAL_DEPS");
    snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf", deps ? deps : ".deps");
    return path;
}

/* Opens bytes copied into an exactly-sized heap block, so ASan flags any read past the end. */
static shoal_status_t open_copy(const void *p, size_t n, shoal_gguf_t **g, void **keep)
{
    void *c = malloc(n ? n : 1);
    if (n) memcpy(c, p, n);
    *keep = c;
    return shoal_gguf_open_buffer(c, n, g);
}

static void expect_format(const void *p, size_t n, const char *needle)
{
    shoal_gguf_t *g = NULL;
    void *keep;
    shoal_status_t s = open_copy(p, n, &g, &keep);
    if (s != SHOAL_E_FORMAT) fprintf(stderr, "expected FORMAT (%s), got %s: %s\n", needle, shoal_status_name(s),
                                     shoal_last_error());
    assert_int_equal(s, SHOAL_E_FORMAT);
    assert_null(g);
    assert_true(strlen(shoal_last_error()) > 0);
    if (needle && !strstr(shoal_last_error(), needle)) {
        fprintf(stderr, "message '%s' lacks '%s'\n", shoal_last_error(), needle);
        fail();
    }
    free(keep);
}

/* ------------------------------------------------------------------ the real model */

static void test_real_model(void **state)
{
    (void)state;
    shoal_gguf_t *g;
    if (access(model_path(), R_OK) != 0) {
        print_message("model missing at %s\n", model_path());
        fail();
    }
    assert_int_equal(shoal_gguf_open(model_path(), &g), SHOAL_OK);
    assert_int_equal(shoal_gguf_version(g), 3);
    assert_int_equal(shoal_gguf_alignment(g), 32);
    assert_string_equal(shoal_gguf_architecture(g), "llama");
    const char *s;
    size_t n;
    assert_int_equal(shoal_gguf_get_string(g, "general.architecture", &s, &n), SHOAL_OK);
    assert_int_equal(n, 5);
    assert_memory_equal(s, "llama", 5);
    uint32_t v;
    assert_int_equal(shoal_gguf_get_arch_u32(g, "block_count", &v), SHOAL_OK);
    assert_int_equal(v, 30);
    assert_int_equal(shoal_gguf_get_u32(g, "llama.embedding_length", &v), SHOAL_OK);
    assert_int_equal(v, 576);
    assert_int_equal(shoal_gguf_get_u32(g, "llama.feed_forward_length", &v), SHOAL_OK);
    assert_int_equal(v, 1536);
    assert_int_equal(shoal_gguf_get_u32(g, "llama.attention.head_count", &v), SHOAL_OK);
    assert_int_equal(v, 9);
    assert_int_equal(shoal_gguf_get_u32(g, "llama.attention.head_count_kv", &v), SHOAL_OK);
    assert_int_equal(v, 3);
    float eps, base;
    assert_int_equal(shoal_gguf_get_arch_f32(g, "attention.layer_norm_rms_epsilon", &eps), SHOAL_OK);
    assert_true(fabsf(eps - 1e-5f) < 1e-9f);
    assert_int_equal(shoal_gguf_get_arch_f32(g, "rope.freq_base", &base), SHOAL_OK);
    assert_true(base == 100000.0f);
    bool b = true;
    assert_int_equal(shoal_gguf_get_bool(g, "tokenizer.ggml.add_bos_token", &b), SHOAL_OK);
    assert_false(b);
    /* wrong type and missing key */
    assert_int_equal(shoal_gguf_get_u32(g, "general.architecture", &v), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "general.architecture"));
    assert_int_equal(shoal_gguf_get_u32(g, "llama.no_such_key", &v), SHOAL_E_NOT_FOUND);
    assert_int_equal(shoal_gguf_get_string(g, "llama.block_count", &s, &n), SHOAL_E_FORMAT);

    /* tokenizer arrays */
    shoal_gguf_array_t a;
    assert_int_equal(shoal_gguf_get_array(g, "tokenizer.ggml.tokens", &a), SHOAL_OK);
    assert_int_equal(a.type, SHOAL_GGUF_STRING);
    assert_int_equal(a.len, 49152);
    uint32_t bos, eos;
    assert_int_equal(shoal_gguf_get_u32(g, "tokenizer.ggml.bos_token_id", &bos), SHOAL_OK);
    assert_int_equal(shoal_gguf_get_u32(g, "tokenizer.ggml.eos_token_id", &eos), SHOAL_OK);
    assert_int_equal(shoal_gguf_array_string(&a, bos, &s, &n), SHOAL_OK);
    assert_int_equal(n, strlen("<|im_start|>"));
    assert_memory_equal(s, "<|im_start|>", n);
    assert_int_equal(shoal_gguf_array_string(&a, eos, &s, &n), SHOAL_OK);
    assert_memory_equal(s, "<|im_end|>", n);
    assert_int_equal(shoal_gguf_array_string(&a, 0, &s, &n), SHOAL_OK);
    assert_memory_equal(s, "<|endoftext|>", n);
    assert_int_equal(shoal_gguf_array_string(&a, 49152, &s, &n), SHOAL_E_INVALID);
    /* every token string lies inside the file */
    const char *lo = shoal_gguf_base(g), *hi = lo + shoal_gguf_file_size(g);
    for (uint64_t i = 0; i < a.len; i++) {
        assert_int_equal(shoal_gguf_array_string(&a, i, &s, &n), SHOAL_OK);
        assert_true(s >= lo && s + n <= hi && n > 0);
    }
    int64_t iv;
    assert_int_equal(shoal_gguf_array_i64(&a, 0, &iv), SHOAL_E_FORMAT); /* strings are not numbers */
    assert_int_equal(shoal_gguf_get_array(g, "tokenizer.ggml.token_type", &a), SHOAL_OK);
    assert_int_equal(a.type, SHOAL_GGUF_I32);
    assert_int_equal(a.len, 49152);
    assert_int_equal(shoal_gguf_array_i64(&a, 0, &iv), SHOAL_OK);
    assert_int_equal(iv, 3); /* control token */
    assert_int_equal(shoal_gguf_get_array(g, "tokenizer.ggml.merges", &a), SHOAL_OK);
    assert_int_equal(a.len, 48900);

    /* tensor directory */
    assert_int_equal(shoal_gguf_tensor_count(g), 272);
    uint64_t end = 0;
    int n_q41 = 0, n_f32 = 0;
    for (uint64_t i = 0; i < shoal_gguf_tensor_count(g); i++) {
        const shoal_gguf_tensor_t *t = shoal_gguf_tensor_at(g, i);
        assert_non_null(t);
        const char *d = t->data;
        assert_true(d >= lo + shoal_gguf_data_offset(g) && d + t->nbytes <= hi);
        assert_int_equal((uint64_t)(d - lo) % 32, 0);
        assert_int_equal(t->file_offset, shoal_gguf_data_offset(g) + t->offset);
        assert_int_equal(t->nbytes, shoal_qtype_row_size(t->type, (int64_t)t->ne[0]) * (t->n_elements / t->ne[0]));
        const shoal_gguf_tensor_t *f;
        assert_int_equal(shoal_gguf_find_tensor(g, t->name, &f), SHOAL_OK);
        assert_ptr_equal(f, t);
        if (t->file_offset + t->nbytes > end) end = t->file_offset + t->nbytes;
        n_q41 += t->type == SHOAL_GGML_Q4_1;
        n_f32 += t->type == SHOAL_GGML_F32;
    }
    assert_int_equal(end, shoal_gguf_file_size(g));
    assert_int_equal(n_q41, 210);
    assert_int_equal(n_f32, 61);
    const shoal_gguf_tensor_t *t;
    assert_int_equal(shoal_gguf_find_tensor(g, "token_embd.weight", &t), SHOAL_OK);
    assert_int_equal(t->type, SHOAL_GGML_Q8_0);
    assert_int_equal(t->n_dims, 2);
    assert_int_equal(t->ne[0], 576);
    assert_int_equal(t->ne[1], 49152);
    assert_int_equal(shoal_gguf_find_tensor(g, "blk.29.ffn_down.weight", &t), SHOAL_OK);
    assert_int_equal(t->type, SHOAL_GGML_Q4_1);
    assert_int_equal(t->ne[0], 1536);
    assert_int_equal(t->ne[1], 576);
    assert_int_equal(shoal_gguf_find_tensor(g, "blk.30.ffn_down.weight", &t), SHOAL_E_NOT_FOUND);
    assert_non_null(strstr(shoal_last_error(), "blk.30.ffn_down.weight"));
    shoal_gguf_close(g);
}

/* Random prefixes of the real file (header region and into the data) never open. */
static void test_real_model_prefixes(void **state)
{
    (void)state;
    FILE *f = fopen(model_path(), "rb");
    assert_non_null(f);
    size_t cap = 2u << 20; /* the header (tokenizer included) is ~1.7 MiB */
    uint8_t *buf = malloc(cap);
    size_t got = fread(buf, 1, cap, f);
    fclose(f);
    assert_int_equal(got, cap);
    rng_state = 0x5eed1234;
    for (int k = 0; k < 300; k++) {
        size_t n = k < 40 ? (size_t)k : (size_t)(rnd() % cap);
        shoal_gguf_t *g = NULL;
        void *keep;
        shoal_status_t s = open_copy(buf, n, &g, &keep);
        assert_int_equal(s, SHOAL_E_FORMAT);
        assert_true(strlen(shoal_last_error()) > 0);
        free(keep);
    }
    free(buf);
}

/* ------------------------------------------------------------------ synthetic files */

typedef struct tensor_src {
    const char *name;
    uint32_t type, n_dims;
    uint64_t ne[4];
    uint8_t *bytes;
    size_t nbytes;
} tensor_src;

static tensor_src g_src[8];

/* A file with every value type and one tensor of each supported type (plus a known unsupported one). */
static void build_full(gb_t *b, uint32_t version, uint32_t align)
{
    gb_init(b, version);
    gb_kv_str(b, "general.architecture", "llama");
    if (align) gb_kv_u32(b, "general.alignment", align);
    gb_kv_head(b, "t.u8", 0); gb_put_u8(&b->kv, 200);
    gb_kv_head(b, "t.i8", 1); gb_put_u8(&b->kv, (uint8_t)-5);
    gb_kv_head(b, "t.u16", 2); { uint16_t x = 60000; gb_put(&b->kv, &x, 2); }
    gb_kv_head(b, "t.i16", 3); { int16_t x = -30000; gb_put(&b->kv, &x, 2); }
    gb_kv_u32(b, "t.u32", 4000000000u);
    gb_kv_i32(b, "t.i32", -2000000000);
    gb_kv_f32(b, "t.f32", 3.5f);
    gb_kv_bool(b, "t.bool", 1);
    gb_kv_str(b, "t.str", "hello, gguf");
    gb_kv_str(b, "t.empty", "");
    gb_kv_u64(b, "t.u64", 1ull << 40);
    gb_kv_head(b, "t.i64", 11); { int64_t x = -(1ll << 40); gb_put(&b->kv, &x, 8); }
    gb_kv_head(b, "t.f64", 12); { double x = 2.25; gb_put(&b->kv, &x, 8); }
    gb_kv_u32(b, "llama.block_count", 2);
    const char *words[] = {"a", "", "bc", "\xc4\xa0t", "longer string"};
    gb_kv_strs(b, "t.strs", words, 5);
    gb_kv_arr(b, "t.f32s", 6, 3);
    { float x[3] = {1.5f, -2.0f, 0.25f}; gb_put(&b->kv, x, sizeof x); }
    gb_kv_arr(b, "t.i32s", 5, 4);
    { int32_t x[4] = {-1, 0, 7, 2147483647}; gb_put(&b->kv, x, sizeof x); }
    gb_kv_arr(b, "t.u8s", 0, 3);
    gb_put_u8(&b->kv, 1); gb_put_u8(&b->kv, 2); gb_put_u8(&b->kv, 255);
    gb_kv_arr(b, "t.bools", 7, 2);
    gb_put_u8(&b->kv, 0); gb_put_u8(&b->kv, 1);
    gb_kv_arr(b, "t.empty_arr", 4, 0);
    /* array of 2 arrays: [ [u32 1, 2], ["x"] ] */
    gb_kv_arr(b, "t.nested", 9, 2);
    gb_put_u32(&b->kv, 4); gb_put_u64(&b->kv, 2); gb_put_u32(&b->kv, 1); gb_put_u32(&b->kv, 2);
    gb_put_u32(&b->kv, 8); gb_put_u64(&b->kv, 1); gb_put_str(&b->kv, "x");

    static const struct { const char *name; uint32_t type; uint32_t nd; uint64_t ne[4]; } shapes[] = {
        {"w.f32", SHOAL_GGML_F32, 1, {7}},
        {"w.f16", SHOAL_GGML_F16, 2, {3, 5}},
        {"w.q4_0", SHOAL_GGML_Q4_0, 2, {64, 3}},
        {"w.q4_1", SHOAL_GGML_Q4_1, 3, {32, 2, 2}},
        {"w.q8_0", SHOAL_GGML_Q8_0, 4, {96, 1, 2, 1}},
        {"w.bf16", SHOAL_GGML_BF16, 2, {5, 3}},
        {"w.q6_k", SHOAL_GGML_Q6_K, 2, {256, 2}},
    };
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        tensor_src *t = &g_src[i];
        t->name = shapes[i].name;
        t->type = shapes[i].type;
        t->n_dims = shapes[i].nd;
        uint64_t nel = 1;
        for (uint32_t d = 0; d < 4; d++) {
            t->ne[d] = d < t->n_dims ? shapes[i].ne[d] : 1;
            nel *= t->ne[d];
        }
        t->nbytes = shoal_qtype_row_size(t->type, (int64_t)t->ne[0]) * (nel / t->ne[0]);
        free(t->bytes);
        t->bytes = malloc(t->nbytes);
        for (size_t j = 0; j < t->nbytes; j++) t->bytes[j] = (uint8_t)(j * 31 + i * 7 + 1);
        gb_tensor(b, t->name, t->type, t->n_dims, t->ne, t->bytes, t->nbytes);
    }
    gb_finish(b, align);
}

static void check_full(shoal_gguf_t *g, uint32_t version, uint32_t align)
{
    assert_int_equal(shoal_gguf_version(g), version);
    assert_int_equal(shoal_gguf_alignment(g), align ? align : 32);
    assert_int_equal(shoal_gguf_data_offset(g) % (align ? align : 32), 0);
    uint32_t u32;
    int32_t i32;
    uint64_t u64;
    int64_t i64;
    float f32;
    double f64;
    bool bl;
    const char *s;
    size_t n;
    /* exact types */
    assert_int_equal(shoal_gguf_get_u32(g, "t.u32", &u32), SHOAL_OK);
    assert_int_equal(u32, 4000000000u);
    assert_int_equal(shoal_gguf_get_i32(g, "t.i32", &i32), SHOAL_OK);
    assert_int_equal(i32, -2000000000);
    assert_int_equal(shoal_gguf_get_u64(g, "t.u64", &u64), SHOAL_OK);
    assert_int_equal(u64, 1ull << 40);
    assert_int_equal(shoal_gguf_get_i64(g, "t.i64", &i64), SHOAL_OK);
    assert_int_equal(i64, -(1ll << 40));
    assert_int_equal(shoal_gguf_get_f32(g, "t.f32", &f32), SHOAL_OK);
    assert_true(f32 == 3.5f);
    assert_int_equal(shoal_gguf_get_f64(g, "t.f64", &f64), SHOAL_OK);
    assert_true(f64 == 2.25);
    assert_int_equal(shoal_gguf_get_bool(g, "t.bool", &bl), SHOAL_OK);
    assert_true(bl);
    assert_int_equal(shoal_gguf_get_string(g, "t.str", &s, &n), SHOAL_OK);
    assert_int_equal(n, 11);
    assert_memory_equal(s, "hello, gguf", 11);
    assert_int_equal(shoal_gguf_get_string(g, "t.empty", &s, &n), SHOAL_OK);
    assert_int_equal(n, 0);
    /* widening: small integer types into wider getters */
    assert_int_equal(shoal_gguf_get_u32(g, "t.u8", &u32), SHOAL_OK);
    assert_int_equal(u32, 200);
    assert_int_equal(shoal_gguf_get_i32(g, "t.i8", &i32), SHOAL_OK);
    assert_int_equal(i32, -5);
    assert_int_equal(shoal_gguf_get_u32(g, "t.u16", &u32), SHOAL_OK);
    assert_int_equal(u32, 60000);
    assert_int_equal(shoal_gguf_get_i64(g, "t.i16", &i64), SHOAL_OK);
    assert_int_equal(i64, -30000);
    assert_int_equal(shoal_gguf_get_u64(g, "t.u32", &u64), SHOAL_OK);
    assert_int_equal(u64, 4000000000u);
    assert_int_equal(shoal_gguf_get_f32(g, "t.f64", &f32), SHOAL_OK);
    assert_true(f32 == 2.25f);
    assert_int_equal(shoal_gguf_get_f64(g, "t.f32", &f64), SHOAL_OK);
    assert_true(f64 == 3.5);
    assert_int_equal(shoal_gguf_get_arch_u32(g, "block_count", &u32), SHOAL_OK);
    assert_int_equal(u32, 2);
    /* values that do not fit, and wrong types: SHOAL_E_FORMAT, out-params untouched */
    u32 = 77;
    assert_int_equal(shoal_gguf_get_u32(g, "t.i8", &u32), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "t.i8"));
    assert_int_equal(u32, 77);
    assert_int_equal(shoal_gguf_get_u32(g, "t.u64", &u32), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_i32(g, "t.u32", &i32), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_u64(g, "t.i64", &u64), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_u32(g, "t.f32", &u32), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_f32(g, "t.u32", &f32), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_bool(g, "t.u8", &bl), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_string(g, "t.strs", &s, &n), SHOAL_E_FORMAT);
    shoal_gguf_array_t a;
    assert_int_equal(shoal_gguf_get_array(g, "t.str", &a), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_u32(g, "nope", &u32), SHOAL_E_NOT_FOUND);
    assert_int_equal(shoal_gguf_get_arch_u32(g, "nope", &u32), SHOAL_E_NOT_FOUND);

    /* arrays */
    assert_int_equal(shoal_gguf_get_array(g, "t.strs", &a), SHOAL_OK);
    assert_int_equal(a.type, SHOAL_GGUF_STRING);
    assert_int_equal(a.len, 5);
    const char *words[] = {"a", "", "bc", "\xc4\xa0t", "longer string"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(shoal_gguf_array_string(&a, (uint64_t)i, &s, &n), SHOAL_OK);
        assert_int_equal(n, strlen(words[i]));
        assert_memory_equal(s, words[i], n);
    }
    assert_int_equal(shoal_gguf_array_string(&a, 5, &s, &n), SHOAL_E_INVALID);
    assert_int_equal(shoal_gguf_get_array(g, "t.f32s", &a), SHOAL_OK);
    assert_int_equal(a.type, SHOAL_GGUF_F32);
    assert_int_equal(a.len, 3);
    float fx;
    memcpy(&fx, (const char *)a.data + 4, 4);
    assert_true(fx == -2.0f);
    assert_int_equal(shoal_gguf_array_f32(&a, 2, &f32), SHOAL_OK);
    assert_true(f32 == 0.25f);
    assert_int_equal(shoal_gguf_array_f32(&a, 3, &f32), SHOAL_E_INVALID);
    assert_int_equal(shoal_gguf_array_i64(&a, 0, &i64), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_array_string(&a, 0, &s, &n), SHOAL_E_FORMAT);
    assert_int_equal(shoal_gguf_get_array(g, "t.i32s", &a), SHOAL_OK);
    assert_int_equal(shoal_gguf_array_i64(&a, 0, &i64), SHOAL_OK);
    assert_int_equal(i64, -1);
    assert_int_equal(shoal_gguf_array_i64(&a, 3, &i64), SHOAL_OK);
    assert_int_equal(i64, 2147483647);
    assert_int_equal(shoal_gguf_get_array(g, "t.u8s", &a), SHOAL_OK);
    assert_int_equal(shoal_gguf_array_i64(&a, 2, &i64), SHOAL_OK);
    assert_int_equal(i64, 255);
    assert_int_equal(shoal_gguf_get_array(g, "t.bools", &a), SHOAL_OK);
    assert_int_equal(a.type, SHOAL_GGUF_BOOL);
    assert_int_equal(a.len, 2);
    assert_int_equal(shoal_gguf_get_array(g, "t.empty_arr", &a), SHOAL_OK);
    assert_int_equal(a.len, 0);
    assert_int_equal(shoal_gguf_array_i64(&a, 0, &i64), SHOAL_E_INVALID);
    assert_int_equal(shoal_gguf_get_array(g, "t.nested", &a), SHOAL_OK);
    assert_int_equal(a.type, SHOAL_GGUF_ARRAY);
    assert_int_equal(a.len, 2);
    assert_null(a.data);
    assert_int_equal(shoal_gguf_array_i64(&a, 0, &i64), SHOAL_E_FORMAT);

    /* enumeration by index agrees with lookup by key */
    for (uint64_t i = 0; i < shoal_gguf_kv_count(g); i++) {
        uint64_t j;
        assert_int_equal(shoal_gguf_find_key(g, shoal_gguf_kv_key(g, i), &j), SHOAL_OK);
        assert_int_equal(i, j);
        shoal_gguf_value_t val;
        assert_int_equal(shoal_gguf_kv_value(g, i, &val), SHOAL_OK);
        assert_int_equal(val.type, shoal_gguf_kv_type(g, i));
    }
    assert_null(shoal_gguf_kv_key(g, shoal_gguf_kv_count(g)));
    assert_int_equal(shoal_gguf_kv_type(g, shoal_gguf_kv_count(g)), SHOAL_GGUF_VTYPE_COUNT);
    shoal_gguf_value_t val;
    assert_int_equal(shoal_gguf_kv_value(g, shoal_gguf_kv_count(g), &val), SHOAL_E_INVALID);

    /* tensors: shapes, types, and the exact bytes, in place */
    assert_int_equal(shoal_gguf_tensor_count(g), 7);
    const uint8_t *base = shoal_gguf_base(g);
    for (int i = 0; i < 7; i++) {
        const shoal_gguf_tensor_t *t;
        assert_int_equal(shoal_gguf_find_tensor(g, g_src[i].name, &t), SHOAL_OK);
        assert_ptr_equal(t, shoal_gguf_tensor_at(g, (uint64_t)i));
        assert_string_equal(t->name, g_src[i].name);
        assert_int_equal(t->type, g_src[i].type);
        assert_int_equal(t->n_dims, g_src[i].n_dims);
        for (int d = 0; d < 4; d++) assert_int_equal(t->ne[d], g_src[i].ne[d]);
        assert_int_equal(t->nbytes, g_src[i].nbytes);
        assert_int_equal(((const uint8_t *)t->data - base) % (align ? align : 32), 0);
        assert_memory_equal(t->data, g_src[i].bytes, t->nbytes);
    }
    assert_null(shoal_gguf_tensor_at(g, 7));
}

static void test_synthetic_roundtrip(void **state)
{
    (void)state;
    static const uint32_t versions[] = {2, 3};
    static const uint32_t aligns[] = {0, 8, 64, 4096};
    for (size_t v = 0; v < 2; v++) {
        for (size_t a = 0; a < 4; a++) {
            gb_t b;
            build_full(&b, versions[v], aligns[a]);
            shoal_gguf_t *g;
            void *keep;
            assert_int_equal(open_copy(b.out.p, b.out.n, &g, &keep), SHOAL_OK);
            check_full(g, versions[v], aligns[a]);
            shoal_gguf_close(g);
            free(keep);
            /* and through the file path (mmap) */
            char path[] = "/tmp/shoal_test_gguf_XXXXXX";
            int fd = mkstemp(path);
            assert_true(fd >= 0);
            assert_int_equal(write(fd, b.out.p, b.out.n), (ssize_t)b.out.n);
            close(fd);
            assert_int_equal(shoal_gguf_open(path, &g), SHOAL_OK);
            check_full(g, versions[v], aligns[a]);
            shoal_gguf_close(g);
            unlink(path);
            gb_free(&b);
        }
    }
}

static void test_empty_and_minimal(void **state)
{
    (void)state;
    /* a header with no keys and no tensors is valid */
    gb_t b;
    gb_init(&b, 3);
    gb_finish(&b, 0);
    shoal_gguf_t *g;
    void *keep;
    assert_int_equal(open_copy(b.out.p, b.out.n, &g, &keep), SHOAL_OK);
    assert_int_equal(shoal_gguf_kv_count(g), 0);
    assert_int_equal(shoal_gguf_tensor_count(g), 0);
    assert_null(shoal_gguf_architecture(g));
    uint32_t v;
    assert_int_equal(shoal_gguf_get_arch_u32(g, "block_count", &v), SHOAL_E_NOT_FOUND);
    const shoal_gguf_tensor_t *t;
    assert_int_equal(shoal_gguf_find_tensor(g, "x", &t), SHOAL_E_NOT_FOUND);
    shoal_gguf_close(g);
    free(keep);
    gb_free(&b);
    /* empty file by path, missing file, a directory */
    char path[] = "/tmp/shoal_test_gguf_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(shoal_gguf_open(path, &g), SHOAL_E_FORMAT);
    assert_non_null(strstr(shoal_last_error(), "empty"));
    unlink(path);
    assert_int_equal(shoal_gguf_open(path, &g), SHOAL_E_IO);
    assert_non_null(strstr(shoal_last_error(), path));
    assert_int_equal(shoal_gguf_open("/tmp", &g), SHOAL_E_IO);
    expect_format("", 0, "empty");
    shoal_gguf_close(NULL);
}

/* ------------------------------------------------------------------ malformed files */

static void test_bad_headers(void **state)
{
    (void)state;
    gb_t b;
    build_full(&b, 3, 0);
    uint8_t *p = malloc(b.out.n);
    size_t n = b.out.n;
#define MUT(stmt, needle)                 \
    do {                                  \
        memcpy(p, b.out.p, n);            \
        stmt;                             \
        expect_format(p, n, needle);      \
    } while (0)
    MUT(p[0] = 'X', "bad magic");
    MUT(memcpy(p, "FUGG", 4), "bad magic");
    MUT((p[4] = 1, p[5] = p[6] = p[7] = 0), "version 1");
    MUT((p[4] = 4, p[5] = p[6] = p[7] = 0), "unsupported version 4");
    MUT((p[4] = 0, p[7] = 3), "big-endian");
    MUT((p[4] = 0xff, p[5] = 0xff, p[6] = 0xff, p[7] = 0xff), "unsupported version");
    { uint64_t big = 1ull << 40; MUT(memcpy(p + 8, &big, 8), "tensor count"); }
    { uint64_t big = UINT64_MAX; MUT(memcpy(p + 16, &big, 8), "metadata count"); }
    /* first key's length runs past the end */
    { uint64_t big = 1ull << 50; MUT(memcpy(p + 24, &big, 8), "past end of file"); }
    { uint64_t big = n; MUT(memcpy(p + 24, &big, 8), "past end of file"); }
    /* first key is "general.architecture" (20 bytes): its type field follows */
    { uint32_t t = 13; MUT(memcpy(p + 24 + 8 + 20, &t, 4), "unknown value type 13"); }
    /* ... and its string value's length */
    { uint64_t big = n; MUT(memcpy(p + 24 + 8 + 20 + 4, &big, 8), "past end of file"); }
    { MUT(p[24 + 8 + 3] = 0, "NUL"); }
    { uint64_t z = 0; MUT(memcpy(p + 24, &z, 8), "empty key"); }
#undef MUT
    free(p);
    gb_free(&b);
}

/* Single-purpose files for the value and tensor checks. */
static void test_bad_values_and_tensors(void **state)
{
    (void)state;
    gb_t b;
    uint64_t ne[4] = {32, 4, 1, 1};
    static uint8_t data[1 << 16];

    gb_init(&b, 3); /* bool that is not 0/1 */
    gb_kv_bool(&b, "x", 2);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "bool");
    gb_free(&b);

    gb_init(&b, 3); /* bool array element that is not 0/1 */
    gb_kv_arr(&b, "x", 7, 3);
    gb_put_u8(&b.kv, 1); gb_put_u8(&b.kv, 0); gb_put_u8(&b.kv, 9);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "bool element 2");
    gb_free(&b);

    gb_init(&b, 3); /* array of an unknown element type */
    gb_kv_arr(&b, "x", 77, 1);
    gb_put_u32(&b.kv, 0);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "unknown element type 77");
    gb_free(&b);

    gb_init(&b, 3); /* array length larger than the file can hold */
    gb_kv_arr(&b, "x", 10, 1ull << 61);
    gb_put_u64(&b.kv, 1);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "cannot fit");
    gb_free(&b);

    gb_init(&b, 3); /* string array whose 2nd string runs past EOF */
    gb_kv_arr(&b, "x", 8, 2);
    gb_put_str(&b.kv, "ok");
    gb_put_u64(&b.kv, 1000);
    gb_put(&b.kv, "abc", 3);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "past end of file");
    gb_free(&b);

    gb_init(&b, 3); /* arrays nested 9 deep */
    gb_kv_head(&b, "x", 9);
    for (int i = 0; i < 9; i++) {
        gb_put_u32(&b.kv, 9);
        gb_put_u64(&b.kv, 1);
    }
    gb_put_u32(&b.kv, 4);
    gb_put_u64(&b.kv, 0);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "nested deeper");
    gb_free(&b);

    gb_init(&b, 3); /* duplicate key */
    gb_kv_u32(&b, "k", 1);
    gb_kv_u32(&b, "k", 2);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "duplicate key 'k'");
    gb_free(&b);

    static const uint32_t bad_aligns[] = {0, 3, 48, 1u << 31};
    for (int i = 0; i < 4; i++) {
        gb_init(&b, 3);
        gb_kv_u32(&b, "general.alignment", bad_aligns[i]);
        gb_finish(&b, 0);
        expect_format(b.out.p, b.out.n, "general.alignment");
        gb_free(&b);
    }
    gb_init(&b, 3); /* alignment of the wrong type */
    gb_kv_str(&b, "general.alignment", "32");
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "general.alignment");
    gb_free(&b);

    /* tensors */
    gb_init(&b, 3); /* duplicate name */
    gb_tensor(&b, "t", SHOAL_GGML_F32, 1, ne, data, 128);
    gb_tensor(&b, "t", SHOAL_GGML_F32, 1, ne, data, 128);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "duplicate tensor name 't'");
    gb_free(&b);

    gb_init(&b, 3); /* unknown type id (31 was retired by ggml) */
    gb_tensor(&b, "t", 31, 1, ne, data, 128);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "unknown ggml type 31");
    gb_free(&b);

    gb_init(&b, 3); /* type id far out of range */
    gb_tensor(&b, "t", 0xffffffffu, 1, ne, data, 128);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "unknown ggml type");
    gb_free(&b);

    gb_init(&b, 3); /* row not a multiple of the block */
    { uint64_t ne2[1] = {48}; gb_tensor(&b, "t", SHOAL_GGML_Q4_1, 1, ne2, data, 30); }
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "not a multiple of the Q4_1 block");
    gb_free(&b);

    gb_init(&b, 3); /* 5 dimensions */
    { uint64_t ne5[5] = {1, 1, 1, 1, 1}; gb_tensor(&b, "t", SHOAL_GGML_F32, 5, ne5, data, 4); }
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "5 dimensions");
    gb_free(&b);

    gb_init(&b, 3); /* a zero dimension */
    { uint64_t nz[2] = {32, 0}; gb_tensor(&b, "t", SHOAL_GGML_F32, 2, nz, data, 0); }
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "dimension 1 is 0");
    gb_free(&b);

    gb_init(&b, 3); /* element count overflows int64 */
    { uint64_t nb[3] = {1ull << 32, 1ull << 31, 2}; gb_tensor(&b, "t", SHOAL_GGML_F32, 3, nb, data, 0); }
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "overflows");
    gb_free(&b);

    gb_init(&b, 3); /* element count fits but the byte size overflows */
    { uint64_t nb[2] = {1ull << 32, 1ull << 30}; gb_tensor(&b, "t", SHOAL_GGML_F64, 2, nb, data, 0); }
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "overflows");
    gb_free(&b);

    gb_init(&b, 3); /* huge but non-overflowing tensor: past end of file */
    { uint64_t nb[2] = {1ull << 20, 1ull << 20}; gb_tensor(&b, "t", SHOAL_GGML_F32, 2, nb, data, 64); }
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n, "runs past end of file");
    gb_free(&b);

    gb_init(&b, 3); /* data cut short by one byte */
    gb_tensor(&b, "t", SHOAL_GGML_F32, 2, ne, data, 512);
    gb_finish(&b, 0);
    expect_format(b.out.p, b.out.n - 1, "runs past end of file");
    gb_free(&b);

    /* offset past EOF, and a misaligned offset: patch the offset field (last 8 bytes of the info) */
    for (int k = 0; k < 3; k++) {
        gb_init(&b, 3);
        gb_tensor(&b, "t", SHOAL_GGML_F32, 2, ne, data, 512);
        size_t data_off = gb_finish(&b, 0);
        uint64_t off = k == 0 ? 1ull << 40 : k == 1 ? 16 : UINT64_MAX - 31;
        size_t info_end = 24 + (8 + 1) + 4 + 2 * 8 + 4 + 8;
        memcpy(b.out.p + info_end - 8, &off, 8);
        assert_true(info_end <= data_off);
        expect_format(b.out.p, b.out.n, k == 1 ? "not a multiple of the alignment" : "past end of file");
        gb_free(&b);
    }
}

/* Every prefix of a small valid file fails cleanly; the whole file opens. */
static void test_every_prefix(void **state)
{
    (void)state;
    for (uint32_t v = 2; v <= 3; v++) {
        gb_t b;
        build_full(&b, v, 0);
        for (size_t n = 0; n < b.out.n; n++) expect_format(b.out.p, n, NULL);
        shoal_gguf_t *g;
        void *keep;
        assert_int_equal(open_copy(b.out.p, b.out.n, &g, &keep), SHOAL_OK);
        shoal_gguf_close(g);
        free(keep);
        gb_free(&b);
    }
}

/* Opens a mutant and, when it opens, reads everything the API exposes. */
static bool exercise(const uint8_t *p, size_t n, uint64_t *checksum)
{
    shoal_gguf_t *g = NULL;
    void *keep;
    shoal_status_t s = open_copy(p, n, &g, &keep);
    if (s != SHOAL_OK) {
        if (s != SHOAL_E_FORMAT) fprintf(stderr, "mutant gave %s: %s\n", shoal_status_name(s), shoal_last_error());
        assert_int_equal(s, SHOAL_E_FORMAT);
        assert_true(strlen(shoal_last_error()) > 0);
        free(keep);
        return false;
    }
    for (uint64_t i = 0; i < shoal_gguf_kv_count(g); i++) {
        shoal_gguf_value_t v;
        assert_int_equal(shoal_gguf_kv_value(g, i, &v), SHOAL_OK);
        *checksum += v.num.u + v.str_len;
        for (uint64_t j = 0; j < v.str_len; j++) *checksum += (uint8_t)v.str[j];
        if (v.type == SHOAL_GGUF_ARRAY) {
            for (uint64_t j = 0; j < v.arr.len && j < 4096; j++) {
                const char *sp;
                size_t sn;
                int64_t iv;
                float fv;
                if (shoal_gguf_array_string(&v.arr, j, &sp, &sn) == SHOAL_OK)
                    for (size_t c = 0; c < sn; c++) *checksum += (uint8_t)sp[c];
                if (shoal_gguf_array_i64(&v.arr, j, &iv) == SHOAL_OK) *checksum += (uint64_t)iv;
                if (shoal_gguf_array_f32(&v.arr, j, &fv) == SHOAL_OK) *checksum += (uint64_t)(fv == fv);
            }
        }
        uint32_t u;
        shoal_gguf_get_u32(g, shoal_gguf_kv_key(g, i), &u);
    }
    for (uint64_t i = 0; i < shoal_gguf_tensor_count(g); i++) {
        const shoal_gguf_tensor_t *t = shoal_gguf_tensor_at(g, i);
        const shoal_gguf_tensor_t *f;
        assert_int_equal(shoal_gguf_find_tensor(g, t->name, &f), SHOAL_OK);
        for (uint64_t j = 0; j < t->nbytes; j++) *checksum += ((const uint8_t *)t->data)[j];
    }
    shoal_gguf_close(g);
    free(keep);
    return true;
}

static void test_mutations(void **state)
{
    (void)state;
    gb_t b;
    build_full(&b, 3, 0);
    size_t n = b.out.n;
    uint8_t *p = malloc(n + 64);
    rng_state = 0xC0FFEEull;
    uint64_t checksum = 0;
    int opened = 0;
    for (int k = 0; k < 4000; k++) {
        memcpy(p, b.out.p, n);
        size_t len = n;
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(rnd() % n);
            switch (rnd() % 5) {
            case 0: p[at] ^= (uint8_t)(1u << (rnd() % 8)); break;      /* bit flip */
            case 1: p[at] = (uint8_t)rnd(); break;                     /* random byte */
            case 2: p[at] = (uint8_t)(rnd() & 1 ? 0xff : 0); break;    /* extremes */
            case 3: if (at + 8 <= n) { uint64_t v = rnd() % 3 == 0 ? UINT64_MAX - rnd() % 64 : rnd() % 4096; memcpy(p + at, &v, 8); } break;
            case 4: len = (size_t)(rnd() % n); break;                  /* truncation */
            }
        }
        opened += exercise(p, len, &checksum);
    }
    print_message("mutants: 4000, opened: %d (checksum %llx)\n", opened, (unsigned long long)checksum);
    assert_true(opened > 0 && opened < 4000); /* the loop really hit both sides */
    free(p);
    gb_free(&b);
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof g_src / sizeof *g_src; i++) {
        free(g_src[i].bytes);
        g_src[i].bytes = NULL;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_model),
        cmocka_unit_test(test_real_model_prefixes),
        cmocka_unit_test(test_synthetic_roundtrip),
        cmocka_unit_test(test_empty_and_minimal),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_bad_values_and_tensors),
        cmocka_unit_test(test_every_prefix),
        cmocka_unit_test(test_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
