//! The install journal (`STATE_DIR/install-journal.json`): which bundle an install is writing
//! into which slot, the images it finished, and the last position whose bytes are durable in
//! the slot, so the next install of the same bundle continues there instead of starting over.
//!
//! Write order (never claims more than the slot holds): the journal is created before the first
//! slot byte; a position is recorded only after the slot was fsynced up to it; an image is
//! recorded done only after its fsync and read-back matched the signed hash; the journal is
//! removed once the slot switch is durable. Every write is atomic (temp, fsync, rename,
//! directory fsync).
//!
//! Nothing in it is trusted on its own: a resume re-hashes every finished image against the
//! signed manifest and the partial image's prefix against the recorded hash (computed from
//! verified bytes as they were written); any mismatch discards the journal. The image hash at
//! the end still covers every byte of the partial image.

use crate::fault::{self, Io};
use crate::fsutil::atomic_write;
use crate::slot::{hash_prefix_state, SlotName};
use crate::state::{now, open_no_follow, SlotContent};
use ota_core::bundle::{Checkpoint, Manifest, PayloadKind, Resume, ResumePoint};
use ota_core::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// File name in the state directory.
pub const JOURNAL_FILE: &str = "install-journal.json";
/// Largest journal accepted (it holds a handful of images).
const MAX_JOURNAL_LEN: u64 = 64 << 10;
/// Format version of the journal file.
const JOURNAL_FORMAT: u32 = 1;

/// An image being written, as the journal knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalImage {
    /// Index in the manifest.
    pub index: usize,
    /// Image name.
    pub name: String,
    /// The slot device written.
    pub device: PathBuf,
    /// Size once written.
    pub size: u64,
}

/// A position whose bytes are durable in the slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalPosition {
    /// Where the payload read can continue.
    pub point: ResumePoint,
    /// SHA-256 of the image's bytes before the point, as they were written.
    pub prefix_sha256: Sha256Digest,
}

/// The journal file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallJournal {
    /// [`JOURNAL_FORMAT`].
    pub format: u32,
    /// SHA-256 of the signed manifest: the bundle's identity.
    pub manifest_sha256: Sha256Digest,
    /// Bytes before the payload in the bundle.
    pub head_len: u64,
    /// The release.
    pub version: semver::Version,
    /// The slot written.
    pub slot: SlotName,
    /// Where the bundle came from (a URL, a file, `repository`), for `status` and to ask a
    /// server for the head only on a resume.
    pub source: String,
    /// Total payload bytes of the bundle.
    pub payload_size: u64,
    /// The images written, in payload order.
    pub images: Vec<JournalImage>,
    /// Manifest indexes written, fsynced and verified by read-back.
    pub done: Vec<usize>,
    /// The last durable position inside the image being written.
    pub position: Option<JournalPosition>,
    /// When the install started and when the journal last changed (seconds since the epoch).
    pub started: u64,
    /// See `started`.
    pub updated: u64,
}

impl InstallJournal {
    /// A new journal for an install starting from scratch.
    pub fn start(
        manifest: &Manifest,
        identity: BundleIdentity,
        slot: &SlotName,
        source: &str,
        images: Vec<JournalImage>,
    ) -> Self {
        let at = now();
        Self {
            format: JOURNAL_FORMAT,
            manifest_sha256: identity.manifest_sha256,
            head_len: identity.head_len,
            version: manifest.version.clone(),
            slot: slot.clone(),
            source: source.to_owned(),
            payload_size: manifest.payload_size,
            images,
            done: Vec::new(),
            position: None,
            started: at,
            updated: at,
        }
    }

    /// Reads the journal in `state_dir`, if there is one that parses. A journal that cannot
    /// be read is as good as none: the install starts over (and replaces it).
    pub fn load(state_dir: &Path) -> Option<Self> {
        let file = open_no_follow(&state_dir.join(JOURNAL_FILE)).ok()?;
        let mut bytes = Vec::new();
        file.take(MAX_JOURNAL_LEN + 1)
            .read_to_end(&mut bytes)
            .ok()?;
        if bytes.len() as u64 > MAX_JOURNAL_LEN {
            return None;
        }
        serde_json::from_slice::<Self>(&bytes)
            .ok()
            .filter(|j| j.format == JOURNAL_FORMAT)
    }

