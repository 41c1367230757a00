//! Delta op lists, decoded and applied behind the signature: the harness builds a bundle
//! around the fuzzed op list and operation data, signs its manifest with the fixture bundle
//! key, and runs the real streaming verifier (`BundleReader::open` + `stream_payload`) with a
//! discarding sink and an in-memory base, as an updater holding that key would. So the fuzzer
//! reaches the op list decoder (`open_compressed`, `OpDecoder`), the checks against the image
//! and the base, and every operation's apply code (copy, zero, replace, zstd_ref, bsdiff with
//! zstd, bzip2 or LZMA2, x86-filtered or not, gzip, xz, inline or not), which only trusted-key
//! holders can reach on a device.
//!
//! Input (at most 16 KiB): `flags`, `base_len` (u16, x4 bytes of the fixed base), then
//! - structured (flags & 1 == 0): operations, each a kind byte (low 3 bits: copy, zero,
//!   replace, zstd_ref, bsdiff with zstd (4), bsdiff with bzip2 (5; for patches up to
//!   4 KiB, larger ones go with zstd), bsdiff with LZMA2 in the sparse layout (7; kind 8
//!   on a device), gzip (6: an old gzip file in the base, a fuzzed
//!   frame; with bit 3, `xz` instead: the base's xz streams, fuzzed settings); bit 5 on a bsdiff kind: the x86 branch filter; bit 6: the data inline in the op
//!   list (delta format 4); bit 7: take lengths, offsets and windows as given
//!   instead of fitting them to the base) and its fields. The harness compresses the
//!   data and fills in every SHA-256, so the fuzzer is not stopped by hashes it cannot forge.
//!   When every operation was fitted and none is bsdiff, the expected image is known: the
//!   bundle must then verify and write exactly it.
//! - raw (flags & 1): `target_size` (u32), the encoded op list (u16 length; used as the
//!   compressed blob itself when flags & 2), then the operation data (the rest).
//!
//! flags & 4: `Check` instead of `Write`; flags & 8: manifest `count`, `data_size` and
//! `base_size` read from the input instead of computed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_core::bundle::{
    BundleReader, DeltaOps, DiscardSink, ImageAction, ImageManifest, Manifest, PayloadKind,
    TrustPolicy,
};
use ota_core::delta::xz::XzSettings;
use ota_core::delta::{encode_ops, BranchFilter, Op, PatchCodec, MAX_INLINE};
use ota_core::Sha256Digest;
use ota_fuzz::{
    base_bytes, base_sha256, bundle_key, bundle_public, bzip2_cached, lzma2_fast, patch_len,
    peek_varint,
    signed_bundle, xz_streams, zstd1, Cursor, SliceBase, MAX_BASE, MAX_BZIP2_INPUT, MAX_DELTA_INPUT,
    XZ_STREAMS_AT,
};
use std::io::Read;
use std::sync::OnceLock;
use zstd::zstd_safe;

fn trust() -> &'static TrustPolicy {
    static CELL: OnceLock<TrustPolicy> = OnceLock::new();
    CELL.get_or_init(|| TrustPolicy::new(vec![bundle_public()], 1).expect("policy"))
}

fn window_log(window: u64, len: u64) -> u32 {
    let total = (window + len).max(1 << 10);
    (64 - (total - 1).leading_zeros()).clamp(10, 27)
}

fn compress_with_prefix(data: &[u8], window: &[u8]) -> Option<Vec<u8>> {
    let mut cctx = zstd_safe::CCtx::create();
    cctx.set_parameter(zstd_safe::CParameter::CompressionLevel(1))
        .ok()?;
    let log = window_log(window.len() as u64, data.len() as u64);
    cctx.set_parameter(zstd_safe::CParameter::WindowLog(log))
        .ok()?;
    cctx.ref_prefix(window).ok()?;
    let mut out = Vec::with_capacity(zstd_safe::compress_bound(data.len()));
    cctx.compress2(&mut out, data).ok()?;
    Some(out)
}

