#!/usr/bin/env bash
# test_nn_device.sh — where LLM contexts run, and that the choice is never silently ignored:
# wasi-nn's load target, "n-gpu-layers", --nn-preload's TARGET and --device, on machines with and
# without a GPU. Without one: a GPU reached by n-gpu-layers or AUTO falls back to the CPU with a
# warning naming the reason; a GPU named explicitly is an error; a split of the layers is refused.
# With one (run on the GPU machine): contexts land where they are sent (enable-log says so), the
# GPU's greedy text equals the CPU's, and running out of device memory refuses one session while
# the others keep working. SHOAL_TEST_MODEL overrides the model (the GPU machine uses a generated
# one: SmolLM2 is too large to carry there).
set -u
: "${SHOAL_BIN:?}" "${SHOAL_GUESTS:?}" "${SHOAL_DEPS:?}"
MODEL=${SHOAL_TEST_MODEL:-$SHOAL_DEPS/models/SmolLM2-135M-Instruct.Q4_1.gguf}
[ -f "$MODEL" ] || { echo "skip: $MODEL missing (run scripts/setup.sh)"; exit 77; }
A=$SHOAL_GUESTS/nn_abuse.wasm
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
fails=0 passes=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
pass() { echo "ok: $*"; passes=$((passes + 1)); }
# place PRELOAD_TARGET DEVICE LOAD_TARGET CONFIG: stdout to $T/out, stderr to $T/err.
place() {
    "$SHOAL_BIN" run --threads 2 --device "$2" --nn-preload "default:GGML:$1:$MODEL" "$A" placement "$3" "$4" \
        > "$T/out" 2> "$T/err"
}
text() { sed -n 's/.*text=\[//p' "$T/out" | tr -d '\n'; }
G='"n-predict": 8, "temp": 0'

place AUTO cpu 3 "{$G}"
grep -q 'compute=0 ' "$T/out" && [ ! -s "$T/err" ] && pass "CPU context: quiet, computes" || fail "cpu: $(cat "$T/out" "$T/err")"
cpu_text=$(text)
cpu_n=$(sed -n 's/.*output_tokens=\([0-9]*\) .*/\1/p' "$T/out")
place AUTO cpu 3 "{$G, \"n-gpu-layers\": 0}"
[ "$(text)" = "$cpu_text" ] && [ ! -s "$T/err" ] && pass "n-gpu-layers 0: the CPU, same text" || fail "ngl 0: $(cat "$T/out" "$T/err")"
place AUTO cpu 3 "{$G, \"n-gpu-layers\": 2, \"enable-log\": true}"
grep -q 'compute=1 ' "$T/out" && grep -q 'wholly on one device' "$T/err" \
    && pass "a split of the layers (n-gpu-layers 2) is refused: invalid_argument, reason on the log" \
    || fail "partial: $(cat "$T/out" "$T/err")"
place AUTO cpu 2 "{$G}"
grep -q 'load=6 ' "$T/out" && pass "load target TPU: unsupported_operation" || fail "tpu: $(cat "$T/out")"
"$SHOAL_BIN" run --nn-preload "default:GGML:TPU:$MODEL" "$A" placement 3 "{}" > "$T/out" 2> "$T/err"
rc=$?
[ $rc -ne 0 ] && grep -q 'TPU is not served' "$T/err" && pass "--nn-preload TPU refused (exit $rc)" || fail "preload tpu: rc=$rc $(cat "$T/err")"

