/* wasi_nn.c — the `wasi_ephemeral_nn` import module (wasi-nn preview 1) with the semantics of
 * WasmEdge's GGML backend, so guests built for it run unmodified.
 *
 * Handles are small integers into per-instance tables (64 graphs, 64 contexts; freed slots
 * are reused). Nothing a guest passes is trusted: every pointer and length is checked against
 * the memory's current size (overflow-safe) and a bad one returns invalid_argument, as WasmEdge
 * does, without touching a byte. The prompt is tokenised where it lies in guest memory and
 * outputs are written straight into the guest's buffer: no staging copies. The reason for any
 * error is left for shoal.last_error (and printed when the graph has enable-log). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/nn_blob.h"
#include "nn/nn_exec.h"
#include "nn/nn_snap.h"
#include "nn/nn_model.h"
#include "nn/wasi_nn_abi.h"
#include "runtime/hostcall.h"
#include "snapshot/snapshot.h"

#define MAX_GRAPHS 64
#define MAX_CTXS 64
#define MAX_BUILDERS 16

typedef struct nn_graph {
    bool live;
    const shoal_nn_model_t *model;
    nn_config_t cfg;
} nn_graph;

typedef struct nn_state {
    nn_graph graphs[MAX_GRAPHS];
    nn_exec_t *ctxs[MAX_CTXS];
} nn_state;

static const shoal_ext_ops_t k_nn_ops;

static void state_free(void *p)
{
    nn_state *s = p;
    for (int i = 0; i < MAX_CTXS; i++) nn_exec_delete(s->ctxs[i]);
    free(s);
}

/* Snapshot section "nn": every live graph (model reference, options) and context (model
 * reference, nn_exec record), each under its handle so a restored guest's handles still mean
 * the same. A model reference is its name and GGUF SHA-256: the restoring runtime must preload
 * the same file under the same name. */
#define NN_STATE_MAGIC NN_SNAP_MAGIC('N', 'N', 'S')

static shoal_status_t state_save(void *p, uint8_t **buf, size_t *len)
{
    nn_state *s = p;
    nn_writer w;
    nn_w_init(&w, buf, len);
    nn_w_u32(&w, NN_STATE_MAGIC);
    uint32_t ng = 0, nc = 0;
    for (int i = 0; i < MAX_GRAPHS; i++) ng += s->graphs[i].live;
    for (int i = 0; i < MAX_CTXS; i++) nc += s->ctxs[i] != NULL;
    nn_w_u32(&w, ng);
    for (uint32_t i = 0; i < MAX_GRAPHS; i++) {
        if (!s->graphs[i].live) continue;
        nn_w_u32(&w, i);
        nn_snap_model_save(&w, s->graphs[i].model);
        nn_snap_config_save(&w, &s->graphs[i].cfg);
    }
    nn_w_u32(&w, nc);
    for (uint32_t i = 0; i < MAX_CTXS; i++) {
        if (!s->ctxs[i]) continue;
        nn_w_u32(&w, i);
        nn_snap_model_save(&w, nn_exec_model(s->ctxs[i]));
        nn_exec_save(s->ctxs[i], &w);
    }
    return w.ok ? SHOAL_OK : shoal_fail(SHOAL_E_NOMEM, "nn snapshot: out of memory");
}

