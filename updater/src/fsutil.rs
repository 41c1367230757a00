//! Durable file writes: the only way the updater changes its state files.

use crate::fault::{self, Io};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
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
    // A unique name, created exclusively (O_EXCL, never through a link): two processes never
    // share a temporary file, and nothing planted in the directory can redirect the write.
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(name);
    prefix.push(".");
    let mut tmp = tempfile::Builder::new()
        .prefix(&prefix)
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let tmp_path = tmp.path().to_owned();
    fault::io(Io::Create(&tmp_path));
    tmp.as_file_mut().write_all(bytes)?;
    fault::io(Io::Write(&tmp_path, 0, bytes));
    fault::point("atomic-write: temp written");
    // Temporary files are private (0600); the records are ordinary files.
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    fault::io(Io::Sync(&tmp_path));
    fault::point("atomic-write: temp synced");
    tmp.persist(path).map_err(|e| e.error)?;
    fault::io(Io::Rename(&tmp_path, path));
    fault::point("atomic-write: renamed");
    File::open(dir)?.sync_all()?;
    fault::io(Io::SyncDir(dir));
    fault::point("atomic-write: directory synced");
    Ok(())
}
