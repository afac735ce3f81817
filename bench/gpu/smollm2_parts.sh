#!/usr/bin/env bash
# smollm2_parts.sh — gets the 98 MB SmolLM2 file onto the GPU machine, which takes at most 64 MiB
# of work tree a call, in two calls made while the machine is warm (it keeps /tmp between them):
#   here:            bench/gpu/smollm2_parts.sh split     -> .gpurun/smollm2.part1, .part2, .sha256
#   call 1 (device): bash bench/gpu/smollm2_parts.sh stash  (carry .gpurun/smollm2.part1 and .sha256)
#   call 2 (device): bash bench/gpu/smollm2_parts.sh join   (carry .gpurun/smollm2.part2, the bundle
#                    and .devdeps; then run the tests and benches: they find the model in
#                    .deps/models as they do here, so test_cuda_llama runs its float64-fixture test
#                    and test_nn_device.sh its Paris checks on the GPU)
# join checks the reassembled file against the SHA-256 the set-up script pins. To compare with
# llama.cpp on the file itself, stash the full bundle in a call between the two
# (smollm2_parts.sh stash-bundle, carrying .gpurun/bundle.tar.xz) and run call 2 with R=/tmp/stash.
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=SmolLM2-135M-Instruct.Q4_1.gguf
case "${1:-}" in
split)
    mkdir -p .gpurun
    head -c 55000000 ".deps/models/$NAME" > .gpurun/smollm2.part1
    tail -c +55000001 ".deps/models/$NAME" > .gpurun/smollm2.part2
    sha256sum ".deps/models/$NAME" | cut -d' ' -f1 > .gpurun/smollm2.sha256
    ls -la .gpurun/smollm2.*
    ;;
stash)
    mkdir -p /tmp/stash
    cp .gpurun/smollm2.part1 .gpurun/smollm2.sha256 /tmp/stash/
    echo "stashed $(du -h /tmp/stash/smollm2.part1 | cut -f1)"
    ;;
stash-bundle) # the full bundle (with llama-bench) in a call of its own: then R=/tmp/stash in call 3
    mkdir -p /tmp/stash
    cp .gpurun/bundle.tar.xz /tmp/stash/
    echo "stashed the bundle, $(du -h /tmp/stash/bundle.tar.xz | cut -f1)"
    ;;
join)
    [ -f /tmp/stash/smollm2.part1 ] || { echo "smollm2_parts: no stashed part 1 (the machine was not warm?)" >&2; exit 1; }
    mkdir -p .deps/models
    cat /tmp/stash/smollm2.part1 .gpurun/smollm2.part2 > ".deps/models/$NAME"
    [ "$(sha256sum ".deps/models/$NAME" | cut -d' ' -f1)" = "$(cat /tmp/stash/smollm2.sha256)" ] ||
        { echo "smollm2_parts: the joined file does not match its SHA-256" >&2; exit 1; }
    echo "joined .deps/models/$NAME, SHA-256 ok"
    ;;
*)
    echo "usage: smollm2_parts.sh split|stash|stash-bundle|join" >&2
    exit 2
    ;;
esac
