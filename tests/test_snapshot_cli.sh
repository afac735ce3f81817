#!/usr/bin/env bash
# test_snapshot_cli.sh — an actor saved by one `shoal actor` process and restored by another
# answers exactly as the original does when it goes on; forks through :fork; `shoal snapshot
# inspect`; refused loads leave the running actor as it was.
set -euo pipefail
BIN=${SHOAL_BIN:?}
GUEST=${SHOAL_GUESTS:?}/counter_actor.wasm
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

# Process 1: three messages, a snapshot, then two more (the reference continuation).
printf 'first\nbig 500000\nsecond\n:save %s/a.snap\nthird\nfourth\n' "$T" | "$BIN" actor "$GUEST" > "$T/p1.out"
grep -q "^saved $T/a.snap$" "$T/p1.out" || fail "save: $(cat "$T/p1.out")"
tail -n 2 "$T/p1.out" > "$T/want"

# Process 2: restore in a fresh process and send the same two messages.
printf 'third\nfourth\n' | "$BIN" actor "$GUEST" --load "$T/a.snap" > "$T/p2.out"
cmp "$T/want" "$T/p2.out" || { diff "$T/want" "$T/p2.out"; fail "restored actor answers differently"; }
grep -q '^#4 ' "$T/p2.out" || fail "restored actor did not continue from message 4"

# Process 3: :load inside a session, after other traffic.
printf 'noise\n:load %s/a.snap\nthird\nfourth\n' "$T" | "$BIN" actor "$GUEST" > "$T/p3.out"
tail -n 2 "$T/p3.out" | cmp - "$T/want" || fail ":load continuation differs"

# Snapshots are reproducible: restoring and saving again gives the same memory and globals.
printf ':save %s/b.snap\n' "$T" | "$BIN" actor "$GUEST" --load "$T/a.snap" > /dev/null
"$BIN" snapshot inspect "$T/a.snap" | grep -v -e '^snapshot ' -e ' info ' -e 'CRC' > "$T/ia"
"$BIN" snapshot inspect "$T/b.snap" | grep -v -e '^snapshot ' -e ' info ' -e 'CRC' > "$T/ib"
cmp "$T/ia" "$T/ib" || { diff "$T/ia" "$T/ib"; fail "re-saved snapshot differs"; }
grep -q 'actor_generation' "$T/ia" || fail "inspect does not list the exported global"
grep -q '__stack_pointer' "$T/ia" || fail "inspect does not list __stack_pointer"
grep -q 'memory .* bytes stored in' "$T/ia" || fail "inspect does not describe memory"

# :fork 3: every copy answers the same, then they diverge on different input.
printf ':fork 3\nsame\n' | "$BIN" actor "$GUEST" --load "$T/a.snap" > "$T/f.out"
grep -q '^forked into 3$' "$T/f.out" || fail "fork: $(cat "$T/f.out")"
[ "$(grep -c '^\[[012]\] #4 ' "$T/f.out")" = 3 ] || fail "fork replies: $(cat "$T/f.out")"
[ "$(grep '^\[' "$T/f.out" | sed 's/^\[.\] //' | sort -u | wc -l)" = 1 ] || fail "forks answered differently"

# Refused loads: corrupt, truncated, other module; the actor goes on untouched, exit status 1.
python3 - "$T/a.snap" "$T/corrupt.snap" "$T/trunc.snap" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
c = bytearray(d); c[len(c) // 2] ^= 0x10
open(sys.argv[2], 'wb').write(c)
open(sys.argv[3], 'wb').write(d[: len(d) - 100])
PY
set +e
printf 'x1\n:load %s/corrupt.snap\n:load %s/trunc.snap\n:load %s/missing.snap\nx2\n' "$T" "$T" "$T" \
  | "$BIN" actor "$GUEST" > "$T/r.out" 2> "$T/r.err"
rc=$?
set -e
[ "$rc" = 1 ] || fail "exit status $rc after refused loads"
grep -q 'checksum mismatch' "$T/r.err" || fail "corrupt: $(cat "$T/r.err")"
grep -q 'truncated' "$T/r.err" || fail "truncated: $(cat "$T/r.err")"
grep -q 'No such file' "$T/r.err" || fail "missing: $(cat "$T/r.err")"
printf 'x1\nx2\n' | "$BIN" actor "$GUEST" | cmp - "$T/r.out" || fail "actor changed by a refused load"

# Another module (same code plus a custom section) refuses the snapshot.
python3 -c "import sys; d=open(sys.argv[1],'rb').read(); open(sys.argv[2],'wb').write(d+bytes([0,6,5])+b'other')" \
  "$GUEST" "$T/other.wasm"
set +e
"$BIN" actor "$T/other.wasm" --load "$T/a.snap" < /dev/null > /dev/null 2> "$T/m.err"
rc=$?
set -e
[ "$rc" != 0 ] || fail "other module accepted the snapshot"
grep -q 'another module' "$T/m.err" || fail "other module: $(cat "$T/m.err")"

"$BIN" snapshot inspect "$T/corrupt.snap" > /dev/null 2>&1 && fail "inspect accepted a corrupt file"
echo "1 passed, 0 failed"
