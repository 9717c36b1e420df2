#!/usr/bin/env bash
# tools/install.sh - `make install` and `make uninstall`.
#
#   tools/install.sh install     copy the headers (dl_*.h, and dl_cuda.cu when it exists) to
#                                INCLUDEDIR; write LIBDIR/pkgconfig/dl.pc (Cflags -I..., Libs
#                                -lm -lpthread) and LIBDIR/cmake/dl/dlConfig.cmake +
#                                dlConfigVersion.cmake (find_package(dl) -> target dl::dl)
#   tools/install.sh uninstall   remove exactly what install put there
#
# Environment (the Makefile passes them): PREFIX (default /usr/local), INCLUDEDIR (default
# PREFIX/include), LIBDIR (default PREFIX/lib), DESTDIR (a staging root put in front of every
# path written; the files themselves refer to their final place).
# The version comes from dl_tensor.h's DL_VERSION_MAJOR/MINOR/PATCH, or is 0.2.0 while those are
# not there. The pkg-config and CMake files find the headers relative to their own place
# (${pcfiledir}, CMAKE_CURRENT_LIST_DIR), so an installed tree can be moved or used where it was
# staged. install also writes LIBDIR/cmake/dl/install_manifest.txt: the files it wrote and the
# directories it had to create, which is what uninstall removes (the files only when they are
# still the ones install wrote). Without a manifest, uninstall removes the files install would
# write and no directories.
set -euo pipefail
cd "$(dirname "$0")/.."

action=${1:-}
PREFIX=${PREFIX:-/usr/local}
INCLUDEDIR=${INCLUDEDIR:-$PREFIX/include}
LIBDIR=${LIBDIR:-$PREFIX/lib}
DESTDIR=${DESTDIR:-}
case "$PREFIX$INCLUDEDIR$LIBDIR" in
    *[[:space:]]*) echo "install.sh: paths with spaces are not supported" >&2; exit 2 ;;
