/* llm_cuda.c — Llama contexts on a CUDA GPU over the shared weights of llm_weights.c: per-context
 * KV cache and scratch, the decode loop (matrix-vector kernels, one token at a time) and batched
 * prefill (each weight matrix dequantised to float32 into a per-context scratch and multiplied with
 * cuBLAS SGEMM against up to n_batch tokens, so the weights are streamed once per chunk instead of
 * once per token). */
#include "backend/cuda/llm_cuda.h"

#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include "backend/cuda/kv_stage.h"
#include "backend/cuda/llm_kernels.h"
#include "backend/cuda/llm_weights.h"
#include "core/error.h"
#include "core/sha256.h"

/* ---------------------------------------------------------------- contexts */

struct shoal_cuda_llama_ctx {
    const shoal_llama_model_t *m;
    cu_weights_t *w;
    int device, n_ctx, n_past;
    bool dead;
    cudaStream_t stream;
    float *kv;      /* device or mapped host: (n_layer, 2, n_ctx, kv_dim) */
    bool kv_owned;
    void *scratch;  /* device: x, xb, q, k, v, att, hb, hb2, logits */
    float *x, *xb, *q, *k, *v, *att, *hb, *hb2, *logits;
    int32_t *d_io;  /* device: tokens (n_ctx), positions (n_ctx), argmax out, argmax scratch */
    void *att_scratch; /* device: the decode attention's chunk partials and tickets (zeroed) */
    /* batched prefill (n_batch > 1): activations of up to n_batch tokens and one dequantised matrix,
     * allocated by the first prefill of more than one token (a context restored or forked only to
     * decode never holds them) */
    int n_batch;
    bool prefill_tf32;
    cublasHandle_t blas;
    void *bscratch;
    float *bx, *bxb, *bq, *bk, *bv, *batt, *bhb, *bhb2, *wf32;
    int32_t *h_io;  /* pinned host mirror of d_io */
    bool host_io;   /* h_io is device-addressable: a one-token step reads its token and position
                     * from it and the argmax writes the greedy token to it (no copy nodes) */
    bool use_graph, graph_tried, graph_ready;
    bool fused; /* decode through the fused kernels (norm + QKV, norm + gate/up + SwiGLU) */
    bool pdl;   /* programmatic dependent launch for this context's kernels */
    cudaGraphExec_t graph; /* the greedy decode step (capture_decode_graph) */
};

void shoal_cuda_llama_params_init(shoal_cuda_llama_params_t *p)
{
    memset(p, 0, sizeof *p);
    /* the fused kernels with programmatic dependent launch: the fastest decode measured
     * (bench/RESULTS-cuda-llm.md); the separate kernels with plain launches stay as the reference
     * that test_fused_decode compares them with */
    p->fused = true;
    p->pdl = true;
    const char *tf32 = getenv("SHOAL_CUDA_PREFILL_TF32");
    p->prefill_tf32 = tf32 && !strcmp(tf32, "1");
}

size_t shoal_cuda_llama_kv_bytes(const shoal_llama_model_t *m, int n_ctx)
{
    return (size_t)m->hp.n_layer * 2 * (size_t)n_ctx * (size_t)m->hp.kv_dim * sizeof(float);
}

void shoal_cuda_llama_ctx_delete(shoal_cuda_llama_ctx_t *c)
{
    if (!c)
        return;
    if (c->stream)
        cudaStreamSynchronize(c->stream);
    if (c->graph_ready)
        cudaGraphExecDestroy(c->graph);
    if (c->kv_owned)
        cudaFree(c->kv);
    if (c->blas)
        cublasDestroy(c->blas);
    cudaFree(c->bscratch);
    cudaFree(c->scratch);
    cudaFree(c->att_scratch);
    cudaFree(c->d_io);
    cudaFreeHost(c->h_io);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    if (c->w)
        shoal_cu_weights_release(c->w);
    free(c);
}

static shoal_status_t dev_alloc(void **p, size_t bytes, const char *what)
{
    cudaError_t e = cudaMalloc(p, bytes);
    if (e == cudaSuccess)
        return SHOAL_OK;
    cudaGetLastError();
    size_t free_b = 0, all_b = 0;
    cudaMemGetInfo(&free_b, &all_b);
    if (e == cudaErrorMemoryAllocation)
        return shoal_fail(SHOAL_E_NOMEM, "cuda llm: device out of memory for the %s: need %.1f MiB, %.1f MiB free", what,
                          bytes / 1048576.0, free_b / 1048576.0);
    return cuda_fail(e, what);
}

/* Scratch for batched prefill: activations of n_batch tokens and the largest layer matrix in
 * float32, plus a cuBLAS handle on the context's stream. */
