//! Applying one delta operation, with bounded memory: `copy` and `zero` stream in 1 MiB
//! pieces; `replace` needs its data and output (≤ [`MAX_DATA_OP_LEN`]); `zstd_ref` also its
//! window (≤ [`MAX_REF_WINDOW`]), which zstd needs whole; `bsdiff` its decompressed patch
//! (≤ [`max_patch_len`]) and output, its data being dropped once decompressed and its window
//! read from the base 64 KiB at a time. The base is read with positioned reads, never whole.
//!
//! The caller has already checked the operation data against its SHA-256.

use super::branch::{self, FILTER_CHUNK};
use super::bsdiff::{self, OldBytes, PatchError, OLD_PIECE};
use super::generate::window_log;
use super::{lzma, BranchFilter, Op, PatchCodec, MAX_DATA_OP_LEN, MAX_REF_WINDOW, MAX_WINDOW};
use crate::digest::Sha256Digest;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use zstd::zstd_safe;

const PIECE: u64 = 1 << 20;

/// Largest decompressed bsdiff patch accepted for an operation writing `len` bytes.
pub fn max_patch_len(len: u64) -> u64 {
    3 * len + (64 << 10)
}

/// Random read access to the base image (a slot device, a file).
pub trait BaseRead: Send + Sync {
    /// Fills `buf` from `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// The SHA-256 of the first `len` bytes when the caller has just computed it from these
    /// very bytes (to choose the delta made from them): the reader then does not read and
    /// hash the whole base a second time. `None` unless known ([`HashedBase`]).
    fn known_sha256(&self, _len: u64) -> Option<Sha256Digest> {
        None
    }
}

/// A base whose first `len` bytes hash to `sha256`, as its opener computed.
pub struct HashedBase<B> {
    /// The base.
    pub base: B,
    /// How many bytes were hashed.
    pub len: u64,
    /// Their SHA-256.
    pub sha256: Sha256Digest,
}

impl<B: BaseRead + 'static> HashedBase<B> {
    /// `base`, with the SHA-256 of its first `len` bytes when the caller has it.
    pub fn boxed(base: B, len: u64, sha256: Option<Sha256Digest>) -> Box<dyn BaseRead> {
        match sha256 {
            Some(sha256) => Box::new(HashedBase { base, len, sha256 }),
            None => Box::new(base),
        }
    }
}

impl<B: BaseRead> BaseRead for HashedBase<B> {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.base.read_exact_at(buf, offset)
    }

    fn known_sha256(&self, len: u64) -> Option<Sha256Digest> {
        (len == self.len).then_some(self.sha256)
    }
}

impl BaseRead for File {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }
}

/// Why an operation could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the base failed.
    #[error("cannot read the base image: {0}")]
    Base(io::Error),
    /// The operation data is not what it claims (decompression or patch failure).
    #[error("{0}")]
    Data(String),
}

