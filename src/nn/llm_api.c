/* llm_api.c — the token-level LLM functions of the `shoal` import module (llm_*): a guest
 * drives a model it names (preloaded with --nn-preload) one token batch at a time.
 *
 * Zero copy: token ids are read where they lie in guest memory and logits are written by the
 * forward pass directly into the guest's buffer (the engine's output pointer is the
 * guest's bytes; on a GPU runtime the guest's memory is registered with the device, so the
 * kernels write there); text is tokenised in place and detokenised straight into the guest's buffer.
 * The KV cache belongs to the actor (its session) and never enters guest memory.
 *
 * Conventions (as the rest of `shoal`): a bad pointer/length traps the guest with a precise
 * message; other failures return a non-zero shoal_status_t whose text shoal.last_error gives.
 * Layouts are mirrored in guests/include/shoal_guest.h. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "model/sampler.h"
#include "nn/nn_host.h"
#include "nn/nn_model.h"
#include "nn/nn_snap.h"
#include "runtime/hostcall.h"
#include "snapshot/snapshot.h"

#define MAX_SESSIONS 16

/* llm_info's record (32 bytes). */
typedef struct guest_llm_info {
    int32_t n_vocab, n_ctx, n_past, bos, eos, eot, n_layer, dim;
} guest_llm_info;
_Static_assert(sizeof(guest_llm_info) == 32, "llm_info layout");

/* llm_sampler_config's record (32 bytes). */
typedef struct guest_sampler_params {
    float temperature, top_p, min_p, repeat_penalty;
    int32_t top_k, repeat_last_n;
    uint64_t seed;
} guest_sampler_params;
_Static_assert(sizeof(guest_sampler_params) == 32, "sampler params layout");

/* llm_chat_render's message record (16 bytes): four u32, pointers into guest memory. */
#define CHAT_MSG_SIZE 16
#define MAX_CHAT_MSGS 1024

typedef struct llm_session {
    const shoal_nn_model_t *m;
    shoal_engine_t *eng; /* the session's KV cache, on the CPU or the GPU */
    shoal_sampler_t *sampler;
    /* llm_open_kv: the cache lives in the guest's linear memory at [kv_off, kv_off + kv_len) (so
     * snapshots carry it as memory); kv_len 0: the engine owns it */
    uint32_t kv_off, kv_len;
} llm_session;

typedef struct llm_state {
    llm_session *s[MAX_SESSIONS];
} llm_state;

static void session_delete(llm_session *s)
{
    if (!s) return;
    shoal_sampler_delete(s->sampler);
    shoal_engine_delete(s->eng);
    free(s);
}

static void state_free(void *p)
{
    llm_state *st = p;
    for (int i = 0; i < MAX_SESSIONS; i++) session_delete(st->s[i]);
    free(st);
}

/* Snapshot section "llm": each open session under its handle: model reference (name and GGUF
 * SHA-256), context size, the KV rows in use (a safetensors blob) and the sampler's state (the
 * guest's logits live in its own memory). */
#define LLM_STATE_MAGIC NN_SNAP_MAGIC('L', 'L', 'M')

static const shoal_ext_ops_t k_llm_ops;

static shoal_status_t state_save(void *p, uint8_t **buf, size_t *len)
{
    llm_state *st = p;
    nn_writer w;
    nn_w_init(&w, buf, len);
    nn_w_u32(&w, LLM_STATE_MAGIC);
    uint32_t n = 0;
    for (int i = 0; i < MAX_SESSIONS; i++) n += st->s[i] != NULL;
    nn_w_u32(&w, n);
    for (uint32_t i = 0; i < MAX_SESSIONS; i++) {
        llm_session *s = st->s[i];
        if (!s) continue;
        nn_w_u32(&w, i);
        nn_snap_model_save(&w, s->m);
        nn_w_u32(&w, (uint32_t)shoal_engine_n_ctx(s->eng));
        nn_w_u32(&w, s->kv_len ? 1u : 0u);
        if (s->kv_len) { /* the rows are in linear memory, which the snapshot holds already */
            nn_w_u32(&w, s->kv_off);
            nn_w_u32(&w, s->kv_len);
            nn_w_u32(&w, (uint32_t)shoal_engine_n_past(s->eng));
        } else {
            nn_snap_kv_save(&w, s->eng, s->m->sha256);
        }
        nn_snap_sampler_save(&w, s->sampler);
    }
    return w.ok ? SHOAL_OK : shoal_fail(SHOAL_E_NOMEM, "llm snapshot: out of memory");
}

