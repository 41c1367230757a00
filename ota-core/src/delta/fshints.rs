//! Filesystem hints for the generator: for the blocks of the target that belong to a file,
//! where that file's old version lies in the base.
//!
//! Both images are read as ext2/3/4 ([`super::ext4`]); each new file is paired with the old
//! file of the same path, else with an old file whose path differs only in its digits
//! (`libfoo.so.1.2.3` → `libfoo.so.1.2.4`, `modules/6.1.0-26` → `modules/6.1.0-27`; the
//! closest in size wins). A target block at logical block *L* of a file is hinted with the
//! *diagonal* (base position − target position) of block *L* of the old file, so the encoder
//! diffs it against the old file wherever `mkfs.ext4 -d` put it. Blocks of a file that grew
//! past its old end take the diagonal of the old file's nearest extent.
//!
//! Hints only choose references; they never make an operation wrong. A base or target that is
//! not ext4, or is malformed, gives no hints.

use super::ext4::{read_fs_map, Ext4Error, Extent, FsFile, FsMap, ReadAt};
use std::collections::HashMap;

/// A target byte range whose old version is `diag` bytes away in the base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct HintRange {
    pub start: u64,
    pub end: u64,
    pub diag: i64,
}

/// A gzip file of the target (contiguous bytes `target.0..target.0+target.1`) and its old
/// version in the base (contiguous too): a candidate for a `gzip` operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct GzipPair {
    pub target: (u64, u64),
    pub base: (u64, u64),
}

/// Sorted, non-overlapping hint ranges over the target.
#[derive(Debug, Default)]
pub(super) struct FsHints {
    ranges: Vec<HintRange>,
    /// Paired `.gz` files, sorted by target offset.
    pub gzip: Vec<GzipPair>,
    /// Files paired by path and by path-without-digits, for the debug summary.
    pub paired: (usize, usize),
}

impl FsHints {
    /// Reads both images; gives no hints (and says why) when either is not a sound ext4.
    pub fn for_images(
        base: &mut dyn ReadAt,
        base_len: u64,
        target: &mut dyn ReadAt,
        target_len: u64,
    ) -> Result<Self, Ext4Error> {
        let old = read_fs_map(base, base_len)?;
        let new = read_fs_map(target, target_len)?;
        if old.block_size != new.block_size {
            return Err(Ext4Error::Malformed("block sizes differ".into()));
        }
        Ok(Self::pair(&old, &new))
    }

    fn pair(old: &FsMap, new: &FsMap) -> Self {
        let bs = new.block_size as i64;
        let by_path: HashMap<&[u8], &FsFile> =
            old.files.iter().map(|f| (f.path.as_slice(), f)).collect();
        let mut by_shape: HashMap<Vec<u8>, Vec<&FsFile>> = HashMap::new();
        let new_paths: std::collections::HashSet<&[u8]> =
            new.files.iter().map(|f| f.path.as_slice()).collect();
        for f in old
            .files
            .iter()
            .filter(|f| !new_paths.contains(f.path.as_slice()))
        {
            by_shape.entry(shape(&f.path)).or_default().push(f);
        }
        let mut ranges = Vec::new();
        let mut paired = (0, 0);
        let mut gzip = Vec::new();
        for file in &new.files {
            let old_file = match by_path.get(file.path.as_slice()) {
                Some(f) => {
                    paired.0 += 1;
                    *f
                }
                None => match by_shape
                    .get(&shape(&file.path))
                    .and_then(|c| c.iter().min_by_key(|o| o.size.abs_diff(file.size)).copied())
                {
                    Some(f) => {
                        paired.1 += 1;
                        f
                    }
                    None => continue,
                },
            };
            for ext in &file.extents {
                hint_extent(ext, &old_file.extents, bs, &mut ranges);
            }
            if let Some(pair) = gzip_pair(file, old_file, new.block_size) {
                gzip.push(pair);
            }
        }
        gzip.sort_by_key(|g| g.target.0);
        gzip.dedup_by_key(|g| g.target.0);
        ranges.sort_by_key(|r| r.start);
        // A file with several hard links is mapped once per path: keep the first mapping.
        let mut merged: Vec<HintRange> = Vec::with_capacity(ranges.len());
        for r in ranges {
            match merged.last_mut() {
                Some(last) if r.start < last.end => {}
                Some(last) if r.start == last.end && r.diag == last.diag => last.end = r.end,
                _ => merged.push(r),
            }
        }
        Self {
            ranges: merged,
            gzip,
            paired,
        }
    }

    /// Whether there are no hints at all.
    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    /// The diagonal hinted for the target byte at `offset`.
    pub fn diag_at(&self, offset: u64) -> Option<i64> {
        let i = self.ranges.partition_point(|r| r.end <= offset);
        self.ranges
            .get(i)
            .filter(|r| r.start <= offset)
            .map(|r| r.diag)
    }
}

