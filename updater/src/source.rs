//! Where a bundle is read from (a file, a download, stdin), buffered, and able to move forward
//! without reading: a resumed install skips the payload the slot already holds (a file seeks,
//! a download asks for a range, stdin reads and discards).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};

/// A byte stream that can skip ahead.
pub trait Forward: Read + Send {
    /// Moves `n` bytes forward.
    fn forward(&mut self, n: u64) -> io::Result<()>;
}

impl Forward for File {
    fn forward(&mut self, n: u64) -> io::Result<()> {
        let at = self.stream_position()?;
        let to = at
            .checked_add(n)
            .ok_or_else(|| io::Error::other("skip past the end of the file"))?;
        if to > self.metadata()?.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the bundle file ends inside its payload",
            ));
        }
        self.seek(SeekFrom::Start(to)).map(|_| ())
    }
}

/// A stream that cannot seek: skipping reads and discards.
pub struct ReadThrough<R>(pub R);

impl<R: Read> Read for ReadThrough<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Read + Send> Forward for ReadThrough<R> {
    fn forward(&mut self, n: u64) -> io::Result<()> {
        ota_core::bundle::skip_by_reading(&mut self.0, n)
    }
}

/// A bundle source: buffered reads, and skips that drop what the buffer holds first.
pub struct BundleSource {
    inner: BufReader<Box<dyn Forward>>,
}

impl BundleSource {
    /// Buffers `inner` (1 MiB: a few large reads per chunk).
    pub fn new(inner: Box<dyn Forward>) -> Self {
        Self {
            inner: BufReader::with_capacity(1 << 20, inner),
        }
    }

    /// Moves `n` bytes forward.
    pub fn skip(&mut self, n: u64) -> io::Result<()> {
        let buffered = self.inner.buffer().len();
        match usize::try_from(n) {
            Ok(n) if n <= buffered => {
                self.inner.consume(n);
                Ok(())
            }
            _ => {
                self.inner.consume(buffered);
                self.inner.get_mut().forward(n - buffered as u64)
            }
        }
    }
}

impl Read for BundleSource {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn skips_cross_the_buffer_and_the_file_alike() {
        let mut file = tempfile::tempfile().unwrap();
        let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        file.write_all(&bytes).unwrap();
        file.rewind().unwrap();
        for inner in [
            Box::new(file.try_clone().unwrap()) as Box<dyn Forward>,
            Box::new(ReadThrough(std::io::Cursor::new(bytes.clone()))),
        ] {
            let mut source = BundleSource::new(inner);
            let mut b = [0u8; 10];
            source.read_exact(&mut b).unwrap();
            source.skip(5).unwrap();
            source.read_exact(&mut b).unwrap();
            assert_eq!(b, bytes[15..25]);
            source.skip(2_000_000).unwrap();
            source.read_exact(&mut b).unwrap();
            assert_eq!(b, bytes[2_000_025..2_000_035]);
            assert!(source.skip(2_000_000).is_err());
        }
    }
}
