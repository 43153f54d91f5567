#!/usr/bin/env bash
# The Debian package (issue 22 item 3), from the build folder ctest runs in: cpack -G DEB, then, on the unpacked
# files, without installing anything:
#   - exactly the expected files: the two programs, desktop entry, icon, AppStream metadata, docs and the demo's
#     three files (nothing written beside them, such as an analysis cache; no temporary files);
#   - the AppStream metadata validates (appstreamcli, when present);
#   - every shared library the programs link directly comes from a package in Depends, except the CUDA toolkit's in
#     a GPU build (packaging/make-deb.sh makes the CPU build, the package to install elsewhere);
#   - lathe-cli inspect runs on the packaged demo from the unpacked tree, and lathe --version (offscreen).
# Usage: tests/check_package.sh BUILD_DIR
set -euo pipefail
build="$(cd "$1" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cd "$build"
cpack -G DEB -B "$work/out" >/dev/null
deb="$(ls "$work"/out/lathe_*.deb)"
dpkg-deb -x "$deb" "$work/root"
fail() { echo "FAIL: $*" >&2; exit 1; }

files="$(cd "$work/root" && find . -type f | sort)"
expected_re='^\./usr/(bin/lathe|bin/lathe-cli|share/applications/lathe\.desktop|share/icons/hicolor/scalable/apps/lathe\.svg|share/metainfo/io\.github\.lathe\.Lathe\.metainfo\.xml|share/doc/lathe/[A-Za-z0-9_./-]+\.(md|png)|share/lathe/demo/(stories260K\.bin|tok512\.bin|LICENSE\.md))$'
stray="$(echo "$files" | grep -Ev "$expected_re" || true)"
[ -z "$stray" ] || fail "unexpected files in the package: $stray"
for f in usr/bin/lathe-cli usr/share/lathe/demo/stories260K.bin usr/share/lathe/demo/tok512.bin; do
  [ -f "$work/root/$f" ] || fail "missing $f"
done
if [ -f "$work/root/usr/bin/lathe" ]; then
  for f in usr/share/applications/lathe.desktop usr/share/icons/hicolor/scalable/apps/lathe.svg \
           usr/share/metainfo/io.github.lathe.Lathe.metainfo.xml; do
    [ -f "$work/root/$f" ] || fail "missing $f"
  done
  if command -v appstreamcli >/dev/null; then
    appstreamcli validate --no-net "$work/root/usr/share/metainfo/io.github.lathe.Lathe.metainfo.xml" >/dev/null ||
      fail "AppStream metadata does not validate"
  fi
fi

# The libraries each program names (NEEDED), resolved as the loader would, each owned by a package in Depends.
# A package counts when it or a name it Provides is in Depends. OpenBLAS's library is an alternative: its file belongs to libopenblas0-pthread (or -openmp, -serial), which the
# libopenblas0 of Depends pulls in.
depends="$(dpkg-deb -f "$deb" Depends)"
for exe in "$work"/root/usr/bin/*; do
  for soname in $(readelf -d "$exe" | awk '/NEEDED/ {gsub(/[][]/, "", $5); print $5}'); do
    case "$soname" in libcu*|libnvJitLink*|ld-linux*) continue ;; esac # the CUDA toolkit's (GPU builds), the loader
    lib="$(ldd "$exe" | awk -v n="$soname" '$1 == n {print $3}')"
    [ -n "$lib" ] && [ -e "$lib" ] || fail "$(basename "$exe") needs $soname, not found here"
    # dpkg knows a file by the path its package ships (merged /usr: /lib or /usr/lib; a symlink or its target).
    pkg=""
    real="$(readlink -f "$lib")"
    for path in "$lib" "$real" "${lib#/usr}" "/usr$lib" "${real#/usr}" "/usr$real"; do
      [ -n "$pkg" ] || pkg="$(dpkg -S "$path" 2>/dev/null | head -n 1 | cut -d: -f1 || true)"
    done
    [ -n "$pkg" ] || fail "$(basename "$exe") needs $lib, which no Debian package provides"
    case "$pkg" in libc6|libgcc-s1|libstdc++6) continue ;; libopenblas0-*) pkg=libopenblas0 ;; esac
    # The package or a name it provides (libspdlog1.10 provides the libspdlog1.10-fmt9 its shlibs file names).
    names="$pkg $(dpkg-query -W -f='${Provides}' "$pkg" 2>/dev/null | sed 's/([^)]*)//g; s/,/ /g')"
    found=""
    for n in $names; do
      if echo "$depends" | grep -Eq "(^|, )$n( |,|$)"; then found=1; fi
    done
    [ -n "$found" ] || fail "$(basename "$exe") needs $lib from $pkg, not in Depends: $depends"
  done
done

"$work/root/usr/bin/lathe-cli" inspect "$work/root/usr/share/lathe/demo/stories260K.bin" >/dev/null ||
  fail "lathe-cli inspect on the packaged demo"
if [ -f "$work/root/usr/bin/lathe" ]; then
  QT_QPA_PLATFORM=offscreen "$work/root/usr/bin/lathe" --version >/dev/null || fail "lathe --version"
fi
echo "package ok: $(basename "$deb"), $(echo "$files" | wc -l) files; Depends: $depends"