    /// Removes the journal in `state_dir` (durably: the directory is fsynced).
    pub fn remove(state_dir: &Path) -> io::Result<()> {
        let path = state_dir.join(JOURNAL_FILE);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                fault::io(Io::Remove(&path));
                std::fs::File::open(state_dir)?.sync_all()?;
                fault::io(Io::SyncDir(state_dir));
                fault::point("journal: removed");
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Image bytes durable in the slot, over all images being written.
    pub fn bytes_written(&self) -> u64 {
        let done: u64 = self
            .images
            .iter()
            .filter(|i| self.done.contains(&i.index))
            .map(|i| i.size)
            .sum();
        done + self.position.as_ref().map_or(0, |p| p.point.image_offset)
    }

    /// Image bytes to write in total.
    pub fn bytes_total(&self) -> u64 {
        self.images.iter().map(|i| i.size).sum()
    }

    fn save(&mut self, state_dir: &Path) -> io::Result<()> {
        self.updated = now();
        let bytes = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        atomic_write(&state_dir.join(JOURNAL_FILE), &bytes)?;
        fault::point("journal: saved");
        Ok(())
    }
}

/// What identifies a bundle for a resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BundleIdentity {
    /// SHA-256 of the signed manifest bytes.
    pub manifest_sha256: Sha256Digest,
    /// Bytes before the payload.
    pub head_len: u64,
}

/// The journal of the install in progress, shared by the slot sinks of its images.
///
/// Best effort: an install never fails because its journal cannot be written (a full state
/// partition must not stop a security update). The first failure is reported on standard
/// error and the journal is left as it was: what it claims is still true (it only ever falls
/// behind), and a resume re-checks it anyway.
#[derive(Clone)]
pub struct JournalWriter {
    inner: Arc<Mutex<JournalState>>,
}

struct JournalState {
    dir: PathBuf,
    journal: InstallJournal,
    /// Set after a write failed: no more writes.
    broken: bool,
}

impl JournalWriter {
    /// Saves `journal` in `state_dir` (before any slot byte is written) and returns its writer.
    pub fn create(state_dir: &Path, journal: InstallJournal) -> Self {
        let writer = Self {
            inner: Arc::new(Mutex::new(JournalState {
                dir: state_dir.to_owned(),
                journal,
                broken: false,
            })),
        };
        writer.update(|_| {});
        writer
    }

    fn update(&self, change: impl FnOnce(&mut InstallJournal)) {
        let Ok(mut state) = self.inner.lock() else {
            return;
        };
        if state.broken {
            return;
        }
        change(&mut state.journal);
        let dir = state.dir.clone();
        if let Err(e) = state.journal.save(&dir) {
            state.broken = true;
            eprintln!(
                "ota-update: warning: cannot write the install journal in {} ({e}): this install goes on, but cannot be resumed past this point",
                dir.display()
            );
        }
    }

    /// Records a position; the caller has fsynced the slot up to it.
    pub fn record_position(&self, at: &Checkpoint) {
        self.update(|j| {
            j.position = Some(JournalPosition {
                point: at.point,
                prefix_sha256: at.prefix_sha256,
            });
        })
    }

    /// Records image `index` as written and verified by read-back.
    pub fn record_done(&self, index: usize) {
        self.update(|j| {
            if !j.done.contains(&index) {
                j.done.push(index);
            }
            j.position = None;
        })
    }
}

/// How an install continues from a journal.
pub struct ResumePlan {
    /// The journal, kept and continued.
    pub journal: InstallJournal,
    /// Where the payload read continues; `None` when every image is already in place.
    pub resume: Option<Resume>,
    /// Image bytes already in the slot, verified.
    pub verified_bytes: u64,
}

