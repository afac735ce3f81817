/* llm_kernels.cu — the kernels of the Llama forward pass on CUDA: weight-streaming matvecs for
 * F16, BF16, Q8_0, Q4_0, Q4_1 (dequantised in registers, fp32 accumulation), the embedding
 * lookup, RMSNorm, RoPE + cache store, attention, SwiGLU, argmax, and the dequantisation that
 * feeds batched prefill's SGEMM. The per-token kernels take a batch dimension in blockIdx.y
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

/* The unnormalised softmax of sc[0, n) in place: the block's maximum from each thread's own
 * maximum mx (over the positions it wrote), sc[p] = exp(sc[p] - max), and the block-wide sum,
 * returned to every thread with the writes ordered before later reads. red: 32 floats. */
__device__ float block_softmax(float mx, float *sc, int n, float *red, float *max_out = nullptr)
{
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, o));
    if (lane == 0)
        red[wid] = mx;
    __syncthreads();
    mx = -INFINITY;
    for (int i = 0; i < nw; i++)
        mx = fmaxf(mx, red[i]);
    if (max_out)
        *max_out = mx;
    float l = 0.0f;
    for (int p = threadIdx.x; p < n; p += blockDim.x) {
        const float e = expf(sc[p] - mx);
        sc[p] = e;
        l += e;
    }
    return block_sum(l, red);
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
/* ATT_CHUNK, ATT_MAX_SPLITS: positions per block of the decode attention, and blocks per head at
 * most (chosen on an H100 among 64 / 128 / 256 and 16 / 32 / 64: bench/RESULTS-cuda-llm.md, run 19;
 * SHOAL_CUDA_ATT_CHUNK and SHOAL_CUDA_ATT_SPLITS override them for experiments). */
constexpr int ATT_THREADS = 256, ATT_CHUNK = 128, ATT_MAX_SPLITS = 16;

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

/* acc + the N cache rows p, p + groups, ... of one V column weighted by their scores: the N
 * loads first, all in flight, then the sums in position order. */
template <int N>
__device__ __forceinline__ float v_weighted(const float *vcol, const float *sc, int p, int p0, int groups, int kv_dim,
                                            float acc)
{
    float vv[N];
#pragma unroll
    for (int i = 0; i < N; i++)
        vv[i] = vcol[(size_t)(p + i * groups) * kv_dim];
#pragma unroll
    for (int i = 0; i < N; i++)
        acc += sc[p - p0 + i * groups] * vv[i];
    return acc;
}

/* The end of a decode attention block (h, s) = (blockIdx.x, blockIdx.y) whose head has n_split
 * chunks of positions: with one, thread t < hd writes the head's output dimension t (sum / l);
 * with several, the block publishes its chunk's maximum score m, sum of exponentials l and
 * unnormalised V sums to part_g, and the last of the head's blocks to finish (a ticket, reset after
 * use) merges them in chunk order. */
__device__ __forceinline__ void merge_chunks(float sum, float m, float l, float *__restrict__ part_g,
                                             int *__restrict__ ticket, float *__restrict__ out, int hd, int n_split)
{
    __shared__ int last;
    const int h = blockIdx.x, sp = blockIdx.y, t = threadIdx.x;
    if (n_split == 1) {
        if (t < hd)
            out[(size_t)h * hd + t] = sum / l;
        return;
    }
    float *mine = part_g + ((size_t)h * gridDim.y + sp) * (size_t)(hd + 2);
    if (t < hd)
        mine[2 + t] = sum;
    if (t == 0)
        mine[0] = m, mine[1] = l;
    __threadfence();
    __syncthreads();
    if (t == 0) {
        last = atomicAdd(&ticket[h], 1) == n_split - 1;
        if (last)
            ticket[h] = 0; // every chunk of this head has arrived: ready for the next step
    }
    __syncthreads();
    if (!last)
        return;
    __threadfence();
    if (t < hd) {
        const float *hp = part_g + (size_t)h * gridDim.y * (size_t)(hd + 2);
        float M = -INFINITY;
        for (int c = 0; c < n_split; c++)
            M = fmaxf(M, __ldcg(hp + (size_t)c * (hd + 2)));
        float L = 0.0f, o = 0.0f;
        for (int c = 0; c < n_split; c++) {
            const float *pc = hp + (size_t)c * (hd + 2), w = expf(__ldcg(pc) - M);
            L += w * __ldcg(pc + 1);
            o += w * __ldcg(pc + 2 + t);
        }
        out[(size_t)h * hd + t] = o / L;
    }
}

