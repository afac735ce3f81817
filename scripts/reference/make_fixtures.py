#!/usr/bin/env python3
"""make_fixtures.py — regenerates Shoal's LLM reference fixtures in tests/fixtures/ from llama.cpp
(built by build_llamacpp.sh) and the float64 numpy reference (llama_ref.py).

  make_fixtures.py tokens   tokens_smollm2.json from tokenizer_corpus.json (llama.cpp's tokenizer)
  make_fixtures.py logits   logits_smollm2.bin + logits_smollm2.json (numpy reference), and the
                            llama.cpp cross-check of that reference (numbers in the .json)
  make_fixtures.py all      both
  make_fixtures.py check    re-read the committed fixtures and check they are consistent

Environment: LLAMA_BIN (default .deps/llama.cpp/build-cpu/bin), SHOAL_MODEL (default
.deps/models/SmolLM2-135M-Instruct.Q4_1.gguf), THREADS (default 2).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import llama_ref  # noqa: E402

FIX = os.path.join(ROOT, 'tests', 'fixtures')
BIN = os.environ.get('LLAMA_BIN', os.path.join(ROOT, '.deps', 'llama.cpp', 'build-cpu', 'bin'))
MODEL = os.environ.get('SHOAL_MODEL', os.path.join(ROOT, '.deps', 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf'))
THREADS = int(os.environ.get('THREADS', '2'))
LLAMA_COMMIT = '0c1e57098bba43ac29e6e3b677cdceebdd22334f'
GENERATOR = (f'llama.cpp {LLAMA_COMMIT[:7]} (vendored in llama-cpp-python 0.3.36 sdist), '
             'llama_tokenize() via scripts/reference/llama_dump.c; ids cross-checked with llama-tokenize')
N_GREEDY = 16

# Prompts of the logits fixture. Every position's logits are stored (49152 floats = 192 KiB a row),
# so the total token count is kept under 40 to stay below 8 MB.
PROMPTS = [
    ('chatml_capital_france',
     '<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n'),
    ('plain_fox', 'The quick brown fox jumps over the lazy dog.'),
    ('code_python', 'def fibonacci(n):\n    '),
    ('counting', 'One, two, three,'),
]


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, **kw)
    if p.returncode != 0:
        sys.exit(f"make_fixtures: {' '.join(args[:2])} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
    return p.stdout


def tool(name):
    path = os.path.join(BIN, name)
    if not os.access(path, os.X_OK):
        sys.exit(f'make_fixtures: {path} missing: run scripts/reference/build_llamacpp.sh first')
    return path


def llama_tokenize(cases):
    """[(text, parse_special, add_special)] -> [(ids, detok_bytes)] via llama-dump."""
    with tempfile.NamedTemporaryFile(suffix='.bin', delete=False) as f:
        for text, ps, add in cases:
            b = text.encode('utf-8')
            f.write(struct.pack('<BBI', int(ps), int(add), len(b)) + b)
        path = f.name
    try:
        out = run([tool('llama-dump'), 'tokenize', MODEL, path]).decode('ascii')
    finally:
        os.unlink(path)
    lines = out.split('\n')[:-1]
    if len(lines) != len(cases):
        sys.exit(f'make_fixtures: llama-dump gave {len(lines)} lines for {len(cases)} cases')
    res = []
    for ln in lines:
        ids, hexs = ln.split('\t')
        res.append(([int(x) for x in ids.split()], bytes.fromhex(hexs)))
    return res


def llama_tokenize_tool(text, parse_special, add_special):
    """The same through llama.cpp's own llama-tokenize tool (an independent path through common/)."""
    with tempfile.NamedTemporaryFile(suffix='.txt', delete=False) as f:
        f.write(text.encode('utf-8'))
        path = f.name
    try:
        # llama-tokenize parses special tokens by default; it only has a flag to turn that off.
        args = [tool('llama-tokenize'), '-m', MODEL, '-f', path, '--ids', '--no-escape', '--log-disable']
        if not parse_special:
            args.append('--no-parse-special')
        if not add_special:
            args.append('--no-bos')
        out = run(args).decode().strip().splitlines()[-1]
    finally:
        os.unlink(path)
    return json.loads(out)


