/* ktrace.c — a kernel timeline where Nsight Systems is not installed (the GPU machine has ncu but
 * no nsys). CUDA loads it itself (CUDA_INJECTION64_PATH=ktrace.so) and calls InitializeInjection;
 * CUPTI's concurrent-kernel activity records then give every kernel's start and end on the GPU,
 * kernels launched from CUDA graphs included, without serialising them, so programmatic dependent
 * launch overlaps stay visible. At exit it writes "start_ns end_ns grid_x mangled_name" lines to
 * $KTRACE_OUT (default ktrace.txt). Built by bench/gpu/pack_gpurun.sh; used by run_ktrace.sh. */
#include <cupti.h>
#include <stdio.h>
#include <stdlib.h>

static FILE *g_out;

static void CUPTIAPI buffer_requested(uint8_t **buf, size_t *size, size_t *max_records)
{
    *size = 8u << 20;
    *buf = aligned_alloc(8, *size);
    *max_records = 0;
}

static void CUPTIAPI buffer_completed(CUcontext ctx, uint32_t stream, uint8_t *buf, size_t size, size_t valid)
{
    (void)ctx, (void)stream, (void)size;
    CUpti_Activity *rec = NULL;
    while (cuptiActivityGetNextRecord(buf, valid, &rec) == CUPTI_SUCCESS) {
        if (rec->kind != CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL)
            continue;
        const CUpti_ActivityKernel10 *k = (const CUpti_ActivityKernel10 *)rec;
        if (g_out)
            fprintf(g_out, "%llu %llu %d %s\n", (unsigned long long)k->start, (unsigned long long)k->end, k->gridX,
                    k->name ? k->name : "?");
    }
    free(buf);
}

static void flush_at_exit(void)
{
    cuptiActivityFlushAll(1);
    if (g_out)
        fclose(g_out);
    g_out = NULL;
}

int InitializeInjection(void)
{
    const char *path = getenv("KTRACE_OUT");
    g_out = fopen(path ? path : "ktrace.txt", "w");
    if (!g_out || cuptiActivityRegisterCallbacks(buffer_requested, buffer_completed) != CUPTI_SUCCESS ||
        cuptiActivityEnable(CUPTI_ACTIVITY_KIND_CONCURRENT_KERNEL) != CUPTI_SUCCESS) {
        fprintf(stderr, "ktrace: CUPTI activity tracing could not be enabled\n");
        return 0;
    }
    atexit(flush_at_exit);
    return 1;
}
