#!/usr/bin/env bash
# tests/run.sh - build and run every test program, then the scripted checks; print the total.
#
# Every tests/test_*.c is a standalone program whose last line is "N passed, N failed[, N
# skipped]". Each is built and run twice:
#   O2    cc -std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -I. ... -lm -lpthread
#   asan  cc -std=c99 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer ...
#         (halts on the first UB report, checks for leaks; no -Werror here, since sanitizer
#         instrumentation can cause spurious warnings - the O2 build already checks warnings)
# The implementation is compiled once per mode: tests/dl_impl.c (every header, allocations
# counted for tests/count_alloc.h) into build/tests/dl_impl.MODE.o, reused while its
# preprocessed text, compiler and flags are unchanged; each test is compiled with
# -DDL_IMPLEMENTATION_ELSEWHERE (its own DL_IMPLEMENTATION is ignored) and linked with it.
# A test that configures the library itself (#defines a DL_* macro other than DL_IMPLEMENTATION:
# its own DL_MALLOC, a DL__TEST_* hook) or calls a static internal (dl__name(...)) cannot use
# the shared object; it is built alone with its own copy, as `cc tests/test_x.c` would (the
# rule: tests/own_impl.sh). The mode's first line names them.
# Then, when no program is named, the scripts: tests/test_compile.sh (gcc, clang, g++,
# DL_NO_THREADS, DL_STATIC, two-file builds), tests/test_examples.sh (every example built with
# -Werror and run briefly on the shipped data), tests/test_install.sh (make install into a
# temporary prefix, used through pkg-config and CMake, then make uninstall) and
# tests/test_tsan.sh (tests/test_threads.c under ThreadSanitizer).
# Each program's result line is printed with its name; a program that does not build, crashes,
# hangs (TEST_TIMEOUT seconds, default 600) or prints no summary counts as 1 failed. The counts
# of all programs are added up into the last line; the exit status is nonzero on any failure.
# Programs run from the repository root (test data: tests/data/...), JOBS at a time (default:
# the number of CPUs). ASAN=0 skips the sanitizer pass.
# Usage: bash tests/run.sh [test_x ...]   (a name may also be one of the scripts: test_compile,
# test_examples, test_install, test_tsan)
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

# Which programs and scripts: all tests/test_*.c and the four scripts, or those named.
progs=() scripts=()
if [ $# -gt 0 ]; then
    for p in "$@"; do
        p=$(basename "${p%.c}"); p=${p%.sh}
        if [ ! -f "tests/$p.c" ] && [ -f "tests/$p.sh" ]; then scripts+=("$p"); else progs+=("$p"); fi
    done
else
    for f in tests/test_*.c; do [ -f "$f" ] && progs+=("$(basename "$f" .c)"); done
    scripts=(test_compile test_examples test_install test_tsan)
fi

# Which need their own copy of the implementation (the rule is in tests/own_impl.sh).
own=() shared=()
own_list=" $(bash tests/own_impl.sh $(for name in ${progs[@]+"${progs[@]}"}; do echo "tests/$name.c"; done) | tr '\n' ' ') "
for name in ${progs[@]+"${progs[@]}"}; do
    case "$own_list" in *" tests/$name.c "*) own+=("$name") ;; *) shared+=("$name") ;; esac
done

total_passed=0 total_failed=0 total_skipped=0

# The mode's implementation object, unless the one there was built from the same preprocessed
# text with the same compiler and flags. Writes dl_impl.MODE.rc: 0, or "build" (log: .build).
build_impl() {  # build_impl MODE FLAGS
    local mode=$1 flags=$2 obj="$out/dl_impl.$1.o" key
    # shellcheck disable=SC2086
    key="$($CC --version 2>&1 | head -n 1) | $flags | $($CC $flags -DDL_TEST_COUNT_ALLOC -E tests/dl_impl.c 2>&1 | cksum)"
    if [ -f "$obj" ] && [ "$(cat "$obj.key" 2>/dev/null)" = "$key" ]; then
        echo 0 > "$obj.rc.tmp"
    # shellcheck disable=SC2086
    elif $CC $flags -DDL_TEST_COUNT_ALLOC -c tests/dl_impl.c -o "$obj.tmp" > "$obj.build" 2>&1; then
        mv "$obj.tmp" "$obj"; echo "$key" > "$obj.key"; echo 0 > "$obj.rc.tmp"
    else
        rm -f "$obj" "$obj.key"; echo build > "$obj.rc.tmp"
    fi
    mv "$obj.rc.tmp" "$out/dl_impl.$mode.rc"   # the shared programs wait for this file
}

