#!/usr/bin/env bash
# bench/gan.sh - dl against PyTorch on one DCGAN training step (bench/gan.c: the TensorFlow
# DCGAN tutorial's generator, discriminator and train_step on Fashion-MNIST, batch 256), in one
# run.
#
#     bash bench/gan.sh [--steps S] [--warmup W] [--threads 1,2] [--batch B] [--max-s S]
#
# Builds build/bench_gan, runs it (build/bench_gan) and, when /usr/bin/python3 can import
# torch, PyTorch (bench/gan_torch.py), each for every thread count in its own process, prints
# their lines and then one summary line:
#
#     gan threads=T dl_ms=X torch_ms=Y speedup=Z torch_threads=U dl_peak_mib=A torch_peak_mib=B target_speedup=2
#
# threads (T) is dl's best thread count and torch_threads (U) PyTorch's; dl_ms and torch_ms are
# the median milliseconds per step at those counts; speedup = torch_ms / dl_ms; peak memory is
# each process' ru_maxrss, with the Fashion-MNIST training set (188 MB of floats) held by both,
# and for torch the interpreter and the torch libraries. Without PyTorch: torch_ms=NA
# speedup=NA.
#
# Defaults: 5 timed steps after 2 warm-up steps for dl. PyTorch 1.13 as Debian builds it runs
# this step about 8 times slower (seconds per step: its profiler shows ConvTranspose2d going
# through slow_conv_transpose2d and convolution_backward taking 95% of the step; its BLAS is
# the generic one, BLAS_INFO=generic, not MKL), so its warm-up and its timed steps each
# stop after --max-s seconds (default 60; at least one step is always timed). Environment: CC
# (default cc), PYTHON (default /usr/bin/python3; `make bench-gan` first installs PyTorch for it,
# and the full Fashion-MNIST that bench/gan.c needs, with tools/setup.sh --torch --demo when
# they are missing).
set -euo pipefail
cd "$(dirname "$0")/.."

steps=5 warmup=2 threads=1,2 batch=256 max_s=60
while [ $# -gt 0 ]; do
    case "$1" in
        --steps) steps="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --batch) batch="$2"; shift 2 ;;
        --max-s) max_s="$2"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "gan.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

PYTHON="${PYTHON:-/usr/bin/python3}"
mkdir -p build
${CC:-cc} -O2 -I. bench/gan.c -o build/bench_gan -lm -lpthread

have_torch=0
if "$PYTHON" -c 'import torch' >/dev/null 2>&1; then have_torch=1; fi
[ $have_torch = 1 ] || echo "# PyTorch not found ($PYTHON -c 'import torch' failed): torch_ms=NA (make bench-gan installs Debian's python3-torch where it can: tools/setup.sh --torch)"

# field NAME LINE: the value of NAME=... in LINE
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }

args=(--threads "$threads" --steps "$steps" --warmup "$warmup" --batch "$batch")
dl_out=$(./build/bench_gan "${args[@]}") || { printf '%s\n' "$dl_out"; echo "gan.sh: dl failed" >&2; exit 1; }
printf '%s\n' "$dl_out"
dl_best=$(printf '%s\n' "$dl_out" | grep '^dl best ')
dl_t=$(field threads "$dl_best"); dl_ms=$(field step_ms "$dl_best"); dl_mib=$(field peak_mib "$dl_best")
t_t=NA t_ms=NA t_mib=NA speedup=NA
if [ $have_torch = 1 ]; then
    t_out=$("$PYTHON" bench/gan_torch.py "${args[@]}" --max-s "$max_s") || { printf '%s\n' "$t_out"; echo "gan.sh: torch failed" >&2; exit 1; }
    printf '%s\n' "$t_out"
    t_best=$(printf '%s\n' "$t_out" | grep '^torch best ')
    t_t=$(field threads "$t_best"); t_ms=$(field step_ms "$t_best"); t_mib=$(field peak_mib "$t_best")
    speedup=$(awk -v a="$t_ms" -v b="$dl_ms" 'BEGIN { printf "%.2f", a / b }')
fi
echo "gan threads=$dl_t dl_ms=$dl_ms torch_ms=$t_ms speedup=$speedup torch_threads=$t_t" \
     "dl_peak_mib=$dl_mib torch_peak_mib=$t_mib target_speedup=2 batch=$batch"
