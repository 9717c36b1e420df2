#!/usr/bin/env bash
# bench/rl.sh - dl_rl.h against the Python references: environment steps per second (CartPole-v1
# against Gymnasium, Breakout against MinAtar) and a DQN agent's act() at batch 1 against a
# PyTorch forward pass of the same network (bench/rl.c, bench/rl_ref.py), in one run.
#
#     bash bench/rl.sh [--seconds S] [--reps R] [--calls N] [--vec N]
#
# Builds build/bench_rl (-O2) and runs it, then bench/rl_ref.py for each reference (gym,
# minatar, torch) with the first interpreter that imports its package: $PYTHON_ENV (default
# build/pyenv/bin/python, the virtual environment with gymnasium, numpy and minatar that `make
# bench-rl` makes through tools/setup.sh --gym; python3 when there is none) or $PYTHON_TORCH
# (default /usr/bin/python3, with Debian's python3-torch, which tools/setup.sh --torch installs).
# A reference that none of them has is skipped with a "# no ..." line and its ratio is NA. Prints every measurement line, then one summary line each:
#
#     rl env=CartPole-v1 dl_steps_per_s=A gym_steps_per_s=B gym_raw_steps_per_s=C speedup=A/B speedup_raw=A/C dl_vec_steps_per_s=D
#     rl env=Breakout dl_steps_per_s=A minatar_steps_per_s=B speedup=A/B dl_vec_steps_per_s=D
#     rl net=cartpole threads=1 dl_act_us=A torch_us=B speedup=B/A dl_act_us_p99=.. torch_us_p99=..
#     rl net=cartpole threads=default dl_threads=T dl_act_us=A torch_threads=U torch_us=B speedup=B/A
#     rl net=cartpole update threads=1 batch=128 dl_update_ms=A torch_update_ms=B speedup=B/A
#
# (the same three for net=breakout); threads=default: each at its default thread count.
# The us and ms figures are medians per call. Defaults: dl runs each env 5 x 0.3 s and 20000
# act calls per configuration, the Python side 5 x 0.5 s and 5000 calls; both time 300 DQN
# gradient steps per network. --seconds, --reps, --calls and --updates set both sides, --vec
# the dl_vec_env size (default 8). About a minute on 2 cores. Environment: CC (default cc),
# PYTHON_ENV, PYTHON_TORCH.
set -euo pipefail
cd "$(dirname "$0")/.."

dl_args=() py_args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds|--reps|--calls|--updates) dl_args+=("$1" "$2"); py_args+=("$1" "$2"); shift 2 ;;
        --vec) dl_args+=("$1" "$2"); shift 2 ;;
        -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
        *) echo "rl.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "${PYTHON_ENV:-}" ]; then
    if [ -x build/pyenv/bin/python ]; then PYTHON_ENV=build/pyenv/bin/python; else PYTHON_ENV=python3; fi
fi

mkdir -p build
${CC:-cc} -O2 -I. bench/rl.c -o build/bench_rl -lm -lpthread

dl_out=$(./build/bench_rl "${dl_args[@]+"${dl_args[@]}"}") || { printf '%s\n' "$dl_out"; echo "rl.sh: bench_rl failed" >&2; exit 1; }
printf '%s\n' "$dl_out"

# The first interpreter that imports module $1, or nothing.
pick_python() {
    local py
    for py in "$PYTHON_ENV" "${PYTHON_TORCH:-/usr/bin/python3}"; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c "import $1" >/dev/null 2>&1; then echo "$py"; return; fi
    done
}

ref_out=
for part in gym minatar torch; do
    module=$part; [ $part = gym ] && module=gymnasium
    py=$(pick_python $module)
    if [ -z "$py" ]; then
        echo "# no $module in $PYTHON_ENV or ${PYTHON_TORCH:-/usr/bin/python3}: $part reference skipped (make bench-rl installs it where it can)"
        continue
    fi
    out=$("$py" bench/rl_ref.py --part $part "${py_args[@]+"${py_args[@]}"}") || { printf '%s\n' "$out"; echo "rl.sh: rl_ref.py --part $part failed" >&2; exit 1; }
    printf '%s\n' "$out"
    ref_out+="$out"$'\n'
done

# line PATTERN TEXT: the first line of TEXT matching PATTERN; field NAME LINE: NAME's value.
line() { printf '%s\n' "$2" | grep -- "$1" | head -n 1 || true; }
field() { local v; v=$(printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p" | head -n 1); echo "${v:-NA}"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "NA" || b == "NA" || b == 0) print "NA"; else printf "%.1f", a / b }'; }

dl1=$(field steps_per_s "$(line '^dl env=CartPole-v1 envs=1 ' "$dl_out")")
dlv=$(field steps_per_s "$(line '^dl env=CartPole-v1 envs=[0-9]* ' "$(printf '%s\n' "$dl_out" | grep -v 'envs=1 ')")")
gym=$(field steps_per_s "$(line '^gym env=CartPole-v1 wrappers=make ' "$ref_out")")
raw=$(field steps_per_s "$(line '^gym env=CartPole-v1 wrappers=none ' "$ref_out")")
echo "rl env=CartPole-v1 dl_steps_per_s=$dl1 gym_steps_per_s=$gym gym_raw_steps_per_s=$raw" \
     "speedup=$(ratio "$dl1" "$gym") speedup_raw=$(ratio "$dl1" "$raw") dl_vec_steps_per_s=$dlv"
dl1=$(field steps_per_s "$(line '^dl env=Breakout envs=1 ' "$dl_out")")
dlv=$(field steps_per_s "$(line '^dl env=Breakout envs=[0-9]* ' "$(printf '%s\n' "$dl_out" | grep -v 'envs=1 ')")")
mina=$(field steps_per_s "$(line '^minatar env=Breakout ' "$ref_out")")
echo "rl env=Breakout dl_steps_per_s=$dl1 minatar_steps_per_s=$mina speedup=$(ratio "$dl1" "$mina") dl_vec_steps_per_s=$dlv"

for net in cartpole breakout; do
    d=$(line "^dl net=$net threads=1 " "$dl_out"); t=$(line "^torch net=$net threads=1 " "$ref_out")
    da=$(field act_us_median "$d"); ta=$(field forward_us_median "$t")
    echo "rl net=$net threads=1 dl_act_us=$da torch_us=$ta speedup=$(ratio "$ta" "$da")" \
         "dl_act_us_p99=$(field act_us_p99 "$d") torch_us_p99=$(field forward_us_p99 "$t")"
    # the last line of each: dl's default thread count, torch's most (both print threads=1 first)
    d=$(printf '%s\n' "$dl_out" | grep "^dl net=$net .* batch=1 " | tail -n 1 || true)
    t=$(printf '%s\n' "$ref_out" | grep "^torch net=$net .* batch=1 " | tail -n 1 || true)
    da=$(field act_us_median "$d"); ta=$(field forward_us_median "$t")
    echo "rl net=$net threads=default dl_threads=$(field threads "$d") dl_act_us=$da" \
         "torch_threads=$(field threads "$t") torch_us=$ta speedup=$(ratio "$ta" "$da")"
    d=$(line "^dl net=$net threads=1 batch=[0-9]* update" "$dl_out"); t=$(line "^torch net=$net threads=1 batch=[0-9]* update" "$ref_out")
    da=$(field update_ms_median "$d"); ta=$(field update_ms_median "$t")
    echo "rl net=$net update threads=1 batch=$(field batch "$d") dl_update_ms=$da torch_update_ms=$ta speedup=$(ratio "$ta" "$da")"
done