# One program in one mode: build, run, write NAME.MODE.{build,out,err,rc}. SHARED = 1: compile
# it alone first, then link it with the mode's implementation object once that is there.
build_and_run() {  # build_and_run NAME MODE FLAGS SHARED
    local name=$1 mode=$2 flags=$3 exe="$out/$1.$2" rc
    rm -f "$exe" "$exe.o" "$exe.out" "$exe.err" "$exe.rc" "$exe.time"
    if [ "$4" = 1 ]; then
        # shellcheck disable=SC2086
        if ! $CC $flags -DDL_IMPLEMENTATION_ELSEWHERE -c "tests/$name.c" -o "$exe.o" > "$exe.build" 2>&1; then
            echo build > "$exe.rc"; return
        fi
        while [ ! -f "$out/dl_impl.$mode.rc" ]; do sleep 0.2; done
        if [ "$(cat "$out/dl_impl.$mode.rc")" != 0 ]; then echo impl > "$exe.rc"; return; fi
        # shellcheck disable=SC2086
        if ! $CC $flags "$exe.o" "$out/dl_impl.$mode.o" -o "$exe" -lm -lpthread >> "$exe.build" 2>&1; then
            echo build > "$exe.rc"; return
        fi
    else
        # shellcheck disable=SC2086
        if ! $CC $flags "tests/$name.c" -o "$exe" -lm -lpthread > "$exe.build" 2>&1; then
            echo build > "$exe.rc"; return
        fi
    fi
    local t0
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
    if [ "$rc" = impl ]; then
        printf '%-28s not linked (tests/dl_impl.c does not build): 0 passed, 1 failed\n' "$label"
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
# First the implementation object and the programs with their own copy (the long compiles),
# then the rest, which compile while the object is built and link once it is there.
run_mode() {  # run_mode MODE FLAGS
    local mode=$1 flags=$2 name
    echo "== $mode: ${#progs[@]} programs, $JOBS at a time${own[0]+; own implementation: ${own[*]}}"
    rm -f "$out/dl_impl.$mode.rc"
    if [ ${#shared[@]} -gt 0 ]; then build_impl "$mode" "$flags" & fi
    for name in ${own[@]+"${own[@]}"} ${shared[@]+"${shared[@]}"}; do
        while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
        case "$own_list" in
            *" tests/$name.c "*) build_and_run "$name" "$mode" "$flags" 0 & ;;
            *) build_and_run "$name" "$mode" "$flags" 1 & ;;
        esac
    done
    wait
    if [ "$(cat "$out/dl_impl.$mode.rc" 2>/dev/null)" = build ]; then
        printf '%-28s does not build: 0 passed, 1 failed\n' "dl_impl.c [$mode]"
        grep -E 'error|warning' "$out/dl_impl.$mode.o.build" | awk '!seen[$0]++' | head -15 | sed 's/^/    /'
        total_failed=$((total_failed + 1))
    fi
    for name in "${progs[@]}"; do report "$name [$mode]" "$out/$name.$mode"; done
}

# One script (tests/NAME.sh), its output kept in build/tests/NAME.{out,err}.
run_script() {  # run_script NAME
    local name=$1 t0
    case "$name" in
        test_compile) echo "== compile checks" ;;
        test_examples) echo "== examples (short runs on the shipped data)" ;;
        test_install) echo "== make install / uninstall (pkg-config, CMake)" ;;
        test_tsan) echo "== two threads, two models, under ThreadSanitizer" ;;
        *) echo "== $name" ;;
    esac
    t0=$(date +%s%N)
    JOBS=$JOBS bash "tests/$name.sh" > "$out/$name.out" 2> "$out/$name.err"
    echo $? > "$out/$name.rc"
    echo $(( ($(date +%s%N) - t0) / 100000000 )) > "$out/$name.time"
    [ "$name" = test_compile ] && grep -E '^headers:' "$out/$name.out"
    report "$name" "$out/$name"
}

start=$(date +%s)
[ ${#progs[@]} -gt 0 ] && run_mode O2 "$FLAGS_O2"
[ ${#progs[@]} -gt 0 ] && [ "${ASAN:-1}" != 0 ] && run_mode asan "$FLAGS_ASAN"
for name in ${scripts[@]+"${scripts[@]}"}; do run_script "$name"; done

echo "== done in $(( $(date +%s) - start ))s"
if [ "$total_skipped" -gt 0 ]; then echo "$total_passed passed, $total_failed failed, $total_skipped skipped"
else echo "$total_passed passed, $total_failed failed"; fi
[ "$total_failed" -eq 0 ]
