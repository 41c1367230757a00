#!/usr/bin/env bash
# scripts/target-dir.sh -- run by the scripts that use the built binaries: prints cargo's
# target directory, which is target/ in the workspace unless CARGO_TARGET_DIR (or a cargo
# config) says otherwise. Usage: TARGET=$(bash scripts/target-dir.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo metadata --format-version 1 --no-deps |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])'
