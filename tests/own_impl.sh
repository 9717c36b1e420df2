#!/usr/bin/env bash
# tests/own_impl.sh FILE.c ... - print those of the given programs that need their own copy of
# the implementation, i.e. cannot be linked with the shared one (tests/dl_impl.c, compiled once):
# a program that configures the library (#defines a DL_* macro other than DL_IMPLEMENTATION:
# its own DL_MALLOC, a DL__TEST_* hook, DL_NO_THREADS, ...), which one shared object cannot do
# for it, or that calls a static internal (dl__name(...)), which another object cannot reach.
# Used by tests/run.sh and the Makefile (examples), so that both follow the same rule.
for f in "$@"; do
    [ -f "$f" ] || continue
    if grep -E '^[[:space:]]*#[[:space:]]*define[[:space:]]+DL_[A-Za-z0-9_]*' "$f" |
           grep -qvE 'define[[:space:]]+DL_IMPLEMENTATION([^A-Za-z0-9_]|$)' ||
       grep -qE '(^|[^A-Za-z0-9_])dl__[A-Za-z0-9_]+[[:space:]]*\(' "$f"; then
        echo "$f"
    fi
done
exit 0