static shoal_status_t batch_setup(shoal_cuda_llama_ctx_t *c, bool tf32)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    const size_t nb = (size_t)c->n_batch, wide = (size_t)(hp->dim > hp->q_dim ? hp->dim : hp->q_dim);
    size_t wmax = 0;
    const cu_layer_t *L = &c->w->layers[0];
    const shoal_cu_mat_t *ms[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->gate, &L->up, &L->down};
    for (int i = 0; i < 7; i++)
        if ((size_t)ms[i]->n_in * ms[i]->n_out > wmax)
            wmax = (size_t)ms[i]->n_in * ms[i]->n_out;
    size_t sizes[9] = {nb * hp->dim, nb * wide, nb * hp->q_dim, nb * hp->kv_dim, nb * hp->kv_dim,
                       nb * hp->q_dim, nb * hp->ffn_dim, nb * hp->ffn_dim, wmax};
    size_t total = 0;
    for (int i = 0; i < 9; i++)
        total += align256(sizes[i] * sizeof(float));
    shoal_status_t s = dev_alloc(&c->bscratch, total, "batched prefill scratch");
    if (s)
        return shoal_fail_append(s, "note: %zu MiB for prefill chunks of %d tokens (the context's n_batch)",
                                 total >> 20, c->n_batch);
    float **ptrs[9] = {&c->bx, &c->bxb, &c->bq, &c->bk, &c->bv, &c->batt, &c->bhb, &c->bhb2, &c->wf32};
    uint8_t *at = c->bscratch;
    for (int i = 0; i < 9; i++) {
        *ptrs[i] = (float *)at;
        at += align256(sizes[i] * sizeof(float));
    }
    cublasStatus_t b = cublasCreate(&c->blas);
    if (b != CUBLAS_STATUS_SUCCESS) {
        c->blas = NULL;
        s = b == CUBLAS_STATUS_ALLOC_FAILED
                ? shoal_fail(SHOAL_E_NOMEM, "cuda llm: device out of memory for cuBLAS's workspace (prefill)")
                : shoal_fail(SHOAL_E_DEVICE, "cuda llm: cuBLAS could not start (status %d)", (int)b);
    } else if ((b = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS ||
               (b = cublasSetMathMode(c->blas, tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_PEDANTIC_MATH)) !=
                   CUBLAS_STATUS_SUCCESS) {
        /* By default plain float32 (no TF32 tensor-core rounding): prefill then agrees with the
         * decode kernels; prefill_tf32 trades that for the tensor cores. */
        s = shoal_fail(SHOAL_E_DEVICE, "cuda llm: cuBLAS set-up failed (status %d)", (int)b);
    }
    if (s) { /* nothing half-made stays: the next prefill tries again */
        if (c->blas)
            cublasDestroy(c->blas);
        c->blas = NULL;
        cudaFree(c->bscratch);
        c->bscratch = NULL;
    }
    return s;
}

