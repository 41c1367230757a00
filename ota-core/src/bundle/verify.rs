//! Reading bundles as a stream: header → manifest bytes → signatures verified over those exact
//! bytes → manifest parsed → every chunk hashed before it is decompressed → every image hashed
//! before its sink is told it is complete.
//!
//! Decompression and image hashing run on two threads joined by a bounded channel, so memory
//! stays at a few chunks whatever the image size.

use super::manifest::{ImageManifest, Manifest};
use super::sink::ImageSink;
use super::{BundleError, Header, HEADER_LEN, SIGNATURE_ENTRY_LEN};
use crate::digest::Sha256Digest;
use crate::keys::{KeyId, Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::io::{self, Read};
use std::sync::mpsc;

/// Which keys a reader trusts and how many of them must have signed.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    keys: Vec<VerifyingKey>,
    threshold: usize,
}

impl TrustPolicy {
    /// Trusts `keys` (duplicates count once) and requires `threshold` of them.
    pub fn new(keys: Vec<VerifyingKey>, threshold: usize) -> Result<Self, BundleError> {
        let mut distinct: Vec<VerifyingKey> = Vec::new();
        for key in keys {
            if !distinct.iter().any(|k| k.key_id() == key.key_id()) {
                distinct.push(key);
            }
        }
        if threshold == 0 || threshold > distinct.len() {
            return Err(BundleError::InvalidInput(format!(
                "threshold {threshold} cannot be met by {} distinct trusted key(s)",
                distinct.len()
            )));
        }
        Ok(Self {
            keys: distinct,
            threshold,
        })
    }

    /// Returns the distinct trusted keys whose signature over `message` verifies.
    fn check(
        &self,
        message: &[u8],
        signatures: &[(KeyId, Signature)],
    ) -> Result<Vec<KeyId>, BundleError> {
        let mut valid = BTreeSet::new();
        for (id, signature) in signatures {
            if let Some(key) = self.keys.iter().find(|k| k.key_id() == *id) {
                if key.verifies(message, signature) {
                    valid.insert(*id);
                }
            }
        }
        if valid.len() < self.threshold {
            return Err(BundleError::ThresholdNotMet {
                valid: valid.len(),
                required: self.threshold,
                present: signatures.len(),
            });
        }
        Ok(valid.into_iter().collect())
    }
}

/// Header, manifest bytes and signatures, read but not yet trusted.
struct SignedHead {
    manifest_bytes: Vec<u8>,
    signatures: Vec<(KeyId, Signature)>,
}

fn read_exact_or_truncated<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    what: &'static str,
) -> Result<(), BundleError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => BundleError::Truncated { what },
        _ => BundleError::Io(e),
    })
}

fn read_head<R: Read>(reader: &mut R) -> Result<SignedHead, BundleError> {
    let mut header_bytes = [0u8; HEADER_LEN];
    read_exact_or_truncated(reader, &mut header_bytes, "header")?;
    let header = Header::decode(&header_bytes)?;
    let mut manifest_bytes = vec![0u8; header.manifest_len as usize];
    read_exact_or_truncated(reader, &mut manifest_bytes, "manifest")?;
    let mut block = vec![0u8; header.signature_block_len as usize];
    read_exact_or_truncated(reader, &mut block, "signature block")?;
    let count = u32::from_le_bytes([block[0], block[1], block[2], block[3]]) as usize;
    let entries = &block[4..];
    if entries.len() != count * SIGNATURE_ENTRY_LEN {
        return Err(BundleError::Corrupt(format!(
            "signature block holds {} bytes of entries but declares {count} signature(s)",
            entries.len()
        )));
    }
    let signatures = entries
        .chunks_exact(SIGNATURE_ENTRY_LEN)
        .map(|entry| {
            let mut id = [0u8; 32];
            id.copy_from_slice(&entry[..32]);
            let mut sig = [0u8; 64];
            sig.copy_from_slice(&entry[32..]);
            (KeyId(Sha256Digest(id)), Signature::from_bytes(&sig))
        })
        .collect();
    Ok(SignedHead {
        manifest_bytes,
        signatures,
    })
}

/// Reads the manifest without checking any signature, for display only (`ota-sign inspect`).
/// Returns it with the key ids that claim to have signed it.
pub fn read_unverified<R: Read>(mut reader: R) -> Result<(Manifest, Vec<KeyId>), BundleError> {
    let head = read_head(&mut reader)?;
    let manifest = Manifest::parse(&head.manifest_bytes)?;
    Ok((
        manifest,
        head.signatures.into_iter().map(|(id, _)| id).collect(),
    ))
}

/// A bundle whose manifest signatures verified; its payload is read by
/// [`BundleReader::stream_payload`].
pub struct BundleReader<R> {
    reader: R,
    manifest: Manifest,
    signed_by: Vec<KeyId>,
}

impl<R: Read> BundleReader<R> {
    /// Reads the header, manifest and signatures, and verifies the signatures against `trust`
    /// before the manifest is parsed. No payload byte is read.
    pub fn open(mut reader: R, trust: &TrustPolicy) -> Result<Self, BundleError> {
        let head = read_head(&mut reader)?;
        let signed_by = trust.check(&head.manifest_bytes, &head.signatures)?;
        let manifest = Manifest::parse(&head.manifest_bytes)?;
        Ok(Self {
            reader,
            manifest,
            signed_by,
        })
    }

    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The trusted keys whose signatures verified.
    pub fn signed_by(&self) -> &[KeyId] {
        &self.signed_by
    }

