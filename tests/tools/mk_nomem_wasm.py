#!/usr/bin/env python3
# mk_nomem_wasm.py — writes (to stdout) a hand-encoded Wasm module that defines a memory but does
# not export it, and whose _start calls wasi_ephemeral_nn.load_by_name("...", 7, 16): wasi-nn must
# answer missing_memory (3), which no clang-built guest can provoke (wasm-ld always exports the
# memory). _start returns normally on 3 and hits `unreachable` (a trap) on anything else.
import sys
def leb(n):
    out=bytearray()
    while True:
        b=n&0x7f; n>>=7
        if n: out.append(b|0x80)
        else: out.append(b); return bytes(out)
def sec(id, payload): return bytes([id])+leb(len(payload))+payload
def name(s): b=s.encode(); return leb(len(b))+b
types = leb(2) + b'\x60'+leb(3)+b'\x7f\x7f\x7f'+leb(1)+b'\x7f' + b'\x60'+leb(0)+leb(0)
imports = leb(1) + name("wasi_ephemeral_nn")+name("load_by_name")+b'\x00'+leb(0)
funcs = leb(1)+leb(1)
mem = leb(1)+b'\x00'+leb(1)
exports = leb(1)+name("_start")+b'\x00'+leb(1)
# load_by_name(0, 7, 16) != 3 (missing_memory) -> unreachable
body = b'\x00' + b'\x41'+leb(0) + b'\x41'+leb(7) + b'\x41'+leb(16) + b'\x10'+leb(0) + b'\x41'+leb(3) + b'\x47' + b'\x04\x40' + b'\x00' + b'\x0b' + b'\x0b'
code = leb(1)+leb(len(body))+body
sys.stdout.buffer.write(b'\x00asm\x01\x00\x00\x00'+sec(1,types)+sec(2,imports)+sec(3,funcs)+sec(5,mem)+sec(7,exports)+sec(10,code))
