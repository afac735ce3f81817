/* snapshot.c — saving an instance's state between calls (linear memory, mutable globals, the
 * ext slots of higher layers) to a checksummed file, and restoring it into a fresh instance.
 * A restore validates the file's structure, builds a new instance from it and checks the file's
 * checksum last (combined with the CRCs the layers took of the bytes they restored), so a bad file
 * never touches a running one and a good one is read once. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/error.h"
#include "core/sha256.h"
#include "runtime/wtutil.h"
#include "snapshot/format.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapview.h"

/* ---- ext registry ---- */

static pthread_mutex_t g_ext_lock = PTHREAD_MUTEX_INITIALIZER;
static const shoal_ext_ops_t *g_ext_ops[SHOAL_EXT_COUNT];

shoal_status_t shoal_snapshot_register_ext(int slot, const shoal_ext_ops_t *ops)
{
    if (slot < 0 || slot >= SHOAL_EXT_COUNT || slot == SHOAL_EXT_SNAPSHOT || !ops || !ops->name)
        return shoal_fail(SHOAL_E_INVALID, "snapshot: bad ext registration (slot %d)", slot);
    pthread_mutex_lock(&g_ext_lock);
    g_ext_ops[slot] = ops;
    pthread_mutex_unlock(&g_ext_lock);
    return SHOAL_OK;
}

static const shoal_ext_ops_t *ext_lookup(int slot)
{
    if (slot == SHOAL_EXT_SNAPSHOT) return &shoal_actor_ext_ops; /* this layer's own */
    pthread_mutex_lock(&g_ext_lock);
    const shoal_ext_ops_t *ops = slot >= 0 && slot < SHOAL_EXT_COUNT ? g_ext_ops[slot] : NULL;
    pthread_mutex_unlock(&g_ext_lock);
    return ops;
}

/* ---- what an instance exposes ---- */

#define SP_GET "shoal_stack_pointer_get"
#define SP_SET "shoal_stack_pointer_set"

static bool has_func(shoal_instance_t *inst, const char *name)
{
    wasmtime_extern_t e;
    return wasmtime_instance_export_get(inst->ctx, &inst->instance, name, strlen(name), &e) &&
           e.kind == WASMTIME_EXTERN_FUNC;
}

/* The one memory a snapshot captures: the module's only memory, which it must export. */
static shoal_status_t find_memory(shoal_instance_t *inst, const shoal_module_t *m, bool *present, wasmtime_memory_t *mem)
{
    *present = false;
    if (m->info.imported_memories)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "snapshot: the module imports its memory; only a memory it defines is captured");
    if (m->info.memories > 1)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "snapshot: the module defines %u memories; only one is supported",
                          m->info.memories);
    if (m->info.memories == 0) return SHOAL_OK;
    char *name;
    size_t nlen;
    wasmtime_extern_t e;
    for (size_t i = 0; wasmtime_instance_export_nth(inst->ctx, &inst->instance, i, &name, &nlen, &e); i++) {
        if (e.kind == WASMTIME_EXTERN_MEMORY) {
            *mem = e.of.memory;
            *present = true;
            return SHOAL_OK;
        }
    }
    return shoal_fail(SHOAL_E_UNSUPPORTED, "snapshot: the module does not export its memory, so it cannot be read");
}

/* ---- writing ---- */

typedef struct wr {
    FILE *f;
    uint32_t crc;
    uint64_t n;
    bool err;
} wr_t;

static void put(wr_t *w, const void *p, size_t n)
{
    if (w->err || !n) return;
    if (fwrite(p, 1, n, w->f) != n) w->err = true;
    w->crc = shoal_crc32c(w->crc, p, n);
    w->n += n;
}
static void put_u16(wr_t *w, uint16_t v) { uint8_t b[2] = {(uint8_t)v, (uint8_t)(v >> 8)}; put(w, b, 2); }
static void put_u32(wr_t *w, uint32_t v)
{
    uint8_t b[4];
    for (int i = 0; i < 4; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 4);
}
static void put_u64(wr_t *w, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(v >> (8 * i));
    put(w, b, 8);
}
static void put_section(wr_t *w, uint32_t type, uint64_t len)
{
    put_u32(w, type);
    put_u32(w, 0);
    put_u64(w, len);
}

