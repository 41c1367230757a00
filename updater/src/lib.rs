//! The device-side updater: configuration, A/B slots, bootloader backends, install, and the
//! boot-time state machine (trial boot, commit, rollback). `main.rs` only parses arguments.

pub mod bootloader;
