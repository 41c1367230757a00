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

use super::index::{block_key, for_each_anchor, read_full, BaseIndex};
use super::{bsdiff, encode_ops, Op, BLOCK, MAX_DATA_OP_LEN, MAX_REF_WINDOW, MAX_WINDOW};
use crate::digest::Sha256Digest;
use rayon::prelude::*;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use zstd::zstd_safe;

const SEGMENT: usize = 32 << 20;
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
                    k.3 += op.stored();
                }
                None => by_kind.push((op.kind_name(), 1, op.len(), op.stored())),
            }
        }
        by_kind
    }
}

enum Run {
    Zero(u64),
    Copy { len: u64, src: u64 },
    New { start: usize, len: usize },
}

/// Generates a delta from `base` to `target`, writing operation data to `data_out` in
/// operation order. `progress` gets target bytes processed.
pub fn generate(
    base: &File,
    target: &mut dyn Read,
    zstd_level: i32,
    data_out: &mut dyn Write,
    progress: &(dyn Fn(u64) + Sync),
) -> io::Result<GeneratedDelta> {
    let mut base_reader = base;
    base_reader.seek(SeekFrom::Start(0))?;
    let index = BaseIndex::build(&mut base_reader)?;
    let mut hasher = Sha256::new();
    let mut ops: Vec<Op> = Vec::new();
    let mut data_size = 0u64;
    let mut offset = 0u64;
    let mut segment = vec![0u8; SEGMENT];
    loop {
        let n = read_full(target, &mut segment)?;
        if n == 0 {
            break;
        }
        let seg = &segment[..n];
        hasher.update(seg);
        let runs = merge_new_runs(classify(seg, base, &index)?);
        // Encode the new extents in parallel; order is kept by collect.
        let encoded: Vec<Option<(Op, Vec<u8>)>> = runs
            .par_iter()
            .map(|run| match run {
                Run::New { start, len } => encode_extent(
                    &seg[*start..*start + *len],
                    offset + *start as u64,
                    base,
                    &index,
                    zstd_level,
                )
                .map(Some),
                _ => Ok(None),
            })
            .collect::<io::Result<_>>()?;
        for (run, enc) in runs.into_iter().zip(encoded) {
            match (run, enc) {
                (Run::Zero(len), _) => push_op(&mut ops, Op::Zero { len }),
                (Run::Copy { len, src }, _) => push_op(&mut ops, Op::Copy { len, src }),
                (Run::New { .. }, Some((op, data))) => {
                    data_out.write_all(&data)?;
                    data_size += data.len() as u64;
                    ops.push(op);
                }
                (Run::New { .. }, None) => return Err(io::Error::other("extent was not encoded")),
            }
        }
        offset += n as u64;
        progress(n as u64);
        if n < SEGMENT {
            break;
        }
    }
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

/// Classifies each block of a segment and collapses neighbours into runs.
fn classify(seg: &[u8], base: &File, index: &BaseIndex) -> io::Result<Vec<Run>> {
    let mut runs: Vec<Run> = Vec::new();
    let mut check = vec![0u8; BLOCK];
    for (i, block) in seg.chunks(BLOCK).enumerate() {
        let start = i * BLOCK;
        let len = block.len() as u64;
        let run = if block.iter().all(|&b| b == 0) {
            Run::Zero(len)
        } else {
            let found = if block.len() == BLOCK {
                match index.blocks.get(&block_key(block)) {
                    Some(&b) => {
                        let src = u64::from(b) * BLOCK as u64;
                        base.read_exact_at(&mut check, src)?;
                        (check == block).then_some(src)
                    }
                    None => None,
                }
            } else {
                None
            };
            match found {
                Some(src) => Run::Copy { len, src },
                None => Run::New {
                    start,
                    len: block.len(),
                },
            }
        };
        match (runs.last_mut(), run) {
            (Some(Run::Zero(l)), Run::Zero(more)) => *l += more,
            (
                Some(Run::Copy { len, src }),
                Run::Copy {
                    len: more,
                    src: next,
                },
            ) if *src + *len == next => *len += more,
            (Some(Run::New { len, .. }), Run::New { len: more, .. }) => *len += more,
            (_, run) => runs.push(run),
        }
    }
    Ok(runs)
}

/// Merges new extents separated by small gaps and splits extents longer than
/// [`MAX_DATA_OP_LEN`].
fn merge_new_runs(runs: Vec<Run>) -> Vec<Run> {
    let max = MAX_DATA_OP_LEN as usize;
    let mut out: Vec<Run> = Vec::new();
    let mut i = 0;
    while i < runs.len() {
        if let Run::New { start, mut len } = runs[i] {
            // Absorb `gap, New` pairs while the gap is small and the extent stays bounded.
            let mut j = i + 1;
            while j + 1 < runs.len() {
                let gap = match runs[j] {
                    Run::Zero(l) | Run::Copy { len: l, .. } => l,
                    Run::New { .. } => break,
                };
                let Run::New {
                    start: next,
                    len: next_len,
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
                });
                at += piece;
            }
            i = j;
        } else {
            out.push(match runs[i] {
                Run::Zero(l) => Run::Zero(l),
                Run::Copy { len, src } => Run::Copy { len, src },
                Run::New { .. } => unreachable!("handled above"),
            });
            i += 1;
        }
    }
    out
}