static bool page_zero(const uint8_t *p, size_t n)
{
    const uint64_t *q = (const uint64_t *)p; /* pages are 4 KiB aligned within the memory */
    for (size_t i = 0; i < n / 8; i++)
        if (q[i]) return false;
    return true;
}

typedef struct run {
    uint64_t off, len;
} run_t;

/* Non-zero pages of [base, base+size), coalesced into runs. */
static shoal_status_t memory_runs(const uint8_t *base, size_t size, run_t **out, uint32_t *nout, uint64_t *bytes)
{
    run_t *runs = NULL;
    size_t n = 0, cap = 0;
    *bytes = 0;
    for (size_t off = 0; off < size; off += SNAP_PAGE) {
        size_t len = size - off < SNAP_PAGE ? size - off : SNAP_PAGE;
        if (page_zero(base + off, len)) continue;
        if (n && runs[n - 1].off + runs[n - 1].len == off) {
            runs[n - 1].len += len;
        } else {
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                run_t *nr = realloc(runs, cap * sizeof *nr);
                if (!nr) {
                    free(runs);
                    return shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
                }
                runs = nr;
            }
            runs[n++] = (run_t){off, len};
        }
        *bytes += len;
    }
    *out = runs;
    *nout = (uint32_t)n;
    return SHOAL_OK;
}

typedef struct gsave {
    char *name;
    uint8_t kind, how;
    uint8_t value[16];
} gsave_t;

/* Every exported mutable global, plus __stack_pointer through the guest's accessor when the
 * module keeps it unexported. Refuses state it cannot reach. */
static shoal_status_t collect_globals(shoal_instance_t *inst, const shoal_module_t *m, gsave_t **out, uint32_t *nout)
{
    const shoal_modinfo_t *mi = &m->info;
    if (!mi->scanned) return shoal_fail(SHOAL_E_UNSUPPORTED, "snapshot: could not read the module's global section");
    bool accessor = has_func(inst, SP_GET) && has_func(inst, SP_SET);
    uint32_t reachable = accessor ? 1 : 0;
    if (mi->hidden_mutable > reachable) {
        if (mi->hidden_mutable == 1 && mi->hidden_stack_pointer)
            return shoal_fail(SHOAL_E_UNSUPPORTED,
                              "snapshot: the module keeps __stack_pointer unexported and has no " SP_GET "/" SP_SET
                              " accessors; build the actor with guests/include/shoal_actor.h, or link with "
                              "-mmutable-globals -Wl,--export=__stack_pointer");
        return shoal_fail(SHOAL_E_UNSUPPORTED,
                          "snapshot: the module has %u mutable global(s) it does not export (e.g. %s); their values "
                          "cannot be read through the C API, so the instance cannot be captured exactly",
                          mi->hidden_mutable, mi->hidden_name[0] ? mi->hidden_name : "__stack_pointer");
    }
    gsave_t *g = NULL;
    uint32_t n = 0, cap = 0;
    shoal_status_t st = SHOAL_OK;
    char *name;
    size_t nlen;
    wasmtime_extern_t e;
    for (size_t i = 0; st == SHOAL_OK && wasmtime_instance_export_nth(inst->ctx, &inst->instance, i, &name, &nlen, &e);
         i++) {
        if (e.kind != WASMTIME_EXTERN_GLOBAL) continue;
        wasm_globaltype_t *gt = wasmtime_global_type(inst->ctx, &e.of.global);
        bool mut = wasm_globaltype_mutability(gt) == 1;
        wasm_globaltype_delete(gt);
        if (!mut) continue; /* fixed by the module, which the header pins */
        wasmtime_val_t v;
        wasmtime_global_get(inst->ctx, &e.of.global, &v);
        if (v.kind > WASMTIME_V128) {
            st = shoal_fail(SHOAL_E_UNSUPPORTED, "snapshot: mutable global \"%.*s\" holds a reference, which cannot be saved",
                            (int)nlen, name);
            break;
        }
        if (nlen > 65535) {
            st = shoal_fail(SHOAL_E_UNSUPPORTED, "snapshot: a global's export name is longer than 65535 bytes");
            break;
        }
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            gsave_t *ng = realloc(g, cap * sizeof *ng);
            if (!ng) {
                st = shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
                break;
            }
            g = ng;
        }
        memset(&g[n], 0, sizeof g[n]);
        g[n].name = strndup(name, nlen);
        g[n].kind = v.kind;
        g[n].how = SNAP_GLOBAL_EXPORT;
        memcpy(g[n].value, &v.of, 16);
        if (!g[n].name) st = shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
        n++;
    }
    if (st == SHOAL_OK && mi->hidden_mutable == 1 && accessor) {
        int32_t sp = 0;
        st = shoal_instance_call_i32(inst, SP_GET, NULL, 0, &sp, 1);
        if (st == SHOAL_OK && n == cap) {
            gsave_t *ng = realloc(g, (cap + 1) * sizeof *ng);
            if (!ng) st = shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
            else g = ng;
        }
        if (st == SHOAL_OK) {
            memset(&g[n], 0, sizeof g[n]);
            g[n].name = strdup("__stack_pointer");
            g[n].kind = WASMTIME_I32;
            g[n].how = SNAP_GLOBAL_SP_ACCESSOR;
            memcpy(g[n].value, &sp, 4);
            n++;
        }
    }
    if (st != SHOAL_OK) {
        for (uint32_t i = 0; i < n; i++) free(g[i].name);
        free(g);
        return st;
    }
    *out = g;
    *nout = n;
    return SHOAL_OK;
}

