#!/usr/bin/env bash
# scripts/dist.sh [TARGET...] -- static release binaries for device and server targets, and one
# tarball per target in dist/: bin/ (ota-update, ota-sign, ota-server), the systemd units and
# the BusyBox/SysV init script, example configurations (x86 GRUB board, ARM U-Boot board with
# its fw_env.config), the GRUB and U-Boot boot scripts, the man pages and bash/zsh/fish
# completions the build scripts generated (scripts/cli-docs.sh), and a README. Sizes go to
# dist/SIZES.md (docs/packaging.md records them).
#
# Default targets: x86_64-unknown-linux-musl and aarch64-unknown-linux-musl (rustup targets;
# C parts — zstd, bzip2, ring — built with musl-gcc and Debian's aarch64-linux-gnu-gcc).
# armv7-unknown-linux-musleabihf: its standard library is not downloadable from this
# machine's registries (rustup answers 404), see docs/packaging.md.
# The device binary is built on its own (-p ota-updater), so that the signing tools' features
# never reach it. Respects CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
target_dir=$(bash scripts/target-dir.sh)
version=$(cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"]=="ota-updater"))')
mkdir -p dist
sizes=dist/SIZES.md
printf '| target | ota-update | ota-sign | ota-server |\n|---|---:|---:|---:|\n' > "$sizes"

source scripts/cross-env.sh

for target in "${targets[@]}"; do
  cross_env "$target"
  cargo build --release --locked --target "$target" -p ota-updater
  cargo build --release --locked --target "$target" -p ota-signer -p ota-server
  out="$target_dir/$target/release"
  for binary in ota-update ota-sign ota-server; do
    kind=$(file -b "$out/$binary")
    case "$kind" in
      *"statically linked"*|*"static-pie linked"*) ;;
      *) echo "dist.sh: $target/$binary is not static: $kind" >&2; exit 1 ;;
    esac
  done
  name="ota-$version-$target"
  stage="dist/$name"
  rm -rf "$stage"
  mkdir -p "$stage/bin" "$stage/lib/systemd/system" "$stage/etc/init.d" "$stage/share/ota/examples" "$stage/share/ota/boot"
  cp "$out/ota-update" "$out/ota-sign" "$out/ota-server" "$stage/bin/"
  cp updater/systemd/*.service "$stage/lib/systemd/system/"
  cp updater/systemd/health-check.example.sh "$stage/share/ota/examples/"
  cp updater/sysvinit/ota-update "$stage/etc/init.d/"
  cp updater/examples/* "$stage/share/ota/examples/"
  cp qemu/grub.cfg qemu/boot.cmd qemu/u-boot-ota.env "$stage/share/ota/boot/"
  # The man pages and completions the build scripts generated for this target's build.
  bash scripts/cli-docs.sh "$out" "$stage/generated"
  mkdir -p "$stage/share/man/man1" "$stage/share/bash-completion/completions" \
    "$stage/share/zsh/site-functions" "$stage/share/fish/vendor_completions.d"
  mv "$stage"/generated/man/* "$stage/share/man/man1/"
  mv "$stage"/generated/bash/* "$stage/share/bash-completion/completions/"
  mv "$stage"/generated/zsh/* "$stage/share/zsh/site-functions/"
  mv "$stage"/generated/fish/* "$stage/share/fish/vendor_completions.d/"
  rm -rf "$stage/generated"
  cat > "$stage/README" <<README
ota $version for $target: static binaries (no shared libraries needed).
bin/ota-update          the device updater; bin/ota-sign, bin/ota-server for vendors' hosts.
lib/systemd/system/     ota-boot.service (the verdict at boot), ota-update.service (the daemon)
etc/init.d/ota-update   the same for BusyBox/SysV init
share/ota/examples/     updater.toml for an x86 GRUB board and an ARM U-Boot board, fw_env.config,
                        an example health check
share/ota/boot/         the GRUB script (grub.cfg) and the U-Boot scripts: boot.cmd (its own redundant
                        environment at raw offsets; mkimage makes boot.scr) or u-boot-ota.env (in
                        U-Boot's own redundant environment, saveenv)
share/man/man1/          a man page per command and subcommand (man ota-update-install)
share/bash-completion/, share/zsh/site-functions/, share/fish/vendor_completions.d/
                        shell completions
Documentation: docs/updater.md and docs/packaging.md in the source tree.
README
  tar -C dist -czf "dist/$name.tar.gz" "$name"
  size() { stat -c %s "$out/$1"; }
  printf '| %s | %s | %s | %s |\n' "$target" "$(size ota-update)" "$(size ota-sign)" "$(size ota-server)" >> "$sizes"
  echo "dist/$name.tar.gz: $(file -b "$out/ota-update" | cut -d, -f1-2)"
done
cat "$sizes"
