#!/usr/bin/env bash
# tools/gpu_check.sh - the checks that need an NVIDIA GPU (make gpu-check). In about 5 minutes:
#   1. builds dl_cuda.cu with nvcc for this GPU, the GPU test programs (tests/test_cuda*.c with
#      DL_TEST_CUDA_LINKED, so they run against the real kernels and cuBLAS instead of the CPU
#      emulation that make test uses), the examples with DL_CUDA, and bench/cuda.c, all at once;
#   2. runs the GPU test suite (every op against the CPU op, forward and backward);
#   3. trains mnist_mlp and mnist_cnn with --device cuda on Fashion-MNIST, and runs mnist_mlp
#      twice more for one epoch to check that the same seed gives the same bits on the GPU;
#   4. runs bench/cuda.c (GEMM GFLOP/s against the FP32 peak, the MLP step) and, when python3
#      has PyTorch with CUDA, bench/cuda_torch.py on the same workloads.
# The last line is "N passed, N failed[, N skipped]" over the test programs and checks; the line
# before it is a one-line summary of the numbers. Without a GPU (nvidia-smi fails) it says so
# and skips. Data: FASHION_MNIST=DIR, else /usr/share/datasets/fashion-mnist, else
# build/gpu-data/fashion-mnist (copied there for a machine without the package), else the
# shipped 3000-image subset (then the accuracy targets do not apply, and the summary says so).
# Logs: build/gpu/*.log. CUDA_ARCH (e.g. sm_90) overrides the architecture read from nvidia-smi.
set -uo pipefail
cd "$(dirname "$0")/.."
out=build/gpu
mkdir -p "$out"
t_start=$(date +%s)
passed=0 failed=0 skipped=0
summary=()
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 25 "$2" | sed 's/^/    | /'; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L > "$out/gpu.txt" 2>&1 || ! grep -q GPU "$out/gpu.txt"; then
    echo "gpu-check: no NVIDIA GPU here (nvidia-smi: $(head -n 1 "$out/gpu.txt" 2>/dev/null)); nothing to run"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
fi
gpu_name=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
echo "GPU: $gpu_name (driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1))"
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
CUDA_HOME=${CUDA_HOME:-$(dirname "$(dirname "$NVCC")")}
arch=${CUDA_ARCH:-sm_$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d .)}
CC=${CC:-cc}
CFLAGS="-std=c99 -O2 -Wall -Wextra -Wpedantic -I. -Itests"
LIBS="$out/dl_cuda.o -L$CUDA_HOME/lib64 -Wl,-rpath,$CUDA_HOME/lib64 -lcudart -lcublas -lstdc++ -lm -lpthread"

data=${FASHION_MNIST:-}
for d in /usr/share/datasets/fashion-mnist build/gpu-data/fashion-mnist; do
    [ -z "$data" ] && [ -f "$d/t10k-labels-idx1-ubyte.gz" -o -f "$d/t10k-labels-idx1-ubyte" ] && data=$d
done
full=1
if [ -z "$data" ]; then data=data/fashion-mnist; full=0; fi
echo "data: $data$([ $full = 0 ] && echo ' (the 3000-image subset: accuracy targets do not apply)')"

# 1. Build everything in parallel; dl_cuda.o first, since everything links it.
echo "== build ($arch)"
if ! "$NVCC" -O2 -arch="$arch" -Xcompiler -Wall,-Wextra -I. -c dl_cuda.cu -o "$out/dl_cuda.o" > "$out/nvcc.log" 2>&1; then
    fail "nvcc dl_cuda.cu" "$out/nvcc.log"
    echo "$passed passed, $failed failed"
    exit 1
fi
pids=()
progs=()
for f in tests/test_cuda*.c; do
    n=$(basename "$f" .c)
    progs+=("$n")
    $CC $CFLAGS -DDL_TEST_CUDA_LINKED "$f" -o "$out/$n" $LIBS > "$out/$n.build.log" 2>&1 &
    pids+=($!)
done
$CC $CFLAGS -DDL_CUDA -c tests/dl_impl.c -o "$out/dl_impl.o" > "$out/dl_impl.build.log" 2>&1 &
impl_pid=$!
$CC $CFLAGS bench/cuda.c -o "$out/bench_cuda" $LIBS > "$out/bench_cuda.build.log" 2>&1 &
bench_pid=$!
wait "$impl_pid"; impl_rc=$?
for e in mnist_mlp mnist_cnn; do
    if [ $impl_rc = 0 ]; then
        $CC $CFLAGS -DDL_CUDA -DDL_IMPLEMENTATION_ELSEWHERE "examples/$e.c" "$out/dl_impl.o" -o "$out/$e" $LIBS > "$out/$e.build.log" 2>&1
    else
        cp "$out/dl_impl.build.log" "$out/$e.build.log"; false
    fi || fail "build $e" "$out/$e.build.log"
