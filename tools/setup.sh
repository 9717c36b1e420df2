#!/usr/bin/env bash
# tools/setup.sh - install what building and testing dl needs, if it is missing.
#
#   tools/setup.sh           C and C++ compilers: gcc (with its sanitizer runtimes), g++, clang,
#                            the stb headers (libstb-dev, <stb/stb_image.h>) for the image tests,
#                            and cmake and pkg-config for the install test (tests/test_install.sh)
#   tools/setup.sh --bench   the above, plus OpenBLAS (libopenblas-dev) for bench/
#   tools/setup.sh --demo    the above, plus the full Fashion-MNIST (dataset-fashion-mnist, 31 MB,
#                            into /usr/share/datasets/fashion-mnist) when it is not there; optional:
#                            if it cannot be installed the demos use the subset in data/fashion-mnist
#   tools/setup.sh --torch   the above, plus PyTorch for /usr/bin/python3 (Debian's python3-torch),
#                            the reference of bench/train.sh and part of bench/rl.sh's; optional
#   tools/setup.sh --gym     the above, plus Gymnasium and MinAtar (with numpy) from PyPI in a
#                            virtual environment, build/pyenv (made with /usr/bin/python3 and
#                            Debian's python3-venv), the references of bench/rl.sh; optional.
#                            MinAtar is installed without its dependencies: its environments need
#                            only numpy (the rest is for its plots and examples, torch included)
#
# Called by `make demo`, `make test`, `make bench`, `make bench-train` (--torch) and `make
# bench-rl` (--torch --gym), so that on a fresh Debian machine those commands are all the set-up
# there is. It is quiet and quick when everything is present, runs
# `apt-get update` only when something has to be installed, and never fails for want of root
# when the tools are already there. It does not need network access unless it installs.
# Missing clang, stb, cmake or pkg-config is a warning, not an error: the tests then skip the
# clang builds, the image-folder tests or those parts of the install test. A failed apt-get is
# reported; what still does not work afterwards decides. The optional Python references are
# never a reason to fail: when one cannot be installed (no root, no network, no package for this
# system) it says so, and the benchmark prints NA for that reference.
set -euo pipefail

want_bench=0
want_demo=0
want_torch=0
want_gym=0
pyenv=build/pyenv
fashion_dir=/usr/share/datasets/fashion-mnist
for arg in "$@"; do
    case "$arg" in
        --bench) want_bench=1 ;;
        --demo) want_demo=1 ;;
        --torch) want_torch=1 ;;
        --gym) want_gym=1 ;;
        *) echo "usage: tools/setup.sh [--bench] [--demo] [--torch] [--gym]" >&2; exit 2 ;;
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
have_cmake() { command -v cmake >/dev/null 2>&1; }
have_pkgconfig() { command -v pkg-config >/dev/null 2>&1; }
have_torch() { /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; }
have_venv()  { /usr/bin/python3 -c 'import venv, ensurepip' >/dev/null 2>&1; }   # Debian: python3-venv
have_gym()   { "$pyenv/bin/python" -c 'import gymnasium, minatar, numpy' >/dev/null 2>&1; }

missing=()
{ have_cc && have_asan; } || missing+=(gcc libc6-dev)
have_gxx || missing+=(g++)
have_clang || missing+=(clang)
have_stb || missing+=(libstb-dev)
have_cmake || missing+=(cmake)
have_pkgconfig || missing+=(pkg-config)
if [ "$want_bench" = 1 ]; then have_blas || missing+=(libopenblas-dev); fi
optional=()     # installed on their own, after the rest; never a reason to fail
if [ "$want_demo" = 1 ]; then have_fashion || optional+=(dataset-fashion-mnist); fi
if [ "$want_torch" = 1 ]; then have_torch || optional+=(python3-torch); fi
if [ "$want_gym" = 1 ] && ! have_gym; then have_venv || optional+=(python3-venv); fi

# Gymnasium and MinAtar from PyPI into build/pyenv (after apt-get, which may bring python3-venv).
install_gym() {
    have_gym && return 0
    if ! have_venv; then
        echo "setup: warning: cannot make a virtual environment (/usr/bin/python3 -m venv; Debian: python3-venv); the gym and minatar references of bench-rl will be NA" >&2
        return 0
    fi
    echo "setup: installing gymnasium, numpy and minatar (pip, into $pyenv)"
    if { [ -x "$pyenv/bin/python" ] || /usr/bin/python3 -m venv "$pyenv"; } &&
       "$pyenv/bin/python" -m pip install -q --disable-pip-version-check gymnasium numpy &&
       "$pyenv/bin/python" -m pip install -q --disable-pip-version-check --no-deps minatar && have_gym; then
        return 0
    fi
    echo "setup: warning: could not install gymnasium/minatar into $pyenv (pip needs PyPI); the gym and minatar references of bench-rl will be NA" >&2
}
if [ ${#missing[@]} -eq 0 ] && [ ${#optional[@]} -eq 0 ]; then
    if [ "$want_gym" = 1 ]; then install_gym; fi
    exit 0
fi

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
have_cmake || echo "setup: warning: no cmake; the install test's CMake checks will be skipped" >&2
have_pkgconfig || echo "setup: warning: no pkg-config; the install test's pkg-config checks will be skipped" >&2
if [ "$want_torch" = 1 ] && ! have_torch; then
    echo "setup: warning: /usr/bin/python3 cannot import torch (Debian: apt-get install python3-torch; not packaged for every architecture): the PyTorch figures of bench-train and bench-rl will be NA" >&2
fi
if [ "$want_gym" = 1 ]; then install_gym; fi
if [ "$want_demo" = 1 ] && ! have_fashion; then
    echo "setup: note: no $fashion_dir (Debian: apt-get install dataset-fashion-mnist); the demos use the subset in data/fashion-mnist" >&2
fi
if [ "$want_bench" = 1 ] && ! have_blas; then echo "setup: cannot link -lopenblas" >&2; exit 1; fi
exit 0