/* Decode attention with RoPE and the cache store folded in (the fused path's one launch for what
 * rope_store_kernel + attention_kernel do in two). Block (h, s) takes query head h and the s-th
 * chunk of positions: chunk_min (ATT_CHUNK) of them, or n / gridDim.y when the context is
 * longer, so a long context is spread over up to gridDim.y (ATT_MAX_SPLITS) blocks per head
 * instead of one block walking all of it; blocks past the last chunk exit at once. Each block
 * rotates its q head and its kv head's new k (the same double-precision angles as
 * rope_store_kernel, so the same floats) and keeps them and the new v in shared memory for the
 * current position; block (h, 0) of the first head of each kv group stores the new k and v rows
 * into the cache (no block of this launch reads that row from the cache). Scores: one thread per
 * position, the head-dimension dot product from float4 loads (no per-position reduction, so a
 * thread's loads are in flight together); the weighted sum of V: thread t takes dimension t % hd
 * over positions congruent to t / hd, sixteen at a time. With one chunk the block writes the
 * head's output; with several, each writes its chunk's maximum score, sum of exponentials and
 * unnormalised V sums to part_g, and the last of the head's blocks to finish (a ticket, reset
 * after use) merges them in chunk order. */
__global__ void __launch_bounds__(ATT_THREADS) rope_attention_kernel(const float *__restrict__ q,
                                                                    const float *__restrict__ k,
                                                                    const float *__restrict__ v, float *__restrict__ kc,
                                                                    float *__restrict__ vc,
                                                                    const float *__restrict__ inv_freq,
                                                                    const int32_t *__restrict__ posp,
                                                                    float *__restrict__ out, int n_head, int n_kv, int hd,
                                                                    int rope_dim, float *__restrict__ part_g,
                                                                    int *__restrict__ ticket, int chunk_min)
{
    extern __shared__ float smem[];
    __shared__ float red[32];
    const int h = blockIdx.x, sp = blockIdx.y, group = n_head / n_kv, kvh = h / group, kv_dim = n_kv * hd;
    const int pos = *posp, n = pos + 1, t = threadIdx.x, T = blockDim.x;
    const int chunk = n > chunk_min * (int)gridDim.y ? (n + (int)gridDim.y - 1) / (int)gridDim.y : chunk_min;
    const int n_split = (n + chunk - 1) / chunk, p0 = sp * chunk, p1 = p0 + chunk < n ? p0 + chunk : n;
    if (sp >= n_split)
        return; // nothing of this context falls in this chunk yet (exiting lets dependents launch)
    /* Before waiting for Q/K/V, what does not depend on them: the position was written before the
     * predecessor started and the cache rows of earlier positions by earlier steps. So: this
     * position's rotation (hd / 2 <= T: one pair a thread), and this chunk's cached rows of the kv
     * head pulled into L2, split between the heads of its group, while Q/K/V still streams; the
     * loads after the wait then come from L2, not HBM (bench/RESULTS-cuda-llm.md, run 15). */
    float rot_c = 1.0f, rot_s = 0.0f;
    if (2 * t < rope_dim && t < hd / 2) {
        double sn, cs;
        sincos((double)pos * (double)inv_freq[t], &sn, &cs);
        rot_c = (float)cs, rot_s = (float)sn;
    }
    const int lines = (hd * (int)sizeof(float) + 127) / 128, per_row = 2 * lines, cached = (p1 < pos ? p1 : pos) - p0;
    for (int i = (h % group) * T + t; i < cached * per_row; i += group * T) {
        const int p = p0 + i / per_row, r = i % per_row;
        const float *row = (r < lines ? kc : vc) + (size_t)p * kv_dim + (size_t)kvh * hd;
        asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)row + (r % lines) * 128));
    }
    pdl_wait_then_release();
    float *qs = smem, *kcur = qs + hd, *vcur = kcur + hd, *sc = vcur + hd, *part = sc + (p1 - p0);
    const float *qh = q + (size_t)h * hd, *kh = k + (size_t)kvh * hd, *vh = v + (size_t)kvh * hd;
    if (t < hd / 2) {
        const int i = t;
        float a = qh[2 * i], b = qh[2 * i + 1], ka = kh[2 * i], kb = kh[2 * i + 1];
        if (2 * i < rope_dim) {
            const float c = rot_c, s = rot_s;
            qs[2 * i] = a * c - b * s, qs[2 * i + 1] = a * s + b * c;
            kcur[2 * i] = ka * c - kb * s, kcur[2 * i + 1] = ka * s + kb * c;
        } else {
            qs[2 * i] = a, qs[2 * i + 1] = b, kcur[2 * i] = ka, kcur[2 * i + 1] = kb;
        }
        vcur[2 * i] = vh[2 * i], vcur[2 * i + 1] = vh[2 * i + 1];
    }
    __syncthreads();
    if (h % group == 0 && sp == 0) {
        float *krow = kc + (size_t)pos * kv_dim + (size_t)kvh * hd, *vrow = vc + (size_t)pos * kv_dim + (size_t)kvh * hd;
        for (int i = t; i < hd; i += T)
            krow[i] = kcur[i], vrow[i] = vcur[i];
    }
    const float scale = rsqrtf((float)hd);
    float mx = -INFINITY;
    for (int p = p0 + t; p < p1; p += T) {
        const float *kr = p == pos ? kcur : kc + (size_t)p * kv_dim + (size_t)kvh * hd;
        float s0 = 0.0f, s1 = 0.0f;
        if ((hd & 7) == 0) {
#pragma unroll 4
            for (int i = 0; i < hd; i += 8) {
                const float4 a = *(const float4 *)(kr + i), b = *(const float4 *)(kr + i + 4);
                const float4 x = *(const float4 *)(qs + i), y = *(const float4 *)(qs + i + 4);
                s0 += a.x * x.x + a.y * x.y + a.z * x.z + a.w * x.w;
                s1 += b.x * y.x + b.y * y.y + b.z * y.z + b.w * y.w;
            }
        } else {
            for (int i = 0; i < hd; i++)
                s0 += kr[i] * qs[i];
        }
        const float sv = (s0 + s1) * scale;
        sc[p - p0] = sv;
        mx = fmaxf(mx, sv);
    }
    float m;
    const float l = block_softmax(mx, sc, p1 - p0, red, &m);
    const int groups = T / hd, d = t % hd, g = t / hd;
    float acc = 0.0f;
    if (g < groups) {
        const float *vcol = vc + (size_t)kvh * hd + d;
        const int hi = p1 < pos ? p1 : pos; // the cached positions of this chunk end here
        int p = p0 + g;
        for (; p + 15 * groups < hi; p += 16 * groups) // sixteen loads in flight per thread
            acc = v_weighted<16>(vcol, sc, p, p0, groups, kv_dim, acc);
        for (; p + 3 * groups < hi; p += 4 * groups)
            acc = v_weighted<4>(vcol, sc, p, p0, groups, kv_dim, acc);
        for (; p < p1; p += groups)
            acc += sc[p - p0] * (p == pos ? vcur[d] : vcol[(size_t)p * kv_dim]);
    }
    part[t] = acc;
    __syncthreads();
    float sum = 0.0f;
    if (t < hd)
        for (int i = 0; i < groups; i++)
            sum += part[i * hd + t];
    merge_chunks(sum, m, l, part_g, ticket, out, hd, n_split);
}