def make_tokens():
    corpus = json.load(open(os.path.join(FIX, 'tokenizer_corpus.json'), encoding='utf-8'))['cases']
    cases = []
    for c in corpus:
        cases.append((c['name'], c['text'], False, False))
        if '<|' in c['text']:
            cases.append((c['name'], c['text'], True, False))
    # add_special=true on this model adds nothing (tokenizer.ggml.add_bos_token is false): pin that.
    chat = next(c for c in corpus if c['name'] == 'chatml_prompt')
    cases.append((chat['name'], chat['text'], True, True))

    got = llama_tokenize([(t, ps, ab) for _, t, ps, ab in cases])
    out, mism = [], 0
    for (name, text, ps, ab), (ids, detok) in zip(cases, got):
        tool_ids = llama_tokenize_tool(text, ps, ab)
        if tool_ids != ids:
            mism += 1
            print(f'make_fixtures: MISMATCH llama-tokenize vs llama_tokenize on {name} ps={ps}', file=sys.stderr)
        rec = {'name': name, 'text': text, 'parse_special': ps, 'add_bos': ab, 'ids': ids}
        try:
            rec['detok'] = detok.decode('utf-8')
        except UnicodeDecodeError:
            rec['detok_hex'] = detok.hex()
        rec['roundtrip'] = detok == text.encode('utf-8')
        out.append(rec)
    if mism:
        sys.exit(f'make_fixtures: {mism} cases differ between the two llama.cpp tokenizer paths')
    doc = {'model': os.path.basename(MODEL), 'generator': GENERATOR,
           'notes': 'add_bos is the add_special argument of llama_tokenize (the model sets '
                    'add_bos_token=false, so no BOS appears). detok = llama_detokenize(ids, '
                    'remove_special=false, unparse_special=true); roundtrip = detok equals text.',
           'cases': out}
    with open(os.path.join(FIX, 'tokens_smollm2.json'), 'w', encoding='utf-8') as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write('\n')
    n_rt = sum(r['roundtrip'] for r in out)
    print(f'tokens: {len(out)} cases, {sum(len(r["ids"]) for r in out)} ids, '
          f'{n_rt}/{len(out)} exact round trips; llama-tokenize agrees on all')


