#!/usr/bin/env python3
"""llama_ref.py — an independent float64 numpy forward pass of a GGUF Llama model (the reference that
Shoal's kernels and llama.cpp are both checked against).

Everything is computed in float64 from the dequantised weights: token embedding, per layer RMSNorm,
Q/K/V projections, RoPE, grouped-query causal attention, output projection, RMSNorm, SwiGLU FFN,
final RMSNorm and the output head (the token embedding when the file has no output.weight).

RoPE pairing: llama.cpp's converter permutes the rows of attn_q/attn_k so that the "normal" RoPE
of llama.cpp (rotating adjacent pairs (2i, 2i+1) of each head) reproduces Hugging Face's rotate_half
(pairs (i, i + d/2)) on the original weights. So on GGUF weights we rotate ADJACENT pairs.

The dequantisers below are written from the published block layouts and are checked against the
`gguf` package's own dequantize (`--selftest`, and on every tensor load with `--check-dequant`).

Usage:
  llama_ref.py MODEL.gguf --ids 1 2 3 [--greedy 16]    print top-5 of the last position (+ greedy)
  llama_ref.py --selftest                              dequantiser self-test against gguf
"""
import argparse
import sys

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT


# ---------------------------------------------------------------- dequantisation (float64)

def _f16(raw, col):
    """The little-endian float16 at byte column `col` of every block row, as float64."""
    return raw[:, col:col + 2].copy().view('<f2').astype(np.float64)  # shape (nblocks, 1)


