/* att_prefill.cu — prefill attention in tiles: a block takes one query head and 64 query tokens
 * of a batch and walks the cache rows they attend to 64 positions at a time, keeping a running
 * maximum, sum and output per query (the online softmax), so each row of K and V is read from
 * L2 once per 64 queries instead of once per query as attention_kernel does. Float32 throughout,
 * like the rest of prefill; the sums run in another order than attention_kernel's, so the two
 * agree to rounding (test_cuda_llama compares batched prefill with token-by-token decode).
 *
 * Thread (ty, tx) of 16 x 16 owns queries 4ty..4ty+3: their scores against positions
 * 4tx..4tx+3 of the tile, and their output dimensions tx * HD / 16 onwards. Q and K sit in shared
 * memory dimension-major, so both operands of the score loop are float4 reads without bank
 * conflicts; the scores go through shared memory (position-major, padded) to the V product. */
#include "backend/cuda/kernel_util.cuh"
#include "backend/cuda/llm_kernels.h"

namespace {

constexpr int QT = 64, KT = 64, PT = QT + 4, AT_THREADS = 256;

template <int HD> constexpr size_t tiled_smem() { return (size_t)(HD * QT + HD * KT + KT * HD + KT * PT) * sizeof(float); }

/* Rows [0, N) of src (row r at src + r * stride, HD floats; rows from n_valid on read as zeros) into
 * dst dimension-major: dst[d * N + r]. Lanes take consecutive rows, so the stores do not conflict. */
template <int HD, int N>
__device__ __forceinline__ void load_dim_major(float *dst, const float *src, size_t stride, int n_valid)
{
    for (int i = threadIdx.x; i < N * (HD / 4); i += AT_THREADS) {
        const int r = i % N, d4 = i / N;
        float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
        if (r < n_valid)
            v = *(const float4 *)(src + (size_t)r * stride + 4 * d4);
        dst[(4 * d4 + 0) * N + r] = v.x, dst[(4 * d4 + 1) * N + r] = v.y;
        dst[(4 * d4 + 2) * N + r] = v.z, dst[(4 * d4 + 3) * N + r] = v.w;
    }
}

template <int HD>
__global__ void __launch_bounds__(AT_THREADS) attention_tiled_kernel(const float *__restrict__ q, const float *__restrict__ kc,
                                                                    const float *__restrict__ vc,
                                                                    const int32_t *__restrict__ posp, int n_tok,
                                                                    float *__restrict__ out, int n_head, int n_kv)
{
    pdl_wait_then_release();
    constexpr int DPT = HD / 16; // output dimensions per thread
    extern __shared__ float sm[];
    float *qt = sm, *kt = qt + HD * QT, *vs = kt + HD * KT, *ps = vs + KT * HD; // qt[d][q], kt[d][p], vs[p][d], ps[p][q]
    __shared__ int qpos[QT], maxpos;
    const int h = blockIdx.x, t0 = blockIdx.y * QT, t = threadIdx.x, tx = t & 15, ty = t >> 4;
    const int kvh = h / (n_head / n_kv), kv_dim = n_kv * HD, q_stride = n_head * HD;
    const float scale = rsqrtf((float)HD);
    if (t < QT)
        qpos[t] = t0 + t < n_tok ? posp[t0 + t] : -1; // -1: past the batch, attends to nothing
    load_dim_major<HD, QT>(qt, q + (size_t)t0 * q_stride + (size_t)h * HD, (size_t)q_stride, n_tok - t0);
    __syncthreads();
    if (t == 0) {
        int m = -1;
        for (int i = 0; i < QT; i++)
            m = qpos[i] > m ? qpos[i] : m;
        maxpos = m;
    }
    int mypos[4];
#pragma unroll
    for (int i = 0; i < 4; i++)
        mypos[i] = qpos[4 * ty + i];
    float o[4][DPT], m[4], l[4];
#pragma unroll
    for (int i = 0; i < 4; i++) {
        m[i] = -INFINITY, l[i] = 0.0f;
#pragma unroll
        for (int j = 0; j < DPT; j++)
            o[i][j] = 0.0f;
    }
    __syncthreads();
    const int rows = maxpos + 1; // cache rows any query of the tile attends to
    for (int p0 = 0; p0 < rows; p0 += KT) {
        // K dimension-major and V as stored; rows past the last one attended are zeros (masked
        // below), never read
        load_dim_major<HD, KT>(kt, kc + (size_t)p0 * kv_dim + (size_t)kvh * HD, (size_t)kv_dim, rows - p0);
        for (int i = t; i < KT * (HD / 4); i += AT_THREADS) {
            const int pi = i / (HD / 4), d4 = i % (HD / 4);
            float4 v = make_float4(0.f, 0.f, 0.f, 0.f);
            if (p0 + pi < rows)
                v = *(const float4 *)(vc + (size_t)(p0 + pi) * kv_dim + (size_t)kvh * HD + 4 * d4);
            *(float4 *)(vs + pi * HD + 4 * d4) = v;
        }
        __syncthreads();
        float s[4][4] = {};
#pragma unroll 8
        for (int d = 0; d < HD; d++) {
            const float4 a = *(const float4 *)(qt + d * QT + 4 * ty), b = *(const float4 *)(kt + d * KT + 4 * tx);
            const float av[4] = {a.x, a.y, a.z, a.w}, bv[4] = {b.x, b.y, b.z, b.w};
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++)
                    s[i][j] += av[i] * bv[j];
        }
        // online softmax per query: the tile's maximum over the 16 threads of its row (lanes
        // differing in tx only), the old sums and outputs rescaled to it
#pragma unroll
        for (int i = 0; i < 4; i++) {
            float mx = -INFINITY;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                const int p = p0 + 4 * tx + j;
                s[i][j] = p <= mypos[i] ? s[i][j] * scale : -INFINITY;
                mx = fmaxf(mx, s[i][j]);
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1)
                mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, off));
            const float mn = fmaxf(m[i], mx);
            // a query with nothing yet (or nothing at all: past the batch) keeps zeros
            const float keep = mn == -INFINITY ? 1.0f : expf(m[i] - mn);
            float sum = 0.0f;
