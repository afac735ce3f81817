/* llm_weights.c — the per-process shared weight upload of llm_weights.h: each matrix repacked on
 * the host into the layout llm_kernels.h describes and copied into one device allocation per model
 * and device, reference-counted by the contexts that use it. */
#include "backend/cuda/llm_weights.h"
#include "backend/cuda/llm_cuda.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static cu_weights_t *g_weights;

/* Device bytes of one repacked matrix (payload, scales, minimums, each 256-byte aligned). */
static size_t mat_bytes(const shoal_llama_mat_t *w)
{
    const size_t rows = (size_t)w->n_out, nb = (size_t)w->n_in / 32, payload = cu_row_payload(w->type, w->n_in);
    // f16 planes after the payload: scales (quantised types), and minimums (Q4_1)
    const size_t planes = w->type == SHOAL_GGML_Q4_1 ? 2 : w->type == SHOAL_GGML_F16 || w->type == SHOAL_GGML_BF16 ? 0 : 1;
    return payload ? align256(rows * payload) + planes * align256(rows * nb * 2) : 0;
}

static shoal_status_t check_mat(const shoal_llama_mat_t *w, const char *name, int layer)
{
    if (!mat_bytes(w))
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda llm: %s of layer %d has type %s; the GPU kernels take F16, BF16, "
                          "Q8_0, Q4_0 and Q4_1", name, layer, shoal_qtype_name(w->type));
    if (w->n_in % 32)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda llm: %s of layer %d has rows of %d, not a multiple of 32", name,
                          layer, w->n_in);
    return SHOAL_OK;
}

/* Repacks w into host staging `h` (mat_bytes) and points `out` at the same layout at device `d`. */
static void repack(const shoal_llama_mat_t *w, uint8_t *h, uint8_t *d, shoal_cu_mat_t *out)
{
    const size_t rows = (size_t)w->n_out, n = (size_t)w->n_in, nb = n / 32;
    memset(out, 0, sizeof *out);
    out->type = w->type;
    out->n_in = w->n_in;
    out->n_out = w->n_out;
    out->qs = d;
    if (w->type == SHOAL_GGML_F16 || w->type == SHOAL_GGML_BF16) {
        for (size_t r = 0; r < rows; r++)
            memcpy(h + r * n * 2, (const uint8_t *)w->data + r * w->row_bytes, n * 2);
        return;
    }
    const size_t qs_row = cu_row_payload(w->type, w->n_in), qs_blk = qs_row / nb;
    const size_t d_off = align256(rows * qs_row), m_off = d_off + align256(rows * nb * 2);
    out->d = d + d_off;
    if (w->type == SHOAL_GGML_Q4_1)
        out->m = d + m_off;
    const size_t hdr = w->type == SHOAL_GGML_Q4_1 ? 4 : 2, blk = hdr + qs_blk;
    for (size_t r = 0; r < rows; r++) {
        const uint8_t *src = (const uint8_t *)w->data + r * w->row_bytes;
        for (size_t b = 0; b < nb; b++, src += blk) {
            memcpy(h + r * qs_row + b * qs_blk, src + hdr, qs_blk);
            memcpy(h + d_off + (r * nb + b) * 2, src, 2);
            if (hdr == 4)
                memcpy(h + m_off + (r * nb + b) * 2, src + 2, 2);
        }
    }
}

