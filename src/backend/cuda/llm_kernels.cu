/* llm_kernels.cu — the kernels of the Llama forward pass on CUDA: weight-streaming matvecs for
 * F16, BF16, Q8_0, Q4_0, Q4_1 (dequantised in registers, fp32 accumulation), the embedding
 * lookup, RMSNorm, RoPE + cache store, attention, SwiGLU, argmax, and the dequantisation that
 * feeds batched prefill's SGEMM. The per-token kernels take a batch dimension in blockIdx.y
 * (prefill); decode launches them with one.
 *
 * Matvec, the reference (matvec_kernel): decode is bound by weight bytes, so one warp owns one row
 * and each lane issues 16-byte loads of the (repacked, see llm_kernels.h) payload; 8 rows per
 * 256-thread block; x is read through the read-only cache. The fused kernels (mv_rows_kernel, the
 * default) give each block several rows that share every activation load, keep several weight
 * loads in flight per thread, and fold the RMS norm, the Q/K/V triple and gate/up + SwiGLU into
 * single launches. Positions and tokens are
 * read on the device so that one decode step is a fixed sequence of launches (a CUDA graph
 * replays it), and every kernel waits for its inputs itself, so launches may use programmatic
 * dependent launch. */
#include "backend/cuda/llm_kernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdlib.h>

namespace {

constexpr int MV_THREADS = 256, MV_ROWS = MV_THREADS / 32;
enum { T_F16 = 1, T_Q4_0 = 2, T_Q4_1 = 3, T_Q8_0 = 8, T_BF16 = 30 };

__device__ __forceinline__ float warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

/* Programmatic dependent launch (Hopper): a kernel launched with the PDL attribute may start
 * while its predecessor is still running. Every kernel here therefore waits for its predecessor's
 * results (griddepcontrol.wait; a no-op when launched without the attribute) before reading
 * anything a predecessor wrote or writing anything one may still read, and then lets its own
 * successor launch, which can meanwhile stream the weights it does not need to wait for. */
__device__ __forceinline__ void pdl_wait_then_release()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

__device__ __forceinline__ float h2f(const __half *p, size_t i) { return __half2float(p[i]); }

__device__ __forceinline__ void bf16x2(uint32_t w, float &a, float &b)
{
    a = __uint_as_float(w << 16);
    b = __uint_as_float(w & 0xffff0000u);
}

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
            if (TYPE == T_F16) {
                const __half2 *h = (const __half2 *)&q;
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    float2 t = __half22float2(h[k]);
                    f[2 * k] = t.x;
                    f[2 * k + 1] = t.y;
                }
            } else {
                bf16x2(q.x, f[0], f[1]);
                bf16x2(q.y, f[2], f[3]);
                bf16x2(q.z, f[4], f[5]);
                bf16x2(q.w, f[6], f[7]);
            }
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