static shoal_status_t state_load(shoal_instance_t *inst, const uint8_t *buf, size_t len, struct shoal_restore_src *src)
{
    nn_reader r;
    nn_r_init(&r, buf, len);
    r.src = src;
    shoal_status_t st = nn_snap_magic_load(&r, NN_STATE_MAGIC, "nn snapshot");
    if (st != SHOAL_OK) return st;
    nn_state *s = calloc(1, sizeof *s);
    if (!s) return shoal_fail(SHOAL_E_NOMEM, "nn snapshot: out of memory");
    uint32_t ng = nn_r_u32(&r);
    for (uint32_t k = 0; st == SHOAL_OK && k < ng; k++) {
        uint32_t h = nn_r_u32(&r);
        const shoal_nn_model_t *m = nn_snap_model_load(&r, inst->rt, "nn snapshot", &st);
        if (!m) break;
        if (h >= MAX_GRAPHS || s->graphs[h].live) st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: bad graph handle %u", h);
        else if (!(st = nn_snap_config_load(&r, &s->graphs[h].cfg))) s->graphs[h].live = true, s->graphs[h].model = m;
    }
    uint32_t nc = st ? 0 : nn_r_u32(&r);
    for (uint32_t k = 0; st == SHOAL_OK && k < nc; k++) {
        uint32_t h = nn_r_u32(&r);
        const shoal_nn_model_t *m = nn_snap_model_load(&r, inst->rt, "nn snapshot", &st);
        if (!m) break;
        if (h >= MAX_CTXS || s->ctxs[h]) st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: bad context handle %u", h);
        else st = nn_exec_load(inst->rt, m, &r, &s->ctxs[h]);
    }
    if (st == SHOAL_OK && (!r.ok || r.p != r.end)) st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: section length mismatch");
    if (st != SHOAL_OK) {
        state_free(s);
        return st;
    }
    if (inst->ext[SHOAL_EXT_NN] && inst->ext_ops[SHOAL_EXT_NN]) inst->ext_ops[SHOAL_EXT_NN]->free(inst->ext[SHOAL_EXT_NN]);
    inst->ext[SHOAL_EXT_NN] = s;
    inst->ext_ops[SHOAL_EXT_NN] = &k_nn_ops;
    return SHOAL_OK;
}

static const shoal_ext_ops_t k_nn_ops = {"nn", state_free, state_save, state_load};

/* One call's view of the caller: its instance, memory and wasi-nn state. */
typedef struct call {
    shoal_instance_t *inst;
    shoal_guest_mem_t mem;
    nn_state *st;
} call;

static int begin(wasmtime_caller_t *caller, const char *fn, call *c)
{
    c->inst = shoal_caller_instance(caller);
    wasmtime_extern_t ext;
    if (!wasmtime_caller_export_get(caller, "memory", 6, &ext) || ext.kind != WASMTIME_EXTERN_MEMORY) {
        shoal_fail(SHOAL_E_INVALID, "wasi-nn %s: the calling module exports no memory named \"memory\"", fn);
        return NN_ERR_MISSING_MEMORY;
    }
    wasmtime_context_t *ctx = wasmtime_caller_context(caller);
    c->mem.base = wasmtime_memory_data(ctx, &ext.of.memory);
    c->mem.size = wasmtime_memory_data_size(ctx, &ext.of.memory);
    c->st = c->inst->ext[SHOAL_EXT_NN];
    if (!c->st) {
        if (!(c->st = calloc(1, sizeof *c->st))) {
            shoal_fail(SHOAL_E_NOMEM, "wasi-nn %s: out of memory", fn);
            return NN_ERR_RUNTIME_ERROR;
        }
        c->inst->ext[SHOAL_EXT_NN] = c->st;
        c->inst->ext_ops[SHOAL_EXT_NN] = &k_nn_ops;
    }
    return NN_ERR_SUCCESS;
}

/* [off, off+len) inside guest memory, computed without overflow; NULL (and a message) if not. */
static uint8_t *range(const call *c, const char *fn, const char *what, uint32_t off, uint64_t len)
{
    if ((uint64_t)off > c->mem.size || len > c->mem.size - off) {
        shoal_fail(SHOAL_E_BOUNDS, "wasi-nn %s: %s [%#x, +%llu) lies outside guest memory (%zu bytes)", fn, what, off,
                   (unsigned long long)len, c->mem.size);
        return NULL;
    }
    return c->mem.base + off;
}

static uint32_t rd32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4); /* unaligned-safe; wasm and the host are both little-endian */
    return v;
}

