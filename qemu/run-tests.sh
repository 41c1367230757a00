#!/usr/bin/env bash
# qemu/run-tests.sh [SCENARIO...] -- boots the QEMU test device and runs the device scenarios
# with real reboots and real power cuts. ARCH=x86_64 (default): OVMF + GRUB + Debian amd64
# kernel + our initramfs, scenarios a e b c d f g. ARCH=aarch64: an ARM board, U-Boot running
# qemu/boot.cmd + Debian arm64 kernel + our initramfs with the static aarch64 ota-update,
# scenarios a e b c d h. Without arguments it runs all of the machine's (qemu/README.md).
# Exit 0 only if all pass. What differs per machine is in qemu/arch/$ARCH.sh.
#
# Every QEMU run has a hard timeout; left-over QEMU processes of this harness are killed on exit
# and at start (an image's write lock would block the next run). Logs: target/qemu/logs/
# (target/qemu-aarch64/logs/ for ARCH=aarch64).
# Environment: OTA_QEMU_ACCEL=tcg|kvm|auto (default auto: KVM only if it really boots),
# OTA_QEMU_OUT (default target/qemu), OTA_SKIP_BUILD=1 (reuse the last build).
# The guest's ota-update is a release build with the fault-injection feature (the power cuts of
# scenario d stop it at a durable step with OTA_FAULT_HOLD), in its own target directory,
# TARGET/fault, so that TARGET/release/ota-update (the demo's, the shipped one) stays without it.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
# cargo's target directory (CARGO_TARGET_DIR if set, else target/), as an absolute path.
target_dir=$(cd "$root" && cargo metadata --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || { echo "qemu: cannot find cargo's target directory" >&2; exit 1; }
ARCH=${ARCH:-x86_64}
[ -f "$here/arch/$ARCH.sh" ] || { echo "qemu: no machine for ARCH=$ARCH (qemu/arch/)" >&2; exit 2; }
export ARCH
# shellcheck source=arch/x86_64.sh
source "$here/arch/$ARCH.sh"
if [ "$ARCH" = x86_64 ]; then out=${OTA_QEMU_OUT:-$root/target/qemu}; else out=${OTA_QEMU_OUT:-$root/target/qemu-$ARCH}; fi
build=$out/build
logs=$out/logs
runs=$out/runs
export OTA_QEMU_CACHE=${OTA_QEMU_CACHE:-$out/cache}
say() { echo "qemu: $*" >&2; }

"$here/install-deps.sh"
if [ -z "${OTA_SKIP_BUILD:-}" ]; then
  say "building ota-sign and ota-server (release), the guest's ota-update (release, fault injection${ARCH_RUST_TARGET:+, $ARCH_RUST_TARGET})"
  (cd "$root" && cargo build --release --quiet -p ota-updater -p ota-signer -p ota-server)
  guest_target=()
  if [ -n "$ARCH_RUST_TARGET" ]; then
    source "$root/scripts/cross-env.sh"
    cross_env "$ARCH_RUST_TARGET"
    guest_target=(--target "$ARCH_RUST_TARGET")
  fi
  (cd "$root" && cargo build --release --quiet -p ota-updater --features fault-injection \
    "${guest_target[@]}" --target-dir "$target_dir/fault")
  OTA_BIN_DIR=$target_dir/release \
    OTA_GUEST_BIN_DIR=$target_dir/fault/${ARCH_RUST_TARGET:+$ARCH_RUST_TARGET/}release "$here/build.sh" "$build"
fi
rm -rf "$logs" "$runs"
mkdir -p "$logs" "$runs"

# The guest has no network unless a scenario gives it one (VM_NET).
VM_NET=(-net none)
BOOT_SECS=${OTA_QEMU_BOOT_SECS:-$ARCH_BOOT_SECS}

VM_PIDS=()
cleanup() {
  local pid
  for pid in "${VM_PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM
pkill -KILL -f "$ARCH_QEMU .*$runs/" 2>/dev/null || true

# --- one QEMU process -------------------------------------------------------------------------------
# vm_start NAME DISK PLAN BOOTS [ACCEL]: starts QEMU in the background with its serial console
# in logs/NAME.log and a hard timeout of BOOTS * BOOT_SECS. PLAN tells the guest's /init what
# to do at each boot of this run ("1=install:B.bundle 2=reboot ..."), through fw_cfg.
vm_start() {
  local name=$1 disk=$2 plan=$3 boots=$4 accel=${5:-$ACCEL}
  VM_LOG=$logs/$name.log
  : > "$VM_LOG"
  rm -f "$logs/$name.timeout"
  arch_qemu_args "$disk"
  "$ARCH_QEMU" -accel "$accel" "${QEMU_ARGS[@]}" \
    -nodefaults -no-user-config -display none "${VM_NET[@]}" \
    -serial "file:$VM_LOG" \
    -fw_cfg "name=opt/ota/plan,string=$name $plan" >/dev/null 2>"$logs/$name.stderr" </dev/null &
  VM_PID=$!
  VM_PIDS+=("$VM_PID")
  # The hard timeout, as a separate watchdog so that the PID above is QEMU's own.
  ( sleep $((boots * BOOT_SECS))
    kill -KILL "$VM_PID" 2>/dev/null && : > "$logs/$name.timeout" ) >/dev/null 2>&1 </dev/null &
  VM_WATCHDOG=$!
  VM_PIDS+=("$VM_WATCHDOG")
}

# vm_wait: waits for the guest to power off; a timeout is a failure.
vm_wait() {
  local rc=0
  wait "$VM_PID" || rc=$?
  kill "$VM_WATCHDOG" 2>/dev/null || true
  [ ! -e "$logs/$(basename "$VM_LOG" .log).timeout" ] || fail "hard timeout: the guest did not power off"
  [ $rc -eq 0 ] || fail "QEMU ended with status $rc"
}

# vm_cut: the power cut. SIGKILL: QEMU writes nothing more, the guest's page cache is lost.
vm_cut() {
  kill -KILL "$VM_PID" 2>/dev/null || true
  wait "$VM_PID" 2>/dev/null || true
  kill "$VM_WATCHDOG" 2>/dev/null || true
}

# wait_mark REGEX SECS: waits until the serial console shows REGEX, or fails.
wait_mark() {
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    grep -aqE "$1" "$VM_LOG" && return 0
    kill -0 "$VM_PID" 2>/dev/null || break
    sleep 0.2
  done
  grep -aqE "$1" "$VM_LOG" || fail "never saw /$1/ on the console"
}

# --- assertions on the serial console ---------------------------------------------------------------
fail() {
  echo "FAIL: $*" >&2
  echo "---- last lines of $VM_LOG ----" >&2
  tr -d '\r' < "$VM_LOG" | grep -a -E 'OTA-MARK|ota:|panic' | tail -n 25 | cut -c1-400 >&2
  exit 1
}
console() { tr -d '\r' < "$VM_LOG"; }
# The slots the bootloader chose, in order ("A B B"): printed by qemu/grub.cfg and
# qemu/boot.cmd before each boot.
boot_choices() { console | sed -n 's/.*ota: booting slot \([A-Z]\).*/\1/p' | xargs; }
# What /init saw at each boot it reached ("A:1.0.0 B:2.0.0").
boot_sequence() { console | sed -n 's/^OTA-MARK boot n=[0-9]* slot=\([A-Z]*\) version=\(.*\)$/\1:\2/p' | xargs; }
# section N: the console from boot N's /init marker to the next one.
section() { console | awk -v n="OTA-MARK boot n=$1 " 'index($0, "OTA-MARK boot n=") == 1 { on = (index($0, n) == 1) } on'; }
expect_eq() { [ "$2" = "$3" ] || fail "$1: expected '$3', got '$2'"; }
expect_in() { # expect_in N REGEX WHAT
  # grep without -q reads to the end: with -q it may stop early, and under pipefail the
  # writer's SIGPIPE would fail a check whose pattern was found.
  section "$1" | grep -aE "$2" >/dev/null || fail "boot $1: $3 (no /$2/)"
}

# --- the accelerator ---------------------------------------------------------------------------------
# /dev/kvm may exist and still not run a stock kernel (paravirtual KVM on cloud machines: QEMU
# stops with "KVM internal error"). Boot once with KVM and keep it only if GRUB gets to choose.
detect_accel() {
  local want=${OTA_QEMU_ACCEL:-auto}
  if [ "$want" != auto ]; then ACCEL=$want; return; fi
  ACCEL=tcg
  [ "$ARCH" = x86_64 ] && [ -w /dev/kvm ] || return 0
  cp "$build/disk.img" "$runs/probe.img"
  ( vm_start accel-probe "$runs/probe.img" "1=poweroff" 1 kvm
    for _ in $(seq 1 100); do
      grep -aq 'ota: booting slot' "$VM_LOG" && { vm_cut; exit 0; }
      grep -aq 'KVM internal error' "$logs/accel-probe.stderr" && break
      kill -0 "$VM_PID" 2>/dev/null || break
      sleep 0.2
    done
    vm_cut; exit 1 ) && ACCEL=kvm
  return 0
}

# fresh NAME [DISK]: a factory-new device (slot A = 1.0.0, slot B empty, the factory boot
# state, no updater state); DISK another factory image of the build.
fresh() { cp --sparse=always "$build/${2:-disk.img}" "$runs/$1.img"; echo "$runs/$1.img"; }

# host_fw_printenv DISK: the boot state of an ARM board's disk as libubootenv's fw_printenv
# reads it (the copies at qemu/guest/fw_env.config's offsets, in the disk image).
host_fw_printenv() {
  local config=$runs/fw_env.config offset
  : > "$config"
  for offset in "${ARCH_ENV_OFFSETS[@]}"; do echo "$1 $offset $ARCH_ENV_SIZE" >> "$config"; done
  fw_printenv -c "$config" 2>&1
}
# expect_env DISK NAME=VALUE...: fw_printenv lists each of these.
expect_env() {
  local disk=$1 listing want; shift
  listing=$(host_fw_printenv "$disk")
  for want in "$@"; do
    printf '%s\n' "$listing" | grep -xF "$want" >/dev/null || fail "fw_printenv: no $want in: $(echo $listing)"
  done
}

# --- scenarios -----------------------------------------------------------------------------------------
# a: full install → trial boot of B → health check passes → commit → B again.
scenario_a() {
  local disk; disk=$(fresh a)
  vm_start a "$disk" "1=install:v2-full.bundle 2=reboot 3=poweroff" 3
  vm_wait
  expect_eq "the bootloader's choices" "$(boot_choices)" "A B B"
  expect_eq "booted releases" "$(boot_sequence)" "A:1.0.0 B:2.0.0 B:2.0.0"
  expect_in 1 '"event":"switched","slot":"B"' "install did not switch to B"
  expect_in 1 'install rc=0' "install failed"
  expect_in 2 '"result":"committed","slot":"B"' "the trial boot was not committed"
  expect_in 3 '"result":"steady","slot":"B"' "B is not steady after the commit"
  expect_in 3 '"next_boot": "B"' "B does not boot next"
  [ "$ARCH" = x86_64 ] || expect_env "$disk" "OTA_ORDER=B A" OTA_B_GOOD=1 OTA_A_GOOD=1
  cp --sparse=always "$disk" "$runs/after-a.img"
}

# e: admin rollback on the device left by a: `ota-update rollback --reboot` → A boots.
scenario_e() {
  [ -f "$runs/after-a.img" ] || fail "needs scenario a's device"
  local disk=$runs/e.img
  cp --sparse=always "$runs/after-a.img" "$disk"
  arch_copy_machine "$runs/a.img" "$disk"
  vm_start e "$disk" "1=rollback 2=poweroff" 2
  vm_wait
  expect_eq "the bootloader's choices" "$(boot_choices)" "B A"
  expect_eq "booted releases" "$(boot_sequence)" "B:2.0.0 A:1.0.0"
  expect_in 2 '"result":"steady","slot":"A"' "A is not steady after the rollback"
  expect_in 2 '"kind": "rolled_back"' "status does not report the rollback"
  expect_in 2 '"next_boot": "A"' "A does not boot next"
}

# b: a release whose health check fails → the updater falls back and reboots → A.
scenario_b() {
  local disk; disk=$(fresh b)
  vm_start b "$disk" "1=install:v3-unhealthy.bundle 2=poweroff 3=poweroff" 3
  vm_wait
  expect_eq "the bootloader's choices" "$(boot_choices)" "A B A"
  expect_eq "booted releases" "$(boot_sequence)" "A:1.0.0 B:3.0.0 A:1.0.0"
  expect_in 2 '"reason":"[^"]*health says .fail.; slot A boots next","result":"fell_back"' \
    "the updater did not say it falls back, and why"
  expect_in 3 '"kind": "rolled_back", *"slot": "B", *"version": "3.0.0", *"reason": "[^"]*health' \
    "status does not report the rollback of B 3.0.0 with its reason"
  expect_in 3 '"next_boot": "A"' "A does not boot next"
}

# c: a release whose userspace dies → kernel panic → panic=5 resets → GRUB falls back to A.
scenario_c() {
  local disk; disk=$(fresh c)
  vm_start c "$disk" "1=install:v3.1-panic.bundle 2=poweroff" 3
  vm_wait
  expect_eq "the bootloader's choices" "$(boot_choices)" "A B A"
  console | grep -a 'Kernel panic' >/dev/null || fail "the broken release did not panic"
  expect_eq "booted releases" "$(boot_sequence)" "A:1.0.0 A:1.0.0"
  expect_in 2 '"result":"rollback_detected","failed":"B","running":"A"' "the rollback was not detected"
  expect_in 2 '"kind": "rolled_back", *"slot": "B", *"version": "3.1.0"' "status does not report the rollback of B 3.1.0"
}

# d: power cuts during an install, at the updater's durable steps. After each: the device boots
# a good slot, and installing again completes (or, if the cut came after the switch, the new
# slot was tried and committed, and the same release is refused as not newer).
CUTS=(
  "early|slot: piece written#1|A"
  "middle|slot: piece written#3|A"
  "after-slot-write|slot: synced|A"
  "before-switch|$ARCH_ENV_FAULT: before env write|A"
  "after-switch|$ARCH_ENV_FAULT: env written|B"
)
scenario_d() {
  local cut when label expect disk
  for cut in "${CUTS[@]}"; do
    IFS='|' read -r when label expect <<< "$cut"
    disk=$(fresh "d-$when")
    vm_start "d-$when-cut" "$disk" "1=hold:v2-full.bundle:${label// /_}" 2
    wait_mark "ota-fault: holding at '${label%#*}'" $((2 * BOOT_SECS))
    vm_cut
    vm_start "d-$when-after" "$disk" "1=install:v2-full.bundle 2=poweroff" 3
    vm_wait
    if [ "$expect" = A ]; then
      expect_eq "$when: booted releases" "$(boot_sequence)" "A:1.0.0 B:2.0.0"
      expect_in 1 '"name": "B", *"booted": false, *"boot": \{ *"good": false, *"tries": 0 *\}' \
        "$when: the half-written slot B is bootable"
      expect_in 1 'install rc=0' "$when: installing again did not complete"
      expect_in 2 '"result":"committed","slot":"B"' "$when: the new slot was not committed"
    else
      expect_eq "$when: booted releases" "$(boot_sequence)" "B:2.0.0"
      expect_in 1 '"result":"committed","slot":"B"' "$when: the new slot was not committed"
      expect_in 1 'install rc=8' "$when: the installed release was not refused as not newer"
    fi
    echo "  power cut $when ($label): next boot $expect, then completed" >&2
  done
}

# f: delta install: the bundle carries only the difference from slot A's 1.0.0.
scenario_f() {
  local disk; disk=$(fresh f)
  vm_start f "$disk" "1=install:v2-delta.bundle 2=reboot 3=poweroff" 3
  vm_wait
  expect_eq "the bootloader's choices" "$(boot_choices)" "A B B"
  expect_eq "booted releases" "$(boot_sequence)" "A:1.0.0 B:2.0.0 B:2.0.0"
  expect_in 1 'rootfs: delta from the running slot' "the delta payload was not chosen"
  expect_in 1 'install rc=0' "install failed"
  expect_in 2 '"result":"committed","slot":"B"' "the trial boot was not committed"
}

# g: install the newest release from the TUF repository that ota-server on the host serves
# (`ota-update install` without a source: metadata verified, then the bundle). QEMU user networking with
# restrict=on: the guest reaches nothing but 10.0.2.100:80, and guestfwd runs socat for each
# of its connections to the server on the host's 127.0.0.1 (a plain tcp: guestfwd target
# would be one connection opened at start, which the server closes when it stays idle).
scenario_g() {
  local disk server port
  disk=$(fresh g)
  "$target_dir/release/ota-server" serve --repo "$build/repo" --listen 127.0.0.1:0 \
    --access-log "$logs/g-server-access.log" 2> "$logs/g-server.err" &
  server=$!
  VM_PIDS+=("$server")
  for _ in $(seq 1 50); do
    port=$(sed -n 's/.*http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p' "$logs/g-server.err")
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || fail "ota-server did not start"
  VM_NET=(-netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:socat - TCP:127.0.0.1:$port"
          -device "$ARCH_NIC,netdev=n0")
  vm_start g "$disk" "1=update 2=reboot 3=poweroff" 3
  VM_NET=(-net none)
  vm_wait
  kill "$server" 2>/dev/null || true
  expect_eq "the bootloader's choices" "$(boot_choices)" "A B B"
  expect_eq "booted releases" "$(boot_sequence)" "A:1.0.0 B:2.0.0 B:2.0.0"
  expect_in 1 'install rc=0' "the install from the server failed"
  expect_in 2 '"result":"committed","slot":"B"' "the trial boot was not committed"
  for request in '/metadata/timestamp.json' '/metadata/[0-9]*.snapshot.json' \
      '/metadata/[0-9]*.targets.json' '/targets/[0-9a-f]\{64\}\.v2-full\.bundle'; do
    grep -q "\"GET $request HTTP/1.1\" 200 " "$logs/g-server-access.log" \
      || fail "ota-server did not serve $request (access log: $(cat "$logs/g-server-access.log"))"
  done
}

# h (ARM board): a board whose U-Boot environment was never saved (the factory line skipped
# provisioning): U-Boot boots the factory state; the install is refused before it writes
# anything (no default_env to create the environment from), `ota-update init-bootloader`
# provisions it, the install completes, U-Boot tries B, it is committed.
scenario_h() {
  [ "$ARCH" != x86_64 ] || fail "scenario h is the U-Boot board's (ARCH=aarch64)"
  local disk; disk=$(fresh h disk-unprovisioned.img)
  [ -z "$(host_fw_printenv "$disk" | grep OTA_)" ] || fail "the unprovisioned disk has a boot state"
  vm_start h "$disk" "1=init:v2-full.bundle 2=reboot 3=poweroff" 3
  vm_wait
  expect_eq "the bootloader's choices" "$(boot_choices)" "A B B"
  expect_eq "booted releases" "$(boot_sequence)" "A:1.0.0 B:2.0.0 B:2.0.0"
  expect_in 1 '"bootloader_uninitialised": "the U-Boot environment [^"]*never saved' \
    "status does not say the environment was never saved"
  expect_in 1 'first install rc=3' "the install on the unprovisioned board was not refused (exit 3)"
  expect_in 1 'never saved' "the refusal does not say why"
  expect_in 1 'init-bootloader rc=0' "init-bootloader failed"
  expect_in 1 'install rc=0' "the install after init-bootloader failed"
  expect_in 2 '"result":"committed","slot":"B"' "the trial boot was not committed"
  expect_env "$disk" "OTA_ORDER=B A" OTA_B_GOOD=1 OTA_A_GOOD=1
}

# --- main ----------------------------------------------------------------------------------------------
detect_accel
say "accelerator: $ACCEL"
scenarios=("$@")
[ ${#scenarios[@]} -gt 0 ] || scenarios=("${ARCH_SCENARIOS[@]}")
failed=()
for s in "${scenarios[@]}"; do
  declare -F "scenario_$s" >/dev/null || { say "no scenario '$s'"; exit 2; }
  start=$SECONDS
  if ( "scenario_$s" ); then
    say "PASS $s ($((SECONDS - start)) s)"
  else
    say "FAIL $s ($((SECONDS - start)) s); logs in $logs"
    failed+=("$s")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  say "failed: ${failed[*]}"
  exit 1
fi
say "all scenarios passed (${SECONDS} s)"
