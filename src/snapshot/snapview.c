/* snapview.c — mapping and validating a snapshot file (format.h). Order of checks: magic,
 * version, length (truncation), checksum, then the structure of every section, so each kind of
 * damage gets its own message. Nothing outside the mapping is ever read. */
#define _GNU_SOURCE
#include "snapshot/snapview.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/error.h"
#include "core/sha256.h"
#include "snapshot/format.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }
static uint64_t rd64(const uint8_t *p) { return rd32(p) | (uint64_t)rd32(p + 4) << 32; }

void snap_view_close(snap_view_t *v)
{
    if (v->data) munmap((void *)v->data, v->size);
    if (v->fd >= 0) close(v->fd);
    free(v->globals);
    free(v->exts);
    free(v->ext_lens);
    free(v->run_pos);
    memset(v, 0, sizeof *v);
}

uint64_t snap_run_off(const snap_view_t *v, uint32_t i) { return rd64(v->runs + 16 * (size_t)i); }
uint64_t snap_run_len(const snap_view_t *v, uint32_t i) { return rd64(v->runs + 16 * (size_t)i + 8); }
const uint8_t *snap_run_data(const snap_view_t *v, uint32_t i) { return v->run_data + v->run_pos[i]; }

void snap_global_at(const snap_view_t *v, uint32_t i, snap_global_t *g)
{
    const uint8_t *p = v->globals[i];
    g->name_len = rd16(p);
    g->name = (const char *)p + 2;
    p += 2 + g->name_len;
    g->kind = p[0];
    g->how = p[1];
    memcpy(g->value, p + 2, 16);
}

void snap_ext_at(const snap_view_t *v, uint32_t i, snap_ext_t *x)
{
    const uint8_t *p = v->exts[i];
    x->name_len = rd16(p);
    x->name = (const char *)p + 2;
    x->slot = rd32(p + 2 + x->name_len);
    x->blob = p + 2 + x->name_len + 4;
    x->blob_len = v->ext_lens[i] - 2 - x->name_len - 4;
}

static shoal_status_t parse_memory(const char *path, snap_view_t *v, const uint8_t *p, uint64_t len)
{
    if (v->has_memory) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: two memory sections", path);
    if (len < 16) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: memory section too short", path);
    v->has_memory = true;
    v->mem_size = rd64(p);
    uint32_t page = rd32(p + 8);
    v->nruns = rd32(p + 12);
    if (page != SNAP_PAGE) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: page size %u (expected %u)", path, page, SNAP_PAGE);
    if (v->mem_size % 65536 || v->mem_size > (UINT64_C(1) << 32))
        return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: memory size %llu is not a valid wasm32 memory size", path,
                          (unsigned long long)v->mem_size);
    if (v->nruns > (len - 16) / 16) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: memory run table overruns its section", path);
    v->runs = p + 16;
    v->run_data = v->runs + 16 * (size_t)v->nruns;
    uint64_t avail = len - 16 - 16 * (uint64_t)v->nruns, end = 0, sum = 0;
    v->run_pos = malloc(((size_t)v->nruns + 1) * sizeof *v->run_pos);
    if (!v->run_pos) return shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
    for (uint32_t i = 0; i < v->nruns; i++) {
        uint64_t off = snap_run_off(v, i), rl = snap_run_len(v, i);
        if (off % SNAP_PAGE || rl == 0 || off < end || rl > v->mem_size || off > v->mem_size - rl)
            return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: memory run %u (offset %llu, %llu bytes) is misplaced", path, i,
                              (unsigned long long)off, (unsigned long long)rl);
        v->run_pos[i] = sum;
        sum += rl;
        end = off + rl;
    }
    if (sum != avail)
        return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: memory runs hold %llu bytes but the section has %llu", path,
                          (unsigned long long)sum, (unsigned long long)avail);
    v->mem_stored = sum;
    return SHOAL_OK;
}

