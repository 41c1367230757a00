//! Resuming a payload read part-way: where a writer got to ([`ResumePoint`]), what it reports
//! while it writes ([`Checkpoint`]), and the rule for when it reports ([`CheckpointTimer`]).
//!
//! A point is only ever reported after the bytes before it were handed to the image sink in
//! order, so a sink that makes them durable before it records the point never claims more than
//! the device holds. Resuming never trusts the slot: the caller re-hashes the prefix and
//! passes the hash state in [`Resume`]; the image hash at the end still covers every byte.

use crate::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// A position inside a bundle's payload where writing can continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResumePoint {
    /// Index of the image being written, in the manifest.
    pub image: usize,
    /// Chunks (full image) or operations (delta) completely written.
    pub unit: u64,
    /// Bytes of the next operation already written (a `copy` or `zero` cut part-way; 0 for
    /// full images and data operations).
    pub within: u64,
    /// Bytes of the image written before this point.
    pub image_offset: u64,
    /// Payload bytes (from the payload's first byte) consumed before this point.
    pub payload_offset: u64,
}

/// Reported to an image sink: every byte of the image before `point.image_offset` has been
/// handed to it, and they hash to `prefix_sha256`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Where writing could continue.
    pub point: ResumePoint,
    /// SHA-256 of the image's first `point.image_offset` bytes.
    pub prefix_sha256: Sha256Digest,
}

/// How to continue: the point, and the image hash state over the bytes the slot already holds
/// (re-read and checked by the caller).
#[derive(Clone)]
pub struct Resume {
    /// Where to continue.
    pub point: ResumePoint,
    /// SHA-256 state over the image's first `point.image_offset` bytes.
    pub prefix: Sha256,
}

/// Decides when a checkpoint is due: after at least `every` image bytes since the last one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckpointTimer {
    every: Option<u64>,
    since: u64,
}

impl CheckpointTimer {
    pub(crate) fn new(every: Option<u64>) -> Self {
        Self { every, since: 0 }
    }

    /// Counts `bytes` written; true when a checkpoint is due (and restarts the count).
    pub(crate) fn wrote(&mut self, bytes: u64) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        self.since = self.since.saturating_add(bytes);
        if self.since >= every {
            self.since = 0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timer_fires_after_each_interval_and_never_without_one() {
        let mut timer = CheckpointTimer::new(Some(10));
        let fired: Vec<bool> = [4, 4, 4, 10, 1].iter().map(|&b| timer.wrote(b)).collect();
        assert_eq!(fired, [false, false, true, true, false]);
        let mut never = CheckpointTimer::new(None);
        assert!(!never.wrote(u64::MAX));
    }
}