/* blockIdx.y selects the token of a batch (0 for one token). */
__global__ void embed_kernel(shoal_cu_mat_t e, const int32_t *__restrict__ token, float *__restrict__ x)
{
    pdl_wait_then_release();
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

__device__ float block_sum(float v, float *sh)
{
    v = warp_sum(v);
    const int lane = threadIdx.x & 31, wid = threadIdx.x / 32, nw = (blockDim.x + 31) / 32;
    __syncthreads(); // sh may still be read by a previous call
    if (lane == 0)
        sh[wid] = v;
    __syncthreads();
    v = lane < nw ? sh[lane] : 0.0f;
    return warp_sum(v);
}

/* The unnormalised softmax of sc[0, n) in place: the block's maximum from each thread's own
 * maximum mx (over the positions it wrote), sc[p] = exp(sc[p] - max), and the block-wide sum,
 * returned to every thread with the writes ordered before later reads. red: 32 floats. */
__device__ float block_softmax(float mx, float *sc, int n, float *red)
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
constexpr int ATT_THREADS = 256;

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

/* Decode attention with RoPE and the cache store folded in (the fused path's one launch for what
 * rope_store_kernel + attention_kernel do in two). One block per query head: it rotates its q
 * head and its kv head's new k (the same double-precision angles as rope_store_kernel, so the
 * same floats), keeps them and the new v in shared memory for the current position, and the
 * first block of each kv group stores the new k and v rows into the cache. Other positions come
 * from the cache, which no block of this launch writes elsewhere. Scores: one thread per
 * position, the whole head-dimension dot product from float4 loads (no per-position warp
 * reduction, so a thread's loads are all in flight at once); the weighted sum of V: thread t
 * takes dimension t % hd over positions congruent to t / hd, sixteen at a time. */
__global__ void __launch_bounds__(ATT_THREADS) rope_attention_kernel(const float *__restrict__ q,
                                                                    const float *__restrict__ k,
                                                                    const float *__restrict__ v, float *__restrict__ kc,
                                                                    float *__restrict__ vc,
                                                                    const float *__restrict__ inv_freq,
                                                                    const int32_t *__restrict__ posp,
                                                                    float *__restrict__ out, int n_head, int n_kv, int hd,
                                                                    int rope_dim)
{
    pdl_wait_then_release();
    extern __shared__ float smem[];
    __shared__ float red[32];
    const int h = blockIdx.x, group = n_head / n_kv, kvh = h / group, kv_dim = n_kv * hd;
    const int pos = *posp, n = pos + 1, t = threadIdx.x, T = blockDim.x;
    float *qs = smem, *kcur = qs + hd, *vcur = kcur + hd, *sc = vcur + hd, *part = sc + n;
    const float *qh = q + (size_t)h * hd, *kh = k + (size_t)kvh * hd, *vh = v + (size_t)kvh * hd;
    for (int i = t; i < hd / 2; i += T) {
        float a = qh[2 * i], b = qh[2 * i + 1], ka = kh[2 * i], kb = kh[2 * i + 1];
        if (2 * i < rope_dim) {
            double sn, cs;
            sincos((double)pos * (double)inv_freq[i], &sn, &cs);
            const float c = (float)cs, s = (float)sn;
            qs[2 * i] = a * c - b * s, qs[2 * i + 1] = a * s + b * c;
            kcur[2 * i] = ka * c - kb * s, kcur[2 * i + 1] = ka * s + kb * c;
        } else {
            qs[2 * i] = a, qs[2 * i + 1] = b, kcur[2 * i] = ka, kcur[2 * i + 1] = kb;
        }
        vcur[2 * i] = vh[2 * i], vcur[2 * i + 1] = vh[2 * i + 1];
    }
    __syncthreads();
    float *krow = kc + (size_t)pos * kv_dim + (size_t)kvh * hd, *vrow = vc + (size_t)pos * kv_dim + (size_t)kvh * hd;
    if (h % group == 0)
        for (int i = t; i < hd; i += T)
            krow[i] = kcur[i], vrow[i] = vcur[i];
    const float scale = rsqrtf((float)hd);
    float mx = -INFINITY;
    for (int p = t; p < n; p += T) {
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
        sc[p] = sv;
        mx = fmaxf(mx, sv);
    }
    const float l = block_softmax(mx, sc, n, red);
    const int groups = T / hd, d = t % hd, g = t / hd;
    float acc = 0.0f;
    if (g < groups) {
        const float *vcol = vc + (size_t)kvh * hd + d;
        int p = g;
        for (; p + 15 * groups < pos; p += 16 * groups) { // sixteen loads in flight per thread
            float vv[16];
#pragma unroll
            for (int i = 0; i < 16; i++)
                vv[i] = vcol[(size_t)(p + i * groups) * kv_dim];
#pragma unroll
            for (int i = 0; i < 16; i++)
                acc += sc[p + i * groups] * vv[i];
        }
        for (; p + 3 * groups < pos; p += 4 * groups) {
            float vv[4];
#pragma unroll
            for (int i = 0; i < 4; i++)
                vv[i] = vcol[(size_t)(p + i * groups) * kv_dim];
#pragma unroll
            for (int i = 0; i < 4; i++)
                acc += sc[p + i * groups] * vv[i];
        }
        for (; p < n; p += groups)
            acc += sc[p] * (p == pos ? vcur[d] : vcol[(size_t)p * kv_dim]);
    }
    part[t] = acc;
    __syncthreads();
    if (t < hd) {
        float s = 0.0f;
        for (int i = 0; i < groups; i++)
            s += part[i * hd + t];
        out[(size_t)h * hd + t] = s / l;
    }
}

/* ---- fused decode kernels: fewer launches per layer, more weight bytes in flight ----
 *
 * A block owns R output rows (of up to three matrices of one type and width, run on in order; for
 * gate/up, R rows of each) and its threads split every row's 16-byte weight units between them
 * (thread t takes units t, t + T, ...). Each activation unit is loaded once and used for all the
 * block's rows, so x's reads from L1 cost a fraction of the weight bytes instead of 2-4 times them
 * (matvec_kernel re-reads x per row), and each thread keeps R x UNROLL 16-byte weight loads in
 * flight before consuming them: decode is bound by the weight bytes in flight per SM. Per-thread
 * sums meet in a warp and then a shared-memory reduction. With NORM the block first computes x's
 * RMS scale and each thread normalises what it loads; gate/up rows leave silu(g) * u. */

constexpr int MV_MAXW = 8, UNROLL = 2; // warps per block at most; units in flight per thread and row (default)

struct mv3 {
    const void *qs[3];
    const __half *d[3], *m[3];
    float *y[3];
    int rows[3];
};

template <int TYPE> struct unit_elems { static constexpr int n = TYPE == T_Q8_0 ? 16 : (TYPE == T_Q4_0 || TYPE == T_Q4_1) ? 32 : 8; };

/* The activations of unit u (E floats), normalised by r * nw when NORM. */
template <int TYPE, bool NORM>
__device__ __forceinline__ void load_unit(const float *__restrict__ x, const float *__restrict__ nw, float r, int u,
                                          float *xv)
{
    constexpr int E = unit_elems<TYPE>::n;
    const float4 *xp = (const float4 *)(x + (size_t)u * E);
#pragma unroll
    for (int k = 0; k < E / 4; k++) {
        float4 v = __ldg(xp + k);
        if (NORM) {
            const float4 w = __ldg((const float4 *)(nw + (size_t)u * E) + k);
            v.x = v.x * r * w.x, v.y = v.y * r * w.y, v.z = v.z * r * w.z, v.w = v.w * r * w.w;
        }
        xv[4 * k] = v.x, xv[4 * k + 1] = v.y, xv[4 * k + 2] = v.z, xv[4 * k + 3] = v.w;
    }
}

/* Small integers to float without the conversion unit (a quarter of the FMA rate on Hopper, and
 * a quantised unit needs 16 or 32 conversions per 16 bytes): byte j of u is placed in the low
 * mantissa bits of a float whose exponent makes one mantissa step 1.0, and the bias subtracted.
 * Exact, so the sums equal matvec_kernel's conversions bit for bit.
 * i8f: byte j of u is a signed byte XOR 0x80 (value + 128); u4f: byte j of u is in [0, 15]. */
__device__ __forceinline__ float i8f(uint32_t u, int j)
{
    return __int_as_float(__byte_perm(u, 0x4B400000u, 0x7650u | (unsigned)j)) - 12583040.0f; // 1.5 * 2^23 + 128
}

__device__ __forceinline__ float u4f(uint32_t u, int j)
{
    return __int_as_float(__byte_perm(u, 0x4B000000u, 0x7650u | (unsigned)j)) - 8388608.0f; // 2^23
}

/* One unit's contribution from its 16 payload bytes q (and the block's scale / minimum), with
 * matvec_kernel's association within the unit. */
template <int TYPE>
__device__ __forceinline__ float unit_dot(uint4 q, float d, float m, const float *xv)
{
    if (TYPE == T_F16 || TYPE == T_BF16) {
        float f[8];
        if (TYPE == T_F16) {
            const __half2 *h = (const __half2 *)&q;
#pragma unroll
            for (int k = 0; k < 4; k++) {
                float2 t = __half22float2(h[k]);
                f[2 * k] = t.x;
                f[2 * k + 1] = t.y;
            }
        } else {
            bf16x2(q.x, f[0], f[1]);
            bf16x2(q.y, f[2], f[3]);
            bf16x2(q.z, f[4], f[5]);
            bf16x2(q.w, f[6], f[7]);
        }
        return f[0] * xv[0] + f[1] * xv[1] + f[2] * xv[2] + f[3] * xv[3] + f[4] * xv[4] + f[5] * xv[5] + f[6] * xv[6] +
               f[7] * xv[7];
    } else if (TYPE == T_Q8_0) {
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
        float s = 0.0f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t u = w[k] ^ 0x80808080u; // two's complement -> biased by 128
            s += i8f(u, 0) * xv[4 * k] + i8f(u, 1) * xv[4 * k + 1] + i8f(u, 2) * xv[4 * k + 2] + i8f(u, 3) * xv[4 * k + 3];
        }
        return s * d;
    } else {
        const uint32_t w[4] = {q.x, q.y, q.z, q.w};
        float s = 0.0f, sx = 0.0f;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const uint32_t lo = w[k] & 0x0f0f0f0fu, hi = (w[k] >> 4) & 0x0f0f0f0fu;
            float l0 = u4f(lo, 0), l1 = u4f(lo, 1), l2 = u4f(lo, 2), l3 = u4f(lo, 3);
            float h0 = u4f(hi, 0), h1 = u4f(hi, 1), h2 = u4f(hi, 2), h3 = u4f(hi, 3);
            s += l0 * xv[4 * k] + l1 * xv[4 * k + 1] + l2 * xv[4 * k + 2] + l3 * xv[4 * k + 3] + h0 * xv[16 + 4 * k] +
                 h1 * xv[16 + 4 * k + 1] + h2 * xv[16 + 4 * k + 2] + h3 * xv[16 + 4 * k + 3];
            sx += xv[4 * k] + xv[4 * k + 1] + xv[4 * k + 2] + xv[4 * k + 3] + xv[16 + 4 * k] + xv[16 + 4 * k + 1] +
                  xv[16 + 4 * k + 2] + xv[16 + 4 * k + 3];
        }
        return TYPE == T_Q4_0 ? d * (s - 8.0f * sx) : d * s + m * sx;
    }
}

