#!/usr/bin/env bash
# build_llamacpp.sh — builds llama.cpp (as vendored in a pinned, SHA-256-checked llama-cpp-python
# sdist from PyPI) into .deps/llama.cpp/, as the independent reference Shoal is checked and
# benchmarked against. Also builds scripts/reference/llama_dump.c against that libllama.
#
# Usage: scripts/reference/build_llamacpp.sh [--cuda] [--offline] [--jobs N]
#        scripts/reference/build_llamacpp.sh --pack-src     # write a slim source tarball (see below)
#   --cuda       build with GGML_CUDA=ON for sm_90 (H100/H200) into .deps/llama.cpp/build-cuda
#                (portable CPU code: it may be built here and carried to the GPU machine)
#   --offline    never touch the network: use the sdist already in $LLAMA_DL_DIR, or the source
#                tarball $LLAMA_SRC_TARBALL, or an already unpacked tree in $LLAMA_SRC_DIR
#   --pack-src   write $LLAMA_DL_DIR/llama.cpp-<ver>-slim.tar.gz: only what the build needs
#                (~10 MB instead of the 77 MB sdist), small enough to carry to a machine
#                without network; there run with --offline LLAMA_SRC_TARBALL=that file.
# Environment: LLAMA_DL_DIR (default .deps/dl), LLAMA_SRC_DIR (unpacked llama.cpp tree),
#              LLAMA_SRC_TARBALL (slim tarball from --pack-src), LLAMA_OUT (default .deps/llama.cpp),
#              JOBS (default 2), NICE (default 10).
# Idempotent: the sdist is downloaded only when missing or corrupt, unpacked once, and the
# CMake build is incremental, so a second run only verifies.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEPS="$ROOT/.deps"
say() { printf 'build_llamacpp: %s\n' "$*"; }
die() { printf 'build_llamacpp: error: %s\n' "$*" >&2; exit 1; }

LCP_VERSION=0.3.36
LCP_SDIST=llama_cpp_python-${LCP_VERSION}.tar.gz
LCP_SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
# The llama.cpp commit vendored in that sdist (for the record; the sdist hash pins it).
LLAMA_COMMIT=0c1e57098bba43ac29e6e3b677cdceebdd22334f
TARGETS=(llama ggml llama-bench llama-tokenize llama-completion llama-simple)

MODE=cpu OFFLINE=0 PACK=0 DUMP_LDFLAGS=
JOBS=${JOBS:-2}
NICE=${NICE:-10}
while [ $# -gt 0 ]; do
  case $1 in
    --cuda) MODE=cuda ;;
    --offline) OFFLINE=1 ;;
    --pack-src) PACK=1 ;;
    --jobs) shift; JOBS=$1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (try --help)" ;;
  esac
  shift
done

DL="${LLAMA_DL_DIR:-$DEPS/dl}"
OUT="${LLAMA_OUT:-$DEPS/llama.cpp}"
SLIM="$DL/llama.cpp-${LLAMA_COMMIT:0:12}-slim.tar.gz"
command -v cmake >/dev/null || die "cmake is not on PATH"

# ---- source: an unpacked tree, a slim tarball, or the pinned sdist ----
SRC_PARENT="$OUT/src"
if [ -n "${LLAMA_SRC_DIR:-}" ]; then
  SRC=$LLAMA_SRC_DIR
elif [ -n "${LLAMA_SRC_TARBALL:-}" ]; then
  [ -f "$LLAMA_SRC_TARBALL" ] || die "LLAMA_SRC_TARBALL=$LLAMA_SRC_TARBALL does not exist"
  SRC="$SRC_PARENT/llama.cpp-slim"
  if [ ! -f "$SRC/CMakeLists.txt" ]; then
    say "unpacking $LLAMA_SRC_TARBALL"
    rm -rf "$SRC"; mkdir -p "$SRC"
    tar -xzf "$LLAMA_SRC_TARBALL" -C "$SRC"
  fi
