/* mv_fused.cu — the fused decode matrix-vector kernels (the default decode path): RMS norm +
 * Q/K/V, the output and down projections with the residual, norm + gate/up + SwiGLU, and the
 * output head, for F16, BF16, Q8_0, Q4_0 and Q4_1 weights repacked as llm_kernels.h describes.
 * Measured in bench/RESULTS-cuda-llm.md. */
#include "backend/cuda/llm_kernels.h"
#include "backend/cuda/kernel_util.cuh"

#include <math.h>
#include <stdlib.h>

namespace {

/* ---- fused decode kernels: fewer launches per layer, more weight bytes in flight ----
 *
 * A block owns R output rows (of up to three matrices of one type and width, run on in order; for
 * gate/up, R rows of each) and its threads split every row's 16-byte weight units between them
 * (thread t takes units t, t + T, ...). Each activation unit is loaded once and used for all the
 * block's rows, so x's reads from L1 cost a fraction of the weight bytes instead of 2-4 times them
 * (matvec_kernel re-reads x per row), and each thread keeps R x UN 16-byte weight loads in
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
        unit16_to_float<TYPE == T_BF16>(q, f);
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
    int r0 = grp * R;
    if (MODE != 2) {
        // which matrix: resolved with constant indices (no local copy of p)
        g.qs[0] = p.qs[0], g.dd[0] = p.d[0], g.mm[0] = p.m[0], g.y = p.y[0];
        int left = p.rows[0];
        if (r0 >= p.rows[0]) {
            r0 -= p.rows[0];
            g.qs[0] = p.qs[1], g.dd[0] = p.d[1], g.mm[0] = p.m[1], g.y = p.y[1], left = p.rows[1];
            if (r0 >= p.rows[1]) {
                r0 -= p.rows[1];
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

/* Warps per block for rows n_in wide: enough that each thread owns one unit of a row of 16-bit
 * weights, UN of quantised ones (their units carry 16 or 32 elements: fewer threads keep as many
 * bytes in flight), up to MV_MAXW. */
template <int TYPE, int UN> static int row_warps(int n_in)
{
    const int U = n_in / unit_elems<TYPE>::n, per = 32 * (TYPE == T_F16 || TYPE == T_BF16 ? 1 : UN);
    return U >= per * MV_MAXW ? MV_MAXW : U >= per * 4 ? 4 : U >= per * 2 ? 2 : 1;
}

template <int TYPE, bool NORM, int MODE, int R, int UN>
cudaError_t launch_rows_r(const mv3 &p, const float *x, const float *norm_w, float eps, int n_in, int rows, cudaStream_t s)
{
    int warps = row_warps<TYPE, UN>(n_in);
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
    // 16-bit weights: one unit per thread and row in flight (their rows are spread over more
    // threads), which leaves registers for more resident blocks
    constexpr int UN = TYPE == T_F16 || TYPE == T_BF16 ? 1 : UNROLL;
    if (mv_group_rows() == 8)
        return launch_rows_r<TYPE, NORM, MODE, MODE == 2 ? 4 : 8, 1>(p, x, norm_w, eps, n_in, rows, s);
    /* Rows short enough for one warp a block (SmolLM2's 576 and 1536 in Q4): half the rows per
     * group and one unit in flight, so twice the blocks (36-48 registers) share the few rows
     * there are; measured +9% on the SmolLM2 shape, while the 1B shapes lose with it. */
    if (row_warps<TYPE, UN>(n_in) == 1 && mv_warps_override() == 0)
        return launch_rows_r<TYPE, NORM, MODE, MODE == 2 ? 1 : 2, 1>(p, x, norm_w, eps, n_in, rows, s);
    return launch_rows_r<TYPE, NORM, MODE, MODE == 2 ? 2 : 4, UN>(p, x, norm_w, eps, n_in, rows, s);
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

} // namespace

extern "C" {

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

} // extern "C"
