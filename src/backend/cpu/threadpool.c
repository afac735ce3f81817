/* threadpool.c — persistent workers that spin briefly, then sleep on a futex, between jobs.
 *
 * Design: one job at a time. The caller publishes (fn, ctx, n_tasks), then a 64-bit claim word
 * (job number << 32 | next task), then bumps the generation (the futex word), waking sleepers
 * only if some worker actually sleeps. Every thread, the caller included, claims tasks by
 * compare-and-swap on the claim word, which succeeds only while the job number is still the
 * current one: a worker that wakes late cannot steal a task of a later job. The job is done when
 * the number of finished tasks reaches n_tasks; the caller never waits for a worker that claimed
 * nothing. That matters on a busy machine: a worker preempted by another process before it saw
 * the job costs nothing (the others take its share), where waiting for every worker to check in
 * would stall each of decode's hundreds of jobs per token for a scheduler time slice. */
#include "backend/cpu/threadpool.h"

#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "core/error.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* How long an idle worker spins before sleeping. Decode issues parallel-fors every few tens
 * of microseconds; a futex wake costs that much again, so spin well past the usual gap. */
#define SPIN_NS 1000000ll
/* How long a spinning thread (worker between jobs, caller waiting for stragglers) spins
 * before it starts yielding its core on each check: a thread it waits for may have been
 * preempted on a busy machine, and pure spinning would keep it off the CPU. */
#define JOIN_SPIN_NS 50000ll

struct shoal_threadpool {
    int n_threads; /* caller included */
    pthread_t *threads;        /* (n_threads - 1) workers */
    pthread_mutex_t call_lock; /* serialises callers */

    /* The current job, written by the caller before the generation bump. */
    shoal_task_fn fn;
    void *ctx;
    atomic_int n_tasks; /* relaxed: a stale reader is caught by the claim CAS */

    _Alignas(64) _Atomic uint64_t claim; /* job << 32 | next task index */
    _Alignas(64) atomic_uint gen;        /* futex word: bumped once per job and on shutdown */
    _Alignas(64) atomic_int n_done;      /* tasks of the current job finished */
    atomic_int n_sleeping;
    atomic_bool stop;
};

typedef struct worker_arg {
    shoal_threadpool_t *pool;
    int id;
} worker_arg_t;

/* Set on pool threads and while the caller runs tasks, so nested calls run inline. */
static _Thread_local int tl_in_task;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

static void futex_wait(atomic_uint *addr, unsigned expected)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAIT_PRIVATE, expected, NULL, NULL, 0);
}

