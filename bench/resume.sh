#!/usr/bin/env bash
# bench/resume.sh -- what an install interrupted at 90 % redoes on its next run.
#
# For a full bundle and a delta bundle of a SIZE_MIB (default 1024) MiB image, served by nginx
# on loopback: `ota-update install URL` is SIGKILLed once `status --json` reports 90 % of the
# image durable in the slot, then run again. Measured on both runs: bundle bytes nginx sent
# ($body_bytes_sent of the access log lines each added) and bytes written to the slot device
# (write/pwrite64 system calls on it, from strace -ff -y); "redone" is what both runs sent or
# wrote (first + next - total). The same with the install journal removed after the kill shows
# what an updater without resume redoes. Prints a Markdown table; nothing here asserts a figure.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/device.sh"
OUT=${OUT:-$ROOT/bench-out/resume}
SIZE_MIB=${SIZE_MIB:-1024}
for t in nginx strace python3; do
  command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || {
    echo "missing $t: apt-get install nginx-light strace python3" >&2; exit 2; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
cargo build --release -q -p ota-updater -p ota-signer --manifest-path "$ROOT/Cargo.toml"
BIN=$(bash "$ROOT/scripts/target-dir.sh")/release
rm -rf "$OUT"; mkdir -p "$OUT/www" "$OUT/nginx"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$OUT/nginx/nginx.conf" <<NGINX
daemon on;
master_process off;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log;
events { worker_connections 64; }
http {
  log_format bytes '\$request \$status \$body_bytes_sent';
  access_log $OUT/nginx/access.log bytes;
  client_body_temp_path $OUT/nginx;
  proxy_temp_path $OUT/nginx; fastcgi_temp_path $OUT/nginx; uwsgi_temp_path $OUT/nginx; scgi_temp_path $OUT/nginx;
  # A link of RATE (default 100m bytes/s): the kill lands near 90 %, not after the end.
  server { listen 127.0.0.1:$PORT; root $OUT/www; limit_rate ${RATE:-100m}; }
}
NGINX
"$NGINX" -c "$OUT/nginx/nginx.conf"
trap '"$NGINX" -c "$OUT/nginx/nginx.conf" -s stop 2>/dev/null || true' EXIT
URL=http://127.0.0.1:$PORT

# Firmware-like content: words of random bytes, repeated (compresses about 3:1).
python3 - "$OUT/v1.img" "$OUT/v2.img" "$SIZE_MIB" <<'PY'
import random, sys
r = random.Random(1); words = [bytes(r.getrandbits(8) for _ in range(r.randint(4, 40))) for _ in range(4096)]
n = int(sys.argv[3]) << 20
with open(sys.argv[1], "wb") as out:
    done = 0
    while done < n:
        b = b"".join(words[r.randrange(4096)] for _ in range(4096))[: n - done]; out.write(b); done += len(b)
# The release changes ~3 % of the image in 64 places.
data = bytearray(open(sys.argv[1], "rb").read())
for _ in range(64):
    at = r.randrange(n - 600_000); data[at:at + 512 * 1024] = r.randbytes(512 * 1024)
open(sys.argv[2], "wb").write(data)
PY
"$BIN/ota-sign" keygen --out "$OUT/vendor.key" >/dev/null
"$BIN/ota-sign" bundle --product bench --version 2.0.0 --image "rootfs=$OUT/v2.img" \
  --key "$OUT/vendor.key" --level 3 -o "$OUT/www/full.bundle" 2>/dev/null
"$BIN/ota-sign" bundle --product bench --version 2.0.0 --image "rootfs=$OUT/v2.img" \
  --base "rootfs=$OUT/v1.img" --key "$OUT/vendor.key" --level 3 -o "$OUT/www/delta.bundle" 2>/dev/null

# A file-backed device in DIR, slot A holding v1, booted on A.
device() {
  rm -rf "$1"; mkdir -p "$1/state"
  cp "$OUT/v1.img" "$1/slot-a"; truncate -s $(( (SIZE_MIB + 1) << 20 )) "$1/slot-a" "$1/slot-b"
  bench_device_config "$1" "$OUT/vendor.key.pub"
  "$BIN/ota-update" --config "$1/updater.toml" simulate-boot >/dev/null
}

# Durable fraction of the image the journal claims (0 when there is none).
durable() {
  "$BIN/ota-update" --config "$1/updater.toml" status --json 2>/dev/null | python3 -c '
import json, sys
r = json.load(sys.stdin).get("resumable_install")
print(0 if not r else r["written_bytes"] / r["total_bytes"])'
}

# Slot bytes the traced runs wrote: write/pwrite64 calls on the slot (one strace file per
# thread, so no call is split by another thread's).
slot_writes() { # DEV TRACE_PREFIX
  cat "$2".* 2>/dev/null |
    awk -v dev="$1/slot-b>" 'index($0, dev) { n = $NF; if (n ~ /^[0-9]+$/) s += n } END { print s + 0 }'
}

# Bundle bytes nginx sent for /BUNDLE in the access log lines after line FROM.
sent_since() { # FROM BUNDLE
  tail -n +"$(($1 + 1))" "$OUT/nginx/access.log" | awk -v b="/$2" '$2 == b { s += $NF } END { print s + 0 }'
}

# Runs the install traced; SIGKILLs it at 90 % durable. Prints the fraction reached, or
# "ended" when the install finished before.
install_killed_at_90() { # DEV BUNDLE
  strace -ff -y -qq -e trace=write,pwrite64 -e signal=none -o "$OUT/trace1" \
    "$BIN/ota-update" --config "$1/updater.toml" install "$URL/$2" >/dev/null 2>&1 &
  local tracer=$! at=0 pid=""
  while kill -0 "$tracer" 2>/dev/null; do
    [ -n "$pid" ] || pid=$(pgrep -P "$tracer" || true)
    at=$(durable "$1")
    if [ -n "$pid" ] && python3 -c "import sys; sys.exit(0 if $at >= 0.9 else 1)"; then
      kill -9 "$pid" 2>/dev/null && { wait "$tracer" 2>/dev/null || true; echo "$at"; return; }
    fi
    sleep 0.05
  done
  echo ended
}

# The next install, traced: "SLOT_BYTES_WRITTEN WALL".
install_measured() { # DEV BUNDLE
  local start end
  start=$(date +%s.%N)
  strace -ff -y -qq -e trace=write,pwrite64 -e signal=none -o "$OUT/trace2" \
    "$BIN/ota-update" --config "$1/updater.toml" install "$URL/$2" >/dev/null
  end=$(date +%s.%N)
  cmp -n $((SIZE_MIB << 20)) "$OUT/v2.img" "$1/slot-b" || { echo "slot B differs" >&2; exit 1; }
  echo "$(slot_writes "$1" "$OUT/trace2") $(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')"
}

pct() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f %%", 100 * a / b }'; }

echo "Redone = sent (or written) by both runs: first run + next run - bundle (or image) size."
echo
echo "| bundle | size | killed at | next run | sent: first run | next run | redone | written: first run | next run | redone | next run wall |"
echo "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"
image=$((SIZE_MIB << 20))
for b in full.bundle delta.bundle; do
  size=$(stat -c %s "$OUT/www/$b")
  for mode in resumed "started over (journal removed)"; do
    dev=$OUT/dev
    device "$dev"
    rm -f "$OUT"/trace1.* "$OUT"/trace2.*
    before=$(wc -l < "$OUT/nginx/access.log")
    at=$(install_killed_at_90 "$dev" "$b")
    if [ "$at" = ended ]; then
      echo "| $b | $((size >> 20)) MiB | - | the install ended before 90 % was seen: lower RATE | | | | | | | |"
      continue
    fi
    sent1=$(sent_since "$before" "$b"); written1=$(slot_writes "$dev" "$OUT/trace1")
    [ "$mode" = resumed ] || rm -f "$dev/state/install-journal.json"
    before=$(wc -l < "$OUT/nginx/access.log")
    read -r written2 wall < <(install_measured "$dev" "$b")
    sent2=$(sent_since "$before" "$b")
    echo "| $b | $((size >> 20)) MiB | $(pct "$at" 1) | $mode | $(pct "$sent1" "$size") | $(pct "$sent2" "$size") | $(pct $((sent1 + sent2 - size)) "$size") | $(pct "$written1" "$image") | $(pct "$written2" "$image") | $(pct $((written1 + written2 - image)) "$image") | $wall s |"
  done
done