static shoal_status_t state_load(shoal_instance_t *inst, const uint8_t *buf, size_t len, struct shoal_restore_src *src)
{
    nn_reader r;
    nn_r_init(&r, buf, len);
    r.src = src;
    shoal_status_t rc = nn_snap_magic_load(&r, LLM_STATE_MAGIC, "llm snapshot");
    if (rc != SHOAL_OK) return rc;
    llm_state *st = calloc(1, sizeof *st);
    if (!st) return shoal_fail(SHOAL_E_NOMEM, "llm snapshot: out of memory");
    uint32_t n = nn_r_u32(&r);
    for (uint32_t k = 0; rc == SHOAL_OK && k < n; k++) {
        uint32_t h = nn_r_u32(&r);
        const shoal_nn_model_t *m = nn_snap_model_load(&r, inst->rt, "llm snapshot", &rc);
        if (!m) break;
        uint32_t n_ctx = nn_r_u32(&r), flags = nn_r_u32(&r), kv_off = 0, kv_len = 0, n_past = 0;
        if (flags & 1) kv_off = nn_r_u32(&r), kv_len = nn_r_u32(&r), n_past = nn_r_u32(&r);
        if (!r.ok || h >= MAX_SESSIONS || st->s[h] || n_ctx < 1 || n_ctx > (1u << 20) || flags > 1 ||
            n_past > n_ctx) {
            rc = shoal_fail(SHOAL_E_FORMAT, "llm snapshot: bad session record");
            break;
        }
        llm_session *s = calloc(1, sizeof *s);
        if (!s) {
            rc = shoal_fail(SHOAL_E_NOMEM, "llm snapshot: out of memory");
            break;
        }
        st->s[h] = s;
        s->m = m;
        shoal_engine_params_t p;
        shoal_engine_params_init(&p);
        p.n_ctx = (int)n_ctx;
        p.pool = shoal_nn_pool(inst->rt);
        if (flags & 1) {
            /* The cache is in the restored linear memory: check the range against it again. */
            size_t mem_size = 0;
            uint8_t *base = shoal_instance_memory(inst, &mem_size);
            if (!base || (kv_off & 15) || kv_len < shoal_llama_kv_bytes(m->llama, (int)n_ctx) ||
                (uint64_t)kv_off + kv_len > mem_size) {
                rc = shoal_fail(SHOAL_E_FORMAT, "llm snapshot: session %u's KV cache [offset %u, %u bytes) does not fit "
                                "the restored memory (%zu bytes) or its model", h, kv_off, kv_len, mem_size);
                break;
            }
            p.kv_external = (float *)(void *)(base + kv_off);
            s->kv_off = kv_off, s->kv_len = kv_len;
        }
        shoal_sampler_params_t sp;
        shoal_sampler_params_init(&sp);
        /* The restoring runtime decides the device: a session saved on the GPU continues on the
         * CPU of a CPU runtime and the reverse (the cache rows are the same layout). */
        rc = shoal_nn_engine_new(inst->rt, m, SHOAL_DEVICE_AUTO, false, &p, "llm snapshot", &s->eng);
        if (!rc) rc = shoal_sampler_new(&sp, m->llama->hp.vocab, &s->sampler);
        if (!rc) rc = flags & 1 ? shoal_engine_set_n_past(s->eng, (int)n_past) : nn_snap_kv_load(&r, s->eng, m->sha256);
        if (!rc) rc = nn_snap_sampler_load(&r, s->sampler);
    }
    if (rc == SHOAL_OK && (!r.ok || r.p != r.end)) rc = shoal_fail(SHOAL_E_FORMAT, "llm snapshot: section length mismatch");
    if (rc != SHOAL_OK) {
        state_free(st);
        return rc;
    }
    if (inst->ext[SHOAL_EXT_LLM] && inst->ext_ops[SHOAL_EXT_LLM]) inst->ext_ops[SHOAL_EXT_LLM]->free(inst->ext[SHOAL_EXT_LLM]);
    inst->ext[SHOAL_EXT_LLM] = st;
    inst->ext_ops[SHOAL_EXT_LLM] = &k_llm_ops;
    return SHOAL_OK;
}