static int err(int code, shoal_status_t st, const char *fmt, ...) SHOAL_PRINTF(3, 4);
static int err(int code, shoal_status_t st, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    shoal_fail(st, "wasi-nn %s", msg);
    return code;
}

static nn_exec_t *ctx_of(const call *c, uint32_t h, const char *fn)
{
    if (h < MAX_CTXS && c->st->ctxs[h]) return c->st->ctxs[h];
    err(0, SHOAL_E_INVALID, "%s: no execution context with handle %u", fn, h);
    return NULL;
}

static wasm_trap_t *ret(wasmtime_val_t *results, int code)
{
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = code;
    return NULL;
}

#define HOST(name)                                                                                                     \
    static wasm_trap_t *name(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,       \
                             wasmtime_val_t *results, size_t nresults)
#define ARG(i) ((uint32_t)args[i].of.i32)
#define BEGIN(fn)                                                                                                      \
    call c;                                                                                                            \
    int rc_ = begin(caller, fn, &c);                                                                                   \
    if (rc_) return ret(results, rc_)

/* ---- graphs ---- */

/* Stores a graph for `model` with options `cfg_json` (may be NULL) and writes its handle. */
/* target: wasi-nn's execution target (CPU, GPU or AUTO; TPU is refused by the caller). */
static int new_graph(call *c, const char *fn, const shoal_nn_model_t *model, uint32_t target, const uint8_t *cfg_json,
                     size_t cfg_len, uint8_t *handle_out)
{
    int slot = -1;
    for (int i = 0; i < MAX_GRAPHS && slot < 0; i++)
        if (!c->st->graphs[i].live) slot = i;
    if (slot < 0) return err(NN_ERR_BUSY, SHOAL_E_LIMIT, "%s: all %d graph handles are in use (unload some)", fn, MAX_GRAPHS);
    nn_config_t cfg;
    nn_config_defaults(&cfg);
    cfg.target = target == NN_TARGET_CPU ? SHOAL_DEVICE_CPU : target == NN_TARGET_GPU ? SHOAL_DEVICE_CUDA : SHOAL_DEVICE_AUTO;
    cfg.target_strict = target == NN_TARGET_GPU;
    if (cfg_json) {
        int r = nn_config_apply(&cfg, (const char *)cfg_json, cfg_len);
        if (r) return r;
    }
    c->st->graphs[slot] = (nn_graph){.live = true, .model = model, .cfg = cfg};
    uint32_t h = (uint32_t)slot;
    memcpy(handle_out, &h, 4);
    return NN_ERR_SUCCESS;
}

static int by_name(call *c, const char *fn, uint32_t name_ptr, uint32_t name_len, const uint8_t *cfg, size_t cfg_len,
                   uint32_t out_ptr)
{
    const uint8_t *name = range(c, fn, "model name", name_ptr, name_len);
    uint8_t *out = range(c, fn, "graph handle out-pointer", out_ptr, 4);
    if (!name || !out) return NN_ERR_INVALID_ARGUMENT;
    const shoal_nn_model_t *m = shoal_nn_model_find(c->inst->rt, (const char *)name, name_len);
    if (!m)
        return err(NN_ERR_NOT_FOUND, SHOAL_E_NOT_FOUND, "%s: no model named \"%.*s\" (preload it with --nn-preload %.*s:GGML:AUTO:FILE.gguf)",
                   fn, (int)(name_len > 64 ? 64 : name_len), (const char *)name, (int)(name_len > 64 ? 64 : name_len),
                   (const char *)name);
    return new_graph(c, fn, m, NN_TARGET_AUTO, cfg, cfg_len, out);
}

HOST(h_load_by_name)
{
    BEGIN("load_by_name");
    return ret(results, by_name(&c, "load_by_name", ARG(0), ARG(1), NULL, 0, ARG(2)));
}

