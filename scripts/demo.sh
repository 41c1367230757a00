#!/usr/bin/env bash
# scripts/demo.sh -- the end-to-end demo on this machine, with embedded defaults:
# vendor keygen -> sign a bundle of the images in testdata/ -> verify and extract ->
# a tampered copy and a wrong key are refused.
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
BIN=$ROOT/target/release
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

step "demo complete: every step behaved as expected"