typedef struct esave {
    int slot;
    const char *name;
    uint8_t *blob;
    size_t len;
} esave_t;

shoal_status_t shoal_instance_snapshot_save(shoal_instance_t *inst, const shoal_module_t *m, const char *path)
{
    if (!inst || !m || !path) return shoal_fail(SHOAL_E_INVALID, "snapshot: NULL argument");
    /* Gather everything first: nothing is written unless the whole state can be captured. */
    bool has_mem;
    wasmtime_memory_t mem;
    shoal_status_t st = find_memory(inst, m, &has_mem, &mem);
    if (st != SHOAL_OK) return st;
    gsave_t *g = NULL;
    uint32_t ng = 0;
    st = collect_globals(inst, m, &g, &ng);
    if (st != SHOAL_OK) return st;
    esave_t ex[SHOAL_EXT_COUNT];
    int nex = 0;
    for (int i = 0; st == SHOAL_OK && i < SHOAL_EXT_COUNT; i++) {
        if (!inst->ext[i]) continue;
        const shoal_ext_ops_t *ops = inst->ext_ops[i];
        if (!ops || !ops->save) {
            st = shoal_fail(SHOAL_E_UNSUPPORTED, "snapshot: the instance holds %s state that cannot be snapshotted",
                            ops && ops->name ? ops->name : "unnamed layer");
            break;
        }
        /* A layer whose state this process saves can restore it here too (fork, :load). */
        if (ops->load && !ext_lookup(i)) shoal_snapshot_register_ext(i, ops);
        ex[nex] = (esave_t){i, ops->name, NULL, 0};
        st = ops->save(inst->ext[i], &ex[nex].blob, &ex[nex].len);
        if (st != SHOAL_OK) shoal_fail_wrap(st, "snapshot: saving %s state", ops->name);
        nex++;
    }
    run_t *runs = NULL;
    uint32_t nruns = 0;
    uint64_t mem_bytes = 0;
    const uint8_t *base = NULL;
    size_t mem_size = 0;
    if (st == SHOAL_OK && has_mem) {
        base = wasmtime_memory_data(inst->ctx, &mem);
        mem_size = wasmtime_memory_data_size(inst->ctx, &mem);
        st = memory_runs(base, mem_size, &runs, &nruns, &mem_bytes);
    }
    char *info = NULL;
    if (st == SHOAL_OK) {
        char when[32];
        time_t now = time(NULL);
        struct tm tmv;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
        json_t *j = json_pack("{s:s, s:s, s:s, s:i}", "producer", "shoal " SHOAL_VERSION, "created", when, "device",
                              shoal_runtime_device(inst->rt), "page_size", (int)SNAP_PAGE);
        info = j ? json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
        json_decref(j);
        if (!info) st = shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
    }
    char *tmp = NULL;
    if (st == SHOAL_OK && asprintf(&tmp, "%s.tmp", path) < 0) {
        tmp = NULL;
        st = shoal_fail(SHOAL_E_NOMEM, "snapshot: out of memory");
    }
    FILE *f = NULL;
    if (st == SHOAL_OK && !(f = fopen(tmp, "wb"))) st = shoal_fail(SHOAL_E_IO, "snapshot: %s: %s", tmp, strerror(errno));
    if (st == SHOAL_OK) {
        uint32_t nsec = 1 + (has_mem ? 1 : 0) + 1 + (uint32_t)nex;
        uint64_t glob_len = 4;
        for (uint32_t i = 0; i < ng; i++) glob_len += 2 + strlen(g[i].name) + 2 + 16;
        uint64_t mem_len = has_mem ? 16 + 16ull * nruns + mem_bytes : 0;
        uint64_t total = SNAP_HEADER_SIZE + SNAP_SECTION_HEADER + strlen(info) + SNAP_SECTION_HEADER + glob_len +
                         SNAP_TRAILER_SIZE;
        if (has_mem) total += SNAP_SECTION_HEADER + mem_len;
        for (int i = 0; i < nex; i++) total += SNAP_SECTION_HEADER + 2 + strlen(ex[i].name) + 4 + ex[i].len;

        wr_t w = {f, 0, 0, false};
        put(&w, SNAP_MAGIC, 8);
        put_u32(&w, SNAP_VERSION);
        put_u32(&w, SNAP_HEADER_SIZE);
        put_u64(&w, total);
        put(&w, m->sha256, 32);
        put_u32(&w, nsec);
        put_u32(&w, 0);

        put_section(&w, SNAP_SEC_INFO, strlen(info));
        put(&w, info, strlen(info));
        if (has_mem) {
            put_section(&w, SNAP_SEC_MEMORY, mem_len);
            put_u64(&w, mem_size);
            put_u32(&w, SNAP_PAGE);
            put_u32(&w, nruns);
            for (uint32_t i = 0; i < nruns; i++) put_u64(&w, runs[i].off), put_u64(&w, runs[i].len);
            for (uint32_t i = 0; i < nruns; i++) put(&w, base + runs[i].off, runs[i].len);
        }
        put_section(&w, SNAP_SEC_GLOBALS, glob_len);
        put_u32(&w, ng);
        for (uint32_t i = 0; i < ng; i++) {
            put_u16(&w, (uint16_t)strlen(g[i].name));
            put(&w, g[i].name, strlen(g[i].name));
            put(&w, &g[i].kind, 1);
            put(&w, &g[i].how, 1);
            put(&w, g[i].value, 16);
        }
        for (int i = 0; i < nex; i++) {
            put_section(&w, SNAP_SEC_EXT, 2 + strlen(ex[i].name) + 4 + ex[i].len);
            put_u16(&w, (uint16_t)strlen(ex[i].name));
            put(&w, ex[i].name, strlen(ex[i].name));
            put_u32(&w, (uint32_t)ex[i].slot);
            put(&w, ex[i].blob, ex[i].len);
        }
        uint32_t crc = w.crc;
        put_u32(&w, crc);
        if (fclose(f) != 0) w.err = true;
        f = NULL;
        if (w.err) st = shoal_fail(SHOAL_E_IO, "snapshot: writing %s: %s", tmp, strerror(errno ? errno : EIO));
        else if (w.n != total) st = shoal_fail(SHOAL_E_IO, "snapshot: internal size mismatch (%llu vs %llu)",
                                               (unsigned long long)w.n, (unsigned long long)total);
        /* The rename makes the new snapshot appear whole or not at all. */
        if (st == SHOAL_OK && rename(tmp, path) != 0)
            st = shoal_fail(SHOAL_E_IO, "snapshot: %s: %s", path, strerror(errno));
        if (st != SHOAL_OK) unlink(tmp);
    }
    free(tmp);
    free(info);
    free(runs);
    for (int i = 0; i < nex; i++) free(ex[i].blob);
    for (uint32_t i = 0; i < ng; i++) free(g[i].name);
    free(g);
    return st;
}

