/* kv_stage.c — pinned staging for large host-to-device uploads (kv_stage.h). Nothing waits at the
 * end of an upload: later work on the caller's stream is ordered after it, and the sources are
 * free as soon as this returns (every byte has been copied out of them). */
#include "backend/cuda/kv_stage.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend/cpu/threadpool.h"
#include "core/error.h"
#include "core/sha256.h"

/* Each staging thread owns STAGE_SLOTS pinned slots of STAGE_PIECE bytes, a stream and an event a
 * slot: it fills one slot while its stream uploads the other, checksums what it copied while it is
 * still in its cache, and never waits for another thread (two shared 16 MB halves with a hand-off
 * per half, and a call per layer, ran a 189 MB restore at half this speed). What is left is the
 * host's memory bandwidth: the copy reads and writes every byte and the copy engine reads it
 * again (measured, with the pieces, slots and checksum placements tried: bench/RESULTS-snapshot.md). */
enum { STAGE_PIECE = 1 << 20, STAGE_SLOTS = 2, STAGE_MAX_THREADS = 64 };

typedef struct stage_thread {
    uint8_t *slot[STAGE_SLOTS];
    cudaEvent_t ev[STAGE_SLOTS];
    cudaStream_t stream;
    int next;
} stage_thread_t;

static struct {
    pthread_mutex_t lock;
    bool tried, ok;
    int device; /* the streams' device: uploads for another keep the plain copy */
    int n_threads;
    uint8_t *buf;
    stage_thread_t th[STAGE_MAX_THREADS];
    cudaEvent_t start, done[STAGE_MAX_THREADS];
    shoal_threadpool_t *pool;
} g_stage = {.lock = PTHREAD_MUTEX_INITIALIZER};

/* One piece of one segment: up to STAGE_PIECE bytes. */
typedef struct stage_piece {
    int seg;
    size_t off, n;
} stage_piece_t;

typedef struct stage_job {
    shoal_cu_stage_seg_t *segs;
    int fd;
    bool crc;
    stage_piece_t *pieces;
    uint32_t *piece_crc;
    int *piece_errno;   /* file reads: errno of a failed read, EIO for a short file */
    cudaError_t *cuda_err; /* per thread */
} stage_job_t;

static void stage_piece_run(void *ctx, int task, int thread)
{
    stage_job_t *j = ctx;
    stage_thread_t *t = &g_stage.th[thread];
    const stage_piece_t *p = &j->pieces[task];
    const shoal_cu_stage_seg_t *s = &j->segs[p->seg];
    if (j->cuda_err[thread])
        return;
    cudaError_t e = cudaSetDevice(g_stage.device);
    const int k = t->next;
    t->next = (t->next + 1) % STAGE_SLOTS;
    if (!e)
        e = cudaEventSynchronize(t->ev[k]); /* this slot's previous upload has left it */
    if (e) {
        j->cuda_err[thread] = e;
        return;
    }
    uint8_t *dst = t->slot[k];
    if (s->host) {
        memcpy(dst, (const uint8_t *)s->host + p->off, p->n);
    } else { /* pread: the page cache is copied by the kernel, no page tables are built for it */
        for (size_t at = 0; at < p->n;) {
            ssize_t r = pread(j->fd, dst + at, p->n - at, (off_t)(s->foff + p->off + at));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                j->piece_errno[task] = r < 0 ? errno : EIO;
                return;
            }
            at += (size_t)r;
        }
    }
    if (j->crc) /* of the pinned copy, still in this core's cache */
        j->piece_crc[task] = shoal_crc32c(0, dst, p->n);
    if (!(e = cudaMemcpyAsync((uint8_t *)s->dev + p->off, dst, p->n, cudaMemcpyHostToDevice, t->stream)))
        e = cudaEventRecord(t->ev[k], t->stream);
    if (e)
        j->cuda_err[thread] = e;
}

