//! Indexes of the base image, built in one streaming pass (the base is never held in memory):
//! a hash of every non-zero aligned 4 KiB block (finds unchanged and moved blocks), and
//! content-defined anchors every ~256 bytes (find where the old version of changed data lives,
//! at any alignment).

use super::BLOCK;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::io::{self, Read};
use xxhash_rust::xxh3::xxh3_64;

/// Anchor when the low bits of the rolling hash are zero: one anchor per ~256 bytes.
const ANCHOR_MASK: u64 = 0xff;
/// Anchor keys seen more often than this in the base say nothing about position.
const MAX_ANCHOR_REPEATS: u16 = 4;

/// The gear table of the rolling hash (fixed, so indexes are reproducible).
pub(super) fn gear() -> &'static [u64; 256] {
    static TABLE: std::sync::OnceLock<[u64; 256]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = [0u64; 256];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for v in t.iter_mut() {
            // splitmix64
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            *v = z ^ (z >> 31);
        }
        t
    })
}

/// Calls `found(position_after_anchor_byte, key)` for every anchor in `data`; anchors inside
/// runs of zero bytes are skipped (zeros are handled by `zero` operations).
pub(super) fn for_each_anchor(data: &[u8], mut found: impl FnMut(usize, u64)) {
    let g = gear();
    let mut h = 0u64;
    let mut zeros = 0usize;
    for (i, &b) in data.iter().enumerate() {
        h = (h << 1).wrapping_add(g[b as usize]);
        zeros = if b == 0 { zeros + 1 } else { 0 };
        // 32 bytes of history before an anchor can count: the hash covers the last 64.
        if h & ANCHOR_MASK == 0 && i >= 32 && zeros < 16 {
            found(i + 1, h);
        }
    }
}

/// Key of a 4 KiB block.
pub(super) fn block_key(block: &[u8]) -> u64 {
    xxh3_64(block)
}

/// What the generator knows about the base.
pub(super) struct BaseIndex {
    /// Block key → first base block index with that content (non-zero blocks only).
    pub blocks: HashMap<u64, u32>,
    /// Anchor key → (base position, times seen).
    pub anchors: HashMap<u64, (u64, u16)>,
    /// Base length.
    pub size: u64,
    /// Base SHA-256.
    pub sha256: crate::Sha256Digest,
}

impl BaseIndex {
    /// Reads the base once, front to back.
    pub fn build(base: &mut dyn Read) -> io::Result<Self> {
        let mut blocks = HashMap::new();
        let mut anchors: HashMap<u64, (u64, u16)> = HashMap::new();
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 4 << 20];
        let mut offset = 0u64;
        // Anchors use a rolling hash over a sliding history, so carry 64 bytes across reads.
        let mut carry: Vec<u8> = Vec::new();
        loop {
            let n = read_full(base, &mut buf)?;
            if n == 0 {
                break;
            }
            let data = &buf[..n];
            hasher.update(data);
            for (i, block) in data.chunks_exact(BLOCK).enumerate() {
                if block.iter().any(|&b| b != 0) {
                    let index = ((offset as usize + i * BLOCK) / BLOCK) as u32;
                    blocks.entry(block_key(block)).or_insert(index);
                }
            }
            let mut joined = std::mem::take(&mut carry);
            let carried = joined.len();
            joined.extend_from_slice(data);
            let start = offset - carried as u64;
            for_each_anchor(&joined, |pos, key| {
                if pos > carried {
                    let e = anchors.entry(key).or_insert((start + pos as u64, 0));
                    e.1 = e.1.saturating_add(1);
                }
            });
            carry = joined[joined.len().saturating_sub(64)..].to_vec();
            offset += n as u64;
            if n < buf.len() {
                break;
            }
        }
        anchors.retain(|_, (_, seen)| *seen <= MAX_ANCHOR_REPEATS);
        Ok(Self {
            blocks,
            anchors,
            size: offset,
            sha256: crate::Sha256Digest::from_hasher(hasher),
        })
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
pub(super) fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}
