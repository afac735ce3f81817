/* test_make_gguf.c — tools/make_llama_gguf: small random models in every weight type load, tokenise
 * and evaluate to finite logits on the CPU; weights have the requested spread and are a pure
 * function of the seed; the full Llama 3.2 1B layout (written sparse: no gigabytes) has the exact
 * shape, and its RoPE frequencies, from the rope_freqs tensor or from the scaling metadata, match
 * a float64 evaluation of the Llama 3 formula written here; bad options are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "model/gguf.h"
#include "model/llama.h"
#include "model/quant.h"
#include "model/tokenizer.h"

static char g_tool[4096], g_dir[256];

static int run_tool(const char *args, const char *out)
{
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' %s --out '%s/%s' >/dev/null 2>&1", g_tool, args, g_dir, out);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void path_of(const char *name, char *buf, size_t cap) { snprintf(buf, cap, "%s/%s", g_dir, name); }

static const char *k_small = "--layers 2 --dim 128 --ffn 256 --heads 4 --kv-heads 2 --vocab 512 --ctx 256";

static void check_small(const char *type, uint32_t ggml_type)
{
    char args[512], name[64], path[512];
    snprintf(args, sizeof args, "%s --type %s --seed 7", k_small, type);
    snprintf(name, sizeof name, "small_%s.gguf", type);
    assert_int_equal(run_tool(args, name), 0);
    path_of(name, path, sizeof path);

    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    assert_int_equal(shoal_gguf_open(path, &g), SHOAL_OK);
    assert_int_equal(shoal_llama_model_new(g, &m), SHOAL_OK);
    assert_int_equal(m->hp.n_layer, 2);
    assert_int_equal(m->hp.dim, 128);
    assert_int_equal(m->hp.head_dim, 32);
    assert_int_equal(m->hp.kv_dim, 64);
    assert_int_equal(m->hp.vocab, 512);
    assert_true(m->tied_output);
    assert_true(m->hp.rope_llama3);
    assert_int_equal(m->layers[1].w_down.type, ggml_type);

    /* Weights: uniform with std 0.02 (dequantised; 4-bit rounding adds a little spread). */
    const shoal_gguf_tensor_t *t;
    assert_int_equal(shoal_gguf_find_tensor(g, "blk.0.ffn_up.weight", &t), SHOAL_OK);
    float row[128];
    double s2 = 0, s1 = 0;
    for (uint64_t r = 0; r < t->ne[1]; r++) {
        assert_int_equal(shoal_dequantize_row(t->type, (const char *)t->data + r * t->row_bytes, row, 128), SHOAL_OK);
        for (int i = 0; i < 128; i++) {
            s1 += row[i];
            s2 += (double)row[i] * row[i];
            assert_true(fabsf(row[i]) <= 0.0347f * 1.15f);
        }
    }
    double n = (double)t->ne[1] * 128, sd = sqrt(s2 / n - (s1 / n) * (s1 / n));
    assert_true(fabs(sd - 0.02) < 0.02 * 0.08);

    /* The tokenizer loads and every byte is one token (no merges), after BOS. */
    shoal_tokenizer_t *tok;
    assert_int_equal(shoal_tokenizer_new_from_gguf(g, &tok), SHOAL_OK);
    int32_t ids[16];
    size_t nid = 0;
    assert_int_equal(shoal_tokenizer_encode(tok, "Hi you", 6, true, true, ids, 16, &nid), SHOAL_OK);
    assert_int_equal(nid, 7);
    assert_int_equal(ids[0], 512 - 16);
    for (size_t i = 1; i < nid; i++)
        assert_true(ids[i] >= 0 && ids[i] < 256);

    /* CPU forward pass: finite, non-degenerate logits at every position. */
    shoal_llama_ctx_t *c;
    assert_int_equal(shoal_llama_ctx_new(m, NULL, NULL, &c), SHOAL_OK);
    float *logits = malloc(sizeof(float) * 512 * nid);
    assert_int_equal(shoal_llama_eval(c, ids, (int)nid, 0, logits, SHOAL_LLAMA_LOGITS_ALL), SHOAL_OK);
    for (size_t p = 0; p < nid; p++) {
        float lo = INFINITY, hi = -INFINITY;
        for (int v = 0; v < 512; v++) {
            float x = logits[p * 512 + v];
            assert_true(isfinite(x));
            lo = fminf(lo, x);
            hi = fmaxf(hi, x);
        }
        assert_true(hi - lo > 1e-3f);
    }
    free(logits);
    shoal_llama_ctx_delete(c);
    shoal_tokenizer_delete(tok);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
}

static void test_small_types(void **state)
{
    (void)state;
    check_small("f16", SHOAL_GGML_F16);
    check_small("bf16", SHOAL_GGML_BF16);
    check_small("q8_0", SHOAL_GGML_Q8_0);
    check_small("q4_0", SHOAL_GGML_Q4_0);
    check_small("q4_1", SHOAL_GGML_Q4_1);
}

