#!/usr/bin/env bash
# run_restore.sh — on the GPU machine: the restore checks and timings of issue 6 in one call.
#   1. test_cuda_llama on a small model (its KV-file restore: corrupt and truncated files refused,
#      a good one bit for bit) and tests/test_nn_device.sh (whole actors saved and restored on the
#      GPU, across devices, refusals);
#   2. bench_snapshot --device cuda --actor at 4096 tokens (KV cache and whole actor vs
#      re-prefill), for this bundle's build and, when the bundle carries old/bench_snapshot (a build
#      of an earlier commit: OLD_SNAPSHOT=path bench/gpu/pack_gpurun.sh), for that one as well,
#      alternated REPEAT times so both are compared on one card in one call;
#   3. compute-sanitizer memcheck over a whole-actor save and restore at 512 tokens.
# Call: bench/gpu/pack_gpurun.sh (here), then on the GPU machine, carrying .gpurun/bundle.tar.xz
# and .devdeps: bash bench/gpu/run_restore.sh. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
device_env env.txt
small_model q8_0
oom_model
bench_models

SHOAL_CUDA_LLAMA_MODEL=/tmp/m/small_q8_0.gguf timeout 90 $R/test_cuda_llama > "$OUT/tests.log" 2>&1
echo "test_cuda_llama rc=$?" | tee -a "$OUT/tests.log"
grep -E "PASSED|FAILED|OK \]" "$OUT/tests.log"
SHOAL_TEST_MODEL=/tmp/m/small_q8_0.gguf SHOAL_TEST_OOM_MODEL=/tmp/m/oom_q4_0.gguf \
    timeout 120 bash tests/test_nn_device.sh > "$OUT/nn.log" 2>&1
echo "test_nn_device.sh rc=$?" | tee -a "$OUT/nn.log"
grep -E "FAIL|passed" "$OUT/nn.log"

snap() { # snap BINARY: KV cache and whole actor at 4096 tokens on the GPU
    timeout 120 "$1" --model /tmp/m/smol_q4_1.gguf --device cuda --ctx 4096 --reps 5 --threads "$(nproc)" \
        --actor $R/guests/bench_llm_actor.wasm 2>&1 | grep -E "^4096|^whole|floor|^context"
}
for i in $(seq "${REPEAT:-2}"); do
    if [ -x $R/old/bench_snapshot ]; then
        echo "== old build, round $i"
        snap $R/old/bench_snapshot
    fi
    echo "== this build, round $i"
    snap $R/bench_snapshot
done 2>&1 | tee "$OUT/restore.log"

timeout 150 compute-sanitizer --tool memcheck --error-exitcode 9 $R/bench_snapshot --model /tmp/m/smol_q4_1.gguf \
    --device cuda --ctx 512 --reps 1 --actor $R/guests/bench_llm_actor.wasm > "$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?" | tee -a "$OUT/memcheck.log"
tail -3 "$OUT/memcheck.log"
