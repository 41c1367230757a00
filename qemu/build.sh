#!/usr/bin/env bash
# qemu/build.sh OUT -- builds the QEMU test device from the project's own material, as a vendor
# and an integrator would: slot images from testdata/, bundles signed by ota-sign, a GPT disk
# with a boot partition, rootfs A (factory 1.0.0), rootfs B (empty) and a data partition (state
# directory, bundles for offline install). ARCH=x86_64 (default): the ESP holds GRUB EFI made by
# grub-mkimage, qemu/grub.cfg and a grubenv. ARCH=aarch64: the boot partition holds boot.scr
# (qemu/boot.cmd), the boot state a redundant U-Boot environment before the first partition.
# What differs per machine is in qemu/arch/$ARCH.sh.
#
# No loop devices, no mounts, no root needed beyond installing packages: truncate + sfdisk +
# mkfs.ext4 -d + mkfs.vfat -C + mtools + dd conv=notrunc. Expects ota-sign built in
# OTA_BIN_DIR (default TARGET/release) and, for the guest, ota-update built with
# `--features fault-injection` in OTA_GUEST_BIN_DIR (default TARGET/fault/release, from
# `cargo build --release -p ota-updater --features fault-injection --target-dir TARGET/fault`,
# with `--target aarch64-unknown-linux-musl` for ARCH=aarch64: TARGET/fault/aarch64-unknown-
# linux-musl/release), TARGET being cargo's target directory (CARGO_TARGET_DIR or target/);
# qemu/run-tests.sh builds both. The Debian kernel .deb is cached in OTA_QEMU_CACHE (default OUT/../cache) so reruns do
# not download it again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:?usage: qemu/build.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cache=${OTA_QEMU_CACHE:-$out/../cache}
mkdir -p "$cache"
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=${OTA_BIN_DIR:-$target_dir/release}              # ota-sign, on the host
ARCH=${ARCH:-x86_64}
[ -f "$here/arch/$ARCH.sh" ] || { echo "qemu/build: no machine for ARCH=$ARCH (qemu/arch/)" >&2; exit 2; }
# shellcheck source=arch/x86_64.sh
source "$here/arch/$ARCH.sh"
guest_bin=${OTA_GUEST_BIN_DIR:-$target_dir/fault/${ARCH_RUST_TARGET:+$ARCH_RUST_TARGET/}release}  # ota-update, in the guest
export SOURCE_DATE_EPOCH=1793491200 E2FSPROGS_FAKE_TIME=1793491200 MTOOLS_SKIP_CHECK=1
log() { echo "qemu/build: $*" >&2; }

# Disk layout (MiB). A slot holds an image of SLOT_IMAGE_MIB; the partition is larger so that
# "image smaller than its slot" is exercised as on real devices.
ESP_MIB=16 SLOT_MIB=32 DATA_MIB=96 SLOT_IMAGE_MIB=24

