/* instance.c — one guest: its store, WASI context, limits, instance, and calls into it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/hostcall.h"
#include "runtime/runtime_impl.h"
#include "runtime/wtutil.h"

/* "No deadline": far enough that the epoch counter never reaches it, small enough that
 * current + delta cannot overflow inside Wasmtime. */
#define NO_DEADLINE_TICKS (UINT64_C(1) << 62)

void shoal_instance_config_init(shoal_instance_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->inherit_stdio = true;
}

static shoal_status_t setup_wasi(shoal_instance_t *inst, const shoal_instance_config_t *cfg)
{
    wasi_config_t *wasi = wasi_config_new();
    if (cfg->argc > 0 && !wasi_config_set_argv(wasi, (size_t)cfg->argc, (const char **)cfg->argv)) {
        return shoal_fail(SHOAL_E_INVALID, "WASI: invalid argv");
    }
    if (cfg->envc > 0) {
        const char **names = calloc((size_t)cfg->envc, sizeof *names);
        const char **vals = calloc((size_t)cfg->envc, sizeof *vals);
        char **owned = calloc((size_t)cfg->envc, sizeof *owned);
        shoal_status_t st = (names && vals && owned) ? SHOAL_OK : shoal_fail(SHOAL_E_NOMEM, "WASI: out of memory");
        for (int i = 0; st == SHOAL_OK && i < cfg->envc; i++) {
            const char *eq = strchr(cfg->env[i], '=');
            if (!eq || eq == cfg->env[i]) {
                st = shoal_fail(SHOAL_E_INVALID, "WASI: environment entry \"%s\" is not KEY=VALUE", cfg->env[i]);
                break;
            }
            owned[i] = strndup(cfg->env[i], (size_t)(eq - cfg->env[i]));
            if (!owned[i]) st = shoal_fail(SHOAL_E_NOMEM, "WASI: out of memory");
            names[i] = owned[i];
            vals[i] = eq + 1;
        }
        if (st == SHOAL_OK && !wasi_config_set_env(wasi, (size_t)cfg->envc, names, vals))
            st = shoal_fail(SHOAL_E_INVALID, "WASI: invalid environment");
        for (int i = 0; owned && i < cfg->envc; i++) free(owned[i]);
        free(owned);
        free(names);
        free(vals);
        if (st != SHOAL_OK) return st;
    }
    if (cfg->inherit_stdio) {
        wasi_config_inherit_stdin(wasi);
        wasi_config_inherit_stdout(wasi);
        wasi_config_inherit_stderr(wasi);
    }
    for (int i = 0; i < cfg->ndirs; i++)
        if (!wasi_config_preopen_dir(wasi, cfg->dir_host[i], cfg->dir_guest[i], true))
            return shoal_fail(SHOAL_E_IO, "WASI: cannot preopen directory %s (as %s)", cfg->dir_host[i],
                              cfg->dir_guest[i]);
    /* The store takes ownership of the WASI config, on success and on failure. */
    wasmtime_error_t *err = wasmtime_context_set_wasi(inst->ctx, wasi);
    if (err) return shoal_wt_error(err, SHOAL_E_WASM, "WASI");
    return SHOAL_OK;
}

