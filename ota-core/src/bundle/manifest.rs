//! The signed manifest: what a bundle contains and the hash of every byte of it.
//!
//! Serialized as compact JSON with fields in declaration order (serde_json keeps struct order),
//! which makes the bytes reproducible. Readers only parse a manifest after its signatures have
//! verified over the exact bytes, then [`Manifest::validate`] checks every structural promise
//! the payload reader relies on.

use super::{
    zstd_compress_bound, BundleError, FORMAT_VERSION, MAX_CHUNK_SIZE, MAX_IMAGE_SIZE,
    MIN_CHUNK_SIZE,
};
use crate::digest::Sha256Digest;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// Most images one bundle may update.
pub const MAX_IMAGES: usize = 64;

/// The manifest of one bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bundle format version; equals the header's.
    pub format: u16,
    /// Product (compatible) string; a device installs only bundles for its own product.
    pub product: String,
    /// Release version (semver).
    pub version: semver::Version,
    /// Creation time, seconds since the Unix epoch (`SOURCE_DATE_EPOCH` when set).
    pub created: u64,
    /// Compression of every chunk: always `zstd` in version 1.
    pub compression: String,
    /// Uncompressed size of every chunk but each image's last.
    pub chunk_size: u32,
    /// Total length of the payload that follows the signature block.
    pub payload_size: u64,
    /// The images, in payload order.
    pub images: Vec<ImageManifest>,
    /// The build provenance this release is bound to (`ota-sign bundle --provenance`). Absent
    /// from the bytes when there is none, so such bundles read as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<crate::provenance::Provenance>,
}

/// One image (for instance `rootfs`) carried by a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageManifest {
    /// Image name, `[a-z0-9][a-z0-9._-]{0,63}`.
    pub name: String,
    /// Size of the image once written.
    pub size: u64,
    /// SHA-256 of the whole image once written.
    pub sha256: Sha256Digest,
    /// How the payload encodes the image.
    pub payload: PayloadKind,
    /// Payload chunks covering the image in order.
    pub chunks: Vec<Chunk>,
}

/// How an image's payload is encoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum PayloadKind {
    /// The whole image, chunked and compressed.
    Full,
    /// Operations against an exact base image (see `docs/bundle-format.md` and [`crate::delta`]).
    Delta {
        /// SHA-256 of the base image the delta applies to.
        base_sha256: Sha256Digest,
        /// Length of that base image.
        base_size: u64,
        /// Where the operation list and the operation data are.
        ops: DeltaOps,
    },
}

/// Location of a delta image's payload: the zstd-compressed op list, then the data of every
/// data-carrying operation in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeltaOps {
    /// Number of operations.
    pub count: u64,
    /// Where the compressed op list starts in the payload.
    pub payload_offset: u64,
    /// Compressed op list length.
    pub stored_size: u32,
    /// SHA-256 of the compressed op list, checked before it is decompressed.
    pub sha256: Sha256Digest,
    /// Total length of the operation data that follows the op list.
    pub data_size: u64,
}

impl DeltaOps {
    /// Largest decoded op list for `count` operations: per operation a kind byte, seven
    /// 10-byte varints (a filtered `bsdiff` operation's fields; an `xz` one's with its stream
    /// count), an `xz` operation's check byte and stream lengths, then a digest or inline data.
    pub fn max_decoded_len(count: u64) -> u64 {
        let xz_fields = 1 + 10 * crate::delta::xz::MAX_XZ_STREAMS;
        count
            .saturating_mul(1 + 7 * 10 + xz_fields + 32.max(crate::delta::MAX_INLINE))
            .saturating_add(10)
    }
}

impl ImageManifest {
    /// Payload bytes this image occupies.
    pub fn payload_len(&self) -> u64 {
        match &self.payload {
            PayloadKind::Full => self
                .chunks
                .iter()
                .fold(0u64, |sum, c| sum.saturating_add(u64::from(c.stored_size))),
            PayloadKind::Delta { ops, .. } => {
                u64::from(ops.stored_size).saturating_add(ops.data_size)
            }
        }
    }
}

/// One compressed chunk of the payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// Where the chunk's bytes go in the image.
    pub offset: u64,
    /// Uncompressed length.
    pub size: u32,
    /// Where the compressed bytes start in the payload.
    pub payload_offset: u64,
    /// Compressed length.
    pub stored_size: u32,
    /// SHA-256 of the compressed bytes, checked before decompression.
    pub sha256: Sha256Digest,
}

/// True for names the format allows for images.
pub fn is_valid_image_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(b))
}

/// True for product strings the format allows: 1 to 128 printable ASCII characters, no spaces.
pub fn is_valid_product(product: &str) -> bool {
    !product.is_empty() && product.len() <= 128 && product.bytes().all(|b| b.is_ascii_graphic())
}

