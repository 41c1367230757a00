#!/usr/bin/env bash
# bench/install-rss.sh -- peak RSS of the updater and the verifier.
#
# Part "full": `ota-update install URL` against image size: the updater streams (download →
# verify → decompress → slot), so its memory must not grow with the image. Serves bundles of
# SIZES (MiB, default "16 256") with ota-server on loopback and installs each into a
# file-backed device.
#
# Part "delta": `ota-sign verify --base` and `ota-update install URL` (/usr/bin/time -v) on a
# legitimate delta of a DELTA_MIB (default 64) MiB image and on the hostile signed deltas of
# ota-core/examples/hostile_bundles.rs (op-list bomb, control-triple bomb, 2^63-byte zero
# operation, 2^63-byte image) and on the most memory a valid signed delta may take
# (max-window: zstd_ref operations with 8 MiB windows; max-memory: the same after an op list
# needing the largest zstd window from a list near its 1 MiB bound; max-lzma: a bsdiff whose
# LZMA2 data decompresses to the largest patch allowed; max-xz: an xz operation with the
# largest old and new content and the heaviest encoder, on its own base), each run also under
# `ulimit -v 131072`: exit code (124: stopped after 120 s), the device's last result, peak
# RSS, wall time.
#
# PARTS (default "full delta") picks the parts. BIN_DIR=DIR measures other binaries (for
# instance a build of an older commit) instead of building these; the hostile bundles are
# always made by this tree's example. Prints Markdown tables. Nothing here asserts a figure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/device.sh"
OUT=${OUT:-$ROOT/bench-out/install-rss}
SIZES=${SIZES:-"16 256"}
PARTS=${PARTS:-"full delta"}
DELTA_MIB=${DELTA_MIB:-64}
command -v /usr/bin/time >/dev/null || { echo "missing /usr/bin/time: apt-get install time" >&2; exit 2; }
if [ -n "${BIN_DIR:-}" ]; then
  BIN=$BIN_DIR
else
  cargo build --release -q -p ota-updater -p ota-signer -p ota-server --manifest-path "$ROOT/Cargo.toml"
  BIN=$(bash "$ROOT/scripts/target-dir.sh")/release
fi
rm -rf "$OUT"; mkdir -p "$OUT/repo"
"$BIN/ota-sign" keygen --out "$OUT/vendor.key" >/dev/null
"$BIN/ota-server" serve --repo "$OUT/repo" --listen 127.0.0.1:0 --access-log off 2>"$OUT/server.err" &
SERVER=$!
trap 'kill $SERVER 2>/dev/null' EXIT
sleep 0.5
BASE=$(sed -n 's/.* on \(http:[^ ]*\).*/\1/p' "$OUT/server.err")

# Firmware-like content: compressible text and binary mixed (a real rootfs slice would do too).
firmware() { # MIB SEED
  python3 -c "
import random, sys
r = random.Random($2); words = [bytes(r.getrandbits(8) for _ in range(r.randint(4, 40))) for _ in range(4096)]
out = sys.stdout.buffer; n = $1 << 20; done = 0
while done < n:
    b = b''.join(words[r.randrange(4096)] for _ in range(4096))[: n - done]; out.write(b); done += len(b)
"
}

# A file-backed device in DIR with slots of MIB MiB, booted on slot A.
device() { # DIR MIB
  mkdir -p "$1/state"
  truncate -s "$2M" "$1/slot-a" "$1/slot-b"
  bench_device_config "$1" "$OUT/vendor.key.pub"
  "$BIN/ota-update" --config "$1/updater.toml" simulate-boot >/dev/null
}

mib() {
  case $1 in
    ''|'?') echo "-" ;;
    *) awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }' ;;
  esac
}

full_part() {
echo "| image | bundle | peak RSS of ota-update install URL | wall |"
echo "|---:|---:|---:|---:|"
for mib in $SIZES; do
  dev=$OUT/dev-$mib
  firmware "$mib" "$mib" > "$OUT/image-$mib.img"
  "$BIN/ota-sign" bundle --product bench --version 2.0.0 --image "rootfs=$OUT/image-$mib.img" \
    --key "$OUT/vendor.key" --level 3 -o "$OUT/repo/fw-$mib.bundle" 2>/dev/null
  device "$dev" $((mib + 1))
  /usr/bin/time -f "%M %e" -o "$OUT/time" "$BIN/ota-update" --config "$dev/updater.toml" \
    install "$BASE/fw-$mib.bundle" >/dev/null
  read -r rss wall < "$OUT/time"
  cmp -n $((mib << 20)) "$OUT/image-$mib.img" "$dev/slot-b" || { echo "slot B differs" >&2; exit 1; }
  echo "| $mib MiB | $(( $(stat -c %s "$OUT/repo/fw-$mib.bundle") >> 20 )) MiB | $(mib "$rss") | ${wall} s |"
  rm -f "$OUT/image-$mib.img" "$dev/slot-a" "$dev/slot-b"
done
}

