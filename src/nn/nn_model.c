/* nn_model.c — the runtime's registry of named models (shoal_runtime_preload_model). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "nn/nn_model.h"
#include "snapshot/kvcache.h"

#define MAX_MODELS 64

typedef struct nn_registry {
    pthread_mutex_t lock;
    shoal_nn_model_t *models[MAX_MODELS];
    int n;
    shoal_threadpool_t *own_pool; /* only when the backend has no CPU pool */
    bool pool_checked;
} nn_registry;

static void model_delete(shoal_nn_model_t *m)
{
    if (!m) return;
    shoal_tokenizer_delete(m->tok);
    shoal_llama_model_delete(m->llama);
    shoal_gguf_close(m->gguf);
    free(m->name);
    free(m->path);
    free(m);
}

static void registry_free(void *p)
{
    nn_registry *r = p;
    for (int i = 0; i < r->n; i++) model_delete(r->models[i]);
    shoal_threadpool_delete(r->own_pool);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

static nn_registry *registry(shoal_runtime_t *rt, bool create)
{
    /* Created on the first preload, before any instance exists, so no race on the slot. */
    if (!rt->ext[SHOAL_EXT_NN] && create) {
        nn_registry *r = calloc(1, sizeof *r);
        if (!r) return NULL;
        pthread_mutex_init(&r->lock, NULL);
        rt->ext[SHOAL_EXT_NN] = r;
        rt->ext_free[SHOAL_EXT_NN] = registry_free;
    }
    return rt->ext[SHOAL_EXT_NN];
}

static bool valid_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 255) return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)name[i] < 0x20 || name[i] == ':') return false;
    return true;
}

shoal_status_t shoal_runtime_preload_model(shoal_runtime_t *rt, const char *name, const char *path)
{
    return shoal_runtime_preload_model_on(rt, name, path, SHOAL_DEVICE_AUTO);
}

shoal_status_t shoal_runtime_preload_model_on(shoal_runtime_t *rt, const char *name, const char *path,
                                              shoal_device_kind_t device)
{
    if (!rt || !name || !path) return shoal_fail(SHOAL_E_INVALID, "preload: NULL argument");
    if (device != SHOAL_DEVICE_CPU && device != SHOAL_DEVICE_CUDA && device != SHOAL_DEVICE_AUTO)
        return shoal_fail(SHOAL_E_INVALID, "preload: device %d is not cpu, cuda or auto", (int)device);
    if (!valid_name(name))
        return shoal_fail(SHOAL_E_INVALID, "preload: model name \"%s\" must be 1-255 printable characters without ':'",
                          name);
    nn_registry *r = registry(rt, true);
    if (!r) return shoal_fail(SHOAL_E_NOMEM, "preload: out of memory");
    if (shoal_nn_model_find(rt, name, strlen(name)))
        return shoal_fail(SHOAL_E_INVALID, "preload: a model named \"%s\" is already loaded", name);
    shoal_nn_model_t *m = calloc(1, sizeof *m);
    if (!m || !(m->name = strdup(name)) || !(m->path = strdup(path))) {
        model_delete(m);
        return shoal_fail(SHOAL_E_NOMEM, "preload: out of memory");
    }
    shoal_status_t st = shoal_gguf_open(path, &m->gguf);
    if (st == SHOAL_OK) st = shoal_llama_model_new(m->gguf, &m->llama);
    if (st == SHOAL_OK) st = shoal_tokenizer_new_from_gguf(m->gguf, &m->tok);
    if (st != SHOAL_OK) {
        model_delete(m);
        return shoal_fail_wrap(st, "preload %s (%s)", name, path);
    }
    if (shoal_tokenizer_n_vocab(m->tok) != m->llama->hp.vocab) {
        int nv = shoal_tokenizer_n_vocab(m->tok), mv = m->llama->hp.vocab;
        model_delete(m);
        return shoal_fail(SHOAL_E_FORMAT, "preload %s (%s): tokenizer has %d tokens but the model %d", name, path,
                          nv, mv);
    }
    /* One pass over the mapping (tens of ms for 100 MB with the SHA extensions); every
     * snapshot of every actor on this model then costs nothing for its identity. */
    shoal_model_sha256(m->gguf, m->sha256);
    /* A model without a recognised chat template still serves raw prompts. */
    m->has_chat = shoal_chat_template_from_gguf(m->gguf, &m->chat) == SHOAL_OK;
    shoal_clear_error();
    m->device = device;
    pthread_mutex_lock(&r->lock);
    if (r->n == MAX_MODELS) {
        pthread_mutex_unlock(&r->lock);
        model_delete(m);
        return shoal_fail(SHOAL_E_LIMIT, "preload: at most %d models per runtime", MAX_MODELS);
    }
    r->models[r->n++] = m;
    pthread_mutex_unlock(&r->lock);
    return SHOAL_OK;
}

