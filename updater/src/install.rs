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

use crate::config::Config;
use crate::device::{Device, Installed};
use crate::error::{Result, UpdateError};
use crate::slot::{device_size, hash_prefix, SlotImageSink, SlotName};
use crate::state::ImageRecord;
use ota_core::bundle::{BundleError, BundleReader, ImageAction, Manifest, PayloadKind};
use ota_core::delta::apply::BaseRead;
use ota_core::release::{choose_payloads, manifest_offers};
use serde::Serialize;
use std::io::Read;

/// Options of `ota-update install`.
#[derive(Debug, Clone, Default)]
pub struct InstallOptions {
    /// Accept a version that is not newer than the booted one (signatures still required).
    pub allow_downgrade: bool,
    /// SHA-256 of the repository target the bundle is, when installed from a repository
    /// (recorded, so a failed release is recognised by its target too).
    pub target_sha256: Option<String>,
    /// Set when signed rollout metadata authorises this downgrade (the running release was
    /// pulled): why. The release left is then not held: the rollout state keeps it off.
    pub authorised_downgrade: Option<String>,
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
    install_on(&mut Device::open(config)?, source, options, events)
}

/// [`install`] on a device already opened (the repository path checks, then installs, under
/// one lock).
pub fn install_on(
    device: &mut Device,
    source: Box<dyn Read + Send>,
    options: &InstallOptions,
    events: &dyn Fn(InstallEvent),
) -> Result<InstallReport> {
    let config = device.config();
    // Said before reading the bundle: nothing can be installed until a trial ends.
    device.ensure_installable()?;
    let reader = BundleReader::open(source, &config.trust)?;
    let manifest = reader.manifest().clone();
    let chosen = check_compatible(device, &manifest, options)?;
    events(InstallEvent::Accepted {
        product: manifest.product.clone(),
        version: manifest.version.to_string(),
        slot: device.other().to_string(),
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

    // From here on the target slot is overwritten: nothing may boot it.
    let target = device.begin_writing(&manifest.version)?;
    if let Err(err) = write_images(device, reader, &chosen, events) {
        device.record_install_failure(Some(&manifest.version), &err.to_string());
        return Err(err);
    }
    let images = chosen
        .iter()
        .map(|&index| &manifest.images[index])
        .map(|i| {
            let record = ImageRecord {
                size: i.size,
                sha256: i.sha256,
            };
            (i.name.clone(), record)
        })
        .collect();
    device.switch_to_trial(Installed {
        version: manifest.version.clone(),
        images,
        target_sha256: options.target_sha256.clone(),
        authorised_downgrade: options.authorised_downgrade.clone(),
    })?;
    events(InstallEvent::Switched {
        slot: target.to_string(),
        version: manifest.version.to_string(),
    });
    Ok(InstallReport {
        slot: target,
        version: manifest.version,
    })
}

/// Streams the payload into the other slot: each chunk hashed before it is decompressed or
/// applied, each image fsynced and read back against its signed hash.
fn write_images(
    device: &Device,
    reader: BundleReader<Box<dyn Read + Send>>,
    chosen: &[usize],
    events: &dyn Fn(InstallEvent),
) -> Result<()> {
    let config = device.config();
    let target = device.other();
    let devices = &config.slots[target];
    let active_devices = &config.slots[device.booted()];
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
    streamed.map_err(|err| match err {
        BundleError::Sink { image, source } => UpdateError::Slot {
            slot: target.to_string(),
            reason: format!("image {image}: {source}"),
        },
        // A download error surfaces as its own class (network, unverified), not as I/O.
        other => UpdateError::from(other),
    })
}

/// Product, version and image layout checks, all before any write. Returns the manifest
/// entries to install: per image, the delta whose base is exactly what the active slot holds,
/// else the full image.
fn check_compatible(
    device: &Device,
    manifest: &Manifest,
    options: &InstallOptions,
) -> Result<Vec<usize>> {
    let config = device.config();
    let (booted, target) = (device.booted(), device.other());
    if manifest.product != config.product {
        return Err(UpdateError::Incompatible(format!(
            "the bundle is for product '{}', this device is '{}'",
            manifest.product, config.product
        )));
    }
    if let Some(running) = device.booted_version() {
        if manifest.version <= running && !options.allow_downgrade {
            return Err(UpdateError::Downgrade {
                bundle: manifest.version.to_string(),
                booted: running.to_string(),
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
    let active = &config.slots[booted];
    let chosen = choose_payloads(&manifest_offers(manifest), &slot_names, |name, len| {
        hash_prefix(active.get(name)?, len).ok()
    })
    .map_err(|e| {
        UpdateError::Incompatible(format!(
            "the bundle has only deltas for image {} (from bases {}), none made from what slot {booted} holds, and no full image",
            e.image, e.bases
        ))
    })?;
    for image in chosen.values().map(|c| &manifest.images[c.index]) {
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
    Ok(chosen.values().map(|c| c.index).collect())
}