HOST(h_load_by_name_with_config)
{
    static const char *fn = "load_by_name_with_config";
    BEGIN(fn);
    const uint8_t *cfg = range(&c, fn, "config", ARG(2), ARG(3));
    if (!cfg) return ret(results, NN_ERR_INVALID_ARGUMENT);
    return ret(results, by_name(&c, fn, ARG(0), ARG(1), cfg, ARG(3), ARG(4)));
}

/* load(builders, n, encoding, target, *graph). GGML builders: [0] names the model
 * ("preload:NAME" as WasmEdge writes it, or NAME), [1] optionally holds the JSON config.
 * Weights are never taken from guest memory (they would be bounded by and copied out of a
 * 32-bit sandbox): raw GGUF bytes give unsupported_operation. */
HOST(h_load)
{
    static const char *fn = "load";
    BEGIN(fn);
    uint32_t n = ARG(1), enc = ARG(2), target = ARG(3);
    const uint8_t *b = range(&c, fn, "graph builder array", ARG(0), (uint64_t)n * NN_BUILDER_SIZE);
    uint8_t *out = range(&c, fn, "graph handle out-pointer", ARG(4), 4);
    if (!b || !out) return ret(results, NN_ERR_INVALID_ARGUMENT);
    if (enc != NN_ENCODING_GGML && enc != NN_ENCODING_AUTODETECT)
        return ret(results, err(NN_ERR_INVALID_ENCODING, SHOAL_E_UNSUPPORTED,
                                "%s: encoding %u is not served here (GGML = 6, autodetect = 5)", fn, enc));
    if (target > NN_TARGET_AUTO)
        return ret(results, err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "%s: unknown execution target %u", fn, target));
    if (target == NN_TARGET_TPU)
        return ret(results, err(NN_ERR_UNSUPPORTED_OPERATION, SHOAL_E_UNSUPPORTED,
                                "%s: execution target TPU is not served here (CPU = 0, GPU = 1, AUTO = 3)", fn));
    if (n < 1 || n > MAX_BUILDERS)
        return ret(results, err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "%s: %u graph builders (want 1 or 2)", fn, n));
    const uint8_t *part[2] = {NULL, NULL};
    uint32_t len[2] = {0, 0};
    for (uint32_t i = 0; i < n && i < 2; i++) {
        len[i] = rd32(b + 8 * i + 4);
        if (!(part[i] = range(&c, fn, i ? "builder 1 (config)" : "builder 0 (model)", rd32(b + 8 * i), len[i])))
            return ret(results, NN_ERR_INVALID_ARGUMENT);
    }
    const char *name = (const char *)part[0];
    size_t name_len = len[0];
    if (name_len >= 8 && !memcmp(name, "preload:", 8)) name += 8, name_len -= 8;
    const shoal_nn_model_t *m = shoal_nn_model_find(c.inst->rt, name, name_len);
    if (!m) {
        if (len[0] >= 4 && !memcmp(part[0], "GGUF", 4))
            return ret(results, err(NN_ERR_UNSUPPORTED_OPERATION, SHOAL_E_UNSUPPORTED,
                                    "%s: weights from guest memory are not supported; preload the model with "
                                    "--nn-preload NAME:GGML:AUTO:FILE.gguf and load it by name",
                                    fn));
        return ret(results, err(NN_ERR_NOT_FOUND, SHOAL_E_NOT_FOUND, "%s: builder 0 names no preloaded model", fn));
    }
    return ret(results, new_graph(&c, fn, m, target, part[1], len[1], out));
}

HOST(h_unload)
{
    BEGIN("unload");
    uint32_t g = ARG(0);
    if (g >= MAX_GRAPHS || !c.st->graphs[g].live)
        return ret(results, err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "unload: no graph with handle %u", g));
    /* Contexts made from it keep working: the model belongs to the runtime. */
    c.st->graphs[g].live = false;
    return ret(results, NN_ERR_SUCCESS);
}

/* ---- execution contexts ---- */

