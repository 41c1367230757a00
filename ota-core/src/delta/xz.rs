//! `xz` operations (delta format 5): a run of back-to-back xz streams of the target (the
//! blocks of a squashfs-xz image, `.xz` files) re-created bit for bit from their content,
//! which travels as a zstd delta against the content of a run of old xz streams of the base.
//!
//! A changed squashfs block is new compressed bytes from its first changed byte on, so the
//! generic encoders find little in it; its content is mostly the old content. Sending the
//! content delta only works when the device compresses the content back to exactly the bytes
//! of the image: squashfs-tools (and `xz` for single-block files) call liblzma's
//! `lzma_stream_buffer_encode` with one LZMA2 filter, a preset and a dictionary size. The
//! operation names those settings, the generator proves for every stream that this module's
//! encoder (the liblzma built from the source bundled with `liblzma-sys`, pinned by
//! Cargo.lock) re-creates it, and a stream that does not stays with the other encoders.
//!
//! The stored data is one zstd frame of the new streams' contents, one after the other, with
//! the old streams' content as prefix. The device decodes the old streams from the base
//! (at most [`MAX_XZ_RAW`] bytes of content), decompresses the frame, and compresses each
//! stream's content again. Applying costs that compression: about 50 × the time of the other
//! operations (docs/delta.md), which is why the generator makes them only when asked.

use super::apply::{decompress_with_prefix, ApplyError, BaseRead};
use super::gzip::BaseRange;
use liblzma::stream::{Stream, CONCATENATED};
use std::io::{BufRead, Read};

/// Most content bytes of the old streams an operation decodes, and of the new streams it
/// re-creates (bounds apply memory).
pub const MAX_XZ_RAW: u64 = 4 << 20;
/// Most streams one operation re-creates (bounds the operation's size in memory).
pub const MAX_XZ_STREAMS: u64 = 1024;
/// Largest dictionary an operation may name (squashfs's largest block).
pub const MAX_XZ_DICT: u32 = 1 << 20;
/// Most memory the encoder may need for the named settings (checked before it allocates):
/// the heaviest preset with the largest dictionary needs 12.6 MiB.
pub const MAX_XZ_ENCODER_MEM: u64 = 14 << 20;
/// Most memory the decoder of old streams may use (their dictionary).
const DECODER_MEMLIMIT: u64 = 8 << 20;
/// The xz stream header magic.
pub const XZ_MAGIC: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];

/// How the streams of an operation are compressed: `lzma_stream_buffer_encode` with one LZMA2
/// filter made from `preset` (0..=9, optionally | [`PRESET_EXTREME`]) with its dictionary set
/// to `dict_size`, and the integrity check `check` (0 none, 1 CRC32, 4 CRC64, 10 SHA-256).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct XzSettings {
    /// liblzma preset.
    pub preset: u32,
    /// LZMA2 dictionary size.
    pub dict_size: u32,
    /// xz check id.
    pub check: u8,
}

/// liblzma's "extreme" preset flag.
pub const PRESET_EXTREME: u32 = liblzma_sys::LZMA_PRESET_EXTREME;

impl XzSettings {
    /// Why these settings are refused, if they are: unknown preset or check, or a dictionary
    /// outside 4 KiB..=[`MAX_XZ_DICT`].
    pub fn problem(&self) -> Option<String> {
        let level = self.preset & !PRESET_EXTREME;
        if level > 9 {
            return Some(format!("unknown xz preset {:#x}", self.preset));
        }
        if ![0, 1, 4, 10].contains(&self.check) {
            return Some(format!("unknown xz check {}", self.check));
        }
        if !(4096..=MAX_XZ_DICT).contains(&self.dict_size) {
            return Some(format!(
                "xz dictionary of {} bytes (4096..={MAX_XZ_DICT} allowed)",
                self.dict_size
            ));
        }
        None
    }
}