static shoal_status_t upload(const shoal_llama_model_t *m, int device, cu_weights_t **out)
{
    const shoal_llama_hparams_t *hp = &m->hp;
    const char *names[7] = {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
    shoal_status_t s;
    if ((s = check_mat(&m->tok_embd, "token_embd", -1)) || (s = check_mat(&m->output, "output", -1)))
        return s;
    size_t total = mat_bytes(&m->tok_embd) + (m->tied_output ? 0 : mat_bytes(&m->output));
    size_t max_mat = mat_bytes(&m->tok_embd) > mat_bytes(&m->output) ? mat_bytes(&m->tok_embd) : mat_bytes(&m->output);
    for (int l = 0; l < hp->n_layer; l++) {
        const shoal_llama_mat_t *ws[7] = {&m->layers[l].wq, &m->layers[l].wk, &m->layers[l].wv, &m->layers[l].wo,
                                          &m->layers[l].w_gate, &m->layers[l].w_up, &m->layers[l].w_down};
        for (int i = 0; i < 7; i++) {
            if ((s = check_mat(ws[i], names[i], l)))
                return s;
            total += mat_bytes(ws[i]);
            if (mat_bytes(ws[i]) > max_mat)
                max_mat = mat_bytes(ws[i]);
        }
    }
    const size_t norm_bytes = align256(((size_t)2 * hp->n_layer + 1) * (size_t)hp->dim * sizeof(float));
    total += norm_bytes + align256((size_t)hp->rope_dim / 2 * sizeof(float));

    cu_weights_t *w = calloc(1, sizeof *w);
    uint8_t *stage = malloc(max_mat > norm_bytes ? max_mat : norm_bytes);
    if (w)
        w->layers = calloc((size_t)hp->n_layer, sizeof *w->layers);
    if (!w || !stage || !w->layers) {
        free(stage);
        if (w)
            free(w->layers);
        free(w);
        return shoal_fail(SHOAL_E_NOMEM, "cuda llm: out of host memory preparing the weight upload");
    }
    w->model = m;
    w->device = device;
    w->bytes = total;
    cudaError_t e = cudaMalloc(&w->base, total);
    if (e != cudaSuccess) {
        size_t free_b = 0, all_b = 0;
        cudaGetLastError(); /* an allocation failure is not sticky: clear it */
        cudaMemGetInfo(&free_b, &all_b);
        free(stage);
        free(w->layers);
        free(w);
        if (e == cudaErrorMemoryAllocation)
            return shoal_fail(SHOAL_E_NOMEM, "cuda llm: device out of memory for the weights: need %.1f MiB, %.1f MiB "
                              "free of %.1f MiB", total / 1048576.0, free_b / 1048576.0, all_b / 1048576.0);
        return cuda_fail(e, "cudaMalloc (weights)");
    }
    uint8_t *d = w->base;
#define PUT(src, dst)                                                                                          \
    do {                                                                                                       \
        size_t nb_ = mat_bytes(src);                                                                           \
        repack(src, stage, d, dst);                                                                            \
        if ((e = cudaMemcpy(d, stage, nb_, cudaMemcpyHostToDevice)) != cudaSuccess)                            \
            goto fail;                                                                                         \
        d += nb_;                                                                                              \
    } while (0)
    PUT(&m->tok_embd, &w->tok_embd);
    if (m->tied_output)
        w->output = w->tok_embd;
    else
        PUT(&m->output, &w->output);
    for (int l = 0; l < hp->n_layer; l++) {
        const shoal_llama_layer_t *L = &m->layers[l];
        cu_layer_t *C = &w->layers[l];
        PUT(&L->wq, &C->wq);
        PUT(&L->wk, &C->wk);
        PUT(&L->wv, &C->wv);
        PUT(&L->wo, &C->wo);
        PUT(&L->w_gate, &C->gate);
        PUT(&L->w_up, &C->up);
        PUT(&L->w_down, &C->down);
    }
#undef PUT
    {
        float *nh = (float *)stage, *nd = (float *)d;
        const size_t dim = (size_t)hp->dim;
        for (int l = 0; l < hp->n_layer; l++) {
            memcpy(nh + (2 * (size_t)l) * dim, m->layers[l].attn_norm, dim * sizeof(float));
            memcpy(nh + (2 * (size_t)l + 1) * dim, m->layers[l].ffn_norm, dim * sizeof(float));
            w->layers[l].attn_norm = nd + (2 * (size_t)l) * dim;
            w->layers[l].ffn_norm = nd + (2 * (size_t)l + 1) * dim;
        }
        memcpy(nh + 2 * (size_t)hp->n_layer * dim, m->output_norm, dim * sizeof(float));
        w->output_norm = nd + 2 * (size_t)hp->n_layer * dim;
        if ((e = cudaMemcpy(d, stage, norm_bytes, cudaMemcpyHostToDevice)) != cudaSuccess)
            goto fail;
        d += norm_bytes;
        if ((e = cudaMemcpy(d, m->rope_inv_freq, (size_t)hp->rope_dim / 2 * sizeof(float), cudaMemcpyHostToDevice)))
            goto fail;
        w->inv_freq = (const float *)d;
    }
    free(stage);
    *out = w;
    return SHOAL_OK;
fail:
    free(stage);
    cudaFree(w->base);
    free(w->layers);
    free(w);
    return cuda_fail(e, "uploading the weights");
}

shoal_status_t shoal_cu_weights_acquire(const shoal_llama_model_t *m, int device, cu_weights_t **out)
{
    pthread_mutex_lock(&g_lock);
    cu_weights_t *w = g_weights;
    while (w && !(w->model == m && w->device == device))
        w = w->next;
    shoal_status_t s = SHOAL_OK;
    if (!w && !(s = upload(m, device, &w))) {
        w->next = g_weights;
        g_weights = w;
    }
    if (!s)
        w->refs++;
    pthread_mutex_unlock(&g_lock);
    *out = w;
    return s;
}

void shoal_cu_weights_release(cu_weights_t *w)
{
    pthread_mutex_lock(&g_lock);
    if (--w->refs == 0) {
        cu_weights_t **p = &g_weights;
        while (*p != w)
            p = &(*p)->next;
        *p = w->next;
        cudaFree(w->base);
        free(w->layers);
        free(w);
    }
    pthread_mutex_unlock(&g_lock);
}

size_t shoal_cuda_llama_weight_bytes(const shoal_llama_model_t *m)
{
    size_t n = 0;
    pthread_mutex_lock(&g_lock);
    for (cu_weights_t *w = g_weights; w; w = w->next)
        if (w->model == m)
            n += w->bytes;
    pthread_mutex_unlock(&g_lock);
    return n;
}
