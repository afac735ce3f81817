/* tokenizer.h — text <-> token ids from a GGUF model's vocabulary, matching llama.cpp's tokenizer.
 *
 * Two families, chosen by `tokenizer.ggml.model`:
 *  - "gpt2": byte-level BPE. Text is split by the pre-tokenizer named in `tokenizer.ggml.pre`,
 *    each piece's bytes are mapped to GPT-2's printable byte alphabet and merged pairwise by the
 *    rank of `tokenizer.ggml.merges`. Pre-tokenizers implemented (by hand, no regex engine):
 *      gpt2 family  ("gpt-2", "phi-2", "mpt", "olmo", "jais", ...):
 *          's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      smollm family ("smollm", "starcoder", "refact", "codeshell", ...): first every \p{N}
 *          code point becomes its own piece, then the gpt2 rules apply inside each remaining run
 *          (a run's end counts as end of text for the (?!\S) look-ahead)
 *      llama3 family ("llama3", "llama-bpe", "llama-v3", ..., and "dbrx", "smaug-bpe"):
 *          (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|
 *          \s*[\r\n]+|\s+(?!\S)|\s+      and (not for dbrx/smaug) a piece that is itself a token
 *          skips the merges.
 *    Other pre-tokenizer names fail with SHOAL_E_UNSUPPORTED.
 *  - "llama": SentencePiece (Llama 2 style). Spaces become U+2581, a space is prefixed to each
 *    text run at the start or after a special token (when `tokenizer.ggml.add_space_prefix`,
 *    default true), adjacent symbols merge greedily by the score of the merged token, and
 *    characters with no token fall back to <0xNN> byte tokens.
 *
 * Special tokens (types CONTROL, USER_DEFINED, UNKNOWN) are cut out of the text before
 * pre-tokenization, longest first, exactly as llama.cpp's partitioning does. CONTROL and
 * UNKNOWN tokens are matched only with parse_special; USER_DEFINED ones always.
 *
 * Invalid UTF-8 is never an error: like the reference, each byte that does not start a
 * well-formed sequence becomes U+FFFD before byte-level BPE (so it encodes as the tokens of
 * EF BF BD); SentencePiece sees the raw bytes and gives them byte tokens.
 *
 * Known differences from the reference, all outside normal use: merges whose parts or result
 * are not vocabulary tokens are ignored (the reference would build the string anyway and fall
 * back to bytes); the LSTRIP/RSTRIP attributes a few models give special tokens by name are
 * not applied; 4-byte sequences above U+10FFFF (on which the reference throws) are invalid bytes;
 * decoding does not apply the reference's optional "clean spaces" heuristics. Like the reference,
 * a vocabulary string ends at its first NUL byte (it reads them as C strings).
 *
 * A tokenizer copies what it needs from the GGUF (the file may be closed afterwards), is
 * immutable after creation and safe to use from several threads at once. */
#ifndef SHOAL_MODEL_TOKENIZER_H
#define SHOAL_MODEL_TOKENIZER_H

#include "shoal.h"
#include "model/gguf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shoal_tokenizer shoal_tokenizer_t;

typedef enum shoal_tokenizer_kind {
    SHOAL_TOKENIZER_BPE = 1, /* "gpt2": byte-level BPE */
    SHOAL_TOKENIZER_SPM = 2, /* "llama": SentencePiece */
} shoal_tokenizer_kind_t;

/* Token types, numbered as `tokenizer.ggml.token_type` stores them. */
typedef enum shoal_token_type {
    SHOAL_TOKEN_UNDEFINED = 0,
    SHOAL_TOKEN_NORMAL = 1,
    SHOAL_TOKEN_UNKNOWN = 2,
    SHOAL_TOKEN_CONTROL = 3,
    SHOAL_TOKEN_USER_DEFINED = 4,
    SHOAL_TOKEN_UNUSED = 5,
    SHOAL_TOKEN_BYTE = 6,
} shoal_token_type_t;

/* Builds the tokenizer from the model's metadata. SHOAL_E_FORMAT for missing or inconsistent
 * keys (message names the key), SHOAL_E_UNSUPPORTED for an unknown model or pre-tokenizer. */
shoal_status_t shoal_tokenizer_new_from_gguf(const shoal_gguf_t *g, shoal_tokenizer_t **out);
void shoal_tokenizer_delete(shoal_tokenizer_t *t);

