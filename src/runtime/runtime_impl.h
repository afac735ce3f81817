/* runtime_impl.h — the runtime's internal structs, shared by the layers that add host
 * modules (shoal, wasi-nn) and by snapshots. Not part of the public API. */
#ifndef SHOAL_RUNTIME_IMPL_H
#define SHOAL_RUNTIME_IMPL_H

#include <pthread.h>
#include <stdatomic.h>

#include "backend/backend.h"
#include "memory/linmem.h"
#include "runtime/wt.h"
#include "snapshot/modscan.h"
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
    uint8_t sha256[32];    /* of the module's bytes: a snapshot restores only into the same module */
    shoal_modinfo_t info;  /* its globals and memories, as snapshots need to know them */
};

/* Per-instance state that a higher layer hangs on an instance (wasi-nn graphs and contexts,
 * the token-level LLM API's sessions). Snapshots ask each slot to serialise itself as an
 * opaque, versioned blob and give it back on restore; a slot without snapshot support makes
 * snapshotting an instance that uses it fail with a clear message. */
struct shoal_restore_src; /* snapshot/restore_src.h */

typedef struct shoal_ext_ops {
    const char *name; /* section name in snapshots, e.g. "nn" */
    void (*free)(void *state);
    /* Appends the state to *buf (realloc'd; *len updated). NULL: not snapshottable. */
    shoal_status_t (*save)(void *state, uint8_t **buf, size_t *len);
    /* Rebuilds the slot of a fresh instance from a blob written by save(). src (may be NULL):
     * the snapshot file the blob lies in, where the layer notes the CRCs it takes while reading
     * (snapshot/restore_src.h). */
    shoal_status_t (*load)(shoal_instance_t *inst, const uint8_t *buf, size_t len, struct shoal_restore_src *src);
} shoal_ext_ops_t;

struct shoal_instance {
    shoal_runtime_t *rt;
    wasmtime_store_t *store;
    wasmtime_context_t *ctx;
    wasmtime_instance_t instance;
    shoal_instance_config_t cfg;
    shoal_linmem_owner_t mem;   /* --max-memory and the guest's linear memory */
    shoal_op_stats_t last_op;   /* what the last shoal.* op did (shoal.op_info) */
    void *ext[SHOAL_EXT_COUNT]; /* per-instance state of higher layers */
    const shoal_ext_ops_t *ext_ops[SHOAL_EXT_COUNT];
};

#endif