const shoal_nn_model_t *shoal_nn_model_find(shoal_runtime_t *rt, const char *name, size_t len)
{
    nn_registry *r = registry(rt, false);
    if (!r) return NULL;
    const shoal_nn_model_t *found = NULL;
    pthread_mutex_lock(&r->lock);
    for (int i = 0; i < r->n && !found; i++)
        if (strlen(r->models[i]->name) == len && memcmp(r->models[i]->name, name, len) == 0) found = r->models[i];
    pthread_mutex_unlock(&r->lock);
    return found;
}

shoal_threadpool_t *shoal_nn_pool(shoal_runtime_t *rt)
{
    shoal_threadpool_t *p = shoal_cpu_backend_pool(rt->backend);
    if (p) return p;
    nn_registry *r = registry(rt, false);
    if (!r) return NULL;
    pthread_mutex_lock(&r->lock);
    if (!r->pool_checked) {
        r->pool_checked = true;
        if (shoal_threadpool_new(rt->cfg.threads, &r->own_pool) != SHOAL_OK) r->own_pool = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    return r->own_pool;
}

int shoal_nn_default_ctx(const shoal_nn_model_t *m)
{
    int t = m->llama->hp.n_ctx_train;
    return t > 0 && t < 4096 ? t : 4096;
}

static const char *device_name(shoal_device_kind_t d) { return d == SHOAL_DEVICE_CUDA ? "cuda" : "cpu"; }

shoal_status_t shoal_nn_engine_new(shoal_runtime_t *rt, const shoal_nn_model_t *m, shoal_device_kind_t want,
                                   bool strict, const shoal_engine_params_t *p, const char *who,
                                   shoal_engine_t **out)
{
    shoal_engine_params_t ep = *p;
    shoal_device_kind_t d = want;
    if (d == SHOAL_DEVICE_AUTO) {
        d = m->device;
        strict = d == SHOAL_DEVICE_CUDA;
    }
    /* A runtime whose backend owns device memory is the GPU runtime (--device cuda/auto found one). */
    if (d == SHOAL_DEVICE_AUTO) d = rt->backend->ops->caps & SHOAL_CAP_DEVICE_MEM ? SHOAL_DEVICE_CUDA : SHOAL_DEVICE_CPU;
    ep.device = d;
    /* Greedy single-token steps (llm_eval_greedy) replay a captured CUDA graph: one launch instead
     * of ~15 per layer. A capture that fails leaves the context on plain launches. */
    ep.cuda_graph = true;
    shoal_status_t st = shoal_engine_new(m->llama, &ep, out);
    if (st == SHOAL_OK || d != SHOAL_DEVICE_CUDA || strict || st == SHOAL_E_NOMEM)
        return st == SHOAL_OK ? st
                              : shoal_fail_wrap(st, "%s: model \"%s\" on %s (%d positions)", who, m->name,
                                                device_name(d), p->n_ctx);
    fprintf(stderr, "shoal: %s: model \"%s\" cannot run on the GPU (%s); running it on the CPU\n", who, m->name,
            shoal_last_error());
    ep.device = SHOAL_DEVICE_CPU;
    st = shoal_engine_new(m->llama, &ep, out);
    return st == SHOAL_OK ? st : shoal_fail_wrap(st, "%s: model \"%s\" on cpu (%d positions)", who, m->name, p->n_ctx);
}
