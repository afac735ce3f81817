/* complete.c — one-shot completion through wasi-nn, the way WasmEdge's GGML examples do it:
 * the guest applies the chat template (ChatML here) by hand, sends the prompt as input 0,
 * runs compute and reads the answer (output 0) and the token counts (output 1).
 *
 *   shoal run --nn-preload default:GGML:AUTO:model.gguf complete.wasm [-n N] [-c CTX] [-t TEMP]
 *             [-s SYSTEM] [-o '"KEY": VALUE, ...'] MODEL "PROMPT"
 * -o adds options to the JSON config (e.g. -o '"enable-log": true, "reverse-prompt": "."').
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shoal_guest.h"
#include "wasi_nn.h"

static void die(const char *what, int32_t e)
{
    char msg[256];
    shoal_last_error(msg, sizeof msg);
    fprintf(stderr, "complete: %s: %s (%s)\n", what, nn_strerror(e), msg);
    exit(1);
}

/* The number after "key": in the metadata JSON, or -1. */
static double meta_num(const char *json, const char *key)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? atof(p + strlen(pat)) : -1;
}

int main(int argc, char **argv)
{
    int n_predict = 128, ctx = 2048;
    const char *temp = "0", *system = "You are a helpful assistant.", *extra = NULL;
    int i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "-n")) n_predict = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c")) ctx = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-t")) temp = argv[i + 1];
        else if (!strcmp(argv[i], "-s")) system = argv[i + 1];
        else if (!strcmp(argv[i], "-o")) extra = argv[i + 1];
        else break;
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: complete.wasm [-n N] [-c CTX] [-t TEMP] [-s SYSTEM] [-o JSON-MEMBERS] MODEL PROMPT\n");
        return 2;
    }
    const char *model = argv[i], *question = argv[i + 1];

    char config[1024];
    snprintf(config, sizeof config, "{\"n-predict\": %d, \"ctx-size\": %d, \"temp\": %s%s%s}", n_predict, ctx, temp,
             extra ? ", " : "", extra ? extra : "");
    nn_graph_t g;
    int32_t e = nn_load_by_name_with_config(model, strlen(model), config, strlen(config), &g);
    if (e) die("load_by_name_with_config", e);
    nn_ctx_t c;
    if ((e = nn_init_execution_context(g, &c))) die("init_execution_context", e);

    /* ChatML, as SmolLM2 and Qwen expect it. */
    size_t cap = strlen(system) + strlen(question) + 128;
    char *prompt = malloc(cap);
    int plen = snprintf(prompt, cap,
                        "<|im_start|>system\n%s<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n",
                        system, question);
    if ((e = nn_set_input_bytes(c, 0, prompt, (uint32_t)plen))) die("set_input", e);
    if ((e = nn_compute(c))) die("compute", e);

    static uint8_t answer[1 << 16];
    uint32_t n = 0;
    if ((e = nn_get_output(c, 0, answer, sizeof answer - 1, &n))) die("get_output", e);
    answer[n] = '\0';
    char meta[256];
    uint32_t m = 0;
    if ((e = nn_get_output(c, 1, (uint8_t *)meta, sizeof meta - 1, &m))) die("get_output(metadata)", e);
    meta[m] = '\0';
    double out_tokens = meta_num(meta, "output_tokens"), ms = meta_num(meta, "generation_ms");
    printf("%s\n", answer);
    printf("[%.0f prompt tokens, %.0f generated, %.1f tokens/s]\n", meta_num(meta, "input_tokens"), out_tokens,
           ms > 0 ? out_tokens * 1000.0 / ms : 0.0);
    nn_finalize_execution_context(c);
    nn_unload(g);
    free(prompt);
    return 0;
}
