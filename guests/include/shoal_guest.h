/* shoal_guest.h — the guest side of Shoal's native `shoal` import module.
 *
 * Offsets are ordinary guest pointers: the host computes on these very bytes, in place.
 * A pointer/length outside the guest's memory traps the guest; other failures return a
 * non-zero status whose message shoal_last_error() copies out. */
#ifndef SHOAL_GUEST_H
#define SHOAL_GUEST_H

#include <stdint.h>

#define SHOAL_IMPORT(name) __attribute__((import_module("shoal"), import_name(name)))

enum shoal_placement { SHOAL_ZEROCOPY = 0, SHOAL_COPY = 1, SHOAL_RESIDENT = 2 };

/* What the last op did. Addresses are offsets into this guest's memory; UINT64_MAX means
 * the kernel used memory outside it (a staging copy). */
typedef struct shoal_op_info {
    uint64_t ns;           /* host-measured time of the op, copies included */
    uint64_t bytes_copied; /* bytes staged (0 on the zero-copy path) */
    int64_t rss_growth;    /* host RSS growth while the operands were exposed to the kernel */
    uint64_t a_offset, b_offset, c_offset; /* where the kernel read A, B and wrote C */
    uint32_t identity;     /* 1 when all three lie in this guest's memory */
    uint32_t reserved;
} shoal_op_info_t;

/* C[m,n] = A[m,k] @ B[k,n], float32, row-major; C must not overlap A or B. Returns 0. */
SHOAL_IMPORT("matmul_f32")
int32_t shoal_matmul_f32(const float *a, const float *b, float *c, uint32_t m, uint32_t n, uint32_t k);
SHOAL_IMPORT("matmul_f32_placed")
int32_t shoal_matmul_f32_placed(const float *a, const float *b, float *c, uint32_t m, uint32_t n, uint32_t k,
                                int32_t placement);
/* Names [p, p+len) as a device-resident operand (a copy kept in device memory until dropped;
 * re-add after writing to it). A no-op on the CPU. */
SHOAL_IMPORT("resident_add") int32_t shoal_resident_add(const void *p, uint32_t len);
SHOAL_IMPORT("resident_drop") int32_t shoal_resident_drop(const void *p);
SHOAL_IMPORT("op_info") int32_t shoal_op_info(shoal_op_info_t *out);
/* Copies the last error message (NUL-terminated, truncated to cap); returns its full length. */
SHOAL_IMPORT("last_error") int32_t shoal_last_error(char *buf, uint32_t cap);

/* ---- LLM at token level (llm_*) --------------------------------------------------------
 * A session is a model preloaded by the host (--nn-preload NAME:GGML:AUTO:file.gguf) plus a
 * KV cache that the host keeps for this actor. Token ids and logits live in your memory: the
 * forward pass writes logits in place into your buffer, so a sampling policy is plain C over
 * a float array. Functions return 0 or a shoal status below; bad pointers trap. */

enum shoal_status { /* as include/shoal.h numbers them */
    SHOAL_ST_OK = 0,
    SHOAL_ST_INVALID = 1,     /* bad argument or handle */
    SHOAL_ST_NOMEM = 2,
    SHOAL_ST_LIMIT = 8,       /* buffer too small (the size needed is reported) or context full */
    SHOAL_ST_UNSUPPORTED = 11,
    SHOAL_ST_NOT_FOUND = 12,  /* no model of that name */
};

enum { SHOAL_LLM_LOGITS_NONE = 0, SHOAL_LLM_LOGITS_LAST = 1, SHOAL_LLM_LOGITS_ALL = 2 };
enum { SHOAL_TOKENIZE_SPECIAL = 1, SHOAL_TOKENIZE_BOS = 2 }; /* llm_tokenize flags */
enum { SHOAL_DETOKENIZE_SPECIAL = 1 };                      /* llm_detokenize flags */

typedef struct shoal_llm_info {
    int32_t n_vocab, n_ctx, n_past; /* logits hold n_vocab floats; positions used / available */
    int32_t bos, eos, eot;          /* special ids, -1 if none */
    int32_t n_layer, dim;
} shoal_llm_info_t;

typedef struct shoal_sampler_params {
    float temperature; /* <= 0: greedy */
    float top_p;       /* >= 1: off */
    float min_p;       /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t top_k;     /* <= 0: off */
    int32_t repeat_last_n;
    uint64_t seed;
} shoal_sampler_params_t;

