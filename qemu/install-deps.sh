#!/usr/bin/env bash
# qemu/install-deps.sh -- installs the Debian packages the QEMU device needs, when missing.
#
# qemu-system-x86 comes from bookworm-backports, and only that package: the machine's
# preinstalled qemu-utils is the backports build, and bookworm's qemu-system-x86 conflicts with
# it. Everything else comes from bookworm. Idempotent and quiet when everything is there.
set -euo pipefail
declare -A NEED=(
  [qemu-system-x86_64]=qemu-system-x86
  [/usr/share/OVMF/OVMF_CODE.fd]=ovmf
  [/usr/lib/grub/x86_64-efi/linux.mod]=grub-efi-amd64-bin
  [grub-mkimage]=grub-common
  [mcopy]=mtools
  [mkfs.vfat]=dosfstools
  [sfdisk]=fdisk
  [mkfs.ext4]=e2fsprogs
  [/bin/busybox]=busybox-static
  [cpio]=cpio
  [depmod]=kmod
  [zstd]=zstd
  [socat]=socat                # scenario g: the guest's connections to the host's server
)
missing=()
for what in "${!NEED[@]}"; do
  if [[ $what == /* ]]; then [ -e "$what" ] && continue
  else command -v "$what" >/dev/null 2>&1 && continue; fi
  missing+=("${NEED[$what]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
apt_get() { $SUDO apt-get -o DPkg::Lock::Timeout=600 "$@"; }
backports=
for p in "${missing[@]}"; do [ "$p" = qemu-system-x86 ] && backports=1; done
if [ -n "$backports" ] && ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo "adding bookworm-backports (for qemu-system-x86 only)" >&2
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
fi
echo "installing Debian packages: ${missing[*]}" >&2
apt_get update -qq
others=()
for p in "${missing[@]}"; do [ "$p" = qemu-system-x86 ] || others+=("$p"); done
if [ ${#others[@]} -gt 0 ]; then
  apt_get install -y -qq --no-install-recommends "${others[@]}" >/dev/null
fi
if [ -n "$backports" ]; then
  apt_get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 >/dev/null
fi
