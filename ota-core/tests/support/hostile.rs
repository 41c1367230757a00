//! Hostile but validly signed delta bundles, as a compromised build machine holding a trusted
//! key could make them: an op-list bomb (millions of operations in a few KB of zstd), a bsdiff
//! control-triple bomb, and zero operations of absurd lengths. Written byte by byte with the
//! public API only (the builder never makes such bundles).
//!
//! Shared by `ota-core/tests/delta.rs`, `signer/tests/cli.rs`, `updater/tests/hostile_bundles.rs`
//! and `ota-core/examples/hostile_bundles.rs` (for `bench/install-rss.sh`) through `#[path]`:
//! each includes this file as a module.
#![allow(dead_code, clippy::unwrap_used)]

use ota_core::bundle::{DeltaOps, Header, ImageManifest, Manifest, PayloadKind};
use ota_core::delta::{compress_ops, encode_ops, BranchFilter, Op, PatchCodec};
use ota_core::keys::SigningKey;
use ota_core::Sha256Digest;
use std::io::Read;

/// What a hostile delta pretends to update: the product and version it claims, the exact base
/// it names (the device's running slot, so that it is chosen) and the image size it declares.
pub struct Target<'a> {
    /// Product string.
    pub product: &'a str,
    /// Version (newer than what the device runs).
    pub version: &'a str,
    /// The base bytes (all of them: `base_size` is their length).
    pub base: &'a [u8],
    /// The image size the manifest declares.
    pub image_size: u64,
}

/// Lays out header, manifest, a signature by `key` over the manifest, and `payload`.
pub fn sign(manifest: &Manifest, payload: &[u8], key: &SigningKey) -> Vec<u8> {
    let m = manifest.to_bytes();
    let sig = key.sign(&m).expect("a local key signs");
    let mut block = 1u32.to_le_bytes().to_vec();
    block.extend_from_slice(&key.verifying_key().key_id().0 .0);
    block.extend_from_slice(&sig.to_bytes());
    let header = Header {
        manifest_len: m.len() as u32,
        signature_block_len: block.len() as u32,
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&m);
    out.extend_from_slice(&block);
    out.extend_from_slice(payload);
    out
}

/// A one-image delta bundle for `target` whose op list is `blob` (compressed, `count`
/// operations) followed by `data` (the operation data).
pub fn delta_bundle(target: &Target, count: u64, blob: &[u8], data: &[u8]) -> Manifest {
    Manifest {
        format: 1,
        product: target.product.into(),
        version: semver::Version::parse(target.version).unwrap(),
        created: 0,
        compression: "zstd".into(),
        chunk_size: 1 << 20,
        payload_size: (blob.len() + data.len()) as u64,
        provenance: None,
        images: vec![ImageManifest {
            name: "rootfs".into(),
            size: target.image_size,
            sha256: Sha256Digest::of(b"never reached"),
            payload: PayloadKind::Delta {
                base_sha256: Sha256Digest::of(target.base),
                base_size: target.base.len() as u64,
                ops: DeltaOps {
                    count,
                    payload_offset: 0,
                    stored_size: blob.len() as u32,
                    sha256: Sha256Digest::of(blob),
                    data_size: data.len() as u64,
                },
            },
            chunks: vec![],
        }],
    }
}

/// Signs a delta bundle of `ops` with `data`.
pub fn signed_ops(key: &SigningKey, target: &Target, ops: &[Op], data: &[u8]) -> Vec<u8> {
    let encoded = encode_ops(ops);
    let blob = compress_ops(&mut &encoded[..], Some(encoded.len() as u64), 3).unwrap();
    let manifest = delta_bundle(target, ops.len() as u64, &blob, data);
    let mut payload = blob;
    payload.extend_from_slice(data);
    sign(&manifest, &payload, key)
}

/// `count` bsdiff operations of one byte each (the image must have `count` bytes), every
/// varint written in its longest form (10 bytes): 73 bytes per operation, so 4,194,304 of them
/// are 306 MB of op list in ~30 KB of zstd. Each carries one byte of data (zeros, not matching
/// the digest the list gives).
pub fn op_list_bomb(key: &SigningKey, target: &Target, count: u64) -> Vec<u8> {
    let long = |v: u8| {
        let mut b = vec![v | 0x80];
        b.extend_from_slice(&[0x80; 8]);
        b.push(0);
        b
    };
    let mut op = vec![4u8];
    for v in [1, 0, 1, 1] {
        // len 1, src 0, window 1, stored 1
        op.extend(long(v));
    }
    op.extend_from_slice(&[0xab; 32]);
    let mut head = Vec::new();
    let mut c = count;
    while c >= 0x80 {
        head.push((c as u8) | 0x80);
        c >>= 7;
    }
    head.push(c as u8);
    let size = head.len() as u64 + count * op.len() as u64;
    let mut list = head.as_slice().chain(Repeat {
        pattern: op,
        at: 0,
        left: count,
    });
    let blob = compress_ops(&mut list, Some(size), 1).unwrap();
    let data = vec![0u8; count as usize];
    let manifest = delta_bundle(target, count, &blob, &data);
    let mut payload = blob;
    payload.extend_from_slice(&data);
    sign(&manifest, &payload, key)
}