/// Appends the xz stream of `content` compressed with `settings` to `out`, failing when it
/// would make `out` longer than `limit` bytes. `out` never grows past `limit`.
///
/// The one call into liblzma's C API (the `liblzma` crate wraps the streaming encoders, whose
/// block headers differ from `lzma_stream_buffer_encode`'s): unsafe code is denied in the
/// workspace and allowed here only, each block with the reason it is sound.
#[allow(unsafe_code)]
pub fn encode_stream(
    content: &[u8],
    settings: XzSettings,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<(), String> {
    if let Some(problem) = settings.problem() {
        return Err(problem);
    }
    // SAFETY: lzma_options_lzma is a plain C struct for which all-zero bytes are a valid
    // value (null pointers, zero integers); lzma_lzma_preset then fills it in.
    let mut options: liblzma_sys::lzma_options_lzma = unsafe { std::mem::zeroed() };
    // SAFETY: `options` is a valid, writable lzma_options_lzma.
    if unsafe { liblzma_sys::lzma_lzma_preset(&mut options, settings.preset) } != 0 {
        return Err(format!("unknown xz preset {:#x}", settings.preset));
    }
    options.dict_size = settings.dict_size;
    let mut filters = [
        liblzma_sys::lzma_filter {
            id: liblzma_sys::LZMA_FILTER_LZMA2,
            options: (&mut options as *mut liblzma_sys::lzma_options_lzma).cast(),
        },
        liblzma_sys::lzma_filter {
            id: liblzma_sys::LZMA_VLI_UNKNOWN,
            options: std::ptr::null_mut(),
        },
    ];
    // SAFETY: `filters` is a terminated filter chain whose options outlive the call.
    let memory = unsafe { liblzma_sys::lzma_raw_encoder_memusage(filters.as_ptr()) };
    if memory > MAX_XZ_ENCODER_MEM {
        return Err(format!(
            "the xz encoder would need {memory} bytes of memory (at most {MAX_XZ_ENCODER_MEM})"
        ));
    }
    if out.len() >= limit {
        return Err(format!("the output passes {limit} bytes"));
    }
    out.reserve_exact(limit - out.len());
    let mut position = out.len();
    // SAFETY: the filters are valid (above); the input is `content`; liblzma writes only to
    // `out`'s allocation between `position` and `limit` (reserved above) and reports in
    // `position` how far it wrote, all of which it initialised.
    let ret = unsafe {
        liblzma_sys::lzma_stream_buffer_encode(
            filters.as_mut_ptr(),
            liblzma_sys::lzma_check::from(settings.check),
            std::ptr::null(),
            content.as_ptr(),
            content.len(),
            out.as_mut_ptr(),
            &mut position,
            limit,
        )
    };
    match ret {
        liblzma_sys::LZMA_OK => {
            // SAFETY: liblzma initialised out[..position], with position ≤ limit ≤ capacity.
            unsafe { out.set_len(position) };
            Ok(())
        }
        liblzma_sys::LZMA_BUF_ERROR => Err(format!("the output passes {limit} bytes")),
        other => Err(format!("liblzma refused to compress (error {other})")),
    }
}

/// The version of the liblzma that re-creates streams (for error messages).
#[allow(unsafe_code)]
pub fn liblzma_version() -> String {
    // SAFETY: lzma_version_string returns a static NUL-terminated string.
    let version = unsafe { std::ffi::CStr::from_ptr(liblzma_sys::lzma_version_string()) };
    version.to_string_lossy().into_owned()
}

/// Decodes xz data read from `input`: one stream, or with `concatenated` any number of
/// back-to-back streams (with the format's zero padding between them), to the end of the
/// input. Refuses more than `limit` bytes of content and dictionaries over the decoder's
/// memory limit. Returns the content and the compressed bytes consumed.
pub fn decode_streams(
    input: impl BufRead,
    concatenated: bool,
    limit: u64,
) -> Result<(Vec<u8>, u64), String> {
    let flags = if concatenated { CONCATENATED } else { 0 };
    let stream = Stream::new_stream_decoder(DECODER_MEMLIMIT, flags).map_err(|e| e.to_string())?;
    let mut decoder = liblzma::bufread::XzDecoder::new_stream(input, stream);
    let mut content = Vec::new();
    (&mut decoder)
        .take(limit + 1)
        .read_to_end(&mut content)
        .map_err(|e| e.to_string())?;
    if content.len() as u64 > limit {
        return Err(format!("it decompresses to more than {limit} bytes"));
    }
    Ok((content, decoder.total_in()))
}

/// The streams of `len` bytes from the operation's `stored` frame (dropped once
/// decompressed) and the old streams' content: each of `raw_lens` bytes of the frame
/// compressed with `settings`, one after the other. Holds at most the old content and the
/// frame, then the new content, the encoder and `len` bytes of output.
pub fn rebuild(
    stored: Vec<u8>,
    old_raw: Vec<u8>,
    raw_lens: &[u64],
    settings: XzSettings,
    len: u64,
) -> Result<Vec<u8>, ApplyError> {
    let total = raw_lens
        .iter()
        .try_fold(0u64, |sum, n| sum.checked_add(*n))
        .filter(|t| *t <= MAX_XZ_RAW)
        .ok_or_else(|| ApplyError::Data("xz operation content is too long".into()))?;
    let content = decompress_with_prefix(&stored, &old_raw, total)?;
    drop((stored, old_raw));
    let limit = usize::try_from(len).map_err(|_| ApplyError::Data("length overflows".into()))?;
    let mut out = Vec::with_capacity(limit);
    let mut at = 0usize;
    for &n in raw_lens {
        // Every length fits: their sum is at most MAX_XZ_RAW, the content's length.
        let piece = &content[at..at + n as usize];
        at += n as usize;
        encode_stream(piece, settings, &mut out, limit).map_err(|e| {
            ApplyError::Data(format!(
                "xz operation cannot re-create its streams with liblzma {} ({e}): the delta is \
                 corrupt or was made for another liblzma; use the full image or a delta made \
                 without --xz-content",
                liblzma_version()
            ))
        })?;
    }
    if out.len() != limit {
        return Err(ApplyError::Data(format!(
            "xz operation re-created {} bytes instead of {len} (liblzma {})",
            out.len(),
            liblzma_version()
        )));
    }
    Ok(out)
}

/// Applies an `xz` operation: decodes the old streams `base[src..src+window]`, then
/// [`rebuild`]s the new ones.
pub fn apply(
    stored: Vec<u8>,
    base: &dyn BaseRead,
    (src, window): (u64, u64),
    raw_lens: &[u64],
    settings: XzSettings,
    len: u64,
) -> Result<Vec<u8>, ApplyError> {
    let wrong_base = |e: String| {
        ApplyError::Data(format!(
            "the base holds no xz streams at {src}+{window} ({e}): is this the right base?"
        ))
    };
    let (old_raw, consumed) =
        decode_streams(BaseRange::new(base, src, window), true, MAX_XZ_RAW).map_err(wrong_base)?;
    if consumed != window {
        return Err(wrong_base(format!("they end at {consumed} bytes")));
    }
    rebuild(stored, old_raw, raw_lens, settings, len)
}

/// The settings written in the header of the xz stream `stream` when it is one LZMA2 block
/// (what `lzma_stream_buffer_encode` makes): its check and dictionary size. The preset is
/// not written anywhere; the generator finds it by trying.
pub fn stream_settings(stream: &[u8], preset: u32) -> Option<XzSettings> {
    if stream.get(..6)? != XZ_MAGIC || stream.get(6)? != &0 {
        return None;
    }
    let check = stream.get(7)? & 0x0f;
    let header = stream.get(12..)?;
    let header_len = (usize::from(*header.first()?) + 1) * 4;
    let flags = *header.get(1)?;
    if header_len == 4 || flags & 0x03 != 0 {
        return None; // no block, or more than one filter
    }
    let mut at = 2usize;
    for present in [0x40u8, 0x80] {
        if flags & present != 0 {
            at += header
                .get(at..header_len)?
                .iter()
                .position(|b| b & 0x80 == 0)?
                + 1;
        }
    }
    // Filter flags: id 0x21 (LZMA2), one property byte: the dictionary size.
    let (id, props_len, props) = (*header.get(at)?, *header.get(at + 1)?, *header.get(at + 2)?);
    if id != 0x21 || props_len != 1 || props > 40 {
        return None;
    }
    let dict_size = if props == 40 {
        u32::MAX
    } else {
        (2 | u32::from(props & 1)) << (props / 2 + 11)
    };
    let settings = XzSettings {
        preset,
        dict_size,
        check,
    };
    settings.problem().is_none().then_some(settings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: u32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| format!("line {i}: squashfs block content {}\n", i * 7 % 13).into_bytes())
            .collect()
    }

    const SQUASHFS: XzSettings = XzSettings {
        preset: 6,
        dict_size: 128 << 10,
        check: 1,
    };

    #[test]
    fn streams_round_trip_and_their_settings_are_read_back() {
        let content = text(5000);
        let mut stream = Vec::new();
        encode_stream(&content, SQUASHFS, &mut stream, 1 << 20).unwrap();
        assert_eq!(stream_settings(&stream, 6), Some(SQUASHFS));
        let (back, consumed) = decode_streams(&stream[..], false, 1 << 20).unwrap();
        assert_eq!((back, consumed), (content.clone(), stream.len() as u64));
        // Two streams back to back decode as one run; one byte short of the content refused.
        let mut two = stream.clone();
        two.extend_from_slice(&stream);
        let (both, _) = decode_streams(&two[..], true, 1 << 20).unwrap();
        assert_eq!(both.len(), 2 * content.len());
        let e = decode_streams(&two[..], true, 2 * content.len() as u64 - 1).unwrap_err();
        assert!(e.contains("more than"), "{e}");
        // The output limit is a hard bound.
        let mut short = Vec::new();
        assert!(encode_stream(&content, SQUASHFS, &mut short, stream.len() - 1).is_err());
        assert!(short.capacity() < stream.len());
    }

    /// docs/bundle-format.md (kind 9) names the liblzma whose output devices re-create: an
    /// upgrade of `liblzma-sys` must come with that text and the mksquashfs tests re-checked.
    #[test]
    fn the_encoder_is_the_documented_liblzma() {
        assert_eq!(liblzma_version(), "5.8.4");
    }

    #[test]
    fn hostile_settings_are_refused_before_allocating() {
        for bad in [
            XzSettings {
                preset: 10,
                ..SQUASHFS
            },
            XzSettings {
                check: 2,
                ..SQUASHFS
            },
            XzSettings {
                dict_size: MAX_XZ_DICT + 1,
                ..SQUASHFS
            },
            XzSettings {
                dict_size: 1,
                ..SQUASHFS
            },
        ] {
            assert!(bad.problem().is_some(), "{bad:?}");
            assert!(encode_stream(b"x", bad, &mut Vec::new(), 1 << 20).is_err());
        }
        // The largest dictionary at the heaviest preset fits the encoder memory bound.
        let heaviest = XzSettings {
            preset: 9 | PRESET_EXTREME,
            dict_size: MAX_XZ_DICT,
            check: 10,
        };
        let mut out = Vec::new();
        encode_stream(&text(100), heaviest, &mut out, 1 << 20).unwrap();
        assert_eq!(stream_settings(&out, heaviest.preset), Some(heaviest));
    }

    #[test]
    fn rebuild_re_creates_streams_from_a_small_frame() {
        let old = text(20_000);
        let mut new = old.clone();
        new.splice(5000..5000, b"an inserted line\n".iter().copied());
        let (a, b) = new.split_at(new.len() / 2);
        let mut streams = Vec::new();
        for part in [a, b] {
            encode_stream(part, SQUASHFS, &mut streams, 1 << 20).unwrap();
        }
        let stored = super::super::generate::compress_with_prefix(&new, &old, 19).unwrap();
        assert!(stored.len() < 300, "{}", stored.len());
        let lens = [a.len() as u64, b.len() as u64];
        let out = rebuild(
            stored.clone(),
            old.clone(),
            &lens,
            SQUASHFS,
            streams.len() as u64,
        );
        assert_eq!(out.unwrap(), streams);
        // Other settings or lengths give an error or other bytes, never a silent success.
        let other = XzSettings {
            preset: 1,
            ..SQUASHFS
        };
        let res = rebuild(
            stored.clone(),
            old.clone(),
            &lens,
            other,
            streams.len() as u64,
        );
        assert!(res.map_or(true, |o| o != streams));
        let res = rebuild(stored, old, &lens, SQUASHFS, streams.len() as u64 - 1);
        assert!(res.is_err());
    }
}
