#!/usr/bin/env bash
# tests/test_tsan.sh - tests/test_threads.c under ThreadSanitizer: any data race between two user
# threads that build, train and log at the same time is a failure.
#
#   clang -std=c99 -fsanitize=thread -O1 -g -I. tests/test_threads.c -lm -lpthread
#
# (dl_optim.h leaves out its ifunc-chosen FMA clones under TSan by itself: their resolver runs
# before TSan's runtime is set up and crashed the program at load time.)
# The program's own result line is passed on; a TSan report (exit status 66) or a crash counts
# as 1 failed. When TSan cannot run here (no clang, no TSan runtime, or a kernel whose address
# layout TSan rejects; then the run is retried without address randomization) the test is
# skipped, with the reason. The last line is "N passed, N failed[, N skipped]".
# Usage: bash tests/test_tsan.sh   (from anywhere; CC=clang-18 picks another compiler)
set -uo pipefail
cd "$(dirname "$0")/.."

CC=${CC:-clang}
TEST_TIMEOUT=${TEST_TIMEOUT:-900}
out=build/tests
mkdir -p "$out"
exe=$out/test_threads.tsan
export TSAN_OPTIONS="halt_on_error=1 exitcode=66 second_deadlock_stack=1 ${TSAN_OPTIONS:-}"

skip() {
    echo "    skip: $*"
    echo "0 passed, 0 failed, 1 skipped"
    exit 0
}

command -v "$CC" > /dev/null 2>&1 || skip "$CC not found (ThreadSanitizer needs clang or gcc with libtsan)"

# Can TSan run at all here? A trivial program tells, before the real build (a minute).
probe=$out/tsan_probe
printf '#include <pthread.h>\nstatic void *f(void *a) { return a; }\nint main(void) { pthread_t t; pthread_create(&t, 0, f, 0); return pthread_join(t, 0); }\n' > "$probe.c"
if ! "$CC" -fsanitize=thread -g "$probe.c" -o "$probe" -lpthread > "$probe.build" 2>&1; then
    skip "$CC cannot build with -fsanitize=thread: $(head -n 1 "$probe.build")"
fi
run_prefix=()
if ! "$probe" > "$probe.out" 2>&1; then
    # Kernels with more mmap randomization than TSan's memory layout allows: retry without ASLR.
    if command -v setarch > /dev/null 2>&1 && setarch "$(uname -m)" -R "$probe" > "$probe.out" 2>&1; then
        run_prefix=(setarch "$(uname -m)" -R)
    else
        skip "a ThreadSanitizer program does not run here: $(head -n 1 "$probe.out")"
    fi
fi

if ! "$CC" -std=c99 -fsanitize=thread -O1 -g -Wall -Wextra -Wpedantic -I. \
        tests/test_threads.c -o "$exe" -lm -lpthread > "$exe.build" 2>&1; then
    echo "test_threads [tsan] does not build:"
    grep -E 'error|undefined reference' "$exe.build" | head -15 | sed 's/^/    /'
    echo "0 passed, 1 failed"
    exit 1
fi

timeout "$TEST_TIMEOUT" "${run_prefix[@]}" "$exe" > "$exe.out" 2> "$exe.err" < /dev/null
rc=$?
summary=$(tail -n 1 "$exe.out")
grep -E '^(ok|FAIL|    )' "$exe.out"
if [[ "$summary" =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed(,\ ([0-9]+)\ skipped)?$ ]]; then
    np=${BASH_REMATCH[1]} nf=${BASH_REMATCH[2]} ns=${BASH_REMATCH[4]:-0}
    if [ "$rc" != 0 ] && [ "$nf" = 0 ]; then nf=1; echo "    exit status $rc after the summary (a TSan report?)"; fi
else
    np=0 nf=1 ns=0
    echo "    no summary line: exit status $rc$([ "$rc" = 66 ] && echo ' (a TSan report)')$([ "$rc" = 124 ] && echo " (timed out after ${TEST_TIMEOUT}s)")"
fi
if [ "$nf" != 0 ] && [ -s "$exe.err" ]; then grep -E -A 30 'WARNING: ThreadSanitizer' "$exe.err" | head -80 | sed 's/^/    | /'; tail -n 5 "$exe.err" | sed 's/^/    | /'; fi
if [ "$ns" -gt 0 ]; then echo "$np passed, $nf failed, $ns skipped"; else echo "$np passed, $nf failed"; fi
[ "$nf" -eq 0 ]
