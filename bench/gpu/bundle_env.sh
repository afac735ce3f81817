# bundle_env.sh — sourced by the GPU-machine scripts: unpacks the carried bundle
# (bench/gpu/pack_gpurun.sh: binaries, guests, lib/libwasmtime.so, llama/) and cmocka/jansson from
# .devdeps, then points R at the binaries and sets the library path and the test environment.
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
