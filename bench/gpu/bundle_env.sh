# bundle_env.sh — sourced by the GPU-machine scripts: unpacks the carried bundle
# (bench/gpu/pack_gpurun.sh: binaries, guests, lib/libwasmtime.so, llama/) and cmocka/jansson from
# .devdeps, then points R at the binaries and sets the library path and the test environment;
# bench_models writes the benchmarks' models.
# Expects R (default .gpurun, relative to the repository root) and OUT.
R=${R:-.gpurun}
OUT=${OUT:-/tmp/shoal-gpu}
mkdir -p "$OUT" /tmp/sr /tmp/m /tmp/b
for d in .devdeps/*.deb; do dpkg -x "$d" /tmp/sr; done
if [ -f "$R/bundle.tar.xz" ]; then
    # the image may lack xz; Python's tarfile reads it too
    tar -xJf "$R/bundle.tar.xz" -C /tmp/b 2> /dev/null ||
        python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter="tar")' \
            "$R/bundle.tar.xz" /tmp/b
    R=/tmp/b
else
    R=$PWD/$R
fi
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/tmp/sr/usr/lib/x86_64-linux-gnu:$R/lib:$R/llama
export SHOAL_BUILD_DIR=$R SHOAL_SOURCE_DIR=$PWD SHOAL_DEPS=$PWD/.deps SHOAL_BIN=$R/shoal SHOAL_GUESTS=$R/guests

# The small random model of the GPU tests (4 layers, head dimension 64): make_llama_gguf $SMALL.
SMALL="--layers 4 --dim 512 --ffn 1536 --heads 8 --kv-heads 2 --vocab 4096 --seed 5"

# That model in weight type $1, written to /tmp/m/small_$1.gguf.
small_model() {
    "$R/make_llama_gguf" $SMALL --type "$1" --out "/tmp/m/small_$1.gguf" > /dev/null
}

# A small model with head dimension 128 (4 heads of 512), /tmp/m/small_hd128.gguf: the decode
# attention's tiles of 64 positions and the prefill's 128-wide tiles.
small_hd128_model() {
    "$R/make_llama_gguf" --layers 4 --dim 512 --ffn 1536 --heads 4 --kv-heads 2 --vocab 4096 --seed 6 --type q8_0 \
        --out /tmp/m/small_hd128.gguf > /dev/null
}

# The out-of-memory model of tests/test_nn_device.sh (SHOAL_TEST_OOM_MODEL): zero Q4_0 weights and a
# 1 MiB KV row, so a few sessions of 32768 positions fill the device. /tmp/m/oom_q4_0.gguf.
oom_model() {
    "$R/make_llama_gguf" --type q4_0 --sparse --layers 32 --dim 4096 --heads 16 --kv-heads 16 --ffn 256 \
        --vocab 4096 --ctx 32768 --out /tmp/m/oom_q4_0.gguf > /dev/null
}

# The card, driver, CPUs and kernel, into $OUT/$1 and on the terminal.
device_env() {
    { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader; nproc; uname -r; } > "$OUT/$1" 2>&1
    cat "$OUT/$1"
}

# The throughput models of the GPU benchmarks, written to /tmp/m: the SmolLM2 shape (random Q4_1,
# SmolLM2's bytes per token) and the Llama 3.2 1B shape in F16 and Q8_0 (zero weights, which cost
# HBM as any others).
bench_models() {
    "$R/make_llama_gguf" --layers 30 --dim 576 --ffn 1536 --heads 9 --kv-heads 3 --vocab 49152 --ctx 8192 \
        --type q4_1 --seed 7 --out /tmp/m/smol_q4_1.gguf > /dev/null
    "$R/make_llama_gguf" --type f16 --sparse --out /tmp/m/l1b_f16.gguf > /dev/null
    "$R/make_llama_gguf" --type q8_0 --sparse --out /tmp/m/l1b_q8_0.gguf > /dev/null
}
