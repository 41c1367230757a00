//! A/B slots: names, and writing an image into a slot's device with a read-back check.

use crate::fault;
use ota_core::bundle::ImageSink;
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
    Ok(Sha256Digest::from_hasher(hasher))
}

/// Writes one verified image into a slot device from offset 0, then on `finish` fsyncs and
/// reads the written range back to compare its hash with the signed one: what the device
/// returns, not what we meant to write, decides whether the slot may boot.
pub struct SlotImageSink {
    file: File,
    path: PathBuf,
    expected: Sha256Digest,
    size: u64,
    written: u64,
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
        })
    }
}

impl ImageSink for SlotImageSink {
    fn write_piece(&mut self, data: &[u8]) -> io::Result<()> {
        self.file.write_all(data)?;
        self.written += data.len() as u64;
        fault::point("slot: piece written");
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
        Ok(())
    }
}
