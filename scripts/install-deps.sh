#!/usr/bin/env bash
# scripts/install-deps.sh -- installs the Debian packages the demo and the tests use, when missing.
# Idempotent and quiet when everything is there. Needs root (or sudo) only to install.
set -euo pipefail
# command -> Debian package
declare -A NEED=(
  [openssl]=openssl            # openssl-made keys must work everywhere
  [zstd]=zstd                  # reference tool in benchmarks
  [grub-editenv]=grub-common   # GRUB environment interop tests
  [fw_printenv]=libubootenv-tool  # U-Boot environment interop tests
  [mkenvimage]=u-boot-tools    # creates the first U-Boot environment for those tests
  [mkfs.ext4]=e2fsprogs        # testdata/make-images.sh
  [nginx]=nginx                # the repository served by nginx must work for the updater
  [curl]=curl                  # TLS checks of ota-server
  [systemd-analyze]=systemd    # updater/tests/units.rs verifies the shipped systemd units
  [faketime]=faketime          # updater/tests/tuf_conformance.rs: `ota-update tuf --clock system` at a faked time
  [softhsm2-util]=softhsm2     # updater/tests/hsm_and_kms.rs: keys in a PKCS#11 token (libsofthsm2.so)
  [pkcs11-tool]=opensc         # generates those keys inside the token
  [busybox]=busybox-static     # updater/tests/kit.rs: the init script under BusyBox's sh and start-stop-daemon (static: qemu/'s initramfs copies it)
  [man]=man-db                 # scripts/test-packages.sh, tests/cli_docs.rs: the generated man pages render
  [zsh]=zsh                    # tests/cli_docs.rs: the generated zsh completions parse
  [fish]=fish                  # ... and the fish ones
  [mksquashfs]=squashfs-tools  # ota-core/tests/delta.rs: squashfs-xz pairs made by squashfs-tools itself
  [g++]=g++                    # fuzz/run.sh: libfuzzer-sys compiles libFuzzer (C++); nightly and cargo-fuzz come from rustup and crates.io
)
missing=()
for cmd in "${!NEED[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${NEED[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing Debian packages: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
