/* actor.c — the host side of the actor ABI (guests/include/shoal_actor.h): start an actor,
 * deliver a message, collect the reply; and the actor's own bookkeeping (messages handled,
 * whether a call was cut short), kept in the snapshot layer's ext slot and saved with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "runtime/runtime_impl.h"
#include "snapshot/snapshot.h"

#define ACTOR_STATE_MAGIC 0x31544341u /* "ACT1" */

typedef struct actor_state {
    uint64_t messages; /* handled to completion */
    /* A trap or timeout ends a call midway: the guest's stack pointer and heap are left as the
     * call had them, so the actor is no longer "between messages" and must not be snapshotted
     * or sent more messages. */
    bool broken;
    char why[200];
} actor_state_t;

static void astate_free(void *p) { free(p); }

static shoal_status_t astate_save(void *p, uint8_t **buf, size_t *len)
{
    const actor_state_t *a = p;
    if (a->broken)
        return shoal_fail(SHOAL_E_INVALID, "the actor was interrupted in the middle of a message (%s); its state is not "
                          "consistent", a->why);
    uint8_t *nb = realloc(*buf, *len + 12);
    if (!nb) return shoal_fail(SHOAL_E_NOMEM, "actor: out of memory");
    uint8_t *q = nb + *len;
    for (int i = 0; i < 4; i++) q[i] = (uint8_t)(ACTOR_STATE_MAGIC >> (8 * i));
    for (int i = 0; i < 8; i++) q[4 + i] = (uint8_t)(a->messages >> (8 * i));
    *buf = nb;
    *len += 12;
    return SHOAL_OK;
}

static shoal_status_t astate_load(shoal_instance_t *inst, const uint8_t *buf, size_t len, struct shoal_restore_src *src)
{
    (void)src; /* a few bytes: the file check reads them */
    uint32_t magic = 0;
    uint64_t n = 0;
    for (int i = 0; len == 12 && i < 4; i++) magic |= (uint32_t)buf[i] << (8 * i);
    if (magic != ACTOR_STATE_MAGIC) return shoal_fail(SHOAL_E_FORMAT, "actor section: unknown layout (%zu bytes)", len);
    for (int i = 0; i < 8; i++) n |= (uint64_t)buf[4 + i] << (8 * i);
    actor_state_t *a = calloc(1, sizeof *a);
    if (!a) return shoal_fail(SHOAL_E_NOMEM, "actor: out of memory");
    a->messages = n;
    free(inst->ext[SHOAL_EXT_SNAPSHOT]);
    inst->ext[SHOAL_EXT_SNAPSHOT] = a;
    inst->ext_ops[SHOAL_EXT_SNAPSHOT] = &shoal_actor_ext_ops;
    return SHOAL_OK;
}

const shoal_ext_ops_t shoal_actor_ext_ops = {"actor", astate_free, astate_save, astate_load};

static actor_state_t *astate(shoal_instance_t *inst)
{
    return inst->ext_ops[SHOAL_EXT_SNAPSHOT] == &shoal_actor_ext_ops ? inst->ext[SHOAL_EXT_SNAPSHOT] : NULL;
}

uint64_t shoal_actor_messages(shoal_instance_t *inst)
{
    actor_state_t *a = astate(inst);
    return a ? a->messages : 0;
}

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
    if (st == SHOAL_OK) {
        actor_state_t *a = calloc(1, sizeof *a);
        if (!a) st = shoal_fail(SHOAL_E_NOMEM, "actor: out of memory");
        inst->ext[SHOAL_EXT_SNAPSHOT] = a;
        inst->ext_ops[SHOAL_EXT_SNAPSHOT] = &shoal_actor_ext_ops;
    }
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
    actor_state_t *a = astate(inst);
    if (a && a->broken)
        return shoal_fail(SHOAL_E_INVALID, "actor: it was interrupted in the middle of a message (%s); restore a "
                          "snapshot to go on", a->why);
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
    if (st != SHOAL_OK) {
        if (a) {
            a->broken = true;
            snprintf(a->why, sizeof a->why, "%s", shoal_last_error());
        }
        return st;
    }
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
    if (a) a->messages++;
    *reply = r;
    *reply_len = (size_t)n;
    return SHOAL_OK;
}
