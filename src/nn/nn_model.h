/* nn_model.h — models preloaded by name into a runtime (--nn-preload NAME:GGML:AUTO:file.gguf),
 * shared read-only by every instance: wasi-nn graphs and the `shoal` token API both look
 * models up here.
 *
 * A model is loaded once per runtime (GGUF mapping, weights, tokenizer, chat template) and
 * lives until the runtime is deleted, so an instance may keep a pointer to one for as long as
 * it exists. Each actor owns its own context (KV cache) over the shared weights. */
#ifndef SHOAL_NN_MODEL_H
#define SHOAL_NN_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/cpu/cpu_backend.h"
#include "backend/llm_engine.h"
#include "model/chat.h"
#include "model/gguf.h"
#include "model/llama.h"
#include "model/tokenizer.h"
#include "runtime/runtime_impl.h"

typedef struct shoal_nn_model {
    char *name;
    char *path;
    shoal_gguf_t *gguf;
    shoal_llama_model_t *llama;
    shoal_tokenizer_t *tok;
    shoal_chat_template_t chat; /* valid when has_chat */
    bool has_chat;
    /* SHA-256 of the whole GGUF file, computed once at preload: the identity snapshots and KV
     * caches are bound to (a name says nothing about the weights behind it). */
    uint8_t sha256[32];
    shoal_device_kind_t device; /* preload target: CPU, CUDA (binding) or AUTO */
} shoal_nn_model_t;

/* The model named name[0..len) or NULL. Safe from any thread. */
const shoal_nn_model_t *shoal_nn_model_find(shoal_runtime_t *rt, const char *name, size_t len);
/* The thread pool CPU LLM contexts of this runtime borrow: the CPU backend's, or in a GPU runtime
 * (no CPU backend) one the registry creates on first use. NULL: run serially. */
shoal_threadpool_t *shoal_nn_pool(shoal_runtime_t *rt);
/* Default context size for a model: min(trained context, 4096). */
int shoal_nn_default_ctx(const shoal_nn_model_t *m);

/* Makes the engine (KV cache) of one context of m. `want` is the guest's own choice for this
 * context (wasi-nn load target, "n-gpu-layers"): CPU, CUDA or AUTO; AUTO defers to the model's
 * preload target, and an AUTO there to the runtime's device. A GPU the guest asked for with
 * `strict` unset, or one AUTO chose, that cannot be used (no GPU, no CUDA in this build, weights
 * the GPU kernels do not take) falls back to the CPU with a warning on stderr naming the reason;
 * a binding ask (strict, or a preload target of CUDA) fails instead. Running out of device
 * memory always fails (SHOAL_E_NOMEM, sizes in the message). p gives n_ctx and the CPU batch and
 * pool; its device is ignored. `who` prefixes the warning. */
shoal_status_t shoal_nn_engine_new(shoal_runtime_t *rt, const shoal_nn_model_t *m, shoal_device_kind_t want,
                                   bool strict, const shoal_engine_params_t *p, const char *who,
                                   shoal_engine_t **out);


#endif
