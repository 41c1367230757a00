//! The `bsdiff` operation's patch: bsdiff's control/diff/extra streams, stored raw (varints)
//! in one of two layouts and compressed with zstd, bzip2 or LZMA2 (the op kind says which).
//!
//! - *plain*: varint count, the control triples, the diff bytes, the extra bytes;
//! - *sparse* (LZMA2 only, delta format 3): the diff bytes, mostly zeros in recompiled code,
//!   are stored as runs of changed bytes: varint run count, every run's gap (zero bytes
//!   since the previous run) then every run's length as varints, then the runs' bytes.
//!
//! The diff itself is computed by the `qbsdiff` crate (suffix-array bsdiff, BSDIFF40 output);
//! we unpack its bzip2 blocks into our raw form. Applying is our own small, bounds-checked loop.

use std::io::{self, Read};

fn offtin(b: &[u8]) -> i64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[..8]);
    let magnitude = (u64::from_le_bytes(v) & !(1 << 63)) as i64;
    if b[7] & 0x80 != 0 {
        -magnitude
    } else {
        magnitude
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bunzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(data).read_to_end(&mut out)?;
    Ok(out)
}

/// A computed patch, before it is laid out.
pub(super) struct RawPatch {
    /// Varint count, then the control triples.
    control: Vec<u8>,
    /// One byte per byte taken from the old data: new minus old, wrapping.
    diff: Vec<u8>,
    /// New bytes written as they are.
    extra: Vec<u8>,
}

impl RawPatch {
    /// Bytes of the plain layout.
    pub(super) fn plain_len(&self) -> usize {
        self.control.len() + self.diff.len() + self.extra.len()
    }

    /// The plain layout: control, diff, extra.
    pub(super) fn plain(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.plain_len());
        out.extend_from_slice(&self.control);
        out.extend_from_slice(&self.diff);
        out.extend_from_slice(&self.extra);
        out
    }

    /// The sparse layout: control, the diff's runs of non-zero bytes, extra.
    pub(super) fn sparse(&self) -> Vec<u8> {
        let (mut gaps, mut lens, mut bytes) = (Vec::new(), Vec::new(), Vec::new());
        let (mut runs, mut at, mut last_end) = (0u64, 0usize, 0usize);
        while at < self.diff.len() {
            if self.diff[at] == 0 {
                at += 1;
                continue;
            }
            let start = at;
            while at < self.diff.len() && self.diff[at] != 0 {
                at += 1;
            }
            put_varint(&mut gaps, (start - last_end) as u64);
            put_varint(&mut lens, (at - start) as u64);
            bytes.extend_from_slice(&self.diff[start..at]);
            runs += 1;
            last_end = at;
        }
        let mut out = self.control.clone();
        put_varint(&mut out, runs);
        for part in [&gaps, &lens, &bytes, &self.extra] {
            out.extend_from_slice(part);
        }
        out
    }
}

/// Diffs `target` against `window`.
pub(super) fn diff(window: &[u8], target: &[u8]) -> io::Result<RawPatch> {
    let mut patch = Vec::new();
    qbsdiff::Bsdiff::new(window, target)
        .compression_level(1)
        .compare(io::Cursor::new(&mut patch))?;
    let bad = || io::Error::other("qbsdiff produced an unexpected patch");
    if patch.len() < 32 || &patch[..8] != b"BSDIFF40" {
        return Err(bad());
    }
    let ctrl_len = usize::try_from(offtin(&patch[8..16])).map_err(|_| bad())?;
    let diff_len = usize::try_from(offtin(&patch[16..24])).map_err(|_| bad())?;
    let body = &patch[32..];
    if ctrl_len + diff_len > body.len() {
        return Err(bad());
    }
    let ctrl = bunzip(&body[..ctrl_len])?;
    let diff = bunzip(&body[ctrl_len..ctrl_len + diff_len])?;
    let extra = bunzip(&body[ctrl_len + diff_len..])?;
    if ctrl.len() % 24 != 0 {
        return Err(bad());
    }
    let mut control = Vec::with_capacity(ctrl.len() / 2);
    put_varint(&mut control, (ctrl.len() / 24) as u64);
    for triple in ctrl.chunks_exact(24) {
        let add = u64::try_from(offtin(&triple[0..8])).map_err(|_| bad())?;
        let copy = u64::try_from(offtin(&triple[8..16])).map_err(|_| bad())?;
        let seek = offtin(&triple[16..24]);
        put_varint(&mut control, add);
        put_varint(&mut control, copy);
        put_varint(&mut control, ((seek << 1) ^ (seek >> 63)) as u64);
    }
    Ok(RawPatch {
        control,
        diff,
        extra,
    })
}

