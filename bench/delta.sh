#!/usr/bin/env bash
# bench/delta.sh DATA_DIR [PAIR...] -- delta size, generation and apply cost against the
# reference tools, on the pairs made by ../shared/bench/make-data.sh DATA_DIR.
#
# PAIR is one of ext4 ext4-trixie sqfs arrow numpy (default: all but ext4-trixie, which
# bench/make-ext4-pair.sh DATA_DIR/trixie makes). For each pair, in one run:
#   ota-sign bundle --base (the whole signed bundle: manifest, signature, op list, data), and
#   on ext4 pairs also with OTA_DELTA_NO_FS_HINTS=1 (the generic engine alone), on the
#   squashfs pair also with --xz-content (xz blocks re-created from their content)
#   bsdiff (Debian; killed after $BSDIFF_TIMEOUT s, default 600), xdelta3 -9 -S lzma,
#   zstd -19 --long=31 --patch-from, zstd --ultra -22 --long=31 --patch-from
# and reports size, generation wall/CPU time and peak RSS, apply wall time and peak RSS, and
# whether the applied output matches the new image. Needs bsdiff, xdelta3, zstd, /usr/bin/time.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 DATA_DIR [ext4|ext4-trixie|sqfs|arrow|numpy ...]" >&2; exit 2; }
DATA=$1; shift
PAIRS=("$@"); [ ${#PAIRS[@]} -gt 0 ] || PAIRS=(ext4 sqfs arrow numpy)
for t in bsdiff bspatch xdelta3 zstd /usr/bin/time; do
  command -v $t >/dev/null || { echo "missing $t: apt-get install bsdiff xdelta3 zstd time" >&2; exit 2; }
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench-out/delta}
BSDIFF_TIMEOUT=${BSDIFF_TIMEOUT:-600}
mkdir -p "$OUT"
cargo build --release -q -p ota-signer --manifest-path "$ROOT/Cargo.toml" || exit 1
SIGN=$(bash "$ROOT/scripts/target-dir.sh")/release/ota-sign
[ -e "$OUT/k" ] || "$SIGN" keygen --out "$OUT/k" >/dev/null

# run LOG CMD...: runs CMD under /usr/bin/time (wall, user+sys, max RSS KiB) into LOG;
# prints "wall cpu rss_MiB status".
run() {
  local log=$1; shift
  /usr/bin/time -f "%e %U %S %M" -o "$log" "$@" >/dev/null 2>"$log.err"
  local st=$?
  tail -1 "$log" | awk -v st="$st" '{printf "%.1f %.1f %.0f %d", $1, $2+$3, $4/1024, st}'
}

pair_files() {
  case $1 in
    ext4) echo "$DATA/A.ext4 $DATA/B.ext4" ;;
    ext4-trixie) echo "$DATA/trixie/A.ext4 $DATA/trixie/B.ext4" ;;   # bench/make-ext4-pair.sh DATA/trixie
    sqfs) echo "$DATA/A.sqfs $DATA/B.sqfs" ;;
    arrow) echo "$DATA/arrow_A.so $DATA/arrow_B.so" ;;
    numpy) echo "$DATA/numpy_A.so $DATA/numpy_B.so" ;;
    *) echo "unknown pair $1" >&2; exit 2 ;;
  esac
}

