#!/usr/bin/env bash
# run_llm_vs_llamacpp.sh — on the GPU machine: llama.cpp (built here for sm_90 from the slim source
# tarball, offline, ~6-8 min on 16 cores) beside Shoal's CUDA forward pass on the Llama 3.2 1B
# shape (random weights from tools/make_llama_gguf, Q8_0 and F16): decode tg64 and prefill pp64.
# NOT YET RUN (written for the next session). Carry R (default .gpurun: bench_cuda_llama,
# make_llama_gguf, lib/libcudart.so.13, llama.cpp-*-slim.tar.gz). Logs in $OUT.
# Usage: bench/gpu/run_llm_vs_llamacpp.sh [--skip-build]
set -uo pipefail
cd "$(dirname "$0")/../.."
R=${R:-.gpurun}
OUT=${OUT:-/tmp/shoal-llm-vs-llamacpp}
mkdir -p "$OUT"
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$R/lib
LB=/tmp/llama-out/build-cuda/bin
if [ "${1:-}" != --skip-build ]; then
    LLAMA_OUT=/tmp/llama-out LLAMA_SRC_TARBALL=$(ls $PWD/$R/llama.cpp-*-slim.tar.gz | head -1) JOBS=16 NICE=0 \
        timeout 480 scripts/reference/build_llamacpp.sh --cuda --offline > "$OUT/llama_build.log" 2>&1 \
        || { tail -20 "$OUT/llama_build.log"; exit 1; }
fi
for t in q8_0 f16; do
    $R/make_llama_gguf --type $t --out /tmp/l1b_$t.gguf
    echo "== $t llama.cpp (-ngl 99, F16 KV, flash attention default)" | tee -a "$OUT/cmp.log"
    timeout 120 $LB/llama-bench -m /tmp/l1b_$t.gguf -ngl 99 -p 64 -n 64 -r 5 2>&1 | tee -a "$OUT/cmp.log"
    echo "== $t shoal-cuda" | tee -a "$OUT/cmp.log"
    timeout 120 $R/bench_cuda_llama /tmp/l1b_$t.gguf --gen 64 --prompt 64 --reps 5 2>&1 | tee -a "$OUT/cmp.log"
    rm -f /tmp/l1b_$t.gguf
done