/* ---- restoring ---- */

static shoal_status_t restore_memory(shoal_instance_t *inst, const shoal_module_t *m, const snap_view_t *v)
{
    bool has_mem;
    wasmtime_memory_t mem;
    shoal_status_t st = find_memory(inst, m, &has_mem, &mem);
    if (st != SHOAL_OK) return st;
    if (has_mem != v->has_memory)
        return shoal_fail(SHOAL_E_FORMAT, "snapshot: it %s a memory but the module %s one", v->has_memory ? "has" : "lacks",
                          has_mem ? "has" : "lacks");
    if (!has_mem) return SHOAL_OK;
    size_t cur = wasmtime_memory_data_size(inst->ctx, &mem);
    if (cur > v->mem_size)
        return shoal_fail(SHOAL_E_FORMAT, "snapshot: memory of %llu bytes is smaller than the module's initial %zu",
                          (unsigned long long)v->mem_size, cur);
    if (cur < v->mem_size) {
        uint64_t prev;
        wasmtime_error_t *err = wasmtime_memory_grow(inst->ctx, &mem, (v->mem_size - cur) / 65536, &prev);
        if (err) return shoal_wt_error(err, SHOAL_E_LIMIT, "snapshot: growing the memory to its saved size");
    }
    uint8_t *base = wasmtime_memory_data(inst->ctx, &mem);
    if (wasmtime_memory_data_size(inst->ctx, &mem) != v->mem_size)
        return shoal_fail(SHOAL_E_LIMIT, "snapshot: the memory did not grow to %llu bytes", (unsigned long long)v->mem_size);
    /* Pages absent from the file are zero; a fresh instance has its data segments there. Only
     * pages that are not already zero are written, so untouched memory stays unpopulated. */
    uint64_t at = 0;
    for (uint32_t i = 0; i <= v->nruns; i++) {
        uint64_t end = i < v->nruns ? snap_run_off(v, i) : v->mem_size;
        for (uint64_t p = at; p < end; p += SNAP_PAGE) {
            size_t len = end - p < SNAP_PAGE ? end - p : SNAP_PAGE;
            if (!page_zero(base + p, len)) memset(base + p, 0, len);
        }
        if (i == v->nruns) break;
        memcpy(base + snap_run_off(v, i), snap_run_data(v, i), snap_run_len(v, i));
        at = snap_run_off(v, i) + snap_run_len(v, i);
    }
    return SHOAL_OK;
}

