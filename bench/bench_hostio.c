/* bench_hostio.c — what bounds a GPU restore on the host: the rates at which the bytes of a KV
 * snapshot (189 MB for SmolLM2 at 4096 positions) can leave the page cache, be checksummed and
 * reach the device, each with 1 to N threads (bench/RESULTS-snapshot.md):
 *   memcpy between two heap buffers (the host's copy bandwidth), pread from the cached file into
 *   pinned memory (the staging's way), memcpy from a populated mapping into pinned memory,
 *   CRC-32C over the mapping (each thread its part), a pinned host-to-device copy (the floor),
 *   and registering the file's mapping with the driver so that the copy engine reads the page
 *   cache itself (registration, copy and unregistration timed apart, from 1 to N threads).
 *
 *   bench_hostio [--mb N] [--threads N] [--file PATH]
 * Each figure is the best of 3. The file is written first and stays in the page cache. */
#define _GNU_SOURCE
#include <cuda_runtime_api.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "core/sha256.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

enum { OP_MEMCPY, OP_PREAD, OP_CRC, OP_REGISTER, OP_UNREGISTER };

typedef struct job {
    int op, fd;
    uint8_t *dst, *dev;
    const uint8_t *src;
    size_t a, b;
    cudaStream_t stream;
    int err;
} job_t;

static void *run_job(void *p)
{
    job_t *j = p;
    switch (j->op) {
    case OP_MEMCPY: memcpy(j->dst + j->a, j->src + j->a, j->b - j->a); break;
    case OP_PREAD:
        for (size_t at = j->a; at < j->b;) {
            ssize_t r = pread(j->fd, j->dst + at, j->b - at, (off_t)at);
            if (r <= 0) {
                j->err = 1;
                break;
            }
            at += (size_t)r;
        }
        break;
    case OP_CRC: /* one thread's CRC of its part (the staging threads checksum their own pieces) */
        j->err = shoal_crc32c(0, j->src + j->a, j->b - j->a) == 0x12345678u && j->a == SIZE_MAX; /* keeps the call */
        break;
    case OP_REGISTER:
        cudaSetDevice(0);
        if (cudaHostRegister((void *)(j->src + j->a), j->b - j->a, cudaHostRegisterReadOnly) != cudaSuccess ||
            cudaMemcpyAsync(j->dev + j->a, j->src + j->a, j->b - j->a, cudaMemcpyHostToDevice, j->stream) !=
                cudaSuccess)
            j->err = 1;
        break;
    case OP_UNREGISTER:
        cudaSetDevice(0);
        cudaHostUnregister((void *)(j->src + j->a));
        break;
    }
    return NULL;
}

/* Runs op over [0, n) split into nt page-aligned parts; seconds taken. */
static double parallel(int op, int nt, int fd, uint8_t *dst, const uint8_t *src, uint8_t *dev, size_t n,
                       cudaStream_t *streams, int *err)
{
    pthread_t th[64];
    job_t jb[64];
    const double t0 = now_s();
    for (int i = 0; i < nt; i++) {
        jb[i] = (job_t){op, fd, dst, dev, src, n / 4096 * i / nt * 4096,
                        i == nt - 1 ? n : n / 4096 * (i + 1) / nt * 4096, streams ? streams[i] : 0, 0};
        pthread_create(&th[i], NULL, run_job, &jb[i]);
    }
    for (int i = 0; i < nt; i++) {
        pthread_join(th[i], NULL);
        *err |= jb[i].err;
    }
    return now_s() - t0;
}

