/* hostcall.c — guest memory access and trap helpers for host functions. */
#include "runtime/hostcall.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

wasm_trap_t *shoal_trap(const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
    return wasmtime_trap_new(buf, (size_t)n);
}

shoal_instance_t *shoal_caller_instance(wasmtime_caller_t *caller)
{
    return wasmtime_context_get_data(wasmtime_caller_context(caller));
}

wasm_trap_t *shoal_caller_memory(wasmtime_caller_t *caller, const char *fn, shoal_guest_mem_t *out)
{
    wasmtime_extern_t ext;
    if (!wasmtime_caller_export_get(caller, "memory", 6, &ext) || ext.kind != WASMTIME_EXTERN_MEMORY)
        return shoal_trap("%s: the calling module exports no linear memory named \"memory\"", fn);
    wasmtime_context_t *ctx = wasmtime_caller_context(caller);
    out->base = wasmtime_memory_data(ctx, &ext.of.memory);
    out->size = wasmtime_memory_data_size(ctx, &ext.of.memory);
    return NULL;
}

wasm_trap_t *shoal_guest_range(const shoal_guest_mem_t *m, const char *fn, const char *what, uint64_t off,
                               uint64_t len, uint64_t align, void **ptr)
{
    /* off + len is computed without overflow: both are checked against size separately. */
    if (off > m->size || len > m->size - off)
        return shoal_trap("%s: %s [offset %#llx, %llu bytes) lies outside linear memory (%zu bytes)", fn, what,
                          (unsigned long long)off, (unsigned long long)len, m->size);
    if (align > 1 && off % align)
        return shoal_trap("%s: %s offset %#llx is not %llu-byte aligned", fn, what, (unsigned long long)off,
                          (unsigned long long)align);
    *ptr = m->base + off;
    return NULL;
}

wasm_trap_t *shoal_caller_range(wasmtime_caller_t *caller, const char *fn, const char *what, uint64_t off,
                                uint64_t len, uint64_t align, void **ptr)
{
    shoal_guest_mem_t mem;
    wasm_trap_t *t = shoal_caller_memory(caller, fn, &mem);
    return t ? t : shoal_guest_range(&mem, fn, what, off, len, align, ptr);
}

static wasm_valkind_t kind_of(char c, bool *ok)
{
    *ok = true;
    switch (c) {
    case 'i': return WASM_I32;
    case 'I': return WASM_I64;
    case 'f': return WASM_F32;
    case 'F': return WASM_F64;
    }
    *ok = false;
    return 0;
}

static void vec_from(wasm_valtype_vec_t *v, const char *s, size_t n, bool *ok)
{
    wasm_valtype_t *types[16];
    *ok = n <= 16;
    for (size_t i = 0; *ok && i < n; i++) types[i] = wasm_valtype_new(kind_of(s[i], ok));
    if (!*ok || n == 0) {
        wasm_valtype_vec_new_empty(v);
        return;
    }
    wasm_valtype_vec_new(v, n, types);
}

shoal_status_t shoal_runtime_define(shoal_runtime_t *rt, const char *module, const char *name, const char *sig,
                                    wasmtime_func_callback_t cb, void *env)
{
    const char *arrow = strchr(sig, '>');
    size_t np = arrow ? (size_t)(arrow - sig) : strlen(sig);
    size_t nr = arrow ? strlen(arrow + 1) : 0;
    bool ok1, ok2;
    wasm_valtype_vec_t params, results;
    vec_from(&params, sig, np, &ok1);
    vec_from(&results, arrow ? arrow + 1 : "", nr, &ok2);
    wasm_functype_t *ty = wasm_functype_new(&params, &results);
    if (!ok1 || !ok2) {
        wasm_functype_delete(ty);
        return shoal_fail(SHOAL_E_INVALID, "host function %s.%s: bad signature \"%s\"", module, name, sig);
    }
    wasmtime_error_t *err =
        wasmtime_linker_define_func(rt->linker, module, strlen(module), name, strlen(name), ty, cb, env, NULL);
    wasm_functype_delete(ty);
    if (err) {
        wasm_name_t msg;
        wasmtime_error_message(err, &msg);
        shoal_fail(SHOAL_E_WASM, "host function %s.%s: %.*s", module, name, (int)msg.size, msg.data);
        wasm_byte_vec_delete(&msg);
        wasmtime_error_delete(err);
        return SHOAL_E_WASM;
    }
    return SHOAL_OK;
}
