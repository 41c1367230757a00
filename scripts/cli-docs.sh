#!/usr/bin/env bash
# scripts/cli-docs.sh PROFILE_DIR DEST -- copies the man pages and shell completions the build
# scripts of ota-update, ota-sign and ota-server generated (build-support/cli_docs.rs, into
# cargo's OUT_DIR) out of a build, for packaging:
#   DEST/man/*.1.gz                one page per command and subcommand (gzip -9n, as Debian
#                                  policy and man-db want them)
#   DEST/bash/NAME, DEST/zsh/_NAME, DEST/fish/NAME.fish   completions
# PROFILE_DIR is where that build's binaries are (TARGET/release, or TARGET/TRIPLE/release for
# a cross build). Cargo names OUT_DIR with a hash and keeps old ones: the newest of each
# package's is taken, which is the last build's (its build script rewrites it whenever the
# command line changes). Used by scripts/dist.sh and scripts/test-packages.sh.
set -euo pipefail
profile_dir=${1:?usage: scripts/cli-docs.sh PROFILE_DIR DEST}
dest=${2:?usage: scripts/cli-docs.sh PROFILE_DIR DEST}
rm -rf "$dest"
mkdir -p "$dest/man" "$dest/bash" "$dest/zsh" "$dest/fish"
for package in ota-updater ota-signer ota-server; do
  # shellcheck disable=SC2012  # names are cargo's: no spaces or newlines
  out=$(ls -td "$profile_dir"/build/"$package"-*/out/man 2>/dev/null | head -n1 || true)
  [ -n "$out" ] || { echo "cli-docs.sh: no man pages of $package under $profile_dir/build: build it first" >&2; exit 1; }
  out=$(dirname "$out")
  for page in "$out"/man/*.1; do
    gzip -9nc "$page" > "$dest/man/$(basename "$page").gz"
  done
  for file in "$out"/completions/*; do
    case $(basename "$file") in
      _*) cp "$file" "$dest/zsh/" ;;
      *.bash) cp "$file" "$dest/bash/$(basename "$file" .bash)" ;;
      *.fish) cp "$file" "$dest/fish/" ;;
    esac
  done
done