/// Produces the target bytes of `op` from its (verified) `data` and the base, handing them to
/// `emit` in order. `data` is taken so that it can be freed as soon as it was decompressed.
/// An inline operation brings its own data (`data` is then unused).
pub fn apply_op(
    op: &Op,
    data: Vec<u8>,
    base: &dyn BaseRead,
    emit: &mut dyn FnMut(Vec<u8>) -> io::Result<()>,
) -> Result<(), ApplyError> {
    let emit_err = |e: io::Error| ApplyError::Data(format!("cannot hand on the output: {e}"));
    match *op {
        Op::Inline {
            ref op,
            data: ref inline,
        } => return apply_op(op, inline.clone(), base, emit),
        Op::Copy { len, src } => {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(PIECE);
                let mut buf = vec![0u8; n as usize];
                let at = src
                    .checked_add(done)
                    .ok_or_else(|| ApplyError::Data(format!("copy from {src} overflows")))?;
                base.read_exact_at(&mut buf, at).map_err(ApplyError::Base)?;
                emit(buf).map_err(emit_err)?;
                done += n;
            }
        }
        Op::Zero { len } => {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(PIECE);
                emit(vec![0u8; n as usize]).map_err(emit_err)?;
                done += n;
            }
        }
        Op::Replace { len, .. } => {
            check_len(len)?;
            let out = zstd::bulk::decompress(&data, len as usize)
                .map_err(|e| ApplyError::Data(format!("replace data does not decompress: {e}")))?;
            drop(data);
            exact(out, len).and_then(|o| emit(o).map_err(emit_err))?;
        }
        Op::ZstdRef {
            len, src, window, ..
        } => {
            check_len(len)?;
            if window > MAX_REF_WINDOW {
                return Err(ApplyError::Data(format!(
                    "zstd_ref window of {window} bytes is over {MAX_REF_WINDOW}"
                )));
            }
            let window_bytes = read_window(base, src, window)?;
            let out = decompress_with_prefix(&data, &window_bytes, len)?;
            drop((data, window_bytes));
            emit(out).map_err(emit_err)?;
        }
        Op::Bsdiff {
            len,
            src,
            window,
            codec,
            filter,
            ..
        } => {
            check_len(len)?;
            check_window(window)?;
            let patch = decompress_patch(codec, &data, max_patch_len(len))
                .map_err(|e| ApplyError::Data(format!("bsdiff patch does not decompress: {e}")))?;
            drop(data);
            let mut out = vec![0u8; len as usize];
            let x86 = matches!(filter, BranchFilter::X86 { .. });
            let mut old = WindowReader::new(base, src, window, x86);
            let applied = if codec == PatchCodec::Lzma2Sparse {
                bsdiff::apply_sparse(&mut old, &patch, &mut out)
            } else {
                bsdiff::apply(&mut old, &patch, &mut out)
            };
            applied.map_err(|e| match e {
                PatchError::Old(e) => ApplyError::Base(e),
                PatchError::Bad(m) => ApplyError::Data(m),
            })?;
            drop((patch, old));
            if let BranchFilter::X86 { origin } = filter {
                branch::unfilter(&mut out, origin);
            }
            emit(out).map_err(emit_err)?;
        }
        Op::Gzip {
            len,
            src,
            window,
            header_len,
            raw_len,
            ..
        } => {
            check_len(len)?;
            let out = super::gzip::apply(data, base, (src, window), header_len, raw_len, len)?;
            emit(out).map_err(emit_err)?;
        }
        Op::Xz {
            len,
            src,
            window,
            settings,
            ref raw_lens,
            ..
        } => {
            check_len(len)?;
            let out = super::xz::apply(data, base, (src, window), raw_lens, settings, len)?;
            emit(out).map_err(emit_err)?;
        }
    }
    Ok(())
}

/// A window of the base read [`OLD_PIECE`] bytes at a time through a small cache: bsdiff reads
/// its old bytes mostly forward, so one positioned read serves many control entries. With the
/// x86 filter, the cache holds two whole [`FILTER_CHUNK`]s, each filtered on its own.
struct WindowReader<'a> {
    base: &'a dyn BaseRead,
    src: u64,
    len: u64,
    x86: bool,
    cache: Vec<u8>,
    cache_at: u64,
}

impl<'a> WindowReader<'a> {
    fn new(base: &'a dyn BaseRead, src: u64, len: u64, x86: bool) -> Self {
        Self {
            base,
            src,
            len,
            x86,
            cache: Vec::new(),
            cache_at: 0,
        }
    }

    /// Fills the cache with the window bytes from `at` (a chunk start when filtered).
    fn fill(&mut self, at: u64) -> io::Result<()> {
        let span = if self.x86 {
            2 * FILTER_CHUNK
        } else {
            OLD_PIECE
        };
        let fill = (self.len - at).min(span as u64) as usize;
        self.cache.resize(fill, 0);
        let offset = self
            .src
            .checked_add(at)
            .ok_or_else(|| io::Error::other("window offset overflows"))?;
        self.base.read_exact_at(&mut self.cache, offset)?;
        self.cache_at = at;
        if self.x86 {
            for (n, chunk) in self.cache.chunks_mut(FILTER_CHUNK).enumerate() {
                branch::filter(chunk, (at + (n * FILTER_CHUNK) as u64) as i64);
            }
        }
        Ok(())
    }
}

impl OldBytes for WindowReader<'_> {
    fn len(&self) -> u64 {
        self.len
    }

    fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let end = at
            .checked_add(n as u64)
            .filter(|end| *end <= self.len && n <= OLD_PIECE)
            .ok_or_else(|| io::Error::other("read outside the window"))?;
        let cached_end = self.cache_at + self.cache.len() as u64;
        if at < self.cache_at || end > cached_end {
            // Filtered chunks start at multiples of FILTER_CHUNK; two hold any n ≤ OLD_PIECE.
            let from = if self.x86 {
                at - at % FILTER_CHUNK as u64
            } else {
                at
            };
            self.fill(from)?;
        }
        let start = (at - self.cache_at) as usize;
        Ok(&self.cache[start..start + n])
    }
}

/// Decompresses a bsdiff patch of at most `limit` bytes; more is an error, not an allocation.
fn decompress_patch(codec: PatchCodec, data: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    match codec {
        PatchCodec::Zstd => zstd::bulk::decompress(data, limit as usize).map_err(|e| e.to_string()),
        PatchCodec::Bzip2 => bunzip_bounded(data, limit),
        PatchCodec::Lzma2 | PatchCodec::Lzma2Sparse => lzma::decompress_bounded(data, limit),
    }
}