def byte_decoder():
    """GPT-2 byte-level BPE: the printable code point standing for each byte, inverted."""
    keep = list(range(ord('!'), ord('~') + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    cps, extra = {}, 0
    for b in range(256):
        if b in keep:
            cps[chr(b)] = b
        else:
            cps[chr(256 + extra)] = b
            extra += 1
    return cps


def detok(vocab, ids):
    dec = byte_decoder()
    out = b''
    for i in ids:
        piece = vocab[i]
        if piece.startswith('<|') and piece.endswith('|>'):
            out += piece.encode()
        else:
            out += bytes(dec[ch] for ch in piece)
    return out.decode('utf-8', errors='replace')


def op_check(ids):
    """Op-by-op check of the reference against llama.cpp: each op of llama_ref (with act_quant=True,
    i.e. llama.cpp's 8-bit rounding of matmul inputs) is fed llama.cpp's own input tensors
    (LLAMA_DUMP_TRACE) and its output compared with llama.cpp's. Returns {op: [median, max]
    relative L2 error over the layers}. Isolated rounding flips of the 8-bit activations give
    errors up to ~1e-2 on small-valued outputs; a wrong RoPE pairing or GQA mapping gives ~1."""
    m = llama_ref.Model(MODEL, act_quant=True)
    T = len(ids)
    with tempfile.TemporaryDirectory() as td:
        idp = os.path.join(td, 'ids.txt')
        open(idp, 'w').write(' '.join(map(str, ids)))
        env = dict(os.environ, LLAMA_DUMP_TRACE=td)
        run([tool('llama-dump'), 'logits', MODEL, idp, os.path.join(td, 'logits.f32'), '0', str(THREADS)], env=env)
        got = {}
        for line in open(os.path.join(td, 'index.txt')):
            name = line.split()[0]
            if name not in got:
                got[name] = np.fromfile(os.path.join(td, name + '.f32'), '<f4').astype(np.float64).reshape(T, -1)
        logits = np.fromfile(os.path.join(td, 'logits.f32'), '<f4').astype(np.float64).reshape(T, -1)

    def rel(a, b):
        return float(np.linalg.norm(a - b) / np.linalg.norm(b))
    H, KV, D = m.n_head, m.n_head_kv, m.head_dim
    pos = np.arange(T, dtype=np.float64)
    errs = {k: [] for k in ('attn_norm', 'Qcur(rope)', 'Kcur(rope)', 'Vcur', 'kqv_out(attention)', 'attn_out',
                            'ffn_norm', 'ffn_swiglu', 'ffn_out(residual)')}
    prev = got['embd']
    for L in range(m.n_layer):
        p, g = f'blk.{L}.', (lambda n: got[f'{n}-{L}'])
        errs['attn_norm'].append(rel(m.rmsnorm(prev, m.t[p + 'attn_norm.weight']), g('attn_norm')))
        an = g('attn_norm')
        errs['Qcur(rope)'].append(rel(m.rope(m.mm(an, p + 'attn_q.weight').reshape(T, H, D), pos).reshape(T, -1), g('Qcur')))
        errs['Kcur(rope)'].append(rel(m.rope(m.mm(an, p + 'attn_k.weight').reshape(T, KV, D), pos).reshape(T, -1), g('Kcur')))
        errs['Vcur'].append(rel(m.mm(an, p + 'attn_v.weight'), g('Vcur')))
        att = m.attention(g('Qcur').reshape(T, H, D), g('Kcur').reshape(T, KV, D), g('Vcur').reshape(T, KV, D))
        errs['kqv_out(attention)'].append(rel(att, g('kqv_out')))
        errs['attn_out'].append(rel(m.mm(g('kqv_out'), p + 'attn_output.weight'), g('attn_out')))
        errs['ffn_norm'].append(rel(m.rmsnorm(g('ffn_inp'), m.t[p + 'ffn_norm.weight']), g('ffn_norm')))
        gate, up = m.mm(g('ffn_norm'), p + 'ffn_gate.weight'), m.mm(g('ffn_norm'), p + 'ffn_up.weight')
        errs['ffn_swiglu'].append(rel(gate / (1 + np.exp(-gate)) * up, g('ffn_swiglu')))
        errs['ffn_out(residual)'].append(rel(g('ffn_inp') + m.mm(g('ffn_swiglu'), p + 'ffn_down.weight'), g('l_out')))
        prev = g('l_out')
    out = {k: [float(f'{np.median(v):.3g}'), float(f'{max(v):.3g}')] for k, v in errs.items()}
    out['result_norm'] = float(f"{rel(m.rmsnorm(prev, m.t['output_norm.weight']), got['result_norm']):.3g}")
    out['logits(head)'] = float(f"{rel(m.mm(got['result_norm'], m.out_name), logits):.3g}")
    ref_q = m.forward(ids)
    m.act_quant = False
    ref_x = m.forward(ids)
    out['end_to_end_logits_max_abs'] = {
        'exact_ref_vs_llamacpp': round(float(np.abs(ref_x - logits).max()), 4),
        'act_quant_ref_vs_llamacpp': round(float(np.abs(ref_q - logits).max()), 4),
        'exact_ref_vs_act_quant_ref': round(float(np.abs(ref_x - ref_q).max()), 4)}
    return out


def make_logits():
    import gguf
    toks = llama_tokenize([(t, True, False) for _, t in PROMPTS])
    prompt_ids = [ids for ids, _ in toks]
    n_rows = sum(len(x) for x in prompt_ids)
    print(f'logits: {len(PROMPTS)} prompts, {[len(x) for x in prompt_ids]} tokens ({n_rows} rows)')

    m = llama_ref.Model(MODEL, check_dequant=True)
    V = m.vocab
    vocab = gguf.GGUFReader(MODEL).fields['tokenizer.ggml.tokens'].contents()

    recs = []
    for (name, text), ids in zip(PROMPTS, prompt_ids):
        lg = m.forward(ids)
        gaps = []
        gr = m.greedy(ids, N_GREEDY, gaps)
        recs.append({'name': name, 'text': text, 'ids': ids, 'logits': lg, 'greedy': gr, 'greedy_gap': gaps})
        print(f'  {name}: reference greedy -> {detok(vocab, gr)!r}')

    path = os.path.join(FIX, 'logits_smollm2.bin')
    with open(path, 'wb') as f:
        f.write(b'SHOALLG1' + struct.pack('<4I', 1, V, len(recs), N_GREEDY))
        for r in recs:
            f.write(struct.pack('<2I', len(r['ids']), 0))
            f.write(np.asarray(r['ids'], '<i4').tobytes())
            f.write(np.asarray(r['greedy'], '<i4').tobytes())
            f.write(r['logits'].astype('<f4').tobytes())
    print(f'  wrote {path} ({os.path.getsize(path)} bytes)')

    # Cross-check the reference against llama.cpp's own forward pass (F32 KV cache).
    check, all_diff, top1, rows = [], 0.0, 0, 0
    with tempfile.TemporaryDirectory() as td:
        for r in recs:
            idp, outp = os.path.join(td, 'ids.txt'), os.path.join(td, 'logits.f32')
            open(idp, 'w').write(' '.join(map(str, r['ids'])))
            out = run([tool('llama-dump'), 'logits', MODEL, idp, outp, str(N_GREEDY), str(THREADS)])
            cg = [int(x) for x in out.split()]
            cl = np.fromfile(outp, '<f4').reshape(len(r['ids']), V).astype(np.float64)
            d = np.abs(cl - r['logits'])
            agree = int((cl.argmax(1) == r['logits'].argmax(1)).sum())
            same_prefix = next((i for i, (a, b) in enumerate(zip(cg, r['greedy'])) if a != b), N_GREEDY)
            rel = d.max() / np.abs(r['logits']).max()
            check.append({'name': r['name'], 'max_abs_diff': round(float(d.max()), 5),
                          'mean_abs_diff': round(float(d.mean()), 5), 'max_abs_logit': round(float(np.abs(r['logits']).max()), 3),
                          'rel_max_diff': round(float(rel), 6), 'top1_agree': agree, 'positions': len(r['ids']),
                          'llamacpp_greedy': cg, 'greedy_common_prefix': same_prefix})
            all_diff, top1, rows = max(all_diff, float(d.max())), top1 + agree, rows + len(r['ids'])
            print(f"  {r['name']}: max|diff| {d.max():.4f} mean {d.mean():.4f} top-1 {agree}/{len(r['ids'])}"
                  f" greedy prefix {same_prefix}/{N_GREEDY}; llama.cpp greedy -> {detok(vocab, cg)!r}")
    doc = {'model': os.path.basename(MODEL), 'format': 'see tests/fixtures/README.md (SHOALLG1)',
           'reference': 'scripts/reference/llama_ref.py (float64 numpy; stored as float32)',
           'n_vocab': V, 'n_greedy': N_GREEDY,
           'prompts': [{'name': r['name'], 'text': r['text'], 'ids': r['ids'], 'greedy': r['greedy'],
                        'greedy_text': detok(vocab, r['greedy']),
                        'greedy_gap': [round(g, 3) for g in r['greedy_gap']],
                        'top1_gap': [round(float(a - b), 3) for a, b in
                                     (np.sort(r['logits'], axis=1)[:, -1:-3:-1]).tolist()],
                        'top5_last': [int(t) for t in np.argsort(-r['logits'][-1])[:5]]} for r in recs],
           'llamacpp_check': {'generator': f'llama.cpp {LLAMA_COMMIT[:7]} via llama-dump (CPU, F32 KV cache, '
                                           f'no flash attention, {THREADS} threads)',
                              'max_abs_diff': round(all_diff, 5), 'top1_agree': top1, 'positions': rows,
                              'per_prompt': check,
                              'op_check': {'prompt': recs[0]['name'], 'relative_l2_error_median_max_over_layers':
                                           op_check(recs[0]['ids'])}}}
    with open(os.path.join(FIX, 'logits_smollm2.json'), 'w', encoding='utf-8') as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write('\n')
    print(f'  llama.cpp vs reference: max|diff| {all_diff:.4f}, top-1 {top1}/{rows}')


def read_logits_bin(path):
    """Parses logits_smollm2.bin (format in tests/fixtures/README.md) -> (n_vocab, n_greedy, prompts)."""
    data = open(path, 'rb').read()
    if len(data) < 24 or data[:8] != b'SHOALLG1':
        raise ValueError(f'{path}: not a SHOALLG1 file')
    version, V, n_prompts, n_greedy = struct.unpack_from('<4I', data, 8)
    if version != 1:
        raise ValueError(f'{path}: version {version} unknown')
    off, prompts = 24, []
    for _ in range(n_prompts):
        n, _reserved = struct.unpack_from('<2I', data, off)
        off += 8
        need = 4 * (n + n_greedy + n * V)
        if off + need > len(data):
            raise ValueError(f'{path}: prompt record runs past end of file')
        ids = np.frombuffer(data, '<i4', n, off).tolist()
        greedy = np.frombuffer(data, '<i4', n_greedy, off + 4 * n).tolist()
        logits = np.frombuffer(data, '<f4', n * V, off + 4 * (n + n_greedy)).reshape(n, V)
        prompts.append({'ids': ids, 'greedy': greedy, 'logits': logits})
        off += need
    if off != len(data):
        raise ValueError(f'{path}: {len(data) - off} trailing bytes')
    return V, n_greedy, prompts


def check():
    """Re-reads the committed fixtures and checks they agree with each other."""
    V, ng, prompts = read_logits_bin(os.path.join(FIX, 'logits_smollm2.bin'))
    meta = json.load(open(os.path.join(FIX, 'logits_smollm2.json'), encoding='utf-8'))
    assert V == meta['n_vocab'] and ng == meta['n_greedy'] and len(prompts) == len(meta['prompts'])
    for p, j in zip(prompts, meta['prompts']):
        assert p['ids'] == j['ids'] and p['greedy'] == j['greedy'], j['name']
        assert int(np.argmax(p['logits'][-1])) == j['greedy'][0], j['name']
        assert np.all(np.isfinite(p['logits'])), j['name']
    toks = json.load(open(os.path.join(FIX, 'tokens_smollm2.json'), encoding='utf-8'))
    chat = next(c for c in toks['cases'] if c['name'] == 'chatml_prompt' and c['parse_special'])
    assert all(0 <= i < V for c in toks['cases'] for i in c['ids'])
    print(f'check: logits_smollm2.bin ({len(prompts)} prompts, vocab {V}) and its .json agree; '
          f'tokens_smollm2.json has {len(toks["cases"])} cases (chatml prompt: {len(chat["ids"])} ids)')


def main():
    what = sys.argv[1] if len(sys.argv) > 1 else 'all'
    if what == 'check':
        check()
        return 0
    if what not in ('tokens', 'logits', 'all'):
        sys.exit(__doc__)
    if not os.path.exists(MODEL):
        sys.exit(f'make_fixtures: model {MODEL} missing: run scripts/setup.sh')
    if what in ('tokens', 'all'):
        make_tokens()
    if what in ('logits', 'all'):
        make_logits()
    return 0


if __name__ == '__main__':
    sys.exit(main())
