#!/usr/bin/env bash
# tests/test_install.sh - does `make install` give a dl that other projects can use, and does
# `make uninstall` take back all of it?
#
# In a temporary directory (build/test_install/):
#   install        make install PREFIX=<tmp>/prefix: the headers, dl.pc and the CMake package are
#                  there, and both carry dl_tensor.h's version (DL_VERSION_*, else 0.2.0)
#   pkg_config     a program outside the repository, built with `pkg-config --cflags --libs dl`
#                  (PKG_CONFIG_PATH=<prefix>/lib/pkgconfig), runs and prints what it computed
#   cmake          the same program through find_package(dl <major.minor> REQUIRED) and
#                  target_link_libraries(... dl::dl): configures, builds, runs
#   cmake_version  find_package(dl 99.0) is refused (dlConfigVersion.cmake)
#   uninstall      make uninstall leaves nothing under the prefix, not even a directory
#   destdir        make install DESTDIR=<tmp>/stage PREFIX=/usr/local puts everything under the
#                  staging root, the staged dl.pc works where it is (paths relative to itself:
#                  a file including the headers compiles with its flags), and make uninstall
#                  with the same DESTDIR leaves the root empty
# pkg_config and cmake are skipped (not failed) when pkg-config or cmake is not installed
# (tools/setup.sh installs both). Output ends like a test program's: "N passed, N failed[, N
# skipped]"; the exit status is non-zero on any failure. Run from anywhere:
# bash tests/test_install.sh   (CC sets the compiler; the programs are built with -O0: they
# check paths and flags, not code)
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

CC=${CC:-cc}
out=$root/build/test_install
rm -rf "$out"
mkdir -p "$out/src"
prefix=$out/prefix
# A make of our own: not the caller's MAKEFLAGS (make test T=... PREFIX=...), nor its DESTDIR.
mk() { env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u DESTDIR make --no-print-directory -C "$root" "$@"; }

version=$(awk '$1 == "#define" && $2 ~ /^DL_VERSION_(MAJOR|MINOR|PATCH)$/ && $3 ~ /^[0-9]+$/ { v[$2] = $3; n++ }
               END { if (n == 3) print v["DL_VERSION_MAJOR"] "." v["DL_VERSION_MINOR"] "." v["DL_VERSION_PATCH"];
                     else print "0.2.0" }' dl_tensor.h)
major_minor=${version%.*}

# The user's program: one file, the implementation included, a value that needs libm.
cat > "$out/src/main.c" <<'EOF'
#define DL_IMPLEMENTATION
#include <dl_nn.h>
#include <math.h>
#include <stdio.h>
int main(void) {
    float xs[4] = {1, 2, 3, 4};
    dl_tensor *x = dl_tensor_from(DL_DTYPE_F32, 1, DL_SHAPE(4), xs);
    dl_tensor *s = dl_sum_all(dl_exp(x));
    if (!s) { printf("error: %s\n", dl_error()); return 1; }
    printf("sum_exp=%.3f\n", dl_item(s));
    dl_tensor_free(x);
    return 0;
}
EOF
cat > "$out/src/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.10)
project(dl_user C)
find_package(dl $major_minor REQUIRED)
add_executable(app main.c)
target_link_libraries(app PRIVATE dl::dl)
set_target_properties(app PROPERTIES C_STANDARD 99 C_STANDARD_REQUIRED ON)
EOF
mkdir -p "$out/src_v99"
sed 's/find_package(dl [0-9.]* REQUIRED)/find_package(dl 99.0 REQUIRED)/' "$out/src/CMakeLists.txt" > "$out/src_v99/CMakeLists.txt"
cp "$out/src/main.c" "$out/src_v99/"
expected=$(awk 'BEGIN { printf "sum_exp=%.3f", exp(1) + exp(2) + exp(3) + exp(4) }')

passed=0 failed=0 skipped=0
result() {  # result NAME STATUS [DETAIL...]: STATUS ok, FAIL or skip
    local name=$1 status=$2; shift 2
    case "$status" in
        ok)   passed=$((passed + 1)); echo "ok   $name" ;;
        skip) skipped=$((skipped + 1)); echo "skip $name"; echo "    skip: $*" ;;
        *)    failed=$((failed + 1)); echo "FAIL $name"; [ $# -eq 0 ] || printf '%s\n' "$@" | head -20 | sed 's/^/    /' ;;
    esac
}
# The files make install must write, relative to the prefix.
want=()
for f in dl_*.h dl_cuda.cu; do [ -f "$f" ] && want+=("include/$f"); done
want+=(lib/pkgconfig/dl.pc lib/cmake/dl/dlConfig.cmake lib/cmake/dl/dlConfigVersion.cmake)

