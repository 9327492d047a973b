#!/usr/bin/env bash
# An emulated Raspberry Pi userland: a Debian arm64 root run through qemu-user (make test-arm64).
#
#   scripts/arm64_root.sh build SUITE          create .cache/arm64/SUITE once (cached)
#   scripts/arm64_root.sh exec SUITE CMD...    run CMD (an arm64 program) inside that root
#   scripts/arm64_root.sh path SUITE           print the root's folder
#
# SUITE: bookworm (Pi OS Bookworm's Debian: Python 3.11) or trixie (Python 3.13). The root holds
# python3, python3-venv, ca-certificates and systemd (for systemd-analyze), nothing else: what a
# fresh Pi OS Lite has for Python. Needs root (debootstrap, chroot, mount) and Debian's
# qemu-user-static, debootstrap and binfmt-support; the arm64 ELF handler is registered with
# binfmt_misc (mounted first if the kernel has it unmounted), with the F flag so that the
# emulator is found from inside the chroot. CMD runs with a clean environment (PATH, HOME, LANG
# and PIP_CERT: the host's CA bundle, copied in, so that pip inside reaches PyPI through the same
# proxy the host uses). Idempotent: a stamp file keyed on the suite, the packages and ROOT_RECIPE marks a finished root; an
# unfinished one is removed and built again.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${ARM64_CACHE:-$ROOT/.cache/arm64}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-venv,ca-certificates,systemd
ROOT_RECIPE=1 # raise when a change here needs the roots built again

die() {
  echo "arm64_root.sh: $*" >&2
  exit 1
}

suite_dir() {
  case "$1" in
    bookworm | trixie) echo "$CACHE/$1" ;;
    *) die "unknown suite '$1' (bookworm or trixie)" ;;
  esac
}

stamp_of() {
  echo "$1/.edgesiam-root-$(echo "$ROOT_RECIPE $2 $PACKAGES $MIRROR" | sha1sum | cut -c1-12)"
}

ensure_binfmt() {
  [ "$(id -u)" -eq 0 ] || die "needs root (debootstrap, chroot and mount)"
  local tool
  for tool in qemu-aarch64-static debootstrap update-binfmts; do
    command -v "$tool" >/dev/null ||
      die "$tool is missing: apt-get install qemu-user-static debootstrap binfmt-support"
  done
  local bm=/proc/sys/fs/binfmt_misc
  if [ ! -e "$bm/register" ]; then
    mount binfmt_misc -t binfmt_misc "$bm" 2>/dev/null ||
      die "cannot mount binfmt_misc on $bm (a container without it cannot run arm64 programs)"
  fi
  if [ ! -e "$bm/qemu-aarch64" ]; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
  fi
  [ -e "$bm/qemu-aarch64" ] || die "the qemu-aarch64 binfmt handler could not be registered"
  grep -q '^flags:.*F' "$bm/qemu-aarch64" ||
    die "the qemu-aarch64 binfmt handler lacks the F flag: chroot would not find the emulator"
}

build() {
  local suite="$1" dir stamp
  dir="$(suite_dir "$suite")"
  stamp="$(stamp_of "$dir" "$suite")"
  ensure_binfmt
  if [ -f "$stamp" ]; then
    echo "arm64 $suite root: up to date ($dir)"
    return 0
  fi
  unmount_all "$dir"
  rm -rf "$dir"
  mkdir -p "$CACHE"
  echo "arm64 $suite root: debootstrap into $dir (several minutes) ..."
  debootstrap --arch=arm64 --variant=minbase --include="$PACKAGES" "$suite" "$dir" "$MIRROR" \
    >"$CACHE/$suite.log" 2>&1 || die "debootstrap failed; see $CACHE/$suite.log"
  chroot "$dir" /usr/bin/env -i PATH=/usr/bin:/bin /usr/bin/python3 -c \
    'import platform, sys; assert platform.machine() == "aarch64", platform.machine(); print("  python", sys.version.split()[0], platform.machine())'
  touch "$stamp"
}

unmount_all() {
  local m
  for m in "$1/proc" "$1/dev"; do
    if mountpoint -q "$m" 2>/dev/null; then umount "$m" || umount -l "$m"; fi
  done
}

run_in() {
  local suite="$1" dir
  shift
  [ $# -gt 0 ] || die "exec needs a command"
  dir="$(suite_dir "$suite")"
  [ -f "$(stamp_of "$dir" "$suite")" ] || die "no $suite root yet: scripts/arm64_root.sh build $suite"
  ensure_binfmt
  cp -L /etc/resolv.conf "$dir/etc/resolv.conf" 2>/dev/null || true
  local ca="${PIP_CERT:-${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}}"
  [ -f "$ca" ] && install -D -m 0644 "$ca" "$dir/etc/edgesiam-host-ca.crt"
  # each exec mounts /proc and /dev for its own run and takes them down again
  mountpoint -q "$dir/proc" || mount -t proc proc "$dir/proc"
  # no /sys: with it, cpuinfo (XNNPACK) finds an x86 host's CPU list and crashes under qemu-user
  mountpoint -q "$dir/dev" || mount --bind /dev "$dir/dev"
  trap 'unmount_all "'"$dir"'"' EXIT
  local rc=0
  chroot "$dir" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 PIP_CERT=/etc/edgesiam-host-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 \
    "$@" || rc=$?
  return $rc
}

case "${1:-}" in
  build) build "${2:?suite}" ;;
  exec)
    suite="${2:?suite}"
    shift 2
    run_in "$suite" "$@"
    ;;
  path) suite_dir "${2:?suite}" ;;
  *) die "usage: $0 build|exec|path SUITE [CMD...]" ;;
esac
