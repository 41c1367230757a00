//! Installing a bundle into the inactive slot.
//!
//! Order of operations (each step only after the previous one succeeded):
//! 1. lock; find the booted slot; refuse if it is still on trial (the other slot is then the
//!    only fallback and must not be overwritten);
//! 2. verify the manifest signatures (no payload byte read before);
//! 3. check product, version (no downgrade), images against the slots' devices and sizes;
//! 4. mark the target slot unbootable in the bootloader, record it as being written;
//! 5. stream the payload: each chunk hashed before decompression, written to the slot;
//!    each image fsynced, read back and hashed;
//! 6. record the slot as installed, then in one atomic bootloader write put it first with
//!    one try.
//!
//! A power cut before step 6's bootloader write boots the old slot as before; after it, the
//! new slot gets exactly one try and the old one stays good as fallback.

use crate::bootloader;
use crate::config::Config;
use crate::error::{Result, UpdateError};
use crate::slot::{device_size, SlotImageSink, SlotName};
use crate::state::{
    now, ImageRecord, Outcome, OutcomeKind, Pending, SlotContent, SlotRecord, StateStore,
};
use ota_core::bundle::{BundleError, BundleReader, ImageAction, Manifest, PayloadKind};
use ota_core::delta::apply::BaseRead;
use serde::Serialize;
use std::io::Read;

/// Options of `ota-update install`.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Accept a version that is not newer than the booted one (signatures still required).
    pub allow_downgrade: bool,
}

/// Progress of an install, for a progress bar or `--json` event lines.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum InstallEvent {
    /// Signatures verified and the bundle accepted for this device.
    Accepted {
        /// Product.
        product: String,
        /// Version.
        version: String,
        /// Slot being written.
        slot: String,
        /// Total payload bytes to read.
        payload_size: u64,
        /// What is applied per image: `rootfs: delta` or `rootfs: full`.
        images: Vec<String>,
    },
    /// Payload bytes read and verified since the last event.
    Progress {
        /// Bytes.
        bytes: u64,
    },
    /// Every image written and read back; the bootloader now tries the new slot once.
    Switched {
        /// The slot.
        slot: String,
        /// Its version.
        version: String,
    },
}

/// What an install did.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// The slot written.
    pub slot: SlotName,
    /// The version installed.
    pub version: semver::Version,
}

/// Installs the bundle read from `source` into the inactive slot.
pub fn install(
    config: &Config,
    source: Box<dyn Read + Send>,
    options: &InstallOptions,
    events: &dyn Fn(InstallEvent),
) -> Result<InstallReport> {
    let store = StateStore::open(&config.state_dir)?;
    let _lock = store.lock()?;
    let mut bl = bootloader::open(config)?;
    let booted = bl.booted_slot()?;
    config.check_slot(&booted)?;
    let target = config.other_slot(&booted)?;
    let mut boot = bl.read_state()?;
    if !boot.flags(&booted).good {
        return Err(UpdateError::Refused(format!(
            "the booted slot {booted} is still on trial: let `ota-update boot` commit it (or run `ota-update commit`) before installing, so slot {target} stays a fallback"
        )));
    }
    let mut state = store.load()?;

    let reader = BundleReader::open(source, &config.trust)?;
    let manifest = reader.manifest().clone();
    let booted_version = state
        .slots
        .get(&booted)
        .and_then(|r| r.version.clone())
        .or_else(|| config.factory_version.clone());
    let chosen = check_compatible(
        config,
        &manifest,
        &booted,
        &target,
        booted_version.as_ref(),
        options,
    )?;
    events(InstallEvent::Accepted {
        product: manifest.product.clone(),
        version: manifest.version.to_string(),
        slot: target.to_string(),
        payload_size: manifest.payload_size,
        images: chosen
            .iter()
            .map(|&i| {
                let image = &manifest.images[i];
                match image.payload {
                    PayloadKind::Full => format!("{}: full", image.name),
                    PayloadKind::Delta { .. } => {
                        format!("{}: delta from the running slot", image.name)
                    }
                }
            })
            .collect(),
    });

    // From here on the target slot is overwritten: make sure nothing boots it.
    let before = boot.clone();
    boot.set(&target, false, 0);
    boot.put_first(&booted);
    if boot != before {
        bl.write_state(&boot)?;
    }
    state.slots.insert(
        target.clone(),
        SlotRecord {
            content: SlotContent::Writing,
            version: Some(manifest.version.clone()),
            images: Default::default(),
            updated: now(),
        },
    );
    if state.pending.as_ref().is_some_and(|p| p.slot == target) {
        state.pending = None;
    }
    store.save(&state)?;

    let devices = &config.slots[&target];
    let active_devices = &config.slots[&booted];
    let streamed = reader.stream_payload(
        |index, image| -> std::io::Result<ImageAction> {
            if !chosen.contains(&index) {
                return Ok(ImageAction::Skip);
            }
            let device = devices
                .get(&image.name)
                .ok_or_else(|| std::io::Error::other("image has no device"))?;
            let base = match image.payload {
                PayloadKind::Delta { .. } => {
                    let active = active_devices
                        .get(&image.name)
                        .ok_or_else(|| std::io::Error::other("image has no active device"))?;
                    Some(Box::new(std::fs::File::open(active)?) as Box<dyn BaseRead>)
                }
                PayloadKind::Full => None,
            };
            Ok(ImageAction::Write {
                sink: Box::new(SlotImageSink::open(device, image.sha256, image.size)?),
                base,
            })
        },
        &|bytes| events(InstallEvent::Progress { bytes }),
    );
    if let Err(err) = streamed {
        let err = match err {
            BundleError::Sink { image, source } => UpdateError::Slot {
                slot: target.to_string(),
                reason: format!("image {image}: {source}"),
            },
            // A download error surfaces as its own class (network, unverified), not as I/O.
            other => UpdateError::from(other),
        };
        state.last_result = Some(Outcome {
            kind: OutcomeKind::InstallFailed,
            slot: target.clone(),
            version: Some(manifest.version.clone()),
            reason: err.to_string(),
            at: now(),
        });
        // Best effort: the install error is what the caller must see.
        let _ = store.save(&state);
        return Err(err);
    }

    state.slots.insert(
        target.clone(),
        SlotRecord {
            content: SlotContent::Installed,
            version: Some(manifest.version.clone()),
            images: chosen
                .iter()
                .map(|&index| &manifest.images[index])
                .map(|i| {
                    (
                        i.name.clone(),
                        ImageRecord {
                            size: i.size,
                            sha256: i.sha256,
                        },
                    )
                })
                .collect(),
            updated: now(),
        },
    );
    state.pending = Some(Pending {
        slot: target.clone(),
        version: manifest.version.clone(),
        installed: now(),
    });
    state.last_result = Some(Outcome {
        kind: OutcomeKind::Installed,
        slot: target.clone(),
        version: Some(manifest.version.clone()),
        reason: format!("installed into slot {target}; reboot to try it"),
        at: now(),
    });
    store.save(&state)?;

    // The switch: one atomic bootloader write.
    boot.set(&target, false, 1);
    boot.put_first(&target);
    bl.write_state(&boot)?;
    events(InstallEvent::Switched {
        slot: target.to_string(),
        version: manifest.version.to_string(),
    });
    Ok(InstallReport {
        slot: target,
        version: manifest.version,
    })
}

