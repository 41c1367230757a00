//! Delta generation.
//!
//! 1. Index the base in one streaming pass ([`BaseIndex`]): block hashes and anchors.
//! 2. Read the target in 32 MiB segments; classify each 4 KiB block as zero, present in the
//!    base (hash hit, confirmed by comparing bytes read from the base), or new.
//! 3. Merge runs into `zero` and `copy` operations; merge new blocks separated by small gaps
//!    into extents of at most [`MAX_DATA_OP_LEN`].
//! 4. For each new extent, in parallel on all cores: find the base window holding its old
//!    version (anchor votes), then try `replace`, `zstd_ref` and `bsdiff` and keep the
//!    smallest.
//!
//! Memory: the base indexes (~12 bytes per base block and per anchor), one target segment,
//! and per worker one extent, its window and a zstd context: a few hundred MiB at level 19,
//! whatever the image size. The base is read by `pread`, never loaded whole.

use super::bsdiff::RawPatch;
use super::ext4::{Ext4Error, SeekReader};
use super::fshints::FsHints;
use super::index::{block_key, for_each_anchor, read_full, BaseIndex};
use super::lzma::{self, PLAIN_TUNING, SPARSE_TUNINGS};
use super::{
    branch, bsdiff, encode_ops, BranchFilter, Op, PatchCodec, BLOCK, MAX_DATA_OP_LEN, MAX_INLINE,
    MAX_REF_WINDOW, MAX_WINDOW,
};
use crate::digest::Sha256Digest;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use zstd::zstd_safe;

pub(super) const SEGMENT: usize = 32 << 20;
/// New extents separated by at most this many bytes of copy/zero are merged: one operation
/// with context compresses better than two without, and costs one op-list entry less.
const MERGE_GAP: u64 = 256 << 10;

/// The result of [`generate`].
#[derive(Debug, Clone)]
pub struct GeneratedDelta {
    /// The operations, in target order.
    pub ops: Vec<Op>,
    /// The op list, encoded and zstd-compressed (what the payload carries first).
    pub ops_blob: Vec<u8>,
    /// Total bytes of operation data written to the data output.
    pub data_size: u64,
    /// Target length.
    pub target_size: u64,
    /// Target SHA-256.
    pub target_sha256: Sha256Digest,
    /// Base length.
    pub base_size: u64,
    /// Base SHA-256.
    pub base_sha256: Sha256Digest,
}

impl GeneratedDelta {
    /// Bytes per operation kind: (count, target bytes, stored bytes).
    pub fn stats(&self) -> Vec<(&'static str, usize, u64, u64)> {
        let mut by_kind: Vec<(&'static str, usize, u64, u64)> = Vec::new();
        for op in &self.ops {
            match by_kind.iter_mut().find(|k| k.0 == op.kind_name()) {
                Some(k) => {
                    k.1 += 1;
                    k.2 += op.len();
                    k.3 += op.data_len();
                }
                None => by_kind.push((op.kind_name(), 1, op.len(), op.data_len())),
            }
        }
        by_kind
    }
}

enum Run {
    Zero(u64),
    Copy {
        len: u64,
        src: u64,
    },
    /// A gzip file or xz streams re-created by the pre-pass operation `index`.
    Prepass {
        index: usize,
        len: u64,
    },
    /// New bytes; `hint` is the filesystem's diagonal to their old version, if known.
    New {
        start: usize,
        len: usize,
        hint: Option<i64>,
    },
}

/// Hinted blocks whose diagonals differ by more than this start a new extent: one extent is
/// diffed against one base window.
const SPLIT_DIAG: i64 = 64 << 10;

/// How [`generate`] encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeltaOptions {
    /// zstd level of the operation data (1..=22).
    pub zstd_level: i32,
    /// The operations it may use ([`super::DELTA_FORMAT_LATEST`]).
    pub delta_format: u8,
    /// Re-create changed xz streams from their content (`xz` operations, delta format 5):
    /// far smaller deltas of squashfs-xz images, for ~50 × the apply time (docs/delta.md).
    pub xz_content: bool,
}