static void stage_free(void)
{
    for (int i = 0; i < g_stage.n_threads; i++) {
        stage_thread_t *t = &g_stage.th[i];
        for (int k = 0; k < STAGE_SLOTS; k++)
            if (t->ev[k])
                cudaEventDestroy(t->ev[k]);
        if (t->stream)
            cudaStreamDestroy(t->stream);
        if (g_stage.done[i])
            cudaEventDestroy(g_stage.done[i]);
    }
    if (g_stage.start)
        cudaEventDestroy(g_stage.start);
    if (g_stage.buf)
        cudaFreeHost(g_stage.buf);
    shoal_threadpool_delete(g_stage.pool);
    memset(g_stage.th, 0, sizeof g_stage.th);
    memset(g_stage.done, 0, sizeof g_stage.done);
    g_stage.start = NULL, g_stage.buf = NULL, g_stage.pool = NULL;
    cudaGetLastError();
}

/* Under g_stage.lock: whether staging serves this device (made on first use, for the process). */
static bool stage_ready(int device)
{
    if (g_stage.tried)
        return g_stage.ok && g_stage.device == device;
    g_stage.tried = true;
    g_stage.device = device;
    /* one thread per CPU; SHOAL_STAGE_THREADS overrides (bench/gpu experiments) */
    const char *nt = getenv("SHOAL_STAGE_THREADS");
    long want = nt ? atol(nt) : sysconf(_SC_NPROCESSORS_ONLN);
    if (want < 1 || want > STAGE_MAX_THREADS)
        want = want < 1 ? 1 : STAGE_MAX_THREADS;
    if (shoal_threadpool_new((int)want, &g_stage.pool) != SHOAL_OK) {
        g_stage.pool = NULL; /* one thread then: the caller's */
        shoal_clear_error();
    }
    int n = g_stage.pool ? shoal_threadpool_size(g_stage.pool) : 1;
    g_stage.n_threads = n > STAGE_MAX_THREADS ? STAGE_MAX_THREADS : n;
    void *p = NULL;
    int dev0 = 0;
    bool ok = cudaGetDevice(&dev0) == cudaSuccess && cudaSetDevice(device) == cudaSuccess &&
              cudaHostAlloc(&p, (size_t)g_stage.n_threads * STAGE_SLOTS * STAGE_PIECE, cudaHostAllocPortable) ==
                  cudaSuccess;
    g_stage.buf = p;
    ok = ok && cudaEventCreateWithFlags(&g_stage.start, cudaEventDisableTiming) == cudaSuccess;
    for (int i = 0; ok && i < g_stage.n_threads; i++) {
        stage_thread_t *t = &g_stage.th[i];
        ok = cudaStreamCreateWithFlags(&t->stream, cudaStreamNonBlocking) == cudaSuccess &&
             cudaEventCreateWithFlags(&g_stage.done[i], cudaEventDisableTiming) == cudaSuccess;
        for (int k = 0; ok && k < STAGE_SLOTS; k++) {
            t->slot[k] = g_stage.buf + ((size_t)i * STAGE_SLOTS + (size_t)k) * STAGE_PIECE;
            ok = cudaEventCreateWithFlags(&t->ev[k], cudaEventDisableTiming) == cudaSuccess;
        }
    }
    cudaSetDevice(dev0);
    if (!ok)
        stage_free();
    g_stage.ok = ok;
    return ok;
}

