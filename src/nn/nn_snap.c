/* nn_snap.c — KV cache, sampler and option records of the nn layer's snapshot sections. */
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/nn_snap.h"

void nn_snap_kv_save(nn_writer *w, shoal_llama_ctx_t *c)
{
    const shoal_llama_model_t *m = shoal_llama_ctx_model(c);
    int n_past = shoal_llama_n_past(c);
    float *k, *v;
    size_t row = 0;
    shoal_llama_kv_layer(c, 0, &k, &v, &row);
    nn_w_u32(w, (uint32_t)m->hp.n_layer);
    nn_w_u64(w, row);
    nn_w_u32(w, (uint32_t)n_past);
    for (int l = 0; l < m->hp.n_layer; l++) {
        shoal_llama_kv_layer(c, l, &k, &v, &row);
        nn_w_bytes(w, k, row * (size_t)n_past);
        nn_w_bytes(w, v, row * (size_t)n_past);
    }
}

shoal_status_t nn_snap_kv_load(nn_reader *r, shoal_llama_ctx_t *c)
{
    const shoal_llama_model_t *m = shoal_llama_ctx_model(c);
    uint32_t n_layer = nn_r_u32(r);
    uint64_t row_saved = nn_r_u64(r);
    uint32_t n_past = nn_r_u32(r);
    float *k, *v;
    size_t row = 0;
    shoal_llama_kv_layer(c, 0, &k, &v, &row);
    if (!r->ok || n_layer != (uint32_t)m->hp.n_layer || row_saved != row || n_past > (uint32_t)shoal_llama_n_ctx(c))
        return shoal_fail(SHOAL_E_FORMAT, "nn snapshot: KV cache of %u layers x %llu-byte rows x %u positions does not "
                                          "fit this model's context (%d layers, %zu-byte rows, %d positions)",
                          n_layer, (unsigned long long)row_saved, n_past, m->hp.n_layer, row, shoal_llama_n_ctx(c));
    /* Check the whole payload is there before writing a row. */
    const uint8_t *start = r->p;
    if (!nn_r_take(r, (uint64_t)row * n_past * 2 * n_layer))
        return shoal_fail(SHOAL_E_FORMAT, "nn snapshot: KV cache data is truncated");
    const uint8_t *p = start;
    for (uint32_t l = 0; l < n_layer; l++) {
        shoal_llama_kv_layer(c, (int)l, &k, &v, &row);
        memcpy(k, p, row * n_past);
        p += row * n_past;
        memcpy(v, p, row * n_past);
        p += row * n_past;
    }
    return shoal_llama_set_n_past(c, (int)n_past);
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
        rl > NN_REVERSE_PROMPT_MAX)
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
