#!/usr/bin/env bash
# qemu/install-deps.sh -- installs the Debian packages the QEMU device of ARCH (x86_64, the
# default, or aarch64) needs, when missing.
#
# qemu-system-x86 and qemu-system-arm come from bookworm-backports, and only those packages: the
# machine's preinstalled qemu-utils is the backports build, and bookworm's qemu-system-* conflict
# with it. Everything else comes from bookworm. For aarch64, the arm64 kernel and busybox are
# downloaded (not installed) by qemu/build.sh, which needs arm64 as a foreign architecture in
# dpkg and its package lists. Idempotent and quiet when everything is there.
set -euo pipefail
declare -A NEED=(
  [mcopy]=mtools
  [mkfs.vfat]=dosfstools
  [sfdisk]=fdisk
  [mkfs.ext4]=e2fsprogs
  [/bin/busybox]=busybox-static
  [cpio]=cpio
  [depmod]=kmod
  [zstd]=zstd
  [socat]=socat                # scenario g: the guest's connections to the host's server
  [file]=file
)
case ${ARCH:-x86_64} in
  x86_64)
    NEED+=(
      [qemu-system-x86_64]=qemu-system-x86
      [/usr/share/OVMF/OVMF_CODE.fd]=ovmf
      [/usr/lib/grub/x86_64-efi/linux.mod]=grub-efi-amd64-bin
      [grub-mkimage]=grub-common
    ) ;;
  aarch64)
    NEED+=(
      [qemu-system-aarch64]=qemu-system-arm
      [/usr/lib/u-boot/qemu_arm64/u-boot.bin]=u-boot-qemu
      [mkimage]=u-boot-tools            # boot.scr from qemu/boot.cmd; mkenvimage
      [fw_printenv]=libubootenv-tool    # the board's environment read back on the host
      [aarch64-linux-gnu-gcc]=gcc-aarch64-linux-gnu   # the C parts of the guest's ota-update
    ) ;;
  *) echo "qemu/install-deps.sh: unknown ARCH=$ARCH" >&2; exit 2 ;;
esac
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
apt_get() { $SUDO apt-get -o DPkg::Lock::Timeout=600 "$@"; }
foreign=
if [ "${ARCH:-x86_64}" = aarch64 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  echo "adding arm64 as a foreign architecture (for apt-get download of its kernel and busybox)" >&2
  $SUDO dpkg --add-architecture arm64
  foreign=1
fi
missing=()
for what in "${!NEED[@]}"; do
  if [[ $what == /* ]]; then [ -e "$what" ] && continue
  else command -v "$what" >/dev/null 2>&1 && continue; fi
  missing+=("${NEED[$what]}")
done
# The x86-64 initramfs copies /bin/busybox: Debian's dynamic `busybox` (which an image or an
# earlier install may have brought) cannot run there. busybox-static replaces it (they conflict).
if [ "${ARCH:-x86_64}" = x86_64 ] && [ -e /bin/busybox ] && ldd /bin/busybox >/dev/null 2>&1; then
  missing+=(busybox-static)
fi
if [ ${#missing[@]} -eq 0 ]; then
  [ -z "$foreign" ] || apt_get update -qq
  exit 0
fi
backports=
for p in "${missing[@]}"; do case $p in qemu-system-x86|qemu-system-arm) backports=1 ;; esac; done
if [ -n "$backports" ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "adding bookworm-backports (for qemu-system-x86 and qemu-system-arm only)" >&2
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
fi
echo "installing Debian packages: ${missing[*]}" >&2
apt_get update -qq
others=() from_backports=()
for p in "${missing[@]}"; do
  case $p in qemu-system-x86|qemu-system-arm) from_backports+=("$p") ;; *) others+=("$p") ;; esac
done
if [ ${#others[@]} -gt 0 ]; then
  apt_get install -y -qq --no-install-recommends "${others[@]}" >/dev/null
fi
if [ ${#from_backports[@]} -gt 0 ]; then
  apt_get install -y -qq --no-install-recommends -t bookworm-backports "${from_backports[@]}" >/dev/null
fi