impl Manifest {
    /// The exact bytes that are signed and stored.
    pub fn to_bytes(&self) -> Vec<u8> {
        // Serializing plain structs of strings and integers into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses and validates manifest bytes. Call only on bytes whose signatures verified, or
    /// for display clearly marked unverified.
    pub fn parse(bytes: &[u8]) -> Result<Self, BundleError> {
        let manifest: Manifest = serde_json::from_slice(bytes)
            .map_err(|e| BundleError::Corrupt(format!("manifest is not valid: {e}")))?;
        manifest.validate()?;
        Ok(manifest)
    }

    /// Checks every structural promise: sizes add up, chunks are contiguous, names are unique.
    pub fn validate(&self) -> Result<(), BundleError> {
        self.validate_header()?;
        // An image may come several times: once full, and once per delta base.
        let mut variants = HashSet::new();
        let mut payload_offset = 0u64;
        for image in &self.images {
            if !is_valid_image_name(&image.name) {
                return bad(format!("invalid image name {:?}", image.name));
            }
            let variant = match &image.payload {
                PayloadKind::Full => None,
                PayloadKind::Delta { base_sha256, .. } => Some(*base_sha256),
            };
            if image.size > MAX_IMAGE_SIZE {
                return bad(format!(
                    "image '{}' is {} bytes, more than {MAX_IMAGE_SIZE}",
                    image.name, image.size
                ));
            }
            if !variants.insert((image.name.as_str(), variant)) {
                return bad(format!(
                    "image '{}' appears twice with the same payload kind and base",
                    image.name
                ));
            }
            payload_offset = match &image.payload {
                PayloadKind::Delta { ops, base_size, .. } => {
                    validate_delta_image(image, ops, *base_size, payload_offset)?
                }
                PayloadKind::Full => self.validate_chunks(image, payload_offset)?,
            };
        }
        if payload_offset != self.payload_size {
            return bad(format!(
                "chunks cover {payload_offset} payload bytes, the manifest says {}",
                self.payload_size
            ));
        }
        Ok(())
    }

    /// The manifest-wide fields: format, product, compression, chunk size, image count.
    fn validate_header(&self) -> Result<(), BundleError> {
        if self.format != FORMAT_VERSION {
            return bad(format!(
                "format {} does not match the header's {FORMAT_VERSION}",
                self.format
            ));
        }
        if !is_valid_product(&self.product) {
            return bad(format!("invalid product string {:?}", self.product));
        }
        if self.compression != "zstd" {
            return Err(BundleError::UnsupportedPayload {
                image: "*".into(),
                kind: format!("compression {}", self.compression),
            });
        }
        if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&self.chunk_size) {
            return bad(format!(
                "chunk size {} outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}",
                self.chunk_size
            ));
        }
        if self.images.is_empty() || self.images.len() > MAX_IMAGES {
            return bad(format!(
                "{} images (1..={MAX_IMAGES} allowed)",
                self.images.len()
            ));
        }
        Ok(())
    }

    /// The chunks of a full image: contiguous in the image and in the payload (from
    /// `payload_offset`), sizes within bounds, covering the whole image. Returns the payload
    /// offset after the image.
    fn validate_chunks(
        &self,
        image: &ImageManifest,
        mut payload_offset: u64,
    ) -> Result<u64, BundleError> {
        let mut offset = 0u64;
        for (index, chunk) in image.chunks.iter().enumerate() {
            let at = format!("image '{}' chunk {index}", image.name);
            if chunk.offset != offset {
                return bad(format!(
                    "{at} starts at {} instead of {offset}",
                    chunk.offset
                ));
            }
            if chunk.payload_offset != payload_offset {
                return bad(format!(
                    "{at} is at payload offset {} instead of {payload_offset}",
                    chunk.payload_offset
                ));
            }
            if chunk.size == 0 || chunk.size > self.chunk_size {
                return bad(format!(
                    "{at} has size {} (1..={} allowed)",
                    chunk.size, self.chunk_size
                ));
            }
            if chunk.stored_size == 0
                || u64::from(chunk.stored_size) > zstd_compress_bound(u64::from(chunk.size))
            {
                return bad(format!(
                    "{at} has impossible compressed size {}",
                    chunk.stored_size
                ));
            }
            offset = offset
                .checked_add(u64::from(chunk.size))
                .ok_or_else(overflow)?;
            payload_offset = payload_offset
                .checked_add(u64::from(chunk.stored_size))
                .ok_or_else(overflow)?;
        }
        if offset != image.size {
            return bad(format!(
                "chunks of image '{}' cover {offset} bytes, the image has {}",
                image.name, image.size
            ));
        }
        Ok(payload_offset)
    }
}

fn overflow() -> BundleError {
    BundleError::Corrupt("manifest: payload offsets overflow".into())
}

/// A `Corrupt` manifest error.
fn bad<T>(msg: String) -> Result<T, BundleError> {
    Err(BundleError::Corrupt(format!("manifest: {msg}")))
}