/* Unit u of row `row`: its payload and scale(s). */
template <int TYPE>
__device__ __forceinline__ void unit_load(const void *__restrict__ qs, const __half *__restrict__ dd,
                                          const __half *__restrict__ mm, size_t row, int n_in, int u, uint4 &q,
                                          float &d, float &m)
{
    constexpr int E = unit_elems<TYPE>::n;
    // payload bytes per row: 2 per element (F16, BF16), 1 (Q8_0), 1/2 (Q4)
    const size_t rb = TYPE == T_Q8_0 ? (size_t)n_in : (TYPE == T_Q4_0 || TYPE == T_Q4_1) ? (size_t)n_in / 2 : (size_t)n_in * 2;
    q = __ldg((const uint4 *)((const uint8_t *)qs + row * rb) + u);
    d = 0.0f, m = 0.0f;
    if (TYPE == T_Q8_0 || TYPE == T_Q4_0 || TYPE == T_Q4_1)
        d = __half2float(dd[row * (size_t)(n_in / 32) + (size_t)u * E / 32]);
    if (TYPE == T_Q4_1)
        m = __half2float(mm[row * (size_t)(n_in / 32) + u]);
}

/* UN units (u0, u0 + T, ...) of the block's NR rows, loaded together. */
template <int NR, int UN> struct chunk {
    uint4 q[UN][NR];
    float d[UN][NR], m[UN][NR];
};

