//! `gzip` operations: a gzip file of the target re-created bit for bit from its uncompressed
//! content, which is carried as a zstd delta against the *uncompressed* old file.
//!
//! A one-line change to a man page or a changelog rewrites its whole `.gz` (deflate output
//! diverges after the first changed byte), so diffing compressed bytes saves little; diffing
//! what they decompress to saves almost everything. That only works when the device can
//! compress the new content back to exactly the bytes of the image: Debian's `gzip -9n` output
//! equals zlib's level 9 (memory level 8, 32 KiB window) for most files, and the generator
//! proves it for each file by re-creating it with this module's own code, the same that runs
//! on the device (zlib built from the source bundled with `libz-sys`, pinned by Cargo.lock).
//! A file that does not re-create exactly is left to the other encoders.
//!
//! The stored data is one zstd frame, with the old file's uncompressed content as prefix, of
//! the new gzip header followed by the new uncompressed content. The device inflates the old
//! file from the base (at most [`MAX_GZIP_RAW`] bytes), decompresses the frame, deflates the
//! content and appends the CRC-32 and length trailer.

use super::apply::{decompress_with_prefix, ApplyError, BaseRead};
use super::generate::compress_with_prefix;
use flate2::{Compress, Compression, Crc, FlushCompress, Status};
use std::io::{self, BufRead, Read};

/// Most bytes the old or the new file may decompress to (bounds apply memory).
pub const MAX_GZIP_RAW: u64 = 4 << 20;
/// Most bytes of a gzip header (name and comment included).
pub const MAX_GZIP_HEADER: u64 = 1024;

/// The length of the gzip header at the start of `gz`, if it is one (deflate, known flags).
pub fn header_len(gz: &[u8]) -> Option<usize> {
    if gz.len() < 18 || gz[0..3] != [0x1f, 0x8b, 8] || gz[3] & 0xe0 != 0 {
        return None;
    }
    let flags = gz[3];
    let mut at = 10usize;
    if flags & 4 != 0 {
        let extra = usize::from(u16::from_le_bytes([*gz.get(at)?, *gz.get(at + 1)?]));
        at += 2 + extra;
    }
    for flag in [8u8, 16] {
        if flags & flag != 0 {
            at += gz.get(at..)?.iter().position(|&b| b == 0)? + 1;
        }
    }
    if flags & 2 != 0 {
        at += 2;
    }
    (at as u64 <= MAX_GZIP_HEADER && at + 8 <= gz.len()).then_some(at)
}

/// zlib's raw deflate of `raw` at level 9 (memory level 8, 32 KiB window): what `gzip -9n`
/// produces for most files.
pub fn deflate(raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len() / 2 + 1024);
    deflate_into(raw, &mut out, u64::MAX)?;
    Ok(out)
}

/// Appends the raw deflate of `raw` to `out`, failing once `out` would pass `limit` bytes.
fn deflate_into(raw: &[u8], out: &mut Vec<u8>, limit: u64) -> io::Result<()> {
    let mut z = Compress::new(Compression::best(), false);
    loop {
        if out.len() as u64 > limit {
            return Err(io::Error::other(format!("the output passes {limit} bytes")));
        }
        if out.capacity() - out.len() < 64 << 10 {
            out.reserve(64 << 10);
        }
        let consumed = z.total_in() as usize;
        match z
            .compress_vec(&raw[consumed..], out, FlushCompress::Finish)
            .map_err(io::Error::other)?
        {
            Status::StreamEnd => return Ok(()),
            Status::Ok | Status::BufError => {}
        }
    }
}

/// Inflates one gzip member from `gz`, refusing more than [`MAX_GZIP_RAW`] bytes of output.
pub fn inflate(gz: impl BufRead) -> io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    flate2::bufread::GzDecoder::new(gz)
        .take(MAX_GZIP_RAW + 1)
        .read_to_end(&mut raw)?;
    if raw.len() as u64 > MAX_GZIP_RAW {
        return Err(io::Error::other(format!(
            "it decompresses to more than {MAX_GZIP_RAW} bytes"
        )));
    }
    Ok(raw)
}

/// The gzip file of `len` bytes from the operation's `stored` frame (dropped once
/// decompressed) and the old file's uncompressed content: header, zlib deflate of the
/// content, CRC-32, length. Holds at most the old content, the frame and `len` bytes of output.
pub fn rebuild(
    stored: Vec<u8>,
    old_raw: &[u8],
    header_len: u64,
    raw_len: u64,
    len: u64,
) -> Result<Vec<u8>, ApplyError> {
    let frame = decompress_with_prefix(&stored, old_raw, header_len + raw_len)?;
    drop(stored);
    let (header, raw) = frame.split_at(header_len as usize);
    let mut out = Vec::with_capacity(len as usize);
    out.extend_from_slice(header);
    let wrong_len = |made: String| {
        ApplyError::Data(format!(
            "gzip operation re-created {made} bytes instead of {len}"
        ))
    };
    deflate_into(raw, &mut out, len).map_err(|_| wrong_len(format!("more than {len}")))?;
    let mut crc = Crc::new();
    crc.update(raw);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(raw.len() as u32).to_le_bytes());
    if out.len() as u64 != len {
        return Err(wrong_len(out.len().to_string()));
    }
    Ok(out)
}

