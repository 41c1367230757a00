#!/usr/bin/env bash
# bench/install-rss.sh -- peak RSS of `ota-update install URL` against image size: the updater
# streams (download → verify → decompress → slot), so its memory must not grow with the image.
# Serves bundles of SIZES (MiB, default "16 256") with ota-server on loopback and installs each
# into a file-backed device. Prints a Markdown table. Nothing here asserts a figure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench-out/install-rss}
SIZES=${SIZES:-"16 256"}
command -v /usr/bin/time >/dev/null || { echo "missing /usr/bin/time: apt-get install time" >&2; exit 2; }
cargo build --release -q -p ota-updater -p ota-signer -p ota-server --manifest-path "$ROOT/Cargo.toml"
BIN=$(bash "$ROOT/scripts/target-dir.sh")/release
rm -rf "$OUT"; mkdir -p "$OUT/repo"
"$BIN/ota-sign" keygen --out "$OUT/vendor.key" >/dev/null
"$BIN/ota-server" serve --repo "$OUT/repo" --listen 127.0.0.1:0 --access-log off 2>"$OUT/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
sleep 0.5
BASE=$(sed -n 's/.* on \(http:[^ ]*\).*/\1/p' "$OUT/server.err")
echo "| image | bundle | peak RSS of ota-update install URL | wall |"
echo "|---:|---:|---:|---:|"
for mib in $SIZES; do
  dev=$OUT/dev-$mib
  mkdir -p "$dev/state"
  # Firmware-like content: compressible text and binary mixed (a real rootfs slice would do too).
  python3 -c "
import random, sys
r = random.Random($mib); words = [bytes(r.getrandbits(8) for _ in range(r.randint(4, 40))) for _ in range(4096)]
out = sys.stdout.buffer; n = $mib << 20; done = 0
while done < n:
    b = b''.join(words[r.randrange(4096)] for _ in range(4096))[: n - done]; out.write(b); done += len(b)
" > "$OUT/image-$mib.img"
  "$BIN/ota-sign" bundle --product bench --version 2.0.0 --image "rootfs=$OUT/image-$mib.img" \
    --key "$OUT/vendor.key" --level 3 -o "$OUT/repo/fw-$mib.bundle" 2>/dev/null
  truncate -s $((mib + 1))M "$dev/slot-a" "$dev/slot-b"
  cp "$OUT/vendor.key.pub" "$dev/vendor.pub"
  cat > "$dev/updater.toml" <<TOML
product = "bench"
state_dir = "state"
factory_version = "1.0.0"
[slots.A]
rootfs = "slot-a"
[slots.B]
rootfs = "slot-b"
[bootloader]
backend = "file"
path = "bootloader.json"
[trust]
keys = ["vendor.pub"]
TOML
  "$BIN/ota-update" --config "$dev/updater.toml" simulate-boot >/dev/null
  /usr/bin/time -f "%M %e" -o "$OUT/time" "$BIN/ota-update" --config "$dev/updater.toml" \
    install "$BASE/fw-$mib.bundle" >/dev/null
  read -r rss wall < "$OUT/time"
  cmp -n $((mib << 20)) "$OUT/image-$mib.img" "$dev/slot-b" || { echo "slot B differs" >&2; exit 1; }
  echo "| $mib MiB | $(( $(stat -c %s "$OUT/repo/fw-$mib.bundle") >> 20 )) MiB | $(awk -v k="$rss" 'BEGIN { printf "%.1f MiB", k / 1024 }') | ${wall} s |"
  rm -f "$OUT/image-$mib.img" "$dev/slot-a" "$dev/slot-b"
done