/* rope_attention_kernel for head dimension HD (64 or 128) with fewer dependent trips to memory
 * after the wait: same blocks, chunks, rotation, cache store and merge, but the chunk's positions
 * go in tiles of TP = 8192 / HD (128 or 64: a tile's K or V rows are 32 KB, 32 registers a thread)
 * whose cached K rows are requested right after the wait, together with the new q/k/v (four
 * threads a position, HD / 4 dimensions each), and whose V rows are requested before the
 * softmax's reductions (HD / 4 threads a position, four dimensions each, eight positions a thread),
 * so that each tile costs about one trip instead of one per sixteen loads of a thread; tiles
 * after the first rescale the running sums (online softmax). */
template <int HD>
__global__ void __launch_bounds__(ATT_THREADS, 2) rope_attention_tiled_kernel(const float *__restrict__ q,
                                                                      const float *__restrict__ k,
                                                                      const float *__restrict__ v,
                                                                      float *__restrict__ kc, float *__restrict__ vc,
                                                                      const float *__restrict__ inv_freq,
                                                                      const int32_t *__restrict__ posp,
                                                                      float *__restrict__ out, int n_head, int n_kv,
                                                                      int rope_dim, float *__restrict__ part_g,
                                                                      int *__restrict__ ticket, int chunk_min)
{
    constexpr int TP = 8192 / HD, KF = HD / 16;      // positions a tile; float4s of a K thread's part
    constexpr int KP = ATT_THREADS / 4, KJ = TP / KP; // K: positions a pass; positions a thread
    constexpr int VT = HD / 4, VP = ATT_THREADS / VT; // V: threads a position; positions a pass
    constexpr int VJ = TP / VP;                       // V: positions a thread
    static_assert(ATT_THREADS == 256 && (HD == 64 || HD == 128), "the tile layout assumes these");
    __shared__ __align__(16) float qs[HD];
    __shared__ __align__(16) float kcur[HD];
    __shared__ __align__(16) float vcur[HD];
    __shared__ __align__(16) float part[VP][HD];
    __shared__ float sc[TP];
    __shared__ float red[32];
    const int h = blockIdx.x, sp = blockIdx.y, group = n_head / n_kv, kvh = h / group, kv_dim = n_kv * HD;
    const int pos = *posp, n = pos + 1, t = threadIdx.x;
    // past chunk_min x gridDim.y positions, chunks of whole tiles: fewer blocks, no short last tile
    const int spread = (n + (int)gridDim.y - 1) / (int)gridDim.y;
    const int chunk = n > chunk_min * (int)gridDim.y ? (spread + TP - 1) / TP * TP : chunk_min;
    const int n_split = (n + chunk - 1) / chunk, p0 = sp * chunk, p1 = p0 + chunk < n ? p0 + chunk : n;
    if (sp >= n_split)
        return;
    float rot_c = 1.0f, rot_s = 0.0f;
    if (2 * t < rope_dim && t < HD / 2) {
        double sn, cs;
        sincos((double)pos * (double)inv_freq[t], &sn, &cs);
        rot_c = (float)cs, rot_s = (float)sn;
    }
    const int hi = p1 < pos ? p1 : pos; // cached positions of this chunk: [p0, hi)
    const float *kbase = kc + (size_t)kvh * HD, *vbase = vc + (size_t)kvh * HD;
    constexpr int LINES = HD * 4 / 128; // 128-byte lines a row
    for (int i = (h % group) * ATT_THREADS + t; i < (hi - p0) * 2 * LINES; i += group * ATT_THREADS) {
        const int p = p0 + i / (2 * LINES), r = i % (2 * LINES);
        asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)((r < LINES ? kbase : vbase) + (size_t)p * kv_dim) +
                                                      (r % LINES) * 128));
    }
    pdl_wait_then_release();
    const int kp = t >> 2, kq = t & 3; // scores: positions kp, kp + KP, .. of a tile; dimensions HD / 4 x kq ..
    const int vd = t % VT, vp = t / VT; // V: dimensions 4 vd .. 4 vd + 3; positions vp, vp + VP, ..
    float4 kr[KJ][KF];
    auto load_k = [&](int a) {
#pragma unroll
        for (int j = 0; j < KJ; j++) {
            const int p = a + kp + KP * j;
            if (p < hi) {
                const float4 *row = (const float4 *)(kbase + (size_t)p * kv_dim + HD / 4 * kq);
#pragma unroll
                for (int i = 0; i < KF; i++)
                    kr[j][i] = __ldg(row + i);
            } else { // defined either way, so no earlier tile's rows stay live across the loop
#pragma unroll
                for (int i = 0; i < KF; i++)
                    kr[j][i] = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
            }
        }
    };
    load_k(p0);
    if (t < HD / 2) {
        const float *qh = q + (size_t)h * HD, *kh = k + (size_t)kvh * HD, *vh = v + (size_t)kvh * HD;
        const float a = qh[2 * t], b = qh[2 * t + 1], ka = kh[2 * t], kb = kh[2 * t + 1];
        if (2 * t < rope_dim) {
            qs[2 * t] = a * rot_c - b * rot_s, qs[2 * t + 1] = a * rot_s + b * rot_c;
            kcur[2 * t] = ka * rot_c - kb * rot_s, kcur[2 * t + 1] = ka * rot_s + kb * rot_c;
        } else {
            qs[2 * t] = a, qs[2 * t + 1] = b, kcur[2 * t] = ka, kcur[2 * t + 1] = kb;
        }
        vcur[2 * t] = vh[2 * t], vcur[2 * t + 1] = vh[2 * t + 1];
    }
    __syncthreads();
    if (h % group == 0 && sp == 0 && t < HD) {
        kc[(size_t)pos * kv_dim + (size_t)kvh * HD + t] = kcur[t];
        vc[(size_t)pos * kv_dim + (size_t)kvh * HD + t] = vcur[t];
    }
    const float scale = rsqrtf((float)HD);
    float m_run = -INFINITY, l_run = 0.0f;
    float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int a = p0; a < p1; a += TP) {
        const int b = a + TP < p1 ? a + TP : p1;
        float mx = -INFINITY;
#pragma unroll
        for (int j = 0; j < KJ; j++) {
            const int p = a + kp + KP * j;
            float sv = 0.0f;
            if (p < b) {
#pragma unroll
                for (int i = 0; i < KF; i++) {
                    const float4 x = *(const float4 *)(qs + HD / 4 * kq + 4 * i);
                    const float4 y = p == pos ? *(const float4 *)(kcur + HD / 4 * kq + 4 * i) : kr[j][i];
                    sv += x.x * y.x + x.y * y.y + x.z * y.z + x.w * y.w;
                }
            }
            sv += __shfl_xor_sync(0xffffffffu, sv, 1);
            sv += __shfl_xor_sync(0xffffffffu, sv, 2);
            if (p < b) {
                sv *= scale;
                if (kq == 0)
                    sc[p - a] = sv;
                mx = fmaxf(mx, sv);
            }
        }
        float4 vv[VJ];
#pragma unroll
        for (int i = 0; i < VJ; i++) {
            const int p = a + vp + VP * i;
            if (p < hi)
                vv[i] = __ldg((const float4 *)(vbase + (size_t)p * kv_dim) + vd);
        }
        float m_t;
        const float l_t = block_softmax(mx, sc, b - a, red, &m_t);
        const float m_new = fmaxf(m_run, m_t), c_old = expf(m_run - m_new), c_new = expf(m_t - m_new);
        l_run = l_run * c_old + l_t * c_new;
        float4 s4 = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll
        for (int i = 0; i < VJ; i++) {
            const int p = a + vp + VP * i;
            if (p < b) {
                const float w = sc[p - a];
                const float4 y = p == pos ? *(const float4 *)(vcur + 4 * vd) : vv[i];
                s4.x += w * y.x, s4.y += w * y.y, s4.z += w * y.z, s4.w += w * y.w;
            }
        }
        acc.x = acc.x * c_old + s4.x * c_new, acc.y = acc.y * c_old + s4.y * c_new;
        acc.z = acc.z * c_old + s4.z * c_new, acc.w = acc.w * c_old + s4.w * c_new;
        m_run = m_new;
        if (b < p1) {
            load_k(b);
            __syncthreads(); // sc and red are rewritten by the next tile
        }
    }
    *(float4 *)&part[vp][4 * vd] = acc;
    __syncthreads();
    float sum = 0.0f;
    if (t < HD)
        for (int i = 0; i < VP; i++)
            sum += part[i][t];
    merge_chunks(sum, m_run, l_run, part_g, ticket, out, HD, n_split);
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
/* Position chunks (blocks per head) of the decode attention for n_ctx positions, and the most
 * positions one chunk takes. */