shoal_status_t shoal_cuda_llama_ctx_new(const shoal_llama_model_t *m, const shoal_cuda_llama_params_t *p,
                                        shoal_cuda_llama_ctx_t **out)
{
    if (!m || !out)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: NULL argument");
    shoal_cuda_llama_params_t defaults;
    if (!p) {
        shoal_cuda_llama_params_init(&defaults);
        p = &defaults;
    }
    const shoal_llama_hparams_t *hp = &m->hp;
    if (hp->head_dim > 256 || hp->dim % 4 || hp->q_dim % 4)
        return shoal_fail(SHOAL_E_UNSUPPORTED, "cuda llm: head dimension %d (max 256) or width %d not supported",
                          hp->head_dim, hp->dim);
    int n_ctx = p->n_ctx > 0 ? p->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    if (n_ctx > 32768)
        return shoal_fail(SHOAL_E_LIMIT, "cuda llm: n_ctx %d is over the attention kernel's 32768", n_ctx);
    if (p->kv_mapped && ((uintptr_t)p->kv_mapped & 15))
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: kv_mapped must be 16-byte aligned");
    cudaError_t e = cudaSetDevice(p->device);
    if (e != cudaSuccess)
        return cuda_fail(e, "cudaSetDevice");
    shoal_cuda_llama_ctx_t *c = calloc(1, sizeof *c);
    if (!c)
        return shoal_fail(SHOAL_E_NOMEM, "cuda llm: out of memory");
    c->m = m;
    c->device = p->device;
    c->n_ctx = n_ctx;
    c->use_graph = p->use_graph;
    shoal_status_t s = shoal_cu_weights_acquire(m, p->device, &c->w);
    if (s) {
        free(c);
        return s;
    }
    if ((e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        s = cuda_fail(e, "cudaStreamCreate");
        goto fail;
    }
    if (p->kv_mapped) {
        /* Mapped memory must be device-addressable at the same address (registered Mapped). */
        struct cudaPointerAttributes a;
        if (cudaPointerGetAttributes(&a, p->kv_mapped) != cudaSuccess || a.type != cudaMemoryTypeHost ||
            a.devicePointer != (void *)p->kv_mapped) {
            cudaGetLastError();
            s = shoal_fail(SHOAL_E_INVALID, "cuda llm: kv_mapped %p is not host memory registered for device access",
                           (void *)p->kv_mapped);
            goto fail;
        }
        c->kv = p->kv_mapped;
    } else {
        if ((s = dev_alloc((void **)&c->kv, shoal_cuda_llama_kv_bytes(m, n_ctx), "KV cache")))
            goto fail;
        c->kv_owned = true;
    }
    size_t sizes[9] = {(size_t)hp->dim,    (size_t)(hp->dim > hp->q_dim ? hp->dim : hp->q_dim),
                       (size_t)hp->q_dim,  (size_t)hp->kv_dim,
                       (size_t)hp->kv_dim, (size_t)hp->q_dim,
                       (size_t)hp->ffn_dim, (size_t)hp->ffn_dim,
                       (size_t)hp->vocab};
    size_t total = 0;
    for (int i = 0; i < 9; i++)
        total += align256(sizes[i] * sizeof(float));
    const size_t att_bytes = shoal_cu_rope_attention_scratch(hp->n_head, hp->head_dim, n_ctx);
    if ((s = dev_alloc(&c->att_scratch, att_bytes, "attention scratch")))
        goto fail;
    if ((e = cudaMemset(c->att_scratch, 0, att_bytes)) != cudaSuccess) {
        s = cuda_fail(e, "cudaMemset");
        goto fail;
    }
    if ((s = dev_alloc(&c->scratch, total, "activations")) ||
        (s = dev_alloc((void **)&c->d_io, ((size_t)2 * n_ctx + 1 + SHOAL_CU_ARGMAX_SCRATCH) * sizeof(int32_t),
                       "token buffer")))
        goto fail;
    /* the argmax's ticket starts at zero (the kernel resets it after each use) */
    if ((e = cudaMemset(c->d_io + 2 * (size_t)n_ctx + 1, 0, SHOAL_CU_ARGMAX_SCRATCH * sizeof(int32_t))) != cudaSuccess) {
        s = cuda_fail(e, "cudaMemset");
        goto fail;
    }
    if ((e = cudaMallocHost((void **)&c->h_io, ((size_t)2 * n_ctx + 1) * sizeof(int32_t))) != cudaSuccess) {
        s = cuda_fail(e, "cudaMallocHost");
        goto fail;
    }
    {
        /* pinned memory is device-addressable at the same address under unified addressing;
         * SHOAL_CUDA_HOST_IO=0 keeps the copy nodes (an experiment switch) */
        struct cudaPointerAttributes a;
        const char *env = getenv("SHOAL_CUDA_HOST_IO");
        c->host_io = !(env && !strcmp(env, "0")) && cudaPointerGetAttributes(&a, c->h_io) == cudaSuccess &&
                     a.type == cudaMemoryTypeHost && a.devicePointer == (void *)c->h_io;
        cudaGetLastError();
    }
    float **ptrs[9] = {&c->x, &c->xb, &c->q, &c->k, &c->v, &c->att, &c->hb, &c->hb2, &c->logits};
    uint8_t *at = c->scratch;
    for (int i = 0; i < 9; i++) {
        *ptrs[i] = (float *)at;
        at += align256(sizes[i] * sizeof(float));
    }
    if ((e = shoal_cu_attention_prepare(n_ctx)) != cudaSuccess) {
        s = cuda_fail(e, "attention setup");
        goto fail;
    }
    c->fused = p->fused;
    c->pdl = p->pdl;
    /* 1024 by default: per chunk every matrix is dequantised once and each attention launch has
     * n_batch / 64 query tiles per head, so longer chunks fill the GPU (H100, 1024 vs 256: pp512
     * 1.2-1.5x, pp4096 1.4-2.8x; bench/RESULTS-cuda-llm.md, run 21). No more than the context
     * holds: the chunk's scratch is sized by it. */
    const int nb = p->n_batch == 0 ? 1024 : p->n_batch < 1 ? 1 : p->n_batch > 1024 ? 1024 : p->n_batch;
    c->n_batch = nb < n_ctx ? nb : n_ctx;
    c->prefill_tf32 = p->prefill_tf32;
    *out = c;
    return SHOAL_OK;
fail:
    shoal_cuda_llama_ctx_delete(c);
    return s;
}

/* ---------------------------------------------------------------- forward */

/* Layer l's K and V cache rows: (n_ctx, kv_dim) each, K then V. */
static void layer_cache(const shoal_cuda_llama_ctx_t *c, int l, float **kc, float **vc)
{
    const size_t plane = (size_t)c->n_ctx * (size_t)c->m->hp.kv_dim;
    *kc = c->kv + (size_t)l * 2 * plane;
    *vc = *kc + plane;
}

static bool same_shape(const shoal_cu_mat_t *a, const shoal_cu_mat_t *b)
{
    return a->type == b->type && a->n_in == b->n_in;
}

/* The fused decode layer: 5 launches instead of 12 (matrices of unlike types keep the separate
 * kernels for their part). */
static cudaError_t layer_step_fused(shoal_cuda_llama_ctx_t *c, int l, const int32_t *d_pos)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    const cu_layer_t *L = &c->w->layers[l];
    cudaStream_t s = c->stream;
    float *kc, *vc;
    layer_cache(c, l, &kc, &vc);
    cudaError_t e;
    if (same_shape(&L->wq, &L->wk) && same_shape(&L->wq, &L->wv)) {
        const shoal_cu_mat_t *w[3] = {&L->wq, &L->wk, &L->wv};
        float *y[3] = {c->q, c->k, c->v};
        e = shoal_cu_matvec_fused(w, y, 3, c->x, L->attn_norm, hp->rms_eps, 0, s);
    } else if (!(e = shoal_cu_rmsnorm(c->x, L->attn_norm, c->xb, hp->dim, hp->rms_eps, s)) &&
               !(e = shoal_cu_matvec(&L->wq, c->xb, c->q, 0, s)) && !(e = shoal_cu_matvec(&L->wk, c->xb, c->k, 0, s))) {
        e = shoal_cu_matvec(&L->wv, c->xb, c->v, 0, s);
    }
    if (e)
        return e;
    const shoal_cu_mat_t *wo[1] = {&L->wo}, *wd[1] = {&L->down};
    float *yx[1] = {c->x};
    if ((e = shoal_cu_rope_attention(c->q, c->k, c->v, kc, vc, c->w->inv_freq, d_pos, c->att, hp->n_head,
                                     hp->n_head_kv, hp->head_dim, hp->rope_dim, c->n_ctx, c->att_scratch, s)) ||
        (e = shoal_cu_matvec_fused(wo, yx, 1, c->att, NULL, 0.0f, 1, s)))
        return e;
    if (same_shape(&L->gate, &L->up) && L->gate.n_out == L->up.n_out)
        e = shoal_cu_gateup_fused(&L->gate, &L->up, c->x, L->ffn_norm, hp->rms_eps, c->hb, s);
    else if (!(e = shoal_cu_rmsnorm(c->x, L->ffn_norm, c->xb, hp->dim, hp->rms_eps, s)) &&
             !(e = shoal_cu_matvec(&L->gate, c->xb, c->hb, 0, s)) && !(e = shoal_cu_matvec(&L->up, c->xb, c->hb2, 0, s)))
        e = shoal_cu_swiglu(c->hb, c->hb2, hp->ffn_dim, s);
    if (e)
        return e;
    return shoal_cu_matvec_fused(wd, yx, 1, c->hb, NULL, 0.0f, 1, s);
}

