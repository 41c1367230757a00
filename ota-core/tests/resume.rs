//! Resuming a payload read at every checkpoint a writer reported: a two-image bundle (a full
//! image and a delta with long copies and zero runs) is streamed once with checkpoints, then
//! resumed from each of them; the images must come out byte-identical, the resumed read must
//! start at the point's payload offset, and points that do not fit the bundle are refused.

#![allow(clippy::unwrap_used)]

use ota_core::bundle::{
    build_bundle, BuildOptions, BundleError, BundleReader, Checkpoint, ImageAction, ImageInput,
    ImageSink, Manifest, Resume, ResumePoint, TrustPolicy,
};
use ota_core::keys::SigningKey;
use ota_core::Sha256Digest;
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Cursor, Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

/// Keeps the image in memory and every checkpoint it is told, with a copy of the bytes it
/// held at that moment (what a slot would hold once synced).
struct RecordingSink {
    image: Arc<Mutex<Vec<u8>>>,
    checkpoints: Arc<Mutex<Vec<(Checkpoint, usize)>>>,
    every: u64,
}

impl ImageSink for RecordingSink {
    fn write_piece(&mut self, data: &[u8]) -> io::Result<()> {
        self.image.lock().unwrap().extend_from_slice(data);
        Ok(())
    }
    fn finish(self: Box<Self>) -> io::Result<()> {
        Ok(())
    }
    fn checkpoint_every(&self) -> Option<u64> {
        Some(self.every)
    }
    fn checkpoint(&mut self, at: &Checkpoint) -> io::Result<()> {
        let held = self.image.lock().unwrap().len();
        self.checkpoints.lock().unwrap().push((at.clone(), held));
        Ok(())
    }
}

/// Counts the bytes read and skipped from the bundle.
struct Counting {
    inner: Cursor<Vec<u8>>,
    read: u64,
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

fn firmware(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if (i / 4096) % 3 == 0 {
                (i % 251) as u8
            } else {
                (x >> 56) as u8
            }
        })
        .collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    bundle: Vec<u8>,
    manifest: Manifest,
    base: std::path::PathBuf,
    kernel: Vec<u8>,
    rootfs: Vec<u8>,
    key: SigningKey,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let base_bytes = firmware(6 << 20, 7);
    let mut rootfs = base_bytes.clone();
    // Edits, a moved block and a long run of zeros: copies (longer than the 1 MiB pieces a
    // copy is written in, so some checkpoints fall inside one), data ops and zero ops.
    rootfs[1000..1100].fill(0x55);
    rootfs.copy_within(3_600_000..3_700_000, 100_000);
    rootfs[3_800_000..6_000_000].fill(0);
    rootfs.extend_from_slice(&firmware(50_000, 9));
    let kernel = firmware(300_000, 3);
    let base = dir.path().join("base");
    std::fs::write(&base, &base_bytes).unwrap();
    let key = SigningKey::generate();
    let options = BuildOptions {
        product: "p".into(),
        version: semver::Version::new(2, 0, 0),
        created: 0,
        chunk_size: 16 << 10,
        zstd_level: 3,
        temp_dir: dir.path().to_owned(),
        provenance: None,
        delta_format: ota_core::delta::DELTA_FORMAT_LATEST,
        xz_content: false,
    };
    let images = vec![
        ImageInput {
            name: "kernel".into(),
            reader: Box::new(Cursor::new(kernel.clone())),
            base: None,
        },
        ImageInput {
            name: "rootfs".into(),
            reader: Box::new(Cursor::new(rootfs.clone())),
            base: Some(File::open(&base).unwrap()),
        },
    ];
    let mut bundle = Vec::new();
    let manifest = build_bundle(
        &options,
        images,
        std::slice::from_ref(&key),
        &mut tempfile::tempfile().unwrap(),
        &mut bundle,
        &|_| {},
    )
    .unwrap();
    Fixture {
        _dir: dir,
        bundle,
        manifest,
        base,
        kernel,
        rootfs,
        key,
    }
}

type Images = Vec<Arc<Mutex<Vec<u8>>>>;
type Checkpoints = Arc<Mutex<Vec<(Checkpoint, usize)>>>;

/// Streams the bundle (from `resume` when given, the resumed image pre-filled with `prefix`);
/// returns the images, the checkpoints and the bundle bytes read.
fn stream(
    f: &Fixture,
    resume: Option<Resume>,
    prefix: &[u8],
) -> Result<(Images, Checkpoints, u64), BundleError> {
    let trust = TrustPolicy::new(vec![f.key.verifying_key()], 1).unwrap();
    let source = Counting {
        inner: Cursor::new(f.bundle.clone()),
        read: 0,
    };
    let reader = BundleReader::open(source, &trust)?;
    let images: Images = (0..2).map(|_| Arc::new(Mutex::new(Vec::new()))).collect();
    let resumed_at = resume.as_ref().map(|r| r.point.image);
    if let Some(image) = resumed_at.and_then(|at| images.get(at)) {
        *image.lock().unwrap() = prefix.to_vec();
    }
    let checkpoints: Checkpoints = Arc::default();
    let read = Arc::new(Mutex::new(0u64));
    let counted = read.clone();
    let mut skip = move |r: &mut Counting, n: u64| -> io::Result<()> {
        r.inner.seek(SeekFrom::Current(n as i64))?;
        *counted.lock().unwrap() = r.read;
        Ok(())
    };
    let sinks = images.clone();
    let cps = checkpoints.clone();
    let base = f.base.clone();
    reader.stream_payload_from(
        resume,
        |index, image| {
            let base: Option<Box<dyn ota_core::delta::apply::BaseRead>> = match image.payload {
                ota_core::bundle::PayloadKind::Delta { .. } => Some(Box::new(File::open(&base)?)),
                ota_core::bundle::PayloadKind::Full => None,
            };
            Ok(ImageAction::Write {
                sink: Box::new(RecordingSink {
                    image: sinks[index].clone(),
                    checkpoints: cps.clone(),
                    every: 40 << 10,
                }),
                base,
            })
        },
        &|_| {},
        &mut skip,
    )?;
    let total = *read.lock().unwrap();
    Ok((images, checkpoints, total))
}