# actor DEVICE [--load SNAP] MESSAGES...: a bench_llm_actor on DEVICE fed the messages; replies on stdout.
actor() {
    local dev=$1
    shift
    local load=()
    [ "$1" = --load ] && load=(--load "$2") && shift 2
    printf '%s\n' "$@" | "$SHOAL_BIN" actor --threads 2 --device "$dev" --nn-preload "default:GGML:AUTO:$MODEL" "${load[@]}" \
        "$SHOAL_GUESTS/bench_llm_actor.wasm" 2> "$T/aerr"
}
top() { sed -n 's/.* top=\([0-9]*\) .*/\1/p' | head -1; }
GPU=0
command -v nvidia-smi > /dev/null && nvidia-smi -L > /dev/null 2>&1 && GPU=1
DEV=cpu
[ $GPU = 1 ] && DEV=cuda
# The same device, two processes: the restored actor's next token and 8 greedy steps are bit-identical.
a=$(actor $DEV 'prefill 40' ":save $T/s_$DEV.snap" next 'gen 8' | grep -v '^saved')
b=$(actor $DEV --load "$T/s_$DEV.snap" next 'gen 8')
[ -n "$a" ] && [ "$(sed -n 2,3p <<<"$a")" = "$b" ] && pass "$DEV snapshot restored in a new process: next logits and 8 greedy ids bit-identical" \
    || fail "$DEV restore: [$a] vs [$b] $(cat "$T/aerr")"

# The KV cache in the actor's own memory (llm_open_kv): the same numbers as a host-owned cache, the
# snapshot carries it as linear memory (no KV blob in the llm section), and it restores exactly.
k=$(actor $DEV 'kvmode 4160' 'prefill 40' ":save $T/k_$DEV.snap" next 'gen 8' | grep -v '^saved')
grep -q '^kv in guest memory' <<<"$k" && [ "$(sed -n 3,4p <<<"$k")" = "$(sed -n 2,3p <<<"$a")" ] \
    && pass "$DEV: KV cache in guest memory gives the same logits and ids as a host-owned one" \
    || fail "$DEV kvmode: [$k] vs [$a] $(cat "$T/aerr")"
kb=$(actor $DEV --load "$T/k_$DEV.snap" next 'gen 8')
[ -n "$kb" ] && [ "$(sed -n 3,4p <<<"$k")" = "$kb" ] && pass "$DEV: guest-memory KV snapshot restored in a new process, bit-identical" \
    || fail "$DEV kvmode restore: [$kb] vs [$k] $(cat "$T/aerr")"
"$SHOAL_BIN" snapshot inspect "$T/k_$DEV.snap" > "$T/kinsp"
! grep -q 'KV cache 1' "$T/kinsp" && grep -q '"llm" (slot 1)' "$T/kinsp" \
    && pass "$DEV: that snapshot's llm section holds no KV blob ($(grep '"llm"' "$T/kinsp" | tr -s ' '))" \
    || fail "kvmode snapshot: $(cat "$T/kinsp")"

