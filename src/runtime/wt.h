/* wt.h — Shoal's own declarations of the Wasmtime C-API subset it uses (Wasmtime 50.0.1).
 *
 * The PyPI wheel that carries libwasmtime.so ships no C headers, so these are written here
 * from the API's documented shapes. tests/test_wasmtime_abi.py checks every struct layout and
 * every function signature below against the wheel's generated ctypes bindings, so a version
 * bump that changes the ABI fails loudly. Keep one declaration per statement; the checker
 * parses this file. */
#ifndef SHOAL_RUNTIME_WT_H
#define SHOAL_RUNTIME_WT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- opaque types ---- */
typedef struct wasm_engine_t wasm_engine_t;
typedef struct wasm_config_t wasm_config_t;
typedef struct wasmtime_store wasmtime_store_t;
typedef struct wasmtime_context wasmtime_context_t;
typedef struct wasmtime_module wasmtime_module_t;
typedef struct wasmtime_linker wasmtime_linker_t;
typedef struct wasmtime_error wasmtime_error_t;
typedef struct wasm_trap_t wasm_trap_t;
typedef struct wasmtime_caller wasmtime_caller_t;
typedef struct wasi_config_t wasi_config_t;
typedef struct wasm_functype_t wasm_functype_t;
typedef struct wasm_valtype_t wasm_valtype_t;
typedef struct wasm_memorytype_t wasm_memorytype_t;
typedef struct wasm_globaltype_t wasm_globaltype_t;

/* ---- plain structs (layouts checked by the ABI test) ---- */
typedef struct wasm_byte_vec_t {
    size_t size;
    char *data;
} wasm_byte_vec_t;
typedef wasm_byte_vec_t wasm_name_t;
typedef wasm_byte_vec_t wasm_message_t;

typedef struct wasm_valtype_vec_t {
    size_t size;
    wasm_valtype_t **data;
} wasm_valtype_vec_t;

typedef struct wasmtime_func {
    uint64_t store_id;
    void *private_;
} wasmtime_func_t;

typedef struct wasmtime_memory {
    struct {
        uint64_t store_id;
        uint32_t private1;
    } anon;
    uint32_t private2;
} wasmtime_memory_t;

typedef struct wasmtime_global {
    uint64_t store_id;
    uint32_t private1;
    uint32_t private2;
    uint32_t private3;
} wasmtime_global_t;

typedef struct wasmtime_instance {
    uint64_t store_id;
    size_t private_;
} wasmtime_instance_t;

/* The union's largest members (table, global, anyref) are 24 bytes; only the members Shoal
 * reads are named, the rest is covered by `pad`. */
typedef uint8_t wasmtime_extern_kind_t;
typedef union wasmtime_extern_union {
    wasmtime_func_t func;
    wasmtime_global_t global;
    wasmtime_memory_t memory;
    uint8_t pad[24];
} wasmtime_extern_union_t;
typedef struct wasmtime_extern {
    wasmtime_extern_kind_t kind;
    wasmtime_extern_union_t of;
} wasmtime_extern_t;
#define WASMTIME_EXTERN_FUNC 0
#define WASMTIME_EXTERN_GLOBAL 1
#define WASMTIME_EXTERN_TABLE 2
#define WASMTIME_EXTERN_MEMORY 3

typedef uint8_t wasmtime_valkind_t;
typedef union wasmtime_valunion {
    int32_t i32;
    int64_t i64;
    float f32;
    double f64;
    uint8_t v128[16];
    uint8_t pad[24];
} wasmtime_valunion_t;
typedef struct wasmtime_val {
    wasmtime_valkind_t kind;
    wasmtime_valunion_t of;
} wasmtime_val_t;
#define WASMTIME_I32 0
#define WASMTIME_I64 1
#define WASMTIME_F32 2
#define WASMTIME_F64 3
#define WASMTIME_V128 4

typedef uint8_t wasm_valkind_t;
#define WASM_I32 0
#define WASM_I64 1
#define WASM_F32 2
#define WASM_F64 3