/// Reads `len` bytes of the base from `src`, 64 KiB at a time.
pub struct BaseRange<'a> {
    base: &'a dyn BaseRead,
    at: u64,
    end: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl<'a> BaseRange<'a> {
    /// The base bytes `src..src+len`.
    pub fn new(base: &'a dyn BaseRead, src: u64, len: u64) -> Self {
        Self {
            base,
            at: src,
            end: src.saturating_add(len),
            buf: Vec::new(),
            pos: 0,
        }
    }
}

impl Read for BaseRange<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let n = {
            let available = self.fill_buf()?;
            let n = available.len().min(out.len());
            out[..n].copy_from_slice(&available[..n]);
            n
        };
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for BaseRange<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.pos == self.buf.len() && self.at < self.end {
            let n = (self.end - self.at).min(64 << 10) as usize;
            self.buf.resize(n, 0);
            self.base.read_exact_at(&mut self.buf, self.at)?;
            self.at += n as u64;
            self.pos = 0;
        }
        Ok(&self.buf[self.pos..])
    }

    fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
    }
}

/// Applies a `gzip` operation: inflates the old file `base[src..src+window]`, then
/// [`rebuild`]s the new one.
pub fn apply(
    stored: Vec<u8>,
    base: &dyn BaseRead,
    (src, window): (u64, u64),
    header_len: u64,
    raw_len: u64,
    len: u64,
) -> Result<Vec<u8>, ApplyError> {
    let old_raw = inflate(BaseRange::new(base, src, window)).map_err(|e| {
        ApplyError::Data(format!(
            "the base holds no gzip file at {src}+{window} ({e}): is this the right base?"
        ))
    })?;
    rebuild(stored, &old_raw, header_len, raw_len, len)
}

/// Generator side: the stored frame for re-creating `new_gz` from `old_raw`, when zlib
/// re-creates `new_gz` exactly; `None` when it does not (or `new_gz` is not one plain gzip
/// member). Returns (stored, header length, uncompressed length).
pub fn encode(new_gz: &[u8], old_raw: &[u8], level: i32) -> Option<(Vec<u8>, u64, u64)> {
    let header = header_len(new_gz)?;
    let raw = inflate(new_gz).ok()?;
    // Cheap exactness check before compressing anything: deflate must give the same body.
    let body = &new_gz[header..new_gz.len() - 8];
    if deflate(&raw).ok()?.as_slice() != body {
        return None;
    }
    let mut frame = Vec::with_capacity(header + raw.len());
    frame.extend_from_slice(&new_gz[..header]);
    frame.extend_from_slice(&raw);
    let stored = compress_with_prefix(&frame, old_raw, level).ok()?;
    // Proof, with the device's own code path: the operation re-creates the file exactly.
    let again = rebuild(
        stored.clone(),
        old_raw,
        header as u64,
        raw.len() as u64,
        new_gz.len() as u64,
    );
    (again.ok()?.as_slice() == new_gz).then_some((stored, header as u64, raw.len() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn gzip9(raw: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), Compression::best());
        e.write_all(raw).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_changed_text_re_creates_exactly_from_a_small_frame() {
        let old: Vec<u8> = (0..20_000)
            .flat_map(|i| format!("line {i} of the manual page\n").into_bytes())
            .collect();
        let mut new = old.clone();
        new.splice(1000..1000, b"a new paragraph\n".iter().copied());
        let new_gz = gzip9(&new);
        let (stored, header, raw_len) = encode(&new_gz, &old, 19).expect("zlib re-creates it");
        assert!(stored.len() < 200, "frame of {} bytes", stored.len());
        let out = rebuild(stored.clone(), &old, header, raw_len, new_gz.len() as u64).unwrap();
        assert_eq!(out, new_gz);
        // Another old content gives other bytes, never a silent success.
        assert!(rebuild(stored, &new, header, raw_len, new_gz.len() as u64)
            .map_or(true, |o| o != new_gz));
    }

    #[test]
    fn streams_zlib_does_not_re_create_are_left_alone() {
        let raw: Vec<u8> = (0..4000u32)
            .flat_map(|i| (i * i % 1009).to_string().into_bytes())
            .collect();
        let mut fast = flate2::write::GzEncoder::new(Vec::new(), Compression::fast());
        fast.write_all(&raw).unwrap();
        let fast = fast.finish().unwrap();
        assert!(encode(&fast, &raw, 3).is_none());
        assert!(encode(b"not gzip at all, not at all", &raw, 3).is_none());
        let mut two_members = gzip9(b"one");
        two_members.extend(gzip9(b"two"));
        assert!(encode(&two_members, &raw, 3).is_none());
    }
}
