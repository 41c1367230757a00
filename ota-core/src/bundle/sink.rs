//! Where verified image bytes go: a file (written sparse, renamed into place only once the
//! image hash matched) or nowhere (verification only).

use super::resume::Checkpoint;
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Receives an image's bytes in order, each piece already checked against its chunk hash.
pub trait ImageSink {
    /// Appends the next verified piece of the image.
    fn write_piece(&mut self, data: &[u8]) -> io::Result<()>;
    /// Called once the whole image was written and its SHA-256 matched the manifest.
    fn finish(self: Box<Self>) -> io::Result<()>;
    /// Image bytes between two [`ImageSink::checkpoint`] calls; `None` (the default): none.
    fn checkpoint_every(&self) -> Option<u64> {
        None
    }
    /// Every piece before `at.point.image_offset` was handed to [`ImageSink::write_piece`]: a
    /// sink that can resume makes them durable, then records the point.
    fn checkpoint(&mut self, at: &Checkpoint) -> io::Result<()> {
        let _ = at;
        Ok(())
    }
}

/// Verifies without keeping anything.
pub struct DiscardSink;

impl ImageSink for DiscardSink {
    fn write_piece(&mut self, _data: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn finish(self: Box<Self>) -> io::Result<()> {
        Ok(())
    }
}

/// Writes an image to a new file next to `path`, then renames it to `path` when the image
/// verified. Runs of zero bytes become holes, so a sparse image stays sparse. A sink dropped
/// without [`ImageSink::finish`] removes its partial file.
pub struct FileImageSink {
    file: Option<File>,
    partial: PathBuf,
    target: PathBuf,
    len: u64,
}

impl FileImageSink {
    /// Creates `.NAME.partial` beside `target`.
    pub fn create(target: &Path) -> io::Result<Self> {
        let name = target.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "output path has no file name")
        })?;
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(".partial");
        let partial = target.with_file_name(partial_name);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&partial)?;
        Ok(Self {
            file: Some(file),
            partial,
            target: target.to_owned(),
            len: 0,
        })
    }
}

impl ImageSink for FileImageSink {
    fn write_piece(&mut self, data: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("image sink already finished"))?;
        if data.iter().all(|&b| b == 0) {
            file.seek(SeekFrom::Current(data.len() as i64))?;
        } else {
            file.write_all(data)?;
        }
        self.len += data.len() as u64;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("image sink already finished"))?;
        // A trailing hole needs the length set explicitly.
        file.set_len(self.len)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.partial, &self.target)
    }
}

impl Drop for FileImageSink {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}