static const shoal_ext_ops_t k_llm_ops = {"llm", state_free, state_save, state_load};

typedef struct call {
    shoal_instance_t *inst;
    shoal_guest_mem_t mem;
    llm_state *st;
    const char *fn;
} call;

static wasm_trap_t *begin(wasmtime_caller_t *caller, const char *fn, call *c)
{
    c->fn = fn;
    c->inst = shoal_caller_instance(caller);
    wasm_trap_t *t = shoal_caller_memory(caller, fn, &c->mem);
    if (t) return t;
    c->st = c->inst->ext[SHOAL_EXT_LLM];
    if (!c->st) {
        if (!(c->st = calloc(1, sizeof *c->st))) return shoal_trap("%s: out of host memory", fn);
        c->inst->ext[SHOAL_EXT_LLM] = c->st;
        c->inst->ext_ops[SHOAL_EXT_LLM] = &k_llm_ops;
    }
    return NULL;
}

static wasm_trap_t *ret(wasmtime_val_t *results, int32_t v)
{
    results[0].kind = WASMTIME_I32;
    results[0].of.i32 = v;
    return NULL;
}

static llm_session *session(const call *c, uint32_t h)
{
    if (h < MAX_SESSIONS && c->st->s[h]) return c->st->s[h];
    shoal_fail(SHOAL_E_INVALID, "%s: no LLM session with handle %u", c->fn, h);
    return NULL;
}

#define HOST(name)                                                                                                     \
    static wasm_trap_t *name(void *env, wasmtime_caller_t *caller, const wasmtime_val_t *args, size_t nargs,       \
                             wasmtime_val_t *results, size_t nresults)
#define ARG(i) ((uint32_t)args[i].of.i32)
#define BEGIN(name)                                                                                                    \
    call c;                                                                                                            \
    wasm_trap_t *t_ = begin(caller, name, &c);                                                                         \
    if (t_) return t_
#define RANGE(ptr, what, off, len, align)                                                                              \
    do {                                                                                                               \
        void *p_;                                                                                                      \
        wasm_trap_t *t2_ = shoal_guest_range(&c.mem, c.fn, what, off, len, align, &p_);                              \
        if (t2_) return t2_;                                                                                           \
        ptr = p_;                                                                                                      \
    } while (0)
#define SESSION(s)                                                                                                     \
    llm_session *s = session(&c, ARG(0));                                                                              \
    if (!s) return ret(results, SHOAL_E_INVALID)

static void put32(void *p, uint32_t v) { memcpy(p, &v, 4); }

/* Whether guest bytes [off, off + len) overlap the session's KV cache in guest memory: the
 * forward pass writes cache rows while it reads ids and writes logits, so those must lie apart. */
static bool hits_kv(const llm_session *s, uint32_t off, uint64_t len)
{
    return s->kv_len && (uint64_t)off < (uint64_t)s->kv_off + s->kv_len && (uint64_t)s->kv_off < (uint64_t)off + len;
}

/* The model named by guest bytes and a context size in [min_ctx, 2^20] for it: SHOAL_OK with *m,
 * or SHOAL_E_NOT_FOUND / SHOAL_E_INVALID recorded. */
static int32_t model_and_ctx(const call *c, const char *name, uint32_t len, int32_t n_ctx, int32_t min_ctx,
                             const shoal_nn_model_t **m)
{
    if (!(*m = shoal_nn_model_find(c->inst->rt, name, len)))
        return shoal_fail(SHOAL_E_NOT_FOUND, "%s: no model named \"%.*s\" (preload it with --nn-preload)", c->fn,
                          (int)(len > 64 ? 64 : len), name);
    if (n_ctx < min_ctx || n_ctx > (1 << 20))
        return shoal_fail(SHOAL_E_INVALID, "%s: n_ctx %d outside [%d, 2^20]", c->fn, n_ctx, min_ctx);
    return SHOAL_OK;
}

