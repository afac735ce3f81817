/* llm_kernels.cu — the kernels of the Llama forward pass on CUDA: weight-streaming matvecs for
 * F16, BF16, Q8_0, Q4_0, Q4_1 (dequantised in registers, fp32 accumulation), the embedding
 * lookup, RMSNorm, RoPE + cache store, attention (the fused decode path's is in att_decode.cu),
 * SwiGLU, argmax, and the dequantisation that feeds batched prefill's SGEMM. The per-token kernels take a batch dimension in blockIdx.y
 * (prefill); decode launches them with one.
 *
 * Matvec, the reference (matvec_kernel): decode is bound by weight bytes, so one warp owns one row
 * and each lane issues 16-byte loads of the (repacked, see llm_kernels.h) payload; 8 rows per
 * 256-thread block; x is read through the read-only cache. The fused kernels of mv_fused.cu (the
 * default) give each block several rows that share every activation load, keep several weight
 * loads in flight per thread, and fold the RMS norm, the Q/K/V triple and gate/up + SwiGLU into
 * single launches. Positions and tokens are
 * read on the device so that one decode step is a fixed sequence of launches (a CUDA graph
 * replays it), and every kernel waits for its inputs itself, so launches may use programmatic
 * dependent launch. */
#include "backend/cuda/llm_kernels.h"
#include "backend/cuda/kernel_util.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

thread_local bool shoal_cu_pdl = false;

namespace {

constexpr int MV_THREADS = 256, MV_ROWS = MV_THREADS / 32;

__device__ __forceinline__ float h2f(const __half *p, size_t i) { return __half2float(p[i]); }

template <int TYPE>
__global__ void __launch_bounds__(MV_THREADS) matvec_kernel(const void *__restrict__ qs, const __half *__restrict__ dd,
                                                            const __half *__restrict__ mm, const float *__restrict__ x,
                                                            float *__restrict__ y, int n_in, int n_out, int accumulate)
{
    pdl_wait_then_release();
    const int row = blockIdx.x * MV_ROWS + threadIdx.x / 32, lane = threadIdx.x & 31;
    if (row >= n_out)
        return;
    float acc = 0.0f;
    if (TYPE == T_F16 || TYPE == T_BF16) {
        const uint4 *w = (const uint4 *)((const uint16_t *)qs + (size_t)row * n_in);
        for (int j = lane; j < n_in / 8; j += 32) {
            uint4 q = __ldg(w + j);
            const float4 *xv = (const float4 *)(x + j * 8);
            float4 x0 = __ldg(xv), x1 = __ldg(xv + 1);
            float f[8];
            unit16_to_float<TYPE == T_BF16>(q, f);
            acc += f[0] * x0.x + f[1] * x0.y + f[2] * x0.z + f[3] * x0.w + f[4] * x1.x + f[5] * x1.y + f[6] * x1.z +
                   f[7] * x1.w;
        }
    } else if (TYPE == T_Q8_0) {
        const int8_t *w = (const int8_t *)qs + (size_t)row * n_in;
        const __half *d = dd + (size_t)row * (n_in / 32);
        for (int j = lane * 16; j < n_in; j += 32 * 16) {
            int4 q = __ldg((const int4 *)(w + j));
            const int8_t *b = (const int8_t *)&q;
            const float4 *xv = (const float4 *)(x + j);
            float s = 0.0f;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float4 xx = __ldg(xv + k);
                s += (float)b[4 * k] * xx.x + (float)b[4 * k + 1] * xx.y + (float)b[4 * k + 2] * xx.z +
                     (float)b[4 * k + 3] * xx.w;
            }
            acc += s * __half2float(d[j / 32]);
        }
    } else { /* Q4_0, Q4_1: one 32-element block (16 bytes of nibbles) per lane per step */
        const int nb = n_in / 32;
        const uint4 *w = (const uint4 *)((const uint8_t *)qs + (size_t)row * (n_in / 2));
        const __half *d = dd + (size_t)row * nb;
        const __half *m = TYPE == T_Q4_1 ? mm + (size_t)row * nb : nullptr;
        for (int b = lane; b < nb; b += 32) {
            uint4 q = __ldg(w + b);
            const uint8_t *p = (const uint8_t *)&q;
            const float4 *xv = (const float4 *)(x + b * 32);
            float s = 0.0f, sx = 0.0f;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float4 lo = __ldg(xv + k), hi = __ldg(xv + 4 + k);
                float l0 = p[4 * k] & 15, l1 = p[4 * k + 1] & 15, l2 = p[4 * k + 2] & 15, l3 = p[4 * k + 3] & 15;
                float h0 = p[4 * k] >> 4, h1 = p[4 * k + 1] >> 4, h2 = p[4 * k + 2] >> 4, h3 = p[4 * k + 3] >> 4;
                s += l0 * lo.x + l1 * lo.y + l2 * lo.z + l3 * lo.w + h0 * hi.x + h1 * hi.y + h2 * hi.z + h3 * hi.w;
                sx += lo.x + lo.y + lo.z + lo.w + hi.x + hi.y + hi.z + hi.w;
            }
            if (TYPE == T_Q4_0)
                acc += __half2float(d[b]) * (s - 8.0f * sx);
            else
                acc += __half2float(d[b]) * s + __half2float(m[b]) * sx;
        }
    }
    acc = warp_sum(acc);
    if (lane == 0)
        y[row] = accumulate ? y[row] + acc : acc;
}