/// Most control entries a patch may have for `len` output bytes. bsdiff emits an entry per
/// exact match longer than a few bytes (qbsdiff: > 12, bsdiff 4: > 8), plus a few empty
/// entries that only seek (one per parallel job and at the start of each).
pub(super) fn max_control_entries(len: u64) -> u64 {
    len / 8 + 64
}

/// Most control entries that write nothing (`add` and `copy` both 0) a patch may have.
pub(super) const MAX_EMPTY_ENTRIES: u64 = 64;

/// Bytes of old data handed out per call of [`OldBytes::get`] (at most).
pub(super) const OLD_PIECE: usize = 64 << 10;

/// The old bytes a patch is applied to: a window of the base, read piece by piece.
pub(super) trait OldBytes {
    /// The window's length.
    fn len(&self) -> u64;
    /// `n` (at most [`OLD_PIECE`]) bytes at window offset `at`, inside the window.
    fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]>;
}

impl OldBytes for &[u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        usize::try_from(at)
            .ok()
            .and_then(|at| <[u8]>::get(self, at..at.checked_add(n)?))
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the window"))
    }
}

/// Why a patch could not be applied.
#[derive(Debug)]
pub(super) enum PatchError {
    /// Reading the old bytes failed.
    Old(io::Error),
    /// The patch is malformed or does not fit the operation.
    Bad(String),
}

impl From<&str> for PatchError {
    fn from(s: &str) -> Self {
        PatchError::Bad(s.to_owned())
    }
}

impl From<String> for PatchError {
    fn from(s: String) -> Self {
        PatchError::Bad(s)
    }
}

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, PatchError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at).ok_or("patch ends inside a varint")?;
        *at += 1;
        value |= u64::from(b & 0x7f)
            .checked_shl(shift)
            .filter(|v| v >> shift == u64::from(b & 0x7f))
            .ok_or("patch has a varint over 64 bits")?;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("patch has an overlong varint".into())
}

/// One control entry: `add` bytes of diff + old, `copy` bytes of extra, then seek in old.
fn triple(patch: &[u8], at: &mut usize) -> Result<(u64, u64, i64), PatchError> {
    let add = varint(patch, at)?;
    let copy = varint(patch, at)?;
    let zz = varint(patch, at)?;
    Ok((add, copy, ((zz >> 1) as i64) ^ -((zz & 1) as i64)))
}

/// A patch's control block, read once to check it (it is never collected).
struct Control<'a> {
    /// Number of triples.
    count: u64,
    /// The triples' bytes.
    entries: &'a [u8],
    /// Σ add: diff bytes the entries consume.
    adds: u64,
    /// Σ copy: extra bytes the entries consume.
    copies: u64,
}

/// Reads the control block at the start of `patch`: the entry count and empty entries are
/// bounded and the entries write exactly `out_len` bytes. Returns it and where it ends.
fn read_control(patch: &[u8], out_len: u64) -> Result<(Control<'_>, usize), PatchError> {
    let mut at = 0usize;
    let count = varint(patch, &mut at)?;
    if count > max_control_entries(out_len) {
        return Err(format!(
            "patch has {count} control entries for {out_len} bytes (at most {})",
            max_control_entries(out_len)
        )
        .into());
    }
    let start = at;
    let (mut adds, mut copies, mut empty) = (0u64, 0u64, 0u64);
    for _ in 0..count {
        let (add, copy, _) = triple(patch, &mut at)?;
        if add == 0 && copy == 0 {
            empty += 1;
            if empty > MAX_EMPTY_ENTRIES {
                return Err(format!(
                    "patch has more than {MAX_EMPTY_ENTRIES} control entries that write nothing"
                )
                .into());
            }
        }
        adds = adds.checked_add(add).ok_or("patch sizes overflow")?;
        copies = copies.checked_add(copy).ok_or("patch sizes overflow")?;
    }
    if adds.checked_add(copies) != Some(out_len) {
        return Err(format!(
            "patch writes {} bytes, the operation {out_len}",
            adds.saturating_add(copies)
        )
        .into());
    }
    let control = Control {
        count,
        entries: &patch[start..at],
        adds,
        copies,
    };
    Ok((control, at))
}