/// The base window most likely to hold the old version of `data` (at target `offset`): the
/// diagonal (base position − target position) most anchors agree on, or the same offset when
/// no anchor matches.
fn find_window(data: &[u8], offset: u64, index: &BaseIndex) -> Option<(u64, u64)> {
    if index.size == 0 {
        return None;
    }
    let mut diags: Vec<i64> = Vec::new();
    for_each_anchor(data, |pos, key| {
        if let Some(&(spos, _)) = index.anchors.get(&key) {
            diags.push(spos as i64 - (offset + pos as u64) as i64);
        }
    });
    let diag = if diags.is_empty() {
        0
    } else {
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
        in_bucket[in_bucket.len() / 2]
    };
    let len = data.len() as u64;
    let want = (len * 4).clamp(64 << 10, MAX_WINDOW).min(index.size);
    let center = offset as i64 + diag + len as i64 / 2;
    let start = (center - want as i64 / 2).clamp(0, (index.size - want) as i64) as u64;
    Some((start, want))
}

/// Encodes one new extent with the smallest of `replace`, `bsdiff` and `zstd_ref`.
///
/// `zstd_ref` is tried only when bsdiff saved less than half of `replace`: where bsdiff wins
/// big (recompiled code, whose bytes mostly differ by shifted addresses) zstd with a prefix
/// never came close in our measurements, and it is the slowest encoder (≈ 5 s per 2 MiB extent
/// with an 8 MiB window at level 19).
fn encode_extent(
    data: &[u8],
    offset: u64,
    base: &File,
    index: &BaseIndex,
    level: i32,
) -> io::Result<(Op, Vec<u8>)> {
    let len = data.len() as u64;
    let replace = zstd::bulk::compress(data, level)?;
    let replace_len = replace.len();
    let mut best = (
        Op::Replace {
            len,
            stored: replace.len() as u32,
            sha256: Sha256Digest::of(&replace),
        },
        replace,
    );
    let Some((src, window_len)) = find_window(data, offset, index) else {
        return Ok(best);
    };
    let mut window = vec![0u8; window_len as usize];
    base.read_exact_at(&mut window, src)?;
    let mut tried = vec!["replace"];
    let patch = bsdiff::diff(&window, data)?;
    if (patch.len() as u64) <= super::apply::max_patch_len(len) {
        // bsdiff's diff stream is mostly zeros with scattered bytes: bzip2's BWT often beats
        // zstd there (measured in docs/delta.md), so keep whichever is smaller.
        let zstd_patch = zstd::bulk::compress(&patch, level)?;
        let bz2_patch = bzip2_compress(&patch)?;
        let (bzip2, stored) = if bz2_patch.len() < zstd_patch.len() {
            (true, bz2_patch)
        } else {
            (false, zstd_patch)
        };
        tried.push("bsdiff");
        if stored.len() < best.1.len() {
            best = (
                Op::Bsdiff {
                    bzip2,
                    len,
                    src,
                    window: window_len,
                    stored: stored.len() as u32,
                    sha256: Sha256Digest::of(&stored),
                },
                stored,
            );
        }
    }
    // Windows are at most 4 × 2 MiB, within what readers allow zstd_ref (MAX_REF_WINDOW).
    if best.1.len() * 2 > replace_len && window_len <= MAX_REF_WINDOW {
        tried.push("zstd_ref");
        if let Ok(stored) = compress_with_prefix(data, &window, level) {
            if stored.len() < best.1.len() {
                best = (
                    Op::ZstdRef {
                        len,
                        src,
                        window: window_len,
                        stored: stored.len() as u32,
                        sha256: Sha256Digest::of(&stored),
                    },
                    stored,
                );
            }
        }
    }
    if std::env::var_os("OTA_DELTA_DEBUG").is_some() {
        eprintln!(
            "extent @{offset} len {len} window {src}+{window_len}: tried {tried:?}, replace {replace_len}, chose {} {}",
            best.0.kind_name(),
            best.1.len()
        );
    }
    Ok(best)
}

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

fn compress_with_prefix(data: &[u8], window: &[u8], level: i32) -> io::Result<Vec<u8>> {
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