/// Generates a delta from `base` to `target`, writing operation data to `data_out` in
/// operation order, as `options` say. `progress` gets target bytes processed.
pub fn generate<T: Read + Seek + Send>(
    base: &File,
    target: &mut T,
    options: DeltaOptions,
    data_out: &mut dyn Write,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<GeneratedDelta> {
    let DeltaOptions {
        zstd_level,
        delta_format,
        xz_content,
    } = options;
    if xz_content && delta_format < 5 {
        return Err(io::Error::other(format!(
            "xz operations need delta format 5 or later (asked for {delta_format})"
        )));
    }
    let mut base_reader = base;
    base_reader.seek(SeekFrom::Start(0))?;
    let index = BaseIndex::build(&mut base_reader)?;
    let hints = filesystem_hints(base, index.size, target)?;
    let mut prepass = if delta_format >= 2 {
        encode_gzip_files(base, target, &hints, zstd_level)?
    } else {
        Vec::new()
    };
    if xz_content {
        let xz_ops = super::xzpass::encode_xz_streams(base, target, zstd_level)?;
        prepass = merge_prepass(prepass, xz_ops);
    }
    target.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut sink = DataOps {
        ops: Vec::new(),
        data_size: 0,
        inline_left: if delta_format >= 4 { INLINE_BUDGET } else { 0 },
        data_out,
    };
    let mut offset = 0u64;
    let mut segment = vec![0u8; SEGMENT];
    loop {
        let n = read_full(target, &mut segment)?;
        if n == 0 {
            break;
        }
        let seg = &segment[..n];
        hasher.update(seg);
        let classified = classify(seg, offset, base, &index, &prepass)?;
        let runs = split_by_hints(merge_new_runs(classified), offset, &hints);
        // Encode the new extents in parallel; order is kept by collect.
        let encoded: Vec<Option<(Op, Vec<u8>)>> = runs
            .par_iter()
            .map(|run| match run {
                Run::New { start, len, hint } => encode_extent(
                    &seg[*start..*start + *len],
                    offset + *start as u64,
                    *hint,
                    base,
                    &index,
                    zstd_level,
                    delta_format,
                )
                .map(Some),
                _ => Ok(None),
            })
            .collect::<io::Result<_>>()?;
        for (run, enc) in runs.into_iter().zip(encoded) {
            match (run, enc) {
                (Run::Zero(len), _) => push_op(&mut sink.ops, Op::Zero { len }),
                (Run::Copy { len, src }, _) => push_op(&mut sink.ops, Op::Copy { len, src }),
                (Run::Prepass { index, .. }, _) => {
                    let (op, data) = prepass[index]
                        .1
                        .take()
                        .ok_or_else(|| io::Error::other("pre-pass operation used twice"))?;
                    sink.push(op, data)?;
                }
                (Run::New { .. }, Some((op, data))) => sink.push(op, data)?,
                (Run::New { .. }, None) => return Err(io::Error::other("extent was not encoded")),
            }
        }
        offset += n as u64;
        progress(n as u64);
        if n < SEGMENT {
            break;
        }
    }
    let DataOps { ops, data_size, .. } = sink;
    let encoded = encode_ops(&ops);
    let ops_blob = super::compress_ops(&mut &encoded[..], Some(encoded.len() as u64), 19)?;
    Ok(GeneratedDelta {
        ops,
        ops_blob,
        data_size,
        target_size: offset,
        target_sha256: Sha256Digest::from_hasher(hasher),
        base_size: index.size,
        base_sha256: index.sha256,
    })
}

/// Most inline data one image's op list carries ([`Op::Inline`], delta format 4): readers
/// hold the compressed list in memory (at most [`super::MAX_OPS_STORED`]).
const INLINE_BUDGET: u64 = 256 << 10;

/// The operations made so far and where their data goes.
struct DataOps<'a> {
    ops: Vec<Op>,
    /// Data bytes written to `data_out`.
    data_size: u64,
    /// Inline data bytes the op list may still take.
    inline_left: u64,
    data_out: &'a mut dyn Write,
}

impl DataOps<'_> {
    /// Appends a data operation: inline while its data is at most [`MAX_INLINE`] bytes and
    /// the budget lasts (it then costs no digest of its own), else with its data written out.
    fn push(&mut self, op: Op, data: Vec<u8>) -> io::Result<()> {
        let len = data.len() as u64;
        if len <= MAX_INLINE && len <= self.inline_left {
            self.inline_left -= len;
            self.ops.push(Op::Inline {
                op: Box::new(op),
                data,
            });
            return Ok(());
        }
        self.data_out.write_all(&data)?;
        self.data_size += len;
        self.ops.push(op);
        Ok(())
    }
}

/// Appends an op, extending the previous one when they continue each other (across segments).
fn push_op(ops: &mut Vec<Op>, op: Op) {
    match (ops.last_mut(), &op) {
        (Some(Op::Zero { len }), Op::Zero { len: more }) => *len += more,
        (
            Some(Op::Copy { len, src }),
            Op::Copy {
                len: more,
                src: next,
            },
        ) if *src + *len == *next => *len += more,
        _ => ops.push(op),
    }
}

