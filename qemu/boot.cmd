# A/B slot selection for ota-update, U-Boot script (hush). Made into boot.scr with
#   mkimage -A arm64 -T script -C none -d boot.cmd boot.scr
# and found by U-Boot's distro boot on the boot partition. It does exactly what
# `ota-update simulate-boot` does (BootState::select_for_boot in updater/src/bootloader/mod.rs):
#   walk OTA_ORDER; boot the first slot that is good (OTA_<S>_GOOD=1), or else has tries left
#   (OTA_<S>_TRIES>0, decremented and saved *before* booting); if none qualifies, boot the
#   first slot of the order anyway. A never-saved environment is the factory state: A good.
# The kernel learns which slot it is with ota.slot=<S> on its command line.
#
# The boot state lives in a redundant environment that Linux writes (ota-update's uboot
# backend, fw_setenv): two copies of ota_env_size bytes at raw block offsets of the boot disk,
# as on an eMMC board, described to Linux by the same offsets in /etc/fw_env.config. Each copy
# is CRC32 (4 bytes, little-endian) + a flags byte + NUL-separated name=value pairs; the valid
# copy with the newer flags wins (U-Boot's own rule for redundant environments). This script
# reads both copies with `<if> read`, imports the newer valid one with `env import -c` (this
# U-Boot build's own environment has no flags byte, so the byte is cut out first), and writes a
# decremented try the way libubootenv does: into the other copy, with flags + 1.
# U-Boot's own environment (saveenv) is not used: on the QEMU board it is a single flash copy
# that a power cut during saveenv destroys, and that Linux cannot write.
#
# Integrators: set ota_if/ota_dev (the boot disk: mmc 0 for an eMMC), the two block offsets and
# the size (the same as in fw_env.config, in 512-byte blocks here), the slot partitions and the
# kernel arguments. Values below: the QEMU test device (qemu/README.md).

setenv ota_if virtio
setenv ota_dev 0
setenv ota_env_size 0x4000
setenv ota_env_blocks 0x20
setenv ota_env_block_0 0x200
setenv ota_env_block_1 0x300
setenv ota_part_A 2
setenv ota_part_B 3
setenv ota_args "console=ttyAMA0 panic=5 loglevel=4"
setenv ota_vars "OTA_ORDER OTA_A_GOOD OTA_A_TRIES OTA_B_GOOD OTA_B_TRIES"

# Scratch memory: the ramdisk area, loaded only after the choice is made.
setexpr ota_copy_0 ${ramdisk_addr_r} + 0
setexpr ota_copy_1 ${ramdisk_addr_r} + 0x10000
setexpr ota_work ${ramdisk_addr_r} + 0x20000
setexpr ota_flags_0 ${ota_copy_0} + 4
setexpr ota_flags_1 ${ota_copy_1} + 4
setexpr ota_data_len ${ota_env_size} - 5
setexpr ota_import_len ${ota_env_size} - 1
setexpr ota_work_data ${ota_work} + 4

# ota_import: imports copy ${ota_c} (CRC + data, without the flags byte) if its CRC is right.
setenv ota_import 'setexpr ota_src ${ota_copy_0}; if test "${ota_c}" = 1; then setexpr ota_src ${ota_copy_1}; fi; cp.b ${ota_src} ${ota_work} 4; setexpr ota_src ${ota_src} + 5; cp.b ${ota_src} ${ota_work_data} ${ota_data_len}; env import -c ${ota_work} ${ota_import_len} ${ota_vars}'

# Read both copies; the newer by the flags byte is tried first (255 -> 0 wraps).
for v in ${ota_vars}; do setenv ${v}; done
${ota_if} dev ${ota_dev}
${ota_if} read ${ota_copy_0} ${ota_env_block_0} ${ota_env_blocks}
${ota_if} read ${ota_copy_1} ${ota_env_block_1} ${ota_env_blocks}
setenv ota_first 0
if itest.b *${ota_flags_0} == ff && itest.b *${ota_flags_1} == 0; then
  setenv ota_first 1
elif itest.b *${ota_flags_1} == ff && itest.b *${ota_flags_0} == 0; then
  setenv ota_first 0
elif itest.b *${ota_flags_1} > *${ota_flags_0}; then
  setenv ota_first 1
fi
setenv ota_active none
setenv ota_c ${ota_first}
if run ota_import; then
  setenv ota_active ${ota_c}
