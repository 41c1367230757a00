//! A read-only ext2/3/4 reader for the delta generator: which blocks of an image hold which
//! file (path, logical block → physical block, from the inodes' extent trees and the directory
//! entries). Only the generator reads filesystems; the device applies operations and never
//! parses one.
//!
//! The reader trusts nothing: every count, offset and depth is checked against the image and
//! against fixed caps, and any inconsistency ends the walk with an error, which costs the
//! generator its hints and nothing else (it falls back to the generic engine, which is exact
//! on any input).

use std::collections::HashSet;
use std::io;

/// Superblock magic (`s_magic`).
const EXT4_MAGIC: u16 = 0xEF53;
/// Extent tree node magic (`eh_magic`).
const EXTENT_MAGIC: u16 = 0xF30A;
/// `s_feature_incompat`: 64-bit block numbers and group descriptors of `s_desc_size`.
const INCOMPAT_64BIT: u32 = 0x80;
/// `i_flags`: the inode maps its blocks with an extent tree.
const EXTENTS_FL: u32 = 0x80000;
/// `i_flags`: the data lives in the inode (nothing to map).
const INLINE_DATA_FL: u32 = 0x1000_0000;
const ROOT_INODE: u32 = 2;
const S_IFMT: u16 = 0xF000;
const S_IFREG: u16 = 0x8000;
const S_IFDIR: u16 = 0x4000;
/// Caps that bound the walk on hostile or corrupt images.
const MAX_FILES: usize = 4 << 20;
const MAX_EXTENT_DEPTH: u16 = 5;
const MAX_EXTENTS_PER_FILE: usize = 1 << 16;
const MAX_DIR_BLOCKS: u64 = 1 << 16;
const MAX_PATH: usize = 4096;

/// Why an image gave no filesystem hints.
#[derive(Debug, thiserror::Error)]
pub enum Ext4Error {
    /// The image could not be read.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// No ext2/3/4 superblock.
    #[error("not an ext2/3/4 image")]
    NotExt4,
    /// A structure is inconsistent with the image or exceeds a cap.
    #[error("malformed ext4 image: {0}")]
    Malformed(String),
}

fn bad(what: impl Into<String>) -> Ext4Error {
    Ext4Error::Malformed(what.into())
}

/// A run of a file's blocks: `len` blocks at logical block `logical` stored at `physical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First logical block (block index within the file).
    pub logical: u64,
    /// First physical block (block index within the image).
    pub physical: u64,
    /// Number of blocks.
    pub len: u64,
}

/// A regular file or directory and where its blocks are.
#[derive(Debug, Clone)]
pub struct FsFile {
    /// Path from the root, `/`-separated, without a leading `/`.
    pub path: Vec<u8>,
    /// Size in bytes (`i_size`).
    pub size: u64,
    /// Its data extents, in logical order (holes are absent).
    pub extents: Vec<Extent>,
}

/// The files of an ext2/3/4 image.
#[derive(Debug, Clone)]
pub struct FsMap {
    /// Block size in bytes.
    pub block_size: u64,
    /// Every regular file and directory reachable from the root with mapped blocks (a file
    /// with several hard links appears once per path).
    pub files: Vec<FsFile>,
}

/// Random access to an image: fills `buf` from byte `offset`.
pub trait ReadAt {
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;
}

impl ReadAt for &std::fs::File {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(*self, buf, offset)
    }
}

/// Any seekable reader (the target image the signer streams).
pub struct SeekReader<'a, R: io::Read + io::Seek + ?Sized>(pub &'a mut R);

impl<R: io::Read + io::Seek + ?Sized> ReadAt for SeekReader<'_, R> {
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.0.seek(io::SeekFrom::Start(offset))?;
        self.0.read_exact(buf)
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The superblock fields the walk needs.
struct Geometry {
    block_size: u64,
    blocks: u64,
    inodes: u32,
    inodes_per_group: u32,
    inode_size: u64,
    desc_size: u64,
    groups: u64,
    gdt_block: u64,
}

