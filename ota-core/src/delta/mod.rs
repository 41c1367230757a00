//! Delta payloads: a target image described as a sequence of operations against an exact base
//! image, in the spirit of Android's update_engine payloads.
//!
//! Each operation writes the next extent of the target, in order:
//! - `copy`: bytes from the base (catches unchanged and moved blocks, via a block-hash index);
//! - `zero`: zero bytes;
//! - `replace`: zstd-compressed new bytes;
//! - `zstd_ref`: zstd with a window of the base as prefix (like `zstd --patch-from`, bounded);
//! - `bsdiff`: a raw bsdiff patch against a window of the base, compressed with zstd, bzip2
//!   or LZMA2 ([`PatchCodec`]), optionally over x86-filtered bytes ([`BranchFilter`]);
//! - `gzip`: a gzip file re-created bit for bit from its content, carried as a zstd delta
//!   against the old file's content ([`gzip`]);
//! - `xz`: back-to-back xz streams (squashfs-xz blocks) re-created bit for bit from their
//!   content, carried as a zstd delta against old streams' content ([`xz`]).
//!
//! Data-carrying operations have their SHA-256 in the (hash-verified) op list, checked before
//! the data is decompressed or applied. Sizes are bounded ([`MAX_DATA_OP_LEN`], [`MAX_WINDOW`],
//! [`MAX_REF_WINDOW`], [`MAX_OPS_STORED`]) so reading and applying need less than 32 MiB
//! whatever the image size or the operation count. [`generate`] builds deltas,
//! [`apply`] applies one operation; `docs/delta.md` explains the algorithm and its measurements.

pub mod apply;
mod branch;
mod bsdiff;
pub mod ext4;
mod fshints;
pub mod generate;
pub mod gzip;
mod index;
mod lzma;
mod oplist;
pub mod xz;
mod xzpass;

pub use oplist::{
    compress_ops, decode_ops, max_stored, open_compressed, OpDecoder, OpLimits, OpListError,
    MAX_OPS_STORED, OPS_WINDOW_LOG_MAX,
};

use crate::digest::Sha256Digest;

/// The newest set of delta operations: 1 = copy, zero, replace, zstd_ref, bsdiff with zstd or
/// bzip2 (every ota-update); 2 = also `gzip`; 3 = also bsdiff with LZMA2, plain or sparse;
/// 4 = also bsdiff over x86-filtered bytes, and small operation data inline in the op list
/// (each: ota-update from the release that added it); 5 = also `xz`, made only on request
/// (`ota-sign bundle --xz-content`).
pub const DELTA_FORMAT_LATEST: u8 = 5;

/// Block size of the source index and of block classification.
pub const BLOCK: usize = 4096;
/// Most target bytes one data-carrying operation produces (bounds apply memory).
pub const MAX_DATA_OP_LEN: u64 = 2 << 20;
/// Most base bytes one `zstd_ref` or `bsdiff` operation reads as its window.
pub const MAX_WINDOW: u64 = 16 << 20;
/// Most base bytes one `zstd_ref` operation uses as its window: zstd needs it whole in
/// memory (bsdiff reads its window piece by piece). Writers have always used at most 8 MiB
/// (4 × [`MAX_DATA_OP_LEN`]).
pub const MAX_REF_WINDOW: u64 = 8 << 20;
/// Most operations in one op list.
pub const MAX_OPS: usize = 1 << 22;

