#!/usr/bin/env bash
# bench/make-ext4-pair.sh OUTDIR -- a second ext4 rootfs pair, of another kind than the one of
# ../shared/bench/make-data.sh, so the delta engine is not tuned to one pair: another Debian
# release (trixie by default, where make-data.sh uses bookworm), a larger package set (a
# Python and web server "gateway" image) and a 1 GiB filesystem.
#
#   A.ext4  the suite's point release (main only), debootstrap minbase + $INCLUDE
#   B.ext4  A + every pending -security/-updates upgrade + $EXTRA_B, as a vendor's next release
#
# Built like make-data.sh (mkfs.ext4 -d with a fixed UUID, hash seed and time; inode times
# normalised with debugfs). Needs root, debootstrap, e2fsprogs and python3. Output under OUTDIR:
# A.ext4 B.ext4 A.packages.txt B.packages.txt B.upgraded.txt SOURCES.txt.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
mkdir -p "$1"
D=$(cd "$1" && pwd)
W=$D/work
mkdir -p "$W"
SUITE=${SUITE:-trixie}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECMIRROR=${SECMIRROR:-http://deb.debian.org/debian-security}
INCLUDE=${INCLUDE:-systemd-sysv,udev,kmod,iproute2,openssh-server,curl,ca-certificates,python3,python3-requests,nginx,rsync,sudo,less,logrotate,cron,openssl}
EXTRA_B=${EXTRA_B:-"wireguard-tools python3-yaml"}
IMG_SIZE=${IMG_SIZE:-1G}
EPOCH_A=1793491200   # 2026-11-01T00:00:00Z
EPOCH_B=1795132800   # 2026-11-20T00:00:00Z
FS_UUID=1c2d3e4f-5a6b-4c7d-8e9f-a0b1c2d3e4f5
HASH_SEED=9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

clean_rootfs() {
  chroot "$1" apt-get clean
  rm -rf "$1"/var/lib/apt/lists/* "$1"/usr/sbin/policy-rc.d
  mkdir -p "$1"/var/lib/apt/lists/partial
  rm -f "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old
}
clamp_mtimes() { find "$1" -xdev -newermt "@$2" -print0 | xargs -0r touch -h -d "@$2"; }

if [ ! -e "$W/rootfs_A.done" ]; then
  log "debootstrap $SUITE rootfs_A"
  rm -rf "$D/rootfs_A"
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$D/rootfs_A" "$MIRROR" > "$W/debootstrap_A.log" 2>&1
  clean_rootfs "$D/rootfs_A"
  chroot "$D/rootfs_A" dpkg-query -W -f='${Package} ${Version}\n' > "$D/A.packages.txt"
  clamp_mtimes "$D/rootfs_A" $EPOCH_A
  touch "$W/rootfs_A.done"; rm -f "$W/rootfs_B.done"
fi
if [ ! -e "$W/rootfs_B.done" ]; then
  log "rootfs_B = rootfs_A + $SUITE-security/-updates + $EXTRA_B"
  rm -rf "$D/rootfs_B"
  cp -a "$D/rootfs_A" "$D/rootfs_B"
  R=$D/rootfs_B
  cat > "$R/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECMIRROR $SUITE-security main
EOF
  rm -f "$R"/etc/apt/sources.list.d/*
  printf '#!/bin/sh\nexit 101\n' > "$R/usr/sbin/policy-rc.d"; chmod +x "$R/usr/sbin/policy-rc.d"
  mount --bind /proc "$R/proc"
  trap 'umount "$R/proc" 2>/dev/null || true' EXIT
  chroot "$R" apt-get update > "$W/apt_B.log" 2>&1
  chroot "$R" apt list --upgradable > "$D/B.upgraded.txt" 2>/dev/null
  chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get -y -o Dpkg::Options::=--force-confold upgrade >> "$W/apt_B.log" 2>&1
  # shellcheck disable=SC2086
  chroot "$R" env DEBIAN_FRONTEND=noninteractive apt-get -y --no-install-recommends install $EXTRA_B >> "$W/apt_B.log" 2>&1
  umount "$R/proc"; trap - EXIT
  clean_rootfs "$R"
  chroot "$R" dpkg-query -W -f='${Package} ${Version}\n' > "$D/B.packages.txt"
  clamp_mtimes "$R" $EPOCH_B
  touch "$W/rootfs_B.done"
fi

# mkfs.ext4 -d copies host ctime/atime into the image: set atime=ctime=crtime=mtime, as
# make-data.sh does, so that unchanged files have unchanged inodes.
fix_inode_times() {
  python3 - "$1" > "$W/fixtimes.cmd" <<'PY'
import os, sys
root = sys.argv[1]
def emit(rel, st):
    q = '"' + rel + '"'
    for f in ("atime", "ctime", "crtime"):
        print(f"sif {q} {f} @{int(st.st_mtime)}")
        print(f"sif {q} {f}_extra 0")
emit("/", os.lstat(root))
for dp, dns, fns in os.walk(root):
    for n in dns + fns:
        full = os.path.join(dp, n)
        emit("/" + os.path.relpath(full, root), os.lstat(full))
PY
  E2FSPROGS_FAKE_TIME=$3 debugfs -w -f "$W/fixtimes.cmd" "$2" > "$W/fixtimes.log" 2>&1
  e2fsck -fn "$2" > "$W/fsck.log" 2>&1 || { cat "$W/fsck.log"; exit 1; }
}
for X in A B; do
  E=$EPOCH_A; [ $X = B ] && E=$EPOCH_B
  [ -e "$D/$X.ext4" ] && continue
  log "mkfs.ext4 $X"
  rm -f "$D/$X.ext4.tmp"
  E2FSPROGS_FAKE_TIME=$E mkfs.ext4 -q -F -L rootfs -b 4096 -U $FS_UUID \
    -E hash_seed=$HASH_SEED,root_owner=0:0 -d "$D/rootfs_$X" "$D/$X.ext4.tmp" "$IMG_SIZE"
  fix_inode_times "$D/rootfs_$X" "$D/$X.ext4.tmp" $E
  mv "$D/$X.ext4.tmp" "$D/$X.ext4"
done
{
  echo "# SOURCES.txt generated $(date -u +%FT%TZ) by bench/make-ext4-pair.sh"
  echo "suite: $SUITE from $MIRROR (+ $SUITE-updates, $SECMIRROR $SUITE-security for B)"
  echo "A: debootstrap --variant=minbase --include=$INCLUDE $SUITE; B: A + upgrade + $EXTRA_B"
  echo "image: mkfs.ext4 -b 4096 -d, $IMG_SIZE; debootstrap $(dpkg-query -W -f='${Version}' debootstrap), e2fsprogs $(dpkg-query -W -f='${Version}' e2fsprogs)"
  echo "packages: A=$(wc -l < "$D/A.packages.txt") B=$(wc -l < "$D/B.packages.txt"); upgraded: $(grep -c upgradable "$D/B.upgraded.txt" || true)"
  echo "rootfs sizes (du -sb): A=$(du -sb "$D/rootfs_A" | cut -f1) B=$(du -sb "$D/rootfs_B" | cut -f1)"
  for f in A.ext4 B.ext4; do echo "  $f $(stat -c %s "$D/$f") $(sha256sum "$D/$f" | cut -c1-64)"; done
} > "$D/SOURCES.txt"
cat "$D/SOURCES.txt"
log done
