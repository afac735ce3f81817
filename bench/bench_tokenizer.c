/* bench_tokenizer.c — encode/decode speed of the SmolLM2 tokenizer and per-token sampler cost.
 *
 * Usage: bench_tokenizer [model.gguf]   (default: $SHOAL_DEPS or .deps, SmolLM2-135M-Instruct.Q4_1)
 * Builds a ~4k-token prompt (English prose, C code, Unicode, emoji, whitespace runs), checks that
 * decode(encode(x)) == x, then reports the median of 50 encodes and decodes. The sampler part
 * times one shoal_sampler_sample per configuration on random logits at vocab 49152 and 128256,
 * median of 200 calls. Single thread; prints the machine's CPU model. */
#define _GNU_SOURCE
#include "model/gguf.h"
#include "model/sampler.h"
#include "model/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec * 1e-6;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static void cpu_name(char *out, size_t cap)
{
    snprintf(out, cap, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f))
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(out, cap, "%s", c + 2);
                out[strcspn(out, "\n")] = 0;
            }
            break;
        }
    fclose(f);
}

int main(int argc, char **argv)
{
    char path[4096];
    if (argc > 1)
        snprintf(path, sizeof path, "%s", argv[1]);
    else
        snprintf(path, sizeof path, "%s/models/SmolLM2-135M-Instruct.Q4_1.gguf",
                 getenv("SHOAL_DEPS") ? getenv("SHOAL_DEPS") : ".deps");
    char cpu[256];
    cpu_name(cpu, sizeof cpu);
    printf("machine: %s\n", cpu);

    shoal_gguf_t *g;
    shoal_tokenizer_t *t;
    if (shoal_gguf_open(path, &g) || shoal_tokenizer_new_from_gguf(g, &t)) {
        fprintf(stderr, "bench_tokenizer: %s\n", shoal_last_error());
        return 1;
    }
    static const char *const parts[] = {
        "The quick brown fox jumps over the lazy dog while the committee debated the budget. ",
        "int main(int argc, char **argv) {\n    for (int i = 0; i < argc; i++)\n        puts(argv[i]);\n}\n",
        "Caf\xc3\xa9 cr\xc3\xa8me br\xc3\xbbl\xc3\xa9" "e, \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, "
        "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 ",
        "\xf0\x9f\x98\x80\xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd  ok!!   ",
        "Numbers 3.14159, 2026-11-25 and 1,000,000.\n\n\n",
    };
    char *text = malloc(1 << 20);
    size_t len = 0, n_tok = 0;
    int32_t *ids = malloc((1 << 20) * sizeof *ids);
    for (unsigned k = 0; n_tok < 4096; k++) {
        const char *p = parts[(k * 7 + k / 5) % 5];
        memcpy(text + len, p, strlen(p));
        len += strlen(p);
        if (shoal_tokenizer_encode(t, text, len, false, false, ids, 1 << 20, &n_tok)) {
            fprintf(stderr, "bench_tokenizer: %s\n", shoal_last_error());
            return 1;
        }
    }
    char *back = malloc(len);
    size_t w = 0;
    if (shoal_tokenizer_decode(t, ids, n_tok, false, back, len, &w) || w != len || memcmp(back, text, len)) {
        fprintf(stderr, "bench_tokenizer: round trip failed\n");
        return 1;
    }
    double enc[50], dec[50];
    for (int r = 0; r < 50; r++) {
        double a = now_ms();
        shoal_tokenizer_encode(t, text, len, false, false, ids, 1 << 20, &n_tok);
        double b = now_ms();
        shoal_tokenizer_decode(t, ids, n_tok, false, back, len, &w);
        double c = now_ms();
        enc[r] = b - a;
        dec[r] = c - b;
    }
    double me = median(enc, 50), md = median(dec, 50);
    printf("tokenizer: %zu bytes -> %zu tokens; encode %.3f ms (%.1f MB/s, %.2f us/token), decode %.3f ms\n", len,
           n_tok, me, len / me / 1e3, me * 1e3 / n_tok, md);

    static const struct {
        const char *name;
        float temp;
        int top_k;
        float top_p, min_p, rep;
    } cfg[] = {
        {"greedy", 0.0f, 0, 1.0f, 0.0f, 1.0f},
        {"greedy + repeat penalty", 0.0f, 0, 1.0f, 0.0f, 1.1f},
        {"temperature only", 0.8f, 0, 1.0f, 0.0f, 1.0f},
        {"llama.cpp defaults (k40 p.95 m.05)", 0.8f, 40, 0.95f, 0.05f, 1.0f},
        {"top-p 0.9 alone", 0.8f, 0, 0.9f, 0.0f, 1.0f},
        {"min-p 0.05 alone", 0.8f, 0, 1.0f, 0.05f, 1.0f},
    };
    static const int vocabs[] = {49152, 128256};
    for (int v = 0; v < 2; v++) {
        int n = vocabs[v];
        float *l = malloc((size_t)n * sizeof *l);
        uint64_t x = 88172645463325252ull;
        for (int i = 0; i < n; i++) { /* sum of uniforms: a bell of logits spread over ~12 units */
            float s = 0;
            for (int k = 0; k < 4; k++) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s += (float)(x >> 40) / (float)(1 << 24);
            }
            l[i] = (s - 2.0f) * 6.0f;
        }
        for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
            shoal_sampler_params_t p;
            shoal_sampler_params_init(&p);
            p.temperature = cfg[c].temp;
            p.top_k = cfg[c].top_k;
            p.top_p = cfg[c].top_p;
            p.min_p = cfg[c].min_p;
            p.repeat_penalty = cfg[c].rep;
            shoal_sampler_t *s;
            if (shoal_sampler_new(&p, n, &s))
                return 1;
            for (int i = 0; i < 64; i++)
                shoal_sampler_accept(s, (i * 7919) % n);
            double tm[200];
            int32_t tok;
            for (int r = 0; r < 200; r++) {
                double a = now_ms();
                shoal_sampler_sample(s, l, n, &tok);
                tm[r] = now_ms() - a;
            }
            printf("sampler vocab %6d  %-36s %.3f ms/token\n", n, cfg[c].name, median(tm, 200));
            shoal_sampler_delete(s);
        }
        free(l);
    }
    free(back);
    free(ids);
    free(text);
    shoal_tokenizer_delete(t);
    shoal_gguf_close(g);
    return 0;
}
