/* cuda_ranges.h — a sorted set of disjoint host address ranges, each with a payload.
 *
 * The CUDA backend keeps two of these: host ranges registered with the driver (what a kernel
 * may touch) and resident ranges (host range -> device copy). Pure C, no CUDA, so the
 * bookkeeping that guards every launch is tested on machines without a GPU. */
#ifndef SHOAL_BACKEND_CUDA_RANGES_H
#define SHOAL_BACKEND_CUDA_RANGES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shoal.h"

typedef struct shoal_range {
    uintptr_t base;
    size_t len; /* > 0 */
    void *payload; /* resident: device copy; registrations: unused */
} shoal_range_t;

typedef struct shoal_range_set {
    shoal_range_t *v; /* sorted by base, pairwise disjoint */
    size_t n, cap;
} shoal_range_set_t;

void shoal_range_set_free(shoal_range_set_t *s);
/* Inserts [base, base+len). Fails with SHOAL_E_INVALID when it overlaps a range already in
 * the set (the driver refuses double registration too) or when len is 0 or wraps. */
shoal_status_t shoal_range_set_add(shoal_range_set_t *s, uintptr_t base, size_t len, void *payload);
/* Index of the range that contains address p, or -1. */
ptrdiff_t shoal_range_set_find(const shoal_range_set_t *s, uintptr_t p);
/* Index of the range that starts exactly at base, or -1. */
ptrdiff_t shoal_range_set_find_base(const shoal_range_set_t *s, uintptr_t base);
/* Removes entry i (keeps order). */
void shoal_range_set_remove(shoal_range_set_t *s, size_t i);
/* True when every byte of [p, p+len) lies in some range, possibly several adjacent ones
 * (a memory grown in place is registered piecewise). len 0 is covered only if p is. */
bool shoal_range_set_covers(const shoal_range_set_t *s, uintptr_t p, size_t len);
/* Index of the first range that intersects [lo, hi), or s->n if none. */
size_t shoal_range_set_first_overlap(const shoal_range_set_t *s, uintptr_t lo, uintptr_t hi);

#endif
