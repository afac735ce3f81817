/* test_threadpool.c — the CPU thread pool runs every task exactly once, on valid thread ids,
 * across many back-to-back jobs, nested calls, concurrent callers and sleep/wake cycles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend/cpu/threadpool.h"

typedef struct count_ctx {
    atomic_int *hits;    /* (n_tasks,) times each task ran */
    atomic_int bad_thread;
    atomic_int per_thread[8];
    int n_threads;
} count_ctx_t;

static void count_task(void *vctx, int task, int thread)
{
    count_ctx_t *c = vctx;
    /* a little work, so workers get to claim tasks before the caller has taken them all */
    volatile unsigned spin = 0;
    for (int i = 0; i < 2000; i++)
        spin = spin + (unsigned)i;
    (void)spin;
    atomic_fetch_add(&c->hits[task], 1);
    if (thread < 0 || thread >= c->n_threads)
        atomic_fetch_add(&c->bad_thread, 1);
    else
        atomic_fetch_add(&c->per_thread[thread], 1);
}

static void check_once(shoal_threadpool_t *pool, int n_tasks)
{
    count_ctx_t c;
    memset(&c, 0, sizeof c);
    c.n_threads = shoal_threadpool_size(pool);
    c.hits = calloc((size_t)(n_tasks > 0 ? n_tasks : 1), sizeof *c.hits);
    assert_non_null(c.hits);
    shoal_threadpool_parallel_for(pool, count_task, &c, n_tasks);
    for (int t = 0; t < n_tasks; t++)
        assert_int_equal(atomic_load(&c.hits[t]), 1);
    assert_int_equal(atomic_load(&c.bad_thread), 0);
    free(c.hits);
}

static void test_every_task_once(void **state)
{
    (void)state;
    for (int nt = 1; nt <= 4; nt++) {
        shoal_threadpool_t *pool = NULL;
        assert_int_equal(shoal_threadpool_new(nt, &pool), SHOAL_OK);
        assert_int_equal(shoal_threadpool_size(pool), nt);
        int sizes[] = {0, 1, 2, 3, 7, 64, 1000};
        for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
            check_once(pool, sizes[i]);
        shoal_threadpool_delete(pool);
    }
}

/* Many tiny jobs back to back: the decode pattern. A lost wake-up or a task stolen across
 * generations shows up as a wrong sum or a hang (ctest timeout). */
typedef struct sum_ctx {
    int64_t *slots; /* (n_tasks,) each task writes its own slot */
    int64_t round;
} sum_ctx_t;

static void sum_task(void *vctx, int task, int thread)
{
    sum_ctx_t *c = vctx;
    (void)thread;
    c->slots[task] += c->round * (task + 1);
}

static void test_many_small_jobs(void **state)
{
    (void)state;
    shoal_threadpool_t *pool = NULL;
    assert_int_equal(shoal_threadpool_new(2, &pool), SHOAL_OK);
    enum { TASKS = 5, ROUNDS = 20000 };
    int64_t slots[TASKS] = {0};
    sum_ctx_t c = {slots, 0};
    for (int r = 1; r <= ROUNDS; r++) {
        c.round = r;
        shoal_threadpool_parallel_for(pool, sum_task, &c, TASKS);
    }
    int64_t tri = (int64_t)ROUNDS * (ROUNDS + 1) / 2;
    for (int t = 0; t < TASKS; t++)
        assert_true(slots[t] == tri * (t + 1));
    shoal_threadpool_delete(pool);
}

/* Workers that have gone to sleep on the futex must be woken by the next job. */
/* Workers really take part: over many jobs of many small tasks, thread 1 runs some. */
static void test_workers_participate(void **state)
{
    (void)state;
    shoal_threadpool_t *pool = NULL;
    assert_int_equal(shoal_threadpool_new(2, &pool), SHOAL_OK);
    count_ctx_t c;
    memset(&c, 0, sizeof c);
    c.n_threads = 2;
    c.hits = calloc(64, sizeof *c.hits);
    for (int r = 0; r < 2000 && atomic_load(&c.per_thread[1]) == 0; r++)
        shoal_threadpool_parallel_for(pool, count_task, &c, 64);
    assert_true(atomic_load(&c.per_thread[1]) > 0);
    free(c.hits);
    shoal_threadpool_delete(pool);
}

