/* nn_host.h — the host modules of the nn layer, linked by the runtime (runtime.c's table). */
#ifndef SHOAL_NN_HOST_H
#define SHOAL_NN_HOST_H

#include "shoal.h"

/* `wasi_ephemeral_nn`: wasi-nn preview 1, WasmEdge GGML semantics (wasi_nn.c). */
shoal_status_t shoal_host_wasi_nn_define(shoal_runtime_t *rt);
/* `shoal` llm_* functions: the token-level LLM API (llm_api.c). */
shoal_status_t shoal_host_llm_define(shoal_runtime_t *rt);

#endif
