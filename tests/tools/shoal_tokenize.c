/* shoal_tokenize.c — test helper: Shoal's tokenizer over the record file llama-dump reads, so a
 * script can compare the two line by line.
 *
 *   shoal_tokenize MODEL CASES
 *       CASES: records {u8 parse_special, u8 add_special, u32le len, len bytes}. Prints one line
 *       per record: the ids separated by spaces, a TAB, the hex of the decoded text (special
 *       tokens rendered), like `llama-dump tokenize`. add_special adds BOS only where the model
 *       asks for it, as llama_tokenize does. */
#include "model/gguf.h"
#include "model/tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: shoal_tokenize MODEL CASES\n");
        return 2;
    }
    shoal_gguf_t *g;
    shoal_tokenizer_t *t;
    if (shoal_gguf_open(argv[1], &g) || shoal_tokenizer_new_from_gguf(g, &t)) {
        fprintf(stderr, "shoal_tokenize: %s\n", shoal_last_error());
        return 1;
    }
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "shoal_tokenize: cannot open %s\n", argv[2]);
        return 1;
    }
    uint8_t hdr[6];
    int rc = 0;
    while (fread(hdr, 1, 6, f) == 6) {
        uint32_t n = hdr[2] | (uint32_t)hdr[3] << 8 | (uint32_t)hdr[4] << 16 | (uint32_t)hdr[5] << 24;
        char *text = malloc(n ? n : 1);
        size_t cap = (size_t)n + 16, cnt = 0, w = 0;
        int32_t *ids = malloc(cap * sizeof *ids);
        char *out = malloc(16 * (size_t)n + 64);
        if (!text || !ids || !out || fread(text, 1, n, f) != n ||
            shoal_tokenizer_encode(t, text, n, hdr[0] != 0, hdr[1] != 0 && shoal_tokenizer_wants_bos(t), ids, cap,
                                   &cnt) ||
            shoal_tokenizer_decode(t, ids, cnt, true, out, 16 * (size_t)n + 64, &w)) {
            fprintf(stderr, "shoal_tokenize: %s\n", shoal_last_error());
            rc = 1;
        } else {
            for (size_t i = 0; i < cnt; i++)
                printf(i ? " %d" : "%d", ids[i]);
            putchar('\t');
            for (size_t i = 0; i < w; i++)
                printf("%02x", (uint8_t)out[i]);
            putchar('\n');
        }
        free(text);
        free(ids);
        free(out);
        if (rc)
            break;
    }
    fclose(f);
    shoal_tokenizer_delete(t);
    shoal_gguf_close(g);
    return rc;
}