def _nibbles(qs):
    """Low nibbles are elements 0..15 of a 32-block, high nibbles elements 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float64)


def _qh_bits(raw, col):
    qh = raw[:, col:col + 4].copy().view('<u4')  # (nblocks, 1)
    return ((qh >> np.arange(32, dtype=np.uint32)) & 1).astype(np.float64)  # (nblocks, 32)


def _deq_q4_0(raw):   # {f16 d; u8 qs[16]}: x = (q - 8) * d
    return (_nibbles(raw[:, 2:18]) - 8.0) * _f16(raw, 0)


def _deq_q4_1(raw):   # {f16 d; f16 m; u8 qs[16]}: x = q * d + m
    return _nibbles(raw[:, 4:20]) * _f16(raw, 0) + _f16(raw, 2)


def _deq_q5_0(raw):   # {f16 d; u32 qh; u8 qs[16]}: x = (q | hbit << 4) - 16) * d
    q = _nibbles(raw[:, 6:22]) + 16.0 * _qh_bits(raw, 2)
    return (q - 16.0) * _f16(raw, 0)


def _deq_q5_1(raw):   # {f16 d; f16 m; u32 qh; u8 qs[16]}: x = (q | hbit << 4) * d + m
    q = _nibbles(raw[:, 8:24]) + 16.0 * _qh_bits(raw, 4)
    return q * _f16(raw, 0) + _f16(raw, 2)


def _deq_q8_0(raw):   # {f16 d; i8 qs[32]}: x = q * d
    return raw[:, 2:34].copy().view(np.int8).astype(np.float64) * _f16(raw, 0)


_BLOCKS = {  # type: (elements per block, bytes per block, function)
    QT.Q4_0: (32, 18, _deq_q4_0),
    QT.Q4_1: (32, 20, _deq_q4_1),
    QT.Q5_0: (32, 22, _deq_q5_0),
    QT.Q5_1: (32, 24, _deq_q5_1),
    QT.Q8_0: (32, 34, _deq_q8_0),
}


def dequantize(data, qtype, shape):
    """Raw tensor bytes/values from GGUFReader -> float64 array of `shape` (numpy order: rows, cols)."""
    if qtype == QT.F32:
        out = np.asarray(data, dtype='<f4').astype(np.float64)
    elif qtype == QT.F16:
        out = np.asarray(data).view('<f2').astype(np.float64)
    elif qtype == QT.BF16:
        u = np.asarray(data).view('<u2').astype(np.uint32) << 16
        out = u.view('<f4').astype(np.float64)
    elif qtype in _BLOCKS:
        n, nbytes, fn = _BLOCKS[qtype]
        raw = np.ascontiguousarray(data).view(np.uint8).reshape(-1, nbytes)
        out = fn(raw)
    else:
        # K-quants and the rest: not needed for SmolLM2; use gguf's implementation, said so loudly.
        print(f"llama_ref: note: using gguf.quants.dequantize for {qtype.name}", file=sys.stderr)
        out = gguf.quants.dequantize(data, qtype).astype(np.float64)
    return out.reshape(shape)


# ---------------------------------------------------------------- model

class Model:
    def __init__(self, path, check_dequant=False, act_quant=False):
        # act_quant=True mimics llama.cpp's CPU matmuls, which round the activations to 8-bit
        # blocks (Q8_0/Q8_1: scale amax/127 stored as f16) before the dot product with quantised
        # weights. Only for validating this reference against llama.cpp; fixtures use False.
        self.act_quant = act_quant
        self.qtype = {}
        self.block_min = {}
        r = gguf.GGUFReader(path)
        arch = r.fields['general.architecture'].contents()
        if arch != 'llama':
            raise ValueError(f"{path}: architecture '{arch}' is not llama")

        def kv(key, default=None):
            f = r.fields.get(f'{arch}.{key}')
            return default if f is None else f.contents()

        self.n_layer = int(kv('block_count'))
        self.n_embd = int(kv('embedding_length'))
        self.n_head = int(kv('attention.head_count'))
        self.n_head_kv = int(kv('attention.head_count_kv', self.n_head))
        self.head_dim = self.n_embd // self.n_head
        self.n_rot = int(kv('rope.dimension_count', self.head_dim))
        self.eps = float(kv('attention.layer_norm_rms_epsilon'))
        self.rope_base = float(kv('rope.freq_base', 10000.0))
        scaling = kv('rope.scaling.type')
        self.rope_linear = float(kv('rope.scaling.factor', 1.0)) if scaling == 'linear' else 1.0

        self.t = {}
        for ti in r.tensors:
            shape = tuple(int(x) for x in reversed(ti.shape.tolist()))  # GGUF ne0 is the row length
            w = dequantize(ti.data, ti.tensor_type, shape)
            if check_dequant and ti.tensor_type not in (QT.F32,):
                ref = gguf.quants.dequantize(ti.data, ti.tensor_type).astype(np.float64).reshape(shape)
                if not np.array_equal(w, ref):
                    raise AssertionError(f"dequantiser disagrees with gguf on {ti.name}: "
                                         f"max diff {np.abs(w - ref).max()}")
            self.t[ti.name] = w
            self.qtype[ti.name] = ti.tensor_type
            if act_quant and ti.tensor_type in (QT.Q4_1, QT.Q5_1):  # per-block minimums, for mm()
                raw = np.ascontiguousarray(ti.data).view(np.uint8).reshape(-1, _BLOCKS[ti.tensor_type][1])
                self.block_min[ti.name] = _f16(raw, 2).reshape(shape[0], -1)
        self.vocab = self.t['token_embd.weight'].shape[0]
        self.out_name = 'output.weight' if 'output.weight' in self.t else 'token_embd.weight'  # tied
        freq_factors = self.t.get('rope_freqs.weight')  # Llama 3 style per-frequency divisors
        i = np.arange(self.n_rot // 2, dtype=np.float64)
        self.inv_freq = self.rope_base ** (-2.0 * i / self.n_rot)
        if freq_factors is not None:
            self.inv_freq = self.inv_freq / freq_factors.reshape(-1)

    def mm(self, x, name):
        """x @ W.T for the weight `name` (rows of W are output features)."""
        if self.act_quant and self.qtype[name] in _BLOCKS:
            xb = x.reshape(x.shape[0], -1, 32).astype(np.float32)
            d = np.abs(xb).max(axis=-1, keepdims=True) / np.float32(127.0)
            q = np.round(xb * np.where(d == 0, 0, np.float32(1.0) / np.where(d == 0, 1, d))).astype(np.float64)
            xq = (q * d.astype(np.float16).astype(np.float64)).reshape(x.shape)
            out = xq @ self.t[name].T
            if name in self.block_min:
                # Q8_1 carries s = f16(d * sum(q)); the weight minimum multiplies that rounded s.
                s16 = (d[..., 0].astype(np.float64) * q.sum(-1)).astype(np.float16).astype(np.float64)
                exact = d[..., 0].astype(np.float16).astype(np.float64) * q.sum(-1)
                out = out + (s16 - exact) @ self.block_min[name].T
            return out
        return x @ self.t[name].T

    def rmsnorm(self, x, w):
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.eps) * w

    def rope(self, x, pos):
        """x: (T, heads, head_dim). Rotates adjacent pairs (2i, 2i+1) of the first n_rot dims."""
        ang = (pos[:, None] / self.rope_linear) * self.inv_freq[None, :]  # (T, n_rot/2)
        c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
        out = x.copy()
        x0, x1 = x[..., 0:self.n_rot:2], x[..., 1:self.n_rot:2]
        out[..., 0:self.n_rot:2] = x0 * c - x1 * s
        out[..., 1:self.n_rot:2] = x0 * s + x1 * c
        return out

    def attention(self, q, k, v):
        """Causal grouped-query attention. q (T, H, D), k/v (T, KV, D) -> (T, H*D)."""
        T, H, D = q.shape
        group = H // k.shape[1]
        mask = np.triu(np.full((T, T), -np.inf), k=1)
        att = np.empty((T, H, D))
        for hh in range(H):
            g = hh // group  # query head hh reads KV head hh // (H / KV)
            sc = q[:, hh, :] @ k[:, g, :].T / np.sqrt(D) + mask
            sc = np.exp(sc - sc.max(axis=1, keepdims=True))
            att[:, hh, :] = (sc / sc.sum(axis=1, keepdims=True)) @ v[:, g, :]
        return att.reshape(T, H * D)

    def forward(self, ids, trace=None):
        """Logits (float64, shape (T, vocab)) at every position of the token ids, from position 0.
        With a dict as `trace`, intermediates are stored in it under llama.cpp's graph names
        (attn_norm-L, Qcur-L, Kcur-L, Vcur-L, attn_out-L, ffn_inp-L, ffn_swiglu-L, l_out-L,
        result_norm), each (T, features), to compare with llama-dump's LLAMA_DUMP_TRACE output."""
        tr = trace if trace is not None else {}
        ids = np.asarray(ids, dtype=np.int64)
        if ids.ndim != 1 or ids.size == 0 or ids.min() < 0 or ids.max() >= self.vocab:
            raise ValueError("token ids must be a non-empty 1-D list within the vocabulary")
        T, H, KV, D = len(ids), self.n_head, self.n_head_kv, self.head_dim
        pos = np.arange(T, dtype=np.float64)
        x = self.t['token_embd.weight'][ids]
        for L in range(self.n_layer):
            p = f'blk.{L}.'
            h = self.rmsnorm(x, self.t[p + 'attn_norm.weight'])
            q = self.rope(self.mm(h, p + 'attn_q.weight').reshape(T, H, D), pos)
            k = self.rope(self.mm(h, p + 'attn_k.weight').reshape(T, KV, D), pos)
            v = self.mm(h, p + 'attn_v.weight').reshape(T, KV, D)
            if trace is not None:
                tr[f'attn_norm-{L}'], tr[f'Qcur-{L}'] = h, q.reshape(T, -1)
                tr[f'Kcur-{L}'], tr[f'Vcur-{L}'] = k.reshape(T, -1), v.reshape(T, -1)
            ao = self.mm(self.attention(q, k, v), p + 'attn_output.weight')
            x = x + ao
            tr[f'attn_out-{L}'], tr[f'ffn_inp-{L}'] = ao, x
            h = self.rmsnorm(x, self.t[p + 'ffn_norm.weight'])
            gate = self.mm(h, p + 'ffn_gate.weight')
            up = self.mm(h, p + 'ffn_up.weight')
            sw = gate / (1.0 + np.exp(-gate)) * up
            x = x + self.mm(sw, p + 'ffn_down.weight')
            tr[f'ffn_swiglu-{L}'], tr[f'l_out-{L}'] = sw, x
        x = self.rmsnorm(x, self.t['output_norm.weight'])
        tr['result_norm'] = x
        return self.mm(x, self.out_name)

    def greedy(self, ids, n, gaps=None):
        """n greedily chosen token ids after `ids` (full recompute each step: simple and exact).
        If `gaps` is a list, the logit margin of each choice over the runner-up is appended to it."""
        seq, out = list(ids), []
        for _ in range(n):
            last = self.forward(seq)[-1]
            top2 = np.argsort(-last)[:2]
            nxt = int(top2[0])
            if gaps is not None:
                gaps.append(float(last[top2[0]] - last[top2[1]]))
            out.append(nxt)
            seq.append(nxt)
        return out