/* A row group: R consecutive rows of one matrix (for gate/up, the same R rows of both; the launch
 * splits matrices whose row counts R does not divide, so a group never straddles two), the
 * output vector and how many of the R rows exist. */
struct rgroup {
    const void *qs[2];
    const __half *dd[2], *mm[2];
    float *y;
    int row0, n;
};

template <int MODE, int R>
__device__ __forceinline__ rgroup group_of(const mv3 &p, int grp, int total_rows)
{
    rgroup g;
    int r0 = grp * R, k = 0;
    if (MODE != 2) {
        // which matrix: resolved with constant indices (no local copy of p)
        g.qs[0] = p.qs[0], g.dd[0] = p.d[0], g.mm[0] = p.m[0], g.y = p.y[0];
        int left = p.rows[0];
        if (r0 >= p.rows[0]) {
            r0 -= p.rows[0], k = 1;
            g.qs[0] = p.qs[1], g.dd[0] = p.d[1], g.mm[0] = p.m[1], g.y = p.y[1], left = p.rows[1];
            if (r0 >= p.rows[1]) {
                r0 -= p.rows[1], k = 2;
                g.qs[0] = p.qs[2], g.dd[0] = p.d[2], g.mm[0] = p.m[2], g.y = p.y[2], left = p.rows[2];
            }
        }
        g.qs[1] = g.qs[0], g.dd[1] = g.dd[0], g.mm[1] = g.mm[0];
        left -= r0;
        g.n = grp * R < total_rows ? (left < R ? left : R) : 0;
    } else {
        g.qs[0] = p.qs[0], g.dd[0] = p.d[0], g.mm[0] = p.m[0];
        g.qs[1] = p.qs[1], g.dd[1] = p.d[1], g.mm[1] = p.m[1];
        g.y = p.y[0];
        const int left = total_rows - r0;
        g.n = left <= 0 ? 0 : left < R ? left : R;
    }
    (void)k;
    g.row0 = r0;
    return g;
}

