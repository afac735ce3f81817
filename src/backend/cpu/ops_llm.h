/* ops_llm.h — float32 CPU kernels of a transformer layer other than the quantised matmuls:
 * RMSNorm, rotary embedding, one attention head group, SwiGLU. Vectorised with AVX2+FMA when the
 * CPU has it (chosen once at run time), portable C otherwise. All are allocation-free. */
#ifndef SHOAL_BACKEND_CPU_OPS_LLM_H
#define SHOAL_BACKEND_CPU_OPS_LLM_H

#include <stddef.h>

/* out (n,) = x (n,) / sqrt(mean(x^2) + eps) * w (n,). out may equal x. */
void shoal_op_rmsnorm(float *out, const float *x, const float *w, int n, float eps);

/* Rotates adjacent pairs (x[2i], x[2i+1]), i < rope_dim/2, of each of n_heads heads of head_dim
 * in x (n_heads, head_dim) by the angle whose cos/sin are cs[2i], cs[2i+1]. */
void shoal_op_rope(float *x, int n_heads, int head_dim, int rope_dim, const float *cs);

/* Causal attention of n_rep query heads sharing one KV head:
 *   for r < n_rep: s_p = scale * q_r . k_p (p < n_kv), a = softmax(s), out_r = sum_p a_p v_p.
 * q (n_rep, head_dim) contiguous; k_p at k + p * kv_stride, v_p at v + p * kv_stride (floats);
 * scores is scratch of n_kv floats; out (n_rep, head_dim) contiguous. n_kv >= 1. */
void shoal_op_attention(const float *q, const float *k, const float *v, size_t kv_stride, int n_kv, int n_rep,
                        int head_dim, float scale, float *scores, float *out);

/* The same over positions [0, n) of a longer sequence, unnormalised, so that several position
 * ranges can run in parallel and be merged (split-K / "flash decoding"): out_r = sum_p e^(s_p - m_r)
 * v_p and ml[2r] = m_r = max_p s_p, ml[2r + 1] = l_r = sum_p e^(s_p - m_r). n = 0 gives m = -inf,
 * l = 0, out = 0. Merging ranges: M = max m, out = sum e^(m - M) out_range / sum e^(m - M) l. */
void shoal_op_attention_partial(const float *q, const float *k, const float *v, size_t kv_stride, int n, int n_rep,
                                int head_dim, float scale, float *scores, float *out, float *ml);

/* g (n,) = silu(g) * u, silu(z) = z / (1 + e^-z). */
void shoal_op_swiglu(float *g, const float *u, int n);

/* y (n,) += x (n,) */
void shoal_op_add(float *y, const float *x, int n);

#endif
