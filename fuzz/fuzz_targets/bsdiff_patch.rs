//! The `bsdiff` operation's control data: a raw patch (varint control entries, diff bytes,
//! extra bytes) applied through `ota_core::delta::apply::apply_op` to a window of a fixed
//! 256 KiB base read piece by piece, as the updater applies it after the op list checks.
//! Every patch the decoder accepts must give exactly what an independent, permissive
//! reference implementation gives (`ota_fuzz::reference_bsdiff`), and `len` bytes.
//!
//! Input (at most 16 KiB): `flags` (bits 0 and 7: bzip2 instead of zstd, for patches up to
//! 4 KiB; else bit 6: LZMA2, bit 5 with it: the sparse layout, checked against
//! `ota_fuzz::sparse_to_plain`; bit 3: the x86 branch filter, its origin the `len` field
//! read as a signed number, checked against `ota_fuzz::reference_x86`; bit 1: take `len` from
//! the input instead of the patch's own adds + copies), `len` (u32, when bit 1), `src` and
//! `window` (u32 each, fitted to the base unless bit 2), then the patch (the rest), which the
//! harness compresses and hashes like the signer would.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::delta::apply::apply_op;
use ota_core::delta::{BranchFilter, Op, PatchCodec};
use ota_core::Sha256Digest;
use ota_fuzz::{
    base_bytes, bzip2_cached, lzma2_fast, patch_len, reference_bsdiff, reference_x86,
    sparse_to_plain, zstd1,
    Cursor, SliceBase,
    MAX_BZIP2_INPUT, MAX_DELTA_INPUT,
};

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() > MAX_DELTA_INPUT {
        return;
    }
    let mut input = Cursor::new(bytes);
    let flags = input.u8();
    let given_len = u64::from(input.u32());
    let (src, window) = (u64::from(input.u32()), u64::from(input.u32()));
    let patch = input.rest();
    let base = base_bytes();
    let base_len = base.len() as u64;
    let (src, window) = if flags & 4 != 0 {
        (src, window)
    } else {
        let window = 1 + window % base_len;
        (src % (base_len - window + 1), window)
    };
    let len = if flags & 2 != 0 {
        given_len
    } else {
        patch_len(patch, 4096)
    };
    if len > 4 << 20 {
        return;
    }
    // bzip2 (kind 5) for one input in four, and small patches only: compressing in the
    // harness costs more than the apply under test, and the control data is the same either way.
    let bzip = flags & 0x81 == 0x81 && patch.len() <= MAX_BZIP2_INPUT;
    let codec = match (bzip, flags & 0x60) {
        (true, _) => PatchCodec::Bzip2,
        (false, 0x40) => PatchCodec::Lzma2,
        (false, 0x60) => PatchCodec::Lzma2Sparse,
        _ => PatchCodec::Zstd,
    };
    let stored = match codec {
        PatchCodec::Bzip2 => bzip2_cached(patch),
        PatchCodec::Lzma2 | PatchCodec::Lzma2Sparse => lzma2_fast(patch),
        PatchCodec::Zstd => zstd1(patch),
    };
    let filter = if flags & 8 != 0 {
        BranchFilter::X86 {
            origin: i64::from(given_len as u32 as i32),
        }
    } else {
        BranchFilter::None
    };
    let op = Op::Bsdiff {
        codec,
        filter,
        len,
        src,
        window,
        stored: stored.len() as u32,
        sha256: Sha256Digest::of(&stored),
    };
    let mut out = Vec::new();
    let result = apply_op(&op, stored, &SliceBase(base), &mut |piece| {
        out.extend_from_slice(&piece);
        Ok(())
    });
    if ota_fuzz::debug() {
        eprintln!("bsdiff len {len} src {src} window {window} {codec:?} {filter:?}: {result:?}");
    }
    if result.is_ok() {
        assert_eq!(out.len() as u64, len, "bsdiff wrote another length");
        // With a window outside the base (bit 2), what lies inside the base is all a
        // successful apply can have read.
        let end = (src + window).min(base_len) as usize;
        let mut old = base[(src as usize).min(end)..end].to_vec();
        if let BranchFilter::X86 { .. } = filter {
            for (n, chunk) in old.chunks_mut(64 << 10).enumerate() {
                reference_x86(chunk, (n as i64) << 16, true);
            }
        }
        let mut reference = if codec == PatchCodec::Lzma2Sparse {
            sparse_to_plain(patch).and_then(|plain| reference_bsdiff(&old, &plain, len as usize))
        } else {
            reference_bsdiff(&old, patch, len as usize)
        };
        if let (BranchFilter::X86 { origin }, Some(out)) = (filter, reference.as_mut()) {
            reference_x86(out, origin, false);
        }
        assert!(
            reference.as_deref() == Some(&out[..]),
            "bsdiff output differs from the reference"
        );
    }
});
