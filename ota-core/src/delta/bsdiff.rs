//! The `bsdiff` operation's patch: bsdiff's control/diff/extra streams, stored raw (varints)
//! and compressed with zstd instead of bzip2.
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

/// Diffs `target` against `window` and returns the raw patch (uncompressed).
pub(super) fn diff(window: &[u8], target: &[u8]) -> io::Result<Vec<u8>> {
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
    let mut out = Vec::with_capacity(ctrl.len() / 2 + diff.len() + extra.len());
    put_varint(&mut out, (ctrl.len() / 24) as u64);
    for triple in ctrl.chunks_exact(24) {
        let add = u64::try_from(offtin(&triple[0..8])).map_err(|_| bad())?;
        let copy = u64::try_from(offtin(&triple[8..16])).map_err(|_| bad())?;
        let seek = offtin(&triple[16..24]);
        put_varint(&mut out, add);
        put_varint(&mut out, copy);
        put_varint(&mut out, ((seek << 1) ^ (seek >> 63)) as u64);
    }
    out.extend_from_slice(&diff);
    out.extend_from_slice(&extra);
    Ok(out)
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
        let b = *bytes
            .get(*at)
            .ok_or("patch ends inside its control block")?;
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

/// Reads the control block once without keeping it: the entry count and empty entries are
/// bounded, and the entries write exactly `out_len` bytes from exactly the data that follows.
/// Returns (where the entries start, where the diff bytes start, total diff bytes).
fn check_control(patch: &[u8], out_len: u64) -> Result<(usize, usize, u64), PatchError> {
    let mut at = 0usize;
    let count = varint(patch, &mut at)?;
    if count > max_control_entries(out_len) {
        return Err(format!(
            "patch has {count} control entries for {out_len} bytes (at most {})",
            max_control_entries(out_len)
        )
        .into());
    }
    let entries = at;
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
    if (patch.len() - at) as u64 != out_len {
        return Err("patch data does not match its control block".into());
    }
    Ok((entries, at, adds))
}

/// Applies a raw patch to the `old` window, producing exactly `out.len()` bytes. The control
/// block is read twice (checked, then applied) and never collected; old bytes are read piece
/// by piece. Every index is checked: a hostile patch gets an error, never a read or write
/// out of bounds.
pub(super) fn apply(
    old: &mut dyn OldBytes,
    patch: &[u8],
    out: &mut [u8],
) -> Result<(), PatchError> {
    let (mut at, diff_start, adds) = check_control(patch, out.len() as u64)?;
    let count = varint(patch, &mut 0)?;
    // Both fit in the patch (checked above): usize.
    let mut diff = diff_start;
    let mut extra = diff_start + adds as usize;
    let mut new_pos = 0usize;
    let mut old_pos = 0i64;
    for _ in 0..count {
        let (add, copy, seek) = triple(patch, &mut at)?;
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
                .zip(&patch[diff..diff + n])
                .zip(&mut out[new_pos..new_pos + n])
            {
                *w = d.wrapping_add(*o);
            }
            diff += n;
            new_pos += n;
            done += n;
        }
        out[new_pos..new_pos + copy].copy_from_slice(&patch[extra..extra + copy]);
        extra += copy;
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
        let patch = diff(&old, &new).unwrap();
        let mut out = vec![0u8; new.len()];
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