/* A session in the first free slot; kv_len > 0: its cache is the guest's bytes at kv_off. */
static int32_t open_session(call *c, const shoal_nn_model_t *m, int32_t n_ctx, uint32_t kv_off, uint32_t kv_len,
                            uint8_t *handle_out)
{
    int slot = -1;
    for (int i = 0; i < MAX_SESSIONS && slot < 0; i++)
        if (!c->st->s[i]) slot = i;
    if (slot < 0) return shoal_fail(SHOAL_E_LIMIT, "%s: all %d sessions are open", c->fn, MAX_SESSIONS);
    llm_session *s = calloc(1, sizeof *s);
    if (!s) return shoal_fail(SHOAL_E_NOMEM, "%s: out of memory", c->fn);
    s->m = m;
    s->kv_off = kv_off, s->kv_len = kv_len;
    shoal_engine_params_t p;
    shoal_engine_params_init(&p);
    p.n_ctx = n_ctx ? n_ctx : shoal_nn_default_ctx(m);
    p.pool = shoal_nn_pool(c->inst->rt);
    if (kv_len) p.kv_external = (float *)(void *)(c->mem.base + kv_off);
    shoal_sampler_params_t sp;
    shoal_sampler_params_init(&sp);
    sp.temperature = 0; /* greedy until the guest configures sampling */
    shoal_status_t st = shoal_nn_engine_new(c->inst->rt, m, SHOAL_DEVICE_AUTO, false, &p, c->fn, &s->eng);
    if (st == SHOAL_OK) st = shoal_sampler_new(&sp, m->llama->hp.vocab, &s->sampler);
    if (st != SHOAL_OK) {
        session_delete(s);
        return shoal_fail_wrap(st, "%s", c->fn);
    }
    c->st->s[slot] = s;
    put32(handle_out, (uint32_t)slot);
    return SHOAL_OK;
}

/* llm_open(name, name_len, n_ctx, *handle): a session (KV cache of n_ctx positions; 0: the
 * model's default) over a preloaded model. */
HOST(h_open)
{
    BEGIN("shoal.llm_open");
    const char *name;
    uint8_t *out;
    RANGE(name, "model name", ARG(0), ARG(1), 1);
    RANGE(out, "handle out-pointer", ARG(3), 4, 4);
    int32_t n_ctx = args[2].of.i32;
    const shoal_nn_model_t *m;
    int32_t st = model_and_ctx(&c, name, ARG(1), n_ctx, 0, &m);
    return ret(results, st ? st : open_session(&c, m, n_ctx, 0, 0, out));
}

/* llm_kv_bytes(name, name_len, n_ctx, *u64): the bytes a KV cache of n_ctx positions of that
 * model takes (the buffer llm_open_kv wants). */
HOST(h_kv_bytes)
{
    BEGIN("shoal.llm_kv_bytes");
    const char *name;
    uint8_t *out;
    RANGE(name, "model name", ARG(0), ARG(1), 1);
    RANGE(out, "size out-pointer", ARG(3), 8, 8);
    int32_t n_ctx = args[2].of.i32;
    const shoal_nn_model_t *m;
    int32_t st = model_and_ctx(&c, name, ARG(1), n_ctx, 1, &m);
    if (st) return ret(results, st);
    uint64_t b = shoal_llama_kv_bytes(m->llama, n_ctx);
    memcpy(out, &b, 8);
    return ret(results, SHOAL_OK);
}

/* llm_open_kv(name, name_len, n_ctx, kv, kv_len, *handle): as llm_open, with the session's KV
 * cache in the guest's own memory at kv (16-byte aligned, at least llm_kv_bytes): zero copies
 * between the cache and the guest (on a GPU runtime the kernels read and write it in place over
 * the bus), and the cache is part of the guest's state: memory snapshots carry it. The guest may
 * read it (row layout: docs/guest-interfaces.md); what it writes there is what the model
 * attends to. */
