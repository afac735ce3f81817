#!/usr/bin/env bash
# test_wasi_nn.sh — wasi-nn and the shoal token API end to end through the CLI and the example
# guests on SmolLM2-135M (greedy, short answers): a factual answer, streaming == one-shot ==
# token-level, multi-turn chat, every wasi-nn error path (nn_abuse), traps and CLI errors.
set -u
: "${SHOAL_BIN:?}" "${SHOAL_GUESTS:?}" "${SHOAL_DEPS:?}"
MODEL="$SHOAL_DEPS/models/SmolLM2-135M-Instruct.Q4_1.gguf"
[ -f "$MODEL" ] || { echo "skip: $MODEL missing (run scripts/setup.sh)"; exit 77; }
RUN=("$SHOAL_BIN" run --threads 2 --nn-preload "default:GGML:AUTO:$MODEL")
Q="What is the capital of France?"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok: $*"; }
# The answer text: everything before the "[... tokens/s]" summary line.
answer() { sed '/^\[.*tokens.*\]$/,$d'; }

one=$("${RUN[@]}" "$SHOAL_GUESTS/complete.wasm" -n 32 default "$Q") || fail "complete.wasm exited $?"
echo "$one"
grep -q "Paris" <<<"$one" && pass "greedy answer names Paris" || fail "no Paris in: $one"
grep -Eq '^\[[0-9]+ prompt tokens, [1-9][0-9]* generated, [0-9.]+ tokens/s\]$' <<<"$one" \
  && pass "complete prints token counts and tokens/s" || fail "no tokens/s line"

ans1=$(answer <<<"$one")
stream=$("${RUN[@]}" "$SHOAL_GUESTS/stream.wasm" -n 32 default "$Q") || fail "stream.wasm exited $?"
[ "$(answer <<<"$stream")" = "$(answer <<<"$one")" ] && pass "compute_single stream == compute" \
  || fail "stream differs: [$(answer <<<"$stream")] vs [$(answer <<<"$one")]"

tok=$("${RUN[@]}" "$SHOAL_GUESTS/tokens.wasm" -n 32 default "$Q") || fail "tokens.wasm exited $?"
[ "$(answer <<<"$tok")" = "$(answer <<<"$one")" ] && pass "token-level greedy loop == wasi-nn greedy" \
  || fail "token API differs: [$(answer <<<"$tok")] vs [$(answer <<<"$one")]"

# A longer greedy generation that stops on n-predict, not on end of turn: the three paths must
# still agree token for token.
L="Write a short poem about the sea."
a=$("${RUN[@]}" "$SHOAL_GUESTS/complete.wasm" -n 24 default "$L" | answer)
b=$("${RUN[@]}" "$SHOAL_GUESTS/stream.wasm" -n 24 default "$L" | answer)
c=$("${RUN[@]}" "$SHOAL_GUESTS/tokens.wasm" -n 24 default "$L" | answer)
[ -n "$a" ] && [ "$a" = "$b" ] && [ "$a" = "$c" ] && pass "24-token poem identical on all three paths" \
  || fail "poem differs: [$a] [$b] [$c]"