__device__ float dequant(const shoal_cu_mat_t &e, size_t row, int j)
{
    const int n = e.n_in;
    switch (e.type) {
    case T_F16: return h2f((const __half *)e.qs, row * n + j);
    case T_BF16: return __uint_as_float((uint32_t)((const uint16_t *)e.qs)[row * n + j] << 16);
    case T_Q8_0: return (float)((const int8_t *)e.qs)[row * n + j] * h2f((const __half *)e.d, row * (n / 32) + j / 32);
    default: {
        const uint8_t *q = (const uint8_t *)e.qs + row * (n / 2) + (j / 32) * 16;
        int k = j % 32, v = k < 16 ? (q[k] & 15) : (q[k - 16] >> 4);
        float d = h2f((const __half *)e.d, row * (n / 32) + j / 32);
        if (e.type == T_Q4_0)
            return d * (float)(v - 8);
        return d * (float)v + h2f((const __half *)e.m, row * (n / 32) + j / 32);
    }
    }
}

/* blockIdx.y selects the token of a batch (0 for one token). With pos_dst, the step's position is
 * copied there too (the one-token step reads token and position from mapped host memory). */
__global__ void embed_kernel(shoal_cu_mat_t e, const int32_t *__restrict__ token, float *__restrict__ x,
                             const int32_t *__restrict__ pos_src, int32_t *__restrict__ pos_dst)
{
    pdl_wait_then_release();
    if (pos_dst && blockIdx.x == 0 && blockIdx.y == 0 && threadIdx.x == 0)
        *pos_dst = *pos_src;
    token += blockIdx.y;
    x += (size_t)blockIdx.y * e.n_in;
    int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < e.n_in)
        x[j] = dequant(e, (size_t)*token, j);
}

/* out (n_out, n_in) float32 = the whole matrix, dequantised (batched prefill feeds it to SGEMM). */
__global__ void dequant_kernel(shoal_cu_mat_t e, float *__restrict__ out)
{
    pdl_wait_then_release();
    const size_t total = (size_t)e.n_out * e.n_in;
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x)
        out[i] = dequant(e, i / e.n_in, (int)(i % e.n_in));
}

/* One block per row of n (rows of a batch are contiguous). */
__global__ void rmsnorm_kernel(const float *__restrict__ x, const float *__restrict__ w, float *__restrict__ out, int n,
                               float eps)
{
    pdl_wait_then_release();
    __shared__ float sh[32];
    x += (size_t)blockIdx.x * n;
    out += (size_t)blockIdx.x * n;
    float s = 0.0f;
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        s += x[i] * x[i];
    s = block_sum(s, sh);
    const float r = 1.0f / sqrtf(s / (float)n + eps);
    for (int i = threadIdx.x; i < n; i += blockDim.x)
        out[i] = x[i] * r * w[i];
}

