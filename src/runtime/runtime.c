/* runtime.c — the engine, its memory creator, the linker with Shoal's host modules, and
 * compiled modules. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "nn/nn_host.h"
#include "core/sha256.h"
#include "runtime/hostcall.h"
#include "runtime/runtime_impl.h"
#include "runtime/wtutil.h"

void shoal_runtime_config_init(shoal_runtime_config_t *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->device = SHOAL_DEVICE_CPU;
}

/* Host modules linked into every instance. Layers add theirs here. */
typedef shoal_status_t (*host_definer_fn)(shoal_runtime_t *rt);
static const host_definer_fn k_host_modules[] = {
    shoal_host_shoal_define,
    shoal_host_wasi_nn_define,
    shoal_host_llm_define,
};

shoal_status_t shoal_runtime_new(const shoal_runtime_config_t *cfg, shoal_runtime_t **out)
{
    shoal_runtime_config_t defaults;
    if (!cfg) {
        shoal_runtime_config_init(&defaults);
        cfg = &defaults;
    }
    shoal_runtime_t *rt = calloc(1, sizeof *rt);
    if (!rt) return shoal_fail(SHOAL_E_NOMEM, "runtime: out of memory");
    rt->cfg = *cfg;
    pthread_mutex_init(&rt->ticker_lock, NULL);

    shoal_status_t st = shoal_backend_create(cfg->device, cfg->threads, &rt->backend);
    if (st != SHOAL_OK && cfg->device == SHOAL_DEVICE_CUDA && cfg->cuda_fallback_cpu) {
        fprintf(stderr, "shoal: CUDA unavailable (%s); falling back to the CPU\n", shoal_last_error());
        st = shoal_backend_create(SHOAL_DEVICE_CPU, cfg->threads, &rt->backend);
    }
    if (st != SHOAL_OK) {
        free(rt);
        return st;
    }
    shoal_linmem_pool_init(&rt->pool, rt->backend);

    wasm_config_t *wc = wasm_config_new();
    wasmtime_memory_creator_t creator;
    shoal_linmem_creator(&rt->pool, &creator);
    wasmtime_config_host_memory_creator_set(wc, &creator);
    /* Copy-on-write images bypass the creator's memory for data segments; with a custom
     * creator they must be off (DESIGN.md). */
    wasmtime_config_memory_init_cow_set(wc, false);
    /* Memories never move: nothing extra to reserve for growth beyond our reservation. */
    wasmtime_config_memory_reservation_for_growth_set(wc, 0);
    wasmtime_config_epoch_interruption_set(wc, true);
    if (cfg->enable_fuel) wasmtime_config_consume_fuel_set(wc, true);
    rt->engine = wasm_engine_new_with_config(wc);
    if (!rt->engine) {
        shoal_runtime_delete(rt);
        return shoal_fail(SHOAL_E_WASM, "runtime: Wasmtime refused the engine configuration");
    }
    rt->linker = wasmtime_linker_new(rt->engine);
    wasmtime_error_t *err = wasmtime_linker_define_wasi(rt->linker);
    if (err) {
        shoal_wt_error(err, SHOAL_E_WASM, "runtime: defining WASI");
        shoal_runtime_delete(rt);
        return SHOAL_E_WASM;
    }
    for (size_t i = 0; i < sizeof k_host_modules / sizeof k_host_modules[0]; i++) {
        st = k_host_modules[i](rt);
        if (st != SHOAL_OK) {
            shoal_runtime_delete(rt);
            return st;
        }
    }
    *out = rt;
    return SHOAL_OK;
}

void shoal_runtime_delete(shoal_runtime_t *rt)
{
    if (!rt) return;
    if (rt->ticker_running) {
        atomic_store(&rt->ticker_stop, true);
        pthread_join(rt->ticker, NULL);
    }
    for (int i = 0; i < 4; i++)
        if (rt->ext[i] && rt->ext_free[i]) rt->ext_free[i](rt->ext[i]);
    if (rt->linker) wasmtime_linker_delete(rt->linker);
    if (rt->engine) wasm_engine_delete(rt->engine);
    shoal_linmem_pool_destroy(&rt->pool);
    shoal_backend_destroy(rt->backend);
    pthread_mutex_destroy(&rt->ticker_lock);
    free(rt);
}

const char *shoal_runtime_device(const shoal_runtime_t *rt)
{
    return rt->backend->ops->describe(rt->backend);
}

static void *ticker_main(void *arg)
{
    shoal_runtime_t *rt = arg;
    struct timespec ts = {0, SHOAL_EPOCH_TICK_MS * 1000000L};
    while (!atomic_load(&rt->ticker_stop)) {
        nanosleep(&ts, NULL);
        wasmtime_engine_increment_epoch(rt->engine);
    }
    return NULL;
}

shoal_status_t shoal_runtime_start_ticker(shoal_runtime_t *rt)
{
    shoal_status_t st = SHOAL_OK;
    pthread_mutex_lock(&rt->ticker_lock);
    if (!rt->ticker_running) {
        if (pthread_create(&rt->ticker, NULL, ticker_main, rt) == 0)
            rt->ticker_running = true;
        else
            st = shoal_fail(SHOAL_E_NOMEM, "runtime: cannot start the timeout thread");
    }
    pthread_mutex_unlock(&rt->ticker_lock);
    return st;
}

/* ---- modules ---- */

shoal_status_t shoal_module_new(shoal_runtime_t *rt, const uint8_t *bytes, size_t len, shoal_module_t **out)
{
    static const uint8_t magic[4] = {0, 'a', 's', 'm'};
    if (len < 8 || memcmp(bytes, magic, 4) != 0)
        return shoal_fail(SHOAL_E_FORMAT, "not a WebAssembly module (%s)",
                          len < 4 ? "file is shorter than the 8-byte header" : "missing the \\0asm magic");
    wasmtime_module_t *mod = NULL;
    wasmtime_error_t *err = wasmtime_module_new(rt->engine, bytes, len, &mod);
    if (err) return shoal_wt_error(err, SHOAL_E_FORMAT, "invalid WebAssembly module");
    shoal_module_t *m = calloc(1, sizeof *m);
    if (!m) {
        wasmtime_module_delete(mod);
        return shoal_fail(SHOAL_E_NOMEM, "module: out of memory");
    }
    m->rt = rt;
    m->module = mod;
    shoal_sha256(bytes, len, m->sha256);
    shoal_modscan(bytes, len, &m->info);
    *out = m;
    return SHOAL_OK;
}

shoal_status_t shoal_module_load(shoal_runtime_t *rt, const char *path, shoal_module_t **out)
{
    FILE *f = fopen(path, "rb");
    if (!f) return shoal_fail(SHOAL_E_IO, "%s: %s", path, strerror(errno));
    uint8_t *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 1 << 16;
            uint8_t *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                return shoal_fail(SHOAL_E_NOMEM, "%s: out of memory reading the module", path);
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len, f);
        len += n;
        if (n == 0) break;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return shoal_fail(SHOAL_E_IO, "%s: read error", path);
    }
    shoal_status_t st = shoal_module_new(rt, buf, len, out);
    free(buf);
    if (st != SHOAL_OK) shoal_fail_wrap(st, "%s", path);
    return st;
}

void shoal_module_delete(shoal_module_t *m)
{
    if (!m) return;
    wasmtime_module_delete(m->module);
    free(m);
}
