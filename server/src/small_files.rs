//! Small files (TUF metadata) kept in memory between requests.
//!
//! Every request already `lstat`s its file to resolve the path; when that file's identity
//! (inode, length, modification time in ns) equals a cached copy's, the copy is served and the
//! file is not opened. Publishers replace files by rename (new inode) or rewrite them (new
//! mtime), so a changed file is never served stale. This takes open/fstat/read/close off the
//! path of the most requested 200 answer, `timestamp.json`.

use bytes::Bytes;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Files up to this size are cached (timestamp and snapshot metadata of most repositories).
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// At most this many files are held; when full the cache starts over. Bounds memory at
/// `MAX_FILE_BYTES * MAX_ENTRIES` (16 MiB).
const MAX_ENTRIES: usize = 256;

/// What identifies one version of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    inode: u64,
    len: u64,
    modified: Option<SystemTime>,
}

impl Identity {
    /// The identity of the file `meta` describes.
    pub fn of(meta: &Metadata) -> Self {
        Self {
            inode: meta.ino(),
            len: meta.len(),
            modified: meta.modified().ok(),
        }
    }
}

/// The cache; shared by every connection.
#[derive(Default)]
pub struct SmallFiles {
    files: Mutex<HashMap<PathBuf, (Identity, Bytes)>>,
}

impl SmallFiles {
    /// The cached contents of `path` if they are of the version `identity` describes.
    pub fn get(&self, path: &Path, identity: Identity) -> Option<Bytes> {
        let files = self.files.lock().ok()?;
        match files.get(path) {
            Some((cached, data)) if *cached == identity => Some(data.clone()),
            _ => None,
        }
    }

    /// Remembers `data` as the contents of `path` at `identity`.
    pub fn put(&self, path: &Path, identity: Identity, data: Bytes) {
        if data.len() as u64 > MAX_FILE_BYTES {
            return;
        }
        let Ok(mut files) = self.files.lock() else {
            return;
        };
        if files.len() >= MAX_ENTRIES && !files.contains_key(path) {
            files.clear();
        }
        files.insert(path.to_owned(), (identity, data));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_or_rewritten_file_is_not_served_from_the_cache() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("timestamp.json");
        std::fs::write(&path, "v1").unwrap();
        let cache = SmallFiles::default();
        let first = Identity::of(&std::fs::metadata(&path).unwrap());
        cache.put(&path, first, Bytes::from_static(b"v1"));
        assert_eq!(cache.get(&path, first).as_deref(), Some(&b"v1"[..]));

        // Replaced by rename, as publishers do: a new inode.
        let tmp = dir.path().join("tmp");
        std::fs::write(&tmp, "v2").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let second = Identity::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(first, second);
        assert_eq!(cache.get(&path, second), None);

        // Rewritten in place with the same length: a new modification time.
        std::thread::sleep(std::time::Duration::from_millis(10));
        std::fs::write(&path, "v3").unwrap();
        let third = Identity::of(&std::fs::metadata(&path).unwrap());
        assert_ne!(second, third);
        cache.put(&path, second, Bytes::from_static(b"v2"));
        assert_eq!(cache.get(&path, third), None);
    }

    #[test]
    fn large_files_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![0u8; MAX_FILE_BYTES as usize + 1]).unwrap();
        let identity = Identity::of(&std::fs::metadata(&path).unwrap());
        let cache = SmallFiles::default();
        cache.put(
            &path,
            identity,
            Bytes::from(vec![0u8; MAX_FILE_BYTES as usize + 1]),
        );
        assert_eq!(cache.get(&path, identity), None);
    }
}