# ---- install
if log=$(mk install PREFIX="$prefix" 2>&1); then
    problems=()
    for f in "${want[@]}"; do
        [ -f "$prefix/$f" ] || problems+=("missing $f")
    done
    for f in dl_*.h; do cmp -s "$f" "$prefix/include/$f" || problems+=("include/$f differs from $f"); done
    grep -qx "Version: $version" "$prefix/lib/pkgconfig/dl.pc" 2>/dev/null || problems+=("dl.pc: no 'Version: $version'")
    grep -q "PACKAGE_VERSION \"$version\"" "$prefix/lib/cmake/dl/dlConfigVersion.cmake" 2>/dev/null ||
        problems+=("dlConfigVersion.cmake: not version $version")
    if [ ${#problems[@]} -eq 0 ]; then result install ok; else result install FAIL "${problems[@]}" "$log"; fi
else
    result install FAIL "make install failed:" "$log"
fi

# ---- pkg-config: built in the temporary directory, so that only the installed headers are found
run_pc() {  # run_pc PC_DIR EXE: build main.c with dl's flags, run it, compare; EXE "": only
           # check that a file including the headers (no implementation) compiles with the flags
    local flags got
    flags=$(PKG_CONFIG_PATH=$1 pkg-config --cflags --libs dl 2>&1) || { echo "pkg-config failed: $flags"; return 1; }
    [ "$(PKG_CONFIG_PATH=$1 pkg-config --modversion dl)" = "$version" ] || { echo "--modversion is not $version"; return 1; }
    if [ -z "$2" ]; then
        # shellcheck disable=SC2086
        (cd "$out/src" && grep -v DL_IMPLEMENTATION main.c | $CC -std=c99 -fsyntax-only -x c - $flags) 2>&1 ||
            { echo "flags: $flags"; return 1; }
        return 0
    fi
    # shellcheck disable=SC2086
    (cd "$out/src" && $CC -std=c99 -O0 main.c $flags -o "$2") 2>&1 || { echo "flags: $flags"; return 1; }
    got=$("$2" 2>&1) || { echo "$got"; return 1; }
    [ "$got" = "$expected" ] || { echo "printed '$got', expected '$expected'"; return 1; }
}
if ! command -v pkg-config >/dev/null 2>&1; then
    result pkg_config skip "pkg-config not installed"
elif log=$(run_pc "$prefix/lib/pkgconfig" "$out/app_pc" 2>&1); then
    result pkg_config ok
else
    result pkg_config FAIL "$log"
fi

# ---- CMake
if ! command -v cmake >/dev/null 2>&1; then
    result cmake skip "cmake not installed"
    result cmake_version skip "cmake not installed"
else
    if log=$(cmake -S "$out/src" -B "$out/cmake_build" -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_C_COMPILER="$(command -v "$CC")" 2>&1 &&
             cmake --build "$out/cmake_build" 2>&1 && got=$("$out/cmake_build/app" 2>&1) && echo "$got" &&
             [ "$got" = "$expected" ]); then
        result cmake ok
    else
        result cmake FAIL "$log"
    fi
    if log=$(cmake -S "$out/src_v99" -B "$out/cmake_build_v99" -DCMAKE_PREFIX_PATH="$prefix" 2>&1); then
        result cmake_version FAIL "find_package(dl 99.0) accepted version $version"
    elif echo "$log" | grep -q "$version"; then
        result cmake_version ok
    else
        result cmake_version FAIL "$log"
    fi
fi

# ---- uninstall: not a file or directory left under the prefix (install created all of them)
if log=$(mk uninstall PREFIX="$prefix" 2>&1); then
    if [ -e "$prefix" ]; then result uninstall FAIL "left behind:" "$(cd "$out" && find prefix | head -20)" "$log"
    else result uninstall ok; fi
else
    result uninstall FAIL "make uninstall failed:" "$log"
fi

# ---- DESTDIR staging with the usual prefix
stage=$out/stage
if ! log=$(mk install DESTDIR="$stage" PREFIX=/usr/local 2>&1); then
    result destdir FAIL "make install DESTDIR=... failed:" "$log"
else
    problems=()
    for f in "${want[@]}"; do [ -f "$stage/usr/local/$f" ] || problems+=("missing $stage/usr/local/$f"); done
    if command -v pkg-config >/dev/null 2>&1; then
        plog=$(run_pc "$stage/usr/local/lib/pkgconfig" "" 2>&1) || problems+=("staged dl.pc: $plog")
    fi
    ulog=$(mk uninstall DESTDIR="$stage" PREFIX=/usr/local 2>&1) || problems+=("make uninstall failed: $ulog")
    left=$(cd "$stage" 2>/dev/null && find . -mindepth 1 | head -20)
    [ -z "$left" ] || problems+=("left behind in the staging root:" "$left")
    if [ ${#problems[@]} -eq 0 ]; then result destdir ok; else result destdir FAIL "${problems[@]}"; fi
fi

if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"
else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ]
