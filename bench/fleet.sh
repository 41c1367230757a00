#!/usr/bin/env bash
# bench/fleet.sh -- a phased rollout to a simulated fleet on a compressed timeline.
#
# Builds the release binaries, makes a repository with releases 1.0.0 and 2.0.0 and a rollout
# role, serves it with ota-server holding the online snapshot/timestamp keys (re-signing every
# second) and writing an access log, and creates FLEET (default 200) simulated devices (file
# bootloader, own state directory and device_id each, slot A holding 1.0.0). Every device polls
# like the daemon (every INTERVAL s plus 0..JITTER s): `ota-update check --json`, and when an
# update is offered `ota-update install`, then a power cycle (`simulate-boot` + `boot`, which
# commits a healthy slot). The timeline, from the rollout start T0:
#   T0-WARMUP   devices start polling; 2.0.0 is published but gated at 0 %
#   T0          ota-sign rollout start --waves "$WAVES"
#   PAUSE_AT    ota-sign rollout pause;   RESUME_AT: resume;   PULL_AT: pull;   END_AT: stop
# bench/fleet.py measures the share of the fleet on 2.0.0 over time against the schedule (CSV
# and an SVG plot), installs outside the schedule, how long pause and pull take to reach the
# last device, and requests and bytes per poll (access log; wire bytes through a counting proxy
# for SAMPLE devices). Writes bench/results-fleet-DATE.md, bench/results-fleet-DATE.csv and
# docs/fleet-rollout.svg. Figures are measurements; nothing here asserts a timing.
#
# Run it alone: it spawns a few thousand short processes on a shared machine.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export FLEET=${FLEET:-200} INTERVAL=${INTERVAL:-5} JITTER=${JITTER:-5} SAMPLE=${SAMPLE:-4}
export WARMUP=${WARMUP:-40} WAVES=${WAVES:-0s=5%,60s=25%,120s=50%,180s=100%}
export PAUSE_AT=${PAUSE_AT:-90} RESUME_AT=${RESUME_AT:-120} PULL_AT=${PULL_AT:-250}
export END_AT=${END_AT:-310} IMAGE_KIB=${IMAGE_KIB:-256} WORKERS=${WORKERS:-6}
OUT=${OUT:-$ROOT/bench-out/fleet}
DATE=$(date -u +%F)
COMMAND="bench/fleet.sh  # FLEET=$FLEET INTERVAL=$INTERVAL JITTER=$JITTER WARMUP=$WARMUP WAVES=$WAVES PAUSE_AT=$PAUSE_AT RESUME_AT=$RESUME_AT PULL_AT=$PULL_AT END_AT=$END_AT IMAGE_KIB=$IMAGE_KIB SAMPLE=$SAMPLE"

# NO_BUILD=1 reuses the release binaries already built.
[ "${NO_BUILD:-0}" = 1 ] || cargo build --release -q --workspace --manifest-path "$ROOT/Cargo.toml"
TARGET=$(cargo metadata --format-version 1 --no-deps --manifest-path "$ROOT/Cargo.toml" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export BIN=$TARGET/release
rm -rf "$OUT"; mkdir -p "$OUT/keys"
PIDS=()
trap 'for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
sign() { "$BIN/ota-sign" "$@" >/dev/null; }

# The repository: a key per role, the bundle key devices trust, the fleet admin's rollout key.
for k in root targets snapshot timestamp bundle rollout; do sign keygen -o "$OUT/keys/$k.key"; done
K=$OUT/keys
sign repo init --repo "$OUT/repo" --root-key "$K/root.key" --targets-key "$K/targets.key" \
  --snapshot-key "$K/snapshot.key" --timestamp-key "$K/timestamp.key"
python3 "$ROOT/bench/fleet.py" image "GOOD 1.0.0" "$IMAGE_KIB" 1 "$OUT/rootfs-1.0.0.img"
python3 "$ROOT/bench/fleet.py" image "GOOD 2.0.0" "$IMAGE_KIB" 2 "$OUT/rootfs-2.0.0.img"
for v in 1.0.0 2.0.0; do
  sign bundle --product acme-router --version "$v" --image rootfs="$OUT/rootfs-$v.img" \
    --key "$K/bundle.key" -o "$OUT/acme-router-$v.bundle"
  sign repo add --repo "$OUT/repo" --trusted "$K/bundle.key.pub" --channel stable \
    "$OUT/acme-router-$v.bundle"
done
# 2.0.0 is published together with a rollout entry at 0 %: no device is offered it before T0.
sign rollout init --repo "$OUT/repo" --rollout-key "$K/rollout.key.pub" --key "$K/targets.key"
sign rollout start --repo "$OUT/repo" --product acme-router --version 2.0.0 --waves 0s=0% \
  --key "$K/rollout.key"
sign repo publish --repo "$OUT/repo" --key "$K/targets.key" --key "$K/snapshot.key" \
  --key "$K/timestamp.key"

"$BIN/ota-server" serve --repo "$OUT/repo" --listen 127.0.0.1:0 --access-log "$OUT/access.log" \
  --snapshot-key "$K/snapshot.key" --timestamp-key "$K/timestamp.key" --resign-interval 1 \
  2> "$OUT/server.err" &
PIDS+=($!)
for _ in $(seq 100); do grep -q serving "$OUT/server.err" && break; sleep 0.1; done
export SERVER_URL; SERVER_URL=$(sed -n '1s/.* on \(http:[^ ]*\)$/\1/p' "$OUT/server.err")
[ -n "$SERVER_URL" ] || { cat "$OUT/server.err" >&2; exit 1; }
# A counting TCP proxy in front of the server for the SAMPLE devices: wire bytes per connection.
export PROXY_PORT; PROXY_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
python3 "$ROOT/bench/fleet.py" proxy "$PROXY_PORT" "${SERVER_URL##*:}" "$OUT/proxy.log" &
PIDS+=($!)

# The fleet, the timeline, then the analysis.
python3 "$ROOT/bench/fleet.py" drive "$OUT"
kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; PIDS=()
"$BIN/ota-sign" fleet report --access-log "$OUT/access.log" --bucket 1m > "$OUT/fleet-report.txt"
python3 "$ROOT/bench/fleet.py" analyse "$OUT" "$DATE" "$COMMAND" \
  "$ROOT/bench/results-fleet-$DATE.md" "$ROOT/bench/results-fleet-$DATE.csv" \
  "$ROOT/docs/fleet-rollout.svg"
