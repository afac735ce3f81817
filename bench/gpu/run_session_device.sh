#!/usr/bin/env bash
# run_session_device.sh — one call on the GPU machine that checks and measures the GPU LLM path
# end to end, under a time budget (steps past it are skipped and say so):
#   1. test_cuda_llama on small random models (q8_0, q4_1, q8_0 with head dimension 128, and q8_0
#      with the general decode attention, SHOAL_CUDA_ATT_TILED=0): GPU vs CPU, batched prefill vs
#      token by token, fused decode kernels vs separate (plain and CUDA graph), graph, mapped KV, OOM;
#   2. bench_cuda_llama on a SmolLM2-shaped random Q4_1 model and the Llama 3.2 1B shape (F16, Q8_0),
#      and their batched prefill of 4096 tokens;
#   3. llama.cpp's llama-bench (built for sm_90 on the CPU machine, carried) on the same files;
#   4. tests/test_nn_device.sh with --device cuda (wasi-nn / token API / snapshots / device OOM);
#   5. bench_snapshot --device cuda --cross --actor (restore vs re-prefill at 24/512/4096, GPU<->CPU);
#   6. bench_boundary --device cuda --graph (Wasm guest vs native decode loop);
#   7. compute-sanitizer memcheck over a short run of every path, and racecheck over the decode.
# Binaries built here travel as R/bundle.tar.xz (bench/gpu/pack_gpurun.sh; R defaults to .gpurun);
# cmocka and jansson come from .devdeps. Logs go to $OUT. Call:
#   bench/gpu/pack_gpurun.sh   (here), then on the GPU machine, carrying .gpurun and .devdeps:
#   bash bench/gpu/run_session_device.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
BUDGET=${BUDGET:-280}
T0=$(date +%s)
left() { echo $((BUDGET - ($(date +%s) - T0))); }
step() { # step NAME LOG SECONDS CMD...: runs CMD with a timeout when the budget allows
    local name=$1 log=$2 secs=$3
    shift 3
    if [ "$(left)" -lt 10 ]; then
        echo "== $name: SKIPPED (budget spent)" | tee -a "$OUT/$log"
        return
    fi
    [ "$secs" -gt "$(left)" ] && secs=$(left)
    echo "== $name (t=$(( $(date +%s) - T0 ))s, limit ${secs}s)" | tee -a "$OUT/$log"
    timeout "$secs" "$@" >> "$OUT/$log" 2>&1
    echo "rc=$?" | tee -a "$OUT/$log"
}
. bench/gpu/bundle_env.sh
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader; nproc; uname -r; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
step "bench_readbw" env.txt 30 $R/bench_readbw
grep -E "read|copy" "$OUT/env.txt"

small_model q8_0
small_model q4_1
small_hd128_model
bench_models
oom_model
ls -la /tmp/m | tee -a "$OUT/env.txt"
echo "models ready at t=$(( $(date +%s) - T0 ))s"

for t in q8_0 q4_1 hd128; do
    SHOAL_CUDA_LLAMA_MODEL=/tmp/m/small_$t.gguf step "test_cuda_llama small $t" tests.log 60 $R/test_cuda_llama
done
SHOAL_CUDA_ATT_TILED=0 SHOAL_CUDA_LLAMA_MODEL=/tmp/m/small_q8_0.gguf \
    step "test_cuda_llama small q8_0, general attention" tests.log 60 $R/test_cuda_llama
grep -E "^==|rc=|PASSED|FAILED|fused|GPU vs CPU" "$OUT/tests.log"

for m in smol_q4_1 l1b_f16 l1b_q8_0; do
    step "bench_cuda_llama $m" bench.log 45 $R/bench_cuda_llama /tmp/m/$m.gguf --gen 128 --prompt 512 --reps 3
done
for m in smol_q4_1 l1b_f16 l1b_q8_0; do
    step "prefill 4096 $m" bench.log 30 $R/bench_cuda_llama /tmp/m/$m.gguf --prefill-only --prompt 4096 --reps 3
done
grep -E "^==|tok/s|bandwidth|rc=" "$OUT/bench.log"

if [ -x $R/llama/llama-bench ]; then
    for m in smol_q4_1 l1b_f16 l1b_q8_0; do
        step "llama-bench $m" llamacpp.log 45 $R/llama/llama-bench -m /tmp/m/$m.gguf -ngl 99 -p 512,4096 -n 128 -r 3 -o md
    done
    cat "$OUT/llamacpp.log"
else
    echo "no llama-bench carried" | tee "$OUT/llamacpp.log"
fi

SHOAL_TEST_MODEL=/tmp/m/small_q8_0.gguf SHOAL_TEST_OOM_MODEL=/tmp/m/oom_q4_0.gguf \
    step "test_nn_device.sh" nn.log 60 bash tests/test_nn_device.sh
grep -E "ok:|FAIL|note|passed|rc=|opened" "$OUT/nn.log"

step "bench_snapshot cuda" snapshot.log 60 $R/bench_snapshot --model /tmp/m/smol_q4_1.gguf --device cuda --cross \
    --ctx 24,512,4096 --reps 3 --threads 16 --actor $R/guests/bench_llm_actor.wasm
step "bench_boundary cuda" snapshot.log 30 $R/bench_boundary $R/guests/bench_llm_actor.wasm --model /tmp/m/smol_q4_1.gguf \
    --device cuda --graph --tokens 128 --reps 5
cat "$OUT/snapshot.log"

step "memcheck" memcheck.log 45 compute-sanitizer --tool memcheck --error-exitcode 9 $R/bench_cuda_llama \
    /tmp/m/small_q4_1.gguf --gen 4 --prompt 40 --reps 1
step "racecheck" memcheck.log 45 compute-sanitizer --tool racecheck --error-exitcode 9 $R/bench_cuda_llama \
    /tmp/m/small_q4_1.gguf --gen 4 --prompt 40 --reps 1 --default-only
grep -E "^==|ERROR SUMMARY|RACECHECK SUMMARY|rc=" "$OUT/memcheck.log"
echo "done at t=$(( $(date +%s) - T0 ))s"