typedef struct shoal_chat_msg {
    const char *role;
    uint32_t role_len;
    const char *content;
    uint32_t content_len;
} shoal_chat_msg_t;

/* Opens a session over the model `name` with a KV cache of n_ctx positions (0: default). */
SHOAL_IMPORT("llm_open") int32_t shoal_llm_open(const char *name, uint32_t name_len, int32_t n_ctx, int32_t *handle);
SHOAL_IMPORT("llm_close") int32_t shoal_llm_close(int32_t h);
/* Bytes of a KV cache of n_ctx positions of the named model: what llm_open_kv wants. */
SHOAL_IMPORT("llm_kv_bytes") int32_t shoal_llm_kv_bytes(const char *name, uint32_t name_len, int32_t n_ctx, uint64_t *bytes);
/* As llm_open, with the KV cache in the guest's own memory (kv: 16-byte aligned, >= llm_kv_bytes):
 * the cache is then part of the guest's state (memory snapshots carry it) and, on a GPU runtime,
 * read and written in place by the kernels. Ids, logits and out-pointers passed to later calls
 * must not overlap it (they trap). The buffer must stay allocated until llm_close: the host keeps
 * writing rows there (into the guest's own memory, never outside it). */
SHOAL_IMPORT("llm_open_kv")
int32_t shoal_llm_open_kv(const char *name, uint32_t name_len, int32_t n_ctx, void *kv, uint32_t kv_len, int32_t *handle);
SHOAL_IMPORT("llm_info") int32_t shoal_llm_info(int32_t h, shoal_llm_info_t *out);
/* Token ids of text into ids[0..cap); *n = count (the count needed, with SHOAL_ST_LIMIT, if cap is short). */
SHOAL_IMPORT("llm_tokenize")
int32_t shoal_llm_tokenize(int32_t h, const char *text, uint32_t len, uint32_t flags, int32_t *ids, uint32_t cap,
                           uint32_t *n);
/* Text of ids (pieces concatenated) into buf[0..cap); *written = bytes (needed, if SHOAL_ST_LIMIT). */
SHOAL_IMPORT("llm_detokenize")
int32_t shoal_llm_detokenize(int32_t h, const int32_t *ids, uint32_t n, uint32_t flags, char *buf, uint32_t cap,
                             uint32_t *written);
/* Appends ids[0..n) to the sequence; writes the last token's logits (mode 1, n_vocab floats) or
 * every token's (mode 2, n x n_vocab) into `logits`, in place. SHOAL_ST_LIMIT when the context is full. */
SHOAL_IMPORT("llm_eval") int32_t shoal_llm_eval(int32_t h, const int32_t *ids, uint32_t n, float *logits, int32_t mode);
/* Evaluates ids[0..n) and writes the most likely next token (lowest id on ties) to *token without
 * producing logits: on a GPU only the id leaves the device. The token is not evaluated yet. */
SHOAL_IMPORT("llm_eval_greedy") int32_t shoal_llm_eval_greedy(int32_t h, const int32_t *ids, uint32_t n, int32_t *token);
/* Replaces the session's sampler (greedy by default). */
SHOAL_IMPORT("llm_sampler_config") int32_t shoal_llm_sampler_config(int32_t h, const shoal_sampler_params_t *p);
/* Picks a token from n_vocab logits (evaluated tokens form the repeat-penalty history). */
SHOAL_IMPORT("llm_sample") int32_t shoal_llm_sample(int32_t h, const float *logits, int32_t *token);
/* 1 if the token ends a turn or the text, 0 if not, negative for a bad handle. */
SHOAL_IMPORT("llm_is_eog") int32_t shoal_llm_is_eog(int32_t h, int32_t token);
/* Keeps only the first n_past positions of the sequence (0: start over). */
SHOAL_IMPORT("llm_rewind") int32_t shoal_llm_rewind(int32_t h, int32_t n_past);
/* Renders messages in the model's chat format (its GGUF template) into buf; *written = bytes. */
SHOAL_IMPORT("llm_chat_render")
int32_t shoal_llm_chat_render(int32_t h, const shoal_chat_msg_t *msgs, uint32_t n, int32_t add_generation_prompt,
                              char *buf, uint32_t cap, uint32_t *written);

#endif