int att_chunk()
{
    static const int c = getenv("SHOAL_CUDA_ATT_CHUNK") ? atoi(getenv("SHOAL_CUDA_ATT_CHUNK")) : ATT_CHUNK;
    return c >= 32 ? c : ATT_CHUNK;
}

int att_splits(int n_ctx)
{
    static const int env = getenv("SHOAL_CUDA_ATT_SPLITS") ? atoi(getenv("SHOAL_CUDA_ATT_SPLITS")) : 0;
    const int cap = env >= 1 ? env : ATT_MAX_SPLITS, s = (n_ctx + att_chunk() - 1) / att_chunk();
    return s < 1 ? 1 : s > cap ? cap : s;
}

int att_chunk_max(int n_ctx)
{
    const int s = att_splits(n_ctx);
    return n_ctx > att_chunk() * s ? (n_ctx + s - 1) / s : att_chunk();
}

// q, k and v of the current position, the chunk's scores, partial sums
size_t rope_attention_smem(int hd, int n_ctx)
{
    return (size_t)(3 * hd + att_chunk_max(n_ctx) + ATT_THREADS) * sizeof(float);
}

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
    const size_t bytes = rope_attention_smem(ATT_THREADS, n_ctx), prefill = attention_smem(ATT_THREADS, n_ctx);
    cudaError_t e = cudaSuccess;
    if (prefill > 48 * 1024)
        e = cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)prefill);
    if (!e && bytes > 48 * 1024)
        e = cudaFuncSetAttribute(rope_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
    return e ? e : shoal_cu_attention_tiled_prepare();
}

