/* llm_engine.c — dispatch of one LLM sequence to the CPU or the CUDA forward pass (llm_engine.h). */
#include "backend/llm_engine.h"

#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/sha256.h"
#ifdef SHOAL_HAVE_CUDA
#include "backend/cuda/llm_cuda.h"
#endif

struct shoal_engine {
    shoal_device_kind_t device;
    bool kv_external; /* the cache is the caller's memory (a guest's) */
    const shoal_llama_model_t *m;
    shoal_llama_ctx_t *cpu;
#ifdef SHOAL_HAVE_CUDA
    shoal_cuda_llama_ctx_t *cuda;
#endif
    float *scratch; /* CPU greedy: the last logits (vocab,), allocated on first use */
};

void shoal_engine_params_init(shoal_engine_params_t *p)
{
    memset(p, 0, sizeof *p);
    p->device = SHOAL_DEVICE_CPU;
}

shoal_status_t shoal_engine_new(const shoal_llama_model_t *m, const shoal_engine_params_t *p, shoal_engine_t **out)
{
    *out = NULL;
    shoal_engine_params_t def;
    if (!p) shoal_engine_params_init(&def), p = &def;
    shoal_engine_t *e = calloc(1, sizeof *e);
    if (!e) return shoal_fail(SHOAL_E_NOMEM, "engine: out of memory");
    e->m = m;
    e->device = p->device;
    e->kv_external = p->kv_external != NULL;
    shoal_status_t st;
    if (p->device == SHOAL_DEVICE_CPU) {
        shoal_llama_ctx_params_t cp;
        shoal_llama_ctx_params_init(&cp);
        cp.n_ctx = p->n_ctx;
        cp.kv_external = p->kv_external;
        if (p->n_batch > 0) cp.n_batch = p->n_batch;
        st = shoal_llama_ctx_new(m, &cp, p->pool, &e->cpu);
    } else if (p->device == SHOAL_DEVICE_CUDA) {
#ifdef SHOAL_HAVE_CUDA
        shoal_cuda_llama_params_t cp;
        shoal_cuda_llama_params_init(&cp);
        cp.n_ctx = p->n_ctx;
        cp.use_graph = p->cuda_graph;
        cp.kv_mapped = p->kv_external;
        st = shoal_cuda_llama_ctx_new(m, &cp, &e->cuda);
#else
        st = shoal_fail(SHOAL_E_UNSUPPORTED, "engine: this build of Shoal has no CUDA backend (nvcc was not found)");
#endif
    } else {
        st = shoal_fail(SHOAL_E_INVALID, "engine: device %d is not cpu or cuda", (int)p->device);
    }
    if (st != SHOAL_OK) {
        free(e);
        return st;
    }
    *out = e;
    return SHOAL_OK;
}

void shoal_engine_delete(shoal_engine_t *e)
{
    if (!e) return;
    shoal_llama_ctx_delete(e->cpu);
#ifdef SHOAL_HAVE_CUDA
    shoal_cuda_llama_ctx_delete(e->cuda);
#endif
    free(e->scratch);
    free(e);
}

shoal_device_kind_t shoal_engine_device(const shoal_engine_t *e) { return e->device; }
const shoal_llama_model_t *shoal_engine_model(const shoal_engine_t *e) { return e->m; }

/* Every entry point below is either the CPU call or the CUDA one; a CUDA engine exists only in
 * builds with CUDA, so the #else branches are unreachable there. */
#ifdef SHOAL_HAVE_CUDA
#define ON_CUDA(e) ((e)->cuda != NULL)
#else
#define ON_CUDA(e) false
#endif

int shoal_engine_n_past(const shoal_engine_t *e)
{
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_n_past(e->cuda);
#endif
    return shoal_llama_n_past(e->cpu);
}

int shoal_engine_n_ctx(const shoal_engine_t *e)
{
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_n_ctx(e->cuda);
#endif
    return shoal_llama_n_ctx(e->cpu);
}

shoal_status_t shoal_engine_eval(shoal_engine_t *e, const int32_t *tokens, int n, int pos0, float *logits_out,
                                 int logits_mode)
{
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_eval(e->cuda, tokens, n, pos0, logits_out, logits_mode);
#endif
    return shoal_llama_eval(e->cpu, tokens, n, pos0, logits_out, logits_mode);
}

shoal_status_t shoal_engine_eval_greedy(shoal_engine_t *e, const int32_t *tokens, int n, int pos0, int32_t *token_out)
{
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_eval_greedy(e->cuda, tokens, n, pos0, token_out);
#endif
    const int vocab = e->m->hp.vocab;
    if (!e->scratch && !(e->scratch = malloc(sizeof(float) * (size_t)vocab)))
        return shoal_fail(SHOAL_E_NOMEM, "engine: out of memory for %d logits", vocab);
    shoal_status_t st = shoal_llama_eval(e->cpu, tokens, n, pos0, e->scratch, SHOAL_LLAMA_LOGITS_LAST);
    if (st != SHOAL_OK) return st;
    int best = 0;
    for (int i = 1; i < vocab; i++)
        if (e->scratch[i] > e->scratch[best]) best = i;
    *token_out = best;
    return SHOAL_OK;
}

