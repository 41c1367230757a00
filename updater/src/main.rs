//! `ota-update`: the device-side updater CLI (argument parsing and output only; the logic lives
//! in the `ota_updater` library).

fn main() {}
