# qemu/arch/x86_64.sh -- sourced by qemu/build.sh and qemu/run-tests.sh (ARCH=x86_64, the
# default): the x86-64 EFI device. OVMF firmware, GRUB (qemu/grub.cfg) on the ESP with the
# grubenv, a Debian amd64 kernel, the guest's ota-update a glibc build with its shared libraries.

# --- build (qemu/build.sh) -------------------------------------------------------------------------
ARCH_KERNEL_META=linux-image-amd64
ARCH_GUEST_MODULES=(virtio_pci virtio_blk virtio_net crc32c_generic ext4 vfat nls_cp437 nls_ascii nls_utf8 qemu_fw_cfg)
ARCH_GUEST_CONFIG=$here/guest/updater.toml
ARCH_BOOT_PARTITION='type=uefi, name=esp'
ARCH_RUST_TARGET=                 # the host's: the guest runs the same glibc build

# arch_busybox: the static busybox the initramfs runs.
arch_busybox() { echo /bin/busybox; }

# arch_guest_libs BINARY STAGING: the shared libraries ldd lists (the loader included), at
# the same paths.
arch_guest_libs() {
  ldd "$1" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$2$(dirname "$lib")"
    cp -L "$lib" "$2$lib"
  done
}

# arch_slot_kernel VMLINUZ SLOT_STAGING: the kernel where grub.cfg loads it.
arch_slot_kernel() { cp "$1" "$2/boot/vmlinuz"; }

# arch_boot_partition OUT_IMG MIB: the ESP: GRUB EFI made by grub-mkimage, grub.cfg, an empty
# grubenv.
arch_boot_partition() {
  local dest=$1 mib=$2
  grub-mkimage -O x86_64-efi -p /EFI/BOOT -o "$out/BOOTX64.EFI" \
    part_gpt fat ext2 normal linux configfile loadenv test echo reboot halt gzio
  rm -f "$dest" "$out/grubenv"
  grub-editenv "$out/grubenv" create
  mkfs.vfat -C -n ESP "$dest" $((mib * 1024)) >/dev/null
  mmd -i "$dest" ::/EFI ::/EFI/BOOT
  mcopy -i "$dest" "$out/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI
  mcopy -i "$dest" "$here/grub.cfg" ::/EFI/BOOT/grub.cfg
  mcopy -i "$dest" "$out/grubenv" ::/grubenv
}

# arch_provision DISK: the factory line's bootloader state (the grubenv is on the ESP already).
arch_provision() { :; }

# --- run (qemu/run-tests.sh) -----------------------------------------------------------------------
ARCH_QEMU=qemu-system-x86_64
ARCH_SCENARIOS=(a e b c d f g)
ARCH_ENV_FAULT=grub               # the bootloader backend's fault-point prefix
ARCH_BOOT_SECS=60                 # hard limit per boot; a TCG boot takes ~15 s here

# arch_qemu_args DISK: the machine (the caller adds the console, network and fw_cfg).
arch_qemu_args() {
  local disk=$1 vars=${1%.img}.vars
  [ -f "$vars" ] || cp /usr/share/OVMF/OVMF_VARS.fd "$vars"
  QEMU_ARGS=(-m 512 -smp 1
    -drive "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd"
    -drive "if=pflash,format=raw,file=$vars"
    -drive "file=$disk,format=raw,if=virtio")
}

# arch_copy_machine FROM_DISK TO_DISK: the machine state that lives beside the disk (EFI vars).
arch_copy_machine() { cp "${1%.img}.vars" "${2%.img}.vars"; }

# The NIC of scenario g.
ARCH_NIC=virtio-net-pci,romfile=   # no option ROM: OVMF must not try a network boot
