/* tokens.c — the token-level API: the guest owns the generation loop. The host writes the
 * logits of each step straight into this guest's `logits` array (no copy); the guest picks
 * the next token itself (greedy argmax here: any policy is plain C) and feeds it back. The KV
 * cache stays with the host, attached to this actor's session.
 *
 *   shoal run --nn-preload default:GGML:AUTO:model.gguf tokens.wasm [-n N] MODEL "PROMPT"
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shoal_guest.h"

static void check(int32_t st, const char *what)
{
    if (st == 0) return;
    char msg[256];
    shoal_last_error(msg, sizeof msg);
    fprintf(stderr, "tokens: %s failed (status %d): %s\n", what, st, msg);
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
    int n_predict = 128, i = 1;
    if (i + 1 < argc && !strcmp(argv[i], "-n")) n_predict = atoi(argv[i + 1]), i += 2;
    if (argc - i != 2) {
        fprintf(stderr, "usage: tokens.wasm [-n N] MODEL PROMPT\n");
        return 2;
    }
    const char *model = argv[i], *question = argv[i + 1];
    int32_t h;
    check(shoal_llm_open(model, strlen(model), 2048, &h), "llm_open");
    shoal_llm_info_t info;
    check(shoal_llm_info(h, &info), "llm_info");

    /* The model's own chat format, rendered by the host from its GGUF template. */
    const char *system = "You are a helpful assistant.";
    shoal_chat_msg_t msgs[2] = {{"system", 6, system, strlen(system)}, {"user", 4, question, strlen(question)}};
    static char prompt[8192];
    uint32_t plen = 0;
    check(shoal_llm_chat_render(h, msgs, 2, 1, prompt, sizeof prompt, &plen), "llm_chat_render");

    static int32_t ids[4096];
    uint32_t n = 0;
    check(shoal_llm_tokenize(h, prompt, plen, SHOAL_TOKENIZE_SPECIAL, ids, 4096, &n), "llm_tokenize");

    float *logits = malloc(sizeof(float) * (size_t)info.n_vocab); /* written in place by the host */
    double t0 = now_s();
    check(shoal_llm_eval(h, ids, n, logits, SHOAL_LLM_LOGITS_LAST), "llm_eval(prompt)");
    double t1 = now_s();
    int generated = 0;
    for (; generated < n_predict; generated++) {
        int32_t best = 0;
        for (int32_t v = 1; v < info.n_vocab; v++)
            if (logits[v] > logits[best]) best = v;
        if (shoal_llm_is_eog(h, best) == 1) break;
        char piece[256];
        uint32_t len = 0;
        check(shoal_llm_detokenize(h, &best, 1, 0, piece, sizeof piece, &len), "llm_detokenize");
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
        if (generated + 1 < n_predict) check(shoal_llm_eval(h, &best, 1, logits, SHOAL_LLM_LOGITS_LAST), "llm_eval");
    }
    double t2 = now_s();
    printf("\n[%u prompt tokens in %.1f ms, %d generated, %.1f tokens/s]\n", n, (t1 - t0) * 1e3, generated,
           t2 > t1 ? generated / (t2 - t1) : 0.0);
    shoal_llm_close(h);
    free(logits);
    return 0;
}
