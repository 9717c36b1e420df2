#!/usr/bin/env bash
# tests/fuzz_corpus/fuzz_safetensors.sh DIR - seeds for tests/fuzz_safetensors.c (make fuzz): the
# valid safetensors files of tests/data (made by dl and by Python's safetensors, see
# tools/make_fixtures.py), each a few KiB at most.
set -euo pipefail
cd "$(dirname "$0")/../.."
for f in tests/data/*.safetensors; do
    [ "$(wc -c < "$f")" -le 16384 ] && cp "$f" "$1/"
done
exit 0
