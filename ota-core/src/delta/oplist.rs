//! Reading op lists as a stream: one operation at a time from the zstd-compressed list, each
//! checked against the image as it is decoded, so a hostile list (even one signed by a trusted
//! key) costs bounded memory whatever it declares: the compressed list
//! (≤ [`MAX_OPS_STORED`]), the decoder's window (≤ 2^[`OPS_WINDOW_LOG_MAX`]) and one
//! operation. Nothing proportional to the operation count is ever held.

use super::gzip::{MAX_GZIP_HEADER, MAX_GZIP_RAW};
use super::xz::{XzSettings, MAX_XZ_RAW, MAX_XZ_STREAMS};
use super::{
    BranchFilter, Op, PatchCodec, KIND_COPY, KIND_GZIP, KIND_INLINE, KIND_REPLACE, KIND_X86_FILTER,
    KIND_XZ, KIND_ZERO, KIND_ZSTD_REF, MAX_DATA_OP_LEN, MAX_INLINE, MAX_OPS, MAX_REF_WINDOW,
    MAX_WINDOW,
};
use crate::bundle::zstd_compress_bound;
use crate::digest::Sha256Digest;
use std::io::{self, BufRead, Read};

/// Largest compressed op list a reader accepts. It is held in memory while the image is
/// applied (the list is decoded twice: checked whole, then applied); real lists are far
/// smaller (45 KB for 6,711 operations on a 512 MiB rootfs).
pub const MAX_OPS_STORED: u32 = 1 << 20;
/// Largest zstd window (log2) of a compressed op list: the streaming decoder's buffer. zstd
/// sizes the window to the content for lists up to 4 MiB, and the writer caps it for longer
/// ones ([`compress_ops`]).
pub const OPS_WINDOW_LOG_MAX: u32 = 22;

/// What an op list is checked against while it is decoded (all from the signed manifest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpLimits {
    /// Operations the manifest declares (`ops.count`).
    pub count: u64,
    /// Image size: the operations cover exactly this many bytes.
    pub target_size: u64,
    /// Base size: no operation reads past it.
    pub base_size: u64,
    /// Operation data bytes the manifest declares (`ops.data_size`).
    pub data_size: u64,
}

/// Why an op list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpListError(pub String);

impl std::fmt::Display for OpListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn bad<T>(message: String) -> Result<T, OpListError> {
    Err(OpListError(message))
}

/// Largest stored (compressed) data of an operation writing `len` bytes: zstd's bound for
/// `replace` and `zstd_ref`, the bound of the largest patch for `bsdiff`.
pub fn max_stored(op_is_bsdiff: bool, len: u64) -> u64 {
    if op_is_bsdiff {
        zstd_compress_bound(super::apply::max_patch_len(len))
    } else {
        zstd_compress_bound(len)
    }
}

/// Decodes an op list one operation at a time, checking each against [`OpLimits`] before it
/// is returned: it writes 1 or more bytes and the operations so far stay within the image; it
/// reads only inside the base; a data operation writes at most [`MAX_DATA_OP_LEN`], its
/// window is at most [`MAX_WINDOW`], its stored size is possible for its length, and the data
/// so far stays within the declared `data_size`. After the last operation,
/// [`OpDecoder::next_op`] checks that they cover the image exactly, carry exactly `data_size`
/// bytes, and that the list ends there.
pub struct OpDecoder<R> {
    input: R,
    limits: OpLimits,
    index: u64,
    covered: u64,
    payload: u64,
    done: bool,
}

impl<R: BufRead> OpDecoder<R> {
    /// Reads the list's operation count, which must be the manifest's, at most [`MAX_OPS`]
    /// and at most the image size (every operation writes a byte or more).
    pub fn new(mut input: R, limits: OpLimits) -> Result<Self, OpListError> {
        let count = varint(&mut input)?;
        if count != limits.count {
            return bad(format!(
                "the op list has {count} operations, the manifest declares {}",
                limits.count
            ));
        }
        if count > MAX_OPS as u64 || count > limits.target_size {
            return bad(format!(
                "{count} operations for a {}-byte image (at most {MAX_OPS}, and one byte each)",
                limits.target_size
            ));
        }
        Ok(Self {
            input,
            limits,
            index: 0,
            covered: 0,
            payload: 0,
            done: false,
        })
    }

    /// Index of the next operation.
    pub fn index(&self) -> u64 {
        self.index
    }