/// Applies a plain-layout patch to the `old` window, producing exactly `out.len()` bytes.
pub(super) fn apply(
    old: &mut dyn OldBytes,
    patch: &[u8],
    out: &mut [u8],
) -> Result<(), PatchError> {
    let (control, end) = read_control(patch, out.len() as u64)?;
    let data = &patch[end..];
    if data.len() as u64 != out.len() as u64 {
        return Err("patch data does not match its control block".into());
    }
    // Σ add ≤ out.len() = data.len() (checked above).
    let (diff, extra) = data.split_at(control.adds as usize);
    run(old, &control, diff, extra, out)
}

/// Applies a sparse-layout patch: its diff runs are expanded into one buffer of Σ add bytes
/// (at most the output's length) and applied as a plain patch.
pub(super) fn apply_sparse(
    old: &mut dyn OldBytes,
    patch: &[u8],
    out: &mut [u8],
) -> Result<(), PatchError> {
    let (control, end) = read_control(patch, out.len() as u64)?;
    let (diff, extra_at) = expand_runs(&patch[end..], control.adds)?;
    let extra = &patch[end + extra_at..];
    if extra.len() as u64 != control.copies {
        return Err("patch data does not match its control block".into());
    }
    run(old, &control, &diff, extra, out)
}

/// Expands a sparse diff (run count, gaps, lengths, bytes) into `adds` bytes. Returns them
/// and where the runs' bytes end in `sparse`.
fn expand_runs(sparse: &[u8], adds: u64) -> Result<(Vec<u8>, usize), PatchError> {
    let mut at = 0usize;
    let runs = varint(sparse, &mut at)?;
    if runs > adds {
        return Err(format!("patch has {runs} diff runs for {adds} diff bytes").into());
    }
    let mut lens_at = at;
    for _ in 0..runs {
        varint(sparse, &mut lens_at)?;
    }
    let (mut bytes_at, mut total) = (lens_at, 0u64);
    for _ in 0..runs {
        let n = varint(sparse, &mut bytes_at)?;
        total = total
            .checked_add(n)
            .filter(|t| n > 0 && *t <= adds)
            .ok_or("patch has an empty diff run or more run bytes than diff bytes")?;
    }
    if ((sparse.len() - bytes_at) as u64) < total {
        return Err("patch ends inside its diff runs".into());
    }
    let mut diff = vec![0u8; adds as usize];
    let (mut gap_at, mut len_at, mut pos) = (at, lens_at, 0u64);
    for _ in 0..runs {
        let gap = varint(sparse, &mut gap_at)?;
        let n = varint(sparse, &mut len_at)?;
        let start = pos
            .checked_add(gap)
            .filter(|s| s.checked_add(n).is_some_and(|end| end <= adds))
            .ok_or("patch has a diff run past its diff bytes")?;
        // Within `adds` and within `sparse` (Σ n checked above): usize.
        let (start, n) = (start as usize, n as usize);
        diff[start..start + n].copy_from_slice(&sparse[bytes_at..bytes_at + n]);
        bytes_at += n;
        pos = (start + n) as u64;
    }
    Ok((diff, bytes_at))
}

