/* wasi_nn_abi.h — numbers of the wasi-nn preview-1 ABI as WasmEdge's GGML backend uses them
 * (module `wasi_ephemeral_nn`). Mirrored for guests in guests/include/wasi_nn.h. */
#ifndef SHOAL_NN_WASI_NN_ABI_H
#define SHOAL_NN_WASI_NN_ABI_H

enum {
    NN_ERR_SUCCESS = 0,
    NN_ERR_INVALID_ARGUMENT = 1,
    NN_ERR_INVALID_ENCODING = 2,
    NN_ERR_MISSING_MEMORY = 3,
    NN_ERR_BUSY = 4,
    NN_ERR_RUNTIME_ERROR = 5,
    NN_ERR_UNSUPPORTED_OPERATION = 6,
    NN_ERR_TOO_LARGE = 7,
    NN_ERR_NOT_FOUND = 8,
    NN_ERR_END_OF_SEQUENCE = 100,
    NN_ERR_CONTEXT_FULL = 101,
    NN_ERR_PROMPT_TOO_LONG = 102,
    NN_ERR_MODEL_NOT_FOUND = 103,
};

enum { NN_ENCODING_AUTODETECT = 5, NN_ENCODING_GGML = 6 };
enum { NN_TARGET_CPU = 0, NN_TARGET_GPU = 1, NN_TARGET_TPU = 2, NN_TARGET_AUTO = 3 };
/* Tensor types (f16 0, f32 1, f64 2, u8 3, i32 4, i64 5). GGML graphs read inputs 0 and 1 as
 * bytes whatever type is declared: older bindings number u8 as 2. */
enum { NN_TENSOR_TYPE_MAX = 5 };

/* Guest tensor record: {u32 dims_ptr, u32 dims_len, u8 type, 3 pad, u32 data_ptr, u32 data_len}. */
#define NN_TENSOR_RECORD_SIZE 20
/* Graph builder: {u32 ptr, u32 len}. */
#define NN_BUILDER_SIZE 8
/* Most dimensions a tensor record may declare (prompts are 1-D; 8 is generous). */
#define NN_MAX_DIMS 8

#endif