    /// The next operation, checked; `None` after the last one once the whole list checked.
    pub fn next_op(&mut self) -> Result<Option<Op>, OpListError> {
        if self.done {
            return Ok(None);
        }
        if self.index == self.limits.count {
            self.finish()?;
            self.done = true;
            return Ok(None);
        }
        let op = decode_op(&mut self.input, self.index)?;
        check_op(&op, self.index, &self.limits)?;
        let target_size = self.limits.target_size;
        self.covered = self
            .covered
            .checked_add(op.len())
            .filter(|c| *c <= target_size)
            .ok_or_else(|| {
                OpListError(format!(
                    "operation {} writes past the image end ({target_size} bytes)",
                    self.index
                ))
            })?;
        let data_size = self.limits.data_size;
        self.payload = self
            .payload
            .checked_add(op.stored())
            .filter(|p| *p <= data_size)
            .ok_or_else(|| {
                OpListError(format!(
                    "operation {} carries data past the {data_size} bytes the manifest declares",
                    self.index
                ))
            })?;
        self.index += 1;
        Ok(Some(op))
    }

    /// Checks the list after its last operation: exact coverage and data, nothing after it.
    fn finish(&mut self) -> Result<(), OpListError> {
        let l = &self.limits;
        if self.covered != l.target_size {
            return bad(format!(
                "operations cover {} bytes, the image has {}",
                self.covered, l.target_size
            ));
        }
        if self.payload != l.data_size {
            return bad(format!(
                "operations carry {} data bytes, the manifest says {}",
                self.payload, l.data_size
            ));
        }
        let rest = self.input.fill_buf().map_err(stream_error)?;
        if !rest.is_empty() {
            return bad("unexpected bytes after the last operation".into());
        }
        Ok(())
    }

    /// Decodes and checks the whole list without keeping any operation.
    pub fn check_all(mut self) -> Result<(), OpListError> {
        while self.next_op()?.is_some() {}
        Ok(())
    }
}

/// An [`OpDecoder`] over a compressed op list (already checked against its signed hash),
/// decompressed as it is read with a window of at most 2^[`OPS_WINDOW_LOG_MAX`] bytes.
pub fn open_compressed(
    blob: &[u8],
    limits: OpLimits,
) -> Result<OpDecoder<impl BufRead + '_>, OpListError> {
    let mut decoder = zstd::stream::read::Decoder::with_buffer(blob).map_err(stream_error)?;
    decoder
        .window_log_max(OPS_WINDOW_LOG_MAX)
        .map_err(stream_error)?;
    OpDecoder::new(io::BufReader::with_capacity(64 << 10, decoder), limits)
}

/// Decodes and checks a whole (uncompressed) op list into memory. For tests and tools: readers
/// of bundles use [`open_compressed`] and never hold the list.
pub fn decode_ops(
    bytes: &[u8],
    target_size: u64,
    base_size: u64,
    data_size: u64,
) -> Result<Vec<Op>, OpListError> {
    let mut peek = bytes;
    let count = varint(&mut peek)?;
    let limits = OpLimits {
        count,
        target_size,
        base_size,
        data_size,
    };
    let mut decoder = OpDecoder::new(bytes, limits)?;
    let mut ops = Vec::new();
    while let Some(op) = decoder.next_op()? {
        ops.push(op);
    }
    Ok(ops)
}

/// Compresses an encoded op list read from `encoded` ([`super::encode_ops`]) with zstd at
/// `level`, with a window readers accept (at most 2^[`OPS_WINDOW_LOG_MAX`]). With its `size`
/// known and short enough, the list is compressed in one call, as before readers bounded the
/// window (zstd then sizes the window to the list); longer or unknown lengths are streamed with
/// the window capped.
pub fn compress_ops(encoded: &mut dyn Read, size: Option<u64>, level: i32) -> io::Result<Vec<u8>> {
    if let Some(size) = size.filter(|s| *s <= 1 << OPS_WINDOW_LOG_MAX) {
        let mut bytes = Vec::with_capacity(size as usize);
        encoded.take(size + 1).read_to_end(&mut bytes)?;
        if bytes.len() as u64 != size {
            return Err(io::Error::other(
                "op list length differs from the one given",
            ));
        }
        return zstd::bulk::compress(&bytes, level);
    }
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level)?;
    encoder.set_pledged_src_size(size)?;
    encoder.include_contentsize(size.is_some())?;
    encoder.window_log(OPS_WINDOW_LOG_MAX)?;
    io::copy(encoded, &mut encoder)?;
    encoder.finish()
}

fn stream_error(e: io::Error) -> OpListError {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        OpListError("op list ends early".into())
    } else {
        OpListError(format!("op list does not decompress: {e}"))
    }
}

fn byte(input: &mut impl BufRead) -> Result<u8, OpListError> {
    let buf = input.fill_buf().map_err(stream_error)?;
    let b = *buf
        .first()
        .ok_or_else(|| OpListError("op list ends early".into()))?;
    input.consume(1);
    Ok(b)
}

