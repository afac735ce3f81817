/* threadpool.c — persistent workers that spin briefly, then sleep on a futex, between jobs.
 *
 * Design: one job at a time. The caller publishes (fn, ctx, n_tasks), bumps a generation
 * counter (the futex word) and wakes sleepers only if some worker actually sleeps. Tasks are
 * claimed with an atomic counter, so uneven tasks balance themselves. The caller then waits
 * until every worker has acknowledged the generation: a worker may otherwise still be
 * incrementing the old job's task counter when the next job resets it, and steal a task of
 * the new job with the old function. Waiting for all workers costs nothing extra in practice
 * because workers are spinning when jobs arrive back to back. */
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
    int n_tasks;

    _Alignas(64) atomic_int next_task;
    _Alignas(64) atomic_uint gen; /* futex word: bumped once per job and on shutdown */
    _Alignas(64) atomic_int n_acked; /* workers done with the current generation */
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

static void run_tasks(shoal_threadpool_t *p, int thread)
{
    shoal_task_fn fn = p->fn;
    void *ctx = p->ctx;
    int n = p->n_tasks;
    for (;;) {
        int t = atomic_fetch_add_explicit(&p->next_task, 1, memory_order_relaxed);
        if (t >= n)
            break;
        fn(ctx, t, thread);
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
        atomic_fetch_add_explicit(&p->n_acked, 1, memory_order_release);
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
    p->fn = fn;
    p->ctx = ctx;
    p->n_tasks = n_tasks;
    atomic_store_explicit(&p->next_task, 0, memory_order_relaxed);
    atomic_store_explicit(&p->n_acked, 0, memory_order_relaxed);
    atomic_fetch_add(&p->gen, 1); /* seq_cst: publishes the job, orders against n_sleeping */
    if (atomic_load(&p->n_sleeping) > 0)
        futex_wake_all(&p->gen);

    tl_in_task = 1;
    run_tasks(p, 0);
    tl_in_task = 0;

    int workers = p->n_threads - 1;
    int64_t t0 = 0;
    for (int i = 0; atomic_load_explicit(&p->n_acked, memory_order_acquire) < workers; i++) {
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
