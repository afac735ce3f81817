/* threadpool.h — a persistent pthread pool for the CPU kernels: fork/join parallel-for with
 * low wake-up latency (decode issues hundreds of small parallel-fors per token).
 *
 * Contract: shoal_threadpool_parallel_for runs fn(ctx, task, thread) once for every task in
 * [0, n_tasks) and returns when all have finished. `thread` is in [0, size): 0 is the calling
 * thread (it works too), 1..size-1 the pool's workers, so per-thread scratch can be indexed by
 * it. Calls from several threads at once are serialised; a parallel_for issued from inside a
 * task runs inline on the calling thread (no deadlock, no extra parallelism). */
#ifndef SHOAL_BACKEND_CPU_THREADPOOL_H
#define SHOAL_BACKEND_CPU_THREADPOOL_H

#include "shoal.h"

typedef struct shoal_threadpool shoal_threadpool_t;

typedef void (*shoal_task_fn)(void *ctx, int task, int thread);

/* n_threads counts the caller; <= 0 means one per online CPU. */
shoal_status_t shoal_threadpool_new(int n_threads, shoal_threadpool_t **out);
/* Joins the workers. NULL is a no-op. Must not be called while a parallel_for is running. */
void shoal_threadpool_delete(shoal_threadpool_t *pool);
/* Threads that run tasks, the caller included (>= 1). */
int shoal_threadpool_size(const shoal_threadpool_t *pool);
/* Runs fn for every task in [0, n_tasks); blocks until all are done. n_tasks <= 0 is a no-op. */
void shoal_threadpool_parallel_for(shoal_threadpool_t *pool, shoal_task_fn fn, void *ctx, int n_tasks);

#endif