/// bzip2-decompresses at most `limit` bytes; more is an error, not an allocation.
fn bunzip_bounded(data: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut out = Vec::new();
    bzip2::read::BzDecoder::new(data)
        .take(limit + 1)
        .read_to_end(&mut out)
        .map_err(|e| e.to_string())?;
    if out.len() as u64 > limit {
        return Err(format!("it expands past {limit} bytes"));
    }
    Ok(out)
}

fn check_len(len: u64) -> Result<(), ApplyError> {
    if len > MAX_DATA_OP_LEN {
        return Err(ApplyError::Data(format!(
            "operation writes {len} bytes, more than {MAX_DATA_OP_LEN}"
        )));
    }
    Ok(())
}

fn exact(out: Vec<u8>, len: u64) -> Result<Vec<u8>, ApplyError> {
    if out.len() as u64 != len {
        return Err(ApplyError::Data(format!(
            "operation produced {} bytes instead of {len}",
            out.len()
        )));
    }
    Ok(out)
}

fn check_window(window: u64) -> Result<(), ApplyError> {
    if window > MAX_WINDOW {
        return Err(ApplyError::Data(format!(
            "window of {window} bytes is over {MAX_WINDOW}"
        )));
    }
    Ok(())
}

fn read_window(base: &dyn BaseRead, src: u64, window: u64) -> Result<Vec<u8>, ApplyError> {
    check_window(window)?;
    let mut buf = vec![0u8; window as usize];
    base.read_exact_at(&mut buf, src)
        .map_err(ApplyError::Base)?;
    Ok(buf)
}

pub(super) fn decompress_with_prefix(
    data: &[u8],
    window: &[u8],
    len: u64,
) -> Result<Vec<u8>, ApplyError> {
    let err = |code: usize| {
        ApplyError::Data(format!(
            "zstd_ref data does not decompress: {}",
            zstd_safe::get_error_name(code)
        ))
    };
    let mut dctx = zstd_safe::DCtx::create();
    dctx.set_parameter(zstd_safe::DParameter::WindowLogMax(window_log(
        window.len() as u64,
        len,
    )))
    .map_err(err)?;
    dctx.ref_prefix(window).map_err(err)?;
    let mut out: Vec<u8> = Vec::with_capacity(len as usize);
    dctx.decompress(&mut out, data).map_err(err)?;
    exact(out, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Mem(Vec<u8>);
    impl BaseRead for Mem {
        fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
            let start = usize::try_from(offset).map_err(io::Error::other)?;
            let src = self
                .0
                .get(start..start + buf.len())
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "past the end"))?;
            buf.copy_from_slice(src);
            Ok(())
        }
    }

    fn run(op: &Op, data: &[u8], base: &Mem) -> Result<Vec<u8>, ApplyError> {
        let mut out = Vec::new();
        apply_op(op, data.to_vec(), base, &mut |piece| {
            out.extend_from_slice(&piece);
            Ok(())
        })?;
        Ok(out)
    }

    #[test]
    fn zstd_ref_round_trip_and_wrong_window_fails() {
        let base = Mem((0..100_000u32).map(|i| (i * 7 % 253) as u8).collect());
        let mut target = base.0[10_000..60_000].to_vec();
        target[123] ^= 0xff;
        let window = &base.0[0..80_000];
        let mut cctx = zstd_safe::CCtx::create();
        cctx.set_parameter(zstd_safe::CParameter::WindowLog(window_log(80_000, 50_000)))
            .unwrap();
        cctx.ref_prefix(window).unwrap();
        let mut stored = Vec::with_capacity(100_000);
        cctx.compress2(&mut stored, &target).unwrap();
        assert!(stored.len() < 1000, "prefix not used: {}", stored.len());
        let op = Op::ZstdRef {
            len: 50_000,
            src: 0,
            window: 80_000,
            stored: stored.len() as u32,
            sha256: crate::Sha256Digest::of(&stored),
        };
        assert_eq!(run(&op, &stored, &base).unwrap(), target);
        let shifted = Op::ZstdRef {
            len: 50_000,
            src: 1,
            window: 80_000,
            stored: 0,
            sha256: crate::Sha256Digest::of(b""),
        };
        assert_ne!(run(&shifted, &stored, &base).ok(), Some(target));
    }

    #[test]
    fn copy_outside_base_is_an_error_not_a_panic() {
        let base = Mem(vec![1u8; 1000]);
        assert!(run(&Op::Copy { len: 10, src: 995 }, &[], &base).is_err());
        let op = Op::Replace {
            len: 5,
            stored: 3,
            sha256: crate::Sha256Digest::of(b"abc"),
        };
        assert!(run(&op, b"abc", &base).is_err());
    }
}
