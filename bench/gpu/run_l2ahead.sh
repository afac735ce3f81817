#!/usr/bin/env bash
# run_l2ahead.sh — on the GPU machine: decode tokens/s of the default path with the output
# projection fetching gate/up's weights into L2 ahead of them, SHOAL_CUDA_L2_AHEAD_KB of each
# matrix past the rows gate/up loads itself (CONFIGS="0 4096 ...", 0: none; 4096 is the default),
# in PASSES alternating passes, for MODELS; first test_cuda_llama on the small models with the
# default. The numbers behind the default (bench/RESULTS-cuda-llm.md, run 23). Same bundle as
# run_quick.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
device_env l2ahead_env.txt
for t in ${TYPES:-f16 q8_0 q4_1}; do
    $R/make_llama_gguf $SMALL --type $t --out /tmp/m/small_$t.gguf > /dev/null
    SHOAL_CUDA_LLAMA_MODEL=/tmp/m/small_$t.gguf timeout 120 $R/test_cuda_llama > "$OUT/test_$t.log" 2>&1
    echo "test_cuda_llama $t: rc=$? $(grep -E 'PASSED|FAILED' "$OUT/test_$t.log" | tr '\n' ' ')"
done
bench_models
for pass in $(seq "${PASSES:-2}"); do
    for m in ${MODELS:-l1b_f16 l1b_q8_0 smol_q4_1}; do
        for kb in ${CONFIGS:-0 4096}; do
            r=$(SHOAL_CUDA_L2_AHEAD_KB=$kb timeout 60 $R/bench_cuda_llama /tmp/m/$m.gguf --gen 128 --prompt 8 \
                --reps ${REPS:-5} --default-only 2>&1 | grep -oE "[0-9.]+ tok/s")
            echo "pass $pass $m ahead_kb=$kb: $r" | tee -a "$OUT/l2ahead.log"
        done
    done
done
