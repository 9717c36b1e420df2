#!/usr/bin/env bash
# tests/include_orders.sh - the stb pattern holds for every include order (called by
# tests/test_compile.sh as one check; exits non-zero and names the failing sequence).
#
# For each header alone, every ordered pair of headers, and the whole family forwards and
# backwards, two sequences are compiled (-fsyntax-only, warnings as errors):
#   impl   #define DL_IMPLEMENTATION, then the headers in that order;
#   later  the headers plainly (as a project header would), then #define DL_IMPLEMENTATION and
#          the same headers again (as the one implementation file would).
# Both must declare everything and compile every included header's implementation, which the
# file checks itself through the headers' once-guards (DL__<NAME>_IMPLEMENTED); a sequence that
# skipped an implementation fails at compile time instead of at link time.
# Pairs are enough: a header's implementation depends only on which once-guards are already
# defined, and every guard is set by one header, so what can go wrong between headers goes
# wrong between two of them. ORDERS=all compiles every permutation instead (5 headers: 250
# sequences, several minutes; make test runs the pairs, 54 sequences).
set -uo pipefail
cd "$(dirname "$0")/.."
CC=${CC:-gcc}
out=build/compile/orders
mkdir -p "$out"
headers=()
for h in dl_tensor.h dl_optim.h dl_nn.h dl_gan.h dl_rl.h; do [ -f "$h" ] && headers+=("$h"); done

guard() {  # the once-guard macro of a header's implementation
    local n=${1#dl_}; n=${n%.h}; echo "DL__$(echo "$n" | tr a-z A-Z)_IMPLEMENTED"
}
# The implementations each header needs: itself and, recursively, the dl headers it includes.
needs() {
    local h=$1 x
    echo "$h"
    for x in $(sed -n 's/^#include "\(dl_[a-z_]*\.h\)".*/\1/p' "$h" | sort -u); do needs "$x"; done
}
write() {  # write FILE MODE HEADER...
    local f=$1 mode=$2 h x; shift 2
    { if [ "$mode" = later ]; then for h in "$@"; do echo "#include \"$h\""; done; fi
      echo '#define DL_IMPLEMENTATION'
      for h in "$@"; do echo "#include \"$h\""; done
      for h in "$@"; do for x in $(needs "$h"); do
          echo "#ifndef $(guard "$x")"; echo "#error \"$x: implementation missing after including $h\""; echo '#endif'
      done; done
      echo 'int main(void) { dl_tensor *t = dl_tensor_new(DL_DTYPE_F32, 0, NULL); dl_tensor_free(t); return 0; }'; } > "$f"
}
perms=()
permute() {  # permute PREFIX REST...
    local prefix=$1 i; shift
    if [ $# -eq 0 ]; then perms+=("$prefix"); return; fi
    local rest=("$@")
    for i in "${!rest[@]}"; do
        local others=("${rest[@]:0:$i}" "${rest[@]:$((i + 1))}")
        permute "$prefix ${rest[$i]}" "${others[@]}"
    done
}
if [ "${ORDERS:-pairs}" = all ]; then
    permute "" "${headers[@]}"
else
    rev=()
    for h in "${headers[@]}"; do rev=("$h" "${rev[@]}"); done
    perms+=(" ${headers[*]}" " ${rev[*]}")
    for a in "${headers[@]}"; do for b in "${headers[@]}"; do
        [ "$a" != "$b" ] && perms+=(" $a $b")
    done; done
fi
for h in "${headers[@]}"; do perms+=(" $h"); done

n=0 bad=0
for p in "${perms[@]}"; do
    for mode in impl later; do
        n=$((n + 1))
        f="$out/order_$n.c"
        # shellcheck disable=SC2086
        write "$f" "$mode" $p
        while [ "$(jobs -rp | wc -l)" -ge "${JOBS:-2}" ]; do wait -n; done
        ( $CC -std=c99 -Wall -Wextra -Wpedantic -Werror -fsyntax-only -I. "$f" > "$f.log" 2>&1 ||
              { echo "FAIL ($mode):$p"; grep -m 5 -E 'error' "$f.log"; } ) &
    done
done > "$out/result.txt"
wait
cat "$out/result.txt"
bad=$(grep -c '^FAIL' "$out/result.txt")
echo "$n include sequences, $bad failed"
[ "$bad" -eq 0 ]