/* Row r of the block's NR: matrix r / R for gate/up (rows r % R), else the group's only one. */
template <int TYPE, int MODE, int R, int NR, int UN>
__device__ __forceinline__ void chunk_load(chunk<NR, UN> &c, const rgroup &g, int n_in, int u0, int T, int U)
{
#pragma unroll
    for (int j = 0; j < UN; j++) {
        const int u = u0 + T * j;
        if (u < U) {
#pragma unroll
            for (int r = 0; r < NR; r++) {
                const int k = MODE == 2 ? r / R : 0, rr = r % R;
                if (rr < g.n)
                    unit_load<TYPE>(g.qs[k], g.dd[k], g.mm[k], (size_t)(g.row0 + rr), n_in, u, c.q[j][r], c.d[j][r],
                                    c.m[j][r]);
            }
        }
    }
}

/* MODE 0: y = W.x; 1: y += W.x (the residual); 2: y = silu(Wg.x) * (Wu.x) (gate and up).
 * Blocks stay resident and take row groups blockIdx.x, + gridDim.x, ... (the launch sizes the grid
 * to what the GPU holds at once), so the RMS scale is computed once per block and no group waits
 * for a new block to start. The first weights are loaded before waiting for the predecessor
 * kernel (PDL: weights never depend on it, so their latency overlaps its tail), and each next
 * group's first weights are in flight while the current group's sums are reduced and stored. */
template <int TYPE, bool NORM, int MODE, int R, int UN>
__global__ void __launch_bounds__(MV_MAXW * 32) mv_rows_kernel(mv3 p, const float *__restrict__ x,
                                                              const float *__restrict__ nw, float eps, int n_in,
                                                              int total_rows)
{
    constexpr int NR = MODE == 2 ? 2 * R : R, E = unit_elems<TYPE>::n;
    const int U = n_in / E, T = blockDim.x, t = threadIdx.x, lane = t & 31, wid = t >> 5;
    const int groups = (total_rows + R - 1) / R;
    int grp = blockIdx.x;
    rgroup g = group_of<MODE, R>(p, grp, total_rows);
    chunk<NR, UN> c;
    chunk_load<TYPE, MODE, R, NR, UN>(c, g, n_in, t, T, U);
    pdl_wait_then_release();
    float rs = 1.0f;
    __shared__ float red[NR > 32 ? NR : 32][MV_MAXW];
    if (NORM) {
        float ss = 0.0f;
        for (int i = t * 4; i < n_in; i += T * 4) {
            const float4 v = __ldg((const float4 *)(x + i));
            ss += v.x * v.x + v.y * v.y + v.z * v.z + v.w * v.w;
        }
        rs = 1.0f / sqrtf(block_sum(ss, &red[0][0]) / (float)n_in + eps);
        __syncthreads(); // red is reused below
    }
    const int nwarps = T >> 5;
    for (; grp < groups; grp += gridDim.x) {
        float acc[NR];
#pragma unroll
        for (int r = 0; r < NR; r++)
            acc[r] = 0.0f;
        for (int u0 = t; u0 < U; u0 += T * UN) {
            if (u0 != t)
                chunk_load<TYPE, MODE, R, NR, UN>(c, g, n_in, u0, T, U);
#pragma unroll
            for (int j = 0; j < UN; j++) {
                const int u = u0 + T * j;
                if (u < U) {
                    float xv[E];
                    load_unit<TYPE, NORM>(x, nw, rs, u, xv);
#pragma unroll
                    for (int r = 0; r < NR; r++)
                        if (r % R < g.n)
                            acc[r] += unit_dot<TYPE>(c.q[j][r], c.d[j][r], c.m[j][r], xv);
                }
            }
        }
        float *const out = g.y + g.row0;
        const int n_out = g.n;
        g = group_of<MODE, R>(p, grp + (int)gridDim.x, total_rows);
        chunk_load<TYPE, MODE, R, NR, UN>(c, g, n_in, t, T, U); // the next group's first weights (none past the end)
#pragma unroll
        for (int r = 0; r < NR; r++) {
            const float v = warp_sum(acc[r]);
            if (lane == 0)
                red[r][wid] = v;
        }
        __syncthreads();
        if (t < n_out) {
            float a = 0.0f;
            for (int w = 0; w < nwarps; w++)
                a += red[t][w];
            if (MODE == 2) {
                float u = 0.0f;
                for (int w = 0; w < nwarps; w++)
                    u += red[R + t][w];
                out[t] = a / (1.0f + expf(-a)) * u;
            } else {
                out[t] = MODE == 1 ? out[t] + a : a;
            }
        }
        __syncthreads(); // red is rewritten by the next group
    }
}

