//! Building bundles: chunk, compress in parallel, hash, sign, lay out.
//!
//! The payload is spooled to a caller-provided file while the manifest is built, because the
//! manifest (with every chunk's hash and size) must precede the payload in the bundle.

use super::manifest::{
    is_valid_image_name, is_valid_product, Chunk, DeltaOps, ImageManifest, Manifest, PayloadKind,
};
use super::{BundleError, Header, FORMAT_VERSION, MAX_CHUNK_SIZE, MAX_SIGNATURES, MIN_CHUNK_SIZE};
use crate::digest::Sha256Digest;
use crate::keys::SigningKey;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Options that shape a bundle. Same options, inputs and keys give the same bytes.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Product (compatible) string.
    pub product: String,
    /// Release version.
    pub version: semver::Version,
    /// Creation time, seconds since the Unix epoch.
    pub created: u64,
    /// Uncompressed chunk size.
    pub chunk_size: u32,
    /// zstd compression level (1..=22).
    pub zstd_level: i32,
    /// Where delta generation may put temporary files (the output's directory is a good
    /// choice: it has room for the bundle).
    pub temp_dir: std::path::PathBuf,
    /// Build provenance to bind to the release: its record goes in the signed manifest, and
    /// every image must be one of its subjects.
    pub provenance: Option<crate::provenance::ProvenanceDocument>,
    /// Delta operations a delta may use ([`crate::delta::DELTA_FORMAT_LATEST`]; 1 for fleets
    /// whose updaters predate the `gzip` operation).
    pub delta_format: u8,
    /// Re-create changed xz streams (squashfs-xz blocks) from their content: `xz` operations,
    /// delta format 5, much smaller deltas for ~50 × the apply time (docs/delta.md).
    pub xz_content: bool,
}

/// Anything an image can be read from: read to the end, and rewound when a delta is compared
/// with the full image.
pub trait ImageSource: Read + Seek + Send {}
impl<T: Read + Seek + Send> ImageSource for T {}

/// One image to put in the bundle.
pub struct ImageInput {
    /// Image name (`rootfs`, `kernel`, ...).
    pub name: String,
    /// Where its bytes come from.
    pub reader: Box<dyn ImageSource>,
    /// For a delta payload: the exact base image the device will have (read with `pread`).
    pub base: Option<std::fs::File>,
}

/// Builds a signed bundle into `out`, spooling the payload through `spool` (an empty, readable
/// and writable file, such as an anonymous temporary file). `progress` is called with the number
/// of image bytes processed since its last call. Returns the manifest written.
pub fn build_bundle<S, W>(
    options: &BuildOptions,
    images: Vec<ImageInput>,
    keys: &[SigningKey],
    spool: &mut S,
    out: &mut W,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<Manifest, BundleError>
where
    S: Read + Write + Seek,
    W: Write,
{
    check_options(options, &images, keys)?;
    let mut payload_offset = 0u64;
    let mut manifests = Vec::with_capacity(images.len());
    for mut image in images {
        let manifest = match image.base.take() {
            Some(base) => delta_image(
                options,
                &mut image,
                &base,
                &mut payload_offset,
                spool,
                progress,
            )?,
            None => compress_image(options, &mut image, &mut payload_offset, spool, progress)?,
        };
        manifests.push(manifest);
    }
    let manifests_for_check: Vec<(String, crate::digest::Sha256Digest)> = manifests
        .iter()
        .map(|m| (m.name.clone(), m.sha256))
        .collect();
    let manifest = Manifest {
        format: FORMAT_VERSION,
        product: options.product.clone(),
        version: options.version.clone(),
        created: options.created,
        compression: "zstd".into(),
        chunk_size: options.chunk_size,
        payload_size: payload_offset,
        images: manifests,
        provenance: attested_by(options.provenance.as_ref(), &manifests_for_check)?,
    };
    let manifest_bytes = manifest.to_bytes();
    manifest.validate()?;
    let signature_block = sign_manifest(&manifest_bytes, keys)?;
    let header = Header {
        manifest_len: len_u32(manifest_bytes.len(), "manifest")?,
        signature_block_len: len_u32(signature_block.len(), "signature block")?,
    };
    out.write_all(&header.encode())?;
    out.write_all(&manifest_bytes)?;
    out.write_all(&signature_block)?;
    spool.seek(SeekFrom::Start(0))?;
    let copied = io::copy(&mut Read::by_ref(spool).take(payload_offset), out)?;
    if copied != payload_offset {
        return Err(BundleError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "payload spool file shrank while building",
        )));
    }
    out.flush()?;
    Ok(manifest)
}

