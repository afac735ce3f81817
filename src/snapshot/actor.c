/* actor.c — the host side of the actor ABI (guests/include/shoal_actor.h): start an actor,
 * deliver a message, collect the reply. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/runtime_impl.h"

shoal_status_t shoal_actor_start(shoal_runtime_t *rt, shoal_module_t *m, const shoal_instance_config_t *cfg,
                                 shoal_instance_t **out)
{
    shoal_instance_t *inst = NULL;
    shoal_status_t st = shoal_instance_new(rt, m, cfg, &inst);
    if (st != SHOAL_OK) return st;
    wasmtime_extern_t e;
    if (wasmtime_instance_export_get(inst->ctx, &inst->instance, "_initialize", 11, &e) && e.kind == WASMTIME_EXTERN_FUNC)
        st = shoal_instance_call_i32(inst, "_initialize", NULL, 0, NULL, 0);
    int32_t rc = 0;
    if (st == SHOAL_OK) st = shoal_instance_call_i32(inst, "shoal_actor_init", NULL, 0, &rc, 1);
    if (st == SHOAL_OK && rc != 0) st = shoal_fail(SHOAL_E_TRAP, "actor: shoal_actor_init returned %d", rc);
    if (st != SHOAL_OK) {
        shoal_instance_delete(inst);
        return st;
    }
    *out = inst;
    return SHOAL_OK;
}

shoal_status_t shoal_actor_send(shoal_instance_t *inst, const void *msg, size_t len, char **reply, size_t *reply_len)
{
    if (!inst || (!msg && len) || !reply || !reply_len) return shoal_fail(SHOAL_E_INVALID, "actor: NULL argument");
    if (len > INT32_MAX) return shoal_fail(SHOAL_E_INVALID, "actor: a %zu-byte message is too large", len);
    int32_t ptr = 0;
    int32_t n32 = (int32_t)len;
    shoal_status_t st = shoal_instance_call_i32(inst, "shoal_actor_alloc", &n32, 1, &ptr, 1);
    if (st != SHOAL_OK) return st;
    /* Re-read the memory after every call: the guest may have grown it. */
    size_t size = 0;
    uint8_t *base = shoal_instance_memory(inst, &size);
    if (!base || ptr == 0 || (uint32_t)ptr > size || len > size - (uint32_t)ptr)
        return shoal_fail(SHOAL_E_BOUNDS, "actor: shoal_actor_alloc(%zu) returned %u, outside its %zu-byte memory", len,
                          (uint32_t)ptr, size);
    if (len) memcpy(base + (uint32_t)ptr, msg, len);
    int32_t args[2] = {ptr, n32}, n = 0;
    st = shoal_instance_call_i32(inst, "shoal_actor_handle", args, 2, &n, 1);
    if (st != SHOAL_OK) return st;
    if (n < 0) return shoal_fail(SHOAL_E_TRAP, "actor: shoal_actor_handle returned error %d", n);
    int32_t rp = 0;
    if (n > 0) {
        st = shoal_instance_call_i32(inst, "shoal_actor_reply", NULL, 0, &rp, 1);
        if (st != SHOAL_OK) return st;
    }
    base = shoal_instance_memory(inst, &size);
    if (n > 0 && ((uint32_t)rp > size || (uint32_t)n > size - (uint32_t)rp))
        return shoal_fail(SHOAL_E_BOUNDS, "actor: reply [%u, +%d) lies outside the %zu-byte memory", (uint32_t)rp, n, size);
    char *r = malloc((size_t)n + 1);
    if (!r) return shoal_fail(SHOAL_E_NOMEM, "actor: out of memory");
    if (n > 0) memcpy(r, base + (uint32_t)rp, (size_t)n);
    r[n] = '\0';
    *reply = r;
    *reply_len = (size_t)n;
    return SHOAL_OK;
}
