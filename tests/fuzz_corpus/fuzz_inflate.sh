#!/usr/bin/env bash
# tests/fuzz_corpus/fuzz_inflate.sh DIR - seeds for tests/fuzz_inflate.c (make fuzz). Its first
# input byte picks the target (low two bits): 0 raw deflate, 1 gzip, 2 IDX images + labels (the
# second byte says where the labels start), 3 CSV (bit 7: a header row; bit 4: no label column).
# One valid input or more for each, from the IDX files in tests/data and a few made here.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=$1
seed() { cat > "$out/$1"; }   # seed NAME < bytes
for f in tests/data/nn_*.gz; do
    b=$(basename "$f" .gz)
    { printf '\001'; cat "$f"; } | seed "gzip_$b"
    { printf '\000'; gzip -dc "$f" | gzip -9 -n -c | tail -c +11 | head -c -8; } | seed "deflate_$b"
done
printf 'label,a,b\n1,0.5,2\n0,-1e3,3.25\n2,7,8\n' | gzip -n -c | { printf '\001'; cat; } | seed gzip_csv
# IDX: 2 images of 2x2 u8 (16 + 8 bytes) and 2 labels (8 + 2 bytes) in one 36-byte input;
# byte 1 = 25 puts the cut so that images are bytes 2..25 and labels 26..35.
printf '\002\031\000\000\010\003\000\000\000\002\000\000\000\002\000\000\000\002\000\177\377\001\002\003\004\005\000\000\010\001\000\000\000\002\001\000' | seed idx
# CSV: 0x83 header + label column 0; 0x93 header, no label column; 0x03 no header
printf '\203label,a,b\n1,0.5,2\n0,-1e3,3.25\n2,7,8\n' | seed csv_header
printf '\223x,y\n0.5,1\n2,3\n' | seed csv_no_label
printf '\0031,2,3\n4,5,6\n' | seed csv_plain
exit 0
