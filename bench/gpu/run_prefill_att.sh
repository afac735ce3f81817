#!/usr/bin/env bash
# run_prefill_att.sh — on the GPU machine: the tiled prefill attention (att_prefill.cu) checked and
# timed in one call.
#   1. test_cuda_llama on small random models with head dimensions 64 and 128 (batched prefill of
#      40 and 300 tokens vs token-by-token decode, GPU vs CPU, the rest of the suite);
#   2. batched prefill tokens/s at 512 and 4096 tokens (bench_cuda_llama --prefill-only) on the
#      SmolLM2 shape and the 1B shape (F16, Q8_0), with the one-block-per-query kernel
#      (SHOAL_CUDA_PREFILL_ATT=rows) and the tiled one alternated, and llama.cpp's llama-bench
#      (when carried) on the same files;
#   3. bench_snapshot --device cuda at 512 and 4096 tokens (restore vs the faster re-prefill);
#   4. compute-sanitizer memcheck and racecheck over a 300-token prefill on both small models.
# Call: bench/gpu/pack_gpurun.sh (here), then on the GPU machine, carrying .gpurun/bundle.tar.xz
# and .devdeps: bash bench/gpu/run_prefill_att.sh. Logs go to $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
device_env env.txt
small_model q8_0
small_hd128_model
bench_models

for m in small_q8_0 small_hd128; do
    echo "== test_cuda_llama $m"
    SHOAL_CUDA_LLAMA_MODEL=/tmp/m/$m.gguf timeout 120 $R/test_cuda_llama 2>&1
    echo "rc=$?"
done > "$OUT/tests.log" 2>&1
grep -E "^==|rc=|PASSED|FAILED|batched|top-1" "$OUT/tests.log"

for m in smol_q4_1 l1b_f16 l1b_q8_0; do
    for n in 512 4096; do
        for k in rows tiled tiled rows; do
            printf '%s pp%s %s: ' $m $n $k
            SHOAL_CUDA_PREFILL_ATT=$k timeout 60 $R/bench_cuda_llama /tmp/m/$m.gguf --prefill-only --prompt $n --reps 3 2>&1 | tail -1
        done
    done
done 2>&1 | tee "$OUT/prefill.log"

if [ -x $R/llama/llama-bench ]; then
    for m in smol_q4_1 l1b_f16 l1b_q8_0; do
        timeout 90 $R/llama/llama-bench -m /tmp/m/$m.gguf -ngl 99 -p 512,4096 -n 0 -r 3 -o md 2>&1 | grep -E "^\|"
    done 2>&1 | tee "$OUT/llamacpp.log"
fi

timeout 150 $R/bench_snapshot --model /tmp/m/smol_q4_1.gguf --device cuda --ctx 512,4096 --reps 3 --threads "$(nproc)" \
    --actor $R/guests/bench_llm_actor.wasm 2>&1 | tee "$OUT/snapshot.log" | grep -vE "^$"

for m in small_q8_0 small_hd128; do
    for tool in memcheck racecheck; do
        timeout 120 compute-sanitizer --tool $tool --error-exitcode 9 $R/bench_cuda_llama /tmp/m/$m.gguf --prefill-only \
            --prompt 300 --reps 1 > /tmp/san.log 2>&1
        echo "$m $tool rc=$? $(grep -E 'ERROR SUMMARY|RACECHECK SUMMARY' /tmp/san.log | head -1)"
        grep -B2 -A12 -m3 -E "^========= (Invalid|Error|Race)" /tmp/san.log
    done
done | tee "$OUT/sanitizer.log"