HOST(h_open_kv)
{
    BEGIN("shoal.llm_open_kv");
    const char *name;
    uint8_t *out, *kv;
    RANGE(name, "model name", ARG(0), ARG(1), 1);
    RANGE(out, "handle out-pointer", ARG(5), 4, 4);
    RANGE(kv, "KV cache", ARG(3), ARG(4), 16);
    (void)kv;
    int32_t n_ctx = args[2].of.i32;
    const shoal_nn_model_t *m;
    int32_t st = model_and_ctx(&c, name, ARG(1), n_ctx, 1, &m);
    if (st) return ret(results, st);
    uint64_t need = shoal_llama_kv_bytes(m->llama, n_ctx);
    if (ARG(4) < need)
        return ret(results, shoal_fail(SHOAL_E_LIMIT, "%s: a cache of %d positions needs %llu bytes, the buffer has %u",
                                       c.fn, n_ctx, (unsigned long long)need, ARG(4)));
    if ((uint8_t *)out < kv + ARG(4) && kv < (uint8_t *)out + 4)
        return shoal_trap("%s: the handle out-pointer lies inside the KV cache buffer", c.fn);
    return ret(results, open_session(&c, m, n_ctx, ARG(3), ARG(4), out));
}

HOST(h_close)
{
    BEGIN("shoal.llm_close");
    SESSION(s);
    session_delete(s);
    c.st->s[ARG(0)] = NULL;
    return ret(results, SHOAL_OK);
}

HOST(h_info)
{
    BEGIN("shoal.llm_info");
    SESSION(s);
    uint8_t *out;
    RANGE(out, "info record", ARG(1), sizeof(guest_llm_info), 4);
    const shoal_llama_hparams_t *hp = &s->m->llama->hp;
    guest_llm_info info = {
        .n_vocab = hp->vocab,
        .n_ctx = shoal_engine_n_ctx(s->eng),
        .n_past = shoal_engine_n_past(s->eng),
        .bos = shoal_tokenizer_bos(s->m->tok),
        .eos = shoal_tokenizer_eos(s->m->tok),
        .eot = shoal_tokenizer_eot(s->m->tok),
        .n_layer = hp->n_layer,
        .dim = hp->dim,
    };
    memcpy(out, &info, sizeof info);
    return ret(results, SHOAL_OK);
}

/* llm_tokenize(h, text, len, flags, ids, cap, *n): flags bit 0 parses special tokens written
 * in the text, bit 1 prepends BOS. SHOAL_E_LIMIT with *n = ids needed if cap is short. */