#pragma unroll
            for (int j = 0; j < 4; j++) {
                s[i][j] = mn == -INFINITY ? 0.0f : expf(s[i][j] - mn);
                sum += s[i][j];
            }
#pragma unroll
            for (int off = 8; off > 0; off >>= 1)
                sum += __shfl_xor_sync(0xffffffffu, sum, off);
            l[i] = l[i] * keep + sum;
            m[i] = mn;
#pragma unroll
            for (int j = 0; j < DPT; j++)
                o[i][j] *= keep;
        }
#pragma unroll
        for (int j = 0; j < 4; j++)
            *(float4 *)(ps + (4 * tx + j) * PT + 4 * ty) = make_float4(s[0][j], s[1][j], s[2][j], s[3][j]);
        __syncthreads();
        const int pend = rows - p0 < KT ? rows - p0 : KT;
        for (int p = 0; p < pend; p++) {
            const float4 w = *(const float4 *)(ps + p * PT + 4 * ty);
            const float wv[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
            for (int j4 = 0; j4 < DPT; j4 += 4) {
                const float4 v = *(const float4 *)(vs + p * HD + tx * DPT + j4);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                    o[i][j4 + 0] += wv[i] * v.x;
                    o[i][j4 + 1] += wv[i] * v.y;
                    o[i][j4 + 2] += wv[i] * v.z;
                    o[i][j4 + 3] += wv[i] * v.w;
                }
            }
        }
        __syncthreads(); // kt, vs and ps are rewritten by the next tile
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int tok = t0 + 4 * ty + i;
        if (tok >= n_tok || l[i] == 0.0f)
            continue;
        float *dst = out + (size_t)tok * q_stride + (size_t)h * HD + tx * DPT;
#pragma unroll
        for (int j4 = 0; j4 < DPT; j4 += 4)
            *(float4 *)(dst + j4) = make_float4(o[i][j4] / l[i], o[i][j4 + 1] / l[i], o[i][j4 + 2] / l[i], o[i][j4 + 3] / l[i]);
    }
}

template <int HD> cudaError_t raise_smem()
{
    return cudaFuncSetAttribute(attention_tiled_kernel<HD>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                (int)tiled_smem<HD>());
}

template <int HD>
cudaError_t launch_tiled(const float *q, const float *kc, const float *vc, const int32_t *pos, int n_tok, float *out,
                         int n_head, int n_kv, cudaStream_t s)
{
    return launch(attention_tiled_kernel<HD>, dim3((unsigned)n_head, (unsigned)((n_tok + QT - 1) / QT)),
                  dim3(AT_THREADS), tiled_smem<HD>(), s, q, kc, vc, pos, n_tok, out, n_head, n_kv);
}

} // namespace

extern "C" cudaError_t shoal_cu_attention_tiled_prepare(void)
{
    cudaError_t e = raise_smem<64>();
    return e ? e : raise_smem<128>();
}

extern "C" cudaError_t shoal_cu_attention_tiled(const float *q, const float *kcache, const float *vcache,
                                                const int32_t *pos, int n_tok, float *out, int n_head, int n_kv,
                                                int head_dim, cudaStream_t s)
{
    switch (head_dim) {
    case 64: return launch_tiled<64>(q, kcache, vcache, pos, n_tok, out, n_head, n_kv, s);
    case 128: return launch_tiled<128>(q, kcache, vcache, pos, n_tok, out, n_head, n_kv, s);
    default: return cudaErrorNotSupported;
    }
}
