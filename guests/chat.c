/* chat.c — interactive multi-turn chat through wasi-nn. Each line on stdin is a user turn; the
 * whole conversation, in ChatML, is the prompt of the next compute, so the model remembers
 * earlier turns. When the conversation outgrows the context (prompt_too_long) the oldest turns
 * are dropped.
 *
 *   shoal run --nn-preload default:GGML:AUTO:model.gguf chat.wasm [-n N] [-c CTX] [MODEL]
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shoal_guest.h"
#include "wasi_nn.h"

#define SYSTEM "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"

static void die(const char *what, int32_t e)
{
    char msg[256];
    shoal_last_error(msg, sizeof msg);
    fprintf(stderr, "chat: %s: %s (%s)\n", what, nn_strerror(e), msg);
    exit(1);
}

static double meta_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? atof(p + strlen(pat)) : -1;
}

/* The conversation so far: SYSTEM, then whole turns (user + assistant). */
static char *history;
static size_t hist_len, hist_cap;

static void append(const char *s, size_t n)
{
    if (hist_len + n + 1 > hist_cap) {
        hist_cap = (hist_len + n + 1) * 2;
        history = realloc(history, hist_cap);
        if (!history) die("out of memory", 0);
    }
    memcpy(history + hist_len, s, n);
    hist_len += n;
    history[hist_len] = '\0';
}

static void append_str(const char *s) { append(s, strlen(s)); }

/* Drops the oldest turn after the system message; false if there is none left to drop. */
static bool drop_oldest_turn(void)
{
    char *first = history + strlen(SYSTEM);
    char *next = strstr(first + 1, "<|im_start|>user\n");
    if (!next) return false;
    memmove(first, next, hist_len - (size_t)(next - history) + 1);
    hist_len -= (size_t)(next - first);
    return true;
}

int main(int argc, char **argv)
{
    int n_predict = 256, ctx = 2048, i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "-n")) n_predict = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c")) ctx = atoi(argv[i + 1]);
        else break;
    }
    const char *model = i < argc ? argv[i] : "default";
    char config[128];
    snprintf(config, sizeof config, "{\"n-predict\": %d, \"ctx-size\": %d, \"temp\": 0}", n_predict, ctx);
    nn_graph_t g;
    nn_ctx_t c;
    int32_t e = nn_load_by_name_with_config(model, strlen(model), config, strlen(config), &g);
    if (e) die("load_by_name_with_config", e);
    if ((e = nn_init_execution_context(g, &c))) die("init_execution_context", e);
    append_str(SYSTEM);

    bool tty = isatty(0);
    static char line[4096];
    static uint8_t answer[1 << 16];
    for (;;) {
        if (tty) {
            printf("> ");
            fflush(stdout);
        }
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        if (!tty) printf("> %s\n", line);
        size_t turn_start = hist_len;
        append_str("<|im_start|>user\n");
        append_str(line);
        append_str("<|im_end|>\n<|im_start|>assistant\n");
        for (;;) {
            if ((e = nn_set_input_bytes(c, 0, history, (uint32_t)hist_len))) die("set_input", e);
            e = nn_compute(c);
            if (e != NN_PROMPT_TOO_LONG) break;
            size_t before = hist_len;
            if (!drop_oldest_turn()) break;
            turn_start -= before - hist_len;
        }
        if (e == NN_PROMPT_TOO_LONG) {
            printf("(that message is too long for a context of %d tokens)\n", ctx);
            hist_len = turn_start;
            history[hist_len] = '\0';
            continue;
        }
        if (e && e != NN_CONTEXT_FULL) die("compute", e);
        uint32_t n = 0;
        if ((e = nn_get_output(c, 0, answer, sizeof answer - 1, &n))) die("get_output", e);
        answer[n] = '\0';
        char meta[256];
        uint32_t m = 0;
        if ((e = nn_get_output(c, 1, (uint8_t *)meta, sizeof meta - 1, &m))) die("get_output(metadata)", e);
        meta[m] = '\0';
        double toks = meta_num(meta, "output_tokens"), ms = meta_num(meta, "generation_ms");
        printf("%s\n[%.0f tokens, %.1f tokens/s]\n", (char *)answer, toks, ms > 0 ? toks * 1000.0 / ms : 0.0);
        fflush(stdout);
        append((char *)answer, n);
        append_str("<|im_end|>\n");
    }
    nn_finalize_execution_context(c);
    nn_unload(g);
    free(history);
    return 0;
}
