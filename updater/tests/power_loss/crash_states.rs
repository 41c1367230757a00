//! Crash states, enumerated rather than sampled: what a power cut can leave on disk, not just
//! where a process can die.
//!
//! A clean run of the action records every file-system operation the updater makes
//! (`OTA_IO_LOG`, test builds only: create, write, fsync, rename, unlink, directory fsync; see
//! `src/fault.rs`). A model of the disk replays that log on the device as it was before the
//! run. After every prefix of the log it builds the state a power cut would leave, two ways:
//! - **unsynced lost**: each file as of its last fsync, each directory as of its last fsync;
//! - **metadata first**: every rename, creation and unlink on disk (directories written back
//!   before data), each file's data as of its last fsync plus only the *last* write since,
//!   reordered ahead of the earlier ones.
//!
//! Each distinct state becomes a device on which the scenario's checks run: `status` answers,
//! the simulated bootloader picks a slot holding a good image, and the action can be
//! completed (a resumed or restarted install, a repeated rollback). A single write call is
//! taken as all or nothing (the `file` bootloader backend used here switches by rename; the
//! in-place GRUB and U-Boot environment writes are covered by their own format tests and the
//! QEMU power cuts).

use super::*;
use std::collections::{BTreeMap, BTreeSet, HashSet};

/// One recorded operation, its paths relative to the device directory.
#[derive(Debug, Clone)]
enum Op {
    Create(PathBuf),
    Write(PathBuf, u64, Vec<u8>),
    Sync(PathBuf),
    Rename(PathBuf, PathBuf),
    Remove(PathBuf),
    SyncDir(PathBuf),
}

/// Reads an `OTA_IO_LOG` of a run on the device in `root`.
fn read_io_log(log: &Path, root: &Path) -> Vec<Op> {
    let text = fs::read_to_string(log).unwrap_or_default();
    let rel = |v: &Value| -> PathBuf {
        let p = Path::new(v.as_str().unwrap());
        p.strip_prefix(root)
            .unwrap_or_else(|_| panic!("{} is outside the device {}", p.display(), root.display()))
            .to_owned()
    };
    text.lines()
        .map(|line| {
            let v: Value = serde_json::from_str(line).unwrap();
            let path = rel(&v["path"]);
            match v["op"].as_str().unwrap() {
                "create" => Op::Create(path),
                "write" => Op::Write(
                    path,
                    v["offset"].as_u64().unwrap(),
                    hex::decode(v["data"].as_str().unwrap()).unwrap(),
                ),
                "sync" => Op::Sync(path),
                "rename" => Op::Rename(path, rel(&v["to"])),
                "remove" => Op::Remove(path),
                "sync_dir" => Op::SyncDir(path),
                other => panic!("unknown operation {other}"),
            }
        })
        .collect()
}

/// A file's data: what is on the disk (as of its last fsync) and what a reader sees.
#[derive(Clone)]
struct Inode {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    /// Writes since the last fsync, in order.
    unsynced: Vec<(u64, Vec<u8>)>,
}

fn write_at(data: &mut Vec<u8>, offset: u64, bytes: &[u8]) {
    let (at, end) = (offset as usize, offset as usize + bytes.len());
    if data.len() < end {
        data.resize(end, 0);
    }
    data[at..end].copy_from_slice(bytes);
}

/// The disk of a device: inodes, and the directory entries on disk and as seen.
struct Disk {
    inodes: Vec<Inode>,
    durable: BTreeMap<PathBuf, usize>,
    volatile: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
}

#[derive(Debug, Clone, Copy)]
enum Variant {
    UnsyncedLost,
    MetadataFirst,
}

impl Disk {
    /// The device in `root` as it is: everything durable.
    fn load(root: &Path) -> Self {
        let mut disk = Disk {
            inodes: Vec::new(),
            durable: BTreeMap::new(),
            volatile: BTreeMap::new(),
            dirs: BTreeSet::new(),
        };
        disk.load_dir(root, Path::new(""));
        disk
    }