# ---------------------------------------------------------------- self-test and CLI

def selftest():
    rng = np.random.default_rng(7)
    x = (rng.standard_normal((64, 256)) * 3).astype(np.float32)
    for qt in list(_BLOCKS) + [QT.F16, QT.BF16]:
        try:
            qd = gguf.quants.quantize(x, qt)
        except Exception as e:  # noqa: BLE001 - report and go on with the other types
            print(f"selftest: {qt.name}: gguf cannot quantize ({e}); skipped")
            continue
        mine = dequantize(qd, qt, x.shape)
        ref = gguf.quants.dequantize(qd, qt).astype(np.float64).reshape(x.shape)
        ok = np.array_equal(mine, ref)
        print(f"selftest: {qt.name}: {'ok' if ok else 'MISMATCH'} (max |x - deq| = {np.abs(mine - x).max():.4g})")
        if not ok:
            return 1
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('model', nargs='?')
    ap.add_argument('--ids', type=int, nargs='+')
    ap.add_argument('--greedy', type=int, default=0)
    ap.add_argument('--check-dequant', action='store_true')
    ap.add_argument('--selftest', action='store_true')
    a = ap.parse_args()
    if a.selftest:
        return selftest()
    if not a.model or not a.ids:
        ap.error('need MODEL and --ids')
    m = Model(a.model, check_dequant=a.check_dequant)
    logits = m.forward(a.ids)
    top = np.argsort(-logits[-1])[:5]
    print('top5:', ' '.join(f'{int(t)}:{logits[-1][t]:.4f}' for t in top))
    if a.greedy:
        print('greedy:', ' '.join(map(str, m.greedy(a.ids, a.greedy))))
    return 0


if __name__ == '__main__':
    sys.exit(main())
