/* cuda_ranges.c — sorted disjoint host ranges (registrations, resident copies). */
#include "backend/cuda/cuda_ranges.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"

void shoal_range_set_free(shoal_range_set_t *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* Index of the first range whose base is > p. */
static size_t upper_bound(const shoal_range_set_t *s, uintptr_t p)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->v[mid].base <= p)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

ptrdiff_t shoal_range_set_find(const shoal_range_set_t *s, uintptr_t p)
{
    size_t i = upper_bound(s, p);
    if (i == 0)
        return -1;
    const shoal_range_t *r = &s->v[i - 1];
    return p - r->base < r->len ? (ptrdiff_t)(i - 1) : -1;
}

ptrdiff_t shoal_range_set_find_base(const shoal_range_set_t *s, uintptr_t base)
{
    ptrdiff_t i = shoal_range_set_find(s, base);
    return i >= 0 && s->v[i].base == base ? i : -1;
}

size_t shoal_range_set_first_overlap(const shoal_range_set_t *s, uintptr_t lo, uintptr_t hi)
{
    if (hi <= lo)
        return s->n;
    size_t i = upper_bound(s, lo);
    /* The range just before may reach into [lo, hi). */
    if (i > 0 && s->v[i - 1].base + s->v[i - 1].len > lo)
        return i - 1;
    return i < s->n && s->v[i].base < hi ? i : s->n;
}

shoal_status_t shoal_range_set_add(shoal_range_set_t *s, uintptr_t base, size_t len, void *payload)
{
    if (len == 0 || base + len < base)
        return shoal_fail(SHOAL_E_INVALID, "range [%#lx, +%zu) is empty or wraps", (unsigned long)base, len);
    size_t o = shoal_range_set_first_overlap(s, base, base + len);
    if (o < s->n)
        return shoal_fail(SHOAL_E_INVALID, "range [%#lx, +%zu) overlaps [%#lx, +%zu), which is already mapped",
                          (unsigned long)base, len, (unsigned long)s->v[o].base, s->v[o].len);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        shoal_range_t *v = realloc(s->v, cap * sizeof *v);
        if (!v)
            return shoal_fail(SHOAL_E_NOMEM, "out of memory growing a range set to %zu entries", cap);
        s->v = v;
        s->cap = cap;
    }
    size_t i = upper_bound(s, base);
    memmove(&s->v[i + 1], &s->v[i], (s->n - i) * sizeof *s->v);
    s->v[i] = (shoal_range_t){.base = base, .len = len, .payload = payload};
    s->n++;
    return SHOAL_OK;
}

void shoal_range_set_remove(shoal_range_set_t *s, size_t i)
{
    if (i >= s->n)
        return;
    memmove(&s->v[i], &s->v[i + 1], (s->n - i - 1) * sizeof *s->v);
    s->n--;
}

bool shoal_range_set_covers(const shoal_range_set_t *s, uintptr_t p, size_t len)
{
    if (p + len < p)
        return false;
    ptrdiff_t i = shoal_range_set_find(s, p);
    if (i < 0)
        return false;
    uintptr_t end = p + len;
    for (size_t j = (size_t)i; j < s->n; j++) {
        uintptr_t rend = s->v[j].base + s->v[j].len;
        if (rend >= end)
            return true;
        /* Adjacent only: a gap, however small, is memory the device cannot see. */
        if (j + 1 >= s->n || s->v[j + 1].base != rend)
            return false;
    }
    return false;
}