/* One thread per rotated pair of q or k; the angle in double, as on the CPU (pos * theta loses its
 * phase in float at late positions). The first kv_dim threads also store v (and any unrotated
 * tail of k) into the cache rows. */
__global__ void rope_store_kernel(float *__restrict__ q, const float *__restrict__ k, const float *__restrict__ v,
                                  float *__restrict__ kc, float *__restrict__ vc, const float *__restrict__ inv_freq,
                                  const int32_t *__restrict__ posp, int n_head, int n_kv, int hd, int rope_dim)
{
    pdl_wait_then_release();
    const int kv_dim = n_kv * hd;
    // blockIdx.y: the token of a batch; its q, k, v rows and position
    q += (size_t)blockIdx.y * n_head * hd;
    k += (size_t)blockIdx.y * kv_dim;
    v += (size_t)blockIdx.y * kv_dim;
    posp += blockIdx.y;
    const int pos = *posp, half = rope_dim / 2;
    const int idx = blockIdx.x * blockDim.x + threadIdx.x;
    float *krow = kc + (size_t)pos * kv_dim, *vrow = vc + (size_t)pos * kv_dim;
    if (idx < kv_dim) {
        vrow[idx] = v[idx];
        if (idx % hd >= rope_dim) // rotated dims are stored by their pair's thread below
            krow[idx] = k[idx];
    }
    const int n_pairs = (n_head + n_kv) * half;
    if (idx >= n_pairs)
        return;
    const int head = idx / half, i = idx % half;
    double sn, cs;
    sincos((double)pos * (double)inv_freq[i], &sn, &cs);
    const float c = (float)cs, s = (float)sn;
    // k is read from its matvec output and stored rotated straight into the cache row.
    if (head < n_head) {
        float *p = q + head * hd + 2 * i;
        float a = p[0], b = p[1];
        p[0] = a * c - b * s;
        p[1] = a * s + b * c;
    } else {
        const int kh = head - n_head;
        const float *p = k + kh * hd + 2 * i;
        float a = p[0], b = p[1];
        krow[kh * hd + 2 * i] = a * c - b * s;
        krow[kh * hd + 2 * i + 1] = a * s + b * c;
    }
}

/* One block per query head. Scores for every position go to shared memory; softmax; then each
 * thread sums one output dimension over a strided subset of positions and the subsets merge. */
__global__ void __launch_bounds__(ATT_THREADS) attention_kernel(const float *__restrict__ q, const float *__restrict__ kc,
                                                               const float *__restrict__ vc,
                                                               const int32_t *__restrict__ posp, float *__restrict__ out,
                                                               int n_head, int n_kv, int hd)
{
    pdl_wait_then_release();
    extern __shared__ float smem[];
    __shared__ float red[32];
    // blockIdx.y: the query token of a batch, attending to cache rows [0, its position]
    q += (size_t)blockIdx.y * n_head * hd;
    out += (size_t)blockIdx.y * n_head * hd;
    posp += blockIdx.y;
    const int h = blockIdx.x, kvh = h / (n_head / n_kv), kv_dim = n_kv * hd, n = *posp + 1;
    float *qs = smem, *sc = smem + hd, *part = sc + n; // part: (ATT_THREADS) partial sums
    for (int i = threadIdx.x; i < hd; i += blockDim.x)
        qs[i] = q[h * hd + i];
    __syncthreads();
    const float scale = rsqrtf((float)hd);
    // scores: one warp per position, lanes over the head dimension
    const int lane = threadIdx.x & 31, wid = threadIdx.x / 32, nw = blockDim.x / 32;
    for (int p = wid; p < n; p += nw) {
        const float *kr = kc + (size_t)p * kv_dim + kvh * hd;
        float s = 0.0f;
        for (int i = lane; i < hd; i += 32)
            s += qs[i] * kr[i];
        s = warp_sum(s);
        if (lane == 0)
            sc[p] = s * scale;
    }
    __syncthreads();
    float mx = -INFINITY;
    for (int p = threadIdx.x; p < n; p += blockDim.x)
        mx = fmaxf(mx, sc[p]);
    const float l = block_softmax(mx, sc, n, red);
    // weighted sum of V: thread t takes dimension t % hd over positions congruent to t / hd
    const int groups = blockDim.x / hd;
    const int dmn = threadIdx.x % hd, g = threadIdx.x / hd;
    float acc = 0.0f;
    if (g < groups)
        for (int p = g; p < n; p += groups)
            acc += sc[p] * vc[(size_t)p * kv_dim + kvh * hd + dmn];
    part[threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.x < hd) {
        float s = 0.0f;
        for (int i = 0; i < groups; i++)
            s += part[i * hd + threadIdx.x];
        out[h * hd + threadIdx.x] = s / l;
    }
}