shoal_tokenizer_kind_t shoal_tokenizer_kind(const shoal_tokenizer_t *t);
const char *shoal_tokenizer_pre(const shoal_tokenizer_t *t); /* pre-tokenizer family: "gpt2", "smollm", "llama3", "spm" */
int32_t shoal_tokenizer_n_vocab(const shoal_tokenizer_t *t);

/* Special ids; -1 when the model has none. eot falls back to a token named like an end of turn
 * ("<|eot_id|>", "<|im_end|>", "<end_of_turn>", ...) when the file gives no eot id. */
int32_t shoal_tokenizer_bos(const shoal_tokenizer_t *t);
int32_t shoal_tokenizer_eos(const shoal_tokenizer_t *t);
int32_t shoal_tokenizer_eot(const shoal_tokenizer_t *t);
int32_t shoal_tokenizer_unk(const shoal_tokenizer_t *t);
/* Whether the model wants BOS prepended (`tokenizer.ggml.add_bos_token`; default true for SPM,
 * false for BPE). */
bool shoal_tokenizer_wants_bos(const shoal_tokenizer_t *t);
/* End of generation: eos, eot, and tokens named like an end of turn/text or a fill-in-the-middle
 * pad/repository/file separator (the names llama.cpp uses, e.g. SmolLM2's <|endoftext|>,
 * <|im_end|> and <reponame>). False for out-of-range ids. */
bool shoal_tokenizer_is_eog(const shoal_tokenizer_t *t, int32_t id);
/* Type of a token; SHOAL_TOKEN_UNDEFINED for out-of-range ids. */
shoal_token_type_t shoal_tokenizer_token_type(const shoal_tokenizer_t *t, int32_t id);
/* CONTROL or UNKNOWN: rendered by decode only when asked for special tokens. */
bool shoal_tokenizer_is_control(const shoal_tokenizer_t *t, int32_t id);
/* The vocabulary string of a token as stored (byte-level alphabet / U+2581 not undone), not
 * NUL-terminated; NULL for out-of-range ids. */
const char *shoal_tokenizer_token_text(const shoal_tokenizer_t *t, int32_t id, size_t *len);
/* Id of the token whose vocabulary string is exactly text[0..len), or -1. */
int32_t shoal_tokenizer_find(const shoal_tokenizer_t *t, const char *text, size_t len);

/* Encodes text[0..len). parse_special: recognise CONTROL tokens written in the text (e.g.
 * "<|im_start|>"); add_bos: prepend the BOS token (pass shoal_tokenizer_wants_bos(t) for the
 * model's default; SHOAL_E_INVALID if the model has no BOS). Writes the ids to out[0..cap) and
 * their number to *n_out. If cap is too small, returns SHOAL_E_LIMIT with *n_out set to the
 * number needed (out holds the first cap ids); call again with a larger buffer. Texts longer than
 * 256 MiB give SHOAL_E_LIMIT. */
shoal_status_t shoal_tokenizer_encode(const shoal_tokenizer_t *t, const char *text, size_t len, bool parse_special,
                                      bool add_bos, int32_t *out, size_t cap, size_t *n_out);

/* The bytes a token stands for: byte-level alphabet mapped back to raw bytes, U+2581 to space,
 * <0xNN> to the byte. CONTROL/UNKNOWN tokens give their text if `special`, else nothing;
 * USER_DEFINED tokens always give their text. A piece may be part of a UTF-8 sequence.
 * SHOAL_E_LIMIT with *n_out = bytes needed if cap is too small; SHOAL_E_INVALID for a bad id. */
shoal_status_t shoal_tokenizer_token_to_piece(const shoal_tokenizer_t *t, int32_t id, bool special, char *buf,
                                              size_t cap, size_t *n_out);
/* Concatenated pieces of ids[0..n) (SPM with a space prefix: the first token's leading space is
 * dropped, as encode added it). Output is not NUL-terminated. SHOAL_E_LIMIT with *n_out = bytes
 * needed if cap is too small; SHOAL_E_INVALID naming the first bad id. */
shoal_status_t shoal_tokenizer_decode(const shoal_tokenizer_t *t, const int32_t *ids, size_t n, bool special,
                                      char *buf, size_t cap, size_t *n_out);

#endif
