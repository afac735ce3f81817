#!/usr/bin/env bash
# run_decode_ab.sh — on the GPU machine: decode tokens/s of the default path (fused kernels, CUDA
# graph, PDL) under environment settings side by side, for A/B checks of decode changes:
# CONFIGS is a list of configurations, each a comma-separated list of VAR=VALUE (or "default"),
# run in turn for each of MODELS, PASSES times over. test_cuda_llama runs first on the small
# models of TYPES with the default settings. Same bundle as run_quick.sh. Examples (the numbers in
# bench/RESULTS-cuda-llm.md, runs 23 and 26):
#   CONFIGS="SHOAL_CUDA_ATT_TILED=0 default" bash bench/gpu/run_decode_ab.sh
#   CONFIGS="SHOAL_CUDA_HOST_IO=0 default" PASSES=3 bash bench/gpu/run_decode_ab.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
device_env ab_env.txt
for t in ${TYPES:-f16 q8_0 q4_1}; do
    small_model $t
    SHOAL_CUDA_LLAMA_MODEL=/tmp/m/small_$t.gguf timeout 120 $R/test_cuda_llama > "$OUT/test_$t.log" 2>&1
    echo "test_cuda_llama $t: rc=$? $(grep -E 'PASSED|FAILED' "$OUT/test_$t.log" | tr '\n' ' ')"
done
bench_models
for pass in $(seq "${PASSES:-2}"); do
    for m in ${MODELS:-l1b_f16 l1b_q8_0 smol_q4_1}; do
        for cfg in ${CONFIGS:-default}; do
            settings=()
            [ "$cfg" = default ] || IFS=, read -ra settings <<< "$cfg"
            r=$(env "${settings[@]}" timeout 60 $R/bench_cuda_llama /tmp/m/$m.gguf --gen 128 --prompt 8 \
                --reps ${REPS:-5} --default-only 2>&1 | grep -oE "[0-9.]+ tok/s")
            echo "pass $pass $m $cfg: $r" | tee -a "$OUT/ab.log"
        done
    done
done
