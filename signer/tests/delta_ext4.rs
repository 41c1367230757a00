//! Filesystem-aware deltas through `ota-sign bundle` and `ota-sign verify --extract`, on real
//! ext4 images made by `mkfs.ext4 -d`: relocated and renamed files, hard links, sparse files,
//! gzip files re-created from their content, corrupt filesystems (which must only lose the
//! hints), and random edits (proptest). Every delta must rebuild the new image exactly.

// Test helpers unwrap freely: clippy's allow-unwrap-in-tests covers only #[test] functions.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn ota_sign() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ota-sign"));
    cmd.env_remove("CI").env_remove("OTA_DELTA_NO_FS_HINTS");
    cmd.stdin(Stdio::null());
    cmd
}

fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// An ext4 image of `size` of the folder `tree`, reproducible (fixed UUID, hash seed, time).
fn mkfs(tree: &Path, image: &Path, size: &str) {
    ok(Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-b",
            "4096",
            "-U",
            "6f1b4f4e-8c1d-4c51-9e53-0c1f1e2d3a4b",
        ])
        .args([
            "-E",
            "hash_seed=3b0f4a5e-2d1c-4e6f-8a9b-7c6d5e4f3a2b,root_owner=0:0",
        ])
        .arg("-d")
        .arg(tree)
        .arg(image)
        .arg(size)
        .env("E2FSPROGS_FAKE_TIME", "1793491200"));
}

struct Pair {
    dir: tempfile::TempDir,
    key: PathBuf,
}

impl Pair {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        ok(ota_sign().arg("keygen").arg("--out").arg(&key));
        Self { dir, key }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Builds a delta bundle from `old` to `new`, applies it as a device would and checks the
    /// result is `new` byte for byte. Returns the bundle size and ota-sign's diagnostics.
    fn round_trip(&self, old: &Path, new: &Path, env: &[(&str, &str)]) -> (u64, String) {
        self.round_trip_with(old, new, env, &[])
    }

