/* runtime_impl.h — the runtime's internal structs, shared by the layers that add host
 * modules (shoal, wasi-nn) and by snapshots. Not part of the public API. */
#ifndef SHOAL_RUNTIME_IMPL_H
#define SHOAL_RUNTIME_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend/backend.h"
#include "memory/linmem.h"
#include "runtime/wt.h"
#include "shoal.h"

struct shoal_runtime {
    shoal_runtime_config_t cfg;
    shoal_backend_t *backend;
    shoal_linmem_pool_t pool;
    wasm_engine_t *engine;
    wasmtime_linker_t *linker;
    /* Epoch ticker for --timeout: one thread per runtime, started on first need. */
    pthread_mutex_t ticker_lock;
    pthread_t ticker;
    bool ticker_running;
    atomic_bool ticker_stop;
    /* Per-layer runtime state (e.g. wasi-nn's preloaded models), freed with the runtime. */
    void *ext[4];
    void (*ext_free[4])(void *);
};

/* Slots for per-runtime and per-instance state owned by higher layers. */
enum { SHOAL_EXT_NN = 0, SHOAL_EXT_LLM = 1, SHOAL_EXT_SNAPSHOT = 2, SHOAL_EXT_COUNT = 4 };

/* Milliseconds per epoch tick: the granularity of --timeout. */
#define SHOAL_EPOCH_TICK_MS 5

struct shoal_module {
    shoal_runtime_t *rt;
    wasmtime_module_t *module;
};

struct shoal_instance {
    shoal_runtime_t *rt;
    wasmtime_store_t *store;
    wasmtime_context_t *ctx;
    wasmtime_instance_t instance;
    shoal_instance_config_t cfg;
    shoal_op_stats_t last_op;   /* what the last shoal.* op did (shoal.op_info) */
    void *ext[SHOAL_EXT_COUNT]; /* per-instance state of higher layers */
    void (*ext_free[SHOAL_EXT_COUNT])(void *);
};

#endif