/// A delta image: no chunks, its op list at `payload_offset` with possible sizes, operations
/// unless the image is empty. Returns the payload offset after the image's op list and data.
fn validate_delta_image(
    image: &ImageManifest,
    ops: &DeltaOps,
    base_size: u64,
    payload_offset: u64,
) -> Result<u64, BundleError> {
    if !image.chunks.is_empty() {
        return bad(format!("delta image '{}' has chunks", image.name));
    }
    if ops.payload_offset != payload_offset {
        return bad(format!(
            "op list of image '{}' is at payload offset {} instead of {payload_offset}",
            image.name, ops.payload_offset
        ));
    }
    if ops.stored_size == 0
        || ops.stored_size > crate::delta::MAX_OPS_STORED
        || u64::from(ops.stored_size) > zstd_compress_bound(DeltaOps::max_decoded_len(ops.count))
    {
        return bad(format!(
            "op list of image '{}' is {} bytes compressed (1..={} allowed)",
            image.name,
            ops.stored_size,
            crate::delta::MAX_OPS_STORED
        ));
    }
    // Every operation writes at least one byte: the count is bounded by the image size
    // before a byte of the list is read.
    if ops.count > crate::delta::MAX_OPS as u64
        || ops.count > image.size
        || (ops.count == 0) != (image.size == 0)
    {
        return bad(format!(
            "delta image '{}' of {} bytes declares {} operations (1 per byte at most, {} in all)",
            image.name,
            image.size,
            ops.count,
            crate::delta::MAX_OPS
        ));
    }
    let max_data = ops.count.saturating_mul(crate::delta::max_stored(
        true,
        crate::delta::MAX_DATA_OP_LEN,
    ));
    if ops.data_size > max_data {
        return bad(format!(
            "delta image '{}' declares {} bytes of operation data for {} operations",
            image.name, ops.data_size, ops.count
        ));
    }
    if base_size > MAX_IMAGE_SIZE {
        return bad(format!(
            "delta image '{}' has a base of {base_size} bytes, more than {MAX_IMAGE_SIZE}",
            image.name
        ));
    }
    payload_offset
        .checked_add(u64::from(ops.stored_size))
        .and_then(|p| p.checked_add(ops.data_size))
        .ok_or_else(overflow)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Manifest {
        Manifest {
            format: FORMAT_VERSION,
            product: "acme-router".into(),
            version: semver::Version::new(1, 2, 3),
            created: 0,
            compression: "zstd".into(),
            chunk_size: 4096,
            payload_size: 30,
            provenance: None,
            images: vec![ImageManifest {
                name: "rootfs".into(),
                size: 5000,
                sha256: Sha256Digest::of(b"x"),
                payload: PayloadKind::Full,
                chunks: vec![
                    Chunk {
                        offset: 0,
                        size: 4096,
                        payload_offset: 0,
                        stored_size: 20,
                        sha256: Sha256Digest::of(b"a"),
                    },
                    Chunk {
                        offset: 4096,
                        size: 904,
                        payload_offset: 20,
                        stored_size: 10,
                        sha256: Sha256Digest::of(b"b"),
                    },
                ],
            }],
        }
    }

    #[test]
    fn bytes_round_trip() {
        let m = sample();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn gaps_and_overlaps_are_refused() {
        let mut m = sample();
        m.images[0].chunks[1].offset = 4095;
        assert!(Manifest::parse(&m.to_bytes()).is_err());
        let mut m = sample();
        m.payload_size = 31;
        assert!(Manifest::parse(&m.to_bytes()).is_err());
        let mut m = sample();
        m.images[0].size = 5001;
        assert!(Manifest::parse(&m.to_bytes()).is_err());
    }

    #[test]
    fn unknown_fields_and_inconsistent_delta_are_refused() {
        let text = String::from_utf8(sample().to_bytes()).unwrap();
        let extra = text.replacen("{\"format\"", "{\"surprise\":1,\"format\"", 1);
        assert!(Manifest::parse(extra.as_bytes()).is_err());
        // A delta image must not carry chunks, and its payload must add up.
        let mut m = sample();
        m.images[0].payload = PayloadKind::Delta {
            base_sha256: Sha256Digest::of(b"base"),
            base_size: 100,
            ops: DeltaOps {
                count: 1,
                payload_offset: 0,
                stored_size: 10,
                sha256: Sha256Digest::of(b"ops"),
                data_size: 20,
            },
        };
        assert!(Manifest::parse(&m.to_bytes()).is_err());
        m.images[0].chunks.clear();
        assert!(Manifest::parse(&m.to_bytes()).is_ok());
        m.payload_size = 31;
        assert!(Manifest::parse(&m.to_bytes()).is_err());
    }

    #[test]
    fn image_names() {
        assert!(is_valid_image_name("rootfs"));
        assert!(is_valid_image_name("boot.vfat"));
        assert!(!is_valid_image_name("Rootfs"));
        assert!(!is_valid_image_name("../x"));
        assert!(!is_valid_image_name(""));
    }
}
