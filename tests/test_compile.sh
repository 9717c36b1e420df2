#!/usr/bin/env bash
# tests/test_compile.sh - do the headers build everywhere they promise to?
#
# Compiles one translation unit holding every dl_*.h that exists (with DL_IMPLEMENTATION) under
# gcc, clang and g++ with all warnings as errors, then the variants: -DDL_NO_THREADS (which must
# leave no pthread symbol), -DDL_STATIC, -DDL_NO_STDIO, a two-file program (implementation in one file, plain
# include in the other, linked: catches duplicate symbols), the same with the plain file
# compiled as C++ (catches a missing extern "C"),
# dl_cuda.cu's CPU emulation (gcc, g++) and dl_cuda.cu under nvcc (-Werror) with the GPU test
# programs linked against it (skipping without a GPU) when nvcc exists, that dl_nn.h builds in any include order (it pulls in
# its prerequisites), that every include order and plain-then-implementation sequence of the
# headers compiles every implementation (tests/include_orders.sh), that the README's example builds and prints what it says, and that every
# examples/*.c builds.
# Each compile is one test. Output ends like a test program's: "N passed, N failed[, N skipped]".
# Run from anywhere: bash tests/test_compile.sh   (JOBS=n sets the parallelism)
set -uo pipefail
cd "$(dirname "$0")/.."

