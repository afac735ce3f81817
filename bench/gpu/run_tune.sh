#!/usr/bin/env bash
# run_tune.sh — on the GPU machine: decode tokens/s of the default path (fused kernels, CUDA graph,
# PDL) under the launch overrides SHOAL_CUDA_MV_WARPS, SHOAL_CUDA_MV_BLOCKS_PER_SM and
# SHOAL_CUDA_MV_ROWS (CONFIGS="warps,blocks,rows ...", 0 = the default), for the
# SmolLM2 shape and the 1B shape (F16, Q8_0), and llama-bench on the same files when the bundle
# carries it: the numbers that chose the launch defaults. Same bundle as run_quick.sh.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/tune_env.txt"
bench_models
for m in smol_q4_1 l1b_f16 l1b_q8_0; do
    for cfg in ${CONFIGS:-0,0,0 2,0,0 4,0,0 8,0,0 0,2,0 0,4,0 0,0,8}; do # warps,blocks_per_sm,rows (0: default)
        IFS=, read -r w b rows <<< "$cfg"
        r=$(SHOAL_CUDA_MV_WARPS=$w SHOAL_CUDA_MV_BLOCKS_PER_SM=$b SHOAL_CUDA_MV_ROWS=${rows:-0} timeout 60 $R/bench_cuda_llama /tmp/m/$m.gguf \
            --gen 128 --prompt 8 --reps 5 --default-only 2>&1 | grep -oE "[0-9.]+ tok/s")
        echo "$m warps=$w blocks_per_sm=$b rows=${rows:-0}: $r" | tee -a "$OUT/tune.log"
    done
    if [ -x $R/llama/llama-bench ]; then
        timeout 60 $R/llama/llama-bench -m /tmp/m/$m.gguf -ngl 99 -p 0 -n 128 -r 5 -o md 2>&1 | grep tg128 | tee -a "$OUT/tune.log"
    fi
done
