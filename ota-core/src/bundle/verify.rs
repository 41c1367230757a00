//! Reading bundles as a stream: header → manifest bytes → signatures verified over those exact
//! bytes → manifest parsed → every chunk hashed before it is decompressed → every image hashed
//! before its sink is told it is complete.
//!
//! Decompression and image hashing run on two threads joined by a bounded channel, so memory
//! stays at a few chunks whatever the image size.

use super::manifest::{DeltaOps, ImageManifest, Manifest, PayloadKind};
use super::resume::{Checkpoint, CheckpointTimer, Resume, ResumePoint};
use super::sink::ImageSink;
use super::{BundleError, Header, HEADER_LEN, OVERLAP_CHUNK_LIMIT, SIGNATURE_ENTRY_LEN};
use crate::delta::apply::{apply_op, ApplyError, BaseRead};
use crate::delta::{open_compressed, Op, OpDecoder, OpLimits, OpListError};
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

/// What to do with one image of the bundle while streaming its payload.
pub enum ImageAction {
    /// Read past it without checking (an alternative not meant for this device, such as a
    /// delta from another base).
    Skip,
    /// Check every hash that can be checked without writing. A full image is decompressed and
    /// its image hash checked; for a delta only the op list and operation data hashes can be,
    /// since applying needs the base.
    Check,
    /// Write the image into `sink`; a delta is applied against `base`, whose hash is checked
    /// against the manifest before the first byte is written.
    Write {
        /// Where the image goes.
        sink: Box<dyn ImageSink + Send>,
        /// The base of a delta image (ignored for full images).
        base: Option<Box<dyn BaseRead>>,
    },
}

/// Moves a bundle source forward by `n` bytes without using them (a file seeks, a download
/// asks for a range; any reader can read and discard).
pub type SkipFn<'a, R> = dyn FnMut(&mut R, u64) -> io::Result<()> + 'a;

/// Skips by reading and discarding: for sources that cannot seek.
pub fn skip_by_reading<R: Read>(reader: &mut R, n: u64) -> io::Result<()> {
    let skipped = io::copy(&mut Read::by_ref(reader).take(n), &mut io::sink())?;
    if skipped != n {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the bundle ends inside its payload",
        ));
    }
    Ok(())
}

/// A bundle whose manifest signatures verified; its payload is read by
/// [`BundleReader::stream_payload`].
pub struct BundleReader<R> {
    reader: R,
    manifest: Manifest,
    signed_by: Vec<KeyId>,
    /// SHA-256 of the signed manifest bytes: the bundle's identity for a resume.
    manifest_sha256: Sha256Digest,
    /// Bytes before the payload (header, manifest, signature block).
    head_len: u64,
    /// Payload bytes consumed so far.
    payload_pos: u64,
}

impl<R: Read> BundleReader<R> {
    /// Reads the header, manifest and signatures, and verifies the signatures against `trust`
    /// before the manifest is parsed. No payload byte is read.
    pub fn open(mut reader: R, trust: &TrustPolicy) -> Result<Self, BundleError> {
        let head = read_head(&mut reader)?;
        let signed_by = trust.check(&head.manifest_bytes, &head.signatures)?;
        let manifest = Manifest::parse(&head.manifest_bytes)?;
        let head_len = (HEADER_LEN + head.manifest_bytes.len()) as u64
            + (4 + head.signatures.len() * SIGNATURE_ENTRY_LEN) as u64;
        Ok(Self {
            reader,
            manifest,
            signed_by,
            manifest_sha256: Sha256Digest::of(&head.manifest_bytes),
            head_len,
            payload_pos: 0,
        })
    }

    /// SHA-256 of the signed manifest bytes: two bundles with the same value carry the same
    /// payload (every payload byte is hash-chained to the manifest).
    pub fn manifest_sha256(&self) -> Sha256Digest {
        self.manifest_sha256
    }