    fn load_dir(&mut self, root: &Path, rel: &Path) {
        for entry in fs::read_dir(root.join(rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                self.dirs.insert(path.clone());
                self.load_dir(root, &path);
            } else {
                let data = fs::read(entry.path()).unwrap();
                self.inodes.push(Inode {
                    durable: data.clone(),
                    volatile: data,
                    unsynced: Vec::new(),
                });
                self.durable.insert(path.clone(), self.inodes.len() - 1);
                self.volatile.insert(path, self.inodes.len() - 1);
            }
        }
    }

    fn inode(&mut self, path: &Path) -> &mut Inode {
        let id = *self
            .volatile
            .get(path)
            .unwrap_or_else(|| panic!("{} is not a file", path.display()));
        &mut self.inodes[id]
    }

    fn apply(&mut self, op: &Op) {
        match op {
            Op::Create(path) => {
                self.inodes.push(Inode {
                    durable: Vec::new(),
                    volatile: Vec::new(),
                    unsynced: Vec::new(),
                });
                self.volatile.insert(path.clone(), self.inodes.len() - 1);
            }
            Op::Write(path, offset, data) => {
                let inode = self.inode(path);
                write_at(&mut inode.volatile, *offset, data);
                inode.unsynced.push((*offset, data.clone()));
            }
            Op::Sync(path) => {
                let inode = self.inode(path);
                inode.durable = inode.volatile.clone();
                inode.unsynced.clear();
            }
            Op::Rename(from, to) => {
                let id = self.volatile.remove(from).unwrap();
                self.volatile.insert(to.clone(), id);
            }
            Op::Remove(path) => {
                self.volatile.remove(path).unwrap();
            }
            Op::SyncDir(dir) => {
                let in_dir = |p: &PathBuf| p.parent() == Some(dir.as_path());
                self.durable.retain(|p, _| !in_dir(p));
                let entries: Vec<_> = self
                    .volatile
                    .iter()
                    .filter(|(p, _)| in_dir(p))
                    .map(|(p, id)| (p.clone(), *id))
                    .collect();
                self.durable.extend(entries);
            }
        }
    }

    /// The files a power cut leaves now.
    fn after_power_loss(&self, variant: Variant) -> BTreeMap<PathBuf, Vec<u8>> {
        let (entries, last_write) = match variant {
            Variant::UnsyncedLost => (&self.durable, false),
            Variant::MetadataFirst => (&self.volatile, true),
        };
        entries
            .iter()
            .map(|(path, &id)| {
                let inode = &self.inodes[id];
                let mut data = inode.durable.clone();
                if let Some((offset, bytes)) = inode.unsynced.last().filter(|_| last_write) {
                    write_at(&mut data, *offset, bytes);
                }
                (path.clone(), data)
            })
            .collect()
    }

    /// A device holding `files`.
    fn materialize(&self, files: &BTreeMap<PathBuf, Vec<u8>>) -> Device {
        let device = Device {
            dir: tempfile::tempdir().unwrap(),
        };
        for dir in &self.dirs {
            fs::create_dir_all(device.dir.path().join(dir)).unwrap();
        }
        for (path, data) in files {
            fs::write(device.dir.path().join(path), data).unwrap();
        }
        device
    }
}

/// What an enumeration checked.
struct Enumerated {
    operations: usize,
    states: usize,
    distinct: usize,
}

impl Scenario {
    /// The operations of a clean run of the action.
    fn io_operations(&self) -> Vec<Op> {
        let run = self.template.copy();
        let log_dir = tempfile::tempdir().unwrap();
        let log = log_dir.path().join("io.log");
        let out = run.run(&self.action, Fault::IoLog(&log));
        assert_eq!(
            out.status.code(),
            Some(self.code),
            "clean run of {:?}: {}",
            self.action,
            String::from_utf8_lossy(&out.stderr)
        );
        read_io_log(&log, run.dir.path())
    }