else
  if test "${ota_first}" = 0; then setenv ota_c 1; else setenv ota_c 0; fi
  if run ota_import; then setenv ota_active ${ota_c}; fi
fi
if test -z "${OTA_ORDER}"; then
  # Never saved (or no valid copy): the factory state.
  setenv OTA_ORDER "A B"
  setenv OTA_A_GOOD 1
fi

# Choose. ota_save=1 when a try was spent (saved before booting).
setenv ota_slot
setenv ota_save 0
for s in ${OTA_ORDER}; do
  if test -z "${ota_slot}"; then
    if test "${s}" = A; then
      if test "${OTA_A_GOOD}" = 1; then setenv ota_slot A;
      elif test "${OTA_A_TRIES}" = 3; then setenv OTA_A_TRIES 2; setenv ota_slot A; setenv ota_save 1;
      elif test "${OTA_A_TRIES}" = 2; then setenv OTA_A_TRIES 1; setenv ota_slot A; setenv ota_save 1;
      elif test "${OTA_A_TRIES}" = 1; then setenv OTA_A_TRIES 0; setenv ota_slot A; setenv ota_save 1;
      fi
    elif test "${s}" = B; then
      if test "${OTA_B_GOOD}" = 1; then setenv ota_slot B;
      elif test "${OTA_B_TRIES}" = 3; then setenv OTA_B_TRIES 2; setenv ota_slot B; setenv ota_save 1;
      elif test "${OTA_B_TRIES}" = 2; then setenv OTA_B_TRIES 1; setenv ota_slot B; setenv ota_save 1;
      elif test "${OTA_B_TRIES}" = 1; then setenv OTA_B_TRIES 0; setenv ota_slot B; setenv ota_save 1;
      fi
    fi
  fi
done
if test -z "${ota_slot}"; then
  # No slot qualifies: trying one beats a device that never starts.
  for s in ${OTA_ORDER}; do if test -z "${ota_slot}"; then setenv ota_slot ${s}; fi; done
fi

# Save a spent try before booting: into the copy that is not the active one, flags + 1.
if test "${ota_save}" = 1; then
  setenv ota_target 0
  setenv ota_flags 1
  if test "${ota_active}" = 0; then
    setenv ota_target 1
    setexpr.b ota_flags *${ota_flags_0} + 1
  elif test "${ota_active}" = 1; then
    setexpr.b ota_flags *${ota_flags_1} + 1
  fi
  setenv ota_block ${ota_env_block_0}
  setenv ota_out ${ota_copy_0}
  if test "${ota_target}" = 1; then setenv ota_block ${ota_env_block_1}; setenv ota_out ${ota_copy_1}; fi
  # env export -c writes CRC + data for this build's layout; the flags byte goes in between.
  env export -c -s ${ota_import_len} ${ota_work} ${ota_vars}
  cp.b ${ota_work} ${ota_out} 4
  setexpr ota_dst ${ota_out} + 4
  mw.b ${ota_dst} ${ota_flags}
  setexpr ota_dst ${ota_out} + 5
  cp.b ${ota_work_data} ${ota_dst} ${ota_data_len}
  ${ota_if} write ${ota_out} ${ota_block} ${ota_env_blocks}
fi

echo "ota: booting slot ${ota_slot} (order ${OTA_ORDER}; A good=${OTA_A_GOOD} tries=${OTA_A_TRIES}; B good=${OTA_B_GOOD} tries=${OTA_B_TRIES}; env copy ${ota_active})"
setenv ota_part ${ota_part_A}
if test "${ota_slot}" = B; then setenv ota_part ${ota_part_B}; fi
setenv bootargs "${ota_args} ota.slot=${ota_slot}"
# The kernel is a gzip-compressed Image (Image.gz): booti moves it to kernel_comp_addr_r and
# unpacks it at kernel_addr_r.
setexpr kernel_comp_addr_r ${ramdisk_addr_r} + 0x4000000
if load ${ota_if} ${ota_dev}:${ota_part} ${kernel_addr_r} /boot/Image.gz; then
  setenv kernel_comp_size ${filesize}
  load ${ota_if} ${ota_dev}:${ota_part} ${ramdisk_addr_r} /boot/initrd.img
  booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdtcontroladdr}
fi
echo "ota: slot ${ota_slot} did not boot (no kernel on partition ${ota_part})"