__global__ void swiglu_kernel(float *__restrict__ g, const float *__restrict__ u, int n)
{
    pdl_wait_then_release();
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float z = g[i];
        g[i] = z / (1.0f + expf(-z)) * u[i];
    }
}

/* Many blocks, then the last to finish: block b scans its contiguous slice of float4s, each thread
 * in increasing index order (so a strict > keeps the first of equal maxima), and leaves its
 * (value, index) in scratch; the block that takes the last ticket merges the partials in block
 * order (lower index on ties) and resets the ticket for the next launch (a CUDA graph replays this
 * one). One block had left a 128k vocabulary to one SM's bandwidth (12.7 µs of a 1B F16 step on an
 * H100). scratch: ARGMAX_BLOCKS values, ARGMAX_BLOCKS indices, the ticket (zero before the first
 * launch). */
constexpr int ARGMAX_BLOCKS = 64, ARGMAX_THREADS = 256;

__device__ __forceinline__ void argmax_take(float v, int i, float &best, int &idx)
{
    if (v > best || (v == best && i < idx)) {
        best = v;
        idx = i;
    }
}

/* The block's (best, idx) into every thread (lower index on ties). */
__device__ void argmax_block(float &best, int &idx)
{
    __shared__ float bv[32];
    __shared__ int bi[32];
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        argmax_take(__shfl_xor_sync(0xffffffffu, best, o), __shfl_xor_sync(0xffffffffu, idx, o), best, idx);
    const int lane = threadIdx.x & 31, wid = threadIdx.x / 32, nw = blockDim.x / 32;
    __syncthreads(); // bv may still be read by a previous call
    if (lane == 0)
        bv[wid] = best, bi[wid] = idx;
    __syncthreads();
    best = -INFINITY, idx = 0x7fffffff;
    for (int w = 0; w < nw; w++)
        argmax_take(bv[w], bi[w], best, idx);
}

