#!/usr/bin/env bash
# pack_gpurun.sh — on the CPU machine: packs what bench/gpu/run_session_device.sh needs into one
# xz tarball, .gpurun/bundle.tar.xz (the GPU machine takes at most 64 MiB of work tree a call and
# has no network): the CUDA build's binaries and guests, Wasmtime's library and, when
# scripts/reference/build_llamacpp.sh --cuda has been run, llama-bench with its libraries (NO_LLAMA=1
# leaves them out: a small bundle for kernel iterations), and OLD_SNAPSHOT's binary when set.
# Carry .gpurun/bundle.tar.xz and .devdeps.
set -euo pipefail
cd "$(dirname "$0")/../.."
B=${BUILD:-build}
S=$(mktemp -d)
trap 'rm -rf "$S"' EXIT
mkdir -p "$S/guests" "$S/lib" .gpurun
for f in shoal test_cuda_backend test_cuda_llama bench_cuda_llama bench_snapshot bench_boundary bench_readbw bench_hostio make_llama_gguf; do
    strip -o "$S/$f" "$B/$f"
done
cp "$B"/guests/*.wasm "$S/guests/"
# OLD_SNAPSHOT: a bench_snapshot built from an earlier commit, for side-by-side runs (run_restore.sh)
if [ -n "${OLD_SNAPSHOT:-}" ]; then
    mkdir -p "$S/old"
    strip -o "$S/old/bench_snapshot" "$OLD_SNAPSHOT"
fi
cp .deps/wasmtime/lib/libwasmtime.so "$S/lib/"
# the kernel-timeline tracer (bench/gpu/ktrace.c) and the CUPTI it loads, when the toolkit has it
CUPTI=$(ls /usr/local/cuda/lib64/libcupti.so.* /usr/local/cuda/lib/libcupti.so.* /usr/local/cuda/extras/CUPTI/lib64/libcupti.so.* 2> /dev/null | head -1 || true)
if [ -n "$CUPTI" ]; then
    gcc -O2 -shared -fPIC -I/usr/local/cuda/include bench/gpu/ktrace.c -L"$(dirname "$CUPTI")" -lcupti -o "$S/ktrace.so"
    cp -L "$CUPTI" "$S/lib/"
fi
L=.deps/llama.cpp/build-cuda/bin
if [ -x "$L/llama-bench" ] && [ -z "${NO_LLAMA:-}" ]; then
    mkdir -p "$S/llama"
    strip -o "$S/llama/llama-bench" "$L/llama-bench"
    cp -P "$L"/lib*.so* "$S/llama/" # the SONAME links stay links inside the tarball
    for so in "$S"/llama/lib*.so*; do [ -L "$so" ] || strip "$so" 2> /dev/null || true; done
fi
tar -C "$S" -cf - . | xz -T2 -6 > .gpurun/bundle.tar.xz
# The GPU image lacks cmocka and jansson: their Debian packages travel beside the bundle and are
# unpacked there with dpkg -x (bench/gpu/bundle_env.sh).
if ! ls .devdeps/libcmocka0_*.deb .devdeps/libjansson4_*.deb > /dev/null 2>&1; then
    mkdir -p .devdeps
    (cd .devdeps && apt-get download libcmocka0 libjansson4 > /dev/null) ||
        { echo "pack_gpurun: apt-get download of libcmocka0 and libjansson4 failed" >&2; exit 1; }
fi
du -h .gpurun/bundle.tar.xz