/// Runs checked control entries over `diff` (Σ add bytes) and `extra` (Σ copy bytes), whose
/// lengths the caller checked, reading old bytes piece by piece. Every index is checked: a
/// hostile patch gets an error, never a read or write out of bounds.
fn run(
    old: &mut dyn OldBytes,
    control: &Control<'_>,
    diff: &[u8],
    extra: &[u8],
    out: &mut [u8],
) -> Result<(), PatchError> {
    let (mut at, mut diff_at, mut extra_at) = (0usize, 0usize, 0usize);
    let mut new_pos = 0usize;
    let mut old_pos = 0i64;
    for _ in 0..control.count {
        let (add, copy, seek) = triple(control.entries, &mut at)?;
        let (add, copy) = (add as usize, copy as usize);
        let mut done = 0usize;
        while done < add {
            let n = (add - done).min(OLD_PIECE);
            let start = u64::try_from(old_pos)
                .ok()
                .and_then(|p| p.checked_add(done as u64))
                .filter(|p| p.checked_add(n as u64).is_some_and(|end| end <= old.len()))
                .ok_or("patch reads outside the window")?;
            let old_bytes = old.get(start, n).map_err(PatchError::Old)?;
            for ((o, d), w) in old_bytes
                .iter()
                .zip(&diff[diff_at..diff_at + n])
                .zip(&mut out[new_pos..new_pos + n])
            {
                *w = d.wrapping_add(*o);
            }
            diff_at += n;
            new_pos += n;
            done += n;
        }
        out[new_pos..new_pos + copy].copy_from_slice(&extra[extra_at..extra_at + copy]);
        extra_at += copy;
        new_pos += copy;
        old_pos = old_pos
            .checked_add(add as i64)
            .and_then(|p| p.checked_add(seek))
            .ok_or("patch seeks overflow")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_then_apply_round_trips() {
        let old: Vec<u8> = (0..50_000u32).map(|i| (i * 31 % 251) as u8).collect();
        let mut new = old.clone();
        new[100..110].copy_from_slice(b"0123456789");
        new.splice(2000..2000, b"inserted bytes".iter().copied());
        new.drain(30_000..30_500);
        let raw = diff(&old, &new).unwrap();
        let mut out = vec![0u8; new.len()];
        apply_sparse(&mut &old[..], &raw.sparse(), &mut out).unwrap();
        assert_eq!(out, new);
        let patch = raw.plain();
        apply(&mut &old[..], &patch, &mut out).unwrap();
        assert_eq!(out, new);
        // A patch for another length, or a truncated one, is refused.
        let mut short = vec![0u8; new.len() - 1];
        assert!(apply(&mut &old[..], &patch, &mut short).is_err());
        assert!(apply(&mut &old[..], &patch[..patch.len() - 1], &mut out).is_err());
        assert!(apply(&mut &old[..100], &patch, &mut out).is_err());
    }

    /// A patch of `triples` (add, copy, zigzag seek) followed by `data`.
    fn raw(triples: &[(u64, u64, u64)], data: &[u8]) -> Vec<u8> {
        let mut p = Vec::new();
        put_varint(&mut p, triples.len() as u64);
        for &(a, c, s) in triples {
            put_varint(&mut p, a);
            put_varint(&mut p, c);
            put_varint(&mut p, s);
        }
        p.extend_from_slice(data);
        p
    }

    /// A sparse patch: `triples`, then `runs` (gap, bytes) as the layout stores them, `extra`.
    fn sparse(triples: &[(u64, u64, u64)], runs: &[(u64, &[u8])], extra: &[u8]) -> Vec<u8> {
        let mut p = raw(triples, &[]);
        put_varint(&mut p, runs.len() as u64);
        for (gap, _) in runs {
            put_varint(&mut p, *gap);
        }
        for (_, bytes) in runs {
            put_varint(&mut p, bytes.len());
        }
        for (_, bytes) in runs {
            p.extend_from_slice(bytes);
        }
        p.extend_from_slice(extra);
        p
    }

    #[test]
    fn sparse_patches_expand_exactly_and_hostile_ones_are_refused() {
        let old = [10u8; 64];
        let mut out = vec![0u8; 20];
        // 16 bytes from old with +1 at 3..5 and +2 at 15, then 4 extra bytes.
        let p = sparse(&[(16, 4, 0)], &[(3, &[1, 1]), (10, &[2])], b"abcd");
        apply_sparse(&mut &old[..], &p, &mut out).unwrap();
        let mut want = vec![10u8; 16];
        want[3..5].fill(11);
        want[15] = 12;
        want.extend_from_slice(b"abcd");
        assert_eq!(out, want);
        let mut refused = |p: &[u8], why: &str| {
            let e = apply_sparse(&mut &old[..], p, &mut out).unwrap_err();
            assert!(
                matches!(e, PatchError::Bad(ref m) if m.contains(why)),
                "{e:?}"
            );
        };
        // A run past the diff bytes; more runs than diff bytes; an empty run.
        refused(
            &sparse(&[(16, 4, 0)], &[(15, &[1, 1])], b"abcd"),
            "past its diff",
        );
        let many: Vec<(u64, &[u8])> = (0..17).map(|_| (0, &[1u8][..])).collect();
        refused(&sparse(&[(16, 4, 0)], &many, b"abcd"), "diff runs for");
        refused(
            &sparse(&[(16, 4, 0)], &[(0, &[])], b"abcd"),
            "empty diff run",
        );
        // Run bytes missing; extra bytes missing or left over.
        let mut p = sparse(&[(16, 4, 0)], &[(3, &[1, 1])], b"");
        p.truncate(p.len() - 1);
        refused(&p, "ends inside its diff runs");
        refused(
            &sparse(&[(16, 4, 0)], &[(3, &[1])], b"abc"),
            "does not match",
        );
        refused(
            &sparse(&[(16, 4, 0)], &[(3, &[1])], b"abcde"),
            "does not match",
        );
        // A huge gap overflows nothing.
        refused(
            &sparse(&[(16, 4, 0)], &[(u64::MAX, &[1])], b"abcd"),
            "past its diff",
        );
    }

    #[test]
    fn control_blocks_are_bounded() {
        let old = vec![7u8; 4096];
        let mut out = vec![0u8; 4096];
        // Empty entries (seek only): a few are normal, more are refused.
        let mut t = vec![(0, 0, 0); MAX_EMPTY_ENTRIES as usize];
        t.push((4096, 0, 0));
        apply(&mut &old[..], &raw(&t, &[1u8; 4096]), &mut out).unwrap();
        assert_eq!(out, vec![8u8; 4096]);
        t.insert(0, (0, 0, 0));
        let e = apply(&mut &old[..], &raw(&t, &[1u8; 4096]), &mut out).unwrap_err();
        assert!(
            matches!(e, PatchError::Bad(ref m) if m.contains("write nothing")),
            "{e:?}"
        );
        // More entries than the output length allows, even if each writes a byte.
        let t = vec![(1, 0, 0); 4096];
        let e = apply(&mut &old[..], &raw(&t, &[0u8; 4096]), &mut out).unwrap_err();
        assert!(
            matches!(e, PatchError::Bad(ref m) if m.contains("control entries")),
            "{e:?}"
        );
        // Seeking before or past the window.
        let t = [(1, 0, 1), (1, 0, 0)]; // zigzag 1 = -1: back to -... after add 1: 0
        assert!(apply(&mut &old[..], &raw(&t, &[0, 0]), &mut out[..2]).is_ok());
        let t = [(1, 0, 3), (1, 0, 0)]; // zigzag 3 = -2: position -1
        assert!(apply(&mut &old[..], &raw(&t, &[0, 0]), &mut out[..2]).is_err());
        let t = [(1, 0, 8190), (1, 0, 0)]; // +4095: position 4096, past the window
        assert!(apply(&mut &old[..], &raw(&t, &[0, 0]), &mut out[..2]).is_err());
        // Overflowing sizes and seeks.
        let t = [(u64::MAX, 1, 0)];
        assert!(apply(&mut &old[..], &raw(&t, &[]), &mut out[..1]).is_err());
        let t = [(1, 0, u64::MAX - 1), (1, 0, u64::MAX - 1)];
        assert!(apply(&mut &old[..], &raw(&t, &[0, 0]), &mut out[..2]).is_err());
    }
}