impl Geometry {
    fn read(img: &mut dyn ReadAt, image_len: u64) -> Result<Self, Ext4Error> {
        let mut sb = [0u8; 1024];
        if image_len < 2048 {
            return Err(Ext4Error::NotExt4);
        }
        img.read_at(&mut sb, 1024)?;
        if le16(&sb, 0x38) != EXT4_MAGIC {
            return Err(Ext4Error::NotExt4);
        }
        let log_block = le32(&sb, 0x18);
        if log_block > 6 {
            return Err(bad(format!("block size 1024 << {log_block}")));
        }
        let block_size = 1024u64 << log_block;
        let incompat = le32(&sb, 0x60);
        let is64 = incompat & INCOMPAT_64BIT != 0;
        let mut blocks = u64::from(le32(&sb, 0x4));
        if is64 {
            blocks |= u64::from(le32(&sb, 0x150)) << 32;
        }
        let blocks_per_group = u64::from(le32(&sb, 0x20));
        let inodes = le32(&sb, 0x0);
        let inodes_per_group = le32(&sb, 0x28);
        let inode_size = if le32(&sb, 0x4C) == 0 {
            128
        } else {
            u64::from(le16(&sb, 0x58))
        };
        let desc_size = if is64 { u64::from(le16(&sb, 0xFE)) } else { 32 };
        let first_data_block = u64::from(le32(&sb, 0x14));
        if blocks == 0
            || blocks.saturating_mul(block_size) > image_len
            || blocks_per_group == 0
            || inodes_per_group == 0
            || !(128..=block_size).contains(&inode_size)
            || !inode_size.is_power_of_two()
            || !(32..=1024).contains(&desc_size)
            || first_data_block >= blocks
        {
            return Err(bad("superblock fields out of range"));
        }
        let groups = (blocks - first_data_block).div_ceil(blocks_per_group);
        if u64::from(inodes) > groups.saturating_mul(u64::from(inodes_per_group)) {
            return Err(bad("more inodes than groups hold"));
        }
        Ok(Self {
            block_size,
            blocks,
            inodes,
            inodes_per_group,
            inode_size,
            desc_size,
            groups,
            gdt_block: first_data_block + 1,
        })
    }
}

/// Walks the directory tree of an ext2/3/4 image of `image_len` bytes.
pub fn read_fs_map(img: &mut dyn ReadAt, image_len: u64) -> Result<FsMap, Ext4Error> {
    let geo = Geometry::read(img, image_len)?;
    let mut walker = Walker {
        inode_tables: inode_tables(img, &geo)?,
        geo,
        img,
        files: Vec::new(),
        seen_dirs: HashSet::new(),
    };
    walker.walk_dir(ROOT_INODE, Vec::new(), 0)?;
    Ok(FsMap {
        block_size: walker.geo.block_size,
        files: walker.files,
    })
}

/// Each group's inode table block, from the group descriptors.
fn inode_tables(img: &mut dyn ReadAt, geo: &Geometry) -> Result<Vec<u64>, Ext4Error> {
    let len = geo
        .groups
        .checked_mul(geo.desc_size)
        .filter(|&l| l <= 64 << 20)
        .ok_or_else(|| bad("group descriptor table too large"))?;
    let mut gdt = vec![0u8; len as usize];
    img.read_at(&mut gdt, geo.gdt_block * geo.block_size)?;
    let table_blocks = (u64::from(geo.inodes_per_group) * geo.inode_size).div_ceil(geo.block_size);
    gdt.chunks_exact(geo.desc_size as usize)
        .map(|d| {
            let mut table = u64::from(le32(d, 0x8));
            if geo.desc_size >= 64 {
                table |= u64::from(le32(d, 0x28)) << 32;
            }
            if table == 0 || table.saturating_add(table_blocks) > geo.blocks {
                return Err(bad(format!(
                    "inode table at block {table} outside the image"
                )));
            }
            Ok(table)
        })
        .collect()
}

struct Inode {
    mode: u16,
    flags: u32,
    size: u64,
    block: [u8; 60],
}

struct Walker<'a> {
    geo: Geometry,
    inode_tables: Vec<u64>,
    img: &'a mut dyn ReadAt,
    files: Vec<FsFile>,
    seen_dirs: HashSet<u32>,
}