    fn round_trip_with(
        &self,
        old: &Path,
        new: &Path,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> (u64, String) {
        let bundle = self.path("d.bundle");
        let out = ok(ota_sign()
            .envs(env.iter().copied())
            .env("OTA_DELTA_DEBUG", "1")
            .args([
                "bundle",
                "--product",
                "p",
                "--version",
                "2.0.0",
                "--level",
                "6",
            ])
            .args(args)
            .arg("--image")
            .arg(format!("rootfs={}", new.display()))
            .arg("--base")
            .arg(format!("rootfs={}", old.display()))
            .arg("--key")
            .arg(&self.key)
            .arg("-o")
            .arg(&bundle));
        let extracted = self.path("out.img");
        let _ = fs::remove_file(&extracted);
        ok(ota_sign()
            .arg("verify")
            .arg("--trusted")
            .arg(self.key.with_extension("pub"))
            .arg("--base")
            .arg(format!("rootfs={}", old.display()))
            .arg("--extract")
            .arg(format!("rootfs={}", extracted.display()))
            .arg(&bundle));
        assert!(
            fs::read(&extracted).unwrap() == fs::read(new).unwrap(),
            "the delta did not rebuild the new image exactly"
        );
        let size = fs::metadata(&bundle).unwrap().len();
        (size, String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Deterministic "binary" content: text-like with numbers, so that compressors and bsdiff
/// find structure, and small edits stay small.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 32);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(format!("sym_{:x} = {};\n", x % 4096, x % 1000).as_bytes());
    }
    out.truncate(len);
    out
}

fn gzip9(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, data).unwrap();
}

/// Release 1 and release 2 of a small root filesystem. Release 2 puts a new 600 KB file
/// first, so `mkfs.ext4 -d` lays every later file out elsewhere; it edits a library, a
/// renamed versioned library, gzip'd manual pages (one by zlib, one by GNU gzip -9n), a file
/// with two hard links, and a sparse file.
fn releases(root: &Path) -> (PathBuf, PathBuf) {
    let (a, b) = (root.join("tree_a"), root.join("tree_b"));
    for (tree, release) in [(&a, 1u64), (&b, 2)] {
        if release == 2 {
            write(tree, "aaa/new-package.bin", &content(99, 600_000));
        }
        let mut lib = content(1, 900_000);
        let mut man = content(2, 120_000);
        let mut vlib = content(3, 300_000);
        if release == 2 {
            lib[400_000..400_040].copy_from_slice(&[7u8; 40]);
            lib.extend_from_slice(&content(4, 20_000));
            man.splice(5000..5000, b"a new option, documented\n".iter().copied());
            vlib[1000..1010].copy_from_slice(b"0123456789");
        }
        write(tree, "usr/lib/libcore.so.1", &lib);
        write(tree, &format!("usr/lib/libv.so.1.{release}.0"), &vlib);
        write(tree, "usr/share/man/man1/tool.1.gz", &gzip9(&man));
        let gnu = tree.join("usr/share/doc/tool/changelog.gz");
        write(tree, "usr/share/doc/tool/changelog", &man[..60_000]);
        ok(Command::new("gzip")
            .args(["-9nf"])
            .arg(gnu.with_extension("")));
        assert!(gnu.exists());
        write(
            tree,
            "etc/config",
            format!("release {release}\n").as_bytes(),
        );
        fs::hard_link(tree.join("etc/config"), tree.join("etc/config.link")).unwrap();
        // Sparse: 1 MiB hole, 8 KiB of data, another hole, more data.
        let sparse = fs::File::create(tree.join("var/lib/sparse.db")).unwrap_or_else(|_| {
            fs::create_dir_all(tree.join("var/lib")).unwrap();
            fs::File::create(tree.join("var/lib/sparse.db")).unwrap()
        });
        use std::os::unix::fs::FileExt;
        sparse
            .write_all_at(&content(5 + release, 8192), 1 << 20)
            .unwrap();
        sparse.write_all_at(&content(7, 4096), 3 << 20).unwrap();
    }
    let (ia, ib) = (root.join("A.ext4"), root.join("B.ext4"));
    mkfs(&a, &ia, "16M");
    mkfs(&b, &ib, "16M");
    (ia, ib)
}

#[test]
fn ext4_pair_with_relocated_renamed_linked_sparse_and_gzip_files() {
    let pair = Pair::new();
    let (a, b) = releases(pair.dir.path());
    let (with_hints, log) = pair.round_trip(&a, &b, &[]);
    assert!(
        log.contains("ext4 hints: files paired by path") && log.contains("by name shape 1"),
        "the versioned library was not paired by its name: {log}"
    );
    let gzip_line = log
        .lines()
        .find(|l| l.starts_with("gzip: "))
        .unwrap_or_default();
    assert!(
        gzip_line.starts_with("gzip: 2 of "),
        "both changed .gz files should be re-created from their content: {log}"
    );
    let (generic, log) = pair.round_trip(&a, &b, &[("OTA_DELTA_NO_FS_HINTS", "1")]);
    assert!(!log.contains("ext4 hints"), "{log}");
    assert!(
        with_hints < generic,
        "filesystem hints should make this delta smaller: {with_hints} vs {generic} bytes"
    );
    // The delta for old updaters (no gzip operation) also rebuilds the image exactly.
    let (v1, log) = pair.round_trip_with(&a, &b, &[], &["--delta-format", "1"]);
    assert!(
        !log.contains("gzip: "),
        "--delta-format 1 made gzip operations: {log}"
    );
    assert!(v1 > with_hints, "{v1} vs {with_hints}");
}

/// Corrupts `image` in place at `offset` with `bytes`.
fn corrupt(image: &Path, offset: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    fs::OpenOptions::new()
        .write(true)
        .open(image)
        .unwrap()
        .write_all_at(bytes, offset)
        .unwrap();
}

#[test]
fn corrupt_filesystems_lose_the_hints_and_stay_exact() {
    let pair = Pair::new();
    let (a, b) = releases(pair.dir.path());
    let cases: [(&str, u64, &[u8]); 4] = [
        // s_log_block_size = 9 (a 512 KiB block): not a block size ext4 has.
        ("base", 1024 + 0x18, &[9, 0, 0, 0]),
        // s_inodes_per_group = 0.
        ("target", 1024 + 0x28, &[0, 0, 0, 0]),
        // The first group descriptor's inode table pointer far past the end.
        ("target", 4096 + 0x8, &[0xff, 0xff, 0xff, 0x7f]),
        // The superblock magic: not ext4 at all.
        ("base", 1024 + 0x38, &[0, 0]),
    ];
    for (which, offset, bytes) in cases {
        let (a2, b2) = (pair.path("A2.ext4"), pair.path("B2.ext4"));
        fs::copy(&a, &a2).unwrap();
        fs::copy(&b, &b2).unwrap();
        corrupt(if which == "base" { &a2 } else { &b2 }, offset, bytes);
        let (_, log) = pair.round_trip(&a2, &b2, &[]);
        assert!(
            log.contains("no filesystem hints:"),
            "{which} corrupt at {offset}: {log}"
        );
    }
}

/// A random small tree: files of random sizes and seeds, some gzip'd.
fn tree_strategy() -> impl Strategy<Value = Vec<(String, u64, usize, bool)>> {
    proptest::collection::vec(
        (
            "[a-d]{1,2}/[a-z]{1,6}",
            any::<u64>(),
            0usize..200_000,
            any::<bool>(),
        ),
        1..12,
    )
}

fn write_tree(root: &Path, files: &[(String, u64, usize, bool)]) {
    fs::create_dir_all(root).unwrap();
    for (name, seed, len, gz) in files {
        let data = content(*seed, *len);
        if *gz {
            write(root, &format!("{name}.gz"), &gzip9(&data));
        } else {
            write(root, name, &data);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, .. ProptestConfig::default() })]

    /// Random trees, randomly edited (changed, grown, shrunk, removed and added files), as
    /// ext4 images: the delta always rebuilds the new image exactly.
    #[test]
    fn random_edits_of_ext4_images_round_trip(
        files in tree_strategy(),
        edits in proptest::collection::vec((0usize..12, 0u8..4, any::<u64>()), 1..6),
    ) {
        let pair = Pair::new();
        let mut new_files = files.clone();
        for (i, kind, seed) in edits {
            let i = i % new_files.len();
            match kind {
                0 => new_files[i].1 ^= seed | 1,
                1 => new_files[i].2 += (seed % 50_000) as usize,
                2 => { new_files.remove(i); if new_files.is_empty() { break; } }
                _ => new_files.push((format!("e/new{}", seed % 1000), seed, (seed % 100_000) as usize, seed % 2 == 0)),
            }
        }
        let (ta, tb) = (pair.path("ta"), pair.path("tb"));
        write_tree(&ta, &files);
        write_tree(&tb, &new_files);
        let (a, b) = (pair.path("A.ext4"), pair.path("B.ext4"));
        mkfs(&ta, &a, "8M");
        mkfs(&tb, &b, "8M");
        pair.round_trip(&a, &b, &[]);
    }
}
