#!/usr/bin/env bash
# run_prefill_batch.sh — on the GPU machine: batched prefill tokens/s at 512 and 4096 tokens for
# prefill chunks (n_batch) of 256, 512 and 1024 tokens, on the SmolLM2 shape and the 1B shape (F16,
# Q8_0), each twice, interleaved (bench_cuda_llama --prefill-only --batch B), to choose the default
# chunk. Call: bench/gpu/pack_gpurun.sh (NO_LLAMA=1 will do), then carrying .gpurun/bundle.tar.xz
# and .devdeps: bash bench/gpu/run_prefill_batch.sh. Output in $OUT/batch.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
device_env batch.log
bench_models
for m in smol_q4_1 l1b_f16 l1b_q8_0; do
    for n in 512 4096; do
        for round in 1 2; do
            for b in 256 512 1024; do
                printf '%s pp%s batch %s: ' $m $n $b
                timeout 60 $R/bench_cuda_llama /tmp/m/$m.gguf --prefill-only --prompt $n --batch $b --reps 3 2>&1 | tail -1
            done
        done
    done
done 2>&1 | tee -a "$OUT/batch.log"
