//! The generator's `xz` pre-pass (delta format 5, made only on request): finds the xz streams
//! of the base and of the target, and turns runs of changed target streams that this build's
//! liblzma re-creates exactly into `xz` operations against the old streams that hold most of
//! their content.
//!
//! Streams are found by their magic bytes and kept when liblzma decodes them, so the pass
//! knows nothing of squashfs: it serves any image with back-to-back xz streams. The old stream
//! of a new one is the one sharing most content anchors with it (the same anchors as the base
//! index, over decompressed bytes); a run of new streams is diffed against the old streams
//! from the first to the last such match, plus one stream of context on each side.

use super::generate::{compress_with_prefix, PrepassOp, SEGMENT};
use super::index::{for_each_anchor, read_full};
use super::xz::{self, XzSettings, MAX_XZ_RAW, MAX_XZ_STREAMS, PRESET_EXTREME, XZ_MAGIC};
use super::{Op, MAX_DATA_OP_LEN, MAX_REF_WINDOW};
use crate::digest::Sha256Digest;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use xxhash_rust::xxh3::xxh3_64;

/// Presets tried, in order, on a stream's content with the dictionary and check its header
/// names: 6 is the default of squashfs-tools and of xz.
const PRESETS: [u32; 4] = [6, 9, 6 | PRESET_EXTREME, 9 | PRESET_EXTREME];
/// Changed target streams are handled in batches of about this many bytes (their content is
/// up to ~4 × more).
const BATCH_BYTES: u64 = 16 << 20;

/// One xz stream of an image: where it is, its bytes and its content.
struct Found {
    at: u64,
    bytes: Vec<u8>,
    content: Vec<u8>,
}

/// Calls `each` with every xz stream of `image` that decodes (at most [`MAX_XZ_RAW`] bytes
/// of content), in order.
fn for_each_stream<R: Read + Seek>(
    image: &mut R,
    mut each: impl FnMut(Found) -> io::Result<()>,
) -> io::Result<()> {
    const CHUNK: usize = 4 << 20;
    let mut chunk = vec![0u8; CHUNK];
    let (mut chunk_at, mut chunk_len, mut pos) = (0u64, 0usize, 0u64);
    loop {
        if pos < chunk_at || pos + 6 > chunk_at + chunk_len as u64 {
            image.seek(SeekFrom::Start(pos))?;
            chunk_len = read_full(image, &mut chunk)?;
            chunk_at = pos;
            if chunk_len < XZ_MAGIC.len() {
                return Ok(());
            }
        }
        let from = (pos - chunk_at) as usize;
        let hay = &chunk[from..chunk_len];
        let Some(i) = hay.windows(XZ_MAGIC.len()).position(|w| w == XZ_MAGIC) else {
            if chunk_len < CHUNK {
                return Ok(());
            }
            pos = chunk_at + (chunk_len - XZ_MAGIC.len() + 1) as u64;
            continue;
        };
        let at = pos + i as u64;
        image.seek(SeekFrom::Start(at))?;
        let input = BufReader::with_capacity(64 << 10, (&mut *image).take(2 * MAX_XZ_RAW));
        match xz::decode_streams(input, false, MAX_XZ_RAW) {
            Ok((content, len)) => {
                let mut bytes = vec![0u8; len as usize];
                image.seek(SeekFrom::Start(at))?;
                image.read_exact(&mut bytes)?;
                each(Found { at, bytes, content })?;
                pos = at + len;
            }
            Err(_) => pos = at + 1,
        }
    }
}

/// The base's xz streams: where each is, its content length, which back-to-back group it
/// belongs to, and what finds them.
#[derive(Default)]
struct OldStreams {
    /// (offset, length) of each stream.
    spans: Vec<(u64, u64)>,
    /// Content bytes before each stream (one more entry than streams).
    raw_before: Vec<u64>,
    /// Streams that follow each other without a gap share a group.
    group: Vec<u32>,
    /// Content anchor key → the first stream holding it.
    anchors: HashMap<u64, u32>,
    /// Hashes of the streams' bytes: a target stream found here is copied, not re-created.
    bytes: HashSet<u64>,
}

impl OldStreams {
    fn scan(base: &File) -> io::Result<Self> {
        let mut old = OldStreams {
            raw_before: vec![0],
            ..Default::default()
        };
        let mut reader = base;
        for_each_stream(&mut reader, |found| {
            let index = old.spans.len() as u32;
            let group = match (old.spans.last(), old.group.last()) {
                (Some((at, len)), Some(g)) if at + len == found.at => *g,
                (_, g) => g.map_or(0, |g| g + 1),
            };
            old.spans.push((found.at, found.bytes.len() as u64));
            old.group.push(group);
            let before = old.raw_before.last().copied().unwrap_or(0);
            old.raw_before.push(before + found.content.len() as u64);
            old.bytes.insert(xxh3_64(&found.bytes));
            for_each_anchor(&found.content, |_, key| {
                old.anchors.entry(key).or_insert(index);
            });
            Ok(())
        })?;
        Ok(old)
    }

