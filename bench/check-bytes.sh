#!/usr/bin/env bash
# bench/check-bytes.sh -- bytes on the wire of one `ota-update check` that finds no update.
#
# Makes a repository with `ota-sign repo` (one release), serves it with ota-server and with
# nginx (Debian), points a simulated device at each through a counting TCP proxy on loopback,
# runs one check to fill the device's metadata cache, then measures the next one (the device
# runs the newest release, so there is nothing to install): HTTP bytes
# sent and received (request and response heads and bodies; TCP/IP headers not included, which
# add about 52 bytes per packet on top). Also the first check of a fresh device, for scale.
# Prints a Markdown table. The figures are measurements, not test assertions.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-$ROOT/bench-out/check-bytes}
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$NGINX" ] || { echo "missing nginx: apt-get install nginx" >&2; exit 2; }
rm -rf "$OUT"; mkdir -p "$OUT"
cargo build --release -q --manifest-path "$ROOT/Cargo.toml"
BIN=$(bash "$ROOT/scripts/target-dir.sh")/release
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT

# The repository: root, targets, snapshot and timestamp keys; release 2.0.0 of testdata.
for k in root targets snapshot timestamp vendor; do "$BIN/ota-sign" keygen -o "$OUT/$k.key" >/dev/null; done
"$BIN/ota-sign" repo init --repo "$OUT/repo" --root-key "$OUT/root.key" --targets-key "$OUT/targets.key" \
  --snapshot-key "$OUT/snapshot.key" --timestamp-key "$OUT/timestamp.key" >/dev/null
"$BIN/ota-sign" bundle --product acme-router --version 2.0.0 --image rootfs="$ROOT/testdata/v2/rootfs.img" \
  --key "$OUT/vendor.key" -o "$OUT/v2.bundle" >/dev/null 2>&1
"$BIN/ota-sign" repo add --repo "$OUT/repo" "$OUT/v2.bundle" >/dev/null
"$BIN/ota-sign" repo publish --repo "$OUT/repo" --key "$OUT/targets.key" --key "$OUT/snapshot.key" \
  --key "$OUT/timestamp.key" >/dev/null

# A TCP proxy that counts the bytes of each direction and appends them to a file per run.
cat > "$OUT/proxy.py" <<'PY'
import socket, sys, threading
listen_port, target_port, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", listen_port)); srv.listen(16)
lock = threading.Lock()
def pump(a, b, direction):
    n = 0
    while True:
        data = a.recv(65536)
        if not data: break
        n += len(data); b.sendall(data)
    try: b.shutdown(socket.SHUT_WR)
    except OSError: pass
    with lock, open(log, "a") as f: f.write(f"{direction} {n}\n")
while True:
    c, _ = srv.accept()
    s = socket.create_connection(("127.0.0.1", target_port))
    threading.Thread(target=pump, args=(c, s, "up"), daemon=True).start()
    threading.Thread(target=pump, args=(s, c, "down"), daemon=True).start()
PY
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# ota-server
"$BIN/ota-server" serve --repo "$OUT/repo" --listen 127.0.0.1:0 --access-log off 2> "$OUT/server.err" &
PIDS+=($!)
for _ in $(seq 50); do grep -q serving "$OUT/server.err" && break; sleep 0.1; done
ota_port=$(sed -n 's/.*127\.0\.0\.1:\([0-9]*\).*/\1/p' "$OUT/server.err")
# nginx
nginx_port=$(free_port)
mkdir -p "$OUT/nginx"
cat > "$OUT/nginx/nginx.conf" <<EOF
daemon off; master_process off; worker_processes 1; pid $OUT/nginx/nginx.pid;
error_log $OUT/nginx/error.log;
events { worker_connections 64; }
http { access_log off; server { listen 127.0.0.1:$nginx_port; root $OUT/repo; location ~ /\. { deny all; } } }
EOF
"$NGINX" -c "$OUT/nginx/nginx.conf" -p "$OUT/nginx" &
PIDS+=($!)
sleep 0.5

measure() { # measure NAME PORT -> prints a table row
  local name=$1 port=$2 pport dev log
  pport=$(free_port); log=$OUT/$name.bytes; : > "$log"
  python3 "$OUT/proxy.py" "$pport" "$port" "$log" & PIDS+=($!)
  sleep 0.3
  dev=$OUT/device-$name; rm -rf "$dev"; mkdir -p "$dev"
  cp "$ROOT/testdata/device/updater.toml" "$ROOT/testdata/device/health-check.sh" "$dev/"
  cp "$OUT/vendor.key.pub" "$dev/vendor.pub"; cp "$OUT/repo/metadata/1.root.json" "$dev/root.json"
  truncate -s 8M "$dev/slot-a.rootfs" "$dev/slot-b.rootfs"; truncate -s 1M "$dev/slot-a.kernel" "$dev/slot-b.kernel"
  # The device already runs 2.0.0, the newest release: a check finds nothing to install.
  sed -i 's/^factory_version = .*/factory_version = "2.0.0"/' "$dev/updater.toml"
  printf '\n[repository]\nurl = "http://127.0.0.1:%s"\nroot = "root.json"\n' "$pport" >> "$dev/updater.toml"
  local upd="$BIN/ota-update --config $dev/updater.toml"
  $upd simulate-boot >/dev/null; $upd boot >/dev/null
  sum() { awk -v d="$1" '$1==d {s+=$2} END {print s+0}' "$log"; }
  $upd check --json > "$OUT/$name-first.json"; sleep 0.3
  local first_up first_down; first_up=$(sum up); first_down=$(sum down); : > "$log"
  $upd check --json > "$OUT/$name-second.json"; sleep 0.3
  local up down conns; up=$(sum up); down=$(sum down); conns=$(grep -c '^up' "$log")
  local not_modified; not_modified=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["update"] is None, j; print(j["refresh"]["timestamp_not_modified"])' "$OUT/$name-second.json")
  printf '| %s | %d + %d = %d B | %d + %d = **%d B** | %s | %s |\n' "$name" "$first_up" "$first_down" \
    $((first_up + first_down)) "$up" "$down" $((up + down)) "$conns" "$not_modified"
}

echo "| server | first check of a fresh device (sent + received) | no-update check, cache filled (sent + received) | TCP connections | timestamp 304 |"
echo "|---|---|---|---|---|"
measure ota-server "$ota_port"
measure nginx "$nginx_port"