    /// Bytes before the payload: where payload offset 0 is in the bundle.
    pub fn head_len(&self) -> u64 {
        self.head_len
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
    /// image's hash before calling its sink's `finish`. `action_for` says, per image (by index
    /// in the manifest), what to do with it; `progress` gets the payload bytes consumed since its
    /// last call. Fails on trailing bytes after the payload.
    pub fn stream_payload<F>(self, action_for: F, progress: &dyn Fn(u64)) -> Result<(), BundleError>
    where
        F: FnMut(usize, &ImageManifest) -> io::Result<ImageAction>,
    {
        self.stream_payload_from(None, action_for, progress, &mut skip_by_reading)
    }

    /// [`BundleReader::stream_payload`], continuing at `resume` when given: the images before
    /// `resume.point.image` are skipped (the caller has checked they are in place), the image
    /// at it continues where the point says (its action must be [`ImageAction::Write`], its
    /// sink positioned at `resume.point.image_offset`). `skip` moves the source forward.
    /// Sinks with [`ImageSink::checkpoint_every`] get checkpoints as they are written.
    pub fn stream_payload_from<F>(
        mut self,
        resume: Option<Resume>,
        mut action_for: F,
        progress: &dyn Fn(u64),
        skip: &mut SkipFn<'_, R>,
    ) -> Result<(), BundleError>
    where
        F: FnMut(usize, &ImageManifest) -> io::Result<ImageAction>,
    {
        // One chunk queued is enough to overlap decompression with hashing and writing; each
        // more would cost a chunk of memory.
        let (tx, rx) = mpsc::sync_channel::<Piece>(1);
        std::thread::scope(|scope| {
            let writer = scope.spawn(move || write_images(rx));
            let mut ctx = PayloadContext {
                tx: &tx,
                progress,
                skip,
                resume,
            };
            let read_result = self.read_payload(&mut ctx, &mut action_for);
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

    fn read_payload<F>(
        &mut self,
        ctx: &mut PayloadContext<'_, '_, R>,
        action_for: &mut F,
    ) -> Result<(), BundleError>
    where
        F: FnMut(usize, &ImageManifest) -> io::Result<ImageAction>,
    {
        // The reader is consumed by `stream_payload`: the images can be taken, not copied.
        let images = std::mem::take(&mut self.manifest.images);
        let resume_image = ctx.resume.as_ref().map(|r| r.point.image);
        if resume_image.is_some_and(|i| i >= images.len()) {
            return Err(resume_mismatch(
                "it names an image the bundle does not have",
            ));
        }
        for (index, image) in images.iter().enumerate() {
            if resume_image.is_some_and(|at| index < at) {
                // Written before the interruption; the caller checked it is in place.
                self.skip_payload(ctx, image.payload_len())?;
                continue;
            }
            let resume = if Some(index) == resume_image {
                ctx.resume.take()
            } else {
                None
            };
            let action = action_for(index, image).map_err(|source| BundleError::Sink {
                image: image.name.clone(),
                source,
            })?;
            let (sink, base) = match action {
                ImageAction::Skip if resume.is_none() => {
                    let len = image.payload_len();
                    self.skip_payload(ctx, len)?;
                    (ctx.progress)(len);
                    continue;
                }
                ImageAction::Write { sink, base } => (Some(sink), base),
                ImageAction::Check if resume.is_none() => (None, None),
                _ => return Err(resume_mismatch("the image it names is not being written")),
            };
            let written = WrittenImage {
                index,
                image,
                resume,
            };
            match &image.payload {
                PayloadKind::Full => {
                    let sink = sink.unwrap_or_else(|| Box::new(super::sink::DiscardSink));
                    self.read_full_image(&written, sink, ctx)?;
                }
                PayloadKind::Delta {
                    base_sha256,
                    base_size,
                    ops,
                } => {
                    if sink.is_some() && base.is_none() {
                        return Err(BundleError::InvalidInput(format!(
                            "image '{}' is a delta: it needs its base image to be written",
                            image.name
                        )));
                    }
                    let target = match (sink, base) {
                        (Some(sink), Some(base)) => Some((sink, base)),
                        _ => None,
                    };
                    let delta = DeltaRef {
                        base_sha256,
                        base_size: *base_size,
                        ops,
                    };
                    self.read_delta_image(&written, &delta, target, ctx)?;
                }
            }
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

    /// Moves past `n` payload bytes without reading them.
    fn skip_payload(
        &mut self,
        ctx: &mut PayloadContext<'_, '_, R>,
        n: u64,
    ) -> Result<(), BundleError> {
        (ctx.skip)(&mut self.reader, n).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => BundleError::Truncated { what: "payload" },
            _ => BundleError::Io(e),
        })?;
        self.payload_pos += n;
        Ok(())
    }

    /// Reads `len` payload bytes and checks them against `expected` before anyone uses them.
    fn read_verified(
        &mut self,
        len: usize,
        expected: &Sha256Digest,
        what: impl FnOnce() -> BundleError,
    ) -> Result<Vec<u8>, BundleError> {
        let mut stored = vec![0u8; len];
        read_exact_or_truncated(&mut self.reader, &mut stored, "payload")?;
        self.payload_pos += len as u64;
        if Sha256Digest::of(&stored) != *expected {
            return Err(what());
        }
        Ok(stored)
    }

    /// The first chunk to read: 0, or the one a resume point names (checked against the
    /// manifest), skipping the payload of those before it.
    fn full_image_start(
        &mut self,
        written: &WrittenImage<'_>,
        ctx: &mut PayloadContext<'_, '_, R>,
    ) -> Result<usize, BundleError> {
        let Some(resume) = &written.resume else {
            return Ok(0);
        };
        let point = resume.point;
        let chunk = usize::try_from(point.unit)
            .ok()
            .and_then(|unit| written.image.chunks.get(unit).map(|c| (unit, c)));
        let Some((unit, chunk)) = chunk.filter(|(_, c)| {
            point.within == 0
                && c.offset == point.image_offset
                && c.payload_offset == point.payload_offset
        }) else {
            return Err(resume_mismatch("it is not a chunk boundary of the image"));
        };
        let skip = chunk
            .payload_offset
            .checked_sub(self.payload_pos)
            .ok_or_else(|| resume_mismatch("it lies before the image"))?;
        self.skip_payload(ctx, skip)?;
        Ok(unit)
    }

    fn read_full_image(
        &mut self,
        written: &WrittenImage<'_>,
        sink: Box<dyn ImageSink + Send>,
        ctx: &mut PayloadContext<'_, '_, R>,
    ) -> Result<(), BundleError> {
        let image = written.image;
        let hung_up = || BundleError::Io(io::Error::other("image writer stopped"));
        let first = self.full_image_start(written, ctx)?;
        let mut decompressor = zstd::bulk::Decompressor::new()?;
        let mut timer = CheckpointTimer::new(sink.checkpoint_every());
        begin_image(ctx.tx, written, sink)?;
        for (index, chunk) in image.chunks.iter().enumerate().skip(first) {
            if chunk.size > OVERLAP_CHUNK_LIMIT {
                // A large chunk waits for the writer to finish the previous one.
                wait_for_writer(ctx.tx)?;
            }
            // The chunk hash is checked before the decompressor sees a byte.
            let stored = self.read_verified(chunk.stored_size as usize, &chunk.sha256, || {
                BundleError::ChunkHashMismatch {
                    image: image.name.clone(),
                    index,
                    payload_offset: chunk.payload_offset,
                }
            })?;
            let data = decompressor
                .decompress(&stored, chunk.size as usize)
                .map_err(|e| {
                    BundleError::Corrupt(format!(
                        "chunk {index} of image '{}' does not decompress: {e}",
                        image.name
                    ))
                })?;
            // Not held while waiting for the writer: a chunk less in memory.
            drop(stored);
            if data.len() != chunk.size as usize {
                return Err(BundleError::Corrupt(format!(
                    "chunk {index} of image '{}' decompresses to {} bytes, the manifest says {}",
                    image.name,
                    data.len(),
                    chunk.size
                )));
            }
            ctx.tx.send(Piece::Data(data)).map_err(|_| hung_up())?;
            (ctx.progress)(u64::from(chunk.stored_size));
            let next = image.chunks.get(index + 1);
            if let Some(next) = next.filter(|_| timer.wrote(u64::from(chunk.size))) {
                let point = ResumePoint {
                    image: written.index,
                    unit: (index + 1) as u64,
                    within: 0,
                    image_offset: next.offset,
                    payload_offset: next.payload_offset,
                };
                ctx.tx
                    .send(Piece::Checkpoint(point))
                    .map_err(|_| hung_up())?;
            }
        }
        ctx.tx.send(Piece::End).map_err(|_| hung_up())
    }

    /// A delta image: its op list read (hash-checked) and decoded twice as a stream, once to
    /// check every operation against the image and the base before any work, then to apply
    /// them; the base is hashed between the two (before the first byte is written).
    fn read_delta_image(
        &mut self,
        written: &WrittenImage<'_>,
        delta: &DeltaRef<'_>,
        target: Option<(Box<dyn ImageSink + Send>, Box<dyn BaseRead>)>,
        ctx: &mut PayloadContext<'_, '_, R>,
    ) -> Result<(), BundleError> {
        let image = written.image;
        let hung_up = || BundleError::Io(io::Error::other("image writer stopped"));
        let ops_ref = delta.ops;
        let blob = self.read_verified(ops_ref.stored_size as usize, &ops_ref.sha256, || {
            BundleError::Corrupt(format!(
                "the op list of image '{}' does not match its signed SHA-256",
                image.name
            ))
        })?;
        (ctx.progress)(u64::from(ops_ref.stored_size));
        let limits = OpLimits {
            count: ops_ref.count,
            target_size: image.size,
            base_size: delta.base_size,
            data_size: ops_ref.data_size,
        };
        let invalid = |e: OpListError| {
            BundleError::Corrupt(format!(
                "the op list of image '{}' is invalid: {e}",
                image.name
            ))
        };
        open_compressed(&blob, limits)
            .and_then(OpDecoder::check_all)
            .map_err(invalid)?;
        let mut cursor = DeltaCursor::new(written.index, None);
        let base = match target {
            Some((sink, base)) => {
                check_base(&*base, delta.base_size, delta.base_sha256, &image.name)?;
                cursor = DeltaCursor::new(written.index, sink.checkpoint_every());
                begin_image(ctx.tx, written, sink)?;
                Some(base)
            }
            None => None,
        };
        let mut ops = open_compressed(&blob, limits).map_err(invalid)?;
        let mut out = Batcher {
            tx: ctx.tx,
            pending: Vec::new(),
        };
        let mut next = match &written.resume {
            Some(resume) => self.resume_ops(&mut ops, &resume.point, &mut cursor, ctx)?,
            None => ops.next_op().map_err(invalid)?,
        };
        while let Some(op) = next {
            let index = ops.index() - 1;
            let last = index + 1 == ops_ref.count;
            let step = OpStep {
                op: &op,
                index,
                last,
            };
            self.run_op(image, &step, base.as_deref(), &mut out, &mut cursor, ctx)?;
            next = ops.next_op().map_err(invalid)?;
        }
        if base.is_some() {
            out.flush().map_err(|_| hung_up())?;
            ctx.tx.send(Piece::End).map_err(|_| hung_up())?;
        }
        Ok(())
    }

    /// Moves a delta to a resume point: the operations before it decoded but not applied,
    /// their data skipped, the point checked against them. Returns the operation to continue
    /// with (the rest of a `copy` or `zero` cut part-way).
    fn resume_ops(
        &mut self,
        ops: &mut OpDecoder<impl io::BufRead>,
        point: &ResumePoint,
        cursor: &mut DeltaCursor,
        ctx: &mut PayloadContext<'_, '_, R>,
    ) -> Result<Option<Op>, BundleError> {
        let invalid = |e: OpListError| resume_mismatch(&e.to_string());
        let (mut image_offset, mut data) = (0u64, 0u64);
        while ops.index() < point.unit {
            let op = ops
                .next_op()
                .map_err(invalid)?
                .ok_or_else(|| resume_mismatch("it is past the last operation"))?;
            image_offset += op.len();
            data += op.stored();
        }
        let op = ops.next_op().map_err(invalid)?;
        let trimmed = match op {
            _ if point.within == 0 => op,
            Some(Op::Copy { len, src }) if point.within < len => Some(Op::Copy {
                len: len - point.within,
                src: src.saturating_add(point.within),
            }),
            Some(Op::Zero { len }) if point.within < len => Some(Op::Zero {
                len: len - point.within,
            }),
            _ => return Err(resume_mismatch("it cuts an operation that cannot be cut")),
        };
        if image_offset + point.within != point.image_offset
            || self.payload_pos + data != point.payload_offset
        {
            return Err(resume_mismatch("it is not where its operations end"));
        }
        self.skip_payload(ctx, data)?;
        cursor.op_start(point.image_offset, point.within);
        Ok(trimmed)
    }

    /// Reads operation `index`'s data (hash-checked before use) and, with a base, applies it,
    /// reporting checkpoints to the writer as they fall due.
    fn run_op(
        &mut self,
        image: &ImageManifest,
        step: &OpStep<'_>,
        base: Option<&dyn BaseRead>,
        out: &mut Batcher<'_>,
        cursor: &mut DeltaCursor,
        ctx: &mut PayloadContext<'_, '_, R>,
    ) -> Result<(), BundleError> {
        let (op, index) = (step.op, step.index);
        let data = match op {
            Op::Replace { stored, sha256, .. }
            | Op::ZstdRef { stored, sha256, .. }
            | Op::Bsdiff { stored, sha256, .. }
            | Op::Gzip { stored, sha256, .. }
            | Op::Xz { stored, sha256, .. } => {
                // Hashed before it is decompressed or applied.
                let data =
                    self.read_verified(*stored as usize, sha256, || BundleError::OpHashMismatch {
                        image: image.name.clone(),
                        index: usize::try_from(index).unwrap_or(usize::MAX),
                    })?;
                (ctx.progress)(u64::from(*stored));
                data
            }
            // Inline data came with the op list, whose signed hash was checked.
            Op::Copy { .. } | Op::Zero { .. } | Op::Inline { .. } => Vec::new(),
        };
        let Some(base) = base else {
            return Ok(());
        };
        if op.data_len() > 0 {
            // A data operation needs up to 12 MiB (a zstd_ref window, its data and output; a
            // gzip operation's old content, frame and output):
            // let the writer finish the previous output first, so that they never add up.
            out.drained()?;
        }
        // A copy or zero can stop and resume anywhere; a data operation only whole.
        let cuttable = matches!(op, Op::Copy { .. } | Op::Zero { .. });
        let payload_offset = self.payload_pos;
        let mut emit = |piece: Vec<u8>| -> io::Result<()> {
            let len = piece.len() as u64;
            out.emit(piece)?;
            if cursor.wrote(len) && cuttable && cursor.within < op.len() + cursor.trimmed {
                out.flush()?;
                cursor.checkpoint(index, payload_offset, out.tx)?;
            }
            Ok(())
        };
        apply_op(op, data, base, &mut emit).map_err(|e| match e {
            ApplyError::Base(source) => BundleError::Io(source),
            ApplyError::Data(m) => {
                BundleError::Corrupt(format!("operation {index} of image '{}': {m}", image.name))
            }
        })?;
        cursor.op_start(cursor.image_offset, 0);
        if cursor.take_due() && !step.last {
            let hung_up = || BundleError::Io(io::Error::other("image writer stopped"));
            out.flush().map_err(|_| hung_up())?;
            cursor
                .checkpoint(index + 1, self.payload_pos, out.tx)
                .map_err(|_| hung_up())?;
        }
        Ok(())
    }
}

/// What the payload reader carries from image to image.
struct PayloadContext<'a, 'b, R> {
    tx: &'a mpsc::SyncSender<Piece>,
    progress: &'a dyn Fn(u64),
    skip: &'a mut SkipFn<'b, R>,
    resume: Option<Resume>,
}

/// An image being read for writing or checking, and where it resumes.
struct WrittenImage<'a> {
    index: usize,
    image: &'a ImageManifest,
    resume: Option<Resume>,
}

/// One operation of a delta, with its index and whether it is the last.
struct OpStep<'a> {
    op: &'a Op,
    index: u64,
    last: bool,
}

/// Where a delta's output stands, for checkpoints: image bytes written, bytes of the current
/// operation written, and whether a checkpoint is due.
struct DeltaCursor {
    image: usize,
    timer: CheckpointTimer,
    image_offset: u64,
    /// Bytes of the current operation written (including those before a resume).
    within: u64,
    /// Bytes of the current operation written before a resume (the op was trimmed by them).
    trimmed: u64,
    due: bool,
}

impl DeltaCursor {
    fn new(image: usize, every: Option<u64>) -> Self {
        Self {
            image,
            timer: CheckpointTimer::new(every),
            image_offset: 0,
            within: 0,
            trimmed: 0,
            due: false,
        }
    }

    /// A new operation starts at `image_offset`, `within` of its bytes already written.
    fn op_start(&mut self, image_offset: u64, within: u64) {
        self.image_offset = image_offset;
        self.within = within;
        self.trimmed = within;
    }

    /// Counts `len` output bytes; true when a checkpoint is due.
    fn wrote(&mut self, len: u64) -> bool {
        self.image_offset += len;
        self.within += len;
        if self.timer.wrote(len) {
            self.due = true;
        }
        self.due
    }

    fn take_due(&mut self) -> bool {
        std::mem::take(&mut self.due)
    }

    /// Reports the current position (operation `op`, with `within` of it written).
    fn checkpoint(
        &mut self,
        op: u64,
        payload_offset: u64,
        tx: &mpsc::SyncSender<Piece>,
    ) -> io::Result<()> {
        self.due = false;
        let point = ResumePoint {
            image: self.image,
            unit: op,
            within: self.within,
            image_offset: self.image_offset,
            payload_offset,
        };
        tx.send(Piece::Checkpoint(point))
            .map_err(|_| io::Error::other("image writer stopped"))
    }
}

fn resume_mismatch(why: &str) -> BundleError {
    BundleError::InvalidInput(format!("the resume point does not fit this bundle: {why}"))
}

/// Hands the writer the sink of the image about to be written, with the hash state of what it
/// already holds when the image resumes.
fn begin_image(
    tx: &mpsc::SyncSender<Piece>,
    written: &WrittenImage<'_>,
    sink: Box<dyn ImageSink + Send>,
) -> Result<(), BundleError> {
    tx.send(Piece::Begin {
        name: written.image.name.clone(),
        expected: written.image.sha256,
        sink,
        prefix: written.resume.as_ref().map(|r| r.prefix.clone()),
    })
    .map_err(|_| BundleError::Io(io::Error::other("image writer stopped")))
}

/// Returns once the writer has handled every piece sent before.
fn wait_for_writer(tx: &mpsc::SyncSender<Piece>) -> Result<(), BundleError> {
    let hung_up = || BundleError::Io(io::Error::other("image writer stopped"));
    let (done, wait) = mpsc::sync_channel(1);
    tx.send(Piece::Drained(done)).map_err(|_| hung_up())?;
    wait.recv().map_err(|_| hung_up())
}

/// Hands a delta's output to the writer, gathering small pieces (a list of one-byte copies
/// would otherwise cost a thread hand-off per byte) into pieces of up to [`Batcher::SIZE`].
struct Batcher<'a> {
    tx: &'a mpsc::SyncSender<Piece>,
    pending: Vec<u8>,
}

impl Batcher<'_> {
    const SIZE: usize = 64 << 10;

