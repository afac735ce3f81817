/* wasi_nn.h — guest declarations of wasi-nn preview 1 (module `wasi_ephemeral_nn`) as
 * WasmEdge's GGML backend defines it; Shoal implements the same ABI, so a guest built against
 * this header also runs on WasmEdge with --nn-preload.
 *
 * Typical use: load_by_name("default") -> init_execution_context -> set_input(0, prompt) ->
 * compute -> get_output(0, text) / get_output(1, JSON metadata). Streaming: compute_single and
 * get_output_single in a loop until end_of_sequence, then fini_single.
 *
 * Shoal specifics, all compatible: the prompt is tokenised where it lies in your memory and
 * outputs are written straight into your buffer; when a buffer is too small the call returns
 * too_large, writes nothing into it and stores the size needed in *written. After an error,
 * shoal_last_error() (shoal_guest.h) gives the reason in words. */
#ifndef WASI_NN_H
#define WASI_NN_H

#include <stdint.h>

#define WASI_NN_IMPORT(name) __attribute__((import_module("wasi_ephemeral_nn"), import_name(name)))

typedef uint32_t nn_graph_t;
typedef uint32_t nn_ctx_t;

typedef enum nn_errno {
    NN_SUCCESS = 0,
    NN_INVALID_ARGUMENT = 1,
    NN_INVALID_ENCODING = 2,
    NN_MISSING_MEMORY = 3,
    NN_BUSY = 4,
    NN_RUNTIME_ERROR = 5,
    NN_UNSUPPORTED_OPERATION = 6,
    NN_TOO_LARGE = 7,
    NN_NOT_FOUND = 8,
    NN_END_OF_SEQUENCE = 100, /* compute_single: the model ended its turn */
    NN_CONTEXT_FULL = 101,    /* out of context positions (raise "ctx-size") */
    NN_PROMPT_TOO_LONG = 102, /* the prompt does not fit the context */
    NN_MODEL_NOT_FOUND = 103,
} nn_errno_t;

enum nn_encoding { NN_ENCODING_AUTODETECT = 5, NN_ENCODING_GGML = 6 };
enum nn_target { NN_TARGET_CPU = 0, NN_TARGET_GPU = 1, NN_TARGET_TPU = 2, NN_TARGET_AUTO = 3 };
enum nn_tensor_type { NN_F16 = 0, NN_F32 = 1, NN_F64 = 2, NN_U8 = 3, NN_I32 = 4, NN_I64 = 5 };

/* The tensor record set_input reads (20 bytes on wasm32). GGML graphs take inputs 0 (the
 * prompt) and 1 (JSON options) as bytes whatever `type` says. */
typedef struct nn_tensor {
    const uint32_t *dims;
    uint32_t dims_len;
    uint8_t type; /* nn_tensor_type; followed by 3 bytes of padding */
    const uint8_t *data;
    uint32_t data_len;
} nn_tensor_t;
_Static_assert(sizeof(nn_tensor_t) == 20, "wasi-nn tensor record is 20 bytes");

/* load's graph builder: {ptr, len}. Builder 0 names a preloaded model ("preload:NAME" or
 * NAME), builder 1 optionally holds the JSON options. */
typedef struct nn_builder {
    const uint8_t *data;
    uint32_t len;
} nn_builder_t;

WASI_NN_IMPORT("load")
int32_t nn_load(const nn_builder_t *builders, uint32_t n, uint32_t encoding, uint32_t target, nn_graph_t *graph);
WASI_NN_IMPORT("load_by_name") int32_t nn_load_by_name(const char *name, uint32_t len, nn_graph_t *graph);
/* JSON options, WasmEdge's keys: "ctx-size", "n-predict", "temp", "top-p", "repeat-penalty",
 * "reverse-prompt", "threads", "batch-size", "seed", "enable-log", "stream-stdout",
 * "n-gpu-layers". Unknown keys are ignored. */
WASI_NN_IMPORT("load_by_name_with_config")
int32_t nn_load_by_name_with_config(const char *name, uint32_t len, const char *config, uint32_t config_len,
                                    nn_graph_t *graph);
WASI_NN_IMPORT("init_execution_context") int32_t nn_init_execution_context(nn_graph_t graph, nn_ctx_t *ctx);
WASI_NN_IMPORT("set_input") int32_t nn_set_input(nn_ctx_t ctx, uint32_t index, const nn_tensor_t *tensor);
WASI_NN_IMPORT("compute") int32_t nn_compute(nn_ctx_t ctx);
WASI_NN_IMPORT("get_output")
int32_t nn_get_output(nn_ctx_t ctx, uint32_t index, uint8_t *buf, uint32_t max, uint32_t *written);
WASI_NN_IMPORT("compute_single") int32_t nn_compute_single(nn_ctx_t ctx);
WASI_NN_IMPORT("get_output_single")
int32_t nn_get_output_single(nn_ctx_t ctx, uint32_t index, uint8_t *buf, uint32_t max, uint32_t *written);
WASI_NN_IMPORT("fini_single") int32_t nn_fini_single(nn_ctx_t ctx);
WASI_NN_IMPORT("unload") int32_t nn_unload(nn_graph_t graph);
WASI_NN_IMPORT("finalize_execution_context") int32_t nn_finalize_execution_context(nn_ctx_t ctx);

/* Sets input `index` to len bytes (a 1-D u8 tensor). */
static inline int32_t nn_set_input_bytes(nn_ctx_t ctx, uint32_t index, const void *data, uint32_t len)
{
    uint32_t dims[1] = {len};
    nn_tensor_t t = {dims, 1, NN_U8, (const uint8_t *)data, len};
    return nn_set_input(ctx, index, &t);
}

static inline const char *nn_strerror(int32_t e)
{
    switch (e) {
    case NN_SUCCESS: return "success";
    case NN_INVALID_ARGUMENT: return "invalid_argument";
    case NN_INVALID_ENCODING: return "invalid_encoding";
    case NN_MISSING_MEMORY: return "missing_memory";
    case NN_BUSY: return "busy";
    case NN_RUNTIME_ERROR: return "runtime_error";
    case NN_UNSUPPORTED_OPERATION: return "unsupported_operation";
    case NN_TOO_LARGE: return "too_large";
    case NN_NOT_FOUND: return "not_found";
    case NN_END_OF_SEQUENCE: return "end_of_sequence";
    case NN_CONTEXT_FULL: return "context_full";
    case NN_PROMPT_TOO_LONG: return "prompt_too_long";
    case NN_MODEL_NOT_FOUND: return "model_not_found";
    }
    return "unknown error";
}

#endif