    /// Content bytes of the streams `lo..=hi`.
    fn raw(&self, lo: usize, hi: usize) -> u64 {
        self.raw_before[hi + 1] - self.raw_before[lo]
    }

    /// Base bytes of the streams `lo..=hi`.
    fn window(&self, lo: usize, hi: usize) -> (u64, u64) {
        let start = self.spans[lo].0;
        let (at, len) = self.spans[hi];
        (start, at + len - start)
    }

    /// Whether `lo..=hi` can be one operation's old streams.
    fn fits(&self, lo: usize, hi: usize) -> bool {
        self.group[lo] == self.group[hi]
            && self.raw(lo, hi) <= MAX_XZ_RAW
            && self.window(lo, hi).1 <= MAX_REF_WINDOW
    }

    /// The old stream sharing most content anchors with `content`, if any.
    fn best_match(&self, content: &[u8]) -> Option<usize> {
        let mut votes: HashMap<u32, u32> = HashMap::new();
        for_each_anchor(content, |_, key| {
            if let Some(&s) = self.anchors.get(&key) {
                *votes.entry(s).or_insert(0) += 1;
            }
        });
        let best = votes
            .into_iter()
            .max_by_key(|&(s, n)| (n, std::cmp::Reverse(s)));
        best.map(|(s, _)| s as usize)
    }
}

/// A changed target stream that liblzma re-creates with `settings`.
struct NewStream {
    found: Found,
    settings: XzSettings,
    best: Option<usize>,
}

/// The settings that re-create `found` exactly, if any.
fn reproduce(found: &Found) -> Option<XzSettings> {
    let mut out = Vec::new();
    PRESETS.iter().find_map(|&preset| {
        let settings = xz::stream_settings(&found.bytes, preset)?;
        out.clear();
        let made = xz::encode_stream(&found.content, settings, &mut out, found.bytes.len());
        (made.is_ok() && out == found.bytes).then_some(settings)
    })
}