static cudaError_t layer_step(shoal_cuda_llama_ctx_t *c, int l, const int32_t *d_pos)
{
    if (c->fused)
        return layer_step_fused(c, l, d_pos);
    const shoal_llama_hparams_t *hp = &c->m->hp;
    const cu_layer_t *L = &c->w->layers[l];
    cudaStream_t s = c->stream;
    float *kc, *vc;
    layer_cache(c, l, &kc, &vc);
    cudaError_t e;
    if ((e = shoal_cu_rmsnorm(c->x, L->attn_norm, c->xb, hp->dim, hp->rms_eps, s)) ||
        (e = shoal_cu_matvec(&L->wq, c->xb, c->q, 0, s)) || (e = shoal_cu_matvec(&L->wk, c->xb, c->k, 0, s)) ||
        (e = shoal_cu_matvec(&L->wv, c->xb, c->v, 0, s)) ||
        (e = shoal_cu_rope_store(c->q, c->k, c->v, kc, vc, c->w->inv_freq, d_pos, hp->n_head, hp->n_head_kv,
                                 hp->head_dim, hp->rope_dim, s)) ||
        (e = shoal_cu_attention(c->q, kc, vc, d_pos, c->att, hp->n_head, hp->n_head_kv, hp->head_dim, c->n_ctx, s)) ||
        (e = shoal_cu_matvec(&L->wo, c->att, c->x, 1, s)) ||
        (e = shoal_cu_rmsnorm(c->x, L->ffn_norm, c->xb, hp->dim, hp->rms_eps, s)) ||
        (e = shoal_cu_matvec(&L->gate, c->xb, c->hb, 0, s)) || (e = shoal_cu_matvec(&L->up, c->xb, c->hb2, 0, s)) ||
        (e = shoal_cu_swiglu(c->hb, c->hb2, hp->ffn_dim, s)) || (e = shoal_cu_matvec(&L->down, c->hb, c->x, 1, s)))
        return e;
    return cudaSuccess;
}

static shoal_status_t validate(shoal_cuda_llama_ctx_t *c, const int32_t *tokens, int n, int pos0)
{
    if (!c || !tokens)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: NULL argument");
    if (c->dead)
        return shoal_fail(SHOAL_E_DEVICE, "cuda llm: this context hit a device error earlier and is unusable");
    if (n < 1)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: %d tokens to evaluate", n);
    if (pos0 < 0 || pos0 > c->n_past)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: pos0 %d outside [0, n_past %d]", pos0, c->n_past);
    if ((int64_t)pos0 + n > c->n_ctx)
        return shoal_fail(SHOAL_E_LIMIT, "cuda llm: %d tokens at position %d exceed the context of %d by %lld", n, pos0,
                          c->n_ctx, (long long)pos0 + n - c->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->m->hp.vocab)
            return shoal_fail(SHOAL_E_INVALID, "cuda llm: token %d at index %d is outside the vocabulary of %d",
                              tokens[i], i, c->m->hp.vocab);
    return SHOAL_OK;
}

