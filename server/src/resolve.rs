//! Request path → file inside the repository, refusing every way out of it.
//!
//! The repository is plain files, so the whole attack surface is the mapping from a URL path
//! to a file: dot segments (plain or percent-encoded), NUL and backslashes, hidden files, and
//! symlinks that lead outside the repository. Directories are never listed. The repository is
//! the publisher's: a path checked here is opened right after, and a publisher racing its own
//! server by swapping directories for symlinks is outside the threat model.

use percent_encoding::percent_decode_str;
use std::fs::Metadata;
use std::path::{Path, PathBuf};

/// Why a path is not served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Malformed or escaping path (dot segments, NUL, backslash, not UTF-8): 400.
    #[error("bad path: {0}")]
    BadPath(&'static str),
    /// Resolves outside the repository (a symlink leaving it): 403.
    #[error("path leaves the repository")]
    Outside,
    /// No such regular file (directories included): 404.
    #[error("not found")]
    NotFound,
}

/// Maps the path of a request URI (`/a/b.json`, still percent-encoded, no query) to a regular
/// file under `root`, which must be canonical (see [`canonical_root`]), with its metadata
/// (enough to answer a conditional GET without opening the file).
pub fn resolve(root: &Path, uri_path: &str) -> Result<(PathBuf, Metadata), Refusal> {
    let rest = uri_path
        .strip_prefix('/')
        .ok_or(Refusal::BadPath("not an absolute path"))?;
    let decoded = percent_decode_str(rest)
        .decode_utf8()
        .map_err(|_| Refusal::BadPath("not UTF-8"))?;
    if decoded.contains('\0') {
        return Err(Refusal::BadPath("NUL byte"));
    }
    if decoded.contains('\\') {
        return Err(Refusal::BadPath("backslash"));
    }
    let mut path = root.to_path_buf();
    let mut through_symlink = false;
    let mut last = None;
    for segment in decoded.split('/') {
        match segment {
            "" => return Err(Refusal::BadPath("empty segment")),
            "." | ".." => return Err(Refusal::BadPath("dot segment")),
            // Hidden files (.git, editor swap files) are not part of a published repository.
            s if s.starts_with('.') => return Err(Refusal::NotFound),
            s => path.push(s),
        }
        // One lstat per segment below the root (usually one or two), instead of resolving
        // the whole absolute path on every request.
        if !through_symlink {
            let meta = path.symlink_metadata().map_err(|_| Refusal::NotFound)?;
            through_symlink = meta.file_type().is_symlink();
            last = Some(meta);
        }
    }
    if through_symlink {
        // Symlinks inside the repository are fine (publishing tools use them for "latest");
        // one that resolves outside is refused.
        let real = path.canonicalize().map_err(|_| Refusal::NotFound)?;
        if !real.starts_with(root) {
            return Err(Refusal::Outside);
        }
        let meta = real.metadata().map_err(|_| Refusal::NotFound)?;
        if !meta.is_file() {
            return Err(Refusal::NotFound);
        }
        return Ok((real, meta));
    }
    match last {
        Some(meta) if meta.is_file() => Ok((path, meta)),
        _ => Err(Refusal::NotFound),
    }
}

/// The canonical form of the repository directory, as [`resolve`] expects it.
pub fn canonical_root(dir: &Path) -> std::io::Result<PathBuf> {
    let root = dir.canonicalize()?;
    if !root.is_dir() {
        return Err(std::io::Error::other(format!(
            "{} is not a directory",
            dir.display()
        )));
    }
    Ok(root)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn repo() -> (tempfile::TempDir, PathBuf, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "secret").unwrap();
        let root = dir.path().join("repo");
        fs::create_dir_all(root.join("targets")).unwrap();
        fs::write(root.join("timestamp.json"), "{}").unwrap();
        fs::write(root.join("targets/fw 2.bin"), "fw").unwrap();
        fs::write(root.join(".hidden"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("leak")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("leakdir")).unwrap();
        std::os::unix::fs::symlink(root.join("timestamp.json"), root.join("latest.json")).unwrap();
        let root = canonical_root(&root).unwrap();
        (dir, root, outside)
    }

    #[test]
    fn serves_files_and_inside_symlinks() {
        let (_d, root, _o) = repo();
        assert_eq!(
            resolve(&root, "/timestamp.json").unwrap().0,
            root.join("timestamp.json")
        );
        assert_eq!(
            resolve(&root, "/targets/fw%202.bin").unwrap().0,
            root.join("targets/fw 2.bin")
        );
        assert_eq!(
            resolve(&root, "/latest.json").unwrap().0,
            root.join("timestamp.json")
        );
    }

    #[test]
    fn refuses_every_escape() {
        let (_d, root, _o) = repo();
        for bad in [
            "/../secret",
            "/targets/../../secret",
            "/%2e%2e/secret",
            "/%2E%2E/secret",
            "/targets/%2e%2e/%2e%2e/secret",
            "/..%2fsecret",
            "/%2e%2e%2fsecret",
            "/./timestamp.json",
            "/%2e/timestamp.json",
            "//etc/passwd",
            "/targets//fw",
            "/..\\secret",
            "/%5c..%5csecret",
            "/timestamp.json%00.png",
            "/%ff",
            "timestamp.json",
        ] {
            assert!(
                matches!(resolve(&root, bad), Err(Refusal::BadPath(_))),
                "{bad}: {:?}",
                resolve(&root, bad).map(|r| r.0)
            );
        }
        assert_eq!(resolve(&root, "/leak").map(|r| r.0), Err(Refusal::Outside));
        assert_eq!(
            resolve(&root, "/leakdir/secret").map(|r| r.0),
            Err(Refusal::Outside)
        );
        assert_eq!(
            resolve(&root, "/.hidden").map(|r| r.0),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            resolve(&root, "/targets").map(|r| r.0),
            Err(Refusal::NotFound)
        );
        assert_eq!(
            resolve(&root, "/targets/").map(|r| r.0),
            Err(Refusal::BadPath("empty segment"))
        );
        assert_eq!(
            resolve(&root, "/").map(|r| r.0),
            Err(Refusal::BadPath("empty segment"))
        );
        assert_eq!(
            resolve(&root, "/missing.json").map(|r| r.0),
            Err(Refusal::NotFound)
        );
    }
}