else
  SRC="$SRC_PARENT/llama_cpp_python-${LCP_VERSION}/vendor/llama.cpp"
  if [ ! -f "$SRC/CMakeLists.txt" ]; then
    mkdir -p "$DL"
    if ! { [ -f "$DL/$LCP_SDIST" ] && echo "$LCP_SHA256  $DL/$LCP_SDIST" | sha256sum -c --status; }; then
      [ "$OFFLINE" = 0 ] || die "offline, and no verified $LCP_SDIST in $DL (set LLAMA_DL_DIR, LLAMA_SRC_TARBALL or LLAMA_SRC_DIR)"
      rm -f "$DL/$LCP_SDIST"
      say "downloading llama-cpp-python==$LCP_VERSION (sdist)"
      # pip prepares metadata of an sdist, which pulls its build backend into a throwaway env.
      python3 -m pip download --quiet --no-deps --no-binary :all: -d "$DL" "llama-cpp-python==$LCP_VERSION" \
        || die "pip download of llama-cpp-python==$LCP_VERSION failed"
    fi
    echo "$LCP_SHA256  $DL/$LCP_SDIST" | sha256sum -c --status \
      || die "$DL/$LCP_SDIST does not match the pinned SHA-256 $LCP_SHA256"
    say "unpacking $LCP_SDIST"
    mkdir -p "$SRC_PARENT"
    rm -rf "$SRC_PARENT/llama_cpp_python-${LCP_VERSION}"
    tar -xzf "$DL/$LCP_SDIST" -C "$SRC_PARENT"
    [ -f "$SRC/CMakeLists.txt" ] || die "the sdist has no vendor/llama.cpp/CMakeLists.txt"
  fi
fi
[ -f "$SRC/CMakeLists.txt" ] || die "no llama.cpp source at $SRC"

if [ "$PACK" = 1 ]; then
  # Only the directories the CMake build reads; models/, docs/, media/ etc. are left out.
  mkdir -p "$DL"
  (cd "$SRC" && tar -czf "$SLIM" --exclude='*.gguf' CMakeLists.txt cmake common ggml include src tools \
      examples pocs vendor licenses LICENSE)
  say "wrote $SLIM ($(du -h "$SLIM" | cut -f1)); sha256 $(sha256sum "$SLIM" | cut -d' ' -f1)"
  exit 0
fi

# ---- configure + build ----
BUILD="$OUT/build-$MODE"
CMAKE_ARGS=(
  -DCMAKE_BUILD_TYPE=Release
  -DBUILD_SHARED_LIBS=ON
  -DGGML_NATIVE=ON           # -march=native: AVX2/AVX-512/FMA on this machine
  -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=ON
)
if [ "$MODE" = cuda ]; then
  command -v nvcc >/dev/null || { [ -x /usr/local/cuda/bin/nvcc ] && export PATH="/usr/local/cuda/bin:$PATH"; } \
    || die "--cuda needs nvcc (on PATH or in /usr/local/cuda/bin)"
  # Built here, run on the GPU machine: no -march=native (its CPU may lack this one's ISA).
  # A machine without a GPU has no libcuda.so.1 (the driver) for the executables' link to resolve
  # libggml-cuda against; it is there at run time on the GPU machine.
  CMAKE_ARGS+=(-DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=OFF
               "-DCMAKE_EXE_LINKER_FLAGS=-Wl,--allow-shlib-undefined")
  DUMP_LDFLAGS=-Wl,--allow-shlib-undefined
fi
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  say "configuring ($MODE) in $BUILD"
  nice -n "$NICE" cmake -S "$SRC" -B "$BUILD" "${CMAKE_ARGS[@]}" >"$OUT/configure-$MODE.log" 2>&1 \
    || { tail -30 "$OUT/configure-$MODE.log" >&2; die "cmake configure failed (log: $OUT/configure-$MODE.log)"; }
fi
say "building ${TARGETS[*]} with $JOBS jobs (log: $OUT/build-$MODE.log)"
nice -n "$NICE" cmake --build "$BUILD" -j "$JOBS" --target "${TARGETS[@]}" >"$OUT/build-$MODE.log" 2>&1 \
  || { tail -30 "$OUT/build-$MODE.log" >&2; die "build failed (log: $OUT/build-$MODE.log)"; }

# ---- our own small tool on libllama: token ids, per-position logits, greedy continuation ----
BIN="$BUILD/bin"
CC=${CC:-cc}
DUMP_SRC="$ROOT/scripts/reference/llama_dump.c"
if [ ! -x "$BIN/llama-dump" ] || [ "$DUMP_SRC" -nt "$BIN/llama-dump" ] || [ "$BIN/libllama.so" -nt "$BIN/llama-dump" ]; then
  say "compiling llama-dump"
  $CC -std=c11 -O2 -Wall -Wextra -Werror -o "$BIN/llama-dump" "$DUMP_SRC" \
      -I"$SRC/include" -I"$SRC/ggml/include" -L"$BIN" -lllama -lggml -lggml-base -Wl,-rpath,"$BIN" $DUMP_LDFLAGS \
    || die "compiling $DUMP_SRC failed"
fi

for t in llama-bench llama-tokenize llama-dump libllama.so libggml.so libggml-base.so libggml-cpu.so; do
  [ -e "$BIN/$t" ] || die "expected $BIN/$t after the build"
done
say "done: binaries and libraries in $BIN"
