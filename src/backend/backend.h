/* backend.h — the compute-backend interface: a table of functions plus capability flags.
 *
 * A backend sees guest linear memory only through the map/unmap hooks: the memory layer
 * calls map() with exactly the bytes that became accessible (at creation and for each grown
 * increment) and unmap() once before the memory goes away. Ops receive host pointers that
 * the caller has already bounds-checked against the guest memory; a backend that needs its
 * own view of those bytes (a GPU) must have been told about them through map(). Paths are
 * chosen by capability flags, never by backend name. */
#ifndef SHOAL_BACKEND_H
#define SHOAL_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "shoal.h"

typedef struct shoal_backend shoal_backend_t;

enum {
    /* Kernels can compute on host memory the backend did not allocate (zero-copy). */
    SHOAL_CAP_HOST_PTR = 1u << 0,
    /* Has its own memory: where an operand lives (placement) changes cost. */
    SHOAL_CAP_DEVICE_MEM = 1u << 1,
    /* map() must succeed before kernels may touch a host range. */
    SHOAL_CAP_NEEDS_MAP = 1u << 2,
};

/* Where the operands of an op live while it runs. */
typedef enum shoal_placement {
    SHOAL_PLACE_ZEROCOPY = 0, /* kernels read/write the guest's bytes in place */
    SHOAL_PLACE_COPY = 1,     /* copy out of the sandbox into backend buffers and back (the peers' way) */
    SHOAL_PLACE_RESIDENT = 2, /* operands named earlier and kept in backend memory */
    SHOAL_PLACE_COUNT_
} shoal_placement_t;

/* C[m,n] = A[m,k] @ B[k,n]; row-major, contiguous, float32. */
typedef struct shoal_matmul_args {
    const float *a;
    const float *b;
    float *c;
    uint32_t m, n, k;
    shoal_placement_t placement;
} shoal_matmul_args_t;

/* What the last op did, for benchmarks and `shoal.op_info`. */
typedef struct shoal_op_stats {
    uint64_t ns;              /* wall time of the op, copies included */
    const void *a_used;       /* address the kernel actually read A at */
    const void *b_used;
    const void *c_used;       /* address the kernel actually wrote C at */
    uint64_t bytes_copied;    /* bytes moved by staging copies (0 on the zero-copy path) */
    int64_t rss_growth;       /* process RSS growth while the operands were exposed to the kernel */
} shoal_op_stats_t;

typedef struct shoal_backend_ops {
    const char *name;
    uint32_t caps;
    /* A human-readable device description ("cpu: 2 threads, avx2+fma"). */
    const char *(*describe)(shoal_backend_t *be);
    /* [base, base+len) became accessible guest memory. May pin/register it. */
    shoal_status_t (*map)(shoal_backend_t *be, void *base, size_t len);
    /* The guest memory starting at base (len accessible bytes) is about to be freed:
     * forget every range inside it. Must synchronize first if kernels may be in flight. */
    void (*unmap)(shoal_backend_t *be, void *base, size_t len);
    shoal_status_t (*matmul_f32)(shoal_backend_t *be, const shoal_matmul_args_t *args, shoal_op_stats_t *stats);
    /* Placement RESIDENT: the guest names [host, host+len) once; the backend keeps its own copy
     * (device memory) until resident_drop. Ops with placement RESIDENT read operands that lie
     * inside a resident range from that copy; guest writes after resident_add are not seen
     * until the range is added again. Backends without device memory may treat these as no-ops. */
    shoal_status_t (*resident_add)(shoal_backend_t *be, const void *host, size_t len);
    void (*resident_drop)(shoal_backend_t *be, const void *host);
    shoal_status_t (*synchronize)(shoal_backend_t *be);
    void (*destroy)(shoal_backend_t *be);
} shoal_backend_ops_t;

/* Every backend struct starts with this header. */
struct shoal_backend {
    const shoal_backend_ops_t *ops;
};

typedef enum shoal_device_kind shoal_device_kind_t;

/* Creates the backend for `kind` (cpu, cuda, auto). threads <= 0 means all cores.
 * For auto, picks CUDA when a usable GPU is present, else the CPU. */
shoal_status_t shoal_backend_create(shoal_device_kind_t kind, int threads, shoal_backend_t **out);
static inline void shoal_backend_destroy(shoal_backend_t *be) { if (be) be->ops->destroy(be); }

shoal_status_t shoal_cpu_backend_create(int threads, shoal_backend_t **out);
#ifdef SHOAL_HAVE_CUDA
/* Fails with SHOAL_E_UNSUPPORTED (and a message saying why) when no usable GPU is present. */
shoal_status_t shoal_cuda_backend_create(shoal_backend_t **out);
#endif

/* Resident set size of this process in bytes (from /proc/self/statm), 0 if unknown. */
int64_t shoal_rss_bytes(void);
/* Monotonic clock in nanoseconds. */
uint64_t shoal_now_ns(void);

#endif
