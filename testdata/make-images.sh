#!/usr/bin/env bash
# testdata/make-images.sh -- regenerates the small firmware images committed beside it.
#
# Each release vN has rootfs.img (a 4 MiB ext4 filesystem made with `mkfs.ext4 -d`, fixed UUID,
# hash seed and timestamps so the bytes are reproducible) and kernel.img (a 192 KiB stand-in
# blob). v2 changes a few files of v1 and moves others, like a real security release; v3 is a
# release whose health check fails (its /etc/ota/health says "fail"). Needs e2fsprogs.
set -euo pipefail
cd "$(dirname "$0")"
export E2FSPROGS_FAKE_TIME=1793491200 SOURCE_DATE_EPOCH=1793491200
UUID=0b7f2a56-7a35-4c0e-9a52-2f7c0b1f6a10
SEED=7d3b0a11-5b8f-4a62-9d0c-4f3e2b1a0c9d

blob() { # blob SEED BYTES: deterministic, compressible-ish binary data
  python3 -c "
import random,sys
r=random.Random($1); n=$2; out=bytearray()
words=[bytes(r.getrandbits(8) for _ in range(r.randint(4,24))) for _ in range(256)]
while len(out)<n: out+=words[r.randrange(256)]
sys.stdout.buffer.write(bytes(out[:n]))"
}

make_release() { # make_release VERSION HEALTH
  local v=$1 health=$2 root
  root=$(mktemp -d)
  mkdir -p "$root/etc/ota" "$root/usr/bin" "$root/usr/lib"
  printf 'NAME="Acme Router OS"\nVERSION_ID="%s"\n' "$v" > "$root/etc/os-release"
  echo "$health" > "$root/etc/ota/health"
  blob 11 300000 > "$root/usr/lib/libacme.so"          # unchanged across releases
  blob 12 200000 > "$root/usr/bin/httpd"
  case $v in
    1.*) blob 13 150000 > "$root/usr/lib/libssl.so" ;;
    *)   blob 14 150000 > "$root/usr/lib/libssl.so"     # the security fix
         blob 15 40000 > "$root/usr/bin/nft" ;;         # a new tool
  esac
  find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
  mkdir -p "v${v%%.*}"
  rm -f "v${v%%.*}/rootfs.img"
  mkfs.ext4 -q -F -b 4096 -U "$UUID" -E "hash_seed=$SEED,root_owner=0:0" -N 64 -O ^has_journal -L rootfs \
    -d "$root" "v${v%%.*}/rootfs.img" 4M
  { printf 'ACME-KERNEL %s\n' "$v"; blob 20 196600; } | head -c 196608 > "v${v%%.*}/kernel.img"
  rm -rf "$root"
}

make_release 1.0.0 ok
make_release 2.0.0 ok
make_release 3.0.0 fail
sha256sum v*/*.img > SHA256SUMS