/* Launches a kernel on s, with programmatic dependent launch when enabled for this thread's
 * launches (shoal_cu_set_pdl). */
static thread_local bool g_pdl = false;

template <typename... P, typename... A>
cudaError_t launch(void (*k)(P...), dim3 grid, dim3 block, size_t smem, cudaStream_t s, A... args)
{
    cudaLaunchAttribute at[1];
    at[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    at[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = s;
    cfg.attrs = at;
    cfg.numAttrs = g_pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, k, args...);
}

/* Rows per group: 4 (gate/up: 2 of each). Threads per block: up to eight warps, so that each
 * thread owns one unit of a row of 16-bit weights, UNROLL of quantised ones (a 576-wide Q4 row runs
 * one warp). Blocks: as many as the GPU holds at once (they loop over the groups; the count is
 * trimmed so that every block takes the same number), or fewer when there are fewer groups.
 * Measured on an H100 (bench/gpu/run_tune.sh, bench/RESULTS-cuda-llm.md). */
/* Tuning overrides for kernel experiments (bench/gpu/run_tune.sh): SHOAL_CUDA_MV_WARPS forces the
 * warps per block (1, 2, 4, 8), SHOAL_CUDA_MV_BLOCKS_PER_SM caps the resident blocks per SM. Unset
 * (the default), the launch picks both as described above. */
static int env_int(const char *name)
{
    const char *v = getenv(name);
    return v ? atoi(v) : 0;
}

static int mv_warps_override() { static const int w = env_int("SHOAL_CUDA_MV_WARPS"); return w; }
static int mv_blocks_cap() { static const int b = env_int("SHOAL_CUDA_MV_BLOCKS_PER_SM"); return b; }

template <typename K>
static unsigned resident_grid(K kernel, int threads, int groups)
{
    int dev = 0, sms = 0, per_sm = 0;
    if (cudaGetDevice(&dev) || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) ||
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, 0) || per_sm < 1 || sms < 1) {
        cudaGetLastError();
        return (unsigned)groups; // one group per block: correct, only slower
    }
    if (mv_blocks_cap() > 0 && per_sm > mv_blocks_cap())
        per_sm = mv_blocks_cap();
    const long cap = (long)sms * per_sm;
    if (groups <= cap)
        return (unsigned)groups;
    // every block the same number of groups: a block with one more would set the kernel's end
    const long rounds = (groups + cap - 1) / cap;
    return (unsigned)((groups + rounds - 1) / rounds);
}

/* Rows per group for plain and accumulating launches: 4, or 8 under SHOAL_CUDA_MV_ROWS=8 (an
 * experiment: 8 rows with one unit in flight per row instead of 4 with two). */
static int mv_group_rows() { static const int r = env_int("SHOAL_CUDA_MV_ROWS") == 8 ? 8 : 4; return r; }

template <int TYPE, bool NORM, int MODE, int R, int UN>
cudaError_t launch_rows_r(const mv3 &p, const float *x, const float *norm_w, float eps, int n_in, int rows, cudaStream_t s)
{
    // units per thread and row: one for 16-bit weights (8 elements), UN for quantised ones
    // (their units carry 16 or 32 elements: fewer threads keep as many bytes in flight)
    const int U = n_in / unit_elems<TYPE>::n, per = 32 * (TYPE == T_F16 || TYPE == T_BF16 ? 1 : UN);
    int warps = U >= per * MV_MAXW ? MV_MAXW : U >= per * 4 ? 4 : U >= per * 2 ? 2 : 1;
    if (mv_warps_override() == 1 || mv_warps_override() == 2 || mv_warps_override() == 4 || mv_warps_override() == 8)
        warps = mv_warps_override();
    const int groups = (rows + R - 1) / R;
    auto k = mv_rows_kernel<TYPE, NORM, MODE, R, UN>;
    return launch(k, dim3(resident_grid(k, warps * 32, groups)), dim3((unsigned)warps * 32), 0, s, p, x, norm_w, eps,
                  n_in, rows);
}

template <int TYPE, bool NORM, int MODE>
cudaError_t launch_rows(const mv3 &p, const float *x, const float *norm_w, float eps, int n_in, int rows, cudaStream_t s)
{
    if (mv_group_rows() == 8)
        return launch_rows_r<TYPE, NORM, MODE, MODE == 2 ? 4 : 8, 1>(p, x, norm_w, eps, n_in, rows, s);
    return launch_rows_r<TYPE, NORM, MODE, MODE == 2 ? 2 : 4, UNROLL>(p, x, norm_w, eps, n_in, rows, s);
}

