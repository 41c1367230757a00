#!/usr/bin/env bash
# scripts/demo.sh -- the end-to-end demo on this machine, with embedded defaults:
# vendor keygen -> sign a bundle of the images in testdata/ -> verify and extract ->
# a tampered copy and a wrong key are refused; the bundles are published in a TUF repository
# (ota-sign repo) served by ota-server on 127.0.0.1 with online timestamp/snapshot keys; a
# simulated A/B device (slot files, the `file` bootloader) checks the repository, installs,
# trial-boots, commits, rolls back automatically and by hand; the failed release is never
# retried by itself, and a fleet admin pulls it with the rollout key.
# Everything it makes goes to demo-out/ (or $DEMO_OUT), replaced on each run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${DEMO_OUT:-$ROOT/demo-out}
bash scripts/install-deps.sh

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
expect_refusal() { # expect_refusal EXPECTED_CODE CMD...: the command must fail with that code
  local want=$1; shift
  set +e; "$@"; local got=$?; set -e
  if [ "$got" -ne "$want" ]; then
    echo "demo: expected exit code $want, got $got from: $*" >&2
    exit 1
  fi
  echo "(refused as expected, exit code $got)"
}

step "build the release binaries"
cargo build --release -q --workspace
BIN=$(bash "$ROOT/scripts/target-dir.sh")/release
SIGN=$BIN/ota-sign
rm -rf "$OUT"; mkdir -p "$OUT"

step "vendor: make a signing key"
"$SIGN" keygen --out "$OUT/vendor.key"

step "vendor CI: sign release 2.0.0 of the images in testdata/v2 (reproducible: SOURCE_DATE_EPOCH)"
SOURCE_DATE_EPOCH=1795132800 "$SIGN" bundle --product acme-router --version 2.0.0 \
  --image rootfs=testdata/v2/rootfs.img --image kernel=testdata/v2/kernel.img \
  --key "$OUT/vendor.key" -o "$OUT/acme-router-2.0.0.bundle"

step "anyone: inspect the bundle (no keys needed, clearly unverified)"
"$SIGN" inspect "$OUT/acme-router-2.0.0.bundle"

step "device side: verify with the public key only, extract the rootfs"
"$SIGN" verify --trusted "$OUT/vendor.key.pub" \
  --extract rootfs="$OUT/rootfs.extracted" "$OUT/acme-router-2.0.0.bundle"
cmp "$OUT/rootfs.extracted" testdata/v2/rootfs.img
echo "extracted rootfs is byte-identical to testdata/v2/rootfs.img"

step "attacker: flip one payload byte in a copy -> refused"
cp "$OUT/acme-router-2.0.0.bundle" "$OUT/tampered.bundle"
size=$(stat -c %s "$OUT/tampered.bundle")
printf '\x55' | dd of="$OUT/tampered.bundle" bs=1 seek=$((size - 1000)) conv=notrunc status=none
expect_refusal 5 "$SIGN" verify --trusted "$OUT/vendor.key.pub" "$OUT/tampered.bundle"

step "attacker: sign with a key the device does not trust -> refused"
"$SIGN" keygen --out "$OUT/attacker.key" >/dev/null
"$SIGN" bundle --product acme-router --version 9.9.9 --image rootfs=testdata/v3/rootfs.img \
  --key "$OUT/attacker.key" -o "$OUT/evil.bundle" 2>/dev/null
expect_refusal 4 "$SIGN" verify --trusted "$OUT/vendor.key.pub" "$OUT/evil.bundle"

step "attacker: truncate the bundle -> refused"
head -c $((size / 2)) "$OUT/acme-router-2.0.0.bundle" > "$OUT/truncated.bundle"
expect_refusal 5 "$SIGN" verify --trusted "$OUT/vendor.key.pub" "$OUT/truncated.bundle"

# ---------------------------------------------------------------- the device
DEV=$OUT/device
UPD="$BIN/ota-update --config $DEV/updater.toml"
mkdir -p "$DEV"
cp testdata/device/updater.toml testdata/device/health-check.sh "$DEV/"
cp "$OUT/vendor.key.pub" "$DEV/vendor.pub"
status() { echo "--- ota-update status"; $UPD status; }
reboot_device() { echo "--- power on: the bootloader picks a slot"; $UPD simulate-boot; echo "--- ota-update boot (runs early at every boot)"; "$@"; }

step "factory: flash release 1.0.0 into slot A (8 MiB slot files, as partitions), first boot"
for s in a b; do truncate -s 8M "$DEV/slot-$s.rootfs"; truncate -s 1M "$DEV/slot-$s.kernel"; done
dd if=testdata/v1/rootfs.img of="$DEV/slot-a.rootfs" conv=notrunc status=none
dd if=testdata/v1/kernel.img of="$DEV/slot-a.kernel" conv=notrunc status=none
reboot_device $UPD boot
status

step "vendor CI: sign releases 2.0.0 and 3.0.0 (3.0.0 has a bug its health check catches)"
echo "each bundle carries a delta from the previous release plus the full images (--with-full)"
for v in 2 3; do
  p=$((v - 1))
  SOURCE_DATE_EPOCH=1795132800 "$SIGN" bundle --product acme-router --version $v.0.0 \
    --image rootfs=testdata/v$v/rootfs.img --image kernel=testdata/v$v/kernel.img \
    --base rootfs=testdata/v$p/rootfs.img --base kernel=testdata/v$p/kernel.img --with-full \
    --key "$OUT/vendor.key" -o "$OUT/acme-router-$v.0.0.bundle" --json |
    python3 -c 'import json,sys; j=json.load(sys.stdin); print(j["output"] + ":"); [print("  %-6s %-5s %7d bytes for a %d-byte image" % (i["name"], i["payload"]["kind"], i["stored_size"], i["size"])) for i in j["images"]]'