fn prefix_state(bytes: &[u8]) -> Sha256 {
    let mut h = Sha256::new();
    h.update(bytes);
    h
}

#[test]
fn resuming_at_every_checkpoint_rebuilds_both_images() {
    let f = fixture();
    let (images, checkpoints, _) = stream(&f, None, &[]).unwrap();
    assert_eq!(*images[0].lock().unwrap(), f.kernel);
    assert_eq!(*images[1].lock().unwrap(), f.rootfs);
    let checkpoints = checkpoints.lock().unwrap().clone();
    let wanted = [&f.kernel, &f.rootfs];
    let in_delta = checkpoints
        .iter()
        .filter(|(c, _)| c.point.image == 1)
        .count();
    let cut_ops = checkpoints
        .iter()
        .filter(|(c, _)| c.point.within > 0)
        .count();
    assert!(checkpoints.len() >= 20, "{} checkpoints", checkpoints.len());
    assert!(
        in_delta >= 10 && cut_ops >= 1,
        "{in_delta} in the delta, {cut_ops} inside an op"
    );
    for (at, held) in &checkpoints {
        let point = at.point;
        let image = wanted[point.image];
        // Never claims more than what was handed to the sink, and hashes what it claims.
        assert_eq!(point.image_offset as usize, *held);
        let prefix = &image[..*held];
        assert_eq!(at.prefix_sha256, Sha256Digest::of(prefix));
        let resume = Resume {
            point,
            prefix: prefix_state(prefix),
        };
        let (out, _, _) = stream(&f, Some(resume), prefix).unwrap();
        assert!(
            *out[point.image].lock().unwrap() == *image,
            "resume at {point:?}"
        );
        if point.image == 0 {
            assert_eq!(*out[1].lock().unwrap(), f.rootfs);
        }
    }
}

#[test]
fn a_resumed_read_skips_what_was_written() {
    let f = fixture();
    let (_, checkpoints, _) = stream(&f, None, &[]).unwrap();
    let last = checkpoints.lock().unwrap().last().unwrap().clone();
    let prefix = &f.rootfs[..last.1];
    let resume = Resume {
        point: last.0.point,
        prefix: prefix_state(prefix),
    };
    let (_, _, read_before_skip) = stream(&f, Some(resume), prefix).unwrap();
    // Before the last skip only the head and the op list were read: nothing of the kernel
    // and nothing of the operation data before the point.
    let Some(ota_core::bundle::PayloadKind::Delta { ops, .. }) =
        f.manifest.images.get(1).map(|i| &i.payload)
    else {
        panic!("rootfs is not a delta");
    };
    let head = f.bundle.len() as u64 - f.manifest.payload_size;
    assert_eq!(read_before_skip, head + u64::from(ops.stored_size));
}

#[test]
fn points_that_do_not_fit_the_bundle_are_refused() {
    let f = fixture();
    let (_, checkpoints, _) = stream(&f, None, &[]).unwrap();
    let checkpoints = checkpoints.lock().unwrap().clone();
    let (full, _) = checkpoints
        .iter()
        .find(|(c, _)| c.point.image == 0)
        .unwrap();
    let (delta, _) = checkpoints
        .iter()
        .find(|(c, _)| c.point.image == 1)
        .unwrap();
    let shifted = |p: ResumePoint, f: fn(&mut ResumePoint)| {
        let mut p = p;
        f(&mut p);
        p
    };
    let bad = [
        shifted(full.point, |p| p.image_offset += 1),
        shifted(full.point, |p| p.payload_offset -= 1),
        shifted(full.point, |p| p.within = 1),
        shifted(full.point, |p| p.unit = 10_000),
        shifted(delta.point, |p| p.payload_offset += 1),
        shifted(delta.point, |p| p.image_offset += 1),
        shifted(delta.point, |p| p.unit = u64::MAX),
        shifted(delta.point, |p| p.image = 7),
    ];
    for point in bad {
        let resume = Resume {
            point,
            prefix: Sha256::new(),
        };
        let err = stream(&f, Some(resume), &[]).err();
        assert!(
            matches!(&err, Some(BundleError::InvalidInput(m)) if m.contains("resume point")),
            "{point:?}: {err:?}"
        );
    }
}

#[test]
fn a_wrong_prefix_fails_the_image_hash() {
    let f = fixture();
    let (_, checkpoints, _) = stream(&f, None, &[]).unwrap();
    let (at, held) = checkpoints.lock().unwrap()[2].clone();
    let mut prefix = wanted_prefix(&f, at.point.image, held);
    prefix[0] ^= 1;
    let resume = Resume {
        point: at.point,
        prefix: prefix_state(&prefix),
    };
    let err = stream(&f, Some(resume), &prefix).err();
    assert!(
        matches!(err, Some(BundleError::ImageHashMismatch { .. })),
        "{err:?}"
    );
}

fn wanted_prefix(f: &Fixture, image: usize, len: usize) -> Vec<u8> {
    [&f.kernel, &f.rootfs][image][..len].to_vec()
}
