//! The x86 branch filter of `bsdiff` operations (delta format 4).
//!
//! Recompiled x86 code moves functions, so every `call rel32` (E8) and `jmp rel32` (E9) whose
//! target moved by another amount than the caller changes its 4 displacement bytes: bsdiff's
//! diff stream fills with scattered differences. Rewriting each displacement as an absolute
//! position before diffing, in the window and in the target alike, makes most of them equal
//! again (every call to a function that moved by δ now differs by δ, the same everywhere).
//! The device filters the window the same way and unfilters the patched output.
//!
//! The filter is ours, in the spirit of the BCJ filters of xz and 7-Zip, and is defined so
//! that it is its own exact inverse on *any* bytes:
//! - scan forward; at an E8 or E9 byte, look at the 4 bytes after it and skip all 5 whatever
//!   they hold (so no later conversion touches them, and the scan stops at the same places
//!   in both directions);
//! - convert only displacements whose top byte is 00 or FF (25-bit signed values: near
//!   calls), adding (filter) or subtracting (unfilter) the position of the next instruction,
//!   modulo 2^25 and sign-extended, so the top byte stays 00 or FF and the choice is the same
//!   on the way back.
//!
//! Positions are window offsets. The window is filtered in [`FILTER_CHUNK`]-byte chunks, each
//! on its own, so that the device can filter any piece of it without reading it from the
//! start; the output is filtered whole, its byte `j` at position `origin + j`.

/// Chunk of the window filtered on its own (aligned to the window's start).
pub(super) const FILTER_CHUNK: usize = 64 << 10;

/// Displacement bits kept: a 25-bit signed value has a top byte of 00 or FF.
const SHIFT: u32 = 32 - 25;

/// Filters `buf` in place, its first byte at position `origin`. Returns how many
/// displacements it converted (a hint of how much x86 code the bytes hold).
pub(super) fn filter(buf: &mut [u8], origin: i64) -> usize {
    convert(buf, origin, true)
}

/// Undoes [`filter`] in place (same `origin`).
pub(super) fn unfilter(buf: &mut [u8], origin: i64) {
    convert(buf, origin, false);
}

/// Filters a window in [`FILTER_CHUNK`]-byte chunks, each at its own window offset.
pub(super) fn filter_window(window: &mut [u8]) -> usize {
    window
        .chunks_mut(FILTER_CHUNK)
        .enumerate()
        .map(|(n, chunk)| filter(chunk, (n * FILTER_CHUNK) as i64))
        .sum()
}

fn convert(buf: &mut [u8], origin: i64, forward: bool) -> usize {
    let mut converted = 0;
    let mut i = 0usize;
    while i + 5 <= buf.len() {
        if buf[i] != 0xE8 && buf[i] != 0xE9 {
            i += 1;
            continue;
        }
        let top = buf[i + 4];
        if top == 0x00 || top == 0xFF {
            let field = [buf[i + 1], buf[i + 2], buf[i + 3], top];
            let value = i32::from_le_bytes(field);
            // Position of the next instruction, modulo 2^32 (only 25 bits matter).
            let next = origin.wrapping_add(i as i64 + 5) as i32;
            let moved = if forward {
                value.wrapping_add(next)
            } else {
                value.wrapping_sub(next)
            };
            let kept = moved.wrapping_shl(SHIFT) >> SHIFT;
            buf[i + 1..i + 5].copy_from_slice(&kept.to_le_bytes());
            converted += 1;
        }
        i += 5;
    }
    converted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Many E8/E9 and 00/FF bytes, to exercise every path.
                match x % 8 {
                    0 => 0xE8,
                    1 => 0xE9,
                    2 => 0x00,
                    3 => 0xFF,
                    _ => (x >> 8) as u8,
                }
            })
            .collect()
    }

    #[test]
    fn unfilter_inverts_filter_on_any_bytes_and_origin() {
        for (seed, origin) in [(1, 0i64), (2, 77), (3, -5), (4, i64::MAX - 3), (5, 1 << 40)] {
            let original = noise(10_000, seed);
            let mut bytes = original.clone();
            let converted = filter(&mut bytes, origin);
            assert!(converted > 100, "only {converted} conversions");
            assert_ne!(bytes, original);
            unfilter(&mut bytes, origin);
            assert_eq!(bytes, original, "seed {seed}");
        }
    }

    #[test]
    fn a_call_whose_caller_moved_filters_to_the_same_bytes() {
        // 16 bytes inserted at the start move the caller from 100 to 116; its target at 1000
        // did not move. The displacements differ (895, 879), the filtered bytes agree.
        let call = |at: usize, to: i32, bytes: &mut Vec<u8>| {
            bytes[at] = 0xE8;
            bytes[at + 1..at + 5].copy_from_slice(&(to - at as i32 - 5).to_le_bytes());
        };
        let mut old = vec![0x90u8; 2000];
        call(100, 1000, &mut old);
        let mut new = vec![0x90u8; 2016];
        call(116, 1000, &mut new);
        assert_ne!(old[101..105], new[117..121]);
        filter(&mut old, 0);
        filter(&mut new, 0);
        assert_eq!(old[101..105], new[117..121]);
    }

    #[test]
    fn far_displacements_and_truncated_instructions_stay_as_they_are() {
        let mut bytes = vec![0xE8, 1, 2, 3, 0x40, 0xE9, 1, 2, 3];
        let copy = bytes.clone();
        assert_eq!(filter(&mut bytes, 0), 0);
        assert_eq!(bytes, copy);
    }

    #[test]
    fn window_chunks_filter_on_their_own() {
        let original = noise(3 * FILTER_CHUNK + 100, 9);
        let mut whole = original.clone();
        filter_window(&mut whole);
        let mut piece = original[FILTER_CHUNK..2 * FILTER_CHUNK].to_vec();
        filter(&mut piece, FILTER_CHUNK as i64);
        assert_eq!(piece, whole[FILTER_CHUNK..2 * FILTER_CHUNK]);
    }
}