/* What the runtime knows of p; false (and no sticky error) when it cannot say. */
static bool pointer_attributes(const void *p, struct cudaPointerAttributes *a)
{
    if (cudaPointerGetAttributes(a, p) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    return true;
}

/* Whether host pointer p (bytes) may be written by kernels in place: registered and mapped at the
 * same address. */
static bool device_writable(const void *p)
{
    struct cudaPointerAttributes a;
    return pointer_attributes(p, &a) && a.type == cudaMemoryTypeHost && a.devicePointer == p;
}

/* Y (nt, n_out) = X (nt, n_in) . W^T, or += with accumulate: W dequantised into wf32 first (the
 * stream orders the reuse of wf32 by the next matrix). Row-major Y is column-major Y^T = W . X^T. */
static cudaError_t gemm(shoal_cuda_llama_ctx_t *c, const shoal_cu_mat_t *w, const float *x, float *y, int nt,
                        bool accumulate)
{
    cudaError_t e = shoal_cu_dequant(w, c->wf32, c->stream);
    if (e)
        return e;
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    cublasStatus_t b = cublasSgemm(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, w->n_out, nt, w->n_in, &one, c->wf32, w->n_in, x,
                                   w->n_in, &beta, y, w->n_out);
    return b == CUBLAS_STATUS_SUCCESS ? cudaSuccess : cudaErrorLaunchFailure;
}

/* One layer over nt tokens (rows of bx) whose positions are d_pos[0..nt). */
static cudaError_t layer_batch(shoal_cuda_llama_ctx_t *c, int l, const int32_t *d_pos, int nt)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    const cu_layer_t *L = &c->w->layers[l];
    cudaStream_t s = c->stream;
    float *kc, *vc;
    layer_cache(c, l, &kc, &vc);
    cudaError_t e;
    if ((e = shoal_cu_rmsnorm_rows(c->bx, L->attn_norm, c->bxb, hp->dim, nt, hp->rms_eps, s)) ||
        (e = gemm(c, &L->wq, c->bxb, c->bq, nt, false)) || (e = gemm(c, &L->wk, c->bxb, c->bk, nt, false)) ||
        (e = gemm(c, &L->wv, c->bxb, c->bv, nt, false)) ||
        (e = shoal_cu_rope_store_batch(c->bq, c->bk, c->bv, kc, vc, c->w->inv_freq, d_pos, nt, hp->n_head,
                                       hp->n_head_kv, hp->head_dim, hp->rope_dim, s)) ||
        (e = shoal_cu_attention_batch(c->bq, kc, vc, d_pos, nt, c->batt, hp->n_head, hp->n_head_kv, hp->head_dim,
                                      c->n_ctx, s)) ||
        (e = gemm(c, &L->wo, c->batt, c->bx, nt, true)) ||
        (e = shoal_cu_rmsnorm_rows(c->bx, L->ffn_norm, c->bxb, hp->dim, nt, hp->rms_eps, s)) ||
        (e = gemm(c, &L->gate, c->bxb, c->bhb, nt, false)) || (e = gemm(c, &L->up, c->bxb, c->bhb2, nt, false)) ||
        (e = shoal_cu_swiglu(c->bhb, c->bhb2, nt * hp->ffn_dim, s)) || (e = gemm(c, &L->down, c->bhb, c->bx, nt, true)))
        return e;
    return cudaSuccess;
}

/* The logits of token t (of n) from its final hidden state x (dim floats on the device): into the
 * caller's buffer in place when it is device-writable, else through c->logits and a copy; for
 * greedy, only the argmax id is copied back. */
static cudaError_t emit_logits(shoal_cuda_llama_ctx_t *c, const float *x, int t, float *logits_out, bool in_place,
                               int mode, bool greedy)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    cudaStream_t s = c->stream;
    cudaError_t e;
    float *dst = c->logits;
    if (in_place && !greedy)
        dst = logits_out + (mode == SHOAL_LLAMA_LOGITS_ALL ? (size_t)t * hp->vocab : 0);
    /* The head has vocab rows: one norm launch beats every block of the fused kernel
     * recomputing it. */
    if (!(e = shoal_cu_rmsnorm(x, c->w->output_norm, c->xb, hp->dim, hp->rms_eps, s))) {
        if (c->fused) {
            const shoal_cu_mat_t *w[1] = {&c->w->output};
            float *y[1] = {dst};
            e = shoal_cu_matvec_fused(w, y, 1, c->xb, NULL, 0.0f, 0, s);
        } else {
            e = shoal_cu_matvec(&c->w->output, c->xb, dst, 0, s);
        }
    }
    if (e)
        return e;
    if (greedy) { // the token goes straight to h_io with host_io, else through d_io and a copy
        int32_t *tok = (c->host_io ? c->h_io : c->d_io) + 2 * c->n_ctx;
        if ((e = shoal_cu_argmax(c->logits, hp->vocab, tok, c->d_io + 2 * c->n_ctx + 1, s)) || c->host_io)
            return e;
        return cudaMemcpyAsync(c->h_io + 2 * c->n_ctx, tok, sizeof(int32_t), cudaMemcpyDeviceToHost, s);
    }
    if (!in_place)
        return cudaMemcpyAsync(logits_out + (mode == SHOAL_LLAMA_LOGITS_ALL ? (size_t)t * hp->vocab : 0), c->logits,
                               (size_t)hp->vocab * sizeof(float), cudaMemcpyDeviceToHost, s);
    return cudaSuccess;
}

