#!/usr/bin/env bash
# bench/bundle.sh DATA_DIR [IMAGE...] -- bundle/verify speed and memory against zstd and sha256sum.
#
# DATA_DIR is the output of ../shared/bench/make-data.sh (images default to B.ext4, B.sqfs and
# arrow_B.so from it). Builds the release binaries, then for each image, in one run:
#   ota-sign bundle    vs  zstd -T0 -LEVEL          (wall time, peak RSS, output size)
#   ota-sign verify    vs  zstd -d  and  sha256sum  (wall time, peak RSS)
# and, on the first image, the payload size per chunk size. Prints Markdown tables.
# Environment: LEVELS (default "19 3"), CHUNKS (default "256K 1M 4M"), OUT (default bench-out).
# Figures are measurements on the machine at hand: nothing here asserts a timing.
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DATA_DIR [IMAGE...]" >&2; exit 2; }
DATA=$1; shift
IMAGES=("$@")
if [ ${#IMAGES[@]} -eq 0 ]; then
  IMAGES=("$DATA/B.ext4" "$DATA/B.sqfs" "$DATA/arrow_B.so")
fi
for t in zstd sha256sum /usr/bin/time; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install zstd coreutils time" >&2; exit 2; }
done
LEVELS=${LEVELS:-"19 3"}
CHUNKS=${CHUNKS:-"256K 1M 4M"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench-out}
mkdir -p "$OUT"
cargo build --release -q -p ota-signer --manifest-path "$ROOT/Cargo.toml"
SIGN=$(bash "$ROOT/scripts/target-dir.sh")/release/ota-sign
[ -e "$OUT/k" ] || "$SIGN" keygen --out "$OUT/k" >/dev/null

# measure LABEL CMD...: runs CMD under /usr/bin/time; echoes "wall_s rss_MiB".
measure() {
  local log=$OUT/time.log
  /usr/bin/time -f "%e %M" -o "$log" "$@" >/dev/null
  awk '{printf "%.2f %.1f", $1, $2/1024}' "$log"
}

echo "# bundle benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(zstd --version | head -1)"
echo
echo "| image | size | level | zstd -T0 wall / RSS / size | ota-sign bundle wall / RSS / size | ratio (wall) | sha256sum wall | zstd -d wall / RSS | ota-sign verify wall / RSS | verify / zstd -d |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for img in "${IMAGES[@]}"; do
  [ -f "$img" ] || { echo "missing $img (run ../shared/bench/make-data.sh $DATA)" >&2; exit 2; }
  size=$(stat -c %s "$img")
  # Warm the page cache so both tools read from memory.
  cat "$img" > /dev/null
  for level in $LEVELS; do
    read -r zw zr <<<"$(measure zstd -q -T0 -"$level" -f -o "$OUT/img.zst" "$img")"
    zs=$(stat -c %s "$OUT/img.zst")
    read -r bw br <<<"$(measure "$SIGN" bundle --product bench --version 1.0.0 --level "$level" \
      --image rootfs="$img" --key "$OUT/k" -o "$OUT/img.bundle")"
    bs=$(stat -c %s "$OUT/img.bundle")
    read -r hw _ <<<"$(measure sha256sum "$img")"
    read -r dw dr <<<"$(measure zstd -q -d -f -o /dev/null "$OUT/img.zst")"
    read -r vw vr <<<"$(measure "$SIGN" verify --trusted "$OUT/k.pub" "$OUT/img.bundle")"
    printf "| %s | %s | %s | %ss / %s MiB / %s | %ss / %s MiB / %s | %s | %ss | %ss / %s MiB | %ss / %s MiB | %s |\n" \
      "$(basename "$img")" "$size" "$level" "$zw" "$zr" "$zs" "$bw" "$br" "$bs" \
      "$(awk -v a="$bw" -v b="$zw" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')" "$hw" "$dw" "$dr" "$vw" "$vr" \
      "$(awk -v a="$vw" -v b="$dw" 'BEGIN{printf "%.2f", (b>0)?a/b:0}')"
  done
done

echo
first=${IMAGES[0]}
level=${LEVELS%% *}
echo "## chunk size on $(basename "$first"), level $level"
echo
echo "| chunk size | bundle size | vs zstd -T0 -$level single stream | bundle wall | verify wall / RSS |"
echo "|---|---|---|---|---|"
zstd -q -T0 -"$level" -f -o "$OUT/img.zst" "$first"
zs=$(stat -c %s "$OUT/img.zst")
for chunk in $CHUNKS; do
  read -r bw _ <<<"$(measure "$SIGN" bundle --product bench --version 1.0.0 --level "$level" \
    --chunk-size "$chunk" --image rootfs="$first" --key "$OUT/k" -o "$OUT/chunk.bundle")"
  bs=$(stat -c %s "$OUT/chunk.bundle")
  read -r vw vr <<<"$(measure "$SIGN" verify --trusted "$OUT/k.pub" "$OUT/chunk.bundle")"
  printf "| %s | %s | %s | %ss | %ss / %s MiB |\n" "$chunk" "$bs" \
    "$(awk -v a="$bs" -v b="$zs" 'BEGIN{printf "%.3f", a/b}')" "$bw" "$vw" "$vr"
done