typedef uint8_t wasmtime_trap_code_t;
#define WASMTIME_TRAP_CODE_INTERRUPT 10
#define WASMTIME_TRAP_CODE_OUT_OF_FUEL 11

typedef uint8_t wasm_mutability_t;

/* ---- custom linear memory ---- */
typedef uint8_t *(*wasmtime_memory_get_callback_t)(void *env, size_t *byte_size, size_t *byte_capacity);
typedef wasmtime_error_t *(*wasmtime_memory_grow_callback_t)(void *env, size_t new_size);
typedef struct wasmtime_linear_memory {
    void *env;
    wasmtime_memory_get_callback_t get_memory;
    wasmtime_memory_grow_callback_t grow_memory;
    void (*finalizer)(void *env);
} wasmtime_linear_memory_t;
typedef wasmtime_error_t *(*wasmtime_new_memory_callback_t)(void *env, const wasm_memorytype_t *ty, size_t minimum,
                                                            size_t maximum, size_t reserved_size_in_bytes,
                                                            size_t guard_size_in_bytes,
                                                            wasmtime_linear_memory_t *memory_ret);
typedef struct wasmtime_memory_creator {
    void *env;
    wasmtime_new_memory_callback_t new_memory;
    void (*finalizer)(void *env);
} wasmtime_memory_creator_t;

typedef wasm_trap_t *(*wasmtime_func_callback_t)(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args,
                                                  size_t nargs, wasmtime_val_t *results, size_t nresults);

/* ---- functions ---- */
wasm_config_t *wasm_config_new(void);
wasm_engine_t *wasm_engine_new_with_config(wasm_config_t *config);
void wasm_engine_delete(wasm_engine_t *engine);
void wasmtime_config_host_memory_creator_set(wasm_config_t *config, wasmtime_memory_creator_t *creator);
void wasmtime_config_memory_init_cow_set(wasm_config_t *config, bool enable);
void wasmtime_config_epoch_interruption_set(wasm_config_t *config, bool enable);
void wasmtime_config_consume_fuel_set(wasm_config_t *config, bool enable);
void wasmtime_config_memory_reservation_set(wasm_config_t *config, uint64_t size);
void wasmtime_config_memory_guard_size_set(wasm_config_t *config, uint64_t size);
void wasmtime_config_memory_reservation_for_growth_set(wasm_config_t *config, uint64_t size);
void wasmtime_engine_increment_epoch(wasm_engine_t *engine);

wasmtime_store_t *wasmtime_store_new(wasm_engine_t *engine, void *data, void (*finalizer)(void *data));
wasmtime_context_t *wasmtime_store_context(wasmtime_store_t *store);
void wasmtime_store_delete(wasmtime_store_t *store);
void wasmtime_store_limiter(wasmtime_store_t *store, int64_t memory_size, int64_t table_elements, int64_t instances,
                            int64_t tables, int64_t memories);
wasmtime_error_t *wasmtime_context_set_wasi(wasmtime_context_t *context, wasi_config_t *wasi);
wasmtime_error_t *wasmtime_context_set_fuel(wasmtime_context_t *context, uint64_t fuel);
wasmtime_error_t *wasmtime_context_get_fuel(const wasmtime_context_t *context, uint64_t *fuel);
void wasmtime_context_set_epoch_deadline(wasmtime_context_t *context, uint64_t ticks_beyond_current);
void *wasmtime_context_get_data(const wasmtime_context_t *context);

wasmtime_error_t *wasmtime_module_new(wasm_engine_t *engine, const uint8_t *wasm, size_t wasm_len,
                                      wasmtime_module_t **ret);
void wasmtime_module_delete(wasmtime_module_t *m);

wasmtime_linker_t *wasmtime_linker_new(wasm_engine_t *engine);
void wasmtime_linker_delete(wasmtime_linker_t *linker);
wasmtime_error_t *wasmtime_linker_define_wasi(wasmtime_linker_t *linker);
wasmtime_error_t *wasmtime_linker_define_func(wasmtime_linker_t *linker, const char *module, size_t module_len,
                                              const char *name, size_t name_len, const wasm_functype_t *ty,
                                              wasmtime_func_callback_t cb, void *data, void (*finalizer)(void *));