static shoal_status_t parse_globals(const char *path, snap_view_t *v, const uint8_t *p, uint64_t len)
{
    if (v->globals) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: two globals sections", path);
    if (len < 4) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: globals section too short", path);
    uint32_t n = rd32(p);
    if (n > len / 20) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: %u globals cannot fit their section", path, n);
    v->globals = calloc(n ? n : 1, sizeof *v->globals);
    if (!v->globals) return shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
    v->nglobals = n;
    uint64_t at = 4;
    for (uint32_t i = 0; i < n; i++) {
        if (len - at < 2) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: global %u runs past its section", path, i);
        uint64_t nl = rd16(p + at);
        if (len - at < 2 + nl + 18) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: global %u runs past its section", path, i);
        v->globals[i] = p + at;
        uint8_t kind = p[at + 2 + nl], how = p[at + 2 + nl + 1];
        if (kind > 4 || how > 1 || nl == 0)
            return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: global %u has an unknown kind %u or access %u", path, i, kind, how);
        at += 2 + nl + 18;
    }
    if (at != len) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: %llu stray bytes after the globals", path,
                                     (unsigned long long)(len - at));
    return SHOAL_OK;
}

static shoal_status_t parse_ext(const char *path, snap_view_t *v, const uint8_t *p, uint64_t len)
{
    if (len < 6 || len - 6 < rd16(p))
        return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: extension section %u too short", path, v->next);
    const uint8_t **ne = realloc(v->exts, (v->next + 1) * sizeof *ne);
    if (ne) v->exts = ne;
    uint64_t *nl = realloc(v->ext_lens, (v->next + 1) * sizeof *nl);
    if (nl) v->ext_lens = nl;
    if (!ne || !nl) return shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
    v->exts[v->next] = p;
    v->ext_lens[v->next] = len;
    snap_ext_t x;
    snap_ext_at(v, v->next++, &x);
    if (x.slot >= 4) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: extension slot %u out of range", path, x.slot);
    for (uint32_t i = 0; i + 1 < v->next; i++) {
        snap_ext_t y;
        snap_ext_at(v, i, &y);
        if (y.slot == x.slot) return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: two sections for extension slot %u", path, x.slot);
    }
    return SHOAL_OK;
}

static shoal_status_t checksum_mismatch(const char *path)
{
    return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: checksum mismatch: the file is corrupt", path);
}

static int part_cmp(const void *a, const void *b)
{
    const uint8_t *x = ((const shoal_crc_part_t *)a)->p, *y = ((const shoal_crc_part_t *)b)->p;
    return x < y ? -1 : x > y;
}

/* The file's CRC (every byte before the trailer) from the parts src noted and the CRC of the
 * bytes between them; parts outside the checked range or overlapping one another are ignored
 * (their bytes are then read like the rest). */
static bool crc_ok_with(const snap_view_t *v, shoal_restore_src_t *src)
{
    const uint8_t *at = v->data, *end = v->data + v->size - 4;
    uint32_t crc = 0;
    if (src && src->n_parts) qsort(src->parts, src->n_parts, sizeof *src->parts, part_cmp);
    for (size_t i = 0; src && i < src->n_parts; i++) {
        const shoal_crc_part_t *q = &src->parts[i];
        if (q->p < at || q->p > end || q->len > (size_t)(end - q->p)) continue;
        if (q->p > at) crc = shoal_crc32c_spans(crc, &(shoal_span_t){at, (size_t)(q->p - at)}, 1);
        crc = shoal_crc32c_combine(crc, q->crc, q->len);
        at = q->p + q->len;
    }
    if (at < end) crc = shoal_crc32c_spans(crc, &(shoal_span_t){at, (size_t)(end - at)}, 1);
    return crc == rd32(end);
}

/* Maps the file and checks its header; then, when check_crc, the checksum; then every section. A
 * view opened without the checksum check reports a structural fault as a checksum mismatch when
 * the checksum disagrees too (the cause is then the damage, not the writer). */