static shoal_status_t restore_globals(shoal_instance_t *inst, const snap_view_t *v)
{
    snap_global_t g;
    for (uint32_t i = 0; i < v->nglobals; i++) {
        snap_global_at(v, i, &g);
        if (g.how == SNAP_GLOBAL_SP_ACCESSOR) {
            int32_t sp;
            memcpy(&sp, g.value, 4);
            shoal_status_t st = shoal_instance_call_i32(inst, SP_SET, &sp, 1, NULL, 0);
            if (st != SHOAL_OK) return shoal_fail_wrap(st, "snapshot: restoring __stack_pointer");
            continue;
        }
        wasmtime_extern_t e;
        if (!wasmtime_instance_export_get(inst->ctx, &inst->instance, g.name, g.name_len, &e) ||
            e.kind != WASMTIME_EXTERN_GLOBAL)
            return shoal_fail(SHOAL_E_FORMAT, "snapshot: the module exports no global \"%.*s\"", (int)g.name_len, g.name);
        wasmtime_val_t cur;
        wasmtime_global_get(inst->ctx, &e.of.global, &cur);
        if (cur.kind != g.kind)
            return shoal_fail(SHOAL_E_FORMAT, "snapshot: global \"%.*s\" has another type in the module", (int)g.name_len,
                              g.name);
        wasmtime_val_t val;
        memset(&val, 0, sizeof val);
        val.kind = g.kind;
        memcpy(&val.of, g.value, 16);
        wasmtime_error_t *err = wasmtime_global_set(inst->ctx, &e.of.global, &val);
        if (err) return shoal_wt_error(err, SHOAL_E_FORMAT, "snapshot: setting a global");
    }
    return SHOAL_OK;
}