void shoal_engine_reset(shoal_engine_t *e)
{
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) {
        shoal_cuda_llama_reset(e->cuda);
        return;
    }
#endif
    shoal_llama_reset(e->cpu);
}

shoal_status_t shoal_engine_set_n_past(shoal_engine_t *e, int n_past)
{
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_set_n_past(e->cuda, n_past);
#endif
    return shoal_llama_set_n_past(e->cpu, n_past);
}

static shoal_status_t check_rows(const shoal_engine_t *e, int layer, int rows)
{
    if (layer < 0 || layer >= e->m->hp.n_layer)
        return shoal_fail(SHOAL_E_INVALID, "engine: layer %d outside [0, %d)", layer, e->m->hp.n_layer);
    if (rows < 0 || rows > shoal_engine_n_ctx(e))
        return shoal_fail(SHOAL_E_INVALID, "engine: %d cache rows outside [0, %d]", rows, shoal_engine_n_ctx(e));
    return SHOAL_OK;
}

shoal_status_t shoal_engine_kv_host(shoal_engine_t *e, int layer, const float **k, const float **v)
{
    if (ON_CUDA(e)) return shoal_fail(SHOAL_E_UNSUPPORTED, "engine: the KV cache lives on the GPU");
    float *kk, *vv;
    size_t row_bytes;
    shoal_status_t st = shoal_llama_kv_layer(e->cpu, layer, &kk, &vv, &row_bytes);
    if (st != SHOAL_OK) return st;
    *k = kk, *v = vv;
    return SHOAL_OK;
}

shoal_status_t shoal_engine_kv_read(shoal_engine_t *e, int layer, int rows, float *k, float *v)
{
    shoal_status_t st = check_rows(e, layer, rows);
    if (st != SHOAL_OK) return st;
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_kv_read(e->cuda, layer, rows, k, v);
#endif
    const float *ck, *cv;
    if ((st = shoal_engine_kv_host(e, layer, &ck, &cv)) != SHOAL_OK) return st;
    size_t bytes = (size_t)rows * (size_t)e->m->hp.kv_dim * sizeof(float);
    memcpy(k, ck, bytes);
    memcpy(v, cv, bytes);
    return SHOAL_OK;
}

/* The rows are in range and the cache may take a checked write (empty, the engine's own). */
static shoal_status_t check_checked_write(const shoal_engine_t *e, int layer, int rows)
{
    shoal_status_t st = check_rows(e, layer, rows);
    if (st != SHOAL_OK) return st;
    if (e->kv_external || shoal_engine_n_past(e) != 0)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "engine: checked writes need an empty cache of the engine's own");
    return SHOAL_OK;
}

shoal_status_t shoal_engine_kv_write_all_crc(shoal_engine_t *e, int rows, const float *const *k, const float *const *v,
                                             int fd, const uint64_t *off_k, const uint64_t *off_v, uint32_t *crc_k,
                                             uint32_t *crc_v)
{
    shoal_status_t st = check_checked_write(e, 0, rows);
    if (st != SHOAL_OK) return st;
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_kv_write_all_crc(e->cuda, rows, k, v, fd, off_k, off_v, crc_k, crc_v);
#endif
    size_t bytes = (size_t)rows * (size_t)e->m->hp.kv_dim * sizeof(float);
    for (int l = 0; st == SHOAL_OK && l < e->m->hp.n_layer; l++) {
        crc_k[l] = shoal_crc32c_spans(0, &(shoal_span_t){k[l], bytes}, 1);
        crc_v[l] = shoal_crc32c_spans(0, &(shoal_span_t){v[l], bytes}, 1);
        st = shoal_engine_kv_write(e, l, rows, k[l], v[l]);
    }
    return st;
}

shoal_status_t shoal_engine_kv_write(shoal_engine_t *e, int layer, int rows, const float *k, const float *v)
{
    shoal_status_t st = check_rows(e, layer, rows);
    if (st != SHOAL_OK) return st;
#ifdef SHOAL_HAVE_CUDA
    if (ON_CUDA(e)) return shoal_cuda_llama_kv_write(e->cuda, layer, rows, k, v);
#endif
    float *ck, *cv;
    size_t row_bytes;
    if ((st = shoal_llama_kv_layer(e->cpu, layer, &ck, &cv, &row_bytes)) != SHOAL_OK) return st;
    memcpy(ck, k, (size_t)rows * row_bytes);
    memcpy(cv, v, (size_t)rows * row_bytes);
    return SHOAL_OK;
}