# Options: reverse-prompt stops right after the text appears; enable-log reports on stderr, and
# nothing is printed without it; stream-stdout prints the pieces from the host as they come.
# (Where a context runs — n-gpu-layers, targets — is tests/test_nn_device.sh.)
rp=$("${RUN[@]}" "$SHOAL_GUESTS/complete.wasm" -n 32 -o '"reverse-prompt": "France"' default "$Q" | answer)
[[ "$rp" == *France ]] && [ ${#rp} -lt ${#one} ] && pass "reverse-prompt stops the answer at \"France\"" \
  || fail "reverse-prompt: [$rp]"
log=$("${RUN[@]}" "$SHOAL_GUESTS/complete.wasm" -n 8 -o '"enable-log": true, "n-gpu-layers": 0' default "$Q" 2>&1 >/dev/null)
grep -q "positions on the CPU" <<<"$log" && grep -q "tokens/s" <<<"$log" && pass "enable-log: progress and the device on stderr" \
  || fail "enable-log: $log"
quiet=$("${RUN[@]}" "$SHOAL_GUESTS/complete.wasm" -n 8 -o '"n-gpu-layers": 0' default "$Q" 2>&1 >/dev/null)
[ -z "$quiet" ] && pass "no log without enable-log" || fail "unexpected stderr: $quiet"
ss=$("${RUN[@]}" "$SHOAL_GUESTS/complete.wasm" -n 32 -o '"stream-stdout": true' default "$Q")
[ "$(head -c ${#ans1} <<<"$ss")" = "$ans1" ] && pass "stream-stdout prints the answer from the host too" \
  || fail "stream-stdout: [$ss]"

t1=$("${RUN[@]}" "$SHOAL_GUESTS/complete.wasm" -n 32 -o '"threads": 1' default "$Q" | answer)
[ "$t1" = "$ans1" ] && pass "\"threads\": 1 (a context's own pool) gives the same greedy answer" || fail "threads 1: [$t1]"

chat=$(printf 'What is the capital of France?\nAnd of Germany?\n' | "${RUN[@]}" "$SHOAL_GUESTS/chat.wasm" -n 32) \
  || fail "chat.wasm exited $?"
echo "$chat"
grep -q "Paris" <<<"$chat" && grep -q "Berlin" <<<"$chat" && pass "two-turn chat (second turn relies on the first)" \
  || fail "chat answers: $chat"

# An LLM actor: the conversation (guest memory) and its KV cache (wasi-nn section) survive a
# snapshot; the restored actor answers the follow-up as the original does; a fork answers twice.
SNAP=$(mktemp -d)
trap 'rm -rf "$SNAP"' EXIT
ACT=("$SHOAL_BIN" actor --threads 2 --nn-preload "default:GGML:AUTO:$MODEL" "$SHOAL_GUESTS/chat_actor.wasm")
orig=$(printf 'What is the capital of France?\n:save %s/chat.snap\nAnd of Germany?\n:fork 2\nAnd of Italy?\n' "$SNAP" \
  | "${ACT[@]}" 2>&1) || fail "chat_actor exited $?"
echo "$orig"
rest=$(printf 'And of Germany?\n' | "${ACT[@]}" --load "$SNAP/chat.snap" 2>&1) || fail "restored chat_actor exited $?"
g1=$(sed -n 3p <<<"$orig")
grep -q "Berlin" <<<"$g1" && [ "$rest" = "$g1" ] && pass "restored LLM actor continues the conversation: $rest" \
  || fail "restored actor said [$rest], original [$g1]"
[ "$(grep -c '^\[[01]\] .*Rome' <<<"$orig")" = 2 ] && pass "forked LLM actors both answer" || fail "fork: $orig"
out=$(printf 'x\n' | "$SHOAL_BIN" actor "$SHOAL_GUESTS/chat_actor.wasm" --load "$SNAP/chat.snap" 2>&1); rc=$?
[ $rc -ne 0 ] && grep -q 'model "default" is not preloaded' <<<"$out" && pass "restore without the model: clear refusal" \
  || fail "restore without model: rc=$rc $out"

abuse=$("${RUN[@]}" "$SHOAL_GUESTS/nn_abuse.wasm" 2>&1); rc=$?
echo "$abuse" | tail -n 5
[ $rc -eq 0 ] && grep -q "0 misses" <<<"$abuse" && pass "every wasi-nn / llm error path gives its exact code" \
  || fail "nn_abuse exited $rc"

NOMEM=$(mktemp --suffix=.wasm)
python3 "$SHOAL_SOURCE_DIR/tests/tools/mk_nomem_wasm.py" > "$NOMEM"
out=$("${RUN[@]}" "$NOMEM" 2>&1); rc=$?
rm -f "$NOMEM"
[ $rc -eq 0 ] && pass "a module without an exported memory gets missing_memory (3) from wasi-nn" || fail "missing_memory: rc=$rc $out"

for kt in "0:KV cache .* not 16-byte aligned|KV cache .*aligned" "1:KV cache .* lies outside linear memory" \
          "2:overlap the session's KV cache"; do
    out=$("${RUN[@]}" "$SHOAL_GUESTS/nn_abuse.wasm" kv-trap "${kt%%:*}" 2>&1); rc=$?
    [ $rc -eq 134 ] && grep -Eq "${kt#*:}" <<<"$out" && pass "llm_open_kv trap ${kt%%:*}: $(grep -o 'shoal.llm[^(]*' <<<"$out" | head -1)" \
      || fail "kv-trap ${kt%%:*}: rc=$rc $out"
done

out=$("${RUN[@]}" "$SHOAL_GUESTS/nn_abuse.wasm" llm-trap 2>&1); rc=$?
[ $rc -eq 134 ] && grep -q "shoal.llm_eval: logits .* lies outside linear memory" <<<"$out" \
  && pass "llm_eval with logits past memory traps with a precise message" || fail "llm-trap: rc=$rc $out"

out=$("$SHOAL_BIN" run --nn-preload "default:GGML:AUTO:/nonexistent.gguf" "$SHOAL_GUESTS/complete.wasm" default x 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "nonexistent.gguf" <<<"$out" && pass "missing model file: clear CLI error" \
  || fail "missing model: rc=$rc $out"
out=$("$SHOAL_BIN" run --nn-preload "default:ONNX:AUTO:$MODEL" "$SHOAL_GUESTS/complete.wasm" default x 2>&1); rc=$?
[ $rc -eq 2 ] && pass "unsupported --nn-preload encoding: usage error" || fail "bad encoding: rc=$rc $out"
out=$("$SHOAL_BIN" run --nn-preload "nocolons" "$SHOAL_GUESTS/complete.wasm" default x 2>&1); rc=$?
[ $rc -eq 2 ] && pass "malformed --nn-preload: usage error" || fail "malformed preload: rc=$rc $out"
# No model preloaded: the guest gets not_found and says so.
out=$("$SHOAL_BIN" run "$SHOAL_GUESTS/complete.wasm" default x 2>&1); rc=$?
[ $rc -eq 1 ] && grep -q "not_found" <<<"$out" && pass "unknown model name: not_found reaches the guest" \
  || fail "unknown model: rc=$rc $out"

[ $fails -eq 0 ] && echo "test_wasi_nn: all passed" || echo "test_wasi_nn: $fails failed"
exit $((fails > 0))
