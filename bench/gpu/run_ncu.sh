#!/usr/bin/env bash
# run_ncu.sh — on the GPU machine: Nsight Compute's duration and DRAM throughput of every kernel of
# one decode step through the fused kernels (the default path; bench_cuda_llama's first fused
# variant) of the 1B-shape model (TYPE f16 or q8_0), summed by kernel and grid, to
# see where a step's time goes and which kernel stops short of the memory bandwidth. ncu runs each
# kernel alone (no PDL overlap), so the sum exceeds a real step by the launch gaps PDL hides.
# Same bundle as run_quick.sh. Output in $OUT/ncu-$TYPE.csv and .txt.
set -uo pipefail
cd "$(dirname "$0")/../.."
. bench/gpu/bundle_env.sh
T=${TYPE:-f16}
$R/make_llama_gguf --type $T --sparse --out /tmp/m/l1b_$T.gguf > /dev/null
# the kernels of the fused path only (its first variant, the plain launches): one step (1B: 16 x 4 + 1)
timeout 240 ncu --csv --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed,launch__grid_size,launch__block_size \
    --print-units base --launch-skip ${SKIP:-0} --launch-count ${COUNT:-65} -k "regex:${KERNELS:-mv_rows|rope_attention}" \
    $R/bench_cuda_llama /tmp/m/l1b_$T.gguf --gen 8 --prompt 2 --reps 1 > "$OUT/ncu-$T.csv" 2> "$OUT/ncu-$T.err"
echo "ncu rc=$?"
python3 - "$OUT/ncu-$T.csv" <<'PY' | tee "$OUT/ncu-$T.txt"
import csv, sys, collections, re
# the program's own output comes first: the table starts at ncu's header row
rows = list(csv.reader(open(sys.argv[1])))
start = next(i for i, r in enumerate(rows) if r and r[0] == "ID")
hdr = rows[start]; rows = [r for r in rows[start + 1:] if len(r) == len(hdr)]
ix = {k: hdr.index(k) for k in ("ID", "Kernel Name", "Metric Name", "Metric Value")}
per = collections.defaultdict(dict)
for r in rows:
    per[r[ix["ID"]]]["name"] = r[ix["Kernel Name"]]
    per[r[ix["ID"]]][r[ix["Metric Name"]]] = r[ix["Metric Value"]].replace(",", "")
agg = collections.defaultdict(lambda: [0, 0.0, 0.0])
total = 0.0
for k in per.values():
    name = re.sub(r"\(.*", "", k["name"]).split("::")[-1][:60]
    key = (name + k["name"][k["name"].find("<"):k["name"].find(">") + 1] if "<" in k["name"] else name,
           k.get("launch__grid_size", "?"), k.get("launch__block_size", "?"))
    t = float(k.get("gpu__time_duration.sum", 0)); total += t
    a = agg[key]; a[0] += 1; a[1] += t; a[2] += float(k.get("dram__throughput.avg.pct_of_peak_sustained_elapsed", 0))
print(f"{'kernel':60s} {'grid':>7s} {'block':>5s} {'n':>4s} {'us each':>8s} {'us sum':>8s} {'DRAM%':>6s}")
for key, (n, t, d) in sorted(agg.items(), key=lambda kv: -kv[1][1]):
    print(f"{key[0]:60s} {key[1]:>7s} {key[2]:>5s} {n:4d} {t/n/1e3:8.2f} {t/1e3:8.1f} {d/n:6.1f}")
print(f"total {total/1e3:.1f} us over {len(per)} launches")
PY
