#!/usr/bin/env bash
# run_device.sh — on the GPU machine: build the CUDA backend's test and seed bench with plain
# nvcc/gcc (only the files they need, no CMake, no Wasmtime), run the test (also under
# compute-sanitizer), then the bench twice; logs go to $OUT. Usage: bench/gpu/run_device.sh [max_size]
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/bench/out/gpu}
mkdir -p "$OUT"
MAX=${1:-4096}
B=/tmp/shoal-cuda-build
rm -rf $B && mkdir -p $B
CUDA=${CUDA_HOME:-/usr/local/cuda}
{
    date -u
    nvidia-smi --query-gpu=name,driver_version,memory.total,pcie.link.gen.current,pcie.link.width.current --format=csv
    nvcc --version | tail -2
    uname -r
    ls $CUDA/lib64/libcublas.so* $CUDA/lib64/libcudart.so* 2>&1 | head -4
    for p in cmocka jansson; do pkg-config --exists $p && echo "$p: system" || echo "$p: missing"; done
    command -v clang || echo "clang: missing"
    cmake --version | head -1
} 2>&1 | tee $OUT/env.txt

XCF=
XLD=
if ! pkg-config --exists cmocka; then
    # cmocka carried as Debian packages (.devdeps, see bench/RESULTS-cuda.md), unpacked aside.
    SR=/tmp/sysroot
    for d in .devdeps/*.deb; do dpkg -x "$d" $SR; done
    XCF="-I$SR/usr/include"
    XLD="-L$SR/usr/lib/x86_64-linux-gnu -Wl,-rpath,$SR/usr/lib/x86_64-linux-gnu"
fi
CF="-std=gnu11 -O2 -g -Wall -Wextra -Wshadow -Wno-unused-parameter -Werror -Iinclude -Isrc -I$CUDA/include -DSHOAL_HAVE_CUDA=1 $XCF"
LIBS="-L$CUDA/lib64 -lcublas -lcudart -lm -lpthread -Wl,-rpath,$CUDA/lib64"
build() {
    set -e
    nvcc -std=c++17 -O3 --use_fast_math -lineinfo -arch=sm_90 -Iinclude -Isrc --resource-usage \
        -c src/backend/cuda/cuda_kernels.cu -o $B/kernels.o
    for f in src/core/error.c src/backend/cuda/cuda_backend.c src/backend/cuda/cuda_ranges.c bench/gpu/support.c \
        tests/test_cuda_backend.c bench/gpu/seed_bench.c; do
        gcc $CF -c $f -o $B/$(basename $f .c).o
    done
    COMMON="$B/kernels.o $B/error.o $B/cuda_backend.o $B/cuda_ranges.o $B/support.o"
    g++ -o $B/test_cuda_backend $B/test_cuda_backend.o $COMMON $LIBS $XLD -lcmocka
    g++ -o $B/seed_bench $B/seed_bench.o $COMMON $LIBS
}
(build) > $OUT/build.log 2>&1 || { cat $OUT/build.log; echo "BUILD FAILED"; exit 1; }
echo "== build ok"

$B/test_cuda_backend > $OUT/test.log 2>&1
echo "test rc=$?" | tee -a $OUT/test.log
grep -E "device:|OK|FAIL|SKIP|PASSED|rc=" $OUT/test.log | head -30

timeout 240 compute-sanitizer --tool memcheck $B/test_cuda_backend > $OUT/sanitizer.log 2>&1
echo "sanitizer rc=$?" | tee -a $OUT/sanitizer.log
tail -3 $OUT/sanitizer.log

timeout 240 $B/seed_bench $MAX > $OUT/bench.md 2>&1
echo "bench rc=$?" | tee -a $OUT/bench.md
timeout 120 $B/seed_bench $MAX lat > $OUT/bench2.md 2>&1
echo "bench2 rc=$?" | tee -a $OUT/bench2.md
# The CLI's own benchmark through the Wasm guest, when a build made elsewhere was carried along
# (build-cuda/shoal, build-cuda/guests, .deps/wasmtime/lib).
if [ -x build-cuda/shoal ] && [ -f .deps/wasmtime/lib/libwasmtime.so ]; then
    export LD_LIBRARY_PATH=$PWD/.deps/wasmtime/lib:$CUDA/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export SHOAL_GUESTS=$PWD/build-cuda/guests
    {
        timeout 300 build-cuda/shoal bench zerocopy --device cuda --sizes 128,256,512,1024,2048,4096
        echo "cli bench rc=$?"
        timeout 60 build-cuda/shoal bench zerocopy --device auto --sizes 128 --placements zerocopy --no-rss | head -4
    } > $OUT/cli_bench.txt 2>&1
fi

cat $OUT/bench.md
tail -12 $OUT/bench2.md
[ -f $OUT/cli_bench.txt ] && cat $OUT/cli_bench.txt