/* Batched prefill of the n tokens staged in d_io, in chunks of n_batch. */
static cudaError_t enqueue_batched(shoal_cuda_llama_ctx_t *c, int n, float *logits_out, bool in_place, int mode,
                                   bool greedy)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    cudaError_t e;
    for (int t0 = 0; t0 < n; t0 += c->n_batch) {
        const int nt = n - t0 < c->n_batch ? n - t0 : c->n_batch;
        const int32_t *d_pos = c->d_io + c->n_ctx + t0;
        if ((e = shoal_cu_embed_batch(&c->w->tok_embd, c->d_io + t0, nt, c->bx, c->stream)))
            return e;
        for (int l = 0; l < hp->n_layer; l++)
            if ((e = layer_batch(c, l, d_pos, nt)))
                return e;
        for (int i = 0; i < nt; i++) {
            const int t = t0 + i;
            const bool want = mode == SHOAL_LLAMA_LOGITS_ALL || (t == n - 1 && (mode == SHOAL_LLAMA_LOGITS_LAST || greedy));
            if (want && (e = emit_logits(c, c->bx + (size_t)i * hp->dim, t, logits_out, in_place, mode, greedy)))
                return e;
        }
    }
    return cudaSuccess;
}

/* Queues the whole evaluation of the n tokens staged in h_io on the stream (nothing waits). */
static cudaError_t enqueue(shoal_cuda_llama_ctx_t *c, int n, float *logits_out, bool in_place, int mode, bool greedy,
                           const char **step)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    cudaStream_t s = c->stream;
    cudaError_t e;
    /* one token with host_io: the embedding reads the token from h_io and copies the position to
     * d_io for the kernels after it, instead of two copy nodes before it */
    const bool direct = n == 1 && c->host_io;
    *step = "copying tokens";
    if (!direct && ((e = cudaMemcpyAsync(c->d_io, c->h_io, (size_t)n * sizeof(int32_t), cudaMemcpyHostToDevice, s)) ||
                    (e = cudaMemcpyAsync(c->d_io + c->n_ctx, c->h_io + c->n_ctx, (size_t)n * sizeof(int32_t),
                                         cudaMemcpyHostToDevice, s))))
        return e;
    *step = "launching the forward pass";
    if (n > 1 && c->n_batch > 1)
        return enqueue_batched(c, n, logits_out, in_place, mode, greedy);
    for (int t = 0; t < n; t++) {
        const int32_t *d_pos = c->d_io + c->n_ctx + t;
        if ((e = direct ? shoal_cu_embed(&c->w->tok_embd, c->h_io, c->x, c->h_io + c->n_ctx, c->d_io + c->n_ctx, s)
                        : shoal_cu_embed(&c->w->tok_embd, c->d_io + t, c->x, NULL, NULL, s)))
            return e;
        for (int l = 0; l < hp->n_layer; l++)
            if ((e = layer_step(c, l, d_pos)))
                return e;
        const bool want = mode == SHOAL_LLAMA_LOGITS_ALL || (t == n - 1 && (mode == SHOAL_LLAMA_LOGITS_LAST || greedy));
        if (want && (e = emit_logits(c, c->x, t, logits_out, in_place, mode, greedy)))
            return e;
    }
    return cudaSuccess;
}

/* The greedy single-token step as a CUDA graph: its launch sequence never changes (token and
 * position are read on the device: from h_io itself with host_io, else from d_io, which the
 * graph's first nodes fill from h_io), so it is captured once per context and replayed. A capture
 * that fails leaves the context on plain launches. */
static void capture_decode_graph(shoal_cuda_llama_ctx_t *c)
{
    const char *step;
    cudaGraph_t g = NULL;
    c->graph_tried = true;
    if (cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return;
    }
    cudaError_t e = enqueue(c, 1, NULL, false, SHOAL_LLAMA_LOGITS_NONE, true, &step);
    cudaError_t e2 = cudaStreamEndCapture(c->stream, &g);
    if (e == cudaSuccess && e2 == cudaSuccess && g && cudaGraphInstantiate(&c->graph, g, 0) == cudaSuccess)
        c->graph_ready = true;
    else
        cudaGetLastError();
    if (g)
        cudaGraphDestroy(g);
}