/// One operation: writes the next `len` bytes of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Copies `len` bytes from base offset `src`.
    Copy {
        /// Target bytes written.
        len: u64,
        /// Base offset.
        src: u64,
    },
    /// Writes `len` zero bytes.
    Zero {
        /// Target bytes written.
        len: u64,
    },
    /// Decompresses `stored` bytes of zstd data.
    Replace {
        /// Target bytes written.
        len: u64,
        /// Compressed length in the payload.
        stored: u32,
        /// SHA-256 of the compressed bytes.
        sha256: Sha256Digest,
    },
    /// Decompresses zstd data with `base[src..src+window]` as prefix.
    ZstdRef {
        /// Target bytes written.
        len: u64,
        /// Window start in the base.
        src: u64,
        /// Window length.
        window: u64,
        /// Compressed length in the payload.
        stored: u32,
        /// SHA-256 of the compressed bytes.
        sha256: Sha256Digest,
    },
    /// Applies a raw bsdiff patch, stored as `codec` says, to `base[src..src+window]`
    /// (filtered as `filter` says, the output unfiltered).
    Bsdiff {
        /// How the patch is compressed and laid out (the operation's kind).
        codec: PatchCodec,
        /// The filter the patch was computed over (a flag of the kind).
        filter: BranchFilter,
        /// Target bytes written.
        len: u64,
        /// Window start in the base.
        src: u64,
        /// Window length.
        window: u64,
        /// Compressed length in the payload.
        stored: u32,
        /// SHA-256 of the compressed bytes.
        sha256: Sha256Digest,
    },
    /// Re-creates a gzip file from its content: `stored` bytes of zstd data (the new gzip
    /// header, then the content) with the content of the old gzip file `base[src..src+window]`
    /// as prefix, deflated again by zlib ([`gzip`]).
    Gzip {
        /// Target bytes written (the whole gzip file).
        len: u64,
        /// Where the old gzip file starts in the base.
        src: u64,
        /// Length of the old gzip file.
        window: u64,
        /// Length of the new gzip header, at the start of the decompressed data.
        header_len: u64,
        /// Length of the new uncompressed content, after the header.
        raw_len: u64,
        /// Compressed length in the payload.
        stored: u32,
        /// SHA-256 of the compressed bytes.
        sha256: Sha256Digest,
    },
    /// Re-creates `raw_lens.len()` back-to-back xz streams: `stored` bytes of zstd data (the
    /// new streams' contents, one after the other) with the content of the old streams
    /// `base[src..src+window]` as prefix, each content compressed again with `settings`
    /// ([`xz`], delta format 5).
    Xz {
        /// Target bytes written (the streams).
        len: u64,
        /// Where the old streams start in the base.
        src: u64,
        /// Length of the old streams.
        window: u64,
        /// How every new stream is compressed.
        settings: xz::XzSettings,
        /// Content length of each new stream.
        raw_lens: Vec<u64>,
        /// Compressed length in the payload.
        stored: u32,
        /// SHA-256 of the compressed bytes.
        sha256: Sha256Digest,
    },
    /// A data operation whose data travels inside the op list (delta format 4): the list's
    /// signed SHA-256 covers it, so it costs no digest of its own (32 bytes per small
    /// operation; most of a small delta's overhead). The inner operation's `stored` is the
    /// data's length and its `sha256` the data's digest (computed by the reader).
    Inline {
        /// The data operation (never `copy`, `zero` or another `Inline`).
        op: Box<Op>,
        /// Its data, at most [`MAX_INLINE`] bytes.
        data: Vec<u8>,
    },
}

/// Most data bytes of one inline operation ([`Op::Inline`]).
pub const MAX_INLINE: u64 = 16 << 10;

/// How a `bsdiff` operation's patch is stored: each is its own operation kind. The generator
/// keeps the smallest; which wins depends on the code (measured in docs/delta.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchCodec {
    /// Kind 4: plain layout, zstd.
    Zstd,
    /// Kind 5: plain layout, bzip2 (its BWT suits the mostly-zero diff stream).
    Bzip2,
    /// Kind 7 (delta format 3): plain layout, raw LZMA2.
    Lzma2,
    /// Kind 8 (delta format 3): sparse layout (the diff's non-zero runs), raw LZMA2.
    Lzma2Sparse,
}

/// The filter a `bsdiff` operation's window and output go through ([`branch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchFilter {
    /// The bytes as they are.
    None,
    /// Kind flag [`KIND_X86_FILTER`] (delta format 4): x86 `call`/`jmp` displacements made
    /// absolute; window byte `i` is at position `i`, output byte `j` at `origin + j`.
    X86 {
        /// Position of the output's first byte relative to the window's.
        origin: i64,
    },
}

impl PatchCodec {
    fn kind(self) -> u8 {
        match self {
            PatchCodec::Zstd => KIND_BSDIFF,
            PatchCodec::Bzip2 => KIND_BSDIFF_BZ2,
            PatchCodec::Lzma2 => KIND_BSDIFF_LZMA2,
            PatchCodec::Lzma2Sparse => KIND_BSDIFF_LZMA2_SPARSE,
        }
    }