/// Classifies each block of a segment (at target offset `seg_offset`) and collapses
/// neighbours into runs. A pre-pass operation that lies wholly in the segment becomes one run;
/// the bytes from its end to the next block boundary (or the next such operation: xz streams
/// follow each other at any offset) are classified on their own.
fn classify(
    seg: &[u8],
    seg_offset: u64,
    base: &File,
    index: &BaseIndex,
    prepass: &[PrepassOp],
) -> io::Result<Vec<Run>> {
    let mut runs: Vec<Run> = Vec::new();
    let mut check = vec![0u8; BLOCK];
    let mut next_prepass = prepass.partition_point(|g| g.0 < seg_offset);
    let mut start = 0usize;
    while start < seg.len() {
        let at = seg_offset + start as u64;
        while prepass.get(next_prepass).is_some_and(|g| g.0 < at) {
            next_prepass += 1;
        }
        // The next pre-pass operation, if it lies wholly in the segment: (start, length).
        let next_op = prepass.get(next_prepass).and_then(|(g_at, g)| {
            let len = g.as_ref()?.0.len();
            let op_start = g_at - seg_offset;
            (op_start + len <= seg.len() as u64).then_some((op_start as usize, len))
        });
        if let Some((_, len)) = next_op.filter(|(op_start, _)| *op_start == start) {
            runs.push(Run::Prepass {
                index: next_prepass,
                len,
            });
            next_prepass += 1;
            start += len as usize;
            continue;
        }
        let block_end = ((start / BLOCK + 1) * BLOCK)
            .min(seg.len())
            .min(next_op.map_or(usize::MAX, |(op_start, _)| op_start));
        let block = &seg[start..block_end];
        let run = classify_block(block, start, base, index, &mut check)?;
        start += block.len();
        match (runs.last_mut(), run) {
            (Some(Run::Zero(l)), Run::Zero(more)) => *l += more,
            (
                Some(Run::Copy { len, src }),
                Run::Copy {
                    len: more,
                    src: next,
                },
            ) if *src + *len == next => *len += more,
            (Some(Run::New { start: s, len, .. }), Run::New { len: more, .. })
                if *s + *len == start - block.len() =>
            {
                *len += more
            }
            (_, run) => runs.push(run),
        }
    }
    Ok(runs)
}

/// One block: all zero, found in the base (hash hit confirmed by comparing bytes), or new.
fn classify_block(
    block: &[u8],
    start: usize,
    base: &File,
    index: &BaseIndex,
    check: &mut [u8],
) -> io::Result<Run> {
    let len = block.len() as u64;
    if block.iter().all(|&b| b == 0) {
        return Ok(Run::Zero(len));
    }
    if block.len() == BLOCK {
        if let Some(&b) = index.blocks.get(&block_key(block)) {
            let src = u64::from(b) * BLOCK as u64;
            base.read_exact_at(check, src)?;
            if check == block {
                return Ok(Run::Copy { len, src });
            }
        }
    }
    Ok(Run::New {
        start,
        len: block.len(),
        hint: None,
    })
}

/// A `gzip` or `xz` operation made before the target is read in segments: its target
/// offset, and the operation with its data until a segment uses it.
pub(super) type PrepassOp = (u64, Option<(Op, Vec<u8>)>);

/// Both pre-passes' operations in target order; an `xz` operation overlapping a `gzip` one
/// (xz magic inside a .gz file that happened to decode) is dropped.
fn merge_prepass(gzip: Vec<PrepassOp>, xz: Vec<PrepassOp>) -> Vec<PrepassOp> {
    let mut all: Vec<(PrepassOp, bool)> = gzip
        .into_iter()
        .map(|p| (p, true))
        .chain(xz.into_iter().map(|p| (p, false)))
        .collect();
    all.sort_by_key(|(p, is_gzip)| (p.0, !*is_gzip));
    let mut out: Vec<PrepassOp> = Vec::with_capacity(all.len());
    let end = |p: &PrepassOp| p.0 + p.1.as_ref().map_or(0, |(op, _)| op.len());
    for (p, is_gzip) in all {
        if let Some(last) = out.last() {
            if p.0 < end(last) {
                if is_gzip {
                    out.pop();
                } else {
                    continue;
                }
            }
        }
        out.push(p);
    }
    out
}

