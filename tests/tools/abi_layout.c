/* abi_layout — prints the size of every struct/union in runtime/wt.h and the offset and size of
 * each named field, so tests/test_wasmtime_abi.py can compare them with the Wasmtime wheel's ctypes
 * layouts. Padding members (`pad`) have no counterpart there and are left out on purpose.
 *
 * Output, one per line: `struct NAME SIZE ALIGN` and `field NAME.FIELD OFFSET SIZE`; fields of a nested
 * anonymous struct are written as NAME.OUTER.INNER with offsets relative to NAME. */
#include <stddef.h>
#include <stdio.h>

#include "runtime/wt.h"

#define STRUCT(T) printf("struct %s %zu %zu\n", #T, sizeof(T), _Alignof(T))
#define FIELD(T, F) printf("field %s.%s %zu %zu\n", #T, #F, offsetof(T, F), sizeof(((T *)0)->F))

int main(void)
{
    STRUCT(wasm_byte_vec_t);
    FIELD(wasm_byte_vec_t, size);
    FIELD(wasm_byte_vec_t, data);

    STRUCT(wasm_valtype_vec_t);
    FIELD(wasm_valtype_vec_t, size);
    FIELD(wasm_valtype_vec_t, data);

    STRUCT(wasmtime_func_t);
    FIELD(wasmtime_func_t, store_id);
    FIELD(wasmtime_func_t, private_);

    STRUCT(wasmtime_memory_t);
    FIELD(wasmtime_memory_t, anon);
    FIELD(wasmtime_memory_t, anon.store_id);
    FIELD(wasmtime_memory_t, anon.private1);
    FIELD(wasmtime_memory_t, private2);

    STRUCT(wasmtime_global_t);
    FIELD(wasmtime_global_t, store_id);
    FIELD(wasmtime_global_t, private1);
    FIELD(wasmtime_global_t, private2);
    FIELD(wasmtime_global_t, private3);

    STRUCT(wasmtime_instance_t);
    FIELD(wasmtime_instance_t, store_id);
    FIELD(wasmtime_instance_t, private_);

    STRUCT(wasmtime_extern_union_t);
    FIELD(wasmtime_extern_union_t, func);
    FIELD(wasmtime_extern_union_t, global);
    FIELD(wasmtime_extern_union_t, memory);

    STRUCT(wasmtime_extern_t);
    FIELD(wasmtime_extern_t, kind);
    FIELD(wasmtime_extern_t, of);

    STRUCT(wasmtime_valunion_t);
    FIELD(wasmtime_valunion_t, i32);
    FIELD(wasmtime_valunion_t, i64);
    FIELD(wasmtime_valunion_t, f32);
    FIELD(wasmtime_valunion_t, f64);
    FIELD(wasmtime_valunion_t, v128);

    STRUCT(wasmtime_val_t);
    FIELD(wasmtime_val_t, kind);
    FIELD(wasmtime_val_t, of);

    STRUCT(wasmtime_linear_memory_t);
    FIELD(wasmtime_linear_memory_t, env);
    FIELD(wasmtime_linear_memory_t, get_memory);
    FIELD(wasmtime_linear_memory_t, grow_memory);
    FIELD(wasmtime_linear_memory_t, finalizer);

    STRUCT(wasmtime_memory_creator_t);
    FIELD(wasmtime_memory_creator_t, env);
    FIELD(wasmtime_memory_creator_t, new_memory);
    FIELD(wasmtime_memory_creator_t, finalizer);
    return 0;
}
