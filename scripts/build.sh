#!/usr/bin/env bash
# build.sh — configures and builds Shoal into build/ (after scripts/setup.sh).
# Extra arguments go to CMake's configure step (e.g. -DSHOAL_SANITIZE=ON).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SHOAL_BUILD:-$ROOT/build}
# nvcc lives outside the default PATH on CUDA installs; CMake builds the CUDA backend when it is found.
[ -x /usr/local/cuda/bin/nvcc ] && case ":$PATH:" in *:/usr/local/cuda/bin:*) ;; *) export PATH=$PATH:/usr/local/cuda/bin ;; esac
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=${SHOAL_BUILD_TYPE:-RelWithDebInfo} "$@" >/dev/null
cmake --build "$BUILD" -j"$(nproc)"
