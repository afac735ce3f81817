/* snapview.h — a snapshot file mapped read-only and validated: header, checksum and every
 * section's bounds. Inspect checks all of it before use; a restore checks the checksum last
 * (snap_view_open_unverified, snap_view_verify), so the bytes its layers checksum while restoring
 * them are not read a second time. Restore and inspect both read through it. */
#ifndef SHOAL_SNAPSHOT_SNAPVIEW_H
#define SHOAL_SNAPSHOT_SNAPVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal.h"
#include "snapshot/restore_src.h"

typedef struct snap_view {
    const uint8_t *data; /* the mapping */
    size_t size;
    int fd;              /* the file, open until snap_view_close */
    uint32_t version;
    uint8_t module_sha256[32];
    const char *info;    /* INFO section (JSON, not NUL-terminated) */
    size_t info_len;
    bool has_memory;
    uint64_t mem_size;   /* bytes; a multiple of 64 KiB */
    uint32_t nruns;
    const uint8_t *runs; /* nruns x {u64 off, u64 len} */
    const uint8_t *run_data;
    uint64_t *run_pos;   /* where run i's bytes start in run_data */
    uint64_t mem_stored; /* bytes of page data stored */
    uint32_t nglobals;
    const uint8_t **globals; /* start of each entry */
    uint32_t next;
    const uint8_t **exts;    /* payload start of each EXT section */
    uint64_t *ext_lens;
} snap_view_t;

typedef struct snap_global {
    const char *name;
    size_t name_len;
    uint8_t kind, how;
    uint8_t value[16];
} snap_global_t;

typedef struct snap_ext {
    const char *name;
    size_t name_len;
    uint32_t slot;
    const uint8_t *blob;
    size_t blob_len;
} snap_ext_t;

/* Maps and validates `path`; every failure has a message that names the file and the fault. */
shoal_status_t snap_view_open(const char *path, snap_view_t *v);
/* As snap_view_open but for the checksum, which the caller must verify with snap_view_verify
 * before trusting what it read (every read stays inside the mapping regardless). A structural
 * fault in a file whose checksum also fails is reported as the checksum mismatch. */
shoal_status_t snap_view_open_unverified(const char *path, snap_view_t *v);
/* The file's checksum, combining the CRCs src noted (may be NULL) with those of the other bytes:
 * SHOAL_OK or SHOAL_E_FORMAT "checksum mismatch". Sorts src's parts. */
shoal_status_t snap_view_verify(const snap_view_t *v, shoal_restore_src_t *src, const char *path);
void snap_view_close(snap_view_t *v);

uint64_t snap_run_off(const snap_view_t *v, uint32_t i);
uint64_t snap_run_len(const snap_view_t *v, uint32_t i);
const uint8_t *snap_run_data(const snap_view_t *v, uint32_t i); /* runs' data are consecutive */
void snap_global_at(const snap_view_t *v, uint32_t i, snap_global_t *g);
void snap_ext_at(const snap_view_t *v, uint32_t i, snap_ext_t *x);

#endif
