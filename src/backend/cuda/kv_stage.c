/* kv_stage.c — pinned staging for large host-to-device uploads (kv_stage.h). Nothing waits at the
 * end of an upload: later work on the stream is ordered after it, and the caller's buffer is free
 * as soon as this returns (every byte has been copied out of it). */
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

enum { STAGE_HALF = 16 << 20, STAGE_MAX_PARTS = 64 };

static struct {
    pthread_mutex_t lock;
    bool tried;
    int device; /* the events' device: uploads for another keep the plain copy */
    uint8_t *buf;
    cudaEvent_t ev[2];
    int next;
    shoal_threadpool_t *pool;
} g_stage = {.lock = PTHREAD_MUTEX_INITIALIZER};

typedef struct stage_job {
    uint8_t *dst;
    const uint8_t *src;              /* memory source, or NULL: the file fd at offset foff */
    int fd;
    uint64_t foff;
    size_t n;
    int parts;
    bool crc;                        /* also checksum each part (of the pinned copy, still in cache) */
    uint32_t part_crc[STAGE_MAX_PARTS];
    int part_errno[STAGE_MAX_PARTS]; /* file reads: errno of a failed read, EIO for a short file */
} stage_job_t;

static size_t part_at(const stage_job_t *j, int i) { return j->n * (size_t)i / (size_t)j->parts; }

static void stage_copy_part(void *ctx, int task, int thread)
{
    (void)thread;
    stage_job_t *j = ctx;
    size_t a = part_at(j, task), b = part_at(j, task + 1);
    if (j->src) {
        memcpy(j->dst + a, j->src + a, b - a);
    } else { /* pread: the page cache is copied by the kernel, no page tables are built for it */
        j->part_errno[task] = 0;
        for (size_t at = a; at < b;) {
            ssize_t r = pread(j->fd, j->dst + at, b - at, (off_t)(j->foff + at));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0) {
                j->part_errno[task] = r < 0 ? errno : EIO;
                return;
            }
            at += (size_t)r;
        }
    }
    if (j->crc)
        j->part_crc[task] = shoal_crc32c(0, j->dst + a, b - a);
}

/* Under g_stage.lock: whether staging serves this device (made on first use). */
static bool stage_ready(int device)
{
    if (!g_stage.tried) {
        g_stage.tried = true;
        void *p = NULL;
        if (cudaHostAlloc(&p, 2 * (size_t)STAGE_HALF, cudaHostAllocPortable) != cudaSuccess) {
            cudaGetLastError();
            return false;
        }
        if (cudaEventCreateWithFlags(&g_stage.ev[0], cudaEventDisableTiming) != cudaSuccess) {
            cudaGetLastError();
            cudaFreeHost(p);
            return false;
        }
        if (cudaEventCreateWithFlags(&g_stage.ev[1], cudaEventDisableTiming) != cudaSuccess) {
            cudaGetLastError();
            cudaEventDestroy(g_stage.ev[0]);
            cudaFreeHost(p);
            return false;
        }
        /* one thread per CPU; SHOAL_STAGE_THREADS overrides (bench/gpu experiments) */
        const char *nt = getenv("SHOAL_STAGE_THREADS");
        if (shoal_threadpool_new(nt ? atoi(nt) : 0, &g_stage.pool) != SHOAL_OK) {
            g_stage.pool = NULL; /* the copies into the pinned halves then run on the caller */
            shoal_clear_error();
        }
        g_stage.device = device;
        g_stage.buf = p;
    }
    return g_stage.buf && g_stage.device == device;
}

/* Under g_stage.lock. From host memory, or (host NULL) from file fd at offset foff; a failed
 * read sets *read_errno. With crc, *crc is the CRC-32C of the bytes uploaded. */
static cudaError_t staged_upload(cudaStream_t stream, void *dev, const void *host, int fd, uint64_t foff, size_t bytes,
                                 uint32_t *crc, int *read_errno)
{
    cudaError_t e = cudaSuccess;
    if (crc)
        *crc = 0;
    for (size_t off = 0; off < bytes && !e; off += STAGE_HALF) {
        const size_t piece = bytes - off < STAGE_HALF ? bytes - off : STAGE_HALF;
        const int h = g_stage.next;
        g_stage.next ^= 1;
        if ((e = cudaEventSynchronize(g_stage.ev[h]))) // this half's previous upload is done
            break;
        int parts = g_stage.pool ? shoal_threadpool_size(g_stage.pool) : 1;
        if (parts > STAGE_MAX_PARTS)
            parts = STAGE_MAX_PARTS;
        stage_job_t j = {.dst = g_stage.buf + (size_t)h * STAGE_HALF,
                         .src = host ? (const uint8_t *)host + off : NULL,
                         .fd = fd,
                         .foff = foff + off,
                         .n = piece,
                         .parts = parts,
                         .crc = crc != NULL};
        if (g_stage.pool && parts > 1)
            shoal_threadpool_parallel_for(g_stage.pool, stage_copy_part, &j, parts);
        else
            for (int i = 0; i < parts; i++)
                stage_copy_part(&j, i, 0);
        for (int i = 0; !host && i < parts; i++)
            if (j.part_errno[i]) {
                *read_errno = j.part_errno[i];
                return cudaSuccess;
            }
        if (!(e = cudaMemcpyAsync((uint8_t *)dev + off, j.dst, piece, cudaMemcpyHostToDevice, stream)))
            e = cudaEventRecord(g_stage.ev[h], stream);
        for (int i = 0; crc && i < parts; i++)
            *crc = shoal_crc32c_combine(*crc, j.part_crc[i], part_at(&j, i + 1) - part_at(&j, i));
    }
    return e;
}

shoal_status_t shoal_cu_stage_upload(int device, cudaStream_t stream, void *dev, const void *host, int fd, uint64_t foff,
                                     size_t bytes, uint32_t *crc)
{
    pthread_mutex_lock(&g_stage.lock);
    if (!stage_ready(device)) {
        pthread_mutex_unlock(&g_stage.lock);
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda: no pinned staging for uploads to device %d", device);
    }
    int err = 0;
    const cudaError_t e = staged_upload(stream, dev, host, fd, foff, bytes, crc, &err);
    pthread_mutex_unlock(&g_stage.lock);
    if (err)
        return shoal_fail(SHOAL_E_IO, "cuda: reading %zu bytes at offset %llu for an upload: %s", bytes,
                          (unsigned long long)foff, strerror(err));
    if (e)
        return shoal_fail(SHOAL_E_DEVICE, "cuda: KV upload failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    return SHOAL_OK;
}
