#!/usr/bin/env bash
# tests/test_examples.sh - build every examples/*.c and run the known ones briefly.
#
# Each example is built warning-free (-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror; linked with
# the implementation compiled once, tests/dl_impl.c) and, when
# it is in the table below, run for a few seconds on the Fashion-MNIST subset shipped in
# data/fashion-mnist: it must exit 0 and its last line must be its metric ("test_accuracy=..."
# or "final_loss=...") within the bound given. Examples not in the table are only built.
# Everything is written under build/test_examples/. Output ends like a test program's:
# "N passed, N failed[, N skipped]"; the exit status is non-zero on any failure.
# Run from anywhere: bash tests/test_examples.sh [name ...]   (CC=clang to use another compiler;
# JOBS=n builds n at a time)
set -uo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-cc}
FLAGS="-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -I."
out=build/test_examples
mkdir -p "$out"
sub=data/fashion-mnist

# name | arguments for a short run | metric | bound: "min X" (metric >= X) or "max X" (<=)
table="
fit_toy       | --steps 1000 --threads 1                                                 | final_loss    | max 0.01
mnist_mlp     | --data $sub --epochs 2 --threads 1 --save $out/mlp.safetensors --show 2 | test_accuracy | min 0.70
mnist_cnn     | --data $sub --epochs 3 --threads 1 --features 128 --save $out/cls.safetensors | test_accuracy | min 0.60
graph_session | --data $sub --epochs 2 --threads 1                                      | test_accuracy | min 0.70
image_folder  | --epochs 3 --threads 1                                                  | test_accuracy | min 0.60
estimator     | --data $sub --epochs 3 --threads 1                                      | test_accuracy | min 0.70
char_rnn      | --steps 30 --threads 1 --hidden 64 --sample-len 40                      | val_loss      | max 3.50
gridworld_dp  | --steps 300 --threads 1                                                  | max_err       | max 0.001
frozenlake_q  | --steps 100000 --threads 1                                               | success_rate  | min 0.70
cartpole_dqn  | --steps 60000 --threads 1 --save $out/cartpole_dqn.safetensors            | mean_return_last100 | min 150
breakout_dqn  | --steps 40000 --train-freq 4 --threads 1 --save $out/breakout.safetensors | mean_return_last100 | min 0.8
game_loop     | --agent $out/cartpole_dqn.safetensors --frames 2000 --threads 1          | act_us_median | max 1000
gan_mnist     | --data $sub --steps 200 --threads 1 --samples 500 --out $out/gan_mnist_files | d_loss | max 0.69
dcgan         | --data $sub --steps 4 --batch 32 --every 2 --threads 1 --samples 64 --out $out/dcgan_files | d_loss | max 1.386
gan_eval      | --classifier $out/cls.safetensors --data $sub --images $out/gan_mnist_files/samples.safetensors --baselines --threads 1 | frechet_distance | min 5
cyclegan      | --data $sub --steps 60 --batch 4 --width 8 --blocks 2 --every 60 --threads 1 --classifier $out/cls.safetensors --out $out/cyclegan_files | cycle_l1 | max 0.2
style_transfer | --steps 10 --width 4 --threads 1 --out $out/style_transfer_files          | loss_ratio    | max 0.6
"

passed=0 failed=0 skipped=0
# The run order: the table's rows in table order (a row may read what an earlier row wrote:
# gan_eval uses mnist_cnn's classifier and gan_mnist's samples, cyclegan the classifier), then the examples only built.
table_names=$(printf '%s\n' "$table" | awk -F'|' 'NF > 1 { k = $1; gsub(/ /, "", k); print k }')
names=() all=()
if [ $# -gt 0 ]; then all=("$@"); else for f in examples/*.c; do all+=("$(basename "$f" .c)"); done; fi
for t in $table_names; do for a in "${all[@]}"; do [ "$a" = "$t" ] && names+=("$a"); done; done
for a in "${all[@]}"; do case " $table_names " in *[[:space:]]"$a"[[:space:]]*) ;; *) names+=("$a") ;; esac; done
# Build them all first, JOBS at a time (default: the number of CPUs), then run them one by one.
# The two-file way, as the Makefile builds them: the implementation compiled once, each example
# with -DDL_IMPLEMENTATION_ELSEWHERE and linked with it; one that configures the library itself
# (tests/own_impl.sh) alone. (tests/test_compile.sh builds every example alone as well.)
jobs_max=${JOBS:-$(nproc 2>/dev/null || echo 2)}
impl=$out/dl_impl.o
# shellcheck disable=SC2086
$CC $FLAGS -c tests/dl_impl.c -o "$impl" > "$out/dl_impl.build" 2>&1 || rm -f "$impl"
own=" $(bash tests/own_impl.sh examples/*.c | tr '\n' ' ') "
for name in "${names[@]}"; do
    [ -f "examples/$name.c" ] || continue
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
    case "$own" in
        *" examples/$name.c "*) link=() ;;
        *) link=(-DDL_IMPLEMENTATION_ELSEWHERE "$impl") ;;
    esac
    if [ ${#link[@]} -gt 0 ] && [ ! -f "$impl" ]; then
        { echo "tests/dl_impl.c does not build:"; cat "$out/dl_impl.build"; } > "$out/$name.build"
        echo FAIL > "$out/$name.status"; continue
    fi
    # shellcheck disable=SC2086
    ( if $CC $FLAGS "examples/$name.c" "${link[@]}" -o "$out/$name" -lm -lpthread > "$out/$name.build" 2>&1; then
          echo ok; else echo FAIL; fi > "$out/$name.status" ) &
done
wait
for name in "${names[@]}"; do
    src=examples/$name.c exe=$out/$name
    if [ ! -f "$src" ]; then echo "FAIL $name: no $src"; failed=$((failed + 1)); continue; fi
    if [ "$(cat "$exe.status")" != ok ]; then
        echo "FAIL $name: does not build:"; sed 's/^/    /' "$exe.build" | head -20
        failed=$((failed + 1)); continue
    fi
    row=$(printf '%s\n' "$table" | awk -F'|' -v n="$name" '{ k = $1; gsub(/ /, "", k) } k == n { print; exit }')
    if [ -z "$row" ]; then echo "ok   $name (built; not in the run table)"; passed=$((passed + 1)); continue; fi
    IFS='|' read -r _ args metric bound <<< "$row"
    metric=$(echo $metric) bound=$(echo $bound)
    t0=$(date +%s)
    # shellcheck disable=SC2086
    timeout 300 "$exe" $args > "$exe.out" 2>&1 < /dev/null
    rc=$? secs=$(( $(date +%s) - t0 ))
    last=$(tail -n 1 "$exe.out")
    value=${last#"$metric="}
    if [ $rc -ne 0 ]; then
        echo "FAIL $name: exit status $rc; the end of its output:"; tail -n 5 "$exe.out" | sed 's/^/    /'
        failed=$((failed + 1))
    elif [ "$value" = "$last" ]; then
        echo "FAIL $name: last line is not $metric=...: $last"; failed=$((failed + 1))
    elif ! awk -v v="$value" -v b="$bound" 'BEGIN { split(b, p, " "); exit !(p[1] == "min" ? v + 0 >= p[2] : v + 0 <= p[2]) }'; then
        echo "FAIL $name: $metric=$value, expected $bound"; failed=$((failed + 1))
    else
        echo "ok   $name: $metric=$value ($bound; ${secs}s)"; passed=$((passed + 1))
    fi
done
echo "$passed passed, $failed failed, $skipped skipped"
[ $failed -eq 0 ]