impl Walker<'_> {
    fn inode(&mut self, ino: u32) -> Result<Inode, Ext4Error> {
        if ino == 0 || ino > self.geo.inodes {
            return Err(bad(format!("inode {ino} out of range")));
        }
        let index = u64::from(ino - 1);
        let group = (index / u64::from(self.geo.inodes_per_group)) as usize;
        let table = *self
            .inode_tables
            .get(group)
            .ok_or_else(|| bad(format!("inode {ino} in a missing group")))?;
        let at = table * self.geo.block_size
            + (index % u64::from(self.geo.inodes_per_group)) * self.geo.inode_size;
        let mut raw = [0u8; 128];
        self.img.read_at(&mut raw, at)?;
        let mut block = [0u8; 60];
        block.copy_from_slice(&raw[0x28..0x28 + 60]);
        Ok(Inode {
            mode: le16(&raw, 0),
            flags: le32(&raw, 0x20),
            size: u64::from(le32(&raw, 0x4)) | u64::from(le32(&raw, 0x6C)) << 32,
            block,
        })
    }

    /// The inode's extents, in logical order; none for inline data or block-mapped inodes
    /// (ext2/3 style: those files simply get no hint).
    fn extents(&mut self, inode: &Inode) -> Result<Vec<Extent>, Ext4Error> {
        let mut out = Vec::new();
        if inode.flags & INLINE_DATA_FL != 0 || inode.flags & EXTENTS_FL == 0 {
            return Ok(out);
        }
        self.extent_node(&inode.block, MAX_EXTENT_DEPTH + 1, &mut out)?;
        out.sort_by_key(|e| e.logical);
        if out
            .windows(2)
            .any(|w| w[0].logical + w[0].len > w[1].logical)
        {
            return Err(bad("overlapping extents"));
        }
        Ok(out)
    }

    fn extent_node(
        &mut self,
        node: &[u8],
        depth_left: u16,
        out: &mut Vec<Extent>,
    ) -> Result<(), Ext4Error> {
        if node.len() < 12 || le16(node, 0) != EXTENT_MAGIC {
            return Err(bad("extent node without its magic"));
        }
        let entries = usize::from(le16(node, 2));
        let depth = le16(node, 6);
        if depth >= depth_left || 12 + entries * 12 > node.len() {
            return Err(bad("extent node too deep or too full"));
        }
        for e in node[12..12 + entries * 12].chunks_exact(12) {
            if depth == 0 {
                let raw_len = u64::from(le16(e, 4));
                // Lengths over 32768 mark preallocated (unwritten) extents: they read as
                // zeros, which `zero` operations cover.
                if raw_len == 0 || raw_len > 32768 {
                    continue;
                }
                let physical = u64::from(le16(e, 6)) << 32 | u64::from(le32(e, 8));
                if physical.saturating_add(raw_len) > self.geo.blocks {
                    return Err(bad("extent outside the image"));
                }
                if out.len() >= MAX_EXTENTS_PER_FILE {
                    return Err(bad("too many extents in one file"));
                }
                out.push(Extent {
                    logical: u64::from(le32(e, 0)),
                    physical,
                    len: raw_len,
                });
            } else {
                let child = u64::from(le16(e, 8)) << 32 | u64::from(le32(e, 4));
                if child >= self.geo.blocks {
                    return Err(bad("extent index outside the image"));
                }
                let mut buf = vec![0u8; self.geo.block_size as usize];
                self.img.read_at(&mut buf, child * self.geo.block_size)?;
                if le16(&buf, 6) != depth - 1 {
                    return Err(bad("extent tree depth is inconsistent"));
                }
                self.extent_node(&buf, depth, out)?;
            }
        }
        Ok(())
    }

    fn walk_dir(&mut self, ino: u32, path: Vec<u8>, level: usize) -> Result<(), Ext4Error> {
        if level > 256 || !self.seen_dirs.insert(ino) {
            return Err(bad("directory loop or too deep"));
        }
        let inode = self.inode(ino)?;
        if inode.mode & S_IFMT != S_IFDIR {
            return Err(bad(format!("inode {ino} is not a directory")));
        }
        let extents = self.extents(&inode)?;
        let children = self.dir_entries(&extents)?;
        self.push_file(path.clone(), inode.size, extents)?;

        for (child, name) in children {
            let mut child_path = path.clone();
            if !child_path.is_empty() {
                child_path.push(b'/');
            }
            child_path.extend_from_slice(&name);
            if child_path.len() > MAX_PATH {
                return Err(bad("path too long"));
            }
            // The entry's file type byte is optional (feature `filetype`): ask the inode.
            let inode = self.inode(child)?;
            match inode.mode & S_IFMT {
                S_IFDIR => self.walk_dir(child, child_path, level + 1)?,
                S_IFREG => {
                    let extents = self.extents(&inode)?;
                    self.push_file(child_path, inode.size, extents)?;
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn push_file(
        &mut self,
        path: Vec<u8>,
        size: u64,
        extents: Vec<Extent>,
    ) -> Result<(), Ext4Error> {
        if self.files.len() >= MAX_FILES {
            return Err(bad("too many files"));
        }
        if !extents.is_empty() {
            self.files.push(FsFile {
                path,
                size,
                extents,
            });
        }
        Ok(())
    }

    /// The entries of a directory (inode, name), without `.` and `..`.
    /// Hashed (htree) directories keep every entry in ordinary leaf blocks too; their index
    /// blocks look like one empty entry spanning the block, so a linear scan sees them all.
    fn dir_entries(&mut self, extents: &[Extent]) -> Result<Vec<(u32, Vec<u8>)>, Ext4Error> {
        let bs = self.geo.block_size as usize;
        let mut out = Vec::new();
        let mut buf = vec![0u8; bs];
        let total: u64 = extents.iter().map(|e| e.len).sum();
        if total > MAX_DIR_BLOCKS {
            return Err(bad("directory too large"));
        }
        for e in extents {
            for b in e.physical..e.physical + e.len {
                self.img.read_at(&mut buf, b * self.geo.block_size)?;
                let mut at = 0usize;
                while at + 8 <= bs {
                    let ino = le32(&buf, at);
                    let rec_len = usize::from(le16(&buf, at + 4));
                    let name_len = usize::from(buf[at + 6]);
                    if rec_len < 8 || at + rec_len > bs || 8 + name_len > rec_len {
                        return Err(bad("directory entry crosses its block"));
                    }
                    let name = &buf[at + 8..at + 8 + name_len];
                    // Unused entries and a block's checksum tail have inode 0.
                    if ino != 0 && name != b"." && name != b".." {
                        if name.is_empty() || name.contains(&b'/') {
                            return Err(bad("directory entry with an invalid name"));
                        }
                        out.push((ino, name.to_vec()));
                    }
                    at += rec_len;
                }
            }
        }
        Ok(out)
    }
}
