#!/usr/bin/env bash
# tests/run.sh - build and run every test program, then the compile checks; print the total.
#
# Every tests/test_*.c is a standalone program whose last line is "N passed, N failed[, N
# skipped]". Each is built and run twice:
#   O2    cc -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -I. tests/test_x.c -lm -lpthread
#   asan  cc -std=c99 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer ...
#         (halts on the first UB report, checks for leaks; no -Werror here, since sanitizer
#         instrumentation can cause spurious warnings - the O2 build already checks warnings)
# then tests/test_compile.sh (gcc, clang, g++, DL_NO_THREADS, DL_STATIC, two-file builds) and
# tests/test_examples.sh (every example built with -Werror and run briefly on the shipped data).
# Each program's result line is printed with its name; a program that does not build, crashes,
# hangs (TEST_TIMEOUT seconds, default 600) or prints no summary counts as 1 failed. The counts
# of all programs are added up into the last line; the exit status is nonzero on any failure.
# Programs run from the repository root (test data: tests/data/...), JOBS at a time (default:
# the number of CPUs). ASAN=0 skips the sanitizer pass. Usage: bash tests/run.sh [test_x ...]
set -uo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-cc}
JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
out=build/tests
mkdir -p "$out"

FLAGS_O2="-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -I."
FLAGS_ASAN="-std=c99 -O1 -g -Wall -Wextra -Wpedantic -fsanitize=address,undefined -fno-omit-frame-pointer -I."
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export ASAN_OPTIONS=detect_leaks=1

# Which programs: all tests/test_*.c, or those named on the command line.
progs=()
if [ $# -gt 0 ]; then
    for p in "$@"; do p=${p%.c}; progs+=("$(basename "$p")"); done
else
    for f in tests/test_*.c; do [ -f "$f" ] && progs+=("$(basename "$f" .c)"); done
fi

total_passed=0 total_failed=0 total_skipped=0

# One program in one mode: build, run, write NAME.MODE.{build,out,err,rc}.
build_and_run() {  # build_and_run NAME MODE FLAGS
    local name=$1 mode=$2 flags=$3 exe="$out/$1.$2"
    rm -f "$exe" "$exe.out" "$exe.err" "$exe.rc" "$exe.time"
    # shellcheck disable=SC2086
    if ! $CC $flags "tests/$name.c" -o "$exe" -lm -lpthread > "$exe.build" 2>&1; then
        echo build > "$exe.rc"
        return
    fi
    local t0 rc
    t0=$(date +%s%N)
    timeout "$TEST_TIMEOUT" "$exe" > "$exe.out" 2> "$exe.err" < /dev/null
    rc=$?
    echo $(( ($(date +%s%N) - t0) / 100000000 )) > "$exe.time"   # tenths of a second
    echo $rc > "$exe.rc"
}

# Print one program's result line and add its counts; explain failures from its logs.
report() {  # report LABEL PREFIX (PREFIX = path without .out/.err/.rc)
    local label=$1 p=$2 rc summary np nf ns t note=""
    rc=$(cat "$p.rc" 2>/dev/null || echo missing)
    if [ "$rc" = build ]; then
        printf '%-28s does not build: 0 passed, 1 failed\n' "$label"
        grep -E 'error|warning|undefined reference' "$p.build" | awk '!seen[$0]++' | head -15 | sed 's/^/    /'
        total_failed=$((total_failed + 1))
        return
    fi
    summary=$(tail -n 1 "$p.out" 2>/dev/null)
    if [[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
        np=${BASH_REMATCH[1]} nf=${BASH_REMATCH[2]} ns=${BASH_REMATCH[4]:-0}
        # Summary printed, but the program still failed (e.g. a leak report at exit).
        if [ "$rc" != 0 ] && [ "$nf" = 0 ]; then nf=1; note=" (exit status $rc after its summary)"; fi
    else
        np=0 nf=1 ns=0
        case "$rc" in
            124) note=" (timed out after ${TEST_TIMEOUT}s)" ;;
            0)   note=" (no summary line)" ;;
            *)   note=" (crashed or exited with status $rc before its summary)" ;;
        esac
    fi
    total_passed=$((total_passed + np)) total_failed=$((total_failed + nf)) total_skipped=$((total_skipped + ns))
    if [ -f "$p.time" ]; then t=$(cat "$p.time"); note="$note  ($((t / 10)).$((t % 10))s)"; fi
    if [ "$ns" -gt 0 ]; then printf '%-28s %s passed, %s failed, %s skipped%s\n' "$label" "$np" "$nf" "$ns" "$note"
    else printf '%-28s %s passed, %s failed%s\n' "$label" "$np" "$nf" "$note"; fi
    if [ "$nf" = 0 ]; then
        grep -E '^    skip:' "$p.out" 2>/dev/null       # say why things were skipped
    else                                                # failed tests, their checks, stderr
        grep -E '^(FAIL|    )' "$p.out" 2>/dev/null | head -60 | sed 's/^/    /'
        if [ -s "$p.err" ]; then tail -n 40 "$p.err" | sed 's/^/    | /'; fi
    fi
    return 0
}

# All programs of one mode, JOBS at a time; results printed in name order once all are done.
run_mode() {  # run_mode MODE FLAGS
    local mode=$1 flags=$2 name
    echo "== $mode: ${#progs[@]} programs, $JOBS at a time"
    for name in "${progs[@]}"; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
        build_and_run "$name" "$mode" "$flags" &
    done
    wait
    for name in "${progs[@]}"; do report "$name [$mode]" "$out/$name.$mode"; done
}

start=$(date +%s)
[ ${#progs[@]} -gt 0 ] && run_mode O2 "$FLAGS_O2"
[ ${#progs[@]} -gt 0 ] && [ "${ASAN:-1}" != 0 ] && run_mode asan "$FLAGS_ASAN"

if [ $# -eq 0 ]; then
    echo "== compile checks"
    t0=$(date +%s%N)
    JOBS=$JOBS bash tests/test_compile.sh > "$out/test_compile.out" 2> "$out/test_compile.err"
    echo $? > "$out/test_compile.rc"
    echo $(( ($(date +%s%N) - t0) / 100000000 )) > "$out/test_compile.time"
    grep -E '^headers:' "$out/test_compile.out"
    report "test_compile" "$out/test_compile"
    echo "== examples (short runs on the shipped data)"
    t0=$(date +%s%N)
    JOBS=$JOBS bash tests/test_examples.sh > "$out/test_examples.out" 2> "$out/test_examples.err"
    echo $? > "$out/test_examples.rc"
    echo $(( ($(date +%s%N) - t0) / 100000000 )) > "$out/test_examples.time"
    report "test_examples" "$out/test_examples"
fi

echo "== done in $(( $(date +%s) - start ))s"
if [ "$total_skipped" -gt 0 ]; then echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
else echo "$total_passed passed, $total_failed failed"; fi
[ "$total_failed" -eq 0 ]