static long file_bytes(const char *name, unsigned char **data)
{
    char path[512];
    path_of(name, path, sizeof path);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    *data = malloc((size_t)n);
    assert_int_equal(fread(*data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    return n;
}

static void test_seeded(void **state)
{
    (void)state;
    char args[512];
    snprintf(args, sizeof args, "%s --type q8_0 --seed 11", k_small);
    assert_int_equal(run_tool(args, "a.gguf"), 0);
    assert_int_equal(run_tool(args, "b.gguf"), 0);
    snprintf(args, sizeof args, "%s --type q8_0 --seed 12", k_small);
    assert_int_equal(run_tool(args, "c.gguf"), 0);
    unsigned char *a, *b, *c;
    long na = file_bytes("a.gguf", &a), nb = file_bytes("b.gguf", &b), nc = file_bytes("c.gguf", &c);
    assert_int_equal(na, nb);
    assert_int_equal(na, nc);
    assert_memory_equal(a, b, (size_t)na);
    assert_true(memcmp(a, c, (size_t)na) != 0);
    free(a);
    free(b);
    free(c);
}

/* theta_i with Llama 3 scaling, in double, from the published formula. */
static double ref_inv_freq(int i, int rope_dim)
{
    double f = pow(500000.0, -2.0 * i / rope_dim), wl = 2.0 * M_PI / f;
    if (wl < 8192.0 / 4.0)
        return f;
    if (wl > 8192.0 / 1.0)
        return f / 32.0;
    double smooth = (8192.0 / wl - 1.0) / (4.0 - 1.0);
    return (1.0 - smooth) * f / 32.0 + smooth * f;
}

static void check_full(const char *name, uint32_t type, uint64_t expect_size_min)
{
    char path[512];
    path_of(name, path, sizeof path);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_true((uint64_t)st.st_size >= expect_size_min);
    assert_true((uint64_t)st.st_blocks * 512 < 64u << 20); /* sparse: the matrices take no disk */

    shoal_gguf_t *g;
    shoal_llama_model_t *m;
    assert_int_equal(shoal_gguf_open(path, &g), SHOAL_OK);
    assert_int_equal(shoal_llama_model_new(g, &m), SHOAL_OK);
    const shoal_llama_hparams_t *hp = &m->hp;
    assert_int_equal(hp->n_layer, 16);
    assert_int_equal(hp->dim, 2048);
    assert_int_equal(hp->ffn_dim, 8192);
    assert_int_equal(hp->n_head, 32);
    assert_int_equal(hp->n_head_kv, 8);
    assert_int_equal(hp->head_dim, 64);
    assert_int_equal(hp->kv_dim, 512);
    assert_int_equal(hp->vocab, 128256);
    assert_int_equal(hp->rope_dim, 64);
    assert_true(hp->rope_base == 500000.0f);
    assert_true(fabsf(hp->rms_eps - 1e-5f) < 1e-9f);
    assert_true(hp->rope_llama3);
    assert_true(m->tied_output);
    for (int i = 0; i < 32; i++) {
        double r = ref_inv_freq(i, 64);
        assert_true(fabs(m->rope_inv_freq[i] - r) <= 2e-6 * r);
    }
    /* 4 + 9 * 16 tensors (rope_freqs only without --rope-meta). */
    assert_true(shoal_gguf_tensor_count(g) == 146 || shoal_gguf_tensor_count(g) == 147);
    const shoal_llama_layer_t *L = &m->layers[15];
    assert_int_equal(L->wq.n_out, 2048);
    assert_int_equal(L->wk.n_out, 512);
    assert_int_equal(L->w_gate.n_out, 8192);
    assert_int_equal(L->w_down.n_in, 8192);
    assert_int_equal(L->w_down.type, type);
    assert_int_equal(m->tok_embd.type, type);

    shoal_tokenizer_t *tok;
    assert_int_equal(shoal_tokenizer_new_from_gguf(g, &tok), SHOAL_OK);
    assert_int_equal(shoal_tokenizer_bos(tok), 128000);
    assert_int_equal(shoal_tokenizer_eos(tok), 128001);
    assert_int_equal(shoal_tokenizer_eot(tok), 128009);
    assert_int_equal(shoal_tokenizer_n_vocab(tok), 128256);
    shoal_tokenizer_delete(tok);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
    unlink(path);
}

static void test_full_layout(void **state)
{
    (void)state;
    /* Llama 3.2 1B: 1,235,814,400 parameters (embedding tied); F16 = 2 bytes each, Q8_0 34/32. */
    const uint64_t params = 1235814400ull;
    assert_int_equal(run_tool("--sparse --type f16", "full_f16.gguf"), 0);
    check_full("full_f16.gguf", SHOAL_GGML_F16, params * 2 - 2048 * 33 * 4);
    assert_int_equal(run_tool("--sparse --type q8_0 --rope-meta", "full_q8.gguf"), 0);
    check_full("full_q8.gguf", SHOAL_GGML_Q8_0, params / 32 * 34 - 2048 * 33 * 4);
}

static void test_bad_options(void **state)
{
    (void)state;
    assert_int_equal(run_tool("--type q5_k", "x.gguf"), 2);
    assert_int_equal(run_tool("--layers 0", "x.gguf"), 2);
    assert_int_equal(run_tool("--heads 3", "x.gguf"), 2);
    assert_int_equal(run_tool("--seed", "x.gguf"), 2);
    /* A row length that is not a multiple of the 32-element block. */
    assert_int_equal(run_tool("--layers 1 --dim 48 --ffn 64 --heads 2 --kv-heads 1 --vocab 300 --type q8_0", "x.gguf"),
                     1);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' --out /nonexistent-dir/x.gguf >/dev/null 2>&1", g_tool);
    int rc = system(cmd);
    assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 1);
}

int main(void)
{
    const char *bd = getenv("SHOAL_BUILD_DIR");
    snprintf(g_tool, sizeof g_tool, "%s/make_llama_gguf", bd ? bd : ".");
    if (access(g_tool, X_OK) != 0) {
        fprintf(stderr, "make_llama_gguf not built at %s\n", g_tool);
        return 1;
    }
    snprintf(g_dir, sizeof g_dir, "/tmp/shoal_make_gguf_XXXXXX");
    if (!mkdtemp(g_dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_small_types),
        cmocka_unit_test(test_seeded),
        cmocka_unit_test(test_full_layout),
        cmocka_unit_test(test_bad_options),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", g_dir);
    return rc;
}