/// The pair as a `gzip` candidate when both are `.gz` files stored in one piece, the new one
/// small enough for one operation and the old one for one reference.
fn gzip_pair(new: &FsFile, old: &FsFile, block_size: u64) -> Option<GzipPair> {
    if !new.path.ends_with(b".gz") || !old.path.ends_with(b".gz") {
        return None;
    }
    let new_start = contiguous(new, block_size)?;
    let old_start = contiguous(old, block_size)?;
    (new.size <= super::MAX_DATA_OP_LEN && old.size <= super::MAX_REF_WINDOW).then_some(GzipPair {
        target: (new_start, new.size),
        base: (old_start, old.size),
    })
}

/// The byte offset of a file stored in one physical run from its first byte to its last.
fn contiguous(file: &FsFile, block_size: u64) -> Option<u64> {
    let first = file.extents.first()?;
    let joined = file.extents.windows(2).all(|w| {
        w[1].logical == w[0].logical + w[0].len && w[1].physical == w[0].physical + w[0].len
    });
    let blocks: u64 = file.extents.iter().map(|e| e.len).sum();
    (first.logical == 0 && joined && file.size > 0 && blocks * block_size >= file.size)
        .then_some(first.physical * block_size)
}

/// A path with every run of digits replaced by `#`: versioned names of the same file agree.
fn shape(path: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len());
    for &b in path {
        if b.is_ascii_digit() {
            if out.last() != Some(&b'#') {
                out.push(b'#');
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// Hints for one new extent from the old file's extents (sorted by logical block).
fn hint_extent(ext: &Extent, old: &[Extent], bs: i64, out: &mut Vec<HintRange>) {
    if old.is_empty() {
        return;
    }
    // Diagonal, in blocks, of old extent `o` for blocks of `ext`.
    let diag = |o: &Extent| {
        (o.physical as i64 - o.logical as i64) - (ext.physical as i64 - ext.logical as i64)
    };
    let end = ext.logical + ext.len;
    let mut l = ext.logical;
    while l < end {
        // The old extent holding logical block l, or the nearest one before (else after) it.
        let i = old.partition_point(|o| o.logical + o.len <= l);
        let (seg_end, d) = match old.get(i) {
            Some(o) if o.logical <= l => ((o.logical + o.len).min(end), diag(o)),
            Some(o) => {
                let near = if i > 0 { &old[i - 1] } else { o };
                (o.logical.min(end), diag(near))
            }
            None => (end, diag(&old[old.len() - 1])),
        };
        let t = |b: u64| (ext.physical + (b - ext.logical)) * bs as u64;
        out.push(HintRange {
            start: t(l),
            end: t(seg_end),
            diag: d * bs,
        });
        l = seg_end;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, extents: &[(u64, u64, u64)]) -> FsFile {
        FsFile {
            path: path.as_bytes().to_vec(),
            size,
            extents: extents
                .iter()
                .map(|&(logical, physical, len)| Extent {
                    logical,
                    physical,
                    len,
                })
                .collect(),
        }
    }

    fn map(files: Vec<FsFile>) -> FsMap {
        FsMap {
            block_size: 4096,
            files,
        }
    }

    #[test]
    fn relocated_and_renamed_files_are_paired() {
        let old = map(vec![
            file("usr/lib/libfoo.so.1.2.3", 8192, &[(0, 100, 2)]),
            file("etc/passwd", 4096, &[(0, 50, 1)]),
        ]);
        let new = map(vec![
            file("etc/passwd", 4096, &[(0, 70, 1)]),
            file("usr/lib/libfoo.so.1.2.4", 12288, &[(0, 200, 3)]),
            file("usr/bin/new", 4096, &[(0, 300, 1)]),
        ]);
        let h = FsHints::pair(&old, &new);
        assert_eq!(h.paired, (1, 1));
        assert_eq!(h.diag_at(70 * 4096), Some(-20 * 4096));
        // All three blocks of the grown library point at the old one (the third extrapolated).
        for b in 200..203 {
            assert_eq!(h.diag_at(b * 4096 + 5), Some(-100 * 4096));
        }
        assert_eq!(h.diag_at(300 * 4096), None);
        assert_eq!(h.diag_at(0), None);
    }

    #[test]
    fn fragmented_files_map_block_by_block() {
        let old = map(vec![file("a", 4 * 4096, &[(0, 10, 2), (2, 40, 2)])]);
        let new = map(vec![file("a", 4 * 4096, &[(0, 100, 4)])]);
        let h = FsHints::pair(&old, &new);
        assert_eq!(h.diag_at(100 * 4096), Some(-90 * 4096));
        assert_eq!(h.diag_at(101 * 4096), Some(-90 * 4096));
        assert_eq!(h.diag_at(102 * 4096), Some(-62 * 4096));
        assert_eq!(h.diag_at(103 * 4096 + 4095), Some(-62 * 4096));
        assert_eq!(h.diag_at(104 * 4096), None);
    }
}