    fn of_kind(kind: u8) -> Option<PatchCodec> {
        match kind {
            KIND_BSDIFF => Some(PatchCodec::Zstd),
            KIND_BSDIFF_BZ2 => Some(PatchCodec::Bzip2),
            KIND_BSDIFF_LZMA2 => Some(PatchCodec::Lzma2),
            KIND_BSDIFF_LZMA2_SPARSE => Some(PatchCodec::Lzma2Sparse),
            _ => None,
        }
    }
}

const KIND_COPY: u8 = 0;
const KIND_ZERO: u8 = 1;
const KIND_REPLACE: u8 = 2;
const KIND_ZSTD_REF: u8 = 3;
const KIND_BSDIFF: u8 = 4;
const KIND_BSDIFF_BZ2: u8 = 5;
const KIND_GZIP: u8 = 6;
const KIND_BSDIFF_LZMA2: u8 = 7;
const KIND_BSDIFF_LZMA2_SPARSE: u8 = 8;
const KIND_XZ: u8 = 9;
/// Flag on a data operation's kind (delta format 4): its data follows its fields in the op
/// list instead of a digest ([`Op::Inline`]).
const KIND_INLINE: u8 = 0x80;
/// Flag on a bsdiff kind (delta format 4): the patch is over x86-filtered bytes; a zigzag
/// varint `origin` follows the window length.
const KIND_X86_FILTER: u8 = 0x10;

impl Op {
    /// Target bytes this operation writes.
    pub fn len(&self) -> u64 {
        match *self {
            Op::Copy { len, .. }
            | Op::Zero { len }
            | Op::Replace { len, .. }
            | Op::ZstdRef { len, .. }
            | Op::Bsdiff { len, .. }
            | Op::Gzip { len, .. }
            | Op::Xz { len, .. } => len,
            Op::Inline { ref op, .. } => op.len(),
        }
    }

    /// Whether the operation writes nothing (never valid in an op list).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Data bytes this operation carries, in the payload or inline.
    pub fn data_len(&self) -> u64 {
        match self {
            Op::Inline { data, .. } => data.len() as u64,
            _ => self.stored(),
        }
    }

    /// Payload bytes this operation consumes (0 for copy, zero and inline operations).
    pub fn stored(&self) -> u64 {
        match *self {
            Op::Replace { stored, .. }
            | Op::ZstdRef { stored, .. }
            | Op::Bsdiff { stored, .. }
            | Op::Gzip { stored, .. }
            | Op::Xz { stored, .. } => u64::from(stored),
            _ => 0,
        }
    }

    /// Short name used in statistics and docs.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Op::Copy { .. } => "copy",
            Op::Zero { .. } => "zero",
            Op::Replace { .. } => "replace",
            Op::ZstdRef { .. } => "zstd_ref",
            Op::Bsdiff { .. } => "bsdiff",
            Op::Gzip { .. } => "gzip",
            Op::Xz { .. } => "xz",
            Op::Inline { op, .. } => op.kind_name(),
        }
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Encodes an op list (before compression): varint count, then per op a kind byte, varint
/// fields and raw 32-byte digests. Target and payload offsets are implicit (contiguous).
pub fn encode_ops(ops: &[Op]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ops.len() * 16);
    put_varint(&mut out, ops.len() as u64);
    for op in ops {
        encode_op(op, &mut out);
    }
    out
}