/// Encodes the paired gzip files the filesystem hints found, where the `gzip` operation
/// re-creates them exactly and is smaller than zstd with the old file as prefix (what the
/// generic encoders would get at best). Reads the candidates in batches of at most 64 MiB and
/// encodes each batch on all cores.
fn encode_gzip_files<T: Read + Seek>(
    base: &File,
    target: &mut T,
    hints: &FsHints,
    level: i32,
) -> io::Result<Vec<PrepassOp>> {
    let mut out = Vec::new();
    let mut batch: Vec<(u64, Vec<u8>, u64, Vec<u8>)> = Vec::new();
    let mut batch_bytes = 0u64;
    let flush = |batch: &mut Vec<(u64, Vec<u8>, u64, Vec<u8>)>, out: &mut Vec<PrepassOp>| {
        let encoded: Vec<Option<PrepassOp>> = batch
            .par_iter()
            .map(|(at, new, src, old)| encode_gzip_file(*at, new, *src, old, level))
            .collect();
        out.extend(encoded.into_iter().flatten());
        batch.clear();
    };
    for pair in &hints.gzip {
        let (at, len) = pair.target;
        let (src, old_len) = pair.base;
        let mut new = vec![0u8; len as usize];
        target.seek(SeekFrom::Start(at))?;
        target.read_exact(&mut new)?;
        let mut old = vec![0u8; old_len as usize];
        base.read_exact_at(&mut old, src)?;
        if new == old {
            continue;
        }
        batch_bytes += len + old_len;
        batch.push((at, new, src, old));
        if batch_bytes > 64 << 20 {
            flush(&mut batch, &mut out);
            batch_bytes = 0;
        }
    }
    flush(&mut batch, &mut out);
    if std::env::var_os("OTA_DELTA_DEBUG").is_some() {
        let stored: u64 = out
            .iter()
            .filter_map(|g| g.1.as_ref())
            .map(|g| g.0.stored())
            .sum();
        eprintln!(
            "gzip: {} of {} paired .gz files re-created from their content, {stored} bytes",
            out.len(),
            hints.gzip.len()
        );
    }
    Ok(out)
}

fn encode_gzip_file(at: u64, new: &[u8], src: u64, old: &[u8], level: i32) -> Option<PrepassOp> {
    let old_raw = super::gzip::inflate(old).ok()?;
    let (stored, header_len, raw_len) = super::gzip::encode(new, &old_raw, level)?;
    let generic = compress_with_prefix(new, old, level).ok()?;
    if stored.len() >= generic.len() {
        return None;
    }
    let op = Op::Gzip {
        len: new.len() as u64,
        src,
        window: old.len() as u64,
        header_len,
        raw_len,
        stored: u32::try_from(stored.len()).ok()?,
        sha256: Sha256Digest::of(&stored),
    };
    Some((at, Some((op, stored))))
}

/// Merges new extents separated by small gaps and splits extents longer than
/// [`MAX_DATA_OP_LEN`].
fn merge_new_runs(runs: Vec<Run>) -> Vec<Run> {
    let max = MAX_DATA_OP_LEN as usize;
    let mut out: Vec<Run> = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        if let Run::New { start, mut len, .. } = runs[i] {
            // Absorb `gap, New` pairs while the gap is small and the extent stays bounded.
            let mut j = i + 1;
            while j + 1 < runs.len() {
                let gap = match runs[j] {
                    Run::Zero(l) | Run::Copy { len: l, .. } => l,
                    // Merging across a re-created gzip file would encode its bytes again.
                    Run::New { .. } | Run::Prepass { .. } => break,
                };
                let Run::New {
                    start: next,
                    len: next_len,
                    ..
                } = runs[j + 1]
                else {
                    break;
                };
                let merged = next + next_len - start;
                if gap > MERGE_GAP || merged > max {
                    break;
                }
                len = merged;
                j += 2;
            }
            let mut at = start;
            let end = start + len;
            while at < end {
                let piece = (end - at).min(max);
                out.push(Run::New {
                    start: at,
                    len: piece,
                    hint: None,
                });
                at += piece;
            }
            i = j;
        } else {
            out.push(match runs[i] {
                Run::Zero(l) => Run::Zero(l),
                Run::Copy { len, src } => Run::Copy { len, src },
                Run::Prepass { index, len } => Run::Prepass { index, len },
                Run::New { .. } => unreachable!("handled above"),
            });
            i += 1;
        }
    }
    out
}

