#!/usr/bin/env bash
# llm_cpu.sh — Shoal vs llama.cpp on the CPU, same GGUF, same thread count, in one run: prefill
# (pp, one batch of N prompt tokens) and decode (tg, N single-token steps) tokens/s and the ratio.
#
# Usage: bench/llm_cpu.sh [THREADS] [ROUNDS]           (defaults: 2 threads, 5 rounds)
# Environment: BUILD (default build-llama; must contain bench_llm_cpu), SHOAL_MODEL (default the
#   SmolLM2 Q4_1 GGUF), LLAMA_BIN (default .deps/llama.cpp/build-cpu/bin), PROMPT (128), GEN (64),
#   PLANES (Shoal's activation planes, default 2 = the accuracy-tested configuration), DEPTH
#   (default 0: tokens already in the cache before each timed test, llama-bench -d).
# The machine may be shared: each round runs Shoal then llama-bench back to back (3 repetitions
# each), and the medians over rounds are reported, with min..max.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
THREADS=${1:-${THREADS:-2}}
ROUNDS=${2:-${ROUNDS:-5}}
BUILD=${BUILD:-$ROOT/build-llama}
MODEL=${SHOAL_MODEL:-$ROOT/.deps/models/SmolLM2-135M-Instruct.Q4_1.gguf}
LBIN=${LLAMA_BIN:-$ROOT/.deps/llama.cpp/build-cpu/bin}
PROMPT=${PROMPT:-128}
GEN=${GEN:-64}
PLANES=${PLANES:-2}
DEPTH=${DEPTH:-0}
SB="$BUILD/bench_llm_cpu"
[ -x "$SB" ] || { echo "llm_cpu: $SB missing: cmake --build $BUILD --target bench_llm_cpu" >&2; exit 1; }
[ -f "$MODEL" ] || { echo "llm_cpu: model $MODEL missing: run scripts/setup.sh" >&2; exit 1; }
HAVE_LLAMA=1
[ -x "$LBIN/llama-bench" ] || { HAVE_LLAMA=0; echo "llm_cpu: $LBIN/llama-bench missing (scripts/reference/build_llamacpp.sh): Shoal only" >&2; }

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "model: $(basename "$MODEL"); threads=$THREADS; pp$PROMPT, tg$GEN, depth $DEPTH; $ROUNDS rounds"
for r in $(seq 1 "$ROUNDS"); do
  "$SB" "$MODEL" --threads "$THREADS" --prompt "$PROMPT" --gen "$GEN" --reps 3 --planes "$PLANES" --depth "$DEPTH" \
    | grep '^{' >>"$OUT/shoal.jsonl"
  if [ "$HAVE_LLAMA" = 1 ]; then
    "$LBIN/llama-bench" -m "$MODEL" -t "$THREADS" -p "$PROMPT" -n "$GEN" -d "$DEPTH" -r 3 -o jsonl 2>>"$OUT/llama.log" \
      | grep '^{' >>"$OUT/llama.jsonl" || { tail -5 "$OUT/llama.log" >&2; echo "llm_cpu: llama-bench failed" >&2; exit 1; }
  fi
done

python3 - "$OUT" "$PROMPT" "$GEN" "$THREADS" <<'EOF'
import json, os, statistics, sys
out, pp_n, tg_n, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def rows(name):
    p = os.path.join(out, name)
    return [json.loads(l) for l in open(p)] if os.path.exists(p) else []
sh = rows('shoal.jsonl')
s_pp = [r['pp_tps'] for r in sh]
s_tg = [r['tg_tps'] for r in sh]
ll = rows('llama.jsonl')
l_pp = [r['avg_ts'] for r in ll if r['n_prompt'] == pp_n and r['n_gen'] == 0]
l_tg = [r['avg_ts'] for r in ll if r['n_gen'] == tg_n and r['n_prompt'] == 0]
def fmt(v):
    return f"{statistics.median(v):8.1f} tok/s (min {min(v):.1f} .. max {max(v):.1f}, n={len(v)})"
extra = f"isa={sh[0]['isa']}, act_planes={sh[0]['act_planes']}, validated={sh[0]['validated']}" if sh else ""
print(f"shoal     pp{pp_n} threads={threads} {fmt(s_pp)}")
print(f"shoal     tg{tg_n}  threads={threads} {fmt(s_tg)}   [{extra}]")
if ll:
    print(f"llama.cpp pp{pp_n} threads={threads} {fmt(l_pp)}")
    print(f"llama.cpp tg{tg_n}  threads={threads} {fmt(l_tg)}   [build {ll[0].get('build_commit', '?')}]")
    print(f"ratio shoal/llama.cpp: prefill {statistics.median(s_pp) / statistics.median(l_pp):.2f}x, "
          f"decode {statistics.median(s_tg) / statistics.median(l_tg):.2f}x")
EOF
