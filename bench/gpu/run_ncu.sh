#!/usr/bin/env bash
# run_ncu.sh — on the GPU machine: Nsight Compute's speed-of-light section for the decode kernels
# of the 1B-shape F16 model (separate matvec kernels, then the fused ones), to see which kernel
# stops short of the memory bandwidth. Same bundle as run_quick.sh. Output in $OUT/ncu.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
$R/make_llama_gguf --type ${TYPE:-f16} --sparse --out /tmp/m/l1b.gguf > /dev/null
for k in ${KERNELS:-matvec_kernel mv_fused attention rope_store}; do
    echo "==== $k" >> "$OUT/ncu.txt"
    timeout 90 ncu --section SpeedOfLight --launch-count ${COUNT:-8} -k "regex:$k" $R/bench_cuda_llama /tmp/m/l1b.gguf \
        --gen 2 --prompt 2 --reps 1 >> "$OUT/ncu.txt" 2>&1
done
grep -E "^====|mv_fused|matvec_kernel|attention|rope|Duration|DRAM Throughput|Memory Throughput|Achieved|Block Size|Grid Size" "$OUT/ncu.txt" | head -150