HOST(h_tokenize)
{
    BEGIN("shoal.llm_tokenize");
    SESSION(s);
    const char *text;
    int32_t *ids;
    uint8_t *n_out;
    uint32_t len = ARG(2), flags = ARG(3), cap = ARG(5);
    RANGE(text, "text", ARG(1), len, 1);
    RANGE(ids, "token ids", ARG(4), (uint64_t)cap * 4, 4);
    RANGE(n_out, "count out-pointer", ARG(6), 4, 4);
    size_t n = 0;
    shoal_status_t st = shoal_tokenizer_encode(s->m->tok, text, len, flags & 1, (flags & 2) != 0, ids, cap, &n);
    if (st == SHOAL_OK || st == SHOAL_E_LIMIT) put32(n_out, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
    return ret(results, st);
}

/* llm_detokenize(h, ids, n, flags, buf, cap, *written): the concatenated pieces of ids;
 * flags bit 0 renders control tokens as their text. SHOAL_E_LIMIT with *written = bytes needed
 * if cap is short. Pieces are concatenated as is (no SentencePiece leading-space removal), so
 * detokenising tokens one at a time and all at once give the same bytes. */
HOST(h_detokenize)
{
    BEGIN("shoal.llm_detokenize");
    SESSION(s);
    const int32_t *ids;
    char *buf;
    uint8_t *w_out;
    uint32_t n = ARG(2), cap = ARG(5);
    RANGE(ids, "token ids", ARG(1), (uint64_t)n * 4, 4);
    RANGE(buf, "text buffer", ARG(4), cap, 1);
    RANGE(w_out, "written out-pointer", ARG(6), 4, 4);
    bool special = ARG(3) & 1;
    size_t w = 0;
    for (uint32_t i = 0; i < n; i++) {
        size_t k = 0;
        int32_t id = ids[i];
        shoal_status_t st = shoal_tokenizer_token_to_piece(s->m->tok, id, special, w < cap ? buf + w : NULL,
                                                           w < cap ? cap - w : 0, &k);
        if (st == SHOAL_E_INVALID) return ret(results, shoal_fail_wrap(st, "%s: token %u", c.fn, i));
        w += k;
    }
    shoal_clear_error();
    put32(w_out, w > UINT32_MAX ? UINT32_MAX : (uint32_t)w);
    if (w > cap)
        return ret(results, shoal_fail(SHOAL_E_LIMIT, "%s: text of %zu bytes does not fit in %u", c.fn, w, cap));
    return ret(results, SHOAL_OK);
}

/* llm_eval(h, ids, n, logits, mode): appends ids[0..n) to the session's sequence (positions
 * n_past...). mode 0: no logits; 1: the last token's (vocab floats at `logits`); 2: every
 * token's (n x vocab). The logits are written in place into the guest's buffer. SHOAL_E_LIMIT
 * when the context is full. Evaluated tokens join the sampler's penalty history. */
HOST(h_eval)
{
    BEGIN("shoal.llm_eval");
    SESSION(s);
    const int32_t *ids;
    float *logits = NULL;
    uint32_t n = ARG(2), mode = ARG(4);
    if (mode > 2) return ret(results, shoal_fail(SHOAL_E_INVALID, "%s: mode %u (0 none, 1 last, 2 all)", c.fn, mode));
    if (n == 0 || n > (1u << 20)) return ret(results, shoal_fail(SHOAL_E_INVALID, "%s: %u tokens", c.fn, n));
    RANGE(ids, "token ids", ARG(1), (uint64_t)n * 4, 4);
    uint64_t vocab = (uint64_t)s->m->llama->hp.vocab;
    if (mode) RANGE(logits, "logits", ARG(3), (mode == 2 ? n : 1) * vocab * 4, 4);
    if (hits_kv(s, ARG(1), (uint64_t)n * 4) || (mode && hits_kv(s, ARG(3), (mode == 2 ? n : 1) * vocab * 4)))
        return shoal_trap("%s: the token ids or logits overlap the session's KV cache", c.fn);
    /* The forward pass reads the ids while it writes logits: they must not overlap. */
    if (logits && (const uint8_t *)ids < (const uint8_t *)logits + (mode == 2 ? n : 1) * vocab * 4 &&
        (const uint8_t *)logits < (const uint8_t *)(ids + n))
        return shoal_trap("%s: the logits buffer overlaps the token ids", c.fn);
    shoal_status_t st =
        shoal_engine_eval(s->eng, ids, (int)n, shoal_engine_n_past(s->eng), logits, (int)mode);
    if (st != SHOAL_OK) return ret(results, shoal_fail_wrap(st, "%s", c.fn));
    for (uint32_t i = 0; i < n; i++) shoal_sampler_accept(s->sampler, ids[i]);
    return ret(results, SHOAL_OK);
}

/* llm_eval_greedy(h, ids, n, *token): as llm_eval without logits, then the most likely next
 * token (lowest id on ties) into *token. On the GPU the choice is made on the device and only the
 * id crosses the bus; the sampler's penalties do not apply (greedy decoding needs none). The
 * chosen token is not evaluated: pass it to the next call. */
HOST(h_eval_greedy)
{
    BEGIN("shoal.llm_eval_greedy");
    SESSION(s);
    const int32_t *ids;
    uint8_t *out;
    uint32_t n = ARG(2);
    if (n == 0 || n > (1u << 20)) return ret(results, shoal_fail(SHOAL_E_INVALID, "%s: %u tokens", c.fn, n));
    RANGE(ids, "token ids", ARG(1), (uint64_t)n * 4, 4);
    RANGE(out, "token out-pointer", ARG(3), 4, 4);
    if (hits_kv(s, ARG(1), (uint64_t)n * 4) || hits_kv(s, ARG(3), 4))
        return shoal_trap("%s: the token ids or the out-pointer overlap the session's KV cache", c.fn);
    int32_t tok;
    shoal_status_t st = shoal_engine_eval_greedy(s->eng, ids, (int)n, shoal_engine_n_past(s->eng), &tok);
    if (st != SHOAL_OK) return ret(results, shoal_fail_wrap(st, "%s", c.fn));
    for (uint32_t i = 0; i < n; i++) shoal_sampler_accept(s->sampler, ids[i]);
    put32(out, (uint32_t)tok);
    return ret(results, SHOAL_OK);
}

HOST(h_sampler_config)
{
    BEGIN("shoal.llm_sampler_config");
    SESSION(s);
    const uint8_t *p;
    RANGE(p, "sampler parameters", ARG(1), sizeof(guest_sampler_params), 4);
    guest_sampler_params g;
    memcpy(&g, p, sizeof g);
    shoal_sampler_params_t sp = {
        .temperature = g.temperature,
        .top_k = g.top_k,
        .top_p = g.top_p,
        .min_p = g.min_p,
        .repeat_penalty = g.repeat_penalty,
        .repeat_last_n = g.repeat_last_n,
        .seed = g.seed,
    };
    shoal_sampler_t *ns = NULL;
    shoal_status_t st = shoal_sampler_new(&sp, s->m->llama->hp.vocab, &ns);
    if (st != SHOAL_OK) return ret(results, shoal_fail_wrap(st, "%s", c.fn));
    shoal_sampler_delete(s->sampler);
    s->sampler = ns;
    return ret(results, SHOAL_OK);
}

/* llm_sample(h, logits, *token): picks the next token from vocab floats the guest holds
 * (typically where llm_eval wrote them; the guest may have edited them: biases, masks). */
HOST(h_sample)
{
    BEGIN("shoal.llm_sample");
    SESSION(s);
    const float *logits;
    uint8_t *out;
    RANGE(logits, "logits", ARG(1), (uint64_t)s->m->llama->hp.vocab * 4, 4);
    RANGE(out, "token out-pointer", ARG(2), 4, 4);
    int32_t tok;
    shoal_status_t st = shoal_sampler_sample(s->sampler, logits, s->m->llama->hp.vocab, &tok);
    if (st != SHOAL_OK) return ret(results, shoal_fail_wrap(st, "%s", c.fn));
    put32(out, (uint32_t)tok);
    return ret(results, SHOAL_OK);
}

/* llm_is_eog(h, token): 1 if the token ends a turn or the text, 0 if not, -SHOAL_E_INVALID
 * for a bad handle. */
HOST(h_is_eog)
{
    BEGIN("shoal.llm_is_eog");
    llm_session *s = session(&c, ARG(0));
    if (!s) return ret(results, -SHOAL_E_INVALID);
    return ret(results, shoal_tokenizer_is_eog(s->m->tok, args[1].of.i32) ? 1 : 0);
}

/* llm_rewind(h, n_past): forgets positions [n_past, ...) so the sequence can branch;
 * n_past may not exceed the current one. llm_rewind(h, 0) starts over. */
HOST(h_rewind)
{
    BEGIN("shoal.llm_rewind");
    SESSION(s);
    int32_t n = args[1].of.i32, cur = shoal_engine_n_past(s->eng);
    if (n < 0 || n > cur)
        return ret(results, shoal_fail(SHOAL_E_INVALID, "%s: n_past %d outside [0, %d]", c.fn, n, cur));
    shoal_engine_set_n_past(s->eng, n);
    if (n == 0) shoal_sampler_reset(s->sampler, shoal_sampler_params(s->sampler)->seed);
    return ret(results, SHOAL_OK);
}

/* llm_chat_render(h, msgs, n, add_generation_prompt, buf, cap, *written): the conversation in
 * the model's own chat format (from its GGUF template), written into buf. msgs is an array of
 * {u32 role, u32 role_len, u32 content, u32 content_len}. SHOAL_E_LIMIT with *written = bytes
 * needed if cap is short; SHOAL_E_UNSUPPORTED if the model has no known chat format. */
HOST(h_chat_render)
{
    BEGIN("shoal.llm_chat_render");
    SESSION(s);
    uint32_t n = ARG(2), cap = ARG(5);
    const uint8_t *rec;
    char *buf;
    uint8_t *w_out;
    if (n > MAX_CHAT_MSGS)
        return ret(results, shoal_fail(SHOAL_E_LIMIT, "%s: %u messages (at most %d)", c.fn, n, MAX_CHAT_MSGS));
    RANGE(rec, "message array", ARG(1), (uint64_t)n * CHAT_MSG_SIZE, 4);
    RANGE(buf, "text buffer", ARG(4), cap, 1);
    RANGE(w_out, "written out-pointer", ARG(6), 4, 4);
    if (!s->m->has_chat)
        return ret(results, shoal_fail(SHOAL_E_UNSUPPORTED, "%s: model \"%s\" has no chat template this runtime knows",
                                       c.fn, s->m->name));
    shoal_chat_msg_t *msgs = calloc(n ? n : 1, sizeof *msgs);
    if (!msgs) return ret(results, shoal_fail(SHOAL_E_NOMEM, "%s: out of memory", c.fn));
    for (uint32_t i = 0; i < n; i++) {
        uint32_t f[4];
        memcpy(f, rec + (size_t)i * CHAT_MSG_SIZE, sizeof f);
        void *role, *content;
        wasm_trap_t *t = shoal_guest_range(&c.mem, c.fn, "message role", f[0], f[1], 1, &role);
        if (!t) t = shoal_guest_range(&c.mem, c.fn, "message content", f[2], f[3], 1, &content);
        if (t) {
            free(msgs);
            return t;
        }
        msgs[i] = (shoal_chat_msg_t){role, f[1], content, f[3]};
    }
    size_t w = 0;
    shoal_status_t st = shoal_chat_render(&s->m->chat, msgs, n, ARG(3) != 0, buf, cap, &w);
    free(msgs);
    if (st == SHOAL_OK || st == SHOAL_E_LIMIT) put32(w_out, w > UINT32_MAX ? UINT32_MAX : (uint32_t)w);
    return ret(results, st);
}

shoal_status_t shoal_host_llm_define(shoal_runtime_t *rt)
{
    static const struct {
        const char *name, *sig;
        wasmtime_func_callback_t cb;
    } fns[] = {
        {"llm_open", "iiii>i", h_open},
        {"llm_open_kv", "iiiiii>i", h_open_kv},
        {"llm_kv_bytes", "iiii>i", h_kv_bytes},
        {"llm_close", "i>i", h_close},
        {"llm_info", "ii>i", h_info},
        {"llm_tokenize", "iiiiiii>i", h_tokenize},
        {"llm_detokenize", "iiiiiii>i", h_detokenize},
        {"llm_eval", "iiiii>i", h_eval},
        {"llm_eval_greedy", "iiii>i", h_eval_greedy},
        {"llm_sampler_config", "ii>i", h_sampler_config},
        {"llm_sample", "iii>i", h_sample},
        {"llm_is_eog", "ii>i", h_is_eog},
        {"llm_rewind", "ii>i", h_rewind},
        {"llm_chat_render", "iiiiiii>i", h_chat_render},
    };
    /* A fresh process restoring a snapshot finds this layer's loader by slot. */
    shoal_status_t r = shoal_snapshot_register_ext(SHOAL_EXT_LLM, &k_llm_ops);
    if (r != SHOAL_OK) return r;
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        shoal_status_t s = shoal_runtime_define(rt, "shoal", fns[i].name, fns[i].sig, fns[i].cb, NULL);
        if (s != SHOAL_OK) return s;
    }
    return SHOAL_OK;
}