done
wait "$bench_pid" || fail "build bench_cuda" "$out/bench_cuda.build.log"
for i in "${!pids[@]}"; do wait "${pids[$i]}" || fail "build ${progs[$i]}" "$out/${progs[$i]}.build.log"; done
echo "   built in $(( $(date +%s) - t_start )) s"

# 2. The GPU test suite.
echo "== GPU test suite"
for n in "${progs[@]}"; do
    [ -x "$out/$n" ] || continue
    timeout 300 "$out/$n" > "$out/$n.log" 2>&1
    rc=$? line=$(tail -n 1 "$out/$n.log")
    # on a GPU machine nothing may be skipped: a skip means the GPU was not usable
    if [ $rc = 0 ] && [[ "$line" =~ ^([0-9]+)\ passed,\ 0\ failed$ ]]; then
        pass "$n: $line"; summary+=("$n ${BASH_REMATCH[1]} ok")
    else
        fail "$n: $line (exit $rc)" "$out/$n.log"; summary+=("$n FAILED")
    fi
done

# 3. Training on the GPU: accuracy, time, and run-to-run determinism.
run_example() {  # run_example NAME TARGET ARGS...
    local e=$1 target=$2 t0 acc; shift 2
    [ -x "$out/$e" ] || return
    t0=$(date +%s.%N)
    timeout 90 "$out/$e" --device cuda --data "$data" "$@" > "$out/$e.log" 2>&1
    local rc=$? secs
    secs=$(awk "BEGIN{print $(date +%s.%N) - $t0}")
    acc=$(grep -o 'test_accuracy=[0-9.]*' "$out/$e.log" | tail -n 1 | cut -d= -f2)
    if [ $rc != 0 ] || [ -z "$acc" ]; then fail "$e --device cuda (exit $rc)" "$out/$e.log"; summary+=("$e FAILED"); return; fi
    if [ $full = 1 ] && awk "BEGIN{exit !($acc < $target)}"; then
        fail "$e --device cuda: test accuracy $acc < $target" "$out/$e.log"
    else
        pass "$e --device cuda: test accuracy $acc ($(printf %.1f "$secs") s in all)"
    fi
    summary+=("$e acc $acc in $(printf %.0f "$secs")s")
}
echo "== training on the GPU"
run_example mnist_mlp 0.88 --save "$out/mlp_full.safetensors"
run_example mnist_cnn 0.905
if [ -x "$out/mnist_mlp" ]; then
    "$out/mnist_mlp" --device cuda --data "$data" --epochs 1 --show 0 --save "$out/det1.safetensors" > "$out/det1.log" 2>&1
    "$out/mnist_mlp" --device cuda --data "$data" --epochs 1 --show 0 --save "$out/det2.safetensors" > "$out/det2.log" 2>&1
    if [ -s "$out/det1.safetensors" ] && cmp -s "$out/det1.safetensors" "$out/det2.safetensors"; then
        pass "same seed, same bits: two GPU runs of mnist_mlp saved identical models"; summary+=("deterministic")
    else
        fail "same seed, same bits: the two GPU runs differ" "$out/det2.log"; summary+=("NOT deterministic")
    fi
fi

# 4. Benchmarks.
echo "== benchmarks"
if [ -x "$out/bench_cuda" ]; then
    "$out/bench_cuda" | tee "$out/bench_cuda.log"
    DL_CUDA_TF32=1 "$out/bench_cuda" | sed 's/^/tf32 /' | grep gemm | tee -a "$out/bench_cuda.log"
    summary+=("gemm8192 $(grep '^gemm_8192' "$out/bench_cuda.log" | awk '{print $2}') GFLOP/s")
fi
if python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    DL_FASHION_MNIST_DIR="$data" timeout 90 python3 bench/cuda_torch.py --all | tee "$out/bench_torch.log"
    summary+=("torch gemm8192 $(grep '^torch_gemm_8192' "$out/bench_torch.log" | awk '{print $2}') GFLOP/s")
else
    echo "PyTorch with CUDA: not available here (NA)"
fi

echo "summary ($gpu_name, $(( $(date +%s) - t_start )) s): $(IFS=';'; echo "${summary[*]}")"
if [ $skipped -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"; else echo "$passed passed, $failed failed"; fi
[ $failed = 0 ]
