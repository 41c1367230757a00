#!/usr/bin/env bash
# scripts/test.sh -- the whole test suite: installs what the tests need (Debian packages, a
# python-tuf venv in .venv-tuf), runs the end-to-end demo as a smoke test, every unit and
# integration test of the workspace, then the QEMU device scenarios (real GRUB, real kernel,
# real reboots and power cuts; qemu/README.md).
# OTA_SKIP_QEMU=1 leaves the QEMU scenarios out (they take several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/python-venv.sh      # python-tuf, the oracle of the TUF interop tests
mkdir -p target
bash scripts/demo.sh > target/demo.log 2>&1 || { cat target/demo.log; echo "demo failed" >&2; exit 1; }
echo "demo: ok (log in target/demo.log)"
cargo test --workspace --all-targets
if [ -z "${OTA_SKIP_QEMU:-}" ]; then
  bash qemu/run-tests.sh
fi