/// The filesystem hints for this pair: none when either image is not a sound ext2/3/4, or
/// when `OTA_DELTA_NO_FS_HINTS` is set (to measure what the hints are worth).
fn filesystem_hints<T: Read + Seek + ?Sized>(
    base: &File,
    base_len: u64,
    target: &mut T,
) -> io::Result<FsHints> {
    if std::env::var_os("OTA_DELTA_NO_FS_HINTS").is_some() {
        return Ok(FsHints::default());
    }
    let target_len = target.seek(SeekFrom::End(0))?;
    let mut base = base;
    let hints = FsHints::for_images(&mut base, base_len, &mut SeekReader(target), target_len);
    let debug = std::env::var_os("OTA_DELTA_DEBUG").is_some();
    match hints {
        Ok(h) => {
            if debug {
                eprintln!(
                    "ext4 hints: files paired by path {}, by name shape {}",
                    h.paired.0, h.paired.1
                );
            }
            Ok(h)
        }
        // A read error of the base or target is an error of the build, not a format question.
        Err(Ext4Error::Io(e)) if e.kind() != io::ErrorKind::UnexpectedEof => Err(e),
        Err(e) => {
            if debug {
                eprintln!("no filesystem hints: {e}");
            }
            Ok(FsHints::default())
        }
    }
}

/// Splits new extents where the hinted diagonal changes: each piece gets the diagonal of its
/// first hinted block; unhinted blocks (metadata, new files) stay with their neighbours.
fn split_by_hints(runs: Vec<Run>, seg_offset: u64, hints: &FsHints) -> Vec<Run> {
    if hints.is_empty() {
        return runs;
    }
    let mut out = Vec::with_capacity(runs.len());
    for run in runs {
        let Run::New { start, len, .. } = run else {
            out.push(run);
            continue;
        };
        let mut piece_start = start;
        let mut current: Option<i64> = None;
        for at in (start..start + len).step_by(BLOCK) {
            let Some(d) = hints.diag_at(seg_offset + at as u64) else {
                continue;
            };
            match current {
                Some(c) if (d - c).abs() > SPLIT_DIAG => {
                    out.push(Run::New {
                        start: piece_start,
                        len: at - piece_start,
                        hint: current,
                    });
                    piece_start = at;
                    current = Some(d);
                }
                Some(_) => {}
                None => current = Some(d),
            }
        }
        out.push(Run::New {
            start: piece_start,
            len: start + len - piece_start,
            hint: current,
        });
    }
    out
}

/// The base window (`span` × the extent, within 64 KiB..[`MAX_WINDOW`]) most likely to hold
/// the old version of `data` (at target `offset`): the filesystem's diagonal when hinted, else
/// the diagonal (base position − target position) most anchors agree on, else the same offset.
fn find_window(
    data: &[u8],
    offset: u64,
    hint: Option<i64>,
    index: &BaseIndex,
    span: u64,
) -> Option<(u64, u64)> {
    if index.size == 0 {
        return None;
    }
    let diag = match hint {
        Some(d) => d,
        None => anchor_diagonal(data, offset, index)?,
    };
    let len = data.len() as u64;
    let want = (len * span).clamp(64 << 10, MAX_WINDOW).min(index.size);
    let center = offset as i64 + diag + len as i64 / 2;
    let start = (center - want as i64 / 2).clamp(0, (index.size - want) as i64) as u64;
    Some((start, want))
}

/// The diagonal most anchors of `data` vote for (0 when none matches).
fn anchor_diagonal(data: &[u8], offset: u64, index: &BaseIndex) -> Option<i64> {
    let mut diags: Vec<i64> = Vec::new();
    for_each_anchor(data, |pos, key| {
        if let Some(&(spos, _)) = index.anchors.get(&key) {
            diags.push(spos as i64 - (offset + pos as u64) as i64);
        }
    });
    if diags.is_empty() {
        return Some(0);
    }
    let mut votes: HashMap<i64, usize> = HashMap::new();
    for d in &diags {
        *votes.entry(d >> 16).or_default() += 1;
    }
    let best = votes
        .iter()
        .max_by_key(|(bucket, count)| (**count, -(bucket.abs())))
        .map(|(b, _)| *b)?;
    let mut in_bucket: Vec<i64> = diags.into_iter().filter(|d| d >> 16 == best).collect();
    in_bucket.sort_unstable();
    Some(in_bucket[in_bucket.len() / 2])
}

/// zstd level of the first, quick look at an extent. An extent it cannot shrink below
/// [`INCOMPRESSIBLE_PERMILLE`] ‰ is encoded at this level with a window of 2 × the extent
/// instead of the caller's level and 4 ×: on the squashfs-xz pair that cut generation from
/// 25.2 s to 8.4 s for 3 KB more (0.03 %); no extent of the ext4, libarrow or numpy pairs
/// changed encoding but one (+78 bytes on 2.7 MB) — docs/delta.md.
const QUICK_LEVEL: i32 = 3;
/// Share (per mille) of its length that a level-[`QUICK_LEVEL`] frame of an incompressible
/// extent keeps.
const INCOMPRESSIBLE_PERMILLE: u64 = 970;