__global__ void __launch_bounds__(ARGMAX_THREADS) argmax_kernel(const float *__restrict__ x, int n,
                                                               int32_t *__restrict__ out, int32_t *__restrict__ scratch)
{
    pdl_wait_then_release();
    float *pv = (float *)scratch;
    int32_t *pi = scratch + ARGMAX_BLOCKS;
    unsigned *ticket = (unsigned *)(scratch + 2 * ARGMAX_BLOCKS);
    __shared__ bool last;
    float best = -INFINITY;
    int idx = 0x7fffffff;
    const int T = blockDim.x, t = threadIdx.x, n4 = ((uintptr_t)x & 15) ? 0 : n / 4;
    const int per = (n4 + gridDim.x - 1) / gridDim.x, lo = blockIdx.x * per, hi = min(n4, lo + per);
    const float4 *x4 = (const float4 *)x;
    int i = lo + t;
    for (; i + 3 * T < hi; i += 4 * T) {
        float4 v[4];
#pragma unroll
        for (int k = 0; k < 4; k++)
            v[k] = __ldg(x4 + i + k * T);
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const int b = 4 * (i + k * T);
            argmax_take(v[k].x, b, best, idx);
            argmax_take(v[k].y, b + 1, best, idx);
            argmax_take(v[k].z, b + 2, best, idx);
            argmax_take(v[k].w, b + 3, best, idx);
        }
    }
    for (; i < hi; i += T) {
        const float4 v = __ldg(x4 + i);
        argmax_take(v.x, 4 * i, best, idx);
        argmax_take(v.y, 4 * i + 1, best, idx);
        argmax_take(v.z, 4 * i + 2, best, idx);
        argmax_take(v.w, 4 * i + 3, best, idx);
    }
    if (blockIdx.x == gridDim.x - 1) // the tail past the float4s
        for (int j = 4 * n4 + t; j < n; j += T)
            argmax_take(x[j], j, best, idx);
    argmax_block(best, idx);
    if (t == 0) {
        pv[blockIdx.x] = best, pi[blockIdx.x] = idx;
        __threadfence(); // the partial is visible before the ticket says so
        last = atomicAdd(ticket, 1u) == gridDim.x - 1;
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    best = -INFINITY, idx = 0x7fffffff;
    for (int b = t; b < (int)gridDim.x; b += T)
        argmax_take(((volatile float *)pv)[b], ((volatile int32_t *)pi)[b], best, idx);
    argmax_block(best, idx);
    if (t == 0) {
        *out = idx == 0x7fffffff ? 0 : idx;
        *ticket = 0;
    }
}

size_t attention_smem(int hd, int n_ctx) { return (size_t)(hd + n_ctx + ATT_THREADS) * sizeof(float); }
// q, k and v of the current position, scores, partial sums
} // namespace

extern "C" {

cudaError_t shoal_cu_matvec(const shoal_cu_mat_t *w, const float *x, float *y, int accumulate, cudaStream_t s)
{
    dim3 grid((unsigned)((w->n_out + MV_ROWS - 1) / MV_ROWS));
    const __half *d = (const __half *)w->d, *m = (const __half *)w->m;
    switch (w->type) {
    case T_F16: return launch(matvec_kernel<T_F16>, grid, dim3(MV_THREADS), 0, s, w->qs, d, m, x, y, w->n_in, w->n_out, accumulate);
    case T_BF16: return launch(matvec_kernel<T_BF16>, grid, dim3(MV_THREADS), 0, s, w->qs, d, m, x, y, w->n_in, w->n_out, accumulate);
    case T_Q8_0: return launch(matvec_kernel<T_Q8_0>, grid, dim3(MV_THREADS), 0, s, w->qs, d, m, x, y, w->n_in, w->n_out, accumulate);
    case T_Q4_0: return launch(matvec_kernel<T_Q4_0>, grid, dim3(MV_THREADS), 0, s, w->qs, d, m, x, y, w->n_in, w->n_out, accumulate);
    case T_Q4_1: return launch(matvec_kernel<T_Q4_1>, grid, dim3(MV_THREADS), 0, s, w->qs, d, m, x, y, w->n_in, w->n_out, accumulate);
    default: return cudaErrorInvalidValue;
    }
    return cudaGetLastError();
}

cudaError_t shoal_cu_embed(const shoal_cu_mat_t *e, const int32_t *token, float *x, const int32_t *pos_src,
                           int32_t *pos_dst, cudaStream_t s)
{
    return launch(embed_kernel, dim3((unsigned)(e->n_in + 255) / 256), dim3(256), 0, s, *e, token, x, pos_src, pos_dst);
}

cudaError_t shoal_cu_embed_batch(const shoal_cu_mat_t *e, const int32_t *tokens, int n_tok, float *x, cudaStream_t s)
{
    return launch(embed_kernel, dim3((unsigned)(e->n_in + 255) / 256, (unsigned)n_tok), dim3(256), 0, s, *e, tokens, x,
                  (const int32_t *)NULL, (int32_t *)NULL);
}

cudaError_t shoal_cu_dequant(const shoal_cu_mat_t *e, float *out, cudaStream_t s)
{
    dequant_kernel<<<1024, 256, 0, s>>>(*e, out);
    return cudaGetLastError();
}

cudaError_t shoal_cu_rmsnorm(const float *x, const float *w, float *out, int n, float eps, cudaStream_t s)
{
    return shoal_cu_rmsnorm_rows(x, w, out, n, 1, eps, s);
}

cudaError_t shoal_cu_rmsnorm_rows(const float *x, const float *w, float *out, int n, int rows, float eps,
                                  cudaStream_t s)
{
    return launch(rmsnorm_kernel, dim3((unsigned)rows), dim3(1024), 0, s, x, w, out, n, eps);
}

cudaError_t shoal_cu_rope_store(float *q, const float *k, const float *v, float *kcache, float *vcache,
                                const float *inv_freq, const int32_t *pos, int n_head, int n_kv, int head_dim,
                                int rope_dim, cudaStream_t s)
{
    return shoal_cu_rope_store_batch(q, k, v, kcache, vcache, inv_freq, pos, 1, n_head, n_kv, head_dim, rope_dim, s);
}

cudaError_t shoal_cu_rope_store_batch(float *q, const float *k, const float *v, float *kcache, float *vcache,
                                      const float *inv_freq, const int32_t *pos, int n_tok, int n_head, int n_kv,
                                      int head_dim, int rope_dim, cudaStream_t s)
{
    int work = (n_head + n_kv) * (rope_dim / 2);
    if (work < n_kv * head_dim)
        work = n_kv * head_dim;
    return launch(rope_store_kernel, dim3((unsigned)(work + 127) / 128, (unsigned)n_tok), dim3(128), 0, s, q, k, v, kcache,
                  vcache, inv_freq, pos, n_head, n_kv, head_dim, rope_dim);
}

cudaError_t shoal_cu_attention_prepare(int n_ctx)
{
    // llm_cuda.c accepts head dimensions up to ATT_THREADS
    const size_t prefill = attention_smem(ATT_THREADS, n_ctx);
    cudaError_t e = cudaSuccess;
    if (prefill > 48 * 1024)
        e = cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)prefill);
    if (!e)
        e = shoal_cu_rope_attention_prepare(n_ctx);
    return e ? e : shoal_cu_attention_tiled_prepare();
}