if [ $GPU = 1 ]; then
    kc=$(actor cpu --load "$T/k_cuda.snap" next)
    [ -n "$kc" ] && [ "$(top <<<"$kc")" = "$(sed -n 3p <<<"$k" | top)" ] \
        && pass "GPU snapshot with the KV cache in guest memory restored on the CPU: same next top-1" \
        || fail "kv gpu->cpu: [$kc] vs [$k] $(cat "$T/aerr")"
    # Across devices: a GPU snapshot continues on the CPU and the reverse. Not bit-exact (the
    # devices round differently); the next token's top-1 must agree.
    c=$(actor cpu --load "$T/s_cuda.snap" next)
    [ -n "$c" ] && [ "$(top <<<"$c")" = "$(sed -n 2p <<<"$a" | top)" ] && pass "GPU snapshot restored on the CPU: same next top-1 ($(top <<<"$c"))" \
        || fail "gpu->cpu: [$c] vs [$a] $(cat "$T/aerr")"
    x=$(actor cpu 'prefill 40' ":save $T/s_cpu.snap" next | grep -v '^saved')
    y=$(actor cuda --load "$T/s_cpu.snap" next)
    [ -n "$y" ] && [ "$(top <<<"$y")" = "$(sed -n 2p <<<"$x" | top)" ] && pass "CPU snapshot restored on the GPU: same next top-1 ($(top <<<"$y"))" \
        || fail "cpu->gpu: [$y] vs [$x] $(cat "$T/aerr")"

    place AUTO cuda 3 "{$G, \"enable-log\": true}"
    grep -q 'compute=0 ' "$T/out" && grep -q 'positions on the GPU' "$T/err" && pass "--device cuda: the context runs on the GPU" \
        || fail "cuda: $(cat "$T/out" "$T/err")"
    gpu_n=$(sed -n 's/.*output_tokens=\([0-9]*\) .*/\1/p' "$T/out")
    [ "$(text)" = "$cpu_text" ] && [ "$gpu_n" = "$cpu_n" ] && [ "${gpu_n:-0}" -gt 0 ] \
        && pass "GPU greedy answer == CPU greedy answer: $gpu_n tokens, [$cpu_text]" \
        || fail "GPU [$(text)] ($gpu_n tokens) vs CPU [$cpu_text] ($cpu_n tokens)"
    place AUTO cuda 3 "{$G, \"n-gpu-layers\": 0, \"enable-log\": true}"
    grep -q 'positions on the CPU' "$T/err" && [ "$(text)" = "$cpu_text" ] && pass "--device cuda with n-gpu-layers 0: the CPU" \
        || fail "cuda ngl0: $(cat "$T/out" "$T/err")"
    place AUTO cpu 1 "{$G, \"enable-log\": true}"
    grep -q 'positions on the GPU' "$T/err" && pass "--device cpu, load target GPU: the GPU" || fail "cpu+target gpu: $(cat "$T/err")"
    place GPU cpu 3 "{$G, \"enable-log\": true}"
    grep -q 'positions on the GPU' "$T/err" && pass "--nn-preload ...:GPU: the GPU" || fail "preload gpu: $(cat "$T/err")"
    place AUTO cpu 3 "{$G, \"n-gpu-layers\": -1, \"enable-log\": true}"
    grep -q 'positions on the GPU' "$T/err" && pass "n-gpu-layers -1: the GPU" || fail "ngl -1: $(cat "$T/err")"
    # Out of device memory: SHOAL_TEST_OOM_MODEL has a large KV row (the GPU run generates one:
    # 32 layers x 4096, 1 MiB a position, 32 GiB a session of 32768 positions).
    "$SHOAL_BIN" run --device cuda --nn-preload "default:GGML:AUTO:${SHOAL_TEST_OOM_MODEL:-$MODEL}" "$A" oom \
        > "$T/out" 2> "$T/err"
    rc=$?
    cat "$T/out"
    if grep -q 'refused_status=0 ' "$T/out"; then
        echo "note: 15 sessions of 32768 positions fit this GPU with this model: out-of-memory not reached"
    else
        [ $rc -eq 0 ] && grep -q 'refused_status=2 ' "$T/out" && grep -q 'first_session_after=0 ' "$T/out" \
            && grep -Eqi 'device memory|out of memory' "$T/out" \
            && pass "device out of memory: a clear refusal (SHOAL_ST_NOMEM), the other session keeps decoding" \
            || fail "oom: rc=$rc $(cat "$T/out" "$T/err")"
    fi
else
    place AUTO cpu 3 "{$G, \"n-gpu-layers\": 99}"
    [ "$(text)" = "$cpu_text" ] && grep -q 'cannot run on the GPU' "$T/err" && grep -q 'running it on the CPU' "$T/err" \
        && pass "no GPU: n-gpu-layers 99 runs on the CPU and says why on stderr" || fail "ngl 99: $(cat "$T/out" "$T/err")"
    place AUTO cpu 1 "{$G, \"enable-log\": true}"
    grep -q 'compute=5 ' "$T/out" && grep -q 'on cuda' "$T/err" \
        && pass "no GPU: load target GPU is binding: runtime_error, reason on the log" || fail "target gpu: $(cat "$T/out" "$T/err")"
    place GPU cpu 3 "{$G}"
    grep -q 'compute=5 ' "$T/out" && pass "no GPU: --nn-preload ...:GPU is binding: runtime_error" || fail "preload gpu: $(cat "$T/out" "$T/err")"
    printf 'x\n' | "$SHOAL_BIN" actor --nn-preload "default:GGML:GPU:$MODEL" "$SHOAL_GUESTS/bench_llm_actor.wasm" > "$T/out" 2> "$T/err"
    rc=$?
    [ $rc -ne 0 ] && grep -qi 'cuda' "$T/err" && pass "no GPU: token-API actor on a GPU-pinned model fails clearly (exit $rc)" \
        || fail "actor gpu: rc=$rc $(cat "$T/out" "$T/err")"
fi
echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