static void futex_wake_all(atomic_uint *addr)
{
    syscall(SYS_futex, (unsigned *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Claims and runs tasks of the job current at entry until none are left. Job fields are read
 * only after a successful claim: the job cannot finish (and be replaced) while we hold a task. */
static void run_tasks(shoal_threadpool_t *p, int thread)
{
    uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
    for (;;) {
        int n = atomic_load_explicit(&p->n_tasks, memory_order_relaxed); /* stale: the CAS fails */
        if ((int)(uint32_t)c >= n)
            return;
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue; /* c was reloaded */
        p->fn(p->ctx, (int)(uint32_t)c, thread);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
        c = atomic_load_explicit(&p->claim, memory_order_acquire);
    }
}

/* Returns the new generation once it differs from `seen`. */
static unsigned wait_for_job(shoal_threadpool_t *p, unsigned seen)
{
    unsigned g;
    int64_t t0 = now_ns();
    for (int i = 0;; i++) {
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
        if ((i & 255) == 255) {
            int64_t dt = now_ns() - t0;
            if (dt > SPIN_NS)
                break;
            /* Past the first stretch, let a preempted sibling (oversubscribed or busy
             * machine) have the core; sched_yield is a cheap no-op when nobody waits. */
            if (dt > JOIN_SPIN_NS)
                sched_yield();
        }
    }
    for (;;) {
        /* seq_cst pairs with the caller's bump-then-check: either it sees us sleeping and
         * wakes us, or the futex sees the new generation and returns at once. */
        atomic_fetch_add(&p->n_sleeping, 1);
        g = atomic_load(&p->gen);
        if (g == seen)
            futex_wait(&p->gen, seen);
        atomic_fetch_sub(&p->n_sleeping, 1);
        g = atomic_load_explicit(&p->gen, memory_order_acquire);
        if (g != seen)
            return g;
    }
}

static void *worker_main(void *arg)
{
    worker_arg_t wa = *(worker_arg_t *)arg;
    free(arg);
    shoal_threadpool_t *p = wa.pool;
    tl_in_task = 1;
    unsigned seen = 0;
    for (;;) {
        seen = wait_for_job(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire))
            break;
        run_tasks(p, wa.id);
    }
    return NULL;
}

shoal_status_t shoal_threadpool_new(int n_threads, shoal_threadpool_t **out)
{
    if (!out)
        return shoal_fail(SHOAL_E_INVALID, "threadpool: out is NULL");
    if (n_threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = n > 0 ? (int)n : 1;
    }
    if (n_threads > 1024)
        return shoal_fail(SHOAL_E_INVALID, "threadpool: %d threads is more than the limit of 1024", n_threads);
    shoal_threadpool_t *p = calloc(1, sizeof *p);
    if (!p)
        return shoal_fail(SHOAL_E_NOMEM, "threadpool: out of memory");
    p->n_threads = n_threads;
    pthread_mutex_init(&p->call_lock, NULL);
    atomic_init(&p->gen, 0);
    if (n_threads > 1) {
        p->threads = calloc((size_t)n_threads - 1, sizeof *p->threads);
        if (!p->threads) {
            pthread_mutex_destroy(&p->call_lock);
            free(p);
            return shoal_fail(SHOAL_E_NOMEM, "threadpool: out of memory");
        }
    }
    for (int i = 1; i < n_threads; i++) {
        worker_arg_t *wa = malloc(sizeof *wa);
        int rc = wa ? 0 : -1;
        if (wa) {
            wa->pool = p;
            wa->id = i;
            rc = pthread_create(&p->threads[i - 1], NULL, worker_main, wa);
            if (rc)
                free(wa);
        }
        if (rc) {
            p->n_threads = i; /* workers 1..i-1 exist: shut those down */
            shoal_threadpool_delete(p);
            return shoal_fail(SHOAL_E_NOMEM, "threadpool: could not start worker thread %d of %d", i, n_threads);
        }
    }
    *out = p;
    return SHOAL_OK;
}

void shoal_threadpool_delete(shoal_threadpool_t *p)
{
    if (!p)
        return;
    atomic_store(&p->stop, true);
    atomic_fetch_add(&p->gen, 1);
    futex_wake_all(&p->gen);
    for (int i = 1; i < p->n_threads; i++)
        pthread_join(p->threads[i - 1], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->call_lock);
    free(p);
}

int shoal_threadpool_size(const shoal_threadpool_t *p)
{
    return p ? p->n_threads : 1;
}

void shoal_threadpool_parallel_for(shoal_threadpool_t *p, shoal_task_fn fn, void *ctx, int n_tasks)
{
    if (n_tasks <= 0 || !fn)
        return;
    /* Serial cases: no pool, one thread, one task, or a nested call from inside a task. */
    if (!p || p->n_threads == 1 || n_tasks == 1 || tl_in_task) {
        for (int t = 0; t < n_tasks; t++)
            fn(ctx, t, 0);
        return;
    }
    pthread_mutex_lock(&p->call_lock);
    uint64_t job = (atomic_load_explicit(&p->claim, memory_order_relaxed) >> 32) + 1;
    /* Between jobs the claim word is exhausted (next >= n_tasks), so nobody reads these while
     * they change; the release store of the new claim word publishes them. */
    p->fn = fn;
    p->ctx = ctx;
    atomic_store_explicit(&p->n_tasks, n_tasks, memory_order_relaxed);
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    atomic_store_explicit(&p->claim, job << 32, memory_order_release);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: wakes spinners, orders against n_sleeping */
    if (atomic_load(&p->n_sleeping) > 0)
        futex_wake_all(&p->gen);

    tl_in_task = 1;
    run_tasks(p, 0);
    tl_in_task = 0;

    int64_t t0 = 0;
    for (int i = 0; atomic_load_explicit(&p->n_done, memory_order_acquire) < n_tasks; i++) {
        cpu_relax();
        if ((i & 255) == 255) {
            if (!t0)
                t0 = now_ns();
            else if (now_ns() - t0 > JOIN_SPIN_NS)
                sched_yield();
        }
    }
    pthread_mutex_unlock(&p->call_lock);
}