cudaError_t shoal_cu_attention(const float *q, const float *kcache, const float *vcache, const int32_t *pos,
                               float *out, int n_head, int n_kv, int head_dim, int n_ctx, cudaStream_t s)
{
    return shoal_cu_attention_batch(q, kcache, vcache, pos, 1, out, n_head, n_kv, head_dim, n_ctx, s);
}

cudaError_t shoal_cu_attention_batch(const float *q, const float *kcache, const float *vcache, const int32_t *pos,
                                     int n_tok, float *out, int n_head, int n_kv, int head_dim, int n_ctx,
                                     cudaStream_t s)
{
    static const bool rows = getenv("SHOAL_CUDA_PREFILL_ATT") && !strcmp(getenv("SHOAL_CUDA_PREFILL_ATT"), "rows");
    if (n_tok > 1 && !rows) {
        const cudaError_t e = shoal_cu_attention_tiled(q, kcache, vcache, pos, n_tok, out, n_head, n_kv, head_dim, s);
        if (e != cudaErrorNotSupported)
            return e;
    }
    return launch(attention_kernel, dim3((unsigned)n_head, (unsigned)n_tok), dim3(ATT_THREADS),
                  attention_smem(head_dim, n_ctx), s, q, kcache, vcache, pos, out, n_head, n_kv, head_dim);
}

void shoal_cu_set_pdl(int on) { shoal_cu_pdl = on != 0; }

cudaError_t shoal_cu_swiglu(float *g, const float *u, int n, cudaStream_t s)
{
    return launch(swiglu_kernel, dim3((unsigned)(n + 255) / 256), dim3(256), 0, s, g, u, n);
}

cudaError_t shoal_cu_argmax(const float *x, int n, int32_t *out, int32_t *scratch, cudaStream_t s)
{
    return launch(argmax_kernel, dim3(ARGMAX_BLOCKS), dim3(ARGMAX_THREADS), 0, s, x, n, out, scratch);
}

} // extern "C"
