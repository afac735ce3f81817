#!/usr/bin/env bash
# run_smollm2_device.sh — the second of two warm calls that bring the real SmolLM2-135M file to the
# GPU machine (bench/gpu/smollm2_parts.sh): joins it, then runs on the GPU what needs its real
# weights: test_cuda_llama against the float64 fixture (and 64 greedy steps vs the CPU),
# tests/test_nn_device.sh (Paris answers through Wasm guests, snapshots across devices),
# bench_cuda_llama and bench_snapshot on the file itself, and llama-bench on it when the bundle
# carries llama.cpp. Call (carrying .gpurun/smollm2.part2, $R/bundle.tar.xz and .devdeps):
# R=.gpurun-small bash bench/gpu/run_smollm2_device.sh, or R=/tmp/stash after stash-bundle.
set -uo pipefail
cd "$(dirname "$0")/../.."
bash bench/gpu/smollm2_parts.sh join || exit 1
. bench/gpu/bundle_env.sh
M=$PWD/.deps/models/SmolLM2-135M-Instruct.Q4_1.gguf
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/smol_env.txt"
run() { # run LOG SECONDS CMD...
    local log=$1 secs=$2
    shift 2
    echo "== $* (limit ${secs}s)" >> "$OUT/$log"
    timeout "$secs" "$@" >> "$OUT/$log" 2>&1
    echo "rc=$?" | tee -a "$OUT/$log"
}
run smol_tests.log 120 $R/test_cuda_llama
grep -E "fixture|greedy|max \|diff\||PASSED|FAILED|SKIP" "$OUT/smol_tests.log"
run smol_nn.log 150 bash tests/test_nn_device.sh
grep -E "ok:|FAIL|passed|failed" "$OUT/smol_nn.log" | tail -30
run smol_bench.log 60 $R/bench_cuda_llama "$M" --gen 128 --prompt 512 --reps 3
grep -E "tok/s" "$OUT/smol_bench.log"
if [ -x $R/llama/llama-bench ]; then # the same file in llama.cpp (a bundle that carries it)
    run smol_llamacpp.log 60 $R/llama/llama-bench -m "$M" -ngl 99 -p 512 -n 128 -r 3 -o md
    grep -E "tg128|pp512" "$OUT/smol_llamacpp.log"
fi
run smol_snapshot.log 90 $R/bench_snapshot --model "$M" --device cuda --cross --ctx 24,512,4096 --reps 3 --threads 16 \
    --actor $R/guests/bench_llm_actor.wasm
cat "$OUT/smol_snapshot.log"
