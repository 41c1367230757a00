//! `ota-server`'s request path resolution (`ota_server::resolve::resolve`): the request target
//! as hyper parses it (`Uri`, its path) and the raw string too, against a repository directory
//! holding files, a hidden directory, symlinks inside it and symlinks leading out of it.
//!
//! Properties: a served path is a regular file inside the canonical repository, never the
//! file outside it, and no path segment below the root is hidden (starts with `.`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use ota_server::resolve::{canonical_root, resolve};
use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    secret: PathBuf,
}

fn fixture() -> &'static Fixture {
    static CELL: OnceLock<Fixture> = OnceLock::new();
    CELL.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary directory");
        let outside = dir.path().join("outside");
        let repo = dir.path().join("repo");
        for d in [&outside, &repo.join("targets/sub"), &repo.join(".ota-repo")] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let secret = outside.join("secret");
        for (path, content) in [
            (secret.clone(), "secret"),
            (repo.join("timestamp.json"), "{}"),
            (repo.join("1.root.json"), "{}"),
            (repo.join("targets/fw.bundle"), "fw"),
            (repo.join("targets/fw bundle"), "fw"),
            (repo.join("targets/sub/x.bin"), "x"),
            (repo.join(".ota-repo/secret"), "staging"),
            (repo.join(".hidden"), "hidden"),
        ] {
            std::fs::write(path, content).expect("write");
        }
        let link = |to: &Path, at: &str| std::os::unix::fs::symlink(to, repo.join(at)).expect("ln");
        link(&repo.join("timestamp.json"), "latest.json");
        link(&repo.join("targets"), "current");
        link(&secret, "leak");
        link(&outside, "leakdir");
        link(Path::new("../outside/secret"), "relleak");
        let root = canonical_root(&repo).expect("canonical root");
        let secret = secret.canonicalize().expect("canonical secret");
        Fixture {
            _dir: dir,
            root,
            secret,
        }
    })
}

fn check(fx: &Fixture, target: &str) {
    let Ok((path, meta)) = resolve(&fx.root, target) else {
        return;
    };
    assert!(
        meta.is_file(),
        "{target:?} resolved to something else than a file"
    );
    let real = path.canonicalize().expect("served path exists");
    assert!(
        real.starts_with(&fx.root),
        "{target:?} left the repository: {real:?}"
    );
    assert_ne!(real, fx.secret, "{target:?} served the file outside");
    let below = path
        .strip_prefix(&fx.root)
        .expect("served path under the root");
    for c in below.components() {
        match c {
            Component::Normal(s) => assert!(
                !s.to_string_lossy().starts_with('.'),
                "{target:?} served a hidden path {path:?}"
            ),
            other => panic!("{target:?} resolved through {other:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let fx = fixture();
    if let Ok(uri) = hyper::Uri::try_from(data) {
        check(fx, uri.path());
    }
    if let Ok(text) = std::str::from_utf8(data) {
        check(fx, text);
    }
});
