#!/usr/bin/env bash
# Installs the Debian package on a fresh Debian 12 (issue 22 item 3) and runs it there: a minimal bookworm system
# made by debootstrap in a folder (apt sources: bookworm, bookworm-updates, bookworm-security), then
#   apt-get install ./lathe_*.deb        (apt resolves every dependency from Debian's archive)
#   lathe-cli inspect, generate, eval and a Wanda compression run (with its HDF5 archive) on the packaged demo,
#   lathe --version and a screenshot of the GUI on the demo (offscreen).
# Needs root (debootstrap, chroot, mounts) and Debian's mirrors; takes 5-10 minutes. Not part of the test suite.
# Usage: sudo packaging/check-fresh-install.sh DEB [ROOT_DIR]   (ROOT_DIR is made and removed unless given)
set -euo pipefail
deb="$(realpath "$1")"
root="${2:-}"
keep=1
if [ -z "$root" ]; then root="$(mktemp -d)"; keep=0; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
cleanup() {
  umount "$root/proc" 2>/dev/null || true
  umount "$root/dev" 2>/dev/null || true
  [ "$keep" = 1 ] || rm -rf "$root"
}
trap cleanup EXIT
command -v debootstrap >/dev/null || { echo "needs debootstrap (apt-get install debootstrap)"; exit 1; }
[ -x "$root/usr/bin/apt-get" ] || debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
cat > "$root/etc/apt/sources.list" <<'SRC'
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SRC
cp /etc/resolv.conf "$root/etc/resolv.conf"
mountpoint -q "$root/proc" || mount -t proc proc "$root/proc"
mountpoint -q "$root/dev" || mount --bind /dev "$root/dev"
cp "$deb" "$root/tmp/lathe.deb"
cp "$here/tests/data/text/tinystories-excerpt.txt" "$root/tmp/text.txt"
chroot "$root" bash -c 'export DEBIAN_FRONTEND=noninteractive; apt-get update -q >/dev/null &&
  apt-get install -y -q /tmp/lathe.deb | grep -E "newly installed|^Setting up lathe"'
chroot "$root" bash -euo pipefail -c '
  cd /tmp
  demo=/usr/share/lathe/demo/stories260K.bin
  lathe-cli inspect "$demo" | head -n 3
  lathe-cli generate --model "$demo" --prompt "Once upon a time" --max-new 16 2>/dev/null | tail -n 1
  lathe-cli eval --model "$demo" --text text.txt --seq-len 128 2>/dev/null | grep -i perplexity
  printf "%s" "{\"model\": \"$demo\", \"method\": \"wanda\", \"sparsity\": 0.5,
    \"calibration\": {\"text\": \"/tmp/text.txt\", \"samples\": 8, \"seq_len\": 128},
    \"evaluation\": {\"text\": \"/tmp/text.txt\", \"seq_len\": 128}, \"output\": {\"dir\": \"/tmp/run\"}}" > job.json
  rm -rf run && lathe-cli compress job.json 2>/dev/null | tail -n 1
  test -s run/run.h5 && test -s run/model/model.safetensors
  QT_QPA_PLATFORM=offscreen lathe --version
  rm -f shot.png
  QT_QPA_PLATFORM=offscreen timeout 60 lathe --screenshot shot.png "$demo" >/dev/null 2>&1
  test -s shot.png && echo "GUI screenshot: $(stat -c %s shot.png) bytes"
  for f in /usr/share/applications/lathe.desktop /usr/share/metainfo/io.github.lathe.Lathe.metainfo.xml \
           /usr/share/icons/hicolor/scalable/apps/lathe.svg; do test -f "$f"; done
'
echo "fresh Debian 12: the package installed and ran"
