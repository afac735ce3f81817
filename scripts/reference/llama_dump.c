/* llama_dump.c — small tool on libllama that dumps llama.cpp's own token ids, per-position logits
 * and greedy continuations, so Shoal's fixtures come from llama.cpp itself (built by
 * build_llamacpp.sh; not part of libshoal).
 *
 *   llama-dump tokenize MODEL CASES
 *       CASES is a binary file of records {u8 parse_special, u8 add_special, u32le len, len bytes}.
 *       Prints one line per record: the ids separated by spaces, a TAB, and the hex of
 *       llama_detokenize(ids, remove_special=false, unparse_special=true).
 *   llama-dump logits MODEL IDS OUT N_GREEDY THREADS
 *       IDS is a text file of whitespace-separated token ids. Evaluates them in one batch with
 *       every position output, writes float32 logits [n_tokens][n_vocab] (little-endian, as
 *       in memory) to OUT, then greedily decodes N_GREEDY tokens one at a time and prints their
 *       ids on one line. The KV cache is kept in F32 and flash attention off, so that the
 *       comparison with the float64 reference measures weights/kernels, not cache rounding.
 *       With LLAMA_DUMP_TRACE=DIR set, every named F32 intermediate of the prompt's graph
 *       (e.g. attn_norm-0, Qcur-0, ffn_out-29, result_norm) is also written to DIR/NAME.f32,
 *       and "NAME ne0 ne1 ne2 ne3" lines go to DIR/index.txt, to locate a divergence.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ggml-backend.h"
#include "llama.h"

static void quiet_log(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (level == GGML_LOG_LEVEL_ERROR) fputs(text, stderr);
}

static int fail(const char *msg, const char *arg) {
    fprintf(stderr, "llama-dump: %s%s%s\n", msg, arg ? ": " : "", arg ? arg : "");
    return 1;
}

static unsigned char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    unsigned char *buf = malloc(cap);
    for (;;) {
        if (!buf) break;
        if (n == cap) {
            unsigned char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); buf = NULL; break; }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    fclose(f);
    *len = n;
    return buf;
}

static int cmd_tokenize(const struct llama_vocab *vocab, const char *cases_path) {
    size_t len = 0;
    unsigned char *data = read_file(cases_path, &len);
    if (!data) return fail("cannot read cases file", cases_path);
    size_t off = 0;
    int rc = 0;
    while (off < len && rc == 0) {
        if (len - off < 6) { rc = fail("truncated record header in", cases_path); break; }
        bool parse_special = data[off] != 0, add_special = data[off + 1] != 0;
        uint32_t n = (uint32_t)data[off + 2] | (uint32_t)data[off + 3] << 8 |
                     (uint32_t)data[off + 4] << 16 | (uint32_t)data[off + 5] << 24;
        off += 6;
        if (n > len - off || n > INT32_MAX / 2) { rc = fail("record runs past end of", cases_path); break; }
        const char *text = (const char *)data + off;
        off += n;
        int32_t cap = (int32_t)n + 16;
        llama_token *ids = malloc(sizeof *ids * (size_t)cap);
        if (!ids) { rc = fail("out of memory", NULL); break; }
        int32_t k = llama_tokenize(vocab, text, (int32_t)n, ids, cap, add_special, parse_special);
        if (k < 0) { free(ids); rc = fail("llama_tokenize failed", NULL); break; }
        for (int32_t i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        int32_t tcap = (int32_t)n * 2 + 64;
        char *txt = malloc((size_t)tcap);
        int32_t t = txt ? llama_detokenize(vocab, ids, k, txt, tcap, false, true) : -1;
        if (t < 0) { free(ids); free(txt); rc = fail("llama_detokenize failed", NULL); break; }
        putchar('\t');
        for (int32_t i = 0; i < t; i++) printf("%02x", (unsigned char)txt[i]);
        putchar('\n');
        free(txt);
        free(ids);
    }
    free(data);
    return rc;
}

/* Scheduler eval callback: asks for every tensor, saves the named F32 ones of the first graph. */
static bool trace_cb(struct ggml_tensor *t, bool ask, void *user) {
    const char *dir = user;
    if (ask) return true;
    if (t->type != GGML_TYPE_F32 || !t->name[0] || strchr(t->name, ' ') || strchr(t->name, '/') ||
        !ggml_is_contiguous(t))
        return true;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", dir, t->name);
    size_t n = ggml_nbytes(t);
    void *buf = malloc(n);
    FILE *f = buf ? fopen(path, "wb") : NULL;
    if (f) {
        ggml_backend_tensor_get(t, buf, 0, n);
        fwrite(buf, 1, n, f);
        fclose(f);
        snprintf(path, sizeof path, "%s/index.txt", dir);
        FILE *ix = fopen(path, "a");
        if (ix) {
            fprintf(ix, "%s %lld %lld %lld %lld\n", t->name, (long long)t->ne[0], (long long)t->ne[1],
                    (long long)t->ne[2], (long long)t->ne[3]);
            fclose(ix);
        }
    }
    free(buf);
    return true;
}

