#!/usr/bin/env python3
"""test_tokenizer_llamacpp.py — Shoal's tokenizer against llama.cpp's on 1500 generated texts.

The texts (seeded, so every run sees the same ones) mix ASCII, accented and CJK letters, Arabic
and other numbers, emoji with modifiers and joiners, every kind of whitespace run, contractions,
code punctuation, the model's special tokens and invalid UTF-8 bytes. Each is tokenized with
parse_special off and on (and add_special on, which on SmolLM2 adds nothing) by
`llama-dump tokenize` (scripts/reference, built by scripts/reference/build_llamacpp.sh) and by
tests/tools/shoal_tokenize; ids and decoded text must be identical. Skips (77) when llama-dump
or the model is missing. Texts with 4-byte forms above U+10FFFF are excluded: llama.cpp throws on
those (see tokenizer.h)."""
import os
import random
import struct
import subprocess
import sys
import tempfile

SRC = os.environ.get('SHOAL_SOURCE_DIR', os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get('SHOAL_BUILD_DIR', os.path.join(SRC, 'build'))
DEPS = os.environ.get('SHOAL_DEPS', os.path.join(SRC, '.deps'))
MODEL = os.path.join(DEPS, 'models', 'SmolLM2-135M-Instruct.Q4_1.gguf')
DUMP = os.path.join(DEPS, 'llama.cpp', 'build-cpu', 'bin', 'llama-dump')
MINE = os.path.join(BUILD, 'shoal_tokenize')


def skip(why):
    print('SKIP: ' + why)
    sys.exit(77)


def corpus(n, seed=20261125):
    rnd = random.Random(seed)
    pieces = [' ', '  ', '   ', '\t', '\n', '\n\n', '\r\n', '\u00a0', '\u2003', '\u3000', '\u2028', "'s", "'LL", "'re",
              "'", 'don', 'The', 'hello', 'WORLD', 'caf\u00e9', 'na\u0308ive', '\u00c5ngstr\u00f6m', 'stra\u00dfe',
              '\u65e5\u672c\u8a9e', '\u4e2d\u6587', '\ud55c\uad6d\uc5b4', '\u041f\u0440\u0438\u0432\u0435\u0442',
              '\u0645\u0631\u062d\u0628\u0627', '\u05e9\u05dc\u05d5\u05dd', '\u0e44\u0e17\u0e22', '\u0939\u093f\u0902',
              '0', '7', '42', '1234567', '3.14', '\u0663\u0664', '\u00bd', '\u2167', '\u2460', '\U0001d7d9',
              '\U0001f600', '\U0001f44d\U0001f3fd', '\U0001f468\u200d\U0001f469\u200d\U0001f467', '\U0001f1eb\U0001f1f7',
              '\u2764\ufe0f', '\U0001fae0', '(', ')', '{', '}', '[', ']', ';', '::', '->', '!=', '==', '+=', '**', '#',
              '//', '/*', '*/', '"', '`', '$', '\u20ac', '@', '%', '&&', '||', '...', '\u2026', '\u00bf', '\u00a1', '-',
              '_', '<', '>', '|', '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<repo_name>', '<|im_start',
              '\u0300', '\u200b', '\ufeff', '\x00', '\x7f', '\u0085', '\ud7ff', '\ue000', '\U0010ffff']
    bad = [b'\x80', b'\xbf', b'\xc0', b'\xc3', b'\xe2\x82', b'\xed\xa0\x80', b'\xf0\x9f\x98', b'\xfe', b'\xff',
           b'\xc0\xaf', b'\xe0\x80\x80']
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rnd.randint(1, 24)):
            if rnd.random() < 0.06:
                parts.append(rnd.choice(bad))
            else:
                parts.append(rnd.choice(pieces).encode('utf-8', 'surrogatepass'))
        out.append(b''.join(parts))
    return out


def run(cmd, cases):
    with tempfile.NamedTemporaryFile(suffix='.bin', delete=False) as f:
        for text, ps, add in cases:
            f.write(struct.pack('<BBI', ps, add, len(text)) + text)
        path = f.name
    try:
        r = subprocess.run(cmd + [MODEL, path], capture_output=True, timeout=600)
    finally:
        os.unlink(path)
    if r.returncode != 0:
        sys.exit('%s failed: %s' % (cmd[0], r.stderr.decode(errors='replace')[-2000:]))
    lines = r.stdout.decode('ascii').split('\n')[:-1]
    if len(lines) != len(cases):
        sys.exit('%s gave %d lines for %d cases' % (cmd[0], len(lines), len(cases)))
    return lines


def main():
    for path, what in ((MODEL, 'model'), (DUMP, 'llama-dump (scripts/reference/build_llamacpp.sh)'),
                       (MINE, 'shoal_tokenize (build tree)')):
        if not os.path.exists(path):
            skip('%s not found at %s' % (what, path))
    texts = corpus(1500)
    cases = [(t, ps, add) for t in texts for ps, add in ((0, 0), (1, 0), (1, 1))]
    ref, mine = run([DUMP, 'tokenize'], cases), run([MINE], cases)
    bad_ids = bad_text = 0
    for (text, ps, add), a, b in zip(cases, ref, mine):
        ia, ha = a.split('\t')
        ib, hb = b.split('\t')
        if ia != ib:
            bad_ids += 1
            if bad_ids <= 5:
                print('ids differ (parse_special=%d): %r\n  llama.cpp %s\n  shoal     %s' % (ps, text, ia, ib))
        elif ha != hb:
            bad_text += 1
            if bad_text <= 5:
                print('decoded text differs: %r' % text)
    n = len(cases)
    print('%d passed, %d failed' % (n - bad_ids - bad_text, bad_ids + bad_text))
    print('token ids identical in %d/%d cases, decoded text in %d/%d' % (n - bad_ids, n, n - bad_ids - bad_text,
                                                                        n - bad_ids))
    return 0 if bad_ids == 0 and bad_text == 0 else 1


if __name__ == '__main__':
    sys.exit(main())