static shoal_status_t view_open(const char *path, snap_view_t *v, bool check_crc)
{
    memset(v, 0, sizeof *v);
    v->fd = -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return shoal_fail(SHOAL_E_IO, "snapshot %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return shoal_fail(SHOAL_E_IO, "snapshot %s: not a regular file", path);
    }
    size_t n = (size_t)sb.st_size;
    if (n < SNAP_HEADER_SIZE + SNAP_TRAILER_SIZE) {
        close(fd);
        return shoal_fail(SHOAL_E_FORMAT, "snapshot %s: %zu bytes is too short to be a snapshot (truncated?)", path, n);
    }
    void *map = mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        close(fd);
        return shoal_fail(SHOAL_E_IO, "snapshot %s: mmap: %s", path, strerror(errno));
    }
    v->fd = fd;
    v->data = map;
    v->size = n;
    const uint8_t *d = v->data;
    shoal_status_t st = SHOAL_OK;
    uint64_t declared = rd64(d + SNAP_OFF_FILE_SIZE);
    v->version = rd32(d + SNAP_OFF_VERSION);
    memcpy(v->module_sha256, d + SNAP_OFF_MODULE, 32);
    if (memcmp(d, SNAP_MAGIC, 8) != 0)
        st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: not a Shoal snapshot (bad magic)", path);
    else if (v->version != SNAP_VERSION)
        st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: format version %u, but this build reads version %u", path, v->version,
                        SNAP_VERSION);
    else if (rd32(d + SNAP_OFF_HEADER_SIZE) != SNAP_HEADER_SIZE || rd32(d + SNAP_OFF_FLAGS) != 0)
        st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: corrupt header", path);
    else if (declared != n)
        st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: %s: the header says %llu bytes, the file has %zu", path,
                        declared > n ? "truncated" : "wrong length", (unsigned long long)declared, n);
    else if (check_crc && !crc_ok_with(v, NULL))
        st = checksum_mismatch(path);
    if (st != SHOAL_OK) {
        snap_view_close(v);
        return st;
    }
    uint32_t nsec = rd32(d + SNAP_OFF_NSECTIONS);
    uint64_t at = SNAP_HEADER_SIZE, end = n - SNAP_TRAILER_SIZE;
    for (uint32_t i = 0; st == SHOAL_OK && i < nsec; i++) {
        if (end - at < SNAP_SECTION_HEADER) {
            st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: section %u starts past the end", path, i);
            break;
        }
        uint32_t type = rd32(d + at);
        uint64_t len = rd64(d + at + 8);
        at += SNAP_SECTION_HEADER;
        if (len > end - at) {
            st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: section %u (%llu bytes) runs past the end", path, i,
                            (unsigned long long)len);
            break;
        }
        const uint8_t *p = d + at;
        switch (type) {
        case SNAP_SEC_INFO: v->info = (const char *)p, v->info_len = len; break;
        case SNAP_SEC_MEMORY: st = parse_memory(path, v, p, len); break;
        case SNAP_SEC_GLOBALS: st = parse_globals(path, v, p, len); break;
        case SNAP_SEC_EXT: st = parse_ext(path, v, p, len); break;
        default: st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: unknown section type %u", path, type);
        }
        at += len;
    }
    if (st == SHOAL_OK && at != end)
        st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: %llu stray bytes after the last section", path,
                        (unsigned long long)(end - at));
    if (st == SHOAL_OK && !v->globals) st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: no globals section", path);
    if (st != SHOAL_OK && !check_crc && !crc_ok_with(v, NULL)) st = checksum_mismatch(path);
    if (st != SHOAL_OK) snap_view_close(v);
    return st;
}

shoal_status_t snap_view_open(const char *path, snap_view_t *v) { return view_open(path, v, true); }

shoal_status_t snap_view_open_unverified(const char *path, snap_view_t *v) { return view_open(path, v, false); }

void shoal_restore_src_note(shoal_restore_src_t *src, const uint8_t *p, size_t len, uint32_t crc)
{
    if (!src || len == 0) return;
    if (src->n_parts == src->cap) {
        size_t cap = src->cap ? 2 * src->cap : 64;
        shoal_crc_part_t *np = realloc(src->parts, cap * sizeof *np);
        if (!np) return;
        src->parts = np, src->cap = cap;
    }
    src->parts[src->n_parts++] = (shoal_crc_part_t){p, len, crc};
}

shoal_status_t snap_view_verify(const snap_view_t *v, shoal_restore_src_t *src, const char *path)
{
    return crc_ok_with(v, src) ? SHOAL_OK : checksum_mismatch(path);
}
