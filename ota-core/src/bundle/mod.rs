//! The bundle format, version 1 (specified byte by byte in `docs/bundle-format.md`).
//!
//! ```text
//! header (24 bytes) | manifest (JSON) | signature block | payload (zstd chunks)
//! ```
//!
//! Everything needed to trust the payload comes before it, so a bundle is verified and installed
//! in one front-to-back read: [`build`] writes bundles, [`verify`] reads them as a stream.

pub mod build;
mod error;
pub mod manifest;
pub mod resume;
pub mod sink;
pub mod verify;

pub use build::{build_bundle, BuildOptions, ImageInput};
pub use error::{BundleError, ErrorClass};
pub use manifest::{Chunk, DeltaOps, ImageManifest, Manifest, PayloadKind};
pub use resume::{Checkpoint, Resume, ResumePoint};
pub use sink::{DiscardSink, FileImageSink, ImageSink};
pub use verify::{
    read_unverified, skip_by_reading, BundleReader, ImageAction, SkipFn, TrustPolicy,
};

/// First 8 bytes of every bundle. The high-bit byte and the CR LF / ^Z / LF tail catch
/// 7-bit and text-mode transfers, as in PNG.
pub const MAGIC: [u8; 8] = *b"\x89OTA\r\n\x1a\n";
/// The format version this code writes and the only one it reads.
pub const FORMAT_VERSION: u16 = 1;
/// Size of the fixed header.
pub const HEADER_LEN: usize = 24;
/// Largest manifest a reader accepts (a 3 GiB image in 64 KiB chunks needs ~6 MiB).
pub const MAX_MANIFEST_LEN: u32 = 16 << 20;
/// Most signatures one bundle may carry.
pub const MAX_SIGNATURES: u32 = 64;
/// Bytes per signature block entry: key id (32) + ed25519 signature (64).
pub const SIGNATURE_ENTRY_LEN: usize = 96;
/// Smallest and largest chunk size a manifest may declare. The upper bound caps the memory a
/// verifier needs per chunk in flight: a chunk is held compressed (its hash is checked before
/// it is decompressed) and decompressed, so 8 MiB chunks keep a reader near 16 MiB of chunk
/// memory (16 MiB chunks, allowed until 2026-12, took 43–57 MiB).
pub const MIN_CHUNK_SIZE: u32 = 4 << 10;
/// See [`MIN_CHUNK_SIZE`].
pub const MAX_CHUNK_SIZE: u32 = 8 << 20;
/// Chunks larger than this are not decompressed while the writer still holds the previous
/// one: their memory would otherwise add up (stored + decompressed + queued + being written).
pub(crate) const OVERLAP_CHUNK_LIMIT: u32 = 4 << 20;
/// Largest image a bundle may describe (256 GiB): far above any slot of the devices this is
/// for, and a bound on the work a reader does for one image (hashing a 256 GiB run of zeros
/// takes minutes, not for ever).
pub const MAX_IMAGE_SIZE: u64 = 1 << 38;
/// Default chunk size, chosen by measurement (see `docs/bundle-format.md`).
pub const DEFAULT_CHUNK_SIZE: u32 = 4 << 20;
/// Default zstd level, chosen by measurement (see `docs/bundle-format.md`).
pub const DEFAULT_ZSTD_LEVEL: i32 = 19;

/// The fixed-size header at offset 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Length of the manifest JSON that follows the header.
    pub manifest_len: u32,
    /// Length of the signature block that follows the manifest.
    pub signature_block_len: u32,
}

impl Header {
    /// Encodes the header (little-endian fields).
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&MAGIC);
        out[8..10].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        // 10..12 flags and 20..24 reserved stay zero in version 1.
        out[12..16].copy_from_slice(&self.manifest_len.to_le_bytes());
        out[16..20].copy_from_slice(&self.signature_block_len.to_le_bytes());
        out
    }

    /// Decodes and checks the header. The version is checked right after the magic so that a
    /// newer bundle is reported as such, not as corrupt.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Result<Self, BundleError> {
        if bytes[0..8] != MAGIC {
            return Err(BundleError::NotABundle);
        }
        let version = u16::from_le_bytes([bytes[8], bytes[9]]);
        if version != FORMAT_VERSION {
            return Err(BundleError::UnsupportedVersion { found: version });
        }
        let field = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let flags = u16::from_le_bytes([bytes[10], bytes[11]]);
        if flags != 0 || field(20) != 0 {
            return Err(BundleError::Corrupt(
                "header flags or reserved bytes are not zero".into(),
            ));
        }
        let manifest_len = field(12);
        if manifest_len == 0 || manifest_len > MAX_MANIFEST_LEN {
            return Err(BundleError::Corrupt(format!(
                "manifest length {manifest_len} is outside 1..={MAX_MANIFEST_LEN}"
            )));
        }
        let signature_block_len = field(16);
        let entries = signature_block_len.checked_sub(4).map(|n| n as usize);
        match entries {
            Some(n) if n % SIGNATURE_ENTRY_LEN == 0 && n / SIGNATURE_ENTRY_LEN <= MAX_SIGNATURES as usize => {}
            _ => {
                return Err(BundleError::Corrupt(format!(
                    "signature block length {signature_block_len} is not 4 + 96 x count (count <= {MAX_SIGNATURES})"
                )))
            }
        }
        Ok(Self {
            manifest_len,
            signature_block_len,
        })
    }
}

/// Upper bound of zstd's output for `size` input bytes (ZSTD_COMPRESSBOUND).
pub(crate) fn zstd_compress_bound(size: u64) -> u64 {
    let margin = if size < (128 << 10) {
        ((128u64 << 10) - size) >> 11
    } else {
        0
    };
    size.saturating_add(size >> 8).saturating_add(margin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let h = Header {
            manifest_len: 1234,
            signature_block_len: 4 + 96 * 2,
        };
        assert_eq!(Header::decode(&h.encode()).unwrap(), h);
    }

    #[test]
    fn newer_version_is_reported_as_unsupported() {
        let mut bytes = Header {
            manifest_len: 10,
            signature_block_len: 100,
        }
        .encode();
        bytes[8] = 2;
        assert!(matches!(
            Header::decode(&bytes),
            Err(BundleError::UnsupportedVersion { found: 2 })
        ));
    }

    #[test]
    fn compress_bound_covers_zstd() {
        for size in [0usize, 1, 100, 4096, 1 << 20] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7919 % 251) as u8).collect();
            let out = zstd::bulk::compress(&data, 1).unwrap();
            assert!(out.len() as u64 <= zstd_compress_bound(size as u64));
        }
    }
}