shoal_status_t shoal_instance_new(shoal_runtime_t *rt, shoal_module_t *m, const shoal_instance_config_t *cfg,
                                  shoal_instance_t **out)
{
    shoal_instance_config_t defaults;
    if (!cfg) {
        shoal_instance_config_init(&defaults);
        cfg = &defaults;
    }
    if (cfg->fuel && !rt->cfg.enable_fuel)
        return shoal_fail(SHOAL_E_INVALID, "a fuel budget needs a runtime created with enable_fuel");
    if (cfg->timeout_ms) {
        shoal_status_t st = shoal_runtime_start_ticker(rt);
        if (st != SHOAL_OK) return st;
    }
    shoal_instance_t *inst = calloc(1, sizeof *inst);
    if (!inst) return shoal_fail(SHOAL_E_NOMEM, "instance: out of memory");
    inst->rt = rt;
    inst->cfg = *cfg;
    /* Pointers inside cfg belong to the caller and are only used during setup. */
    inst->cfg.argv = NULL, inst->cfg.env = NULL, inst->cfg.dir_host = NULL, inst->cfg.dir_guest = NULL;
    inst->store = wasmtime_store_new(rt->engine, inst, NULL);
    inst->ctx = wasmtime_store_context(inst->store);
    inst->mem.max_bytes = cfg->max_memory > SIZE_MAX ? SIZE_MAX : (size_t)cfg->max_memory;
    wasmtime_context_set_epoch_deadline(inst->ctx, NO_DEADLINE_TICKS);
    shoal_status_t st = SHOAL_OK;
    if (rt->cfg.enable_fuel) {
        wasmtime_error_t *err = wasmtime_context_set_fuel(inst->ctx, cfg->fuel ? cfg->fuel : UINT64_MAX);
        if (err) st = shoal_wt_error(err, SHOAL_E_WASM, "fuel");
    }
    if (st == SHOAL_OK) st = setup_wasi(inst, cfg);
    if (st == SHOAL_OK) {
        wasm_trap_t *trap = NULL;
        shoal_linmem_set_owner(&inst->mem);
        wasmtime_error_t *err = wasmtime_linker_instantiate(rt->linker, inst->ctx, m->module, &inst->instance, &trap);
        shoal_linmem_set_owner(NULL);
        if (err) {
            st = shoal_wt_error(err, SHOAL_E_WASM, "cannot instantiate module");
            if (cfg->max_memory)
                shoal_fail_append(st, "note: --max-memory is %llu bytes", (unsigned long long)cfg->max_memory);
        } else if (trap) {
            st = shoal_trap_status(inst, trap, "start function");
        }
    }
    if (st != SHOAL_OK) {
        shoal_instance_delete(inst);
        return st;
    }
    *out = inst;
    return SHOAL_OK;
}

void shoal_instance_delete(shoal_instance_t *inst)
{
    if (!inst) return;
    for (int i = 0; i < SHOAL_EXT_COUNT; i++)
        if (inst->ext[i] && inst->ext_ops[i] && inst->ext_ops[i]->free) inst->ext_ops[i]->free(inst->ext[i]);
    /* Deleting the store frees its linear memory, which unmaps it from the backend. */
    if (inst->store) wasmtime_store_delete(inst->store);
    free(inst);
}

uint8_t *shoal_instance_memory(shoal_instance_t *inst, size_t *size)
{
    wasmtime_extern_t ext;
    if (!wasmtime_instance_export_get(inst->ctx, &inst->instance, "memory", 6, &ext) ||
        ext.kind != WASMTIME_EXTERN_MEMORY) {
        if (size) *size = 0;
        return NULL;
    }
    if (size) *size = wasmtime_memory_data_size(inst->ctx, &ext.of.memory);
    return wasmtime_memory_data(inst->ctx, &ext.of.memory);
}

/* A refused memory.grow makes malloc fail inside the guest, which then traps or exits with
 * its own words; say what really happened. */
static void note_memory_limit(shoal_instance_t *inst, shoal_status_t s)
{
    if (inst->mem.refused_bytes)
        shoal_fail_append(s, "note: the guest hit --max-memory: growing its memory to %zu bytes was refused (limit %zu)",
                        inst->mem.refused_bytes, inst->mem.max_bytes);
}

