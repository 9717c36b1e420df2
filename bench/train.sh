#!/usr/bin/env bash
# bench/train.sh - dl against PyTorch on the two training workloads of bench/train.c (an MLP and
# a small convnet on Fashion-MNIST, the 60000 training images), in one run.
#
#     bash bench/train.sh [--epochs E] [--batches N] [--warmup W] [--threads 1,2]
#                         [--workload mlp|cnn|all] [--max-epoch-s S]
#
# Builds build/bench_train, then for each workload runs dl (build/bench_train) and, when
# /usr/bin/python3 can import torch, PyTorch (bench/train_torch.py) for every thread count, each
# configuration in its own process, and prints their lines and then one summary line:
#
#     train workload=mlp threads=T dl_s=X torch_s=Y speedup=Z torch_threads=U dl_peak_mib=A torch_peak_mib=B ...
#
# threads (T) is dl's best thread count and torch_threads (U) PyTorch's; dl_s and torch_s are
# the median per-epoch seconds at those counts; speedup = torch_s / dl_s; peak memory is the
# process' ru_maxrss with the data set (188 MB of floats) held in memory by both, and for torch
# the interpreter and the torch libraries. The targets of the issue are printed on the line
# (target_speedup: 4 for the MLP, 2 for the CNN; dl_peak_below_torch: yes or no).
# Without PyTorch: torch_s=NA speedup=NA.
#
# Defaults: 2 timed epochs after a 200-batch warm-up; the MLP runs whole epochs (1875 batches),
# the CNN only the first 200 of its 469 batches per epoch, scaled to a full epoch (batches=200
# scaled=1 in its lines), which keeps the whole run to a few minutes on 2 cores. --batches N
# applies to both workloads (0: whole epochs for both). --max-epoch-s S (default 20) caps each
# timed PyTorch epoch (see bench/train_torch.py: OpenMP at 2 threads on a busy 2-core machine can
# run 100 times slower) and scales from the batches it ran. Environment: CC (default cc), PYTHON
# (default /usr/bin/python3; `make bench-train` first installs PyTorch for it with tools/setup.sh
# --torch when it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."

epochs=2 batches= warmup=200 threads=1,2 workload=all max_epoch_s=20
while [ $# -gt 0 ]; do
    case "$1" in
        --epochs) epochs="$2"; shift 2 ;;
        --batches) batches="$2"; shift 2 ;;
        --warmup) warmup="$2"; shift 2 ;;
        --threads) threads="$2"; shift 2 ;;
        --workload) workload="$2"; shift 2 ;;
        --max-epoch-s) max_epoch_s="$2"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "train.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$workload" in all) workloads="mlp cnn" ;; mlp|cnn) workloads="$workload" ;;
    *) echo "train.sh: --workload is mlp, cnn or all" >&2; exit 2 ;; esac

PYTHON="${PYTHON:-/usr/bin/python3}"
mkdir -p build
${CC:-cc} -O2 -I. bench/train.c -o build/bench_train -lm -lpthread

have_torch=0
if "$PYTHON" -c 'import torch' >/dev/null 2>&1; then have_torch=1; fi
[ $have_torch = 1 ] || echo "# PyTorch not found ($PYTHON -c 'import torch' failed): torch_s=NA (make bench-train installs Debian's python3-torch where it can: tools/setup.sh --torch)"

# field NAME LINE: the value of NAME=... in LINE
field() { printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1; }

for w in $workloads; do
    b="$batches"
    if [ -z "$b" ]; then if [ "$w" = cnn ]; then b=200; else b=0; fi; fi
    args=(--workload "$w" --threads "$threads" --epochs "$epochs" --batches "$b" --warmup "$warmup")
    dl_out=$(./build/bench_train "${args[@]}") || { printf '%s\n' "$dl_out"; echo "train.sh: dl failed" >&2; exit 1; }
    printf '%s\n' "$dl_out"
    dl_best=$(printf '%s\n' "$dl_out" | grep '^dl best ')
    dl_t=$(field threads "$dl_best"); dl_s=$(field epoch_s "$dl_best"); dl_mib=$(field peak_mib "$dl_best")
    t_t=NA t_s=NA t_mib=NA speedup=NA below=NA
    if [ $have_torch = 1 ]; then
        t_out=$("$PYTHON" bench/train_torch.py "${args[@]}" --max-epoch-s "$max_epoch_s") || { printf '%s\n' "$t_out"; echo "train.sh: torch failed" >&2; exit 1; }
        printf '%s\n' "$t_out"
        t_best=$(printf '%s\n' "$t_out" | grep '^torch best ')
        t_t=$(field threads "$t_best"); t_s=$(field epoch_s "$t_best"); t_mib=$(field peak_mib "$t_best")
        speedup=$(awk -v a="$t_s" -v b="$dl_s" 'BEGIN { printf "%.2f", a / b }')
        below=$(awk -v a="$dl_mib" -v b="$t_mib" 'BEGIN { print (a < b) ? "yes" : "no" }')
    fi
    target=4; [ "$w" = cnn ] && target=2
    first=$(printf '%s\n' "$dl_out" | grep '^dl workload=' | head -n 1)
    nb=$(field batches "$first"); scaled=$(field scaled "$first")
    echo "train workload=$w threads=$dl_t dl_s=$dl_s torch_s=$t_s speedup=$speedup torch_threads=$t_t" \
         "dl_peak_mib=$dl_mib torch_peak_mib=$t_mib target_speedup=$target dl_peak_below_torch=$below" \
         "batches=$nb scaled=$scaled"
done
