/* shoal.h — the public API of libshoal: Wasm actors that compute on their own linear memory.
 *
 * Conventions: names are shoal_<noun>_<verb>; handles are opaque and each *_new has a
 * matching *_delete. Every call that can fail returns shoal_status_t (0 = SHOAL_OK) and,
 * on failure, leaves a human-readable message for the calling thread in shoal_last_error().
 * Out-parameters are written only on success. The library never exits the process. */
#ifndef SHOAL_H
#define SHOAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SHOAL_VERSION "0.1.0"

typedef enum shoal_status {
    SHOAL_OK = 0,
    SHOAL_E_INVALID,     /* bad argument from the caller */
    SHOAL_E_NOMEM,       /* host allocation or reservation failed */
    SHOAL_E_IO,          /* file could not be read or written */
    SHOAL_E_FORMAT,      /* malformed input file (module, model, snapshot, JSON) */
    SHOAL_E_WASM,        /* Wasmtime refused (compile, link, instantiate) */
    SHOAL_E_TRAP,        /* the guest trapped */
    SHOAL_E_TIMEOUT,     /* the guest ran past its deadline */
    SHOAL_E_LIMIT,       /* a configured limit (memory, fuel, context) was hit */
    SHOAL_E_BOUNDS,      /* a guest (offset, length) lies outside its memory */
    SHOAL_E_DEVICE,      /* the compute device failed */
    SHOAL_E_UNSUPPORTED, /* not available in this build or on this machine */
    SHOAL_E_NOT_FOUND,   /* named thing does not exist */
} shoal_status_t;

/* Short constant name of a status ("SHOAL_E_TRAP"). */
const char *shoal_status_name(shoal_status_t s);
/* Message of the last failure on this thread; "" if none. Valid until the next failing call. */
const char *shoal_last_error(void);

/* ---------------------------------------------------------------- runtime */

typedef enum shoal_device_kind {
    SHOAL_DEVICE_CPU = 0,
    SHOAL_DEVICE_CUDA = 1,
    SHOAL_DEVICE_AUTO = 2, /* a usable GPU if there is one, else the CPU */
} shoal_device_kind_t;

/* A runtime owns the Wasmtime engine, the compute backend and the registry of guest
 * linear memories. One per process is typical; it is shared by every actor. */
typedef struct shoal_runtime shoal_runtime_t;
/* A compiled guest module. Owned by the caller; may outlive instances made from it. */
typedef struct shoal_module shoal_module_t;
/* One running guest: a store, its WASI context, its instance and its linear memory. */
typedef struct shoal_instance shoal_instance_t;

typedef struct shoal_runtime_config {
    shoal_device_kind_t device; /* default SHOAL_DEVICE_CPU */
    int threads;                /* CPU backend threads; <= 0: one per core */
    bool cuda_fallback_cpu;     /* device=cuda but no usable GPU: use the CPU instead of failing */
    bool enable_fuel;           /* meter guest instructions so instances can be given a fuel budget */
} shoal_runtime_config_t;

void shoal_runtime_config_init(shoal_runtime_config_t *cfg);
shoal_status_t shoal_runtime_new(const shoal_runtime_config_t *cfg, shoal_runtime_t **out);
void shoal_runtime_delete(shoal_runtime_t *rt);
/* Which backend serves this runtime, in words ("cpu: 16 threads, avx512"). */
const char *shoal_runtime_device(const shoal_runtime_t *rt);

/* Loads the GGUF model at `path` once for this runtime and names it for guests: wasi-nn's
 * load_by_name(name) and the `shoal` token API's llm_open(name) find it. The weights are mapped
 * read-only and shared by every instance; each instance gets its own context (KV cache). Call
 * before creating the instances that use it. SHOAL_E_INVALID for an empty name, one containing
 * ':' or one already loaded; the loader's status (SHOAL_E_IO, SHOAL_E_FORMAT, ...) otherwise. */
shoal_status_t shoal_runtime_preload_model(shoal_runtime_t *rt, const char *name, const char *path);
/* As shoal_runtime_preload_model, naming where the model's contexts run (wasi-nn's execution
 * target, --nn-preload's TARGET field). SHOAL_DEVICE_AUTO follows the runtime's device.
 * SHOAL_DEVICE_CUDA is binding: a context that cannot be made on the GPU is an error, never a
 * silent move to the CPU. A guest may still choose per context (wasi-nn's load target and
 * "n-gpu-layers" option). */
shoal_status_t shoal_runtime_preload_model_on(shoal_runtime_t *rt, const char *name, const char *path,
                                              shoal_device_kind_t device);