int main(int argc, char **argv)
{
    size_t mb = 180;
    int max_threads = (int)sysconf(_SC_NPROCESSORS_ONLN);
    const char *path = "/tmp/shoal_bench_hostio.bin";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--mb")) mb = (size_t)atol(argv[i + 1]);
        else if (!strcmp(argv[i], "--threads")) max_threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--file")) path = argv[i + 1];
    }
    if (mb < 1 || max_threads < 1) {
        fprintf(stderr, "usage: bench_hostio [--mb N] [--threads N] [--file PATH]\n");
        return 2;
    }
    if (max_threads > 64) max_threads = 64;
    const size_t n = mb << 20;
    uint8_t *a = malloc(n), *b = malloc(n), *pin = NULL, *dev = NULL;
    if (!a || !b || cudaMallocHost((void **)&pin, n) != cudaSuccess || cudaMalloc((void **)&dev, n) != cudaSuccess) {
        fprintf(stderr, "bench_hostio: cannot allocate %zu MB on the host and the device (%s)\n", mb,
                cudaGetErrorString(cudaGetLastError()));
        return 1;
    }
    for (size_t i = 0; i < n; i++) a[i] = (uint8_t)(i * 2654435761u >> 11);
    memset(b, 1, n);
    memset(pin, 0, n);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(a, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "bench_hostio: cannot write %s\n", path);
        return 1;
    }
    const int fd = open(path, O_RDONLY);
    uint8_t *map = mmap(NULL, n, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
    if (fd < 0 || map == MAP_FAILED) {
        fprintf(stderr, "bench_hostio: cannot map %s\n", path);
        return 1;
    }
    cudaStream_t streams[64];
    for (int i = 0; i < max_threads; i++) cudaStreamCreateWithFlags(&streams[i], cudaStreamNonBlocking);
    struct cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, 0);
    printf("bench_hostio: %zu MB file in the page cache (%s), device %s, up to %d threads; best of 3\n", mb, path,
           prop.name, max_threads);
    printf("%-34s %8s %14s\n", "operation", "threads", "ms (GB/s)");
    static const struct {
        int op;
        const char *name;
    } ops[] = {{OP_MEMCPY, "memcpy heap -> heap"},
               {OP_PREAD, "pread file -> pinned"},
               {OP_MEMCPY, "memcpy mapping -> pinned"},
               {OP_CRC, "CRC-32C over the mapping"}};
    int counts[8], n_counts = 0; /* 1, 4, 8, 16, ... up to and including max_threads */
    for (int nt = 1; nt < max_threads && n_counts < 7; nt = nt == 1 ? 4 : nt * 2) counts[n_counts++] = nt;
    counts[n_counts++] = max_threads;
    int err = 0;
    for (size_t k = 0; k < sizeof ops / sizeof ops[0]; k++)
        for (int c = 0; c < n_counts; c++) {
            double best = 1e9;
            for (int r = 0; r < 3; r++) {
                const double t = parallel(ops[k].op, counts[c], fd, k == 0 ? b : pin, k == 0 ? a : map, NULL, n, NULL, &err);
                if (t < best) best = t;
            }
            printf("%-34s %8d %8.2f (%5.1f)\n", ops[k].name, counts[c], best * 1e3, n / best / 1e9);
        }
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        const double t0 = now_s();
        cudaMemcpy(dev, pin, n, cudaMemcpyHostToDevice);
        const double t = now_s() - t0;
        if (t < best) best = t;
    }
    printf("%-34s %8d %8.2f (%5.1f)  <- the floor\n", "pinned host -> device", 1, best * 1e3, n / best / 1e9);
    for (int c = 0; c < n_counts; c++) {
        const int nt = counts[c];
        const double reg = parallel(OP_REGISTER, nt, fd, NULL, map, dev, n, streams, &err);
        const double t0 = now_s();
        cudaDeviceSynchronize();
        const double copy = now_s() - t0;
        const double unreg = parallel(OP_UNREGISTER, nt, fd, NULL, map, dev, n, streams, &err);
        printf("%-34s %8d register %.2f + copies done %.2f + unregister %.2f ms\n", "registered file mapping -> device",
               nt, reg * 1e3, copy * 1e3, unreg * 1e3);
    }
    munmap(map, n);
    close(fd);
    unlink(path);
    if (err) {
        fprintf(stderr, "bench_hostio: a read or a driver call failed\n");
        return 1;
    }
    return 0;
}
