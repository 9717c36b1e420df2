#!/usr/bin/env bash
# tools/setup.sh - install what building and testing dl needs, if it is missing.
#
#   tools/setup.sh           C and C++ compilers: gcc (with its sanitizer runtimes), g++, clang,
#                            and the stb headers (libstb-dev, <stb/stb_image.h>) for the image tests
#   tools/setup.sh --bench   the above, plus OpenBLAS (libopenblas-dev) for bench/
#   tools/setup.sh --demo    the above, plus the full Fashion-MNIST (dataset-fashion-mnist, 31 MB,
#                            into /usr/share/datasets/fashion-mnist) when it is not there; optional:
#                            if it cannot be installed the demos use the subset in data/fashion-mnist
#
# Called by `make demo`, `make test` and `make bench`, so that on a fresh Debian machine those
# commands are all the set-up there is. It is quiet and quick when everything is present, runs
# `apt-get update` only when something has to be installed, and never fails for want of root
# when the tools are already there. It does not need network access unless it installs.
# Missing clang or stb is a warning, not an error: the tests then skip the clang builds or the
# image-folder tests. A failed apt-get is reported; what still does not work afterwards decides.
set -euo pipefail

want_bench=0
want_demo=0
fashion_dir=/usr/share/datasets/fashion-mnist
for arg in "$@"; do
    case "$arg" in
        --bench) want_bench=1 ;;
        --demo) want_demo=1 ;;
        *) echo "usage: tools/setup.sh [--bench] [--demo]" >&2; exit 2 ;;
    esac
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#include <stdio.h>\n#include <math.h>\nint main(void) { printf("%%g\\n", sqrt(4.0)); return 0; }\n' > "$tmp/t.c"
printf '#include <cblas.h>\nint main(void) { float a = 1, b = 2, c = 0; cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, 1, 1, 1, 1.0f, &a, 1, &b, 1, 0.0f, &c, 1); return c != 2; }\n' > "$tmp/blas.c"

# Each check succeeds when that piece works, not merely when a file exists.
have_cc()    { command -v cc >/dev/null 2>&1 && cc "$tmp/t.c" -o "$tmp/t" -lm -lpthread >/dev/null 2>&1; }
have_asan()  { cc -fsanitize=address,undefined "$tmp/t.c" -o "$tmp/ta" -lm >/dev/null 2>&1; }
have_gxx()   { command -v g++ >/dev/null 2>&1 && g++ -x c++ "$tmp/t.c" -o "$tmp/tx" >/dev/null 2>&1; }
have_clang() { command -v clang >/dev/null 2>&1 && clang "$tmp/t.c" -o "$tmp/tc" -lm >/dev/null 2>&1; }
have_blas()  { cc "$tmp/blas.c" -o "$tmp/tb" -lopenblas -lm -lpthread >/dev/null 2>&1; }
have_stb()   { printf '#include <stb/stb_image.h>\n#include <stb/stb_image_write.h>\n' | cc -x c -fsyntax-only - >/dev/null 2>&1; }
have_fashion() { [ -d "$fashion_dir" ]; }

missing=()
{ have_cc && have_asan; } || missing+=(gcc libc6-dev)
have_gxx || missing+=(g++)
have_clang || missing+=(clang)
have_stb || missing+=(libstb-dev)
if [ "$want_bench" = 1 ]; then have_blas || missing+=(libopenblas-dev); fi
optional=()     # installed on their own, after the rest; never a reason to fail
if [ "$want_demo" = 1 ]; then have_fashion || optional+=(dataset-fashion-mnist); fi
[ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ] && exit 0

# Something is missing: install it with apt-get, as root or through password-less sudo.
sudo_cmd=()
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo_cmd=(sudo -n); fi
fi
if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" = 0 ] || [ ${#sudo_cmd[@]} -gt 0 ]; }; then
    to_install=(${missing[@]+"${missing[@]}"} ${optional[@]+"${optional[@]}"})
    echo "setup: installing ${to_install[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    "${sudo_cmd[@]}" apt-get update -qq >/dev/null || echo "setup: warning: apt-get update failed" >&2
    if [ ${#missing[@]} -gt 0 ]; then
        "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null ||
            echo "setup: warning: apt-get install ${missing[*]} failed" >&2
    fi
    for pkg in ${optional[@]+"${optional[@]}"}; do
        "${sudo_cmd[@]}" apt-get install -y -qq "$pkg" >/dev/null ||
            echo "setup: warning: apt-get install $pkg failed" >&2
    done
else
    [ ${#missing[@]} -eq 0 ] ||
        echo "setup: missing ${missing[*]}; please install them (Debian: apt-get install ${missing[*]})" >&2
fi

# What still does not work after that decides the exit status.
if ! have_cc; then echo "setup: no working C compiler (cc)" >&2; exit 1; fi
if ! have_asan; then echo "setup: cc cannot build with -fsanitize=address,undefined" >&2; exit 1; fi
have_gxx || echo "setup: warning: no g++; the C++ build checks will be skipped" >&2
have_clang || echo "setup: warning: no clang; the clang build checks will be skipped" >&2
have_stb || echo "setup: warning: no <stb/stb_image.h> (libstb-dev); the image-folder tests will be skipped" >&2
if [ "$want_demo" = 1 ] && ! have_fashion; then
    echo "setup: note: no $fashion_dir (Debian: apt-get install dataset-fashion-mnist); the demos use the subset in data/fashion-mnist" >&2
fi
if [ "$want_bench" = 1 ] && ! have_blas; then echo "setup: cannot link -lopenblas" >&2; exit 1; fi
exit 0