/// Appends one operation: kind byte, varint fields, digest (or, inline, the data).
fn encode_op(op: &Op, out: &mut Vec<u8>) {
    match op {
        Op::Copy { len, src } => {
            out.push(KIND_COPY);
            put_varint(out, *len);
            put_varint(out, *src);
        }
        Op::Zero { len } => {
            out.push(KIND_ZERO);
            put_varint(out, *len);
        }
        Op::Replace {
            len,
            stored,
            sha256,
        } => {
            out.push(KIND_REPLACE);
            put_varint(out, *len);
            put_varint(out, u64::from(*stored));
            out.extend_from_slice(&sha256.0);
        }
        Op::ZstdRef {
            len,
            src,
            window,
            stored,
            sha256,
        }
        | Op::Bsdiff {
            len,
            src,
            window,
            stored,
            sha256,
            ..
        } => {
            out.push(match op {
                Op::Bsdiff {
                    codec,
                    filter: BranchFilter::X86 { .. },
                    ..
                } => codec.kind() | KIND_X86_FILTER,
                Op::Bsdiff { codec, .. } => codec.kind(),
                _ => KIND_ZSTD_REF,
            });
            put_varint(out, *len);
            put_varint(out, *src);
            put_varint(out, *window);
            if let Op::Bsdiff {
                filter: BranchFilter::X86 { origin },
                ..
            } = op
            {
                put_varint(out, ((origin << 1) ^ (origin >> 63)) as u64);
            }
            put_varint(out, u64::from(*stored));
            out.extend_from_slice(&sha256.0);
        }
        Op::Gzip {
            len,
            src,
            window,
            header_len,
            raw_len,
            stored,
            sha256,
        } => {
            out.push(KIND_GZIP);
            for v in [
                *len,
                *src,
                *window,
                *header_len,
                *raw_len,
                u64::from(*stored),
            ] {
                put_varint(out, v);
            }
            out.extend_from_slice(&sha256.0);
        }
        Op::Xz {
            len,
            src,
            window,
            settings,
            raw_lens,
            stored,
            sha256,
        } => {
            out.push(KIND_XZ);
            for v in [*len, *src, *window, u64::from(settings.preset)] {
                put_varint(out, v);
            }
            put_varint(out, u64::from(settings.dict_size));
            out.push(settings.check);
            put_varint(out, raw_lens.len() as u64);
            for n in raw_lens {
                put_varint(out, *n);
            }
            put_varint(out, u64::from(*stored));
            out.extend_from_slice(&sha256.0);
        }
        Op::Inline { op, data } => {
            // The inner encoding, its kind flagged and its digest replaced by the data.
            // Only data operations have a digest to replace (the generator inlines no other).
            debug_assert!(op.stored() > 0, "inline {op:?}");
            let start = out.len();
            encode_op(op, out);
            out[start] |= KIND_INLINE;
            out.truncate(out.len() - 32);
            out.extend_from_slice(data);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Op> {
        vec![
            Op::Copy {
                len: 8192,
                src: 4096,
            },
            Op::Zero { len: 100 },
            Op::Replace {
                len: 50,
                stored: 20,
                sha256: Sha256Digest::of(b"r"),
            },
            Op::ZstdRef {
                len: 10,
                src: 0,
                window: 4096,
                stored: 7,
                sha256: Sha256Digest::of(b"z"),
            },
            Op::Bsdiff {
                codec: PatchCodec::Bzip2,
                filter: BranchFilter::None,
                len: 1,
                src: 100,
                window: 200,
                stored: 9,
                sha256: Sha256Digest::of(b"b"),
            },
            Op::Bsdiff {
                codec: PatchCodec::Lzma2Sparse,
                filter: BranchFilter::X86 { origin: -77 },
                len: 1,
                src: 100,
                window: 200,
                stored: 9,
                sha256: Sha256Digest::of(b"b"),
            },
            Op::Gzip {
                len: 30,
                src: 300,
                window: 40,
                header_len: 10,
                raw_len: 50,
                stored: 12,
                sha256: Sha256Digest::of(b"g"),
            },
            Op::Xz {
                len: 40,
                src: 400,
                window: 64,
                settings: xz::XzSettings {
                    preset: 6 | xz::PRESET_EXTREME,
                    dict_size: 1 << 17,
                    check: 10,
                },
                raw_lens: vec![1000, 0, 3000],
                stored: 8,
                sha256: Sha256Digest::of(b"x"),
            },
        ]
    }

    #[test]
    fn op_list_round_trip() {
        let ops = sample();
        let bytes = encode_ops(&ops);
        assert_eq!(decode_ops(&bytes, 8192 + 232, 16384, 65).unwrap(), ops);
    }

    #[test]
    fn hostile_lists_are_refused() {
        let bytes = encode_ops(&sample());
        // Wrong target size, base too small for the copy, wrong data size, truncation, trailing.
        assert!(decode_ops(&bytes, 8192 + 231, 16384, 65).is_err());
        assert!(decode_ops(&bytes, 8192 + 232, 8192, 56).is_err());
        assert!(decode_ops(&bytes, 8192 + 232, 16384, 64).is_err());
        assert!(decode_ops(&bytes[..bytes.len() - 1], 8192 + 232, 16384, 65).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode_ops(&longer, 8192 + 232, 16384, 65).is_err());
        let huge = encode_ops(&[Op::Copy {
            len: 10,
            src: u64::MAX - 5,
        }]);
        assert!(decode_ops(&huge, 10, u64::MAX, 0).is_err());
    }
}
