#!/usr/bin/env bash
# fuzz/run.sh [SECONDS | --target-dir] -- builds every cargo-fuzz target once, replays the
# committed crash regressions (fuzz/regressions/TARGET/*), then fuzzes each target for SECONDS (default 30),
# one after the other, starting from its seed corpus (fuzz/corpus/TARGET/, never written to:
# new inputs go to a working corpus under the target directory, which later runs reuse).
# Prints the executions per target and exits non-zero on any crash, naming the input that
# crashed (kept under fuzz/artifacts/TARGET/).
#
# Needs the nightly toolchain (installed with rustup when missing) and cargo-fuzz (installed
# from crates.io when missing). Builds, logs and working corpora go to fuzz/target, or, when
# CARGO_TARGET_DIR (or a cargo config) moves the target directory, to its fuzz/ subdirectory:
# never among the main workspace's artifacts, and under a build lock of their own.
# FUZZ_TARGETS="a b" runs only those targets. Documented in docs/security.md, "Fuzzing".
set -euo pipefail
cd "$(dirname "$0")/.."
fuzz_target_dir() {
  cargo metadata --manifest-path fuzz/Cargo.toml --format-version 1 --no-deps |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}
target_dir=$(fuzz_target_dir)
if [ "$target_dir" != "$(pwd -P)/fuzz/target" ]; then
  export CARGO_TARGET_DIR=$target_dir/fuzz
  target_dir=$(fuzz_target_dir)
fi
# `fuzz/run.sh --target-dir` prints where the builds and working corpora go (scripts/test.sh
# removes it after the smoke test when told to save disk).
if [ "${1:-}" = --target-dir ]; then
  echo "$target_dir"
  exit 0
fi
seconds=${1:-30}
[[ $seconds =~ ^[0-9]+$ ]] || { echo "usage: fuzz/run.sh [SECONDS | --target-dir]" >&2; exit 2; }

rustup run nightly rustc --version >/dev/null 2>&1 ||
  rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# Release code with debug assertions and overflow checks (-a: an overflow in a parser is a
# finding); no sanitizer: every crate of ours denies unsafe code and the C libraries (zstd,
# bzip2) are not instrumented by it anyway, while ASan would halve the executions.
build_flags=(-O -a -s none --fuzz-dir fuzz)
start=$(date +%s)
cargo +nightly fuzz build "${build_flags[@]}"
built=$(date +%s)

bin_dir=$target_dir/x86_64-unknown-linux-gnu/release
targets=${FUZZ_TARGETS:-$(cargo +nightly fuzz list --fuzz-dir fuzz)}
for t in $targets; do
  [ -x "$bin_dir/$t" ] || { echo "fuzz/run.sh: no $bin_dir/$t after the build" >&2; exit 1; }
done

logs=$target_dir/fuzz-logs
mkdir -p "$logs"
failed=()

# Crash regressions: every input that once crashed a target must now pass through it.
for t in $targets; do
  [ -d "fuzz/regressions/$t" ] || continue
  inputs=(fuzz/regressions/"$t"/*)
  [ -e "${inputs[0]}" ] || continue
  if "$bin_dir/$t" -runs=1 "${inputs[@]}" >"$logs/$t.regressions.log" 2>&1; then
    echo "$t: ${#inputs[@]} regression input(s) pass"
  else
    echo "$t: a recorded crash input (fuzz/regressions/$t/) still crashes (log: $logs/$t.regressions.log)" >&2
    grep -E "panicked|Running:|SUMMARY" "$logs/$t.regressions.log" | head -5 >&2 || true
    failed+=("$t (regression)")
  fi
done

printf '%-18s %12s %10s  %s\n' target executions exec/s result
total=0
for t in $targets; do
  work=$target_dir/fuzz-corpus/$t
  artifacts=fuzz/artifacts/$t
  mkdir -p "$work" "$artifacts"
  log=$logs/$t.log
  status=0
  # The delta targets skip larger inputs (ota_fuzz::MAX_DELTA_INPUT): do not generate them.
  case $t in delta_signed | bsdiff_patch) max_len=(-max_len=16384) ;; *) max_len=() ;; esac
  "$bin_dir/$t" "$work" "fuzz/corpus/$t" -max_total_time="$seconds" -timeout=20 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" "${max_len[@]}" \
    >"$log" 2>&1 || status=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  execs=${execs:-0}
  total=$((total + execs))
  if [ "$status" -eq 0 ]; then
    result=ok
  else
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="CRASH (exit $status): ${crash:-see $log}"
    failed+=("$t")
  fi
  printf '%-18s %12s %10s  %s\n' "$t" "$execs" "${rate:-?}" "$result"
  if [ "$status" -ne 0 ]; then
    grep -E "panicked at|^Error|SUMMARY|deadly signal|timeout|out-of-memory" "$log" | head -5 | sed 's/^/    /'
  fi
done
end=$(date +%s)
printf '%-18s %12s\n' total "$total"
echo "build $((built - start)) s, fuzzing $((end - built)) s; logs in $logs"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz/run.sh: crashes in: ${failed[*]}" >&2
  exit 1
fi