HOST(h_init_execution_context)
{
    static const char *fn = "init_execution_context";
    BEGIN(fn);
    uint32_t g = ARG(0);
    uint8_t *out = range(&c, fn, "context handle out-pointer", ARG(1), 4);
    if (!out) return ret(results, NN_ERR_INVALID_ARGUMENT);
    if (g >= MAX_GRAPHS || !c.st->graphs[g].live)
        return ret(results, err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "%s: no graph with handle %u", fn, g));
    int slot = -1;
    for (int i = 0; i < MAX_CTXS && slot < 0; i++)
        if (!c.st->ctxs[i]) slot = i;
    if (slot < 0)
        return ret(results, err(NN_ERR_BUSY, SHOAL_E_LIMIT, "%s: all %d context handles are in use", fn, MAX_CTXS));
    int r = nn_exec_new(c.inst->rt, c.st->graphs[g].model, &c.st->graphs[g].cfg, &c.st->ctxs[slot]);
    if (r) return ret(results, r);
    uint32_t h = (uint32_t)slot;
    memcpy(out, &h, 4);
    return ret(results, NN_ERR_SUCCESS);
}

HOST(h_finalize_execution_context)
{
    BEGIN("finalize_execution_context");
    nn_exec_t *e = ctx_of(&c, ARG(0), "finalize_execution_context");
    if (!e) return ret(results, NN_ERR_INVALID_ARGUMENT);
    nn_exec_delete(e);
    c.st->ctxs[ARG(0)] = NULL;
    return ret(results, NN_ERR_SUCCESS);
}

/* set_input(ctx, index, tensor*): index 0 is the prompt (bytes), index 1 JSON options. */
HOST(h_set_input)
{
    static const char *fn = "set_input";
    BEGIN(fn);
    nn_exec_t *e = ctx_of(&c, ARG(0), fn);
    if (!e) return ret(results, NN_ERR_INVALID_ARGUMENT);
    uint32_t index = ARG(1);
    const uint8_t *rec = range(&c, fn, "tensor record", ARG(2), NN_TENSOR_RECORD_SIZE);
    if (!rec) return ret(results, NN_ERR_INVALID_ARGUMENT);
    uint32_t dims_ptr = rd32(rec), dims_len = rd32(rec + 4), data_ptr = rd32(rec + 12), data_len = rd32(rec + 16);
    uint8_t type = rec[8]; /* a u8 followed by 3 bytes of padding that bindings need not clear */
    if (dims_len > NN_MAX_DIMS)
        return ret(results, err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "%s: tensor has %u dimensions (at most %d)",
                                fn, dims_len, NN_MAX_DIMS));
    if (!range(&c, fn, "tensor dimensions", dims_ptr, (uint64_t)dims_len * 4)) return ret(results, NN_ERR_INVALID_ARGUMENT);
    if (type > NN_TENSOR_TYPE_MAX)
        return ret(results, err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "%s: unknown tensor type %u", fn, type));
    const uint8_t *data = range(&c, fn, "tensor data", data_ptr, data_len);
    if (!data) return ret(results, NN_ERR_INVALID_ARGUMENT);
    /* GGML graphs read inputs 0 and 1 as bytes whatever type is declared (DESIGN.md). */
    if (index == 0) return ret(results, nn_exec_set_prompt(e, (const char *)data, data_len));
    if (index == 1) return ret(results, nn_config_apply(nn_exec_config(e), (const char *)data, data_len));
    return ret(results, err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID,
                            "%s: input index %u (0 is the prompt, 1 the JSON options)", fn, index));
}

HOST(h_compute)
{
    BEGIN("compute");
    nn_exec_t *e = ctx_of(&c, ARG(0), "compute");
    return ret(results, e ? nn_exec_compute(e) : NN_ERR_INVALID_ARGUMENT);
}

HOST(h_compute_single)
{
    BEGIN("compute_single");
    nn_exec_t *e = ctx_of(&c, ARG(0), "compute_single");
    return ret(results, e ? nn_exec_compute_single(e) : NN_ERR_INVALID_ARGUMENT);
}

