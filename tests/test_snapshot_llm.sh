#!/usr/bin/env bash
# test_snapshot_llm.sh — the bit-equality test of a stateful LLM actor, across processes.
# A multi-turn chat with SmolLM2 (sampling at temperature 0.8 with a seeded RNG). Branch A runs
# one more turn in the same process; branch B snapshots, the process exits, a new process
# restores and runs the same turn. The generated tokens and text are identical, and the state
# after the turn — linear memory, globals, and the LLM layer's section (KV cache rows, token
# history, sampler and RNG state) — is byte-identical between the branches.
set -euo pipefail
BIN=${SHOAL_BIN:?}
GUEST=${SHOAL_GUESTS:?}/llm_chat_actor.wasm
MODEL=${SHOAL_DEPS:?}/models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f "$MODEL" ] || { echo "skip: $MODEL not found"; exit 77; }
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
PRE=(--nn-preload "default:GGML:AUTO:$MODEL")

# Branch A: two turns, snapshot, the third turn in the same process, then its final state.
printf 'Hi, what is your name?\nWhat is 2+2?\n:save %s/turn2.snap\nName three colors.\n:save %s/a.snap\n' "$T" "$T" |
    "$BIN" actor "${PRE[@]}" "$GUEST" > "$T/a.out"
grep -q '^saved .*/a.snap$' "$T/a.out" || fail "branch A: $(cat "$T/a.out")"
grep '^tokens=' "$T/a.out" | sed -n 3p > "$T/a.turn3"

# Branch B: a new process restores turn 2 and runs the same third turn.
printf 'Name three colors.\n:save %s/b.snap\n' "$T" |
    "$BIN" actor "${PRE[@]}" --load "$T/turn2.snap" "$GUEST" > "$T/b.out"
grep '^tokens=' "$T/b.out" > "$T/b.turn3"
[ -s "$T/a.turn3" ] || fail "branch A produced no third turn"
grep -q ' turn=3 ' "$T/b.turn3" || fail "restored actor is not at turn 3: $(cat "$T/b.turn3")"
cmp "$T/a.turn3" "$T/b.turn3" || { diff "$T/a.turn3" "$T/b.turn3"; fail "generated tokens differ"; }

# The state after the turn, section by section (INFO carries a timestamp and is skipped).
python3 - "$T/a.snap" "$T/b.snap" <<'PY'
import struct, sys
def sections(path):
    d = open(path, "rb").read()
    assert d[:8] == b"SHOALSNP", path
    version, hsize, size = struct.unpack_from("<IIQ", d, 8)
    assert size == len(d) and hsize == 64
    module, (nsec,) = d[24:56], struct.unpack_from("<I", d, 56)
    out, at = {}, 64
    for _ in range(nsec):
        typ, _, n = struct.unpack_from("<IIQ", d, at)
        out.setdefault(typ, []).append(d[at + 16: at + 16 + n])
        at += 16 + n
    return module, out
ma, a = sections(sys.argv[1])
mb, b = sections(sys.argv[2])
assert ma == mb, "module hashes differ"
names = {2: "linear memory", 3: "globals", 4: "layer section"}
for typ in (2, 3, 4):
    assert typ in a and len(a[typ]) == len(b.get(typ, [])), f"{names[typ]}: present in one branch only"
    for x, y in zip(a[typ], b[typ]):
        label = names[typ] + (f" \"{x[2:2 + x[0]].decode()}\"" if typ == 4 else "")
        if x != y:
            first = next(i for i in range(min(len(x), len(y))) if x[i] != y[i]) if len(x) == len(y) else -1
            sys.exit(f"FAIL: {label} differs ({len(x)} vs {len(y)} bytes, first difference at {first})")
        print(f"identical: {label}, {len(x)} bytes")
PY
# The layer section holds the KV cache: it must be the bulk of the snapshot.
"$BIN" snapshot inspect "$T/b.snap" | grep -q '"llm" (slot 1)' || fail "no llm section in the snapshot"
echo "1 passed, 0 failed"
