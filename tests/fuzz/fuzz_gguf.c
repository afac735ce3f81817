/* fuzz_gguf.c — libFuzzer target for the GGUF reader: any input must open cleanly or fail with
 * SHOAL_E_FORMAT, and everything an opened file exposes must be readable without leaving the buffer.
 * Build: cmake -DSHOAL_FUZZ=ON -DCMAKE_C_COMPILER=clang -B build-fuzz && cmake --build build-fuzz --target fuzz_gguf
 * Run:   build-fuzz/fuzz_gguf -max_total_time=120 corpus/   (seed: `fuzz_gguf -seed_corpus=DIR` writes seeds) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf_builder.h"
#include "model/gguf.h"
#include "model/quant.h"

static volatile uint64_t sink;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* an exact-size copy so ASan sees any read past the end */
    uint8_t *copy = malloc(size ? size : 1);
    if (size) memcpy(copy, data, size);
    shoal_gguf_t *g = NULL;
    shoal_status_t s = shoal_gguf_open_buffer(copy, size, &g);
    if (s != SHOAL_OK) {
        if (s != SHOAL_E_FORMAT || !shoal_last_error()[0]) abort();
        free(copy);
        return 0;
    }
    uint64_t acc = 0;
    for (uint64_t i = 0; i < shoal_gguf_kv_count(g); i++) {
        shoal_gguf_value_t v;
        if (shoal_gguf_kv_value(g, i, &v) != SHOAL_OK) abort();
        for (uint64_t j = 0; j < v.str_len; j++) acc += (uint8_t)v.str[j];
        if (v.type == SHOAL_GGUF_ARRAY)
            for (uint64_t j = 0; j < v.arr.len && j < 1024; j++) {
                const char *p;
                size_t n;
                int64_t iv;
                float fv;
                if (shoal_gguf_array_string(&v.arr, j, &p, &n) == SHOAL_OK)
                    for (size_t c = 0; c < n; c++) acc += (uint8_t)p[c];
                if (shoal_gguf_array_i64(&v.arr, j, &iv) == SHOAL_OK) acc += (uint64_t)iv;
                if (shoal_gguf_array_f32(&v.arr, j, &fv) == SHOAL_OK) acc += fv == fv;
            }
        uint64_t k;
        if (shoal_gguf_find_key(g, shoal_gguf_kv_key(g, i), &k) != SHOAL_OK || k != i) abort();
    }
    for (uint64_t i = 0; i < shoal_gguf_tensor_count(g); i++) {
        const shoal_gguf_tensor_t *t = shoal_gguf_tensor_at(g, i), *f;
        if (shoal_gguf_find_tensor(g, t->name, &f) != SHOAL_OK || f != t) abort();
        const uint8_t *p = t->data;
        if (p < copy || p + t->nbytes > copy + size) abort();
        for (uint64_t j = 0; j < t->nbytes; j += 61) acc += p[j];
        if (t->nbytes) acc += p[t->nbytes - 1];
        /* the first row of a supported tensor dequantises without leaving its bytes */
        if (shoal_qtype_check(t->type, (int64_t)t->ne[0]) == SHOAL_OK && t->ne[0] <= 4096) {
            float row[4096];
            shoal_dequantize_row(t->type, t->data, row, (int64_t)t->ne[0]);
            acc += (uint64_t)(row[0] == row[0]);
        }
    }
    sink = acc;
    shoal_gguf_close(g);
    free(copy);
    return 0;
}

/* Seeds: a few well-formed files written with the test builder (libFuzzer calls this before fuzzing
 * when linked with -fsanitize=fuzzer; with SHOAL_FUZZ_SEEDS=dir set it writes the seeds there). */
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *dir = getenv("SHOAL_FUZZ_SEEDS");
    if (!dir) return 0;
    static uint8_t data[4096];
    for (size_t i = 0; i < sizeof data; i++) data[i] = (uint8_t)(i * 37 + 11);
    for (int k = 0; k < 4; k++) {
        gb_t b;
        gb_init(&b, k < 2 ? 3 : 2);
        gb_kv_str(&b, "general.architecture", "llama");
        if (k == 1) gb_kv_u32(&b, "general.alignment", 64);
        gb_kv_u32(&b, "llama.block_count", 2);
        gb_kv_f32(&b, "llama.rope.freq_base", 10000.0f);
        gb_kv_bool(&b, "b", 1);
        const char *toks[] = {"<s>", "a", "\xc4\xa0the"};
        gb_kv_strs(&b, "tokenizer.ggml.tokens", toks, 3);
        gb_kv_arr(&b, "tokenizer.ggml.scores", 6, 3);
        float sc[3] = {0, -1, -2};
        gb_put(&b.kv, sc, sizeof sc);
        gb_kv_arr(&b, "nested", 9, 1);
        gb_put_u32(&b.kv, 5);
        gb_put_u64(&b.kv, 1);
        gb_put_u32(&b.kv, 7);
        uint64_t ne[2] = {64, 2};
        gb_tensor(&b, "a", SHOAL_GGML_Q4_1, 2, ne, data, 80);
        gb_tensor(&b, "b", SHOAL_GGML_Q8_0, 2, ne, data, 136);
        uint64_t ne1[1] = {64};
        gb_tensor(&b, "c", SHOAL_GGML_F16, 1, ne1, data, 128);
        if (k == 3) gb_tensor(&b, "d", SHOAL_GGML_Q4_0, 1, ne1, data, 36);
        gb_finish(&b, k == 1 ? 64 : 0);
        char path[4096];
        snprintf(path, sizeof path, "%s/seed%d.gguf", dir, k);
        FILE *f = fopen(path, "wb");
        if (f) {
            fwrite(b.out.p, 1, b.out.n, f);
            fclose(f);
        }
        gb_free(&b);
    }
    return 0;
}