/// Encodes the changed xz streams of `target` that re-create exactly as `xz` operations,
/// where that is less than half their bytes. Operations never cross a generator segment.
pub(super) fn encode_xz_streams<T: Read + Seek + Send>(
    base: &File,
    target: &mut T,
    level: i32,
) -> io::Result<Vec<PrepassOp>> {
    let started = std::time::Instant::now();
    // Both images are scanned at once (decoding every stream is most of the scan's time).
    let (old, spans) = rayon::join(
        || OldStreams::scan(base),
        || {
            let mut spans = Vec::new();
            for_each_stream(&mut *target, |found| {
                spans.push((found.at, found.bytes.len() as u64, xxh3_64(&found.bytes)));
                Ok(())
            })?;
            io::Result::Ok(spans)
        },
    );
    let (old, spans) = (old?, spans?);
    let scanned = started.elapsed().as_secs_f64();
    let mut out = Vec::new();
    let mut batch: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0u64;
    let changed: Vec<(u64, u64)> = spans
        .iter()
        .filter(|(_, _, key)| !old.bytes.contains(key))
        .map(|&(at, len, _)| (at, len))
        .collect();
    for &(at, len) in &changed {
        let mut bytes = vec![0u8; len as usize];
        target.seek(SeekFrom::Start(at))?;
        target.read_exact(&mut bytes)?;
        batch_bytes += len;
        batch.push((at, bytes));
        if batch_bytes > BATCH_BYTES {
            out.extend(encode_batch(std::mem::take(&mut batch), &old, base, level));
            batch_bytes = 0;
        }
    }
    out.extend(encode_batch(batch, &old, base, level));
    if std::env::var_os("OTA_DELTA_DEBUG").is_some() {
        let ops: Vec<&Op> = out
            .iter()
            .filter_map(|p| p.1.as_ref().map(|o| &o.0))
            .collect();
        eprintln!(
            "xz: {} streams in the base, {} in the target (both scanned in {scanned:.1} s), {} \
             changed; {} operations re-create {} bytes ({} of content) from {} bytes ({:.1} s \
             in all)",
            old.spans.len(),
            spans.len(),
            changed.len(),
            ops.len(),
            ops.iter().map(|o| o.len()).sum::<u64>(),
            ops.iter()
                .map(|o| match o {
                    Op::Xz { raw_lens, .. } => raw_lens.iter().sum(),
                    _ => 0,
                })
                .sum::<u64>(),
            ops.iter().map(|o| o.stored()).sum::<u64>(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(out)
}

/// Turns one batch of changed streams (offset, bytes; in target order) into operations.
fn encode_batch(
    batch: Vec<(u64, Vec<u8>)>,
    old: &OldStreams,
    base: &File,
    level: i32,
) -> Vec<PrepassOp> {
    let streams: Vec<NewStream> = batch
        .into_par_iter()
        .filter_map(|(at, bytes)| {
            let (content, _) = xz::decode_streams(&bytes[..], false, MAX_XZ_RAW).ok()?;
            let found = Found { at, bytes, content };
            let settings = reproduce(&found)?;
            let best = old.best_match(&found.content);
            Some(NewStream {
                found,
                settings,
                best,
            })
        })
        .collect();
    let runs = group_runs(&streams, old);
    let encoded: Vec<Option<PrepassOp>> = runs
        .par_iter()
        .map(|run| encode_run(&streams[run.streams.clone()], run, old, base, level))
        .collect();
    if std::env::var_os("OTA_DELTA_DEBUG").is_some() {
        let kept = runs.iter().zip(&encoded).filter(|(_, e)| e.is_some());
        let window: u64 = kept.map(|(r, _)| old.raw(r.old.0, r.old.1)).sum();
        eprintln!(
            "xz batch: {} streams re-created exactly, {} runs; the operations kept decode \
             {window} bytes of old content",
            streams.len(),
            runs.len()
        );
    }
    encoded.into_iter().flatten().collect()
}

/// Consecutive new streams made by one operation, and the old streams it reads.
struct XzRun {
    streams: std::ops::Range<usize>,
    old: (usize, usize),
}

/// Groups streams into runs: back to back in the target, the same settings, within one
/// segment and an operation's bounds, their old streams one range an operation may read.
fn group_runs(streams: &[NewStream], old: &OldStreams) -> Vec<XzRun> {
    let mut runs = Vec::new();
    let mut i = 0;
    while i < streams.len() {
        let first = &streams[i];
        let mut end = i + 1;
        let (mut len, mut raw) = (
            first.found.bytes.len() as u64,
            first.found.content.len() as u64,
        );
        let mut range = first.best.map(|b| (b, b));
        while let Some(next) = streams.get(end) {
            let prev = &streams[end - 1].found;
            let next_len = next.found.bytes.len() as u64;
            let joined = match (range, next.best) {
                (Some((lo, hi)), Some(b)) => Some((lo.min(b), hi.max(b))),
                (r, b) => r.or(b.map(|b| (b, b))),
            };
            let fits = next.found.at == prev.at + prev.bytes.len() as u64
                && next.settings == first.settings
                && (next.found.at + next_len - 1) / SEGMENT as u64
                    == first.found.at / SEGMENT as u64
                && len + next_len <= MAX_DATA_OP_LEN
                && raw + next.found.content.len() as u64 <= MAX_XZ_RAW
                && ((end - i) as u64) < MAX_XZ_STREAMS
                && joined.is_none_or(|(lo, hi)| old.fits(lo, hi));
            if !fits {
                break;
            }
            (len, raw, range) = (
                len + next_len,
                raw + next.found.content.len() as u64,
                joined,
            );
            end += 1;
        }
        if let Some((mut lo, mut hi)) = range {
            // One old stream of context on each side, where it fits.
            if hi + 1 < old.spans.len() && old.fits(lo, hi + 1) {
                hi += 1;
            }
            if lo > 0 && old.fits(lo - 1, hi) {
                lo -= 1;
            }
            runs.push(XzRun {
                streams: i..end,
                old: (lo, hi),
            });
        }
        i = end;
    }
    runs
}

/// The `xz` operation for one run, when it is less than half the streams' bytes.
fn encode_run(
    streams: &[NewStream],
    run: &XzRun,
    old: &OldStreams,
    base: &File,
    level: i32,
) -> Option<PrepassOp> {
    let (src, window) = old.window(run.old.0, run.old.1);
    let reader = super::gzip::BaseRange::new(base, src, window);
    let (old_raw, consumed) = xz::decode_streams(reader, true, MAX_XZ_RAW).ok()?;
    if consumed != window {
        return None;
    }
    let content: Vec<u8> = streams
        .iter()
        .flat_map(|s| s.found.content.iter().copied())
        .collect();
    let len: u64 = streams.iter().map(|s| s.found.bytes.len() as u64).sum();
    let stored = compress_with_prefix(&content, &old_raw, level).ok()?;
    if stored.len() as u64 * 2 >= len {
        return None;
    }
    // Proof with the device's code: the frame gives the content back (each stream's
    // re-compression was proven by `reproduce`, with the same encoder).
    let back = super::apply::decompress_with_prefix(&stored, &old_raw, content.len() as u64);
    if back.ok()? != content {
        return None;
    }
    let op = Op::Xz {
        len,
        src,
        window,
        settings: streams[0].settings,
        raw_lens: streams
            .iter()
            .map(|s| s.found.content.len() as u64)
            .collect(),
        stored: u32::try_from(stored.len()).ok()?,
        sha256: Sha256Digest::of(&stored),
    };
    Some((streams[0].found.at, Some((op, stored))))
}