esac
for d in "$PREFIX" "$INCLUDEDIR" "$LIBDIR"; do
    case "$d" in /*) ;; *) echo "install.sh: $d is not an absolute path" >&2; exit 2 ;; esac
done

# The version, from a single place: dl_tensor.h.
version() {
    awk '$1 == "#define" && $2 ~ /^DL_VERSION_(MAJOR|MINOR|PATCH)$/ && $3 ~ /^[0-9]+$/ { v[$2] = $3; n++ }
         END { if (n == 3) print v["DL_VERSION_MAJOR"] "." v["DL_VERSION_MINOR"] "." v["DL_VERSION_PATCH"];
               else print "0.2.0" }' dl_tensor.h
}
VERSION=$(version)
IFS=. read -r VERSION_MAJOR VERSION_MINOR _ <<< "$VERSION"

sources=()   # what goes to INCLUDEDIR
for f in dl_*.h dl_cuda.cu; do [ -f "$f" ] && sources+=("$f"); done
pc=$LIBDIR/pkgconfig/dl.pc
cmakedir=$LIBDIR/cmake/dl
manifest=$cmakedir/install_manifest.txt
files=()
for f in "${sources[@]}"; do files+=("$INCLUDEDIR/$f"); done
files+=("$pc" "$cmakedir/dlConfig.cmake" "$cmakedir/dlConfigVersion.cmake")

case "$action" in
install)
    created=()   # directories that did not exist, outermost first (also those of an earlier install)
    if [ -f "$DESTDIR$manifest" ]; then
        while read -r kind path _; do [ "$kind" = d ] && created+=("$path"); done < "$DESTDIR$manifest"
    fi
    [ -z "$DESTDIR" ] || mkdir -p "$DESTDIR"
    for d in "$INCLUDEDIR" "$LIBDIR/pkgconfig" "$cmakedir"; do
        missing=() p=$d
        while [ ! -d "$DESTDIR$p" ] && [ "$p" != / ]; do missing=("$p" ${missing[@]+"${missing[@]}"}); p=$(dirname "$p"); done
        for m in ${missing[@]+"${missing[@]}"}; do
            mkdir "$DESTDIR$m"
            created+=("$m")
        done
    done
    for f in "${sources[@]}"; do install -m 644 "$f" "$DESTDIR$INCLUDEDIR/$f"; done
    rel_prefix=$(realpath -m --relative-to="$LIBDIR/pkgconfig" "$PREFIX")
    rel_inc=$(realpath -m --relative-to="$LIBDIR/pkgconfig" "$INCLUDEDIR")
    { echo "prefix=\${pcfiledir}/$rel_prefix"
      echo "includedir=\${pcfiledir}/$rel_inc"
      echo
      echo "Name: dl"
      echo "Description: header-only C99 deep-learning libraries: tensors, autograd, layers, optimizers, RL"
      echo "Version: $VERSION"
      echo "Cflags: -I\${includedir}"
      echo "Libs: -lm -lpthread"; } > "$DESTDIR$pc"
    chmod 644 "$DESTDIR$pc"
    rel_inc=$(realpath -m --relative-to="$cmakedir" "$INCLUDEDIR")
    sed "s|@REL_INCLUDEDIR@|$rel_inc|g" cmake/dlConfig.cmake.in > "$DESTDIR$cmakedir/dlConfig.cmake"
    sed -e "s|@VERSION@|$VERSION|g" -e "s|@VERSION_MAJOR@|$VERSION_MAJOR|g" -e "s|@VERSION_MINOR@|$VERSION_MINOR|g" \
        cmake/dlConfigVersion.cmake.in > "$DESTDIR$cmakedir/dlConfigVersion.cmake"
    chmod 644 "$DESTDIR$cmakedir/dlConfig.cmake" "$DESTDIR$cmakedir/dlConfigVersion.cmake"
    # file lines: "f <path> <cksum>"; created directories: "d <path>"
    { for f in "${files[@]}"; do echo "f $f $(cksum < "$DESTDIR$f" | tr ' ' :)"; done
      for d in ${created[@]+"${created[@]}"}; do echo "d $d"; done; } > "$DESTDIR$manifest"
    chmod 644 "$DESTDIR$manifest"
    echo "installed dl $VERSION: ${#sources[@]} headers in $DESTDIR$INCLUDEDIR, $DESTDIR$pc, $DESTDIR$cmakedir/"
    ;;
uninstall)
    removed=0 kept=0
    if [ -f "$DESTDIR$manifest" ]; then
        dirs=()
        while read -r kind path sum; do
            case "$kind" in
            f)  [ -f "$DESTDIR$path" ] || continue
                if [ "$(cksum < "$DESTDIR$path" | tr ' ' :)" = "$sum" ]; then rm -f "$DESTDIR$path"; removed=$((removed + 1))
                else echo "uninstall: kept $DESTDIR$path (changed since it was installed)" >&2; kept=$((kept + 1)); fi ;;
            d)  dirs=("$path" ${dirs[@]+"${dirs[@]}"}) ;;   # innermost first
            esac
        done < "$DESTDIR$manifest"
        rm -f "$DESTDIR$manifest"
        for d in ${dirs[@]+"${dirs[@]}"}; do rmdir "$DESTDIR$d" 2>/dev/null || true; done
    else
        for f in "${files[@]}"; do
            if [ -f "$DESTDIR$f" ]; then rm -f "$DESTDIR$f"; removed=$((removed + 1)); fi
        done
        rmdir "$DESTDIR$cmakedir" 2>/dev/null || true
    fi
    if [ $kept -gt 0 ]; then echo "uninstalled dl: $removed files removed, $kept kept"
    else echo "uninstalled dl: $removed files removed"; fi
    ;;
*)
    echo "usage: tools/install.sh install|uninstall   (PREFIX, INCLUDEDIR, LIBDIR, DESTDIR from the environment)" >&2
    exit 2 ;;
esac
