#!/usr/bin/env bash
# test_cli.sh — `shoal run` end to end: WASI (argv, env, stdio, preopens, exit codes), limits
# (--max-memory, --timeout, --fuel) and bad input (non-Wasm, truncated, missing import, hostile
# arguments to shoal imports). Each case checks the exit status and the message.
set -u
BIN=${SHOAL_BIN:?} G=${SHOAL_GUESTS:?}
pass=0 fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# expect NAME WANT_RC PATTERN -- CMD...: runs CMD (stdin from $STDIN if set), checks rc and
# that stdout+stderr match the extended regex PATTERN.
expect() {
  local name=$1 want=$2 pat=$3; shift 4
  local out rc
  out=$(timeout 60 "$@" < "${STDIN:-/dev/null}" 2>&1); rc=$?
  if [ "$rc" = "$want" ] && grep -Eq -- "$pat" <<<"$out"; then
    pass=$((pass + 1))
  else
    fail=$((fail + 1))
    printf 'FAIL %s: rc=%s (want %s), output:\n%s\n---\n' "$name" "$rc" "$want" "$out"
  fi
}

P=$G/wasi_probe.wasm
expect version 0 '^shoal [0-9]+\.[0-9]+\.[0-9]+' -- "$BIN" --version
expect help 0 'usage: shoal run' -- "$BIN" run --help
expect no-args 2 'usage' -- "$BIN"
expect unknown-cmd 2 'unknown command' -- "$BIN" frobnicate
expect unknown-opt 2 'unknown option --bogus' -- "$BIN" run --bogus "$P"
expect argv 0 'argv\[2\]=hello world' -- "$BIN" run "$P" args "hello world"
expect env 0 '^GREETING=hi there$' -- "$BIN" run --env "GREETING=hi there" "$P" env GREETING
expect env-unset 1 'NOPE=\(unset\)' -- "$BIN" run "$P" env NOPE
expect env-bad 2 'KEY=VALUE' -- "$BIN" run --env novalue "$P" args
expect exit-code 42 '^$' -- "$BIN" run "$P" exit 42
echo "preopened content" > "$tmp/in.txt"
expect preopen 0 '^preopened content$' -- "$BIN" run --dir "$tmp::/data" "$P" cat /data/in.txt
expect preopen-write 0 '' -- "$BIN" run --dir "$tmp::/data" "$P" write /data/out.txt "from the guest"
if [ "$(cat "$tmp/out.txt" 2>/dev/null)" = "from the guest" ]; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL preopen-write content"; fi
expect no-preopen 4 'Capabilities insufficient|No such file' -- "$BIN" run "$P" cat /data/in.txt
expect dir-missing 2 'no-such-dir' -- "$BIN" run --dir /no-such-dir "$P" args
printf 'abc\n' > "$tmp/stdin"
STDIN=$tmp/stdin expect stdin 0 '^ABC$' -- "$BIN" run "$P" echo
expect trap 134 'unreachable. instruction executed' -- "$BIN" run "$P" trap

# Bad modules
printf 'definitely not wasm' > "$tmp/junk.wasm"
expect non-wasm 1 'not a WebAssembly module' -- "$BIN" run "$tmp/junk.wasm"
head -c 200 "$P" > "$tmp/trunc.wasm"
expect truncated 1 'invalid WebAssembly module.*|end-of-file' -- "$BIN" run "$tmp/trunc.wasm"
expect missing-file 1 'No such file' -- "$BIN" run "$tmp/absent.wasm"
expect missing-import 1 'unknown import.*shoal::no_such_op' -- "$BIN" run "$G/missing_import.wasm"

# Limits
expect timeout 124 'exceeded its time limit of 300 ms' -- "$BIN" run --timeout 300ms "$P" spin
expect timeout-bad 2 'duration' -- "$BIN" run --timeout soon "$P" spin
expect fuel 134 'ran out of fuel' -- "$BIN" run --fuel 200000 "$P" spin
expect max-memory 134 'hit --max-memory: growing its memory to [0-9]+ bytes was refused' -- "$BIN" run --max-memory 16M "$P" hog
expect max-memory-tiny 1 'max-memory' -- "$BIN" run --max-memory 64K "$P" args
expect max-memory-bad 2 'size such as' -- "$BIN" run --max-memory lots "$P" args

# Hostile arguments to shoal imports: each traps with a precise message.
B=$G/bad_ops.wasm
expect op-ok 0 '^$' -- "$BIN" run "$B" ok
expect op-past-end 134 'shoal.matmul_f32: B \[offset 0x[0-9a-f]+, 256 bytes\) lies outside linear memory' -- "$BIN" run "$B" past-end
expect op-wrap 134 'A \[offset 0xfffffff0, 256 bytes\) lies outside linear memory' -- "$BIN" run "$B" wrap
expect op-huge 134 'A \[offset 0x[0-9a-f]+, 4611686018427387904 bytes\) lies outside' -- "$BIN" run "$B" huge-dims
expect op-misaligned 134 'not 4-byte aligned' -- "$BIN" run "$B" misaligned
expect op-overlap 134 'overlaps an input operand' -- "$BIN" run "$B" overlap
expect op-placement 134 'unknown placement 7' -- "$BIN" run "$B" bad-placement
expect op-info-oob 134 'shoal.op_info: out .* lies outside' -- "$BIN" run "$B" op-info-oob
expect last-error-oob 134 'shoal.last_error: buffer .* lies outside' -- "$BIN" run "$B" last-error-oob

# The device flag: cuda without a GPU fails clearly; auto falls back and says which device.
if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
  expect cuda-missing 1 'CUDA|GPU|cuda' -- "$BIN" run --device cuda "$P" args
  expect auto-cpu 0 'device: cpu' -- "$BIN" run --device auto "$P" args
fi
expect device-bad 2 'cpu, cuda or auto' -- "$BIN" run --device tpu "$P" args

# The zero-copy benchmark, small: 0 errors and pointer identity.
expect bench-zerocopy 0 'RESULT: OK' -- "$BIN" bench zerocopy --sizes 64,128 --reps 3 --no-rss

echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
