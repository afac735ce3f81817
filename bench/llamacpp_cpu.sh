#!/usr/bin/env bash
# llamacpp_cpu.sh — llama.cpp baseline throughput (llama-bench) on the SmolLM2 model: prefill of
# 64 and 128 tokens and decode of 64 tokens, in tokens/s, for Shoal's numbers to stand beside.
#
# Usage: bench/llamacpp_cpu.sh [THREADS] [REPS]       (defaults: 2 threads, 5 repetitions)
# Environment: LLAMA_BIN (default .deps/llama.cpp/build-cpu/bin; point at build-cuda/bin and set
#              NGL=99 for the GPU build), SHOAL_MODEL (default the SmolLM2 Q4_1 GGUF), NGL (default 0).
# Prints one line per test: "llamacpp <test> threads=<t> <mean> ± <stddev> tok/s (best <max>)" (the
# best repetition is the figure least disturbed by other load on a shared machine), and keeps
# llama-bench's raw JSONL in bench/out/llamacpp_cpu.jsonl.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
THREADS=${1:-${THREADS:-2}}
REPS=${2:-${REPS:-5}}
BIN=${LLAMA_BIN:-$ROOT/.deps/llama.cpp/build-cpu/bin}
MODEL=${SHOAL_MODEL:-$ROOT/.deps/models/SmolLM2-135M-Instruct.Q4_1.gguf}
NGL=${NGL:-0}
[ -x "$BIN/llama-bench" ] || { echo "llamacpp_cpu: $BIN/llama-bench missing: run scripts/reference/build_llamacpp.sh" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "llamacpp_cpu: model $MODEL missing: run scripts/setup.sh" >&2; exit 1; }
mkdir -p "$ROOT/bench/out"
# Other work on the machine skews ggml's spinning thread pool badly: say so next to the numbers.
read -r LOAD _ </proc/loadavg
[ "$NGL" != 0 ] || awk -v l="$LOAD" -v n="$(nproc)" -v t="$THREADS" 'BEGIN { if (l + t > n + 1)
  printf "llamacpp_cpu: warning: load average %s on %d cores before the run; numbers will be low and noisy\n", l, n }' >&2
RAW="$ROOT/bench/out/llamacpp_cpu.jsonl"

"$BIN/llama-bench" -m "$MODEL" -t "$THREADS" -p 64,128 -n 64 -r "$REPS" -ngl "$NGL" -o jsonl >"$RAW" 2>"$RAW.log" \
  || { tail -20 "$RAW.log" >&2; echo "llamacpp_cpu: llama-bench failed" >&2; exit 1; }

python3 - "$RAW" <<'EOF'
import json, sys
for line in open(sys.argv[1]):
    line = line.strip()
    if not line.startswith('{'):
        continue
    r = json.loads(line)
    test = f"pp{r['n_prompt']}" if r['n_prompt'] else f"tg{r['n_gen']}"
    best = max(r.get('samples_ts') or [r['avg_ts']])
    print(f"llamacpp {test:6s} threads={r['n_threads']} {r['avg_ts']:9.1f} ± {r['stddev_ts']:.1f} tok/s (best {best:.1f})"
          f"  ({r.get('cpu_info', '').strip()}; {r.get('gpu_info', '') or 'no GPU'}; build {r.get('build_commit', '?')})")
EOF
