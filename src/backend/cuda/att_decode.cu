/* att_decode.cu — the fused decode path's attention: one launch that rotates q and the new k,
 * stores the new k and v rows into the cache and attends over every cached position, a long
 * context spread over several blocks a head whose partial softmaxes merge on the device. Two
 * kernels: rope_attention_tiled_kernel for head dimensions 64 and 128 (the default there), and
 * rope_attention_kernel for any head dimension up to ATT_THREADS. Measured in
 * bench/RESULTS-cuda-llm.md (runs 15, 19, 26, 27). */
#include "backend/cuda/llm_kernels.h"
#include "backend/cuda/kernel_util.cuh"

#include <math.h>
#include <stdlib.h>
#include <string.h>

namespace {

/* ATT_CHUNK, ATT_MAX_SPLITS: positions per block of the decode attention, and blocks per head at
 * most (chosen on an H100 among 64 / 128 / 256 and 16 / 32 / 64: bench/RESULTS-cuda-llm.md, run 19;
 * SHOAL_CUDA_ATT_CHUNK and SHOAL_CUDA_ATT_SPLITS override them for experiments). */
constexpr int ATT_CHUNK = 128, ATT_MAX_SPLITS = 16;

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

/* The rotation of pair t of this position (identity past rope_dim or hd / 2): the angle in double,
 * as rope_store_kernel and the CPU take it, so the rotated floats are the same. */
__device__ __forceinline__ void rope_angle(int pos, const float *__restrict__ inv_freq, int t, int hd, int rope_dim,
                                           float &c, float &s)
{
    c = 1.0f, s = 0.0f;
    if (2 * t < rope_dim && t < hd / 2) {
        double sn, cs;
        sincos((double)pos * (double)inv_freq[t], &sn, &cs);
        c = (float)cs, s = (float)sn;
    }
}

/* Thread t < hd / 2: pair t of query head h (of a group sharing kv head kvh) and of kvh's new k,
 * rotated by (c, s) from rope_angle, and of the new v, into shared qs, kcur and vcur. Block (h, 0)
 * of the group's first head also stores the k and v pairs into row pos of the caches: no block of
 * the launch reads that row from the cache. */
__device__ __forceinline__ void stage_current(const float *__restrict__ q, const float *__restrict__ k,
                                              const float *__restrict__ v, int h, int group, int kvh, int hd,
                                              int rope_dim, float c, float s, float *qs, float *kcur, float *vcur,
                                              float *__restrict__ kc, float *__restrict__ vc, int pos, int kv_dim)
{
    const int t = threadIdx.x;
    if (t >= hd / 2)
        return;
    const float *qh = q + (size_t)h * hd, *kh = k + (size_t)kvh * hd, *vh = v + (size_t)kvh * hd;
    const float a = qh[2 * t], b = qh[2 * t + 1], ka = kh[2 * t], kb = kh[2 * t + 1];
    if (2 * t < rope_dim) {
        qs[2 * t] = a * c - b * s, qs[2 * t + 1] = a * s + b * c;
        kcur[2 * t] = ka * c - kb * s, kcur[2 * t + 1] = ka * s + kb * c;
    } else {
        qs[2 * t] = a, qs[2 * t + 1] = b, kcur[2 * t] = ka, kcur[2 * t + 1] = kb;
    }
    vcur[2 * t] = vh[2 * t], vcur[2 * t + 1] = vh[2 * t + 1];
    if (h % group == 0 && blockIdx.y == 0) {
        float *krow = kc + (size_t)pos * kv_dim + (size_t)kvh * hd, *vrow = vc + (size_t)pos * kv_dim + (size_t)kvh * hd;
        krow[2 * t] = kcur[2 * t], krow[2 * t + 1] = kcur[2 * t + 1];
        vrow[2 * t] = vcur[2 * t], vrow[2 * t + 1] = vcur[2 * t + 1];
    }
}

/* Block (h, sp)'s chunk [p0, p1) of positions [0, n) and its head's number of chunks: chunk_min
 * positions each, or n / gridDim.y rounded up to a multiple of tile once gridDim.y chunks of
 * chunk_min would not hold them. */
__device__ __forceinline__ void chunk_of(int n, int chunk_min, int tile, int &n_split, int &p0, int &p1)
{
    const int splits = (int)gridDim.y, spread = (n + splits - 1) / splits;
    const int chunk = n > chunk_min * splits ? (spread + tile - 1) / tile * tile : chunk_min;
    n_split = (n + chunk - 1) / chunk, p0 = (int)blockIdx.y * chunk, p1 = p0 + chunk < n ? p0 + chunk : n;
}

/* Before the wait: the cached K and V rows [p0, hi) of a kv head (kbase, vbase: its part of row 0)
 * pulled into L2, split between the group query heads that read them (share: this block's), so
 * the loads after the wait come from L2, not HBM (bench/RESULTS-cuda-llm.md, run 15). */
__device__ __forceinline__ void prefetch_rows(const float *kbase, const float *vbase, int kv_dim, int hd, int p0, int hi,
                                              int share, int group)
{
    const int lines = (hd * (int)sizeof(float) + 127) / 128, per_row = 2 * lines, T = blockDim.x;
    for (int i = share * T + (int)threadIdx.x; i < (hi - p0) * per_row; i += group * T) {
        const int p = p0 + i / per_row, r = i % per_row;
        const float *row = (r < lines ? kbase : vbase) + (size_t)p * kv_dim;
        asm volatile("prefetch.global.L2 [%0];" ::"l"((const char *)row + (r % lines) * 128));
    }
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
    int n_split, p0, p1;
    chunk_of(n, chunk_min, 1, n_split, p0, p1);
    if (sp >= n_split)
        return; // nothing of this context falls in this chunk yet (exiting lets dependents launch)
    /* Before waiting for Q/K/V, what does not depend on them: the position was written before the
     * predecessor started and the cache rows of earlier positions by earlier steps. So: this
     * position's rotation (hd / 2 <= T: one pair a thread), and this chunk's cached rows of the kv
     * head pulled into L2 while Q/K/V still streams. */
    float rot_c, rot_s;
    rope_angle(pos, inv_freq, t, hd, rope_dim, rot_c, rot_s);
    const int hi = p1 < pos ? p1 : pos; // the cached positions of this chunk end here
    prefetch_rows(kc + (size_t)kvh * hd, vc + (size_t)kvh * hd, kv_dim, hd, p0, hi, h % group, group);
    pdl_wait_then_release();
    float *qs = smem, *kcur = qs + hd, *vcur = kcur + hd, *sc = vcur + hd, *part = sc + (p1 - p0);
    stage_current(q, k, v, h, group, kvh, hd, rope_dim, rot_c, rot_s, qs, kcur, vcur, kc, vc, pos, kv_dim);
    __syncthreads();
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
    int n_split, p0, p1;
    chunk_of(n, chunk_min, TP, n_split, p0, p1);
    if (sp >= n_split)
        return;
    float rot_c, rot_s;
    rope_angle(pos, inv_freq, t, HD, rope_dim, rot_c, rot_s);
    const int hi = p1 < pos ? p1 : pos; // cached positions of this chunk: [p0, hi)
    const float *kbase = kc + (size_t)kvh * HD, *vbase = vc + (size_t)kvh * HD;
    prefetch_rows(kbase, vbase, kv_dim, HD, p0, hi, h % group, group);
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
    stage_current(q, k, v, h, group, kvh, HD, rope_dim, rot_c, rot_s, qs, kcur, vcur, kc, vc, pos, kv_dim);
    __syncthreads();
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
    return launch(rope_attention_kernel, grid, dim3(ATT_THREADS), rope_attention_smem(head_dim, n_ctx), s, q, k, v, kcache, vcache, inv_freq, pos, out, n_head, n_kv,
                  head_dim, rope_dim, part, ticket, att_chunk());
}

cudaError_t shoal_cu_rope_attention_prepare(int n_ctx)
{
    // llm_cuda.c accepts head dimensions up to ATT_THREADS
    const size_t bytes = rope_attention_smem(ATT_THREADS, n_ctx);
    if (bytes <= 48 * 1024)
        return cudaSuccess;
    return cudaFuncSetAttribute(rope_attention_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

} // extern "C"