struct Built {
    ops: Vec<Op>,
    data: Vec<u8>,
    /// The image, when every operation's output is known.
    expected: Option<Vec<u8>>,
}

fn structured(input: &mut Cursor<'_>, base: &[u8]) -> Built {
    let mut ops = Vec::new();
    let mut data = Vec::new();
    let mut expected = Some(Vec::new());
    let base_len = base.len() as u64;
    while !input.is_empty() && ops.len() < 64 {
        let kind = input.u8();
        let raw = kind & 0x80 != 0;
        if raw {
            expected = None;
        }
        let op = match kind & 7 {
            0 => {
                let (len, src) = (u64::from(input.u32()), u64::from(input.u32()));
                let (len, src) = if raw || base_len == 0 {
                    expected = None;
                    (len, src)
                } else {
                    let len = 1 + len % base_len.min(65536);
                    (len, src % (base_len - len + 1))
                };
                if let Some(e) = expected.as_mut() {
                    e.extend_from_slice(&base[src as usize..(src + len) as usize]);
                }
                Op::Copy { len, src }
            }
            1 => {
                let len = u64::from(input.u32());
                let len = if raw { len } else { 1 + len % 65536 };
                if let Some(e) = expected.as_mut() {
                    e.resize(e.len() + len as usize, 0);
                }
                Op::Zero { len }
            }
            2 => {
                let plain = input.blob();
                let len = if raw {
                    u64::from(input.u32())
                } else {
                    plain.len() as u64
                };
                let stored = zstd1(plain);
                if let Some(e) = expected.as_mut() {
                    e.extend_from_slice(plain);
                }
                let op = Op::Replace {
                    len,
                    stored: stored.len() as u32,
                    sha256: Sha256Digest::of(&stored),
                };
                data.extend_from_slice(&stored);
                op
            }
            3 => {
                let (src, window) = (u64::from(input.u32()), u64::from(input.u32()));
                let plain = input.blob();
                let (src, window) = if raw || base_len == 0 {
                    expected = None;
                    (src, window)
                } else {
                    let window = 1 + window % base_len;
                    (src % (base_len - window + 1), window)
                };
                let len = if raw {
                    u64::from(input.u32())
                } else {
                    plain.len() as u64
                };
                let prefix = base
                    .get(src as usize..(src.saturating_add(window)) as usize)
                    .unwrap_or(&[]);
                let Some(stored) = compress_with_prefix(plain, prefix) else {
                    return Built {
                        ops,
                        data,
                        expected: None,
                    };
                };
                if let Some(e) = expected.as_mut() {
                    e.extend_from_slice(plain);
                }
                let op = Op::ZstdRef {
                    len,
                    src,
                    window,
                    stored: stored.len() as u32,
                    sha256: Sha256Digest::of(&stored),
                };
                data.extend_from_slice(&stored);
                op
            }
            6 if kind & 0x08 != 0 => {
                expected = None;
                xz_op(input, base_len, raw, &mut data)
            }
            6 => {
                // gzip: an old "gzip file" somewhere in the (fuzzed) base, a fuzzed frame.
                let (src, window) = (u64::from(input.u32()), u64::from(input.u32()));
                let (header_len, raw_len) = (u64::from(input.u32()), u64::from(input.u32()));
                let frame = input.blob();
                let (src, window, header_len, raw_len) = if raw || base_len == 0 {
                    (src, window, header_len, raw_len)
                } else {
                    let window = 1 + window % base_len;
                    let header_len = 10 + header_len % 32;
                    let raw_len = (frame.len() as u64).saturating_sub(header_len);
                    (src % (base_len - window + 1), window, header_len, raw_len)
                };
                let len = u64::from(input.u32()) % (1 << 21);
                expected = None;
                let stored = zstd1(frame);
                let op = Op::Gzip {
                    len,
                    src,
                    window,
                    header_len,
                    raw_len,
                    stored: stored.len() as u32,
                    sha256: Sha256Digest::of(&stored),
                };
                data.extend_from_slice(&stored);
                op
            }
            k => {
                let (bzip, lzma) = (k == 5, k == 7);
                let (src, window) = (u64::from(input.u32()), u64::from(input.u32()));
                let patch = input.blob();
                let (src, window) = if raw || base_len == 0 {
                    (src, window)
                } else {
                    let window = 1 + window % base_len;
                    (src % (base_len - window + 1), window)
                };
                let len = if raw {
                    u64::from(input.u32())
                } else {
                    patch_len(patch, 256)
                };
                // The decoder bounds control blocks more tightly than any reference would:
                // the output of a fuzzed patch is not predicted here (bsdiff_patch compares
                // it with a reference implementation).
                expected = None;
                // Kind 5 for patches bzip2 compresses cheaply enough; kind 4 otherwise.
                let bzip = bzip && patch.len() <= MAX_BZIP2_INPUT;
                let codec = match (bzip, lzma) {
                    (_, true) => PatchCodec::Lzma2Sparse,
                    (true, false) => PatchCodec::Bzip2,
                    (false, false) => PatchCodec::Zstd,
                };
                let stored = match codec {
                    PatchCodec::Bzip2 => bzip2_cached(patch),
                    PatchCodec::Zstd => zstd1(patch),
                    _ => lzma2_fast(patch),
                };
                let filter = if kind & 0x20 != 0 {
                    BranchFilter::X86 {
                        origin: (src as i64).wrapping_sub(len as i64),
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
                data.extend_from_slice(&stored);
                op
            }
        };
        if op.is_empty() {
            expected = None;
        }
        // Bit 6: the operation's data inline in the op list (delta format 4).
        let stored = op.stored();
        let op = if kind & 0x40 != 0 && stored > 0 && stored <= MAX_INLINE {
            let inline = data.split_off(data.len() - stored as usize);
            Op::Inline {
                op: Box::new(op),
                data: inline,
            }
        } else {
            op
        };
        ops.push(op);
    }
    if ops.is_empty() {
        expected = None;
    }
    Built {
        ops,
        data,
        expected,
    }
}

/// An `xz` operation (delta format 5): fitted, the old streams are the base's
/// ([`ota_fuzz::XZ_STREAMS_AT`]) and the stream lengths split the fuzzed frame; settings are
/// fuzzed (some refused by the decoder: preset over 9, unknown checks, odd dictionaries).
fn xz_op(input: &mut Cursor<'_>, base_len: u64, raw: bool, data: &mut Vec<u8>) -> Op {
    let (src, window) = (u64::from(input.u32()), u64::from(input.u32()));
    let settings = XzSettings {
        preset: u32::from(input.u8() % 12) | u32::from(input.u8() & 0x80) << 24,
        dict_size: 4096 << (input.u8() % 10),
        check: [1, 0, 4, 10, 3][usize::from(input.u8() % 5)],
    };
    let pieces = 1 + u64::from(input.u8() % 4);
    let frame = input.blob();
    let streams_end = (XZ_STREAMS_AT + xz_streams().len()) as u64;
    let (src, window, raw_lens) = if raw || base_len < streams_end {
        let lens = (0..pieces).map(|_| u64::from(input.u16())).collect();
        (src, window, lens)
    } else {
        let content = frame.len() as u64;
        let mut lens: Vec<u64> = (1..pieces).map(|_| content / pieces).collect();
        lens.push(content - content / pieces * (pieces - 1));
        (XZ_STREAMS_AT as u64, xz_streams().len() as u64, lens)
    };
    let len = u64::from(input.u32()) % (1 << 21);
    let stored = zstd1(frame);
    data.extend_from_slice(&stored);
    Op::Xz {
        len,
        src,
        window,
        settings,
        raw_lens,
        stored: stored.len() as u32,
        sha256: Sha256Digest::of(&stored),
    }
}

fuzz_target!(|bytes: &[u8]| {
    if bytes.len() > MAX_DELTA_INPUT {
        return;
    }
    let mut input = Cursor::new(bytes);
    let flags = input.u8();
    let base_len = (input.u16() as usize * 4).min(MAX_BASE);
    let base = &base_bytes()[..base_len];

    let (blob, data, target_size, count, expected) = if flags & 1 == 0 {
        let built = structured(&mut input, base);
        let target: u64 = built.ops.iter().map(Op::len).fold(0, u64::saturating_add);
        let list = encode_ops(&built.ops);
        let blob = zstd1(&list);
        (
            blob,
            built.data,
            target,
            built.ops.len() as u64,
            built.expected,
        )
    } else {
        let target = u64::from(input.u32());
        let list = input.blob();
        let data = input.rest().to_vec();
        let (blob, count) = if flags & 2 != 0 {
            // Already compressed: the count is the first varint of what it decompresses to.
            let mut head = Vec::new();
            if let Ok(d) = zstd::stream::read::Decoder::new(list) {
                let _ = d.take(10).read_to_end(&mut head);
            }
            (list.to_vec(), peek_varint(&head))
        } else {
            let blob = zstd1(list);
            (blob, peek_varint(list))
        };
        (blob, data, target, count, None)
    };
    if target_size > MAX_BASE as u64 {
        return;
    }
    let (count, data_size, base_size, expected) = if flags & 8 != 0 {
        (
            u64::from(input.u32()),
            u64::from(input.u32()),
            u64::from(input.u32()),
            None,
        )
    } else {
        (count, data.len() as u64, base_len as u64, expected)
    };
    let base_sha256 = if base_size <= base_len as u64 {
        base_sha256(base_size as usize)
    } else {
        Sha256Digest([0; 32])
    };
    let image_sha256 = expected
        .as_ref()
        .map_or(Sha256Digest([0xee; 32]), |e| Sha256Digest::of(e));

    let mut payload = blob.clone();
    payload.extend_from_slice(&data);
    let manifest = Manifest {
        format: 1,
        product: "fuzz-device".into(),
        version: semver::Version::new(2, 0, 0),
        created: 0,
        compression: "zstd".into(),
        chunk_size: 4096,
        payload_size: payload.len() as u64,
        provenance: None,
        images: vec![ImageManifest {
            name: "rootfs".into(),
            size: target_size,
            sha256: image_sha256,
            payload: PayloadKind::Delta {
                base_sha256,
                base_size,
                ops: DeltaOps {
                    count,
                    payload_offset: 0,
                    stored_size: blob.len() as u32,
                    sha256: Sha256Digest::of(&blob),
                    data_size,
                },
            },
            chunks: vec![],
        }],
    };
    let bundle = signed_bundle(&manifest, bundle_key(), &payload);
    let reader = match BundleReader::open(&bundle[..], trust()) {
        Ok(reader) => reader,
        Err(e) => {
            if ota_fuzz::debug() {
                eprintln!("bundle refused at open: {e}");
            }
            assert!(expected.is_none(), "a valid delta bundle did not open: {e}");
            return;
        }
    };
    let check = flags & 4 != 0;
    let result = reader.stream_payload(
        |_, _| {
            Ok(if check {
                ImageAction::Check
            } else {
                ImageAction::Write {
                    sink: Box::new(DiscardSink),
                    base: Some(Box::new(SliceBase(base))),
                }
            })
        },
        &|_| {},
    );
    if ota_fuzz::debug() {
        eprintln!(
            "{} ops, expected known: {}, result: {result:?}",
            count,
            expected.is_some()
        );
    }
    if let (Some(_), Err(e)) = (&expected, &result) {
        panic!("a valid delta bundle was refused: {e}");
    }
});