fn check_options(
    options: &BuildOptions,
    images: &[ImageInput],
    keys: &[SigningKey],
) -> Result<(), BundleError> {
    let invalid = |m: String| Err(BundleError::InvalidInput(m));
    if !is_valid_product(&options.product) {
        return invalid(format!(
            "invalid product {:?}: use 1 to 128 printable ASCII characters without spaces",
            options.product
        ));
    }
    if !(MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&options.chunk_size) {
        return invalid(format!(
            "chunk size {} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE} bytes",
            options.chunk_size
        ));
    }
    if !(1..=22).contains(&options.zstd_level) {
        return invalid(format!(
            "zstd level {} is outside 1..=22",
            options.zstd_level
        ));
    }
    if images.is_empty() {
        return invalid("no image given: add at least one --image NAME=PATH".into());
    }
    for image in images {
        if !is_valid_image_name(&image.name) {
            return invalid(format!(
                "invalid image name {:?}: use lowercase letters, digits, '.', '_' or '-' (at most 64)",
                image.name
            ));
        }
    }
    if keys.is_empty() {
        return invalid("no signing key given: pass --key KEY or set OTA_SIGNING_KEY".into());
    }
    if keys.len() > MAX_SIGNATURES as usize {
        return invalid(format!("at most {MAX_SIGNATURES} signing keys"));
    }
    Ok(())
}

fn len_u32(len: usize, what: &str) -> Result<u32, BundleError> {
    u32::try_from(len)
        .map_err(|_| BundleError::InvalidInput(format!("{what} too large ({len} bytes)")))
}

/// Reads one image to its end in batches of chunks, compressing each batch on all cores while
/// hashing the batch on this thread, and appends the compressed chunks to the spool.
fn compress_image<S: Write>(
    options: &BuildOptions,
    image: &mut ImageInput,
    payload_offset: &mut u64,
    spool: &mut S,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImageManifest, BundleError> {
    let chunk_size = options.chunk_size as usize;
    // Enough chunks in flight to keep every core busy, few enough to bound memory.
    let batch_len = (rayon::current_num_threads() * 4).max(4);
    let mut hasher = Sha256::new();
    let mut chunks = Vec::new();
    let mut image_offset = 0u64;
    loop {
        let mut batch = Vec::with_capacity(batch_len);
        let mut at_end = false;
        while batch.len() < batch_len {
            let buf = read_up_to(&mut image.reader, chunk_size)?;
            at_end = buf.len() < chunk_size;
            if !buf.is_empty() {
                batch.push(buf);
            }
            if at_end {
                break;
            }
        }
        let level = options.zstd_level;
        let (compressed, ()) = rayon::join(
            || {
                batch
                    .par_iter()
                    .map(|data| compress_chunk(data, level))
                    .collect::<Result<Vec<_>, _>>()
            },
            || batch.iter().for_each(|data| hasher.update(data)),
        );
        let compressed = compressed?;
        for (data, stored) in batch.iter().zip(&compressed) {
            spool.write_all(stored)?;
            let stored_size = u32::try_from(stored.len())
                .map_err(|_| BundleError::InvalidInput("compressed chunk over 4 GiB".into()))?;
            chunks.push(Chunk {
                offset: image_offset,
                size: data.len() as u32,
                payload_offset: *payload_offset,
                stored_size,
                sha256: Sha256Digest::of(stored),
            });
            image_offset += data.len() as u64;
            *payload_offset += stored.len() as u64;
            progress(data.len() as u64);
        }
        if at_end {
            break;
        }
    }
    Ok(ImageManifest {
        name: image.name.clone(),
        size: image_offset,
        sha256: Sha256Digest::from_hasher(hasher),
        payload: PayloadKind::Full,
        chunks,
    })
}

thread_local! {
    /// One zstd context per worker thread, reused across chunks: setting a context up costs
    /// more than compressing a small or incompressible chunk.
    static COMPRESSOR: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn compress_chunk(data: &[u8], level: i32) -> io::Result<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let compressor = match &mut *slot {
            Some((l, c)) if *l == level => c,
            _ => &mut slot.insert((level, zstd::bulk::Compressor::new(level)?)).1,
        };
        compressor.compress(data)
    })
}

