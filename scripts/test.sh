#!/usr/bin/env bash
# scripts/test.sh -- the whole test suite: installs what the tests need (Debian packages, a
# python-tuf venv in .venv-tuf), runs the end-to-end demo as a smoke test, checks that the
# release ota-update has no fault injection, installs and removes the Debian packages
# (scripts/test-packages.sh), runs every unit and integration test of the
# workspace (with the fault-injection feature the power-loss tests need), a fuzz smoke test
# (every cargo-fuzz target for 20 s: fuzz/run.sh; docs/security.md, "Fuzzing"), then the QEMU
# device scenarios (real GRUB on x86-64, real U-Boot on aarch64, real kernels, real reboots and
# power cuts; qemu/README.md).
# OTA_SKIP_QEMU=1 leaves the QEMU scenarios out (they take several minutes); OTA_SKIP_FUZZ=1 the
# fuzz smoke test (about 4 min once built, 10 min from a cold fuzz/target on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/python-venv.sh      # python-tuf, the oracle of the TUF interop tests
mkdir -p target
bash scripts/demo.sh > target/demo.log 2>&1 || { cat target/demo.log; echo "demo failed" >&2; exit 1; }
echo "demo: ok (log in target/demo.log)"
# The release ota-update has no fault injection (the fault-injection feature is for tests): not
# one OTA_FAULT_ string in the binary the demo built (the same build command: a no-op here).
target_dir=$(bash scripts/target-dir.sh)
cargo build --release -q --workspace
[ -x "$target_dir/release/ota-update" ] || { echo "no $target_dir/release/ota-update" >&2; exit 1; }
faults=$(grep -ac OTA_FAULT_ "$target_dir/release/ota-update" || true)
[ "$faults" -eq 0 ] || { echo "release ota-update holds $faults OTA_FAULT_ strings: fault injection in a release build" >&2; exit 1; }
echo "release ota-update: no fault injection"
# The Debian packages (cargo-deb) install, run and remove on this machine.
bash scripts/test-packages.sh
# With the fault injection the power-loss tests need (updater/tests/power_loss.rs); the other
# tests run the same ota-update, whose fault points do nothing without OTA_FAULT_* variables.
# Without CI in the environment: CI runners set it, and it turns the tools' automatic progress
# into log lines on standard error; the tests that check those lines set CI themselves.
env -u CI cargo test --workspace --all-targets --features ota-updater/fault-injection
# OTA_PRUNE_BUILDS=1 (.ci/run sets it): each phase's build output is removed once the phase is
# done (the test build here, the fuzz build below), so the disk holds one phase's at a time: a CI
# machine has only a few GB free. The QEMU phase needs only the release build.
prune() { [ -z "${OTA_PRUNE_BUILDS:-}" ] || rm -rf "$@"; }
prune "$target_dir/debug"
# Fuzz smoke test: replays fuzz/regressions/, then fuzzes each target 20 s; exits 1 on a crash.
if [ -z "${OTA_SKIP_FUZZ:-}" ]; then
  bash fuzz/run.sh 20
  prune "$(bash fuzz/run.sh --target-dir)"
fi
if [ -z "${OTA_SKIP_QEMU:-}" ]; then
  bash qemu/run-tests.sh
  prune target/qemu       # the x86-64 device's disks and logs (kept when a scenario failed)
  ARCH=aarch64 bash qemu/run-tests.sh
fi
