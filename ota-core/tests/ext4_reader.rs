//! The generator's ext4 reader against `mkfs.ext4 -d`: every file of the source folder is
//! found at its path, and reading its extents from the image gives its content (holes read as
//! zeros); corrupt images give an error, never a panic or a wrong map.

// Test helpers unwrap freely: clippy's allow-unwrap-in-tests covers only #[test] functions.
#![allow(clippy::unwrap_used)]

use ota_core::delta::ext4::{read_fs_map, Ext4Error, FsMap};
use proptest::prelude::*;
use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::Command;

fn mkfs(tree: &Path, image: &Path, size: &str) {
    let out = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-b", "4096", "-d"])
        .arg(tree)
        .arg(image)
        .arg(size)
        .output()
        .expect("mkfs.ext4 (e2fsprogs) is needed for these tests");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn map_of(image: &Path) -> Result<FsMap, Ext4Error> {
    let file = fs::File::open(image).unwrap();
    let len = file.metadata().unwrap().len();
    read_fs_map(&mut &file, len)
}

/// The file's bytes as the map says they are stored.
fn read_through_map(image: &Path, map: &FsMap, path: &str) -> Vec<u8> {
    let img = fs::File::open(image).unwrap();
    let f = map
        .files
        .iter()
        .find(|f| f.path == path.as_bytes())
        .unwrap_or_else(|| panic!("{path} not in the map"));
    let mut out = vec![0u8; f.size as usize];
    for e in &f.extents {
        let mut buf = vec![0u8; (e.len * map.block_size) as usize];
        img.read_exact_at(&mut buf, e.physical * map.block_size)
            .unwrap();
        let start = (e.logical * map.block_size) as usize;
        let n = buf.len().min(out.len().saturating_sub(start));
        out[start..start + n].copy_from_slice(&buf[..n]);
    }
    out
}

#[test]
fn every_file_reads_back_through_its_extents() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("tree");
    let mut expected: Vec<(String, Vec<u8>)> = Vec::new();
    for i in 0..300u32 {
        // Many entries in one folder (an htree directory) and some deeper ones.
        let rel = if i % 3 == 0 {
            format!("deep/d{}/f{i}", i % 7)
        } else {
            format!("flat/file-with-a-longer-name-{i}")
        };
        let data: Vec<u8> = (0..(i * 997 % 70_000))
            .map(|j| (j * 31 + i) as u8)
            .collect();
        expected.push((rel, data));
    }
    // A big file (several extents of the tree) and a sparse one.
    expected.push((
        "big".into(),
        (0..9_000_000u32).map(|j| (j / 7) as u8).collect(),
    ));
    for (rel, data) in &expected {
        let p = tree.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, data).unwrap();
    }
    let sparse = fs::File::create(tree.join("sparse")).unwrap();
    sparse.write_all_at(b"after a hole", 5 << 20).unwrap();
    let mut sparse_bytes = vec![0u8; 5 << 20];
    sparse_bytes.extend_from_slice(b"after a hole");
    expected.push(("sparse".into(), sparse_bytes));
    fs::hard_link(tree.join("big"), tree.join("deep/big-link")).unwrap();
    let image = dir.path().join("fs.ext4");
    mkfs(&tree, &image, "64M");
    let map = map_of(&image).unwrap();
    assert_eq!(map.block_size, 4096);
    for (rel, data) in &expected {
        if data.is_empty() {
            // No blocks, nothing to map.
            assert!(!map.files.iter().any(|f| f.path == rel.as_bytes()));
            continue;
        }
        assert!(
            read_through_map(&image, &map, rel) == *data,
            "{rel} differs"
        );
    }
    assert!(read_through_map(&image, &map, "deep/big-link") == expected[300].1);
    let sparse = map.files.iter().find(|f| f.path == b"sparse").unwrap();
    assert_eq!(sparse.extents.len(), 1, "the hole is not an extent");
    // Folders are in the map too (their blocks are directory entries).
    assert!(map.files.iter().any(|f| f.path == b"flat"));
}

#[test]
fn images_that_are_not_ext4_are_told_apart_from_corrupt_ones() {
    let dir = tempfile::tempdir().unwrap();
    let zeros = dir.path().join("zeros");
    fs::write(&zeros, vec![0u8; 1 << 20]).unwrap();
    assert!(matches!(map_of(&zeros), Err(Ext4Error::NotExt4)));
    let tree = dir.path().join("t");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("a"), b"x").unwrap();
    let image = dir.path().join("fs.ext4");
    mkfs(&tree, &image, "4M");
    // A truncated image: the superblock claims more blocks than there are.
    let short = dir.path().join("short");
    fs::write(&short, &fs::read(&image).unwrap()[..1 << 20]).unwrap();
    assert!(matches!(map_of(&short), Err(Ext4Error::Malformed(_))));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, .. ProptestConfig::default() })]

    /// Random bytes written over the metadata of a real image: the reader answers (a map or
    /// an error) without panicking, and every extent it returns lies inside the image.
    #[test]
    fn corrupt_metadata_never_panics(
        flips in proptest::collection::vec((0u64..(256 << 10), any::<u8>()), 1..40),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("t");
        for i in 0..40 {
            let p = tree.join(format!("d{}/f{i}", i % 4));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, vec![i as u8; i * 3000]).unwrap();
        }
        let image = dir.path().join("fs.ext4");
        mkfs(&tree, &image, "4M");
        let f = fs::OpenOptions::new().write(true).open(&image).unwrap();
        for (at, b) in flips {
            f.write_all_at(&[b], at).unwrap();
        }
        if let Ok(map) = map_of(&image) {
            let blocks = (4u64 << 20) / map.block_size;
            for file in &map.files {
                for e in &file.extents {
                    prop_assert!(e.physical + e.len <= blocks);
                }
            }
        }
    }
}