HOST(h_fini_single)
{
    BEGIN("fini_single");
    nn_exec_t *e = ctx_of(&c, ARG(0), "fini_single");
    return ret(results, e ? nn_exec_fini_single(e) : NN_ERR_INVALID_ARGUMENT);
}

/* get_output / get_output_single (ctx, index, buf, max, *written): the text (index 0) or the
 * JSON metadata (index 1) written straight into buf. If it does not fit: too_large, nothing
 * written to buf, and *written = the size needed. */
static int output(call *c, const char *fn, const wasmtime_val_t *args, bool single)
{
    nn_exec_t *e = ctx_of(c, ARG(0), fn);
    if (!e) return NN_ERR_INVALID_ARGUMENT;
    uint32_t index = ARG(1), max = ARG(3);
    uint8_t *buf = range(c, fn, "output buffer", ARG(2), max);
    uint8_t *written = range(c, fn, "bytes-written out-pointer", ARG(4), 4);
    if (!buf || !written) return NN_ERR_INVALID_ARGUMENT;
    size_t need = 0;
    char meta[256];
    if (index == 0) {
        int r = single ? nn_exec_last_piece_size(e, &need) : nn_exec_output_size(e, &need);
        if (r) return r;
    } else if (index == 1) {
        need = nn_exec_metadata(e, meta, sizeof meta);
        if (need >= sizeof meta) return err(NN_ERR_RUNTIME_ERROR, SHOAL_E_LIMIT, "%s: metadata overflow", fn);
    } else {
        return err(NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "%s: output index %u (0 is the text, 1 the metadata)", fn,
                   index);
    }
    uint32_t w = need > UINT32_MAX ? UINT32_MAX : (uint32_t)need;
    memcpy(written, &w, 4);
    if (need > max)
        return err(NN_ERR_TOO_LARGE, SHOAL_E_LIMIT, "%s: output %u is %zu bytes; the buffer holds %u", fn, index, need, max);
    if (index == 1) memcpy(buf, meta, need); /* a few dozen bytes of JSON made here, not a copy of the output */
    else if (single) nn_exec_last_piece_write(e, buf);
    else nn_exec_output_write(e, buf);
    return NN_ERR_SUCCESS;
}

HOST(h_get_output)
{
    BEGIN("get_output");
    return ret(results, output(&c, "get_output", args, false));
}

HOST(h_get_output_single)
{
    BEGIN("get_output_single");
    return ret(results, output(&c, "get_output_single", args, true));
}

shoal_status_t shoal_host_wasi_nn_define(shoal_runtime_t *rt)
{
    static const struct {
        const char *name, *sig;
        wasmtime_func_callback_t cb;
    } fns[] = {
        {"load", "iiiii>i", h_load},
        {"load_by_name", "iii>i", h_load_by_name},
        {"load_by_name_with_config", "iiiii>i", h_load_by_name_with_config},
        {"init_execution_context", "ii>i", h_init_execution_context},
        {"set_input", "iii>i", h_set_input},
        {"compute", "i>i", h_compute},
        {"get_output", "iiiii>i", h_get_output},
        {"compute_single", "i>i", h_compute_single},
        {"get_output_single", "iiiii>i", h_get_output_single},
        {"fini_single", "i>i", h_fini_single},
        {"unload", "i>i", h_unload},
        {"finalize_execution_context", "i>i", h_finalize_execution_context},
    };
    /* A fresh process restoring a snapshot finds this layer's loader by slot. */
    shoal_status_t r = shoal_snapshot_register_ext(SHOAL_EXT_NN, &k_nn_ops);
    if (r != SHOAL_OK) return r;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        shoal_status_t s = shoal_runtime_define(rt, "wasi_ephemeral_nn", fns[i].name, fns[i].sig, fns[i].cb, NULL);
        if (s != SHOAL_OK) return s;
    }
    return SHOAL_OK;
}