static int argmax(const float *v, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

static int cmd_logits(struct llama_model *model, const char *ids_path, const char *out_path,
                      int n_greedy, int threads) {
    size_t len = 0;
    unsigned char *text = read_file(ids_path, &len);
    if (!text) return fail("cannot read ids file", ids_path);
    char *s = realloc(text, len + 1);
    if (!s) { free(text); return fail("out of memory", NULL); }
    s[len] = 0;
    llama_token ids[4096];
    int n = 0;
    for (char *p = s, *end; n < 4096; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        ids[n++] = (llama_token)v;
    }
    free(s);
    if (n == 0) return fail("no token ids in", ids_path);

    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= n_vocab) return fail("token id out of range in", ids_path);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 512;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.type_k = GGML_TYPE_F32;
    cp.type_v = GGML_TYPE_F32;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = true;
    const char *trace = getenv("LLAMA_DUMP_TRACE");
    if (trace && *trace) {
        cp.cb_eval = trace_cb;
        cp.cb_eval_user_data = (void *)trace;
    }
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) return fail("llama_init_from_model failed", NULL);

    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = ids[i];
        b.pos[i] = i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = 1;
    }
    b.n_tokens = n;
    int rc = 0;
    if (llama_decode(ctx, b) != 0) rc = fail("llama_decode of the prompt failed", NULL);
    llama_batch_free(b);
    if (trace && *trace) n_greedy = 0; /* the trace is of the prompt's graph only */

    FILE *out = rc ? NULL : fopen(out_path, "wb");
    if (!rc && !out) rc = fail("cannot write", out_path);
    int next = 0;
    for (int i = 0; i < n && !rc; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row) { rc = fail("no logits for a prompt position", NULL); break; }
        if (fwrite(row, sizeof(float), (size_t)n_vocab, out) != (size_t)n_vocab) rc = fail("short write", out_path);
        if (i == n - 1) next = argmax(row, n_vocab);
    }
    if (out && fclose(out) != 0 && !rc) rc = fail("cannot close", out_path);

    for (int g = 0; g < n_greedy && !rc; g++) {
        printf(g ? " %d" : "%d", next);
        if (g == n_greedy - 1) break;
        llama_token t = next;
        struct llama_batch one = llama_batch_get_one(&t, 1);
        if (llama_decode(ctx, one) != 0) { rc = fail("llama_decode of a generated token failed", NULL); break; }
        const float *row = llama_get_logits_ith(ctx, -1);
        if (!row) { rc = fail("no logits for a generated token", NULL); break; }
        next = argmax(row, n_vocab);
    }
    putchar('\n');
    llama_free(ctx);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s tokenize MODEL CASES\n       %s logits MODEL IDS OUT N_GREEDY THREADS\n",
                argv[0], argv[0]);
        return 2;
    }
    bool tok = strcmp(argv[1], "tokenize") == 0;
    if (!tok && (strcmp(argv[1], "logits") != 0 || argc != 7)) return fail("bad arguments", argv[1]);
    llama_log_set(quiet_log, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.vocab_only = tok;
    mp.n_gpu_layers = 0;
    struct llama_model *model = llama_model_load_from_file(argv[2], mp);
    if (!model) return fail("cannot load model", argv[2]);
    int rc = tok ? cmd_tokenize(llama_model_get_vocab(model), argv[3])
                 : cmd_logits(model, argv[3], argv[4], atoi(argv[5]), atoi(argv[6]));
    llama_model_free(model);
    llama_backend_free();
    return rc;
}