echo "# delta benchmark, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores"
echo "# tools: $(zstd --version | head -1); $(xdelta3 -V 2>&1 | head -1); bsdiff $(dpkg-query -W -f='${Version}' bsdiff 2>/dev/null)"
echo
echo "| pair | new size | tool | delta bytes | vs best tool | gen wall s | gen CPU s | gen RSS MiB | apply wall s | apply RSS MiB | output matches |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for pair in "${PAIRS[@]}"; do
  read -r old new <<<"$(pair_files "$pair")"
  [ -f "$old" ] && [ -f "$new" ] || { echo "missing $old or $new (run ../shared/bench/make-data.sh $DATA)" >&2; exit 2; }
  size=$(stat -c %s "$new")
  cat "$old" "$new" > /dev/null
  declare -A SIZE=() GEN=() APPLY=() OK=()
  check() { cmp -s "$1" "$new" && echo yes || echo NO; }

  # ota-sign: the whole signed bundle is what a device downloads. ours KEY [VAR=VALUE...] --
  # [BUNDLE OPTION...]: bundle with that environment and those options, then apply.
  ours() {
    local key=$1 vars=() bundle="$OUT/$pair.$1.bundle"; shift
    while [ "$1" != -- ]; do vars+=("$1"); shift; done; shift
    g=$(run "$OUT/g.log" env "${vars[@]}" "$SIGN" bundle --product bench --version 2.0.0 \
        --image rootfs="$new" --base rootfs="$old" --key "$OUT/k" "$@" -o "$bundle")
    rm -f "$OUT/$pair.ours"
    a=$(run "$OUT/a.log" "$SIGN" verify --trusted "$OUT/k.pub" --base rootfs="$old" \
        --extract rootfs="$OUT/$pair.ours" "$bundle")
    SIZE[$key]=$(stat -c %s "$bundle"); GEN[$key]=$g; APPLY[$key]=$a
    OK[$key]=$(check "$OUT/$pair.ours")
    tools+=("$key")
  }
  tools=()
  ours ota-sign --
  # On filesystem images, also the generic engine alone: what the ext4 hints and the gzip
  # operations are worth on this pair.
  [ "${pair%%-*}" = ext4 ] && ours generic OTA_DELTA_NO_FS_HINTS=1 --
  # On squashfs images, also --xz-content: changed xz blocks re-created from their content.
  [ "$pair" = sqfs ] && ours xz -- --xz-content

  g=$(run "$OUT/g.log" timeout "$BSDIFF_TIMEOUT" bsdiff "$old" "$new" "$OUT/$pair.bsdiff")
  if [ "${g##* }" = 0 ]; then
    a=$(run "$OUT/a.log" bspatch "$old" "$OUT/$pair.bsdiff.out" "$OUT/$pair.bsdiff")
    SIZE[bsdiff]=$(stat -c %s "$OUT/$pair.bsdiff"); OK[bsdiff]=$(check "$OUT/$pair.bsdiff.out")
  else
    a="- - - -"; SIZE[bsdiff]="failed (exit ${g##* }$( [ "${g##* }" = 124 ] && echo ", timeout ${BSDIFF_TIMEOUT}s"))"; OK[bsdiff]=-
  fi
  GEN[bsdiff]=$g; APPLY[bsdiff]=$a

  g=$(run "$OUT/g.log" xdelta3 -9 -S lzma -f -e -s "$old" "$new" "$OUT/$pair.xd3")
  a=$(run "$OUT/a.log" xdelta3 -f -d -s "$old" "$OUT/$pair.xd3" "$OUT/$pair.xd3.out")
  SIZE[xdelta3]=$(stat -c %s "$OUT/$pair.xd3"); GEN[xdelta3]=$g; APPLY[xdelta3]=$a; OK[xdelta3]=$(check "$OUT/$pair.xd3.out")

  for lvl in 19 22; do
    t="zstd-$lvl"; extra=(); [ $lvl = 22 ] && extra=(--ultra)
    g=$(run "$OUT/g.log" zstd -q -f "${extra[@]}" -$lvl --long=31 --patch-from="$old" "$new" -o "$OUT/$pair.$t")
    a=$(run "$OUT/a.log" zstd -q -f -d --long=31 --patch-from="$old" "$OUT/$pair.$t" -o "$OUT/$pair.$t.out")
    SIZE[$t]=$(stat -c %s "$OUT/$pair.$t"); GEN[$t]=$g; APPLY[$t]=$a; OK[$t]=$(check "$OUT/$pair.$t.out")
  done

  best=""
  for t in bsdiff xdelta3 zstd-19 zstd-22; do
    case ${SIZE[$t]} in (*[!0-9]*) continue ;; esac
    if [ -z "$best" ] || [ "${SIZE[$t]}" -lt "$best" ]; then best=${SIZE[$t]}; fi
  done
  for t in "${tools[@]}" bsdiff xdelta3 zstd-19 zstd-22; do
    read -r gw gc gr _ <<<"${GEN[$t]}"; read -r aw _ ar _ <<<"${APPLY[$t]}"
    ratio=$(case ${SIZE[$t]} in (*[!0-9]*) echo - ;; (*) awk -v a="${SIZE[$t]}" -v b="$best" 'BEGIN{printf "%.3f", a/b}' ;; esac)
    label=$t; [ $t = zstd-19 ] && label="zstd -19 --long=31 --patch-from"; [ $t = zstd-22 ] && label="zstd --ultra -22 --long=31 --patch-from"
    [ $t = xdelta3 ] && label="xdelta3 -9 -S lzma"
    [ $t = generic ] && label="ota-sign, generic engine (OTA_DELTA_NO_FS_HINTS=1)"
    [ $t = xz ] && label="ota-sign --xz-content"
    echo "| $pair | $size | $label | ${SIZE[$t]} | $ratio | $gw | $gc | $gr | $aw | $ar | ${OK[$t]} |"
  done
  unset SIZE GEN APPLY OK
  rm -f "$OUT"/$pair.*.out "$OUT/$pair.ours"
done
