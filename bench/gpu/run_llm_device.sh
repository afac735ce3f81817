#!/usr/bin/env bash
# run_llm_device.sh — on the GPU machine, in one call: the CUDA forward pass's test on small random
# models of every weight type (against the CPU pass, greedy 64, mapped KV, snapshot, OOM), then the
# decode/prefill benchmark on the Llama 3.2 1B shape (Q8_0, F16), then a short memcheck. Binaries
# built here are carried in R (default .gpurun: test_cuda_llama, bench_cuda_llama, make_llama_gguf,
# lib/libcudart.so.13); cmocka comes from .devdeps. Logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
R=${R:-.gpurun}
OUT=${OUT:-/tmp/shoal-llm-gpu}
mkdir -p "$OUT"
for d in .devdeps/libcmocka0_*.deb; do dpkg -x "$d" /tmp/sysroot; done
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$PWD/$R/lib:/tmp/sysroot/usr/lib/x86_64-linux-gnu
export SHOAL_BUILD_DIR=$PWD/$R SHOAL_SOURCE_DIR=$PWD SHOAL_DEPS=$PWD/.deps
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/env.txt"
SMALL="--layers 4 --dim 512 --ffn 1536 --heads 8 --kv-heads 2 --vocab 4096 --seed 5"
for t in q8_0 f16 bf16 q4_0 q4_1; do
    $R/make_llama_gguf $SMALL --type $t --out /tmp/small_$t.gguf > /dev/null
    echo "== test_cuda_llama on small $t" | tee -a "$OUT/tests.log"
    SHOAL_CUDA_LLAMA_MODEL=/tmp/small_$t.gguf timeout 60 $R/test_cuda_llama >> "$OUT/tests.log" 2>&1
    echo "rc=$?" | tee -a "$OUT/tests.log"
done
grep -E "max \|diff\||greedy:|OOM:|PASSED|FAILED|SKIP|rc=|==|error|Error" "$OUT/tests.log" | head -60
for t in q8_0 f16; do
    timeout 60 $R/make_llama_gguf --type $t --out /tmp/llama1b_$t.gguf
    echo "== bench 1B $t" | tee -a "$OUT/bench.log"
    timeout 60 $R/bench_cuda_llama /tmp/llama1b_$t.gguf --gen 64 --prompt 64 --reps 3 2>&1 | tee -a "$OUT/bench.log"
    rm -f /tmp/llama1b_$t.gguf
done
echo "== bench 1B-shape q8_0, 2 layers, depth 2048 (device vs mapped KV)" | tee -a "$OUT/bench.log"
$R/make_llama_gguf --type q8_0 --layers 2 --out /tmp/l2.gguf > /dev/null
timeout 40 $R/bench_cuda_llama /tmp/l2.gguf --gen 32 --prompt 8 --depth 2048 --reps 1 2>&1 | tee -a "$OUT/bench.log"
echo "== memcheck" | tee -a "$OUT/memcheck.log"
timeout 40 compute-sanitizer --tool memcheck $R/bench_cuda_llama /tmp/small_q4_1.gguf --gen 4 --prompt 4 --reps 1 \
    >> "$OUT/memcheck.log" 2>&1
tail -5 "$OUT/memcheck.log"
