/* inspect.c — `shoal snapshot inspect`: a validated snapshot described in words. */
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>

#include "core/error.h"
#include "core/sha256.h"
#include "snapshot/format.h"
#include "snapshot/safetensors.h"
#include "snapshot/snapview.h"

static const char *kind_name(uint8_t k)
{
    static const char *names[] = {"i32", "i64", "f32", "f64", "v128"};
    return k < 5 ? names[k] : "?";
}

static uint64_t rd64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v |= (uint64_t)p[b] << (8 * b);
    return v;
}

/* The nn and llm layers embed each context's KV cache as a length-prefixed safetensors blob
 * inside their own record layout, which this layer does not parse. The blobs describe
 * themselves, so inspect finds them: a u64 blob length, then a safetensors header (u64 length,
 * '{') whose metadata names the format shoal.kv_cache. */
static void describe_kv_blobs(const uint8_t *b, size_t n, FILE *out)
{
    int found = 0;
    for (size_t i = 0; i + 17 <= n; i++) {
        if (b[i + 16] != '{') continue;
        uint64_t blob = rd64(b + i), hdr = rd64(b + i + 8);
        if (blob > n - i - 8 || hdr + 8 > blob) continue;
        shoal_st_t *st = NULL;
        if (shoal_safetensors_parse(b + i + 8, (size_t)blob, &st) != SHOAL_OK) {
            shoal_clear_error();
            continue;
        }
        const char *fmt = shoal_safetensors_meta(st, "format");
        bool kv = fmt && !strcmp(fmt, "shoal.kv_cache");
        shoal_safetensors_free(st);
        if (!kv) continue;
        fprintf(out, "                 KV cache %d (safetensors, %" PRIu64 " bytes at section offset %zu):\n", ++found,
                blob, i + 8);
        shoal_safetensors_describe(b + i + 8, (size_t)blob, "                   ", out);
        i += 8 + (size_t)blob - 1;
    }
}

shoal_status_t shoal_snapshot_inspect(const char *path, FILE *out)
{
    snap_view_t v;
    shoal_status_t st = snap_view_open(path, &v);
    if (st != SHOAL_OK) return st;
    char hex[65];
    shoal_hex(v.module_sha256, 32, hex);
    fprintf(out, "snapshot %s\n  format     SHOALSNP version %u, %zu bytes, CRC-32C ok\n  module     sha256 %s\n", path,
            v.version, v.size, hex);
    if (v.info) fprintf(out, "  info       %.*s\n", (int)v.info_len, v.info);
    if (v.has_memory) {
        fprintf(out, "  memory     %" PRIu64 " bytes (%" PRIu64 " wasm pages); %" PRIu64 " bytes stored in %u run(s) of "
                     "non-zero %u-byte pages (%.1f%%)\n",
                v.mem_size, v.mem_size / 65536, v.mem_stored, v.nruns, SNAP_PAGE,
                v.mem_size ? 100.0 * (double)v.mem_stored / (double)v.mem_size : 0.0);
        for (uint32_t i = 0; i < v.nruns && i < 16; i++)
            fprintf(out, "               [0x%08" PRIx64 ", +%" PRIu64 ")\n", snap_run_off(&v, i), snap_run_len(&v, i));
        if (v.nruns > 16) fprintf(out, "               ... %u more\n", v.nruns - 16);
    } else {
        fprintf(out, "  memory     none\n");
    }
    fprintf(out, "  globals    %u mutable\n", v.nglobals);
    for (uint32_t i = 0; i < v.nglobals; i++) {
        snap_global_t g;
        snap_global_at(&v, i, &g);
        uint64_t lo;
        memcpy(&lo, g.value, 8);
        if (g.kind == 0) lo &= 0xffffffffu;
        fprintf(out, "               %-24.*s %-4s = %" PRIu64 " (0x%" PRIx64 ")%s\n", (int)g.name_len, g.name,
                kind_name(g.kind), lo, lo, g.how == SNAP_GLOBAL_SP_ACCESSOR ? "  [via the guest's accessor]" : "");
    }
    fprintf(out, "  layers     %u\n", v.next);
    for (uint32_t i = 0; i < v.next; i++) {
        snap_ext_t x;
        snap_ext_at(&v, i, &x);
        fprintf(out, "               \"%.*s\" (slot %u): %zu bytes\n", (int)x.name_len, x.name, x.slot, x.blob_len);
        if (x.name_len == 5 && !memcmp(x.name, "actor", 5) && x.blob_len == 12) {
            uint64_t n = 0;
            for (int b = 0; b < 8; b++) n |= (uint64_t)x.blob[4 + b] << (8 * b);
            fprintf(out, "                 messages handled: %" PRIu64 "\n", n);
        }
        shoal_safetensors_describe(x.blob, x.blob_len, "                 ", out);
        describe_kv_blobs(x.blob, x.blob_len, out);
    }
    snap_view_close(&v);
    return SHOAL_OK;
}