static shoal_status_t restore_ext(shoal_instance_t *inst, const snap_view_t *v, shoal_restore_src_t *src)
{
    snap_ext_t x;
    for (uint32_t i = 0; i < v->next; i++) {
        snap_ext_at(v, i, &x);
        const shoal_ext_ops_t *ops = ext_lookup((int)x.slot);
        shoal_status_t st = ops->load(inst, x.blob, x.blob_len, src);
        if (st != SHOAL_OK) return shoal_fail_wrap(st, "snapshot: restoring %s state", ops->name);
        if (!inst->ext_ops[x.slot]) inst->ext_ops[x.slot] = ops;
    }
    return SHOAL_OK;
}

/* Every ext section must name a layer this process has registered, in the same slot. */
static shoal_status_t check_ext_registered(const snap_view_t *v)
{
    snap_ext_t x;
    for (uint32_t i = 0; i < v->next; i++) {
        snap_ext_at(v, i, &x);
        const shoal_ext_ops_t *ops = ext_lookup((int)x.slot);
        if (!ops || strlen(ops->name) != x.name_len || memcmp(ops->name, x.name, x.name_len) != 0 || !ops->load)
            return shoal_fail(SHOAL_E_UNSUPPORTED,
                              "snapshot: it holds \"%.*s\" state (slot %u), which this process cannot restore "
                              "(that layer is not built in or not initialised)",
                              (int)x.name_len, x.name, x.slot);
    }
    return SHOAL_OK;
}

shoal_status_t shoal_instance_snapshot_restore(shoal_runtime_t *rt, shoal_module_t *m, const shoal_instance_config_t *cfg,
                                               const char *path, shoal_instance_t **out)
{
    if (!rt || !m || !path || !out) return shoal_fail(SHOAL_E_INVALID, "snapshot: NULL argument");
    /* The file's checksum is verified last, combined with the CRCs the layers take while they
     * restore their large parts (the KV rows): one pass over the bytes, not two. Until then the
     * new instance is not handed out, and a mismatch outranks any other fault (the damage is the
     * cause). Every read before it stays inside the mapping. */
    snap_view_t v;
    shoal_status_t st = snap_view_open_unverified(path, &v);
    if (st != SHOAL_OK) return st;
    shoal_restore_src_t src = {v.data, v.size, v.fd, NULL, 0, 0};
    shoal_instance_t *inst = NULL;
    const bool same_module = memcmp(v.module_sha256, m->sha256, 32) == 0;
    if (!same_module) {
        char want[65], have[65];
        shoal_hex(v.module_sha256, 32, want);
        shoal_hex(m->sha256, 32, have);
        st = shoal_fail(SHOAL_E_FORMAT, "snapshot %s: taken from another module (module sha256 %s, this one is %s)", path,
                        want, have);
    }
    if (st == SHOAL_OK) st = check_ext_registered(&v);
    if (st == SHOAL_OK) st = shoal_instance_new(rt, m, cfg, &inst);
    if (st == SHOAL_OK) st = restore_memory(inst, m, &v);
    if (st == SHOAL_OK) st = restore_globals(inst, &v);
    if (st == SHOAL_OK) st = restore_ext(inst, &v, &src);
    /* the messages of faults after the module check lack the path (a passing check leaves them) */
    if (st != SHOAL_OK && same_module) shoal_fail_wrap(st, "%s", path);
    if (snap_view_verify(&v, &src, path) != SHOAL_OK) st = SHOAL_E_FORMAT;
    free(src.parts);
    snap_view_close(&v);
    if (st != SHOAL_OK) {
        shoal_instance_delete(inst);
        return st;
    }
    *out = inst;
    return SHOAL_OK;
}
