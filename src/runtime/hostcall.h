/* hostcall.h — helpers for host functions that guests import: reaching the caller's memory,
 * validating every (offset, length) before a byte is touched, and trapping with a message. */
#ifndef SHOAL_RUNTIME_HOSTCALL_H
#define SHOAL_RUNTIME_HOSTCALL_H

#include <stdint.h>

#include "core/error.h"
#include "runtime/runtime_impl.h"

/* The caller's exported memory, re-read at every call: it may have grown since the last. */
typedef struct shoal_guest_mem {
    uint8_t *base;
    size_t size;
} shoal_guest_mem_t;

/* A trap carrying a formatted message; the guest's call fails with it. */
wasm_trap_t *shoal_trap(const char *fmt, ...) SHOAL_PRINTF(1, 2);

shoal_instance_t *shoal_caller_instance(wasmtime_caller_t *caller);
/* Fetches the caller's "memory" export; traps if there is none. `fn` names the import. */
wasm_trap_t *shoal_caller_memory(wasmtime_caller_t *caller, const char *fn, shoal_guest_mem_t *out);
/* Checks [off, off+len) lies inside the memory (overflow-safe) and that off is a multiple of
 * `align`; returns the host pointer through *ptr or a trap naming `fn` and `what`. */
wasm_trap_t *shoal_guest_range(const shoal_guest_mem_t *m, const char *fn, const char *what, uint64_t off,
                               uint64_t len, uint64_t align, void **ptr);

/* Both of the above for a single operand: the caller's memory, then the range in it. */
wasm_trap_t *shoal_caller_range(wasmtime_caller_t *caller, const char *fn, const char *what, uint64_t off,
                                uint64_t len, uint64_t align, void **ptr);

/* Defines module.name in the runtime's linker. `sig` lists parameter kinds, '>' and result
 * kinds: i = i32, I = i64, f = f32, F = f64 (e.g. "iiii>i"). */
shoal_status_t shoal_runtime_define(shoal_runtime_t *rt, const char *module, const char *name, const char *sig,
                                    wasmtime_func_callback_t cb, void *env);

/* Host modules that every runtime links. Each defines its functions through shoal_runtime_define. */
shoal_status_t shoal_host_shoal_define(shoal_runtime_t *rt);

#endif