/* Compiles a module from bytes / a file. Malformed input fails with SHOAL_E_FORMAT. */
shoal_status_t shoal_module_new(shoal_runtime_t *rt, const uint8_t *bytes, size_t len, shoal_module_t **out);
shoal_status_t shoal_module_load(shoal_runtime_t *rt, const char *path, shoal_module_t **out);
void shoal_module_delete(shoal_module_t *m);

typedef struct shoal_instance_config {
    int argc;                        /* WASI argv (argv[0] is the program name) */
    const char *const *argv;
    int envc;                        /* WASI environment, "KEY=VALUE" strings */
    const char *const *env;
    int ndirs;                       /* preopened directories: host path -> guest path */
    const char *const *dir_host;
    const char *const *dir_guest;
    bool inherit_stdio;              /* default true */
    uint64_t max_memory;             /* bytes of linear memory the guest may have; 0 = no limit */
    uint64_t timeout_ms;             /* per call into the guest; 0 = none */
    uint64_t fuel;                   /* instructions budget; 0 = unmetered */
} shoal_instance_config_t;

void shoal_instance_config_init(shoal_instance_config_t *cfg);
/* Instantiates `m` with WASI and Shoal's host modules linked. */
shoal_status_t shoal_instance_new(shoal_runtime_t *rt, shoal_module_t *m, const shoal_instance_config_t *cfg,
                                  shoal_instance_t **out);
void shoal_instance_delete(shoal_instance_t *inst);
/* Runs the WASI command entry point (_start). On SHOAL_OK, *exit_code is the guest's exit
 * status (0 when _start returns). A trap gives SHOAL_E_TRAP, a deadline SHOAL_E_TIMEOUT,
 * fuel exhaustion SHOAL_E_LIMIT; the message says what and where. */
shoal_status_t shoal_instance_run(shoal_instance_t *inst, int *exit_code);
/* Calls an exported function taking and returning only i32 values. */
shoal_status_t shoal_instance_call_i32(shoal_instance_t *inst, const char *name, const int32_t *args,
                                       size_t nargs, int32_t *results, size_t nresults);
/* The guest's linear memory as the host sees it: the same bytes the guest reads and writes.
 * The pointer stays valid (the base never moves) until the instance is deleted; the size
 * can grow whenever the guest runs. */
uint8_t *shoal_instance_memory(shoal_instance_t *inst, size_t *size);


/* ---------------------------------------------------------------- actors and snapshots */

/* An actor is an instance of a reactor module driven by messages (guests/include/shoal_actor.h
 * defines the guest side). The host never snapshots it in the middle of a call: between two
 * messages its whole state is its linear memory, its mutable globals and the state higher
 * layers keep for it (the LLM's KV cache, sampler, tokens). */

/* Instantiates `m` and starts it as an actor: calls `_initialize` (if exported), then
 * `shoal_actor_init`. */
shoal_status_t shoal_actor_start(shoal_runtime_t *rt, shoal_module_t *m, const shoal_instance_config_t *cfg,
                                 shoal_instance_t **out);
/* Delivers one message; *reply (malloc'd, NUL-terminated for convenience, caller frees) and
 * *reply_len receive the actor's answer. A guest error (negative status) is SHOAL_E_TRAP. */
shoal_status_t shoal_actor_send(shoal_instance_t *inst, const void *msg, size_t len, char **reply, size_t *reply_len);

/* Writes the instance's state to `path` (format: docs/snapshot-format.md), replacing it
 * atomically. `m` must be the module the instance was made from (its SHA-256 is recorded).
 * Fails, writing nothing, if any state cannot be captured (a mutable global the module does
 * not export, a layer without snapshot support). */
shoal_status_t shoal_instance_snapshot_save(shoal_instance_t *inst, const shoal_module_t *m, const char *path);
/* Restores a snapshot into a new instance of `m` (configured by cfg; NULL: defaults). The file
 * is validated whole first (format version, length, checksum, module SHA-256, structure); any
 * failure leaves nothing behind, and no existing instance is ever touched. The new instance
 * continues exactly where the saved one stood; its start functions are not run again. */
shoal_status_t shoal_instance_snapshot_restore(shoal_runtime_t *rt, shoal_module_t *m, const shoal_instance_config_t *cfg,
                                               const char *path, shoal_instance_t **out);
/* Prints what a snapshot holds (after validating it) to `out`. */
shoal_status_t shoal_snapshot_inspect(const char *path, FILE *out);

#ifdef __cplusplus
}
#endif
#endif
