/* stream.c — streaming completion through wasi-nn: compute_single produces one token per call
 * and get_output_single hands back its text, printed as it comes; end_of_sequence ends the
 * answer, fini_single closes the stream.
 *
 *   shoal run --nn-preload default:GGML:AUTO:model.gguf stream.wasm [-n N] [-c CTX] MODEL "PROMPT"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shoal_guest.h"
#include "wasi_nn.h"

static void die(const char *what, int32_t e)
{
    char msg[256];
    shoal_last_error(msg, sizeof msg);
    fprintf(stderr, "stream: %s: %s (%s)\n", what, nn_strerror(e), msg);
    exit(1);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    int n_predict = 128, ctx = 2048, i = 1;
    for (; i + 1 < argc && argv[i][0] == '-'; i += 2) {
        if (!strcmp(argv[i], "-n")) n_predict = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "-c")) ctx = atoi(argv[i + 1]);
        else break;
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: stream.wasm [-n N] [-c CTX] MODEL PROMPT\n");
        return 2;
    }
    const char *model = argv[i], *question = argv[i + 1];
    char config[128];
    snprintf(config, sizeof config, "{\"ctx-size\": %d, \"temp\": 0}", ctx);
    nn_graph_t g;
    nn_ctx_t c;
    int32_t e = nn_load_by_name_with_config(model, strlen(model), config, strlen(config), &g);
    if (e) die("load_by_name_with_config", e);
    if ((e = nn_init_execution_context(g, &c))) die("init_execution_context", e);
    size_t cap = strlen(question) + 160;
    char *prompt = malloc(cap);
    int plen = snprintf(prompt, cap,
                        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n%s<|im_end|>\n"
                        "<|im_start|>assistant\n",
                        question);
    if ((e = nn_set_input_bytes(c, 0, prompt, (uint32_t)plen))) die("set_input", e);

    double t0 = now_s();
    int tokens = 0;
    for (; tokens < n_predict; tokens++) {
        e = nn_compute_single(c);
        if (e == NN_END_OF_SEQUENCE) break;
        if (e) die("compute_single", e);
        uint8_t piece[256];
        uint32_t n = 0;
        if ((e = nn_get_output_single(c, 0, piece, sizeof piece, &n))) die("get_output_single", e);
        fwrite(piece, 1, n, stdout);
        fflush(stdout);
    }
    double dt = now_s() - t0;
    nn_fini_single(c);
    printf("\n[%d tokens streamed, %.1f tokens/s including the prompt]\n", tokens, dt > 0 ? tokens / dt : 0.0);
    nn_finalize_execution_context(c);
    nn_unload(g);
    free(prompt);
    return 0;
}