static shoal_status_t forward(shoal_cuda_llama_ctx_t *c, const int32_t *tokens, int n, int pos0, float *logits_out,
                              int mode, int32_t *greedy_out)
{
    cudaError_t e = cudaSetDevice(c->device);
    if (e)
        return cuda_fail(e, "cudaSetDevice");
    shoal_cu_set_pdl(c->pdl);
    /* h_io is reused by the next eval only after this one synchronised. */
    for (int i = 0; i < n; i++) {
        c->h_io[i] = tokens[i];
        c->h_io[c->n_ctx + i] = pos0 + i;
    }
    const char *step = "launching the decode graph";
    if (c->use_graph && n == 1 && greedy_out) {
        if (!c->graph_tried)
            capture_decode_graph(c);
        if (c->graph_ready) {
            if ((e = cudaGraphLaunch(c->graph, c->stream)))
                goto fail;
            goto wait;
        }
    }
    if (n > 1 && c->n_batch > 1 && !c->bscratch) {
        /* out of memory here refuses this prefill only: the context stays usable */
        shoal_status_t s = batch_setup(c, c->prefill_tf32);
        if (s)
            return shoal_fail_wrap(s, "prefill of %d tokens", n);
    }
    const bool in_place = logits_out && device_writable(logits_out);
    if ((e = enqueue(c, n, logits_out, in_place, mode, greedy_out != NULL, &step)))
        goto fail;
wait:
    step = "running the forward pass";
    if ((e = cudaStreamSynchronize(c->stream)))
        goto fail;
    c->n_past = pos0 + n;
    if (greedy_out)
        *greedy_out = c->h_io[2 * c->n_ctx];
    return SHOAL_OK;
fail:
    /* A launch or execution error may poison the CUDA context: never use this one again. */
    c->dead = true;
    return cuda_fail(e, step);
}

shoal_status_t shoal_cuda_llama_eval(shoal_cuda_llama_ctx_t *c, const int32_t *tokens, int n, int pos0,
                                     float *logits_out, int logits_mode)
{
    shoal_status_t s = validate(c, tokens, n, pos0);
    if (s)
        return s;
    if (logits_mode < SHOAL_LLAMA_LOGITS_NONE || logits_mode > SHOAL_LLAMA_LOGITS_ALL)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: logits mode %d", logits_mode);
    if (logits_mode != SHOAL_LLAMA_LOGITS_NONE && !logits_out)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: logits requested but no output buffer");
    return forward(c, tokens, n, pos0, logits_out, logits_mode, NULL);
}

shoal_status_t shoal_cuda_llama_eval_greedy(shoal_cuda_llama_ctx_t *c, const int32_t *tokens, int n, int pos0,
                                            int32_t *token_out)
{
    shoal_status_t s = validate(c, tokens, n, pos0);
    if (s)
        return s;
    if (!token_out)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: NULL token_out");
    return forward(c, tokens, n, pos0, NULL, SHOAL_LLAMA_LOGITS_NONE, token_out);
}

void shoal_cuda_llama_reset(shoal_cuda_llama_ctx_t *c) { c->n_past = 0; }
int shoal_cuda_llama_n_past(const shoal_cuda_llama_ctx_t *c) { return c->n_past; }
int shoal_cuda_llama_n_batch(const shoal_cuda_llama_ctx_t *c) { return c->n_batch; }
int shoal_cuda_llama_n_ctx(const shoal_cuda_llama_ctx_t *c) { return c->n_ctx; }
bool shoal_cuda_llama_uses_graph(const shoal_cuda_llama_ctx_t *c) { return c->graph_ready; }

shoal_status_t shoal_cuda_llama_set_n_past(shoal_cuda_llama_ctx_t *c, int n_past)
{
    if (n_past < 0 || n_past > c->n_ctx)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: n_past %d outside [0, %d]", n_past, c->n_ctx);
    /* ends a restore: the staged KV uploads have landed (or their error is reported here) */
    cudaError_t e = cudaStreamSynchronize(c->stream);
    if (e)
        return cuda_fail(e, "KV upload");
    c->n_past = n_past;
    return SHOAL_OK;
}

/* Whether host memory is plain pageable memory (registered or pinned memory is copied directly). */
static bool pageable(const void *p)
{
    struct cudaPointerAttributes a;
    return pointer_attributes(p, &a) && a.type == cudaMemoryTypeUnregistered;
}

/* Rows [0, rows) of layer's K and V in the cache, and their byte count; refuses a range outside
 * the cache or a dead context. */
static shoal_status_t kv_rows(shoal_cuda_llama_ctx_t *c, int layer, int rows, float **kc, float **vc, size_t *bytes)
{
    const shoal_llama_hparams_t *hp = &c->m->hp;
    if (layer < 0 || layer >= hp->n_layer || rows < 0 || rows > c->n_ctx)
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: KV copy of layer %d, %d rows (n_layer %d, n_ctx %d)", layer, rows,
                          hp->n_layer, c->n_ctx);
    if (c->dead)
        return shoal_fail(SHOAL_E_DEVICE, "cuda llm: this context hit a device error earlier and is unusable");
    layer_cache(c, layer, kc, vc);
    *bytes = (size_t)rows * hp->kv_dim * sizeof(float);
    return SHOAL_OK;
}

