/* linmem.h — guest linear memories that never move and that backends see as they are.
 *
 * Shoal installs a Wasmtime memory creator so that every guest memory is an mmap
 * reservation owned here: PROT_NONE address space (reservation + guard), of which an
 * accessible, zero-filled prefix is made read/write and grown in place with mprotect. The
 * base never moves, so a pointer handed to a kernel stays the guest's own bytes. The
 * backend is told about exactly the accessible bytes: map() at creation and for each grown
 * increment, unmap() once before the reservation is released. */
#ifndef SHOAL_MEMORY_LINMEM_H
#define SHOAL_MEMORY_LINMEM_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "runtime/wt.h"

/* Engine-wide state of the creator: which backend to notify, and the live memories. */
typedef struct shoal_linmem_pool {
    shoal_backend_t *backend;
    pthread_mutex_t lock;
    struct shoal_linmem *live; /* intrusive list, for lookup by address */
    uint64_t created;          /* memories ever created through the pool (tests read it) */
} shoal_linmem_pool_t;

/* Per-instance limits and bookkeeping. Wasmtime's creator callback does not say which store a
 * memory is for, so the instance names itself as the owner (per thread) while it instantiates. */
typedef struct shoal_linmem_owner {
    size_t max_bytes;          /* --max-memory; 0 = none */
    size_t refused_bytes;      /* last size a memory.grow asked for and was refused, 0 if none */
    struct shoal_linmem *mem;  /* the instance's memory, once created */
} shoal_linmem_owner_t;

typedef struct shoal_linmem {
    shoal_linmem_pool_t *pool;
    shoal_linmem_owner_t *owner;
    uint8_t *base;       /* start of the reservation == guest address 0 */
    size_t size;         /* accessible bytes (the guest's memory size) */
    size_t capacity;     /* bytes it may grow to without moving */
    size_t maximum;      /* the module's declared maximum (SIZE_MAX if none) */
    size_t mapped_len;   /* whole mapping: capacity + guard, page rounded */
    struct shoal_linmem *next;
} shoal_linmem_t;

/* Default reservation when Wasmtime asks for a dynamic memory (reserved size 0): 4 GiB
 * covers every wasm32 memory, and costs only address space. */
#define SHOAL_LINMEM_DEFAULT_RESERVE ((size_t)4 << 30)

void shoal_linmem_pool_init(shoal_linmem_pool_t *pool, shoal_backend_t *backend);
void shoal_linmem_pool_destroy(shoal_linmem_pool_t *pool);
/* Fills `creator` so that Wasmtime builds every memory through `pool`. */
void shoal_linmem_creator(shoal_linmem_pool_t *pool, wasmtime_memory_creator_t *creator);
/* The live memory whose accessible bytes contain [p, p+len), or NULL. */
shoal_linmem_t *shoal_linmem_find(shoal_linmem_pool_t *pool, const void *p, size_t len);

/* Memories created on this thread from now on belong to `owner` (NULL to stop). */
void shoal_linmem_set_owner(shoal_linmem_owner_t *owner);

/* Exposed for tests: create / grow / free a memory directly, as Wasmtime would. */
shoal_status_t shoal_linmem_new(shoal_linmem_pool_t *pool, size_t minimum, size_t maximum, size_t reserve,
                                size_t guard, shoal_linmem_t **out);
shoal_status_t shoal_linmem_grow(shoal_linmem_t *m, size_t new_size);
void shoal_linmem_free(shoal_linmem_t *m);

#endif