shoal_status_t shoal_trap_status(shoal_instance_t *inst, wasm_trap_t *trap, const char *where)
{
    wasmtime_trap_code_t code;
    shoal_status_t s = SHOAL_E_TRAP;
    if (wasmtime_trap_code(trap, &code)) {
        if (code == WASMTIME_TRAP_CODE_INTERRUPT) s = SHOAL_E_TIMEOUT;
        if (code == WASMTIME_TRAP_CODE_OUT_OF_FUEL) s = SHOAL_E_LIMIT;
    }
    if (s == SHOAL_E_TIMEOUT) {
        shoal_fail(s, "guest exceeded its time limit of %llu ms in %s", (unsigned long long)inst->cfg.timeout_ms,
                   where);
    } else if (s == SHOAL_E_LIMIT) {
        shoal_fail(s, "guest ran out of fuel (budget %llu) in %s", (unsigned long long)inst->cfg.fuel, where);
    } else {
        wasm_message_t msg;
        wasm_trap_message(trap, &msg);
        /* Trap messages include their terminating NUL. */
        int n = (int)msg.size;
        while (n > 0 && msg.data[n - 1] == '\0') n--;
        shoal_fail(s, "guest trapped in %s: %.*s", where, n, msg.data);
        wasm_byte_vec_delete(&msg);
        note_memory_limit(inst, s);
    }
    wasm_trap_delete(trap);
    return s;
}

static void arm_deadline(shoal_instance_t *inst)
{
    uint64_t ticks = NO_DEADLINE_TICKS;
    if (inst->cfg.timeout_ms) ticks = (inst->cfg.timeout_ms + SHOAL_EPOCH_TICK_MS - 1) / SHOAL_EPOCH_TICK_MS + 1;
    wasmtime_context_set_epoch_deadline(inst->ctx, ticks);
}

static shoal_status_t call_func(shoal_instance_t *inst, const char *name, const wasmtime_val_t *args, size_t nargs,
                                wasmtime_val_t *results, size_t nresults, int *exit_code)
{
    wasmtime_extern_t ext;
    if (!wasmtime_instance_export_get(inst->ctx, &inst->instance, name, strlen(name), &ext) ||
        ext.kind != WASMTIME_EXTERN_FUNC)
        return shoal_fail(SHOAL_E_NOT_FOUND, "the module exports no function \"%s\"", name);
    arm_deadline(inst);
    wasm_trap_t *trap = NULL;
    wasmtime_error_t *err = wasmtime_func_call(inst->ctx, &ext.of.func, args, nargs, results, nresults, &trap);
    arm_deadline(inst);
    if (trap) return shoal_trap_status(inst, trap, name);
    if (err) {
        int status;
        if (exit_code && wasmtime_error_exit_status(err, &status)) {
            wasmtime_error_delete(err);
            *exit_code = status;
            return SHOAL_OK;
        }
        shoal_status_t s = shoal_wt_error(err, SHOAL_E_TRAP, name);
        note_memory_limit(inst, s);
        return s;
    }
    if (exit_code) *exit_code = 0;
    return SHOAL_OK;
}

shoal_status_t shoal_instance_run(shoal_instance_t *inst, int *exit_code)
{
    int code = 0;
    shoal_status_t s = call_func(inst, "_start", NULL, 0, NULL, 0, &code);
    if (s == SHOAL_OK && exit_code) *exit_code = code;
    return s;
}

shoal_status_t shoal_instance_call_i32(shoal_instance_t *inst, const char *name, const int32_t *args, size_t nargs,
                                       int32_t *results, size_t nresults)
{
    wasmtime_val_t a[16], r[16];
    if (nargs > 16 || nresults > 16) return shoal_fail(SHOAL_E_INVALID, "call %s: too many values", name);
    for (size_t i = 0; i < nargs; i++) {
        memset(&a[i], 0, sizeof a[i]);
        a[i].kind = WASMTIME_I32;
        a[i].of.i32 = args[i];
    }
    int code = -1;
    shoal_status_t s = call_func(inst, name, a, nargs, r, nresults, &code);
    if (s != SHOAL_OK) return s;
    if (code != -1 && code != 0)
        return shoal_fail(SHOAL_E_TRAP, "call %s: guest exited with status %d", name, code);
    for (size_t i = 0; i < nresults; i++) {
        if (r[i].kind != WASMTIME_I32) return shoal_fail(SHOAL_E_INVALID, "call %s: result %zu is not i32", name, i);
        results[i] = r[i].of.i32;
    }
    return SHOAL_OK;
}