    /// Reads the whole payload, verifying each chunk's hash before decompressing it and each
    /// image's hash before calling its sink's `finish`. `sink_for` gives the sink of each image
    /// as it starts; `progress` gets the payload bytes consumed since its last call. Fails on
    /// trailing bytes after the payload.
    pub fn stream_payload<F>(
        mut self,
        mut sink_for: F,
        progress: &dyn Fn(u64),
    ) -> Result<(), BundleError>
    where
        F: FnMut(&ImageManifest) -> io::Result<Box<dyn ImageSink + Send>>,
    {
        // One chunk queued is enough to overlap decompression with hashing and writing; each
        // more would cost a chunk of memory.
        let (tx, rx) = mpsc::sync_channel::<Piece>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || write_images(rx));
            let read_result = self.read_chunks(&tx, &mut sink_for, progress);
            drop(tx);
            let write_result = writer.join().unwrap_or_else(|_| {
                Err(BundleError::Io(io::Error::other(
                    "image writer thread panicked",
                )))
            });
            // The writer's error explains a failed send, so it wins when both failed.
            write_result.and(read_result)
        })
    }

    fn read_chunks<F>(
        &mut self,
        tx: &mpsc::SyncSender<Piece>,
        sink_for: &mut F,
        progress: &dyn Fn(u64),
    ) -> Result<(), BundleError>
    where
        F: FnMut(&ImageManifest) -> io::Result<Box<dyn ImageSink + Send>>,
    {
        let hung_up = || BundleError::Io(io::Error::other("image writer stopped"));
        let mut decompressor = zstd::bulk::Decompressor::new()?;
        for image in &self.manifest.images {
            let sink = sink_for(image).map_err(|source| BundleError::Sink {
                image: image.name.clone(),
                source,
            })?;
            tx.send(Piece::Begin {
                name: image.name.clone(),
                expected: image.sha256,
                sink,
            })
            .map_err(|_| hung_up())?;
            for (index, chunk) in image.chunks.iter().enumerate() {
                let mut stored = vec![0u8; chunk.stored_size as usize];
                read_exact_or_truncated(&mut self.reader, &mut stored, "payload")?;
                // The chunk hash is checked before the decompressor sees a byte.
                if Sha256Digest::of(&stored) != chunk.sha256 {
                    return Err(BundleError::ChunkHashMismatch {
                        image: image.name.clone(),
                        index,
                        payload_offset: chunk.payload_offset,
                    });
                }
                let data = decompressor
                    .decompress(&stored, chunk.size as usize)
                    .map_err(|e| {
                        BundleError::Corrupt(format!(
                            "chunk {index} of image '{}' does not decompress: {e}",
                            image.name
                        ))
                    })?;
                if data.len() != chunk.size as usize {
                    return Err(BundleError::Corrupt(format!(
                        "chunk {index} of image '{}' decompresses to {} bytes, the manifest says {}",
                        image.name,
                        data.len(),
                        chunk.size
                    )));
                }
                tx.send(Piece::Data(data)).map_err(|_| hung_up())?;
                progress(u64::from(chunk.stored_size));
            }
            tx.send(Piece::End).map_err(|_| hung_up())?;
        }
        let mut probe = [0u8; 1];
        match self.reader.read(&mut probe) {
            Ok(0) => Ok(()),
            Ok(_) => Err(BundleError::Corrupt(
                "unexpected bytes after the payload".into(),
            )),
            Err(e) => Err(BundleError::Io(e)),
        }
    }
}

enum Piece {
    Begin {
        name: String,
        expected: Sha256Digest,
        sink: Box<dyn ImageSink + Send>,
    },
    Data(Vec<u8>),
    End,
}

/// The writer side: hashes each image as it is written and finishes its sink only on a match.
fn write_images(rx: mpsc::Receiver<Piece>) -> Result<(), BundleError> {
    let mut current: Option<(String, Sha256Digest, Box<dyn ImageSink + Send>, Sha256)> = None;
    for piece in rx {
        match piece {
            Piece::Begin {
                name,
                expected,
                sink,
            } => current = Some((name, expected, sink, Sha256::new())),
            Piece::Data(data) => {
                let (name, _, sink, hasher) = current.as_mut().ok_or_else(|| {
                    BundleError::Io(io::Error::other("image data before image start"))
                })?;
                hasher.update(&data);
                sink.write_piece(&data)
                    .map_err(|source| BundleError::Sink {
                        image: name.clone(),
                        source,
                    })?;
            }
            Piece::End => {
                let (name, expected, sink, hasher) = current.take().ok_or_else(|| {
                    BundleError::Io(io::Error::other("image end before image start"))
                })?;
                let actual = Sha256Digest::from_hasher(hasher);
                if actual != expected {
                    return Err(BundleError::ImageHashMismatch {
                        image: name,
                        expected: expected.to_hex(),
                        actual: actual.to_hex(),
                    });
                }
                sink.finish().map_err(|source| BundleError::Sink {
                    image: name,
                    source,
                })?;
            }
        }
    }
    Ok(())
}