/// Encodes one new extent with the smallest of `replace`, `bsdiff` and `zstd_ref`.
///
/// `zstd_ref` is tried only when bsdiff saved less than half of `replace`: where bsdiff wins
/// big (recompiled code, whose bytes mostly differ by shifted addresses) zstd with a prefix
/// never came close in our measurements, and it is the slowest encoder (≈ 5 s per 2 MiB extent
/// with an 8 MiB window at level 19). Incompressible extents are the exception (see
/// [`REF_SCREEN_LEVEL`]).
fn encode_extent(
    data: &[u8],
    offset: u64,
    hint: Option<i64>,
    base: &File,
    index: &BaseIndex,
    level: i32,
    delta_format: u8,
) -> io::Result<(Op, Vec<u8>)> {
    let len = data.len() as u64;
    // Already-compressed data (squashfs-xz blocks, media) leaves only exact matches to find:
    // a high level and a wide window cost time there and save nothing (see `QUICK_LEVEL`).
    let quick = zstd::bulk::compress(data, QUICK_LEVEL)?;
    let quick_len = quick.len();
    let incompressible = quick_len as u64 * 1000 >= len * INCOMPRESSIBLE_PERMILLE;
    let (patch_level, span) = if incompressible {
        (QUICK_LEVEL, 2)
    } else {
        (level, 4)
    };
    let mut best = (Encoding::Replace, quick);
    let Some((src, window_len)) = find_window(data, offset, hint, index, span) else {
        if !incompressible {
            best.1 = zstd::bulk::compress(data, level)?;
        }
        return Ok(best.0.op(len, (0, 0), best.1));
    };
    let mut window = vec![0u8; window_len as usize];
    base.read_exact_at(&mut window, src)?;
    let mut tried = vec!["replace"];
    let mut filters = vec![BranchFilter::None];
    if delta_format >= 4 && !incompressible {
        // Positions in the code's own address space: the window's, shifted by where the
        // extent lies (and, for a paired file, by the file's move: the hint).
        let origin = (offset as i64) + hint.unwrap_or(0) - src as i64;
        filters.push(BranchFilter::X86 { origin });
    }
    for filter in filters {
        // The filtered try only where the plain patch is already tiny (`X86_TRY_BELOW`).
        if filter != BranchFilter::None && best.1.len() * X86_TRY_BELOW >= data.len() {
            continue;
        }
        let lzma_patches = delta_format >= 3;
        if let Some((codec, stored)) =
            encode_bsdiff(data, &window, filter, patch_level, lzma_patches)?
        {
            tried.push(if filter == BranchFilter::None {
                "bsdiff"
            } else {
                "bsdiff-x86"
            });
            if stored.len() < best.1.len() {
                best = (Encoding::Bsdiff(codec, filter), stored);
            }
        }
    }
    // `replace` at the bundle's level is the slowest encoder after zstd_ref (level 19: ~1 s
    // per 2 MiB of code); where bsdiff needs under a third of the quick frame, it cannot win.
    let mut replace_len = quick_len;
    if !incompressible && best.1.len() * 3 > quick_len {
        let replace = zstd::bulk::compress(data, level)?;
        replace_len = replace.len();
        if replace.len() < best.1.len() {
            best = (Encoding::Replace, replace);
        }
    }
    // Windows are at most 4 × 2 MiB, within what readers allow zstd_ref (MAX_REF_WINDOW).
    if window_len <= MAX_REF_WINDOW && (incompressible || best.1.len() * 2 > replace_len) {
        tried.push("zstd_ref");
        // An incompressible extent (changed blocks of compressed data beside old ones) has
        // only short matches left to find (≥ 12 bytes: archive headers, lightly edited stored
        // files), which zstd codes in a few bytes and bsdiff's control triples do not pay
        // for: a quick look first, the full level only where it already won.
        let first_level = if incompressible {
            REF_SCREEN_LEVEL
        } else {
            level
        };
        if let Some(stored) = zstd_ref_below(data, &window, [first_level, level], best.1.len()) {
            best = (Encoding::ZstdRef, stored);
        }
    }
    let (op, stored) = best.0.op(len, (src, window_len), best.1);
    if std::env::var_os("OTA_DELTA_DEBUG").is_some() {
        eprintln!(
            "extent @{offset} len {len} hint {hint:?} window {src}+{window_len}{}: tried {tried:?}, replace {replace_len}, chose {} {}",
            if incompressible { " (incompressible)" } else { "" },
            op.kind_name(),
            stored.len()
        );
    }
    Ok((op, stored))
}

