//! The device-side updater: configuration, A/B slots, bootloader backends, install, and the
//! boot-time state machine (trial boot, commit, rollback). `main.rs` only parses arguments
//! and prints.
//!
//! Where things happen:
//! - signature and hash checks of bundles: `ota_core::bundle::verify`, called from [`install`];
//! - the device context and its named, crash-ordered transitions: [`device`];
//! - the slot switch: [`device::Device::switch_to_trial`], the last step of
//!   [`install::install`], one atomic bootloader write;
//! - commit / fall back / rollback detection: [`lifecycle`];
//! - resuming an interrupted install: the progress journal [`journal`], skippable bundle
//!   sources [`source`];
//! - downloads (length caps, minimum speed, resume with Range): [`fetch`];
//! - the TUF client workflow and its metadata cache: [`tuf_client`], clock policy: [`clock`];
//! - choosing and installing the update for this device from the repository, and the polling
//!   daemon: [`updates`]; what signed rollout state offers this device: [`rollout`].

pub mod bootloader;
pub mod clock;
pub mod config;
pub mod device;
pub mod error;
pub mod fault;
pub mod fetch;
pub mod fsutil;
pub mod health;
pub mod install;
pub mod journal;
pub mod lifecycle;
pub mod rollout;
pub mod slot;
pub mod source;
pub mod state;
pub mod tuf_client;
pub mod updates;

pub use config::Config;
pub use error::{Result, UpdateError};
