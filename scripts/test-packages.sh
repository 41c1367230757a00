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
# The man pages and completions the build scripts wrote, where the packages' assets expect them.
bash scripts/cli-docs.sh "$(bash scripts/target-dir.sh)/release" "$(bash scripts/target-dir.sh)/release/cli-docs"
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
# Every installed man page renders (man-db; groff warnings are failures), the page of each
# program is found by `man NAME`, and the completions are where bash, zsh and fish look.
pages=$(dpkg -L ota-update ota-sign | grep '^/usr/share/man/man1/.*\.1\.gz$')
[ "$(echo "$pages" | wc -l)" -ge 30 ] || { echo "too few man pages installed: $pages" >&2; exit 1; }
for page in $pages; do
  warnings=$(MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null)
  [ -z "$warnings" ] || { echo "man -l $page: $warnings" >&2; exit 1; }
done
for program in ota-update ota-sign ota-server; do
  man -w "$program" >/dev/null || { echo "man $program: no page found" >&2; exit 1; }
  for file in /usr/share/bash-completion/completions/$program /usr/share/zsh/vendor-completions/_$program \
      /usr/share/fish/vendor_completions.d/$program.fish; do
    [ -s "$file" ] || { echo "no completion $file" >&2; exit 1; }
  done
done
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
echo "packages: $(cd "$out" && ls *.deb | tr '\n' ' ')installed, ran, $(echo "$pages" | wc -l) man pages rendered, verified, removed"