size_t shoal_cu_rope_attention_scratch(int n_head, int head_dim, int n_ctx)
{
    return (size_t)n_head * (size_t)att_splits(n_ctx) * (size_t)(head_dim + 2) * sizeof(float) +
           (size_t)n_head * sizeof(int);
}

cudaError_t shoal_cu_rope_attention(const float *q, const float *k, const float *v, float *kcache, float *vcache,
                                    const float *inv_freq, const int32_t *pos, float *out, int n_head, int n_kv,
                                    int head_dim, int rope_dim, int n_ctx, void *scratch, cudaStream_t s)
{
    float *part = (float *)scratch;
    int *ticket = (int *)(part + (size_t)n_head * (size_t)att_splits(n_ctx) * (size_t)(head_dim + 2));
    /* head dimensions 64 (SmolLM2, Llama 3.2 1B) and 128 (Llama 3.2 3B, 3.1 8B): the tiled kernel,
     * 1.08x decode on the 1B F16 shape and 1.17x on the SmolLM2 shape (H100, bench/RESULTS-cuda-llm.md,
     * run 26); SHOAL_CUDA_ATT_TILED=0 keeps the general one, for experiments */
    static const bool tiled = !(getenv("SHOAL_CUDA_ATT_TILED") && !strcmp(getenv("SHOAL_CUDA_ATT_TILED"), "0"));
    const dim3 grid((unsigned)n_head, (unsigned)att_splits(n_ctx));
    if (head_dim == 64 && tiled)
        return launch(rope_attention_tiled_kernel<64>, grid, dim3(ATT_THREADS), 0, s, q, k, v, kcache, vcache, inv_freq,
                      pos, out, n_head, n_kv, rope_dim, part, ticket, att_chunk());
    if (head_dim == 128 && tiled)
        return launch(rope_attention_tiled_kernel<128>, grid, dim3(ATT_THREADS), 0, s, q, k, v, kcache, vcache, inv_freq,
                      pos, out, n_head, n_kv, rope_dim, part, ticket, att_chunk());
    return launch(rope_attention_kernel, dim3((unsigned)n_head, (unsigned)att_splits(n_ctx)), dim3(ATT_THREADS),
                  rope_attention_smem(head_dim, n_ctx), s, q, k, v, kcache, vcache, inv_freq, pos, out, n_head, n_kv,
                  head_dim, rope_dim, part, ticket, att_chunk());
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
