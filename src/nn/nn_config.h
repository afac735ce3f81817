/* nn_config.h — the JSON options of a wasi-nn GGML graph (WasmEdge's keys), parsed with jansson. */
#ifndef SHOAL_NN_CONFIG_H
#define SHOAL_NN_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal.h"

#define NN_REVERSE_PROMPT_MAX 255
/* n_gpu_layers when the guest did not set "n-gpu-layers": the execution target decides. */
#define NN_GPU_LAYERS_UNSET (-2)

typedef struct nn_config {
    int ctx_size;       /* "ctx-size"; 0: the model's default (min(trained, 4096)) */
    int64_t n_predict;  /* "n-predict"; < 0: until end of generation or a full context */
    int batch_size;     /* "batch-size": prompt tokens per forward chunk */
    int threads;        /* "threads"; 0: the runtime's pool */
    float temp;         /* "temp"; 0: greedy */
    float top_p;        /* "top-p" */
    float repeat_penalty; /* "repeat-penalty"; 1: off */
    uint64_t seed;      /* "seed" */
    /* "n-gpu-layers": 0 runs the context on the CPU; -1 or >= the model's layer count on the GPU;
     * a split between the two is refused (Shoal runs a model wholly on one device). */
    int64_t n_gpu_layers;
    bool enable_log;    /* "enable-log": progress and errors on the host's stderr */
    bool stream_stdout; /* "stream-stdout": compute() also prints each piece to the host's stdout */
    char reverse_prompt[NN_REVERSE_PROMPT_MAX + 1]; /* "reverse-prompt": stop once the output contains it */
    size_t reverse_len;
    /* The graph's execution target (wasi-nn load's target; not a JSON key, not snapshotted: a
     * restored context runs where the restoring runtime puts it). */
    shoal_device_kind_t target;
    bool target_strict; /* the guest named the GPU explicitly: no fallback to the CPU */
} nn_config_t;

/* WasmEdge's defaults where they are deterministic: temp 0.8, top-p 0.95, repeat-penalty 1.0,
 * batch 512, seed 0 (fixed, so runs repeat). */
void nn_config_defaults(nn_config_t *c);
/* Applies the keys present in json[0..len) on top of *c; unknown keys are ignored, as WasmEdge
 * does. Returns a wasi-nn error code: 0, 2 (invalid_encoding: not a JSON object) or
 * 1 (invalid_argument: a known key of the wrong type or out of range; *c unchanged). The reason
 * is left in shoal_last_error(). */
int nn_config_apply(nn_config_t *c, const char *json, size_t len);

#endif
