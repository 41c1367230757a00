# qemu/arch/aarch64.sh -- sourced by qemu/build.sh and qemu/run-tests.sh (ARCH=aarch64): an ARM
# board booting U-Boot. qemu-system-aarch64 -M virt (TCG), Debian's u-boot-qemu
# (qemu_arm64/u-boot.bin), whose distro boot runs boot.scr (qemu/boot.cmd, made by mkimage) from
# the boot partition; the boot state is a redundant environment at raw offsets of the disk
# (qemu/guest/fw_env.config), as on an eMMC board. Debian arm64 kernel (Image.gz, booti) and
# busybox, the guest's ota-update a static aarch64-musl build.

# --- build (qemu/build.sh) -------------------------------------------------------------------------
ARCH_KERNEL_META=linux-image-arm64:arm64
ARCH_GUEST_MODULES=(virtio_mmio virtio_blk virtio_net crc32c_generic ext4 vfat nls_cp437 nls_ascii nls_utf8 qemu_fw_cfg)
ARCH_GUEST_CONFIG=$here/guest/updater-uboot.toml
# Distro boot scans only partitions with the legacy-BIOS-bootable attribute for boot.scr.
ARCH_BOOT_PARTITION='type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7, name=boot, attrs="LegacyBIOSBootable"'
ARCH_RUST_TARGET=aarch64-unknown-linux-musl
# The environment copies (qemu/guest/fw_env.config and qemu/boot.cmd say the same).
ARCH_ENV_OFFSETS=(0x40000 0x60000)
ARCH_ENV_SIZE=0x4000

# arch_busybox: busybox-static:arm64 from the Debian archive, cached.
arch_busybox() {
  local deb dir=$cache/busybox-arm64
  if [ ! -x "$dir/bin/busybox" ]; then
    deb=$(ls "$cache"/busybox-static_*_arm64.deb 2>/dev/null | head -n1 || true)
    if [ -z "$deb" ]; then
      (cd "$cache" && apt-get download -q busybox-static:arm64 >/dev/null 2>&1)
      deb=$(ls "$cache"/busybox-static_*_arm64.deb | head -n1)
    fi
    rm -rf "$dir" && dpkg-deb -x "$deb" "$dir"
  fi
  echo "$dir/bin/busybox"
}

# arch_guest_libs BINARY STAGING: none; the binary must be static and for aarch64.
arch_guest_libs() {
  local kind; kind=$(file -b "$1")
  case "$kind" in
    *aarch64*statically\ linked*|*aarch64*static-pie\ linked*) ;;
    *) log "$1 is not a static aarch64 binary: $kind"; exit 1 ;;
  esac
  mkdir -p "$2/etc"
  cp "$here/guest/fw_env.config" "$2/etc/fw_env.config"
}

# arch_slot_kernel IMAGE SLOT_STAGING: Debian's arm64 kernel is an uncompressed Image (33 MB);
# the slot keeps it gzip-compressed, which booti unpacks (kernel_comp_addr_r in boot.cmd).
arch_slot_kernel() { gzip -9nc "$1" > "$2/boot/Image.gz"; }

# arch_boot_partition OUT_IMG MIB: FAT with boot.scr made from qemu/boot.cmd.
arch_boot_partition() {
  local dest=$1 mib=$2
  mkimage -A arm64 -O linux -T script -C none -n "ota A/B" -d "$here/boot.cmd" "$out/boot.scr" >/dev/null
  rm -f "$dest"
  mkfs.vfat -C -n BOOT "$dest" $((mib * 1024)) >/dev/null
  mcopy -i "$dest" "$out/boot.scr" ::/boot.scr
}

# arch_provision DISK: the factory line wrote the factory boot state into the first copy
# (mkenvimage, as a factory tool would; the second copy stays blank). A board that skipped
# this is scenario h's.
arch_provision() {
  printf 'OTA_ORDER=A B\nOTA_A_GOOD=1\nOTA_A_TRIES=0\nOTA_B_GOOD=0\nOTA_B_TRIES=0\n' > "$out/factory-env.txt"
  mkenvimage -s "$ARCH_ENV_SIZE" -r -o "$out/factory-env.bin" "$out/factory-env.txt"
  cp "$1" "$out/disk-unprovisioned.img"
  dd if="$out/factory-env.bin" of="$1" bs=512 seek=$((ARCH_ENV_OFFSETS[0] / 512)) conv=notrunc status=none
}

# --- run (qemu/run-tests.sh) -----------------------------------------------------------------------
ARCH_QEMU=qemu-system-aarch64
ARCH_SCENARIOS=(a e b c d h)
ARCH_ENV_FAULT=uboot
ARCH_BOOT_SECS=60                 # hard limit per boot; U-Boot to our init takes ~10 s (TCG)
ARCH_NIC=virtio-net-device

# arch_qemu_args DISK: the board. U-Boot's own environment is a 64 MiB flash (pflash unit 1)
# beside the disk; the boot state does not live there.
arch_qemu_args() {
  local disk=$1 flash=${1%.img}.flash
  [ -f "$flash" ] || truncate -s 64M "$flash"
  QEMU_ARGS=(-M virt -cpu cortex-a57 -m 1024 -smp 1
    -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin
    -drive "if=pflash,unit=1,format=raw,file=$flash"
    -drive "if=none,id=d0,format=raw,file=$disk" -device virtio-blk-device,drive=d0)
}

arch_copy_machine() { cp --sparse=always "${1%.img}.flash" "${2%.img}.flash"; }