    /// Builds every crash state of the action (each prefix of its operations, both variants)
    /// and runs `after` on each distinct one.
    fn enumerate_crash_states(&self, mut after: impl FnMut(&Device, &str)) -> Enumerated {
        let ops = self.io_operations();
        assert!(!ops.is_empty(), "{:?} wrote nothing", self.action);
        let mut disk = Disk::load(self.template.dir.path());
        let mut seen = HashSet::new();
        let mut states = 0;
        for k in 0..=ops.len() {
            if k > 0 {
                disk.apply(&ops[k - 1]);
            }
            for variant in [Variant::UnsyncedLost, Variant::MetadataFirst] {
                states += 1;
                let files = disk.after_power_loss(variant);
                if !seen.insert(fingerprint(&files)) {
                    continue;
                }
                let context = format!(
                    "{:?}: power cut after operation {k}/{} ({:?}), {variant:?}",
                    self.action[0],
                    ops.len(),
                    ops.get(k.wrapping_sub(1)).map(short)
                );
                after(&disk.materialize(&files), &context);
            }
        }
        Enumerated {
            operations: ops.len(),
            states,
            distinct: seen.len(),
        }
    }
}

/// SHA-256 over every path and its bytes: equal states, equal fingerprints.
fn fingerprint(files: &BTreeMap<PathBuf, Vec<u8>>) -> Sha256Digest {
    let mut all = Vec::new();
    for (path, data) in files {
        all.extend_from_slice(path.as_os_str().as_encoded_bytes());
        all.push(0);
        all.extend_from_slice(&(data.len() as u64).to_le_bytes());
        all.extend_from_slice(data);
    }
    Sha256Digest::of(&all)
}

/// An operation without its data, for messages.
fn short(op: &Op) -> String {
    match op {
        Op::Write(path, offset, data) => {
            format!(
                "write {} bytes at {offset} of {}",
                data.len(),
                path.display()
            )
        }
        other => format!("{other:?}"),
    }
}

fn report(what: &str, e: &Enumerated) {
    println!(
        "{what}: {} operations, {} crash states, {} distinct checked",
        e.operations, e.states, e.distinct
    );
}

#[test]
fn every_crash_state_of_a_full_install_boots_a_good_image_and_completes() {
    let scenario = Scenario::install();
    let releases = &scenario.releases;
    let mut booted = BTreeMap::<String, usize>::new();
    let e = scenario.enumerate_crash_states(|device, context| {
        *booted
            .entry(check_install_cut(device, releases, context))
            .or_default() += 1;
    });
    report("full install", &e);
    // Both sides of the switch were reached.
    assert!(booted.len() == 2, "slots booted: {booted:?}");
    assert!(
        e.distinct >= 100,
        "only {} distinct crash states",
        e.distinct
    );
}

#[test]
fn every_crash_state_of_a_delta_install_boots_a_good_image_and_completes() {
    let scenario = Scenario::install_delta();
    let releases = &scenario.releases;
    let mut booted = BTreeMap::<String, usize>::new();
    let e = scenario.enumerate_crash_states(|device, context| {
        *booted
            .entry(check_install_cut(device, releases, context))
            .or_default() += 1;
    });
    report("delta install", &e);
    assert!(booted.len() == 2, "slots booted: {booted:?}");
}

#[test]
fn every_crash_state_of_a_commit_and_of_a_rollback_boots_a_good_image() {
    let scenario = Scenario::boot_commit();
    let releases = &scenario.releases;
    let e = scenario
        .enumerate_crash_states(|device, context| check_commit_cut(device, releases, context));
    report("boot commit", &e);
    let scenario = Scenario::rollback();
    let releases = &scenario.releases;
    let r = scenario
        .enumerate_crash_states(|device, context| check_rollback_cut(device, releases, context));
    report("rollback", &r);
}