/// A delta payload for one image, or the full image when that is smaller (per-image fallback;
/// per-extent fallback happens inside the generator).
fn delta_image<S: Read + Write + Seek>(
    options: &BuildOptions,
    image: &mut ImageInput,
    base: &std::fs::File,
    payload_offset: &mut u64,
    spool: &mut S,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<ImageManifest, BundleError> {
    let mut data = tempfile::tempfile_in(&options.temp_dir)?;
    let delta = {
        let mut writer = io::BufWriter::with_capacity(1 << 20, &mut data);
        let delta = crate::delta::generate::generate(
            base,
            &mut image.reader,
            crate::delta::generate::DeltaOptions {
                zstd_level: options.zstd_level,
                delta_format: options.delta_format,
                xz_content: options.xz_content,
            },
            &mut writer,
            progress,
        )?;
        writer.flush()?;
        delta
    };
    let delta_len = delta.ops_blob.len() as u64 + delta.data_size;
    // Readers refuse op lists over MAX_OPS_STORED (bounded memory): such a delta (over a
    // million scattered operations) is replaced by the full image.
    let list_fits = delta.ops_blob.len() as u64 <= u64::from(crate::delta::MAX_OPS_STORED)
        && delta.ops.len() <= crate::delta::MAX_OPS;
    // Compressed or encrypted images share nothing with their base; when the delta saves
    // little, compare with the full payload and keep the smaller.
    if !list_fits || delta_len > delta.target_size / 2 {
        let start = *payload_offset;
        image.reader.seek(SeekFrom::Start(0))?;
        let full = compress_image(options, image, payload_offset, spool, progress)?;
        if !list_fits || *payload_offset - start <= delta_len {
            return Ok(full);
        }
        spool.seek(SeekFrom::Start(start))?;
        *payload_offset = start;
    }
    let ops = DeltaOps {
        count: delta.ops.len() as u64,
        payload_offset: *payload_offset,
        stored_size: u32::try_from(delta.ops_blob.len())
            .map_err(|_| BundleError::InvalidInput("op list over 4 GiB".into()))?,
        sha256: Sha256Digest::of(&delta.ops_blob),
        data_size: delta.data_size,
    };
    spool.write_all(&delta.ops_blob)?;
    data.seek(SeekFrom::Start(0))?;
    let copied = io::copy(&mut Read::by_ref(&mut data).take(delta.data_size), spool)?;
    if copied != delta.data_size {
        return Err(BundleError::Io(io::Error::other(
            "delta data spool shrank while building",
        )));
    }
    *payload_offset += delta_len;
    Ok(ImageManifest {
        name: image.name.clone(),
        size: delta.target_size,
        sha256: delta.target_sha256,
        payload: PayloadKind::Delta {
            base_sha256: delta.base_sha256,
            base_size: delta.base_size,
            ops,
        },
        chunks: Vec::new(),
    })
}

/// The provenance record for the manifest, once every image (name, SHA-256) is one of the
/// document's subjects.
fn attested_by(
    document: Option<&crate::provenance::ProvenanceDocument>,
    images: &[(String, crate::digest::Sha256Digest)],
) -> Result<Option<crate::provenance::Provenance>, BundleError> {
    let Some(document) = document else {
        return Ok(None);
    };
    document
        .require_subjects(images.iter().map(|(name, sha256)| (name.as_str(), sha256)))
        .map_err(|e| BundleError::InvalidInput(e.to_string()))?;
    Ok(Some(document.record.clone()))
}

/// Reads until `limit` bytes or end of input.
fn read_up_to(reader: &mut dyn Read, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(limit);
    reader.take(limit as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The signature block: count, then (key id, signature) sorted by key id, one per distinct key.
fn sign_manifest(manifest_bytes: &[u8], keys: &[SigningKey]) -> Result<Vec<u8>, BundleError> {
    let mut entries = Vec::with_capacity(keys.len());
    for key in keys {
        entries.push((key.verifying_key().key_id(), key.sign(manifest_bytes)?));
    }
    entries.sort_by_key(|(id, _)| *id);
    entries.dedup_by_key(|(id, _)| *id);
    let mut block = Vec::with_capacity(4 + entries.len() * super::SIGNATURE_ENTRY_LEN);
    block.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for (id, signature) in entries {
        block.extend_from_slice(&id.0 .0);
        block.extend_from_slice(&signature.to_bytes());
    }
    Ok(block)
}
