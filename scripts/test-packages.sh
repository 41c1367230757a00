#!/usr/bin/env bash
# scripts/test-packages.sh -- the Debian packages made with cargo-deb install, work and remove
# on this machine: `ota-update` (the device: binary, units, a default /etc/ota/updater.toml,
# examples) and `ota-sign` (the vendor: ota-sign, ota-server and its unit). Run by
# scripts/test.sh after its release build; needs root (or sudo) to install. Refuses to touch
# packages of those names that are already installed. Respects CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
SUDO=
[ "$(id -u)" -eq 0 ] || SUDO=sudo
for package in ota-update ota-sign; do
  if dpkg-query -W -f '${Status}' "$package" 2>/dev/null | grep -q installed; then
    echo "test-packages.sh: $package is installed on this machine: not touching it" >&2
    exit 1
  fi
done
out="$(bash scripts/target-dir.sh)/debian"
rm -rf "$out"
mkdir -p "$out"
cargo build --release -q --workspace
cargo deb -p ota-updater --no-build -o "$out/" >/dev/null
cargo deb -p ota-signer --no-build -o "$out/" >/dev/null
remove() { $SUDO dpkg -P ota-update ota-sign >/dev/null 2>&1 || true; }
trap remove EXIT
$SUDO dpkg -i "$out"/ota-update_*.deb "$out"/ota-sign_*.deb >/dev/null
# The installed programs run; the packaged configuration describes no device, and says so.
/usr/bin/ota-update --help >/dev/null
/usr/bin/ota-sign --version >/dev/null
/usr/bin/ota-server serve --help >/dev/null
set +e
message=$(/usr/bin/ota-update status 2>&1 >/dev/null)
code=$?
set -e
[ "$code" -eq 2 ] || { echo "ota-update status with the packaged config: exit $code, want 2: $message" >&2; exit 1; }
[ "$(printf '%s\n' "$message" | wc -l)" -eq 1 ] || { echo "not one line: $message" >&2; exit 1; }
# The installed units are valid for systemd, with the installed binaries.
systemd-analyze verify /lib/systemd/system/ota-boot.service /lib/systemd/system/ota-update.service \
  /lib/systemd/system/ota-server.service
# Removal takes the programs and units, keeps the edited configuration; purge takes it too.
$SUDO dpkg -r ota-update ota-sign >/dev/null
for gone in /usr/bin/ota-update /usr/bin/ota-sign /usr/bin/ota-server /lib/systemd/system/ota-server.service; do
  [ ! -e "$gone" ] || { echo "$gone is still there after dpkg -r" >&2; exit 1; }
done
[ -f /etc/ota/updater.toml ] || { echo "dpkg -r removed the configuration file" >&2; exit 1; }
$SUDO dpkg -P ota-update >/dev/null
[ ! -e /etc/ota/updater.toml ] || { echo "dpkg -P left /etc/ota/updater.toml" >&2; exit 1; }
trap - EXIT
echo "packages: $(cd "$out" && ls *.deb | tr '\n' ' ')installed, ran, verified, removed"
