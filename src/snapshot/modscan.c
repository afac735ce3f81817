/* modscan.c — a bounds-checked walk over the import, global, export and name sections of a
 * WebAssembly binary (core spec 5.5), just deep enough to list globals and memories. */
#include "snapshot/modscan.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd_t;

static uint8_t u8(rd_t *r)
{
    if (r->p >= r->end) {
        r->bad = true;
        return 0;
    }
    return *r->p++;
}

static uint64_t uleb(rd_t *r)
{
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        uint8_t b = u8(r);
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return v;
    }
    r->bad = true;
    return 0;
}

static void skip(rd_t *r, uint64_t n)
{
    if (n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        r->p = r->end;
    } else {
        r->p += n;
    }
}

static void skip_limits(rd_t *r)
{
    uint8_t flags = u8(r);
    uleb(r);
    if (flags & 1) uleb(r);
}

/* A constant expression: skip to its `end`. Covers the MVP, extended-const, reference and
 * SIMD constants; anything else makes the scan give up. */
static void skip_const_expr(rd_t *r)
{
    while (!r->bad) {
        uint8_t op = u8(r);
        switch (op) {
        case 0x0b: return;
        case 0x41: case 0x42: case 0x23: case 0xd2: uleb(r); break; /* sleb skips like uleb */
        case 0x43: skip(r, 4); break;
        case 0x44: skip(r, 8); break;
        case 0xd0: u8(r); break;
        case 0x6a: case 0x6b: case 0x6c: case 0x7c: case 0x7d: case 0x7e: break;
        case 0xfd:
            if (uleb(r) != 12) r->bad = true;
            skip(r, 16);
            break;
        default: r->bad = true;
        }
    }
}

typedef struct gl {
    bool mut, exported;
    char name[64];
} gl_t;

void shoal_modscan(const uint8_t *bytes, size_t len, shoal_modinfo_t *info)
{
    memset(info, 0, sizeof *info);
    rd_t r = {bytes, bytes + len, false};
    skip(&r, 8); /* magic and version */
    uint32_t imported_globals = 0;
    gl_t *g = NULL;
    uint64_t ng = 0;
    while (!r.bad && r.p < r.end) {
        uint8_t id = u8(&r);
        uint64_t size = uleb(&r);
        if (r.bad || size > (uint64_t)(r.end - r.p)) break;
        rd_t s = {r.p, r.p + size, false};
        r.p += size;
        if (id == 2) { /* imports: globals and memories imported come first in index space */
            uint64_t n = uleb(&s);
            for (uint64_t i = 0; i < n && !s.bad; i++) {
                skip(&s, uleb(&s));
                skip(&s, uleb(&s));
                uint8_t kind = u8(&s);
                if (kind == 0) uleb(&s);
                else if (kind == 1) u8(&s), skip_limits(&s);
                else if (kind == 2) skip_limits(&s), info->imported_memories++;
                else if (kind == 3) u8(&s), u8(&s), imported_globals++;
                else if (kind == 4) u8(&s), uleb(&s); /* tag */
                else s.bad = true;
            }
        } else if (id == 5) {
            info->memories = (uint32_t)uleb(&s);
        } else if (id == 6) {
            ng = uleb(&s);
            if (ng > size) s.bad = true; /* each global takes several bytes */
            else g = calloc(ng ? ng : 1, sizeof *g);
            if (!g) s.bad = true;
            for (uint64_t i = 0; i < ng && !s.bad; i++) {
                uint8_t t = u8(&s);
                if (t == 0x63 || t == 0x64) u8(&s); /* typed reference: heap type */
                g[i].mut = u8(&s) == 1;
                skip_const_expr(&s);
            }
        } else if (id == 7) {
            uint64_t n = uleb(&s);
            for (uint64_t i = 0; i < n && !s.bad; i++) {
                skip(&s, uleb(&s));
                uint8_t kind = u8(&s);
                uint64_t idx = uleb(&s);
                if (kind == 3 && idx >= imported_globals && idx - imported_globals < ng) g[idx - imported_globals].exported = true;
            }
        } else if (id == 0) { /* custom: only "name", subsection 7 (global names) */
            uint64_t nl = uleb(&s);
            if (nl == 4 && (uint64_t)(s.end - s.p) >= 4 && !memcmp(s.p, "name", 4)) {
                skip(&s, 4);
                while (!s.bad && s.p < s.end) {
                    uint8_t sub = u8(&s);
                    uint64_t ssz = uleb(&s);
                    if (s.bad || ssz > (uint64_t)(s.end - s.p)) break;
                    rd_t ss = {s.p, s.p + ssz, false};
                    s.p += ssz;
                    if (sub != 7) continue;
                    uint64_t n = uleb(&ss);
                    for (uint64_t i = 0; i < n && !ss.bad; i++) {
                        uint64_t idx = uleb(&ss), l = uleb(&ss);
                        if (ss.bad || l > (uint64_t)(ss.end - ss.p)) break;
                        if (idx >= imported_globals && idx - imported_globals < ng) {
                            gl_t *e = &g[idx - imported_globals];
                            snprintf(e->name, sizeof e->name, "%.*s", (int)(l < 63 ? l : 63), (const char *)ss.p);
                        }
                        ss.p += l;
                    }
                }
            }
            s.bad = false; /* a malformed custom section is not the module's state */
        }
        if (s.bad) r.bad = true;
    }
    if (!r.bad) {
        info->scanned = true;
        for (uint64_t i = 0; i < ng; i++) {
            if (!g[i].mut || g[i].exported) continue;
            info->hidden_mutable++;
            if (!strcmp(g[i].name, "__stack_pointer")) info->hidden_stack_pointer = true;
            else if (!info->hidden_name[0]) {
                if (g[i].name[0]) snprintf(info->hidden_name, sizeof info->hidden_name, "%s", g[i].name);
                else snprintf(info->hidden_name, sizeof info->hidden_name, "global %llu",
                              (unsigned long long)(i + imported_globals));
            }
        }
    }
    free(g);
}