template <bool NORM, int MODE>
cudaError_t launch_fused(int type, const mv3 &p, const float *x, const float *norm_w, float eps, int n_in, int rows,
                         cudaStream_t s)
{
    switch (type) {
    case T_F16: return launch_rows<T_F16, NORM, MODE>(p, x, norm_w, eps, n_in, rows, s);
    case T_BF16: return launch_rows<T_BF16, NORM, MODE>(p, x, norm_w, eps, n_in, rows, s);
    case T_Q8_0: return launch_rows<T_Q8_0, NORM, MODE>(p, x, norm_w, eps, n_in, rows, s);
    case T_Q4_0: return launch_rows<T_Q4_0, NORM, MODE>(p, x, norm_w, eps, n_in, rows, s);
    case T_Q4_1: return launch_rows<T_Q4_1, NORM, MODE>(p, x, norm_w, eps, n_in, rows, s);
    default: return cudaErrorInvalidValue;
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

/* One block. Each thread scans its elements in increasing index order (so a strict > keeps the
 * first of equal maxima) from float4 loads, eight in flight, then the block reduces (value, index)
 * pairs, lower index on ties. A one-element-a-step loop left a 128k vocabulary to 125 dependent
 * round trips per thread (4% of a 1B F16 decode step on an H100). */
__device__ __forceinline__ void argmax_take(float v, int i, float &best, int &idx)
{
    if (v > best) {
        best = v;
        idx = i;
    }
}

__global__ void argmax_kernel(const float *__restrict__ x, int n, int32_t *__restrict__ out)
{
    pdl_wait_then_release();
    __shared__ float bv[32];
    __shared__ int bi[32];
    float best = -INFINITY;
    int idx = 0x7fffffff;
    const int T = blockDim.x, t = threadIdx.x, n4 = ((uintptr_t)x & 15) ? 0 : n / 4;
    const float4 *x4 = (const float4 *)x;
    int i = t;
    for (; i + 7 * T < n4; i += 8 * T) {
        float4 v[8];
#pragma unroll
        for (int k = 0; k < 8; k++)
            v[k] = __ldg(x4 + i + k * T);
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int b = 4 * (i + k * T);
            argmax_take(v[k].x, b, best, idx);
            argmax_take(v[k].y, b + 1, best, idx);
            argmax_take(v[k].z, b + 2, best, idx);
            argmax_take(v[k].w, b + 3, best, idx);
        }
    }
    for (; i < n4; i += T) {
        const float4 v = __ldg(x4 + i);
        argmax_take(v.x, 4 * i, best, idx);
        argmax_take(v.y, 4 * i + 1, best, idx);
        argmax_take(v.z, 4 * i + 2, best, idx);
        argmax_take(v.w, 4 * i + 3, best, idx);
    }
    for (int j = 4 * n4 + t; j < n; j += T)
        argmax_take(x[j], j, best, idx);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        float ov = __shfl_xor_sync(0xffffffffu, best, o);
        int oi = __shfl_xor_sync(0xffffffffu, idx, o);
        if (ov > best || (ov == best && oi < idx)) {
            best = ov;
            idx = oi;
        }
    }
    const int lane = t & 31, wid = t / 32;
    if (lane == 0) {
        bv[wid] = best;
        bi[wid] = idx;
    }
    __syncthreads();
    if (t == 0) {
        for (int w = 1; w < (int)(T / 32); w++)
            if (bv[w] > best || (bv[w] == best && bi[w] < idx)) {
                best = bv[w];
                idx = bi[w];
            }
        *out = idx == 0x7fffffff ? 0 : idx;
    }
}

size_t attention_smem(int hd, int n_ctx) { return (size_t)(hd + n_ctx + ATT_THREADS) * sizeof(float); }
// q, k and v of the current position, scores, partial sums
size_t rope_attention_smem(int hd, int n_ctx) { return (size_t)(3 * hd + n_ctx + ATT_THREADS) * sizeof(float); }

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

cudaError_t shoal_cu_embed(const shoal_cu_mat_t *e, const int32_t *token, float *x, cudaStream_t s)
{
    return shoal_cu_embed_batch(e, token, 1, x, s);
}