/// What a journal is checked against before an install continues it.
pub struct ResumeCheck<'a> {
    /// The verified manifest of the bundle being installed.
    pub manifest: &'a Manifest,
    /// Its identity.
    pub identity: BundleIdentity,
    /// The slot about to be written.
    pub slot: &'a SlotName,
    /// What the records say that slot holds, and of which version.
    pub slot_record: Option<(SlotContent, Option<&'a semver::Version>)>,
    /// The images this install would write (index, name, device, size), in payload order.
    pub images: &'a [JournalImage],
}

/// Checks `journal` against the install about to run and re-reads what it claims from the
/// slot. `Ok(plan)` to continue, `Err(reason)` to start over.
pub fn plan_resume(journal: InstallJournal, check: &ResumeCheck<'_>) -> Result<ResumePlan, String> {
    if journal.manifest_sha256 != check.identity.manifest_sha256
        || journal.head_len != check.identity.head_len
    {
        return Err("it was writing a different bundle".into());
    }
    if &journal.slot != check.slot || journal.images != check.images {
        return Err("it was writing other slot devices".into());
    }
    let writing_this =
        matches!(check.slot_record, Some((SlotContent::Writing, Some(v))) if *v == journal.version);
    if !writing_this {
        return Err(format!(
            "slot {} is no longer being written with {}",
            check.slot, journal.version
        ));
    }
    let mut verified = 0u64;
    for image in check
        .images
        .iter()
        .filter(|i| journal.done.contains(&i.index))
    {
        let expected = check.manifest.images[image.index].sha256;
        let actual = hash_prefix_state(&image.device, image.size)
            .map(Sha256Digest::from_hasher)
            .map_err(|e| format!("image {} cannot be read back: {e}", image.name))?;
        if actual != expected {
            return Err(format!(
                "image {} in {} no longer matches its signed hash",
                image.name,
                image.device.display()
            ));
        }
        verified += image.size;
    }
    let Some(next) = check
        .images
        .iter()
        .find(|i| !journal.done.contains(&i.index))
    else {
        return Ok(ResumePlan {
            journal,
            resume: None,
            verified_bytes: verified,
        });
    };
    let resume = match &journal.position {
        Some(position) => resume_inside(next, position)?,
        None => start_of(check.manifest, next)?,
    };
    verified += resume.point.image_offset;
    Ok(ResumePlan {
        journal,
        resume: Some(resume),
        verified_bytes: verified,
    })
}

/// Resumes inside `image` at `position`, after re-hashing the slot's prefix.
fn resume_inside(image: &JournalImage, position: &JournalPosition) -> Result<Resume, String> {
    let point = position.point;
    if point.image != image.index || point.image_offset > image.size {
        return Err("its position is not inside the image being written".into());
    }
    let prefix = hash_prefix_state(&image.device, point.image_offset)
        .map_err(|e| format!("image {} cannot be read back: {e}", image.name))?;
    if Sha256Digest::from_hasher(prefix.clone()) != position.prefix_sha256 {
        return Err(format!(
            "the first {} bytes of {} are not what was written",
            point.image_offset,
            image.device.display()
        ));
    }
    Ok(Resume { point, prefix })
}

/// The start of an image not begun yet (the images before it are all in place).
fn start_of(manifest: &Manifest, image: &JournalImage) -> Result<Resume, String> {
    let entry = &manifest.images[image.index];
    let payload_offset = match &entry.payload {
        PayloadKind::Full => entry.chunks.first().map(|c| c.payload_offset),
        PayloadKind::Delta { ops, .. } => {
            ops.payload_offset.checked_add(u64::from(ops.stored_size))
        }
    }
    .ok_or("the next image has no payload to resume")?;
    Ok(Resume {
        point: ResumePoint {
            image: image.index,
            unit: 0,
            within: 0,
            image_offset: 0,
            payload_offset,
        },
        prefix: Default::default(),
    })
}
