//! Installing a bundle into the inactive slot.
//!
//! Order of operations (each step only after the previous one succeeded):
//! 1. lock; find the booted slot; refuse if it is still on trial (the other slot is then the
//!    only fallback and must not be overwritten);
//! 2. verify the manifest signatures (no payload byte read before);
//! 3. check product, version (no downgrade), images against the slots' devices and sizes;
//! 4. mark the target slot unbootable in the bootloader, record it as being written;
//! 5. stream the payload: each chunk hashed before decompression, written to the slot;
//!    each image fsynced, read back and hashed; progress checkpointed in the install journal
//!    (`journal`), so an interrupted install of the same bundle continues where the slot's
//!    verified bytes end;
//! 6. record the slot as installed, then in one atomic bootloader write put it first with
//!    one try.
//!
//! A power cut before step 6's bootloader write boots the old slot as before; after it, the
//! new slot gets exactly one try and the old one stays good as fallback.

use crate::config::Config;
use crate::device::{Device, Installed};
use crate::error::{Result, UpdateError};
use crate::journal::{
    plan_resume, BundleIdentity, InstallJournal, JournalImage, JournalWriter, ResumeCheck,
    ResumePlan,
};
use crate::slot::{device_size, hash_prefix, SlotImageSink, SlotName};
use crate::source::BundleSource;
use crate::state::ImageRecord;
use ota_core::bundle::{BundleError, BundleReader, ImageAction, Manifest, PayloadKind, Resume};
use ota_core::delta::apply::HashedBase;
use ota_core::release::{choose_payloads, manifest_offers, ReleaseInfo};
use ota_core::Sha256Digest;
use serde::Serialize;
use std::collections::BTreeMap;

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
    /// Where the bundle comes from (a URL, a file path, `repository target NAME`), recorded in
    /// the install journal for `status`.
    pub source: Option<String>,
    /// The signed release info of the repository target being installed: a resumed download
    /// (which skips bytes, so the whole-file hash cannot be checked) must match it.
    pub release: Option<ReleaseInfo>,
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
    /// An earlier install of this bundle was interrupted: it continues, the bytes already in
    /// the slot read back and verified.
    Resumed {
        /// Image bytes already in the slot, verified.
        verified_bytes: u64,
        /// Image bytes in total.
        total_bytes: u64,
        /// Payload bytes not read again.
        payload_skipped: u64,
    },
    /// An interrupted install was found but cannot be continued: it starts over.
    StartingOver {
        /// Why.
        reason: String,
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
    source: BundleSource,
    options: &InstallOptions,
    events: &dyn Fn(InstallEvent),
) -> Result<InstallReport> {
    install_on(&mut Device::open(config)?, source, options, events)
}

