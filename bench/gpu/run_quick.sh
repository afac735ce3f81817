#!/usr/bin/env bash
# run_quick.sh — on the GPU machine: the CUDA forward-pass test on small random models and the
# decode/prefill benchmark on the SmolLM2 shape and the Llama 3.2 1B shape (F16, Q8_0), for
# kernel iterations. Same bundle and environment as run_session_device.sh. Logs in $OUT.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/env.txt"
for t in ${TYPES:-q4_1 f16}; do
    small_model $t
    SHOAL_CUDA_LLAMA_MODEL=/tmp/m/small_$t.gguf timeout 60 $R/test_cuda_llama >> "$OUT/tests.log" 2>&1
    echo "test_cuda_llama $t rc=$?" | tee -a "$OUT/tests.log"
done
grep -E "max \|diff\||first difference|FAILED" "$OUT/tests.log"
bench_models
for m in ${MODELS:-smol_q4_1 l1b_f16 l1b_q8_0}; do
    echo "== $m" | tee -a "$OUT/bench.log"
    timeout 60 $R/bench_cuda_llama /tmp/m/$m.gguf --gen 128 --prompt 512 --reps 3 >> "$OUT/bench.log" 2>&1
    echo "rc=$?" >> "$OUT/bench.log"
done
grep -E "^==|tok/s|rc=[1-9]" "$OUT/bench.log"