fn varint(input: &mut impl BufRead) -> Result<u64, OpListError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let b = byte(input)?;
        value |= u64::from(b & 0x7f)
            .checked_shl(shift)
            .filter(|v| v >> shift == u64::from(b & 0x7f))
            .ok_or_else(|| OpListError("varint overflows 64 bits".into()))?;
        if b & 0x80 == 0 {
            return Ok(value);
        }
    }
    bad("varint longer than 10 bytes".into())
}

fn digest(input: &mut impl BufRead) -> Result<Sha256Digest, OpListError> {
    let mut d = [0u8; 32];
    input.read_exact(&mut d).map_err(stream_error)?;
    Ok(Sha256Digest(d))
}

fn stored_u32(v: u64) -> Result<u32, OpListError> {
    u32::try_from(v).or_else(|_| bad(format!("operation data size {v} is impossible")))
}

/// Reads operation `index` (kind, length and the kind's fields; inline, its data).
fn decode_op(input: &mut impl BufRead, index: u64) -> Result<Op, OpListError> {
    let kind = byte(input)?;
    if kind & KIND_INLINE == 0 {
        return decode_fields(input, index, kind, false);
    }
    let mut op = decode_fields(input, index, kind & !KIND_INLINE, true)?;
    let stored = op.stored();
    if matches!(op, Op::Copy { .. } | Op::Zero { .. }) || stored == 0 || stored > MAX_INLINE {
        return bad(format!(
            "operation {index} is an inline {} with {stored} bytes of data (1..={MAX_INLINE} \
             allowed, data operations only)",
            op.kind_name()
        ));
    }
    // At most MAX_INLINE bytes (checked above).
    let mut data = vec![0u8; stored as usize];
    input.read_exact(&mut data).map_err(stream_error)?;
    if let Op::Replace { sha256, .. }
    | Op::ZstdRef { sha256, .. }
    | Op::Bsdiff { sha256, .. }
    | Op::Gzip { sha256, .. }
    | Op::Xz { sha256, .. } = &mut op
    {
        *sha256 = Sha256Digest::of(&data);
    }
    Ok(Op::Inline {
        op: Box::new(op),
        data,
    })
}

/// The digest that ends a data operation's fields; an inline operation has none (its data
/// follows instead, and the caller fills in its digest).
fn digest_unless_inline(
    input: &mut impl BufRead,
    inline: bool,
) -> Result<Sha256Digest, OpListError> {
    if inline {
        Ok(Sha256Digest([0; 32]))
    } else {
        digest(input)
    }
}

/// Reads the length and the fields of an operation of `kind`.
fn decode_fields(
    input: &mut impl BufRead,
    index: u64,
    kind: u8,
    inline: bool,
) -> Result<Op, OpListError> {
    let len = varint(input)?;
    Ok(match kind {
        KIND_COPY => Op::Copy {
            len,
            src: varint(input)?,
        },
        KIND_ZERO => Op::Zero { len },
        KIND_REPLACE => {
            let stored = stored_u32(varint(input)?)?;
            Op::Replace {
                len,
                stored,
                sha256: digest_unless_inline(input, inline)?,
            }
        }
        KIND_ZSTD_REF => Op::ZstdRef {
            len,
            src: varint(input)?,
            window: varint(input)?,
            stored: stored_u32(varint(input)?)?,
            sha256: digest_unless_inline(input, inline)?,
        },
        KIND_GZIP => Op::Gzip {
            len,
            src: varint(input)?,
            window: varint(input)?,
            header_len: varint(input)?,
            raw_len: varint(input)?,
            stored: stored_u32(varint(input)?)?,
            sha256: digest_unless_inline(input, inline)?,
        },
        KIND_XZ => decode_xz(input, index, len, inline)?,
        other => match PatchCodec::of_kind(other & !KIND_X86_FILTER) {
            Some(codec) => {
                let src = varint(input)?;
                let window = varint(input)?;
                let filter = if other & KIND_X86_FILTER != 0 {
                    let zz = varint(input)?;
                    BranchFilter::X86 {
                        origin: ((zz >> 1) as i64) ^ -((zz & 1) as i64),
                    }
                } else {
                    BranchFilter::None
                };
                Op::Bsdiff {
                    codec,
                    filter,
                    len,
                    src,
                    window,
                    stored: stored_u32(varint(input)?)?,
                    sha256: digest_unless_inline(input, inline)?,
                }
            }
            None => {
                return bad(format!(
                    "operation {index} has unknown kind {other} (made by a newer ota-sign? \
                     update ota-update, or build the delta with an older `--delta-format`)"
                ))
            }
        },
    })
}