# --- kernel and modules from the Debian package --------------------------------------------------
kpkg=$(apt-cache depends "$ARCH_KERNEL_META" 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[ -n "$kpkg" ] || { log "cannot resolve $ARCH_KERNEL_META (apt-get update?)"; exit 1; }
kname=${kpkg%%:*}   # linux-image-6.1.0-57-arm64:arm64 is downloaded as linux-image-6.1.0-57-arm64_*.deb
deb=$(ls "$cache/$kname"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
  log "downloading $kpkg"
  (cd "$cache" && apt-get download -q "$kpkg" 2>/dev/null)
  deb=$(ls "$cache/$kname"_*.deb | head -n1)
fi
kdir=$cache/${kname}.extracted
if [ ! -d "$kdir/boot" ]; then
  log "extracting $(basename "$deb")"
  rm -rf "$kdir.tmp" && mkdir -p "$kdir.tmp"
  dpkg-deb -x "$deb" "$kdir.tmp"
  kver=$(ls "$kdir.tmp/lib/modules")
  depmod -b "$kdir.tmp" "$kver"   # the .deb ships no modules.dep
  mv "$kdir.tmp" "$kdir"
fi
kver=$(ls "$kdir/lib/modules")
vmlinuz=$kdir/boot/vmlinuz-$kver

# The modules the init loads, with their dependencies, in load order (modprobe resolves them on
# the host against the extracted tree; the guest only needs insmod).
modlist=()
for m in "${ARCH_GUEST_MODULES[@]}"; do
  while read -r _ path _; do modlist+=("$path"); done \
    < <(modprobe -d "$kdir" -S "$kver" --show-depends "$m" | grep '^insmod')
done

# --- the binaries and their shared libraries ------------------------------------------------------
[ -x "$bin/ota-sign" ] || { log "missing $bin/ota-sign: run cargo build --release first"; exit 1; }
[ -x "$guest_bin/ota-update" ] || { log "missing $guest_bin/ota-update: run qemu/run-tests.sh"; exit 1; }
# The power-cut scenarios need the fault points (OTA_FAULT_HOLD); a release build has none.
grep -aq OTA_FAULT_HOLD "$guest_bin/ota-update" ||
  { log "$guest_bin/ota-update has no fault injection: build it with --features fault-injection"; exit 1; }
sign=$bin/ota-sign
busybox=$(arch_busybox)

# --- initramfs (one normal, one for the release whose userspace dies) ----------------------------
make_initramfs() { # make_initramfs OUT.img [broken]
  local dest=$1 broken=${2:-} st
  st=$(mktemp -d)
  mkdir -p "$st"/{bin,usr/bin,etc/ota,proc,sys,dev,tmp,lib/modules}
  cp "$busybox" "$st/bin/busybox"
  cp "$here/guest/init" "$st/init"
  cp "$guest_bin/ota-update" "$st/usr/bin/ota-update"
  arch_guest_libs "$guest_bin/ota-update" "$st"
  cp "$ARCH_GUEST_CONFIG" "$st/etc/ota/updater.toml"
  cp "$here/guest/health-check.sh" "$st/etc/ota/health-check.sh"
  cp "$out/keys/vendor.key.pub" "$st/etc/ota/vendor.pub"
  # The TUF trust anchor shipped on the device: root v1 of the repository.
  cp "$out/repo/metadata/1.root.json" "$st/etc/ota/root.json"
  : > "$st/lib/modules/load-order"
  local m
  for m in "${modlist[@]}"; do
    [ -e "$st/lib/modules/$(basename "$m")" ] && continue   # shared dependency, loaded once
    cp "$m" "$st/lib/modules/"
    basename "$m" >> "$st/lib/modules/load-order"
  done
  [ -n "$broken" ] && : > "$st/etc/ota/broken-release"
  find "$st" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  (cd "$st" && find . | LC_ALL=C sort | cpio -o -H newc --reproducible -R 0:0 --quiet | gzip -9n) > "$dest"
  rm -rf "$st"
}

# --- slot images: testdata's release content + kernel + initramfs --------------------------------
make_slot_image() { # make_slot_image TESTDATA_DIR VERSION OUT.img [broken]
  local src=$1 version=$2 dest=$3 broken=${4:-} st
  st=$(mktemp -d)
  debugfs -R "rdump /etc /usr $st" "$src/rootfs.img" 2>/dev/null
  [ -f "$st/etc/os-release" ] || { log "could not read $src/rootfs.img"; exit 1; }
  sed -i "s/^VERSION_ID=.*/VERSION_ID=\"$version\"/" "$st/etc/os-release"
  mkdir -p "$st/boot"
  arch_slot_kernel "$vmlinuz" "$st"
  make_initramfs "$st/boot/initrd.img" "$broken"
  find "$st" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  rm -f "$dest"
  mkfs.ext4 -q -F -b 4096 -U 0b7f2a56-7a35-4c0e-9a52-2f7c0b1f6a11 \
    -E hash_seed=7d3b0a11-5b8f-4a62-9d0c-4f3e2b1a0c9e,root_owner=0:0 -N 128 -O ^has_journal \
    -L rootfs -d "$st" "$dest" "${SLOT_IMAGE_MIB}M" >/dev/null
  rm -rf "$st"
}

mkdir -p "$out/keys" "$out/images" "$out/bundles"
for key in vendor root targets snapshot timestamp; do
  [ -f "$out/keys/$key.key" ] || "$sign" keygen --out "$out/keys/$key.key" >/dev/null
done
# The update repository (TUF). Signed with the real clock, not SOURCE_DATE_EPOCH: metadata
# dated at the build's fixed epoch would already have expired.
repo() { env -u SOURCE_DATE_EPOCH "$sign" repo "$@" --repo "$out/repo" >/dev/null; }
if [ ! -f "$out/repo/metadata/1.root.json" ]; then
  rm -rf "$out/repo"
  repo init --root-key "$out/keys/root.key" --targets-key "$out/keys/targets.key" \
    --snapshot-key "$out/keys/snapshot.key" --timestamp-key "$out/keys/timestamp.key"
fi
log "slot images (kernel $kver)"
make_slot_image "$root/testdata/v1" 1.0.0 "$out/images/v1.rootfs.img"
make_slot_image "$root/testdata/v2" 2.0.0 "$out/images/v2.rootfs.img"
make_slot_image "$root/testdata/v3" 3.0.0 "$out/images/v3.rootfs.img"
make_slot_image "$root/testdata/v2" 3.1.0 "$out/images/v3.1-panic.rootfs.img" broken

log "bundles"
bundle() { # bundle VERSION IMAGE OUT [ota-sign args...]
  local version=$1 image=$2 dest=$3; shift 3
  "$sign" bundle --product acme-router-qemu --version "$version" --image "rootfs=$image" \
    --key "$out/keys/vendor.key" -o "$dest" "$@" >/dev/null
}
bundle 2.0.0 "$out/images/v2.rootfs.img" "$out/bundles/v2-full.bundle"
bundle 2.0.0 "$out/images/v2.rootfs.img" "$out/bundles/v2-delta.bundle" \
  --base "rootfs=$out/images/v1.rootfs.img"
bundle 3.0.0 "$out/images/v3.rootfs.img" "$out/bundles/v3-unhealthy.bundle"
bundle 3.1.0 "$out/images/v3.1-panic.rootfs.img" "$out/bundles/v3.1-panic.bundle"
log "repository"
repo add --trusted "$out/keys/vendor.key.pub" "$out/bundles/v2-full.bundle"
repo publish --key "$out/keys/targets.key" --key "$out/keys/snapshot.key" --key "$out/keys/timestamp.key"

# --- boot partition: the bootloader's files -----------------------------------------------------
log "boot partition"
arch_boot_partition "$out/esp.img" "$ESP_MIB"

# --- data partition: bundles for offline install, the updater's state directory -------------------
log "data partition"
st=$(mktemp -d)
mkdir -p "$st/bundles" "$st/ota"
cp "$out"/bundles/*.bundle "$st/bundles/"
rm -f "$out/data.img"
mkfs.ext4 -q -F -L data -d "$st" "$out/data.img" "${DATA_MIB}M" >/dev/null
rm -rf "$st"

# --- the GPT disk ----------------------------------------------------------------------------------
log "disk"
disk=$out/disk.img
rm -f "$disk"
truncate -s $((1 + ESP_MIB + 2 * SLOT_MIB + DATA_MIB + 1))M "$disk"
sfdisk -q "$disk" <<SFDISK
label: gpt
start=2048, size=${ESP_MIB}MiB, $ARCH_BOOT_PARTITION
size=${SLOT_MIB}MiB, type=linux, name=rootfs_a
size=${SLOT_MIB}MiB, type=linux, name=rootfs_b
size=${DATA_MIB}MiB, type=linux, name=data
SFDISK
put() { # put PARTNO IMAGE
  local start
  start=$(sfdisk -d "$disk" | awk -v p="$disk$1" '$1 == p { sub(/,/, "", $4); print $4 }')
  dd if="$2" of="$disk" bs=512 seek="$start" conv=notrunc status=none
}
put 1 "$out/esp.img"
put 2 "$out/images/v1.rootfs.img"   # factory image in slot A; slot B starts empty
put 4 "$out/data.img"
arch_provision "$disk"
log "done: $disk"
