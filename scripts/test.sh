#!/usr/bin/env bash
# test.sh — the whole test suite, from a fresh clone: set-up (idempotent), build, ctest.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
"$ROOT/scripts/setup.sh"
"$ROOT/scripts/build.sh" "$@"
cd "${SHOAL_BUILD:-$ROOT/build}"
ctest --output-on-failure -j2 --timeout 1200