/// The encoding [`encode_extent`] chose for an extent, before its operation is made.
#[derive(Clone, Copy)]
enum Encoding {
    Replace,
    Bsdiff(PatchCodec, BranchFilter),
    ZstdRef,
}

impl Encoding {
    /// The operation writing `len` bytes from `stored` (and the base window `(src, len)`).
    fn op(self, len: u64, (src, window): (u64, u64), stored: Vec<u8>) -> (Op, Vec<u8>) {
        let sha256 = Sha256Digest::of(&stored);
        let stored_len = stored.len() as u32;
        let op = match self {
            Encoding::Replace => Op::Replace {
                len,
                stored: stored_len,
                sha256,
            },
            Encoding::Bsdiff(codec, filter) => Op::Bsdiff {
                codec,
                filter,
                len,
                src,
                window,
                stored: stored_len,
                sha256,
            },
            Encoding::ZstdRef => Op::ZstdRef {
                len,
                src,
                window,
                stored: stored_len,
                sha256,
            },
        };
        (op, stored)
    }
}

/// zstd level of the first `zstd_ref` try on an incompressible extent (≈ 0.07 s per 2 MiB
/// extent with a 4 MiB window, against ≈ 0.8 s at level 19). On the squashfs-xz pair it beat
/// bsdiff on 7 of 31 extents, all near the image's end; level 19 on those 7 saved 70 KB (0.7 %)
/// where level 9 saved 58 KB (docs/delta.md).
const REF_SCREEN_LEVEL: i32 = 9;

/// `data` compressed by zstd with `window` as its prefix at `levels[0]` and, where that is
/// under `to_beat` bytes and the levels differ, again at `levels[1]`: the smaller of them,
/// when it is under `to_beat`. A failed compression is only a candidate less.
fn zstd_ref_below(data: &[u8], window: &[u8], levels: [i32; 2], to_beat: usize) -> Option<Vec<u8>> {
    let first = compress_with_prefix(data, window, levels[0]).ok()?;
    if first.len() >= to_beat {
        return None;
    }
    if levels[1] != levels[0] {
        if let Ok(full) = compress_with_prefix(data, window, levels[1]) {
            if full.len() < first.len() {
                return Some(full);
            }
        }
    }
    Some(first)
}

/// The x86-filtered bsdiff is tried only for extents whose best encoding so far is under
/// 1/`X86_TRY_BELOW` of their length: code that barely changed, where moved `call` targets are
/// most of what is left. There it paid on every code extent of the numpy pair (−9 %); on libarrow,
/// whose patches are 0.7–4 % of their extents, it won 6.6 KB of 1.5 MB (0.4 %) for twice the
/// generation time (docs/delta.md).
const X86_TRY_BELOW: usize = 256;

/// Fewest `call`/`jmp` displacements the x86 filter must convert per MiB of an extent for
/// the filtered bsdiff to be tried: x86-64 code has thousands (numpy's and libarrow's code
/// extents: over 10,000 per MiB); other bytes have about 64 by chance (1 in 2^14).
const X86_CONVERSIONS_PER_MIB: usize = 1000;

/// The extent's bsdiff patch against the window, stored by [`encode_patch`]; `None` when the
/// patch is over what readers accept, or, with the x86 filter (output byte `j` at window
/// position `origin + j`), when the extent does not look like x86 code.
fn encode_bsdiff(
    data: &[u8],
    window: &[u8],
    filter: BranchFilter,
    level: i32,
    lzma_patches: bool,
) -> io::Result<Option<(PatchCodec, Vec<u8>)>> {
    let patch = match filter {
        BranchFilter::None => bsdiff::diff(window, data)?,
        BranchFilter::X86 { origin } => {
            let mut new = data.to_vec();
            let converted = branch::filter(&mut new, origin);
            if converted * (1 << 20) < X86_CONVERSIONS_PER_MIB * data.len() {
                return Ok(None);
            }
            let mut old = window.to_vec();
            branch::filter_window(&mut old);
            bsdiff::diff(&old, &new)?
        }
    };
    if patch.plain_len() as u64 > super::apply::max_patch_len(data.len() as u64) {
        return Ok(None);
    }
    encode_patch(&patch, level, lzma_patches).map(Some)
}

/// Largest plain patch also tried with zstd when LZMA2 is (delta format 3).
const ZSTD_PATCH_MAX_WITH_LZMA: usize = 64 << 10;