done

step "vendor: a TUF repository with one key per role (root offline, targets in CI, snapshot and timestamp online)"
mkdir -p "$OUT/keys"
for role in root targets snapshot timestamp; do "$SIGN" keygen --out "$OUT/keys/$role.key" >/dev/null; done
REPO=$OUT/repo
"$SIGN" repo init --repo "$REPO" --root-key "$OUT/keys/root.key" --targets-key "$OUT/keys/targets.key.pub" \
  --snapshot-key "$OUT/keys/snapshot.key.pub" --timestamp-key "$OUT/keys/timestamp.key.pub" \
  --expires timestamp=1d --expires snapshot=7d
echo "vendor CI: publish 2.0.0 with the targets key only"
"$SIGN" repo add --repo "$REPO" --trusted "$OUT/vendor.key.pub" "$OUT/acme-router-2.0.0.bundle"
"$SIGN" repo publish --repo "$REPO" --key "$OUT/keys/targets.key"

step "server: serve the repository on 127.0.0.1 with the online keys (it signs snapshot and timestamp)"
"$BIN/ota-server" serve --repo "$REPO" --listen 127.0.0.1:0 --access-log "$OUT/access.log" \
  --timestamp-key "$OUT/keys/timestamp.key" --snapshot-key "$OUT/keys/snapshot.key" --resign-interval 2 \
  2> "$OUT/server.log" &
SERVER_PID=$!
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
for _ in $(seq 50); do grep -q "serving" "$OUT/server.log" 2>/dev/null && break; sleep 0.1; done
URL=$(sed -n 's/.* on \(http:[^ ]*\).*/\1/p' "$OUT/server.log" | head -1)
[ -n "$URL" ] || { cat "$OUT/server.log"; exit 1; }
cat "$OUT/server.log"
ls "$REPO/metadata"
cp "$REPO/metadata/1.root.json" "$DEV/root.json"
printf '\n[repository]\nurl = "%s"\nroot = "root.json"\nchannel = "stable"\n' "$URL" >> "$DEV/updater.toml"

step "device: refuse what must be refused (each leaves slot A and the bootloader untouched)"
expect_refusal 4 $UPD install "$OUT/evil.bundle"
expect_refusal 5 $UPD install "$OUT/tampered.bundle"

step "device: check the repository (TUF: root, timestamp, snapshot, targets verified)"
$UPD check

step "device: install from the repository into the inactive slot B (the delta from 1.0.0 matches slot A: streamed, verified, read back)"
$UPD install
status

step "reboot: B boots on trial, its health check passes, B is committed"
reboot_device $UPD boot
status

step "admin: roll back to slot A (1.0.0 is verified against its recorded hash first)"
$UPD rollback --reboot
reboot_device $UPD boot
status

step "admin: roll forward again to slot B (2.0.0)"
$UPD rollback --reboot
reboot_device $UPD boot

step "device: a downgrade to 2.0.0 is refused now that 2.0.0 runs"
expect_refusal 8 $UPD install "$OUT/acme-router-2.0.0.bundle"

step "vendor CI: publish 3.0.0 (targets key); the server's online keys make it visible"
"$SIGN" repo add --repo "$REPO" --trusted "$OUT/vendor.key.pub" "$OUT/acme-router-3.0.0.bundle"
"$SIGN" repo publish --repo "$REPO" --key "$OUT/keys/targets.key"
for _ in $(seq 150); do $UPD check | grep -q "3.0.0" && break; sleep 0.2; done
$UPD check

step "device: install 3.0.0 from the repository into slot A"
$UPD install

step "reboot: A boots on trial, its health check FAILS -> marked bad, back to B"
reboot_device expect_refusal 11 $UPD boot --no-reboot
echo "--- the device reboots (as ota-update boot would without --no-reboot)"
reboot_device $UPD boot
status

step "admin: roll back to slot A -> refused, it holds the failed 3.0.0"
expect_refusal 10 $UPD rollback
status

step "fleet: 3.0.0 failed here, so the device never retries it by itself (no reboot loop)"
before=$(sha256sum < "$DEV/slot-a.rootfs")
$UPD check
$UPD install
[ "$(sha256sum < "$DEV/slot-a.rootfs")" = "$before" ] || { echo "demo: the failed release was written again" >&2; exit 1; }
echo "slot A untouched: the failed 3.0.0 was neither downloaded nor written again"

step "fleet admin: with a rollout key (not the release key), pull 3.0.0 for the whole fleet"
"$SIGN" keygen --out "$OUT/keys/rollout.key" >/dev/null
"$SIGN" rollout init --repo "$REPO" --rollout-key "$OUT/keys/rollout.key.pub" --key "$OUT/keys/targets.key"
"$SIGN" rollout pull --repo "$REPO" --product acme-router --version 3.0.0 --key "$OUT/keys/rollout.key"
"$SIGN" rollout status --repo "$REPO"
echo "--- the server's online keys re-sign snapshot and timestamp; the device's next check sees it"
for _ in $(seq 150); do $UPD check --json | grep -q '"state": "pulled"' && break; sleep 0.2; done
$UPD check --json | grep -q '"state": "pulled"' || { echo "demo: the device never saw the pull" >&2; exit 1; }
$UPD check

step "demo complete: every step behaved as expected"
