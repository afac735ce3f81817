/* kv_stage.h — host-to-device uploads through the process's pinned staging memory, for restores:
 * a copy from pageable memory runs at a fraction of the bus rate, so large uploads (a KV cache of
 * 189 MB for SmolLM2 at 4096 positions) go in pieces of 1 MB through pinned slots that one thread
 * per CPU fills (from memory, or from a file with pread: no page tables are built for it) and
 * uploads on a stream of its own, checksumming what it copies on the way. */
#ifndef SHOAL_BACKEND_CUDA_KV_STAGE_H
#define SHOAL_BACKEND_CUDA_KV_STAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cuda_runtime_api.h>

#include "shoal.h"

/* Below this, a plain copy costs less than the staging's hand-offs. */
#define SHOAL_CU_STAGE_MIN ((size_t)1 << 20)

/* Copies bytes to device memory dev on stream: from host memory host, or (host NULL) from file fd
 * at byte offset foff. With crc, *crc = the CRC-32C of the bytes. Returns once every byte has left
 * host (the source may then go); the uploads themselves complete in stream order (synchronise
 * before reading dev from the host). The staging is made on first use and kept for the process;
 * one upload runs at a time. SHOAL_E_UNSUPPORTED (nothing copied) where there is no staging for
 * this device; SHOAL_E_IO for a failed or short read; SHOAL_E_DEVICE for a CUDA error. */
shoal_status_t shoal_cu_stage_upload(int device, cudaStream_t stream, void *dev, const void *host, int fd, uint64_t foff,
                                     size_t bytes, uint32_t *crc);

/* One destination of a batched upload: bytes to dev, from host or (host NULL) from the file at
 * byte offset foff; crc is set to the CRC-32C of the bytes when asked for. */
typedef struct shoal_cu_stage_seg {
    void *dev;
    const void *host;
    uint64_t foff;
    size_t bytes;
    uint32_t crc;
} shoal_cu_stage_seg_t;

/* As shoal_cu_stage_upload for n_segs segments at once (file segments read from fd), all threads
 * busy from the first byte to the last: a restore's whole KV cache in one call. */
shoal_status_t shoal_cu_stage_upload_segs(int device, cudaStream_t stream, shoal_cu_stage_seg_t *segs, int n_segs,
                                          int fd, bool crc);

#endif