/// Product, version and image layout checks, all before any write. Returns the manifest
/// entries to install: per image, the delta whose base is exactly what the active slot holds,
/// else the full image.
fn check_compatible(
    config: &Config,
    manifest: &Manifest,
    booted: &SlotName,
    target: &SlotName,
    booted_version: Option<&semver::Version>,
    options: &InstallOptions,
) -> Result<Vec<usize>> {
    if manifest.product != config.product {
        return Err(UpdateError::Incompatible(format!(
            "the bundle is for product '{}', this device is '{}'",
            manifest.product, config.product
        )));
    }
    if let Some(booted) = booted_version {
        if manifest.version <= *booted && !options.allow_downgrade {
            return Err(UpdateError::Downgrade {
                bundle: manifest.version.to_string(),
                booted: booted.to_string(),
            });
        }
    }
    let devices = &config.slots[target];
    let mut bundle_names: Vec<&str> = manifest.images.iter().map(|i| i.name.as_str()).collect();
    bundle_names.sort_unstable();
    bundle_names.dedup();
    let slot_names: Vec<&str> = devices.keys().map(String::as_str).collect();
    if bundle_names != slot_names {
        return Err(UpdateError::Incompatible(format!(
            "the bundle carries images [{}], slot {target} holds [{}]: a bundle must update every image of a slot",
            bundle_names.join(", "),
            slot_names.join(", ")
        )));
    }
    let chosen = choose_entries(config, manifest, booted)?;
    for image in chosen.iter().map(|&i| &manifest.images[i]) {
        let device = &devices[&image.name];
        let capacity = device_size(device).map_err(|e| UpdateError::Slot {
            slot: target.to_string(),
            reason: format!(
                "cannot open {} for image {}: {e}",
                device.display(),
                image.name
            ),
        })?;
        if image.size > capacity {
            return Err(UpdateError::Incompatible(format!(
                "image {} is {} bytes, larger than slot {target}'s device {} ({capacity} bytes)",
                image.name,
                image.size,
                device.display()
            )));
        }
    }
    Ok(chosen)
}

/// Per image name: the delta whose base hash equals the active slot's first `base_size` bytes,
/// else the full image.
fn choose_entries(config: &Config, manifest: &Manifest, booted: &SlotName) -> Result<Vec<usize>> {
    let mut chosen = Vec::new();
    for (name, active) in &config.slots[booted] {
        let mut delta_pick = None;
        let mut full = None;
        let mut bases_offered = Vec::new();
        let mut hashes: std::collections::BTreeMap<u64, Option<ota_core::Sha256Digest>> =
            Default::default();
        for (index, image) in manifest
            .images
            .iter()
            .enumerate()
            .filter(|(_, i)| &i.name == name)
        {
            match &image.payload {
                PayloadKind::Full => full = Some(index),
                PayloadKind::Delta {
                    base_sha256,
                    base_size,
                    ..
                } => {
                    bases_offered.push(base_sha256.to_hex()[..16].to_owned());
                    let hash = *hashes
                        .entry(*base_size)
                        .or_insert_with(|| crate::slot::hash_prefix(active, *base_size).ok());
                    if delta_pick.is_none() && hash == Some(*base_sha256) {
                        delta_pick = Some(index);
                    }
                }
            }
        }
        match delta_pick.or(full) {
            Some(index) => chosen.push(index),
            None => {
                return Err(UpdateError::Incompatible(format!(
                    "the bundle has only deltas for image {name} (from bases {}…), none made from what slot {booted} holds, and no full image",
                    bases_offered.join("…, ")
                )))
            }
        }
    }
    Ok(chosen)
}
