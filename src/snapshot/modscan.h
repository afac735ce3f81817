/* modscan.h — what a module's binary says about the state a snapshot must capture: its
 * mutable globals that the C API cannot reach (not exported) and its memories. */
#ifndef SHOAL_SNAPSHOT_MODSCAN_H
#define SHOAL_SNAPSHOT_MODSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct shoal_modinfo {
    bool scanned;                /* false: the scan gave up (snapshots are then refused) */
    uint32_t hidden_mutable;     /* mutable globals the module defines and does not export */
    bool hidden_stack_pointer;   /* __stack_pointer (by the name section) is one of them */
    char hidden_name[64];        /* first hidden mutable global other than __stack_pointer */
    uint32_t memories;           /* memories the module defines */
    uint32_t imported_memories;  /* memories it imports */
} shoal_modinfo_t;

/* Scans a module that Wasmtime has already validated. Never reads outside [bytes, bytes+len);
 * on anything unexpected sets info->scanned = false and returns. */
void shoal_modscan(const uint8_t *bytes, size_t len, shoal_modinfo_t *info);

#endif
