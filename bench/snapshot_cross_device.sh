#!/usr/bin/env bash
# snapshot_cross_device.sh — on a GPU machine: an actor snapshot taken by a `shoal actor` process
# running on the CUDA backend restores in a process on the CPU backend and the reverse (and
# CUDA -> CUDA), with identical replies afterwards. Usage: bench/snapshot_cross_device.sh [DIR]
# where DIR holds a CUDA build's `shoal` and `guests/counter_actor.wasm` (default build-snap-dev);
# .deps/wasmtime/lib must be present. Logs in $OUT (default /tmp/shoal-snapshot-cross).
set -uo pipefail
cd "$(dirname "$0")/.."
D=${1:-build-snap-dev}
OUT=${OUT:-/tmp/shoal-snapshot-cross}
mkdir -p "$OUT"
CUDA=${CUDA_HOME:-/usr/local/cuda}
LDP=$PWD/.deps/wasmtime/lib:$CUDA/lib64
if ! ldconfig -p | grep -q 'libjansson.so.4 '; then
    # jansson carried as a Debian package (.devdeps), unpacked aside, as bench/gpu/run_device.sh does.
    for d in .devdeps/libjansson4_*.deb; do dpkg -x "$d" /tmp/sysroot; done
    LDP=$LDP:/tmp/sysroot/usr/lib/x86_64-linux-gnu
fi
export LD_LIBRARY_PATH=$LDP${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
BIN=$D/shoal
G=$D/guests/counter_actor.wasm
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/env.txt"
fails=0
for pair in cuda-cpu cpu-cuda cuda-cuda cpu-cpu; do
    from=${pair%-*} to=${pair#*-}
    snap=$OUT/$from.snap
    # Process 1 on `from`: four messages (one grows memory by 3 MB), a snapshot, two more.
    printf 'alpha\nbig 3000000\nbeta\n:save %s\ngamma\ndelta\n' "$snap" |
        "$BIN" actor --device "$from" "$G" > "$OUT/$pair.p1" 2> "$OUT/$pair.p1.err"
    tail -n 2 "$OUT/$pair.p1" > "$OUT/$pair.want"
    # Process 2 on `to`: restore and send the same two.
    printf 'gamma\ndelta\n' | "$BIN" actor --device "$to" --load "$snap" "$G" > "$OUT/$pair.p2" 2> "$OUT/$pair.p2.err"
    dev=$("$BIN" snapshot inspect "$snap" | grep -o '"device":"[^"]*"')
    if [ -s "$OUT/$pair.want" ] && cmp -s "$OUT/$pair.want" "$OUT/$pair.p2"; then
        echo "ok   $from -> $to: identical replies after restore (snapshot $dev)"
    else
        echo "FAIL $from -> $to"; cat "$OUT/$pair.p1.err" "$OUT/$pair.p2.err"; diff "$OUT/$pair.want" "$OUT/$pair.p2"
        fails=$((fails + 1))
    fi
done
cmp -s "$OUT/cuda-cpu.want" "$OUT/cpu-cuda.want" && echo "ok   CUDA and CPU processes gave the same replies" || { echo "FAIL replies differ by device"; fails=$((fails + 1)); }
"$BIN" snapshot inspect "$OUT/cuda.snap" | tee "$OUT/inspect.txt" | head -12
echo "$((4 + 1 - fails)) passed, $fails failed"
[ $fails = 0 ]
