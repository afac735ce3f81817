/* kv_export.c — test helper: evaluates a fixed prompt with SmolLM2, writes its KV cache as
 * safetensors (OUT) and the same rows raw (RAW: per layer K rows then V rows, float32 LE), and
 * prints the model's SHA-256, so tests/test_kv_safetensors.py can read OUT with the reference
 * library and compare. */
#include <stdio.h>
#include <stdlib.h>

#include "core/sha256.h"
#include "snapshot/kvcache.h"

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: kv_export MODEL.gguf OUT.safetensors RAW.bin\n");
        return 2;
    }
    static const int32_t prompt[] = {1, 4093, 198, 1780, 314, 260, 3575, 282, 4649, 47, 2, 198, 1, 520, 9531, 198,
                                     504, 2365, 6354, 16438, 27003, 690, 260, 23790};
    const int n = (int)(sizeof prompt / sizeof prompt[0]);
    shoal_gguf_t *g = NULL;
    shoal_llama_model_t *m = NULL;
    shoal_engine_t *c = NULL;
    if (shoal_gguf_open(argv[1], &g) != SHOAL_OK || shoal_llama_model_new(g, &m) != SHOAL_OK ||
        shoal_engine_new(m, NULL, &c) != SHOAL_OK || shoal_engine_eval(c, prompt, n, 0, NULL, 0) != SHOAL_OK) {
        fprintf(stderr, "kv_export: %s\n", shoal_last_error());
        return 1;
    }
    uint8_t sha[32];
    shoal_model_sha256(g, sha);
    if (shoal_kv_save_safetensors(c, sha, argv[2]) != SHOAL_OK) {
        fprintf(stderr, "kv_export: %s\n", shoal_last_error());
        return 1;
    }
    FILE *f = fopen(argv[3], "wb");
    for (int l = 0; f && l < m->hp.n_layer; l++) {
        const float *k, *v;
        const size_t rb = (size_t)m->hp.kv_dim * sizeof(float);
        shoal_engine_kv_host(c, l, &k, &v);
        fwrite(k, rb, (size_t)n, f);
        fwrite(v, rb, (size_t)n, f);
    }
    if (!f || fclose(f) != 0) return 1;
    char hex[65];
    shoal_hex(sha, 32, hex);
    printf("%s %d %d %d\n", hex, n, m->hp.n_layer, m->hp.kv_dim);
    shoal_engine_delete(c);
    shoal_llama_model_delete(m);
    shoal_gguf_close(g);
    return 0;
}