/* Under g_stage.lock. */
static shoal_status_t staged_upload(cudaStream_t stream, shoal_cu_stage_seg_t *segs, int n_segs, int fd, bool crc)
{
    size_t n_pieces = 0;
    for (int i = 0; i < n_segs; i++)
        n_pieces += (segs[i].bytes + STAGE_PIECE - 1) / STAGE_PIECE;
    stage_job_t j = {.segs = segs, .fd = fd, .crc = crc};
    j.pieces = calloc(n_pieces ? n_pieces : 1, sizeof *j.pieces);
    j.piece_errno = calloc(n_pieces ? n_pieces : 1, sizeof *j.piece_errno);
    j.piece_crc = calloc(n_pieces ? n_pieces : 1, sizeof *j.piece_crc);
    cudaError_t errs[STAGE_MAX_THREADS] = {0};
    j.cuda_err = errs;
    shoal_status_t st = SHOAL_OK;
    if (!j.pieces || !j.piece_errno || n_pieces > (size_t)0x7fffffff) {
        st = shoal_fail(SHOAL_E_NOMEM, "cuda: out of memory for an upload of %d segments", n_segs);
        goto out;
    }
    size_t k = 0;
    for (int i = 0; i < n_segs; i++)
        for (size_t off = 0; off < segs[i].bytes; off += STAGE_PIECE)
            j.pieces[k++] = (stage_piece_t){i, off, segs[i].bytes - off < STAGE_PIECE ? segs[i].bytes - off : STAGE_PIECE};
    /* the staging streams start after what the caller's stream has queued (it may still read the
     * destination), and the caller's stream continues after all of them */
    cudaError_t e = cudaEventRecord(g_stage.start, stream);
    for (int i = 0; !e && i < g_stage.n_threads; i++)
        e = cudaStreamWaitEvent(g_stage.th[i].stream, g_stage.start, 0);
    if (!e) {
        if (g_stage.pool)
            shoal_threadpool_parallel_for(g_stage.pool, stage_piece_run, &j, (int)n_pieces);
        else
            for (size_t i = 0; i < n_pieces; i++)
                stage_piece_run(&j, (int)i, 0);
    }
    for (int i = 0; !e && i < g_stage.n_threads; i++)
        if (!(e = errs[i]) && !(e = cudaEventRecord(g_stage.done[i], g_stage.th[i].stream)))
            e = cudaStreamWaitEvent(stream, g_stage.done[i], 0);
    for (size_t i = 0; i < n_pieces && st == SHOAL_OK; i++)
        if (j.piece_errno[i])
            st = shoal_fail(SHOAL_E_IO, "cuda: reading %zu bytes at offset %llu for an upload: %s", j.pieces[i].n,
                            (unsigned long long)(segs[j.pieces[i].seg].foff + j.pieces[i].off),
                            strerror(j.piece_errno[i]));
    if (st == SHOAL_OK && e)
        st = shoal_fail(SHOAL_E_DEVICE, "cuda: KV upload failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    for (int i = 0; i < n_segs; i++)
        segs[i].crc = 0;
    for (size_t i = 0; st == SHOAL_OK && crc && i < n_pieces; i++) {
        uint32_t *c = &segs[j.pieces[i].seg].crc;
        *c = shoal_crc32c_combine(*c, j.piece_crc[i], j.pieces[i].n);
    }
out:
    free(j.pieces);
    free(j.piece_crc);
    free(j.piece_errno);
    return st;
}

shoal_status_t shoal_cu_stage_upload_segs(int device, cudaStream_t stream, shoal_cu_stage_seg_t *segs, int n_segs,
                                          int fd, bool crc)
{
    pthread_mutex_lock(&g_stage.lock);
    if (!stage_ready(device)) {
        pthread_mutex_unlock(&g_stage.lock);
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda: no pinned staging for uploads to device %d", device);
    }
    const shoal_status_t st = staged_upload(stream, segs, n_segs, fd, crc);
    pthread_mutex_unlock(&g_stage.lock);
    return st;
}

shoal_status_t shoal_cu_stage_upload(int device, cudaStream_t stream, void *dev, const void *host, int fd, uint64_t foff,
                                     size_t bytes, uint32_t *crc)
{
    shoal_cu_stage_seg_t s = {.dev = dev, .host = host, .foff = foff, .bytes = bytes};
    const shoal_status_t st = shoal_cu_stage_upload_segs(device, stream, &s, 1, fd, crc != NULL);
    if (crc)
        *crc = s.crc;
    return st;
}
