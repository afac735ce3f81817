/* nn_snap.c — version, model, KV cache, sampler and option records of the nn layer's
 * snapshot sections. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/sha256.h"
#include "nn/nn_snap.h"
#include "snapshot/kvcache.h"

shoal_status_t nn_snap_magic_load(nn_reader *r, uint32_t magic, const char *what)
{
    uint32_t got = nn_r_u32(r);
    if (got == magic) return SHOAL_OK;
    if (r->ok && (got & 0xffffffu) == (magic & 0xffffffu)) {
        unsigned char v = (unsigned char)(got >> 24);
        if (v >= '0' && v <= '9')
            return shoal_fail(SHOAL_E_FORMAT, "%s: section version %c, but this build reads version %u%s", what, v,
                              NN_SNAP_VERSION,
                              v < '0' + NN_SNAP_VERSION ? " (take the snapshot again with this build)" : "");
    }
    return shoal_fail(SHOAL_E_FORMAT, "%s: bad section magic", what);
}

void nn_snap_model_save(nn_writer *w, const shoal_nn_model_t *m)
{
    nn_w_str(w, m->name, strlen(m->name));
    nn_w_bytes(w, m->sha256, 32);
}

const shoal_nn_model_t *nn_snap_model_load(nn_reader *r, shoal_runtime_t *rt, const char *what, shoal_status_t *st)
{
    uint32_t n = nn_r_u32(r);
    const uint8_t *name = nn_r_take(r, n);
    const uint8_t *sha = nn_r_take(r, 32);
    int shown = (int)(n > 64 ? 64 : n);
    if (!r->ok) {
        *st = shoal_fail(SHOAL_E_FORMAT, "%s: truncated model reference", what);
        return NULL;
    }
    const shoal_nn_model_t *m = shoal_nn_model_find(rt, (const char *)name, n);
    if (!m) {
        *st = shoal_fail(SHOAL_E_NOT_FOUND, "%s: model \"%.*s\" is not preloaded in this runtime", what, shown,
                         (const char *)name);
        return NULL;
    }
    /* Same name, other bytes: the KV rows and sampler state would silently belong to other
     * weights, so this is refused as firmly as a wrong module. */
    if (memcmp(m->sha256, sha, 32) != 0) {
        char want[65], have[65];
        shoal_hex(sha, 32, want);
        shoal_hex(m->sha256, 32, have);
        *st = shoal_fail(SHOAL_E_FORMAT,
                         "%s: model \"%.*s\" preloaded here (%s, sha256 %.16s...) is not the file the snapshot was "
                         "taken with (sha256 %.16s...); preload the same GGUF under that name",
                         what, shown, (const char *)name, m->path, have, want);
        return NULL;
    }
    *st = SHOAL_OK;
    return m;
}

void nn_snap_kv_save(nn_writer *w, shoal_engine_t *c, const uint8_t model_sha256[32])
{
    size_t at = *w->len;
    nn_w_u64(w, 0);
    if (!w->ok) return;
    /* Serialised straight into the section buffer (no staging copy), then its length patched in. */
    if (shoal_kv_serialize(c, model_sha256, w->buf, w->len) != SHOAL_OK) {
        w->ok = false;
        return;
    }
    if (w->cap < *w->len) w->cap = *w->len;
    uint64_t n = (uint64_t)(*w->len - at - 8);
    memcpy(*w->buf + at, &n, 8);
}

shoal_status_t nn_snap_kv_load(nn_reader *r, shoal_engine_t *c, const uint8_t model_sha256[32])
{
    uint64_t n = nn_r_u64(r);
    const uint8_t *p = nn_r_take(r, n);
    if (!r->ok) return shoal_fail(SHOAL_E_FORMAT, "nn snapshot: KV cache data is truncated");
    shoal_status_t st = shoal_kv_deserialize_from(c, model_sha256, p, (size_t)n, r->src);
    return st == SHOAL_OK ? st : shoal_fail_wrap(st, "nn snapshot");
}

void nn_snap_sampler_save(nn_writer *w, const shoal_sampler_t *s)
{
    size_t n = s ? shoal_sampler_state_size(s) : 0, written = 0;
    uint8_t *tmp = n ? malloc(n) : NULL;
    if (n && (!tmp || shoal_sampler_state_save(s, tmp, n, &written) != SHOAL_OK)) {
        free(tmp);
        w->ok = false;
        return;
    }
    nn_w_u64(w, written);
    nn_w_bytes(w, tmp, written);
    free(tmp);
}

shoal_status_t nn_snap_sampler_load(nn_reader *r, shoal_sampler_t *s)
{
    uint64_t n = nn_r_u64(r);
    const uint8_t *p = nn_r_take(r, n);
    if (!r->ok) return shoal_fail(SHOAL_E_FORMAT, "nn snapshot: sampler state is truncated");
    if (n == 0 || !s) return SHOAL_OK;
    return shoal_sampler_state_load(s, p, n);
}

void nn_snap_config_save(nn_writer *w, const nn_config_t *c)
{
    nn_w_u64(w, (uint64_t)(int64_t)c->ctx_size);
    nn_w_u64(w, (uint64_t)c->n_predict);
    nn_w_u64(w, (uint64_t)(int64_t)c->batch_size);
    nn_w_u64(w, (uint64_t)(int64_t)c->threads);
    nn_w_f64(w, c->temp);
    nn_w_f64(w, c->top_p);
    nn_w_f64(w, c->repeat_penalty);
    nn_w_u64(w, c->seed);
    nn_w_u64(w, (uint64_t)c->n_gpu_layers);
    nn_w_u32(w, (uint32_t)c->enable_log | (uint32_t)c->stream_stdout << 1);
    nn_w_str(w, c->reverse_prompt, c->reverse_len);
}

shoal_status_t nn_snap_config_load(nn_reader *r, nn_config_t *c)
{
    nn_config_t n;
    nn_config_defaults(&n);
    int64_t ctx = (int64_t)nn_r_u64(r), pred = (int64_t)nn_r_u64(r), batch = (int64_t)nn_r_u64(r),
            threads = (int64_t)nn_r_u64(r);
    n.temp = (float)nn_r_f64(r);
    n.top_p = (float)nn_r_f64(r);
    n.repeat_penalty = (float)nn_r_f64(r);
    n.seed = nn_r_u64(r);
    n.n_gpu_layers = (int64_t)nn_r_u64(r);
    uint32_t flags = nn_r_u32(r);
    uint32_t rl = nn_r_u32(r);
    const uint8_t *rp = nn_r_take(r, rl);
    if (!r->ok || ctx < 0 || ctx > (1 << 20) || batch < 1 || batch > (1 << 16) || threads < 0 || threads > 1024 ||
        rl > NN_REVERSE_PROMPT_MAX || n.n_gpu_layers < NN_GPU_LAYERS_UNSET || n.n_gpu_layers > INT32_MAX)
        return shoal_fail(SHOAL_E_FORMAT, "nn snapshot: bad wasi-nn options record");
    n.ctx_size = (int)ctx;
    n.n_predict = pred;
    n.batch_size = (int)batch;
    n.threads = (int)threads;
    n.enable_log = flags & 1;
    n.stream_stdout = (flags >> 1) & 1;
    memcpy(n.reverse_prompt, rp, rl);
    n.reverse_prompt[rl] = '\0';
    n.reverse_len = rl;
    *c = n;
    return SHOAL_OK;
}