/* crc_k, crc_v (uploads only, may be NULL): the CRC-32C of the K and V bytes copied. */
static shoal_status_t kv_copy(shoal_cuda_llama_ctx_t *c, int layer, int rows, float *k, float *v, bool to_host,
                              uint32_t *crc_k, uint32_t *crc_v)
{
    float *kc = NULL, *vc = NULL;
    size_t bytes = 0;
    shoal_status_t st = kv_rows(c, layer, rows, &kc, &vc, &bytes);
    if (st != SHOAL_OK)
        return st;
    if (rows && (!k || !v))
        return shoal_fail(SHOAL_E_INVALID, "cuda llm: KV copy of layer %d, %d rows without buffers", layer, rows);
    cudaError_t e;
    /* uploads of pageable rows into a device-resident cache: through the pinned staging */
    if (!to_host && c->kv_owned && bytes >= SHOAL_CU_STAGE_MIN && pageable(k) && pageable(v)) {
        shoal_status_t st2 = shoal_cu_stage_upload(c->device, c->stream, kc, k, -1, 0, bytes, crc_k);
        if (st2 == SHOAL_OK)
            st2 = shoal_cu_stage_upload(c->device, c->stream, vc, v, -1, 0, bytes, crc_v);
        if (st2 != SHOAL_E_UNSUPPORTED)
            return st2;
        shoal_clear_error(); /* no staging here: the plain copy below */
    }
    if (crc_k) { /* checksums of a copy that is not staged: their own pass over the rows */
        *crc_k = shoal_crc32c_spans(0, &(shoal_span_t){k, bytes}, 1);
        *crc_v = shoal_crc32c_spans(0, &(shoal_span_t){v, bytes}, 1);
    }
    if (to_host)
        e = cudaMemcpyAsync(k, kc, bytes, cudaMemcpyDefault, c->stream);
    else
        e = cudaMemcpyAsync(kc, k, bytes, cudaMemcpyDefault, c->stream);
    if (!e)
        e = to_host ? cudaMemcpyAsync(v, vc, bytes, cudaMemcpyDefault, c->stream)
                    : cudaMemcpyAsync(vc, v, bytes, cudaMemcpyDefault, c->stream);
    if (!e)
        e = cudaStreamSynchronize(c->stream);
    return e ? cuda_fail(e, "KV copy") : SHOAL_OK;
}

shoal_status_t shoal_cuda_llama_kv_read(shoal_cuda_llama_ctx_t *c, int layer, int rows, float *k, float *v)
{
    return kv_copy(c, layer, rows, k, v, true, NULL, NULL);
}

shoal_status_t shoal_cuda_llama_kv_write(shoal_cuda_llama_ctx_t *c, int layer, int rows, const float *k,
                                         const float *v)
{
    return kv_copy(c, layer, rows, (float *)k, (float *)v, false, NULL, NULL);
}

shoal_status_t shoal_cuda_llama_kv_write_all_crc(shoal_cuda_llama_ctx_t *c, int rows, const float *const *k,
                                                 const float *const *v, int fd, const uint64_t *off_k,
                                                 const uint64_t *off_v, uint32_t *crc_k, uint32_t *crc_v)
{
    const int n_layer = c->m->hp.n_layer;
    float *kc = NULL, *vc = NULL;
    size_t bytes = 0;
    shoal_status_t st = kv_rows(c, 0, rows, &kc, &vc, &bytes);
    if (st != SHOAL_OK)
        return st;
    /* through the pinned staging into a device-resident cache: from the file when there is one,
     * else from pageable memory (registered or pinned memory is copied directly below) */
    bool staged = c->kv_owned && bytes * 2 * (size_t)n_layer >= SHOAL_CU_STAGE_MIN;
    for (int l = 0; staged && fd < 0 && l < n_layer; l++)
        staged = pageable(k[l]) && pageable(v[l]);
    if (staged) {
        shoal_cu_stage_seg_t *seg = calloc(2 * (size_t)n_layer, sizeof *seg);
        if (!seg)
            return shoal_fail(SHOAL_E_NOMEM, "cuda llm: out of memory");
        for (int l = 0; l < n_layer; l++) {
            layer_cache(c, l, &kc, &vc);
            seg[2 * l] = (shoal_cu_stage_seg_t){kc, fd < 0 ? k[l] : NULL, fd < 0 ? 0 : off_k[l], bytes, 0};
            seg[2 * l + 1] = (shoal_cu_stage_seg_t){vc, fd < 0 ? v[l] : NULL, fd < 0 ? 0 : off_v[l], bytes, 0};
        }
        st = shoal_cu_stage_upload_segs(c->device, c->stream, seg, 2 * n_layer, fd, true);
        for (int l = 0; st == SHOAL_OK && l < n_layer; l++)
            crc_k[l] = seg[2 * l].crc, crc_v[l] = seg[2 * l + 1].crc;
        free(seg);
        if (st != SHOAL_E_UNSUPPORTED)
            return st;
        shoal_clear_error(); /* no staging here: the copies below */
    }
    for (int l = 0; st == SHOAL_OK && l < n_layer; l++)
        st = kv_copy(c, l, rows, (float *)k[l], (float *)v[l], false, &crc_k[l], &crc_v[l]);
    return st;
}
