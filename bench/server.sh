#!/usr/bin/env bash
# bench/server.sh [BUNDLE] -- ota-server against nginx, same repository, same run, loopback.
#
# Serves one repository directory (a ~1 KiB timestamp.json and a large bundle: BUNDLE, or 256
# MiB of pseudo-random data) with the release ota-server and with nginx (Debian, 2 workers,
# sendfile on, access log to a file for both), then drives each with wrk (Debian):
#   timestamp.json                      requests/s and p99 latency (64 connections)
#   timestamp.json + If-None-Match      the 304 path a polling fleet takes
#   the bundle                          MB/s (4 connections)
# Prints a Markdown table: the median of REPEAT (default 3) interleaved runs of DURATION
# (default 10 s) each. Figures are measurements on
# the machine at hand (wrk and the server share its cores); nothing here asserts a timing.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench-out/server}
DURATION=${DURATION:-10}
REPEAT=${REPEAT:-3}
for t in wrk nginx curl; do
  command -v "$t" >/dev/null || PATH=$PATH:/usr/sbin command -v "$t" >/dev/null || {
    echo "missing $t: apt-get install wrk nginx-light curl" >&2; exit 2; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
rm -rf "$OUT"; mkdir -p "$OUT/repo" "$OUT/nginx"
# PROFILE=bench-fast measures a build at opt-level 3 throughout (the release profile is size-tuned).
PROFILE=${PROFILE:-release}
cargo build --profile "$PROFILE" -q -p ota-server --manifest-path "$ROOT/Cargo.toml"

# A timestamp.json of realistic size (python-tuf's are ~500 B-1 KiB).
python3 - "$OUT/repo/timestamp.json" <<'PY'
import json, sys
signed = {"_type": "timestamp", "expires": "2026-12-01T00:00:00Z", "spec_version": "1.0.31",
          "version": 1234, "meta": {"snapshot.json": {"version": 1234, "length": 1489,
          "hashes": {"sha256": "ab" * 32}}}}
sigs = [{"keyid": "cd" * 32, "sig": "ef" * 64}]
open(sys.argv[1], "w").write(json.dumps({"signatures": sigs, "signed": signed}, indent=1))
PY
if [ $# -ge 1 ]; then
  cp "$1" "$OUT/repo/fw.bundle"
else
  head -c $((256 << 20)) /dev/urandom > "$OUT/repo/fw.bundle"
fi
bundle_mib=$(( $(stat -c %s "$OUT/repo/fw.bundle") >> 20 ))

cat > "$OUT/nginx/nginx.conf" <<NGINX
worker_processes 2;
pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log;
events { worker_connections 1024; }
http {
  access_log $OUT/nginx/access.log;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 100000;
  client_body_temp_path $OUT/nginx;
  proxy_temp_path $OUT/nginx; fastcgi_temp_path $OUT/nginx; uwsgi_temp_path $OUT/nginx; scgi_temp_path $OUT/nginx;
  server {
    listen 127.0.0.1:18181;
    root $OUT/repo;
    location = /timestamp.json { add_header Cache-Control "public, max-age=10, must-revalidate"; }
  }
}
NGINX
"$NGINX" -c "$OUT/nginx/nginx.conf"
"$ROOT/target/$PROFILE/ota-server" serve --repo "$OUT/repo" --listen 127.0.0.1:18180 \
  --access-log "$OUT/ota-server-access.log" 2>"$OUT/ota-server.err" &
OTA_PID=$!
trap 'kill $OTA_PID 2>/dev/null; "$NGINX" -c "$OUT/nginx/nginx.conf" -s stop 2>/dev/null || true' EXIT
sleep 1

# run_wrk URL CONNECTIONS [HEADER]: prints "requests/s p99_ms MB/s".
run_wrk() {
  local url=$1 conns=$2 header=${3:-} args=(-t2 -c"$2" -d"${DURATION}s" --latency)
  [ -n "$header" ] && args+=(-H "$header")
  wrk "${args[@]}" "$url" > "$OUT/wrk.txt"
  awk '
    /Requests\/sec/ { rps = $2 }
    /^ +99%/ { v = $2; if (v ~ /us$/) { sub(/us/, "", v); p99 = v / 1000 } else if (v ~ /ms$/) { sub(/ms/, "", v); p99 = v } else if (v ~ /s$/) { sub(/s/, "", v); p99 = v * 1000 } }
    /Transfer\/sec/ { t = $2; if (t ~ /GB$/) { sub(/GB/, "", t); mb = t * 1024 } else if (t ~ /MB$/) { sub(/MB/, "", t); mb = t } else if (t ~ /KB$/) { sub(/KB/, "", t); mb = t / 1024 } else { mb = 0 } }
    END { printf "%s %.2f %.1f\n", rps, p99, mb }' "$OUT/wrk.txt"
}
etag_of() { curl -sI "$1" | tr -d '\r' | awk -F': ' 'tolower($1) == "etag" { print $2 }'; }

echo "| measurement | ota-server | nginx | ratio (ota/nginx) |"
echo "|---|---:|---:|---:|"
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# row LABEL FIELD UNIT PATH CONNS [conditional]: REPEAT runs per server, interleaved (the
# machine's noise hits both alike), median reported.
row() {
  local label=$1 field=$2 unit=$3 path=$4 conns=$5 cond=${6:-} o=() n=() h port r
  for ((r = 0; r < REPEAT; r++)); do
    for port in 18180 18181; do
      h=; [ -n "$cond" ] && h="If-None-Match: $(etag_of "http://127.0.0.1:$port$path")"
      v=$(run_wrk "http://127.0.0.1:$port$path" "$conns" "$h" | cut -d' ' -f"$field")
      if [ $port = 18180 ]; then o+=("$v"); else n+=("$v"); fi
    done
  done
  o=$(printf '%s\n' "${o[@]}" | median); n=$(printf '%s\n' "${n[@]}" | median)
  echo "| $label | $o $unit | $n $unit | $(awk -v a="$o" -v b="$n" 'BEGIN { printf "%.2f", a / b }') |"
}
row "timestamp.json, 200: requests/s" 1 "" /timestamp.json 64
row "timestamp.json, 200: p99 latency" 2 ms /timestamp.json 64
row "timestamp.json, If-None-Match → 304: requests/s" 1 "" /timestamp.json 64 cond
row "timestamp.json, If-None-Match → 304: p99 latency" 2 ms /timestamp.json 64 cond
row "${bundle_mib} MiB bundle: throughput" 3 MB/s /fw.bundle 4
echo
echo "wrk -t2, median of $REPEAT interleaved runs of ${DURATION} s, 64 connections (4 for the bundle); $(nproc) cores shared by wrk and the server; $("$NGINX" -v 2>&1 | sed 's/.*: //')."