/// Stores a bsdiff patch with the smallest of zstd, bzip2 and (`lzma_patches`: delta format
/// 3) LZMA2 in the plain and the sparse layout. bsdiff's diff stream is mostly zeros with
/// scattered bytes: bzip2's BWT often beats zstd there, and LZMA2 beats both on most code;
/// the sparse layout wins where changes are few and far apart (measured in docs/delta.md).
fn encode_patch(
    patch: &RawPatch,
    level: i32,
    lzma_patches: bool,
) -> io::Result<(PatchCodec, Vec<u8>)> {
    let plain = patch.plain();
    let mut candidates = vec![(PatchCodec::Bzip2, bzip2_compress(&plain)?)];
    // zstd at level 19 costs as much as LZMA2 on a large patch and never came out smallest
    // there beside it (libarrow: 0 of 37 extents); on small ones its small framing can win.
    if !lzma_patches || plain.len() <= ZSTD_PATCH_MAX_WITH_LZMA {
        candidates.push((PatchCodec::Zstd, zstd::bulk::compress(&plain, level)?));
    }
    if lzma_patches {
        let sparse = patch.sparse();
        candidates.push((PatchCodec::Lzma2, lzma::compress(&plain, PLAIN_TUNING)?));
        for tuning in SPARSE_TUNINGS {
            candidates.push((PatchCodec::Lzma2Sparse, lzma::compress(&sparse, tuning)?));
        }
    }
    if std::env::var_os("OTA_DELTA_DEBUG").is_some() {
        let sizes: Vec<String> = candidates
            .iter()
            .map(|(codec, stored)| format!("{codec:?} {}", stored.len()))
            .collect();
        eprintln!("bsdiff patch {}: {}", plain.len(), sizes.join(", "));
    }
    // bzip2 is the slowest to decode (libarrow: 11 bzip2 patches took 20 % of the apply time,
    // 26 LZMA2 ones 14 %): beside LZMA2 it must save 1/BZIP2_MARGIN of the size to be kept.
    let cost = |(codec, stored): &(PatchCodec, Vec<u8>)| match codec {
        PatchCodec::Bzip2 if lzma_patches => stored.len() + stored.len() / BZIP2_MARGIN,
        _ => stored.len(),
    };
    let smallest = candidates
        .into_iter()
        .min_by_key(cost)
        .ok_or_else(|| io::Error::other("no patch encoding"))?;
    Ok(smallest)
}

/// See [`encode_patch`]: on libarrow this margin gave up 9.1 KB (0.6 %) to decode 9 of its
/// 11 bzip2 patches with LZMA2 instead.
const BZIP2_MARGIN: usize = 8;

fn bzip2_compress(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut enc = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::best());
    enc.write_all(data)?;
    enc.finish()
}

/// zstd window log covering `window + len` bytes.
pub(super) fn window_log(window: u64, len: u64) -> u32 {
    let total = (window + len).max(1 << 10);
    (64 - (total - 1).leading_zeros()).clamp(10, 27)
}

/// zstd at `level` with `window` as reference prefix (the `zstd_ref` and `gzip` encoders).
pub(super) fn compress_with_prefix(data: &[u8], window: &[u8], level: i32) -> io::Result<Vec<u8>> {
    let err = |code: usize| io::Error::other(format!("zstd: {}", zstd_safe::get_error_name(code)));
    let mut cctx = zstd_safe::CCtx::create();
    cctx.set_parameter(zstd_safe::CParameter::CompressionLevel(level))
        .map_err(err)?;
    cctx.set_parameter(zstd_safe::CParameter::WindowLog(window_log(
        window.len() as u64,
        data.len() as u64,
    )))
    .map_err(err)?;
    cctx.ref_prefix(window).map_err(err)?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).map_err(err)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(start: usize, len: usize) -> Run {
        Run::New {
            start,
            len,
            hint: None,
        }
    }

    fn shape(runs: &[Run]) -> Vec<(char, u64)> {
        runs.iter()
            .map(|r| match r {
                Run::Zero(l) => ('z', *l),
                Run::Copy { len, .. } => ('c', *len),
                Run::Prepass { len, .. } => ('g', *len),
                Run::New { len, .. } => ('n', *len as u64),
            })
            .collect()
    }

    #[test]
    fn new_runs_merge_across_small_copies_but_never_across_a_gzip_file() {
        let runs = vec![
            new(0, 4096),
            Run::Copy { len: 4096, src: 0 },
            new(8192, 4096),
        ];
        assert_eq!(shape(&merge_new_runs(runs)), vec![('n', 12288)]);
        let runs = vec![
            new(0, 4096),
            Run::Prepass {
                index: 0,
                len: 4096,
            },
            new(8192, 4096),
        ];
        assert_eq!(
            shape(&merge_new_runs(runs)),
            vec![('n', 4096), ('g', 4096), ('n', 4096)]
        );
    }
}