out=build/compile
mkdir -p "$out"
rm -f "$out"/*.status "$out"/*.log
jobs_max=${JOBS:-$(nproc 2>/dev/null || echo 2)}

CC=gcc   # the gcc checks are gcc by name; cc may be anything
# The three main builds use -O2 (some warnings need the optimizer); the variants, which check
# structure rather than code, use -O0 to save time.
CFLAGS_C="-std=c99 -O2 -Wall -Wextra -Wpedantic -Werror -I."
CFLAGS_CXX="-x c++ -std=c++11 -O2 -Wall -Wextra -Wpedantic -Werror -I."
CFLAGS_V="-std=c99 -O0 -Wall -Wextra -Wpedantic -Werror -I."
CFLAGS_VXX="-x c++ -std=c++11 -O0 -Wall -Wextra -Wpedantic -Werror -I."
LIBS="-lm -lpthread"

# The family, in include order (each needs the ones before it); only those that exist.
headers=()
for h in dl_tensor.h dl_optim.h dl_nn.h dl_gan.h dl_rl.h; do [ -f "$h" ] && headers+=("$h"); done

# A plain include of every header and a function that uses the API, so the linker has to find it.
write_user() {  # write_user FILE
    { for h in "${headers[@]}"; do echo "#include \"$h\""; done
      echo '#ifdef __cplusplus'
      echo 'extern "C"'
      echo '#endif'
      echo 'int dl_user_part(void);'
      echo 'int dl_user_part(void) {'
      echo '    dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 0, NULL);'
      echo '    int ok = t != NULL && dl_error()[0] == 0;'
      echo '    dl_tensor_free(t);'
      echo '    return ok;'
      echo '}'; } > "$1"
}
# The implementation, with a main(); with $2 = 1 it also calls dl_user_part from another file.
write_impl() {  # write_impl FILE CALLS_USER
    { echo '#define DL_IMPLEMENTATION'
      for h in "${headers[@]}"; do echo "#include \"$h\""; done
      if [ "$2" = 1 ]; then
          echo '#ifdef __cplusplus'
          echo 'extern "C"'
          echo '#endif'
          echo 'int dl_user_part(void);'
          echo 'int main(void) { return dl_user_part() ? 0 : 1; }'
      else
          echo 'int main(void) { dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 0, NULL); int bad = t == NULL; dl_tensor_free(t); return bad; }'
      fi; } > "$1"
}
write_impl "$out/all.c" 0
write_impl "$out/two_impl.c" 1
write_user "$out/two_user.c"
printf '#define DL_IMPLEMENTATION\n#include "dl_nn.h"\n#include "dl_optim.h"\n#include "dl_tensor.h"\nint main(void) { return 0; }\n' > "$out/nn_alone.c"
# README.md's example: the first ```c block that defines DL_IMPLEMENTATION.
awk '/^```c$/ { inblock = 1; text = ""; next }
     /^```$/ && inblock { inblock = 0; if (text ~ /DL_IMPLEMENTATION/) { printf "%s", text; exit } next }
     inblock { text = text $0 "\n" }' README.md > "$out/readme_example.c" 2>/dev/null

# check NAME COMMAND...: one test; passes when the command succeeds (and, for the built
# program, when it runs and returns 0). Runs in the background; results are printed in order.
names=()
check() {
    local name=$1; shift
    names+=("$name")
    while [ "$(jobs -rp | wc -l)" -ge "$jobs_max" ]; do wait -n; done
    ( if "$@" > "$out/$name.log" 2>&1; then echo ok; else echo FAIL; fi > "$out/$name.status" ) &
}
skip() {  # skip NAME REASON
    names+=("$1")
    echo "skip $2" > "$out/$1.status"
}
# nvcc_and_link NVCC: dl_cuda.cu built by nvcc with warnings as errors, then each tests/test_cuda*.c
# linked against it and run: it must end "N passed, 0 failed[, N skipped]" (all skipped without a GPU).
nvcc_and_link() {
    local nvcc=$1 lib t exe
    lib="$(dirname "$(dirname "$nvcc")")/lib64"
    "$nvcc" -O2 -Werror all-warnings -Xcompiler -Wall,-Wextra,-Werror -I. -c dl_cuda.cu -o "$out/dl_cuda.o" || return 1
    for t in tests/test_cuda*.c; do
        exe="$out/$(basename "$t" .c)_linked"
        # shellcheck disable=SC2086
        $CC $CFLAGS_V -Itests -DDL_TEST_CUDA_LINKED "$t" "$out/dl_cuda.o" -o "$exe" \
            -L"$lib" -Wl,-rpath,"$lib" -lcudart -lcublas -lstdc++ $LIBS || return 1
        "$exe" > "$exe.out" 2>&1
        tail -n 1 "$exe.out"
        grep -Eq '^[0-9]+ passed, 0 failed' <(tail -n 1 "$exe.out") || return 1
    done
}
build_run() {  # build_run EXE COMPILER ARGS...: compile, link, run
    local exe=$1; shift
    "$@" -o "$exe" && "$exe"
}
no_pthread() {  # no_pthread EXE COMPILER ARGS...: build_run, then no pthread symbol may remain
    build_run "$@" || return 1
    if nm -u "$1" | grep pthread_; then echo "DL_NO_THREADS build still uses pthreads"; return 1; fi
}

if [ ${#headers[@]} -eq 0 ]; then echo "no dl_*.h found"; echo "0 passed, 1 failed"; exit 1; fi
echo "headers: ${headers[*]}"

check gcc_c99 build_run "$out/gcc_c99" "$CC" $CFLAGS_C "$out/all.c" $LIBS
if command -v clang >/dev/null 2>&1; then
    check clang_c99 build_run "$out/clang_c99" clang $CFLAGS_C "$out/all.c" $LIBS
else
    skip clang_c99 "clang not installed"
fi
if command -v g++ >/dev/null 2>&1; then
    check gxx_cxx11 build_run "$out/gxx_cxx11" g++ $CFLAGS_CXX "$out/all.c" $LIBS
else
    skip gxx_cxx11 "g++ not installed"
fi
check no_threads no_pthread "$out/no_threads" "$CC" $CFLAGS_V -DDL_NO_THREADS "$out/all.c" -lm
check static build_run "$out/static" "$CC" $CFLAGS_V -DDL_STATIC "$out/all.c" $LIBS
check no_stdio build_run "$out/no_stdio" "$CC" $CFLAGS_V -DDL_NO_STDIO "$out/all.c" $LIBS
check two_files build_run "$out/two_files" "$CC" $CFLAGS_V "$out/two_impl.c" "$out/two_user.c" $LIBS
if command -v g++ >/dev/null 2>&1; then
    check two_files_c_cxx bash -c "$CC $CFLAGS_V -c $out/two_impl.c -o $out/two_impl.o &&
        g++ $CFLAGS_VXX -c $out/two_user.c -o $out/two_user.o &&
        g++ $out/two_impl.o $out/two_user.o -o $out/two_files_c_cxx $LIBS && $out/two_files_c_cxx"
else
    skip two_files_c_cxx "g++ not installed"
fi
# The README's example must build warning-free and print the fitted line it promises.
if [ -s "$out/readme_example.c" ]; then
    check readme_example bash -c "$CC $CFLAGS_V $out/readme_example.c -o $out/readme_example $LIBS &&
        $out/readme_example | tee /dev/stderr | grep -q 'y = 2.000 x + 1.000'"
else
    names+=(readme_example); echo "FAIL" > "$out/readme_example.status"
    echo "README.md has no C example with DL_IMPLEMENTATION" > "$out/readme_example.log"
fi
# Every example builds warning-free (make demo runs one; the others are built, not run here).
for f in examples/*.c; do
    [ -f "$f" ] || continue
    e=$(basename "$f" .c)
    check "example_$e" "$CC" $CFLAGS_V "$f" -o "$out/example_$e" $LIBS
done
if [ -f dl_cuda.cu ]; then
    # dl_cuda.cu's CPU emulation (what tests/test_cuda*.c run) as C99 and C++, warning-free.
    check cuda_emulation_c99 "$CC" $CFLAGS_V -x c -DDL_CUDA_EMULATE -c dl_cuda.cu -o "$out/dl_cuda_emu.o"
    if command -v g++ >/dev/null 2>&1; then
        check cuda_emulation_cxx g++ $CFLAGS_VXX -DDL_CUDA_EMULATE -c dl_cuda.cu -o "$out/dl_cuda_emu_cxx.o"
    fi
    # The real thing: nvcc with every warning an error (host compiler too), then the GPU test
    # programs linked against it; without a GPU they report every test skipped, with the reason.
    nvcc_bin=$(command -v nvcc || { [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda/bin/nvcc; })
    if [ -n "$nvcc_bin" ]; then
        check nvcc_dl_cuda nvcc_and_link "$nvcc_bin"
    else
        skip nvcc_dl_cuda "nvcc not installed (dl_cuda.cu not compiled for a GPU)"
    fi
fi
if [ -f dl_nn.h ]; then
    # dl_nn.h pulls in its prerequisites itself, so any include order builds and links.
    check nn_any_include_order "$CC" $CFLAGS_V "$out/nn_alone.c" -o "$out/nn_alone" $LIBS
fi
# Every include order, plain includes first and the implementation later (tests/include_orders.sh).
check include_orders env JOBS=1 CC="$CC" bash tests/include_orders.sh
wait

passed=0 failed=0 skipped=0
for name in "${names[@]}"; do
    read -r status reason < "$out/$name.status"
    case "$status" in
        ok)   passed=$((passed + 1)); echo "ok   $name" ;;
        skip) skipped=$((skipped + 1)); echo "skip $name"; echo "    skip: $reason" ;;
        *)    failed=$((failed + 1)); echo "FAIL $name"
              # the compiler's error lines (else the whole log), indented
              { grep -E 'error|warning|undefined reference' "$out/$name.log" || cat "$out/$name.log"; } |
                  awk '!seen[$0]++' | head -15 | sed 's/^/    /' ;;
    esac
done
if [ "$skipped" -gt 0 ]; then echo "$passed passed, $failed failed, $skipped skipped"
else echo "$passed passed, $failed failed"; fi
[ "$failed" -eq 0 ]