/// `pattern`, `left` times.
struct Repeat {
    pattern: Vec<u8>,
    at: usize,
    left: u64,
}

impl Read for Repeat {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut n = 0;
        while n < buf.len() && self.left > 0 {
            let k = (self.pattern.len() - self.at).min(buf.len() - n);
            buf[n..n + k].copy_from_slice(&self.pattern[self.at..self.at + k]);
            n += k;
            self.at += k;
            if self.at == self.pattern.len() {
                self.at = 0;
                self.left -= 1;
            }
        }
        Ok(n)
    }
}

/// One bsdiff operation writing `len` bytes (the whole image) whose patch is as many empty
/// control triples as its size bound allows (1.42 million for 2 MiB), then one that copies
/// `len` extra bytes: readers that collect the control block before checking it need
/// ~24 bytes per triple.
pub fn control_triple_bomb(key: &SigningKey, target: &Target, len: u64) -> Vec<u8> {
    let bound = 3 * len + (64 << 10);
    let empty = (bound - len - 32) / 3;
    let mut patch = Vec::new();
    let mut c = empty + 1;
    while c >= 0x80 {
        patch.push((c as u8) | 0x80);
        c >>= 7;
    }
    patch.push(c as u8);
    patch.resize(patch.len() + 3 * empty as usize, 0);
    let mut last = vec![0u8];
    let mut l = len;
    while l >= 0x80 {
        last.push((l as u8) | 0x80);
        l >>= 7;
    }
    last.push(l as u8);
    last.push(0);
    patch.extend_from_slice(&last);
    patch.resize(patch.len() + len as usize, 0x5a);
    assert!(patch.len() as u64 <= bound);
    // Plain zstd (compress_ops is zstd at a level; the bytes need not be an op list).
    let data = compress_ops(&mut &patch[..], Some(patch.len() as u64), 3).unwrap();
    let op = Op::Bsdiff {
        codec: PatchCodec::Zstd,
        filter: BranchFilter::None,
        len,
        src: 0,
        window: target.base.len().min(1 << 20) as u64,
        stored: data.len() as u32,
        sha256: Sha256Digest::of(&data),
    };
    signed_ops(key, target, &[op], &data)
}

/// One zero operation of `len` bytes (2^63 in the original report).
pub fn huge_zero_op(key: &SigningKey, target: &Target, len: u64) -> Vec<u8> {
    signed_ops(key, target, &[Op::Zero { len }], &[])
}

