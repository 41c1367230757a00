# bench/device.sh -- sourced by the benches: a file-backed device for `ota-update`.
#
# bench_device_config DIR PUB: writes DIR/updater.toml for product "bench" (factory 1.0.0),
# slots DIR/slot-a and DIR/slot-b (rootfs), the `file` bootloader, state in DIR/state, and
# PUB copied to DIR/vendor.pub as the trusted bundle key.
bench_device_config() {
  mkdir -p "$1/state"
  cp "$2" "$1/vendor.pub"
  cat > "$1/updater.toml" <<TOML
product = "bench"
state_dir = "state"
factory_version = "1.0.0"
[slots.A]
rootfs = "slot-a"
[slots.B]
rootfs = "slot-b"
[bootloader]
backend = "file"
path = "bootloader.json"
[trust]
keys = ["vendor.pub"]
TOML
}
