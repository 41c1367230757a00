//! A/B slots: names, and writing an image into a slot's device with a read-back check.

use crate::fault::{self, Io};
use crate::journal::JournalWriter;
use ota_core::bundle::{Checkpoint, ImageSink};
use ota_core::Sha256Digest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// A slot's name (`A`, `B`): 1 to 8 ASCII letters or digits, so it fits bootloader variable
/// names such as `OTA_A_GOOD`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SlotName(String);

impl SlotName {
    /// Checks and wraps a slot name.
    pub fn parse(name: &str) -> Result<Self, String> {
        if !name.is_empty() && name.len() <= 8 && name.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Self(name.to_owned()))
        } else {
            Err(format!(
                "slot name {name:?}: use 1 to 8 ASCII letters or digits"
            ))
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SlotName {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<SlotName> for String {
    fn from(s: SlotName) -> String {
        s.0
    }
}

impl fmt::Display for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SlotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlotName({})", self.0)
    }
}

/// Capacity of a slot device: a block device's or an existing file's size. Slots are never
/// created or grown by the updater: a missing device is a configuration error.
pub fn device_size(path: &Path) -> io::Result<u64> {
    let mut file = File::open(path)?;
    file.seek(SeekFrom::End(0))
}

/// SHA-256 of the first `len` bytes of a device, read in 1 MiB blocks.
pub fn hash_prefix(path: &Path, len: u64) -> io::Result<Sha256Digest> {
    hash_prefix_state(path, len).map(Sha256Digest::from_hasher)
}

/// The SHA-256 state after the first `len` bytes of a device (a resumed install continues
/// hashing from it).
pub fn hash_prefix_state(path: &Path, len: u64) -> io::Result<Sha256> {
    let mut file = File::open(path)?.take(len);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if total != len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{} holds {total} bytes, {len} expected", path.display()),
        ));
    }
    Ok(hasher)
}

/// Writes one verified image into a slot device from offset 0, then on `finish` fsyncs and
/// reads the written range back to compare its hash with the signed one: what the device
/// returns, not what we meant to write, decides whether the slot may boot.
///
/// With a journal, it also checkpoints: every [`checkpoint_interval`] bytes the device is
/// fsynced, then the position recorded; a finished image is recorded once it read back right.
pub struct SlotImageSink {
    file: File,
    path: PathBuf,
    expected: Sha256Digest,
    size: u64,
    written: u64,
    journal: Option<(JournalWriter, usize)>,
}

/// Image bytes between two checkpoints: about 1/32 of the image (a resume redoes at most ~3 %
/// of it), at least 1 MiB (each costs an fsync and a journal write) and at most 32 MiB.
pub fn checkpoint_interval(size: u64) -> u64 {
    (size / 32).clamp(1 << 20, 32 << 20)
}

impl SlotImageSink {
    /// Opens `path` for writing (never creating or truncating it).
    pub fn open(path: &Path, expected: Sha256Digest, size: u64) -> io::Result<Self> {
        let file = OpenOptions::new().write(true).open(path)?;
        Ok(Self {
            file,
            path: path.to_owned(),
            expected,
            size,
            written: 0,
            journal: None,
        })
    }

    /// Continues writing at `offset` (the bytes before it were checked by the caller).
    pub fn resume_at(mut self, offset: u64) -> io::Result<Self> {
        self.file.seek(SeekFrom::Start(offset))?;
        self.written = offset;
        Ok(self)
    }

    /// Records progress of manifest image `index` in `journal`.
    pub fn with_journal(mut self, journal: JournalWriter, index: usize) -> Self {
        self.journal = Some((journal, index));
        self
    }
}

impl ImageSink for SlotImageSink {
    fn write_piece(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        fault::io(Io::Write(&self.path, self.written, data));
        self.written += data.len() as u64;
        fault::point("slot: piece written");
        Ok(())
    }

    fn checkpoint_every(&self) -> Option<u64> {
        self.journal
            .as_ref()
            .map(|_| checkpoint_interval(self.size))
    }

    fn checkpoint(&mut self, at: &Checkpoint) -> io::Result<()> {
        let Some((journal, _)) = &self.journal else {
            return Ok(());
        };
        // Durable first, recorded second: the journal never claims bytes a power cut loses.
        self.file.sync_data()?;
        fault::io(Io::Sync(&self.path));
        fault::point("slot: checkpoint synced");
        journal.record_position(at);
        Ok(())
    }

    fn finish(self: Box<Self>) -> io::Result<()> {
        if self.written != self.size {
            return Err(io::Error::other(format!(
                "wrote {} bytes to {}, the image has {}",
                self.written,
                self.path.display(),
                self.size
            )));
        }
        self.file.sync_all()?;
        fault::io(Io::Sync(&self.path));
        fault::point("slot: synced");
        drop(self.file);
        let actual = hash_prefix(&self.path, self.size)?;
        if actual != self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "read-back of {} hashes to {actual}, expected {}: the device did not store what was written",
                    self.path.display(),
                    self.expected
                ),
            ));
        }
        if let Some((journal, index)) = &self.journal {
            journal.record_done(*index);
        }
        Ok(())
    }
}
