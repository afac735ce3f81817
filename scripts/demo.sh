#!/usr/bin/env bash
# demo.sh — from a fresh clone to a chat answer written by a Wasm guest, in one command:
# set-up (idempotent), build into build/, the zero-copy matmul benchmark, then the chat
# guest (wasi-nn) answering a question with SmolLM2-135M on the CPU, tokens/s printed.
# Extra arguments replace the question.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${SHOAL_BUILD:-$ROOT/build}
MODEL="$ROOT/.deps/models/SmolLM2-135M-Instruct.Q4_1.gguf"
QUESTION=${*:-What is the capital of France?}
step() { printf '\n== %s\n' "$*"; }

step "set-up (scripts/setup.sh)"
"$ROOT/scripts/setup.sh" | tail -n 3

step "build ($BUILD)"
SHOAL_BUILD="$BUILD" "$ROOT/scripts/build.sh" >/dev/null
echo "built $BUILD/shoal and $(ls "$BUILD"/guests/*.wasm | wc -l) guests"
SHOAL="$BUILD/shoal"

step "zero-copy: a guest's matrices multiplied in place by the backend"
"$SHOAL" bench zerocopy --sizes 128,256,512

step "chat: a Wasm guest asks SmolLM2-135M through wasi-nn (greedy)"
echo "\$ echo \"$QUESTION\" | shoal run --nn-preload default:GGML:AUTO:$(basename "$MODEL") chat.wasm"
echo "$QUESTION" | "$SHOAL" run --nn-preload "default:GGML:AUTO:$MODEL" "$BUILD/guests/chat.wasm" -n 128
