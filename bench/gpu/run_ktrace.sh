#!/usr/bin/env bash
# run_ktrace.sh — on the GPU machine: a timeline of graph-replayed decode steps of the 1B shape
# (TYPE f16 or q8_0; bench_cuda_llama --default-only) from the CUPTI tracer bench/gpu/ktrace.c
# (this machine has no Nsight Systems), and, for one step in the middle of the run, each kernel's
# start and end relative to the step and how it stands to its predecessor's end (negative:
# overlapped through programmatic dependent launch; positive: the GPU waited). Summed per launch
# class, the "own end minus the previous end" column is what each class adds to a step.
# Call: bench/gpu/pack_gpurun.sh (here), then, carrying .gpurun/bundle.tar.xz and .devdeps,
# bash bench/gpu/run_ktrace.sh. Output in $OUT/ktrace-$TYPE.txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
device_env env.txt
T=${TYPE:-f16}
[ -f $R/ktrace.so ] || { echo "the bundle has no ktrace.so (no CUPTI where it was packed)"; exit 1; }
$R/make_llama_gguf --type $T --sparse --out /tmp/m/l1b_$T.gguf > /dev/null
$R/bench_cuda_llama /tmp/m/l1b_$T.gguf --default-only --gen ${GEN:-32} --prompt 8 --reps 1 | tail -1
CUDA_INJECTION64_PATH=$R/ktrace.so KTRACE_OUT=/tmp/kt.txt \
    $R/bench_cuda_llama /tmp/m/l1b_$T.gguf --default-only --gen ${GEN:-32} --prompt 8 --reps 1 | tail -1
echo "traced kernels: $(wc -l < /tmp/kt.txt)"
python3 - /tmp/kt.txt <<'PY' | tee "$OUT/ktrace-$T.txt"
import re, sys, collections
def label(name, grid):
    m = re.search(r"mv_rows_kernelILi(\d+)ELb(\d)ELi(\d+)ELi(\d+)", name)
    if m:
        kind = {"0": "mv", "1": "mv+=", "2": "gate/up"}[m.group(3)]
        return f"{kind}{' norm' if m.group(2) == '1' else ''} g{grid}"
    m = re.search(r"\d+([a-z_]+_kernel)[EI]", name)  # I: a template's arguments follow
    return (m.group(1) if m else name[:30]) + f" g{grid}"
ev = []
for line in open(sys.argv[1]):
    s, e, g, n = line.split(" ", 3)
    ev.append((int(s), int(e), label(n.strip(), g)))
ev.sort()
ends = [i for i, x in enumerate(ev) if "argmax" in x[2]]
print(f"{len(ev)} kernels, {len(ends)} argmax")
if len(ends) < 6:
    sys.exit(0)
# the steps of the last half of the run: per class, mean of (own end - previous kernel's end)
steps = [(ends[k - 1] + 1, ends[k]) for k in range(len(ends) // 2, len(ends))]
agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
step_us = []
for a, b in steps:
    prev_end = ev[a - 1][1]
    step_us.append((ev[b][1] - prev_end) / 1e3)
    for s, e, n in ev[a:b + 1]:
        x = agg[re.sub(r" g\d+$", "", n) if n.startswith(("mv", "gate")) else n]
        x[0] += 1; x[1] += (e - s) / 1e3; x[2] += (e - prev_end) / 1e3
        prev_end = max(prev_end, e)
print(f"steps {len(steps)}: mean {sum(step_us) / len(step_us):.1f} us (argmax end to argmax end)")
print(f"{'class':28s} {'per step':>8s} {'mean dur':>9s} {'adds / step':>12s}")
for n, (c, d, add) in sorted(agg.items(), key=lambda kv: -kv[1][2]):
    k = c / len(steps)
    print(f"{n[:28]:28s} {k:8.0f} {d / c:9.2f} {add / len(steps):12.1f}")
a, b = steps[len(steps) // 2]
t0 = ev[a - 1][1]
print(f"\none step, relative to the previous argmax's end:")
print(f"{'kernel':28s} {'start':>8s} {'end':>8s} {'dur':>7s} {'start-prev end':>15s}")
prev_end = t0
for s, e, n in ev[a:b + 1]:
    print(f"{n[:28]:28s} {(s - t0) / 1e3:8.2f} {(e - t0) / 1e3:8.2f} {(e - s) / 1e3:7.2f} {(s - prev_end) / 1e3:15.2f}")
    prev_end = e
PY
