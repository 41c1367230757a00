//! LZMA2 for `bsdiff` patches (delta format 3): a raw LZMA2 stream (no .xz container: the
//! operation's SHA-256 already protects the bytes, and the container's ~60 bytes matter on
//! small deltas), decoded with a dictionary of [`DICT_SIZE`], which the format fixes so that
//! nothing but the stream itself has to be stored. The literal and position parameters travel
//! inside the stream (LZMA2 chunk headers), so the encoder may tune them per patch.

use liblzma::stream::{Action, Filters, LzmaOptions, Status, Stream, PRESET_EXTREME};
use std::io;

/// Dictionary size of every patch stream: the decoder's, and the most an encoder may use.
/// liblzma's decoder copies out of its dictionary, so while a patch decompresses it is held
/// twice (dictionary pages are touched only as far as the output goes): 2 MiB, the length of
/// the largest operation, bounds that copy, where a dictionary the size of the largest patch
/// (6 MiB) would take a hostile operation's peak from 14 to 18 MiB. Matches further back than
/// 2 MiB are rare in a patch of one ≤ 2 MiB extent.
pub(super) const DICT_SIZE: u32 = 2 << 20;

/// Encoder settings: xz's preset, then the literal/position parameters (lc, lp, pb).
#[derive(Debug, Clone, Copy)]
pub(super) struct Tuning {
    pub preset: u32,
    pub literal_context_bits: u32,
    pub literal_position_bits: u32,
    pub position_bits: u32,
}

/// For the plain layout: preset 9 with xz's defaults (lc 3, lp 0, pb 2). Its input is the
/// size of the extent and more; the extreme variant saved 2.4 % more on libarrow but took
/// its generation from 34 to 52 s (docs/delta.md).
pub(super) const PLAIN_TUNING: Tuning = Tuning {
    preset: 9,
    literal_context_bits: 3,
    literal_position_bits: 0,
    position_bits: 2,
};

/// For the sparse layout, whose input is small (the changed bytes and their positions): the
/// extreme preset, with xz's defaults and with lc 1, lp 0, pb 0 (varint streams have no
/// alignment and little literal context; numpy pair: 9,428 bytes instead of 9,577).
pub(super) const SPARSE_TUNINGS: [Tuning; 2] = [
    Tuning {
        preset: 9 | PRESET_EXTREME,
        literal_context_bits: 3,
        literal_position_bits: 0,
        position_bits: 2,
    },
    Tuning {
        preset: 9 | PRESET_EXTREME,
        literal_context_bits: 1,
        literal_position_bits: 0,
        position_bits: 0,
    },
];

fn lzma_error(e: liblzma::stream::Error) -> io::Error {
    io::Error::other(format!("lzma: {e}"))
}

/// Compresses `data` as a raw LZMA2 stream with `tuning` and a dictionary no larger than the
/// data (and [`DICT_SIZE`]).
pub(super) fn compress(data: &[u8], tuning: Tuning) -> io::Result<Vec<u8>> {
    let dict = u32::try_from(data.len())
        .unwrap_or(u32::MAX)
        .clamp(4096, DICT_SIZE);
    let mut options = LzmaOptions::new_preset(tuning.preset).map_err(lzma_error)?;
    options
        .dict_size(dict)
        .literal_context_bits(tuning.literal_context_bits)
        .literal_position_bits(tuning.literal_position_bits)
        .position_bits(tuning.position_bits);
    let mut filters = Filters::new();
    filters.lzma2(&options);
    let mut stream = Stream::new_raw_encoder(&filters).map_err(lzma_error)?;
    let mut out = Vec::with_capacity(data.len() / 4 + 4096);
    loop {
        let consumed = stream.total_in() as usize;
        if out.len() == out.capacity() {
            out.reserve(out.capacity().max(4096));
        }
        let status = stream
            .process_vec(&data[consumed..], &mut out, Action::Finish)
            .map_err(lzma_error)?;
        if status == Status::StreamEnd {
            return Ok(out);
        }
    }
}

/// Decompresses a raw LZMA2 stream that must end exactly at the end of `data` and produce at
/// most `limit` bytes; a longer output is an error, never an allocation past `limit + 1`.
pub(super) fn decompress_bounded(data: &[u8], limit: u64) -> Result<Vec<u8>, String> {
    let mut options = LzmaOptions::new_preset(0).map_err(|e| e.to_string())?;
    options.dict_size(DICT_SIZE);
    let mut filters = Filters::new();
    filters.lzma2(&options);
    let mut stream = Stream::new_raw_decoder(&filters).map_err(|e| e.to_string())?;
    let capacity = usize::try_from(limit.saturating_add(1)).map_err(|_| "limit too large")?;
    let mut out = Vec::with_capacity(capacity);
    loop {
        let consumed = usize::try_from(stream.total_in()).map_err(|_| "input overflow")?;
        let produced = out.len();
        let status = stream
            .process_vec(&data[consumed..], &mut out, Action::Finish)
            .map_err(|e| e.to_string())?;
        if out.len() as u64 > limit {
            return Err(format!("it expands past {limit} bytes"));
        }
        if status == Status::StreamEnd {
            break;
        }
        if stream.total_in() as usize == consumed && out.len() == produced {
            return Err("the LZMA2 stream is truncated".into());
        }
    }
    if stream.total_in() != data.len() as u64 {
        return Err(format!(
            "{} bytes follow the end of the LZMA2 stream",
            data.len() as u64 - stream.total_in()
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_hostile_streams() {
        let data: Vec<u8> = (0..300_000u32)
            .map(|i| if i % 97 == 0 { (i / 97) as u8 } else { 0 })
            .collect();
        for tuning in [PLAIN_TUNING, SPARSE_TUNINGS[0], SPARSE_TUNINGS[1]] {
            let packed = compress(&data, tuning).unwrap();
            assert!(packed.len() < data.len() / 20, "{}", packed.len());
            assert_eq!(
                decompress_bounded(&packed, data.len() as u64).unwrap(),
                data
            );
            // One byte short of the output: refused, not truncated silently.
            let e = decompress_bounded(&packed, data.len() as u64 - 1).unwrap_err();
            assert!(e.contains("expands past"), "{e}");
            // Truncated, trailing bytes, garbage.
            assert!(decompress_bounded(&packed[..packed.len() - 1], 1 << 20).is_err());
            let mut longer = packed.clone();
            longer.push(0);
            let e = decompress_bounded(&longer, 1 << 20).unwrap_err();
            assert!(e.contains("follow the end"), "{e}");
        }
        assert!(decompress_bounded(&[0xff; 64], 1 << 20).is_err());
        assert!(decompress_bounded(&[], 1 << 20).is_err());
    }
}