    fn send(&self, piece: Vec<u8>) -> io::Result<()> {
        self.tx
            .send(Piece::Data(piece))
            .map_err(|_| io::Error::other("image writer stopped"))
    }

    fn emit(&mut self, piece: Vec<u8>) -> io::Result<()> {
        if self.pending.len() + piece.len() > Self::SIZE {
            self.flush()?;
        }
        if piece.len() >= Self::SIZE {
            return self.send(piece);
        }
        self.pending.extend_from_slice(&piece);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let piece = std::mem::take(&mut self.pending);
        self.send(piece)
    }

    /// Waits until the writer has handled every piece before.
    fn drained(&mut self) -> Result<(), BundleError> {
        self.flush()
            .map_err(|_| BundleError::Io(io::Error::other("image writer stopped")))?;
        wait_for_writer(self.tx)
    }
}

/// What the manifest says of a delta image's base and op list.
struct DeltaRef<'a> {
    base_sha256: &'a Sha256Digest,
    base_size: u64,
    ops: &'a DeltaOps,
}

/// Hashes the first `size` bytes of the base and compares them with the manifest, before a
/// delta writes anything.
fn check_base(
    base: &dyn BaseRead,
    size: u64,
    expected: &Sha256Digest,
    image: &str,
) -> Result<(), BundleError> {
    if base.known_sha256(size) == Some(*expected) {
        // Hashed by the caller to choose this delta (`choose_payloads`): once is enough.
        return Ok(());
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(buf.len() as u64) as usize;
        base.read_exact_at(&mut buf[..n], at)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => BundleError::WrongBase {
                    image: image.to_owned(),
                    reason: format!(
                        "the base is shorter than the {size} bytes the delta was made from"
                    ),
                },
                _ => BundleError::Io(e),
            })?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    let actual = Sha256Digest::from_hasher(hasher);
    if actual != *expected {
        return Err(BundleError::WrongBase {
            image: image.to_owned(),
            reason: format!("its first {size} bytes hash to {actual}, the delta needs {expected}"),
        });
    }
    Ok(())
}

