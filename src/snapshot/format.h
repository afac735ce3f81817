/* format.h — the snapshot file, version 1 (docs/snapshot-format.md is the full description).
 *
 *   header (64 bytes) | section* | trailer (4 bytes: CRC-32C of every byte before it)
 *
 * All integers little-endian. The header names the exact module (SHA-256 of its bytes) and the
 * file's own length, so truncation, the wrong module and the wrong version are each told apart
 * before the checksum is even read. */
#ifndef SHOAL_SNAPSHOT_FORMAT_H
#define SHOAL_SNAPSHOT_FORMAT_H

#include <stdint.h>

#define SNAP_MAGIC "SHOALSNP"     /* 8 bytes, no NUL */
#define SNAP_VERSION 1u
#define SNAP_HEADER_SIZE 64u
#define SNAP_TRAILER_SIZE 4u
#define SNAP_PAGE 4096u           /* sparse-memory granularity: all-zero pages are not stored */

/* Header layout (byte offsets). */
enum {
    SNAP_OFF_MAGIC = 0,        /* char[8] */
    SNAP_OFF_VERSION = 8,      /* u32 */
    SNAP_OFF_HEADER_SIZE = 12, /* u32, = 64 */
    SNAP_OFF_FILE_SIZE = 16,   /* u64, whole file including the trailer */
    SNAP_OFF_MODULE = 24,      /* u8[32], SHA-256 of the module's bytes */
    SNAP_OFF_NSECTIONS = 56,   /* u32 */
    SNAP_OFF_FLAGS = 60,       /* u32, 0 */
};

/* Section: u32 type, u32 reserved (0), u64 payload length, payload. */
#define SNAP_SECTION_HEADER 16u
enum {
    SNAP_SEC_INFO = 1,    /* JSON object: producer, time, device (informational) */
    SNAP_SEC_MEMORY = 2,  /* u64 byte size, u32 page size, u32 run count, runs {u64 off, u64 len}, data */
    SNAP_SEC_GLOBALS = 3, /* u32 count, entries {u16 name len, name, u8 kind, u8 how, u8[16] value} */
    SNAP_SEC_EXT = 4,     /* u16 name len, name, u32 slot, then the layer's own (versioned) blob */
};

/* How a global's value is reached. */
enum { SNAP_GLOBAL_EXPORT = 0, SNAP_GLOBAL_SP_ACCESSOR = 1 };

#endif
