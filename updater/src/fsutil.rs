//! Durable file writes: the only way the updater changes its state files.

use crate::fault;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `bytes` atomically: temporary file in the same directory, fsync,
/// rename over `path`, fsync of the directory. A power cut at any moment leaves either the old
/// or the new content, never a mix.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        file.write_all(bytes)?;
        fault::point("atomic-write: temp written");
        file.sync_all()?;
    }
    fault::point("atomic-write: temp synced");
    fs::rename(&tmp, path)?;
    fault::point("atomic-write: renamed");
    File::open(dir)?.sync_all()?;
    fault::point("atomic-write: directory synced");
    Ok(())
}