static void test_wake_after_sleep(void **state)
{
    (void)state;
    shoal_threadpool_t *pool = NULL;
    assert_int_equal(shoal_threadpool_new(2, &pool), SHOAL_OK);
    for (int i = 0; i < 3; i++) {
        struct timespec ts = {0, 5 * 1000 * 1000}; /* longer than the spin phase */
        nanosleep(&ts, NULL);
        check_once(pool, 16);
    }
    shoal_threadpool_delete(pool);
}

typedef struct nest_ctx {
    shoal_threadpool_t *pool;
    atomic_int inner_hits;
} nest_ctx_t;

static void inner_task(void *vctx, int task, int thread)
{
    nest_ctx_t *c = vctx;
    (void)task;
    (void)thread;
    atomic_fetch_add(&c->inner_hits, 1);
}

static void outer_task(void *vctx, int task, int thread)
{
    nest_ctx_t *c = vctx;
    (void)task;
    (void)thread;
    shoal_threadpool_parallel_for(c->pool, inner_task, c, 10);
}

static void test_nested_runs_inline(void **state)
{
    (void)state;
    nest_ctx_t c = {0};
    assert_int_equal(shoal_threadpool_new(2, &c.pool), SHOAL_OK);
    shoal_threadpool_parallel_for(c.pool, outer_task, &c, 6);
    assert_int_equal(atomic_load(&c.inner_hits), 60);
    shoal_threadpool_delete(c.pool);
}

static void *caller_thread(void *arg)
{
    shoal_threadpool_t *pool = arg;
    for (int i = 0; i < 500; i++)
        check_once(pool, 9);
    return NULL;
}

static void test_concurrent_callers(void **state)
{
    (void)state;
    shoal_threadpool_t *pool = NULL;
    assert_int_equal(shoal_threadpool_new(2, &pool), SHOAL_OK);
    pthread_t a, b;
    assert_int_equal(pthread_create(&a, NULL, caller_thread, pool), 0);
    assert_int_equal(pthread_create(&b, NULL, caller_thread, pool), 0);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    shoal_threadpool_delete(pool);
}

static void test_bad_args(void **state)
{
    (void)state;
    assert_int_equal(shoal_threadpool_new(2, NULL), SHOAL_E_INVALID);
    shoal_threadpool_t *pool = NULL;
    assert_int_equal(shoal_threadpool_new(100000, &pool), SHOAL_E_INVALID);
    assert_null(pool);
    /* 0 means one per CPU. */
    assert_int_equal(shoal_threadpool_new(0, &pool), SHOAL_OK);
    assert_true(shoal_threadpool_size(pool) >= 1);
    shoal_threadpool_parallel_for(pool, NULL, NULL, 5); /* no function: no-op, no crash */
    shoal_threadpool_delete(pool);
    shoal_threadpool_delete(NULL);
    /* A NULL pool runs serially on the caller. */
    count_ctx_t c;
    memset(&c, 0, sizeof c);
    c.n_threads = 1;
    atomic_int hits[4] = {0};
    c.hits = hits;
    shoal_threadpool_parallel_for(NULL, count_task, &c, 4);
    for (int t = 0; t < 4; t++)
        assert_int_equal(atomic_load(&hits[t]), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_task_once),   cmocka_unit_test(test_many_small_jobs),
        cmocka_unit_test(test_wake_after_sleep),  cmocka_unit_test(test_workers_participate),  cmocka_unit_test(test_nested_runs_inline),
        cmocka_unit_test(test_concurrent_callers), cmocka_unit_test(test_bad_args),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