# Runs CMD... under /usr/bin/time -v (and `ulimit -v 131072` with LIMIT=1); prints
# "EXIT RSS_KIB WALL". A run still going after 120 s is stopped (exit 124).
measure() {
  local limit=${LIMIT:-0}
  set +e
  if [ "$limit" = 1 ]; then
    timeout 120 /usr/bin/time -v -o "$OUT/time" sh -c 'ulimit -v 131072; exec "$@"' sh "$@" \
      >/dev/null 2>"$OUT/stderr"
  else
    timeout 120 /usr/bin/time -v -o "$OUT/time" "$@" >/dev/null 2>"$OUT/stderr"
  fi
  local code=$?
  set -e
  local rss wall
  rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$OUT/time")
  wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$OUT/time")
  [ "$code" = 124 ] && wall=">120s"
  rm -f "$OUT/time"
  echo "$code ${rss:-?} ${wall:-?}"
}

last_result() { # DEV
  "$BIN/ota-update" --config "$1/updater.toml" status --json 2>/dev/null |
    python3 -c 'import json,sys; r=json.load(sys.stdin).get("last_result") or {}; print((r.get("kind") or "none") + (": " + r["reason"][:70] if r.get("reason") else ""))'
}

delta_part() {
  local dev=$OUT/dev-delta slot=$((DELTA_MIB + 1))
  device "$dev" "$slot"
  # The running slot's image, and a release changing 3 % of it (new bytes, a shifted region).
  firmware "$DELTA_MIB" 1 > "$OUT/old.img"
  python3 - "$OUT/old.img" "$OUT/new.img" <<'PY'
import random, sys
data = bytearray(open(sys.argv[1], "rb").read()); r = random.Random(2); n = len(data)
for _ in range(8):
    at = r.randrange(n - 300_000); data[at:at + 262_144] = bytes(r.getrandbits(8) for _ in range(262_144))
at = n // 3; data[at:at + 1_000_000] = b"shifted!" + data[at:at + 1_000_000 - 8]
open(sys.argv[2], "wb").write(data)
PY
  dd if="$OUT/old.img" of="$dev/slot-a" conv=notrunc status=none
  cp "$dev/slot-a" "$OUT/base.img"
  "$BIN/ota-sign" bundle --product bench --version 2.0.0 --image "rootfs=$OUT/new.img" \
    --base "rootfs=$OUT/base.img" --key "$OUT/vendor.key" -o "$OUT/repo/delta.bundle" 2>/dev/null
  cargo run --release -q -p ota-core --example hostile_bundles --manifest-path "$ROOT/Cargo.toml" -- \
    "$OUT/vendor.key" "$OUT/base.img" bench 2.0.0 "$OUT/repo"
  echo "| bundle | size | command | limit | exit | last result | peak RSS | wall |"
  echo "|---|---:|---|---|---:|---|---:|---:|"
  local b size r code rss wall
  for b in oplist-bomb control-bomb zero-op zero-image max-window max-memory max-lzma max-xz delta; do
    size=$(stat -c %s "$OUT/repo/$b.bundle")
    # max-xz brings its own base (xz streams): measured with ota-sign verify only.
    base=$OUT/base.img; [ "$b" = max-xz ] && base=$OUT/repo/max-xz.base
    for LIMIT in 0 1; do
      read -r code rss wall < <(LIMIT=$LIMIT measure "$BIN/ota-sign" verify \
        --trusted "$OUT/vendor.key.pub" --base "rootfs=$base" "$OUT/repo/$b.bundle")
      echo "| $b | $size | ota-sign verify --base | $([ $LIMIT = 1 ] && echo 128M || echo none) | $code | | $(mib "$rss") | $wall |"
    done
    # The legitimate delta is installed once, last (it leaves the device waiting for a reboot).
    for LIMIT in 1 0; do
      [ "$b" = delta ] && [ "$LIMIT" = 1 ] && continue
      [ "$b" = max-xz ] && continue
      read -r code rss wall < <(LIMIT=$LIMIT measure "$BIN/ota-update" --config "$dev/updater.toml" \
        install "$BASE/$b.bundle")
      r=$(last_result "$dev")
      echo "| $b | $size | ota-update install URL | $([ $LIMIT = 1 ] && echo 128M || echo none) | $code | $r | $(mib "$rss") | $wall |"
    done
  done
  cmp -n $((DELTA_MIB << 20)) "$OUT/new.img" "$dev/slot-b" || { echo "slot B differs" >&2; exit 1; }
  cmp "$OUT/base.img" "$dev/slot-a" || { echo "slot A changed" >&2; exit 1; }
}

for part in $PARTS; do
  case $part in
    full) full_part ;;
    delta) delta_part ;;
    *) echo "unknown part $part" >&2; exit 2 ;;
  esac
done
