/* nn_exec.c — generation for wasi-nn execution contexts (see nn_exec.h). */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"
#include "model/sampler.h"
#include "nn/nn_exec.h"
#include "nn/nn_snap.h"
#include "nn/wasi_nn_abi.h"

/* Positions kept free beyond the prompt, as WasmEdge does (room for special tokens). */
#define PROMPT_RESERVE 4
/* Bytes of recent output kept to find the reverse prompt across token boundaries. */
#define TAIL_MAX (2 * NN_REVERSE_PROMPT_MAX + 2)

struct nn_exec {
    shoal_runtime_t *rt;
    const shoal_nn_model_t *m;
    nn_config_t cfg;
    /* the sequence's engine (KV cache), rebuilt when ctx-size / batch-size / threads / the
     * device the options ask for change */
    shoal_engine_t *eng;
    int eng_ctx, eng_batch, eng_threads;
    shoal_device_kind_t eng_want;
    shoal_threadpool_t *own_pool; /* only for a "threads" value unlike the runtime's pool */
    shoal_sampler_t *sampler;
    float *logits;       /* (vocab,) logits of the last evaluated token */
    int32_t *prompt;     /* (n_prompt,) */
    size_t n_prompt, cap_prompt;
    int32_t *kv_ids;     /* (n_kv,) the tokens whose cache rows [0, n_kv) the engine holds */
    size_t n_kv, cap_kv;
    size_t n_cached;     /* prompt tokens the last compute found already in the cache */
    int32_t *out;        /* (n_out,) generated tokens, end-of-generation excluded */
    size_t n_out, cap_out, out_bytes;
    bool have_output;    /* a compute or compute_single ran since the last set_input */
    bool streaming;      /* compute_single has evaluated the prompt */
    int32_t pending;     /* sampled token whose logits are not yet computed, or -1 */
    bool last_valid;     /* compute_single's last token is out[n_out-1] */
    char tail[TAIL_MAX];
    size_t tail_len;
    double prompt_ms, gen_ms;
};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void log_line(const nn_exec_t *e, const char *fmt, ...) SHOAL_PRINTF(2, 3);
static void log_line(const nn_exec_t *e, const char *fmt, ...)
{
    if (!e->cfg.enable_log) return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[wasi-nn] ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Fails with a wasi-nn code and a message; logs it when enable-log is on. */
static int fail(const nn_exec_t *e, int code, shoal_status_t st, const char *fmt, ...) SHOAL_PRINTF(4, 5);
static int fail(const nn_exec_t *e, int code, shoal_status_t st, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    shoal_fail(st, "wasi-nn: %s", msg);
    log_line(e, "error: %s", msg);
    return code;
}

int nn_exec_new(shoal_runtime_t *rt, const shoal_nn_model_t *m, const nn_config_t *cfg, nn_exec_t **out)
{
    nn_exec_t *e = calloc(1, sizeof *e);
    if (!e || !(e->logits = malloc(sizeof(float) * (size_t)m->llama->hp.vocab))) {
        free(e);
        shoal_fail(SHOAL_E_NOMEM, "wasi-nn: out of memory for an execution context");
        return NN_ERR_RUNTIME_ERROR;
    }
    e->rt = rt;
    e->m = m;
    e->cfg = *cfg;
    e->pending = -1;
    *out = e;
    return NN_ERR_SUCCESS;
}

void nn_exec_delete(nn_exec_t *e)
{
    if (!e) return;
    shoal_engine_delete(e->eng);
    shoal_threadpool_delete(e->own_pool);
    shoal_sampler_delete(e->sampler);
    free(e->logits);
    free(e->prompt);
    free(e->kv_ids);
    free(e->out);
    free(e);
}

nn_config_t *nn_exec_config(nn_exec_t *e) { return &e->cfg; }
const shoal_nn_model_t *nn_exec_model(const nn_exec_t *e) { return e->m; }

static void end_stream(nn_exec_t *e)
{
    e->streaming = false;
    e->pending = -1;
    e->last_valid = false;
}

int nn_exec_set_prompt(nn_exec_t *e, const char *text, size_t len)
{
    const shoal_tokenizer_t *t = e->m->tok;
    bool bos = shoal_tokenizer_wants_bos(t) && shoal_tokenizer_bos(t) >= 0;
    end_stream(e);
    e->have_output = false;
    e->n_out = e->out_bytes = 0;
    /* A first guess of one id per byte (plus BOS) covers ordinary text; the tokenizer reports
     * the real count when it is short (invalid bytes become U+FFFD, up to 3 ids each). */
    size_t need = len < 65536 ? len + 2 : 65536, n = 0;
    for (int attempt = 0; attempt < 2; attempt++) {
        if (need > e->cap_prompt) {
            int32_t *p = realloc(e->prompt, need * sizeof *p);
            if (!p) return fail(e, NN_ERR_RUNTIME_ERROR, SHOAL_E_NOMEM, "out of memory for %zu prompt tokens", need);
            e->prompt = p;
            e->cap_prompt = need;
        }
        shoal_status_t st = shoal_tokenizer_encode(t, text, len, true, bos, e->prompt, e->cap_prompt, &n);
        if (st == SHOAL_OK) {
            e->n_prompt = n;
            log_line(e, "prompt: %zu bytes, %zu tokens", len, n);
            return NN_ERR_SUCCESS;
        }
        if (st != SHOAL_E_LIMIT || n <= e->cap_prompt) break;
        need = n;
    }
    e->n_prompt = 0;
    return fail(e, NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "cannot tokenize the prompt: %s", shoal_last_error());
}

/* The device the options ask for: "n-gpu-layers" when the guest set it, else the graph's target.
 * *strict: a GPU that cannot be had is an error rather than a move to the CPU. */
static int wanted_device(nn_exec_t *e, shoal_device_kind_t *want, bool *strict)
{
    int64_t ngl = e->cfg.n_gpu_layers;
    int n_layer = e->m->llama->hp.n_layer;
    *strict = e->cfg.target_strict;
    if (ngl == NN_GPU_LAYERS_UNSET) {
        *want = e->cfg.target;
        return NN_ERR_SUCCESS;
    }
    if (ngl > 0 && ngl < n_layer)
        return fail(e, NN_ERR_INVALID_ARGUMENT, SHOAL_E_UNSUPPORTED,
                    "n-gpu-layers %lld: Shoal runs a model wholly on one device; use 0 (CPU) or %d or more / -1 "
                    "(GPU) for this %d-layer model",
                    (long long)ngl, n_layer, n_layer);
    if (ngl == 0 && e->cfg.target_strict)
        return fail(e, NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID,
                    "n-gpu-layers 0 asks for the CPU, but the graph was loaded with execution target GPU");
    *want = ngl == 0 ? SHOAL_DEVICE_CPU : SHOAL_DEVICE_CUDA;
    return NN_ERR_SUCCESS;
}

/* Makes e->eng a context of n_ctx positions, batch `batch`, on `threads` threads of its own
 * (0: the runtime's pool) on the device the options ask for, reusing the current one if it
 * matches. */
static int build_engine(nn_exec_t *e, int n_ctx, int batch, int threads)
{
    shoal_device_kind_t want = SHOAL_DEVICE_AUTO;
    bool strict = false;
    int r = wanted_device(e, &want, &strict);
    if (r) return r;
    if (e->eng && e->eng_ctx == n_ctx && e->eng_batch == batch && e->eng_threads == threads && e->eng_want == want)
        return NN_ERR_SUCCESS;
    shoal_engine_delete(e->eng);
    e->eng = NULL;
    e->n_kv = 0;
    shoal_threadpool_delete(e->own_pool);
    e->own_pool = NULL;
    shoal_threadpool_t *pool = shoal_nn_pool(e->rt);
    if (threads > 0) {
        if (shoal_threadpool_new(threads, &e->own_pool) != SHOAL_OK)
            return fail(e, NN_ERR_RUNTIME_ERROR, SHOAL_E_NOMEM, "cannot start %d threads", threads);
        pool = e->own_pool;
    }
    shoal_engine_params_t p;
    shoal_engine_params_init(&p);
    p.n_ctx = n_ctx;
    p.n_batch = batch;
    p.pool = pool;
    shoal_status_t st = shoal_nn_engine_new(e->rt, e->m, want, strict, &p, "wasi-nn", &e->eng);
    if (st != SHOAL_OK)
        return fail(e, NN_ERR_RUNTIME_ERROR, st, "cannot create a context of %d positions: %s", n_ctx,
                    shoal_last_error());
    e->eng_ctx = n_ctx;
    e->eng_batch = batch;
    e->eng_threads = threads;
    e->eng_want = want;
    if (shoal_engine_device(e->eng) == SHOAL_DEVICE_CUDA)
        log_line(e, "context: %d positions on the GPU", n_ctx);
    else
        log_line(e, "context: %d positions on the CPU, batch %d, %d threads", n_ctx, batch,
                 pool ? shoal_threadpool_size(pool) : 1);
    return NN_ERR_SUCCESS;
}

static int new_sampler(nn_exec_t *e)
{
    shoal_sampler_params_t sp;
    shoal_sampler_params_init(&sp);
    sp.temperature = e->cfg.temp;
    sp.top_p = e->cfg.top_p;
    sp.repeat_penalty = e->cfg.repeat_penalty;
    sp.seed = e->cfg.seed;
    shoal_sampler_delete(e->sampler);
    e->sampler = NULL;
    if (shoal_sampler_new(&sp, e->m->llama->hp.vocab, &e->sampler) != SHOAL_OK)
        return fail(e, NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "sampler: %s", shoal_last_error());
    return NN_ERR_SUCCESS;
}

/* (Re)builds the engine and sampler for the current options; resets the sequence. */
static int prepare(nn_exec_t *e)
{
    int n_ctx = e->cfg.ctx_size > 0 ? e->cfg.ctx_size : shoal_nn_default_ctx(e->m);
    shoal_threadpool_t *pool = shoal_nn_pool(e->rt);
    int threads = e->cfg.threads;
    if (threads > 0 && pool && threads == shoal_threadpool_size(pool)) threads = 0;
    int r = build_engine(e, n_ctx, e->cfg.batch_size, threads);
    if (r) return r;
    if ((r = new_sampler(e))) return r;
    e->n_out = e->out_bytes = 0;
    e->tail_len = 0;
    e->pending = -1;
    e->last_valid = false;
    e->have_output = true;
    e->prompt_ms = e->gen_ms = 0;
    return NN_ERR_SUCCESS;
}

/* Records ids[0..n) as the next cache rows. */
static int kv_append(nn_exec_t *e, const int32_t *ids, size_t n)
{
    if (e->n_kv + n > e->cap_kv) {
        size_t cap = (e->n_kv + n) * 2;
        int32_t *p = realloc(e->kv_ids, cap * sizeof *p);
        if (!p) {
            e->n_kv = 0; /* forget the cache rather than trust a partial record */
            return fail(e, NN_ERR_RUNTIME_ERROR, SHOAL_E_NOMEM, "out of memory");
        }
        e->kv_ids = p;
        e->cap_kv = cap;
    }
    memcpy(e->kv_ids + e->n_kv, ids, n * sizeof *ids);
    e->n_kv += n;
    return NN_ERR_SUCCESS;
}

static int eval_prompt(nn_exec_t *e)
{
    if (e->n_prompt == 0)
        return fail(e, NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "no prompt: call set_input(ctx, 0, tensor) first");
    int r = prepare(e);
    if (r) return r;
    if (e->n_prompt + PROMPT_RESERVE > (size_t)e->eng_ctx)
        return fail(e, NN_ERR_PROMPT_TOO_LONG, SHOAL_E_LIMIT,
                    "the prompt has %zu tokens; a context of %d positions takes at most %d", e->n_prompt, e->eng_ctx,
                    e->eng_ctx - PROMPT_RESERVE);
    /* Multi-turn guests resend the whole conversation: rows for a common prefix already in the
     * cache are kept (they are a pure function of tokens and positions, so the result is the
     * same as a full re-evaluation); at least the last prompt token is evaluated for logits. */
    size_t keep = 0;
    while (keep < e->n_kv && keep + 1 < e->n_prompt && e->kv_ids[keep] == e->prompt[keep]) keep++;
    e->n_cached = keep;
    if (shoal_engine_set_n_past(e->eng, (int)keep) != SHOAL_OK)
        return fail(e, NN_ERR_RUNTIME_ERROR, SHOAL_E_INVALID, "cache rewind failed: %s", shoal_last_error());
    e->n_kv = keep;
    double t0 = now_ms();
    shoal_status_t st = shoal_engine_eval(e->eng, e->prompt + keep, (int)(e->n_prompt - keep), (int)keep, e->logits,
                                         SHOAL_LLAMA_LOGITS_LAST);
    e->prompt_ms = now_ms() - t0;
    if (st != SHOAL_OK) {
        e->n_kv = 0;
        return fail(e, NN_ERR_RUNTIME_ERROR, st, "prompt evaluation failed: %s", shoal_last_error());
    }
    if (kv_append(e, e->prompt + keep, e->n_prompt - keep)) return NN_ERR_RUNTIME_ERROR;
    log_line(e, "prompt evaluated: %zu tokens (%zu from the cache) in %.1f ms", e->n_prompt, keep, e->prompt_ms);
    return NN_ERR_SUCCESS;
}

/* Appends a generated token: output bookkeeping, stream-stdout, reverse-prompt window.
 * Returns true if the reverse prompt now appears in the output. */
static bool record(nn_exec_t *e, int32_t tok, bool stream_stdout)
{
    char piece[256];
    size_t full = 0;
    /* A piece longer than the window is cut to its head (the tokenizer fills what fits); only
     * stream-stdout and the reverse-prompt window see it, the output is rebuilt in full. */
    if (shoal_tokenizer_token_to_piece(e->m->tok, tok, true, piece, sizeof piece, &full) != SHOAL_OK)
        shoal_clear_error();
    size_t n = full < sizeof piece ? full : sizeof piece;
    e->out[e->n_out++] = tok;
    e->out_bytes += full;
    if (stream_stdout) {
        fwrite(piece, 1, n, stdout);
        fflush(stdout);
    }
    if (!e->cfg.reverse_len) return false;
    if (e->tail_len + n > TAIL_MAX) {
        size_t keep = TAIL_MAX - n < e->tail_len ? TAIL_MAX - n : e->tail_len;
        memmove(e->tail, e->tail + e->tail_len - keep, keep);
        e->tail_len = keep;
    }
    memcpy(e->tail + e->tail_len, piece, n);
    e->tail_len += n;
    return memmem(e->tail, e->tail_len, e->cfg.reverse_prompt, e->cfg.reverse_len) != NULL;
}

/* One generation step: computes the logits of the pending token if there is one, samples the
 * next token and records it. end_of_sequence when the model ends its turn. */
static int step(nn_exec_t *e, bool stream_stdout, bool *reverse_hit)
{
    double t0 = now_ms();
    int32_t tok = -1;
    if (e->pending >= 0) {
        if (shoal_engine_n_past(e->eng) + 1 > e->eng_ctx)
            return fail(e, NN_ERR_CONTEXT_FULL, SHOAL_E_LIMIT, "the context is full (%d positions): raise ctx-size",
                        e->eng_ctx);
        /* Greedy decoding needs only the argmax: on a GPU it is taken on the device and the step
         * replays a CUDA graph; the token is the one the sampler would pick (lowest id on ties). */
        const bool argmax = shoal_sampler_is_argmax(e->sampler);
        shoal_status_t st = argmax ? shoal_engine_eval_greedy(e->eng, &e->pending, 1, shoal_engine_n_past(e->eng), &tok)
                                   : shoal_engine_eval(e->eng, &e->pending, 1, shoal_engine_n_past(e->eng), e->logits,
                                                       SHOAL_LLAMA_LOGITS_LAST);
        if (st != SHOAL_OK) {
            e->n_kv = 0;
            return fail(e, NN_ERR_RUNTIME_ERROR, st, "decode failed: %s", shoal_last_error());
        }
        if (kv_append(e, &e->pending, 1)) return NN_ERR_RUNTIME_ERROR;
        e->pending = -1;
    }
    shoal_status_t st = tok >= 0 ? SHOAL_OK : shoal_sampler_sample(e->sampler, e->logits, e->m->llama->hp.vocab, &tok);
    if (st == SHOAL_OK) st = shoal_sampler_accept(e->sampler, tok);
    e->gen_ms += now_ms() - t0;
    if (st != SHOAL_OK) return fail(e, NN_ERR_RUNTIME_ERROR, st, "sampling failed: %s", shoal_last_error());
    if (shoal_tokenizer_is_eog(e->m->tok, tok)) return NN_ERR_END_OF_SEQUENCE;
    if (e->n_out == e->cap_out) {
        size_t cap = e->cap_out ? 2 * e->cap_out : 256;
        int32_t *p = realloc(e->out, cap * sizeof *p);
        if (!p) return fail(e, NN_ERR_RUNTIME_ERROR, SHOAL_E_NOMEM, "out of memory for output tokens");
        e->out = p;
        e->cap_out = cap;
    }
    *reverse_hit = record(e, tok, stream_stdout);
    e->pending = tok;
    return NN_ERR_SUCCESS;
}

int nn_exec_compute(nn_exec_t *e)
{
    end_stream(e);
    int r = eval_prompt(e);
    if (r) return r;
    int64_t budget = e->cfg.n_predict < 0 ? INT64_MAX : e->cfg.n_predict;
    bool hit = false;
    for (int64_t i = 0; i < budget && !hit; i++) {
        r = step(e, e->cfg.stream_stdout, &hit);
        if (r == NN_ERR_END_OF_SEQUENCE) break;
        if (r) return r;
    }
    if (hit) log_line(e, "reverse prompt found");
    log_line(e, "generated %zu tokens in %.1f ms (%.1f tokens/s)", e->n_out, e->gen_ms,
             e->gen_ms > 0 ? e->n_out * 1e3 / e->gen_ms : 0.0);
    return NN_ERR_SUCCESS;
}

int nn_exec_compute_single(nn_exec_t *e)
{
    if (!e->streaming) {
        int r = eval_prompt(e);
        if (r) return r;
        e->streaming = true;
    }
    bool hit = false;
    e->last_valid = false;
    int r = step(e, false, &hit);
    if (r == NN_ERR_SUCCESS) e->last_valid = true;
    else e->streaming = false;
    return r;
}

int nn_exec_fini_single(nn_exec_t *e)
{
    end_stream(e);
    return NN_ERR_SUCCESS;
}

int nn_exec_output_size(nn_exec_t *e, size_t *len)
{
    if (!e->have_output)
        return fail(e, NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "no output yet: call compute or compute_single first");
    *len = e->out_bytes;
    return NN_ERR_SUCCESS;
}

static size_t write_piece(const nn_exec_t *e, int32_t tok, uint8_t *dst)
{
    size_t n = 0;
    /* The caller sized dst from the same pieces, so the piece always fits. */
    shoal_tokenizer_token_to_piece(e->m->tok, tok, true, (char *)dst, SIZE_MAX / 2, &n);
    return n;
}

void nn_exec_output_write(nn_exec_t *e, uint8_t *dst)
{
    for (size_t i = 0; i < e->n_out; i++) dst += write_piece(e, e->out[i], dst);
}

int nn_exec_last_piece_size(nn_exec_t *e, size_t *len)
{
    if (!e->have_output)
        return fail(e, NN_ERR_INVALID_ARGUMENT, SHOAL_E_INVALID, "no token yet: call compute_single first");
    *len = 0;
    if (e->last_valid && e->n_out) {
        shoal_tokenizer_token_to_piece(e->m->tok, e->out[e->n_out - 1], true, NULL, 0, len);
        shoal_clear_error();
    }
    return NN_ERR_SUCCESS;
}

void nn_exec_last_piece_write(nn_exec_t *e, uint8_t *dst)
{
    if (e->last_valid && e->n_out) write_piece(e, e->out[e->n_out - 1], dst);
}

size_t nn_exec_metadata(nn_exec_t *e, char *buf, size_t cap)
{
    int n = snprintf(buf, cap,
                     "{\"input_tokens\":%zu,\"output_tokens\":%zu,\"cached_tokens\":%zu,\"ctx_size\":%d,"
                     "\"prompt_ms\":%.3f,\"generation_ms\":%.3f}",
                     e->n_prompt, e->have_output ? e->n_out : 0, e->have_output ? e->n_cached : 0,
                     e->eng ? e->eng_ctx : (e->cfg.ctx_size > 0 ? e->cfg.ctx_size : shoal_nn_default_ctx(e->m)),
                     e->prompt_ms, e->gen_ms);
    return n < 0 ? 0 : (size_t)n;
}

/* ---- snapshots ---- */

#define EXEC_MAGIC NN_SNAP_MAGIC('N', 'N', 'X')

static void save_ids(nn_writer *w, const int32_t *ids, size_t n)
{
    nn_w_u64(w, n);
    nn_w_bytes(w, ids, n * sizeof *ids);
}

/* Reads n ids into a fresh array, each checked against the vocabulary. */
static shoal_status_t load_ids(nn_reader *r, int32_t vocab, int32_t **ids, size_t *n, size_t *cap)
{
    uint64_t count = nn_r_u64(r);
    const uint8_t *p = nn_r_take(r, count * 4);
    if (!r->ok || count > (1u << 24)) return shoal_fail(SHOAL_E_FORMAT, "nn snapshot: token list is truncated");
    int32_t *a = malloc((count ? count : 1) * sizeof *a);
    if (!a) return shoal_fail(SHOAL_E_NOMEM, "nn snapshot: out of memory");
    memcpy(a, p, count * 4);
    for (uint64_t i = 0; i < count; i++)
        if (a[i] < 0 || a[i] >= vocab) {
            int32_t bad = a[i];
            free(a);
            return shoal_fail(SHOAL_E_FORMAT, "nn snapshot: token id %d outside the vocabulary", bad);
        }
    free(*ids);
    *ids = a;
    *n = count;
    *cap = count ? count : 1;
    return SHOAL_OK;
}

void nn_exec_save(nn_exec_t *e, nn_writer *w)
{
    nn_w_u32(w, EXEC_MAGIC);
    nn_snap_config_save(w, &e->cfg);
    save_ids(w, e->prompt, e->n_prompt);
    save_ids(w, e->out, e->n_out);
    save_ids(w, e->kv_ids, e->eng ? e->n_kv : 0);
    nn_w_u64(w, e->out_bytes);
    nn_w_u32(w, (uint32_t)e->have_output | (uint32_t)e->streaming << 1 | (uint32_t)e->last_valid << 2 |
                    (uint32_t)(e->eng != NULL) << 3);
    nn_w_u32(w, (uint32_t)e->pending);
    nn_w_str(w, e->tail, e->tail_len);
    nn_w_f64(w, e->prompt_ms);
    nn_w_f64(w, e->gen_ms);
    if (e->eng) {
        nn_w_u32(w, (uint32_t)e->eng_ctx);
        nn_w_u32(w, (uint32_t)e->eng_batch);
        nn_w_u32(w, (uint32_t)e->eng_threads);
        nn_snap_kv_save(w, e->eng, e->m->sha256);
    }
    nn_snap_sampler_save(w, e->sampler);
}

shoal_status_t nn_exec_load(shoal_runtime_t *rt, const shoal_nn_model_t *m, nn_reader *r, nn_exec_t **out)
{
    nn_config_t cfg;
    shoal_status_t st = nn_snap_magic_load(r, EXEC_MAGIC, "nn snapshot: wasi-nn context record");
    if (st) return st;
    st = nn_snap_config_load(r, &cfg);
    if (st) return st;
    nn_exec_t *e = NULL;
    if (nn_exec_new(rt, m, &cfg, &e)) return SHOAL_E_NOMEM;
    int32_t vocab = m->llama->hp.vocab;
    st = load_ids(r, vocab, &e->prompt, &e->n_prompt, &e->cap_prompt);
    if (!st) st = load_ids(r, vocab, &e->out, &e->n_out, &e->cap_out);
    int32_t *kv = NULL; /* attached after the cache is built (building one forgets the ids) */
    size_t n_kv = 0, cap_kv = 0;
    if (!st) st = load_ids(r, vocab, &kv, &n_kv, &cap_kv);
    nn_r_u64(r); /* out_bytes: recomputed below, never trusted (get_output sizes guest writes by it) */
    uint32_t flags = nn_r_u32(r);
    e->pending = (int32_t)nn_r_u32(r);
    uint32_t tl = nn_r_u32(r);
    const uint8_t *tail = nn_r_take(r, tl);
    e->prompt_ms = nn_r_f64(r);
    e->gen_ms = nn_r_f64(r);
    if (!st && (!r->ok || tl > TAIL_MAX || e->pending < -1 || e->pending >= vocab))
        st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: bad wasi-nn context record");
    if (!st) {
        e->out_bytes = 0;
        for (size_t i = 0; i < e->n_out; i++) {
            size_t k = 0;
            shoal_tokenizer_token_to_piece(m->tok, e->out[i], true, NULL, 0, &k);
            e->out_bytes += k;
        }
        shoal_clear_error();
        memcpy(e->tail, tail, tl);
        e->tail_len = tl;
        e->have_output = flags & 1;
        e->streaming = (flags >> 1) & 1;
        e->last_valid = (flags >> 2) & 1;
        if (!(flags & 8) && n_kv) st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: cached ids without a cache");
        if (!st && (flags & 8)) {
            int n_ctx = (int)nn_r_u32(r), batch = (int)nn_r_u32(r), threads = (int)nn_r_u32(r);
            if (!r->ok || n_ctx < 1 || n_ctx > (1 << 20) || batch < 1 || batch > (1 << 16) || threads < 0 ||
                threads > 1024)
                st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: bad context parameters");
            else if (build_engine(e, n_ctx, batch, threads))
                st = SHOAL_E_NOMEM;
            else
                st = nn_snap_kv_load(r, e->eng, m->sha256);
            if (!st && n_kv != (size_t)shoal_engine_n_past(e->eng))
                st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: %zu cached token ids for %d cache rows", n_kv,
                                shoal_engine_n_past(e->eng));
            if (!st) {
                free(e->kv_ids);
                e->kv_ids = kv, e->n_kv = n_kv, e->cap_kv = cap_kv;
                kv = NULL;
            }
        }
    }
    if (!st && new_sampler(e)) st = SHOAL_E_INVALID;
    if (!st) st = nn_snap_sampler_load(r, e->sampler);
    if (!st && e->streaming && (!e->eng || e->pending < 0))
        st = shoal_fail(SHOAL_E_FORMAT, "nn snapshot: a stream in progress without its cache");
    free(kv);
    if (st) {
        nn_exec_delete(e);
        return st;
    }
    *out = e;
    return SHOAL_OK;
}
