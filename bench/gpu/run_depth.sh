#!/usr/bin/env bash
# run_depth.sh — on the GPU machine: decode tokens/s at 0, 1,024 and 3,968 cached positions for the
# SmolLM2 shape and the 1B shape (F16, Q8_0), beside llama-bench -d on the same files when the bundle
# carries it (runs 17 and 20 of bench/RESULTS-cuda-llm.md). CHUNKS="positions,blocks ..." also
# times the attention under SHOAL_CUDA_ATT_CHUNK / SHOAL_CUDA_ATT_SPLITS (run 19); DEPTHS overrides
# the depths. Same bundle as run_quick.sh (bench/gpu/pack_gpurun.sh).
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/depth_env.txt"
bench_models
D=${DEPTHS:-0 1024 3968}
for m in l1b_f16 l1b_q8_0 smol_q4_1; do
    for d in $D; do
        for cfg in ${CHUNKS:-default}; do
            IFS=, read -r chunk splits <<< "$cfg"
            [ "$cfg" = default ] && chunk= && splits=
            r=$(SHOAL_CUDA_ATT_CHUNK=$chunk SHOAL_CUDA_ATT_SPLITS=$splits timeout 90 $R/bench_cuda_llama /tmp/m/$m.gguf \
                --gen 128 --prompt 8 --depth "$d" --reps 3 --default-only 2>&1 | grep -oE "[0-9.]+ tok/s")
            echo "$m depth $d attention $cfg: $r" | tee -a "$OUT/depth.log"
        done
    done
    if [ -x $R/llama/llama-bench ]; then
        timeout 120 $R/llama/llama-bench -m /tmp/m/$m.gguf -ngl 99 -p 0 -n 128 -r 3 -d "$(echo $D | tr ' ' ,)" -o md 2>&1 |
            grep tg128 | tee -a "$OUT/depth.log"
    fi
done