/// Reads the fields of an `xz` operation, refusing more streams or content than an operation
/// may re-create before holding their lengths.
fn decode_xz(
    input: &mut impl BufRead,
    index: u64,
    len: u64,
    inline: bool,
) -> Result<Op, OpListError> {
    let src = varint(input)?;
    let window = varint(input)?;
    let narrow =
        |v: u64| u32::try_from(v).or_else(|_| bad(format!("xz setting {v} is impossible")));
    let settings = XzSettings {
        preset: narrow(varint(input)?)?,
        dict_size: narrow(varint(input)?)?,
        check: byte(input)?,
    };
    if let Some(problem) = settings.problem() {
        return bad(format!("operation {index} names {problem}"));
    }
    let count = varint(input)?;
    if !(1..=MAX_XZ_STREAMS).contains(&count) {
        return bad(format!(
            "operation {index} re-creates {count} xz streams (1..={MAX_XZ_STREAMS} allowed)"
        ));
    }
    let mut raw_lens = Vec::with_capacity(count as usize);
    let mut total = 0u64;
    for _ in 0..count {
        let n = varint(input)?;
        total = total.saturating_add(n);
        if total > MAX_XZ_RAW {
            return bad(format!(
                "operation {index} re-creates more than {MAX_XZ_RAW} bytes of xz content"
            ));
        }
        raw_lens.push(n);
    }
    Ok(Op::Xz {
        len,
        src,
        window,
        settings,
        raw_lens,
        stored: stored_u32(varint(input)?)?,
        sha256: digest_unless_inline(input, inline)?,
    })
}

/// Checks one operation on its own: it writes something, reads only inside the base, and a
/// data operation writes at most [`MAX_DATA_OP_LEN`] bytes from a possible amount of data.
fn check_op(op: &Op, index: u64, limits: &OpLimits) -> Result<(), OpListError> {
    if let Op::Inline { op, .. } = op {
        return check_op(op, index, limits);
    }
    let len = op.len();
    if len == 0 {
        return bad(format!("operation {index} writes nothing"));
    }
    let base_size = limits.base_size;
    let in_base = |src: u64, n: u64| src.checked_add(n).is_some_and(|end| end <= base_size);
    match *op {
        Op::Copy { src, .. } if !in_base(src, len) => {
            return bad(format!(
                "operation {index} copies outside the base ({src}+{len} > {base_size})"
            ))
        }
        Op::ZstdRef { src, window, .. } | Op::Bsdiff { src, window, .. }
            if window == 0 || window > MAX_WINDOW || !in_base(src, window) =>
        {
            return bad(format!(
                "operation {index} has an invalid base window {src}+{window}"
            ));
        }
        Op::Gzip { src, window, .. }
            if !(18..=MAX_REF_WINDOW).contains(&window) || !in_base(src, window) =>
        {
            return bad(format!(
                "operation {index} has an invalid old gzip file {src}+{window}"
            ));
        }
        Op::Gzip {
            header_len,
            raw_len,
            stored,
            ..
        } if !(10..=MAX_GZIP_HEADER).contains(&header_len)
            || raw_len > MAX_GZIP_RAW
            || u64::from(stored) > zstd_compress_bound(header_len + raw_len) =>
        {
            return bad(format!(
                "operation {index} declares a gzip header of {header_len} bytes, {raw_len} bytes \
                 of content and {stored} bytes of data (header 10..={MAX_GZIP_HEADER}, content \
                 ≤ {MAX_GZIP_RAW})"
            ));
        }
        Op::Xz { src, window, .. }
            if !(32..=MAX_REF_WINDOW).contains(&window) || !in_base(src, window) =>
        {
            return bad(format!(
                "operation {index} has invalid old xz streams {src}+{window}"
            ));
        }
        Op::ZstdRef { window, .. } if window > MAX_REF_WINDOW => {
            return bad(format!(
                "operation {index} has a zstd_ref window of {window} bytes (at most {MAX_REF_WINDOW})"
            ));
        }
        _ => {}
    }
    if matches!(op, Op::Copy { .. } | Op::Zero { .. }) {
        return Ok(());
    }
    if len > MAX_DATA_OP_LEN {
        return bad(format!(
            "operation {index} writes {len} bytes (data operations write at most {MAX_DATA_OP_LEN})"
        ));
    }
    let max = max_stored(matches!(op, Op::Bsdiff { .. }), len);
    if op.stored() == 0 || op.stored() > max {
        return bad(format!(
            "operation {index} has {} bytes of data for {len} bytes (1..={max} possible)",
            op.stored()
        ));
    }
    Ok(())
}