/// [`install`] on a device already opened (the repository path checks, then installs, under
/// one lock).
pub fn install_on(
    device: &mut Device,
    source: BundleSource,
    options: &InstallOptions,
    events: &dyn Fn(InstallEvent),
) -> Result<InstallReport> {
    // Said before reading the bundle: nothing can be installed until a trial ends.
    device.ensure_installable()?;
    let (reader, chosen, hashed) = match accept(device, source, options) {
        Ok(accepted) => accepted,
        Err((version, err)) => {
            device.record_refusal(version.as_ref(), &err.to_string());
            return Err(err);
        }
    };
    let manifest = reader.manifest().clone();
    let identity = BundleIdentity {
        manifest_sha256: reader.manifest_sha256(),
        head_len: reader.head_len(),
    };
    events(accepted_event(device, &manifest, &chosen));
    let images = journal_images(device, &manifest, &chosen);
    let plan = plan_for(device, &manifest, identity, &images, options, events);

    // From here on the target slot is overwritten: nothing may boot it.
    let target = device.begin_writing(&manifest.version)?;
    let state_dir = device.config().state_dir.clone();
    let (journal, resume) = match plan {
        Some(plan) => (plan.journal, plan.resume.map(Some)),
        None => {
            let source = options.source.as_deref().unwrap_or("a stream");
            let fresh = InstallJournal::start(&manifest, identity, &target, source, images);
            (fresh, Some(None))
        }
    };
    let journal = JournalWriter::create(&state_dir, journal);
    let written = match resume {
        // Every image is already in place, verified: nothing left to read.
        None => Ok(()),
        Some(resume) => {
            let chosen = (chosen.as_slice(), &hashed);
            write_images(device, reader, chosen, resume, journal, events)
        }
    };
    if let Err(err) = written {
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
    // The switch is durable: the journal has nothing left to resume.
    if let Err(e) = InstallJournal::remove(&state_dir) {
        eprintln!("ota-update: cannot remove the finished install journal: {e}");
    }
    events(InstallEvent::Switched {
        slot: target.to_string(),
        version: manifest.version.to_string(),
    });
    Ok(InstallReport {
        slot: target,
        version: manifest.version,
    })
}

type Accepted = (BundleReader<BundleSource>, Vec<usize>, BaseHashes);

/// The SHA-256 of each active-slot prefix hashed to choose the deltas, by image and length:
/// the bundle reader then does not hash the base a second time.
type BaseHashes = BTreeMap<(String, u64), Sha256Digest>;

/// Signatures, then compatibility: the bundle is accepted for this device, or refused with
/// the version it claims (when its manifest could be trusted) and why.
fn accept(
    device: &Device,
    source: BundleSource,
    options: &InstallOptions,
) -> std::result::Result<Accepted, (Option<semver::Version>, UpdateError)> {
    let reader =
        BundleReader::open(source, &device.config().trust).map_err(|e| (None, e.into()))?;
    let version = reader.manifest().version.clone();
    match check_compatible(device, reader.manifest(), options) {
        Ok((chosen, hashed)) => Ok((reader, chosen, hashed)),
        Err(err) => Err((Some(version), err)),
    }
}

fn accepted_event(device: &Device, manifest: &Manifest, chosen: &[usize]) -> InstallEvent {
    InstallEvent::Accepted {
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
    }
}

/// The images this install writes, as the journal records them.
fn journal_images(device: &Device, manifest: &Manifest, chosen: &[usize]) -> Vec<JournalImage> {
    let devices = &device.config().slots[device.other()];
    chosen
        .iter()
        .filter_map(|&index| {
            let image = &manifest.images[index];
            let path = devices.get(&image.name)?;
            Some(JournalImage {
                index,
                name: image.name.clone(),
                device: path.clone(),
                size: image.size,
            })
        })
        .collect()
}

/// Whether an earlier, interrupted install of this bundle can be continued: its journal must
/// match, and what it claims must read back right. Says why when one cannot.
fn plan_for(
    device: &Device,
    manifest: &Manifest,
    identity: BundleIdentity,
    images: &[JournalImage],
    options: &InstallOptions,
    events: &dyn Fn(InstallEvent),
) -> Option<ResumePlan> {
    let journal = InstallJournal::load(&device.config().state_dir)?;
    let record = device.records().slots.get(device.other());
    let check = ResumeCheck {
        manifest,
        identity,
        slot: device.other(),
        slot_record: record.map(|r| (r.content, r.version.as_ref())),
        images,
    };
    let plan = plan_resume(journal, &check).and_then(|plan| {
        // A download that skips cannot check the repository's whole-file hash: the signed
        // release info must then describe exactly this bundle.
        match &options.release {
            Some(release) => release
                .describes(manifest)
                .map(|()| plan)
                .map_err(|e| format!("the repository's release info does not match: {e}")),
            _ => Ok(plan),
        }
    });
    match plan {
        Ok(plan) => {
            events(InstallEvent::Resumed {
                verified_bytes: plan.verified_bytes,
                total_bytes: images.iter().map(|i| i.size).sum(),
                payload_skipped: plan
                    .resume
                    .as_ref()
                    .map_or(manifest.payload_size, |r| r.point.payload_offset),
            });
            Some(plan)
        }
        Err(reason) => {
            events(InstallEvent::StartingOver { reason });
            None
        }
    }
}

/// Streams the payload into the other slot: each chunk hashed before it is decompressed or
/// applied, each image fsynced and read back against its signed hash; progress checkpointed
/// in the journal. With `resume`, continues there (the slot's prefix was checked).
fn write_images(
    device: &Device,
    reader: BundleReader<BundleSource>,
    (chosen, hashed): (&[usize], &BaseHashes),
    resume: Option<Resume>,
    journal: JournalWriter,
    events: &dyn Fn(InstallEvent),
) -> Result<()> {
    let config = device.config();
    let target = device.other();
    let devices = &config.slots[target];
    let active_devices = &config.slots[device.booted()];
    let resume_at = resume
        .as_ref()
        .map(|r| (r.point.image, r.point.image_offset));
    // Only a resume moves the source forward without reading (a seek, a Range request): it has
    // checked the bundle against the signed release info instead of the whole-file hash. A
    // first install reads what it skips, so a repository download is hashed whole.
    let seek = resume.is_some();
    let streamed = reader.stream_payload_from(
        resume,
        |index, image| -> std::io::Result<ImageAction> {
            if !chosen.contains(&index) {
                return Ok(ImageAction::Skip);
            }
            let device = devices
                .get(&image.name)
                .ok_or_else(|| std::io::Error::other("image has no device"))?;
            let base = match image.payload {
                PayloadKind::Delta { base_size, .. } => {
                    let active = active_devices
                        .get(&image.name)
                        .ok_or_else(|| std::io::Error::other("image has no active device"))?;
                    let file = std::fs::File::open(active)?;
                    let known = hashed.get(&(image.name.clone(), base_size)).copied();
                    Some(HashedBase::boxed(file, base_size, known))
                }
                PayloadKind::Full => None,
            };
            let mut sink = SlotImageSink::open(device, image.sha256, image.size)?
                .with_journal(journal.clone(), index);
            if let Some((_, offset)) = resume_at.filter(|(at, _)| *at == index) {
                sink = sink.resume_at(offset)?;
            }
            Ok(ImageAction::Write {
                sink: Box::new(sink),
                base,
            })
        },
        &|bytes| events(InstallEvent::Progress { bytes }),
        &mut |source: &mut BundleSource, n| {
            if seek {
                source.skip(n)
            } else {
                ota_core::bundle::skip_by_reading(source, n)
            }
        },
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
/// else the full image; and the active-slot prefixes it hashed to decide.
fn check_compatible(
    device: &Device,
    manifest: &Manifest,
    options: &InstallOptions,
) -> Result<(Vec<usize>, BaseHashes)> {
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
    let mut hashed = BaseHashes::new();
    let chosen = choose_payloads(&manifest_offers(manifest), &slot_names, |name, len| {
        let sha256 = hash_prefix(active.get(name)?, len).ok()?;
        hashed.insert((name.to_owned(), len), sha256);
        Some(sha256)
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
    Ok((chosen.values().map(|c| c.index).collect(), hashed))
}