enum Piece {
    Begin {
        name: String,
        expected: Sha256Digest,
        sink: Box<dyn ImageSink + Send>,
        /// Hash state over the bytes the sink already holds (a resumed image).
        prefix: Option<Sha256>,
    },
    Data(Vec<u8>),
    /// Every piece before was written: the sink may record this point.
    Checkpoint(ResumePoint),
    End,
    /// Answered once every piece before it was handled.
    Drained(mpsc::SyncSender<()>),
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
                prefix,
            } => current = Some((name, expected, sink, prefix.unwrap_or_default())),
            Piece::Checkpoint(point) => {
                let (name, _, sink, hasher) = current.as_mut().ok_or_else(|| {
                    BundleError::Io(io::Error::other("checkpoint before image start"))
                })?;
                let at = Checkpoint {
                    point,
                    prefix_sha256: Sha256Digest::from_hasher(hasher.clone()),
                };
                sink.checkpoint(&at).map_err(|source| BundleError::Sink {
                    image: name.clone(),
                    source,
                })?;
            }
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
            Piece::Drained(done) => {
                let _ = done.send(());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delta::apply::HashedBase;

    struct Bytes(Vec<u8>);

    impl BaseRead for Bytes {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let start = offset as usize;
            let src = self
                .0
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    #[test]
    fn a_known_base_hash_is_trusted_only_for_its_length_and_value() {
        let right = Sha256Digest::of(&[7u8; 1000]);
        let hashed = |bytes: Vec<u8>, len: u64, sha256: Sha256Digest| HashedBase {
            base: Bytes(bytes),
            len,
            sha256,
        };
        // The caller's hash of these very bytes: accepted without reading them again.
        assert!(check_base(&hashed(vec![7u8; 1000], 1000, right), 1000, &right, "r").is_ok());
        // A known hash of another length or value is ignored: the base is hashed, and a
        // wrong base is refused as before.
        let wrong_base = vec![8u8; 1000];
        for (len, sha256) in [(999, right), (1000, Sha256Digest::of(b"other"))] {
            let e = check_base(&hashed(wrong_base.clone(), len, sha256), 1000, &right, "r");
            assert!(matches!(e, Err(BundleError::WrongBase { .. })), "{e:?}");
        }
        // And a right base with a stale known hash still passes on its own bytes.
        let stale = hashed(vec![7u8; 1000], 1000, Sha256Digest::of(b"stale"));
        assert!(check_base(&stale, 1000, &right, "r").is_ok());
    }
}
