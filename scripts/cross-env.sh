# scripts/cross-env.sh -- sourced (not run) by the scripts that cross-compile for a device target
# (scripts/dist.sh, qemu/run-tests.sh with ARCH=aarch64): `cross_env TARGET` installs the rustup
# target when missing and exports the C compiler and linker cargo and cc-rs use for it (the C
# parts of zstd, bzip2, liblzma, zlib and ring). Debian packages: musl-tools, gcc-aarch64-linux-gnu,
# gcc-arm-linux-gnueabihf.
cross_env() {
  local target=$1 upper cc linker
  upper=${target^^}
  upper=${upper//-/_}
  case "$target" in
    x86_64-unknown-linux-musl) cc=musl-gcc; linker= ;;
    aarch64-unknown-linux-musl) cc=aarch64-linux-gnu-gcc; linker=aarch64-linux-gnu-gcc ;;
    armv7-unknown-linux-musleabihf) cc=arm-linux-gnueabihf-gcc; linker=arm-linux-gnueabihf-gcc ;;
    *) echo "cross-env.sh: unknown target $target" >&2; return 2 ;;
  esac
  command -v "$cc" >/dev/null ||
    { echo "cross-env.sh: $cc missing (Debian: musl-tools, gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf)" >&2; return 2; }
  rustup target list --installed | grep -qx "$target" || rustup target add "$target" >&2
  export "CC_${target//-/_}=$cc"
  [ -z "$linker" ] || export "CARGO_TARGET_${upper}_LINKER=$linker"
}
