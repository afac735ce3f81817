/* linmem.c — the custom Wasmtime memory creator: mmap reservations that grow in place. */
#define _GNU_SOURCE
#include "memory/linmem.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/error.h"

static size_t page_size(void)
{
    static size_t ps;
    if (!ps) ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

/* Rounds up to the OS page; fails (returns 0) on overflow. */
static size_t page_round(size_t n)
{
    size_t ps = page_size();
    if (n > SIZE_MAX - (ps - 1)) return 0;
    return (n + ps - 1) & ~(ps - 1);
}

static _Thread_local shoal_linmem_owner_t *t_owner;

void shoal_linmem_set_owner(shoal_linmem_owner_t *owner) { t_owner = owner; }

void shoal_linmem_pool_init(shoal_linmem_pool_t *pool, shoal_backend_t *backend)
{
    memset(pool, 0, sizeof *pool);
    pool->backend = backend;
    pthread_mutex_init(&pool->lock, NULL);
}

void shoal_linmem_pool_destroy(shoal_linmem_pool_t *pool)
{
    pthread_mutex_destroy(&pool->lock);
}

shoal_status_t shoal_linmem_new(shoal_linmem_pool_t *pool, size_t minimum, size_t maximum, size_t reserve,
                                size_t guard, shoal_linmem_t **out)
{
    if (reserve == 0) reserve = maximum != SIZE_MAX && maximum > 0 ? maximum : SHOAL_LINMEM_DEFAULT_RESERVE;
    if (reserve < minimum) reserve = minimum;
    size_t cap = page_round(reserve), g = page_round(guard);
    if (!cap || (guard && !g) || cap > SIZE_MAX - g)
        return shoal_fail(SHOAL_E_NOMEM, "linear memory: reservation of %zu + guard %zu bytes overflows", reserve,
                          guard);
    size_t total = cap + g;

    shoal_linmem_t *m = calloc(1, sizeof *m);
    if (!m) return shoal_fail(SHOAL_E_NOMEM, "linear memory: out of host memory");
    /* PROT_NONE + NORESERVE: address space only. Everything past `size` faults, which is
     * what Wasmtime's elided bounds checks rely on. */
    void *p = mmap(NULL, total, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) {
        free(m);
        return shoal_fail(SHOAL_E_NOMEM, "linear memory: cannot reserve %zu bytes of address space: %s", total,
                          strerror(errno));
    }
    m->pool = pool;
    m->base = p;
    m->capacity = cap;
    m->maximum = maximum;
    m->mapped_len = total;
    m->size = 0;
    m->owner = t_owner;
    shoal_status_t st = shoal_linmem_grow(m, minimum);
    if (st != SHOAL_OK) {
        munmap(p, total);
        free(m);
        return st;
    }
    pthread_mutex_lock(&pool->lock);
    m->next = pool->live;
    pool->live = m;
    pool->created++;
    pthread_mutex_unlock(&pool->lock);
    if (m->owner && !m->owner->mem) m->owner->mem = m;
    *out = m;
    return SHOAL_OK;
}

shoal_status_t shoal_linmem_grow(shoal_linmem_t *m, size_t new_size)
{
    if (new_size < m->size)
        return shoal_fail(SHOAL_E_INVALID, "linear memory: cannot shrink from %zu to %zu bytes", m->size, new_size);
    if (new_size == m->size) return SHOAL_OK;
    if (m->owner && m->owner->max_bytes && new_size > m->owner->max_bytes) {
        /* Wasmtime turns this error into memory.grow returning -1, as the spec asks. */
        m->owner->refused_bytes = new_size;
        return shoal_fail(SHOAL_E_LIMIT, "linear memory: %zu bytes exceeds --max-memory of %zu bytes", new_size,
                          m->owner->max_bytes);
    }
    if (new_size > m->capacity || new_size > m->maximum)
        return shoal_fail(SHOAL_E_LIMIT, "linear memory: growing to %zu bytes exceeds its %s of %zu bytes", new_size,
                          new_size > m->capacity ? "reservation" : "declared maximum",
                          new_size > m->capacity ? m->capacity : m->maximum);
    /* Accessible bytes are whole OS pages; wasm sizes are multiples of 64 KiB in practice. */
    size_t old_acc = page_round(m->size), new_acc = page_round(new_size);
    if (new_acc > old_acc) {
        /* Pages that were PROT_NONE were never touched, so they read as zero. */
        if (mprotect(m->base + old_acc, new_acc - old_acc, PROT_READ | PROT_WRITE) != 0)
            return shoal_fail(SHOAL_E_NOMEM, "linear memory: cannot commit %zu bytes: %s", new_acc - old_acc,
                              strerror(errno));
        shoal_backend_t *be = m->pool ? m->pool->backend : NULL;
        if (be && be->ops->map) {
            shoal_status_t st = be->ops->map(be, m->base + old_acc, new_acc - old_acc);
            if (st != SHOAL_OK) {
                mprotect(m->base + old_acc, new_acc - old_acc, PROT_NONE);
                return shoal_fail_wrap(st, "linear memory: backend %s could not map %zu new bytes", be->ops->name,
                                       new_acc - old_acc);
            }
        }
    }
    m->size = new_size;
    return SHOAL_OK;
}

void shoal_linmem_free(shoal_linmem_t *m)
{
    if (!m) return;
    shoal_linmem_pool_t *pool = m->pool;
    if (m->owner && m->owner->mem == m) m->owner->mem = NULL;
    if (pool) {
        pthread_mutex_lock(&pool->lock);
        for (shoal_linmem_t **pp = &pool->live; *pp; pp = &(*pp)->next)
            if (*pp == m) {
                *pp = m->next;
                break;
            }
        pthread_mutex_unlock(&pool->lock);
        shoal_backend_t *be = pool->backend;
        if (be && be->ops->unmap && m->size) be->ops->unmap(be, m->base, page_round(m->size));
    }
    munmap(m->base, m->mapped_len);
    free(m);
}

shoal_linmem_t *shoal_linmem_find(shoal_linmem_pool_t *pool, const void *p, size_t len)
{
    const uint8_t *q = p;
    shoal_linmem_t *hit = NULL;
    pthread_mutex_lock(&pool->lock);
    for (shoal_linmem_t *m = pool->live; m; m = m->next)
        if (q >= m->base && (size_t)(q - m->base) <= m->size && len <= m->size - (size_t)(q - m->base)) {
            hit = m;
            break;
        }
    pthread_mutex_unlock(&pool->lock);
    return hit;
}

/* ---- Wasmtime callbacks ---- */

static uint8_t *cb_get_memory(void *env, size_t *byte_size, size_t *byte_capacity)
{
    shoal_linmem_t *m = env;
    *byte_size = m->size;
    *byte_capacity = m->capacity;
    return m->base;
}

static wasmtime_error_t *cb_grow_memory(void *env, size_t new_size)
{
    if (shoal_linmem_grow(env, new_size) != SHOAL_OK) return wasmtime_error_new(shoal_last_error());
    return NULL;
}

static void cb_finalize(void *env) { shoal_linmem_free(env); }

static wasmtime_error_t *cb_new_memory(void *env, const wasm_memorytype_t *ty, size_t minimum, size_t maximum,
                                       size_t reserved, size_t guard, wasmtime_linear_memory_t *ret)
{
    shoal_linmem_t *m;
    if (shoal_linmem_new(env, minimum, maximum, reserved, guard, &m) != SHOAL_OK)
        return wasmtime_error_new(shoal_last_error());
    ret->env = m;
    ret->get_memory = cb_get_memory;
    ret->grow_memory = cb_grow_memory;
    ret->finalizer = cb_finalize;
    return NULL;
}

void shoal_linmem_creator(shoal_linmem_pool_t *pool, wasmtime_memory_creator_t *creator)
{
    creator->env = pool;
    creator->new_memory = cb_new_memory;
    creator->finalizer = NULL; /* the pool belongs to the runtime, which outlives the engine */
}