wasmtime_error_t *wasmtime_linker_instantiate(const wasmtime_linker_t *linker, wasmtime_context_t *store,
                                              const wasmtime_module_t *module, wasmtime_instance_t *instance,
                                              wasm_trap_t **trap);

bool wasmtime_instance_export_get(wasmtime_context_t *store, const wasmtime_instance_t *instance, const char *name,
                                  size_t name_len, wasmtime_extern_t *item);
bool wasmtime_instance_export_nth(wasmtime_context_t *store, const wasmtime_instance_t *instance, size_t index,
                                  char **name, size_t *name_len, wasmtime_extern_t *item);
wasmtime_error_t *wasmtime_func_call(wasmtime_context_t *store, const wasmtime_func_t *func,
                                     const wasmtime_val_t *args, size_t nargs, wasmtime_val_t *results,
                                     size_t nresults, wasm_trap_t **trap);
bool wasmtime_caller_export_get(wasmtime_caller_t *caller, const char *name, size_t name_len,
                                wasmtime_extern_t *item);
wasmtime_context_t *wasmtime_caller_context(wasmtime_caller_t *caller);

uint8_t *wasmtime_memory_data(const wasmtime_context_t *store, const wasmtime_memory_t *memory);
size_t wasmtime_memory_data_size(const wasmtime_context_t *store, const wasmtime_memory_t *memory);
wasmtime_error_t *wasmtime_memory_grow(wasmtime_context_t *store, const wasmtime_memory_t *memory, uint64_t delta,
                                       uint64_t *prev_size);
void wasmtime_global_get(wasmtime_context_t *store, const wasmtime_global_t *global, wasmtime_val_t *out);
wasmtime_error_t *wasmtime_global_set(wasmtime_context_t *store, const wasmtime_global_t *global,
                                      const wasmtime_val_t *val);
wasm_globaltype_t *wasmtime_global_type(const wasmtime_context_t *store, const wasmtime_global_t *global);
wasm_mutability_t wasm_globaltype_mutability(const wasm_globaltype_t *type);
void wasm_globaltype_delete(wasm_globaltype_t *type);

wasmtime_error_t *wasmtime_error_new(const char *msg);
void wasmtime_error_message(const wasmtime_error_t *error, wasm_name_t *message);
void wasmtime_error_delete(wasmtime_error_t *error);
bool wasmtime_error_exit_status(const wasmtime_error_t *error, int *status);
wasm_trap_t *wasmtime_trap_new(const char *msg, size_t msg_len);
bool wasmtime_trap_code(const wasm_trap_t *trap, wasmtime_trap_code_t *code);
void wasm_trap_message(const wasm_trap_t *trap, wasm_message_t *out);
void wasm_trap_delete(wasm_trap_t *trap);
void wasm_byte_vec_delete(wasm_byte_vec_t *vec);

wasi_config_t *wasi_config_new(void);
bool wasi_config_set_argv(wasi_config_t *config, size_t argc, const char *argv[]);
bool wasi_config_set_env(wasi_config_t *config, size_t envc, const char *names[], const char *values[]);
void wasi_config_inherit_stdin(wasi_config_t *config);
void wasi_config_inherit_stdout(wasi_config_t *config);
void wasi_config_inherit_stderr(wasi_config_t *config);
bool wasi_config_preopen_dir(wasi_config_t *config, const char *path, const char *guest_path, bool mutable_);

wasm_valtype_t *wasm_valtype_new(wasm_valkind_t kind);
void wasm_valtype_vec_new(wasm_valtype_vec_t *out, size_t size, wasm_valtype_t *const data[]);
void wasm_valtype_vec_new_empty(wasm_valtype_vec_t *out);
wasm_functype_t *wasm_functype_new(wasm_valtype_vec_t *params, wasm_valtype_vec_t *results);
void wasm_functype_delete(wasm_functype_t *type);

#endif