/// `len` incompressible bytes from an xorshift generator seeded with `seed`.
fn noise(len: u64, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// One 2 MiB `bsdiff` operation in the sparse LZMA2 layout (kind 8) whose data is the largest
/// patch a reader accepts for it (3 × 2 MiB + 64 KiB of noise in stored LZMA2 chunks):
/// the most a patch holds while it decompresses (data, the decoder's dictionary, the patch).
/// The noise is no valid sparse patch: refused once decompressed.
pub fn max_lzma_op(key: &SigningKey, base: &[u8], product: &str, version: &str) -> Vec<u8> {
    let len = 2u64 << 20;
    let noise = noise(
        ota_core::delta::apply::max_patch_len(len),
        0x853c_49e6_748f_ea9b,
    );
    // A raw LZMA2 stream of stored chunks (control byte 1: stored, dictionary reset, then
    // 2: stored; a big-endian size - 1; at most 64 KiB each), ended by a 0 byte.
    let mut data = Vec::with_capacity(noise.len() + noise.len() / 21_000 + 1);
    for (i, chunk) in noise.chunks(1 << 16).enumerate() {
        let size = chunk.len() - 1;
        data.extend_from_slice(&[if i == 0 { 1 } else { 2 }, (size >> 8) as u8, size as u8]);
        data.extend_from_slice(chunk);
    }
    data.push(0);
    let op = Op::Bsdiff {
        codec: PatchCodec::Lzma2Sparse,
        filter: BranchFilter::None,
        len,
        src: 0,
        window: (base.len() as u64).min(1 << 20),
        stored: data.len() as u32,
        sha256: Sha256Digest::of(&data),
    };
    let target = Target {
        product,
        version,
        base,
        image_size: len,
    };
    signed_ops(key, &target, &[op], &data)
}

/// The most memory an `xz` operation may take, with its base: old streams decoding to the
/// largest content (4 MiB of noise, one stream with a 1 MiB dictionary), a frame of 4 MiB of
/// content (2 MiB of noise, then zeros) and the heaviest encoder (preset 9 extreme, 1 MiB
/// dictionary: 12.6 MiB). The content does not fit the 2 MiB the operation writes, so it is
/// refused once the encoder has done its work. Returns (base, bundle).
pub fn max_xz_op(key: &SigningKey, product: &str, version: &str) -> (Vec<u8>, Vec<u8>) {
    use ota_core::delta::xz::{encode_stream, XzSettings, MAX_XZ_DICT, MAX_XZ_RAW, PRESET_EXTREME};
    let settings = XzSettings {
        preset: 9 | PRESET_EXTREME,
        dict_size: MAX_XZ_DICT,
        check: 10,
    };
    let mut base = Vec::new();
    let old = noise(MAX_XZ_RAW, 0x2545_f491_4f6c_dd1d);
    encode_stream(
        &old,
        XzSettings {
            preset: 0,
            ..settings
        },
        &mut base,
        8 << 20,
    )
    .unwrap();
    let mut content = noise(MAX_XZ_RAW / 2, 0x9e37_79b9_7f4a_7c15);
    content.resize(MAX_XZ_RAW as usize, 0);
    let data = compress_ops(&mut &content[..], Some(MAX_XZ_RAW), 1).unwrap();
    let len = 2u64 << 20;
    let op = Op::Xz {
        len,
        src: 0,
        window: base.len() as u64,
        settings,
        raw_lens: vec![MAX_XZ_RAW],
        stored: data.len() as u32,
        sha256: Sha256Digest::of(&data),
    };
    let target = Target {
        product,
        version,
        base: &base,
        image_size: len,
    };
    let bundle = signed_ops(key, &target, &[op], &data);
    (base, bundle)
}

/// A `zstd_ref` operation with the largest window (8 MiB, so the base must be that long)
/// writing 2 MiB from 2 MiB of incompressible data, and that data.
fn max_window_parts() -> (Op, Vec<u8>) {
    let len = 2u64 << 20;
    let noise = noise(len, 0x9e37_79b9_7f4a_7c15);
    let data = compress_ops(&mut &noise[..], Some(len), 1).unwrap();
    let op = Op::ZstdRef {
        len,
        src: 0,
        window: ota_core::delta::MAX_REF_WINDOW,
        stored: data.len() as u32,
        sha256: Sha256Digest::of(&data),
    };
    (op, data)
}

/// The most memory operations may take: two `zstd_ref` operations of [`max_window_parts`]
/// (the first one's output can still be in the writer when the second starts). Valid, but the
/// image hash it declares is wrong (refused at the end, after the work).
pub fn max_window_op(key: &SigningKey, base: &[u8], product: &str, version: &str) -> Vec<u8> {
    let (op, data) = max_window_parts();
    let target = Target {
        product,
        version,
        base,
        image_size: 2 * op.len(),
    };
    let mut both = data.clone();
    both.extend_from_slice(&data);
    signed_ops(key, &target, &[op.clone(), op], &both)
}

/// [`max_window_op`]'s two operations after a list that takes the most memory to decode as
/// well: 270,000 copies of one byte from random base offsets (~1 MiB of zstd, near the
/// 1 MiB bound on a compressed list) and 250,000 one-byte zero operations in their longest
/// encoding, so that the list (4.6 MB) needs the largest zstd window readers accept (4 MiB).
pub fn max_memory(key: &SigningKey, base: &[u8], product: &str, version: &str) -> Vec<u8> {
    let (op, data) = max_window_parts();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let copies: Vec<Op> = (0..270_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            Op::Copy {
                len: 1,
                src: x % base.len() as u64,
            }
        })
        .collect();
    let zeros = 250_000u64;
    let count = copies.len() as u64 + zeros + 2;
    let mut list = Vec::new();
    let mut c = count;
    while c >= 0x80 {
        list.push((c as u8) | 0x80);
        c >>= 7;
    }
    list.push(c as u8);
    // encode_ops writes the count first: skip it.
    let skip_count = |encoded: Vec<u8>| {
        let n = encoded.iter().position(|b| b & 0x80 == 0).unwrap() + 1;
        encoded[n..].to_vec()
    };
    list.extend(skip_count(encode_ops(&copies)));
    for _ in 0..zeros {
        list.extend_from_slice(&[1, 0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0]);
    }
    list.extend(skip_count(encode_ops(&[op.clone(), op.clone()])));
    let blob = compress_ops(&mut &list[..], None, 19).unwrap();
    let target = Target {
        product,
        version,
        base,
        image_size: 2 * op.len() + copies.len() as u64 + zeros,
    };
    let mut payload = blob.clone();
    payload.extend_from_slice(&data);
    payload.extend_from_slice(&data);
    let manifest = delta_bundle(&target, count, &blob, &payload[blob.len()..]);
    sign(&manifest, &payload, key)
}
