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

fn varint(bytes: &[u8], at: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes
            .get(*at)
            .ok_or("patch ends inside its control block")?;
        *at += 1;
        value |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("patch has an overlong varint".into())
}

/// Applies a raw patch to `window`, producing exactly `out.len()` bytes. Every index is
/// checked: a hostile patch gets an error, never a read or write out of bounds.
pub(super) fn apply(window: &[u8], patch: &[u8], out: &mut [u8]) -> Result<(), String> {
    let mut at = 0usize;
    let count = varint(patch, &mut at)?;
    if count > out.len() as u64 + 1 {
        return Err(format!(
            "patch has {count} control entries for {} bytes",
            out.len()
        ));
    }
    let mut ctrls = Vec::with_capacity(count as usize);
    let (mut adds, mut copies) = (0u64, 0u64);
    for _ in 0..count {
        let add = varint(patch, &mut at)?;
        let copy = varint(patch, &mut at)?;
        let zz = varint(patch, &mut at)?;
        let seek = ((zz >> 1) as i64) ^ -((zz & 1) as i64);
        adds = adds.checked_add(add).ok_or("patch sizes overflow")?;
        copies = copies.checked_add(copy).ok_or("patch sizes overflow")?;
        ctrls.push((add, copy, seek));
    }
    if adds.checked_add(copies) != Some(out.len() as u64) {
        return Err(format!(
            "patch writes {} bytes, the operation {}",
            adds.saturating_add(copies),
            out.len()
        ));
    }
    let rest = &patch[at..];
    if rest.len() as u64 != adds + copies {
        return Err("patch data does not match its control block".into());
    }
    let (mut diff, mut extra) = rest.split_at(adds as usize);
    let mut new_pos = 0usize;
    let mut old_pos = 0i64;
    for (add, copy, seek) in ctrls {
        let add = add as usize;
        let old_start = usize::try_from(old_pos).map_err(|_| "patch reads before the window")?;
        let old = window
            .get(old_start..old_start + add)
            .ok_or("patch reads past the window")?;
        for ((o, d), n) in old
            .iter()
            .zip(&diff[..add])
            .zip(&mut out[new_pos..new_pos + add])
        {
            *n = d.wrapping_add(*o);
        }
        diff = &diff[add..];
        new_pos += add;
        let copy = copy as usize;
        out[new_pos..new_pos + copy].copy_from_slice(&extra[..copy]);
        extra = &extra[copy..];
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
        apply(&old, &patch, &mut out).unwrap();
        assert_eq!(out, new);
        // A patch for another length, or a truncated one, is refused.
        let mut short = vec![0u8; new.len() - 1];
        assert!(apply(&old, &patch, &mut short).is_err());
        assert!(apply(&old, &patch[..patch.len() - 1], &mut out).is_err());
        assert!(apply(&old[..100], &patch, &mut out).is_err());
    }
}
