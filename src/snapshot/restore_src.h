/* restore_src.h — where the blob an ext layer restores from lies: a snapshot file mapped
 * read-only (base, size) and still open (fd), and the CRC-32C values the layer took over parts of
 * it while restoring. A GPU layer can then read its large parts with pread (no page faults on the
 * mapping), and the file's own checksum is verified afterwards by combining those values with
 * the CRC of the rest, so no byte is read twice (snapview.c). */
#ifndef SHOAL_SNAPSHOT_RESTORE_SRC_H
#define SHOAL_SNAPSHOT_RESTORE_SRC_H

#include <stddef.h>
#include <stdint.h>

#include "shoal.h"

typedef struct shoal_crc_part {
    const uint8_t *p;
    size_t len;
    uint32_t crc; /* shoal_crc32c(0, p, len), taken from the bytes themselves */
} shoal_crc_part_t;

typedef struct shoal_restore_src {
    const uint8_t *base; /* the mapping */
    size_t size;
    int fd;              /* the mapped file, open for pread */
    shoal_crc_part_t *parts;
    size_t n_parts, cap;
} shoal_restore_src_t;

/* Records that [p, p + len), inside the mapping, has CRC crc. A NULL src ignores it; so does one
 * out of memory (the file check then reads those bytes itself). */
void shoal_restore_src_note(shoal_restore_src_t *src, const uint8_t *p, size_t len, uint32_t crc);

#endif