cudaError_t shoal_cu_embed_batch(const shoal_cu_mat_t *e, const int32_t *tokens, int n_tok, float *x, cudaStream_t s)
{
    return launch(embed_kernel, dim3((unsigned)(e->n_in + 255) / 256, (unsigned)n_tok), dim3(256), 0, s, *e, tokens, x);
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
    size_t bytes = rope_attention_smem(ATT_THREADS, n_ctx);
    if (bytes <= 48 * 1024)
        return cudaSuccess;
    cudaError_t e = cudaFuncSetAttribute(attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         (int)attention_smem(ATT_THREADS, n_ctx));
    if (e)
        return e;
    return cudaFuncSetAttribute(rope_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

cudaError_t shoal_cu_rope_attention(const float *q, const float *k, const float *v, float *kcache, float *vcache,
                                    const float *inv_freq, const int32_t *pos, float *out, int n_head, int n_kv,
                                    int head_dim, int rope_dim, int n_ctx, cudaStream_t s)
{
    return launch(rope_attention_kernel, dim3((unsigned)n_head), dim3(ATT_THREADS), rope_attention_smem(head_dim, n_ctx),
                  s, q, k, v, kcache, vcache, inv_freq, pos, out, n_head, n_kv, head_dim, rope_dim);
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
    return launch(attention_kernel, dim3((unsigned)n_head, (unsigned)n_tok), dim3(ATT_THREADS),
                  attention_smem(head_dim, n_ctx), s, q, kcache, vcache, pos, out, n_head, n_kv, head_dim);
}

cudaError_t shoal_cu_matvec_fused(const shoal_cu_mat_t *const *w, float *const *y, int n_mats, const float *x,
                                  const float *norm_w, float eps, int accumulate, cudaStream_t s)
{
    if (n_mats < 1 || n_mats > 3 || (accumulate && norm_w))
        return cudaErrorInvalidValue;
    mv3 p = {};
    int rows = 0;
    for (int i = 0; i < n_mats; i++) {
        if (w[i]->type != w[0]->type || w[i]->n_in != w[0]->n_in)
            return cudaErrorInvalidValue;
        p.qs[i] = w[i]->qs;
        p.d[i] = (const __half *)w[i]->d;
        p.m[i] = (const __half *)w[i]->m;
        p.y[i] = y[i];
        p.rows[i] = w[i]->n_out;
        rows += w[i]->n_out;
    }
    for (int i = n_mats; i < 3; i++)
        p.rows[i] = 0x7fffffff;
    /* a row group never straddles two matrices: where the group's rows do not divide a matrix's
     * rows (all but the last), each matrix gets its own launch */
    for (int i = 0; i + 1 < n_mats; i++)
        if (w[i]->n_out % mv_group_rows()) {
            cudaError_t e = cudaSuccess;
            for (int j = 0; j < n_mats && !e; j++)
                e = shoal_cu_matvec_fused(&w[j], &y[j], 1, x, norm_w, eps, accumulate, s);
            return e;
        }
    if (norm_w)
        return launch_fused<true, 0>((int)w[0]->type, p, x, norm_w, eps, w[0]->n_in, rows, s);
    if (accumulate)
        return launch_fused<false, 1>((int)w[0]->type, p, x, NULL, eps, w[0]->n_in, rows, s);
    return launch_fused<false, 0>((int)w[0]->type, p, x, NULL, eps, w[0]->n_in, rows, s);
}

cudaError_t shoal_cu_gateup_fused(const shoal_cu_mat_t *gate, const shoal_cu_mat_t *up, const float *x,
                                  const float *norm_w, float eps, float *h, cudaStream_t s)
{
    if (gate->type != up->type || gate->n_in != up->n_in || gate->n_out != up->n_out)
        return cudaErrorInvalidValue;
    mv3 p = {};
    p.qs[0] = gate->qs, p.d[0] = (const __half *)gate->d, p.m[0] = (const __half *)gate->m;
    p.qs[1] = up->qs, p.d[1] = (const __half *)up->d, p.m[1] = (const __half *)up->m;
    p.y[0] = h;
    return launch_fused<true, 2>((int)gate->type, p, x, norm_w, eps, gate->n_in, gate->n_out, s);
}

void shoal_cu_set_pdl(int on) { g_pdl = on != 0; }

cudaError_t shoal_cu_swiglu(float *g, const float *u, int n, cudaStream_t s)
{
    return launch(swiglu_kernel, dim3((unsigned)(n + 255) / 256), dim3(256), 0, s, g, u, n);
}

cudaError_t shoal_cu_argmax(const float *x, int n, int32_t *out, cudaStream_t s)
{
    return launch(argmax_kernel, dim3(1), dim3(1024), 0, s, x, n, out);
}

} // extern "C"
